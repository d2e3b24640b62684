//! The conformance suite every key store passes (the local directory, PostgreSQL):
//! an empty store; a ring written through the manager, with private keys only sealed;
//! a restart through another handle; a wrong key-encryption key that leaves the store
//! untouched; a stale compare-and-swap that changes nothing; every kind of key material
//! round-tripping; and two writers on separate handles, racing through accelerated
//! rotations, where every version is written exactly once and holds at most one
//! active key; public keys stored beside sealed private keys, so that a replica without
//! the key-encryption key of some keys still publishes every key (and does not sign
//! when the active key is one of them, until it is given that KEK); heartbeats.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_core::keyring::{KeyState, RingPolicy};

use crate::*;

const POLICY: RingPolicy = RingPolicy {
    rotation_period: 3_600,
    jwks_max_age: 300,
    leeway: 60,
    max_token_ttl: 900,
};

fn software(kek: &str, writer: &str) -> ManagerConfig {
    ManagerConfig {
        alg: SigningAlg::Es256,
        policy: POLICY,
        backend: Backend::Software {
            keks: Arc::new(Keks::new(vec![Kek::parse(kek).unwrap()])),
            plaintext: false,
        },
        writer: writer.into(),
    }
}

/// A store that records every compare-and-swap attempt and checks invariant 1 (at most
/// one active key) in every version written.
#[derive(Debug)]
pub struct Recording {
    pub inner: Arc<dyn KeyStore>,
    pub log: Arc<Mutex<Vec<(u64, bool, String)>>>,
}

impl KeyStore for Recording {
    fn load(&self) -> Result<StoredRing, KeyError> {
        self.inner.load()
    }
    fn compare_and_swap(&self, expected: u64, ring: &StoredRing) -> Result<bool, KeyError> {
        let active = ring
            .keys
            .iter()
            .filter(|k| k.meta.state == KeyState::Active)
            .count();
        assert!(active <= 1, "a write with {active} active keys");
        let ok = self.inner.compare_and_swap(expected, ring)?;
        self.log
            .lock()
            .unwrap()
            .push((expected, ok, ring.written_by.clone()));
        Ok(ok)
    }
}

/// Runs the suite. `open` returns a new handle onto one store that starts empty.
pub fn check_store(open: impl Fn() -> Arc<dyn KeyStore> + Send + Sync + Clone + 'static) {
    let store = open();
    let empty = store.load().unwrap();
    assert_eq!((empty.version, empty.keys.len()), (0, 0), "a new store");

    let kek = Kek::generate_text().unwrap();
    let m = KeyManager::open(store.clone(), software(&kek, "first"), 1_000).unwrap();
    let ring = store.load().unwrap();
    assert!(ring.version >= 1);
    assert_eq!(ring.written_by, "first");
    assert_eq!(ring.keys.len(), 3, "one active key and two standbys");
    assert!(
        ring.keys
            .iter()
            .all(|k| matches!(k.material, Material::Encrypted { .. })),
        "private keys are stored sealed"
    );
    assert!(!serde_json::to_string(&ring).unwrap().contains("pkcs8"));

    // Another handle (a restart, another replica) sees the same ring.
    let other = open();
    let again = KeyManager::open(other.clone(), software(&kek, "second"), 2_000).unwrap();
    assert_eq!(again.active().kid(), m.active().kid());
    assert_eq!(other.load().unwrap(), ring, "opening wrote nothing");

    // A wrong key-encryption key is a clear error and leaves the store untouched.
    let wrong = Kek::generate_text().unwrap();
    let err = KeyManager::open(open(), software(&wrong, "wrong"), 2_000).unwrap_err();
    assert!(matches!(err, KeyError::WrongKek(_)), "{err}");
    assert_eq!(store.load().unwrap(), ring);

    // A stale compare-and-swap changes nothing; the current one writes version + 1.
    let mut next = ring.clone();
    next.written_by = "stale".into();
    assert!(!store.compare_and_swap(ring.version - 1, &next).unwrap());
    assert_eq!(store.load().unwrap(), ring);

    // Every kind of material round-trips.
    let mut kinds = ring.clone();
    kinds.written_by = "kinds".into();
    kinds.keys[1].material = Material::Plaintext {
        pkcs8: "cGxhaW4".into(),
    };
    kinds.keys[2].material = Material::Pkcs11 {
        label: "ferry-label".into(),
    };
    kinds.revoked = vec![RevokedKey {
        kid: "revoked-kid".into(),
        at: 1_500,
    }];
    assert!(other.compare_and_swap(ring.version, &kinds).unwrap());
    let read = store.load().unwrap();
    assert_eq!(read.version, ring.version + 1);
    assert_eq!(read.keys, kinds.keys);
    assert_eq!(read.revoked, kinds.revoked);
    assert_eq!(read.written_by, "kinds");
    // Restore sealed keys for the race below.
    assert!(store.compare_and_swap(read.version, &ring).unwrap());

    race(open.clone(), &kek);
    longest_lifetime(&open(), &kek);
    public_keys_beside_sealed(&open, &kek);
}

