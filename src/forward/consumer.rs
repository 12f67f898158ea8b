//! The forwarder's queue consumer: drains its hit outlet into batches per [`Key`], delivers
//! each batch in a task of its own, and honours the [`Job`] protocol.
//!
//! It runs on the forwarder's own thread. Concurrency is bounded by the congestion window
//! ([`super::window`]), a place of which a delivery holds from its credentials lookup to its
//! last retry; while the window is full, batches that are ready wait in line for a place, and
//! the consumer goes on taking hits from its queue into batches, within the byte budget past
//! which hits are shed: memory stays bounded whatever the platform does, and it is the
//! forwarder's batches that hold it, not the queue (whose hits live in the answering thread's
//! memory and may take only a part of the budget).
//!
//! `Barrier` sends every open batch and waits for every delivery under way, retries included
//! (the Lambda drain relies on this per invocation); `Tick` sends batches that are old enough;
//! `Shutdown` sends everything, lets deliveries run for the shutdown timeout, then gives the
//! rest up as `shutdown`. Deliveries watch the outlet's `closing` flag: once shutdown begins, a
//! failed attempt is given up instead of retried.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::blocks::Pool;
use super::deliver::deliver;
use super::destination::Destination;
use super::gate::Credentials;
use super::open::{Open, Records};
use super::{ForwardConfig, Key, MAX_BATCH_BYTES, Shared};
use crate::metrics as m;
use crate::pace;
use crate::pipeline::{HitJobs, Hits, Job, QueuedHit};
use crate::record::GivenUp;

/// Most bytes of free blocks kept for the next batches (an eighth of the budget if less): under
/// load, a delivered batch gives its blocks back about as fast as new batches take them.
const MAX_POOL_BYTES: usize = 4 * 1024 * 1024;

/// Most jobs taken from the queue in one go (a job holds up to one intake batch of hits).
const DRAIN: usize = 64;

/// How long the consumer rests after taking a partial drain, instead of asking to be woken.
const COALESCE: Duration = Duration::from_millis(2);

/// The consumer task's state.
pub(super) struct Consumer<D: Destination, S> {
    shared: Arc<Shared<D, S>>,
    config: ForwardConfig,
    /// Open batches; a key is removed when its batch leaves by age, so idle pixels cost
    /// nothing (one that leaves full is followed by an empty one).
    batches: foldhash::HashMap<Key, Open>,
    /// No later than the earliest deadline of the open batches (may be earlier: then the timer
    /// fires, finds nothing due and recomputes).
    next_deadline: Option<Instant>,
    in_flight: JoinSet<()>,
    /// Batches ready to be delivered, waiting for a place in the window, oldest first.
    ready: std::collections::VecDeque<(Key, Open)>,
    /// The records of each delivery task's hits, so that a task that dies is still accounted
    /// for.
    in_flight_records: foldhash::HashMap<tokio::task::Id, Arc<Records>>,
    /// The blocks batches write into, kept for reuse.
    pool: Arc<Pool>,
    /// Where one event is encoded before it is copied into its batch's block.
    scratch: Vec<u8>,
    /// Turned true at the shutdown timeout: deliveries give up what they hold at once.
    stop: Arc<watch::Sender<bool>>,
    shutdown_timer: Option<JoinHandle<()>>,
}

impl<D: Destination, S: Credentials> Consumer<D, S> {
    pub(super) fn new(shared: Arc<Shared<D, S>>, config: ForwardConfig) -> Self {
        let pool = Pool::new((shared.budget.max() / 8).min(MAX_POOL_BYTES));
        Consumer {
            shared,
            config,
            batches: foldhash::HashMap::default(),
            next_deadline: None,
            in_flight: JoinSet::new(),
            ready: std::collections::VecDeque::new(),
            in_flight_records: foldhash::HashMap::default(),
            pool,
            scratch: Vec::new(),
            stop: Arc::new(watch::channel(false).0),
            shutdown_timer: None,
        }
    }

