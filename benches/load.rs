//! Load benchmark: "Stripe event → filter → Rhai transform → POST to a local
//! sink" against the real release binary on loopback, at concurrency 32.
//! Reports durable acks per second, ack latency p50/p99, runs delivered per
//! second end to end, and the server's peak RSS. In the same run, the same
//! load against a no-op handler (the machine's ceiling) and against a
//! forwarder without storage that does the same job in process (Stripe
//! signature, event type, amount filter, the workflow's Rhai script on
//! hookflow's script engine, the POST) and answers once it has forwarded,
//! so the figures can be compared. Both run in a process of their own, as
//! hookflow does, not in the generator's.
//!
//! Then the forwarder and hookflow (the same server, once its backlog is
//! delivered) are offered the same job at a fixed rate, open loop, as
//! webhook senders send: 6,000 events/s (the delivery issue's sustained
//! goal) or `HOOKFLOW_BENCH_RATE`. That shows whether runs keep pace with
//! the acks, and the ack latency when the machine is not saturated.
//!
//! Run: `cargo bench --bench load` (optionally `-- SECONDS ROUNDS`, default
//! 10 s and one round; with several rounds it also prints the medians, as
//! this machine's speed varies by ±20% from one minute to the next).
//! For profiling: `HOOKFLOW_BENCH_ONLY=hookflow` skips the two reference
//! scenarios, `HOOKFLOW_BENCH_BIN=path` runs another build of the binary,
//! and the server's PID is printed when it listens.
//!
//! Then the same closed-loop load against hookflow on PostgreSQL (SPEC
//! §10): one node, then two nodes on one database with the clients split
//! between them. The database is `HOOKFLOW_BENCH_PG_URL` (a fresh schema is
//! made in it) or a private cluster started here from the installed server
//! binaries, with `fsync` on; `HOOKFLOW_BENCH_PG=off` skips these. Compare
//! with the database's own ceiling for the same statements:
//! `benches/pg/run.sh` (pgbench).
//!
//! Traffic stays on 127.0.0.1; every loop is bounded in time and count.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use hookflow::signature::{sign, Algorithm, Scheme, DEFAULT_TOLERANCE};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)] // the bench uses the durable cluster only
mod pg;

const CONCURRENCY: usize = 32;
const MAX_REQUESTS: usize = 2_000_000;
/// The demo workflow's Stripe secret (its fallback when
/// STRIPE_WEBHOOK_SECRET is unset).
const SECRET: &[u8] = b"whsec_hookflow_demo";

struct Figures {
    acks: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Figures {
    fn print(&self, name: &str) {
        println!(
            "{name:<34} {:>8.0} acks/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests in {:.1} s)",
            self.acks as f64 / self.seconds,
            self.p50_ms,
            self.p99_ms,
            self.acks,
            self.seconds
        );
    }
}

/// Makes the headers of each request (a fresh signature, say).
type Headers = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// A post of `body` to `url` with fresh headers.
fn request(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    headers: &Headers,
) -> reqwest::RequestBuilder {
    let mut req = client.post(url).body(body.to_vec());
    for (k, v) in headers() {
        req = req.header(k, v);
    }
    req
}

/// Send `req` and read the whole answer, which must be a success; the
/// milliseconds since `since`.
async fn answered(req: reqwest::RequestBuilder, since: Instant) -> f64 {
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            let _ = r.bytes().await;
            since.elapsed().as_secs_f64() * 1000.0
        }
        Ok(r) => panic!("unexpected answer {}", r.status()),
        Err(e) => panic!("request failed: {e}"),
    }
}

/// Closed-loop load: CONCURRENCY clients post for `seconds`.
async fn load(url: String, seconds: u64, body: Arc<Vec<u8>>, headers: Headers) -> Figures {
    load_spread(vec![url], seconds, body, headers).await
}

