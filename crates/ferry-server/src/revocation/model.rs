//! What revocation state is made of: revoked `jti`s, rules, and the facts of a token
//! they are matched against. Pure data and pure functions of `now`; every store keeps
//! these, and every replica evaluates them on its in-memory copy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a rule matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The token's `sub`.
    Subject,
    /// The provider that verified the subject token (`ferry.provider`).
    Provider,
    /// The token's `client_id`.
    Client,
}

/// "Every token issued to `value` up to `before`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// What `value` is compared with.
    pub kind: RuleKind,
    /// The subject, provider or client.
    pub value: String,
    /// Tokens issued at or before this moment are revoked.
    pub before: i64,
    /// Kept until then (every token it can match has expired).
    pub until: i64,
}

/// The facts of a token that revocation looks at.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `jti`.
    pub jti: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `ferry.provider`.
    pub provider: Option<String>,
    /// `client_id`.
    pub client: Option<String>,
    /// `iat`.
    pub iat: i64,
    /// `ferry.ancestors`: revoking any of them revokes the token.
    pub ancestors: Vec<String>,
    /// The subjects of every actor in `act`: a subject rule revokes what they acted on.
    pub actor_subjects: Vec<String>,
    /// The providers that verified those actors: so does a provider rule.
    pub actor_providers: Vec<String>,
}

impl Facts {
    /// The facts of a Ferry token's claims.
    pub fn of(claims: &ferry_token::AccessClaims) -> Self {
        Self {
            jti: Some(claims.jti.clone()),
            subject: Some(claims.sub.clone()),
            provider: Some(claims.ferry.provider.clone()),
            client: Some(claims.client_id.clone()),
            iat: claims.iat,
            ancestors: claims.ferry.ancestors.clone(),
            actor_subjects: claims.actors().map(|a| a.sub.clone()).collect(),
            actor_providers: claims.actors().filter_map(|a| a.provider.clone()).collect(),
        }
    }
}

impl Rule {
    /// Whether the rule revokes a token with these facts at `now`.
    pub fn matches(&self, f: &Facts, now: i64) -> bool {
        let (field, actors): (&Option<String>, &[String]) = match self.kind {
            RuleKind::Subject => (&f.subject, &f.actor_subjects),
            RuleKind::Provider => (&f.provider, &f.actor_providers),
            RuleKind::Client => (&f.client, &[]),
        };
        now <= self.until
            && f.iat <= self.before
            && (field.as_deref() == Some(&self.value) || actors.contains(&self.value))
    }
}

/// Revoked `jti`s with their `exp`, and the live rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// `jti` → `exp`.
    pub jtis: BTreeMap<String, i64>,
    /// Rules.
    pub rules: Vec<Rule>,
}

impl Listing {
    /// Drops what has expired at `now`.
    pub fn prune(&mut self, now: i64) {
        self.jtis.retain(|_, exp| *exp >= now);
        self.rules.retain(|r| r.until >= now);
    }

    /// Whether a token with these facts is revoked at `now`.
    pub fn revokes(&self, f: &Facts, now: i64) -> bool {
        f.jti
            .iter()
            .chain(&f.ancestors)
            .filter_map(|j| self.jtis.get(j))
            .any(|exp| *exp >= now)
            || self.rules.iter().any(|r| r.matches(f, now))
    }
}

impl Listing {
    /// Adds a revoked `jti` (the later `exp` wins) — idempotent.
    pub fn add_jti(&mut self, jti: &str, exp: i64) {
        let e = self.jtis.entry(jti.to_owned()).or_insert(exp);
        *e = (*e).max(exp);
    }

    /// Adds a rule unless it is already there — idempotent.
    pub fn add_rule(&mut self, rule: Rule) {
        if !self.rules.contains(&rule) {
            self.rules.push(rule);
        }
    }
}
