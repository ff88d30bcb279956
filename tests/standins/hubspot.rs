//! HubSpot's stand-in, per HubSpot's API reference (version 2026-03) and
//! its OpenAPI descriptions (`HubSpot/HubSpot-public-api-spec-collection`,
//! `CRM/Contacts/Rollouts/424/2026-03/contacts.json` and
//! `CRM/Deals/Rollouts/424/2026-03/deals.json`): the token as
//! `Authorization: Bearer`, JSON bodies, property values as text
//! (`additionalProperties: {type: string}`).
//!
//! - Create or update a batch of contacts (https://developers.hubspot.com/docs/api-reference/2026-03/crm/objects/contacts/batch/upsert-contacts):
//!   `POST /crm/objects/2026-03/contacts/batch/upsert`, `{"inputs": [{"id",
//!   "idProperty", "properties"}]}` with `id` and `properties` required;
//!   `200` with `{"status": "COMPLETE", "results": [{"id", "new",
//!   "properties", "createdAt", "updatedAt", "archived"}], "startedAt",
//!   "completedAt"}`, or `207` with the failed inputs in `errors`. The
//!   stand-in keeps the contacts it has seen, so a second upsert of an
//!   email updates the same contact (`"new": false`).
//! - Create a deal (https://developers.hubspot.com/docs/api-reference/latest/crm/objects/deals/guide,
//!   operation `POST /crm/objects/2026-03/0-3`; the guide writes `deals`):
//!   `{"properties", "associations": [{"to": {"id"}, "types":
//!   [{"associationCategory", "associationTypeId"}]}]}`, both required;
//!   `201` with the deal (`id`, `properties`, `createdAt`, …).
//! - Errors (https://developers.hubspot.com/docs/api-reference/error-handling):
//!   `{"status": "error", "message", "correlationId", "category",
//!   "errors", "links"}`. 400 VALIDATION_ERROR (here: a lifecycle stage
//!   that is none of the default internal names nor a numeric custom stage
//!   ID), 401 for an unknown token, 403 MISSING_SCOPES for a token without
//!   the scope, and 429 (https://developers.hubspot.com/docs/api/usage-details)
//!   `{"status": "error", "message": "You have reached your secondly
//!   limit.", "errorType": "RATE_LIMIT", "correlationId", "policyName"}`,
//!   without Retry-After. The 401, 403 and 400 messages are HubSpot's
//!   wording in practice; the reference gives their fields, not the text.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A token with both scopes.
pub const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
/// A token with crm.objects.contacts.write only.
pub const CONTACTS_ONLY: &str = "pat-na1-99999999-8888-7777-6666-555555555555";
pub const UPSERT: &str = "POST /crm/objects/2026-03/contacts/batch/upsert";
pub const DEALS: &str = "POST /crm/objects/2026-03/{object_type}";
pub const DEAL_ID: &str = "14772";
const CORRELATION: &str = "aeb5f871-7f07-4993-9211-075dc63e7cbf";
const NOW: &str = "2026-09-30T12:00:00.000Z";

/// Default contact lifecycle stages, by internal name.
const STAGES: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

pub fn unauthorized() -> Reply {
    Reply::json(
        401,
        json!({
            "status": "error",
            "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "correlationId": CORRELATION,
            "category": "INVALID_AUTHENTICATION"
        }),
    )
}

pub fn missing_scopes(scope: &str) -> Reply {
    Reply::json(
        403,
        json!({
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
            "correlationId": CORRELATION,
            "errors": [{
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": [scope]}
            }],
            "links": {"scopes": "https://developers.hubspot.com/scopes"},
            "category": "MISSING_SCOPES"
        }),
    )
}

/// HubSpot's answer to a request over its secondly limit.
pub fn rate_limited() -> Reply {
    Reply::json(
        429,
        json!({
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": CORRELATION,
            "policyName": "SECONDLY"
        }),
    )
}

fn invalid_option(name: &str, value: &str) -> Reply {
    let detail = format!("{value} was not one of the allowed options");
    Reply::json(
        400,
        json!({
            "status": "error",
            "message": format!(
                "Property values were not valid: [{{\"isValid\":false,\"message\":\"{detail}\",\"error\":\"INVALID_OPTION\",\"name\":\"{name}\"}}]"
            ),
            "correlationId": CORRELATION,
            "category": "VALIDATION_ERROR",
            "errors": [{"message": detail, "code": "INVALID_OPTION", "context": {"propertyName": [name]}}]
        }),
    )
}

/// A batch answer with one failed input (`207 Multi-Status`).
pub fn multi_status(message: &str) -> Reply {
    Reply::json(
        207,
        json!({
            "status": "COMPLETE",
            "results": [],
            "numErrors": 1,
            "errors": [{
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": message,
                "context": {},
                "errors": [],
                "links": {}
            }],
            "startedAt": NOW,
            "completedAt": NOW
        }),
    )
}

/// A mapping of text values: HubSpot's `properties`.
fn text_map(v: &Value, what: &str) -> Result<(), String> {
    let Some(m) = v.as_object() else {
        return Err(format!("`{what}` must be an object, got {v}"));
    };
    for (k, v) in m {
        if !v.is_string() {
            return Err(format!("`{what}.{k}` must be text, got {v}"));
        }
    }
    Ok(())
}

fn only(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("`{what}.{k}` is not part of this API")),
        None => Ok(()),
    }
}

