//! Every crash point, one by one: the real binary is started with
//! `HOOKFLOW_CRASH_AT=<point>`, driven until it stops there (everything
//! written before the point made durable, the rest lost — the worst case
//! for an interrupted write sequence), then started again on the same data.
//! For each point: every event the sender got a 2xx for has its runs
//! finish as they should, no run is stuck, no step is delivered twice
//! beyond the at-least-once window (a request answered but not yet saved),
//! and the queue empties. On both backends: on PostgreSQL each write is
//! one atomic statement, so a sequence's points fall before or after it
//! (see `store::postgres`), and the runs the stopped process held are
//! taken over when their lease runs out.

mod common;

use common::{write_files, Backend, BinServer, Sink};
use hookflow::fault::{ENV, POINTS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Crash points no workflow can reach yet, with the reason.
const PENDING: &[(&str, &str)] = &[];

/// What the workflow under test does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// transform → http (the last step).
    Deliver,
    /// The same, with one event, so the passes of a step point are known.
    DeliverOne,
    /// http → transform: the delivery is saved before the next step (one
    /// event).
    DeliverThenShape,
    /// The sink answers 503 once, then 200: one retry.
    Retry,
    /// The sink answers 400 once (the run fails), then the run is replayed.
    Replay,
    /// transform → delay (1 s) → http: the run waits, durably.
    Delay,
    /// A for_each over three items, each delivered: an item settles and
    /// the run is saved with it.
    Items,
    /// Many events delivered, their finished history packed at once
    /// (`--pack-after 0s`; sled only: PostgreSQL keeps rows).
    Pack,
}

struct Case {
    point: &'static str,
    /// Stop at this pass of the point.
    pass: u32,
    scenario: Scenario,
    /// The most deliveries of one Idempotency-Key the sink may see: 1, or 2
    /// where the crash falls between a request's answer and its save.
    max_per_key: usize,
}

fn cases() -> Vec<Case> {
    use Scenario::*;
    let c = |point, pass, scenario, max_per_key| Case {
        point,
        pass,
        scenario,
        max_per_key,
    };
    vec![
        c("ingest.runs_written", 1, Deliver, 1),
        c("ingest.claims_written", 1, Deliver, 1),
        c("ingest.event_written", 1, Deliver, 1),
        c("ingest.flushed", 1, Deliver, 1),
        c("step.started", 1, DeliverOne, 1),
        // Pass 2 is the http step: answered, not yet saved.
        c("step.acted", 2, DeliverOne, 2),
        c("step.saved", 1, DeliverThenShape, 1),
        // A retry: the 503 attempt may be made again before the final 200.
        c("retry.entry_written", 1, Retry, 2),
        c("retry.run_saved", 1, Retry, 2),
        c("retry.old_entry_removed", 1, Retry, 2),
        c("finish.run_saved", 1, Retry, 2),
        c("finish.entry_removed", 1, Retry, 2),
        c("replay.entry_written", 1, Replay, 1),
        c("replay.run_written", 1, Replay, 1),
        c("replay.linked", 1, Replay, 1),
        // A delay being scheduled: its wake-up entry, the waiting run, the
        // entry that brought the run here.
        c("delay.entry_written", 1, Delay, 1),
        c("delay.run_saved", 1, Delay, 1),
        c("delay.old_entry_removed", 1, Delay, 1),
        // The first item delivered and saved: it is not sent again.
        c("step.item_saved", 1, Items, 1),
        // The second item answered, not yet saved: only it may go twice.
        c("step.acted", 2, Items, 2),
        // A pack written, the records it holds not yet gone from the hot
        // tree: both copies are there after the restart.
        c("pack.written", 1, Pack, 1),
    ]
}

fn workflow(s: Scenario, sink: &Sink) -> String {
    let deliver = format!(
        "  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.event }}}}\"\n      retry: {{ attempts: 5, backoff: 50ms, max_backoff: 200ms }}\n",
        sink.url("/out")
    );
    let shape = "  - id: shape\n    transform:\n      script: '#{ id: event.id }'\n";
    let head =
        "trigger:\n  webhook:\n    path: /in\n    dedupe: { key: \"{{ $.event.id }}\" }\nsteps:\n";
    match s {
        Scenario::Deliver
        | Scenario::DeliverOne
        | Scenario::Retry
        | Scenario::Replay
        | Scenario::Pack => {
            format!("{head}{shape}{deliver}")
        }
        Scenario::DeliverThenShape => format!("{head}{deliver}{shape}"),
        Scenario::Delay => format!("{head}{shape}  - id: later\n    delay: 1s\n{deliver}"),
        Scenario::Items => format!(
            "{head}  - id: each\n    for_each: [a, b, c]\n    steps:\n      - id: deliver\n        http:\n          url: \"{}\"\n          body: {{ id: \"{{{{ $.event.id }}}}\", item: \"{{{{ $.item }}}}\" }}\n",
            sink.url("/out")
        ),
    }
}

