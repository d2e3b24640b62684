//! ferry-verify
