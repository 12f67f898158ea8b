//! The one way a hit is shaped, whichever door it came through: a [`Captured`] request (its
//! head, copied out, and a POST's body) becomes a [`DraftHit`]: query parameters, then body
//! parameters, then what the head carries (client address, user agent, page URL fallback,
//! cookies). Its flags are counted here, once per hit.

use super::body::{self, Body};
use super::{HitBuilder, ParseSettings, RequestHead};
use crate::metrics as m;
use crate::record::{DraftHit, Fields, Timestamp};

/// A pixel request as the edge captured it, for the intake to shape.
#[derive(Debug)]
pub struct Captured {
    /// When the edge received it.
    pub received_at: Timestamp,
    /// What shaping reads of its head (the query among it), copied out of the request.
    pub head: RequestHead,
    /// A POST's body, read by the edge; boxed so that a GET's capture stays small to move.
    pub body: Option<Box<Body>>,
}

impl Captured {
    /// Approximate heap bytes, counted against the queue budget while it waits.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Captured>() + self.head.approx_bytes() + self.body.as_ref().map_or(0, |b| b.approx_bytes())
    }
}

/// The draft record of a captured request.
pub fn shape(captured: Captured, settings: &ParseSettings) -> DraftHit {
    let Captured { received_at, head, body } = captured;
    let mut hit = HitBuilder::new(settings, received_at);
    if let Some(query) = head.query() {
        hit.add_encoded(query);
    }
    if let Some(body) = body {
        body::add_params(&body, &mut hit);
    }
    let ip = head.client_ip(hit.flags_mut());
    let hit = hit.finish_draft(head.meta(ip));
    for flag in hit.flags().iter() {
        metrics::counter!(m::HIT_FLAGS, "flag" => flag.as_str()).increment(1);
    }
    tracing::debug!(method = head.method(), path = head.path(), pixel_id = hit.pixel_id(), event = hit.event(), event_id = hit.event_id(), flags = ?hit.flags(), "hit");
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_stays_small_to_move() {
        // Moved into the intake's queue and out again per hit: over 128 bytes, each move is a
        // `memcpy` call.
        assert!(std::mem::size_of::<Captured>() <= 128, "{}", std::mem::size_of::<Captured>());
    }

    #[test]
    fn query_then_body_then_head() {
        let req = http::Request::post("/tr?id=1&ev=PageView").header("user-agent", "Mozilla/5.0").body(()).unwrap();
        let head = RequestHead::capture(&req.into_parts().0, Some("192.0.2.1".parse().unwrap()), 0);
        let body = Body::Read { content_type: "application/x-www-form-urlencoded".into(), bytes: "ev=Lead&cd%5Bv%5D=2".into() };
        let hit = shape(Captured { received_at: Timestamp::now(), head, body: Some(Box::new(body)) }, &ParseSettings::default()).to_hit();
        assert_eq!(hit.event.as_deref(), Some("PageView"), "the query's first value stays");
        assert_eq!((hit.attrs["v"].as_str(), hit.user_agent.as_deref()), ("2", Some("Mozilla/5.0")));
        assert_eq!(hit.ip, Some("192.0.2.1".parse().unwrap()));
    }
}
