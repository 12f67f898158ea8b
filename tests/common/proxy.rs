//! Proxies between pixelgate and moto that stage a bad day at AWS: [`Proxy`] cuts the link (an
//! outage, `tests/firehose`), [`SlowProxy`] answers each call a set time late and logs when
//! (a slow Firehose, `tests/lambda`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::http_server::HttpServer;

/// How the [`Proxy`] treats traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Link {
    /// Forwards to moto.
    Up = 0,
    /// Closes every connection at once: "connection refused/reset".
    Refuse = 1,
    /// Accepts and never answers: requests time out.
    Blackhole = 2,
}

/// A TCP proxy that a test can cut and restore; it runs on the calling test's runtime.
pub struct Proxy {
    pub endpoint: String,
    link: Arc<AtomicU8>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy to `upstream` (`http://host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let link = Arc::new(AtomicU8::new(Link::Up as u8));
        let live: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (l, conns) = (link.clone(), live.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                let task = match l.load(Ordering::SeqCst) {
                    0 => tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }),
                    1 => continue,
                    _ => tokio::spawn(async move {
                        let _hold = client;
                        std::future::pending::<()>().await;
                    }),
                };
                let mut conns = conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy { endpoint, link, live, accept }
    }

    /// Switches the link; cutting it also drops every connection open through it.
    pub fn set(&self, link: Link) {
        self.link.store(link as u8, Ordering::SeqCst);
        if link != Link::Up {
            self.live.lock().unwrap().drain(..).for_each(|c| c.abort());
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.live.lock().unwrap().drain(..).for_each(|c| c.abort());
    }
}

/// One call through the [`SlowProxy`].
#[derive(Debug, Clone)]
pub struct ProxiedCall {
    /// The AWS JSON-protocol operation (`X-Amz-Target`, e.g. `Firehose_20150804.PutRecordBatch`).
    pub target: String,
    pub received: Instant,
    /// When the answer left the proxy.
    pub answered: Instant,
    pub status: u16,
}

/// An HTTP proxy that holds every answer for `delay` after upstream gave it: in front of moto, a
/// Firehose that answers in `delay` (plus moto's own time). It runs on a thread of its own.
pub struct SlowProxy {
    pub endpoint: String,
    calls: Arc<Mutex<Vec<ProxiedCall>>>,
    _server: HttpServer,
}

impl SlowProxy {
    pub fn start(upstream: &str, delay: Duration) -> SlowProxy {
        let calls: Arc<Mutex<Vec<ProxiedCall>>> = Arc::default();
        let (log, upstream, client) = (calls.clone(), upstream.trim_end_matches('/').to_owned(), reqwest::Client::new());
        let server = HttpServer::start("slow-proxy", move |req| forward(req, client.clone(), upstream.clone(), delay, log.clone()));
        SlowProxy { endpoint: format!("http://{}", server.addr()), calls, _server: server }
    }

    /// The calls answered so far whose operation ends with `operation`.
    pub fn calls(&self, operation: &str) -> Vec<ProxiedCall> {
        self.calls.lock().unwrap().iter().filter(|c| c.target.ends_with(operation)).cloned().collect()
    }
}

async fn forward(
    req: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
    delay: Duration,
    log: Arc<Mutex<Vec<ProxiedCall>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let received = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
    for (name, value) in parts.headers.iter().filter(|(n, _)| *n != http::header::HOST) {
        out = out.header(name, value);
    }
    let (status, headers, bytes) = match out.send().await {
        Ok(r) => {
            let (status, headers) = (r.status(), r.headers().clone());
            (status, headers, r.bytes().await.unwrap_or_default())
        }
        Err(err) => (http::StatusCode::BAD_GATEWAY, http::HeaderMap::new(), Bytes::from(err.to_string())),
    };
    tokio::time::sleep(delay).await;
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    for (name, value) in headers.iter().filter(|(n, _)| *n != http::header::TRANSFER_ENCODING && *n != http::header::CONTENT_LENGTH && *n != http::header::CONNECTION) {
        resp.headers_mut().append(name, value.clone());
    }
    log.lock().unwrap().push(ProxiedCall { target, received, answered: Instant::now(), status: status.as_u16() });
    Ok(resp)
}
