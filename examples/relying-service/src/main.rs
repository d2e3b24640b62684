//! An example relying service: `GET /resource` answers only requests carrying a valid
//! Ferry token for its audience (and, for bound tokens, a DPoP proof by the bound key or
//! the client certificate the token names).
//!
//! Environment: `FERRY_ISSUER` (Ferry's issuer URL), `AUDIENCE` (this service's
//! audience), `LISTEN` (default 127.0.0.1:0), `PUBLIC_URL` (this service's public base
//! URL; default `http://<bound address>`), `INSECURE_ORIGINS` (comma-separated origins
//! that may be fetched over http, for development and tests), `REVOCATION_INTERVAL`
//! (seconds; polls Ferry's revocation list as the client `REVOCATION_CLIENT_ID` with
//! `REVOCATION_CLIENT_SECRET`, registered at Ferry with `revocations: true`).
//!
//! `GET /whoami` also accepts service accounts' self-signed JWTs for `AUDIENCE` (direct
//! API authentication, [`either`]): `SERVICE_ACCOUNTS` (comma-separated ids) names the
//! accounts accepted, their keys fetched from Ferry's `/service-accounts/{id}/jwks`.
//!
//! Certificate-bound tokens (`cnf.x5t#S256`, RFC 8705 §3) need the request's client
//! certificate: with `TLS_CERT` and `TLS_KEY` (PEM files) the service terminates TLS and
//! asks clients for one ([`tls`]); behind a TLS-terminating proxy, `CLIENT_CERT_HEADER`,
//! `CLIENT_CERT_HEADER_FORMAT` and `TRUSTED_PEERS` read it from the proxy's header
//! ([`proxy`]).

mod either;
mod proxy;
mod tls;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::get;
use ferry_verify::net::{ClientSettings, Http, OutboundPolicy};
use ferry_verify::revocation::ClientCredentials;
use ferry_verify::time::MonoTime;
use ferry_verify::time::SystemMono;
use ferry_verify::{FerryAuth, FerryVerifier, ServiceAccountVerifier};
use serde_json::{Value, json};

async fn resource(FerryAuth(token): FerryAuth) -> Json<Value> {
    Json(json!({
        "hello": token.subject,
        "scopes": token.scopes,
        "bound": token.bound_jkt.is_some(),
        "certificate_bound": token.profile.cnf.as_ref().is_some_and(|c| c.x5t_s256.is_some()),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let listener = tokio::net::TcpListener::bind(
        std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into()),
    )
    .await?;
    let addr = listener.local_addr()?;
    let acceptor = match (std::env::var("TLS_CERT"), std::env::var("TLS_KEY")) {
        (Ok(cert), Ok(key)) => Some(tls::acceptor(&cert, &key)?),
        _ => None,
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let public_url = std::env::var("PUBLIC_URL").unwrap_or_else(|_| format!("{scheme}://{addr}"));
    let insecure: Vec<String> = std::env::var("INSECURE_ORIGINS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let http = Http::new(
        OutboundPolicy::new(&insecure, &[])?,
        &ClientSettings::default(),
    )?;
    let (issuer, audience) = (env("FERRY_ISSUER")?, env("AUDIENCE")?);
    let time: Arc<dyn MonoTime> = Arc::new(SystemMono::default());
    let mut verifier =
        FerryVerifier::discover(&issuer, &audience, &public_url, http.clone(), time.clone())
            .await?;
    let ids = std::env::var("SERVICE_ACCOUNTS").unwrap_or_default();
    let ids = ids.split(',').map(str::trim).filter(|s| !s.is_empty());
    let accounts = ServiceAccountVerifier::from_ferry(&issuer, &audience, ids, &http, &time)?;
    // REVOCATION_INTERVAL=N: refuse tokens Ferry revoked, learning of them within N s.
    if let Ok(n) = std::env::var("REVOCATION_INTERVAL") {
        let secs: u64 = n
            .parse()
            .map_err(|_| "REVOCATION_INTERVAL is not a number")?;
        let client = ClientCredentials::new(
            env("REVOCATION_CLIENT_ID")?,
            env("REVOCATION_CLIENT_SECRET")?,
        );
        verifier = verifier.with_revocations(http, std::time::Duration::from_secs(secs), client);
    }
    let verifiers = either::Verifiers {
        ferry_issuer: issuer,
        ferry: Arc::new(verifier),
        accounts: Arc::new(accounts),
    };
    let mut app = Router::new()
        .route("/resource", get(resource))
        .route("/whoami", get(either::whoami))
        .with_state(verifiers);
    if let Some(header) = proxy::ProxyHeader::from_env()? {
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(header),
            proxy::client_certificate,
        ));
    }
    println!("relying service listening on {scheme}://{addr}");
    match acceptor {
        Some(acceptor) => tls::serve(listener, acceptor, app).await,
        None => {
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app).await?;
        }
    }
    Ok(())
}
