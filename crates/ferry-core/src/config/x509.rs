//! A `kind: x509` provider: certificate chains as `…:mtls` subject tokens, validated to
//! the provider's `trust_anchors` (PEM files) through its `intermediates` (PEM files,
//! optional) and the chain's own. X.509 has no issuer claim and no audience: the provider
//! is named internally (`urn:ferry:x509:<id>`), and a chain belongs to the first x509
//! provider, in configuration order, whose anchors validate it.

use std::path::Path;

use super::errors::ConfigErrors;
use super::model::{KeysConfig, ProviderKind};
use super::raw::RawProvider;

/// The internal issuer of x509 provider `id` (the providers' map is keyed by issuer).
pub fn x509_issuer(id: &str) -> String {
    format!("urn:ferry:x509:{id}")
}

/// The mapping's subject when none is given: the SPIFFE ID when the certificate has
/// one, else the subject's common name (Google's default).
pub const X509_DEFAULT_SUBJECT: &str =
    "has(assertion.spiffe_id) ? assertion.spiffe_id : assertion.subject.dn.cn";

/// The x509-only settings of a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Settings {
    /// When set, the certificate must carry a SPIFFE ID in exactly this trust domain.
    pub spiffe_trust_domain: Option<String>,
}

/// The members only an x509 provider takes, refused elsewhere; and those an x509
/// provider does not take (JWT members, and `audiences`: certificates carry none).
pub(super) fn members(errs: &mut ConfigErrors, path: &str, p: &RawProvider, kind: ProviderKind) {
    let only_x509 = [
        (p.trust_anchors.is_some(), "trust_anchors"),
        (p.intermediates.is_some(), "intermediates"),
        (p.spiffe_trust_domain.is_some(), "spiffe_trust_domain"),
    ];
    if kind != ProviderKind::X509 {
        for (set, name) in only_x509 {
            if set {
                errs.push(format!("{path}.{name}"), "applies only to kind x509");
            }
        }
        return;
    }
    let not_x509 = [
        (
            p.issuer.is_some(),
            "issuer (an x509 provider is named urn:ferry:x509:<id>)",
        ),
        (
            p.audiences.is_some(),
            "audiences (X.509 certificates carry no audience)",
        ),
        (
            p.jwks.is_some(),
            "jwks (an x509 provider takes trust_anchors)",
        ),
        (p.discovery_url.is_some(), "discovery_url"),
        (p.algorithms.is_some(), "algorithms"),
        (p.accepted_types.is_some(), "accepted_types"),
        (p.api_server.is_some(), "api_server"),
        (p.max_token_lifetime.is_some(), "max_token_lifetime"),
        (p.max_token_age.is_some(), "max_token_age"),
    ];
    for (set, name) in not_x509 {
        if set {
            errs.push(path, format!("an x509 provider takes no {name}"));
        }
    }
}

/// The trust anchors (required) and intermediates, resolved against the config's
/// directory; read by the server at start and at every reload.
pub(super) fn keys(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    base: &Path,
) -> Option<KeysConfig> {
    let files = |list: &Option<Vec<String>>| -> Vec<std::path::PathBuf> {
        list.iter().flatten().map(|f| base.join(f)).collect()
    };
    let bad = |list: &Option<Vec<String>>| list.iter().flatten().any(|f| f.trim().is_empty());
    if p.trust_anchors.as_ref().is_none_or(Vec::is_empty) || bad(&p.trust_anchors) {
        errs.push(
            format!("{path}.trust_anchors"),
            "is required: a list of PEM files of the CA certificates chains must end at",
        );
        return None;
    }
    if bad(&p.intermediates) {
        errs.push(
            format!("{path}.intermediates"),
            "must be a list of PEM files",
        );
        return None;
    }
    Some(KeysConfig::X509 {
        trust_anchors: files(&p.trust_anchors),
        intermediates: files(&p.intermediates),
    })
}

/// The x509 settings: a SPIFFE trust domain, when given, is a valid one (SPIFFE-ID
/// §2.1: lower-case letters, digits, '.', '-', '_').
pub(super) fn settings(errs: &mut ConfigErrors, path: &str, p: &RawProvider) -> X509Settings {
    if let Some(td) = &p.spiffe_trust_domain
        && (td.is_empty()
            || td.len() > 255
            || !td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)))
    {
        errs.push(
            format!("{path}.spiffe_trust_domain"),
            "must be a SPIFFE trust domain: 1 to 255 lower-case letters, digits, '.', '-' or '_' (no scheme, port or path)",
        );
    }
    X509Settings {
        spiffe_trust_domain: p.spiffe_trust_domain.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::{KeysConfig, ProviderKind, parse};

    fn config(provider: &str) -> String {
        format!(
            "issuer: https://ferry.example.com\nproviders:\n  - id: mesh\n{provider}\
             audiences:\n  - audience: https://deploy.example.com\n    rules:\n      - allow: provider == 'mesh'\n"
        )
    }

    const GOOD: &str = "    kind: x509\n    trust_anchors: [root.pem]\n    intermediates: [int.pem]\n    spiffe_trust_domain: example.org\n";

    #[test]
    fn an_x509_provider_loads_with_an_internal_issuer_and_no_audience() {
        let c = parse(&config(GOOD), Path::new("/etc/ferry")).unwrap();
        let p = &c.providers[0];
        assert_eq!(p.kind, ProviderKind::X509);
        assert_eq!(p.issuer, "urn:ferry:x509:mesh");
        assert!(p.audiences.is_empty());
        assert!(p.cap_lifetime_at_subject_expiry);
        assert_eq!(
            p.keys,
            KeysConfig::X509 {
                trust_anchors: vec![PathBuf::from("/etc/ferry/root.pem")],
                intermediates: vec![PathBuf::from("/etc/ferry/int.pem")],
            }
        );
        assert_eq!(
            p.x509.as_ref().unwrap().spiffe_trust_domain.as_deref(),
            Some("example.org")
        );
    }

    #[test]
    fn members_of_other_kinds_are_refused_both_ways() {
        let refused = [
            (
                format!("{GOOD}    audiences: [https://ferry.example.com]\n"),
                "audiences",
            ),
            (format!("{GOOD}    issuer: https://x.example\n"), "issuer"),
            (format!("{GOOD}    jwks: {{ file: k.json }}\n"), "jwks"),
            (format!("{GOOD}    algorithms: [ES256]\n"), "algorithms"),
            (format!("{GOOD}    max_token_lifetime: 1h\n"), "max_token_lifetime"),
            (
                "    kind: x509\n    intermediates: [int.pem]\n".to_owned(),
                "trust_anchors",
            ),
            (
                "    kind: x509\n    trust_anchors: []\n".to_owned(),
                "trust_anchors",
            ),
            (
                GOOD.replace("example.org", "Example.org:443"),
                "spiffe_trust_domain",
            ),
            (
                "    issuer: https://idp.example.com\n    audiences: [a]\n    jwks: { file: k.json }\n    trust_anchors: [root.pem]\n"
                    .to_owned(),
                "providers[0].trust_anchors: applies only to kind x509",
            ),
            (
                "    kind: saml\n    entity_id: e\n    certificates: ['-----BEGIN CERTIFICATE-----']\n    audiences: [a]\n    spiffe_trust_domain: example.org\n"
                    .to_owned(),
                "providers[0].spiffe_trust_domain: applies only to kind x509",
            ),
        ];
        for (provider, why) in refused {
            let e = parse(&config(&provider), Path::new("/etc/ferry"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{provider}: {e}");
        }
    }
}
