//! OTLP names to Prometheus names, after the OpenTelemetry specification "Prometheus and
//! OpenMetrics Compatibility" (OTLP metric points to Prometheus), in its classic form: only
//! `[a-zA-Z0-9:_]` in metric names and `[a-zA-Z0-9_]` in label names, unit and type suffixes
//! added.
//!
//! Metric names:
//! 1. every run of characters outside `[a-zA-Z0-9:]` (dots, dashes, `_` itself, anything not
//!    ASCII) becomes one `_`; leading and trailing ones go: `http.server.request.duration` ->
//!    `http_server_request_duration`;
//! 2. the unit, from UCUM to a word (`s` -> `seconds`, `By` -> `bytes`, `By/s` ->
//!    `bytes_per_second`; annotations in braces such as `{request}` are dropped, `1` is no
//!    unit), is appended unless the name already holds that word;
//! 3. a gauge with unit `1` ends in `_ratio`; a counter (a monotonic sum) ends in `_total`,
//!    which the exposition writes after the family name (OpenMetrics names the family
//!    without it), so a `total` word already in the OTLP name is removed first;
//! 4. a name that starts with a digit gets a leading `_`.
//!
//! Label names: each character outside `[a-zA-Z0-9_]` becomes `_`; a name starting with a
//! digit gets the prefix `key_`, one starting with a single `_` the prefix `key`.

use std::borrow::Cow;

/// What the series of a metric family are, in the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Monotonic sums.
    Counter,
    /// Gauges and non-monotonic sums.
    Gauge,
    /// Explicit-bucket histograms.
    Histogram,
    /// Summaries (quantiles, sum, count).
    Summary,
    /// `target_info`: one series of resource attributes per target.
    Info,
}

/// Which OTLP shape a metric came in, which decides its suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A gauge.
    Gauge,
    /// A sum with `is_monotonic`.
    MonotonicSum,
    /// A sum without `is_monotonic`.
    NonMonotonicSum,
    /// An explicit-bucket histogram.
    Histogram,
    /// A summary.
    Summary,
}

impl Source {
    /// The exposition's kind for it.
    pub(crate) fn kind(self) -> Kind {
        match self {
            Source::Gauge | Source::NonMonotonicSum => Kind::Gauge,
            Source::MonotonicSum => Kind::Counter,
            Source::Histogram => Kind::Histogram,
            Source::Summary => Kind::Summary,
        }
    }
}

/// A metric family's Prometheus name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetricName {
    /// The family name; a counter's samples add `_total` to it.
    pub family: String,
    /// The unit word when the family name ends in `_<unit>` (for the OpenMetrics `# UNIT`).
    pub unit: Option<String>,
}

/// The Prometheus name of an OTLP metric, or `None` when nothing valid is left of it.
pub(crate) fn metric_name(name: &str, unit: &str, source: Source) -> Option<MetricName> {
    let mut words: Vec<&str> = name
        .split(|c: char| !is_metric_char(c))
        .filter(|w| !w.is_empty())
        .collect();
    let (main_unit, per_unit) = unit_words(unit);
    if let Some(main) = main_unit.as_deref()
        && !words.contains(&main)
    {
        words.push(main);
    }
    if let Some(per) = per_unit.as_deref() {
        // `per_second` is two words in the name.
        let already = words.len() >= 2
            && words[words.len() - 2] == "per"
            && words.last().copied() == per.strip_prefix("per_");
        if !already {
            words.push(per);
        }
    }
    let ratio = unit.trim() == "1" && source == Source::Gauge;
    if ratio {
        words.retain(|w| *w != "ratio");
        words.push("ratio");
    }
    if source == Source::MonotonicSum {
        words.retain(|w| *w != "total");
    }
    if words.is_empty() {
        return None;
    }
    let mut family = words.join("_");
    if family.starts_with(|c: char| c.is_ascii_digit()) {
        family.insert(0, '_');
    }
    let unit_word = if ratio {
        Some("ratio".to_owned())
    } else {
        match (main_unit, per_unit) {
            (Some(main), Some(per)) => Some(format!("{main}_{per}")),
            (Some(main), None) => Some(main),
            (None, Some(per)) => Some(per),
            (None, None) => None,
        }
    };
    let unit = unit_word.filter(|u| {
        family.len() > u.len()
            && family.ends_with(u.as_str())
            && family.as_bytes()[family.len() - u.len() - 1] == b'_'
    });
    Some(MetricName { family, unit })
}

