//! Regexes for `matches()`, compiled once: the literal patterns of every expression at
//! load, others on first use (at most [`MAX_DYNAMIC_REGEXES`] kept).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most regexes kept for patterns that were not literals at load.
const MAX_DYNAMIC_REGEXES: usize = 256;

#[derive(Debug, Default)]
pub(super) struct Regexes(RwLock<HashMap<String, Arc<regex::Regex>>>);

impl Regexes {
    pub(super) fn get(&self, pattern: &str) -> Result<Arc<regex::Regex>, super::error::ExprError> {
        if let Some(r) = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pattern)
        {
            return Ok(r.clone());
        }
        let compiled = Arc::new(regex::Regex::new(pattern)?);
        let mut map = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() < MAX_DYNAMIC_REGEXES {
            map.insert(pattern.to_owned(), compiled.clone());
        }
        Ok(compiled)
    }
}
