//! Builds the whole server from its settings and runs it until a shutdown signal.
//!
//! [`App::build`] binds the listeners, installs the metrics recorder, starts the sink and wires
//! the edge service; [`App::run_until_stopped`] serves until the given future resolves, then
//! drains in order: stop accepting → finish in-flight requests → flush every outlet → exit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpSocket};

use crate::admin::Admin;
use crate::batch::BatchLimits;
use crate::capi::{CapiConfig, CapiForwarder, Deliveries};
use crate::config::{GlobalArgs, ServeArgs, SinkKind};
use crate::dispatch::{Dispatcher, OutletQueue};
use crate::edge::body::BodyLimits;
use crate::edge::{Edge, EdgeService};
use crate::params::{Limits, ParseSettings};
use crate::pii::PiiRules;
use crate::runtime::server::{self, ServerOptions};
use crate::sink::file::{FileSink, FileSinkConfig};
use crate::sink::firehose::retry::RetryPolicy;
use crate::sink::firehose::{FirehoseConfig, FirehoseSink};
use crate::sink::{Health, RunningSink};
use crate::tokens::{CacheSettings, TokenCache, TokenStore};

/// A built, not yet running, pixelgate server.
pub struct App {
    /// Pixel, health and admin traffic.
    listener: TcpListener,
    /// Prometheus scrapes only.
    metrics_listener: TcpListener,
    /// Outlets and the edge service's state.
    pipeline: Pipeline,
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
    /// Transport limits for the pixel listener.
    server: ServerOptions,
}

/// What every front door shares: the outlets (raw-record sink, Conversions API forwarder), the
/// dispatcher in front of them, and the edge service's state.
pub struct Pipeline {
    /// The edge service's shared state.
    edge: Arc<Edge>,
    /// Kept to flush or drain the outlets.
    dispatcher: Dispatcher,
    /// The raw-record sink, joined at shutdown.
    sink: RunningSink,
    /// The Conversions API outlet, joined at shutdown.
    forwarder: CapiForwarder,
}

impl Pipeline {
    /// Starts the sink, opens the token store and starts the forwarder. Fails with a message
    /// naming the setting that is wrong.
    pub async fn start(global: &GlobalArgs, serve: &ServeArgs) -> anyhow::Result<Pipeline> {
        let sink_health = Arc::new(Health::default());
        let (sink_queue, sink) = start_sink(global, serve, sink_health.clone()).await?;

        let store = TokenStore::open(global).await?;
        let tokens = Arc::new(TokenCache::new(
            store,
            CacheSettings { ttl: global.token_ttl, negative_ttl: global.token_negative_ttl, ..CacheSettings::default() },
        ));
        let deliveries = Arc::new(Deliveries::default());
        // Listed after the sink: drained first, so its capi_failed records still reach the sink.
        let (capi_queue, capi_rx) = OutletQueue::new("capi", serve.queue_capacity as usize);
        // Hits of pixels the cache just found without a token are counted and go no further:
        // the forwarder would only drop them, after a queue hop and a task wake-up per hit.
        let no_token = metrics::counter!(crate::metrics::CAPI_EVENTS, "outcome" => "skipped", "reason" => "no_token");
        let cache = tokens.clone();
        let capi_queue = capi_queue.with_gate(Arc::new(move |pixel_id: Option<&str>| {
            let known = crate::capi::event::pixel_id(pixel_id).is_ok_and(|id| cache.known_tokenless(id));
            if known {
                no_token.increment(1);
            }
            !known
        }));
        let forwarder = CapiForwarder::start(
            capi_config(global, serve),
            capi_rx,
            tokens.clone(),
            Dispatcher::new(vec![sink_queue.clone()]),
            deliveries.clone(),
            capi_queue.closing(),
        );
        let parse = ParseSettings { limits: Limits::default(), pii: PiiRules { default_phone_country: serve.default_phone_country } };
        // One intake task per runtime worker shapes the pixel GETs the edge answered.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let dispatcher = Dispatcher::new(vec![sink_queue, capi_queue])
            .with_max_bytes(serve.queue_max_bytes as usize)
            .with_intake(workers, serve.queue_capacity as usize, crate::edge::shaper(parse.clone()));
        spawn_ticker(dispatcher.clone());

        let body_limits = BodyLimits { max_bytes: serve.max_body_bytes, timeout: serve.header_read_timeout };
        let admin = Admin::new(global.admin_key.as_ref(), tokens.clone(), deliveries, serve.header_read_timeout);
        let edge = Arc::new(Edge::new(parse, global.trusted_proxies, body_limits, dispatcher.clone(), sink_health, tokens, admin));
        Ok(Pipeline { edge, dispatcher, sink, forwarder })
    }

    /// The edge service over this pipeline, for a front door to call.
    pub fn service(&self) -> EdgeService {
        EdgeService::new(self.edge.clone())
    }

    /// A handle to the outlets, to [`Dispatcher::flush`] them.
    pub fn dispatcher(&self) -> Dispatcher {
        self.dispatcher.clone()
    }

