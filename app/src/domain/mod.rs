//! The clinical rules of FertiVision: pure functions, no I/O.
//!
//! Every lab analysis follows the same two steps, mirroring "raw -> validated" configs:
//!
//! 1. the API deserializes a `XInput` (unknown fields are rejected) and calls
//!    [`validate`](SemenInput::validate), which names the offending JSON field and the allowed
//!    range in a [`FieldError`];
//! 2. [`classify`](SemenInput::classify) applies the deterministic rules of `DOMAIN.md` and
//!    returns a `XResult`.
//!
//! | kind | input | result | rule |
//! |------|-------|--------|------|
//! | [`AnalysisKind::Semen`] | [`SemenInput`] | [`SemenResult`] | WHO 2021 lower reference limits |
//! | [`AnalysisKind::Oocyte`] | [`OocyteInput`] | [`OocyteResult`] | maturity and morphology score |
//! | [`AnalysisKind::Embryo`] | [`EmbryoInput`] | [`EmbryoResult`] | cleavage grade A-D or Gardner grade |
//! | [`AnalysisKind::Follicle`] | [`FollicleInput`] | [`FollicleResult`] | antral follicle count |
//! | [`AnalysisKind::Hysteroscopy`] | [`HysteroscopyInput`] | [`HysteroscopyResult`] | any non-normal finding is flagged |
//!
//! The [`score`] module turns clinical values (not extraction confidences) into the
//! eight-domain [`FertilityScore`]; its doc comment is the clinic's reference for the mapping.
//!
//! ```
//! use fertivision::domain::SemenInput;
//!
//! let input = SemenInput {
//!     concentration: 3.0,
//!     progressive_motility: 20.0,
//!     normal_morphology: 5.0,
//!     volume: None,
//!     total_motility: None,
//!     vitality: None,
//!     ph: None,
//!     liquefaction_minutes: None,
//! };
//! input.validate().unwrap();
//! let result = input.classify();
//! assert_eq!(result.classification, "Moderate oligozoospermia + Asthenozoospermia");
//! ```
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod embryo;
pub mod follicle;
pub mod hysteroscopy;
pub mod oocyte;
pub mod score;
pub mod semen;

pub use embryo::{
    CleavageGrade, EmbryoInput, EmbryoQuality, EmbryoResult, Grade, Stage, blastocyst_quality,
    cleavage_grade, expected_cells, gardner_grade,
};
pub use follicle::{FollicleInput, FollicleResult, Ovary, Reserve};
pub use hysteroscopy::{Finding, HysteroscopyInput, HysteroscopyResult, TubalPatency};
pub use oocyte::{Maturity, OocyteInput, OocyteQuality, OocyteResult, mii_quality};
pub use score::{
    Band, Domain, DomainScore, DomainStatus, Evidence, FertilityScore, IMPROVEMENT_THRESHOLD,
    NO_DATA_SCORE, fertility_score, points_table,
};
pub use semen::{SemenInput, SemenResult};

/// A validation failure that names the offending input field (JSON field name, e.g.
/// "progressive_motility").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// The JSON name of the offending field.
    pub field: String,
    /// What is wrong, naming the field and the allowed range, e.g.
    /// "progressive_motility must be between 0 and 100 %, got 140".
    pub message: String,
}

impl FieldError {
    /// A failure of `field` described by `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The five kinds of lab analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnalysisKind {
    /// Semen analysis (WHO 2021).
    Semen,
    /// Oocyte maturity and morphology.
    Oocyte,
    /// Embryo grading, cleavage stage or blastocyst.
    Embryo,
    /// Follicle ultrasound (antral follicle count).
    Follicle,
    /// Hysteroscopy findings.
    Hysteroscopy,
}

impl AnalysisKind {
    /// Every kind, in the order of `DOMAIN.md`.
    pub const ALL: [AnalysisKind; 5] = [
        AnalysisKind::Semen,
        AnalysisKind::Oocyte,
        AnalysisKind::Embryo,
        AnalysisKind::Follicle,
        AnalysisKind::Hysteroscopy,
    ];

    /// The lowercase name used in JSON and URLs, e.g. "semen".
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisKind::Semen => "semen",
            AnalysisKind::Oocyte => "oocyte",
            AnalysisKind::Embryo => "embryo",
            AnalysisKind::Follicle => "follicle",
            AnalysisKind::Hysteroscopy => "hysteroscopy",
        }
    }
}

