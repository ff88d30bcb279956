//! The GitLab connector (`connectors/gitlab.yaml`) against GitLab's stand-in
//! (`tests/standins/gitlab.rs`): open an issue and comment on it, as
//! GitLab's REST reference describes the requests, and the step's status,
//! output and error for GitLab's documented answers.

mod common;
#[path = "standins/gitlab.rs"]
mod gitlab;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const WF: &str = r#"name: incidents
trigger:
  webhook: { path: /in }
steps:
  - id: issue
    uses: gitlab.create_issue
    with:
      project: "{{ $.event.project }}"
      title: "Payment {{ $.event.id }} failed"
      description: "{{ $.event.reason }}"
      labels: "billing,{{ $.event.severity }}"
      confidential: true
  - id: note
    uses: gitlab.create_issue_note
    with:
      project: "{{ $.event.project }}"
      issue_iid: "{{ $.steps.issue.body.iid }}"
      body: "Tracked by run {{ $.run.id }}"
"#;

async fn setup(backend: Backend, token: &str) -> (StandIn, Harness) {
    let api = StandIn::start(gitlab::routes()).await;
    let h = Harness::start(
        backend,
        WF,
        &[
            ("GITLAB_TOKEN", token),
            ("GITLAB_BASE_URL", &api.url("/api/v4")),
        ],
    );
    (api, h)
}

both!(
    issue_and_note_as_gitlab_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn issue_and_note_as_gitlab_documents_them(backend: Backend) {
    let (api, h) = setup(backend, gitlab::TOKEN).await;
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_1", "project": "acme/shop-api", "reason": "card declined", "severity": "p2"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let issue = step(&run, "issue");
    assert_eq!(issue["uses"], "gitlab.create_issue");
    assert_eq!(issue["output"]["status"], 201);
    assert_eq!(issue["output"]["body"]["iid"], 14);
    assert_eq!(issue["output"]["body"]["labels"], json!(["billing", "p2"]));
    // The project's path is one encoded segment, as GitLab asks.
    let sent = &api.requests_to(gitlab::ISSUES)[0];
    assert_eq!(sent.path, "/api/v4/projects/acme%2Fshop-api/issues");
    assert_eq!(sent.params["id"], "acme/shop-api");
    assert_eq!(sent.header("private-token"), Some(gitlab::TOKEN));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.json(),
        json!({
            "title": "Payment pi_1 failed",
            "description": "card declined",
            "labels": "billing,p2",
            "confidential": true
        })
    );
    // The record keeps the request with the token blanked out.
    assert_eq!(
        issue["attempts"][0]["request"]["headers"]["PRIVATE-TOKEN"],
        "[redacted]"
    );

    let note = step(&run, "note");
    assert_eq!(note["uses"], "gitlab.create_issue_note");
    assert_eq!(note["output"]["status"], 201);
    assert_eq!(note["output"]["body"]["noteable_iid"], 14);
    let sent = &api.requests_to(gitlab::NOTES)[0];
    assert_eq!(
        sent.path,
        "/api/v4/projects/acme%2Fshop-api/issues/14/notes"
    );
    assert_eq!(
        sent.json(),
        json!({"body": format!("Tracked by run {}", run["id"].as_str().expect("id"))})
    );
    assert!(!h.history_and_log().await.contains(gitlab::TOKEN));

    // A numeric project ID goes as it is; an absent description is left
    // out, never sent as null.
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_2", "project": 42, "severity": "p3"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let sent = &api.requests_to(gitlab::ISSUES)[1];
    assert_eq!(sent.path, "/api/v4/projects/42/issues");
    assert!(sent.json().get("description").is_none(), "{}", sent.text());
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    gitlab_errors_fail_the_step_with_gitlabs_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn gitlab_errors_fail_the_step_with_gitlabs_message(backend: Backend) {
    let (api, h) = setup(backend, gitlab::TOKEN).await;
    let event = json!({"id": "pi_3", "project": "acme/gone", "severity": "p1"});

    // A project that does not exist (or that the token cannot see).
    api.queue(gitlab::ISSUES, vec![gitlab::not_found("Project")]);
    let run = h.run("/in", &event).await;
    assert_eq!(run["status"], "failed", "{run}");
    let issue = step(&run, "issue");
    assert_eq!(issue["status"], "failed");
    assert_eq!(issue["error"], "HTTP 404: 404 Project Not Found");
    assert_eq!(run["error"], "HTTP 404: 404 Project Not Found");
    // A 404 is an answer, not an outage: not retried; the note waits.
    assert_eq!(issue["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "note")["status"], "pending");

    // A failed validation names the field and GitLab's messages.
    api.queue(
        gitlab::ISSUES,
        vec![gitlab::invalid(
            "title",
            "is too long (maximum is 255 characters)",
        )],
    );
    let run = h.run("/in", &event).await;
    assert_eq!(
        step(&run, "issue")["error"],
        r#"HTTP 400: {"title":["is too long (maximum is 255 characters)"]}"#
    );

    // The note on an issue that does not exist.
    api.queue(gitlab::NOTES, vec![gitlab::not_found("Issue")]);
    let run = h.run("/in", &event).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(step(&run, "issue")["status"], "succeeded");
    assert_eq!(step(&run, "note")["error"], "HTTP 404: 404 Issue Not Found");
    assert_eq!(api.violations(), Vec::<String>::new());

    // A token GitLab does not accept.
    let (api, other) = setup(backend, "glpat-not-the-right-one").await;
    let run = other.run("/in", &event).await;
    assert_eq!(step(&run, "issue")["error"], "HTTP 401: 401 Unauthorized");
    assert_eq!(api.requests_to(gitlab::ISSUES).len(), 1);
    assert!(!other
        .history_and_log()
        .await
        .contains("glpat-not-the-right-one"));
}

both!(
    a_rate_limited_issue_waits_for_retry_after,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_rate_limited_issue_waits_for_retry_after(backend: Backend) {
    let (api, h) = setup(backend, gitlab::TOKEN).await;
    api.queue(gitlab::ISSUES, vec![gitlab::rate_limited()]);
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_4", "project": "acme/shop-api", "severity": "p2"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let issue = step(&run, "issue");
    let attempts = issue["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{issue}");
    assert_eq!(
        attempts[0]["error"],
        format!("HTTP 429: {}", gitlab::RATE_LIMITED)
    );
    assert_eq!(attempts[0]["response"]["status"], 429);
    // Retry-After was honoured: the second attempt came a second later.
    let at = |a: &serde_json::Value| {
        humantime::parse_rfc3339(a["started_at"].as_str().expect("time")).expect("rfc3339")
    };
    let gap = at(&attempts[1])
        .duration_since(at(&attempts[0]))
        .expect("in order");
    assert!(gap >= std::time::Duration::from_millis(1000), "{gap:?}");
    // Both attempts carried the same Idempotency-Key.
    let sent = api.requests_to(gitlab::ISSUES);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].header("idempotency-key"),
        sent[1].header("idempotency-key")
    );
    assert_eq!(step(&run, "note")["status"], "succeeded");
}
