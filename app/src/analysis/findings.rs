//! Key findings: one plain clinical sentence per extracted value, using the thresholds of
//! `DOMAIN.md` and of the fertility score (see [`crate::domain::score`]).
//!
//! | value | thresholds named |
//! |-------|------------------|
//! | AMH (ng/mL) | < 0.5 critical; < 1 low reserve, expedite treatment; >= 4 high reserve (possible PCOS) |
//! | sperm concentration (million/mL) | WHO terms: 0 azoospermia, < 1 severe, < 5 moderate (both critical), < 15 mild oligozoospermia |
//! | progressive motility (%) | < 32 asthenozoospermia |
//! | normal morphology (%) | < 4 teratozoospermia |
//! | antral follicle count | < 6 low reserve, > 25 high reserve (possible PCOS) |
//! | endometrial thickness (mm) | < 7 thin, >= 15 thickened |
//! | FSH (IU/L) | < 1.5 low, >= 10 raised |
//! | LH (IU/L) | < 2 low, >= 12 raised |
//! | estradiol (pg/mL) | < 20 low, >= 80 raised for an early follicular sample |
//! | progesterone (ng/mL) | < 3 no sign of ovulation, < 10 low luteal level, >= 10 ovulatory (mid-luteal) |
//! | TSH (mIU/L) | outside 0.4 to < 2.5: check thyroid function |
//! | prolactin (ng/mL) | >= 25 raised |

use super::labvalues::{Analyte, Found, Rejected};
use crate::domain::semen::concentration_term;
use crate::domain::{Domain, Reserve};

/// The finding when a readable document states no recognised value.
pub const NO_VALUES: &str = "no recognised lab values";

/// The key findings of a document's values, in value order, then the rejected numbers.
pub fn key_findings(values: &[Found], rejected: &[Rejected]) -> Vec<String> {
    let mut findings: Vec<String> = values
        .iter()
        .map(|found| finding(found.analyte, found.value))
        .collect();
    findings.extend(rejected.iter().map(|rejected| {
        let (min, max) = rejected.analyte.plausible_range();
        format!(
            "{}: outside the plausible range {} to {}{}, not used",
            quantity(rejected.analyte, rejected.value),
            fmt_value(min),
            fmt_value(max),
            unit_suffix(rejected.analyte),
        )
    }));
    if values.is_empty() {
        findings.push(NO_VALUES.to_owned());
    }
    findings
}

/// The domains the values bear on, in report order, each once.
pub fn domains(values: &[Found]) -> Vec<Domain> {
    Domain::ALL
        .into_iter()
        .filter(|domain| values.iter().any(|found| found.analyte.domain() == *domain))
        .collect()
}

/// "AMH 0.4 ng/mL", "Antral follicle count 14".
fn quantity(analyte: Analyte, value: f64) -> String {
    format!(
        "{} {}{}",
        analyte.label(),
        fmt_value(value),
        unit_suffix(analyte)
    )
}

fn unit_suffix(analyte: Analyte) -> String {
    match analyte {
        Analyte::AntralFollicleCount => String::new(),
        other => format!(" {}", other.unit()),
    }
}

