//! Notion's stand-in, per Notion's API reference (under `/v1`):
//!
//! - Every request (https://developers.notion.com/reference/intro,
//!   https://developers.notion.com/reference/versioning): the integration's
//!   secret as `Authorization: Bearer`, a `Notion-Version` header (the
//!   connector pins `2025-09-03`, Notion's SDK default), JSON bodies.
//! - Create a page (https://developers.notion.com/reference/post-page):
//!   `POST /v1/pages` with `parent` (one of `page_id`, `data_source_id`,
//!   `database_id`, `workspace`), `properties`, `children` (blocks),
//!   `icon`, `cover` (and `content`, `markdown`, `template`, `position`);
//!   `200` with the page object.
//! - Append block children (https://developers.notion.com/reference/patch-block-children):
//!   `PATCH /v1/blocks/{block_id}/children` with `children` (at most 100
//!   blocks) and `after`; `200` with `{"object": "list", "results": […],
//!   "next_cursor": null, "has_more": false, "type": "block", "block": {}}`.
//! - Errors (https://developers.notion.com/reference/status-codes):
//!   `{"object": "error", "status", "code", "message", "request_id"}`;
//!   `400 validation_error` (the reference's message example: "body failed
//!   validation: body.properties should be defined, instead was
//!   undefined."), `401 unauthorized`, `404 object_not_found`,
//!   `429 rate_limited` with `Retry-After` in seconds
//!   (https://developers.notion.com/reference/request-limits). The 401,
//!   404 and 429 message texts below are Notion's usual ones, not the
//!   reference's.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const TOKEN: &str = "ntn_4815162342aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
pub const VERSION: &str = "2025-09-03";
pub const PAGES: &str = "POST /v1/pages";
pub const CHILDREN: &str = "PATCH /v1/blocks/{block_id}/children";
pub const NEW_PAGE: &str = "59833787-2cf9-4fdf-8782-e53db20768a5";

/// Notion's error object.
pub fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "object": "error",
            "status": status,
            "code": code,
            "message": message,
            "request_id": "be3e7f1e-3b4a-4c2d-9f7e-2a1b0c9d8e7f"
        }),
    )
}

pub fn unauthorized() -> Reply {
    error(401, "unauthorized", "API token is invalid.")
}

pub fn rate_limited() -> Reply {
    error(
        429,
        "rate_limited",
        "You have been rate limited. Please try again in a few minutes.",
    )
    .with_header("Retry-After", "1")
}

fn common(route: Route) -> Route {
    route
        .bearer(TOKEN, unauthorized())
        .header("notion-version", VERSION)
        .content_type("application/json")
}

/// Blocks: objects with a `type` and that type's content.
fn blocks(v: &Value, max: usize) -> Result<(), String> {
    let list = v
        .as_array()
        .ok_or("`children` must be an array of blocks")?;
    if list.len() > max {
        return Err(format!("at most {max} blocks, got {}", list.len()));
    }
    for b in list {
        let ty = b["type"]
            .as_str()
            .ok_or(format!("a block needs a `type`: {b}"))?;
        if !b[ty].is_object() {
            return Err(format!("a `{ty}` block needs its `{ty}` object: {b}"));
        }
    }
    Ok(())
}

fn check_page(r: &Request) -> Result<(), String> {
    let b = r.json();
    let parent = b["parent"]
        .as_object()
        .ok_or("`parent` must be an object")?;
    let kinds: Vec<&String> = parent.keys().filter(|k| *k != "type").collect();
    match kinds.as_slice() {
        [k] if ["page_id", "data_source_id", "database_id"].contains(&k.as_str()) => {
            if !parent[k.as_str()].is_string() {
                return Err(format!("`parent.{k}` must be an ID"));
            }
        }
        [k] if k.as_str() == "workspace" => {}
        other => {
            return Err(format!(
                "`parent` must hold exactly one of page_id, data_source_id, database_id, workspace; got {other:?}"
            ))
        }
    }
    if b.get("properties").is_some_and(|p| !p.is_object()) {
        return Err("`properties` must be an object".into());
    }
    for k in ["icon", "cover"] {
        if b.get(k).is_some_and(|v| !v.is_object()) {
            return Err(format!("`{k}` must be an object"));
        }
    }
    match b.get("children") {
        None => Ok(()),
        Some(c) => blocks(c, 100),
    }
}

/// The page object Notion answers with (the reference's shape).
fn page(r: &Request) -> Reply {
    let b = r.json();
    let parent = b["parent"].as_object().cloned().unwrap_or_default();
    let (kind, id) = parent
        .iter()
        .find(|(k, _)| *k != "type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_else(|| ("workspace".into(), json!(true)));
    Reply::json(
        200,
        json!({
            "object": "page",
            "id": NEW_PAGE,
            "created_time": "2025-10-01T10:00:00.000Z",
            "last_edited_time": "2025-10-01T10:00:00.000Z",
            "created_by": {"object": "user", "id": "ee5f0f84-409a-440f-983a-a5315961c6e4"},
            "last_edited_by": {"object": "user", "id": "ee5f0f84-409a-440f-983a-a5315961c6e4"},
            "cover": b.get("cover").cloned().unwrap_or(Value::Null),
            "icon": b.get("icon").cloned().unwrap_or(Value::Null),
            "parent": {"type": kind, kind.as_str(): id},
            "archived": false,
            "in_trash": false,
            "is_locked": false,
            "properties": b.get("properties").cloned().unwrap_or(json!({})),
            "url": format!("https://www.notion.so/Payment-failed-{}", NEW_PAGE.replace('-', "")),
            "public_url": null
        }),
    )
}

/// The appended blocks, as Notion lists them.
fn appended(r: &Request) -> Reply {
    let parent = r.params["block_id"].clone();
    let results: Vec<Value> = r.json()["children"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, mut b)| {
            b["object"] = json!("block");
            b["id"] = json!(format!("c02fc1d3-db8b-45c5-a222-27595b15aea{i}"));
            b["parent"] = json!({"type": "page_id", "page_id": parent});
            b["has_children"] = json!(false);
            b["archived"] = json!(false);
            b["in_trash"] = json!(false);
            b
        })
        .collect();
    Reply::json(
        200,
        json!({
            "object": "list",
            "results": results,
            "next_cursor": null,
            "has_more": false,
            "type": "block",
            "block": {}
        }),
    )
}

pub fn routes() -> Vec<Route> {
    vec![
        common(Route::post("/v1/pages"))
            .json_fields(&["parent"])
            .json_only(&[
                "parent",
                "properties",
                "icon",
                "cover",
                "content",
                "children",
                "markdown",
                "template",
                "position",
            ])
            .check(check_page)
            .reply(page),
        common(Route::new("PATCH", "/v1/blocks/{block_id}/children"))
            .json_fields(&["children"])
            .json_only(&["children", "after", "position"])
            .check(|r| {
                let b = r.json();
                if b.get("after").is_some_and(|a| !a.is_string()) {
                    return Err("`after` must be a block ID".into());
                }
                blocks(&b["children"], 100)
            })
            .reply(appended),
    ]
}
