//! The front door's pixel lane: each connection starts here, reading and parsing request heads
//! itself and answering those its service's [`Lane`] takes (a plain pixel `GET`/`HEAD`, see
//! `edge::lane`), several pipelined ones in one write. At the first request the lane does not
//! take (another path, a method with a body, a header that changes the answer, a malformed or
//! over-long head), everything read and not answered is handed, with the socket, to hyper,
//! which serves the rest of the connection as it serves any: the lane never answers what it does
//! not understand.
//!
//! The connection's deadlines and shutdown are the server's (`runtime::server`): the lane stamps
//! the connection after each write of answers, closes it after one once shutdown has begun, and
//! ends when a timed-out or idle closing connection's read side is shut. Its memory is bounded:
//! a write carries at most [`MAX_WRITE`] bytes of answers (pipelined heads beyond wait in the
//! read buffer), the read buffer holds at most one head of the server's limit plus a read, and
//! both go back to their usual size after a large batch.
//!
//! One difference from hyper, kept on purpose: a client that half-closes its side after sending
//! a request still gets the answer (hyper, with half-closed connections off, closes without
//! answering; the hit is recorded either way).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::edge::Lane;

/// Most header lines the lane parses; a head with more goes to hyper (which takes up to 100).
const MAX_LINES: usize = 64;

/// Room for reading: heads of a few hundred bytes, several when pipelined.
const READ_ROOM: usize = 8 * 1024;

/// Most bytes of answers gathered for one write; the heads after them wait for the next.
const MAX_WRITE: usize = 64 * 1024;

/// How a connection left the lane.
pub(super) enum Outcome {
    /// The client closed it, it failed, or shutdown closed it after an answer.
    Closed,
    /// The lane met a request it does not take: hyper serves the connection from these bytes on.
    HandOver(Vec<u8>),
}

/// Serves the requests at the head of `stream` that `lane` takes, until one it does not take
/// (heads over `max_head` bytes included), the end of the stream, or an answer after which
/// `answered` (called once per write of answers) says the connection is to close.
pub(super) async fn run<L: Lane>(stream: &mut TcpStream, lane: &L, max_head: usize, answered: impl Fn() -> bool) -> Outcome {
    let mut read = Vec::with_capacity(READ_ROOM);
    let mut out = Vec::new();
    // Whether `read` may start with complete heads not yet answered (a batch cut at MAX_WRITE).
    let mut pending = false;
    loop {
        if !pending {
            if read.capacity() - read.len() < READ_ROOM / 2 {
                // Exact: a partial head grows the buffer to max_head plus a read at most.
                read.reserve_exact(READ_ROOM);
            }
            match stream.read_buf(&mut read).await {
                Ok(0) if read.is_empty() => return Outcome::Closed,
                // The stream ended inside a head: hyper answers it as it would have.
                Ok(0) => return Outcome::HandOver(read),
                Ok(_) => {}
                Err(_) => return Outcome::Closed,
            }
        }
        let batch = answer_all(&read, lane, max_head, &mut out);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return Outcome::Closed;
            }
            out.clear();
            out.shrink_to(READ_ROOM);
        }
        read.drain(..batch.taken);
        if read.capacity() > 2 * READ_ROOM && read.len() < READ_ROOM / 2 {
            read.shrink_to(READ_ROOM);
        }
        if batch.leave {
            return Outcome::HandOver(read);
        }
        if batch.taken > 0 && answered() {
            return Outcome::Closed;
        }
        pending = batch.full;
    }
}

/// What [`answer_all`] did with the start of the read buffer.
#[derive(Debug, PartialEq, Eq)]
struct Batch {
    /// Bytes of the heads it answered.
    taken: usize,
    /// It met a head the lane leaves (the rest of the connection is hyper's).
    leave: bool,
    /// It stopped at [`MAX_WRITE`] bytes of answers: complete heads may follow.
    full: bool,
}

