//! A byte budget: how much memory what waits for an outlet may take. The raw-record outlets
//! and the hit outlets each have their own, so that forwarding, when its destination is slow or
//! down, runs out of room (and sheds) before the raw records do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes taken and the most that may be.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    /// The most taken at once so far.
    peak: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget { used: AtomicUsize::new(0), peak: AtomicUsize::new(0), max })
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
}
