//! Client certificates: asked for by the TLS listener (`tls.client_auth`), which proves
//! the client holds the key of the certificate it presents and nothing more; whether the
//! chain is acceptable is decided where it is used (a client's registration, an `x509`
//! provider's trust anchors, a bound token's thumbprint). A request carries the chain it
//! came with as a [`ClientChain`] extension.

use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

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

/// Asks for a client certificate and proves possession of its key; accepts any chain.
#[derive(Debug)]
pub struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    /// A verifier; `mandatory` refuses handshakes without a certificate.
    pub fn new(mandatory: bool) -> Self {
        Self {
            mandatory,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain is judged per use; the handshake signature below proves the key.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
