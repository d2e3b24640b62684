//! ferry-keys