fn latest(ring: &StoredRing) -> i64 {
    ring.keys
        .iter()
        .flat_map(|k| {
            [
                Some(k.meta.published_at),
                k.meta.activated_at,
                k.meta.retired_at,
            ]
        })
        .flatten()
        .max()
        .unwrap_or(0)
}

fn sealed_under(k: &StoredKey) -> Option<&str> {
    match &k.material {
        Material::Encrypted { blob } => Keks::blob_kek_id(blob),
        _ => None,
    }
}

/// A KEK rollout in the wrong order: a replica holding [new, old] rotates until the
/// active key is sealed under `new`; a replica holding only [old] publishes exactly the
/// same JWKS (every key of the ring, from the stored public keys), refuses to sign, says
/// why, and signs again once given `new`. Heartbeats record each replica's KEKs.
#[allow(clippy::too_many_lines, reason = "one rollout, step by step")]
fn public_keys_beside_sealed(open: &impl Fn() -> Arc<dyn KeyStore>, old: &str) {
    let new = Kek::generate_text().unwrap();
    let new_id = Kek::parse(&new).unwrap().id();
    let mut now = latest(&open().load().unwrap()) + 1;
    let mut both_cfg = software(old, "both");
    both_cfg.backend = Backend::Software {
        keks: Arc::new(Keks::new(vec![
            Kek::parse(&new).unwrap(),
            Kek::parse(old).unwrap(),
        ])),
        plaintext: false,
    };
    let both = KeyManager::open(open(), both_cfg, now).unwrap();
    let active_under = |m: &KeyManager| {
        let ring = open().load().unwrap();
        let kid = m.snapshot().active.kid().to_owned();
        ring.keys
            .iter()
            .find(|k| k.meta.kid == kid)
            .and_then(sealed_under)
            .map(str::to_owned)
    };
    for _ in 0..8 {
        if active_under(&both).as_deref() == Some(new_id.as_str()) {
            break;
        }
        now += POLICY.publish_ahead() + 1;
        both.rotate(now).unwrap();
    }
    assert_eq!(
        active_under(&both),
        Some(new_id.clone()),
        "rotated onto a key sealed under the new KEK"
    );

    let only_old = KeyManager::open(open(), software(old, "old"), now).unwrap();
    let (snap, signing) = (only_old.snapshot(), both.snapshot());
    assert_eq!(snap.version, signing.version);
    assert_eq!(
        snap.jwks, signing.jwks,
        "one key set, whatever each replica can unseal"
    );
    let ring = open().load().unwrap();
    for k in &ring.keys {
        assert!(snap.jwks.contains(&k.meta.kid), "{} published", k.meta.kid);
    }
    assert!(
        ring.keys
            .iter()
            .any(|k| sealed_under(k) != Some(new_id.as_str()))
    );
    // It does not sign, and says why: the key and the KEK by fingerprint only.
    let why = snap.cannot_sign.clone().expect("cannot sign");
    assert!(
        why.contains(signing.active.kid()) && why.contains(&new_id),
        "{why}"
    );
    assert!(!why.contains(&new) && !why.contains(old));
    assert!(matches!(
        sign_jwt(snap.active.as_ref(), "JWT", &serde_json::Map::new()),
        Err(KeyError::CannotSign(_))
    ));
    let report = only_old
        .kek_report(std::time::Duration::from_secs(60))
        .unwrap();
    assert!(report.cannot_sign(), "{report:?}");
    // Twin: the replica that holds both signs.
    assert!(signing.can_sign());
    assert!(sign_jwt(signing.active.as_ref(), "JWT", &serde_json::Map::new()).is_ok());
    assert!(
        !both
            .kek_report(std::time::Duration::from_secs(60))
            .unwrap()
            .cannot_sign()
    );

    // Heartbeats: a shared store lists both replicas with their KEKs (never the keys);
    // a single node's directory keeps none.
    both.heartbeat().unwrap();
    only_old.heartbeat().unwrap();
    match open()
        .live_replicas(std::time::Duration::from_secs(60))
        .unwrap()
    {
        Some(live) => {
            let find = |n: &str| live.iter().find(|r| r.name == n).unwrap().keks.clone();
            assert_eq!(
                find("both"),
                vec![new_id.clone(), Kek::parse(old).unwrap().id()]
            );
            assert_eq!(find("old"), vec![Kek::parse(old).unwrap().id()]);
            // A heartbeat older than the window is ignored.
            let fresh = open()
                .live_replicas(std::time::Duration::ZERO)
                .unwrap()
                .unwrap();
            assert!(fresh.iter().all(|r| r.name != "old"), "{fresh:?}");
            let report = only_old
                .kek_report(std::time::Duration::from_secs(60))
                .unwrap();
            assert!(
                report.lacking_primary.unwrap().is_empty(),
                "everyone holds old"
            );
            let report = both.kek_report(std::time::Duration::from_secs(60)).unwrap();
            let lacking = report.lacking_primary.clone().unwrap();
            assert_eq!(lacking.len(), 1);
            assert_eq!(lacking[0].name, "old");
            assert!(
                report
                    .warnings()
                    .iter()
                    .any(|w| w.contains("1 live replica(s) (old)"))
            );
        }
        None => assert!(
            only_old
                .kek_report(std::time::Duration::from_secs(60))
                .unwrap()
                .lacking_primary
                .is_none()
        ),
    }

    // Given the new KEK (a reload), it signs again, with the same key set.
    only_old.replace_keks(Keks::new(vec![
        Kek::parse(&new).unwrap(),
        Kek::parse(old).unwrap(),
    ]));
    only_old.tick(now).unwrap();
    let snap = only_old.snapshot();
    assert!(snap.can_sign(), "{:?}", snap.cannot_sign);
    assert_eq!(snap.active.kid(), signing.active.kid());
    assert!(sign_jwt(snap.active.as_ref(), "JWT", &serde_json::Map::new()).is_ok());
}

