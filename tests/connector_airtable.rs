//! The Airtable connector (`connectors/airtable.yaml`) against Airtable's
//! stand-in (`tests/standins/airtable.rs`): create a record and update it,
//! as Airtable's Web API reference describes the requests, and the step's
//! status, output and error for Airtable's documented answers — including
//! its 429, which carries no Retry-After.

#[path = "standins/airtable.rs"]
mod airtable;
mod common;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;
use std::time::{Duration, Instant};

const WF: &str = r#"name: leads
trigger:
  webhook: { path: /in }
steps:
  - id: lead
    uses: airtable.create_record
    with:
      base_id: appLkNDICXNqxSDhG
      table: "Sign ups"
      fields:
        Name: "{{ $.event.name }}"
        Seats: "{{ $.event.seats }}"
        Status: New
      typecast: true
  - id: qualify
    uses: airtable.update_record
    with:
      base_id: appLkNDICXNqxSDhG
      table: "Sign ups"
      record_id: "{{ $.steps.lead.body.id }}"
      fields: { Status: Qualified }
"#;

async fn setup(backend: Backend, token: &str) -> (StandIn, Harness) {
    let api = StandIn::start(airtable::routes()).await;
    let h = Harness::start(
        backend,
        WF,
        &[
            ("AIRTABLE_TOKEN", token),
            ("AIRTABLE_BASE_URL", &api.url("/v0")),
        ],
    );
    (api, h)
}

both!(
    create_and_update_as_airtable_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn create_and_update_as_airtable_documents_them(backend: Backend) {
    let (api, h) = setup(backend, airtable::TOKEN).await;
    let run = h.run("/in", &json!({"name": "Acme", "seats": 12})).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let lead = step(&run, "lead");
    assert_eq!(lead["uses"], "airtable.create_record");
    assert_eq!(lead["output"]["status"], 200);
    assert_eq!(lead["output"]["body"]["id"], airtable::NEW_RECORD);
    let sent = &api.requests_to(airtable::CREATE)[0];
    // A table's name is one encoded segment.
    assert_eq!(sent.path, "/v0/appLkNDICXNqxSDhG/Sign%20ups");
    assert_eq!(sent.params["tableIdOrName"], "Sign ups");
    assert_eq!(sent.bearer(), Some(airtable::TOKEN));
    assert_eq!(
        sent.json(),
        json!({"fields": {"Name": "Acme", "Seats": 12, "Status": "New"}, "typecast": true})
    );
    assert_eq!(
        lead["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );

    let qualify = step(&run, "qualify");
    assert_eq!(qualify["uses"], "airtable.update_record");
    assert_eq!(qualify["output"]["body"]["fields"]["Status"], "Qualified");
    let sent = &api.requests_to(airtable::UPDATE)[0];
    assert_eq!(sent.method, "PATCH");
    assert_eq!(
        sent.path,
        format!("/v0/appLkNDICXNqxSDhG/Sign%20ups/{}", airtable::NEW_RECORD)
    );
    // Only what the workflow gave: no typecast, nothing null.
    assert_eq!(sent.json(), json!({"fields": {"Status": "Qualified"}}));
    assert!(!h.history_and_log().await.contains(airtable::TOKEN));
}

both!(
    airtable_errors_fail_the_step_with_airtables_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn airtable_errors_fail_the_step_with_airtables_message(backend: Backend) {
    let (api, h) = setup(backend, airtable::TOKEN).await;
    let event = json!({"name": "Acme", "seats": 3});

    // A field the table does not have.
    api.queue(
        airtable::CREATE,
        vec![airtable::error(
            422,
            "UNKNOWN_FIELD_NAME",
            "Unknown field name: \"Seats\"",
        )],
    );
    let run = h.run("/in", &event).await;
    assert_eq!(run["status"], "failed", "{run}");
    let lead = step(&run, "lead");
    assert_eq!(lead["status"], "failed");
    assert_eq!(lead["error"], "HTTP 422: Unknown field name: \"Seats\"");
    assert_eq!(lead["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "qualify")["status"], "pending");

    // A record that is gone: Airtable's 404 body is a bare string.
    api.queue(airtable::UPDATE, vec![airtable::not_found()]);
    let run = h.run("/in", &event).await;
    assert_eq!(step(&run, "lead")["status"], "succeeded");
    assert_eq!(step(&run, "qualify")["error"], "HTTP 404: NOT_FOUND");
    assert_eq!(api.violations(), Vec::<String>::new());

    // A token Airtable does not accept.
    let (_api, other) = setup(backend, "patNotTheRightOne.0000").await;
    let run = other.run("/in", &event).await;
    assert_eq!(
        step(&run, "lead")["error"],
        "HTTP 401: Authentication required"
    );
    assert!(!other
        .history_and_log()
        .await
        .contains("patNotTheRightOne.0000"));
}

// Airtable's 429 has no Retry-After ("wait 30 seconds"): the step is
// retried later, with the connector's 30-second backoff, and shows why.
both!(
    a_rate_limited_record_is_retried_later,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_rate_limited_record_is_retried_later(backend: Backend) {
    let (api, h) = setup(backend, airtable::TOKEN).await;
    api.queue(
        airtable::CREATE,
        (0..5).map(|_| airtable::rate_limited()).collect(),
    );
    let (status, answer) = h.post("/in", &json!({"name": "Acme", "seats": 1})).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["runs"][0].as_str().expect("a run").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let run: serde_json::Value =
            serde_json::from_str(&h.text(&format!("/api/runs/{id}")).await).expect("json");
        if run["status"] == "retrying" {
            break run;
        }
        assert!(Instant::now() < deadline, "never retrying: {run}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let lead = step(&run, "lead");
    assert_eq!(lead["status"], "retrying");
    assert_eq!(
        lead["error"],
        format!("HTTP 429: {}", airtable::RATE_LIMITED)
    );
    assert_eq!(lead["attempts"][0]["response"]["status"], 429);
    assert!(run["next_attempt_at"].is_string(), "{run}");
    assert!(!api.requests_to(airtable::CREATE).is_empty());
}
