//! What a token must satisfy: strict by default, loosened only through methods named for
//! what they loosen (as `openidconnect`'s `IdTokenVerifier` is). There are no public
//! fields, so no caller can weaken a check silently; a reader finds every loosening by
//! searching for `accept_` and `allow_`.

use std::time::Duration;

use crate::alg::Algorithm;

/// What a token must satisfy. [`Rules::new`] turns every check on:
///
/// | check | default | changed by |
/// |---|---|---|
/// | signature by a key of the issuer | always | — |
/// | `alg` | RS256 or ES256 (`none` and HMAC are never algorithms here) | [`Rules::set_allowed_algorithms`] |
/// | `crit`, keys or key URLs in the header, `b64`, `cty: JWT`, `zip` | refused | — |
/// | `typ` (RFC 8725 §3.11) | none, or `JWT` | [`Rules::accept_types`] (loosens), [`Rules::require_type`] (tightens) |
/// | `iss` | exactly the issuer | — |
/// | `aud` (RFC 7519 §4.1.3, OIDC Core §3.1.3.7 step 3) | names one of the audiences, and no other | [`Rules::accept_other_audiences`] |
/// | `exp`, `nbf`, `iat` | `exp` required, 60 s clock skew | [`Rules::allow_clock_skew`] |
/// | lifetime (`exp - iat`, or `exp - now` without `iat`) | at most 24 h | [`Rules::allow_lifetime_up_to`] |
/// | age (`now - iat`) | no limit | [`Rules::require_max_age`] (tightens) |
/// | `sub`, `jti` | strings when present | — |
#[derive(Debug, Clone)]
pub struct Rules {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    other_audiences: bool,
    leeway: i64,
    max_lifetime: i64,
    max_age: Option<i64>,
    accepted_types: Vec<String>,
    required_type: Option<String>,
}

/// The `typ` values of an identity assertion, accepted by default: `JWT` in any case,
/// with or without `application/` (RFC 7519 §5.1, RFC 7515 §4.1.9). A token without
/// `typ` is accepted too.
const IDENTITY_TYPES: &[&str] = &["jwt"];

/// Whole seconds of `d`, saturating (the claims compared with it are seconds).
fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Rules {
    /// Strict rules for tokens from `issuer` meant for one of `audiences`: RS256 and
    /// ES256, 60 s clock skew, 24 h maximum lifetime, an `aud` naming only audiences of
    /// this list, and only identity assertions — no `typ`, or `JWT` — so another kind
    /// of JWT (`at+jwt`, `dpop+jwt`, `logout+jwt`, `secevent+jwt`, …) signed by the same
    /// key is never taken for one (RFC 8725 §3.11).
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            other_audiences: false,
            leeway: 60,
            max_lifetime: 86_400,
            max_age: None,
            accepted_types: Vec::new(),
            required_type: None,
        }
    }

    /// Replaces the `alg` allowlist (RFC 8725 §3.1). Only asymmetric algorithms exist
    /// here: no list lets `none` or HMAC in. An empty list accepts no token.
    #[must_use]
    pub fn set_allowed_algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Loosens the `aud` check: a token may also name audiences that are not ours, as
    /// long as it names one of ours (RFC 7519 §4.1.3, RFC 9068 §4). By default an `aud`
    /// naming anyone else is refused (OpenID Connect Core §3.1.3.7 step 3), since the
    /// other audience could replay the token here.
    #[must_use]
    pub fn accept_other_audiences(mut self) -> Self {
        self.other_audiences = true;
        self
    }

    /// Sets the clock skew tolerated on `exp`, `nbf` and `iat` (default 60 s): more
    /// loosens, [`Duration::ZERO`] tolerates none.
    #[must_use]
    pub fn allow_clock_skew(mut self, skew: Duration) -> Self {
        self.leeway = seconds(skew);
        self
    }

    /// Sets the longest lifetime accepted (`exp - iat`, or `exp - now` for a token
    /// without `iat`); default 24 h.
    #[must_use]
    pub fn allow_lifetime_up_to(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = seconds(lifetime);
        self
    }

    /// Tightens: a token must carry `iat` and be at most `age` old.
    #[must_use]
    pub fn require_max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(seconds(age));
        self
    }

    /// Loosens the `typ` check: these media types are accepted besides the identity
    /// types (compared case-insensitively, with or without `application/`).
    #[must_use]
    pub fn accept_types<S: AsRef<str>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.accepted_types
            .extend(types.into_iter().map(|t| media_type(t.as_ref())));
        self
    }

    /// Tightens the `typ` check: exactly this type (e.g. `at+jwt` for Ferry's own
    /// tokens); a token without it, or with any other, is refused.
    #[must_use]
    pub fn require_type(mut self, typ: &str) -> Self {
        self.required_type = Some(media_type(typ));
        self
    }

    /// The exact `iss` required.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences accepted in `aud`.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The `alg` allowlist.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The clock skew tolerated, seconds.
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// The longest lifetime accepted, seconds.
    pub fn max_lifetime(&self) -> i64 {
        self.max_lifetime
    }

    /// The oldest `iat` accepted, seconds before now, if limited.
    pub fn max_age(&self) -> Option<i64> {
        self.max_age
    }

    /// Whether an `aud` with these members passes (`None` for a member that is not a
    /// string): at least one is ours and, unless [`Rules::accept_other_audiences`],
    /// every one is.
    pub(crate) fn audience_accepted<'a>(
        &self,
        aud: impl IntoIterator<Item = Option<&'a str>>,
    ) -> bool {
        let ours = |a: &str| self.audiences.iter().any(|r| r == a);
        let mut any = false;
        for a in aud {
            if a.is_some_and(ours) {
                any = true;
            } else if !self.other_audiences {
                return false;
            }
        }
        any
    }

    /// Whether a token with header `typ` is of a kind these rules accept. Compares
    /// without allocating: it runs on every verification.
    pub(crate) fn type_accepted(&self, typ: Option<&str>) -> bool {
        let same = |a: &str, b: &str| short_type(a).eq_ignore_ascii_case(b);
        match (typ, &self.required_type) {
            (t, Some(required)) => t.is_some_and(|t| same(t, required)),
            (None, None) => true,
            (Some(t), None) => IDENTITY_TYPES
                .iter()
                .copied()
                .chain(self.accepted_types.iter().map(String::as_str))
                .any(|a| same(t, a)),
        }
    }
}

/// A `typ` without the `application/` prefix RFC 7515 §4.1.9 lets producers omit.
fn short_type(typ: &str) -> &str {
    match typ.get(..12) {
        Some(p) if p.eq_ignore_ascii_case("application/") => typ.get(12..).unwrap_or_default(),
        _ => typ,
    }
}

/// A `typ` as stored in [`Rules`]: lowercase, short form.
fn media_type(typ: &str) -> String {
    short_type(typ).to_ascii_lowercase()
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
