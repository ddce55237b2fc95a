//! The hub's API, driven in memory through its `Router` (no sockets), against a real SQLite
//! database and, where `SURPLUS_TEST_POSTGRES` names a server, a real PostgreSQL database too.
//! Every test runs once per database engine.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use surplus_hub::staging::Staging;
use surplus_hub::store::Store;
use surplus_hub::{Hub, Settings, api};
use tower::ServiceExt;

struct TestHub {
    router: Router,
    hub: Arc<Hub>,
    database: String,
    /// Where staged blobs land on disk: the local staging folder, or the S3 server's folder for
    /// this hub's prefix (`<first two hex digits>/<hash>` under it either way).
    staging: std::path::PathBuf,
    /// Whether staging is the local folder (else an S3 bucket).
    local_staging: bool,
    _dir: tempfile::TempDir,
}

/// The S3 test server's bucket: (its folder on disk, its name), when the test script started
/// one (scripts/s3.sh; in CI it must have). The endpoint and keys are in the `AWS_*` variables.
fn s3_bucket() -> Option<(std::path::PathBuf, &'static str)> {
    match std::env::var_os("SURPLUS_TEST_S3_ROOT") {
        Some(root) if !root.is_empty() => Some((
            std::path::Path::new(&root).join("surplus-test"),
            "surplus-test",
        )),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the hub's tests on S3 staging too: set SURPLUS_TEST_S3_ROOT (scripts/test does)"
            );
            None
        }
    }
}

/// The engines to test against: SQLite always; PostgreSQL when the test script started one (and
/// in CI it must have).
fn database_urls(dir: &std::path::Path) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}", dir.join("hub.db").display())];
    match std::env::var("SURPLUS_TEST_POSTGRES") {
        Ok(base) if !base.is_empty() => urls.push(base),
        _ => assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the hub's tests against PostgreSQL too: set SURPLUS_TEST_POSTGRES (scripts/test does)"
        ),
    }
    urls
}

/// A fresh database of its own for one test on a shared PostgreSQL server.
async fn fresh_postgres(base: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (head, _) = base.rsplit_once('/').expect("URL has a database path");
    format!("{head}/{name}")
}

async fn hubs() -> Vec<TestHub> {
    hubs_with(|settings| settings).await
}

/// Test hubs whose settings `change` adjusts.
async fn hubs_with(change: impl Fn(Settings) -> Settings) -> Vec<TestHub> {
    test_hubs(change, true).await
}

/// Test hubs with no background tasks: only what a test calls happens (for rules that run on a
/// schedule, which the test then runs itself at the moments it chooses).
async fn quiet_hubs() -> Vec<TestHub> {
    test_hubs(|settings| settings, false).await
}

async fn test_hubs(change: impl Fn(Settings) -> Settings, background: bool) -> Vec<TestHub> {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    let mut hubs = Vec::new();
    let probe_dir = tempfile::tempdir().expect("tempdir");
    for url in database_urls(probe_dir.path()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = if url.starts_with("sqlite://") {
            format!("sqlite://{}", dir.path().join("hub.db").display())
        } else {
            fresh_postgres(&url).await
        };
        // SQLite with a local staging folder, PostgreSQL with S3 staging: the embedded default,
        // and what a hub that scales out runs on.
        let (staging_address, staging, local_staging) = match s3_bucket() {
            Some((root, bucket)) if !database.starts_with("sqlite://") => {
                let prefix = uuid::Uuid::new_v4().simple().to_string();
                (
                    std::path::PathBuf::from(format!("s3://{bucket}/{prefix}")),
                    root.join(prefix),
                    false,
                )
            }
            _ => {
                let folder = dir.path().join("staging");
                (folder.clone(), folder, true)
            }
        };
        let settings = Settings {
            max_blob_bytes: 1 << 20,
            max_json_bytes: 64 << 10,
            heartbeat_interval: Duration::from_secs(5),
            watch_tick: Duration::from_millis(100),
            // Long polls only return early when woken: a missed wake-up shows as an empty batch.
            long_poll_recheck: Duration::from_secs(120),
            ..Settings::default()
        };
        let hub = open_hub(&database, &staging_address, change(settings), background).await;
        hubs.push(TestHub {
            router: api::router(hub.clone()),
            hub,
            database,
            staging,
            local_staging,
            _dir: dir,
        });
    }
    hubs
}

async fn open_hub(
    database: &str,
    staging: &std::path::Path,
    settings: Settings,
    background: bool,
) -> Arc<Hub> {
    let store = Store::connect(database).await.expect("open the store");
    let staging = Staging::at(staging).await.expect("open staging");
    if background {
        Hub::start(store, staging, settings)
    } else {
        Hub::without_background(store, staging, settings)
    }
}

/// The password of every subscriber the tests sign up.
const PASSWORD: &str = "correct horse battery";

struct Reply {
    status: StatusCode,
    body: Value,
    bytes: Vec<u8>,
    headers: axum::http::HeaderMap,
}

impl Reply {
    /// The stable error code of an error reply.
    fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<no error code>")
    }
}

impl TestHub {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_client_error() || status.is_server_error() {
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "error replies carry a code and a message: {status} {body}"
            );
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "client mistakes are never a 500: {body}"
            );
        }
        Reply {
            status,
            body,
            bytes,
            headers,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.expect("request")).await
    }

    /// Signs up `email` and logs in; returns the session token.
    async fn signup(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": PASSWORD});
        let reply = self
            .call(Method::POST, "/v1/signup", None, Some(credentials.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let reply = self
            .call(Method::POST, "/v1/login", None, Some(credentials))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["token"].as_str().expect("token").to_owned()
    }

    /// Registers a device and returns (device id, device token).
    async fn device(&self, session: &str, name: &str) -> (String, String) {
        let reply = self
            .call(
                Method::POST,
                "/v1/devices",
                Some(session),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let id = reply.body["device_id"].as_str().expect("id").to_owned();
        let uuid = uuid::Uuid::parse_str(&id).expect("uuid");
        let token =
            surplus_protocol::device_token(uuid, reply.body["secret"].as_str().expect("secret"));
        (id, token)
    }

    async fn heartbeat(&self, device: &str, report: Value) -> Reply {
        self.call(
            Method::POST,
            "/v1/device/heartbeat",
            Some(device),
            Some(report),
        )
        .await
    }

    async fn poll(&self, device: &str, wait: u64) -> Vec<Value> {
        let reply = self
            .call(
                Method::GET,
                &format!("/v1/device/instructions?wait={wait}"),
                Some(device),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["instructions"]
            .as_array()
            .expect("instructions")
            .clone()
    }

    async fn upload(&self, token: &str, content: &[u8]) -> Reply {
        let hash = blake3::hash(content).to_hex().to_string();
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("/v1/blobs/{hash}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, content.len())
            .body(Body::from(content.to_vec()))
            .expect("request");
        self.send(request).await
    }
}

const GIB: u64 = 1 << 30;

/// A heartbeat report of an idle desktop that consents to both resources.
fn report() -> Value {
    json!({
        "agent_version": "0.1.0", "os": "linux", "utc_offset_minutes": 60,
        "cpu": {"cores": 4, "busy_percent": 3.5},
        "memory": {"total_bytes": 16 * GIB, "available_bytes": 8 * GIB},
        "user": {"session": "idle", "idle_seconds": 900},
        "on_battery": false,
        "disk": {"total_bytes": 500 * GIB, "free_bytes": 200 * GIB},
        "vault": {"quota_bytes": 10 * GIB, "used_bytes": 0, "reserved_bytes": 10 * GIB, "floor_bytes": 50 * GIB},
        "consent": {"storage": true, "compute": true},
        "limits": {"cores_percent": 50, "idle_minutes": 5, "busy_cpu_percent": 25, "on_battery": false, "window": null},
        "pause": {"paused": "running"}
    })
}

/// A request as an agent of protocol `version` sends it.
fn as_agent(version: &str, method: Method, path: &str, token: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(surplus_protocol::PROTOCOL_HEADER, version)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// Agents of protocol 1, as they are in the field, keep working: their messages (frozen in
/// `tests/protocol-v1/`) are served, fields a later agent adds are ignored, and every answer
/// names the hub's protocol. An agent older than the hub serves is told to update, with a code
/// of its own; a request with no version (a script, a browser) is served.
#[tokio::test]
async fn agents_of_protocol_1_keep_working_and_older_ones_are_told_to_update() {
    const HEARTBEAT: &str = include_str!("protocol-v1/heartbeat.json");
    const LATER: &str = include_str!("protocol-v1/heartbeat-with-fields-from-later.json");
    const ACK: &str = include_str!("protocol-v1/ack-unsupported.json");
    for hub in hubs().await {
        let session = hub.signup("ann@example.org").await;
        let (id, device) = hub.device(&session, "ann-pc").await;
        for body in [HEARTBEAT, LATER] {
            let reply = hub
                .send(as_agent(
                    "1",
                    Method::POST,
                    "/v1/device/heartbeat",
                    &device,
                    body,
                ))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            assert_eq!(
                reply.headers[surplus_protocol::PROTOCOL_HEADER],
                surplus_protocol::PROTOCOL_VERSION.to_string()
            );
        }
        // An instruction, and the answer of an agent that does not know it.
        let probe = hub
            .call(
                Method::POST,
                &format!("/v1/devices/{id}/probe"),
                Some(&session),
                None,
            )
            .await;
        assert_eq!(probe.status, StatusCode::ACCEPTED, "{}", probe.body);
        let batch = hub
            .send(as_agent(
                "1",
                Method::GET,
                "/v1/device/instructions?wait=0",
                &device,
                "",
            ))
            .await;
        assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
        let instruction = batch.body["instructions"][0]["id"]
            .as_str()
            .expect("an instruction");
        let acked = hub
            .send(as_agent(
                "1",
                Method::POST,
                &format!("/v1/device/instructions/{instruction}/ack"),
                &device,
                ACK,
            ))
            .await;
        assert_eq!(acked.status, StatusCode::NO_CONTENT, "{}", acked.body);

        let old = hub
            .send(as_agent(
                "0",
                Method::POST,
                "/v1/device/heartbeat",
                &device,
                HEARTBEAT,
            ))
            .await;
        assert_eq!(old.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(old.code(), "agent_too_old");
        assert!(
            old.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("update Surplus")),
            "{}",
            old.body
        );
        let garbled = hub
            .send(as_agent(
                "one",
                Method::POST,
                "/v1/device/heartbeat",
                &device,
                HEARTBEAT,
            ))
            .await;
        assert_eq!(garbled.code(), "bad_request");
        let script = hub.heartbeat(&device, report()).await;
        assert_eq!(script.status, StatusCode::OK, "{}", script.body);
        assert_eq!(
            script.headers[surplus_protocol::PROTOCOL_HEADER],
            surplus_protocol::PROTOCOL_VERSION.to_string()
        );
    }
}

#[tokio::test]
async fn sign_up_log_in_and_see_yourself() {
    for hub in hubs().await {
        let token = hub.signup("Ada@Example.org").await;
        let me = hub.call(Method::GET, "/v1/me", Some(&token), None).await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.body["email"], "ada@example.org");
        assert_eq!(me.body["status"], "active");
        assert_eq!(me.body["plan"], "standard");

        let login = hub
            .call(
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"email": "ada@example.org", "password": PASSWORD})),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK);
        assert!(
            login.body["token"]
                .as_str()
                .is_some_and(|t| t.starts_with("ses_") && t != token)
        );

        // Signing up again answers as a first sign-up does, and changes nothing: the account
        // keeps its password, and the new one does not log in.
        let again = hub
            .call(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"email": "ada@example.org", "password": "another lengthy one"})),
            )
            .await;
        let first = hub
            .call(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"email": "newcomer@example.org", "password": "another lengthy one"})),
            )
            .await;
        assert_eq!(again.status, StatusCode::ACCEPTED);
        assert_eq!((again.status, &again.body), (first.status, &first.body));
        let taken_over = hub
            .call(
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"email": "ada@example.org", "password": "another lengthy one"})),
            )
            .await;
        assert_eq!(taken_over.status, StatusCode::UNAUTHORIZED);

        // Passwords that are tried first are refused, saying why.
        for weak in [
            "password",
            "        ",
            "ada2@example.org",
            "12345678",
            "qwertyuiop",
        ] {
            let refused = hub
                .call(
                    Method::POST,
                    "/v1/signup",
                    None,
                    Some(json!({"email": "ada2@example.org", "password": weak})),
                )
                .await;
            assert_eq!(
                (refused.status, refused.code()),
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
                "{weak:?}"
            );
            assert!(
                refused.body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("8 to 1024") || m.contains("too easy to guess")),
                "{weak:?}: {}",
                refused.body
            );
        }

        for (email, password) in [
            ("ada@example.org", "wrong password"),
            ("nobody@example.org", PASSWORD),
        ] {
            let refused = hub
                .call(
                    Method::POST,
                    "/v1/login",
                    None,
                    Some(json!({"email": email, "password": password})),
                )
                .await;
            assert_eq!(
                (refused.status, refused.code()),
                (StatusCode::UNAUTHORIZED, "unauthorized")
            );
            assert_eq!(refused.body["message"], "wrong email or password");
        }
    }
}

