//! JWK Sets (RFC 7517) turned into parsed public keys, once, when the set is loaded.
//! Filtering rules:
//!
//! 1. Only public keys: a JWK carrying private members (`d`, `p`, `q`, …) is skipped
//!    with a warning; so is `oct` (a symmetric key must never come from a key set).
//! 2. `use`, when present, must be `sig`; `key_ops`, when present, must allow `verify`.
//! 3. `alg`, when present, pins the key to that algorithm; it must be in the allowlist.
//! 4. RSA keys of at least 2048 bits, `n` and `e` minimally encoded; EC keys on P-256/P-384 whose point is on the curve;
//!    Ed25519 (`OKP`). Anything else is skipped with a warning.

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::alg::{Algorithm, Crypto as _, Family};

pub use crate::keys_error::JwksError;

/// Why one JWK is not usable (the key is skipped, with this as the warning).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// The key breaks a rule (symmetric, private material, wrong `use`, too short, …).
    #[error("{0}")]
    Rejected(&'static str),
    /// `kty`, or `kty` with `crv`, names no key type Ferry verifies with.
    #[error("unsupported key type {0}")]
    UnsupportedKeyType(String),
}

impl From<&'static str> for JwkError {
    fn from(why: &'static str) -> Self {
        Self::Rejected(why)
    }
}

/// One parsed public key, bound to one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    /// The algorithm this parsed key verifies.
    pub alg: Algorithm,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerifyingKey {
    /// Verifies `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// A JWK Set without keys.
const EMPTY_JWKS: &str = r#"{"keys":[]}"#;
/// Its ETag.
static EMPTY_ETAG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| etag_of(EMPTY_JWKS));

/// A strong ETag of a JWK Set: the first 16 bytes of its SHA-256, base64url, quoted (the
/// form of `/jwks`'s).
fn etag_of(body: &str) -> String {
    let tag = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    format!(
        "\"{}\"",
        URL_SAFE_NO_PAD.encode(tag.as_ref().get(..16).unwrap_or_default())
    )
}

/// The usable keys of one issuer.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    /// The usable JWKs as they may be republished, public members only
    /// ([`public_members`]), rendered once when the set is loaded.
    published: String,
    /// The strong ETag of `published`, computed with it.
    published_etag: String,
    /// A SAML identity provider's signing certificates.
    #[cfg(feature = "saml")]
    certificates: Vec<crate::saml::Certificate>,
}

fn b64(v: Option<&Value>) -> Option<Vec<u8>> {
    v.and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
}

