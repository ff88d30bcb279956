//! The Notion connector (`connectors/notion.yaml`) against Notion's
//! stand-in (`tests/standins/notion.rs`): create a page and append blocks
//! to it, as Notion's reference describes the requests, and the step's
//! status, output and error for Notion's documented answers
//! (`validation_error`, `object_not_found`, `unauthorized`, `rate_limited`
//! with Retry-After).

mod common;
#[path = "standins/notion.rs"]
mod notion;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const WF: &str = r#"name: journal
trigger:
  webhook: { path: /in }
steps:
  - id: page
    uses: notion.create_page
    with:
      parent_page_id: "{{ $.event.parent }}"
      properties:
        title: { title: [{ text: { content: "Payment {{ $.event.id }} failed" } }] }
      icon: { type: emoji, emoji: "🧾" }
  - id: log
    uses: notion.append_blocks
    with:
      block_id: "{{ $.steps.page.body.id }}"
      children:
        - type: paragraph
          paragraph: { rich_text: [{ type: text, text: { content: "Refund of {{ $.event.amount }} sent" } }] }
"#;

const PARENT: &str = "b55c9c91-384d-452b-81db-d1ef79372b75";

async fn setup(backend: Backend, wf: &str, token: &str) -> (StandIn, Harness) {
    let api = StandIn::start(notion::routes()).await;
    let h = Harness::start(
        backend,
        wf,
        &[
            ("NOTION_TOKEN", token),
            ("NOTION_BASE_URL", &api.url("/v1")),
        ],
    );
    (api, h)
}