#[tokio::test]
async fn every_class_of_bad_input_gets_a_stable_4xx() {
    for hub in hubs().await {
        let token = hub.signup("bad@example.org").await;
        let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
            (
                json_request("/v1/signup", "{\"email\": "),
                StatusCode::BAD_REQUEST,
                "invalid_json",
            ),
            (
                json_request("/v1/signup", "{\"email\": 7}"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
            ),
            (
                json_request("/v1/signup", "[]"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
            ),
            (
                Request::post("/v1/signup")
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(Body::from("x"))
                    .expect("req"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                json_request(
                    "/v1/signup",
                    &format!("{{\"email\": \"{}\"}}", "a".repeat(100 << 10)),
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                json_request(
                    "/v1/signup",
                    "{\"email\": \"not-an-email\", \"password\": \"long enough\"}",
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
            (
                json_request(
                    "/v1/signup",
                    "{\"email\": \"a@b.org\", \"password\": \"short\"}",
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
            (
                Request::get("/v1/nothing-here")
                    .body(Body::empty())
                    .expect("req"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Request::delete("/v1/login")
                    .body(Body::empty())
                    .expect("req"),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            (
                Request::get("/v1/me").body(Body::empty()).expect("req"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Request::get("/v1/me")
                    .header(header::AUTHORIZATION, "Basic abc")
                    .body(Body::empty())
                    .expect("req"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Request::get("/v1/me")
                    .header(header::AUTHORIZATION, "Bearer ses_forged")
                    .body(Body::empty())
                    .expect("req"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                authed(Request::get("/v1/devices/not-a-uuid"), &token),
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                authed(Request::get("/v1/allocations?limit=lots"), &token),
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                authed(
                    Request::get("/v1/devices/00000000-0000-0000-0000-000000000000"),
                    &token,
                ),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                authed(Request::get("/v1/blobs/xyz"), &token),
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            // A session is not a device credential, and a forged device credential is nothing.
            (
                authed(Request::get("/v1/device/instructions?wait=0"), &token),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                authed(
                    Request::get("/v1/device/instructions?wait=0"),
                    &format!("dev_{}_forged", uuid::Uuid::new_v4().simple()),
                ),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
        ];
        for (request, status, code) in cases {
            let what = format!("{} {}", request.method(), request.uri());
            let reply = hub.send(request).await;
            assert_eq!(
                (reply.status, reply.code()),
                (status, code),
                "{what}: {}",
                reply.body
            );
        }
    }
}

fn json_request(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

fn authed(builder: axum::http::request::Builder, token: &str) -> Request<Body> {
    builder
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn devices_are_registered_listed_and_revoked_by_their_owner_only() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (laptop, laptop_token) = hub.device(&ada, "laptop").await;
        let (_desktop, _) = hub.device(&ada, "desktop").await;

        let listed = hub.call(Method::GET, "/v1/devices", Some(&ada), None).await;
        let names: Vec<&str> = listed
            .body
            .as_array()
            .expect("list")
            .iter()
            .map(|d| d["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["laptop", "desktop"]);
        assert_eq!(listed.body[0]["last_heartbeat"], Value::Null);
        let bobs = hub.call(Method::GET, "/v1/devices", Some(&bob), None).await;
        assert_eq!(bobs.body, json!([]));

        // Bob can neither see nor revoke Ada's device: it does not exist for him.
        for method in [Method::GET, Method::DELETE] {
            let reply = hub
                .call(method, &format!("/v1/devices/{laptop}"), Some(&bob), None)
                .await;
            assert_eq!(
                (reply.status, reply.code()),
                (StatusCode::NOT_FOUND, "not_found")
            );
        }
        let bad_name = hub
            .call(
                Method::POST,
                "/v1/devices",
                Some(&ada),
                Some(json!({"name": "  "})),
            )
            .await;
        assert_eq!(bad_name.code(), "validation_failed");

        assert_eq!(
            hub.heartbeat(&laptop_token, report()).await.status,
            StatusCode::OK
        );
        let revoked = hub
            .call(
                Method::DELETE,
                &format!("/v1/devices/{laptop}"),
                Some(&ada),
                None,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT);
        let refused = hub.heartbeat(&laptop_token, report()).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::FORBIDDEN, "device_revoked")
        );

        // The plan's device limit holds.
        for n in 0..4 {
            hub.device(&ada, &format!("extra {n}")).await;
        }
        let over = hub
            .call(
                Method::POST,
                "/v1/devices",
                Some(&ada),
                Some(json!({"name": "one too many"})),
            )
            .await;
        assert_eq!(
            (over.status, over.code()),
            (StatusCode::FORBIDDEN, "quota_exceeded")
        );
    }
}

#[tokio::test]
async fn heartbeats_record_the_report_and_the_spare_resources() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (id, device) = hub.device(&ada, "desktop").await;
        let reply = hub.heartbeat(&device, report()).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["spare"]["storage_bytes"], 10 * GIB);
        assert_eq!(reply.body["spare"]["compute_slots"], 2);
        assert_eq!(reply.body["next_heartbeat_seconds"], 5);

        let shown = hub
            .call(Method::GET, &format!("/v1/devices/{id}"), Some(&ada), None)
            .await;
        assert_eq!(shown.body["report"]["cpu"]["cores"], 4);
        assert_eq!(shown.body["spare_storage_bytes"], 10 * GIB);
        assert_eq!(shown.body["online"], true);
        assert!(shown.body["last_heartbeat"].as_i64().is_some());
        assert!(
            shown.body["availability_7d"]
                .as_f64()
                .is_some_and(|a| a > 0.0 && a <= 1.0)
        );

        let mut busy = report();
        busy["user"] = json!({"session": "idle", "idle_seconds": 10});
        busy["consent"]["storage"] = json!(false);
        let reply = hub.heartbeat(&device, busy).await;
        assert_eq!(reply.body["spare"]["compute_slots"], 0);
        assert_eq!(reply.body["spare"]["compute_reason"], "user_active");
        assert_eq!(reply.body["spare"]["storage_reason"], "no_consent");

        // Numbers at the edges of their types are answered, not crashed on.
        let mut huge = report();
        huge["disk"]["free_bytes"] = json!(u64::MAX);
        huge["vault"]["reserved_bytes"] = json!(u64::MAX);
        huge["vault"]["quota_bytes"] = json!(u64::MAX);
        assert_eq!(hub.heartbeat(&device, huge).await.status, StatusCode::OK);
        let mut offset = report();
        offset["utc_offset_minutes"] = json!(i32::MIN);
        assert_eq!(
            hub.heartbeat(&device, offset).await.code(),
            "validation_failed"
        );
        let mut negative = report();
        negative["disk"]["free_bytes"] = json!(-1);
        assert_eq!(
            hub.heartbeat(&device, negative).await.code(),
            "invalid_json"
        );

        let mut nonsense = report();
        nonsense["cpu"]["busy_percent"] = json!(250.0);
        let reply = hub.heartbeat(&device, nonsense).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        );
        assert!(
            reply.body["message"]
                .as_str()
                .expect("message")
                .contains("busy_percent")
        );
    }
}

#[tokio::test]
async fn probes_reach_a_long_polling_device_and_acks_are_idempotent() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (id, device) = hub.device(&ada, "desktop").await;
        let (_, other) = hub.device(&ada, "laptop").await;
        assert!(hub.poll(&device, 0).await.is_empty());

        // A probe wakes a device that is already waiting.
        let device_id = uuid::Uuid::parse_str(&id).expect("uuid");
        let probe = async {
            wait_until(|| async { hub.hub.long_poll_waiting(device_id) }).await;
            let path = format!("/v1/devices/{id}/probe");
            hub.call(Method::POST, &path, Some(&ada), None).await
        };
        let (batch, probe) = tokio::join!(hub.poll(&device, 20), probe);
        assert_eq!(probe.status, StatusCode::ACCEPTED);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0]["kind"]["type"], "report_status");
        let instruction = batch[0]["id"].as_str().expect("id").to_owned();

        let ack = json!({"result": {"status": "reported", "report": report()}, "vault": null});
        let path = format!("/v1/device/instructions/{instruction}/ack");
        let stolen = hub
            .call(Method::POST, &path, Some(&other), Some(ack.clone()))
            .await;
        assert_eq!(
            (stolen.status, stolen.code()),
            (StatusCode::NOT_FOUND, "not_found")
        );
        assert_eq!(
            hub.call(Method::POST, &path, Some(&device), Some(ack.clone()))
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            hub.call(Method::POST, &path, Some(&device), Some(ack))
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        let shown = hub
            .call(Method::GET, &format!("/v1/devices/{id}"), Some(&ada), None)
            .await;
        assert_eq!(shown.body["report"]["agent_version"], "0.1.0");
        assert!(
            hub.poll(&device, 0).await.is_empty(),
            "an acknowledged instruction is not delivered again"
        );

        // Probing all devices queues one request each.
        let all = hub
            .call(Method::POST, "/v1/devices/probe", Some(&ada), None)
            .await;
        assert_eq!(all.body["devices"].as_array().map(Vec::len), Some(2));
    }
}

#[tokio::test]
async fn an_instruction_queued_by_another_process_reaches_a_long_poll() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (id, device) = hub.device(&ada, "desktop").await;
        // A second hub on the same database, as an admin command or another replica would be.
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = open_hub(&hub.database, other_dir.path(), Settings::default(), false).await;
        let device_id = uuid::Uuid::parse_str(&id).expect("uuid");
        let poll = hub.poll(&device, 20);
        let queue = async {
            // Queue only once the poll is waiting on the first hub.
            wait_until(|| async { hub.hub.long_poll_waiting(device_id) }).await;
            other
                .instruct(device_id, surplus_protocol::InstructionKind::ReportStatus)
                .await
                .expect("queued")
        };
        let (batch, queued) = tokio::join!(poll, queue);
        let ids: Vec<&str> = batch.iter().filter_map(|i| i["id"].as_str()).collect();
        let queued = queued.id.to_string();
        // Without the wake-up the poll would run out its 20 s and return nothing.
        assert_eq!(
            ids,
            [queued.as_str()],
            "the waiting long poll is woken with the other process's instruction"
        );
    }
}

#[tokio::test]
async fn each_duty_is_held_by_one_replica_at_a_time() {
    use surplus_hub::store::Duty;
    for hub in quiet_hubs().await {
        // A second process on the same database, as another replica would be.
        let other = Store::connect(&hub.database).await.expect("open the store");
        if hub.database.starts_with("sqlite://") {
            // SQLite is served by one process: a second serving hub is refused, by name.
            let serving = hub
                .hub
                .store
                .claim_serving()
                .expect("claim")
                .expect("a claim");
            let refused = other.claim_serving().expect_err("a second hub is refused");
            let message = refused.to_string();
            assert!(
                message.contains("another hub already serves")
                    && message.contains(&std::process::id().to_string())
                    && message.contains("PostgreSQL"),
                "{message}"
            );
            drop(serving);
            assert!(other.claim_serving().expect("claim").is_some());
            continue;
        }
        let placing = hub
            .hub
            .store
            .exclusive(Duty::Placement)
            .await
            .expect("take the placement duty");
        assert!(
            other
                .try_exclusive(Duty::Placement)
                .await
                .expect("ask")
                .is_none(),
            "while one replica places, another cannot"
        );
        let dispatching = other
            .try_exclusive(Duty::Dispatch)
            .await
            .expect("ask")
            .expect("another duty is free");
        placing.release().await.expect("release");
        let placing = other
            .try_exclusive(Duty::Placement)
            .await
            .expect("ask")
            .expect("released, the duty is free again");
        assert!(
            hub.hub
                .store
                .try_exclusive(Duty::Dispatch)
                .await
                .expect("ask")
                .is_none()
        );
        // A duty dropped without release is given back with its connection's transaction.
        drop(placing);
        dispatching.release().await.expect("release");
        let again = hub
            .hub
            .store
            .exclusive(Duty::Placement)
            .await
            .expect("a dropped duty is released");
        again.release().await.expect("release");
        other.close().await;
    }
}

#[tokio::test]
async fn blobs_are_verified_on_upload_and_private_to_their_owner() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let content = b"a blob of bytes".repeat(100);
        let hash = blake3::hash(&content).to_hex().to_string();
        let uploaded = hub.upload(&ada, &content).await;
        assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
        assert_eq!(uploaded.body["size"], content.len());

        let wrong = Request::put(format!("/v1/blobs/{}", "ab".repeat(32)))
            .header(header::AUTHORIZATION, format!("Bearer {ada}"))
            .header(header::CONTENT_LENGTH, content.len())
            .body(Body::from(content.clone()))
            .expect("request");
        let reply = hub.send(wrong).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "hash_mismatch")
        );

        let unsized_upload = Request::put(format!("/v1/blobs/{hash}"))
            .header(header::AUTHORIZATION, format!("Bearer {ada}"))
            .body(Body::from(content.clone()))
            .expect("request");
        let reply = hub.send(unsized_upload).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "bad_request")
        );

        let huge = vec![7u8; (1 << 20) + 1];
        let reply = hub.upload(&ada, &huge).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
        // Nothing of a refused upload is left in staging.
        if hub.local_staging {
            let leftovers = std::fs::read_dir(hub.staging.join("tmp"))
                .expect("tmp")
                .count();
            assert_eq!(leftovers, 0);
        }
        let huge_hash = blake3::hash(&huge).to_hex().to_string();
        assert!(!hub.staging.join(&huge_hash[..2]).join(&huge_hash).exists());

        let mine = hub
            .call(Method::GET, &format!("/v1/blobs/{hash}"), Some(&ada), None)
            .await;
        assert_eq!((mine.status, mine.bytes), (StatusCode::OK, content.clone()));
        let theirs = hub
            .call(Method::GET, &format!("/v1/blobs/{hash}"), Some(&bob), None)
            .await;
        assert_eq!(
            (theirs.status, theirs.code()),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let place = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&bob),
                Some(json!({"hash": hash, "copies": 1})),
            )
            .await;
        assert_eq!(
            (place.status, place.code()),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let zero = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&ada),
                Some(json!({"hash": hash, "copies": 0})),
            )
            .await;
        assert_eq!(
            (zero.status, zero.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        );
    }
}

#[tokio::test]
async fn a_placed_blob_is_allocated_stored_confirmed_and_recorded() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let carol = hub.signup("carol@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (bob_pc_id, bob_pc) = hub.device(&bob, "bob-pc").await;
        let (_, carol_pc) = hub.device(&carol, "carol-pc").await;
        let mut no_storage = report();
        no_storage["consent"]["storage"] = json!(false);
        hub.heartbeat(&carol_pc, no_storage).await;
        hub.heartbeat(&bob_pc, report()).await;

        let content = b"kept on someone else's disk".repeat(40);
        let hash = blake3::hash(&content).to_hex().to_string();
        assert_eq!(
            hub.upload(&ada_pc, &content).await.status,
            StatusCode::CREATED
        );
        let placed = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&ada_pc),
                Some(json!({"hash": hash, "copies": 1})),
            )
            .await;
        assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
        assert_eq!(placed.body["holders"][0]["device_id"], bob_pc_id.as_str());
        assert_eq!(placed.body["holders"][0]["state"], "pending");

        // Only Bob's device consented to storage, so only it is told to store.
        assert!(hub.poll(&carol_pc, 0).await.is_empty());
        let batch = hub.poll(&bob_pc, 2).await;
        assert_eq!(batch.len(), 1);
        let store = &batch[0];
        assert_eq!(store["kind"]["type"], "store_blob");
        assert_eq!(store["kind"]["blob"]["hash"], hash.as_str());

        // The holder may fetch it; a bystander may not.
        let fetched = hub
            .call(
                Method::GET,
                &format!("/v1/blobs/{hash}"),
                Some(&bob_pc),
                None,
            )
            .await;
        assert_eq!(fetched.bytes, content);
        let bystander = hub
            .call(
                Method::GET,
                &format!("/v1/blobs/{hash}"),
                Some(&carol_pc),
                None,
            )
            .await;
        assert_eq!(bystander.status, StatusCode::NOT_FOUND);

        let mut vault = report()["vault"].clone();
        vault["used_bytes"] = json!(content.len());
        let ack = json!({"result": {"status": "stored", "hash": hash, "size": content.len()}, "vault": vault});
        let id = store["id"].as_str().expect("id");
        let acked = hub
            .call(
                Method::POST,
                &format!("/v1/device/instructions/{id}/ack"),
                Some(&bob_pc),
                Some(ack),
            )
            .await;
        assert_eq!(acked.status, StatusCode::NO_CONTENT, "{}", acked.body);

        let placement = hub
            .call(
                Method::GET,
                &format!("/v1/placements/{hash}"),
                Some(&ada),
                None,
            )
            .await;
        assert_eq!(placement.body["holders"][0]["state"], "active");
        // Once every copy is confirmed the hub drops its staged copy.
        until_staged_copy_dropped(&hub, &ada, &hash).await;
        assert!(!hub.staging.join(&hash[..2]).join(&hash).exists());

        // The ledger records who, where, what, how much, why and which instruction.
        for (who, sees) in [(&ada, 1), (&bob, 1), (&carol, 0)] {
            let ledger = hub
                .call(Method::GET, "/v1/allocations", Some(who), None)
                .await;
            assert_eq!(
                ledger.body.as_array().map(Vec::len),
                Some(sees),
                "{}",
                ledger.body
            );
        }
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&ada), None)
            .await;
        let entry = &ledger.body[0];
        assert_eq!(entry["subscriber"], "ada@example.org");
        // Ada learns that another subscriber's device holds it, not whose.
        assert_eq!(entry["donor"], "another subscriber");
        assert_eq!(entry["device_name"], "another subscriber's device");
        assert_eq!(entry["kind"], "storage");
        assert_eq!(entry["amount"], content.len());
        assert_eq!(entry["purpose"], format!("blob:{hash}"));
        assert_eq!(entry["state"], "active");
        assert_eq!(entry["instructions"], json!([id]));
        let bobs = hub
            .call(Method::GET, "/v1/allocations", Some(&bob), None)
            .await;
        assert_eq!(bobs.body[0]["subscriber"], "another subscriber");
        assert_eq!(bobs.body[0]["donor"], "bob@example.org");
        assert_eq!(bobs.body[0]["device_name"], "bob-pc");

        // Withdrawing consent marks the data to move away.
        let mut withdrawn = report();
        withdrawn["consent"]["storage"] = json!(false);
        withdrawn["vault"]["used_bytes"] = json!(content.len());
        hub.heartbeat(&bob_pc, withdrawn).await;
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&ada), None)
            .await;
        assert_eq!(ledger.body[0]["state"], "evacuating");
    }
}

