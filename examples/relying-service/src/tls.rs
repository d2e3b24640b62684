//! The service terminating TLS itself and asking for a client certificate: each request
//! carries its connection's leaf certificate as a [`ClientCertificate`], which is what
//! a certificate-bound token (`cnf.x5t#S256`) is checked against. The handshake proves
//! the client holds the certificate's key; no chain is required, since the token's
//! binding, not a CA, says which certificate may use it (RFC 8705 §3; self-signed
//! client certificates work).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use ferry_verify::ClientCertificate;
use ferry_verify::tls_client_cert::AnyClientCert;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// A TLS acceptor with the server's certificate chain and key (PEM files).
pub fn acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, Box<dyn std::error::Error>> {
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // Optional: a bearer token needs no certificate.
    let verifier = AnyClientCert::new(false);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS: every request gets its connection's peer address and, when
/// the client presented one, its leaf certificate.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(<[_]>::first)
                .map(|c| ClientCertificate(c.to_vec()));
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                if let Some(c) = &leaf {
                    req.extensions_mut().insert(c.clone());
                }
                app.clone().oneshot(req.map(Body::new))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
