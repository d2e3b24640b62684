//! Black-box tests: the real `ferry` and `ferry-dev-idp` binaries on `127.0.0.1:0`.
//! Nothing here reaches beyond loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod accounts;
mod attacks;
mod cli;
mod confusion;
mod delegation;
mod downscope;
mod dpop;
mod exchange;
mod issuers;
mod keys;
mod ops;
mod otlp;
mod phantom;
mod policy;
mod reload;
mod replay;
mod revocation;
mod scaleout;
mod secrets;
mod ssrf;
mod traps;
