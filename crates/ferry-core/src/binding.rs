//! Key binding (RFC 7800 `cnf`, RFC 9449 §6, RFC 8705 §3): which key a request must
//! prove, and which key the issued token is bound to. Pure: the server verifies the
//! proofs (the DPoP proof's signature, the TLS handshake's), this decides.
//!
//! Ferry enforces two confirmation methods: the DPoP key thumbprint (`cnf.jkt`) and the
//! client certificate thumbprint (`cnf.x5t#S256`), each a non-empty string and alone in
//! `cnf`. A token carrying any other `cnf` — an embedded key, an array, an unknown
//! member, both at once — is refused: issuing from it would turn a bound credential into
//! a bearer one. An issued token carries one binding: a certificate-bound credential or
//! an audience with `require_mtls` binds it to the certificate, a DPoP-bound credential
//! or a rule requiring DPoP to the proof's key; otherwise a DPoP proof wins over a
//! certificate, and a certificate alone binds.

use serde_json::{Map, Value};

/// The binding a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// No `cnf`: a bearer token.
    Bearer,
    /// Bound to the DPoP key with this RFC 7638 thumbprint.
    Jkt(String),
    /// Bound to the client certificate with this RFC 8705 thumbprint (`x5t#S256`).
    X5t(String),
}

impl BindingError {
    /// Whether a client certificate (not a DPoP proof) is what the request lacks.
    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            Self::SubjectCertificateUnproven
                | Self::ActorCertificateUnproven
                | Self::CertificateRequired
        )
    }
}

impl Binding {
    /// The DPoP key thumbprint, when bound to one.
    pub fn jkt(&self) -> Option<&str> {
        match self {
            Self::Jkt(j) => Some(j),
            _ => None,
        }
    }

    /// The certificate thumbprint, when bound to one.
    pub fn x5t(&self) -> Option<&str> {
        match self {
            Self::X5t(t) => Some(t),
            _ => None,
        }
    }
}

/// What the request proved: the thumbprint of its DPoP proof's key, and of the client
/// certificate its connection (or a trusted proxy) presented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Proofs<'a> {
    /// The DPoP proof's key (`jkt`).
    pub jkt: Option<&'a str>,
    /// The client certificate (`x5t#S256`).
    pub x5t: Option<&'a str>,
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
    /// The subject token is bound to a certificate the request did not present.
    #[error("the subject token is bound to a client certificate the request did not present")]
    SubjectCertificateUnproven,
    /// The actor token is bound to a certificate the request did not present.
    #[error("the actor token is bound to a client certificate the request did not present")]
    ActorCertificateUnproven,
    /// The issued token must be bound to a certificate and none was presented.
    #[error("a client certificate is required")]
    CertificateRequired,
    /// The issued token must be bound to a DPoP key and no proof came.
    #[error("a DPoP proof is required")]
    DpopRequired,
    /// One credential requires a certificate binding and another a DPoP binding.
    #[error("the credentials require both a certificate and a DPoP binding; a token carries one")]
    Conflicting,
}

/// Reads the `cnf` of a verified token's claims.
pub fn read(claims: &Map<String, Value>) -> Result<Binding, BindingError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(Binding::Bearer);
    };
    let members = cnf.as_object().ok_or(BindingError::Unenforceable)?;
    if members.len() != 1 {
        return Err(BindingError::Unenforceable);
    }
    match (members.get("jkt"), members.get("x5t#S256")) {
        (Some(Value::String(jkt)), None) if !jkt.is_empty() => Ok(Binding::Jkt(jkt.clone())),
        (None, Some(Value::String(t))) if !t.is_empty() => Ok(Binding::X5t(t.clone())),
        _ => Err(BindingError::Unenforceable),
    }
}

/// `Ok` when `b` is proven; else whether a certificate was what lacked.
fn proven(b: &Binding, p: Proofs<'_>) -> Result<(), bool> {
    match b {
        Binding::Bearer => Ok(()),
        Binding::Jkt(j) if p.jkt == Some(j.as_str()) => Ok(()),
        Binding::X5t(t) if p.x5t == Some(t.as_str()) => Ok(()),
        Binding::Jkt(_) => Err(false),
        Binding::X5t(_) => Err(true),
    }
}

/// Checks the request's proofs against the subject's and the actor's bindings: a key
/// bound by DPoP needs the proof by that key, a certificate-bound one the connection's
/// certificate. A request carries one of each, so a subject and an actor bound to
/// different keys of one kind can never both be proven.
pub fn check(subject: &Binding, actor: &Binding, proofs: Proofs<'_>) -> Result<(), BindingError> {
    proven(subject, proofs).map_err(|cert| {
        if cert {
            BindingError::SubjectCertificateUnproven
        } else {
            BindingError::SubjectUnproven
        }
    })?;
    proven(actor, proofs).map_err(|cert| {
        if cert {
            BindingError::ActorCertificateUnproven
        } else {
            BindingError::ActorUnproven
        }
    })
}

