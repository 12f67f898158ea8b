//! The disk spool: where records wait while Firehose cannot take them, bounded, crash-safe, and
//! replayed oldest first.
//!
//! Layout under `<data-dir>/spool/`: append-only segment files `<id>.ndjson` holding the records
//! exactly as they are sent (one newline-terminated line each), a `cursor` file naming how far
//! into the oldest segment replay has been acknowledged, and a `.lock` that keeps a second
//! process out. A segment is deleted only once every record in it has been acknowledged. Each
//! append is one write followed by `fdatasync`; a write that fails is cut back, so a segment never
//! holds half a batch. After a crash, a torn last line is cut off (counted and logged) and replay
//! resumes at the cursor; a cursor lost in the crash means the records of one chunk at most are
//! sent again (at least once under faults).
//!
//! Appends always go to a segment this process opened; segments found at start-up are only read.
//! The total size of all segments stays within the configured bound.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::metrics as m;

/// A segment is closed for appends once it is this large.
const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".ndjson";
const CURSOR: &str = "cursor";

/// One segment file.
#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    /// Bytes of whole lines in the file.
    len: u64,
}

/// Records read for replay, to be [`Spool::ack`]ed once Firehose has them all.
#[derive(Debug)]
pub struct Chunk {
    /// Where the records were read, so the ack can move the cursor past them.
    segment: u64,
    start: u64,
    end: u64,
    /// The records, in spool order.
    pub records: Vec<Bytes>,
}

/// What an append did with the records it was given.
#[derive(Debug, PartialEq, Eq)]
pub struct Appended {
    /// Records now safely on disk.
    pub spooled: usize,
    /// Records that did not fit within the bound (the last ones of the batch).
    pub refused: usize,
}

/// The spool directory, owned by one process.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Oldest first; each holds records not yet acknowledged.
    segments: VecDeque<Segment>,
    /// Open for appends: the newest segment, when this process created it.
    writer: Option<File>,
    /// Acknowledged bytes at the start of the oldest segment.
    acked: u64,
    /// Id for the next segment this process creates.
    next_id: u64,
    /// Held while the spool is open: one process per directory.
    _lock: File,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, bounded by `max_bytes`, and recovers what an earlier
    /// run left: torn last lines are cut off, the replay cursor is read back.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let lock = File::create(dir.join(".lock"))?;
        lock.try_lock().map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, format!("another pixelgate process is using the spool in {}", dir.display())))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let id = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)).and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                let len = recover_segment(&path)?;
                if len == 0 {
                    fs::remove_file(&path)?;
                } else {
                    segments.push(Segment { id, path, len });
                }
            }
        }
        segments.sort_by_key(|s| s.id);
        let next_id = segments.last().map_or(1, |s| s.id + 1);
        let mut spool = Spool { dir: dir.to_path_buf(), max_bytes, segments: segments.into(), writer: None, acked: 0, next_id, _lock: lock };
        spool.acked = spool.read_cursor();
        if !spool.is_empty() {
            tracing::info!(dir = %dir.display(), bytes = spool.bytes(), segments = spool.segments.len(), "found spooled records; they are replayed first");
        }
        spool.report();
        Ok(spool)
    }

    /// Whether every spooled record has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes on disk, acknowledged prefix included (it is freed with its segment).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `records` in order, as many as fit within the bound.
    pub fn append(&mut self, records: &[Bytes]) -> io::Result<Appended> {
        let room = self.max_bytes.saturating_sub(self.bytes());
        let (mut spooled, mut size) = (0, 0u64);
        for r in records {
            if size + r.len() as u64 > room {
                break;
            }
            size += r.len() as u64;
            spooled += 1;
        }
        if spooled > 0 {
            let mut buf = Vec::with_capacity(size as usize);
            records[..spooled].iter().for_each(|r| buf.extend_from_slice(r));
            self.write(&buf)?;
        }
        self.report();
        Ok(Appended { spooled, refused: records.len() - spooled })
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        let full = self.segments.back().is_some_and(|s| s.len >= SEGMENT_BYTES);
        if self.writer.is_none() || full {
            let id = self.next_id;
            let path = self.dir.join(format!("{id:020}{SEGMENT_SUFFIX}"));
            let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
            self.next_id += 1;
            self.writer = Some(file);
            self.segments.push_back(Segment { id, path, len: 0 });
        }
        let (file, seg) = (self.writer.as_mut().expect("opened above"), self.segments.back_mut().expect("pushed with the writer"));
        let written = file.write_all(buf).and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                seg.len += buf.len() as u64;
                Ok(())
            }
            Err(err) => {
                if file.set_len(seg.len).is_err() {
                    // Cannot cut the torn write back: stop appending to this segment; start-up
                    // recovery cuts the torn line.
                    self.writer = None;
                }
                Err(err)
            }
        }
    }

    /// The oldest records not yet acknowledged: at most `max_records`, and at most `max_bytes`
    /// as counted by `size` (which is at least the record's length). `None` when the spool is
    /// empty.
    pub fn next_chunk(&mut self, max_records: usize, max_bytes: usize, size: impl Fn(usize) -> usize) -> io::Result<Option<Chunk>> {
        let Some(seg) = self.segments.front() else {
            return Ok(None);
        };
        let mut file = File::open(&seg.path)?;
        file.seek(SeekFrom::Start(self.acked))?;
        let want = (seg.len - self.acked).min(max_bytes as u64);
        let mut buf = Vec::with_capacity(want as usize);
        file.take(want).read_to_end(&mut buf)?;
        let buf = Bytes::from(buf);
        let (mut records, mut pos, mut total) = (Vec::new(), 0, 0);
        while records.len() < max_records {
            let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = buf.slice(pos..pos + nl + 1);
            if !records.is_empty() && total + size(line.len()) > max_bytes {
                break;
            }
            total += size(line.len());
            pos += line.len();
            records.push(line);
        }
        if records.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: no complete record at byte {}", seg.path.display(), self.acked)));
        }
        Ok(Some(Chunk { segment: seg.id, start: self.acked, end: self.acked + pos as u64, records }))
    }

    /// Marks `chunk` acknowledged: moves the cursor past it and deletes its segment once every
    /// record in it is acknowledged.
    pub fn ack(&mut self, chunk: &Chunk) -> io::Result<()> {
        let Some(seg) = self.segments.front() else {
            return Ok(());
        };
        if seg.id != chunk.segment || self.acked != chunk.start {
            return Err(io::Error::other(format!("acknowledgement out of order (segment {}, byte {})", chunk.segment, chunk.start)));
        }
        self.acked = chunk.end;
        if self.acked >= seg.len {
            let seg = self.segments.pop_front().expect("front exists");
            if self.segments.is_empty() {
                self.writer = None;
            }
            self.acked = 0;
            fs::remove_file(&seg.path)?;
        } else {
            self.write_cursor(seg.id)?;
        }
        self.report();
        Ok(())
    }

    fn read_cursor(&self) -> u64 {
        let Some(front) = self.segments.front() else {
            return 0;
        };
        let text = fs::read_to_string(self.dir.join(CURSOR)).unwrap_or_default();
        match text.split_whitespace().map(str::parse::<u64>).collect::<Result<Vec<_>, _>>().as_deref() {
            Ok([id, offset]) if *id == front.id && *offset < front.len => *offset,
            _ => 0,
        }
    }

    fn write_cursor(&self, id: u64) -> io::Result<()> {
        let tmp = self.dir.join(format!("{CURSOR}.tmp"));
        fs::write(&tmp, format!("{id} {}\n", self.acked))?;
        fs::rename(tmp, self.dir.join(CURSOR))
    }

    fn report(&self) {
        metrics::gauge!(m::SPOOL_BYTES).set(self.bytes() as f64);
    }
}

