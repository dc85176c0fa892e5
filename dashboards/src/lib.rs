//! FertiVision's Grafana dashboards, generated from the metric catalogue
//! (`fertivision::otel::catalogue` for the API and the workers,
//! `telemetry::catalogue::collector` for the collector): every query names its metric through
//! the declaration, so a renamed metric changes the dashboards with it, and a test fails when a
//! declared metric is drawn nowhere.
//!
//! Six dashboards (schema version 42, Grafana 13's): service overview, workers and queue,
//! dependencies and circuit breakers, cache and rate limits, collector pipeline, log index.
//! Each has `job` (the service) and `instance` variables, links to the others, and data links
//! from its panels to the log search and the trace search of the service in the panel's time
//! range; latency panels show exemplars, which open the trace.

use serde_json::{Value, json};
use telemetry::catalogue::{Indicator, MetricDef};

mod boards;

pub use boards::all;

/// Grafana's schema version of the dashboards (`@grafana/schema` 13.2.3).
pub const SCHEMA_VERSION: u32 = 42;
/// The uid of the provisioned Prometheus datasource (`compose/grafana/provisioning`).
pub const PROMETHEUS_UID: &str = "prometheus";
/// Tag of every generated dashboard (the dashboard links list them by it).
pub const TAG: &str = "fertivision";

/// Where the data links point.
#[derive(Debug, Clone)]
pub struct Links {
    /// The collector's query API as the operator's browser reaches it.
    pub query: String,
}

impl Default for Links {
    /// The compose deployment's collector port on the operator's machine.
    fn default() -> Self {
        Links {
            query: "http://localhost:7070".into(),
        }
    }
}

/// How a panel draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Lines over time.
    Lines,
    /// One number, its latest value.
    Stat,
}

/// One panel.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Its title.
    pub title: String,
    /// What it shows (from the metric's help).
    pub description: String,
    /// How it draws.
    pub style: Style,
    /// Grafana unit (`reqps`, `s`, `percentunit`, `bytes`, `short`).
    pub unit: &'static str,
    /// `(PromQL, legend)` per query.
    pub queries: Vec<(String, String)>,
    /// Whether the queries ask for exemplars (latency histograms: the trace of a point).
    pub exemplars: bool,
}

/// A titled row of panels.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its title.
    pub title: &'static str,
    /// Its panels, two to a line.
    pub panels: Vec<Panel>,
}

