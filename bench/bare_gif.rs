//! The ceiling for `bench/run.sh`: hyper answering every request with the pixel GIF and its
//! headers, and nothing else (no parsing, no hashing, no record). Same runtime shape as pixelgate
//! on one core (tokio current-thread, hyper http1, mimalloc), so the gap between this and
//! pixelgate is pixelgate's own work and the gap between this and nginx is the HTTP stack's.
//!
//!     cargo build --release --example bare_gif && target/release/examples/bare_gif 127.0.0.1:8099

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GIF: &[u8] = include_bytes!("../static/pixel.gif");

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8099".into());
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate, max-age=0"),
        (header::PRAGMA, "no-cache"),
        (header::EXPIRES, "0"),
        (header::CONTENT_TYPE, "image/gif"),
        (header::CONTENT_LENGTH, "43"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "cross-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        eprintln!("bare_gif: serving on {addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let headers = headers.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let mut r = Response::new(Full::new(Bytes::from_static(GIF)));
                    *r.headers_mut() = headers.clone();
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}
