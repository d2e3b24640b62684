//! The lifecycle of Ferry's own signing keys, as pure functions of `now` (as SPIRE's
//! rotator does): a key is **pending** (published in `/jwks`, not signing), then
//! **active** (the one key that signs), then **retired** (published, not signing), then
//! removed. The invariants:
//!
//! 1. Exactly one active key once initialised.
//! 2. A key is published at least `jwks_max_age + leeway` before it signs, so every
//!    relying party's cached JWKS already holds it. (The very first key of a new ring
//!    signs at once: no relying party can hold an older JWKS of this issuer.)
//! 3. A key stays published at least `max_token_ttl + jwks_max_age + leeway` after it
//!    last signed, so every unexpired token stays verifiable.
//! 4. Two pending keys are kept: the next one and the one after it. With a rotation
//!    period of at least twice `jwks_max_age + leeway` (configuration enforces it), the
//!    ring therefore always holds a standby published long enough to sign at once, so an
//!    emergency revocation of the active key switches to a key relying parties already
//!    cached (the first `jwks_max_age + leeway` of a brand-new ring aside).
//!
//! [`next_step`] says what is due; applying steps until none is due converges.

use serde::{Deserialize, Serialize};

/// Where a key is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// The signing key.
    Active,
    /// Published, no longer signing.
    Retired,
}

/// A key's public lifecycle record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// JWS algorithm.
    pub alg: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// When it was first published.
    pub published_at: i64,
    /// When it became active.
    pub activated_at: Option<i64>,
    /// When it stopped signing.
    pub retired_at: Option<i64>,
}

/// Timing of the ring, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPolicy {
    /// How long a key signs before the next takes over.
    pub rotation_period: i64,
    /// `Cache-Control: max-age` of `/jwks`.
    pub jwks_max_age: i64,
    /// Clock and propagation slack.
    pub leeway: i64,
    /// The longest lifetime of an issued token.
    pub max_token_ttl: i64,
}

impl RingPolicy {
    /// How long a key is published before it may sign.
    pub fn publish_ahead(&self) -> i64 {
        self.jwks_max_age + self.leeway
    }

    /// How long a key stays published after it last signed.
    pub fn keep_after(&self) -> i64 {
        self.max_token_ttl + self.jwks_max_age + self.leeway
    }

    /// This policy, keeping keys for tokens of up to `issued` seconds as well: tokens
    /// issued before `tokens.max_ttl` was lowered stay verifiable until they expire.
    pub fn covering(&self, issued: i64) -> Self {
        Self {
            max_token_ttl: self.max_token_ttl.max(issued),
            ..*self
        }
    }
}

/// The latest `exp` a token signed now by the active key in `keys` may carry: the
/// earliest moment another writer of a shared ring could remove that key from `/jwks`
/// (it retires `rotation_period` after activation at the soonest, then stays published
/// for `keep_after`). A replica that rotates on time never comes near it; one cut off
/// from its store does, and must not issue tokens that outlive the key's publication.
/// `None` without an active key.
pub fn signing_deadline(keys: &[KeyMeta], p: &RingPolicy) -> Option<i64> {
    let active = keys.iter().find(|k| k.state == KeyState::Active)?;
    Some(
        active
            .activated_at?
            .saturating_add(p.rotation_period)
            .saturating_add(p.keep_after()),
    )
}

/// How many pending keys the ring keeps.
pub const STANDBYS: usize = 2;

/// A transition of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Create a new pending key.
    Generate,
    /// Make this pending key active; the active key, if any, retires.
    Activate(String),
    /// Remove this retired key.
    Remove(String),
}