/// Whether the issued token must be bound to a DPoP key: an audience or rule requires
/// DPoP, or a DPoP-bound subject or actor.
pub fn requires_dpop(rule_requires: bool, subject: &Binding, actor: &Binding) -> bool {
    rule_requires || subject.jkt().is_some() || actor.jkt().is_some()
}

/// The binding of the issued token (see the module's rules), from what the request
/// proved: a bound credential never comes back out as a bearer token.
pub fn issued(
    require_dpop: bool,
    require_mtls: bool,
    subject: &Binding,
    actor: &Binding,
    proofs: Proofs<'_>,
) -> Result<Binding, BindingError> {
    let dpop = requires_dpop(require_dpop, subject, actor);
    let mtls = require_mtls || subject.x5t().is_some() || actor.x5t().is_some();
    match (dpop, mtls, proofs.jkt, proofs.x5t) {
        (true, true, _, _) => Err(BindingError::Conflicting),
        (false, true, _, Some(t)) => Ok(Binding::X5t(t.to_owned())),
        (false, true, _, None) => Err(BindingError::CertificateRequired),
        (true, false, Some(j), _) => Ok(Binding::Jkt(j.to_owned())),
        (true, false, None, _) => Err(BindingError::DpopRequired),
        (false, false, Some(j), _) => Ok(Binding::Jkt(j.to_owned())),
        (false, false, None, Some(t)) => Ok(Binding::X5t(t.to_owned())),
        (false, false, None, None) => Ok(Binding::Bearer),
    }
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
                Ok(Binding::X5t("t".into())),
            ),
            (
                json!({"cnf": {"x5t#S256": ""}}),
                Err(BindingError::Unenforceable),
            ),
            (
                json!({"cnf": {"x5t#S256": "t", "jkt": "k1"}}),
                Err(BindingError::Unenforceable),
            ),
            (
                json!({"cnf": {"x5t#S256": ["t"]}}),
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
            let proofs = Proofs { jkt: p, x5t: None };
            assert_eq!(check(s, a, proofs), want, "{s:?} {a:?} {p:?}");
        }
        // A certificate-bound credential needs that certificate, whatever DPoP proves.
        let t1 = Binding::X5t("t1".into());
        let cert = |t: &'static str| Proofs {
            jkt: Some("k1"),
            x5t: Some(t),
        };
        assert_eq!(check(&t1, &b, cert("t1")), Ok(()));
        assert_eq!(
            check(&t1, &b, cert("t2")),
            Err(BindingError::SubjectCertificateUnproven)
        );
        assert_eq!(
            check(
                &t1,
                &b,
                Proofs {
                    jkt: Some("t1"),
                    x5t: None
                }
            ),
            Err(BindingError::SubjectCertificateUnproven)
        );
        assert_eq!(
            check(&b, &t1, cert("t2")),
            Err(BindingError::ActorCertificateUnproven)
        );
        assert_eq!(check(&k1, &t1, cert("t1")), Ok(()));
    }

    #[test]
    fn an_issued_token_carries_one_binding() {
        let (b, k, t) = (
            Binding::Bearer,
            Binding::Jkt("k".into()),
            Binding::X5t("t".into()),
        );
        let both = Proofs {
            jkt: Some("k"),
            x5t: Some("t"),
        };
        let dpop = Proofs {
            jkt: Some("k"),
            x5t: None,
        };
        let cert = Proofs {
            jkt: None,
            x5t: Some("t"),
        };
        let none = Proofs::default();
        let x5t = || Binding::X5t("t".into());
        let jkt = || Binding::Jkt("k".into());
        let cases = [
            // (require_dpop, require_mtls, subject, actor, proofs) → issued
            (false, false, &b, &b, none, Ok(Binding::Bearer)),
            (false, false, &b, &b, cert, Ok(x5t())),
            (false, false, &b, &b, dpop, Ok(jkt())),
            (false, false, &b, &b, both, Ok(jkt())),
            (false, true, &b, &b, both, Ok(x5t())),
            (
                false,
                true,
                &b,
                &b,
                dpop,
                Err(BindingError::CertificateRequired),
            ),
            (false, false, &t, &b, both, Ok(x5t())),
            (
                false,
                false,
                &b,
                &t,
                none,
                Err(BindingError::CertificateRequired),
            ),
            (true, false, &b, &b, cert, Err(BindingError::DpopRequired)),
            (false, false, &k, &b, both, Ok(jkt())),
            (true, true, &b, &b, both, Err(BindingError::Conflicting)),
            (false, false, &k, &t, both, Err(BindingError::Conflicting)),
        ];
        for (rd, rm, s, a, p, want) in cases {
            assert_eq!(issued(rd, rm, s, a, p), want, "{rd} {rm} {s:?} {a:?} {p:?}");
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
