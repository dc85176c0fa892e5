//! Extractors whose every rejection is an [`ApiError`] naming what is wrong.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::ApiError;

/// `axum::extract::Path` with JSON errors.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with JSON errors.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A JSON body: 415 without a JSON content type, 413 over the body limit, 400 when it is not
/// JSON, 422 naming the field when it does not fit the type.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than the limit",
                )
            } else {
                ApiError::bad_request("unreadable_body", rejection.body_text())
            }
        })?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// Decodes JSON bytes into `T`, naming the failing field. Every body of this API is a JSON
/// object: a top-level array is refused (serde would otherwise bind its items to a struct's
/// fields by position).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
            ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
        })?;
        return Err(not_an_object("an array"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else {
            data_error(path, &inner.to_string())
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

/// Decodes an already parsed JSON value into `T`, naming the failing field. A top-level array
/// is refused, as by [`decode_json`].
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if value.is_array() {
        return Err(not_an_object("an array"));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|err| data_error(err.path().to_string(), &err.inner().to_string()))
}

/// 422 for a body that is JSON but not an object.
fn not_an_object(got: &str) -> ApiError {
    ApiError::invalid_field("", format!("the body must be a JSON object, got {got}"))
}

/// A body that is JSON but not of the expected shape. serde reports a missing field at the
/// parent's path with the name in backticks: put the name into the field. An unknown field's
/// path already ends with its name.
fn data_error(path: String, message: &str) -> ApiError {
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    let name_of = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let at_root = path == "." || path.is_empty();
    let field = match (name_of("missing field `"), name_of("unknown field `")) {
        (Some(name), _) if at_root => name,
        (Some(name), _) => format!("{path}.{name}"),
        (None, Some(name)) if at_root => name,
        _ => path,
    };
    ApiError::invalid_field(field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        a: f64,
        b: Option<Vec<u8>>,
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&str, StatusCode, Option<&str>); 9] = [
            (r#"{"a": 1"#, StatusCode::BAD_REQUEST, None),
            (r#"{"a": 1} x"#, StatusCode::BAD_REQUEST, None),
            (r#"{"a": "x"}"#, StatusCode::UNPROCESSABLE_ENTITY, Some("a")),
            (r#"{}"#, StatusCode::UNPROCESSABLE_ENTITY, Some("a")),
            (
                r#"{"a": 1, "c": 2}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("c"),
            ),
            (r#" [1, null]"#, StatusCode::UNPROCESSABLE_ENTITY, None),
            (r#"[1, "#, StatusCode::BAD_REQUEST, None),
            (r#"[1] x"#, StatusCode::BAD_REQUEST, None),
            (
                r#"{"a": 1, "b": [1, -1]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("b[1]"),
            ),
        ];
        for (body, status, field) in cases {
            let err = decode_json::<Sample>(body.as_bytes()).unwrap_err();
            assert_eq!(err.status, status, "{body}: {err:?}");
            assert_eq!(err.field.as_deref(), field, "{body}: {err:?}");
            // Syntax errors say where ("at line 1 column 7"); field errors name the field.
            if status == StatusCode::UNPROCESSABLE_ENTITY {
                assert!(!err.message.contains(" at line "), "{}", err.message);
            } else {
                assert!(err.message.contains(" at line "), "{}", err.message);
            }
        }
    }
}
