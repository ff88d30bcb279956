//! The SendGrid connector (`connectors/sendgrid.yaml`) against SendGrid's
//! stand-in (`tests/standins/sendgrid.rs`): a mail with content, a mail
//! from a dynamic template, and a marketing contact upserted, as the v3
//! API reference describes them; SendGrid's documented validation and
//! authorization errors and its rate limit.

mod common;
#[path = "standins/sendgrid.rs"]
mod sendgrid;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const MAIL: &str = r#"name: receipts
trigger:
  webhook: { path: /in }
steps:
  - id: mail
    uses: sendgrid.send_mail
    with:
      to: [{ email: "{{ $.event.email }}", name: "{{ $.event.name }}" }]
      from: orders@example.com
      from_name: Example Orders
      subject: "Your order {{ $.event.id }}"
      content: "Thanks for order {{ $.event.id }}."
      categories: [receipts]
      custom_args: { order_id: "{{ $.event.id }}" }
"#;

const TEMPLATE: &str = r#"name: welcome
trigger:
  webhook: { path: /in }
steps:
  - id: mail
    uses: sendgrid.send_template_mail
    with:
      to: [{ email: "{{ $.event.email }}" }]
      bcc: [{ email: audit@example.com }]
      from: hello@example.com
      reply_to: { email: support@example.com, name: Support }
      template_id: d-13b8f94fbcae4ec6b75270d6cb59f932
      dynamic_template_data: { first_name: "{{ $.event.first_name }}", plan: "{{ $.event.plan }}" }
  - id: contact
    uses: sendgrid.upsert_contact
    with:
      email: "{{ $.event.email }}"
      first_name: "{{ $.event.first_name }}"
      country: "{{ $.event.country }}"
      custom_fields: { w1: "{{ $.event.plan }}" }
      list_ids: [ca7a3796-e8a8-4029-9ccb-df8937940562]
"#;

async fn setup(backend: Backend, workflow: &str, key: &str) -> (StandIn, Harness) {
    let api = StandIn::start(sendgrid::routes()).await;
    let h = Harness::start(
        backend,
        workflow,
        &[("SENDGRID_API_KEY", key), ("SENDGRID_BASE_URL", &api.base)],
    );
    (api, h)
}

