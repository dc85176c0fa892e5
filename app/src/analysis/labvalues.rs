//! Finding lab values in report text: analyte names, numbers and units, line by line.
//!
//! The parser reads one line at a time (lowercased, with `µ`/`μ` read as `u`, `×` as `x`,
//! umlauts folded, dashes and odd spaces normalised) and looks for an analyte name followed
//! by its value:
//!
//! 1. **Name**: any synonym of an [`Analyte`] at a word start, longest first
//!    ("Anti-Müllerian hormone", "AMH"; "Follicle stimulating hormone", "FSH"; "E2", "P4",
//!    "PRL"...). "non-progressive motility" and "total sperm count" are not matched.
//! 2. **Value**: the first number after the name, skipping only separators (`:`, `=`, `|`,
//!    dots, dashes), parentheses (`(E2)`, `(10^6/mL)`: a unit inside one is remembered), and
//!    a few filler words ("level", "serum", "was"...). Any other word in between means the
//!    line does not state this value. A range in that place ("3.5-12.5", a "Reference |
//!    Result" column order) is skipped and the number after it taken; a date is skipped. A
//!    value with a comparator ("< 0.01", ">= 4") is censored or a limit: not extracted.
//!    Decimal commas are read ("0,8"); a comma followed by exactly three digits after a
//!    non-zero integer part is a thousands separator ("1,450").
//! 3. **Unit**, first found of: right after the value; inside a parenthesis between name and
//!    value; later on the line before the next analyte name (a "Result | Reference | Unit"
//!    column order); the unit of the table header above (`Result (IU/L)`, `Hormone
//!    (ng/mL)`, a header line with a unit in brackets and no other number); and, for the
//!    percentages only, the canonical unit assumed. A hormone, a concentration or a
//!    thickness without any unit is not extracted: the scale is unknowable.
//! 4. **Conversion and plausibility**: the value is converted to the canonical unit (see
//!    [`Analyte::unit`]) and checked against a plausible range; a value outside it (a unit
//!    or typing error, e.g. AMH 500 ng/mL) is reported as rejected, never stored.
//!
//! Antral follicle count takes the total: "AFC 14 (R 7, L 7)" is 14, "AFC: right 3,
//! left 2 (total 5)" is 5, and "AFC: right 4, left 3" sums to 7.
//!
//! | confidence | when |
//! |------------|------|
//! | 0.95 | name, value and unit on one line, unit canonical or an equal synonym (mIU/mL for FSH) |
//! | 0.8 | unit converted (pmol/L, nmol/L, mIU/L, cm), taken from a table header, value after a reference range, or AFC summed from both ovaries |
//! | 0.6 | a percentage without a unit (progressive motility, normal morphology) |
//!
//! When an analyte appears more than once in a document, the value with the highest
//! confidence is kept, the first one on a tie.

use crate::domain::Domain;

/// The lab values the analysis recognises, with their canonical names and units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Analyte {
    /// Follicle-stimulating hormone, IU/L.
    Fsh,
    /// Luteinising hormone, IU/L.
    Lh,
    /// Anti-Müllerian hormone, ng/mL.
    Amh,
    /// Estradiol (E2), pg/mL.
    Estradiol,
    /// Progesterone (P4), ng/mL.
    Progesterone,
    /// Thyroid-stimulating hormone, mIU/L.
    Tsh,
    /// Prolactin, ng/mL.
    Prolactin,
    /// Sperm concentration, million/mL.
    SpermConcentration,
    /// Progressive motility, %.
    ProgressiveMotility,
    /// Normal morphology (normal forms), %.
    NormalMorphology,
    /// Antral follicle count, both ovaries.
    AntralFollicleCount,
    /// Endometrial thickness, mm.
    EndometrialThickness,
}

/// What to do when a value comes without any unit.
enum WithoutUnit {
    /// Not extracted: the scale is unknown.
    Reject,
    /// The canonical unit is assumed, with this confidence.
    Assume(f64),
    /// The value is a plain count: nothing is missing.
    Count,
}

impl Analyte {
    /// All analytes, in the order values are listed.
    pub const ALL: [Analyte; 12] = [
        Analyte::Fsh,
        Analyte::Lh,
        Analyte::Amh,
        Analyte::Estradiol,
        Analyte::Progesterone,
        Analyte::Tsh,
        Analyte::Prolactin,
        Analyte::SpermConcentration,
        Analyte::ProgressiveMotility,
        Analyte::NormalMorphology,
        Analyte::AntralFollicleCount,
        Analyte::EndometrialThickness,
    ];

