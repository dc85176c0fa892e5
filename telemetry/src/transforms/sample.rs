//! `sample`: tail-based sampling of traces. Spans are held per trace until the trace is
//! decided, then the whole trace is kept or dropped:
//!
//! - **kept** if any span has an error status or lasted longer than `slow_ms`;
//! - otherwise kept with probability `keep_ratio`, decided by a hash of the trace id
//!   ([`keeps_by_ratio`]), so every collector instance (and every sink's copy of this
//!   transform) keeps the same traces without talking to each other.
//!
//! **When a trace is decided.** Once its root span (no parent) has arrived and no new span
//! came for `quiet_ms` ("complete": the root span ends last in a synchronous request, and the
//! quiet period lets the last children that were still in flight arrive); or `decision_wait_ms`
//! after its first span, complete or not ("timeout": a root lost, or a long asynchronous
//! tail); or early, when more than `max_traces` traces are held (the oldest first) or one trace
//! holds more than [`MAX_SPANS_PER_TRACE`] spans ("forced"). Memory is thus bounded.
//!
//! **Late spans** of a decided trace (a worker span arriving after the API's trace was
//! decided) follow the decision: passed on at once if it was kept, dropped otherwise. The last
//! `2 × max_traces` decisions are remembered; a span of a trace decided longer ago starts a new
//! trace, which the hash rule decides the same way unless an error or a slow span made the
//! difference.
//!
//! Time is what the caller passes as `now`, never read from the clock: decisions happen in
//! [`Transform::apply`] and [`Transform::flush_due`], which the pipeline calls periodically.
//! Other signals pass through unchanged. Kept spans leave as `Traces` batches with their
//! resource and instrumentation scope.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::Transform;
use crate::batch::Batch;
use crate::config::SampleConfig;

/// A trace holding more spans than this is decided at once (forced).
pub const MAX_SPANS_PER_TRACE: usize = 10_000;

/// A W3C trace id.
type TraceId = [u8; 16];

/// What the sampler did, since it was built. Shared: read it while the transform runs.
#[derive(Debug, Default)]
pub struct SampleCounters {
    /// Traces kept (errors, slow spans and the ratio's share).
    pub traces_kept: AtomicU64,
    /// Traces dropped.
    pub traces_dropped: AtomicU64,
    /// Traces decided complete: root arrived, then a quiet period.
    pub decided_complete: AtomicU64,
    /// Traces decided `decision_wait_ms` after their first span, before completing.
    pub decided_by_timeout: AtomicU64,
    /// Traces decided early to stay within `max_traces` or [`MAX_SPANS_PER_TRACE`].
    pub forced_early: AtomicU64,
    /// Spans passed on (including late ones and spans without a trace id).
    pub spans_kept: AtomicU64,
    /// Spans dropped (including late ones).
    pub spans_dropped: AtomicU64,
    /// Spans that arrived after their trace was decided.
    pub late_spans: AtomicU64,
}

impl SampleCounters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Whether the ratio rule keeps this trace: a fixed 64-bit hash of the id (FNV-1a, then the
/// SplitMix64 finalizer, so ids that are not random still spread evenly) mapped to `[0, 1)`
/// and compared with `keep_ratio`. Stable across processes, machines and versions.
pub fn keeps_by_ratio(trace_id: &[u8; 16], keep_ratio: f64) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in trace_id {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    let unit = (hash >> 11) as f64 / (1u64 << 53) as f64;
    unit < keep_ratio
}

/// A resource as received, shared by the spans that came with it.
#[derive(Debug)]
struct ResourceOrigin {
    resource: Option<Resource>,
    schema_url: String,
}

/// An instrumentation scope as received, shared by the spans that came with it.
#[derive(Debug)]
struct ScopeOrigin {
    scope: Option<InstrumentationScope>,
    schema_url: String,
}

/// Spans of one trace that came with the same resource and scope.
#[derive(Debug)]
struct Fragment {
    resource: Arc<ResourceOrigin>,
    scope: Arc<ScopeOrigin>,
    spans: Vec<Span>,
}

/// A trace not decided yet.
#[derive(Debug)]
struct PendingTrace {
    first_seen: Instant,
    /// Set once the root span arrived: the key of its entry in the quiet queue (the time of
    /// its latest span).
    quiet_since: Option<Instant>,
    /// An error or a slow span: kept whatever the ratio.
    keep_anyway: bool,
    spans: usize,
    fragments: Vec<Fragment>,
}

/// Why a trace was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Complete,
    Timeout,
    Forced,
    /// [`TailSample::flush_all`], at shutdown.
    Flush,
}

