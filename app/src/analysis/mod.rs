//! Document analysis: from an uploaded document to the lab values it states.
//!
//! Pure functions, no I/O: the background job hands over the bytes and stores the
//! [`Outcome`]. Three steps, one file each:
//!
//! 1. [`extract`]: the document's text. Plain text must be UTF-8; a PDF gives its text
//!    layer (`pdf-extract`, whose panics are caught); an image is never read (a clinician
//!    reviews it: values are not invented).
//! 2. [`labvalues`]: the values stated in the text (FSH, LH, AMH, estradiol, progesterone,
//!    TSH, prolactin, sperm concentration, progressive motility, normal morphology, antral
//!    follicle count, endometrial thickness), converted to canonical units, implausible
//!    numbers rejected, each with a confidence. Its module docs list the layouts it reads.
//! 3. [`findings`]: a plain clinical sentence per value, with the thresholds of `DOMAIN.md`,
//!    and the fertility domains the values bear on.
//!
//! ## Outcomes
//!
//! | document | outcome |
//! |----------|---------|
//! | text or PDF with recognised values | `Completed`, the values, findings and domains |
//! | readable text without any recognised value (a consultation note) | `Completed` with no values, no domains and the finding "no recognised lab values" |
//! | PNG or JPEG image | `NeedsReview`: images are not analysed automatically |
//! | PDF without a text layer (a scan) | `Failed`: "no text layer; scanned PDFs need manual review" |
//! | unreadable PDF | `Failed`: "could not read the PDF: ..." |
//! | text that is not UTF-8, or empty | `Failed` |
//! | another content type | `Failed` |
//!
//! A readable document without values is a success, not a failure: consultation notes and
//! letters legitimately state none. Only a document whose text cannot be had fails.
//!
//! ```
//! use fertivision::analysis::{Outcome, analyse_document};
//!
//! let report = "AMH: 0,4 ng/mL (1.0-4.0)\nSperm concentration 12 x10^6/mL";
//! let Outcome::Completed(analysis) = analyse_document("text/plain", report.as_bytes()) else {
//!     panic!("a readable report completes");
//! };
//! assert_eq!(analysis.values[0].name, "AMH");
//! assert_eq!(analysis.values[0].value, 0.4);
//! assert_eq!(analysis.values[0].unit, "ng/mL");
//! assert_eq!(analysis.key_findings[0], "AMH 0.4 ng/mL: below 0.5, critical");
//! ```

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Domain, Evidence};

pub mod extract;
pub mod findings;
pub mod labvalues;

pub use extract::ExtractError;
pub use labvalues::Analyte;

/// One lab value found in a document, in its canonical unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LabValue {
    /// Canonical name: FSH, LH, AMH, estradiol, progesterone, TSH, prolactin,
    /// sperm_concentration, progressive_motility, normal_morphology, antral_follicle_count
    /// or endometrial_thickness.
    #[schema(example = "AMH")]
    pub name: String,
    /// The value, converted to `unit`.
    #[schema(example = 0.8)]
    pub value: f64,
    /// Canonical unit: IU/L (FSH, LH), ng/mL (AMH, progesterone, prolactin), pg/mL
    /// (estradiol), mIU/L (TSH), million/mL, % (motility, morphology), count (AFC), mm.
    #[schema(example = "ng/mL")]
    pub unit: String,
    /// How sure the extraction is, 0 to 1: 0.95 stated with its unit, 0.8 converted or unit
    /// from a table header, 0.6 percentage without unit.
    #[schema(example = 0.95)]
    pub confidence: f64,
}

/// What a document says (`Default`: nothing found).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DocumentAnalysis {
    /// The recognised values, at most one per name, in the order FSH, LH, AMH, estradiol,
    /// progesterone, TSH, prolactin, semen values, AFC, endometrial thickness.
    pub values: Vec<LabValue>,
    /// One clinical sentence per value (e.g. "AMH 0.4 ng/mL: below 0.5, critical"), then
    /// any number rejected as implausible; "no recognised lab values" when there is none.
    pub key_findings: Vec<String>,
    /// The fertility domains the values bear on, in report order.
    pub domains: Vec<Domain>,
}