/// Closed-loop load with the clients spread over `urls` (several nodes).
async fn load_spread(
    urls: Vec<String>,
    seconds: u64,
    body: Arc<Vec<u8>>,
    headers: Headers,
) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CONCURRENCY {
        let url = urls[i % urls.len()].clone();
        let (client, body, headers) = (client.clone(), body.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < stop && lat.len() < MAX_REQUESTS / CONCURRENCY {
                let req = request(&client, &url, &body, &headers);
                lat.push(answered(req, Instant::now()).await);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    figures(all, started.elapsed().as_secs_f64())
}

/// Requests in flight at most under the paced load; beyond that the
/// generator waits, and the wait counts in the latency.
const MAX_IN_FLIGHT: usize = 512;

/// Open-loop load: requests go out at `rate` per second for `seconds`,
/// whether or not the earlier ones were answered (as webhook senders do).
/// They leave on a 1 ms tick, a few at a time; a request's latency counts
/// from the moment it was handed to the client. The generator never waits
/// for an answer before sending the next (up to [`MAX_IN_FLIGHT`]), so a
/// server that falls behind shows as latency, not as fewer requests.
async fn paced(
    url: String,
    seconds: u64,
    rate: f64,
    body: Arc<Vec<u8>>,
    headers: Headers,
) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()
        .expect("client");
    let total = ((seconds as f64 * rate) as usize).min(MAX_REQUESTS);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let due_now = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
        while sent < due_now {
            let permit = Arc::clone(&in_flight)
                .acquire_owned()
                .await
                .expect("the semaphore stays open");
            let req = request(&client, &url, &body, &headers);
            let latencies = Arc::clone(&latencies);
            let sent_at = Instant::now();
            tokio::spawn(async move {
                let ms = answered(req, sent_at).await;
                latencies.lock().expect("latencies").push(ms);
                drop(permit);
            });
            sent += 1;
        }
    }
    // Every request answered: all permits back.
    let permits = u32::try_from(MAX_IN_FLIGHT).expect("a small number");
    let _ = in_flight.acquire_many(permits).await.expect("open");
    let seconds = started.elapsed().as_secs_f64();
    let all = std::mem::take(&mut *latencies.lock().expect("latencies"));
    assert_eq!(
        all.len(),
        total,
        "every paced request is answered with success"
    );
    figures(all, seconds)
}

