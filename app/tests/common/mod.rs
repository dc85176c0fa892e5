//! Test harness: a store or a whole application on either backend.
//!
//! SQLite runs in a temporary directory. PostgreSQL runs in a fresh schema of the database at
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped when the test
//! ends, even by a panic. When PostgreSQL cannot be reached the PostgreSQL half of a test is
//! skipped with a message, except under `CI=true`, where it fails.
#![allow(dead_code)]

use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use fertivision::api::{self, AppState, Resources};
use fertivision::auth::Role;
use fertivision::cache::Cache;
use fertivision::config::{Config, StorageConfig};
use fertivision::jobs::worker::WorkerContext;
use fertivision::jobs::{Jobs, Queue};
use fertivision::limits::RateLimits;
use fertivision::objects::Objects;
use fertivision::server::create_token;
use fertivision::store::{Store, StoreOptions};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use tempfile::TempDir;
use tower::ServiceExt;

/// The PostgreSQL server the tests use.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL at `DATABASE_URL`.
    Postgres,
}

/// A migrated store that cleans up after itself.
pub struct TestStore {
    pub store: Store,
    pub dir: TempDir,
    schema: Option<String>,
}

impl TestStore {
    /// A store on `backend`; `None` when PostgreSQL is unreachable outside CI.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
                let store = Store::connect(&url, &StoreOptions::default())
                    .await
                    .expect("sqlite");
                store.migrate().await.expect("migrate sqlite");
                Some(Self {
                    store,
                    dir,
                    schema: None,
                })
            }
            Backend::Postgres => {
                let admin = match sqlx::PgPool::connect(&database_url()).await {
                    Ok(pool) => pool,
                    Err(e) if !in_ci() => {
                        eprintln!(
                            "SKIPPED (not CI): PostgreSQL unreachable at {}: {e}",
                            database_url()
                        );
                        return None;
                    }
                    Err(e) => panic!(
                        "CI=true and PostgreSQL is unreachable at {}: {e}",
                        database_url()
                    ),
                };
                sweep_stale_schemas(&admin).await;
                let schema = format!(
                    "fvtest_{}_{}",
                    chrono::Utc::now().timestamp(),
                    uuid::Uuid::new_v4().simple()
                );
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .expect("create schema");
                admin.close().await;
                let options = PgConnectOptions::from_str(&database_url())
                    .expect("DATABASE_URL")
                    .options([("search_path", schema.as_str())]);
                let store = Store::from_pg_options(options, &StoreOptions::default())
                    .await
                    .expect("postgres");
                store.migrate().await.expect("migrate postgres");
                Some(Self {
                    store,
                    dir,
                    schema: Some(schema),
                })
            }
        }
    }
}

impl TestStore {
    /// The PostgreSQL schema of this store, if it is one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Closes the pool and drops the PostgreSQL schema. A test that panics skips this; its
    /// schema is swept by a later run once it is an hour old.
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some(schema) = &self.schema {
            drop_schema(schema).await;
        }
    }
}

async fn drop_schema(schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&database_url()).await {
        let _ = sqlx::query("SET lock_timeout = '10s'")
            .execute(&mut conn)
            .await;
        let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// Drops the schemas of earlier runs that are over an hour old (their tests panicked).
async fn sweep_stale_schemas(admin: &sqlx::PgPool) {
    let now = chrono::Utc::now().timestamp();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'fvtest\\_%'",
    )
    .fetch_all(admin)
    .await
    .unwrap_or_default();
    for name in names {
        let created = name.split('_').nth(1).and_then(|t| t.parse::<i64>().ok());
        if created.is_some_and(|t| now - t > 3600) {
            drop_schema(&name).await;
        }
    }
}

/// Generates one `#[tokio::test]` per backend from an async closure taking a [`Store`].
#[macro_export]
macro_rules! store_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let t = common::TestStore::new(common::Backend::Sqlite)
                    .await
                    .unwrap();
                ($body)(t.store.clone()).await;
                t.cleanup().await;
            }
            #[tokio::test]
            async fn postgres() {
                let Some(t) = common::TestStore::new(common::Backend::Postgres).await else {
                    return;
                };
                ($body)(t.store.clone()).await;
                t.cleanup().await;
            }
        }
    };
}

/// The application state over these parts; limits as the config says.
pub fn app_state(
    store: &Store,
    objects: &Objects,
    config: &Arc<Config>,
    queue: &Queue,
    cache: &Cache,
) -> AppState {
    AppState::new(Resources {
        store: store.clone(),
        objects: objects.clone(),
        config: Arc::clone(config),
        jobs: Jobs::new(store.clone(), queue.clone()),
        cache: cache.clone(),
        limits: Arc::new(RateLimits::new(config.limits.enabled, None)),
        tokens: fertivision::auth::TokenCache::default(),
    })
}

/// The whole application in memory, with a token per role.
pub struct TestApp {
    pub router: Router,
    pub cache: Cache,
    pub store: TestStore,
    pub config: Arc<Config>,
    pub objects: Objects,
    pub queue: Queue,
    pub clinician: String,
    pub lab: String,
    pub admin: String,
}