/// Kept spans of one scope.
type ScopeGroup = (Arc<ScopeOrigin>, Vec<Span>);

/// Kept spans on their way out, grouped by resource, then scope.
#[derive(Default)]
struct Output {
    resources: Vec<(Arc<ResourceOrigin>, Vec<ScopeGroup>)>,
}

impl Output {
    fn push(
        &mut self,
        resource: &Arc<ResourceOrigin>,
        scope: &Arc<ScopeOrigin>,
        spans: impl IntoIterator<Item = Span>,
    ) {
        let scopes = match self
            .resources
            .iter_mut()
            .rev()
            .find(|(r, _)| Arc::ptr_eq(r, resource))
        {
            Some((_, scopes)) => scopes,
            None => {
                self.resources.push((Arc::clone(resource), Vec::new()));
                &mut self.resources.last_mut().expect("just pushed").1
            }
        };
        match scopes.iter_mut().rev().find(|(s, _)| Arc::ptr_eq(s, scope)) {
            Some((_, kept)) => kept.extend(spans),
            None => scopes.push((Arc::clone(scope), spans.into_iter().collect())),
        }
    }

    fn into_batches(self) -> Vec<Batch> {
        if self.resources.is_empty() {
            return Vec::new();
        }
        let resource_spans = self
            .resources
            .into_iter()
            .map(|(resource, scopes)| ResourceSpans {
                resource: resource.resource.clone(),
                schema_url: resource.schema_url.clone(),
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| ScopeSpans {
                        scope: scope.scope.clone(),
                        schema_url: scope.schema_url.clone(),
                        spans,
                    })
                    .collect(),
            })
            .collect();
        vec![Batch::Traces(ExportTraceServiceRequest { resource_spans })]
    }
}

/// The `sample` transform. See the module docs.
#[derive(Debug)]
pub struct TailSample {
    keep_ratio: f64,
    /// Spans longer than this are slow; `None`: the rule is off.
    slow_nanos: Option<u64>,
    decision_wait: Duration,
    quiet: Duration,
    max_traces: usize,
    pending: HashMap<TraceId, PendingTrace>,
    /// `(first_seen, id)` in arrival order; entries of decided traces are skipped lazily.
    by_age: VecDeque<(Instant, TraceId)>,
    /// `(time of latest span, id)` of pending traces whose root arrived.
    quiet_queue: BTreeSet<(Instant, TraceId)>,
    /// Recent decisions (true: kept), for late spans.
    decisions: HashMap<TraceId, bool>,
    decision_order: VecDeque<TraceId>,
    max_decisions: usize,
    counters: Arc<SampleCounters>,
}

impl TailSample {
    /// A sampler with these options (validated by [`crate::config`]).
    pub fn new(config: &SampleConfig) -> Self {
        debug_assert!(
            (0.0..=1.0).contains(&config.keep_ratio),
            "keep_ratio out of range"
        );
        let max_traces = config.max_traces.max(1);
        Self {
            keep_ratio: config.keep_ratio,
            slow_nanos: (config.slow_ms > 0).then(|| config.slow_ms.saturating_mul(1_000_000)),
            decision_wait: Duration::from_millis(config.decision_wait_ms),
            quiet: Duration::from_millis(config.quiet_ms),
            max_traces,
            pending: HashMap::new(),
            by_age: VecDeque::new(),
            quiet_queue: BTreeSet::new(),
            decisions: HashMap::new(),
            decision_order: VecDeque::new(),
            max_decisions: max_traces.saturating_mul(2),
            counters: Arc::default(),
        }
    }

    /// The counters, shared with the transform.
    pub fn counters(&self) -> Arc<SampleCounters> {
        Arc::clone(&self.counters)
    }

    /// Traces held, not decided yet.
    pub fn pending_traces(&self) -> usize {
        self.pending.len()
    }

    /// Decides every held trace now (at shutdown) and returns what is kept.
    pub fn flush_all(&mut self) -> Vec<Batch> {
        let mut out = Output::default();
        let ids: Vec<TraceId> = self.by_age.drain(..).map(|(_, id)| id).collect();
        for id in ids {
            self.decide(id, Reason::Flush, &mut out);
        }
        debug_assert!(self.pending.is_empty());
        out.into_batches()
    }

