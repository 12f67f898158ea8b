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

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::dispatcher::{Dispatcher, Lines, Offered};
use super::tenancy::Tenancy;
use crate::params::{Captured, ParseSettings};
use crate::record::{DraftHit, Fields, PixelId};

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
/// [`Intake::Shutdown`] (after which what is still queued is shaped too). A hit of a registered
/// pixel gets its settings (`tenancy`) between shaping and its record line, in order with the
/// others.
pub(super) async fn run(mut rx: mpsc::Receiver<Intake>, settings: Arc<ParseSettings>, outlets: Dispatcher, mut tenancy: Tenancy) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    let mut lines = Lines::default();
    let mut offered = Offered::default();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for job in batch.drain(..) {
            match job {
                Intake::Captured(captured, bytes) => {
                    // Most hits are of pixels known not to be registered: taken at once, with no
                    // future made for them. A registered pixel's hit waits for its settings.
                    let mut waiting = None;
                    take(&outlets, &mut lines, &mut offered, &captured, &settings, &tenancy, &mut waiting);
                    if let Some((mut hit, pixel)) = waiting
                        && settle(&outlets, &mut tenancy, &mut hit, pixel, &captured).await
                    {
                        offer(&outlets, &mut lines, &mut offered, hit);
                    }
                    drop(captured);
                    outlets.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                }
                Intake::Barrier(ack) => {
                    outlets.hand_on(&mut lines, &mut offered);
                    let _ = ack.send(());
                }
                Intake::Shutdown(ack) => {
                    rx.close();
                    acks.push(ack);
                }
            }
        }
        outlets.hand_on(&mut lines, &mut offered);
    }
    for ack in acks {
        let _ = ack.send(());
    }
}

// A bug in shaping one request, applying its settings or writing its line must not stop the
// task, and with it every later hit: that hit is counted as dropped instead, for the outlets it
// had not reached. Each step runs in a `catch_unwind`.

/// Shapes one request and, unless its pixel's settings are still to be found, adds its line
/// to `lines` and its hit to `offered`; a hit that waits for its pixel's settings is put in
/// `waiting` instead. The hit stays where it was shaped on the common way: moving it (a few
/// hundred bytes) costs a copy each time.
fn take(
    outlets: &Dispatcher,
    lines: &mut Lines,
    offered: &mut Offered,
    captured: &Captured,
    settings: &ParseSettings,
    tenancy: &Tenancy,
    waiting: &mut Option<(DraftHit, PixelId)>,
) {
    caught(outlets, lines, Stage::Shaping, |stage, lines| {
        let mut hit = crate::params::shape(captured, settings);
        // A registered pixel's settings that this task kept are applied here, with no future
        // and no move; others are waited for.
        if let Some(pixel) = tenancy.registered(&hit)
            && !tenancy.apply_kept(&mut hit, &pixel, captured)
        {
            *waiting = Some((hit, pixel));
            return;
        }
        stage.set(Stage::Writing);
        outlets.gather(lines, offered, hit.received_at(), |out| hit.write_line(out));
        stage.set(Stage::Offering);
        outlets.offer_hit(hit, offered);
    });
}

/// Adds the line of a hit whose pixel's settings were applied to `lines`, and the hit to
/// `offered`. Out of line: the common way ([`take`]) stays as it is compiled alone.
#[inline(never)]
fn offer(outlets: &Dispatcher, lines: &mut Lines, offered: &mut Offered, hit: DraftHit) {
    caught(outlets, lines, Stage::Writing, |stage, lines| {
        outlets.gather(lines, offered, hit.received_at(), |out| hit.write_line(out));
        stage.set(Stage::Offering);
        outlets.offer_hit(hit, offered);
    });
}

/// Applies the settings of `pixel` to its `hit` (from the directory's cache or, once per TTL,
/// its store); false if that panicked.
async fn settle(outlets: &Dispatcher, tenancy: &mut Tenancy, hit: &mut DraftHit, pixel: PixelId, captured: &Captured) -> bool {
    let done = AssertUnwindSafe(tenancy.apply(hit, pixel, captured)).catch_unwind().await.is_ok();
    if !done {
        tracing::error!("applying a pixel's settings to a hit panicked; its hit is dropped");
        outlets.dropped_everywhere("shaping_failed");
    }
    done
}

