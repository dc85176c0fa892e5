//! The read-through cache (hits, misses, invalidation on writes) and the per-token rate
//! limits (429 with Retry-After; shared through Redis; local when Redis is down).

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Backend, TestApp};
use fertivision::cache::Cache;
use fertivision::limits::{Limit, RateLimits};
use fertivision::redis::Redis;
use serde_json::json;
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[tokio::test]
async fn reads_are_cached_and_writes_invalidate_them() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let patient = app
        .create_patient(
            json!({"name": "Cache Patient", "date_of_birth": "1990-01-01", "sex": "female"}),
        )
        .await;
    let path = format!("/api/v1/patients/{patient}");
    let before = app.cache.stats();
    app.call(Method::GET, &path, Some(&app.lab), None).await;
    let second = app.call(Method::GET, &path, Some(&app.lab), None).await;
    assert_eq!(second.json["name"], "Cache Patient");
    let after = app.cache.stats();
    assert_eq!(
        (after.misses - before.misses, after.hits - before.hits),
        (1, 1)
    );

    // An update is visible at once.
    app.call(
        Method::PATCH,
        &path,
        Some(&app.clinician),
        Some(json!({"name": "Renamed"})),
    )
    .await;
    assert_eq!(
        app.call(Method::GET, &path, Some(&app.lab), None)
            .await
            .json["name"],
        "Renamed"
    );

    // A new analysis changes the cached score and summary.
    let score_path = format!("/api/v1/patients/{patient}/fertility-score");
    let first = app
        .call(Method::GET, &score_path, Some(&app.lab), None)
        .await
        .json["score"]
        .clone();
    let summary = app
        .call(Method::GET, "/api/v1/summaries", Some(&app.lab), None)
        .await;
    assert_eq!(summary.json["items"][0]["completed_analyses"], 0);
    let analysis =
        json!({"concentration": 0.5, "progressive_motility": 10, "normal_morphology": 1});
    app.call(
        Method::POST,
        &format!("/api/v1/patients/{patient}/analyses/semen"),
        Some(&app.clinician),
        Some(analysis),
    )
    .await;
    let second = app
        .call(Method::GET, &score_path, Some(&app.lab), None)
        .await
        .json["score"]
        .clone();
    assert_ne!(first, second, "the score was recomputed, not served stale");
    let summary = app
        .call(Method::GET, "/api/v1/summaries", Some(&app.lab), None)
        .await;
    assert_eq!(summary.json["items"][0]["completed_analyses"], 1);

    // A deleted patient is gone from the cache too.
    app.call(Method::DELETE, &path, Some(&app.admin), None)
        .await;
    assert_eq!(
        app.call(Method::GET, &path, Some(&app.lab), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_eleventh_patient_in_a_minute_is_refused_with_retry_after() {
    let app = TestApp::with_config(Backend::Sqlite, |c| c.limits.enabled = true)
        .await
        .unwrap();
    for i in 0..10 {
        app.create_patient(
            json!({"name": format!("P{i}"), "date_of_birth": "1990-01-01", "sex": "male"}),
        )
        .await;
    }
    let body = json!({"name": "P10", "date_of_birth": "1990-01-01", "sex": "male"});
    let refused = app
        .call(
            Method::POST,
            "/api/v1/patients",
            Some(&app.clinician),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.json
    );
    assert_eq!(refused.json["error"]["code"], "rate_limited");
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10 per minute")
    );
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another token has its own allowance; reads are not limited by the creation limit.
    let other = app
        .call(
            Method::POST,
            "/api/v1/patients",
            Some(&app.admin),
            Some(body),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_eq!(
        app.call(Method::GET, "/api/v1/patients", Some(&app.clinician), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn limits_are_shared_through_redis_and_local_when_it_is_down() {
    let prefix = format!("fvtest-{}", Uuid::new_v4().simple());
    let url = redis_url();
    let connect = || Redis::connect(&url, &prefix, Duration::from_millis(500));
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    if a.command("PING", vec![]).await.is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true and Redis is unreachable"
        );
        eprintln!("SKIPPED (not CI): Redis unreachable");
        return;
    }
    // Two API instances, one token: three reports in all per minute.
    let (first, second) = (
        RateLimits::new(true, Some(a)),
        RateLimits::new(true, Some(b)),
    );
    let token = Uuid::now_v7();
    first.check(token, Limit::GenerateReport).await.unwrap();
    second.check(token, Limit::GenerateReport).await.unwrap();
    first.check(token, Limit::GenerateReport).await.unwrap();
    let refused = second
        .check(token, Limit::GenerateReport)
        .await
        .unwrap_err();
    assert!(refused.retry_after <= Duration::from_secs(60));

    // Redis unreachable: the limits still hold, per instance.
    let down = Redis::connect("redis://127.0.0.1:1", &prefix, Duration::from_millis(100))
        .await
        .unwrap();
    let local = RateLimits::new(true, Some(down.clone()));
    for _ in 0..3 {
        local.check(token, Limit::GenerateReport).await.unwrap();
    }
    assert!(local.check(token, Limit::GenerateReport).await.is_err());

    // And the cache is bypassed, not wrong: every read loads.
    let cache = Cache::redis(down, Duration::from_secs(60), Duration::from_millis(100));
    for expected in 1..=3u32 {
        let value = cache
            .json_or_load("k", async { Ok::<_, serde_json::Error>(expected) })
            .await
            .unwrap();
        assert_eq!(value, expected.to_string().as_bytes());
    }
    assert_eq!(cache.stats().hits, 0);
}

#[test]
fn a_worker_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_fertivision"))
        .args(["worker", "--concurrency", "2", "--data-dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = worker.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut worker.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("worker stopped"), "{stderr}");
}
