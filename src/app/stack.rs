//! [`Stack`]: everything behind a front door, wired: the raw-record sink, the token store and its
//! cache, the forwarder with its gate, the dispatcher and intake in front of them, and the edge
//! service's state. Both doors (the server and Lambda) build the same stack.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::Settings;
use crate::api::{Api, ApiState};
use crate::edge::{Edge, EdgeService};
use crate::forward::meta::Meta;
use crate::forward::{Deliveries, ForwardStatus, Forwarder, Gate, Wiring};
use crate::notify::{self, Channel, Notifier};
use crate::pipeline::{Budget, Dispatcher, HitOutlet};
use crate::registry::{Directory, KeyCache, Kv, Registry};
use crate::sink::{Health, RunningSink};
use crate::tokens::{TokenCache, TokenStore};

/// How often the last-use times of keys are written to the store.
const KEY_USE_FLUSH: Duration = Duration::from_secs(60);

/// The outlets and the dispatcher in front of them.
pub struct Stack {
    /// The edge service's shared state.
    edge: Arc<Edge>,
    /// Kept to flush or drain the outlets.
    dispatcher: Dispatcher,
    /// The raw-record sink, joined at shutdown.
    sink: RunningSink,
    /// The Meta forwarder, joined at shutdown.
    forwarder: Forwarder,
    /// Keys' last-use times, written at shutdown.
    keys: Arc<KeyCache>,
    /// Notices of credentials gone bad, waited for at shutdown.
    notifier: Option<Notifier>,
    /// How long shutdown waits for notices still being delivered.
    notice_wait: Duration,
}

impl Stack {
    /// Starts the sink, opens the token store and starts the forwarder. Fails with a message
    /// naming the setting that is wrong.
    pub async fn start(settings: &Settings) -> anyhow::Result<Stack> {
        let sink_health = Arc::new(Health::default());
        let (sink_outlet, sink) = RunningSink::start(&settings.sink, settings.queue_capacity, sink_health.clone()).await?;

        let store = TokenStore::open(&settings.tokens).await?;
        let tokens = Arc::new(TokenCache::new(store, settings.token_cache));
        // Which pixels have a token, before the first hit (under Lambda, beside it: meanwhile
        // hits are let through and their deliveries ask the store). If the store cannot be
        // listed, nothing is forwarded until a later listing, every refresh, succeeds.
        let kv = Kv::open(tokens.store()).await?;
        let directory = Arc::new(Directory::new(kv.clone(), settings.registry));
        tokens.index().listing_started();
        directory.listing_started();
        let listings = {
            let (tokens, directory) = (tokens.clone(), directory.clone());
            async move {
                match tokens.refresh_index().await {
                    Ok(n) => tracing::info!(pixels = n, "pixels with an access token listed"),
                    Err(err) => tracing::warn!(error = %err, "cannot list the pixels with a token; nothing is forwarded until the store answers"),
                }
                // The registered pixels: until listed, a pixel's settings are read per pixel.
                match directory.refresh().await {
                    Ok(n) => tracing::info!(pixels = n, "registered pixels listed"),
                    Err(err) => tracing::warn!(error = %err, "cannot list the registered pixels; their settings are read per pixel until the store answers"),
                }
            }
        };
        if settings.list_in_background {
            tokio::spawn(listings);
        } else {
            listings.await;
        }
        tokens.spawn_index_refresh();
        directory.spawn_refresh();
        let keys = Arc::new(KeyCache::new(kv.clone(), settings.admin_key.as_ref(), settings.registry.ttl));
        keys.spawn_flush(KEY_USE_FLUSH);
        let deliveries = Arc::new(Deliveries::default());
        let gate = Arc::new(Gate::new(tokens.clone()));
        let (budget, status) = (Budget::new(settings.forward_max_bytes), Arc::new(ForwardStatus::new("meta")));
        let (forward_outlet, jobs) = HitOutlet::new("capi", settings.queue_capacity);
        let forward_outlet = forward_outlet.with_gate(gate.for_outlet()).with_shed(status.for_outlet());
        let records = Dispatcher::new(vec![sink_outlet.clone()], vec![]);
        let registry = Arc::new(Registry::new(kv.clone(), tokens.clone(), directory.clone(), keys.clone()).with_webhook_policy(settings.webhooks));
        // Notices of credentials gone bad: to the EventBridge bus if one is named, and to the
        // webhook of the pixel's account, if it has one.
        let mut channels: Vec<Arc<dyn Channel>> = vec![Arc::new(notify::webhook::Sender::new(registry.clone(), settings.webhooks))];
        if let Some(bus) = &settings.notify_event_bus {
            channels.push(Arc::new(notify::eventbridge::Sender::from_env(bus.clone()).await));
        }
        let notifier = Notifier::start(channels);
        let wiring = Wiring {
            jobs,
            closing: forward_outlet.closing(),
            gate,
            sink: records,
            deliveries: deliveries.clone(),
            budget: budget.clone(),
            status: status.clone(),
            notifier: notifier.clone(),
        };
        let forwarder = Forwarder::start(Meta::new(&settings.meta, settings.forward.timeout), settings.forward.clone(), wiring).context("cannot start the forwarder's thread")?;

        // One intake task per runtime worker shapes the pixel requests the edge answered.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        // Each hit of a registered pixel gets its settings (account, allowed domains, forwarding,
        // test mode) in the intake, before its record is written.
        let dispatcher = Dispatcher::new(vec![sink_outlet], vec![forward_outlet])
            .with_max_bytes(settings.queue_max_bytes)
            .with_hit_budget(budget)
            .with_directory(directory.clone())
            .with_intake(workers, settings.queue_capacity, settings.parse.clone());
        spawn_ticker(dispatcher.clone());

        let api = Api::new(ApiState { registry, deliveries, body_timeout: settings.body.timeout, dispatcher: dispatcher.clone() });
        let edge = Arc::new(Edge::new(settings.trusted_proxies, settings.body, dispatcher.clone(), sink_health, tokens, api, directory).with_forwarding(vec![status]));
        Ok(Stack { edge, dispatcher, sink, forwarder, keys, notifier, notice_wait: settings.forward.shutdown_timeout })
    }

