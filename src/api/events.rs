//! `POST /v1/events` (`docs/api.md#events`): events from a platform's backend, each taken
//! through the pixel's own pipeline (hashing, record with `"source":"api"`, the pixel's
//! settings, destinations).
//!
//! The body is a JSON array of up to [`MAX_EVENTS`] objects in a pixel hit's parameter names plus
//! the end user's `ip` and `user_agent`. Each event is checked on its own and the answer lists
//! the ones refused by index, with the field to fix: one bad event never refuses the batch. What
//! is refused as a whole is a body that is not such an array.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Request, State};
use serde::Serialize;
use serde_json::Value;

use super::ApiState;
use super::error::ApiError;
use super::extract::{Caller, read_body};
use crate::params::event;
use crate::record::{PixelId, Source};
use crate::registry::{Access, Principal, RegistryError};

/// Most events in one request.
pub const MAX_EVENTS: usize = 1_000;

/// Largest body: a thousand events of a few kilobytes each.
pub const MAX_EVENTS_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The answer.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// Events taken into the pipeline.
    pub accepted: usize,
    /// The others, by position in the array.
    pub rejected: Vec<Rejected>,
}

/// One refused event.
#[derive(Debug, Serialize)]
pub struct Rejected {
    /// Its index in the array.
    pub index: usize,
    /// Why, naming the field.
    pub error: String,
}

/// `POST /v1/events`.
pub async fn post(State(s): State<ApiState>, Caller(who): Caller, req: Request) -> Result<Json<Answer>, ApiError> {
    let bytes = read_body(req.into_body(), MAX_EVENTS_BODY_BYTES, "the body is over 8 MiB; send at most 1,000 events", s.body_timeout).await?;
    let events = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(events)) => events,
        Ok(_) => return Err(RegistryError::Invalid("body: must be a JSON array of event objects".into()).into()),
        Err(e) => return Err(RegistryError::Invalid(format!("body: not JSON: {e}")).into()),
    };
    if events.len() > MAX_EVENTS {
        return Err(RegistryError::Invalid(format!("body: {} events; send at most {MAX_EVENTS} per request", events.len())).into());
    }
    let mut may_write = Permissions::default();
    let mut answer = Answer { accepted: 0, rejected: Vec::new() };
    for (index, one) in events.into_iter().enumerate() {
        let outcome = match event::captured(one, Source::Api) {
            Ok((captured, pixel)) => match may_write.check(&s, &who, &pixel).await {
                Ok(()) => s.dispatcher.try_submit_captured(captured).map_err(|reason| format!("not taken: the server has no room for it now ({reason}); send it again")),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => answer.accepted += 1,
            Err(error) => answer.rejected.push(Rejected { index, error }),
        }
    }
    metrics::counter!(crate::metrics::INPUT_EVENTS, "source" => "api", "outcome" => "accepted").increment(answer.accepted as u64);
    metrics::counter!(crate::metrics::INPUT_EVENTS, "source" => "api", "outcome" => "rejected").increment(answer.rejected.len() as u64);
    Ok(Json(answer))
}

/// What the caller may do with each pixel named in one request, asked once per pixel.
#[derive(Default)]
struct Permissions {
    known: HashMap<PixelId, Result<(), String>>,
}

impl Permissions {
    async fn check(&mut self, s: &ApiState, who: &Principal, pixel: &PixelId) -> Result<(), String> {
        if let Some(known) = self.known.get(pixel) {
            return known.clone();
        }
        let outcome = match s.registry.pixel_access(who, pixel.as_str(), Access::Write).await {
            Ok(_) => Ok(()),
            // The same words for a pixel of another account as for one that does not exist.
            Err(RegistryError::NotFound(_)) => Err("pixel_id: no such pixel for this key".to_owned()),
            Err(RegistryError::Forbidden(_)) => Err("pixel_id: this key may not send events for this pixel".to_owned()),
            Err(e) => Err(format!("pixel_id: could not be checked ({e}); send it again")),
        };
        self.known.insert(*pixel, outcome.clone());
        outcome
    }
}
