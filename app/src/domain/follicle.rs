//! Follicle ultrasound: ovarian reserve from the antral follicle count (AFC).
//!
//! | AFC | reserve | classification | note |
//! |-----|---------|----------------|------|
//! | < 6 | low | "Low ovarian reserve" | "poor response expected" |
//! | 6 to 25 | normal | "Normal ovarian reserve" | none |
//! | > 25 | high | "High ovarian reserve (possible PCOS)" | "monitor for OHSS" |
//!
//! Follicle sizes, the dominant follicle and the ovarian volume are validated and recorded
//! but do not change the classification.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, check_optional_range, check_range, fmt_value};

/// Below this AFC the reserve is low.
pub const LOW_RESERVE_BELOW: u32 = 6;
/// Above this AFC the reserve is high.
pub const HIGH_RESERVE_ABOVE: u32 = 25;
/// Most follicle sizes one scan may list.
const MAX_FOLLICLE_SIZES: usize = 100;

/// Which ovary was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ovary {
    /// The left ovary.
    Left,
    /// The right ovary.
    Right,
}

/// Ovarian reserve as judged from the AFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reserve {
    /// AFC below 6.
    Low,
    /// AFC 6 to 25.
    Normal,
    /// AFC above 25.
    High,
}

impl Reserve {
    /// The reserve for an antral follicle count; 6 and 25 are normal.
    pub fn from_afc(antral_follicle_count: u32) -> Reserve {
        if antral_follicle_count < LOW_RESERVE_BELOW {
            return Reserve::Low;
        }
        if antral_follicle_count > HIGH_RESERVE_ABOVE {
            return Reserve::High;
        }
        Reserve::Normal
    }

    /// The classification text, e.g. "Low ovarian reserve".
    pub fn classification(self) -> &'static str {
        match self {
            Reserve::Low => "Low ovarian reserve",
            Reserve::Normal => "Normal ovarian reserve",
            Reserve::High => "High ovarian reserve (possible PCOS)",
        }
    }

    /// The warning that goes with the reserve, if any.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Reserve::Low => Some("poor response expected"),
            Reserve::Normal => None,
            Reserve::High => Some("monitor for OHSS"),
        }
    }
}

/// A follicle ultrasound of one ovary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollicleInput {
    /// The ovary scanned: "left" or "right".
    pub ovary: Ovary,
    /// Antral follicle count, follicles, 0 to 100.
    #[schema(minimum = 0, maximum = 100, example = 12)]
    pub antral_follicle_count: u32,
    /// Diameter of each follicle measured, mm, each 0 to 60; at most 100 entries.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub follicle_sizes_mm: Option<Vec<f64>>,
    /// Diameter of the dominant follicle, mm, 0 to 60.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 60)]
    pub dominant_follicle_mm: Option<f64>,
    /// Ovarian volume, ml, 0 to 100.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub ovarian_volume_ml: Option<f64>,
}

/// The ovarian reserve of one scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FollicleResult {
    /// "low", "normal" or "high".
    pub reserve: Reserve,
    /// "Low ovarian reserve", "Normal ovarian reserve" or
    /// "High ovarian reserve (possible PCOS)".
    pub classification: String,
    /// "poor response expected" (low), "monitor for OHSS" (high), absent when normal.
    pub note: Option<String>,
}

