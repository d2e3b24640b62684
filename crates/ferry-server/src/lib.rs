//! The Ferry server: loading a configuration into a running state, the HTTP routes,
//! the exchange pipeline that ties verify → mapping → policy → mint together, and audit
//! events. Domain rules live in `ferry-core`; verification in `ferry-verify`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod charge;
pub mod cli;
pub mod client_auth;
pub mod client_cert;
pub mod client_cert_header;
pub mod client_mtls;
pub mod dpop;
pub mod errors;
pub mod exposition;
pub mod forwarded;
pub mod ids;
pub mod keysource;
pub mod lifecycle;
pub mod limits;
pub mod listener;
pub mod load;
pub mod metrics;
pub mod metrics_listener;
pub mod nonces;
pub mod own_keys;
pub mod redis;
pub mod reloads;
pub mod repeated;
pub mod replay;
pub mod revocation;
pub mod routes;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod tokens;
pub mod x509_trust;

pub use routes::router;
pub use state::AppState;

pub use ids::{fingerprint, random_id};
