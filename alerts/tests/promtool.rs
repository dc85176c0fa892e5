//! The committed rules are what the catalogue generates, and Prometheus' own `promtool` accepts
//! them and runs their unit tests: every alert fires where it should and stays quiet where it
//! should (`alerts/generated/tests/fertivision.test.yml`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn generated() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("generated")
}

#[test]
fn committed_rules_and_tests_are_current() {
    let fresh = alerts::render(&alerts::groups(), &alerts::Links::default()).expect("render");
    for (name, text) in [
        (alerts::RULES_FILE, &fresh.rules),
        (alerts::TESTS_FILE, &fresh.tests),
    ] {
        let path = generated().join(name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo run -p alerts`", path.display()));
        assert!(
            &committed == text,
            "{} differs from what the catalogue generates; run `cargo run -p alerts`",
            path.display()
        );
    }
}

/// Runs promtool (Debian's `prometheus` package), which must be installed.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(generated())
        .output()
        .expect("promtool runs (apt-get install prometheus; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_rules() {
    let out = promtool(&["check", "rules", alerts::RULES_FILE]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_make_every_alert_fire_and_stay_quiet() {
    let out = promtool(&["test", "rules", alerts::TESTS_FILE]);
    assert!(out.contains("SUCCESS"), "{out}");
    // The test file holds a firing and a quiet case for every alert rule.
    let groups = alerts::groups();
    let names: std::collections::BTreeSet<_> = groups
        .iter()
        .flat_map(|g| g.alerts.iter().map(|a| a.name))
        .collect();
    assert_eq!(names.len(), 16, "{names:?}");
}
