//! X.509 certificate chains as subject tokens (Google's "X.509 certificate federation",
//! subject token type `urn:ietf:params:oauth:token-type:mtls`): the chain decoded from
//! the JSON array of base64 DER certificates Google's clients send (leaf first), validated
//! by `rustls-webpki` against a provider's trust anchors and intermediates (signatures,
//! the clientAuth extended key usage, validity with leeway, path length, name
//! constraints), and the leaf read into the variables a mapping sees, named as Google
//! names them (`assertion.subject.dn.cn`, …), plus `assertion.spiffe_id`.
//!
//! Whether the leaf is the certificate the client proved on its connection is the
//! caller's check: this module only knows certificates.

mod names;

use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

pub use names::{Leaf, SpiffeId, read_leaf};

/// The most certificates a subject token may hold (leaf and intermediates).
pub const MAX_CHAIN: usize = 8;
/// The largest certificate accepted, DER bytes.
pub const MAX_CERT_BYTES: usize = 16 * 1024;

/// Why a chain is refused. Messages are fixed: they never echo the certificates.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// Not a JSON array of base64 strings.
    #[error("the mtls subject token is not a JSON array of base64 DER certificates")]
    Encoding,
    /// An empty array.
    #[error("the mtls subject token holds no certificate")]
    Empty,
    /// Too many or too large certificates.
    #[error("the mtls subject token holds too many or too large certificates")]
    TooLarge,
    /// A certificate that does not parse.
    #[error("a certificate of the chain is malformed")]
    Malformed,
    /// The chain does not validate to the anchors (the verifier's reason).
    #[error("the certificate chain does not validate: {0:?}")]
    Untrusted(webpki::Error),
    /// A URI SAN with the `spiffe` scheme that is not a valid SPIFFE ID.
    #[error("the certificate's SPIFFE ID is malformed ({0})")]
    BadSpiffeId(&'static str),
    /// More than one SPIFFE ID (an X.509-SVID has exactly one).
    #[error("the certificate carries more than one SPIFFE ID")]
    SeveralSpiffeIds,
    /// A subject CN that reads as a SPIFFE ID on a certificate without a SPIFFE ID.
    #[error("the certificate's CN looks like a SPIFFE ID but it carries no SPIFFE ID")]
    SpiffeLookalike,
    /// The SPIFFE ID is missing or of another trust domain than the provider's.
    #[error("the certificate's SPIFFE ID is not in the provider's trust domain")]
    TrustDomain,
}

impl X509Error {
    /// Whether the chain leads to none of the anchors (rather than to one, and failing
    /// another check).
    pub fn is_unknown_issuer(&self) -> bool {
        matches!(self, Self::Untrusted(webpki::Error::UnknownIssuer))
    }
}

/// Why trust anchors or intermediates could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No certificate in the PEM text.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found")]
    Empty,
    /// A PEM section that does not decode.
    #[error("malformed PEM")]
    Pem,
    /// A certificate webpki cannot use as a trust anchor.
    #[error("a certificate is not usable as a trust anchor: {0:?}")]
    Anchor(webpki::Error),
}

/// A provider's trust store: its anchors and the intermediates it knows.
#[derive(Debug, Clone)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
}

/// The certificates of a PEM text, at least one.
fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StoreError::Pem)?;
    if certs.is_empty() {
        return Err(StoreError::Empty);
    }
    Ok(certs)
}

impl TrustStore {
    /// A store from PEM texts: each anchor text holds one or more certificates; the
    /// intermediates' texts may be none.
    pub fn from_pem(anchors: &[Vec<u8>], intermediates: &[Vec<u8>]) -> Result<Self, StoreError> {
        let mut out = Vec::new();
        for text in anchors {
            for der in pem_certs(text)? {
                let anchor = webpki::anchor_from_trusted_cert(&der).map_err(StoreError::Anchor)?;
                out.push(anchor.to_owned());
            }
        }
        let mut inter = Vec::new();
        for text in intermediates {
            inter.extend(pem_certs(text)?);
        }
        Ok(Self {
            anchors: out,
            intermediates: inter,
        })
    }

    /// Validates `chain` (leaf first) for client authentication at `now` (Unix
    /// seconds), `leeway` seconds either side: the path is built from the chain's own
    /// intermediates and the store's. Returns the earliest `notAfter` of the leaf and
    /// the intermediates on the validated path.
    ///
    /// Leeway: the chain is validated at `now`; only when that fails because a
    /// certificate is not yet valid is it validated again at `now + leeway`, and only
    /// when one has expired at `now - leeway`. Every certificate must be valid at the
    /// one instant that succeeds, so a chain is accepted exactly when its certificates
    /// share an instant of validity within `leeway` of now.
    pub fn verify(&self, chain: &Chain, now: i64, leeway: i64) -> Result<i64, X509Error> {
        let leaf = EndEntityCert::try_from(&chain.leaf).map_err(X509Error::Untrusted)?;
        let mut candidates = chain.intermediates.clone();
        candidates.extend(self.intermediates.iter().cloned());
        let at = |t: i64| {
            let result = leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &candidates,
                unix(t),
                KeyUsage::client_auth(),
                None,
                None,
            );
            result.map(|path| {
                path.intermediate_certificates()
                    .map(|c| names::not_after(&c.der()))
                    .fold(names::not_after(&chain.leaf), |a, b| match (a, b) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        _ => None,
                    })
            })
        };
        let outcome = match at(now) {
            Err(webpki::Error::CertNotValidYet { .. }) => at(now.saturating_add(leeway)),
            Err(webpki::Error::CertExpired { .. }) => at(now.saturating_sub(leeway)),
            other => other,
        };
        outcome
            .map_err(X509Error::Untrusted)?
            .ok_or(X509Error::Malformed)
    }
}

fn unix(t: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(t).unwrap_or(0)))
}

/// A chain as a subject token carries it: the leaf, then what the client sent after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The leaf certificate.
    pub leaf: CertificateDer<'static>,
    /// The certificates after the leaf.
    pub intermediates: Vec<CertificateDer<'static>>,
}

/// Decodes an `…:mtls` subject token: a JSON array of base64 DER certificates, leaf
/// first (standard alphabet, padded or not; a space is read as the `+` a form encoding
/// lost).
pub fn decode_chain(token: &str) -> Result<Chain, X509Error> {
    if token.len() > MAX_CHAIN * MAX_CERT_BYTES * 2 {
        return Err(X509Error::TooLarge);
    }
    let items: Vec<String> = serde_json::from_str(token).map_err(|_| X509Error::Encoding)?;
    if items.len() > MAX_CHAIN {
        return Err(X509Error::TooLarge);
    }
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut certs = Vec::with_capacity(items.len());
    for item in items {
        let cleaned: String = item
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
            .map(|c| if c == ' ' { '+' } else { c })
            .collect();
        if cleaned.len() > MAX_CERT_BYTES / 3 * 4 + 4 {
            return Err(X509Error::TooLarge);
        }
        let der = engine.decode(cleaned).map_err(|_| X509Error::Encoding)?;
        certs.push(CertificateDer::from(der));
    }
    let mut certs = certs.into_iter();
    let leaf = certs.next().ok_or(X509Error::Empty)?;
    Ok(Chain {
        leaf,
        intermediates: certs.collect(),
    })
}

#[cfg(test)]
mod tests;
