//! Hysteroscopy: uterine cavity findings.
//!
//! Any finding other than `normal` is flagged. `normal` must stand alone, and a finding is
//! listed at most once. Cavity, pattern, biopsy, tubal patency and the treatment
//! recommendation are recorded; tubal patency is carried into the result because the
//! fertility score uses it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, check_range, check_text};

/// Longest accepted cavity or pattern description, in characters.
const MAX_SHORT_TEXT_CHARS: usize = 200;
/// Longest accepted treatment recommendation, in characters.
const MAX_RECOMMENDATION_CHARS: usize = 1000;

/// A hysteroscopic finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Finding {
    /// A normal cavity; must be the only finding.
    Normal,
    /// Endometrial polyp.
    Polyp,
    /// Fibroid (submucosal myoma).
    Fibroid,
    /// Intrauterine adhesions (Asherman syndrome).
    Adhesion,
    /// Uterine septum.
    Septum,
    /// Endometrial hyperplasia.
    Hyperplasia,
    /// Endometrial atrophy.
    Atrophy,
}

impl Finding {
    /// Every finding other than normal.
    pub fn is_abnormal(self) -> bool {
        self != Finding::Normal
    }

    /// The lowercase name, e.g. "polyp".
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::Normal => "normal",
            Finding::Polyp => "polyp",
            Finding::Fibroid => "fibroid",
            Finding::Adhesion => "adhesion",
            Finding::Septum => "septum",
            Finding::Hyperplasia => "hyperplasia",
            Finding::Atrophy => "atrophy",
        }
    }
}

/// Patency of the fallopian tubes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TubalPatency {
    /// Both tubes open.
    Patent,
    /// One tube blocked.
    UnilateralBlocked,
    /// Both tubes blocked.
    BilateralBlocked,
}

impl TubalPatency {
    /// One or both tubes blocked.
    pub fn is_blocked(self) -> bool {
        self != TubalPatency::Patent
    }
}

/// A hysteroscopy report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HysteroscopyInput {
    /// Findings, at least one, no duplicates; "normal" must be the only finding when given.
    #[schema(min_items = 1)]
    pub findings: Vec<Finding>,
    /// Endometrial thickness, mm, 0 to 30.
    #[schema(minimum = 0, maximum = 30, example = 8.5)]
    pub endometrial_thickness_mm: f64,
    /// Cavity description, at most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub cavity: Option<String>,
    /// Endometrial pattern, at most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub pattern: Option<String>,
    /// Whether a biopsy is indicated.
    #[serde(default)]
    pub biopsy_indicated: Option<bool>,
    /// Tubal patency: "patent", "unilateral_blocked" or "bilateral_blocked".
    #[serde(default)]
    pub tubal_patency: Option<TubalPatency>,
    /// Treatment recommendation, at most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub treatment_recommendation: Option<String>,
}

/// The flags raised by a hysteroscopy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HysteroscopyResult {
    /// True when any finding other than normal was recorded.
    pub flagged: bool,
    /// The abnormal findings, in recorded order; empty when normal.
    pub findings: Vec<Finding>,
    /// Tubal patency as recorded.
    pub tubal_patency: Option<TubalPatency>,
}

