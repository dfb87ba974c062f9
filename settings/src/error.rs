//! [`ConfigError`]: a configuration value that cannot be used.

/// A configuration value that cannot be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or TOML key, or `providers[i].field`) at
    /// fault.
    pub variable: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl ConfigError {
    /// An error about `variable`.
    #[must_use]
    pub fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}
