//! Key binding (RFC 7800 `cnf`, RFC 9449 §6): which key a request must prove, and which
//! key the issued token is bound to. Pure: the server verifies the proof, this decides.
//!
//! Ferry enforces one confirmation method at `/token`, the DPoP key thumbprint
//! (`cnf.jkt`, a string). A token carrying any other `cnf` — a certificate thumbprint,
//! an embedded key, an array, an unknown member — is refused: issuing from it would turn
//! a bound credential into a bearer one.

use serde_json::{Map, Value};

/// The binding a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// No `cnf`: a bearer token.
    Bearer,
    /// Bound to the DPoP key with this RFC 7638 thumbprint.
    Jkt(String),
}

impl Binding {
    /// The thumbprint, when bound.
    pub fn jkt(&self) -> Option<&str> {
        match self {
            Self::Bearer => None,
            Self::Jkt(j) => Some(j),
        }
    }
}

/// Why a token's binding cannot be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// A `cnf` Ferry cannot enforce (or a malformed one).
    #[error("the token is bound by a confirmation method Ferry cannot enforce")]
    Unenforceable,
    /// The subject token is bound to a key and no proof by that key came.
    #[error("the subject token is bound to a key and no proof by that key came with it")]
    SubjectUnproven,
    /// The actor token is bound to a key and no proof by that key came.
    #[error("the actor token is bound to a key and no proof by that key came with it")]
    ActorUnproven,
}

/// Reads the `cnf` of a verified token's claims.
pub fn read(claims: &Map<String, Value>) -> Result<Binding, BindingError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(Binding::Bearer);
    };
    let members = cnf.as_object().ok_or(BindingError::Unenforceable)?;
    match (members.len(), members.get("jkt")) {
        (1, Some(Value::String(jkt))) if !jkt.is_empty() => Ok(Binding::Jkt(jkt.clone())),
        _ => Err(BindingError::Unenforceable),
    }
}

/// Checks the request's proof (the thumbprint of its DPoP key, if a proof came) against
/// the subject's and the actor's bindings. A request carries one proof, so a subject and
/// an actor bound to different keys can never both be proven.
pub fn check(subject: &Binding, actor: &Binding, proof: Option<&str>) -> Result<(), BindingError> {
    if let Some(j) = subject.jkt()
        && proof != Some(j)
    {
        return Err(BindingError::SubjectUnproven);
    }
    if let Some(j) = actor.jkt()
        && proof != Some(j)
    {
        return Err(BindingError::ActorUnproven);
    }
    Ok(())
}

/// Whether the issued token must be bound to a key: an audience or rule requires DPoP,
/// or a bound subject or actor (a bound credential never comes back out as a bearer
/// token). With a proof, the issued token is always bound to the proof's key.
pub fn requires_dpop(rule_requires: bool, subject: &Binding, actor: &Binding) -> bool {
    rule_requires || subject.jkt().is_some() || actor.jkt().is_some()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn reading_cnf() {
        let cases = [
            (json!({}), Ok(Binding::Bearer)),
            (json!({"cnf": {"jkt": "k1"}}), Ok(Binding::Jkt("k1".into()))),
            (
                json!({"cnf": {"jkt": ""}}),
                Err(BindingError::Unenforceable),
            ),
            (
                json!({"cnf": {"jkt": ["k1"]}}),
                Err(BindingError::Unenforceable),
            ),
            (
                json!({"cnf": {"x5t#S256": "t"}}),
                Err(BindingError::Unenforceable),
            ),
            (
                json!({"cnf": {"jwk": {"kty": "EC"}}}),
                Err(BindingError::Unenforceable),
            ),
            (
                json!({"cnf": {"jkt": "k1", "kid": "x"}}),
                Err(BindingError::Unenforceable),
            ),
            (json!({"cnf": {}}), Err(BindingError::Unenforceable)),
            (json!({"cnf": "k1"}), Err(BindingError::Unenforceable)),
            (json!({"cnf": null}), Err(BindingError::Unenforceable)),
        ];
        for (c, want) in cases {
            assert_eq!(read(&claims(c.clone())), want, "{c}");
        }
    }

    #[test]
    fn one_proof_covers_the_keys_bound() {
        let (b, k1, k2) = (
            Binding::Bearer,
            Binding::Jkt("k1".into()),
            Binding::Jkt("k2".into()),
        );
        let cases = [
            (&b, &b, None, Ok(())),
            (&b, &b, Some("k9"), Ok(())),
            (&k1, &b, Some("k1"), Ok(())),
            (&k1, &b, None, Err(BindingError::SubjectUnproven)),
            (&k1, &b, Some("k2"), Err(BindingError::SubjectUnproven)),
            (&b, &k1, Some("k1"), Ok(())),
            (&b, &k1, None, Err(BindingError::ActorUnproven)),
            (&b, &k1, Some("k2"), Err(BindingError::ActorUnproven)),
            (&k1, &k1, Some("k1"), Ok(())),
            (&k1, &k2, Some("k1"), Err(BindingError::ActorUnproven)),
            (&k1, &k2, Some("k2"), Err(BindingError::SubjectUnproven)),
        ];
        for (s, a, p, want) in cases {
            assert_eq!(check(s, a, p), want, "{s:?} {a:?} {p:?}");
        }
    }

    #[test]
    fn dpop_is_required_by_a_rule_or_a_bound_credential() {
        let (b, k) = (Binding::Bearer, Binding::Jkt("k".into()));
        assert!(!requires_dpop(false, &b, &b));
        assert!(requires_dpop(true, &b, &b));
        assert!(requires_dpop(false, &k, &b));
        assert!(requires_dpop(false, &b, &k));
    }
}