impl HysteroscopyInput {
    /// Checks the findings list, the thickness and the text lengths.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check_findings()?;
        check_range(
            "endometrial_thickness_mm",
            self.endometrial_thickness_mm,
            0.0,
            30.0,
            "mm",
        )?;
        check_text("cavity", self.cavity.as_deref(), MAX_SHORT_TEXT_CHARS)?;
        check_text("pattern", self.pattern.as_deref(), MAX_SHORT_TEXT_CHARS)?;
        check_text(
            "treatment_recommendation",
            self.treatment_recommendation.as_deref(),
            MAX_RECOMMENDATION_CHARS,
        )
    }

    fn check_findings(&self) -> Result<(), FieldError> {
        if self.findings.is_empty() {
            return Err(FieldError::new(
                "findings",
                "findings must list at least one finding (\"normal\" when nothing abnormal was seen)",
            ));
        }
        if self.findings.len() > 1 && self.findings.contains(&Finding::Normal) {
            return Err(FieldError::new(
                "findings",
                "findings cannot combine \"normal\" with another finding",
            ));
        }
        let duplicate = self
            .findings
            .iter()
            .enumerate()
            .find(|(i, finding)| self.findings[..*i].contains(finding));
        if let Some((_, finding)) = duplicate {
            return Err(FieldError::new(
                "findings",
                format!("findings lists \"{}\" more than once", finding.as_str()),
            ));
        }
        Ok(())
    }

    /// Flags the abnormal findings. Call only after [`validate`](Self::validate).
    pub fn classify(&self) -> HysteroscopyResult {
        debug_assert!(self.validate().is_ok(), "classify called on invalid input");
        let findings: Vec<Finding> = self
            .findings
            .iter()
            .copied()
            .filter(|finding| finding.is_abnormal())
            .collect();
        HysteroscopyResult {
            flagged: !findings.is_empty(),
            findings,
            tubal_patency: self.tubal_patency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Finding::*;

    fn input(findings: &[Finding]) -> HysteroscopyInput {
        HysteroscopyInput {
            findings: findings.to_vec(),
            endometrial_thickness_mm: 8.0,
            cavity: None,
            pattern: None,
            biopsy_indicated: None,
            tubal_patency: None,
            treatment_recommendation: None,
        }
    }

    #[test]
    fn any_finding_but_normal_is_flagged() {
        let cases: &[(&[Finding], bool, &[Finding])] = &[
            (&[Normal], false, &[]),
            (&[Polyp], true, &[Polyp]),
            (&[Fibroid], true, &[Fibroid]),
            (&[Adhesion], true, &[Adhesion]),
            (&[Septum], true, &[Septum]),
            (&[Hyperplasia], true, &[Hyperplasia]),
            (&[Atrophy], true, &[Atrophy]),
            (&[Polyp, Fibroid, Septum], true, &[Polyp, Fibroid, Septum]),
        ];
        for &(findings, flagged, abnormal) in cases {
            let report = input(findings);
            report.validate().unwrap();
            let result = report.classify();
            assert_eq!(result.flagged, flagged, "{findings:?}");
            assert_eq!(result.findings, abnormal, "{findings:?}");
        }
    }

    #[test]
    fn tubal_patency_is_carried_through() {
        let cases = [
            None,
            Some(TubalPatency::Patent),
            Some(TubalPatency::UnilateralBlocked),
            Some(TubalPatency::BilateralBlocked),
        ];
        for patency in cases {
            let report = HysteroscopyInput {
                tubal_patency: patency,
                ..input(&[Normal])
            };
            assert_eq!(report.classify().tubal_patency, patency);
        }
        assert!(!TubalPatency::Patent.is_blocked());
        assert!(TubalPatency::UnilateralBlocked.is_blocked());
        assert!(TubalPatency::BilateralBlocked.is_blocked());
    }

    #[test]
    fn validation_errors_name_the_field() {
        let cases: Vec<(HysteroscopyInput, &str, &str)> = vec![
            (
                input(&[]),
                "findings",
                "findings must list at least one finding (\"normal\" when nothing abnormal was seen)",
            ),
            (
                input(&[Normal, Polyp]),
                "findings",
                "findings cannot combine \"normal\" with another finding",
            ),
            (
                input(&[Polyp, Normal]),
                "findings",
                "findings cannot combine \"normal\" with another finding",
            ),
            (
                input(&[Polyp, Fibroid, Polyp]),
                "findings",
                "findings lists \"polyp\" more than once",
            ),
            (
                HysteroscopyInput {
                    endometrial_thickness_mm: 31.0,
                    ..input(&[Normal])
                },
                "endometrial_thickness_mm",
                "endometrial_thickness_mm must be between 0 and 30 mm, got 31",
            ),
            (
                HysteroscopyInput {
                    endometrial_thickness_mm: -0.5,
                    ..input(&[Normal])
                },
                "endometrial_thickness_mm",
                "endometrial_thickness_mm must be between 0 and 30 mm, got -0.5",
            ),
            (
                HysteroscopyInput {
                    cavity: Some("x".repeat(201)),
                    ..input(&[Normal])
                },
                "cavity",
                "cavity must be at most 200 characters, got 201",
            ),
            (
                HysteroscopyInput {
                    pattern: Some("x".repeat(201)),
                    ..input(&[Normal])
                },
                "pattern",
                "pattern must be at most 200 characters, got 201",
            ),
            (
                HysteroscopyInput {
                    treatment_recommendation: Some("x".repeat(1001)),
                    ..input(&[Normal])
                },
                "treatment_recommendation",
                "treatment_recommendation must be at most 1000 characters, got 1001",
            ),
        ];
        for (report, field, message) in cases {
            let err = report.validate().unwrap_err();
            assert_eq!((err.field.as_str(), err.message.as_str()), (field, message));
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let report = HysteroscopyInput {
            endometrial_thickness_mm: 30.0,
            cavity: Some("x".repeat(200)),
            pattern: Some("x".repeat(200)),
            treatment_recommendation: Some("x".repeat(1000)),
            ..input(&[Normal])
        };
        assert_eq!(report.validate(), Ok(()));
    }

    #[test]
    fn json_shapes() {
        let parsed: HysteroscopyInput = serde_json::from_str(
            r#"{"findings": ["polyp"], "endometrial_thickness_mm": 9, "tubal_patency": "unilateral_blocked"}"#,
        )
        .unwrap();
        assert_eq!(parsed.findings, vec![Polyp]);
        assert_eq!(parsed.tubal_patency, Some(TubalPatency::UnilateralBlocked));
        for finding in [
            Normal,
            Polyp,
            Fibroid,
            Adhesion,
            Septum,
            Hyperplasia,
            Atrophy,
        ] {
            let json = serde_json::to_string(&finding).unwrap();
            assert_eq!(json, format!("\"{}\"", finding.as_str()));
        }
        assert!(
            serde_json::from_str::<HysteroscopyInput>(
                r#"{"findings": ["cyst"], "endometrial_thickness_mm": 9}"#
            )
            .is_err()
        );
    }
}
