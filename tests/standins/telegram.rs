//! Telegram's stand-in, per the Bot API reference
//! (https://core.telegram.org/bots/api):
//!
//! - Making requests (https://core.telegram.org/bots/api#making-requests):
//!   `https://api.telegram.org/bot<token>/METHOD`, the token in the path
//!   (no `Authorization`), parameters as JSON (`application/json`). The
//!   answer is `{"ok": true, "result"}`, or `{"ok": false, "error_code",
//!   "description", "parameters"?}` with the HTTP status of `error_code`.
//!   The Bot API server percent-decodes the path before it reads the token
//!   (tdlib `HttpReader::parse_url`), as this stand-in's routes do. A token
//!   it does not know is `401 Unauthorized`.
//! - sendMessage (https://core.telegram.org/bots/api#sendmessage):
//!   `chat_id` (Integer or String) and `text` (1-4096 characters)
//!   required; `parse_mode` (`MarkdownV2`, `HTML`, `Markdown`),
//!   `entities`, `link_preview_options`, `disable_notification`,
//!   `protect_content`, `message_thread_id`, `reply_parameters`,
//!   `reply_markup`, among others; the sent Message is the result.
//! - sendPhoto (https://core.telegram.org/bots/api#sendphoto): `chat_id`
//!   and `photo` (a file_id or an HTTP URL; an upload needs multipart)
//!   required; `caption` (0-1024 characters), `parse_mode`,
//!   `caption_entities`, `show_caption_above_media`, `has_spoiler`, …;
//!   the result is the Message with its `photo` sizes.
//! - Flood control: `429 {"ok": false, "error_code": 429, "description":
//!   "Too Many Requests: retry after N", "parameters": {"retry_after": N}}`
//!   (ResponseParameters, https://core.telegram.org/bots/api#responseparameters),
//!   with `Retry-After: N` (tdlib/telegram-bot-api `HttpConnection::send_response`).
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
pub const SEND_MESSAGE: &str = "POST /{bot}/sendMessage";
pub const SEND_PHOTO: &str = "POST /{bot}/sendPhoto";

/// The fields of sendMessage.
const MESSAGE_FIELDS: &[&str] = &[
    "business_connection_id",
    "chat_id",
    "message_thread_id",
    "text",
    "parse_mode",
    "entities",
    "link_preview_options",
    "disable_notification",
    "protect_content",
    "allow_paid_broadcast",
    "message_effect_id",
    "reply_parameters",
    "reply_markup",
];

/// The fields of sendPhoto (a photo given by URL or file_id).
const PHOTO_FIELDS: &[&str] = &[
    "business_connection_id",
    "chat_id",
    "message_thread_id",
    "photo",
    "caption",
    "parse_mode",
    "caption_entities",
    "show_caption_above_media",
    "has_spoiler",
    "disable_notification",
    "protect_content",
    "allow_paid_broadcast",
    "message_effect_id",
    "reply_parameters",
    "reply_markup",
];

/// An unsuccessful request, as Telegram answers it.
pub fn error(code: u16, description: &str) -> Reply {
    Reply::json(
        code,
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

/// Flood control: the wait in the body and in `Retry-After`.
pub fn too_many_requests(seconds: u64) -> Reply {
    Reply::json(
        429,
        json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {seconds}"),
            "parameters": {"retry_after": seconds}
        }),
    )
    .with_header("Retry-After", &seconds.to_string())
}

/// The chat a message went to, as the Message's `chat` shows it.
fn chat(id: &Value) -> Value {
    match id.as_str().map(|s| s.parse::<i64>()) {
        Some(Ok(n)) if n < 0 => json!({"id": n, "title": "Ops", "type": "supergroup"}),
        Some(Ok(n)) => json!({"id": n, "first_name": "Ada", "type": "private"}),
        _ => {
            json!({"id": -1001234567890_i64, "title": "Announcements", "username": id.as_str().unwrap_or_default().trim_start_matches('@'), "type": "channel"})
        }
    }
}

