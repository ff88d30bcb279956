//! Jira Cloud's stand-in, per the Jira Cloud platform REST API v2
//! reference (https://developer.atlassian.com/cloud/jira/platform/rest/v2/):
//!
//! - Basic auth for REST APIs (https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/):
//!   `Authorization: Basic base64(email:api_token)`; wrong credentials get
//!   `401` ("Returned if the authentication credentials are incorrect or
//!   missing"; no body is documented, so the stand-in sends none).
//! - Create issue (…/api-group-issues/#api-rest-api-2-issue-post):
//!   `POST /rest/api/2/issue`, JSON `IssueUpdateDetails` —
//!   `{"fields": {"project": {"key"|"id"}, "issuetype": {"name"|"id"},
//!   "summary", …}, "update", "transition", "properties",
//!   "historyMetadata"}`; in v2 `description` is a string. `201` with
//!   `{"id": "10000", "key": "ED-24", "self": "…/rest/api/2/issue/10000"}`
//!   (the reference's example). `400` is an `ErrorCollection`, e.g.
//!   `{"errorMessages": ["Field 'priority' is required"], "errors": {}}`.
//! - Add comment (…/api-group-issue-comments/#api-rest-api-2-issue-issueidorkey-comment-post):
//!   `POST /rest/api/2/issue/{issueIdOrKey}/comment`, `{"body": "…",
//!   "visibility": {"type": "group"|"role", "value"|"identifier"}}`; `201`
//!   with the comment (the reference's example, below); `404` if the issue
//!   is not found or not visible (the message text below is Jira's usual
//!   one, not the reference's).
//! - Rate limiting (https://developer.atlassian.com/cloud/jira/platform/rate-limiting/):
//!   `429` with `Retry-After` (seconds) and `X-RateLimit-Reset`; the body
//!   is not documented, so the stand-in sends none.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const EMAIL: &str = "mia@example.com";
pub const API_TOKEN: &str = "ATATT3xFfGF0T4kQ9mZr2WvYbN7cLpE5sHdJ1uKoA8iX";
pub const ISSUE: &str = "POST /rest/api/2/issue";
pub const COMMENT: &str = "POST /rest/api/2/issue/{issueIdOrKey}/comment";
/// Where the reference's examples say the site is.
const SITE: &str = "https://your-domain.atlassian.net";

/// An `ErrorCollection`.
pub fn errors(status: u16, messages: &[&str], fields: Value) -> Reply {
    Reply::json(
        status,
        json!({ "errorMessages": messages, "errors": fields }),
    )
}

pub fn issue_not_found() -> Reply {
    errors(
        404,
        &["Issue does not exist or you do not have permission to see it."],
        json!({}),
    )
}

pub fn rate_limited() -> Reply {
    Reply::empty(429)
        .with_header("Retry-After", "1")
        .with_header("X-RateLimit-Reset", "2026-01-01T00:00Z")
}

/// The system fields of an issue (custom fields are `customfield_NNNNN`).
const SYSTEM_FIELDS: &[&str] = &[
    "project",
    "issuetype",
    "summary",
    "description",
    "labels",
    "priority",
    "assignee",
    "reporter",
    "parent",
    "components",
    "duedate",
    "environment",
    "fixVersions",
    "versions",
    "security",
    "timetracking",
];

fn common(route: Route) -> Route {
    route
        .auth(
            |r| r.basic() == Some((EMAIL.to_string(), API_TOKEN.to_string())),
            |_| Reply::empty(401),
        )
        .content_type("application/json")
}

/// `{"key"|"id"|…: "<string>"}` with one of `names`.
fn reference(v: &Value, names: &[&str]) -> bool {
    v.as_object().is_some_and(|o| {
        !o.is_empty()
            && names.iter().any(|n| o.contains_key(*n))
            && o.values().all(|v| v.is_string())
    })
}

