//! The values of an audience rule's variables that are built, not read in place:
//! `actor`, `subject_act` and `request` (with the request's [`Situation`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use cel::Value;
use cel::objects::{Key, Map as CelMap};

use crate::expr::{string_list, string_map};
use crate::mapping::Principal;

/// What a rule may know about the request besides who asks for what (`request.*`):
/// the client's address (behind trusted proxies, the one they name), the time, whether
/// the issued token will be bound to a key, and whether the client authenticated.
/// Provider conditions never see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Situation {
    /// `request.source_ip` (the empty string when unknown).
    pub source_ip: Option<std::net::IpAddr>,
    /// `request.time`, seconds since the epoch.
    pub time: i64,
    /// `request.sender_constrained`: the issued token will be DPoP- or certificate-bound.
    pub sender_constrained: bool,
    /// `request.client_authenticated`: a registered client proved who it is.
    pub client_authenticated: bool,
}

fn key(s: &str) -> Key {
    Key::String(Arc::new(s.to_owned()))
}

fn text(v: &str) -> Value {
    Value::String(Arc::new(v.to_owned()))
}

fn map_value(entries: Vec<(&'static str, Value)>) -> Value {
    Value::Map(CelMap {
        map: Arc::new(entries.into_iter().map(|(k, v)| (key(k), v)).collect()),
    })
}

/// `actor`: the delegate acting for the subject (RFC 8693 §4.1); without one its members
/// are empty (a rule on `actor.subject == ''` decides, never errs).
pub(crate) fn actor_value(actor: Option<&Principal>) -> Value {
    map_value(vec![
        ("subject", text(actor.map_or("", |a| a.subject.as_str()))),
        ("provider", text(actor.map_or("", |a| a.provider.as_str()))),
        (
            "attribute",
            actor.map_or_else(
                || string_map(&BTreeMap::new()),
                |a| string_map(&a.attributes),
            ),
        ),
    ])
}

/// `subject_act`: the act the subject token already carried; empty without one.
pub(crate) fn subject_act_value(principal: &Principal) -> Value {
    let act = principal.subject_act.as_ref();
    map_value(vec![
        ("subject", text(act.map_or("", |a| a.sub.as_str()))),
        (
            "issuer",
            text(act.and_then(|a| a.iss.as_deref()).unwrap_or_default()),
        ),
        (
            "provider",
            text(act.and_then(|a| a.provider.as_deref()).unwrap_or_default()),
        ),
    ])
}

/// The members of `request` every expression may read: the audience being decided and
/// the situation (`source_ip`, `time`, `sender_constrained`, `client_authenticated`).
fn context_entries(audience: &str, situation: &Situation) -> Vec<(&'static str, Value)> {
    let source = situation
        .source_ip
        .map(|i| i.to_string())
        .unwrap_or_default();
    vec![
        ("audience", text(audience)),
        ("source_ip", text(&source)),
        ("time", timestamp(situation.time)),
        (
            "sender_constrained",
            Value::Bool(situation.sender_constrained),
        ),
        (
            "client_authenticated",
            Value::Bool(situation.client_authenticated),
        ),
    ]
}

/// `request` as an audience's own claims see it: the audience and the situation, not the
/// audiences or scopes asked for (a claim is carried unchanged into tokens narrowed to
/// fewer of them).
pub(crate) fn claims_request_value(audience: &str, situation: &Situation) -> Value {
    map_value(context_entries(audience, situation))
}

/// `request` as rules see it: [`context_entries`], all targets and the requested scopes.
pub(crate) fn request_value(
    audience: &str,
    targets: &[String],
    requested: &[String],
    situation: &Situation,
) -> Value {
    let mut entries = context_entries(audience, situation);
    entries.push(("audiences", string_list(targets)));
    entries.push(("scopes", string_list(requested)));
    map_value(entries)
}

/// `request.time` as a CEL timestamp (UTC).
pub(crate) fn timestamp(secs: i64) -> Value {
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    Value::Timestamp(t.fixed_offset())
}