impl KeySet {
    /// Parses a JWK Set, keeping the keys usable with `allowed` algorithms. Returns the
    /// set and a warning for each skipped key.
    pub fn from_jwks(json: &[u8], allowed: &[Algorithm]) -> Result<(Self, Vec<String>), JwksError> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|_| JwksError::Malformed("not JSON"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::Malformed("no keys array"))?;
        let mut set = KeySet::default();
        let mut published = Vec::new();
        let mut warnings = Vec::new();
        for (i, jwk) in keys.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            let name = kid.clone().unwrap_or_else(|| format!("#{i}"));
            match parse_jwk(jwk, allowed) {
                Ok(parsed) if parsed.is_empty() => {
                    warnings.push(format!("key {name}: no allowed algorithm fits it; skipped"));
                }
                Ok(parsed) => {
                    published.push(public_members(jwk, &parsed));
                    set.keys
                        .extend(parsed.into_iter().map(|(alg, key)| VerifyingKey {
                            kid: kid.clone(),
                            alg,
                            key,
                        }));
                }
                Err(why) => warnings.push(format!("key {name}: {why}; skipped")),
            }
        }
        set.published = serde_json::json!({ "keys": published }).to_string();
        set.published_etag = etag_of(&set.published);
        Ok((set, warnings))
    }

    /// Number of parsed keys (a key usable with two algorithms counts twice).
    pub fn len(&self) -> usize {
        #[cfg(feature = "saml")]
        let certificates = self.certificates.len();
        #[cfg(not(feature = "saml"))]
        let certificates = 0;
        self.keys.len() + certificates
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A SAML identity provider's signing certificates as a key set.
    #[cfg(feature = "saml")]
    pub fn from_certificates(certificates: Vec<crate::saml::Certificate>) -> Self {
        Self {
            keys: Vec::new(),
            published: String::new(),
            published_etag: String::new(),
            certificates,
        }
    }

    /// The SAML signing certificates in the set.
    #[cfg(feature = "saml")]
    pub fn certificates(&self) -> &[crate::saml::Certificate] {
        &self.certificates
    }

    /// The usable keys as a JWK Set to republish (`GET /service-accounts/{id}/jwks`),
    /// rendered once: only the keys kept, each with its public members only
    /// ([`public_members`]). A set not read from a JWKS has no keys to republish.
    pub fn public_jwks(&self) -> &str {
        if self.published.is_empty() {
            EMPTY_JWKS
        } else {
            &self.published
        }
    }

    /// The strong ETag of [`KeySet::public_jwks`] (its SHA-256, as `/jwks`'s), computed
    /// once with it.
    pub fn public_jwks_etag(&self) -> &str {
        if self.published.is_empty() {
            &EMPTY_ETAG
        } else {
            &self.published_etag
        }
    }

    /// The distinct `kid`s in the set.
    pub fn kids(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        out.dedup();
        out
    }

    /// Keys that may verify a token with this `kid` (when given) and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
    }
}

/// The members of a usable `jwk` that may be published: an allowlist (`kty`, `crv`, the
/// public parameters `n`, `e`, `x`, `y`, `kid`), never a copy minus a denylist, so
/// nothing private or unknown can slip through. `use: sig` always; `alg` as the JWK
/// pinned it, or the one algorithm it was kept for.
fn public_members(jwk: &Value, parsed: &[(Algorithm, ParsedPublicKey)]) -> Value {
    let mut out = serde_json::Map::new();
    for member in ["kty", "crv", "kid", "n", "e", "x", "y"] {
        if let Some(v) = jwk.get(member).filter(|v| v.is_string()) {
            out.insert(member.to_owned(), v.clone());
        }
    }
    out.insert("use".to_owned(), Value::from("sig"));
    if let [(alg, _)] = parsed {
        out.insert("alg".to_owned(), Value::from(alg.name()));
    }
    Value::Object(out)
}

/// Parses one public JWK for one algorithm (a DPoP proof's `jwk`).
pub(crate) fn parse_single(jwk: &Value, alg: Algorithm) -> Result<VerifyingKey, JwkError> {
    let parsed = parse_jwk(jwk, &[alg])?;
    let (alg, key) = parsed
        .into_iter()
        .next()
        .ok_or("the key does not fit the algorithm")?;
    Ok(VerifyingKey {
        kid: None,
        alg,
        key,
    })
}

fn parse_jwk(
    jwk: &Value,
    allowed: &[Algorithm],
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, JwkError> {
    let kty = jwk.get("kty").and_then(Value::as_str).ok_or("no kty")?;
    if kty == "oct" {
        return Err("symmetric (oct) keys are never accepted from a key set".into());
    }
    if has_private_material(jwk) {
        return Err("carries private key material".into());
    }
    if let Some(u) = jwk.get("use")
        && u.as_str() != Some("sig")
    {
        return Err("use is not sig".into());
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err("key_ops does not allow verify".into());
        }
    }
    let pinned = match jwk.get("alg") {
        None => None,
        Some(v) => {
            let name = v.as_str().ok_or("alg is not a string")?;
            Some(Algorithm::from_name(name).ok_or("alg is not supported")?)
        }
    };
    let family = match (kty, jwk.get("crv").and_then(Value::as_str)) {
        ("RSA", _) => Family::Rsa,
        ("EC", Some("P-256")) => Family::P256,
        ("EC", Some("P-384")) => Family::P384,
        ("OKP", Some("Ed25519")) => Family::Ed25519,
        _ => return Err(JwkError::UnsupportedKeyType(kty.to_owned())),
    };
    let algs: Vec<Algorithm> = allowed
        .iter()
        .copied()
        .filter(|a| a.family() == family && pinned.is_none_or(|p| p == *a))
        .collect();
    if let Some(p) = pinned
        && p.family() != family
    {
        return Err("alg does not fit the key type".into());
    }
    keys_for(jwk, family, algs)
}

