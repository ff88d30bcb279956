//! Load benchmark: a 1.5 KB signed Stripe event (`benches/fixtures/`,
//! pretty-printed as Stripe sends it) → filter → Rhai transform → POST to a
//! local sink, against the real release binary on loopback, at concurrency
//! 32. Reports durable acks per second and ack latency p50/p99. In the same
//! run, the same load against a no-op handler (the machine's ceiling) and
//! against a forwarder without storage that does the same job in process
//! (Stripe signature, event type, amount filter, the workflow's Rhai script
//! on hookflow's script engine, the POST) and answers once it has forwarded,
//! so the figures can be compared. Both run in a process of their own, as
//! hookflow does, not in the generator's.
//!
//! Then the forwarder and hookflow (a fresh server for each rate) are
//! offered the same job at fixed rates, open loop, as webhook senders send:
//! 3,000 and 6,000 events/s, or the rates in `HOOKFLOW_BENCH_RATES`
//! (comma-separated). That shows whether runs keep pace with the acks, and
//! the ack latency where webhooks live: below saturation.
//!
//! Last, the sync answer: one hookflow server, paced at 1,000 events/s
//! (for the round's length, at most 15 s), first a workflow answered with
//! the plain 202, then the same workflow with a `respond` step whose
//! answer the sender waits for; the p50/p99 of both and the difference
//! (the goal: the answer's p99 within 2 ms of the plain 202's).
//!
//! For every hookflow server the bench reports what a user would measure:
//! runs delivered per second over the load and the drain of its backlog,
//! its peak RSS over its whole life (VmRSS sampled every 0.2 s from start to
//! the end of the drain, and the kernel's high-water mark), the bytes its
//! data folder takes on disk per event once the backlog is delivered
//! (allocated blocks, as `du` counts them), and its CPU time per event;
//! for the forwarder, its CPU time per event too: the cost of the job
//! without storage, on this machine, in the same minutes.
//!
//! Run: `cargo bench --bench load` (optionally `-- SECONDS ROUNDS`, default
//! 10 s and one round; with several rounds it also prints the medians, as
//! this machine's speed varies by ±20% from one minute to the next;
//! `-- 60 1` is the long round, whose backlog reaches several hundred
//! thousand runs). For profiling: `HOOKFLOW_BENCH_ONLY=hookflow` skips the
//! two reference scenarios, `HOOKFLOW_BENCH_PACED=0` skips the paced ones,
//! `HOOKFLOW_BENCH_ONLY=postgres` runs only the PostgreSQL scenarios,
//! `HOOKFLOW_BENCH_BIN=path` runs another build of the binary,
//! `HOOKFLOW_BENCH_ROOT=dir` serves another folder's workflows (to compare
//! variants of the Stripe workflow),
//! `HOOKFLOW_BENCH_STEADY=RATE` runs only one long round at that fixed rate
//! (below saturation: runs keep pace, packing and retention run while the
//! load goes on) and prints the server's RSS every 10 s, with
//! `HOOKFLOW_BENCH_BURST=RATE:SECONDS` after a burst at that rate,
//! `HOOKFLOW_BENCH_ARGS` adds `serve` flags, and the server's PID is printed
//! when it listens. Traffic stays on 127.0.0.1; every loop is bounded in
//! time and count. The stored-history check is `benches/history.rs`.
//!
//! Then the same closed-loop load against hookflow on PostgreSQL (SPEC
//! §10): one node, then two nodes on one database with the clients split
//! between them. The database is `HOOKFLOW_BENCH_PG_URL` (a fresh database
//! is made in it) or a private cluster started here from the installed
//! server binaries, with `fsync` on and its write-ahead log warmed up (see
//! `warm_wal`); `HOOKFLOW_BENCH_PG=off` skips these,
//! and `HOOKFLOW_BENCH_PG_NODES=1` (a comma-separated list) picks the node
//! counts; a list that repeats them (`1,2,2,1`) ends with the median acks/s
//! of each count and their ratio to one node's. Each PostgreSQL scenario
//! prints where the machine's CPU went per event (the nodes, the database's
//! processes, this bench) and the database's commits per event;
//! `HOOKFLOW_BENCH_PG_WATCH=1` keeps a live view (`GET /api/stream`) open
//! on the first node throughout, so the other nodes send it their updates.
//! Compare with the database's own ceiling for the same statements:
//! `benches/pg/run.sh` (pgbench).

