//! The intake: tasks that turn captured requests into hits, in batches, and offer them to the
//! outlets.
//!
//! The edge hands over a request as captured ([`Captured`]: receipt time, what shaping reads of
//! the head, a POST's body) and answers; an intake task shapes what accumulated
//! ([`crate::params::shape`]), writes each record line once into a batch of lines for the
//! raw-record outlets, and offers each hit to the hit outlets. Parsing and hashing a run of hits
//! back to back keeps that code and its data in the CPU caches, where interleaving it with the
//! network stack per request did not. Flush and shutdown pass through the intake first, so they
//! still cover every hit answered before them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use super::dispatcher::{Dispatcher, Lines, Offered};
use crate::params::{Captured, ParseSettings};

/// Most captured requests an intake task shapes before it lets other tasks run.
const BATCH: usize = 64;

/// What an intake task is asked to do.
// Nearly every job is a `Captured`: boxing it would add an allocation per hit.
#[allow(clippy::large_enum_variant)]
pub(super) enum Intake {
    /// Shape this request and offer its hit to the outlets; `bytes` is its share of the budget.
    Captured(Captured, usize),
    /// Answer once everything queued before has been offered to the outlets.
    Barrier(oneshot::Sender<()>),
    /// Shape what is queued, answer, and stop.
    Shutdown(oneshot::Sender<()>),
}

/// How far an intake task got with a captured request, for counting what a panic cost.
#[derive(Clone, Copy)]
enum Stage {
    Shaping,
    Writing,
    Offering,
}

/// Queues an answerable job on one intake task and waits for its answer (at once if it stopped).
pub(super) async fn answered(tx: &mpsc::Sender<Intake>, job: fn(oneshot::Sender<()>) -> Intake) {
    let (ack, answered) = oneshot::channel();
    if tx.send(job(ack)).await.is_ok() {
        let _ = answered.await;
    }
}

/// An intake task: shapes captured requests in batches, hands the batch's record lines to the
/// raw-record outlets together and offers the hits to the hit outlets, until an
/// [`Intake::Shutdown`] (after which what is still queued is shaped too).
pub(super) async fn run(mut rx: mpsc::Receiver<Intake>, settings: Arc<ParseSettings>, outlets: Dispatcher) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    let mut lines = Lines::default();
    let mut offered = Offered::default();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for job in batch.drain(..) {
            match job {
                Intake::Captured(captured, bytes) => {
                    take(&outlets, &mut lines, &mut offered, captured, &settings);
                    outlets.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                }
                Intake::Barrier(ack) => {
                    outlets.send_lines(&mut lines);
                    outlets.send_hits(&mut offered);
                    let _ = ack.send(());
                }
                Intake::Shutdown(ack) => {
                    rx.close();
                    acks.push(ack);
                }
            }
        }
        outlets.send_lines(&mut lines);
        outlets.send_hits(&mut offered);
    }
    for ack in acks {
        let _ = ack.send(());
    }
}

