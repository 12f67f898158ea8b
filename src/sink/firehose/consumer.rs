//! The Firehose outlet's consumer: drains the outlet queue into batches, keeps a bounded number
//! of deliveries in flight, hands what cannot be delivered to the spool, and replays the spool
//! when Firehose answers again.
//!
//! Two modes, decided under the spool's lock so that no record overtakes an older one on disk:
//! while the spool is empty, batches go straight to Firehose; while it holds records, new
//! batches are appended behind them and a single replay task sends them oldest first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::client::PutRecords;
use super::deliver::{Undelivered, deliver};
use super::spool::{Appended, Spool};
use super::{FirehoseConfig, Status};
use crate::batch::{Batch, Batcher};
use crate::metrics as m;
use crate::pipeline::{Job, RecordJobs};
use crate::sink::Health;

/// The spool, shared by the consumer (appends) and the replay task (reads, acks). Every call
/// does its disk work on the blocking pool, never on a runtime worker, and whether the spool is
/// empty is mirrored in an atomic so that asking never waits for the lock.
#[derive(Debug, Clone)]
struct SharedSpool {
    spool: Arc<Mutex<Spool>>,
    /// `spool.is_empty()` as of the last call: decides between Firehose and the spool.
    empty: Arc<AtomicBool>,
}

impl SharedSpool {
    fn new(spool: Spool) -> Self {
        let empty = Arc::new(AtomicBool::new(spool.is_empty()));
        SharedSpool { spool: Arc::new(Mutex::new(spool)), empty }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Spool) -> T + Send + 'static) -> T {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut spool = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
            let out = f(&mut spool);
            shared.empty.store(spool.is_empty(), Ordering::Release);
            out
        })
        .await
        .expect("spool work does not panic")
    }

    fn is_empty(&self) -> bool {
        self.empty.load(Ordering::Acquire)
    }
}

/// The consumer task's state.
pub(super) struct Consumer<C> {
    /// Shared with every delivery task and the replay.
    client: Arc<C>,
    /// Shared with the replay: batch limits double as replay chunk limits.
    config: Arc<FirehoseConfig>,
    /// What `/readyz` says about the sink.
    status: Arc<Status>,
    /// The open batch of encoded records.
    batcher: Batcher<Bytes>,
    /// Deliveries under way, at most `config.max_in_flight`; each yields what it could not send.
    in_flight: JoinSet<Result<(), Undelivered>>,
    /// Records and start time per delivery task: a task that dies is still accounted for, and
    /// all slots held for longer than an attempt may take mean Firehose is failing, not busy.
    in_flight_records: HashMap<tokio::task::Id, (usize, Instant)>,
    /// Where records wait while Firehose does not take them.
    spool: SharedSpool,
    /// The replay task while it runs.
    replay: Option<JoinHandle<()>>,
    /// Turned true once shutdown has waited long enough: deliveries stop retrying and hand back
    /// what is left.
    stop_deliveries: Arc<watch::Sender<bool>>,
    /// Turns `stop_deliveries` at the shutdown timeout.
    shutdown_timer: Option<JoinHandle<()>>,
    /// Turned true at shutdown: the replay stops after its current request.
    stop_replay: watch::Sender<bool>,
}

impl<C: PutRecords> Consumer<C> {
    /// `stop_deliveries` is also the sink's: shutdown may stop the deliveries from outside while
    /// the consumer waits on them (in a barrier's flush).
    pub(super) fn new(client: C, config: FirehoseConfig, health: Arc<Health>, spool: Spool, stop_deliveries: Arc<watch::Sender<bool>>) -> Self {
        Consumer {
            client: Arc::new(client),
            batcher: Batcher::new(config.batch),
            status: Arc::new(Status { health, stream: config.stream.clone() }),
            config: Arc::new(config),
            in_flight: JoinSet::new(),
            in_flight_records: HashMap::new(),
            spool: SharedSpool::new(spool),
            replay: None,
            stop_deliveries,
            shutdown_timer: None,
            stop_replay: watch::channel(false).0,
        }
    }

