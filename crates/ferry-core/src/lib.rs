//! Ferry's domain, free of I/O: the configuration model and its validation, the typed
//! token request, OAuth errors, CEL mapping and access policy, and the claims of the
//! tokens Ferry mints. Time and randomness are passed in, so every rule here is a pure
//! function that tests can drive with a fake clock.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod binding;
pub mod boundary;
pub mod clock;
pub mod config;
pub mod custom_claims;
pub mod decision;
pub mod delegation;
pub mod duration;
pub mod error;
pub mod expr;
pub mod form;
pub mod keyring;
pub mod mapping;
pub mod mint;
pub mod narrow;
pub mod policy;
pub mod request;
pub mod response;
pub mod rule_vars;
pub mod token_types;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::{ErrorCode, OAuthError, Step};
