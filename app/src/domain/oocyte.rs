//! Oocyte maturity and morphology.
//!
//! | maturity | morphology score | quality | ICSI |
//! |----------|------------------|---------|------|
//! | MII | 3 or 4 | Excellent | "suitable for ICSI" |
//! | MII | 2 | Good | "suitable for ICSI" |
//! | MII | 1 | Fair | "may be used for ICSI" |
//! | MI | any or none | Immature | "immature; may mature in culture" |
//! | GV | any or none | Immature | "immature; not suitable for ICSI" |
//!
//! The morphology score is required for MII oocytes. Cumulus cells, zona pellucida,
//! cytoplasm, polar body and viability are recorded only.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, check_text};

/// Longest accepted free-text description, in characters.
const MAX_TEXT_CHARS: usize = 200;

/// Nuclear maturity of an oocyte.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Maturity {
    /// Germinal vesicle (prophase I): immature.
    GV,
    /// Metaphase I: immature, may mature in culture.
    MI,
    /// Metaphase II: mature.
    MII,
}

/// Quality of an oocyte, as the lab reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum OocyteQuality {
    /// MII with morphology score 3 or 4.
    Excellent,
    /// MII with morphology score 2.
    Good,
    /// MII with morphology score 1.
    Fair,
    /// MI or GV.
    Immature,
}

/// An oocyte as assessed in the IVF lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OocyteInput {
    /// Nuclear maturity: "GV", "MI" or "MII".
    pub maturity: Maturity,
    /// Morphology score, 1 (poor) to 4 (best); required when maturity is MII.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4)]
    pub morphology_score: Option<u8>,
    /// Cumulus cells description, at most 200 characters. Recorded only.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub cumulus_cells: Option<String>,
    /// Zona pellucida description, at most 200 characters. Recorded only.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub zona_pellucida: Option<String>,
    /// Cytoplasm description, at most 200 characters. Recorded only.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub cytoplasm: Option<String>,
    /// Polar body description, at most 200 characters. Recorded only.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub polar_body: Option<String>,
    /// Whether the oocyte looks viable. Recorded only.
    #[serde(default)]
    pub viability: Option<bool>,
}

/// The classification of one oocyte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OocyteResult {
    /// Excellent, Good, Fair (MII) or Immature (MI, GV).
    pub quality: OocyteQuality,
    /// True for MII.
    pub mature: bool,
    /// True for MII of any score (score 1 "may be used").
    pub suitable_for_icsi: bool,
    /// "suitable for ICSI", "may be used for ICSI", "immature; may mature in culture" or
    /// "immature; not suitable for ICSI".
    pub recommendation: String,
}

impl OocyteInput {
    /// Checks the morphology score and text lengths; the error names the offending field.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check_morphology_score()?;
        check_text(
            "cumulus_cells",
            self.cumulus_cells.as_deref(),
            MAX_TEXT_CHARS,
        )?;
        check_text(
            "zona_pellucida",
            self.zona_pellucida.as_deref(),
            MAX_TEXT_CHARS,
        )?;
        check_text("cytoplasm", self.cytoplasm.as_deref(), MAX_TEXT_CHARS)?;
        check_text("polar_body", self.polar_body.as_deref(), MAX_TEXT_CHARS)
    }

    fn check_morphology_score(&self) -> Result<(), FieldError> {
        match self.morphology_score {
            None if self.maturity == Maturity::MII => Err(FieldError::new(
                "morphology_score",
                "morphology_score is required when maturity is MII (1 to 4)",
            )),
            Some(score) if !(1..=4).contains(&score) => Err(FieldError::new(
                "morphology_score",
                format!("morphology_score must be between 1 and 4, got {score}"),
            )),
            _ => Ok(()),
        }
    }

    /// Classifies the oocyte. Call only after [`validate`](Self::validate).
    ///
    /// Should an MII oocyte arrive without a score anyway, it is graded at the lowest MII
    /// grade (Fair) rather than guessed better.
    pub fn classify(&self) -> OocyteResult {
        debug_assert!(self.validate().is_ok(), "classify called on invalid input");
        match self.maturity {
            Maturity::MII => mature_result(self.morphology_score.unwrap_or(1)),
            Maturity::MI => immature_result("immature; may mature in culture"),
            Maturity::GV => immature_result("immature; not suitable for ICSI"),
        }
    }
}

/// The quality of an MII oocyte with this morphology score (1 to 4).
pub fn mii_quality(morphology_score: u8) -> OocyteQuality {
    match morphology_score {
        3.. => OocyteQuality::Excellent,
        2 => OocyteQuality::Good,
        _ => OocyteQuality::Fair,
    }
}

fn mature_result(morphology_score: u8) -> OocyteResult {
    let quality = mii_quality(morphology_score);
    let recommendation = if quality == OocyteQuality::Fair {
        "may be used for ICSI"
    } else {
        "suitable for ICSI"
    };
    OocyteResult {
        quality,
        mature: true,
        suitable_for_icsi: true,
        recommendation: recommendation.to_owned(),
    }
}

