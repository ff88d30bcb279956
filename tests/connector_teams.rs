//! The Microsoft Teams connector (`connectors/teams.yaml`) against Teams'
//! stand-in (`tests/standins/teams.rs`): a message and a card posted as
//! the Teams reference describes them, to a connector's Incoming Webhook
//! (`200 1`) and to a Workflows webhook (`202`); a throttled connector's
//! `200` with the reason in its body, and a Workflows refusal.

mod common;
#[path = "standins/teams.rs"]
mod teams;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const MESSAGE: &str = r#"name: builds
trigger:
  webhook: { path: /in }
steps:
  - id: tell
    uses: teams.post_message
    with:
      url: "{{ env.OPS_TEAMS_URL }}"
      text: "**Build {{ $.event.build }}** failed on {{ $.event.branch }}"
"#;

const CARD: &str = r#"name: orders
trigger:
  webhook: { path: /in }
steps:
  - id: card
    uses: teams.post_card
    with:
      url: "{{ env.OPS_TEAMS_URL }}"
      card:
        type: AdaptiveCard
        version: "1.4"
        body:
          - { type: TextBlock, text: "Order {{ $.event.id }}", weight: Bolder, size: Medium }
          - type: FactSet
            facts:
              - { title: Customer, value: "{{ $.event.customer }}" }
              - { title: Total, value: "{{ $.event.total }} EUR" }
        actions:
          - { type: Action.OpenUrl, title: Open, url: "https://shop.example.com/orders/{{ $.event.id }}" }
"#;

/// The Adaptive Card message the Teams reference shows, around `text`.
fn text_message(text: &str) -> serde_json::Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": teams::ADAPTIVE_CARD,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.2",
                "body": [{"type": "TextBlock", "text": text, "wrap": true}]
            }
        }]
    })
}

both!(
    a_message_to_a_connector_webhook_as_teams_documents_it,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_message_to_a_connector_webhook_as_teams_documents_it(backend: Backend) {
    let api = StandIn::start(teams::routes()).await;
    let h = Harness::start(
        backend,
        MESSAGE,
        &[("OPS_TEAMS_URL", &api.url(teams::CONNECTOR_PATH))],
    );
    let run = h.run("/in", &json!({"build": 812, "branch": "main"})).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let tell = step(&run, "tell");
    assert_eq!(tell["uses"], "teams.post_message");
    assert_eq!(tell["output"]["status"], 200);
    assert_eq!(tell["output"]["body"], 1);
    let sent = &api.requests_to(teams::CONNECTOR)[0];
    assert_eq!(sent.json(), text_message("**Build 812** failed on main"));
    assert_eq!(sent.header("authorization"), None);
    // The URL is the credential: kept out of the record.
    assert_eq!(tell["attempts"][0]["request"]["url"], "[redacted]");
    assert!(!h.history_and_log().await.contains(teams::CONNECTOR_SECRET));
}

both!(
    a_message_to_a_workflows_webhook_is_accepted_with_202,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_message_to_a_workflows_webhook_is_accepted_with_202(backend: Backend) {
    let api = StandIn::start(teams::routes()).await;
    let h = Harness::start(
        backend,
        MESSAGE,
        &[("OPS_TEAMS_URL", &api.url(teams::WORKFLOW_PATH))],
    );
    let run = h
        .run("/in", &json!({"build": 813, "branch": "release"}))
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let tell = step(&run, "tell");
    assert_eq!(tell["output"]["status"], 202);
    assert_eq!(tell["output"]["body"], serde_json::Value::Null);
    let sent = &api.requests_to(teams::WORKFLOW)[0];
    // The URL's signed query reached the flow as it was.
    assert_eq!(sent.query["sig"], teams::WORKFLOW_SECRET);
    assert_eq!(sent.json(), text_message("**Build 813** failed on release"));
    assert!(!h.history_and_log().await.contains(teams::WORKFLOW_SECRET));
}

both!(
    a_throttled_connector_answers_200_and_the_step_fails_with_its_reason,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_throttled_connector_answers_200_and_the_step_fails_with_its_reason(backend: Backend) {
    let api = StandIn::start(teams::routes()).await;
    let h = Harness::start(
        backend,
        MESSAGE,
        &[("OPS_TEAMS_URL", &api.url(teams::CONNECTOR_PATH))],
    );
    api.queue(teams::CONNECTOR, vec![teams::throttled()]);
    let run = h.run("/in", &json!({"build": 814, "branch": "main"})).await;
    assert_eq!(run["status"], "failed", "{run}");
    let tell = step(&run, "tell");
    assert_eq!(tell["status"], "failed");
    let error = tell["error"].as_str().expect("an error");
    assert!(
        error.starts_with("Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429"),
        "{error}"
    );
    // A 200 that fails `ok_when` is an answer: it is not sent again.
    assert_eq!(tell["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(tell["attempts"][0]["response"]["status"], 200);
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    a_card_is_posted_as_given,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_card_is_posted_as_given(backend: Backend) {
    let api = StandIn::start(teams::routes()).await;
    let h = Harness::start(
        backend,
        CARD,
        &[("OPS_TEAMS_URL", &api.url(teams::WORKFLOW_PATH))],
    );
    let run = h
        .run(
            "/in",
            &json!({"id": "o-17", "customer": "Ada", "total": 1250}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let card = step(&run, "card");
    assert_eq!(card["uses"], "teams.post_card");
    assert_eq!(card["output"]["status"], 202);
    assert_eq!(
        api.requests_to(teams::WORKFLOW)[0].json(),
        json!({
            "type": "message",
            "attachments": [{
                "contentType": teams::ADAPTIVE_CARD,
                "content": {
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": "Order o-17", "weight": "Bolder", "size": "Medium"},
                        {"type": "FactSet", "facts": [
                            {"title": "Customer", "value": "Ada"},
                            {"title": "Total", "value": "1250 EUR"}
                        ]}
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://shop.example.com/orders/o-17"}]
                }
            }]
        })
    );

    // A flow that refuses the request: its message is the step's error.
    api.queue(
        teams::WORKFLOW,
        vec![teams::workflow_error(
            400,
            "TriggerInputSchemaMismatch",
            "The input body for trigger 'manual' of type 'Request' did not match its schema definition.",
        )],
    );
    let run = h
        .run("/in", &json!({"id": "o-18", "customer": "Bo", "total": 10}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let card = step(&run, "card");
    assert_eq!(
        card["error"],
        "HTTP 400: The input body for trigger 'manual' of type 'Request' did not match its schema definition."
    );
    assert_eq!(card["attempts"].as_array().map(Vec::len), Some(1));

    // The same card to a connector's webhook, throttled there.
    let other = Harness::start(
        backend,
        CARD,
        &[("OPS_TEAMS_URL", &api.url(teams::CONNECTOR_PATH))],
    );
    api.queue(teams::CONNECTOR, vec![teams::throttled()]);
    let run = other
        .run("/in", &json!({"id": "o-19", "customer": "Cy", "total": 5}))
        .await;
    let error = step(&run, "card")["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(error.contains("returned HTTP error 429"), "{error}");
    let run = other
        .run("/in", &json!({"id": "o-20", "customer": "Di", "total": 7}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "card")["output"]["body"], 1);
    assert_eq!(api.violations(), Vec::<String>::new());
}
