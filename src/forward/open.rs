//! A batch being written: the events of one [`super::Key`]'s hits, encoded into the request
//! body as the hits arrive, so that each hit is let go at once, while its memory is still in the
//! caches, instead of being read again (cold) when the request is built and freed when it ends.
//! Events and record lines are written into blocks the forwarder reuses ([`super::blocks`]).
//!
//! What an event still needs of its hit after that is kept beside it: where its name and id are
//! in the body (the deliveries log), and its record line ([`Records`]), from which a failure
//! record is written if the event is given up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::blocks::{Blocks, Place, Pool};
use super::destination::{Destination, Labels, Reject};
use crate::pipeline::{Budget, QueuedHit, RecordBatch, Share};
use crate::record::{CapiFailure, Fields, MAX_RECORD_BYTES, RecordLine};

/// Room a line must leave below [`MAX_RECORD_BYTES`] for a failure's fields: a longer line's hit
/// is kept whole instead, so that its failure record is cut to fit as any over-long record is.
const FAILURE_ROOM: usize = 64 * 1024;

/// What a given-up event's failure record is made from.
#[derive(Debug)]
enum Record {
    /// The hit's record line, copied into the batch's lines.
    Line(Place),
    /// The hit itself, for a line too long to take a failure's fields.
    Hit(Arc<QueuedHit>),
}

/// The records of a batch's hits, for their failure records: each hit's record line copied
/// into blocks as the hit is batched (so the intake's buffer, shared with the sink, is let go at
/// once, and nothing is freed per hit), or, for a line near the record limit, the hit kept whole.
/// Its bytes are counted in the budget for as long as it lives (a delivery keeps it to its end,
/// beyond its requests).
#[derive(Debug)]
pub(super) struct Records {
    lines: Blocks,
    list: Vec<Record>,
    share: Share,
}

impl Records {
    pub(super) fn new(pool: &Arc<Pool>, budget: &Arc<Budget>) -> Records {
        Records { lines: Blocks::new(pool), list: Vec::new(), share: budget.take(0) }
    }

    /// Whether a line of `len` bytes is kept as a line, so that its hit can go (else the hit is
    /// kept, with its bytes).
    pub(super) fn keeps_line(len: usize) -> bool {
        len > 0 && len + FAILURE_ROOM <= MAX_RECORD_BYTES
    }

    /// Keeps the record of `hit`, whose line is `line`, and counts what that took (a kept hit
    /// counts its own); answers its index.
    fn push(&mut self, hit: Arc<QueuedHit>, line: &[u8]) -> u32 {
        let (record, taken) = match Records::keeps_line(line.len()) {
            true => {
                let (place, taken) = self.lines.append(&[line]);
                (Record::Line(place), taken)
            }
            false => (Record::Hit(hit), 0),
        };
        self.list.push(record);
        self.share.add(taken + std::mem::size_of::<Record>());
        (self.list.len() - 1) as u32
    }

    /// How many.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Adds the failure record of record `i` (the record, flagged `capi_failed`, with
    /// `failure`) to `out`.
    pub(super) fn write_failed(&self, i: u32, failure: &CapiFailure, out: &mut RecordBatch<'_>) {
        match &self.list[i as usize] {
            &Record::Line(place) => match RecordLine::parse(self.lines.get(place)) {
                Ok(read) => out.write(read.received_at(), |buf| read.write_failed(failure, buf)),
                Err(err) => tracing::error!(error = %err, reason = failure.reason, "a forwarded hit's record line could not be read: its failure record is not written"),
            },
            Record::Hit(hit) => {
                let record = hit.to_hit().capi_failed(failure.clone());
                out.write(record.received_at(), |buf| record.write_line(buf));
            }
        }
    }

    /// Adds the failure record of each of them to `out`.
    pub(super) fn write_all_failed(&self, failure: &CapiFailure, out: &mut RecordBatch<'_>) {
        for i in 0..self.list.len() {
            self.write_failed(i as u32, failure, out);
        }
    }

    /// The account of record `i`'s hit, if its pixel is registered.
    pub(super) fn account_id(&self, i: u32) -> Option<String> {
        match &self.list[i as usize] {
            &Record::Line(place) => RecordLine::parse(self.lines.get(place)).ok().and_then(|read| read.account_id().map(str::to_owned)),
            Record::Hit(hit) => hit.account_id().map(str::to_owned),
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
    /// An empty batch whose blocks come from `pool`.
    pub(super) fn new(budget: &Arc<Budget>, pool: &Arc<Pool>) -> Open {
        Open { body: Blocks::new(pool), events: Vec::new(), rejected: Vec::new(), records: Records::new(pool, budget), opened: None, made: Instant::now(), share: budget.take(0) }
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

    /// About how many bytes one more event, whose record line is `line` bytes long, would add
    /// to what it holds: the line, the event (as long as the ones before it), their places, and
    /// a block for either if the last one has no room left.
    pub(super) fn growth(&self, line: usize) -> usize {
        let event = if self.events.is_empty() { 1024 } else { self.body.len() / self.events.len() + 1 };
        let line_growth = if Records::keeps_line(line) { line + self.records.lines.growth(line) } else { 0 };
        event + self.body.growth(event) + line_growth + std::mem::size_of::<Event>() + std::mem::size_of::<Record>()
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
    /// keeping its record (`line`) for its failure.
    pub(super) fn push<D: Destination>(&mut self, destination: &D, hit: Arc<QueuedHit>, line: &[u8], now: SystemTime, scratch: &mut Vec<u8>) {
        self.begin();
        scratch.clear();
        let Labels { name, id } = destination.encode(&hit, now, scratch);
        let comma: &[u8] = if self.events.is_empty() { b"" } else { b"," };
        let (place, block) = self.body.append(&[comma, scratch]);
        let record = self.records.push(hit, line);
        let at = |(a, b): (usize, usize)| (a as u32, b as u32);
        let start = place.start + comma.len() as u32;
        self.events.push(Event { block: place.block, start, end: place.end, name: at(name), id: at(id), record });
        self.share.add(block + std::mem::size_of::<Event>());
    }

    /// Keeps a hit the platform would reject (its record, `line`), for its failure once the
    /// credentials are found.
    pub(super) fn reject<D: Destination>(&mut self, destination: &D, reject: Reject, hit: Arc<QueuedHit>, line: &[u8]) {
        let (name, id) = (destination.event_name(&hit).to_owned(), hit.event_id().to_owned());
        self.begin();
        let record = self.records.push(hit, line);
        self.share.add(name.len() + id.len() + std::mem::size_of::<Rejected>());
        self.rejected.push(Rejected { reject, name, id, record });
    }
}
