//! The pixel lane: a plain pixel `GET`/`HEAD` answered straight from the request head as the
//! HTTP parser left it, without building hyper's request (a URI checked byte by byte, a header
//! map) and response (a header map, its encoding). The answer is the same bytes hyper writes for
//! it; the hit is captured and handed to the dispatcher exactly as [`EdgeService`] does.
//!
//! The lane takes only what it can answer as hyper would, and nothing that hyper answers with
//! more than the GIF: an HTTP/1.1 `GET` or `HEAD` of a pixel path whose query string has only
//! bytes hyper's URI takes as they are (visible ASCII but `"`, `#`, `<`, `>`), and no header that
//! changes the framing or the answer (`Content-Length`, `Transfer-Encoding`, `Connection`,
//! `Expect`, `Upgrade`, and `Origin`, whose CORS answer may wait on the pixel's settings). The
//! front door hands everything else, and the rest of that connection, to hyper
//! (`runtime::lane`), which also bounds what a connection may hold and keeps the server's
//! deadlines. Measured in `docs/benchmarks.md#the-pixel-lane`.

use std::cell::RefCell;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::response::{GIF, GIF_HEADERS, NO_STORE};
use super::service::{EdgeService, is_pixel_path};
use crate::params::{Captured, RequestHead};
use crate::record::{Source, Timestamp};

/// A front door's fast way for requests it can answer from their head alone.
pub trait Lane {
    /// Answers `req` (a complete request head) into `out` if it is a request the lane takes;
    /// `false` leaves it, untouched, to the service.
    fn answer(&self, req: &httparse::Request<'_, '_>, out: &mut Vec<u8>) -> bool;
}

impl Lane for EdgeService {
    fn answer(&self, req: &httparse::Request<'_, '_>, out: &mut Vec<u8>) -> bool {
        let Some(peer) = self.peer else { return false };
        let Some((head_only, target)) = taken(req) else { return false };
        let received_at = Timestamp::now();
        let head = RequestHead::from_lines(head_only, target, req.headers, peer, self.edge.trusted_proxies);
        self.edge.hits[head_only as usize].increment(1);
        self.edge.lane_answers.increment(1);
        self.edge.dispatcher.submit_captured(Captured { received_at, source: Source::Pixel, head, body: None });
        write_answer(out, head_only, received_at.0);
        true
    }
}

/// Whether the lane takes `req`, and if so whether it is a `HEAD`, and its target.
fn taken<'b>(req: &httparse::Request<'_, 'b>) -> Option<(bool, &'b str)> {
    let head_only = match req.method? {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    if req.version? != 1 {
        return None;
    }
    let target = req.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !is_pixel_path(path) || !query.bytes().all(plain_query_byte) {
        return None;
    }
    let changes_answer = |name: &str| ["content-length", "transfer-encoding", "connection", "expect", "upgrade", "origin"].iter().any(|n| name.eq_ignore_ascii_case(n));
    if req.headers.iter().any(|h| changes_answer(h.name)) {
        return None;
    }
    Some((head_only, target))
}

/// A query byte that hyper's URI (the `http` crate's) takes as it is: visible ASCII but `"`,
/// `#` (a fragment, cut off), `<` and `>`. Other bytes hyper refuses, or checks as UTF-8.
fn plain_query_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E)
}

/// The answer's head up to its `date` header, and the `date` line's start, as hyper writes the
/// GIF answer ([`super::response::pixel_response`]): the status line, then the headers in order,
/// names in lower case.
static HEAD: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for (name, value) in NO_STORE.iter().chain(&GIF_HEADERS) {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    head
});

/// Appends the answer to a pixel `GET` (or, `head_only`, a `HEAD`) received at `now`.
fn write_answer(out: &mut Vec<u8>, head_only: bool, now: SystemTime) {
    out.extend_from_slice(&HEAD);
    http_date(now, out);
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(GIF);
    }
}

