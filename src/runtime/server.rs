//! The hyper/tokio front door: accept loop, connection limits and graceful shutdown. Each
//! connection starts in the pixel lane ([`super::lane`]), which answers plain pixel reads from
//! their parsed heads, and is handed to hyper at the first request the lane does not take.
//!
//! Hostile clients are bounded at the transport: at most `max_connections` at once (further
//! connections wait in the listen backlog), and a connection that has not delivered a complete
//! request head within `header_read_timeout` of being accepted or of finishing its previous request
//! is closed — a silent new connection, a slowloris header trickle, an idle keep-alive connection
//! and a client that stops reading its answers (hyper then stops reading its requests) alike. A
//! request head over `max_header_bytes` gets hyper's `431`/`414`.
//!
//! Those deadlines cost a request two atomic stores and a read of the coarse clock
//! ([`crate::clock`]; the deadline is padded by its resolution, so no connection is cut early):
//! one sweeper task per listener reads the
//! per-connection stamps a few times a second and shuts the late sockets down (a second descriptor
//! of each socket is kept for that), where hyper's own header timer would arm and disarm a timer
//! for every request. Shutdown works through the same table: idle connections get their read side
//! shut (hyper sees the end of the stream and closes), a connection with a request in hand gets it
//! once that request is answered, and whatever is left after the grace period is aborted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use super::lane::{self, Replay};
use crate::edge::{EdgeBody, Lane};
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
        ServerOptions { name: "pixel", max_connections: 10_000, header_read_timeout: Duration::from_secs(10), max_header_bytes: 32 * 1024, shutdown_grace: Duration::from_secs(10) }
    }
}

/// Serves `listener` until `shutdown` resolves, each connection with the service `service_for`
/// makes for its peer; then stops accepting, lets every open connection finish its in-flight
/// request (closing idle keep-alive ones), and returns once all connections have ended.
/// Connections still open after `shutdown_grace` are cut, so no request handler outlives this
/// function.
pub async fn serve<S>(listener: TcpListener, service_for: impl Fn(SocketAddr) -> S, opts: ServerOptions, shutdown: impl Future<Output = ()>)
where
    S: tower_service::Service<Request<Incoming>, Response = Response<EdgeBody>, Error = Infallible> + Lane + Clone + Send + Sync + 'static,
    S::Future: Send + Unpin + 'static,
{
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let mut http = http1::Builder::new();
    // No hyper timer: the sweeper enforces the header deadline (see the module docs).
    // writev(false): the answer's head and its 43-byte GIF go out as one buffer; one plain
    // write costs the kernel less than a two-part writev (paired runs: 8.8 → 8.4 µs per hit).
    http.header_read_timeout(None).max_header_size(opts.max_header_bytes).max_buf_size(opts.max_header_bytes.max(64 * 1024)).writev(false);
    let http = Arc::new(http);
    let table = Arc::new(Table::new(opts.name, opts.header_read_timeout));
    let sweeper = tokio::spawn(sweep(table.clone()));
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
        let Some((id, conn)) = table.open(&stream) else {
            // No second descriptor (EMFILE): the connection could not be bounded, so refuse it.
            continue;
        };
        let task = tokio::spawn(connection(stream, service_for(peer), http.clone(), opts.max_header_bytes, opts.name, permit, Registered { conn: conn.clone(), id }));
        let _ = conn.abort.set(task.abort_handle());
    }
    drop(listener);
    table.stop();
    let all = u32::try_from(opts.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(opts.shutdown_grace, limit.acquire_many(all)).await.is_err() {
        tracing::warn!(grace = ?opts.shutdown_grace, listener = opts.name, "connections still open after the shutdown grace period; cutting them");
        table.cut();
        let _ = limit.acquire_many(all).await;
    }
    sweeper.abort();
}

/// `Conn::stamp` while the connection's service is handling a request.
const BUSY: u64 = u64::MAX;

/// The open connections of one listener.
struct Table {
    listener: &'static str,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// How long a connection may go without a request head, plus the resolution of the clock
    /// stamps are read from ([`crate::clock`]), so none is cut early.
    timeout_ms: u64,
    stopping: AtomicBool,
}

/// One open connection, as the sweeper and shutdown see it.
struct Conn {
    table: Arc<Table>,
    /// [`Table::now`] when the connection was accepted or last finished a request; [`BUSY`]
    /// while a request is being handled (body reads and admin calls have their own bounds).
    stamp: AtomicU64,
    /// A second descriptor of the socket, to shut it down from outside the connection's task.
    twin: std::net::TcpStream,
    /// Set once the sweeper has shut it down.
    timed_out: AtomicBool,
    abort: OnceLock<AbortHandle>,
}

