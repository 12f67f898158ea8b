//! Latency figures for assertions and messages.

use std::time::Duration;

/// The `q`-quantile (0..=1) of `samples`, which it sorts in place.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// `d` in milliseconds, for messages: `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
