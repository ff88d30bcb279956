//! What the benchmarks share: the closed and paced loads, the counting
//! sink, and a `hookflow serve` of the release build whose RSS, disk use and
//! CPU time are measured as a user would measure them. Traffic stays on
//! 127.0.0.1; every loop is bounded in time and count.
#![allow(dead_code)] // each bench uses a different subset

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use hookflow::signature::{sign, Algorithm};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CONCURRENCY: usize = 32;
pub const MAX_REQUESTS: usize = 2_000_000;
/// The demo workflow's Stripe secret (its fallback when
/// STRIPE_WEBHOOK_SECRET is unset).
pub const SECRET: &[u8] = b"whsec_hookflow_demo";

/// The bench event: a 1.5 KB Stripe `payment_intent.succeeded`,
/// pretty-printed as Stripe sends it.
pub fn fixture(root: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{root}/benches/fixtures/stripe_payment_intent_1500.json"
    ))
    .expect("the bench fixture")
}

/// Makes each request: its body and headers (a fresh event id and
/// signature, say).
pub type Payloads = Arc<dyn Fn() -> (Vec<u8>, Vec<(String, String)>) + Send + Sync>;

/// Where the fixture's event id sits, replaced in each request.
const FIXTURE_EVENT_ID: &[u8] = b"evt_3PqTn2LkdIwHu7ix0Qz1abcd";

/// Each request is `body` as Stripe would send a new event: an event id of
/// its own (so Stripe's dedupe on the id keeps one run per event, as in
/// production) and a fresh signature made with the demo secret.
pub fn signer(body: Arc<Vec<u8>>) -> Payloads {
    let at = body
        .windows(FIXTURE_EVENT_ID.len())
        .position(|w| w == FIXTURE_EVENT_ID);
    let n = Arc::new(AtomicU64::new(0));
    Arc::new(move || {
        let mut body = body.to_vec();
        if let Some(at) = at {
            let id = event_id(n.fetch_add(1, Ordering::Relaxed));
            body[at..at + FIXTURE_EVENT_ID.len()].copy_from_slice(id.as_bytes());
        }
        let t = unix_now();
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(&body);
        let sig = hex::encode(sign(Algorithm::Sha256, SECRET, &signed));
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("stripe-signature".to_string(), format!("t={t},v1={sig}")),
        ];
        (body, headers)
    })
}

/// Each request is `body` as it is, unsigned, as JSON.
pub fn plain(body: Arc<Vec<u8>>) -> Payloads {
    Arc::new(move || {
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        (body.to_vec(), headers)
    })
}

