//! The clinic's main path through the API, on SQLite and on PostgreSQL: a clinician registers
//! a patient, records one analysis of each kind and gets the DOMAIN.md classifications; the
//! fertility score and the summary reflect them. Plus the role rules.

mod common;

use axum::http::{Method, StatusCode};
use common::{Backend, TestApp};
use serde_json::{Value, json};

async fn record(app: &TestApp, patient: &str, kind: &str, body: Value) -> Value {
    let path = format!("/api/v1/patients/{patient}/analyses/{kind}");
    let answer = app
        .call(Method::POST, &path, Some(&app.clinician), Some(body))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{kind}: {}",
        answer.json
    );
    assert_eq!(answer.json["kind"], kind);
    answer.json["result"].clone()
}

async fn clinic_flow(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let patient = app
        .create_patient(
            json!({"name": "Flow Patient", "date_of_birth": "1988-02-29", "sex": "female"}),
        )
        .await;

    // A record number is generated when none is given: MR- and 8 characters.
    let got = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}"),
            Some(&app.clinician),
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    let mrn = got.json["mrn"].as_str().unwrap().to_owned();
    assert!(mrn.starts_with("MR-") && mrn.len() == 11, "{mrn}");
    let found = app
        .call(
            Method::GET,
            &format!("/api/v1/patients?mrn={mrn}"),
            Some(&app.lab),
            None,
        )
        .await;
    assert_eq!(found.json["items"][0]["id"], patient.as_str());

    let semen = record(
        &app,
        &patient,
        "semen",
        json!({"concentration": 3, "progressive_motility": 20, "normal_morphology": 5}),
    )
    .await;
    assert_eq!(
        semen["classification"],
        "Moderate oligozoospermia + Asthenozoospermia"
    );

    let oocyte = record(
        &app,
        &patient,
        "oocyte",
        json!({"maturity": "MII", "morphology_score": 3}),
    )
    .await;
    assert_eq!(
        (
            oocyte["quality"].as_str(),
            oocyte["suitable_for_icsi"].as_bool()
        ),
        (Some("Excellent"), Some(true))
    );

    let cleavage = record(&app, &patient, "embryo", json!({"day": 3, "cell_count": 8, "fragmentation": 5, "symmetric": true, "multinucleation": false})).await;
    assert_eq!(
        (cleavage["grade"].as_str(), cleavage["quality"].as_str()),
        (Some("A"), Some("Excellent"))
    );
    assert_eq!(cleavage["transfer_candidate"], true);

    let blastocyst = record(
        &app,
        &patient,
        "embryo",
        json!({"day": 5, "expansion": 4, "inner_cell_mass": "A", "trophectoderm": "B"}),
    )
    .await;
    assert_eq!(blastocyst["grade"], "4AB");
    assert_eq!(blastocyst["quality"], "Good");
    assert_eq!(
        (
            blastocyst["freeze_candidate"].as_bool(),
            blastocyst["viable"].as_bool()
        ),
        (Some(true), Some(true))
    );

    let follicle = record(
        &app,
        &patient,
        "follicle",
        json!({"ovary": "left", "antral_follicle_count": 5}),
    )
    .await;
    assert_eq!(
        (
            follicle["reserve"].as_str(),
            follicle["classification"].as_str()
        ),
        (Some("low"), Some("Low ovarian reserve"))
    );

    let hysteroscopy = record(
        &app,
        &patient,
        "hysteroscopy",
        json!({"findings": ["polyp"], "endometrial_thickness_mm": 8.5}),
    )
    .await;
    assert_eq!(hysteroscopy["flagged"], true);
    assert_eq!(hysteroscopy["findings"], json!(["polyp"]));

    let listed = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}/analyses"),
            Some(&app.lab),
            None,
        )
        .await;
    assert_eq!(listed.json.as_array().unwrap().len(), 6);

    // The score reflects the clinical values: sperm concentration 3 is a critical finding, the
    // male domain is below 70, the ovarian domain is low, and genetic/lifestyle have no data.
    let score = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}/fertility-score"),
            Some(&app.clinician),
            None,
        )
        .await;
    assert_eq!(score.status, StatusCode::OK, "{}", score.json);
    assert_eq!(score.json["patient_id"], patient.as_str());
    let domains = score.json["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 8);
    let domain = |name: &str| {
        domains
            .iter()
            .find(|d| d["domain"] == name)
            .unwrap()
            .clone()
    };
    assert!(domain("male")["score"].as_f64().unwrap() < 70.0);
    assert_eq!(domain("male")["has_data"], true);
    assert_eq!(domain("genetic")["has_data"], false);
    assert_eq!(domain("genetic")["score"], 50.0);
    assert!(domain("ovarian")["score"].as_f64().unwrap() < 70.0);
    let critical = score.json["critical_findings"].to_string().to_lowercase();
    assert!(critical.contains("sperm concentration"), "{critical}");
    let weighted: f64 = domains
        .iter()
        .map(|d| d["weight"].as_f64().unwrap() * d["score"].as_f64().unwrap())
        .sum();
    let overall = score.json["score"].as_f64().unwrap();
    assert!(
        (overall - weighted).abs() < 0.06,
        "overall {overall} is the weighted sum {weighted}"
    );
    let band = score.json["band"].as_str().unwrap();
    let expected_band = match overall {
        s if s >= 80.0 => "Excellent",
        s if s >= 60.0 => "Good",
        s if s >= 40.0 => "Moderate",
        _ => "Significant concerns",
    };
    assert_eq!(band, expected_band);

    // The summary lists the patient with the same latest score.
    let summaries = app
        .call(
            Method::GET,
            "/api/v1/summaries?limit=10",
            Some(&app.clinician),
            None,
        )
        .await;
    assert_eq!(summaries.status, StatusCode::OK);
    let row = &summaries.json["items"][0];
    assert_eq!(row["patient_id"], patient.as_str());
    assert_eq!(row["completed_analyses"], 6);
    assert_eq!(row["document_count"], 0);
    assert_eq!(row["latest_score"].as_f64(), Some(overall));
    assert_eq!(row["latest_band"], band);

    // Update, then delete (admin only).
    let patched = app
        .call(
            Method::PATCH,
            &format!("/api/v1/patients/{patient}"),
            Some(&app.clinician),
            Some(json!({"phone": "+44 20 7946 0000"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert_eq!(patched.json["phone"], "+44 20 7946 0000");
    let denied = app
        .call(
            Method::DELETE,
            &format!("/api/v1/patients/{patient}"),
            Some(&app.clinician),
            None,
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/patients/{patient}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let summaries = app
        .call(Method::GET, "/api/v1/summaries", Some(&app.clinician), None)
        .await;
    assert_eq!(summaries.json["items"], json!([]));
    app.store.cleanup().await;
}

#[tokio::test]
async fn clinic_flow_on_sqlite() {
    clinic_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn clinic_flow_on_postgres() {
    clinic_flow(Backend::Postgres).await;
}

#[tokio::test]
async fn pages_follow_the_cursor() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            app.create_patient(
                json!({"name": format!("P{i}"), "date_of_birth": "1990-01-01", "sex": "male"}),
            )
            .await,
        );
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/patients?limit=2".to_owned();
    loop {
        let page = app.call(Method::GET, &path, Some(&app.lab), None).await;
        assert_eq!(page.status, StatusCode::OK);
        seen.extend(
            page.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        match page.json["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/patients?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created);
}

#[tokio::test]
async fn health_and_security_headers() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let live = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (live.status, live.json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    assert_eq!(ready.json["database"], "ok");
    assert_eq!(ready.json["storage"], "ok");
    let headers = &ready.headers;
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        ),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }
    assert!(
        headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn readyz_reports_a_dead_database() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    app.store.store.close().await;
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["status"], "unavailable");
    assert_eq!(ready.json["database"], "error");
    // A request that needs the database fails with 503 and says nothing internal.
    let answer = app
        .call(Method::GET, "/api/v1/summaries", Some(&app.clinician), None)
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.json
    );
    assert_eq!(answer.json["error"]["code"], "unavailable");
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let request = axum::http::Request::get("/api/v1/openapi.json")
        .header("accept-encoding", "gzip")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = app.send(request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers.get("content-encoding").unwrap(), "gzip");
}
