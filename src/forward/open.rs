//! A batch being written: the events of one [`super::Key`]'s hits, encoded into the request
//! body as the hits arrive, so that each hit is let go at once, while its memory is still in the
//! caches, instead of being read again (cold) when the request is built and freed when it ends.
//! Events are written into blocks the forwarder reuses ([`super::blocks`]).
//!
//! What an event still needs of its hit after that is kept beside it: where its name and id are
//! in the body (the deliveries log), and its event id and account ([`Records`]), from which a
//! delivery record is written if the event is given up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::blocks::{Blocks, Pool};
use super::destination::{Destination, Labels, Reject};
use crate::pipeline::{Budget, QueuedHit, RecordBatch, Share};
use crate::record::{DeliveryRecord, Fields, GivenUp, PixelId, Timestamp};

/// What the delivery records of a batch's hits are written from: each hit's event id (copied,
/// tens of bytes) and account, kept as the hit is batched so that the hit itself goes at once.
/// The pixel is the batch's. Its bytes are counted in the budget for as long as it lives (a
/// delivery keeps it to its end, beyond its requests).
#[derive(Debug)]
pub(super) struct Records {
    pixel: PixelId,
    /// The event ids, one after another.
    ids: String,
    /// Per record: where its id ends in `ids`, and its account in `accounts`.
    list: Vec<(u32, u32)>,
    /// The accounts of the hits, each a new entry only where it differs from the one before
    /// (a pixel's hits share one).
    accounts: Vec<Option<Arc<str>>>,
    share: Share,
}

impl Records {
    pub(super) fn new(pixel: PixelId, budget: &Arc<Budget>) -> Records {
        Records { pixel, ids: String::new(), list: Vec::new(), accounts: Vec::new(), share: budget.take(0) }
    }

    /// About how many bytes keeping one more hit's record adds.
    pub(super) fn growth(&self) -> usize {
        let id = if self.list.is_empty() { 64 } else { self.ids.len() / self.list.len() + 1 };
        id + std::mem::size_of::<(u32, u32)>()
    }

    /// Keeps what `hit`'s delivery record needs, and counts it; answers its index.
    fn push(&mut self, hit: &QueuedHit) -> u32 {
        let capacity = self.ids.capacity() + self.list.capacity() * std::mem::size_of::<(u32, u32)>();
        self.ids.push_str(hit.event_id());
        let account = hit.account_id();
        if self.accounts.last().is_none_or(|last| last.as_deref() != account) {
            self.accounts.push(account.map(Arc::from));
            self.share.add(std::mem::size_of::<Option<Arc<str>>>() + account.map_or(0, str::len));
        }
        self.list.push((self.ids.len() as u32, (self.accounts.len() - 1) as u32));
        // What growing took, as the allocator sees it.
        self.share.add((self.ids.capacity() + self.list.capacity() * std::mem::size_of::<(u32, u32)>()).saturating_sub(capacity));
        (self.list.len() - 1) as u32
    }

    /// How many.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Record `i`'s event id.
    pub(super) fn event_id(&self, i: u32) -> &str {
        let start = if i == 0 { 0 } else { self.list[i as usize - 1].0 as usize };
        &self.ids[start..self.list[i as usize].0 as usize]
    }

    /// The account of record `i`'s hit, if its pixel is registered.
    pub(super) fn account_id(&self, i: u32) -> Option<&str> {
        self.accounts[self.list[i as usize].1 as usize].as_deref()
    }

    /// Adds the delivery record of record `i`, given up by `destination` at `at` (`given_up`
    /// says why), to `out`.
    pub(super) fn write_failed(&self, i: u32, destination: &str, given_up: &GivenUp, at: Timestamp, out: &mut RecordBatch<'_>) {
        let record = DeliveryRecord::failed(self.event_id(i), self.pixel.as_str(), self.account_id(i), destination, given_up, at);
        out.write(at, |buf| record.write_line(buf));
    }

    /// Adds the delivery record of each of them to `out`.
    pub(super) fn write_all_failed(&self, destination: &str, given_up: &GivenUp, out: &mut RecordBatch<'_>) {
        let at = Timestamp::now();
        for i in 0..self.list.len() {
            self.write_failed(i as u32, destination, given_up, at, out);
        }
    }
}

