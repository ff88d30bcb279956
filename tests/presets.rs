//! Inbound provider presets (SPEC §5): `trigger.webhook.provider` sets the
//! signature scheme and its secret variable, the dedupe key, the event type
//! that `trigger.events` matches, and the run summary. Each provider is
//! driven through the real binary with requests signed as the provider
//! signs them; a wrong or stale signature gets `401`. Every server test
//! runs on sled and on PostgreSQL (dedupe answers come from the store).

mod common;

use base64::Engine as _;
use common::{binary, wait_run_at, with_store, write_files, Backend, BinServer};
use hookflow::signature::{sign, Algorithm};
use serde_json::{json, Value};
use std::process::Command;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn wf(name: &str, path: &str, provider: &str, events: Option<&str>) -> String {
    let events = events
        .map(|e| format!("  events: {e}\n"))
        .unwrap_or_default();
    format!(
        "name: {name}\ntrigger:\n  webhook: {{ path: {path}, provider: {provider} }}\n{events}steps:\n  - id: t\n    transform: {{ script: 'request.path' }}\n"
    )
}

const SECRETS: &[(&str, &str)] = &[
    ("STRIPE_WEBHOOK_SECRET", "whsec_preset_stripe_0001"),
    ("GITHUB_WEBHOOK_SECRET", "gh-preset-secret-0002"),
    ("SHOPIFY_WEBHOOK_SECRET", "shpss-preset-secret-0003"),
    ("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5"),
    ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ("GITLAB_WEBHOOK_TOKEN", "gitlab-preset-token-0004"),
    ("TWILIO_AUTH_TOKEN", "twilio-preset-token-0005"),
    ("LINEAR_WEBHOOK_SECRET", "lin_wh_preset_secret_0006"),
    ("HUBSPOT_CLIENT_SECRET", "hubspot-client-secret-0007"),
];

fn secret(name: &str) -> &'static str {
    SECRETS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .expect("a test secret")
}

struct Server {
    bin: BinServer,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(backend: Backend, workflows: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tmp");
        write_files(&dir.path().join("workflows"), workflows);
        let store = backend.store_args(dir.path());
        let bin = BinServer::start(
            &with_store(
                &[
                    "--workflows",
                    &dir.path().join("workflows").display().to_string(),
                    "--connectors",
                    &dir.path().join("connectors").display().to_string(),
                ],
                &store,
            ),
            SECRETS,
        );
        Server {
            bin,
            client: common::client(),
            _dir: dir,
        }
    }

    async fn post(
        &self,
        path: &str,
        ct: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.bin.url(path))
            .header("content-type", ct)
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn run(&self, answer: &Value) -> Value {
        let id = answer["runs"][0].as_str().expect("a run");
        wait_run_at(&self.client, &self.bin.base, id).await
    }
}

fn runs(answer: &Value) -> usize {
    answer["runs"].as_array().map(Vec::len).unwrap_or(0)
}