/// The longest token lifetime round-trips, is never lowered by a write, and the
/// manager records it.
fn longest_lifetime(store: &Arc<dyn KeyStore>, kek: &str) {
    let mut ring = store.load().unwrap();
    ring.max_issued_ttl = 7_200;
    assert!(store.compare_and_swap(ring.version, &ring).unwrap());
    let read = store.load().unwrap();
    assert_eq!(read.max_issued_ttl, 7_200);
    let mut lower = read.clone();
    lower.max_issued_ttl = 0;
    assert!(store.compare_and_swap(read.version, &lower).unwrap());
    assert_eq!(store.load().unwrap().max_issued_ttl, 7_200, "never lowered");
    let clock = store
        .load()
        .unwrap()
        .keys
        .iter()
        .map(|k| k.meta.published_at)
        .max();
    let mgr = KeyManager::open(store.clone(), software(kek, "ttl"), clock.unwrap_or(0)).unwrap();
    mgr.record_issued_ttl(9_000).unwrap();
    mgr.record_issued_ttl(600).unwrap();
    assert_eq!(store.load().unwrap().max_issued_ttl, 9_000);
    assert_eq!(mgr.snapshot().max_issued_ttl, 9_000);
}

/// Two managers on separate handles race through accelerated rotations.
fn race(open: impl Fn() -> Arc<dyn KeyStore> + Send + Sync + Clone + 'static, kek: &str) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = open().load().unwrap().version;
    let clock = Arc::new(AtomicI64::new(10_000));
    let fast = RingPolicy {
        rotation_period: 30,
        jwks_max_age: 10,
        leeway: 2,
        max_token_ttl: 20,
    };
    let handles: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let store: Arc<dyn KeyStore> = Arc::new(Recording {
                inner: open(),
                log: log.clone(),
            });
            let (kek, clock) = (kek.to_owned(), clock.clone());
            std::thread::spawn(move || {
                let mut c = software(&kek, name);
                c.policy = fast;
                let m = KeyManager::open(store, c, clock.load(Ordering::SeqCst)).unwrap();
                for _ in 0..300 {
                    let now = clock.fetch_add(1, Ordering::SeqCst);
                    m.tick(now).unwrap();
                    ferry_core::keyring::check(&m.snapshot().keys).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let log = log.lock().unwrap();
    let mut won: Vec<u64> = log
        .iter()
        .filter(|(_, ok, _)| *ok)
        .map(|(v, _, _)| *v)
        .collect();
    won.sort_unstable();
    // Every version after `start` was written exactly once, by one writer or the other.
    let expected: Vec<u64> = (start..start + won.len() as u64).collect();
    assert_eq!(won, expected, "versions written");
    assert!(won.len() > 20, "the ring rotated: {} versions", won.len());
    assert_eq!(
        open().load().unwrap().version,
        start + won.len() as u64,
        "the store holds the last version written"
    );
}
