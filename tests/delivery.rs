//! Delivery through the real server and a real sink: retries (Retry-After,
//! timeouts, exhaustion), a slow request shown as running, dedupe, replay
//! in every mode, bulk replay, retention pruning, metrics, and what an
//! interrupted ingest leaves.

mod common;

use common::{Backend, Sink, TestServer};
use hookflow::record::Timestamp;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

fn ts(v: &Value) -> u64 {
    Timestamp::parse(v.as_str().expect("timestamp"))
        .expect("valid timestamp")
        .0
}

fn forward(sink: &Sink, extra: &str) -> String {
    format!(
        "trigger:\n  webhook: {{ path: /in }}\nsteps:\n  - id: shape\n    transform:\n      script: '#{{ n: event.n }}'\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.steps.shape }}}}\"\n{extra}",
        sink.url("/out")
    )
}

both!(retry_after_is_honoured_and_the_wait_is_visible);
async fn retry_after_is_honoured_and_the_wait_is_visible(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = forward(&sink, "      retry: { attempts: 3, backoff: 10ms }\n");
    let server = TestServer::start_on(backend, &[("w.yaml", &wf)], &[], |_| {}).await;
    sink.answer(
        "/out",
        vec![(429, vec![("retry-after".into(), "1".into())], "{}".into())],
    );
    let (_, answer) = server.post_json("/hooks/in", &json!({"n": 1})).await;
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let waiting = server.wait_run_status(&run_id, &["retrying"]).await;
    let deliver = step(&waiting, "deliver");
    assert_eq!(deliver["status"], "retrying");
    assert_eq!(deliver["error"], "HTTP 429");
    assert_eq!(waiting["attempt"], 1);
    let first_start = ts(&deliver["attempts"][0]["started_at"]);
    let next = ts(&waiting["next_attempt_at"]);
    assert!(
        next >= first_start + 1000,
        "Retry-After: 1 means at least a second later"
    );
    let done = server.wait_run(&run_id).await;
    assert_eq!(done["status"], "succeeded");
    let second = &step(&done, "deliver")["attempts"][1];
    assert!(ts(&second["started_at"]) >= next);
    let a = sink.next().await;
    let b = sink.next().await;
    assert_eq!(a.headers["idempotency-key"], b.headers["idempotency-key"]);
    assert_eq!(a.headers["idempotency-key"], format!("{run_id}.deliver"));
    server.stop().await;
}

both!(timeouts_are_retried_then_fail);
async fn timeouts_are_retried_then_fail(backend: Backend) {
    let sink = Sink::start().await;
    sink.set_delay(Some(Duration::from_millis(400)));
    let wf = forward(
        &sink,
        "      timeout: 50ms\n      retry: { attempts: 2, backoff: 10ms }\n",
    );
    let server = TestServer::start_on(backend, &[("w.yaml", &wf)], &[], |_| {}).await;
    let run = server.run_once("/hooks/in", &json!({"n": 1})).await;
    assert_eq!(run["status"], "failed");
    let deliver = step(&run, "deliver");
    assert_eq!(deliver["attempts"].as_array().map(Vec::len), Some(2));
    assert_eq!(deliver["attempts"][0]["error"], "timed out after 50ms");
    assert_eq!(
        deliver["error"],
        "timed out after 50ms (gave up after 2 attempts)"
    );
    assert_eq!(run["error"], deliver["error"]);
    // Dead letters are listed for replay.
    let (_, failed) = server.get("/api/runs?status=failed").await;
    assert_eq!(failed["items"][0]["id"], run["id"]);
    server.stop().await;
}

