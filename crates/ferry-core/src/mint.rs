//! The claims of the tokens Ferry issues (RFC 9068 §2.2) and their lifetime.

use ferry_token::{AccessClaims, Act, Audience, Confirmation, Provenance, Scope};
use serde_json::{Map, Value as Json};

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

/// The issued lifetime: [`lifetime`] for a subject with an expiry; without one (a
/// service account's own assertion, policy tests over bare claims) the grant's cap or
/// the default, within the global cap.
pub fn issued_lifetime(
    l: &Lifetimes,
    grant: &Grant,
    now: i64,
    subject_exp: Option<i64>,
    cap_at_subject_exp: bool,
) -> Result<u64, OAuthError> {
    match subject_exp {
        Some(exp) => lifetime(l, grant, now, exp, cap_at_subject_exp),
        None => Ok(grant.ttl_cap.unwrap_or(l.default_ttl).min(l.max_ttl)),
    }
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
    pub cnf: &'a crate::binding::Binding,
    /// The `act` claim of a delegated token (RFC 8693 §4.1), nested for chains.
    pub act: Option<&'a Act>,
    /// Who may act for the subject (RFC 8693 §4.4), carried from the subject token.
    pub may_act: Option<&'a ferry_token::MayAct>,
}

/// The RFC 9068 claims of an access token, in Ferry's token profile.
pub fn access_claims(input: &MintInput<'_>, principal: &Principal, grant: &Grant) -> AccessClaims {
    AccessClaims {
        iss: input.issuer.to_owned(),
        sub: principal.subject.clone(),
        aud: Audience(grant.audiences.clone()),
        exp: input
            .now
            .saturating_add(i64::try_from(input.ttl).unwrap_or(i64::MAX)),
        iat: input.now,
        nbf: Some(input.now),
        jti: input.jti.to_owned(),
        client_id: input.client_id.to_owned(),
        scope: Scope(grant.scopes.clone()),
        access_boundaries: grant.access_boundaries.clone(),
        act: input.act.cloned(),
        may_act: input.may_act.cloned(),
        cnf: match input.cnf {
            crate::binding::Binding::Bearer => None,
            crate::binding::Binding::Jkt(j) => Some(Confirmation::jkt(j)),
            crate::binding::Binding::X5t(t) => Some(Confirmation::x5t_s256(t)),
        },
        groups: principal.groups.clone(),
        attributes: principal.attributes.clone(),
        ferry: Provenance {
            provider: principal.provider.clone(),
            iss: principal.original_issuer.clone(),
            sub: principal.original_subject.clone(),
            ancestors: principal.ancestors.clone(),
        },
        custom: grant.claims.clone(),
    }
}

/// [`access_claims`] as the JSON object that is signed.
pub fn access_token_claims(
    input: &MintInput<'_>,
    principal: &Principal,
    grant: &Grant,
) -> Map<String, Json> {
    access_claims(input, principal, grant).to_map()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
            require_mtls: false,
            access_boundaries: None,
            claims: serde_json::Map::new(),
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

    /// The claims Ferry has always minted, member for member: a delegated, bound,
    /// narrowed token with every optional claim, and one with none.
    #[test]
    fn minted_claims_keep_their_names_and_shapes() {
        use serde_json::json;
        let principal = Principal {
            provider: "gh".into(),
            subject: "repo:acme/app".into(),
            groups: vec!["g".into()],
            attributes: [("team".to_owned(), "t".to_owned())].into(),
            original_issuer: "https://idp.example".into(),
            original_subject: Some("orig".into()),
            ancestors: Vec::new(),
            subject_act: None,
        };
        let boundary = json!({"accessBoundaryRules": [{"availableResource": "r",
            "availablePermissions": ["p"]}]});
        let mut g = grant(None);
        g.audiences = vec!["a".into(), "b".into()];
        g.scopes = vec!["read".into(), "write".into()];
        g.access_boundaries = Some(vec![boundary.clone()]);
        let act = Act {
            sub: "deployer".into(),
            provider: Some("gh".into()),
            ..Act::default()
        };
        let input = MintInput {
            issuer: "https://ferry.example",
            client_id: "ci",
            now: 1_000,
            ttl: 900,
            jti: "j1",
            cnf: &crate::binding::Binding::Jkt("th".into()),
            act: Some(&act),
            may_act: None,
        };
        let full = access_token_claims(&input, &principal, &g);
        assert_eq!(
            Json::Object(full),
            json!({"iss": "https://ferry.example", "sub": "repo:acme/app", "aud": ["a", "b"],
                "exp": 1_900, "iat": 1_000, "nbf": 1_000, "jti": "j1", "client_id": "ci",
                "scope": "read write", "access_boundaries": [boundary],
                "act": {"sub": "deployer", "provider": "gh"}, "cnf": {"jkt": "th"},
                "groups": ["g"], "attributes": {"team": "t"},
                "ferry": {"provider": "gh", "iss": "https://idp.example", "sub": "orig"}})
        );
        let bare = Principal {
            groups: vec![],
            attributes: BTreeMap::new(),
            original_subject: None,
            ancestors: Vec::new(),
            subject_act: None,
            ..principal
        };
        let input = MintInput {
            cnf: &crate::binding::Binding::Bearer,
            act: None,
            may_act: None,
            ..input
        };
        let least = access_token_claims(&input, &bare, &grant(None));
        assert_eq!(
            Json::Object(least),
            json!({"iss": "https://ferry.example", "sub": "repo:acme/app", "aud": "a",
                "exp": 1_900, "iat": 1_000, "nbf": 1_000, "jti": "j1", "client_id": "ci",
                "ferry": {"provider": "gh", "iss": "https://idp.example"}})
        );
    }
}
