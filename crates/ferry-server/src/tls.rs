//! HTTPS served directly with rustls (aws-lc-rs): certificate and key from PEM files,
//! reloaded when they change. Handshakes happen in each connection's task
//! (`crate::listener`), off the accept loop. Plain HTTP behind a proxy works too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use ferry_core::config::ClientCertMode;

/// The peer of a connection, plain or TLS (`ConnectInfo<Peer>` in every request's
/// extensions, put there by `crate::listener`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Why a certificate and key do not load, or TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or parsed.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not one the provider can sign with.
    #[error("{}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The server configuration cannot be built.
    #[error("{0}")]
    Config(#[source] rustls::Error),
}

fn pem_error(path: &Path) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error(cert))?
        .collect::<Result<_, _>>()
        .map_err(pem_error(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::Key {
            path: key.to_owned(),
            source,
        })?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A file's modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// A certificate that follows its files.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
    seen: Mutex<(Stamp, Stamp)>,
}

impl ReloadingCert {
    /// Loads the pair; an unreadable pair is an error at start.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let ck = load(cert, key)?;
        Ok(Arc::new(Self {
            current: RwLock::new(ck),
            cert: cert.to_owned(),
            key: key.to_owned(),
            seen: Mutex::new((stamp(cert), stamp(key))),
        }))
    }

    /// Reloads when either file changed; a pair that does not load keeps the old one.
    pub fn reload_if_changed(&self) {
        let now = (stamp(&self.cert), stamp(&self.key));
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match load(&self.cert, &self.key) {
            Ok(ck) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = ck;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the old one")
            }
        }
    }

    /// Polls the files every 2 s.
    pub fn watch(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                me.reload_if_changed();
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A TLS server configuration for a reloading certificate, asking clients for a
/// certificate as `client_auth` says.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_auth: ClientCertMode,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Config)?;
    let builder = match client_auth {
        ClientCertMode::Off => builder.with_no_client_auth(),
        mode => builder.with_client_cert_verifier(Arc::new(
            crate::client_cert::AnyClientCert::new(mode == ClientCertMode::Required),
        )),
    };
    let mut cfg = builder.with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A TLS acceptor for a certificate and key that are reloaded when their files change.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    acceptor_asking(cert, key, ClientCertMode::Off)
}

/// [`acceptor`] that asks clients for a certificate as `client_auth` says.
pub fn acceptor_asking(
    cert: &Path,
    key: &Path,
    client_auth: ClientCertMode,
) -> Result<TlsAcceptor, TlsError> {
    let cert = ReloadingCert::open(cert, key)?;
    cert.watch();
    Ok(TlsAcceptor::from(server_config(cert, client_auth)?))
}
