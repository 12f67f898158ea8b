//! Allowed domains: which pages may send a pixel's hits (`docs/accounts.md#allowed-domains-and-cors`).
//!
//! A domain allows itself and its subdomains: `example.com` allows `example.com` and
//! `shop.example.com`, not `badexample.com`. Domains are compared lowercased, without a port.

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

/// The host of an absolute http(s) URL or an `Origin`, as written (any case), without port,
/// credentials or trailing dots.
pub fn host_of(url: &str) -> Option<&str> {
    // Byte scans (memchr) rather than `str` patterns, and no lowercased copy: asked for every hit
    // of a pixel with allowed domains, where the pattern searchers' set-up and the copy cost
    // more than the rest of the check (callgrind: ~1,300 instructions a hit).
    let url = url.trim_ascii();
    let rest = strip_prefix_ignore_case(url, "https://").or_else(|| strip_prefix_ignore_case(url, "http://"))?;
    let authority = &rest[..memchr::memchr3(b'/', b'?', b'#', rest.as_bytes()).unwrap_or(rest.len())];
    let host_port = memchr::memrchr(b'@', authority.as_bytes()).map_or(authority, |at| &authority[at + 1..]);
    let host = if host_port.starts_with('[') {
        memchr::memchr(b']', host_port.as_bytes()).map_or(host_port, |end| &host_port[..=end])
    } else {
        &host_port[..memchr::memchr(b':', host_port.as_bytes()).unwrap_or(host_port.len())]
    };
    let host = host.trim_end_matches('.');
    (!host.is_empty()).then_some(host)
}

/// `s` without `prefix` (ASCII, any case), if it starts with it.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // `prefix` is ASCII, so a match ends on a character boundary.
    head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| &s[prefix.len()..])
}

/// Whether `host` (any case) is one of `domains` (lowercase, as [`parse_domain`] keeps them) or
/// below one of them.
pub fn allowed(domains: &[String], host: &str) -> bool {
    let host = host.as_bytes();
    domains.iter().any(|d| {
        let d = d.as_bytes();
        host.len() >= d.len() && host[host.len() - d.len()..].eq_ignore_ascii_case(d) && (host.len() == d.len() || host[host.len() - d.len() - 1] == b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_allow_themselves_and_their_subdomains_only() {
        let d = vec![parse_domain("Example.COM").unwrap(), parse_domain("shop.test.").unwrap()];
        assert_eq!(d, ["example.com", "shop.test"]);
        for ok in ["example.com", "www.example.com", "a.b.example.com", "shop.test", "WWW.Example.Com"] {
            assert!(allowed(&d, ok), "{ok}");
        }
        for no in ["badexample.com", "example.com.evil.net", "test", "other.test", "com", "BadExample.COM", ".example.com.x", ""] {
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
        assert_eq!(host_of("https://Shop.Example.com:8443/p?q=1"), Some("Shop.Example.com"));
        assert_eq!(host_of("http://user:pw@example.com/"), Some("example.com"));
        assert_eq!(host_of("https://example.com"), Some("example.com"));
        assert_eq!(host_of("http://127.0.0.1:8080"), Some("127.0.0.1"));
        assert_eq!(host_of("null"), None);
        assert_eq!(host_of("javascript:alert(1)"), None);
        assert_eq!(host_of("ftp://example.com/"), None);
        assert_eq!(host_of("HTTPS://[::1]:8443/x"), Some("[::1]"));
        assert_eq!(host_of("https://shop.test.?q"), Some("shop.test"));
        assert_eq!(host_of("https://é.test/"), Some("é.test"));
        assert_eq!(host_of("https:/example.com"), None);
        assert_eq!(host_of("https://"), None);
    }
}
