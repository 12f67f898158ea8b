//! Short runs for the threads that work beside the answers: the forwarder and the file sink.
//!
//! Linux checks a running thread against its time slice only at the timer tick (every 4 ms at
//! 250 Hz), and an answer thread that was already runnable does not preempt it. A background
//! thread that encodes a 1,000-event request body or writes megabytes of records in one go
//! therefore held answers back for up to a tick: `perf sched timehist` caught the file sink
//! running 3.97 ms straight while the answering thread waited, unpaced, with nothing forwarded.
//! So these threads step off the CPU for a moment after every [`RUN`] of work ([`work`]), and a
//! waiting answer runs then. Sleeping, unlike `sched_yield` (which sends a thread to the back of
//! the line for a whole slice and starved the forwarder), keeps the thread's fair share.
//!
//! The bookkeeping is per thread: each counts its own runs.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Longest stretch of work between two breaths.
pub const RUN: Duration = Duration::from_micros(200);

/// How long a breath asks to sleep (the kernel's timer slack makes it about 50 µs).
const BREATH: Duration = Duration::from_micros(1);

/// Work units (events encoded, hits batched) between two looks at the clock: a unit of
/// [`work`] costs well under a microsecond, so the clock is read every this many.
pub const CHECK_EVERY: u32 = 32;

/// A wait at least this long means the thread was off the CPU: its next run starts afresh.
const OFF_CPU: Duration = Duration::from_micros(20);

thread_local! {
    /// Units since the last look at the clock, and when the current run began.
    static RUNNING: Cell<(u32, Option<Instant>)> = const { Cell::new((0, None)) };
}

#[cfg(test)]
thread_local! {
    /// Breaths this thread has taken (for the tests).
    static BREATHS: Cell<u32> = const { Cell::new(0) };
}

/// Counts `units` of work done on this thread; once its current run has lasted [`RUN`], sleeps
/// for a breath so that a waiting answer gets the CPU. The clock is read once [`CHECK_EVERY`]
/// units have added up: small steps pass 1, a step that takes tens of microseconds by itself (a
/// write of a few hundred kilobytes) passes [`CHECK_EVERY`].
#[inline]
pub fn work(units: u32) {
    let (done, started) = RUNNING.get();
    let done = done.saturating_add(units);
    if done < CHECK_EVERY {
        RUNNING.set((done, started));
        return;
    }
    let now = Instant::now();
    match started {
        Some(started) if now.duration_since(started) >= RUN => {
            std::thread::sleep(BREATH);
            #[cfg(test)]
            BREATHS.set(BREATHS.get() + 1);
            RUNNING.set((0, Some(Instant::now())));
        }
        Some(started) => RUNNING.set((0, Some(started))),
        None => RUNNING.set((0, Some(now))),
    }
}

/// This thread is about to wait for work: its next run starts when it has some.
pub fn rest() {
    RUNNING.set((0, None));
}

/// This thread waited for work since `since` (a wait that may have returned at once): if it
/// took long enough to have been off the CPU, its next run starts afresh.
pub fn waited(since: Instant) {
    if since.elapsed() >= OFF_CPU {
        rest();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a fresh thread (fresh thread-local state) and returns what it returns.
    fn on_a_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    #[test]
    fn a_long_run_of_small_steps_is_cut_into_runs_of_at_least_the_run_length() {
        on_a_thread(|| {
            rest();
            let deadline = Instant::now() + Duration::from_secs(10);
            // When each run began, as the pacer itself recorded it after each breath.
            let mut starts = Vec::new();
            let mut seen = 0;
            while starts.len() < 6 && Instant::now() < deadline {
                work(1);
                if BREATHS.get() != seen {
                    seen = BREATHS.get();
                    starts.push(RUNNING.get().1.expect("a breath starts a run"));
                }
            }
            assert_eq!(starts.len(), 6, "six breaths within 10 s of work");
            // No breath comes early: from the start of one run to the start of the next is at
            // least RUN (the run itself) plus the breath.
            for pair in starts.windows(2) {
                let run = pair[1] - pair[0];
                assert!(run >= RUN, "{run:?} from one run's start to the next, less than {RUN:?}");
            }
        });
    }

    #[test]
    fn large_steps_look_at_the_clock_each_time() {
        on_a_thread(|| {
            rest();
            // Steps of at least 50 µs, each worth CHECK_EVERY units: the run passes 200 µs
            // within five steps whatever the machine's load, and the next step breathes.
            let mut steps_since_breath = 0;
            for _ in 0..40 {
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(50) {}
                let before = BREATHS.get();
                work(CHECK_EVERY);
                steps_since_breath += 1;
                if BREATHS.get() != before {
                    assert!(steps_since_breath <= 6, "{steps_since_breath} steps of 50 µs before a breath");
                    steps_since_breath = 0;
                }
            }
            assert!(BREATHS.get() >= 40 / 6, "{} breaths in 40 steps of 50 µs", BREATHS.get());
        });
    }

    #[test]
    fn resting_or_a_long_wait_starts_a_new_run_and_a_short_one_does_not() {
        on_a_thread(|| {
            // Without a rest, a millisecond away counts as part of the run: the next look at
            // the clock breathes.
            rest();
            work(CHECK_EVERY);
            std::thread::sleep(Duration::from_millis(1));
            work(CHECK_EVERY);
            assert_eq!(BREATHS.get(), 1);
            // After a rest, it does not: the next look at the clock starts a run.
            std::thread::sleep(Duration::from_millis(1));
            rest();
            work(CHECK_EVERY);
            assert_eq!(BREATHS.get(), 1);
            // A wait that lasted a millisecond is a rest too.
            let since = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            waited(since);
            work(CHECK_EVERY);
            assert_eq!(BREATHS.get(), 1);
            // A wait that returned at once (here: one that reads as no time at all) is not: the
            // run started above goes on, and breathes once it has lasted RUN.
            std::thread::sleep(RUN);
            waited(Instant::now() + Duration::from_secs(1));
            work(CHECK_EVERY);
            assert_eq!(BREATHS.get(), 2);
        });
    }
}
