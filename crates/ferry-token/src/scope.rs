//! `scope`: a space-delimited string on the wire (RFC 8693 §4.2, RFC 6749 §3.3), a list
//! of scopes in code.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of scopes, kept in order. Serializes as one space-delimited string; reads only
/// a string (an array or a number is refused, never coerced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(pub Vec<String>);

impl Scope {
    /// Splits a space-delimited string; empty parts (repeated spaces) are dropped.
    pub fn parse(s: &str) -> Self {
        Self(
            s.split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether there is no scope.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `s` is one of the scopes.
    pub fn contains(&self, s: &str) -> bool {
        self.0.iter().any(|x| x == s)
    }

    /// The scopes.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

impl From<Vec<String>> for Scope {
    fn from(v: Vec<String>) -> Self {
        Self(v)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct ScopeVisitor;

impl Visitor<'_> for ScopeVisitor {
    type Value = Scope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a space-delimited string of scopes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scope, E> {
        Ok(Scope::parse(v))
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ScopeVisitor)
    }
}
