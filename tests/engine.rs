//! The engine end to end through the real server: inbound answers (SPEC §5),
//! templates as a real sink sees them, every step type and status, fan-out,
//! body kinds, workflow state, sandbox limits, and the history API.

mod common;

use common::{Backend, Sink, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

both!(inbound_answers_follow_the_contract);
async fn inbound_answers_follow_the_contract(backend: Backend) {
    let wf = r#"
trigger:
  webhook:
    path: /orders
    methods: [POST, PUT]
  when:
    $.event.kind: order
steps:
  - id: keep
    transform:
      script: "event"
"#;
    let server =
        TestServer::start_on(backend, &[("orders.yaml", wf)], &[], |c| c.max_body = 1024).await;

    let (code, body) = server
        .post_json("/hooks/orders", &json!({"kind": "order", "n": 1}))
        .await;
    assert_eq!(code, 202, "{body}");
    assert!(
        body["event_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("evt_")),
        "{body}"
    );
    let run_id = body["runs"][0].as_str().expect("one run").to_string();
    let run = server.wait_run(&run_id).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        step(&run, "keep")["output"],
        json!({"kind": "order", "n": 1})
    );
    assert_eq!(run["event_id"], body["event_id"]);
    assert!(run["workflow_version"]
        .as_str()
        .is_some_and(|v| v.len() == 16));

    // PUT is listed too.
    let resp = server
        .client
        .put(server.url("/hooks/orders"))
        .json(&json!({"kind": "order"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);

    // Known path, no `when` holds: accepted, no runs, stored as unmatched.
    let (code, body) = server
        .post_json("/hooks/orders", &json!({"kind": "refund"}))
        .await;
    assert_eq!(code, 202);
    assert_eq!(body["runs"], json!([]));
    let (_, event) = server
        .get(&format!(
            "/api/events/{}",
            body["event_id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(event["outcome"], "unmatched");
    assert!(
        event["reason"].as_str().is_some_and(|r| r.contains("when")),
        "{event}"
    );

    let (code, body) = server.post_json("/hooks/nowhere", &json!({})).await;
    assert_eq!(code, 404);
    assert!(body["error"].is_string());

    let resp = server
        .client
        .get(server.url("/hooks/orders"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST, PUT")
    );

    let (code, body) = server
        .post_raw("/hooks/orders", "application/json", vec![b' '; 2048])
        .await;
    assert_eq!(code, 413, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("1024")));

    let (code, body) = server
        .post_raw("/hooks/orders", "application/json", "{\"kind\": ")
        .await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not valid JSON")),
        "{body}"
    );

    // Nothing of the refused requests was stored: two accepted + one unmatched.
    let (_, events) = server.get("/api/events").await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(3),
        "{events}"
    );
    server.stop().await;
}

both!(templates_render_into_the_outbound_request);
async fn templates_render_into_the_outbound_request(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = format!(
        r#"
trigger:
  webhook: {{ path: /t }}
steps:
  - id: shape
    transform:
      script: '#{{ greeting: `hi ${{event.name}}` }}'
  - id: send
    http:
      method: put
      url: "{base}/orders/{{{{ $.event.id }}}}"
      query:
        name: "{{{{ $.event.name }}}}"
        n: "{{{{ $.event.amount }}}}"
      headers:
        X-Amount: "{{{{ $.event.amount }}}}"
        X-Text: "amount={{{{ $.event.amount }}}} obj={{{{ $.event.obj }}}}"
        X-Fallback: "{{{{ $.event.nope ?? env.HOOKFLOW_TEST_SURELY_UNSET ?? 'dflt' }}}}"
        X-Header-In: "{{{{ $.request.headers['x-trace'] }}}}"
      body:
        whole: "{{{{ $.event.obj }}}}"
        text: "n={{{{ $.event.amount }}}}"
        step: "{{{{ $.steps.shape.greeting }}}}"
        many: "{{{{ $.event.items[*].sku }}}}"
        missing: "{{{{ $.event.nope }}}}"
        literal: 5
        list: ["{{{{ $.event.amount }}}}", plain]
"#,
        base = sink.url("")
    );
    let server = TestServer::start_on(backend, &[("t.yaml", &wf)], &[], |_| {}).await;
    let resp = server
        .client
        .post(server.url("/hooks/t"))
        .header("x-trace", "abc-123")
        .json(
            &json!({"id": "a/b c?", "name": "Zoë & co", "amount": 1250, "obj": {"k": [1, true]},
                      "items": [{"sku": "A"}, {"sku": "B"}]}),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    let run_id = answer["runs"][0].as_str().expect("run").to_string();

    let got = sink.next().await;
    assert_eq!(got.method, "PUT");
    assert_eq!(got.uri, "/orders/a%2Fb%20c%3F?name=Zo%C3%AB+%26+co&n=1250");
    assert_eq!(got.headers["x-amount"], "1250");
    assert_eq!(got.headers["x-text"], "amount=1250 obj={\"k\":[1,true]}");
    assert_eq!(got.headers["x-fallback"], "dflt");
    assert_eq!(got.headers["x-header-in"], "abc-123");
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["idempotency-key"], format!("{run_id}.send"));
    assert_eq!(
        got.json(),
        json!({"whole": {"k": [1, true]}, "text": "n=1250", "step": "hi Zoë & co", "many": ["A", "B"],
               "missing": null, "literal": 5, "list": [1250, "plain"]})
    );

    let run = server.wait_run(&run_id).await;
    assert_eq!(run["status"], "succeeded");
    let send = step(&run, "send");
    assert_eq!(send["output"]["status"], 200);
    assert_eq!(send["output"]["body"], json!({"ok": true}));
    let attempt = &send["attempts"][0];
    assert_eq!(attempt["n"], 1);
    assert_eq!(attempt["request"]["method"], "PUT");
    assert_eq!(attempt["response"]["status"], 200);
    assert_eq!(attempt["request"]["body"]["text"], "n=1250");
    server.stop().await;
}

both!(form_and_text_formats_and_a_custom_idempotency_key);
async fn form_and_text_formats_and_a_custom_idempotency_key(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = format!(
        r#"
trigger:
  webhook: {{ path: /f }}
steps:
  - id: form
    http:
      url: "{base}/form"
      format: form
      body: {{ a: "{{{{ $.event.a }}}}", b: "x y&z" }}
  - id: text
    http:
      url: "{base}/text"
      format: text
      headers: {{ Idempotency-Key: "mine-{{{{ $.event.a }}}}" }}
      body: "a is {{{{ $.event.a }}}}"
"#,
        base = sink.url("")
    );
    let server = TestServer::start_on(backend, &[("f.yaml", &wf)], &[], |_| {}).await;
    let run = server.run_once("/hooks/f", &json!({"a": 7})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let form = sink.next().await;
    assert_eq!(
        form.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(form.text(), "a=7&b=x+y%26z");
    let text = sink.next().await;
    assert_eq!(text.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(text.text(), "a is 7");
    assert_eq!(text.headers["idempotency-key"], "mine-7");
    server.stop().await;
}

both!(every_status);
async fn every_status(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = format!(
        r#"
trigger:
  webhook: {{ path: /s }}
steps:
  - id: gate
    filter:
      $.event.go: true
  - id: maybe
    if: {{ $.event.extra: {{ exists: true }} }}
    transform:
      script: "event.extra * 2"
  - id: compute
    transform:
      script: |
        if event.boom == true {{ throw "exploded on purpose"; }}
        #{{ n: event.n }}
  - id: deliver
    http:
      url: "{base}/deliver"
      body: "{{{{ $.steps.compute }}}}"
      retry: {{ attempts: 3, backoff: 10ms, max_backoff: 20ms }}
"#,
        base = sink.url("")
    );
    let server = TestServer::start_on(backend, &[("s.yaml", &wf)], &[], |_| {}).await;

    // filtered: the run ends at the filter; later steps are not reached.
    let run = server.run_once("/hooks/s", &json!({"go": false})).await;
    assert_eq!(run["status"], "filtered");
    assert_eq!(step(&run, "gate")["status"], "filtered");
    assert_eq!(step(&run, "deliver")["status"], "pending");
    assert!(sink.quiet_for(Duration::from_millis(200)).await);

    // skipped + succeeded
    let run = server
        .run_once("/hooks/s", &json!({"go": true, "n": 1}))
        .await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(step(&run, "maybe")["status"], "skipped");
    assert_eq!(step(&run, "gate")["output"], true);
    assert_eq!(sink.next().await.json(), json!({"n": 1}));

    // `if` holds: the step runs.
    let run = server
        .run_once("/hooks/s", &json!({"go": true, "n": 2, "extra": 21}))
        .await;
    assert_eq!(step(&run, "maybe")["output"], 42);
    sink.next().await;

    // a script error fails the run at that step
    let run = server
        .run_once("/hooks/s", &json!({"go": true, "boom": true}))
        .await;
    assert_eq!(run["status"], "failed");
    let compute = step(&run, "compute");
    assert_eq!(compute["status"], "failed");
    assert!(
        compute["error"]
            .as_str()
            .is_some_and(|e| e.contains("exploded on purpose")),
        "{compute}"
    );
    assert_eq!(run["error"], compute["error"]);

    // 400 is not retried
    sink.answer(
        "/deliver",
        vec![(400, vec![], "{\"error\":\"bad\"}".into())],
    );
    let run = server
        .run_once("/hooks/s", &json!({"go": true, "n": 3}))
        .await;
    assert_eq!(run["status"], "failed");
    let deliver = step(&run, "deliver");
    assert_eq!(deliver["error"], "HTTP 400");
    assert_eq!(deliver["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        deliver["attempts"][0]["response"]["body"],
        json!({"error": "bad"})
    );
    sink.next().await;

    // 503 then 200: retried with the same Idempotency-Key
    sink.answer("/deliver", vec![(503, vec![], "{}".into())]);
    let run = server
        .run_once("/hooks/s", &json!({"go": true, "n": 4}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let deliver = step(&run, "deliver");
    assert_eq!(deliver["attempts"].as_array().map(Vec::len), Some(2));
    let first = sink.next().await;
    let second = sink.next().await;
    assert_eq!(
        first.headers["idempotency-key"],
        second.headers["idempotency-key"]
    );

    // exhausted attempts: failed with every attempt kept
    sink.answer(
        "/deliver",
        vec![
            (500, vec![], "{}".into()),
            (502, vec![], "{}".into()),
            (503, vec![], "{}".into()),
        ],
    );
    let run = server
        .run_once("/hooks/s", &json!({"go": true, "n": 5}))
        .await;
    assert_eq!(run["status"], "failed");
    let deliver = step(&run, "deliver");
    assert_eq!(deliver["attempts"].as_array().map(Vec::len), Some(3));
    assert_eq!(deliver["error"], "HTTP 503 (gave up after 3 attempts)");
    server.stop().await;
}

both!(fan_out_gives_each_matching_workflow_its_own_run);
async fn fan_out_gives_each_matching_workflow_its_own_run(backend: Backend) {
    let mk = |name: &str, when: &str| {
        format!("name: {name}\ntrigger:\n  webhook: {{ path: /shared }}\n  when: {when}\nsteps:\n  - id: s\n    transform:\n      script: 'workflow.name'\n")
    };
    let a = mk("alpha", "{ $.event.n: { gt: 1 } }");
    let b = mk("beta", "{ $.event.n: { gt: 5 } }");
    let c = mk("gamma", "{ $.event.n: { lt: 0 } }");
    let server = TestServer::start_on(
        backend,
        &[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &c)],
        &[],
        |_| {},
    )
    .await;
    let (code, body) = server.post_json("/hooks/shared", &json!({"n": 10})).await;
    assert_eq!(code, 202);
    let runs = body["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 2, "{body}");
    let mut names = Vec::new();
    for r in &runs {
        let run = server.wait_run(r.as_str().expect("id")).await;
        assert_eq!(run["status"], "succeeded");
        names.push(
            step(&run, "s")["output"]
                .as_str()
                .expect("name")
                .to_string(),
        );
    }
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    let (_, event) = server
        .get(&format!(
            "/api/events/{}",
            body["event_id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(event["runs"], json!(runs));
    server.stop().await;
}

both!(form_text_and_query_reach_the_context);
async fn form_text_and_query_reach_the_context(backend: Backend) {
    let wf = "trigger:\n  webhook: { path: /b }\nsteps:\n  - id: echo\n    transform:\n      script: '#{ event: event, query: request.query, method: request.method, path: request.path }'\n";
    let server = TestServer::start_on(backend, &[("b.yaml", wf)], &[], |_| {}).await;
    let (code, body) = server
        .post_raw(
            "/hooks/b?src=x&n=1",
            "application/x-www-form-urlencoded",
            "payload=%7B%22a%22%3A1%7D&user=jo+e",
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let run = server
        .wait_run(body["runs"][0].as_str().expect("run"))
        .await;
    assert_eq!(
        step(&run, "echo")["output"],
        json!({"event": {"payload": "{\"a\":1}", "user": "jo e"}, "query": {"src": "x", "n": "1"}, "method": "POST", "path": "/hooks/b"})
    );
    let (code, body) = server.post_raw("/hooks/b", "text/plain", "just text").await;
    assert_eq!(code, 202);
    let run = server
        .wait_run(body["runs"][0].as_str().expect("run"))
        .await;
    assert_eq!(step(&run, "echo")["output"]["event"], "just text");
    let (code, _) = server
        .post_raw("/hooks/b", "text/plain", vec![0xff, 0xfe, 0x00])
        .await;
    assert_eq!(code, 400);
    server.stop().await;
}

both!(state_lasts_across_runs_and_is_per_workflow);
async fn state_lasts_across_runs_and_is_per_workflow(backend: Backend) {
    let counter = |name: &str| {
        format!("name: {name}\ntrigger:\n  webhook: {{ path: /{name} }}\nsteps:\n  - id: count\n    transform:\n      file: count.rhai\n")
    };
    let script =
        "let n = (state_get(\"seen\") ?? 0) + 1;\nstate_set(\"seen\", n);\nlog(`seen ${n}`);\nn\n";
    let server = TestServer::start_on(
        backend,
        &[("one.yaml", &counter("one")), ("two.yaml", &counter("two"))],
        &[("count.rhai", script)],
        |_| {},
    )
    .await;
    for expected in 1..=3 {
        let run = server.run_once("/hooks/one", &json!({})).await;
        assert_eq!(step(&run, "count")["output"], expected);
        assert_eq!(
            step(&run, "count")["logs"],
            json!([format!("seen {expected}")])
        );
    }
    let run = server.run_once("/hooks/two", &json!({})).await;
    assert_eq!(step(&run, "count")["output"], 1);
    server.stop().await;
}

both!(a_runaway_script_fails_only_its_own_run);
async fn a_runaway_script_fails_only_its_own_run(backend: Backend) {
    let looping = "trigger:\n  webhook: { path: /loop }\nsteps:\n  - id: spin\n    transform:\n      script: 'let x = 0; loop { x += 1; }'\n";
    let deep = "trigger:\n  webhook: { path: /deep }\nsteps:\n  - id: recurse\n    transform:\n      script: 'fn f(n) { f(n + 1) } f(0)'\n";
    let fine = "trigger:\n  webhook: { path: /fine }\nsteps:\n  - id: ok\n    transform:\n      script: '1 + 1'\n";
    // Operations are unbounded here, so the wall-time limit is what stops the loop.
    let server = TestServer::start_on(
        backend,
        &[
            ("loop.yaml", looping),
            ("deep.yaml", deep),
            ("fine.yaml", fine),
        ],
        &[],
        |c| {
            c.script_timeout = std::time::Duration::from_millis(300);
            c.script_max_operations = u64::MAX / 2;
        },
    )
    .await;
    let (_, spin) = server.post_json("/hooks/loop", &json!({})).await;
    let (_, deep) = server.post_json("/hooks/deep", &json!({})).await;
    let run = server.run_once("/hooks/fine", &json!({})).await;
    assert_eq!(run["status"], "succeeded");
    let spun = server
        .wait_run(spin["runs"][0].as_str().expect("run"))
        .await;
    assert_eq!(spun["status"], "failed");
    assert!(
        step(&spun, "spin")["error"]
            .as_str()
            .is_some_and(|e| e.contains("limit")),
        "{spun}"
    );
    let deep = server
        .wait_run(deep["runs"][0].as_str().expect("run"))
        .await;
    assert_eq!(deep["status"], "failed");
    assert!(
        step(&deep, "recurse")["error"]
            .as_str()
            .is_some_and(|e| e.contains("call depth") || e.contains("limit")),
        "{deep}"
    );
    server.stop().await;
}

both!(a_broken_file_is_reported_and_the_others_keep_working);
async fn a_broken_file_is_reported_and_the_others_keep_working(backend: Backend) {
    let good = "trigger:\n  webhook: { path: /good }\nsteps:\n  - id: ok\n    transform:\n      script: '\"fine\"'\n";
    let broken = "name: broken\ntrigger:\n  webhook: { path: /broken }\nsteps:\n  - id: bad\n    filtr:\n      $.a: 1\n";
    let server = TestServer::start_on(
        backend,
        &[("good.yaml", good), ("broken.yaml", broken)],
        &[],
        |_| {},
    )
    .await;
    let (_, list) = server.get("/api/workflows").await;
    let items = list.as_array().expect("array");
    let broken_entry = items
        .iter()
        .find(|w| w["name"] == "broken")
        .expect("listed");
    assert_eq!(broken_entry["status"], "invalid");
    assert_eq!(broken_entry["path"], "/broken");
    let errors = broken_entry["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e.as_str().is_some_and(
            |e| e.ends_with("broken.yaml:6:5: unknown key `filtr`; did you mean `filter`?")
        )),
        "{errors:?}"
    );
    let good_entry = items.iter().find(|w| w["name"] == "good").expect("listed");
    assert_eq!(good_entry["status"], "loaded");
    assert_eq!(good_entry["hook"], "/hooks/good");
    let run = server.run_once("/hooks/good", &json!({})).await;
    assert_eq!(run["status"], "succeeded");
    let (code, _) = server.post_json("/hooks/broken", &json!({})).await;
    assert_eq!(code, 404);
    let (code, detail) = server.get("/api/workflows/good").await;
    assert_eq!(code, 200);
    assert!(detail["source"]
        .as_str()
        .is_some_and(|s| s.contains("/good")));
    assert_eq!(server.get("/api/workflows/nope").await.0, 404);
    server.stop().await;
}

both!(history_lists_newest_first_with_filters_and_cursor);
async fn history_lists_newest_first_with_filters_and_cursor(backend: Backend) {
    let a = "name: a\ntrigger:\n  webhook: { path: /a }\nsteps:\n  - id: gate\n    filter: { $.event.ok: true }\n";
    let b = "name: b\ntrigger:\n  webhook: { path: /b }\nsteps:\n  - id: gate\n    filter: { $.event.ok: true }\n";
    let server = TestServer::start_on(backend, &[("a.yaml", a), ("b.yaml", b)], &[], |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let run = server
            .run_once("/hooks/a", &json!({"ok": i % 2 == 0}))
            .await;
        ids.push(run["id"].as_str().expect("id").to_string());
    }
    server.run_once("/hooks/b", &json!({"ok": true})).await;

    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..5 {
        let (code, page) = server
            .get(&format!("/api/runs?workflow=a&limit=2&before={cursor}"))
            .await;
        assert_eq!(code, 200);
        for r in page["items"].as_array().expect("items") {
            seen.push(r["id"].as_str().expect("id").to_string());
        }
        match page["next_before"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every run of `a`, newest first, once");

    let (_, filtered) = server.get("/api/runs?workflow=a&status=filtered").await;
    assert_eq!(filtered["items"].as_array().map(Vec::len), Some(2));
    let (_, succeeded) = server.get("/api/runs?status=succeeded").await;
    assert_eq!(succeeded["items"].as_array().map(Vec::len), Some(4));
    assert_eq!(server.get("/api/runs?status=bogus").await.0, 400);
    assert_eq!(server.get("/api/runs/run_nope").await.0, 404);
    let (_, events) = server.get("/api/events?workflow=b").await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(1));
    let (_, events) = server.get("/api/events?outcome=accepted&limit=3").await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(3));
    assert!(events["next_before"].is_string());
    let (code, health) = server.get("/healthz").await;
    assert_eq!((code, health), (200, json!({"status": "ok"})));
    server.stop().await;
}
