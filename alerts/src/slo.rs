//! Multi-window, multi-burn-rate alerts for one SLO of the catalogue (the Google SRE
//! workbook, "Alerting on SLOs", its sixth and recommended scheme).
//!
//! The error ratio is recorded over seven windows; an alert fires when both a long and a short
//! window burn the 30-day error budget faster than a threshold (the short window makes it stop
//! soon after the problem does):
//!
//! | severity | long window | short window | burn rate | budget spent when it fires |
//! | --- | --- | --- | ---: | ---: |
//! | page | 1h | 5m | 14.4 | 2 % |
//! | page | 6h | 30m | 6 | 5 % |
//! | ticket | 1d | 2h | 3 | 10 % |
//! | ticket | 3d | 6h | 1 | 10 % |

use telemetry::catalogue::{Indicator, MetricDef, Slo};

use crate::{
    AlertRule, Check, Group, RecordingRule, Severity, events_suffix, le_matcher, number, selector,
};

/// The windows the error ratio is recorded over.
const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// A long window, a short window, and the burn rate both must pass.
type WindowPair = (&'static str, &'static str, f64);

/// Per severity, the two window pairs of which either fires it.
const SCHEME: [(Severity, [WindowPair; 2]); 2] = [
    (Severity::Page, [("1h", "5m", 14.4), ("6h", "30m", 6.0)]),
    (Severity::Ticket, [("1d", "2h", 3.0), ("3d", "6h", 1.0)]),
];

/// The recorded series of the error ratio over `window`.
fn ratio(slo: &Slo, window: &str) -> String {
    format!("slo:error_ratio:rate{window}{{slo=\"{}\"}}", slo.id)
}

/// The group of one SLO: its recording rules, its two alerts, and their checks.
pub(crate) fn group(def: &MetricDef, slo: &Slo) -> Group {
    let name = alert_name(slo);
    let budget = number(slo.budget());
    let records = WINDOWS
        .iter()
        .map(|window| RecordingRule {
            record: format!("slo:error_ratio:rate{window}"),
            expr: error_ratio(def, slo, window),
            labels: vec![("slo", slo.id.to_owned())],
        })
        .collect();
    let alerts = SCHEME
        .iter()
        .map(|(severity, pairs)| {
            let expr = pairs
                .iter()
                .map(|(long, short, rate)| {
                    let threshold = format!("({} * {budget})", number(*rate));
                    format!(
                        "(\n  {} > {threshold}\n  and\n  {} > {threshold}\n)",
                        ratio(slo, long),
                        ratio(slo, short)
                    )
                })
                .collect::<Vec<_>>()
                .join("\nor\n");
            let (pace, spent) = match severity {
                Severity::Page => (
                    "fast",
                    "2 % of the 30-day error budget in an hour, or 5 % in six hours",
                ),
                Severity::Ticket => (
                    "steady",
                    "10 % of the 30-day error budget in a day or three",
                ),
            };
            AlertRule {
                name,
                severity: *severity,
                expr,
                // No `for`: the short window already ends the alert soon after the problem
                // (the workbook's scheme), and a page should not wait.
                hold: None,
                labels: vec![("slo", slo.id.to_owned())],
                summary: format!(
                    "{{{{ $labels.job }}}} is burning the {} error budget at a {pace} pace",
                    slo.id
                ),
                description: format!(
                    "SLO {}: {} At this pace it spends {spent}. Indicator: {} ({}).",
                    slo.id,
                    slo.description,
                    def.prometheus_name(),
                    indicator_text(slo)
                ),
                dashboard: dashboard_of(def),
                log_query: "service:{{ $labels.job }} AND severity_number:>=13".to_owned(),
            }
        })
        .collect();
    Group {
        name: format!("slo-{}", slo.id),
        records,
        alerts,
        checks: checks(def, slo, name),
    }
}

/// `ApiAvailabilityBudgetBurn` for `api-availability`.
pub(crate) fn alert_name(slo: &Slo) -> &'static str {
    let camel: String = slo
        .id
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    // Leaked once per SLO at generation: the names live as long as the program.
    Box::leak(format!("{camel}BudgetBurn").into_boxed_str())
}

fn indicator_text(slo: &Slo) -> String {
    match slo.indicator {
        Indicator::Errors { label, bad } => format!("bad when {label} matches {bad}"),
        Indicator::Latency { threshold } => format!("good within {} s", number(threshold)),
    }
}

/// The dashboard an SLO's metric is drawn on.
fn dashboard_of(def: &MetricDef) -> &'static str {
    if def.name.starts_with("http.") {
        "fertivision-overview"
    } else {
        "fertivision-workers"
    }
}