/// Counts and percentiles of a scenario's latencies.
fn figures(mut all: Vec<f64>, seconds: f64) -> Figures {
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Figures {
        acks: all.len(),
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

#[derive(Clone)]
struct Counter(Arc<AtomicU64>);

async fn sink(State(c): State<Counter>, _body: Bytes) -> StatusCode {
    c.0.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// A sink that counts what it is posted; its count and its URL.
async fn start_sink() -> (Counter, String) {
    let count = Counter(Arc::default());
    let url = serve(
        Router::new()
            .route("/slack", post(sink))
            .with_state(count.clone()),
    )
    .await;
    (count, format!("{url}/slack"))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// The two reference servers, in a process of their own like hookflow's
/// (the bench binary again, with [`ROLE`] set), so that every scenario
/// pays the same costs of crossing from the generator's process to the
/// server's and back. Killed, by PID, when the bench ends.
struct References {
    child: std::process::Child,
    noop: String,
    forwarder: String,
}

impl References {
    fn start(root: &str, forward_to: &str) -> References {
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut child = Command::new(exe)
            .current_dir(root)
            .env(ROLE, "reference")
            .env(FORWARD_TO, forward_to)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the reference servers start");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the reference servers answer");
        let mut urls = line.split_whitespace().map(str::to_string);
        let (Some(noop), Some(forwarder)) = (urls.next(), urls.next()) else {
            panic!("the reference servers printed {line:?}");
        };
        References {
            child,
            noop,
            forwarder,
        }
    }
}

impl Drop for References {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference process: the no-op handler (the machine's ceiling) and the
/// forwarder, on a runtime built like hookflow's, until the bench closes
/// stdin (or kills it).
fn serve_references() {
    let forward_to = std::env::var(FORWARD_TO).expect("where to forward");
    let root = env!("CARGO_MANIFEST_DIR");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // The ceiling: a handler that answers 202 and does nothing.
        let noop =
            serve(Router::new().route("/hooks/stripe", post(|| async { StatusCode::ACCEPTED })))
                .await;
        let forwarder = serve(forwarder(root, forward_to)).await;
        println!("{noop} {forwarder}");
        // Serve until the bench ends: its end closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await;
    });
}

/// The workflow's job done in process, without storage: verify the Stripe
/// signature, match the event type, filter on the amount, run the
/// workflow's own Rhai script with hookflow's script engine, post the
/// message, and only then answer (so the sender knows it was delivered).
fn forwarder(root: &str, url: String) -> Router {
    let source = std::fs::read_to_string(format!("{root}/scripts/stripe/format.rhai"))
        .expect("the workflow's script");
    let script = Arc::new(
        hookflow::script::Engine::default()
            .compile_script(&source)
            .expect("the script compiles"),
    );
    let scheme = Arc::new(Scheme::Stripe {
        tolerance: DEFAULT_TOLERANCE,
    });
    let client = reqwest::Client::new();
    Router::new().route(
        "/hooks/stripe",
        post(move |headers: HeaderMap, body: Bytes| {
            let (client, url, script, scheme) =
                (client.clone(), url.clone(), script.clone(), scheme.clone());
            async move {
                let headers: BTreeMap<String, String> = headers
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                    })
                    .collect();
                if scheme.verify(SECRET, &headers, &body, unix_now()).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    return StatusCode::BAD_REQUEST;
                };
                if event["type"] != "payment_intent.succeeded"
                    || event["data"]["object"]["amount"].as_i64().unwrap_or(0) < 1000
                {
                    return StatusCode::ACCEPTED;
                }
                let ctx = serde_json::json!({ "event": event });
                let outcome = script
                    .try_inline(&ctx, None)
                    .unwrap_or_else(|| script.run(&ctx, None));
                let Ok(message) = outcome.result else {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                };
                match client
                    .post(url)
                    .header("X-Source", "hookflow")
                    .json(&message)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => StatusCode::ACCEPTED,
                    _ => StatusCode::BAD_GATEWAY,
                }
            }
        }),
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // Linux reports in clock ticks, 100 per second on every platform we run.
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// The offered rate of the paced scenarios, events per second.
const RATE: &str = "HOOKFLOW_BENCH_RATE";
/// The delivery issue's sustained goal: 6,000 runs/s.
const DEFAULT_RATE: f64 = 6000.0;

/// Set on the child process that serves the two reference scenarios.
const ROLE: &str = "HOOKFLOW_BENCH_ROLE";
/// Where that child's forwarder posts (a sink in the bench process).
const FORWARD_TO: &str = "HOOKFLOW_BENCH_FORWARD_TO";

fn main() {
    if std::env::var(ROLE).is_ok_and(|r| r == "reference") {
        return serve_references();
    }
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let seconds = numbers.next().unwrap_or(10);
    let rounds = numbers.next().unwrap_or(1).clamp(1, 9) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(seconds, rounds));
}

/// What one round measured.
struct Round {
    ceiling: Figures,
    forwarder: Figures,
    ours: Figures,
    runs_per_second: f64,
    /// Runs delivered while the load was on, per second of load.
    runs_during_load: f64,
    delivered: usize,
    e2e_seconds: f64,
    rss_mb: f64,
    cpu_us_per_event: f64,
    /// The same job offered at a fixed rate (open loop).
    paced_forwarder: Figures,
    paced_ours: Figures,
    /// hookflow's runs delivered while the paced load was on, per second.
    paced_runs_during_load: f64,
    /// From the paced load's last answer until its last run was delivered.
    paced_drain_seconds: f64,
    /// hookflow's runs delivered for the paced load (one per acked event).
    paced_delivered: usize,
    /// hookflow's peak RSS over both loads.
    paced_rss_mb: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The reference servers and the sinks, shared by every round.
struct Bench {
    root: &'static str,
    body: Arc<Vec<u8>>,
    delivered: Counter,
    sink_url: String,
    /// The no-op handler and the forwarder, alive as long as the bench.
    references: References,
    /// What the forwarder delivered to its own sink.
    forwarded: Counter,
    reference_seconds: u64,
    /// Events per second offered by the paced scenarios.
    rate: f64,
}

async fn run(seconds: u64, rounds: usize) {
    let root = env!("CARGO_MANIFEST_DIR");
    let body = Arc::new(
        std::fs::read(format!(
            "{root}/workflows/fixtures/stripe_payment_intent_succeeded.json"
        ))
        .expect("fixture"),
    );
    let (delivered, sink_url) = start_sink().await;
    let only_ours = std::env::var("HOOKFLOW_BENCH_ONLY").is_ok_and(|v| v == "hookflow");
    // The forwarder posts to a sink of its own, here, as hookflow does.
    let (fwd_count, fwd_sink) = start_sink().await;
    let bench = Bench {
        root,
        body,
        delivered,
        sink_url,
        references: References::start(root, &fwd_sink),
        forwarded: fwd_count,
        reference_seconds: if only_ours { 0 } else { seconds },
        rate: std::env::var(RATE)
            .ok()
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| *r >= 1.0)
            .unwrap_or(DEFAULT_RATE),
    };

