//! Trust: every signature scheme end to end, admin access, the refusal to
//! expose an open API, the outbound address policy, header injection, and a
//! barrage of hostile requests that must leave the server healthy.

mod common;

use base64::Engine as _;
use common::{binary, Backend, Sink, TestServer};
use hookflow::signature::{sign, Algorithm};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn wf(name: &str, verify: &str) -> String {
    format!("name: {name}\ntrigger:\n  webhook:\n    path: /sig/{name}\n    verify:\n      {verify}\nsteps:\n  - id: ok\n    transform: {{ script: '1' }}\n")
}

/// Headers for a body under each scheme, at time `t`, with `secret`.
fn signed(scheme: &str, secret: &[u8], body: &[u8], t: u64) -> Vec<(String, String)> {
    let h = |k: &str, v: String| (k.to_string(), v);
    match scheme {
        "stripe" => vec![h(
            "stripe-signature",
            format!(
                "t={t},v1={}",
                hex::encode(sign(
                    Algorithm::Sha256,
                    secret,
                    &[format!("{t}.").as_bytes(), body].concat()
                ))
            ),
        )],
        "github" => vec![h(
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hex::encode(sign(Algorithm::Sha256, secret, body))
            ),
        )],
        "shopify" => vec![h(
            "x-shopify-hmac-sha256",
            B64.encode(sign(Algorithm::Sha256, secret, body)),
        )],
        "slack" => vec![
            h("x-slack-request-timestamp", t.to_string()),
            h(
                "x-slack-signature",
                format!(
                    "v0={}",
                    hex::encode(sign(
                        Algorithm::Sha256,
                        secret,
                        &[format!("v0:{t}:").as_bytes(), body].concat()
                    ))
                ),
            ),
        ],
        "standard" => {
            let key = B64.decode(&secret[6..]).expect("whsec_ secret");
            vec![
                h("webhook-id", "msg_1".into()),
                h("webhook-timestamp", t.to_string()),
                h(
                    "webhook-signature",
                    format!(
                        "v1,{}",
                        B64.encode(sign(
                            Algorithm::Sha256,
                            &key,
                            &[format!("msg_1.{t}.").as_bytes(), body].concat()
                        ))
                    ),
                ),
            ]
        }
        "hmac" => vec![h(
            "x-signature",
            format!(
                "sha512={}",
                B64.encode(sign(Algorithm::Sha512, secret, body))
            ),
        )],
        other => panic!("no scheme {other}"),
    }
}