    fn is_slow(&self, span: &Span) -> bool {
        self.slow_nanos.is_some_and(|slow| {
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano)
                > slow
        })
    }

    /// Holds one span, or passes it on (no trace id, or its trace was kept), or drops it.
    fn accept(
        &mut self,
        span: Span,
        resource: &Arc<ResourceOrigin>,
        scope: &Arc<ScopeOrigin>,
        now: Instant,
        out: &mut Output,
        oversized: &mut Vec<TraceId>,
    ) {
        let Some(id) = trace_id(&span) else {
            // Nothing to group it by: not ours to drop.
            SampleCounters::add(&self.counters.spans_kept, 1);
            out.push(resource, scope, [span]);
            return;
        };
        if let Some(&kept) = self.decisions.get(&id) {
            SampleCounters::add(&self.counters.late_spans, 1);
            if kept {
                SampleCounters::add(&self.counters.spans_kept, 1);
                out.push(resource, scope, [span]);
            } else {
                SampleCounters::add(&self.counters.spans_dropped, 1);
            }
            return;
        }
        let keep_anyway = is_error(&span) || self.is_slow(&span);
        let is_root = span.parent_span_id.iter().all(|b| *b == 0);
        let trace = self.pending.entry(id).or_insert_with(|| {
            self.by_age.push_back((now, id));
            PendingTrace {
                first_seen: now,
                quiet_since: None,
                keep_anyway: false,
                spans: 0,
                fragments: Vec::new(),
            }
        });
        trace.keep_anyway |= keep_anyway;
        trace.spans += 1;
        match trace.fragments.last_mut() {
            Some(last)
                if Arc::ptr_eq(&last.resource, resource) && Arc::ptr_eq(&last.scope, scope) =>
            {
                last.spans.push(span)
            }
            _ => trace.fragments.push(Fragment {
                resource: Arc::clone(resource),
                scope: Arc::clone(scope),
                spans: vec![span],
            }),
        }
        if is_root || trace.quiet_since.is_some() {
            if let Some(previous) = trace.quiet_since.replace(now) {
                self.quiet_queue.remove(&(previous, id));
            }
            self.quiet_queue.insert((now, id));
        }
        if trace.spans == MAX_SPANS_PER_TRACE {
            oversized.push(id);
        }
    }

    /// Decides the traces that are due at `now`: complete ones, then timed out ones.
    fn decide_due(&mut self, now: Instant, out: &mut Output) {
        while let Some(&(since, id)) = self.quiet_queue.first() {
            if now.saturating_duration_since(since) < self.quiet {
                break;
            }
            self.quiet_queue.pop_first();
            self.decide(id, Reason::Complete, out);
        }
        while let Some(&(first_seen, id)) = self.by_age.front() {
            if !self.is_pending(first_seen, id) {
                self.by_age.pop_front();
                continue;
            }
            if now.saturating_duration_since(first_seen) < self.decision_wait {
                break;
            }
            self.by_age.pop_front();
            self.decide(id, Reason::Timeout, out);
        }
    }

    /// Decides the oldest traces while more than `max_traces` are held.
    fn enforce_bound(&mut self, out: &mut Output) {
        while self.pending.len() > self.max_traces {
            let Some((first_seen, id)) = self.by_age.pop_front() else {
                break;
            };
            if self.is_pending(first_seen, id) {
                self.decide(id, Reason::Forced, out);
            }
        }
        // Entries of traces decided as complete wait in `by_age` behind older pending ones.
        if self.by_age.len() > 2 * self.pending.len() + 1024 {
            let pending = &self.pending;
            self.by_age.retain(|(first_seen, id)| {
                pending.get(id).is_some_and(|t| t.first_seen == *first_seen)
            });
        }
    }

    fn is_pending(&self, first_seen: Instant, id: TraceId) -> bool {
        self.pending
            .get(&id)
            .is_some_and(|t| t.first_seen == first_seen)
    }

    fn decide(&mut self, id: TraceId, reason: Reason, out: &mut Output) {
        let Some(trace) = self.pending.remove(&id) else {
            return;
        };
        if let Some(since) = trace.quiet_since {
            self.quiet_queue.remove(&(since, id));
        }
        let counters = &self.counters;
        match reason {
            Reason::Complete => SampleCounters::add(&counters.decided_complete, 1),
            Reason::Timeout => SampleCounters::add(&counters.decided_by_timeout, 1),
            Reason::Forced => SampleCounters::add(&counters.forced_early, 1),
            Reason::Flush => {}
        }
        let keep = trace.keep_anyway || keeps_by_ratio(&id, self.keep_ratio);
        let spans = trace.spans as u64;
        if keep {
            SampleCounters::add(&counters.traces_kept, 1);
            SampleCounters::add(&counters.spans_kept, spans);
            for fragment in trace.fragments {
                out.push(&fragment.resource, &fragment.scope, fragment.spans);
            }
        } else {
            SampleCounters::add(&counters.traces_dropped, 1);
            SampleCounters::add(&counters.spans_dropped, spans);
        }
        self.decisions.insert(id, keep);
        self.decision_order.push_back(id);
        while self.decision_order.len() > self.max_decisions {
            if let Some(oldest) = self.decision_order.pop_front() {
                self.decisions.remove(&oldest);
            }
        }
    }
}

