//! The HubSpot connector (`connectors/hubspot.yaml`) against HubSpot's
//! stand-in (`tests/standins/hubspot.rs`): a contact created and then
//! updated by email, a deal associated with it, each request as HubSpot's
//! CRM reference (2026-03) describes it, and the step's status, output and
//! error for HubSpot's documented answers (200/201, 207 Multi-Status, 400
//! VALIDATION_ERROR, 401, 403 MISSING_SCOPES, 429 RATE_LIMIT).

mod common;
#[path = "standins/hubspot.rs"]
mod hubspot;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use hubspot::Contacts;
use serde_json::{json, Value};
use std::sync::Arc;

const SIGNUP: &str = r#"name: signup-to-crm
trigger:
  webhook: { path: /signup }
steps:
  - id: contact
    uses: hubspot.upsert_contact
    with:
      email: "{{ $.event.email }}"
      firstname: "{{ $.event.first }}"
      lastname: "{{ $.event.last }}"
      phone: "{{ $.event.phone }}"
      lifecyclestage: "{{ $.event.stage }}"
  - id: deal
    uses: hubspot.create_deal
    with:
      dealname: "{{ $.event.plan }} plan for {{ $.event.email }}"
      dealstage: appointmentscheduled
      amount: "{{ $.event.amount }}"
      closedate: "2026-10-31"
      associations:
        - to: { id: "{{ $.steps.contact.body.results[0].id }}" }
          types: [{ associationCategory: HUBSPOT_DEFINED, associationTypeId: 3 }]
"#;

async fn setup(backend: Backend, token: &str) -> (StandIn, Harness) {
    let api = StandIn::start(hubspot::routes(Arc::new(Contacts::default()))).await;
    let h = Harness::start(
        backend,
        SIGNUP,
        &[
            ("HUBSPOT_ACCESS_TOKEN", token),
            ("HUBSPOT_BASE_URL", &api.base),
        ],
    );
    (api, h)
}

fn signup(email: &str, stage: &str) -> Value {
    json!({
        "email": email, "first": "Ada", "last": "Lovelace", "phone": 5550100,
        "stage": stage, "plan": "Pro", "amount": 1500
    })
}

const INVALID_EMAIL: &str = r#"Property values were not valid: [{"isValid":false,"message":"Email address ada@example is invalid","error":"INVALID_EMAIL","name":"email"}]"#;

fn attempts(step: &Value) -> usize {
    step["attempts"].as_array().map_or(0, Vec::len)
}