/// Appends `now` as an HTTP date (`Sun, 06 Dec 2026 14:54:31 GMT`), formatted once a second per
/// thread, as hyper caches its own.
fn http_date(now: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, date)| {
        if *at != secs {
            *at = secs;
            *date = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        }
        out.extend_from_slice(date.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed<R>(raw: &[u8], f: impl FnOnce(&httparse::Request<'_, '_>) -> R) -> R {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw).expect("a valid head").is_complete());
        f(&req)
    }

    #[test]
    fn takes_plain_pixel_reads_and_leaves_the_rest() {
        for (raw, expected) in [
            (&b"GET /p.gif?pixel_id=1&ev=Lead HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\n\r\n"[..], Some(false)),
            (b"HEAD /tr?id=1 HTTP/1.1\r\n\r\n", Some(true)),
            (b"GET /tr/ HTTP/1.1\r\n\r\n", Some(false)),
            (b"GET /tr/?cd[value]=9.99&dl=https%3A%2F%2Fa.b%2F HTTP/1.1\r\n\r\n", Some(false)),
            (b"GET /p.gif?id=1 HTTP/1.0\r\n\r\n", None),
            (b"POST /p.gif?id=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", None),
            (b"OPTIONS /p.gif?id=1 HTTP/1.1\r\n\r\n", None),
            (b"GET /healthz HTTP/1.1\r\n\r\n", None),
            (b"GET /p.gif/x?id=1 HTTP/1.1\r\n\r\n", None),
            (b"GET http://a/p.gif?id=1 HTTP/1.1\r\n\r\n", None),
            (b"GET /p.gif?id=1#frag HTTP/1.1\r\n\r\n", None),
            (b"GET /p.gif?a=\"b\" HTTP/1.1\r\n\r\n", None),
            (b"GET /p.gif?a=<b> HTTP/1.1\r\n\r\n", None),
            (b"GET /p.gif?a=\xc3\xa9 HTTP/1.1\r\n\r\n", None),
            (b"GET /p.gif?id=1 HTTP/1.1\r\nconnection: close\r\n\r\n", None),
            (b"GET /p.gif?id=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None),
            (b"GET /p.gif?id=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", None),
            (b"GET /p.gif?id=1 HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", None),
            (b"GET /p.gif?id=1 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", None),
            (b"GET /p.gif?id=1 HTTP/1.1\r\nOrigin: https://a.b\r\n\r\n", None),
        ] {
            assert_eq!(parsed(raw, |req| taken(req).map(|(head_only, _)| head_only)), expected, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn the_query_bytes_taken_are_those_hyper_keeps_as_they_are() {
        for b in 0..=255u8 {
            let target = [b"/p.gif?a".as_slice(), &[b]].concat();
            let hyper_takes = http::uri::PathAndQuery::try_from(target.as_slice()).is_ok_and(|pq| pq.as_str().as_bytes() == target.as_slice());
            if plain_query_byte(b) {
                assert!(hyper_takes, "byte {b:#x}");
            }
            if b.is_ascii() && hyper_takes {
                assert!(plain_query_byte(b), "byte {b:#x}");
            }
        }
    }

    #[test]
    fn the_answer_is_the_gif_with_its_headers_and_a_date() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_796_569_271);
        let mut out = Vec::new();
        write_answer(&mut out, true, at);
        let head = "HTTP/1.1 200 OK\r\ncache-control: no-cache, no-store, must-revalidate, max-age=0\r\npragma: no-cache\r\nexpires: 0\r\n\
                    content-type: image/gif\r\ncontent-length: 43\r\ncross-origin-resource-policy: cross-origin\r\n\
                    x-content-type-options: nosniff\r\ndate: Sun, 06 Dec 2026 15:01:11 GMT\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&out), head);
        out.clear();
        write_answer(&mut out, false, at);
        assert_eq!(out, [head.as_bytes(), GIF].concat());
    }
}
