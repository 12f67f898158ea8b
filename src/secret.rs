//! Secrets (the admin key, Conversions API access tokens): values that `Debug` never prints and
//! that no log line, metric, record or answer may carry.

use std::fmt;

/// A secret value: never printed by `Debug`; read it only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret without validating it (e.g. an access token read from a store).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, to compare or to put in a request body; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}
