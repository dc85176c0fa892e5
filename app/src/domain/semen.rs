//! Semen analysis against the WHO 2021 lower reference limits.
//!
//! | measure | normal when | below the limit |
//! |---------|-------------|-----------------|
//! | concentration (million/ml) | >= 15 | 0: "Azoospermia"; < 1: "Severe oligozoospermia"; < 5: "Moderate oligozoospermia"; < 15: "Mild oligozoospermia" |
//! | progressive motility (%) | >= 32 | "Asthenozoospermia" |
//! | normal morphology (%) | >= 4 | "Teratozoospermia" |
//!
//! All three normal: "Normozoospermia". Otherwise every failing measure is named, in the
//! order of the table, joined with " + " (concentration 3, motility 20, morphology 5 ->
//! "Moderate oligozoospermia + Asthenozoospermia"). Volume, total motility, vitality, pH and
//! liquefaction time are validated and recorded but do not change the classification.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, check_optional_range, check_range, fmt_value};

/// WHO 2021 lower reference limit for sperm concentration, million/ml.
pub const CONCENTRATION_LIMIT: f64 = 15.0;
/// WHO 2021 lower reference limit for progressive motility, %.
pub const PROGRESSIVE_MOTILITY_LIMIT: f64 = 32.0;
/// WHO 2021 lower reference limit for normal morphology, %.
pub const NORMAL_MORPHOLOGY_LIMIT: f64 = 4.0;

/// The classification when every measure is at or above its limit.
pub const NORMOZOOSPERMIA: &str = "Normozoospermia";
/// The term for a concentration of exactly 0.
pub const AZOOSPERMIA: &str = "Azoospermia";
/// The term for progressive motility below 32 %.
pub const ASTHENOZOOSPERMIA: &str = "Asthenozoospermia";
/// The term for normal morphology below 4 %.
pub const TERATOZOOSPERMIA: &str = "Teratozoospermia";

/// A semen analysis as recorded by the andrology lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SemenInput {
    /// Sperm concentration, million/ml, 0 to 1000. 0 means azoospermia.
    #[schema(minimum = 0, maximum = 1000, example = 42.0)]
    pub concentration: f64,
    /// Progressive motility, % of sperm, 0 to 100.
    #[schema(minimum = 0, maximum = 100, example = 45.0)]
    pub progressive_motility: f64,
    /// Normal morphology, % of sperm (strict criteria), 0 to 100.
    #[schema(minimum = 0, maximum = 100, example = 6.0)]
    pub normal_morphology: f64,
    /// Ejaculate volume, ml, 0 to 20. Recorded only.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 20)]
    pub volume: Option<f64>,
    /// Total (progressive + non-progressive) motility, %, 0 to 100; at least the progressive
    /// motility. Recorded only.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub total_motility: Option<f64>,
    /// Vitality, % live sperm, 0 to 100. Recorded only.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub vitality: Option<f64>,
    /// pH of the ejaculate, 0 to 14. Recorded only.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 14)]
    pub ph: Option<f64>,
    /// Liquefaction time, minutes, 0 to 240. Recorded only.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 240)]
    pub liquefaction_minutes: Option<f64>,
}

/// The WHO classification of a semen analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SemenResult {
    /// "Normozoospermia", or the failing terms joined with " + ", e.g.
    /// "Moderate oligozoospermia + Asthenozoospermia".
    pub classification: String,
    /// True when concentration, progressive motility and morphology are all within limits.
    pub normal: bool,
    /// Each failing term on its own, in classification order; empty when normal.
    pub findings: Vec<String>,
}