/// The server's data folder and arguments.
struct Setup {
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

/// The lease on PostgreSQL: the runs a crashed process held are taken
/// over by its successor once it runs out.
const LEASE: &str = "2s";

impl Setup {
    fn new(backend: Backend, scenario: Scenario, workflow: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tmp");
        write_files(&dir.path().join("workflows"), &[("w.yaml", workflow)]);
        let mut args = vec![
            "--workflows".to_string(),
            dir.path().join("workflows").display().to_string(),
        ];
        args.extend(backend.store_args(dir.path()));
        if backend == Backend::Postgres {
            args.extend(["--lease".to_string(), LEASE.to_string()]);
        }
        if scenario == Scenario::Pack {
            args.extend(["--pack-after".to_string(), "0s".to_string()]);
        }
        Setup { _dir: dir, args }
    }

    fn start(&self, listen: &str, crash_at: Option<String>) -> BinServer {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        match crash_at {
            Some(spec) => BinServer::start_at(listen, &args, &[(ENV, &spec)]),
            None => BinServer::start_at(listen, &args, &[]),
        }
    }
}

/// Send the event until it is answered 2xx, as a webhook sender does.
async fn send(client: &reqwest::Client, base: &str, n: usize, deadline: Instant) -> Value {
    loop {
        assert!(
            Instant::now() < deadline,
            "event {n} was never acknowledged"
        );
        let sent = client
            .post(format!("{base}/hooks/in"))
            .json(&json!({"id": format!("evt_{n}"), "n": n}))
            .send()
            .await;
        if let Ok(resp) = sent {
            if resp.status().is_success() {
                if let Ok(body) = resp.json::<Value>().await {
                    return body;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait (bounded) until the process has stopped at its crash point.
fn wait_for_crash(server: &mut BinServer, point: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            assert!(!status.success(), "{point}: the server exited cleanly");
            let log = server.log.lock().expect("log").join("\n");
            assert!(
                log.contains(&format!("stopping at crash point {point}")),
                "{point}: the server stopped for another reason:\n{log}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{point}: the crash point was never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one case ended with.
struct Outcome {
    acked: usize,
    runs: usize,
    deliveries: usize,
    max_per_key: usize,
}

/// Events sent per case: several where the crash comes before any run
/// exists, one where it must hit a given run (with several, another run
/// may be caught between a request and its save, which the at-least-once
/// window allows).
fn events(s: Scenario) -> usize {
    match s {
        Scenario::Deliver => 3,
        // Enough finished runs to fill a pack (about 32 KiB of records).
        Scenario::Pack => 120,
        Scenario::DeliverOne
        | Scenario::DeliverThenShape
        | Scenario::Retry
        | Scenario::Replay
        | Scenario::Delay
        | Scenario::Items => 1,
    }
}

async fn run_case(backend: Backend, case: &Case) -> Outcome {
    let mut sink = Sink::start().await;
    match case.scenario {
        Scenario::Retry => sink.answer(
            "/out",
            vec![(503, vec![("retry-after".into(), "1".into())], "{}".into())],
        ),
        Scenario::Replay => sink.answer("/out", vec![(400, vec![], "{}".into())]),
        Scenario::Deliver
        | Scenario::DeliverOne
        | Scenario::DeliverThenShape
        | Scenario::Delay
        | Scenario::Items
        | Scenario::Pack => {}
    }
    let setup = Setup::new(backend, case.scenario, &workflow(case.scenario, &sink));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    let spec = format!("{}:{}", case.point, case.pass);
    let mut server = setup.start("127.0.0.1:0", Some(spec));
    let listen = server.addr();
    let base = server.base.clone();

    let mut acked: Vec<Value> = Vec::new();
    if case.scenario == Scenario::Replay {
        // A failed run to replay, then the replay that crashes.
        let answer = send(&client, &base, 0, deadline).await;
        let run_id = answer["runs"][0].as_str().expect("a run").to_string();
        let failed = common::wait_run_at(&client, &base, &run_id).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        acked.push(answer);
        let replayed = client
            .post(format!("{base}/api/runs/{run_id}/replay"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await;
        assert!(
            replayed.is_err() || !replayed.as_ref().is_ok_and(|r| r.status().is_success()),
            "{}: the replay was answered before the crash",
            case.point
        );
        tokio::task::block_in_place(|| wait_for_crash(&mut server, case.point));
        drop(server);
        let server = setup.start(&listen, None);
        let original = common::get_at(&client, &server.url(&format!("/api/runs/{run_id}"))).await;
        assert_eq!(original["status"], "failed", "{original}");
        return finish(case, &client, server, acked, &mut sink, 1).await;
    }

    // The sender keeps sending each event until it is acknowledged; the
    // server stops at the crash point on the way and is started again.
    let sender = {
        let (client, base, count) = (client.clone(), base.clone(), events(case.scenario));
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..count {
                acked.push(send(&client, &base, n, deadline).await);
            }
            acked
        })
    };
    tokio::task::block_in_place(|| wait_for_crash(&mut server, case.point));
    drop(server);
    let server = setup.start(&listen, None);
    acked.extend(sender.await.expect("sender"));
    finish(case, &client, server, acked, &mut sink, 0).await
}

/// Check the outcome after the restart: every acknowledged event's runs
/// finish as the scenario says, nothing is stuck, deliveries are bounded.
async fn finish(
    case: &Case,
    client: &reqwest::Client,
    server: BinServer,
    acked: Vec<Value>,
    sink: &mut Sink,
    replays: usize,
) -> Outcome {
    let point = case.point;
    let mut runs = 0;
    for answer in &acked {
        let event_id = answer["event_id"].as_str().expect("event id");
        let event = common::get_at(client, &server.url(&format!("/api/events/{event_id}"))).await;
        let ids: Vec<String> = event["runs"]
            .as_array()
            .unwrap_or_else(|| {
                let log = server.log.lock().expect("log").join("\n");
                panic!(
                    "{point}: acked event {event_id} ({answer}) reads back as {event}\nLOG:\n{log}"
                )
            })
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect();
        for id in &ids {
            let run = common::wait_run_at(client, &server.base, id).await;
            let expected = match (case.scenario, run["replay_of"].is_null()) {
                (Scenario::Replay, true) => "failed",
                _ => "succeeded",
            };
            assert_eq!(run["status"], expected, "{point}: {run}");
        }
        runs += ids.len();
    }
    // One run per acknowledged event (plus a replay that got through).
    assert!(
        runs >= acked.len() && runs <= acked.len() + replays,
        "{point}: {runs} runs for {} events",
        acked.len()
    );
    // Every run in the store is final: nothing stuck, nothing left over.
    let all = common::get_at(client, &server.url("/api/runs?limit=500")).await;
    let listed: std::collections::BTreeSet<&str> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        listed.len(),
        all["items"].as_array().map_or(0, Vec::len),
        "{point}: the listing shows each run once"
    );
    assert!(
        listed.len() >= runs,
        "{point}: {} runs listed, {runs} read",
        listed.len()
    );
    for run in all["items"].as_array().expect("items") {
        let id = run["id"].as_str().expect("id");
        let run = common::wait_run_at(client, &server.base, id).await;
        assert!(
            common::FINAL.contains(&run["status"].as_str().unwrap_or("")),
            "{point}: {run}"
        );
    }
    common::wait_queue_drained(client, &server.base, Duration::from_secs(10), point).await;
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    // The runs that delivered each event the sender sent (by its own id):
    // one, or a replay besides.
    let mut runs_per_event: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut deliveries = 0;
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(300), sink.rx.recv()).await {
        deliveries += 1;
        let key = r
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default();
        let run = key.split('.').next().unwrap_or_default().to_string();
        runs_per_event
            .entry(r.json()["id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert(run);
        *per_key.entry(key).or_default() += 1;
    }
    for (event, runs) in &runs_per_event {
        assert!(
            runs.len() <= 1 + replays,
            "{point}: event {event} was delivered by {} runs: {runs:?}",
            runs.len()
        );
    }
    // Every run delivered what it sends: once, or once per item.
    let keys_per_run = match case.scenario {
        Scenario::Items => 3,
        Scenario::Deliver
        | Scenario::DeliverOne
        | Scenario::DeliverThenShape
        | Scenario::Retry
        | Scenario::Replay
        | Scenario::Delay
        | Scenario::Pack => 1,
    };
    assert!(
        per_key.len() >= runs * keys_per_run,
        "{point}: {runs} runs delivered only {:?}",
        per_key.keys()
    );
    let max_per_key = per_key.values().copied().max().unwrap_or(0);
    assert!(
        max_per_key <= case.max_per_key,
        "{point}: a key was delivered {max_per_key} times (at most {} allowed): {per_key:?}",
        case.max_per_key
    );
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("stopped");
    Outcome {
        acked: acked.len(),
        runs,
        deliveries,
        max_per_key,
    }
}

both!(
    every_crash_point_recovers,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn every_crash_point_recovers(backend: Backend) {
    let cases = cases();
    for point in POINTS {
        let covered = cases.iter().any(|c| c.point == *point);
        let pending = PENDING.iter().any(|(p, _)| p == point);
        assert!(
            covered || pending,
            "crash point {point} has no case in this test"
        );
    }
    println!(
        "crash point                | scenario         | acked | runs | deliveries | most per key"
    );
    for case in &cases {
        if case.scenario == Scenario::Pack && backend == Backend::Postgres {
            println!(
                "{:<26} | PostgreSQL keeps history as rows: nothing to pack",
                case.point
            );
            continue;
        }
        let o = run_case(backend, case).await;
        println!(
            "{:<26} | {:<16} | {:>5} | {:>4} | {:>10} | {:>12}",
            format!("{}:{}", case.point, case.pass),
            format!("{:?}", case.scenario),
            o.acked,
            o.runs,
            o.deliveries,
            o.max_per_key
        );
    }
    for (point, why) in PENDING {
        println!("{point:<26} | not reachable yet: {why}");
    }
}
