//! Twilio's stand-in, per Twilio's API reference:
//!
//! - Create a Message resource (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource,
//!   and Twilio's OpenAPI description `twilio_api_v2010.json`, operation
//!   `CreateMessage`): `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//!   HTTP Basic auth with the Account SID and Auth Token, a form body
//!   (`application/x-www-form-urlencoded`) with `To` required, one of
//!   `From`/`MessagingServiceSid` (`^MG[0-9a-fA-F]{32}$`) and one of
//!   `Body`/`MediaUrl`/`ContentSid` (`^HX[0-9a-fA-F]{32}$`);
//!   `ContentVariables` is JSON text and goes with `ContentSid`. Success is
//!   `201` with the Message resource, as in the reference's example
//!   (`sid`, `status: queued`, `to`, `from`, `body`, …).
//! - WhatsApp (https://www.twilio.com/docs/whatsapp/api): the same call,
//!   with `To` and `From` as channel addresses `whatsapp:+E.164`.
//! - Errors (https://www.twilio.com/docs/usage/twilios-response): JSON
//!   `{"code", "message", "more_info", "status"}`. A `To` that is no E.164
//!   number is `400` code 21211 "Invalid 'To' Phone Number"
//!   (https://www.twilio.com/docs/api/errors/21211); bad credentials are
//!   `401` code 20003 "Authenticate" (https://www.twilio.com/docs/api/errors/20003);
//!   too many concurrent requests are `429` code 20429 "Too Many Requests"
//!   (https://www.twilio.com/docs/api/errors/20429), without Retry-After.
//!   The messages are the titles of Twilio's error dictionary; the live API
//!   may word them differently.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const AUTH_TOKEN: &str = "6c1ee4b1a0f24b2f9d3e7a55c0ffee42";
pub const MESSAGES: &str = "POST /2010-04-01/Accounts/{account_sid}/Messages.json";
pub const MESSAGE_SID: &str = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Every field of `CreateMessage` the reference lists.
const FIELDS: &[&str] = &[
    "To",
    "StatusCallback",
    "ApplicationSid",
    "MaxPrice",
    "ProvideFeedback",
    "Attempt",
    "ValidityPeriod",
    "ForceDelivery",
    "ContentRetention",
    "AddressRetention",
    "SmartEncoded",
    "PersistentAction",
    "TrafficType",
    "ShortenUrls",
    "ScheduleType",
    "SendAt",
    "SendAsMms",
    "ContentVariables",
    "RiskCheck",
    "From",
    "FallbackFrom",
    "MessagingServiceSid",
    "Body",
    "MediaUrl",
    "ContentSid",
];

/// Twilio's error body.
pub fn error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status
        }),
    )
}

pub fn authenticate() -> Reply {
    error(401, 20003, "Authenticate")
}

pub fn invalid_to() -> Reply {
    error(400, 21211, "Invalid 'To' Phone Number")
}

pub fn too_many_requests() -> Reply {
    error(429, 20429, "Too Many Requests")
}

/// `+` and 2 to 15 digits, the first not 0.
fn e164(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// A phone number, or a channel address such as `whatsapp:+E.164`.
fn address(a: &str) -> bool {
    e164(a.strip_prefix("whatsapp:").unwrap_or(a))
}

/// `prefix` and 32 hex digits: a Twilio SID.
fn sid(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

fn shape(r: &Request) -> Result<(), String> {
    let form = r.form();
    for k in form.keys() {
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!("form field `{k}` is not part of CreateMessage"));
        }
    }
    let has = |k: &str| form.get(k).is_some_and(|v| !v.is_empty());
    if !has("From") && !has("MessagingServiceSid") {
        return Err("one of `From` or `MessagingServiceSid` is required".into());
    }
    if !has("Body") && !has("MediaUrl") && !has("ContentSid") {
        return Err("one of `Body`, `MediaUrl` or `ContentSid` is required".into());
    }
    if let Some(m) = form.get("MessagingServiceSid") {
        if !sid(m, "MG") {
            return Err(format!(
                "`MessagingServiceSid` must match ^MG[0-9a-fA-F]{{32}}$, got {m}"
            ));
        }
    }
    if let Some(c) = form.get("ContentSid") {
        if !sid(c, "HX") {
            return Err(format!(
                "`ContentSid` must match ^HX[0-9a-fA-F]{{32}}$, got {c}"
            ));
        }
    }
    if let Some(v) = form.get("ContentVariables") {
        if !has("ContentSid") {
            return Err("`ContentVariables` goes with `ContentSid`".into());
        }
        match serde_json::from_str::<Value>(v) {
            Ok(Value::Object(_)) => {}
            _ => return Err(format!("`ContentVariables` must be a JSON object, got {v}")),
        }
    }
    for flag in [
        "SendAsMms",
        "ShortenUrls",
        "ProvideFeedback",
        "SmartEncoded",
    ] {
        if let Some(v) = form.get(flag) {
            if v != "true" && v != "false" {
                return Err(format!("`{flag}` must be true or false, got {v}"));
            }
        }
    }
    if let Some(v) = form.get("ValidityPeriod") {
        if !v.parse::<u32>().is_ok_and(|n| (1..=36000).contains(&n)) {
            return Err(format!("`ValidityPeriod` must be 1 to 36000, got {v}"));
        }
    }
    if let Some(from) = form.get("From") {
        // A WhatsApp message goes from a WhatsApp sender.
        let to = form.get("To").map(String::as_str).unwrap_or_default();
        if to.starts_with("whatsapp:") != from.starts_with("whatsapp:") {
            return Err(format!(
                "`To` ({to}) and `From` ({from}) must be on the same channel"
            ));
        }
    }
    Ok(())
}

/// The Message resource Twilio answers with, per the reference's example.
pub fn created(r: &Request) -> Reply {
    let form = r.form();
    let account = &r.params["account_sid"];
    let get = |k: &str| form.get(k).cloned().map_or(Value::Null, Value::String);
    Reply::json(
        201,
        json!({
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": get("Body"),
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_sent": null,
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": get("From"),
            "messaging_service_sid": get("MessagingServiceSid"),
            "num_media": if form.contains_key("MediaUrl") { "1" } else { "0" },
            "num_segments": "1",
            "price": null,
            "price_unit": null,
            "sid": MESSAGE_SID,
            "status": "queued",
            "subresource_uris": {
                "media": format!("/2010-04-01/Accounts/{account}/Messages/{MESSAGE_SID}/Media.json")
            },
            "to": get("To"),
            "uri": format!("/2010-04-01/Accounts/{account}/Messages/{MESSAGE_SID}.json")
        }),
    )
}

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/2010-04-01/Accounts/{account_sid}/Messages.json")
            .auth(
                |r| {
                    r.basic() == Some((ACCOUNT_SID.to_string(), AUTH_TOKEN.to_string()))
                        && r.params["account_sid"] == ACCOUNT_SID
                },
                |_| authenticate(),
            )
            .content_type("application/x-www-form-urlencoded")
            .form_fields(&["To"])
            .check(shape)
            .reply(|r| {
                // Twilio checks the number itself: an answer, not a mistake
                // of the request's shape.
                match r.form().get("To") {
                    Some(to) if address(to) => created(r),
                    _ => invalid_to(),
                }
            }),
    ]
}
