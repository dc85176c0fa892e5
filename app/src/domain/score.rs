//! The fertility score: eight weighted domains scored from clinical values.
//!
//! Each domain scores 0-100 from the values that bear on it, as set out below. The overall
//! score is the weighted sum of the eight domain scores. It is scored from the clinical values
//! themselves, never from how confident a text extraction was.
//!
//! ## Domains
//!
//! | domain | weight | evidence |
//! |--------|--------|----------|
//! | male | 0.25 | sperm concentration, progressive motility, normal morphology |
//! | female | 0.25 | oocyte qualities, embryo qualities |
//! | ovarian | 0.15 | antral follicle count, AMH |
//! | tubal | 0.10 | tubal patency |
//! | uterine | 0.10 | hysteroscopy findings, endometrial thickness |
//! | hormonal | 0.10 | FSH, LH, estradiol, progesterone, TSH, prolactin |
//! | genetic | 0.03 | none yet: always "no data" |
//! | lifestyle | 0.02 | none yet: always "no data" |
//!
//! ## How a domain is scored
//!
//! 1. Every value present earns points from the table below ("a to < b" includes a and
//!    excludes b). Values that are not finite numbers are ignored.
//! 2. The domain score is the mean of its points, rounded to one decimal. Exceptions:
//!    - **male**: azoospermia (sperm concentration 0) sets the male domain to 0 whatever the
//!      other semen values are;
//!    - **female**: the oocytes earn the mean of their points, the embryos the mean of
//!      theirs, and the domain is the mean of these (at most two) means, so a cycle with
//!      many oocytes does not drown out its embryos;
//!    - **uterine**: a hysteroscopy earns the points of its worst finding (no finding, or
//!      only "normal", earns 100).
//! 3. A domain without any value scores exactly 50 and is marked "no data" (`has_data`
//!    false).
//! 4. The overall score is the sum of weight x domain score over the eight (rounded)
//!    domain scores, rounded to one decimal. The band is decided on that rounded score.
//!
//! Hormone scales assume the usual sampling: FSH, LH and estradiol on cycle day 2-4,
//! progesterone mid-luteal (day 21, to confirm ovulation). Endometrial thickness assumes a
//! late follicular or pre-transfer scan.
//!
//! <!-- points table: begin (checked by `tests::doc_table_matches_code`) -->
//! | domain | value | unit | points |
//! |--------|-------|------|--------|
//! | male | sperm concentration | million/mL | < 1: 15; 1 to < 5: 30; 5 to < 15: 60; >= 15: 100 |
//! | male | progressive motility | % | < 10: 15; 10 to < 20: 30; 20 to < 32: 60; >= 32: 100 |
//! | male | normal morphology | % | < 1: 15; 1 to < 2: 30; 2 to < 4: 60; >= 4: 100 |
//! | female | oocyte quality (each) | - | Excellent: 100; Good: 80; Fair: 60; Immature: 30 |
//! | female | embryo quality (each) | - | Excellent: 100; Good: 80; Fair: 60; Poor: 20 |
//! | ovarian | antral follicle count | follicles | < 3: 20; 3 to < 6: 40; 6 to < 26: 100; >= 26: 60 |
//! | ovarian | AMH | ng/mL | < 0.5: 10; 0.5 to < 1: 40; 1 to < 1.5: 70; 1.5 to < 4: 100; >= 4: 70 |
//! | tubal | tubal patency | - | patent: 100; unilateral_blocked: 50; bilateral_blocked: 0 |
//! | uterine | hysteroscopy finding (worst) | - | normal: 100; polyp: 70; fibroid: 60; septum: 50; hyperplasia: 50; atrophy: 40; adhesion: 30 |
//! | uterine | endometrial thickness | mm | < 5: 20; 5 to < 7: 50; 7 to < 15: 100; >= 15: 70 |
//! | hormonal | FSH | IU/L | < 1.5: 60; 1.5 to < 10: 100; 10 to < 15: 60; 15 to < 25: 30; >= 25: 10 |
//! | hormonal | LH | IU/L | < 2: 60; 2 to < 12: 100; >= 12: 60 |
//! | hormonal | estradiol | pg/mL | < 20: 70; 20 to < 80: 100; >= 80: 60 |
//! | hormonal | progesterone | ng/mL | < 3: 50; 3 to < 10: 70; >= 10: 100 |
//! | hormonal | TSH | mIU/L | < 0.4: 50; 0.4 to < 2.5: 100; 2.5 to < 4.5: 70; >= 4.5: 30 |
//! | hormonal | prolactin | ng/mL | < 25: 100; 25 to < 50: 60; >= 50: 30 |
//! <!-- points table: end -->
//!
//! ## Bands and statuses
//!
//! | overall score | band | | domain score | status |
//! |---------------|------|-|--------------|--------|
//! | >= 80 | Excellent | | >= 80 | Excellent |
//! | >= 60 | Good | | >= 60 | Good |
//! | >= 40 | Moderate | | >= 40 | Fair |
//! | < 40 | Significant concerns | | < 40 | Concern |
//!
//! ## Critical findings, recommendations, areas for improvement
//!
//! - Critical findings: AMH < 0.5 ng/mL; sperm concentration < 5 million/mL (reported as
//!   azoospermia alone when it is 0); tubal blockage, unilateral or bilateral.
//! - Recommendations, in this order, each added when its trigger holds:
//!
//!   | trigger | recommendation (abridged) |
//!   |---------|---------------------------|
//!   | sperm concentration 0 | azoospermia: andrology/urology referral, surgical sperm retrieval |
//!   | otherwise any semen value below its WHO limit (15 / 32 / 4) | abnormal semen analysis: repeat in 2-3 months, andrology |
//!   | sperm concentration > 0 and < 5 million/mL | plan IVF with ICSI |
//!   | oocytes recorded, all Immature | review trigger timing and stimulation |
//!   | embryos recorded, none Excellent or Good | no embryo of transfer quality: review with the embryologist |
//!   | AMH < 1 ng/mL | "Expedite treatment: ..." |
//!   | AFC < 6 | low ovarian reserve: poor response expected |
//!   | AFC > 25 or AMH >= 4 ng/mL | high ovarian reserve (possible PCOS): monitor for OHSS |
//!   | tubes blocked, bilateral / unilateral | IVF indicated / confirm, IUI or IVF |
//!   | any hysteroscopy finding other than normal | flagged uterine findings: hysteroscopic treatment before transfer |
//!   | endometrial thickness < 7 mm | thin endometrium: optimise preparation |
//!   | FSH >= 10 IU/L | raised FSH: interpret with AMH and AFC |
//!   | TSH outside 0.4 to < 2.5 mIU/L | check thyroid function |
//!   | prolactin >= 25 ng/mL | raised prolactin: repeat, investigate |
//!   | a clinical domain (male to hormonal) without data | complete the work-up |
//!   | none of the above | no abnormality in the recorded values |
//!
//! - Areas for improvement: every domain **with data** scoring below 70, in domain order.
//!   Domains without data (always 50) are not listed: their 50 means "unknown", not
//!   "poor"; the work-up recommendation names them instead.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::embryo::EmbryoQuality;
use super::fmt_value;
use super::hysteroscopy::{Finding, TubalPatency};
use super::oocyte::OocyteQuality;
use super::semen;

/// A domain scores below this is an area for improvement.
pub const IMPROVEMENT_THRESHOLD: f64 = 70.0;
/// The score of a domain without evidence.
pub const NO_DATA_SCORE: f64 = 50.0;

/// One of the eight fertility domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Semen parameters.
    Male,
    /// Oocyte and embryo quality.
    Female,
    /// Ovarian reserve: AFC and AMH.
    Ovarian,
    /// Tubal patency.
    Tubal,
    /// Uterine cavity and endometrium.
    Uterine,
    /// Reproductive and thyroid hormones.
    Hormonal,
    /// Genetic factors (no inputs yet).
    Genetic,
    /// Lifestyle factors (no inputs yet).
    Lifestyle,
}