both!(
    a_mail_as_sendgrid_documents_it,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_mail_as_sendgrid_documents_it(backend: Backend) {
    let (api, h) = setup(backend, MAIL, sendgrid::API_KEY).await;
    let run = h
        .run(
            "/in",
            &json!({"id": "o-17", "email": "ada@example.com", "name": "Ada"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let mail = step(&run, "mail");
    assert_eq!(mail["uses"], "sendgrid.send_mail");
    assert_eq!(mail["output"]["status"], 202);
    assert_eq!(mail["output"]["body"], serde_json::Value::Null);
    let sent = &api.requests_to(sendgrid::MAIL_SEND)[0];
    assert_eq!(
        sent.json(),
        json!({
            "personalizations": [{
                "to": [{"email": "ada@example.com", "name": "Ada"}],
                "custom_args": {"order_id": "o-17"}
            }],
            "from": {"email": "orders@example.com", "name": "Example Orders"},
            "subject": "Your order o-17",
            "content": [{"type": "text/plain", "value": "Thanks for order o-17."}],
            "categories": ["receipts"]
        })
    );
    assert_eq!(
        mail["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );

    // A recipient without a name: the name is left out, not sent as null.
    let run = h
        .run("/in", &json!({"id": "o-18", "email": "bo@example.com"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        api.requests_to(sendgrid::MAIL_SEND)[1].json()["personalizations"][0]["to"],
        json!([{"email": "bo@example.com"}])
    );
    assert_eq!(api.violations(), Vec::<String>::new());
    assert!(
        !h.history_and_log().await.contains(sendgrid::API_KEY),
        "the API key leaked"
    );
}

both!(
    a_template_mail_and_a_contact_as_sendgrid_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_template_mail_and_a_contact_as_sendgrid_documents_them(backend: Backend) {
    let (api, h) = setup(backend, TEMPLATE, sendgrid::API_KEY).await;
    let run = h
        .run(
            "/in",
            &json!({"email": "ada@example.com", "first_name": "Ada", "plan": "pro"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "mail")["uses"], "sendgrid.send_template_mail");
    assert_eq!(step(&run, "mail")["output"]["status"], 202);
    // No subject or content: the template gives them.
    assert_eq!(
        api.requests_to(sendgrid::MAIL_SEND)[0].json(),
        json!({
            "personalizations": [{
                "to": [{"email": "ada@example.com"}],
                "bcc": [{"email": "audit@example.com"}],
                "dynamic_template_data": {"first_name": "Ada", "plan": "pro"}
            }],
            "from": {"email": "hello@example.com"},
            "reply_to": {"email": "support@example.com", "name": "Support"},
            "template_id": "d-13b8f94fbcae4ec6b75270d6cb59f932"
        })
    );

    let contact = step(&run, "contact");
    assert_eq!(contact["uses"], "sendgrid.upsert_contact");
    assert_eq!(contact["output"]["status"], 202);
    assert_eq!(contact["output"]["body"]["job_id"], sendgrid::JOB_ID);
    let sent = &api.requests_to(sendgrid::CONTACTS)[0];
    assert_eq!(sent.method, "PUT");
    // The event had no country: left out of the contact.
    assert_eq!(
        sent.json(),
        json!({
            "list_ids": ["ca7a3796-e8a8-4029-9ccb-df8937940562"],
            "contacts": [{
                "email": "ada@example.com",
                "first_name": "Ada",
                "custom_fields": {"w1": "pro"}
            }]
        })
    );
    assert!(!h.history_and_log().await.contains(sendgrid::API_KEY));
}

both!(
    sendgrid_errors_fail_the_step_with_its_messages,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn sendgrid_errors_fail_the_step_with_its_messages(backend: Backend) {
    let (api, h) = setup(backend, TEMPLATE, sendgrid::API_KEY).await;
    api.queue(
        sendgrid::MAIL_SEND,
        vec![sendgrid::errors(
            400,
            &[(
                Some("from.email"),
                "The from email does not contain a valid address.",
            )],
        )],
    );
    let run = h
        .run(
            "/in",
            &json!({"email": "ada@example.com", "first_name": "Ada", "plan": "pro"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let mail = step(&run, "mail");
    assert_eq!(
        mail["error"],
        "HTTP 400: The from email does not contain a valid address."
    );
    assert_eq!(mail["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "contact")["status"], "pending");

    // Several validation errors at once: each message is in the error.
    api.queue(
        sendgrid::CONTACTS,
        vec![sendgrid::errors(
            400,
            &[
                (Some("contacts[0].email"), "email is invalid"),
                (Some("list_ids[0]"), "list id is not valid"),
            ],
        )],
    );
    let run = h
        .run(
            "/in",
            &json!({"email": "not-an-address@", "first_name": "X", "plan": "pro"}),
        )
        .await;
    let error = step(&run, "contact")["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(error.starts_with("HTTP 400: "), "{error}");
    assert!(
        error.contains("email is invalid") && error.contains("list id is not valid"),
        "{error}"
    );

    assert_eq!(api.violations(), Vec::<String>::new());

    // A key SendGrid does not accept.
    let (api, other) = setup(backend, TEMPLATE, "SG.not-a-key.really-not").await;
    let run = other
        .run(
            "/in",
            &json!({"email": "ada@example.com", "first_name": "Ada", "plan": "pro"}),
        )
        .await;
    assert_eq!(
        step(&run, "mail")["error"],
        "HTTP 401: authorization required",
        "{run}"
    );
    assert!(!other
        .history_and_log()
        .await
        .contains("SG.not-a-key.really-not"));
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    a_rate_limited_mail_is_sent_again,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_rate_limited_mail_is_sent_again(backend: Backend) {
    let (api, h) = setup(backend, MAIL, sendgrid::API_KEY).await;
    api.queue(sendgrid::MAIL_SEND, vec![sendgrid::too_many_requests()]);
    let run = h
        .run("/in", &json!({"id": "o-19", "email": "cy@example.com"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let mail = step(&run, "mail");
    let attempts = mail["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{mail}");
    assert_eq!(attempts[0]["error"], "HTTP 429: too many requests");
    assert_eq!(
        attempts[0]["response"]["headers"]["x-ratelimit-remaining"],
        "0"
    );
    assert_eq!(mail["output"]["status"], 202);
    let sent = api.requests_to(sendgrid::MAIL_SEND);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].json(), sent[1].json());
    assert_eq!(api.violations(), Vec::<String>::new());
}