/// An answer: status, headers, raw body, and the body as JSON when it is JSON.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub bytes: bytes::Bytes,
    pub json: Value,
}

impl TestApp {
    /// The application on `backend`; `None` when PostgreSQL is unreachable outside CI.
    pub async fn new(backend: Backend) -> Option<Self> {
        Self::with_config(backend, |_| {}).await
    }

    /// Like [`TestApp::new`], with settings changed by `tweak`.
    pub async fn with_config(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        let store = TestStore::new(backend).await?;
        // Rate limits are off unless a test turns them on: suites make more requests per
        // minute than a clinic's staff.
        let mut config = Config {
            limits: fertivision::config::LimitsConfig { enabled: false },
            data_dir: store.dir.path().to_path_buf(),
            storage: StorageConfig::Local {
                path: store.dir.path().join("objects"),
            },
            ..Config::default()
        };
        tweak(&mut config);
        let config = Arc::new(config);
        let objects = Objects::from_config(&config).expect("objects");
        let s = &store.store;
        let clinician = create_token(s, Role::Clinician, "test").await.unwrap();
        let lab = create_token(s, Role::Lab, "test").await.unwrap();
        let admin = create_token(s, Role::Admin, "test").await.unwrap();
        let queue = Queue::Database;
        let cache = Cache::local(1000, std::time::Duration::from_secs(60));
        let router = api::router(app_state(s, &objects, &config, &queue, &cache));
        Some(Self {
            router,
            cache,
            store,
            config,
            objects,
            queue,
            clinician,
            lab,
            admin,
        })
    }

    /// A worker over this application's store, objects and queue.
    pub fn worker_context(&self) -> WorkerContext {
        WorkerContext {
            store: self.store.store.clone(),
            objects: self.objects.clone(),
            queue: self.queue.clone(),
            config: Arc::clone(&self.config),
            worker_id: format!("test-worker-{}", uuid::Uuid::new_v4().simple()),
            cache: self.cache.clone(),
        }
    }

    /// Runs a worker pool until every job is completed or dead, or `limit` passes.
    pub async fn drain_jobs(&self, limit: std::time::Duration) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stop_rx2 = stop_rx.clone();
        let worker = tokio::spawn(fertivision::jobs::worker::run(
            self.worker_context(),
            2,
            async move {
                let _ = stop_rx2.wait_for(|s| *s).await;
            },
        ));
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let counts = self.store.store.count_jobs_by_status().await.unwrap();
            let open = counts
                .iter()
                .any(|(s, n)| *n > 0 && s != "completed" && s != "dead");
            if !open || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = stop_tx.send(true);
        drop(stop_rx);
        worker.await.unwrap();
    }

    /// The directory holding uploaded objects.
    pub fn objects_dir(&self) -> std::path::PathBuf {
        self.store.dir.path().join("objects")
    }

    /// Sends a request built by the caller.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            bytes,
            json,
        }
    }

    /// Sends JSON (or nothing) with a bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    /// Creates a patient as the clinician and returns its id.
    pub async fn create_patient(&self, body: Value) -> String {
        let answer = self
            .call(
                Method::POST,
                "/api/v1/patients",
                Some(&self.clinician),
                Some(body),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        answer.json["id"].as_str().unwrap().to_owned()
    }
}

/// A multipart body with a `document_type` field and a `file` field.
pub fn multipart(
    document_type: Option<&str>,
    file: Option<(&str, &str, &[u8])>,
) -> (String, Vec<u8>) {
    let boundary = "fertivision-test-boundary-7d1f";
    let mut body = Vec::new();
    if let Some(kind) = document_type {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"document_type\"\r\n\r\n{kind}\r\n").as_bytes(),
        );
    }
    if let Some((name, content_type, bytes)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A small valid one-page PDF with real text.
pub fn sample_pdf() -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    let content = "BT /F1 12 Tf 72 720 Td (AMH: 0.8 ng/mL) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// A minimal PNG signature and header.
pub fn sample_png() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&[
        0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0,
    ]);
    png.extend_from_slice(&[0x90, 0x77, 0x53, 0xDE]);
    png
}

/// A TCP proxy on loopback to a real server (PostgreSQL, Redis). Down: every proxied connection is cut, and new connections are
/// accepted and never answered (like a host that vanished).
pub struct Proxy {
    pub port: u16,
    down: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(upstream: (String, u16)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links: Arc<tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (down2, links2) = (Arc::clone(&down), Arc::clone(&links));
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let down = Arc::clone(&down2);
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if down.load(std::sync::atomic::Ordering::SeqCst) {
                        // Hold the socket open, say nothing.
                        while down.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                links2.lock().await.push(link);
            }
        });
        Self { port, down, links }
    }

    pub async fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            for link in self.links.lock().await.drain(..) {
                link.abort();
            }
        }
    }
}
