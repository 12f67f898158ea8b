//! Which address is the client's: the peer the front door saw, or a trusted `X-Forwarded-For` hop.
//!
//! Each front door tells the edge service the peer it knows: the hyper server the socket peer, per
//! connection; the Lambda door `requestContext.http.sourceIp`, as a [`PeerIp`] extension on each
//! request. The trusted-proxy policy is applied here, once, for both.

use std::net::{IpAddr, SocketAddr};

use http::header::HeaderName;

use crate::record::{Flag, Flags};

/// The address of whoever connected to the front door, as a request extension (the Lambda door's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIp(pub IpAddr);

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The `X-Forwarded-For` lines of `headers` joined with `,`: the same hops as the lines read one
/// by one, in one buffer (the tests' helper; a captured request head joins them the same way).
#[cfg(test)]
pub fn forwarded_for(headers: &http::HeaderMap) -> Vec<u8> {
    let mut joined = Vec::new();
    for (i, line) in headers.get_all(&X_FORWARDED_FOR).iter().enumerate() {
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(line.as_bytes());
    }
    joined
}

/// The client address under a policy of `trusted` proxies in front of the peer, given the
/// request's `X-Forwarded-For` lines joined with `,`.
///
/// With `trusted == 0` the peer is the client and `X-Forwarded-For` is ignored, so a spoofed
/// header changes nothing. With `trusted == N` the peer is the N-th proxy and the client is the
/// N-th `X-Forwarded-For` entry from the right. A chain shorter than promised yields its leftmost
/// entry; an entry that is not an address yields the peer; both raise [`Flag::BadForwardedFor`].
pub fn resolve(peer: Option<IpAddr>, forwarded_for: &[u8], trusted: usize, flags: &mut Flags) -> Option<IpAddr> {
    let peer = peer.map(canonical);
    if trusted == 0 {
        return peer;
    }
    // Split the raw bytes: a client's own junk in the leftmost hop must not hide the hops that
    // trusted proxies appended to the same header line.
    let hops: Vec<&[u8]> = forwarded_for.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|h| !h.is_empty()).collect();
    if hops.len() < trusted {
        flags.set(Flag::BadForwardedFor);
    }
    let Some(hop) = hops.len().checked_sub(trusted).map(|i| hops[i]).or(hops.first().copied()) else {
        return peer;
    };
    match std::str::from_utf8(hop).ok().and_then(parse_hop) {
        Some(ip) => Some(canonical(ip)),
        None => {
            flags.set(Flag::BadForwardedFor);
            peer
        }
    }
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80` and quoted forms.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches('"');
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip())).or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) become plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_header_is_ignored() {
        let mut f = Flags::default();
        assert_eq!(resolve(ip("10.0.0.1"), &forwarded_for(&xff(&["6.6.6.6"])), 0, &mut f), ip("10.0.0.1"));
        assert_eq!(f, Flags::default());
    }

    #[test]
    fn nth_hop_from_the_right_across_headers() {
        let h = forwarded_for(&xff(&["6.6.6.6, 1.1.1.1", "2.2.2.2"]));
        let mut f = Flags::default();
        assert_eq!(resolve(ip("10.0.0.1"), &h, 1, &mut f), ip("2.2.2.2"));
        assert_eq!(resolve(ip("10.0.0.1"), &h, 2, &mut f), ip("1.1.1.1"));
        assert_eq!(f, Flags::default());
        assert_eq!(resolve(ip("10.0.0.1"), &h, 5, &mut f), ip("6.6.6.6"));
        assert!(f.contains(Flag::BadForwardedFor));
    }

    #[test]
    fn a_non_utf8_client_hop_does_not_hide_the_proxy_appended_hop() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", http::HeaderValue::from_bytes(b"\xff, 203.0.113.7").unwrap());
        let mut f = Flags::default();
        assert_eq!(resolve(ip("10.0.0.1"), &forwarded_for(&h), 1, &mut f), ip("203.0.113.7"));
        assert_eq!(f, Flags::default());
    }

    #[test]
    fn ipv6_ports_and_garbage() {
        let mut f = Flags::default();
        assert_eq!(resolve(ip("::1"), &forwarded_for(&xff(&["[2001:db8::7]:443"])), 1, &mut f), ip("2001:db8::7"));
        assert_eq!(resolve(ip("::ffff:10.1.2.3"), &[], 0, &mut f), ip("10.1.2.3"));
        assert_eq!(resolve(ip("10.0.0.1"), &forwarded_for(&xff(&["not-an-ip"])), 1, &mut f), ip("10.0.0.1"));
        assert!(f.contains(Flag::BadForwardedFor));
    }
}
