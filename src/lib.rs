//! pixelgate: a first-party tracking-pixel edge endpoint.
//!
//! A page, an e-mail or a Google Tag Manager "Custom Image" tag loads `/p.gif?…`; pixelgate
//! answers at once with a 43-byte transparent GIF and, off the response path, writes one raw
//! record per hit to a sink: NDJSON files, or Amazon Kinesis Data Firehose.
//!
//! # Layout
//!
//! One request, followed through the house:
//!
//! * [`runtime::server`] — the front door: hyper accept loop, connection cap, header timeouts,
//!   graceful shutdown. Each connection gets the edge service for its peer address.
//! * [`edge`] — the one tower `Service` every front door calls: routes, answers the GIF and hands
//!   the captured request to dispatch's intake, which shapes hits in batches; reads POST bodies
//!   ([`edge::body`]) and hands their finished hits to dispatch.
//! * [`params`] — every parameter convention (pixelgate, Meta pixel, Meta sGTM) into one [`hit::Hit`];
//!   [`pii`] normalises and SHA-256-hashes personal data at the edge; [`client_ip`] applies the
//!   trusted-proxy policy.
//! * [`hit`] — the raw record (SPEC §5) and its flags.
//! * [`dispatch`] — the intake (captured requests → hits, in batches) and bounded per-outlet
//!   queues, each optionally gated; `submit` never waits, `flush` waits for delivery.
//! * [`sink`] — raw-record sinks; [`sink::file`] writes hourly NDJSON files on its own thread;
//!   [`sink::firehose`], also on its own thread, sends the same lines to Kinesis Data Firehose
//!   with `PutRecordBatch`, retries failed records one by one, and spools to disk while Firehose
//!   cannot take them.
//! * [`batch`] — the one batcher (count, bytes, age) for every outlet that batches.
//! * [`capi`] — the Conversions API outlet: hits of pixels with a stored access token, batched
//!   per pixel, forwarded to Meta as server events; what it gives up becomes a `capi_failed` record.
//! * [`app`] — builds all of the above from [`config`] and runs it until a signal.
//! * [`tokens`] — Conversions API access tokens: the store (SQLite or DynamoDB), the
//!   in-process cache in front of it, and the `pixelgate tokens` commands; [`admin`] — the admin
//!   API over the same cache.
//! * [`metrics`], [`telemetry`] — Prometheus `/metrics` on its own listener; `tracing` logs.

pub mod admin;
pub mod app;
pub mod batch;
pub mod capi;
pub mod client_ip;
mod clock;
pub mod config;
pub mod dispatch;
pub mod edge;
pub mod hit;
pub mod metrics;
pub mod params;
pub mod pii;
pub mod retry;
pub mod runtime;
pub mod secret;
pub mod sink;
mod simd;
pub mod telemetry;
pub mod tokens;

pub use app::App;