both!(every_signature_scheme_end_to_end);
async fn every_signature_scheme_end_to_end(backend: Backend) {
    let standard_secret = format!("whsec_{}", B64.encode(b"standard-key-bytes-0123456789"));
    let files = [
        ("stripe.yaml", wf("stripe", "stripe: { secret: whsec_stripe_test, tolerance: 5m }")),
        ("github.yaml", wf("github", "github: { secret: gh-secret }")),
        ("shopify.yaml", wf("shopify", "shopify: { secret: shop-secret }")),
        ("slack.yaml", wf("slack", "slack: { secret: slack-secret }")),
        ("standard.yaml", wf("standard", &format!("standard: {{ secret: {standard_secret} }}"))),
        ("hmac.yaml", wf("hmac", "hmac: { secret: gen-secret, header: X-Signature, algorithm: sha512, encoding: base64, prefix: 'sha512=' }")),
    ];
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let server = TestServer::start_on(backend, &refs, &[], |_| {}).await;
    let secrets: BTreeMap<&str, Vec<u8>> = [
        ("stripe", b"whsec_stripe_test".to_vec()),
        ("github", b"gh-secret".to_vec()),
        ("shopify", b"shop-secret".to_vec()),
        ("slack", b"slack-secret".to_vec()),
        ("standard", standard_secret.as_bytes().to_vec()),
        ("hmac", b"gen-secret".to_vec()),
    ]
    .into_iter()
    .collect();
    let body = br#"{"id":"evt_1","amount":100}"#;
    let post = |scheme: &'static str, headers: Vec<(String, String)>, body: Vec<u8>| {
        let client = server.client.clone();
        let url = server.url(&format!("/sig/{scheme}").replace("/sig", "/hooks/sig"));
        async move {
            let mut req = client
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.expect("sent");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for (scheme, secret) in &secrets {
        let scheme: &'static str = scheme;
        let t = now();
        let (code, _) = post(scheme, signed(scheme, secret, body, t), body.to_vec()).await;
        assert_eq!(code, 202, "{scheme}: valid");
        let (code, err) = post(
            scheme,
            signed(scheme, secret, body, t),
            br#"{"id":"evt_1","amount":999}"#.to_vec(),
        )
        .await;
        assert_eq!(code, 401, "{scheme}: tampered");
        assert!(
            !err["error"]
                .as_str()
                .unwrap_or("")
                .contains(std::str::from_utf8(secret).unwrap_or("")),
            "reason reveals nothing secret"
        );
        let (code, _) = post(
            scheme,
            signed(scheme, b"whsec_d3Jvbmcgc2VjcmV0", body, t),
            body.to_vec(),
        )
        .await;
        assert_eq!(code, 401, "{scheme}: wrong secret");
        let (code, _) = post(scheme, Vec::new(), body.to_vec()).await;
        assert_eq!(code, 401, "{scheme}: missing header");
        if ["stripe", "slack", "standard"].contains(&scheme) {
            for stale in [t - 600, t + 600] {
                let (code, err) =
                    post(scheme, signed(scheme, secret, body, stale), body.to_vec()).await;
                assert_eq!(code, 401, "{scheme}: stale");
                assert_eq!(
                    err["error"],
                    "signature timestamp is outside the allowed tolerance"
                );
            }
        }
    }
    // Stripe during secret rotation: two v1 signatures, one with the old secret.
    let t = now();
    let new = hex::encode(sign(
        Algorithm::Sha256,
        b"whsec_stripe_test",
        &[format!("{t}.").as_bytes(), body].concat(),
    ));
    let old = hex::encode(sign(
        Algorithm::Sha256,
        b"whsec_old_secret",
        &[format!("{t}.").as_bytes(), body].concat(),
    ));
    let (code, _) = post(
        "stripe",
        vec![(
            "stripe-signature".into(),
            format!("t={t},v1={old},v1={new}"),
        )],
        body.to_vec(),
    )
    .await;
    assert_eq!(code, 202, "rotated secret");

    // Exactly the accepted requests created runs; the rejected ones are on record.
    let (_, runs) = server.get("/api/runs?limit=500").await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(7));
    let (_, rejected) = server.get("/api/events?outcome=rejected&limit=500").await;
    let rejected = rejected["items"].as_array().expect("items").clone();
    assert_eq!(rejected.len(), 6 * 3 + 3 * 2);
    let first = &rejected[0];
    assert!(
        first["reason"].is_string()
            && first["workflows"].is_array()
            && first["source"] == "127.0.0.1",
        "{first}"
    );
    assert_eq!(
        first["body"],
        Value::Null,
        "a rejected request's body is not kept"
    );
    server.stop().await;
}

both!(admin_token_guards_the_api_not_the_hooks);
async fn admin_token_guards_the_api_not_the_hooks(backend: Backend) {
    let wf =
        "trigger:\n  webhook: { path: /open }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let server = TestServer::start_on(backend, &[("w.yaml", wf)], &[], |c| {
        c.api_token = Some("t0ken-for-admins".into())
    })
    .await;
    let resp = server
        .client
        .get(server.url("/api/runs"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Basic")));
    let bearer = server
        .client
        .get(server.url("/api/runs"))
        .bearer_auth("t0ken-for-admins")
        .send()
        .await
        .expect("sent");
    assert_eq!(bearer.status().as_u16(), 200);
    let basic = server
        .client
        .get(server.url("/api/workflows"))
        .basic_auth("anyone", Some("t0ken-for-admins"))
        .send()
        .await
        .expect("sent");
    assert_eq!(basic.status().as_u16(), 200);
    let wrong = server
        .client
        .get(server.url("/api/runs"))
        .bearer_auth("t0ken-for-admins!")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(
        server.post_json("/hooks/open", &json!({})).await.0,
        202,
        "hooks stay open"
    );
    assert_eq!(server.get("/healthz").await.0, 200);
    server.stop().await;
}

#[test]
fn serve_refuses_an_open_api_on_the_network() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path().join("data"))
        .env_remove("HOOKFLOW_API_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0")
            && err.contains("HOOKFLOW_API_TOKEN")
            && err.contains("--no-auth"),
        "{err}"
    );
}

