//! Durations in the configuration, with their errors collected.

use super::errors::ConfigErrors;
use crate::duration::parse_secs;

pub(super) fn duration(
    errs: &mut ConfigErrors,
    path: &str,
    value: Option<&String>,
    default: u64,
) -> u64 {
    match value {
        None => default,
        Some(v) => parse_secs(v).unwrap_or_else(|e| {
            errs.push(path, e);
            default
        }),
    }
}

pub(super) fn opt_duration(
    errs: &mut ConfigErrors,
    path: &str,
    value: Option<&String>,
) -> Option<u64> {
    value.and_then(|v| match parse_secs(v) {
        Ok(s) if s > 0 => Some(s),
        Ok(_) => {
            errs.push(path, "must be greater than zero");
            None
        }
        Err(e) => {
            errs.push(path, e);
            None
        }
    })
}
