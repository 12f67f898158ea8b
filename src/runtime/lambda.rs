//! The AWS Lambda front door: the edge service behind API Gateway (HTTP API, payload 2.0), and
//! the internal extension that finishes each invocation's work before Lambda freezes the process.
//!
//! What differs from the hyper server, and nothing else, lives here:
//!
//! * **Transport.** `lambda_http` turns each event into an `http::Request` (URI from `rawPath` +
//!   `rawQueryString`, `cookies[]` into `Cookie`) and the answer into the JSON API Gateway expects
//!   (the GIF base64-encoded). The client is `requestContext.http.sourceIp`; the hop API Gateway
//!   appended to `X-Forwarded-For` for that same address is removed, so `--trusted-proxies N`
//!   counts only proxies in front of API Gateway (e.g. CloudFront), as it counts proxies in
//!   front of the server.
//! * **Work after the answer.** Lambda freezes the process once the runtime and every extension
//!   have asked for their next event, so a background task would sleep mid-flight. An internal
//!   extension ("pixelgate-drain", INVOKE events only) takes each INVOKE, waits until the handler
//!   of that invocation has submitted its hit, then [`Dispatcher::flush`]es: the invocation's
//!   record reaches Firehose and its Conversions API call completes before the extension asks
//!   for the next event. The answer itself never waits: the runtime posts it while the extension
//!   drains. The drain stops [`DRAIN_MARGIN`] before the invocation's deadline; what it has not
//!   finished stays queued and continues when the environment thaws, or at `SIGTERM`.
//! * **Shutdown.** Lambda sends `SIGTERM` (500 ms before `SIGKILL` with an internal extension):
//!   the outlets are drained within [`SHUTDOWN_BUDGET`], with the Conversions API and Firehose
//!   shutdown timeouts clamped to fit in it.
//! * **Metrics** go to the log (one `metrics` line at most every [`METRICS_LOG_INTERVAL`], after a
//!   drain, and one at shutdown): there is no listener to scrape.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::HeaderValue;
use lambda_extension::{Extension, NextEvent};
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, RequestExt};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::mpsc;
use tower_service::Service;

use crate::app::Pipeline;
use crate::client_ip::PeerIp;
use crate::config::{ConfigError, GlobalArgs, ServeArgs};
use crate::dispatch::Dispatcher;
use crate::edge::{EdgeBody, EdgeService};
use crate::metrics as m;

/// How long before the invocation's deadline the drain stops waiting, so the extension's
/// `next` call reaches Lambda before the function timeout ends the environment.
pub const DRAIN_MARGIN: Duration = Duration::from_millis(300);

/// What the outlets get at `SIGTERM`: Lambda kills the process 500 ms after it.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(400);

/// Longest the Conversions API forwarder waits at shutdown under Lambda (clamps
/// `--capi-shutdown-timeout`), leaving the rest of [`SHUTDOWN_BUDGET`] to the sink.
pub const CAPI_SHUTDOWN_CAP: Duration = Duration::from_millis(150);

/// Longest the Firehose sink waits at shutdown under Lambda (clamps `--firehose-shutdown-timeout`).
pub const FIREHOSE_SHUTDOWN_CAP: Duration = Duration::from_millis(200);

/// Least time between two `metrics` log lines.
pub const METRICS_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The extension's name in the Extensions API (unique per function).
pub const EXTENSION_NAME: &str = "pixelgate-drain";

/// Whether Lambda started this process: the Runtime API's address is set.
pub fn is_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty())
}

/// The server settings as they apply under Lambda: shutdown timeouts clamped to fit in the
/// 500 ms Lambda gives between `SIGTERM` and `SIGKILL`.
pub fn lambda_settings(serve: &ServeArgs) -> ServeArgs {
    let mut serve = serve.clone();
    serve.capi_shutdown_timeout = serve.capi_shutdown_timeout.min(CAPI_SHUTDOWN_CAP);
    serve.firehose_shutdown_timeout = serve.firehose_shutdown_timeout.min(FIREHOSE_SHUTDOWN_CAP);
    serve
}