    println!("load: {CONCURRENCY} concurrent clients, {seconds} s per scenario, {rounds} round(s), loopback, generator in the same machine");
    println!(
        "then paced: {:.0} events/s offered whatever the answers (open loop)",
        bench.rate
    );
    let mut all = Vec::new();
    for n in 1..=rounds {
        let r = round(&bench, seconds).await;
        if rounds > 1 {
            println!("round {n}:");
        }
        r.ceiling.print("ceiling (no-op handler)");
        r.forwarder.print("forwarder without storage");
        r.ours.print("hookflow (durable ack)");
        println!(
            "hookflow runs delivered end to end: {} of {} in {:.1} s = {:.0} runs/s ({:.0} runs/s while the load was on); peak RSS {:.1} MB",
            r.delivered, r.ours.acks, r.e2e_seconds, r.runs_per_second, r.runs_during_load, r.rss_mb
        );
        println!(
            "hookflow server CPU: {:.0} us per event (ingest and run)",
            r.cpu_us_per_event
        );
        r.paced_forwarder.print("paced: forwarder without storage");
        r.paced_ours.print("paced: hookflow (durable ack)");
        println!(
            "paced: hookflow delivered {:.0} runs/s while the load was on; {} of {} delivered, the last {:.2} s after the last answer; peak RSS {:.1} MB",
            r.paced_runs_during_load, r.paced_delivered, r.paced_ours.acks, r.paced_drain_seconds, r.paced_rss_mb
        );
        all.push(r);
    }
    let m = |f: &dyn Fn(&Round) -> f64| median(all.iter().map(f).collect());
    let rate = |f: &Figures| f.acks as f64 / f.seconds;
    let ceiling = m(&|r| rate(&r.ceiling));
    let forwarder_p99 = m(&|r| r.forwarder.p99_ms);
    let acks = m(&|r| rate(&r.ours));
    let p99 = m(&|r| r.ours.p99_ms);
    if rounds > 1 {
        println!("medians of {rounds} rounds:");
        println!(
            "  ceiling {ceiling:.0} acks/s (p99 {:.2} ms); forwarder {:.0} acks/s (p99 {forwarder_p99:.2} ms)",
            m(&|r| r.ceiling.p99_ms),
            m(&|r| rate(&r.forwarder)),
        );
        println!(
            "  hookflow {acks:.0} acks/s (p50 {:.2} ms, p99 {p99:.2} ms), {:.0} runs/s end to end ({:.0} while the load was on), peak RSS {:.1} MB, {:.0} us CPU per event",
            m(&|r| r.ours.p50_ms),
            m(&|r| r.runs_per_second),
            m(&|r| r.runs_during_load),
            m(&|r| r.rss_mb),
            m(&|r| r.cpu_us_per_event),
        );
        println!(
            "  paced at {:.0}/s: forwarder p50 {:.2} ms, p99 {:.2} ms; hookflow p50 {:.2} ms, p99 {:.2} ms, {:.0} runs/s while on, last run {:.2} s after",
            bench.rate,
            m(&|r| r.paced_forwarder.p50_ms),
            m(&|r| r.paced_forwarder.p99_ms),
            m(&|r| r.paced_ours.p50_ms),
            m(&|r| r.paced_ours.p99_ms),
            m(&|r| r.paced_runs_during_load),
            m(&|r| r.paced_drain_seconds),
        );
    }
    println!(
        "ratios: acks/s vs ceiling {:.2}, ack p99 vs forwarder {:.2}; paced ack p99 vs forwarder {:.2}",
        acks / ceiling,
        p99 / forwarder_p99,
        m(&|r| r.paced_ours.p99_ms) / m(&|r| r.paced_forwarder.p99_ms)
    );
    if !std::env::var("HOOKFLOW_BENCH_PG").is_ok_and(|v| v == "off") {
        postgres(&bench, seconds).await;
    }
}

