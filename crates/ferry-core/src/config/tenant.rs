//! A provider's tenant: which claim of a verified token says whose it is. Tokens the
//! provider's condition refuses are rate limited per (provider, tenant), so another
//! GitHub organisation's validly signed tokens drain their own bucket, never the
//! provider's bucket every pipeline of yours shares. Presets: GitHub
//! `repository_owner_id` (an id: names can be re-registered), Kubernetes the service
//! account's namespace; otherwise the subject.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::errors::ConfigErrors;
use super::model::ProviderKind;

/// Where the tenant is read: a top-level claim, or a path of claims (written as a JSON
/// pointer, RFC 6901: `/kubernetes.io/namespace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantClaim(Vec<String>);

impl TenantClaim {
    /// The tenant of `claims`: a string claim as it is, a number in decimal; `None` when
    /// the claim is missing or of another type.
    pub fn value<'a>(&self, claims: &'a Map<String, Value>) -> Option<Cow<'a, str>> {
        let (first, rest) = self.0.split_first()?;
        let mut v = claims.get(first)?;
        for segment in rest {
            v = v.get(segment)?;
        }
        match v {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    /// The claim path, as configured.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

/// The tenant claim of a provider: `tenant_claim` when given (a claim name, or a JSON
/// pointer starting with `/`), else the kind's preset.
pub(super) fn tenant_claim(
    errs: &mut ConfigErrors,
    path: &str,
    kind: ProviderKind,
    raw: Option<&str>,
) -> TenantClaim {
    let preset = match kind {
        ProviderKind::Github => "repository_owner_id",
        ProviderKind::Kubernetes => "/kubernetes.io/namespace",
        ProviderKind::Saml => "subject",
        // Refused certificates are counted per issuing CA.
        ProviderKind::X509 => "/issuer/dn/cn",
        _ => "sub",
    };
    let text = raw.unwrap_or(preset);
    let segments: Vec<String> = match text.strip_prefix('/') {
        Some(pointer) => pointer
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
        None => vec![text.to_owned()],
    };
    if text.len() > 256 || segments.iter().any(String::is_empty) {
        errs.push(
            format!("{path}.tenant_claim"),
            "must be a claim name or a JSON pointer to one (e.g. /kubernetes.io/namespace), at most 256 characters",
        );
    }
    TenantClaim(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn presets_pointers_and_values() {
        let mut errs = ConfigErrors::default();
        let claims = json!({"sub": "s", "repository_owner_id": 123,
            "kubernetes.io": {"namespace": "prod"}, "a/b": "slash", "list": ["x"]});
        let claims = claims.as_object().unwrap();
        let value = |kind, raw| {
            tenant_claim(&mut ConfigErrors::default(), "p", kind, raw)
                .value(claims)
                .map(Cow::into_owned)
        };
        assert_eq!(value(ProviderKind::Github, None).as_deref(), Some("123"));
        assert_eq!(
            value(ProviderKind::Kubernetes, None).as_deref(),
            Some("prod")
        );
        assert_eq!(value(ProviderKind::Oidc, None).as_deref(), Some("s"));
        assert_eq!(
            value(ProviderKind::Oidc, Some("/a~1b")).as_deref(),
            Some("slash")
        );
        assert_eq!(value(ProviderKind::Oidc, Some("list")), None);
        assert_eq!(value(ProviderKind::Oidc, Some("missing")), None);
        for bad in ["", "/", "/a//b"] {
            let mut errs = ConfigErrors::default();
            tenant_claim(&mut errs, "providers[0]", ProviderKind::Oidc, Some(bad));
            assert!(
                errs.to_string().contains("providers[0].tenant_claim"),
                "{bad:?}"
            );
        }
        tenant_claim(&mut errs, "p", ProviderKind::Oidc, Some("org_id"));
        assert!(errs.0.is_empty());
    }
}
