//! The one batcher every outlet that batches uses: items gather until a batch is full by count or
//! by bytes, or until its oldest item has waited long enough.
//!
//! It is a plain data structure with no clock or task of its own: the outlet's consumer pushes
//! items, sends whatever [`Batcher::push`] hands back, and arms one timer on
//! [`Batcher::deadline`]. The Firehose sink batches records per `PutRecordBatch`; the Conversions
//! API forwarder batches events per pixel (one `Batcher` per pixel) the same way.

use std::time::{Duration, Instant};

/// When a batch is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most items in one batch (at least 1).
    pub max_items: usize,
    /// Most bytes in one batch; an item larger than this on its own travels alone.
    pub max_bytes: usize,
    /// Longest time the first item of a batch waits for the batch to fill.
    pub max_age: Duration,
}

/// A completed batch, in push order.
#[derive(Debug)]
pub struct Batch<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Sum of the sizes given with the items.
    pub bytes: usize,
}

/// Gathers items into batches within [`BatchLimits`].
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    items: Vec<T>,
    bytes: usize,
    /// When the first item of the open batch arrived; `None` while it is empty.
    opened: Option<Instant>,
}

impl<T> Batcher<T> {
    /// An empty batcher.
    pub fn new(limits: BatchLimits) -> Self {
        let limits = BatchLimits { max_items: limits.max_items.max(1), ..limits };
        Batcher { limits, items: Vec::new(), bytes: 0, opened: None }
    }

    /// Adds `item` of `size` bytes. Returns a batch when one is complete: the open batch if the
    /// item does not fit in it (the item then opens the next one), else the batch the item
    /// filled. At most one batch completes per push, so an item that on its own exceeds
    /// `max_bytes` right after an overflow leaves with the next push or at its age.
    pub fn push(&mut self, item: T, size: usize) -> Option<Batch<T>> {
        let overflow = if self.bytes + size > self.limits.max_bytes { self.take() } else { None };
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        self.items.push(item);
        self.bytes += size;
        if overflow.is_some() {
            return overflow;
        }
        if self.items.len() >= self.limits.max_items || self.bytes >= self.limits.max_bytes { self.take() } else { None }
    }

    /// The open batch, if it has reached its age limit at `now`.
    pub fn take_if_due(&mut self, now: Instant) -> Option<Batch<T>> {
        if self.deadline().is_some_and(|d| d <= now) { self.take() } else { None }
    }

    /// The open batch, whatever its size or age (`None` when empty).
    pub fn take(&mut self) -> Option<Batch<T>> {
        self.opened.take()?;
        let bytes = std::mem::take(&mut self.bytes);
        Some(Batch { items: std::mem::take(&mut self.items), bytes })
    }

    /// When the open batch must be sent at the latest; `None` while it is empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.limits.max_age)
    }

    /// Items in the open batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the open batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_items: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits { max_items, max_bytes, max_age: Duration::from_secs(1) }
    }

    fn sizes(b: &Batch<usize>) -> Vec<usize> {
        b.items.clone()
    }

    #[test]
    fn a_batch_completes_at_its_count() {
        let mut b = Batcher::new(limits(3, 1000));
        assert!(b.push(1, 1).is_none());
        assert!(b.push(2, 1).is_none());
        let full = b.push(3, 1).expect("third item fills the batch");
        assert_eq!((sizes(&full), full.bytes), (vec![1, 2, 3], 3));
        assert!(b.is_empty() && b.deadline().is_none());
    }

    #[test]
    fn an_item_that_does_not_fit_opens_the_next_batch() {
        let mut b = Batcher::new(limits(10, 100));
        assert!(b.push(60, 60).is_none());
        let full = b.push(50, 50).expect("60 + 50 > 100");
        assert_eq!(sizes(&full), vec![60]);
        assert_eq!(b.len(), 1);
        let full = b.push(50, 50).expect("50 + 50 reaches the byte limit");
        assert_eq!((sizes(&full), full.bytes), (vec![50, 50], 100));
    }

    #[test]
    fn an_item_over_the_byte_limit_travels_alone() {
        let mut b = Batcher::new(limits(10, 100));
        assert!(b.push(1, 1).is_none());
        assert_eq!(sizes(&b.push(500, 500).unwrap()), vec![1]);
        assert_eq!(sizes(&b.take().unwrap()), vec![500]);
        let mut b = Batcher::new(limits(10, 100));
        assert_eq!(sizes(&b.push(500, 500).unwrap()), vec![500]);
    }

    #[test]
    fn a_batch_of_one_is_sent_at_once() {
        let mut b = Batcher::new(limits(1, 100));
        assert_eq!(sizes(&b.push(7, 7).unwrap()), vec![7]);
        assert_eq!(sizes(&b.push(8, 8).unwrap()), vec![8]);
        assert!(b.take().is_none());
    }

    #[test]
    fn age_counts_from_the_first_item() {
        let mut b = Batcher::new(BatchLimits { max_items: 10, max_bytes: 100, max_age: Duration::from_millis(50) });
        let before = Instant::now();
        b.push(1, 1);
        let deadline = b.deadline().unwrap();
        assert!(deadline >= before + Duration::from_millis(50));
        b.push(2, 1);
        assert_eq!(b.deadline(), Some(deadline), "later items do not extend the wait");
        assert!(b.take_if_due(deadline - Duration::from_millis(1)).is_none());
        assert_eq!(sizes(&b.take_if_due(deadline).unwrap()), vec![1, 2]);
        assert!(b.take_if_due(deadline + Duration::from_secs(5)).is_none());
    }
}
