//! The "FertiVision Comprehensive Fertility Report": a PDF rendered from [`ReportData`].
//!
//! [`render_report`] is a pure function: it reads nothing but its argument (no clock, no
//! files, no fonts on disk) and returns the bytes of an A4 PDF. The caller gathers the data
//! (patient, [`FertilityScore`], documents) and stores or sends the bytes.
//!
//! The sections follow `DOMAIN.md`, in this order:
//!
//! 1. header: title, generated time (UTC), patient id, medical record number;
//! 2. Patient Information: name, date of birth (with age), sex;
//! 3. Fertility Score Summary: overall score "62.5 / 100" and its band;
//! 4. Domain Scores: one row per domain with score, status and the values behind it, or
//!    "no data";
//! 5. Document Summary: every document, most recent first;
//! 6. Detailed Findings: key findings and extracted values of the
//!    [`MAX_DETAILED_DOCUMENTS`] most recent documents, and a line counting the others;
//! 7. Clinical Recommendations: critical findings first, then recommendations, then areas
//!    for improvement.
//!
//! Every page carries the footer [`DISCLAIMER`] and "Page N of M"; pages after the first
//! carry a running header naming the patient.
//!
//! ## Layout
//!
//! The report uses only the builtin PDF fonts Helvetica and Helvetica-Bold, so no font file
//! is embedded. Their text encoding is WinAnsi (Windows-1252): characters outside it are
//! mapped to a close equivalent where one exists (Greek mu to the micro sign, "≥" to ">=")
//! and to "?" otherwise. Lines are wrapped with the Helvetica glyph widths, and content
//! flows onto a new page when the current one is full; a table broken across pages repeats
//! its header row.
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use fertivision::domain::{Evidence, fertility_score};
//! use fertivision::report::{ReportData, ReportPatient, render_report};
//!
//! let data = ReportData {
//!     generated_at: Utc.with_ymd_and_hms(2025, 3, 14, 9, 30, 0).unwrap(),
//!     patient: ReportPatient {
//!         id: uuid::Uuid::nil(),
//!         mrn: "MR-0000TEST".to_owned(),
//!         name: "Test Patient".to_owned(),
//!         date_of_birth: NaiveDate::from_ymd_opt(1990, 5, 17).unwrap(),
//!         sex: "female".to_owned(),
//!     },
//!     score: fertility_score(&Evidence { amh: Some(2.1), ..Evidence::default() }),
//!     documents: Vec::new(),
//! };
//! let pdf = render_report(&data).unwrap();
//! assert!(pdf.starts_with(b"%PDF-"));
//! ```

use chrono::{DateTime, NaiveDate, Utc};
use printpdf::{
    BuiltinFont, Color, Greyscale, Line, LinePoint, Mm, Op, PaintMode, PdfDocument, PdfFontHandle,
    PdfPage, PdfParseErrorSeverity, PdfSaveOptions, Point, Pt, Rect, Rgb, TextItem, WindingOrder,
};

use crate::domain::{Domain, DomainStatus, FertilityScore};

/// The report's title, printed at the top of the first page and set as the PDF title.
pub const REPORT_TITLE: &str = "FertiVision Comprehensive Fertility Report";

/// The footer printed on every page.
pub const DISCLAIMER: &str = "This report supports and does not replace clinical judgement.";

/// At most this many documents (the most recent) get a "Detailed Findings" entry.
pub const MAX_DETAILED_DOCUMENTS: usize = 10;

/// The patient the report is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPatient {
    /// The patient's id.
    pub id: uuid::Uuid,
    /// The clinic's medical record number, e.g. "MR-7K2Q9XAB".
    pub mrn: String,
    /// Full name.
    pub name: String,
    /// Date of birth; the report also prints the age on the generation date.
    pub date_of_birth: NaiveDate,
    /// Sex as recorded, e.g. "female".
    pub sex: String,
}

/// One clinical value extracted from a document.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportValue {
    /// What was measured, e.g. "AMH".
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// Its unit, e.g. "ng/mL" (may be empty).
    pub unit: String,
    /// Extraction confidence as a fraction, 0.0 to 1.0; printed as a whole percentage
    /// (0.87 -> "87%"). Values outside the range are clamped.
    pub confidence: f64,
}

/// One uploaded document and what its analysis found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDocument {
    /// The file name as uploaded.
    pub filename: String,
    /// The document type, e.g. "hormone_panel" (printed as "Hormone panel").
    pub document_type: String,
    /// When it was uploaded; documents are listed most recent first.
    pub uploaded_at: DateTime<Utc>,
    /// pending, running, completed or failed (printed capitalised).
    pub analysis_status: String,
    /// Key findings of the analysis, one sentence each.
    pub key_findings: Vec<String>,
    /// The values extracted from the document.
    pub values: Vec<ReportValue>,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    /// When the report was generated; printed in UTC and set as the PDF dates.
    pub generated_at: DateTime<Utc>,
    /// The patient.
    pub patient: ReportPatient,
    /// The patient's fertility score.
    pub score: FertilityScore,
    /// The patient's documents, in any order.
    pub documents: Vec<ReportDocument>,
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `generated_at` cannot be written as a PDF date.
    #[error("generated_at {0} cannot be written as a PDF date")]
    GeneratedAtOutOfRange(DateTime<Utc>),
    /// The PDF writer reported an error while serializing the pages.
    #[error("the PDF writer failed: {0}")]
    Pdf(String),
}