mod common;

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)] // the bench uses the durable cluster only
mod pg;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::*;
use hookflow::signature::{Scheme, DEFAULT_TOLERANCE};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

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

/// The offered rates of the paced scenarios, events per second.
const RATES: &str = "HOOKFLOW_BENCH_RATES";
const DEFAULT_RATES: [f64; 2] = [3000.0, 6000.0];

/// `HOOKFLOW_BENCH_STEADY=RATE`: only a long round at a fixed rate
/// below saturation (see [`steady`]).
const STEADY: &str = "HOOKFLOW_BENCH_STEADY";
const DEFAULT_STEADY_RATE: f64 = 2000.0;

/// `HOOKFLOW_BENCH_BURST=RATE:SECONDS`: before the steady round, its
/// server is offered RATE events a second for SECONDS (see [`steady`]).
const BURST: &str = "HOOKFLOW_BENCH_BURST";

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

/// What a hookflow server did under one load.
struct Ours {
    figures: Figures,
    /// Runs delivered over the load and its drain, per second.
    runs_per_second: f64,
    /// Runs delivered while the load was on, per second of load.
    runs_during_load: f64,
    delivered: usize,
    /// From the load's last answer until its last run was delivered.
    drain_seconds: f64,
    peak_rss_mb: f64,
    disk_bytes_per_event: f64,
    /// Of those, the stored records themselves (compressed).
    record_bytes_per_event: f64,
    cpu_us_per_event: f64,
    /// Threads put to sleep or pre-empted, per event.
    switches_per_event: f64,
}

impl Ours {
    fn print(&self, name: &str, body_len: usize) {
        self.figures.print(name);
        println!(
            "  runs: {} of {} delivered, {:.0} runs/s over load + drain ({:.0} while the load was on), the last {:.2} s after the last answer",
            self.delivered, self.figures.acks, self.runs_per_second, self.runs_during_load, self.drain_seconds
        );
        println!(
            "  peak RSS {:.1} MB; {:.0} bytes on disk per event ({:.2} per body byte; records {:.0}); {:.0} us CPU per event, {:.1} context switches per event",
            self.peak_rss_mb,
            self.disk_bytes_per_event,
            self.disk_bytes_per_event / body_len as f64,
            self.record_bytes_per_event,
            self.cpu_us_per_event,
            self.switches_per_event
        );
    }
}

/// What one round measured.
struct Round {
    ceiling: Figures,
    forwarder: Reference,
    ours: Ours,
    /// Per offered rate: the forwarder, then hookflow.
    paced: Vec<(f64, Figures, Ours)>,
    /// At [`SYNC_RATE`], one server: the plain `202`, and the answer of a
    /// `respond` step (the same workflow with that step added).
    sync_plain: Figures,
    sync_respond: Figures,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The reference servers and the sinks, shared by every round.
struct Bench {
    /// The folder hookflow serves (its `workflows/`, `scripts/` and
    /// `connectors/`): the project's, or `HOOKFLOW_BENCH_ROOT`.
    served: &'static str,
    body: Arc<Vec<u8>>,
    delivered: Counter,
    sink_url: String,
    /// The no-op handler and the forwarder, alive as long as the bench.
    references: References,
    /// What the forwarder delivered to its own sink.
    forwarded: Counter,
    reference_seconds: u64,
    /// Events per second offered by the paced scenarios.
    rates: Vec<f64>,
}

async fn run(seconds: u64, rounds: usize) {
    let root = env!("CARGO_MANIFEST_DIR");
    let body = Arc::new(fixture(root));
    let (delivered, sink_url) = start_sink().await;
    let only_ours = std::env::var("HOOKFLOW_BENCH_ONLY").is_ok_and(|v| v == "hookflow");
    // The forwarder posts to a sink of its own, here, as hookflow does.
    let (fwd_count, fwd_sink) = start_sink().await;
    let rates: Vec<f64> = if std::env::var("HOOKFLOW_BENCH_PACED").is_ok_and(|v| v == "0") {
        Vec::new()
    } else {
        match std::env::var(RATES) {
            Ok(list) => list
                .split(',')
                .filter_map(|r| r.trim().parse::<f64>().ok())
                .filter(|r| *r >= 1.0)
                .collect(),
            Err(_) => DEFAULT_RATES.to_vec(),
        }
    };
    let served: &'static str = match std::env::var("HOOKFLOW_BENCH_ROOT") {
        Ok(dir) => Box::leak(dir.into_boxed_str()),
        Err(_) => root,
    };
    let bench = Bench {
        served,
        body,
        delivered,
        sink_url,
        references: References::start(root, &fwd_sink),
        forwarded: fwd_count,
        reference_seconds: if only_ours { 0 } else { seconds },
        rates,
    };
    let body_len = bench.body.len();