fn check_fields(r: &Request) -> Result<(), String> {
    let b = r.json();
    let fields = b["fields"]
        .as_object()
        .ok_or("`fields` must be an object")?;
    for (k, v) in fields {
        if !SYSTEM_FIELDS.contains(&k.as_str()) && !k.starts_with("customfield_") {
            return Err(format!("`fields.{k}` is not a field of an issue"));
        }
        if v.is_null() {
            return Err(format!("`fields.{k}` is null"));
        }
    }
    if !fields
        .get("project")
        .is_some_and(|p| reference(p, &["key", "id"]))
    {
        return Err("`fields.project` must be {key} or {id}".into());
    }
    if !fields
        .get("issuetype")
        .is_some_and(|t| reference(t, &["name", "id"]))
    {
        return Err("`fields.issuetype` must be {name} or {id}".into());
    }
    if !fields.get("summary").is_some_and(Value::is_string) {
        return Err("`fields.summary` must be a string".into());
    }
    if fields.get("description").is_some_and(|d| !d.is_string()) {
        return Err("in v2 `fields.description` is a string".into());
    }
    if let Some(l) = fields.get("labels") {
        let ok = l.as_array().is_some_and(|l| {
            l.iter()
                .all(|x| x.as_str().is_some_and(|s| !s.contains(' ')))
        });
        if !ok {
            return Err(format!(
                "`fields.labels` must be strings without spaces, got {l}"
            ));
        }
    }
    for (k, names) in [
        ("priority", &["name", "id"][..]),
        ("assignee", &["accountId", "id"][..]),
        ("parent", &["key", "id"][..]),
    ] {
        if let Some(v) = fields.get(k) {
            if !reference(v, names) {
                return Err(format!(
                    "`fields.{k}` must be one of {names:?} objects, got {v}"
                ));
            }
        }
    }
    if let Some(c) = fields.get("components") {
        if !c
            .as_array()
            .is_some_and(|c| c.iter().all(|x| reference(x, &["name", "id"])))
        {
            return Err("`fields.components` must be [{name}|{id}]".into());
        }
    }
    Ok(())
}

fn created(r: &Request) -> Reply {
    let project = r.json()["fields"]["project"]["key"]
        .as_str()
        .unwrap_or("ED")
        .to_string();
    Reply::json(
        201,
        json!({
            "id": "10000",
            "key": format!("{project}-24"),
            "self": format!("{SITE}/rest/api/2/issue/10000")
        }),
    )
}

/// The reference's example answer to "Add comment".
fn comment(r: &Request) -> Reply {
    let b = r.json();
    let author = json!({
        "accountId": "5b10a2844c20165700ede21g",
        "active": false,
        "displayName": "Mia Krystof",
        "self": format!("{SITE}/rest/api/2/user?accountId=5b10a2844c20165700ede21g")
    });
    let mut answer = json!({
        "author": author,
        "body": b["body"],
        "created": "2021-01-17T12:34:00.000+0000",
        "id": "10000",
        "self": format!("{SITE}/rest/api/2/issue/10010/comment/10000"),
        "updateAuthor": author,
        "updated": "2021-01-18T23:45:00.000+0000"
    });
    if let Some(v) = b.get("visibility") {
        answer["visibility"] = v.clone();
    }
    Reply::json(201, answer)
}

pub fn routes() -> Vec<Route> {
    vec![
        common(Route::post("/rest/api/2/issue"))
            .json_fields(&["fields"])
            .json_only(&[
                "fields",
                "update",
                "transition",
                "properties",
                "historyMetadata",
            ])
            .check(check_fields)
            .reply(created),
        common(Route::post("/rest/api/2/issue/{issueIdOrKey}/comment"))
            .json_fields(&["body"])
            .json_only(&["body", "visibility", "properties"])
            .check(|r| {
                let b = r.json();
                if !b["body"].is_string() {
                    return Err("in v2 a comment's `body` is a string".into());
                }
                match b.get("visibility") {
                    None => Ok(()),
                    Some(v)
                        if matches!(v["type"].as_str(), Some("group" | "role"))
                            && (v["value"].is_string() || v["identifier"].is_string()) =>
                    {
                        Ok(())
                    }
                    Some(v) => Err(format!(
                        "`visibility` must be {{type: group|role, value|identifier}}, got {v}"
                    )),
                }
            })
            .reply(comment),
    ]
}
