//! The embedded default sink: NDJSON files under `<data-dir>/raw/YYYY/MM/DD/HH/`, the prefix layout
//! Firehose gives S3, partitioned by the UTC hour in which each hit was received.
//!
//! A dedicated thread drains the outlet queue in batches and appends them with one `write` each,
//! so a slow disk stalls this thread, never the pixel answer. A file is written as
//! `<name>.ndjson.open` and renamed to `<name>.ndjson` when it is rotated (hour change, size, age)
//! or at shutdown: every `*.ndjson` file is complete. After a crash, start-up renames what a
//! previous run left open, setting aside a torn last line (counted and logged).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Health;
use crate::metrics as m;
use crate::pace;
use crate::pipeline::{Job, RecordJobs};
use crate::record::Timestamp;

/// Suffix of a file still being written.
const OPEN_SUFFIX: &str = ".ndjson.open";
/// Most jobs taken from the queue per write.
const MAX_BATCH: usize = 4096;
/// Encoded bytes that trigger a write before the batch is done, bounding the buffer.
const MAX_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Write attempts for one batch while shutting down, one second apart, before it is given up.
const SHUTDOWN_WRITE_ATTEMPTS: u32 = 5;
/// After a partial batch the writer rests this long before draining again. While it rests it is
/// not parked on the queue, so submitting a hit costs no wake-up (a futex call and a context
/// switch, several microseconds on the request path); records reach the file this much later.
const COALESCE_WINDOW: Duration = Duration::from_millis(2);
/// Most bytes handed to one `write`: the kernel copies them without a break, and this thread
/// shares the CPU with the answers ([`crate::pace`]). Writes also end at multiples of it in the
/// file, so that the page cache takes each slice as one 64 KiB folio rather than several small
/// ones (a write that starts mid-folio cost the kernel about half as much again per byte).
const WRITE_SLICE: usize = 64 * 1024;

/// How much of the buffer [`Writer::write_out`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// All of it.
    All,
    /// Up to the last [`WRITE_SLICE`] boundary of the file; the rest (less than a slice) waits
    /// for the next batch, which comes within a [`COALESCE_WINDOW`] or so while hits stream in:
    /// [`Writer::run`] writes it all once the queue is found empty.
    Slices,
}

/// Settings of the file sink.
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// `<data-dir>/raw`.
    pub dir: PathBuf,
    /// A file is closed after this long, so downstream readers see data without waiting an hour.
    pub rotate_after: Duration,
    /// A file is closed once it is this large.
    pub max_file_bytes: u64,
}

/// The running sink thread.
pub struct FileSink {
    thread: JoinHandle<()>,
}

impl FileSink {
    /// Takes the directory lock, recovers files a previous run left open, and starts the writer
    /// thread on `rx`. `closing` is the queue's shutdown flag ([`crate::pipeline::RecordOutlet::closing`]):
    /// once it is up, a failing disk is retried a bounded number of times, then given up and counted.
    pub fn start(config: FileSinkConfig, rx: RecordJobs, health: Arc<Health>, closing: Arc<AtomicBool>) -> io::Result<FileSink> {
        fs::create_dir_all(&config.dir)?;
        let lock = take_lock(&config.dir)?;
        recover(&config.dir)?;
        let writer =
            Writer { config, health, closing, gave_up: false, file: None, buf: Vec::with_capacity(256 * 1024), head: Vec::new(), buf_time: None, buffered: 0, _lock: lock };
        let thread = std::thread::Builder::new().name("pixelgate-file-sink".into()).spawn(move || writer.run(rx))?;
        Ok(FileSink { thread })
    }

