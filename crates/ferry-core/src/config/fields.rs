//! Field checks every section shares: ids, and CEL expressions compiled with their
//! errors collected under the field's path.

use super::errors::ConfigErrors;
use crate::expr::{Cel, Expr};

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(super) fn compile(
    errs: &mut ConfigErrors,
    cel: &Cel,
    path: &str,
    src: &str,
    vars: &[&str],
) -> Option<Expr> {
    cel.compile_shared(src, vars)
        .map_err(|e| errs.push(path, e.to_string()))
        .ok()
}
