//! Embryo grading: cleavage stage (day 1-3) and blastocyst (day 5-6).
//!
//! **Cleavage stage.** Expected cells: day 1 -> 2, day 2 -> 4, day 3 -> 8; `r = cells /
//! expected`. The first grade whose conditions all hold:
//!
//! | grade | r | fragmentation | symmetric | multinucleation | quality |
//! |-------|---|---------------|-----------|-----------------|---------|
//! | A | >= 0.8 | <= 10 % | yes | no | Excellent |
//! | B | >= 0.6 | <= 25 % | any | no | Good |
//! | C | >= 0.4 | <= 50 % | any | any | Fair |
//! | D | anything else | | | | Poor |
//!
//! **Blastocyst.** Gardner grade = expansion (1-6) + inner cell mass (A/B/C) +
//! trophectoderm (A/B/C), e.g. "4AA". Quality, first rule that matches:
//!
//! | quality | rule |
//! |---------|------|
//! | Poor | expansion 1, or inner cell mass and trophectoderm both C |
//! | Excellent | expansion >= 4, both A |
//! | Good | expansion >= 3, both A or B |
//! | Fair | everything else (expansion 2, or exactly one C) |
//!
//! Transfer candidates: Excellent and Good. Freezing candidates: Excellent, Good and Fair.
//! Viable: anything but Poor.
//!
//! Days 0, 4 and 7+ are rejected. Each stage requires its own fields and rejects the other
//! stage's fields, so a record never mixes the two grading systems.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, check_range, missing};

const CLEAVAGE_CONTEXT: &str = "for a cleavage-stage embryo (day 1-3)";
const BLASTOCYST_CONTEXT: &str = "for a blastocyst (day 5-6)";

/// A Gardner grade for the inner cell mass or the trophectoderm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Grade {
    /// Many tightly packed cells (ICM) / many cells forming a cohesive layer (TE).
    A,
    /// Several loosely grouped cells (ICM) / few cells forming a loose layer (TE).
    B,
    /// Very few cells.
    C,
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
        })
    }
}

/// The cleavage-stage grade, A (best) to D.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum CleavageGrade {
    /// r >= 0.8, fragmentation <= 10 %, symmetric, no multinucleation.
    A,
    /// r >= 0.6, fragmentation <= 25 %, no multinucleation.
    B,
    /// r >= 0.4, fragmentation <= 50 %.
    C,
    /// Anything else.
    D,
}

impl CleavageGrade {
    /// The letter, e.g. "A".
    pub fn as_str(self) -> &'static str {
        match self {
            CleavageGrade::A => "A",
            CleavageGrade::B => "B",
            CleavageGrade::C => "C",
            CleavageGrade::D => "D",
        }
    }

    /// A Excellent, B Good, C Fair, D Poor.
    pub fn quality(self) -> EmbryoQuality {
        match self {
            CleavageGrade::A => EmbryoQuality::Excellent,
            CleavageGrade::B => EmbryoQuality::Good,
            CleavageGrade::C => EmbryoQuality::Fair,
            CleavageGrade::D => EmbryoQuality::Poor,
        }
    }
}

/// The quality word shared by both grading systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EmbryoQuality {
    /// Grade A, or a blastocyst of expansion >= 4 with AA.
    Excellent,
    /// Grade B, or a blastocyst of expansion >= 3 without a C.
    Good,
    /// Grade C, or any other blastocyst that is not Poor.
    Fair,
    /// Grade D, or a blastocyst of expansion 1 or CC.
    Poor,
}

impl EmbryoQuality {
    /// Excellent and Good embryos are transfer candidates.
    pub fn is_transfer_candidate(self) -> bool {
        matches!(self, EmbryoQuality::Excellent | EmbryoQuality::Good)
    }

    /// Excellent, Good and Fair embryos are freezing candidates.
    pub fn is_freeze_candidate(self) -> bool {
        self != EmbryoQuality::Poor
    }

    /// Anything but Poor is viable.
    pub fn is_viable(self) -> bool {
        self != EmbryoQuality::Poor
    }
}

/// The developmental stage the grade refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Day 1-3.
    Cleavage,
    /// Day 5-6.
    Blastocyst,
}