    /// Waits for the thread to end (after a [`Job::Shutdown`]).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// The file currently being appended to.
struct OpenFile {
    file: File,
    /// Path while open (`….ndjson.open`).
    path: PathBuf,
    /// Partition hour (hours since the epoch) of the records inside.
    hour: u64,
    opened: Instant,
    len: u64,
}

struct Writer {
    config: FileSinkConfig,
    health: Arc<Health>,
    /// The queue's shutdown flag.
    closing: Arc<AtomicBool>,
    /// A batch was already given up during shutdown: the disk is known bad, so later batches get
    /// one attempt each rather than the full shutdown budget.
    gave_up: bool,
    file: Option<OpenFile>,
    /// Encoded lines not yet written; all of the same partition hour, `buf_time`'s. After a
    /// [`Flush::Slices`] write it may start in the middle of a line: `head` is that line's start.
    buf: Vec<u8>,
    /// The start of the line `buf` begins inside of, already at the end of the open file (empty
    /// when `buf` starts with a whole line).
    head: Vec<u8>,
    /// Receipt time of a record in `buf`, naming its partition.
    buf_time: Option<Timestamp>,
    /// Records that end in `buf` (its newlines).
    buffered: u64,
    /// Held for the life of the thread: one writer per directory.
    _lock: File,
}

impl Writer {
    fn run(mut self, mut rx: RecordJobs) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        let mut closing = false;
        let mut shutdown_acks = Vec::new();
        // After a Shutdown job the queue is closed, so this loop ends once it is empty.
        loop {
            // A held tail is written before the thread waits: records never wait on traffic.
            let first = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    self.write_out(closing, Flush::All);
                    let waiting = Instant::now();
                    let Some(job) = rx.blocking_recv() else { break };
                    // Only a wait that took the thread off the CPU starts its next run afresh.
                    pace::waited(waiting);
                    job
                }
            };
            jobs.push(first);
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let mut hits = 0u64;
            for job in jobs.drain(..) {
                match job {
                    Job::Deliver(records) => {
                        pace::work(1);
                        self.start_line(records.received_at(), closing);
                        self.buf.extend_from_slice(records.lines());
                        self.buffered += records.count() as u64;
                        hits += records.count() as u64;
                    }
                    Job::Barrier(ack) => {
                        self.write_out(closing, Flush::All);
                        let _ = ack.send(());
                    }
                    Job::Tick => {}
                    Job::Shutdown(ack) => {
                        closing = true;
                        rx.close();
                        shutdown_acks.push(ack);
                    }
                }
            }
            if hits > 0 {
                metrics::histogram!(m::SINK_BATCH_RECORDS, "outlet" => "file").record(hits as f64);
            }
            // A busy stream's batches are written in whole slices; a smaller batch (a quiet
            // stream) at once.
            self.write_out(closing, if closing || self.buf.len() < WRITE_SLICE { Flush::All } else { Flush::Slices });
            self.rotate_if_due(closing);
            metrics::gauge!(m::QUEUE_DEPTH, "outlet" => "file").set(rx.len() as f64);
            if !closing && hits > 0 && hits < MAX_BATCH as u64 {
                pace::rest();
                std::thread::sleep(COALESCE_WINDOW);
            }
        }
        self.write_out(true, Flush::All);
        self.close_file();
        for ack in shutdown_acks {
            let _ = ack.send(());
        }
    }

    /// Makes room in `buf` for lines received at `t`: writes out what it holds first if that is
    /// from another hour, or if it is full.
    fn start_line(&mut self, t: Timestamp, closing: bool) {
        if self.buf_time.is_some_and(|b| b.unix_hour() != t.unix_hour()) {
            self.write_out(closing, Flush::All);
        } else if self.buf.len() >= MAX_BUFFER_BYTES {
            self.write_out(closing, Flush::Slices);
        }
        self.buf_time = Some(t);
    }

    /// Appends `buf` to the file of its partition, retrying once a second while the disk fails.
    /// While closing, a batch that still fails after [`SHUTDOWN_WRITE_ATTEMPTS`] is given up and
    /// counted.
    fn write_out(&mut self, closing: bool, flush: Flush) {
        let Some(time) = self.buf_time else { return };
        if self.buf.is_empty() {
            return;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let closing = closing || self.closing.load(Ordering::Relaxed);
            match self.append(time, flush) {
                Ok(written) => {
                    self.health.ok();
                    if written < self.buf.len() {
                        self.hold_tail(written);
                        return;
                    }
                    metrics::counter!(m::RECORDS_WRITTEN, "sink" => "file").increment(self.buffered);
                    self.head.clear();
                    break;
                }
                Err(err) => {
                    let reason = format!("cannot write under {}: {err}", self.config.dir.display());
                    if attempts == 1 {
                        tracing::error!(records = self.buffered, error = %err, dir = %self.config.dir.display(), "file sink write failed; retrying every second");
                    }
                    self.health.fail(reason);
                    metrics::counter!(m::SINK_WRITE_ERRORS, "sink" => "file").increment(1);
                    if closing && (self.gave_up || attempts >= SHUTDOWN_WRITE_ATTEMPTS) {
                        self.gave_up = true;
                        tracing::error!(records = self.buffered, error = %err, "file sink gave up records at shutdown");
                        metrics::counter!(m::RECORDS_DROPPED, "outlet" => "file", "reason" => "write_failed").increment(self.buffered);
                        self.cut_head();
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.buf.clear();
        self.buffered = 0;
        self.buf_time = None;
    }

    /// After `written` bytes of `buf` went to the file, keeps the rest for the next write: the
    /// records that ended in what was written are counted, and the start of the line the rest
    /// begins inside of is kept in `head`.
    fn hold_tail(&mut self, written: usize) {
        let (done, tail) = self.buf.split_at(written);
        let held = memchr::memchr_iter(b'\n', tail).count() as u64;
        metrics::counter!(m::RECORDS_WRITTEN, "sink" => "file").increment(self.buffered - held);
        self.buffered = held;
        match memchr::memrchr(b'\n', done) {
            Some(end) => {
                self.head.clear();
                self.head.extend_from_slice(&done[end + 1..]);
            }
            None => self.head.extend_from_slice(done),
        }
        self.buf.drain(..written);
    }

    /// Takes the start of a line that will not be finished (its record given up) off the end of
    /// the open file, so that the file ends with a whole line; if that fails, the file is left
    /// `.open` for start-up recovery, which sets the torn line aside.
    fn cut_head(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let head = std::mem::take(&mut self.head).len() as u64;
        let Some(f) = self.file.as_mut() else { return };
        f.len -= head;
        if f.file.set_len(f.len).is_err() {
            let abandoned = self.file.take().expect("open");
            tracing::error!(path = %abandoned.path.display(), "a record file could not be cut back to its last whole line; left for start-up recovery");
        }
    }

    /// One attempt; how many bytes of `buf` it wrote (all of them, or with [`Flush::Slices`] up
    /// to the file's last slice boundary). A failed write is cut back to the file's previous
    /// length, so a retry never leaves a torn or doubled line. If even the cut fails, the file is
    /// left `.open` for start-up recovery (which sets its torn tail aside), the whole lines it got
    /// are counted as written, and only the rest is retried, from the start of its first line, in
    /// a new file.
    fn append(&mut self, time: Timestamp, flush: Flush) -> io::Result<usize> {
        if self.file.as_ref().is_some_and(|f| f.hour != time.unix_hour()) {
            self.close_file();
        }
        if self.file.is_none() {
            self.file = Some(self.open(time)?);
        }
        let f = self.file.as_mut().expect("opened above");
        // Bytes from file offset `at` to the next slice boundary.
        let to_boundary = |at: u64| WRITE_SLICE - (at % WRITE_SLICE as u64) as usize;
        let end = match flush {
            Flush::All => self.buf.len(),
            Flush::Slices => {
                let room = to_boundary(f.len);
                if self.buf.len() < room { 0 } else { room + (self.buf.len() - room) / WRITE_SLICE * WRITE_SLICE }
            }
        };
        let mut written = 0;
        let err = loop {
            if written == end {
                f.len += written as u64;
                return Ok(written);
            }
            let slice = &self.buf[written..end.min(written + to_boundary(f.len + written as u64))];
            match f.file.write(slice) {
                Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
                Ok(n) => {
                    written += n;
                    pace::work(pace::CHECK_EVERY);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break e,
            }
        };
        if written > 0 && f.file.set_len(f.len).is_err() {
            let whole = self.buf[..written].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let lines = self.buf[..whole].iter().filter(|&&b| b == b'\n').count() as u64;
            metrics::counter!(m::RECORDS_WRITTEN, "sink" => "file").increment(lines);
            self.buf.drain(..whole);
            self.buffered -= lines;
            // The new file gets the whole of the line `buf` now starts inside of, if it does.
            let head = std::mem::take(&mut self.head);
            if whole == 0 {
                self.buf.splice(..0, head);
            }
            let abandoned = self.file.take().expect("open");
            tracing::error!(path = %abandoned.path.display(), "a record file could not be cut back after a failed write; left for start-up recovery");
        }
        Err(err)
    }

    fn open(&self, time: Timestamp) -> io::Result<OpenFile> {
        let dir = self.config.dir.join(time.hour_prefix());
        fs::create_dir_all(&dir)?;
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace([':', 'T'], "-");
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let path = dir.join(format!("pixelgate-{}-{tag}{OPEN_SUFFIX}", now.trim_end_matches('Z')));
        let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        Ok(OpenFile { file, path, hour: time.unix_hour(), opened: Instant::now(), len: 0 })
    }

    fn rotate_if_due(&mut self, closing: bool) {
        if self.file.as_ref().is_some_and(|f| f.len >= self.config.max_file_bytes || f.opened.elapsed() >= self.config.rotate_after) {
            self.write_out(closing, Flush::All);
            self.close_file();
        }
    }

    /// Renames the open file to its final `*.ndjson` name. No fsync: the data is in the page cache
    /// either way, and a multi-megabyte sync here would stall the queue for tens of milliseconds.
    fn close_file(&mut self) {
        debug_assert!(self.head.is_empty(), "a file is closed after its last line is whole");
        let Some(f) = self.file.take() else { return };
        drop(f.file);
        if f.len == 0 {
            let _ = fs::remove_file(&f.path);
            return;
        }
        if let Err(err) = fs::rename(&f.path, final_name(&f.path)) {
            tracing::error!(error = %err, path = %f.path.display(), "cannot rename a finished record file; it keeps its .open suffix");
        }
    }
}

/// `x.ndjson.open` → `x.ndjson`.
/// One writer per directory: the lock file beside it (`raw.lock` next to `raw/`), so that nothing
/// but records is under `raw/` (an `aws s3 sync` of it uploads records only). A lock left inside
/// by an earlier version is taken too, then removed, so a server of that version still running on
/// the same directory is refused rather than interleaved with.
fn take_lock(dir: &Path) -> io::Result<File> {
    let busy = || io::Error::new(io::ErrorKind::WouldBlock, format!("another pixelgate process is writing to {}", dir.display()));
    let lock = File::create(dir.with_extension("lock"))?;
    lock.try_lock().map_err(|_| busy())?;
    let old = dir.join(".lock");
    if old.exists() {
        File::options().write(true).open(&old)?.try_lock().map_err(|_| busy())?;
        fs::remove_file(&old)?;
    }
    Ok(lock)
}

fn final_name(open: &Path) -> PathBuf {
    let s = open.to_string_lossy();
    PathBuf::from(s.strip_suffix(".open").unwrap_or(&s).to_owned())
}

/// Finishes files a previous run left open: keeps every complete line, moves a torn last line to
/// `<name>.torn` (counted and logged), renames the rest to `*.ndjson`.
fn recover(dir: &Path) -> io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(OPEN_SUFFIX) {
                recover_file(&path)?;
            }
        }
    }
    Ok(())
}

fn recover_file(path: &Path) -> io::Result<()> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if keep < data.len() {
        let torn = final_name(path).with_extension("torn");
        fs::write(&torn, &data[keep..])?;
        OpenOptions::new().write(true).open(path)?.set_len(keep as u64)?;
        metrics::counter!(m::RECORDS_DROPPED, "outlet" => "file", "reason" => "torn_line").increment(1);
        tracing::warn!(path = %torn.display(), "a record torn by a crash was set aside");
    }
    if keep == 0 {
        fs::remove_file(path)?;
    } else {
        fs::rename(path, final_name(path))?;
        tracing::info!(path = %final_name(path).display(), "recovered a record file left open by a previous run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_keeps_whole_lines_and_sets_the_torn_one_aside() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("2026/11/22/20");
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join("a.ndjson.open"), b"{\"n\":1}\n{\"n\":2}\n{\"n\"").unwrap();
        fs::write(sub.join("b.ndjson.open"), b"{\"n\"").unwrap();
        recover(dir.path()).unwrap();
        assert_eq!(fs::read(sub.join("a.ndjson")).unwrap(), b"{\"n\":1}\n{\"n\":2}\n");
        assert_eq!(fs::read(sub.join("a.torn")).unwrap(), b"{\"n\"");
        assert!(!sub.join("b.ndjson").exists() && !sub.join("b.ndjson.open").exists());
        assert_eq!(fs::read(sub.join("b.torn")).unwrap(), b"{\"n\"");
    }

    /// A writer on a fresh directory, and the lines of `n` records of about 700 bytes each.
    fn writer(dir: &Path) -> (Writer, Vec<u8>) {
        let config = FileSinkConfig { dir: dir.join("raw"), rotate_after: Duration::from_secs(3600), max_file_bytes: u64::MAX };
        fs::create_dir_all(&config.dir).unwrap();
        let lock = take_lock(&config.dir).unwrap();
        let w = Writer {
            config,
            health: Arc::default(),
            closing: Arc::default(),
            gave_up: false,
            file: None,
            buf: Vec::new(),
            head: Vec::new(),
            buf_time: None,
            buffered: 0,
            _lock: lock,
        };
        let lines = (0..200).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(680))).collect::<String>().into_bytes();
        (w, lines)
    }

    fn add(w: &mut Writer, lines: &[u8]) {
        w.buf_time = Some(Timestamp::now());
        w.buf.extend_from_slice(lines);
        w.buffered += memchr::memchr_iter(b'\n', lines).count() as u64;
    }

    fn file_bytes(w: &Writer) -> Vec<u8> {
        fs::read(&w.file.as_ref().expect("a file is open").path).unwrap()
    }

    #[test]
    fn a_busy_stream_is_written_in_whole_slices_and_its_tail_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, lines) = writer(dir.path());
        let (first, second) = lines.split_at(100_000);
        add(&mut w, first);
        w.write_out(false, Flush::Slices);
        assert_eq!(file_bytes(&w).len(), WRITE_SLICE, "up to the file's first slice boundary");
        assert_eq!([&w.head[..], &w.buf[..]].concat(), &first[first[..WRITE_SLICE].iter().rposition(|&b| b == b'\n').unwrap() + 1..]);
        assert_eq!(w.buffered as usize, memchr::memchr_iter(b'\n', &first[WRITE_SLICE..]).count());
        add(&mut w, second);
        w.write_out(false, Flush::Slices);
        assert_eq!(file_bytes(&w).len(), lines.len() / WRITE_SLICE * WRITE_SLICE);
        w.write_out(false, Flush::All);
        assert_eq!(file_bytes(&w), lines, "every byte once, in order");
        assert!(w.head.is_empty() && w.buf.is_empty() && w.buffered == 0);
        w.close_file();
    }

    #[test]
    fn a_tail_given_up_leaves_the_file_ending_with_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, lines) = writer(dir.path());
        add(&mut w, &lines);
        w.write_out(false, Flush::Slices);
        let written = file_bytes(&w).len();
        assert!(!w.head.is_empty(), "the last slice ends inside a line");
        w.cut_head();
        let kept = file_bytes(&w);
        assert_eq!(kept.len(), written - (written - lines[..written].iter().rposition(|&b| b == b'\n').unwrap() - 1));
        assert_eq!(kept, lines[..kept.len()], "whole lines only");
        assert_eq!(w.file.as_ref().unwrap().len, kept.len() as u64);
        w.buf.clear();
        w.close_file();
    }

    /// The whole lines of every record file under `dir`, open or closed (an open file may end in
    /// part of a line while it grows; a closed one may not).
    fn lines_below(dir: &Path) -> Vec<serde_json::Value> {
        let mut files = vec![];
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.to_string_lossy().contains(".ndjson") {
                    let text = fs::read_to_string(&path).unwrap();
                    let whole = text.rfind('\n').map_or(0, |i| i + 1);
                    assert!(whole == text.len() || path.to_string_lossy().ends_with(".open"), "{} ends in part of a line", path.display());
                    files.push(text[..whole].to_owned());
                }
            }
        }
        files.concat().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: a torn line {l:?}"))).collect()
    }

    #[tokio::test]
    async fn a_busy_stream_reaches_the_file_whole_when_the_queue_empties_before_a_barrier_and_at_shutdown() {
        use crate::params::{HitBuilder, ParseSettings, RequestMeta};
        use crate::pipeline::{Dispatcher, RecordOutlet};

        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig { dir: dir.path().join("raw"), rotate_after: Duration::from_secs(3600), max_file_bytes: u64::MAX };
        let (outlet, rx) = RecordOutlet::new("file", 100_000);
        let sink = FileSink::start(config, rx, Arc::default(), outlet.closing()).unwrap();
        let dispatcher = Dispatcher::new(vec![outlet], vec![]);
        let settings = ParseSettings::default();
        // Records of about 700 bytes: 300 of them are three 64 KiB slices and a tail.
        let submit = |ids: std::ops::Range<usize>| {
            for i in ids {
                let mut b = HitBuilder::new(&settings, Timestamp::now());
                b.add_encoded(&format!("pixel_id=1&event=E&event_id=e{i}&pad={}", "x".repeat(600)));
                dispatcher.submit_record(&b.finish(RequestMeta::default()));
            }
        };
        let raw = dir.path().join("raw");
        submit(0..300);
        // No barrier: what a busy batch held back is written once the queue is found empty.
        let started = Instant::now();
        while lines_below(&raw).len() < 300 {
            assert!(started.elapsed() < Duration::from_secs(5), "{} of 300 records written", lines_below(&raw).len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        submit(300..450);
        dispatcher.flush().await;
        assert_eq!(lines_below(&raw).len(), 450, "every record is in the file when a barrier is answered");
        submit(450..600);
        dispatcher.shutdown().await;
        tokio::task::spawn_blocking(move || sink.join()).await.unwrap();
        let ids: Vec<String> = lines_below(&raw).iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, (0..600).map(|i| format!("e{i}")).collect::<Vec<_>>(), "each once, in order");
    }

    #[test]
    fn the_lock_is_beside_the_records_and_an_old_one_inside_is_taken_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        fs::create_dir_all(&raw).unwrap();
        fs::write(raw.join(".lock"), b"").unwrap();
        let lock = take_lock(&raw).unwrap();
        assert!(dir.path().join("raw.lock").exists());
        assert!(!raw.join(".lock").exists(), "nothing but records under raw/");
        assert!(take_lock(&raw).is_err(), "one writer per directory");
        drop(lock);
        let old = File::create(raw.join(".lock")).unwrap();
        old.try_lock().unwrap();
        assert!(take_lock(&raw).is_err(), "an older server still writing is refused");
    }
}
