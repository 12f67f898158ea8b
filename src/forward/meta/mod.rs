//! Meta's Conversions API as a [`Destination`] (`docs/forwarding.md`): each hit of a pixel with
//! a stored access token becomes a server event, posted in batches to
//! `{graph-url}/{version}/{pixel}/events`.
//!
//! * [`event`] — one pure function from the raw record to Meta's server event, so the mapping
//!   (names, times, `user_data`, `custom_data`) is unit-testable against hand-checked JSON, and
//!   events Meta would reject for the whole batch are caught before they poison one.
//! * [`client`] — the seam ([`SendEvents`]): exactly one `POST …/{pixel}/events`, answered in our
//!   own types, so the rest never sees reqwest and tests script Meta. The token travels in the
//!   JSON body, never in the URL.
//! * [`classify`] — Meta's error classes: done, retry, invalid token, split the batch (code 100
//!   rejects the whole batch for one bad event), or give up.

pub mod classify;
pub mod client;
pub mod event;

use std::time::{Duration, SystemTime};

pub use self::client::{EventsRequest, GraphClient, Received, SendError, SendEvents};
use super::destination::{Destination, Head, Labels, Receipt, Reject, Request, Verdict};
use crate::metrics as m;
use crate::record::{DraftHit, Fields};

/// Meta's cap on events per request ("up to 1,000 events in data").
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// Where Meta's Graph API is.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// Graph API base URL (`--graph-url`), without a trailing slash.
    pub graph_url: String,
    /// Graph API version (`--graph-version`), e.g. `v26.0`.
    pub graph_version: String,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig { graph_url: "https://graph.facebook.com".into(), graph_version: "v26.0".into() }
    }
}

/// Meta's Conversions API, over a [`SendEvents`] (the real [`GraphClient`], or a scripted Meta in
/// tests).
pub struct Meta<C = GraphClient> {
    client: C,
}

impl Meta<GraphClient> {
    /// The Conversions API at `config`'s Graph API, each request timed out after `timeout`.
    pub fn new(config: &MetaConfig, timeout: Duration) -> Self {
        Meta { client: GraphClient::new(&config.graph_url, &config.graph_version, timeout) }
    }
}

impl<C: SendEvents> Meta<C> {
    /// The Conversions API over `client`.
    pub fn with_client(client: C) -> Self {
        Meta { client }
    }
}

impl<C: SendEvents> Destination for Meta<C> {
    type Answer = Received;
    type Error = SendError;

    fn name(&self) -> &'static str {
        "meta"
    }

    fn max_events(&self) -> usize {
        MAX_EVENTS_PER_REQUEST
    }

    fn check(&self, hit: &DraftHit, now: SystemTime) -> Result<(), Reject> {
        event::check(hit, now)
    }

    fn encode(&self, hit: &DraftHit, now: SystemTime, out: &mut Vec<u8>) -> Labels {
        let (labels, dropped) = event::write(hit, now, out);
        for key in dropped {
            metrics::counter!(m::CAPI_CUSTOM_DATA_DROPPED, "key" => key).increment(1);
        }
        labels
    }

    fn event_name<'h>(&self, hit: &'h DraftHit) -> &'h str {
        event::meta_event_name(hit.event().unwrap_or_default().trim())
    }

    fn body_start(&self, out: &mut Vec<u8>) {
        client::body_start(out);
    }

    fn body_end(&self, head: &Head<'_>, out: &mut Vec<u8>) {
        client::body_end(head.credentials, head.test_event_code, out);
    }

    async fn send(&self, request: Request<'_>) -> Result<Received, SendError> {
        let Request { head, events } = request;
        let request = EventsRequest { pixel_id: head.pixel.as_str(), token: head.credentials, test_event_code: head.test_event_code, events };
        self.client.send(&request).await
    }

    fn timed_out(&self, after: Duration) -> SendError {
        SendError::Timeout(after)
    }

    fn classify(&self, result: Result<&Received, &SendError>) -> Verdict {
        classify::classify(result)
    }

    fn request_label(&self, result: Result<&Received, &SendError>) -> &'static str {
        classify::request_label(result)
    }

    fn error_code(&self, error: &SendError) -> Option<i64> {
        error.code()
    }

    fn receipt(&self, answer: &Received) -> Receipt {
        let mut fields = serde_json::Map::new();
        if let Some(n) = answer.events_received {
            fields.insert("events_received".into(), n.into());
        }
        if let Some(trace) = &answer.fbtrace_id {
            fields.insert("fbtrace_id".into(), trace.clone().into());
        }
        Receipt { counted: answer.events_received, fields }
    }
}