/// At most two decimals, no trailing zeros.
fn fmt_value(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    if rounded == 0.0 {
        return "0".to_owned();
    }
    format!("{rounded}")
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The assessment after the colon, e.g. "below 0.5, critical".
fn assessment(analyte: Analyte, v: f64) -> String {
    let text = match analyte {
        Analyte::Amh if v < 0.5 => "below 0.5, critical",
        Analyte::Amh if v < 1.0 => "below 1, low ovarian reserve; expedite treatment",
        Analyte::Amh if v < 4.0 => "normal ovarian reserve",
        Analyte::Amh => "4 or above, high ovarian reserve (possible PCOS); monitor for OHSS",
        Analyte::SpermConcentration => {
            return match concentration_term(v) {
                Some(term) if v < 5.0 => format!("{}, critical", lowercase_first(term)),
                Some(term) => lowercase_first(term),
                None => "normal (15 or above)".to_owned(),
            };
        }
        Analyte::ProgressiveMotility if v < 32.0 => "below 32, asthenozoospermia",
        Analyte::ProgressiveMotility => "normal (32 or above)",
        Analyte::NormalMorphology if v < 4.0 => "below 4, teratozoospermia",
        Analyte::NormalMorphology => "normal (4 or above)",
        Analyte::AntralFollicleCount => {
            let reserve = Reserve::from_afc(v.round().max(0.0) as u32);
            let classification = lowercase_first(reserve.classification());
            return match reserve.note() {
                Some(note) => format!("{classification}, {note}"),
                None => classification,
            };
        }
        Analyte::EndometrialThickness if v < 7.0 => "below 7, thin endometrium",
        Analyte::EndometrialThickness if v >= 15.0 => "15 or above, thickened endometrium",
        Analyte::EndometrialThickness => "normal (7 to 15)",
        Analyte::Fsh if v < 1.5 => "below 1.5, low",
        Analyte::Fsh if v >= 10.0 => "10 or above, raised; interpret with AMH and AFC",
        Analyte::Fsh => "normal (1.5 to 10)",
        Analyte::Lh if v < 2.0 => "below 2, low",
        Analyte::Lh if v >= 12.0 => "12 or above, raised",
        Analyte::Lh => "normal (2 to 12)",
        Analyte::Estradiol if v < 20.0 => "below 20, low",
        Analyte::Estradiol if v >= 80.0 => "80 or above, raised for an early follicular sample",
        Analyte::Estradiol => "normal (20 to 80)",
        Analyte::Progesterone if v < 3.0 => "below 3, no sign of ovulation if taken mid-luteal",
        Analyte::Progesterone if v < 10.0 => "3 to 10, low mid-luteal level",
        Analyte::Progesterone => "10 or above, consistent with ovulation if taken mid-luteal",
        Analyte::Tsh if v < 0.4 => "below 0.4, check thyroid function",
        Analyte::Tsh if v >= 2.5 => "2.5 or above, check thyroid function",
        Analyte::Tsh => "normal (0.4 to 2.5)",
        Analyte::Prolactin if v >= 25.0 => "25 or above, raised; repeat and investigate",
        Analyte::Prolactin => "normal (below 25)",
    };
    text.to_owned()
}

fn finding(analyte: Analyte, value: f64) -> String {
    format!(
        "{}: {}",
        quantity(analyte, value),
        assessment(analyte, value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        for (analyte, value, expected) in [
            (Analyte::Amh, 0.4, "AMH 0.4 ng/mL: below 0.5, critical"),
            (
                Analyte::Amh,
                0.8,
                "AMH 0.8 ng/mL: below 1, low ovarian reserve; expedite treatment",
            ),
            (Analyte::Amh, 2.199, "AMH 2.2 ng/mL: normal ovarian reserve"),
            (
                Analyte::SpermConcentration,
                12.0,
                "Sperm concentration 12 million/mL: mild oligozoospermia",
            ),
            (
                Analyte::SpermConcentration,
                4.2,
                "Sperm concentration 4.2 million/mL: moderate oligozoospermia, critical",
            ),
            (
                Analyte::SpermConcentration,
                0.0,
                "Sperm concentration 0 million/mL: azoospermia, critical",
            ),
            (
                Analyte::ProgressiveMotility,
                18.0,
                "Progressive motility 18 %: below 32, asthenozoospermia",
            ),
            (
                Analyte::NormalMorphology,
                2.0,
                "Normal morphology 2 %: below 4, teratozoospermia",
            ),
            (
                Analyte::AntralFollicleCount,
                5.0,
                "Antral follicle count 5: low ovarian reserve, poor response expected",
            ),
            (
                Analyte::AntralFollicleCount,
                14.0,
                "Antral follicle count 14: normal ovarian reserve",
            ),
            (
                Analyte::EndometrialThickness,
                6.2,
                "Endometrial thickness 6.2 mm: below 7, thin endometrium",
            ),
            (
                Analyte::Fsh,
                11.4,
                "FSH 11.4 IU/L: 10 or above, raised; interpret with AMH and AFC",
            ),
            (
                Analyte::Tsh,
                4.9,
                "TSH 4.9 mIU/L: 2.5 or above, check thyroid function",
            ),
            (
                Analyte::Prolactin,
                31.0,
                "Prolactin 31 ng/mL: 25 or above, raised; repeat and investigate",
            ),
        ] {
            assert_eq!(finding(analyte, value), expected);
        }
    }

    #[test]
    fn no_values_and_rejections() {
        assert_eq!(key_findings(&[], &[]), vec![NO_VALUES.to_owned()]);
        let rejected = [Rejected {
            analyte: Analyte::Amh,
            value: 500.0,
        }];
        assert_eq!(
            key_findings(&[], &rejected),
            vec![
                "AMH 500 ng/mL: outside the plausible range 0 to 30 ng/mL, not used".to_owned(),
                NO_VALUES.to_owned(),
            ]
        );
    }

    #[test]
    fn domains_in_report_order() {
        let found = |analyte| Found {
            analyte,
            value: 1.0,
            confidence: 0.95,
        };
        let values = [
            found(Analyte::Fsh),
            found(Analyte::SpermConcentration),
            found(Analyte::EndometrialThickness),
            found(Analyte::Amh),
            found(Analyte::Lh),
        ];
        assert_eq!(
            domains(&values),
            vec![
                Domain::Male,
                Domain::Ovarian,
                Domain::Uterine,
                Domain::Hormonal
            ]
        );
    }
}
