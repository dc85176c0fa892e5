//! The series the exposition shows: metric families by Prometheus name, each with its series
//! by label set, each with its current value. The write path turns OTLP data points into
//! updates here (delta temporality accumulated into running totals); the render path reads it.
//!
//! A series is keyed by its label set already rendered as exposition text
//! (`job="api",instance="i-1",method="GET"`, escaped, in a fixed order), so rendering copies
//! it and a lookup needs no parsing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
};

use super::naming::{self, Kind, MetricName, Source};
use super::stats::{DropReason, Tally};

/// OTLP `DataPointFlags.NO_RECORDED_VALUE`: the series ended (Prometheus staleness).
const NO_RECORDED_VALUE: u32 = 1;

/// Help text longer than this is cut (at a character boundary).
const MAX_HELP_BYTES: usize = 1024;

/// The family of the `target_info` series.
pub(crate) const TARGET_INFO_FAMILY: &str = "target";

/// Resource attributes that become `job` and `instance`, hence not `target_info` labels.
const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// What bounds the store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub stale_after: Duration,
    pub max_series: usize,
    pub max_series_per_metric: usize,
    pub max_label_value_bytes: usize,
    pub target_info: bool,
}

/// An exemplar as kept: fixed size, no allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: Option<[u8; 8]>,
    pub value: f64,
    pub time_unix_nano: u64,
}

/// A counter's or gauge's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Number {
    pub value: f64,
    pub start_unix_nano: u64,
    pub time_unix_nano: u64,
    /// Counters only.
    pub exemplar: Option<Exemplar>,
}

/// An explicit-bucket histogram's state. `counts` has one more entry than `bounds` (the
/// `+Inf` bucket); counts are per bucket, not cumulative, as OTLP sends them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramState {
    pub bounds: Box<[f64]>,
    pub counts: Box<[u64]>,
    pub count: u64,
    pub sum: Option<f64>,
    pub start_unix_nano: u64,
    pub time_unix_nano: u64,
    /// Empty, or one slot per bucket.
    pub exemplars: Vec<Option<Exemplar>>,
}

/// A summary's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SummaryState {
    pub count: u64,
    pub sum: f64,
    /// `(quantile, value)`, ascending by quantile.
    pub quantiles: Box<[(f64, f64)]>,
    pub start_unix_nano: u64,
    pub time_unix_nano: u64,
}

/// A series' current value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Number(Number),
    Histogram(Box<HistogramState>),
    Summary(Box<SummaryState>),
    /// `target_info`: the labels are the information, the value is always 1.
    Info,
}

/// One series.
#[derive(Debug)]
pub(crate) struct Series {
    pub last_written: Instant,
    pub value: Value,
}

/// One metric family.
#[derive(Debug)]
pub(crate) struct Family {
    pub kind: Kind,
    pub help: Box<str>,
    /// The OpenMetrics unit, when the family name ends in it.
    pub unit: Option<Box<str>>,
    pub series: BTreeMap<Box<str>, Series>,
}

/// All families, with the count of their series.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub families: BTreeMap<Box<str>, Family>,
    series_total: usize,
    next_sweep: Option<Instant>,
}

/// A metric's name, kind and help, resolved once per metric.
struct Target<'a> {
    name: &'a MetricName,
    kind: Kind,
    help: &'a str,
}

/// Where a data point's series is.
enum Slot<'a> {
    Existing(&'a mut Series),
    /// A new series may be created in this family (which may not exist yet).
    Vacant,
}

impl Store {
    /// Series held, stale ones not yet swept included.
    pub(crate) fn series_total(&self) -> usize {
        self.series_total
    }

