//! The command line and environment (`docs/configuration.md`): every flag has an env var
//! `PIXELGATE_<FLAG>`; a flag beats its env var, which beats the default. A bad or
//! contradictory setting stops start-up with one line that names the flag and its env var.
//!
//! The flags are declared here, in one place, so `--help` reads as one list; what they mean is
//! each room's own settings, which [`settings`] builds from them.

mod parse;
mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use self::parse::{exit_with, one_line, parse_duration, parse_graph_version, parse_http_url, secret_setting};
use crate::api::cli::{AccountsCommand, KeysCommand, PixelsCommand, RegistryCommand};
use crate::error::ConfigError;
use crate::pipeline::{DEFAULT_MAX_HIT_BYTES, DEFAULT_MAX_QUEUED_BYTES};
use crate::runtime::lambda::inputs::EventNames;
use crate::secret::Secret;
use crate::sink::firehose::{MAX_RECORD_BYTES, MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES, encoded_len};
use crate::telemetry::LogFormat;
use crate::tokens::StoreKind;
use crate::tokens::cli::TokensCommand;

/// pixelgate: a first-party tracking-pixel endpoint. Answers `/p.gif`, `/tr` and `/tr/` with a
/// transparent GIF and writes one raw record per hit.
#[derive(Debug, Parser)]
#[command(name = "pixelgate", version, propagate_version = true)]
pub struct Cli {
    /// Settings every command shares.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Settings of the server; accepted after `serve` or, since the server is the default
    /// command, on their own.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// What to run; the server when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default command). Under AWS Lambda (AWS_LAMBDA_RUNTIME_API set)
    /// the bare binary runs the Lambda runtime instead, with the same settings.
    Serve,
    /// Manage Conversions API access tokens (works while a server runs on the same store).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Manage accounts (the businesses on this instance); JSON bodies on stdin.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Manage API keys; a new key is printed once.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Register pixels to accounts and change their settings; JSON bodies on stdin.
    #[command(subcommand)]
    Pixels(PixelsCommand),
    /// Print the audit log of changes, newest first.
    Audit {
        /// acc_…; without it, the host's own entries.
        #[arg(long)]
        account_id: Option<String>,
    },
}

impl Command {
    /// The registry command this is, if it is one.
    pub fn registry(&self) -> Option<RegistryCommand<'_>> {
        match self {
            Command::Accounts(c) => Some(RegistryCommand::Accounts(c)),
            Command::Keys(c) => Some(RegistryCommand::Keys(c)),
            Command::Pixels(c) => Some(RegistryCommand::Pixels(c)),
            Command::Audit { account_id } => Some(RegistryCommand::Audit(account_id.as_deref())),
            _ => None,
        }
    }
}

