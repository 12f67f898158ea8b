//! Fixed-size blocks that a batch writes its events into, and the request body made of them.
//!
//! A batch of 1,000 events is about 600 KiB of JSON. Written into one growing buffer, that is a
//! few large allocations made and freed per batch, about
//! a hundred a second under load, and the allocator keeps freed large pages for a while before it
//! returns them (mimalloc: a second): the process held 10–20 MiB more than forwarding counted.
//! Blocks of [`BLOCK_BYTES`] are taken from a [`Pool`] the forwarder keeps, filled one after
//! another (a piece never spans two), and given back to it when the request that sent them is
//! done, so that under load almost nothing is allocated.
//! The pool keeps at most [`Pool::new`]'s `keep` bytes of free blocks; the blocks in use are
//! counted in the forwarding budget by whoever holds them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// The size of a block.
pub(super) const BLOCK_BYTES: usize = 64 * 1024;

/// The size of a batch's first block: a pixel with a few hits per flush holds no more.
pub(super) const FIRST_BLOCK_BYTES: usize = 4 * 1024;

/// Free blocks of [`BLOCK_BYTES`], kept for the next batches.
#[derive(Debug)]
pub(super) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Most free blocks kept.
    keep: usize,
}

impl Pool {
    /// A pool that keeps at most `keep` bytes of free blocks (at least one block).
    pub(super) fn new(keep: usize) -> Arc<Pool> {
        Arc::new(Pool { free: Mutex::new(Vec::new()), keep: (keep / BLOCK_BYTES).max(1) })
    }

    /// An empty block of `size` bytes (a free one if it is a full block and one is kept), or of
    /// `at_least` if that is more.
    fn get(&self, size: usize, at_least: usize) -> Vec<u8> {
        if size == BLOCK_BYTES
            && at_least <= BLOCK_BYTES
            && let Some(block) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()
        {
            return block;
        }
        Vec::with_capacity(size.max(at_least))
    }

    /// Takes `block` back, if it is a full block and there is room for it.
    fn put(&self, mut block: Vec<u8>) {
        if block.capacity() != BLOCK_BYTES {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            block.clear();
            free.push(block);
        }
    }

    /// Bytes of free blocks it keeps.
    #[cfg(test)]
    pub(super) fn free_bytes(&self) -> usize {
        self.free.lock().unwrap().len() * BLOCK_BYTES
    }
}

/// Where a piece is in its [`Blocks`]: block, start, end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) block: u32,
    pub(super) start: u32,
    pub(super) end: u32,
}

/// Pieces of bytes written one after another into blocks; each piece lies whole in one block.
/// The blocks go back to the pool when it drops (or when the body made of them does).
#[derive(Debug)]
pub(super) struct Blocks {
    pool: Arc<Pool>,
    blocks: Vec<Vec<u8>>,
    /// Bytes of pieces.
    len: usize,
}

impl Blocks {
    pub(super) fn new(pool: &Arc<Pool>) -> Blocks {
        Blocks { pool: pool.clone(), blocks: Vec::new(), len: 0 }
    }

    /// Bytes of the pieces written.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The bytes appending `more` bytes would newly take: a block, if the last one has no room.
    pub(super) fn growth(&self, more: usize) -> usize {
        match self.blocks.last() {
            Some(last) if last.capacity() - last.len() >= more => 0,
            Some(_) => BLOCK_BYTES.max(more),
            None => FIRST_BLOCK_BYTES.max(more),
        }
    }

    /// Appends one piece made of `parts`, in the last block if it has room for them, else in a
    /// new one. Answers where the piece is, and the bytes of the block taken for it (0 if none).
    pub(super) fn append(&mut self, parts: &[&[u8]]) -> (Place, usize) {
        let more: usize = parts.iter().map(|p| p.len()).sum();
        let mut taken = 0;
        if self.blocks.last().is_none_or(|last| last.capacity() - last.len() < more) {
            let size = if self.blocks.is_empty() { FIRST_BLOCK_BYTES } else { BLOCK_BYTES };
            let block = self.pool.get(size, more);
            taken = block.capacity();
            self.blocks.push(block);
        }
        let index = self.blocks.len() - 1;
        let block = &mut self.blocks[index];
        let start = block.len();
        for part in parts {
            block.extend_from_slice(part);
        }
        self.len += more;
        (Place { block: index as u32, start: start as u32, end: block.len() as u32 }, taken)
    }

    /// The piece at `place`.
    #[cfg(test)]
    pub(super) fn get(&self, place: Place) -> &[u8] {
        &self.blocks[place.block as usize][place.start as usize..place.end as usize]
    }

    /// The blocks as shared bytes, each going back to the pool when its last clone drops.
    pub(super) fn into_bytes(mut self) -> Vec<Bytes> {
        let pool = self.pool.clone();
        std::mem::take(&mut self.blocks).into_iter().map(|block| Bytes::from_owner(Pooled { block, pool: pool.clone() })).collect()
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        for block in self.blocks.drain(..) {
            self.pool.put(block);
        }
    }
}