    /// Serves the queue until a [`Job::Shutdown`] (or every sender is gone), then sends what is
    /// open, waits for deliveries within the shutdown timeout, gives up the rest, and answers.
    ///
    /// The queue is drained without asking to be woken: after taking what waits, the consumer
    /// rests [`COALESCE`] (still reaping deliveries and sending aged batches) rather than parking
    /// on the queue, so the intake's offers find nobody to wake. Woken per hit, the forwarder's
    /// thread would cost the answering thread a futex call for every forwarded hit. Only an empty
    /// queue parks it.
    pub(super) async fn run(mut self, mut rx: HitJobs) {
        let mut shutdown_acks = Vec::new();
        let mut jobs = Vec::with_capacity(DRAIN);
        let mut open = true;
        loop {
            self.reap_ended();
            self.start_ready();
            while jobs.len() < DRAIN {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let took = jobs.len();
            // One clock reading per drain: the hits checked against it arrived within it.
            let now = SystemTime::now();
            for job in std::mem::take(&mut jobs) {
                self.handle(job, now, &mut rx, &mut shutdown_acks).await;
            }
            if took == DRAIN {
                continue;
            }
            if !open {
                break;
            }
            // A wait may return at once (a request already answered): only a real one starts
            // the next run afresh, before the work it woke up for.
            let waiting = Instant::now();
            tokio::select! {
                // Nothing taken: wait for the next job.
                job = rx.recv(), if took == 0 => {
                    pace::waited(waiting);
                    match job {
                        Some(job) => jobs.push(job),
                        None => open = false,
                    }
                }
                // A partial drain: rest before draining again, instead of asking to be woken.
                _ = tokio::time::sleep(COALESCE), if took > 0 => pace::waited(waiting),
                _ = sleep_until(self.next_deadline) => {
                    pace::waited(waiting);
                    self.send_due(Instant::now())
                }
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    pace::waited(waiting);
                    self.reaped(done)
                }
                permit = self.shared.window.acquire(), if !self.ready.is_empty() => {
                    pace::waited(waiting);
                    if let Some((key, open)) = self.ready.pop_front() {
                        self.spawn(key, open, permit);
                    }
                }
            }
        }
        self.shut_down().await;
        for ack in shutdown_acks {
            let _ = ack.send(());
        }
    }

    /// Does one job.
    async fn handle(&mut self, job: Job<Hits>, now: SystemTime, rx: &mut HitJobs, shutdown_acks: &mut Vec<tokio::sync::oneshot::Sender<()>>) {
        match job {
            Job::Deliver(hits) => {
                for hit in hits.take() {
                    self.accept(hit, now);
                }
            }
            Job::Tick => {
                self.send_due(Instant::now());
                metrics::gauge!(m::QUEUE_DEPTH, "outlet" => "capi").set(rx.len() as f64);
            }
            Job::Barrier(ack) => {
                self.send_all();
                self.wait_in_flight().await;
                let _ = ack.send(());
            }
            Job::Shutdown(ack) => {
                // Jobs already queued behind it are still served: the loop ends once the closed
                // queue is empty.
                rx.close();
                self.shared.closing.store(true, Ordering::Relaxed);
                self.arm_shutdown_timer();
                shutdown_acks.push(ack);
            }
        }
    }

    /// Writes a hit's event into its batch (or keeps why the platform would reject it), lets
    /// the hit go, and sends the batch if that fills it.
    fn accept(&mut self, hit: Arc<QueuedHit>, now: SystemTime) {
        // The dispatcher's gate let only hits with a valid pixel id through.
        let Ok(pixel) = hit.pixel() else { return };
        pace::work(1);
        let destination = &self.shared.destination;
        // Test mode: the pixel's code for an event that carries none of its own.
        let key = Key { pixel, test_event_code: hit.forward_test_event_code().map(str::to_owned) };
        let open = match self.batches.get_mut(&key) {
            Some(open) => open,
            None => self.batches.entry(key.clone()).or_insert_with(|| Open::new(pixel, &self.shared.budget, &self.pool)),
        };
        // What batching it would add must fit in the budget too, or a backlog taken in one go
        // would grow the batches past it. The hit's own bytes come back as it is batched, unless
        // another outlet still holds it.
        let budget = &self.shared.budget;
        let freed = if Arc::strong_count(&hit) == 1 { hit.bytes() } else { 0 };
        if budget.used().saturating_sub(freed) + open.growth() > budget.max() {
            self.shared.status.shed("budget", 1);
            return;
        }
        let was_empty = open.is_empty();
        match destination.check(&hit, now) {
            Ok(()) => open.push(destination, &hit, now, &mut self.scratch),
            Err(reject) => open.reject(destination, reject, &hit),
        }
        // Only a batch opened by this hit has a new deadline.
        if was_empty && let Some(deadline) = open.deadline(self.config.flush_interval) {
            self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        }
        if open.len() >= self.config.max_batch || open.body_len() >= MAX_BATCH_BYTES {
            let full = std::mem::replace(open, Open::new(pixel, &self.shared.budget, &self.pool));
            self.send(key, full);
        }
    }

