//! Notices to an EventBridge bus with `PutEvents` (`source: "pixelgate"`). An entry EventBridge
//! refuses with a code that may pass later (throttling, an internal failure) is sent again with
//! backoff, up to [`ATTEMPTS`] times; so is a request that failed as a whole. What still fails is
//! counted (`pixelgate_notifications_total{outcome="failed"}`) and logged, with the code.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use futures_util::future::BoxFuture;

use super::{Channel, INVALIDATED, Invalidated};
use crate::metrics as m;
use crate::retry::RetryPolicy;

/// Attempts per notice.
pub const ATTEMPTS: u32 = 5;

/// The waits between attempts: half to all of 400 ms, doubling ("equal jitter"). Attempts are
/// counted ([`ATTEMPTS`]); the SDK times each request.
const BACKOFF: RetryPolicy =
    RetryPolicy { attempt_timeout: Duration::MAX, backoff_initial: Duration::from_millis(400), backoff_max: Duration::from_secs(8), budget: Duration::MAX };

/// Entry error codes worth another attempt.
const RETRYABLE: &[&str] = &["ThrottlingException", "InternalException", "InternalFailure", "ServiceUnavailable"];

/// A `PutEvents` client for one bus.
pub struct Sender {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl Sender {
    /// From the standard AWS environment; no network call.
    pub async fn from_env(bus: String) -> Sender {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Sender { client: aws_sdk_eventbridge::Client::new(&sdk), bus }
    }

    /// Sends `notice`, retrying what may pass later; counts and logs the outcome.
    async fn send(&self, notice: &Invalidated) {
        let detail = serde_json::to_string(notice).expect("a notice serializes");
        let entry = PutEventsRequestEntry::builder().event_bus_name(&self.bus).source("pixelgate").detail_type(INVALIDATED).detail(detail).build();
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.client.put_events().entries(entry.clone()).send().await {
                Ok(out) => match out.entries().first().and_then(|e| e.error_code()) {
                    None if out.failed_entry_count() == 0 => {
                        metrics::counter!(m::NOTIFICATIONS, "channel" => "eventbridge", "outcome" => "sent").increment(1);
                        tracing::info!(pixel_id = notice.pixel_id, destination = notice.destination, bus = self.bus, "credentials-invalidated notice sent to EventBridge");
                        return;
                    }
                    code => {
                        let code = code.unwrap_or("UnknownError").to_owned();
                        last = format!("entry refused: {code}");
                        if !RETRYABLE.contains(&code.as_str()) {
                            break;
                        }
                    }
                },
                Err(err) => last = format!("request failed: {}", aws_sdk_eventbridge::error::DisplayErrorContext(&err)),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(BACKOFF.backoff_at_least_half(attempt - 1)).await;
            }
        }
        metrics::counter!(m::NOTIFICATIONS, "channel" => "eventbridge", "outcome" => "failed").increment(1);
        tracing::error!(
            pixel_id = notice.pixel_id,
            destination = notice.destination,
            bus = self.bus,
            error = last,
            "a credentials-invalidated notice could not be sent to EventBridge (see pixelgate_notifications_total)"
        );
    }
}

impl Channel for Sender {
    fn name(&self) -> &'static str {
        "eventbridge"
    }

    fn deliver<'a>(&'a self, notice: &'a Invalidated) -> BoxFuture<'a, ()> {
        Box::pin(self.send(notice))
    }
}
