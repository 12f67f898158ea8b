//! How many requests may be in flight to a destination: a congestion window, not a fixed number
//! (`docs/forwarding.md#under-load`).
//!
//! The window grows by one after a window's worth of answers that came back healthy (additive
//! increase), and halves, at most once per round trip, when an answer says the destination is
//! overloaded: a timeout, throttling, a 5xx, a refused connection, or an answer that took more
//! than [`SLOW_FACTOR`] times the recent round trip (multiplicative decrease). A destination that
//! slows down is sent fewer requests at once, so what it is sent meanwhile waits in the batches
//! (and, past the byte budget, is shed) rather than piling up in its queue; one that speeds up is
//! sent more. It never goes below one or above `--capi-max-in-flight`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics as m;

/// Where the window starts (below the maximum: it earns the rest).
const INITIAL: usize = 4;

/// An answer this many times slower than the recent round trip counts as overload.
pub const SLOW_FACTOR: f64 = 3.0;

/// Weight of the newest round trip in the running average.
const EWMA_WEIGHT: f64 = 0.2;

/// What an answer says about the destination's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// It answered (the answer may still refuse the events).
    Answered,
    /// It is overloaded or away: back off.
    Overloaded,
}

/// The window and the requests in it.
#[derive(Debug)]
pub struct Window {
    state: Mutex<State>,
    /// Woken when a request leaves the window or the window grows.
    room: Notify,
    max: usize,
    limit_gauge: metrics::Gauge,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    /// Healthy answers since the window last grew.
    healthy: usize,
    /// Running average round trip, seconds.
    rtt: Option<f64>,
    /// When the window last halved: it halves at most once per round trip.
    last_decrease: Option<Instant>,
}

/// A place in the window, given back on drop.
#[derive(Debug)]
pub struct Permit {
    window: Arc<Window>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.window.state.lock().unwrap_or_else(|e| e.into_inner()).in_flight -= 1;
        self.window.room.notify_one();
    }
}

impl Window {
    /// A window of at most `max` requests (at least one), for `destination`'s metric.
    pub fn new(max: usize, destination: &'static str) -> Arc<Window> {
        let max = max.max(1);
        let limit = INITIAL.min(max);
        let limit_gauge = metrics::gauge!(m::CAPI_CONCURRENCY_LIMIT, "destination" => destination);
        limit_gauge.set(limit as f64);
        Arc::new(Window { state: Mutex::new(State { limit, in_flight: 0, healthy: 0, rtt: None, last_decrease: None }), room: Notify::new(), max, limit_gauge })
    }

    /// Waits for a place in the window.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.room.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.in_flight < state.limit {
                    state.in_flight += 1;
                    return Permit { window: self.clone() };
                }
            }
            notified.await;
        }
    }

    /// A place in the window if there is one now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.in_flight < state.limit).then(|| {
            state.in_flight += 1;
            Permit { window: self.clone() }
        })
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).limit
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).in_flight
    }

    /// One answer (or its absence), `rtt` after the request left.
    pub fn observe(&self, signal: Signal, rtt: Duration) {
        let now = Instant::now();
        let rtt = rtt.as_secs_f64();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let slow = state.rtt.is_some_and(|avg| rtt > SLOW_FACTOR * avg);
        let before = state.limit;
        if signal == Signal::Overloaded || slow {
            let round_trip = Duration::from_secs_f64(state.rtt.unwrap_or(rtt));
            if state.last_decrease.is_none_or(|at| now.duration_since(at) >= round_trip) {
                state.limit = (state.limit / 2).max(1);
                state.last_decrease = Some(now);
                state.healthy = 0;
            }
        } else {
            state.healthy += 1;
            if state.healthy >= state.limit {
                state.limit = (state.limit + 1).min(self.max);
                state.healthy = 0;
            }
        }
        if signal == Signal::Answered {
            state.rtt = Some(state.rtt.map_or(rtt, |avg| avg + EWMA_WEIGHT * (rtt - avg)));
        }
        let (limit, grew) = (state.limit, state.limit > before);
        drop(state);
        if limit != before {
            self.limit_gauge.set(limit as f64);
        }
        if grew {
            self.room.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_by_one_per_window_of_healthy_answers_up_to_the_maximum() {
        let w = Window::new(8, "test");
        assert_eq!(w.limit(), 4);
        for _ in 0..4 {
            w.observe(Signal::Answered, 10 * MS);
        }
        assert_eq!(w.limit(), 5);
        for _ in 0..100 {
            w.observe(Signal::Answered, 10 * MS);
        }
        assert_eq!(w.limit(), 8, "never above the maximum");
    }

    #[test]
    fn halves_once_per_round_trip_on_overload_or_a_slow_answer() {
        let w = Window::new(32, "test");
        for _ in 0..1000 {
            w.observe(Signal::Answered, 10 * MS);
        }
        assert_eq!(w.limit(), 32);
        w.observe(Signal::Overloaded, 10 * MS);
        assert_eq!(w.limit(), 16);
        w.observe(Signal::Overloaded, 10 * MS);
        assert_eq!(w.limit(), 16, "not twice within one round trip");
        std::thread::sleep(15 * MS);
        w.observe(Signal::Answered, 100 * MS);
        assert_eq!(w.limit(), 8, "an answer over three times the usual round trip");
        for _ in 0..10 {
            std::thread::sleep(60 * MS);
            w.observe(Signal::Overloaded, 10 * MS);
        }
        assert_eq!(w.limit(), 1, "never below one");
    }

    #[tokio::test]
    async fn a_full_window_waits_for_a_place() {
        let w = Window::new(1, "test");
        let first = w.acquire().await;
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.acquire().await }
        });
        tokio::time::sleep(20 * MS).await;
        assert!(!waiting.is_finished(), "the window is full");
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("a place freed").unwrap();
        assert_eq!(w.in_flight(), 1);
    }
}
