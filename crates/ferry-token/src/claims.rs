//! The claims of a Ferry access token and of a derived (locally narrowed) token.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::scope::Scope;

/// `aud`: one audience is a string, several an array (RFC 7519 §4.1.3). Reads either;
/// anything else (a number, an array holding a non-string) is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience(pub Vec<String>);

impl Audience {
    /// The audiences.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Writes the audiences as an array even when there is one (derived layers do).
    pub fn serialize_array<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }

    /// Whether `a` is one of the audiences.
    pub fn contains(&self, a: &str) -> bool {
        self.0.iter().any(|x| x == a)
    }
}

impl From<Vec<String>> for Audience {
    fn from(v: Vec<String>) -> Self {
        Self(v)
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(match OneOrMany::deserialize(d)? {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(a) => a,
        }))
    }
}

/// `cnf` (RFC 7800): the key a token is bound to. Ferry binds to a DPoP key's RFC 7638
/// thumbprint (`jkt`, RFC 9449 §6.1); `x5t#S256` (RFC 8705 §3.1) names a certificate.
/// A member of the wrong type (an array `jkt`) is refused, never read as "unbound".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The DPoP key's thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The SHA-256 thumbprint of an mTLS client certificate.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Confirmation {
    /// Bound to a DPoP key.
    pub fn jkt(jkt: impl Into<String>) -> Self {
        Self {
            jkt: Some(jkt.into()),
            x5t_s256: None,
        }
    }

    /// Bound to a client certificate (RFC 8705 §3.1).
    pub fn x5t_s256(thumbprint: impl Into<String>) -> Self {
        Self {
            jkt: None,
            x5t_s256: Some(thumbprint.into()),
        }
    }
}

/// `act` (RFC 8693 §4.1): the acting party of a delegated token, nesting earlier actors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Act {
    /// The actor.
    pub sub: String,
    /// The provider that verified the actor's token (set by Ferry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The actor's issuer, when an upstream `act` named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The previous actor in the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Act>>,
    /// Members of an upstream `act` that Ferry does not interpret, carried as they came.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `may_act` (RFC 8693 §4.4): who may act for the subject, as the subject token's issuer
/// named them (the actor token's raw `sub` and, when given, `iss`). Carried into every
/// token issued from it, so an actor added later meets it too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MayAct {
    /// The actor's `sub`; without one, no actor is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The actor token's `iss`, when the subject's issuer named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

impl MayAct {
    /// Whether an actor token with these raw `sub` and `iss` is the one named.
    pub fn allows(&self, sub: Option<&str>, iss: &str) -> bool {
        self.sub.is_some()
            && self.sub.as_deref() == sub
            && self.iss.as_deref().is_none_or(|i| i == iss)
    }
}

/// The `ferry` claim: where the token's subject came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The provider that verified the subject token (`ferry` for a narrowed one with
    /// no provenance).
    pub provider: String,
    /// The subject token's `iss`.
    pub iss: String,
    /// The subject token's `sub`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// For a token made by narrowing another at Ferry: the `jti`s of every ancestor,
    /// oldest first, ending with the parent's. Revoking any of them revokes this token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<String>,
}

/// The claims of an access token Ferry issues (RFC 9068 §2.2). Members are written in
/// this order; optional ones are omitted when empty, exactly as Ferry has always
/// minted them. Claims not named here are ignored when reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Ferry's issuer identifier.
    pub iss: String,
    /// The mapped subject.
    pub sub: String,
    /// The audiences.
    pub aud: Audience,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// Not before (Ferry sets it to `iat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// A unique token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The granted scopes.
    #[serde(default, skip_serializing_if = "Scope::is_empty")]
    pub scope: Scope,
    /// Google Credential Access Boundaries, the outermost parent's first; each
    /// `{"accessBoundaryRules": […]}` (validated by `ferry-core`, enforced by
    /// `ferry-verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_boundaries: Option<Vec<Value>>,
    /// The acting party of a delegated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// Who may act for the subject (RFC 8693 §4.4), as the subject token named them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<MayAct>,
    /// The key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Mapped groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Mapped attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Where the subject came from.
    pub ferry: Provenance,
    /// The audience's own claims (`audiences[].claims`), top-level members outside the
    /// profile: read by [`AccessClaims::from_map`], written after the profile's members
    /// by [`AccessClaims::to_map`], never over one of them.
    #[serde(skip)]
    pub custom: Map<String, Value>,
}

impl AccessClaims {
    /// Reads the claims of a verified Ferry token; members outside the profile are its
    /// audience's own claims ([`AccessClaims::custom`]).
    pub fn from_map(claims: &Map<String, Value>) -> Result<Self, serde_json::Error> {
        let mut c = Self::deserialize(claims)?;
        c.custom = claims
            .iter()
            .filter(|(k, _)| !crate::registered::is_ferry_member(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(c)
    }

    /// The claims as a JSON object, as they go into the JWT.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            // Every member serializes to JSON and the struct to an object.
            _ => Map::new(),
        };
        for (k, v) in &self.custom {
            if !crate::registered::is_ferry_member(k) {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        m
    }

    /// Every actor of the `act` chain, outermost first.
    pub fn actors(&self) -> impl Iterator<Item = &Act> {
        std::iter::successors(self.act.as_ref(), |a| a.act.as_deref())
    }

    /// Whether `subject` is the token's subject or acted in it: revoking a subject
    /// revokes the tokens it acted on too.
    pub fn names_subject(&self, subject: &str) -> bool {
        self.sub == subject || self.actors().any(|a| a.sub == subject)
    }

    /// Whether the token came from `provider` or an actor it verified did.
    pub fn names_provider(&self, provider: &str) -> bool {
        self.ferry.provider == provider
            || self
                .actors()
                .any(|a| a.provider.as_deref() == Some(provider))
    }

    /// The `cnf.jkt` the token is bound to, if any.
    pub fn bound_jkt(&self) -> Option<&str> {
        self.cnf.as_ref().and_then(|c| c.jkt.as_deref())
    }
}

/// The payload of one layer of a derived token (`typ: ferry-derived+jwt`), which
/// `ferry-verify` documents: the parent token, the narrowed `aud`, `scope` (absent is no
/// scope), `iat`, `exp`, `depth`, an optional added `access_boundary` and `cnf`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DerivedClaims {
    /// The token this one narrows (a Ferry token or another derived token).
    pub parent: String,
    /// The audiences, a subset of the parent's (written as an array).
    #[serde(default, serialize_with = "Audience::serialize_array")]
    pub aud: Audience,
    /// The scopes, a subset of the parent's.
    #[serde(default)]
    pub scope: Scope,
    /// Issue time.
    pub iat: i64,
    /// Expiry, at most the parent's.
    pub exp: i64,
    /// The parent's depth + 1 (a Ferry token is depth 0).
    pub depth: u64,
    /// A boundary added to the parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_boundary: Option<Value>,
    /// The key the derived token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}