fn upsert_shape(r: &Request) -> Result<(), String> {
    let body = r.json();
    let Some(inputs) = body["inputs"].as_array() else {
        return Err("`inputs` must be an array".into());
    };
    if inputs.is_empty() {
        return Err("`inputs` must not be empty".into());
    }
    for input in inputs {
        let Some(obj) = input.as_object() else {
            return Err(format!("an input must be an object, got {input}"));
        };
        only(
            obj,
            &["id", "idProperty", "objectWriteTraceId", "properties"],
            "inputs[]",
        )?;
        if !input["id"].is_string() {
            return Err("`inputs[].id` is required text".into());
        }
        if input.get("idProperty").is_some_and(|v| !v.is_string()) {
            return Err("`inputs[].idProperty` must be text".into());
        }
        text_map(&input["properties"], "inputs[].properties")?;
    }
    Ok(())
}

fn deal_shape(r: &Request) -> Result<(), String> {
    let object_type = r.params["object_type"].as_str();
    if object_type != "deals" && object_type != "0-3" {
        return Err(format!("no object type {object_type} here (deals or 0-3)"));
    }
    let body = r.json();
    text_map(&body["properties"], "properties")?;
    let Some(assocs) = body["associations"].as_array() else {
        return Err("`associations` must be an array".into());
    };
    for a in assocs {
        let Some(obj) = a.as_object() else {
            return Err(format!("an association must be an object, got {a}"));
        };
        only(obj, &["to", "types"], "associations[]")?;
        // The schema says text; HubSpot's associations guide writes a number.
        if !(a["to"]["id"].is_string() || a["to"]["id"].is_u64()) {
            return Err(format!(
                "`associations[].to.id` is required, got {}",
                a["to"]
            ));
        }
        let Some(types) = a["types"].as_array().filter(|t| !t.is_empty()) else {
            return Err("`associations[].types` must be a non-empty array".into());
        };
        for t in types {
            let category = t["associationCategory"].as_str().unwrap_or_default();
            if ![
                "HUBSPOT_DEFINED",
                "INTEGRATOR_DEFINED",
                "USER_DEFINED",
                "WORK",
            ]
            .contains(&category)
            {
                return Err(format!(
                    "`associationCategory` {} is not one of the API's",
                    t["associationCategory"]
                ));
            }
            if !t["associationTypeId"].is_u64() {
                return Err(format!(
                    "`associationTypeId` must be an integer, got {}",
                    t["associationTypeId"]
                ));
            }
        }
    }
    Ok(())
}

/// The contacts the stand-in knows: email → id.
#[derive(Default)]
pub struct Contacts {
    pub by_email: Mutex<HashMap<String, String>>,
}

fn upsert(r: &Request, contacts: &Contacts) -> Reply {
    let body = r.json();
    let mut results = Vec::new();
    for input in body["inputs"].as_array().into_iter().flatten() {
        let props = input["properties"].as_object().cloned().unwrap_or_default();
        if let Some(stage) = props.get("lifecyclestage").and_then(Value::as_str) {
            let custom = !stage.is_empty() && stage.chars().all(|c| c.is_ascii_digit());
            if !STAGES.contains(&stage) && !custom {
                return invalid_option("lifecyclestage", stage);
            }
        }
        let key = input["id"].as_str().unwrap_or_default().to_lowercase();
        let mut known = contacts.by_email.lock().expect("lock");
        let fresh = !known.contains_key(&key);
        let next = format!("{}", 512 + known.len());
        let id = known.entry(key).or_insert(next).clone();
        let mut properties = props;
        properties.insert("hs_object_id".into(), json!(id));
        properties.insert("lastmodifieddate".into(), json!(NOW));
        results.push(json!({
            "id": id,
            "new": fresh,
            "properties": properties,
            "createdAt": NOW,
            "updatedAt": NOW,
            "archived": false
        }));
    }
    Reply::json(
        200,
        json!({"status": "COMPLETE", "results": results, "startedAt": NOW, "completedAt": NOW}),
    )
}

fn deal(r: &Request) -> Reply {
    let mut properties = r.json()["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    properties.insert("hs_object_id".into(), json!(DEAL_ID));
    properties.insert("createdate".into(), json!(NOW));
    Reply::json(
        201,
        json!({
            "id": DEAL_ID,
            "properties": properties,
            "createdAt": NOW,
            "updatedAt": NOW,
            "archived": false
        }),
    )
}

pub fn routes(contacts: Arc<Contacts>) -> Vec<Route> {
    vec![
        Route::post("/crm/objects/2026-03/contacts/batch/upsert")
            .auth(
                |r| matches!(r.bearer(), Some(TOKEN | CONTACTS_ONLY)),
                |_| unauthorized(),
            )
            .content_type("application/json")
            .json_fields(&["inputs"])
            .json_only(&["inputs"])
            .check(upsert_shape)
            .reply(move |r| upsert(r, &contacts)),
        Route::post("/crm/objects/2026-03/{object_type}")
            .auth(
                |r| r.bearer() == Some(TOKEN),
                |r| match r.bearer() {
                    Some(CONTACTS_ONLY) => missing_scopes("crm.objects.deals.write"),
                    _ => unauthorized(),
                },
            )
            .content_type("application/json")
            .json_fields(&["properties", "associations"])
            .json_only(&["properties", "associations"])
            .check(deal_shape)
            .reply(deal),
    ]
}