both!(outbound_policy_refuses_metadata_and_private_targets);
async fn outbound_policy_refuses_metadata_and_private_targets(backend: Backend) {
    let mut sink = Sink::start().await;
    let step = |url: &str| {
        format!("\n  - id: call\n    http:\n      url: \"{url}\"\n      retry: {{ attempts: 1 }}\n")
    };
    let port = sink.addr.port();
    let files = [
        (
            "meta.yaml".to_string(),
            format!(
                "trigger:\n  webhook: {{ path: /meta }}\nsteps:{}",
                step("http://169.254.169.254/latest/meta-data/")
            ),
        ),
        (
            "ll6.yaml".to_string(),
            format!(
                "trigger:\n  webhook: {{ path: /ll6 }}\nsteps:{}",
                step("http://[fe80::1]:9/x")
            ),
        ),
        (
            "mapped.yaml".to_string(),
            format!(
                "trigger:\n  webhook: {{ path: /mapped }}\nsteps:{}",
                step("http://[::ffff:169.254.169.254]/")
            ),
        ),
        (
            "loop.yaml".to_string(),
            format!(
                "trigger:\n  webhook: {{ path: /loop }}\nsteps:{}",
                step(&sink.url("/x"))
            ),
        ),
        (
            "name.yaml".to_string(),
            format!(
                "trigger:\n  webhook: {{ path: /name }}\nsteps:{}",
                step(&format!("http://localhost:{port}/x"))
            ),
        ),
    ];
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();

    // Default policy: metadata and link-local refused, loopback allowed.
    let server = TestServer::start_on(backend, &refs, &[], |_| {}).await;
    for path in ["/hooks/meta", "/hooks/ll6", "/hooks/mapped"] {
        let run = server.run_once(path, &json!({})).await;
        assert_eq!(run["status"], "failed", "{path}");
        let err = run["steps"][0]["error"].as_str().unwrap_or("");
        assert!(
            err.contains("refused by the outbound policy"),
            "{path}: {err}"
        );
    }
    assert_eq!(
        server.run_once("/hooks/loop", &json!({})).await["status"],
        "succeeded"
    );
    sink.next().await;
    server.stop().await;

    // --deny-private-network: loopback refused, by address and by name.
    let server = TestServer::start_on(backend, &refs, &[], |c| c.deny_private_network = true).await;
    for path in ["/hooks/loop", "/hooks/name"] {
        let run = server.run_once(path, &json!({})).await;
        assert_eq!(run["status"], "failed", "{path}");
        let err = run["steps"][0]["error"].as_str().unwrap_or("");
        assert!(
            err.contains("refused by the outbound policy") && err.contains("loopback"),
            "{path}: {err}"
        );
    }
    assert!(
        sink.quiet_for(Duration::from_millis(300)).await,
        "nothing was sent"
    );
    server.stop().await;
}

both!(header_injection_is_refused_before_sending);
async fn header_injection_is_refused_before_sending(backend: Backend) {
    let mut sink = Sink::start().await;
    let wf = format!("trigger:\n  webhook: {{ path: /h }}\nsteps:\n  - id: call\n    http:\n      url: \"{}\"\n      headers: {{ X-Name: \"{{{{ $.event.name }}}}\" }}\n", sink.url("/x"));
    let server = TestServer::start_on(backend, &[("h.yaml", &wf)], &[], |_| {}).await;
    let run = server
        .run_once("/hooks/h", &json!({"name": "ok\r\nX-Injected: yes"}))
        .await;
    assert_eq!(run["status"], "failed");
    assert!(run["steps"][0]["error"]
        .as_str()
        .unwrap_or("")
        .contains("line break"));
    assert!(run["steps"][0]["attempts"]
        .as_array()
        .is_some_and(Vec::is_empty));
    assert!(sink.quiet_for(Duration::from_millis(300)).await);
    assert_eq!(
        server.run_once("/hooks/h", &json!({"name": "fine"})).await["status"],
        "succeeded"
    );
    assert_eq!(sink.next().await.headers["x-name"], "fine");
    server.stop().await;
}

