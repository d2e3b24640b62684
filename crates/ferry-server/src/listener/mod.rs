//! The accept loop: HTTP/1.1 served with hyper directly, plain or over TLS, so that the
//! limits a client can break before a request exists hold at the connection:
//!
//! 1. At accept, the per-source connection cap ([`cap`]); over it, the socket is closed
//!    before a TLS handshake or a byte is read.
//! 2. The TLS handshake, within 10 s, in the connection's own task (a slow client
//!    cannot stall the accept loop).
//! 3. The header size limit (`limits.max_header_bytes`) enforced by hyper while the
//!    header is read: 431 and close once that many bytes arrived without a complete
//!    header, not after hundreds of kilobytes were buffered. The read buffer is bounded
//!    to the same size.
//! 4. The header-read and idle deadlines ([`deadline`]).
//! 5. The router, with `ConnectInfo<Peer>` in every request's extensions. Everything per
//!    request (load shedding, timeouts, rate limits) happens there, so a request takes a
//!    concurrency permit only once its connection was admitted and its header arrived.
//!
//! While the process drains after SIGTERM (`limits.shutdown_delay`, see
//! [`crate::lifecycle`]) the loop still accepts, and every response carries
//! `Connection: close` so clients reconnect elsewhere. On shutdown the loop stops
//! accepting, idle connections close, and requests in flight finish; [`Server::run`]
//! returns when the last connection ended.

pub mod activation;
pub mod cap;
pub mod deadline;
pub mod proxy_protocol;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::client_cert::{ClientChain, PeerCertificate};
use crate::client_cert_header::TcpPeer;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::tls::Peer;
use cap::ConnectionCap;
use deadline::{Deadlines, Expired, Watched};
use ferry_core::config::Limits;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper refuses a read buffer smaller than this.
const MIN_BUF: usize = 8 * 1024;

/// The connection-level limits, from `limits:`.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `limits.header_read_timeout`.
    pub header_read_timeout: Duration,
    /// `limits.idle_timeout`.
    pub idle_timeout: Duration,
    /// `limits.max_header_bytes`.
    pub max_header_bytes: usize,
}

impl Options {
    /// The options `limits` sets.
    pub fn from_limits(l: &Limits) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(l.header_read_timeout),
            idle_timeout: Duration::from_secs(l.idle_timeout),
            max_header_bytes: l.max_header_bytes,
        }
    }
}

/// A bound listener with its limits.
pub struct Server {
    /// The bound socket.
    pub tcp: TcpListener,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// The per-source connection cap.
    pub cap: Arc<ConnectionCap>,
    /// Timeouts and sizes.
    pub options: Options,
    /// Where refusals are counted (`ferry_limited_total{limit=…}`).
    pub metrics: Arc<Metrics>,
    /// Whether the process drains: responses then carry `Connection: close`.
    pub lifecycle: Option<Arc<Lifecycle>>,
    /// Trusted proxies: exempt from the connection cap and, with `proxy_protocol`, read
    /// for a PROXY protocol v2 header naming the client.
    pub proxies: Arc<Vec<ipnet::IpNet>>,
    /// Whether trusted peers send a PROXY protocol v2 header.
    pub proxy_protocol: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .field("cap", &self.cap)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn count(metrics: &Metrics, limit: &str) {
    metrics.count_limited(limit);
}

impl Server {
    /// A server on `tcp` with the connection limits of `limits`.
    pub fn new(
        tcp: TcpListener,
        tls: Option<TlsAcceptor>,
        limits: &Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            tcp,
            tls,
            // No peer is exempt yet. Trusted proxies, once configured, are: a proxy
            // carries many clients on its connections.
            cap: ConnectionCap::new(limits.max_connections_per_source, Box::new(|_| false)),
            options: Options::from_limits(limits),
            metrics,
            lifecycle: None,
            proxies: Arc::new(Vec::new()),
            proxy_protocol: false,
        }
    }

    /// Behind `proxies`: their connections are not capped per source (each carries many
    /// clients), and with `proxy_protocol` each must start with a PROXY v2 header.
    #[must_use]
    pub fn behind(
        mut self,
        proxies: Vec<ipnet::IpNet>,
        proxy_protocol: bool,
        max_per_source: usize,
    ) -> Self {
        let proxies = Arc::new(proxies);
        let exempt = proxies.clone();
        self.cap = ConnectionCap::new(
            max_per_source,
            Box::new(move |ip| {
                ferry_core::config::is_trusted(&exempt, crate::forwarded::canonical(ip))
            }),
        );
        self.proxies = proxies;
        self.proxy_protocol = proxy_protocol;
        self
    }

