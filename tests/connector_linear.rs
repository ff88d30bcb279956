//! The Linear connector (`connectors/linear.yaml`) against Linear's
//! stand-in (`tests/standins/linear.rs`): create an issue, comment on it
//! and send a raw GraphQL document, as Linear's reference describes the
//! requests, and the step's status, output and error for Linear's answers —
//! GraphQL errors with HTTP 200 and with an error status, a wrong key, and
//! a 429 with Retry-After.

mod common;
#[path = "standins/linear.rs"]
mod linear;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const WF: &str = r#"name: triage
trigger:
  webhook: { path: /in }
steps:
  - id: issue
    uses: linear.create_issue
    with:
      team_id: "{{ $.event.team }}"
      title: "Payment {{ $.event.id }} failed"
      description: "**{{ $.event.reason }}**"
      priority: 2
      label_ids: ["{{ $.event.label }}"]
  - id: comment
    uses: linear.create_comment
    with:
      issue_id: "{{ $.steps.issue.body.data.issueCreate.issue.id }}"
      body: "Tracked by run {{ $.run.id }}"
"#;

const ISSUE_QUERY: &str = "mutation IssueCreate($input: IssueCreateInput!) { issueCreate(input: $input) { success issue { id identifier title url } } }";

async fn setup(backend: Backend, wf: &str, key: &str) -> (StandIn, Harness) {
    let api = StandIn::start(linear::routes()).await;
    let h = Harness::start(
        backend,
        wf,
        &[("LINEAR_API_KEY", key), ("LINEAR_BASE_URL", &api.base)],
    );
    (api, h)
}

fn event(id: &str) -> serde_json::Value {
    json!({"id": id, "team": linear::TEAM, "reason": "card declined", "label": "bug-label-id"})
}

