//! Secrets (SPEC §3.2): no secret shows anywhere hookflow stores or shows
//! data, in any encoding it may take on the way, while the data a step hands
//! to the next one stays as it was; no secret-holding type prints one; and a
//! response cut at the size limit keeps its full size. The server tests run
//! on sled and on PostgreSQL; the sweep searches each store its own way
//! (sled's files and decoded records, PostgreSQL's table values).

mod common;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use common::{Backend, BinServer, Sink, TestServer};
use hookflow::signature::{sign, Algorithm};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const STD_NO_PAD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;
const URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE;
const URL_NO_PAD: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Everything but RFC 3986's unreserved characters.
const ALL_BUT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const KEEP_SLASH: &AsciiSet = &ALL_BUT_UNRESERVED.remove(b'/');

/// A request the echoing receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A receiver that answers every request by echoing what it got, in its
/// headers and its body, as written and re-encoded in every way a real
/// service might (percent-encoded with lower-case hex, base64 inside
/// `Basic` credentials at each byte alignment, URL-safe base64, JSON inside
/// a string). `/broken` answers JSON cut short, so it is kept as text with
/// its escapes; `/chunked` and `/stalled` answer big bodies.
struct Echo {
    base: String,
    rx: mpsc::UnboundedReceiver<Got>,
}

