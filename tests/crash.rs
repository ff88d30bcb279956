//! Crash tests with the real binary and SIGKILL: nothing answered 2xx is
//! lost, a completed step is not repeated, and the retry schedule survives.

mod common;

use common::{write_files, Backend, BinServer, Sink};
use hookflow::record::Timestamp;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Logical event number → (event id, run ids) of its acknowledgement.
type Acked = HashMap<usize, (String, Vec<String>)>;

fn ts(v: &Value) -> u64 {
    Timestamp::parse(v.as_str().expect("timestamp"))
        .expect("valid")
        .0
}

/// The server's folder and arguments: a new store of `backend`, kept
/// across kills (on PostgreSQL with a short lease, so a restarted server
/// takes over the runs the killed one held within seconds).
fn setup(backend: Backend, workflow: &str) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("workflows"), &[("w.yaml", workflow)]);
    let mut args = vec![
        "--workflows".to_string(),
        dir.path().join("workflows").display().to_string(),
    ];
    args.extend(backend.store_args(dir.path()));
    args.extend(backend.kill_args());
    (dir, args)
}

both!(a_run_waiting_to_retry_survives_sigkill);
async fn a_run_waiting_to_retry_survives_sigkill(backend: Backend) {
    let mut sink = Sink::start().await;
    sink.answer(
        "/out",
        vec![(503, vec![("retry-after".into(), "2".into())], "{}".into())],
    );
    let wf = format!(
        "trigger:\n  webhook: {{ path: /in }}\nsteps:\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.event }}}}\"\n      retry: {{ attempts: 3 }}\n",
        sink.url("/out")
    );
    let (_dir, args) = setup(backend, &wf);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = common::client();
    let server = BinServer::start(&args, &[]);
    // The stream tells of a retrying run once its schedule is on disk; the
    // API may show it a moment earlier, before the flush.
    let mut stream = client
        .get(server.url("/api/stream"))
        .send()
        .await
        .expect("stream");
    let answer: Value = common::post_at(&client, &server.url("/hooks/in"), &json!({"n": 1})).await;
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    let wanted = format!("\"id\":\"{run_id}\"");
    while !seen
        .split("\n\n")
        .any(|e| e.contains(&wanted) && e.contains("\"status\":\"retrying\""))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("never started waiting: {seen}"))
            .expect("stream read")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    let waiting: Value = common::get_at(&client, &server.url(&format!("/api/runs/{run_id}"))).await;
    assert_eq!(waiting["status"], "retrying", "{waiting}");
    let first_key = sink.next().await.headers["idempotency-key"].clone();
    let next_at = ts(&waiting["next_attempt_at"]);
    tokio::task::spawn_blocking(move || server.kill())
        .await
        .expect("killed");

    let server = BinServer::start(&args, &[]);
    let run = common::wait_run_at(&client, &server.base, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let attempts = run["steps"][0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "both attempts are in the record: {run}");
    assert_eq!(attempts[0]["response"]["status"], 503);
    assert_eq!(attempts[1]["response"]["status"], 200);
    assert!(
        ts(&attempts[1]["started_at"]) >= next_at,
        "the stored schedule was kept, not reset"
    );
    assert_eq!(
        sink.next().await.headers["idempotency-key"],
        first_key,
        "same key after the restart"
    );
    server.terminate();
}

