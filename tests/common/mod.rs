//! Shared test parts: the real server on an ephemeral loopback port with a
//! temp workflows folder and a temp sled store, and a real sink HTTP server
//! that hands every request it receives to the test through a channel.
#![allow(dead_code)] // each test binary uses a different subset

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use hookflow::config::ServeConfig;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub const FINAL: &[&str] = &["succeeded", "filtered", "failed"];

pub mod disk;
pub mod pg;
pub mod records;

/// The store a test runs on. A test that should hold on every backend
/// takes one and is run once per backend by [`both!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// sled in a temp folder (the default store).
    Sled,
    /// A fresh database in this process's private PostgreSQL cluster.
    Postgres,
}

impl Backend {
    /// This backend cannot run here (no PostgreSQL installed, and none
    /// required): the test returns early, after a note.
    pub fn unavailable(self) -> bool {
        match self {
            Backend::Sled => false,
            Backend::Postgres => pg::cluster().is_none(),
        }
    }

    /// A new, empty store for a server: `None` for sled (the server's
    /// `--data` folder), a fresh database URL for PostgreSQL.
    pub fn fresh_store(self) -> Option<String> {
        match self {
            Backend::Sled => None,
            Backend::Postgres => Some(
                pg::cluster()
                    .expect("PostgreSQL is available (checked by both!)")
                    .fresh_database(),
            ),
        }
    }

    /// `serve` arguments for a test that kills the binary and starts it
    /// again on the same store: on PostgreSQL a short lease, so the new
    /// process takes over the runs the killed one held within seconds (as
    /// another node would); nothing on sled (one process owns the folder).
    pub fn kill_args(self) -> Vec<String> {
        match self {
            Backend::Sled => Vec::new(),
            Backend::Postgres => vec!["--lease".into(), "2s".into()],
        }
    }

    /// The `serve` arguments that put a binary server on a new store:
    /// `--data DIR/data` for sled, `--store URL` (a fresh database) for
    /// PostgreSQL. Keep them to restart on the same store.
    pub fn store_args(self, dir: &Path) -> Vec<String> {
        match self.fresh_store() {
            None => vec!["--data".into(), dir.join("data").display().to_string()],
            Some(url) => vec!["--store".into(), url],
        }
    }
}

/// `args` then `store` (from [`Backend::store_args`]), as
/// [`BinServer::start`] takes them.
pub fn with_store<'a>(args: &[&'a str], store: &'a [String]) -> Vec<&'a str> {
    args.iter()
        .copied()
        .chain(store.iter().map(String::as_str))
        .collect()
}