both!(a_slow_request_shows_its_run_running_with_the_steps_before_it);
async fn a_slow_request_shows_its_run_running_with_the_steps_before_it(backend: Backend) {
    let mut sink = Sink::start().await;
    sink.set_delay(Some(Duration::from_millis(1500)));
    let server =
        TestServer::start_on(backend, &[("w.yaml", &forward(&sink, ""))], &[], |_| {}).await;
    let (code, answer) = server.post_json("/hooks/in", &json!({"n": 7})).await;
    assert_eq!(code, 202, "{answer}");
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    // Saved while the request is still out: the transform's result is
    // there, the request is under way. (The run is saved as `running`
    // before the request too, with the request still `pending`: wait for
    // the save made while it is out, within the sink's 1.5 s.)
    let deadline = std::time::Instant::now() + Duration::from_millis(1400);
    let running = loop {
        let run = server.wait_run_status(&run_id, &["running"]).await;
        if step(&run, "deliver")["status"] != "pending" || std::time::Instant::now() > deadline {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let shape = step(&running, "shape");
    assert_eq!(shape["status"], "succeeded", "{running}");
    assert_eq!(shape["output"], json!({"n": 7}));
    let deliver = step(&running, "deliver");
    assert_eq!(deliver["status"], "running", "{running}");
    assert!(deliver["started_at"].is_string(), "{running}");
    assert!(running["started_at"].is_string(), "{running}");
    let done = server.wait_run(&run_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        step(&done, "deliver")["attempts"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(sink.next().await.json(), json!({"n": 7}));
    server.stop().await;
}

both!(dedupe_answers_repeats_within_the_window);
async fn dedupe_answers_repeats_within_the_window(backend: Backend) {
    let wf = "trigger:\n  webhook:\n    path: /d\n    dedupe: { key: \"{{ $.request.headers['webhook-id'] ?? $.event.id }}\", window: 700ms }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let server = TestServer::start_on(backend, &[("d.yaml", wf)], &[], |_| {}).await;
    let (code, first) = server.post_json("/hooks/d", &json!({"id": "evt_1"})).await;
    assert_eq!(code, 202);
    let (code, again) = server
        .post_json("/hooks/d", &json!({"id": "evt_1", "retry": true}))
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        again,
        json!({"event_id": first["event_id"], "duplicate": true, "runs": first["runs"]})
    );
    // The header key wins over the body id.
    let resp = server
        .client
        .post(server.url("/hooks/d"))
        .header("webhook-id", "msg_9")
        .json(&json!({"id": "evt_1"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let (code, _) = server.post_json("/hooks/d", &json!({"id": "evt_2"})).await;
    assert_eq!(code, 202);
    // No key at all: nothing to dedupe on.
    assert_eq!(server.post_json("/hooks/d", &json!({})).await.0, 202);
    assert_eq!(server.post_json("/hooks/d", &json!({})).await.0, 202);
    // Nothing new was stored for the duplicate.
    let (_, events) = server.get("/api/events?limit=100").await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(5));
    // After the window the key is free again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (code, later) = server.post_json("/hooks/d", &json!({"id": "evt_1"})).await;
    assert_eq!(code, 202);
    assert_ne!(later["event_id"], first["event_id"]);
    server.stop().await;
}

both!(concurrent_duplicates_create_one_run);
async fn concurrent_duplicates_create_one_run(backend: Backend) {
    let wf = "trigger:\n  webhook:\n    path: /d\n    dedupe: { key: \"{{ $.event.id }}\" }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let server = TestServer::start_on(backend, &[("d.yaml", wf)], &[], |_| {}).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = server.client.clone();
        let url = server.url("/hooks/d");
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"id": "same"}))
                .send()
                .await
                .expect("sent");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }));
    }
    let mut accepted = 0;
    let mut event_ids = std::collections::HashSet::new();
    for t in tasks {
        let (code, body) = t.await.expect("task");
        assert!(code == 202 || code == 200, "{code} {body}");
        accepted += usize::from(code == 202);
        event_ids.insert(body["event_id"].as_str().expect("id").to_string());
    }
    assert_eq!(accepted, 1);
    assert_eq!(event_ids.len(), 1, "every answer names the first event");
    server.stop().await;
}

