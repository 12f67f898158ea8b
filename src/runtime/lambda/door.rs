//! The runtime's handler: every event goes through `lambda_http`'s adapter into the edge
//! service, the client address taken from the request context; whatever happens, the drain
//! extension learns that the invocation's handler is done.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, RequestExt};
use tokio::sync::mpsc;
use tower_service::Service;

use crate::edge::{EdgeBody, EdgeService};
use crate::metrics as m;
use crate::params::PeerIp;

/// The runtime's handler: every event goes through `lambda_http`'s adapter; whatever happens,
/// the extension learns that the invocation's handler is done.
pub(super) struct Invocations {
    adapter: Adapter<'static, http::Response<EdgeBody>, LambdaDoor>,
    ends: mpsc::UnboundedSender<String>,
}

type AdapterResponse = <Adapter<'static, http::Response<EdgeBody>, LambdaDoor> as Service<LambdaEvent<LambdaRequest>>>::Response;

impl Invocations {
    /// The handler over `adapter`, telling `ends` when each invocation's handler is done.
    pub(super) fn new(adapter: Adapter<'static, http::Response<EdgeBody>, LambdaDoor>, ends: mpsc::UnboundedSender<String>) -> Self {
        Invocations { adapter, ends }
    }
}

impl Service<LambdaEvent<serde_json::Value>> for Invocations {
    type Response = AdapterResponse;
    type Error = lambda_http::Error;
    type Future = Pin<Box<dyn Future<Output = Result<AdapterResponse, lambda_http::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, event: LambdaEvent<serde_json::Value>) -> Self::Future {
        let end = HandlerDone { request_id: event.context.request_id.clone(), ends: self.ends.clone() };
        // Parsed here rather than by the runtime so that an event of another kind (a direct
        // invoke, a REST API) still releases the extension at once.
        let payload = match serde_json::from_value::<LambdaRequest>(event.payload) {
            Ok(payload) => payload,
            Err(err) => {
                metrics::counter!(m::LAMBDA_BAD_EVENTS).increment(1);
                let message = format!("not an API Gateway HTTP API (payload format 2.0) event: {err}");
                tracing::warn!(request_id = %end.request_id, "{message}");
                return Box::pin(async move {
                    drop(end);
                    Err(message.into())
                });
            }
        };
        let answer = self.adapter.call(LambdaEvent { payload, context: event.context });
        Box::pin(async move {
            let response = answer.await;
            drop(end);
            Ok(response.unwrap_or_else(|never: Infallible| match never {}))
        })
    }
}

/// Tells the extension that an invocation's handler is done when dropped, on every path.
struct HandlerDone {
    request_id: String,
    ends: mpsc::UnboundedSender<String>,
}

impl Drop for HandlerDone {
    fn drop(&mut self) {
        let _ = self.ends.send(std::mem::take(&mut self.request_id));
    }
}

/// The edge service as `lambda_http` calls it: the client address from the request context.
#[derive(Clone)]
pub(super) struct LambdaDoor {
    edge: EdgeService,
}

impl LambdaDoor {
    /// The door over `edge`.
    pub(super) fn new(edge: EdgeService) -> Self {
        LambdaDoor { edge }
    }
}

impl Service<lambda_http::Request> for LambdaDoor {
    type Response = http::Response<EdgeBody>;
    type Error = Infallible;
    type Future = <EdgeService as Service<lambda_http::Request>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: lambda_http::Request) -> Self::Future {
        let source_ip = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref().and_then(parse_source_ip),
            _ => None,
        };
        if let Some(ip) = source_ip {
            drop_own_forwarded_hop(req.headers_mut(), ip);
            req.extensions_mut().insert(PeerIp(ip));
        }
        self.edge.call(req)
    }
}

/// `sourceIp` leniently: `192.0.2.1`, or with a prefix length as `sam local` writes it
/// (`192.168.0.1/32`).
fn parse_source_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse().ok().or_else(|| s.split_once('/').and_then(|(ip, _)| ip.parse().ok()))
}

/// API Gateway appends the address it saw (`sourceIp`) to `X-Forwarded-For`; a proxy in front
/// of it appends its own hops before that. Removing API Gateway's hop leaves the header as a
/// server behind those proxies would see it.
fn drop_own_forwarded_hop(headers: &mut http::HeaderMap, source_ip: IpAddr) {
    let joined: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    if joined.is_empty() {
        return;
    }
    let joined = joined.join(",");
    let mut hops: Vec<&str> = joined.split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
    if hops.last().and_then(|h| parse_source_ip(h)) != Some(source_ip) {
        return;
    }
    hops.pop();
    let rest = hops.join(", ");
    headers.remove("x-forwarded-for");
    if let Ok(value) = HeaderValue::from_str(&rest)
        && !rest.is_empty()
    {
        headers.insert("x-forwarded-for", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_with_and_without_prefix_length() {
        assert_eq!(parse_source_ip("203.0.113.42"), Some("203.0.113.42".parse().unwrap()));
        assert_eq!(parse_source_ip("192.168.0.1/32"), Some("192.168.0.1".parse().unwrap()));
        assert_eq!(parse_source_ip("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_source_ip("nonsense"), None);
    }

    fn xff(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn api_gateways_own_hop_is_removed() {
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let mut h = xff(&["203.0.113.5, 198.51.100.9"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.5");

        let mut h = xff(&["198.51.100.9"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert!(h.get("x-forwarded-for").is_none());

        // Spread over two header lines, the last hop is still API Gateway's.
        let mut h = xff(&["6.6.6.6", "203.0.113.5,198.51.100.9"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "6.6.6.6, 203.0.113.5");

        // A last hop that is not the source address is left alone.
        let mut h = xff(&["203.0.113.5"]);
        drop_own_forwarded_hop(&mut h, ip);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.5");
    }
}