    /// Applies one export request.
    pub(crate) fn write(
        &mut self,
        request: &ExportMetricsServiceRequest,
        limits: &Limits,
        now: Instant,
        tally: &mut Tally,
    ) {
        if self.next_sweep.is_none_or(|due| now >= due) {
            self.sweep(now, limits.stale_after);
            self.next_sweep = Some(now + sweep_interval(limits.stale_after));
        }
        let mut labels = String::new();
        for resource_metrics in &request.resource_metrics {
            let resource_attributes = resource_metrics
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]);
            let resource = ResourceLabels::new(resource_attributes, limits, tally);
            if limits.target_info {
                self.write_target_info(
                    resource_attributes,
                    &resource,
                    limits,
                    now,
                    &mut labels,
                    tally,
                );
            }
            for scope_metrics in &resource_metrics.scope_metrics {
                for metric in &scope_metrics.metrics {
                    self.write_metric(metric, &resource, limits, now, &mut labels, tally);
                }
            }
        }
        debug_assert_eq!(
            self.series_total,
            self.families
                .values()
                .map(|f| f.series.len())
                .sum::<usize>()
        );
    }

    /// Removes the series not written for `stale_after`, and families left empty.
    pub(crate) fn sweep(&mut self, now: Instant, stale_after: Duration) {
        let mut removed = 0;
        self.families.retain(|_, family| {
            let before = family.series.len();
            family
                .series
                .retain(|_, series| !is_stale(series, now, stale_after));
            removed += before - family.series.len();
            !family.series.is_empty()
        });
        self.series_total -= removed;
    }

    fn write_metric(
        &mut self,
        metric: &Metric,
        resource: &ResourceLabels,
        limits: &Limits,
        now: Instant,
        labels: &mut String,
        tally: &mut Tally,
    ) {
        let Some(data) = &metric.data else { return };
        let (source, points) = match data {
            Data::Gauge(gauge) => (Source::Gauge, gauge.data_points.len()),
            Data::Sum(sum) if sum.is_monotonic => (Source::MonotonicSum, sum.data_points.len()),
            Data::Sum(sum) => (Source::NonMonotonicSum, sum.data_points.len()),
            Data::Histogram(histogram) => (Source::Histogram, histogram.data_points.len()),
            Data::Summary(summary) => (Source::Summary, summary.data_points.len()),
            Data::ExponentialHistogram(histogram) => {
                tally.drop_points(DropReason::Unsupported, histogram.data_points.len());
                return;
            }
        };
        let Some(name) = naming::metric_name(&metric.name, &metric.unit, source) else {
            tally.drop_points(DropReason::Invalid, points);
            return;
        };
        let help = if metric.description.trim().is_empty() {
            metric.name.as_str()
        } else {
            metric.description.as_str()
        };
        let target = Target {
            name: &name,
            kind: source.kind(),
            help,
        };
        let delta = match data {
            Data::Sum(sum) => temporality(sum.aggregation_temporality),
            Data::Histogram(histogram) => temporality(histogram.aggregation_temporality),
            _ => Some(false),
        };
        let Some(delta) = delta else {
            tally.drop_points(DropReason::Invalid, points);
            return;
        };
        match data {
            Data::Gauge(gauge) => {
                for point in &gauge.data_points {
                    self.write_point(
                        &target,
                        resource,
                        &point.attributes,
                        point.flags,
                        limits,
                        now,
                        labels,
                        tally,
                        |slot| number_point(slot, point, source, delta),
                    );
                }
            }
            Data::Sum(sum) => {
                for point in &sum.data_points {
                    self.write_point(
                        &target,
                        resource,
                        &point.attributes,
                        point.flags,
                        limits,
                        now,
                        labels,
                        tally,
                        |slot| number_point(slot, point, source, delta),
                    );
                }
            }
            Data::Histogram(histogram) => {
                for point in &histogram.data_points {
                    self.write_point(
                        &target,
                        resource,
                        &point.attributes,
                        point.flags,
                        limits,
                        now,
                        labels,
                        tally,
                        |slot| histogram_point(slot, point, delta),
                    );
                }
            }
            Data::Summary(summary) => {
                for point in &summary.data_points {
                    self.write_point(
                        &target,
                        resource,
                        &point.attributes,
                        point.flags,
                        limits,
                        now,
                        labels,
                        tally,
                        |slot| summary_point(slot, point),
                    );
                }
            }
            Data::ExponentialHistogram(_) => unreachable!("dropped above"),
        }
    }

    /// Finds or makes room for a data point's series and applies `update` to it.
    #[allow(clippy::too_many_arguments)]
    fn write_point(
        &mut self,
        target: &Target<'_>,
        resource: &ResourceLabels,
        attributes: &[KeyValue],
        flags: u32,
        limits: &Limits,
        now: Instant,
        labels: &mut String,
        tally: &mut Tally,
        update: impl FnOnce(Slot<'_>) -> Result<Option<Value>, DropReason>,
    ) {
        // The label the exposition adds to a histogram's buckets or a summary's quantiles.
        let added = match target.kind {
            Kind::Histogram => Some("le"),
            Kind::Summary => Some("quantile"),
            Kind::Counter | Kind::Gauge | Kind::Info => None,
        };
        write_labels(labels, resource, attributes, added, limits, tally);
        let family_name = target.name.family.as_str();
        if flags & NO_RECORDED_VALUE != 0 {
            // The series ended: it leaves the exposition now rather than going stale later.
            if let Some(family) = self.families.get_mut(family_name)
                && family.kind == target.kind
                && family.series.remove(labels.as_str()).is_some()
            {
                self.series_total -= 1;
                if family.series.is_empty() {
                    // Families exist only with series, or churn would pile up empty ones.
                    self.families.remove(family_name);
                }
            }
            tally.written += 1;
            return;
        }
        match self.families.get_mut(family_name) {
            Some(family) if family.kind != target.kind => {
                tally.drop_points(DropReason::TypeConflict, 1);
                return;
            }
            Some(family) => {
                if let Some(series) = family.series.get_mut(labels.as_str()) {
                    match update(Slot::Existing(&mut *series)) {
                        Ok(replacement) => {
                            if let Some(value) = replacement {
                                series.value = value;
                            }
                            series.last_written = now;
                            tally.written += 1;
                        }
                        Err(reason) => tally.drop_points(reason, 1),
                    }
                    return;
                }
                if family.series.len() >= limits.max_series_per_metric {
                    tally.dropped_series += 1;
                    return;
                }
            }
            None => {}
        }
        if self.series_total >= limits.max_series {
            tally.dropped_series += 1;
            return;
        }
        let value = match update(Slot::Vacant) {
            Ok(Some(value)) => value,
            Ok(None) => unreachable!("a new series always gets a value"),
            Err(reason) => {
                tally.drop_points(reason, 1);
                return;
            }
        };
        let family = self
            .families
            .entry(family_name.into())
            .or_insert_with(|| Family {
                kind: target.kind,
                help: truncate(target.help, MAX_HELP_BYTES).into(),
                unit: target.name.unit.as_deref().map(Into::into),
                series: BTreeMap::new(),
            });
        family.series.insert(
            labels.as_str().into(),
            Series {
                last_written: now,
                value,
            },
        );
        self.series_total += 1;
        tally.written += 1;
    }

    /// `target_info{job,instance,<other resource attributes>} 1`, when the resource has
    /// attributes besides the ones `job` and `instance` come from.
    fn write_target_info(
        &mut self,
        attributes: &[KeyValue],
        resource: &ResourceLabels,
        limits: &Limits,
        now: Instant,
        labels: &mut String,
        tally: &mut Tally,
    ) {
        let others: Vec<KeyValue> = attributes
            .iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    SERVICE_NAME | SERVICE_NAMESPACE | SERVICE_INSTANCE_ID
                )
            })
            .cloned()
            .collect();
        if others.is_empty() {
            return;
        }
        let name = MetricName {
            family: TARGET_INFO_FAMILY.to_owned(),
            unit: None,
        };
        let target = Target {
            name: &name,
            kind: Kind::Info,
            help: "Target metadata",
        };
        let written = tally.written;
        self.write_point(
            &target,
            resource,
            &others,
            0,
            limits,
            now,
            labels,
            tally,
            |_| Ok(Some(Value::Info)),
        );
        // Not a data point of the request.
        tally.written = written;
    }
}

