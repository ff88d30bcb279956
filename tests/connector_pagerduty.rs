//! The PagerDuty connector (`connectors/pagerduty.yaml`) against
//! PagerDuty's stand-in (`tests/standins/pagerduty.rs`): trigger an
//! alert, acknowledge and resolve it by its dedup_key; PagerDuty's
//! documented success, refusal and rate-limit answers.

mod common;
#[path = "standins/pagerduty.rs"]
mod pagerduty;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

/// Page, then acknowledge and resolve the same alert by the dedup_key
/// PagerDuty answered.
const WF: &str = r#"name: oncall
trigger:
  webhook: { path: /in }
steps:
  - id: page
    uses: pagerduty.trigger
    with:
      summary: "Checkout error rate {{ $.event.rate }}% on {{ $.event.host }}"
      source: "{{ $.event.host }}"
      severity: "{{ $.event.severity }}"
      dedup_key: "{{ $.event.alert }}"
      component: checkout
      custom_details: { rate: "{{ $.event.rate }}", region: eu-west-1 }
      links: [{ href: "https://status.example.com", text: Status }]
  - id: ack
    uses: pagerduty.acknowledge
    with: { dedup_key: "{{ $.steps.page.body.dedup_key }}" }
  - id: fixed
    uses: pagerduty.resolve
    with: { dedup_key: "{{ $.steps.page.body.dedup_key }}" }
"#;

async fn setup(backend: Backend, key: &str) -> (StandIn, Harness) {
    let api = StandIn::start(pagerduty::routes()).await;
    let h = Harness::start(
        backend,
        WF,
        &[
            ("PAGERDUTY_ROUTING_KEY", key),
            ("PAGERDUTY_BASE_URL", &api.base),
        ],
    );
    (api, h)
}

both!(
    trigger_acknowledge_and_resolve_as_pagerduty_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn trigger_acknowledge_and_resolve_as_pagerduty_documents_them(backend: Backend) {
    let (api, h) = setup(backend, pagerduty::ROUTING_KEY).await;
    // No dedup_key from the event: PagerDuty makes one up, and the next
    // steps use the one it answered.
    let run = h
        .run(
            "/in",
            &json!({"host": "web-3.example.com", "rate": 12, "severity": "critical"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let page = step(&run, "page");
    assert_eq!(page["uses"], "pagerduty.trigger");
    assert_eq!(page["output"]["status"], 202);
    assert_eq!(
        page["output"]["body"],
        json!({"status": "success", "message": "Event processed", "dedup_key": pagerduty::MADE_UP_DEDUP_KEY})
    );
    let sent = api.requests_to(pagerduty::ENQUEUE);
    assert_eq!(sent.len(), 3);
    // The trigger as PagerDuty documents it: the key in the body, the
    // alert's fields under `payload`, the absent ones left out.
    assert_eq!(
        sent[0].json(),
        json!({
            "routing_key": pagerduty::ROUTING_KEY,
            "event_action": "trigger",
            "payload": {
                "summary": "Checkout error rate 12% on web-3.example.com",
                "source": "web-3.example.com",
                "severity": "critical",
                "component": "checkout",
                "custom_details": {"rate": 12, "region": "eu-west-1"}
            },
            "links": [{"href": "https://status.example.com", "text": "Status"}]
        })
    );
    assert_eq!(sent[0].header("authorization"), None);
    for (i, action, id) in [(1, "acknowledge", "ack"), (2, "resolve", "fixed")] {
        assert_eq!(
            sent[i].json(),
            json!({
                "routing_key": pagerduty::ROUTING_KEY,
                "event_action": action,
                "dedup_key": pagerduty::MADE_UP_DEDUP_KEY
            })
        );
        assert_eq!(step(&run, id)["output"]["status"], 202);
        assert_eq!(step(&run, id)["output"]["body"]["status"], "success");
    }

    // The event's own dedup_key is sent, and answered back.
    let run = h
        .run(
            "/in",
            &json!({"host": "db-1", "rate": 3, "severity": "warning", "alert": "db-1/replication"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let sent = api.requests_to(pagerduty::ENQUEUE);
    assert_eq!(sent[3].json()["dedup_key"], "db-1/replication");
    assert_eq!(sent[5].json()["dedup_key"], "db-1/replication");
    assert_eq!(
        step(&run, "page")["output"]["body"]["dedup_key"],
        "db-1/replication"
    );
    assert_eq!(api.violations(), Vec::<String>::new());
    // The routing key is a secret although it travels in the body.
    let all = h.history_and_log().await;
    assert!(
        !all.contains(pagerduty::ROUTING_KEY),
        "the routing key leaked"
    );
    assert_eq!(
        step(&run, "page")["attempts"][0]["request"]["body"]["routing_key"],
        "[redacted]"
    );
}

both!(
    a_refused_event_fails_the_step_with_pagerdutys_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_refused_event_fails_the_step_with_pagerdutys_message(backend: Backend) {
    // A routing key of the wrong length: PagerDuty's documented 400.
    let (api, h) = setup(backend, "0123456789abcdef").await;
    let run = h
        .run(
            "/in",
            &json!({"host": "web-3", "rate": 12, "severity": "error"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let page = step(&run, "page");
    assert_eq!(page["status"], "failed");
    assert_eq!(
        page["error"],
        r#"HTTP 400: Event object is invalid ["Length of 'routing_key' is incorrect (should be 32 characters)"]"#
    );
    // A 400 is the caller's mistake: not retried, and the steps after
    // it never ran.
    assert_eq!(page["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "ack")["status"], "pending");
    assert_eq!(api.requests_to(pagerduty::ENQUEUE).len(), 1);
    assert!(!h.history_and_log().await.contains("0123456789abcdef"));
}

both!(
    a_severity_pagerduty_does_not_know_is_refused_before_sending,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_severity_pagerduty_does_not_know_is_refused_before_sending(backend: Backend) {
    let (api, h) = setup(backend, pagerduty::ROUTING_KEY).await;
    let run = h
        .run(
            "/in",
            &json!({"host": "web-3", "rate": 12, "severity": "urgent"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = step(&run, "page")["error"].as_str().expect("an error");
    assert!(
        error.contains("`severity` must be one of: critical, error, warning, info"),
        "{error}"
    );
    assert!(api.requests().is_empty(), "nothing may be sent");
}

both!(
    a_rate_limited_event_is_sent_again,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_rate_limited_event_is_sent_again(backend: Backend) {
    let (api, h) = setup(backend, pagerduty::ROUTING_KEY).await;
    api.queue(
        pagerduty::ENQUEUE,
        vec![pagerduty::request_limit_exceeded()],
    );
    let run = h
        .run(
            "/in",
            &json!({"host": "web-3", "rate": 12, "severity": "info", "alert": "web-3/5xx"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let page = step(&run, "page");
    let attempts = page["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{page}");
    assert_eq!(attempts[0]["error"], "HTTP 429");
    assert_eq!(attempts[0]["response"]["status"], 429);
    assert_eq!(page["output"]["status"], 202);
    // The same event both times, so PagerDuty deduplicates it by its key.
    let sent = api.requests_to(pagerduty::ENQUEUE);
    assert_eq!(sent[0].json(), sent[1].json());
    assert_eq!(api.violations(), Vec::<String>::new());
}
