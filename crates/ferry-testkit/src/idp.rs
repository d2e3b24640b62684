//! A mock identity provider on `127.0.0.1:0`: OIDC discovery and a JWKS, with counters
//! so tests can assert how often Ferry fetched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::RwLock;

#[derive(Debug)]
struct Shared {
    issuer: String,
    jwks: RwLock<Value>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

/// A running mock issuer. Dropping it stops the server.
#[derive(Debug)]
pub struct MockIdp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

async fn discovery(State(s): State<Arc<Shared>>) -> Json<Value> {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/jwks", s.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(State(s): State<Arc<Shared>>) -> Json<Value> {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(s.jwks.read().await.clone())
}

/// The discovery + JWKS router for an issuer; used by the mock and the dev issuer.
pub fn router(issuer: String, jwks: Value) -> Router {
    router_for(Arc::new(Shared {
        issuer,
        jwks: RwLock::new(jwks),
        jwks_fetches: AtomicUsize::new(0),
        discovery_fetches: AtomicUsize::new(0),
    }))
}

fn router_for(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .with_state(shared)
}

impl MockIdp {
    /// Starts serving `jwks` on `127.0.0.1:0`; the issuer is the server's URL.
    pub async fn start(jwks: Value) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            issuer: url.clone(),
            jwks: RwLock::new(jwks),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
        });
        let app = router_for(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            addr,
            shared,
            task,
        })
    }

    /// Replaces the served key set (an issuer rotating its keys).
    pub async fn set_jwks(&self, jwks: Value) {
        *self.shared.jwks.write().await = jwks;
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was fetched.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