/// hookflow on PostgreSQL: one node, then two on one database.
async fn postgres(b: &Bench, seconds: u64) {
    // Kept alive (and its watchdog waiting) until the bench ends.
    let mut _cluster = None;
    let base_url = match std::env::var("HOOKFLOW_BENCH_PG_URL") {
        Ok(url) => url,
        Err(_) => match pg::durable_cluster() {
            Ok(c) => {
                let url = c.url("postgres");
                _cluster = Some(c);
                url
            }
            Err(e) => {
                println!("postgres: skipped ({e})");
                return;
            }
        },
    };
    let signer: Headers = Arc::new({
        let body = b.body.clone();
        move || {
            let t = unix_now();
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(&body);
            let sig = hex::encode(sign(Algorithm::Sha256, SECRET, &signed));
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("stripe-signature".to_string(), format!("t={t},v1={sig}")),
            ]
        }
    });
    for nodes in [1usize, 2] {
        // A fresh database for each scenario.
        let db = format!("bench_{}_{nodes}", std::process::id());
        let admin = tokio_postgres::connect(&base_url, tokio_postgres::NoTls).await;
        let Ok((client, connection)) = admin else {
            println!("postgres: cannot connect to {base_url}");
            return;
        };
        let conn = tokio::spawn(connection);
        if let Err(e) = client.batch_execute(&format!("CREATE DATABASE {db}")).await {
            println!("postgres: cannot create a database: {e}");
            return;
        }
        drop(client);
        let _ = conn.await;
        let url = match base_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{db}"),
            None => return,
        };
        let mut children = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..nodes {
            let (child, addr) = spawn_hookflow(b, &["--store", &url]);
            urls.push(format!("http://{addr}/hooks/stripe"));
            children.push(child);
        }
        let delivered_before = b.delivered.0.load(Ordering::Relaxed) as usize;
        let delivered = || b.delivered.0.load(Ordering::Relaxed) as usize - delivered_before;
        let started = Instant::now();
        let figures = load_spread(urls, seconds, b.body.clone(), signer.clone()).await;
        let during = delivered() as f64 / figures.seconds;
        drained(&delivered, figures.acks).await;
        let e2e = started.elapsed().as_secs_f64();
        let runs = delivered();
        figures.print(&format!("postgres, {nodes} node(s) (durable ack)"));
        println!(
            "postgres, {nodes} node(s): runs delivered end to end {runs} of {} in {e2e:.1} s = {:.0} runs/s ({during:.0} runs/s while the load was on)",
            figures.acks,
            runs as f64 / e2e
        );
        for mut child in children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Start `hookflow serve` with these extra arguments; its address once it
