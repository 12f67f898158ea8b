//! The edge: the one tower `Service` both front doors call (`runtime::server`'s hyper loop, the
//! Lambda door), and everything a request gets back.
//!
//! * [`service`] — [`EdgeService`]: routes; answers a pixel GET/HEAD inside `Service::call`
//!   (no state machine, no allocation), a POST once its body is read; health, readiness and the
//!   admin API. CORS on the pixel paths: a preflight (`OPTIONS`) and an answer to a request with
//!   an `Origin` get CORS headers when the pixel allows the origin (its settings from the
//!   [`Directory`]'s cache, or the store within 50 ms); only a request without `Origin` (an
//!   image load) is answered inside `call`.
//! * [`capture`] — what is kept of a pixel request ([`crate::params::Captured`]) for the intake
//!   to shape after the answer; the POST body read within limits.
//! * [`lane`] — [`Lane`]: a plain pixel `GET`/`HEAD` answered from the head as the HTTP parser
//!   left it, the same answer in fewer steps; the hyper server tries it first
//!   (`runtime::lane`).
//! * [`response`] — the GIF and its headers, JSON answers.
//! * [`ready`] — `/readyz`.
//!
//! The answer never waits on an outlet: the edge hands the captured request to the
//! [`Dispatcher`] and answers. The front door supplies the client's address: the hyper server per
//! connection ([`EdgeService::for_peer`]), the Lambda door per request as a
//! [`PeerIp`](crate::params::PeerIp) extension.

pub mod capture;
pub mod lane;
pub mod ready;
pub mod response;
pub mod service;

use std::sync::Arc;

use metrics::Counter;

pub use self::capture::BodyLimits;
pub use self::lane::Lane;
pub use self::response::{EdgeBody, GIF, json, json_error};
pub use self::service::{EdgeFuture, EdgeService};
use crate::api::Api;
use crate::forward::ForwardStatus;
use crate::metrics as m;
use crate::pipeline::Dispatcher;
use crate::registry::Directory;
use crate::sink::Health;
use crate::tokens::TokenCache;

/// Everything the edge service shares across requests.
pub struct Edge {
    /// How many `X-Forwarded-For` hops to trust.
    pub trusted_proxies: usize,
    /// Bounds on POST bodies.
    pub body_limits: BodyLimits,
    /// Where captured requests go.
    pub dispatcher: Dispatcher,
    /// The raw-record sink's state, for `/readyz`.
    pub sink_health: Arc<Health>,
    /// The access-token store behind its cache, for `/readyz`.
    pub tokens: Arc<TokenCache>,
    /// The API under `/v1/`.
    pub api: Api,
    /// Registered pixels and their settings (CORS on the pixel paths).
    pub directory: Arc<Directory>,
    /// Forwarding's state per destination, for `/readyz`.
    pub forwarding: Vec<Arc<ForwardStatus>>,
    /// Hit counters by method (GET, HEAD, POST), resolved once so the hot path skips the
    /// registry lookup.
    hits: [Counter; 3],
    /// Pixel reads the server's lane answered ([`lane`]).
    lane_answers: Counter,
}

impl Edge {
    /// Shared state for the edge service.
    pub fn new(
        trusted_proxies: usize,
        body_limits: BodyLimits,
        dispatcher: Dispatcher,
        sink_health: Arc<Health>,
        tokens: Arc<TokenCache>,
        api: Api,
        directory: Arc<Directory>,
    ) -> Self {
        let hits = ["GET", "HEAD", "POST"].map(|method| metrics::counter!(m::HITS, "method" => method));
        let lane_answers = metrics::counter!(m::LANE_ANSWERS);
        Edge { trusted_proxies, body_limits, dispatcher, sink_health, tokens, api, directory, forwarding: Vec::new(), hits, lane_answers }
    }

    /// Shows these destinations' forwarding state in `/readyz`.
    pub fn with_forwarding(mut self, forwarding: Vec<Arc<ForwardStatus>>) -> Self {
        self.forwarding = forwarding;
        self
    }
}
