//! What shaping a hit needs of its request's head, copied out of the head into one buffer.
//!
//! hyper's request parts point into the connection's read buffer (the URI and every header value
//! are slices of it). A pixel GET is answered at once and shaped later by the intake: queued with
//! its parts, it would keep that buffer (several KiB) alive, and hyper would allocate a fresh one
//! for the connection's next request. Copying out the few hundred bytes shaping reads lets the
//! parts go as soon as the request is answered, and the queue's byte budget counts what waits.

use std::net::IpAddr;
use std::ops::Range;

use http::header::{self, HeaderName};
use http::{HeaderMap, Method};

use super::RequestMeta;
use crate::client_ip::{self, PeerIp};
use crate::hit::Flags;

/// A request head as shaping reads it: method, path, query string, the address the front door
/// saw, and the headers a hit takes something from.
#[derive(Debug)]
pub struct RequestHead {
    /// The request's method, for the debug log.
    pub method: Method,
    /// Path, query, `User-Agent`, `Referer` and `Cookie` values, one after another.
    text: String,
    path: Range<usize>,
    query: Option<Range<usize>>,
    user_agent: Option<Range<usize>>,
    referer: Option<Range<usize>>,
    cookies: Vec<Range<usize>>,
    /// `X-Forwarded-For` values joined with `,` (kept only when proxies are trusted).
    forwarded_for: Vec<u8>,
    /// How many proxies in front of the peer are trusted (`--trusted-proxies`).
    trusted_proxies: usize,
    /// The address of whoever connected to the front door.
    peer: Option<IpAddr>,
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
        let user_agent = header_str(headers, &header::USER_AGENT);
        let referer = header_str(headers, &header::REFERER);
        let cookies = || headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
        let len = path.len() + [query, user_agent, referer].iter().flatten().map(|s| s.len()).sum::<usize>() + cookies().map(str::len).sum::<usize>();
        let mut text = String::with_capacity(len);
        let path = push(&mut text, path);
        let query = query.map(|q| push(&mut text, q));
        let user_agent = user_agent.map(|ua| push(&mut text, ua));
        let referer = referer.map(|r| push(&mut text, r));
        let cookies = cookies().map(|c| push(&mut text, c)).collect();
        let forwarded_for = if trusted_proxies > 0 { client_ip::forwarded_for(headers) } else { Vec::new() };
        let peer = peer.or_else(|| parts.extensions.get::<PeerIp>().map(|p| p.0));
        RequestHead { method: parts.method.clone(), text, path, query, user_agent, referer, cookies, forwarded_for, trusted_proxies, peer }
    }

    /// The request path.
    pub fn path(&self) -> &str {
        &self.text[self.path.clone()]
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.clone().map(|r| &self.text[r])
    }

    /// The client address under the trusted-proxy policy the head was captured with
    /// ([`client_ip::resolve`]).
    pub fn client_ip(&self, flags: &mut Flags) -> Option<IpAddr> {
        client_ip::resolve(self.peer, &self.forwarded_for, self.trusted_proxies, flags)
    }

    /// What the hit takes from the head besides its parameters, with the client address `ip`.
    pub fn meta(&self, ip: Option<IpAddr>) -> RequestMeta<'_> {
        RequestMeta {
            ip,
            user_agent: self.user_agent.clone().map(|r| &self.text[r]),
            referer: self.referer.clone().map(|r| &self.text[r]),
            cookies: self.cookies.iter().map(|r| &self.text[r.clone()]).collect(),
        }
    }

    /// Approximate heap bytes, for the queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<RequestHead>() + self.text.capacity() + self.forwarded_for.capacity() + self.cookies.capacity() * std::mem::size_of::<Range<usize>>()
    }
}

fn push(text: &mut String, s: &str) -> Range<usize> {
    let start = text.len();
    text.push_str(s);
    start..text.len()
}

/// A header's value when it is visible ASCII (`HeaderValue::to_str`); other values are ignored.
fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hit::Flag;

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
            ("cookie", b"_fbp=fb.1.1.2"),
            ("cookie", b"_fbc=fb.1.1.x"),
            ("x-forwarded-for", b"203.0.113.7"),
        ]);
        let head = RequestHead::capture(&p, None, 0);
        assert_eq!((head.method.as_str(), head.path(), head.query()), ("GET", "/tr/", Some("id=1&ev=PageView")));
        let meta = head.meta(None);
        assert_eq!((meta.user_agent, meta.referer), (Some("Mozilla/5.0"), Some("https://shop.example/a")));
        assert_eq!(meta.cookies, ["_fbp=fb.1.1.2", "_fbc=fb.1.1.x"]);
        assert!(head.forwarded_for.is_empty(), "X-Forwarded-For is not read without trusted proxies");
        let mut flags = Flags::default();
        assert_eq!(head.client_ip(&mut flags), Some("10.0.0.9".parse().unwrap()), "the request's PeerIp");

        // A user agent with bytes that are not visible ASCII is ignored, as `HeaderValue::to_str` does.
        let head = RequestHead::capture(&parts(&[("user-agent", b"caf\xe9")]), None, 0);
        assert_eq!(head.meta(None).user_agent, None);
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
        assert!(head.approx_bytes() > head.text.len() + head.forwarded_for.len());
    }
}
