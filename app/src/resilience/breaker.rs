//! A consecutive-failures circuit breaker with explicit states.
//!
//! ```text
//!            failures >= threshold                 open_for elapsed
//!   Closed ----------------------------> Open ----------------------> HalfOpen
//!     ^                                   ^                             |  one probe at a time
//!     |          probe succeeds           |        probe fails          |
//!     +-----------------------------------+-----------------------------+
//! ```
//! Closed: calls go through; a success resets the failure count. Open: calls are refused at
//! once with the time left. HalfOpen: one call (the probe) goes through, the others are
//! refused; its outcome closes or re-opens the breaker. Only failures that mean "the
//! dependency is unavailable" (timeouts, connection errors) count; a dependency that answers
//! "not found" is healthy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused.
    Open,
    /// One probe call goes through.
    HalfOpen,
}

impl BreakerState {
    /// `fertivision.breaker.state`'s value: 0 closed, 1 half-open, 2 open.
    pub fn level(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }

    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Off: the breaker never opens (for comparison runs).
    pub enabled: bool,
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; retry in {retry_after:?}")]
pub struct BreakerOpen {
    /// Time until the next probe is allowed.
    pub retry_after: Duration,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
    probe_in_flight: bool,
}

/// A breaker for one dependency.
#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    config: BreakerConfig,
    inner: Mutex<Inner>,
    transitions: AtomicU64,
}

/// Permission to make one call; report its outcome with [`Breaker::record`].
#[derive(Debug)]
#[must_use]
pub struct Admission {
    probe: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        Self {
            name,
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: Instant::now(),
                probe_in_flight: false,
            }),
            transitions: AtomicU64::new(0),
        }
    }

    /// The dependency's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The current state (an open breaker whose time is up reads as half-open).
    pub fn state(&self) -> BreakerState {
        let inner = self.inner.lock().expect("not poisoned");
        if inner.state == BreakerState::Open && inner.opened_at.elapsed() >= self.config.open_for {
            BreakerState::HalfOpen
        } else {
            inner.state
        }
    }

    /// State changes so far.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// Asks to make a call.
    pub fn admit(&self) -> Result<Admission, BreakerOpen> {
        let mut inner = self.inner.lock().expect("not poisoned");
        match inner.state {
            BreakerState::Closed => Ok(Admission { probe: false }),
            BreakerState::Open => {
                let elapsed = inner.opened_at.elapsed();
                if elapsed < self.config.open_for {
                    return Err(BreakerOpen {
                        retry_after: self.config.open_for - elapsed,
                    });
                }
                self.transition(&mut inner, BreakerState::HalfOpen);
                inner.probe_in_flight = true;
                Ok(Admission { probe: true })
            }
            BreakerState::HalfOpen if inner.probe_in_flight => Err(BreakerOpen {
                retry_after: Duration::from_millis(100),
            }),
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                Ok(Admission { probe: true })
            }
        }
    }

    /// Reports the outcome of an admitted call: `healthy` is false only when the dependency
    /// was unavailable.
    pub fn record(&self, admission: Admission, healthy: bool) {
        let mut inner = self.inner.lock().expect("not poisoned");
        if admission.probe {
            inner.probe_in_flight = false;
        }
        if healthy {
            inner.consecutive_failures = 0;
            if inner.state != BreakerState::Closed
                && (admission.probe || inner.state == BreakerState::HalfOpen)
            {
                self.transition(&mut inner, BreakerState::Closed);
            }
            return;
        }
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let trip = admission.probe
            || (inner.state == BreakerState::Closed
                && inner.consecutive_failures >= self.config.failure_threshold);
        if trip && self.config.enabled {
            inner.opened_at = Instant::now();
            self.transition(&mut inner, BreakerState::Open);
        }
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        if inner.state == to {
            return;
        }
        tracing::warn!(
            dependency = self.name,
            from = inner.state.as_str(),
            to = to.as_str(),
            "circuit breaker state change"
        );
        inner.state = to;
        self.transitions.fetch_add(1, Ordering::Relaxed);
        let metrics = crate::otel::metrics();
        metrics
            .breaker_transitions
            .add(1.0, &[self.name, to.as_str()]);
        metrics.breaker_state.set(to.level(), &[self.name]);
    }

    /// Runs `call` under the breaker with a timeout. `healthy` tells whether an error means
    /// the dependency answered (true) or was unavailable (false); a timeout is unavailable.
    pub async fn call<T, E>(
        &self,
        timeout: Duration,
        call: impl Future<Output = Result<T, E>>,
        healthy: impl Fn(&E) -> bool,
    ) -> Result<T, Guarded<E>> {
        let admission = self.admit().map_err(Guarded::Open)?;
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => {
                self.record(admission, true);
                Ok(value)
            }
            Ok(Err(error)) => {
                self.record(admission, healthy(&error));
                Err(Guarded::Failed(error))
            }
            Err(_) => {
                self.record(admission, false);
                Err(Guarded::TimedOut(timeout))
            }
        }
    }
}

/// The error of a guarded call.
#[derive(Debug, thiserror::Error)]
pub enum Guarded<E> {
    /// Refused: the breaker is open.
    #[error("{0}")]
    Open(BreakerOpen),
    /// The call did not finish in time.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// The call failed.
    #[error("{0}")]
    Failed(E),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            "db",
            BreakerConfig {
                enabled: true,
                failure_threshold: 3,
                open_for: Duration::from_secs(10),
            },
        )
    }

    fn fail(b: &Breaker) {
        let a = b.admit().unwrap();
        b.record(a, false);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_refuses_until_the_probe() {
        let b = breaker();
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        let refused = b.admit().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(10));

        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.admit().unwrap_err().retry_after, Duration::from_secs(6));

        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit().expect("one probe");
        assert!(b.admit().is_err(), "only one probe at a time");
        b.record(probe, true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.transitions(), 3, "closed->open->half_open->closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_a_full_period() {
        let b = breaker();
        (0..3).for_each(|_| fail(&b));
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.admit().unwrap();
        b.record(probe, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit().unwrap_err().retry_after, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn successes_reset_the_count_and_answers_are_healthy() {
        let b = breaker();
        fail(&b);
        fail(&b);
        let a = b.admit().unwrap();
        b.record(a, true);
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed, "not three in a row");
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_count_as_failures() {
        let b = breaker();
        for _ in 0..3 {
            let r: Result<(), Guarded<()>> = b
                .call(
                    Duration::from_millis(50),
                    std::future::pending::<Result<(), ()>>(),
                    |_| true,
                )
                .await;
            assert!(matches!(r, Err(Guarded::TimedOut(_))));
        }
        let r: Result<(), Guarded<()>> = b
            .call(Duration::from_millis(50), async { Ok(()) }, |_| true)
            .await;
        assert!(matches!(r, Err(Guarded::Open(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_breaker_never_opens() {
        let b = Breaker::new(
            "db",
            BreakerConfig {
                enabled: false,
                failure_threshold: 1,
                open_for: Duration::from_secs(1),
            },
        );
        (0..10).for_each(|_| fail(&b));
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