/// Runs the Lambda runtime and the drain extension until `SIGTERM`, then drains the outlets.
pub async fn run(global: &GlobalArgs, serve: &ServeArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    global.validate()?;
    check_environment()?;
    let metrics = crate::metrics::install();
    let pipeline = Pipeline::start(global, &lambda_settings(serve)).await?;

    let (ends_tx, ends_rx) = mpsc::unbounded_channel();
    let drain = Arc::new(Drain {
        dispatcher: pipeline.dispatcher(),
        ends: tokio::sync::Mutex::new(ends_rx),
        metrics: metrics.clone(),
        last_metrics_log: Mutex::new(None),
    });
    let processor = lambda_extension::service_fn(move |event: lambda_extension::LambdaEvent| {
        let drain = drain.clone();
        async move {
            if let NextEvent::Invoke(invoke) = event.next {
                drain.invocation(&invoke.request_id, invoke.deadline_ms).await;
            }
            Ok::<(), Infallible>(())
        }
    });
    // Registered before the runtime's first `next`, which ends Lambda's Init phase.
    let extension = Extension::new()
        .with_events(&["INVOKE"])
        .with_events_processor(processor)
        .with_extension_name(EXTENSION_NAME)
        .register()
        .await
        .map_err(|err| anyhow::anyhow!("cannot register the drain extension with the Lambda Extensions API: {err}"))?;
    let handler = Invocations { adapter: Adapter::from(LambdaDoor { edge: pipeline.service() }), ends: ends_tx };
    tracing::info!(extension = EXTENSION_NAME, "serving Lambda invocations");

    let outcome = tokio::select! {
        result = async { tokio::try_join!(lambda_http::lambda_runtime::run(handler), extension.run()) } => {
            result.map(|_| ()).map_err(|err| anyhow::anyhow!("the Lambda runtime stopped: {err}"))
        }
        () = shutdown => Ok(()),
    };
    tracing::info!("flushing queued records");
    if tokio::time::timeout(SHUTDOWN_BUDGET, pipeline.drain()).await.is_err() {
        tracing::warn!(budget = ?SHUTDOWN_BUDGET, "outlets not drained within the shutdown budget; what they held is lost with the environment (see pixelgate_records_dropped_total)");
    }
    tracing::info!(metrics = %metrics_summary(&metrics), "metrics");
    outcome
}

/// The variables `lambda_runtime` reads, checked here so that a missing one is one line rather
/// than a panic.
fn check_environment() -> Result<(), ConfigError> {
    for name in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] {
        if std::env::var_os(name).is_none_or(|v| v.is_empty()) {
            return Err(ConfigError(format!("AWS_LAMBDA_RUNTIME_API is set but {name} is not; Lambda sets both (unset AWS_LAMBDA_RUNTIME_API to run the server)")));
        }
    }
    if std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok().and_then(|v| v.parse::<i32>().ok()).is_none() {
        return Err(ConfigError("AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be a number of megabytes".into()));
    }
    Ok(())
}

/// The extension's side of each invocation.
struct Drain {
    dispatcher: Dispatcher,
    /// Request ids of invocations whose handler has finished (or failed), in order.
    ends: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    metrics: PrometheusHandle,
    last_metrics_log: Mutex<Option<Instant>>,
}

impl Drain {
    /// Waits for the handler of `request_id` to finish, then for its work to be delivered, at
    /// most until [`DRAIN_MARGIN`] before `deadline_ms`. Never fails: an error here would make
    /// the extension report itself failed and end the runtime.
    async fn invocation(&self, request_id: &str, deadline_ms: u64) {
        let started = Instant::now();
        let deadline = deadline_instant(deadline_ms);
        let handled = tokio::time::timeout_at(deadline.into(), async {
            let mut ends = self.ends.lock().await;
            // Ends of earlier invocations whose drain ran out of time are skipped.
            while let Some(id) = ends.recv().await {
                if id == request_id {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        let flushed = handled && tokio::time::timeout_at(deadline.into(), self.dispatcher.flush()).await.is_ok();
        let elapsed = started.elapsed();
        metrics::histogram!(m::LAMBDA_DRAIN_SECONDS).record(elapsed.as_secs_f64());
        if !flushed {
            metrics::counter!(m::LAMBDA_DRAIN_TIMEOUTS).increment(1);
            tracing::warn!(request_id, handled, waited_ms = elapsed.as_millis() as u64, "the invocation's deadline came before its records and Conversions API calls were done; they continue at the next invocation");
        } else {
            tracing::debug!(request_id, drain_ms = elapsed.as_secs_f64() * 1e3, "drained");
        }
        self.maybe_log_metrics();
    }

    fn maybe_log_metrics(&self) {
        let mut last = self.last_metrics_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= METRICS_LOG_INTERVAL) {
            *last = Some(Instant::now());
            drop(last);
            tracing::info!(metrics = %metrics_summary(&self.metrics), "metrics");
        }
    }
}

/// `deadline_ms` (Unix milliseconds) minus [`DRAIN_MARGIN`], as an `Instant`; now if it has passed.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(DRAIN_MARGIN);
    Instant::now() + left
}

/// The runtime's handler: every event goes through `lambda_http`'s adapter; whatever happens,
/// the extension learns that the invocation's handler is done.
struct Invocations {
    adapter: Adapter<'static, http::Response<EdgeBody>, LambdaDoor>,
    ends: mpsc::UnboundedSender<String>,
}

type AdapterResponse = <Adapter<'static, http::Response<EdgeBody>, LambdaDoor> as Service<LambdaEvent<LambdaRequest>>>::Response;

impl Service<LambdaEvent<serde_json::Value>> for Invocations {
    type Response = AdapterResponse;
    type Error = lambda_http::Error;
    type Future = Pin<Box<dyn Future<Output = Result<AdapterResponse, lambda_http::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, event: LambdaEvent<serde_json::Value>) -> Self::Future {
        let end = HandlerDone { request_id: event.context.request_id.clone(), ends: self.ends.clone() };
        // Parsed here rather than by the runtime so that an event of another kind (a direct
        // invoke, a REST API) still releases the extension at once.
        let payload = match serde_json::from_value::<LambdaRequest>(event.payload) {
            Ok(payload) => payload,
            Err(err) => {
                metrics::counter!(m::LAMBDA_BAD_EVENTS).increment(1);
                let message = format!("not an API Gateway HTTP API (payload format 2.0) event: {err}");
                tracing::warn!(request_id = %end.request_id, "{message}");
                return Box::pin(async move {
                    drop(end);
                    Err(message.into())
                });
            }
        };
        let answer = self.adapter.call(LambdaEvent { payload, context: event.context });
        Box::pin(async move {
            let response = answer.await;
            drop(end);
            Ok(response.unwrap_or_else(|never: Infallible| match never {}))
        })
    }
}

/// Tells the extension that an invocation's handler is done when dropped, on every path.
struct HandlerDone {
    request_id: String,
    ends: mpsc::UnboundedSender<String>,
}

impl Drop for HandlerDone {
    fn drop(&mut self) {
        let _ = self.ends.send(std::mem::take(&mut self.request_id));
    }
}

/// The edge service as `lambda_http` calls it: the client address from the request context.
#[derive(Clone)]
struct LambdaDoor {
    edge: EdgeService,
}

impl Service<lambda_http::Request> for LambdaDoor {
    type Response = http::Response<EdgeBody>;
    type Error = Infallible;
    type Future = <EdgeService as Service<lambda_http::Request>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: lambda_http::Request) -> Self::Future {
        let source_ip = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref().and_then(parse_source_ip),
            _ => None,
        };
        if let Some(ip) = source_ip {
            drop_own_forwarded_hop(req.headers_mut(), ip);
            req.extensions_mut().insert(PeerIp(ip));
        }
        self.edge.call(req)
    }
}

