//! How failed deliveries wait before they try again, shared by the outlets (Firehose, the
//! Conversions API): exponential backoff under a ceiling, with jitter so that many batches failing
//! together do not come back in lockstep.

use std::time::Duration;

/// How a failed request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Longest wait for one answer.
    pub attempt_timeout: Duration,
    /// Ceiling of the first wait; it doubles with each further retry.
    pub backoff_initial: Duration,
    /// Largest ceiling.
    pub backoff_max: Duration,
    /// How long, from its first attempt, a batch is retried before it is given up (or spooled).
    pub budget: Duration,
}

impl RetryPolicy {
    /// The ceiling of the wait before retry number `retry` (0 for the first).
    fn ceiling(&self, retry: u32) -> Duration {
        self.backoff_initial.saturating_mul(1u32 << retry.min(20)).min(self.backoff_max)
    }

    /// "Full jitter": uniformly random below the ceiling, which spreads many throttled callers
    /// out the most (the Conversions API, where rate limits are per pixel and per app).
    pub fn backoff(&self, retry: u32) -> Duration {
        self.ceiling(retry).mul_f64(rand::random::<f64>())
    }

    /// "Equal jitter": half the ceiling fixed, half random, so a retry never comes at once
    /// (Firehose, where a partial failure usually means throttling of the whole stream).
    pub fn backoff_at_least_half(&self, retry: u32) -> Duration {
        let half = self.ceiling(retry) / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { attempt_timeout: Duration::from_secs(1), backoff_initial: Duration::from_millis(100), backoff_max: Duration::from_secs(1), budget: Duration::from_secs(10) }
    }

    #[test]
    fn backoff_is_full_jitter_below_a_doubling_capped_ceiling() {
        let p = policy();
        for (retry, ceiling) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (40, 1000)] {
            let waits: Vec<u128> = (0..200).map(|_| p.backoff(retry).as_millis()).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "retry {retry}: {waits:?}");
            assert!(waits.iter().any(|w| *w < ceiling / 2), "full jitter reaches the lower half");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let p = policy();
        for (retry, ceiling) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (30, 1000)] {
            for _ in 0..50 {
                let d = p.backoff_at_least_half(retry).as_millis() as u64;
                assert!(d >= ceiling / 2 && d <= ceiling, "retry {retry}: {d} ms");
            }
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.backoff_at_least_half(3)).collect();
        assert!(spread.len() > 1, "jitter varies the wait");
    }
}
