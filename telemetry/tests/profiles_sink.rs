//! The profiles sink end to end: pprof profiles built by hand go in through the `Sink` trait,
//! and come out of the query API merged, as collapsed stacks, a flamegraph and a pprof.

use std::io::{Read as _, Write as _};
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use http_body_util::BodyExt as _;
use prost::Message as _;
use telemetry::batch::{Batch, Profile as PushedProfile};
use telemetry::sinks::Sink;
use telemetry::sinks::profiles::pprof::{Function, Line, Location, Profile, Sample, ValueType};
use telemetry::sinks::profiles::{
    ProfileStore, ProfileStoreConfig, ProfilesSink, QueryError, TimeRange, router,
};
use tower::ServiceExt as _;

/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000;

/// A CPU profile of `main -> work -> hash` and `main -> work`: strings, two sample types
/// (`samples/count`, `cpu/nanoseconds`), three functions, three locations. Each stack is
/// `(leaf-first function names, [count, nanos])`.
fn cpu_profile(stacks: &[(&[&str], [i64; 2])]) -> Profile {
    let mut strings = vec![
        String::new(),
        "samples".into(),
        "count".into(),
        "cpu".into(),
        "nanoseconds".into(),
        "main.rs".into(),
    ];
    let mut function = Vec::new();
    let mut location = Vec::new();
    let mut sample = Vec::new();
    for (frames, values) in stacks {
        let mut location_id = Vec::new();
        for name in *frames {
            let id = match function
                .iter()
                .position(|f: &Function| strings[f.name as usize] == *name)
            {
                Some(i) => function[i].id,
                None => {
                    strings.push((*name).to_owned());
                    let id = function.len() as u64 + 1;
                    function.push(Function {
                        id,
                        name: strings.len() as i64 - 1,
                        system_name: 0,
                        filename: 5,
                        start_line: 10,
                    });
                    location.push(Location {
                        id: 100 + id,
                        mapping_id: 0,
                        address: 0x1000 * id,
                        line: vec![Line {
                            function_id: id,
                            line: 10 + name.len() as i64,
                        }],
                    });
                    id
                }
            };
            location_id.push(100 + id);
        }
        sample.push(Sample {
            location_id,
            value: values.to_vec(),
            label: Vec::new(),
        });
    }
    Profile {
        sample_type: vec![
            ValueType { r#type: 1, unit: 2 },
            ValueType { r#type: 3, unit: 4 },
        ],
        sample,
        location,
        function,
        string_table: strings,
        time_nanos: T0 * 1_000_000_000,
        duration_nanos: 10_000_000_000,
        period_type: Some(ValueType { r#type: 3, unit: 4 }),
        period: 10_000_000,
        default_sample_type: 0,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn pushed(service: &str, from: i64, pprof: Vec<u8>) -> Batch {
    Batch::Profile(PushedProfile {
        service: service.into(),
        labels: vec![("kind".into(), "cpu".into())],
        from,
        until: from + 10,
        pprof: Bytes::from(pprof),
    })
}

fn open(dir: &std::path::Path) -> ProfileStore {
    ProfileStore::open(dir, ProfileStoreConfig::default()).unwrap()
}

/// Three profiles of `api` at T0, T0+60 (gzipped) and T0+3600, and one of `worker`.
async fn stored_fixture(dir: &std::path::Path) -> (ProfileStore, ProfilesSink) {
    let store = open(dir);
    let mut sink = ProfilesSink::new(store.clone());
    let first = cpu_profile(&[
        (&["hash", "work", "main"], [3, 30]),
        (&["work", "main"], [1, 10]),
    ]);
    let mut second = cpu_profile(&[
        (&["work", "main"], [2, 20]),
        (&["hash", "work", "main"], [1, 10]),
        (&["main"], [5, 50]),
    ]);
    second.time_nanos += 60 * 1_000_000_000;
    let later = cpu_profile(&[(&["idle"], [7, 70])]);
    let worker = cpu_profile(&[(&["poll", "run"], [1, 1])]);
    sink.write(pushed("api", T0, first.encode_to_vec()))
        .await
        .unwrap();
    sink.write(pushed("api", T0 + 60, gzip(&second.encode_to_vec())))
        .await
        .unwrap();
    sink.write(pushed("api", T0 + 3600, later.encode_to_vec()))
        .await
        .unwrap();
    sink.write(pushed("worker", T0, worker.encode_to_vec()))
        .await
        .unwrap();
    (store, sink)
}

const FIRST_TWO: TimeRange = TimeRange {
    from: T0,
    until: T0 + 120,
};

#[tokio::test]
async fn profiles_merge_into_collapsed_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sink) = stored_fixture(dir.path()).await;
    assert_eq!(sink.stats().stored.load(Ordering::Relaxed), 4);
    assert_eq!(store.services().unwrap(), ["api", "worker"]);

    // Default sample type: `cpu`.
    assert_eq!(
        store.collapsed("api", FIRST_TWO, None).unwrap(),
        "main 50\nmain;work 30\nmain;work;hash 40\n"
    );
    assert_eq!(
        store.collapsed("api", FIRST_TWO, Some("samples")).unwrap(),
        "main 5\nmain;work 3\nmain;work;hash 4\n"
    );
    // The whole range includes the later profile.
    assert_eq!(
        store
            .collapsed(
                "api",
                TimeRange {
                    from: T0,
                    until: T0 + 7200
                },
                Some("samples")
            )
            .unwrap(),
        "idle 7\nmain 5\nmain;work 3\nmain;work;hash 4\n"
    );
    assert!(matches!(
        store.collapsed("api", FIRST_TWO, Some("alloc_space")),
        Err(QueryError::UnknownSampleType(_))
    ));
    assert!(matches!(
        store.collapsed("nobody", FIRST_TWO, None),
        Err(QueryError::UnknownService)
    ));
    // A range with no profile: empty.
    let before = TimeRange {
        from: T0 - 100,
        until: T0 - 1,
    };
    assert_eq!(store.collapsed("api", before, None).unwrap(), "");
}

#[tokio::test]
async fn profiles_merge_into_a_pprof_with_summed_values() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = stored_fixture(dir.path()).await;
    let gz = store.merged_pprof_gz("api", FIRST_TWO).unwrap();
    let merged = Profile::decode(gunzip(&gz).as_slice()).unwrap();

    let types: Vec<&str> = merged
        .sample_type
        .iter()
        .map(|t| merged.string(t.r#type))
        .collect();
    assert_eq!(types, ["samples", "cpu"]);
    assert_eq!(merged.string_table[0], "");
    // One function and one location per name across both profiles; one sample per stack.
    let mut names: Vec<&str> = merged
        .function
        .iter()
        .map(|f| merged.string(f.name))
        .collect();
    names.sort();
    assert_eq!(names, ["hash", "main", "work"]);
    assert_eq!(merged.location.len(), 3);
    assert_eq!(merged.sample.len(), 3);
    let totals = merged
        .sample
        .iter()
        .fold([0, 0], |acc, s| [acc[0] + s.value[0], acc[1] + s.value[1]]);
    assert_eq!(totals, [3 + 1 + 2 + 1 + 5, 30 + 10 + 20 + 10 + 50]);
    assert_eq!(merged.time_nanos, T0 * 1_000_000_000);
    assert_eq!(merged.duration_nanos, 70 * 1_000_000_000); // T0 .. T0 + 60 + 10
    // The merge of the merge renders the same stacks.
    assert_eq!(
        telemetry::sinks::profiles::collapsed_stacks(&merged, None).unwrap(),
        "main 50\nmain;work 30\nmain;work;hash 40\n"
    );
}

#[tokio::test]
async fn profiles_flamegraph_names_the_functions() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = stored_fixture(dir.path()).await;
    let svg = String::from_utf8(store.flamegraph("api", FIRST_TWO, None).unwrap()).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
    for name in ["main", "work", "hash"] {
        assert!(svg.contains(name), "{name} missing");
    }
    assert!(!svg.contains("idle"));
}

#[tokio::test]
async fn profiles_garbage_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut sink = ProfilesSink::new(store.clone());
    let stats = sink.stats();

    for garbage in [
        b"not a profile at all".to_vec(),
        gzip(b"\xff\xff\xff\xff"),
        vec![0x1f, 0x8b, 0x08, 0x00],       // truncated gzip
        Profile::default().encode_to_vec(), // empty: no string table
    ] {
        let error = sink.write(pushed("api", T0, garbage)).await.unwrap_err();
        assert!(!error.retryable, "{error}");
    }
    assert_eq!(stats.invalid.load(Ordering::Relaxed), 4);
    assert_eq!(stats.stored.load(Ordering::Relaxed), 0);

    // Other signals are ignored, successfully.
    let traces = Batch::Traces(Default::default());
    sink.write(traces).await.unwrap();
    assert_eq!(stats.ignored.load(Ordering::Relaxed), 1);
    assert!(store.services().unwrap().iter().all(|s| {
        std::fs::read_dir(dir.path().join(s))
            .unwrap()
            .next()
            .is_none()
    }));
}

#[tokio::test]
async fn profiles_retention_deletes_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = ProfileStoreConfig {
        retention_hours: 1,
        ..ProfileStoreConfig::default()
    };
    let store = ProfileStore::open(dir.path(), config).unwrap();
    let bytes = cpu_profile(&[(&["main"], [1, 1])]).encode_to_vec();
    store.put("old", T0, T0 + 10, &bytes).unwrap();
    store.put("mixed", T0, T0 + 10, &bytes).unwrap();
    store.put("mixed", T0 + 7200, T0 + 7210, &bytes).unwrap();
    // Same interval twice: two files.
    store.put("mixed", T0 + 7200, T0 + 7210, &bytes).unwrap();

    let now = T0 + 7300; // the cutoff is T0 + 3700
    assert_eq!(store.cleanup(now).unwrap(), 2);
    assert_eq!(store.services().unwrap(), ["mixed"]);
    let left = store
        .list(
            "mixed",
            TimeRange {
                from: 0,
                until: i64::MAX,
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|p| p.from == T0 + 7200));
    assert_eq!(store.cleanup(now).unwrap(), 0);
}

#[tokio::test]
async fn profiles_service_names_are_sanitized() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = open(&root);
    let mut sink = ProfilesSink::new(store.clone());
    let bytes = cpu_profile(&[(&["main"], [1, 1])]).encode_to_vec();
    sink.write(pushed("../x", T0, bytes.clone())).await.unwrap();
    sink.write(pushed("/etc", T0, bytes)).await.unwrap();

    assert!(!dir.path().join("x").exists());
    assert_eq!(store.services().unwrap(), ["___x", "_etc"]);
    // The same name finds it again.
    assert_eq!(
        store.collapsed("../x", FIRST_TWO, None).unwrap(),
        "main 1\n"
    );
    for entry in walk(&root) {
        assert!(entry.starts_with(&root), "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[tokio::test]
async fn profiles_query_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = ProfileStoreConfig {
        max_profiles_per_query: 2,
        max_response_bytes: 30,
        ..ProfileStoreConfig::default()
    };
    let store = ProfileStore::open(dir.path(), config).unwrap();
    for i in 0..3 {
        let bytes = cpu_profile(&[(&[["a", "b", "c"][i]], [1, 1])]).encode_to_vec();
        let from = T0 + i as i64 * 10;
        store.put("api", from, from + 10, &bytes).unwrap();
    }
    let merged = store.merge("api", FIRST_TWO).unwrap();
    assert_eq!((merged.merged, merged.skipped), (2, 1));
    // The newest two.
    assert_eq!(
        store.collapsed("api", FIRST_TWO, None).unwrap(),
        "b 1\nc 1\n"
    );
    assert!(matches!(
        store.flamegraph("api", FIRST_TWO, None),
        Err(QueryError::TooLarge { limit: 30 })
    ));
}

// ---- the HTTP API ----

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body.to_vec())
}

#[tokio::test]
async fn profiles_api_serves_the_merged_views() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = stored_fixture(dir.path()).await;
    let app = router(store);
    let range = format!("from={}&until={}", T0, T0 + 120);

    let (status, content_type, body) = get(&app, "/api/v1/profiles/services").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json, serde_json::json!({ "services": ["api", "worker"] }));

    let (status, content_type, body) =
        get(&app, &format!("/api/v1/profiles/api/collapsed?{range}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert_eq!(body, b"main 50\nmain;work 30\nmain;work;hash 40\n");

    let (status, _, body) = get(
        &app,
        &format!("/api/v1/profiles/api/collapsed?{range}&sample_type=samples"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"main 5\nmain;work 3\nmain;work;hash 4\n");

    let (status, content_type, body) = get(
        &app,
        &format!("/api/v1/profiles/api/flamegraph.svg?{range}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "image/svg+xml");
    assert!(String::from_utf8(body).unwrap().contains("hash"));

    let (status, _, body) = get(&app, &format!("/api/v1/profiles/api/profile.pb.gz?{range}")).await;
    assert_eq!(status, StatusCode::OK);
    let merged = Profile::decode(gunzip(&body).as_slice()).unwrap();
    let cpu: i64 = merged.sample.iter().map(|s| s.value[1]).sum();
    assert_eq!(cpu, 120);
}

#[tokio::test]
async fn profiles_api_errors_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = stored_fixture(dir.path()).await;
    let app = router(store);

    for (uri, status, code) in [
        (
            "/api/v1/profiles/api/collapsed?from=abc".to_owned(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            format!(
                "/api/v1/profiles/api/collapsed?from={}&until={}",
                T0 + 10,
                T0
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/profiles/api/collapsed?colour=red".to_owned(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            format!("/api/v1/profiles/api/collapsed?from={T0}&until={T0}&sample_type=heap"),
            StatusCode::BAD_REQUEST,
            "unknown_sample_type",
        ),
        (
            format!("/api/v1/profiles/nobody/collapsed?from={T0}&until={T0}"),
            StatusCode::NOT_FOUND,
            "unknown_service",
        ),
        (
            "/api/v1/profiles/api/flamegraph.svg?from=0&until=1".to_owned(),
            StatusCode::NOT_FOUND,
            "no_samples",
        ),
    ] {
        let (actual, content_type, body) = get(&app, &uri).await;
        assert_eq!(actual, status, "{uri}");
        assert_eq!(content_type, "application/json", "{uri}");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], code, "{uri}: {json}");
        assert!(json["error"]["message"].is_string());
    }
}
