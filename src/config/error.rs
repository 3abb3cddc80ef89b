//! A config error as a value: which key, on which line where the file says, and what is wrong.
//! Callers and tests read the key and the problem; the one line an owner sees is rendered from
//! them (`line 10, transport.security: unknown variant "ssl", ...`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key as the file writes it (`transport.security`, `bots[0] (id = "sales").to`); empty
    /// when the error is about no one key (TOML that does not parse).
    pub key: String,
    pub line: Option<usize>,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { key: key.into(), line: None, problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}, ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ConfigError {}