/// The ratio of bad events to all over `window`, per service.
fn error_ratio(def: &MetricDef, slo: &Slo, window: &str) -> String {
    let events = slo.events;
    let total = selector(def, events_suffix(def), events);
    match slo.indicator {
        Indicator::Errors { label, bad } => {
            let mut matchers = events.to_vec();
            matchers.push((label, bad));
            let bad = selector(def, events_suffix(def), &matchers);
            format!(
                "sum by (job) (rate({bad}[{window}]))\n/\nsum by (job) (rate({total}[{window}]))"
            )
        }
        Indicator::Latency { threshold } => {
            let le = le_matcher(threshold);
            let mut matchers = events.to_vec();
            matchers.push(("le", le.as_str()));
            let good = selector(def, "_bucket", &matchers);
            format!(
                "1 - (\n  sum by (job) (rate({good}[{window}]))\n  /\n  sum by (job) (rate({total}[{window}]))\n)"
            )
        }
    }
}

/// Label values the checks feed an SLO with: (label, good, bad). A new error label needs a line.
const EXAMPLES: &[(&str, &str, &str)] = &[
    ("http.response.status_code", "200", "500"),
    ("outcome", "completed", "dead"),
];

/// The first alternative of a matcher's regular expression, as a concrete label value.
fn example(regex: &str) -> String {
    regex.split('|').next().unwrap_or_default().to_owned()
}

/// Three checks: a fast burn fires both alerts, a steady burn (4.5 times the budget's pace)
/// only the ticket, a healthy service neither. Three hours of samples, one a minute, 1000
/// events a minute.
fn checks(def: &MetricDef, slo: &Slo, alert: &'static str) -> Vec<Check> {
    let job = if def.name.starts_with("http.") {
        "fertivision-api"
    } else {
        "fertivision-worker"
    };
    let base: Vec<(String, String)> = slo
        .events
        .iter()
        .map(|(key, regex)| ((*key).to_owned(), example(regex)))
        .collect();
    let labels = |extra: &[(&str, String)]| -> Vec<(String, String)> {
        let mut all = vec![("job".to_owned(), job.to_owned())];
        for (key, value) in &base {
            if !extra.iter().any(|(k, _)| k == key) {
                all.push((key.clone(), value.clone()));
            }
        }
        all.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        all
    };
    let series = |bad_per_minute: f64| -> Vec<(String, String)> {
        let good = 1000.0 - bad_per_minute;
        match slo.indicator {
            Indicator::Errors { label, .. } => {
                let (_, good_value, bad_value) = EXAMPLES
                    .iter()
                    .find(|(key, _, _)| *key == label)
                    .copied()
                    .unwrap_or_else(|| {
                        panic!("alerts/src/slo.rs EXAMPLES has no line for {label}")
                    });
                let suffix = events_suffix(def);
                vec![
                    (
                        series_text(def, suffix, &labels(&[(label, good_value.to_owned())])),
                        format!("0+{}x180", number(good)),
                    ),
                    (
                        series_text(def, suffix, &labels(&[(label, bad_value.to_owned())])),
                        format!("0+{}x180", number(bad_per_minute)),
                    ),
                ]
            }
            Indicator::Latency { threshold } => vec![
                (
                    series_text(def, "_bucket", &labels(&[("le", format!("{threshold:?}"))])),
                    format!("0+{}x180", number(good)),
                ),
                (
                    series_text(def, "_count", &labels(&[])),
                    "0+1000x180".to_owned(),
                ),
            ],
        }
    };
    let fired = vec![("job", job.to_owned()), ("slo", slo.id.to_owned())];
    vec![
        Check {
            name: "half the events bad: both alerts".into(),
            alert,
            series: series(500.0),
            eval_time: "3h",
            expect: vec![
                (Severity::Page, fired.clone()),
                (Severity::Ticket, fired.clone()),
            ],
        },
        Check {
            name: "bad events at 4.5 times the budget's pace: the ticket only".into(),
            alert,
            series: series(4.5 * slo.budget() * 1000.0),
            eval_time: "3h",
            expect: vec![(Severity::Ticket, fired)],
        },
        Check {
            name: "no bad events: quiet".into(),
            alert,
            series: series(0.0),
            eval_time: "3h",
            expect: vec![],
        },
    ]
}

/// A series in promtool's notation: `name{a="b", ...}`.
fn series_text(def: &MetricDef, suffix: &str, labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(key, value)| {
            let key = if key.contains('.') {
                MetricDef::prometheus_label(key)
            } else {
                key.clone()
            };
            format!("{key}=\"{value}\"")
        })
        .collect();
    format!("{}{suffix}{{{}}}", def.prometheus_name(), inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fertivision::otel::catalogue::{API_AVAILABILITY, HTTP_SERVER_REQUEST_DURATION};

    #[test]
    fn alert_names_are_camel_case() {
        assert_eq!(alert_name(&API_AVAILABILITY), "ApiAvailabilityBudgetBurn");
    }

    #[test]
    fn the_availability_ratio_divides_bad_by_all_per_service() {
        assert_eq!(
            error_ratio(&HTTP_SERVER_REQUEST_DURATION, &API_AVAILABILITY, "5m"),
            "sum by (job) (rate(http_server_request_duration_seconds_count{http_response_status_code=~\"5..\"}[5m]))\n/\nsum by (job) (rate(http_server_request_duration_seconds_count[5m]))"
        );
    }
}