    println!("load: {CONCURRENCY} concurrent clients, {seconds} s per scenario, {rounds} round(s), loopback, generator in the same machine; a {body_len}-byte signed event");
    println!(
        "then paced at {:?} events/s, offered whatever the answers (open loop)",
        bench.rates
    );
    if std::env::var("HOOKFLOW_BENCH_ONLY").is_ok_and(|v| v == "postgres") {
        postgres(&bench, seconds).await;
        return;
    }
    if let Ok(rate) = std::env::var(STEADY) {
        let rate = rate.trim().parse::<f64>().ok().filter(|r| *r >= 1.0);
        steady(&bench, seconds, rate.unwrap_or(DEFAULT_STEADY_RATE)).await;
        return;
    }
    let mut all = Vec::new();
    for n in 1..=rounds {
        let r = round(&bench, seconds).await;
        if rounds > 1 {
            println!("round {n}:");
        }
        r.ceiling.print("ceiling (no-op handler)");
        r.forwarder.figures.print("forwarder without storage");
        if r.forwarder.figures.acks > 0 {
            println!(
                "  {:.0} us CPU per event, {:.1} context switches per event",
                r.forwarder.cpu_us_per_event, r.forwarder.switches_per_event
            );
        }
        r.ours.print("hookflow (durable ack)", body_len);
        for (rate, fwd, ours) in &r.paced {
            fwd.print(&format!("paced {rate:.0}/s: forwarder"));
            ours.print(&format!("paced {rate:.0}/s: hookflow"), body_len);
        }
        r.sync_plain.print("sync: plain 202 (same workflow)");
        r.sync_respond.print("sync: respond step's answer");
        all.push(r);
    }
    let m = |f: &dyn Fn(&Round) -> f64| median(all.iter().map(f).collect());
    let rate = |f: &Figures| f.acks as f64 / f.seconds;
    let ceiling = m(&|r| rate(&r.ceiling));
    let forwarder_p99 = m(&|r| r.forwarder.figures.p99_ms);
    let acks = m(&|r| rate(&r.ours.figures));
    let p99 = m(&|r| r.ours.figures.p99_ms);
    println!("medians of {rounds} round(s):");
    println!(
        "  ceiling {ceiling:.0} acks/s (p99 {:.2} ms); forwarder {:.0} acks/s (p99 {forwarder_p99:.2} ms), {:.0} us CPU and {:.1} context switches per event",
        m(&|r| r.ceiling.p99_ms),
        m(&|r| rate(&r.forwarder.figures)),
        m(&|r| r.forwarder.cpu_us_per_event),
        m(&|r| r.forwarder.switches_per_event),
    );
    println!(
        "  hookflow {acks:.0} acks/s (p50 {:.2} ms, p99 {p99:.2} ms), {:.0} runs/s over load + drain ({:.0} while the load was on), peak RSS {:.1} MB (at most {:.1}), {:.0} bytes on disk per event, {:.0} us CPU and {:.1} context switches per event",
        m(&|r| r.ours.figures.p50_ms),
        m(&|r| r.ours.runs_per_second),
        m(&|r| r.ours.runs_during_load),
        m(&|r| r.ours.peak_rss_mb),
        all.iter().map(|r| r.ours.peak_rss_mb).fold(0.0, f64::max),
        m(&|r| r.ours.disk_bytes_per_event),
        m(&|r| r.ours.cpu_us_per_event),
        m(&|r| r.ours.switches_per_event),
    );
    for (i, offered) in bench.rates.iter().enumerate() {
        let fwd = |r: &Round| r.paced[i].1.p99_ms;
        let ours = |r: &Round| r.paced[i].2.figures.p99_ms;
        let kept_pace = all
            .iter()
            .filter(|r| r.paced[i].2.drain_seconds < KEPT_PACE_SECONDS)
            .count();
        println!(
            "  paced {offered:.0}/s: forwarder p50 {:.2} ms, p99 {:.2} ms; hookflow p50 {:.2} ms, p99 {:.2} ms (ratio {:.2}), {:.0} runs/s while on, last run {:.2} s after the last answer, runs kept pace in {kept_pace} of {rounds} round(s); peak RSS {:.1} MB, {:.0} us CPU per event",
            m(&|r| r.paced[i].1.p50_ms),
            m(&fwd),
            m(&|r| r.paced[i].2.figures.p50_ms),
            m(&ours),
            m(&ours) / m(&fwd),
            m(&|r| r.paced[i].2.runs_during_load),
            m(&|r| r.paced[i].2.drain_seconds),
            m(&|r| r.paced[i].2.peak_rss_mb),
            m(&|r| r.paced[i].2.cpu_us_per_event),
        );
    }
    println!(
        "  sync at {SYNC_RATE:.0}/s: plain 202 p50 {:.2} ms, p99 {:.2} ms; respond p50 {:.2} ms, p99 {:.2} ms; p99 difference {:+.2} ms (goal: within 2 ms)",
        m(&|r| r.sync_plain.p50_ms),
        m(&|r| r.sync_plain.p99_ms),
        m(&|r| r.sync_respond.p50_ms),
        m(&|r| r.sync_respond.p99_ms),
        m(&|r| r.sync_respond.p99_ms - r.sync_plain.p99_ms),
    );
    println!(
        "ratios: acks/s vs ceiling {:.2}, closed-loop ack p99 vs forwarder {:.2}",
        acks / ceiling,
        p99 / forwarder_p99,
    );
    if !std::env::var("HOOKFLOW_BENCH_PG").is_ok_and(|v| v == "off") {
        postgres(&bench, seconds).await;
    }
}