#[tokio::test]
async fn a_suspended_subscriber_gets_no_new_allocations_and_is_told_why() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (_, device) = hub.device(&ada, "pc").await;
        let content = b"suspended".to_vec();
        let hash = blake3::hash(&content).to_hex().to_string();
        hub.upload(&ada, &content).await;
        surplus_hub::admin::set_status(
            &hub.hub,
            "ada@example.org",
            surplus_protocol::SubscriberStatus::Suspended,
        )
        .await
        .expect("suspend");
        let refused = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&ada),
                Some(json!({"hash": hash, "copies": 1})),
            )
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::FORBIDDEN, "subscriber_suspended")
        );
        assert!(
            refused.body["message"]
                .as_str()
                .expect("message")
                .contains("suspended")
        );

        let beat = hub.heartbeat(&device, report()).await;
        assert_eq!(beat.body["spare"]["storage_reason"], "subscriber_inactive");

        surplus_hub::admin::set_status(
            &hub.hub,
            "ada@example.org",
            surplus_protocol::SubscriberStatus::Active,
        )
        .await
        .expect("resume");
        let allowed = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&ada),
                Some(json!({"hash": hash, "copies": 1})),
            )
            .await;
        assert_eq!(allowed.status, StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn health_metrics_and_the_committed_openapi_document() {
    for hub in hubs().await {
        let health = hub.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(
            (health.status, health.bytes.as_slice()),
            (StatusCode::OK, b"ok\n".as_slice())
        );
        let ada = hub.signup("ada@example.org").await;
        let (_, device) = hub.device(&ada, "pc").await;
        hub.heartbeat(&device, report()).await;
        let metrics = hub.call(Method::GET, "/metrics", None, None).await;
        let text = String::from_utf8(metrics.bytes).expect("text");
        assert!(text.contains("surplus_hub_heartbeats_total 1"), "{text}");
        assert!(text.contains("route=\"/v1/signup\""), "{text}");
        // The durability figures, as the scheduler sets them once a minute.
        let report = surplus_hub::health::report(&hub.hub, surplus_hub::now_ms())
            .await
            .expect("report");
        hub.hub.metrics.durability(&report);
        let metrics = hub.call(Method::GET, "/metrics", None, None).await;
        let text = String::from_utf8(metrics.bytes).expect("text");
        assert!(text.contains("surplus_hub_repair_queue 0"), "{text}");
        assert!(
            text.contains("surplus_hub_packs{state=\"protected\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("surplus_hub_durability_bytes_24h{kind=\"repair\"} 0"),
            "{text}"
        );

        let served = hub.call(Method::GET, "/v1/openapi.json", None, None).await;
        let committed: Value = serde_json::from_str(include_str!("../openapi.json"))
            .expect("committed document parses");
        assert_eq!(
            served.body, committed,
            "the committed openapi.json is stale: run `surplus-hub openapi > crates/surplus-hub/openapi.json`"
        );
        for path in [
            "/v1/device/heartbeat",
            "/v1/device/instructions",
            "/v1/placements",
            "/v1/allocations",
        ] {
            assert!(committed["paths"][path].is_object(), "{path} is documented");
        }
    }
}

/// Polls a condition until it holds, failing after a generous deadline.
async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the hub has dropped its staged copy of `owner`'s blob (every copy confirmed).
async fn until_staged_copy_dropped(hub: &TestHub, owner: &str, hash: &str) {
    wait_until(|| async {
        hub.call(
            Method::GET,
            &format!("/v1/placements/{hash}"),
            Some(owner),
            None,
        )
        .await
        .body["staged"]
            == json!(false)
    })
    .await;
}

/// Uploads `content` as the owner, places one copy, and has the holder fetch and confirm it.
async fn store_one_copy(hub: &TestHub, owner: &str, holder: &str, content: &[u8]) -> String {
    let hash = blake3::hash(content).to_hex().to_string();
    assert_eq!(hub.upload(owner, content).await.status, StatusCode::CREATED);
    let placed = hub
        .call(
            Method::POST,
            "/v1/placements",
            Some(owner),
            Some(json!({"hash": hash, "copies": 1})),
        )
        .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let batch = hub.poll(holder, 2).await;
    let store = batch
        .iter()
        .find(|i| i["kind"]["blob"]["hash"] == hash.as_str())
        .expect("a store_blob for the holder");
    let id = store["id"].as_str().expect("id");
    let ack =
        json!({"result": {"status": "stored", "hash": hash, "size": content.len()}, "vault": null});
    let acked = hub
        .call(
            Method::POST,
            &format!("/v1/device/instructions/{id}/ack"),
            Some(holder),
            Some(ack),
        )
        .await;
    assert_eq!(acked.status, StatusCode::NO_CONTENT);
    hash
}

/// An owner asking for a blob back may wait (long poll) until a holder has sent it: the answer
/// comes as soon as the holder's upload lands, and, with nobody sending it, when the wait ends,
/// saying it is not staged.
#[tokio::test]
async fn an_owner_waiting_for_a_blob_hears_as_soon_as_its_holder_sends_it() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (bob_pc_id, bob_pc) = hub.device(&bob, "bob-pc").await;
        hub.heartbeat(&bob_pc, report()).await;
        let content = b"wanted back".repeat(100);
        let hash = store_one_copy(&hub, &ada_pc, &bob_pc, &content).await;
        until_staged_copy_dropped(&hub, &ada, &hash).await;
        let retrieve = |wait: u64| {
            let path = format!("/v1/blobs/{hash}/retrieve?wait={wait}");
            let token = ada_pc.clone();
            let hub = &hub;
            async move { hub.call(Method::POST, &path, Some(&token), None).await }
        };

        // Nobody sends it: the answer comes when the wait is over, and says so.
        let asked = tokio::time::Instant::now();
        let alone = retrieve(1).await;
        assert_eq!(alone.status, StatusCode::ACCEPTED, "{}", alone.body);
        assert_eq!(alone.body["staged"], false);
        assert_eq!(alone.body["requested_from"], json!([bob_pc_id]));
        assert!(asked.elapsed() >= Duration::from_secs(1), "it did not wait");

        // Bob is told to send it back; Ada's second request waits while he does.
        let asked = tokio::time::Instant::now();
        let (answer, ()) = tokio::join!(retrieve(30), async {
            let batch = hub.poll(&bob_pc, 5).await;
            assert!(
                batch.iter().any(|i| i["kind"]["type"] == "upload_blob"),
                "{batch:?}"
            );
            assert_eq!(
                hub.upload(&bob_pc, &content).await.status,
                StatusCode::CREATED
            );
        });
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        assert_eq!(answer.body["staged"], true, "{}", answer.body);
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "the answer waited out its wait"
        );
    }
}

#[tokio::test]
async fn shrinking_a_quota_below_what_is_held_marks_the_newest_data_to_move() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        hub.heartbeat(&bob_pc, report()).await;
        let older = store_one_copy(&hub, &ada_pc, &bob_pc, &[1u8; 3000]).await;
        let newer = store_one_copy(&hub, &ada_pc, &bob_pc, &[2u8; 5000]).await;

        // The user lowers the quota to 4000 bytes while the vault holds 8000: 4000 must move,
        // which the newer 5000-byte blob covers; the older one stays.
        let mut shrunk = report();
        shrunk["vault"]["quota_bytes"] = json!(4000);
        shrunk["vault"]["used_bytes"] = json!(8000);
        shrunk["vault"]["reserved_bytes"] = json!(0);
        let beat = hub.heartbeat(&bob_pc, shrunk.clone()).await;
        assert_eq!(beat.body["spare"]["storage_reason"], "vault_full");
        assert_eq!(holder_state(&hub, &ada, &newer).await, "evacuating");
        assert_eq!(holder_state(&hub, &ada, &older).await, "active");
        // Reporting the same again marks nothing more.
        hub.heartbeat(&bob_pc, shrunk).await;
        assert_eq!(holder_state(&hub, &ada, &older).await, "active");
    }
}

/// The state of the first holder of a blob, as its owner sees it.
async fn holder_state(hub: &TestHub, owner: &str, hash: &str) -> String {
    let placement = hub
        .call(
            Method::GET,
            &format!("/v1/placements/{hash}"),
            Some(owner),
            None,
        )
        .await;
    placement.body["holders"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_wrapped_key_and_backup_objects_are_kept_for_their_owner_only() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;

        let none = hub
            .call(Method::GET, "/v1/backup/key", Some(&ada), None)
            .await;
        assert_eq!(
            (none.status, none.code()),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let put = hub
            .call(
                Method::PUT,
                "/v1/backup/key",
                Some(&ada_pc),
                Some(json!({"wrapped": "{\"v\":1}"})),
            )
            .await;
        assert_eq!(put.status, StatusCode::NO_CONTENT);
        let got = hub
            .call(Method::GET, "/v1/backup/key", Some(&ada), None)
            .await;
        assert_eq!(got.body["wrapped"], "{\"v\":1}");
        assert_eq!(
            hub.call(Method::GET, "/v1/backup/key", Some(&bob), None)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let empty = hub
            .call(
                Method::PUT,
                "/v1/backup/key",
                Some(&ada),
                Some(json!({"wrapped": ""})),
            )
            .await;
        assert_eq!(empty.code(), "validation_failed");

        let object = |method: Method, path: &str, token: &str, body: Vec<u8>| {
            Request::builder()
                .method(method)
                .uri(path.to_owned())
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::from(body))
                .expect("request")
        };
        let stored = hub
            .send(object(
                Method::PUT,
                "/v1/backup/objects/snapshot/0abc",
                &ada_pc,
                b"sealed bytes".to_vec(),
            ))
            .await;
        assert_eq!(stored.status, StatusCode::NO_CONTENT);
        let read = hub
            .send(object(
                Method::GET,
                "/v1/backup/objects/snapshot/0abc",
                &ada,
                Vec::new(),
            ))
            .await;
        assert_eq!(
            (read.status, read.bytes),
            (StatusCode::OK, b"sealed bytes".to_vec())
        );
        let listed = hub
            .call(Method::GET, "/v1/backup/objects/snapshot", Some(&ada), None)
            .await;
        assert_eq!(listed.body, json!(["0abc"]));
        // Bob sees nothing of Ada's, and cannot delete it.
        assert_eq!(
            hub.call(Method::GET, "/v1/backup/objects/snapshot", Some(&bob), None)
                .await
                .body,
            json!([])
        );
        for method in [Method::GET, Method::DELETE] {
            let reply = hub
                .send(object(
                    method,
                    "/v1/backup/objects/snapshot/0abc",
                    &bob,
                    Vec::new(),
                ))
                .await;
            assert_eq!(
                (reply.status, reply.code()),
                (StatusCode::NOT_FOUND, "not_found")
            );
        }
        for (path, code) in [
            ("/v1/backup/objects/secrets/0abc", "bad_request"),
            ("/v1/backup/objects/snapshot/NOT-HEX", "bad_request"),
        ] {
            assert_eq!(
                hub.send(object(Method::PUT, path, &ada, b"x".to_vec()))
                    .await
                    .code(),
                code,
                "{path}"
            );
        }
        let huge = hub
            .send(object(
                Method::PUT,
                "/v1/backup/objects/index/01",
                &ada,
                vec![0; (16 << 20) + 1],
            ))
            .await;
        assert_eq!(
            (huge.status, huge.code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
        let deleted = hub
            .send(object(
                Method::DELETE,
                "/v1/backup/objects/snapshot/0abc",
                &ada,
                Vec::new(),
            ))
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_eq!(
            hub.call(Method::GET, "/v1/backup/objects/snapshot", Some(&ada), None)
                .await
                .body,
            json!([])
        );
    }
}

#[tokio::test]
async fn the_shards_of_a_pack_go_to_distinct_subscribers_never_the_owner() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, ada_laptop) = hub.device(&ada, "ada-laptop").await;
        hub.heartbeat(&ada_laptop, report()).await;
        let mut owners = std::collections::HashMap::new();
        for who in ["bob", "carol", "dave"] {
            let session = hub.signup(&format!("{who}@example.org")).await;
            for n in 0..2 {
                let (id, token) = hub.device(&session, &format!("{who}-{n}")).await;
                hub.heartbeat(&token, report()).await;
                owners.insert(id, who);
            }
        }
        let pack = "ab".repeat(32);
        let mut holders = Vec::new();
        for shard in 0..3u8 {
            let content = vec![shard; 1000];
            let hash = blake3::hash(&content).to_hex().to_string();
            assert_eq!(
                hub.upload(&ada_pc, &content).await.status,
                StatusCode::CREATED
            );
            let placed = hub
                .call(
                    Method::POST,
                    "/v1/placements",
                    Some(&ada_pc),
                    Some(json!({"hash": hash, "copies": 1, "pack": pack})),
                )
                .await;
            assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
            let holder = placed.body["holders"][0]["device_id"]
                .as_str()
                .expect("a holder")
                .to_owned();
            holders.push(owners.get(&holder).copied().unwrap_or("ada"));
        }
        holders.sort();
        assert_eq!(
            holders,
            ["bob", "carol", "dave"],
            "one shard per subscriber, none on Ada's own devices"
        );

        // A fourth shard has nowhere to go: every other subscriber holds one already.
        let content = vec![9u8; 1000];
        let hash = blake3::hash(&content).to_hex().to_string();
        hub.upload(&ada_pc, &content).await;
        let placed = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&ada_pc),
                Some(json!({"hash": hash, "copies": 1, "pack": pack})),
            )
            .await;
        assert_eq!(placed.body["holders"], json!([]));

        // Automatic coding from the holders there are: three other subscribers.
        let plan = hub
            .call(Method::GET, "/v1/backup/settings", Some(&ada_pc), None)
            .await;
        assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
        assert_eq!(plan.body["eligible_holders"], 3);
        assert_eq!(plan.body["coding"], json!({"data": 1, "parity": 2}));
        assert_eq!(plan.body["warning"], Value::Null);

        // In household mode Ada's laptop may take a shard too (never the device backing up).
        let plan = hub
            .call(
                Method::PUT,
                "/v1/backup/settings",
                Some(&ada),
                Some(json!({"household": true})),
            )
            .await;
        assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
        let plan = hub
            .call(Method::GET, "/v1/backup/settings", Some(&ada_pc), None)
            .await;
        assert_eq!(plan.body["eligible_holders"], 4);
        assert_eq!(plan.body["coding"], json!({"data": 2, "parity": 2}));
        let placed = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&ada_pc),
                Some(json!({"hash": hash, "copies": 1, "pack": pack})),
            )
            .await;
        let holder = placed.body["holders"][0]["device_id"].clone();
        let laptop_id = hub
            .call(Method::GET, "/v1/devices", Some(&ada), None)
            .await
            .body
            .as_array()
            .expect("devices")
            .iter()
            .find(|d| d["name"] == "ada-laptop")
            .map(|d| d["id"].clone())
            .expect("the laptop");
        assert_eq!(holder, laptop_id, "the household's own laptop holds it");

        // A coding chosen by hand is kept, and too few holders for it is said.
        let plan = hub
            .call(
                Method::PUT,
                "/v1/backup/settings",
                Some(&ada),
                Some(json!({"household": false, "coding": {"data": 4, "parity": 6}})),
            )
            .await;
        assert_eq!(plan.body["coding"], json!({"data": 4, "parity": 6}));
        let warning = plan.body["warning"].as_str().expect("a warning");
        assert!(warning.contains("needs 10 holders"), "{warning}");
        for bad in [
            json!({"coding": {"data": 0, "parity": 2}}),
            json!({"coding": {"data": 20, "parity": 20}}),
            json!({"coding": {"data": -1, "parity": 2}}),
            json!({"household": "yes"}),
        ] {
            let reply = hub
                .call(Method::PUT, "/v1/backup/settings", Some(&ada), Some(bad))
                .await;
            assert!(reply.status.is_client_error(), "{}", reply.body);
        }
        // Another subscriber's settings are their own.
        let bob = hub.signup("bob2@example.org").await;
        let theirs = hub
            .call(Method::GET, "/v1/backup/settings", Some(&bob), None)
            .await;
        assert_eq!(
            theirs.body["settings"],
            json!({"household": false, "coding": null})
        );

        let bad = hub
            .call(
                Method::POST,
                "/v1/placements",
                Some(&ada_pc),
                Some(json!({"hash": hash, "copies": 1, "pack": "Not Hex"})),
            )
            .await;
        assert_eq!(bad.code(), "validation_failed");
    }
}

