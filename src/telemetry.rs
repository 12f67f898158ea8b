//! Logging through `tracing`: human-readable lines by default, JSON with `--log-format json`,
//! always to standard error. Nothing is logged per request below `debug`.

use tracing_subscriber::EnvFilter;

use crate::error::ConfigError;

/// Log output formats (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Fails on a filter that does not parse.
pub fn init(format: LogFormat, filter: &str) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(filter).map_err(|e| ConfigError(format!("invalid value '{filter}' for '--log-level <FILTER>': {e} [PIXELGATE_LOG_LEVEL]")))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (a test harness or an embedding program): keep theirs.
    let _ = result;
    Ok(())
}

/// An error and its sources on one line (for logs and answers; never the raw response an SDK
/// error may carry).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