/// The result of analysing one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The text was read; it may state no value (see the module docs).
    Completed(DocumentAnalysis),
    /// A person must read the document (an image).
    NeedsReview {
        /// Why, for the clinician.
        reason: String,
    },
    /// The document could not be read.
    Failed {
        /// Why, e.g. "no text layer; scanned PDFs need manual review".
        reason: String,
    },
}

/// Analyses a document of `content_type` (application/pdf, text/plain, image/png or
/// image/jpeg; parameters such as `; charset=utf-8` are ignored).
pub fn analyse_document(content_type: &str, bytes: &[u8]) -> Outcome {
    match extract::document_text(content_type, bytes) {
        Ok(text) => Outcome::Completed(analyse_text(&text)),
        Err(error) if error.needs_review() => Outcome::NeedsReview {
            reason: error.to_string(),
        },
        Err(error) => Outcome::Failed {
            reason: error.to_string(),
        },
    }
}

/// Analyses text already extracted from a document.
pub fn analyse_text(text: &str) -> DocumentAnalysis {
    let extraction = labvalues::extract_values(text);
    DocumentAnalysis {
        key_findings: findings::key_findings(&extraction.values, &extraction.rejected),
        domains: findings::domains(&extraction.values),
        values: extraction
            .values
            .iter()
            .map(|found| LabValue {
                name: found.analyte.name().to_owned(),
                value: found.value,
                unit: found.analyte.unit().to_owned(),
                confidence: found.confidence,
            })
            .collect(),
    }
}