/// The keys of `jwk` (of `family`), one for each algorithm in `algs`. RSA keys are
/// at least 2048 bits in their minimal encoding; EC points lie on their curve.
fn keys_for(
    jwk: &Value,
    family: Family,
    algs: Vec<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, JwkError> {
    let mut out = Vec::with_capacity(algs.len());
    match family {
        Family::Rsa => {
            let n = b64(jwk.get("n")).ok_or("bad n")?;
            let e = b64(jwk.get("e")).ok_or("bad e")?;
            // RFC 7518 §6.3.1.1–6.3.1.2: the minimum number of octets. A leading zero
            // would give the same key a second RFC 7638 thumbprint, so a token bound
            // to one (`cnf.jkt`) could be presented with a proof by "another" key.
            if n.first().is_none_or(|b| *b == 0) || e.first().is_none_or(|b| *b == 0) {
                return Err("RSA n or e is not in its minimal encoding (leading zero)".into());
            }
            let (n, e) = (n.as_slice(), e.as_slice());
            if n.len() * 8 < 2048 {
                return Err("RSA key shorter than 2048 bits".into());
            }
            let comps = RsaPublicKeyComponents { n, e };
            for alg in algs {
                let params = alg.rsa_params().ok_or("internal: no RSA parameters")?;
                let key = comps
                    .to_parsed_public_key(params)
                    .map_err(|_| "invalid RSA key")?;
                out.push((alg, key));
            }
        }
        Family::P256 | Family::P384 => {
            let len = if family == Family::P256 { 32 } else { 48 };
            let x = b64(jwk.get("x")).ok_or("bad x")?;
            let y = b64(jwk.get("y")).ok_or("bad y")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinates of the wrong length".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            for alg in algs {
                let params = alg.non_rsa_params().ok_or("internal: no EC parameters")?;
                // Parsing validates that the point lies on the curve.
                let key = ParsedPublicKey::new(params, &point)
                    .map_err(|_| "EC point not on the curve")?;
                out.push((alg, key));
            }
        }
        Family::Ed25519 => {
            let x = b64(jwk.get("x")).ok_or("bad x")?;
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length".into());
            }
            for alg in algs {
                let params = alg
                    .non_rsa_params()
                    .ok_or("internal: no EdDSA parameters")?;
                let key = ParsedPublicKey::new(params, &x).map_err(|_| "invalid Ed25519 key")?;
                out.push((alg, key));
            }
        }
    }
    Ok(out)
}

/// Whether a JWK carries private (or symmetric) key members: never acceptable in a
/// header that should name a public key.
pub(crate) fn has_private_material(jwk: &serde_json::Value) -> bool {
    ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|k| jwk.get(*k).is_some())
}

#[cfg(test)]
mod hostile_keys {
    use super::*;
    use ferry_testkit::TestKey;
    use serde_json::json;