both!(
    upsert_creates_then_updates_a_contact_and_a_deal_is_associated_with_it,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn upsert_creates_then_updates_a_contact_and_a_deal_is_associated_with_it(backend: Backend) {
    let (api, h) = setup(backend, hubspot::TOKEN).await;
    let run = h.run("/signup", &signup("ada@example.com", "lead")).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let contact = step(&run, "contact");
    assert_eq!(contact["uses"], "hubspot.upsert_contact");
    assert_eq!(contact["output"]["status"], 200);
    let result = &contact["output"]["body"]["results"][0];
    assert_eq!(result["new"], true);
    let id = result["id"].as_str().expect("an id").to_string();
    // What HubSpot received: a batch of one input found by email, its
    // properties as text (the phone number was a number in the event), and
    // nothing the workflow left out.
    let got = api.requests_to(hubspot::UPSERT);
    assert_eq!(got[0].bearer(), Some(hubspot::TOKEN));
    assert_eq!(
        got[0].json(),
        json!({"inputs": [{
            "idProperty": "email",
            "id": "ada@example.com",
            "properties": {
                "email": "ada@example.com",
                "firstname": "Ada",
                "lastname": "Lovelace",
                "phone": "5550100",
                "lifecyclestage": "lead"
            }
        }]})
    );

    let deal = step(&run, "deal");
    assert_eq!(deal["uses"], "hubspot.create_deal");
    assert_eq!(deal["output"]["status"], 201);
    assert_eq!(deal["output"]["body"]["id"], hubspot::DEAL_ID);
    let sent = &api.requests_to(hubspot::DEALS)[0];
    assert_eq!(sent.path, "/crm/objects/2026-03/deals");
    assert_eq!(
        sent.json(),
        json!({
            "properties": {
                "dealname": "Pro plan for ada@example.com",
                "dealstage": "appointmentscheduled",
                "amount": "1500",
                "closedate": "2026-10-31"
            },
            "associations": [{
                "to": {"id": id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]
            }]
        })
    );

    // The same email again: the same contact, updated.
    let run = h
        .run("/signup", &signup("ada@example.com", "customer"))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let again = &step(&run, "contact")["output"]["body"]["results"][0];
    assert_eq!(again["new"], false);
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["properties"]["lifecyclestage"], "customer");
    assert_eq!(api.violations(), Vec::<String>::new());

    let all = h.history_and_log().await;
    assert!(!all.contains(hubspot::TOKEN), "the token leaked");
    assert_eq!(
        contact["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );
}

both!(
    a_deal_without_associations_sends_the_empty_list_the_schema_requires,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_deal_without_associations_sends_the_empty_list_the_schema_requires(backend: Backend) {
    let api = StandIn::start(hubspot::routes(Arc::new(Contacts::default()))).await;
    let wf = "name: deal\ntrigger:\n  webhook: { path: /d }\nsteps:\n  - id: deal\n    uses: hubspot.create_deal\n    with: { dealname: \"{{ $.event.name }}\" }\n";
    let h = Harness::start(
        backend,
        wf,
        &[
            ("HUBSPOT_ACCESS_TOKEN", hubspot::TOKEN),
            ("HUBSPOT_BASE_URL", &api.base),
        ],
    );
    let run = h.run("/d", &json!({"name": "Renewal"})).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        api.requests_to(hubspot::DEALS)[0].json(),
        json!({"properties": {"dealname": "Renewal"}, "associations": []})
    );
}

both!(
    an_invalid_lifecycle_stage_fails_with_hubspots_validation_error,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn an_invalid_lifecycle_stage_fails_with_hubspots_validation_error(backend: Backend) {
    let (api, h) = setup(backend, hubspot::TOKEN).await;
    let run = h.run("/signup", &signup("ada@example.com", "vip")).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "failed", "{run}");
    let contact = step(&run, "contact");
    assert_eq!(contact["status"], "failed");
    let error = contact["error"].as_str().expect("an error");
    assert!(
        error.starts_with("HTTP 400: Property values were not valid:"),
        "{error}"
    );
    assert!(
        error.contains("INVALID_OPTION") && error.contains("lifecyclestage"),
        "{error}"
    );
    assert_eq!(attempts(contact), 1);
    // The deal waits for the contact: never asked for.
    assert_eq!(step(&run, "deal")["status"], "pending");
    assert!(api.requests_to(hubspot::DEALS).is_empty());
}

both!(
    a_207_multi_status_fails_the_step_with_the_inputs_error,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_207_multi_status_fails_the_step_with_the_inputs_error(backend: Backend) {
    let (api, h) = setup(backend, hubspot::TOKEN).await;
    api.queue(hubspot::UPSERT, vec![hubspot::multi_status(INVALID_EMAIL)]);
    let run = h.run("/signup", &signup("ada@example.com", "lead")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let contact = step(&run, "contact");
    // A 2xx that is not a 200: the connector's ok_when, not a retry.
    assert_eq!(contact["error"], INVALID_EMAIL);
    assert_eq!(attempts(contact), 1);
    assert_eq!(contact["attempts"][0]["response"]["status"], 207);
}

both!(
    a_bad_token_and_a_missing_scope_fail_with_hubspots_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_bad_token_and_a_missing_scope_fail_with_hubspots_message(backend: Backend) {
    let (api, h) = setup(backend, "pat-na1-00000000-0000-0000-0000-000000000000").await;
    let run = h.run("/signup", &signup("ada@example.com", "lead")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = step(&run, "contact")["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(
        error.starts_with("HTTP 401: Authentication credentials not found."),
        "{error}"
    );
    assert!(!h
        .history_and_log()
        .await
        .contains("pat-na1-00000000-0000-0000-0000-000000000000"));

    // A token that may write contacts but not deals: 403 on the deal.
    let h = Harness::start(
        backend,
        SIGNUP,
        &[
            ("HUBSPOT_ACCESS_TOKEN", hubspot::CONTACTS_ONLY),
            ("HUBSPOT_BASE_URL", &api.base),
        ],
    );
    let run = h.run("/signup", &signup("grace@example.com", "lead")).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(step(&run, "contact")["status"], "succeeded");
    let deal = step(&run, "deal");
    assert_eq!(
        deal["error"],
        "HTTP 403: This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes."
    );
    assert_eq!(attempts(deal), 1);
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    the_secondly_limit_is_retried_with_backoff,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_secondly_limit_is_retried_with_backoff(backend: Backend) {
    let (api, h) = setup(backend, hubspot::TOKEN).await;
    api.queue(hubspot::DEALS, vec![hubspot::rate_limited()]);
    let run = h.run("/signup", &signup("ada@example.com", "lead")).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let deal = step(&run, "deal");
    assert_eq!(attempts(deal), 2, "{deal}");
    assert_eq!(deal["attempts"][0]["response"]["status"], 429);
    assert_eq!(
        deal["attempts"][0]["error"],
        "HTTP 429: You have reached your secondly limit."
    );
    assert_eq!(deal["output"]["status"], 201);
    // Retried with the same request.
    let sent = api.requests_to(hubspot::DEALS);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].json(), sent[1].json());
    assert_eq!(
        sent[0].header("idempotency-key"),
        sent[1].header("idempotency-key")
    );
}