/// Copies lab values into the evidence for the fertility score. Later values overwrite
/// earlier ones (pass documents oldest first); unknown names and non-finite values are
/// ignored; the antral follicle count is rounded to a whole number.
pub fn apply_to_evidence(values: &[LabValue], evidence: &mut Evidence) {
    for lab_value in values {
        let Some(analyte) = Analyte::from_name(&lab_value.name) else {
            continue;
        };
        let value = lab_value.value;
        if !value.is_finite() {
            continue;
        }
        let slot = match analyte {
            Analyte::Fsh => &mut evidence.fsh,
            Analyte::Lh => &mut evidence.lh,
            Analyte::Amh => &mut evidence.amh,
            Analyte::Estradiol => &mut evidence.estradiol,
            Analyte::Progesterone => &mut evidence.progesterone,
            Analyte::Tsh => &mut evidence.tsh,
            Analyte::Prolactin => &mut evidence.prolactin,
            Analyte::SpermConcentration => &mut evidence.sperm_concentration,
            Analyte::ProgressiveMotility => &mut evidence.progressive_motility,
            Analyte::NormalMorphology => &mut evidence.normal_morphology,
            Analyte::EndometrialThickness => &mut evidence.endometrial_thickness,
            Analyte::AntralFollicleCount => {
                evidence.antral_follicle_count = Some(value.round().max(0.0) as u32);
                continue;
            }
        };
        *slot = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(outcome: Outcome) -> DocumentAnalysis {
        match outcome {
            Outcome::Completed(analysis) => analysis,
            other => panic!("expected Completed, got {other:?}"),
        }
    }

    #[test]
    fn images_need_review_without_findings() {
        for content_type in ["image/png", "image/jpeg"] {
            let outcome = analyse_document(content_type, b"\x89PNG\r\n\x1a\nAMH 0.4 ng/mL");
            let Outcome::NeedsReview { reason } = outcome else {
                panic!("{content_type}: {outcome:?}");
            };
            assert!(reason.contains("images are not analysed"), "{reason}");
        }
    }

    #[test]
    fn unreadable_documents_fail() {
        for (content_type, bytes, reason_start) in [
            (
                "application/pdf",
                &b"\x00\x01garbage bytes"[..],
                "could not read the PDF: ",
            ),
            (
                "application/pdf",
                &b"%PDF-1.7 truncated"[..],
                "could not read the PDF: ",
            ),
            ("text/plain", &b""[..], "the document contains no text"),
            (
                "text/plain",
                &b"\xC3\x28 AMH"[..],
                "the text file is not valid UTF-8",
            ),
            (
                "application/msword",
                &b"AMH 1 ng/mL"[..],
                "unsupported content type",
            ),
        ] {
            match analyse_document(content_type, bytes) {
                Outcome::Failed { reason } => {
                    assert!(reason.starts_with(reason_start), "{reason}")
                }
                other => panic!("{content_type} {bytes:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn readable_text_without_values_completes_empty() {
        let analysis = completed(analyse_document(
            "text/plain",
            b"Consultation: discussed IVF. AMH to be repeated.",
        ));
        assert!(analysis.values.is_empty());
        assert!(analysis.domains.is_empty());
        assert_eq!(analysis.key_findings, vec!["no recognised lab values"]);
    }

    #[test]
    fn values_findings_and_domains() {
        let analysis = completed(analyse_document(
            "text/plain; charset=utf-8",
            [
                "Sperm concentration 12 million/mL",
                "AMH 0.4 ng/mL",
                "Endometrial thickness 0.85 cm",
                "AMH 500 ng/mL",
            ]
            .join("\n")
            .as_bytes(),
        ));
        let values: Vec<_> = analysis
            .values
            .iter()
            .map(|v| (v.name.as_str(), v.value, v.unit.as_str(), v.confidence))
            .collect();
        assert_eq!(
            values,
            vec![
                ("AMH", 0.4, "ng/mL", 0.95),
                ("sperm_concentration", 12.0, "million/mL", 0.95),
                ("endometrial_thickness", 8.5, "mm", 0.8),
            ]
        );
        assert_eq!(
            analysis.key_findings,
            vec![
                "AMH 0.4 ng/mL: below 0.5, critical",
                "Sperm concentration 12 million/mL: mild oligozoospermia",
                "Endometrial thickness 8.5 mm: normal (7 to 15)",
                "AMH 500 ng/mL: outside the plausible range 0 to 30 ng/mL, not used",
            ]
        );
        assert_eq!(
            analysis.domains,
            vec![Domain::Male, Domain::Ovarian, Domain::Uterine]
        );
    }

    #[test]
    fn evidence_takes_every_value_later_ones_win() {
        let value = |name: &str, value: f64| LabValue {
            name: name.to_owned(),
            value,
            unit: Analyte::from_name(name)
                .map_or("", Analyte::unit)
                .to_owned(),
            confidence: 0.95,
        };
        let values = [
            value("AMH", 0.4),
            value("FSH", 7.2),
            value("LH", 5.1),
            value("estradiol", 45.0),
            value("progesterone", 12.0),
            value("TSH", 2.1),
            value("prolactin", 15.0),
            value("sperm_concentration", 12.0),
            value("progressive_motility", 35.0),
            value("normal_morphology", 4.0),
            value("antral_follicle_count", 13.6),
            value("endometrial_thickness", 8.5),
            value("AMH", 1.2),
            value("vitamin_d", 30.0),
            value("TSH", f64::NAN),
        ];
        let mut evidence = Evidence::default();
        apply_to_evidence(&values, &mut evidence);
        assert_eq!(
            evidence,
            Evidence {
                amh: Some(1.2),
                fsh: Some(7.2),
                lh: Some(5.1),
                estradiol: Some(45.0),
                progesterone: Some(12.0),
                tsh: Some(2.1),
                prolactin: Some(15.0),
                sperm_concentration: Some(12.0),
                progressive_motility: Some(35.0),
                normal_morphology: Some(4.0),
                antral_follicle_count: Some(14),
                endometrial_thickness: Some(8.5),
                ..Evidence::default()
            }
        );
    }

    #[test]
    fn outcome_serialises_with_a_tag() {
        let json = serde_json::to_value(Outcome::Failed {
            reason: "no text layer; scanned PDFs need manual review".to_owned(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "outcome": "failed",
                "reason": "no text layer; scanned PDFs need manual review",
            })
        );
    }
}