    /// Delivers everything queued (or accounts for it) and stops the outlets: the forwarder
    /// first, so its `capi_failed` records still reach the sink.
    pub async fn drain(self) {
        self.dispatcher.shutdown().await;
        self.forwarder.join().await;
        self.sink.join().await;
    }
}

impl App {
    /// Binds, starts the sink and wires the service. Fails with a message naming the setting
    /// that is wrong.
    pub async fn build(global: &GlobalArgs, serve: &ServeArgs) -> anyhow::Result<App> {
        global.validate()?;
        let metrics = crate::metrics::install();
        raise_fd_limit(serve.max_connections as u64);
        let listener = bind(global.listen).with_context(|| format!("cannot listen on {} (--listen [PIXELGATE_LISTEN])", global.listen))?;
        let metrics_listener = bind(global.metrics_listen)
            .with_context(|| format!("cannot listen on {} (--metrics-listen [PIXELGATE_METRICS_LISTEN])", global.metrics_listen))?;

        let pipeline = Pipeline::start(global, serve).await?;
        let server = ServerOptions {
            max_connections: serve.max_connections as usize,
            header_read_timeout: serve.header_read_timeout,
            shutdown_grace: serve.shutdown_timeout,
            ..ServerOptions::default()
        };
        Ok(App { listener, metrics_listener, pipeline, metrics, server })
    }

    /// The bound pixel address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr().expect("a bound listener has an address")
    }

    /// A handle to the outlets, e.g. to [`Dispatcher::flush`] in tests.
    pub fn dispatcher(&self) -> Dispatcher {
        self.pipeline.dispatcher()
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting, answers in-flight requests,
    /// writes every queued record and closes the files.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let metrics_addr = self.metrics_listener.local_addr()?;
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_opts = ServerOptions { name: "metrics", max_connections: 64, shutdown_grace: Duration::from_secs(1), ..ServerOptions::default() };
        let metrics_service = crate::metrics::MetricsService::new(self.metrics).with_intake(self.pipeline.dispatcher());
        let metrics_server = tokio::spawn(server::serve(self.metrics_listener, move |_| metrics_service.clone(), metrics_opts, async {
            let _ = metrics_stopped.await;
        }));

        tracing::info!(listen = %self.listener.local_addr()?, metrics = %metrics_addr, "serving");
        let service = self.pipeline.service();
        server::serve(self.listener, |peer| service.for_peer(peer.ip()), self.server, shutdown).await;
        tracing::info!("stopped accepting; flushing queued records");
        self.pipeline.drain().await;
        let _ = stop_metrics.send(());
        let _ = metrics_server.await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The Conversions API outlet's settings from the flags.
fn capi_config(global: &GlobalArgs, serve: &ServeArgs) -> CapiConfig {
    CapiConfig {
        graph_url: global.graph_url.clone(),
        graph_version: global.graph_version.clone(),
        max_batch: serve.capi_batch_events as usize,
        flush_interval: serve.capi_flush_interval,
        max_concurrent_requests: serve.capi_max_in_flight as usize,
        timeout: serve.capi_timeout,
        retry_budget: serve.capi_retry_budget,
        shutdown_timeout: serve.capi_shutdown_timeout,
        ..CapiConfig::default()
    }
}

/// Starts the raw-record sink `--sink` names on a fresh outlet queue.
async fn start_sink(global: &GlobalArgs, serve: &ServeArgs, health: Arc<Health>) -> anyhow::Result<(OutletQueue, RunningSink)> {
    let capacity = serve.queue_capacity as usize;
    match global.sink {
        SinkKind::File => {
            let (queue, rx) = OutletQueue::for_records("file", capacity);
            let raw = global.data_dir.join("raw");
            let config = FileSinkConfig { dir: raw.clone(), rotate_after: serve.file_rotate, max_file_bytes: serve.file_max_bytes };
            let sink = FileSink::start(config, rx, health, queue.closing())
                .with_context(|| format!("cannot write records under {} (--data-dir [PIXELGATE_DATA_DIR])", raw.display()))?;
            Ok((queue, RunningSink::File(sink)))
        }
        SinkKind::Firehose => {
            let (queue, rx) = OutletQueue::for_records("firehose", capacity);
            let config = FirehoseConfig {
                stream: global.firehose_stream.clone().unwrap_or_default(),
                batch: BatchLimits {
                    max_items: serve.firehose_batch_records as usize,
                    max_bytes: serve.firehose_batch_bytes as usize,
                    max_age: serve.firehose_flush_interval,
                },
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
            };
            Ok((queue, RunningSink::Firehose(FirehoseSink::start(config, rx, health).await?)))
        }
    }
}

/// A listener with a deep accept backlog, for bursts of new connections.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Lets the process hold `connections` sockets plus its files.
fn raise_fd_limit(connections: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < connections + 64 => {
            tracing::warn!(limit, connections, "the open-file limit is below --max-connections; raise it (ulimit -n)")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
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
