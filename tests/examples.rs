//! The shipped example workflows, run by the real binary against a real
//! sink, with real signatures: what each one delivers, and that secrets
//! from the environment never show in the stored history; on sled and on
//! PostgreSQL.

mod common;

use base64::Engine as _;
use common::{shipped_fixture as fixture, with_store, Backend, BinServer, Sink};
use hookflow::signature::{sign, Algorithm};
use serde_json::{json, Value};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

both!(shipped_examples_deliver_what_they_promise);
async fn shipped_examples_deliver_what_they_promise(backend: Backend) {
    let mut sink = Sink::start().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let data = tempfile::tempdir().expect("tmp");
    let (wf, sc) = (format!("{root}/workflows"), format!("{root}/scripts"));
    let store = backend.store_args(data.path());
    let shipped = common::shipped_examples_env(&sink);
    let mut env: Vec<(&str, &str)> = shipped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Everything the server logs is searched for secrets below.
    env.push(("HOOKFLOW_LOG", "debug"));
    let server = BinServer::start(
        &with_store(&["--workflows", &wf, "--scripts", &sc], &store),
        &env,
    );
    let client = common::client();

    // Stripe → Slack
    let body = fixture("stripe_payment_intent_succeeded.json");
    let resp = common::post_stripe_signed(
        &client,
        &server.url("/hooks/stripe"),
        b"whsec_test_0123456789",
        body.clone(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 202);
    let slack = sink.next().await;
    assert_eq!(slack.uri, "/slack");
    assert_eq!(
        slack.json(),
        json!({"text": "Payment of 20 USD from jenny@example.com"})
    );
    // The demo secret no longer works once a real one is set.
    let resp = common::post_stripe_signed(
        &client,
        &server.url("/hooks/stripe"),
        b"whsec_hookflow_demo",
        body,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 401);

    // GitHub → CI
    let resp = common::post_github_push(
        &client,
        &server.url("/hooks/github"),
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        fixture("github_push.json"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 202);
    let ci = sink.next().await;
    assert_eq!(ci.uri, "/ci?repo=acme%2Fshop-api");
    assert_eq!(
        ci.headers["authorization"],
        "Bearer ci-token-very-secret-43"
    );
    assert_eq!(
        ci.headers["x-github-delivery"],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(
        ci.json(),
        json!({"repository": "acme/shop-api", "ref": "refs/heads/main",
        "sha": "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5", "reason": "push",
        "title": "Fix rounding in invoice totals", "author": "octocat", "commit_count": 1})
    );

    // Shopify → ERP (+ large-order alert as a form)
    let resp =
        common::post_shopify_order(&client, &server.url("/hooks/shopify/orders"), None, None).await;
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    let erp = sink.next().await;
    assert_eq!(erp.uri, "/erp");
    assert_eq!(erp.headers["x-api-key"], "erp-key-very-secret-42");
    let order = erp.json();
    assert_eq!(order["reference"], "#1042");
    assert_eq!(order["total"], 649.9);
    assert_eq!(
        order["lines"][0],
        json!({"sku": "DESK-OAK-140", "quantity": 1, "unit_price": 599.9})
    );
    assert_eq!(order["orders_seen"], 1);
    // Then each line item, in order, each with its own key.
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    for (i, sku) in ["DESK-OAK-140", "CABLE-TRAY"].iter().enumerate() {
        let line = sink.next().await;
        assert_eq!(line.uri, "/erp-lines");
        assert_eq!(line.json()["sku"], *sku);
        assert_eq!(line.json()["line"], i);
        assert_eq!(line.json()["order"], "#1042");
        assert_eq!(
            line.headers["idempotency-key"],
            format!("{run_id}.send_line.{i}")
        );
        assert_eq!(line.headers["x-api-key"], "erp-key-very-secret-42");
    }
    let sales = sink.next().await;
    assert_eq!(sales.uri, "/sales");
    assert_eq!(
        sales.json(),
        json!({"text": "Large order #1042: 649.9 EUR"})
    );

    // The stored run shows the request with the secret blanked out.
    let run = common::wait_run_at(
        &client,
        &server.base,
        answer["runs"][0].as_str().expect("run"),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let erp_step = run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "send_to_erp"))
        .expect("step");
    assert_eq!(
        erp_step["attempts"][0]["request"]["headers"]["X-Api-Key"],
        "[redacted]"
    );
    assert_eq!(
        erp_step["attempts"][0]["request"]["url"], "[redacted]",
        "the ERP URL came from the environment"
    );
    let all_runs = client
        .get(server.url("/api/runs?limit=500"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    let all_events = client
        .get(server.url("/api/events?limit=500"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    for secret in [
        "erp-key-very-secret-42",
        "ci-token-very-secret-43",
        "whsec_test_0123456789",
        "gh-test-secret-value",
        "shpss-test-secret-value",
    ] {
        assert!(!all_runs.contains(secret), "{secret} leaked into runs");
        assert!(!all_events.contains(secret), "{secret} leaked into events");
    }
    // Stripe invoices, routed by a switch: a paid one to the CRM, a
    // failed payment to the billing channel.
    let stripe_url = server.url("/hooks/stripe");
    let post_stripe = |body: String| {
        common::post_stripe_signed(&client, &stripe_url, b"whsec_test_0123456789", body)
    };
    let resp = post_stripe(fixture("stripe_invoice_paid.json")).await;
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(
        answer["runs"].as_array().map(Vec::len),
        Some(1),
        "only the router: {answer}"
    );
    let crm = sink.next().await;
    assert_eq!(crm.uri, "/crm");
    assert_eq!(
        crm.json(),
        json!({"customer": "cus_QhR2n3k4m5", "invoice": "ACME-0042", "paid": 4900, "currency": "eur"})
    );
    let run = common::wait_run_at(
        &client,
        &server.base,
        answer["runs"][0].as_str().expect("run"),
    )
    .await;
    assert_eq!(run["workflow"], "stripe-invoice-router");
    assert_eq!(run["steps"][0]["branch"], 0, "{run}");
    let resp = post_stripe(fixture("stripe_invoice_payment_failed.json")).await;
    assert_eq!(resp.status().as_u16(), 202);
    let billing = sink.next().await;
    assert_eq!(billing.uri, "/billing");
    assert_eq!(
        billing.json()["text"],
        "Payment failed for invoice ACME-0043 (49.00 EUR, attempt 2): https://invoice.stripe.com/i/acct_1/test_0043"
    );

    // An expired checkout: the reminder goes out after the wait, not before.
    let resp = post_stripe(fixture("stripe_checkout_session_expired.json")).await;
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    let cart_run = answer["runs"][0].as_str().expect("run").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let wake = loop {
        let run = common::get_at(&client, &server.url(&format!("/api/runs/{cart_run}"))).await;
        if run["status"] == "waiting" {
            break run["next_attempt_at"]
                .as_str()
                .expect("wake time")
                .to_string();
        }
        assert!(std::time::Instant::now() < deadline, "never waiting: {run}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let email = tokio::time::timeout(std::time::Duration::from_secs(30), sink.rx.recv())
        .await
        .expect("the reminder came")
        .expect("sink open");
    let arrived = hookflow::record::Timestamp::now();
    assert!(arrived >= hookflow::record::Timestamp::parse(&wake).expect("time"));
    assert_eq!(email.uri, "/email");
    assert_eq!(
        email.json(),
        json!({"to": "sam@example.com", "template": "cart_reminder", "name": "Sam Doe",
               "recover_url": "https://buy.stripe.com/r/live_recover_0001"})
    );

    // A Slack slash command: answered by the run's respond step, then the
    // details are posted to the command's response_url.
    let form = format!(
        "token=x&team_id=T0001&user_name=ada&command=%2Forder&text=1042&response_url={}",
        percent_encoding::utf8_percent_encode(
            &sink.url("/slack-response"),
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    let ts = now();
    let sig = hex::encode(sign(
        Algorithm::Sha256,
        b"slack-test-signing-secret",
        format!("v0:{ts}:{form}").as_bytes(),
    ));
    let resp = client
        .post(server.url("/hooks/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", format!("v0={sig}"))
        .body(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let reply: Value = resp.json().await.expect("json");
    assert_eq!(
        reply,
        json!({"response_type": "ephemeral", "text": "Looking up order 1042 for you, ada…"})
    );
    let lookup = sink.next().await;
    assert_eq!(
        (lookup.method.as_str(), lookup.uri.as_str()),
        ("GET", "/orders?number=1042")
    );
    let details = sink.next().await;
    assert_eq!(details.uri, "/slack-response");
    assert_eq!(
        details.json()["text"],
        "Order 1042: accepted by the order system"
    );

    // The ERP now fails: its error must not leak the URL secret either.
    sink.answer(
        "/erp",
        vec![(
            500,
            vec![],
            "{\"error\":\"erp-key-very-secret-42 rejected\"}".into(),
        )],
    );
    let resp = common::post_shopify_order(
        &client,
        &server.url("/hooks/shopify/orders"),
        None,
        Some("Bearer inbound-credential-77"),
    )
    .await;
    let answer: Value = resp.json().await.expect("json");
    sink.next().await;
    let event: Value = common::get_at(
        &client,
        &server.url(&format!(
            "/api/events/{}",
            answer["event_id"].as_str().expect("id")
        )),
    )
    .await;
    assert_eq!(event["headers"]["authorization"], "[redacted]");
    assert_eq!(event["headers"]["x-shopify-hmac-sha256"], "[redacted]");
    let run_id = answer["runs"][0].as_str().expect("run").to_string();
    let run_text = client
        .get(server.url(&format!("/api/runs/{run_id}")))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    let log = server.log.clone();
    server.terminate();
    let log = log.lock().expect("log").join("\n");
    assert!(log.len() > 1000, "debug logging was captured");
    for secret in [
        "erp-key-very-secret-42",
        "ci-token-very-secret-43",
        "whsec_test_0123456789",
        "gh-test-secret-value",
        "shpss-test-secret-value",
        "slack-test-signing-secret",
        "inbound-credential-77",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
        assert!(
            !run_text.contains(secret),
            "{secret} leaked into the failing run"
        );
    }
}

/// A delivery demo-inbox must get: what it is, and how to know it.
type Wanted = (&'static str, fn(&Value) -> bool);

/// Held by the test that serves on the examples' default address.
static DEFAULT_ADDRESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// With no settings at all, `serve` on its default address runs every
// shipped example end to end (SPEC §2): each one's connector falls back
// to the built-in `demo-inbox` workflow, which records what it got.
both!(
    shipped_examples_run_end_to_end_with_no_settings,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn shipped_examples_run_end_to_end_with_no_settings(backend: Backend) {
    // One backend's run at a time: both need the default address.
    let _port = DEFAULT_ADDRESS.lock().await;
    // The examples' fallbacks name the default address.
    if std::net::TcpListener::bind("127.0.0.1:8080").is_err() {
        assert!(
            std::env::var("HOOKFLOW_REQUIRE_PORT_8080").is_err(),
            "127.0.0.1:8080 is taken"
        );
        eprintln!("SKIPPED: 127.0.0.1:8080, the examples' default address, is taken");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let data = tempfile::tempdir().expect("tmp");
    let (wf, sc, cn) = (
        format!("{root}/workflows"),
        format!("{root}/scripts"),
        format!("{root}/connectors"),
    );
    let store = backend.store_args(data.path());
    let server = BinServer::start_tweaked(
        "127.0.0.1:8080",
        &with_store(
            &["--workflows", &wf, "--scripts", &sc, "--connectors", &cn],
            &store,
        ),
        &[],
        |cmd| {
            for v in [
                "STRIPE_WEBHOOK_SECRET",
                "GITHUB_WEBHOOK_SECRET",
                "SHOPIFY_WEBHOOK_SECRET",
                "SLACK_WEBHOOK_URL",
                "SALES_WEBHOOK_URL",
                "CI_TRIGGER_URL",
                "CI_TOKEN",
                "ERP_BASE_URL",
                "ERP_API_KEY",
                "SLACK_BASE_URL",
                "CI_BASE_URL",
                "ERP_BASE_URL",
            ] {
                cmd.env_remove(v);
            }
        },
    );
    let client = common::client();
    let post = |path: &str, headers: Vec<(&str, String)>, body: String| {
        let mut req = client
            .post(server.url(path))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(body).send()
    };
    let mut started = Vec::new();
    let body = fixture("stripe_payment_intent_succeeded.json");
    let t = now();
    let sig = hex::encode(sign(
        Algorithm::Sha256,
        b"whsec_hookflow_demo",
        format!("{t}.{body}").as_bytes(),
    ));
    let resp = post(
        "/hooks/stripe",
        vec![("stripe-signature", format!("t={t},v1={sig}"))],
        body,
    )
    .await
    .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    started.push(answer["runs"][0].as_str().expect("a run").to_string());
    let body = fixture("github_push.json");
    let sig = hex::encode(sign(
        Algorithm::Sha256,
        b"gh_hookflow_demo",
        body.as_bytes(),
    ));
    let resp = post(
        "/hooks/github",
        vec![
            ("x-github-event", "push".into()),
            (
                "x-github-delivery",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            ),
            ("x-hub-signature-256", format!("sha256={sig}")),
        ],
        body,
    )
    .await
    .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    started.push(answer["runs"][0].as_str().expect("a run").to_string());
    let body = fixture("shopify_order.json");
    let sig = base64::engine::general_purpose::STANDARD.encode(sign(
        Algorithm::Sha256,
        b"shpss_hookflow_demo",
        body.as_bytes(),
    ));
    let resp = post(
        "/hooks/shopify/orders",
        vec![
            ("x-shopify-topic", "orders/create".into()),
            ("x-shopify-shop-domain", "acme.myshopify.com".into()),
            ("x-shopify-hmac-sha256", sig),
        ],
        body,
    )
    .await
    .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    started.push(answer["runs"][0].as_str().expect("a run").to_string());

    // Deliveries reach demo-inbox: Slack's message, the CI build, the ERP
    // order (and its lines) and the large-order alert, in any order.
    let wanted: [Wanted; 4] = [
        ("the Slack message", |b| {
            *b == json!({"text": "Payment of 20 USD from jenny@example.com"})
        }),
        ("the large-order alert", |b| {
            *b == json!({"text": "Large order #1042: 649.9 EUR"})
        }),
        ("the CI build", |b| {
            b["repository"] == "acme/shop-api" && b["reason"] == "push"
        }),
        ("the ERP order", |b| b["reference"] == "#1042"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let page = common::get_at(
            &client,
            &server.url("/api/runs?workflow=demo-inbox&status=succeeded&limit=100"),
        )
        .await;
        let bodies: Vec<Value> = page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["steps"][0]["output"]["body"].clone())
            .collect();
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(_, is)| !bodies.iter().any(is))
            .map(|(what, _)| *what)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo-inbox is missing {missing:?}: {bodies:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And every example's own run succeeded.
    assert_eq!(started.len(), 3);
    for id in started {
        let run = common::wait_run_at(&client, &server.base, &id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
}