/// Flags every command shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Pixel and admin HTTP address.
    #[arg(long, env = "PIXELGATE_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR", global = true)]
    pub listen: SocketAddr,
    /// Prometheus /metrics address, separate so it is never public by accident.
    #[arg(long, env = "PIXELGATE_METRICS_LISTEN", default_value = "127.0.0.1:9464", value_name = "ADDR", global = true)]
    pub metrics_listen: SocketAddr,
    /// Where the embedded stores live (raw records under <DIR>/raw).
    #[arg(long, env = "PIXELGATE_DATA_DIR", default_value = "./data", value_name = "DIR", global = true)]
    pub data_dir: PathBuf,
    /// Raw-record sink: NDJSON files under <data-dir>/raw, or Kinesis Data Firehose.
    #[arg(long, env = "PIXELGATE_SINK", value_enum, default_value_t = SinkKind::File, global = true)]
    pub sink: SinkKind,
    /// Firehose delivery stream name (required with --sink firehose).
    #[arg(long, env = "PIXELGATE_FIREHOSE_STREAM", value_name = "NAME", global = true)]
    pub firehose_stream: Option<String>,
    /// Access-token store: embedded under <data-dir>, or DynamoDB.
    #[arg(long, env = "PIXELGATE_TOKENS", value_enum, default_value_t = StoreKind::Local, global = true)]
    pub tokens: StoreKind,
    /// DynamoDB table (required with --tokens dynamodb).
    #[arg(long, env = "PIXELGATE_DYNAMODB_TABLE", value_name = "TABLE", global = true)]
    pub dynamodb_table: Option<String>,
    /// How long a server keeps using a cached access token before reading the store again.
    #[arg(long, env = "PIXELGATE_TOKEN_TTL", default_value = "300s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub token_ttl: Duration,
    /// How long a server remembers that a pixel has no usable token (none, or invalid).
    #[arg(long, env = "PIXELGATE_TOKEN_NEGATIVE_TTL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub token_negative_ttl: Duration,
    /// Conversions API base URL.
    #[arg(long, env = "PIXELGATE_GRAPH_URL", default_value = "https://graph.facebook.com", value_name = "URL", value_parser = parse_http_url, global = true)]
    pub graph_url: String,
    /// Graph API version.
    #[arg(long, env = "PIXELGATE_GRAPH_VERSION", default_value = "v26.0", value_name = "VERSION", value_parser = parse_graph_version, global = true)]
    pub graph_version: String,
    /// How many X-Forwarded-For hops to trust; 0 = the socket peer is the client.
    #[arg(long, env = "PIXELGATE_TRUSTED_PROXIES", default_value_t = 0, value_name = "N", global = true)]
    pub trusted_proxies: usize,
    /// Host administrator key for the admin API; unset = the admin API answers 404.
    #[arg(long, env = "PIXELGATE_ADMIN_KEY", hide_env_values = true, value_name = "KEY", value_parser = secret_setting, global = true)]
    pub admin_key: Option<Secret>,
    /// Key sealing tokens and other secrets at rest: 32 bytes, base64 (`openssl rand -base64 32`).
    /// Required with --tokens dynamodb (the same on every instance); without it the embedded
    /// store uses <data-dir>/secrets.key, created on first start.
    #[arg(long, env = "PIXELGATE_SECRETS_KEY", hide_env_values = true, value_name = "BASE64", value_parser = secret_setting, global = true)]
    pub secrets_key: Option<Secret>,
    /// How long a server keeps a pixel's settings, a key's check and the list of registered pixels
    /// before reading the store again (revocation and settings changed elsewhere show within it).
    #[arg(long, env = "PIXELGATE_REGISTRY_TTL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub registry_ttl: Duration,
    /// Let accounts' webhooks reach loopback, private and link-local addresses and plain http
    /// (tests, private deployments). Off: https to public addresses only (`docs/notifications.md`).
    #[arg(long, env = "PIXELGATE_ALLOW_PRIVATE_WEBHOOKS", global = true)]
    pub allow_private_webhooks: bool,
    /// Log format.
    #[arg(long, env = "PIXELGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax): `info`, `debug`, `pixelgate=debug,hyper=info`, …
    /// Nothing is logged per request below `debug`.
    #[arg(long, env = "PIXELGATE_LOG_LEVEL", default_value = "info", value_name = "FILTER", global = true)]
    pub log_level: String,
}

