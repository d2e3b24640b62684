//! The manager over real stores: initialisation, restart, wrong and rotated
//! key-encryption keys, emergency revocation, two writers sharing a directory, and the
//! signer conformance suite on SoftHSM2.

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

fn keks(texts: &[&str]) -> Arc<Keks> {
    Arc::new(Keks::new(
        texts.iter().map(|t| Kek::parse(t).unwrap()).collect(),
    ))
}

fn cfg(backend: Backend) -> ManagerConfig {
    ManagerConfig {
        alg: SigningAlg::Es256,
        policy: POLICY,
        backend,
        writer: "test".into(),
    }
}

fn software(k: &[&str]) -> ManagerConfig {
    cfg(Backend::Software {
        keks: keks(k),
        plaintext: false,
    })
}

#[test]
fn a_new_ring_has_one_active_key_and_a_standby_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let kek = Kek::generate_text().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let m = KeyManager::open(store.clone(), software(&[&kek]), 1_000).unwrap();
    let snap = m.snapshot();
    assert_eq!(
        snap.keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .count(),
        1
    );
    assert_eq!(
        snap.keys
            .iter()
            .filter(|k| k.state == KeyState::Pending)
            .count(),
        2
    );
    let jwks: serde_json::Value = serde_json::from_str(&snap.jwks).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    // No private key material in clear on disk.
    let text = std::fs::read_to_string(store.ring_path()).unwrap();
    assert!(text.contains("\"kind\": \"encrypted\"") && !text.contains("pkcs8"));

    let again = KeyManager::open(store, software(&[&kek]), 2_000).unwrap();
    assert_eq!(again.active().kid(), m.active().kid());
}

#[test]
fn a_wrong_kek_is_a_clear_error_never_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let right = Kek::generate_text().unwrap();
    KeyManager::open(store.clone(), software(&[&right]), 1_000).unwrap();
    let before = std::fs::read(store.ring_path()).unwrap();
    let wrong = Kek::generate_text().unwrap();
    let err = KeyManager::open(store.clone(), software(&[&wrong]), 1_000).unwrap_err();
    assert!(matches!(err, KeyError::WrongKek(_)), "{err}");
    assert_eq!(
        std::fs::read(store.ring_path()).unwrap(),
        before,
        "the ring was not touched"
    );
    // Twin: the right KEK opens it.
    assert!(KeyManager::open(store, software(&[&right]), 1_000).is_ok());
}

#[test]
fn rewrap_moves_every_key_to_the_new_kek() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let (old, new) = (Kek::generate_text().unwrap(), Kek::generate_text().unwrap());
    let kid = KeyManager::open(store.clone(), software(&[&old]), 1_000)
        .unwrap()
        .active()
        .kid()
        .to_owned();
    let both = KeyManager::open(store.clone(), software(&[&new, &old]), 1_000).unwrap();
    assert_eq!(both.rewrap().unwrap(), 3);
    assert_eq!(both.rewrap().unwrap(), 0, "idempotent");
    let only_new = KeyManager::open(store.clone(), software(&[&new]), 1_000).unwrap();
    assert_eq!(only_new.active().kid(), kid);
    assert!(KeyManager::open(store, software(&[&old]), 1_000).is_err());
}

#[test]
fn plaintext_keys_only_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let plain = cfg(Backend::Software {
        keks: Arc::new(Keks::default()),
        plaintext: true,
    });
    KeyManager::open(store.clone(), plain.clone(), 1_000).unwrap();
    assert!(
        KeyManager::open(
            store.clone(),
            software(&[&Kek::generate_text().unwrap()]),
            1_000
        )
        .is_err()
    );
    assert!(KeyManager::open(store, plain, 1_000).is_ok());
}

#[test]
fn rotation_revocation_and_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let m = KeyManager::open(store, software(&[&Kek::generate_text().unwrap()]), 0).unwrap();
    let first = m.active().kid().to_owned();
    // An orderly rotation before the standby is published long enough is refused.
    assert!(m.rotate(100).is_err());
    let second = m.rotate(400).unwrap();
    assert_ne!(second, first);
    assert_eq!(m.active().kid(), second);
    let snap = m.snapshot();
    assert!(
        snap.jwks.contains(&first),
        "the retired key stays published"
    );
    // Scheduled rotation after the period.
    m.tick(400 + 3_600).unwrap();
    let third = m.active().kid().to_owned();
    assert_ne!(third, second);
    // Emergency: the active key leaves /jwks at once and the standby signs.
    let etag = m.snapshot().etag.clone();
    m.revoke(&third, 400 + 3_600 + 400, false).unwrap();
    let snap = m.snapshot();
    assert!(!snap.jwks.contains(&third));
    assert_ne!(snap.etag, etag);
    assert_ne!(m.active().kid(), third);
    // Retired keys leave after max_token_ttl + jwks_max_age + leeway.
    m.tick(400 + 3_600 + 400 + 1_300).unwrap();
    assert!(!m.snapshot().jwks.contains(&first));
}

