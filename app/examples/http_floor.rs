//! The floor of the API benchmark (`bench/api.sh`, mode `floor`): an axum server on the same
//! runtime, allocator and HTTP stack as `fertivision serve`, answering the read route with the
//! same headers and a body of the same size from memory: no authentication, cache, database,
//! spans or metrics. What it serves at 500 connections on a machine is what the machine,
//! loopback TCP, hyper and wrk leave for any service; the API's figures are read against it.
//!
//!     cargo build --release -p fertivision --example http_floor
//!     target/release/examples/http_floor 127.0.0.1:18080

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A patient as the API answers it (250 bytes), with made-up data.
const BODY: &str = r#"{"id":"01a252e0-05e5-7055-91fc-78d540055193","mrn":"MR-PC83RNN4","name":"Bench Patient","date_of_birth":"1990-01-01","sex":"female","email":null,"phone":null,"created_at":"2026-12-07T23:39:03.013027369Z","updated_at":"2026-12-07T23:39:03.013027369Z"}"#;

/// The headers every answer of the API carries, ids included (fixed here).
const HEADERS: [(&str, &str); 11] = [
    ("content-type", "application/json"),
    ("vary", "accept-encoding"),
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-request-id", "6346fc6d-369a-40be-87da-18ef5a58a383"),
    (
        "traceparent",
        "00-efb03a9c9d90ff77705f03392fac0f5b-928fd57e0445c8e1-00",
    ),
    ("x-trace-id", "efb03a9c9d90ff77705f03392fac0f5b"),
];

async fn patient() -> impl IntoResponse {
    let mut response = BODY.into_response();
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    debug_assert_eq!(headers[header::CONTENT_LENGTH], BODY.len().to_string());
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_owned());
    let app = Router::new().route("/api/v1/patients/{id}", get(patient));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("http_floor: listening on {listen}");
    axum::serve(listener, app).await?;
    Ok(())
}