/// A Stripe-like event id: `evt_` and 24 letters and digits, 16 that look
/// random (as Stripe's do, so they compress no better than real ones) and 8
/// that spell `n`, so no two are alike.
fn event_id(n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::from("evt_");
    let mut digits = |mut x: u64| {
        for _ in 0..8 {
            id.push(ALPHABET[(x % 62) as usize] as char);
            x /= 62;
        }
    };
    for round in 1..=2u64 {
        // splitmix64
        let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(round));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        digits(z ^ (z >> 31));
    }
    digits(n);
    id
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counts and percentiles of a scenario's latencies.
pub struct Figures {
    pub acks: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Figures {
    pub fn print(&self, name: &str) {
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

/// A post with a fresh body and headers.
fn request(client: &reqwest::Client, url: &str, payloads: &Payloads) -> reqwest::RequestBuilder {
    let (body, headers) = payloads();
    let mut req = client.post(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req
}

/// Send `req` and read the whole answer, which must be a success (and
/// have status `want`, when given); the milliseconds since `since`.
async fn answered(req: reqwest::RequestBuilder, since: Instant, want: Option<u16>) -> f64 {
    match req.send().await {
        Ok(r) if r.status().is_success() && want.is_none_or(|w| w == r.status().as_u16()) => {
            let _ = r.bytes().await;
            since.elapsed().as_secs_f64() * 1000.0
        }
        Ok(r) => panic!("unexpected answer {}", r.status()),
        Err(e) => panic!("request failed: {e}"),
    }
}

/// Closed-loop load: CONCURRENCY clients post for `seconds`, or until
/// `max` requests were answered.
pub async fn load(url: String, seconds: u64, max: usize, payloads: Payloads) -> Figures {
    load_spread(vec![url], seconds, max, payloads).await
}

/// [`load`] with the clients spread over `urls` (several nodes).
pub async fn load_spread(
    urls: Vec<String>,
    seconds: u64,
    max: usize,
    payloads: Payloads,
) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let left = Arc::new(AtomicU64::new(max.min(MAX_REQUESTS) as u64));
    let mut tasks = Vec::new();
    for i in 0..CONCURRENCY {
        let (client, url, payloads, left) = (
            client.clone(),
            urls[i % urls.len()].clone(),
            payloads.clone(),
            left.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < stop
                && left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let req = request(&client, &url, &payloads);
                lat.push(answered(req, Instant::now(), None).await);
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
pub async fn paced(url: String, seconds: u64, rate: f64, payloads: Payloads) -> Figures {
    paced_answers(url, seconds, rate, payloads, None).await
}

/// [`paced`], where every answer must have status `want` (when given).
pub async fn paced_answers(
    url: String,
    seconds: u64,
    rate: f64,
    payloads: Payloads,
    want: Option<u16>,
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
            let req = request(&client, &url, &payloads);
            let latencies = Arc::clone(&latencies);
            let sent_at = Instant::now();
            tokio::spawn(async move {
                let ms = answered(req, sent_at, want).await;
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
pub fn figures(mut all: Vec<f64>, seconds: f64) -> Figures {
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

/// How many requests a sink received.
#[derive(Clone)]
pub struct Counter(pub Arc<AtomicU64>);

impl Counter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed) as usize
    }
}

async fn sink(State(c): State<Counter>, _body: Bytes) -> StatusCode {
    c.0.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// A sink that counts what it is posted; its count and its URL.
pub async fn start_sink() -> (Counter, String) {
    let count = Counter(Arc::default());
    let url = serve(
        Router::new()
            .route("/slack", post(sink))
            .with_state(count.clone()),
    )
    .await;
    (count, format!("{url}/slack"))
}

pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// Wait until `delivered()` reaches `expected`, giving up once deliveries
/// stop for 5 s. Returns when the last delivery was seen.
pub async fn drained(delivered: &impl Fn() -> usize, expected: usize) -> Instant {
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

/// The `/metrics` text of the server listening on `addr`.
pub async fn metrics_text(addr: &str) -> Option<String> {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// A gauge's value in a `/metrics` text.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A `hookflow serve` of the release build on a fresh data folder, with
/// its RSS sampled every 0.2 s from its start. `HOOKFLOW_BENCH_BIN` runs
/// another build; `HOOKFLOW_BENCH_ARGS` adds flags.
pub struct Server {
    pub child: std::process::Child,
    pub addr: String,
    pub data: tempfile::TempDir,
    peak_sampled_kb: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
}

impl Server {
    /// Start on `root`'s workflows, the Stripe example posting to `sink_url`.
    pub fn start(root: &str, sink_url: &str, extra: &[&str]) -> Server {
        Self::start_in(root, sink_url, extra)
    }

    /// Start in `dir` (its `workflows/` are served), with `extra` flags.
    pub fn start_in(dir: &str, sink_url: &str, extra: &[&str]) -> Server {
        let root = dir;
        let data = tempfile::tempdir().expect("tmp");
        let bin = std::env::var("HOOKFLOW_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookflow").to_string());
        let more = std::env::var("HOOKFLOW_BENCH_ARGS").unwrap_or_default();
        let mut child = Command::new(bin)
            .current_dir(root)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(extra)
            .args(more.split_whitespace())
            .env("SLACK_WEBHOOK_URL", sink_url)
            .env(
                "HOOKFLOW_LOG",
                std::env::var("HOOKFLOW_LOG")
                    .unwrap_or_else(|_| "warn,hookflow::server=info".into()),
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
                } else if !line.contains("workflow loaded") {
                    eprintln!("{line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("hookflow listens");
        eprintln!("hookflow listens on {addr}, pid {}", child.id());
        let peak_sampled_kb = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        {
            let (peak, on, pid) = (peak_sampled_kb.clone(), sampling.clone(), child.id());
            std::thread::spawn(move || {
                // Bounded: at most two hours of samples.
                for _ in 0..36_000 {
                    if !on.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Some(kb) = status_kb(pid, "VmRSS:") {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
        Server {
            child,
            addr,
            data,
            peak_sampled_kb,
            sampling,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/stripe", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peak RSS so far, MB: the larger of the sampled VmRSS and the
    /// kernel's high-water mark.
    pub fn peak_rss_mb(&self) -> f64 {
        let sampled = self.peak_sampled_kb.load(Ordering::Relaxed);
        let hwm = status_kb(self.pid(), "VmHWM:").unwrap_or(0);
        sampled.max(hwm) as f64 / 1024.0
    }

    /// The RSS now, MB.
    pub fn rss_mb(&self) -> f64 {
        status_kb(self.pid(), "VmRSS:").unwrap_or(0) as f64 / 1024.0
    }

    /// Bytes the data folder takes on disk (allocated blocks, as `du`).
    pub fn disk_bytes(&self) -> u64 {
        disk_usage(self.data.path())
    }

    /// Bytes of event and run records the store holds (its
    /// `hookflow_store_record_bytes` gauge): what the data folder would take
    /// with no log overhead.
    pub async fn record_bytes(&self) -> Option<u64> {
        let text = metrics_text(&self.addr).await?;
        gauge(&text, "hookflow_store_record_bytes").map(|b| b as u64)
    }

    pub fn stop(mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[path = "../../tests/common/disk.rs"]
mod disk;
use disk::disk_usage;

/// CPU seconds (user + system) a process and the children it started have
/// used so far: its own, its children's that ended (which it has reaped),
/// and those of its children still running. For a database server, whose
/// connections are child processes.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let own = stat_fields(pid).map_or(f64::NAN, |f| ticks(&f, &[11, 12, 13, 14]));
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat_fields)
        .filter(|f| f.get(1) == Some(&(pid as f64)))
        .map(|f| ticks(&f, &[11, 12]))
        .filter(|t| t.is_finite())
        .sum();
    own + children
}

/// The fields of `/proc/<pid>/stat` after the command name (which may
/// contain spaces), as numbers.
fn stat_fields(pid: u32) -> Option<Vec<f64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<f64>().unwrap_or(f64::NAN))
            .collect(),
    )
}

/// The sum of clock-tick fields, in seconds (Linux reports 100 ticks per
/// second on every platform we run).
fn ticks(fields: &[f64], which: &[usize]) -> f64 {
    which
        .iter()
        .map(|i| fields.get(*i).copied().unwrap_or(f64::NAN))
        .sum::<f64>()
        / 100.0
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_fields(pid).map_or(f64::NAN, |f| ticks(&f, &[11, 12]))
}

/// Context switches so far, summed over the process's live threads
/// (`voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches`): each is a
/// thread put to sleep or pre-empted, to be woken again.
pub fn context_switches(pid: u32) -> u64 {
    let counted = |status: String| -> u64 {
        status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt") || l.starts_with("nonvoluntary_ctxt"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(counted)
        .sum()
}

/// The CPU time and context switches processes have taken so far, to be
/// set against a later reading per event ([`Usage::per_event_since`]).
#[derive(Clone, Copy)]
pub struct Usage {
    cpu_seconds: f64,
    switches: u64,
}

impl Usage {
    pub fn of(pids: &[u32]) -> Usage {
        Usage {
            cpu_seconds: pids.iter().map(|p| cpu_seconds(*p)).sum(),
            switches: pids.iter().map(|p| context_switches(*p)).sum(),
        }
    }

    /// µs of CPU and context switches per event that `pids` took since
    /// `self` was read of them.
    pub fn per_event_since(&self, pids: &[u32], events: usize) -> (f64, f64) {
        let now = Usage::of(pids);
        let events = events.max(1) as f64;
        (
            (now.cpu_seconds - self.cpu_seconds) * 1e6 / events,
            now.switches.saturating_sub(self.switches) as f64 / events,
        )
    }
}