both!(
    issue_and_comment_as_linear_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn issue_and_comment_as_linear_documents_them(backend: Backend) {
    let (api, h) = setup(backend, WF, linear::API_KEY).await;
    let run = h.run("/in", &event("pi_1")).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let issue = step(&run, "issue");
    assert_eq!(issue["uses"], "linear.create_issue");
    assert_eq!(issue["output"]["status"], 200);
    assert_eq!(
        issue["output"]["body"]["data"]["issueCreate"]["issue"]["identifier"],
        "ENG-123"
    );
    let sent = api.requests_to(linear::GRAPHQL);
    assert_eq!(sent.len(), 2);
    // The key is the whole Authorization header, without "Bearer".
    assert_eq!(sent[0].header("authorization"), Some(linear::API_KEY));
    assert_eq!(
        sent[0].json(),
        json!({
            "query": ISSUE_QUERY,
            "variables": {"input": {
                "teamId": linear::TEAM,
                "title": "Payment pi_1 failed",
                "description": "**card declined**",
                "priority": 2,
                "labelIds": ["bug-label-id"]
            }}
        })
    );
    assert_eq!(
        issue["attempts"][0]["request"]["headers"]["Authorization"],
        "[redacted]"
    );

    let comment = step(&run, "comment");
    assert_eq!(comment["uses"], "linear.create_comment");
    assert_eq!(
        comment["output"]["body"]["data"]["commentCreate"]["success"],
        true
    );
    assert_eq!(
        sent[1].json()["variables"],
        json!({"input": {
            "issueId": "2f4e6b0a-3c1d-4b7e-9a8f-5d6c7b8a9e0f",
            "body": format!("Tracked by run {}", run["id"].as_str().expect("id"))
        }})
    );
    assert!(sent[1].json()["query"]
        .as_str()
        .is_some_and(|q| q.starts_with("mutation CommentCreate(")));
    assert!(!h.history_and_log().await.contains(linear::API_KEY));
}

both!(
    graphql_errors_fail_the_step_with_linears_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn graphql_errors_fail_the_step_with_linears_message(backend: Backend) {
    let (api, h) = setup(backend, WF, linear::API_KEY).await;
    // A GraphQL error with HTTP 200: `ok_when` fails the step, and the
    // error is the user-presentable message.
    let missing_team = || {
        linear::error(
            200,
            "invalid input",
            "Entity not found: Team",
            "Could not find referenced Team.",
        )
    };
    api.queue(linear::GRAPHQL, vec![missing_team()]);
    let run = h.run("/in", &event("pi_2")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let issue = step(&run, "issue");
    assert_eq!(issue["status"], "failed");
    assert_eq!(issue["error"], "Could not find referenced Team.");
    assert_eq!(issue["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "comment")["status"], "pending");

    // The same error with HTTP 400: not retried, the status in front.
    let mut with_400 = missing_team();
    with_400.status = 400;
    api.queue(linear::GRAPHQL, vec![with_400]);
    let run = h.run("/in", &event("pi_3")).await;
    let issue = step(&run, "issue");
    assert_eq!(issue["error"], "HTTP 400: Could not find referenced Team.");
    assert_eq!(issue["attempts"].as_array().map(Vec::len), Some(1));

    // Without a user-presentable message, the message itself.
    api.queue(
        linear::GRAPHQL,
        vec![common::standin::Reply::json(
            200,
            json!({"errors": [{"message": "Argument Validation Error", "path": ["issueCreate"]}], "data": null}),
        )],
    );
    let run = h.run("/in", &event("pi_4")).await;
    assert_eq!(step(&run, "issue")["error"], "Argument Validation Error");

    assert_eq!(api.violations(), Vec::<String>::new());

    // A key Linear does not accept.
    let (_api, other) = setup(backend, WF, "lin_api_not_the_right_one").await;
    let run = other.run("/in", &event("pi_7")).await;
    assert_eq!(
        step(&run, "issue")["error"],
        "HTTP 401: You need to authenticate to access this operation."
    );
    assert!(!other
        .history_and_log()
        .await
        .contains("lin_api_not_the_right_one"));
}

const COMMENT: &str = r#"name: note
trigger:
  webhook: { path: /in }
steps:
  - id: comment
    uses: linear.create_comment
    with:
      issue_id: "{{ $.event.issue }}"
      body: "{{ $.event.text }}"
"#;

both!(
    a_comment_on_an_issue_linear_cannot_find_fails_with_its_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_comment_on_an_issue_linear_cannot_find_fails_with_its_message(backend: Backend) {
    let (api, h) = setup(backend, COMMENT, linear::API_KEY).await;
    let run = h
        .run("/in", &json!({"issue": "ENG-123", "text": "Refund sent"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        api.requests_to(linear::GRAPHQL)[0].json()["variables"],
        json!({"input": {"issueId": "ENG-123", "body": "Refund sent"}})
    );
    api.queue(
        linear::GRAPHQL,
        vec![linear::error(
            200,
            "invalid input",
            "Entity not found: Issue",
            "Could not find referenced Issue.",
        )],
    );
    let run = h
        .run("/in", &json!({"issue": "ENG-999", "text": "Refund sent"}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let comment = step(&run, "comment");
    assert_eq!(comment["error"], "Could not find referenced Issue.");
    assert_eq!(comment["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    a_rate_limited_request_waits_for_retry_after,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_rate_limited_request_waits_for_retry_after(backend: Backend) {
    let (api, h) = setup(backend, WF, linear::API_KEY).await;
    api.queue(linear::GRAPHQL, vec![linear::rate_limited()]);
    let run = h.run("/in", &event("pi_8")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let issue = step(&run, "issue");
    let attempts = issue["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{issue}");
    assert_eq!(
        attempts[0]["error"],
        "HTTP 429: Too many requests, try again later."
    );
    let at = |a: &serde_json::Value| {
        humantime::parse_rfc3339(a["started_at"].as_str().expect("time")).expect("rfc3339")
    };
    let gap = at(&attempts[1])
        .duration_since(at(&attempts[0]))
        .expect("in order");
    assert!(gap >= std::time::Duration::from_millis(1000), "{gap:?}");
    assert_eq!(api.requests_to(linear::GRAPHQL).len(), 3);
}

const RAW: &str = r#"name: raw
trigger:
  webhook: { path: /in }
steps:
  - id: q
    uses: linear.graphql
    with:
      query: "{{ $.event.query }}"
      variables: { first: 5 }
      operation_name: Me
"#;

both!(
    the_graphql_action_sends_the_document_and_fails_on_errors,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_graphql_action_sends_the_document_and_fails_on_errors(backend: Backend) {
    let (api, h) = setup(backend, RAW, linear::API_KEY).await;
    let doc = "query Me($first: Int) { viewer { id name email } }";
    let run = h.run("/in", &json!({"query": doc})).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let q = step(&run, "q");
    assert_eq!(q["uses"], "linear.graphql");
    assert_eq!(q["output"]["body"]["data"]["viewer"]["name"], "Mia Krystof");
    assert_eq!(
        api.requests_to(linear::GRAPHQL)[0].json(),
        json!({"query": doc, "variables": {"first": 5}, "operationName": "Me"})
    );

    // A document Linear rejects: the status and Linear's message.
    let run = h.run("/in", &json!({"query": "query Me { nope }"})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "q")["error"],
        "HTTP 400: Cannot query field \"nope\" on type \"Query\"."
    );

    // Errors with HTTP 200 (a partial answer) fail the step as well.
    api.queue(
        linear::GRAPHQL,
        vec![linear::error(
            200,
            "forbidden",
            "Forbidden",
            "You don't have access to this team.",
        )],
    );
    let run = h.run("/in", &json!({"query": doc})).await;
    assert_eq!(step(&run, "q")["status"], "failed");
    assert_eq!(
        step(&run, "q")["error"],
        "You don't have access to this team."
    );
}

both!(
    a_priority_linear_does_not_have_is_refused_at_load,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_priority_linear_does_not_have_is_refused_at_load(backend: Backend) {
    let wf = WF.replace("priority: 2", "priority: 7");
    let (api, h) = setup(backend, &wf, linear::API_KEY).await;
    let list = h.workflows().await;
    let triage = list
        .as_array()
        .and_then(|l| l.iter().find(|w| w["name"] == "triage"))
        .cloned()
        .expect("listed");
    assert_eq!(triage["status"], "invalid", "{triage}");
    let error = triage.to_string();
    assert!(error.contains("must be one of: 0, 1, 2, 3, 4"), "{error}");
    assert!(api.requests().is_empty());
}