/// A block lent to [`Bytes`]: back to its pool on drop.
struct Pooled {
    block: Vec<u8>,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.block
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.block));
    }
}

/// A request body made of pieces (what comes before the events, the blocks they are in, what
/// comes after them), sent one after another without being joined. Cloning it shares them.
#[derive(Debug, Clone, Default)]
pub struct Body {
    pieces: Arc<[Bytes]>,
    len: usize,
}

impl Body {
    /// A body of `pieces`, in order.
    pub fn new(pieces: Vec<Bytes>) -> Body {
        let len = pieces.iter().map(Bytes::len).sum();
        Body { pieces: pieces.into(), len }
    }

    /// Its pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its bytes, joined (a copy: for tests and fakes).
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces.concat()
    }

    /// An HTTP body that sends it, its length known in advance (`Content-Length`).
    pub fn stream(&self) -> BodyStream {
        BodyStream { pieces: self.pieces.iter().filter(|p| !p.is_empty()).cloned().collect(), remaining: self.len as u64, paused: true }
    }
}

/// [`Body`] as an [`http_body::Body`]: one frame per piece, with a pause between two.
///
/// Sending a batch is mostly the kernel's work (copying the body, TCP), which no counting of
/// our own work sees: ten 600 KiB bodies handed to the HTTP client at once kept the forwarder's
/// thread on the CPU for about 2 ms, the answers waiting. So the stream gives one piece (at most
/// a block) at a time: between two it answers `Pending` once, having asked to be polled again,
/// so that the client writes what it holds before asking for more, and it counts each piece as
/// work for [`crate::pace`], which lets a waiting answer run.
#[derive(Debug)]
pub struct BodyStream {
    pieces: VecDeque<Bytes>,
    remaining: u64,
    /// Whether the pause before the next piece was taken.
    paused: bool,
}

impl http_body::Body for BodyStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.pieces.is_empty() {
            return Poll::Ready(None);
        }
        if !std::mem::replace(&mut this.paused, false) {
            this.paused = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        crate::pace::work(crate::pace::CHECK_EVERY);
        Poll::Ready(this.pieces.pop_front().map(|piece| {
            this.remaining -= piece.len() as u64;
            Ok(Frame::data(piece))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn pieces_never_span_blocks_and_blocks_come_back() {
        let pool = Pool::new(4 * BLOCK_BYTES);
        let mut blocks = Blocks::new(&pool);
        let mut written = Vec::new();
        for i in 0..200u32 {
            let piece = vec![b'a' + (i % 26) as u8; 1000 + i as usize];
            let grows = blocks.growth(piece.len() + 1);
            let (place, taken) = blocks.append(&[b",", &piece]);
            assert_eq!(grows, taken, "growth foretells what an append takes");
            assert_eq!(blocks.get(place), [&b","[..], &piece].concat());
            written.push((place, piece));
        }
        assert_eq!(written[0].0, Place { block: 0, start: 0, end: 1001 });
        assert_eq!(blocks.blocks[0].capacity(), FIRST_BLOCK_BYTES);
        for (place, piece) in &written {
            assert_eq!(&blocks.get(*place)[1..], &piece[..], "a piece stays where it was put");
            assert!(place.end as usize <= blocks.blocks[place.block as usize].capacity());
        }
        let (_, taken) = blocks.append(&[&vec![b'y'; BLOCK_BYTES + 1]]);
        assert_eq!(taken, BLOCK_BYTES + 1, "a piece longer than a block gets a block of its own");
        assert_eq!(blocks.len(), written.iter().map(|(_, p)| p.len() + 1).sum::<usize>() + BLOCK_BYTES + 1);
        let full = blocks.blocks.iter().filter(|b| b.capacity() == BLOCK_BYTES).count();
        assert!(full >= 3, "{full}");
        let bytes = blocks.into_bytes();
        assert_eq!(pool.free_bytes(), 0);
        drop(bytes);
        assert_eq!(pool.free_bytes(), full.min(4) * BLOCK_BYTES, "full blocks come back, up to what the pool keeps");
        let mut again = Blocks::new(&pool);
        again.append(&[b"x"]);
        again.append(&[&vec![b'z'; FIRST_BLOCK_BYTES]]);
        assert_eq!(pool.free_bytes(), 3 * BLOCK_BYTES, "a kept block is used again");
        assert!(again.blocks[1].capacity() == BLOCK_BYTES && again.get(Place { block: 1, start: 0, end: 1 }) == b"z");
        drop(again);
        assert_eq!(pool.free_bytes(), 4 * BLOCK_BYTES);
    }

    #[tokio::test]
    async fn a_body_streams_its_pieces_with_a_known_length() {
        let body = Body::new(vec![Bytes::from_static(b"{\"data\":["), Bytes::new(), Bytes::from_static(b"1,2"), Bytes::from_static(b"]}")]);
        assert_eq!((body.len(), body.to_vec()), (14, b"{\"data\":[1,2]}".to_vec()));
        let stream = body.stream();
        assert_eq!(http_body::Body::size_hint(&stream).exact(), Some(14));
        assert_eq!(stream.collect().await.unwrap().to_bytes(), body.to_vec());
    }
}