impl SemenInput {
    /// Checks every range; the error names the first offending field.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range(
            "concentration",
            self.concentration,
            0.0,
            1000.0,
            "million/ml",
        )?;
        check_range(
            "progressive_motility",
            self.progressive_motility,
            0.0,
            100.0,
            "%",
        )?;
        check_range("normal_morphology", self.normal_morphology, 0.0, 100.0, "%")?;
        check_optional_range("volume", self.volume, 0.0, 20.0, "ml")?;
        check_optional_range("total_motility", self.total_motility, 0.0, 100.0, "%")?;
        self.check_total_motility_covers_progressive()?;
        check_optional_range("vitality", self.vitality, 0.0, 100.0, "%")?;
        check_optional_range("ph", self.ph, 0.0, 14.0, "")?;
        check_optional_range(
            "liquefaction_minutes",
            self.liquefaction_minutes,
            0.0,
            240.0,
            "minutes",
        )
    }

    fn check_total_motility_covers_progressive(&self) -> Result<(), FieldError> {
        let Some(total) = self.total_motility else {
            return Ok(());
        };
        if total >= self.progressive_motility {
            return Ok(());
        }
        Err(FieldError::new(
            "total_motility",
            format!(
                "total_motility must be at least progressive_motility ({} %), got {}",
                fmt_value(self.progressive_motility),
                fmt_value(total)
            ),
        ))
    }

    /// Classifies against the WHO 2021 limits. Call only after [`validate`](Self::validate).
    pub fn classify(&self) -> SemenResult {
        debug_assert!(self.validate().is_ok(), "classify called on invalid input");
        let findings: Vec<String> = [
            concentration_term(self.concentration),
            motility_term(self.progressive_motility),
            morphology_term(self.normal_morphology),
        ]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
        let normal = findings.is_empty();
        let classification = if normal {
            NORMOZOOSPERMIA.to_owned()
        } else {
            findings.join(" + ")
        };
        SemenResult {
            classification,
            normal,
            findings,
        }
    }
}

/// The term for a concentration (million/ml) below the limit, `None` when at or above 15.
pub fn concentration_term(concentration: f64) -> Option<&'static str> {
    if concentration >= CONCENTRATION_LIMIT {
        return None;
    }
    if concentration <= 0.0 {
        return Some(AZOOSPERMIA);
    }
    if concentration < 1.0 {
        return Some("Severe oligozoospermia");
    }
    if concentration < 5.0 {
        return Some("Moderate oligozoospermia");
    }
    Some("Mild oligozoospermia")
}

/// "Asthenozoospermia" when progressive motility (%) is below 32.
pub fn motility_term(progressive_motility: f64) -> Option<&'static str> {
    (progressive_motility < PROGRESSIVE_MOTILITY_LIMIT).then_some(ASTHENOZOOSPERMIA)
}

