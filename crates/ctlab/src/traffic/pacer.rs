//! Pacing: how many sends are due at a given elapsed time for a target
//! rate. Pure (the clock is passed in), so the catch-up and burst bounds are
//! unit-tested with a fake clock.

use std::time::Duration;

/// Paces sends at `rate` per second from elapsed time zero. When the caller
/// falls behind, [`Pacer::due`] lets it catch up at most `max_burst` sends
/// per call; a deficit larger than `max_lag` is forgiven (counted in
/// [`Pacer::skipped`]) so a stall never turns into a long burst.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    max_burst: u64,
    max_lag: u64,
    /// Sends handed out so far, plus the forgiven ones: the schedule slot
    /// the next send belongs to.
    slot: u64,
    skipped: u64,
}

impl Pacer {
    /// `rate` must be finite and > 0; `max_burst` and `max_lag` at least 1.
    pub fn new(rate: f64, max_burst: u64, max_lag: u64) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) || max_burst == 0 || max_lag == 0 {
            return None;
        }
        Some(Self {
            rate,
            max_burst,
            max_lag: max_lag.max(max_burst),
            slot: 0,
            skipped: 0,
        })
    }

    /// Defaults: bursts of at most 1/100 s worth of sends (at least 1),
    /// forgiving a deficit beyond 1/4 s worth (at least 4x the burst).
    pub fn with_rate(rate: f64) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let burst = ((rate / 100.0).ceil() as u64).max(1);
        let lag = ((rate / 4.0).ceil() as u64).max(burst.saturating_mul(4));
        Self::new(rate, burst, lag)
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Sends the schedule asks for by `now` (the first is due at 0).
    fn target(&self, now: Duration) -> u64 {
        (now.as_secs_f64() * self.rate).floor() as u64 + 1
    }

    /// How many sends to make now; they count as made.
    pub fn due(&mut self, now: Duration) -> u64 {
        let target = self.target(now);
        let mut behind = target.saturating_sub(self.slot);
        if behind > self.max_lag {
            let forgiven = behind - self.max_lag;
            self.skipped += forgiven;
            self.slot += forgiven;
            behind = self.max_lag;
        }
        let n = behind.min(self.max_burst);
        self.slot += n;
        n
    }

    /// How long from `now` until the next send is due (zero when one is).
    pub fn wait(&self, now: Duration) -> Duration {
        let next = self.slot as f64 / self.rate;
        let wait = next - now.as_secs_f64();
        if wait <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(wait)
        }
    }

    /// Sends forgiven because the caller fell more than `max_lag` behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rejects_bad_rates() {
        assert!(Pacer::with_rate(0.0).is_none());
        assert!(Pacer::with_rate(-1.0).is_none());
        assert!(Pacer::with_rate(f64::NAN).is_none());
        assert!(Pacer::with_rate(f64::INFINITY).is_none());
        assert!(Pacer::new(10.0, 0, 5).is_none());
    }

    #[test]
    fn steady_clock_gives_exact_rate() {
        let mut p = Pacer::with_rate(1000.0).expect("valid");
        let mut sent = 0;
        // A fake clock ticking every 1 ms for 10 s.
        for t in 0..10_000 {
            sent += p.due(ms(t));
        }
        // Slots 0..=9999 ms at 1/ms: 10,000 sends, never more than one at a time.
        assert_eq!(sent, 10_000);
        assert_eq!(p.skipped(), 0);
    }

    #[test]
    fn coarse_clock_catches_up_in_bounded_bursts() {
        // 1000/s, burst bound 10: a caller waking every 50 ms is 50 behind
        // and gets at most 10 per call, the rest on the following calls.
        let mut p = Pacer::new(1000.0, 10, 1000).expect("valid");
        let mut total = 0;
        let mut t = 0;
        while t <= 1000 {
            for _ in 0..10 {
                let n = p.due(ms(t));
                assert!(n <= 10, "burst {n} beyond the bound");
                total += n;
            }
            t += 50;
        }
        // Every slot up to 1000 ms is served: catch-up, no loss.
        assert_eq!(total, 1001);
        assert_eq!(p.skipped(), 0);
    }

    #[test]
    fn a_long_stall_is_forgiven_not_burst() {
        let mut p = Pacer::new(1000.0, 10, 100).expect("valid");
        assert_eq!(p.due(ms(0)), 1);
        // Stalled for 5 s: 5000 behind, only 100 may be caught up.
        let mut caught = 0;
        loop {
            let n = p.due(ms(5000));
            if n == 0 {
                break;
            }
            assert!(n <= 10);
            caught += n;
        }
        assert_eq!(caught, 100);
        assert_eq!(p.skipped(), 4900);
        // Back on schedule afterwards: one per ms.
        assert_eq!(p.due(ms(5001)), 1);
    }

    #[test]
    fn wait_points_at_the_next_slot() {
        let mut p = Pacer::with_rate(10.0).expect("valid");
        assert_eq!(p.wait(ms(0)), Duration::ZERO);
        assert_eq!(p.due(ms(0)), 1);
        let w = p.wait(ms(30));
        assert!((w.as_secs_f64() - 0.07).abs() < 1e-9, "{w:?}");
        assert_eq!(p.due(ms(99)), 0);
        assert_eq!(p.due(ms(100)), 1);
    }

    #[test]
    fn fractional_rates() {
        let mut p = Pacer::with_rate(0.5).expect("valid");
        let sent: u64 = (0..=10).map(|s| p.due(Duration::from_secs(s))).sum();
        // Slots at 0, 2, 4, 6, 8, 10 s.
        assert_eq!(sent, 6);
    }
}
