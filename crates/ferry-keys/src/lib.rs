//! Ferry's own signing keys: signers (software keys parsed once; PKCS#11 tokens) behind
//! one trait, key-encryption keys for keys at rest, key stores with compare-and-swap,
//! and the manager that runs the rotating key ring.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod kek;
pub mod manager;
pub mod pkcs11;
mod signer;
pub mod store;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod store_conformance;
#[cfg(test)]
mod tests;

pub use kek::{Kek, KekError, Keks};
pub use manager::{Backend, KekReport, KeyManager, ManagerConfig, Snapshot};
pub use signer::{
    KeyError, Signer, SigningAlg, SoftwareSigner, finish_jwk, p256_jwk, sign_jwt, thumbprint,
};
pub use store::{
    KeyStore, LocalStore, MIGRATIONS, Material, Migration, PgStore, Replica, RevokedKey,
    SCHEMA_VERSION, StoredKey, StoredRing,
};
