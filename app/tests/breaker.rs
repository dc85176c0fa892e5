//! The database circuit breaker against a real PostgreSQL made unreachable by a loopback
//! proxy: requests fail fast (503 within 100 ms) while the breaker is open, and it closes
//! after a successful half-open probe once the database is back.

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{Backend, TestApp, TestStore};
use fertivision::api;
use fertivision::jobs::Queue;
use fertivision::resilience::BreakerConfig;
use fertivision::store::{Store, StoreOptions};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

#[tokio::test]
async fn breaker_fails_fast_while_postgres_is_unreachable_and_closes_after_a_probe() {
    // Migrated schema and tokens, through a direct connection.
    let Some(app) = TestApp::new(Backend::Postgres).await else {
        return;
    };
    let schema = app.store.schema().unwrap().to_owned();
    let direct = PgConnectOptions::from_str(&common::database_url()).unwrap();
    let proxy = common::Proxy::start((direct.get_host().to_owned(), direct.get_port())).await;

    let through_proxy = direct
        .clone()
        .port(proxy.port)
        .options([("search_path", schema.as_str())]);
    let options = StoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_millis(300),
        call_timeout: Duration::from_millis(300),
        breaker: BreakerConfig {
            enabled: true,
            failure_threshold: 3,
            open_for: Duration::from_secs(1),
        },
    };
    let store = Store::from_pg_options(through_proxy, &options)
        .await
        .unwrap();
    let router = api::router(common::app_state(
        &store,
        &app.objects,
        &app.config,
        &Queue::Database,
        &fertivision::cache::Cache::off(),
    ));
    let app = TestApp { router, ..app };
    let patient = app
        .create_patient(
            json!({"name": "Breaker Patient", "date_of_birth": "1990-01-01", "sex": "female"}),
        )
        .await;
    let path = format!("/api/v1/patients/{patient}");

    proxy.set_down(true).await;
    // Until the breaker opens, requests wait for their timeout, then fail with 503.
    let mut opened_after = None;
    for i in 0..10 {
        let answer = app
            .call(Method::GET, &path, Some(&app.clinician), None)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.json
        );
        if store.breaker().state() == fertivision::resilience::BreakerState::Open {
            opened_after = Some(i + 1);
            break;
        }
    }
    let opened_after = opened_after.expect("the breaker opened");
    assert!(
        opened_after <= 4,
        "opened after {opened_after} failures (threshold 3)"
    );

    // While open: fail fast, with Retry-After, every time.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let answer = app
            .call(Method::GET, &path, Some(&app.clinician), None)
            .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.json["error"]["code"], "unavailable");
        assert!(answer.headers.contains_key("retry-after"));
    }
    println!(
        "breaker opened during request {opened_after} (each request makes several store calls, reads retried once); slowest of 20 refusals while open: {slowest:?}"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "slowest refusal took {slowest:?}"
    );
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["breakers"]["database"], "open", "{}", ready.json);

    // Back: after the open period one probe goes through, succeeds, and the breaker closes.
    proxy.set_down(false).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let probe = app
        .call(Method::GET, &path, Some(&app.clinician), None)
        .await;
    assert_eq!(probe.status, StatusCode::OK, "{}", probe.json);
    assert_eq!(
        store.breaker().state(),
        fertivision::resilience::BreakerState::Closed
    );
    let transitions = store.breaker().transitions();
    assert_eq!(transitions, 3, "closed -> open -> half_open -> closed");
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.json["breakers"]["database"], "closed");
    store.close().await;
    let TestApp {
        store: test_store, ..
    } = app;
    TestStore::cleanup(test_store).await;
}
