//! The PDF report read back the way a person or a records system reads it: rendered by
//! `render_report`, then extracted with poppler (`pdftotext -layout`, `pdfinfo`).
//!
//! Needs poppler-utils (`apt-get install -y poppler-utils`). To look at the pages, keep a
//! copy and rasterize it: `REPORT_PDF_KEEP=/tmp/report.pdf cargo test -p fertivision --test
//! report_pdf report_with_twelve`, then `pdftoppm -png -r 60 /tmp/report.pdf /tmp/page`.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use fertivision::domain::{
    EmbryoQuality, Evidence, Finding, OocyteQuality, TubalPatency, fertility_score,
};
use fertivision::report::{
    DISCLAIMER, REPORT_TITLE, ReportData, ReportDocument, ReportPatient, ReportValue, render_report,
};

const PATIENT_ID: &str = "0195a3c2-7b1e-7c44-9a0e-4f1d2b3c4d5e";
const MRN: &str = "MR-7K2Q9XAB";
const DOMAIN_NAMES: [&str; 8] = [
    "Male",
    "Female",
    "Ovarian",
    "Tubal",
    "Uterine",
    "Hormonal",
    "Genetic",
    "Lifestyle",
];

fn generated_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 9, 30, 0).unwrap()
}

fn patient() -> ReportPatient {
    ReportPatient {
        id: PATIENT_ID.parse().unwrap(),
        mrn: MRN.to_owned(),
        name: "Sofía Müller-Herrera".to_owned(),
        date_of_birth: NaiveDate::from_ymd_opt(1989, 11, 2).unwrap(),
        sex: "female".to_owned(),
    }
}

/// A couple mid work-up: borderline semen, low AMH, a polyp, one blocked tube.
fn evidence() -> Evidence {
    Evidence {
        sperm_concentration: Some(12.0),
        progressive_motility: Some(28.0),
        normal_morphology: Some(3.0),
        oocyte_qualities: vec![
            OocyteQuality::Good,
            OocyteQuality::Good,
            OocyteQuality::Fair,
            OocyteQuality::Immature,
        ],
        embryo_qualities: vec![EmbryoQuality::Good, EmbryoQuality::Fair],
        antral_follicle_count: Some(9),
        amh: Some(0.8),
        fsh: Some(11.2),
        lh: Some(6.1),
        estradiol: Some(45.0),
        progesterone: Some(12.4),
        tsh: Some(2.9),
        prolactin: Some(18.0),
        endometrial_thickness: Some(8.5),
        uterine_findings: Some(vec![Finding::Polyp]),
        tubal_patency: Some(TubalPatency::UnilateralBlocked),
    }
}

fn value(name: &str, value: f64, unit: &str, confidence: f64) -> ReportValue {
    ReportValue {
        name: name.to_owned(),
        value,
        unit: unit.to_owned(),
        confidence,
    }
}

/// Document `i` (0 is the oldest), uploaded a week after the previous one.
fn document(i: usize) -> ReportDocument {
    let uploaded_at =
        Utc.with_ymd_and_hms(2024, 9, 2, 10, 15, 0).unwrap() + Duration::weeks(i as i64);
    let (document_type, key_findings, values) = match i % 4 {
        0 => (
            "hormone_panel",
            vec![
                "AMH 0.8 ng/mL: reduced ovarian reserve for age".to_owned(),
                "FSH 11.2 IU/L on cycle day 3, mildly raised".to_owned(),
                "TSH 2.9 mIU/L above the preconception target".to_owned(),
            ],
            vec![
                value("AMH", 0.8, "ng/mL", 0.94),
                value("FSH", 11.2, "IU/L", 0.91),
                value("LH", 6.1, "IU/L", 0.88),
                value("Estradiol", 45.0, "pg/mL", 0.9),
                value("TSH", 2.9, "mIU/L", 0.86),
                value("Insulin", 8.2, "µIU/mL", 0.73),
            ],
        ),
        1 => (
            "lab_report",
            vec![
                "Semen analysis: oligoasthenoteratozoospermia (WHO 2021 lower reference limits)"
                    .to_owned(),
                "Abstinence 3 days; sample complete".to_owned(),
            ],
            vec![
                value("Sperm concentration", 12.0, "million/mL", 0.97),
                value("Progressive motility", 28.0, "%", 0.95),
                value("Normal morphology", 3.0, "%", 0.9),
                value("Volume", 2.4, "mL", 0.99),
            ],
        ),
        2 => (
            "ultrasound_image",
            vec![
                "Antral follicle count 9 (right 5, left 4)".to_owned(),
                "Endometrium 8.5 mm, trilaminar".to_owned(),
            ],
            vec![
                value("Antral follicle count", 9.0, "follicles", 0.82),
                value("Endometrial thickness", 8.5, "mm", 0.79),
            ],
        ),
        _ => (
            "surgical_report",
            vec![
                "Hysteroscopy: 6 mm endometrial polyp on the posterior wall".to_owned(),
                "HSG: left tube blocked proximally, right tube patent with free spill".to_owned(),
            ],
            Vec::new(),
        ),
    };
    ReportDocument {
        filename: format!(
            "{}_{document_type}_{i:02}.pdf",
            uploaded_at.format("%Y%m%d")
        ),
        document_type: document_type.to_owned(),
        uploaded_at,
        analysis_status: if i == 11 { "running" } else { "completed" }.to_owned(),
        key_findings,
        values,
    }
}