/// How often the write path sweeps stale series: often enough that a stale series frees its
/// place under the caps soon, rarely enough that the O(series) walk stays off the hot path.
fn sweep_interval(stale_after: Duration) -> Duration {
    (stale_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Whether a series was last written `stale_after` or longer ago.
pub(crate) fn is_stale(series: &Series, now: Instant, stale_after: Duration) -> bool {
    now.saturating_duration_since(series.last_written) >= stale_after
}

/// `Some(true)` for delta, `Some(false)` for cumulative, `None` when unspecified.
fn temporality(value: i32) -> Option<bool> {
    match AggregationTemporality::try_from(value) {
        Ok(AggregationTemporality::Delta) => Some(true),
        Ok(AggregationTemporality::Cumulative) => Some(false),
        _ => None,
    }
}

/// Whether a point timed `time` comes before what a series already holds (times of 0 are
/// unknown and never out of order).
fn older(time: u64, held: u64) -> bool {
    time != 0 && held != 0 && time < held
}

/// Whether a delta point overlaps what was already accumulated (a duplicate or a point out
/// of order), judged by its start time, or by its time when the start is unknown.
fn overlaps(start: u64, time: u64, held_time: u64) -> bool {
    if start != 0 {
        held_time != 0 && start < held_time
    } else {
        older(time, held_time) || (time != 0 && time == held_time)
    }
}

fn number_point(
    slot: Slot<'_>,
    point: &NumberDataPoint,
    source: Source,
    delta: bool,
) -> Result<Option<Value>, DropReason> {
    let value = match point.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => return Err(DropReason::Invalid),
    };
    let counter = source == Source::MonotonicSum;
    if counter && !(value.is_finite() && value >= 0.0) {
        return Err(DropReason::Invalid);
    }
    if delta && !value.is_finite() {
        return Err(DropReason::Invalid);
    }
    let exemplar = if counter {
        latest_exemplar(&point.exemplars)
    } else {
        None
    };
    let fresh = Number {
        value,
        start_unix_nano: point.start_time_unix_nano,
        time_unix_nano: point.time_unix_nano,
        exemplar,
    };
    let Slot::Existing(series) = slot else {
        return Ok(Some(Value::Number(fresh)));
    };
    let Value::Number(held) = &mut series.value else {
        return Ok(Some(Value::Number(fresh)));
    };
    if delta {
        if overlaps(
            point.start_time_unix_nano,
            point.time_unix_nano,
            held.time_unix_nano,
        ) {
            return Err(DropReason::OutOfOrder);
        }
        held.value += value;
        held.time_unix_nano = point.time_unix_nano;
        if exemplar.is_some() {
            held.exemplar = exemplar;
        }
        return Ok(None);
    }
    let restarted = source != Source::Gauge && point.start_time_unix_nano != held.start_unix_nano;
    if !restarted && older(point.time_unix_nano, held.time_unix_nano) {
        return Err(DropReason::OutOfOrder);
    }
    // A new start time is a reset: the value starts over, and so do the exemplars.
    let exemplar = if restarted {
        exemplar
    } else {
        exemplar.or(held.exemplar)
    };
    *held = Number { exemplar, ..fresh };
    Ok(None)
}

fn histogram_point(
    slot: Slot<'_>,
    point: &HistogramDataPoint,
    delta: bool,
) -> Result<Option<Value>, DropReason> {
    let fresh = histogram_state(point)?;
    let Slot::Existing(series) = slot else {
        return Ok(Some(Value::Histogram(Box::new(fresh))));
    };
    let Value::Histogram(held) = &mut series.value else {
        return Ok(Some(Value::Histogram(Box::new(fresh))));
    };
    if delta {
        if overlaps(
            point.start_time_unix_nano,
            point.time_unix_nano,
            held.time_unix_nano,
        ) {
            return Err(DropReason::OutOfOrder);
        }
        if held.bounds != fresh.bounds {
            // New bucket layout: the running histogram starts over.
            **held = fresh;
            return Ok(None);
        }
        for (total, add) in held.counts.iter_mut().zip(fresh.counts.iter()) {
            *total = total.saturating_add(*add);
        }
        held.count = held.count.saturating_add(fresh.count);
        held.sum = held.sum.zip(fresh.sum).map(|(a, b)| a + b);
        held.time_unix_nano = fresh.time_unix_nano;
        merge_exemplars(&mut held.exemplars, fresh.exemplars);
        return Ok(None);
    }
    let restarted =
        point.start_time_unix_nano != held.start_unix_nano || held.bounds != fresh.bounds;
    if !restarted && older(point.time_unix_nano, held.time_unix_nano) {
        return Err(DropReason::OutOfOrder);
    }
    let mut exemplars = if restarted {
        Vec::new()
    } else {
        std::mem::take(&mut held.exemplars)
    };
    merge_exemplars(&mut exemplars, fresh.exemplars.clone());
    **held = HistogramState { exemplars, ..fresh };
    Ok(None)
}

/// A histogram point checked: buckets match the bounds, bounds ascend; the count is the sum
/// of the buckets (what the `+Inf` bucket must show).
fn histogram_state(point: &HistogramDataPoint) -> Result<HistogramState, DropReason> {
    let (bounds, counts): (Box<[f64]>, Box<[u64]>) = if point.bucket_counts.is_empty() {
        (Box::default(), Box::new([point.count]))
    } else {
        if point.bucket_counts.len() != point.explicit_bounds.len() + 1 {
            return Err(DropReason::Invalid);
        }
        if point.explicit_bounds.iter().any(|b| !b.is_finite())
            || point.explicit_bounds.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(DropReason::Invalid);
        }
        (
            point.explicit_bounds.as_slice().into(),
            point.bucket_counts.as_slice().into(),
        )
    };
    let count = counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    let mut exemplars = Vec::new();
    for otlp in &point.exemplars {
        let Some(exemplar) = convert_exemplar(otlp) else {
            continue;
        };
        if exemplars.is_empty() {
            exemplars = vec![None; counts.len()];
        }
        let bucket = bounds
            .iter()
            .position(|bound| exemplar.value <= *bound)
            .unwrap_or(bounds.len());
        let slot: &mut Option<Exemplar> = &mut exemplars[bucket];
        if slot.is_none_or(|held| held.time_unix_nano <= exemplar.time_unix_nano) {
            *slot = Some(exemplar);
        }
    }
    Ok(HistogramState {
        bounds,
        counts,
        count,
        sum: point.sum.filter(|s| !s.is_nan()),
        start_unix_nano: point.start_time_unix_nano,
        time_unix_nano: point.time_unix_nano,
        exemplars,
    })
}