/// Give a fresh cluster the write-ahead log a running one has. A fresh
/// cluster creates each 16 MB WAL segment by writing it full of zeros
/// first (measured: about 6% of this machine's CPU and the ack p99's
/// stalls, 118 ms instead of 25 ms), which a database that has been
/// running a while does not do: after a checkpoint it reuses its old
/// segments. So about 600 MB of WAL is written and checkpointed before
/// the first scenario.
async fn warm_wal(url: &str) {
    let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        println!("postgres: cannot connect to warm the WAL up");
        return;
    };
    let conn = tokio::spawn(connection);
    let started = Instant::now();
    let warmed = client
        .batch_execute(
            "CREATE TABLE bench_warm AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 600000);
             CHECKPOINT; DROP TABLE bench_warm; CHECKPOINT;",
        )
        .await;
    match warmed {
        Ok(()) => println!(
            "postgres: WAL warmed up in {:.1} s (segments reused, as in a running database)",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => println!("postgres: cannot warm the WAL up: {e}"),
    }
    drop(client);
    let _ = conn.await;
}

/// Transactions committed in database `db` so far, as PostgreSQL counts
/// them (`pg_stat_database`).
async fn commits(base_url: &str, db: &str) -> Option<i64> {
    let (client, connection) = tokio_postgres::connect(base_url, tokio_postgres::NoTls)
        .await
        .ok()?;
    let conn = tokio::spawn(connection);
    // The statistics of closed connections reach the counters within a
    // moment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let row = client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await
        .ok();
    drop(client);
    let _ = conn.await;
    row.map(|r| r.get::<_, i64>(0))
}