/// Send raw bytes and read the status code of the answer (0: none).
fn raw(addr: &str, bytes: &[u8]) -> u16 {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

both!(
    hostile_requests_get_clear_answers_and_the_server_stays_healthy,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn hostile_requests_get_clear_answers_and_the_server_stays_healthy(backend: Backend) {
    let plain = "trigger:\n  webhook: { path: /in }\nsteps:\n  - id: s\n    transform: { script: 'event' }\n";
    let signed_wf = "trigger:\n  webhook:\n    path: /signed\n    verify: { github: { secret: x } }\nsteps:\n  - id: s\n    transform: { script: '1' }\n";
    let server = TestServer::start_on(
        backend,
        &[("in.yaml", plain), ("signed.yaml", signed_wf)],
        &[],
        |c| {
            c.max_body = 64 * 1024;
            c.header_timeout = Duration::from_millis(500);
            c.body_timeout = Duration::from_millis(500);
        },
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let req = |method: &str, path: &str, ctype: &str, body: &[u8]| -> Vec<u8> {
        [format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes(), body].concat()
    };
    let deep = "[".repeat(50_000);
    let huge_header = format!(
        "POST /hooks/in HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let giant = format!("[{}1]", "1,".repeat(30_000));
    let kinds: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("malformed JSON", req("POST", "/hooks/in", "application/json", b"{\"a\": [1, 2"), &[400]),
        ("deeply nested JSON", req("POST", "/hooks/in", "application/json", deep.as_bytes()), &[400]),
        ("invalid UTF-8 text", req("POST", "/hooks/in", "text/plain", &[0xc3, 0x28, 0xff]), &[400]),
        ("malformed form", req("POST", "/hooks/in", "application/x-www-form-urlencoded", b"a=%zz&b=%"), &[400]),
        ("form with bad UTF-8", req("POST", "/hooks/in", "application/x-www-form-urlencoded", b"a=%ff%fe"), &[400]),
        ("oversized body", req("POST", "/hooks/in", "application/json", &vec![b'1'; 70_000]), &[413]),
        ("oversized chunked body", [b"POST /hooks/in HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".as_slice(), format!("{:x}\r\n", 70_000).as_bytes(), &vec![b'1'; 70_000], b"\r\n0\r\n\r\n"].concat(), &[413]),
        ("giant array within the limit", req("POST", "/hooks/in", "application/json", giant.as_bytes()), &[202]),
        ("huge header", huge_header.into_bytes(), &[431, 400, 0]),
        ("garbage request line", b"\x00\x01\x02 NOT HTTP\r\n\r\n".to_vec(), &[400, 0]),
        ("unknown path", req("POST", "/hooks/nope", "application/json", b"{}"), &[404]),
        ("wrong method", req("DELETE", "/hooks/in", "application/json", b"{}"), &[405]),
        ("bad signature", req("POST", "/hooks/signed", "application/json", b"{}"), &[401]),
        ("path traversal", req("POST", "/hooks/../../etc/passwd", "application/json", b"{}"), &[404, 400]),
        ("bad query string", req("POST", "/hooks/in?%zz=%", "application/json", b"{}"), &[400]),
        ("huge content-length claim", b"POST /hooks/in HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n".to_vec(), &[413, 400]),
    ];
    let mut tally: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    let mut total = 0;
    for round in 0..34 {
        for (name, bytes, allowed) in &kinds {
            let (addr, bytes) = (addr.clone(), bytes.clone());
            let code = tokio::task::spawn_blocking(move || raw(&addr, &bytes))
                .await
                .expect("task");
            assert!(
                allowed.contains(&code),
                "round {round}: {name} got {code}, expected one of {allowed:?}"
            );
            *tally.entry(name).or_default().entry(code).or_default() += 1;
            total += 1;
        }
    }
    // Slow clients: headers that never finish, a body that never arrives.
    let slow_headers = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || raw(&addr, b"POST /hooks/in HTTP/1.1\r\nhost: x\r\n"))
    };
    let slow_body = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            raw(&addr, b"POST /hooks/in HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        })
    };
    let (h, b) = (
        slow_headers.await.expect("task"),
        slow_body.await.expect("task"),
    );
    assert!(h == 408 || h == 0, "slow headers: {h}");
    assert_eq!(b, 408, "slow body");
    *tally
        .entry("slow headers")
        .or_default()
        .entry(h)
        .or_default() += 1;
    *tally.entry("slow body").or_default().entry(b).or_default() += 1;
    total += 2;
    println!(
        "hostile input: {total} requests of {} kinds:",
        kinds.len() + 2
    );
    for (name, codes) in &tally {
        println!("  {name:<30} {codes:?}");
    }
    assert!(total >= 500);
    assert_eq!(server.get("/healthz").await, (200, json!({"status": "ok"})));
    let run = server
        .run_once("/hooks/in", &json!({"still": "working"}))
        .await;
    assert_eq!(run["status"], "succeeded");
    server.stop().await;
}

both!(a_refused_connection_does_not_reveal_a_secret_url);
async fn a_refused_connection_does_not_reveal_a_secret_url(backend: Backend) {
    // A loopback port with nothing listening: the connection is refused.
    let (_held, closed) = common::refusing_addr();
    let url = format!("http://{closed}/hooks/tok-5e1d7a");
    let dir = tempfile::tempdir().expect("tmp");
    let wf_dir = dir.path().join("workflows");
    common::write_files(
        &wf_dir,
        &[(
            "out.yaml",
            "trigger:\n  webhook: { path: /out }\nsteps:\n  - id: deliver\n    http:\n      url: '{{ env.DEST_URL }}'\n      retry: { attempts: 1 }\n",
        )],
    );
    let (wf_arg, store) = (wf_dir.display().to_string(), backend.store_args(dir.path()));
    let server = common::BinServer::start(
        &common::with_store(&["--workflows", &wf_arg], &store),
        &[("DEST_URL", &url), ("HOOKFLOW_LOG", "debug")],
    );
    let client = common::client();
    let answer = common::post_at(&client, &server.url("/hooks/out"), &json!({"n": 1})).await;
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let run = common::wait_run_at(&client, &server.base, &run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    let attempt = &run["steps"][0]["attempts"][0];
    let error = attempt["error"].as_str().expect("the attempt's error");
    assert!(error.contains("[redacted]"), "{error}");
    assert_eq!(attempt["request"]["url"], "[redacted]");
    let text = run.to_string();
    assert!(!text.contains("tok-5e1d7a"), "the URL leaked: {text}");
    let log = server.log.clone();
    server.terminate();
    let log = log.lock().expect("log").join("\n");
    assert!(log.len() > 500, "debug logging was captured");
    assert!(!log.contains("tok-5e1d7a"), "the URL leaked into the log");
}

both!(hmac_refuses_a_bare_digest_when_a_prefix_is_set);
async fn hmac_refuses_a_bare_digest_when_a_prefix_is_set(backend: Backend) {
    let wf = wf(
        "pre",
        "hmac: { secret: pre-secret, header: X-Signature, algorithm: sha256, encoding: hex, prefix: 'sha256=' }",
    );
    let server = TestServer::start_on(backend, &[("pre.yaml", &wf)], &[], |_| {}).await;
    let body = br#"{"id":"evt_1"}"#;
    let digest = hex::encode(sign(Algorithm::Sha256, b"pre-secret", body));
    let post = |value: String| {
        server
            .client
            .post(server.url("/hooks/sig/pre"))
            .header("content-type", "application/json")
            .header("x-signature", value)
            .body(body.to_vec())
            .send()
    };
    let resp = post(format!("sha256={digest}")).await.expect("sent");
    assert_eq!(resp.status().as_u16(), 202, "with its prefix");
    let resp = post(digest).await.expect("sent");
    assert_eq!(resp.status().as_u16(), 401, "a bare digest");
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"], "signature does not match");
    server.stop().await;
}

/// A loopback listener that counts the connections it gets and answers each
/// `200` (as a forwarding proxy would), so a request sent through it
/// "succeeds" without reaching its destination.
async fn counting_proxy() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, count)
}