    /// Serves the queue until a [`Job::Shutdown`] (or every sender is gone), then flushes,
    /// spools what cannot be sent within the shutdown timeout, and answers.
    pub(super) async fn run(mut self, mut rx: RecordJobs) {
        self.ensure_replay();
        let mut shutdown_acks = Vec::new();
        loop {
            let deadline = self.batcher.deadline();
            tokio::select! {
                job = rx.recv() => match job {
                    None => break,
                    Some(Job::Deliver(records)) => {
                        for line in records.each_line() {
                            self.take_line(line, &rx).await;
                        }
                    }
                    Some(Job::Tick) => {
                        if let Some(batch) = self.batcher.take_if_due(Instant::now()) {
                            self.send(batch).await;
                        }
                        self.ensure_replay();
                        metrics::gauge!(m::QUEUE_DEPTH, "outlet" => "firehose").set(rx.len() as f64);
                    }
                    Some(Job::Barrier(ack)) => {
                        self.flush().await;
                        let _ = ack.send(());
                    }
                    Some(Job::Shutdown(ack)) => {
                        // Jobs already queued behind it are still served: the loop ends once the
                        // closed queue is empty.
                        rx.close();
                        self.arm_shutdown_timer();
                        shutdown_acks.push(ack);
                    }
                },
                _ = sleep_until(deadline) => {
                    if let Some(batch) = self.batcher.take() {
                        self.send(batch).await;
                    }
                }
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => self.finished(done).await,
            }
        }
        self.shut_down().await;
        for ack in shutdown_acks {
            let _ = ack.send(());
        }
    }

    /// Adds one record line to the open batch, sending the batch when it is full.
    async fn take_line(&mut self, line: Bytes, rx: &RecordJobs) {
        let size = super::encoded_len(line.len());
        if let Some(batch) = self.batcher.push(line, size) {
            self.send(batch).await;
            metrics::gauge!(m::QUEUE_DEPTH, "outlet" => "firehose").set(rx.len() as f64);
        }
    }

    /// Sends the open batch and waits for every delivery under way: afterwards everything taken
    /// from the queue so far is acknowledged, spooled, or given up and counted.
    async fn flush(&mut self) {
        if let Some(batch) = self.batcher.take() {
            self.send(batch).await;
        }
        while let Some(done) = self.in_flight.join_next_with_id().await {
            self.finished(done).await;
        }
    }

    /// Behind the spool's backlog if there is one, else to Firehose once a delivery slot is free.
    async fn send(&mut self, batch: Batch<Bytes>) {
        let mut records = batch.items;
        loop {
            match self.spool_records(records, true).await {
                Some(back) => records = back,
                None => return,
            }
            if self.in_flight.len() < self.config.max_in_flight {
                let (client, policy, budget) = (self.client.clone(), self.config.retry, Some(self.config.retry.budget));
                let mut stop = self.stop_deliveries.subscribe();
                let n = records.len();
                let task = self.in_flight.spawn(async move { deliver(&*client, records, &policy, budget, &mut stop, None).await });
                self.in_flight_records.insert(task.id(), (n, Instant::now()));
                return;
            }
            // Every slot held for longer than an attempt may take: the deliveries are retrying.
            // Rather than stop reading the queue until a retry budget is spent, put the batch on
            // disk; later batches queue behind it there.
            let stale_at = self.in_flight_records.values().map(|(_, started)| *started).max().map(|t| t + self.config.retry.attempt_timeout);
            if stale_at.is_some_and(|t| t <= Instant::now()) {
                self.status.degraded(&format!("requests outstanding for more than {:?}", self.config.retry.attempt_timeout));
                self.spool_records(records, false).await;
                return;
            }
            tokio::select! {
                Some(done) = self.in_flight.join_next_with_id() => self.finished(done).await,
                _ = sleep_until(stale_at) => {}
            }
        }
    }

    /// Accounts for a finished delivery; what it could not send goes to the spool.
    async fn finished(&mut self, done: Result<(tokio::task::Id, Result<(), Undelivered>), tokio::task::JoinError>) {
        match done {
            Ok((id, Ok(()))) => {
                self.in_flight_records.remove(&id);
                self.status.ok();
            }
            Ok((id, Err(undelivered))) => {
                self.in_flight_records.remove(&id);
                let Undelivered { records, reason } = undelivered;
                self.status.degraded(&reason);
                tracing::warn!(records = records.len(), %reason, "Firehose did not take a batch within the retry budget; spooling it");
                self.spool_records(records, false).await;
            }
            Err(err) => {
                let lost = self.in_flight_records.remove(&err.id()).map_or(0, |(n, _)| n) as u64;
                metrics::counter!(m::RECORDS_DROPPED, "outlet" => "firehose", "reason" => "internal").increment(lost);
                tracing::error!(records = lost, error = %err, "a Firehose delivery task failed; its records are lost");
            }
        }
    }

    /// Appends `records` to the spool and makes sure the replay runs; with `behind_backlog`, only
    /// if the spool already holds records (so that none overtakes them), else handing them back.
    /// What does not fit or cannot be written is given up, counted and logged.
    async fn spool_records(&mut self, records: Vec<Bytes>, behind_backlog: bool) -> Option<Vec<Bytes>> {
        let appended = self.spool.run(move |s| if behind_backlog && s.is_empty() { Err(records) } else { Ok(s.append(&records).map_err(|e| (e, records))) }).await;
        match appended {
            Err(records) => return Some(records),
            Ok(appended) => self.count_spooled(appended),
        }
        self.ensure_replay();
        None
    }