/// hookflow on PostgreSQL: one node, then two on one database.
async fn postgres(b: &Bench, seconds: u64) {
    // Kept alive (and its watchdog waiting) until the bench ends.
    let mut _cluster: Option<pg::Cluster> = None;
    let base_url = match std::env::var("HOOKFLOW_BENCH_PG_URL") {
        Ok(url) => url,
        Err(_) => match pg::durable_cluster() {
            Ok(c) => {
                let url = c.url("postgres");
                _cluster = Some(c);
                warm_wal(&url).await;
                url
            }
            Err(e) => {
                println!("postgres: skipped ({e})");
                return;
            }
        },
    };
    let signer = signer(b.body.clone());
    let body_len = b.body.len();
    let counts: Vec<usize> = match std::env::var("HOOKFLOW_BENCH_PG_NODES") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) => vec![1, 2],
    };
    let mut measured: Vec<(usize, f64)> = Vec::new();
    for (i, nodes) in counts.into_iter().enumerate() {
        // A fresh database for each scenario.
        let db = format!("bench_{}_{i}_{nodes}", std::process::id());
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
        let Some((server, _)) = base_url.rsplit_once('/') else {
            return;
        };
        let url = format!("{server}/{db}");
        let servers: Vec<Server> = (0..nodes)
            .map(|_| Server::start(b.served, &b.sink_url, &["--store", &url]))
            .collect();
        let urls = servers.iter().map(Server::url).collect();
        // A live view on the first node, read and dropped until the round ends.
        let watching = std::env::var("HOOKFLOW_BENCH_PG_WATCH").is_ok_and(|v| v == "1");
        let view = if watching {
            let url = format!("http://{}/api/stream", servers[0].addr);
            Some(tokio::spawn(async move {
                if let Ok(mut resp) = reqwest::Client::new().get(url).send().await {
                    while let Ok(Some(_)) = resp.chunk().await {}
                }
            }))
        } else {
            None
        };
        let delivered_before = b.delivered.get();
        let delivered = || b.delivered.get() - delivered_before;
        let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
        let usage = Usage::of(&pids);
        let database = _cluster.as_ref().map(|c| c.pid);
        let db_before = database.map_or(f64::NAN, tree_cpu_seconds);
        let bench_before = cpu_seconds(std::process::id());
        let started = Instant::now();
        let figures = load_spread(urls, seconds, MAX_REQUESTS, signer.clone()).await;
        let load_end = Instant::now();
        let during = delivered() as f64 / figures.seconds;
        let last = drained(&delivered, figures.acks).await;
        let runs = delivered();
        assert_eq!(runs, figures.acks, "every acked event is delivered");
        let (cpu_us_per_event, switches_per_event) = usage.per_event_since(&pids, figures.acks);
        let db_cpu = database.map_or(f64::NAN, tree_cpu_seconds) - db_before;
        let bench_cpu = cpu_seconds(std::process::id()) - bench_before;
        let wall = last.saturating_duration_since(started).as_secs_f64();
        let ours = Ours {
            runs_per_second: runs as f64 / wall,
            runs_during_load: during,
            delivered: runs,
            drain_seconds: last.saturating_duration_since(load_end).as_secs_f64(),
            peak_rss_mb: servers.iter().map(Server::peak_rss_mb).fold(0.0, f64::max),
            // The data is in the database, not in the node's folder.
            disk_bytes_per_event: f64::NAN,
            record_bytes_per_event: f64::NAN,
            cpu_us_per_event,
            switches_per_event,
            figures,
        };
        ours.print(
            &format!("postgres, {nodes} node(s) (durable ack)"),
            body_len,
        );
        // Where the machine's time went, per event: the nodes (above), the
        // database's processes, and this bench (load generator and sink).
        let per_event = |s: f64| s * 1e6 / ours.figures.acks.max(1) as f64;
        let nodes_cpu = ours.cpu_us_per_event * ours.figures.acks.max(1) as f64 / 1e6;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!(
            "  CPU per event: nodes {:.0} us, database {:.0} us, load generator and sink {:.0} us; the machine busy {:.2} of {cores:.0} cores over load + drain",
            ours.cpu_us_per_event,
            per_event(db_cpu),
            per_event(bench_cpu),
            (nodes_cpu + db_cpu + bench_cpu) / wall,
        );
        measured.push((nodes, ours.figures.acks as f64 / ours.figures.seconds));
        if let Some(view) = view {
            view.abort();
        }
        for s in servers {
            s.stop();
        }
        // The nodes' connections are closed, so their counts are in.
        if let Some(commits) = commits(&base_url, &db).await {
            println!(
                "  database: {:.2} commits per event",
                commits as f64 / ours.figures.acks.max(1) as f64
            );
        }
    }
    // With each node count run more than once (`1,2,2,1`, say, so that a
    // drift of the machine weighs on both alike): medians and their ratio.
    let mut seen: Vec<usize> = measured.iter().map(|(n, _)| *n).collect();
    seen.sort_unstable();
    seen.dedup();
    let medians: Vec<(usize, f64, usize)> = seen
        .into_iter()
        .map(|n| {
            let of_n: Vec<f64> = measured
                .iter()
                .filter(|(m, _)| *m == n)
                .map(|(_, a)| *a)
                .collect();
            let count = of_n.len();
            (n, median(of_n), count)
        })
        .collect();
    if measured.len() > medians.len() {
        let one = medians.iter().find(|(n, _, _)| *n == 1).map(|(_, m, _)| *m);
        for (n, m, count) in &medians {
            let ratio = one.map_or(String::new(), |o| format!(", {:.2} of one node", m / o));
            println!("postgres, {n} node(s): median of {count}: {m:.0} acks/s{ratio}");
        }
    }
}

