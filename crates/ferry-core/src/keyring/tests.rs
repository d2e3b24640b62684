//! The ring over simulated time: 30 days, random rotation periods, token lifetimes and
//! relying-party fetch times, with a fake clock. A deterministic PRNG keeps every run
//! repeatable; several seeds cover different timings.

use std::collections::HashMap;

use super::*;

/// xorshift64*: small, deterministic, good enough to pick timings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
}

/// Publication history: kid → (published from, removed at).
#[derive(Default)]
struct History(HashMap<String, (i64, Option<i64>)>);

impl History {
    fn published_at(&self, kid: &str, t: i64) -> bool {
        self.0
            .get(kid)
            .is_some_and(|(from, to)| *from <= t && to.is_none_or(|to| t < to))
    }
}

fn tick(keys: &mut Vec<KeyMeta>, p: &RingPolicy, now: i64, next_kid: &mut u32, hist: &mut History) {
    for _ in 0..10 {
        let Some(step) = next_step(keys, p, now) else {
            return;
        };
        let new_key = (step == Transition::Generate).then(|| {
            *next_kid += 1;
            KeyMeta {
                kid: format!("k{next_kid}"),
                alg: "ES256".into(),
                state: KeyState::Pending,
                published_at: now,
                activated_at: None,
                retired_at: None,
            }
        });
        if let Some(k) = &new_key {
            hist.0.insert(k.kid.clone(), (now, None));
        }
        if let Transition::Remove(kid) = &step
            && let Some(entry) = hist.0.get_mut(kid)
        {
            entry.1 = Some(now);
        }
        apply(keys, &step, now, new_key);
    }
    panic!("the ring did not converge at {now}");
}

#[test]
fn thirty_days_of_rotation_never_break_a_relying_party() {
    for seed in 1..=30u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1234_5678_9ABC));
        let p = RingPolicy {
            // From a minute (rotations then wait for the standby's publication) to days.
            rotation_period: match seed % 3 {
                0 => rng.range(60, 900),
                1 => rng.range(900, 4 * 3_600),
                _ => rng.range(4 * 3_600, 2 * 86_400),
            },
            jwks_max_age: rng.range(60, 3_600),
            leeway: rng.range(0, 300),
            max_token_ttl: rng.range(300, 86_400),
        };
        let start = 1_700_000_000;
        let end = start + 30 * 86_400;
        let mut keys = Vec::new();
        let mut hist = History::default();
        let mut next_kid = 0;
        let mut now = start;
        // (kid, issued at, expires at)
        let mut tokens = Vec::new();
        let mut first_kid = None;
        while now < end {
            tick(&mut keys, &p, now, &mut next_kid, &mut hist);
            check(&keys).unwrap_or_else(|e| panic!("seed {seed} at {now}: {e}"));
            let active = keys.iter().find(|k| k.state == KeyState::Active).unwrap();
            first_kid.get_or_insert_with(|| active.kid.clone());
            // Invariant 2: the signing key was published long enough ago (the ring's
            // first key aside).
            if Some(&active.kid) != first_kid.as_ref() {
                assert!(
                    now - active.published_at >= p.publish_ahead(),
                    "seed {seed}: {} signs {}s after publication",
                    active.kid,
                    now - active.published_at
                );
            }
            // Invariant 4: a standby is published, and (with a rotation period of at least
            // twice the publication margin, as configuration requires) one that may sign
            // at once, after the brand-new ring's first margin.
            assert!(
                keys.iter().any(|k| k.state == KeyState::Pending),
                "seed {seed}: no standby"
            );
            if p.rotation_period >= 2 * p.publish_ahead() && now >= start + p.publish_ahead() {
                assert!(
                    keys.iter().any(|k| k.state == KeyState::Pending
                        && now - k.published_at >= p.publish_ahead()),
                    "seed {seed} at {now}: no standby eligible for an emergency"
                );
            }
            // A third of the tokens live as long as allowed: the boundary that matters.
            let ttl = if rng.range(0, 2) == 0 {
                p.max_token_ttl
            } else {
                rng.range(60, p.max_token_ttl)
            };
            tokens.push((active.kid.clone(), now, now + ttl));
            now += if rng.range(0, 1) == 0 {
                rng.range(1, 30)
            } else {
                rng.range(30, 900)
            };
        }
        // Every token verifies against the JWKS a relying party cached at any moment it
        // could be using that cache during the token's life: fetched at f, used until
        // f + jwks_max_age, for some use time in [issued, expires + leeway] (relying
        // parties allow clock leeway on exp).
        for (kid, issued, expires) in &tokens {
            let last_use = *expires + p.leeway;
            for _ in 0..8 {
                let used = rng.range(*issued, last_use);
                let fetched = (used - rng.range(0, p.jwks_max_age)).max(start);
                assert!(
                    hist.published_at(kid, fetched),
                    "seed {seed}: token by {kid} issued {issued} used {used} against a JWKS fetched {fetched}"
                );
            }
            // The extreme cases too.
            assert!(
                hist.published_at(kid, (*issued - p.jwks_max_age).max(start)),
                "seed {seed}"
            );
            assert!(
                hist.published_at(kid, last_use),
                "seed {seed}: {kid} gone before {last_use}"
            );
        }
        assert!(next_kid > 3, "seed {seed}: the ring never rotated");
    }
}