both!(replay_from_start_and_from_the_failed_step);
async fn replay_from_start_and_from_the_failed_step(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = format!(
        "trigger:\n  webhook: {{ path: /r }}\nsteps:\n  - id: count\n    transform:\n      script: |\n        let n = (state_get(\"n\") ?? 0) + 1;\n        state_set(\"n\", n);\n        n\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: {{ n: \"{{{{ $.steps.count }}}}\" }}\n      retry: {{ attempts: 1 }}\n",
        sink.url("/out")
    );
    let server = TestServer::start_on(backend, &[("r.yaml", &wf)], &[], |_| {}).await;
    sink.answer("/out", vec![(500, vec![], "{}".into())]);
    let original = server.run_once("/hooks/r", &json!({})).await;
    assert_eq!(original["status"], "failed");
    let first_key = sink.next().await.headers["idempotency-key"].clone();
    let oid = original["id"].as_str().expect("id").to_string();

    // From the failed step: `count` is reused (state not bumped again).
    let rid = server.replay(&oid, &json!({"from": "failed_step"})).await;
    let replayed = server.wait_run(&rid).await;
    assert_eq!(replayed["status"], "succeeded");
    assert_eq!(replayed["replay_of"], oid.as_str());
    assert_eq!(
        step(&replayed, "count"),
        step(&original, "count"),
        "the earlier step's record is reused as it was"
    );
    let got = sink.next().await;
    assert_eq!(got.json(), json!({"n": 1}));
    assert_ne!(
        got.headers["idempotency-key"], first_key,
        "a replay carries a fresh key"
    );
    assert_eq!(got.headers["idempotency-key"], format!("{rid}.deliver"));
    let (_, original_now) = server.get(&format!("/api/runs/{oid}")).await;
    assert_eq!(original_now["replays"], json!([rid]));
    let (_, event) = server
        .get(&format!(
            "/api/events/{}",
            original["event_id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(event["runs"].as_array().map(Vec::len), Some(2));

    // From the start (the default): every step runs again.
    let resp = server
        .client
        .post(server.url(&format!("/api/runs/{oid}/replay")))
        // Without a token, a POST to /api must say it is JSON (SPEC §8).
        .header("content-type", "application/json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    let rid2 = resp.json::<Value>().await.expect("json")["run_id"]
        .as_str()
        .expect("id")
        .to_string();
    let again = server.wait_run(&rid2).await;
    assert_eq!(step(&again, "count")["output"], 2);
    assert_eq!(sink.next().await.json(), json!({"n": 2}));

    // A succeeded run has no failed step; a bad option is refused.
    let r = server
        .client
        .post(server.url(&format!("/api/runs/{rid2}/replay")))
        .json(&json!({"from": "failed_step"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 409);
    let r = server
        .client
        .post(server.url(&format!("/api/runs/{rid2}/replay")))
        .json(&json!({"from": "middle"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 400);
    let r = server
        .client
        .post(server.url("/api/runs/run_missing/replay"))
        // Without a token, a POST to /api must say it is JSON (SPEC §8).
        .header("content-type", "application/json")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 404);
    server.stop().await;
}

both!(replay_on_the_recorded_or_the_current_version);
async fn replay_on_the_recorded_or_the_current_version(backend: Backend) {
    let mut sink = Sink::start().await;
    let v1 = format!("name: v\ntrigger:\n  webhook: {{ path: /v }}\nsteps:\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: {{ version: 1 }}\n      retry: {{ attempts: 1 }}\n", sink.url("/out"));
    let server = TestServer::start_on(backend, &[("v.yaml", &v1)], &[], |_| {}).await;
    sink.answer("/out", vec![(503, vec![], "{}".into())]);
    let original = server.run_once("/hooks/v", &json!({})).await;
    assert_eq!(original["status"], "failed");
    sink.next().await;
    let oid = original["id"].as_str().expect("id").to_string();
    let v2 = v1.replace("version: 1", "version: 2");
    let server = server.restart(&[("v.yaml", &v2)]).await;

    for (version, expected) in [("recorded", 1), ("current", 2)] {
        let resp = server
            .client
            .post(server.url(&format!("/api/runs/{oid}/replay")))
            .json(&json!({"version": version}))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 201, "{version}");
        let rid = resp.json::<Value>().await.expect("json")["run_id"]
            .as_str()
            .expect("id")
            .to_string();
        let run = server.wait_run(&rid).await;
        assert_eq!(run["status"], "succeeded");
        assert_eq!(
            sink.next().await.json(),
            json!({"version": expected}),
            "{version}"
        );
        let expected_version = if version == "recorded" {
            original["workflow_version"].clone()
        } else {
            json!(null)
        };
        if version == "recorded" {
            assert_eq!(run["workflow_version"], expected_version);
        } else {
            assert_ne!(run["workflow_version"], original["workflow_version"]);
        }
    }
    server.stop().await;
}

both!(bulk_replay_of_failed_runs);
async fn bulk_replay_of_failed_runs(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = forward(&sink, "      retry: { attempts: 1 }\n");
    let server = TestServer::start_on(backend, &[("w.yaml", &wf)], &[], |_| {}).await;
    sink.answer(
        "/out",
        vec![
            (500, vec![], "{}".into()),
            (500, vec![], "{}".into()),
            (500, vec![], "{}".into()),
        ],
    );
    let mut originals = Vec::new();
    for n in 0..3 {
        let run = server.run_once("/hooks/in", &json!({"n": n})).await;
        assert_eq!(run["status"], "failed");
        originals.push(run["id"].clone());
        sink.next().await;
    }
    let ok = server.run_once("/hooks/in", &json!({"n": 9})).await;
    assert_eq!(ok["status"], "succeeded");
    sink.next().await;
    let resp = server
        .client
        .post(server.url("/api/runs/replay?workflow=w&status=failed"))
        // Without a token, a POST to /api must say it is JSON (SPEC §8).
        .header("content-type", "application/json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.expect("json");
    let ids = body["run_ids"].as_array().expect("ids").clone();
    assert_eq!(ids.len(), 3, "{body}");
    let mut seen = Vec::new();
    for id in &ids {
        let run = server.wait_run(id.as_str().expect("id")).await;
        assert_eq!(run["status"], "succeeded");
        assert!(originals.contains(&run["replay_of"]));
        seen.push(sink.next().await.json()["n"].as_i64().expect("n"));
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
    server.stop().await;
}

both!(retention_prunes_by_age_and_by_size);
async fn retention_prunes_by_age_and_by_size(backend: Backend) {
    let wf = "trigger:\n  webhook: { path: /p }\nsteps:\n  - id: s\n    transform: { script: 'event.n' }\n";
    let server = TestServer::start_on(backend, &[("p.yaml", wf)], &[], |c| {
        c.retention = Duration::from_millis(1500);
        c.prune_interval = Duration::from_millis(100);
    })
    .await;
    let run = server.run_once("/hooks/p", &json!({"n": 1})).await;
    let (run_id, event_id) = (
        run["id"].as_str().expect("id").to_string(),
        run["event_id"].as_str().expect("id").to_string(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.get(&format!("/api/runs/{run_id}")).await.0 != 404 {
        assert!(Instant::now() < deadline, "old run was never pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.get(&format!("/api/events/{event_id}")).await.0, 404);
    server.stop().await;

    // sled takes no limit below 16 MiB (its log's fixed part), and keeps
    // about a sixth of what is left for records: there, bigger events.
    let (limit, pad) = match backend {
        Backend::Sled => (16 << 20, 100_000),
        Backend::Postgres => (40 * 1024, 4_000),
    };
    let server = TestServer::start_on(backend, &[("p.yaml", wf)], &[], |c| {
        c.retention_size = limit;
        c.prune_interval = Duration::from_millis(100);
    })
    .await;
    let mut runs = Vec::new();
    for n in 0..30 {
        runs.push(
            server
                .run_once(
                    "/hooks/p",
                    &json!({"n": n, "pad": common::records::noise(n, pad)}),
                )
                .await["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.get(&format!("/api/runs/{}", runs[0])).await.0 != 404 {
        assert!(
            Instant::now() < deadline,
            "oldest run was never pruned by size"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.get(&format!("/api/runs/{}", runs[29])).await.0,
        200,
        "the newest stays"
    );
    let (_, page) = server.get("/api/events?limit=500").await;
    let kept = page["items"].as_array().map(Vec::len).unwrap_or(0);
    assert!(kept < 30 && kept > 0, "kept {kept}");
    server.stop().await;
}

both!(metrics_count_events_runs_steps_and_attempts);
async fn metrics_count_events_runs_steps_and_attempts(backend: Backend) {
    let sink = Sink::start().await;
    let wf = forward(&sink, "      retry: { attempts: 2, backoff: 10ms }\n");
    let server = TestServer::start_on(backend, &[("w.yaml", &wf)], &[], |_| {}).await;
    sink.answer("/out", vec![(503, vec![], "{}".into())]);
    server.run_once("/hooks/in", &json!({"n": 1})).await;
    server.post_json("/hooks/nowhere", &json!({})).await;
    let expected = [
        "hookflow_events_total{workflow=\"w\",outcome=\"accepted\"} 1",
        "hookflow_runs_total{workflow=\"w\",status=\"succeeded\"} 1",
        "hookflow_outbound_attempts_total{workflow=\"w\",class=\"5xx\"} 1",
        "hookflow_outbound_attempts_total{workflow=\"w\",class=\"2xx\"} 1",
        "hookflow_step_duration_seconds_count{workflow=\"w\",kind=\"transform\"} 1",
        "hookflow_step_duration_seconds_count{workflow=\"w\",kind=\"http\"} 2",
        "hookflow_queue_depth 0",
        "hookflow_retry_backlog 0",
    ];
    // The run shows as succeeded when its final record is written; its
    // queue entry goes once that record is flushed, a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = server.get_text("/metrics").await;
        let missing = expected
            .iter()
            .find(|line| !text.lines().any(|l| l == **line));
        match missing {
            None => break,
            Some(line) if Instant::now() >= deadline => {
                panic!("missing `{line}` in\n{text}")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    server.stop().await;
}

both!(any_text_is_a_key_and_a_lookup_with_a_nul_finds_nothing);
/// A sender's event id (a dedupe key here) and a script's state key are
/// any JSON string, NUL and all, and a dedupe key of any length
/// (PostgreSQL's text cannot hold NUL, and an index entry holds 2.7 KB, so
/// the store escapes the one and hashes the other):
/// each is stored, told apart from the same text without it, and found
/// again; an API lookup or filter with a NUL finds nothing instead of
/// failing, and a filter's `_` or `%` is a character, not a pattern.
async fn any_text_is_a_key_and_a_lookup_with_a_nul_finds_nothing(backend: Backend) {
    let wf = "trigger:\n  webhook:\n    path: /n\n    dedupe: { key: \"{{ $.event.id }}\" }\nsteps:\n  - id: count\n    transform:\n      script: |\n        let before = state_get(event.key);\n        state_set(event.key, (before ?? 0) + 1);\n        before\n";
    let other =
        "trigger:\n  webhook: { path: /m }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let server =
        TestServer::start_on(backend, &[("n.yaml", wf), ("n-m.yaml", other)], &[], |_| {}).await;
    // A filter is a name, not a pattern: `_` matches only itself.
    server.run_once("/hooks/m", &json!({})).await;
    for (name, found) in [("n-m", 1), ("n_m", 0), ("n%", 0)] {
        let (code, page) = server.get(&format!("/api/events?workflow={name}")).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(found),
            "{name}: {page}"
        );
    }
    // Dedupe keys past what an index entry holds (incompressible), told
    // apart from one that differs in its last character only. (State keys
    // are at most 256 bytes.)
    let long: String = (0..20_000).map(|_| fastrand::alphanumeric()).collect();
    let (long_a, long_b) = (format!("{long}a"), format!("{long}b"));
    // (event id, state key, the count read before this run's)
    let sent: Vec<(&str, &str, Value)> = vec![
        ("evt_\u{0}a", "k\u{0}", Value::Null),
        ("evt_\u{0}b", "k\u{0}", json!(1)),
        ("evt_", "k", Value::Null),
        ("\u{1}evt_\u{0}a", "\u{1}k\u{0}", Value::Null),
        ("\u{1}\u{3}", "\u{1}\u{1}\u{3}", Value::Null),
        ("\u{1}\u{1}\u{3}", "\u{1}\u{3}", Value::Null),
        ("evt_\u{0}\u{0}", "k\u{0}", json!(2)),
        (&long_a, "long", Value::Null),
        (&long_b, "long", json!(1)),
        (&long, "long", json!(2)),
    ];
    let mut first = Vec::new();
    for (id, key, before) in &sent {
        let run = server
            .run_once("/hooks/n", &json!({"id": id, "key": key}))
            .await;
        let shown = |s: &str| s.chars().take(40).collect::<String>();
        assert_eq!(
            run["status"],
            "succeeded",
            "{:?}: {}",
            shown(id),
            run["error"]
        );
        let count = &run["steps"][0]["output"];
        assert_eq!(count, before, "{:?} read {key:?}", shown(id));
        first.push(run["event_id"].clone());
    }
    // Each id again: a duplicate of its own first event, and of no other.
    for ((id, key, _), event_id) in sent.iter().zip(&first) {
        let (code, again) = server
            .post_json("/hooks/n", &json!({"id": id, "key": key}))
            .await;
        let id: String = id.chars().take(40).collect();
        assert_eq!(code, 200, "{id:?}: {}", again["error"]);
        assert_eq!(&again["event_id"], event_id, "{id:?}");
    }
    // Lookups and filters with a NUL find nothing, and say so.
    for path in ["/api/runs?workflow=n%00", "/api/events?workflow=%00n"] {
        let (code, page) = server.get(path).await;
        assert_eq!(code, 200, "{path}: {page}");
        assert_eq!(page["items"], json!([]), "{path}");
    }
    for path in ["/api/runs?before=%00", "/api/events?before=%00"] {
        let (code, page) = server.get(path).await;
        assert!(code == 200 || code == 400, "{path}: {code} {page}");
    }
    for path in ["/api/runs/run_%00", "/api/events/evt_%00"] {
        let (code, answer) = server.get(path).await;
        assert!(code == 404 || code == 400, "{path}: {code} {answer}");
    }
    server.stop().await;
}