both!(
    stripe_github_shopify_slack_and_standard_presets,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn stripe_github_shopify_slack_and_standard_presets(backend: Backend) {
    let s = Server::start(
        backend,
        &[
            (
                "stripe.yaml",
                &wf(
                    "stripe",
                    "/stripe",
                    "stripe",
                    Some("[payment_intent.succeeded, \"charge.*\"]"),
                ),
            ),
            (
                "github.yaml",
                &wf("github", "/github", "github", Some("[push]")),
            ),
            (
                "shopify.yaml",
                &wf("shopify", "/shopify", "shopify", Some("[orders/create]")),
            ),
            (
                "slack.yaml",
                &wf("slack", "/slack", "slack", Some("[app_mention, /deploy]")),
            ),
            ("standard.yaml", &wf("standard", "/std", "standard", None)),
        ],
    );

    // Stripe: signed with STRIPE_WEBHOOK_SECRET, dedupe on the event id.
    let body = json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}}).to_string();
    let t = now();
    let sig = |body: &str| {
        hex::encode(sign(
            Algorithm::Sha256,
            secret("STRIPE_WEBHOOK_SECRET").as_bytes(),
            format!("{t}.{body}").as_bytes(),
        ))
    };
    let h = |body: &str| vec![("stripe-signature", format!("t={t},v1={}", sig(body)))];
    let (code, first) = s
        .post("/hooks/stripe", "application/json", &h(&body), &body)
        .await;
    assert_eq!((code, runs(&first)), (202, 1), "{first}");
    let run = s.run(&first).await;
    assert_eq!(run["summary"], "payment_intent.succeeded · pi_1");
    let (code, again) = s
        .post("/hooks/stripe", "application/json", &h(&body), &body)
        .await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["runs"], first["runs"]);
    // `charge.*` matches any charge event; other types start nothing.
    let refund =
        json!({"id": "evt_2", "type": "charge.refunded", "data": {"object": {"id": "ch_1"}}})
            .to_string();
    let (code, a) = s
        .post("/hooks/stripe", "application/json", &h(&refund), &refund)
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    let other = json!({"id": "evt_3", "type": "customer.created"}).to_string();
    let (code, a) = s
        .post("/hooks/stripe", "application/json", &h(&other), &other)
        .await;
    assert_eq!((code, runs(&a)), (202, 0), "{a}");
    let forged = vec![("stripe-signature", format!("t={t},v1={}", "0".repeat(64)))];
    let (code, _) = s
        .post("/hooks/stripe", "application/json", &forged, &body)
        .await;
    assert_eq!(code, 401);

    // GitHub: X-GitHub-Event is the type, X-GitHub-Delivery the dedupe key.
    let body =
        json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/api"}}).to_string();
    let sig = hex::encode(sign(
        Algorithm::Sha256,
        secret("GITHUB_WEBHOOK_SECRET").as_bytes(),
        body.as_bytes(),
    ));
    let gh = |event: &str, delivery: &str| {
        vec![
            ("x-github-event", event.to_string()),
            ("x-github-delivery", delivery.to_string()),
            ("x-hub-signature-256", format!("sha256={sig}")),
        ]
    };
    let (code, a) = s
        .post(
            "/hooks/github",
            "application/json",
            &gh("push", "d-1"),
            &body,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    assert_eq!(s.run(&a).await["summary"], "push · acme/api");
    let (code, a) = s
        .post(
            "/hooks/github",
            "application/json",
            &gh("push", "d-1"),
            &body,
        )
        .await;
    assert_eq!((code, a["duplicate"].clone()), (200, json!(true)), "{a}");
    let (code, a) = s
        .post(
            "/hooks/github",
            "application/json",
            &gh("issues", "d-2"),
            &body,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 0), "{a}");

    // Shopify: X-Shopify-Topic, X-Shopify-Webhook-Id.
    let body = json!({"id": 820982911946154508u64, "name": "#9999"}).to_string();
    let sig = b64(&sign(
        Algorithm::Sha256,
        secret("SHOPIFY_WEBHOOK_SECRET").as_bytes(),
        body.as_bytes(),
    ));
    let shop = |topic: &str, id: &str| {
        vec![
            ("x-shopify-topic", topic.to_string()),
            ("x-shopify-webhook-id", id.to_string()),
            ("x-shopify-shop-domain", "acme.myshopify.com".to_string()),
            ("x-shopify-hmac-sha256", sig.clone()),
        ]
    };
    let (code, a) = s
        .post(
            "/hooks/shopify",
            "application/json",
            &shop("orders/create", "w-1"),
            &body,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    assert_eq!(
        s.run(&a).await["summary"],
        "orders/create · acme.myshopify.com"
    );
    let (code, _) = s
        .post(
            "/hooks/shopify",
            "application/json",
            &shop("orders/create", "w-1"),
            &body,
        )
        .await;
    assert_eq!(code, 200);
    let (code, a) = s
        .post(
            "/hooks/shopify",
            "application/json",
            &shop("orders/paid", "w-2"),
            &body,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 0), "{a}");

    // Slack: the Events API's `event.type`, else a slash command's `command`.
    let slack_sig = |body: &str| {
        let t = now();
        let sig = hex::encode(sign(
            Algorithm::Sha256,
            secret("SLACK_SIGNING_SECRET").as_bytes(),
            format!("v0:{t}:{body}").as_bytes(),
        ));
        vec![
            ("x-slack-request-timestamp", t.to_string()),
            ("x-slack-signature", format!("v0={sig}")),
        ]
    };
    let body = json!({"type": "event_callback", "event_id": "Ev01", "event": {"type": "app_mention", "text": "hi"}}).to_string();
    let (code, a) = s
        .post("/hooks/slack", "application/json", &slack_sig(&body), &body)
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    let (code, _) = s
        .post("/hooks/slack", "application/json", &slack_sig(&body), &body)
        .await;
    assert_eq!(code, 200, "dedupe on event_id");
    let form = "command=%2Fdeploy&text=api&user_name=ana";
    let (code, a) = s
        .post(
            "/hooks/slack",
            "application/x-www-form-urlencoded",
            &slack_sig(form),
            form,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    let other = "command=%2Fother&text=x";
    let (code, a) = s
        .post(
            "/hooks/slack",
            "application/x-www-form-urlencoded",
            &slack_sig(other),
            other,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 0), "{a}");

    // Standard Webhooks: webhook-id is the dedupe key, body `type` the type.
    let body = r#"{"type":"invoice.paid","id":"inv_1"}"#;
    let t = now();
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("b64");
    let sig = b64(&sign(
        Algorithm::Sha256,
        &key,
        format!("msg_1.{t}.{body}").as_bytes(),
    ));
    let std_h = vec![
        ("webhook-id", "msg_1".to_string()),
        ("webhook-timestamp", t.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
    ];
    let (code, a) = s.post("/hooks/std", "application/json", &std_h, body).await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    assert_eq!(s.run(&a).await["summary"], "invoice.paid");
    let (code, _) = s.post("/hooks/std", "application/json", &std_h, body).await;
    assert_eq!(code, 200);
}