/// A store that records every compare-and-swap attempt.
#[derive(Debug)]
struct Recording {
    inner: LocalStore,
    log: Arc<Mutex<Vec<(u64, bool, String)>>>,
}

impl KeyStore for Recording {
    fn load(&self) -> Result<StoredRing, KeyError> {
        self.inner.load()
    }
    fn compare_and_swap(&self, expected: u64, ring: &StoredRing) -> Result<bool, KeyError> {
        let ok = self.inner.compare_and_swap(expected, ring)?;
        if ok {
            // Invariant 1 in every version written.
            let written = self.inner.load()?;
            let active = written
                .keys
                .iter()
                .filter(|k| k.meta.state == KeyState::Active)
                .count();
            assert!(
                active <= 1,
                "version {} has {active} active keys",
                written.version
            );
        }
        self.log
            .lock()
            .unwrap()
            .push((expected, ok, ring.written_by.clone()));
        Ok(ok)
    }
}

#[test]
fn two_writers_sharing_a_directory_never_write_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let kek = Kek::generate_text().unwrap();
    let clock = Arc::new(AtomicI64::new(0));
    let fast = RingPolicy {
        rotation_period: 30,
        jwks_max_age: 10,
        leeway: 2,
        max_token_ttl: 20,
    };
    let handles: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let store = Arc::new(Recording {
                inner: LocalStore::open(dir.path()).unwrap(),
                log: log.clone(),
            });
            let (kek, clock) = (kek.clone(), clock.clone());
            std::thread::spawn(move || {
                let mut c = software(&[&kek]);
                c.policy = fast;
                c.writer = name.into();
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
    let won: Vec<u64> = log
        .iter()
        .filter(|(_, ok, _)| *ok)
        .map(|(v, _, _)| *v)
        .collect();
    // Every version was written exactly once, in order, by one writer or the other.
    let expected: Vec<u64> = (0..won.len() as u64).collect();
    let mut sorted = won.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "versions written: {won:?}");
    assert!(won.len() > 20, "the ring rotated: {} versions", won.len());
    let writers: std::collections::HashSet<&str> = log
        .iter()
        .filter(|(_, ok, _)| *ok)
        .map(|(_, _, w)| w.as_str())
        .collect();
    assert!(!writers.is_empty());
}

/// SoftHSM2, set up by scripts/softhsm-setup.sh (the test command runs it).
fn hsm() -> Arc<crate::pkcs11::Hsm> {
    let module = std::env::var("FERRY_TEST_PKCS11_MODULE")
        .expect("FERRY_TEST_PKCS11_MODULE is not set: run the test command (scripts/test.sh), which sets up SoftHSM2");
    let token = std::env::var("FERRY_TEST_PKCS11_TOKEN").unwrap_or_else(|_| "ferry-test".into());
    let pin = std::env::var("FERRY_TEST_PKCS11_PIN").unwrap_or_else(|_| "1234".into());
    crate::pkcs11::Hsm::open(std::path::Path::new(&module), &token, pin).unwrap()
}

#[test]
fn hsm_signer_passes_the_conformance_suite_and_its_key_never_leaves_the_token() {
    let hsm = hsm();
    let label = format!("conformance-{}", std::process::id());
    let signer = hsm.generate(&label).unwrap();
    crate::conformance::check_signer(&signer);
    // Found again by label, same key.
    let again = hsm.signer(&label).unwrap();
    assert_eq!(again.kid(), signer.kid());
    hsm.destroy(&label).unwrap();
    assert!(hsm.signer(&label).is_err());
}

#[test]
fn a_ring_held_in_the_hsm_rotates_and_stores_only_references() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let m = KeyManager::open(store.clone(), cfg(Backend::Pkcs11(hsm())), 0).unwrap();
    crate::conformance::check_signer(m.active().as_ref());
    let text = std::fs::read_to_string(store.ring_path()).unwrap();
    assert!(
        text.contains("\"kind\": \"pkcs11\"") && !text.contains("blob") && !text.contains("pkcs8")
    );
    let next = m.rotate(400).unwrap();
    assert_eq!(m.active().kid(), next);
    crate::conformance::check_signer(m.active().as_ref());
}
