//! The conformance suite both revocation stores pass (the data directory, PostgreSQL),
//! through the front every caller uses: revoked `jti`s and rules hold until they expire
//! and survive a restart (a new front on the same store); handles resolve until their
//! JWT's `exp`, are bounded in count and size, and are stored only sealed (the JWT and
//! its payload never appear in what the store holds at rest). PostgreSQL also shows
//! what only a shared store can: a write at one replica holds at another at once, the
//! handle cap holds across replicas writing together, and while the database is down
//! writes fail and reads are answered from the copy; and its schema migrations follow
//! expand-then-contract.

use std::sync::Arc;
use std::time::Duration;

use ferry_keys::{Kek, Keks};

use super::*;
use crate::ids::fingerprint;

const JWT: &str =
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJyZXBvOmFjbWUvYXBwIiwic2VjcmV0LWNsYWltIjoxfQ.c2lnbmF0dXJl";

fn facts(jti: &str, sub: &str, iat: i64) -> Facts {
    Facts {
        jti: Some(jti.into()),
        subject: Some(sub.into()),
        provider: Some("github".into()),
        client: Some("ci".into()),
        iat,
        ..Facts::default()
    }
}

fn sealer(kek: &str) -> Sealer {
    Sealer::new(Keks::new(vec![Kek::parse(kek).unwrap()]))
}

fn hash(n: u32) -> String {
    fingerprint(format!("ferry_ref_{n}").as_bytes())
}

/// The suite. `open` makes a new front on the same store (a restart); `at_rest` returns
/// every byte the store holds.
#[allow(clippy::too_many_lines, reason = "the suite reads as one scenario")]
pub async fn check<F, Fut>(open: F, at_rest: impl Fn() -> Vec<u8>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Revocations>,
{
    let r = open().await;
    let now = 1_000;
    assert_eq!(r.listing(now).await.unwrap(), Listing::default());
    // The replay epoch's beginning: recorded once, durably, whoever asks again.
    assert!(!r.mark_replay_epoch().await.unwrap(), "never begun");
    assert!(r.mark_replay_epoch().await.unwrap());
    assert!(open().await.mark_replay_epoch().await.unwrap(), "reopened");
    let a = facts("j1", "repo:acme/lib", 900);
    assert!(!r.is_revoked(&a, now).await.unwrap());
    r.revoke_jti("j1", 1_400, now).await.unwrap();
    assert!(r.is_revoked(&a, now).await.unwrap());
    // Twin: another token of the same subject is untouched by a jti revocation.
    assert!(
        !r.is_revoked(&facts("j2", "repo:acme/lib", 900), now)
            .await
            .unwrap()
    );
    // A token narrowed from j1 (its ancestor) is revoked with it; twin: one narrowed
    // from an unrevoked token is not.
    let child = |parent: &str| Facts {
        ancestors: vec!["root".into(), parent.into()],
        ..facts("child", "repo:acme/lib", 950)
    };
    assert!(r.is_revoked(&child("j1"), now).await.unwrap());
    assert!(!r.is_revoked(&child("j2"), now).await.unwrap());
    // Revoking again with an earlier exp keeps the later one.
    r.revoke_jti("j1", 1_300, now).await.unwrap();
    // A rule: everything issued to a subject up to `now`.
    let rule = Rule {
        kind: RuleKind::Subject,
        value: "repo:acme/app".into(),
        before: now,
        until: now + 3_600,
    };
    r.add_rule(&rule, now).await.unwrap();
    r.add_rule(&rule, now).await.unwrap();
    assert!(
        r.is_revoked(&facts("x", "repo:acme/app", now), now)
            .await
            .unwrap()
    );
    assert!(
        !r.is_revoked(&facts("x", "repo:acme/app", now + 1), now)
            .await
            .unwrap()
    );
    assert!(
        !r.is_revoked(&facts("x", "repo:acme/other", 900), now)
            .await
            .unwrap()
    );
    // Handles: resolved until exp, bounded in count and size.
    r.put_handle(&hash(0), JWT, 1_400, now, 3).await.unwrap();
    assert_eq!(
        r.get_handle(&hash(0), 1_400).await.unwrap().as_deref(),
        Some(JWT)
    );
    assert_eq!(r.get_handle(&hash(0), 1_401).await.unwrap(), None);
    assert_eq!(r.get_handle(&hash(99), now).await.unwrap(), None);
    r.put_handle(&hash(1), JWT, 1_100, now, 3).await.unwrap();
    r.put_handle(&hash(2), JWT, 1_100, now, 3).await.unwrap();
    assert!(matches!(
        r.put_handle(&hash(3), JWT, 1_400, now, 3).await,
        Err(HandleError::Full)
    ));
    assert_eq!(
        r.get_handle(&hash(3), now).await.unwrap(),
        None,
        "not stored"
    );
    // Once some expire there is room again.
    r.put_handle(&hash(3), JWT, 1_400, 1_200, 3).await.unwrap();
    let big = "x".repeat(MAX_JWT_BYTES + 1);
    assert!(matches!(
        r.put_handle(&hash(4), &big, 1_400, 1_200, 9).await,
        Err(HandleError::TooLarge)
    ));
    drop(r);

    // A restart keeps everything live.
    let again = open().await;
    let listing = again.listing(1_200).await.unwrap();
    assert_eq!(listing.jtis.get("j1"), Some(&1_400));
    assert_eq!(listing.rules, vec![rule]);
    assert!(again.is_revoked(&a, 1_200).await.unwrap());
    assert_eq!(
        again.get_handle(&hash(3), 1_200).await.unwrap().as_deref(),
        Some(JWT)
    );
    assert_eq!(
        again.get_handle(&hash(1), 1_200).await.unwrap(),
        None,
        "expired"
    );
    // Past their lifetimes they are dropped.
    assert!(!again.is_revoked(&a, 1_401).await.unwrap());
    assert!(
        again
            .is_revoked(&facts("x", "repo:acme/app", 999), 4_600)
            .await
            .unwrap()
    );
    assert_eq!(again.listing(5_000).await.unwrap(), Listing::default());

    // At rest: sealed, never the JWT or its claims in clear.
    let bytes = at_rest();
    let payload = JWT.split('.').nth(1).unwrap();
    assert!(!bytes.is_empty());
    for needle in [JWT, payload, "repo:acme/app\",\"secret"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} stored in clear"
        );
    }
    // Twin: the revoked jti itself is stored (the search would find what is there).
    assert!(bytes.windows(2).any(|w| w == b"j1"));
}