/// Runs kept pace with a paced load when the last one was delivered within
/// this long after the last answer (a run takes a few ms; a backlog would
/// take seconds to drain).
const KEPT_PACE_SECONDS: f64 = 0.25;

/// The scenarios of one round, one after the other; hookflow on a fresh
/// store for each.
async fn round(b: &Bench, seconds: u64) -> Round {
    let plain = plain(b.body.clone());
    let signer = signer(b.body.clone());
    let ceiling = load(
        format!("{}/hooks/stripe", b.references.noop),
        b.reference_seconds,
        MAX_REQUESTS,
        plain,
    )
    .await;
    let forwarder_url = format!("{}/hooks/stripe", b.references.forwarder);
    let forwarder = forwarding(
        b,
        load(
            forwarder_url.clone(),
            b.reference_seconds,
            MAX_REQUESTS,
            signer.clone(),
        ),
    )
    .await;

    let server = Server::start(b.served, &b.sink_url, &[]);
    let scenario = load(server.url(), seconds, MAX_REQUESTS, signer.clone());
    let ours = measured(b, &server, scenario).await;
    server.stop();

    let mut paced_all = Vec::new();
    for &rate in &b.rates {
        let fwd = forwarding(
            b,
            paced(
                forwarder_url.clone(),
                b.reference_seconds,
                rate,
                signer.clone(),
            ),
        )
        .await;
        let server = Server::start(b.served, &b.sink_url, &[]);
        let scenario = paced(server.url(), seconds, rate, signer.clone());
        let ours = measured(b, &server, scenario).await;
        server.stop();
        paced_all.push((rate, fwd.figures, ours));
    }
    let (sync_plain, sync_respond) = sync_answers(b, seconds.min(SYNC_SECONDS)).await;
    Round {
        ceiling,
        forwarder,
        ours,
        paced: paced_all,
        sync_plain,
        sync_respond,
    }
}

/// The offered rate of the sync-answer scenario, events per second (the
/// flow-control goal: the answer's p99 within 2 ms of the plain 202's at
/// this rate).
const SYNC_RATE: f64 = 1000.0;

/// The sync-answer scenario runs at most this long, whatever the round's
/// length: 15,000 answers of each kind give a steady p99, and the 60 s
/// round's memory figure is not kept waiting two minutes for them.
const SYNC_SECONDS: u64 = 15;

