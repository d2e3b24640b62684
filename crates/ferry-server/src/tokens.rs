//! The tokens Ferry issued, after issuance: reference tokens (opaque handles), revocation
//! (RFC 7009), introspection (RFC 7662, and its JWT form, RFC 9701) and the signed
//! revocation list relying services poll.

use ferry_core::error::desc;
use ferry_core::request::IssuedTokenType;
use ferry_core::response::TokenResponse;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_token::AccessClaims;
use ferry_verify::{Algorithm, Rules};
use serde::Deserialize as _;
use serde_json::{Map, Value, json};

use crate::revocation::{Facts, HandleError, Rule, RuleKind, StoreError};
use crate::state::AppState;
use crate::{ids::fingerprint, ids::random_id};

/// Every reference token starts with this, so a handle is never mistaken for a JWT.
pub use ferry_token::HANDLE_PREFIX;

/// `typ` of the revocation list.
pub const REVOCATIONS_TYPE: &str = "ferry-revocations+jwt";

/// How long a revocation list is valid after it was signed.
pub const REVOCATIONS_TTL: i64 = 300;

/// The kind of handle `token` is, if it has a handle's shape: a reference token
/// (`ferry_ref_…`), or a split token — a JWT's signature part, base64url only and as long
/// as the signatures of Ferry's algorithms (86 characters for ES256 and EdDSA, 342 or
/// more for RS256). Anything else is no handle and costs no store lookup.
pub fn handle_kind(token: &str) -> Option<IssuedTokenType> {
    let signature = (64..=1024).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if token.starts_with(HANDLE_PREFIX) {
        Some(IssuedTokenType::Reference)
    } else if signature {
        Some(IssuedTokenType::Split)
    } else {
        None
    }
}

/// Whether `token` is a handle standing for a JWT kept by Ferry ([`handle_kind`]).
pub fn is_handle(token: &str) -> bool {
    handle_kind(token).is_some()
}

/// Turns an issued JWT into a handle when one was asked for — a reference token (a
/// random handle) or a split token (the JWT's signature part) — whose hash maps to the
/// sealed JWT until `exp`; the response carries the handle instead.
pub async fn maybe_reference(
    state: &AppState,
    config: &ferry_core::config::Config,
    requested: IssuedTokenType,
    mut resp: TokenResponse,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let handle = match requested {
        IssuedTokenType::Reference => format!("{HANDLE_PREFIX}{}", random_id(32)),
        // A signature is unpredictable without the signing key, and binds the handle to
        // this one JWT.
        IssuedTokenType::Split => match resp.access_token.rsplit_once('.') {
            Some((_, signature)) if !signature.is_empty() => signature.to_owned(),
            _ => {
                return Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    Step::Mint,
                    desc::SIGNING_UNAVAILABLE,
                )
                .detail("the issued token has no signature part"));
            }
        },
        _ => return Ok(resp),
    };
    let exp = now.saturating_add(i64::try_from(resp.expires_in).unwrap_or(i64::MAX));
    let cap = config.limits.max_reference_tokens;
    state
        .revocations
        .put_handle(
            &fingerprint(handle.as_bytes()),
            &resp.access_token,
            exp,
            now,
            cap,
        )
        .await
        .map_err(|e| match e {
            // Bounded: at most `limits.max_reference_tokens` live handles, each JWT at
            // most 16 KiB; refused with a fixed text, nothing stored.
            HandleError::Full => OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                Step::Mint,
                desc::REFERENCE_FULL,
            )
            .detail("reference token store full"),
            HandleError::TooLarge => OAuthError::new(
                ErrorCode::InvalidRequest,
                Step::Mint,
                desc::REFERENCE_TOO_LARGE,
            )
            .detail("issued token larger than 16 KiB"),
            HandleError::Unavailable(e) => {
                crate::errors::revocation_unavailable(format!("storing a reference token: {e}"))
            }
        })?;
    resp.access_token = handle;
    resp.issued_token_type = requested.uri();
    Ok(resp)
}

