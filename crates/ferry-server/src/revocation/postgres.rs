//! The PostgreSQL store, shared by replicas: revoked `jti`s (`ferry_revoked_jtis`),
//! rules (`ferry_revocation_rules`) and sealed reference handles
//! (`ferry_reference_handles`, with their live count in `ferry_reference_handle_count`).
//! Schema changes are expand-then-contract, recorded in
//! `ferry_revocation_schema_migrations` (see `ferry_keys::store::pg`), apart from the
//! key store's, so both may share the signing store's database or not.
//!
//! Change feed: every row carries the id of the transaction that last wrote it
//! (`txid_current()`). A read first takes the oldest transaction still running
//! (`txid_snapshot_xmin`), then returns the rows written by that transaction or later;
//! every transaction before it has finished, so nothing committed is ever skipped (a
//! row may come twice: applying it is idempotent). Revocations are never undone, so
//! deletions (of expired rows only) need no feed.
//!
//! The handle cap is atomic across replicas: one statement increments the live count
//! only while it is below the cap and inserts the handle only if it did.
//!
//! Calls run on the server's runtime over one pipelined connection, each bounded by
//! `revocation.postgres.timeout`; a broken or silent connection is replaced. The two
//! calls that may legitimately take long — the migration and the first, full read of
//! the state at start — get [`patience`] instead.

use std::sync::Arc;
use std::time::Duration;

use ferry_keys::store::pg::{self, MakeRustls, Migration, Schema};
use tokio_postgres::Client;

use super::model::{Listing, Rule, RuleKind};
use super::store::{Changes, Cursor, HandleError, Store, StoreError, StoredHandle};

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: i32 = 2;

/// Every migration, in order. Expanding ones keep `min_reader`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        min_reader: 1,
        description: "revoked tokens, revocation rules and sealed reference handles",
        sql: "CREATE TABLE ferry_revoked_jtis (
              jti text PRIMARY KEY,
              exp bigint NOT NULL,
              txid bigint NOT NULL DEFAULT txid_current()
          );
          CREATE INDEX ferry_revoked_jtis_txid ON ferry_revoked_jtis (txid);
          CREATE INDEX ferry_revoked_jtis_exp ON ferry_revoked_jtis (exp);
          CREATE TABLE ferry_revocation_rules (
              kind text NOT NULL,
              value text NOT NULL,
              issued_before bigint NOT NULL,
              keep_until bigint NOT NULL,
              txid bigint NOT NULL DEFAULT txid_current(),
              PRIMARY KEY (kind, value, issued_before)
          );
          CREATE INDEX ferry_revocation_rules_txid ON ferry_revocation_rules (txid);
          CREATE TABLE ferry_reference_handles (
              hash text PRIMARY KEY,
              sealed text NOT NULL,
              exp bigint NOT NULL,
              txid bigint NOT NULL DEFAULT txid_current()
          );
          CREATE INDEX ferry_reference_handles_txid ON ferry_reference_handles (txid);
          CREATE INDEX ferry_reference_handles_exp ON ferry_reference_handles (exp);
          CREATE TABLE ferry_reference_handle_count (
              id integer PRIMARY KEY CHECK (id = 1),
              live bigint NOT NULL
          );
          INSERT INTO ferry_reference_handle_count (id, live) VALUES (1, 0);",
    },
    // Expanding: a table older binaries never touch.
    Migration {
        version: 2,
        min_reader: 1,
        description: "when the deployment's shared replay state (the Redis epoch) began",
        sql: "CREATE TABLE ferry_replay_epoch (
              id integer PRIMARY KEY CHECK (id = 1),
              begun_at timestamptz NOT NULL DEFAULT now()
          )",
    },
];

const SCHEMA: Schema = Schema {
    name: "revocation store",
    table: "ferry_revocation_schema_migrations",
    // "ferry-rv" in ASCII.
    lock: 0x6665_7272_792d_7276,
    version: SCHEMA_VERSION,
    migrations: MIGRATIONS,
};

/// Revoked `jti`s and rules are pruned this long after they expired, so a replica whose
/// clock runs behind never finds a live token's revocation gone.
const PRUNE_MARGIN: i64 = 300;