    /// Sends the batches due by `now` (or within an eighth of the interval of it, so that many
    /// pixels with staggered deadlines wake the consumer a few times per interval, not once
    /// per pixel), and forgets the empty ones.
    fn send_due(&mut self, now: Instant) {
        let (horizon, max_age) = (now + self.config.flush_interval / 8, self.config.flush_interval);
        self.batches.retain(|_, open| !open.is_empty() || open.fresh(now, max_age));
        let due: Vec<Key> = self.batches.iter().filter(|(_, b)| b.deadline(max_age).is_some_and(|d| d <= horizon)).map(|(k, _)| k.clone()).collect();
        for key in due {
            if let Some(open) = self.batches.remove(&key) {
                self.send(key, open);
            }
        }
        self.next_deadline = self.batches.values().filter_map(|b| b.deadline(max_age)).min();
    }

    /// Sends every open batch.
    fn send_all(&mut self) {
        let keys: Vec<Key> = self.batches.keys().cloned().collect();
        for key in keys {
            if let Some(open) = self.batches.remove(&key).filter(|b| !b.is_empty()) {
                self.send(key, open);
            }
        }
        self.next_deadline = None;
    }

    /// Starts a delivery for the batch `open` if the window has room and no batch is waiting
    /// for it; else puts it in line.
    fn send(&mut self, key: Key, open: Open) {
        if self.ready.is_empty()
            && let Some(permit) = self.shared.window.try_acquire()
        {
            return self.spawn(key, open, permit);
        }
        self.ready.push_back((key, open));
    }

    /// Starts deliveries for the batches in line while the window has room.
    fn start_ready(&mut self) {
        while !self.ready.is_empty() {
            let Some(permit) = self.shared.window.try_acquire() else { return };
            let (key, open) = self.ready.pop_front().expect("a batch in line");
            self.spawn(key, open, permit);
        }
    }

    /// Spawns the delivery of `open`, holding `permit`.
    fn spawn(&mut self, key: Key, mut open: Open, permit: super::window::Permit) {
        let records = Arc::new(std::mem::replace(&mut open.records, Records::new(key.pixel, &self.shared.budget)));
        let (shared, stop, held) = (self.shared.clone(), self.stop.subscribe(), records.clone());
        // Boxed: a delivery's future holds a whole request in flight (kilobytes), and the task
        // machinery moves an unboxed future several times on the way to its first poll.
        let task = self.in_flight.spawn(Box::pin(async move {
            let _permit = permit;
            deliver(&shared, key, open, held, stop).await;
        }));
        self.in_flight_records.insert(task.id(), records);
    }

    /// Accounts for the deliveries that ended (their records let go), without waiting: called
    /// every turn, so that it happens even when every turn takes a full drain and never reaches
    /// a wait.
    fn reap_ended(&mut self) {
        while let Some(done) = self.in_flight.try_join_next_with_id() {
            self.reaped(done);
        }
    }

    /// Accounts for a finished delivery; a task that died leaves its events given up as `internal`.
    fn reaped(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        match done {
            Ok((id, ())) => {
                self.in_flight_records.remove(&id);
            }
            Err(err) => {
                let Some(records) = self.in_flight_records.remove(&err.id()) else { return };
                tracing::error!(destination = self.shared.destination.name(), events = records.len(), error = %err, "a delivery task failed; its events are given up");
                metrics::counter!(m::CAPI_EVENTS, "outcome" => "failed", "reason" => "internal").increment(records.len() as u64);
                let given_up = GivenUp { reason: "internal", detail: format!("the delivery task failed: {err}"), code: None, attempts: 0 };
                records.write_all_failed(self.shared.destination.name(), &given_up, &mut self.shared.sink.records());
            }
        }
    }

    /// Waits until every batch in line is delivered (or given up) and every delivery ended.
    async fn wait_in_flight(&mut self) {
        loop {
            self.reap_ended();
            self.start_ready();
            if self.ready.is_empty() && self.in_flight.is_empty() {
                return;
            }
            if let Some(done) = self.in_flight.join_next_with_id().await {
                self.reaped(done);
            }
        }
    }

    /// From the moment shutdown is asked for, deliveries get the shutdown timeout; then they
    /// give up what they hold.
    fn arm_shutdown_timer(&mut self) {
        if self.shutdown_timer.is_some() {
            return;
        }
        let (stop, timeout, name) = (self.stop.clone(), self.config.shutdown_timeout, self.shared.destination.name());
        self.shutdown_timer = Some(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            tracing::warn!(destination = name, ?timeout, "deliveries still under way at the shutdown timeout; giving up the rest");
            stop.send_replace(true);
        }));
    }

    async fn shut_down(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.arm_shutdown_timer();
        self.send_all();
        self.wait_in_flight().await;
        if let Some(timer) = self.shutdown_timer.take() {
            timer.abort();
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