impl Conn {
    /// A request was answered: the connection's header deadline starts again. Whether shutdown
    /// has begun (then the connection is to close).
    fn answered(&self) -> bool {
        self.stamp.store(self.table.now(), Ordering::SeqCst);
        self.table.stopping.load(Ordering::SeqCst)
    }
}

impl Table {
    fn new(listener: &'static str, timeout: Duration) -> Table {
        Table {
            listener,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1).saturating_add(crate::clock::resolution_ms()),
            stopping: AtomicBool::new(false),
        }
    }

    /// How often the sweeper looks: a quarter of the timeout, between 10 ms and 250 ms.
    fn tick(&self) -> Duration {
        Duration::from_millis((self.timeout_ms / 4).clamp(10, 250))
    }

    /// The coarse clock's milliseconds (never [`BUSY`]): stamping every request with the precise
    /// clock cost a visible share of a pixel hit.
    fn now(&self) -> u64 {
        crate::clock::now_ms().min(BUSY - 1)
    }

    fn open(self: &Arc<Self>, stream: &TcpStream) -> Option<(u64, Arc<Conn>)> {
        let twin = match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => std::net::TcpStream::from(fd),
            Err(err) => {
                tracing::warn!(error = %err, "cannot keep a second descriptor of a connection; closing it");
                return None;
            }
        };
        let conn = Arc::new(Conn { table: self.clone(), stamp: AtomicU64::new(self.now()), twin, timed_out: AtomicBool::new(false), abort: OnceLock::new() });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open.lock().expect("connection table").insert(id, conn.clone());
        Some((id, conn))
    }

    /// Stops serving: every connection closes after the request it has in hand, an idle one now.
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for conn in self.open.lock().expect("connection table").values() {
            if conn.stamp.load(Ordering::SeqCst) != BUSY {
                // hyper sees the end of the stream once it has read what was already sent.
                let _ = conn.twin.shutdown(Shutdown::Read);
            }
        }
    }

    /// The grace period is over: drops every connection's task, answered or not.
    fn cut(&self) {
        for conn in self.open.lock().expect("connection table").values() {
            if let Some(task) = conn.abort.get() {
                task.abort();
            }
        }
    }
}

/// Shuts down connections that have gone `timeout_ms` without a request head.
async fn sweep(table: Arc<Table>) {
    let mut tick = tokio::time::interval(table.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = table.now();
        for conn in table.open.lock().expect("connection table").values() {
            let stamp = conn.stamp.load(Ordering::Relaxed);
            if stamp != BUSY && now.saturating_sub(stamp) >= table.timeout_ms && !conn.timed_out.swap(true, Ordering::Relaxed) {
                let _ = conn.twin.shutdown(Shutdown::Both);
                metrics::counter!(m::CONNECTIONS_TIMED_OUT, "listener" => table.listener, "reason" => "header_timeout").increment(1);
            }
        }
    }
}

/// A connection's entry in its table, taken out when the connection's task ends, however it ends.
struct Registered {
    conn: Arc<Conn>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conn.table.open.lock().expect("connection table").remove(&self.id);
    }
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

/// A request's answer future that marks its connection busy until the answer is ready.
struct Handling<F> {
    inner: F,
    conn: Arc<Conn>,
}

impl<F: Future + Unpin> Future for Handling<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let out = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        if self.conn.answered() {
            // Shutdown came while this request was in hand: it is answered, then the connection closes.
            let _ = self.conn.twin.shutdown(Shutdown::Read);
        }
        Poll::Ready(out)
    }
}

async fn connection<S>(mut stream: TcpStream, service: S, http: Arc<http1::Builder>, max_head: usize, listener: &'static str, permit: OwnedSemaphorePermit, registered: Registered)
where
    S: tower_service::Service<Request<Incoming>, Response = Response<EdgeBody>, Error = Infallible> + Lane + Clone + Send + Sync + 'static,
    S::Future: Send + Unpin + 'static,
{
    let _open = OpenConnection::new(listener, permit);
    let _ = stream.set_nodelay(true);
    let conn = registered.conn.clone();
    // An answer from the lane ends a request as `Handling` does: the connection closes after it
    // once shutdown has begun.
    let read = match lane::run(&mut stream, &service, max_head, || conn.answered()).await {
        lane::Outcome::Closed => return,
        lane::Outcome::HandOver(read) => read,
    };
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        conn.stamp.store(BUSY, Ordering::SeqCst);
        let mut service = service.clone();
        Handling { inner: service.call(req), conn: conn.clone() }
    });
    let _ = http.serve_connection(TokioIo::new(Replay::new(read, stream)), svc).await;
    drop(registered);
}