impl fmt::Display for AnalysisKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AnalysisKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AnalysisKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown analysis kind '{s}'; expected one of semen, oocyte, embryo, follicle, hysteroscopy"
                )
            })
    }
}

/// Formats a measurement for messages: at most two decimals, no trailing zeros
/// (12.0 -> "12", 0.45 -> "0.45").
fn fmt_value(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    // `-0` would read oddly in a message.
    if rounded == 0.0 {
        return "0".to_owned();
    }
    format!("{rounded}")
}

/// Checks that `value` lies in `min..=max` (and is a finite number).
///
/// The message reads "`field` must be between `min` and `max` `unit`, got `value`".
fn check_range(field: &str, value: f64, min: f64, max: f64, unit: &str) -> Result<(), FieldError> {
    if value.is_finite() && (min..=max).contains(&value) {
        return Ok(());
    }
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    Err(FieldError::new(
        field,
        format!(
            "{field} must be between {} and {}{unit}, got {}",
            fmt_value(min),
            fmt_value(max),
            fmt_value(value)
        ),
    ))
}

/// [`check_range`] for an optional value: absent is fine.
fn check_optional_range(
    field: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
    unit: &str,
) -> Result<(), FieldError> {
    match value {
        Some(value) => check_range(field, value, min, max, unit),
        None => Ok(()),
    }
}

/// Checks that an optional free-text field has at most `max_chars` characters.
fn check_text(field: &str, value: Option<&str>, max_chars: usize) -> Result<(), FieldError> {
    let Some(text) = value else {
        return Ok(());
    };
    let chars = text.chars().count();
    if chars <= max_chars {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        format!("{field} must be at most {max_chars} characters, got {chars}"),
    ))
}

/// A required field of a conditional group is missing.
fn missing(field: &str, context: &str) -> FieldError {
    FieldError::new(field, format!("{field} is required {context}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_kind_round_trips_through_str_and_json() {
        for kind in AnalysisKind::ALL {
            assert_eq!(kind.as_str().parse::<AnalysisKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<AnalysisKind>(&json).unwrap(), kind);
        }
    }

    #[test]
    fn unknown_analysis_kind_lists_the_expected_ones() {
        let cases = ["x", "Semen", "", "sperm"];
        for input in cases {
            let err = input.parse::<AnalysisKind>().unwrap_err();
            assert_eq!(
                err,
                format!(
                    "unknown analysis kind '{input}'; expected one of semen, oocyte, embryo, follicle, hysteroscopy"
                )
            );
        }
    }

    #[test]
    fn check_range_accepts_bounds_and_rejects_outside() {
        let cases: &[(f64, bool)] = &[
            (0.0, true),
            (100.0, true),
            (50.5, true),
            (-0.1, false),
            (100.1, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
        ];
        for &(value, ok) in cases {
            assert_eq!(
                check_range("x", value, 0.0, 100.0, "%").is_ok(),
                ok,
                "value {value}"
            );
        }
    }

    #[test]
    fn range_messages_name_field_range_and_value() {
        let cases = [
            (
                check_range("progressive_motility", 140.0, 0.0, 100.0, "%"),
                "progressive_motility must be between 0 and 100 %, got 140",
            ),
            (
                check_range("ph", 14.5, 0.0, 14.0, ""),
                "ph must be between 0 and 14, got 14.5",
            ),
            (
                check_optional_range("volume", Some(-1.0), 0.0, 20.0, "ml"),
                "volume must be between 0 and 20 ml, got -1",
            ),
        ];
        for (result, expected) in cases {
            let err = result.unwrap_err();
            assert_eq!(err.message, expected);
            assert_eq!(err.to_string(), expected);
        }
    }

    #[test]
    fn text_limit_counts_characters_not_bytes() {
        let cases = [
            (None, true),
            (Some("é".repeat(200)), true),
            (Some("a".repeat(201)), false),
        ];
        for (text, ok) in cases {
            let result = check_text("cavity", text.as_deref(), 200);
            assert_eq!(result.is_ok(), ok);
            if let Err(err) = result {
                assert_eq!(err.field, "cavity");
                assert_eq!(
                    err.message,
                    "cavity must be at most 200 characters, got 201"
                );
            }
        }
    }

    #[test]
    fn fmt_value_trims_trailing_zeros() {
        let cases = [
            (12.0, "12"),
            (0.45, "0.45"),
            (0.1 + 0.2, "0.3"),
            (-0.0, "0"),
            (12.5, "12.5"),
        ];
        for (value, expected) in cases {
            assert_eq!(fmt_value(value), expected);
        }
    }
}
