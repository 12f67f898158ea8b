//! An account's webhook URL as it may be stored (`docs/notifications.md#to-the-accounts-webhook`):
//! the server will make requests to it on the tenant's behalf, so it must not point inside the
//! deployment. `https` only; an address that is loopback, private, link-local (the cloud metadata
//! address) or otherwise not public is refused when the URL is set, whether written as an address
//! or as a name that resolves to one now. The notifier checks the name again when it resolves at
//! delivery ([`crate::address`]). `--allow-private-webhooks` lifts both checks and allows `http`
//! (tests, private deployments).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

use super::ids::AccountId;
use crate::address::is_public;
use crate::secret::Secret;

/// Longest webhook URL accepted.
pub const MAX_URL: usize = 2048;
/// Longest webhook secret accepted.
pub const MAX_SECRET: usize = 1024;
/// How long setting a URL waits for its name to resolve; a name that does not resolve in time
/// is accepted (it is checked at every delivery).
const RESOLVE_WAIT: Duration = Duration::from_secs(1);

/// Whether a request may go to addresses that are not public (`--allow-private-webhooks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Private, loopback and link-local targets, and `http`, allowed.
    pub allow_private: bool,
}

/// Why a host may not be reached, or `None` if it may: for an address, its range.
pub fn refusal(ip: IpAddr) -> Option<String> {
    (!is_public(ip)).then(|| format!("{ip} is not a public address (loopback, private, link-local or reserved); set --allow-private-webhooks to allow it"))
}

/// Why the server may not send to `url` under `policy`, judged from the URL alone: its scheme,
/// and its host when that is an address; `None` if it may. Asked when a URL is set and again
/// before every delivery (for a URL stored while `--allow-private-webhooks` was set).
pub fn url_refusal(url: &Url, policy: WebhookPolicy) -> Option<String> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        "http" => return Some("must be https (http only with --allow-private-webhooks)".into()),
        other => return Some(format!("must be https, not {other}")),
    }
    if policy.allow_private {
        return None;
    }
    match url.host()? {
        url::Host::Ipv4(ip) => refusal(ip.into()),
        url::Host::Ipv6(ip) => refusal(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// A webhook secret as given: 1–[`MAX_SECRET`] bytes, no control characters.
pub fn check_secret(text: &str) -> Result<Secret, String> {
    if text.is_empty() || text.len() > MAX_SECRET || text.chars().any(char::is_control) {
        return Err(format!("1-{MAX_SECRET} bytes, no control characters or line breaks"));
    }
    Ok(Secret::new(text))
}

/// Where an account's webhook secret is sealed to.
pub fn secret_place(account: &AccountId) -> String {
    format!("webhook_secret:{account}")
}

/// The URL `text` if it may be a webhook under `policy`, or why not (the message is for a `400`).
pub async fn check_url(text: &str, policy: WebhookPolicy) -> Result<Url, String> {
    if text.len() > MAX_URL {
        return Err(format!("at most {MAX_URL} bytes"));
    }
    let url = Url::parse(text.trim()).map_err(|e| format!("not an absolute URL ({e}); e.g. \"https://hooks.example.com/pixelgate\""))?;
    if let Some(why) = url_refusal(&url, policy) {
        return Err(why);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password; deliveries are signed with webhook_secret".into());
    }
    if policy.allow_private {
        return Ok(url);
    }
    match url.host() {
        None => Err("has no host".into()),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Ok(url.clone()),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(format!("{name} is a loopback name; set --allow-private-webhooks to allow it"));
            }
            let port = url.port_or_known_default().unwrap_or(443);
            if let Ok(Ok(mut addrs)) = tokio::time::timeout(RESOLVE_WAIT, tokio::net::lookup_host((name.as_str(), port))).await
                && addrs.any(|a| !is_public(a.ip()))
            {
                // Which address stays unsaid: the API is not a way to look up internal names.
                return Err(format!("{name} resolves to an address that is not public; set --allow-private-webhooks to allow it"));
            }
            Ok(url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(text: &str) -> Result<Url, String> {
        check_url(text, WebhookPolicy::default()).await
    }

    #[tokio::test]
    async fn only_https_to_public_hosts() {
        assert!(check("https://hooks.example.com/pixelgate").await.is_ok());
        assert!(check("https://93.184.215.14/x").await.is_ok());
        for (url, says) in [
            ("http://hooks.example.com/x", "must be https"),
            ("ftp://hooks.example.com/x", "must be https"),
            ("hooks.example.com/x", "not an absolute URL"),
            ("https://127.0.0.1/x", "127.0.0.1 is not a public address"),
            ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
            ("https://10.0.0.8:8443/x", "10.0.0.8"),
            ("https://[::1]/x", "::1"),
            ("https://[::ffff:192.168.0.1]/x", "is not a public address"),
            ("https://0x7f.1/x", "127.0.0.1"),
            ("https://2130706433/x", "127.0.0.1"),
            ("https://localhost:9000/x", "loopback name"),
            ("https://api.localhost./x", "loopback name"),
            ("https://user:pw@hooks.example.com/x", "user name or password"),
        ] {
            let err = check(url).await.unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn the_flag_allows_private_targets_and_http() {
        let allow = WebhookPolicy { allow_private: true };
        assert!(check_url("http://127.0.0.1:9000/hook", allow).await.is_ok());
        assert!(check_url("https://localhost/hook", allow).await.is_ok());
        assert!(check_url("ftp://127.0.0.1/hook", allow).await.is_err());
    }
}
