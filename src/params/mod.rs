//! Every parameter convention pixelgate accepts, turned into one draft record
//! (`docs/parameters.md#parameters`).
//!
//! Three families of names describe the same concepts: pixelgate's own (`evat_k`, `usat_k`,
//! `pixel_id`, …), the Meta pixel's `/tr` wire format (`cd[k]`, `ud[k]`, `id`, `ev`, `eid`, `dl`,
//! `rl`) and Meta's server-side GTM tag (`x-fb-cd-k`, `x-fb-ud-k`).
//!
//! * [`names`] — [`classify`]: a parameter name to its concept.
//! * [`builder`] — [`HitBuilder`]: precedence (canonical beats alias, first beats later), limits,
//!   personal data hashed through [`crate::pii`], flags; finishes a [`DraftHit`].
//! * `decode` — the query splitter and percent-decoder of the hot path.
//! * [`head`] — [`RequestHead`]: what shaping reads of a request's head, copied out of it.
//! * [`body`] — POST bodies (form, multipart, JSON, `text/plain`) into the builder.
//! * [`client_ip`] — the trusted-proxy policy; [`bots`] — user agents of crawlers and scripts.
//! * [`event`] — an event sent to an input (the API, EventBridge, SQS) as a [`Captured`]
//!   request, shaped like a pixel hit.
//! * [`shape`] — [`Captured`] (a request as the edge captured it) → [`DraftHit`]: the one way every
//!   door's hit is shaped.

pub mod body;
pub mod bots;
pub mod builder;
pub mod client_ip;
mod decode;
pub mod event;
pub mod head;
pub mod names;
pub mod shape;

use crate::pii::PiiRules;
pub use crate::record::DraftHit;
pub use body::Body;
pub use builder::{HitBuilder, RequestMeta};
pub use client_ip::PeerIp;
pub use head::RequestHead;
pub use names::{Concept, classify};
pub use shape::{Captured, pixel_in_query, pixel_named, shape};

/// Bounds on what one request may contribute to a record.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Parameters read per request (query and body together); the rest are ignored.
    pub max_params: usize,
    /// Longest value kept, in bytes; longer values are cut at a character boundary.
    pub max_value_bytes: usize,
    /// Longest parameter name; longer names are ignored.
    pub max_key_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_params: 256, max_value_bytes: 8192, max_key_bytes: 256 }
    }
}

/// What the parser needs besides the parameters themselves.
#[derive(Debug, Clone, Default)]
pub struct ParseSettings {
    /// Size limits.
    pub limits: Limits,
    /// Personal-data normalisation settings.
    pub pii: PiiRules,
}
