//! The Jira connector (`connectors/jira.yaml`) against Jira Cloud's
//! stand-in (`tests/standins/jira.rs`): create an issue and comment on it
//! with basic auth (email and API token), as the REST API v2 reference
//! describes the requests, and the step's status, output and error for
//! Jira's documented answers.

mod common;
#[path = "standins/jira.rs"]
mod jira;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const WF: &str = r#"name: support
trigger:
  webhook: { path: /in }
steps:
  - id: issue
    uses: jira.create_issue
    with:
      project: OPS
      issue_type: Bug
      summary: "Payment {{ $.event.id }} failed"
      description: "{{ $.event.reason }}"
      labels: [billing, "{{ $.event.severity }}"]
      priority: { name: High }
  - id: comment
    uses: jira.add_comment
    with:
      issue: "{{ $.steps.issue.body.key }}"
      body: "Tracked by run {{ $.run.id }}"
      visibility: { type: role, value: Administrators }
"#;

async fn setup(backend: Backend, email: &str, token: &str) -> (StandIn, Harness) {
    let api = StandIn::start(jira::routes()).await;
    let h = Harness::start(
        backend,
        WF,
        &[
            ("JIRA_BASE_URL", &api.base),
            ("JIRA_EMAIL", email),
            ("JIRA_API_TOKEN", token),
        ],
    );
    (api, h)
}