fn message(r: &Request, extra: Value) -> Reply {
    let b = r.json();
    let mut m = json!({
        "message_id": 1001,
        "from": {"id": 123456789, "is_bot": true, "first_name": "Hookflow", "username": "hookflow_bot"},
        "chat": chat(&b["chat_id"]),
        "date": 1_700_000_000
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    Reply::json(200, json!({"ok": true, "result": m}))
}

/// `chat_id`: an integer, digits as text (what a JSON body of text
/// parameters holds), or a channel's `@username`.
fn chat_id(r: &Request) -> Result<(), String> {
    match &r.json()["chat_id"] {
        Value::Number(n) if n.is_i64() => Ok(()),
        Value::String(s) if s.parse::<i64>().is_ok() || s.starts_with('@') => Ok(()),
        other => Err(format!(
            "chat_id must be an integer or @channelusername, got {other}"
        )),
    }
}

fn text_len(r: &Request, field: &str, min: usize, max: usize) -> Result<(), String> {
    match r.json().get(field) {
        None if min == 0 => Ok(()),
        Some(Value::String(s)) if (min..=max).contains(&s.chars().count()) => Ok(()),
        other => Err(format!(
            "`{field}` must be {min}-{max} characters, got {other:?}"
        )),
    }
}

fn parse_mode(r: &Request) -> Result<(), String> {
    match r.json().get("parse_mode").map(|v| v.as_str()) {
        None | Some(Some("MarkdownV2" | "HTML" | "Markdown")) => Ok(()),
        Some(other) => Err(format!("unknown parse_mode {other:?}")),
    }
}

fn kinds(r: &Request, objects: &[&str], arrays: &[&str], booleans: &[&str]) -> Result<(), String> {
    let b = r.json();
    let wrong = |f: &&str, ok: fn(&Value) -> bool| b.get(*f).is_some_and(|v| !ok(v));
    if let Some(f) = objects.iter().find(|f| wrong(f, Value::is_object)) {
        return Err(format!("`{f}` must be a JSON object"));
    }
    if let Some(f) = arrays.iter().find(|f| wrong(f, Value::is_array)) {
        return Err(format!("`{f}` must be an array"));
    }
    if let Some(f) = booleans.iter().find(|f| wrong(f, Value::is_boolean)) {
        return Err(format!("`{f}` must be true or false"));
    }
    if wrong(&"message_thread_id", |v| v.is_i64()) {
        return Err("`message_thread_id` must be an integer".into());
    }
    Ok(())
}

/// A bot route: the token in the first path segment, `bot<token>`.
fn bot(method: &str) -> Route {
    Route::post(&format!("/{{bot}}/{method}"))
        .auth(
            |r| {
                r.params
                    .get("bot")
                    .is_some_and(|b| *b == format!("bot{TOKEN}"))
            },
            |_| error(401, "Unauthorized"),
        )
        .check(|r| match r.header("authorization") {
            None => Ok(()),
            Some(_) => Err("the Bot API takes the token in the path, not a header".into()),
        })
        .content_type("application/json")
        .check(chat_id)
        .check(parse_mode)
}

pub fn routes() -> Vec<Route> {
    vec![
        bot("sendMessage")
            .json_fields(&["chat_id", "text"])
            .json_only(MESSAGE_FIELDS)
            .check(|r| text_len(r, "text", 1, 4096))
            .check(|r| {
                kinds(
                    r,
                    &["link_preview_options", "reply_parameters", "reply_markup"],
                    &["entities"],
                    &["disable_notification", "protect_content"],
                )
            })
            .reply(|r| message(r, json!({"text": r.json()["text"]}))),
        bot("sendPhoto")
            .json_fields(&["chat_id", "photo"])
            .json_only(PHOTO_FIELDS)
            .check(|r| text_len(r, "caption", 0, 1024))
            .check(|r| {
                kinds(
                    r,
                    &["reply_parameters", "reply_markup"],
                    &["caption_entities"],
                    &[
                        "show_caption_above_media",
                        "has_spoiler",
                        "disable_notification",
                        "protect_content",
                    ],
                )
            })
            .reply(|r| {
                let b = r.json();
                let mut extra = json!({"photo": [
                    {"file_id": "AgACAgQAAxkDAAIBaWYx", "file_unique_id": "AQADb7ExG1", "file_size": 1453, "width": 90, "height": 60},
                    {"file_id": "AgACAgQAAxkDAAIBaWYy", "file_unique_id": "AQADb7ExG2", "file_size": 48211, "width": 800, "height": 533}
                ]});
                if let (Some(m), Some(c)) = (extra.as_object_mut(), b.get("caption")) {
                    m.insert("caption".into(), c.clone());
                }
                message(r, extra)
            }),
    ]
}
