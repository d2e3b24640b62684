//! Black-box tests: the real `ferry` and `ferry-dev-idp` binaries on loopback. Ferry
//! starts through `harness::Setup`, on a socket the test bound and hands over (socket
//! activation), so a configuration can name Ferry's URL; no port is picked by binding and
//! releasing a socket. Nothing here reaches beyond loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::disallowed_methods,
    reason = "tests: a panic is a failed test, scenarios read top to bottom, and waits use real time"
)]

mod harness;

mod accounts;
mod activation;
mod admin;
mod attacks;
mod cert_header;
mod claims;
mod cli;
mod confusion;
mod delegation;
mod derived;
mod dev_idp_saml;
mod docs;
mod downscope;
mod dpop;
mod durable_revocation;
mod exchange;
mod google_path;
mod house;
mod http_limits;
mod issuers;
mod kek_rollout;
mod keys;
mod limits;
mod monitoring;
mod mtls;
mod mtls_clients;
mod ops;
mod otlp;
mod outage;
mod phantom;
mod pipeline;
mod policy;
mod private_issuers;
mod proxies;
mod reload;
mod replay;
mod replay_loss;
mod review;
mod revocation;
mod revocation_ttl;
mod rollout;
mod sa_direct;
mod sa_jwks;
mod saml;
mod scaleout;
mod secrets;
mod shedding;
mod split;
mod ssrf;
mod storms;
mod traps;
mod x509;
