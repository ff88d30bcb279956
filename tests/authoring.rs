//! Authoring: `hookflow test` on passing and failing suites, `hookflow run`
//! with and without `--send`, the JSON Schema, a recorded run turned into a
//! test case, and hot reload under traffic.

mod common;

use common::{binary, write_files, Backend, BinServer, Sink, TestServer};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_shipped_workflow_passes_its_suite() {
    let out = Command::new(binary())
        .current_dir(root())
        .args(["test", "workflows"])
        .output()
        .expect("runs");
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().last(), Some("28 passed, 0 failed"), "{text}");
    // Every shipped workflow has a suite.
    for wf in std::fs::read_dir(format!("{}/workflows", root()))
        .expect("dir")
        .flatten()
    {
        let name = wf.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".yaml").filter(|s| !s.ends_with(".test")) {
            assert!(
                std::path::Path::new(&format!("{}/workflows/{stem}.test.yaml", root())).exists(),
                "{stem} has no test suite"
            );
        }
    }
}

const SHAPE: &str = "trigger:\n  webhook: { path: /s }\nsteps:\n  - id: shape\n    transform:\n      script: '#{ n: event.n, tag: \"v1\" }'\n  - id: send\n    http:\n      url: '{{ env.SHAPE_URL ?? \"http://sink.test/x\" }}'\n      body: \"{{ $.steps.shape }}\"\n";

#[test]
fn a_failing_case_shows_where_it_differs() {
    let dir = tempfile::tempdir().expect("tmp");
    let suite = "workflow: s\ncases:\n  - name: right\n    request: { event: { n: 1 } }\n    expect: { status: succeeded, steps: { shape: { output: { n: 1, tag: v1 } } } }\n  - name: wrong\n    request: { event: { n: 1 } }\n    expect: { status: succeeded, steps: { shape: { output: { n: 2, tag: v1 } } } }\n  - name: wrong url\n    env: { SHAPE_URL: \"http://elsewhere.test/y\" }\n    request: { event: { n: 1 } }\n    expect: { steps: { send: { request: { url: \"http://sink.test/x\" } } } }\n";
    write_files(dir.path(), &[("s.yaml", SHAPE), ("s.test.yaml", suite)]);
    let out = Command::new(binary())
        .arg("test")
        .arg(dir.path())
        .output()
        .expect("runs");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ok   ") && text.contains(": right"), "{text}");
    assert!(text.contains("FAIL ") && text.contains(": wrong"), "{text}");
    assert!(
        text.contains("$.steps.shape.output.n: expected 2, got 1"),
        "{text}"
    );
    assert!(text.contains("$.steps.send.request.url: expected \"http://sink.test/x\", got \"http://elsewhere.test/y\""), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 2 failed"));

    // A suite with a typo is reported at its line.
    write_files(
        dir.path(),
        &[(
            "s.test.yaml",
            "workflow: s\ncases:\n  - name: typo\n    expct: { status: succeeded }\n",
        )],
    );
    let out = Command::new(binary())
        .arg("test")
        .arg(dir.path())
        .output()
        .expect("runs");
    let text = stdout(&out);
    assert!(
        text.contains("s.test.yaml:4:5: unknown key `expct`; did you mean `expect`?"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));

    let empty = tempfile::tempdir().expect("tmp");
    let out = Command::new(binary())
        .arg("test")
        .arg(empty.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "no suites is a usage error");
}

// The binary runs while the sink answers: the sink needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_shows_the_trace_and_sends_only_when_asked() {
    let mut sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    write_files(
        dir.path(),
        &[("s.yaml", SHAPE), ("event.json", "{\"n\": 7}")],
    );
    let wf = dir.path().join("s.yaml");
    let event = dir.path().join("event.json");
    let url = sink.url("/hook");
    let dry = Command::new(binary())
        .arg("run")
        .arg(&wf)
        .arg("--event")
        .arg(&event)
        .env("SHAPE_URL", &url)
        .output()
        .expect("runs");
    let text = stdout(&dry);
    assert_eq!(dry.status.code(), Some(0), "{text}");
    // The URL came from the environment: a secret, shown redacted.
    assert!(
        text.contains("would send (dry run; --send to send) POST [redacted]")
            && !text.contains(&url),
        "{text}"
    );
    assert!(text.contains("{\"n\":7,\"tag\":\"v1\"}"), "{text}");
    assert!(
        sink.quiet_for(Duration::from_millis(300)).await,
        "a dry run sends nothing"
    );

    let sent = Command::new(binary())
        .arg("run")
        .arg(&wf)
        .arg("--event")
        .arg(&event)
        .arg("--send")
        .arg("--header")
        .arg("X-Trace: abc")
        .env("SHAPE_URL", &url)
        .output()
        .expect("runs");
    assert_eq!(sent.status.code(), Some(0), "{}", stdout(&sent));
    assert!(stdout(&sent).contains("answer: 200"), "{}", stdout(&sent));
    assert_eq!(sink.next().await.json(), json!({"n": 7, "tag": "v1"}));

    let as_json = Command::new(binary())
        .arg("run")
        .arg(&wf)
        .arg("--event")
        .arg(&event)
        .arg("--json")
        .output()
        .expect("runs");
    let run: Value = serde_json::from_slice(&as_json.stdout).expect("a run record");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["steps"][0]["output"], json!({"n": 7, "tag": "v1"}));

    let missing = Command::new(binary())
        .args(["run", "no-such-workflow", "--event"])
        .arg(&event)
        .arg("--workflows")
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn the_schema_is_fresh_accepts_the_examples_and_rejects_mistakes() {
    let out = Command::new(binary()).arg("schema").output().expect("runs");
    let generated: Value = serde_json::from_slice(&out.stdout).expect("json");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/schema/workflow.schema.json", root()))
            .expect("committed schema"),
    )
    .expect("json");
    assert_eq!(generated, committed, "schema/workflow.schema.json is stale: run `cargo run -- schema > schema/workflow.schema.json`");
    let validator = jsonschema::validator_for(&generated).expect("a valid schema");
    let mut checked = 0;
    for entry in std::fs::read_dir(format!("{}/workflows", root()))
        .expect("dir")
        .flatten()
    {
        let path = entry.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.ends_with(".yaml") || name.ends_with(".test.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/workflow.schema.json"),
            "{name} points editors at the schema"
        );
        let doc: Value = serde_yaml::from_str(&text).expect("yaml");
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        checked += 1;
    }
    assert_eq!(checked, 7);
    for broken in [
        "trigger: { webhook: { path: /x } }\nsteps: [ { id: a, switch: { cases: [ { when: {}, stepz: [] } ] } } ]\n",
        "trigger: { webhook: { path: /x } }\nsteps: [ { id: a, delay: { untill: soon } } ]\n",
        "trigger: { webhook: { path: /x } }\nsteps: [ { id: a, respond: { status: { code: 200 } } } ]\n",
        "trigger: { webhook: { path: /x } }\nsteps: [ { id: a, for_each: x, concurrency: many, steps: [] } ]\n",
        "trigger: { webhook: { path: /x } }\nsteps: [ { id: a, filtr: { $.a: 1 } } ]\n",
        "steps: [ { id: a, transform: { script: '1' } } ]\n",
        "trigger: { webhook: { path: /x, verify: { stripe: { secret: s }, github: { secret: s } } } }\nsteps: []\n",
        "trigger: { webhook: { path: /x } }\nsteps: [ { id: a, http: { url: http://x, format: xml } } ]\n",
    ] {
        let doc: Value = serde_yaml::from_str(broken).expect("yaml");
        assert!(!validator.is_valid(&doc), "should be rejected: {broken}");
    }
}