    fn count_spooled(&self, appended: Result<Appended, (std::io::Error, Vec<Bytes>)>) {
        match appended {
            Ok(Appended { spooled, refused }) => {
                metrics::counter!(m::RECORDS_SPOOLED).increment(spooled as u64);
                if refused > 0 {
                    metrics::counter!(m::RECORDS_DROPPED, "outlet" => "firehose", "reason" => "spool_full").increment(refused as u64);
                    tracing::error!(records = refused, max_bytes = self.config.spool_max_bytes, "the spool is full; records given up (see pixelgate_records_dropped_total)");
                }
            }
            Err((err, records)) => {
                metrics::counter!(m::RECORDS_DROPPED, "outlet" => "firehose", "reason" => "spool_failed").increment(records.len() as u64);
                tracing::error!(records = records.len(), error = %err, "cannot write to the spool; records given up (see pixelgate_records_dropped_total)");
            }
        }
    }

    /// Starts the replay task if the spool holds records and none is running.
    fn ensure_replay(&mut self) {
        if self.replay.as_ref().is_some_and(|t| !t.is_finished()) || self.spool.is_empty() {
            return;
        }
        let replay =
            Replay { client: self.client.clone(), config: self.config.clone(), status: self.status.clone(), spool: self.spool.clone(), stop: self.stop_replay.subscribe() };
        self.replay = Some(tokio::spawn(replay.run()));
    }

    /// From the moment shutdown is asked for, deliveries get `shutdown_timeout`; then they stop
    /// retrying and hand back what is left (after their current attempt) for the spool.
    fn arm_shutdown_timer(&mut self) {
        if self.shutdown_timer.is_some() {
            return;
        }
        let (stop, timeout) = (self.stop_deliveries.clone(), self.config.shutdown_timeout);
        self.shutdown_timer = Some(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            tracing::warn!(?timeout, "Firehose deliveries still under way at the shutdown timeout; spooling what is left");
            stop.send_replace(true);
        }));
    }

    /// Stops the replay, sends the open batch and waits for every delivery (bounded by the
    /// shutdown timer); what could not be sent is in the spool for the next start.
    async fn shut_down(&mut self) {
        self.stop_replay.send_replace(true);
        self.arm_shutdown_timer();
        self.flush().await;
        if let Some(timer) = self.shutdown_timer.take() {
            timer.abort();
        }
        if let Some(replay) = self.replay.take() {
            let _ = replay.await;
        }
        let (bytes, dir) = self.spool.run(|s| (s.bytes(), s.dir().to_owned())).await;
        if bytes > 0 {
            tracing::info!(bytes, dir = %dir.display(), "records left in the spool; the next start replays them");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Sends the spool to Firehose, oldest first, one request at a time (so order holds), until it
/// is empty or the sink stops. It retries without a budget: the records are safe on disk.
struct Replay<C> {
    client: Arc<C>,
    config: Arc<FirehoseConfig>,
    status: Arc<Status>,
    spool: SharedSpool,
    stop: watch::Receiver<bool>,
}

impl<C: PutRecords> Replay<C> {
    async fn run(mut self) {
        let (max_records, max_bytes) = (self.config.batch.max_items, self.config.batch.max_bytes);
        let mut failures = 0;
        while !*self.stop.borrow() {
            let chunk = match self.spool.run(move |s| s.next_chunk(max_records, max_bytes, super::encoded_len)).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the spool; retrying");
                    failures += 1;
                    self.pause(failures).await;
                    continue;
                }
            };
            let n = chunk.records.len();
            let policy = self.config.retry;
            let records = chunk.records.clone();
            if let Err(undelivered) = deliver(&*self.client, records, &policy, None, &mut self.stop, Some(&self.status)).await {
                tracing::info!(records = undelivered.records.len(), "replay stopped for shutdown; the records stay in the spool");
                return;
            }
            self.status.ok();
            metrics::counter!(m::RECORDS_REPLAYED).increment(n as u64);
            if let Err(err) = self.spool.run(move |s| s.ack(&chunk)).await {
                tracing::error!(error = %err, "cannot record replay progress in the spool; these records may be sent again after a restart");
            }
        }
    }

    async fn pause(&mut self, failures: u32) {
        let wait = self.config.retry.backoff_at_least_half(failures);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.wait_for(|s| *s) => {}
        }
    }
}