/// Answers the complete heads at the start of `read` that `lane` takes, into `out`, until
/// [`MAX_WRITE`] bytes of answers, a head the lane leaves, or the start of one still arriving
/// (within `max_head`).
fn answer_all<L: Lane>(read: &[u8], lane: &L, max_head: usize, out: &mut Vec<u8>) -> Batch {
    let mut taken = 0;
    while taken < read.len() {
        if out.len() >= MAX_WRITE {
            return Batch { taken, leave: false, full: true };
        }
        let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_LINES];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&read[taken..], &mut lines) {
            Ok(httparse::Status::Complete(len)) if len <= max_head && lane.answer(&req, out) => taken += len,
            Ok(httparse::Status::Partial) if read.len() - taken <= max_head => break,
            _ => return Batch { taken, leave: true, full: false },
        }
    }
    Batch { taken, leave: false, full: false }
}

/// A connection handed to hyper: the bytes the lane read and did not answer, then the socket.
pub(super) struct Replay {
    read: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl Replay {
    pub(super) fn new(read: Vec<u8>, stream: TcpStream) -> Replay {
        Replay { read, at: 0, stream }
    }
}

impl AsyncRead for Replay {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `GET /yes` only, answering `ok;`.
    struct Yes;

    impl Lane for Yes {
        fn answer(&self, req: &httparse::Request<'_, '_>, out: &mut Vec<u8>) -> bool {
            (req.path == Some("/yes")).then(|| out.extend_from_slice(b"ok;")).is_some()
        }
    }

    #[test]
    fn answers_pipelined_heads_up_to_the_first_it_leaves() {
        let mut out = Vec::new();
        let read = b"GET /yes HTTP/1.1\r\n\r\nGET /yes HTTP/1.1\r\n\r\nGET /no HTTP/1.1\r\n\r\nGET /yes HTTP/1.1\r\n\r\n";
        assert_eq!(answer_all(read, &Yes, 1024, &mut out), Batch { taken: 42, leave: true, full: false });
        assert_eq!(out, b"ok;ok;");
    }

    #[test]
    fn a_batch_stops_at_the_write_limit_and_the_rest_waits() {
        let mut out = Vec::new();
        let read = b"GET /yes HTTP/1.1\r\n\r\n".repeat(MAX_WRITE);
        let batch = answer_all(&read, &Yes, 1024, &mut out);
        assert_eq!(batch, Batch { taken: 21 * MAX_WRITE.div_ceil(3), leave: false, full: true });
        assert!(out.len() >= MAX_WRITE && out.len() < MAX_WRITE + 3, "{}", out.len());
    }

    #[test]
    fn waits_for_the_rest_of_a_head_within_the_limit_and_leaves_a_longer_or_malformed_one() {
        let mut out = Vec::new();
        let waits = |taken| Batch { taken, leave: false, full: false };
        let leaves = Batch { taken: 0, leave: true, full: false };
        assert_eq!(answer_all(b"GET /yes HTTP/1.1\r\n\r\nGET /yes HTTP/1.1\r\nHost: a", &Yes, 1024, &mut out), waits(21));
        assert_eq!(out, b"ok;");
        out.clear();
        assert_eq!(answer_all(b"GET /yes HTTP/1.1\r\nHost: aaaaaaaa", &Yes, 16, &mut out), leaves, "a head already over the limit");
        assert_eq!(answer_all(b"GET /yes HTTP/1.1\r\nHost: a\r\n\r\n", &Yes, 16, &mut out), leaves, "a complete head over the limit");
        assert_eq!(answer_all(b"GET /yes HTTP/1.1\r\nHo st: a\r\n\r\n", &Yes, 1024, &mut out), leaves, "malformed");
        let many: String = (0..MAX_LINES + 1).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(answer_all(format!("GET /yes HTTP/1.1\r\n{many}\r\n").as_bytes(), &Yes, 1 << 20, &mut out), leaves, "more lines than the lane parses");
        assert!(out.is_empty());
    }
}