/// A token Ferry issued, verified (signature by one of Ferry's published keys,
/// `typ: at+jwt`, Ferry's `iss`, unexpired), from a JWT or a reference handle.
#[derive(Debug)]
pub struct Issued {
    /// The JWT (the one a handle stands for).
    pub jwt: String,
    /// Its claims, as signed (introspection returns them all).
    pub claims: Map<String, Value>,
    /// The same claims read as Ferry's token profile.
    pub profile: AccessClaims,
    /// Whether it was presented as a handle (a reference or split token).
    pub reference: bool,
}

/// Resolves `token`; `Ok(None)` for anything that is not a live token Ferry issued
/// (expired, foreign, malformed, unknown handle). `Err` only when the shared state
/// cannot be reached.
pub async fn resolve(
    state: &AppState,
    token: &str,
    now: i64,
) -> Result<Option<Issued>, StoreError> {
    let (jwt, reference) = if is_handle(token) {
        match state
            .revocations
            .get_handle(&fingerprint(token.as_bytes()), now)
            .await?
        {
            Some(jwt) => (jwt, true),
            None => return Ok(None),
        }
    } else {
        (token.to_owned(), false)
    };
    let config = &state.loaded().config;
    // Parsed once. Any audience: the signature, type and issuer say the token is Ferry's.
    let Ok(parsed) = ferry_verify::parse(&jwt) else {
        return Ok(None);
    };
    let audiences = match parsed
        .unverified_claims()
        .get("aud")
        .and_then(|a| ferry_token::Audience::deserialize(a).ok())
    {
        Some(a) => a.0,
        None => return Ok(None),
    };
    let rules = Rules::new(config.issuer.clone(), audiences)
        .require_type(ferry_token::ACCESS_TOKEN_TYPE)
        .set_allowed_algorithms(Algorithm::ferry())
        .allow_lifetime_up_to(std::time::Duration::from_secs(
            longest_lifetime(state, config)
                .saturating_add(60)
                .unsigned_abs(),
        ))
        // Ferry's own clock decided `exp`: no leeway for skew.
        .allow_clock_skew(std::time::Duration::ZERO);
    let keys = state.own_keys.get(&state.keys);
    let Ok(v) = parsed.verify_with_keys(&rules, &keys, now) else {
        return Ok(None);
    };
    // Signed by Ferry, so it fits the profile; if not, it is no token Ferry honours.
    let Ok(profile) = AccessClaims::from_map(&v.claims) else {
        return Ok(None);
    };
    Ok(Some(Issued {
        jwt,
        claims: v.claims,
        profile,
        reference,
    }))
}

/// The longest lifetime a live Ferry token may have: the configured `tokens.max_ttl`,
/// or a longer one some replica was configured with before (recorded beside the key
/// ring), so a token issued before the limit was lowered is still recognised, revoked
/// and covered by revocation rules until it expires.
pub fn longest_lifetime(state: &AppState, config: &ferry_core::config::Config) -> i64 {
    let configured = i64::try_from(config.lifetimes.max_ttl).unwrap_or(i64::MAX);
    configured.max(state.keys.snapshot().max_issued_ttl)
}

/// Whether a verified token has been revoked.
pub async fn is_revoked(
    state: &AppState,
    claims: &AccessClaims,
    now: i64,
) -> Result<bool, StoreError> {
    state.revocations.is_revoked(&Facts::of(claims), now).await
}

/// Revokes a resolved token until its `exp`.
pub async fn revoke(state: &AppState, issued: &Issued, now: i64) -> Result<(), StoreError> {
    let c = &issued.profile;
    state.revocations.revoke_jti(&c.jti, c.exp, now).await
}

/// Revokes every token issued to `value` (a subject, provider or client) up to now.
pub async fn revoke_all(
    state: &AppState,
    kind: RuleKind,
    value: &str,
    now: i64,
) -> Result<Rule, StoreError> {
    let rule = Rule {
        kind,
        value: value.to_owned(),
        before: now,
        until: now
            .saturating_add(longest_lifetime(state, &state.loaded().config))
            .saturating_add(60),
    };
    state.revocations.add_rule(&rule, now).await?;
    Ok(rule)
}

