//! Mutual-TLS client authentication (RFC 8705 §2): a registered client proves who it is
//! with the certificate its connection presented (the TLS listener has already proven
//! the client holds its key, and accepted any chain: the chain is judged here, per
//! client).
//!
//! - `tls_client_auth` (§2.1): the chain validates to the client's `ca_file`, else
//!   `tls.client_ca_file`, with the verifier `x509` providers use
//!   ([`ferry_verify::x509::TrustStore`], on rustls-webpki: signatures, validity within
//!   [`LEEWAY`] of Ferry's clock, the clientAuth EKU when the leaf has an EKU, basic and
//!   name constraints, path length), the intermediates taken from the chain the client
//!   sent; and the leaf carries the one name the client is registered with (§2.1.2).
//! - `self_signed_tls_client_auth` (§2.2): the leaf's public key is one of the client's
//!   registered keys. No chain, no validity period: the registration is the trust.
//!
//! The trust anchors and keys are read when the configuration loads, never per request.

mod keys;

use std::path::Path;
use std::sync::Arc;

use ferry_core::config::{CertificateName, Client, ClientAuth, KeysConfig};
use ferry_verify::x509::{Chain, TrustStore};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use keys::PublicKeyParams;

use crate::client_cert::ClientChain;

/// What a certificate-authenticated client's certificate is checked against.
#[derive(Debug, Clone)]
pub enum CertificateCheck {
    /// `tls_client_auth`: a chain to these anchors, and this name on the leaf.
    Chain {
        /// The trust anchors (the client's `ca_file` or `tls.client_ca_file`).
        anchors: Arc<TrustStore>,
        /// The registered name.
        name: CertificateName,
    },
    /// `self_signed_tls_client_auth`: one of these keys.
    SelfSigned(Vec<PublicKeyParams>),
}

/// Why a certificate does not authenticate a client (logged, never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateRefused {
    /// The request came without a client certificate.
    #[error("no client certificate")]
    Missing,
    /// The leaf does not parse.
    #[error("the client certificate does not parse")]
    Malformed,
    /// The chain does not validate to the client's trust anchors.
    #[error("the client certificate chain does not validate to the client's CA")]
    Chain,
    /// The leaf does not carry the registered name.
    #[error("the client certificate does not carry the registered name")]
    Name,
    /// The leaf's key is not one of the client's.
    #[error("the client certificate's key is not registered for the client")]
    Key,
}

/// Clock difference allowed at a certificate's validity bounds, seconds (as for JWTs).
pub const LEEWAY: i64 = 60;

/// Reads a PEM bundle of trust anchors.
pub fn load_anchors(path: &Path) -> Result<Arc<TrustStore>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TrustStore::from_pem(&[pem], &[])
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The check for a client registered with a certificate method; `None` for the others.
/// `default_anchors`: `tls.client_ca_file`, read once for every client that uses it.
pub fn check_for(
    client: &Client,
    default_anchors: Option<&Arc<TrustStore>>,
) -> Result<Option<CertificateCheck>, String> {
    match client.auth {
        ClientAuth::TlsClientAuth => {
            let anchors = match &client.ca_file {
                Some(f) => load_anchors(f)?,
                None => default_anchors
                    .cloned()
                    .ok_or("needs ca_file or tls.client_ca_file")?,
            };
            let name = client
                .certificate
                .clone()
                .ok_or("needs one tls_client_auth_* name")?;
            Ok(Some(CertificateCheck::Chain { anchors, name }))
        }
        ClientAuth::SelfSignedTlsClientAuth => {
            let text = match &client.keys {
                Some(KeysConfig::Inline(t)) => t.clone(),
                Some(KeysConfig::File(f)) => {
                    std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?
                }
                _ => return Err("needs a jwks file or inline set".to_owned()),
            };
            keys::from_jwks(&text)
                .map(|k| Some(CertificateCheck::SelfSigned(k)))
                .map_err(|e| format!("the jwks {e}"))
        }
        _ => Ok(None),
    }
}

/// Whether the leaf carries the registered name (RFC 8705 §2.1.2): its subject DN, or
/// one subjectAltName entry of the registered type equal to the registered value.
fn has_name(leaf: &X509Certificate<'_>, name: &CertificateName) -> bool {
    if let CertificateName::SubjectDn(dn) = name {
        let subject = leaf
            .subject()
            .iter_rdn()
            .map(|rdn| {
                rdn.iter()
                    .map(|a| {
                        let value = a.as_str().ok().map(str::to_owned);
                        (a.attr_type().to_id_string(), value)
                    })
                    .collect()
            })
            .collect();
        return dn.matches(subject);
    }
    // A certificate with two SAN extensions does not parse here, and matches nothing.
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|g| match (name, g) {
        (CertificateName::SanDns(want), GeneralName::DNSName(got)) => {
            want.eq_ignore_ascii_case(got)
        }
        (CertificateName::SanUri(want), GeneralName::URI(got)) => want.as_str() == *got,
        (CertificateName::SanIp(want), GeneralName::IPAddress(got)) => match want {
            std::net::IpAddr::V4(a) => a.octets().as_slice() == *got,
            std::net::IpAddr::V6(a) => a.octets().as_slice() == *got,
        },
        (CertificateName::SanEmail(want), GeneralName::RFC822Name(got)) => {
            CertificateName::email_matches(want, got)
        }
        _ => false,
    })
}

/// RFC 8705 §2.1: the chain to the anchors, for client authentication, at `now`.
fn chain_valid(chain: &ClientChain, anchors: &TrustStore, now: i64) -> bool {
    let chain = Chain {
        leaf: chain.leaf().clone(),
        intermediates: chain.intermediates().to_vec(),
    };
    anchors.verify(&chain, now, LEEWAY).is_ok()
}

/// Checks a client's certificate; `now` is Ferry's clock (Unix seconds).
pub fn verify(
    check: &CertificateCheck,
    chain: Option<&ClientChain>,
    now: i64,
) -> Result<(), CertificateRefused> {
    let chain = chain.ok_or(CertificateRefused::Missing)?;
    let (_, leaf) =
        X509Certificate::from_der(chain.leaf()).map_err(|_| CertificateRefused::Malformed)?;
    match check {
        CertificateCheck::Chain { anchors, name } => {
            if !chain_valid(chain, anchors, now) {
                return Err(CertificateRefused::Chain);
            }
            if !has_name(&leaf, name) {
                return Err(CertificateRefused::Name);
            }
            Ok(())
        }
        CertificateCheck::SelfSigned(registered) => {
            let key = keys::from_spki(leaf.public_key()).ok_or(CertificateRefused::Key)?;
            if registered.contains(&key) {
                Ok(())
            } else {
                Err(CertificateRefused::Key)
            }
        }
    }
}
