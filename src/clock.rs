//! A cheap monotonic clock in milliseconds, for bookkeeping done on every request (connection
//! deadlines, the set of pixels known to have no token).
//!
//! On Linux it is the kernel's coarse monotonic clock: read from the vDSO without reading the
//! time-stamp counter, a few nanoseconds where `Instant::now` costs several times that, at the
//! scheduler tick's resolution ([`resolution_ms`], typically 1–4 ms). Callers that must never
//! act early add that resolution to their deadlines.

/// Milliseconds since an arbitrary fixed point (the same for the whole process).
pub(crate) fn now_ms() -> u64 {
    imp::now_ms()
}

/// How far a difference of two [`now_ms`] readings may fall short of the true time between
/// them, in whole milliseconds: the clock's tick rounded up, plus one for the readings' cut to
/// whole milliseconds.
pub(crate) fn resolution_ms() -> u64 {
    imp::resolution_ms()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::sync::OnceLock;

    fn read(clock: libc::clockid_t, f: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int) -> Option<libc::timespec> {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the call.
        (unsafe { f(clock, &mut ts) } == 0).then_some(ts)
    }

    fn millis(ts: libc::timespec) -> u64 {
        (ts.tv_sec as u64).saturating_mul(1000).saturating_add(ts.tv_nsec as u64 / 1_000_000)
    }

    pub(super) fn now_ms() -> u64 {
        // CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32; should it fail, the
        // precise clock stands in.
        read(libc::CLOCK_MONOTONIC_COARSE, libc::clock_gettime).or_else(|| read(libc::CLOCK_MONOTONIC, libc::clock_gettime)).map_or(0, millis)
    }

    pub(super) fn resolution_ms() -> u64 {
        static RES: OnceLock<u64> = OnceLock::new();
        *RES.get_or_init(|| {
            let tick_ns =
                read(libc::CLOCK_MONOTONIC_COARSE, libc::clock_getres).map_or(1_000_000, |ts| (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64));
            tick_ns.div_ceil(1_000_000).max(1) + 1
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::sync::OnceLock;
    use std::time::Instant;

    pub(super) fn now_ms() -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn resolution_ms() -> u64 {
        // Whole milliseconds cut from a precise clock.
        1
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn keeps_up_with_the_precise_clock_within_its_resolution() {
        // The precise clock read around and inside the coarse readings: however the thread is
        // scheduled, the coarse interval lies between the inner and the outer precise one.
        let outer = Instant::now();
        let start = now_ms();
        let inner = Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        let inner = inner.elapsed().as_millis() as u64;
        let coarse = now_ms() - start;
        let outer = outer.elapsed().as_millis() as u64;
        let res = resolution_ms();
        assert!((1..=20).contains(&res), "resolution {res} ms");
        assert!(coarse + res >= inner, "coarse {coarse} ms, at least {inner} ms passed, resolution {res} ms");
        assert!(coarse <= outer + res, "coarse {coarse} ms, at most {outer} ms passed, resolution {res} ms");
    }
}
