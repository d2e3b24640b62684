//! Local downscoping: the holder of a bound Ferry token derives a narrower token on its
//! own machine, without a round trip to Ferry, and a relying service verifies it offline.
//!
//! A derived token is a compact JWS with `typ: ferry-derived+jwt`, signed (ES256) by the
//! key its parent is bound to, with that public key in the header's `jwk`. Its payload:
//!
//! ```json
//! {"parent": "<the parent token>", "aud": ["…"], "scope": "…", "iat": 0, "exp": 0,
//!  "depth": 1, "access_boundary": {"accessBoundaryRules": […]}, "cnf": {"jkt": "…"}}
//! ```
//!
//! `aud` ⊆ the parent's, `scope` ⊆ the parent's (a space-delimited string; absent means
//! no scopes, never the parent's), `exp` ≤ the parent's, `depth` = the
//! parent's + 1 (a Ferry token is depth 0) and at most [`MAX_DEPTH`]; `access_boundary`
//! is added to the parent's boundaries; `cnf.jkt` (optional) binds the derived token to
//! another key (the task's): it is then used with DPoP proofs by that key, and only that
//! key can derive from it further. Without `cnf` the derived token is a bearer token and
//! the end of its chain.
//!
//! Threat model: the root must be a Ferry token bound to the holder's key (`cnf.jkt`), so
//! a service that receives a derived token and extracts the embedded parent cannot use
//! it — presenting it needs a DPoP proof by the holder's key — and cannot derive from it
//! either. The service can replay the derived token itself until its `exp`, only to the
//! audiences and scopes it names: keep derived lifetimes short and bind them (`cnf`) when
//! the receiver is not trusted with a bearer token. Revocation is by the root's `exp`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_token::{AccessClaims, Audience, Confirmation, DerivedClaims, Scope};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::alg::Algorithm;
use crate::dpop::thumbprint;
use crate::jwks::parse_single;
use crate::jws::{decode_object, split};
use crate::source::KeySource;
use crate::{error::VerifyError, rules::Rules};

/// The `typ` of a derived token.
pub const DERIVED_TYPE: &str = "ferry-derived+jwt";
/// The deepest derivation accepted.
pub const MAX_DEPTH: u64 = 4;

