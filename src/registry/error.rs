//! What a registry call answers when it does not do what was asked; the API turns each kind into
//! one status and a `{"error":…}` body, the CLI into one line.

use crate::tokens::StoreError;

/// A registry call's failure. Messages never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The request is wrong; the message names the field (`400`).
    #[error("{0}")]
    Invalid(String),
    /// Not there, or not there for this key: the same message either way (`404`).
    #[error("{0}")]
    NotFound(String),
    /// Known to this key, which may not do this (`403`).
    #[error("{0}")]
    Forbidden(String),
    /// In the way of something else (`409`).
    #[error("{0}")]
    Conflict(String),
    /// The store failed; nothing was written (`503`).
    #[error("{0}; try again shortly")]
    Unavailable(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::Unavailable(e.to_string())
    }
}

impl RegistryError {
    /// A `400` about `field`.
    pub fn field(field: &str, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::Invalid(format!("{field}: {message}"))
    }
}
