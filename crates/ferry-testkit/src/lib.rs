//! Test helpers: fixture keys, token minting (including deliberately broken tokens) and
//! a mock identity provider serving discovery and a JWKS on `127.0.0.1:0`.
//! Never a dependency of production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod idp;
pub mod keys;
pub mod mint;
pub mod postgres;

pub use idp::MockIdp;
pub use keys::TestKey;
pub use mint::Issuer;
pub use postgres::Postgres;

/// Seconds since the Unix epoch, for tests that need the real time.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
