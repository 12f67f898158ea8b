//! Notices to the account's webhook (`docs/notifications.md#to-the-accounts-webhook`): a `POST` of
//! JSON, signed with HMAC-SHA256 of the body under the account's webhook secret
//! (`pixelgate-signature: t=<unix seconds>,v1=<hex>`), the same `pixelgate-delivery` id on every
//! attempt so a receiver can drop repeats. A connection failure, a timeout, `408`, `429` or a
//! `5xx` is tried again with the shared backoff ([`crate::retry`]; an answer's `Retry-After` up
//! to 30 s); another
//! answer is final. The outcome is kept on the account (`webhook_last_delivery`): the status and
//! a fixed reason, never what the target answered or why a connection failed, so that the
//! server is not a way to read other hosts or scan ports. It is counted and logged.
//!
//! The request is made on the tenant's behalf, so it goes to public addresses only: the name is
//! resolved by [`PublicOnly`], which refuses a name with any loopback, private, link-local or
//! reserved address, and the connection goes to the addresses it checked (no second resolution to
//! race). Redirects are not followed; no proxy is used. `--allow-private-webhooks` lifts this.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Serialize;
use sha2::Sha256;

use super::{Channel, INVALIDATED_TYPE, Invalidated};
use crate::address::is_public;
use crate::metrics as m;
use crate::registry::ids::hex;
use crate::registry::webhook::url_refusal;
use crate::registry::{AccountId, Registry, WebhookDelivery, WebhookPolicy, WebhookTarget};
use crate::retry::RetryPolicy;
use crate::telemetry::error_chain;
use crate::tokens::now_ms;

/// Attempts per notice.
pub const ATTEMPTS: u32 = 6;
/// One attempt's limit (connection included), and the waits between attempts: half to all of
/// 1 s, 2 s, 4 s, 8 s and 16 s ("equal jitter"). Attempts are counted ([`ATTEMPTS`]); the
/// budget is not used.
const BACKOFF: RetryPolicy =
    RetryPolicy { attempt_timeout: Duration::from_secs(10), backoff_initial: Duration::from_secs(1), backoff_max: Duration::from_secs(16), budget: Duration::MAX };
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// An answer's `Retry-After` in seconds, if it gave one.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "pixelgate-signature";
/// The header with the delivery's id.
pub const DELIVERY_HEADER: &str = "pixelgate-delivery";
/// The header with the notice's type.
pub const EVENT_HEADER: &str = "pixelgate-event";

/// `pixelgate-signature`'s value: `t=<t>,v1=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// The body: the notice, its type and the delivery's id.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    delivery_id: &'a str,
    #[serde(flatten)]
    notice: &'a Invalidated,
}

/// The webhook client: no redirects, no proxy, attempts bounded; names resolved by [`PublicOnly`]
/// unless `policy` allows private targets.
fn build_client(policy: WebhookPolicy) -> reqwest::Client {
    let mut client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(BACKOFF.attempt_timeout)
        .connect_timeout(BACKOFF.attempt_timeout / 2)
        .user_agent(concat!("pixelgate/", env!("CARGO_PKG_VERSION")));
    if !policy.allow_private {
        client = client.dns_resolver(Arc::new(PublicOnly));
    }
    client.build().expect("the webhook client builds")
}

/// A name resolution that refuses names with an address that is not public.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

