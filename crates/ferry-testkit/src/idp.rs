//! A mock identity provider on `127.0.0.1:0`: OIDC discovery and a JWKS, with counters
//! so tests can assert how often it was fetched, and misbehaviour modes (slow, 500,
//! HTML, oversized, redirects, a discovery document naming another issuer, refused
//! connections).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// How the mock misbehaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    /// Serve normally.
    #[default]
    Normal,
    /// Answer 500 to everything.
    Error500,
    /// Answer an HTML page with status 200.
    Html,
    /// Answer a 2 MiB JSON body.
    Oversized,
    /// Redirect every request to this URL.
    RedirectTo(String),
    /// Discovery names another issuer.
    IssuerMismatch,
    /// Discovery names this `jwks_uri`.
    JwksUri(String),
}

#[derive(Debug, Default)]
struct Behaviour {
    mode: Mode,
    delay: Option<Duration>,
    cache_control: Option<String>,
    authorization_seen: Vec<Option<String>>,
}

#[derive(Debug)]
struct Shared {
    issuer: String,
    jwks: Mutex<Value>,
    behaviour: Mutex<Behaviour>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

/// A running mock issuer. Dropping it stops the server.
#[derive(Debug)]
pub struct MockIdp {
    /// `http://127.0.0.1:PORT`, also the issuer.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    serving: Mutex<Option<Serving>>,
    /// While connections are refused: a socket bound to `addr` that does not listen, so
    /// the port stays this issuer's (connections get a reset, as from a process that is
    /// down) and listening again needs no new bind another process could win.
    held: Mutex<Option<tokio::net::TcpSocket>>,
}

/// A socket on `addr` that shares its port with the issuer's other socket
/// (`SO_REUSEPORT`: the listening one and, while connections are refused, the held one).
fn port_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// The serving task and the signal that stops it gracefully.
#[derive(Debug)]
struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> Serving {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router_for(shared);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Serving { stop, task }
}

/// What the current mode makes of a request, before the normal answer.
async fn misbehave(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let (mode, delay) = {
        let mut b = s.behaviour.lock().unwrap();
        b.authorization_seen.push(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
        (b.mode.clone(), b.delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    match mode {
        Mode::Error500 => Some((StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()),
        Mode::Html => Some(
            (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Sign in to continue</body></html>",
            )
                .into_response(),
        ),
        Mode::Oversized => {
            let big = format!(
                "{{\"keys\":[],\"pad\":\"{}\"}}",
                "a".repeat(2 * 1024 * 1024)
            );
            Some(([(header::CONTENT_TYPE, "application/json")], big).into_response())
        }
        Mode::RedirectTo(to) => Some((StatusCode::FOUND, [(header::LOCATION, to)]).into_response()),
        _ => None,
    }
}

fn json_response(s: &Shared, v: Value) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response();
    if let Some(cc) = &s.behaviour.lock().unwrap().cache_control {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
    }
    r
}

async fn discovery(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = misbehave(&s, &headers).await {
        return r;
    }
    let mode = s.behaviour.lock().unwrap().mode.clone();
    let issuer = match mode {
        Mode::IssuerMismatch => format!("{}/other", s.issuer),
        _ => s.issuer.clone(),
    };
    let jwks_uri = match mode {
        Mode::JwksUri(u) => u,
        _ => format!("{}/jwks", s.issuer),
    };
    json_response(
        &s,
        json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }),
    )
}

async fn jwks(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = misbehave(&s, &headers).await {
        return r;
    }
    let v = s.jwks.lock().unwrap().clone();
    json_response(&s, v)
}

fn shared(issuer: String, jwks: Value) -> Arc<Shared> {
    Arc::new(Shared {
        issuer,
        jwks: Mutex::new(jwks),
        behaviour: Mutex::new(Behaviour::default()),
        jwks_fetches: AtomicUsize::new(0),
        discovery_fetches: AtomicUsize::new(0),
    })
}

fn router_for(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .with_state(shared)
}

/// The discovery + JWKS router for an issuer; used by the development issuer.
pub fn router(issuer: String, jwks: Value) -> Router {
    router_for(shared(issuer, jwks))
}

impl MockIdp {
    /// Starts serving `jwks` on `127.0.0.1:0`; the issuer is the server's URL.
    pub async fn start(jwks: Value) -> anyhow::Result<Self> {
        let listener = port_socket(SocketAddr::from(([127, 0, 0, 1], 0)))?.listen(1024)?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let shared = shared(url.clone(), jwks);
        let serving = serve(listener, shared.clone());
        Ok(Self {
            url,
            addr,
            shared,
            serving: Mutex::new(Some(serving)),
            held: Mutex::new(None),
        })
    }

    /// Closes the listening socket and every idle connection: from now on connections
    /// to the issuer are refused (an issuer whose process is down). Requests in flight
    /// get up to 2 s to finish, then their connections are dropped too.
    pub async fn refuse_connections(&self) {
        {
            let mut held = self.held.lock().unwrap();
            if held.is_none() {
                *held = Some(port_socket(self.addr).expect("hold the issuer's port"));
            }
        }
        let serving = self.serving.lock().unwrap().take();
        if let Some(Serving { stop, mut task }) = serving {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Listens again on the same address after [`Self::refuse_connections`], on the
    /// socket that held the port meanwhile.
    pub async fn accept_connections(&self) -> anyhow::Result<()> {
        let held = self.held.lock().unwrap().take();
        let socket = match held {
            Some(socket) => socket,
            None => port_socket(self.addr)?,
        };
        let listener = socket.listen(1024)?;
        *self.serving.lock().unwrap() = Some(serve(listener, self.shared.clone()));
        Ok(())
    }

    /// Replaces the served key set (an issuer rotating its keys).
    pub fn set_jwks(&self, jwks: Value) {
        *self.shared.jwks.lock().unwrap() = jwks;
    }

    /// Sets the misbehaviour mode.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.behaviour.lock().unwrap().mode = mode;
    }

    /// Delays every response.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.behaviour.lock().unwrap().delay = delay;
    }

    /// Sets the `Cache-Control` header of successful responses.
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.shared.behaviour.lock().unwrap().cache_control = value.map(str::to_owned);
    }

    /// The `Authorization` header of every request so far (None when absent).
    pub fn authorization_seen(&self) -> Vec<Option<String>> {
        self.shared
            .behaviour
            .lock()
            .unwrap()
            .authorization_seen
            .clone()
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
        if let Some(s) = self.serving.lock().unwrap().take() {
            let _ = s.stop.send(());
            s.task.abort();
        }
    }
}
