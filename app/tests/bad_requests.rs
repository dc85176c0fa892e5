mod common;

// A table of bad requests: each must be answered with a 4xx (never a 5xx), the JSON error
// shape `{"error": {"code", "message", "field"?}}` naming the problem, and the security
// headers; and none may leave anything half-written behind (a row or a stored object).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Answer, Backend, TestApp, multipart, sample_pdf, sample_png};
use serde_json::{Value, json};

/// The record number of the patient the cases run against (and the duplicate case reuses).
const MRN: &str = "MR-BADREQ01";

/// Who sends the request.
#[derive(Debug, Clone, Copy)]
enum Token {
    /// No Authorization header.
    Missing,
    Clinician,
    Lab,
    Admin,
    /// This exact Authorization header value.
    Header(&'static str),
}

/// What the request carries.
#[derive(Debug, Clone)]
enum Payload {
    Empty,
    /// A JSON value sent as `application/json`.
    Json(Value),
    /// Raw bytes with this Content-Type (none when `None`).
    Raw(Option<String>, Vec<u8>),
}

/// A part of a hand-built multipart form: name, filename and content type for a file, bytes.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// One bad request and the answer it must get.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    method: Method,
    /// `{patient}` becomes the id of an existing patient, `{missing}` a random unknown id.
    path: &'static str,
    token: Token,
    payload: Payload,
    status: u16,
    code: &'static str,
    /// A substring of the error message.
    message: &'static str,
    /// The exact `field` of the error; `None` means the error must name no field.
    field: Option<&'static str>,
}

impl Case {
    fn new(name: &'static str, method: Method, path: &'static str) -> Self {
        Self {
            name,
            method,
            path,
            token: Token::Clinician,
            payload: Payload::Empty,
            status: 0,
            code: "",
            message: "",
            field: None,
        }
    }

    fn token(mut self, token: Token) -> Self {
        self.token = token;
        self
    }

    fn json(mut self, value: Value) -> Self {
        self.payload = Payload::Json(value);
        self
    }

    fn raw(mut self, content_type: Option<&str>, bytes: impl Into<Vec<u8>>) -> Self {
        self.payload = Payload::Raw(content_type.map(str::to_owned), bytes.into());
        self
    }

    /// A multipart upload built by [`common::multipart`].
    fn form(mut self, document_type: Option<&str>, file: Option<(&str, &str, &[u8])>) -> Self {
        let (content_type, body) = multipart(document_type, file);
        self.payload = Payload::Raw(Some(content_type), body);
        self
    }