/// Newer exemplars replace held ones bucket by bucket; buckets without a new one keep theirs.
fn merge_exemplars(held: &mut Vec<Option<Exemplar>>, newer: Vec<Option<Exemplar>>) {
    if newer.is_empty() {
        return;
    }
    if held.len() != newer.len() {
        *held = newer;
        return;
    }
    for (slot, new) in held.iter_mut().zip(newer) {
        if new.is_some() {
            *slot = new;
        }
    }
}

fn summary_point(slot: Slot<'_>, point: &SummaryDataPoint) -> Result<Option<Value>, DropReason> {
    let mut quantiles: Vec<(f64, f64)> = point
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    if quantiles.iter().any(|(q, _)| !(0.0..=1.0).contains(q)) {
        return Err(DropReason::Invalid);
    }
    quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
    quantiles.dedup_by(|a, b| a.0 == b.0);
    let fresh = SummaryState {
        count: point.count,
        sum: point.sum,
        quantiles: quantiles.into(),
        start_unix_nano: point.start_time_unix_nano,
        time_unix_nano: point.time_unix_nano,
    };
    if let Slot::Existing(series) = slot
        && let Value::Summary(held) = &series.value
        && held.start_unix_nano == fresh.start_unix_nano
        && older(fresh.time_unix_nano, held.time_unix_nano)
    {
        return Err(DropReason::OutOfOrder);
    }
    Ok(Some(Value::Summary(Box::new(fresh))))
}

