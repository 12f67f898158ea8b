//! The app under AWS Lambda: the same [`Stack`] behind the Lambda door
//! ([`crate::runtime::lambda`]), drained within Lambda's shutdown budget.

use std::future::Future;

use super::{Settings, Stack};
use crate::runtime::lambda::{self, SHUTDOWN_BUDGET, metrics_summary};

/// Runs the Lambda runtime and the drain extension until `SIGTERM`, then drains the outlets.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    lambda::check_environment()?;
    let metrics = crate::metrics::install();
    let event_names = settings.event_names.clone();
    let stack = Stack::start(&settings.for_lambda()).await?;
    let outcome = lambda::serve(stack.service(), stack.dispatcher(), stack.notifier(), event_names, metrics.clone(), shutdown).await;
    tracing::info!("flushing queued records");
    if tokio::time::timeout(SHUTDOWN_BUDGET, stack.drain()).await.is_err() {
        tracing::warn!(budget = ?SHUTDOWN_BUDGET, "outlets not drained within the shutdown budget; what they held is lost with the environment (see pixelgate_records_dropped_total)");
    }
    tracing::info!(metrics = %metrics_summary(&metrics), "metrics");
    outcome
}