both!(
    gitlab_twilio_linear_and_hubspot_presets,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn gitlab_twilio_linear_and_hubspot_presets(backend: Backend) {
    let twilio_published = "name: twilio-published\ntrigger:\n  webhook:\n    path: /myapp\n    provider: twilio\n    verify:\n      twilio: { secret: \"12345\", url: \"https://mycompany.com/myapp.php?foo=1&bar=2\" }\nsteps:\n  - id: t\n    transform: { script: 'event.Digits' }\n";
    let s = Server::start(
        backend,
        &[
            (
                "gitlab.yaml",
                &wf("gitlab", "/gitlab", "gitlab", Some("[Push Hook]")),
            ),
            ("twilio.yaml", &wf("twilio", "/sms", "twilio", None)),
            ("twilio-published.yaml", twilio_published),
            (
                "linear.yaml",
                &wf("linear", "/linear", "linear", Some("[Issue]")),
            ),
            (
                "hubspot.yaml",
                &wf("hubspot", "/hubspot", "hubspot", Some("[contact.creation]")),
            ),
        ],
    );

    // GitLab: the token itself, compared in constant time.
    let body =
        json!({"object_kind": "push", "project": {"path_with_namespace": "acme/api"}}).to_string();
    let gl = |token: &str, event: &str, uuid: &str| {
        vec![
            ("x-gitlab-token", token.to_string()),
            ("x-gitlab-event", event.to_string()),
            ("x-gitlab-event-uuid", uuid.to_string()),
        ]
    };
    let tok = secret("GITLAB_WEBHOOK_TOKEN");
    let (code, a) = s
        .post(
            "/hooks/gitlab",
            "application/json",
            &gl(tok, "Push Hook", "u-1"),
            &body,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    assert_eq!(s.run(&a).await["summary"], "Push Hook · acme/api");
    let (code, _) = s
        .post(
            "/hooks/gitlab",
            "application/json",
            &gl(tok, "Push Hook", "u-1"),
            &body,
        )
        .await;
    assert_eq!(code, 200, "dedupe on X-Gitlab-Event-UUID");
    let (code, a) = s
        .post(
            "/hooks/gitlab",
            "application/json",
            &gl(tok, "Issue Hook", "u-2"),
            &body,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 0), "{a}");
    let (code, a) = s
        .post(
            "/hooks/gitlab",
            "application/json",
            &gl("not-the-token", "Push Hook", "u-3"),
            &body,
        )
        .await;
    assert_eq!(code, 401, "{a}");
    let (code, _) = s
        .post("/hooks/gitlab", "application/json", &[], &body)
        .await;
    assert_eq!(code, 401);

    // Twilio, Twilio's published example: the URL set in `verify.url`.
    let params = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    let h = vec![(
        "x-twilio-signature",
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ=".to_string(),
    )];
    let (code, a) = s
        .post(
            "/hooks/myapp",
            "application/x-www-form-urlencoded",
            &h,
            params,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    assert_eq!(s.run(&a).await["steps"][0]["output"], "1234");
    let tampered = params.replace("Digits=1234", "Digits=9999");
    let (code, _) = s
        .post(
            "/hooks/myapp",
            "application/x-www-form-urlencoded",
            &h,
            &tampered,
        )
        .await;
    assert_eq!(code, 401);

    // Twilio, the default URL: from the Host header and the path.
    let url = s.bin.url("/hooks/sms?x=1");
    let form = [
        ("Body", "hello"),
        ("From", "+15005550006"),
        ("MessageSid", "SM1"),
        ("To", "+15005550001"),
    ];
    let mut signed = url.clone();
    for (k, v) in &form {
        signed.push_str(k);
        signed.push_str(v);
    }
    let sig = b64(&sign(
        Algorithm::Sha1,
        secret("TWILIO_AUTH_TOKEN").as_bytes(),
        signed.as_bytes(),
    ));
    let body = serde_urlencoded::to_string(form).expect("form");
    let tw = |sig: &str, idem: &str| {
        vec![
            ("x-twilio-signature", sig.to_string()),
            ("i-twilio-idempotency-token", idem.to_string()),
        ]
    };
    let resp = s
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &sig)
        .header("i-twilio-idempotency-token", "idem-1")
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let (code, _) = s
        .post(
            "/hooks/sms?x=1",
            "application/x-www-form-urlencoded",
            &tw(&sig, "idem-1"),
            &body,
        )
        .await;
    assert_eq!(code, 200, "dedupe on I-Twilio-Idempotency-Token");
    let (code, _) = s
        .post(
            "/hooks/sms?x=2",
            "application/x-www-form-urlencoded",
            &tw(&sig, "idem-2"),
            &body,
        )
        .await;
    assert_eq!(code, 401, "the URL is part of what is signed");

    // Linear: hex HMAC of the body; `webhookTimestamp` within a minute.
    let lin = |ts_ms: u64, ty: &str| {
        let body = json!({"action": "create", "type": ty, "data": {"id": "i-1", "identifier": "ENG-1"}, "webhookTimestamp": ts_ms}).to_string();
        let sig = hex::encode(sign(
            Algorithm::Sha256,
            secret("LINEAR_WEBHOOK_SECRET").as_bytes(),
            body.as_bytes(),
        ));
        (body, sig)
    };
    let (body, sig) = lin(now() * 1000, "Issue");
    let h = vec![
        ("linear-signature", sig.clone()),
        ("linear-delivery", "del-1".to_string()),
    ];
    let (code, a) = s.post("/hooks/linear", "application/json", &h, &body).await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    assert_eq!(s.run(&a).await["summary"], "Issue · create · ENG-1");
    let (code, _) = s.post("/hooks/linear", "application/json", &h, &body).await;
    assert_eq!(code, 200, "dedupe on Linear-Delivery");
    let (stale, sig) = lin((now() - 120) * 1000, "Issue");
    let (code, a) = s
        .post(
            "/hooks/linear",
            "application/json",
            &[("linear-signature", sig)],
            &stale,
        )
        .await;
    assert_eq!(code, 401, "{a}");
    let (comment, sig) = lin(now() * 1000, "Comment");
    let (code, a) = s
        .post(
            "/hooks/linear",
            "application/json",
            &[
                ("linear-signature", sig),
                ("linear-delivery", "del-2".into()),
            ],
            &comment,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 0), "{a}");

    // HubSpot v3: method + URI + body + timestamp, within five minutes.
    let body = json!([{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 123, "portalId": 62515}]).to_string();
    let hub = |ts_ms: u64, uri: &str| {
        let msg = format!("POST{uri}{body}{ts_ms}");
        let sig = b64(&sign(
            Algorithm::Sha256,
            secret("HUBSPOT_CLIENT_SECRET").as_bytes(),
            msg.as_bytes(),
        ));
        vec![
            ("x-hubspot-signature-v3", sig),
            ("x-hubspot-request-timestamp", ts_ms.to_string()),
        ]
    };
    let uri = s.bin.url("/hooks/hubspot");
    let (code, a) = s
        .post(
            "/hooks/hubspot",
            "application/json",
            &hub(now() * 1000, &uri),
            &body,
        )
        .await;
    assert_eq!((code, runs(&a)), (202, 1), "{a}");
    assert_eq!(s.run(&a).await["summary"], "contact.creation · 123");
    let (code, _) = s
        .post(
            "/hooks/hubspot",
            "application/json",
            &hub((now() - 600) * 1000, &uri),
            &body,
        )
        .await;
    assert_eq!(code, 401, "older than five minutes");
    let (code, _) = s
        .post(
            "/hooks/hubspot",
            "application/json",
            &hub(now() * 1000, "https://elsewhere.example.com/hooks/hubspot"),
            &body,
        )
        .await;
    assert_eq!(code, 401);
}

