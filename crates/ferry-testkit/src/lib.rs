//! Test helpers: fixture keys, token minting (including deliberately broken tokens) and
//! a mock identity provider serving discovery and a JWKS on `127.0.0.1:0`.
//! Never a dependency of production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::disallowed_methods,
    reason = "test support, never shipped: a panic is a failed test, and tests wait on real time"
)]

pub mod idp;
pub mod keys;
pub mod mint;
pub mod postgres;
pub mod proxy;
pub mod saml;

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

/// A port for a daemon that cannot listen on port 0 and say where (redis-server,
/// PostgreSQL): a random one in 20000–32767, below Linux's ephemeral range (32768–60999
/// by default), so no outgoing connection holds it. Nothing binds it here: the daemon
/// binds it itself, and the caller tries another port when the daemon reports it in
/// use. (A port found by binding `127.0.0.1:0` and releasing it is in the ephemeral
/// range, and any process can take it before the daemon binds it.)
pub fn daemon_port() -> u16 {
    let mut b = [0u8; 2];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    20_000 + u16::from_le_bytes(b) % 12_768
}

/// SHA-256 of `s`, lower-case hex (as client secrets are registered).
pub fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
