//! From the flags to each room's settings ([`Settings`]), checking the combinations the parser
//! cannot; a bad one is a [`ConfigError`] naming the flag and its env var.

use super::{Cli, GlobalArgs, ServeArgs, SinkKind};
use crate::app::Settings;
use crate::batch::BatchLimits;
use crate::edge::BodyLimits;
use crate::error::ConfigError;
use crate::forward::ForwardConfig;
use crate::forward::meta::MetaConfig;
use crate::params::{Limits, ParseSettings};
use crate::pii::PiiRules;
use crate::registry::{DirectorySettings, WebhookPolicy};
use crate::retry::RetryPolicy;
use crate::runtime::server::ServerOptions;
use crate::sink::SinkSettings;
use crate::sink::file::FileSinkConfig;
use crate::sink::firehose::FirehoseConfig;
use crate::tokens::{CacheSettings, StoreSettings};

impl Cli {
    /// The server's settings (also the Lambda runtime's), or the first setting that is wrong.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let (global, serve) = (&self.global, &self.serve);
        global.check()?;
        let tokens = self.store_settings();
        tokens.validate()?;
        Ok(Settings {
            listen: global.listen,
            metrics_listen: global.metrics_listen,
            data_dir: global.data_dir.clone(),
            server: ServerOptions {
                max_connections: serve.max_connections as usize,
                header_read_timeout: serve.header_read_timeout,
                shutdown_grace: serve.shutdown_timeout,
                ..ServerOptions::default()
            },
            parse: ParseSettings { limits: Limits::default(), pii: PiiRules { default_phone_country: serve.default_phone_country } },
            trusted_proxies: global.trusted_proxies,
            body: BodyLimits { max_bytes: serve.max_body_bytes, timeout: serve.header_read_timeout },
            queue_capacity: serve.queue_capacity as usize,
            queue_max_bytes: serve.queue_max_bytes as usize,
            forward_max_bytes: serve.forward_max_bytes as usize,
            sink: sink_settings(global, serve),
            tokens,
            token_cache: CacheSettings { ttl: global.token_ttl, negative_ttl: global.token_negative_ttl, ..CacheSettings::default() },
            forward: ForwardConfig {
                max_batch: serve.capi_batch_events as usize,
                flush_interval: serve.capi_flush_interval,
                max_concurrent_requests: serve.capi_max_in_flight as usize,
                timeout: serve.capi_timeout,
                timeout_per_event: serve.capi_timeout_per_event,
                retry_budget: serve.capi_retry_budget,
                shutdown_timeout: serve.capi_shutdown_timeout,
                ..ForwardConfig::default()
            },
            meta: MetaConfig { graph_url: global.graph_url.clone(), graph_version: global.graph_version.clone() },
            admin_key: global.admin_key.clone(),
            registry: DirectorySettings { ttl: global.registry_ttl, ..DirectorySettings::default() },
            event_names: serve.event_name_map.clone(),
            list_in_background: false,
            notify_event_bus: serve.notify_event_bus.clone().filter(|b| !b.is_empty()),
            webhooks: self.webhook_policy(),
        })
    }

    /// Where accounts' webhooks may point (`--allow-private-webhooks`).
    pub fn webhook_policy(&self) -> WebhookPolicy {
        WebhookPolicy { allow_private: self.global.allow_private_webhooks }
    }

    /// Where the token store is (all the `tokens` commands need).
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            kind: self.global.tokens,
            data_dir: self.global.data_dir.clone(),
            dynamodb_table: self.global.dynamodb_table.clone(),
            secrets_key: self.global.secrets_key.clone(),
        }
    }
}

impl GlobalArgs {
    /// Checks combinations the parser cannot.
    fn check(&self) -> Result<(), ConfigError> {
        if self.admin_key.as_ref().is_some_and(|k| k.expose().len() < 16) {
            return Err(ConfigError("--admin-key [PIXELGATE_ADMIN_KEY] must be at least 16 characters".into()));
        }
        if self.listen == self.metrics_listen && self.listen.port() != 0 {
            return Err(ConfigError(format!(
                "--listen [PIXELGATE_LISTEN] and --metrics-listen [PIXELGATE_METRICS_LISTEN] are both {}; give /metrics its own address",
                self.listen
            )));
        }
        if self.sink == SinkKind::Firehose && self.firehose_stream.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError("--sink firehose needs --firehose-stream [PIXELGATE_FIREHOSE_STREAM]".into()));
        }
        Ok(())
    }
}

/// The raw-record sink `--sink` names, with its flags.
fn sink_settings(global: &GlobalArgs, serve: &ServeArgs) -> SinkSettings {
    match global.sink {
        SinkKind::File => SinkSettings::File(FileSinkConfig { dir: global.data_dir.join("raw"), rotate_after: serve.file_rotate, max_file_bytes: serve.file_max_bytes }),
        SinkKind::Firehose => SinkSettings::Firehose(FirehoseConfig {
            stream: global.firehose_stream.clone().unwrap_or_default(),
            batch: BatchLimits { max_items: serve.firehose_batch_records as usize, max_bytes: serve.firehose_batch_bytes as usize, max_age: serve.firehose_flush_interval },
            max_in_flight: serve.firehose_max_in_flight as usize,
            retry: RetryPolicy {
                attempt_timeout: serve.firehose_timeout,
                backoff_initial: serve.firehose_backoff,
                backoff_max: serve.firehose_backoff_max,
                budget: serve.firehose_retry_budget,
            },
            spool_dir: global.data_dir.join("spool"),
            spool_max_bytes: serve.spool_max_bytes,
            shutdown_timeout: serve.firehose_shutdown_timeout,
            check_in_background: false,
        }),
    }
}
