//! `--retention-size` is a promise about the disk: the data folder, as
//! `du` counts it (every tree, sled's log with its free space, its
//! snapshots), stays within the limit however much history arrives. The
//! store keeps its records (events, runs, dedupe keys) within the share of
//! the limit that sled's log leaves them (`records_budget`); these tests
//! hold that against `du` at the smallest limit sled accepts, with the
//! real binary and with the store alone, and many times more traffic than
//! the limit holds.
//!
//! These run in the test (debug) build, whose write rate sled's log
//! cleaner mostly keeps up with. Where it does not (the release build at
//! full speed, `docs/performance.md`), new events are paced near the
//! limit; the last test here drives that with a folder already past it.
//!
//! Runs not finished are never pruned (SPEC §6), so a backlog is held
//! whatever the limit: the senders here pause while more than a few
//! hundred runs wait, so that the test measures history, not the backlog.
//! (Before they did, the backlog of this debug build reached 4,000 runs
//! and took the folder to 19 MB at a 6 MiB limit, which had looked like a
//! leak of sled's log.)
//!
//! sled only: on PostgreSQL the database's files are the operator's, and
//! retention there is by day partitions and batched deletes
//! (`tests/postgres.rs`).

mod common;

use common::disk::disk_usage;
use common::{BinServer, SledFolder};
use hookflow::record::{EventId, RunStatus, Timestamp};
use hookflow::store::{DedupeClaim, Durability, Ingest, Store};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The smallest limit sled accepts, where its log's fixed part weighs most.
const LIMIT: u64 = hookflow::store::sled::MIN_RETENTION_SIZE;