/// The Prometheus label name of an attribute key, or `None` when the key is empty.
pub(crate) fn label_name(key: &str) -> Option<Cow<'_, str>> {
    if key.is_empty() {
        return None;
    }
    let valid_chars = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let needs_prefix = key.starts_with(|c: char| c.is_ascii_digit())
        || (key.starts_with('_') && !key.starts_with("__"));
    if valid_chars && !needs_prefix {
        return Some(Cow::Borrowed(key));
    }
    let mut out = String::with_capacity(key.len() + 4);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    } else if key.starts_with('_') && !key.starts_with("__") {
        out.push_str("key");
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    Some(Cow::Owned(out))
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The unit's words: the main unit (`seconds`) and the per unit (`per_second`), each `None`
/// when absent, an annotation in braces, or dimensionless (`1`).
fn unit_words(unit: &str) -> (Option<String>, Option<String>) {
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (unit.trim(), None),
    };
    let is_unit = |u: &&str| !u.is_empty() && !u.contains(['{', '}']);
    let main = Some(main)
        .filter(is_unit)
        .and_then(|m| clean_unit(main_unit_word(m)));
    let per = per
        .filter(is_unit)
        .and_then(|p| clean_unit(per_unit_word(p)))
        .map(|p| format!("per_{p}"));
    (main, per)
}

