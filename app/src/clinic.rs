//! How stored records become the evidence the fertility score is computed from.
//!
//! | record | evidence | domain |
//! | --- | --- | --- |
//! | latest semen analysis | sperm concentration, progressive motility, normal morphology | male |
//! | every oocyte analysis | its quality | female |
//! | every embryo analysis | its quality | female |
//! | latest follicle scan | antral follicle count | ovarian |
//! | latest hysteroscopy | findings, endometrial thickness, tubal patency | uterine, tubal |
//! | completed document analyses | the lab values found (AMH, FSH, ..., see `analysis`) | by value |
//!
//! Document values are applied first, oldest first, and the recorded lab analyses after them:
//! a measurement entered by the lab is more direct than a value read from a report.
//!
//! The scoring of each value is documented in [`crate::domain::score`].

use serde::de::DeserializeOwned;

use crate::analysis::{DocumentAnalysis, apply_to_evidence};
use crate::domain::{
    AnalysisKind, EmbryoResult, Evidence, FollicleInput, HysteroscopyInput, OocyteResult,
    SemenInput,
};
use crate::store::Analysis;

/// Builds the evidence from a patient's analyses and the analyses of their completed documents
/// (JSON of [`DocumentAnalysis`]), both given oldest first.
pub fn evidence(analyses: &[Analysis], documents: &[serde_json::Value]) -> Evidence {
    let mut evidence = Evidence::default();
    for document in documents {
        match serde_json::from_value::<DocumentAnalysis>(document.clone()) {
            Ok(found) => apply_to_evidence(&found.values, &mut evidence),
            Err(error) => tracing::warn!(%error, "stored document analysis does not decode"),
        }
    }
    for analysis in analyses {
        let Ok(kind) = analysis.kind.parse::<AnalysisKind>() else {
            tracing::warn!(analysis_id = %analysis.id, "stored analysis has an unknown kind");
            continue;
        };
        match kind {
            AnalysisKind::Semen => {
                if let Some(input) = decode::<SemenInput>(analysis, &analysis.input.0) {
                    evidence.sperm_concentration = Some(input.concentration);
                    evidence.progressive_motility = Some(input.progressive_motility);
                    evidence.normal_morphology = Some(input.normal_morphology);
                }
            }
            AnalysisKind::Oocyte => {
                if let Some(result) = decode::<OocyteResult>(analysis, &analysis.result.0) {
                    evidence.oocyte_qualities.push(result.quality);
                }
            }
            AnalysisKind::Embryo => {
                if let Some(result) = decode::<EmbryoResult>(analysis, &analysis.result.0) {
                    evidence.embryo_qualities.push(result.quality);
                }
            }
            AnalysisKind::Follicle => {
                if let Some(input) = decode::<FollicleInput>(analysis, &analysis.input.0) {
                    evidence.antral_follicle_count = Some(input.antral_follicle_count);
                }
            }
            AnalysisKind::Hysteroscopy => {
                if let Some(input) = decode::<HysteroscopyInput>(analysis, &analysis.input.0) {
                    evidence.endometrial_thickness = Some(input.endometrial_thickness_mm);
                    evidence.uterine_findings = Some(input.findings);
                    evidence.tubal_patency = input.tubal_patency.or(evidence.tubal_patency);
                }
            }
        }
    }
    evidence
}

fn decode<T: DeserializeOwned>(analysis: &Analysis, value: &serde_json::Value) -> Option<T> {
    match serde_json::from_value(value.clone()) {
        Ok(v) => Some(v),
        Err(error) => {
            tracing::warn!(analysis_id = %analysis.id, %error, "stored analysis does not decode");
            None
        }
    }
}