impl Domain {
    /// All eight domains, in report order.
    pub const ALL: [Domain; 8] = [
        Domain::Male,
        Domain::Female,
        Domain::Ovarian,
        Domain::Tubal,
        Domain::Uterine,
        Domain::Hormonal,
        Domain::Genetic,
        Domain::Lifestyle,
    ];

    /// The domain's share of the overall score; the eight weights sum to 1.
    pub fn weight(self) -> f64 {
        match self {
            Domain::Male | Domain::Female => 0.25,
            Domain::Ovarian => 0.15,
            Domain::Tubal | Domain::Uterine | Domain::Hormonal => 0.10,
            Domain::Genetic => 0.03,
            Domain::Lifestyle => 0.02,
        }
    }

    /// The lowercase name, e.g. "male".
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Male => "male",
            Domain::Female => "female",
            Domain::Ovarian => "ovarian",
            Domain::Tubal => "tubal",
            Domain::Uterine => "uterine",
            Domain::Hormonal => "hormonal",
            Domain::Genetic => "genetic",
            Domain::Lifestyle => "lifestyle",
        }
    }

    /// True for the domains the clinic can currently record evidence for.
    fn has_inputs(self) -> bool {
        !matches!(self, Domain::Genetic | Domain::Lifestyle)
    }
}

/// The status of one domain score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum DomainStatus {
    /// Score >= 80.
    Excellent,
    /// Score >= 60.
    Good,
    /// Score >= 40.
    Fair,
    /// Score below 40.
    Concern,
}

impl DomainStatus {
    /// The status of a domain score.
    pub fn from_score(score: f64) -> DomainStatus {
        if score >= 80.0 {
            return DomainStatus::Excellent;
        }
        if score >= 60.0 {
            return DomainStatus::Good;
        }
        if score >= 40.0 {
            return DomainStatus::Fair;
        }
        DomainStatus::Concern
    }
}

/// The band of the overall score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Band {
    /// Score >= 80.
    Excellent,
    /// Score >= 60.
    Good,
    /// Score >= 40.
    Moderate,
    /// Score below 40.
    #[serde(rename = "Significant concerns")]
    SignificantConcerns,
}

impl Band {
    /// The band of an overall score (pass the rounded score).
    pub fn from_score(score: f64) -> Band {
        if score >= 80.0 {
            return Band::Excellent;
        }
        if score >= 60.0 {
            return Band::Good;
        }
        if score >= 40.0 {
            return Band::Moderate;
        }
        Band::SignificantConcerns
    }

    /// The band as the report prints it, e.g. "Significant concerns".
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Excellent => "Excellent",
            Band::Good => "Good",
            Band::Moderate => "Moderate",
            Band::SignificantConcerns => "Significant concerns",
        }
    }
}

/// The clinical values known about a patient (or couple), gathered from lab analyses and
/// documents. Absent values are simply unknown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Sperm concentration, million/mL.
    pub sperm_concentration: Option<f64>,
    /// Progressive motility, %.
    pub progressive_motility: Option<f64>,
    /// Normal morphology, %.
    pub normal_morphology: Option<f64>,
    /// Quality of each oocyte assessed.
    pub oocyte_qualities: Vec<OocyteQuality>,
    /// Quality of each embryo graded.
    pub embryo_qualities: Vec<EmbryoQuality>,
    /// Antral follicle count of the latest follicle scan, scored with the thresholds of the
    /// follicle classification (AFC < 6 low, > 25 high).
    pub antral_follicle_count: Option<u32>,
    /// Anti-Müllerian hormone, ng/mL.
    pub amh: Option<f64>,
    /// Follicle-stimulating hormone, IU/L.
    pub fsh: Option<f64>,
    /// Luteinising hormone, IU/L.
    pub lh: Option<f64>,
    /// Estradiol, pg/mL.
    pub estradiol: Option<f64>,
    /// Progesterone, ng/mL.
    pub progesterone: Option<f64>,
    /// Thyroid-stimulating hormone, mIU/L.
    pub tsh: Option<f64>,
    /// Prolactin, ng/mL.
    pub prolactin: Option<f64>,
    /// Endometrial thickness, mm.
    pub endometrial_thickness: Option<f64>,
    /// Hysteroscopy findings; `Some` when a hysteroscopy was done.
    pub uterine_findings: Option<Vec<Finding>>,
    /// Tubal patency.
    pub tubal_patency: Option<TubalPatency>,
}

/// The score of one domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DomainScore {
    /// The domain.
    pub domain: Domain,
    /// Its weight in the overall score.
    pub weight: f64,
    /// 0-100, one decimal; exactly 50 without data.
    pub score: f64,
    /// Excellent, Good, Fair or Concern.
    pub status: DomainStatus,
    /// False when no value bore on the domain (the score is then 50).
    pub has_data: bool,
    /// Which values produced the score, e.g. "sperm concentration 12 million/mL: 60".
    pub basis: Vec<String>,
}

/// The fertility score with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FertilityScore {
    /// Weighted sum of the domain scores, 0-100, one decimal.
    pub score: f64,
    /// Band of the (rounded) score.
    pub band: Band,
    /// All eight domains, in the order male, female, ovarian, tubal, uterine, hormonal,
    /// genetic, lifestyle.
    pub domains: Vec<DomainScore>,
    /// Findings that need attention before anything else.
    pub critical_findings: Vec<String>,
    /// Clinical recommendations, in domain order.
    pub recommendations: Vec<String>,
    /// Domains with data scoring below 70.
    pub areas_for_improvement: Vec<Domain>,
}

/// Scores the evidence. See the module documentation for every threshold.
pub fn fertility_score(e: &Evidence) -> FertilityScore {
    let domains: Vec<DomainScore> = Domain::ALL.iter().map(|&d| score_domain(d, e)).collect();
    let score = round1(domains.iter().map(|d| d.weight * d.score).sum());
    let areas_for_improvement = domains
        .iter()
        .filter(|d| d.has_data && d.score < IMPROVEMENT_THRESHOLD)
        .map(|d| d.domain)
        .collect();
    FertilityScore {
        score,
        band: Band::from_score(score),
        critical_findings: critical_findings(e),
        recommendations: recommendations(e, &domains),
        areas_for_improvement,
        domains,
    }
}

// ---------------------------------------------------------------------------------------
// Value -> points scales.

/// A piecewise-constant scale: `steps` are `(from, points)`, ascending; a value earns the
/// points of the last step whose `from` it reaches (values below the first step earn the
/// first step's points).
struct Scale {
    domain: Domain,
    value: &'static str,
    unit: &'static str,
    steps: &'static [(f64, f64)],
}

impl Scale {
    fn points(&self, value: f64) -> f64 {
        debug_assert!(self.steps.windows(2).all(|w| w[0].0 < w[1].0));
        self.steps
            .iter()
            .rev()
            .find(|(from, _)| value >= *from)
            .unwrap_or(&self.steps[0])
            .1
    }

    fn basis(&self, value: f64, points: f64) -> String {
        format!(
            "{} {} {}: {}",
            self.value,
            fmt_value(value),
            self.unit,
            fmt_value(points)
        )
    }
}