/// Renders the report as the bytes of an A4 PDF.
pub fn render_report(data: &ReportData) -> Result<Vec<u8>, ReportError> {
    let pdf_date = printpdf::OffsetDateTime::from_unix_timestamp(data.generated_at.timestamp())
        .map_err(|_| ReportError::GeneratedAtOutOfRange(data.generated_at))?;

    let pages: Vec<PdfPage> = layout_pages(data)
        .into_iter()
        .map(|ops| PdfPage::new(Mm(PAGE_WIDTH_MM), Mm(PAGE_HEIGHT_MM), ops))
        .collect();

    let mut doc = PdfDocument::new(REPORT_TITLE);
    let info = &mut doc.metadata.info;
    info.author = "FertiVision".to_owned();
    info.creator = "FertiVision".to_owned();
    info.subject = "Comprehensive fertility report".to_owned();
    info.creation_date = pdf_date;
    info.modification_date = pdf_date;
    info.metadata_date = pdf_date;

    let mut warnings = Vec::new();
    let bytes = doc
        .with_pages(pages)
        .save(&PdfSaveOptions::default(), &mut warnings);
    if let Some(error) = warnings
        .iter()
        .find(|w| w.severity == PdfParseErrorSeverity::Error)
    {
        return Err(ReportError::Pdf(error.msg.clone()));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------
// Page geometry, in points from the bottom left corner (A4 is 595.28 x 841.89 pt).

const PAGE_WIDTH_MM: f32 = 210.0;
const PAGE_HEIGHT_MM: f32 = 297.0;
const PAGE_WIDTH: f32 = PAGE_WIDTH_MM * 72.0 / 25.4;
const PAGE_HEIGHT: f32 = PAGE_HEIGHT_MM * 72.0 / 25.4;
const MARGIN_X: f32 = 50.0;
const CONTENT_LEFT: f32 = MARGIN_X;
const CONTENT_RIGHT: f32 = PAGE_WIDTH - MARGIN_X;
const CONTENT_WIDTH: f32 = CONTENT_RIGHT - CONTENT_LEFT;
/// The top of the content area.
const CONTENT_TOP: f32 = PAGE_HEIGHT - 56.0;
/// Content never goes below this line; the footer lives underneath.
const CONTENT_BOTTOM: f32 = 72.0;
const RUNNING_HEADER_BASELINE: f32 = PAGE_HEIGHT - 34.0;
const FOOTER_RULE_Y: f32 = 56.0;
const FOOTER_BASELINE: f32 = 42.0;

const BODY_SIZE: f32 = 10.0;
const TABLE_SIZE: f32 = 9.0;
const SMALL_SIZE: f32 = 8.0;
/// Line height as a multiple of the font size.
const LEADING: f32 = 1.35;
const CELL_PAD_X: f32 = 4.0;
const CELL_PAD_Y: f32 = 3.0;
/// A table cell shows at most this many lines, so one row always fits on a page.
const MAX_CELL_LINES: usize = 30;
/// Label column of the "label: value" lines.
const LABEL_WIDTH: f32 = 150.0;
const BULLET_INDENT: f32 = 12.0;
/// A table or document entry up to this tall is moved whole to the next page rather than
/// split.
const KEEP_TOGETHER_MAX: f32 = 260.0;

const BLACK: Tone = Tone::Grey(0.0);
const GREY_TEXT: Tone = Tone::Grey(0.35);
const RULE: Tone = Tone::Grey(0.6);
const HEADER_FILL: Tone = Tone::Grey(0.9);
const ACCENT: Tone = Tone::Rgb(0.09, 0.24, 0.45);
const CRITICAL: Tone = Tone::Rgb(0.7, 0.05, 0.05);

#[derive(Debug, Clone, Copy)]
enum Tone {
    Grey(f32),
    Rgb(f32, f32, f32),
}

impl Tone {
    fn color(self) -> Color {
        match self {
            Tone::Grey(level) => Color::Greyscale(Greyscale::new(level, None)),
            Tone::Rgb(r, g, b) => Color::Rgb(Rgb::new(r, g, b, None)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
}

impl Face {
    fn builtin(self) -> BuiltinFont {
        match self {
            Face::Regular => BuiltinFont::Helvetica,
            Face::Bold => BuiltinFont::HelveticaBold,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sections.

/// Lays the report out: the operations of each page, footers included.
fn layout_pages(data: &ReportData) -> Vec<Vec<Op>> {
    let patient = &data.patient;
    let mut page = Layout::new(format!(
        "{REPORT_TITLE} - {}, MRN {}",
        patient.name, patient.mrn
    ));
    header(&mut page, data);
    patient_information(&mut page, data);
    score_summary(&mut page, &data.score);
    domain_scores(&mut page, &data.score);
    let documents = documents_most_recent_first(&data.documents);
    document_summary(&mut page, &documents);
    detailed_findings(&mut page, &documents);
    clinical_recommendations(&mut page, &data.score);
    page.finish()
}

fn header(page: &mut Layout, data: &ReportData) {
    page.paragraph(REPORT_TITLE, Face::Bold, 18.0, 0.0, ACCENT);
    page.gap(4.0);
    page.label_value(
        "Generated",
        &data.generated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    );
    page.label_value("Patient ID", &data.patient.id.to_string());
    page.label_value("Medical record number", &data.patient.mrn);
    page.gap(4.0);
    page.rule(RULE, 1.0);
}

fn patient_information(page: &mut Layout, data: &ReportData) {
    let patient = &data.patient;
    page.heading("Patient Information");
    page.label_value("Name", &patient.name);
    let dob = patient.date_of_birth.format("%Y-%m-%d").to_string();
    let dob = match data
        .generated_at
        .date_naive()
        .years_since(patient.date_of_birth)
    {
        Some(age) => format!("{dob} (age {age})"),
        None => dob,
    };
    page.label_value("Date of birth", &dob);
    page.label_value("Sex", &humanize(&patient.sex));
}

fn score_summary(page: &mut Layout, score: &FertilityScore) {
    page.heading("Fertility Score Summary");
    page.label_value_styled(
        "Overall score",
        &format!("{:.1} / 100", score.score),
        Face::Bold,
        ACCENT,
    );
    page.label_value_styled("Band", score.band.as_str(), Face::Bold, ACCENT);
    if !score.critical_findings.is_empty() {
        page.label_value_styled(
            "Critical findings",
            &format!(
                "{} (listed first under Clinical Recommendations)",
                score.critical_findings.len()
            ),
            Face::Bold,
            CRITICAL,
        );
    }
    page.gap(2.0);
    page.paragraph(
        "The overall score is the weighted sum of eight domain scores. Bands: 80 or more \
         Excellent, 60 or more Good, 40 or more Moderate, below 40 Significant concerns.",
        Face::Regular,
        SMALL_SIZE,
        0.0,
        GREY_TEXT,
    );
}

fn domain_scores(page: &mut Layout, score: &FertilityScore) {
    let columns = [
        Column::new("Domain", 72.0),
        Column::new("Weight", 48.0),
        Column::new("Score", 48.0),
        Column::new("Status", 64.0),
        Column::new("Evidence", CONTENT_WIDTH - 232.0),
    ];
    let rows: Vec<Vec<String>> = score
        .domains
        .iter()
        .map(|d| {
            let evidence = if d.has_data {
                d.basis.join("; ")
            } else {
                "no data".to_owned()
            };
            vec![
                domain_name(d.domain).to_owned(),
                format!("{:.0}%", d.weight * 100.0),
                format!("{:.1}", d.score),
                status_name(d.status).to_owned(),
                evidence,
            ]
        })
        .collect();
    heading_with_table(page, "Domain Scores", &columns, &rows);
}

fn document_summary(page: &mut Layout, documents: &[&ReportDocument]) {
    if documents.is_empty() {
        page.heading("Document Summary");
        page.paragraph(
            "No documents uploaded.",
            Face::Regular,
            BODY_SIZE,
            0.0,
            BLACK,
        );
        return;
    }
    let columns = [
        Column::new("#", 22.0),
        Column::new("File name", 190.0),
        Column::new("Type", 105.0),
        Column::new("Uploaded", 78.0),
        Column::new("Analysis", CONTENT_WIDTH - 395.0),
    ];
    let rows: Vec<Vec<String>> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            vec![
                (i + 1).to_string(),
                d.filename.clone(),
                humanize(&d.document_type),
                d.uploaded_at.format("%Y-%m-%d").to_string(),
                humanize(&d.analysis_status),
            ]
        })
        .collect();
    heading_with_table(page, "Document Summary", &columns, &rows);
}

/// A section heading followed by a table, kept on one page when the table is short.
fn heading_with_table(page: &mut Layout, title: &str, columns: &[Column], rows: &[Vec<String>]) {
    let heading = Layout::measure(|scratch| scratch.heading(title));
    let table = Layout::measure(|scratch| scratch.table(columns, rows));
    if table <= KEEP_TOGETHER_MAX {
        page.ensure(heading + table);
    }
    page.heading(title);
    page.table(columns, rows);
}

fn detailed_findings(page: &mut Layout, documents: &[&ReportDocument]) {
    if let Some(first) = documents.first() {
        // The heading goes with the first entry.
        let heading = Layout::measure(|scratch| scratch.heading("Detailed Findings"));
        let entry = Layout::measure(|scratch| document_entry(scratch, 1, first));
        if entry <= KEEP_TOGETHER_MAX {
            page.ensure(heading + entry);
        }
    }
    page.heading("Detailed Findings");
    if documents.is_empty() {
        page.paragraph(
            "No documents uploaded.",
            Face::Regular,
            BODY_SIZE,
            0.0,
            BLACK,
        );
        return;
    }
    for (i, document) in documents.iter().take(MAX_DETAILED_DOCUMENTS).enumerate() {
        if i > 0 {
            page.gap(6.0);
        }
        // An entry that fits on a page is not split across two.
        page.keep_together(Layout::measure(|scratch| {
            document_entry(scratch, i + 1, document)
        }));
        document_entry(page, i + 1, document);
    }
    let omitted = documents.len().saturating_sub(MAX_DETAILED_DOCUMENTS);
    if omitted > 0 {
        page.gap(6.0);
        let noun = if omitted == 1 {
            "document"
        } else {
            "documents"
        };
        page.paragraph(
            &format!(
                "{omitted} more {noun} not shown in detail; all documents are listed in the \
                 Document Summary."
            ),
            Face::Regular,
            BODY_SIZE,
            0.0,
            GREY_TEXT,
        );
    }
}

/// One document of "Detailed Findings": title, metadata, key findings, values table.
fn document_entry(page: &mut Layout, number: usize, document: &ReportDocument) {
    page.subheading(&format!("{number}. {}", document.filename), BLACK);
    page.paragraph(
        &format!(
            "{} | uploaded {} | analysis {}",
            humanize(&document.document_type),
            document.uploaded_at.format("%Y-%m-%d %H:%M UTC"),
            document.analysis_status.to_lowercase(),
        ),
        Face::Regular,
        SMALL_SIZE + 0.5,
        0.0,
        GREY_TEXT,
    );
    page.gap(2.0);
    page.paragraph("Key findings", Face::Bold, BODY_SIZE, 0.0, BLACK);
    if document.key_findings.is_empty() {
        page.paragraph("None recorded.", Face::Regular, BODY_SIZE, 0.0, GREY_TEXT);
    }
    for finding in &document.key_findings {
        page.bullet(finding, Face::Regular, BLACK);
    }
    page.gap(2.0);
    if document.values.is_empty() {
        page.paragraph(
            "No values extracted.",
            Face::Regular,
            BODY_SIZE,
            0.0,
            GREY_TEXT,
        );
        return;
    }
    let columns = [
        Column::new("Value", 190.0),
        Column::new("Result", 90.0),
        Column::new("Unit", 110.0),
        Column::new("Confidence", CONTENT_WIDTH - 390.0),
    ];
    let rows: Vec<Vec<String>> = document
        .values
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                format_number(v.value),
                v.unit.clone(),
                format_confidence(v.confidence),
            ]
        })
        .collect();
    page.table(&columns, &rows);
}

fn clinical_recommendations(page: &mut Layout, score: &FertilityScore) {
    page.heading("Clinical Recommendations");
    if !score.critical_findings.is_empty() {
        page.subheading("Critical findings", CRITICAL);
        for finding in &score.critical_findings {
            page.bullet(finding, Face::Bold, CRITICAL);
        }
        page.gap(4.0);
    }
    page.subheading("Recommendations", BLACK);
    if score.recommendations.is_empty() {
        page.paragraph("None.", Face::Regular, BODY_SIZE, 0.0, GREY_TEXT);
    }
    for recommendation in &score.recommendations {
        page.bullet(recommendation, Face::Regular, BLACK);
    }
    page.gap(4.0);
    page.subheading("Areas for improvement", BLACK);
    if score.areas_for_improvement.is_empty() {
        page.paragraph(
            "None: every domain with data scores 70 or more.",
            Face::Regular,
            BODY_SIZE,
            0.0,
            GREY_TEXT,
        );
    }
    for &domain in &score.areas_for_improvement {
        let line = match score.domains.iter().find(|d| d.domain == domain) {
            Some(d) => format!(
                "{}: {:.1} / 100 ({})",
                domain_name(domain),
                d.score,
                status_name(d.status)
            ),
            None => domain_name(domain).to_owned(),
        };
        page.bullet(&line, Face::Regular, BLACK);
    }
}

/// The documents, most recent upload first (a stable sort: equal times keep their order).
fn documents_most_recent_first(documents: &[ReportDocument]) -> Vec<&ReportDocument> {
    let mut sorted: Vec<&ReportDocument> = documents.iter().collect();
    sorted.sort_by_key(|d| std::cmp::Reverse(d.uploaded_at));
    sorted
}

fn domain_name(domain: Domain) -> &'static str {
    match domain {
        Domain::Male => "Male",
        Domain::Female => "Female",
        Domain::Ovarian => "Ovarian",
        Domain::Tubal => "Tubal",
        Domain::Uterine => "Uterine",
        Domain::Hormonal => "Hormonal",
        Domain::Genetic => "Genetic",
        Domain::Lifestyle => "Lifestyle",
    }
}

fn status_name(status: DomainStatus) -> &'static str {
    match status {
        DomainStatus::Excellent => "Excellent",
        DomainStatus::Good => "Good",
        DomainStatus::Fair => "Fair",
        DomainStatus::Concern => "Concern",
    }
}

/// "hormone_panel" -> "Hormone panel".
fn humanize(raw: &str) -> String {
    let spaced = raw.trim().replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A measured value with at most two decimals and no trailing zeros: 12.0 -> "12",
/// 0.45 -> "0.45"; "-" for a value that is not a finite number.
fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    let rounded = (value * 100.0).round() / 100.0;
    if rounded == 0.0 {
        // Not "-0".
        return "0".to_owned();
    }
    format!("{rounded}")
}

/// A confidence fraction as a whole percentage: 0.873 -> "87%".
fn format_confidence(confidence: f64) -> String {
    if !confidence.is_finite() {
        return "-".to_owned();
    }
    format!("{:.0}%", confidence.clamp(0.0, 1.0) * 100.0)
}

// ---------------------------------------------------------------------------------------
// Text: WinAnsi, widths, wrapping.

/// Maps `text` onto the characters the builtin fonts can show (WinAnsi): whitespace becomes
/// a space, a few common symbols get an ASCII spelling, anything else unsupported is "?".
fn to_win_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{03BC}' => out.push('\u{00B5}'), // Greek mu -> micro sign
            '\u{2264}' => out.push_str("<="),
            '\u{2265}' => out.push_str(">="),
            '\u{2260}' => out.push_str("!="),
            '\u{2212}' | '\u{2010}' | '\u{2011}' | '\u{2012}' => out.push('-'),
            '\u{2192}' => out.push_str("->"),
            '\u{2190}' => out.push_str("<-"),
            '\u{2032}' => out.push('\''),
            '\u{2033}' => out.push('"'),
            '\u{2009}' | '\u{202F}' | '\u{2007}' => out.push(' '),
            c if c.is_whitespace() || c.is_control() => out.push(' '),
            c if is_win_ansi(c) => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// True when WinAnsi (PDF 32000-1 Annex D.2) has a glyph for `c`.
fn is_win_ansi(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7E | 0xA0..=0xFF)
        || matches!(
            c,
            '\u{20AC}'
                | '\u{201A}'
                | '\u{0192}'
                | '\u{201E}'
                | '\u{2026}'
                | '\u{2020}'
                | '\u{2021}'
                | '\u{02C6}'
                | '\u{2030}'
                | '\u{0160}'
                | '\u{2039}'
                | '\u{0152}'
                | '\u{017D}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201C}'
                | '\u{201D}'
                | '\u{2022}'
                | '\u{2013}'
                | '\u{2014}'
                | '\u{02DC}'
                | '\u{2122}'
                | '\u{0161}'
                | '\u{203A}'
                | '\u{0153}'
                | '\u{017E}'
                | '\u{0178}'
        )
}

