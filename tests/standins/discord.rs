//! Discord's stand-in, per Discord's API reference:
//!
//! - Execute Webhook (https://discord.com/developers/docs/resources/webhook#execute-webhook):
//!   `POST /webhooks/{webhook.id}/{webhook.token}` (under
//!   `https://discord.com/api`), no `Authorization` (the token is in the
//!   path), a JSON body; query `wait` (with `true` the answer is `200`
//!   with the saved message, else `204`) and `thread_id`; at least one of
//!   `content` (up to 2000 characters), `embeds` (up to 10), `components`,
//!   files or `poll`; also `username`, `avatar_url`, `tts`,
//!   `allowed_mentions`, `flags`, `thread_name`, `applied_tags`,
//!   `attachments`.
//! - Errors (https://discord.com/developers/docs/topics/opcodes-and-status-codes#json):
//!   `{"message", "code"}`, e.g. `50006 Cannot send an empty message`,
//!   `50027 Invalid Webhook Token`, `10015 Unknown Webhook`, and `50035
//!   Invalid Form Body` with an `errors` object.
//! - Rate limits (https://discord.com/developers/docs/topics/rate-limits):
//!   `429 {"message": "You are being rate limited.", "retry_after",
//!   "global"}` with `Retry-After` and the X-RateLimit headers.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const WEBHOOK_ID: &str = "1187263540293054464";
pub const WEBHOOK_TOKEN: &str = "eB3kTq9V0xLrM2pN8sYwZ1aC4dF6gH7jK5lQ0uI9oP3rT6vX8yA2bD4eG7hJ1mN5";
pub const EXECUTE: &str = "POST /api/webhooks/{id}/{token}";

const FIELDS: &[&str] = &[
    "content",
    "username",
    "avatar_url",
    "tts",
    "embeds",
    "allowed_mentions",
    "components",
    "attachments",
    "flags",
    "thread_name",
    "applied_tags",
    "poll",
];

/// A Discord error answer.
pub fn error(status: u16, code: u64, message: &str) -> Reply {
    Reply::json(status, json!({"message": message, "code": code}))
}

/// `50035 Invalid Form Body`, with the field's errors.
pub fn invalid_form_body(field: &str, code: &str, message: &str) -> Reply {
    Reply::json(
        400,
        json!({
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": {field: {"_errors": [{"code": code, "message": message}]}}
        }),
    )
}

/// Discord's rate-limit answer.
pub fn rate_limited(seconds: u64) -> Reply {
    Reply::json(
        429,
        json!({"message": "You are being rate limited.", "retry_after": seconds as f64 - 0.43, "global": false}),
    )
    .with_header("Retry-After", &seconds.to_string())
    .with_header("X-RateLimit-Limit", "5")
    .with_header("X-RateLimit-Remaining", "0")
    .with_header("X-RateLimit-Scope", "shared")
}

/// The message Discord saved, as `wait=true` returns it.
fn saved(r: &Request) -> Reply {
    let b = r.json();
    Reply::json(
        200,
        json!({
            "id": "1187263811362537502",
            "type": 0,
            "content": b.get("content").cloned().unwrap_or(json!("")),
            "channel_id": r.query.get("thread_id").cloned().unwrap_or("1101092342535983194".into()),
            "author": {
                "bot": true,
                "id": WEBHOOK_ID,
                "username": b.get("username").cloned().unwrap_or(json!("Hookflow")),
                "avatar": null,
                "discriminator": "0000"
            },
            "attachments": [],
            "embeds": b.get("embeds").cloned().unwrap_or(json!([])),
            "mentions": [],
            "mention_roles": [],
            "pinned": false,
            "mention_everyone": false,
            "tts": b.get("tts").cloned().unwrap_or(json!(false)),
            "timestamp": "2024-12-20T10:15:42.190000+00:00",
            "edited_timestamp": null,
            "flags": b.get("flags").cloned().unwrap_or(json!(0)),
            "components": [],
            "webhook_id": WEBHOOK_ID
        }),
    )
}

fn message(r: &Request) -> Result<(), String> {
    let b = r.json();
    if ["content", "embeds", "components", "poll"]
        .iter()
        .all(|f| b.get(*f).is_none())
    {
        return Err("one of content, embeds, components, file or poll is required".into());
    }
    if let Some(c) = b.get("content") {
        match c.as_str() {
            Some(s) if s.chars().count() <= 2000 => {}
            _ => {
                return Err(format!(
                    "`content` must be text of at most 2000 characters, got {c}"
                ))
            }
        }
    }
    match b.get("embeds") {
        None => {}
        Some(Value::Array(e)) if e.len() <= 10 => {}
        Some(other) => {
            return Err(format!(
                "`embeds` must be an array of at most 10, got {other}"
            ))
        }
    }
    for f in ["allowed_mentions", "poll"] {
        if b.get(f).is_some_and(|v| !v.is_object()) {
            return Err(format!("`{f}` must be an object"));
        }
    }
    if b.get("tts").is_some_and(|v| !v.is_boolean()) {
        return Err("`tts` must be true or false".into());
    }
    if b.get("flags").is_some_and(|v| !v.is_u64()) {
        return Err("`flags` must be an integer".into());
    }
    Ok(())
}

pub fn routes() -> Vec<Route> {
    vec![Route::post("/api/webhooks/{id}/{token}")
        .auth(
            |r| r.params["id"] == WEBHOOK_ID && r.params["token"] == WEBHOOK_TOKEN,
            |r| {
                if r.params["id"] == WEBHOOK_ID {
                    error(401, 50027, "Invalid Webhook Token")
                } else {
                    error(404, 10015, "Unknown Webhook")
                }
            },
        )
        .check(|r| match r.header("authorization") {
            None => Ok(()),
            Some(_) => Err("executing a webhook takes no Authorization header".into()),
        })
        .content_type("application/json")
        .query("wait", "true")
        .json_only(FIELDS)
        .check(message)
        .reply(saved)]
}
