//! Splitting and decoding a compact JWS (RFC 7515 §7.1) without trusting it yet.
//! Header and payload must be JSON objects without duplicate member names (RFC 7515
//! §5.2 step 4, RFC 7519 §7.2 step 3/10: we reject rather than keep the last).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::VerifyError;

/// Longest token accepted, in bytes; anything larger is refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The parts of a JOSE header Ferry looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`
    pub alg: String,
    /// `kid`
    pub kid: Option<String>,
    /// `typ`
    pub typ: Option<String>,
    /// Whether `crit` is present.
    pub crit: bool,
    /// What makes the header unacceptable for a token Ferry verifies against configured
    /// keys, if anything: a key or key URL carried in the token (`jwk`, `jku`, `x5u`,
    /// `x5c`), an unencoded payload (`b64` other than true, RFC 7797), a nested token
    /// (`cty: JWT`) or compression (`zip`, JWE only).
    pub refused: Option<&'static str>,
}

pub(crate) struct Parts<'a> {
    pub signing_input: &'a str,
    pub header: Header,
    pub payload_b64: &'a str,
    pub signature: Vec<u8>,
}

struct NoDupObject(Map<String, Value>);

impl<'de> Deserialize<'de> for NoDupObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoDupObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<NoDupObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(A::Error::custom("duplicate member name"));
                    }
                    let value: Value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(NoDupObject(map))
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes base64url (no padding) JSON into an object without duplicate members.
pub(crate) fn decode_object(
    b64: &str,
    what: &'static str,
) -> Result<Map<String, Value>, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| VerifyError::Malformed(what))?;
    serde_json::from_slice::<NoDupObject>(&bytes)
        .map(|o| o.0)
        .map_err(|_| VerifyError::Malformed(what))
}

pub(crate) fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::Malformed("token too large"));
    }
    let (signing_input, sig_b64) = token
        .rsplit_once('.')
        .ok_or(VerifyError::Malformed("not a compact JWS"))?;
    let (header_b64, payload_b64) = signing_input
        .split_once('.')
        .ok_or(VerifyError::Malformed("not a compact JWS"))?;
    if payload_b64.contains('.') {
        // Five parts: a JWE, which Ferry does not accept.
        return Err(VerifyError::Malformed("not a compact JWS"));
    }
    let h = decode_object(header_b64, "header")?;
    let alg = match h.get("alg") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(VerifyError::Malformed("header without a string alg")),
    };
    let opt_str = |name: &str| -> Result<Option<String>, VerifyError> {
        match h.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(VerifyError::Malformed("header member of the wrong type")),
        }
    };
    let refused = if ["jwk", "jku", "x5u", "x5c"]
        .iter()
        .any(|k| h.contains_key(*k))
    {
        Some("a key or key URL in the header")
    } else if h.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        Some("b64")
    } else if h
        .get("cty")
        .and_then(Value::as_str)
        .is_some_and(|c| c.eq_ignore_ascii_case("jwt"))
    {
        Some("a nested token")
    } else if h.contains_key("zip") {
        Some("zip")
    } else {
        None
    };
    let header = Header {
        alg,
        kid: opt_str("kid")?,
        typ: opt_str("typ")?,
        crit: h.contains_key("crit"),
        refused,
    };
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| VerifyError::Malformed("signature"))?;
    Ok(Parts {
        signing_input,
        header,
        payload_b64,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn shapes_other_than_three_parts_are_refused() {
        let h = b64(r#"{"alg":"RS256"}"#);
        let p = b64(r#"{"iss":"x"}"#);
        assert!(split(&format!("{h}.{p}.c2ln")).is_ok());
        assert!(split(&format!("{h}.{p}")).is_err());
        assert!(split(&format!("{h}.{p}.a.b.c")).is_err());
        assert!(split(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
        let dup = b64(r#"{"alg":"RS256","alg":"none"}"#);
        assert!(split(&format!("{dup}.{p}.c2ln")).is_err());
    }
}