fn report_data(documents: usize) -> ReportData {
    ReportData {
        generated_at: generated_at(),
        patient: patient(),
        score: fertility_score(&evidence()),
        // Handed over oldest first: the report must put the most recent first.
        documents: (0..documents).map(document).collect(),
    }
}

fn run(program: &str, args: &[&str], pdf: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .arg(pdf)
        .args(if program == "pdftotext" { &["-"][..] } else { &[][..] })
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install poppler-utils (apt-get install -y poppler-utils)")
        });
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The rendered report as (text per page, pdfinfo output).
fn render_and_read(data: &ReportData) -> (Vec<String>, String) {
    let pdf = render_report(data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, &pdf).unwrap();
    if let Ok(keep) = std::env::var("REPORT_PDF_KEEP") {
        std::fs::write(keep, &pdf).unwrap();
    }
    let text = run("pdftotext", &["-layout"], &path);
    let info = run("pdfinfo", &[], &path);
    let mut pages: Vec<String> = text.split('\u{c}').map(str::to_owned).collect();
    if pages.last().is_some_and(|p| p.trim().is_empty()) {
        pages.pop();
    }
    (pages, info)
}

fn info_field<'a>(info: &'a str, field: &str) -> &'a str {
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("pdfinfo has no {field}: {info}"))
        .trim()
}

/// Finds each needle after the previous one; returns their positions.
fn assert_in_order(text: &str, needles: &[&str]) -> Vec<usize> {
    let mut from = 0;
    let mut positions = Vec::new();
    for needle in needles {
        let Some(at) = text[from..].find(needle) else {
            panic!("'{needle}' not found after byte {from} (after {positions:?}) in:\n{text}");
        };
        from += at;
        positions.push(from);
        from += needle.len();
    }
    positions
}

fn assert_every_page_has_footer(pages: &[String], info: &str) {
    let count: usize = info_field(info, "Pages").parse().unwrap();
    assert_eq!(pages.len(), count);
    for (i, page) in pages.iter().enumerate() {
        assert!(
            page.contains(DISCLAIMER),
            "page {} lacks the disclaimer",
            i + 1
        );
        let number = format!("Page {} of {count}", i + 1);
        assert!(page.contains(&number), "page {} lacks '{number}'", i + 1);
    }
}