impl Stage {
    /// The stage of an embryo on `day` after fertilisation; `None` for days 0, 4 and 7+.
    pub fn for_day(day: u8) -> Option<Stage> {
        match day {
            1..=3 => Some(Stage::Cleavage),
            5 | 6 => Some(Stage::Blastocyst),
            _ => None,
        }
    }
}

/// An embryo assessment. Days 1-3 fill the cleavage fields, days 5-6 the blastocyst fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbryoInput {
    /// Day after fertilisation: 1-3 (cleavage stage) or 5-6 (blastocyst).
    #[schema(minimum = 1, maximum = 6, example = 3)]
    pub day: u8,
    /// Number of blastomeres, 0 to 32. Required on days 1-3, absent on days 5-6.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 32)]
    pub cell_count: Option<u32>,
    /// Fragmentation, % of the embryo volume, 0 to 100. Required on days 1-3, absent on
    /// days 5-6.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub fragmentation: Option<f64>,
    /// Whether the blastomeres are even in size. Required on days 1-3, absent on days 5-6.
    #[serde(default)]
    pub symmetric: Option<bool>,
    /// Whether any blastomere is multinucleated. Required on days 1-3, absent on days 5-6.
    #[serde(default)]
    pub multinucleation: Option<bool>,
    /// Gardner expansion, 1 (early) to 6 (hatched). Required on days 5-6, absent on days 1-3.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 6)]
    pub expansion: Option<u8>,
    /// Inner cell mass grade, A, B or C. Required on days 5-6, absent on days 1-3.
    #[serde(default)]
    pub inner_cell_mass: Option<Grade>,
    /// Trophectoderm grade, A, B or C. Required on days 5-6, absent on days 1-3.
    #[serde(default)]
    pub trophectoderm: Option<Grade>,
}

/// The grade of one embryo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbryoResult {
    /// "cleavage" (day 1-3) or "blastocyst" (day 5-6).
    pub stage: Stage,
    /// "A" to "D" for a cleavage-stage embryo, the Gardner grade (e.g. "4AA") for a
    /// blastocyst.
    pub grade: String,
    /// Excellent, Good, Fair or Poor.
    pub quality: EmbryoQuality,
    /// Excellent or Good.
    pub transfer_candidate: bool,
    /// Excellent, Good or Fair.
    pub freeze_candidate: bool,
    /// Anything but Poor.
    pub viable: bool,
    /// Cells / expected cells for a cleavage-stage embryo; absent for a blastocyst.
    pub cell_ratio: Option<f64>,
}

/// The expected cell count on a cleavage day: 1 -> 2, 2 -> 4, 3 -> 8; `None` otherwise.
pub fn expected_cells(day: u8) -> Option<u32> {
    match day {
        1 => Some(2),
        2 => Some(4),
        3 => Some(8),
        _ => None,
    }
}

/// The cleavage grade for cell ratio `r`, fragmentation (%), symmetry and multinucleation.
pub fn cleavage_grade(
    r: f64,
    fragmentation: f64,
    symmetric: bool,
    multinucleation: bool,
) -> CleavageGrade {
    if r >= 0.8 && fragmentation <= 10.0 && symmetric && !multinucleation {
        return CleavageGrade::A;
    }
    if r >= 0.6 && fragmentation <= 25.0 && !multinucleation {
        return CleavageGrade::B;
    }
    if r >= 0.4 && fragmentation <= 50.0 {
        return CleavageGrade::C;
    }
    CleavageGrade::D
}

/// The quality of a blastocyst: the first matching rule of Poor, Excellent, Good, Fair.
pub fn blastocyst_quality(expansion: u8, icm: Grade, te: Grade) -> EmbryoQuality {
    if expansion <= 1 || (icm == Grade::C && te == Grade::C) {
        return EmbryoQuality::Poor;
    }
    if expansion >= 4 && icm == Grade::A && te == Grade::A {
        return EmbryoQuality::Excellent;
    }
    if expansion >= 3 && icm != Grade::C && te != Grade::C {
        return EmbryoQuality::Good;
    }
    EmbryoQuality::Fair
}

/// The Gardner grade string, e.g. "4AA".
pub fn gardner_grade(expansion: u8, icm: Grade, te: Grade) -> String {
    format!("{expansion}{icm}{te}")
}