/// One dashboard.
#[derive(Debug, Clone)]
pub struct Board {
    /// Stable uid: the alerts link to `/d/<uid>`.
    pub uid: &'static str,
    /// Title shown in Grafana.
    pub title: &'static str,
    /// One sentence on what it is for.
    pub description: &'static str,
    /// The metric whose series list the services and instances of the variables.
    pub services_from: &'static MetricDef,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// The selector of the variables, for every query: `{job=~"$job", instance=~"$instance"}`.
pub const SCOPE: &str = r#"job=~"$job", instance=~"$instance""#;

/// `def`'s series `suffix` with the scope and `extra` matchers (already in PromQL form).
pub fn series(def: &MetricDef, suffix: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{}{suffix}{{{SCOPE}{extra}}}", def.prometheus_name())
}

/// `label` of `def` as Prometheus names it.
pub fn label(key: &str) -> String {
    MetricDef::prometheus_label(key)
}

/// Per-second rate of a counter, summed by `by`.
pub fn rate(def: &MetricDef, by: &str, extra: &str) -> String {
    let suffix = if def.kind == telemetry::catalogue::MetricKind::Histogram {
        "_count"
    } else {
        "_total"
    };
    format!(
        "sum by ({by}) (rate({}[$__rate_interval]))",
        series(def, suffix, extra)
    )
}

/// The `q`-quantile of a histogram, by `by`.
pub fn quantile(def: &MetricDef, q: f64, by: &str) -> String {
    let by = if by.is_empty() {
        "le".to_owned()
    } else {
        format!("{by}, le")
    };
    format!(
        "histogram_quantile({q}, sum by ({by}) (rate({}[$__rate_interval])))",
        series(def, "_bucket", "")
    )
}

/// A panel of lines.
pub fn lines(
    title: &str,
    def: &MetricDef,
    unit: &'static str,
    queries: Vec<(String, String)>,
) -> Panel {
    Panel {
        title: title.to_owned(),
        description: def.help.to_owned(),
        style: Style::Lines,
        unit,
        queries,
        exemplars: false,
    }
}

/// A panel of p50 and p99 of a histogram by `by` (legend from `legend`), with exemplars.
pub fn latency(title: &str, def: &MetricDef, by: &str, legend: &str) -> Panel {
    let sep = if legend.is_empty() { "" } else { " " };
    Panel {
        title: title.to_owned(),
        description: format!(
            "{} p50 and p99; the dots are exemplars: click one for its trace.",
            def.help
        ),
        style: Style::Lines,
        unit: "s",
        queries: vec![
            (quantile(def, 0.5, by), format!("p50{sep}{legend}")),
            (quantile(def, 0.99, by), format!("p99{sep}{legend}")),
        ],
        exemplars: true,
    }
}

/// A one-number panel.
pub fn stat(title: &str, description: &str, unit: &'static str, query: String) -> Panel {
    Panel {
        title: title.to_owned(),
        description: description.to_owned(),
        style: Style::Stat,
        unit,
        queries: vec![(query, String::new())],
        exemplars: false,
    }
}

/// The burn-rate panel of every SLO of `defs`: how fast the 30-day error budget is spent over
/// the last hour (1 = exactly on budget), from the alert rules' recorded error ratios.
pub fn burn_rates(defs: &[&MetricDef]) -> Option<Panel> {
    let queries: Vec<(String, String)> = defs
        .iter()
        .flat_map(|def| def.slos)
        .map(|slo| {
            (
                format!(
                    "slo:error_ratio:rate1h{{slo=\"{}\", job=~\"$job\"}} / {}",
                    slo.id,
                    slo.budget()
                ),
                format!("{} {{{{job}}}}", slo.id),
            )
        })
        .collect();
    if queries.is_empty() {
        return None;
    }
    let described: Vec<String> = defs
        .iter()
        .flat_map(|def| def.slos)
        .map(|slo| {
            let kind = match slo.indicator {
                Indicator::Errors { .. } => "availability",
                Indicator::Latency { .. } => "latency",
            };
            format!("{} ({kind}): {}", slo.id, slo.description)
        })
        .collect();
    Some(Panel {
        title: "SLO burn rate (1 h)".into(),
        description: format!(
            "How fast each SLO spends its 30-day error budget, over the last hour; 1 spends it \
             exactly in 30 days, 14.4 pages. {}",
            described.join(" ")
        ),
        style: Style::Lines,
        unit: "short",
        queries,
        exemplars: false,
    })
}

/// The dashboard as Grafana's JSON model.
pub fn render(board: &Board, links: &Links) -> Value {
    let datasource = json!({ "type": "prometheus", "uid": PROMETHEUS_UID });
    let mut panels = Vec::new();
    let mut id = 1;
    let mut y = 0;
    for row in &board.rows {
        panels.push(json!({
            "type": "row",
            "id": id,
            "title": row.title,
            "collapsed": false,
            "panels": [],
            "gridPos": { "h": 1, "w": 24, "x": 0, "y": y },
        }));
        id += 1;
        y += 1;
        for (i, panel) in row.panels.iter().enumerate() {
            let x = if i % 2 == 0 { 0 } else { 12 };
            panels.push(panel_json(panel, id, x, y, &datasource, links));
            id += 1;
            if i % 2 == 1 || i + 1 == row.panels.len() {
                y += 8;
            }
        }
    }
    let variable = |name: &str, query: String| {
        json!({
            "name": name,
            "label": name,
            "type": "query",
            "datasource": datasource,
            "definition": query,
            "query": { "qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery" },
            "refresh": 2,
            "includeAll": true,
            "multi": true,
            "allValue": ".*",
            "sort": 1,
        })
    };
    let metric = board.services_from.prometheus_series();
    json!({
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": [TAG],
        "timezone": "browser",
        "editable": true,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": { "from": "now-6h", "to": "now" },
        "annotations": { "list": [{
            "name": "Annotations & Alerts",
            "builtIn": 1,
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "type": "dashboard",
            "datasource": { "type": "grafana", "uid": "-- Grafana --" },
        }] },
        "links": [{
            "title": "FertiVision",
            "type": "dashboards",
            "tags": [TAG],
            "asDropdown": true,
            "icon": "external link",
            "includeVars": true,
            "keepTime": true,
            "targetBlank": false,
            "tooltip": "The other FertiVision dashboards",
            "url": "",
        }],
        "templating": { "list": [
            variable("job", format!("label_values({metric}, job)")),
            variable("instance", format!("label_values({metric}{{job=~\"$job\"}}, instance)")),
        ] },
        "panels": panels,
    })
}

fn panel_json(panel: &Panel, id: u32, x: u32, y: u32, datasource: &Value, links: &Links) -> Value {
    let refs = ["A", "B", "C", "D", "E", "F", "G", "H"];
    let targets: Vec<Value> = panel
        .queries
        .iter()
        .zip(refs)
        .map(|((expr, legend), ref_id)| {
            let mut target = json!({
                "refId": ref_id,
                "datasource": datasource,
                "expr": expr,
                "legendFormat": if legend.is_empty() { "__auto" } else { legend.as_str() },
                "range": panel.style == Style::Lines,
                "instant": panel.style == Style::Stat,
            });
            if panel.exemplars {
                target["exemplar"] = json!(true);
            }
            target
        })
        .collect();
    let query = links.query.trim_end_matches('/');
    // The service of the series under the pointer, or every service of the variable.
    let data_links = json!([
        {
            "title": "Logs of ${__field.labels.job} in this range",
            "url": format!("{query}/api/v1/logs/search?q=service%3A${{__field.labels.job}}&start=${{__from:date:iso}}&end=${{__to:date:iso}}"),
            "targetBlank": true,
        },
        {
            "title": "Traces of ${__field.labels.job} in this range",
            "url": format!("{query}/api/traces?service=${{__field.labels.job}}&start=${{__from}}000&end=${{__to}}000&limit=20"),
            "targetBlank": true,
        },
        {
            "title": "Errors of ${__field.labels.job} in this range",
            "url": format!("{query}/api/v1/logs/search?q=service%3A${{__field.labels.job}}%20AND%20severity_number%3A%3E%3D17&start=${{__from:date:iso}}&end=${{__to:date:iso}}"),
            "targetBlank": true,
        },
    ]);
    let mut value = json!({
        "type": match panel.style { Style::Lines => "timeseries", Style::Stat => "stat" },
        "id": id,
        "title": panel.title,
        "description": panel.description,
        "datasource": datasource,
        "gridPos": { "h": 8, "w": 12, "x": x, "y": y },
        "targets": targets,
        "fieldConfig": {
            "defaults": { "unit": panel.unit, "links": data_links },
            "overrides": [],
        },
    });
    value["options"] = match panel.style {
        Style::Lines => json!({
            "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true },
            "tooltip": { "mode": "multi", "sort": "desc" },
        }),
        Style::Stat => json!({
            "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
            "colorMode": "value",
            "graphMode": "area",
        }),
    };
    value
}

/// Every dashboard as `(file name, pretty JSON)`.
pub fn generate(links: &Links) -> anyhow::Result<Vec<(String, String)>> {
    all()
        .iter()
        .map(|board| {
            let text = serde_json::to_string_pretty(&render(board, links))?;
            Ok((format!("{}.json", board.uid), format!("{text}\n")))
        })
        .collect()
}
