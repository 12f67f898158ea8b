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
/// shares the CPU with the answers ([`crate::pace`]).
const WRITE_SLICE: usize = 64 * 1024;

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
        let writer = Writer { config, health, closing, gave_up: false, file: None, buf: Vec::with_capacity(256 * 1024), buf_time: None, buffered: 0, _lock: lock };
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
    /// Encoded lines not yet written; all of the same partition hour, `buf_time`'s.
    buf: Vec<u8>,
    /// Receipt time of a record in `buf`, naming its partition.
    buf_time: Option<Timestamp>,
    /// Records in `buf`.
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
            let waiting = Instant::now();
            let Some(first) = rx.blocking_recv() else { break };
            // Only a wait that took the thread off the CPU starts its next run afresh.
            pace::waited(waiting);
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
                        self.write_out(closing);
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
            self.write_out(closing);
            self.rotate_if_due();
            metrics::gauge!(m::QUEUE_DEPTH, "outlet" => "file").set(rx.len() as f64);
            if !closing && hits > 0 && hits < MAX_BATCH as u64 {
                pace::rest();
                std::thread::sleep(COALESCE_WINDOW);
            }
        }
        self.write_out(true);
        self.close_file();
        for ack in shutdown_acks {
            let _ = ack.send(());
        }
    }

    /// Makes room in `buf` for lines received at `t`: writes out what it holds first if that is
    /// from another hour, or if it is full.
    fn start_line(&mut self, t: Timestamp, closing: bool) {
        if self.buf_time.is_some_and(|b| b.unix_hour() != t.unix_hour()) || self.buf.len() >= MAX_BUFFER_BYTES {
            self.write_out(closing);
        }
        self.buf_time = Some(t);
    }

    /// Appends `buf` to the file of its partition, retrying once a second while the disk fails.
    /// While closing, a batch that still fails after [`SHUTDOWN_WRITE_ATTEMPTS`] is given up and
    /// counted.
    fn write_out(&mut self, closing: bool) {
        let Some(time) = self.buf_time else { return };
        if self.buf.is_empty() {
            return;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let closing = closing || self.closing.load(Ordering::Relaxed);
            match self.append(time) {
                Ok(()) => {
                    metrics::counter!(m::RECORDS_WRITTEN, "sink" => "file").increment(self.buffered);
                    self.health.ok();
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

    /// One attempt. A failed write is cut back to the file's previous length, so a retry never
    /// leaves a torn or doubled line. If even the cut fails, the file is left `.open` for start-up
    /// recovery (which sets its torn tail aside), the whole lines it got are counted as written,
    /// and only the rest is retried, in a new file.
    fn append(&mut self, time: Timestamp) -> io::Result<()> {
        if self.file.as_ref().is_some_and(|f| f.hour != time.unix_hour()) {
            self.close_file();
        }
        if self.file.is_none() {
            self.file = Some(self.open(time)?);
        }
        let f = self.file.as_mut().expect("opened above");
        let mut written = 0;
        let err = loop {
            if written == self.buf.len() {
                f.len += written as u64;
                return Ok(());
            }
            let slice = &self.buf[written..self.buf.len().min(written + WRITE_SLICE)];
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

    fn rotate_if_due(&mut self) {
        if self.file.as_ref().is_some_and(|f| f.len >= self.config.max_file_bytes || f.opened.elapsed() >= self.config.rotate_after) {
            self.close_file();
        }
    }

    /// Renames the open file to its final `*.ndjson` name. No fsync: the data is in the page cache
    /// either way, and a multi-megabyte sync here would stall the queue for tens of milliseconds.
    fn close_file(&mut self) {
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
