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

/// The host of an absolute http(s) URL or an `Origin`, lowercased, without port or credentials.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://").filter(|(scheme, _)| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') { host_port.split_inclusive(']').next()? } else { host_port.split(':').next()? };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
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
    }
}