#[tokio::test]
async fn shards_are_challenged_at_their_holders_and_a_wrong_answer_fails() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        hub.heartbeat(&bob_pc, report()).await;

        let nothing = hub
            .call(Method::POST, "/v1/backup/verify", Some(&ada), None)
            .await;
        assert_eq!(nothing.status, StatusCode::ACCEPTED);
        assert_eq!(nothing.body["challenged"], 0);

        let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let hash = store_one_copy(&hub, &ada_pc, &bob_pc, &content).await;
        let (outboard, _) = bao::encode::outboard(&content);

        // Bob's agent answers honestly, with the slice asked for.
        let run = hub
            .call(Method::POST, "/v1/backup/verify", Some(&ada_pc), None)
            .await;
        assert_eq!(run.body["challenged"], 1);
        assert_eq!(run.body["waiting"], 1);
        let id = run.body["id"].as_str().expect("id").to_owned();
        let answer = |wrong: bool| {
            let content = content.clone();
            let outboard = outboard.clone();
            let hash = hash.clone();
            move |instruction: &Value| {
                let kind = &instruction["kind"];
                assert_eq!(kind["type"], "verify_blob");
                assert_eq!(kind["hash"], hash.as_str());
                let offset = kind["offset"].as_u64().expect("offset");
                let length = kind["length"].as_u64().expect("length");
                assert!(offset < 5000 && length > 0);
                let mut extractor = bao::encode::SliceExtractor::new_outboard(
                    std::io::Cursor::new(&content),
                    std::io::Cursor::new(&outboard),
                    offset,
                    length,
                );
                let mut slice = Vec::new();
                std::io::Read::read_to_end(&mut extractor, &mut slice).expect("slice");
                if wrong {
                    let last = slice.len() - 1;
                    slice[last] ^= 1;
                }
                json!({"result": {"status": "verified", "hash": hash, "proof": hex::encode(slice)}, "vault": null})
            }
        };
        let batch = hub.poll(&bob_pc, 2).await;
        let instruction = batch.first().expect("a challenge");
        let ack = hub
            .call(
                Method::POST,
                &format!(
                    "/v1/device/instructions/{}/ack",
                    instruction["id"].as_str().expect("id")
                ),
                Some(&bob_pc),
                Some(answer(false)(instruction)),
            )
            .await;
        assert_eq!(ack.status, StatusCode::NO_CONTENT);
        let run = hub
            .call(
                Method::GET,
                &format!("/v1/backup/verify/{id}"),
                Some(&ada),
                None,
            )
            .await;
        assert_eq!(
            (
                &run.body["passed"],
                &run.body["failed"],
                &run.body["waiting"]
            ),
            (&json!(1), &json!(0), &json!(0)),
            "{}",
            run.body
        );
        assert_eq!(holder_state(&hub, &ada, &hash).await, "active");

        // Nobody else sees Ada's run.
        let theirs = hub
            .call(
                Method::GET,
                &format!("/v1/backup/verify/{id}"),
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        assert_eq!(theirs.code(), "not_found");

        // An answer that does not match the shard fails the challenge and the allocation.
        let run = hub
            .call(Method::POST, "/v1/backup/verify", Some(&ada), None)
            .await;
        let id = run.body["id"].as_str().expect("id").to_owned();
        let batch = hub.poll(&bob_pc, 2).await;
        let instruction = batch.first().expect("a challenge");
        hub.call(
            Method::POST,
            &format!(
                "/v1/device/instructions/{}/ack",
                instruction["id"].as_str().expect("id")
            ),
            Some(&bob_pc),
            Some(answer(true)(instruction)),
        )
        .await;
        let run = hub
            .call(
                Method::GET,
                &format!("/v1/backup/verify/{id}"),
                Some(&ada),
                None,
            )
            .await;
        assert_eq!(run.body["failed"], 1, "{}", run.body);
        assert_eq!(run.body["failures"][0]["hash"], hash.as_str());
        let reason = run.body["failures"][0]["reason"].as_str().expect("reason");
        assert!(reason.contains("does not match"), "{reason}");
        assert_eq!(holder_state(&hub, &ada, &hash).await, "lost");
    }
}

/// Uploads content as `token` and returns its blob reference.
async fn staged(hub: &TestHub, token: &str, content: &[u8]) -> Value {
    let reply = hub.upload(token, content).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

/// A WebAssembly module header (the hub checks no more than that).
const WASM: &[u8] = b"\0asm\x01\x00\x00\x00(module stand-in)";

#[tokio::test]
async fn compute_jobs_are_checked_before_they_are_accepted() {
    for hub in hubs().await {
        let alice = hub.signup("alice@example.com").await;
        // A donor that consents to compute but whose user is at the keyboard: the job waits
        // for it rather than failing for want of any donor.
        let bob = hub.signup("bob@example.com").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        let mut busy = report();
        busy["user"] = json!({"session": "idle", "idle_seconds": 10});
        hub.heartbeat(&bob_pc, busy).await;
        let credits = hub
            .call(Method::GET, "/v1/credits", Some(&alice), None)
            .await;
        assert_eq!(
            credits.body["balance"], 36000.0,
            "the plan's starting credit"
        );
        let module = staged(&hub, &alice, WASM).await;
        let input = staged(&hub, &alice, b"1 100").await;
        let input_ref = json!({"name": "a.txt", "hash": input["hash"], "size": input["size"]});
        let submit =
            |body: Value| hub.call(Method::POST, "/v1/compute/jobs", Some(&alice), Some(body));
        for (body, code) in [
            (json!({"module": module, "inputs": []}), "validation_failed"),
            (
                json!({"module": module, "inputs": [input_ref, input_ref]}),
                "validation_failed",
            ),
            (
                json!({"module": module, "inputs": [input_ref], "replicas": 0}),
                "validation_failed",
            ),
            (
                json!({"module": module, "inputs": [input_ref], "replicas": 9}),
                "validation_failed",
            ),
            (
                json!({"module": module, "inputs": [input_ref], "timeout_seconds": 0}),
                "validation_failed",
            ),
            (
                json!({"module": module, "inputs": [input_ref], "memory_bytes": 10}),
                "validation_failed",
            ),
            (
                json!({"module": module, "inputs": [{"name": "../x", "hash": input["hash"], "size": 5}]}),
                "validation_failed",
            ),
            (
                json!({"module": input, "inputs": [input_ref]}),
                "validation_failed",
            ),
            (
                json!({"module": {"hash": "ab".repeat(32), "size": 3}, "inputs": [input_ref]}),
                "validation_failed",
            ),
            (
                json!({"module": module, "inputs": [{"name": "a.txt", "hash": input["hash"], "size": 6}]}),
                "validation_failed",
            ),
            (json!({"module": module}), "invalid_json"),
        ] {
            let reply = submit(body.clone()).await;
            assert_eq!(reply.code(), code, "{body} -> {}", reply.body);
        }
        // Another subscriber cannot use Alice's files, nor see her job.
        let bob = hub.signup("bob@example.com").await;
        let reply = hub
            .call(
                Method::POST,
                "/v1/compute/jobs",
                Some(&bob),
                Some(json!({"module": module, "inputs": [input_ref]})),
            )
            .await;
        assert_eq!(reply.code(), "validation_failed");
        let job = submit(json!({"module": module, "inputs": [input_ref], "args": ["--x"]})).await;
        assert_eq!(job.status, StatusCode::CREATED, "{}", job.body);
        assert_eq!(job.body["state"], "queued");
        assert_eq!(job.body["tasks"][0]["input"], "a.txt");
        let id = job.body["id"].as_str().expect("id");
        let theirs = hub
            .call(
                Method::GET,
                &format!("/v1/compute/jobs/{id}"),
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(theirs.code(), "not_found");
        let listed = hub
            .call(Method::GET, "/v1/compute/jobs", Some(&alice), None)
            .await;
        assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
        let cancelled = hub
            .call(
                Method::POST,
                &format!("/v1/compute/jobs/{id}/cancel"),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(cancelled.body["state"], "cancelled", "{}", cancelled.body);
        assert_eq!(cancelled.body["tasks"][0]["state"], "cancelled");
        let again = hub
            .call(
                Method::POST,
                &format!("/v1/compute/jobs/{id}/cancel"),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(again.code(), "conflict");
    }
}

#[tokio::test]
async fn tasks_run_on_other_subscribers_devices_and_a_dishonest_result_is_outvoted() {
    for hub in hubs().await {
        let submitter = hub.signup("submitter@example.com").await;
        let (_, own_device) = hub.device(&submitter, "submitter-pc").await;
        assert_eq!(
            hub.heartbeat(&own_device, report()).await.status,
            StatusCode::OK
        );
        let mut donors = Vec::new();
        for name in ["ann", "ben", "cat"] {
            let session = hub.signup(&format!("{name}@example.com")).await;
            let (id, token) = hub.device(&session, name).await;
            assert_eq!(hub.heartbeat(&token, report()).await.status, StatusCode::OK);
            donors.push((name, id, token, session));
        }
        let module = staged(&hub, &submitter, WASM).await;
        let mut inputs = Vec::new();
        for n in 0..2 {
            let input = staged(&hub, &submitter, format!("input {n}").as_bytes()).await;
            inputs.push(json!({"name": format!("in-{n}.txt"), "hash": input["hash"], "size": input["size"]}));
        }
        let job = hub
            .call(
                Method::POST,
                "/v1/compute/jobs",
                Some(&submitter),
                Some(json!({"module": module, "inputs": inputs})),
            )
            .await;
        assert_eq!(job.status, StatusCode::CREATED, "{}", job.body);
        let job_id = job.body["id"].as_str().expect("id").to_owned();
        // Donors run what they are sent; `cat` corrupts its outputs.
        let mut runs_by = std::collections::HashMap::<&str, u32>::new();
        for _round in 0..10 {
            for (name, _, token, _) in &donors {
                for instruction in hub.poll(token, 1).await {
                    if instruction["kind"]["type"] != "run_task" {
                        continue;
                    }
                    let kind = &instruction["kind"];
                    // The device may fetch the module and its input, nothing else of the submitter's.
                    for hash in [&kind["module"]["hash"], &kind["input"]["hash"]] {
                        let got = hub
                            .call(
                                Method::GET,
                                &format!("/v1/blobs/{}", hash.as_str().expect("hash")),
                                Some(token),
                                None,
                            )
                            .await;
                        assert_eq!(got.status, StatusCode::OK);
                    }
                    let mut output = format!("result of {}", kind["input"]["name"]).into_bytes();
                    if *name == "cat" {
                        output.push(b'!');
                    }
                    let hash = blake3::hash(&output).to_hex().to_string();
                    let run = kind["run"].as_str().expect("run");
                    let request = Request::builder()
                        .method(Method::PUT)
                        .uri(format!("/v1/device/runs/{run}/outputs/{hash}"))
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .header(header::CONTENT_LENGTH, output.len())
                        .body(Body::from(output.clone()))
                        .expect("request");
                    assert_eq!(hub.send(request).await.status, StatusCode::CREATED);
                    let ack = json!({"result": {"status": "ran", "run": run, "outcome": "success",
                        "output": {"hash": hash, "size": output.len()}, "running_ms": 1500}, "vault": null});
                    let id = instruction["id"].as_str().expect("id");
                    let acked = hub
                        .call(
                            Method::POST,
                            &format!("/v1/device/instructions/{id}/ack"),
                            Some(token),
                            Some(ack),
                        )
                        .await;
                    assert_eq!(acked.status, StatusCode::NO_CONTENT, "{}", acked.body);
                    *runs_by.entry(name).or_default() += 1;
                }
            }
            let state = hub
                .call(
                    Method::GET,
                    &format!("/v1/compute/jobs/{job_id}"),
                    Some(&submitter),
                    None,
                )
                .await;
            if state.body["state"] == "completed" {
                break;
            }
        }
        let job = hub
            .call(
                Method::GET,
                &format!("/v1/compute/jobs/{job_id}"),
                Some(&submitter),
                None,
            )
            .await;
        assert_eq!(job.body["state"], "completed", "{}", job.body);
        assert!(
            runs_by.get("cat").copied().unwrap_or(0) > 0,
            "every donor got work: {runs_by:?}"
        );
        assert!(
            hub.poll(&own_device, 0).await.is_empty(),
            "the submitter's own device runs nothing"
        );
        for task in job.body["tasks"].as_array().expect("tasks") {
            let honest = format!("result of \"{}\"", task["input"].as_str().expect("input"));
            assert_eq!(
                task["output"]["hash"],
                blake3::hash(honest.as_bytes()).to_hex().to_string()
            );
            let valid = task["runs"]
                .as_array()
                .expect("runs")
                .iter()
                .filter(|r| r["state"] == "valid")
                .count();
            assert_eq!(valid, 2, "{task}");
            // The submitter fetches the validated output.
            let got = hub
                .call(
                    Method::GET,
                    &format!(
                        "/v1/blobs/{}",
                        task["output"]["hash"].as_str().expect("hash")
                    ),
                    Some(&submitter),
                    None,
                )
                .await;
            assert_eq!(got.bytes, honest.as_bytes());
        }
        // Cat's results were all outvoted: its trust is gone; the others' grew.
        for (name, id, _, session) in &donors {
            let surplus_hub::store::DeviceTrust {
                streak,
                valid,
                invalid,
            } = hub
                .hub
                .store
                .device_trust(id.parse().expect("uuid"))
                .await
                .expect("trust");
            let credits = hub
                .call(Method::GET, "/v1/credits", Some(session), None)
                .await;
            if *name == "cat" {
                assert_eq!((streak, valid), (0, 0));
                assert_eq!(u64::from(runs_by[name]), invalid);
                assert_eq!(credits.body["earned"], 0.0);
            } else {
                assert_eq!(u64::from(streak), valid);
                assert_eq!(invalid, 0);
                assert_eq!(
                    credits.body["earned"],
                    1.5 * valid as f64,
                    "{}",
                    credits.body
                );
            }
        }
        // The submitter paid for the four valid runs, 1.5 core-seconds each.
        let credits = hub
            .call(Method::GET, "/v1/credits", Some(&submitter), None)
            .await;
        assert_eq!(credits.body["spent"], 6.0, "{}", credits.body);
        assert_eq!(job.body["core_seconds"], 6.0);
        // Each run is a compute allocation in the ledger, released with the time it used.
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&submitter), None)
            .await;
        let compute: Vec<&Value> = ledger
            .body
            .as_array()
            .expect("ledger")
            .iter()
            .filter(|a| a["kind"] == "compute")
            .collect();
        assert_eq!(compute.len() as u32, runs_by.values().sum::<u32>());
        assert!(
            compute
                .iter()
                .all(|a| a["state"] == "released" && a["amount"] == 1500)
        );
        assert!(compute.iter().all(|a| a["donor"] == "another subscriber"));
    }
}

/// A scheduling pass reads open tasks, then sends runs; an acknowledgement may settle a task in
/// between. Sending the settled task again would reopen it: a second verdict on it, trust and
/// credit counted again, and a job that said "completed" with a run still out. The send must
/// refuse it, whatever the interleaving; here the interleaving is fixed by hand.
#[tokio::test]
async fn a_task_settled_while_a_pass_was_deciding_is_not_sent_again() {
    use surplus_hub::store::{NewRun, Settlement};
    for hub in quiet_hubs().await {
        let submitter = hub.signup("submitter@example.com").await;
        let donor_session = hub.signup("donor@example.com").await;
        let (_, donor) = hub.device(&donor_session, "donor-pc").await;
        assert_eq!(hub.heartbeat(&donor, report()).await.status, StatusCode::OK);
        let job_id = one_task_job(&hub, &submitter, 2).await;
        let store = &hub.hub.store;
        let now = surplus_hub::now_ms();
        // The pass reads the task and the donor...
        let tasks = store.open_tasks(10).await.expect("open tasks");
        assert_eq!(tasks.len(), 1);
        let task = &tasks[0];
        let candidates = store.compute_candidates(0).await.expect("candidates");
        assert_eq!(candidates.len(), 1);
        // ...an acknowledgement settles the task...
        store
            .settle_task(
                task.id,
                task.submitter,
                &Settlement::Failed("it trapped on 2 device(s)".into()),
                now,
            )
            .await
            .expect("settle");
        // ...and the pass, deciding on what it read, sends it: refused, nothing written.
        let sent = store
            .assign_run(
                &NewRun {
                    task,
                    device_id: candidates[0].device_id,
                    donor_id: candidates[0].subscriber_id,
                    arch_class: candidates[0].arch_class.clone(),
                    alone: false,
                    deadline: now + 60_000,
                },
                now,
            )
            .await
            .expect("assign");
        assert_eq!(sent, None, "a settled task was sent again");
        let job = hub
            .call(
                Method::GET,
                &format!("/v1/compute/jobs/{job_id}"),
                Some(&submitter),
                None,
            )
            .await;
        let task = &job.body["tasks"][0];
        assert_eq!(task["state"], "failed", "{}", job.body);
        assert_eq!(task["runs"], json!([]), "{}", job.body);
        assert!(
            hub.poll(&donor, 0).await.is_empty(),
            "the donor was told nothing"
        );
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&submitter), None)
            .await;
        assert_eq!(ledger.body, json!([]), "no compute was allocated");
    }
}