impl Echo {
    async fn start() -> Echo {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move { echo(tx, uri, headers, body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the echo receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Echo {
            base: format!("http://{addr}"),
            rx,
        }
    }

    async fn next(&mut self) -> Got {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("the echo receiver got a request in time")
            .expect("open")
    }
}

/// Every value the request carried: header values, query and form values
/// (decoded), the strings of a JSON body.
fn values_of(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-") || k.as_str() == "authorization")
        .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if let Some(q) = uri.query() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        out.extend(pairs.into_iter().map(|(_, v)| v));
    }
    for segment in uri.path().split('/') {
        out.push(
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
        out.extend(m.values().filter_map(Value::as_str).map(str::to_string));
    } else if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        out.extend(pairs.into_iter().map(|(_, v)| v));
    }
    out.retain(|v| v.len() >= 8);
    out
}

fn echo(tx: mpsc::UnboundedSender<Got>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let _ = tx.send(Got {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match uri.path() {
        "/chunked" => return big_chunked(5 * 1024 * 1024, false),
        "/stalled" => return big_chunked(5 * 1024 * 1024, true),
        _ => {}
    }
    let values = values_of(&uri, &headers, &body);
    let mut encoded = Vec::new();
    for v in &values {
        encoded.push(lower_hex(
            &utf8_percent_encode(v, ALL_BUT_UNRESERVED).to_string(),
        ));
        encoded.push(format!("Basic {}", STD.encode(format!("u:{v}"))));
        encoded.push(format!("Basic {}", STD.encode(format!("usr:{v}"))));
        encoded.push(format!("Basic {}", STD.encode(format!("user:{v}"))));
        encoded.push(URL_NO_PAD.encode(format!("token={v}")));
        encoded.push(serde_json::to_string(&json!({ "inner": v })).expect("json"));
    }
    let header_map: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let echoed = json!({
        "uri": uri.to_string(),
        "headers": header_map,
        "body": String::from_utf8_lossy(&body),
        "values": values,
        "encoded": encoded,
    });
    let text = if uri.path() == "/broken" {
        // Cut short: not JSON, so it is kept as text, escapes and all.
        let full = echoed.to_string();
        full[..full.len() - 1].to_string()
    } else {
        echoed.to_string()
    };
    let mut resp = (StatusCode::OK, text).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&uri.to_string()) {
        h.insert("x-echo-uri", v);
    }
    for (i, v) in values.iter().chain(encoded.iter()).enumerate() {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(format!("x-echo-{i}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

/// A body of `size` bytes sent in chunks without a Content-Length; when
/// `stall`, it announces `2 * size` and stops sending after `size`.
fn big_chunked(size: usize, stall: bool) -> Response {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = size / chunk.len();
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<Bytes, std::io::Error>(chunk.clone())),
    );
    let mut resp = if stall {
        let forever = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        Response::new(Body::from_stream(futures_util::StreamExt::chain(
            stream, forever,
        )))
    } else {
        Response::new(Body::from_stream(stream))
    };
    if stall {
        resp.headers_mut().insert(
            "content-length",
            HeaderValue::from_str(&(2 * size).to_string()).expect("a number"),
        );
    }
    resp
}

/// Every form a secret may take on the way, worked out here independently
/// of hookflow's redactor: as written, percent-encoded (upper- and
/// lower-case hex, with and without `/` encoded), form-encoded, JSON-escaped,
/// and base64 (standard and URL-safe, padded or not, and the part of a
/// longer base64 text that the secret alone decides, at each of the three
/// byte alignments).
fn encodings(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    for set in [ALL_BUT_UNRESERVED, KEEP_SLASH] {
        let upper = utf8_percent_encode(secret, set).to_string();
        out.push(lower_hex(&upper));
        out.push(upper);
    }
    let form = serde_urlencoded::to_string([("k", secret)]).expect("form");
    out.push(form["k=".len()..].to_string());
    let json = serde_json::to_string(secret).expect("json");
    out.push(json[1..json.len() - 1].to_string());
    for engine in [STD, STD_NO_PAD, URL, URL_NO_PAD] {
        out.push(engine.encode(secret));
    }
    let n = secret.len();
    for align in 0..3 {
        let mut bytes = vec![b'u'; align];
        bytes.extend_from_slice(secret.as_bytes());
        for engine in [STD_NO_PAD, URL_NO_PAD] {
            let text = engine.encode(&bytes);
            let (from, to) = ((4 * align).div_ceil(3), 4 * (align + n) / 3);
            out.push(text[from..to].to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `%2B` → `%2b`, leaving everything else as it is.
fn lower_hex(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&code.to_lowercase());
        rest = &rest[i + code.len()..];
    }
    out.push_str(rest);
    out
}

/// Where each encoding of each secret occurs in `text`.
fn hits(place: &str, text: &[u8], secrets: &[(&str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, secret) in secrets {
        for form in encodings(secret) {
            let needle = form.as_bytes();
            if let Some(at) = text.windows(needle.len()).position(|w| w == needle) {
                let from = at.saturating_sub(40);
                let to = (at + needle.len() + 40).min(text.len());
                found.push(format!(
                    "{place}: {name} as `{form}` in …{}…",
                    String::from_utf8_lossy(&text[from..to])
                ));
            }
        }
    }
    found
}

/// Every record of every tree of the (closed) store at `data`, decoded as
/// the store reads it: events and runs as their JSON (and an event's body
/// bytes as received), anything else as stored.
fn store_records(data: &Path) -> Vec<(String, Vec<u8>)> {
    use hookflow::store::sled::codec;
    let db = sled::open(data).expect("the store opens");
    let mut out = Vec::new();
    for name in db.tree_names() {
        let tree_name = String::from_utf8_lossy(&name).into_owned();
        let tree = db.open_tree(&name).expect("tree");
        for entry in tree.iter() {
            let (k, v) = entry.expect("record");
            let key = String::from_utf8_lossy(&k).into_owned();
            let place = format!("store {tree_name}/{key}");
            let mut decoded = k.to_vec();
            match tree_name.as_str() {
                "events" => {
                    let e = codec::decode_event(&key, &v).expect("an event decodes");
                    decoded.extend(serde_json::to_vec(&e).expect("json"));
                    if let Some(raw) = &e.raw_body {
                        decoded.extend_from_slice(&raw.bytes);
                    }
                }
                "runs" => {
                    let r: hookflow::record::Run =
                        codec::decode_run(&key, &v).expect("a run decodes");
                    decoded.extend(serde_json::to_vec(&r).expect("json"));
                }
                _ => decoded.extend_from_slice(&v),
            }
            out.push((place, decoded));
        }
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the data folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

async fn get_with(client: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("text"))
}

/// A secret of 40 random bytes, base64-ed, holding both `+` and `/`.
fn random_secret() -> String {
    for _ in 0..1000 {
        let bytes: Vec<u8> = (0..40).map(|_| fastrand::u8(..)).collect();
        let text = STD.encode(bytes);
        if text.contains('+') && text.contains('/') {
            return text;
        }
    }
    panic!("no random secret with `+` and `/` in 1000 draws")
}

const SWEEP: &str = r#"name: sweep
trigger:
  webhook:
    path: /sweep
    verify:
      github: { secret: "{{ env.SWEEP_VERIFY }}" }
steps:
  - id: in_path
    http:
      method: GET
      url: "{{ env.SWEEP_ECHO }}/p/{{ env.SWEEP_S1 }}/{{ env.SWEEP_S2 }}/{{ env.SWEEP_S3 }}"
      query: { key: "{{ env.SWEEP_S1 }}", pw: "{{ env.SWEEP_S2 }}", b: "{{ env.SWEEP_S3 }}" }
      headers:
        X-Token: "{{ env.SWEEP_S1 }}"
        X-Pw: "{{ env.SWEEP_S2 }}"
        Authorization: "Bearer {{ env.SWEEP_S3 }}"
  - id: form
    http:
      url: "{{ env.SWEEP_ECHO }}/form"
      format: form
      body: { a: "{{ env.SWEEP_S1 }}", b: "{{ env.SWEEP_S2 }}", c: "{{ env.SWEEP_S3 }}" }
  - id: json
    http:
      url: "{{ env.SWEEP_ECHO }}/json"
      body:
        a: "{{ env.SWEEP_S1 }}"
        b: "{{ env.SWEEP_S2 }}"
        c: "{{ env.SWEEP_S3 }}"
        all: "{{ env.SWEEP_S1 }} {{ env.SWEEP_S2 }} {{ env.SWEEP_S3 }}"
  - id: broken
    http:
      url: "{{ env.SWEEP_ECHO }}/broken"
      format: text
      body: "{{ env.SWEEP_S2 }}|{{ env.SWEEP_S1 }}|{{ env.SWEEP_S3 }}"
  - id: note
    transform:
      script: |
        log("the receiver saw " + to_json(steps.json.body.values));
        #{ seen: steps.json.body.values, sent: steps.in_path.body.headers, event: event }
  - id: onward
    http:
      url: "{{ env.SWEEP_ECHO }}/onward"
      body: "{{ $.steps.note }}"
  - id: refused
    http:
      url: "{{ env.SWEEP_CLOSED }}/gone/{{ env.SWEEP_S1 }}"
      query: { k: "{{ env.SWEEP_S2 }}" }
      retry: { attempts: 2, backoff: 10ms, max_backoff: 10ms }
"#;

// The binary runs while the receiver answers: the receiver needs a thread of its own.
both!(
    leak_sweep_finds_no_secret_in_any_encoding_anywhere,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn leak_sweep_finds_no_secret_in_any_encoding_anywhere(backend: Backend) {
    let mut echo = Echo::start().await;
    let (_held, closed) = common::refusing_addr();
    let closed_url = format!("http://{closed}");
    let secrets: Vec<(&str, String)> = vec![
        ("S1", "ab+cd/ef=gh".to_string()),
        ("S2", r#"p@ss w&rd?#"\\"#.to_string()),
        ("S3", random_secret()),
        ("VERIFY", format!("whsec-{}", fastrand::u64(..))),
        ("TOKEN", format!("admin-{}-token", fastrand::u64(..))),
        ("ECHO", echo.base.clone()),
        ("CLOSED", closed_url.clone()),
    ];
    let secret = |name: &str| {
        secrets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
            .expect("named secret")
    };
    let dir = tempfile::tempdir().expect("tmp");
    common::write_files(&dir.path().join("workflows"), &[("sweep.yaml", SWEEP)]);
    std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
    let (wf, sc) = (
        dir.path().join("workflows").display().to_string(),
        dir.path().join("scripts").display().to_string(),
    );
    let store = backend.store_args(dir.path());
    let env: Vec<(String, String)> = vec![
        ("SWEEP_S1".into(), secret("S1")),
        ("SWEEP_S2".into(), secret("S2")),
        ("SWEEP_S3".into(), secret("S3")),
        ("SWEEP_VERIFY".into(), secret("VERIFY")),
        ("SWEEP_ECHO".into(), secret("ECHO")),
        ("SWEEP_CLOSED".into(), secret("CLOSED")),
        ("HOOKFLOW_API_TOKEN".into(), secret("TOKEN")),
        ("HOOKFLOW_LOG".into(), "debug".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = BinServer::start(
        &common::with_store(&["--workflows", &wf, "--scripts", &sc], &store),
        &env,
    );
    let client = common::client();
    let token = secret("TOKEN");

    // The sender, too, sends secrets: in the query, a header and the body.
    let marker = format!("sweep-marker-{}", fastrand::u64(..));
    let body = serde_json::to_vec(&json!({
        "marker": marker,
        "secret": secret("S1"),
        "pw": secret("S2"),
    }))
    .expect("json");
    let signature = format!(
        "sha256={}",
        hex::encode(sign(Algorithm::Sha256, secret("VERIFY").as_bytes(), &body))
    );
    let query = serde_urlencoded::to_string([("token", secret("S1")), ("t2", secret("S3"))])
        .expect("query");
    let answer: Value = client
        .post(server.url(&format!("/hooks/sweep?{query}")))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .header("x-sender-token", secret("S2"))
        .body(body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let run_id = answer["runs"][0].as_str().expect("a run").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let run: Value = loop {
        let (_, text) =
            get_with(&client, &server.url(&format!("/api/runs/{run_id}")), &token).await;
        let run: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if common::FINAL.contains(&run["status"].as_str().unwrap_or("")) {
            break run;
        }
        assert!(Instant::now() < deadline, "the run never finished: {run}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        run["status"], "failed",
        "the last step's target is closed: {run}"
    );

    // The secrets really went out, and the data handed from step to step
    // kept them: the `onward` step sent what `note` made of the echo.
    let mut got = BTreeMap::new();
    for _ in 0..5 {
        let g = echo.next().await;
        got.insert(g.path.split('/').nth(1).unwrap_or("").to_string(), g);
    }
    assert_eq!(got["p"].headers["x-token"], secret("S1"));
    assert_eq!(got["p"].headers["x-pw"], secret("S2"));
    assert!(
        got["form"].body.contains("p%40ss+w%26rd"),
        "{:?}",
        got["form"]
    );
    let onward: Value = serde_json::from_str(&got["onward"].body).expect("json body");
    let seen = onward["seen"].to_string();
    for name in ["S1", "S2", "S3"] {
        assert!(
            onward["seen"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(secret(name).as_str()))),
            "{name} reached the next step as it was: {seen}"
        );
    }
    assert_eq!(onward["event"]["secret"], secret("S1"), "{onward}");

    // The record says where it redacted.
    let steps = run["steps"].as_array().expect("steps");
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).expect("step");
    let in_path = &step("in_path")["attempts"][0];
    assert_eq!(
        in_path["request"]["headers"]["X-Token"], "[redacted]",
        "{in_path}"
    );
    assert!(in_path["response"]["headers"]
        .as_object()
        .is_some_and(|h| h.values().any(|v| v == "[redacted]")));
    assert!(step("note")["logs"][0]
        .as_str()
        .is_some_and(|l| l.contains("[redacted]")));

    // Everything the API and the UI show.
    let mut shown: Vec<(String, String)> = Vec::new();
    let fetch = |shown: &mut Vec<(String, String)>, path: String, status: u16, text: String| {
        assert_eq!(status, 200, "{path}: {text}");
        shown.push((path, text));
    };
    for path in [
        "/api/runs".to_string(),
        "/api/events".to_string(),
        "/api/workflows".to_string(),
        "/api/workflows/sweep".to_string(),
        "/api/stats".to_string(),
        "/metrics".to_string(),
        "/ui/".to_string(),
    ] {
        let (status, text) = get_with(&client, &server.url(&path), &token).await;
        fetch(&mut shown, path, status, text);
    }
    let runs: Value = serde_json::from_str(&shown[0].1).expect("json");
    let events: Value = serde_json::from_str(&shown[1].1).expect("json");
    for r in runs["items"].as_array().expect("runs") {
        let id = r["id"].as_str().expect("id");
        for path in [
            format!("/api/runs/{id}"),
            format!("/api/runs/{id}/test-case"),
        ] {
            let (status, text) = get_with(&client, &server.url(&path), &token).await;
            fetch(&mut shown, path, status, text);
        }
    }
    for e in events["items"].as_array().expect("events") {
        let path = format!("/api/events/{}", e["id"].as_str().expect("id"));
        let (status, text) = get_with(&client, &server.url(&path), &token).await;
        fetch(&mut shown, path, status, text);
    }
    assert!(shown.len() >= 10, "every answer was fetched");

    let log = server.log.clone();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let log = log.lock().expect("log").join("\n");
    assert!(log.contains("DEBUG"), "the log was captured at debug level");

    let mut found = Vec::new();
    for (path, text) in &shown {
        found.extend(hits(path, text.as_bytes(), &secrets));
    }
    found.extend(hits("the log", log.as_bytes(), &secrets));
    // The store, read its backend's way. sled: every file of its folder
    // as it is on disk, then (events and runs are stored compressed) every
    // record of every tree as the store decodes it. PostgreSQL: every
    // value of every column of its tables, as a client reads them.
    let records = match backend {
        Backend::Sled => {
            let data = std::path::PathBuf::from(&store[1]);
            let mut files = Vec::new();
            files_under(&data, &mut files);
            for f in &files {
                let bytes = std::fs::read(f).expect("read a store file");
                found.extend(hits(&f.display().to_string(), &bytes, &secrets));
            }
            store_records(&data)
        }
        Backend::Postgres => common::pg::cluster()
            .expect("PostgreSQL runs")
            .table_values(&store[1]),
    };
    let mut marker_seen = false;
    for (place, bytes) in records {
        marker_seen |= bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
        found.extend(hits(&place, &bytes, &secrets));
    }
    assert!(
        marker_seen,
        "the event's marker was not found in the store's records: this sweep did not read them"
    );
    assert!(
        found.is_empty(),
        "{} leak(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

const REGION: &str = r#"name: region
trigger:
  webhook: { path: /region }
steps:
  - id: ask
    http:
      url: "{{ env.REGION_ECHO }}/ask"
      headers: { X-Region: "{{ env.REGION_CODE }}" }
  - id: pick
    transform:
      script: '#{ region: steps.ask.body.headers["x-region"] }'
  - id: tell
    http:
      url: "{{ env.REGION_ECHO }}/tell"
      body: { region: "{{ $.steps.pick.region }}", direct: "{{ $.steps.ask.body.headers['x-region'] }}" }
"#;

// The binary runs while the receiver answers: the receiver needs a thread of its own.
both!(
    a_short_env_value_is_redacted_in_history_but_reaches_later_steps_as_it_was,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_short_env_value_is_redacted_in_history_but_reaches_later_steps_as_it_was(
    backend: Backend,
) {
    let mut echo = Echo::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    common::write_files(&dir.path().join("workflows"), &[("region.yaml", REGION)]);
    let wf = dir.path().join("workflows").display().to_string();
    let store = backend.store_args(dir.path());
    let server = BinServer::start(
        &common::with_store(&["--workflows", &wf], &store),
        &[("REGION_CODE", "eu"), ("REGION_ECHO", &echo.base)],
    );
    let client = common::client();
    let answer = common::post_at(&client, &server.url("/hooks/region"), &json!({})).await;
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let run = common::wait_run_at(&client, &server.base, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let ask = echo.next().await;
    assert_eq!(ask.headers["x-region"], "eu");
    let tell = echo.next().await;
    assert_eq!(tell.path, "/tell");
    let sent: Value = serde_json::from_str(&tell.body).expect("json");
    assert_eq!(sent, json!({"region": "eu", "direct": "eu"}), "{run}");
    // What is stored and shown has it redacted.
    let pick = &run["steps"][1];
    assert_eq!(pick["output"], json!({"region": "[redacted]"}), "{run}");
    assert_eq!(
        run["steps"][0]["attempts"][0]["request"]["headers"]["X-Region"],
        "[redacted]"
    );
}

fn big_workflow(url: &str) -> String {
    format!("trigger:\n  webhook: {{ path: /big }}\nsteps:\n  - id: fetch\n    http:\n      url: {url}\n      timeout: 2s\n      retry: {{ attempts: 1 }}\n")
}

both!(a_response_cut_at_the_limit_keeps_its_full_size);
async fn a_response_cut_at_the_limit_keeps_its_full_size(backend: Backend) {
    let sink = Sink::start().await;
    let size = 5 * 1024 * 1024 + 123;
    sink.answer("/big", vec![(200, vec![], "y".repeat(size))]);
    let wf = big_workflow(&sink.url("/big"));
    let server = TestServer::start_on(backend, &[("big.yaml", &wf)], &[], |_| {}).await;
    let run = server.run_once("/hooks/big", &json!({})).await;
    assert_eq!(run["status"], "succeeded", "{}", run["steps"][0]["error"]);
    let response = &run["steps"][0]["attempts"][0]["response"];
    assert_eq!(
        response["body_size"], size,
        "the full size, not the part read"
    );
    assert!(response["body"].as_str().is_some_and(|b| b.len() < size));
    server.stop().await;
}

both!(a_chunked_response_cut_at_the_limit_keeps_its_full_size);
async fn a_chunked_response_cut_at_the_limit_keeps_its_full_size(backend: Backend) {
    let echo = Echo::start().await;
    let wf = big_workflow(&format!("{}/chunked", echo.base));
    let server = TestServer::start_on(backend, &[("big.yaml", &wf)], &[], |_| {}).await;
    let run = server.run_once("/hooks/big", &json!({})).await;
    assert_eq!(run["status"], "succeeded", "{}", run["steps"][0]["error"]);
    let response = &run["steps"][0]["attempts"][0]["response"];
    assert_eq!(
        response["body_size"],
        5 * 1024 * 1024,
        "counted without a Content-Length"
    );
    server.stop().await;
}

both!(a_response_that_stalls_past_the_limit_keeps_its_announced_size);
async fn a_response_that_stalls_past_the_limit_keeps_its_announced_size(backend: Backend) {
    let echo = Echo::start().await;
    let wf = big_workflow(&format!("{}/stalled", echo.base));
    let server = TestServer::start_on(backend, &[("big.yaml", &wf)], &[], |_| {}).await;
    let run = server.run_once("/hooks/big", &json!({})).await;
    // The step read what it keeps before the stall: the answer counts.
    assert_eq!(run["status"], "succeeded", "{}", run["steps"][0]["error"]);
    let response = &run["steps"][0]["attempts"][0]["response"];
    assert_eq!(response["status"], 200);
    assert_eq!(
        response["body_size"],
        10 * 1024 * 1024,
        "the announced size"
    );
    server.stop().await;
}

#[test]
fn config_and_compiled_workflows_print_no_secret() {
    let mut config = hookflow::config::ServeConfig::new("w".into(), "s".into(), "d".into());
    config.api_token = Some("tok-3f9a-admin-secret".into());
    for text in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!text.contains("tok-3f9a"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    let yaml = r#"name: printed
trigger:
  webhook:
    path: /printed
    verify:
      github: { secret: "{{ env.PRINTED_VERIFY }}" }
steps:
  - id: send
    http:
      url: "{{ env.PRINTED_URL }}/x"
      headers: { Authorization: "Bearer {{ env.PRINTED_KEY }}" }
      body: { key: "{{ env.PRINTED_KEY }}" }
"#;
    let env = |name: &str| match name {
        "PRINTED_VERIFY" => Some("whsec-c0ffee-verify".to_string()),
        "PRINTED_URL" => Some("https://hooks.example.com/T0/B0/s3cr3t-path".to_string()),
        "PRINTED_KEY" => Some("key-77d1-outbound".to_string()),
        _ => None,
    };
    let engine = hookflow::script::Engine::default();
    let scripts = hookflow::workflow::compile::ScriptDir("scripts".into());
    let wf = hookflow::workflow::compile::compile(
        Path::new("printed.yaml"),
        yaml,
        &hookflow::workflow::compile::CompileEnv {
            env: &env,
            scripts: &scripts,
            engine: &engine,
            connectors: &Default::default(),
        },
    )
    .expect("compiles");
    for text in [format!("{wf:?}"), format!("{wf:#?}")] {
        for secret in ["whsec-c0ffee", "s3cr3t-path", "key-77d1"] {
            assert!(!text.contains(secret), "{secret} printed in {text}");
        }
    }

    // A verify secret written in the file is a secret too.
    let literal = yaml.replace("{{ env.PRINTED_VERIFY }}", "whsec-literal-5a5a");
    let wf = hookflow::workflow::compile::compile(
        Path::new("printed.yaml"),
        &literal,
        &hookflow::workflow::compile::CompileEnv {
            env: &env,
            scripts: &scripts,
            engine: &engine,
            connectors: &Default::default(),
        },
    )
    .expect("compiles");
    let text = format!("{wf:?}");
    assert!(!text.contains("whsec-literal"), "{text}");
}

#[test]
fn the_run_trace_shows_no_secret_in_any_encoding() {
    let dir = tempfile::tempdir().expect("tmp");
    let wf = r#"name: traced
trigger:
  webhook: { path: /traced }
steps:
  - id: send
    http:
      url: "https://api.example.com/p/{{ env.TRACED_S1 }}"
      query: { key: "{{ env.TRACED_S1 }}", pw: "{{ env.TRACED_S2 }}" }
      headers: { X-Token: "{{ env.TRACED_S1 }}" }
      format: form
      body: { pw: "{{ env.TRACED_S2 }}" }
"#;
    common::write_files(dir.path(), &[("traced.yaml", wf), ("event.json", "{}")]);
    let secrets = vec![
        ("S1", "ab+cd/ef=gh".to_string()),
        ("S2", r#"p@ss w&rd?#"\\"#.to_string()),
    ];
    for json in [false, true] {
        let mut cmd = std::process::Command::new(common::binary());
        cmd.arg("run")
            .arg(dir.path().join("traced.yaml"))
            .arg("--event")
            .arg(dir.path().join("event.json"))
            .env("TRACED_S1", &secrets[0].1)
            .env("TRACED_S2", &secrets[1].1)
            .env("HOOKFLOW_LOG", "debug");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let text = [out.stdout, out.stderr].concat();
        assert!(
            String::from_utf8_lossy(&text).contains("[redacted]"),
            "{}",
            String::from_utf8_lossy(&text)
        );
        let found = hits("the trace", &text, &secrets);
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}