/// `sourceIp` leniently: `192.0.2.1`, or with a prefix length as `sam local` writes it
/// (`192.168.0.1/32`).
fn parse_source_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse().ok().or_else(|| s.split_once('/').and_then(|(ip, _)| ip.parse().ok()))
}

/// API Gateway appends the address it saw (`sourceIp`) to `X-Forwarded-For`; a proxy in front
/// of it appends its own hops before that. Removing API Gateway's hop leaves the header as a
/// server behind those proxies would see it.
fn drop_own_forwarded_hop(headers: &mut http::HeaderMap, source_ip: IpAddr) {
    let joined: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    if joined.is_empty() {
        return;
    }
    let joined = joined.join(",");
    let mut hops: Vec<&str> = joined.split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
    if hops.last().and_then(|h| parse_source_ip(h)) != Some(source_ip) {
        return;
    }
    hops.pop();
    let rest = hops.join(", ");
    headers.remove("x-forwarded-for");
    if let Ok(value) = HeaderValue::from_str(&rest)
        && !rest.is_empty()
    {
        headers.insert("x-forwarded-for", value);
    }
}

/// The process's metrics as one JSON object (`name{labels}` → value), histogram buckets left
/// out (their `_sum` and `_count` stay), for a log line.
pub fn metrics_summary(handle: &PrometheusHandle) -> String {
    let text = handle.render();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.contains("_bucket{") {
            continue;
        }
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_owned(), v);
        }
    }
    serde_json::to_string(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_with_and_without_prefix_length() {
        assert_eq!(parse_source_ip("203.0.113.42"), Some("203.0.113.42".parse().unwrap()));
        assert_eq!(parse_source_ip("192.168.0.1/32"), Some("192.168.0.1".parse().unwrap()));
        assert_eq!(parse_source_ip("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_source_ip("nonsense"), None);
    }

    fn xff(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn api_gateways_own_hop_is_removed() {
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let mut h = xff(&["203.0.113.5, 198.51.100.9"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.5");

        let mut h = xff(&["198.51.100.9"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert!(h.get("x-forwarded-for").is_none());

        // Spread over two header lines, the last hop is still API Gateway's.
        let mut h = xff(&["6.6.6.6", "203.0.113.5,198.51.100.9"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "6.6.6.6, 203.0.113.5");

        // A last hop that is not the source address is left alone.
        let mut h = xff(&["203.0.113.5"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.5");
    }

    #[test]
    fn clamps_shutdown_timeouts_only_downwards() {
        let cli = crate::config::Cli::try_parse_args(["pixelgate", "--capi-shutdown-timeout", "100ms"]).unwrap();
        let serve = lambda_settings(&cli.serve_args());
        assert_eq!(serve.capi_shutdown_timeout, Duration::from_millis(100));
        assert_eq!(serve.firehose_shutdown_timeout, FIREHOSE_SHUTDOWN_CAP);
    }
}