    /// The canonical name, as stored in [`LabValue::name`](super::LabValue::name).
    pub fn name(self) -> &'static str {
        match self {
            Analyte::Fsh => "FSH",
            Analyte::Lh => "LH",
            Analyte::Amh => "AMH",
            Analyte::Estradiol => "estradiol",
            Analyte::Progesterone => "progesterone",
            Analyte::Tsh => "TSH",
            Analyte::Prolactin => "prolactin",
            Analyte::SpermConcentration => "sperm_concentration",
            Analyte::ProgressiveMotility => "progressive_motility",
            Analyte::NormalMorphology => "normal_morphology",
            Analyte::AntralFollicleCount => "antral_follicle_count",
            Analyte::EndometrialThickness => "endometrial_thickness",
        }
    }

    /// The canonical unit every value is converted to.
    pub fn unit(self) -> &'static str {
        match self {
            Analyte::Fsh | Analyte::Lh => "IU/L",
            Analyte::Amh | Analyte::Progesterone | Analyte::Prolactin => "ng/mL",
            Analyte::Estradiol => "pg/mL",
            Analyte::Tsh => "mIU/L",
            Analyte::SpermConcentration => "million/mL",
            Analyte::ProgressiveMotility | Analyte::NormalMorphology => "%",
            Analyte::AntralFollicleCount => "count",
            Analyte::EndometrialThickness => "mm",
        }
    }

    /// The words used for it in messages, e.g. "Sperm concentration".
    pub fn label(self) -> &'static str {
        match self {
            Analyte::Fsh => "FSH",
            Analyte::Lh => "LH",
            Analyte::Amh => "AMH",
            Analyte::Estradiol => "Estradiol",
            Analyte::Progesterone => "Progesterone",
            Analyte::Tsh => "TSH",
            Analyte::Prolactin => "Prolactin",
            Analyte::SpermConcentration => "Sperm concentration",
            Analyte::ProgressiveMotility => "Progressive motility",
            Analyte::NormalMorphology => "Normal morphology",
            Analyte::AntralFollicleCount => "Antral follicle count",
            Analyte::EndometrialThickness => "Endometrial thickness",
        }
    }

    /// The fertility domain the value bears on.
    pub fn domain(self) -> Domain {
        match self {
            Analyte::SpermConcentration
            | Analyte::ProgressiveMotility
            | Analyte::NormalMorphology => Domain::Male,
            Analyte::Amh | Analyte::AntralFollicleCount => Domain::Ovarian,
            Analyte::EndometrialThickness => Domain::Uterine,
            Analyte::Fsh
            | Analyte::Lh
            | Analyte::Estradiol
            | Analyte::Progesterone
            | Analyte::Tsh
            | Analyte::Prolactin => Domain::Hormonal,
        }
    }

    /// The analyte with this canonical name.
    pub fn from_name(name: &str) -> Option<Analyte> {
        Analyte::ALL
            .into_iter()
            .find(|analyte| analyte.name() == name)
    }

    /// The plausible range of a value in the canonical unit, inclusive. Outside it the
    /// number is a unit or typing error rather than a measurement.
    pub fn plausible_range(self) -> (f64, f64) {
        match self {
            Analyte::Fsh | Analyte::Lh => (0.0, 200.0),
            Analyte::Amh => (0.0, 30.0),
            Analyte::Estradiol => (0.0, 10_000.0),
            Analyte::Progesterone => (0.0, 500.0),
            Analyte::Tsh => (0.0, 150.0),
            Analyte::Prolactin => (0.0, 2_000.0),
            Analyte::SpermConcentration => (0.0, 500.0),
            Analyte::ProgressiveMotility | Analyte::NormalMorphology => (0.0, 100.0),
            Analyte::AntralFollicleCount => (0.0, 100.0),
            Analyte::EndometrialThickness => (0.5, 30.0),
        }
    }

    /// Whether `value` (canonical unit) is plausible; AFC must also be a whole number.
    pub fn is_plausible(self, value: f64) -> bool {
        let (min, max) = self.plausible_range();
        let whole = self != Analyte::AntralFollicleCount || value.fract() == 0.0;
        value.is_finite() && (min..=max).contains(&value) && whole
    }

    /// Lowercase, normalised spellings of the name (see [`normalise_line`]).
    fn synonyms(self) -> &'static [&'static str] {
        match self {
            Analyte::Fsh => &[
                "fsh",
                "follicle stimulating hormone",
                "follicle-stimulating hormone",
            ],
            Analyte::Lh => &["lh", "luteinizing hormone", "luteinising hormone"],
            Analyte::Amh => &[
                "amh",
                "anti-mullerian hormone",
                "anti mullerian hormone",
                "antimullerian hormone",
                "anti-muellerian hormone",
                "mullerian inhibiting substance",
            ],
            Analyte::Estradiol => &["estradiol", "oestradiol", "17-beta estradiol", "e2"],
            Analyte::Progesterone => &["progesterone", "p4"],
            Analyte::Tsh => &[
                "tsh",
                "thyroid stimulating hormone",
                "thyroid-stimulating hormone",
                "thyrotropin",
            ],
            Analyte::Prolactin => &["prolactin", "prl"],
            Analyte::SpermConcentration => &[
                "sperm concentration",
                "sperm density",
                "sperm count",
                "concentration of spermatozoa",
            ],
            Analyte::ProgressiveMotility => &[
                "progressive motility",
                "progressively motile",
                "progressively motile sperm",
                "pr motility",
                "motility, progressive",
            ],
            Analyte::NormalMorphology => &[
                "normal morphology",
                "normal forms",
                "normal sperm morphology",
                "morphologically normal forms",
                "morphologically normal",
            ],
            Analyte::AntralFollicleCount => {
                &["afc", "antral follicle count", "antral follicles count"]
            }
            Analyte::EndometrialThickness => &[
                "endometrial thickness",
                "endometrium",
                "endometrial lining",
                "endometrial stripe",
            ],
        }
    }

    /// The factor from `unit` to the canonical unit, `None` when the unit does not measure
    /// this analyte.
    fn factor(self, unit: Unit) -> Option<f64> {
        use Unit::*;
        match (self, unit) {
            (Analyte::Fsh | Analyte::Lh, IuPerL | MiuPerMl) => Some(1.0),
            (Analyte::Amh, NgPerMl | UgPerL) => Some(1.0),
            (Analyte::Amh, PmolPerL) => Some(1.0 / 7.14),
            (Analyte::Estradiol, PgPerMl | NgPerL) => Some(1.0),
            (Analyte::Estradiol, PmolPerL) => Some(1.0 / 3.671),
            (Analyte::Progesterone, NgPerMl | UgPerL) => Some(1.0),
            (Analyte::Progesterone, NmolPerL) => Some(1.0 / 3.18),
            (Analyte::Tsh, MiuPerL | UiuPerMl) => Some(1.0),
            (Analyte::Prolactin, NgPerMl | UgPerL) => Some(1.0),
            (Analyte::Prolactin, MiuPerL | UiuPerMl) => Some(1.0 / 21.2),
            (Analyte::SpermConcentration, MillionPerMl) => Some(1.0),
            (Analyte::ProgressiveMotility | Analyte::NormalMorphology, Percent) => Some(1.0),
            (Analyte::AntralFollicleCount, Follicles) => Some(1.0),
            (Analyte::EndometrialThickness, Mm) => Some(1.0),
            (Analyte::EndometrialThickness, Cm) => Some(10.0),
            _ => None,
        }
    }

    fn without_unit(self) -> WithoutUnit {
        match self {
            Analyte::ProgressiveMotility | Analyte::NormalMorphology => {
                WithoutUnit::Assume(CONFIDENCE_ASSUMED)
            }
            Analyte::AntralFollicleCount => WithoutUnit::Count,
            _ => WithoutUnit::Reject,
        }
    }

    /// Matches that must not count: "non-progressive motility", "total sperm count",
    /// "17-OH progesterone" (another steroid).
    fn excluded_after(self, before: &str) -> bool {
        let before = before.trim_end_matches([' ', '-']);
        match self {
            Analyte::ProgressiveMotility => before.ends_with("non"),
            Analyte::SpermConcentration => before.ends_with("total"),
            Analyte::Progesterone => before.ends_with("oh") || before.ends_with("hydroxy"),
            _ => false,
        }
    }
}

