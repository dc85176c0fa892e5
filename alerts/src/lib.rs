//! FertiVision's Prometheus alert rules and their `promtool test rules` unit tests, generated
//! from the metric catalogue (`fertivision::otel::catalogue` for the API and the workers,
//! `telemetry::catalogue::collector` for the collector), so that a renamed metric or a changed
//! SLO cannot leave a rule behind.
//!
//! What is generated:
//! - per SLO of the catalogue, recording rules of its error ratio over the windows of the
//!   Google SRE workbook (5m to 3d) and two multi-window, multi-burn-rate alerts of the same
//!   name: `page` (2 % of the 30-day budget in 1 h, or 5 % in 6 h) and `ticket` (10 % in 3 d,
//!   or the whole budget at the rate that spends it in 30 d);
//! - the operational alerts: breakers, the job queue, dead letters, the collector refusing or
//!   dropping data, its log near full, the index at its size limit, scrape targets down or
//!   absent, telemetry lost on the way to the collector.
//!
//! Every alert carries `severity`, a summary, a description, a runbook
//! (`alerts/runbooks/<alert>.md`), its dashboard and a pre-filtered log search; every alert has
//! a test in which it fires and one in which it stays quiet ([`Check`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use telemetry::catalogue::{MetricDef, MetricKind};

mod operational;

pub use operational::COLLECTOR_JOB;
mod slo;

/// Where the links of the annotations point.
#[derive(Debug, Clone)]
pub struct Links {
    /// Grafana's base URL (`/d/<uid>` is appended).
    pub grafana: String,
    /// The collector's query API (`/api/v1/logs/search` is appended).
    pub query: String,
    /// The base the runbook file names are appended to.
    pub runbooks: String,
}

impl Default for Links {
    /// The compose deployment's ports on the operator's machine, and the runbooks in this
    /// repository.
    fn default() -> Self {
        Links {
            grafana: "http://localhost:3000".into(),
            query: "http://localhost:7070".into(),
            runbooks: "alerts/runbooks/".into(),
        }
    }
}

/// How urgent an alert is: the Alertmanager routes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Someone must act now, day or night.
    Page,
    /// Someone must act within working hours.
    Ticket,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One alerting rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// The alert's name; two rules may share it with different severities.
    pub name: &'static str,
    /// Its urgency.
    pub severity: Severity,
    /// The PromQL condition; each result series is one alert.
    pub expr: String,
    /// How long the condition must hold first (`None`: fire at once).
    pub hold: Option<&'static str>,
    /// Labels added to the alert besides `severity`.
    pub labels: Vec<(&'static str, String)>,
    /// One line for the notification's title; may name labels as `{{ $labels.x }}`.
    pub summary: String,
    /// What is happening and what it costs the clinic; may name labels.
    pub description: String,
    /// The uid of the dashboard to open.
    pub dashboard: &'static str,
    /// The log search that shows what went wrong; may name labels.
    pub log_query: String,
}

/// A recording rule.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// The recorded series' name.
    pub record: String,
    /// What it records.
    pub expr: String,
    /// Labels added to it.
    pub labels: Vec<(&'static str, String)>,
}

/// One `promtool test rules` case: input series, and which alerts of one name must be firing
/// at `eval_time` (none: it must stay quiet).
#[derive(Debug, Clone)]
pub struct Check {
    /// What the case shows.
    pub name: String,
    /// The alert checked.
    pub alert: &'static str,
    /// `(series, values)` in promtool's notation, sampled every minute.
    pub series: Vec<(String, String)>,
    /// When the alerts are looked at (`90m`).
    pub eval_time: &'static str,
    /// The firing alerts expected: severity and the labels the expression gives them.
    pub expect: Vec<(Severity, Vec<(&'static str, String)>)>,
}

/// A group of rules with its checks.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// The group's name in the rule file.
    pub name: String,
    /// Recording rules, evaluated before the alerts.
    pub records: Vec<RecordingRule>,
    /// Alerting rules.
    pub alerts: Vec<AlertRule>,
    /// Their tests.
    pub checks: Vec<Check>,
}

/// Every group: the SLOs' recording rules and burn-rate alerts, then the operational alerts.
pub fn groups() -> Vec<Group> {
    let mut groups: Vec<Group> = fertivision::otel::catalogue::ALL
        .iter()
        .flat_map(|def| def.slos.iter().map(move |slo| slo::group(def, slo)))
        .collect();
    groups.push(operational::group());
    groups
}

/// The rule file and the test file (which reads the rule file as `rules_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// `rules/fertivision.rules.yml`.
    pub rules: String,
    /// `tests/fertivision.test.yml`.
    pub tests: String,
}