both!(
    issue_and_comment_as_jira_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn issue_and_comment_as_jira_documents_them(backend: Backend) {
    let (api, h) = setup(backend, jira::EMAIL, jira::API_TOKEN).await;
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_1", "reason": "card declined", "severity": "p2"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let issue = step(&run, "issue");
    assert_eq!(issue["uses"], "jira.create_issue");
    assert_eq!(issue["output"]["status"], 201);
    assert_eq!(issue["output"]["body"]["key"], "OPS-24");
    let sent = &api.requests_to(jira::ISSUE)[0];
    assert_eq!(sent.path, "/rest/api/2/issue");
    // Basic auth with the account's email and its API token.
    assert_eq!(
        sent.basic(),
        Some((jira::EMAIL.to_string(), jira::API_TOKEN.to_string()))
    );
    assert_eq!(
        sent.json(),
        json!({"fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Bug"},
            "summary": "Payment pi_1 failed",
            "description": "card declined",
            "labels": ["billing", "p2"],
            "priority": {"name": "High"}
        }})
    );
    // The record keeps the request with the credentials blanked out.
    let recorded = issue["attempts"][0]["request"]["headers"]["Authorization"]
        .as_str()
        .expect("recorded")
        .to_string();
    assert!(recorded.starts_with("Basic [redacted]"), "{recorded}");
    let raw = sent.header("authorization").expect("sent").to_string();
    assert_ne!(recorded, raw);

    let comment = step(&run, "comment");
    assert_eq!(comment["uses"], "jira.add_comment");
    assert_eq!(comment["output"]["status"], 201);
    let sent = &api.requests_to(jira::COMMENT)[0];
    assert_eq!(sent.path, "/rest/api/2/issue/OPS-24/comment");
    assert_eq!(
        sent.json(),
        json!({
            "body": format!("Tracked by run {}", run["id"].as_str().expect("id")),
            "visibility": {"type": "role", "value": "Administrators"}
        })
    );
    assert_eq!(
        comment["output"]["body"]["visibility"]["value"],
        "Administrators"
    );
    let all = h.history_and_log().await;
    assert!(!all.contains(jira::API_TOKEN), "the API token leaked");
    assert!(!all.contains(jira::EMAIL), "the account's email leaked");
    let credential = raw.trim_start_matches("Basic ");
    assert!(!all.contains(credential), "the basic credential leaked");

    // Absent optional fields are left out of `fields`, never null.
    let run = h.run("/in", &json!({"id": "pi_2", "severity": "p3"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let fields = api.requests_to(jira::ISSUE)[1].json()["fields"].clone();
    assert!(fields.get("description").is_none(), "{fields}");
    assert!(fields.get("assignee").is_none(), "{fields}");
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    jira_errors_fail_the_step_with_jiras_messages,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn jira_errors_fail_the_step_with_jiras_messages(backend: Backend) {
    let (api, h) = setup(backend, jira::EMAIL, jira::API_TOKEN).await;
    let event = json!({"id": "pi_3", "reason": "card declined", "severity": "p1"});

    // The reference's example: a message without a field.
    api.queue(
        jira::ISSUE,
        vec![jira::errors(
            400,
            &["Field 'priority' is required"],
            json!({}),
        )],
    );
    let run = h.run("/in", &event).await;
    assert_eq!(run["status"], "failed", "{run}");
    let issue = step(&run, "issue");
    assert_eq!(issue["status"], "failed");
    assert_eq!(issue["error"], "HTTP 400: Field 'priority' is required");
    assert_eq!(issue["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "comment")["status"], "pending");

    // A field's error.
    api.queue(
        jira::ISSUE,
        vec![jira::errors(
            400,
            &[],
            json!({"labels": "The label 'p 1' contains spaces which is invalid."}),
        )],
    );
    let run = h.run("/in", &event).await;
    assert_eq!(
        step(&run, "issue")["error"],
        "HTTP 400: The label 'p 1' contains spaces which is invalid."
    );

    // Commenting on an issue Jira cannot find (or the account cannot see).
    api.queue(jira::COMMENT, vec![jira::issue_not_found()]);
    let run = h.run("/in", &event).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(step(&run, "issue")["status"], "succeeded");
    assert_eq!(
        step(&run, "comment")["error"],
        "HTTP 404: Issue does not exist or you do not have permission to see it."
    );
    assert_eq!(api.violations(), Vec::<String>::new());

    // A token Jira does not accept: 401, no body documented.
    let (_api, other) = setup(backend, jira::EMAIL, "ATATT-not-the-right-one").await;
    let run = other.run("/in", &event).await;
    assert_eq!(step(&run, "issue")["error"], "HTTP 401");
    assert!(!other
        .history_and_log()
        .await
        .contains("ATATT-not-the-right-one"));
}

both!(
    a_rate_limited_comment_waits_for_retry_after,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_rate_limited_comment_waits_for_retry_after(backend: Backend) {
    let (api, h) = setup(backend, jira::EMAIL, jira::API_TOKEN).await;
    api.queue(jira::COMMENT, vec![jira::rate_limited()]);
    let run = h.run("/in", &json!({"id": "pi_4", "severity": "p2"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let comment = step(&run, "comment");
    let attempts = comment["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{comment}");
    assert_eq!(attempts[0]["error"], "HTTP 429");
    assert_eq!(attempts[0]["response"]["status"], 429);
    let at = |a: &serde_json::Value| {
        humantime::parse_rfc3339(a["started_at"].as_str().expect("time")).expect("rfc3339")
    };
    let gap = at(&attempts[1])
        .duration_since(at(&attempts[0]))
        .expect("in order");
    assert!(gap >= std::time::Duration::from_millis(1000), "{gap:?}");
    assert_eq!(api.requests_to(jira::COMMENT).len(), 2);
}

both!(
    a_workflow_without_the_jira_site_is_invalid_and_says_which_variable,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_workflow_without_the_jira_site_is_invalid_and_says_which_variable(backend: Backend) {
    // Every Jira site has its own URL: the connector has no default.
    let h = Harness::start(
        backend,
        WF,
        &[
            ("JIRA_EMAIL", jira::EMAIL),
            ("JIRA_API_TOKEN", jira::API_TOKEN),
        ],
    );
    let list = h.workflows().await;
    let support = list
        .as_array()
        .and_then(|l| l.iter().find(|w| w["name"] == "support"))
        .cloned()
        .expect("listed");
    assert_eq!(support["status"], "invalid", "{support}");
    assert!(support.to_string().contains("JIRA_BASE_URL"), "{support}");
    assert_eq!(
        support["connectors"][0]["env"],
        json!([
            {"name": "JIRA_BASE_URL", "set": false, "optional": false},
            {"name": "JIRA_EMAIL", "set": true, "optional": false},
            {"name": "JIRA_API_TOKEN", "set": true, "optional": false}
        ])
    );
}