/// "Teratozoospermia" when normal morphology (%) is below 4.
pub fn morphology_term(normal_morphology: f64) -> Option<&'static str> {
    (normal_morphology < NORMAL_MORPHOLOGY_LIMIT).then_some(TERATOZOOSPERMIA)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(concentration: f64, motility: f64, morphology: f64) -> SemenInput {
        SemenInput {
            concentration,
            progressive_motility: motility,
            normal_morphology: morphology,
            volume: None,
            total_motility: None,
            vitality: None,
            ph: None,
            liquefaction_minutes: None,
        }
    }

    #[test]
    fn classification_follows_who_2021_limits() {
        let cases: &[(f64, f64, f64, &str)] = &[
            // The example of DOMAIN.md.
            (
                3.0,
                20.0,
                5.0,
                "Moderate oligozoospermia + Asthenozoospermia",
            ),
            // Every limit exactly met is normal.
            (15.0, 32.0, 4.0, "Normozoospermia"),
            (100.0, 60.0, 14.0, "Normozoospermia"),
            // Concentration boundaries.
            (14.99, 32.0, 4.0, "Mild oligozoospermia"),
            (5.0, 32.0, 4.0, "Mild oligozoospermia"),
            (4.99, 32.0, 4.0, "Moderate oligozoospermia"),
            (1.0, 32.0, 4.0, "Moderate oligozoospermia"),
            (0.99, 32.0, 4.0, "Severe oligozoospermia"),
            (0.01, 32.0, 4.0, "Severe oligozoospermia"),
            (0.0, 32.0, 4.0, "Azoospermia"),
            // Motility and morphology boundaries.
            (15.0, 31.99, 4.0, "Asthenozoospermia"),
            (15.0, 32.0, 3.99, "Teratozoospermia"),
            // Every failing measure, in order.
            (
                10.0,
                10.0,
                1.0,
                "Mild oligozoospermia + Asthenozoospermia + Teratozoospermia",
            ),
            (0.5, 40.0, 2.0, "Severe oligozoospermia + Teratozoospermia"),
            (
                0.0,
                0.0,
                0.0,
                "Azoospermia + Asthenozoospermia + Teratozoospermia",
            ),
            (20.0, 20.0, 2.0, "Asthenozoospermia + Teratozoospermia"),
        ];
        for &(concentration, motility, morphology, expected) in cases {
            let semen = input(concentration, motility, morphology);
            semen.validate().unwrap();
            let result = semen.classify();
            assert_eq!(
                result.classification, expected,
                "concentration {concentration}, motility {motility}, morphology {morphology}"
            );
            assert_eq!(result.normal, expected == NORMOZOOSPERMIA);
            let joined = if result.findings.is_empty() {
                NORMOZOOSPERMIA.to_owned()
            } else {
                result.findings.join(" + ")
            };
            assert_eq!(joined, expected);
        }
    }

    #[test]
    fn findings_name_each_failing_measure_separately() {
        let result = input(3.0, 20.0, 5.0).classify();
        assert_eq!(
            result.findings,
            vec!["Moderate oligozoospermia", "Asthenozoospermia"]
        );
        assert!(input(15.0, 32.0, 4.0).classify().findings.is_empty());
    }

    #[test]
    fn validation_names_the_field_and_range() {
        let base = input(20.0, 40.0, 5.0);
        let cases: Vec<(SemenInput, &str, &str)> = vec![
            (
                SemenInput {
                    progressive_motility: 140.0,
                    ..base.clone()
                },
                "progressive_motility",
                "progressive_motility must be between 0 and 100 %, got 140",
            ),
            (
                SemenInput {
                    concentration: -1.0,
                    ..base.clone()
                },
                "concentration",
                "concentration must be between 0 and 1000 million/ml, got -1",
            ),
            (
                SemenInput {
                    concentration: 1000.5,
                    ..base.clone()
                },
                "concentration",
                "concentration must be between 0 and 1000 million/ml, got 1000.5",
            ),
            (
                SemenInput {
                    normal_morphology: 101.0,
                    ..base.clone()
                },
                "normal_morphology",
                "normal_morphology must be between 0 and 100 %, got 101",
            ),
            (
                SemenInput {
                    volume: Some(25.0),
                    ..base.clone()
                },
                "volume",
                "volume must be between 0 and 20 ml, got 25",
            ),
            (
                SemenInput {
                    total_motility: Some(30.0),
                    ..base.clone()
                },
                "total_motility",
                "total_motility must be at least progressive_motility (40 %), got 30",
            ),
            (
                SemenInput {
                    total_motility: Some(120.0),
                    ..base.clone()
                },
                "total_motility",
                "total_motility must be between 0 and 100 %, got 120",
            ),
            (
                SemenInput {
                    vitality: Some(-5.0),
                    ..base.clone()
                },
                "vitality",
                "vitality must be between 0 and 100 %, got -5",
            ),
            (
                SemenInput {
                    ph: Some(15.0),
                    ..base.clone()
                },
                "ph",
                "ph must be between 0 and 14, got 15",
            ),
            (
                SemenInput {
                    liquefaction_minutes: Some(300.0),
                    ..base.clone()
                },
                "liquefaction_minutes",
                "liquefaction_minutes must be between 0 and 240 minutes, got 300",
            ),
            (
                SemenInput {
                    concentration: f64::NAN,
                    ..base.clone()
                },
                "concentration",
                "concentration must be between 0 and 1000 million/ml, got NaN",
            ),
        ];
        for (semen, field, message) in cases {
            let err = semen.validate().unwrap_err();
            assert_eq!(err.field, field);
            assert_eq!(err.message, message);
        }
    }

    #[test]
    fn valid_optional_fields_pass() {
        let semen = SemenInput {
            volume: Some(2.5),
            total_motility: Some(40.0),
            vitality: Some(70.0),
            ph: Some(7.4),
            liquefaction_minutes: Some(30.0),
            ..input(20.0, 40.0, 5.0)
        };
        assert_eq!(semen.validate(), Ok(()));
    }

    #[test]
    fn json_rejects_unknown_fields_and_accepts_missing_optionals() {
        let ok: SemenInput = serde_json::from_str(
            r#"{"concentration": 3, "progressive_motility": 20, "normal_morphology": 5}"#,
        )
        .unwrap();
        assert_eq!(ok, input(3.0, 20.0, 5.0));
        let unknown = serde_json::from_str::<SemenInput>(
            r#"{"concentration": 3, "progressive_motility": 20, "normal_morphology": 5, "motility": 1}"#,
        );
        assert!(unknown.is_err());
    }
}
