//! The forwarder thread's scheduling priority (`docs/forwarding.md#under-load`): slightly lower
//! than the answers' ([`NICENESS`]). When forwarding and answering compete for a CPU, the answers
//! get the larger share, yet forwarding keeps enough of it to deliver every event at the highest
//! rate one core answers (about a tenth of the CPU); at nice 10 it fell behind and shed. Its runs
//! are kept short by [`crate::pace`].

/// The forwarder's nice value (answers run at 0).
const NICENESS: i32 = 3;

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
