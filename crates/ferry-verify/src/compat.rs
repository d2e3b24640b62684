//! The entry points from before parse-then-verify ([`crate::parse`]), still used by
//! `ferry-server`'s token/provider.rs, token/actor.rs, token/parent.rs, tokens.rs and
//! client_auth.rs (issue 21); to be removed once those call [`crate::parse`] and
//! [`crate::Unverified`] directly. Each is a thin wrapper over them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::error::VerifyError;
use crate::jwks::KeySet;
use crate::jws::split;
use crate::rules::Rules;
use crate::source::KeySource;
use crate::unverified::{Unverified, parse};
use crate::verifier::Verified;

/// A parsed token whose `iss` is a string ([`Unverified`]).
#[derive(Debug)]
pub struct Peeked<'a>(Unverified<'a>);

impl Peeked<'_> {
    /// The unverified `iss`.
    pub fn issuer(&self) -> &str {
        // `peek` made sure it is a string.
        self.0.issuer().unwrap_or_default()
    }
}

/// [`parse`], then a string `iss` required.
pub fn peek(token: &str) -> Result<Peeked<'_>, VerifyError> {
    let t = parse(token)?;
    if t.issuer().is_none() {
        return Err(VerifyError::Claim("iss"));
    }
    Ok(Peeked(t))
}

/// The unverified claims ([`Unverified::into_unverified_claims`]).
pub fn peek_claims(token: &str) -> Result<Map<String, Value>, VerifyError> {
    parse(token).map(Unverified::into_unverified_claims)
}

/// Reads only `iss` from a token without verifying it (no map of the other claims is
/// built). `iss` must be a JSON string; the payload must be a JSON object.
pub fn peek_issuer(token: &str) -> Result<String, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Peek {
        iss: Option<Value>,
    }
    let parts = split(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(parts.payload_b64)
        .map_err(|_| VerifyError::Malformed("payload"))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(VerifyError::Malformed("payload"));
    }
    let peek: Peek =
        serde_json::from_slice(&bytes).map_err(|_| VerifyError::Malformed("payload"))?;
    match peek.iss {
        Some(Value::String(s)) => Ok(s),
        _ => Err(VerifyError::Claim("iss")),
    }
}

/// [`parse`] then [`Unverified::verify_with_keys`].
pub fn verify(
    token: &str,
    rules: &Rules,
    keys: &KeySet,
    now: i64,
) -> Result<Verified, VerifyError> {
    parse(token)?.verify_with_keys(rules, keys, now)
}

/// [`parse`] then [`Unverified::verify`].
pub async fn verify_from(
    token: &str,
    rules: &Rules,
    source: &KeySource,
    now: i64,
) -> Result<Verified, VerifyError> {
    parse(token)?.verify(rules, source, now).await
}

/// [`Unverified::verify`].
pub async fn verify_peeked_from(
    peeked: Peeked<'_>,
    rules: &Rules,
    source: &KeySource,
    now: i64,
) -> Result<Verified, VerifyError> {
    peeked.0.verify(rules, source, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn peek_requires_a_string_issuer() {
        let h = b64(r#"{"alg":"RS256"}"#);
        for (payload, want) in [
            (r#"{"iss":"https://a"}"#, Ok("https://a".to_owned())),
            (r#"{"iss":["https://a"]}"#, Err(VerifyError::Claim("iss"))),
            (r#"{"sub":"x"}"#, Err(VerifyError::Claim("iss"))),
            (
                r#"{"iss":"https://a","iss":"https://b"}"#,
                Err(VerifyError::Malformed("payload")),
            ),
            (r#"[1]"#, Err(VerifyError::Malformed("payload"))),
        ] {
            let token = format!("{h}.{}.c2ln", b64(payload));
            assert_eq!(peek_issuer(&token), want, "{payload}");
            assert_eq!(
                peek(&token).map(|t| t.issuer().to_owned()),
                want,
                "{payload} (peek)"
            );
        }
    }
}
