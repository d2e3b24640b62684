//! The metrics-only listener (`metrics.listen`): `GET /metrics` (and `HEAD`) and nothing
//! else — every other path is a 404 and every other method a 405, so nothing that
//! explains, revokes or issues is reachable through it. It needs no TLS or bearer token,
//! off loopback too: the page holds counts and configured names (provider ids, audience
//! names, routes, error codes), never a token, subject or value from a request, and its
//! requests are not counted by route or method, so a client of this listener cannot add
//! a series (the label sets are bounded: see [`crate::metrics`]). It is served through
//! the same listener as the others (header size and deadlines, per-source connection
//! cap; refusals there count under their fixed limit names) and is no audit event.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use ferry_core::config::MetricsListener;

use crate::listener::Server;
use crate::state::AppState;

/// The metrics-only router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(crate::admin::metrics_page))
        .with_state(state)
}

/// The bound metrics-only listener, not yet serving.
#[derive(Debug)]
pub struct MetricsSocket {
    tcp: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsSocket {
    /// Binds `metrics.listen`, if set.
    pub async fn bind(metrics: &MetricsListener) -> anyhow::Result<Option<Self>> {
        let Some(listen) = &metrics.listen else {
            return Ok(None);
        };
        let tcp = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding the metrics listener {listen}: {e}"))?;
        let addr = tcp.local_addr()?;
        Ok(Some(Self { tcp, addr }))
    }

    /// Serves `/metrics` in the background until the process ends.
    pub fn serve(self, state: AppState) {
        let limits = state.loaded().config.limits.clone();
        let server = Server::new(self.tcp, None, &limits, state.metrics.clone());
        tracing::info!(target: "ferry", "ferry metrics listening on http://{}", self.addr);
        tokio::spawn(server.run(router(state), std::future::pending()));
    }
}
