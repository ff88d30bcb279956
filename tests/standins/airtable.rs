//! Airtable's stand-in, per Airtable's Web API reference (under `/v0`):
//!
//! - Authentication (https://airtable.com/developers/web/api/authentication):
//!   a personal access token as `Authorization: Bearer`.
//! - Create records (https://airtable.com/developers/web/api/create-records):
//!   `POST /v0/{baseId}/{tableIdOrName}`, JSON; a single record as
//!   top-level `fields` (or up to 10 as `records`), `typecast`,
//!   `returnFieldsByFieldId`; `200` with `{"id", "createdTime", "fields"}`.
//! - Update record (https://airtable.com/developers/web/api/update-record):
//!   `PATCH /v0/{baseId}/{tableIdOrName}/{recordId}` (only the fields
//!   given change), `fields`, `typecast`, `returnFieldsByFieldId`; `200`
//!   with the record.
//! - Errors (https://airtable.com/developers/web/api/errors): a JSON body
//!   with the error's type and message, `{"error": {"type", "message"}}`;
//!   `401`, `403`, `404` (`{"error": "NOT_FOUND"}`), `422` for invalid
//!   data; `429` with the message "Rate limit exceeded. Please try again
//!   later" and no documented Retry-After ("wait 30 seconds"). The error
//!   types and the 401/422 message texts below are Airtable's usual ones,
//!   not the reference's.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};

pub const TOKEN: &str =
    "patQ8dJ3kLm0Np1Qr.2b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d";
pub const CREATE: &str = "POST /v0/{baseId}/{tableIdOrName}";
pub const UPDATE: &str = "PATCH /v0/{baseId}/{tableIdOrName}/{recordId}";
pub const NEW_RECORD: &str = "rec560UJdUtocSouk";
pub const RATE_LIMITED: &str = "Rate limit exceeded. Please try again later";

/// `{"error": {"type", "message"}}`.
pub fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"type": kind, "message": message}}))
}

pub fn not_found() -> Reply {
    Reply::json(404, json!({"error": "NOT_FOUND"}))
}

pub fn rate_limited() -> Reply {
    error(429, "RATE_LIMIT_REACHED", RATE_LIMITED)
}

fn common(route: Route) -> Route {
    route
        .bearer(
            TOKEN,
            error(401, "AUTHENTICATION_REQUIRED", "Authentication required"),
        )
        .content_type("application/json")
}

fn check_record(r: &Request) -> Result<(), String> {
    let b = r.json();
    if !b["fields"].is_object() {
        return Err("`fields` must be an object of cell values".into());
    }
    for k in ["typecast", "returnFieldsByFieldId"] {
        if b.get(k).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("`{k}` must be a boolean"));
        }
    }
    Ok(())
}

fn record(id: &str, r: &Request) -> Reply {
    Reply::json(
        200,
        json!({
            "id": id,
            "createdTime": "2022-09-12T21:03:48.000Z",
            "fields": r.json().get("fields").cloned().unwrap_or(Value::Null)
        }),
    )
}

pub fn routes() -> Vec<Route> {
    vec![
        common(Route::post("/v0/{baseId}/{tableIdOrName}"))
            .json_fields(&["fields"])
            .json_only(&["fields", "typecast", "returnFieldsByFieldId"])
            .check(check_record)
            .reply(|r| record(NEW_RECORD, r)),
        common(Route::new(
            "PATCH",
            "/v0/{baseId}/{tableIdOrName}/{recordId}",
        ))
        .json_fields(&["fields"])
        .json_only(&["fields", "typecast", "returnFieldsByFieldId"])
        .check(check_record)
        .reply(|r| record(&r.params["recordId"], r)),
    ]
}
