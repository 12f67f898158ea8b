//! Notices to the account's webhook (`docs/notifications.md#to-the-accounts-webhook`): a `POST` of
//! JSON, signed with HMAC-SHA256 of the body under the account's webhook secret
//! (`pixelgate-signature: t=<unix seconds>,v1=<hex>`), the same `pixelgate-delivery` id on every
//! attempt so a receiver can drop repeats. A connection failure, a timeout, `408`, `429` or a
//! `5xx` is tried again with backoff; another answer is final. The outcome is kept on the account
//! (`webhook_last_delivery`), counted and logged.
//!
//! The request is made on the tenant's behalf, so it goes to public addresses only: the name is
//! resolved by [`PublicOnly`], which refuses a name with any loopback, private, link-local or
//! reserved address, and the connection goes to the addresses it checked (no second resolution to
//! race). Redirects are not followed; no proxy is used. `--allow-private-webhooks` lifts this.

use std::net::SocketAddr;
use std::sync::Arc;
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
use crate::registry::{AccountId, Registry, WebhookDelivery, WebhookPolicy, WebhookTarget};
use crate::telemetry::error_chain;
use crate::tokens::now_ms;

/// Attempts per notice.
pub const ATTEMPTS: u32 = 6;
/// Wait before the second attempt; doubled for each next one (0.5 s … 8 s: 15.5 s in all).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// One attempt's limit, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a failed answer's body kept in the outcome.
const ERROR_BODY: usize = 200;

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
                let why = NotPublic(format!("{host} resolves to {}, which is not a public address (set --allow-private-webhooks to allow it)", bad.ip()));
                return Err(Box::new(why) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The webhook channel: each notice of a pixel whose account has a webhook.
pub struct Sender {
    registry: Arc<Registry>,
    client: reqwest::Client,
    policy: WebhookPolicy,
}

/// How one attempt went.
enum Attempt {
    Delivered(u16),
    /// Worth another attempt.
    Retry(Option<u16>, String),
    /// Final.
    Failed(Option<u16>, String),
    Refused(String),
}

impl Sender {
    /// Deliveries to the webhooks `registry` holds, to public targets unless `policy` says otherwise.
    pub fn new(registry: Arc<Registry>, policy: WebhookPolicy) -> Sender {
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT / 2)
            .user_agent(concat!("pixelgate/", env!("CARGO_PKG_VERSION")));
        if !policy.allow_private {
            client = client.dns_resolver(Arc::new(PublicOnly));
        }
        Sender { registry, client: client.build().expect("the webhook client builds"), policy }
    }

    async fn attempt(&self, target: &WebhookTarget, delivery_id: &str, body: &[u8]) -> Attempt {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let request = self
            .client
            .post(&target.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(target.secret.expose().as_bytes(), t, body))
            .header(DELIVERY_HEADER, delivery_id)
            .header(EVENT_HEADER, INVALIDATED_TYPE)
            .body(body.to_vec());
        match request.send().await {
            Ok(answer) => {
                let status = answer.status();
                if status.is_success() {
                    return Attempt::Delivered(status.as_u16());
                }
                let text = answer.text().await.unwrap_or_default();
                let said: String = text.chars().take(ERROR_BODY).collect();
                let error = format!("answered {status}: {said}");
                if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                    Attempt::Retry(Some(status.as_u16()), error)
                } else if status.is_redirection() {
                    Attempt::Failed(Some(status.as_u16()), format!("answered {status}; redirects are not followed (set webhook_url to the final address)"))
                } else {
                    Attempt::Failed(Some(status.as_u16()), error)
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
                Attempt::Retry(None, error_chain(&err.without_url()))
            }
        }
    }

    /// A URL not `https`, or written as an address that is not public: refused before any
    /// connection (it may have been stored while `--allow-private-webhooks` was set).
    fn refused_literal(&self, url: &str) -> Option<String> {
        if self.policy.allow_private {
            return None;
        }
        let url = url::Url::parse(url).ok()?;
        if url.scheme() != "https" {
            return Some(format!("{} is allowed only with --allow-private-webhooks", url.scheme()));
        }
        let ip = match url.host()? {
            url::Host::Ipv4(ip) => std::net::IpAddr::from(ip),
            url::Host::Ipv6(ip) => ip.into(),
            url::Host::Domain(_) => return None,
        };
        (!is_public(ip)).then(|| format!("{ip} is not a public address (set --allow-private-webhooks to allow it)"))
    }

    async fn send(&self, notice: &Invalidated) {
        let Some(account) = notice.account_id.as_deref().and_then(|a| AccountId::parse(a).ok()) else { return };
        let target = match self.registry.webhook(&account).await {
            Ok(Some(target)) => target,
            Ok(None) => return,
            Err(err) => {
                metrics::counter!(m::NOTIFICATIONS, "channel" => "webhook", "outcome" => "failed").increment(1);
                tracing::error!(account_id = %account, pixel_id = notice.pixel_id, error = %err, "cannot read the account's webhook; the credentials-invalidated notice is not sent");
                return;
            }
        };
        let delivery_id = format!("whd_{}", uuid::Uuid::new_v4().simple());
        let body = serde_json::to_vec(&Body { kind: INVALIDATED_TYPE, delivery_id: &delivery_id, notice }).expect("a notice serializes");
        let mut wait = FIRST_BACKOFF;
        let mut attempts = 0;
        let (outcome, status, error) = loop {
            attempts += 1;
            let attempt = match self.refused_literal(&target.url) {
                Some(why) => Attempt::Refused(why),
                None => self.attempt(&target, &delivery_id, &body).await,
            };
            match attempt {
                Attempt::Delivered(status) => break ("delivered", Some(status), None),
                Attempt::Refused(why) => break ("refused", None, Some(why)),
                Attempt::Failed(status, why) => break ("failed", status, Some(why)),
                Attempt::Retry(status, why) if attempts >= ATTEMPTS => break ("failed", status, Some(why)),
                Attempt::Retry(..) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        };
        let host = url::Url::parse(&target.url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
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
        if let Err(err) = self.registry.record_webhook_delivery(&account, kept).await {
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
        assert!(refused.contains("localhost resolves to 127.0.0.1") || refused.contains("localhost resolves to ::1"), "{refused}");
    }
}