/// The newest usable exemplar of a point.
fn latest_exemplar(exemplars: &[OtlpExemplar]) -> Option<Exemplar> {
    exemplars
        .iter()
        .filter_map(convert_exemplar)
        .reduce(|a, b| {
            if b.time_unix_nano >= a.time_unix_nano {
                b
            } else {
                a
            }
        })
}

/// An OTLP exemplar with a valid trace id and a finite value; others link nowhere and go.
fn convert_exemplar(otlp: &OtlpExemplar) -> Option<Exemplar> {
    let trace_id: [u8; 16] = otlp.trace_id.as_slice().try_into().ok()?;
    if trace_id == [0; 16] {
        return None;
    }
    let span_id = <[u8; 8]>::try_from(otlp.span_id.as_slice())
        .ok()
        .filter(|id| *id != [0; 8]);
    let value = match otlp.value? {
        exemplar::Value::AsDouble(v) => v,
        exemplar::Value::AsInt(v) => v as f64,
    };
    value.is_finite().then_some(Exemplar {
        trace_id,
        span_id,
        value,
        time_unix_nano: otlp.time_unix_nano,
    })
}

/// `job` and `instance` of one resource, rendered once for all its data points.
#[derive(Debug)]
struct ResourceLabels {
    /// `job="...",instance="..."`, either part absent when its attribute is.
    rendered: String,
    has_job: bool,
    has_instance: bool,
}

impl ResourceLabels {
    fn new(attributes: &[KeyValue], limits: &Limits, tally: &mut Tally) -> Self {
        let find = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| attribute_text(kv.value.as_ref()))
                .filter(|v| !v.is_empty())
        };
        let job = match (find(SERVICE_NAMESPACE), find(SERVICE_NAME)) {
            (Some(namespace), Some(name)) => Some(Cow::Owned(format!("{namespace}/{name}"))),
            (None, Some(name)) => Some(name),
            (_, None) => None,
        };
        let instance = find(SERVICE_INSTANCE_ID);
        let mut rendered = String::new();
        if let Some(job) = &job {
            push_label(&mut rendered, "job", job, limits, tally);
        }
        if let Some(instance) = &instance {
            push_label(&mut rendered, "instance", instance, limits, tally);
        }
        ResourceLabels {
            rendered,
            has_job: job.is_some(),
            has_instance: instance.is_some(),
        }
    }

    /// Whether the resource already gives the series this label.
    fn provides(&self, label: &str) -> bool {
        (self.has_job && label == "job") || (self.has_instance && label == "instance")
    }
}