const SPERM_CONCENTRATION: Scale = Scale {
    domain: Domain::Male,
    value: "sperm concentration",
    unit: "million/mL",
    steps: &[(0.0, 15.0), (1.0, 30.0), (5.0, 60.0), (15.0, 100.0)],
};
const PROGRESSIVE_MOTILITY: Scale = Scale {
    domain: Domain::Male,
    value: "progressive motility",
    unit: "%",
    steps: &[(0.0, 15.0), (10.0, 30.0), (20.0, 60.0), (32.0, 100.0)],
};
const NORMAL_MORPHOLOGY: Scale = Scale {
    domain: Domain::Male,
    value: "normal morphology",
    unit: "%",
    steps: &[(0.0, 15.0), (1.0, 30.0), (2.0, 60.0), (4.0, 100.0)],
};
const ANTRAL_FOLLICLE_COUNT: Scale = Scale {
    domain: Domain::Ovarian,
    value: "antral follicle count",
    unit: "follicles",
    steps: &[(0.0, 20.0), (3.0, 40.0), (6.0, 100.0), (26.0, 60.0)],
};
const AMH: Scale = Scale {
    domain: Domain::Ovarian,
    value: "AMH",
    unit: "ng/mL",
    steps: &[
        (0.0, 10.0),
        (0.5, 40.0),
        (1.0, 70.0),
        (1.5, 100.0),
        (4.0, 70.0),
    ],
};
const ENDOMETRIAL_THICKNESS: Scale = Scale {
    domain: Domain::Uterine,
    value: "endometrial thickness",
    unit: "mm",
    steps: &[(0.0, 20.0), (5.0, 50.0), (7.0, 100.0), (15.0, 70.0)],
};
const FSH: Scale = Scale {
    domain: Domain::Hormonal,
    value: "FSH",
    unit: "IU/L",
    steps: &[
        (0.0, 60.0),
        (1.5, 100.0),
        (10.0, 60.0),
        (15.0, 30.0),
        (25.0, 10.0),
    ],
};
const LH: Scale = Scale {
    domain: Domain::Hormonal,
    value: "LH",
    unit: "IU/L",
    steps: &[(0.0, 60.0), (2.0, 100.0), (12.0, 60.0)],
};
const ESTRADIOL: Scale = Scale {
    domain: Domain::Hormonal,
    value: "estradiol",
    unit: "pg/mL",
    steps: &[(0.0, 70.0), (20.0, 100.0), (80.0, 60.0)],
};
const PROGESTERONE: Scale = Scale {
    domain: Domain::Hormonal,
    value: "progesterone",
    unit: "ng/mL",
    steps: &[(0.0, 50.0), (3.0, 70.0), (10.0, 100.0)],
};
const TSH: Scale = Scale {
    domain: Domain::Hormonal,
    value: "TSH",
    unit: "mIU/L",
    steps: &[(0.0, 50.0), (0.4, 100.0), (2.5, 70.0), (4.5, 30.0)],
};
const PROLACTIN: Scale = Scale {
    domain: Domain::Hormonal,
    value: "prolactin",
    unit: "ng/mL",
    steps: &[(0.0, 100.0), (25.0, 60.0), (50.0, 30.0)],
};

/// Points of one oocyte.
fn oocyte_points(quality: OocyteQuality) -> f64 {
    match quality {
        OocyteQuality::Excellent => 100.0,
        OocyteQuality::Good => 80.0,
        OocyteQuality::Fair => 60.0,
        OocyteQuality::Immature => 30.0,
    }
}

/// Points of one embryo.
fn embryo_points(quality: EmbryoQuality) -> f64 {
    match quality {
        EmbryoQuality::Excellent => 100.0,
        EmbryoQuality::Good => 80.0,
        EmbryoQuality::Fair => 60.0,
        EmbryoQuality::Poor => 20.0,
    }
}

/// Points of one hysteroscopy finding; a hysteroscopy earns those of its worst finding.
fn finding_points(finding: Finding) -> f64 {
    match finding {
        Finding::Normal => 100.0,
        Finding::Polyp => 70.0,
        Finding::Fibroid => 60.0,
        Finding::Septum => 50.0,
        Finding::Hyperplasia => 50.0,
        Finding::Atrophy => 40.0,
        Finding::Adhesion => 30.0,
    }
}

/// Points of the tubal patency.
fn tubal_points(patency: TubalPatency) -> f64 {
    match patency {
        TubalPatency::Patent => 100.0,
        TubalPatency::UnilateralBlocked => 50.0,
        TubalPatency::BilateralBlocked => 0.0,
    }
}

// ---------------------------------------------------------------------------------------
// Domain scores.

/// Points earned by the values of one domain, with the basis of each.
#[derive(Default)]
struct Tally {
    points: Vec<f64>,
    basis: Vec<String>,
}

impl Tally {
    fn add(&mut self, basis: String, points: f64) {
        self.points.push(points);
        self.basis.push(basis);
    }

    fn scale(&mut self, scale: &Scale, value: Option<f64>) {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return;
        };
        let points = scale.points(value);
        self.add(scale.basis(value, points), points);
    }

    fn finish(self, domain: Domain) -> DomainScore {
        let Some(mean) = mean(&self.points) else {
            return no_data(domain);
        };
        scored(domain, mean, self.basis)
    }
}

fn score_domain(domain: Domain, e: &Evidence) -> DomainScore {
    match domain {
        Domain::Male => male(e),
        Domain::Female => female(e),
        Domain::Ovarian => ovarian(e),
        Domain::Tubal => tubal(e),
        Domain::Uterine => uterine(e),
        Domain::Hormonal => hormonal(e),
        Domain::Genetic | Domain::Lifestyle => no_data(domain),
    }
}

fn male(e: &Evidence) -> DomainScore {
    if is_azoospermia(e) {
        let basis = "sperm concentration 0 million/mL (azoospermia): male domain 0".to_owned();
        return scored(Domain::Male, 0.0, vec![basis]);
    }
    let mut tally = Tally::default();
    tally.scale(&SPERM_CONCENTRATION, e.sperm_concentration);
    tally.scale(&PROGRESSIVE_MOTILITY, e.progressive_motility);
    tally.scale(&NORMAL_MORPHOLOGY, e.normal_morphology);
    tally.finish(Domain::Male)
}

fn female(e: &Evidence) -> DomainScore {
    let mut tally = Tally::default();
    let oocyte_points: Vec<f64> = e
        .oocyte_qualities
        .iter()
        .map(|&q| oocyte_points(q))
        .collect();
    if let Some(points) = mean(&oocyte_points) {
        let names = list(e.oocyte_qualities.iter().map(|q| format!("{q:?}")));
        tally.add(
            format!("oocyte qualities {names}: mean {}", fmt_value(points)),
            points,
        );
    }
    let embryo_points: Vec<f64> = e
        .embryo_qualities
        .iter()
        .map(|&q| embryo_points(q))
        .collect();
    if let Some(points) = mean(&embryo_points) {
        let names = list(e.embryo_qualities.iter().map(|q| format!("{q:?}")));
        tally.add(
            format!("embryo qualities {names}: mean {}", fmt_value(points)),
            points,
        );
    }
    tally.finish(Domain::Female)
}

fn ovarian(e: &Evidence) -> DomainScore {
    let mut tally = Tally::default();
    tally.scale(
        &ANTRAL_FOLLICLE_COUNT,
        e.antral_follicle_count.map(f64::from),
    );
    tally.scale(&AMH, e.amh);
    tally.finish(Domain::Ovarian)
}

fn tubal(e: &Evidence) -> DomainScore {
    let mut tally = Tally::default();
    if let Some(patency) = e.tubal_patency {
        let points = tubal_points(patency);
        let name = tubal_name(patency);
        tally.add(
            format!("tubal patency {name}: {}", fmt_value(points)),
            points,
        );
    }
    tally.finish(Domain::Tubal)
}

fn uterine(e: &Evidence) -> DomainScore {
    let mut tally = Tally::default();
    if let Some(findings) = &e.uterine_findings {
        let points = findings
            .iter()
            .map(|&f| finding_points(f))
            .fold(finding_points(Finding::Normal), f64::min);
        let names = if findings.is_empty() {
            Finding::Normal.as_str().to_owned()
        } else {
            list(findings.iter().map(|f| f.as_str().to_owned()))
        };
        tally.add(
            format!(
                "hysteroscopy findings {names}: {} (worst finding)",
                fmt_value(points)
            ),
            points,
        );
    }
    tally.scale(&ENDOMETRIAL_THICKNESS, e.endometrial_thickness);
    tally.finish(Domain::Uterine)
}

