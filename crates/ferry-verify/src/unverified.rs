//! The one way into verification: [`parse`] a token, read its unverified `iss` to choose
//! the issuer's [`Rules`] and keys, then [`Unverified::verify`] it. The token is split
//! and decoded once; nothing in it is believed until verification succeeds.
//!
//! ```no_run
//! # async fn f(rules: &ferry_verify::Rules, keys: &ferry_verify::KeySource, token: &str, now: i64)
//! # -> Result<(), ferry_verify::VerifyError> {
//! let t = ferry_verify::parse(token)?;
//! // t.issuer() picks `rules` and `keys`.
//! let verified = t.verify(rules, keys, now).await?;
//! # let _ = verified; Ok(()) }
//! ```

use serde_json::{Map, Value};

use crate::error::VerifyError;
use crate::jwks::KeySet;
use crate::jws::{Header, Parts, decode_object, split};
use crate::rules::Rules;
use crate::source::{KeySource, with_refetch};
use crate::verifier::{Verified, check};

/// A token split and decoded by [`parse`]: shape checked, signature and claims not yet.
#[must_use = "nothing in a parsed token is verified until `verify` is called"]
pub struct Unverified<'a> {
    pub(crate) parts: Parts<'a>,
    pub(crate) claims: Map<String, Value>,
}

impl std::fmt::Debug for Unverified<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The claims may carry personal data; the issuer is what a log needs.
        f.debug_struct("Unverified")
            .field("issuer", &self.issuer())
            .finish_non_exhaustive()
    }
}

/// Splits `token` (a compact JWS of at most [`crate::MAX_TOKEN_BYTES`]) and decodes its
/// header and payload, each a JSON object without duplicate members (RFC 7515 §5.2 step
/// 4, RFC 7519 §7.2 step 10: refused rather than the last one kept). Checks nothing else.
pub fn parse(token: &str) -> Result<Unverified<'_>, VerifyError> {
    let parts = split(token)?;
    let claims = decode_object(parts.payload_b64, "payload")?;
    Ok(Unverified { parts, claims })
}

impl<'a> Unverified<'a> {
    /// The unverified `iss`, when it is a string (an array or object never matches an
    /// issuer): only to choose the rules and keys to verify with.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The unverified `iss` that picks the keys, which must be a string: the same
    /// refusal wherever a token is routed by its issuer.
    pub fn required_issuer(&self) -> Result<&str, VerifyError> {
        self.issuer().ok_or(VerifyError::Claim("iss"))
    }

    /// The unverified protected header.
    pub fn header(&self) -> &Header {
        &self.parts.header
    }

    /// The unverified claims: for routing and diagnostics only, never for a decision.
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The unverified claims, taken (see [`Unverified::unverified_claims`]).
    pub fn into_unverified_claims(self) -> Map<String, Value> {
        self.claims
    }

    /// Verifies the token against `rules` with keys from `source`; on an unknown `kid`,
    /// asks the source for newer keys once and tries again.
    pub async fn verify(
        self,
        rules: &Rules,
        source: &KeySource,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let exp = with_refetch(source, |keys| {
            check(&self.parts, &self.claims, rules, keys, now)
        })
        .await?;
        Ok(Verified::new(self.parts.header, self.claims, exp))
    }

    /// Verifies the token against `rules` with `keys` at hand (no refetch): for keys
    /// held in memory, such as Ferry's own signing keys.
    pub fn verify_with_keys(
        self,
        rules: &Rules,
        keys: &KeySet,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let exp = check(&self.parts, &self.claims, rules, keys, now)?;
        Ok(Verified::new(self.parts.header, self.claims, exp))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// The issuer that picks the keys is a JSON string or absent; a payload with a
    /// duplicate member or that is not an object is refused before anything else.
    #[test]
    fn parsing_reads_a_string_issuer_and_refuses_duplicates() {
        let h = b64(r#"{"alg":"RS256"}"#);
        for (payload, want) in [
            (r#"{"iss":"https://a"}"#, Ok(Some("https://a".to_owned()))),
            (r#"{"iss":["https://a"]}"#, Ok(None)),
            (r#"{"sub":"x"}"#, Ok(None)),
            (
                r#"{"iss":"https://a","iss":"https://b"}"#,
                Err(VerifyError::Malformed("payload")),
            ),
            (r#"[1]"#, Err(VerifyError::Malformed("payload"))),
        ] {
            let token = format!("{h}.{}.c2ln", b64(payload));
            let got = parse(&token).map(|t| t.issuer().map(str::to_owned));
            assert_eq!(got, want, "{payload}");
        }
    }
}
