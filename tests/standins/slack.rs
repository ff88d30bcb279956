//! Slack's stand-in, per Slack's API reference:
//!
//! - `chat.postMessage` (https://docs.slack.dev/reference/methods/chat.postMessage):
//!   `POST /chat.postMessage`, the token as `Authorization: Bearer`, a JSON
//!   body (`application/json`) with `channel` required. Slack answers HTTP
//!   200 with `{"ok": true, "channel", "ts", "message"}`, and reports errors
//!   in the body with HTTP 200 too: `{"ok": false, "error":
//!   "channel_not_found"}`; a bad token is `invalid_auth`; rate limiting is
//!   HTTP 429 with `Retry-After` and `"error": "ratelimited"`.
//! - Incoming webhooks (https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks):
//!   `POST` a JSON body with `text` to the webhook's own URL; no
//!   `Authorization` (the URL is the credential). Success is HTTP 200 with
//!   the text body `ok`; errors are statuses with a text body:
//!   `400 invalid_payload`, `400 no_text`, `403 action_prohibited`,
//!   `404 no_service`, `404 channel_not_found`, `410 channel_is_archived`.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Route};
use serde_json::json;

pub const TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
pub const POST_MESSAGE: &str = "POST /chat.postMessage";
pub const WEBHOOK: &str = "POST /services/{team}/{bot}/{secret}";

/// Slack's documented success answer to `chat.postMessage`.
pub fn posted(channel: &str, text: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "ok": true,
            "channel": channel,
            "ts": "1503435956.000247",
            "message": {
                "text": text,
                "username": "ecto1",
                "bot_id": "B123ABC456",
                "type": "message",
                "subtype": "bot_message",
                "ts": "1503435956.000247"
            }
        }),
    )
}

/// A Web API error: HTTP 200 with `ok: false`.
pub fn web_error(error: &str) -> Reply {
    Reply::json(200, json!({ "ok": false, "error": error }))
}

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/chat.postMessage")
            .bearer(TOKEN, web_error("invalid_auth"))
            .content_type("application/json")
            .json_fields(&["channel"])
            .json_only(&[
                "channel",
                "text",
                "blocks",
                "attachments",
                "thread_ts",
                "reply_broadcast",
                "unfurl_links",
                "unfurl_media",
                "icon_emoji",
                "username",
                "mrkdwn",
            ])
            .check(|r| {
                let b = r.json();
                if b.get("text").is_none() && b.get("blocks").is_none() {
                    return Err("one of `text` or `blocks` is required".into());
                }
                match b.get("blocks") {
                    None => Ok(()),
                    Some(v) if v.is_array() => Ok(()),
                    Some(v) => Err(format!("`blocks` must be an array, got {v}")),
                }
            })
            .reply(|r| {
                let b = r.json();
                posted(
                    b["channel"].as_str().unwrap_or_default(),
                    b["text"].as_str().unwrap_or_default(),
                )
            }),
        Route::post("/services/{team}/{bot}/{secret}")
            .check(|r| match r.header("authorization") {
                None => Ok(()),
                Some(_) => Err("incoming webhooks take no Authorization header".into()),
            })
            .content_type("application/json")
            .check(|r| {
                let b = r.json();
                if b.get("text").is_none() && b.get("blocks").is_none() {
                    return Err("`text` (or `blocks`) is required".into());
                }
                Ok(())
            })
            .reply(|_| Reply::text(200, "ok")),
    ]
}
