//! The runtime's handler: an HTTP event of any payload format (API Gateway HTTP API 2.0 and
//! Function URLs, REST API 1.0, Application Load Balancer) goes through `lambda_http`'s adapter
//! into the edge service, the client address taken from the request context; an SQS batch or an
//! EventBridge event goes to the [`Inputs`]; anything else fails with an `errorType` that names
//! the problem. Whatever happens, the drain extension learns that the invocation's handler is
//! done.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use lambda_http::lambda_runtime::Diagnostic;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, RequestExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tower_service::Service;

use super::inputs::{Inputs, Kind, SqsAnswer};
use crate::edge::{EdgeBody, EdgeService};
use crate::metrics as m;
use crate::params::PeerIp;

/// The runtime's handler: every event goes through `lambda_http`'s adapter; whatever happens,
/// the extension learns that the invocation's handler is done.
pub(super) struct Invocations {
    adapter: Adapter<'static, http::Response<EdgeBody>, LambdaDoor>,
    inputs: Inputs,
    ends: mpsc::UnboundedSender<String>,
}

type AdapterResponse = <Adapter<'static, http::Response<EdgeBody>, LambdaDoor> as Service<LambdaEvent<LambdaRequest>>>::Response;

/// What an invocation answers, by the kind of its event.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Answer {
    /// An HTTP answer in the format the event came in.
    Http(Box<AdapterResponse>),
    /// An SQS batch's `batchItemFailures`.
    Sqs(SqsAnswer),
    /// An EventBridge event's.
    Json(serde_json::Value),
}

impl Invocations {
    /// The handler over `adapter` and `inputs`, telling `ends` when each invocation's handler is
    /// done.
    pub(super) fn new(adapter: Adapter<'static, http::Response<EdgeBody>, LambdaDoor>, inputs: Inputs, ends: mpsc::UnboundedSender<String>) -> Self {
        Invocations { adapter, inputs, ends }
    }
}

impl Service<LambdaEvent<serde_json::Value>> for Invocations {
    type Response = Answer;
    type Error = Diagnostic;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Diagnostic>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, event: LambdaEvent<serde_json::Value>) -> Self::Future {
        let end = HandlerDone { request_id: event.context.request_id.clone(), ends: self.ends.clone() };
        // Parsed here rather than by the runtime so that an event of a kind pixelgate does not
        // take still releases the extension at once.
        match Kind::of(&event.payload) {
            Kind::Sqs => return answered(end, Ok(Answer::Sqs(self.inputs.sqs(event.payload)))),
            Kind::EventBridge => return answered(end, self.inputs.eventbridge(event.payload).map(Answer::Json)),
            Kind::Other => {}
        }
        let payload = match serde_json::from_value::<LambdaRequest>(event.payload) {
            Ok(payload) => payload,
            Err(_) => {
                metrics::counter!(m::LAMBDA_BAD_EVENTS).increment(1);
                let message = "not an event pixelgate takes: expected an HTTP request (API Gateway HTTP API or REST API, an Application Load Balancer, a Function URL), an SQS batch or an EventBridge event";
                tracing::warn!(request_id = %end.request_id, "{message}");
                return answered(end, Err(Diagnostic { error_type: "UnknownEventKind".into(), error_message: message.into() }));
            }
        };
        let answer = self.adapter.call(LambdaEvent { payload, context: event.context });
        Box::pin(async move {
            let response = answer.await;
            drop(end);
            Ok(Answer::Http(Box::new(response.unwrap_or_else(|never: Infallible| match never {}))))
        })
    }
}

/// `answer`, once the extension has been told the handler is done.
fn answered(end: HandlerDone, answer: Result<Answer, Diagnostic>) -> Pin<Box<dyn Future<Output = Result<Answer, Diagnostic>> + Send>> {
    drop(end);
    Box::pin(std::future::ready(answer))
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
        // The address the front saw, which it also appended to `X-Forwarded-For`: API Gateway
        // says it in the request context; a load balancer only appends it.
        let source_ip = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref().and_then(parse_source_ip),
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.as_deref().and_then(parse_source_ip),
            Some(RequestContext::Alb(_)) => last_forwarded_hop(req.headers()),
            _ => None,
        };
        if let Some(ip) = source_ip {
            drop_own_forwarded_hop(req.headers_mut(), ip);
            req.extensions_mut().insert(PeerIp(ip));
        }
        // `lambda_http` puts a named API Gateway stage in front of the path (`/prod/p.gif`); the
        // routes are the same whatever the stage.
        let raw = req.raw_http_path();
        if !raw.is_empty() && raw != req.uri().path() {
            let target = match req.uri().query() {
                Some(q) => format!("{raw}?{q}"),
                None => raw.to_owned(),
            };
            if let Ok(uri) = target.parse() {
                *req.uri_mut() = uri;
            }
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

/// The last address in `X-Forwarded-For` (over all its lines): the one the front appended.
fn last_forwarded_hop(headers: &http::HeaderMap) -> Option<IpAddr> {
    let last_line = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back()?;
    last_line.rsplit(',').map(str::trim).find(|h| !h.is_empty()).and_then(parse_source_ip)
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
    fn a_load_balancers_hop_is_the_last_one() {
        assert_eq!(last_forwarded_hop(&xff(&["203.0.113.5, 198.51.100.9"])), Some("198.51.100.9".parse().unwrap()));
        assert_eq!(last_forwarded_hop(&xff(&["6.6.6.6", "203.0.113.5,"])), Some("203.0.113.5".parse().unwrap()));
        assert_eq!(last_forwarded_hop(&xff(&["nonsense"])), None);
        assert_eq!(last_forwarded_hop(&http::HeaderMap::new()), None);
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