/// Flags of the server (`pixelgate` or `pixelgate serve`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Client connections served at once; more wait in the listen backlog.
    #[arg(long, global = true, env = "PIXELGATE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_connections: u32,
    /// Time a connection gets to send a complete request head (also the keep-alive idle limit).
    #[arg(long, global = true, env = "PIXELGATE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub header_read_timeout: Duration,
    /// Largest POST body read, in bytes; larger bodies are ignored and flagged `oversize`.
    #[arg(long, global = true, env = "PIXELGATE_MAX_BODY_BYTES", default_value_t = 64 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Hits (records, for the sink) that may wait in one outlet's queue; beyond this, they are
    /// dropped and counted (shed, for forwarding).
    #[arg(long, global = true, env = "PIXELGATE_QUEUE_CAPACITY", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub queue_capacity: u32,
    /// Bytes of hits that may wait for the raw-record sink, whatever their count; beyond this,
    /// hits are dropped and counted.
    #[arg(long, global = true, env = "PIXELGATE_QUEUE_MAX_BYTES", default_value_t = DEFAULT_MAX_QUEUED_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024 * 1024..), value_name = "BYTES")]
    pub queue_max_bytes: u64,
    /// Bytes forwarding may hold for its destinations (hits queued and batched, request bodies
    /// in flight); past it, hits are shed for forwarding only (counted; the raw record is still
    /// written).
    #[arg(long, global = true, env = "PIXELGATE_FORWARD_MAX_BYTES", default_value_t = DEFAULT_MAX_HIT_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024 * 1024..), value_name = "BYTES")]
    pub forward_max_bytes: u64,
    /// Country calling code for phone numbers sent without one (e.g. 1 for the US, 44 for the UK);
    /// unset = such numbers are dropped and flagged `invalid_ph`.
    #[arg(long, global = true, env = "PIXELGATE_DEFAULT_PHONE_COUNTRY", value_parser = clap::value_parser!(u16).range(1..=999), value_name = "CODE")]
    pub default_phone_country: Option<u16>,
    /// The file sink closes a file after this long, so readers see data within it.
    #[arg(long, global = true, env = "PIXELGATE_FILE_ROTATE", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub file_rotate: Duration,
    /// The file sink closes a file once it is this large, in bytes.
    #[arg(long, global = true, env = "PIXELGATE_FILE_MAX_BYTES", default_value_t = 128 * 1024 * 1024, value_name = "BYTES")]
    pub file_max_bytes: u64,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, global = true, env = "PIXELGATE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
    /// Firehose: most records per PutRecordBatch request (the service allows 500).
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_BATCH_RECORDS", default_value_t = MAX_RECORDS_PER_REQUEST as u32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_RECORDS_PER_REQUEST as i64), value_name = "N")]
    pub firehose_batch_records: u32,
    /// Firehose: most bytes per request, records counted base64-encoded (the service allows 4 MiB).
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_BATCH_BYTES", default_value_t = MAX_REQUEST_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(encoded_len(MAX_RECORD_BYTES) as u64..=MAX_REQUEST_BYTES as u64), value_name = "BYTES")]
    pub firehose_batch_bytes: u64,
    /// Firehose: longest time a record waits for its batch to fill.
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_FLUSH_INTERVAL", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub firehose_flush_interval: Duration,
    /// Firehose: PutRecordBatch requests under way at once.
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_MAX_IN_FLIGHT", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "N")]
    pub firehose_max_in_flight: u32,
    /// Firehose: longest wait for one PutRecordBatch answer.
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub firehose_timeout: Duration,
    /// Firehose: wait before the first retry; it doubles (with jitter) up to --firehose-backoff-max.
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_BACKOFF", default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    pub firehose_backoff: Duration,
    /// Firehose: longest wait between two attempts (also the replay's probe interval in an outage).
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_BACKOFF_MAX", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub firehose_backoff_max: Duration,
    /// Firehose: how long a batch is retried before it goes to the disk spool.
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_RETRY_BUDGET", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub firehose_retry_budget: Duration,
    /// Firehose: how long shutdown lets requests finish before it spools what is left.
    #[arg(long, global = true, env = "PIXELGATE_FIREHOSE_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub firehose_shutdown_timeout: Duration,
    /// Most bytes the disk spool under <data-dir>/spool may hold while Firehose is unreachable;
    /// beyond it, records are given up and counted.
    #[arg(long, global = true, env = "PIXELGATE_SPOOL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(MAX_RECORD_BYTES as u64..), value_name = "BYTES")]
    pub spool_max_bytes: u64,
    /// Conversions API: most events per request (Meta's limit is 1,000).
    #[arg(long, global = true, env = "PIXELGATE_CAPI_BATCH_EVENTS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1000), value_name = "N")]
    pub capi_batch_events: u64,
    /// Conversions API: longest an event waits for its batch to fill.
    #[arg(long, global = true, env = "PIXELGATE_CAPI_FLUSH_INTERVAL", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub capi_flush_interval: Duration,
    /// Conversions API: most requests in flight at once (across pixels); the congestion window
    /// stays below it, smaller while Meta is slow or throttles.
    #[arg(long, global = true, env = "PIXELGATE_CAPI_MAX_IN_FLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024), value_name = "N")]
    pub capi_max_in_flight: u64,
    /// Conversions API: how much longer a request may take for each event it carries beyond the
    /// first (a full batch of 1,000 waits --capi-timeout + 999 x this).
    #[arg(long, global = true, env = "PIXELGATE_CAPI_TIMEOUT_PER_EVENT", default_value = "1ms", value_parser = parse_duration, value_name = "DURATION")]
    pub capi_timeout_per_event: Duration,
    /// Conversions API: how long a request of one event may take before it counts as failed and
    /// is retried.
    #[arg(long, global = true, env = "PIXELGATE_CAPI_TIMEOUT", default_value = "1500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub capi_timeout: Duration,
    /// Conversions API: how long an event is retried before it is given up (as a delivery record).
    #[arg(long, global = true, env = "PIXELGATE_CAPI_RETRY_BUDGET", default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub capi_retry_budget: Duration,
    /// Conversions API: how long shutdown lets requests finish before it gives the rest up (as delivery records).
    #[arg(long, global = true, env = "PIXELGATE_CAPI_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub capi_shutdown_timeout: Duration,
    /// Under Lambda, an EventBridge event whose `detail` names no event gets its `detail-type` as
    /// the event name, through this map: `ProfileViewed=PageView,LinkClicked=ViewContent`.
    #[arg(long, global = true, env = "PIXELGATE_EVENT_NAME_MAP", default_value = "", value_parser = EventNames::parse, value_name = "TYPE=NAME,…")]
    pub event_name_map: EventNames,
    /// An EventBridge bus that gets a notice when a destination calls a pixel's credentials
    /// invalid (once per state change; `docs/notifications.md`). Unset: no notices.
    #[arg(long, global = true, env = "PIXELGATE_NOTIFY_EVENT_BUS", value_name = "NAME")]
    pub notify_event_bus: Option<String>,
}

/// Raw-record sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// NDJSON files under <data-dir>/raw.
    File,
    /// Amazon Kinesis Data Firehose.
    Firehose,
}

/// `--data-dir` when Lambda runs the binary and none is given.
pub const LAMBDA_DATA_DIR: &str = "/tmp/pixelgate";