/// The transition due at `now`, if any.
pub fn next_step(keys: &[KeyMeta], p: &RingPolicy, now: i64) -> Option<Transition> {
    let active = keys.iter().find(|k| k.state == KeyState::Active);
    let mut pending: Vec<&KeyMeta> = keys
        .iter()
        .filter(|k| k.state == KeyState::Pending)
        .collect();
    pending.sort_by_key(|k| k.published_at);
    let eligible = pending
        .iter()
        .find(|k| now - k.published_at >= p.publish_ahead());

    // 1. An empty ring gets its first key, which (2.) activates at once.
    if keys.is_empty() {
        return Some(Transition::Generate);
    }
    // 2. No active key: initialisation, or after a forced emergency revocation.
    if active.is_none() {
        let first = eligible.or(pending.first())?;
        return Some(Transition::Activate(first.kid.clone()));
    }
    // 3. Retired keys leave once every token they signed has expired everywhere.
    if let Some(old) = keys.iter().find(|k| {
        k.state == KeyState::Retired && k.retired_at.is_some_and(|r| now - r >= p.keep_after())
    }) {
        return Some(Transition::Remove(old.kid.clone()));
    }
    // 4. Always two standbys: the next key and the one after it.
    if pending.len() < STANDBYS {
        return Some(Transition::Generate);
    }
    // 5. Rotation, once the standby has been published long enough.
    let active = active?;
    let due = active
        .activated_at
        .is_none_or(|a| now - a >= p.rotation_period);
    match (due, eligible) {
        (true, Some(next)) => Some(Transition::Activate(next.kid.clone())),
        _ => None,
    }
}

/// Applies a transition. `new_key` is the record of the key created for
/// [`Transition::Generate`].
pub fn apply(keys: &mut Vec<KeyMeta>, t: &Transition, now: i64, new_key: Option<KeyMeta>) {
    match t {
        Transition::Generate => {
            if let Some(k) = new_key {
                keys.push(k);
            }
        }
        Transition::Activate(kid) => {
            for k in keys.iter_mut() {
                if k.state == KeyState::Active {
                    k.state = KeyState::Retired;
                    k.retired_at = Some(now);
                }
            }
            if let Some(k) = keys.iter_mut().find(|k| &k.kid == kid) {
                k.state = KeyState::Active;
                k.activated_at = Some(now);
            }
        }
        Transition::Remove(kid) => keys.retain(|k| &k.kid != kid),
    }
}

/// Why an emergency revocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// No key with that id.
    #[error("no key with that kid")]
    Unknown,
    /// The active key has no standby published long enough to take over.
    #[error(
        "no standby key has been published for jwks_max_age + leeway: switching now would break relying \
         services until they refetch /jwks (use --force to accept that)"
    )]
    NoEligibleStandby,
}

/// Emergency revocation: the key leaves the ring (and `/jwks`) at once. If it was the
/// active key, the standby becomes active; without a standby published long enough this
/// is refused unless `force`, in which case the next transitions create and activate a
/// brand-new key.
pub fn revoke(
    keys: &mut Vec<KeyMeta>,
    kid: &str,
    p: &RingPolicy,
    now: i64,
    force: bool,
) -> Result<(), RevokeError> {
    let was_active = match keys.iter().find(|k| k.kid == kid) {
        None => return Err(RevokeError::Unknown),
        Some(k) => k.state == KeyState::Active,
    };
    if was_active {
        let standby = keys
            .iter()
            .filter(|k| k.state == KeyState::Pending && now - k.published_at >= p.publish_ahead())
            .min_by_key(|k| k.published_at)
            .map(|k| k.kid.clone());
        match (standby, force) {
            (Some(s), _) => {
                keys.retain(|k| k.kid != kid);
                apply(keys, &Transition::Activate(s), now, None);
                return Ok(());
            }
            (None, false) => return Err(RevokeError::NoEligibleStandby),
            (None, true) => {}
        }
    }
    keys.retain(|k| k.kid != kid);
    Ok(())
}

/// A ring that breaks invariant 1 (exactly one active key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{active} active keys")]
pub struct InvariantError {
    /// How many keys are active.
    pub active: usize,
}

/// Checks invariant 1 for an initialised ring.
pub fn check(keys: &[KeyMeta]) -> Result<(), InvariantError> {
    let active = keys.iter().filter(|k| k.state == KeyState::Active).count();
    if active != 1 {
        return Err(InvariantError { active });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