/// A trusted device's run may be accepted alone (quorum one). When that run is lost, the task
/// goes to other devices with the job's quorum again: an untrusted device's result is never
/// accepted alone because a trusted one went away.
#[tokio::test]
async fn a_lost_run_that_was_trusted_alone_gives_the_task_its_quorum_back() {
    use surplus_hub::store::NewRun;
    for hub in quiet_hubs().await {
        let submitter = hub.signup("submitter@example.com").await;
        let mut devices = Vec::new();
        for name in ["ann", "ben"] {
            let session = hub.signup(&format!("{name}@example.com")).await;
            let (id, token) = hub.device(&session, name).await;
            assert_eq!(hub.heartbeat(&token, report()).await.status, StatusCode::OK);
            devices.push(id.parse::<uuid::Uuid>().expect("uuid"));
        }
        one_task_job(&hub, &submitter, 2).await;
        let store = &hub.hub.store;
        let candidates = store.compute_candidates(0).await.expect("candidates");
        let donor_of = |device: uuid::Uuid| {
            candidates
                .iter()
                .find(|c| c.device_id == device)
                .expect("a candidate")
                .subscriber_id
        };
        let now = surplus_hub::now_ms();
        let send = |device: uuid::Uuid, alone: bool| async move {
            let tasks = store.open_tasks(10).await.expect("open tasks");
            store
                .assign_run(
                    &NewRun {
                        task: &tasks[0],
                        device_id: device,
                        donor_id: donor_of(device),
                        arch_class: "x86".into(),
                        alone,
                        deadline: now + 60_000,
                    },
                    now,
                )
                .await
                .expect("assign")
                .expect("the task is open")
        };
        // Ann is trusted and the dice said "alone": one result will do.
        send(devices[0], true).await;
        let task = store.open_tasks(10).await.expect("open tasks")[0].id;
        assert_eq!(store.task_header(task).await.expect("task").quorum, 1);
        // Ann's run misses its deadline; the task goes to Ben, and needs two results again.
        assert_eq!(
            store.lose_runs(now + 60_000, 0).await.expect("lose"),
            vec![task]
        );
        send(devices[1], false).await;
        assert_eq!(store.task_header(task).await.expect("task").quorum, 2);
    }
}

/// Stages a module and one input (`a.txt`, "1 100") as `submitter`, and submits them as a job
/// of one task that needs `replicas` identical results. Returns the job's id.
#[tokio::test]
async fn a_tasks_runs_go_to_one_architecture_unless_its_job_asks_to_agree_across_them() {
    for hub in hubs().await {
        let submitter = hub.signup("submitter@example.com").await;
        // One x86 donor, two Arm donors of two subscribers.
        let mut donors = Vec::new();
        for (name, arch) in [("ann", "x86_64"), ("ben", "aarch64"), ("cat", "aarch64")] {
            let session = hub.signup(&format!("{name}@example.com")).await;
            let (_, token) = hub.device(&session, name).await;
            let mut report = report();
            report["arch"] = json!(arch);
            assert_eq!(hub.heartbeat(&token, report).await.status, StatusCode::OK);
            donors.push((name, token));
        }
        let module = staged(&hub, &submitter, WASM).await;
        let input = staged(&hub, &submitter, b"1 100").await;
        let submit = |cross: Option<bool>| {
            let mut body = json!({"module": module, "replicas": 2,
                "inputs": [{"name": "a.txt", "hash": input["hash"], "size": input["size"]}]});
            if let Some(cross) = cross {
                body["cross_architecture"] = json!(cross);
            }
            hub.call(
                Method::POST,
                "/v1/compute/jobs",
                Some(&submitter),
                Some(body),
            )
        };
        let job = submit(None).await;
        assert_eq!(job.status, StatusCode::CREATED, "{}", job.body);
        assert_eq!(job.body["floats"], "native");
        // Both runs go to the class with the most donors, Arm, in one pass, and say so.
        for (_, token) in &donors[1..] {
            let got = hub.poll(token, 5).await;
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0]["kind"]["type"], "run_task");
            assert_eq!(got[0]["kind"]["floats"], "native");
        }
        assert!(hub.poll(&donors[0].1, 0).await.is_empty(), "no x86 run");
        // A job that asks for agreement across architectures may run anywhere, NaNs canonical.
        let job = submit(Some(true)).await;
        assert_eq!(job.status, StatusCode::CREATED, "{}", job.body);
        assert_eq!(job.body["floats"], "portable");
        let mut ran_by = Vec::new();
        for _round in 0..10 {
            for (name, token) in &donors {
                for instruction in hub.poll(token, 1).await {
                    assert_eq!(instruction["kind"]["floats"], "portable");
                    ran_by.push(*name);
                }
            }
            if ran_by.len() >= 2 {
                break;
            }
        }
        assert_eq!(ran_by.len(), 2, "{ran_by:?}");
        // The x86 donor has the most free slots (two; the Arm donors one each), so it is sent
        // one run, beside an Arm donor.
        assert!(ran_by.contains(&"ann"), "{ran_by:?}");
    }
}

async fn one_task_job(hub: &TestHub, submitter: &str, replicas: u32) -> String {
    let module = staged(hub, submitter, WASM).await;
    let input = staged(hub, submitter, b"1 100").await;
    let job = hub
        .call(
            Method::POST,
            "/v1/compute/jobs",
            Some(submitter),
            Some(json!({"module": module, "replicas": replicas,
                "inputs": [{"name": "a.txt", "hash": input["hash"], "size": input["size"]}]})),
        )
        .await;
    assert_eq!(job.status, StatusCode::CREATED, "{}", job.body);
    job.body["id"].as_str().expect("id").to_owned()
}

/// Uploads `output` as the output of `run` from the device with `token`.
async fn upload_output(hub: &TestHub, token: &str, run: &str, output: &[u8]) -> Reply {
    let hash = blake3::hash(output).to_hex().to_string();
    let request = Request::builder()
        .method(Method::PUT)
        .uri(format!("/v1/device/runs/{run}/outputs/{hash}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_LENGTH, output.len())
        .body(Body::from(output.to_vec()))
        .expect("request");
    hub.send(request).await
}

#[tokio::test]
async fn a_run_uploads_one_output_and_an_ended_jobs_leftovers_leave_staging() {
    for hub in hubs().await {
        let submitter = hub.signup("submitter@example.com").await;
        let donor_session = hub.signup("donor@example.com").await;
        let (_, donor) = hub.device(&donor_session, "donor-pc").await;
        assert_eq!(hub.heartbeat(&donor, report()).await.status, StatusCode::OK);
        let job_id = one_task_job(&hub, &submitter, 1).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let run = loop {
            let sent = hub.poll(&donor, 1).await;
            if let Some(run) = sent
                .iter()
                .find(|i| i["kind"]["type"] == "run_task")
                .and_then(|i| i["kind"]["run"].as_str())
            {
                break run.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the donor got no task"
            );
        };

        // One output, uploaded again as often as need be; a second, different one is refused.
        let first = upload_output(&hub, &donor, &run, b"the result").await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
        let again = upload_output(&hub, &donor, &run, b"the result").await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
        for other in [&b"another result"[..], b"and another"] {
            let refused = upload_output(&hub, &donor, &run, other).await;
            assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
            assert_eq!(refused.code(), "conflict");
        }
        let other_hash = blake3::hash(b"another result").to_hex().to_string();
        assert!(
            hub.hub
                .staging
                .open_blob(&other_hash)
                .await
                .expect("staging")
                .is_none(),
            "a refused output was staged"
        );

        // The job is cancelled before the run is acknowledged: its output is nobody's result,
        // and leaves staging with the job's module and input.
        let cancelled = hub
            .call(
                Method::POST,
                &format!("/v1/compute/jobs/{job_id}/cancel"),
                Some(&submitter),
                None,
            )
            .await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        for content in [&b"the result"[..], WASM, b"1 100"] {
            let hash = blake3::hash(content).to_hex().to_string();
            assert!(
                hub.hub
                    .staging
                    .open_blob(&hash)
                    .await
                    .expect("staging")
                    .is_none(),
                "{:?} is still staged after the job ended",
                String::from_utf8_lossy(content)
            );
            let got = hub
                .call(
                    Method::GET,
                    &format!("/v1/blobs/{hash}"),
                    Some(&submitter),
                    None,
                )
                .await;
            assert_eq!(got.status, StatusCode::NOT_FOUND);
        }
    }
}

/// A log-in attempt from the client address `from`.
fn login_from(from: [u8; 4], email: &str, password: &str) -> Request<Body> {
    let mut request = json_request(
        "/v1/login",
        &json!({"email": email, "password": password}).to_string(),
    );
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            from, 40_000,
        ))));
    request
}