/// Where the files go under the output folder, and how the test file names the rules.
pub const RULES_FILE: &str = "rules/fertivision.rules.yml";
/// See [`RULES_FILE`].
pub const TESTS_FILE: &str = "tests/fertivision.test.yml";
const RULES_FROM_TESTS: &str = "../rules/fertivision.rules.yml";

const HEADER: &str =
    "# Generated by `cargo run -p alerts` from the metric catalogue; do not edit.\n";

/// Renders `groups` as Prometheus rule and test files, with links under `links`.
pub fn render(groups: &[Group], links: &Links) -> anyhow::Result<Generated> {
    let rules = RuleFile {
        groups: groups
            .iter()
            .map(|group| RuleGroup {
                name: group.name.clone(),
                rules: group
                    .records
                    .iter()
                    .map(|record| Rule::Record {
                        record: record.record.clone(),
                        expr: record.expr.clone(),
                        labels: to_map(&record.labels),
                    })
                    .chain(group.alerts.iter().map(|alert| Rule::Alert {
                        alert: alert.name.to_owned(),
                        expr: alert.expr.clone(),
                        hold: alert.hold.map(str::to_owned),
                        labels: alert_labels(alert),
                        annotations: annotations(alert, links),
                    }))
                    .collect(),
            })
            .collect(),
    };
    let mut cases = Vec::new();
    for group in groups {
        for check in &group.checks {
            cases.push(test_case(group, check, links)?);
        }
    }
    let tests = TestFile {
        rule_files: vec![RULES_FROM_TESTS.to_owned()],
        evaluation_interval: "1m".into(),
        tests: cases,
    };
    Ok(Generated {
        rules: format!("{HEADER}{}", serde_norway::to_string(&rules)?),
        tests: format!("{HEADER}{}", serde_norway::to_string(&tests)?),
    })
}

/// What is wrong with the groups, if anything: an alert without a runbook file under
/// `runbook_dir`, or without a check that fires it and one that keeps it quiet; an
/// annotation naming a label its expression does not keep.
pub fn problems(groups: &[Group], runbook_dir: &std::path::Path) -> Vec<String> {
    let mut problems = Vec::new();
    for group in groups {
        for alert in &group.alerts {
            let runbook = runbook_dir.join(format!("{}.md", alert.name));
            if !runbook.is_file() {
                problems.push(format!(
                    "{}: no runbook at {}",
                    alert.name,
                    runbook.display()
                ));
            }
            let checks: Vec<&Check> = group
                .checks
                .iter()
                .filter(|c| c.alert == alert.name)
                .collect();
            if !checks
                .iter()
                .any(|c| c.expect.iter().any(|(s, _)| *s == alert.severity))
            {
                problems.push(format!(
                    "{} ({}): no check in which it fires",
                    alert.name,
                    alert.severity.as_str()
                ));
            }
            if !checks.iter().any(|c| c.expect.is_empty()) {
                problems.push(format!("{}: no check in which it stays quiet", alert.name));
            }
        }
    }
    problems
}

// The serialised shapes: Prometheus' rule file and promtool's test file.

#[derive(Serialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Serialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Rule {
    Record {
        record: String,
        expr: String,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
    },
    Alert {
        alert: String,
        expr: String,
        #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
        hold: Option<String>,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
}

#[derive(Serialize)]
struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: String,
    tests: Vec<TestCase>,
}

#[derive(Serialize)]
struct TestCase {
    name: String,
    interval: String,
    input_series: Vec<InputSeries>,
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Serialize)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Serialize)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Serialize)]
struct ExpectedAlert {
    exp_labels: BTreeMap<String, String>,
    exp_annotations: BTreeMap<String, String>,
}

