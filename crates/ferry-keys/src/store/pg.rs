//! What every PostgreSQL store of Ferry shares (the key store here, the revocation store
//! in the server): parsing a connection string without ever echoing it, TLS (see
//! `pg_tls`), error texts that carry the server's message but never the password, and
//! expand-then-contract schema migrations.
//!
//! Each store records its own migrations in its own table (`Schema::table`), so the key
//! ring and the revocation state may share a database or not, and evolve apart. Every
//! migration records `min_reader`, the oldest schema version a binary may know and still
//! use the database: an expanding migration (a new table, a new column with a default)
//! keeps it, so older replicas keep working beside newer ones during a rollout; a
//! contracting one (dropping what the previous release still read), shipped a release
//! later, raises it. A binary that finds a schema it cannot read refuses to start.

use std::time::Duration;

use tokio_postgres::Client;

pub use super::pg_tls::MakeRustls;
use crate::signer::KeyError;

/// A migration: its version, the oldest schema version a binary must know to use the
/// database once it is applied, what it does, and its SQL.
#[derive(Debug)]
pub struct Migration {
    /// The schema version it produces.
    pub version: i32,
    /// `min_reader` once applied.
    pub min_reader: i32,
    /// For the table and the logs.
    pub description: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// One store's schema.
#[derive(Debug)]
pub struct Schema {
    /// For logs and errors ("key store").
    pub name: &'static str,
    /// The table its applied migrations are recorded in.
    pub table: &'static str,
    /// The advisory lock serialising replicas that migrate at once.
    pub lock: i64,
    /// The version this binary writes and reads.
    pub version: i32,
    /// Every migration, in order.
    pub migrations: &'static [Migration],
}

/// Parses `url` (a `postgres://` URL or a libpq key=value string), bounds connecting by
/// `timeout` and names the application; returns it with `host:port/dbname` for messages.
pub fn config(url: &str, timeout: Duration) -> Result<(tokio_postgres::Config, String), KeyError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
        // The parser's message may quote the string, password included.
        KeyError::Store("the PostgreSQL connection string is not valid".into())
    })?;
    config.connect_timeout(timeout);
    if config.get_application_name().is_none() {
        config.application_name("ferry");
    }
    let target = describe(&config);
    Ok((config, target))
}

/// `host:port/dbname` of a connection string, for messages: never the password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// A PostgreSQL error for logs: the server's message and the cause chain, never the
/// connection string or its password (never sent to clients either way).
pub fn pg_error(e: &tokio_postgres::Error) -> KeyError {
    // The Display of a database error carries the server's message only; the
    // connection string (and its password) never appears in it.
    match e.as_db_error() {
        Some(db) => KeyError::Store(format!(
            "PostgreSQL: {}: {}",
            db.code().code(),
            db.message()
        )),
        None => {
            // The cause (a refused certificate, a refused connection) is in the chain.
            let mut text = format!("PostgreSQL: {e}");
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            KeyError::Store(text)
        }
    }
}

/// What [`migrate`] found: the versions it applied, or the newer schema it left alone
/// as `(version, min_reader)`.
pub type Outcome = Result<Vec<i32>, (i32, i32)>;

/// Brings `schema` up to date in one transaction, under its advisory lock.
pub async fn migrate(
    client: &mut Client,
    schema: &Schema,
) -> Result<Outcome, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema.lock])
        .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} (
             version integer PRIMARY KEY,
             min_reader integer NOT NULL,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
        schema.table
    ))
    .await?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT version, min_reader FROM {} ORDER BY version DESC LIMIT 1",
                schema.table
            ),
            &[],
        )
        .await?;
    let (current, min_reader) = row
        .map(|r| (r.get::<_, i32>(0), r.get::<_, i32>(1)))
        .unwrap_or((0, 0));
    if current > schema.version {
        tx.rollback().await?;
        return Ok(Err((current, min_reader)));
    }
    let mut applied = Vec::new();
    for m in schema.migrations.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            &format!(
                "INSERT INTO {} (version, min_reader, description) VALUES ($1, $2, $3)",
                schema.table
            ),
            &[&m.version, &m.min_reader, &m.description],
        )
        .await?;
        applied.push(m.version);
    }
    tx.commit().await?;
    Ok(Ok(applied))
}

/// Logs what [`migrate`] did, or refuses a schema this binary cannot read.
pub fn report(schema: &Schema, outcome: Outcome) -> Result<(), KeyError> {
    let (name, known) = (schema.name, schema.version);
    match outcome {
        Ok(applied) => {
            for v in applied {
                tracing::info!(version = v, "{name}: schema migration applied");
            }
            Ok(())
        }
        Err((current, min_reader)) if min_reader <= known => {
            tracing::warn!(
                schema = current,
                known,
                "{name}: the database schema is newer than this binary but still readable by it (an upgrade is under way)"
            );
            Ok(())
        }
        Err((current, min_reader)) => Err(KeyError::Store(format!(
            "the {name}'s schema is version {current}, which only Ferry releases knowing schema {min_reader} or later can use; \
             this binary knows schema {known}: upgrade Ferry before pointing it at this database"
        ))),
    }
}