both!(
    a_recorded_run_becomes_a_passing_test_until_the_workflow_changes,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_recorded_run_becomes_a_passing_test_until_the_workflow_changes(backend: Backend) {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let wf_dir = dir.path().join("workflows");
    let workflow = format!(
        "name: rec\ntrigger:\n  webhook: {{ path: /rec }}\nsteps:\n  - id: shape\n    transform:\n      script: '#{{ total: event.a + event.b }}'\n  - id: deliver\n    http:\n      url: \"{}\"\n      body: \"{{{{ $.steps.shape }}}}\"\n      retry: {{ attempts: 3, backoff: 10ms }}\n",
        sink.url("/rec")
    );
    write_files(&wf_dir, &[("rec.yaml", &workflow)]);
    sink.answer("/rec", vec![(503, vec![], "{\"busy\":true}".into())]);
    let wf_arg = wf_dir.display().to_string();
    let store = backend.store_args(dir.path());
    let server = BinServer::start(&common::with_store(&["--workflows", &wf_arg], &store), &[]);
    let client = common::client();
    let answer: Value = client
        .post(server.url("/hooks/rec"))
        .header("x-trace", "t-1")
        .json(&json!({"a": 2, "b": 3}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let run = common::wait_run_at(&client, &server.base, &run_id).await;
    assert_eq!(run["status"], "succeeded");

    let resp = client
        .get(server.url(&format!("/api/runs/{run_id}/test-case")))
        .send()
        .await
        .expect("sent");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("application/yaml"));
    let out_file = dir.path().join("recorded.test.yaml");
    let export = Command::new(binary())
        .args([
            "test",
            "--from-run",
            &run_id,
            "--server",
            &server.base,
            "--out",
        ])
        .arg(&out_file)
        .output()
        .expect("runs");
    assert_eq!(
        export.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    server.terminate();
    let suite = std::fs::read_to_string(&out_file).expect("written");
    assert!(
        suite.contains("workflow: rec")
            && suite.contains("x-trace: t-1")
            && suite.contains("busy: true"),
        "{suite}"
    );

    let test = |dir: &std::path::Path| {
        Command::new(binary())
            .arg("test")
            .arg(&out_file)
            .arg("--workflows")
            .arg(dir)
            .output()
            .expect("runs")
    };
    let passed = test(&wf_dir);
    assert_eq!(passed.status.code(), Some(0), "{}", stdout(&passed));
    assert_eq!(stdout(&passed).lines().last(), Some("1 passed, 0 failed"));

    write_files(
        &wf_dir,
        &[(
            "rec.yaml",
            &workflow.replace("event.a + event.b", "event.a * event.b"),
        )],
    );
    let failed = test(&wf_dir);
    let text = stdout(&failed);
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(
        text.contains("$.steps.shape.output.total: expected 5, got 6"),
        "{text}"
    );
}

both!(
    hot_reload_swaps_versions_under_traffic,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn hot_reload_swaps_versions_under_traffic(backend: Backend) {
    let v = |tag: &str| {
        format!("name: hot\ntrigger:\n  webhook: {{ path: /hot }}\nsteps:\n  - id: tag\n    transform:\n      script: '\"{tag}\"'\n")
    };
    let server = TestServer::start_on(backend, &[("hot.yaml", &v("v1"))], &[], |_| {}).await;
    let wf_file = server.dir.path().join("workflows").join("hot.yaml");
    let version_of = |list: &Value| {
        list.as_array()
            .and_then(|l| l.iter().find(|w| w["name"] == "hot"))
            .cloned()
            .unwrap_or(Value::Null)
    };

    // Traffic while the file changes: every answer is 202 and every run
    // finishes. It goes on until the last edit has been answered for a
    // while (bounded), however slow the machine is.
    let client = server.client.clone();
    let url = server.url("/hooks/hot");
    let edits_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let traffic = tokio::spawn({
        let (edits_done, answered) = (edits_done.clone(), answered.clone());
        async move {
            let mut runs = Vec::new();
            let mut after_edits = 0;
            for n in 0..3000 {
                let resp = client
                    .post(&url)
                    .json(&json!({"n": n}))
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(resp.status().as_u16(), 202, "answered during reload");
                let body: Value = resp.json().await.expect("json");
                runs.push(body["runs"][0].as_str().expect("a run").to_string());
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if edits_done.load(std::sync::atomic::Ordering::SeqCst) {
                    after_edits += 1;
                    if after_edits >= 100 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            runs
        }
    });
    // Some traffic on the first version before it changes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the traffic never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for tag in ["v2", "v3"] {
        tokio::time::sleep(Duration::from_millis(250)).await;
        std::fs::write(&wf_file, v(tag)).expect("edit");
    }
    // The last edit is live once the API shows its version.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = server.get("/api/workflows").await;
        let source = server.get(&format!("/api/workflows/{}", "hot")).await.1["source"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if source.contains("v3") && version_of(&list)["status"] == "loaded" {
            break;
        }
        assert!(Instant::now() < deadline, "the last edit never went live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    edits_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let runs = traffic.await.expect("traffic");
    let mut tags = std::collections::BTreeSet::new();
    for r in &runs {
        let run = server.wait_run(r).await;
        assert_eq!(run["status"], "succeeded");
        tags.insert(run["steps"][0]["output"].as_str().unwrap_or("").to_string());
    }
    assert!(tags.contains("v1") && tags.contains("v3"), "{tags:?}");

    // Wait for the last edit to be live.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = server.run_once("/hooks/hot", &json!({})).await;
        if run["steps"][0]["output"] == "v3" {
            break;
        }
        assert!(Instant::now() < deadline, "v3 never went live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, list) = server.get("/api/workflows").await;
    let v3 = version_of(&list)["version"].clone();

    // Broken: the previous version keeps serving; the error is visible.
    std::fs::write(
        &wf_file,
        "name: hot\ntrigger:\n  webhook: { path: /hot }\nsteps:\n  - id: tag\n    transfrom: {}\n",
    )
    .expect("break");
    let deadline = Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let (_, list) = server.get("/api/workflows").await;
        let entry = version_of(&list);
        if entry["status"] == "invalid" {
            break entry;
        }
        assert!(
            Instant::now() < deadline,
            "the broken file was never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry["serving_version"], v3);
    assert!(
        entry["errors"]
            .to_string()
            .contains("unknown key `transfrom`; did you mean `transform`?"),
        "{entry}"
    );
    assert_eq!(
        server.run_once("/hooks/hot", &json!({})).await["steps"][0]["output"],
        "v3"
    );

    // Deleted: its path is no longer served.
    std::fs::remove_file(&wf_file).expect("delete");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.post_json("/hooks/hot", &json!({})).await.0 != 404 {
        assert!(
            Instant::now() < deadline,
            "the deleted workflow kept serving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