#[tokio::test]
async fn logins_and_signups_are_rate_limited_per_address_and_per_account() {
    use surplus_hub::limits::Rate;
    let hour = Duration::from_secs(3600);
    let hubs = hubs_with(|mut settings| {
        // Four: signing up logs in once.
        settings.rate_limits.login_per_account = Rate::new(4, hour);
        settings.rate_limits.login_per_address = Rate::new(5, hour);
        settings.rate_limits.signup_per_address = Rate::new(2, hour);
        settings
    })
    .await;
    for hub in hubs {
        hub.signup("ada@example.org").await;
        let password = PASSWORD;
        // Three wrong guesses for Ada's account, then even the right password must wait.
        for _ in 0..3 {
            let wrong = hub
                .send(login_from([192, 0, 2, 1], "ada@example.org", "guess"))
                .await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        }
        for from in [[192, 0, 2, 1], [198, 51, 100, 9]] {
            let limited = hub
                .send(login_from(from, "ada@example.org", password))
                .await;
            assert_eq!(
                limited.status,
                StatusCode::TOO_MANY_REQUESTS,
                "{}",
                limited.body
            );
            assert_eq!(limited.code(), "rate_limited");
            assert_eq!(limited.body["retryable"], true);
            let wait: u64 = limited.headers[header::RETRY_AFTER]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!((1..=1200).contains(&wait), "{wait}");
        }
        // The first address has one try left in its burst of five, for any account; then none.
        let other = hub
            .send(login_from([192, 0, 2, 1], "bob@example.org", "guess"))
            .await;
        assert_eq!(other.status, StatusCode::UNAUTHORIZED);
        let other = hub
            .send(login_from([192, 0, 2, 1], "bob@example.org", "guess"))
            .await;
        assert_eq!(other.status, StatusCode::TOO_MANY_REQUESTS);

        // Failed logins are counted for the operator.
        let metrics = hub.call(Method::GET, "/metrics", None, None).await;
        let text = String::from_utf8(metrics.bytes).expect("text");
        assert!(text.contains("surplus_hub_failed_logins_total 4"), "{text}");

        // One more sign-up from the same address fits in its burst of two; the next waits.
        let second = hub
            .call(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"email": "bob@example.org", "password": password})),
            )
            .await;
        assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
        let third = hub
            .call(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"email": "cy@example.org", "password": password})),
            )
            .await;
        assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn a_suspended_account_is_read_only() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (_, device) = hub.device(&ada, "pc").await;
        let kept = staged(&hub, &ada, b"kept before").await;
        let object = Request::builder()
            .method(Method::PUT)
            .uri(format!("/v1/backup/objects/snapshot/{}", "ab".repeat(16)))
            .header(header::AUTHORIZATION, format!("Bearer {ada}"))
            .body(Body::from("sealed snapshot"))
            .expect("request");
        assert_eq!(hub.send(object).await.status, StatusCode::NO_CONTENT);
        let key = json!({"wrapped": "{\"version\": 1}"});
        assert_eq!(
            hub.call(Method::PUT, "/v1/backup/key", Some(&ada), Some(key.clone()))
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        surplus_hub::admin::set_status(
            &hub.hub,
            "ada@example.org",
            surplus_protocol::SubscriberStatus::Suspended,
        )
        .await
        .expect("suspend");

        // Nothing new, by session or by device.
        for token in [&ada, &device] {
            let upload = hub.upload(token, b"new data").await;
            let object = Request::builder()
                .method(Method::PUT)
                .uri(format!("/v1/backup/objects/index/{}", "cd".repeat(16)))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::from("sealed index"))
                .expect("request");
            let object = hub.send(object).await;
            let key = hub
                .call(
                    Method::PUT,
                    "/v1/backup/key",
                    Some(token),
                    Some(key.clone()),
                )
                .await;
            let settings = hub
                .call(
                    Method::PUT,
                    "/v1/backup/settings",
                    Some(token),
                    Some(json!({"household": true})),
                )
                .await;
            let verify = hub
                .call(Method::POST, "/v1/backup/verify", Some(token), None)
                .await;
            let placement = hub
                .call(
                    Method::POST,
                    "/v1/placements",
                    Some(token),
                    Some(json!({"hash": kept["hash"], "copies": 1})),
                )
                .await;
            for (what, reply) in [
                ("upload", upload),
                ("object", object),
                ("key", key),
                ("settings", settings),
                ("verify", verify),
                ("placement", placement),
            ] {
                assert_eq!(
                    (reply.status, reply.code()),
                    (StatusCode::FORBIDDEN, "subscriber_suspended"),
                    "{what}: {}",
                    reply.body
                );
            }
        }
        let register = hub
            .call(
                Method::POST,
                "/v1/devices",
                Some(&ada),
                Some(json!({"name": "another pc"})),
            )
            .await;
        assert_eq!(register.code(), "subscriber_suspended");

        // Everything already kept can still be read: what a restore needs.
        let hash = kept["hash"].as_str().expect("hash");
        let got = hub
            .call(Method::GET, &format!("/v1/blobs/{hash}"), Some(&ada), None)
            .await;
        assert_eq!(got.bytes, b"kept before");
        let got = hub
            .call(
                Method::GET,
                &format!("/v1/backup/objects/snapshot/{}", "ab".repeat(16)),
                Some(&device),
                None,
            )
            .await;
        assert_eq!(got.bytes, b"sealed snapshot");
        let got = hub
            .call(Method::GET, "/v1/backup/key", Some(&device), None)
            .await;
        assert_eq!(got.status, StatusCode::OK);
        let listed = hub
            .call(Method::GET, "/v1/backup/objects/snapshot", Some(&ada), None)
            .await;
        assert_eq!(listed.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn sessions_are_listed_and_ended_one_or_all() {
    for hub in hubs().await {
        let first = hub.signup("ada@example.org").await;
        let (_, device) = hub.device(&first, "pc").await;
        let log_in = || async {
            let reply = hub
                .call(
                    Method::POST,
                    "/v1/login",
                    None,
                    Some(json!({"email": "ada@example.org", "password": PASSWORD})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK);
            (
                reply.body["token"].as_str().expect("token").to_owned(),
                reply.body["expires_at"].as_i64().expect("expiry"),
            )
        };
        let (second, expires_at) = log_in().await;
        let week = 7 * 24 * 3600 * 1000;
        let now = surplus_hub::now_ms();
        assert!((now + week - 60_000..=now + week).contains(&expires_at));
        let hub = &hub;
        let works = |token: String| async move {
            hub.call(Method::GET, "/v1/me", Some(&token), None)
                .await
                .status
                == StatusCode::OK
        };

        let listed = hub
            .call(Method::GET, "/v1/sessions", Some(&first), None)
            .await;
        let sessions = listed.body.as_array().expect("sessions").clone();
        assert_eq!(sessions.len(), 2, "{}", listed.body);
        assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
        assert!(
            !listed.body.to_string().contains(&first),
            "a token was shown"
        );

        // Logging out ends that session only.
        let out = hub
            .call(Method::DELETE, "/v1/sessions/current", Some(&second), None)
            .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        assert!(!works(second.clone()).await);
        assert!(works(first.clone()).await);

        // One session ends another by its id.
        let (third, _) = log_in().await;
        let listed = hub
            .call(Method::GET, "/v1/sessions", Some(&first), None)
            .await;
        let other = listed
            .body
            .as_array()
            .expect("sessions")
            .iter()
            .find(|s| s["current"] == false)
            .and_then(|s| s["id"].as_str())
            .expect("the other session")
            .to_owned();
        let ended = hub
            .call(
                Method::DELETE,
                &format!("/v1/sessions/{other}"),
                Some(&first),
                None,
            )
            .await;
        assert_eq!(ended.status, StatusCode::NO_CONTENT);
        assert!(!works(third).await);
        let again = hub
            .call(
                Method::DELETE,
                &format!("/v1/sessions/{other}"),
                Some(&first),
                None,
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);

        // Everywhere: every session ends; the device keeps its own credential.
        let (fourth, _) = log_in().await;
        let all = hub
            .call(Method::DELETE, "/v1/sessions", Some(&fourth), None)
            .await;
        assert_eq!(all.status, StatusCode::NO_CONTENT);
        assert!(!works(first).await);
        assert!(!works(fourth).await);
        assert_eq!(
            hub.heartbeat(&device, report()).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_device_adds_to_backups_but_only_a_session_replaces_the_key_or_forgets() {
    for hub in hubs().await {
        let session = hub.signup("ada@example.org").await;
        let (_, device) = hub.device(&session, "pc").await;
        let put_key = |token: String, wrapped: &'static str| {
            let hub = &hub;
            async move {
                hub.call(
                    Method::PUT,
                    "/v1/backup/key",
                    Some(&token),
                    Some(json!({ "wrapped": wrapped })),
                )
                .await
            }
        };
        let key = || async {
            hub.call(Method::GET, "/v1/backup/key", Some(&session), None)
                .await
                .body["wrapped"]
                .clone()
        };
        // The first backup's device escrows the key; replacing it takes the session.
        assert_eq!(
            put_key(device.clone(), "first").await.status,
            StatusCode::NO_CONTENT
        );
        let refused = put_key(device.clone(), "a thief's").await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        assert!(
            refused.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("log in"))
        );
        assert_eq!(key().await, "first");
        assert_eq!(
            put_key(session.clone(), "second").await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(key().await, "second");

        // A device adds a snapshot; sending it again changes nothing, whatever it sends and
        // whoever sends it: objects are written once.
        let name = "ab".repeat(16);
        let put_object = |token: String, body: &'static str| {
            let hub = &hub;
            let name = name.clone();
            async move {
                let request = Request::builder()
                    .method(Method::PUT)
                    .uri(format!("/v1/backup/objects/snapshot/{name}"))
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::from(body))
                    .expect("request");
                hub.send(request).await.status
            }
        };
        let object = || async {
            hub.call(
                Method::GET,
                &format!("/v1/backup/objects/snapshot/{name}"),
                Some(&session),
                None,
            )
            .await
            .bytes
        };
        assert_eq!(
            put_object(device.clone(), "sealed").await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            put_object(device.clone(), "garbage").await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(object().await, b"sealed");
        assert_eq!(
            put_object(session.clone(), "resealed").await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(object().await, b"sealed");

        // Deleting a snapshot or a placement takes the session.
        let path = format!("/v1/backup/objects/snapshot/{name}");
        let refused = hub.call(Method::DELETE, &path, Some(&device), None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(object().await, b"sealed");
        let blob = staged(&hub, &device, b"a shard").await;
        let placement = format!("/v1/placements/{}", blob["hash"].as_str().expect("hash"));
        let refused = hub
            .call(Method::DELETE, &placement, Some(&device), None)
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let deleted = hub.call(Method::DELETE, &path, Some(&session), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let dropped = hub
            .call(Method::DELETE, &placement, Some(&session), None)
            .await;
        assert_eq!(dropped.status, StatusCode::NO_CONTENT, "{}", dropped.body);
    }
}

#[tokio::test]
async fn forgetting_is_undoable_until_the_grace_period_ends_then_settled_once() {
    for hub in hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        hub.heartbeat(&bob_pc, report()).await;
        let shard = store_one_copy(&hub, &ada_pc, &bob_pc, &[7u8; 4000]).await;
        let name = "cd".repeat(8);
        let object = format!("/v1/backup/objects/snapshot/{name}");
        let put = Request::builder()
            .method(Method::PUT)
            .uri(&object)
            .header(header::AUTHORIZATION, format!("Bearer {ada_pc}"))
            .body(Body::from("sealed snapshot"))
            .expect("request");
        assert_eq!(hub.send(put).await.status, StatusCode::NO_CONTENT);
        let names = || async {
            hub.call(Method::GET, "/v1/backup/objects/snapshot", Some(&ada), None)
                .await
                .body
        };
        let forget_both = || async {
            let forgotten = hub.call(Method::DELETE, &object, Some(&ada), None).await;
            assert_eq!(
                forgotten.status,
                StatusCode::NO_CONTENT,
                "{}",
                forgotten.body
            );
            let placement = format!("/v1/placements/{shard}");
            let dropped = hub.call(Method::DELETE, &placement, Some(&ada), None).await;
            assert_eq!(dropped.status, StatusCode::NO_CONTENT, "{}", dropped.body);
        };
        // What the holder is told now (a poll that does not wait).
        let deletes_told = || async {
            hub.poll(&bob_pc, 0)
                .await
                .into_iter()
                .filter(|i| i["kind"]["type"] == "delete_blob")
                .collect::<Vec<_>>()
        };

        // Forgotten: hidden from listings, but kept, and the holder is told nothing.
        forget_both().await;
        assert_eq!(names().await, json!([]));
        let gone = hub.call(Method::GET, &object, Some(&ada), None).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        let again = hub.call(Method::DELETE, &object, Some(&ada), None).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "forgotten already");
        let listed = hub
            .call(Method::GET, "/v1/backup/forgotten", Some(&ada), None)
            .await;
        assert_eq!(listed.status, StatusCode::OK);
        let grace_ms = 30 * 24 * 3600 * 1000;
        assert_eq!(listed.body["grace_seconds"], 30 * 24 * 3600);
        assert_eq!(listed.body["objects"][0]["name"], name.as_str());
        assert_eq!(
            listed.body["objects"][0]["purged_at"]
                .as_i64()
                .expect("time")
                - listed.body["objects"][0]["forgotten_at"]
                    .as_i64()
                    .expect("time"),
            grace_ms
        );
        assert_eq!(
            (
                listed.body["shards"].clone(),
                listed.body["shard_bytes"].clone()
            ),
            (json!(1), json!(4000))
        );
        assert_eq!(deletes_told().await, Vec::<Value>::new());
        assert_eq!(holder_state(&hub, &ada, &shard).await, "active");

        // Recovered: back as it was, by a device too (undoing a deletion is adding back).
        let recovered = hub
            .call(
                Method::POST,
                "/v1/backup/forgotten/recover",
                Some(&ada_pc),
                None,
            )
            .await;
        assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.body);
        assert_eq!(
            recovered.body,
            json!({"snapshots": 1, "indexes": 0, "shards": 1})
        );
        assert_eq!(names().await, json!([name]));
        let body = hub.call(Method::GET, &object, Some(&ada), None).await.bytes;
        assert_eq!(body, b"sealed snapshot");
        let listed = hub
            .call(Method::GET, "/v1/backup/forgotten", Some(&ada), None)
            .await;
        assert_eq!(listed.body["objects"], json!([]));
        assert_eq!(listed.body["shards"], 0);

        // Forgotten again, and the grace period passes: two sweeps at once (two replicas) end
        // each placement once, and the holder is told to delete the shard once.
        forget_both().await;
        let later = surplus_hub::now_ms() + grace_ms + 1;
        let (first, second) = tokio::join!(
            surplus_hub::scheduler::purge_forgotten(&hub.hub, later),
            surplus_hub::scheduler::purge_forgotten(&hub.hub, later),
        );
        let (first, second) = (first.expect("purge"), second.expect("purge"));
        assert_eq!((first.0 + second.0, first.1 + second.1), (1, 1));
        assert_eq!(
            surplus_hub::scheduler::purge_forgotten(&hub.hub, later)
                .await
                .expect("purge"),
            (0, 0)
        );
        let recovered = hub
            .call(
                Method::POST,
                "/v1/backup/forgotten/recover",
                Some(&ada),
                None,
            )
            .await;
        assert_eq!(
            recovered.body,
            json!({"snapshots": 0, "indexes": 0, "shards": 0})
        );
        assert_eq!(names().await, json!([]));
        let told = deletes_told().await;
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0]["kind"]["hash"], shard.as_str());
    }
}

#[tokio::test]
async fn holders_silent_past_the_cap_or_revoked_are_counted_lost_once() {
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let carol = hub.signup("carol@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        let (carol_id, carol_pc) = hub.device(&carol, "carol-pc").await;
        // Bob is the only holder for the first blob; Carol, heard from last, takes the second.
        hub.heartbeat(&bob_pc, report()).await;
        let at_bob = store_one_copy(&hub, &ada_pc, &bob_pc, &[3u8; 2000]).await;
        hub.heartbeat(&carol_pc, report()).await;
        let at_carol = store_one_copy(&hub, &ada_pc, &carol_pc, &[4u8; 2000]).await;
        let detect = |at| surplus_hub::scheduler::detect_losses(&hub.hub, at);
        let now = surplus_hub::now_ms();
        const DAY: i64 = 24 * 3600 * 1000;

        // Heard just now, or away for days but short of the 4-day cap: nobody is lost.
        assert_eq!(detect(now).await.expect("detect"), Vec::<uuid::Uuid>::new());
        assert_eq!(
            detect(now + 3 * DAY).await.expect("detect"),
            Vec::<uuid::Uuid>::new()
        );
        assert_eq!(holder_state(&hub, &ada, &at_bob).await, "active");

        // Revoked: what it held is lost at once, by the revocation itself.
        let revoked = hub
            .call(
                Method::DELETE,
                &format!("/v1/devices/{carol_id}"),
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
        assert_eq!(holder_state(&hub, &ada, &at_carol).await, "lost");
        assert_eq!(detect(now).await.expect("detect"), Vec::<uuid::Uuid>::new());
        assert_eq!(holder_state(&hub, &ada, &at_bob).await, "active");

        // Silent past the cap: lost; two sweeps at once (two replicas) count it once.
        let later = now + 5 * DAY;
        let (first, second) = tokio::join!(detect(later), detect(later));
        let counted = first.expect("detect").len() + second.expect("detect").len();
        assert_eq!(counted, 1);
        assert_eq!(holder_state(&hub, &ada, &at_bob).await, "lost");
        assert_eq!(
            detect(later).await.expect("detect"),
            Vec::<uuid::Uuid>::new()
        );
    }
}

#[tokio::test]
async fn a_holder_failing_two_challenges_is_disqualified_and_loses_everything() {
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        hub.heartbeat(&bob_pc, report()).await;
        let mut shards = Vec::new();
        for n in 0..3u8 {
            shards.push(store_one_copy(&hub, &ada_pc, &bob_pc, &[n; 3000]).await);
        }
        let run = hub
            .call(Method::POST, "/v1/backup/verify", Some(&ada), None)
            .await;
        assert_eq!(run.body["challenged"], 3, "{}", run.body);
        let batch = hub.poll(&bob_pc, 0).await;
        let challenge_of = |hash: &str| {
            batch
                .iter()
                .find(|i| i["kind"]["hash"] == hash)
                .and_then(|i| i["id"].as_str())
                .expect("a challenge")
                .to_owned()
        };
        let audit = |at| surplus_hub::challenge::audit_round(&hub.hub, at);
        let now = surplus_hub::now_ms();
        // Bob says he lost one shard: one integrity failure, that shard lost, the others kept.
        let missing = json!({"result": {"status": "failed", "code": "not_found", "message": "gone"}, "vault": null});
        let ack = |id: String| {
            let hub = &hub;
            let (bob_pc, missing) = (bob_pc.clone(), missing.clone());
            async move {
                let path = format!("/v1/device/instructions/{id}/ack");
                let reply = hub
                    .call(Method::POST, &path, Some(&bob_pc), Some(missing))
                    .await;
                assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
            }
        };
        ack(challenge_of(&shards[0])).await;
        audit(now).await.expect("audit");
        assert_eq!(holder_state(&hub, &ada, &shards[0]).await, "lost");
        assert_eq!(holder_state(&hub, &ada, &shards[2]).await, "active");
        // A second: disqualified, and the shard he has not been asked about is lost too, once.
        ack(challenge_of(&shards[1])).await;
        audit(now).await.expect("audit");
        assert_eq!(holder_state(&hub, &ada, &shards[2]).await, "lost");
        audit(now).await.expect("audit");
        assert_eq!(holder_state(&hub, &ada, &shards[1]).await, "lost");
    }
}

#[tokio::test]
async fn an_owner_sees_each_pack_uploading_protected_repairing_or_lost() {
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let pack: Vec<u8> = (0..9000u32).map(|i| (i % 241) as u8).collect();
        let coding = surplus_backup::erasure::Coding::new(1, 1).expect("coding");
        let shards = surplus_backup::erasure::encode(&pack, coding).expect("encode");
        let name = "ef".repeat(16);
        let health = || async {
            let reply = hub
                .call(Method::GET, "/v1/backup/health", Some(&ada_pc), None)
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            reply.body["packs"].clone()
        };
        let mut hashes = Vec::new();
        for shard in &shards {
            assert_eq!(hub.upload(&ada_pc, shard).await.status, StatusCode::CREATED);
            let hash = blake3::hash(shard).to_hex().to_string();
            let placed = hub
                .call(
                    Method::POST,
                    "/v1/placements",
                    Some(&ada_pc),
                    Some(json!({"hash": hash, "copies": 1, "pack": name})),
                )
                .await;
            assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
            hashes.push(hash);
        }
        // No holders yet: the shards wait at the hub.
        assert_eq!(
            health().await,
            json!([{"pack": name, "state": "uploading"}])
        );

        // Two donors take one shard each and confirm: protected.
        let mut donors = Vec::new();
        for who in ["bob", "carol"] {
            let session = hub.signup(&format!("{who}@example.org")).await;
            let (id, token) = hub.device(&session, &format!("{who}-pc")).await;
            hub.heartbeat(&token, report()).await;
            hub.hub.kick_scheduler();
            surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
                .await
                .expect("place");
            for instruction in hub.poll(&token, 0).await {
                let blob = &instruction["kind"]["blob"];
                let ack = json!({"result": {"status": "stored", "hash": blob["hash"], "size": blob["size"]}, "vault": null});
                let path = format!(
                    "/v1/device/instructions/{}/ack",
                    instruction["id"].as_str().expect("id")
                );
                let acked = hub.call(Method::POST, &path, Some(&token), Some(ack)).await;
                assert_eq!(acked.status, StatusCode::NO_CONTENT);
            }
            donors.push((session, id));
        }
        surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
            .await
            .expect("finish");
        assert_eq!(
            health().await,
            json!([{"pack": name, "state": "protected"}])
        );
        // The operator sees the same; two days on, with both holders silent far longer than
        // they have ever been away, the pack would be at risk.
        let now = surplus_hub::now_ms();
        let report = surplus_hub::health::report(&hub.hub, now)
            .await
            .expect("report");
        assert_eq!(report.packs.protected, 1);
        assert_eq!(report.repair_queue, 0);
        let later = surplus_hub::health::report(&hub.hub, now + 2 * 24 * 3_600_000)
            .await
            .expect("report");
        assert_eq!((later.packs.protected, later.packs.at_risk), (0, 1));
        assert!(later.devices.iter().all(|d| d.standing == "at_risk"));

        // One holder leaves for good: one shard is left, and the pack is repaired.
        let revoke = |(session, id): &(String, String)| {
            let path = format!("/v1/devices/{id}");
            let (hub, session) = (&hub, session.clone());
            async move {
                let reply = hub.call(Method::DELETE, &path, Some(&session), None).await;
                assert_eq!(reply.status, StatusCode::NO_CONTENT);
            }
        };
        revoke(&donors[0]).await;
        assert_eq!(
            health().await,
            json!([{"pack": name, "state": "repairing"}])
        );
        let report = surplus_hub::health::report(&hub.hub, surplus_hub::now_ms())
            .await
            .expect("report");
        assert_eq!((report.packs.repairing, report.repair_queue), (1, 1));
        // The other too: nothing that rebuilds it is left.
        revoke(&donors[1]).await;
        assert_eq!(health().await, json!([{"pack": name, "state": "lost"}]));
    }
}