/// Cuts a torn last line off a segment (counted and logged); returns the length kept.
fn recover_segment(path: &Path) -> io::Result<u64> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Records are at most ~1 MB: the last newline is within the last few MB, but read backwards
    // in blocks rather than assume it.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    let keep = loop {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
        metrics::counter!(m::RECORDS_DROPPED, "outlet" => "firehose", "reason" => "torn_line").increment(1);
        tracing::warn!(path = %path.display(), bytes = len - keep, "a spooled record torn by a crash was cut off");
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(range: std::ops::Range<usize>) -> Vec<Bytes> {
        range.map(|i| Bytes::from(format!("{{\"n\":{i}}}\n"))).collect()
    }

    fn drain(spool: &mut Spool, max_records: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(chunk) = spool.next_chunk(max_records, 1 << 20, |n| n).unwrap() {
            out.extend(chunk.records.iter().cloned());
            spool.ack(&chunk).unwrap();
        }
        out
    }

    #[test]
    fn replays_oldest_first_and_deletes_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.is_empty());
        spool.append(&recs(0..5)).unwrap();
        spool.append(&recs(5..8)).unwrap();
        assert!(!spool.is_empty());
        let chunk = spool.next_chunk(3, 1 << 20, |n| n).unwrap().unwrap();
        assert_eq!(chunk.records, recs(0..3));
        assert_eq!(spool.next_chunk(3, 1 << 20, |n| n).unwrap().unwrap().records, recs(0..3), "unacknowledged records come again");
        spool.ack(&chunk).unwrap();
        spool.append(&recs(8..10)).unwrap();
        assert_eq!(drain(&mut spool, 3), recs(3..10));
        assert!(spool.is_empty());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.ends_with(SEGMENT_SUFFIX)).collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_chunk_respects_the_byte_limit_as_counted_by_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&recs(0..10)).unwrap();
        let each = recs(0..1)[0].len();
        let chunk = spool.next_chunk(100, 3 * (2 * each), |n| 2 * n).unwrap().unwrap();
        assert_eq!(chunk.records, recs(0..3));
    }

    #[test]
    fn the_bound_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let each = recs(0..1)[0].len() as u64;
        let mut spool = Spool::open(dir.path(), 4 * each + 1).unwrap();
        assert_eq!(spool.append(&recs(0..3)).unwrap(), Appended { spooled: 3, refused: 0 });
        assert_eq!(spool.append(&recs(3..6)).unwrap(), Appended { spooled: 1, refused: 2 });
        assert!(spool.bytes() <= 4 * each + 1);
        assert_eq!(drain(&mut spool, 2), recs(0..4));
        assert_eq!(spool.append(&recs(6..8)).unwrap().spooled, 2, "room comes back once acknowledged");
    }

    #[test]
    fn survives_a_restart_and_resumes_at_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&recs(0..6)).unwrap();
            let chunk = spool.next_chunk(2, 1 << 20, |n| n).unwrap().unwrap();
            spool.ack(&chunk).unwrap();
            assert!(Spool::open(dir.path(), 1 << 20).is_err(), "a second process is kept out");
        }
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&recs(6..8)).unwrap();
        assert_eq!(drain(&mut spool, 4), recs(2..8));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&recs(0..3)).unwrap();
        }
        let seg = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 1));
        OpenOptions::new().append(true).open(&seg).unwrap().write_all(b"{\"n\":3").unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(drain(&mut spool, 10), recs(0..3));
    }
}
