//! Where revocation state lives (`revocation:`): revoked `jti`s, revocation rules and
//! reference-token handles. One node keeps them in its data directory; replicas share
//! them in PostgreSQL (`revocation.postgres`, by default the signing store's database).
//! Redis is never their store: it may be wiped by a restart without persistence.

use std::path::Path;

use super::errors::ConfigErrors;
use super::raw::RawRevocation;
use super::signing::{PostgresStore, millis, source};

/// Default interval of the background sync of the in-memory copy, milliseconds.
pub const DEFAULT_REVOCATION_POLL_MS: u64 = 2_000;
/// Default bound on every call to the revocation database, milliseconds.
pub const DEFAULT_REVOCATION_TIMEOUT_MS: u64 = 2_000;

/// The durable store of revocation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationStore {
    /// `data_dir` of this node (`revocations.json` and `reference-handles/`).
    DataDir,
    /// PostgreSQL shared by every replica.
    Postgres {
        /// The connection (its `poll_interval` is the copy's sync interval).
        store: PostgresStore,
        /// Taken from `signing.postgres` because `revocation` was omitted.
        from_signing: bool,
    },
}

impl RevocationStore {
    /// Whether every replica sees the same state (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }
}

pub(super) fn revocation(
    errs: &mut ConfigErrors,
    raw: Option<&RawRevocation>,
    signing: Option<&PostgresStore>,
    base: &Path,
) -> RevocationStore {
    let Some(p) = raw.and_then(|r| r.postgres.as_ref()) else {
        return match signing {
            // The signing store's database, with this store's own timing.
            Some(s) => RevocationStore::Postgres {
                store: PostgresStore {
                    url: s.url.clone(),
                    ca_file: s.ca_file.clone(),
                    poll_interval_ms: DEFAULT_REVOCATION_POLL_MS,
                    timeout_ms: DEFAULT_REVOCATION_TIMEOUT_MS,
                },
                from_signing: true,
            },
            None => RevocationStore::DataDir,
        };
    };
    let poll_interval_ms = millis(
        errs,
        "revocation.postgres.poll_interval",
        p.poll_interval.as_ref(),
        DEFAULT_REVOCATION_POLL_MS,
    );
    if !(100..=60_000).contains(&poll_interval_ms) {
        errs.push(
            "revocation.postgres.poll_interval",
            "must be between 100ms and 60s (it bounds how stale a replica's copy gets)",
        );
    }
    let timeout_ms = millis(
        errs,
        "revocation.postgres.timeout",
        p.timeout.as_ref(),
        DEFAULT_REVOCATION_TIMEOUT_MS,
    );
    if !(1..=60_000).contains(&timeout_ms) {
        errs.push(
            "revocation.postgres.timeout",
            "must be greater than zero and at most 60s",
        );
    }
    let url = match &p.url {
        Some(u) => source(errs, "revocation.postgres.url", u, base),
        None => {
            errs.push(
                "revocation.postgres.url",
                "is required ({env: VAR} or {file: path}; the connection string may hold a password)",
            );
            None
        }
    };
    match url {
        Some(url) => RevocationStore::Postgres {
            store: PostgresStore {
                url,
                poll_interval_ms,
                timeout_ms,
                ca_file: p.ca_file.as_ref().map(|f| base.join(f)),
            },
            from_signing: false,
        },
        None => RevocationStore::DataDir,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{SecretSource, parse};
    use super::*;

    use crate::config::ops::tests::BASE;

    #[test]
    fn the_store_is_the_data_directory_unless_postgres_is_configured_or_signs() {
        // Nothing said, keys in the data directory: the data directory.
        let c = parse(BASE, Path::new("/")).unwrap();
        assert_eq!(c.revocation, RevocationStore::DataDir);
        assert!(!c.revocation.is_shared());
        // Keys in PostgreSQL: the same database by default, with this store's timing.
        let signing = "signing: { jwks_max_age: 20s, leeway: 10s, postgres: { url: { env: KS }, timeout: 3s, ca_file: ca.pem } }\n";
        let c = parse(&format!("{BASE}{signing}"), Path::new("/")).unwrap();
        let RevocationStore::Postgres {
            store,
            from_signing: true,
        } = &c.revocation
        else {
            panic!("{:?}", c.revocation)
        };
        assert_eq!(store.url, SecretSource::Env("KS".into()));
        assert_eq!(store.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(
            (store.poll_interval_ms, store.timeout_ms),
            (DEFAULT_REVOCATION_POLL_MS, DEFAULT_REVOCATION_TIMEOUT_MS)
        );
        // An explicit section wins over the signing store.
        let own = "revocation: { postgres: { url: { file: rv.url }, poll_interval: 500ms, timeout: 2s } }\n";
        let c = parse(&format!("{BASE}{signing}{own}"), Path::new("/etc")).unwrap();
        let RevocationStore::Postgres {
            store,
            from_signing: false,
        } = &c.revocation
        else {
            panic!("{:?}", c.revocation)
        };
        assert_eq!(store.url, SecretSource::File("/etc/rv.url".into()));
        assert_eq!((store.poll_interval_ms, store.timeout_ms), (500, 2000));
        assert!(c.revocation.is_shared());
    }

    #[test]
    fn a_postgres_section_is_checked_with_its_paths() {
        let with = |pg: &str| format!("{BASE}revocation: {{ postgres: {pg} }}\n");
        for (bad, path) in [
            ("{ poll_interval: 1s }", "revocation.postgres.url"),
            ("{ url: \"postgres://u:pw@db/f\" }", "(file)"),
            (
                "{ url: { env: X }, poll_interval: 10ms }",
                "revocation.postgres.poll_interval",
            ),
            (
                "{ url: { env: X }, poll_interval: 2m }",
                "revocation.postgres.poll_interval",
            ),
            (
                "{ url: { env: X }, timeout: 0s }",
                "revocation.postgres.timeout",
            ),
            ("{ url: { env: X }, other: 1 }", "(file)"),
        ] {
            let err = parse(&with(bad), Path::new("/")).unwrap_err();
            assert!(err.to_string().contains(path), "{bad}: {err}");
        }
        // Twin: the same section, valid.
        assert!(
            parse(
                &with("{ url: { env: X }, poll_interval: 100ms, timeout: 1s }"),
                Path::new("/")
            )
            .is_ok()
        );
    }
}