/// Runs waiting, beyond which the senders pause.
const MAX_BACKLOG: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_stays_within_the_retention_size() {
    let wf = "trigger:\n  webhook: { path: /in, dedupe: { key: '{{ $.event.id }}' } }\nsteps:\n  - id: shape\n    transform: { script: '#{ id: event.id, amount: event.data.object.amount }' }\n";
    let limit = LIMIT.to_string();
    let folder = SledFolder::new(
        &[("w.yaml", wf)],
        // The default prune interval (a minute): pruning by size follows
        // the records as they pass the budget, not the timer.
        &["--retention-size", &limit],
    );
    let data = folder.data.clone();
    let server = BinServer::start(&folder.args(), &[]);

    // A 1.5 KB Stripe event, each with its own id (and so its own dedupe
    // key) and figures (as compressible as real traffic): about three
    // times the limit in records, twenty times what the limit keeps.
    let fixture = include_str!("../benches/fixtures/stripe_payment_intent_1500.json");
    let template: Value = serde_json::from_str(fixture).expect("fixture");
    let sent = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let backlog = Arc::new(AtomicU64::new(0));
    let watching = {
        let (peak, data, backlog) = (peak.clone(), data.clone(), backlog.clone());
        let (client, base) = (common::client(), server.base.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(disk_usage(&data), Ordering::Relaxed);
                let metrics = common::metrics_at(&client, &base).await;
                let waiting = common::gauge(&metrics, "hookflow_queue_depth").unwrap_or(0);
                backlog.store(waiting, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    const EVENTS: u64 = 24_000;
    let client = common::client();
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, url, sent, template, backlog) = (
            client.clone(),
            server.url("/hooks/in"),
            sent.clone(),
            template.clone(),
            backlog.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                while backlog.load(Ordering::Relaxed) > MAX_BACKLOG {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= EVENTS {
                    return;
                }
                let body = stripe_event(&template, n);
                let resp = client.post(&url).json(&body).send().await.expect("sent");
                assert_eq!(resp.status().as_u16(), 202);
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    // Let the last runs finish and pruning catch up.
    common::wait_queue_drained(&client, &server.base, Duration::from_secs(60), "the load").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    watching.abort();
    let after = disk_usage(&data);
    let peak = peak.load(Ordering::Relaxed).max(after);
    let events = client
        .get(server.url("/api/events?limit=1"))
        .send()
        .await
        .expect("events")
        .json::<Value>()
        .await
        .expect("json");
    // The newest dedupe keys still hold: a sender's retry of the last
    // event is answered as a duplicate, not run again.
    common::post_duplicate(
        &client,
        &server.url("/hooks/in"),
        &stripe_event(&template, EVENTS - 1),
    )
    .await;
    let metrics = common::metrics_at(&client, &server.base).await;
    let gauge = |name| common::gauge(&metrics, name).map_or("?".to_string(), |b| b.to_string());
    let (records, dedupe) = (
        gauge("hookflow_store_record_bytes"),
        gauge("hookflow_store_dedupe_bytes"),
    );
    // The folder's size as the server reports it is `du`'s, every file
    // counted (the history's log alone is about half of it).
    let reported = common::gauge(&metrics, "hookflow_store_disk_bytes").expect("the disk gauge");
    let measured = disk_usage(&data);
    assert!(
        reported.abs_diff(measured) <= measured / 10,
        "hookflow_store_disk_bytes {reported}, du {measured}"
    );
    let log = server.log.clone();
    server.stop();
    println!("records {records} B, dedupe keys {dedupe} B");
    // The dedupe keys of 24,000 events within their window are more than
    // a sixteenth of 16 MiB: the oldest were dropped early, and said so.
    assert!(
        log.lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("dropped dedupe keys before their window ended")),
        "the server says it dropped dedupe keys early"
    );
    println!(
        "limit {LIMIT} B: data folder at most {peak} B during the load, {after} B after; newest kept {}",
        events["items"][0]["id"]
    );
    assert!(
        events["items"].as_array().is_some_and(|i| !i.is_empty()),
        "the newest history is kept: {events}"
    );
    assert!(
        peak <= LIMIT,
        "the data folder took {peak} bytes on disk (limit {LIMIT})"
    );
}

/// A 1.5 KB Stripe event, the `n`th: its own id (and so its own dedupe
/// key) and figures, as compressible as real traffic.
fn stripe_event(template: &Value, n: u64) -> Value {
    let mut body = template.clone();
    body["id"] = format!("evt_{n:024x}").into();
    body["data"]["object"]["amount"] = (1000 + n * 7919 % 100_000).into();
    body["data"]["object"]["id"] = format!("pi_{:032x}", n * 0x9E37_79B9).into();
    body
}

/// The store as the server opens it, with history packed after a second
/// (instead of a minute), so that packs are written and pruned here too.
fn sled_options() -> hookflow::store::sled::SledOptions {
    hookflow::store::sled::SledOptions {
        cache_mb: 32,
        pack_after: Duration::from_secs(1),
    }
}

/// The same promise with the store driven directly, no server: ingest a
/// Stripe-sized event with one run and a dedupe key, claim it, save it
/// twice, finish it, with pruning every 100 ms beside, as the server
/// prunes; with more events than the server test, as this is faster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_alone_stays_within_the_retention_size() {
    let total: u64 = 40_000;
    let limit = LIMIT;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let store = Store::open_sled(&data, sled_options()).expect("open");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = store.start(stop_rx).await.expect("start");
    let fixture = include_str!("../benches/fixtures/stripe_payment_intent_1500.json");
    let template: Value = serde_json::from_str(fixture).expect("fixture");
    let next = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let pruner = {
        let (store, next, peak, data) = (store.clone(), next.clone(), peak.clone(), data.clone());
        tokio::spawn(async move {
            loop {
                let now = Timestamp::now();
                store
                    .prune(Timestamp(now.0 - 3_600_000), limit, now)
                    .await
                    .expect("prune");
                peak.fetch_max(disk_usage(&data), Ordering::Relaxed);
                if next.load(Ordering::Relaxed) >= total {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (store, next, template) = (store.clone(), next.clone(), template.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                let e = common::records::event(EventId::generate(), stripe_event(&template, n));
                let r = common::records::run_of(&e, &[("shape", "transform")]);
                let dedupe = DedupeClaim {
                    workflow: "w".into(),
                    key: format!("evt_{n:024x}"),
                    expires_at: Timestamp(e.received_at.0 + 3 * 24 * 3_600_000),
                };
                store
                    .ingest(Ingest {
                        event: e,
                        stored_event: None,
                        runs: vec![r],
                        claims: vec![(0, dedupe)],
                    })
                    .await
                    .expect("ingest");
                for claim in store.claim(Timestamp::now(), 4).await.expect("claim") {
                    let Some((mut run, _event)) = store.load(&claim).await.expect("load") else {
                        store.release(claim, false);
                        continue;
                    };
                    run.status = RunStatus::Running;
                    store
                        .save(&claim, &run, Durability::Lazy)
                        .await
                        .expect("save");
                    run.steps[0].output = Some(json!({"id": n, "amount": 1234}));
                    store
                        .save(&claim, &run, Durability::Lazy)
                        .await
                        .expect("save");
                    run.status = RunStatus::Succeeded;
                    store
                        .finish(&claim, &run, Durability::Lazy)
                        .await
                        .expect("finish");
                    store.release(claim, false);
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    pruner.await.expect("pruner");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    store.close().await.expect("close");
    let peak = peak.load(Ordering::Relaxed).max(disk_usage(&data));
    println!("the store alone, {total} events: data folder at most {peak} B (limit {limit} B)");
    assert!(
        peak <= limit,
        "the data folder took {peak} bytes on disk (limit {limit})"
    );
}

/// A folder past the limit, here by the workflows' state (which
/// retention never prunes; history written under a larger limit is
/// pruned at once, but the log file shrinks only from its end): the server
/// reports the folder's real size in `/metrics`, tells the operator, and
/// paces new events at the floor rate. An event whose turn is further
/// than the longest wait is refused with 503 (nothing stored); every one
/// admitted is stored and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_past_the_limit_is_reported_and_paces_new_events() {
    let folder = SledFolder::new(
        &[("w.yaml", "trigger:\n  webhook: { path: /in }\nsteps:\n  - id: shape\n    transform: { script: '#{ n: event.n }' }\n")],
        &["--retention-size", "16MiB"],
    );
    {
        let store = Store::open_sled(&folder.data, sled_options()).expect("open");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let tasks = store.start(stop_rx).await.expect("start");
        // 1,300 state values of 16 KB of noise each: about 21 MB.
        let state = store.state();
        for n in 0..1_300u64 {
            let value = json!(common::records::noise(n, 16 * 1024));
            state.set("w", &format!("k{n}"), &value).expect("state");
        }
        // And some history, which retention prunes to its share.
        for n in 0..400u64 {
            let body = json!({ "n": n, "pad": common::records::noise(n, 16 * 1024) });
            let event = common::records::event(EventId::generate(), body);
            store
                .ingest(Ingest {
                    event,
                    stored_event: None,
                    runs: vec![],
                    claims: vec![],
                })
                .await
                .expect("ingest");
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        store.close().await.expect("close");
    }
    let before = disk_usage(&folder.data);
    assert!(before > LIMIT, "the history written takes {before} B");

    let server = BinServer::start(&folder.args(), &[]);
    let said = |text: &str| server.said(text);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(said("the data folder takes more than --retention-size on disk")
        && said("new events are paced"))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        said("the data folder takes more than --retention-size on disk"),
        "the server says the folder is past the limit"
    );
    assert!(
        said("new events are paced"),
        "the server says it paces new events"
    );
    let client = common::client();
    // The history is pruned to its share from start-up on, in batches: on a
    // slow machine that takes a moment after the log lines above.
    let budget = hookflow::store::sled::records_budget(LIMIT, 0);
    let metrics = common::metrics_once(&client, &server.base, Duration::from_secs(30), |m| {
        common::gauge(m, "hookflow_store_record_bytes").is_some_and(|r| r <= budget)
    })
    .await;
    let reported = common::gauge(&metrics, "hookflow_store_disk_bytes").expect("the disk gauge");
    let records = common::gauge(&metrics, "hookflow_store_record_bytes").expect("records");
    let pace = common::gauge(&metrics, "hookflow_store_ingest_pace_bytes").expect("the pace");
    println!(
        "before {before} B; reported {reported} B on disk, records {records} B, pace {pace} B/s"
    );
    // The history was pruned to its share; the folder cannot be.
    assert!(records <= budget, "records {records} B, budget {budget} B");
    assert!(reported > LIMIT, "reported {reported} B");
    // Past the limit: the floor, 256 KiB of new events a second.
    assert_eq!(pace, 256 * 1024, "{metrics}");

    // 60 events of 100 KB at once: 6 MB, more than twenty seconds at the
    // floor, so those whose turn is over ten seconds away are refused.
    let mut posts = Vec::new();
    for n in 0..60u64 {
        let (client, url) = (client.clone(), server.url("/hooks/in"));
        posts.push(tokio::spawn(async move {
            let body = json!({ "n": n, "pad": common::records::noise(n, 100_000) });
            let resp = client.post(&url).json(&body).send().await.expect("sent");
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (
                status,
                retry_after,
                resp.json::<Value>().await.expect("json"),
            )
        }));
    }
    let (mut stored, mut refused) = (Vec::new(), 0);
    for p in posts {
        let (status, retry_after, answer) = p.await.expect("post");
        match status {
            202 => stored.push(answer["event_id"].as_str().expect("id").to_string()),
            503 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("10"), "{answer}");
                let why = answer["error"].as_str().unwrap_or_default();
                assert!(why.contains("--retention-size"), "{answer}");
            }
            other => panic!("answered {other}: {answer}"),
        }
    }
    println!("{} stored, {refused} refused", stored.len());
    assert!(refused > 0, "events beyond the longest wait are refused");
    assert!(!stored.is_empty(), "events within it are stored");
    // Each one admitted was stored and ran (the records themselves may be
    // pruned by now: they are the oldest history, at 100 KB each).
    let (accepted, succeeded) = (
        "hookflow_events_total{workflow=\"w\",outcome=\"accepted\"}",
        "hookflow_runs_total{workflow=\"w\",status=\"succeeded\"}",
    );
    let metrics = common::metrics_once(&client, &server.base, Duration::from_secs(30), |m| {
        common::gauge(m, succeeded).unwrap_or(0) >= stored.len() as u64
    })
    .await;
    assert_eq!(
        common::gauge(&metrics, accepted),
        Some(stored.len() as u64),
        "{metrics}"
    );
    assert_eq!(
        common::gauge(&metrics, succeeded),
        Some(stored.len() as u64),
        "{metrics}"
    );
    server.stop();
}

/// A backlog that filled the folder leaves sled's log at the limit once
/// it has drained: the history pruned back to its share still holds the
/// log's last segments, and the file shrinks only from its end, so new
/// events stayed paced at the floor for good. The server now cuts the
/// history's share while the folder is held there (and says so); the log
/// then shrinks, new events are no longer paced, and the folder stays
/// within the limit after. Here the backlog builds behind an endpoint
/// that answers after five seconds, until new events are paced at the
/// floor; then the endpoint answers at once, and once the backlog has
/// drained, events arrive at a steady 100 a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_held_at_the_limit_shrinks_and_new_events_are_no_longer_paced() {
    let sink = Arc::new(tokio::sync::Mutex::new(common::Sink::start().await));
    let sink_url = sink.lock().await.url("/out");
    // What the sink received is let go of: tens of thousands of bodies.
    let draining = {
        let sink = sink.clone();
        tokio::spawn(async move {
            loop {
                while sink.lock().await.rx.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let wf = format!(
        "trigger:\n  webhook: {{ path: /in, dedupe: {{ key: '{{{{ $.event.id }}}}' }} }}\nsteps:\n  - id: deliver\n    http:\n      url: \"{sink_url}\"\n      body: \"{{{{ $.event.data.object.amount }}}}\"\n      timeout: 30s\n"
    );
    let limit = LIMIT.to_string();
    let folder = SledFolder::new(&[("w.yaml", &wf)], &["--retention-size", &limit]);
    let fixture = include_str!("../benches/fixtures/stripe_payment_intent_1500.json");
    let template: Value = serde_json::from_str(fixture).expect("fixture");
    let server = BinServer::start(&folder.args(), &[]);
    let said = |text: &str| server.said(text);
    let client = common::client();
    // The least records' target the server reports, all along.
    let least_target = Arc::new(AtomicU64::new(u64::MAX));
    let watching = {
        let (client, base, least) = (client.clone(), server.base.clone(), least_target.clone());
        tokio::spawn(async move {
            loop {
                let metrics = common::metrics_at(&client, &base).await;
                if let Some(t) = common::gauge(&metrics, "hookflow_store_record_target_bytes") {
                    least.fetch_min(t, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The backlog: runs wait on the slow endpoint while 8 senders post as
    // fast as they are let, until new events are paced at the floor (at
    // most 40,000 events, or a minute).
    sink.lock().await.set_delay(Some(Duration::from_secs(5)));
    let floor = 256 * 1024;
    let at_floor = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let watch_floor = {
        let (client, base, at_floor) = (client.clone(), server.base.clone(), at_floor.clone());
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let metrics = common::metrics_at(&client, &base).await;
                if common::gauge(&metrics, "hookflow_store_ingest_pace_bytes") == Some(floor) {
                    at_floor.store(true, Ordering::Relaxed);
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            at_floor.store(true, Ordering::Relaxed);
            false
        })
    };
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (client, url, template) = (client.clone(), server.url("/hooks/in"), template.clone());
        let (sent, at_floor) = (sent.clone(), at_floor.clone());
        senders.push(tokio::spawn(async move {
            while !at_floor.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= 40_000 {
                    return;
                }
                let resp = client
                    .post(&url)
                    .json(&stripe_event(&template, n))
                    .send()
                    .await
                    .expect("sent");
                let status = resp.status().as_u16();
                assert!(status == 202 || status == 503, "answered {status}");
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    let reached_floor = watch_floor.await.expect("watching");
    let metrics = common::metrics_at(&client, &server.base).await;
    let written = sent.load(Ordering::Relaxed);
    println!(
        "backlog: {written} events sent, {:?} runs waiting, folder {:?} B, pace {:?} B/s ({})",
        common::gauge(&metrics, "hookflow_queue_depth"),
        common::gauge(&metrics, "hookflow_store_disk_bytes"),
        common::gauge(&metrics, "hookflow_store_ingest_pace_bytes"),
        if reached_floor {
            "at the floor"
        } else {
            "not at the floor in a minute"
        },
    );
    // The endpoint answers at once: the backlog drains.
    sink.lock().await.set_delay(None);
    common::wait_queue_drained(
        &client,
        &server.base,
        Duration::from_secs(180),
        "the backlog",
    )
    .await;
    println!("drained: folder {} B", disk_usage(&folder.data));

    // Events at 100 a second, each on its own task (a paced one waits for
    // its turn, or is refused with 503), for at most two minutes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (accepted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sender = {
        let (client, url, template) = (common::client(), server.url("/hooks/in"), template.clone());
        let (stop, accepted, refused) = (stop.clone(), accepted.clone(), refused.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut posts = Vec::new();
            for n in written..written + 12_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let (client, url) = (client.clone(), url.clone());
                let body = stripe_event(&template, n);
                let (accepted, refused) = (accepted.clone(), refused.clone());
                posts.push(tokio::spawn(async move {
                    let resp = client.post(&url).json(&body).send().await.expect("sent");
                    match resp.status().as_u16() {
                        202 => accepted.fetch_add(1, Ordering::Relaxed),
                        503 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("answered {other}"),
                    };
                }));
            }
            for p in posts {
                p.await.expect("post");
            }
        })
    };
    // The folder's size, the pace and the records' target, every 200 ms,
    // until new events have not been paced for five seconds running.
    let started = std::time::Instant::now();
    let mut free_since = None::<std::time::Instant>;
    let mut peak_after = 0;
    let mut last_print = started;
    while started.elapsed() < Duration::from_secs(110) {
        let metrics = common::metrics_at(&client, &server.base).await;
        let disk = common::gauge(&metrics, "hookflow_store_disk_bytes").unwrap_or(0);
        let pace = common::gauge(&metrics, "hookflow_store_ingest_pace_bytes").unwrap_or(0);
        let target = common::gauge(&metrics, "hookflow_store_record_target_bytes");
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = std::time::Instant::now();
            println!(
                "{:>4.0} s: folder {disk} B, pace {pace} B/s, records {:?} of {target:?} B, {} accepted, {} refused",
                started.elapsed().as_secs_f64(),
                common::gauge(&metrics, "hookflow_store_record_bytes"),
                accepted.load(Ordering::Relaxed),
                refused.load(Ordering::Relaxed)
            );
        }
        // No pace (0) since the backlog took the folder to the floor: new
        // events are no longer paced, and the folder is measured from then.
        match (pace, free_since) {
            (0, None) => (free_since, peak_after) = (Some(std::time::Instant::now()), disk),
            (0, Some(_)) => peak_after = peak_after.max(disk),
            (_, Some(_)) => (free_since, peak_after) = (None, 0),
            (_, None) => {}
        }
        if free_since.is_some_and(|at| at.elapsed() >= Duration::from_secs(5)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Below the pacing zone, the history's share grows back to the whole
    // (by half every five seconds) while the events go on.
    let whole = "the history keeps its whole share of --retention-size again";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !said(whole) && std::time::Instant::now() < deadline {
        peak_after = peak_after.max(disk_usage(&folder.data));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("sender");
    watching.abort();
    let least_target = least_target.load(Ordering::Relaxed);
    let (accepted, refused) = (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    let log = server.log.lock().expect("log").join("\n");
    println!(
        "{:.0} s: {accepted} accepted, {refused} refused; least records' target {least_target} B",
        started.elapsed().as_secs_f64()
    );
    assert!(reached_floor, "the backlog took the folder to the floor");
    assert!(
        said("the history keeps less until the folder is back below the pacing zone"),
        "the server says it cuts the history's share:\n{log}"
    );
    let budget = hookflow::store::sled::records_budget(LIMIT, 0);
    assert!(
        least_target < budget / 2,
        "the records' target was cut: at least {least_target} B of {budget} B"
    );
    assert!(
        free_since.is_some(),
        "new events are no longer paced within two minutes:\n{log}"
    );
    assert!(said(whole), "the history's share is whole again:\n{log}");
    assert!(
        peak_after <= LIMIT,
        "the folder took {peak_after} B once no longer paced (limit {LIMIT} B)"
    );
    assert!(accepted > 0, "events were stored");
    server.stop();
    draining.abort();
}

/// Below 16 MiB, sled's segments in flight alone would come close to the
/// limit: `serve` says so and exits 2 instead of breaking the promise.
#[test]
fn serve_refuses_a_retention_size_sled_cannot_keep() {
    let (status, err) = common::serve_refused(&["--retention-size", "8MiB"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--retention-size") && err.contains("16 MiB"),
        "{err}"
    );
}