/// Run a test on every backend: `both!(name)` (or `both!(name,
/// #[tokio::test(flavor = "multi_thread")])`) turns `async fn name(backend:
/// Backend)` into the tests `name::sled` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        $crate::both!($name, #[tokio::test]);
    };
    ($name:ident, #[$attr:meta]) => {
        mod $name {
            #[$attr]
            async fn sled() {
                super::$name($crate::common::Backend::Sled).await
            }
            #[$attr]
            async fn postgres() {
                if $crate::common::Backend::Postgres.unavailable() {
                    return;
                }
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    };
}

pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    /// `--store` of this server (`None`: sled in `dir/data`), kept for
    /// restarts.
    pub store: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Start a server over `workflows` (file name → YAML) and `scripts`.
    pub async fn start(workflows: &[(&str, &str)], scripts: &[(&str, &str)]) -> TestServer {
        Self::start_with(workflows, scripts, |_| {}).await
    }

    pub async fn start_with(
        workflows: &[(&str, &str)],
        scripts: &[(&str, &str)],
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> TestServer {
        Self::start_on(Backend::Sled, workflows, scripts, tweak).await
    }

    /// Start a server on a new store of `backend`.
    pub async fn start_on(
        backend: Backend,
        workflows: &[(&str, &str)],
        scripts: &[(&str, &str)],
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let wf_dir = dir.path().join("workflows");
        let sc_dir = dir.path().join("scripts");
        write_files(&wf_dir, workflows);
        write_files(&sc_dir, scripts);
        let mut config = ServeConfig::new(wf_dir, sc_dir, dir.path().join("data"));
        config.store = backend.fresh_store();
        tweak(&mut config);
        Self::spawn(config, dir).await
    }

    /// Start a server whose connectors folder (the `connectors` folder
    /// beside its workflows) holds `connectors` (file name → YAML).
    pub async fn start_with_connectors(
        workflows: &[(&str, &str)],
        connectors: &[(&str, &str)],
    ) -> TestServer {
        Self::start_with_connectors_on(Backend::Sled, workflows, connectors).await
    }

    /// [`TestServer::start_with_connectors`] on a new store of `backend`.
    pub async fn start_with_connectors_on(
        backend: Backend,
        workflows: &[(&str, &str)],
        connectors: &[(&str, &str)],
    ) -> TestServer {
        Self::start_on(backend, workflows, &[], |c| {
            write_files(&c.workflows.with_file_name("connectors"), connectors)
        })
        .await
    }

    /// Serve `config` on an ephemeral loopback port.
    async fn spawn(config: ServeConfig, dir: tempfile::TempDir) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let store = config.store.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            hookflow::server::run(config, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            base: format!("http://{addr}"),
            dir,
            store,
            stop: Some(stop),
            handle: Some(handle),
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GET a text answer (`/metrics`, say).
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("a text answer")
    }

    /// Wait (bounded) until the run reaches a final status; return it.
    pub async fn wait_run(&self, run_id: &str) -> Value {
        self.wait_run_status(run_id, FINAL).await
    }

    pub async fn wait_run_status(&self, run_id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, run) = self.get(&format!("/api/runs/{run_id}")).await;
            if code == 200 && statuses.contains(&run["status"].as_str().unwrap_or("")) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} never reached {statuses:?}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replay run `run_id` with these options; the new run's id.
    pub async fn replay(&self, run_id: &str, options: &Value) -> String {
        replay_at(&self.client, &self.base, run_id, options).await
    }

    /// Post and wait for the single run the post created.
    pub async fn run_once(&self, path: &str, body: &Value) -> Value {
        let (code, answer) = self.post_json(path, body).await;
        assert_eq!(code, 202, "{answer}");
        let runs = answer["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{answer}");
        self.wait_run(runs[0].as_str().expect("id")).await
    }

    /// Stop, replace the workflow files, and start again on the same store.
    pub async fn restart(self, workflows: &[(&str, &str)]) -> TestServer {
        self.restart_after(workflows, |_| {}).await
    }

    /// Stop, call `between` with the data folder (the store is closed),
    /// then start again on the same data.
    pub async fn restart_after(
        mut self,
        workflows: &[(&str, &str)],
        between: impl FnOnce(&Path),
    ) -> TestServer {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        self.stop_inner().await;
        between(&dir.path().join("data"));
        write_files(&dir.path().join("workflows"), workflows);
        let mut config = ServeConfig::new(
            dir.path().join("workflows"),
            dir.path().join("scripts"),
            dir.path().join("data"),
        );
        config.store = self.store.clone();
        Self::spawn(config, dir).await
    }

    async fn stop_inner(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    /// Post and wait for the run through an API that needs a token.
    pub async fn run_once_with_token(&self, path: &str, body: &Value, token: &str) -> Value {
        let (code, answer) = self.post_json(path, body).await;
        assert_eq!(code, 202, "{answer}");
        let id = answer["runs"][0].as_str().expect("run").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let run: Value = self
                .client
                .get(self.url(&format!("/api/runs/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            if FINAL.contains(&run["status"].as_str().unwrap_or("")) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write file");
    }
}

/// A temp folder for the real binary on sled: `workflows/` with these
/// files and `data/` beside it, and the `serve` arguments naming both
/// (then `extra`).
pub struct SledFolder {
    pub dir: tempfile::TempDir,
    pub data: std::path::PathBuf,
    args: Vec<String>,
}

impl SledFolder {
    pub fn new(files: &[(&str, &str)], extra: &[&str]) -> SledFolder {
        let dir = tempfile::tempdir().expect("tmp");
        let workflows = dir.path().join("workflows");
        write_files(&workflows, files);
        let data = dir.path().join("data");
        let mut args = vec![
            "--workflows".to_string(),
            workflows.display().to_string(),
            "--data".to_string(),
            data.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        SledFolder { dir, data, args }
    }

    /// The arguments, as [`BinServer::start`] takes them.
    pub fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// A request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the sink got it (it answers after its delay, if one is set).
    pub at: Instant,
    pub method: String,
    pub uri: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A canned answer: status, extra headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

#[derive(Clone)]
struct SinkState {
    tx: mpsc::UnboundedSender<Received>,
    answers: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
    delay: Arc<Mutex<Option<Duration>>>,
}

/// A real HTTP receiver on loopback.
pub struct Sink {
    pub addr: SocketAddr,
    pub rx: mpsc::UnboundedReceiver<Received>,
    answers: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
    delay: Arc<Mutex<Option<Duration>>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let (tx, rx) = mpsc::unbounded_channel();
        let answers: Arc<Mutex<HashMap<String, VecDeque<Answer>>>> = Arc::default();
        let delay: Arc<Mutex<Option<Duration>>> = Arc::default();
        let state = SinkState {
            tx,
            answers: answers.clone(),
            delay: delay.clone(),
        };
        let app = axum::Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink {
            addr,
            rx,
            answers,
            delay,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answer the next requests to `path` with these, in order; after them 200.
    pub fn answer(&self, path: &str, answers: Vec<Answer>) {
        self.answers
            .lock()
            .expect("lock")
            .insert(path.to_string(), answers.into());
    }

    pub fn set_delay(&self, d: Option<Duration>) {
        *self.delay.lock().expect("lock") = d;
    }

    /// The next request, waiting at most a few seconds.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("the sink received a request in time")
            .expect("sink open")
    }

    /// True when nothing arrives within `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, self.rx.recv()).await.is_err()
    }
}

async fn receive(
    State(s): State<SinkState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let at = Instant::now();
    let delay = *s.delay.lock().expect("lock");
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let _ = s.tx.send(Received {
        at,
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let answer = s
        .answers
        .lock()
        .expect("lock")
        .get_mut(uri.path())
        .and_then(|q| q.pop_front());
    let (status, extra, body) = answer.unwrap_or((200, vec![], "{\"ok\":true}".to_string()));
    let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (k.parse::<axum::http::HeaderName>(), v.parse()) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    resp
}

/// The path of the built binary, for CLI and restart tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookflow"))
}

/// `hookflow serve` with these args (and an empty temp folder for its data
/// and workflows) that must refuse to start: its exit status and stderr.
pub fn serve_refused(args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = std::process::Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--workflows")
        .arg(dir.path().join("none"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    (status, err)
}

/// What the shipped example workflows read from the environment: each
/// outbound URL at a path of `sink`, and the test secrets
/// (`tests/examples.rs` signs with them).
pub fn shipped_examples_env(sink: &Sink) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = [
        ("SLACK_WEBHOOK_URL", "/slack"),
        ("CI_TRIGGER_URL", "/ci"),
        ("ERP_BASE_URL", "/erp"),
        ("ERP_LINES_URL", "/erp-lines"),
        ("SALES_WEBHOOK_URL", "/sales"),
        ("CRM_URL", "/crm"),
        ("BILLING_SLACK_WEBHOOK_URL", "/billing"),
        ("EMAIL_API_URL", "/email"),
        ("ORDERS_API_URL", "/orders"),
    ]
    .into_iter()
    .map(|(k, path)| (k, sink.url(path)))
    .collect();
    env.extend(
        [
            ("STRIPE_WEBHOOK_SECRET", "whsec_test_0123456789"),
            ("GITHUB_WEBHOOK_SECRET", "gh-test-secret-value"),
            ("SHOPIFY_WEBHOOK_SECRET", "shpss-test-secret-value"),
            ("SLACK_SIGNING_SECRET", "slack-test-signing-secret"),
            ("ERP_API_KEY", "erp-key-very-secret-42"),
            ("CI_TOKEN", "ci-token-very-secret-43"),
        ]
        .map(|(k, v)| (k, v.to_string())),
    );
    env
}

/// A fixture of the shipped examples (`workflows/fixtures`).
pub fn shipped_fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/workflows/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// `body` signed with `secret` now, as Stripe sends it.
pub async fn post_stripe_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    body: String,
) -> reqwest::Response {
    use hookflow::signature::{sign, Algorithm};
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sig = hex::encode(sign(
        Algorithm::Sha256,
        secret,
        format!("{t}.{body}").as_bytes(),
    ));
    client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", format!("t={t},v1={sig}"))
        .body(body)
        .send()
        .await
        .expect("sent")
}

/// A `push` with this delivery id, signed with the examples' GitHub test
/// secret, as GitHub sends it.
pub async fn post_github_push(
    client: &reqwest::Client,
    url: &str,
    delivery: &str,
    body: String,
) -> reqwest::Response {
    use hookflow::signature::{sign, Algorithm};
    let sig = hex::encode(sign(
        Algorithm::Sha256,
        b"gh-test-secret-value",
        body.as_bytes(),
    ));
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", format!("sha256={sig}"))
        .body(body)
        .send()
        .await
        .expect("sent")
}

/// The Shopify order fixture, signed with the examples' test secret, as
/// Shopify sends it; with a webhook id and an `Authorization` header when
/// given.
pub async fn post_shopify_order(
    client: &reqwest::Client,
    url: &str,
    webhook_id: Option<&str>,
    authorization: Option<&str>,
) -> reqwest::Response {
    use base64::Engine as _;
    use hookflow::signature::{sign, Algorithm};
    let body = shipped_fixture("shopify_order.json");
    let sig = base64::engine::general_purpose::STANDARD.encode(sign(
        Algorithm::Sha256,
        b"shpss-test-secret-value",
        body.as_bytes(),
    ));
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-shop-domain", "acme.myshopify.com")
        .header("x-shopify-hmac-sha256", sig);
    if let Some(id) = webhook_id {
        req = req.header("x-shopify-webhook-id", id);
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.body(body).send().await.expect("sent")
}

/// The real binary serving on an ephemeral port, ended by its PID on drop.
pub struct BinServer {
    pub child: std::process::Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl BinServer {
    /// Start `hookflow serve` with these extra args and env; wait until it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> BinServer {
        Self::start_at("127.0.0.1:0", args, env)
    }

    /// Start listening on a given address (to come back on the same port).
    pub fn start_at(listen: &str, args: &[&str], env: &[(&str, &str)]) -> BinServer {
        Self::start_tweaked(listen, args, env, |_| {})
    }

    /// Like [`BinServer::start_at`], with a last say over the command
    /// (a `pre_exec` hook, say).
    pub fn start_tweaked(
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
        tweak: impl FnOnce(&mut std::process::Command),
    ) -> BinServer {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(binary());
        cmd.arg("serve").arg("--listen").arg(listen).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tweak(&mut cmd);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().expect("lock").push(line);
            }
        });
        // Until it says where it listens; a server that exits first (its
        // port taken, a bad flag) fails the test at once, with its log.
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
                break a;
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the server exited ({status}) before it listened: {:?}",
                    log.lock().expect("lock")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not start: {:?}", log.lock().expect("lock"));
            }
        };
        BinServer {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Whether a line of the server's log so far contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(text))
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and assert a clean exit, showing the exit status and the
    /// server's log when it was not.
    pub fn stop(self) {
        let log = self.log.clone();
        let status = self.terminate();
        assert!(
            status.success(),
            "the server did not stop cleanly ({status}):\n{}",
            log.lock().expect("log").join("\n")
        );
    }

    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// SIGKILL: the crash case.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback address that refuses connections for as long as the
/// returned socket lives: the socket holds the port bound but never
/// listens, so no other test's server can be given the port meanwhile (a
/// port freed by dropping a listener can be, and then answers).
pub fn refusing_addr() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind a loopback port");
    let addr = socket.local_addr().expect("the bound address");
    (socket, addr)
}

/// An HTTP client for talking to a test server. The server closes a
/// keep-alive connection that sends nothing within its header timeout (10 s
/// by default); a client that reuses such a connection at that moment gets
/// an incomplete message. Idle connections are dropped well before.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// POST JSON and read the JSON answer (for binary servers).
pub async fn post_at(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// POST JSON that the server must answer as a duplicate of an event it
/// stored (`200`, `"duplicate": true`); the answer (for binary servers).
pub async fn post_duplicate(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let resp = client.post(url).json(body).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 200, "a redelivery is a duplicate");
    let again: Value = resp.json().await.expect("json");
    assert_eq!(again["duplicate"], true, "{again}");
    again
}

/// POST a replay of run `run_id` with these options to the server at
/// `base`; it must be accepted (`201`). The new run's id.
pub async fn replay_at(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    options: &Value,
) -> String {
    let resp = client
        .post(format!("{base}/api/runs/{run_id}/replay"))
        .json(options)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    resp.json::<Value>().await.expect("json")["run_id"]
        .as_str()
        .expect("run_id")
        .to_string()
}

/// GET and read the JSON answer (for binary servers).
pub async fn get_at(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// The `/metrics` text of the server at `base`.
pub async fn metrics_at(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// A gauge's or counter's value in a `/metrics` text.
pub fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// The `/metrics` text of the server at `base` once `ready` holds for it,
/// or the last one read after `within` (the caller's assertions then say
/// what is missing).
pub async fn metrics_once(
    client: &reqwest::Client,
    base: &str,
    within: Duration,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = metrics_at(client, base).await;
        if ready(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the server at `base` has no unfinished run
/// (`hookflow_queue_depth 0`); panics with `what` and the metrics after
/// `within`. A request that fails (a node starting again) is asked again.
pub async fn wait_queue_drained(
    client: &reqwest::Client,
    base: &str,
    within: Duration,
    what: &str,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = match client.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        if gauge(&text, "hookflow_queue_depth") == Some(0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the queue never emptied:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll a run until it is final, over plain HTTP (for binary servers).
pub async fn wait_run_at(client: &reqwest::Client, base: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("{base}/api/runs/{run_id}")).send().await {
            if let Ok(run) = resp.json::<Value>().await {
                if FINAL.contains(&run["status"].as_str().unwrap_or("")) {
                    return run;
                }
            }
        }
        assert!(Instant::now() < deadline, "run {run_id} never finished");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
pub mod browser;
pub mod connector;
pub mod standin;
