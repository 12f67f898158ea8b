//! A byte budget: how much memory what waits for an outlet may take. The raw-record outlets
//! and the hit outlets each have their own, so that forwarding, when its destination is slow or
//! down, runs out of room (and sheds) before the raw records do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes taken and the most that may be; of them, the bytes of what waits in a queue, and the
/// most of those.
///
/// What waits (hits on their way to the forwarder's thread) lives in the memory of the thread
/// that made it; what the forwarder then holds (its batches) in its own. Were either allowed the
/// whole budget, a stalled forwarder would let the queue fill it, and the batches fill it again
/// once it moves on, and the process would hold both at their peaks (the allocator keeps each
/// thread's freed memory for that thread for a while). So what waits gets a part of it.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    /// The most taken at once so far.
    peak: AtomicUsize,
    max: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Budget {
    /// A budget of `max` bytes, an eighth of them (at least 1 MiB, at most all) for what waits.
    pub fn new(max: usize) -> Arc<Budget> {
        let max_waiting = (max / 8).max(1024 * 1024).min(max);
        Arc::new(Budget { used: AtomicUsize::new(0), peak: AtomicUsize::new(0), max, waiting: AtomicUsize::new(0), max_waiting })
    }

    /// Takes `bytes` for something that waits, if they fit both in what may wait and in the
    /// whole; false (and nothing taken) if not. [`Budget::give_waiting`] gives them back.
    pub fn try_take_waiting(&self, bytes: usize) -> bool {
        if self.waiting.fetch_add(bytes, Ordering::Relaxed) + bytes > self.max_waiting {
            self.waiting.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        if !self.try_take(bytes) {
            self.waiting.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back `bytes` taken by [`Budget::try_take_waiting`].
    pub fn give_waiting(&self, bytes: usize) {
        self.waiting.fetch_sub(bytes, Ordering::Relaxed);
        self.give(bytes);
    }

    /// Takes `bytes` if they fit; false (and nothing taken) if they do not.
    pub fn try_take(&self, bytes: usize) -> bool {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.max {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        self.note(used);
        true
    }

    /// Keeps `used` as the peak if it is one (a read, and rarely a write).
    fn note(&self, used: usize) {
        if used > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(used, Ordering::Relaxed);
        }
    }

    /// Takes `bytes` whether they fit or not: for memory already in use (a request body being
    /// built), so that what comes next finds less room.
    pub fn take(self: &Arc<Self>, bytes: usize) -> Share {
        self.note(self.used.fetch_add(bytes, Ordering::Relaxed) + bytes);
        Share { bytes, budget: self.clone() }
    }

    /// Gives `bytes` back.
    pub fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes taken.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most taken at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The most that may be taken.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// Bytes taken from a budget, given back on drop.
#[derive(Debug)]
pub struct Share {
    bytes: usize,
    budget: Arc<Budget>,
}

impl Share {
    /// Takes `bytes` more, whether they fit or not, as [`Budget::take`].
    pub fn add(&mut self, bytes: usize) {
        self.budget.note(self.budget.used.fetch_add(bytes, Ordering::Relaxed) + bytes);
        self.bytes += bytes;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_fits_and_gives_back() {
        let budget = Budget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(50), "over the budget");
        assert_eq!(budget.used(), 60);
        let share = budget.take(70);
        assert_eq!(budget.used(), 130, "memory in use is counted even over the budget");
        assert!(!budget.try_take(1));
        drop(share);
        budget.give(60);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.peak(), 130, "the most held at once");
    }

    #[test]
    fn what_waits_gets_an_eighth() {
        let mib = 1024 * 1024;
        let budget = Budget::new(16 * mib);
        assert!(budget.try_take_waiting(2 * mib - 1));
        assert!(!budget.try_take_waiting(2), "over what may wait");
        assert_eq!(budget.used(), 2 * mib - 1, "a refusal takes nothing");
        let held = budget.take(14 * mib + 1);
        assert!(!budget.try_take_waiting(1), "over the whole");
        drop(held);
        budget.give_waiting(2 * mib - 1);
        assert!(budget.try_take_waiting(2 * mib));
        assert_eq!(Budget::new(mib).max_waiting, mib, "a small budget may all wait");
    }
}