/// A target refused for its address.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotPublic(String);

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                // The address itself stays out of the message, which the tenant reads: the server
                // is not a way to look up names inside the deployment.
                tracing::warn!(host, address = %bad.ip(), "a webhook's name resolves to an address that is not public; not connecting");
                let why = NotPublic(format!("{host} resolves to an address that is not public (set --allow-private-webhooks to allow it)"));
                return Err(Box::new(why) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The webhook channel: each notice of a pixel whose account has a webhook.
pub struct Sender {
    registry: Arc<Registry>,
    /// Built at the first delivery, so that start-up (a Lambda cold start) does not pay for a
    /// second TLS client it may never use.
    client: OnceLock<reqwest::Client>,
    policy: WebhookPolicy,
}

/// How one attempt went.
enum Attempt {
    Delivered(u16),
    /// Worth another attempt (after the answer's `Retry-After`, if it gave one).
    Retry(Option<u16>, String, Option<Duration>),
    /// Final.
    Failed(Option<u16>, String),
    Refused(String),
}

impl Sender {
    /// Deliveries to the webhooks `registry` holds, to public targets unless `policy` says otherwise.
    pub fn new(registry: Arc<Registry>, policy: WebhookPolicy) -> Sender {
        Sender { registry, client: OnceLock::new(), policy }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| build_client(self.policy))
    }

    async fn attempt(&self, target: &WebhookTarget, delivery_id: &str, body: &[u8]) -> Attempt {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let request = self
            .client()
            .post(&target.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(target.secret.expose().as_bytes(), t, body))
            .header(DELIVERY_HEADER, delivery_id)
            .header(EVENT_HEADER, INVALIDATED_TYPE)
            .body(body.to_vec());
        match request.send().await {
            // The answer's body is never read: the outcome, which the tenant reads, holds the
            // status only, so the server is not a way to read what other hosts answer.
            Ok(answer) => {
                let status = answer.status();
                let code = status.as_u16();
                if status.is_success() {
                    return Attempt::Delivered(code);
                }
                let wait = retry_after(answer.headers());
                if status.is_server_error() || code == 408 || code == 429 {
                    Attempt::Retry(Some(code), format!("answered {status}"), wait)
                } else if status.is_redirection() {
                    Attempt::Failed(Some(code), format!("answered {status}; redirects are not followed (set webhook_url to the final address)"))
                } else {
                    Attempt::Failed(Some(code), format!("answered {status}"))
                }
            }
            Err(err) => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
                while let Some(e) = cause {
                    if let Some(refused) = e.downcast_ref::<NotPublic>() {
                        return Attempt::Refused(refused.0.clone());
                    }
                    cause = e.source();
                }
                // The detail (refused, reset, timed out, a certificate) goes to the operator's
                // log only; the tenant's outcome says no answer came.
                let builder = err.is_builder();
                let detail = error_chain(&err.without_url());
                tracing::debug!(error = detail, "a webhook attempt got no answer");
                if builder || detail.contains("certificate") {
                    Attempt::Failed(None, "no answer: the request could not be made (a malformed URL or a certificate the server does not trust)".into())
                } else {
                    Attempt::Retry(None, "no answer: the connection failed or timed out".into(), None)
                }
            }
        }
    }

    async fn send(&self, notice: &Invalidated) {
        let Some(account) = notice.account_id.as_deref().and_then(|a| AccountId::parse(a).ok()) else { return };
        let mut read = 0;
        let target = loop {
            match self.registry.webhook(&account).await {
                Ok(Some(target)) => break target,
                Ok(None) => return,
                Err(err) if read + 1 >= ATTEMPTS => {
                    metrics::counter!(m::NOTIFICATIONS, "channel" => "webhook", "outcome" => "failed").increment(1);
                    tracing::error!(account_id = %account, pixel_id = notice.pixel_id, error = %err, "cannot read the account's webhook; the credentials-invalidated notice is not sent");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(BACKOFF.backoff_at_least_half(read)).await;
                    read += 1;
                }
            }
        };
        let delivery_id = format!("whd_{}", uuid::Uuid::new_v4().simple());
        let body = serde_json::to_vec(&Body { kind: INVALIDATED_TYPE, delivery_id: &delivery_id, notice }).expect("a notice serializes");
        let parsed = url::Url::parse(&target.url).ok();
        // A URL stored while private targets were allowed is refused before any connection.
        let refused = match &parsed {
            Some(url) => url_refusal(url, self.policy),
            None => Some("the stored webhook_url does not parse; set it again".into()),
        };
        let mut attempts = 0;
        let (outcome, status, error) = loop {
            attempts += 1;
            let attempt = match &refused {
                Some(why) => Attempt::Refused(why.clone()),
                None => self.attempt(&target, &delivery_id, &body).await,
            };
            match attempt {
                Attempt::Delivered(status) => break ("delivered", Some(status), None),
                Attempt::Refused(why) => break ("refused", None, Some(why)),
                Attempt::Failed(status, why) => break ("failed", status, Some(why)),
                Attempt::Retry(status, why, _) if attempts >= ATTEMPTS => break ("failed", status, Some(why)),
                Attempt::Retry(_, _, asked) => {
                    tokio::time::sleep(asked.map_or_else(|| BACKOFF.backoff_at_least_half(attempts - 1), |a| a.min(MAX_RETRY_AFTER))).await;
                }
            }
        };
        let host = parsed.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let counted = if outcome == "delivered" { "sent" } else { outcome };
        metrics::counter!(m::NOTIFICATIONS, "channel" => "webhook", "outcome" => counted).increment(1);
        match &error {
            None => tracing::info!(account_id = %account, pixel_id = notice.pixel_id, host, attempts, "credentials-invalidated notice delivered to the account's webhook"),
            Some(why) => tracing::error!(
                account_id = %account,
                pixel_id = notice.pixel_id,
                host,
                attempts,
                outcome,
                error = why.as_str(),
                "a credentials-invalidated notice could not be delivered to the account's webhook (see pixelgate_notifications_total)"
            ),
        }
        let kept = WebhookDelivery { delivery_id, at: now_ms(), outcome: outcome.to_owned(), attempts, status, error, pixel_id: notice.pixel_id.clone() };
        if let Err(err) = self.registry.record_webhook_delivery(&account, &target.url, kept).await {
            tracing::warn!(account_id = %account, error = %err, "cannot keep the webhook delivery's outcome on the account");
        }
    }
}

impl Channel for Sender {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, notice: &'a Invalidated) -> BoxFuture<'a, ()> {
        Box::pin(self.send(notice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(signature(b"Jefe", 1_700_000_000, b"what do ya want for nothing?"), "t=1700000000,v1=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[tokio::test]
    async fn the_client_refuses_names_that_resolve_to_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = reqwest::Client::builder().dns_resolver(Arc::new(PublicOnly)).no_proxy().build().unwrap();
        let err = client.post(format!("http://localhost:{port}/hook")).send().await.unwrap_err();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        let mut refused = None;
        while let Some(e) = cause {
            refused = refused.or_else(|| e.downcast_ref::<NotPublic>().map(|n| n.0.clone()));
            cause = e.source();
        }
        let refused = refused.expect("refused by the resolver, not by the connection");
        assert!(refused.starts_with("localhost resolves to an address that is not public"), "{refused}");
        assert!(!refused.contains("127.0.0.1") && !refused.contains("::1"), "the address is not told: {refused}");
    }
}