both!(
    page_and_blocks_as_notion_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn page_and_blocks_as_notion_documents_them(backend: Backend) {
    let (api, h) = setup(backend, WF, notion::TOKEN).await;
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_1", "parent": PARENT, "amount": "20 EUR"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let page = step(&run, "page");
    assert_eq!(page["uses"], "notion.create_page");
    assert_eq!(page["output"]["status"], 200);
    assert_eq!(page["output"]["body"]["object"], "page");
    assert_eq!(page["output"]["body"]["id"], notion::NEW_PAGE);
    let sent = &api.requests_to(notion::PAGES)[0];
    assert_eq!(sent.bearer(), Some(notion::TOKEN));
    assert_eq!(sent.header("notion-version"), Some(notion::VERSION));
    // One parent: the others are left out, never sent as null.
    assert_eq!(
        sent.json(),
        json!({
            "parent": {"page_id": PARENT},
            "properties": {"title": {"title": [{"text": {"content": "Payment pi_1 failed"}}]}},
            "icon": {"type": "emoji", "emoji": "🧾"}
        })
    );
    assert_eq!(
        page["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );

    let log = step(&run, "log");
    assert_eq!(log["uses"], "notion.append_blocks");
    assert_eq!(log["output"]["body"]["object"], "list");
    assert_eq!(log["output"]["body"]["results"][0]["type"], "paragraph");
    let sent = &api.requests_to(notion::CHILDREN)[0];
    assert_eq!(sent.method, "PATCH");
    assert_eq!(
        sent.path,
        format!("/v1/blocks/{}/children", notion::NEW_PAGE)
    );
    assert_eq!(
        sent.json(),
        json!({"children": [{
            "type": "paragraph",
            "paragraph": {"rich_text": [{"type": "text", "text": {"content": "Refund of 20 EUR sent"}}]}
        }]})
    );
    assert!(!h.history_and_log().await.contains(notion::TOKEN));
}

const IN_DATABASE: &str = r#"name: crm
trigger:
  webhook: { path: /in }
steps:
  - id: row
    uses: notion.create_page
    with:
      parent_database_id: "{{ $.event.db }}"
      properties:
        Name: { title: [{ text: { content: "{{ $.event.name }}" } }] }
        Amount: { number: "{{ $.event.amount }}" }
"#;

both!(
    a_page_in_a_database_sends_its_properties_as_notion_types_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_page_in_a_database_sends_its_properties_as_notion_types_them(backend: Backend) {
    let (api, h) = setup(backend, IN_DATABASE, notion::TOKEN).await;
    let db = "d9824bdc-8445-4327-be8b-5b47500af6ce";
    let run = h
        .run("/in", &json!({"db": db, "name": "Acme", "amount": 1500}))
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        api.requests_to(notion::PAGES)[0].json(),
        json!({
            "parent": {"database_id": db},
            "properties": {
                "Name": {"title": [{"text": {"content": "Acme"}}]},
                "Amount": {"number": 1500}
            }
        })
    );
    assert_eq!(
        step(&run, "row")["output"]["body"]["parent"],
        json!({"type": "database_id", "database_id": db})
    );

    // Notion's validation_error, with the reference's example message.
    let message = "body failed validation: body.properties.Amount.number should be a number or `null`, instead was `\"lots\"`.";
    api.queue(
        notion::PAGES,
        vec![notion::error(400, "validation_error", message)],
    );
    let run = h
        .run("/in", &json!({"db": db, "name": "Acme", "amount": "lots"}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let row = step(&run, "row");
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error"], format!("HTTP 400: {message}"));
    assert_eq!(row["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        row["attempts"][0]["response"]["body"]["code"],
        "validation_error"
    );
}

both!(
    notion_errors_fail_the_step_with_notions_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn notion_errors_fail_the_step_with_notions_message(backend: Backend) {
    let (api, h) = setup(backend, WF, notion::TOKEN).await;
    let event = json!({"id": "pi_2", "parent": PARENT, "amount": "5 EUR"});

    // A parent page not shared with the integration.
    let not_shared = format!("Could not find page with ID: {PARENT}. Make sure the relevant pages and databases are shared with your integration.");
    api.queue(
        notion::PAGES,
        vec![notion::error(404, "object_not_found", &not_shared)],
    );
    let run = h.run("/in", &event).await;
    assert_eq!(run["status"], "failed", "{run}");
    let page = step(&run, "page");
    assert_eq!(page["error"], format!("HTTP 404: {not_shared}"));
    assert_eq!(page["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "log")["status"], "pending");

    // Appending to a block that does not take children.
    let message = "Block does not support children.";
    api.queue(
        notion::CHILDREN,
        vec![notion::error(400, "validation_error", message)],
    );
    let run = h.run("/in", &event).await;
    assert_eq!(step(&run, "page")["status"], "succeeded");
    assert_eq!(step(&run, "log")["error"], format!("HTTP 400: {message}"));
    assert_eq!(api.violations(), Vec::<String>::new());

    // A token Notion does not accept.
    let (_api, other) = setup(backend, WF, "ntn_not_the_right_one").await;
    let run = other.run("/in", &event).await;
    assert_eq!(
        step(&run, "page")["error"],
        "HTTP 401: API token is invalid."
    );
    assert!(!other
        .history_and_log()
        .await
        .contains("ntn_not_the_right_one"));
}

both!(
    rate_limited_appends_wait_for_retry_after,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn rate_limited_appends_wait_for_retry_after(backend: Backend) {
    let (api, h) = setup(backend, WF, notion::TOKEN).await;
    api.queue(notion::CHILDREN, vec![notion::rate_limited()]);
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_3", "parent": PARENT, "amount": "1 EUR"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let log = step(&run, "log");
    let attempts = log["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{log}");
    assert_eq!(
        attempts[0]["error"],
        "HTTP 429: You have been rate limited. Please try again in a few minutes."
    );
    let at = |a: &serde_json::Value| {
        humantime::parse_rfc3339(a["started_at"].as_str().expect("time")).expect("rfc3339")
    };
    let gap = at(&attempts[1])
        .duration_since(at(&attempts[0]))
        .expect("in order");
    assert!(gap >= std::time::Duration::from_millis(1000), "{gap:?}");
    assert_eq!(api.requests_to(notion::CHILDREN).len(), 2);
}
