//! The error that stops start-up or a command because of a setting: one line that names the
//! flag and its env var, printed as it is, exit status 2 (`docs/configuration.md#flags`).

/// A setting that stops start-up, as one line naming the flag and its env var.
#[derive(Debug, thiserror::Error)]
#[error("pixelgate: {0}")]
pub struct ConfigError(pub String);
