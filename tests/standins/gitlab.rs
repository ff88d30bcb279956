//! GitLab's stand-in, per GitLab's REST API reference (v4, under
//! `/api/v4`):
//!
//! - Authentication (https://docs.gitlab.com/api/rest/authentication/): a
//!   personal, project or group access token in the `PRIVATE-TOKEN` header;
//!   a missing or wrong one gets `401 {"message": "401 Unauthorized"}`.
//! - New issue (https://docs.gitlab.com/api/issues/#new-issue):
//!   `POST /projects/:id/issues`, `:id` the project's ID or URL-encoded
//!   path; `title` required; `description`, `labels` (a comma-separated
//!   string), `assignee_ids` (integers), `milestone_id`, `due_date`
//!   (YYYY-MM-DD), `confidential`, `issue_type`, `weight`; `201` with the
//!   issue (the reference's example answer, below).
//! - Create new issue note (https://docs.gitlab.com/api/notes/#create-new-issue-note):
//!   `POST /projects/:id/issues/:issue_iid/notes`, `body` required,
//!   `internal`; `201` with the note.
//! - Errors (https://docs.gitlab.com/api/rest/troubleshooting/): `400`
//!   `{"message": "400 (Bad request) \"title\" not given"}` for a missing
//!   attribute, `{"message": {"<field>": ["<error>"]}}` for a failed
//!   validation; `404 {"message": "404 Project Not Found"}`; `429 Too Many
//!   Requests` over a rate limit, with `Retry-After` (GitLab's answer to the
//!   issue-creation limit: `{"message": "This endpoint has been requested
//!   too many times. Try again later."}`, gitlab-org/gitlab!206603).
//!
//! The reference documents JSON bodies (`Content-Type: application/json`)
//! as well as form and query attributes; the connector sends JSON.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const TOKEN: &str = "glpat-Xb7cPq2mR4sT9vW1yZ3a";
pub const ISSUES: &str = "POST /api/v4/projects/{id}/issues";
pub const NOTES: &str = "POST /api/v4/projects/{id}/issues/{issue_iid}/notes";

/// The issue creation rate limit's answer.
pub const RATE_LIMITED: &str = "This endpoint has been requested too many times. Try again later.";

pub fn unauthorized() -> Reply {
    Reply::json(401, json!({"message": "401 Unauthorized"}))
}

/// GitLab's `{"message": "404 <Thing> Not Found"}`.
pub fn not_found(what: &str) -> Reply {
    Reply::json(404, json!({ "message": format!("404 {what} Not Found") }))
}

/// A failed validation: `{"message": {"<field>": ["<error>"]}}`.
pub fn invalid(field: &str, error: &str) -> Reply {
    Reply::json(400, json!({ "message": { field: [error] } }))
}

pub fn rate_limited() -> Reply {
    Reply::json(429, json!({ "message": RATE_LIMITED })).with_header("Retry-After", "1")
}

fn common(route: Route) -> Route {
    route
        .auth(
            |r| r.header("private-token") == Some(TOKEN),
            |_| unauthorized(),
        )
        .content_type("application/json")
}

/// An attribute, a test of its value, and the type the reference gives it.
type TypeCheck = (&'static str, fn(&Value) -> bool, &'static str);

/// Optional attributes must have the reference's types.
fn typed(r: &Request, checks: &[TypeCheck]) -> Result<(), String> {
    let body = r.json();
    for (field, ok, what) in checks {
        if let Some(v) = body.get(*field) {
            if !ok(v) {
                return Err(format!("`{field}` must be {what}, got {v}"));
            }
        }
    }
    Ok(())
}

