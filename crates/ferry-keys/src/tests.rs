//! The manager over real stores: initialisation, restart, wrong and rotated
//! key-encryption keys, emergency revocation, two writers sharing a directory, and the
//! signer conformance suite on SoftHSM2.

use std::sync::Arc;

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
    assert_eq!(
        snap.revoked
            .iter()
            .map(|r| r.kid.as_str())
            .collect::<Vec<_>>(),
        [third.as_str()],
        "listed for the revocation list"
    );
    assert_ne!(snap.etag, etag);
    assert_ne!(m.active().kid(), third);
    // Retired keys leave after max_token_ttl + jwks_max_age + leeway.
    m.tick(400 + 3_600 + 400 + 1_300).unwrap();
    assert!(!m.snapshot().jwks.contains(&first));
}

#[test]
fn the_local_store_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    crate::store_conformance::check_store(move || -> Arc<dyn KeyStore> {
        Arc::new(LocalStore::open(&path).unwrap())
    });
}

fn pg_open(url: &str) -> Arc<PgStore> {
    Arc::new(PgStore::open(url, std::time::Duration::from_secs(10), None).unwrap())
}

#[test]
fn the_postgres_store_passes_the_store_conformance_suite_and_keeps_the_history() {
    let pg = ferry_testkit::Postgres::start();
    let url = pg.url();
    crate::store_conformance::check_store(move || -> Arc<dyn KeyStore> { pg_open(&url) });
    // The history has every version exactly once, in order, with its writer, and no
    // key material.
    let store = pg_open(&pg.url());
    let history = store.history().unwrap();
    let current = store.load().unwrap();
    let versions: Vec<u64> = history.iter().map(|(v, _, _)| *v).collect();
    assert_eq!(versions, (1..=current.version).collect::<Vec<_>>());
    assert_eq!(history.last().unwrap().1, current.written_by);
    let text = serde_json::to_string(&history.iter().map(|h| &h.2).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("blob") && !text.contains("material"));
    // The database holds no private key in clear.
    let dump = pg.psql("SELECT keys::text FROM ferry_key_ring");
    assert!(dump.contains("\"kind\": \"encrypted\"") && !dump.contains("pkcs8"));
}

#[test]
fn an_older_binary_refuses_a_schema_it_cannot_read_and_accepts_an_expanded_one() {
    let pg = ferry_testkit::Postgres::start();
    pg_open(&pg.url());
    let next = SCHEMA_VERSION + 1;
    // An expanding migration of the next release: this binary still reads the schema.
    pg.psql(&format!(
        "INSERT INTO ferry_schema_migrations (version, min_reader, description) \
         VALUES ({next}, {SCHEMA_VERSION}, 'expand')"
    ));
    let store = pg_open(&pg.url());
    let kek = Kek::generate_text().unwrap();
    assert!(KeyManager::open(store, software(&[&kek]), 1_000).is_ok());
    // Its contracting migration: this binary must refuse, and say why.
    pg.psql(&format!(
        "INSERT INTO ferry_schema_migrations (version, min_reader, description) \
         VALUES ({}, {next}, 'contract')",
        next + 1
    ));
    let err = PgStore::open(&pg.url(), std::time::Duration::from_secs(10), None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("schema is version {}", next + 1))
            && text.contains(&format!("knows schema {SCHEMA_VERSION}"))
            && text.contains("upgrade Ferry"),
        "{text}"
    );
}

#[test]
fn the_postgres_store_reconnects_after_a_restart_and_its_errors_hold_no_password() {
    let mut pg = ferry_testkit::Postgres::start();
    let store = pg_open(&pg.url());
    let kek = Kek::generate_text().unwrap();
    let m = KeyManager::open(store.clone(), software(&[&kek]), 1_000).unwrap();
    let kid = m.active().kid().to_owned();
    pg.stop();
    let err = m.tick(1_001).unwrap_err().to_string();
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(!err.contains(pg.password()), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}/postgres", pg.port())),
        "{err}"
    );
    // Signing goes on with the keys in memory.
    assert_eq!(m.active().kid(), kid);
    pg.start_again();
    // Twin: with the database back, the same handle works again and rotation resumes.
    m.tick(1_002).unwrap();
    let rotated = m.rotate(1_000 + 400).unwrap();
    assert_ne!(rotated, kid);
    // A wrong password is refused without being echoed.
    let bad = pg.url().replace(pg.password(), "not-the-password");
    let err = PgStore::open(&bad, std::time::Duration::from_secs(10), None)
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("not-the-password") && !err.contains(pg.password()),
        "{err}"
    );
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

#[test]
fn tls_to_postgres_verifies_the_server_and_is_really_used() {
    // A certificate for the name `localhost` only.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pg = ferry_testkit::Postgres::start_with_tls(
        &cert.cert.pem(),
        &cert.signing_key.serialize_pem(),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(
        &other,
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap()
            .cert
            .pem(),
    )
    .unwrap();
    let timeout = std::time::Duration::from_secs(10);
    let at = |host: &str, mode: &str| {
        format!(
            "postgres://postgres:{}@{host}:{}/postgres{mode}",
            pg.password(),
            pg.port()
        )
    };
    let url = at("localhost", "?sslmode=require");
    // Trusting the server's CA: the store works over TLS.
    let store = Arc::new(PgStore::open(&url, timeout, Some(&ca)).unwrap());
    let kek = Kek::generate_text().unwrap();
    assert!(KeyManager::open(store, software(&[&kek]), 1_000).is_ok());
    // The default sslmode (prefer) uses TLS too when the server offers it.
    assert!(PgStore::open(&at("localhost", ""), timeout, Some(&ca)).is_ok());
    // Another CA, or the system's roots: the server is not trusted, and it says so.
    for ca in [Some(other.as_path()), None] {
        let err = PgStore::open(&url, timeout, ca).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        assert!(!err.contains(pg.password()), "{err}");
    }
    // The right CA but another name (127.0.0.1 is not in the certificate): refused.
    let err = PgStore::open(&at("127.0.0.1", "?sslmode=require"), timeout, Some(&ca))
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Without TLS the server refuses us: the connections above really used it.
    let err = PgStore::open(&at("localhost", "?sslmode=disable"), timeout, Some(&ca))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pg_hba.conf") || err.contains("28000"),
        "{err}"
    );
}
