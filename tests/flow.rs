//! Flow control (SPEC §6.1) on the real server with a real sink: `switch`
//! picks a branch and records it; `for_each` sends every item (in order at
//! concurrency 1, all of them at concurrency 4), ends only its item on a
//! `filter`, fails after the other items on a failed one, and a replay
//! from the failed step sends only the failed item again; `delay` waits
//! durably (across `kill -9`) and not before its time; `respond` answers
//! the sender from the run, or falls back to `202`.

mod common;

use common::{write_files, Backend, BinServer, Sink, TestServer};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A workflow text with `SINK` standing for the sink's base URL.
fn with_sink(yaml: &str, sink: &Sink) -> String {
    yaml.replace("SINK", &sink.url(""))
}

/// The step record `id` among `steps`.
fn step<'a>(steps: &'a Value, id: &str) -> &'a Value {
    steps
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step `{id}` in {steps}"))
}

/// Everything the sink receives until it stays quiet for `quiet`.
async fn drain(sink: &mut Sink, quiet: Duration) -> Vec<common::Received> {
    let mut got = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(quiet, sink.rx.recv()).await {
        got.push(r);
    }
    got
}

const ROUTER: &str = r#"
trigger:
  webhook: { path: /route }
steps:
  - id: route
    switch:
      cases:
        - when: { $.event.type: invoice.paid }
          steps:
            - id: thank
              http: { url: "SINK/thanks", body: "{{ $.event.id }}", format: text }
        - when: { $.event.type: { starts_with: invoice.payment_failed } }
          steps:
            - id: shape
              transform: { script: '#{ dun: event.id }' }
            - id: dun
              http: { url: "SINK/dun", body: "{{ $.steps.shape }}" }
      default:
        - id: ignore
          transform: { script: '"ignored " + event.type' }
  - id: after
    transform: { script: 'steps.route' }
"#;

