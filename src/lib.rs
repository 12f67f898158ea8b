//! pixelgate: a first-party tracking-pixel edge endpoint and conversions gateway.
//!
//! A page, an e-mail or a Google Tag Manager "Custom Image" tag loads `/p.gif?…`; pixelgate
//! answers at once with a 43-byte transparent GIF and, off the response path, writes one raw
//! record per hit to a sink (NDJSON files, or Amazon Kinesis Data Firehose) and forwards the hits
//! of pixels with credentials to their destination (Meta's Conversions API).
//!
//! # Layout
//!
//! One request, followed through the house (`docs/architecture.md` walks it function by
//! function). Each module uses only modules listed after it; `tests/layers.rs` keeps it so.
//!
//! * [`config`] — the command line: flags and env vars → each room's settings.
//! * [`app`] — builds everything from the [`app::Settings`] and runs it: the server, or
//!   under Lambda the same [`app::Stack`] behind the Lambda door.
//! * [`runtime`] — the front doors (the hyper accept loop, the Lambda runtime with its drain
//!   extension) and the private `/metrics` listener.
//! * [`edge`] — the one tower `Service` both doors call: routes, answers the GIF at once, hands
//!   the captured request to the pipeline; health, readiness, the admin API (`edge::admin`).
//! * [`api`] — the `/v1/` accounts API on axum, and the CLI that makes the same calls on the store.
//! * [`forward`] — destination-agnostic forwarding (credentials gate, batching per key, the
//!   retry/split loop, outcomes, deliveries log) and [`forward::meta`], Meta's Conversions API
//!   behind the [`forward::Destination`] trait.
//! * [`notify`] — notices a tenant must act on: to an EventBridge bus and to the account's signed
//!   webhook.
//! * [`sink`] — raw-record sinks: [`sink::file`] (hourly NDJSON files) and [`sink::firehose`]
//!   (`PutRecordBatch`, per-record retry, disk spool).
//! * [`tokens`] — access tokens: the store (SQLite or DynamoDB), the moka cache in front of it,
//!   the `pixelgate tokens` commands.
//! * [`pipeline`] — one way from door to outlets: the intake (shapes captured requests in
//!   batches), typed outlet queues, the dispatcher (fan-out, byte budget, flush, shutdown).
//! * [`registry`] — accounts, keys with roles, registered pixels and their settings, the audit
//!   log; [`seal`] keeps their secrets sealed at rest.
//! * [`params`] — every parameter convention (pixelgate, Meta pixel, Meta sGTM) and POST body
//!   into one draft record; the client address; bots.
//! * [`record`] — the raw record: [`record::Hit`], [`record::DraftHit`], the JSON encoder, flags,
//!   [`record::PixelId`].
//! * [`pii`] — personal data normalised and SHA-256-hashed at the edge.
//! * Support, used by all of the above: [`error`], [`metrics`] (names), [`telemetry`] (logs),
//!   [`batch`] (the one batcher), [`retry`] (backoff), [`secret`], `clock` and `simd` (the hot
//!   path's clock and byte scans), [`address`] (which addresses are public).

pub mod address;
pub mod api;
pub mod app;
pub mod batch;
mod clock;
pub mod config;
pub mod edge;
pub mod error;
pub mod forward;
pub mod metrics;
pub mod notify;
mod pace;
pub mod params;
pub mod pii;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod retry;
pub mod runtime;
pub mod seal;
pub mod secret;
mod simd;
pub mod sink;
pub mod telemetry;
pub mod tokens;

pub use app::App;
