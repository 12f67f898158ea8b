//! What shaping a hit needs of its request's head, copied out of the head into one buffer.
//!
//! hyper's request parts point into the connection's read buffer (the URI and every header value
//! are slices of it). A pixel GET is answered at once and shaped later by the intake: queued with
//! its parts, it would keep that buffer (several KiB) alive, and hyper would allocate a fresh one
//! for the connection's next request. Copying out the few hundred bytes shaping reads lets the
//! parts go as soon as the request is answered, and the queue's byte budget counts what waits.

use std::net::IpAddr;
use std::ops::Range;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use super::RequestMeta;
use super::client_ip::{self, PeerIp};
use crate::record::Flags;

/// A request head as shaping reads it: method, path, query string, the address the front door
/// saw, and the headers a hit takes something from.
///
/// Kept small (under 100 bytes): it is moved into the intake's queue, out of it and into the
/// shaper, and a move of more than 128 bytes is a `memcpy` call each time.
#[derive(Debug)]
pub struct RequestHead {
    /// Path and query (`path?query`), then the `User-Agent`, `Referer`, `Origin`, `Cookie` and
    /// (with trusted proxies) `X-Forwarded-For` values, one after another. Every part but the last
    /// was a `str`.
    text: Box<[u8]>,
    /// End of the path, at the start of `text`.
    path_end: u32,
    query: Part,
    user_agent: Part,
    referer: Part,
    /// The `Origin` header: the page of last resort for the allowed-domains check, and whom a
    /// CORS answer is for. Not part of the record.
    origin: Part,
    /// Every `Cookie` line, joined with `; ` (one cookie string to split).
    cookies: Part,
    /// Every `X-Forwarded-For` line, joined with `,` (kept only when proxies are trusted).
    forwarded_for: Part,
    /// How many proxies in front of the peer are trusted (`--trusted-proxies`).
    trusted_proxies: u32,
    /// The request's method, for the debug log.
    method: Verb,
    /// The address of whoever connected to the front door.
    peer: Option<IpAddr>,
}

/// A range of [`RequestHead::text`], or none.
#[derive(Debug, Clone, Copy)]
struct Part {
    start: u32,
    end: u32,
}

impl Part {
    const NONE: Part = Part { start: u32::MAX, end: u32::MAX };

    fn range(self) -> Option<Range<usize>> {
        (self.start != u32::MAX).then_some(self.start as usize..self.end as usize)
    }
}

/// The methods a pixel request comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Head,
    Post,
    Other,
}

impl RequestHead {
    /// Copies what shaping needs out of `parts`. `peer` is the address the front door saw, when
    /// it gave it to the service (the hyper server does, per connection); else the request's
    /// [`PeerIp`] (the Lambda door's) is used. The head remembers `trusted_proxies` for
    /// [`RequestHead::client_ip`], and keeps `X-Forwarded-For` only when it is not 0.
    pub fn capture(parts: &http::request::Parts, peer: Option<IpAddr>, trusted_proxies: usize) -> RequestHead {
        let headers = &parts.headers;
        let path = parts.uri.path();
        let query = parts.uri.query();
        // hyper keeps the URI's path and query as one string: copied as one when it is exactly
        // `path?query` (an absolute URI without a path has a made-up `/` path: copied apart).
        let path_and_query = parts.uri.path_and_query().map(|pq| pq.as_str()).filter(|pq| query.is_some_and(|q| pq.len() == path.len() + 1 + q.len()) && pq.starts_with(path));
        let method = match parts.method {
            Method::GET => Verb::Get,
            Method::HEAD => Verb::Head,
            Method::POST => Verb::Post,
            _ => Verb::Other,
        };
        Copied {
            path,
            query,
            path_and_query,
            user_agent: header_str(headers, &header::USER_AGENT),
            referer: header_str(headers, &header::REFERER),
            origin: header_str(headers, &header::ORIGIN),
            method,
            peer: peer.or_else(|| parts.extensions.get::<PeerIp>().map(|p| p.0)),
            trusted_proxies,
        }
        .head(|| headers.get_all(header::COOKIE).iter().filter_map(visible_ascii).map(str::as_bytes), || headers.get_all(&client_ip::X_FORWARDED_FOR).iter().map(|v| v.as_bytes()))
    }