/// Name, value and unit stated together.
pub const CONFIDENCE_STATED: f64 = 0.95;
/// Unit converted, taken from a table header, or value read past a range.
pub const CONFIDENCE_INFERRED: f64 = 0.8;
/// Canonical unit assumed for a percentage stated without one.
pub const CONFIDENCE_ASSUMED: f64 = 0.6;

/// A unit as written in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    IuPerL,
    MiuPerMl,
    MiuPerL,
    UiuPerMl,
    NgPerMl,
    UgPerL,
    PgPerMl,
    NgPerL,
    PmolPerL,
    NmolPerL,
    MillionPerMl,
    Percent,
    Follicles,
    Mm,
    Cm,
}

/// Normalised spellings (no spaces: spaces in the text between their characters are
/// ignored, so "x 10^6 / mL" matches "x10^6/ml"). French and Italian reports write "UI"
/// for "IU" ("mUI/ml").
const UNIT_SPELLINGS: &[(&str, Unit)] = &[
    ("iu/l", Unit::IuPerL),
    ("ui/l", Unit::IuPerL),
    ("u/l", Unit::IuPerL),
    ("miu/ml", Unit::MiuPerMl),
    ("mui/ml", Unit::MiuPerMl),
    ("mu/ml", Unit::MiuPerMl),
    ("miu/l", Unit::MiuPerL),
    ("mui/l", Unit::MiuPerL),
    ("mu/l", Unit::MiuPerL),
    ("uiu/ml", Unit::UiuPerMl),
    ("uui/ml", Unit::UiuPerMl),
    ("uu/ml", Unit::UiuPerMl),
    ("ng/ml", Unit::NgPerMl),
    ("ug/l", Unit::UgPerL),
    ("pg/ml", Unit::PgPerMl),
    ("ng/l", Unit::NgPerL),
    ("pmol/l", Unit::PmolPerL),
    ("nmol/l", Unit::NmolPerL),
    ("million/ml", Unit::MillionPerMl),
    ("millions/ml", Unit::MillionPerMl),
    ("millionperml", Unit::MillionPerMl),
    ("mill/ml", Unit::MillionPerMl),
    ("mio/ml", Unit::MillionPerMl),
    ("mln/ml", Unit::MillionPerMl),
    ("m/ml", Unit::MillionPerMl),
    ("x10^6/ml", Unit::MillionPerMl),
    ("x10*6/ml", Unit::MillionPerMl),
    ("x10e6/ml", Unit::MillionPerMl),
    ("x10^6perml", Unit::MillionPerMl),
    ("10^6/ml", Unit::MillionPerMl),
    ("10*6/ml", Unit::MillionPerMl),
    ("%", Unit::Percent),
    ("percent", Unit::Percent),
    ("follicles", Unit::Follicles),
    ("mm", Unit::Mm),
    ("cm", Unit::Cm),
];

/// Words that may stand between a name and its value.
const FILLERS: &[&str] = &[
    "level",
    "levels",
    "value",
    "result",
    "serum",
    "plasma",
    "basal",
    "baseline",
    "total",
    "measured",
    "was",
    "is",
    "of",
    "at",
    "thickness",
];

/// A value found in the text, in the canonical unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// What was measured.
    pub analyte: Analyte,
    /// The value in the canonical unit.
    pub value: f64,
    /// 0..=1, see the module docs.
    pub confidence: f64,
}

/// A value that was read but not kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// What it claimed to measure.
    pub analyte: Analyte,
    /// The value in the canonical unit.
    pub value: f64,
}

/// Everything found in a text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extraction {
    /// One value per analyte, in [`Analyte::ALL`] order.
    pub values: Vec<Found>,
    /// Values outside the plausible range, in text order.
    pub rejected: Vec<Rejected>,
}

