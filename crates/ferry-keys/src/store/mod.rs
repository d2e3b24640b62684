//! Key stores: where the ring (lifecycle records and private key material) lives. Every
//! write is a compare-and-swap on the ring's version, so replicas sharing a store never
//! both perform a transition: the loser sees the new version and plans again.

mod local;
mod migrations;
mod model;
pub mod pg;
mod pg_tls;
mod postgres;

pub use local::LocalStore;
pub use migrations::{MIGRATIONS, SCHEMA_VERSION};
pub use model::{KeyStore, Material, Replica, RevokedKey, StoredKey, StoredRing};
pub use pg::Migration;
pub use postgres::PgStore;