fn validate(files: &[(&str, &str)], env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tmp");
    write_files(dir.path(), files);
    let mut cmd = Command::new(binary());
    cmd.arg("validate")
        .arg("--connectors")
        .arg(dir.path().join("connectors"))
        .arg(dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The test process's own environment must not satisfy a preset.
    for (k, _) in SECRETS {
        if !env.iter().any(|(e, _)| e == k) {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn preset_mistakes_are_validation_errors() {
    // An unset secret variable is named.
    let (code, out) = validate(&[("s.yaml", &wf("s", "/s", "stripe", None))], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("s.yaml:3:34: provider: `stripe` verifies with the secret in `STRIPE_WEBHOOK_SECRET`, which is not set; set it to the endpoint's signing secret, or give the secret under `verify:`"),
        "{out}"
    );
    // Explicit `verify` overrides the preset's (and needs no variable).
    let own = "name: s\ntrigger:\n  webhook:\n    path: /s\n    provider: stripe\n    verify: { stripe: { secret: '{{ env.MY_STRIPE_SECRET }}' } }\n  events: [payment_intent.succeeded]\nsteps:\n  - id: t\n    transform: { script: '1' }\n";
    let (code, out) = validate(&[("s.yaml", own)], &[("MY_STRIPE_SECRET", "whsec_x_0009")]);
    assert_eq!(code, 0, "{out}");
    // An unknown provider gets a hint.
    let (code, out) = validate(&[("s.yaml", &wf("s", "/s", "strpe", None))], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("s.yaml:3:34: provider: unknown provider `strpe`; did you mean `stripe`?"),
        "{out}"
    );
    // Twilio carries no event type.
    let (code, out) = validate(
        &[("t.yaml", &wf("t", "/t", "twilio", Some("[sms]")))],
        &[("TWILIO_AUTH_TOKEN", "x-token-value")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("t.yaml:4:11: events: `twilio` webhooks carry no event type to match; use `when:` on the request instead"),
        "{out}"
    );
    // `events` without a provider has nothing to match.
    let plain = "name: p\ntrigger:\n  webhook: { path: /p }\n  events: [push]\nsteps:\n  - id: t\n    transform: { script: '1' }\n";
    let (code, out) = validate(&[("p.yaml", plain)], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("p.yaml:4:11: events: there is no event type to match without `provider:` (or a connector's `webhook.event_type`); use `when:` instead"),
        "{out}"
    );
}

both!(
    a_connector_can_carry_its_providers_preset,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_connector_can_carry_its_providers_preset(backend: Backend) {
    let conn = r#"connector: acme
description: ACME's API, and the webhooks ACME sends
base_url: https://api.acme.example.com
webhook:
  verify:
    hmac: { secret: "{{ env.ACME_SIGNING_KEY }}", header: X-Acme-Signature, prefix: "sha256=" }
  dedupe: { key: "{{ $.request.headers['x-acme-delivery'] }}" }
  event_type: "{{ $.event.kind }}"
  summary: "{{ $.event.kind }} for {{ $.event.account }}"
actions:
  ping:
    http: { path: /ping }
"#;
    let dir = tempfile::tempdir().expect("tmp");
    write_files(&dir.path().join("connectors"), &[("acme.yaml", conn)]);
    write_files(
        &dir.path().join("workflows"),
        &[(
            "a.yaml",
            &wf("a", "/acme", "acme", Some("[account.closed]")),
        )],
    );
    let store = backend.store_args(dir.path());
    let bin = BinServer::start(
        &with_store(
            &[
                "--workflows",
                &dir.path().join("workflows").display().to_string(),
                "--connectors",
                &dir.path().join("connectors").display().to_string(),
            ],
            &store,
        ),
        &[("ACME_SIGNING_KEY", "acme-key-0010")],
    );
    let client = common::client();
    let post = |kind: &str, delivery: &str, key: &str| {
        let body = json!({"kind": kind, "account": "A-7"}).to_string();
        let sig = hex::encode(sign(Algorithm::Sha256, key.as_bytes(), body.as_bytes()));
        client
            .post(bin.url("/hooks/acme"))
            .header("content-type", "application/json")
            .header("x-acme-signature", format!("sha256={sig}"))
            .header("x-acme-delivery", delivery)
            .body(body)
            .send()
    };
    let resp = post("account.closed", "d-1", "acme-key-0010")
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let a: Value = resp.json().await.expect("json");
    let run = wait_run_at(&client, &bin.base, a["runs"][0].as_str().expect("run")).await;
    assert_eq!(run["summary"], "account.closed for A-7");
    let resp = post("account.closed", "d-1", "acme-key-0010")
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = post("account.opened", "d-2", "acme-key-0010")
        .await
        .expect("sent");
    let a: Value = resp.json().await.expect("json");
    assert_eq!(runs(&a), 0, "{a}");
    let resp = post("account.closed", "d-3", "wrong-key")
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 401);
}