    /// The same copy from a request head as the HTTP parser left it: `target` is an origin-form
    /// `path?query` that hyper would take as it is (the caller checks: see
    /// `edge::lane`), `headers` the head's lines (values as `httparse` checked them: no control
    /// byte but a tab, no DEL, as hyper's header values). A header is read as hyper's map reads
    /// it: by its name in any case, the first line for a single value, every line for the
    /// cookies and `X-Forwarded-For`.
    pub fn from_lines(head_only: bool, target: &str, headers: &[httparse::Header<'_>], peer: IpAddr, trusted_proxies: usize) -> RequestHead {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let lines = |name: &'static str| headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
        let first = |name: &'static str| lines(name).next().and_then(ascii);
        Copied {
            path,
            query,
            path_and_query: query.map(|_| target),
            user_agent: first("user-agent"),
            referer: first("referer"),
            origin: first("origin"),
            method: if head_only { Verb::Head } else { Verb::Get },
            peer: Some(peer),
            trusted_proxies,
        }
        .head(|| lines("cookie").filter_map(ascii).map(str::as_bytes), || lines("x-forwarded-for"))
    }

    /// A part of the text that was copied from a `str`.
    fn str(&self, part: Part) -> Option<&str> {
        let range = part.range()?;
        debug_assert!(std::str::from_utf8(&self.text[range.clone()]).is_ok());
        // SAFETY: every part but `forwarded_for` (never read here) is a copy of a `str`, or of
        // several joined with ASCII separators.
        Some(unsafe { std::str::from_utf8_unchecked(&self.text[range]) })
    }

    /// The request's method (`GET`, `HEAD`, `POST`; `OTHER` for none of those).
    pub fn method(&self) -> &'static str {
        match self.method {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Post => "POST",
            Verb::Other => "OTHER",
        }
    }

    /// The request path.
    pub fn path(&self) -> &str {
        self.str(Part { start: 0, end: self.path_end }).expect("the path is always there")
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.str(self.query)
    }

    /// The `Origin` header, when the request sent one (as visible ASCII).
    pub fn origin(&self) -> Option<&str> {
        self.str(self.origin)
    }

    /// The client address under the trusted-proxy policy the head was captured with
    /// ([`client_ip::resolve`]).
    pub fn client_ip(&self, flags: &mut Flags) -> Option<IpAddr> {
        let forwarded_for = self.forwarded_for.range().map_or(&[][..], |r| &self.text[r]);
        client_ip::resolve(self.peer, forwarded_for, self.trusted_proxies as usize, flags)
    }

    /// What the hit takes from the head besides its parameters, with the client address `ip`.
    pub fn meta(&self, ip: Option<IpAddr>) -> RequestMeta<'_> {
        RequestMeta { ip, user_agent: self.str(self.user_agent), referer: self.str(self.referer), cookies: self.str(self.cookies) }
    }

    /// Approximate heap bytes, for the queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<RequestHead>() + self.text.len()
    }
}

/// What a head is copied from, however the front door parsed it.
struct Copied<'h> {
    path: &'h str,
    query: Option<&'h str>,
    /// `path?query` as one string, when the request has a query and the parser kept it so.
    path_and_query: Option<&'h str>,
    user_agent: Option<&'h str>,
    referer: Option<&'h str>,
    origin: Option<&'h str>,
    method: Verb,
    peer: Option<IpAddr>,
    trusted_proxies: usize,
}

impl<'h> Copied<'h> {
    /// The head, with every visible-ASCII `Cookie` line and every `X-Forwarded-For` line (kept
    /// only when proxies are trusted) as the two functions list them.
    fn head<C, X>(self, cookies: impl Fn() -> C, forwarded_for: impl Fn() -> X) -> RequestHead
    where
        C: Iterator<Item = &'h [u8]>,
        X: Iterator<Item = &'h [u8]>,
    {
        let Copied { path, query, path_and_query, user_agent, referer, origin, method, peer, trusted_proxies } = self;
        let trusted = trusted_proxies > 0;
        let len = path_and_query.map_or(path.len() + query.map_or(0, str::len), str::len)
            + user_agent.map_or(0, str::len)
            + referer.map_or(0, str::len)
            + origin.map_or(0, str::len)
            + joined_len(cookies().map(<[u8]>::len), 2)
            + if trusted { joined_len(forwarded_for().map(<[u8]>::len), 1) } else { 0 };
        // Ranges are u32 (`u32::MAX` meaning none); a head is capped far below that (hyper's
        // header limit, API Gateway's payload limit).
        assert!(len < u32::MAX as usize, "a request head of {len} bytes");
        let mut text = Vec::with_capacity(len);
        let query = match path_and_query {
            Some(pq) => {
                text.extend_from_slice(pq.as_bytes());
                Part { start: (path.len() + 1) as u32, end: pq.len() as u32 }
            }
            None => {
                text.extend_from_slice(path.as_bytes());
                push(&mut text, query)
            }
        };
        let (user_agent, referer, origin) = (push(&mut text, user_agent), push(&mut text, referer), push(&mut text, origin));
        let cookies = join(&mut text, cookies(), b"; ");
        let forwarded_for = if trusted { join(&mut text, forwarded_for(), b",") } else { Part::NONE };
        debug_assert_eq!(text.len(), len, "room made for exactly the head, so boxing it does not reallocate");
        RequestHead {
            text: text.into_boxed_slice(),
            path_end: path.len() as u32,
            query,
            user_agent,
            referer,
            origin,
            cookies,
            forwarded_for,
            trusted_proxies: u32::try_from(trusted_proxies).unwrap_or(u32::MAX),
            method,
            peer,
        }
    }
}