fn policy() -> RingPolicy {
    RingPolicy {
        rotation_period: 86_400,
        jwks_max_age: 300,
        leeway: 60,
        max_token_ttl: 3_600,
    }
}

fn settled(now: i64) -> Vec<KeyMeta> {
    let mut keys = Vec::new();
    let (mut hist, mut n) = (History::default(), 0);
    tick(&mut keys, &policy(), now, &mut n, &mut hist);
    tick(&mut keys, &policy(), now + 400, &mut n, &mut hist);
    keys
}

#[test]
fn emergency_revocation_switches_to_the_standby() {
    let mut keys = settled(0);
    let active = keys
        .iter()
        .find(|k| k.state == KeyState::Active)
        .unwrap()
        .kid
        .clone();
    let standby = keys
        .iter()
        .find(|k| k.state == KeyState::Pending)
        .unwrap()
        .kid
        .clone();
    revoke(&mut keys, &active, &policy(), 500, false).unwrap();
    assert!(
        keys.iter().all(|k| k.kid != active),
        "revoked key left the ring"
    );
    assert_eq!(
        keys.iter()
            .find(|k| k.state == KeyState::Active)
            .unwrap()
            .kid,
        standby
    );
}

#[test]
fn emergency_revocation_without_an_eligible_standby_needs_force() {
    // At second 10 the standby was published 10 s ago: too recent.
    let mut keys = Vec::new();
    let (mut hist, mut n) = (History::default(), 0);
    tick(&mut keys, &policy(), 0, &mut n, &mut hist);
    let active = keys
        .iter()
        .find(|k| k.state == KeyState::Active)
        .unwrap()
        .kid
        .clone();
    assert_eq!(
        revoke(&mut keys, &active, &policy(), 10, false),
        Err(RevokeError::NoEligibleStandby)
    );
    assert!(keys.iter().any(|k| k.kid == active));
    revoke(&mut keys, &active, &policy(), 10, true).unwrap();
    assert!(keys.iter().all(|k| k.kid != active));
    // The ring converges back to exactly one active key.
    tick(&mut keys, &policy(), 11, &mut n, &mut hist);
    check(&keys).unwrap();
}

#[test]
fn the_signing_deadline_is_the_earliest_removal_of_the_active_key() {
    let p = RingPolicy {
        rotation_period: 1_000,
        jwks_max_age: 50,
        leeway: 10,
        max_token_ttl: 100,
    };
    let mut keys = Vec::new();
    assert_eq!(signing_deadline(&keys, &p), None);
    // Drive the ring on schedule: the active key is always well inside its deadline,
    // and once retired, it is removed no earlier than that deadline.
    let mut deadlines = std::collections::HashMap::new();
    for now in 0..10_000 {
        while let Some(step) = next_step(&keys, &p, now) {
            let new = matches!(step, Transition::Generate).then(|| KeyMeta {
                kid: format!("k{now}-{}", keys.len()),
                alg: "ES256".into(),
                state: KeyState::Pending,
                published_at: now,
                activated_at: None,
                retired_at: None,
            });
            if let Transition::Remove(kid) = &step {
                assert!(now >= deadlines[kid], "{kid} removed before its deadline");
            }
            apply(&mut keys, &step, now, new);
        }
        let d = signing_deadline(&keys, &p).unwrap();
        let active = keys.iter().find(|k| k.state == KeyState::Active).unwrap();
        deadlines.insert(active.kid.clone(), d);
        assert!(
            d - now >= p.max_token_ttl,
            "a full token lifetime is always left on schedule"
        );
    }
}
