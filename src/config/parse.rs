//! The flags' value parsers, and clap's errors turned into the one line that names the flag and
//! its env var.

use std::time::Duration;

use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::Cli;
use crate::error::ConfigError;
use crate::secret::Secret;

/// A secret flag, trimmed (a key read from a file keeps no newline). Checked later, in
/// [`super::settings`], because clap's own error would print the value.
pub(super) fn secret_setting(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s.trim()))
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms, 5m)"))
}

pub(super) fn parse_http_url(s: &str) -> Result<String, String> {
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() < 10 {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

pub(super) fn parse_graph_version(s: &str) -> Result<String, String> {
    let ok = s
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()));
    if ok { Ok(s.to_owned()) } else { Err("must look like v26.0".into()) }
}

pub(super) fn exit_with(err: clap::Error) -> ! {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        _ => {
            eprintln!("{}", ConfigError(one_line(&err)));
            std::process::exit(2)
        }
    }
}

/// clap's first error line followed by the env var of the
/// flag it is about.
pub(super) fn one_line(err: &clap::Error) -> String {
    let rendered = err.to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    let env = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => env_of(arg),
        _ => None,
    };
    match env {
        Some(env) => format!("{first} [{env}]"),
        None => format!("{first} (see pixelgate --help)"),
    }
}

/// The env var of a flag named like `--listen <ADDR>`.
fn env_of(arg: &str) -> Option<String> {
    let long = arg.trim_start_matches("--").split([' ', '=']).next()?;
    let cmd = Cli::command();
    let mut args = cmd.get_arguments().chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()));
    args.find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned())
}
