//! The X.509 grant: an `…:mtls` subject token (Google's format: a JSON array of base64
//! DER certificates, leaf first) for a `kind: x509` provider. The token only names a
//! chain; what makes it a credential is the connection: its leaf must be, byte for byte,
//! the client certificate whose key the client proved in the TLS handshake (or that a
//! trusted proxy forwarded). The chain belongs to the first x509 provider, in
//! configuration order, whose trust anchors validate it; the leaf becomes the claims the
//! mapping reads (`assertion.subject.dn.cn`, `assertion.spiffe_id`, …); the rest is the
//! pipeline's.

use ferry_core::config::ProviderKind;
use ferry_core::error::desc;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_verify::x509::{self, Chain, X509Error};

use super::subject::{Ask, Subject, Trail};
use crate::charge::{Refused, mapped};
use crate::errors::Role;
use crate::state::{Loaded, TrustedProvider};

fn refused(e: &X509Error) -> Refused {
    Refused::Error(Role::Subject.invalid(e.to_string()))
}

/// No client certificate came with the request: the subject token proves nothing alone.
fn no_certificate() -> Refused {
    Refused::Error(
        OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Verify,
            desc::MTLS_SUBJECT_WITHOUT_CERTIFICATE,
        )
        .detail("mtls subject token on a connection without a client certificate"),
    )
}

/// The first x509 provider, in configuration order, whose anchors validate `chain`, and
/// the chain's earliest `notAfter`. When none does, the reason given is that of a
/// provider whose anchors knew the chain (expired, wrong usage, …) over "unknown issuer".
fn provider_for<'a>(
    loaded: &'a Loaded,
    chain: &Chain,
    now: i64,
) -> Result<(&'a TrustedProvider, i64), Refused> {
    let mut why: Option<X509Error> = None;
    let x509_providers = loaded
        .config
        .providers
        .iter()
        .filter(|p| p.kind == ProviderKind::X509);
    for p in x509_providers {
        let Some((tp, store)) = loaded
            .providers
            .get(&p.issuer)
            .and_then(|tp| tp.x509.as_ref().map(|s| (tp, s)))
        else {
            continue;
        };
        let leeway = i64::try_from(p.leeway.as_secs()).unwrap_or(0);
        let _span = tracing::info_span!("verify", provider = %p.id).entered();
        match store.verify(chain, now, leeway) {
            Ok(exp) => return Ok((tp, exp)),
            Err(e) => {
                if why.is_none() || !e.is_unknown_issuer() {
                    why = Some(e);
                }
            }
        }
    }
    Err(match why {
        Some(e) => refused(&e),
        None => Refused::Error(Role::Subject.invalid("no x509 provider is configured")),
    })
}

/// A certificate chain, presented on the connection, as the subject.
pub fn certificate_chain(
    loaded: &Loaded,
    ask: &Ask,
    now: i64,
    trail: &mut Trail,
) -> Result<Subject, Refused> {
    // 1. The connection's certificate: the subject token speaks only for it.
    let presented = ask.certificate.as_ref().ok_or_else(no_certificate)?;
    // 2. The chain, leaf first.
    let chain = x509::decode_chain(&ask.credential).map_err(|e| refused(&e))?;
    // 3. Its leaf is the certificate whose key the client proved.
    if chain.leaf.as_ref() != presented.leaf().as_ref() {
        return Err(Refused::Error(Role::Subject.invalid(
            "the subject token's leaf is not the client certificate of the connection",
        )));
    }
    // 4. The provider whose anchors validate it (EKU clientAuth, validity with leeway,
    //    path length, name constraints: rustls-webpki).
    let (provider, exp) = provider_for(loaded, &chain, now)?;
    trail.provider = Some(provider.config.id.clone());
    // 5. The leaf's variables, its SPIFFE ID checked (one at most, valid, in the
    //    provider's trust domain when one is set).
    let trust_domain = provider
        .config
        .x509
        .as_ref()
        .and_then(|s| s.spiffe_trust_domain.as_deref());
    let leaf = x509::read_leaf(&chain.leaf, trust_domain).map_err(|e| refused(&e))?;
    trail.original_issuer = Some(crate::audit::bounded(&leaf.issuer_dn));
    trail.original_subject = Some(crate::audit::bounded(&leaf.subject_dn));
    // 6. The provider's condition and mapping.
    let mut principal = {
        let _span = tracing::info_span!("policy").entered();
        mapped(provider, &leaf.claims)?
    };
    // The provenance Ferry's tokens carry (`ferry.iss`, `ferry.sub`): the leaf's issuer
    // and subject distinguished names.
    principal.original_issuer = leaf.issuer_dn;
    principal.original_subject = Some(leaf.subject_dn).filter(|s| !s.is_empty());
    // The chain itself is bearer; binding the issued token to the certificate is the
    // binding step's (the connection's certificate).
    Ok(super::provider::provider_subject(
        provider, principal, exp, ask,
    ))
}
