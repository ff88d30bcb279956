//! Microsoft Teams' stand-in, per the Teams platform reference:
//!
//! - Send Adaptive Cards using an Incoming Webhook
//!   (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook):
//!   `POST` to the webhook's own URL, no `Authorization` (the URL is the
//!   credential), a JSON body whose `type` is `message` and whose
//!   `attachments` hold cards with `contentType`
//!   `application/vnd.microsoft.card.adaptive` and the Adaptive Card in
//!   `content` (`type: AdaptiveCard`, `version`, `body`).
//! - An Incoming Webhook connector (`/webhookb2/…/IncomingWebhook/…`)
//!   answers `200` with the body `1`. It reports throttling with a `200`
//!   too, the reason in the body: "connectors do not throw 429s"; the
//!   reference's retry example looks for "Microsoft Teams endpoint
//!   returned HTTP error 429" in it (Rate limiting for connectors, same
//!   page).
//! - A Workflows webhook (`/workflows/{id}/triggers/manual/paths/invoke`
//!   with `api-version`, `sp`, `sv`, `sig` in the query) accepts the same
//!   body; it answers `202 Accepted` with no body (the Power Automate
//!   request trigger's answer, not spelled out by the Teams reference),
//!   and refuses with Azure's `{"error": {"code", "message"}}`.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::Value;

pub const CONNECTOR: &str = "POST /webhookb2/{group}/IncomingWebhook/{id}/{owner}";
pub const WORKFLOW: &str = "POST /workflows/{id}/triggers/manual/paths/invoke";
/// A connector webhook's path under the stand-in.
pub const CONNECTOR_PATH: &str = "/webhookb2/2a7f6d11-4c7b-4b5e-9a52-0c6f5bde7e21@72f988bf-86f1-41af-91ab-2d7cd011db47/IncomingWebhook/5f2c9e0d4b8a4f1c9d7e3b6a1c0f8e2d/8c3b9e4f-1a2d-4e5f-9b8c-7d6e5f4a3b2c";
/// A Workflows webhook's path and query under the stand-in.
pub const WORKFLOW_PATH: &str = "/workflows/0f8e2d5c1b7a4e9d8c3b6a5f4e3d2c1b/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Q2h5Z3JhbV9zaWduYXR1cmVfZm9yX3Rlc3Rz";
/// The secret part of each URL, to look for leaks.
pub const CONNECTOR_SECRET: &str = "5f2c9e0d4b8a4f1c9d7e3b6a1c0f8e2d";
pub const WORKFLOW_SECRET: &str = "Q2h5Z3JhbV9zaWduYXR1cmVfZm9yX3Rlc3Rz";

pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// What a connector webhook answers when it is throttled: a `200` whose
/// body names the 429.
pub fn throttled() -> Reply {
    Reply::text(
        200,
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef.0..",
    )
}

/// An Azure refusal, as a Workflows webhook answers one.
pub fn workflow_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// The message: `type: message` and Adaptive Card attachments.
fn message(r: &Request) -> Result<(), String> {
    let b = r.json();
    if b["type"] != "message" {
        return Err(format!("`type` must be \"message\", got {}", b["type"]));
    }
    let Some(attachments) = b["attachments"].as_array().filter(|a| !a.is_empty()) else {
        return Err("`attachments` must be a non-empty array of cards".into());
    };
    for a in attachments {
        if a["contentType"] != ADAPTIVE_CARD {
            return Err(format!(
                "`contentType` must be {ADAPTIVE_CARD}, got {}",
                a["contentType"]
            ));
        }
        let card = &a["content"];
        if card["type"] != "AdaptiveCard" {
            return Err(format!("`content` must be an AdaptiveCard, got {card}"));
        }
        if !card["version"].is_string() {
            return Err("the card needs a `version`".into());
        }
        if !card["body"].is_array() {
            return Err("the card's `body` must be an array".into());
        }
        if let Some(Value::Array(items)) = card.get("body") {
            if items.iter().any(|i| !i["type"].is_string()) {
                return Err(format!("each card element needs a `type`: {card}"));
            }
        }
    }
    Ok(())
}

fn common(route: Route) -> Route {
    route
        .check(|r| match r.header("authorization") {
            None => Ok(()),
            Some(_) => Err("an incoming webhook takes no Authorization header".into()),
        })
        .content_type("application/json")
        .check(message)
}

pub fn routes() -> Vec<Route> {
    vec![
        common(Route::post(
            "/webhookb2/{group}/IncomingWebhook/{id}/{owner}",
        ))
        .reply(|_| Reply::text(200, "1")),
        common(Route::post("/workflows/{id}/triggers/manual/paths/invoke"))
            .query("api-version", "2016-06-01")
            .query("sp", "/triggers/manual/run")
            .query("sv", "1.0")
            .check(|r| match r.query.get("sig") {
                Some(s) if !s.is_empty() => Ok(()),
                _ => Err("a Workflows webhook URL carries its `sig`".into()),
            })
            .reply(|_| Reply::empty(202)),
    ]
}
