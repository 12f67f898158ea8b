//! A batch being written: the events of one [`super::Key`]'s hits, encoded into the request
//! body as the hits arrive, so that each hit is let go at once, while its memory is still in the
//! caches, instead of being read again (cold) when the request is built and freed when it ends.
//!
//! What an event still needs of its hit after that is kept beside it: where its name and id are
//! in the body (the deliveries log), and its [`Record`], from which a failure record is written
//! if the event is given up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::destination::{Destination, Labels, Reject};
use crate::pipeline::{Budget, QueuedHit, RecordBatch, Share};
use crate::record::{CapiFailure, Fields, MAX_RECORD_BYTES, RecordLine};

/// The room a body gets at first, when nothing says how many events it will hold.
const FIRST_ROOM: usize = 4096;

/// Room a line must leave below [`MAX_RECORD_BYTES`] for a failure's fields: a longer line's hit
/// is kept whole instead, so that its failure record is cut to fit as any over-long record is.
const FAILURE_ROOM: usize = 64 * 1024;

/// What a given-up event's failure record is made from.
#[derive(Debug)]
pub(super) enum Record {
    /// The hit's record line, as the raw-record sink got it: a slice of the intake's buffer,
    /// shared with the other hits of its batch.
    Line(Bytes),
    /// The hit itself, for a line too long to take a failure's fields.
    Hit(Arc<QueuedHit>),
}

impl Record {
    /// What a failure of `hit`, whose record line is `line`, will be written from.
    pub(super) fn new(hit: Arc<QueuedHit>, line: Bytes) -> Record {
        if line.is_empty() || line.len() + FAILURE_ROOM > MAX_RECORD_BYTES { Record::Hit(hit) } else { Record::Line(line) }
    }

    /// The bytes it holds that nothing else counts (a kept hit counts its own).
    fn held(&self) -> usize {
        match self {
            Record::Line(line) => line.len(),
            Record::Hit(_) => 0,
        }
    }

    /// Adds the failure record (the record, flagged `capi_failed`, with `failure`) to `out`.
    pub(super) fn write_failed(&self, failure: &CapiFailure, out: &mut RecordBatch<'_>) {
        match self {
            Record::Line(line) => match RecordLine::parse(line) {
                Ok(read) => out.write(read.received_at(), |buf| read.write_failed(failure, buf)),
                Err(err) => tracing::error!(error = %err, reason = failure.reason, "a forwarded hit's record line could not be read: its failure record is not written"),
            },
            Record::Hit(hit) => {
                let record = hit.to_hit().capi_failed(failure.clone());
                out.write(record.received_at(), |buf| record.write_line(buf));
            }
        }
    }

    /// The hit's account, if its pixel is registered.
    pub(super) fn account_id(&self) -> Option<String> {
        match self {
            Record::Line(line) => RecordLine::parse(line).ok().and_then(|read| read.account_id().map(str::to_owned)),
            Record::Hit(hit) => hit.account_id().map(str::to_owned),
        }
    }
}

/// One encoded event of a body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event {
    /// Where it ends in its body.
    pub(super) end: u32,
    /// Where its name and id are (JSON strings), from its start.
    pub(super) name: (u32, u32),
    pub(super) id: (u32, u32),
    /// Its [`Record`], in its batch's records.
    pub(super) record: u32,
}

/// A hit the platform would reject: not encoded, given up (with a failure record) once the
/// pixel's credentials are found.
#[derive(Debug)]
pub(super) struct Rejected {
    pub(super) reject: Reject,
    pub(super) name: String,
    pub(super) id: String,
    /// Its [`Record`], in its batch's records.
    pub(super) record: u32,
}

/// An open batch: a body with events written into it, the hits it turned away, and what a
/// failure of each needs. Its memory is counted in the hit outlets' budget while it lives
/// (and then while its delivery does).
#[derive(Debug)]
pub(super) struct Open {
    /// The request body so far: [`Destination::body_start`], then the events, comma-separated.
    pub(super) body: Vec<u8>,
    /// Where the first event starts.
    pub(super) start: usize,
    pub(super) events: Vec<Event>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) records: Vec<Record>,
    /// When its first hit came; `None` while empty.
    opened: Option<Instant>,
    /// The room its body gets when its first hit comes.
    room: usize,
    /// When it was made.
    made: Instant,
    pub(super) share: Share,
}

impl Open {
    /// An empty batch whose body will start with `room` bytes.
    pub(super) fn new(budget: &Arc<Budget>, room: usize) -> Open {
        Open { body: Vec::new(), start: 0, events: Vec::new(), rejected: Vec::new(), records: Vec::new(), opened: None, room, made: Instant::now(), share: budget.take(0) }
    }

    /// An empty batch with the default room.
    pub(super) fn first(budget: &Arc<Budget>) -> Open {
        Open::new(budget, FIRST_ROOM)
    }

    /// The next batch after this full one: room for as much again.
    pub(super) fn next(&self, budget: &Arc<Budget>) -> Open {
        Open::new(budget, self.body.len() + self.body.len() / 16 + 256)
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

    /// Bytes of its body.
    pub(super) fn body_len(&self) -> usize {
        self.body.len()
    }

    fn begin<D: Destination>(&mut self, destination: &D) {
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
            self.body.reserve_exact(self.room);
            destination.body_start(&mut self.body);
            self.start = self.body.len();
        }
    }

    /// Writes `hit`'s event as of `now`, keeping its record (`line`) for its failure.
    pub(super) fn push<D: Destination>(&mut self, destination: &D, hit: Arc<QueuedHit>, line: Bytes, now: SystemTime) {
        let capacity = self.body.capacity();
        self.begin(destination);
        if !self.events.is_empty() {
            self.body.push(b',');
        }
        let start = self.body.len();
        let Labels { name, id } = destination.encode(&hit, now, &mut self.body);
        let record = Record::new(hit, line);
        let from_start = |(a, b): (usize, usize)| ((a - start) as u32, (b - start) as u32);
        self.events.push(Event { end: self.body.len() as u32, name: from_start(name), id: from_start(id), record: self.records.len() as u32 });
        self.share.add(self.body.capacity() - capacity + record.held() + std::mem::size_of::<Event>() + std::mem::size_of::<Record>());
        self.records.push(record);
    }

    /// Keeps a hit the platform would reject (its record, `line`), for its failure once the
    /// credentials are found.
    pub(super) fn reject<D: Destination>(&mut self, destination: &D, reject: Reject, hit: Arc<QueuedHit>, line: Bytes) {
        let (name, id) = (destination.event_name(&hit).to_owned(), hit.event_id().to_owned());
        let record = Record::new(hit, line);
        let capacity = self.body.capacity();
        self.begin(destination);
        self.share.add(self.body.capacity() - capacity + record.held() + name.len() + id.len() + std::mem::size_of::<Rejected>() + std::mem::size_of::<Record>());
        self.rejected.push(Rejected { reject, name, id, record: self.records.len() as u32 });
        self.records.push(record);
    }
}
