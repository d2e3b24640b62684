//! The PostgreSQL store, for replicas that share one ring. The ring is one row
//! (`ferry_key_ring`): its version, its writer and its keys as JSON, private halves sealed
//! with the key-encryption key (or HSM references). A write is a compare-and-swap:
//! `UPDATE … WHERE version = expected`; under PostgreSQL's row locks the second of two
//! concurrent writers finds the version changed and updates nothing. Every successful
//! write also appends the new version's lifecycle records (never key material) to
//! `ferry_key_ring_history`, keyed by version: the history of who wrote what.
//!
//! The store's calls are synchronous, like the local store's. They run on one dedicated
//! thread that owns a small Tokio runtime and the connection, so a call works from any
//! context (startup, the CLI, a blocking task) and a call that does not finish within
//! the timeout fails instead of hanging. A broken connection (PostgreSQL restarted) is
//! replaced on the next call.
//!
//! Schema changes follow expand-then-contract: every migration records `min_reader`, the
//! oldest schema version a binary may know and still use the database. An expanding
//! migration keeps `min_reader` (older replicas keep working beside newer ones); a
//! contracting one, shipped a release later, raises it. A binary that finds a schema it
//! cannot read refuses to start with an error that says so.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tokio_postgres::Client;

use super::migrations::{MIGRATIONS, SCHEMA_VERSION};
use super::pg::{self, MakeRustls, Schema, pg_error};

use super::model::{KeyStore, Replica, StoredKey, StoredRing};
use crate::signer::KeyError;

/// The key store's schema: its migrations, recorded in `ferry_schema_migrations` and
/// serialised between replicas starting together by an advisory lock ("ferry-ks" in
/// ASCII).
const SCHEMA: Schema = Schema {
    name: "key store",
    table: "ferry_schema_migrations",
    lock: 0x6665_7272_792d_6b73,
    version: SCHEMA_VERSION,
    migrations: MIGRATIONS,
};

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

struct Conn {
    rt: tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    client: Option<Client>,
    timeout: Duration,
    tls: MakeRustls,
}

impl Conn {
    /// Runs `f` with a live client, connecting first if needed; drops the client after
    /// any error so that the next call starts on a fresh connection.
    fn run<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, KeyError> {
        let Self {
            rt,
            config,
            client,
            timeout,
            tls,
        } = self;
        let out = rt.block_on(async {
            tokio::time::timeout(*timeout, async {
                let mut c = match client.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => {
                        let (c, connection) = config.connect(tls.clone()).await?;
                        tokio::spawn(async move {
                            if let Err(e) = connection.await {
                                tracing::warn!(error = %e, "key store: PostgreSQL connection lost");
                            }
                        });
                        c
                    }
                };
                let out = f(&mut c).await;
                *client = Some(c);
                out
            })
            .await
        });
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *client = None;
                Err(pg_error(&e))
            }
            Err(_) => {
                *client = None;
                Err(KeyError::Store(format!(
                    "PostgreSQL did not answer within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }
}

/// A ring in PostgreSQL.
pub struct PgStore {
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or a libpq key=value string), brings the
    /// schema up to date (or refuses a schema this binary cannot read) and returns the
    /// store. `timeout` bounds every call, connecting included. TLS (per `sslmode`)
    /// verifies the server against `ca_file`, else the system's roots.
    pub fn open(url: &str, timeout: Duration, ca_file: Option<&Path>) -> Result<Self, KeyError> {
        let store = Self::connect(url, timeout, ca_file)?;
        store.migrate()?;
        Ok(store)
    }

    /// As [`PgStore::open`], without touching the schema: for read-only inspection
    /// (`ferry check`), where a missing table is an error rather than a migration.
    pub fn connect(url: &str, timeout: Duration, ca_file: Option<&Path>) -> Result<Self, KeyError> {
        let (config, target) = pg::config(url, timeout)?;
        let tls = MakeRustls::new(ca_file)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let mut conn = Conn {
            rt,
            config,
            client: None,
            timeout,
            tls,
        };
        std::thread::Builder::new()
            .name("ferry-key-store".into())
            .spawn(move || {
                for job in rx {
                    job(&mut conn);
                }
            })?;
        Ok(Self {
            jobs,
            timeout,
            target,
        })
    }

    /// Runs `f` on the store's thread and waits for its result.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, KeyError> + Send + 'static,
    ) -> Result<T, KeyError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |c: &mut Conn| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| KeyError::Store("the key store's thread has stopped".into()))?;
        // The job bounds itself by `timeout`; allow for the queue in front of it.
        rx.recv_timeout(self.timeout * 2 + Duration::from_secs(1))
            .map_err(|_| {
                KeyError::Store(format!(
                    "PostgreSQL at {} did not answer in time",
                    self.target
                ))
            })?
            .map_err(|e| match e {
                KeyError::Store(m) => KeyError::Store(format!("{} ({})", m, self.target)),
                other => other,
            })
    }

    fn migrate(&self) -> Result<(), KeyError> {
        let outcome = self.call(|c| c.run(async |client| pg::migrate(client, &SCHEMA).await))?;
        pg::report(&SCHEMA, outcome)
    }

    /// The write history, oldest first: `(version, written_by, lifecycle records)`.
    pub fn history(&self) -> Result<Vec<(u64, String, serde_json::Value)>, KeyError> {
        self.call(|c| {
            c.run(async |client| {
                let rows = client
                    .query(
                        "SELECT version, written_by, keys FROM ferry_key_ring_history ORDER BY version",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (
                            u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                            r.get::<_, String>(1),
                            r.get::<_, serde_json::Value>(2),
                        )
                    })
                    .collect())
            })
        })
    }
}