fn hormonal(e: &Evidence) -> DomainScore {
    let mut tally = Tally::default();
    tally.scale(&FSH, e.fsh);
    tally.scale(&LH, e.lh);
    tally.scale(&ESTRADIOL, e.estradiol);
    tally.scale(&PROGESTERONE, e.progesterone);
    tally.scale(&TSH, e.tsh);
    tally.scale(&PROLACTIN, e.prolactin);
    tally.finish(Domain::Hormonal)
}

fn no_data(domain: Domain) -> DomainScore {
    DomainScore {
        domain,
        weight: domain.weight(),
        score: NO_DATA_SCORE,
        status: DomainStatus::from_score(NO_DATA_SCORE),
        has_data: false,
        basis: vec!["no data: neutral 50".to_owned()],
    }
}

fn scored(domain: Domain, score: f64, basis: Vec<String>) -> DomainScore {
    let score = round1(score);
    DomainScore {
        domain,
        weight: domain.weight(),
        score,
        status: DomainStatus::from_score(score),
        has_data: true,
        basis,
    }
}

// ---------------------------------------------------------------------------------------
// Critical findings and recommendations.

/// Sperm concentration below this (million/mL) is a critical finding.
const CRITICAL_SPERM_CONCENTRATION: f64 = 5.0;
/// AMH below this (ng/mL) is a critical finding.
const CRITICAL_AMH: f64 = 0.5;
/// AMH below this (ng/mL) asks to expedite treatment.
const EXPEDITE_AMH: f64 = 1.0;

fn is_azoospermia(e: &Evidence) -> bool {
    e.sperm_concentration.is_some_and(|c| c <= 0.0)
}

fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

fn critical_findings(e: &Evidence) -> Vec<String> {
    let mut findings = Vec::new();
    if is_azoospermia(e) {
        findings.push("Azoospermia: no sperm in the ejaculate".to_owned());
    } else if let Some(c) =
        finite(e.sperm_concentration).filter(|&c| c < CRITICAL_SPERM_CONCENTRATION)
    {
        findings.push(format!(
            "Sperm concentration {} million/mL, below 5 million/mL",
            fmt_value(c)
        ));
    }
    if let Some(amh) = finite(e.amh).filter(|&amh| amh < CRITICAL_AMH) {
        findings.push(format!(
            "AMH {} ng/mL, below 0.5 ng/mL: severely diminished ovarian reserve",
            fmt_value(amh)
        ));
    }
    match e.tubal_patency {
        Some(TubalPatency::BilateralBlocked) => {
            findings.push("Bilateral tubal blockage".to_owned())
        }
        Some(TubalPatency::UnilateralBlocked) => {
            findings.push("Unilateral tubal blockage".to_owned())
        }
        _ => {}
    }
    findings
}

fn recommendations(e: &Evidence, domains: &[DomainScore]) -> Vec<String> {
    let mut out = Vec::new();
    male_recommendations(e, &mut out);
    female_recommendations(e, &mut out);
    ovarian_recommendations(e, &mut out);
    tubal_recommendations(e, &mut out);
    uterine_recommendations(e, &mut out);
    hormonal_recommendations(e, &mut out);
    let missing: Vec<&str> = domains
        .iter()
        .filter(|d| !d.has_data && d.domain.has_inputs())
        .map(|d| d.domain.as_str())
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "Complete the work-up: no data yet for the {} domain{}",
            missing.join(", "),
            if missing.len() == 1 { "" } else { "s" }
        ));
    }
    if out.is_empty() {
        out.push("No abnormality in the recorded values: continue the planned care".to_owned());
    }
    out
}

fn male_recommendations(e: &Evidence, out: &mut Vec<String>) {
    if is_azoospermia(e) {
        out.push(
            "Azoospermia: refer to andrology/urology for hormonal and genetic work-up \
             (karyotype, Y-chromosome microdeletions) and assessment for surgical sperm retrieval"
                .to_owned(),
        );
        return;
    }
    let terms: Vec<&str> = [
        finite(e.sperm_concentration).and_then(semen::concentration_term),
        finite(e.progressive_motility).and_then(semen::motility_term),
        finite(e.normal_morphology).and_then(semen::morphology_term),
    ]
    .into_iter()
    .flatten()
    .collect();
    if terms.is_empty() {
        return;
    }
    out.push(format!(
        "Abnormal semen analysis ({}): repeat the analysis after 2-3 months and refer to andrology",
        terms.join(" + ")
    ));
    if finite(e.sperm_concentration).is_some_and(|c| c < CRITICAL_SPERM_CONCENTRATION) {
        out.push("Sperm concentration below 5 million/mL: plan IVF with ICSI".to_owned());
    }
}

fn female_recommendations(e: &Evidence, out: &mut Vec<String>) {
    let oocytes = &e.oocyte_qualities;
    if !oocytes.is_empty() && oocytes.iter().all(|&q| q == OocyteQuality::Immature) {
        out.push(
            "All oocytes immature: review the trigger timing and stimulation protocol".to_owned(),
        );
    }
    let embryos = &e.embryo_qualities;
    if !embryos.is_empty() && !embryos.iter().any(|q| q.is_transfer_candidate()) {
        out.push(
            "No embryo of transfer quality (Excellent or Good): review stimulation and culture \
             with the embryologist"
                .to_owned(),
        );
    }
}

fn ovarian_recommendations(e: &Evidence, out: &mut Vec<String>) {
    let amh = finite(e.amh);
    if amh.is_some_and(|amh| amh < EXPEDITE_AMH) {
        out.push(
            "Expedite treatment: AMH below 1 ng/mL indicates diminished ovarian reserve; \
             offer IVF without delay and discuss oocyte or embryo banking"
                .to_owned(),
        );
    }
    let afc = e.antral_follicle_count;
    if let Some(afc) = afc.filter(|&afc| afc < 6) {
        out.push(format!(
            "Low ovarian reserve (antral follicle count {afc}): poor response to stimulation \
             expected; plan an adapted stimulation protocol"
        ));
    }
    if afc.is_some_and(|afc| afc > 25) || amh.is_some_and(|amh| amh >= 4.0) {
        out.push(
            "High ovarian reserve (possible PCOS): evaluate for PCOS and monitor for OHSS \
             (antagonist protocol, agonist trigger or freeze-all)"
                .to_owned(),
        );
    }
}

fn tubal_recommendations(e: &Evidence, out: &mut Vec<String>) {
    match e.tubal_patency {
        Some(TubalPatency::BilateralBlocked) => {
            out.push("Bilateral tubal blockage: IVF is indicated".to_owned());
        }
        Some(TubalPatency::UnilateralBlocked) => out.push(
            "Unilateral tubal blockage: confirm (HSG or laparoscopy); IUI may be considered \
             when ovulation is on the patent side, otherwise IVF"
                .to_owned(),
        ),
        _ => {}
    }
}

fn uterine_recommendations(e: &Evidence, out: &mut Vec<String>) {
    let abnormal: Vec<String> = e
        .uterine_findings
        .iter()
        .flatten()
        .filter(|f| f.is_abnormal())
        .map(|f| f.as_str().to_owned())
        .collect();
    if !abnormal.is_empty() {
        out.push(format!(
            "Flagged uterine findings ({}): consider hysteroscopic treatment before embryo transfer",
            abnormal.join(", ")
        ));
    }
    if let Some(mm) = finite(e.endometrial_thickness).filter(|&mm| mm < 7.0) {
        out.push(format!(
            "Thin endometrium ({} mm): optimise endometrial preparation before embryo transfer",
            fmt_value(mm)
        ));
    }
}