/// UCUM units as the words Prometheus names carry; unknown units stay as they are.
fn main_unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The denominators of rates, singular.
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// Only `[a-zA-Z0-9]` runs joined by single `_`; `None` when nothing is left.
fn clean_unit(word: &str) -> Option<String> {
    let cleaned = word
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(otlp: &str, unit: &str, source: Source) -> (String, Option<String>) {
        let n = metric_name(otlp, unit, source).expect("a name");
        (n.family, n.unit)
    }

    fn exposed(otlp: &str, unit: &str, source: Source) -> String {
        let (family, _) = name(otlp, unit, source);
        if source == Source::MonotonicSum {
            format!("{family}_total")
        } else {
            family
        }
    }

    #[test]
    fn semantic_convention_names_get_unit_and_type_suffixes() {
        assert_eq!(
            name("http.server.request.duration", "s", Source::Histogram),
            (
                "http_server_request_duration_seconds".to_owned(),
                Some("seconds".to_owned())
            )
        );
        assert_eq!(
            exposed("http.server.request.duration", "s", Source::Histogram),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            exposed("db.client.operation.duration", "s", Source::Histogram),
            "db_client_operation_duration_seconds"
        );
        assert_eq!(
            exposed(
                "http.server.active_requests",
                "{request}",
                Source::NonMonotonicSum
            ),
            "http_server_active_requests"
        );
        assert_eq!(
            exposed("fertivision.analyses", "{analysis}", Source::MonotonicSum),
            "fertivision_analyses_total"
        );
        assert_eq!(
            exposed("system.memory.usage", "By", Source::NonMonotonicSum),
            "system_memory_usage_bytes"
        );
        assert_eq!(
            exposed("network.io", "By", Source::MonotonicSum),
            "network_io_bytes_total"
        );
        assert_eq!(
            name("network.io", "By", Source::MonotonicSum).1.as_deref(),
            Some("bytes")
        );
    }

    #[test]
    fn invalid_characters_and_repeated_separators_collapse() {
        assert_eq!(
            exposed("(lambda).function.executions(#)", "", Source::Gauge),
            "lambda_function_executions"
        );
        assert_eq!(exposed("a..b__c-d e", "", Source::Gauge), "a_b_c_d_e");
        assert_eq!(
            exposed("_leading.trailing_", "", Source::Gauge),
            "leading_trailing"
        );
        assert_eq!(exposed("größe", "", Source::Gauge), "gr_e");
        assert_eq!(exposed("ns:rule.name", "", Source::Gauge), "ns:rule_name");
        assert_eq!(
            exposed("2xx.responses", "", Source::MonotonicSum),
            "_2xx_responses_total"
        );
        assert_eq!(metric_name("...", "", Source::Gauge), None);
        assert_eq!(
            metric_name("", "s", Source::Gauge).map(|n| n.family),
            Some("seconds".to_owned())
        );
    }

    #[test]
    fn units_are_not_repeated_and_rates_get_per() {
        assert_eq!(
            exposed("request.duration.seconds", "s", Source::Histogram),
            "request_duration_seconds"
        );
        assert_eq!(
            exposed("throughput", "By/s", Source::Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(
            name("throughput", "By/s", Source::Gauge).1.as_deref(),
            Some("bytes_per_second")
        );
        assert_eq!(
            exposed("jobs.rate", "{job}/min", Source::Gauge),
            "jobs_rate_per_min"
        );
        assert_eq!(
            exposed("disk.bytes.per.second", "By/s", Source::Gauge),
            "disk_bytes_per_second"
        );
        assert_eq!(
            exposed("latency", "ms", Source::Histogram),
            "latency_milliseconds"
        );
        assert_eq!(
            exposed("temperature", "Cel", Source::Gauge),
            "temperature_celsius"
        );
        assert_eq!(exposed("odd", "foo.bar", Source::Gauge), "odd_foo_bar");
        assert_eq!(name("queue.depth", "{job}", Source::Gauge).1, None);
    }

    #[test]
    fn counters_end_in_total_once_and_ratios_in_ratio() {
        assert_eq!(
            exposed("requests.total", "", Source::MonotonicSum),
            "requests_total"
        );
        assert_eq!(
            name("requests.total", "", Source::MonotonicSum).0,
            "requests"
        );
        assert_eq!(
            exposed("cpu.time", "s", Source::MonotonicSum),
            "cpu_time_seconds_total"
        );
        assert_eq!(
            name("cpu.time", "s", Source::MonotonicSum).1.as_deref(),
            Some("seconds")
        );
        assert_eq!(
            exposed("requests.total", "", Source::NonMonotonicSum),
            "requests_total"
        );
        assert_eq!(
            exposed("cpu.utilization", "1", Source::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            name("cpu.utilization", "1", Source::Gauge).1.as_deref(),
            Some("ratio")
        );
        assert_eq!(exposed("hit.ratio", "1", Source::Gauge), "hit_ratio");
        assert_eq!(exposed("items", "1", Source::MonotonicSum), "items_total");
        assert_eq!(exposed("items", "1", Source::NonMonotonicSum), "items");
    }

    #[test]
    fn unit_word_only_when_the_name_ends_with_it() {
        assert_eq!(
            name("seconds.spent.waiting", "s", Source::Gauge),
            ("seconds_spent_waiting".to_owned(), None)
        );
        assert_eq!(name("plain", "", Source::Gauge), ("plain".to_owned(), None));
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(label_name("method").as_deref(), Some("method"));
        assert!(matches!(label_name("method"), Some(Cow::Borrowed(_))));
        assert_eq!(
            label_name("http.request.method").as_deref(),
            Some("http_request_method")
        );
        assert_eq!(label_name("k8s-pod/name").as_deref(), Some("k8s_pod_name"));
        assert_eq!(label_name("2fa").as_deref(), Some("key_2fa"));
        assert_eq!(label_name("_private").as_deref(), Some("key_private"));
        assert_eq!(label_name("__reserved").as_deref(), Some("__reserved"));
        assert_eq!(label_name("ключ").as_deref(), Some("____"));
        assert_eq!(label_name(""), None);
    }
}
