//! Admin surface at its edges: the Host and Content-Type rules that keep a
//! tokenless API out of reach of web pages (SPEC §8), replay of runs that
//! are not finished, `/readyz`, and the byte budget for inbound bodies in
//! flight.

mod common;

use common::{Backend, Sink, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

const TOKEN: &str = "adm1n-t0ken";

fn transform_wf(path: &str) -> String {
    format!("trigger:\n  webhook: {{ path: {path} }}\nsteps:\n  - id: s\n    transform: {{ script: '1' }}\n")
}

/// GET `path` with this `Host` header (and a token if given).
async fn get_with_host(
    server: &TestServer,
    path: &str,
    host: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = server.client.get(server.url(path)).header("host", host);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POST `body` with this `Content-Type` (none when `None`).
async fn post_typed(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = server.client.post(server.url(path)).body(body.to_string());
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Send raw bytes on a new connection and read the whole answer (the
/// request asks for `connection: close`).
async fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    read_answer(&mut s).await
}

async fn read_answer(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the server answered in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

both!(without_a_token_only_local_host_names_reach_the_api_and_ui);
async fn without_a_token_only_local_host_names_reach_the_api_and_ui(backend: Backend) {
    let server =
        TestServer::start_on(backend, &[("in.yaml", &transform_wf("/in"))], &[], |_| {}).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().expect("port").to_string();

    for host in [
        addr.clone(),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("LocalHost:{port}"),
        "127.0.0.1".to_string(),
        "127.0.0.2:9".to_string(),
        format!("[::1]:{port}"),
        "[::1]".to_string(),
    ] {
        let (code, body) = get_with_host(&server, "/api/events", &host, None).await;
        assert_eq!(code, 200, "Host {host}: {body}");
    }

    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("10.1.2.3:{port}"),
        format!("[::2]:{port}"),
        format!("localhost:{port}@evil.example"),
        "".to_string(),
    ] {
        for path in ["/api/events", "/api/runs", "/ui/", "/ui/app.js"] {
            let (code, body) = get_with_host(&server, path, &host, None).await;
            assert_eq!(code, 403, "Host {host:?} on {path}: {body}");
            let msg = body["error"].as_str().unwrap_or("");
            assert!(
                msg.contains("HOOKFLOW_API_TOKEN") && msg.contains("Host"),
                "the refusal says why and what to do: {msg}"
            );
        }
    }

    // No Host at all: refused too.
    let answer = raw(
        &addr,
        b"GET /api/events HTTP/1.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 403, "{answer}");

    // The public endpoints do not care which name the sender used.
    let resp = server
        .client
        .post(server.url("/hooks/in"))
        .header("host", "hooks.example.com")
        .json(&json!({"a": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let (code, _) = get_with_host(&server, "/healthz", "evil.example", None).await;
    assert_eq!(code, 200);
    server.stop().await;
}

both!(with_a_token_the_token_decides_whatever_the_host_or_content_type);
async fn with_a_token_the_token_decides_whatever_the_host_or_content_type(backend: Backend) {
    let server = TestServer::start_on(backend, &[("in.yaml", &transform_wf("/in"))], &[], |c| {
        c.api_token = Some(TOKEN.into())
    })
    .await;
    let (code, body) = get_with_host(&server, "/api/events", "evil.example", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = get_with_host(&server, "/api/events", "evil.example", None).await;
    assert_eq!(code, 401);
    let (code, _) = get_with_host(&server, "/api/events", "localhost", None).await;
    assert_eq!(code, 401, "a local name is no substitute for the token");
    let resp = server
        .client
        .post(server.url("/api/runs/replay"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        resp.status().as_u16(),
        202,
        "with the token, a POST needs no JSON Content-Type"
    );
    server.stop().await;
}

both!(with_a_token_a_basic_form_post_cannot_replay_runs);
/// Browsers resend Basic credentials by themselves, so with a token a
/// cross-site form post would carry them: a state-changing request
/// authorized by Basic must be JSON, as tokenless ones must. Bearer (which
/// no page can make a browser send cross-site) needs nothing more.
async fn with_a_token_a_basic_form_post_cannot_replay_runs(backend: Backend) {
    let mut sink = Sink::start().await;
    let server = TestServer::start_on(backend, &[("w.yaml", &failing_forward(&sink))], &[], |c| {
        c.api_token = Some(TOKEN.into())
    })
    .await;
    sink.answer("/out", vec![(500, vec![], "{}".into())]);
    let (code, answer) = server.post_json("/hooks/in", &json!({"n": 1})).await;
    assert_eq!(code, 202, "{answer}");
    sink.next().await;
    let oid = answer["runs"][0].as_str().expect("run").to_string();
    let one = format!("/api/runs/{oid}/replay");
    let basic = |req: reqwest::RequestBuilder| req.basic_auth("admin", Some(TOKEN));
    // The run has failed once it is listed as failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = basic(server.client.get(server.url(&format!("/api/runs/{oid}"))))
            .send()
            .await
            .expect("sent");
        let run: Value = resp.json().await.unwrap_or(Value::Null);
        if run["status"] == "failed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never failed: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, ctype, body) in [
        (
            "/api/runs/replay?workflow=w&status=failed",
            Some("application/x-www-form-urlencoded"),
            "a=b",
        ),
        (one.as_str(), Some("text/plain"), "{\"from\": \"start\"}"),
        (one.as_str(), None, ""),
    ] {
        let mut req = basic(server.client.post(server.url(path))).body(body.to_string());
        if let Some(t) = ctype {
            req = req.header("content-type", t);
        }
        let resp = req.send().await.expect("sent");
        let code = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(code, 403, "{path} with {ctype:?}: {answer}");
        let msg = answer["error"].as_str().unwrap_or("");
        assert!(
            msg.contains("Content-Type: application/json") && msg.contains("Bearer"),
            "{msg}"
        );
    }
    let resp = basic(server.client.get(server.url(&format!("/api/runs/{oid}"))))
        .send()
        .await
        .expect("sent");
    let run: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(run["replays"], json!([]), "nothing was replayed: {run}");
    assert!(sink.quiet_for(Duration::from_millis(300)).await);

    // Basic with the JSON type, and Bearer with none, go through.
    let resp = basic(server.client.post(server.url(&one)))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    sink.next().await;
    let resp = server
        .client
        .post(server.url(&one))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    sink.next().await;
    server.stop().await;
}

fn failing_forward(sink: &Sink) -> String {
    format!(
        "name: w\ntrigger:\n  webhook: {{ path: /in }}\nsteps:\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.event }}}}\"\n      retry: {{ attempts: 1 }}\n",
        sink.url("/out")
    )
}

both!(a_cross_site_form_post_cannot_replay_runs);
async fn a_cross_site_form_post_cannot_replay_runs(backend: Backend) {
    let mut sink = Sink::start().await;
    let server =
        TestServer::start_on(backend, &[("w.yaml", &failing_forward(&sink))], &[], |_| {}).await;
    sink.answer("/out", vec![(500, vec![], "{}".into())]);
    let original = server.run_once("/hooks/in", &json!({"n": 1})).await;
    assert_eq!(original["status"], "failed");
    sink.next().await;
    let oid = original["id"].as_str().expect("id").to_string();

    let bulk = "/api/runs/replay?workflow=w&status=failed";
    let one = format!("/api/runs/{oid}/replay");
    for (path, ctype, body) in [
        (bulk, Some("application/x-www-form-urlencoded"), "a=b"),
        (bulk, Some("text/plain"), "{\"from\": \"start\"}"),
        (bulk, Some("multipart/form-data; boundary=x"), "--x--"),
        (bulk, None, ""),
        (bulk, Some("application/jsonp"), "{}"),
        (one.as_str(), Some("text/plain"), "{\"from\": \"start\"}"),
        (one.as_str(), Some("application/x-www-form-urlencoded"), ""),
        (one.as_str(), None, ""),
    ] {
        let (code, answer) = post_typed(&server, path, ctype, body).await;
        assert_eq!(code, 403, "{path} with {ctype:?}: {answer}");
        let msg = answer["error"].as_str().unwrap_or("");
        assert!(
            msg.contains("Content-Type: application/json") && msg.contains("HOOKFLOW_API_TOKEN"),
            "{msg}"
        );
    }
    // Nothing was replayed: no new run, no outbound call.
    let (_, run) = server.get(&format!("/api/runs/{oid}")).await;
    assert_eq!(run["replays"], json!([]), "{run}");
    let (_, runs) = server.get("/api/runs").await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(1), "{runs}");
    assert!(sink.quiet_for(Duration::from_millis(300)).await);

    // The same requests as JSON go through (parameters and case allowed).
    let (code, answer) =
        post_typed(&server, bulk, Some("application/json; charset=utf-8"), "").await;
    assert_eq!(code, 202, "{answer}");
    assert_eq!(
        answer["run_ids"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    sink.next().await;
    let (code, answer) = post_typed(&server, &one, Some("Application/JSON"), "{}").await;
    assert_eq!(code, 201, "{answer}");
    sink.next().await;
    server.stop().await;
}

/// A receiver that holds every request until the test opens the gate, and
/// reports each arrival.
struct GatedSink {
    addr: std::net::SocketAddr,
    arrived: mpsc::UnboundedReceiver<()>,
    open: watch::Sender<bool>,
}

impl GatedSink {
    async fn start() -> GatedSink {
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let (open, gate) = watch::channel(false);
        let app = axum::Router::new().fallback(move || {
            let (arrived_tx, mut gate) = (arrived_tx.clone(), gate.clone());
            async move {
                let _ = arrived_tx.send(());
                let _ = gate.wait_for(|open| *open).await;
                "{\"ok\":true}"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GatedSink {
            addr,
            arrived,
            open,
        }
    }

    async fn wait_arrival(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.recv())
            .await
            .expect("the request reached the sink in time")
            .expect("sink open");
    }
}

both!(replay_of_a_run_that_is_not_finished_is_refused);
async fn replay_of_a_run_that_is_not_finished_is_refused(backend: Backend) {
    let mut gated = GatedSink::start().await;
    let retry_sink = Sink::start().await;
    let slow = format!(
        "name: slow\ntrigger:\n  webhook: {{ path: /slow }}\nsteps:\n  - id: call\n    http:\n      url: \"http://{}/hold\"\n      timeout: 60s\n      retry: {{ attempts: 1 }}\n",
        gated.addr
    );
    let later = format!(
        "name: later\ntrigger:\n  webhook: {{ path: /later }}\nsteps:\n  - id: call\n    http:\n      url: \"{}\"\n      retry: {{ attempts: 3, backoff: 10m }}\n",
        retry_sink.url("/busy")
    );
    let server = TestServer::start_on(
        backend,
        &[("slow.yaml", &slow), ("later.yaml", &later)],
        &[],
        |_| {},
    )
    .await;

    // A run waiting for its next attempt.
    retry_sink.answer("/busy", vec![(503, vec![], "{}".into())]);
    let (code, answer) = server.post_json("/hooks/later", &json!({})).await;
    assert_eq!(code, 202, "{answer}");
    let retrying = answer["runs"][0].as_str().expect("run").to_string();
    server.wait_run_status(&retrying, &["retrying"]).await;

    // A run whose request is under way.
    let (code, answer) = server.post_json("/hooks/slow", &json!({})).await;
    assert_eq!(code, 202, "{answer}");
    let running = answer["runs"][0].as_str().expect("run").to_string();
    gated.wait_arrival().await;
    server.wait_run_status(&running, &["running"]).await;

    for (id, status) in [(&running, "running"), (&retrying, "retrying")] {
        let (code, answer) = server
            .post_json(&format!("/api/runs/{id}/replay"), &json!({}))
            .await;
        assert_eq!(code, 409, "{status}: {answer}");
        let msg = answer["error"].as_str().unwrap_or("");
        assert!(msg.contains(status) && msg.contains("finish"), "{msg}");
        let (_, run) = server.get(&format!("/api/runs/{id}")).await;
        assert_eq!(run["replays"], json!([]), "the run record is left alone");
    }
    // Bulk replay skips them and says why.
    for status in ["running", "retrying"] {
        let (code, answer) = server
            .post_json(&format!("/api/runs/replay?status={status}"), &json!({}))
            .await;
        assert_eq!(code, 202, "{answer}");
        assert_eq!(answer["run_ids"], json!([]), "{answer}");
        let skipped = answer["skipped"].as_array().expect("skipped");
        assert_eq!(skipped.len(), 1, "{answer}");
        assert!(skipped[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains(status)));
    }
    let (_, runs) = server.get("/api/runs").await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(2), "{runs}");

    // Once it has finished, the same replay is accepted.
    let _ = gated.open.send(true);
    let done = server.wait_run(&running).await;
    assert_eq!(done["status"], "succeeded");
    let (code, answer) = server
        .post_json(&format!("/api/runs/{running}/replay"), &json!({}))
        .await;
    assert_eq!(code, 201, "{answer}");
    server.stop().await;
}

both!(readyz_answers_ready_on_a_healthy_server);
async fn readyz_answers_ready_on_a_healthy_server(backend: Backend) {
    let server =
        TestServer::start_on(backend, &[("in.yaml", &transform_wf("/in"))], &[], |_| {}).await;
    for _ in 0..3 {
        assert_eq!(
            server.get("/readyz").await,
            (200, json!({"status": "ready"}))
        );
    }
    let run = server.run_once("/hooks/in", &json!({})).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        server.get("/readyz").await,
        (200, json!({"status": "ready"}))
    );
    assert_eq!(server.get("/healthz").await, (200, json!({"status": "ok"})));
    server.stop().await;
}

// A store that refuses writes, for real. sled: the server's file-size
// limit is lowered to zero while it runs (`prlimit`), so every write sled
// makes fails with `EFBIG`, as it would with `ENOSPC` on a full disk
// (SIGXFSZ is ignored in the child so the write fails instead of killing
// the process). PostgreSQL: the database is made read-only and the
// server's sessions ended, so every session it opens again refuses
// writes, as a primary demoted to a standby would.
#[cfg(target_os = "linux")]
both!(readyz_says_why_when_the_store_cannot_take_writes);
#[cfg(target_os = "linux")]
async fn readyz_says_why_when_the_store_cannot_take_writes(backend: Backend) {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tmp");
    common::write_files(
        &dir.path().join("workflows"),
        &[("in.yaml", &transform_wf("/in"))],
    );
    let workflows = dir.path().join("workflows");
    let store = backend.store_args(dir.path());
    let args = common::with_store(
        &["--workflows", workflows.to_str().expect("utf-8 path")],
        &store,
    );
    let server = common::BinServer::start_tweaked("127.0.0.1:0", &args, &[], |cmd| {
        // SAFETY: between fork and exec, only an async-signal-safe call.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    });
    let client = common::client();
    let ready = |client: reqwest::Client, url: String| async move {
        let resp = client.get(url).send().await.expect("sent");
        let code = resp.status().as_u16();
        (code, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    assert_eq!(
        ready(client.clone(), server.url("/readyz")).await,
        (200, json!({"status": "ready"}))
    );

    match backend {
        Backend::Sled => {
            let limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: libc::RLIM_INFINITY,
            };
            let pid = libc::pid_t::try_from(server.child.id()).expect("pid");
            // SAFETY: sets a resource limit of our own child; pointers are valid.
            let rc =
                unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
            assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
        }
        Backend::Postgres => {
            let cluster = common::pg::cluster().expect("PostgreSQL runs");
            let url = &store[1];
            let db = url.rsplit('/').next().expect("a database name");
            cluster.psql(
                url,
                &format!("ALTER DATABASE \"{db}\" SET default_transaction_read_only = on"),
            );
            cluster.psql(
                url,
                &format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                      WHERE datname = '{db}' AND pid <> pg_backend_pid()"
                ),
            );
        }
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (code, body) = ready(client.clone(), server.url("/readyz")).await;
        if code == 503 {
            break body;
        }
        assert_eq!(code, 200, "{body}");
        assert!(
            Instant::now() < deadline,
            "/readyz never noticed the failing disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "not_ready", "{body}");
    let reason = body["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("store"),
        "the reason names the store: {reason}"
    );
    // A webhook is not acknowledged while nothing can be made durable.
    let resp = client
        .post(server.url("/hooks/in"))
        .json(&json!({"x": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 503);
    // The process itself still serves.
    let health: Value = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(health, json!({"status": "ok"}));
    server.kill();
}

/// A JSON body of exactly `len` bytes.
fn json_body(len: usize) -> String {
    let pad = len - "{\"pad\":\"\"}".len();
    format!("{{\"pad\":\"{}\"}}", "x".repeat(pad))
}

fn hook_head(len: usize) -> String {
    format!("POST /hooks/in HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
}

both!(
    bodies_in_flight_stay_within_the_byte_budget,
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
);
async fn bodies_in_flight_stay_within_the_byte_budget(backend: Backend) {
    const BODY: usize = 60_000;
    let server = TestServer::start_on(backend, &[("in.yaml", &transform_wf("/in"))], &[], |c| {
        c.max_body = 64 * 1024;
        c.max_inflight_body = 128 * 1024;
    })
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = json_body(BODY);

    // Two uploads that stall part-way hold 120,000 of the 131,072 bytes.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(hook_head(BODY).as_bytes()).await.expect("head");
        s.write_all(&body.as_bytes()[..1000]).await.expect("start");
        holders.push(s);
    }

    // A third large body does not fit: after a short wait, 503 with
    // Retry-After. (The holders' headers may still be on their way at
    // first; try a bounded number of times.)
    let mut accepted: Vec<String> = Vec::new();
    let mut refused = None;
    for _ in 0..40 {
        let resp = server
            .client
            .post(server.url("/hooks/in"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        let code = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").cloned();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        match code {
            202 => accepted.push(answer["event_id"].as_str().expect("id").to_string()),
            503 => {
                refused = Some((retry_after, answer));
                break;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (retry_after, answer) = refused.expect("a body beyond the budget is refused");
    let secs: u64 = retry_after
        .and_then(|v| v.to_str().ok().and_then(|s| s.parse().ok()))
        .expect("a Retry-After in seconds");
    assert!(secs >= 1, "{secs}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("retry")),
        "{answer}"
    );

    // A chunked body is counted as it arrives: it runs out of room too.
    let chunked = [
        b"POST /hooks/in HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".as_slice(),
        format!("{:x}\r\n", BODY / 2).as_bytes(),
        &json_body(BODY / 2).into_bytes(),
        b"\r\n0\r\n\r\n",
    ]
    .concat();
    let answer = raw(&addr, &chunked).await;
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after:"),
        "{answer}"
    );

    // A small body still fits in what is left.
    let (code, small) = server.post_json("/hooks/in", &json!({"small": true})).await;
    assert_eq!(code, 202, "{small}");
    accepted.push(small["event_id"].as_str().expect("id").to_string());

    // The stalled uploads finish and are accepted: their room was theirs.
    for mut s in holders {
        s.write_all(&body.as_bytes()[1000..]).await.expect("rest");
        let answer = read_answer(&mut s).await;
        assert_eq!(status_of(&answer), 202, "{answer}");
        let json_start = answer.find("\r\n\r\n").expect("head end") + 4;
        let v: Value = serde_json::from_str(&answer[json_start..]).expect("json");
        accepted.push(v["event_id"].as_str().expect("id").to_string());
    }

    // Many large bodies at once: each is accepted or told to retry.
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (client, url, body) = (server.client.clone(), server.url("/hooks/in"), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("sent");
            let code = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            (
                code,
                retry_after,
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }));
    }
    let mut busy = 0;
    for t in tasks {
        let (code, retry_after, answer) = t.await.expect("task");
        match code {
            202 => accepted.push(answer["event_id"].as_str().expect("id").to_string()),
            503 if retry_after => busy += 1,
            other => panic!("got {other} (Retry-After: {retry_after}): {answer}"),
        }
    }
    println!(
        "concurrent large bodies: {} accepted in all, {busy} told to retry",
        accepted.len()
    );

    // Nothing acknowledged is lost.
    for id in &accepted {
        let (code, event) = server.get(&format!("/api/events/{id}")).await;
        assert_eq!(code, 200, "{id}: {event}");
        let run = event["runs"][0].as_str().expect("a run").to_string();
        assert_eq!(server.wait_run(&run).await["status"], "succeeded");
    }
    // And the server is healthy, with its whole budget back.
    assert_eq!(server.get("/healthz").await.0, 200);
    assert_eq!(server.get("/readyz").await.0, 200);
    for _ in 0..2 {
        let (code, answer) = server
            .post_raw("/hooks/in", "application/json", body.clone())
            .await;
        assert_eq!(code, 202, "{answer}");
    }
    server.stop().await;
}

#[test]
fn serve_refuses_a_budget_smaller_than_one_body() {
    let (status, err) =
        common::serve_refused(&["--max-body", "2MiB", "--max-inflight-body", "1MiB"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--max-inflight-body") && err.contains("--max-body"),
        "{err}"
    );
}