both!(switch_runs_the_first_case_that_holds_and_records_its_branch);
async fn switch_runs_the_first_case_that_holds_and_records_its_branch(backend: Backend) {
    let mut sink = Sink::start().await;
    let server = TestServer::start_on(
        backend,
        &[("router.yaml", &with_sink(ROUTER, &sink))],
        &[],
        |_| {},
    )
    .await;

    let run = server
        .run_once(
            "/hooks/route",
            &json!({"type": "invoice.paid", "id": "in_1"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let got = sink.next().await;
    assert_eq!((got.uri.as_str(), got.text().as_str()), ("/thanks", "in_1"));
    let route = step(&run["steps"], "route");
    assert_eq!(route["kind"], "switch");
    assert_eq!(route["branch"], 0, "{route}");
    assert_eq!(route["steps"].as_array().map(Vec::len), Some(1), "{route}");
    assert_eq!(route["steps"][0]["id"], "thank");
    assert_eq!(route["steps"][0]["status"], "succeeded");
    // The switch's output is its branch's last output, and later steps see it.
    assert_eq!(route["output"]["status"], 200, "{route}");
    assert_eq!(step(&run["steps"], "after")["output"]["status"], 200);
    assert!(
        step(&run["steps"], "after").get("branch").is_none(),
        "only a switch record has a branch"
    );

    // The second case, with two steps: the second sees the first's output.
    let run = server
        .run_once(
            "/hooks/route",
            &json!({"type": "invoice.payment_failed.final", "id": "in_2"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let got = sink.next().await;
    assert_eq!(got.uri, "/dun");
    assert_eq!(got.json(), json!({"dun": "in_2"}));
    let route = step(&run["steps"], "route");
    assert_eq!(route["branch"], 1, "{route}");
    let ids: Vec<&str> = route["steps"]
        .as_array()
        .expect("branch steps")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["shape", "dun"]);
    assert!(
        run["steps"].as_array().expect("steps").len() == 2,
        "branch steps are nested, not listed at the top: {run}"
    );

    // No case holds: the default branch.
    let run = server
        .run_once("/hooks/route", &json!({"type": "customer.created"}))
        .await;
    let route = step(&run["steps"], "route");
    assert_eq!(route["branch"], "default", "{route}");
    assert_eq!(route["output"], "ignored customer.created");
    assert!(sink.quiet_for(Duration::from_millis(200)).await);
    server.stop().await;
}

both!(a_switch_with_no_matching_case_and_no_default_is_skipped);
async fn a_switch_with_no_matching_case_and_no_default_is_skipped(backend: Backend) {
    let wf = r#"
trigger:
  webhook: { path: /s }
steps:
  - id: route
    switch:
      cases:
        - when: { $.event.n: 1 }
          steps:
            - id: one
              transform: { script: '1' }
  - id: next
    transform: { script: 'steps.route ?? "none"' }
"#;
    let server = TestServer::start_on(backend, &[("s.yaml", wf)], &[], |_| {}).await;
    let run = server.run_once("/hooks/s", &json!({"n": 2})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let route = step(&run["steps"], "route");
    assert_eq!(route["status"], "skipped", "{route}");
    assert_eq!(route["branch"], Value::Null, "{route}");
    assert_eq!(route["steps"], json!([]));
    assert_eq!(step(&run["steps"], "next")["output"], "none");
    server.stop().await;
}

const LOOP: &str = r#"
trigger:
  webhook: { path: /lines }
steps:
  - id: lines
    for_each: "{{ $.event.items }}"
    concurrency: CONCURRENCY
    steps:
      - id: push
        http:
          url: "SINK/line/{{ $.index }}"
          body: { item: "{{ $.item }}", index: "{{ $.index }}" }
          retry: { attempts: 3, backoff: 10ms, max_backoff: 20ms }
  - id: count
    transform: { script: 'steps.lines.len()' }
"#;

both!(for_each_sends_100_items_at_concurrency_4);
async fn for_each_sends_100_items_at_concurrency_4(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = with_sink(LOOP, &sink).replace("CONCURRENCY", "4");
    let server = TestServer::start_on(backend, &[("lines.yaml", &wf)], &[], |_| {}).await;
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"sku": format!("sku-{i}")}))
        .collect();
    let run = server
        .run_once("/hooks/lines", &json!({ "items": items }))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["id"].as_str().expect("id");
    let got = drain(&mut sink, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 100, "every item was sent once");
    let mut keys = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    for r in &got {
        let body = r.json();
        let i = body["index"].as_u64().expect("index") as usize;
        assert_eq!(body["item"], items[i], "item {i} carries its value");
        assert_eq!(r.uri, format!("/line/{i}"));
        assert_eq!(r.headers["idempotency-key"], format!("{run_id}.push.{i}"));
        keys.insert(r.headers["idempotency-key"].clone());
        indexes.insert(i);
    }
    assert_eq!(keys.len(), 100, "one key per item");
    assert_eq!(indexes.len(), 100);
    let lines = step(&run["steps"], "lines");
    assert_eq!(lines["kind"], "for_each");
    let recorded = lines["items"].as_array().expect("items");
    assert_eq!(recorded.len(), 100);
    for (i, item) in recorded.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["status"], "succeeded", "{item}");
        assert_eq!(item["steps"][0]["id"], "push");
        assert_eq!(
            item["steps"][0]["attempts"].as_array().map(Vec::len),
            Some(1)
        );
    }
    // The loop's output: one entry per item, the item's last output.
    assert_eq!(lines["output"].as_array().map(Vec::len), Some(100));
    assert_eq!(lines["output"][7]["status"], 200);
    assert_eq!(step(&run["steps"], "count")["output"], 100);
    server.stop().await;
}

both!(for_each_at_concurrency_1_keeps_the_order_even_through_a_retry);
async fn for_each_at_concurrency_1_keeps_the_order_even_through_a_retry(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = with_sink(LOOP, &sink).replace("CONCURRENCY", "1");
    // Item 3's first attempt is answered 503: it is retried, and item 4
    // still comes after it.
    sink.answer("/line/3", vec![(503, vec![], "{}".into())]);
    let server = TestServer::start_on(backend, &[("lines.yaml", &wf)], &[], |_| {}).await;
    let items: Vec<Value> = (0..20).map(|i| json!(i)).collect();
    let run = server
        .run_once("/hooks/lines", &json!({ "items": items }))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let got = drain(&mut sink, Duration::from_millis(300)).await;
    let order: Vec<String> = got.iter().map(|r| r.uri.clone()).collect();
    let mut want: Vec<String> = (0..20).map(|i| format!("/line/{i}")).collect();
    want.insert(4, "/line/3".into());
    assert_eq!(order, want);
    assert_eq!(
        got[3].headers["idempotency-key"], got[4].headers["idempotency-key"],
        "a retry of an item keeps its key"
    );
    let item3 = &step(&run["steps"], "lines")["items"][3];
    assert_eq!(
        item3["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(2)
    );
    server.stop().await;
}

both!(for_each_over_null_a_scalar_and_too_many_items);
async fn for_each_over_null_a_scalar_and_too_many_items(backend: Backend) {
    let wf = r#"
trigger:
  webhook: { path: /l }
steps:
  - id: each
    for_each: "{{ $.event.items }}"
    max_items: 3
    steps:
      - id: double
        transform: { script: 'item * 2' }
"#;
    let server = TestServer::start_on(backend, &[("l.yaml", wf)], &[], |_| {}).await;
    let run = server.run_once("/hooks/l", &json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run["steps"], "each")["output"], json!([]));
    let run = server.run_once("/hooks/l", &json!({"items": 21})).await;
    assert_eq!(step(&run["steps"], "each")["output"], json!([42]), "{run}");
    let run = server
        .run_once("/hooks/l", &json!({"items": [1, 2, 3]}))
        .await;
    assert_eq!(step(&run["steps"], "each")["output"], json!([2, 4, 6]));
    let run = server
        .run_once("/hooks/l", &json!({"items": [1, 2, 3, 4]}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let each = step(&run["steps"], "each");
    assert_eq!(each["status"], "failed");
    let error = each["error"].as_str().unwrap_or("");
    assert!(
        error.contains("4 items") && error.contains("max_items"),
        "{error}"
    );
    server.stop().await;
}

const PICKY: &str = r#"
trigger:
  webhook: { path: /picky }
steps:
  - id: lines
    for_each: "{{ $.event.items }}"
    steps:
      - id: wanted
        filter: { $.item.skip: { ne: true } }
      - id: push
        http:
          url: "SINK/item/{{ $.item.n }}"
          body: "{{ $.item }}"
          retry: { attempts: 1 }
  - id: after
    transform: { script: '"not reached"' }
"#;

both!(a_filter_ends_its_item_a_failed_item_fails_the_loop_after_the_others_and_a_replay_resends_only_it);
async fn a_filter_ends_its_item_a_failed_item_fails_the_loop_after_the_others_and_a_replay_resends_only_it(
    backend: Backend,
) {
    let mut sink = Sink::start().await;
    sink.answer(
        "/item/3",
        vec![(400, vec![], "{\"error\":\"bad sku\"}".into())],
    );
    let server = TestServer::start_on(
        backend,
        &[("picky.yaml", &with_sink(PICKY, &sink))],
        &[],
        |_| {},
    )
    .await;
    let items = json!([{"n": 1}, {"n": 2, "skip": true}, {"n": 3}, {"n": 4}]);
    let run = server
        .run_once("/hooks/picky", &json!({ "items": items }))
        .await;
    let run_id = run["id"].as_str().expect("id").to_string();
    assert_eq!(run["status"], "failed", "{run}");
    let got = drain(&mut sink, Duration::from_millis(300)).await;
    let uris: Vec<&str> = got.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        uris,
        ["/item/1", "/item/3", "/item/4"],
        "item 4 is still sent after item 3 failed"
    );
    let lines = step(&run["steps"], "lines");
    let statuses: Vec<&str> = lines["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["status"].as_str())
        .collect();
    assert_eq!(statuses, ["succeeded", "filtered", "failed", "succeeded"]);
    assert_eq!(lines["status"], "failed");
    let error = lines["error"].as_str().unwrap_or("");
    assert!(
        error.contains("item 2") && error.contains("HTTP 400"),
        "{error}"
    );
    assert_eq!(run["error"], lines["error"]);
    assert_eq!(step(&run["steps"], "after")["status"], "pending");
    assert_eq!(
        lines["items"][2]["steps"][1]["error"], "HTTP 400",
        "{lines}"
    );

    // Replay from the failed step: only the failed item is sent again,
    // with the replay's own key; the others are reused.
    let replay_id = server
        .replay(&run_id, &json!({"from": "failed_step"}))
        .await;
    let replay = server.wait_run(&replay_id).await;
    assert_eq!(replay["status"], "succeeded", "{replay}");
    let got = drain(&mut sink, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1, "only the failed item is sent again");
    assert_eq!(got[0].uri, "/item/3");
    assert_eq!(
        got[0].headers["idempotency-key"],
        format!("{replay_id}.push.2")
    );
    let lines = step(&replay["steps"], "lines");
    let statuses: Vec<&str> = lines["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["succeeded", "filtered", "succeeded", "succeeded"]
    );
    // Reused items keep their original attempts.
    assert_eq!(
        lines["items"][0]["steps"][1]["attempts"][0]["request"]["headers"]["Idempotency-Key"],
        format!("{run_id}.push.0")
    );
    assert_eq!(lines["output"].as_array().map(Vec::len), Some(4));
    assert_eq!(lines["output"][1], false, "a filtered item's last output");
    assert_eq!(step(&replay["steps"], "after")["output"], "not reached");
    server.stop().await;
}

both!(switch_and_for_each_nest_three_levels);
async fn switch_and_for_each_nest_three_levels(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = r#"
trigger:
  webhook: { path: /orders }
steps:
  - id: orders
    for_each: "{{ $.event.orders }}"
    concurrency: 2
    steps:
      - id: kind
        switch:
          cases:
            - when: { $.item.express: true }
              steps:
                - id: lines
                  for_each: "{{ $.item.lines }}"
                  steps:
                    - id: push
                      http: { url: "SINK/express", body: { index: "{{ $.index }}", line: "{{ $.item }}" } }
          default:
            - id: slow
              transform: { script: '"slow " + index' }
"#;
    let server =
        TestServer::start_on(backend, &[("o.yaml", &with_sink(wf, &sink))], &[], |_| {}).await;
    let run = server
        .run_once(
            "/hooks/orders",
            &json!({"orders": [
                {"express": true, "lines": ["a", "b"]},
                {"express": false},
                {"express": true, "lines": ["c"]}
            ]}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["id"].as_str().expect("id");
    let got = drain(&mut sink, Duration::from_millis(300)).await;
    let mut keys: Vec<String> = got
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{run_id}.push.0.0"),
            format!("{run_id}.push.0.1"),
            format!("{run_id}.push.2.0")
        ],
        "nested loops key each request by every index"
    );
    let bodies: BTreeSet<String> = got.iter().map(|r| r.json().to_string()).collect();
    // `$.index` and `$.item` are the innermost loop's.
    assert!(
        bodies.contains(&json!({"index": 1, "line": "b"}).to_string()),
        "{bodies:?}"
    );
    let orders = step(&run["steps"], "orders");
    let first = &orders["items"][0]["steps"][0];
    assert_eq!(first["branch"], 0);
    assert_eq!(first["steps"][0]["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(orders["items"][1]["steps"][0]["branch"], "default");
    assert_eq!(orders["output"][1], "slow 1");
    server.stop().await;
}

both!(delay_waits_not_before_its_time_and_holds_no_worker);
async fn delay_waits_not_before_its_time_and_holds_no_worker(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = r#"
trigger:
  webhook: { path: /later }
steps:
  - id: wait
    delay: 1500ms
  - id: ping
    http: { url: "SINK/ping", body: "{{ $.event }}" }
"#;
    let now = r#"
trigger:
  webhook: { path: /now }
steps:
  - id: quick
    http: { url: "SINK/now", body: "{{ $.event }}" }
"#;
    // One worker: a waiting run must not hold it.
    let server = TestServer::start_on(
        backend,
        &[
            ("later.yaml", &with_sink(wf, &sink)),
            ("now.yaml", &with_sink(now, &sink)),
        ],
        &[],
        |c| c.workers = 1,
    )
    .await;
    let (code, answer) = server.post_json("/hooks/later", &json!({"n": 1})).await;
    assert_eq!(code, 202, "{answer}");
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let waiting = server.wait_run_status(&run_id, &["waiting"]).await;
    let wake = waiting["next_attempt_at"]
        .as_str()
        .expect("next_attempt_at")
        .to_string();
    assert_eq!(
        step(&waiting["steps"], "wait")["status"],
        "waiting",
        "{waiting}"
    );
    assert_eq!(step(&waiting["steps"], "ping")["status"], "pending");
    let metrics = server.get_text("/metrics").await;
    assert!(metrics.contains("hookflow_runs_waiting 1\n"), "{metrics}");
    // The only worker is free: another workflow runs meanwhile.
    let other = server.run_once("/hooks/now", &json!({"n": 2})).await;
    assert_eq!(other["status"], "succeeded");
    assert_eq!(sink.next().await.uri, "/now");
    let ping = sink.next().await;
    let arrived = hookflow::record::Timestamp::now();
    assert_eq!(ping.uri, "/ping");
    let wake = hookflow::record::Timestamp::parse(&wake).expect("a time");
    assert!(arrived >= wake, "delivered at {arrived:?}, before {wake:?}");
    let run = server.wait_run(&run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["next_attempt_at"], Value::Null);
    let wait = step(&run["steps"], "wait");
    assert_eq!(wait["kind"], "delay");
    assert_eq!(wait["status"], "succeeded");
    assert!(wait["output"]["until"].is_string(), "{wait}");
    let metrics = server.get_text("/metrics").await;
    assert!(metrics.contains("hookflow_runs_waiting 0\n"), "{metrics}");
    server.stop().await;
}

both!(delay_until_a_time_in_the_past_goes_on_and_one_too_far_fails);
async fn delay_until_a_time_in_the_past_goes_on_and_one_too_far_fails(backend: Backend) {
    let wf = r#"
trigger:
  webhook: { path: /until }
steps:
  - id: wait
    delay: { until: "{{ $.event.send_at }}" }
  - id: done
    transform: { script: '"done"' }
"#;
    let server = TestServer::start_on(backend, &[("u.yaml", wf)], &[], |c| {
        c.max_delay = Duration::from_secs(3600)
    })
    .await;
    let run = server
        .run_once("/hooks/until", &json!({"send_at": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run["steps"], "done")["output"], "done");
    let far = hookflow::record::Timestamp::now()
        .plus(Duration::from_secs(7200))
        .to_rfc3339();
    let run = server
        .run_once("/hooks/until", &json!({ "send_at": far }))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = step(&run["steps"], "wait")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(error.contains("--max-delay"), "{error}");
    let run = server
        .run_once("/hooks/until", &json!({"send_at": "next tuesday"}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = step(&run["steps"], "wait")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(error.contains("RFC 3339"), "{error}");
    server.stop().await;
}

both!(
    a_delay_survives_kill_9_and_fires_once_on_time,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_delay_survives_kill_9_and_fires_once_on_time(backend: Backend) {
    let mut sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let wf = r#"
trigger:
  webhook: { path: /later }
steps:
  - id: wait
    delay: 2s
  - id: ping
    http: { url: "SINK/ping", body: "{{ $.event }}" }
"#;
    write_files(
        &dir.path().join("workflows"),
        &[("later.yaml", &with_sink(wf, &sink))],
    );
    let wf_dir = dir.path().join("workflows").display().to_string();
    let store = [backend.store_args(dir.path()), backend.kill_args()].concat();
    let args = common::with_store(&["--workflows", wf_dir.as_str()], &store);
    let server = BinServer::start(&args, &[]);
    let client = common::client();
    let answer = common::post_at(&client, &server.url("/hooks/later"), &json!({"n": 1})).await;
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let wake = loop {
        let run = common::get_at(&client, &server.url(&format!("/api/runs/{run_id}"))).await;
        if run["status"] == "waiting" {
            break run["next_attempt_at"].as_str().expect("wake").to_string();
        }
        assert!(Instant::now() < deadline, "never waiting: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let listen = server.addr();
    server.kill();
    let server = BinServer::start_at(&listen, &args, &[]);
    let ping = sink.next().await;
    let arrived = hookflow::record::Timestamp::now();
    let wake = hookflow::record::Timestamp::parse(&wake).expect("a time");
    assert!(arrived >= wake, "delivered at {arrived:?}, before {wake:?}");
    assert_eq!(ping.headers["idempotency-key"], format!("{run_id}.ping"));
    let run = common::wait_run_at(&client, &server.base, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        sink.quiet_for(Duration::from_millis(500)).await,
        "fired once"
    );
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("stopped");
}

const SLASH: &str = r#"
trigger:
  webhook: { path: /slash }
steps:
  - id: greet
    transform: { script: '"Hi " + event.user_name' }
  - id: reply
    respond:
      status: 200
      headers: { X-Reply: "{{ $.event.user_name }}" }
      body: { text: "{{ $.steps.greet }}", response_type: ephemeral }
  - id: after
    http: { url: "SINK/after", body: "{{ $.event }}" }
"#;

both!(respond_answers_the_sender_from_the_run_which_then_goes_on);
async fn respond_answers_the_sender_from_the_run_which_then_goes_on(backend: Backend) {
    let mut sink = Sink::start().await;
    let server = TestServer::start_on(
        backend,
        &[("slash.yaml", &with_sink(SLASH, &sink))],
        &[],
        |_| {},
    )
    .await;
    let resp = server
        .client
        .post(server.url("/hooks/slash"))
        .json(&json!({"user_name": "ada"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-reply"], "ada");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"text": "Hi ada", "response_type": "ephemeral"})
    );
    // The run goes on after answering.
    let after = sink.next().await;
    assert_eq!(after.uri, "/after");
    let (_, runs) = server.get("/api/runs?workflow=slash").await;
    let run_id = runs["items"][0]["id"].as_str().expect("run").to_string();
    let run = server.wait_run(&run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let reply = step(&run["steps"], "reply");
    assert_eq!(reply["kind"], "respond");
    assert_eq!(reply["output"]["status"], 200);
    assert_eq!(reply["output"]["body"]["text"], "Hi ada");
    server.stop().await;
}

both!(respond_falls_back_to_202_on_timeout_and_when_the_run_ends_first);
async fn respond_falls_back_to_202_on_timeout_and_when_the_run_ends_first(backend: Backend) {
    let mut sink = Sink::start().await;
    let slow = r#"
trigger:
  webhook: { path: /slow, respond_timeout: 300ms }
steps:
  - id: first
    http: { url: "SINK/slow", body: "{{ $.event }}" }
  - id: reply
    respond: { status: 201, body: late }
"#;
    let ends = r#"
trigger:
  webhook: { path: /ends, respond_timeout: 60s }
steps:
  - id: only_big
    filter: { $.event.n: { gt: 10 } }
  - id: reply
    respond: { body: big }
"#;
    let server = TestServer::start_on(
        backend,
        &[("slow.yaml", &with_sink(slow, &sink)), ("ends.yaml", ends)],
        &[],
        |_| {},
    )
    .await;
    sink.set_delay(Some(Duration::from_millis(1500)));
    let (code, answer) = server.post_json("/hooks/slow", &json!({"n": 1})).await;
    assert_eq!(code, 202, "{answer}");
    assert!(answer["event_id"].is_string(), "{answer}");
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    // The run goes on and reaches its respond step after the answer.
    let run = server.wait_run(&run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run["steps"], "reply")["status"], "succeeded");
    assert_eq!(sink.next().await.uri, "/slow");
    sink.set_delay(None);

    // The run is filtered before its respond step: the sender gets 202 at
    // once, long before the 60 s timeout (the client gives up after 10 s).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("client");
    let resp = client
        .post(server.url("/hooks/ends"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .expect("answered before the client's timeout");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    let run = server
        .wait_run(answer["runs"][0].as_str().expect("run"))
        .await;
    assert_eq!(run["status"], "filtered");
    // And when the filter holds, the respond step answers.
    let resp = client
        .post(server.url("/hooks/ends"))
        .json(&json!({"n": 11}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.text().await.expect("text"), "big");
    server.stop().await;
}

both!(when_several_workflows_respond_the_first_by_name_answers);
async fn when_several_workflows_respond_the_first_by_name_answers(backend: Backend) {
    let wf = |name: &str| {
        format!(
            "name: {name}\ntrigger:\n  webhook: {{ path: /both }}\nsteps:\n  - id: reply\n    respond: {{ body: \"from {name}\" }}\n"
        )
    };
    let (a, b) = (wf("b-second"), wf("a-first"));
    let server =
        TestServer::start_on(backend, &[("b.yaml", &a), ("a.yaml", &b)], &[], |_| {}).await;
    for _ in 0..3 {
        let resp = server
            .client
            .post(server.url("/hooks/both"))
            .json(&json!({}))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await.expect("text"), "from a-first");
    }
    let (_, runs) = server.get("/api/runs?workflow=b-second").await;
    let id = runs["items"][0]["id"].as_str().expect("run").to_string();
    let run = server.wait_run(&id).await;
    assert_eq!(
        run["status"], "succeeded",
        "the other workflow ran as usual"
    );
    server.stop().await;
}

#[test]
fn validate_checks_flow_control_with_positions_and_hints() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = r#"trigger:
  webhook: { path: /bad }
steps:
  - id: a
    for_each: "{{ $.event.items }}"
    concurrency: 0
    steps:
      - id: b
        switch:
          cases:
            - when: { $.item.x: 1 }
              steps:
                - id: c
                  for_each: "{{ $.item.ys }}"
                  steps:
                    - id: d
                      switch:
                        cases:
                          - when: { $.item: 1 }
                            steps:
                              - id: e
                                transform: { script: '1' }
      - id: a
        transform: { script: '2' }
      - id: later
        delay: 5m
  - id: answer
    switch:
      cases:
        - when: { $.event.x: 1 }
          steps:
            - id: reply
              respond: { body: hi }
  - id: nap
    delay: soon
  - id: routes
    switch:
      default:
        - id: f
          transform: { script: '3' }
"#;
    write_files(dir.path(), &[("bad.yaml", bad)]);
    let out = std::process::Command::new(common::binary())
        .arg("validate")
        .arg(dir.path().join("bad.yaml"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let file = dir.path().join("bad.yaml").display().to_string();
    for want in [
        format!("{file}:6:18: concurrency"),
        format!("{file}:16:27: `d` is nested 4 levels deep"),
        format!("{file}:23:13: step id `a` is used twice in this workflow"),
        format!("{file}:26:16: `delay` stands at the top level"),
        format!("{file}:33:24: `respond` stands at the top level"),
        format!("{file}:35:12: delay: `soon` is not a duration"),
        format!("{file}:36:9: a switch needs `cases:`"),
    ] {
        assert!(text.contains(&want), "missing `{want}` in:\n{text}");
    }
}

const TESTED: &str = r#"name: tested
trigger:
  webhook: { path: /tested }
steps:
  - id: route
    switch:
      cases:
        - when: { $.event.kind: order }
          steps:
            - id: lines
              for_each: "{{ $.event.lines }}"
              steps:
                - id: push
                  http: { url: "http://erp.test/lines", body: "{{ $.item }}", retry: { attempts: 2 } }
      default:
        - id: other
          transform: { script: '"other"' }
"#;

#[test]
fn hookflow_test_mocks_each_item_and_checks_items_and_branches() {
    let dir = tempfile::tempdir().expect("tmp");
    let suite = r#"workflow: tested
cases:
  - name: every line is pushed, the second after a retry
    request: { event: { kind: order, lines: [a, b, c] } }
    mock:
      push:
        - { status: 200, body: { line: 1 } }
        - [ { status: 503 }, { status: 201, body: { line: 2 } } ]
        - { status: 200, body: { line: 3 } }
    expect:
      status: succeeded
      steps:
        route: { branch: 0 }
        lines:
          output: [ { status: 200, headers: {}, body: { line: 1 } }, { status: 201, headers: {}, body: { line: 2 } }, { status: 200, headers: {}, body: { line: 3 } } ]
          items:
            - { status: succeeded }
            - { status: succeeded, steps: { push: { request: { body: b } } } }
            - { status: succeeded, steps: { push: { contains: { body: { line: 3 } } } } }
  - name: a refused line fails the loop
    request: { event: { kind: order, lines: [a, b] } }
    mock:
      push: [ { status: 200 }, { status: 422 } ]
    expect:
      status: failed
      steps:
        lines:
          items:
            - { status: succeeded }
            - { status: failed, steps: { push: { error: "HTTP 422" } } }
  - name: other events take the default branch
    request: { event: { kind: refund } }
    expect:
      status: succeeded
      steps:
        route: { branch: default }
        other: { output: other }
  - name: a wrong expectation on an item is reported with its path
    request: { event: { kind: order, lines: [a] } }
    expect:
      steps:
        lines: { items: [ { status: failed } ] }
"#;
    write_files(
        dir.path(),
        &[("tested.yaml", TESTED), ("tested.test.yaml", suite)],
    );
    let out = std::process::Command::new(common::binary())
        .arg("test")
        .arg(dir.path())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("$.steps.lines.items[0].status: expected \"failed\", got \"succeeded\""),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("3 passed, 1 failed"), "{text}");
}

#[test]
fn hookflow_run_traces_branches_and_items() {
    let dir = tempfile::tempdir().expect("tmp");
    write_files(
        dir.path(),
        &[
            ("tested.yaml", TESTED),
            ("order.json", r#"{"kind": "order", "lines": ["a", "b"]}"#),
        ],
    );
    let out = std::process::Command::new(common::binary())
        .arg("run")
        .arg(dir.path().join("tested.yaml"))
        .arg("--event")
        .arg(dir.path().join("order.json"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for want in [
        "route",
        "branch 0",
        "item 0",
        "item 1",
        "would send (dry run; --send to send) POST http://erp.test/lines",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    // Items and their steps are indented under their loop.
    let push_lines = text
        .lines()
        .filter(|l| l.trim_start().starts_with("ok   push") || l.contains(" push "))
        .count();
    assert!(push_lines >= 2, "{text}");
}

both!(a_recorded_run_with_a_branch_and_items_becomes_a_passing_test_case);
async fn a_recorded_run_with_a_branch_and_items_becomes_a_passing_test_case(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = r#"name: recorded
trigger:
  webhook: { path: /recorded }
steps:
  - id: route
    switch:
      cases:
        - when: { $.event.kind: order }
          steps:
            - id: lines
              for_each: "{{ $.event.lines }}"
              steps:
                - id: push
                  http: { url: "SINK/push", body: "{{ $.item }}", retry: { attempts: 2, backoff: 10ms } }
      default:
        - id: other
          transform: { script: '"other"' }
"#;
    let wf = with_sink(wf, &sink);
    // Item 1 fails for good; item 2 succeeds after a retry.
    sink.answer(
        "/push",
        vec![
            (200, vec![], "{\"n\":0}".into()),
            (422, vec![], "{\"error\":\"bad line\"}".into()),
            (503, vec![], "{}".into()),
            (201, vec![], "{\"n\":2}".into()),
        ],
    );
    let server = TestServer::start_on(backend, &[("recorded.yaml", &wf)], &[], |_| {}).await;
    let run = server
        .run_once(
            "/hooks/recorded",
            &json!({"kind": "order", "lines": ["a", "b", "c"]}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(drain(&mut sink, Duration::from_millis(200)).await.len(), 4);
    let id = run["id"].as_str().expect("id");
    let suite = server
        .client
        .get(server.url(&format!("/api/runs/{id}/test-case")))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(suite.contains("branch: 0"), "{suite}");
    assert!(suite.contains("items:"), "{suite}");
    let dir = tempfile::tempdir().expect("tmp");
    write_files(
        dir.path(),
        &[("recorded.yaml", &wf), ("recorded.test.yaml", &suite)],
    );
    let test = || {
        std::process::Command::new(common::binary())
            .arg("test")
            .arg(dir.path())
            .output()
            .expect("runs")
    };
    let out = test();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}\n{suite}");
    assert_eq!(text.lines().last(), Some("1 passed, 0 failed"), "{text}");
    // The recorded case notices when the workflow takes another branch.
    write_files(
        dir.path(),
        &[(
            "recorded.yaml",
            &wf.replace("$.event.kind: order", "$.event.kind: refund"),
        )],
    );
    let out = test();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("$.status: expected \"failed\", got \"succeeded\""),
        "{text}"
    );
    server.stop().await;
}

#[test]
fn validate_checks_loop_keys_respond_and_delay_settings() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = r#"trigger:
  webhook: { path: /bad2, respond_timeout: 5s }
steps:
  - id: shape
    transform: { script: '1' }
    steps:
      - id: inner
        transform: { script: '2' }
  - id: each
    for_each: "{{ $.event.items }}"
    concurrency: 101
    max_items: 0
  - id: nap
    delay: { untl: "{{ $.event.at }}" }
  - id: answer
    respond: { status: 99 }
  - id: again
    respond: { status: "{{ $.event.code }}", headers: { "Bad Header": x } }
"#;
    let quiet = "trigger:\n  webhook: { path: /q, respond_timeout: 5s }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    write_files(dir.path(), &[("bad2.yaml", bad), ("quiet.yaml", quiet)]);
    let out = std::process::Command::new(common::binary())
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let file = dir.path().join("bad2.yaml").display().to_string();
    let quiet = dir.path().join("quiet.yaml").display().to_string();
    for want in [
        format!("{file}:7:7: `steps` belongs to a `for_each` step, and `shape` is not one"),
        format!("{file}:9:9: `each`: a for_each needs `steps:`"),
        format!("{file}:11:18: concurrency: use 1 to 100"),
        format!("{file}:12:16: max_items: use 1 or more"),
        format!("{file}:14:14: unknown key `untl` in delay; did you mean `until`?"),
        format!("{file}:16:24: status: give a number from 200 to 599"),
        format!("{file}:18:14: a workflow answers its sender once: keep one `respond` step"),
        format!("{file}:18:71: `Bad Header` is not a valid header name"),
        format!("{quiet}:2:41: respond_timeout: the workflow has no `respond` step"),
    ] {
        assert!(text.contains(&want), "missing `{want}` in:\n{text}");
    }
}

both!(a_respond_step_that_cannot_render_fails_and_the_sender_gets_202);
async fn a_respond_step_that_cannot_render_fails_and_the_sender_gets_202(backend: Backend) {
    let wf = r#"
trigger:
  webhook: { path: /r }
steps:
  - id: reply
    respond:
      status: "{{ $.event.code }}"
      headers: { X-Echo: "{{ $.event.echo }}" }
      body: ok
"#;
    let server = TestServer::start_on(backend, &[("r.yaml", wf)], &[], |_| {}).await;
    for (event, error) in [
        (
            json!({"code": 200, "echo": "a\r\nSet-Cookie: x=1"}),
            "header `X-Echo` would hold a line break",
        ),
        (
            json!({"code": "teapot", "echo": "a"}),
            "status must be a number from 200 to 599",
        ),
        (
            json!({"code": 102, "echo": "a"}),
            "status must be a number from 200 to 599",
        ),
    ] {
        let resp = server
            .client
            .post(server.url("/hooks/r"))
            .json(&event)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 202, "{event}");
        assert!(resp.headers().get("set-cookie").is_none());
        let answer: Value = resp.json().await.expect("json");
        let run = server
            .wait_run(answer["runs"][0].as_str().expect("run"))
            .await;
        assert_eq!(run["status"], "failed", "{run}");
        let got = step(&run["steps"], "reply")["error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(got.contains(error), "{got}");
    }
    // A good one, with a status from the event.
    let resp = server
        .client
        .post(server.url("/hooks/r"))
        .json(&json!({"code": "418", "echo": "tea"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(resp.headers()["x-echo"], "tea");
    server.stop().await;
}
