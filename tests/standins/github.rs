//! GitHub's stand-in, per GitHub's REST API reference
//! (https://docs.github.com/en/rest): every request carries
//! `Authorization: Bearer <token>`, `Accept: application/vnd.github+json`,
//! `X-GitHub-Api-Version: 2022-11-28` and a `User-Agent`, and a JSON body.
//!
//! - Create an issue (https://docs.github.com/en/rest/issues/issues#create-an-issue):
//!   `POST /repos/{owner}/{repo}/issues`, `title` required, `body`,
//!   `labels`, `assignees`, `milestone`; `201` with the issue.
//! - Create an issue comment (https://docs.github.com/en/rest/issues/comments#create-an-issue-comment):
//!   `POST /repos/{owner}/{repo}/issues/{issue_number}/comments`, `body`
//!   required; `201` with the comment.
//! - Create a workflow dispatch event (https://docs.github.com/en/rest/actions/workflows#create-a-workflow-dispatch-event):
//!   `POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches`,
//!   `ref` required, `inputs` an object of at most 10 properties; `204`.
//! - Errors (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api):
//!   `{"message", "documentation_url", "status"}`; `401 Bad credentials`;
//!   `422 Validation Failed` with `errors: [{resource, field, code}]`.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const TOKEN: &str =
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";
pub const ISSUES: &str = "POST /repos/{owner}/{repo}/issues";
pub const COMMENTS: &str = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments";
pub const DISPATCH: &str = "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches";

pub fn bad_credentials() -> Reply {
    Reply::json(
        401,
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
    )
}

/// GitHub's `422 Validation Failed`.
pub fn validation_failed(resource: &str, field: &str, code: &str) -> Reply {
    Reply::json(
        422,
        json!({
            "message": "Validation Failed",
            "errors": [{"resource": resource, "field": field, "code": code}],
            "documentation_url": "https://docs.github.com/rest/issues/issues#create-an-issue",
            "status": "422"
        }),
    )
}

fn common(route: Route) -> Route {
    route
        .bearer(TOKEN, bad_credentials())
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .has_header("user-agent")
        .content_type("application/json")
}

fn issue(r: &Request) -> Reply {
    let b = r.json();
    let (owner, repo) = (&r.params["owner"], &r.params["repo"]);
    Reply::json(
        201,
        json!({
            "id": 1,
            "node_id": "MDU6SXNzdWUx",
            "url": format!("https://api.github.com/repos/{owner}/{repo}/issues/1347"),
            "html_url": format!("https://github.com/{owner}/{repo}/issues/1347"),
            "number": 1347,
            "state": "open",
            "title": b["title"],
            "body": b.get("body").cloned().unwrap_or(Value::Null),
            "user": {"login": "octocat", "id": 1},
            "labels": b.get("labels").cloned().unwrap_or(json!([])),
        }),
    )
}

pub fn routes() -> Vec<Route> {
    vec![
        common(Route::post("/repos/{owner}/{repo}/issues"))
            .json_fields(&["title"])
            .json_only(&["title", "body", "labels", "assignees", "milestone", "type"])
            .check(|r| {
                let b = r.json();
                for list in ["labels", "assignees"] {
                    if b.get(list).is_some_and(|v| !v.is_array()) {
                        return Err(format!("`{list}` must be an array"));
                    }
                }
                Ok(())
            })
            .reply(issue),
        common(Route::post(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        ))
        .json_fields(&["body"])
        .json_only(&["body"])
        .check(|r| {
            r.params["issue_number"]
                .parse::<u64>()
                .map(|_| ())
                .map_err(|_| "issue_number must be a number".to_string())
        })
        .reply(|r| {
            let (owner, repo, n) = (
                &r.params["owner"],
                &r.params["repo"],
                &r.params["issue_number"],
            );
            Reply::json(
                201,
                json!({
                    "id": 1,
                    "node_id": "MDEyOklzc3VlQ29tbWVudDE=",
                    "url": format!("https://api.github.com/repos/{owner}/{repo}/issues/comments/1"),
                    "html_url": format!("https://github.com/{owner}/{repo}/issues/{n}#issuecomment-1"),
                    "issue_url": format!("https://api.github.com/repos/{owner}/{repo}/issues/{n}"),
                    "body": r.json()["body"],
                    "user": {"login": "octocat", "id": 1},
                    "created_at": "2011-04-14T16:00:49Z",
                    "updated_at": "2011-04-14T16:00:49Z",
                    "author_association": "COLLABORATOR"
                }),
            )
        }),
        common(Route::post(
            "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
        ))
        .json_fields(&["ref"])
        .json_only(&["ref", "inputs"])
        .check(|r| match r.json().get("inputs") {
            None => Ok(()),
            Some(Value::Object(m)) if m.len() <= 10 => Ok(()),
            Some(other) => Err(format!(
                "`inputs` must be an object of at most 10 properties, got {other}"
            )),
        })
        .reply(|_| Reply::empty(204)),
    ]
}