/// Advance widths of ' ' (0x20) to '~' (0x7E) in thousandths of an em, from the Adobe
/// Helvetica AFM.
const HELVETICA_WIDTHS: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // ' '../
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0..?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @..O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P.._
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // `..o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p..~
];

/// The same for Helvetica-Bold.
const HELVETICA_BOLD_WIDTHS: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, // ' '../
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // 0..?
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // @..O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // P.._
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // `..o
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, // p..~
];

/// Width used for characters outside ASCII: as wide as the widest common lowercase
/// letters, so wrapped lines err on the short side.
const NON_ASCII_WIDTH: u16 = 667;

/// The width of `text` (already WinAnsi-mapped) in points.
fn text_width(text: &str, face: Face, size: f32) -> f32 {
    let table = match face {
        Face::Regular => &HELVETICA_WIDTHS,
        Face::Bold => &HELVETICA_BOLD_WIDTHS,
    };
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            cp @ 0x20..=0x7E => u32::from(table[(cp - 0x20) as usize]),
            _ => u32::from(NON_ASCII_WIDTH),
        })
        .sum();
    units as f32 * size / 1000.0
}

/// Splits `text` (already WinAnsi-mapped) into lines no wider than `max_width` points:
/// greedy on words, and a word wider than a line is broken between characters. Always
/// returns at least one line (empty for empty text).
fn wrap(text: &str, face: Face, size: f32, max_width: f32) -> Vec<String> {
    let fits = |s: &str| text_width(s, face, size) <= max_width;
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if fits(&candidate) {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        if fits(word) {
            current = word.to_owned();
            continue;
        }
        // A word wider than the line (a long file name, an id): break it.
        for c in word.chars() {
            current.push(c);
            if !fits(&current) && current.chars().count() > 1 {
                current.pop();
                lines.push(std::mem::take(&mut current));
                current.push(c);
            }
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

// ---------------------------------------------------------------------------------------
// The page flow.

fn table_header_height() -> f32 {
    TABLE_SIZE * LEADING + 2.0 * CELL_PAD_Y
}

/// The lines of each cell of each row, wrapped within their column (at most
/// [`MAX_CELL_LINES`] per cell).
fn wrap_cells(columns: &[Column], rows: &[Vec<String>]) -> Vec<Vec<Vec<String>>> {
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .zip(row)
                .map(|(column, cell)| {
                    let width = column.width - 2.0 * CELL_PAD_X;
                    let mut lines = wrap(&to_win_ansi(cell), Face::Regular, TABLE_SIZE, width);
                    if lines.len() > MAX_CELL_LINES {
                        lines.truncate(MAX_CELL_LINES);
                        let last = &mut lines[MAX_CELL_LINES - 1];
                        while !last.is_empty()
                            && text_width(&format!("{last} ..."), Face::Regular, TABLE_SIZE) > width
                        {
                            last.pop();
                        }
                        last.push_str(" ...");
                    }
                    lines
                })
                .collect()
        })
        .collect()
}

/// The height of a table row: its tallest cell plus padding.
fn row_height(cells: &[Vec<String>]) -> f32 {
    let lines = cells.iter().map(Vec::len).max().unwrap_or(1);
    lines as f32 * TABLE_SIZE * LEADING + 2.0 * CELL_PAD_Y
}

/// A table column: its title and width in points.
struct Column {
    title: &'static str,
    width: f32,
}

impl Column {
    fn new(title: &'static str, width: f32) -> Self {
        Self { title, width }
    }
}

/// Pages being filled top to bottom. `y` is the top of the space left on the current
/// page; every block first makes sure it fits above [`CONTENT_BOTTOM`], else starts a page.
struct Layout {
    pages: Vec<Vec<Op>>,
    ops: Vec<Op>,
    y: f32,
    running_header: String,
}

impl Layout {
    fn new(running_header: String) -> Self {
        Self {
            pages: Vec::new(),
            ops: Vec::new(),
            y: CONTENT_TOP,
            running_header: to_win_ansi(&running_header),
        }
    }

    /// The height `draw` takes when laid out on an endless page.
    fn measure(draw: impl FnOnce(&mut Layout)) -> f32 {
        const START: f32 = 1.0e6;
        let mut scratch = Layout::new(String::new());
        scratch.y = START;
        draw(&mut scratch);
        if !scratch.pages.is_empty() {
            return f32::INFINITY;
        }
        START - scratch.y
    }

    /// Closes the current page and starts the next one under its running header.
    fn new_page(&mut self) {
        self.pages.push(std::mem::take(&mut self.ops));
        self.y = CONTENT_TOP;
        let header = wrap(
            &self.running_header,
            Face::Regular,
            SMALL_SIZE,
            CONTENT_WIDTH,
        )
        .swap_remove(0);
        self.draw_text(
            CONTENT_LEFT,
            RUNNING_HEADER_BASELINE,
            Face::Regular,
            SMALL_SIZE,
            GREY_TEXT,
            &header,
        );
        self.draw_line(
            CONTENT_LEFT,
            RUNNING_HEADER_BASELINE - 6.0,
            CONTENT_RIGHT,
            RUNNING_HEADER_BASELINE - 6.0,
            RULE,
            0.5,
        );
    }

    /// Starts a new page unless `height` points fit on this one. True when it did.
    fn ensure(&mut self, height: f32) -> bool {
        if self.y - height >= CONTENT_BOTTOM || self.y >= CONTENT_TOP {
            return false;
        }
        self.new_page();
        true
    }

    /// Starts a new page unless a block of `height` points fits on this one, provided the
    /// block is short enough to be worth keeping in one piece. True when the block was
    /// short enough (whether or not a page was started).
    fn keep_together(&mut self, height: f32) -> bool {
        if height > KEEP_TOGETHER_MAX {
            return false;
        }
        self.ensure(height);
        true
    }

    fn gap(&mut self, height: f32) {
        self.y -= height;
    }

    /// Wrapped text starting `indent` points right of the margin.
    fn paragraph(&mut self, text: &str, face: Face, size: f32, indent: f32, tone: Tone) {
        let text = to_win_ansi(text);
        let leading = size * LEADING;
        for line in wrap(&text, face, size, CONTENT_WIDTH - indent) {
            self.ensure(leading);
            self.draw_text(
                CONTENT_LEFT + indent,
                self.y - size,
                face,
                size,
                tone,
                &line,
            );
            self.y -= leading;
        }
    }

    /// A bulleted item; continuation lines are indented under the text.
    fn bullet(&mut self, text: &str, face: Face, tone: Tone) {
        let text = to_win_ansi(text);
        let leading = BODY_SIZE * LEADING;
        let width = CONTENT_WIDTH - BULLET_INDENT - 6.0;
        for (i, line) in wrap(&text, face, BODY_SIZE, width).iter().enumerate() {
            self.ensure(leading);
            let baseline = self.y - BODY_SIZE;
            if i == 0 {
                self.draw_text(
                    CONTENT_LEFT + 4.0,
                    baseline,
                    Face::Regular,
                    BODY_SIZE,
                    tone,
                    "\u{2022}",
                );
            }
            self.draw_text(
                CONTENT_LEFT + BULLET_INDENT + 6.0,
                baseline,
                face,
                BODY_SIZE,
                tone,
                line,
            );
            self.y -= leading;
        }
    }

    /// A section heading with a rule under it, kept on the page with a few lines of what
    /// follows.
    fn heading(&mut self, text: &str) {
        const SIZE: f32 = 13.0;
        self.gap(12.0);
        self.ensure(SIZE * LEADING + 6.0 + 4.0 * BODY_SIZE * LEADING);
        self.paragraph(text, Face::Bold, SIZE, 0.0, ACCENT);
        self.y += 2.0;
        self.rule(ACCENT, 0.8);
        self.gap(4.0);
    }

    /// A heading inside a section, kept with the next lines.
    fn subheading(&mut self, text: &str, tone: Tone) {
        const SIZE: f32 = 11.0;
        self.ensure(SIZE * LEADING + 3.0 * BODY_SIZE * LEADING);
        self.paragraph(text, Face::Bold, SIZE, 0.0, tone);
        self.gap(1.0);
    }

    /// A horizontal rule across the content width at the cursor.
    fn rule(&mut self, tone: Tone, thickness: f32) {
        self.ensure(4.0);
        self.draw_line(CONTENT_LEFT, self.y, CONTENT_RIGHT, self.y, tone, thickness);
        self.y -= 4.0;
    }

    fn label_value(&mut self, label: &str, value: &str) {
        self.label_value_styled(label, value, Face::Regular, BLACK);
    }

    /// "Label" in bold in a fixed column, the value wrapped beside it.
    fn label_value_styled(&mut self, label: &str, value: &str, face: Face, tone: Tone) {
        let value = to_win_ansi(value);
        let leading = BODY_SIZE * LEADING;
        let lines = wrap(&value, face, BODY_SIZE, CONTENT_WIDTH - LABEL_WIDTH);
        for (i, line) in lines.iter().enumerate() {
            self.ensure(leading);
            let baseline = self.y - BODY_SIZE;
            if i == 0 {
                self.draw_text(
                    CONTENT_LEFT,
                    baseline,
                    Face::Bold,
                    BODY_SIZE,
                    GREY_TEXT,
                    &to_win_ansi(label),
                );
            }
            self.draw_text(
                CONTENT_LEFT + LABEL_WIDTH,
                baseline,
                face,
                BODY_SIZE,
                tone,
                line,
            );
            self.y -= leading;
        }
    }

    /// A table with a shaded header row, repeated after a page break. Cells wrap within
    /// their column.
    fn table(&mut self, columns: &[Column], rows: &[Vec<String>]) {
        debug_assert!(
            (columns.iter().map(|c| c.width).sum::<f32>() - CONTENT_WIDTH).abs() < 0.5,
            "table columns must span the content width"
        );
        let header_height = table_header_height();
        let wrapped = wrap_cells(columns, rows);
        let body_height: f32 = wrapped.iter().map(|cells| row_height(cells)).sum();
        let first_row = wrapped.first().map_or(0.0, |cells| row_height(cells));
        // A short table stays on one page; a long one at least keeps its header with a row.
        if !self.keep_together(header_height + body_height) {
            self.ensure(header_height + first_row);
        }
        self.table_header(columns, header_height);
        let leading = TABLE_SIZE * LEADING;
        for cells in &wrapped {
            let height = row_height(cells);
            if self.ensure(height) {
                self.table_header(columns, header_height);
            }
            let mut x = CONTENT_LEFT;
            for (column, lines) in columns.iter().zip(cells) {
                let mut baseline = self.y - CELL_PAD_Y - TABLE_SIZE;
                for line in lines {
                    self.draw_text(
                        x + CELL_PAD_X,
                        baseline,
                        Face::Regular,
                        TABLE_SIZE,
                        BLACK,
                        line,
                    );
                    baseline -= leading;
                }
                x += column.width;
            }
            self.y -= height;
            self.draw_line(CONTENT_LEFT, self.y, CONTENT_RIGHT, self.y, RULE, 0.4);
        }
    }

    fn table_header(&mut self, columns: &[Column], height: f32) {
        self.draw_rect(
            CONTENT_LEFT,
            self.y - height,
            CONTENT_WIDTH,
            height,
            HEADER_FILL,
        );
        let mut x = CONTENT_LEFT;
        for column in columns {
            self.draw_text(
                x + CELL_PAD_X,
                self.y - CELL_PAD_Y - TABLE_SIZE,
                Face::Bold,
                TABLE_SIZE,
                BLACK,
                column.title,
            );
            x += column.width;
        }
        self.y -= height;
        self.draw_line(CONTENT_LEFT, self.y, CONTENT_RIGHT, self.y, RULE, 0.6);
    }

    /// Closes the last page and adds the footer to every page.
    fn finish(mut self) -> Vec<Vec<Op>> {
        self.pages.push(std::mem::take(&mut self.ops));
        let total = self.pages.len();
        let mut pages = std::mem::take(&mut self.pages);
        for (i, ops) in pages.iter_mut().enumerate() {
            self.ops = std::mem::take(ops);
            self.draw_line(
                CONTENT_LEFT,
                FOOTER_RULE_Y,
                CONTENT_RIGHT,
                FOOTER_RULE_Y,
                RULE,
                0.5,
            );
            self.draw_text(
                CONTENT_LEFT,
                FOOTER_BASELINE,
                Face::Regular,
                SMALL_SIZE,
                GREY_TEXT,
                DISCLAIMER,
            );
            let number = format!("Page {} of {total}", i + 1);
            let width = text_width(&number, Face::Regular, SMALL_SIZE);
            self.draw_text(
                CONTENT_RIGHT - width,
                FOOTER_BASELINE,
                Face::Regular,
                SMALL_SIZE,
                GREY_TEXT,
                &number,
            );
            *ops = std::mem::take(&mut self.ops);
        }
        pages
    }

    /// One run of (WinAnsi-mapped) text with its baseline at (x, baseline).
    fn draw_text(&mut self, x: f32, baseline: f32, face: Face, size: f32, tone: Tone, text: &str) {
        if text.is_empty() {
            return;
        }
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFont {
                font: PdfFontHandle::Builtin(face.builtin()),
                size: Pt(size),
            },
            Op::SetFillColor { col: tone.color() },
            Op::SetTextCursor {
                pos: Point {
                    x: Pt(x),
                    y: Pt(baseline),
                },
            },
            Op::ShowText {
                items: vec![TextItem::Text(text.to_owned())],
            },
            Op::EndTextSection,
        ]);
    }

    fn draw_line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, tone: Tone, thickness: f32) {
        let point = |x: f32, y: f32| LinePoint {
            p: Point { x: Pt(x), y: Pt(y) },
            bezier: false,
        };
        self.ops.extend([
            Op::SetOutlineColor { col: tone.color() },
            Op::SetOutlineThickness { pt: Pt(thickness) },
            Op::DrawLine {
                line: Line {
                    points: vec![point(x1, y1), point(x2, y2)],
                    is_closed: false,
                },
            },
        ]);
    }

    fn draw_rect(&mut self, x: f32, y: f32, width: f32, height: f32, tone: Tone) {
        self.ops.extend([
            Op::SetFillColor { col: tone.color() },
            Op::DrawRectangle {
                rectangle: Rect {
                    x: Pt(x),
                    y: Pt(y),
                    width: Pt(width),
                    height: Pt(height),
                    mode: Some(PaintMode::Fill),
                    winding_order: Some(WindingOrder::NonZero),
                },
            },
        ]);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{Evidence, TubalPatency, fertility_score};

    fn data(documents: usize, values_per_document: usize) -> ReportData {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 8, 0, 0).unwrap();
        ReportData {
            generated_at: Utc.with_ymd_and_hms(2025, 3, 14, 9, 30, 0).unwrap(),
            patient: ReportPatient {
                id: uuid::Uuid::from_u128(0x1234),
                mrn: "MR-TEST0001".to_owned(),
                name: "Ana Müller".to_owned(),
                date_of_birth: NaiveDate::from_ymd_opt(1990, 5, 17).unwrap(),
                sex: "female".to_owned(),
            },
            score: fertility_score(&Evidence {
                amh: Some(0.4),
                sperm_concentration: Some(3.0),
                tubal_patency: Some(TubalPatency::UnilateralBlocked),
                ..Evidence::default()
            }),
            documents: (0..documents)
                .map(|i| ReportDocument {
                    filename: format!("document-{i:02}.pdf"),
                    document_type: "lab_report".to_owned(),
                    uploaded_at: start + chrono::Duration::days(i as i64),
                    analysis_status: "completed".to_owned(),
                    key_findings: vec![format!("Finding of document {i}")],
                    values: (0..values_per_document)
                        .map(|j| ReportValue {
                            name: format!("value {j}"),
                            value: j as f64 * 1.5,
                            unit: "µg/L".to_owned(),
                            confidence: 0.9,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Every text run of the laid-out pages: (page, x, baseline, face, size, text).
    fn text_runs(pages: &[Vec<Op>]) -> Vec<(usize, f32, f32, Face, f32, String)> {
        let mut runs = Vec::new();
        for (page, ops) in pages.iter().enumerate() {
            let (mut x, mut y, mut face, mut size) = (0.0, 0.0, Face::Regular, 0.0);
            for op in ops {
                match op {
                    Op::SetFont {
                        font: PdfFontHandle::Builtin(font),
                        size: s,
                    } => {
                        face = if *font == BuiltinFont::HelveticaBold {
                            Face::Bold
                        } else {
                            Face::Regular
                        };
                        size = s.0;
                    }
                    Op::SetTextCursor { pos } => (x, y) = (pos.x.0, pos.y.0),
                    Op::ShowText { items } => {
                        for item in items {
                            if let TextItem::Text(text) = item {
                                runs.push((page, x, y, face, size, text.clone()));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        runs
    }

    #[test]
    fn wrap_keeps_lines_within_the_width() {
        let text = "Expedite treatment: AMH below 1 ng/mL means a shorter window; \
                    discuss IVF with the couple at the next consultation";
        for width in [60.0, 120.0, 300.0] {
            let lines = wrap(text, Face::Regular, 10.0, width);
            assert!(lines.len() > 1, "width {width}");
            for line in &lines {
                assert!(text_width(line, Face::Regular, 10.0) <= width, "{line}");
            }
            assert_eq!(lines.join(" "), text);
        }
    }

    #[test]
    fn wrap_breaks_words_longer_than_a_line() {
        let id = "0195a3c2-7b1e-7c44-9a0e-4f1d2b3c4d5e";
        let lines = wrap(id, Face::Bold, 10.0, 50.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), id);
        assert!(
            lines
                .iter()
                .all(|l| text_width(l, Face::Bold, 10.0) <= 50.0)
        );
    }

    #[test]
    fn wrap_of_empty_text_is_one_empty_line() {
        assert_eq!(wrap("", Face::Regular, 10.0, 100.0), vec![String::new()]);
        assert_eq!(wrap("   ", Face::Regular, 10.0, 100.0), vec![String::new()]);
    }

    #[test]
    fn text_width_uses_helvetica_metrics() {
        // "i" is narrow, "W" wide; bold is wider than regular.
        assert!((text_width("i", Face::Regular, 1000.0) - 222.0).abs() < 0.01);
        assert!((text_width("W", Face::Regular, 1000.0) - 944.0).abs() < 0.01);
        assert!(text_width("report", Face::Bold, 10.0) > text_width("report", Face::Regular, 10.0));
    }

    #[test]
    fn win_ansi_mapping() {
        let cases = [
            ("AMH 1.2 ng/mL", "AMH 1.2 ng/mL"),
            ("5 µg/L", "5 \u{00B5}g/L"),
            ("5 \u{03BC}g/L", "5 \u{00B5}g/L"),
            ("FSH \u{2265} 10", "FSH >= 10"),
            ("Müller – Öztürk", "Müller – Öztürk"),
            ("line\nbreak\ttab", "line break tab"),
            ("emoji \u{1F600} and 漢字", "emoji ? and ??"),
            ("3\u{2212}4", "3-4"),
        ];
        for (input, expected) in cases {
            assert_eq!(to_win_ansi(input), expected, "{input}");
        }
    }

    #[test]
    fn number_and_confidence_formats() {
        let numbers = [
            (12.0, "12"),
            (0.45, "0.45"),
            (7.125, "7.13"),
            (-0.001, "0"),
            (f64::NAN, "-"),
        ];
        for (value, expected) in numbers {
            assert_eq!(format_number(value), expected, "{value}");
        }
        let confidences = [
            (0.873, "87%"),
            (1.0, "100%"),
            (1.7, "100%"),
            (-0.2, "0%"),
            (f64::INFINITY, "-"),
        ];
        for (value, expected) in confidences {
            assert_eq!(format_confidence(value), expected, "{value}");
        }
    }

    #[test]
    fn humanize_document_types_and_statuses() {
        assert_eq!(humanize("hormone_panel"), "Hormone panel");
        assert_eq!(humanize("completed"), "Completed");
        assert_eq!(humanize(""), "");
    }

    #[test]
    fn documents_are_ordered_most_recent_first() {
        let data = data(3, 0);
        let names: Vec<&str> = documents_most_recent_first(&data.documents)
            .iter()
            .map(|d| d.filename.as_str())
            .collect();
        assert_eq!(
            names,
            ["document-02.pdf", "document-01.pdf", "document-00.pdf"]
        );
    }

    #[test]
    fn text_stays_inside_the_content_area_and_flows_onto_pages() {
        let mut long = data(12, 15);
        long.score
            .recommendations
            .extend((0..80).map(|i| format!("Recommendation {i}: {}", "word ".repeat(i % 40))));
        long.documents[3].key_findings.push("x".repeat(500));
        for data in [data(0, 0), data(1, 2), long] {
            let pages = layout_pages(&data);
            let runs = text_runs(&pages);
            for (page, x, baseline, face, size, text) in &runs {
                let right = x + text_width(text, *face, *size);
                assert!(
                    *x >= CONTENT_LEFT - 0.01 && right <= CONTENT_RIGHT + 0.01,
                    "page {page}: '{text}' spans {x}..{right}"
                );
                let in_footer = *baseline == FOOTER_BASELINE;
                assert!(
                    in_footer || (*baseline >= CONTENT_BOTTOM && *baseline <= PAGE_HEIGHT),
                    "page {page}: '{text}' at baseline {baseline}"
                );
            }
            let total = pages.len();
            for page in 0..total {
                let footer: Vec<&str> = runs
                    .iter()
                    .filter(|r| r.0 == page && r.2 == FOOTER_BASELINE)
                    .map(|r| r.5.as_str())
                    .collect();
                assert_eq!(
                    footer,
                    [DISCLAIMER, format!("Page {} of {total}", page + 1).as_str()]
                );
            }
        }
    }

    #[test]
    fn long_content_takes_more_pages() {
        let short = layout_pages(&data(0, 0)).len();
        let mut long = data(12, 15);
        long.score
            .recommendations
            .extend((0..200).map(|i| format!("Recommendation {i}")));
        assert!(layout_pages(&long).len() > short + 3);
    }

    #[test]
    fn detailed_findings_show_at_most_ten_documents() {
        let pages = layout_pages(&data(12, 1));
        let texts: Vec<String> = text_runs(&pages).into_iter().map(|r| r.5).collect();
        let headings: Vec<&String> = texts.iter().filter(|t| t.contains(". document-")).collect();
        assert_eq!(headings.len(), MAX_DETAILED_DOCUMENTS);
        assert_eq!(headings[0], "1. document-11.pdf");
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("2 more documents not shown"))
        );
    }

    #[test]
    fn render_produces_a_pdf() {
        let pdf = render_report(&data(2, 3)).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
