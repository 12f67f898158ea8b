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

thread_local! {
    /// Units since the last look at the clock, and when the current run began.
    static RUNNING: Cell<(u32, Option<Instant>)> = const { Cell::new((0, None)) };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Does `busy` and then `work(units)` for 20 ms, and counts the `work` calls that took a
    /// breath.
    fn breaths_in_20_ms(busy: Duration, units: u32) -> u32 {
        std::thread::spawn(move || {
            rest();
            let (started, mut breaths) = (Instant::now(), 0);
            while started.elapsed() < Duration::from_millis(20) {
                let t = Instant::now();
                while t.elapsed() < busy {}
                let t = Instant::now();
                work(units);
                // A breath sleeps; counting units takes nanoseconds.
                if t.elapsed() >= Duration::from_micros(20) {
                    breaths += 1;
                }
            }
            breaths
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_long_run_of_small_steps_is_cut_into_runs_with_a_breath_between() {
        // Cut into runs, each of at least 200 µs: at most 100 in 20 ms (a loaded machine may
        // stretch the breaths, so the lower bound only asks that the work was cut).
        let breaths = breaths_in_20_ms(Duration::ZERO, 1);
        assert!((2..=100).contains(&breaths), "{breaths} breaths in 20 ms of work");
    }

    #[test]
    fn large_steps_look_at_the_clock_each_time() {
        let breaths = breaths_in_20_ms(Duration::from_micros(50), CHECK_EVERY);
        // 50 µs steps: a breath every fourth step at the most, so about 20–80 in 20 ms.
        assert!((2..=100).contains(&breaths), "{breaths} breaths in 20 ms of 50 µs steps");
    }

    #[test]
    fn resting_starts_a_new_run() {
        std::thread::spawn(|| {
            work(CHECK_EVERY);
            std::thread::sleep(Duration::from_millis(1));
            rest();
            // The millisecond spent resting is not part of a run: no breath yet.
            let t = Instant::now();
            work(CHECK_EVERY);
            assert!(t.elapsed() < Duration::from_micros(20));
        })
        .join()
        .unwrap();
    }
}