/// A sync answer against the plain 202, on one server at [`SYNC_RATE`]:
/// the same workflow (a transform, then a POST to a sink), once as it is
/// and once with a `respond` step after the transform, whose answer the
/// sender waits for. Each answer is checked: 202 for the one, 200 (the
/// step's) for the other, never the fallback.
async fn sync_answers(b: &Bench, seconds: u64) -> (Figures, Figures) {
    let (posted, sink_url) = start_sink().await;
    let dir = tempfile::tempdir().expect("tmp");
    let steps = |respond: &str| {
        format!(
            "  - id: shape\n    transform:\n      script: '#{{ id: event.id, amount: event.data.object.amount }}'\n{respond}  - id: deliver\n    http: {{ url: \"{sink_url}\", body: \"{{{{ $.steps.shape }}}}\" }}\n"
        )
    };
    let ack = format!(
        "trigger:\n  webhook: {{ path: /ack }}\nsteps:\n{}",
        steps("")
    );
    let sync = format!(
        "trigger:\n  webhook: {{ path: /sync }}\nsteps:\n{}",
        steps("  - id: reply\n    respond: { body: \"{{ $.steps.shape }}\" }\n")
    );
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(workflows.join("ack.yaml"), ack).expect("write");
    std::fs::write(workflows.join("sync.yaml"), sync).expect("write");
    let server = Server::start_in(&dir.path().display().to_string(), &sink_url, &[]);
    let plain = plain(b.body.clone());
    let base = format!("http://{}", server.addr);
    let plain_202 = paced_answers(
        format!("{base}/hooks/ack"),
        seconds,
        SYNC_RATE,
        plain.clone(),
        Some(202),
    )
    .await;
    let responded = paced_answers(
        format!("{base}/hooks/sync"),
        seconds,
        SYNC_RATE,
        plain,
        Some(200),
    )
    .await;
    let expected = plain_202.acks + responded.acks;
    drained(&|| posted.get(), expected).await;
    assert_eq!(posted.get(), expected, "every run went on to deliver");
    server.stop();
    (plain_202, responded)
}

/// Run a load against `server` and measure what it did, through the drain
/// of its backlog.
async fn measured(
    b: &Bench,
    server: &Server,
    scenario: impl std::future::Future<Output = Figures>,
) -> Ours {
    let delivered_before = b.delivered.get();
    let delivered = || b.delivered.get() - delivered_before;
    let usage = Usage::of(&[server.pid()]);
    let started = Instant::now();
    let figures = scenario.await;
    let load_end = Instant::now();
    let runs_during_load = delivered() as f64 / figures.seconds;
    // Every acked event is one run that posts once to the bench sink.
    let last = drained(&delivered, figures.acks).await;
    let e2e_seconds = last.saturating_duration_since(started).as_secs_f64();
    let runs = delivered();
    assert_eq!(runs, figures.acks, "every acked event is delivered");
    let (cpu_us_per_event, switches_per_event) =
        usage.per_event_since(&[server.pid()], figures.acks);
    Ours {
        runs_per_second: runs as f64 / e2e_seconds,
        runs_during_load,
        delivered: runs,
        drain_seconds: last.saturating_duration_since(load_end).as_secs_f64(),
        peak_rss_mb: server.peak_rss_mb(),
        disk_bytes_per_event: server.disk_bytes() as f64 / figures.acks.max(1) as f64,
        record_bytes_per_event: server
            .record_bytes()
            .await
            .map_or(f64::NAN, |b| b as f64 / figures.acks.max(1) as f64),
        cpu_us_per_event,
        switches_per_event,
        figures,
    }
}