#[tokio::test]
async fn names_with_control_or_invisible_characters_are_refused() {
    for hub in hubs().await {
        for email in [
            "esc\u{1b}[2J@example.org",
            "bell\u{7}@example.org",
            "a\u{202e}b@example.org",
        ] {
            let refused = hub
                .call(
                    Method::POST,
                    "/v1/signup",
                    None,
                    Some(json!({"email": email, "password": PASSWORD})),
                )
                .await;
            assert_eq!(
                (refused.status, refused.code()),
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
                "{email:?}"
            );
        }
        let session = hub.signup("ada@example.org").await;
        for name in ["pc\u{202e}gpj.exe", "zero\u{200b}width", "tab\there"] {
            let refused = hub
                .call(
                    Method::POST,
                    "/v1/devices",
                    Some(&session),
                    Some(json!({ "name": name })),
                )
                .await;
            assert_eq!(refused.code(), "validation_failed", "{name:?}");
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_staging_are_the_hubs_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    for hub in hubs().await {
        if !hub.local_staging {
            // On S3, the bucket's permissions are the object store's business.
            continue;
        }
        let session = hub.signup("ada@example.org").await;
        let blob = staged(&hub, &session, b"staged for a while").await;
        assert_eq!(mode(&hub.staging), 0o700);
        assert_eq!(mode(&hub.staging.join("tmp")), 0o700);
        let hash = blob["hash"].as_str().expect("hash");
        let staged_file = surplus_hub::staging::LocalFolder::open(&hub.staging)
            .expect("staging")
            .path_of(hash);
        assert_eq!(mode(&staged_file), 0o600);
        if let Some(path) = hub.database.strip_prefix("sqlite://") {
            assert_eq!(mode(std::path::Path::new(path)), 0o600);
        }
    }
}

#[tokio::test]
async fn a_holder_giving_storage_up_hands_each_blob_over_before_deleting_it() {
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let carol = hub.signup("carol@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        let (_, carol_pc) = hub.device(&carol, "carol-pc").await;
        hub.heartbeat(&bob_pc, report()).await;
        let content = [7u8; 4000];
        let hash = store_one_copy(&hub, &ada_pc, &bob_pc, &content).await;
        let stale = [8u8; 1000];
        let stale_hash = store_one_copy(&hub, &ada_pc, &bob_pc, &stale).await;
        // Both confirmed: the hub drops its staged copies, so only Bob has them now.
        surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
            .await
            .expect("place");
        assert!(!hub.staging.join(&hash[..2]).join(&hash).exists());
        let holdings = || async {
            let reply = hub
                .call(Method::GET, "/v1/device/holdings", Some(&bob_pc), None)
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            reply.body
        };
        assert_eq!(holdings().await["held_bytes"], 5000);
        assert_eq!(holdings().await["handover"], Value::Null);

        // Bob withdraws storage consent: the heartbeat's answer starts the hand-over.
        let mut withdrawn = report();
        withdrawn["consent"]["storage"] = json!(false);
        withdrawn["vault"]["used_bytes"] = json!(5000);
        let beat = hub.heartbeat(&bob_pc, withdrawn.clone()).await;
        assert_eq!(
            beat.body["handover"]["remaining_bytes"], 5000,
            "{}",
            beat.body
        );
        assert_eq!(beat.body["handover"]["moved_bytes"], 0);
        assert_eq!(holder_state(&hub, &ada, &hash).await, "evacuating");

        // The hub no longer has the blobs: Bob is asked to upload each, once.
        let now = surplus_hub::now_ms();
        let hand_over = |at| surplus_hub::scheduler::hand_over(&hub.hub, at);
        assert_eq!(hand_over(now).await.expect("hand over"), (2, 0));
        assert_eq!(hand_over(now).await.expect("hand over"), (0, 0));
        let batch = hub.poll(&bob_pc, 0).await;
        let upload = batch
            .iter()
            .find(|i| i["kind"]["type"] == "upload_blob" && i["kind"]["hash"] == hash.as_str())
            .expect("an upload_blob for bob");
        assert_eq!(
            hub.upload(&bob_pc, &content).await.status,
            StatusCode::CREATED
        );
        let ack = json!({"result": {"status": "uploaded", "hash": hash}, "vault": null});
        let path = format!(
            "/v1/device/instructions/{}/ack",
            upload["id"].as_str().expect("id")
        );
        let acked = hub
            .call(Method::POST, &path, Some(&bob_pc), Some(ack))
            .await;
        assert_eq!(acked.status, StatusCode::NO_CONTENT, "{}", acked.body);

        // Carol takes it over, recorded in the ledger as a hand-over; Bob's copy stays until
        // hers is confirmed.
        hub.heartbeat(&carol_pc, report()).await;
        let made = surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
            .await
            .expect("place");
        assert_eq!(made.len(), 1, "{made:?}");
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&ada), None)
            .await;
        let purposes: Vec<&str> = ledger
            .body
            .as_array()
            .expect("ledger")
            .iter()
            .filter_map(|a| a["purpose"].as_str())
            .collect();
        assert!(
            purposes.contains(&format!("handover:{hash}").as_str()),
            "{purposes:?}"
        );
        let not_yet = hub.poll(&bob_pc, 0).await;
        assert!(
            !not_yet.iter().any(|i| i["kind"]["type"] == "delete_blob"),
            "{not_yet:?}"
        );
        let store = hub.poll(&carol_pc, 0).await;
        let id = store[0]["id"].as_str().expect("id");
        let ack =
            json!({"result": {"status": "stored", "hash": hash, "size": 4000}, "vault": null});
        let path = format!("/v1/device/instructions/{id}/ack");
        hub.call(Method::POST, &path, Some(&carol_pc), Some(ack))
            .await;
        surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
            .await
            .expect("place");
        let delete = hub
            .poll(&bob_pc, 0)
            .await
            .into_iter()
            .find(|i| i["kind"]["type"] == "delete_blob")
            .expect("bob is told to delete his copy now");
        assert_eq!(delete["kind"]["hash"], hash.as_str());
        let ack = json!({"result": {"status": "deleted", "hash": hash}, "vault": null});
        let path = format!(
            "/v1/device/instructions/{}/ack",
            delete["id"].as_str().expect("id")
        );
        hub.call(Method::POST, &path, Some(&bob_pc), Some(ack))
            .await;
        let progress = holdings().await;
        assert_eq!(progress["handover"]["moved_bytes"], 4000, "{progress}");
        assert_eq!(progress["handover"]["remaining_bytes"], 1000);

        // Bob never uploads the other one. Past the deadline it is counted lost, once however
        // many sweeps race, for repair to rebuild; Bob then holds nothing of anyone's.
        let deadline = i64::try_from(hub.hub.settings.handover_deadline.as_millis()).expect("ms");
        let later = now + deadline;
        let (first, second) = tokio::join!(hand_over(later), hand_over(later));
        assert_eq!(
            first.expect("hand over").1 + second.expect("hand over").1,
            1
        );
        assert_eq!(holder_state(&hub, &ada, &stale_hash).await, "lost");
        let done = holdings().await;
        assert_eq!(done["held_blobs"], 0, "{done}");
        assert_eq!(done["handover"], Value::Null);
    }
}

#[tokio::test]
async fn a_lost_holder_that_comes_back_before_the_rebuild_has_its_copy_audited_and_taken_back() {
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let carol = hub.signup("carol@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        let (_, carol_pc) = hub.device(&carol, "carol-pc").await;
        hub.heartbeat(&carol_pc, report()).await;
        let altered = store_one_copy(&hub, &ada_pc, &carol_pc, &[6u8; 3000]).await;
        let at_carol = store_one_copy(&hub, &ada_pc, &carol_pc, &[7u8; 3000]).await;
        // Carol fails an audit of one copy: that one is lost for good, and she is suspect.
        let run = hub
            .call(Method::POST, "/v1/backup/verify", Some(&ada), None)
            .await;
        assert_eq!(run.body["challenged"], 2, "{}", run.body);
        let challenge = hub
            .poll(&carol_pc, 0)
            .await
            .into_iter()
            .find(|i| i["kind"]["hash"] == altered.as_str())
            .expect("a challenge");
        let wrong = json!({"result": {"status": "failed", "code": "corrupt", "message": "altered"}, "vault": null});
        let path = format!(
            "/v1/device/instructions/{}/ack",
            challenge["id"].as_str().expect("id")
        );
        hub.call(Method::POST, &path, Some(&carol_pc), Some(wrong))
            .await;
        assert_eq!(holder_state(&hub, &ada, &altered).await, "lost");
        hub.heartbeat(&bob_pc, report()).await;
        let at_bob = store_one_copy(&hub, &ada_pc, &bob_pc, &[5u8; 3000]).await;
        surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
            .await
            .expect("place");

        // Both go silent past the cap: counted lost, with nothing rebuilt yet (no holder left).
        let now = surplus_hub::now_ms();
        let lost_after = i64::try_from(hub.hub.settings.lost_after.as_millis()).expect("ms");
        surplus_hub::scheduler::detect_losses(&hub.hub, now + lost_after + 1)
            .await
            .expect("detect");
        assert_eq!(holder_state(&hub, &ada, &at_bob).await, "lost");
        assert_eq!(holder_state(&hub, &ada, &at_carol).await, "lost");

        // Both come back. Bob's copy is taken back, once however many sweeps race, and audited
        // before anything else; Carol, with an integrity failure this month, is not trusted
        // with hers.
        hub.heartbeat(&bob_pc, report()).await;
        hub.heartbeat(&carol_pc, report()).await;
        let back = surplus_hub::now_ms();
        let (first, second) = tokio::join!(
            surplus_hub::scheduler::release_returned(&hub.hub, back),
            surplus_hub::scheduler::release_returned(&hub.hub, back)
        );
        first.expect("release");
        second.expect("release");
        assert_eq!(holder_state(&hub, &ada, &at_bob).await, "active");
        assert_eq!(holder_state(&hub, &ada, &at_carol).await, "lost");
        assert_eq!(holder_state(&hub, &ada, &altered).await, "lost");
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&ada), None)
            .await;
        let active = ledger
            .body
            .as_array()
            .expect("ledger")
            .iter()
            .filter(|a| a["state"] == "active")
            .count();
        assert_eq!(active, 1, "{}", ledger.body);
        // The hub's next audit round asks Bob about it at once, long before its 7 days are up.
        let audits = surplus_hub::challenge::audit_round(&hub.hub, back)
            .await
            .expect("audit");
        assert_eq!(audits, 1);
        let audit = hub
            .poll(&bob_pc, 0)
            .await
            .into_iter()
            .find(|i| i["kind"]["type"] == "verify_blob")
            .expect("an audit of the copy taken back");
        assert_eq!(audit["kind"]["hash"], at_bob.as_str());
    }
}

#[tokio::test]
async fn a_packs_holders_are_chosen_to_cover_the_week_not_all_night_owls() {
    use sqlx::Connection;
    const SLOT: i64 = 5 * 60 * 1000;
    const DAY: i64 = 24 * 3600 * 1000;
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let mut conn = sqlx::AnyConnection::connect(&hub.database)
            .await
            .expect("connect");
        let now = surplus_hub::now_ms();
        let last = now / SLOT;
        let first = last - 3 * 7 * DAY / SLOT;
        // Six donors, registered three weeks ago: three on only at night (22:00-06:00 UTC), three
        // only by day (08:00-18:00).
        let mut donors = Vec::new();
        for (n, night) in [false, false, false, true, true, true]
            .into_iter()
            .enumerate()
        {
            let session = hub.signup(&format!("donor{n}@example.org")).await;
            let (id, token) = hub.device(&session, &format!("donor{n}-pc")).await;
            sqlx::query("UPDATE devices SET created_at = $1 WHERE id = $2")
                .bind(now - 21 * DAY)
                .bind(&id)
                .execute(&mut conn)
                .await
                .expect("backdate");
            let on = |slot: &i64| {
                let hour = (slot * SLOT / 3_600_000) % 24;
                if night {
                    !(6..22).contains(&hour)
                } else {
                    (8..18).contains(&hour)
                }
            };
            let slots: Vec<String> = (first..last)
                .filter(on)
                .map(|slot| format!("('{id}', {slot})"))
                .collect();
            for chunk in slots.chunks(500) {
                let sql = format!(
                    "INSERT INTO device_presence (device_id, slot) VALUES {} ON CONFLICT DO NOTHING",
                    chunk.join(", ")
                );
                sqlx::query(&sql)
                    .execute(&mut conn)
                    .await
                    .expect("presence");
            }
            donors.push((id, token, night));
        }
        // All online now; the night owls were heard last, so by presence alone they would take
        // every shard.
        for (_, token, _) in &donors {
            hub.heartbeat(token, report()).await;
        }
        let pack: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
        let coding = surplus_backup::erasure::Coding::new(2, 1).expect("coding");
        for shard in surplus_backup::erasure::encode(&pack, coding).expect("encode") {
            assert_eq!(
                hub.upload(&ada_pc, &shard).await.status,
                StatusCode::CREATED
            );
            let hash = blake3::hash(&shard).to_hex().to_string();
            let placed = hub
                .call(
                    Method::POST,
                    "/v1/placements",
                    Some(&ada_pc),
                    Some(json!({"hash": hash, "copies": 1, "pack": "abcdef"})),
                )
                .await;
            assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
        }
        surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
            .await
            .expect("place");
        let ledger = hub
            .call(Method::GET, "/v1/allocations?limit=100", Some(&ada), None)
            .await;
        let holders: Vec<bool> = ledger
            .body
            .as_array()
            .expect("ledger")
            .iter()
            .filter_map(|a| {
                donors
                    .iter()
                    .find(|(id, ..)| a["device_id"] == id.as_str())
                    .map(|(.., night)| *night)
            })
            .collect();
        assert_eq!(holders.len(), 3, "{}", ledger.body);
        let nights = holders.iter().filter(|night| **night).count();
        assert!(
            (1..3).contains(&nights),
            "the pack's holders mix day and night PCs: {holders:?}"
        );
    }
}