fn immature_result(recommendation: &str) -> OocyteResult {
    OocyteResult {
        quality: OocyteQuality::Immature,
        mature: false,
        suitable_for_icsi: false,
        recommendation: recommendation.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(maturity: Maturity, morphology_score: Option<u8>) -> OocyteInput {
        OocyteInput {
            maturity,
            morphology_score,
            cumulus_cells: None,
            zona_pellucida: None,
            cytoplasm: None,
            polar_body: None,
            viability: None,
        }
    }

    #[test]
    fn classification_table() {
        use Maturity::*;
        use OocyteQuality::*;
        // (maturity, score, quality, mature, suitable for ICSI, recommendation)
        type Case = (
            Maturity,
            Option<u8>,
            OocyteQuality,
            bool,
            bool,
            &'static str,
        );
        let cases: &[Case] = &[
            (MII, Some(4), Excellent, true, true, "suitable for ICSI"),
            (MII, Some(3), Excellent, true, true, "suitable for ICSI"),
            (MII, Some(2), Good, true, true, "suitable for ICSI"),
            (MII, Some(1), Fair, true, true, "may be used for ICSI"),
            (
                MI,
                None,
                Immature,
                false,
                false,
                "immature; may mature in culture",
            ),
            (
                MI,
                Some(4),
                Immature,
                false,
                false,
                "immature; may mature in culture",
            ),
            (
                GV,
                None,
                Immature,
                false,
                false,
                "immature; not suitable for ICSI",
            ),
            (
                GV,
                Some(3),
                Immature,
                false,
                false,
                "immature; not suitable for ICSI",
            ),
        ];
        for &(maturity, score, quality, mature, icsi, recommendation) in cases {
            let oocyte = input(maturity, score);
            oocyte.validate().unwrap();
            let result = oocyte.classify();
            assert_eq!(
                result,
                OocyteResult {
                    quality,
                    mature,
                    suitable_for_icsi: icsi,
                    recommendation: recommendation.to_owned(),
                },
                "{maturity:?} score {score:?}"
            );
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let long = Some("x".repeat(201));
        let cases: Vec<(OocyteInput, &str, &str)> = vec![
            (
                input(Maturity::MII, None),
                "morphology_score",
                "morphology_score is required when maturity is MII (1 to 4)",
            ),
            (
                input(Maturity::MII, Some(0)),
                "morphology_score",
                "morphology_score must be between 1 and 4, got 0",
            ),
            (
                input(Maturity::GV, Some(5)),
                "morphology_score",
                "morphology_score must be between 1 and 4, got 5",
            ),
            (
                OocyteInput {
                    cumulus_cells: long.clone(),
                    ..input(Maturity::MI, None)
                },
                "cumulus_cells",
                "cumulus_cells must be at most 200 characters, got 201",
            ),
            (
                OocyteInput {
                    zona_pellucida: long.clone(),
                    ..input(Maturity::MI, None)
                },
                "zona_pellucida",
                "zona_pellucida must be at most 200 characters, got 201",
            ),
            (
                OocyteInput {
                    cytoplasm: long.clone(),
                    ..input(Maturity::MI, None)
                },
                "cytoplasm",
                "cytoplasm must be at most 200 characters, got 201",
            ),
            (
                OocyteInput {
                    polar_body: long,
                    ..input(Maturity::MI, None)
                },
                "polar_body",
                "polar_body must be at most 200 characters, got 201",
            ),
        ];
        for (oocyte, field, message) in cases {
            let err = oocyte.validate().unwrap_err();
            assert_eq!((err.field.as_str(), err.message.as_str()), (field, message));
        }
    }

    #[test]
    fn json_uses_the_lab_spellings() {
        let cases = [
            (Maturity::GV, "\"GV\""),
            (Maturity::MI, "\"MI\""),
            (Maturity::MII, "\"MII\""),
        ];
        for (maturity, json) in cases {
            assert_eq!(serde_json::to_string(&maturity).unwrap(), json);
            assert_eq!(serde_json::from_str::<Maturity>(json).unwrap(), maturity);
        }
        let qualities = [
            (OocyteQuality::Excellent, "\"Excellent\""),
            (OocyteQuality::Good, "\"Good\""),
            (OocyteQuality::Fair, "\"Fair\""),
            (OocyteQuality::Immature, "\"Immature\""),
        ];
        for (quality, json) in qualities {
            assert_eq!(serde_json::to_string(&quality).unwrap(), json);
        }
        let parsed: OocyteInput =
            serde_json::from_str(r#"{"maturity": "MII", "morphology_score": 3}"#).unwrap();
        assert_eq!(parsed, input(Maturity::MII, Some(3)));
        assert!(serde_json::from_str::<OocyteInput>(r#"{"maturity": "mii"}"#).is_err());
        assert!(serde_json::from_str::<OocyteInput>(r#"{"maturity": "MI", "grade": 1}"#).is_err());
        assert!(
            serde_json::from_str::<OocyteInput>(r#"{"maturity": "MI", "morphology_score": -1}"#)
                .is_err()
        );
    }
}