/// The reference's example answer to "New issue", with what was sent.
fn issue(r: &Request) -> Reply {
    let b = r.json();
    let project = &r.params["id"];
    let labels: Vec<Value> = b["labels"]
        .as_str()
        .map(|l| l.split(',').map(|s| json!(s.trim())).collect())
        .unwrap_or_default();
    Reply::json(
        201,
        json!({
            "project_id": 4,
            "id": 84,
            "created_at": "2016-01-07T12:44:33.959Z",
            "iid": 14,
            "title": b["title"],
            "state": "opened",
            "assignees": [],
            "assignee": null,
            "type": "ISSUE",
            "labels": labels,
            "upvotes": 0,
            "downvotes": 0,
            "merge_requests_count": 0,
            "author": {
                "name": "Alexandra Bashirian",
                "avatar_url": null,
                "state": "active",
                "web_url": "https://gitlab.example.com/eileen.lowe",
                "id": 18,
                "username": "eileen.lowe"
            },
            "description": b.get("description").cloned().unwrap_or(Value::Null),
            "updated_at": "2016-01-07T12:44:33.959Z",
            "closed_at": null,
            "closed_by": null,
            "milestone": null,
            "subscribed": true,
            "user_notes_count": 0,
            "due_date": b.get("due_date").cloned().unwrap_or(Value::Null),
            "web_url": format!("https://gitlab.example.com/{project}/-/issues/14"),
            "references": { "short": "#14", "relative": "#14", "full": format!("{project}#14") },
            "confidential": b.get("confidential").cloned().unwrap_or(json!(false)),
            "discussion_locked": false,
            "issue_type": b.get("issue_type").cloned().unwrap_or(json!("issue")),
        }),
    )
}

fn note(r: &Request) -> Reply {
    let b = r.json();
    Reply::json(
        201,
        json!({
            "id": 305,
            "body": b["body"],
            "author": {
                "id": 1,
                "username": "pipin",
                "name": "Pip",
                "state": "active",
                "created_at": "2013-09-30T13:46:01Z"
            },
            "created_at": "2013-10-02T09:56:03Z",
            "updated_at": "2013-10-02T09:56:03Z",
            "system": false,
            "noteable_id": 84,
            "noteable_type": "Issue",
            "project_id": 4,
            "noteable_iid": r.params["issue_iid"].parse::<u64>().unwrap_or_default(),
            "resolvable": false,
            "confidential": false,
            "internal": b.get("internal").cloned().unwrap_or(json!(false)),
        }),
    )
}

pub fn routes() -> Vec<Route> {
    vec![
        common(Route::post("/api/v4/projects/{id}/issues"))
            .json_fields(&["title"])
            .json_only(&[
                "title",
                "description",
                "labels",
                "assignee_ids",
                "assignee_id",
                "milestone_id",
                "due_date",
                "confidential",
                "issue_type",
                "weight",
                "epic_id",
                "created_at",
                "iid",
                "discussion_to_resolve",
                "merge_request_to_resolve_discussions_of",
            ])
            .check(|r| {
                typed(
                    r,
                    &[
                        ("title", Value::is_string, "a string"),
                        ("description", Value::is_string, "a string"),
                        ("labels", Value::is_string, "a comma-separated string"),
                        (
                            "assignee_ids",
                            |v| v.as_array().is_some_and(|a| a.iter().all(Value::is_u64)),
                            "an array of integers",
                        ),
                        ("milestone_id", Value::is_u64, "an integer"),
                        ("due_date", Value::is_string, "a YYYY-MM-DD string"),
                        ("confidential", Value::is_boolean, "a boolean"),
                        ("issue_type", Value::is_string, "a string"),
                        ("weight", Value::is_u64, "an integer ≥ 0"),
                    ],
                )
            })
            .reply(issue),
        common(Route::post(
            "/api/v4/projects/{id}/issues/{issue_iid}/notes",
        ))
        .json_fields(&["body"])
        .json_only(&["body", "internal", "confidential", "created_at"])
        .check(|r| {
            r.params["issue_iid"]
                .parse::<u64>()
                .map(|_| ())
                .map_err(|_| "issue_iid must be an integer".to_string())
        })
        .check(|r| {
            typed(
                r,
                &[
                    ("body", Value::is_string, "a string"),
                    ("internal", Value::is_boolean, "a boolean"),
                ],
            )
        })
        .reply(note),
    ]
}
