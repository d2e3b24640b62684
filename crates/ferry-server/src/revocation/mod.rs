//! Revocation state of the tokens Ferry issued, and the handles of reference tokens.
//!
//! - A revoked `jti` is kept until the token's `exp` (after that the token is dead
//!   anyway).
//! - A rule revokes every token issued to a subject, through a provider or to a client
//!   up to a moment (`iat <= before`); it is kept until every token it can match has
//!   expired (`before + tokens.max_ttl`).
//! - A reference token's handle is stored as its SHA-256, mapped to the JWT it stands
//!   for, until that JWT's `exp`.
//!
//! Single node: revocations live in `data_dir/revocations.json` (written atomically,
//! 0600) and survive a restart; handles stay in memory only (a restart loses them and
//! their holders ask again: no issued JWT is written to disk). Scale-out: everything
//! lives in Redis (`replay.redis`), so a revocation at one replica holds at every other
//! at once: revoked `jti`s in the sorted set `ferry:revoked:jtis` (score `exp`), rules in
//! `ferry:revoked:rules` (score: until), handles at `ferry:ref:<sha256>` expiring at the
//! token's `exp`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::redis::{Redis, Reply};

mod handles;
pub use handles::HandleError;

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
}

impl Facts {
    /// The facts of a Ferry token's claims.
    pub fn of(claims: &serde_json::Map<String, serde_json::Value>) -> Self {
        let s = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
        Self {
            jti: s(claims.get("jti")),
            subject: s(claims.get("sub")),
            provider: s(claims.get("ferry").and_then(|f| f.get("provider"))),
            client: s(claims.get("client_id")),
            iat: claims
                .get("iat")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0),
        }
    }
}