/// Finds the lab values stated in `text`.
pub fn extract_values(text: &str) -> Extraction {
    let mut all: Vec<Found> = Vec::new();
    let mut rejected = Vec::new();
    let mut header_unit: Option<Unit> = None;
    for raw_line in text.lines() {
        let line = normalise_line(raw_line);
        let outcome = parse_line(&line, header_unit);
        let found_any = !outcome.found.is_empty() || !outcome.rejected.is_empty();
        all.extend(outcome.found);
        rejected.extend(outcome.rejected);
        if !found_any {
            header_unit = next_header_unit(&line, header_unit);
        }
    }
    let mut values: Vec<Found> = Vec::new();
    for found in all {
        match values.iter_mut().find(|kept| kept.analyte == found.analyte) {
            Some(kept) if found.confidence > kept.confidence => *kept = found,
            Some(_) => {}
            None => values.push(found),
        }
    }
    values.sort_by_key(|found| found.analyte);
    Extraction { values, rejected }
}

/// The header unit in force after a line that stated no value: a line with a unit in
/// parentheses or brackets and no other number starts one; any other line with words but
/// without digits (a heading, a header without unit) ends it; blank lines, rules
/// ("|---|---|") and lines with numbers leave it unchanged.
fn next_header_unit(line: &str, current: Option<Unit>) -> Option<Unit> {
    if !line.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return current;
    }
    let mut header = None;
    let mut outside = String::new();
    let mut rest = line;
    while let Some(open) = rest.find(['(', '[']) {
        outside.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find([')', ']']).unwrap_or(after.len());
        let content = after[..close].trim();
        if header.is_none()
            && let Some((unit, used)) = match_unit(content)
            && content[used..].trim().is_empty()
        {
            header = Some(unit);
        } else {
            outside.push_str(content);
        }
        rest = after.get(close + 1..).unwrap_or("");
    }
    outside.push_str(rest);
    let has_digits = outside.bytes().any(|b| b.is_ascii_digit());
    match (header, has_digits) {
        (Some(unit), false) => Some(unit),
        (None, false) => None,
        (_, true) => current,
    }
}

/// Lowercases a line and folds the characters reports vary in.
pub fn normalise_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            'µ' | 'μ' => out.push('u'),
            '×' => out.push('x'),
            '⁶' => out.push_str("^6"),
            '–' | '—' | '−' | '‐' => out.push('-'),
            'ä' | 'Ä' => out.push('a'),
            'ö' | 'Ö' => out.push('o'),
            'ü' | 'Ü' => out.push('u'),
            'é' | 'è' | 'É' => out.push('e'),
            c if c.is_whitespace() => out.push(' '),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// A name found on a line.
#[derive(Debug, Clone, Copy)]
struct NameMatch {
    analyte: Analyte,
    start: usize,
    end: usize,
}

#[derive(Default)]
struct LineOutcome {
    found: Vec<Found>,
    rejected: Vec<Rejected>,
}

/// Bytes that continue a word: ASCII letters and digits, and any non-ASCII byte (letters
/// like ß; the characters that matter were folded by [`normalise_line`]).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

fn find_names(line: &str) -> Vec<NameMatch> {
    let bytes = line.as_bytes();
    let mut matches = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = is_word_byte(bytes[i]) && (i == 0 || !is_word_byte(bytes[i - 1]));
        if !at_word_start || !line.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &line[i..];
        let mut best: Option<(Analyte, usize)> = None;
        for analyte in Analyte::ALL {
            for synonym in analyte.synonyms() {
                let ends_word = rest
                    .as_bytes()
                    .get(synonym.len())
                    .is_none_or(|&b| !is_word_byte(b));
                if rest.starts_with(synonym)
                    && ends_word
                    && best.is_none_or(|(_, len)| synonym.len() > len)
                {
                    best = Some((analyte, synonym.len()));
                }
            }
        }
        match best {
            Some((analyte, len)) if !analyte.excluded_after(&line[..i]) => {
                matches.push(NameMatch {
                    analyte,
                    start: i,
                    end: i + len,
                });
                i += len;
            }
            _ => i += 1,
        }
    }
    matches
}

fn parse_line(line: &str, header_unit: Option<Unit>) -> LineOutcome {
    let names = find_names(line);
    let mut outcome = LineOutcome::default();
    let mut consumed = 0;
    for (index, name) in names.iter().enumerate() {
        if name.start < consumed {
            continue;
        }
        let Some(value) = read_value(line, name.analyte, name.end) else {
            continue;
        };
        // The unit may be anywhere before the next name that is not part of this statement.
        let window_end = names[index + 1..]
            .iter()
            .find(|next| next.start >= value.end)
            .map_or(line.len(), |next| next.start);
        consumed = value.end;
        let Some((canonical, confidence)) =
            resolve_unit(line, name.analyte, &value, window_end, header_unit)
        else {
            continue;
        };
        if name.analyte.is_plausible(canonical) {
            outcome.found.push(Found {
                analyte: name.analyte,
                value: canonical,
                confidence,
            });
        } else {
            outcome.rejected.push(Rejected {
                analyte: name.analyte,
                value: canonical,
            });
        }
    }
    outcome
}

/// A number read after a name.
#[derive(Debug)]
struct ValueRead {
    number: f64,
    /// Byte offset just after the number.
    end: usize,
    /// A unit in a parenthesis between the name and the number ("(10^6/mL)").
    paren_unit: Option<Unit>,
    /// The number came after a range or was summed: less certain.
    inferred: bool,
    /// The number needs no unit (a summed or stated AFC total).
    count: bool,
}

fn skip_spaces(line: &str, mut i: usize) -> usize {
    let bytes = line.as_bytes();
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    i
}

