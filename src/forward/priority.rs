//! How the forwarder's thread is scheduled beside the threads that answer pixels, on the same
//! CPUs (`docs/forwarding.md#under-load`).
//!
//! * A slightly lower priority ([`NICENESS`]): when forwarding and answering compete for a CPU,
//!   the answers get the larger share, yet forwarding keeps enough of it to deliver every event
//!   at the highest rate one core answers (about a tenth of the CPU).
//! * A short time slice ([`SLICE`]): the scheduler lets a running thread keep its CPU for its
//!   slice (milliseconds by default) before an answer that became ready may run, and encoding a
//!   1,000-event request body takes about a millisecond. With a slice of a tenth of that, an
//!   answer waits at most that long for the forwarder. Linux takes a fair-share thread's slice
//!   from `sched_setattr` since 6.12; older kernels ignore it and keep the niceness.

/// The forwarder's nice value, relative to the answers' 0.
const NICENESS: i32 = 3;

/// The time slice the forwarder asks for, in nanoseconds (Linux's smallest: 100 µs).
const SLICE: u64 = 100_000;

/// Schedules the calling thread as the forwarder's; a refusal leaves it as it was (logged).
pub(super) fn forwarder_thread() {
    #[cfg(target_os = "linux")]
    linux::apply();
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{NICENESS, SLICE};

    /// `struct sched_attr` of sched_setattr(2), in its first version (48 bytes).
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
    }

    pub(super) fn apply() {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: NICENESS,
            sched_priority: 0,
            sched_runtime: SLICE,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: sched_setattr reads `size` bytes of `attr`, a live, initialised `sched_attr`
        // whose `size` is its own; on Linux a thread id names that thread alone.
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, tid, &attr as *const SchedAttr, 0u32) };
        if rc == 0 {
            return;
        }
        tracing::debug!(error = %std::io::Error::last_os_error(), "sched_setattr refused the forwarder's slice; setting its niceness only");
        // SAFETY: setpriority reads its three integer arguments only; on Linux a thread id names
        // that thread alone.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICENESS) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the forwarder's priority");
        }
    }

    #[cfg(test)]
    mod tests {
        /// The thread's nice value and slice as the kernel reports them.
        fn sched_of(tid: i32) -> (i32, Option<u64>) {
            let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).unwrap_or_default();
            let field = |name: &str| text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(':').nth(1)).map(|v| v.trim().to_owned());
            // SAFETY: getpriority reads its integer arguments only.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
            (nice, field("se.slice").and_then(|v| v.parse().ok()))
        }

        #[test]
        fn the_forwarder_thread_is_niced_and_asks_for_a_short_slice() {
            let (nice, slice) = std::thread::spawn(|| {
                super::apply();
                // SAFETY: gettid takes no arguments and cannot fail.
                let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
                sched_of(tid)
            })
            .join()
            .unwrap();
            assert_eq!(nice, super::NICENESS);
            // Kernels before 6.12 have no per-thread slice to report.
            if let Some(slice) = slice {
                assert_eq!(slice, super::SLICE);
            }
        }
    }
}
