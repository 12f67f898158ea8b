//! The one way a hit is shaped, whichever door it came through: a [`Captured`] request (its
//! head, copied out, and a POST's body) becomes a [`DraftHit`]: query parameters, then body
//! parameters, then what the head carries (client address, user agent, page URL fallback,
//! cookies). Its flags are counted here, once per hit.

use super::body::{self, Body};
use super::names::{Concept, classify};
use super::{HitBuilder, ParseSettings, RequestHead};
use crate::metrics as m;
use crate::record::{DraftHit, Fields, PixelId, PixelIdError, Source, Timestamp};

/// A pixel request as the edge captured it, for the intake to shape.
#[derive(Debug)]
pub struct Captured {
    /// When the edge received it.
    pub received_at: Timestamp,
    /// Where it came from: a pixel request, or an event sent to an input.
    pub source: Source,
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

/// The draft record of a captured request. The capture is only read: its head still has what
/// the record leaves out (the `Origin` header).
pub fn shape(captured: &Captured, settings: &ParseSettings) -> DraftHit {
    let Captured { received_at, source, head, body } = captured;
    let mut hit = HitBuilder::new(settings, *received_at);
    if let Some(query) = head.query() {
        hit.add_encoded(query);
    }
    if let Some(body) = body {
        body::add_params(body, &mut hit);
    }
    let ip = head.client_ip(hit.flags_mut());
    let mut hit = hit.finish_draft(head.meta(ip));
    hit.set_source(*source);
    for flag in hit.flags().iter() {
        metrics::counter!(m::HIT_FLAGS, "flag" => flag.as_str()).increment(1);
    }
    tracing::debug!(method = head.method(), path = head.path(), pixel_id = hit.pixel_id(), event = hit.event(), event_id = hit.event_id(), flags = ?hit.flags(), "hit");
    hit
}

/// The pixel a query string names (`pixel_id`, else `id` or `pid`; the first non-empty value of
/// the best-ranked name, as the hit's own `pixel_id` is chosen), without shaping a hit: what the
/// edge needs to answer a CORS preflight.
pub fn pixel_in_query(query: &str) -> Result<PixelId, PixelIdError> {
    let mut named = Named::default();
    named.encoded(query);
    named.pixel()
}

/// The pixel a captured request names, in its query string or else its body (a form or a JSON
/// object; a multipart body is not looked into), chosen as shaping chooses the hit's `pixel_id`:
/// what the edge needs to answer a pixel `POST` from a page's script with CORS headers.
pub fn pixel_named(captured: &Captured) -> Result<PixelId, PixelIdError> {
    let mut named = Named::default();
    if let Some(query) = captured.head.query() {
        named.encoded(query);
    }
    if let Some(body) = captured.body.as_deref().filter(|_| !named.canonical()) {
        body::names(body, &mut |key, value| named.consider(key, value));
    }
    named.pixel()
}

/// The best pixel id value seen so far, and the rank of the name it came with. Off the hot path
/// (the edge asks only for CORS): written apart from the builder's decoder and classifier, so as
/// not to change how those are compiled into the builder.
#[derive(Default)]
struct Named {
    best: Option<(u8, String)>,
}

impl Named {
    /// Considers the pairs of a query string or form body.
    fn encoded(&mut self, input: &str) {
        for (key, value) in form_urlencoded::parse(input.as_bytes()) {
            self.consider(&key, &value);
        }
    }

    /// Considers one decoded parameter: a pixel id name beats a worse-ranked one, and the first
    /// of a rank stays (an empty value counts as absent), the names ranked by
    /// [`super::names::classify`].
    fn consider(&mut self, key: &str, value: &str) {
        let Concept::PixelId(rank) = classify(key) else { return };
        if !value.is_empty() && self.best.as_ref().is_none_or(|(best, _)| rank < *best) {
            self.best = Some((rank, value.to_owned()));
        }
    }

    /// Whether a canonical name gave the value: nothing later can beat it.
    fn canonical(&self) -> bool {
        self.best.as_ref().is_some_and(|(rank, _)| *rank == 0)
    }

    fn pixel(&self) -> Result<PixelId, PixelIdError> {
        PixelId::of_field(self.best.as_ref().map(|(_, v)| v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_a_query_names_is_the_one_the_hit_gets() {
        let settings = ParseSettings::default();
        for query in ["pixel_id=12&id=34", "id=34&pixel_id=12", "pid=&id=5&pid=6", "ID=7", "x=1&pixel%5Fid=8", "pixel_id=abc", "", "pixel_id=&x=1", "id=1&id=2"] {
            let req = http::Request::get(format!("/tr?{query}")).body(()).unwrap();
            let captured = Captured { received_at: Timestamp::now(), source: Source::Pixel, head: RequestHead::capture(&req.into_parts().0, None, 0), body: None };
            assert_eq!(pixel_in_query(query), shape(&captured, &settings).pixel(), "{query}");
        }
        assert_eq!(pixel_in_query("id=34&pixel_id=12").unwrap().as_str(), "12");
    }

    #[test]
    fn the_pixel_a_post_names_may_be_in_its_body() {
        let settings = ParseSettings::default();
        for (query, content_type, body) in [
            ("", "application/json", r#"{"pixel_id":"12","event":"Lead"}"#),
            ("", "text/plain", r#"{"id":12}"#),
            ("id=5", "application/json", r#"{"pixel_id":"12"}"#),
            ("pixel_id=5", "application/x-www-form-urlencoded", "pixel_id=12"),
            ("", "application/x-www-form-urlencoded", "id=&pid=7"),
            ("", "text/plain", "id=9"),
            ("", "application/json", r#"{"pixel_id":null,"id":"3"}"#),
            ("", "application/json", "[1]"),
            ("id=4", "image/png", "id=5"),
        ] {
            let req = http::Request::post(format!("/tr?{query}")).body(()).unwrap();
            let head = RequestHead::capture(&req.into_parts().0, None, 0);
            let read = Body::Read { content_type: content_type.into(), bytes: body.to_owned().into() };
            let captured = Captured { received_at: Timestamp::now(), source: Source::Pixel, head, body: Some(Box::new(read)) };
            assert_eq!(pixel_named(&captured), shape(&captured, &settings).pixel(), "{query} {content_type} {body}");
        }
    }

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
        let hit = shape(&Captured { received_at: Timestamp::now(), source: Source::Pixel, head, body: Some(Box::new(body)) }, &ParseSettings::default()).to_hit();
        assert_eq!(hit.event.as_deref(), Some("PageView"), "the query's first value stays");
        assert_eq!((hit.attrs["v"].as_str(), hit.user_agent.as_deref()), ("2", Some("Mozilla/5.0")));
        assert_eq!(hit.ip, Some("192.0.2.1".parse().unwrap()));
    }
}
