//! Twilio SendGrid's stand-in, per SendGrid's v3 API reference (and its
//! OpenAPI files, twilio/sendgrid-oai `spec/yaml/tsg_mail_v3.yaml` and
//! `tsg_mc_contacts_v3.yaml`); every request carries the API key as
//! `Authorization: Bearer` and a JSON body:
//!
//! - Mail Send (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send):
//!   `POST /v3/mail/send`; `personalizations` (1-1000, each with `to`:
//!   [{email, name?}], and `cc`, `bcc`, `subject`, `headers`,
//!   `substitutions`, `dynamic_template_data`, `custom_args`, `send_at`,
//!   `from`) and `from` ({email, name?}) required; `reply_to`,
//!   `reply_to_list`, `subject`, `content` ([{type, value}], each
//!   non-empty), `attachments`, `template_id`, `headers`, `categories`
//!   (at most 10), `custom_args`, `send_at`, `batch_id`, `asm`,
//!   `ip_pool_name`, `mail_settings`, `tracking_settings`. Without a
//!   template, `subject` and `content` are needed. `202` with no body.
//! - Add or Update a Contact (https://www.twilio.com/docs/sendgrid/api-reference/contacts/add-or-update-a-contact):
//!   `PUT /v3/marketing/contacts`; `contacts` (1-30000, each with one of
//!   `email`, `phone_number_id`, `external_id`, `anonymous_id`) required,
//!   `list_ids`; `202 {"job_id"}`.
//! - Errors (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors):
//!   `{"errors": [{"field", "message", "help"?}]}`; `401 authorization
//!   required`; rate limits (…/rate-limits) are `429 {"errors": [{"field":
//!   null, "message": "too many requests"}]}` with X-RateLimit-Limit,
//!   -Remaining and -Reset and no Retry-After.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Map, Value};

pub const API_KEY: &str = "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";
pub const MAIL_SEND: &str = "POST /v3/mail/send";
pub const CONTACTS: &str = "PUT /v3/marketing/contacts";
pub const JOB_ID: &str = "c7a5b3e1-2f4d-4a6b-9c8d-0e1f2a3b4c5d";

const MAIL_FIELDS: &[&str] = &[
    "personalizations",
    "from",
    "reply_to",
    "reply_to_list",
    "subject",
    "content",
    "attachments",
    "template_id",
    "headers",
    "categories",
    "custom_args",
    "send_at",
    "batch_id",
    "asm",
    "ip_pool_name",
    "mail_settings",
    "tracking_settings",
];

const PERSONALIZATION_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "headers",
    "substitutions",
    "dynamic_template_data",
    "custom_args",
    "send_at",
];

const CONTACT_FIELDS: &[&str] = &[
    "address_line_1",
    "address_line_2",
    "alternate_emails",
    "city",
    "country",
    "email",
    "phone_number_id",
    "external_id",
    "anonymous_id",
    "first_name",
    "last_name",
    "postal_code",
    "state_province_region",
    "custom_fields",
];

/// A SendGrid error answer: `{"errors": [{"field", "message"}]}`.
pub fn errors(status: u16, list: &[(Option<&str>, &str)]) -> Reply {
    let errors: Vec<Value> = list
        .iter()
        .map(|(field, message)| json!({"field": field, "message": message}))
        .collect();
    Reply::json(status, json!({ "errors": errors }))
}

/// SendGrid's rate-limit answer.
pub fn too_many_requests() -> Reply {
    errors(429, &[(None, "too many requests")])
        .with_header("X-RateLimit-Limit", "150")
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", "1392815263")
}

fn only(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    for (k, v) in obj {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("`{what}.{k}` is not part of this API"));
        }
        if v.is_null() {
            return Err(format!("`{what}.{k}` is null"));
        }
    }
    Ok(())
}

/// An email object: `{email, name?}`, the email an address.
fn address(v: &Value, what: &str) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err(format!(
            "`{what}` must be an object {{email, name?}}, got {v}"
        ));
    };
    only(obj, &["email", "name"], what)?;
    match obj.get("email").and_then(Value::as_str) {
        Some(e) if e.contains('@') => Ok(()),
        _ => Err(format!("`{what}.email` must be an email address, got {v}")),
    }
}

fn addresses(v: Option<&Value>, what: &str, required: bool) -> Result<usize, String> {
    match v {
        None if !required => Ok(0),
        Some(Value::Array(list)) if !list.is_empty() => {
            for (i, a) in list.iter().enumerate() {
                address(a, &format!("{what}.{i}"))?;
            }
            Ok(list.len())
        }
        other => Err(format!(
            "`{what}` must be a non-empty array of {{email, name?}}, got {other:?}"
        )),
    }
}

