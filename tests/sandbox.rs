//! The script sandbox through the real server (SPEC §6): `sleep` is not
//! available, the wall-time limit holds whatever a script calls, an
//! expensive `when` is evaluated off the threads that answer requests, and
//! a script's log and state writes are bounded in bytes.

mod common;

use common::{Backend, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The wall-time limit these tests set: low, so that a script that ignores
/// it is caught quickly.
const LIMIT: Duration = Duration::from_millis(200);

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

/// A workflow at `path` whose one step `s` runs `script`.
fn transform_at(path: &str, script: &str) -> String {
    format!(
        "trigger:\n  webhook: {{ path: {path} }}\nsteps:\n  - id: s\n    transform:\n      script: |\n        {}\n",
        script.replace('\n', "\n        ")
    )
}

/// The `/api/workflows` entry of `name`.
async fn workflow(server: &TestServer, name: &str) -> Value {
    let (code, list) = server.get("/api/workflows").await;
    assert_eq!(code, 200, "{list}");
    list.as_array()
        .and_then(|l| l.iter().find(|w| w["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no workflow {name} in {list}"))
}

both!(sleep_is_refused_when_the_workflow_loads_and_when_called_by_name);
async fn sleep_is_refused_when_the_workflow_loads_and_when_called_by_name(backend: Backend) {
    let direct = transform_at("/direct", "let a = 1;\nsleep(3);\na");
    let method = transform_at("/method", "3.sleep();\n1");
    let in_when = "trigger:\n  webhook: { path: /when }\n  when: { expr: 'sleep(1) == ()' }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    // Only a call by name, made at run time, can get past the check at load.
    let by_name = transform_at(
        "/by-name",
        "let f = Fn(\"sleep\");\nf.call(3);\n\"woke up\"",
    );
    // A script's own function named `sleep` is the script's business.
    let own = transform_at("/own", "fn sleep(s) { s * 2 }\nsleep(21)");
    let server = TestServer::start_on(
        backend,
        &[
            ("direct.yaml", direct.as_str()),
            ("method.yaml", method.as_str()),
            ("in-when.yaml", in_when),
            ("by-name.yaml", by_name.as_str()),
            ("own.yaml", own.as_str()),
        ],
        &[],
        |c| c.script_timeout = Duration::from_secs(10),
    )
    .await;

    for (name, at) in [
        ("direct", "direct.yaml:8:"),
        ("method", "method.yaml:7:"),
        ("in-when", "in-when.yaml:3:"),
    ] {
        let w = workflow(&server, name).await;
        assert_eq!(w["status"], "invalid", "{w}");
        let errors = w["errors"].to_string();
        assert!(
            errors.contains(at) && errors.contains("`sleep` is not available"),
            "{name}: {errors}"
        );
    }

    let run = server.run_once("/hooks/by-name", &json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    let s = step(&run, "s");
    assert!(
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("`sleep` is not available")),
        "{s}"
    );
    // Had it slept, the step would have taken the 3 s it asked for.
    assert!(s["duration_ms"].as_u64().is_some_and(|d| d < 3000), "{s}");

    let run = server.run_once("/hooks/own", &json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "s")["output"], 42);
    server.stop().await;
}

/// Each of these does one expensive thing per operation (a helper or a
/// built-in on a large value) in an endless loop.
const HEAVY_LOOPS: &[(&str, &str)] = &[
    ("sha256", "loop { sha256(event.csv); }"),
    ("hmac", "loop { hmac_sha256(\"key\", event.csv); }"),
    ("base64-encode", "loop { base64_encode(event.csv); }"),
    ("base64-decode", "loop { base64_decode(event.b64); }"),
    ("url-encode", "loop { url_encode(event.csv); }"),
    ("parse-json", "loop { parse_json(event.json_text); }"),
    ("to-json", "loop { to_json(event.items); }"),
    ("jsonpath", "loop { jsonpath(event.items, \"$[*].name\"); }"),
    (
        "replace",
        "loop { let s = event.csv; s.replace(\"a\", \"xy\"); }",
    ),
    ("split", "loop { event.csv.split(\",\"); }"),
    ("sort", "loop { let a = event.nums; a.sort(); }"),
];

/// The large value each of [`HEAVY_LOOPS`] chews on, by the field it reads.
fn heavy_value(field: &str) -> Value {
    let items = || -> Vec<Value> {
        // Under the map limit of 10,000 keys in all.
        (0..2_000)
            .map(|i| json!({"id": i, "name": format!("item {i}"), "tags": ["x", "y"]}))
            .collect()
    };
    match field {
        "csv" => json!("abcdefgh,".repeat(50_000)),
        "json_text" => json!(Value::Array(items()).to_string()),
        "items" => json!(items()),
        "nums" => json!((0..50_000u64)
            .map(|i| (i * 7_919) % 50_021)
            .collect::<Vec<_>>()),
        // The base64 of "hello hello …".
        "b64" => json!("aGVsbG8g".repeat(100_000)),
        other => panic!("no heavy value {other}"),
    }
}

both!(a_loop_of_heavy_built_ins_stops_near_the_wall_time_limit);
async fn a_loop_of_heavy_built_ins_stops_near_the_wall_time_limit(backend: Backend) {
    let files: Vec<(String, String)> = HEAVY_LOOPS
        .iter()
        .map(|(name, script)| {
            (
                format!("{name}.yaml"),
                transform_at(&format!("/{name}"), &format!("let n = 0;\n{script}")),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let server = TestServer::start_on(backend, &files, &[], |c| {
        c.script_timeout = LIMIT;
        // Only the wall-time limit may stop these loops.
        c.script_max_operations = u64::MAX / 2;
    })
    .await;
    // One at a time, so that each has the machine's attention: the bound
    // below is about the sandbox, not about sharing the CPU.
    for (name, script) in HEAVY_LOOPS {
        let field = script
            .split("event.")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .next()
            })
            .expect("each loop reads one field of the event");
        let body = json!({ field: heavy_value(field) });
        let run = server.run_once(&format!("/hooks/{name}"), &body).await;
        let s = step(&run, "s");
        assert_eq!(run["status"], "failed", "{name}: {s}");
        assert!(
            s["error"]
                .as_str()
                .is_some_and(|e| e.contains("wall-time limit")),
            "{name}: {s}"
        );
        // A bound on correctness, not a speed target: a script that is
        // stopped only every few thousand operations runs for many times
        // its limit here.
        let took = s["duration_ms"].as_u64().expect("duration");
        assert!(
            took < 10 * LIMIT.as_millis() as u64,
            "{name} ran {took} ms against a limit of {LIMIT:?}"
        );
    }
    server.stop().await;
}

both!(
    an_expensive_when_is_stopped_and_other_requests_are_still_answered,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn an_expensive_when_is_stopped_and_other_requests_are_still_answered(backend: Backend) {
    // An `expr` cannot loop, so this one is expensive by size: a thousand
    // hashes of a large value, more than its limit allows.
    let hashes = vec!["sha256(event.big)"; 1000].join(", ");
    let slow = format!(
        "trigger:\n  webhook: {{ path: /slow }}\n  when: {{ expr: '[{hashes}].len() == 0' }}\nsteps:\n  - id: s\n    transform: {{ script: '1' }}\n"
    );
    let fast = "trigger:\n  webhook: { path: /fast }\n  when: { $.event.ok: true }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let server = TestServer::start_on(
        backend,
        &[("slow.yaml", slow.as_str()), ("fast.yaml", fast)],
        &[],
        |c| {
            c.script_timeout = LIMIT;
            c.script_max_operations = u64::MAX / 2;
        },
    )
    .await;
    let big = "abcdefgh".repeat(64 * 1024);
    let slow_requests: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, body) = (
                server.client.clone(),
                server.url("/hooks/slow"),
                json!({ "big": big }),
            );
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .json(&body)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .expect("the slow request is answered");
                let code = resp.status().as_u16();
                (code, resp.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();

    // While the slow ones are being evaluated, another path is answered.
    let mut answered_meanwhile = 0;
    for _ in 0..200 {
        if slow_requests.iter().all(|h| h.is_finished()) {
            break;
        }
        let sent = Instant::now();
        let resp = server
            .client
            .post(server.url("/hooks/fast"))
            .json(&json!({ "ok": true }))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the fast request is answered");
        let took = sent.elapsed();
        assert_eq!(resp.status().as_u16(), 202);
        assert!(
            took < Duration::from_secs(2),
            "a request to another workflow waited {took:?} for the expensive `when`s"
        );
        answered_meanwhile += 1;
    }
    assert!(answered_meanwhile > 0, "no request was sent meanwhile");

    for h in slow_requests {
        let (code, answer) = h.await.expect("task");
        assert_eq!(code, 202, "{answer}");
        assert_eq!(answer["runs"], json!([]), "{answer}");
        let id = answer["event_id"].as_str().expect("event id");
        let (_, event) = server.get(&format!("/api/events/{id}")).await;
        assert_eq!(event["outcome"], "unmatched", "{event}");
        assert!(
            event["reason"]
                .as_str()
                .is_some_and(|r| r.contains("`when` failed") && r.contains("wall-time limit")),
            "{event}"
        );
    }
    server.stop().await;
}

both!(a_steps_log_is_bounded_in_bytes);
async fn a_steps_log_is_bounded_in_bytes(backend: Backend) {
    let chatty = transform_at(
        "/chatty",
        "let line = \"\";\nline.pad(200, \"x\");\nfor i in 0..5000 { log(`${i} ${line}`); }\n1",
    );
    let one_long = transform_at(
        "/long",
        "log(\"first\");\nlet s = \"\";\ns.pad(300000, \"é\");\nlog(s);\nlog(\"never kept\");\n1",
    );
    let server = TestServer::start_on(
        backend,
        &[
            ("chatty.yaml", chatty.as_str()),
            ("long.yaml", one_long.as_str()),
        ],
        &[],
        |_| {},
    )
    .await;

    let run = server.run_once("/hooks/chatty", &json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let logs: Vec<&str> = step(&run, "s")["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let (note, kept) = logs.split_last().expect("some lines");
    assert!(kept[0].starts_with("0 xxx"), "{:?}", &kept[0]);
    let kept_bytes: usize = kept.iter().map(|l| l.len()).sum();
    assert!(kept_bytes <= 64 * 1024, "{kept_bytes} bytes of log kept");
    assert!(
        kept_bytes > 60 * 1024,
        "only {kept_bytes} bytes of log kept"
    );
    assert!(
        note.contains("log truncated") && note.contains("lines"),
        "{note}"
    );

    let run = server.run_once("/hooks/long", &json!({})).await;
    let logs = step(&run, "s")["logs"].as_array().expect("logs").clone();
    assert_eq!(logs.len(), 3, "first, the cut line, the note");
    assert_eq!(logs[0], "first");
    let cut = logs[1].as_str().expect("text");
    assert!(cut.len() <= 64 * 1024 - "first".len());
    assert!(cut.chars().all(|c| c == 'é'), "cut on a character boundary");
    let note = logs[2].as_str().expect("text");
    let dropped = 600_000 - cut.len() + "never kept".len();
    assert!(
        note.contains(&format!("{dropped} bytes")),
        "{note} (expected {dropped} bytes dropped)"
    );
    server.stop().await;
}

both!(state_keys_and_values_are_bounded_in_bytes);
async fn state_keys_and_values_are_bounded_in_bytes(backend: Backend) {
    // The key is `event.key` repeated `event.n` times; the value a string
    // of `event.v` characters (its JSON form is two bytes longer). With
    // `event.read`, the script reads the key back instead.
    let script = "let k = \"\";\nk.pad(event.n, event.key);\nif event.read { state_get(k) } else { let v = \"\"; v.pad(event.v, \"v\"); state_set(k, v); \"written\" }";
    let server = TestServer::start_on(
        backend,
        &[("state.yaml", &transform_at("/state", script))],
        &[],
        |_| {},
    )
    .await;
    let set = |key: &str, n: usize, v: usize| json!({ "key": key, "n": n, "v": v, "read": false });
    let get = |key: &str, n: usize| json!({ "key": key, "n": n, "v": 0, "read": true });

    // At the bounds: a 256-byte key and a value of 65,536 bytes as JSON.
    let run = server
        .run_once("/hooks/state", &set("k", 256, 65_534))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run = server.run_once("/hooks/state", &get("k", 256)).await;
    assert_eq!(
        step(&run, "s")["output"].as_str().map(str::len),
        Some(65_534)
    );

    // One byte over, in the key (counted in bytes, not characters) or the
    // value: the step fails with the reason, and nothing is written.
    for (body, words) in [
        (set("é", 129, 10), ["key", "258 bytes"]),
        (set("v", 10, 65_535), ["value", "65537 bytes"]),
    ] {
        let run = server.run_once("/hooks/state", &body).await;
        assert_eq!(run["status"], "failed", "{run}");
        let error = step(&run, "s")["error"].as_str().unwrap_or("").to_string();
        assert!(
            error.contains("state_set") && words.iter().all(|w| error.contains(w)),
            "{error}"
        );
        let read = get(
            body["key"].as_str().expect("key"),
            body["n"].as_u64().expect("n") as usize,
        );
        let run = server.run_once("/hooks/state", &read).await;
        assert_eq!(
            step(&run, "s")["output"],
            Value::Null,
            "nothing was written"
        );
    }
    server.stop().await;
}