impl EmbryoInput {
    /// Checks the day, the fields its stage requires and forbids, and their ranges.
    pub fn validate(&self) -> Result<(), FieldError> {
        match Stage::for_day(self.day) {
            Some(Stage::Cleavage) => self.validate_cleavage(),
            Some(Stage::Blastocyst) => self.validate_blastocyst(),
            None => Err(FieldError::new(
                "day",
                format!(
                    "day must be 1-3 (cleavage stage) or 5-6 (blastocyst), got {}",
                    self.day
                ),
            )),
        }
    }

    fn validate_cleavage(&self) -> Result<(), FieldError> {
        let Some(cell_count) = self.cell_count else {
            return Err(missing("cell_count", CLEAVAGE_CONTEXT));
        };
        let Some(fragmentation) = self.fragmentation else {
            return Err(missing("fragmentation", CLEAVAGE_CONTEXT));
        };
        if self.symmetric.is_none() {
            return Err(missing("symmetric", CLEAVAGE_CONTEXT));
        }
        if self.multinucleation.is_none() {
            return Err(missing("multinucleation", CLEAVAGE_CONTEXT));
        }
        check_range("cell_count", f64::from(cell_count), 0.0, 32.0, "cells")?;
        check_range("fragmentation", fragmentation, 0.0, 100.0, "%")?;
        forbid("expansion", self.expansion.is_some(), CLEAVAGE_CONTEXT)?;
        forbid(
            "inner_cell_mass",
            self.inner_cell_mass.is_some(),
            CLEAVAGE_CONTEXT,
        )?;
        forbid(
            "trophectoderm",
            self.trophectoderm.is_some(),
            CLEAVAGE_CONTEXT,
        )
    }

    fn validate_blastocyst(&self) -> Result<(), FieldError> {
        let Some(expansion) = self.expansion else {
            return Err(missing("expansion", BLASTOCYST_CONTEXT));
        };
        if self.inner_cell_mass.is_none() {
            return Err(missing("inner_cell_mass", BLASTOCYST_CONTEXT));
        }
        if self.trophectoderm.is_none() {
            return Err(missing("trophectoderm", BLASTOCYST_CONTEXT));
        }
        check_range("expansion", f64::from(expansion), 1.0, 6.0, "")?;
        forbid("cell_count", self.cell_count.is_some(), BLASTOCYST_CONTEXT)?;
        forbid(
            "fragmentation",
            self.fragmentation.is_some(),
            BLASTOCYST_CONTEXT,
        )?;
        forbid("symmetric", self.symmetric.is_some(), BLASTOCYST_CONTEXT)?;
        forbid(
            "multinucleation",
            self.multinucleation.is_some(),
            BLASTOCYST_CONTEXT,
        )
    }

    /// Grades the embryo. Call only after [`validate`](Self::validate).
    ///
    /// Days outside 1-3 are graded as blastocysts; missing fields (impossible after
    /// validation) grade as the worst value rather than a guessed better one.
    pub fn classify(&self) -> EmbryoResult {
        debug_assert!(self.validate().is_ok(), "classify called on invalid input");
        match Stage::for_day(self.day) {
            Some(Stage::Cleavage) => self.classify_cleavage(),
            _ => self.classify_blastocyst(),
        }
    }

    fn classify_cleavage(&self) -> EmbryoResult {
        let expected = expected_cells(self.day).unwrap_or(8);
        let r = f64::from(self.cell_count.unwrap_or(0)) / f64::from(expected);
        let grade = cleavage_grade(
            r,
            self.fragmentation.unwrap_or(100.0),
            self.symmetric.unwrap_or(false),
            self.multinucleation.unwrap_or(true),
        );
        result(
            Stage::Cleavage,
            grade.as_str().to_owned(),
            grade.quality(),
            Some(r),
        )
    }

    fn classify_blastocyst(&self) -> EmbryoResult {
        let expansion = self.expansion.unwrap_or(1);
        let icm = self.inner_cell_mass.unwrap_or(Grade::C);
        let te = self.trophectoderm.unwrap_or(Grade::C);
        let quality = blastocyst_quality(expansion, icm, te);
        result(
            Stage::Blastocyst,
            gardner_grade(expansion, icm, te),
            quality,
            None,
        )
    }
}