fn trace_id(span: &Span) -> Option<TraceId> {
    let id = TraceId::try_from(span.trace_id.as_slice()).ok()?;
    (id != [0; 16]).then_some(id)
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

impl Transform for TailSample {
    fn apply(&mut self, batch: Batch, now: Instant) -> Vec<Batch> {
        let Batch::Traces(request) = batch else {
            return vec![batch];
        };
        let mut out = Output::default();
        let mut oversized = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = Arc::new(ResourceOrigin {
                resource: resource_spans.resource,
                schema_url: resource_spans.schema_url,
            });
            for scope_spans in resource_spans.scope_spans {
                let scope = Arc::new(ScopeOrigin {
                    scope: scope_spans.scope,
                    schema_url: scope_spans.schema_url,
                });
                for span in scope_spans.spans {
                    self.accept(span, &resource, &scope, now, &mut out, &mut oversized);
                }
            }
        }
        for id in oversized {
            self.decide(id, Reason::Forced, &mut out);
        }
        self.decide_due(now, &mut out);
        self.enforce_bound(&mut out);
        out.into_batches()
    }

    fn flush_due(&mut self, now: Instant) -> Vec<Batch> {
        let mut out = Output::default();
        self.decide_due(now, &mut out);
        out.into_batches()
    }

    fn held_since(&self) -> Option<Instant> {
        // `by_age` is in arrival order; its first entry of a pending trace is the oldest.
        self.by_age
            .iter()
            .find(|(first_seen, id)| self.is_pending(*first_seen, *id))
            .map(|(first_seen, _)| *first_seen)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::Status;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config(keep_ratio: f64) -> SampleConfig {
        SampleConfig {
            keep_ratio,
            slow_ms: 500,
            decision_wait_ms: 5000,
            quiet_ms: 1000,
            max_traces: 100,
        }
    }

    fn id(n: u64) -> Vec<u8> {
        let mut id = vec![0xab; 8];
        id.extend_from_slice(&n.to_be_bytes());
        id
    }

    /// A span of trace `trace`; `parent` 0 makes it the root. Lasts `ms` milliseconds.
    fn span(trace: u64, span_id: u64, parent: u64, ms: u64) -> Span {
        Span {
            trace_id: id(trace),
            span_id: span_id.to_be_bytes().to_vec(),
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                parent.to_be_bytes().to_vec()
            },
            name: format!("span {span_id}"),
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
            ..Default::default()
        }
    }

    fn failed(mut span: Span) -> Span {
        span.status = Some(Status {
            message: String::new(),
            code: StatusCode::Error as i32,
        });
        span
    }

    fn traces(service: &str, spans: Vec<Span>) -> Batch {
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".to_owned(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(service.to_owned())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "fertivision".to_owned(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: "scope-schema".to_owned(),
                }],
                schema_url: "resource-schema".to_owned(),
            }],
        })
    }

    /// Names of the spans in the batches, in order.
    fn names(batches: &[Batch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| match b {
                Batch::Traces(r) => r
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans),
                _ => panic!("not traces"),
            })
            .map(|s| s.name.clone())
            .collect()
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[test]
    fn other_signals_pass_unchanged() {
        let mut sample = TailSample::new(&config(0.0));
        let logs = Batch::Logs(ExportLogsServiceRequest::default());
        assert_eq!(sample.apply(logs.clone(), Instant::now()), vec![logs]);
    }

    #[test]
    fn complete_trace_is_decided_after_the_quiet_period() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&config(1.0));
        assert!(
            sample
                .apply(traces("api", vec![span(1, 2, 1, 10)]), t0)
                .is_empty()
        );
        assert!(
            sample
                .apply(traces("api", vec![span(1, 1, 0, 20)]), t0 + 100 * MS)
                .is_empty()
        );
        assert!(sample.flush_due(t0 + 1099 * MS).is_empty());
        // A child still in flight restarts the quiet period.
        assert!(
            sample
                .apply(traces("api", vec![span(1, 3, 2, 5)]), t0 + 1099 * MS)
                .is_empty()
        );
        assert!(sample.flush_due(t0 + 2000 * MS).is_empty());
        assert_eq!(
            names(&sample.flush_due(t0 + 2099 * MS)),
            ["span 2", "span 1", "span 3"]
        );
        let counters = sample.counters();
        assert_eq!(get(&counters.decided_complete), 1);
        assert_eq!(get(&counters.traces_kept), 1);
        assert_eq!(get(&counters.spans_kept), 3);
        assert_eq!(sample.pending_traces(), 0);
    }

    #[test]
    fn zero_quiet_period_decides_when_the_root_arrives() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&SampleConfig {
            quiet_ms: 0,
            ..config(1.0)
        });
        assert!(
            sample
                .apply(traces("api", vec![span(1, 2, 1, 10)]), t0)
                .is_empty()
        );
        assert_eq!(
            names(&sample.apply(traces("api", vec![span(1, 1, 0, 20)]), t0)),
            ["span 2", "span 1"]
        );
    }

    #[test]
    fn trace_without_root_is_decided_by_timeout() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&config(1.0));
        sample.apply(traces("worker", vec![span(7, 2, 1, 10)]), t0);
        assert!(sample.flush_due(t0 + 4999 * MS).is_empty());
        assert_eq!(names(&sample.flush_due(t0 + 5000 * MS)), ["span 2"]);
        assert_eq!(get(&sample.counters().decided_by_timeout), 1);
    }

    #[test]
    fn errors_and_slow_spans_are_always_kept() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&config(0.0));
        sample.apply(
            traces("api", vec![failed(span(1, 2, 1, 10)), span(1, 1, 0, 20)]),
            t0,
        );
        sample.apply(
            traces("api", vec![span(2, 2, 1, 501), span(2, 1, 0, 600)]),
            t0,
        );
        sample.apply(
            traces("api", vec![span(3, 2, 1, 500), span(3, 1, 0, 500)]),
            t0,
        );
        let kept = sample.flush_due(t0 + 1000 * MS);
        assert_eq!(names(&kept), ["span 2", "span 1", "span 2", "span 1"]);
        let counters = sample.counters();
        assert_eq!(get(&counters.traces_kept), 2);
        assert_eq!(get(&counters.traces_dropped), 1);
        assert_eq!(get(&counters.spans_dropped), 2);
    }

    #[test]
    fn slow_rule_can_be_turned_off() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&SampleConfig {
            slow_ms: 0,
            ..config(0.0)
        });
        sample.apply(traces("api", vec![span(2, 1, 0, 60_000)]), t0);
        assert!(sample.flush_due(t0 + 1000 * MS).is_empty());
    }

    #[test]
    fn oldest_traces_are_decided_early_past_max_traces() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&SampleConfig {
            max_traces: 2,
            ..config(1.0)
        });
        assert!(
            sample
                .apply(traces("api", vec![span(1, 2, 1, 1)]), t0)
                .is_empty()
        );
        assert!(
            sample
                .apply(traces("api", vec![span(2, 2, 1, 1)]), t0 + MS)
                .is_empty()
        );
        let early = sample.apply(traces("api", vec![span(3, 5, 1, 1)]), t0 + 2 * MS);
        assert_eq!(names(&early), ["span 2"]);
        assert_eq!(early_trace_ids(&early), [id(1)]);
        assert_eq!(sample.pending_traces(), 2);
        assert_eq!(get(&sample.counters().forced_early), 1);
    }

    fn early_trace_ids(batches: &[Batch]) -> Vec<Vec<u8>> {
        let Batch::Traces(request) = &batches[0] else {
            panic!()
        };
        request.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.trace_id.clone())
            .collect()
    }

    #[test]
    fn late_spans_follow_the_decision() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&config(0.0));
        // Trace 1 kept (error), trace 2 dropped.
        sample.apply(
            traces("api", vec![failed(span(1, 1, 0, 1)), span(2, 1, 0, 1)]),
            t0,
        );
        assert_eq!(names(&sample.flush_due(t0 + 1000 * MS)), ["span 1"]);
        let late = sample.apply(
            traces("worker", vec![span(1, 9, 1, 1), span(2, 9, 1, 1)]),
            t0 + 3000 * MS,
        );
        assert_eq!(names(&late), ["span 9"]);
        assert_eq!(early_trace_ids(&late), [id(1)]);
        assert_eq!(sample.pending_traces(), 0);
        assert_eq!(get(&sample.counters().late_spans), 2);
    }

    #[test]
    fn resource_and_scope_are_preserved() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&config(1.0));
        sample.apply(traces("worker", vec![span(1, 2, 1, 1)]), t0);
        sample.apply(
            traces("api", vec![span(1, 1, 0, 1), span(2, 1, 0, 1)]),
            t0 + MS,
        );
        let out = sample.flush_due(t0 + 2000 * MS);
        assert_eq!(out.len(), 1);
        let Batch::Traces(request) = &out[0] else {
            panic!()
        };
        let services: Vec<(String, usize)> = request
            .resource_spans
            .iter()
            .map(|r| {
                let value = &r.resource.as_ref().unwrap().attributes[0].value;
                let Some(any_value::Value::StringValue(service)) =
                    value.as_ref().unwrap().value.clone()
                else {
                    panic!()
                };
                assert_eq!(r.schema_url, "resource-schema");
                assert_eq!(r.scope_spans.len(), 1);
                assert_eq!(r.scope_spans[0].scope.as_ref().unwrap().name, "fertivision");
                assert_eq!(r.scope_spans[0].schema_url, "scope-schema");
                (service, r.scope_spans[0].spans.len())
            })
            .collect();
        assert_eq!(services, [("worker".to_owned(), 1), ("api".to_owned(), 2)]);
    }

    #[test]
    fn spans_without_a_trace_id_pass() {
        let mut sample = TailSample::new(&config(0.0));
        let mut orphan = span(1, 1, 0, 1);
        orphan.trace_id = Vec::new();
        assert_eq!(
            names(&sample.apply(traces("api", vec![orphan]), Instant::now())),
            ["span 1"]
        );
    }

    #[test]
    fn ratio_is_deterministic_and_close_to_the_ratio() {
        let ids: Vec<[u8; 16]> = (0..20_000u64)
            .map(|n| {
                let mut id = [0u8; 16];
                id[8..].copy_from_slice(&n.to_be_bytes());
                id
            })
            .collect();
        let kept = ids.iter().filter(|id| keeps_by_ratio(id, 0.1)).count();
        assert!((1800..=2200).contains(&kept), "{kept}");
        assert!(ids.iter().all(|id| keeps_by_ratio(id, 1.0)));
        assert!(!ids.iter().any(|id| keeps_by_ratio(id, 0.0)));
        // Every instance decides alike; a larger ratio keeps a superset.
        let mut a = TailSample::new(&config(0.3));
        let mut b = TailSample::new(&config(0.3));
        let t0 = Instant::now();
        let batch = traces("api", (1..200).map(|n| span(n, 1, 0, 1)).collect());
        a.apply(batch.clone(), t0);
        b.apply(batch, t0);
        let kept_a = a.flush_due(t0 + 1000 * MS);
        assert_eq!(kept_a, b.flush_due(t0 + 1000 * MS));
        assert!(
            ids.iter()
                .filter(|id| keeps_by_ratio(id, 0.1))
                .all(|id| keeps_by_ratio(id, 0.3))
        );
    }

    #[test]
    fn flush_all_decides_everything() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&config(1.0));
        sample.apply(traces("api", vec![span(1, 2, 1, 1), span(2, 2, 1, 1)]), t0);
        assert_eq!(names(&sample.flush_all()), ["span 2", "span 2"]);
        assert_eq!(sample.pending_traces(), 0);
    }

    #[test]
    fn held_since_is_the_arrival_of_the_oldest_pending_trace() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let mut sample = TailSample::new(&config(1.0));
        assert_eq!(sample.held_since(), None);
        sample.apply(traces("api", vec![span(1, 2, 1, 1)]), t0);
        sample.apply(traces("api", vec![span(2, 2, 1, 1)]), t1);
        assert_eq!(sample.held_since(), Some(t0));
        sample.flush_all();
        assert_eq!(sample.held_since(), None);
    }

    #[test]
    fn decisions_are_remembered_within_bounds() {
        let t0 = Instant::now();
        let mut sample = TailSample::new(&SampleConfig {
            max_traces: 2,
            quiet_ms: 0,
            ..config(1.0)
        });
        for n in 1..=10 {
            sample.apply(traces("api", vec![span(n, 1, 0, 1)]), t0);
        }
        assert_eq!(sample.decisions.len(), 4);
        assert_eq!(sample.decision_order.len(), 4);
        assert!(sample.quiet_queue.is_empty());
    }
}
