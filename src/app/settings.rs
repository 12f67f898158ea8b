//! Everything the app is built from, gathered from each room's own settings. The command line
//! fills it (`Cli::settings`); tests and embedders may build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::edge::BodyLimits;
use crate::forward::ForwardConfig;
use crate::forward::meta::MetaConfig;
use crate::params::ParseSettings;
use crate::registry::{DirectorySettings, WebhookPolicy};
use crate::runtime::lambda::inputs::EventNames;
use crate::runtime::lambda::{CAPI_SHUTDOWN_CAP, FIREHOSE_SHUTDOWN_CAP};
use crate::runtime::server::ServerOptions;
use crate::secret::Secret;
use crate::sink::SinkSettings;
use crate::tokens::{CacheSettings, StoreSettings};

/// The app's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pixel and admin HTTP address.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` address.
    pub metrics_listen: SocketAddr,
    /// Where the embedded stores live.
    pub data_dir: PathBuf,
    /// Transport limits of the pixel listener.
    pub server: ServerOptions,
    /// Parameter limits and personal-data rules.
    pub parse: ParseSettings,
    /// How many `X-Forwarded-For` hops to trust.
    pub trusted_proxies: usize,
    /// Bounds on POST bodies.
    pub body: BodyLimits,
    /// Hits (records, for a raw-record outlet) that may wait in one outlet queue.
    pub queue_capacity: usize,
    /// Bytes of what may wait for the raw-record sink.
    pub queue_max_bytes: usize,
    /// Bytes forwarding may hold (queued, batched, in flight); past it, hits are shed for
    /// forwarding only.
    pub forward_max_bytes: usize,
    /// The raw-record sink.
    pub sink: SinkSettings,
    /// Where access tokens are stored.
    pub tokens: StoreSettings,
    /// How long tokens are cached.
    pub token_cache: CacheSettings,
    /// Forwarding, whatever the destination.
    pub forward: ForwardConfig,
    /// Meta's Graph API.
    pub meta: MetaConfig,
    /// The host administrator key; `None` = the admin API is off.
    pub admin_key: Option<Secret>,
    /// The registry's cache lifetime (pixel settings, key checks, the registered set).
    pub registry: DirectorySettings,
    /// Under Lambda: EventBridge detail-types to event names.
    pub event_names: EventNames,
    /// List the pixels with a token and the registered pixels after start-up rather than before
    /// (under Lambda, where the listing would delay the first invocation).
    pub list_in_background: bool,
    /// The EventBridge bus for credentials-invalidated notices, if any.
    pub notify_event_bus: Option<String>,
    /// Where accounts' webhooks may point.
    pub webhooks: WebhookPolicy,
}

impl Settings {
    /// The settings as they apply under Lambda: shutdown timeouts clamped to fit in the 500 ms
    /// Lambda gives between `SIGTERM` and `SIGKILL`.
    pub fn for_lambda(mut self) -> Settings {
        self.forward.shutdown_timeout = self.forward.shutdown_timeout.min(CAPI_SHUTDOWN_CAP);
        if let SinkSettings::Firehose(firehose) = &mut self.sink {
            firehose.shutdown_timeout = firehose.shutdown_timeout.min(FIREHOSE_SHUTDOWN_CAP);
            firehose.check_in_background = true;
        }
        self.list_in_background = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Cli;
    use crate::runtime::lambda::FIREHOSE_SHUTDOWN_CAP;
    use crate::sink::SinkSettings;

    #[test]
    fn lambda_clamps_shutdown_timeouts_only_downwards() {
        let cli = Cli::try_parse_args(["pixelgate", "--capi-shutdown-timeout", "100ms", "--sink", "firehose", "--firehose-stream", "s"]).unwrap();
        let settings = cli.settings().unwrap().for_lambda();
        assert_eq!(settings.forward.shutdown_timeout, Duration::from_millis(100));
        let SinkSettings::Firehose(firehose) = settings.sink else { panic!("the Firehose sink") };
        assert_eq!(firehose.shutdown_timeout, FIREHOSE_SHUTDOWN_CAP);
    }
}