fn hormonal_recommendations(e: &Evidence, out: &mut Vec<String>) {
    if let Some(fsh) = finite(e.fsh).filter(|&fsh| fsh >= 10.0) {
        out.push(format!(
            "Raised FSH ({} IU/L): suggests reduced ovarian reserve; interpret with AMH and AFC",
            fmt_value(fsh)
        ));
    }
    if let Some(tsh) = finite(e.tsh).filter(|&tsh| !(0.4..2.5).contains(&tsh)) {
        out.push(format!(
            "TSH {} mIU/L outside 0.4-2.5: check thyroid function and treat before conception",
            fmt_value(tsh)
        ));
    }
    if let Some(prl) = finite(e.prolactin).filter(|&prl| prl >= 25.0) {
        out.push(format!(
            "Raised prolactin ({} ng/mL): repeat the test and investigate hyperprolactinaemia",
            fmt_value(prl)
        ));
    }
}

// ---------------------------------------------------------------------------------------
// The reference table.

/// The value -> points reference table as markdown rows (header first), exactly as this
/// module's documentation shows it; a report or an API can print it as the scoring key.
pub fn points_table() -> Vec<String> {
    let mut rows = vec![
        "| domain | value | unit | points |".to_owned(),
        "|--------|-------|------|--------|".to_owned(),
    ];
    rows.extend(
        [
            &SPERM_CONCENTRATION,
            &PROGRESSIVE_MOTILITY,
            &NORMAL_MORPHOLOGY,
        ]
        .map(Scale::row),
    );
    let oocytes = [
        OocyteQuality::Excellent,
        OocyteQuality::Good,
        OocyteQuality::Fair,
        OocyteQuality::Immature,
    ]
    .map(|q| (format!("{q:?}"), oocyte_points(q)));
    rows.push(table_row(
        Domain::Female,
        "oocyte quality (each)",
        "",
        &oocytes,
    ));
    let embryos = [
        EmbryoQuality::Excellent,
        EmbryoQuality::Good,
        EmbryoQuality::Fair,
        EmbryoQuality::Poor,
    ]
    .map(|q| (format!("{q:?}"), embryo_points(q)));
    rows.push(table_row(
        Domain::Female,
        "embryo quality (each)",
        "",
        &embryos,
    ));
    rows.extend([&ANTRAL_FOLLICLE_COUNT, &AMH].map(Scale::row));
    let tubes = [
        TubalPatency::Patent,
        TubalPatency::UnilateralBlocked,
        TubalPatency::BilateralBlocked,
    ]
    .map(|t| (tubal_name(t).to_owned(), tubal_points(t)));
    rows.push(table_row(Domain::Tubal, "tubal patency", "", &tubes));
    let findings = [
        Finding::Normal,
        Finding::Polyp,
        Finding::Fibroid,
        Finding::Septum,
        Finding::Hyperplasia,
        Finding::Atrophy,
        Finding::Adhesion,
    ]
    .map(|f| (f.as_str().to_owned(), finding_points(f)));
    rows.push(table_row(
        Domain::Uterine,
        "hysteroscopy finding (worst)",
        "",
        &findings,
    ));
    rows.push(ENDOMETRIAL_THICKNESS.row());
    rows.extend([&FSH, &LH, &ESTRADIOL, &PROGESTERONE, &TSH, &PROLACTIN].map(Scale::row));
    rows
}

impl Scale {
    /// This scale as a row of the reference table.
    fn row(&self) -> String {
        let steps = self.steps;
        let ranges: Vec<(String, f64)> = steps
            .iter()
            .enumerate()
            .map(|(i, &(from, points))| {
                let range = match (i, steps.get(i + 1)) {
                    (0, Some(&(to, _))) => format!("< {}", fmt_value(to)),
                    (_, Some(&(to, _))) => format!("{} to < {}", fmt_value(from), fmt_value(to)),
                    (_, None) => format!(">= {}", fmt_value(from)),
                };
                (range, points)
            })
            .collect();
        table_row(self.domain, self.value, self.unit, &ranges)
    }
}

/// A row of the reference table: "| domain | value | unit | label: points; ... |".
fn table_row(domain: Domain, value: &str, unit: &str, points: &[(String, f64)]) -> String {
    let unit = if unit.is_empty() { "-" } else { unit };
    let points: Vec<String> = points
        .iter()
        .map(|(label, points)| format!("{label}: {}", fmt_value(*points)))
        .collect();
    format!(
        "| {} | {value} | {unit} | {} |",
        domain.as_str(),
        points.join("; ")
    )
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn mean(points: &[f64]) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    Some(points.iter().sum::<f64>() / points.len() as f64)
}

