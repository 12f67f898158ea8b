//! The private listener: Prometheus `/metrics` on `--metrics-listen`, its own address so that it
//! is never public by accident (`docs/operations.md#endpoints`).

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use super::server::{self, ServerOptions};
use crate::edge::{EdgeBody, json_error};
use crate::pipeline::Dispatcher;

/// The `/metrics` endpoint, served on `--metrics-listen` only.
#[derive(Clone)]
pub struct MetricsService {
    handle: PrometheusHandle,
    /// Flushed through its intake before each scrape, so the hits answered before the scrape are
    /// counted in it (their flags are counted when the intake shapes them).
    intake: Option<Dispatcher>,
}

impl MetricsService {
    /// A service rendering `handle`.
    pub fn new(handle: PrometheusHandle) -> Self {
        MetricsService { handle, intake: None }
    }

    /// Waits (at most [`SCRAPE_INTAKE_WAIT`]) for `dispatcher`'s intake before each scrape.
    pub fn with_intake(mut self, dispatcher: Dispatcher) -> Self {
        self.intake = Some(dispatcher);
        self
    }
}

/// Longest a scrape waits for the intake; a scrape is never held up longer by a busy intake.
pub const SCRAPE_INTAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl<B: Send + 'static> tower_service::Service<http::Request<B>> for MetricsService {
    type Response = http::Response<EdgeBody>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/metrics" {
            return Box::pin(std::future::ready(Ok(json_error(http::StatusCode::NOT_FOUND, "only /metrics is served here"))));
        }
        let (handle, intake) = (self.handle.clone(), self.intake.clone());
        Box::pin(async move {
            if let Some(dispatcher) = intake {
                let _ = tokio::time::timeout(SCRAPE_INTAKE_WAIT, dispatcher.flush_intake()).await;
                dispatcher.report_held();
            }
            handle.run_upkeep();
            Ok(http::Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(http_body_util::Full::new(bytes::Bytes::from(handle.render())))
                .expect("static response"))
        })
    }
}

/// Every request goes to the service: the listener has no pixel lane.
impl crate::edge::Lane for MetricsService {
    fn answer(&self, _: &httparse::Request<'_, '_>, _: &mut Vec<u8>) -> bool {
        false
    }
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, service: MetricsService, shutdown: impl std::future::Future<Output = ()>) {
    let opts = ServerOptions { name: "metrics", max_connections: 64, shutdown_grace: Duration::from_secs(1), ..ServerOptions::default() };
    server::serve(listener, move |_| service.clone(), opts, shutdown).await;
}