#[test]
fn report_with_twelve_documents_reads_back_in_order() {
    let data = report_data(12);
    let (pages, info) = render_and_read(&data);
    let text = pages.concat();
    let score = format!("{:.1} / 100", data.score.score);
    let band = data.score.band.as_str();

    let needles = [
        REPORT_TITLE,
        "Generated",
        "2025-03-14 09:30 UTC",
        PATIENT_ID,
        MRN,
        "Patient Information",
        "Sofía Müller-Herrera",
        "1989-11-02 (age 35)",
        "Female",
        "Fertility Score Summary",
        &score,
        band,
        "Domain Scores",
        "Document Summary",
        "Detailed Findings",
        "Clinical Recommendations",
        DISCLAIMER,
    ];
    let positions = assert_in_order(&text, &needles);
    let at = |needle: &str| positions[needles.iter().position(|n| *n == needle).unwrap()];

    // The domain table: one row per domain, "no data" for the domains without inputs.
    let domains = &text[at("Domain Scores")..at("Document Summary")];
    for (name, domain) in DOMAIN_NAMES.iter().zip(&data.score.domains) {
        let row = domains
            .lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{domains}"));
        assert!(row.contains(&format!("{:.1}", domain.score)), "{row}");
        assert_eq!(row.contains("no data"), !domain.has_data, "{row}");
        let status = format!("{:?}", domain.status);
        assert!(row.contains(&status), "{row} lacks {status}");
    }

    // The document summary lists all twelve.
    let summary = &text[at("Document Summary")..at("Detailed Findings")];
    for i in 0..12 {
        let date = document(i).uploaded_at.format("%Y-%m-%d").to_string();
        assert!(summary.contains(&date), "summary lacks {date}");
    }

    // Detailed findings: the ten most recent, most recent first, then the omission note.
    let detailed = &text[at("Detailed Findings")..at("Clinical Recommendations")];
    let shown: Vec<usize> = (0..12)
        .filter(|&i| detailed.contains(&document(i).filename))
        .collect();
    assert_eq!(shown, (2..12).collect::<Vec<_>>(), "{detailed}");
    let first = detailed.find(&document(11).filename).unwrap();
    let last = detailed.find(&document(2).filename).unwrap();
    assert!(first < last, "most recent document must come first");
    assert!(detailed.contains("2 more"), "{detailed}");
    assert!(detailed.contains("0.8"), "values are shown");
    assert!(
        detailed.contains("94%"),
        "confidence is shown as a percentage"
    );
    assert!(detailed.contains("µIU/mL"), "micro sign survives WinAnsi");
    assert!(detailed.contains("Antral follicle count 9 (right 5, left 4)"));

    // Recommendations: critical findings first, every recommendation, the areas.
    let recommendations = &text[at("Clinical Recommendations")..];
    assert!(!data.score.critical_findings.is_empty());
    let mut headings = vec!["Critical findings"];
    headings.extend(data.score.critical_findings.iter().map(|f| first_words(f)));
    headings.push("Recommendations");
    headings.extend(data.score.recommendations.iter().map(|r| first_words(r)));
    headings.push("Areas for improvement");
    assert_in_order(recommendations, &headings);
    for domain in &data.score.areas_for_improvement {
        let name = DOMAIN_NAMES[fertivision::domain::Domain::ALL
            .iter()
            .position(|d| d == domain)
            .unwrap()];
        assert!(
            recommendations.contains(&format!("{name}: ")),
            "area {name} missing"
        );
    }

    assert!(info_field(&info, "Pages").parse::<usize>().unwrap() >= 2);
    assert_eq!(info_field(&info, "Title"), REPORT_TITLE);
    assert_every_page_has_footer(&pages, &info);
}

#[test]
fn report_without_documents_says_so() {
    let data = report_data(0);
    let (pages, info) = render_and_read(&data);
    let text = pages.concat();
    assert_in_order(
        &text,
        &[
            REPORT_TITLE,
            PATIENT_ID,
            MRN,
            "Patient Information",
            "Fertility Score Summary",
            "/ 100",
            data.score.band.as_str(),
            "Domain Scores",
            "Document Summary",
            "No documents uploaded.",
            "Detailed Findings",
            "No documents uploaded.",
            "Clinical Recommendations",
            DISCLAIMER,
        ],
    );
    assert!(!text.contains("more document"));
    assert_eq!(info_field(&info, "Title"), REPORT_TITLE);
    assert_every_page_has_footer(&pages, &info);
}

#[test]
fn long_recommendation_lists_flow_onto_more_pages() {
    let mut data = report_data(0);
    let pages_before = render_and_read(&data).0.len();
    data.score.recommendations = (1..=120)
        .map(|i| {
            format!(
                "Recommendation {i}: repeat the hormone panel on cycle day 2-4 and review the \
                 result with the couple before the next stimulation, documenting the decision"
            )
        })
        .collect();
    let (pages, info) = render_and_read(&data);
    assert!(pages.len() >= pages_before + 3, "{} pages", pages.len());
    let text = pages.concat();
    let numbers: Vec<String> = (1..=120).map(|i| format!("Recommendation {i}:")).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    assert_in_order(&text, &numbers);
    assert_every_page_has_footer(&pages, &info);
}

/// The first few words of a sentence: enough to find it, short enough not to wrap.
fn first_words(sentence: &str) -> &str {
    let end = sentence
        .char_indices()
        .filter(|(_, c)| *c == ' ')
        .nth(2)
        .map_or(sentence.len(), |(at, _)| at);
    &sentence[..end]
}