    /// The edge service over this stack, for a front door to call.
    pub fn service(&self) -> EdgeService {
        EdgeService::new(self.edge.clone())
    }

    /// Where notices go (the Lambda drain waits for them), if anywhere.
    pub fn notifier(&self) -> Option<Notifier> {
        self.notifier.clone()
    }

    /// A handle to the outlets, to [`Dispatcher::flush`] them.
    pub fn dispatcher(&self) -> Dispatcher {
        self.dispatcher.clone()
    }

    /// Delivers everything queued (or accounts for it) and stops the outlets: the forwarder
    /// first, so its delivery records still reach the sink; the notices it raised get the
    /// forwarder's shutdown timeout meanwhile.
    pub async fn drain(self) {
        self.sink.begin_shutdown();
        self.dispatcher.shutdown().await;
        self.forwarder.join().await;
        let notices = async {
            let Some(notifier) = &self.notifier else { return };
            if tokio::time::timeout(self.notice_wait, notifier.settled()).await.is_err() {
                tracing::error!(
                    notices = notifier.pending(),
                    waited = ?self.notice_wait,
                    "credentials-invalidated notices were still being delivered at shutdown and are lost (raise --capi-shutdown-timeout to wait longer)"
                );
            }
        };
        tokio::join!(self.sink.join(), notices);
        self.keys.flush_last_used().await;
    }
}

/// Wakes idle outlet consumers once a second for time-based work (file rotation, batch ageing,
/// restarting a spool replay).
fn spawn_ticker(dispatcher: Dispatcher) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if !dispatcher.tick() {
                return;
            }
        }
    });
}