fn mail(r: &Request) -> Result<(), String> {
    let b = r.json();
    let Some(ps) = b["personalizations"]
        .as_array()
        .filter(|p| (1..=1000).contains(&p.len()))
    else {
        return Err("`personalizations` must hold 1 to 1000 objects".into());
    };
    let mut recipients = 0;
    for (i, p) in ps.iter().enumerate() {
        let what = format!("personalizations.{i}");
        let Some(obj) = p.as_object() else {
            return Err(format!("`{what}` must be an object"));
        };
        only(obj, PERSONALIZATION_FIELDS, &what)?;
        recipients += addresses(obj.get("to"), &format!("{what}.to"), true)?;
        recipients += addresses(obj.get("cc"), &format!("{what}.cc"), false)?;
        recipients += addresses(obj.get("bcc"), &format!("{what}.bcc"), false)?;
        for f in [
            "dynamic_template_data",
            "custom_args",
            "headers",
            "substitutions",
        ] {
            if obj.get(f).is_some_and(|v| !v.is_object()) {
                return Err(format!("`{what}.{f}` must be an object"));
            }
        }
    }
    if recipients > 1000 {
        return Err("at most 1000 recipients (to + cc + bcc)".into());
    }
    address(&b["from"], "from")?;
    if let Some(reply_to) = b.get("reply_to") {
        address(reply_to, "reply_to")?;
    }
    let template = b.get("template_id").and_then(Value::as_str);
    match b.get("content") {
        None if template.is_some() => {}
        None => return Err("`content` is required unless a template_id is given".into()),
        Some(Value::Array(items)) if !items.is_empty() => {
            for item in items {
                let ok = |f: &str| item[f].as_str().is_some_and(|s| !s.is_empty());
                if !(ok("type") && ok("value")) || item.as_object().is_some_and(|o| o.len() != 2) {
                    return Err(format!(
                        "each content item is {{type, value}}, both at least one character: {item}"
                    ));
                }
            }
        }
        Some(other) => return Err(format!("`content` must be a non-empty array, got {other}")),
    }
    let subject = b
        .get("subject")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
        || ps.iter().all(|p| p.get("subject").is_some());
    if template.is_none() && !subject {
        return Err("`subject` is required unless a template gives it".into());
    }
    match b.get("categories") {
        None => {}
        Some(Value::Array(c)) if c.len() <= 10 && c.iter().all(Value::is_string) => {}
        Some(other) => {
            return Err(format!(
                "`categories` must be at most 10 names, got {other}"
            ))
        }
    }
    if b.get("send_at").is_some_and(|v| !v.is_u64()) {
        return Err("`send_at` must be a Unix timestamp".into());
    }
    Ok(())
}

fn contacts(r: &Request) -> Result<(), String> {
    let b = r.json();
    let Some(list) = b["contacts"]
        .as_array()
        .filter(|c| (1..=30000).contains(&c.len()))
    else {
        return Err("`contacts` must hold 1 to 30000 contacts".into());
    };
    for (i, c) in list.iter().enumerate() {
        let what = format!("contacts.{i}");
        let Some(obj) = c.as_object() else {
            return Err(format!("`{what}` must be an object"));
        };
        only(obj, CONTACT_FIELDS, &what)?;
        if !["email", "phone_number_id", "external_id", "anonymous_id"]
            .iter()
            .any(|f| obj.get(*f).is_some_and(Value::is_string))
        {
            return Err(format!(
                "`{what}` needs an identifier: email, phone_number_id, external_id or anonymous_id"
            ));
        }
        if obj.get("custom_fields").is_some_and(|v| !v.is_object()) {
            return Err(format!("`{what}.custom_fields` must be an object"));
        }
        match obj.get("alternate_emails") {
            None => {}
            Some(Value::Array(a)) if a.len() <= 5 => {}
            Some(other) => {
                return Err(format!(
                    "`{what}.alternate_emails` holds at most 5, got {other}"
                ))
            }
        }
    }
    match b.get("list_ids") {
        None => Ok(()),
        Some(Value::Array(ids)) if ids.iter().all(Value::is_string) => Ok(()),
        Some(other) => Err(format!("`list_ids` must be an array of ids, got {other}")),
    }
}

fn common(route: Route) -> Route {
    route
        .bearer(API_KEY, errors(401, &[(None, "authorization required")]))
        .content_type("application/json")
}

pub fn routes() -> Vec<Route> {
    vec![
        common(Route::post("/v3/mail/send"))
            .json_fields(&["personalizations", "from"])
            .json_only(MAIL_FIELDS)
            .check(mail)
            .reply(|_| Reply::empty(202)),
        common(Route::new("PUT", "/v3/marketing/contacts"))
            .json_fields(&["contacts"])
            .json_only(&["list_ids", "contacts"])
            .check(contacts)
            .reply(|_| Reply::json(202, json!({ "job_id": JOB_ID }))),
    ]
}