/// One encoded event of a body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event {
    /// Where it is: its block (a piece of the request body, once sealed), start and end.
    pub(super) block: u32,
    pub(super) start: u32,
    pub(super) end: u32,
    /// Where its name and id are (JSON strings), from its start.
    pub(super) name: (u32, u32),
    pub(super) id: (u32, u32),
    /// Its index in its batch's [`Records`].
    pub(super) record: u32,
}

/// A hit the platform would reject: not encoded, given up (with a delivery record) once the
/// pixel's credentials are found.
#[derive(Debug)]
pub(super) struct Rejected {
    pub(super) reject: Reject,
    pub(super) name: String,
    /// Its index in its batch's [`Records`], which hold its event id.
    pub(super) record: u32,
}

/// An open batch: its events written into blocks (the request body's inside, comma-separated),
/// the hits it turned away, and what a failure of each needs. Its memory is counted in the hit
/// outlets' budget while it lives (and then while its delivery does).
#[derive(Debug)]
pub(super) struct Open {
    /// The events, each after a comma but the first.
    pub(super) body: Blocks,
    pub(super) events: Vec<Event>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) records: Records,
    /// When its first hit came; `None` while empty.
    opened: Option<Instant>,
    /// When it was made.
    made: Instant,
    pub(super) share: Share,
}

impl Open {
    /// An empty batch of `pixel`'s hits whose blocks come from `pool`.
    pub(super) fn new(pixel: PixelId, budget: &Arc<Budget>, pool: &Arc<Pool>) -> Open {
        Open { body: Blocks::new(pool), events: Vec::new(), rejected: Vec::new(), records: Records::new(pixel, budget), opened: None, made: Instant::now(), share: budget.take(0) }
    }

    /// Hits in it.
    pub(super) fn len(&self) -> usize {
        self.events.len() + self.rejected.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.opened.is_none()
    }

    /// When it must be sent at the latest, if it holds anything.
    pub(super) fn deadline(&self, max_age: Duration) -> Option<Instant> {
        self.opened.map(|t| t + max_age)
    }

    /// Whether an empty batch was made within `max_age` of `now` (an older one is forgotten:
    /// its pixel's hits stopped coming).
    pub(super) fn fresh(&self, now: Instant, max_age: Duration) -> bool {
        self.made + max_age > now
    }

    /// About how many bytes one more event would add to what it holds: the event (as long as
    /// the ones before it), its place, a block if the last one has no room left, and what its
    /// delivery record needs.
    pub(super) fn growth(&self) -> usize {
        let event = if self.events.is_empty() { 1024 } else { self.body.len() / self.events.len() + 1 };
        event + self.body.growth(event) + std::mem::size_of::<Event>() + self.records.growth()
    }

    /// Bytes of its events.
    pub(super) fn body_len(&self) -> usize {
        self.body.len()
    }

    fn begin(&mut self) {
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
    }

    /// Writes `hit`'s event as of `now` (encoded in `scratch`, then copied into a block),
    /// keeping what its delivery record would need.
    pub(super) fn push<D: Destination>(&mut self, destination: &D, hit: &QueuedHit, now: SystemTime, scratch: &mut Vec<u8>) {
        self.begin();
        scratch.clear();
        let Labels { name, id } = destination.encode(hit, now, scratch);
        let comma: &[u8] = if self.events.is_empty() { b"" } else { b"," };
        let (place, block) = self.body.append(&[comma, scratch]);
        let record = self.records.push(hit);
        let at = |(a, b): (usize, usize)| (a as u32, b as u32);
        let start = place.start + comma.len() as u32;
        self.events.push(Event { block: place.block, start, end: place.end, name: at(name), id: at(id), record });
        self.share.add(block + std::mem::size_of::<Event>());
    }

    /// Keeps a hit the platform would reject, for its delivery record once the credentials are
    /// found.
    pub(super) fn reject<D: Destination>(&mut self, destination: &D, reject: Reject, hit: &QueuedHit) {
        let name = destination.event_name(hit).to_owned();
        self.begin();
        let record = self.records.push(hit);
        self.share.add(name.len() + std::mem::size_of::<Rejected>());
        self.rejected.push(Rejected { reject, name, record });
    }
}
