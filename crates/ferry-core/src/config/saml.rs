//! A `kind: saml` provider: the identity provider's `entity_id` (the `Issuer` its
//! assertions carry, and the provider's issuer), its signing certificates from metadata
//! (a file, or a URL fetched and cached like a JWKS) or inline PEM, and the assertion
//! checks only SAML has: recipients, single use, the SHA-1 opt-in.

use std::path::Path;

use super::errors::ConfigErrors;
use super::keys::fetchable;
use super::model::{KeysConfig, Outbound, ProviderKind};
use super::raw::RawProvider;

/// The SAML-only settings of a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlSettings {
    /// `SubjectConfirmationData@Recipient` (and a response's `Destination`) values
    /// accepted: by default every URL Ferry answers token requests on.
    pub recipients: Vec<String>,
    /// Whether every assertion's `ID` is single use (besides those with `OneTimeUse`).
    pub single_use: bool,
    /// Whether SHA-1 signatures and digests are accepted.
    pub allow_sha1: bool,
}

/// The URLs Ferry answers token requests on, under its issuer.
pub fn token_endpoints(ferry_issuer: &str) -> Vec<String> {
    vec![format!("{}/token", ferry_issuer.trim_end_matches('/'))]
}

/// The members only a SAML provider takes, refused elsewhere; and the JWT members a SAML
/// provider does not take.
pub(super) fn members(errs: &mut ConfigErrors, path: &str, p: &RawProvider, kind: ProviderKind) {
    let saml = kind == ProviderKind::Saml;
    let only_saml = [
        (p.entity_id.is_some(), "entity_id"),
        (p.metadata.is_some(), "metadata"),
        (p.certificates.is_some(), "certificates"),
        (p.recipients.is_some(), "recipients"),
        (p.single_use.is_some(), "single_use"),
        (p.allow_sha1.is_some(), "allow_sha1"),
    ];
    let not_saml = [
        (
            p.issuer.is_some(),
            "issuer (a SAML provider is named by entity_id)",
        ),
        (
            p.jwks.is_some(),
            "jwks (a SAML provider takes metadata or certificates)",
        ),
        (p.discovery_url.is_some(), "discovery_url"),
        (
            p.algorithms.is_some(),
            "algorithms (XML signature algorithms are fixed; see allow_sha1)",
        ),
        (p.accepted_types.is_some(), "accepted_types"),
        (p.api_server.is_some(), "api_server"),
        (p.max_token_age.is_some(), "max_token_age"),
    ];
    if !saml {
        for (set, name) in only_saml {
            if set {
                errs.push(format!("{path}.{name}"), "applies only to kind saml");
            }
        }
        return;
    }
    for (set, name) in not_saml {
        if set {
            errs.push(path, format!("a saml provider takes no {name}"));
        }
    }
}

/// A SAML provider's certificates: `metadata: {file}` or `{url}`, or `certificates`
/// (PEM), exactly one.
pub(super) fn keys(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    base: &Path,
    outbound: &Outbound,
) -> Option<KeysConfig> {
    let given = [p.metadata.is_some(), p.certificates.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        errs.push(
            path,
            "a saml provider needs exactly one of metadata or certificates",
        );
        return None;
    }
    if let Some(pems) = &p.certificates {
        if pems.is_empty()
            || pems
                .iter()
                .any(|c| !c.contains("-----BEGIN CERTIFICATE-----"))
        {
            errs.push(
                format!("{path}.certificates"),
                "must be a list of PEM certificates (-----BEGIN CERTIFICATE-----)",
            );
            return None;
        }
        return Some(KeysConfig::SamlCertificates(pems.join("\n")));
    }
    let m = p.metadata.as_ref()?;
    match (&m.file, &m.url) {
        (Some(f), None) => Some(KeysConfig::SamlMetadataFile(base.join(f))),
        (None, Some(u)) => match fetchable(u, outbound) {
            Some(url) => Some(KeysConfig::SamlMetadataUrl(url)),
            None => {
                errs.push(
                    format!("{path}.metadata.url"),
                    "must be an https URL (or an origin listed in outbound.allow_insecure_origins)",
                );
                None
            }
        },
        _ => {
            errs.push(
                format!("{path}.metadata"),
                "give exactly one of file or url",
            );
            None
        }
    }
}

/// The entity id, required.
pub(super) fn entity_id(errs: &mut ConfigErrors, path: &str, p: &RawProvider) -> String {
    let id = p.entity_id.clone().unwrap_or_default();
    if id.trim().is_empty() || id.trim() != id {
        errs.push(
            format!("{path}.entity_id"),
            "is required (the identity provider's entity id, exactly as its assertions' Issuer)",
        );
    }
    id
}

/// The SAML settings, recipients defaulting to Ferry's token endpoints.
pub(super) fn settings(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    ferry_issuer: &str,
) -> SamlSettings {
    let recipients = match &p.recipients {
        Some(r) if r.is_empty() || r.iter().any(|x| x.trim().is_empty()) => {
            errs.push(
                format!("{path}.recipients"),
                "must be a non-empty list of URLs",
            );
            Vec::new()
        }
        Some(r) => r.clone(),
        None => token_endpoints(ferry_issuer),
    };
    SamlSettings {
        recipients,
        single_use: p.single_use.unwrap_or(false),
        allow_sha1: p.allow_sha1.unwrap_or(false),
    }
}
