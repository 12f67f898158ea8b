//! Allowed domains: which pages may send a pixel's hits (`docs/accounts.md#allowed-domains-and-cors`).
//!
//! A domain allows itself and its subdomains: `example.com` allows `example.com` and
//! `shop.example.com`, not `badexample.com`. Domains are compared lowercased, without a port.

use std::borrow::Cow;

/// Longest domain name (RFC 1035).
const MAX_DOMAIN: usize = 253;
/// Most allowed domains per pixel.
pub const MAX_DOMAINS: usize = 100;

/// `given` as an allowed domain (lowercased), or why it is not one: a host name only, no scheme,
/// port, path or wildcard.
pub fn parse_domain(given: &str) -> Result<String, String> {
    let d = given.trim().trim_end_matches('.').to_ascii_lowercase();
    let shown: String = given.chars().take(80).collect();
    if d.contains("://") || d.contains('/') || d.contains(':') {
        return Err(format!("{shown:?} is not a domain: give the host name only, e.g. \"example.com\" (no scheme, port or path)"));
    }
    if d.contains('*') {
        return Err(format!("{shown:?}: no wildcards needed; a domain already allows its subdomains"));
    }
    let labels_ok = !d.is_empty()
        && d.len() <= MAX_DOMAIN
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !labels_ok {
        return Err(format!("{shown:?} is not a domain name (letters, digits, '-' and '.'; use punycode for international names)"));
    }
    Ok(d)
}

/// The host of an absolute http(s) URL or an `Origin`, lowercased, without port or credentials.
pub fn host_of(url: &str) -> Option<Cow<'_, str>> {
    // Byte scans rather than `str` patterns: asked for every hit of a pixel with allowed domains,
    // where the pattern searchers' set-up cost more than the scan (callgrind: ~1,300
    // instructions a hit).
    let url = url.trim();
    let rest = strip_prefix_ignore_case(url, "https://").or_else(|| strip_prefix_ignore_case(url, "http://"))?;
    let authority = &rest[..rest.bytes().position(|b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len())];
    let host_port = authority.bytes().rposition(|b| b == b'@').map_or(authority, |at| &authority[at + 1..]);
    let host = if host_port.starts_with('[') {
        host_port.bytes().position(|b| b == b']').map_or(host_port, |end| &host_port[..=end])
    } else {
        &host_port[..host_port.bytes().position(|b| b == b':').unwrap_or(host_port.len())]
    };
    let host = host.trim_end_matches('.');
    // No copy unless there is a capital.
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(host.to_ascii_lowercase()) } else { Cow::Borrowed(host) };
    (!host.is_empty()).then_some(host)
}

/// `s` without `prefix` (ASCII, any case), if it starts with it.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // `prefix` is ASCII, so a match ends on a character boundary.
    head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| &s[prefix.len()..])
}

/// Whether `host` is one of `domains` or below one of them.
pub fn allowed(domains: &[String], host: &str) -> bool {
    domains.iter().any(|d| host == d || (host.len() > d.len() && host.ends_with(d.as_str()) && host.as_bytes()[host.len() - d.len() - 1] == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_allow_themselves_and_their_subdomains_only() {
        let d = vec![parse_domain("Example.COM").unwrap(), parse_domain("shop.test.").unwrap()];
        assert_eq!(d, ["example.com", "shop.test"]);
        for ok in ["example.com", "www.example.com", "a.b.example.com", "shop.test"] {
            assert!(allowed(&d, ok), "{ok}");
        }
        for no in ["badexample.com", "example.com.evil.net", "test", "other.test", "com"] {
            assert!(!allowed(&d, no), "{no}");
        }
    }

    #[test]
    fn bad_domains_say_why() {
        for bad in ["https://example.com", "example.com/x", "example.com:8080", "*.example.com", "", "exa mple.com", "-a.com", "a..com"] {
            assert!(parse_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_of_urls_and_origins() {
        assert_eq!(host_of("https://Shop.Example.com:8443/p?q=1").as_deref(), Some("shop.example.com"));
        assert_eq!(host_of("http://user:pw@example.com/").as_deref(), Some("example.com"));
        assert_eq!(host_of("https://example.com").as_deref(), Some("example.com"));
        assert_eq!(host_of("http://127.0.0.1:8080").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of("null"), None);
        assert_eq!(host_of("javascript:alert(1)"), None);
        assert_eq!(host_of("ftp://example.com/"), None);
        assert_eq!(host_of("HTTPS://[::1]:8443/x").as_deref(), Some("[::1]"));
        assert_eq!(host_of("https://shop.test.?q").as_deref(), Some("shop.test"));
        assert_eq!(host_of("https://é.test/").as_deref(), Some("é.test"));
        assert_eq!(host_of("https:/example.com"), None);
        assert_eq!(host_of("https://"), None);
    }
}
