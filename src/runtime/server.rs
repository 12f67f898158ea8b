//! The hyper/tokio front door: accept loop, connection limits and graceful shutdown.
//!
//! Hostile clients are bounded at the transport: at most `max_connections` at once (further
//! connections wait in the listen backlog), a connection must deliver a complete request head
//! within `header_read_timeout` (a silent new connection, a slowloris header trickle and an idle
//! keep-alive connection are all closed), a connection whose client stops reading its answers is
//! closed once a write has waited as long, and a request head over `max_header_bytes` gets
//! hyper's `431`/`414`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_io_timeout::TimeoutStream;

use crate::client_ip::PeerIp;
use crate::edge::EdgeBody;
use crate::metrics as m;

/// Transport limits of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Names the listener in metric labels (`pixel`, `metrics`).
    pub name: &'static str,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a connection gets to send a complete request head, first request or next one.
    pub header_read_timeout: Duration,
    /// Largest request line plus header block, in bytes.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests before it stops waiting.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            name: "pixel",
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting, lets every
/// open connection finish its in-flight request (closing idle keep-alive ones), and returns once
/// all connections have ended. Connections still open after `shutdown_grace` are cut, so no
/// request handler outlives this function.
pub async fn serve<S>(listener: TcpListener, service: S, opts: ServerOptions, shutdown: impl Future<Output = ()>)
where
    S: tower_service::Service<Request<Incoming>, Response = Response<EdgeBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let (stop_tx, stop_rx) = watch::channel(Stop::Serve);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_header_size(opts.max_header_bytes)
        .max_buf_size(opts.max_header_bytes.max(64 * 1024));
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning; the backlog holds the client.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        metrics::counter!(m::CONNECTIONS_ACCEPTED, "listener" => opts.name).increment(1);
        tokio::spawn(connection(stream, peer, service.clone(), http.clone(), opts.clone(), permit, stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(Stop::Graceful);
    let all = u32::try_from(opts.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(opts.shutdown_grace, limit.acquire_many(all)).await.is_err() {
        tracing::warn!(grace = ?opts.shutdown_grace, listener = opts.name, "connections still open after the shutdown grace period; cutting them");
        let _ = stop_tx.send(Stop::Cut);
        let _ = limit.acquire_many(all).await;
    }
}

/// Resolves once the stop state satisfies `pred` (or the accept loop is gone).
async fn until(rx: &mut watch::Receiver<Stop>, pred: impl Fn(Stop) -> bool) {
    let _ = rx.wait_for(|s| pred(*s)).await.map(|_| ());
}

/// What the accept loop asks of open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Keep serving.
    Serve,
    /// Finish the request in flight, then close.
    Graceful,
    /// Close now: the grace period is over.
    Cut,
}

/// Counts an open connection for as long as it lives.
struct OpenConnection {
    listener: &'static str,
    _permit: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(listener: &'static str, permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(m::CONNECTIONS_OPEN, "listener" => listener).increment(1.0);
        OpenConnection { listener, _permit: permit }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(m::CONNECTIONS_OPEN, "listener" => self.listener).decrement(1.0);
    }
}

async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    http: Arc<http1::Builder>,
    opts: ServerOptions,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<Stop>,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<EdgeBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let _open = OpenConnection::new(opts.name, permit);
    let _ = stream.set_nodelay(true);
    // hyper bounds reading a request head; a client that stops reading our answers would
    // otherwise hold its slot once the socket buffers fill.
    let mut io = TimeoutStream::new(stream);
    io.set_write_timeout(Some(opts.header_read_timeout));
    let peer = PeerIp(peer.ip());
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(peer);
        let mut service = service.clone();
        service.call(req)
    });
    let conn = http.serve_connection(TokioIo::new(Box::pin(io)), svc);
    tokio::pin!(conn);
    let mut cut = stop.clone();
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = until(&mut stop, |s| s != Stop::Serve) => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                _ = until(&mut cut, |s| s == Stop::Cut) => return,
            }
        }
    };
    if let Err(err) = result {
        let reason = if err.is_timeout() {
            "header_timeout"
        } else if std::error::Error::source(&err).and_then(|e| e.downcast_ref::<std::io::Error>()).is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
            "write_timeout"
        } else {
            return;
        };
        metrics::counter!(m::CONNECTIONS_TIMED_OUT, "listener" => opts.name, "reason" => reason).increment(1);
    }
}
