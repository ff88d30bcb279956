//! The connector mechanism (SPEC §9): connector files checked with
//! FILE:LINE:COL, `with:` checked against an action's params at the
//! workflow's line, `hookflow schema` and `hookflow connectors`, a `uses`
//! step behaving as an `http` step (retries, Idempotency-Key, attempts,
//! outbound policy, `mock:` in tests), `ok_when` and `error`, run-time
//! parameter checks, the client-credentials grant, hot reload of a changed
//! connector, and what `/api/workflows` shows of a workflow's connectors.

mod common;

use common::standin::{Reply, Route, StandIn};
use common::{binary, write_files, Backend, Sink, TestServer};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const SHOP: &str = r#"connector: shop
description: A shop's order API
docs: https://shop.example.com/docs/api
base_url: https://shop.example.com/api
auth:
  header: { name: X-Api-Key, value: "{{ env.SHOP_API_KEY }}" }
actions:
  create_order:
    description: Create an order
    params:
      customer: { type: string, required: true, description: The customer's id }
      quantity: { type: integer, description: How many }
      tags: { type: array }
      priority: { type: string, enum: [low, high], default: low }
    http:
      path: /orders
      body:
        customer: "{{ $.params.customer }}"
        quantity: "{{ $.params.quantity }}"
        tags: "{{ $.params.tags }}"
        priority: "{{ $.params.priority }}"
        channel: "{{ env.SHOP_CHANNEL ?? \"web\" }}"
"#;

const BROKEN_WITH: &str = r#"name: orders
trigger:
  webhook: { path: /o }
steps:
  - id: notify
    uses: shop.create_order
    with:
      custmer: "{{ $.event.customer }}"
      quantity: lots
      tags: urgent
      priority: highest
  - id: other
    uses: shop.creat_order
    with: { customer: c }
  - id: third
    uses: shpo.create_order
  - id: fourth
    uses: shop
  - id: fifth
    http: { url: "https://x.example.com" }
    with: { a: 1 }
"#;

fn validate(dir: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.arg("validate")
        .arg("--connectors")
        .arg(dir.join("connectors"))
        .arg(dir.join("workflows"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_each_with_problem_at_the_workflows_line() {
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("connectors"), &[("shop.yaml", SHOP)]);
    write_files(
        &dir.path().join("workflows"),
        &[("orders.yaml", BROKEN_WITH)],
    );
    let (code, out, err) = validate(dir.path(), &[("SHOP_API_KEY", "k-123456")]);
    assert_eq!(code, 1, "{out}{err}");
    let wf = dir.path().join("workflows").join("orders.yaml");
    let conn = dir.path().join("connectors");
    let w = wf.display();
    let expected = vec![
        format!("{w}:6:11: with: `shop.create_order` needs `customer`"),
        format!("{w}:8:7: with: unknown parameter `custmer` of `shop.create_order`; did you mean `customer`?"),
        format!("{w}:9:17: with: `quantity` must be a whole number, found text"),
        format!("{w}:10:13: with: `tags` must be a list, found text"),
        format!("{w}:11:17: with: `priority` must be one of: low, high; found `highest`"),
        format!("{w}:13:11: uses: connector `shop` has no action `creat_order`; did you mean `create_order`?"),
        format!("{w}:16:11: uses: no connector `shpo` in {}; did you mean `shop`?", conn.display()),
        format!("{w}:18:11: uses: write `connector.action`, e.g. `shop.create_order`"),
        format!("{w}:21:11: `with` gives the parameters of a `uses` step; this step has no `uses`"),
    ];
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, expected, "{out}");

    // Unset variables a connector reads are named at the `uses:` line,
    // with the connector file's own position.
    write_files(
        &dir.path().join("workflows"),
        &[(
            "orders.yaml",
            "name: orders\ntrigger:\n  webhook: { path: /o }\nsteps:\n  - id: notify\n    uses: shop.create_order\n    with: { customer: c-1 }\n",
        )],
    );
    let (code, out, _) = validate(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "{w}:6:11: uses `shop.create_order`: {}:6:37: auth: environment variable `SHOP_API_KEY` is not set; set it, or give a fallback: `{{{{ env.SHOP_API_KEY ?? \"value\" }}}}`",
            conn.join("shop.yaml").display()
        )
    );
    let (code, out, err) = validate(dir.path(), &[("SHOP_API_KEY", "k-123456")]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn validate_reports_connector_file_problems_in_the_connector_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let broken = r#"connector: shop
base_url: https://shop.example.com/api
actions:
  create_order:
    params:
      customer: { type: strng, required: true }
    http:
      pth: /orders
      body: { c: "{{ $.params.custmer }}" }
    ok_when: { $.response.body.ok: { eqq: true } }
  Bad-Name:
    http: { path: /x, url: "https://other.example.com" }
"#;
    write_files(&dir.path().join("connectors"), &[("shop.yaml", broken)]);
    write_files(
        &dir.path().join("workflows"),
        &[(
            "orders.yaml",
            "name: orders\ntrigger:\n  webhook: { path: /o }\nsteps:\n  - id: n\n    uses: shop.create_order\n    with: { customer: c }\n",
        )],
    );
    let (code, out, _) = validate(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    let c = dir.path().join("connectors").join("shop.yaml");
    let c = c.display();
    for line in [
        format!("{c}:6:25: unknown value `strng`; did you mean `string`?"),
        format!("{c}:8:7: unknown key `pth`; did you mean `path`?"),
        format!("{c}:11:3: action name `Bad-Name` may only hold a-z, 0-9 and `_`, and must start with a letter"),
        format!("{c}:12:11: an action's `http` has either `path` (under `base_url`) or `url`, not both"),
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    // The workflow that uses the broken connector says so, and where.
    let w = dir.path().join("workflows").join("orders.yaml");
    assert!(
        out.lines().any(|l| l
            == format!(
                "{}:6:11: uses: connector `shop` is invalid; see the problems reported in {c}",
                w.display()
            )),
        "{out}"
    );
}

#[test]
fn a_params_reference_to_an_unknown_parameter_is_caught() {
    let dir = tempfile::tempdir().expect("tmp");
    let conn = SHOP.replace("{{ $.params.tags }}", "{{ $.params.tag }}");
    write_files(&dir.path().join("connectors"), &[("shop.yaml", &conn)]);
    write_files(&dir.path().join("workflows"), &[]);
    let (code, out, _) = validate(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    let c = dir.path().join("connectors").join("shop.yaml");
    assert!(
        out.contains(&format!(
            "{}:20:15: `$.params.tag` names no parameter of `create_order`; did you mean `tags`?",
            c.display()
        )),
        "{out}"
    );
}

#[test]
fn the_schema_completes_uses_and_with_and_rejects_what_an_action_lacks() {
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("connectors"), &[("shop.yaml", SHOP)]);
    let out = Command::new(binary())
        .arg("schema")
        .arg("--connectors")
        .arg(dir.path().join("connectors"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let schema: Value = serde_json::from_slice(&out.stdout).expect("json");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let doc = |step: &str| -> Value {
        serde_yaml::from_str(&format!(
            "trigger: {{ webhook: {{ path: /x }} }}\nsteps:\n  - {step}\n"
        ))
        .expect("yaml")
    };
    let good = doc("{ id: a, uses: shop.create_order, with: { customer: c, quantity: 2, tags: [x], priority: high } }");
    let errors: Vec<String> = validator
        .iter_errors(&good)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // A template may stand for any type.
    assert!(validator.is_valid(&doc(
        "{ id: a, uses: shop.create_order, with: { customer: c, quantity: \"{{ $.event.n }}\" } }"
    )));
    for bad in [
        "{ id: a, uses: shop.create_order, with: { customer: c, colour: red } }",
        "{ id: a, uses: shop.create_order, with: { quantity: 2 } }",
        "{ id: a, uses: shop.create_order, with: { customer: c, priority: highest } }",
        "{ id: a, uses: shop.create_order, with: { customer: c, tags: x } }",
        "{ id: a, uses: shop.creat_order, with: { customer: c } }",
    ] {
        assert!(!validator.is_valid(&doc(bad)), "accepted: {bad}");
    }
    // The editor sees each action with its description.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shop.create_order") && text.contains("Create an order"));
    assert!(text.contains("The customer's id"));
}

#[test]
fn the_connectors_command_lists_actions_and_their_params() {
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("connectors"), &[("shop.yaml", SHOP)]);
    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .arg("connectors")
            .args(args)
            .arg("--connectors")
            .arg(dir.path().join("connectors"))
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("shop") && out.contains("A shop's order API"),
        "{out}"
    );
    assert!(out.contains("shop.create_order"), "{out}");
    let (code, out, _) = run(&["shop"]);
    assert_eq!(code, 0, "{out}");
    for words in [
        "https://shop.example.com/docs/api",
        "SHOP_API_KEY",
        "shop.create_order",
        "Create an order",
        "customer",
        "string, required",
        "The customer's id",
        "quantity",
        "integer",
        "priority",
        "low, high",
        "SHOP_CHANNEL (optional)",
    ] {
        assert!(out.contains(words), "{words:?} missing in\n{out}");
    }
    let (code, _, err) = run(&["shpo"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no connector `shpo`; did you mean `shop`?"),
        "{err}"
    );
}

/// A connector whose base URL is a sink on loopback (written into the
/// file), with no secrets: for the in-process server.
fn sink_connector(sink: &Sink, extra: &str) -> String {
    format!(
        r#"connector: sinkapp
description: An app served by the test's sink
base_url: "{}"
actions:
  send:
    params:
      text: {{ type: string, required: true }}
      count: {{ type: integer }}
    http:
      path: /send/{{{{ $.params.text }}}}
      query: {{ n: "{{{{ $.params.count }}}}" }}
      body: {{ text: "{{{{ $.params.text }}}}", count: "{{{{ $.params.count }}}}", meta: {{ count: "{{{{ $.params.count }}}}" }} }}
      retry: {{ attempts: 3, backoff: 10ms }}
    ok_when: {{ $.response.body.accepted: true }}
    error: "{{{{ $.response.body.reason }}}}"
{extra}"#,
        sink.url("/api")
    )
}

const USES_SINK: &str = "name: u\ntrigger:\n  webhook: { path: /u }\nsteps:\n  - id: send\n    uses: sinkapp.send\n    with:\n      text: \"{{ $.event.text }}\"\n      count: \"{{ $.event.count }}\"\n";

both!(
    a_uses_step_retries_and_records_like_an_http_step,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_uses_step_retries_and_records_like_an_http_step(backend: Backend) {
    let mut sink = Sink::start().await;
    let conn = sink_connector(&sink, "");
    let server = TestServer::start_with_connectors_on(
        backend,
        &[("u.yaml", USES_SINK), ("gated.yaml", USES_GATED)],
        &[("sinkapp.yaml", &conn)],
    )
    .await;
    sink.answer(
        "/api/send/hi",
        vec![
            (
                503,
                vec![],
                "{\"accepted\":false,\"reason\":\"busy\"}".into(),
            ),
            (200, vec![], "{\"accepted\":true}".into()),
        ],
    );
    let run = server
        .run_once("/hooks/u", &json!({"text": "hi", "count": 2}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let step = &run["steps"][0];
    assert_eq!(step["uses"], "sinkapp.send");
    let attempts = step["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["error"], "HTTP 503: busy");
    let first = sink.next().await;
    let second = sink.next().await;
    assert_eq!(first.uri, "/api/send/hi?n=2");
    assert_eq!(
        first.json(),
        json!({"text": "hi", "count": 2, "meta": {"count": 2}})
    );
    let key = format!("{}.send", run["id"].as_str().expect("id"));
    assert_eq!(first.headers["idempotency-key"], key);
    assert_eq!(second.headers["idempotency-key"], key);

    // `ok_when` fails a 2xx, with the connector's error.
    sink.answer(
        "/api/send/no",
        vec![(
            200,
            vec![],
            "{\"accepted\":false,\"reason\":\"quota exceeded\"}".into(),
        )],
    );
    let run = server.run_once("/hooks/u", &json!({"text": "no"})).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["steps"][0]["error"], "quota exceeded");
    assert_eq!(
        run["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(1)
    );
    // A parameter the workflow left out is left out of the query and the
    // body, and so is the object it alone filled.
    let sent = sink.next().await;
    assert_eq!(sent.uri, "/api/send/no");
    assert_eq!(sent.json(), json!({"text": "no"}));

    // A parameter rendered to the wrong type fails before anything is sent.
    let run = server
        .run_once("/hooks/u", &json!({"text": "x", "count": "many"}))
        .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["steps"][0]["error"],
        "with: `count` must be a whole number, but `{{ $.event.count }}` gave text"
    );
    assert_eq!(
        run["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(0)
    );
    // So does a required one rendered to nothing.
    let run = server.run_once("/hooks/u", &json!({})).await;
    assert_eq!(
        run["steps"][0]["error"],
        "with: `text` is required, but `{{ $.event.text }}` gave nothing"
    );
    // A path segment from event data stays one segment; `..` is refused.
    let run = server.run_once("/hooks/u", &json!({"text": ".."})).await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["steps"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("`..`") && e.contains("nothing was sent")),
        "{run}"
    );
    // A `uses` step the run never reached still names its action (SPEC
    // §8: a `uses` step record adds `uses`), read back from the store.
    let run = server.run_once("/hooks/gated", &json!({"go": false})).await;
    assert_eq!(run["status"], "filtered", "{run}");
    assert_eq!(run["steps"][1]["status"], "pending", "{run}");
    assert_eq!(run["steps"][1]["uses"], "sinkapp.send", "{run}");
    assert!(sink.quiet_for(Duration::from_millis(300)).await);
    server.stop().await;
}

/// A gate, then a `uses` step (not reached when the gate filters).
const USES_GATED: &str = "name: gated\ntrigger:\n  webhook: { path: /gated }\nsteps:\n  - id: gate\n    filter: { $.event.go: true }\n  - id: send\n    uses: sinkapp.send\n    with:\n      text: \"{{ $.event.text }}\"\n";

both!(
    a_uses_step_obeys_the_outbound_policy,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_uses_step_obeys_the_outbound_policy(backend: Backend) {
    let sink = Sink::start().await;
    let conn = sink_connector(&sink, "");
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("workflows"), &[("u.yaml", USES_SINK)]);
    write_files(&dir.path().join("connectors"), &[("sinkapp.yaml", &conn)]);
    let store = backend.store_args(dir.path());
    let server = common::BinServer::start(
        &common::with_store(
            &[
                "--workflows",
                &dir.path().join("workflows").display().to_string(),
                "--connectors",
                &dir.path().join("connectors").display().to_string(),
                "--deny-private-network",
            ],
            &store,
        ),
        &[],
    );
    let client = common::client();
    let answer = common::post_at(&client, &server.url("/hooks/u"), &json!({"text": "a"})).await;
    let run = common::wait_run_at(
        &client,
        &server.base,
        answer["runs"][0].as_str().expect("run"),
    )
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["steps"][0]["error"].as_str().expect("error");
    assert!(error.contains("127.0.0.1"), "{error}");
}

#[test]
fn a_uses_step_is_mocked_in_workflow_tests() {
    let dir = tempfile::tempdir().expect("tmp");
    let conn = r#"connector: sinkapp
base_url: https://sink.example.com/api
auth:
  bearer: "{{ env.SINKAPP_TOKEN }}"
actions:
  send:
    params:
      text: { type: string, required: true }
    http:
      path: /send
      body: { text: "{{ $.params.text }}" }
    ok_when: { $.response.body.accepted: true }
    error: "{{ $.response.body.reason }}"
"#;
    let wf = "name: u\ntrigger:\n  webhook: { path: /u }\nsteps:\n  - id: send\n    uses: sinkapp.send\n    with: { text: \"{{ $.event.text }}\" }\n";
    let suite = r#"workflow: u
cases:
  - name: accepted
    env: { SINKAPP_TOKEN: tok-from-the-case }
    request: { event: { text: hi } }
    mock:
      send: { status: 200, body: { accepted: true } }
    expect:
      status: succeeded
      steps:
        send:
          request:
            url: https://sink.example.com/api/send
            headers: { Authorization: Bearer tok-from-the-case }
            body: { text: hi }
  - name: refused by ok_when
    env: { SINKAPP_TOKEN: tok-from-the-case }
    request: { event: { text: hi } }
    mock:
      send: { status: 200, body: { accepted: false, reason: nope } }
    expect:
      status: failed
      steps:
        send: { status: failed, error: nope }
"#;
    write_files(&dir.path().join("connectors"), &[("sinkapp.yaml", conn)]);
    write_files(
        &dir.path().join("workflows"),
        &[("u.yaml", wf), ("u.test.yaml", suite)],
    );
    let out = Command::new(binary())
        .arg("test")
        .arg("--connectors")
        .arg(dir.path().join("connectors"))
        .arg(dir.path().join("workflows"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().last(), Some("2 passed, 0 failed"), "{text}");
}

both!(
    a_changed_connector_recompiles_the_workflows_that_use_it,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_changed_connector_recompiles_the_workflows_that_use_it(backend: Backend) {
    let mut sink = Sink::start().await;
    let conn = sink_connector(&sink, "");
    let other = "name: other\ntrigger:\n  webhook: { path: /other }\nsteps:\n  - id: t\n    transform: { script: '1' }\n";
    let server = TestServer::start_with_connectors_on(
        backend,
        &[("u.yaml", USES_SINK), ("other.yaml", other)],
        &[("sinkapp.yaml", &conn)],
    )
    .await;
    let versions = |list: &Value| -> (Value, Value) {
        let of = |name: &str| {
            list.as_array()
                .and_then(|l| l.iter().find(|w| w["name"] == name))
                .map(|w| w["version"].clone())
                .unwrap_or(Value::Null)
        };
        (of("u"), of("other"))
    };
    let (_, list) = server.get("/api/workflows").await;
    let (u1, other1) = versions(&list);
    sink.answer(
        "/api/send/a",
        vec![(200, vec![], "{\"accepted\":true}".into())],
    );
    let run = server.run_once("/hooks/u", &json!({"text": "a"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(sink.next().await.uri, "/api/send/a");

    // The connector moves its endpoint: the workflow follows.
    let moved = conn.replace("path: /send/", "path: /v2/send/");
    std::fs::write(
        server.dir.path().join("connectors").join("sinkapp.yaml"),
        moved,
    )
    .expect("edit");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (u2, other2) = loop {
        let (_, list) = server.get("/api/workflows").await;
        let (u2, other2) = versions(&list);
        if u2 != u1 {
            break (u2, other2);
        }
        assert!(
            Instant::now() < deadline,
            "the workflow was never recompiled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(u2, Value::Null);
    assert_eq!(
        other1, other2,
        "a workflow without the connector is unchanged"
    );
    sink.answer(
        "/api/v2/send/b",
        vec![(200, vec![], "{\"accepted\":true}".into())],
    );
    let run = server.run_once("/hooks/u", &json!({"text": "b"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["workflow_version"], u2);
    assert_eq!(sink.next().await.uri, "/api/v2/send/b");

    // A connector that breaks leaves the last good version serving.
    std::fs::write(
        server.dir.path().join("connectors").join("sinkapp.yaml"),
        "connector: sinkapp\nactions: { send: { htp: {} } }\n",
    )
    .expect("break");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = server.get("/api/workflows").await;
        let u = list
            .as_array()
            .and_then(|l| l.iter().find(|w| w["name"] == "u"))
            .cloned()
            .unwrap_or(Value::Null);
        if u["status"] == "invalid" {
            assert_eq!(u["serving_version"], u2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken connector was never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.answer(
        "/api/v2/send/c",
        vec![(200, vec![], "{\"accepted\":true}".into())],
    );
    let run = server.run_once("/hooks/u", &json!({"text": "c"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    server.stop().await;
}

both!(
    client_credentials_without_a_refresh_token,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn client_credentials_without_a_refresh_token(backend: Backend) {
    let token_api = StandIn::start(vec![Route::post("/oauth/token")
        .content_type("application/x-www-form-urlencoded")
        .check(|r| {
            let f = r.form();
            match (f.get("grant_type").map(String::as_str), f.get("scope")) {
                (Some("client_credentials"), Some(s)) if s == "orders:write orders:read" => Ok(()),
                other => Err(format!("expected the client_credentials grant with scopes, got {other:?}")),
            }
        })
        .check(|r| match r.basic() {
            Some((u, p)) if u == "cc-client" && p == "cc-secret-value-77" => Ok(()),
            other => Err(format!("expected the client in Basic auth, got {other:?}")),
        })
        .reply(|_| Reply::json(200, json!({"access_token": "cc-access-token-0001", "token_type": "Bearer", "expires_in": 3600})))])
    .await;
    let app = StandIn::start(vec![Route::post("/orders")
        .bearer(
            "cc-access-token-0001",
            Reply::json(401, json!({"error": "unauthorized"})),
        )
        .reply(|_| Reply::json(201, json!({"id": "ord_1"})))])
    .await;
    let conn = format!(
        r#"connector: ccapp
base_url: "{}"
auth:
  oauth2:
    token_url: "{}"
    client_id: "{{{{ env.CCAPP_CLIENT_ID }}}}"
    client_secret: "{{{{ env.CCAPP_CLIENT_SECRET }}}}"
    scopes: [orders:write, orders:read]
    client_auth: basic
actions:
  create:
    http: {{ path: /orders, body: {{ n: 1 }} }}
"#,
        app.base,
        token_api.url("/oauth/token")
    );
    let dir = tempfile::tempdir().expect("tmp");
    write_files(dir.path(), &[("ccapp.yaml", &conn)]);
    let h = common::connector::Harness::start_with(
        backend,
        "name: cc\ntrigger:\n  webhook: { path: /cc }\nsteps:\n  - id: create\n    uses: ccapp.create\n",
        &[
            ("CCAPP_CLIENT_ID", "cc-client"),
            ("CCAPP_CLIENT_SECRET", "cc-secret-value-77"),
        ],
        &dir.path().display().to_string(),
    );
    let run = h.run("/cc", &json!({})).await;
    assert_eq!(token_api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"][0]["output"]["body"]["id"], "ord_1");
    let all = h.history_and_log().await;
    assert!(!all.contains("cc-access-token-0001") && !all.contains("cc-secret-value-77"));
}

both!(
    the_api_shows_each_workflows_connectors_and_their_unset_variables,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_api_shows_each_workflows_connectors_and_their_unset_variables(backend: Backend) {
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("connectors"), &[("shop.yaml", SHOP)]);
    let wf = "name: orders\ntrigger:\n  webhook: { path: /o }\nsteps:\n  - id: n\n    uses: shop.create_order\n    with: { customer: c }\n";
    write_files(&dir.path().join("workflows"), &[("orders.yaml", wf)]);
    let store = backend.store_args(dir.path());
    let server = common::BinServer::start(
        &common::with_store(
            &[
                "--workflows",
                &dir.path().join("workflows").display().to_string(),
                "--connectors",
                &dir.path().join("connectors").display().to_string(),
            ],
            &store,
        ),
        &[],
    );
    let client = common::client();
    let list = common::get_at(&client, &server.url("/api/workflows")).await;
    let orders = list
        .as_array()
        .and_then(|l| l.iter().find(|w| w["name"] == "orders"))
        .cloned()
        .expect("listed");
    assert_eq!(orders["status"], "invalid");
    assert_eq!(
        orders["connectors"],
        json!([{
            "name": "shop",
            "actions": ["shop.create_order"],
            "found": true,
            "env": [
                {"name": "SHOP_CHANNEL", "set": false, "optional": true},
                {"name": "SHOP_API_KEY", "set": false, "optional": false}
            ]
        }])
    );
    let one = common::get_at(&client, &server.url("/api/workflows/orders")).await;
    assert_eq!(one["connectors"], orders["connectors"]);
}

both!(
    a_recorded_version_keeps_the_connector_it_was_built_with,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
/// A workflow version keeps the connector files it was built with: after
/// the connector changed and the server restarted (nothing in memory), a
/// replay on the recorded version sends what the old connector said.
async fn a_recorded_version_keeps_the_connector_it_was_built_with(backend: Backend) {
    let mut sink = Sink::start().await;
    let conn = sink_connector(&sink, "");
    let server = TestServer::start_with_connectors_on(
        backend,
        &[("u.yaml", USES_SINK)],
        &[("sinkapp.yaml", &conn)],
    )
    .await;
    sink.answer(
        "/api/send/a",
        vec![(200, vec![], "{\"accepted\":true}".into())],
    );
    let run = server.run_once("/hooks/u", &json!({"text": "a"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(sink.next().await.uri, "/api/send/a");
    let v1 = run["workflow_version"].clone();

    std::fs::write(
        server.dir.path().join("connectors").join("sinkapp.yaml"),
        conn.replace("path: /send/", "path: /v2/send/"),
    )
    .expect("edit");
    let server = server.restart(&[("u.yaml", USES_SINK)]).await;
    let (_, list) = server.get("/api/workflows").await;
    assert_ne!(
        list[0]["version"], v1,
        "the new connector gives a new version"
    );

    // The answer is set before the replay: it may run before the 201.
    sink.answer(
        "/api/send/a",
        vec![(200, vec![], "{\"accepted\":true}".into())],
    );
    let resp = server
        .client
        .post(server.url(&format!(
            "/api/runs/{}/replay",
            run["id"].as_str().expect("id")
        )))
        .header("content-type", "application/json")
        .body(r#"{"version": "recorded"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    let replay: Value = resp.json().await.expect("json");
    let replayed = server
        .wait_run(replay["run_id"].as_str().expect("run id"))
        .await;
    assert_eq!(replayed["status"], "succeeded", "{replayed}");
    assert_eq!(replayed["workflow_version"], v1);
    assert_eq!(
        sink.next().await.uri,
        "/api/send/a",
        "the old connector's path"
    );
    server.stop().await;
}

/// A compiled `uses` step holds the connector's secrets (a bearer token,
/// an OAuth2 client secret and refresh token): printing the workflow
/// (`{:?}`, as a log line or a panic might) shows none of them.
#[test]
fn a_compiled_connector_prints_no_secret() {
    use hookflow::workflow::compile::{compile, CompileEnv, ScriptDir};
    use hookflow::workflow::connector::Catalog;
    let engine = hookflow::script::Engine::default();
    let oauth = r#"connector: vault
base_url: https://vault.example.com
auth:
  oauth2:
    token_url: https://vault.example.com/token
    client_id: "{{ env.V_ID }}"
    client_secret: "{{ env.V_SECRET }}"
    refresh_token: "{{ env.V_REFRESH }}"
actions:
  put:
    params: { key: { type: string, required: true } }
    http: { path: "/put/{{ $.params.key }}", body: { k: "{{ $.params.key }}" } }
"#;
    let catalog = Catalog::from_sources(
        vec![
            ("vault.yaml".into(), oauth.into()),
            ("shop.yaml".into(), SHOP.into()),
        ],
        &engine,
    );
    let env = |n: &str| {
        match n {
            "V_ID" => Some("client-id-0001"),
            "V_SECRET" => Some("client-secret-c0ffee"),
            "V_REFRESH" => Some("refresh-token-beef"),
            "SHOP_API_KEY" => Some("shop-key-7777"),
            _ => None,
        }
        .map(str::to_string)
    };
    let wf = "name: v\ntrigger:\n  webhook: { path: /v }\nsteps:\n  - id: a\n    uses: vault.put\n    with: { key: k }\n  - id: b\n    uses: shop.create_order\n    with: { customer: c }\n";
    let compiled = compile(
        std::path::Path::new("v.yaml"),
        wf,
        &CompileEnv {
            env: &env,
            scripts: &ScriptDir("scripts".into()),
            engine: &engine,
            connectors: &catalog,
        },
    )
    .expect("compiles");
    let text = format!("{compiled:?} {compiled:#?}");
    for secret in [
        "client-secret-c0ffee",
        "refresh-token-beef",
        "shop-key-7777",
    ] {
        assert!(!text.contains(secret), "{secret} printed");
    }
    // And they are the workflow's secrets: redacted from what it stores.
    for secret in [
        "client-secret-c0ffee",
        "refresh-token-beef",
        "shop-key-7777",
    ] {
        assert_eq!(compiled.redactor.redacted(secret), "[redacted]");
    }
}