/// Skips separators, parentheses and filler words; returns the new position and the first
/// unit seen inside a parenthesis.
fn skip_to_value(line: &str, mut i: usize, paren_unit: &mut Option<Unit>) -> usize {
    let bytes = line.as_bytes();
    loop {
        while i < bytes.len() && b" :=|-.,;)]*#".contains(&bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            return i;
        }
        if bytes[i] == b'(' || bytes[i] == b'[' {
            let after = &line[i + 1..];
            let close = after.find([')', ']']).unwrap_or(after.len());
            if paren_unit.is_none() {
                *paren_unit = find_unit_in(&after[..close]);
            }
            i += 1 + close;
            continue;
        }
        let word_len = line[i..]
            .bytes()
            .take_while(|&b| b.is_ascii_alphabetic())
            .count();
        if word_len > 0 && FILLERS.contains(&&line[i..i + word_len]) {
            i += word_len;
            continue;
        }
        return i;
    }
}

/// The first unit at a token start inside `text` (a parenthesis' content).
fn find_unit_in(text: &str) -> Option<Unit> {
    let bytes = text.as_bytes();
    (0..bytes.len())
        .filter(|&i| i == 0 || b" ,;/".contains(&bytes[i - 1]))
        .find_map(|i| match_unit(&text[i..]).map(|(unit, _)| unit))
}

fn read_value(line: &str, analyte: Analyte, name_end: usize) -> Option<ValueRead> {
    if analyte == Analyte::AntralFollicleCount
        && let Some(total) = read_afc_total(line, name_end)
    {
        return Some(total);
    }
    let bytes = line.as_bytes();
    let mut paren_unit = None;
    let mut inferred = false;
    let mut i = name_end;
    // At most: a date, a range, then the value.
    for _ in 0..3 {
        i = skip_to_value(line, i, &mut paren_unit);
        let rest = &line[i..];
        if rest.starts_with(['<', '>', '≤', '≥']) {
            return None;
        }
        let Some((number, len)) = parse_number(rest) else {
            if analyte == Analyte::AntralFollicleCount {
                return read_afc_sides(line, i);
            }
            return None;
        };
        let after = i + len;
        // A date: 12/03/2024 or 12.03.2024.
        if bytes.get(after).is_some_and(|&b| b == b'/' || b == b'.')
            && bytes.get(after + 1).is_some_and(u8::is_ascii_digit)
        {
            i = after
                + line[after..]
                    .bytes()
                    .take_while(|&b| b.is_ascii_digit() || b == b'/' || b == b'.')
                    .count();
            continue;
        }
        if let Some(range_end) = range_end(line, after) {
            inferred = true;
            i = range_end;
            continue;
        }
        return Some(ValueRead {
            number,
            end: after,
            paren_unit,
            inferred,
            count: false,
        });
    }
    None
}

/// If a range continues at `i` ("-12.5", " - 12.5", " to 12.5"), the offset after it.
fn range_end(line: &str, i: usize) -> Option<usize> {
    let j = skip_spaces(line, i);
    let rest = &line[j..];
    let dash_len = if rest.starts_with('-') {
        1
    } else if rest.starts_with("to ") {
        2
    } else {
        return None;
    };
    let k = skip_spaces(line, j + dash_len);
    let (_, len) = parse_number(&line[k..])?;
    Some(k + len)
}

/// "AFC ... total 13": the total wins over per-ovary numbers.
fn read_afc_total(line: &str, name_end: usize) -> Option<ValueRead> {
    let rest = &line[name_end..];
    let stop = rest.find(['.', ';']).unwrap_or(rest.len());
    let offset = rest[..stop].find("total")?;
    let mut i = name_end + offset + "total".len();
    let bytes = line.as_bytes();
    while i < bytes.len() && b" :=".contains(&bytes[i]) {
        i += 1;
    }
    let (number, len) = parse_number(&line[i..])?;
    Some(ValueRead {
        number,
        end: i + len,
        paren_unit: None,
        inferred: false,
        count: true,
    })
}

/// "AFC: right 4, left 3" (or "R 4 / L 3"): the sum of both ovaries.
fn read_afc_sides(line: &str, start: usize) -> Option<ValueRead> {
    let mut i = start;
    let mut right = None;
    let mut left = None;
    for _ in 0..2 {
        let word_len = line[i..]
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let side = &line[i..i + word_len];
        let is_right = matches!(side, "right" | "r" | "rt" | "ro");
        let is_left = matches!(side, "left" | "l" | "lt" | "lo");
        if !is_right && !is_left {
            break;
        }
        i = skip_spaces(line, i + word_len);
        if line[i..].starts_with("ovary") {
            i += "ovary".len();
        }
        while line.as_bytes().get(i).is_some_and(|b| b" :=".contains(b)) {
            i += 1;
        }
        let (number, len) = parse_number(&line[i..])?;
        if is_right {
            right = Some(number);
        } else {
            left = Some(number);
        }
        i += len;
        while line
            .as_bytes()
            .get(i)
            .is_some_and(|b| b" ,;/+|".contains(b))
        {
            i += 1;
        }
    }
    Some(ValueRead {
        number: right? + left?,
        end: i,
        paren_unit: None,
        inferred: true,
        count: true,
    })
}

