//! The claims of the tokens Ferry issues (RFC 9068 §2.2) and their lifetime.

use serde_json::{Map, Value as Json, json};

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::mapping::Principal;
use crate::policy::Grant;

/// Global lifetime settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Lifetime when neither audience nor rule says otherwise.
    pub default_ttl: u64,
    /// Hard cap on every issued token.
    pub max_ttl: u64,
    /// The shortest token Ferry issues; a subject token with less life left is refused.
    pub min_ttl: u64,
}

/// Computes the issued lifetime: the lowest of the policy's cap (else the default), the
/// global cap and, when `cap_at_subject_exp`, the subject token's remaining life.
///
/// A subject token with less than `min_ttl` left is refused, so Ferry never issues a
/// token that is already expired or about to be.
pub fn lifetime(
    l: &Lifetimes,
    grant: &Grant,
    now: i64,
    subject_exp: i64,
    cap_at_subject_exp: bool,
) -> Result<u64, OAuthError> {
    let remaining = u64::try_from(subject_exp.saturating_sub(now)).unwrap_or(0);
    if remaining < l.min_ttl {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Mint,
            desc::SUBJECT_EXPIRES_TOO_SOON,
        )
        .detail(format!(
            "subject token has {remaining}s left, minimum {}s",
            l.min_ttl
        )));
    }
    let mut ttl = grant.ttl_cap.unwrap_or(l.default_ttl).min(l.max_ttl);
    if cap_at_subject_exp {
        ttl = ttl.min(remaining);
    }
    Ok(ttl.max(1))
}

/// What goes into one issued token besides the principal and grant.
#[derive(Debug, Clone)]
pub struct MintInput<'a> {
    /// Ferry's issuer identifier.
    pub issuer: &'a str,
    /// `client_id` (RFC 9068 §2.2).
    pub client_id: &'a str,
    /// Issue time.
    pub now: i64,
    /// Lifetime in seconds.
    pub ttl: u64,
    /// A unique token id.
    pub jti: &'a str,
    /// The thumbprint of the key the token is bound to (`cnf.jkt`, RFC 9449 §6.1).
    pub cnf_jkt: Option<&'a str>,
    /// The `act` claim of a delegated token (RFC 8693 §4.1), nested for chains.
    pub act: Option<&'a Json>,
}

/// The RFC 9068 claims of an access token.
pub fn access_token_claims(
    input: &MintInput<'_>,
    principal: &Principal,
    grant: &Grant,
) -> Map<String, Json> {
    let mut c = Map::new();
    let exp = input
        .now
        .saturating_add(i64::try_from(input.ttl).unwrap_or(i64::MAX));
    c.insert("iss".into(), json!(input.issuer));
    c.insert("sub".into(), json!(principal.subject));
    // A single audience is a string, several an array (RFC 7519 §4.1.3).
    c.insert(
        "aud".into(),
        match grant.audiences.as_slice() {
            [one] => json!(one),
            many => json!(many),
        },
    );
    c.insert("exp".into(), json!(exp));
    c.insert("iat".into(), json!(input.now));
    c.insert("nbf".into(), json!(input.now));
    c.insert("jti".into(), json!(input.jti));
    c.insert("client_id".into(), json!(input.client_id));
    if !grant.scopes.is_empty() {
        c.insert("scope".into(), json!(grant.scopes.join(" ")));
    }
    if let Some(b) = &grant.access_boundaries {
        c.insert("access_boundaries".into(), b.clone());
    }
    if let Some(act) = input.act {
        c.insert("act".into(), act.clone());
    }
    if let Some(jkt) = input.cnf_jkt {
        c.insert("cnf".into(), json!({"jkt": jkt}));
    }
    if !principal.groups.is_empty() {
        c.insert("groups".into(), json!(principal.groups));
    }
    if !principal.attributes.is_empty() {
        c.insert("attributes".into(), json!(principal.attributes));
    }
    let mut provenance = Map::new();
    provenance.insert("provider".into(), json!(principal.provider));
    provenance.insert("iss".into(), json!(principal.original_issuer));
    if let Some(sub) = &principal.original_subject {
        provenance.insert("sub".into(), json!(sub));
    }
    c.insert("ferry".into(), Json::Object(provenance));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Lifetimes = Lifetimes {
        default_ttl: 900,
        max_ttl: 3_600,
        min_ttl: 60,
    };

    fn grant(cap: Option<u64>) -> Grant {
        Grant {
            audiences: vec!["a".into()],
            scopes: vec![],
            ttl_cap: cap,
            rules: vec![],
            require_dpop: false,
            access_boundaries: None,
        }
    }

    #[test]
    fn lifetime_table() {
        let now = 1_000_000;
        let cases = [
            // (cap, subject exp offset, cap at subject, want)
            (None, 10_000, true, Some(900)),
            (Some(300), 10_000, true, Some(300)),
            (Some(7_200), 10_000, true, Some(3_600)),
            (None, 120, true, Some(120)),
            (None, 120, false, Some(900)),
            (None, 59, true, None),
            (None, 59, false, None),
            (None, -5, true, None),
        ];
        for (cap, off, at_sub, want) in cases {
            let got = lifetime(&L, &grant(cap), now, now + off, at_sub).ok();
            assert_eq!(got, want, "{cap:?} {off} {at_sub}");
        }
    }
}
