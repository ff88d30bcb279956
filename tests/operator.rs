//! What an operator reads must be true: the queue gauge counts every run
//! that is not finished, and one undecodable record in the store never
//! stops start-up, a listing or pruning, and is counted and logged once
//! however often it is read past (sled: its records are damaged in the
//! store's own files; PostgreSQL: in its tables).

mod common;

use common::{gauge, with_store, write_files, Backend, BinServer, Sink, SledFolder, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

both!(
    the_queue_gauge_counts_every_waiting_run,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_queue_gauge_counts_every_waiting_run(backend: Backend) {
    let sink = Sink::start().await;
    // One run at a time, each held by the sink for a while: a backlog.
    sink.set_delay(Some(Duration::from_millis(400)));
    let wf = format!(
        "trigger:\n  webhook: {{ path: /in }}\nsteps:\n  - id: deliver\n    http: {{ url: \"{}\" }}\n",
        sink.url("/out")
    );
    let server = TestServer::start_on(backend, &[("w.yaml", &wf)], &[], |c| c.workers = 1).await;
    let mut runs = Vec::new();
    for n in 0..5 {
        let (code, answer) = server.post_json("/hooks/in", &json!({ "n": n })).await;
        assert_eq!(code, 202, "{answer}");
        runs.push(answer["runs"][0].as_str().expect("run").to_string());
    }
    // Right after the posts, four or five runs wait or run.
    let text = server.get_text("/metrics").await;
    let depth = gauge(&text, "hookflow_queue_depth").expect("the gauge");
    assert!(
        depth >= 4,
        "a backlog of fresh runs must show: {depth}\n{text}"
    );
    for id in &runs {
        let run = server.wait_run(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let text = server.get_text("/metrics").await;
    assert_eq!(gauge(&text, "hookflow_queue_depth"), Some(0), "{text}");
    // sled counts the bytes of its records (what retention by size weighs):
    // five events and five finished runs take some hundreds of bytes at
    // least. PostgreSQL leaves sizes to the database and shows no gauge.
    let records = gauge(&text, "hookflow_store_record_bytes");
    match backend {
        Backend::Sled => assert!(records.is_some_and(|b| b >= 500), "{text}"),
        Backend::Postgres => assert_eq!(records, None, "{text}"),
    }
    server.stop().await;
}

/// An id of the given type made at `ms` (as the store's ids are: time in
/// the first 16 hex digits).
fn id_at(prefix: &str, ms: u64) -> String {
    format!("{prefix}{:016x}{:016x}", ms << 16, 0xfeed_u64)
}

both!(
    an_unreadable_record_is_skipped_counted_and_pruned,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn an_unreadable_record_is_skipped_counted_and_pruned(backend: Backend) {
    let sink = Sink::start().await;
    let wf = format!(
        "trigger:\n  webhook: {{ path: /in }}\nsteps:\n  - id: deliver\n    http: {{ url: \"{}\" }}\n",
        sink.url("/out")
    );
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("workflows"), &[("w.yaml", &wf)]);
    let store = backend.store_args(dir.path());
    let workflows = dir.path().join("workflows").display().to_string();
    let args = with_store(&["--workflows", &workflows], &store);
    let client = common::client();
    let server = BinServer::start(&args, &[]);
    let answer = common::post_at(&client, &server.url("/hooks/in"), &json!({"n": 1})).await;
    let good_run = answer["runs"][0].as_str().expect("run").to_string();
    common::wait_run_at(&client, &server.base, &good_run).await;
    server.stop();

    // Damage the store while it is closed: a run record among the fresh
    // runs, and an old event (pruning reaches it).
    let now = hookflow::record::Timestamp::now().0;
    let bad_run = id_at("run_", now + 1);
    let bad_event = id_at("evt_", now - 2 * 3600 * 1000);
    damage(backend, &store, &bad_run, &bad_event);

    // First without pruning in reach (the old event is 2 h old, retention
    // is 7 days), so what a read sees does not race the first prune.
    let server = BinServer::start(&args, &[]);
    // It serves: the damaged records are skipped in lists.
    let runs = common::get_at(&client, &server.url("/api/runs")).await;
    let ids: Vec<&str> = runs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec![good_run.as_str()], "{runs}");
    let events = common::get_at(&client, &server.url("/api/events")).await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
    // New events still run.
    let answer = common::post_at(&client, &server.url("/hooks/in"), &json!({"n": 2})).await;
    let run = common::wait_run_at(
        &client,
        &server.base,
        answer["runs"][0].as_str().expect("run"),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // Read again (a UI that polls): still one record each, counted and
    // logged once, and the old one pruned by the age its id tells.
    let runs = common::get_at(&client, &server.url("/api/runs")).await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(2), "{runs}");
    let events = common::get_at(&client, &server.url("/api/events")).await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(2),
        "{events}"
    );
    let text = common::metrics_at(&client, &server.base).await;
    let log = server.log.lock().expect("log").join("\n");
    assert_eq!(
        log.matches(&format!("key=\"{bad_run}\"")).count(),
        1,
        "logged once:\n{log}"
    );
    let counted = gauge(&text, "hookflow_store_unreadable_records_total");
    assert_eq!(counted, Some(2), "each record counted once:\n{text}\n{log}");
    server.stop();

    // Then with a retention that reaches it: the old event is pruned by the
    // age its id tells, though its record cannot be read.
    let mut args = args.clone();
    args.extend(["--retention", "1h", "--prune-interval", "200ms"]);
    let server = BinServer::start(&args, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log
        .lock()
        .expect("log")
        .join("\n")
        .contains("pruned old history")
    {
        assert!(
            Instant::now() < deadline,
            "not pruned:\n{}",
            server.log.lock().expect("log").join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let event: Value = common::get_at(&client, &server.url("/api/events")).await;
    assert_eq!(event["items"].as_array().map(Vec::len), Some(2), "{event}");
    server.stop();
    assert!(
        !holds_event(backend, &store, &bad_event),
        "the unreadable old event was pruned"
    );
}

/// Write an undecodable run `run` (newer than every other) and an
/// undecodable event `event` into a closed store, each where its backend
/// keeps it: sled, raw bytes in its `runs` and `events` trees; PostgreSQL,
/// rows (copied from the real ones, so every other column is valid) whose
/// record column is not a record.
fn damage(backend: Backend, store: &[String], run: &str, event: &str) {
    match backend {
        Backend::Sled => {
            let db = sled::open(&store[1]).expect("the store opens");
            db.open_tree("runs")
                .expect("runs")
                .insert(run.as_bytes(), &b"\x00\x01 not a record"[..])
                .expect("write");
            db.open_tree("events")
                .expect("events")
                .insert(event.as_bytes(), &b"{\"id\": 7"[..])
                .expect("write");
            db.flush().expect("flush");
        }
        Backend::Postgres => {
            let cluster = common::pg::cluster().expect("PostgreSQL runs");
            cluster.psql(
                &store[1],
                &format!(
                    "INSERT INTO hookflow.runs (id, event_id, workflow, status, created_at, bytes, plan, head)
                     SELECT '{run}', event_id, workflow, status, created_at, bytes, plan, 'not a record'
                       FROM hookflow.runs LIMIT 1"
                ),
            );
            cluster.psql(
                &store[1],
                &format!(
                    "INSERT INTO hookflow.events (id, received_at, outcome, workflows, bytes, record)
                     SELECT '{event}', received_at - 7200000, outcome, workflows, bytes, '{{\"id\": 7'
                       FROM hookflow.events LIMIT 1"
                ),
            );
        }
    }
}

/// Whether the closed store still holds event `id`, read the backend's
/// own way (sled: its `events` tree; PostgreSQL: the `events` table).
fn holds_event(backend: Backend, store: &[String], id: &str) -> bool {
    match backend {
        Backend::Sled => sled::open(&store[1])
            .expect("the store opens")
            .open_tree("events")
            .expect("events")
            .get(id.as_bytes())
            .expect("read")
            .is_some(),
        Backend::Postgres => {
            common::pg::cluster().expect("PostgreSQL runs").psql(
                &store[1],
                &format!("SELECT count(*) FROM hookflow.events WHERE id = '{id}'"),
            ) != "0"
        }
    }
}

/// Dedupe keys written by an earlier version (in the history's database,
/// the key's text, the entry as JSON) still hold after an upgrade to hashed
/// keys and compact entries in a database of their own: they are moved
/// there at start, and a sender's redelivery within the window is answered
/// as a duplicate.
/// sled only: the entry is planted in the store's own files; PostgreSQL's
/// dedupe table did not change form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_key_stored_in_the_earlier_form_still_holds_sled() {
    let wf = "name: w\ntrigger:\n  webhook:\n    path: /in\n    dedupe: { key: '{{ $.event.id }}' }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let folder = SledFolder::new(&[("w.yaml", wf)], &[]);
    let (data, args) = (&folder.data, folder.args());
    let client = common::client();
    let server = BinServer::start(&args, &[]);
    let first = common::post_at(&client, &server.url("/hooks/in"), &json!({"id": "a"})).await;
    let run = first["runs"][0].as_str().expect("a run").to_string();
    common::wait_run_at(&client, &server.base, &run).await;
    server.stop();

    // Rewrite the key as an earlier version stored it.
    {
        let keys = sled::open(data.join("dedupe")).expect("the dedupe keys open");
        // One bucket holds the key (which keys expire when is counted in
        // memory: no index tree).
        let buckets = keys.open_tree("buckets").expect("tree");
        assert_eq!(buckets.len(), 1, "one key was stored");
        buckets.clear().expect("cleared");
        assert!(!keys.tree_names().iter().any(|n| &n[..] == b"expiring"));
        keys.flush().expect("flush");
        let db = sled::open(data).expect("the store opens");
        let dedupe = db.open_tree("dedupe").expect("dedupe tree");
        let entry = hookflow::store::DedupeEntry {
            event_id: hookflow::record::EventId(first["event_id"].as_str().expect("id").into()),
            runs: vec![hookflow::record::RunId(run.clone())],
            expires_at: hookflow::record::Timestamp(
                hookflow::record::Timestamp::now().0 + 3_600_000,
            ),
        };
        dedupe
            .insert(b"w\0a", serde_json::to_vec(&entry).expect("json"))
            .expect("written");
        db.flush().expect("flush");
    }

    let server = BinServer::start(&args, &[]);
    let again =
        common::post_duplicate(&client, &server.url("/hooks/in"), &json!({"id": "a"})).await;
    assert_eq!(again["event_id"], first["event_id"], "{again}");
    assert_eq!(again["runs"], json!([run]), "{again}");
    // Another key is new, and stored in the current form.
    let other = common::post_at(&client, &server.url("/hooks/in"), &json!({"id": "b"})).await;
    assert_eq!(other["runs"].as_array().map(Vec::len), Some(1), "{other}");
    let resp = client
        .post(server.url("/hooks/in"))
        .json(&json!({"id": "b"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200, "and holds as well");
    server.stop();
    let db = sled::open(data).expect("the store opens");
    assert!(
        !db.tree_names().iter().any(|n| &n[..] == b"dedupe"),
        "the earlier tree is gone once its keys moved"
    );
}

/// The byte count retention by size weighs restarts after a crash from its
/// last save, so records replaced or removed since can take it below zero.
/// Read as a huge unsigned number, that once made pruning by size delete
/// every finished event at the next start, acknowledged ones included
/// (the crash-point test caught it at `step.saved`). Here the saved count
/// is set far below zero: the history must stay. sled only: the count is
/// the sled store's; PostgreSQL asks the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_count_below_zero_after_a_crash_prunes_nothing_sled() {
    let wf =
        "trigger:\n  webhook: { path: /in }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let folder = SledFolder::new(&[("w.yaml", wf)], &["--prune-interval", "100ms"]);
    let (data, args) = (&folder.data, folder.args());
    let client = common::client();
    let server = BinServer::start(&args, &[]);
    server.stop();
    {
        let db = sled::open(data).expect("the store opens");
        let meta = db.open_tree("meta").expect("meta tree");
        meta.insert("live_bytes", &(-10_000_000i64).to_le_bytes()[..])
            .expect("written");
        db.flush().expect("flush");
    }
    let server = BinServer::start(&args, &[]);
    let answer = common::post_at(&client, &server.url("/hooks/in"), &json!({"n": 1})).await;
    let run = answer["runs"][0].as_str().expect("a run").to_string();
    common::wait_run_at(&client, &server.base, &run).await;
    // Several prune passes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let event_id = answer["event_id"].as_str().expect("event id");
    let event = common::get_at(&client, &server.url(&format!("/api/events/{event_id}"))).await;
    let log = server.log.lock().expect("log").join("\n");
    assert_eq!(
        event["id"], event_id,
        "the event was pruned: {event}\n{log}"
    );
    assert!(!log.contains("pruned old history"), "{log}");
    server.stop();
}

/// History written in the records' earlier form (compressed against the
/// first dictionary, an event's head inside its header) reads back the
/// same after an upgrade: events and runs as the API showed them, a
/// replay of an old run, and a duplicate answered from an old event.
/// sled only: the records are planted in the store's own files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_stored_in_the_earlier_record_form_still_reads_sled() {
    use hookflow::store::sled::codec;
    let wf = "name: w\ntrigger:\n  webhook:\n    path: /in\n    dedupe: { key: '{{ $.event.id }}' }\nsteps:\n  - id: s\n    transform: { script: 'event.n * 2' }\n";
    let folder = SledFolder::new(&[("w.yaml", wf)], &[]);
    let (data, args) = (&folder.data, folder.args());
    let client = common::client();
    let server = BinServer::start(&args, &[]);
    let mut shown = Vec::new();
    for n in 0..3 {
        let answer = common::post_at(
            &client,
            &server.url("/hooks/in"),
            &json!({"id": format!("e{n}"), "n": n}),
        )
        .await;
        let run = answer["runs"][0].as_str().expect("a run").to_string();
        let run = common::wait_run_at(&client, &server.base, &run).await;
        assert_eq!(run["steps"][0]["output"], json!(n * 2), "{run}");
        let event_id = answer["event_id"].as_str().expect("event id").to_string();
        let event = common::get_at(&client, &server.url(&format!("/api/events/{event_id}"))).await;
        shown.push((event, run));
    }
    server.stop();

    // Every event and run rewritten as the version before wrote it.
    {
        let db = sled::open(data).expect("the store opens");
        let mut c =
            zstd::bulk::Compressor::with_dictionary(1, codec::DICTIONARY_1).expect("a compressor");
        let mut earlier = |tag: u8, plain: &[u8]| {
            let mut out = vec![tag];
            out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
            out.extend_from_slice(&c.compress(plain).expect("compresses"));
            out
        };
        let (mut events, mut runs) = (0, 0);
        let tree = db.open_tree("events").expect("events");
        for entry in tree.iter() {
            let (k, v) = entry.expect("reads");
            let key = String::from_utf8_lossy(&k).into_owned();
            let head = codec::event_head(&key, &v).expect("a head");
            let plain = codec::payload(&key, &v).expect("a record");
            let len = u32::from_le_bytes(plain[..4].try_into().expect("four bytes")) as usize;
            let mut header: Value = serde_json::from_slice(&plain[4..4 + len]).expect("json");
            header["outcome"] = serde_json::to_value(head.outcome).expect("json");
            header["runs"] = serde_json::to_value(&head.runs).expect("json");
            header["dedupe"] = serde_json::to_value(&head.dedupe).expect("json");
            let header = serde_json::to_vec(&header).expect("json");
            let mut old = (header.len() as u32).to_le_bytes().to_vec();
            old.extend_from_slice(&header);
            old.extend_from_slice(&plain[4 + len..]);
            tree.insert(&k, earlier(codec::EVENT_D1, &old))
                .expect("written");
            events += 1;
        }
        let tree = db.open_tree("runs").expect("runs");
        for entry in tree.iter() {
            let (k, v) = entry.expect("reads");
            let plain = codec::payload(&String::from_utf8_lossy(&k), &v).expect("a record");
            tree.insert(&k, earlier(codec::RUN_D1, &plain))
                .expect("written");
            runs += 1;
        }
        assert_eq!((events, runs), (3, 3), "the records were all found");
        db.flush().expect("flush");
    }

    let server = BinServer::start(&args, &[]);
    for (event, run) in &shown {
        let id = event["id"].as_str().expect("id");
        let again = common::get_at(&client, &server.url(&format!("/api/events/{id}"))).await;
        assert_eq!(&again, event, "the event reads as before");
        let id = run["id"].as_str().expect("id");
        let again = common::get_at(&client, &server.url(&format!("/api/runs/{id}"))).await;
        assert_eq!(&again, run, "the run reads as before");
    }
    // A redelivery of an old event is its duplicate.
    let again =
        common::post_duplicate(&client, &server.url("/hooks/in"), &json!({"id": "e1"})).await;
    assert_eq!(again["event_id"], shown[1].0["id"], "{again}");
    // An old run replays, and is written again in the current form.
    let old = shown[2].1["id"].as_str().expect("id");
    let replay = common::replay_at(&client, &server.base, old, &json!({})).await;
    let replayed = common::wait_run_at(&client, &server.base, &replay).await;
    assert_eq!(replayed["status"], "succeeded", "{replayed}");
    assert_eq!(replayed["steps"][0]["output"], json!(4));
    let old_run = common::get_at(&client, &server.url(&format!("/api/runs/{old}"))).await;
    assert_eq!(old_run["replays"], json!([replay]), "{old_run}");
    server.stop();
}
