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

/// Polls `$cond` (an `Option<T>` expression, may `.await`) every 25 ms until it is `Some`, and
/// evaluates to the value; panics with `$what` (a `Display`) after `$timeout`.
#[macro_export]
macro_rules! eventually {
    ($timeout:expr, $what:expr, $cond:expr) => {{
        let started = std::time::Instant::now();
        let timeout: std::time::Duration = $timeout;
        loop {
            if let Some(v) = $cond {
                break v;
            }
            assert!(started.elapsed() < timeout, "timed out after {:?} waiting for {}", timeout, $what);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }};
}
