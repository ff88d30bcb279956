//! The GitHub connector (`connectors/github.yaml`) against GitHub's
//! stand-in (`tests/standins/github.rs`): create an issue, comment on one,
//! dispatch a workflow; GitHub's documented success and error answers.

mod common;
#[path = "standins/github.rs"]
mod github;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::json;

const WF: &str = r#"name: triage
trigger:
  webhook: { path: /in }
steps:
  - id: issue
    uses: github.create_issue
    with:
      owner: acme
      repo: "{{ $.event.repo }}"
      title: "Payment {{ $.event.id }} failed"
      body: "{{ $.event.reason }}"
      labels: [billing, "{{ $.event.severity }}"]
  - id: comment
    uses: github.create_comment
    with:
      owner: acme
      repo: "{{ $.event.repo }}"
      issue_number: "{{ $.steps.issue.body.number }}"
      body: "Tracked by run {{ $.run.id }}"
  - id: deploy
    uses: github.dispatch_workflow
    with:
      owner: acme
      repo: "{{ $.event.repo }}"
      workflow_id: rollback.yml
      ref: main
      inputs: { payment: "{{ $.event.id }}" }
"#;

async fn setup(backend: Backend) -> (StandIn, Harness) {
    let api = StandIn::start(github::routes()).await;
    let h = Harness::start(
        backend,
        WF,
        &[
            ("GITHUB_TOKEN", github::TOKEN),
            ("GITHUB_BASE_URL", &api.base),
        ],
    );
    (api, h)
}

both!(
    issue_comment_and_dispatch_as_github_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn issue_comment_and_dispatch_as_github_documents_them(backend: Backend) {
    let (api, h) = setup(backend).await;
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_1", "repo": "shop-api", "reason": "card declined", "severity": "p2"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let issue = step(&run, "issue");
    assert_eq!(issue["uses"], "github.create_issue");
    assert_eq!(issue["output"]["status"], 201);
    assert_eq!(issue["output"]["body"]["number"], 1347);
    let sent = &api.requests_to(github::ISSUES)[0];
    assert_eq!(sent.path, "/repos/acme/shop-api/issues");
    assert_eq!(
        sent.json(),
        json!({"title": "Payment pi_1 failed", "body": "card declined", "labels": ["billing", "p2"]})
    );

    let comment = &api.requests_to(github::COMMENTS)[0];
    assert_eq!(comment.path, "/repos/acme/shop-api/issues/1347/comments");
    assert_eq!(
        comment.json()["body"],
        format!("Tracked by run {}", run["id"].as_str().expect("id"))
    );
    assert_eq!(step(&run, "comment")["output"]["status"], 201);

    let dispatch = &api.requests_to(github::DISPATCH)[0];
    assert_eq!(
        dispatch.path,
        "/repos/acme/shop-api/actions/workflows/rollback.yml/dispatches"
    );
    assert_eq!(
        dispatch.json(),
        json!({"ref": "main", "inputs": {"payment": "pi_1"}})
    );
    let deploy = step(&run, "deploy");
    assert_eq!(deploy["output"]["status"], 204);
    assert_eq!(deploy["output"]["body"], serde_json::Value::Null);
    assert!(!h.history_and_log().await.contains(github::TOKEN));
}

both!(
    github_errors_fail_the_step_with_githubs_message,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn github_errors_fail_the_step_with_githubs_message(backend: Backend) {
    let (api, h) = setup(backend).await;
    api.queue(
        github::ISSUES,
        vec![github::validation_failed("Label", "name", "invalid")],
    );
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_2", "repo": "shop-api", "severity": "p1"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let issue = step(&run, "issue");
    let error = issue["error"].as_str().expect("an error");
    assert!(error.starts_with("HTTP 422: Validation Failed"), "{error}");
    assert!(
        error.contains("invalid") && error.contains("Label"),
        "{error}"
    );
    // 422 is the caller's mistake: not retried, and the steps after wait.
    assert_eq!(issue["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(step(&run, "comment")["status"], "pending");

    // An absent body is left out of the request, never sent as null.
    let sent = api.requests_to(github::ISSUES);
    assert!(sent[0].json().get("body").is_none(), "{}", sent[0].text());

    // A token GitHub does not accept.
    let other = Harness::start(
        backend,
        WF,
        &[
            ("GITHUB_TOKEN", "ghp_wrong0000000000000000000000000000000"),
            ("GITHUB_BASE_URL", &api.base),
        ],
    );
    let run = other
        .run(
            "/in",
            &json!({"id": "pi_3", "repo": "shop-api", "severity": "p1"}),
        )
        .await;
    assert_eq!(step(&run, "issue")["error"], "HTTP 401: Bad credentials");
}

both!(
    event_data_in_a_path_parameter_stays_in_its_segment,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn event_data_in_a_path_parameter_stays_in_its_segment(backend: Backend) {
    let (api, h) = setup(backend).await;
    let run = h
        .run(
            "/in",
            &json!({"id": "pi_4", "repo": "../../orgs/evil/x?y=1#", "severity": "p3"}),
        )
        .await;
    // The stand-in saw the repo as one (encoded) segment: no other route
    // was reached, and GitHub would answer 404 for such a repository.
    let sent = &api.requests_to(github::ISSUES)[0];
    assert_eq!(sent.params["repo"], "../../orgs/evil/x?y=1#");
    assert_eq!(sent.params["owner"], "acme");
    assert!(run["status"] == "succeeded" || run["status"] == "failed");
}
