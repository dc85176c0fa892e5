//! Pyroscope-compatible `POST /ingest?name=APP{k=v,...}&from=UNIX&until=UNIX`: a pprof
//! profile as the raw body (optionally gzip, as pprof files usually are) or as the `profile`
//! field of a multipart form, the way Pyroscope clients push. Served on the query port.
//!
//! The profile is written to the write-ahead log like any other signal before the answer:
//! 200 when stored, 400 naming what is wrong, 413 over the size limit, 429 with
//! `Retry-After` when the log is full.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::batch::Profile;
use crate::ingest::{Ingest, IngestError};

/// Largest profile accepted.
pub const MAX_PROFILE_BYTES: usize = 8 * 1024 * 1024;

/// The `/ingest` route.
pub fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/ingest", post(ingest_profile))
        .layer(DefaultBodyLimit::max(MAX_PROFILE_BYTES + 64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            ingest.clone(),
            crate::sources::admission::http,
        ))
        .with_state(ingest)
}

/// Query parameters of `/ingest`.
#[derive(Debug, Deserialize)]
struct IngestParams {
    name: Option<String>,
    from: Option<i64>,
    until: Option<i64>,
    format: Option<String>,
}

async fn ingest_profile(
    State(ingest): State<Ingest>,
    Query(params): Query<IngestParams>,
    request: Request,
) -> Response {
    let (service, labels) = match parse_name(params.name.as_deref()) {
        Ok(parsed) => parsed,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    if params.format.as_deref().is_some_and(|f| f != "pprof") {
        return (StatusCode::BAD_REQUEST, "only format=pprof is accepted").into_response();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let until = params.until.unwrap_or(now);
    let from = params.from.unwrap_or(until - 10);
    if from > until {
        return (StatusCode::BAD_REQUEST, "from must not be after until").into_response();
    }
    let pprof = match body(request).await {
        Ok(pprof) => pprof,
        Err(response) => return response,
    };
    if pprof.is_empty() {
        return (StatusCode::BAD_REQUEST, "the profile is empty").into_response();
    }
    if pprof.len() > MAX_PROFILE_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the profile is larger than 8 MiB",
        )
            .into_response();
    }
    let profile = Profile {
        service,
        labels,
        from,
        until,
        pprof,
    };
    match ingest.profile(profile).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(IngestError::Full { retry_after }) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "the collector is at capacity; retry later",
            )
                .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            response
        }
        Err(IngestError::TooLarge) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "the profile is too large").into_response()
        }
        Err(IngestError::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector could not store the profile",
        )
            .into_response(),
    }
}

/// The pprof bytes: the `profile` field of a multipart form, or the raw body.
async fn body(request: Request) -> Result<Bytes, Response> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return Bytes::from_request(request, &())
            .await
            .map_err(|e| (e.status(), e.body_text()).into_response());
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| (e.status(), e.body_text()).into_response())?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| (e.status(), e.body_text()).into_response())?
    {
        if field.name() == Some("profile") {
            return field
                .bytes()
                .await
                .map_err(|e| (e.status(), e.body_text()).into_response());
        }
    }
    Err((StatusCode::BAD_REQUEST, "the form has no 'profile' field").into_response())
}

/// `app{k=v,k2=v2}` into the service name and sorted labels.
pub(crate) fn parse_name(name: Option<&str>) -> Result<(String, Vec<(String, String)>), String> {
    let name = name
        .filter(|n| !n.trim().is_empty())
        .ok_or("the name parameter is required, e.g. name=fertivision-api{instance=a}")?;
    let (service, rest) = match name.split_once('{') {
        Some((service, rest)) => (service, Some(rest)),
        None => (name, None),
    };
    let service = service.trim();
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if !valid(service) {
        return Err(format!(
            "invalid application name '{service}': letters, digits, '.', '_' and '-' only"
        ));
    }
    let mut labels = Vec::new();
    if let Some(rest) = rest {
        let inner = rest
            .strip_suffix('}')
            .ok_or("the labels must end with '}'")?;
        for pair in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("label '{pair}' is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            if !valid(key) || value.len() > 256 {
                return Err(format!("invalid label '{pair}'"));
            }
            labels.push((key.to_owned(), value.to_owned()));
        }
        if labels.len() > 32 {
            return Err("at most 32 labels".to_owned());
        }
    }
    labels.sort();
    Ok((service.to_owned(), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_parse() {
        assert_eq!(parse_name(Some("api")).unwrap(), ("api".to_owned(), vec![]));
        assert_eq!(
            parse_name(Some("fertivision-api{instance=a, kind=cpu}")).unwrap(),
            (
                "fertivision-api".to_owned(),
                vec![
                    ("instance".into(), "a".into()),
                    ("kind".into(), "cpu".into())
                ]
            )
        );
        for bad in [
            None,
            Some(""),
            Some("a b"),
            Some("api{x}"),
            Some("api{x=1"),
            Some("../etc{a=b}"),
        ] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