/// Appends `s`; where it is.
fn push(text: &mut Vec<u8>, s: Option<&str>) -> Part {
    let Some(s) = s else { return Part::NONE };
    let start = text.len() as u32;
    text.extend_from_slice(s.as_bytes());
    Part { start, end: text.len() as u32 }
}

/// The length of lines of `lines` bytes joined with a separator of `sep` bytes.
fn joined_len(lines: impl Iterator<Item = usize>, sep: usize) -> usize {
    let (n, len) = lines.fold((0usize, 0), |(n, len), l| (n + 1, len + l));
    len + n.saturating_sub(1) * sep
}

/// Appends `lines` joined with `separator`; where they are (none if there are none).
fn join<'h>(text: &mut Vec<u8>, lines: impl Iterator<Item = &'h [u8]>, separator: &[u8]) -> Part {
    let start = text.len();
    for (i, line) in lines.enumerate() {
        if i > 0 {
            text.extend_from_slice(separator);
        }
        text.extend_from_slice(line);
    }
    if text.len() == start { Part::NONE } else { Part { start: start as u32, end: text.len() as u32 } }
}

/// A header's value when it is visible ASCII ([`visible_ascii`]); other values are ignored.
fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    visible_ascii(headers.get(name)?)
}

/// The value as text when it is visible ASCII, as `HeaderValue::to_str` accepts it. A
/// `HeaderValue` never holds control bytes other than a tab, nor DEL (its constructors and
/// hyper's parser refuse them), so that is plain ASCII here: checked a word at a time instead of
/// `to_str`'s byte loop.
fn visible_ascii(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    debug_assert_eq!(bytes.is_ascii(), value.to_str().is_ok());
    // SAFETY: ASCII is UTF-8.
    bytes.is_ascii().then(|| unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// A header line's value as text when it is plain ASCII: [`visible_ascii`] for a value as
/// `httparse` left it (which holds no control byte but a tab, and no DEL).
fn ascii(value: &[u8]) -> Option<&str> {
    // SAFETY: ASCII is UTF-8.
    value.is_ascii().then(|| unsafe { std::str::from_utf8_unchecked(value) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Flag;

    fn parts(headers: &[(&str, &[u8])]) -> http::request::Parts {
        let mut req = http::Request::get("/tr/?id=1&ev=PageView").body(()).unwrap();
        for (name, value) in headers {
            req.headers_mut().append(HeaderName::from_bytes(name.as_bytes()).unwrap(), http::HeaderValue::from_bytes(value).unwrap());
        }
        req.extensions_mut().insert(PeerIp("10.0.0.9".parse().unwrap()));
        req.into_parts().0
    }

    #[test]
    fn keeps_what_shaping_reads_and_nothing_that_is_not_text() {
        let p = parts(&[
            ("user-agent", b"Mozilla/5.0"),
            ("referer", b"https://shop.example/a"),
            ("origin", b"https://shop.example"),
            ("cookie", b"_fbp=fb.1.1.2"),
            ("cookie", b"_fbc=fb.1.1.x"),
            ("x-forwarded-for", b"203.0.113.7"),
        ]);
        let head = RequestHead::capture(&p, None, 0);
        assert_eq!((head.method(), head.path(), head.query()), ("GET", "/tr/", Some("id=1&ev=PageView")));
        let meta = head.meta(None);
        assert_eq!((meta.user_agent, meta.referer), (Some("Mozilla/5.0"), Some("https://shop.example/a")));
        assert_eq!(meta.cookies, Some("_fbp=fb.1.1.2; _fbc=fb.1.1.x"), "every line, as one cookie string");
        assert_eq!(head.origin(), Some("https://shop.example"));
        assert!(head.forwarded_for.range().is_none(), "X-Forwarded-For is not read without trusted proxies");
        assert!(std::mem::size_of::<RequestHead>() <= 96, "small enough to move without a memcpy call");
        let mut flags = Flags::default();
        assert_eq!(head.client_ip(&mut flags), Some("10.0.0.9".parse().unwrap()), "the request's PeerIp");

        // A user agent with bytes that are not visible ASCII is ignored, as `HeaderValue::to_str` does.
        let head = RequestHead::capture(&parts(&[("user-agent", b"caf\xe9")]), None, 0);
        assert_eq!(head.meta(None).user_agent, None);
    }

    #[test]
    fn a_cookie_line_that_is_not_ascii_is_left_out_and_a_made_up_path_keeps_its_query() {
        let p = parts(&[("cookie", b"a=1"), ("cookie", b"b=caf\xe9"), ("cookie", b"c=3"), ("x-forwarded-for", b"192.0.2.1")]);
        // The debug assertion in `capture` checks the room it made was exact, for each of these.
        let head = RequestHead::capture(&p, None, 1);
        assert_eq!(head.meta(None).cookies, Some("a=1; c=3"));
        let mut flags = Flags::default();
        assert_eq!(head.client_ip(&mut flags), Some("192.0.2.1".parse().unwrap()));

        let absolute = http::Request::get("http://px.example?id=1").body(()).unwrap().into_parts().0;
        let head = RequestHead::capture(&absolute, None, 0);
        assert_eq!((head.path(), head.query()), ("/", Some("id=1")));
    }

    #[test]
    fn visible_ascii_accepts_what_to_str_accepts_for_every_byte() {
        for b in 0..=255u8 {
            if let Ok(v) = http::HeaderValue::from_bytes(&[b'a', b, b'z']) {
                assert_eq!(visible_ascii(&v), v.to_str().ok(), "byte {b:#x}");
            }
        }
    }

    #[test]
    fn a_head_from_parsed_lines_is_the_head_hyper_s_parts_give() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let heads: [&[u8]; 5] = [
            b"GET /p.gif?pixel_id=1&ev=Lead HTTP/1.1\r\nUser-Agent: a\r\nuser-agent: b\r\nREFERER: https://r.test/\r\nCookie: x=1\r\ncookie: y=\xc3\xa9\r\nCookie: z=3\r\n\
              X-Forwarded-For: 198.51.100.1, 203.0.113.7\r\nx-forwarded-for: 192.0.2.4\r\nOrigin: https://o.test\r\n\r\n",
            b"HEAD /tr HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\r\nReferer: \r\n\r\n",
            b"GET /tr/? HTTP/1.1\r\nUser-Agent:\tspaced\t \r\nCookie:\r\n\r\n",
            b"GET /p.gif?a=%20b&c=[d] HTTP/1.1\r\n\r\n",
            b"GET /tr?id=1 HTTP/1.1\r\nX-Forwarded-For: \xff\r\nUser-Agent: \x7e\r\n\r\n",
        ];
        for raw in heads {
            let mut lines = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut lines);
            assert!(req.parse(raw).unwrap().is_complete());
            let mut built = http::Request::builder().method(req.method.unwrap()).uri(req.path.unwrap());
            for h in req.headers.iter() {
                built = built.header(h.name, HeaderValue::from_bytes(h.value).unwrap());
            }
            let parts = built.body(()).unwrap().into_parts().0;
            for trusted in [0, 1] {
                let from_lines = RequestHead::from_lines(req.method == Some("HEAD"), req.path.unwrap(), req.headers, peer, trusted);
                let from_parts = RequestHead::capture(&parts, Some(peer), trusted);
                assert_eq!(format!("{from_lines:?}"), format!("{from_parts:?}"), "{}", String::from_utf8_lossy(raw));
            }
        }
    }

    #[test]
    fn the_door_s_peer_wins_and_forwarded_lines_keep_their_hops() {
        let p = parts(&[("x-forwarded-for", b"198.51.100.1, 203.0.113.7"), ("x-forwarded-for", b"192.0.2.4")]);
        let door = Some("10.0.0.1".parse().unwrap());
        let mut flags = Flags::default();
        assert_eq!(RequestHead::capture(&p, door, 0).client_ip(&mut flags), door);
        assert_eq!(RequestHead::capture(&p, door, 1).client_ip(&mut flags), Some("192.0.2.4".parse().unwrap()));
        let head = RequestHead::capture(&p, door, 2);
        assert_eq!(head.client_ip(&mut flags), Some("203.0.113.7".parse().unwrap()));
        assert!(!flags.contains(Flag::BadForwardedFor));
        assert!(head.approx_bytes() > head.text.len());

        // No query, no headers: the path alone.
        let bare = RequestHead::capture(&http::Request::post("/p.gif").body(()).unwrap().into_parts().0, door, 0);
        assert_eq!((bare.method(), bare.path(), bare.query()), ("POST", "/p.gif", None));
        let meta = bare.meta(None);
        assert_eq!((meta.user_agent, meta.referer, meta.cookies, bare.origin()), (None, None, None, None));
    }
}
