//! Linear's stand-in, per Linear's API reference and its own SDK:
//!
//! - The endpoint (https://github.com/linear/linear/blob/master/docs/API.md,
//!   https://linear.app/developers/graphql): `POST /graphql`, a JSON body
//!   `{"query", "variables", "operationName"}`, a personal API key as the
//!   whole `Authorization` header (no "Bearer"). `issueCreate(input:
//!   IssueCreateInput!)` answers `{"data": {"issueCreate": {"success",
//!   "issue"}}}`; `commentCreate(input: CommentCreateInput!)` answers
//!   `{"data": {"commentCreate": {"success", "comment"}}}`.
//! - The inputs (packages/sdk/src/schema.graphql): `IssueCreateInput`
//!   needs `teamId`; its other fields, and `CommentCreateInput`'s, are the
//!   lists below. `priority` is 0–4.
//! - Errors (packages/sdk/src/types.ts, error.ts): `{"errors": [{"message",
//!   "path", "extensions": {"type", "userError",
//!   "userPresentableMessage"}}]}`, types such as `invalid input`,
//!   `authentication error`, `ratelimited`; a rate-limited request is HTTP
//!   429 with `Retry-After`. What HTTP status a GraphQL error comes with
//!   is not in the reference: the tests send both a 200 and a 400. Linear's
//!   SDK tests answer a wrong key with 401; the stand-in does too, with an
//!   `authentication error` body (its message text is illustrative).
//!
//! A stand-in cannot run GraphQL: it knows the two mutations the connector
//! sends and the `viewer` query; any other document gets a GraphQL
//! validation error.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Map, Value};

pub const API_KEY: &str = "lin_api_Q1w2E3r4T5y6U7i8O9p0AsDfGhJkLzXcVbNm1234";
pub const GRAPHQL: &str = "POST /graphql";
pub const TEAM: &str = "9cfb482a-81e3-4154-b5b9-2c805e70a02d";

const ISSUE_CREATE_INPUT: &[&str] = &[
    "assigneeId",
    "completedAt",
    "createAsUser",
    "createdAt",
    "cycleId",
    "delegateId",
    "description",
    "descriptionData",
    "displayIconUrl",
    "dueDate",
    "estimate",
    "id",
    "inheritsSharedAccess",
    "labelIds",
    "lastAppliedTemplateId",
    "parentId",
    "preserveSortOrderOnCreate",
    "priority",
    "prioritySortOrder",
    "projectId",
    "projectMilestoneId",
    "referenceCommentId",
    "releaseIds",
    "slaBreachesAt",
    "slaStartedAt",
    "slaType",
    "sortOrder",
    "sourceCommentId",
    "sourcePullRequestCommentId",
    "stateId",
    "subIssueSortOrder",
    "subscriberIds",
    "teamId",
    "templateId",
    "title",
    "useDefaultTemplate",
];

const COMMENT_CREATE_INPUT: &[&str] = &[
    "body",
    "bodyData",
    "createAsUser",
    "createOnSyncedSlackThread",
    "createdAt",
    "displayIconUrl",
    "doNotSubscribeToIssue",
    "documentContentId",
    "id",
    "initiativeId",
    "initiativeUpdateId",
    "issueId",
    "parentId",
    "postId",
    "projectId",
    "projectUpdateId",
    "quotedText",
    "subscriberIds",
];

/// A GraphQL error as Linear reports it.
pub fn error(status: u16, kind: &str, message: &str, presentable: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "errors": [{
                "message": message,
                "extensions": {
                    "type": kind,
                    "userError": true,
                    "userPresentableMessage": presentable
                }
            }],
            "data": null
        }),
    )
}

pub fn unauthorized() -> Reply {
    error(
        401,
        "authentication error",
        "Authentication required, not authenticated",
        "You need to authenticate to access this operation.",
    )
}

pub fn rate_limited() -> Reply {
    error(
        429,
        "ratelimited",
        "Rate limit exceeded",
        "Too many requests, try again later.",
    )
    .with_header("Retry-After", "1")
}

/// The input of a mutation, checked against its schema type.
fn input<'a>(
    vars: &'a Value,
    allowed: &[&str],
    required: &[&str],
) -> Result<&'a Map<String, Value>, String> {
    let input = vars["input"]
        .as_object()
        .ok_or("`variables.input` must be an object")?;
    for (k, v) in input {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("`{k}` is not a field of the input type"));
        }
        if v.is_null() {
            return Err(format!("`{k}` is null"));
        }
    }
    for f in required {
        if !input.get(*f).is_some_and(Value::is_string) {
            return Err(format!("`{f}` is required (String!)"));
        }
    }
    Ok(input)
}

fn check(r: &Request) -> Result<(), String> {
    let b = r.json();
    let query = b["query"].as_str().ok_or("`query` must be a string")?;
    match b.get("variables") {
        None => {}
        Some(Value::Object(_)) => {}
        Some(v) => return Err(format!("`variables` must be an object, got {v}")),
    }
    if let Some(op) = b.get("operationName") {
        if !op.is_string() {
            return Err("`operationName` must be a string".into());
        }
    }
    let vars = &b["variables"];
    if query.contains("issueCreate(") {
        let i = input(vars, ISSUE_CREATE_INPUT, &["teamId"])?;
        if let Some(p) = i.get("priority") {
            if p.as_u64().is_none_or(|p| p > 4) {
                return Err(format!("`priority` must be an Int 0–4, got {p}"));
            }
        }
        if let Some(l) = i.get("labelIds") {
            if !l.as_array().is_some_and(|l| l.iter().all(Value::is_string)) {
                return Err("`labelIds` must be [String!]".into());
            }
        }
    } else if query.contains("commentCreate(") {
        input(vars, COMMENT_CREATE_INPUT, &["issueId", "body"])?;
    }
    Ok(())
}

fn answer(r: &Request) -> Reply {
    let b = r.json();
    let query = b["query"].as_str().unwrap_or_default();
    if query.contains("issueCreate(") {
        let i = &b["variables"]["input"];
        return Reply::json(
            200,
            json!({"data": {"issueCreate": {
                "success": true,
                "issue": {
                    "id": "2f4e6b0a-3c1d-4b7e-9a8f-5d6c7b8a9e0f",
                    "identifier": "ENG-123",
                    "title": i["title"],
                    "url": "https://linear.app/acme/issue/ENG-123/payment-failed"
                }
            }}}),
        );
    }
    if query.contains("commentCreate(") {
        let i = &b["variables"]["input"];
        return Reply::json(
            200,
            json!({"data": {"commentCreate": {
                "success": true,
                "comment": {
                    "id": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    "body": i["body"],
                    "url": "https://linear.app/acme/issue/ENG-123/payment-failed#comment-7a1b2c3d"
                }
            }}}),
        );
    }
    if query.contains("viewer") {
        return Reply::json(
            200,
            json!({"data": {"viewer": {"id": "5b8a1c2d-0e3f-4a5b-9c6d-7e8f9a0b1c2d", "name": "Mia Krystof", "email": "mia@example.com"}}}),
        );
    }
    error(
        400,
        "graphql error",
        "Cannot query field \"nope\" on type \"Query\".",
        "Cannot query field \"nope\" on type \"Query\".",
    )
}

pub fn routes() -> Vec<Route> {
    vec![Route::post("/graphql")
        .auth(
            |r| r.header("authorization") == Some(API_KEY),
            |_| unauthorized(),
        )
        .content_type("application/json")
        .json_fields(&["query"])
        .json_only(&["query", "variables", "operationName"])
        .check(check)
        .reply(answer)]
}
