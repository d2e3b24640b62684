//! The PostgreSQL store's schema, as migrations applied in order (see `postgres` for the
//! expand-then-contract rule every one of them follows).

use super::pg::Migration;

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: i32 = 4;

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        min_reader: 1,
        description: "key ring and its write history",
        sql: "CREATE TABLE ferry_key_ring (
              id integer PRIMARY KEY CHECK (id = 1),
              version bigint NOT NULL,
              written_by text NOT NULL,
              written_at timestamptz NOT NULL DEFAULT now(),
              keys jsonb NOT NULL
          );
          INSERT INTO ferry_key_ring (id, version, written_by, keys) VALUES (1, 0, '', '[]');
          CREATE TABLE ferry_key_ring_history (
              version bigint PRIMARY KEY,
              written_by text NOT NULL,
              written_at timestamptz NOT NULL DEFAULT now(),
              keys jsonb NOT NULL
          );",
    },
    // Expanding: a column with a default. Binaries knowing schema 1 still run beside
    // this one (they neither read nor overwrite it), so `min_reader` stays 1.
    Migration {
        version: 2,
        min_reader: 1,
        description: "keys revoked in an emergency",
        sql: "ALTER TABLE ferry_key_ring ADD COLUMN revoked jsonb NOT NULL DEFAULT '[]'",
    },
    // Expanding, like 2: binaries knowing schema 1 or 2 neither read nor overwrite it.
    Migration {
        version: 3,
        min_reader: 1,
        description: "the longest token lifetime ever configured",
        sql: "ALTER TABLE ferry_key_ring ADD COLUMN max_issued_ttl bigint NOT NULL DEFAULT 0",
    },
    // Expanding: a table of its own that older binaries never touch. Each replica
    // records the fingerprints of the key-encryption keys it holds (never the keys) with
    // a heartbeat, so that `ferry keys rewrap` can tell whether every live replica could
    // still open the keys it re-seals.
    Migration {
        version: 4,
        min_reader: 1,
        description: "replicas and the key-encryption keys they hold",
        sql: "CREATE TABLE ferry_replicas (
              replica text PRIMARY KEY,
              kek_fingerprints jsonb NOT NULL,
              last_seen timestamptz NOT NULL DEFAULT now()
          )",
    },
];