/// The bound on the migration and the first full read: ten timeouts, at least 30 s.
fn patience(timeout: Duration) -> Duration {
    (timeout * 10).max(Duration::from_secs(30))
}

/// Revocation state in PostgreSQL.
pub struct PgStore {
    config: tokio_postgres::Config,
    tls: MakeRustls,
    target: String,
    timeout: Duration,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn kind_name(k: RuleKind) -> &'static str {
    match k {
        RuleKind::Subject => "subject",
        RuleKind::Provider => "provider",
        RuleKind::Client => "client",
    }
}

fn kind_of(name: &str) -> Option<RuleKind> {
    match name {
        "subject" => Some(RuleKind::Subject),
        "provider" => Some(RuleKind::Provider),
        "client" => Some(RuleKind::Client),
        _ => None,
    }
}

fn text(e: &tokio_postgres::Error) -> String {
    match pg::pg_error(e) {
        ferry_keys::KeyError::Store(m) => m,
        other => other.to_string(),
    }
}

impl PgStore {
    /// A store for `url` (nothing is connected yet: see [`PgStore::migrate`]). `timeout`
    /// bounds every call, connecting included; TLS per `sslmode`, trusting `ca_file`
    /// else the system's roots.
    pub fn new(
        url: &str,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, StoreError> {
        let config_error = |e: ferry_keys::KeyError| StoreError::Config(e.to_string());
        let (config, target) = pg::config(url, timeout).map_err(config_error)?;
        let tls = MakeRustls::new(ca_file).map_err(config_error)?;
        Ok(Self {
            config,
            tls,
            target,
            timeout,
            client: tokio::sync::Mutex::new(None),
        })
    }

    /// A driver error, with where it happened.
    fn error(&self, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Postgres {
            message: text(e),
            target: self.target.clone(),
        }
    }

    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let (c, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %text(&e), "revocation store: PostgreSQL connection lost");
            }
        });
        let c = Arc::new(c);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` within `limit`; a call that does not answer drops the connection.
    async fn bounded_by<T>(
        &self,
        limit: Duration,
        f: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => {
                // Locked: another call is connecting afresh anyway.
                if let Ok(mut slot) = self.client.try_lock() {
                    *slot = None;
                }
                Err(StoreError::Timeout {
                    target: self.target.clone(),
                    ms: limit.as_millis(),
                })
            }
        }
    }

    /// Runs `f` within the configured timeout.
    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        self.bounded_by(self.timeout, f).await
    }

    /// Brings the schema up to date (on a connection of its own, in one transaction),
    /// or refuses a schema this binary cannot read.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let outcome = self
            .bounded_by(patience(self.timeout), async {
                let (mut c, connection) = self
                    .config
                    .connect(self.tls.clone())
                    .await
                    .map_err(|e| self.error(&e))?;
                let task = tokio::spawn(connection);
                let out = pg::migrate(&mut c, &SCHEMA)
                    .await
                    .map_err(|e| self.error(&e));
                drop(c);
                let _ = task.await;
                out
            })
            .await?;
        pg::report(&SCHEMA, outcome).map_err(|e| StoreError::Schema(e.to_string()))
    }

    async fn try_put(
        &self,
        c: &Client,
        hash: &str,
        h: &StoredHandle,
        cap: i64,
    ) -> Result<bool, StoreError> {
        let n = c
            .execute(
                "WITH c AS (
                     UPDATE ferry_reference_handle_count SET live = live + 1
                     WHERE id = 1 AND live < $4 RETURNING live
                 )
                 INSERT INTO ferry_reference_handles (hash, sealed, exp)
                 SELECT $1, $2, $3 FROM c",
                &[&hash, &h.sealed, &h.exp, &cap],
            )
            .await
            .map_err(|e| self.error(&e))?;
        Ok(n == 1)
    }
}

impl Store for PgStore {
    async fn mark_replay_epoch(&self) -> Result<bool, StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            let n = c
                .execute(
                    "INSERT INTO ferry_replay_epoch (id) VALUES (1) ON CONFLICT DO NOTHING",
                    &[],
                )
                .await
                .map_err(|e| self.error(&e))?;
            Ok(n == 0)
        })
        .await
    }

    async fn changes(&self, since: Cursor, now: i64) -> Result<Changes, StoreError> {
        // Everything (at start) may be many handles; what changed since is a few rows.
        let limit = if since == Cursor::default() {
            patience(self.timeout)
        } else {
            self.timeout
        };
        self.bounded_by(limit, async {
            let c = self.client().await?;
            let err = |e: tokio_postgres::Error| self.error(&e);
            // First the horizon: every transaction before it has finished.
            let next = c
                .query_one("SELECT txid_snapshot_xmin(txid_current_snapshot())", &[])
                .await
                .map_err(err)?
                .get::<_, i64>(0);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&since.0, &now];
            let (jtis, rules, handles) = tokio::try_join!(
                c.query(
                    "SELECT jti, exp FROM ferry_revoked_jtis WHERE txid >= $1 AND exp >= $2",
                    &params,
                ),
                c.query(
                    "SELECT kind, value, issued_before, keep_until FROM ferry_revocation_rules
                     WHERE txid >= $1 AND keep_until >= $2",
                    &params,
                ),
                c.query(
                    "SELECT hash, sealed, exp FROM ferry_reference_handles WHERE txid >= $1 AND exp >= $2",
                    &params,
                ),
            )
            .map_err(err)?;
            let mut listing = Listing::default();
            for r in &jtis {
                listing.add_jti(&r.get::<_, String>(0), r.get(1));
            }
            for r in &rules {
                if let Some(kind) = kind_of(r.get(0)) {
                    listing.add_rule(Rule {
                        kind,
                        value: r.get(1),
                        before: r.get(2),
                        until: r.get(3),
                    });
                }
            }
            let handles = handles
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        StoredHandle {
                            sealed: r.get(1),
                            exp: r.get(2),
                        },
                    )
                })
                .collect();
            Ok(Changes {
                listing,
                handles,
                next: Cursor(next),
            })
        })
        .await
    }

    async fn revoke_jti(&self, jti: &str, exp: i64, now: i64) -> Result<(), StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            let err = |e: tokio_postgres::Error| self.error(&e);
            c.execute(
                "DELETE FROM ferry_revoked_jtis WHERE exp < $1",
                &[&(now - PRUNE_MARGIN)],
            )
            .await
            .map_err(err)?;
            c.execute(
                "INSERT INTO ferry_revoked_jtis (jti, exp) VALUES ($1, $2)
                 ON CONFLICT (jti) DO UPDATE
                 SET exp = GREATEST(ferry_revoked_jtis.exp, EXCLUDED.exp), txid = txid_current()",
                &[&jti, &exp],
            )
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn add_rule(&self, rule: &Rule, now: i64) -> Result<(), StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            let err = |e: tokio_postgres::Error| self.error(&e);
            c.execute(
                "DELETE FROM ferry_revocation_rules WHERE keep_until < $1",
                &[&(now - PRUNE_MARGIN)],
            )
            .await
            .map_err(err)?;
            c.execute(
                "INSERT INTO ferry_revocation_rules (kind, value, issued_before, keep_until)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kind, value, issued_before) DO UPDATE
                 SET keep_until = GREATEST(ferry_revocation_rules.keep_until, EXCLUDED.keep_until),
                     txid = txid_current()",
                &[
                    &kind_name(rule.kind),
                    &rule.value,
                    &rule.before,
                    &rule.until,
                ],
            )
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn put_handle(
        &self,
        hash: &str,
        handle: &StoredHandle,
        now: i64,
        cap: usize,
    ) -> Result<(), HandleError> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let stored = self
            .bounded(async {
                let c = self.client().await?;
                if self.try_put(&c, hash, handle, cap).await? {
                    return Ok(true);
                }
                // Full: drop the expired ones (and their count, in the same statement),
                // then try once more.
                c.execute(
                    "WITH d AS (DELETE FROM ferry_reference_handles WHERE exp < $1 RETURNING 1)
                     UPDATE ferry_reference_handle_count SET live = live - (SELECT count(*) FROM d)
                     WHERE id = 1",
                    &[&now],
                )
                .await
                .map_err(|e| self.error(&e))?;
                self.try_put(&c, hash, handle, cap).await
            })
            .await
            .map_err(HandleError::Unavailable)?;
        if stored {
            Ok(())
        } else {
            Err(HandleError::Full)
        }
    }
}