/// Sustained load below saturation, as a busy production server sees it:
/// one hookflow server offered `rate` events a second for `seconds`, so
/// runs keep pace, history is packed a minute after it is written and
/// retention prunes while the load goes on. Prints the server's RSS every
/// 10 s beside the runs delivered, then the round's figures: whether
/// memory stays flat once every background task has started is what this
/// round shows (`-- 600 1` with `HOOKFLOW_BENCH_STEADY=2000`).
///
/// With `HOOKFLOW_BENCH_BURST=RATE:SECONDS`, the same server is first
/// offered RATE events a second for SECONDS: a burst that leaves a
/// backlog, and with a small `--retention-size` (`HOOKFLOW_BENCH_ARGS`)
/// fills the data folder to the limit. Once that backlog is delivered,
/// the timeline shows whether the steady round after it is paced (the
/// folder's size, the pace and the records' target from `/metrics`).
async fn steady(b: &Bench, seconds: u64, rate: f64) {
    let burst = std::env::var(BURST).ok().and_then(|v| {
        let (rate, secs) = v.split_once(':')?;
        Some((
            rate.trim().parse::<f64>().ok()?,
            secs.trim().parse::<u64>().ok()?,
        ))
    });
    println!("steady: {rate:.0} events/s offered for {seconds} s, RSS every 10 s");
    let server = Server::start(b.served, &b.sink_url, &[]);
    let pid = server.pid();
    let delivered = b.delivered.clone();
    let before = delivered.get();
    let started = Instant::now();
    let addr = server.addr.clone();
    let burst_seconds = burst.map_or(0, |(_, s)| s);
    let timeline = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        // Bounded: the burst, the load, its drain and a margin.
        for _ in 0..((burst_seconds + seconds) / 10 + 60) {
            tick.tick().await;
            let Some(kb) = status_kb(pid, "VmRSS:") else {
                return;
            };
            let text = metrics_text(&addr).await.unwrap_or_default();
            let mb = |name: &str| gauge(&text, name).map_or(f64::NAN, |b| b / 1e6);
            println!(
                "  {:>5.0} s  RSS {:>6.1} MB  runs delivered {:>8}  folder {:>7.1} MB  pace {:>6.2} MB/s  records {:>6.1} of {:>6.1} MB",
                started.elapsed().as_secs_f64(),
                kb as f64 / 1024.0,
                delivered.get() - before,
                mb("hookflow_store_disk_bytes"),
                mb("hookflow_store_ingest_pace_bytes"),
                mb("hookflow_store_record_bytes"),
                mb("hookflow_store_record_target_bytes"),
            );
        }
    });
    // One signer for both: the steady round's event ids follow the
    // burst's, so none of its events is a duplicate of one already stored.
    let payloads = signer(b.body.clone());
    if let Some((burst_rate, burst_seconds)) = burst {
        println!("burst: {burst_rate:.0} events/s offered for {burst_seconds} s first");
        let figures = paced(server.url(), burst_seconds, burst_rate, payloads.clone()).await;
        figures.print(&format!("burst {burst_rate:.0}/s: hookflow"));
        // Its backlog delivered first: the steady round's figures are its own.
        let ended = Instant::now();
        let delivered = b.delivered.clone();
        let last = drained(&|| delivered.get() - before, figures.acks).await;
        println!(
            "  the burst's backlog delivered {:.1} s after its last answer",
            last.saturating_duration_since(ended).as_secs_f64()
        );
    }
    let scenario = paced(server.url(), seconds, rate, payloads);
    let ours = measured(b, &server, scenario).await;
    timeline.abort();
    ours.print(&format!("steady {rate:.0}/s: hookflow"), b.body.len());
    server.stop();
}

/// Run a scenario against the forwarder, and check that it forwarded
/// every event it acked; with the CPU its process took per event (the
/// no-op handler beside it is idle meanwhile), to set beside hookflow's.
async fn forwarding(b: &Bench, scenario: impl std::future::Future<Output = Figures>) -> Reference {
    let before = b.forwarded.get();
    let pid = b.references.child.id();
    let usage = Usage::of(&[pid]);
    let figures = scenario.await;
    let (cpu_us_per_event, switches_per_event) = usage.per_event_since(&[pid], figures.acks);
    assert_eq!(
        b.forwarded.get() - before,
        figures.acks,
        "the forwarder posts every event it acks"
    );
    Reference {
        cpu_us_per_event,
        switches_per_event,
        figures,
    }
}

/// What the forwarder did under one load.
struct Reference {
    figures: Figures,
    cpu_us_per_event: f64,
    /// Threads put to sleep or pre-empted, per event.
    switches_per_event: f64,
}