/// Renders a data point's label set into `out`: `job`, `instance`, then the attributes by
/// sanitized name. Attributes whose names collide after sanitizing are joined with `;` in
/// the order of their original keys (as the specification asks); attributes named like
/// the resource's `job` or `instance` give way to them, and one named like the label the
/// exposition `added` (`le`, `quantile`) is left out; empty values are no label.
fn write_labels(
    out: &mut String,
    resource: &ResourceLabels,
    attributes: &[KeyValue],
    added: Option<&str>,
    limits: &Limits,
    tally: &mut Tally,
) {
    out.clear();
    out.push_str(&resource.rendered);
    let mut named: Vec<(Cow<'_, str>, &KeyValue)> = attributes
        .iter()
        .filter_map(|kv| Some((naming::label_name(&kv.key)?, kv)))
        .filter(|(name, _)| !resource.provides(name) && added != Some(name.as_ref()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key.cmp(&b.1.key)));
    let mut i = 0;
    while i < named.len() {
        let name = &named[i].0;
        let run = named[i..]
            .iter()
            .take_while(|(other, _)| other == name)
            .count();
        let value = if run == 1 {
            attribute_text(named[i].1.value.as_ref())
        } else {
            let parts: Vec<Cow<'_, str>> = named[i..i + run]
                .iter()
                .map(|(_, kv)| attribute_text(kv.value.as_ref()))
                .collect();
            Cow::Owned(parts.join(";"))
        };
        if !value.is_empty() {
            push_label(out, name, &value, limits, tally);
        }
        i += run;
    }
}

/// Appends `name="value"` (value cut to the limit, then escaped), comma-separated.
fn push_label(out: &mut String, name: &str, value: &str, limits: &Limits, tally: &mut Tally) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push_str("=\"");
    let cut = truncate(value, limits.max_label_value_bytes);
    if cut.len() < value.len() {
        tally.truncated_label_values += 1;
    }
    escape_label_value(out, cut);
    out.push('"');
}

/// Label value escaping shared by both text formats: `\`, `"` and newline.
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An attribute value as label text: strings as they are, scalars as written in JSON,
/// bytes in base64, arrays and maps as JSON.
fn attribute_text(value: Option<&AnyValue>) -> Cow<'_, str> {
    match value.and_then(|v| v.value.as_ref()) {
        None => Cow::Borrowed(""),
        Some(any_value::Value::StringValue(s)) => Cow::Borrowed(s),
        Some(any_value::Value::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(any_value::Value::DoubleValue(d)) => Cow::Owned(d.to_string()),
        Some(any_value::Value::BytesValue(bytes)) => Cow::Owned(base64(bytes)),
        Some(other) => Cow::Owned(json(Some(other)).to_string()),
    }
}

fn json(value: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(J::Null, J::Number)
        }
        Some(any_value::Value::BytesValue(bytes)) => J::String(base64(bytes)),
        Some(any_value::Value::ArrayValue(array)) => J::Array(
            array
                .values
                .iter()
                .map(|v| json(v.value.as_ref()))
                .collect(),
        ),
        // An index into a profile's string table: no table here.
        Some(any_value::Value::StringValueStrindex(_)) => J::Null,
        Some(any_value::Value::KvlistValue(list)) => J::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes a float as both text formats read it: shortest round-trip digits, `+Inf`, `-Inf`,