/// listens.
fn spawn_hookflow(b: &Bench, args: &[&str]) -> (std::process::Child, String) {
    let bin = std::env::var("HOOKFLOW_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookflow").to_string());
    let mut child = Command::new(bin)
        .current_dir(b.root)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("SLACK_WEBHOOK_URL", &b.sink_url)
        .env(
            "HOOKFLOW_LOG",
            std::env::var("HOOKFLOW_LOG").unwrap_or_else(|_| "warn,hookflow::server=info".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookflow starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(a) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
            {
                let _ = tx.send(a.to_string());
            } else {
                eprintln!("{line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("hookflow listens");
    (child, addr)
}

/// The three scenarios, one after the other; hookflow on a fresh store.
async fn round(b: &Bench, seconds: u64) -> Round {
    let plain = Arc::new(|| vec![("content-type".to_string(), "application/json".to_string())]);
    let signer = Arc::new({
        let body = b.body.clone();
        move || {
            let t = unix_now();
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(&body);
            let sig = hex::encode(sign(Algorithm::Sha256, SECRET, &signed));
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("stripe-signature".to_string(), format!("t={t},v1={sig}")),
            ]
        }
    });
    let ceiling = load(
        format!("{}/hooks/stripe", b.references.noop),
        b.reference_seconds,
        b.body.clone(),
        plain,
    )
    .await;
    let forwarder_url = format!("{}/hooks/stripe", b.references.forwarder);
    let forwarder = forwarding(
        b,
        load(
            forwarder_url.clone(),
            b.reference_seconds,
            b.body.clone(),
            signer.clone(),
        ),
    )
    .await;
    let paced_forwarder = forwarding(
        b,
        paced(
            forwarder_url,
            b.reference_seconds,
            b.rate,
            b.body.clone(),
            signer.clone(),
        ),
    )
    .await;

    let data = tempfile::tempdir().expect("tmp");
    let bin = std::env::var("HOOKFLOW_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookflow").to_string());
    let mut child = Command::new(bin)
        .current_dir(b.root)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("SLACK_WEBHOOK_URL", &b.sink_url)
        .env(
            "HOOKFLOW_LOG",
            std::env::var("HOOKFLOW_LOG").unwrap_or_else(|_| "warn,hookflow::server=info".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookflow starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(a) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
            {
                let _ = tx.send(a.to_string());
            } else {
                eprintln!("{line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("hookflow listens");
    eprintln!("hookflow listens on {addr}, pid {}", child.id());
    let delivered_before = b.delivered.0.load(Ordering::Relaxed) as usize;
    let delivered = || b.delivered.0.load(Ordering::Relaxed) as usize - delivered_before;
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    let ours = load(
        format!("http://{addr}/hooks/stripe"),
        seconds,
        b.body.clone(),
        signer.clone(),
    )
    .await;
    let runs_during_load = delivered() as f64 / ours.seconds;
    // Every acked event is one run that posts once to the bench sink.
    drained(&delivered, ours.acks).await;
    let e2e_seconds = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(child.id()) - cpu_before;
    let runs = delivered();
    let rss_mb = peak_rss_mb(child.id());

    // The same server, now offered a fixed rate.
    let paced_ours = paced(
        format!("http://{addr}/hooks/stripe"),
        seconds,
        b.rate,
        b.body.clone(),
        signer,
    )
    .await;
    let paced_runs_during_load = (delivered() - runs) as f64 / paced_ours.seconds;
    let paced_end = Instant::now();
    let all_delivered = drained(&delivered, runs + paced_ours.acks).await;
    let paced_drain_seconds = all_delivered
        .saturating_duration_since(paced_end)
        .as_secs_f64();
    let paced_delivered = delivered() - runs;
    let paced_rss_mb = peak_rss_mb(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Round {
        ceiling,
        forwarder,
        runs_per_second: runs as f64 / e2e_seconds,
        runs_during_load,
        delivered: runs,
        e2e_seconds,
        rss_mb,
        cpu_us_per_event: server_cpu * 1e6 / ours.acks.max(1) as f64,
        ours,
        paced_forwarder,
        paced_ours,
        paced_runs_during_load,
        paced_drain_seconds,
        paced_delivered,
        paced_rss_mb,
    }
}

/// Run a scenario against the forwarder, and check that it forwarded
/// every event it acked.
async fn forwarding(b: &Bench, scenario: impl std::future::Future<Output = Figures>) -> Figures {
    let before = b.forwarded.0.load(Ordering::Relaxed);
    let figures = scenario.await;
    assert_eq!(
        (b.forwarded.0.load(Ordering::Relaxed) - before) as usize,
        figures.acks,
        "the forwarder posts every event it acks"
    );
    figures
}

/// Wait until `delivered()` reaches `expected`, giving up once deliveries
/// stop for 5 s. Returns when the last delivery was seen.
async fn drained(delivered: &impl Fn() -> usize, expected: usize) -> Instant {
    let mut last = (delivered(), Instant::now());
    while last.0 < expected && last.1.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = delivered();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    last.1
}
