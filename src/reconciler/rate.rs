//! A token bucket that bounds how fast the reconciler publishes Events, so that no rollout or outage becomes an Event storm.

use std::time::{Duration, Instant};

/// Allows `rate` publications per second on average and `burst` at once; what is refused waits
/// for a later pass. Kept as the time at which the bucket would be full again (the generic cell
/// rate form of a token bucket), in whole nanoseconds, so that no rounding drifts. The clock is
/// passed in, so the bucket is tested without sleeping.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Time one token takes to come back.
    interval: Duration,
    /// How far ahead of now the bucket may be committed: `burst - 1` intervals.
    tolerance: Duration,
    /// When every token taken so far will have come back.
    full_at: Instant,
}

/// Slowest rate: one per this many seconds.
const SLOWEST: f64 = 1000.0;

impl TokenBucket {
    /// A full bucket at `now`. A rate below one per 1000 s (or not a number) is taken as that,
    /// and a burst below 1 as 1, so that something always gets through.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let rate = if rate.is_finite() && rate > 1.0 / SLOWEST {
            rate
        } else {
            1.0 / SLOWEST
        };
        let interval = Duration::from_secs_f64(1.0 / rate);
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            full_at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let full_at = self.full_at.max(now);
        if full_at.saturating_duration_since(now) <= self.tolerance {
            self.full_at = full_at + self.interval;
            true
        } else {
            false
        }
    }

    /// How long until a token is there.
    pub fn wait(&self, now: Instant) -> Duration {
        self.full_at
            .max(now)
            .saturating_duration_since(now)
            .saturating_sub(self.tolerance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        let taken = (0..20).filter(|_| b.try_take(t0)).count();
        assert_eq!(taken, 5, "the burst, at once");
        assert!(!b.try_take(t0));
        assert_eq!(b.wait(t0), Duration::from_millis(100));
        // A tenth of a second later, one more; a second later, ten more, not fifteen.
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        let t1 = t0 + Duration::from_millis(1100);
        let taken = (0..20).filter(|_| b.try_take(t1)).count();
        assert_eq!(taken, 5, "refilled up to the burst only");
    }

    #[test]
    fn ten_per_second_over_a_minute_is_six_hundred_and_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20, t0);
        let mut taken = 0;
        for ms in (0..=60_000).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            while b.try_take(now) {
                taken += 1;
            }
        }
        assert_eq!(taken, 620);
    }

    #[test]
    fn a_clock_that_goes_back_takes_nothing_it_did_not_give() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0.checked_sub(Duration::from_secs(5)).unwrap()));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_rate_of_nothing_is_the_slowest_rate_and_the_burst_at_least_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 0, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(999)));
        assert_eq!(b.wait(t0), Duration::from_secs(1000));
        assert!(b.try_take(t0 + Duration::from_secs(1000)));
    }
}
