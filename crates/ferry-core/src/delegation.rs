//! Delegation (RFC 8693 §1.1, §4.1, §4.4), pure: reading the `act` and `may_act` a
//! subject token carries, checking an actor against `may_act`, and nesting the new
//! actor over the chain.
//!
//! An upstream `act` is the upstream issuer's say-so, not something Ferry verified: every
//! level is kept under the name of the issuer that asserted it (its own `iss`, else the
//! subject token's issuer), and a `provider` member — which only Ferry sets, for actors
//! it verified — is dropped. Policy sees it as `subject_act`.

use ferry_token::{Act, MayAct};
use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::mapping::Principal;

fn malformed(what: &'static str) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidRequest,
        Step::Verify,
        desc::INVALID_SUBJECT_TOKEN,
    )
    .detail(format!("the {what} claim is malformed"))
}

/// Keeps an upstream `act` chain under its asserting issuer's name.
fn attribute(mut act: Act, asserted_by: &str) -> Act {
    act.provider = None;
    if act.iss.is_none() {
        act.iss = Some(asserted_by.to_owned());
    }
    act.act = act
        .act
        .map(|inner| Box::new(attribute(*inner, asserted_by)));
    act
}

/// The `act` of a provider's token issued by `issuer`: absent, or an object naming its
/// actor (refused otherwise), kept under the issuer's name.
pub fn upstream_act(claims: &Map<String, Value>, issuer: &str) -> Result<Option<Act>, OAuthError> {
    match claims.get("act") {
        None => Ok(None),
        Some(v) => Act::deserialize(v)
            .map(|a| Some(attribute(a, issuer)))
            .map_err(|_| malformed("act")),
    }
}

/// The `may_act` of a provider's token: absent, or an object (refused otherwise).
pub fn upstream_may_act(claims: &Map<String, Value>) -> Result<Option<MayAct>, OAuthError> {
    match claims.get("may_act") {
        None => Ok(None),
        Some(v @ Value::Object(_)) => MayAct::deserialize(v)
            .map(Some)
            .map_err(|_| malformed("may_act")),
        Some(_) => Err(malformed("may_act")),
    }
}

/// Checks an actor token's raw `sub` and `iss` against the subject's `may_act`.
pub fn check_may_act(
    may_act: Option<&MayAct>,
    actor_sub: Option<&str>,
    actor_iss: &str,
) -> Result<(), OAuthError> {
    match may_act {
        Some(may) if !may.allows(actor_sub, actor_iss) => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Policy,
            desc::ACTOR_NOT_ALLOWED,
        )
        .rule("may_act")
        .detail("the actor is not the one the subject token's may_act names")),
        _ => Ok(()),
    }
}

/// The `act` of the issued token: the verified actor over the subject's chain, or the
/// subject's chain unchanged without an actor (impersonation).
pub fn nest(actor: Option<&Principal>, prior: Option<Act>) -> Option<Act> {
    match actor {
        None => prior,
        Some(a) => Some(Act {
            sub: a.subject.clone(),
            provider: Some(a.provider.clone()),
            act: prior.map(Box::new),
            ..Act::default()
        }),
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

    const UP: &str = "https://up.example.com";

    #[test]
    fn an_upstream_act_is_kept_under_its_issuers_name() {
        let cases = [
            (json!({}), Ok(None)),
            (
                json!({"act": {"sub": "a"}}),
                Ok(Some(json!({"sub": "a", "iss": UP}))),
            ),
            (
                json!({"act": {"sub": "a", "provider": "idp", "iss": "https://x"}}),
                Ok(Some(json!({"sub": "a", "iss": "https://x"}))),
            ),
            (
                json!({"act": {"sub": "a", "act": {"sub": "b", "provider": "p"}}}),
                Ok(Some(
                    json!({"sub": "a", "iss": UP, "act": {"sub": "b", "iss": UP}}),
                )),
            ),
            (json!({"act": "a"}), Err(())),
            (json!({"act": ["a"]}), Err(())),
            (json!({"act": {"iss": UP}}), Err(())),
        ];
        for (c, want) in cases {
            let got = upstream_act(&claims(c.clone()), UP)
                .map(|a| a.map(|a| serde_json::to_value(a).unwrap()))
                .map_err(|_| ());
            assert_eq!(got, want, "{c}");
        }
    }

    #[test]
    fn may_act_names_the_actor() {
        let may = |v: Value| upstream_may_act(&claims(json!({ "may_act": v }))).unwrap();
        let bot = may(json!({"sub": "bot"}));
        let bot_at = may(json!({"sub": "bot", "iss": UP}));
        let nobody = may(json!({"iss": UP}));
        let cases = [
            (None, Some("anyone"), UP, true),
            (bot.as_ref(), Some("bot"), UP, true),
            (bot.as_ref(), Some("bot"), "https://other", true),
            (bot.as_ref(), Some("mallory"), UP, false),
            (bot.as_ref(), None, UP, false),
            (bot_at.as_ref(), Some("bot"), UP, true),
            (bot_at.as_ref(), Some("bot"), "https://other", false),
            (nobody.as_ref(), Some("bot"), UP, false),
        ];
        for (m, sub, iss, want) in cases {
            assert_eq!(
                check_may_act(m, sub, iss).is_ok(),
                want,
                "{m:?} {sub:?} {iss}"
            );
        }
        assert!(upstream_may_act(&claims(json!({"may_act": "bot"}))).is_err());
        assert!(upstream_may_act(&claims(json!({"may_act": {"sub": 1}}))).is_err());
    }

    #[test]
    fn the_new_actor_nests_over_the_chain() {
        let actor = Principal {
            provider: "idp".into(),
            subject: "w".into(),
            ..Principal::default()
        };
        let prior = Act {
            sub: "a".into(),
            iss: Some(UP.into()),
            ..Act::default()
        };
        assert_eq!(nest(None, Some(prior.clone())), Some(prior.clone()));
        assert_eq!(nest(None, None), None);
        let got = nest(Some(&actor), Some(prior)).unwrap();
        assert_eq!(
            serde_json::to_value(got).unwrap(),
            json!({"sub": "w", "provider": "idp", "act": {"sub": "a", "iss": UP}})
        );
    }
}
