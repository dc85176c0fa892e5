//! Which traces are recorded and exported: the head sampler of the process's root spans.
//!
//! A trace that starts here is recorded when its trace id falls in `trace_sample_ratio` (the
//! OpenTelemetry ratio rule, so every process of a trace decides alike) and the process has
//! not yet started `max_traces_per_second` recorded traces in the current second (a GCRA
//! budget, the `governor` crate: at most that many a second on average, with bursts of up to
//! a second's worth). Below the budget every trace is kept: a developer's machine and a
//! clinic's ordinary traffic are traced whole. Past it, at saturation, the cost of tracing
//! stays fixed instead of growing with the load (BENCHMARKS.md measures both). Spans with a
//! parent follow the parent's decision (the sampler is the root of a `ParentBased` one), so a
//! caller's sampled `traceparent` is always recorded and a job's spans follow the request
//! that queued it.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use opentelemetry::trace::{Link, SpanKind, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

/// The root sampler: the ratio, then the per-second budget (on the clock `C`: the system's,
/// or a fake one in tests).
#[derive(Debug, Clone)]
pub(crate) struct TraceBudget<C: Clock = DefaultClock> {
    ratio: Sampler,
    /// `None`: no budget (`max_traces_per_second = 0`).
    budget: Option<Arc<Budget<C>>>,
}

type Budget<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

impl TraceBudget {
    /// `ratio` of the traces, at most `per_second` a second (0: no limit).
    pub(crate) fn new(ratio: f64, per_second: u32) -> Self {
        Self::with_clock(ratio, per_second, DefaultClock::default())
    }
}

impl<C: Clock> TraceBudget<C> {
    fn with_clock(ratio: f64, per_second: u32, clock: C) -> Self {
        Self {
            ratio: Sampler::TraceIdRatioBased(ratio),
            budget: NonZeroU32::new(per_second)
                .map(|n| Arc::new(RateLimiter::direct_with_clock(Quota::per_second(n), clock))),
        }
    }
}

impl<C> ShouldSample for TraceBudget<C>
where
    C: Clock + std::fmt::Debug + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let mut result =
            self.ratio
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links);
        // Only a trace the ratio keeps takes from the budget.
        if result.decision == SamplingDecision::RecordAndSample
            && self
                .budget
                .as_ref()
                .is_some_and(|budget| budget.check().is_err())
        {
            result.decision = SamplingDecision::Drop;
            result.attributes.clear();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    fn recorded<C>(sampler: &TraceBudget<C>, traces: u128) -> usize
    where
        C: Clock + std::fmt::Debug + Clone + Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        (1..=traces)
            .filter(|&n| {
                let id = TraceId::from(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                sampler
                    .should_sample(None, id, "GET", &SpanKind::Server, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample
            })
            .count()
    }

    #[test]
    fn below_the_budget_the_ratio_decides_alone() {
        assert_eq!(recorded(&TraceBudget::new(1.0, 0), 5000), 5000);
        assert_eq!(recorded(&TraceBudget::new(1.0, 1_000_000), 5000), 5000);
        assert_eq!(recorded(&TraceBudget::new(0.0, 1000), 100), 0);
        let tenth = recorded(&TraceBudget::new(0.1, 0), 10_000);
        assert!((800..1200).contains(&tenth), "{tenth} of 10,000 at 0.1");
    }

    #[test]
    fn past_the_budget_traces_are_dropped_until_it_refills() {
        let clock = FakeRelativeClock::default();
        let sampler = TraceBudget::with_clock(1.0, 1000, clock.clone());
        // A second's worth at once (the burst), then nothing while time stands still.
        assert_eq!(recorded(&sampler, 5000), 1000);
        assert_eq!(recorded(&sampler, 5000), 0);
        clock.advance(Duration::from_millis(200));
        assert_eq!(recorded(&sampler, 5000), 200);
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            recorded(&sampler, 5000),
            1000,
            "the burst never exceeds a second's worth"
        );
    }

    #[test]
    fn the_budget_counts_only_what_the_ratio_kept() {
        let clock = FakeRelativeClock::default();
        let sampler = TraceBudget::with_clock(0.1, 100, clock.clone());
        // About 1,000 of these 10,000 pass the ratio; the budget takes 100 of them.
        assert_eq!(recorded(&sampler, 10_000), 100);
        clock.advance(Duration::from_millis(500));
        assert_eq!(recorded(&sampler, 10_000), 50);
    }

    #[test]
    fn a_sampled_parent_is_followed_whatever_the_budget() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState};
        let sampler = Sampler::ParentBased(Box::new(TraceBudget::new(1.0, 1)));
        let parent = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        for _ in 0..100 {
            let result = sampler.should_sample(
                Some(&parent),
                TraceId::from(7),
                "GET",
                &SpanKind::Server,
                &[],
                &[],
            );
            assert_eq!(result.decision, SamplingDecision::RecordAndSample);
        }
    }
}