    /// Closes each connection after its response once `lifecycle` drains.
    #[must_use]
    pub fn closing_when_draining(mut self, lifecycle: Arc<Lifecycle>) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Serves `app` until `shutdown` resolves, then waits for the open connections to
    /// finish their requests.
    pub async fn run(self, app: Router, shutdown: impl Future<Output = ()>) {
        let Self {
            tcp,
            tls,
            cap,
            options,
            metrics,
            lifecycle,
            proxies,
            proxy_protocol,
        } = self;
        let (stop, stopping) = watch::channel(false);
        // Every connection task holds a sender: `recv` returns `None` once all ended.
        let (alive, mut all_ended) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            let (stream, addr) = tokio::select! {
                accepted = tcp.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors, most often: back off instead of spinning.
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Some(admitted) = cap.admit(addr.ip()) else {
                count(&metrics, "connections");
                tracing::debug!("connection refused: per-source connection cap");
                drop(stream);
                continue;
            };
            let (app, tls, stopping, alive, metrics, lifecycle) = (
                app.clone(),
                tls.clone(),
                stopping.clone(),
                alive.clone(),
                metrics.clone(),
                lifecycle.clone(),
            );
            let read_header = proxy_protocol
                && ferry_core::config::is_trusted(&proxies, crate::forwarded::canonical(addr.ip()));
            tokio::spawn(async move {
                let _held = (admitted, alive);
                let mut stream = stream;
                let tcp = addr;
                let Some(addr) = client_of(&mut stream, addr, read_header).await else {
                    return;
                };
                let conn = Connection {
                    peer: Peer(addr),
                    tcp: TcpPeer(tcp),
                    certificate: None,
                    app,
                    options,
                    stopping,
                    metrics,
                    lifecycle,
                };
                conn.start(stream, tls).await;
            });
        }
        drop(tcp);
        let _ = stop.send(true);
        drop(alive);
        let _ = all_ended.recv().await;
    }
}

/// The connection's client: its peer, or, from a trusted proxy sending the PROXY
/// protocol, the address its header names. `None`: no valid header in time (closed).
async fn client_of(
    stream: &mut tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    read_header: bool,
) -> Option<std::net::SocketAddr> {
    if !read_header {
        return Some(peer);
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, proxy_protocol::read(stream, peer)).await {
        Ok(Ok(client)) => Some(client),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection refused: PROXY protocol");
            None
        }
        Err(_) => {
            tracing::debug!("connection refused: no PROXY protocol header in time");
            None
        }
    }
}

/// One accepted connection.
struct Connection {
    peer: Peer,
    /// The TCP peer itself, which `peer` is not behind a PROXY protocol header.
    tcp: TcpPeer,
    /// The client certificate of a TLS connection that presented one.
    certificate: Option<PeerCertificate>,
    app: Router,
    options: Options,
    stopping: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    lifecycle: Option<Arc<Lifecycle>>,
}

impl Connection {
    /// Serves the connection, after a TLS handshake when the listener has TLS; a TLS
    /// client's certificate, if it presented one, goes with each of its requests.
    async fn start(mut self, stream: tokio::net::TcpStream, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.serve(stream).await;
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                self.certificate = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| {
                        ClientChain::new(c.iter().map(|d| d.clone().into_owned()).collect())
                    })
                    .map(|c| PeerCertificate(Arc::new(c)));
                self.serve(tls).await
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let o = self.options;
        let deadlines = Deadlines::new(o.header_read_timeout, o.idle_timeout);
        let (peer, tcp, app, tracked) = (self.peer, self.tcp, self.app.clone(), deadlines.clone());
        let certificate = self.certificate.take();
        let lifecycle = self.lifecycle.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(tcp);
            if let Some(c) = &certificate {
                req.extensions_mut().insert(c.clone());
            }
            let busy = tracked.busy();
            let served = app.clone().oneshot(req.map(Body::new));
            let lifecycle = lifecycle.clone();
            async move {
                let mut response = served.await;
                drop(busy);
                // Draining: this connection carries no further request (RFC 9112 §9.6);
                // the client's next one opens a connection the load balancer routes
                // to a replica that stays.
                if let Ok(r) = response.as_mut()
                    && lifecycle.as_ref().is_some_and(|l| l.draining())
                {
                    r.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        });
        let mut builder = http1::Builder::new();
        builder
            // Our deadlines (below) replace hyper's header timer, which would also cut
            // idle keep-alive connections at the header timeout.
            .header_read_timeout(None)
            .max_header_size(o.max_header_bytes)
            .max_buf_size(o.max_header_bytes.max(MIN_BUF));
        let conn =
            builder.serve_connection(TokioIo::new(Watched::new(io, deadlines.clone())), service);
        tokio::pin!(conn);
        let expired = deadlines.expired();
        tokio::pin!(expired);
        let mut draining = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        if e.is_parse_too_large() {
                            count(&self.metrics, "headers");
                        }
                        tracing::debug!(error = %e, "connection ended");
                    }
                    return;
                }
                // Dropping the connection closes the socket.
                which = &mut expired => {
                    if which == Expired::Header {
                        count(&self.metrics, "header_timeout");
                        tracing::debug!("connection closed: header_read_timeout");
                    }
                    return;
                }
                _ = self.stopping.wait_for(|s| *s), if !draining => {
                    // Finish the request in flight, if any, then close.
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