    /// A multipart upload of the given parts in this order. `closed: false` leaves out the
    /// closing boundary.
    fn parts(mut self, parts: &[Part<'_>], closed: bool) -> Self {
        let boundary = "bad-requests-boundary-51c3";
        let mut body = Vec::new();
        for (name, file, bytes) in parts {
            let disposition = match file {
                Some((filename, content_type)) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\""),
            };
            body.extend_from_slice(format!("--{boundary}\r\n{disposition}\r\n\r\n").as_bytes());
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        if closed {
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
        self.payload = Payload::Raw(
            Some(format!("multipart/form-data; boundary={boundary}")),
            body,
        );
        self
    }

    fn expect(
        mut self,
        status: u16,
        code: &'static str,
        message: &'static str,
        field: Option<&'static str>,
    ) -> Self {
        self.status = status;
        self.code = code;
        self.message = message;
        self.field = field;
        self
    }
}

/// A valid new patient; the cases spoil one thing at a time.
fn patient(overrides: Value) -> Value {
    let mut body = json!({
        "name": "Jane Roe",
        "date_of_birth": "1990-05-17",
        "sex": "female",
    });
    for (key, value) in overrides.as_object().expect("an object") {
        body[key] = value.clone();
    }
    body
}

/// A valid semen analysis.
fn semen() -> Value {
    json!({"concentration": 20.0, "progressive_motility": 40.0, "normal_morphology": 5.0})
}

fn cases() -> Vec<Case> {
    use Method as M;
    const PATIENTS: &str = "/api/v1/patients";
    const PATIENT: &str = "/api/v1/patients/{patient}";
    const SEMEN: &str = "/api/v1/patients/{patient}/analyses/semen";
    const OOCYTE: &str = "/api/v1/patients/{patient}/analyses/oocyte";
    const EMBRYO: &str = "/api/v1/patients/{patient}/analyses/embryo";
    const FOLLICLE: &str = "/api/v1/patients/{patient}/analyses/follicle";
    const HYSTEROSCOPY: &str = "/api/v1/patients/{patient}/analyses/hysteroscopy";
    const UPLOAD: &str = "/api/v1/patients/{patient}/documents";
    let pdf = sample_pdf();
    let png = sample_png();
    // Over the sniffing prefix, so that the upload to object storage has started when the
    // failure comes.
    let long_text = "FSH 7.2 IU/L\n".repeat(400).into_bytes();
    let too_large = vec![b'a'; 10 * 1024 * 1024 + 1];

    vec![
        // --- bodies that are not JSON, or not the JSON expected
        Case::new("malformed JSON", M::POST, PATIENTS)
            .raw(Some("application/json"), r#"{"name": "Jane Roe", "#)
            .expect(400, "malformed_json", "not valid JSON", None),
        Case::new("trailing garbage after JSON", M::POST, PATIENTS)
            .raw(Some("application/json"), patient(json!({})).to_string() + " x")
            .expect(400, "malformed_json", "not valid JSON", None),
        Case::new("trailing garbage after analysis JSON", M::POST, SEMEN)
            .raw(Some("application/json"), semen().to_string() + "}")
            .expect(400, "malformed_json", "not valid JSON", None),
        Case::new("empty JSON body", M::POST, PATIENTS)
            .raw(Some("application/json"), "")
            .expect(400, "malformed_json", "not valid JSON", None),
        Case::new("wrong content type", M::POST, PATIENTS)
            .raw(Some("text/plain"), patient(json!({})).to_string())
            .expect(415, "unsupported_media_type", "application/json", None),
        Case::new("no content type", M::POST, SEMEN)
            .raw(None, semen().to_string())
            .expect(415, "unsupported_media_type", "application/json", None),
        Case::new("JSON body over the limit", M::POST, PATIENTS)
            .json(patient(json!({"name": "x".repeat(300 * 1024)})))
            .expect(413, "body_too_large", "larger than the limit", None),
        Case::new("JSON array instead of object", M::POST, SEMEN)
            .json(json!([20.0, 40.0, 5.0]))
            .expect(422, "invalid_field", "must be a JSON object", None),
        Case::new("JSON array for a patient", M::POST, PATIENTS)
            .json(json!(["Jane Roe", "1990-05-17", "female", null, null, null]))
            .expect(422, "invalid_field", "must be a JSON object", None),
        // --- analyses
        Case::new("string for concentration", M::POST, SEMEN)
            .json(json!({"concentration": "high", "progressive_motility": 40, "normal_morphology": 5}))
            .expect(422, "invalid_field", "invalid type: string", Some("concentration")),
        Case::new("progressive_motility 140", M::POST, SEMEN)
            .json(json!({"concentration": 20, "progressive_motility": 140, "normal_morphology": 5}))
            .expect(422, "invalid_field", "progressive_motility must be between 0 and 100", Some("progressive_motility")),
        Case::new("negative concentration", M::POST, SEMEN)
            .json(json!({"concentration": -1, "progressive_motility": 40, "normal_morphology": 5}))
            .expect(422, "invalid_field", "concentration must be between 0 and 1000", Some("concentration")),
        Case::new("total motility below progressive", M::POST, SEMEN)
            .json(json!({"concentration": 20, "progressive_motility": 40, "normal_morphology": 5, "total_motility": 30}))
            .expect(422, "invalid_field", "at least progressive_motility", Some("total_motility")),
        Case::new("missing required field", M::POST, SEMEN)
            .json(json!({"concentration": 20, "progressive_motility": 40}))
            .expect(422, "invalid_field", "missing field `normal_morphology`", Some("normal_morphology")),
        Case::new("unknown analysis field", M::POST, SEMEN)
            .json(json!({"concentration": 20, "progressive_motility": 40, "normal_morphology": 5, "colour": "grey"}))
            .expect(422, "invalid_field", "unknown field `colour`", Some("colour")),
        Case::new("embryo day 9", M::POST, EMBRYO)
            .json(json!({"day": 9, "expansion": 4, "inner_cell_mass": "A", "trophectoderm": "A"}))
            .expect(422, "invalid_field", "day must be 1-3 (cleavage stage) or 5-6 (blastocyst), got 9", Some("day")),
        Case::new("embryo day 4", M::POST, EMBRYO)
            .json(json!({"day": 4, "cell_count": 12, "fragmentation": 5, "symmetric": true, "multinucleation": false}))
            .expect(422, "invalid_field", "got 4", Some("day")),
        Case::new("embryo day 300", M::POST, EMBRYO)
            .json(json!({"day": 300, "cell_count": 8, "fragmentation": 5, "symmetric": true, "multinucleation": false}))
            .expect(422, "invalid_field", "`300`", Some("day")),
        Case::new("cleavage embryo missing cell_count", M::POST, EMBRYO)
            .json(json!({"day": 3, "fragmentation": 5, "symmetric": true, "multinucleation": false}))
            .expect(422, "invalid_field", "cell_count", Some("cell_count")),
        Case::new("cleavage embryo with a blastocyst field", M::POST, EMBRYO)
            .json(json!({"day": 3, "cell_count": 8, "fragmentation": 5, "symmetric": true, "multinucleation": false, "expansion": 3}))
            .expect(422, "invalid_field", "expansion must be absent", Some("expansion")),
        Case::new("blastocyst with bad inner_cell_mass letter", M::POST, EMBRYO)
            .json(json!({"day": 5, "expansion": 4, "inner_cell_mass": "D", "trophectoderm": "A"}))
            .expect(422, "invalid_field", "unknown variant `D`", Some("inner_cell_mass")),
        Case::new("blastocyst expansion 7", M::POST, EMBRYO)
            .json(json!({"day": 5, "expansion": 7, "inner_cell_mass": "A", "trophectoderm": "A"}))
            .expect(422, "invalid_field", "expansion must be between 1 and 6", Some("expansion")),
        Case::new("oocyte MII without morphology_score", M::POST, OOCYTE)
            .json(json!({"maturity": "MII"}))
            .expect(422, "invalid_field", "morphology_score is required", Some("morphology_score")),
        Case::new("oocyte morphology_score 5", M::POST, OOCYTE)
            .json(json!({"maturity": "MII", "morphology_score": 5}))
            .expect(422, "invalid_field", "between 1 and 4, got 5", Some("morphology_score")),
        Case::new("oocyte unknown maturity", M::POST, OOCYTE)
            .json(json!({"maturity": "MIII", "morphology_score": 3}))
            .expect(422, "invalid_field", "unknown variant `MIII`", Some("maturity")),
        Case::new("negative antral_follicle_count", M::POST, FOLLICLE)
            .json(json!({"ovary": "left", "antral_follicle_count": -3}))
            .expect(422, "invalid_field", "-3", Some("antral_follicle_count")),
        Case::new("follicle size out of range", M::POST, FOLLICLE)
            .json(json!({"ovary": "right", "antral_follicle_count": 10, "follicle_sizes_mm": [8, 12, 75]}))
            .expect(422, "invalid_field", "follicle_sizes_mm[2] must be between 0 and 60", Some("follicle_sizes_mm")),
        Case::new("follicle size of the wrong type", M::POST, FOLLICLE)
            .json(json!({"ovary": "right", "antral_follicle_count": 10, "follicle_sizes_mm": [8, "big"]}))
            .expect(422, "invalid_field", "invalid type: string", Some("follicle_sizes_mm[1]")),
        Case::new("hysteroscopy with empty findings", M::POST, HYSTEROSCOPY)
            .json(json!({"findings": [], "endometrial_thickness_mm": 8}))
            .expect(422, "invalid_field", "at least one finding", Some("findings")),
        Case::new("hysteroscopy normal together with polyp", M::POST, HYSTEROSCOPY)
            .json(json!({"findings": ["normal", "polyp"], "endometrial_thickness_mm": 8}))
            .expect(422, "invalid_field", "cannot combine \"normal\"", Some("findings")),
        Case::new("hysteroscopy unknown finding", M::POST, HYSTEROSCOPY)
            .json(json!({"findings": ["polyp", "tumour"], "endometrial_thickness_mm": 8}))
            .expect(422, "invalid_field", "unknown variant `tumour`", Some("findings[1]")),
        Case::new("unknown analysis kind", M::POST, "/api/v1/patients/{patient}/analyses/sperm")
            .json(semen())
            .expect(404, "unknown_analysis_kind", "unknown analysis kind 'sperm'", None),
        Case::new("analysis for an unknown patient", M::POST, "/api/v1/patients/{missing}/analyses/semen")
            .json(semen())
            .expect(404, "not_found", "patient not found", None),
        Case::new("malformed uuid in analysis path", M::POST, "/api/v1/patients/not-a-uuid/analyses/semen")
            .json(semen())
            .expect(400, "invalid_path", "`id` with value `not-a-uuid`: UUID parsing failed", None),
        // --- patients
        Case::new("unknown patient id", M::GET, "/api/v1/patients/{missing}")
            .expect(404, "not_found", "patient not found", None),
        Case::new("malformed uuid in path", M::GET, "/api/v1/patients/12345")
            .expect(400, "invalid_path", "`id` with value `12345`: UUID parsing failed", None),
        Case::new("patient name empty", M::POST, PATIENTS)
            .json(patient(json!({"name": "   "})))
            .expect(422, "invalid_field", "name must be 1 to 200 characters", Some("name")),
        Case::new("patient name of the wrong type", M::POST, PATIENTS)
            .json(patient(json!({"name": 42})))
            .expect(422, "invalid_field", "invalid type: integer `42`", Some("name")),
        Case::new("date_of_birth in the future", M::POST, PATIENTS)
            .json(patient(json!({"date_of_birth": "2999-01-01"})))
            .expect(422, "invalid_field", "between 1900-01-01 and today", Some("date_of_birth")),
        Case::new("date_of_birth 17/05/1990", M::POST, PATIENTS)
            .json(patient(json!({"date_of_birth": "17/05/1990"})))
            .expect(422, "invalid_field", "YYYY-MM-DD", Some("date_of_birth")),
        Case::new("date_of_birth 1990-02-30", M::POST, PATIENTS)
            .json(patient(json!({"date_of_birth": "1990-02-30"})))
            .expect(422, "invalid_field", "YYYY-MM-DD", Some("date_of_birth")),
        Case::new("bad email", M::POST, PATIENTS)
            .json(patient(json!({"email": "jane.example.org"})))
            .expect(422, "invalid_field", "email must be an address", Some("email")),
        Case::new("bad phone", M::POST, PATIENTS)
            .json(patient(json!({"phone": "call me"})))
            .expect(422, "invalid_field", "phone must have 5 to 20 digits", Some("phone")),
        Case::new("bad sex value", M::POST, PATIENTS)
            .json(patient(json!({"sex": "f"})))
            .expect(422, "invalid_field", "unknown variant `f`", Some("sex")),
        Case::new("bad mrn", M::POST, PATIENTS)
            .json(patient(json!({"mrn": "MR 1"})))
            .expect(422, "invalid_field", "mrn must be 3 to 32", Some("mrn")),
        Case::new("missing required patient field", M::POST, PATIENTS)
            .json(json!({"name": "Jane Roe", "sex": "female"}))
            .expect(422, "invalid_field", "missing field `date_of_birth`", Some("date_of_birth")),
        Case::new("unknown patient field", M::POST, PATIENTS)
            .json(patient(json!({"nickname": "JR"})))
            .expect(422, "invalid_field", "unknown field `nickname`", Some("nickname")),
        Case::new("duplicate mrn", M::POST, PATIENTS)
            .json(patient(json!({"mrn": MRN})))
            .expect(409, "conflict", "medical record number already exists", None),
        Case::new("PATCH with no fields", M::PATCH, PATIENT)
            .json(json!({}))
            .expect(422, "invalid_field", "names no field to change", None),
        Case::new("PATCH with a bad date", M::PATCH, PATIENT)
            .json(json!({"date_of_birth": "yesterday"}))
            .expect(422, "invalid_field", "YYYY-MM-DD", Some("date_of_birth")),
        Case::new("PATCH of an unknown patient", M::PATCH, "/api/v1/patients/{missing}")
            .json(json!({"name": "Jane Doe"}))
            .expect(404, "not_found", "patient not found", None),
        Case::new("limit=0", M::GET, "/api/v1/patients?limit=0")
            .expect(422, "invalid_field", "limit must be between 1 and 200, got 0", Some("limit")),
        Case::new("limit=201", M::GET, "/api/v1/patients?limit=201")
            .expect(422, "invalid_field", "got 201", Some("limit")),
        Case::new("limit=abc", M::GET, "/api/v1/patients?limit=abc")
            .expect(400, "invalid_query", "limit: invalid digit", None),
        Case::new("unknown query parameter", M::GET, "/api/v1/patients?sort=name")
            .expect(400, "invalid_query", "unknown field `sort`", None),
        Case::new("malformed cursor", M::GET, "/api/v1/patients?cursor=abc")
            .expect(400, "invalid_query", "cursor: UUID parsing failed", None),
        Case::new("limit=0 on documents", M::GET, "/api/v1/patients/{patient}/documents?limit=0")
            .expect(422, "invalid_field", "limit must be between 1 and 200", Some("limit")),
        // --- uploads
        Case::new("unknown document_type", M::POST, UPLOAD)
            .form(Some("xray"), Some(("r.pdf", "application/pdf", &pdf)))
            .expect(422, "invalid_field", "unknown document type 'xray'", Some("document_type")),
        Case::new("unknown document_type after the file", M::POST, UPLOAD)
            .parts(&[("file", Some(("r.txt", "text/plain")), &long_text), ("document_type", None, b"xray")], true)
            .expect(422, "invalid_field", "unknown document type 'xray'", Some("document_type")),
        Case::new("upload without file field", M::POST, UPLOAD)
            .form(Some("lab_report"), None)
            .expect(422, "invalid_field", "the file field is missing", Some("file")),
        Case::new("upload without document_type", M::POST, UPLOAD)
            .form(None, Some(("r.pdf", "application/pdf", &pdf)))
            .expect(422, "invalid_field", "the document_type field is missing", Some("document_type")),
        Case::new("upload with two files", M::POST, UPLOAD)
            .parts(&[
                ("document_type", None, b"lab_report"),
                ("file", Some(("a.txt", "text/plain")), &long_text),
                ("file", Some(("b.txt", "text/plain")), b"LH 5 IU/L"),
            ], true)
            .expect(422, "invalid_field", "exactly one file", Some("file")),
        Case::new("upload with an unknown form field", M::POST, UPLOAD)
            .parts(&[
                ("document_type", None, b"lab_report"),
                ("file", Some(("a.txt", "text/plain")), &long_text),
                ("comment", None, b"urgent"),
            ], true)
            .expect(422, "invalid_field", "unknown form field 'comment'", Some("comment")),
        Case::new("upload cut short", M::POST, UPLOAD)
            .parts(&[("document_type", None, b"lab_report"), ("file", Some(("a.txt", "text/plain")), &long_text)], false)
            .expect(400, "malformed_multipart", "incomplete data", None),
        Case::new("upload not multipart", M::POST, UPLOAD)
            .json(json!({"document_type": "lab_report", "file": "AMH 0.8"}))
            .expect(415, "not_multipart", "multipart/form-data", None),
        Case::new("empty file", M::POST, UPLOAD)
            .form(Some("lab_report"), Some(("empty.pdf", "application/pdf", b"")))
            .expect(422, "invalid_field", "the file is empty", Some("file")),
        Case::new("PNG declared as PDF", M::POST, UPLOAD)
            .form(Some("ultrasound_image"), Some(("scan.pdf", "application/pdf", &png)))
            .expect(415, "content_type_mismatch", "declared as application/pdf but its content is image/png", Some("file")),
        Case::new("unsupported file type", M::POST, UPLOAD)
            .form(Some("lab_report"), Some(("r.zip", "application/octet-stream", b"PK\x03\x04\0\0\0\0")))
            .expect(415, "unsupported_file_type", "not a PDF, PNG, JPEG or plain text", Some("file")),
        Case::new("file over 10 MB", M::POST, UPLOAD)
            .form(Some("lab_report"), Some(("big.txt", "text/plain", &too_large)))
            .expect(413, "file_too_large", "larger than the limit", Some("file")),
        Case::new("upload for an unknown patient", M::POST, "/api/v1/patients/{missing}/documents")
            .form(Some("lab_report"), Some(("r.pdf", "application/pdf", &pdf)))
            .expect(404, "not_found", "patient not found", None),
        // --- authentication and authorization
        Case::new("missing token", M::GET, PATIENTS)
            .token(Token::Missing)
            .expect(401, "unauthorized", "missing Authorization", None),
        Case::new("bad token", M::GET, PATIENTS)
            .token(Token::Header("Bearer fv_0000000000000000000000000000000000000000000000000000000000000000"))
            .expect(401, "unauthorized", "unknown token", None),
        Case::new("not a bearer token", M::GET, PATIENTS)
            .token(Token::Header("Basic amFuZTpzZWNyZXQ="))
            .expect(401, "unauthorized", "Bearer <token>", None),
        Case::new("missing token on an upload", M::POST, UPLOAD)
            .token(Token::Missing)
            .form(Some("lab_report"), Some(("r.pdf", "application/pdf", &pdf)))
            .expect(401, "unauthorized", "missing Authorization", None),
        Case::new("lab token creating a patient", M::POST, PATIENTS)
            .token(Token::Lab)
            .json(patient(json!({})))
            .expect(403, "forbidden", "lab role may not", None),
        Case::new("lab token updating a patient", M::PATCH, PATIENT)
            .token(Token::Lab)
            .json(json!({"name": "Jane Doe"}))
            .expect(403, "forbidden", "lab role may not", None),
        Case::new("clinician deleting a patient", M::DELETE, PATIENT)
            .expect(403, "forbidden", "clinician role may not", None),
        Case::new("admin deleting with a malformed id", M::DELETE, "/api/v1/patients/xyz")
            .token(Token::Admin)
            .expect(400, "invalid_path", "`id` with value `xyz`: UUID parsing failed", None),
        // --- routing
        Case::new("unknown route", M::GET, "/api/v1/nothing-here")
            .expect(404, "not_found", "no such route", None),
        Case::new("unknown route without token", M::GET, "/api/v2/patients")
            .token(Token::Missing)
            .expect(404, "not_found", "no such route", None),
        Case::new("wrong method", M::PUT, PATIENTS)
            .json(patient(json!({})))
            .expect(405, "method_not_allowed", "does not accept that method", None),
        Case::new("wrong method on a patient", M::POST, PATIENT)
            .json(patient(json!({})))
            .expect(405, "method_not_allowed", "does not accept that method", None),
    ]
}

/// Sends one case; `{patient}` and `{missing}` in its path are replaced.
async fn send(app: &TestApp, case: &Case, patient_id: &str, missing_id: &str) -> Answer {
    let path = case
        .path
        .replace("{patient}", patient_id)
        .replace("{missing}", missing_id);
    let mut builder = Request::builder().method(case.method.clone()).uri(path);
    let authorization = match case.token {
        Token::Missing => None,
        Token::Clinician => Some(format!("Bearer {}", app.clinician)),
        Token::Lab => Some(format!("Bearer {}", app.lab)),
        Token::Admin => Some(format!("Bearer {}", app.admin)),
        Token::Header(value) => Some(value.to_owned()),
    };
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let request = match &case.payload {
        Payload::Empty => builder.body(Body::empty()),
        Payload::Json(value) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(value.to_string())),
        Payload::Raw(content_type, bytes) => {
            if let Some(content_type) = content_type {
                builder = builder.header(header::CONTENT_TYPE, content_type);
            }
            builder.body(Body::from(bytes.clone()))
        }
    }
    .expect("request");
    app.send(request).await
}

/// Everything wrong with the answer to `case`; empty when it is as expected.
fn check(case: &Case, answer: &Answer) -> Vec<String> {
    let mut problems = Vec::new();
    let status = answer.status;
    if status.as_u16() != case.status {
        problems.push(format!(
            "status {} (expected {})",
            status.as_u16(),
            case.status
        ));
    }
    if !status.is_client_error() {
        problems.push(format!("status {status} is not a 4xx"));
    }
    let nosniff = answer
        .headers
        .get(header::X_CONTENT_TYPE_OPTIONS)
        .and_then(|v| v.to_str().ok());
    if nosniff != Some("nosniff") {
        problems.push(format!("x-content-type-options is {nosniff:?}"));
    }
    let content_type = answer
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        problems.push(format!("content-type is {content_type:?}"));
    }

    let body = answer.json.as_object();
    let error = answer.json.get("error").and_then(Value::as_object);
    let (Some(body), Some(error)) = (body, error) else {
        problems.push("the body is not {\"error\": {...}}".to_owned());
        return problems;
    };
    if body.len() != 1 {
        problems.push("the body has keys besides \"error\"".to_owned());
    }
    if let Some(extra) = error
        .keys()
        .find(|k| !["code", "message", "field"].contains(&k.as_str()))
    {
        problems.push(format!("unexpected key error.{extra}"));
    }
    let code = error.get("code").and_then(Value::as_str);
    let message = error.get("message").and_then(Value::as_str);
    let field = error.get("field").map(|f| f.as_str().ok_or(f));
    match code {
        Some(code) if code == case.code => {}
        Some(code) => problems.push(format!("code {code:?} (expected {:?})", case.code)),
        None => problems.push("error.code is missing or not a string".to_owned()),
    }
    match message {
        Some("") => problems.push("error.message is empty".to_owned()),
        Some(m) if m.contains(case.message) => {}
        Some(m) => problems.push(format!("message {m:?} does not contain {:?}", case.message)),
        None => problems.push("error.message is missing or not a string".to_owned()),
    }
    match (field, case.field) {
        (Some(Err(f)), _) => problems.push(format!("error.field is not a string: {f}")),
        (Some(Ok(got)), Some(expected)) if got == expected => {}
        (None, None) => {}
        (got, expected) => problems.push(format!(
            "field {:?} (expected {expected:?})",
            got.and_then(Result::ok)
        )),
    }
    problems
}

/// The application with one patient (record number [`MRN`]); returns it and the patient id.
async fn app_with_patient() -> (TestApp, String) {
    let app = TestApp::new(Backend::Sqlite).await.expect("sqlite app");
    let id = app.create_patient(patient(json!({"mrn": MRN}))).await;
    (app, id)
}

/// Sends every case; returns one line per case that was not answered as expected.
async fn run_all(app: &TestApp, patient_id: &str) -> Vec<String> {
    let missing_id = uuid::Uuid::new_v4().to_string();
    let mut mismatches = Vec::new();
    for case in cases() {
        let answer = send(app, &case, patient_id, &missing_id).await;
        let problems = check(&case, &answer);
        if !problems.is_empty() {
            let body = String::from_utf8_lossy(&answer.bytes);
            mismatches.push(format!(
                "{}: {}\n    got {} {}",
                case.name,
                problems.join("; "),
                answer.status,
                body
            ));
        }
    }
    mismatches
}

#[tokio::test]
async fn every_bad_request_gets_a_4xx_naming_the_problem() {
    let all = cases();
    assert!(all.len() >= 26, "only {} cases", all.len());
    let mut names: Vec<&str> = all.iter().map(|c| c.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "case names must be distinct");

    let (app, patient_id) = app_with_patient().await;
    let mismatches = run_all(&app, &patient_id).await;
    assert!(
        mismatches.is_empty(),
        "{} of {} cases were not answered as expected:\n{}",
        mismatches.len(),
        all.len(),
        mismatches.join("\n")
    );
    app.store.cleanup().await;
}

/// Every file under `dir`, recursively; none when it does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn bad_requests_leave_nothing_half_written() {
    let (app, patient_id) = app_with_patient().await;
    // The answers are checked by the test above; here only what they leave behind matters.
    let _ = run_all(&app, &patient_id).await;

    let token = Some(app.clinician.as_str());
    let analyses = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient_id}/analyses"),
            token,
            None,
        )
        .await;
    assert_eq!(analyses.status, StatusCode::OK, "{}", analyses.json);
    assert_eq!(analyses.json, json!([]), "analyses were recorded");

    let documents = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient_id}/documents"),
            token,
            None,
        )
        .await;
    assert_eq!(documents.status, StatusCode::OK, "{}", documents.json);
    assert_eq!(
        documents.json["items"],
        json!([]),
        "documents were recorded"
    );

    let patients = app.call(Method::GET, "/api/v1/patients", token, None).await;
    assert_eq!(patients.status, StatusCode::OK, "{}", patients.json);
    let items = patients.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "patients were created: {}", patients.json);
    assert_eq!(items[0]["id"], json!(patient_id));
    assert_eq!(
        items[0]["name"],
        json!("Jane Roe"),
        "the patient was changed"
    );
    assert_eq!(items[0]["mrn"], json!(MRN), "the patient was changed");

    let files = files_under(&app.objects_dir());
    assert!(files.is_empty(), "objects left behind: {files:?}");
    app.store.cleanup().await;
}