/// Reads a number at the start of `text`: "12", "7.2", "0,8" (decimal comma), "1,450"
/// (thousands). Returns the value and the bytes read.
fn parse_number(text: &str) -> Option<(f64, usize)> {
    let bytes = text.as_bytes();
    let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 {
        return None;
    }
    let int_part = &text[..int_len];
    let mut digits = int_part.to_owned();
    let mut len = int_len;
    if let Some(&sep) = bytes.get(len)
        && (sep == b'.' || sep == b',')
    {
        let frac_len = bytes[len + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let thousands = sep == b','
            && frac_len == 3
            && int_len <= 3
            && !int_part.starts_with('0')
            && bytes.get(len + 4) != Some(&b',');
        if frac_len > 0 {
            let frac = &text[len + 1..len + 1 + frac_len];
            if !thousands {
                digits.push('.');
            }
            digits.push_str(frac);
            len += 1 + frac_len;
            if thousands
                && bytes.get(len) == Some(&b'.')
                && bytes.get(len + 1).is_some_and(u8::is_ascii_digit)
            {
                let more = bytes[len + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                digits.push('.');
                digits.push_str(&text[len + 1..len + 1 + more]);
                len += 1 + more;
            }
        }
    }
    digits.parse().ok().map(|value| (value, len))
}

/// Matches a unit spelling at the start of `text` (after spaces): the longest spelling
/// wins. Returns the unit and the bytes read.
fn match_unit(text: &str) -> Option<(Unit, usize)> {
    let start = skip_spaces(text, 0);
    UNIT_SPELLINGS
        .iter()
        .filter_map(|&(spelling, unit)| {
            match_spelling(&text[start..], spelling).map(|len| (unit, start + len))
        })
        .max_by_key(|&(_, len)| len)
}

fn match_spelling(text: &str, spelling: &str) -> Option<usize> {
    let text = text.as_bytes();
    let mut i = 0;
    for (k, &c) in spelling.as_bytes().iter().enumerate() {
        if k > 0 {
            while text.get(i) == Some(&b' ') {
                i += 1;
            }
        }
        if text.get(i) != Some(&c) {
            return None;
        }
        i += 1;
    }
    let last = *spelling.as_bytes().last()?;
    if is_word_byte(last) && text.get(i).is_some_and(|&b| is_word_byte(b)) {
        return None;
    }
    Some(i)
}

/// The unit of a value and the resulting canonical value and confidence; `None` when the
/// value cannot be used (no unit for a hormone, or a unit that does not measure it).
fn resolve_unit(
    line: &str,
    analyte: Analyte,
    value: &ValueRead,
    window_end: usize,
    header_unit: Option<Unit>,
) -> Option<(f64, f64)> {
    let base = if value.inferred {
        CONFIDENCE_INFERRED
    } else {
        CONFIDENCE_STATED
    };
    let stated = |unit: Unit| {
        analyte.factor(unit).map(|factor| {
            let confidence = if factor == 1.0 {
                base
            } else {
                base.min(CONFIDENCE_INFERRED)
            };
            (convert(value.number, factor), confidence)
        })
    };
    // Right after the value (same cell or the next one): it must fit the analyte.
    let after = skip_separators(line, value.end, b" |:");
    if let Some((unit, _)) = match_unit(&line[after..window_end.max(after)]) {
        return stated(unit);
    }
    if let Some(found) = value.paren_unit.and_then(stated) {
        return Some(found);
    }
    if let Some(found) = scan_unit(line, value.end, window_end).and_then(stated) {
        return Some(found);
    }
    if value.count && analyte == Analyte::AntralFollicleCount {
        return Some((value.number, base));
    }
    if let Some((number, _)) = header_unit.and_then(stated) {
        return Some((number, CONFIDENCE_INFERRED.min(base)));
    }
    match analyte.without_unit() {
        WithoutUnit::Reject => None,
        WithoutUnit::Assume(confidence) => Some((value.number, confidence.min(base))),
        WithoutUnit::Count => Some((value.number, base)),
    }
}

fn skip_separators(line: &str, mut i: usize, separators: &[u8]) -> usize {
    let bytes = line.as_bytes();
    while i < bytes.len() && separators.contains(&bytes[i]) {
        i += 1;
    }
    i
}

/// The first unit at a token start between `from` and `to`, stopping at the end of a
/// sentence or clause outside parentheses.
fn scan_unit(line: &str, from: usize, to: usize) -> Option<Unit> {
    let bytes = line.as_bytes();
    let mut depth = 0_i32;
    for i in from..to.min(bytes.len()) {
        match bytes[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b';' if depth <= 0 => return None,
            b'.' if depth <= 0
                && bytes.get(i + 1).is_none_or(|&b| b == b' ')
                && i > 0
                && !bytes[i - 1].is_ascii_digit() =>
            {
                return None;
            }
            _ => {}
        }
        let token_start = i > from && b" |([,;:=".contains(&bytes[i - 1]);
        if token_start
            && line.is_char_boundary(i)
            && let Some((unit, _)) = match_unit(&line[i..to])
        {
            return Some(unit);
        }
    }
    None
}

/// Applies a conversion factor; converted values keep three decimals.
fn convert(number: f64, factor: f64) -> f64 {
    if factor == 1.0 {
        return number;
    }
    (number * factor * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(&'static str, f64, f64)> {
        extract_values(text)
            .values
            .into_iter()
            .map(|found| {
                (
                    found.analyte.name(),
                    (found.value * 1000.0).round() / 1000.0,
                    found.confidence,
                )
            })
            .collect()
    }

    /// One value per line: (text, canonical name, value, confidence).
    fn check_single(cases: &[(&str, &str, f64, f64)]) {
        for &(text, name, value, confidence) in cases {
            let got = values(text);
            assert_eq!(
                got,
                vec![(Analyte::from_name(name).unwrap().name(), value, confidence)],
                "text: {text:?}"
            );
        }
    }

    fn check_none(cases: &[&str]) {
        for text in cases {
            let extraction = extract_values(text);
            assert!(
                extraction.values.is_empty(),
                "text: {text:?} gave {:?}",
                extraction.values
            );
        }
    }

    #[test]
    fn gonadotropins() {
        check_single(&[
            ("FSH 7.2 IU/L", "FSH", 7.2, 0.95),
            ("FSH: 7.2 mIU/mL", "FSH", 7.2, 0.95),
            ("Follicle stimulating hormone 9.4 IU/L", "FSH", 9.4, 0.95),
            (
                "Follicle-Stimulating Hormone (FSH) ..... 6.1 mIU/ml",
                "FSH",
                6.1,
                0.95,
            ),
            ("Basal FSH level = 11 U/L", "FSH", 11.0, 0.95),
            ("LH 5.4 IU/L", "LH", 5.4, 0.95),
            ("Luteinizing hormone: 4.8 mIU/mL", "LH", 4.8, 0.95),
            ("Luteinising Hormone (LH)  3,9  IU/L", "LH", 3.9, 0.95),
        ]);
    }

    #[test]
    fn amh() {
        check_single(&[
            ("AMH: 0.8 ng/mL", "AMH", 0.8, 0.95),
            ("Anti-Mullerian hormone 5.7 pmol/L", "AMH", 0.798, 0.8),
            (
                "Anti-Müllerian Hormone (AMH) 15.7 pmol/l",
                "AMH",
                2.199,
                0.8,
            ),
            ("Serum AMH level: 2,35 ng/ml", "AMH", 2.35, 0.95),
            ("AMH 1.9 µg/L", "AMH", 1.9, 0.95),
        ]);
    }

    #[test]
    fn steroids() {
        check_single(&[
            ("Estradiol (E2) 45 pg/mL", "estradiol", 45.0, 0.95),
            ("Oestradiol 180 pmol/L", "estradiol", 49.033, 0.8),
            ("E2: 1,450 pg/mL", "estradiol", 1450.0, 0.95),
            ("Progesterone 12 ng/mL", "progesterone", 12.0, 0.95),
            (
                "Progesterone (day 21) 38.2 nmol/L",
                "progesterone",
                12.013,
                0.8,
            ),
            ("P4 0,6 ng/ml", "progesterone", 0.6, 0.95),
        ]);
    }

    #[test]
    fn thyroid_and_prolactin() {
        check_single(&[
            ("TSH 2.1 mIU/L", "TSH", 2.1, 0.95),
            ("TSH 2.1 uIU/mL", "TSH", 2.1, 0.95),
            ("TSH 2.1 µIU/mL", "TSH", 2.1, 0.95),
            ("Thyroid stimulating hormone: 3.2 μIU/ml", "TSH", 3.2, 0.95),
            ("Prolactin 15 ng/mL", "prolactin", 15.0, 0.95),
            ("Prolactin 318 mIU/L", "prolactin", 15.0, 0.8),
            ("PRL 31 µg/L", "prolactin", 31.0, 0.95),
        ]);
    }

    #[test]
    fn semen() {
        check_single(&[
            (
                "Sperm concentration 12 x10^6/mL",
                "sperm_concentration",
                12.0,
                0.95,
            ),
            (
                "Sperm concentration: 12 million/ml",
                "sperm_concentration",
                12.0,
                0.95,
            ),
            (
                "Sperm concentration 12 M/mL",
                "sperm_concentration",
                12.0,
                0.95,
            ),
            ("Sperm count 4.2 × 10⁶/mL", "sperm_concentration", 4.2, 0.95),
            (
                "Sperm concentration 15.5 x 10^6 per ml",
                "sperm_concentration",
                15.5,
                0.95,
            ),
            (
                "Sperm concentration: 0 million/mL (azoospermia)",
                "sperm_concentration",
                0.0,
                0.95,
            ),
            (
                "Sperm concentration (10^6/mL)   12   16",
                "sperm_concentration",
                12.0,
                0.95,
            ),
            (
                "Progressive motility (PR) 35 %",
                "progressive_motility",
                35.0,
                0.95,
            ),
            (
                "Progressive motility (PR, %)   35   30",
                "progressive_motility",
                35.0,
                0.95,
            ),
            (
                "Progressive motility: 35",
                "progressive_motility",
                35.0,
                0.6,
            ),
            ("Normal forms 4 %", "normal_morphology", 4.0, 0.95),
            ("Normal morphology: 3%", "normal_morphology", 3.0, 0.95),
            (
                "Sperm morphology (normal forms) 2 %",
                "normal_morphology",
                2.0,
                0.95,
            ),
        ]);
    }

    #[test]
    fn ultrasound() {
        check_single(&[
            ("AFC 14", "antral_follicle_count", 14.0, 0.95),
            (
                "Antral follicle count: 14 (R 7, L 7)",
                "antral_follicle_count",
                14.0,
                0.95,
            ),
            (
                "AFC: right 3, left 2 (total 5)",
                "antral_follicle_count",
                5.0,
                0.95,
            ),
            (
                "Antral follicle count: right ovary 4, left ovary 3",
                "antral_follicle_count",
                7.0,
                0.8,
            ),
            ("AFC R 6 / L 5", "antral_follicle_count", 11.0, 0.8),
            (
                "Endometrial thickness 8.5 mm",
                "endometrial_thickness",
                8.5,
                0.95,
            ),
            (
                "Endometrial thickness: 0.85 cm",
                "endometrial_thickness",
                8.5,
                0.8,
            ),
            (
                "Endometrium (double layer) 7,2 mm",
                "endometrial_thickness",
                7.2,
                0.95,
            ),
        ]);
    }

    #[test]
    fn reference_range_is_not_the_value() {
        check_single(&[
            ("FSH 7.2 IU/L (3.5-12.5)", "FSH", 7.2, 0.95),
            ("FSH 7.2 (3.5 - 12.5) IU/L", "FSH", 7.2, 0.95),
            ("FSH | 7.2 | 3.5-12.5 | IU/L", "FSH", 7.2, 0.95),
            ("FSH | 3.5-12.5 | 7.2 | IU/L", "FSH", 7.2, 0.8),
            ("TSH 4.9 mIU/L (0.4 to 4.0) H", "TSH", 4.9, 0.95),
            (
                "Normal forms 4 % (reference >= 4)",
                "normal_morphology",
                4.0,
                0.95,
            ),
        ]);
    }

    #[test]
    fn decimal_comma() {
        check_single(&[
            ("AMH 0,8 ng/mL", "AMH", 0.8, 0.95),
            (
                "Endometrial thickness 0,85 cm",
                "endometrial_thickness",
                8.5,
                0.8,
            ),
            ("TSH: 1,25 mIU/l (0,27-4,2)", "TSH", 1.25, 0.95),
            ("Prolactin 0,450 ug/l", "prolactin", 0.45, 0.95),
        ]);
    }

    #[test]
    fn several_values_on_one_line() {
        let got = values("FSH 5.9 IU/L, LH 4.8 IU/L, E2 35 pg/mL; AMH 3.1 ng/mL");
        let names: Vec<_> = got.iter().map(|(name, value, _)| (*name, *value)).collect();
        assert_eq!(
            names,
            vec![("FSH", 5.9), ("LH", 4.8), ("AMH", 3.1), ("estradiol", 35.0)]
        );
    }

    #[test]
    fn header_unit_applies_to_rows_below() {
        let text = [
            "Gonadotropins   Result (IU/L)   Reference",
            "",
            "FSH   6.8   3.5 - 12.5",
            "",
            "LH  5.4  2.4 - 12.6",
            "Other tests",
            "TSH 2.0",
        ]
        .join("\n");
        assert_eq!(values(&text), vec![("FSH", 6.8, 0.8), ("LH", 5.4, 0.8)]);
        let pipes = [
            "| Hormone | Result (IU/L) | Reference |",
            "|---|---|---|",
            "| FSH | 6.8 | 3.5 - 12.5 |",
            "| LH | 13.2 | H | 2.4 - 12.6 |",
        ]
        .join("\n");
        assert_eq!(values(&pipes), vec![("FSH", 6.8, 0.8), ("LH", 13.2, 0.8)]);
        // A header unit that does not measure the analyte is not used.
        assert!(values("Hormone (ng/mL)\nFSH 6.8").is_empty());
    }

    #[test]
    fn stated_without_value_or_unit_is_not_extracted() {
        check_none(&[
            "",
            "AMH and AFC to be repeated next cycle",
            "FSH pending",
            "TSH 2.0",
            "Estradiol 45 (unit not stated)",
            "Sperm concentration 12",
            "Endometrial thickness 8",
            "FSH/LH ratio 1.4",
            "LH surge on day 14 detected",
            "Non-progressive motility (NP) 13 %",
            "Total sperm count 39 million per ejaculate",
            "17-OH progesterone 1.2 ng/mL",
            "17 hydroxy-progesterone 1.2 ng/mL",
            "TSH receptor antibodies 1.2 IU/L",
            "AMH < 0.01 ng/mL",
            "Normal forms >= 4 %",
            "Free T4 15.2 pmol/L",
            "FSH 7.2 mIU/L",
            "AFC 12-14",
            "Semen volume 2.8 mL",
        ]);
    }

    #[test]
    fn implausible_values_are_rejected() {
        for (text, name) in [
            ("AMH 500 ng/mL", "AMH"),
            ("FSH 950 IU/L", "FSH"),
            ("Progressive motility 135 %", "progressive_motility"),
            ("Endometrial thickness 85 mm", "endometrial_thickness"),
            (
                "Sperm concentration 12000 million/mL",
                "sperm_concentration",
            ),
            ("AFC 14.5", "antral_follicle_count"),
        ] {
            let extraction = extract_values(text);
            assert!(extraction.values.is_empty(), "text: {text:?}");
            assert_eq!(extraction.rejected.len(), 1, "text: {text:?}");
            assert_eq!(extraction.rejected[0].analyte.name(), name);
        }
    }

    #[test]
    fn date_before_the_value_is_skipped() {
        check_single(&[("AMH 12/03/2024: 2.1 ng/mL", "AMH", 2.1, 0.95)]);
    }

    #[test]
    fn highest_confidence_wins_then_first() {
        let got =
            values("Progressive motility 30\nProgressive motility 35 %\nProgressive motility 40 %");
        assert_eq!(got, vec![("progressive_motility", 35.0, 0.95)]);
    }

    #[test]
    fn numbers() {
        for (text, expected) in [
            ("12", Some((12.0, 2))),
            ("7.2 IU", Some((7.2, 3))),
            ("0,8", Some((0.8, 3))),
            ("1,450 pg", Some((1450.0, 5))),
            ("0,450", Some((0.45, 5))),
            ("1,45", Some((1.45, 4))),
            ("12,500.5", Some((12500.5, 8))),
            ("7.", Some((7.0, 1))),
            ("x", None),
        ] {
            assert_eq!(parse_number(text), expected, "text: {text:?}");
        }
    }

    #[test]
    fn units() {
        for (text, expected) in [
            ("iu/l", Some(Unit::IuPerL)),
            ("miu/ml", Some(Unit::MiuPerMl)),
            ("x 10^6 / ml", Some(Unit::MillionPerMl)),
            ("m/ml", Some(Unit::MillionPerMl)),
            ("mm", Some(Unit::Mm)),
            ("mmol/l", None),
            ("ml", None),
        ] {
            assert_eq!(
                match_unit(text).map(|(unit, _)| unit),
                expected,
                "text: {text:?}"
            );
        }
    }

    #[test]
    fn every_analyte_has_a_round_trip_name() {
        for analyte in Analyte::ALL {
            assert_eq!(Analyte::from_name(analyte.name()), Some(analyte));
        }
    }
}