impl Rule {
    /// Whether the rule revokes a token with these facts at `now`.
    pub fn matches(&self, f: &Facts, now: i64) -> bool {
        let field = match self.kind {
            RuleKind::Subject => &f.subject,
            RuleKind::Provider => &f.provider,
            RuleKind::Client => &f.client,
        };
        now <= self.until && f.iat <= self.before && field.as_deref() == Some(&self.value)
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
    fn prune(&mut self, now: i64) {
        self.jtis.retain(|_, exp| *exp >= now);
        self.rules.retain(|r| r.until >= now);
    }

    /// Whether a token with these facts is revoked at `now`.
    pub fn revokes(&self, f: &Facts, now: i64) -> bool {
        f.jti
            .as_ref()
            .and_then(|j| self.jtis.get(j))
            .is_some_and(|exp| *exp >= now)
            || self.rules.iter().any(|r| r.matches(f, now))
    }
}

#[derive(Debug)]
enum Store {
    Local {
        path: PathBuf,
        state: Mutex<Listing>,
        handles: Mutex<BTreeMap<String, (String, i64)>>,
    },
    Redis(Redis),
    /// The local file could not be read: every call fails (closed), and `serve`
    /// refuses to start.
    Broken(String),
}

/// The revocation state.
#[derive(Debug)]
pub struct Revocations(Store);

const JTIS: &[u8] = b"ferry:revoked:jtis";
const RULES: &[u8] = b"ferry:revoked:rules";

impl Revocations {
    /// Revocations kept in `data_dir/revocations.json`, loaded now.
    pub fn local(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join("revocations.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not valid: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Listing::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Self(Store::Local {
            path,
            state: Mutex::new(state),
            handles: Mutex::new(BTreeMap::new()),
        }))
    }

    /// The state for a configuration: Redis when `replay.redis` is set, else the data
    /// directory. A local file that cannot be read leaves a state whose every call
    /// fails (see [`Revocations::broken`]).
    pub fn for_config(config: &ferry_core::config::Config) -> Self {
        match &config.replay_redis {
            Some(r) => Self::redis(r.clone()),
            None => Self::local(&config.data_dir).unwrap_or_else(|e| Self(Store::Broken(e))),
        }
    }

    /// Why the state cannot be used, if it cannot.
    pub fn broken(&self) -> Option<&str> {
        match &self.0 {
            Store::Broken(e) => Some(e),
            _ => None,
        }
    }

    /// Revocations shared through Redis.
    pub fn redis(config: ferry_core::config::RedisReplay) -> Self {
        Self(Store::Redis(Redis::new(config)))
    }

    fn save(path: &Path, state: &Listing) -> Result<(), String> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let tmp = dir.join(format!(".revocations.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&tmp).map_err(|e| e.to_string())?;
            f.write_all(&bytes).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
        }
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    }

    fn update_local(
        path: &Path,
        state: &Mutex<Listing>,
        now: i64,
        f: impl FnOnce(&mut Listing),
    ) -> Result<(), String> {
        let mut s = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = s.clone();
        f(&mut next);
        next.prune(now);
        Self::save(path, &next)?;
        *s = next;
        Ok(())
    }

    /// Revokes one token until its `exp`.
    pub async fn revoke_jti(&self, jti: &str, exp: i64, now: i64) -> Result<(), String> {
        match &self.0 {
            Store::Local { path, state, .. } => Self::update_local(path, state, now, |s| {
                s.jtis.insert(jti.to_owned(), exp);
            }),
            Store::Broken(e) => Err(e.clone()),
            Store::Redis(r) => {
                let (exp, now) = (exp.to_string(), now.to_string());
                r.pipeline(&[
                    &[b"ZADD", JTIS, exp.as_bytes(), jti.as_bytes()],
                    &[
                        b"ZREMRANGEBYSCORE",
                        JTIS,
                        b"-inf",
                        format!("({now}").as_bytes(),
                    ],
                ])
                .await
                .map(|_| ())
            }
        }
    }

    /// Adds a rule.
    pub async fn add_rule(&self, rule: &Rule, now: i64) -> Result<(), String> {
        match &self.0 {
            Store::Local { path, state, .. } => Self::update_local(path, state, now, |s| {
                s.rules.push(rule.clone());
            }),
            Store::Broken(e) => Err(e.clone()),
            Store::Redis(r) => {
                let json = serde_json::to_string(rule).map_err(|e| e.to_string())?;
                let until = rule.until.to_string();
                r.pipeline(&[
                    &[b"ZADD", RULES, until.as_bytes(), json.as_bytes()],
                    &[
                        b"ZREMRANGEBYSCORE",
                        RULES,
                        b"-inf",
                        format!("({now}").as_bytes(),
                    ],
                ])
                .await
                .map(|_| ())
            }
        }
    }

    /// Every live revocation.
    pub async fn listing(&self, now: i64) -> Result<Listing, String> {
        match &self.0 {
            Store::Local { state, .. } => {
                let mut s = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                s.prune(now);
                Ok(s)
            }
            Store::Broken(e) => Err(e.clone()),
            Store::Redis(r) => {
                let now_s = now.to_string();
                let replies = r
                    .pipeline(&[
                        &[
                            b"ZRANGEBYSCORE",
                            JTIS,
                            now_s.as_bytes(),
                            b"+inf",
                            b"WITHSCORES",
                        ],
                        &[b"ZRANGEBYSCORE", RULES, now_s.as_bytes(), b"+inf"],
                    ])
                    .await?;
                let mut it = replies.into_iter();
                let mut listing = Listing::default();
                let jtis = it.next().map(Reply::items).unwrap_or_default();
                for pair in jtis.chunks(2) {
                    if let [j, score] = pair
                        && let (Some(j), Some(s)) = (j.text(), score.text())
                    {
                        listing
                            .jtis
                            .insert(j, s.parse::<f64>().unwrap_or(0.0) as i64);
                    }
                }
                for r in it.next().map(Reply::items).unwrap_or_default() {
                    if let Some(rule) = r.text().and_then(|t| serde_json::from_str(&t).ok()) {
                        listing.rules.push(rule);
                    }
                }
                Ok(listing)
            }
        }
    }

    /// Whether a token with these facts is revoked.
    pub async fn is_revoked(&self, facts: &Facts, now: i64) -> Result<bool, String> {
        match &self.0 {
            Store::Local { state, .. } => Ok(state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .revokes(facts, now)),
            Store::Broken(e) => Err(e.clone()),
            Store::Redis(r) => {
                let jti = facts.jti.clone().unwrap_or_default();
                let now_s = now.to_string();
                let replies = r
                    .pipeline(&[
                        &[b"ZSCORE", JTIS, jti.as_bytes()],
                        &[b"ZRANGEBYSCORE", RULES, now_s.as_bytes(), b"+inf"],
                    ])
                    .await?;
                let mut it = replies.into_iter();
                let jti_hit = it
                    .next()
                    .and_then(|r| r.text())
                    .and_then(|s| s.parse::<f64>().ok())
                    .is_some_and(|exp| exp as i64 >= now);
                Ok(jti_hit
                    || it
                        .next()
                        .map(Reply::items)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|r| r.text())
                        .filter_map(|t| serde_json::from_str::<Rule>(&t).ok())
                        .any(|rule| rule.matches(facts, now)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(sub: &str, iat: i64) -> Facts {
        Facts {
            jti: Some(format!("j-{sub}-{iat}")),
            subject: Some(sub.into()),
            provider: Some("github".into()),
            client: Some("ci".into()),
            iat,
        }
    }

    #[tokio::test]
    async fn jtis_and_rules_hold_until_they_expire_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let r = Revocations::local(dir.path()).unwrap();
        let a = facts("repo:acme/lib", 100);
        assert!(!r.is_revoked(&a, 150).await.unwrap());
        r.revoke_jti("j-repo:acme/lib-100", 400, 150).await.unwrap();
        assert!(r.is_revoked(&a, 150).await.unwrap());
        // Twin: another token of the same subject is untouched by a jti revocation.
        assert!(
            !r.is_revoked(&facts("repo:acme/lib", 101), 150)
                .await
                .unwrap()
        );
        // A rule: everything issued to a subject up to 200.
        let rule = Rule {
            kind: RuleKind::Subject,
            value: "repo:acme/app".into(),
            before: 200,
            until: 200 + 3_600,
        };
        r.add_rule(&rule, 200).await.unwrap();
        assert!(
            r.is_revoked(&facts("repo:acme/app", 200), 250)
                .await
                .unwrap()
        );
        assert!(
            !r.is_revoked(&facts("repo:acme/app", 201), 250)
                .await
                .unwrap()
        );
        assert!(
            !r.is_revoked(&facts("repo:acme/other", 150), 250)
                .await
                .unwrap()
        );
        // A restart keeps them.
        let again = Revocations::local(dir.path()).unwrap();
        assert!(again.is_revoked(&a, 300).await.unwrap());
        assert!(
            again
                .is_revoked(&facts("repo:acme/app", 199), 300)
                .await
                .unwrap()
        );
        // Past their lifetimes they are dropped.
        assert!(!again.is_revoked(&a, 401).await.unwrap());
        assert!(
            again
                .is_revoked(&facts("repo:acme/app", 199), 3_800)
                .await
                .unwrap()
        );
        assert!(
            !again
                .is_revoked(&facts("repo:acme/app", 199), 3_801)
                .await
                .unwrap()
        );
        assert_eq!(again.listing(5_000).await.unwrap(), Listing::default());
    }
}