/// Runs `step` (which starts at `stage` and says how far it got), catching a panic: the hit is
/// then counted as dropped for the outlets it had not reached, and a line it cut short is
/// dropped from `lines`.
fn caught(outlets: &Dispatcher, lines: &mut Lines, stage: Stage, step: impl FnOnce(&Cell<Stage>, &mut Lines)) {
    let stage = Cell::new(stage);
    let done = std::panic::catch_unwind(AssertUnwindSafe(|| step(&stage, lines)));
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
    use crate::record::Timestamp;

    fn captured(n: usize) -> Captured {
        let req = http::Request::get(format!("/p.gif?pixel_id=1&event=E&event_id=e{n}")).body(()).unwrap();
        Captured { received_at: Timestamp::now(), source: crate::record::Source::Pixel, head: RequestHead::capture(&req.into_parts().0, None, 0), body: None }
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
        let (seen_hits, hit_consumer) = consume(hits_rx, |hits| hits.take().map(|hit| hit.event_id().to_owned()).collect());
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
        let (seen, consumer) = consume(hits_rx, |hits| hits.take().map(|hit| hit.event_id().to_owned()).collect());
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
        let hits = hits.with_gate(Arc::new(|hit: &crate::record::DraftHit| hit.pixel().is_ok_and(|p| p.as_str() == "1")));
        let (seen, consumer) = consume(hits_rx, |hits| hits.take().map(|hit| hit.event_id().to_owned()).collect());
        let dispatcher = Dispatcher::new(vec![], vec![hits]).with_intake(1, 10, ParseSettings::default());
        for query in ["pixel_id=1&event_id=a", "pixel_id=2&event_id=b", "event_id=c", "pixel_id=x&event_id=d"] {
            let req = http::Request::get(format!("/tr?{query}")).body(()).unwrap();
            dispatcher.submit_captured(Captured {
                received_at: Timestamp::now(),
                source: crate::record::Source::Pixel,
                head: RequestHead::capture(&req.into_parts().0, None, 0),
                body: None,
            });
        }
        dispatcher.shutdown().await;
        consumer.await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["a"]);
    }

    #[tokio::test]
    async fn registered_pixels_get_their_settings_in_order_and_the_gate_sees_them() {
        use crate::registry::kv::{Kv, local::LocalKv};
        use crate::registry::model::{Forwarding, PixelRecord};
        use crate::registry::{AccountId, Directory, DirectorySettings};

        let dir = tempfile::tempdir().unwrap();
        let directory = Arc::new(Directory::new(Kv::Local(LocalKv::open(dir.path()).await.unwrap()), DirectorySettings::default()));
        directory.refresh().await.unwrap();
        for (pixel, domains, forwarding) in [("42", vec!["shop.test".to_owned()], Forwarding::On), ("43", vec![], Forwarding::Off)] {
            let record = PixelRecord {
                pixel_id: pixel.into(),
                account_id: AccountId::parse("acc_a").unwrap(),
                name: None,
                allowed_domains: domains,
                test_event_code: None,
                forwarding,
                created_at: 0,
                updated_at: 0,
            };
            directory.changed(pixel.parse().unwrap(), Some(&record)).await;
        }
        let (hits, hits_rx) = HitOutlet::new("test", 100);
        let hits = hits.with_gate(Arc::new(|hit: &crate::record::DraftHit| !hit.flags().contains(crate::record::Flag::DomainNotAllowed) && !hit.routing().forwarding_off));
        let (records, records_rx) = RecordOutlet::new("test", 100);
        let (seen_hits, hit_consumer) = consume(hits_rx, |hits| hits.take().map(|hit| hit.event_id().to_owned()).collect());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        let (_, record_consumer) = consume(records_rx, move |records: super::super::Records| {
            kept.lock().unwrap().extend(records.each_line().map(|l| serde_json::from_slice::<serde_json::Value>(&l).unwrap()));
            vec![]
        });
        let dispatcher = Dispatcher::new(vec![records], vec![hits]).with_directory(directory).with_intake(1, 100, ParseSettings::default());
        for (query, origin) in [
            ("pixel_id=42&event_id=shop&url=https%3A%2F%2Fshop.test%2F", None),
            ("pixel_id=42&event_id=evil&url=https%3A%2F%2Fevil.test%2F", None),
            ("pixel_id=42&event_id=by-origin", Some("https://www.shop.test")),
            ("pixel_id=7&event_id=unregistered", None),
            ("pixel_id=43&event_id=quiet", None),
            ("event_id=no-pixel", None),
        ] {
            let mut req = http::Request::get(format!("/tr?{query}"));
            if let Some(origin) = origin {
                req = req.header("origin", origin);
            }
            let head = RequestHead::capture(&req.body(()).unwrap().into_parts().0, None, 0);
            dispatcher.submit_captured(Captured { received_at: Timestamp::now(), source: crate::record::Source::Pixel, head, body: None });
        }
        dispatcher.shutdown().await;
        hit_consumer.await.unwrap();
        record_consumer.await.unwrap();
        let lines = lines.lock().unwrap();
        let summary: Vec<(&str, &serde_json::Value, bool)> =
            lines.iter().map(|r| (r["event_id"].as_str().unwrap(), &r["account_id"], r["flags"].as_array().unwrap().iter().any(|f| f == "domain_not_allowed"))).collect();
        let acc = serde_json::json!("acc_a");
        let null = serde_json::Value::Null;
        assert_eq!(
            summary,
            [("shop", &acc, false), ("evil", &acc, true), ("by-origin", &acc, false), ("unregistered", &null, false), ("quiet", &acc, false), ("no-pixel", &null, false)]
        );
        assert_eq!(*seen_hits.lock().unwrap(), ["shop", "by-origin", "unregistered", "no-pixel"]);
    }
}