both!(
    no_acknowledged_event_is_lost_across_repeated_sigkills,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn no_acknowledged_event_is_lost_across_repeated_sigkills(backend: Backend) {
    const EVENTS: usize = 1000;
    const CONCURRENCY: usize = 16;
    const KILLS: usize = 3;
    let mut sink = Sink::start().await;
    let wf = format!(
        "trigger:\n  webhook:\n    path: /in\n    dedupe: {{ key: \"{{{{ $.event.id }}}}\" }}\nsteps:\n  - id: shape\n    transform:\n      script: '#{{ id: event.id, doubled: event.n * 2 }}'\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.steps.shape }}}}\"\n      retry: {{ attempts: 20, backoff: 20ms, max_backoff: 300ms }}\n",
        sink.url("/out")
    );
    let (_dir, args) = setup(backend, &wf);
    let server = BinServer::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let listen = server.addr();
    let base = server.base.clone();
    let server = Arc::new(Mutex::new(Some(server)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    // Senders: each logical event is retried until acknowledged, as a
    // webhook provider would.
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut senders = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, base, acked, next) =
            (client.clone(), base.clone(), acked.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= EVENTS {
                    return;
                }
                loop {
                    assert!(Instant::now() < deadline, "sending took too long");
                    let sent = client
                        .post(format!("{base}/hooks/in"))
                        .json(&json!({"id": format!("evt_{n}"), "n": n}))
                        .send()
                        .await;
                    if let Ok(resp) = sent {
                        if resp.status().is_success() {
                            if let Ok(body) = resp.json::<Value>().await {
                                let runs = body["runs"]
                                    .as_array()
                                    .map(|r| {
                                        r.iter()
                                            .filter_map(|x| x.as_str().map(String::from))
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                acked.lock().expect("lock").insert(
                                    n,
                                    (body["event_id"].as_str().unwrap_or("").to_string(), runs),
                                );
                                break;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        }));
    }

    // The killer: SIGKILL at random points of the load, then restart on the
    // same port and data folder.
    let mut kills = 0;
    let mut thresholds: Vec<usize> = (0..KILLS)
        .map(|i| (i + 1) * EVENTS / (KILLS + 2) + fastrand::usize(0..EVENTS / 10))
        .collect();
    thresholds.sort();
    for threshold in thresholds {
        while acked.lock().expect("lock").len() < threshold {
            assert!(
                Instant::now() < deadline,
                "load stalled before kill {kills}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..40))).await;
        let old = server.lock().expect("lock").take().expect("running");
        let (listen, args) = (listen.clone(), args.clone());
        let fresh = tokio::task::spawn_blocking(move || {
            old.kill();
            BinServer::start_at(
                &listen,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
                &[],
            )
        })
        .await
        .expect("restarted");
        *server.lock().expect("lock") = Some(fresh);
        kills += 1;
    }
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), EVENTS);

    // Every acknowledged event has exactly one run, and it succeeded.
    let mut lost = 0;
    let mut duplicated = 0;
    let mut keys = HashSet::new();
    for (n, (event_id, runs)) in &acked {
        let event: Value = common::get_at(&client, &format!("{base}/api/events/{event_id}")).await;
        if event["runs"].as_array().map(Vec::len) != Some(1) || runs.len() != 1 {
            duplicated += 1;
            eprintln!("event {n} ({event_id}) has runs {}", event["runs"]);
        }
        for run_id in runs {
            let run = common::wait_run_at(&client, &base, run_id).await;
            if run["status"] != "succeeded" {
                lost += 1;
                eprintln!("run {run_id} ended {}", run["status"]);
            }
            keys.insert(format!("{run_id}.deliver"));
        }
    }
    // The sink saw every run's Idempotency-Key (some more than once: at-least-once).
    let mut seen = HashSet::new();
    let mut deliveries = 0;
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(500), sink.rx.recv()).await {
        deliveries += 1;
        seen.insert(
            r.headers
                .get("idempotency-key")
                .cloned()
                .unwrap_or_default(),
        );
    }
    let undelivered = keys.difference(&seen).count();
    println!(
        "crash test: {EVENTS} events, {kills} SIGKILLs, acked {}, lost {lost}, duplicated {duplicated}, sink deliveries {deliveries} for {} runs ({} redelivered), undelivered {undelivered}",
        acked.len(),
        keys.len(),
        deliveries - seen.len().min(deliveries)
    );
    assert_eq!(kills, KILLS);
    assert_eq!(lost, 0);
    assert_eq!(duplicated, 0);
    assert_eq!(undelivered, 0);
    let last = server.lock().expect("lock").take();
    if let Some(s) = last {
        tokio::task::spawn_blocking(move || s.terminate())
            .await
            .expect("stopped");
    }
}

both!(dedupe_keys_answered_just_before_a_sigkill_still_hold_after_it);
/// A key claimed moments before a SIGKILL still answers its repeats after
/// the restart. On sled the keys' database is flushed once a second (see
/// `store::sled::dedupe`), and the keys of the events stored since are
/// written again at open; on PostgreSQL a key is written with its event.
async fn dedupe_keys_answered_just_before_a_sigkill_still_hold_after_it(backend: Backend) {
    let wf = "trigger:\n  webhook:\n    path: /in\n    dedupe: { key: \"{{ $.event.id }}\" }\nsteps:\n  - id: shape\n    transform:\n      script: '#{ id: event.id }'\n";
    let (_dir, owned) = setup(backend, wf);
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let client = common::client();
    let server = BinServer::start(&args, &[]);
    let listen = server.addr();
    // Over two seconds: some keys flushed before the kill, the last not.
    let mut first = Vec::new();
    for n in 0..40 {
        let body = json!({"id": format!("evt_{n}")});
        first.push(common::post_at(&client, &server.url("/hooks/in"), &body).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = tokio::task::spawn_blocking(move || {
        server.kill();
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        BinServer::start_at(&listen, &args, &[])
    })
    .await
    .expect("restarted");
    for (n, answer) in first.iter().enumerate() {
        assert!(answer["event_id"].is_string(), "{answer}");
        let body = json!({"id": format!("evt_{n}")});
        let again = common::post_duplicate(&client, &server.url("/hooks/in"), &body).await;
        assert_eq!(again["event_id"], answer["event_id"], "evt_{n}");
        assert_eq!(again["runs"], answer["runs"], "evt_{n}");
    }
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("stopped");
}