/// `NaN`.
pub(crate) fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics, Sum, metric};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn limits() -> Limits {
        Limits {
            stale_after: Duration::from_secs(60),
            max_series: 100,
            max_series_per_metric: 50,
            max_label_value_bytes: 16,
            target_info: false,
        }
    }

    fn string(key: &str, value: &str) -> KeyValue {
        any(key, any_value::Value::StringValue(value.into()))
    }

    fn any(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn labels_of(resource: &[KeyValue], attributes: &[KeyValue]) -> (String, Tally) {
        let mut tally = Tally::default();
        let resource = ResourceLabels::new(resource, &limits(), &mut tally);
        let mut out = String::new();
        write_labels(&mut out, &resource, attributes, None, &limits(), &mut tally);
        (out, tally)
    }

    #[test]
    fn job_and_instance_come_first_then_sorted_sanitized_attributes() {
        let resource = [
            string("service.name", "api"),
            string("service.namespace", "fv"),
            string("service.instance.id", "i-1"),
            string("host.name", "h"),
        ];
        let (labels, _) = labels_of(
            &resource,
            &[
                string("url.scheme", "https"),
                string("http.request.method", "GET"),
            ],
        );
        assert_eq!(
            labels,
            r#"job="fv/api",instance="i-1",http_request_method="GET",url_scheme="https""#
        );
    }

    #[test]
    fn colliding_names_join_values_and_resource_labels_win() {
        let (labels, _) = labels_of(
            &[string("service.name", "api")],
            &[
                string("a-b", "2"),
                string("a.b", "1"),
                string("job", "ignored"),
                string("instance", "kept"),
                string("empty", ""),
            ],
        );
        assert_eq!(labels, r#"job="api",a_b="2;1",instance="kept""#);
    }

    #[test]
    fn values_are_truncated_at_char_boundaries_then_escaped() {
        let (labels, tally) = labels_of(
            &[],
            &[
                string("q", "say \"hi\"\\\nok"),
                string("long", "ééééééééééé"),
            ],
        );
        // 16 bytes: eight two-byte characters.
        assert_eq!(labels, r#"long="éééééééé",q="say \"hi\"\\\nok""#);
        assert_eq!(tally.truncated_label_values, 1);
    }

    #[test]
    fn non_string_attributes_become_text() {
        use opentelemetry_proto::tonic::common::v1::ArrayValue;
        let array = any_value::Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                },
                AnyValue {
                    value: Some(any_value::Value::StringValue("x".into())),
                },
            ],
        });
        let (labels, _) = labels_of(
            &[],
            &[
                any("b", any_value::Value::BoolValue(true)),
                any("i", any_value::Value::IntValue(-3)),
                any("d", any_value::Value::DoubleValue(0.5)),
                any("y", any_value::Value::BytesValue(b"hello".to_vec())),
                any("arr", array),
            ],
        );
        assert_eq!(
            labels,
            r#"arr="[1,\"x\"]",b="true",d="0.5",i="-3",y="aGVsbG8=""#
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn floats_are_written_as_the_text_formats_parse_them() {
        let render = |v: f64| {
            let mut s = String::new();
            write_float(&mut s, v);
            s
        };
        assert_eq!(render(1.0), "1.0");
        assert_eq!(render(0.005), "0.005");
        assert_eq!(render(-2.5), "-2.5");
        assert_eq!(render(1e21), "1e21");
        assert_eq!(render(f64::INFINITY), "+Inf");
        assert_eq!(render(f64::NEG_INFINITY), "-Inf");
        assert_eq!(render(f64::NAN), "NaN");
    }

    fn sum_request(
        points: Vec<NumberDataPoint>,
        temporality: AggregationTemporality,
    ) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![string("service.name", "api")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "jobs.done".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: points,
                            aggregation_temporality: temporality as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn point(start: u64, time: u64, value: f64) -> NumberDataPoint {
        NumberDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn counter_value(store: &Store) -> f64 {
        match &store.families["jobs_done"].series[r#"job="api""#].value {
            Value::Number(n) => n.value,
            other => panic!("not a number: {other:?}"),
        }
    }

    #[test]
    fn delta_points_accumulate_and_overlaps_are_refused() {
        let mut store = Store::default();
        let mut tally = Tally::default();
        let now = Instant::now();
        let delta = AggregationTemporality::Delta;
        store.write(
            &sum_request(vec![point(10, 20, 2.0)], delta),
            &limits(),
            now,
            &mut tally,
        );
        store.write(
            &sum_request(vec![point(20, 30, 3.0)], delta),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(counter_value(&store), 5.0);
        // The same point again (a redelivery) must not count twice.
        store.write(
            &sum_request(vec![point(20, 30, 3.0)], delta),
            &limits(),
            now,
            &mut tally,
        );
        // A gap (the producer restarted) still adds to the running total.
        store.write(
            &sum_request(vec![point(100, 110, 1.0)], delta),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(counter_value(&store), 6.0);
        assert_eq!(tally.dropped(DropReason::OutOfOrder), 1);
        assert_eq!(tally.written, 3);
        // Negative increments cannot be part of a counter.
        store.write(
            &sum_request(vec![point(110, 120, -1.0)], delta),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(tally.dropped(DropReason::Invalid), 1);
    }

    #[test]
    fn cumulative_points_replace_and_a_new_start_time_resets() {
        let mut store = Store::default();
        let mut tally = Tally::default();
        let now = Instant::now();
        let cumulative = AggregationTemporality::Cumulative;
        store.write(
            &sum_request(vec![point(10, 20, 7.0)], cumulative),
            &limits(),
            now,
            &mut tally,
        );
        store.write(
            &sum_request(vec![point(10, 30, 9.0)], cumulative),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(counter_value(&store), 9.0);
        store.write(
            &sum_request(vec![point(10, 25, 8.0)], cumulative),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(counter_value(&store), 9.0, "an older point is out of order");
        assert_eq!(tally.dropped(DropReason::OutOfOrder), 1);
        store.write(
            &sum_request(vec![point(40, 45, 1.0)], cumulative),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(
            counter_value(&store),
            1.0,
            "a restart shows as a counter reset"
        );
    }

    #[test]
    fn unspecified_temporality_is_invalid() {
        let mut store = Store::default();
        let mut tally = Tally::default();
        store.write(
            &sum_request(vec![point(1, 2, 1.0)], AggregationTemporality::Unspecified),
            &limits(),
            Instant::now(),
            &mut tally,
        );
        assert_eq!(tally.dropped(DropReason::Invalid), 1);
        assert!(store.families.is_empty());
    }

    #[test]
    fn no_recorded_value_removes_the_series() {
        let mut store = Store::default();
        let mut tally = Tally::default();
        let now = Instant::now();
        let cumulative = AggregationTemporality::Cumulative;
        store.write(
            &sum_request(vec![point(1, 2, 1.0)], cumulative),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(store.series_total(), 1);
        let ended = NumberDataPoint {
            flags: NO_RECORDED_VALUE,
            ..point(1, 3, 0.0)
        };
        store.write(
            &sum_request(vec![ended], cumulative),
            &limits(),
            now,
            &mut tally,
        );
        assert_eq!(store.series_total(), 0);
        assert!(store.families.is_empty(), "no empty family is left behind");
    }

    #[test]
    fn an_le_attribute_gives_way_to_the_bucket_label() {
        let mut tally = Tally::default();
        let resource = ResourceLabels::new(&[], &limits(), &mut tally);
        let mut out = String::new();
        let attributes = [string("le", "5"), string("route", "/")];
        write_labels(
            &mut out,
            &resource,
            &attributes,
            Some("le"),
            &limits(),
            &mut tally,
        );
        assert_eq!(out, r#"route="/""#);
    }

    #[test]
    fn sweep_removes_stale_series_and_empty_families() {
        let mut store = Store::default();
        let mut tally = Tally::default();
        let start = Instant::now();
        store.write(
            &sum_request(vec![point(1, 2, 1.0)], AggregationTemporality::Cumulative),
            &limits(),
            start,
            &mut tally,
        );
        store.sweep(start + Duration::from_secs(59), Duration::from_secs(60));
        assert_eq!(store.series_total(), 1);
        store.sweep(start + Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(store.series_total(), 0);
        assert!(store.families.is_empty());
    }

    #[test]
    fn histogram_exemplars_land_in_the_bucket_of_their_value() {
        let otlp = |value: f64, time: u64, trace: u8| OtlpExemplar {
            time_unix_nano: time,
            trace_id: vec![trace; 16],
            span_id: vec![1; 8],
            value: Some(exemplar::Value::AsDouble(value)),
            ..Default::default()
        };
        let point = HistogramDataPoint {
            count: 6,
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![0.1, 1.0],
            sum: Some(4.0),
            exemplars: vec![
                otlp(0.05, 1, 1),
                otlp(5.0, 2, 2),
                otlp(1.0, 3, 3),
                otlp(0.7, 4, 4),
                otlp(f64::NAN, 5, 5),
            ],
            ..Default::default()
        };
        let state = histogram_state(&point).expect("valid");
        let traces: Vec<Option<u8>> = state
            .exemplars
            .iter()
            .map(|e| e.map(|e| e.trace_id[0]))
            .collect();
        assert_eq!(traces, [Some(1), Some(4), Some(2)]);
        assert_eq!(state.count, 6);
    }

    #[test]
    fn malformed_histograms_are_invalid() {
        let mismatched = HistogramDataPoint {
            bucket_counts: vec![1, 2],
            explicit_bounds: vec![1.0, 2.0],
            ..Default::default()
        };
        assert_eq!(histogram_state(&mismatched), Err(DropReason::Invalid));
        let unordered = HistogramDataPoint {
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![2.0, 1.0],
            ..Default::default()
        };
        assert_eq!(histogram_state(&unordered), Err(DropReason::Invalid));
        let bucketless = HistogramDataPoint {
            count: 4,
            sum: Some(2.0),
            ..Default::default()
        };
        let state = histogram_state(&bucketless).expect("a histogram without buckets is valid");
        assert_eq!(
            (&*state.bounds, &*state.counts, state.count),
            (&[][..], &[4][..], 4)
        );
    }

    #[test]
    fn exemplars_without_a_trace_id_are_ignored() {
        let bad = [
            OtlpExemplar {
                trace_id: vec![0; 16],
                value: Some(exemplar::Value::AsInt(1)),
                ..Default::default()
            },
            OtlpExemplar {
                trace_id: vec![1; 8],
                value: Some(exemplar::Value::AsInt(1)),
                ..Default::default()
            },
            OtlpExemplar {
                trace_id: vec![1; 16],
                value: None,
                ..Default::default()
            },
        ];
        assert!(bad.iter().all(|e| convert_exemplar(e).is_none()));
        let good = OtlpExemplar {
            trace_id: vec![1; 16],
            span_id: vec![0; 8],
            value: Some(exemplar::Value::AsInt(3)),
            ..Default::default()
        };
        assert_eq!(
            convert_exemplar(&good).map(|e| (e.span_id, e.value)),
            Some((None, 3.0))
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("é", 0), "");
    }
}
