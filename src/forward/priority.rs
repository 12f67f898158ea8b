//! How the forwarder's thread shares a CPU with the threads that answer pixels
//! (`docs/forwarding.md#under-load`).
//!
//! * A slightly lower priority ([`NICENESS`]): when forwarding and answering compete for a CPU,
//!   the answers get the larger share, yet forwarding keeps enough of it to deliver every event
//!   at the highest rate one core answers (about a tenth of the CPU).
//! * Short runs ([`breathe`]). Linux checks a running thread against its time slice only at the
//!   timer tick (every 4 ms at 250 Hz), and an answer thread that was already runnable does not
//!   preempt it: encoding a 1,000-event request body in one go could hold answers back for up
//!   to a tick. So the forwarder steps off the CPU for a moment after every [`RUN`] of work: a
//!   waiting answer runs then (unpaced, every hit forwarded: the pixel's p99 was 3.9–4.3 ms with
//!   breaths against 4.3–4.8 ms without, four interleaved `bench/capi.sh` runs each). Sleeping (unlike `sched_yield`, which sends a thread to the back of the line for a
//!   whole slice) keeps the forwarder's fair share, so it still keeps up.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The forwarder's nice value (answers run at 0).
const NICENESS: i32 = 3;

/// Longest stretch of forwarding work between two breaths.
const RUN: Duration = Duration::from_micros(200);

/// How long a breath asks to sleep (the kernel's timer slack makes it about 50 µs).
const BREATH: Duration = Duration::from_micros(1);

/// Work units (events encoded, hits batched) between two looks at the clock.
const CHECK_EVERY: u32 = 32;

thread_local! {
    /// Units since the last look at the clock, and when the current run began.
    static RUNNING: Cell<(u32, Option<Instant>)> = const { Cell::new((0, None)) };
}

/// Lowers the calling thread's priority to the forwarder's; a refusal is logged at debug.
pub(super) fn forwarder_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        // SAFETY: setpriority reads its three integer arguments only; on Linux a thread id names
        // that thread alone.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the forwarder's priority");
        }
    }
}

/// Counts one unit of forwarding work; once the current run has lasted [`RUN`], sleeps for a
/// [`BREATH`] so that a waiting answer gets the CPU. Cheap: the clock is read every
/// [`CHECK_EVERY`] units.
#[inline]
pub(super) fn breathe() {
    let (units, started) = RUNNING.get();
    if units + 1 < CHECK_EVERY {
        RUNNING.set((units + 1, started));
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

/// The forwarder is about to wait for work: its next run starts when it has some.
pub(super) fn rest() {
    RUNNING.set((0, None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_of_work_is_cut_into_runs_with_a_breath_between() {
        std::thread::spawn(|| {
            rest();
            let (started, mut breaths) = (Instant::now(), 0);
            while started.elapsed() < Duration::from_millis(20) {
                let t = Instant::now();
                breathe();
                // A breath sleeps; counting a unit takes nanoseconds.
                if t.elapsed() >= Duration::from_micros(20) {
                    breaths += 1;
                }
            }
            // Cut into runs, each of at least 200 µs: at most 100 in 20 ms (a loaded machine may
            // stretch the breaths, so the lower bound only asks that the work was cut).
            assert!((2..=100).contains(&breaths), "{breaths} breaths in 20 ms of work");
        })
        .join()
        .unwrap();
    }
}
