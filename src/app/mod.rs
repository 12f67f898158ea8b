//! Builds the whole server from its [`Settings`] and runs it until a shutdown signal.
//!
//! [`App::build`] binds the listeners, installs the metrics recorder and starts the [`Stack`];
//! [`App::run_until_stopped`] serves until the given future resolves, then drains in order: stop
//! accepting → finish in-flight requests → flush every outlet → exit. Under Lambda, [`lambda`]
//! runs the same stack behind the Lambda door.

pub mod lambda;
mod settings;
mod stack;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpSocket};

pub use self::settings::Settings;
pub use self::stack::Stack;
use crate::pipeline::Dispatcher;
use crate::runtime::metrics_listener::{self, MetricsService};
use crate::runtime::server::{self, ServerOptions};

/// A built, not yet running, pixelgate server.
pub struct App {
    /// Pixel, health and admin traffic.
    listener: TcpListener,
    /// Prometheus scrapes only.
    metrics_listener: TcpListener,
    /// Outlets and the edge service's state.
    stack: Stack,
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
    /// Transport limits for the pixel listener.
    server: ServerOptions,
}

impl App {
    /// Binds, starts the stack and wires the service. Fails with a message naming the setting
    /// that is wrong.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let metrics = crate::metrics::install();
        raise_fd_limit(settings.server.max_connections as u64);
        let listener = bind(settings.listen).with_context(|| format!("cannot listen on {} (--listen [PIXELGATE_LISTEN])", settings.listen))?;
        let metrics_listener =
            bind(settings.metrics_listen).with_context(|| format!("cannot listen on {} (--metrics-listen [PIXELGATE_METRICS_LISTEN])", settings.metrics_listen))?;
        let stack = Stack::start(&settings).await?;
        Ok(App { listener, metrics_listener, stack, metrics, server: settings.server })
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
        self.stack.dispatcher()
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting, answers in-flight requests,
    /// writes every queued record and closes the files.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let metrics_addr = self.metrics_listener.local_addr()?;
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_service = MetricsService::new(self.metrics).with_intake(self.stack.dispatcher());
        let metrics_server = tokio::spawn(metrics_listener::serve(self.metrics_listener, metrics_service, async {
            let _ = metrics_stopped.await;
        }));

        tracing::info!(listen = %self.listener.local_addr()?, metrics = %metrics_addr, "serving");
        let service = self.stack.service();
        server::serve(self.listener, |peer| service.for_peer(peer.ip()), self.server, shutdown).await;
        tracing::info!("stopped accepting; flushing queued records");
        self.stack.drain().await;
        let _ = stop_metrics.send(());
        let _ = metrics_server.await;
        tracing::info!("shutdown complete");
        Ok(())
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