fn files(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn the_data_directory_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let kek = Kek::generate_text().unwrap();
    let path = dir.path().to_owned();
    check(
        || {
            let (p, k) = (path.clone(), kek.clone());
            async move { Revocations::local(&p, sealer(&k)).unwrap() }
        },
        || files(&path),
    )
    .await;
}

#[tokio::test]
async fn without_a_kek_a_single_node_keeps_handles_in_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let r = Revocations::local(dir.path(), Sealer::default()).unwrap();
    r.put_handle(&hash(0), JWT, 1_400, 1_000, 3).await.unwrap();
    assert_eq!(
        r.get_handle(&hash(0), 1_000).await.unwrap().as_deref(),
        Some(JWT)
    );
    assert!(files(dir.path()).is_empty(), "nothing written");
    // A restart loses it (its holder asks again).
    let again = Revocations::local(dir.path(), Sealer::default()).unwrap();
    assert_eq!(again.get_handle(&hash(0), 1_000).await.unwrap(), None);
}

/// A revocation file that does not parse is an error naming the file (never an empty
/// state); its twin, a file that parses, loads.
#[tokio::test]
async fn a_corrupt_revocation_file_is_a_typed_error_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.json");
    std::fs::write(&path, br#"{"jtis": {"a": 2000}, "rules": []}"#).unwrap();
    let r = Revocations::local(dir.path(), Sealer::default()).unwrap();
    assert!(r.listing(1_000).await.unwrap().jtis.contains_key("a"));
    std::fs::write(&path, b"{not json").unwrap();
    let err = Revocations::local(dir.path(), Sealer::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(!err.is_outage());
    assert!(
        err.to_string()
            .starts_with(&format!("{} is not valid: ", path.display())),
        "{err}"
    );
}

async fn pg_front(url: &str, kek: &str) -> Revocations {
    let r = Revocations::postgres(
        url,
        Duration::from_secs(2),
        None,
        Duration::from_millis(200),
        sealer(kek),
    )
    .unwrap();
    r.start(1_000).await.unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one scenario across two replicas")]
async fn the_postgres_store_passes_the_conformance_suite_and_is_shared() {
    let mut pg = ferry_testkit::Postgres::start();
    let (url, kek) = (pg.url(), Kek::generate_text().unwrap());
    check(
        || {
            let (u, k) = (url.clone(), kek.clone());
            async move { pg_front(&u, &k).await }
        },
        || {
            pg.psql(
                "SELECT (SELECT coalesce(string_agg(jti || exp, ','), '') FROM ferry_revoked_jtis)
                 || (SELECT coalesce(string_agg(hash || sealed || exp, ','), '') FROM ferry_reference_handles)",
            )
            .into_bytes()
        },
    )
    .await;
    // Without a key-encryption key, a shared store refuses handles (they would be
    // known to one replica only) — twin of the suite above, which seals them.
    let bare = Revocations::postgres(
        &url,
        Duration::from_secs(2),
        None,
        Duration::from_secs(1),
        Sealer::default(),
    )
    .unwrap();
    bare.start(1_000).await.unwrap();
    assert!(matches!(
        bare.put_handle(&hash(50), JWT, 1_400, 1_000, 9).await,
        Err(HandleError::Unavailable(StoreError::NoSealingKey))
    ));

    // Two replicas: a write at one holds at the other at once.
    let (a, b) = (pg_front(&url, &kek).await, pg_front(&url, &kek).await);
    let now = 2_000;
    assert!(!b.is_revoked(&facts("k1", "s", 1_900), now).await.unwrap());
    a.revoke_jti("k1", 2_500, now).await.unwrap();
    assert!(b.is_revoked(&facts("k1", "s", 1_900), now).await.unwrap());
    a.put_handle(&hash(10), JWT, 2_500, now, 100).await.unwrap();
    assert_eq!(
        b.get_handle(&hash(10), now).await.unwrap().as_deref(),
        Some(JWT)
    );

    // The cap holds across replicas writing together.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            r.put_handle(&hash(100 + i), JWT, 2_500, now, 21).await
        }));
    }
    let mut stored = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => stored += 1,
            Err(HandleError::Full) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        stored, 20,
        "21 live handles at most, one of them stored above"
    );

    // The database down: writes fail, reads answer from the copy without waiting.
    pg.stop();
    assert!(a.revoke_jti("k2", 2_500, now).await.is_err());
    assert!(!a.store_up());
    assert!(a.is_revoked(&facts("k1", "s", 1_900), now).await.unwrap());
    assert!(!a.is_revoked(&facts("k2", "s", 1_900), now).await.unwrap());
    assert_eq!(
        a.get_handle(&hash(10), now).await.unwrap().as_deref(),
        Some(JWT)
    );
    assert!(a.listing(now).await.unwrap().jtis.contains_key("k1"));
    // Back: the poll finds it, writes work again.
    pg.start_again();
    for _ in 0..50 {
        a.poll(now).await;
        if a.store_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.revoke_jti("k2", 2_500, now).await.unwrap();
    assert!(b.is_revoked(&facts("k2", "s", 1_900), now).await.unwrap());

    // Expand-then-contract: a newer schema this binary can still read is accepted (a
    // rolling upgrade); one that needs a newer reader stops it at start, saying why.
    let record = |v: i32, min: i32| {
        format!(
            "INSERT INTO ferry_revocation_schema_migrations (version, min_reader, description) \
             VALUES ({v}, {min}, 'from a future release')"
        )
    };
    pg.psql(&record(SCHEMA_VERSION + 1, SCHEMA_VERSION));
    assert!(pg_front(&url, &kek).await.store_up());
    pg.psql(&record(SCHEMA_VERSION + 2, SCHEMA_VERSION + 2));
    let old = Revocations::postgres(
        &url,
        Duration::from_secs(2),
        None,
        Duration::from_secs(1),
        sealer(&kek),
    )
    .unwrap();
    let err = old.start(now).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains(&format!(
            "revocation store's schema is version {}",
            SCHEMA_VERSION + 2
        )),
        "{err}"
    );
    assert!(!err.contains(pg.password()), "{err}");
}

#[tokio::test]
async fn a_handle_opens_with_any_configured_kek_and_is_unknown_without_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Kek::generate_text().unwrap(), Kek::generate_text().unwrap());
    let keks = |texts: &[&str]| {
        Sealer::new(Keks::new(
            texts.iter().map(|t| Kek::parse(t).unwrap()).collect(),
        ))
    };
    let r = Revocations::local(dir.path(), keks(&[&old])).unwrap();
    r.put_handle(&hash(0), JWT, 1_400, 1_000, 3).await.unwrap();
    drop(r);
    // The new KEK first, the old one still configured: it opens.
    let both = Revocations::local(dir.path(), keks(&[&new, &old])).unwrap();
    assert_eq!(
        both.get_handle(&hash(0), 1_000).await.unwrap().as_deref(),
        Some(JWT)
    );
    // Twin: the old KEK dropped: unknown, not an error.
    let only_new = Revocations::local(dir.path(), keks(&[&new])).unwrap();
    assert_eq!(only_new.get_handle(&hash(0), 1_000).await.unwrap(), None);
}