/// A field of the other stage was given.
fn forbid(field: &str, present: bool, context: &str) -> Result<(), FieldError> {
    if !present {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        format!("{field} must be absent {context}"),
    ))
}

fn result(
    stage: Stage,
    grade: String,
    quality: EmbryoQuality,
    cell_ratio: Option<f64>,
) -> EmbryoResult {
    EmbryoResult {
        stage,
        grade,
        quality,
        transfer_candidate: quality.is_transfer_candidate(),
        freeze_candidate: quality.is_freeze_candidate(),
        viable: quality.is_viable(),
        cell_ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EmbryoQuality::*;
    use Grade::{A, B, C};

    fn cleavage(
        day: u8,
        cells: u32,
        fragmentation: f64,
        symmetric: bool,
        multi: bool,
    ) -> EmbryoInput {
        EmbryoInput {
            day,
            cell_count: Some(cells),
            fragmentation: Some(fragmentation),
            symmetric: Some(symmetric),
            multinucleation: Some(multi),
            expansion: None,
            inner_cell_mass: None,
            trophectoderm: None,
        }
    }

    fn blastocyst(day: u8, expansion: u8, icm: Grade, te: Grade) -> EmbryoInput {
        EmbryoInput {
            day,
            cell_count: None,
            fragmentation: None,
            symmetric: None,
            multinucleation: None,
            expansion: Some(expansion),
            inner_cell_mass: Some(icm),
            trophectoderm: Some(te),
        }
    }

    #[test]
    fn expected_cells_per_day() {
        let cases = [
            (0, None),
            (1, Some(2)),
            (2, Some(4)),
            (3, Some(8)),
            (4, None),
            (5, None),
        ];
        for (day, expected) in cases {
            assert_eq!(expected_cells(day), expected, "day {day}");
        }
    }

    #[test]
    fn cleavage_grade_boundaries() {
        use CleavageGrade as G;
        // (r, fragmentation, symmetric, multinucleation, grade)
        let cases: &[(f64, f64, bool, bool, CleavageGrade)] = &[
            (1.0, 0.0, true, false, G::A),
            (0.8, 10.0, true, false, G::A),
            (0.79, 10.0, true, false, G::B),
            (0.8, 10.01, true, false, G::B),
            (0.8, 10.0, false, false, G::B),
            (0.8, 10.0, true, true, G::C),
            (0.6, 25.0, false, false, G::B),
            (0.59, 25.0, false, false, G::C),
            (0.6, 25.01, false, false, G::C),
            (0.6, 25.0, false, true, G::C),
            (0.4, 50.0, false, true, G::C),
            (0.39, 50.0, false, false, G::D),
            (0.4, 50.01, false, false, G::D),
            (1.0, 60.0, true, false, G::D),
            (0.0, 0.0, true, false, G::D),
        ];
        for &(r, fragmentation, symmetric, multi, grade) in cases {
            assert_eq!(
                cleavage_grade(r, fragmentation, symmetric, multi),
                grade,
                "r {r}, fragmentation {fragmentation}, symmetric {symmetric}, multinucleation {multi}"
            );
        }
    }

    #[test]
    fn blastocyst_quality_first_matching_rule() {
        let cases: &[(u8, Grade, Grade, EmbryoQuality)] = &[
            (1, A, A, Poor),
            (1, C, C, Poor),
            (4, C, C, Poor),
            (6, C, C, Poor),
            (4, A, A, Excellent),
            (6, A, A, Excellent),
            (3, A, A, Good),
            (4, A, B, Good),
            (4, B, A, Good),
            (3, B, B, Good),
            (6, B, B, Good),
            (2, A, A, Fair),
            (2, B, B, Fair),
            (4, A, C, Fair),
            (4, C, A, Fair),
            (3, B, C, Fair),
            (2, C, C, Poor),
        ];
        for &(expansion, icm, te, quality) in cases {
            assert_eq!(
                blastocyst_quality(expansion, icm, te),
                quality,
                "{}",
                gardner_grade(expansion, icm, te)
            );
        }
    }

    #[test]
    fn quality_decides_candidacy() {
        // (quality, transfer, freeze, viable)
        let cases = [
            (Excellent, true, true, true),
            (Good, true, true, true),
            (Fair, false, true, true),
            (Poor, false, false, false),
        ];
        for (quality, transfer, freeze, viable) in cases {
            assert_eq!(quality.is_transfer_candidate(), transfer, "{quality:?}");
            assert_eq!(quality.is_freeze_candidate(), freeze, "{quality:?}");
            assert_eq!(quality.is_viable(), viable, "{quality:?}");
        }
    }

    #[test]
    fn classify_cleavage_embryos() {
        // (input, grade, quality, ratio)
        let cases = [
            (cleavage(3, 8, 5.0, true, false), "A", Excellent, 1.0),
            (cleavage(3, 7, 10.0, true, false), "A", Excellent, 0.875),
            (cleavage(3, 6, 10.0, true, false), "B", Good, 0.75),
            (cleavage(3, 5, 20.0, false, false), "B", Good, 0.625),
            (cleavage(3, 4, 40.0, false, true), "C", Fair, 0.5),
            (cleavage(3, 3, 10.0, true, false), "D", Poor, 0.375),
            (cleavage(2, 4, 0.0, true, false), "A", Excellent, 1.0),
            (cleavage(2, 3, 15.0, true, false), "B", Good, 0.75),
            (cleavage(1, 2, 0.0, true, false), "A", Excellent, 1.0),
            (cleavage(1, 1, 0.0, true, false), "C", Fair, 0.5),
            (cleavage(3, 0, 0.0, true, false), "D", Poor, 0.0),
        ];
        for (input, grade, quality, ratio) in cases {
            input.validate().unwrap();
            let result = input.classify();
            assert_eq!(result.stage, Stage::Cleavage);
            assert_eq!(result.grade, grade, "{input:?}");
            assert_eq!(result.quality, quality, "{input:?}");
            assert_eq!(result.cell_ratio, Some(ratio), "{input:?}");
            assert_eq!(result.transfer_candidate, quality.is_transfer_candidate());
            assert_eq!(result.freeze_candidate, quality.is_freeze_candidate());
            assert_eq!(result.viable, quality.is_viable());
        }
    }

    #[test]
    fn classify_blastocysts() {
        let cases = [
            (blastocyst(5, 4, A, A), "4AA", Excellent, true, true),
            (blastocyst(6, 3, A, A), "3AA", Good, true, true),
            (blastocyst(5, 2, A, A), "2AA", Fair, false, true),
            (blastocyst(5, 4, A, C), "4AC", Fair, false, true),
            (blastocyst(5, 4, C, C), "4CC", Poor, false, false),
            (blastocyst(6, 1, A, B), "1AB", Poor, false, false),
        ];
        for (input, grade, quality, transfer, freeze) in cases {
            input.validate().unwrap();
            let result = input.classify();
            assert_eq!(
                result,
                EmbryoResult {
                    stage: Stage::Blastocyst,
                    grade: grade.to_owned(),
                    quality,
                    transfer_candidate: transfer,
                    freeze_candidate: freeze,
                    viable: quality != Poor,
                    cell_ratio: None,
                }
            );
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let good_cleavage = cleavage(3, 8, 5.0, true, false);
        let good_blastocyst = blastocyst(5, 4, A, A);
        let cases: Vec<(EmbryoInput, &str, &str)> = vec![
            (
                EmbryoInput {
                    day: 9,
                    ..good_cleavage.clone()
                },
                "day",
                "day must be 1-3 (cleavage stage) or 5-6 (blastocyst), got 9",
            ),
            (
                EmbryoInput {
                    day: 0,
                    ..good_cleavage.clone()
                },
                "day",
                "day must be 1-3 (cleavage stage) or 5-6 (blastocyst), got 0",
            ),
            (
                EmbryoInput {
                    day: 4,
                    ..good_blastocyst.clone()
                },
                "day",
                "day must be 1-3 (cleavage stage) or 5-6 (blastocyst), got 4",
            ),
            (
                EmbryoInput {
                    day: 7,
                    ..good_blastocyst.clone()
                },
                "day",
                "day must be 1-3 (cleavage stage) or 5-6 (blastocyst), got 7",
            ),
            (
                EmbryoInput {
                    cell_count: None,
                    ..good_cleavage.clone()
                },
                "cell_count",
                "cell_count is required for a cleavage-stage embryo (day 1-3)",
            ),
            (
                EmbryoInput {
                    fragmentation: None,
                    ..good_cleavage.clone()
                },
                "fragmentation",
                "fragmentation is required for a cleavage-stage embryo (day 1-3)",
            ),
            (
                EmbryoInput {
                    symmetric: None,
                    ..good_cleavage.clone()
                },
                "symmetric",
                "symmetric is required for a cleavage-stage embryo (day 1-3)",
            ),
            (
                EmbryoInput {
                    multinucleation: None,
                    ..good_cleavage.clone()
                },
                "multinucleation",
                "multinucleation is required for a cleavage-stage embryo (day 1-3)",
            ),
            (
                EmbryoInput {
                    cell_count: Some(33),
                    ..good_cleavage.clone()
                },
                "cell_count",
                "cell_count must be between 0 and 32 cells, got 33",
            ),
            (
                EmbryoInput {
                    fragmentation: Some(-1.0),
                    ..good_cleavage.clone()
                },
                "fragmentation",
                "fragmentation must be between 0 and 100 %, got -1",
            ),
            (
                EmbryoInput {
                    fragmentation: Some(100.5),
                    ..good_cleavage.clone()
                },
                "fragmentation",
                "fragmentation must be between 0 and 100 %, got 100.5",
            ),
            (
                EmbryoInput {
                    expansion: Some(4),
                    ..good_cleavage.clone()
                },
                "expansion",
                "expansion must be absent for a cleavage-stage embryo (day 1-3)",
            ),
            (
                EmbryoInput {
                    trophectoderm: Some(A),
                    ..good_cleavage.clone()
                },
                "trophectoderm",
                "trophectoderm must be absent for a cleavage-stage embryo (day 1-3)",
            ),
            (
                EmbryoInput {
                    expansion: None,
                    ..good_blastocyst.clone()
                },
                "expansion",
                "expansion is required for a blastocyst (day 5-6)",
            ),
            (
                EmbryoInput {
                    inner_cell_mass: None,
                    ..good_blastocyst.clone()
                },
                "inner_cell_mass",
                "inner_cell_mass is required for a blastocyst (day 5-6)",
            ),
            (
                EmbryoInput {
                    trophectoderm: None,
                    ..good_blastocyst.clone()
                },
                "trophectoderm",
                "trophectoderm is required for a blastocyst (day 5-6)",
            ),
            (
                EmbryoInput {
                    expansion: Some(0),
                    ..good_blastocyst.clone()
                },
                "expansion",
                "expansion must be between 1 and 6, got 0",
            ),
            (
                EmbryoInput {
                    expansion: Some(7),
                    ..good_blastocyst.clone()
                },
                "expansion",
                "expansion must be between 1 and 6, got 7",
            ),
            (
                EmbryoInput {
                    cell_count: Some(100),
                    ..good_blastocyst.clone()
                },
                "cell_count",
                "cell_count must be absent for a blastocyst (day 5-6)",
            ),
            (
                EmbryoInput {
                    multinucleation: Some(false),
                    ..good_blastocyst.clone()
                },
                "multinucleation",
                "multinucleation must be absent for a blastocyst (day 5-6)",
            ),
        ];
        for (input, field, message) in cases {
            let err = input.validate().unwrap_err();
            assert_eq!((err.field.as_str(), err.message.as_str()), (field, message));
        }
    }

    #[test]
    fn json_shapes() {
        let parsed: EmbryoInput = serde_json::from_str(
            r#"{"day": 5, "expansion": 4, "inner_cell_mass": "A", "trophectoderm": "B"}"#,
        )
        .unwrap();
        assert_eq!(parsed, blastocyst(5, 4, A, B));
        // Negative counts never reach validation: they are not a u32.
        let negative = serde_json::from_str::<EmbryoInput>(
            r#"{"day": 3, "cell_count": -1, "fragmentation": 0, "symmetric": true, "multinucleation": false}"#,
        );
        assert!(negative.is_err());
        assert!(serde_json::from_str::<EmbryoInput>(r#"{"day": 5, "icm": "A"}"#).is_err());
        let result = serde_json::to_value(blastocyst(5, 4, A, A).classify()).unwrap();
        assert_eq!(result["stage"], "blastocyst");
        assert_eq!(result["grade"], "4AA");
        assert_eq!(result["quality"], "Excellent");
    }
}