impl Cli {
    /// Parses the command line, exiting after `--help`/`--version`, and with one line and status 2
    /// on a bad setting.
    pub fn parse_or_exit() -> Cli {
        match Cli::command().try_get_matches().and_then(|m| Cli::from_matches(&m)) {
            Ok(cli) => cli,
            Err(err) => exit_with(err),
        }
    }

    /// The settings from parsed arguments, with the defaults that differ under Lambda
    /// (`docs/configuration.md#under-lambda`):
    /// `--data-dir` is `/tmp/pixelgate`, the only writable place there.
    fn from_matches(matches: &clap::ArgMatches) -> Result<Cli, clap::Error> {
        let mut cli = Cli::from_arg_matches(matches)?;
        if crate::runtime::lambda::is_lambda() && matches.value_source("data_dir") == Some(clap::parser::ValueSource::DefaultValue) {
            cli.global.data_dir = PathBuf::from(LAMBDA_DATA_DIR);
        }
        Ok(cli)
    }

    /// Parses `args` (for tests and embedding).
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::command().try_get_matches_from(args).and_then(|m| Cli::from_matches(&m)).map_err(|e| ConfigError(one_line(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_flag_and_env_in_one_line() {
        let err = Cli::try_parse_args(["pixelgate", "--listen", "nope"]).unwrap_err().to_string();
        assert!(err.starts_with("pixelgate: invalid value 'nope' for '--listen <ADDR>'"), "{err}");
        assert!(err.ends_with("[PIXELGATE_LISTEN]"), "{err}");
        assert!(!err.contains('\n'));
        let err = Cli::try_parse_args(["pixelgate", "serve", "--header-read-timeout", "soon"]).unwrap_err().to_string();
        assert!(err.ends_with("[PIXELGATE_HEADER_READ_TIMEOUT]"), "{err}");
    }

    #[test]
    fn contradictions_are_reported() {
        let cli = Cli::try_parse_args(["pixelgate", "--sink", "firehose"]).unwrap();
        assert!(cli.settings().unwrap_err().to_string().contains("--firehose-stream [PIXELGATE_FIREHOSE_STREAM]"));
        let cli = Cli::try_parse_args(["pixelgate", "--metrics-listen", "127.0.0.1:8080"]).unwrap();
        assert!(cli.settings().is_err());
    }

    #[test]
    fn tokens_commands_parse_and_check_the_pixel_id() {
        let cli = Cli::try_parse_args(["pixelgate", "tokens", "status", "123", "--token-ttl", "5m"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Tokens(TokensCommand::Status { ref pixel_id })) if pixel_id.as_str() == "123"));
        assert_eq!((cli.global.token_ttl, cli.global.token_negative_ttl), (Duration::from_secs(300), Duration::from_secs(30)));
        let err = Cli::try_parse_args(["pixelgate", "tokens", "set", "12ab"]).unwrap_err().to_string();
        assert!(err.contains("1-32 digits") && !err.contains('\n'), "{err}");
        let cli = Cli::try_parse_args(["pixelgate", "--tokens", "dynamodb"]).unwrap();
        assert!(cli.store_settings().validate().unwrap_err().to_string().contains("--dynamodb-table [PIXELGATE_DYNAMODB_TABLE]"));
        assert!(cli.settings().is_err());
        let cli = Cli::try_parse_args(["pixelgate", "--tokens", "dynamodb", "--dynamodb-table", "t"]).unwrap();
        assert!(cli.store_settings().validate().unwrap_err().to_string().contains("--secrets-key [PIXELGATE_SECRETS_KEY]"), "a shared table needs a shared secrets key");
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let cli = Cli::try_parse_args(["pixelgate", "--tokens", "dynamodb", "--dynamodb-table", "t", "--secrets-key", key]).unwrap();
        cli.store_settings().validate().unwrap();
        cli.settings().unwrap();
        let cli = Cli::try_parse_args(["pixelgate", "--secrets-key", "c2hvcnQ="]).unwrap();
        assert!(cli.store_settings().validate().unwrap_err().to_string().contains("32 bytes"));
        assert!(!format!("{cli:?}").contains(key) && !format!("{cli:?}").contains("c2hvcnQ="), "the key never prints");
    }

    #[test]
    fn the_admin_key_never_prints() {
        let cli = Cli::try_parse_args(["pixelgate", "--admin-key", "supersecretadminkey"]).unwrap();
        assert!(!format!("{cli:?}").contains("supersecret"));
        // A key that is too short is refused without echoing it.
        let cli = Cli::try_parse_args(["pixelgate", "--admin-key", "shortsecret"]).unwrap();
        let err = cli.settings().unwrap_err().to_string();
        assert!(err.contains("--admin-key [PIXELGATE_ADMIN_KEY]") && !err.contains("shortsecret"), "{err}");
    }
}