fn list(names: impl Iterator<Item = String>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

fn tubal_name(patency: TubalPatency) -> &'static str {
    match patency {
        TubalPatency::Patent => "patent",
        TubalPatency::UnilateralBlocked => "unilateral_blocked",
        TubalPatency::BilateralBlocked => "bilateral_blocked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(score: &FertilityScore, d: Domain) -> &DomainScore {
        score.domains.iter().find(|s| s.domain == d).unwrap()
    }

    // ---- The documentation table is generated from the code. ----

    #[test]
    fn doc_table_matches_code() {
        let source = include_str!("score.rs");
        let documented: Vec<String> = source
            .lines()
            .skip_while(|line| !line.starts_with("//! <!-- points table: begin"))
            .skip(1)
            .take_while(|line| !line.starts_with("//! <!-- points table: end"))
            .map(|line| line.trim_start_matches("//!").trim().to_owned())
            .collect();
        let generated = points_table();
        assert_eq!(
            documented,
            generated,
            "the points table in the module doc is stale; paste:\n{}",
            generated
                .iter()
                .map(|r| format!("//! {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // ---- Domains, bands and statuses. ----

    #[test]
    fn domain_weights_and_names() {
        let cases = [
            (Domain::Male, 0.25, "male"),
            (Domain::Female, 0.25, "female"),
            (Domain::Ovarian, 0.15, "ovarian"),
            (Domain::Tubal, 0.10, "tubal"),
            (Domain::Uterine, 0.10, "uterine"),
            (Domain::Hormonal, 0.10, "hormonal"),
            (Domain::Genetic, 0.03, "genetic"),
            (Domain::Lifestyle, 0.02, "lifestyle"),
        ];
        assert_eq!(
            Domain::ALL.to_vec(),
            cases.iter().map(|c| c.0).collect::<Vec<_>>()
        );
        for (domain, weight, name) in cases {
            assert_eq!(domain.weight(), weight);
            assert_eq!(domain.as_str(), name);
            assert_eq!(
                serde_json::to_string(&domain).unwrap(),
                format!("\"{name}\"")
            );
        }
        let total: f64 = Domain::ALL.iter().map(|d| d.weight()).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn band_boundaries() {
        let cases = [
            (100.0, Band::Excellent),
            (80.0, Band::Excellent),
            (79.9, Band::Good),
            (60.0, Band::Good),
            (59.9, Band::Moderate),
            (40.0, Band::Moderate),
            (39.9, Band::SignificantConcerns),
            (0.0, Band::SignificantConcerns),
        ];
        for (score, band) in cases {
            assert_eq!(Band::from_score(score), band, "score {score}");
        }
        let names = [
            (Band::Excellent, "Excellent"),
            (Band::Good, "Good"),
            (Band::Moderate, "Moderate"),
            (Band::SignificantConcerns, "Significant concerns"),
        ];
        for (band, name) in names {
            assert_eq!(band.as_str(), name);
            assert_eq!(serde_json::to_string(&band).unwrap(), format!("\"{name}\""));
        }
    }

    #[test]
    fn status_boundaries() {
        let cases = [
            (100.0, DomainStatus::Excellent),
            (80.0, DomainStatus::Excellent),
            (79.9, DomainStatus::Good),
            (60.0, DomainStatus::Good),
            (59.9, DomainStatus::Fair),
            (40.0, DomainStatus::Fair),
            (39.9, DomainStatus::Concern),
            (0.0, DomainStatus::Concern),
        ];
        for (score, status) in cases {
            assert_eq!(DomainStatus::from_score(score), status, "score {score}");
        }
    }

    #[test]
    fn band_is_decided_on_the_rounded_score() {
        // (raw weighted sum, reported score, band)
        let cases = [
            (79.96, 80.0, Band::Excellent),
            (79.94, 79.9, Band::Good),
            (59.96, 60.0, Band::Good),
            (39.96, 40.0, Band::Moderate),
            (39.94, 39.9, Band::SignificantConcerns),
        ];
        for (raw, rounded, band) in cases {
            assert_eq!(round1(raw), rounded, "raw {raw}");
            assert_eq!(Band::from_score(round1(raw)), band, "raw {raw}");
        }
    }

    // ---- Scales. ----

    #[test]
    fn scale_boundaries() {
        let cases: &[(&Scale, f64, f64)] = &[
            (&SPERM_CONCENTRATION, 200.0, 100.0),
            (&SPERM_CONCENTRATION, 15.0, 100.0),
            (&SPERM_CONCENTRATION, 14.99, 60.0),
            (&SPERM_CONCENTRATION, 5.0, 60.0),
            (&SPERM_CONCENTRATION, 4.99, 30.0),
            (&SPERM_CONCENTRATION, 1.0, 30.0),
            (&SPERM_CONCENTRATION, 0.99, 15.0),
            (&SPERM_CONCENTRATION, 0.01, 15.0),
            (&PROGRESSIVE_MOTILITY, 32.0, 100.0),
            (&PROGRESSIVE_MOTILITY, 31.99, 60.0),
            (&PROGRESSIVE_MOTILITY, 20.0, 60.0),
            (&PROGRESSIVE_MOTILITY, 19.99, 30.0),
            (&PROGRESSIVE_MOTILITY, 10.0, 30.0),
            (&PROGRESSIVE_MOTILITY, 9.99, 15.0),
            (&PROGRESSIVE_MOTILITY, 0.0, 15.0),
            (&NORMAL_MORPHOLOGY, 4.0, 100.0),
            (&NORMAL_MORPHOLOGY, 3.99, 60.0),
            (&NORMAL_MORPHOLOGY, 2.0, 60.0),
            (&NORMAL_MORPHOLOGY, 1.99, 30.0),
            (&NORMAL_MORPHOLOGY, 1.0, 30.0),
            (&NORMAL_MORPHOLOGY, 0.99, 15.0),
            (&ANTRAL_FOLLICLE_COUNT, 0.0, 20.0),
            (&ANTRAL_FOLLICLE_COUNT, 2.0, 20.0),
            (&ANTRAL_FOLLICLE_COUNT, 3.0, 40.0),
            (&ANTRAL_FOLLICLE_COUNT, 5.0, 40.0),
            (&ANTRAL_FOLLICLE_COUNT, 6.0, 100.0),
            (&ANTRAL_FOLLICLE_COUNT, 25.0, 100.0),
            (&ANTRAL_FOLLICLE_COUNT, 26.0, 60.0),
            (&AMH, 0.49, 10.0),
            (&AMH, 0.5, 40.0),
            (&AMH, 0.99, 40.0),
            (&AMH, 1.0, 70.0),
            (&AMH, 1.49, 70.0),
            (&AMH, 1.5, 100.0),
            (&AMH, 3.99, 100.0),
            (&AMH, 4.0, 70.0),
            (&ENDOMETRIAL_THICKNESS, 4.9, 20.0),
            (&ENDOMETRIAL_THICKNESS, 5.0, 50.0),
            (&ENDOMETRIAL_THICKNESS, 6.9, 50.0),
            (&ENDOMETRIAL_THICKNESS, 7.0, 100.0),
            (&ENDOMETRIAL_THICKNESS, 14.9, 100.0),
            (&ENDOMETRIAL_THICKNESS, 15.0, 70.0),
            (&FSH, 1.4, 60.0),
            (&FSH, 1.5, 100.0),
            (&FSH, 9.9, 100.0),
            (&FSH, 10.0, 60.0),
            (&FSH, 15.0, 30.0),
            (&FSH, 25.0, 10.0),
            (&LH, 1.9, 60.0),
            (&LH, 2.0, 100.0),
            (&LH, 12.0, 60.0),
            (&ESTRADIOL, 19.9, 70.0),
            (&ESTRADIOL, 20.0, 100.0),
            (&ESTRADIOL, 80.0, 60.0),
            (&PROGESTERONE, 2.9, 50.0),
            (&PROGESTERONE, 3.0, 70.0),
            (&PROGESTERONE, 10.0, 100.0),
            (&TSH, 0.39, 50.0),
            (&TSH, 0.4, 100.0),
            (&TSH, 2.49, 100.0),
            (&TSH, 2.5, 70.0),
            (&TSH, 4.5, 30.0),
            (&PROLACTIN, 24.9, 100.0),
            (&PROLACTIN, 25.0, 60.0),
            (&PROLACTIN, 50.0, 30.0),
            // Below the first step (impossible for validated values) earns the first points.
            (&PROLACTIN, -1.0, 100.0),
        ];
        for &(scale, value, points) in cases {
            assert_eq!(scale.points(value), points, "{} {value}", scale.value);
        }
    }

    // ---- Domain scores. ----

    #[test]
    fn no_evidence_scores_fifty_everywhere() {
        let score = fertility_score(&Evidence::default());
        assert_eq!(score.domains.len(), 8);
        for (d, expected) in score.domains.iter().zip(Domain::ALL) {
            assert_eq!(d.domain, expected);
            assert_eq!(d.weight, expected.weight());
            assert_eq!(d.score, 50.0);
            assert!(!d.has_data);
            assert_eq!(d.status, DomainStatus::Fair);
        }
        assert_eq!(score.score, 50.0);
        assert_eq!(score.band, Band::Moderate);
        assert!(score.critical_findings.is_empty());
        assert!(score.areas_for_improvement.is_empty());
        assert_eq!(
            score.recommendations,
            vec![
                "Complete the work-up: no data yet for the male, female, ovarian, tubal, \
                 uterine, hormonal domains"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn domain_scores_from_values() {
        // (evidence, domain, score, first basis line)
        let cases: Vec<(Evidence, Domain, f64, &str)> = vec![
            (
                Evidence {
                    sperm_concentration: Some(12.0),
                    ..Evidence::default()
                },
                Domain::Male,
                60.0,
                "sperm concentration 12 million/mL: 60",
            ),
            (
                Evidence {
                    sperm_concentration: Some(12.0),
                    progressive_motility: Some(40.0),
                    normal_morphology: Some(5.0),
                    ..Evidence::default()
                },
                Domain::Male,
                86.7,
                "sperm concentration 12 million/mL: 60",
            ),
            (
                Evidence {
                    sperm_concentration: Some(0.0),
                    progressive_motility: Some(40.0),
                    normal_morphology: Some(5.0),
                    ..Evidence::default()
                },
                Domain::Male,
                0.0,
                "sperm concentration 0 million/mL (azoospermia): male domain 0",
            ),
            (
                Evidence {
                    progressive_motility: Some(25.0),
                    ..Evidence::default()
                },
                Domain::Male,
                60.0,
                "progressive motility 25 %: 60",
            ),
            (
                Evidence {
                    oocyte_qualities: vec![OocyteQuality::Excellent, OocyteQuality::Immature],
                    embryo_qualities: vec![EmbryoQuality::Good],
                    ..Evidence::default()
                },
                Domain::Female,
                72.5,
                "oocyte qualities Excellent, Immature: mean 65",
            ),
            (
                Evidence {
                    embryo_qualities: vec![EmbryoQuality::Fair, EmbryoQuality::Poor],
                    ..Evidence::default()
                },
                Domain::Female,
                40.0,
                "embryo qualities Fair, Poor: mean 40",
            ),
            (
                Evidence {
                    antral_follicle_count: Some(12),
                    amh: Some(0.8),
                    ..Evidence::default()
                },
                Domain::Ovarian,
                70.0,
                "antral follicle count 12 follicles: 100",
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::Patent),
                    ..Evidence::default()
                },
                Domain::Tubal,
                100.0,
                "tubal patency patent: 100",
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::UnilateralBlocked),
                    ..Evidence::default()
                },
                Domain::Tubal,
                50.0,
                "tubal patency unilateral_blocked: 50",
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::BilateralBlocked),
                    ..Evidence::default()
                },
                Domain::Tubal,
                0.0,
                "tubal patency bilateral_blocked: 0",
            ),
            (
                Evidence {
                    uterine_findings: Some(vec![Finding::Normal]),
                    ..Evidence::default()
                },
                Domain::Uterine,
                100.0,
                "hysteroscopy findings normal: 100 (worst finding)",
            ),
            (
                Evidence {
                    uterine_findings: Some(vec![]),
                    ..Evidence::default()
                },
                Domain::Uterine,
                100.0,
                "hysteroscopy findings normal: 100 (worst finding)",
            ),
            (
                Evidence {
                    uterine_findings: Some(vec![Finding::Polyp, Finding::Adhesion]),
                    ..Evidence::default()
                },
                Domain::Uterine,
                30.0,
                "hysteroscopy findings polyp, adhesion: 30 (worst finding)",
            ),
            (
                Evidence {
                    uterine_findings: Some(vec![Finding::Polyp]),
                    endometrial_thickness: Some(8.0),
                    ..Evidence::default()
                },
                Domain::Uterine,
                85.0,
                "hysteroscopy findings polyp: 70 (worst finding)",
            ),
            (
                Evidence {
                    endometrial_thickness: Some(6.0),
                    ..Evidence::default()
                },
                Domain::Uterine,
                50.0,
                "endometrial thickness 6 mm: 50",
            ),
            (
                Evidence {
                    fsh: Some(7.0),
                    lh: Some(5.0),
                    estradiol: Some(40.0),
                    progesterone: Some(12.0),
                    tsh: Some(3.0),
                    prolactin: Some(60.0),
                    ..Evidence::default()
                },
                Domain::Hormonal,
                83.3,
                "FSH 7 IU/L: 100",
            ),
        ];
        for (evidence, d, expected, basis) in cases {
            let score = fertility_score(&evidence);
            let got = domain(&score, d);
            assert!(got.has_data, "{d:?} {evidence:?}");
            assert_eq!(got.score, expected, "{d:?} {evidence:?}");
            assert_eq!(got.status, DomainStatus::from_score(expected));
            assert_eq!(got.basis[0], basis, "{d:?}");
        }
    }

    #[test]
    fn genetic_and_lifestyle_never_have_data() {
        let evidence = complete_normal_evidence();
        let score = fertility_score(&evidence);
        for d in [Domain::Genetic, Domain::Lifestyle] {
            assert_eq!(domain(&score, d).score, 50.0);
            assert!(!domain(&score, d).has_data);
        }
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let evidence = Evidence {
            amh: Some(f64::NAN),
            fsh: Some(f64::INFINITY),
            ..Evidence::default()
        };
        let score = fertility_score(&evidence);
        assert!(!domain(&score, Domain::Ovarian).has_data);
        assert!(!domain(&score, Domain::Hormonal).has_data);
        assert!(score.critical_findings.is_empty());
    }

    fn complete_normal_evidence() -> Evidence {
        Evidence {
            sperm_concentration: Some(40.0),
            progressive_motility: Some(50.0),
            normal_morphology: Some(6.0),
            oocyte_qualities: vec![OocyteQuality::Excellent],
            embryo_qualities: vec![EmbryoQuality::Excellent],
            antral_follicle_count: Some(14),
            amh: Some(2.5),
            fsh: Some(6.0),
            lh: Some(5.0),
            estradiol: Some(40.0),
            progesterone: Some(12.0),
            tsh: Some(1.5),
            prolactin: Some(12.0),
            endometrial_thickness: Some(9.0),
            uterine_findings: Some(vec![Finding::Normal]),
            tubal_patency: Some(TubalPatency::Patent),
        }
    }

    // ---- The overall score. ----

    #[test]
    fn overall_score_is_the_weighted_sum() {
        // (evidence, score, band)
        let cases = [
            (Evidence::default(), 50.0, Band::Moderate),
            // Normal semen only: 0.25 * 100 + 0.75 * 50.
            (
                Evidence {
                    sperm_concentration: Some(20.0),
                    progressive_motility: Some(40.0),
                    normal_morphology: Some(5.0),
                    ..Evidence::default()
                },
                62.5,
                Band::Good,
            ),
            // Azoospermia only: 0.25 * 0 + 0.75 * 50.
            (
                Evidence {
                    sperm_concentration: Some(0.0),
                    ..Evidence::default()
                },
                37.5,
                Band::SignificantConcerns,
            ),
            // Everything normal: 0.95 * 100 + 0.05 * 50.
            (complete_normal_evidence(), 97.5, Band::Excellent),
            // Male 86.7 (rounded): 0.25 * 86.7 + 0.75 * 50 = 59.175 -> 59.2.
            (
                Evidence {
                    sperm_concentration: Some(12.0),
                    progressive_motility: Some(40.0),
                    normal_morphology: Some(5.0),
                    ..Evidence::default()
                },
                59.2,
                Band::Moderate,
            ),
        ];
        for (evidence, expected, band) in cases {
            let score = fertility_score(&evidence);
            assert_eq!(score.score, expected, "{evidence:?}");
            assert_eq!(score.band, band, "{evidence:?}");
        }
    }

    #[test]
    fn areas_for_improvement_are_domains_with_data_below_70() {
        // (evidence, areas)
        let cases = [
            (Evidence::default(), vec![]),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::UnilateralBlocked),
                    ..Evidence::default()
                },
                vec![Domain::Tubal],
            ),
            // Exactly 70 is not below 70.
            (
                Evidence {
                    uterine_findings: Some(vec![Finding::Polyp]),
                    ..Evidence::default()
                },
                vec![],
            ),
            (
                Evidence {
                    uterine_findings: Some(vec![Finding::Fibroid]),
                    ..Evidence::default()
                },
                vec![Domain::Uterine],
            ),
            (
                Evidence {
                    sperm_concentration: Some(3.0),
                    amh: Some(0.4),
                    fsh: Some(6.0),
                    ..Evidence::default()
                },
                vec![Domain::Male, Domain::Ovarian],
            ),
        ];
        for (evidence, areas) in cases {
            assert_eq!(
                fertility_score(&evidence).areas_for_improvement,
                areas,
                "{evidence:?}"
            );
        }
    }

    // ---- Critical findings and recommendations. ----

    #[test]
    fn critical_findings_boundaries() {
        // (evidence, critical findings)
        let cases = [
            (
                Evidence {
                    sperm_concentration: Some(0.0),
                    ..Evidence::default()
                },
                vec!["Azoospermia: no sperm in the ejaculate"],
            ),
            (
                Evidence {
                    sperm_concentration: Some(4.99),
                    ..Evidence::default()
                },
                vec!["Sperm concentration 4.99 million/mL, below 5 million/mL"],
            ),
            (
                Evidence {
                    sperm_concentration: Some(5.0),
                    ..Evidence::default()
                },
                vec![],
            ),
            (
                Evidence {
                    amh: Some(0.49),
                    ..Evidence::default()
                },
                vec!["AMH 0.49 ng/mL, below 0.5 ng/mL: severely diminished ovarian reserve"],
            ),
            (
                Evidence {
                    amh: Some(0.5),
                    ..Evidence::default()
                },
                vec![],
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::UnilateralBlocked),
                    ..Evidence::default()
                },
                vec!["Unilateral tubal blockage"],
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::BilateralBlocked),
                    ..Evidence::default()
                },
                vec!["Bilateral tubal blockage"],
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::Patent),
                    ..Evidence::default()
                },
                vec![],
            ),
            (
                Evidence {
                    sperm_concentration: Some(2.0),
                    amh: Some(0.3),
                    tubal_patency: Some(TubalPatency::BilateralBlocked),
                    ..Evidence::default()
                },
                vec![
                    "Sperm concentration 2 million/mL, below 5 million/mL",
                    "AMH 0.3 ng/mL, below 0.5 ng/mL: severely diminished ovarian reserve",
                    "Bilateral tubal blockage",
                ],
            ),
        ];
        for (evidence, expected) in cases {
            assert_eq!(
                fertility_score(&evidence).critical_findings,
                expected,
                "{evidence:?}"
            );
        }
    }

    fn has_recommendation(evidence: &Evidence, prefix: &str) -> bool {
        fertility_score(evidence)
            .recommendations
            .iter()
            .any(|r| r.starts_with(prefix))
    }

    #[test]
    fn recommendation_triggers() {
        let e = Evidence::default;
        // (evidence, recommendation prefix, expected present)
        let cases: Vec<(Evidence, &str, bool)> = vec![
            (
                Evidence {
                    amh: Some(0.49),
                    ..e()
                },
                "Expedite treatment",
                true,
            ),
            (
                Evidence {
                    amh: Some(0.5),
                    ..e()
                },
                "Expedite treatment",
                true,
            ),
            (
                Evidence {
                    amh: Some(0.99),
                    ..e()
                },
                "Expedite treatment",
                true,
            ),
            (
                Evidence {
                    amh: Some(1.0),
                    ..e()
                },
                "Expedite treatment",
                false,
            ),
            (
                Evidence {
                    antral_follicle_count: Some(5),
                    ..e()
                },
                "Low ovarian reserve (antral follicle count 5)",
                true,
            ),
            (
                Evidence {
                    antral_follicle_count: Some(6),
                    ..e()
                },
                "Low ovarian reserve",
                false,
            ),
            (
                Evidence {
                    antral_follicle_count: Some(26),
                    ..e()
                },
                "High ovarian reserve (possible PCOS)",
                true,
            ),
            (
                Evidence {
                    antral_follicle_count: Some(25),
                    ..e()
                },
                "High ovarian reserve (possible PCOS)",
                false,
            ),
            (
                Evidence {
                    amh: Some(4.0),
                    ..e()
                },
                "High ovarian reserve (possible PCOS)",
                true,
            ),
            (
                Evidence {
                    amh: Some(3.9),
                    ..e()
                },
                "High ovarian reserve (possible PCOS)",
                false,
            ),
            (
                Evidence {
                    sperm_concentration: Some(3.0),
                    progressive_motility: Some(20.0),
                    normal_morphology: Some(5.0),
                    ..e()
                },
                "Abnormal semen analysis (Moderate oligozoospermia + Asthenozoospermia)",
                true,
            ),
            (
                Evidence {
                    sperm_concentration: Some(3.0),
                    ..e()
                },
                "Sperm concentration below 5",
                true,
            ),
            (
                Evidence {
                    sperm_concentration: Some(5.0),
                    ..e()
                },
                "Sperm concentration below 5",
                false,
            ),
            (
                Evidence {
                    normal_morphology: Some(3.0),
                    ..e()
                },
                "Abnormal semen analysis (Teratozoospermia)",
                true,
            ),
            (
                Evidence {
                    sperm_concentration: Some(0.0),
                    ..e()
                },
                "Azoospermia: refer",
                true,
            ),
            (
                Evidence {
                    sperm_concentration: Some(0.0),
                    ..e()
                },
                "Abnormal semen analysis",
                false,
            ),
            (
                Evidence {
                    sperm_concentration: Some(15.0),
                    progressive_motility: Some(32.0),
                    ..e()
                },
                "Abnormal semen analysis",
                false,
            ),
            (
                Evidence {
                    uterine_findings: Some(vec![Finding::Polyp, Finding::Septum]),
                    ..e()
                },
                "Flagged uterine findings (polyp, septum)",
                true,
            ),
            (
                Evidence {
                    uterine_findings: Some(vec![Finding::Normal]),
                    ..e()
                },
                "Flagged uterine findings",
                false,
            ),
            (
                Evidence {
                    endometrial_thickness: Some(6.9),
                    ..e()
                },
                "Thin endometrium (6.9 mm)",
                true,
            ),
            (
                Evidence {
                    endometrial_thickness: Some(7.0),
                    ..e()
                },
                "Thin endometrium",
                false,
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::BilateralBlocked),
                    ..e()
                },
                "Bilateral tubal blockage: IVF is indicated",
                true,
            ),
            (
                Evidence {
                    tubal_patency: Some(TubalPatency::UnilateralBlocked),
                    ..e()
                },
                "Unilateral tubal blockage",
                true,
            ),
            (
                Evidence {
                    fsh: Some(10.0),
                    ..e()
                },
                "Raised FSH (10 IU/L)",
                true,
            ),
            (
                Evidence {
                    fsh: Some(9.9),
                    ..e()
                },
                "Raised FSH",
                false,
            ),
            (
                Evidence {
                    tsh: Some(2.5),
                    ..e()
                },
                "TSH 2.5 mIU/L outside 0.4-2.5",
                true,
            ),
            (
                Evidence {
                    tsh: Some(0.39),
                    ..e()
                },
                "TSH 0.39 mIU/L",
                true,
            ),
            (
                Evidence {
                    tsh: Some(2.4),
                    ..e()
                },
                "TSH",
                false,
            ),
            (
                Evidence {
                    prolactin: Some(25.0),
                    ..e()
                },
                "Raised prolactin (25 ng/mL)",
                true,
            ),
            (
                Evidence {
                    prolactin: Some(24.9),
                    ..e()
                },
                "Raised prolactin",
                false,
            ),
            (
                Evidence {
                    oocyte_qualities: vec![OocyteQuality::Immature],
                    ..e()
                },
                "All oocytes immature",
                true,
            ),
            (
                Evidence {
                    oocyte_qualities: vec![OocyteQuality::Immature, OocyteQuality::Fair],
                    ..e()
                },
                "All oocytes immature",
                false,
            ),
            (
                Evidence {
                    embryo_qualities: vec![EmbryoQuality::Fair, EmbryoQuality::Poor],
                    ..e()
                },
                "No embryo of transfer quality",
                true,
            ),
            (
                Evidence {
                    embryo_qualities: vec![EmbryoQuality::Poor, EmbryoQuality::Good],
                    ..e()
                },
                "No embryo of transfer quality",
                false,
            ),
        ];
        for (evidence, prefix, expected) in cases {
            assert_eq!(
                has_recommendation(&evidence, prefix),
                expected,
                "{prefix}: {evidence:?}"
            );
        }
    }

    #[test]
    fn complete_normal_evidence_needs_no_action() {
        let score = fertility_score(&complete_normal_evidence());
        assert_eq!(
            score.recommendations,
            vec!["No abnormality in the recorded values: continue the planned care".to_owned()]
        );
        assert!(score.critical_findings.is_empty());
        assert!(score.areas_for_improvement.is_empty());
    }

    #[test]
    fn missing_clinical_domains_are_named_once() {
        let evidence = Evidence {
            tubal_patency: Some(TubalPatency::Patent),
            ..complete_normal_evidence()
        };
        let evidence = Evidence {
            tubal_patency: None,
            ..evidence
        };
        let score = fertility_score(&evidence);
        assert_eq!(
            score.recommendations,
            vec!["Complete the work-up: no data yet for the tubal domain".to_owned()]
        );
    }

    #[test]
    fn fertility_score_json_shape() {
        let json = serde_json::to_value(fertility_score(&Evidence {
            sperm_concentration: Some(0.0),
            ..Evidence::default()
        }))
        .unwrap();
        assert_eq!(json["score"], 37.5);
        assert_eq!(json["band"], "Significant concerns");
        assert_eq!(json["domains"].as_array().unwrap().len(), 8);
        assert_eq!(json["domains"][0]["domain"], "male");
        assert_eq!(json["domains"][0]["status"], "Concern");
        assert_eq!(json["domains"][0]["has_data"], true);
        assert_eq!(json["areas_for_improvement"][0], "male");
    }
}