fn to_map(pairs: &[(&'static str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn alert_labels(alert: &AlertRule) -> BTreeMap<String, String> {
    let mut labels = to_map(&alert.labels);
    labels.insert("severity".into(), alert.severity.as_str().into());
    labels
}

fn annotations(alert: &AlertRule, links: &Links) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("summary".into(), alert.summary.clone());
    out.insert("description".into(), alert.description.clone());
    out.insert(
        "runbook_url".into(),
        format!("{}{}.md", links.runbooks, alert.name),
    );
    out.insert(
        "dashboard".into(),
        format!(
            "{}/d/{}",
            links.grafana.trim_end_matches('/'),
            alert.dashboard
        ),
    );
    out.insert(
        "logs".into(),
        format!(
            "{}/api/v1/logs/search?start=1h&q={}",
            links.query.trim_end_matches('/'),
            url_query(&alert.log_query)
        ),
    );
    out
}

/// Percent-encodes a query parameter, leaving `{{ $labels.x }}` templates as they are (label
/// values in this platform are service, dependency and sink names: URL-safe).
fn url_query(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with("{{")
            && let Some(end) = rest.find("}}")
        {
            out.push_str(&rest[..end + 2]);
            rest = &rest[end + 2..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        if c.is_ascii_alphanumeric() || "-_.~".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Fills `{{ $labels.x }}` the way Prometheus will, for the expected annotations.
fn fill(template: &str, labels: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("unclosed template in {template:?}"))?;
        let inner = rest[start + 2..start + end].trim();
        let label = inner.strip_prefix("$labels.").ok_or_else(|| {
            anyhow::anyhow!("only {{{{ $labels.x }}}} is supported: {template:?}")
        })?;
        let value = labels
            .get(label)
            .ok_or_else(|| anyhow::anyhow!("{template:?} names {label}, which the alert lacks"))?;
        out.push_str(value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn test_case(group: &Group, check: &Check, links: &Links) -> anyhow::Result<TestCase> {
    let mut exp_alerts = Vec::new();
    for (severity, labels) in &check.expect {
        let rule = group
            .alerts
            .iter()
            .find(|a| a.name == check.alert && a.severity == *severity)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "check {:?}: no {} rule {}",
                    check.name,
                    severity.as_str(),
                    check.alert
                )
            })?;
        let mut exp_labels = alert_labels(rule);
        exp_labels.extend(to_map(labels));
        let exp_annotations = annotations(rule, links)
            .into_iter()
            .map(|(k, v)| Ok((k, fill(&v, &exp_labels)?)))
            .collect::<anyhow::Result<_>>()?;
        exp_alerts.push(ExpectedAlert {
            exp_labels,
            exp_annotations,
        });
    }
    Ok(TestCase {
        name: format!("{}: {}", check.alert, check.name),
        interval: "1m".into(),
        input_series: check
            .series
            .iter()
            .map(|(series, values)| InputSeries {
                series: series.clone(),
                values: values.clone(),
            })
            .collect(),
        alert_rule_test: vec![AlertTest {
            eval_time: check.eval_time.into(),
            alertname: check.alert.into(),
            exp_alerts,
        }],
    })
}

/// A PromQL selector of `def`'s series `suffix` (`_count`, `_bucket`, `_total` or nothing)
/// with `matchers` (label keys in OpenTelemetry form, `=~` regular expressions).
pub fn selector(def: &MetricDef, suffix: &str, matchers: &[(&str, &str)]) -> String {
    let mut out = format!("{}{suffix}", def.prometheus_name());
    if !matchers.is_empty() {
        out.push('{');
        for (i, (key, value)) in matchers.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let label = if key.contains('.') {
                MetricDef::prometheus_label(key)
            } else {
                (*key).to_owned()
            };
            let op = if value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                "="
            } else {
                "=~"
            };
            let _ = write!(out, "{label}{op}\"{}\"", value.replace('\\', "\\\\"));
        }
        out.push('}');
    }
    out
}

/// The series of events a counter or histogram counts: `_total` or `_count`.
fn events_suffix(def: &MetricDef) -> &'static str {
    match def.kind {
        MetricKind::Histogram => "_count",
        _ => "_total",
    }
}

/// A number as PromQL writes it: no float noise (`0.001`, not `0.0010000000000000009`).
pub fn number(value: f64) -> String {
    let rounded = (value * 1e9).round() / 1e9;
    format!("{rounded}")
}

/// The `le` matcher of a bucket bound, as the collector writes it (`60.0`) or as Prometheus
/// 3 normalises it (`60`).
fn le_matcher(threshold: f64) -> String {
    let debug = format!("{threshold:?}");
    let display = number(threshold);
    if debug == display {
        display
    } else {
        format!("{display}|{debug}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_encoded_but_templates_kept() {
        assert_eq!(
            url_query("severity_number:>=17 AND service:{{ $labels.job }}"),
            "severity_number%3A%3E%3D17%20AND%20service%3A{{ $labels.job }}"
        );
    }

    #[test]
    fn templates_are_filled_from_the_labels() {
        let labels = BTreeMap::from([("job".to_owned(), "fertivision-api".to_owned())]);
        assert_eq!(
            fill("{{ $labels.job }} is down", &labels).unwrap(),
            "fertivision-api is down"
        );
        assert!(fill("{{ $labels.nope }}", &labels).is_err());
        assert!(fill("{{ $value }}", &labels).is_err());
    }

    #[test]
    fn numbers_and_bucket_bounds_are_written_as_prometheus_reads_them() {
        assert_eq!(number(1.0 - 0.999), "0.001");
        assert_eq!(number(14.4), "14.4");
        assert_eq!(le_matcher(0.02), "0.02");
        assert_eq!(le_matcher(60.0), "60|60.0");
    }

    #[test]
    fn every_alert_has_a_runbook_and_checks_both_ways() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
        assert_eq!(problems(&groups(), &dir), Vec::<String>::new());
    }
}
