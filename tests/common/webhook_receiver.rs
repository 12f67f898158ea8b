//! An account's webhook receiver on 127.0.0.1, as a tenant would run one: it keeps every request
//! (headers that matter, body, when it came), answers each with the next queued status (then 200),
//! and checks a `pixelgate-signature` itself, as a receiver must: `t` recent, `v1` the
//! HMAC-SHA256 of the raw body under the secret.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;

use super::http_server::HttpServer;

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    pub delivery: String,
    pub event: String,
    pub body: Bytes,
    pub at: Instant,
}

/// The running receiver; POSTs go to `/hook`.
pub struct Receiver {
    server: HttpServer,
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let (g, a) = (got.clone(), answers.clone());
        let server = HttpServer::start("webhook-receiver", move |req: http::Request<hyper::body::Incoming>| {
            let (got, answers) = (g.clone(), a.clone());
            async move {
                let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let (signature, delivery, event) = (header("pixelgate-signature"), header("pixelgate-delivery"), header("pixelgate-event"));
                assert_eq!((req.method().as_str(), req.uri().path()), ("POST", "/hook"));
                assert_eq!(req.headers()["content-type"], "application/json");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                got.lock().unwrap().push(Received { signature, delivery, event, body, at: Instant::now() });
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                Ok(Response::builder().status(StatusCode::from_u16(status).unwrap()).body(Full::new(Bytes::from_static(b"{}"))).unwrap())
            }
        });
        Receiver { server, got, answers }
    }

    /// `http://{host}:{port}/hook`.
    pub fn url(&self, scheme: &str, host: &str) -> String {
        format!("{scheme}://{host}:{}/hook", self.server.addr().port())
    }

    /// The next requests get these statuses, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    /// Every request so far.
    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Received {
    /// Panics unless `pixelgate-signature` verifies under `secret` with a `t` within two minutes.
    pub fn verify(&self, secret: &str) {
        let parts: Vec<(&str, &str)> = self.signature.split(',').filter_map(|p| p.split_once('=')).collect();
        let t: u64 = parts.iter().find(|(k, _)| *k == "t").expect("t=").1.parse().unwrap();
        let v1 = parts.iter().find(|(k, _)| *k == "v1").expect("v1=").1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(now.abs_diff(t) < 120, "t={t} is not now ({now})");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(v1, want, "the signature does not verify: {}", self.signature);
    }
}