    /// An issuer's JWKS holding keys that must never verify anything — a private key,
    /// a symmetric key, a 1024-bit RSA key, an EC point off the curve — beside two good
    /// keys (the twins): only the good ones are kept, each other one with a warning.
    #[test]
    fn hostile_keys_in_a_jwks_are_skipped_and_good_ones_kept() {
        let (rsa, ec) = (TestKey::rsa("good-rsa"), TestKey::ec("good-ec"));
        let mut private = rsa.public_jwk();
        private["kid"] = json!("private");
        private["d"] = json!("AQAB");
        let mut off_curve = ec.public_jwk();
        off_curve["kid"] = json!("off-curve");
        let mut y = URL_SAFE_NO_PAD
            .decode(off_curve["y"].as_str().unwrap())
            .unwrap();
        y[31] ^= 1;
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode(&y));
        let small = json!({"kty": "RSA", "kid": "small", "e": "AQAB",
            "n": URL_SAFE_NO_PAD.encode([0xc1u8; 128])});
        let oct = json!({"kty": "oct", "kid": "oct", "k": URL_SAFE_NO_PAD.encode([7u8; 32])});
        let doc =
            json!({"keys": [rsa.public_jwk(), ec.public_jwk(), private, off_curve, small, oct]});
        let (set, warnings) = KeySet::from_jwks(
            doc.to_string().as_bytes(),
            &[Algorithm::RS256, Algorithm::ES256],
        )
        .unwrap();
        let mut kids = set.kids();
        kids.sort_unstable();
        assert_eq!(kids, ["good-ec", "good-rsa"]);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        for (kid, why) in [
            ("private", "private"),
            ("off-curve", "curve"),
            ("small", "2048"),
            ("oct", ""),
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(kid) && w.contains(why)),
                "{kid}: {warnings:?}"
            );
        }
    }

    /// Republishing a set keeps only the usable keys, each with the allowlisted public
    /// members: a private key is dropped whole, and members beside the public ones
    /// (`x5c`, anything unknown) are not copied; the twin, a clean public key, is
    /// published as it was given.
    #[test]
    fn a_republished_set_holds_public_members_only() {
        let (rsa, ec) = (TestKey::rsa("r"), TestKey::ec("e"));
        let mut private = TestKey::ec("p").public_jwk();
        private["d"] = json!("AQAB");
        let mut extra = rsa.public_jwk();
        extra["x5c"] = json!(["MIIB"]);
        extra["secret"] = json!("s");
        let doc = json!({"keys": [extra, ec.public_jwk(), private]});
        let (set, _) = KeySet::from_jwks(
            doc.to_string().as_bytes(),
            &[Algorithm::RS256, Algorithm::ES256],
        )
        .unwrap();
        let text = set.public_jwks();
        let published: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            published,
            json!({"keys": [rsa.public_jwk(), ec.public_jwk()]})
        );
        for private in ["\"d\"", "x5c", "secret", "\"p\""] {
            assert!(!text.contains(private), "{private}: {text}");
        }
    }

    /// RFC 7518 §6.3.1.1: `n` with a leading zero octet is the same key under a second
    /// thumbprint; it is refused, in a key set and as a single (DPoP) key, beside its
    /// minimal twin.
    #[test]
    fn rsa_members_must_be_minimal() {
        let rsa = TestKey::rsa("k");
        let pad = |member: &str| {
            let mut jwk = rsa.public_jwk();
            let mut bytes = vec![0u8];
            bytes.extend(
                URL_SAFE_NO_PAD
                    .decode(jwk[member].as_str().unwrap())
                    .unwrap(),
            );
            jwk[member] = json!(URL_SAFE_NO_PAD.encode(bytes));
            jwk
        };
        for (name, jwk, ok) in [
            ("minimal", rsa.public_jwk(), true),
            ("n with a leading zero", pad("n"), false),
            ("e with a leading zero", pad("e"), false),
        ] {
            let doc = json!({ "keys": [jwk] });
            let (set, warnings) =
                KeySet::from_jwks(doc.to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
            assert_eq!(set.len(), usize::from(ok), "{name}: {warnings:?}");
            assert_eq!(parse_single(&jwk, Algorithm::RS256).is_ok(), ok, "{name}");
            if !ok {
                assert!(warnings[0].contains("minimal"), "{name}: {warnings:?}");
            }
        }
    }
}
