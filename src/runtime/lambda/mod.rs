//! The AWS Lambda front door (`docs/lambda.md`): the edge service behind API Gateway (HTTP API
//! or REST API), an Application Load Balancer or a Function URL; SQS and EventBridge inputs; and the internal extension that finishes each invocation's work before Lambda
//! freezes the process.
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
//!   of that invocation has submitted its hit, then `Dispatcher::flush`es: the invocation's
//!   record reaches Firehose and its Conversions API call completes before the extension asks
//!   for the next event. The answer itself never waits: the runtime posts it while the extension
//!   drains. The drain stops [`DRAIN_MARGIN`] before the invocation's deadline; what it has not
//!   finished stays queued and continues when the environment thaws, or at `SIGTERM`.
//! * **Shutdown.** Lambda sends `SIGTERM` (500 ms before `SIGKILL` with an internal extension):
//!   [`serve`] returns and the app drains the outlets within [`SHUTDOWN_BUDGET`], with the
//!   forwarder's and Firehose's shutdown timeouts clamped to fit in it.
//! * **Metrics** go to the log (one `metrics` line at most every [`METRICS_LOG_INTERVAL`], after a
//!   drain, and one at shutdown): there is no listener to scrape.
//!
//! * [`door`] — the runtime's handler (by the kind of event) and the edge service as
//!   `lambda_http` calls it.
//! * [`inputs`] — SQS batches and EventBridge events, each event into the pipeline.
//! * [`drain`] — the extension's side of each invocation, and the metrics log line.

pub mod door;
pub mod drain;
pub mod inputs;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lambda_extension::{Extension, NextEvent};
use lambda_http::Adapter;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::mpsc;

use self::door::{Invocations, LambdaDoor};
use self::drain::Drain;
pub use self::drain::metrics_summary;
use self::inputs::{EventNames, Inputs};
use crate::edge::EdgeService;
use crate::error::ConfigError;
use crate::notify::Notifier;
use crate::pipeline::Dispatcher;

/// How long before the invocation's deadline the drain stops waiting, so the extension's
/// `next` call reaches Lambda before the function timeout ends the environment.
pub const DRAIN_MARGIN: Duration = Duration::from_millis(300);

/// Longest an invocation's drain waits for notices still being delivered (a webhook retrying),
/// after its records and destinations: a receiver that is down costs each invocation at most
/// this, and what is left continues when the sandbox next runs.
pub const NOTICE_WAIT: Duration = Duration::from_secs(2);

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

/// Runs the Lambda runtime over `service` and the drain extension over `dispatcher` (and the
/// notices of `notices`) until the
/// runtime stops or `shutdown` resolves (`SIGTERM`). The caller then drains the outlets within
/// [`SHUTDOWN_BUDGET`].
pub async fn serve(
    service: EdgeService,
    dispatcher: Dispatcher,
    notices: Option<Notifier>,
    event_names: EventNames,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let inputs = Inputs::new(dispatcher.clone(), event_names);
    let (ends_tx, ends_rx) = mpsc::unbounded_channel();
    let drain = Arc::new(Drain::new(dispatcher, notices, ends_rx, metrics));
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
    let handler = Invocations::new(Adapter::from(LambdaDoor::new(service)), inputs, ends_tx);
    tracing::info!(extension = EXTENSION_NAME, "serving Lambda invocations");
    tokio::select! {
        result = async { tokio::try_join!(lambda_http::lambda_runtime::run(handler), extension.run()) } => {
            result.map(|_| ()).map_err(|err| anyhow::anyhow!("the Lambda runtime stopped: {err}"))
        }
        () = shutdown => Ok(()),
    }
}

/// The variables `lambda_runtime` reads, checked here so that a missing one is one line rather
/// than a panic.
pub fn check_environment() -> Result<(), ConfigError> {
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
