//! The OpenAPI document is generated from the route declarations; the committed copy at
//! `app/openapi.json` must match it. Regenerate with `UPDATE_GOLDEN=1 cargo test --test openapi`.

use std::path::Path;

#[test]
fn committed_openapi_document_is_current() {
    let generated = serde_json::to_string_pretty(&fertivision::api::openapi()).unwrap() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "app/openapi.json is out of date: run UPDATE_GOLDEN=1 cargo test -p fertivision --test openapi"
    );
}

#[test]
fn every_route_is_documented() {
    let doc = fertivision::api::openapi();
    let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
    for expected in [
        "/api/v1/patients",
        "/api/v1/patients/{id}",
        "/api/v1/patients/{id}/analyses/{kind}",
        "/api/v1/patients/{id}/analyses",
        "/api/v1/patients/{id}/documents",
        "/api/v1/documents/{id}",
        "/api/v1/documents/{id}/content",
        "/api/v1/patients/{id}/fertility-score",
        "/api/v1/summaries",
        "/api/v1/alerts",
        "/api/v1/alerts/webhook",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    let schemas = &doc.components.as_ref().unwrap().schemas;
    for schema in [
        "Patient",
        "Analysis",
        "Document",
        "PatientSummary",
        "ErrorBody",
        "FertilityScore",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
}