/// Shapes one request, adds its line to `lines` and its hit to `offered`. A bug in shaping one
/// request or writing its line must not stop the task, and with it every later hit: that hit is
/// counted as dropped instead, for the outlets it had not reached.
fn take(outlets: &Dispatcher, lines: &mut Lines, offered: &mut Offered, captured: Captured, settings: &ParseSettings) {
    let stage = std::cell::Cell::new(Stage::Shaping);
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let hit = crate::params::shape(captured, settings);
        stage.set(Stage::Writing);
        outlets.gather(lines, &hit, |out| hit.write_line(out));
        stage.set(Stage::Offering);
        outlets.offer_hit(hit, offered);
    }));
    if done.is_err() {
        tracing::error!("shaping a captured pixel request or writing its record panicked; its hit is dropped");
        match stage.get() {
            Stage::Shaping => outlets.dropped_everywhere("shaping_failed"),
            Stage::Writing => {
                lines.repair();
                outlets.dropped_everywhere("shaping_failed");
            }
            Stage::Offering => outlets.dropped_for_hit_outlets("shaping_failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::params::RequestHead;
    use crate::pipeline::{HitOutlet, Job, RecordOutlet};
    use crate::record::{Fields, Timestamp};

    fn captured(n: usize) -> Captured {
        let req = http::Request::get(format!("/p.gif?pixel_id=1&event=E&event_id=e{n}")).body(()).unwrap();
        Captured { received_at: Timestamp::now(), head: RequestHead::capture(&req.into_parts().0, None, 0), body: None }
    }

    type Seen = Arc<Mutex<Vec<String>>>;

    /// A consumer that keeps the event ids it gets and answers barriers and shutdown.
    fn consume<T: Send + 'static>(mut rx: mpsc::Receiver<Job<T>>, ids: impl Fn(T) -> Vec<String> + Send + 'static) -> (Seen, tokio::task::JoinHandle<()>) {
        let seen = Seen::default();
        let log = seen.clone();
        let consumer = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Deliver(item) => log.lock().unwrap().extend(ids(item)),
                    Job::Barrier(ack) => {
                        let _ = ack.send(());
                    }
                    Job::Tick => {}
                    Job::Shutdown(ack) => {
                        rx.close();
                        let _ = ack.send(());
                    }
                }
            }
        });
        (seen, consumer)
    }

    fn record_ids(records: super::super::Records) -> Vec<String> {
        let lines: Vec<_> = records.each_line().collect();
        assert_eq!(lines.len(), records.count());
        lines.iter().map(|line| serde_json::from_slice::<serde_json::Value>(line).unwrap()["event_id"].as_str().unwrap().to_owned()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_and_shutdown_cover_every_captured_request() {
        let (hits, hits_rx) = HitOutlet::new("test", 10_000);
        let (records, records_rx) = RecordOutlet::new("test", 10_000);
        let (seen_hits, hit_consumer) = consume(hits_rx, |hits| hits.take().iter().map(|hit| hit.event_id().to_owned()).collect());
        let (seen_records, record_consumer) = consume(records_rx, record_ids);
        let dispatcher = Dispatcher::new(vec![records], vec![hits]).with_intake(3, 1000, ParseSettings::default());
        // Submitted from several threads, so every intake task gets some.
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let d = dispatcher.clone();
                tokio::task::spawn_blocking(move || (0..250).for_each(|i| d.submit_captured(captured(t * 1000 + i))))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        dispatcher.flush().await;
        for seen in [&seen_hits, &seen_records] {
            assert_eq!(seen.lock().unwrap().len(), 1000, "flush returns once every captured request reached the outlet");
        }
        dispatcher.submit_captured(captured(9999));
        dispatcher.shutdown().await;
        hit_consumer.await.unwrap();
        record_consumer.await.unwrap();
        for seen in [seen_hits, seen_records] {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1001, "one hit per captured request");
            assert_eq!(seen.iter().collect::<std::collections::HashSet<_>>().len(), 1001);
        }
        assert_eq!(dispatcher.queued_bytes.load(Ordering::Relaxed), 0, "every byte reserved was given back");
    }

    #[tokio::test]
    async fn a_full_byte_budget_drops_captured_requests_before_the_intake() {
        let (hits, hits_rx) = HitOutlet::new("test", 10);
        let (seen, consumer) = consume(hits_rx, |hits| hits.take().iter().map(|hit| hit.event_id().to_owned()).collect());
        let dispatcher = Dispatcher::new(vec![], vec![hits]).with_max_bytes(1).with_intake(1, 10, ParseSettings::default());
        dispatcher.submit_captured(captured(1));
        dispatcher.shutdown().await;
        consumer.await.unwrap();
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(dispatcher.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_gate_keeps_the_hits_of_unwanted_pixels_out_of_its_queue() {
        let (hits, hits_rx) = HitOutlet::new("test", 10);
        let hits = hits.with_gate(Arc::new(|pixel| pixel.is_ok_and(|p| p.as_str() == "1")));
        let (seen, consumer) = consume(hits_rx, |hits| hits.take().iter().map(|hit| hit.event_id().to_owned()).collect());
        let dispatcher = Dispatcher::new(vec![], vec![hits]).with_intake(1, 10, ParseSettings::default());
        for query in ["pixel_id=1&event_id=a", "pixel_id=2&event_id=b", "event_id=c", "pixel_id=x&event_id=d"] {
            let req = http::Request::get(format!("/tr?{query}")).body(()).unwrap();
            dispatcher.submit_captured(Captured { received_at: Timestamp::now(), head: RequestHead::capture(&req.into_parts().0, None, 0), body: None });
        }
        dispatcher.shutdown().await;
        consumer.await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["a"]);
    }
}
