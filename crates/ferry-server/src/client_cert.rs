//! Client certificates: asked for by the TLS listener (`tls.client_auth`), which proves
//! the client holds the key of the certificate it presents and nothing more; whether the
//! chain is acceptable is decided where it is used (a client's registration, an `x509`
//! provider's trust anchors, a bound token's thumbprint). A request carries the chain it
//! came with as a [`ClientChain`] extension.

use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;

/// The certificate chain a client presented, leaf first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChain {
    leaf: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    thumbprint: String,
}

impl ClientChain {
    /// A chain, leaf first; `None` when empty.
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Option<Self> {
        let mut chain = chain.into_iter();
        let leaf = chain.next()?;
        let thumbprint = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &leaf));
        Some(Self {
            leaf,
            intermediates: chain.collect(),
            thumbprint,
        })
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.leaf
    }

    /// The certificates after the leaf, as the client sent them.
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates
    }

    /// RFC 8705 §3.1 `x5t#S256`: the base64url SHA-256 of the leaf's DER.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

/// A request's client certificate, when its connection (or a trusted proxy) gave one.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<ClientChain>);

pub use ferry_verify::tls_client_cert::AnyClientCert;
