//! Document analysis against committed lab reports (`tests/fixtures/lab_reports/`).
//!
//! Each fixture is analysed as an upload would be, with the content type its extension
//! names; `expected.json` lists the values (canonical name, value after conversion, unit)
//! each must give. PDFs come from `cargo run -p fertivision --example make_lab_fixtures`;
//! the .txt reports are written by hand. All patients are invented.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fertivision::analysis::{Analyte, DocumentAnalysis, Outcome, analyse_document};
use serde::Deserialize;

/// Relative tolerance for converted values.
const TOLERANCE: f64 = 0.01;

#[derive(Debug, Deserialize)]
struct ExpectedValue {
    name: String,
    value: f64,
    unit: String,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab_reports")
}

fn expected() -> BTreeMap<String, Vec<ExpectedValue>> {
    let text = std::fs::read_to_string(fixtures_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The report files, sorted, without expected.json.
fn fixture_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "expected.json")
        .collect();
    files.sort();
    files
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        other => panic!("{file}: no content type for extension {other:?}"),
    }
}

fn analyse(file: &str) -> Result<DocumentAnalysis, String> {
    let bytes = std::fs::read(fixtures_dir().join(file)).unwrap();
    match analyse_document(content_type(file), &bytes) {
        Outcome::Completed(analysis) => Ok(analysis),
        other => Err(format!("{file}: expected Completed, got {other:?}")),
    }
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= TOLERANCE * want.abs().max(1e-9)
}

/// What is wrong with one fixture's analysis, if anything.
fn check(file: &str, want: &[ExpectedValue]) -> Vec<String> {
    let analysis = match analyse(file) {
        Ok(analysis) => analysis,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    for expected in want {
        match analysis.values.iter().find(|got| got.name == expected.name) {
            None => problems.push(format!("{file}: {} not found", expected.name)),
            Some(got) => {
                if got.unit != expected.unit {
                    problems.push(format!(
                        "{file}: {} unit {} instead of {}",
                        expected.name, got.unit, expected.unit
                    ));
                }
                if !close(got.value, expected.value) {
                    problems.push(format!(
                        "{file}: {} = {} instead of {}",
                        expected.name, got.value, expected.value
                    ));
                }
                if !(0.0..=1.0).contains(&got.confidence) {
                    problems.push(format!(
                        "{file}: {} confidence {} outside 0..=1",
                        expected.name, got.confidence
                    ));
                }
            }
        }
    }
    for got in &analysis.values {
        if !want.iter().any(|expected| expected.name == got.name) {
            problems.push(format!(
                "{file}: unexpected {} = {} {}",
                got.name, got.value, got.unit
            ));
        }
    }
    // Every value names its domain, and no domain is claimed without a value.
    let mut domains: Vec<_> = analysis
        .values
        .iter()
        .map(|got| Analyte::from_name(&got.name).unwrap().domain())
        .collect();
    domains.dedup();
    for domain in &domains {
        if !analysis.domains.contains(domain) {
            problems.push(format!("{file}: domain {domain:?} missing"));
        }
    }
    if analysis
        .domains
        .iter()
        .any(|domain| !domains.contains(domain))
    {
        problems.push(format!("{file}: extra domains in {:?}", analysis.domains));
    }
    problems
}

#[test]
fn every_fixture_gives_exactly_its_expected_values() {
    let expected = expected();
    let problems: Vec<String> = fixture_files()
        .iter()
        .flat_map(|file| match expected.get(file) {
            Some(want) => check(file, want),
            None => vec![format!("{file}: no entry in expected.json")],
        })
        .collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn expected_json_and_fixtures_match() {
    let files = fixture_files();
    for name in expected().keys() {
        assert!(
            files.contains(name),
            "expected.json names a missing fixture {name}"
        );
    }
    let count = |extension: &str| files.iter().filter(|f| f.ends_with(extension)).count();
    assert!(count(".pdf") >= 6, "at least six PDF reports");
    assert!(count(".txt") >= 6, "at least six text reports");
}

#[test]
fn consultation_note_states_no_values() {
    let analysis = analyse("consultation_note.txt").unwrap();
    assert!(analysis.values.is_empty(), "{:?}", analysis.values);
    assert!(analysis.domains.is_empty());
    assert_eq!(analysis.key_findings, vec!["no recognised lab values"]);
}

#[test]
fn key_findings_name_the_clinical_thresholds() {
    for (file, finding) in [
        (
            "reference_ranges_inline.pdf",
            "AMH 0.4 ng/mL: below 0.5, critical",
        ),
        (
            "semen_analysis_who2021.pdf",
            "Sperm concentration 12 million/mL: mild oligozoospermia",
        ),
        (
            "semen_analysis_basic.txt",
            "Sperm concentration 4.2 million/mL: moderate oligozoospermia, critical",
        ),
        (
            "ultrasound_afc_sides.txt",
            "Antral follicle count 5: low ovarian reserve, poor response expected",
        ),
        (
            "ivf_workup_summary.pdf",
            "Antral follicle count 27: high ovarian reserve (possible PCOS), monitor for OHSS",
        ),
        (
            "referral_letter.txt",
            "AMH 250 ng/mL: outside the plausible range 0 to 30 ng/mL, not used",
        ),
    ] {
        let analysis = analyse(file).unwrap();
        assert!(
            analysis.key_findings.iter().any(|f| f == finding),
            "{file}: {finding:?} not in {:?}",
            analysis.key_findings
        );
    }
}

#[test]
fn confidence_follows_how_the_value_was_stated() {
    for (file, name, confidence) in [
        ("si_units_panel.pdf", "FSH", 0.95),
        ("si_units_panel.pdf", "AMH", 0.8),
        ("hormone_panel_day3.pdf", "FSH", 0.8),
        ("hormone_panel_day3.pdf", "TSH", 0.95),
        ("hormone_panel_header_units.txt", "prolactin", 0.8),
        ("ultrasound_follicle_scan.pdf", "endometrial_thickness", 0.8),
        ("ultrasound_afc_sides.txt", "antral_follicle_count", 0.95),
        ("semen_analysis_who2021.pdf", "progressive_motility", 0.95),
    ] {
        let analysis = analyse(file).unwrap();
        let value = analysis
            .values
            .iter()
            .find(|value| value.name == name)
            .unwrap_or_else(|| panic!("{file}: no {name}"));
        assert_eq!(value.confidence, confidence, "{file}: {name}");
    }
}