#[tokio::test]
async fn a_packs_shards_go_to_distinct_networks() {
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        // Bob and Carol are neighbours behind one provider's /24; Dave is elsewhere and was
        // heard from longest ago, so by presence alone Bob and Carol would take both shards.
        let mut donors = Vec::new();
        for (who, from) in [
            ("dave", [198, 51, 100, 7]),
            ("bob", [81, 2, 69, 10]),
            ("carol", [81, 2, 69, 20]),
        ] {
            let session = hub.signup(&format!("{who}@example.org")).await;
            let (id, token) = hub.device(&session, &format!("{who}-pc")).await;
            let mut request = json_request("/v1/device/heartbeat", &report().to_string());
            request.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("header"),
            );
            request.extensions_mut().insert(axum::extract::ConnectInfo(
                std::net::SocketAddr::from((from, 40_000)),
            ));
            assert_eq!(hub.send(request).await.status, StatusCode::OK);
            donors.push((who, id));
        }
        let pack: Vec<u8> = (0..6000u32).map(|i| (i % 239) as u8).collect();
        let coding = surplus_backup::erasure::Coding::new(1, 1).expect("coding");
        for shard in surplus_backup::erasure::encode(&pack, coding).expect("encode") {
            assert_eq!(
                hub.upload(&ada_pc, &shard).await.status,
                StatusCode::CREATED
            );
            let hash = blake3::hash(&shard).to_hex().to_string();
            let placed = hub
                .call(
                    Method::POST,
                    "/v1/placements",
                    Some(&ada_pc),
                    Some(json!({"hash": hash, "copies": 1, "pack": "0123"})),
                )
                .await;
            assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
        }
        surplus_hub::scheduler::place_pending(&hub.hub, Default::default())
            .await
            .expect("place");
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&ada), None)
            .await;
        let mut holders: Vec<&str> = ledger
            .body
            .as_array()
            .expect("ledger")
            .iter()
            .filter_map(|a| {
                donors
                    .iter()
                    .find(|(_, id)| a["device_id"] == id.as_str())
                    .map(|(who, _)| *who)
            })
            .collect();
        holders.sort_unstable();
        assert_eq!(holders, ["carol", "dave"], "{}", ledger.body);
    }
}

#[tokio::test]
async fn a_holder_back_from_a_long_absence_is_audited_first() {
    use sqlx::Connection;
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (bob_id, bob_pc) = hub.device(&bob, "bob-pc").await;
        hub.heartbeat(&bob_pc, report()).await;
        store_one_copy(&hub, &ada_pc, &bob_pc, &[9u8; 2000]).await;
        let audit = || surplus_hub::challenge::audit_round(&hub.hub, surplus_hub::now_ms());
        // Just stored: its audit is a week away.
        assert_eq!(audit().await.expect("audit"), 0);
        // Bob was away for two days, then reports again: his shard is audited at once.
        let mut conn = sqlx::AnyConnection::connect(&hub.database)
            .await
            .expect("connect");
        sqlx::query("UPDATE devices SET last_heartbeat = $1 WHERE id = $2")
            .bind(surplus_hub::now_ms() - 2 * 24 * 3_600_000)
            .bind(&bob_id)
            .execute(&mut conn)
            .await
            .expect("backdate");
        hub.heartbeat(&bob_pc, report()).await;
        assert_eq!(audit().await.expect("audit"), 1);
        // Asked once: not again while that audit is out.
        assert_eq!(audit().await.expect("audit"), 0);
    }
}

#[tokio::test]
async fn a_returning_copy_is_either_taken_back_or_deleted_never_both() {
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let bob = hub.signup("bob@example.org").await;
        let carol = hub.signup("carol@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let (_, bob_pc) = hub.device(&bob, "bob-pc").await;
        let (carol_id, carol_pc) = hub.device(&carol, "carol-pc").await;
        hub.heartbeat(&bob_pc, report()).await;
        let content = [4u8; 2500];
        let hash = store_one_copy(&hub, &ada_pc, &bob_pc, &content).await;
        let store = &hub.hub.store;
        let place = || surplus_hub::scheduler::place_pending(&hub.hub, Default::default());
        // Bob is counted lost while the hub still has the blob staged; Carol takes it over and
        // confirms it.
        let lost_after = i64::try_from(hub.hub.settings.lost_after.as_millis()).expect("ms");
        let now = surplus_hub::now_ms();
        surplus_hub::scheduler::detect_losses(&hub.hub, now + lost_after + 1)
            .await
            .expect("detect");
        hub.heartbeat(&carol_pc, report()).await;
        place().await.expect("place");
        let store_id = hub.poll(&carol_pc, 0).await[0]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let ack =
            json!({"result": {"status": "stored", "hash": hash, "size": 2500}, "vault": null});
        hub.call(
            Method::POST,
            &format!("/v1/device/instructions/{store_id}/ack"),
            Some(&carol_pc),
            Some(ack),
        )
        .await;
        place().await.expect("finish");
        // Bob is back: his copy is surplus. Two sweeps race to ask for its delete: one wins.
        hub.heartbeat(&bob_pc, report()).await;
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&ada), None)
            .await;
        let bobs: uuid::Uuid = ledger
            .body
            .as_array()
            .expect("ledger")
            .iter()
            .find(|a| a["state"] == "lost")
            .and_then(|a| a["id"].as_str())
            .expect("bob's lost copy")
            .parse()
            .expect("uuid");
        let at = surplus_hub::now_ms();
        let (first, second) = tokio::join!(
            store.claim_delete(bobs, at - 1, at),
            store.claim_delete(bobs, at - 1, at)
        );
        assert_eq!(
            u8::from(first.expect("claim")) + u8::from(second.expect("claim")),
            1
        );
        // Then Carol is lost too, and the shard wants a copy again: Bob's copy, already told to
        // go, is not taken back (its delete may be on its way); repair rebuilds it instead.
        let revoked = hub
            .call(
                Method::DELETE,
                &format!("/v1/devices/{carol_id}"),
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT);
        let later = surplus_hub::now_ms();
        assert_eq!(
            store
                .readopt_returned(later - 60_000, later - 1, later)
                .await
                .expect("readopt"),
            0
        );
        // A copy that was never told to go is taken back, and a delete can no longer be
        // claimed for it.
        store
            .readopt_returned(later - 60_000, later - 1, later)
            .await
            .expect("readopt");
        assert!(!store.claim_delete(bobs, later, later).await.expect("claim"));
    }
}

/// Blobs larger than one part of a multipart upload (8 MiB) stream through either staging in
/// pieces, read back whole and by range; one whose content does not match its name is dropped
/// without a trace, however far its upload got.
#[tokio::test]
async fn large_blobs_stream_through_staging_and_a_wrong_one_leaves_nothing() {
    use futures_util::TryStreamExt;
    let content: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let hash = blake3::hash(&content).to_hex().to_string();
    let chunks = |bytes: &[u8]| {
        futures_util::stream::iter(
            bytes
                .chunks(1 << 20)
                .map(|chunk| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(chunk)))
                .collect::<Vec<_>>(),
        )
    };
    for hub in quiet_hubs().await {
        let staging = &hub.hub.staging;
        let size = staging
            .put(&hash, chunks(&content), 64 << 20)
            .await
            .expect("a large blob stages");
        assert_eq!(size, content.len() as u64);
        let (stream, size) = staging
            .open_blob(&hash)
            .await
            .expect("open")
            .expect("staged");
        assert_eq!(size, content.len() as u64);
        let read: Vec<bytes::Bytes> = stream.try_collect().await.expect("read");
        assert_eq!(blake3::hash(&read.concat()).to_hex().to_string(), hash);
        let range = staging
            .read_range(&hash, (9 << 20) - 5, 10)
            .await
            .expect("range")
            .expect("staged");
        assert_eq!(range, content[(9 << 20) - 5..(9 << 20) + 5]);
        let tail = staging
            .read_range(&hash, content.len() as u64 - 3, 100)
            .await
            .expect("range")
            .expect("staged");
        assert_eq!(tail, content[content.len() - 3..]);

        // The same bytes under another name: refused, and nothing of it is staged.
        let wrong = blake3::hash(b"another name").to_hex().to_string();
        let refused = staging.put(&wrong, chunks(&content), 64 << 20).await;
        assert!(matches!(
            refused,
            Err(surplus_hub::staging::StagingError::HashMismatch { .. })
        ));
        assert!(staging.open_blob(&wrong).await.expect("open").is_none());
        assert!(!hub.staging.join(&wrong[..2]).join(&wrong).exists());

        staging.delete(&hash).await.expect("delete");
        assert!(staging.open_blob(&hash).await.expect("open").is_none());
        staging.delete(&hash).await.expect("deleting twice is fine");
    }
}

#[tokio::test]
async fn a_batch_of_heartbeats_keeps_each_devices_newest_report_and_every_new_slot() {
    use surplus_hub::store::{HeartbeatRow, PRESENCE_SLOT_MS};
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (pc, _) = hub.device(&ada, "ada-pc").await;
        let (laptop, _) = hub.device(&ada, "ada-laptop").await;
        let (pc, laptop): (uuid::Uuid, uuid::Uuid) =
            (pc.parse().expect("id"), laptop.parse().expect("id"));
        let report: surplus_protocol::StatusReport =
            serde_json::from_value(report()).expect("report");
        let beat = |device, at: i64, storage_bytes, new_slot: bool| HeartbeatRow {
            device_id: device,
            at,
            report: serde_json::to_string(&report).expect("report"),
            spare: surplus_protocol::Spare {
                storage_bytes,
                compute_slots: 1,
                storage_reason: None,
                compute_reason: None,
            },
            new_slot: new_slot.then(|| at.div_euclid(PRESENCE_SLOT_MS)),
            network: Some(format!("net-{storage_bytes}")),
            arch_class: "x86".into(),
        };
        let start = surplus_hub::now_ms() - 10 * PRESENCE_SLOT_MS;
        // The pc's newer heartbeat comes first in the batch: the newer one still wins.
        hub.hub
            .store
            .record_heartbeats(&[
                beat(pc, start + PRESENCE_SLOT_MS, 2000, true),
                beat(pc, start, 1000, true),
                beat(laptop, start, 500, true),
            ])
            .await
            .expect("batch");
        let devices = hub.hub.store.devices(None).await.expect("devices");
        let shown = |id| devices.iter().find(|d| d.id == id).expect("device");
        assert_eq!(shown(pc).last_heartbeat, Some(start + PRESENCE_SLOT_MS));
        assert_eq!(shown(pc).spare.storage_bytes, 2000);
        assert_eq!(shown(laptop).spare.storage_bytes, 500);
        let first_slot = start.div_euclid(PRESENCE_SLOT_MS);
        assert_eq!(
            hub.hub
                .store
                .presence_slots(pc, first_slot)
                .await
                .expect("slots"),
            2
        );
        assert_eq!(
            hub.hub
                .store
                .presence_slots(laptop, first_slot)
                .await
                .expect("slots"),
            1
        );
        assert!(hub.hub.store.returned().await.expect("returned").is_empty());
        let store = hub.hub.store.clone();
        let network = |id| {
            let store = store.clone();
            async move {
                let candidates = store.storage_candidates().await.expect("candidates");
                candidates
                    .into_iter()
                    .find(|c| c.device_id == id)
                    .and_then(|c| c.network)
            }
        };
        assert_eq!(network(pc).await.as_deref(), Some("net-2000"));

        // Back after a long absence: the hub notes when, so that its shards are audited first.
        let absence = surplus_rules::presence::PresencePolicy::DEFAULT.at_risk_floor;
        let back = start + PRESENCE_SLOT_MS + absence + 1;
        hub.hub
            .store
            .record_heartbeats(&[beat(pc, back, 3000, false)])
            .await
            .expect("second batch");
        let returned = hub.hub.store.returned().await.expect("returned");
        assert_eq!(returned.get(&pc), Some(&back));
        assert_eq!(returned.get(&laptop), None);
        // A heartbeat in a slot already recorded leaves the network as it was.
        assert_eq!(network(pc).await.as_deref(), Some("net-2000"));
    }
}

#[tokio::test]
async fn a_batch_of_allocations_leaves_out_a_second_live_copy_on_one_device_and_writes_the_rest() {
    use surplus_hub::store::NewBlobAllocation;
    for hub in quiet_hubs().await {
        let ada = hub.signup("ada@example.org").await;
        let (_, ada_pc) = hub.device(&ada, "ada-pc").await;
        let bob = hub.signup("bob@example.org").await;
        let (bob_pc, _) = hub.device(&bob, "bob-pc").await;
        let bob_pc: uuid::Uuid = bob_pc.parse().expect("id");
        let ada_id = hub
            .hub
            .store
            .login("ada@example.org")
            .await
            .expect("query")
            .expect("ada")
            .subscriber
            .id;
        let mut blobs = Vec::new();
        for fill in [1u8, 2] {
            let body = vec![fill; 3000];
            assert_eq!(hub.upload(&ada_pc, &body).await.status, StatusCode::CREATED);
            blobs.push(surplus_protocol::BlobRef {
                hash: blake3::hash(&body).to_hex().to_string(),
                size: 3000,
            });
        }
        let allocation = |blob: &surplus_protocol::BlobRef| NewBlobAllocation {
            id: uuid::Uuid::now_v7(),
            owner: ada_id,
            device: bob_pc,
            blob: blob.clone(),
            purpose: surplus_rules::handover::Purpose::Store,
        };
        let now = surplus_hub::now_ms();
        let first = hub
            .hub
            .store
            .allocate_blob_storage(&[allocation(&blobs[0])], now, now + 60_000)
            .await
            .expect("first");
        assert!(first[0].is_some());
        // The first blob again (another process placed it meanwhile), and a new one.
        let batch = [allocation(&blobs[0]), allocation(&blobs[1])];
        let second = hub
            .hub
            .store
            .allocate_blob_storage(&batch, now, now + 60_000)
            .await
            .expect("second");
        assert!(second[0].is_none(), "no second live copy on one device");
        let queued = second[1].as_ref().expect("the new blob is allocated");
        assert_eq!(
            queued.kind,
            surplus_protocol::InstructionKind::StoreBlob {
                blob: blobs[1].clone(),
                allocation_id: batch[1].id,
            }
        );
        // The ledger shows the two allocations that were made, each with its instruction.
        let ledger = hub
            .call(Method::GET, "/v1/allocations", Some(&ada), None)
            .await;
        let ids: Vec<&str> = ledger
            .body
            .as_array()
            .expect("ledger")
            .iter()
            .filter_map(|a| a["id"].as_str())
            .collect();
        assert_eq!(ids.len(), 2, "{}", ledger.body);
        assert!(!ids.contains(&batch[0].id.to_string().as_str()));
        assert!(ids.contains(&batch[1].id.to_string().as_str()));
    }
}