impl KeyStore for PgStore {
    fn load(&self) -> Result<StoredRing, KeyError> {
        let (version, written_by, keys, revoked, max_issued_ttl) = self.call(|c| {
            c.run(async |client| {
                let r = client
                    .query_one(
                        "SELECT version, written_by, keys, revoked, max_issued_ttl FROM ferry_key_ring WHERE id = 1",
                        &[],
                    )
                    .await?;
                Ok((
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, serde_json::Value>(2),
                    r.get::<_, serde_json::Value>(3),
                    r.get::<_, i64>(4),
                ))
            })
        })?;
        let keys: Vec<StoredKey> = serde_json::from_value(keys)
            .map_err(|e| KeyError::Store(format!("the stored key ring is not valid: {e}")))?;
        let revoked = serde_json::from_value(revoked)
            .map_err(|e| KeyError::Store(format!("the stored revoked keys are not valid: {e}")))?;
        Ok(StoredRing {
            version: u64::try_from(version).unwrap_or(0),
            written_by,
            keys,
            revoked,
            max_issued_ttl,
        })
    }

    fn compare_and_swap(&self, expected: u64, ring: &StoredRing) -> Result<bool, KeyError> {
        let expected = i64::try_from(expected)
            .map_err(|_| KeyError::Store("key ring version out of range".into()))?;
        let keys = serde_json::to_value(&ring.keys)?;
        let revoked = serde_json::to_value(&ring.revoked)?;
        let metas = serde_json::to_value(ring.keys.iter().map(|k| &k.meta).collect::<Vec<_>>())?;
        let writer = ring.written_by.clone();
        let max_issued_ttl = ring.max_issued_ttl;
        self.call(move |c| {
            c.run(async move |client| {
                let tx = client.transaction().await?;
                let next = expected + 1;
                let n = tx
                    .execute(
                        "UPDATE ferry_key_ring SET version = $2, written_by = $3, written_at = now(), keys = $4, revoked = $5,
                         max_issued_ttl = GREATEST(max_issued_ttl, $6) WHERE id = 1 AND version = $1",
                        &[&expected, &next, &writer, &keys, &revoked, &max_issued_ttl],
                    )
                    .await?;
                if n != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO ferry_key_ring_history (version, written_by, keys) VALUES ($1, $2, $3)",
                    &[&next, &writer, &metas],
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            })
        })
    }

    fn heartbeat(&self, replica: &str, keks: &[String]) -> Result<(), KeyError> {
        let (replica, keks) = (replica.to_owned(), serde_json::to_value(keks)?);
        self.call(move |c| {
            c.run(async move |client| {
                client
                    .execute(
                        "INSERT INTO ferry_replicas (replica, kek_fingerprints, last_seen) VALUES ($1, $2, now())
                         ON CONFLICT (replica) DO UPDATE SET kek_fingerprints = $2, last_seen = now()",
                        &[&replica, &keks],
                    )
                    .await?;
                // Replicas gone for a day (restarted under another process id) are
                // forgotten, so the table stays the size of the deployment.
                client
                    .execute(
                        "DELETE FROM ferry_replicas WHERE last_seen < now() - interval '1 day'",
                        &[],
                    )
                    .await?;
                Ok(())
            })
        })
    }

    fn live_replicas(&self, max_age: Duration) -> Result<Option<Vec<Replica>>, KeyError> {
        let max_age = max_age.as_secs_f64();
        let rows = self.call(move |c| {
            c.run(async move |client| {
                client
                    .query(
                        "SELECT replica, kek_fingerprints, floor(extract(epoch FROM now() - last_seen))::bigint
                         FROM ferry_replicas
                         WHERE last_seen >= now() - make_interval(secs => $1)
                         ORDER BY replica",
                        &[&max_age],
                    )
                    .await
            })
        })?;
        rows.iter()
            .map(|r| {
                Ok(Replica {
                    name: r.get(0),
                    keks: serde_json::from_value(r.get(1)).map_err(|e| {
                        KeyError::Store(format!("a replica's heartbeat is not valid: {e}"))
                    })?,
                    age_secs: r.get(2),
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()
            .map(Some)
    }
}