impl FollicleInput {
    /// Checks every range; the error names the first offending field.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range(
            "antral_follicle_count",
            f64::from(self.antral_follicle_count),
            0.0,
            100.0,
            "follicles",
        )?;
        self.check_follicle_sizes()?;
        check_optional_range(
            "dominant_follicle_mm",
            self.dominant_follicle_mm,
            0.0,
            60.0,
            "mm",
        )?;
        check_optional_range(
            "ovarian_volume_ml",
            self.ovarian_volume_ml,
            0.0,
            100.0,
            "ml",
        )
    }

    fn check_follicle_sizes(&self) -> Result<(), FieldError> {
        let Some(sizes) = &self.follicle_sizes_mm else {
            return Ok(());
        };
        if sizes.len() > MAX_FOLLICLE_SIZES {
            return Err(FieldError::new(
                "follicle_sizes_mm",
                format!(
                    "follicle_sizes_mm must list at most {MAX_FOLLICLE_SIZES} follicles, got {}",
                    sizes.len()
                ),
            ));
        }
        let Some((index, size)) = sizes
            .iter()
            .enumerate()
            .find(|(_, size)| !(size.is_finite() && (0.0..=60.0).contains(*size)))
        else {
            return Ok(());
        };
        Err(FieldError::new(
            "follicle_sizes_mm",
            format!(
                "follicle_sizes_mm[{index}] must be between 0 and 60 mm, got {}",
                fmt_value(*size)
            ),
        ))
    }

    /// Classifies the reserve from the AFC. Call only after [`validate`](Self::validate).
    pub fn classify(&self) -> FollicleResult {
        debug_assert!(self.validate().is_ok(), "classify called on invalid input");
        let reserve = Reserve::from_afc(self.antral_follicle_count);
        FollicleResult {
            reserve,
            classification: reserve.classification().to_owned(),
            note: reserve.note().map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(afc: u32) -> FollicleInput {
        FollicleInput {
            ovary: Ovary::Left,
            antral_follicle_count: afc,
            follicle_sizes_mm: None,
            dominant_follicle_mm: None,
            ovarian_volume_ml: None,
        }
    }

    #[test]
    fn reserve_boundaries() {
        let cases: &[(u32, Reserve, &str, Option<&str>)] = &[
            (
                0,
                Reserve::Low,
                "Low ovarian reserve",
                Some("poor response expected"),
            ),
            (
                5,
                Reserve::Low,
                "Low ovarian reserve",
                Some("poor response expected"),
            ),
            (6, Reserve::Normal, "Normal ovarian reserve", None),
            (15, Reserve::Normal, "Normal ovarian reserve", None),
            (25, Reserve::Normal, "Normal ovarian reserve", None),
            (
                26,
                Reserve::High,
                "High ovarian reserve (possible PCOS)",
                Some("monitor for OHSS"),
            ),
            (
                100,
                Reserve::High,
                "High ovarian reserve (possible PCOS)",
                Some("monitor for OHSS"),
            ),
        ];
        for &(afc, reserve, classification, note) in cases {
            let scan = input(afc);
            scan.validate().unwrap();
            assert_eq!(
                scan.classify(),
                FollicleResult {
                    reserve,
                    classification: classification.to_owned(),
                    note: note.map(str::to_owned),
                },
                "AFC {afc}"
            );
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let cases: Vec<(FollicleInput, &str, &str)> = vec![
            (
                input(101),
                "antral_follicle_count",
                "antral_follicle_count must be between 0 and 100 follicles, got 101",
            ),
            (
                FollicleInput {
                    follicle_sizes_mm: Some(vec![10.0, 61.0]),
                    ..input(10)
                },
                "follicle_sizes_mm",
                "follicle_sizes_mm[1] must be between 0 and 60 mm, got 61",
            ),
            (
                FollicleInput {
                    follicle_sizes_mm: Some(vec![-2.0]),
                    ..input(10)
                },
                "follicle_sizes_mm",
                "follicle_sizes_mm[0] must be between 0 and 60 mm, got -2",
            ),
            (
                FollicleInput {
                    follicle_sizes_mm: Some(vec![8.0; 101]),
                    ..input(10)
                },
                "follicle_sizes_mm",
                "follicle_sizes_mm must list at most 100 follicles, got 101",
            ),
            (
                FollicleInput {
                    dominant_follicle_mm: Some(60.5),
                    ..input(10)
                },
                "dominant_follicle_mm",
                "dominant_follicle_mm must be between 0 and 60 mm, got 60.5",
            ),
            (
                FollicleInput {
                    ovarian_volume_ml: Some(-1.0),
                    ..input(10)
                },
                "ovarian_volume_ml",
                "ovarian_volume_ml must be between 0 and 100 ml, got -1",
            ),
        ];
        for (scan, field, message) in cases {
            let err = scan.validate().unwrap_err();
            assert_eq!((err.field.as_str(), err.message.as_str()), (field, message));
        }
    }

    #[test]
    fn valid_optional_fields_pass() {
        let scan = FollicleInput {
            follicle_sizes_mm: Some(vec![0.0; 100]),
            dominant_follicle_mm: Some(60.0),
            ovarian_volume_ml: Some(100.0),
            ..input(100)
        };
        assert_eq!(scan.validate(), Ok(()));
    }

    #[test]
    fn json_shapes() {
        let parsed: FollicleInput =
            serde_json::from_str(r#"{"ovary": "right", "antral_follicle_count": 5}"#).unwrap();
        assert_eq!(parsed.ovary, Ovary::Right);
        assert!(
            serde_json::from_str::<FollicleInput>(
                r#"{"ovary": "left", "antral_follicle_count": -1}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<FollicleInput>(
                r#"{"ovary": "Left", "antral_follicle_count": 1}"#
            )
            .is_err()
        );
        let result = serde_json::to_value(input(30).classify()).unwrap();
        assert_eq!(result["reserve"], "high");
        assert_eq!(result["note"], "monitor for OHSS");
    }
}
