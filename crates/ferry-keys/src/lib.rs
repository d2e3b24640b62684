//! Ferry's own signing keys: the [`Signer`] trait, a software ES256 signer whose key is
//! parsed once, and a local-directory store that creates the key on first start and
//! keeps it across restarts.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod local;
mod signer;

pub use local::{KEY_FILE, load_or_create};
pub use signer::{KeyError, Signer, SoftwareSigner, sign_jwt, thumbprint};