both!(proxy_variables_do_not_route_requests_around_the_policy);
async fn proxy_variables_do_not_route_requests_around_the_policy(backend: Backend) {
    let mut sink = Sink::start().await;
    let (proxy, connections) = counting_proxy().await;
    let dir = tempfile::tempdir().expect("tmp");
    let wf_dir = dir.path().join("workflows");
    let step = |url: &str| {
        format!("trigger:\n  webhook: {{ path: /p }}\nsteps:\n  - id: call\n    http:\n      url: \"{url}\"\n      retry: {{ attempts: 1 }}\n")
    };
    common::write_files(
        &wf_dir,
        &[
            (
                "direct.yaml",
                &step(&sink.url("/direct")).replace("/p }", "/direct }"),
            ),
            // A name only a proxy could resolve: through one, the address
            // policy never sees where it goes.
            (
                "named.yaml",
                &step("http://metadata.hookflow-proxy-test.invalid/latest")
                    .replace("/p }", "/named }"),
            ),
        ],
    );
    let (wf_arg, store) = (wf_dir.display().to_string(), backend.store_args(dir.path()));
    let proxy_url = format!("http://{proxy}");
    let server = common::BinServer::start(
        &common::with_store(&["--workflows", &wf_arg], &store),
        &[
            ("HTTP_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
            ("HTTPS_PROXY", &proxy_url),
            ("https_proxy", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("all_proxy", &proxy_url),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("client");
    let answer = common::post_at(&client, &server.url("/hooks/direct"), &json!({})).await;
    let run = common::wait_run_at(
        &client,
        &server.base,
        answer["runs"][0].as_str().expect("run"),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        sink.next().await.uri,
        "/direct",
        "sent straight to the sink"
    );

    let answer = common::post_at(&client, &server.url("/hooks/named"), &json!({})).await;
    let run = common::wait_run_at(
        &client,
        &server.base,
        answer["runs"][0].as_str().expect("run"),
    )
    .await;
    assert_eq!(run["status"], "failed", "the name does not resolve: {run}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing went through the proxy"
    );
    server.terminate();
}

both!(event_data_cannot_move_a_request_to_another_port);
async fn event_data_cannot_move_a_request_to_another_port(backend: Backend) {
    let mut right = Sink::start().await;
    let mut other = Sink::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let wf_dir = dir.path().join("workflows");
    common::write_files(
        &wf_dir,
        &[(
            "fwd.yaml",
            "trigger:\n  webhook: { path: /fwd }\nsteps:\n  - id: call\n    http:\n      url: \"{{ env.BASE }}{{ $.event.x }}\"\n      retry: { attempts: 1 }\n",
        )],
    );
    let (wf_arg, store) = (wf_dir.display().to_string(), backend.store_args(dir.path()));
    let base = format!("http://{}", right.addr);
    let server = common::BinServer::start(
        &common::with_store(&["--workflows", &wf_arg], &store),
        &[("BASE", &base)],
    );
    let client = common::client();
    let port = other.addr.port();
    for (x, path) in [
        (
            format!("@127.0.0.1:{port}/stolen"),
            format!("/%40127.0.0.1%3A{port}%2Fstolen"),
        ),
        (format!(":{port}/stolen"), format!("/%3A{port}%2Fstolen")),
    ] {
        let answer = common::post_at(&client, &server.url("/hooks/fwd"), &json!({ "x": x })).await;
        let run = common::wait_run_at(
            &client,
            &server.base,
            answer["runs"][0].as_str().expect("run"),
        )
        .await;
        assert_eq!(run["status"], "succeeded", "{x}: {run}");
        assert_eq!(
            right.next().await.uri,
            path,
            "{x}: the workflow's host got it, in its path"
        );
    }
    assert!(
        other.quiet_for(Duration::from_millis(300)).await,
        "the port named in the event received nothing"
    );
    server.terminate();
}

both!(verify_secrets_that_would_let_anyone_sign_are_refused);
async fn verify_secrets_that_would_let_anyone_sign_are_refused(backend: Backend) {
    let gh = |secret: &str, path: &str| {
        format!("trigger:\n  webhook:\n    path: {path}\n    verify:\n      github: {{ secret: '{secret}' }}\nsteps:\n  - id: ok\n    transform: {{ script: '1' }}\n")
    };
    let files = [
        (
            "empty.yaml",
            gh(r#"{{ env.HOOKFLOW_TEST_UNSET_A ?? "" }}"#, "/empty"),
        ),
        (
            "request.yaml",
            gh(r#"{{ $.request.headers["x-key"] }}"#, "/request"),
        ),
        (
            "demo.yaml",
            gh(
                r#"{{ env.HOOKFLOW_TEST_UNSET_B ?? "demo-secret" }}"#,
                "/demo",
            ),
        ),
    ];
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let server = TestServer::start_on(backend, &refs, &[], |_| {}).await;
    let body = br#"{"id":"evt_1"}"#.to_vec();
    let signed_with = |key: &[u8]| {
        format!(
            "sha256={}",
            hex::encode(sign(Algorithm::Sha256, key, &body))
        )
    };
    let post = |path: &str, sig: String| {
        server
            .client
            .post(server.url(&format!("/hooks{path}")))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .header("x-key", "")
            .body(body.clone())
            .send()
    };
    // Signed with an empty key: nothing may accept it.
    for path in ["/empty", "/request"] {
        let resp = post(path, signed_with(b"")).await.expect("sent");
        assert_eq!(resp.status().as_u16(), 404, "{path}: not served");
    }
    let (_, list) = server.get("/api/workflows").await;
    let by_name = |name: &str| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|w| w["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let empty = by_name("empty");
    assert_eq!(empty["status"], "invalid", "{empty}");
    let error = empty["errors"][0].as_str().unwrap_or("");
    assert!(
        error.contains(":5:25:")
            && error.contains("empty")
            && error.contains("HOOKFLOW_TEST_UNSET_A"),
        "{error}"
    );
    let request = by_name("request");
    assert_eq!(request["status"], "invalid", "{request}");
    assert!(
        request["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("run context"),
        "{request}"
    );
    // A demo secret on a loopback address is served.
    assert_eq!(by_name("demo")["status"], "loaded");
    let resp = post("/demo", signed_with(b"demo-secret"))
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    server.stop().await;
}

both!(demo_secrets_are_not_served_on_a_network_address);
async fn demo_secrets_are_not_served_on_a_network_address(backend: Backend) {
    let root = env!("CARGO_MANIFEST_DIR");
    let data = tempfile::tempdir().expect("tmp");
    let extra = tempfile::tempdir().expect("tmp");
    // The shipped examples, plus one whose variable is set.
    let wf_dir = extra.path().join("workflows");
    common::write_files(
        &wf_dir,
        &[(
            "set.yaml",
            "trigger:\n  webhook:\n    path: /set\n    verify:\n      github: { secret: '{{ env.HOOKFLOW_TEST_SET ?? \"demo\" }}' }\nsteps:\n  - id: ok\n    transform: { script: '1' }\n",
        )],
    );
    for entry in std::fs::read_dir(format!("{root}/workflows")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(&path, wf_dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let (wf, sc, store) = (
        wf_dir.display().to_string(),
        format!("{root}/scripts"),
        backend.store_args(data.path()),
    );
    // The examples' secret variables are left unset, so their demo
    // fallbacks are what the workflows would verify with.
    let server = common::BinServer::start_at(
        "0.0.0.0:0",
        &common::with_store(
            &[
                "--workflows",
                &wf,
                "--scripts",
                &sc,
                "--api-token",
                "net-t0ken",
            ],
            &store,
        ),
        &[("HOOKFLOW_TEST_SET", "a-real-secret")],
    );
    let base = format!(
        "http://127.0.0.1:{}",
        server.addr().rsplit(':').next().expect("port")
    );
    let client = common::client();
    let list: Value = client
        .get(format!("{base}/api/workflows"))
        .bearer_auth("net-t0ken")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let status = |name: &str| {
        let w = list
            .as_array()
            .expect("list")
            .iter()
            .find(|w| w["name"] == name)
            .cloned()
            .unwrap_or(Value::Null);
        (
            w["status"].as_str().unwrap_or("").to_string(),
            w["errors"].to_string(),
        )
    };
    for (name, variable) in [
        ("stripe-payment-to-slack", "STRIPE_WEBHOOK_SECRET"),
        ("github-push-to-ci", "GITHUB_WEBHOOK_SECRET"),
        ("shopify-order-to-erp", "SHOPIFY_WEBHOOK_SECRET"),
    ] {
        let (status, errors) = status(name);
        assert_eq!(status, "invalid", "{name}: {errors}");
        assert!(
            errors.contains(variable) && errors.contains("loopback"),
            "{name}: {errors}"
        );
    }
    assert_eq!(status("demo-inbox").0, "loaded", "no verify: served");
    assert_eq!(status("set").0, "loaded", "its variable is set");
    // The demo secret opens nothing.
    let body = r#"{"ref":"refs/heads/main"}"#;
    let resp = client
        .post(format!("{base}/hooks/github"))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hex::encode(sign(
                    Algorithm::Sha256,
                    b"gh_hookflow_demo",
                    body.as_bytes()
                ))
            ),
        )
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 404);
    let log = server.log.clone();
    server.terminate();
    let log = log.lock().expect("log").join("\n");
    assert!(
        log.contains("invalid workflow") && log.contains("GITHUB_WEBHOOK_SECRET"),
        "{log}"
    );
}