/// The RFC 7662 response for a live token.
pub fn introspection(issued: &Issued) -> Value {
    let mut out = issued.claims.clone();
    out.insert("active".into(), Value::Bool(true));
    let bound = issued.profile.bound_jkt().is_some();
    out.insert(
        "token_type".into(),
        Value::String(if bound { "DPoP" } else { "Bearer" }.into()),
    );
    Value::Object(out)
}

/// The RFC 7662 response for anything else: no detail at all.
pub fn inactive() -> Value {
    json!({"active": false})
}

/// RFC 9701: the introspection response as a JWT signed by Ferry, for `client`.
pub fn introspection_jwt(
    state: &AppState,
    client: &str,
    response: Value,
    now: i64,
) -> Result<String, OAuthError> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(state.loaded().config.issuer));
    claims.insert("aud".into(), json!(client));
    claims.insert("iat".into(), json!(now));
    claims.insert("token_introspection".into(), response);
    ferry_keys::sign_jwt(
        state.keys.active().as_ref(),
        "token-introspection+jwt",
        &claims,
    )
    .map_err(|e| sign_error(&e))
}

/// A signing failure as the client sees it: 503 when this replica cannot unseal the
/// active key (another replica can sign), else an internal error.
pub(crate) fn sign_error(e: &ferry_keys::KeyError) -> OAuthError {
    let code = match e {
        ferry_keys::KeyError::CannotSign(_) => {
            (ErrorCode::TemporarilyUnavailable, desc::SIGNING_UNAVAILABLE)
        }
        _ => (ErrorCode::ServerError, desc::INTERNAL),
    };
    OAuthError::new(code.0, Step::Mint, code.1).detail(e.to_string())
}

/// The signed revocation list: every revoked `jti` with its `exp`, and every rule.
pub async fn revocation_list(state: &AppState, now: i64) -> Result<String, OAuthError> {
    let listing = state
        .revocations
        .listing(now)
        .await
        .map_err(crate::errors::revocation_unavailable)?;
    let issuer = state.loaded().config.issuer.clone();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(issuer));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + REVOCATIONS_TTL));
    claims.insert(
        "revoked".into(),
        Value::Array(
            listing
                .jtis
                .iter()
                .map(|(jti, exp)| json!({"jti": jti, "exp": exp}))
                .collect(),
        ),
    );
    claims.insert("rules".into(), json!(listing.rules));
    claims.insert(
        "revoked_kids".into(),
        Value::Array(
            state
                .keys
                .snapshot()
                .revoked
                .iter()
                .map(|r| json!(r.kid))
                .collect(),
        ),
    );
    ferry_keys::sign_jwt(state.keys.active().as_ref(), REVOCATIONS_TYPE, &claims)
        .map_err(|e| sign_error(&e))
}

#[cfg(test)]
mod handle_tests {
    use super::*;

    /// Only a handle's shape reaches the store: a reference token's prefix, or a
    /// signature's length and alphabet; anything else is no handle (twins side by side).
    #[test]
    fn only_a_handles_shape_is_looked_up() {
        let es256 = "A".repeat(86);
        let rs256 = "b_-".repeat(114);
        assert_eq!(handle_kind(&es256), Some(IssuedTokenType::Split));
        assert_eq!(handle_kind(&rs256), Some(IssuedTokenType::Split));
        assert_eq!(
            handle_kind(&format!("{HANDLE_PREFIX}x")),
            Some(IssuedTokenType::Reference)
        );
        let short = "A".repeat(63);
        let plus = format!("{}+", "A".repeat(85));
        for other in ["", "garbage", "a.b.c", short.as_str(), plus.as_str()] {
            assert_eq!(handle_kind(other), None, "{other:?}");
        }
    }
}