/// Why a derivation was refused (holder side) or a derived token did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeriveError {
    /// The embedded chain or a layer is malformed.
    #[error("malformed derived token: {0}")]
    Malformed(&'static str),
    /// The root Ferry token did not verify.
    #[error("root token: {0}")]
    Root(#[from] VerifyError),
    /// The parent is not bound to a key, or this layer is not signed by it.
    #[error("not signed by the key the parent is bound to")]
    Holder,
    /// A layer's signature does not verify.
    #[error("bad signature on a derived layer")]
    Signature,
    /// A layer is broader than its parent (`aud`, `scope` or `exp`).
    #[error("a derived layer widens its parent: {0}")]
    Widens(&'static str),
    /// Deeper than [`MAX_DEPTH`], or `depth` not the parent's + 1.
    #[error("derivation depth")]
    Depth,
    /// The derived token has expired or is issued in the future.
    #[error("derived token expired or not yet valid")]
    Time,
    /// The outermost `aud` does not name this service.
    #[error("audience mismatch")]
    Audience,
    /// The access boundary does not parse or compile.
    #[error("invalid access boundary")]
    Boundary,
    /// The holder key could not be used.
    #[error("holder key: {0}")]
    Key(&'static str),
}

/// The holder's ES256 key: the key its Ferry token is bound to.
#[derive(Debug)]
pub struct HolderKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    jkt: String,
}

impl HolderKey {
    /// A new random P-256 key.
    pub fn generate() -> Result<Self, DeriveError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| DeriveError::Key("generation failed"))?;
        Self::from_pair(pair)
    }

    /// A P-256 key from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, DeriveError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| DeriveError::Key("not a P-256 PKCS#8 key"))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, DeriveError> {
        // SEC 1 §2.3.3: an uncompressed point is 0x04, then x and y (32 bytes each).
        let (x, y) = pair
            .public_key()
            .as_ref()
            .split_first()
            .filter(|(tag, xy)| **tag == 4 && xy.len() == 64)
            .and_then(|(_, xy)| xy.split_at_checked(32))
            .ok_or(DeriveError::Key("unexpected public key encoding"))?;
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        });
        let jkt = thumbprint(&jwk);
        Ok(Self { pair, jwk, jkt })
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 thumbprint (the `cnf.jkt` a token bound to this key carries).
    pub fn thumbprint(&self) -> &str {
        &self.jkt
    }

    /// Signs a compact JWS with this key (ES256): `header` gains `alg` and `jwk`.
    pub fn sign(
        &self,
        mut header: Map<String, Value>,
        payload: &Value,
    ) -> Result<String, DeriveError> {
        header.insert("alg".into(), json!("ES256"));
        header.insert("jwk".into(), self.jwk.clone());
        let h = serde_json::to_vec(&header).map_err(|_| DeriveError::Key("header"))?;
        let p = serde_json::to_vec(payload).map_err(|_| DeriveError::Key("payload"))?;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(h),
            URL_SAFE_NO_PAD.encode(p)
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| DeriveError::Key("signing failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

/// How to narrow a parent. Empty/`None` fields keep the parent's.
#[derive(Debug, Clone, Default)]
pub struct Narrowing {
    /// `aud`, a subset of the parent's.
    pub audiences: Vec<String>,
    /// Scopes, a subset of the parent's.
    pub scopes: Option<Vec<String>>,
    /// Lifetime from now, seconds; capped by the parent's `exp`.
    pub lifetime: Option<i64>,
    /// A Google-style access boundary (`{"accessBoundaryRules": […]}`) added to the
    /// parent's.
    pub access_boundary: Option<Value>,
    /// Bind the derived token to another key (its RFC 7638 thumbprint).
    pub bind_to: Option<String>,
}

/// What one layer grants.
#[derive(Debug, Clone)]
struct View {
    aud: Vec<String>,
    scopes: Vec<String>,
    exp: i64,
    depth: u64,
    jkt: Option<String>,
}

impl View {
    /// A Ferry token's (depth 0).
    fn root(c: &AccessClaims) -> Self {
        Self {
            aud: c.aud.0.clone(),
            scopes: c.scope.0.clone(),
            exp: c.exp,
            depth: 0,
            jkt: c.bound_jkt().map(str::to_owned),
        }
    }

    /// A derived layer's.
    fn layer(c: &DerivedClaims) -> Self {
        Self {
            aud: c.aud.0.clone(),
            scopes: c.scope.0.clone(),
            exp: c.exp,
            depth: c.depth,
            jkt: c.cnf.as_ref().and_then(|c| c.jkt.clone()),
        }
    }
}

/// One member of a layer read as its type in Ferry's token profile (`aud` a string or
/// an array of strings, RFC 7519 §4.1.3; `scope` a space-delimited string, RFC 8693
/// §4.2); a member of another shape is malformed, and named in the error.
fn member<'a, T: Deserialize<'a>>(
    m: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<T>, DeriveError> {
    m.get(name)
        .map(|v| T::deserialize(v).map_err(|_| DeriveError::Malformed(name)))
        .transpose()
}

/// A layer's payload. An absent `scope` means no scopes — a layer never inherits its
/// parent's — and an absent `aud` none (refused later as widening).
fn layer_claims(m: &Map<String, Value>) -> Result<DerivedClaims, DeriveError> {
    let need = |name| DeriveError::Malformed(name);
    Ok(DerivedClaims {
        parent: member(m, "parent")?.ok_or(need("parent"))?,
        aud: member(m, "aud")?.unwrap_or_default(),
        scope: member(m, "scope")?.unwrap_or_default(),
        iat: member(m, "iat")?.ok_or(need("iat"))?,
        exp: member(m, "exp")?.ok_or(need("exp"))?,
        depth: member(m, "depth")?.ok_or(need("depth"))?,
        access_boundary: m.get("access_boundary").cloned(),
        cnf: member(m, "cnf")?,
    })
}

/// A Ferry token's claims, read as Ferry's token profile.
fn root_claims(m: &Map<String, Value>) -> Result<AccessClaims, DeriveError> {
    AccessClaims::from_map(m).map_err(|_| DeriveError::Malformed("root claims"))
}

/// Whether `token` is a derived token (by its header; nothing is verified).
pub fn is_derived(token: &str) -> bool {
    split(token).is_ok_and(|p| p.header.typ.as_deref() == Some(DERIVED_TYPE))
}

/// Derives a narrower token from `parent` (a bound Ferry token, or a derived token bound
/// to `holder`). Checks every rule the verifier will check, so a refused derivation
/// fails here rather than at the relying service.
pub fn derive(
    parent: &str,
    holder: &HolderKey,
    n: &Narrowing,
    now: i64,
) -> Result<String, DeriveError> {
    let claims = decode_object(split(parent)?.payload_b64, "payload")?;
    let p = if is_derived(parent) {
        View::layer(&layer_claims(&claims)?)
    } else {
        View::root(&root_claims(&claims)?)
    };
    let depth = p.depth;
    if p.jkt.as_deref() != Some(holder.thumbprint()) {
        return Err(DeriveError::Holder);
    }
    if depth + 1 > MAX_DEPTH {
        return Err(DeriveError::Depth);
    }
    let aud = if n.audiences.is_empty() {
        p.aud.clone()
    } else {
        n.audiences.clone()
    };
    if aud.iter().any(|a| !p.aud.contains(a)) {
        return Err(DeriveError::Widens("aud"));
    }
    let scope = n.scopes.clone().unwrap_or_else(|| p.scopes.clone());
    if scope.iter().any(|s| !p.scopes.contains(s)) {
        return Err(DeriveError::Widens("scope"));
    }
    let exp = n.lifetime.map_or(p.exp, |l| (now + l).min(p.exp));
    if exp <= now {
        return Err(DeriveError::Time);
    }
    if let Some(b) = &n.access_boundary {
        check_boundary(b)?;
    }
    let payload = DerivedClaims {
        parent: parent.to_owned(),
        aud: Audience(aud),
        scope: Scope(scope),
        iat: now,
        exp,
        depth: depth + 1,
        access_boundary: n.access_boundary.clone(),
        cnf: n.bind_to.as_deref().map(Confirmation::jkt),
    };
    let payload = serde_json::to_value(&payload).map_err(|_| DeriveError::Malformed("payload"))?;
    let mut header = Map::new();
    header.insert("typ".into(), json!(DERIVED_TYPE));
    holder.sign(header, &payload)
}

#[cfg(feature = "access-boundary")]
fn check_boundary(b: &Value) -> Result<(), DeriveError> {
    crate::boundary::AccessBoundaries::parse(&Value::Array(vec![b.clone()]))
        .map(|_| ())
        .map_err(|_| DeriveError::Boundary)
}

#[cfg(not(feature = "access-boundary"))]
fn check_boundary(b: &Value) -> Result<(), DeriveError> {
    b.get("accessBoundaryRules")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .map(|_| ())
        .ok_or(DeriveError::Boundary)
}

/// Unwraps a derived token's chain, outermost layer first, without trusting anything
/// yet. Returns the layers (each token with its payload) and the root token.
fn unwrap_chain(token: &str) -> Result<(Vec<(String, DerivedClaims)>, String), DeriveError> {
    let mut layers: Vec<(String, DerivedClaims)> = Vec::new();
    let mut current = token.to_owned();
    while is_derived(&current) {
        if layers.len() as u64 >= MAX_DEPTH {
            return Err(DeriveError::Depth);
        }
        let claims = split(&current)
            .and_then(|p| decode_object(p.payload_b64, "payload"))
            .map_err(|_| DeriveError::Malformed("layer"))?;
        let claims = layer_claims(&claims)?;
        let parent = claims.parent.clone();
        layers.push((std::mem::replace(&mut current, parent), claims));
    }
    if layers.is_empty() {
        return Err(DeriveError::Malformed("not a derived token"));
    }
    Ok((layers, current))
}

/// Checks one layer against its parent: signed by the key the parent is bound to, one
/// level deeper, no wider (`aud`, `scope`, `exp`), and current. Returns what it grants.
fn check_layer(
    layer: &str,
    payload: &DerivedClaims,
    parent: &View,
    leeway: i64,
    now: i64,
) -> Result<View, DeriveError> {
    let parts = split(layer).map_err(|_| DeriveError::Malformed("layer"))?;
    if parts.header.crit {
        return Err(DeriveError::Malformed("crit"));
    }
    let alg = Algorithm::from_name(&parts.header.alg)
        .filter(|a| matches!(a, Algorithm::ES256 | Algorithm::EdDSA))
        .ok_or(DeriveError::Malformed("alg"))?;
    let header_b64 = parts.signing_input.split('.').next().unwrap_or_default();
    let header = decode_object(header_b64, "header")?;
    let jwk = header
        .get("jwk")
        .filter(|j| j.is_object())
        .ok_or(DeriveError::Holder)?;
    if crate::jwks::has_private_material(jwk) {
        return Err(DeriveError::Malformed("private key material in jwk"));
    }
    if parent.jkt.as_deref() != Some(thumbprint(jwk).as_str()) {
        return Err(DeriveError::Holder);
    }
    let key = parse_single(jwk, alg).map_err(|_| DeriveError::Holder)?;
    if !key.verify(parts.signing_input.as_bytes(), &parts.signature) {
        return Err(DeriveError::Signature);
    }
    let this = View::layer(payload);
    if this.depth != parent.depth + 1 || this.depth > MAX_DEPTH {
        return Err(DeriveError::Depth);
    }
    if this.aud.is_empty() || this.aud.iter().any(|a| !parent.aud.contains(a)) {
        return Err(DeriveError::Widens("aud"));
    }
    if this.scopes.iter().any(|s| !parent.scopes.contains(s)) {
        return Err(DeriveError::Widens("scope"));
    }
    if this.exp > parent.exp {
        return Err(DeriveError::Widens("exp"));
    }
    let iat = payload.iat;
    if this.exp.saturating_add(leeway) <= now || iat > now.saturating_add(leeway) {
        return Err(DeriveError::Time);
    }
    Ok(this)
}

/// Verifies a derived token offline: Ferry's signature on the root (with `rules` and
/// `keys`, as for Ferry's own tokens), each layer's signature by the key its parent is
/// bound to, every narrowing rule and the depth. Returns the effective claims: the
/// root's, with `aud`, `scope`, `exp` and `cnf` of the narrowed chain (each layer's
/// checked against its parent's; an absent `scope` is no scope, `cnf` none if the
/// outermost layer is unbound) and the outermost layer's `iat`, every layer's boundary appended to `access_boundaries`,
/// `derivation_depth`, and `root_iat` and `root_kid` (the root's `iat` and signing key).
pub async fn verify_derived(
    token: &str,
    rules: &Rules,
    keys: &KeySource,
    now: i64,
) -> Result<Map<String, Value>, DeriveError> {
    let (layers, current) = unwrap_chain(token)?;
    // The root: a Ferry token, verified as the service verifies any.
    let root = crate::unverified::parse(&current)?
        .verify(rules, keys, now)
        .await?;
    let root_kid = root.header.kid.clone();
    let mut claims = root.claims;
    if let Some(kid) = root_kid {
        claims.insert("root_kid".into(), Value::String(kid));
    }
    let root_profile = root_claims(&claims)?;
    // Revocation rules ("every token issued up to …") look at when the root was issued.
    claims.insert("root_iat".into(), json!(root_profile.iat));
    let mut parent = View::root(&root_profile);
    let mut boundaries: Vec<Value> = root_profile.access_boundaries.unwrap_or_default();
    let mut outer_iat = None;
    for (layer, payload) in layers.into_iter().rev() {
        let this = check_layer(&layer, &payload, &parent, rules.leeway(), now)?;
        if let Some(b) = payload.access_boundary {
            check_boundary(&b)?;
            boundaries.push(b);
        }
        parent = this;
        outer_iat = Some(payload.iat);
    }
    if !rules.audience_accepted(parent.aud.iter().map(|a| Some(a.as_str()))) {
        return Err(DeriveError::Audience);
    }
    // The effective claims are the narrowed chain's (`parent` is now the outermost
    // layer's view, each member checked against the one before), never whatever members
    // the outermost layer happens to carry.
    claims.insert("aud".into(), json!(parent.aud));
    if parent.scopes.is_empty() {
        claims.remove("scope");
    } else {
        claims.insert("scope".into(), json!(parent.scopes.join(" ")));
    }
    claims.insert("exp".into(), json!(parent.exp));
    if let Some(iat) = outer_iat {
        claims.insert("iat".into(), json!(iat));
    }
    match &parent.jkt {
        Some(jkt) => claims.insert("cnf".into(), json!({"jkt": jkt})),
        None => claims.remove("cnf"),
    };
    if !boundaries.is_empty() {
        claims.insert("access_boundaries".into(), Value::Array(boundaries));
    }
    claims.insert("derivation_depth".into(), json!(parent.depth));
    Ok(claims)
}

#[cfg(test)]
#[path = "derive_tests.rs"]
mod tests;
