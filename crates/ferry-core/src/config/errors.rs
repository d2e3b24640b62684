//! Every problem of a configuration, collected with its path, reported at once.

/// Every problem found in a configuration, each with its path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<(String, String)>);

impl ConfigErrors {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push((path.into(), msg.into()));
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (path, msg)) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{path}: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
