//! The committed dashboards are what the catalogue generates, Grafana's dashboard schema
//! (derived from `@grafana/schema`, `dashboards/schema/`) accepts each of them, and every
//! declared metric is drawn somewhere.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_dashboards_are_current() {
    let fresh = dashboards::generate(&dashboards::Links::default()).expect("generate");
    let committed: BTreeSet<String> = std::fs::read_dir(dir().join("generated"))
        .expect("dashboards/generated; run `cargo run -p dashboards`")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let names: BTreeSet<String> = fresh.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(committed, names, "run `cargo run -p dashboards`");
    for (name, text) in fresh {
        let on_disk = std::fs::read_to_string(dir().join("generated").join(&name)).expect("read");
        assert!(
            on_disk == text,
            "{name} differs from what the catalogue generates; run `cargo run -p dashboards`"
        );
    }
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(dir().join("schema/dashboard.schema.json")).expect("schema");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn errors(validator: &jsonschema::Validator, dashboard: &Value) -> Vec<String> {
    validator
        .iter_errors(dashboard)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn grafanas_schema_accepts_every_dashboard() {
    let validator = schema();
    for board in dashboards::all() {
        let json = dashboards::render(&board, &dashboards::Links::default());
        assert_eq!(
            errors(&validator, &json),
            Vec::<String>::new(),
            "{}",
            board.uid
        );
        assert_eq!(json["schemaVersion"], dashboards::SCHEMA_VERSION);
    }
}

#[test]
fn the_schema_rejects_a_broken_dashboard() {
    // The check above can fail: a panel without a height and a schema version as a string.
    let validator = schema();
    let mut json = dashboards::render(&dashboards::all()[0], &dashboards::Links::default());
    json["panels"][1]["gridPos"]
        .as_object_mut()
        .expect("gridPos")
        .remove("h");
    json["schemaVersion"] = Value::String("42".into());
    let found = errors(&validator, &json);
    assert!(found.len() >= 2, "{found:?}");
}

#[test]
fn panels_have_unique_ids_and_do_not_overlap() {
    for board in dashboards::all() {
        let json = dashboards::render(&board, &dashboards::Links::default());
        let panels = json["panels"].as_array().expect("panels");
        let mut ids = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for panel in panels {
            assert!(
                ids.insert(panel["id"].as_u64().expect("id")),
                "{}",
                board.uid
            );
            let g = &panel["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24);
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(
                        cells.insert((cx, cy)),
                        "{}: panels overlap at {cx},{cy}",
                        board.uid
                    );
                }
            }
        }
    }
}

#[test]
fn every_declared_metric_is_drawn_and_every_panel_links_to_logs_and_traces() {
    let boards: Vec<Value> = dashboards::all()
        .iter()
        .map(|b| dashboards::render(b, &dashboards::Links::default()))
        .collect();
    let mut exprs = String::new();
    for board in &boards {
        for panel in board["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            for target in panel["targets"].as_array().expect("targets") {
                exprs.push_str(target["expr"].as_str().expect("expr"));
                exprs.push('\n');
            }
            let links = panel["fieldConfig"]["defaults"]["links"].to_string();
            assert!(links.contains("/api/v1/logs/search"), "{}", panel["title"]);
            assert!(links.contains("/api/traces"), "{}", panel["title"]);
        }
    }
    let declared = fertivision::otel::catalogue::ALL
        .iter()
        .chain(telemetry::catalogue::collector::ALL);
    for def in declared {
        assert!(
            exprs.contains(&def.prometheus_name()),
            "{} ({}) is on no dashboard",
            def.name,
            def.prometheus_name()
        );
    }
    // Latency panels ask for exemplars, so a slow point opens its trace.
    assert!(boards[0].to_string().contains("\"exemplar\":true"));
}
