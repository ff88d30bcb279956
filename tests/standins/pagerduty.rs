//! PagerDuty's stand-in, per the Events API v2 reference:
//!
//! - Send an alert event (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/,
//!   OpenAPI: PagerDuty/api-schema `reference/events-v2/openapiv3.json`):
//!   `POST /v2/enqueue`, a JSON body, no `Authorization` (the 32-character
//!   `routing_key` in the body is the credential); `routing_key` and
//!   `event_action` (`trigger`, `acknowledge`, `resolve`) required;
//!   `dedup_key` at most 255 characters, required unless the action is
//!   `trigger`; a trigger needs `payload` with `summary` (at most 1024
//!   characters), `source` and `severity` (`critical`, `error`,
//!   `warning`, `info`), and may carry `timestamp`, `component`, `group`,
//!   `class`, `custom_details` (an object), `images` ([{src, href, alt}],
//!   `src` required), `links` ([{href, text}], `href` required), `client`
//!   and `client_url`.
//! - Answers (https://developer.pagerduty.com/docs/events-api-v2/overview/):
//!   `202 {"status": "success", "message": "Event processed", "dedup_key"}`
//!   (PagerDuty makes a dedup_key up for a trigger without one); `400
//!   {"status": "invalid event", "message": "Event object is invalid",
//!   "errors": ["Length of 'routing_key' is incorrect (should be 32
//!   characters)"]}`; `429` when an integration key sends more than about
//!   120 events a minute (https://developer.pagerduty.com/docs/events-api-v2/rate-limits/,
//!   "429 - Request Limit Exceeded", no body or Retry-After documented).
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

/// An Events API v2 integration key: 32 characters.
pub const ROUTING_KEY: &str = "e93facc04764012d7bfb002500d5d1a6";
pub const ENQUEUE: &str = "POST /v2/enqueue";
/// The key PagerDuty makes up for a trigger without a dedup_key.
pub const MADE_UP_DEDUP_KEY: &str = "6d3b1c0e0f8a4b7c9e2d5a4f3b2c1d0e";

const ACTIONS: [&str; 3] = ["trigger", "acknowledge", "resolve"];
const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
const PAYLOAD_FIELDS: [&str; 8] = [
    "summary",
    "timestamp",
    "severity",
    "source",
    "component",
    "group",
    "class",
    "custom_details",
];

/// PagerDuty's documented success answer.
pub fn processed(dedup_key: &str) -> Reply {
    Reply::json(
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    )
}

/// PagerDuty's documented `400`, for a routing key of the wrong length.
pub fn invalid_routing_key() -> Reply {
    Reply::json(
        400,
        json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"]
        }),
    )
}

/// PagerDuty's rate-limit answer: the status alone.
pub fn request_limit_exceeded() -> Reply {
    Reply::empty(429)
}

fn text_at_most(v: Option<&Value>, field: &str, max: usize) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(()),
        Some(other) => Err(format!(
            "`{field}` must be text of at most {max} characters, got {other}"
        )),
    }
}

fn items_with(v: Option<&Value>, field: &str, required: &str) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(Value::Array(items)) => {
            for item in items {
                if !item.get(required).is_some_and(Value::is_string) {
                    return Err(format!("each of `{field}` needs `{required}`, got {item}"));
                }
            }
            Ok(())
        }
        Some(other) => Err(format!("`{field}` must be an array, got {other}")),
    }
}

fn event(r: &Request) -> Result<(), String> {
    let b = r.json();
    let action = b["event_action"].as_str().unwrap_or_default();
    if !ACTIONS.contains(&action) {
        return Err(format!(
            "`event_action` must be one of {ACTIONS:?}, got {action:?}"
        ));
    }
    text_at_most(b.get("dedup_key"), "dedup_key", 255)?;
    if action != "trigger" {
        if b.get("dedup_key").is_none() {
            return Err(format!("`dedup_key` is required to {action}"));
        }
        return Ok(());
    }
    let Some(payload) = b.get("payload").and_then(Value::as_object) else {
        return Err("a trigger needs a `payload` object".into());
    };
    for (k, v) in payload {
        if !PAYLOAD_FIELDS.contains(&k.as_str()) {
            return Err(format!("`payload.{k}` is not part of this API"));
        }
        if v.is_null() {
            return Err(format!("`payload.{k}` is null"));
        }
    }
    for f in ["summary", "source", "severity"] {
        if !payload.get(f).is_some_and(Value::is_string) {
            return Err(format!("`payload.{f}` is required"));
        }
    }
    text_at_most(payload.get("summary"), "payload.summary", 1024)?;
    let severity = payload["severity"].as_str().unwrap_or_default();
    if !SEVERITIES.contains(&severity) {
        return Err(format!(
            "`payload.severity` must be one of {SEVERITIES:?}, got {severity:?}"
        ));
    }
    if payload
        .get("custom_details")
        .is_some_and(|v| !v.is_object())
    {
        return Err("`payload.custom_details` must be an object".into());
    }
    items_with(b.get("images"), "images", "src")?;
    items_with(b.get("links"), "links", "href")
}

pub fn routes() -> Vec<Route> {
    vec![Route::post("/v2/enqueue")
        // The routing key is the credential; one of the wrong length gets
        // PagerDuty's documented answer.
        .auth(
            |r| {
                r.json()["routing_key"]
                    .as_str()
                    .is_some_and(|k| k.len() == 32)
            },
            |_| invalid_routing_key(),
        )
        .check(|r| match r.header("authorization") {
            None => Ok(()),
            Some(_) => Err("the Events API takes no Authorization header".into()),
        })
        .content_type("application/json")
        .json_fields(&["routing_key", "event_action"])
        .json_only(&[
            "routing_key",
            "event_action",
            "dedup_key",
            "payload",
            "images",
            "links",
            "client",
            "client_url",
        ])
        .check(|r| match r.json()["routing_key"].as_str() {
            Some(ROUTING_KEY) => Ok(()),
            other => Err(format!(
                "routing_key must be the integration's key, got {other:?}"
            )),
        })
        .check(event)
        .reply(|r| processed(r.json()["dedup_key"].as_str().unwrap_or(MADE_UP_DEDUP_KEY)))]
}
