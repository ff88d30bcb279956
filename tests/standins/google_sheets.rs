//! Google's stand-ins, per Google's references: the OAuth 2.0 token
//! endpoint and the Sheets API.
//!
//! - Refreshing an access token (https://developers.google.com/identity/protocols/oauth2/web-server#offline):
//!   `POST https://oauth2.googleapis.com/token`, form-encoded, with
//!   `client_id`, `client_secret`, `refresh_token` and
//!   `grant_type=refresh_token`; the answer is `{"access_token",
//!   "expires_in", "scope", "token_type": "Bearer"}`. A revoked refresh
//!   token gets `400 {"error": "invalid_grant", "error_description":
//!   "Token has been expired or revoked."}`.
//! - `spreadsheets.values.append` (https://developers.google.com/workspace/sheets/api/reference/rest/v4/spreadsheets.values/append):
//!   `POST /v4/spreadsheets/{spreadsheetId}/values/{range}:append` with
//!   `valueInputOption` in the query (required), the access token as
//!   `Authorization: Bearer`, and a `ValueRange` body `{"values": [[…]]}`;
//!   the answer is `{"spreadsheetId", "tableRange", "updates": {…}}`.
//! - Errors follow Google's error model (https://cloud.google.com/apis/design/errors):
//!   `{"error": {"code", "message", "status"}}`; an access token that is
//!   expired or unknown gets `401` with `"status": "UNAUTHENTICATED"`.
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Route};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "1234567890-abc123def456.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-stand-in-client-secret-9x";
pub const REFRESH_TOKEN: &str = "1//0gStandInRefreshToken-abcdefghijklmnopqrstuvwxyz";
pub const TOKEN: &str = "POST /token";
pub const APPEND: &str = "POST /v4/spreadsheets/{spreadsheet_id}/values/{range}:append";

/// What the token endpoint has handed out, and which of it the Sheets API
/// still accepts.
#[derive(Default)]
pub struct Tokens {
    pub issued: Mutex<Vec<String>>,
    pub valid: Mutex<HashSet<String>>,
    /// `expires_in` of the next tokens; 3599 (Google's usual) when 0.
    pub expires_in: AtomicU64,
}

impl Tokens {
    pub fn count(&self) -> usize {
        self.issued.lock().expect("lock").len()
    }

    /// The Sheets API stops accepting every token issued so far (as when
    /// they expire early or are revoked).
    pub fn revoke_all(&self) {
        self.valid.lock().expect("lock").clear();
    }
}

pub fn error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

pub fn unauthenticated() -> Reply {
    error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    )
}

pub fn invalid_grant() -> Reply {
    Reply::json(
        400,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
    )
}

/// The token endpoint (`oauth2.googleapis.com`).
pub fn token_routes(tokens: Arc<Tokens>) -> Vec<Route> {
    vec![Route::post("/token")
        .content_type("application/x-www-form-urlencoded")
        .form_fields(&["grant_type", "client_id", "client_secret", "refresh_token"])
        .check(|r| match r.form().get("grant_type").map(String::as_str) {
            Some("refresh_token") => Ok(()),
            other => Err(format!("grant_type must be refresh_token, got {other:?}")),
        })
        .check(|r| {
            let f = r.form();
            if f["client_id"] == CLIENT_ID && f["client_secret"] == CLIENT_SECRET {
                Ok(())
            } else {
                Err("unknown client".into())
            }
        })
        .reply(move |r| {
            if r.form()["refresh_token"] != REFRESH_TOKEN {
                return invalid_grant();
            }
            let mut issued = tokens.issued.lock().expect("lock");
            let token = format!("ya29.a0AfB_standin-access-{}", issued.len() + 1);
            issued.push(token.clone());
            tokens.valid.lock().expect("lock").insert(token.clone());
            let expires_in = match tokens.expires_in.load(Ordering::SeqCst) {
                0 => 3599,
                n => n,
            };
            Reply::json(
                200,
                json!({
                    "access_token": token,
                    "expires_in": expires_in,
                    "scope": "https://www.googleapis.com/auth/spreadsheets",
                    "token_type": "Bearer"
                }),
            )
        })]
}

/// The Sheets API (`sheets.googleapis.com`).
pub fn sheets_routes(tokens: Arc<Tokens>) -> Vec<Route> {
    vec![
        Route::post("/v4/spreadsheets/{spreadsheet_id}/values/{range}:append")
            .auth(
                move |r| {
                    r.bearer()
                        .is_some_and(|t| tokens.valid.lock().expect("lock").contains(t))
                },
                |_| unauthenticated(),
            )
            .content_type("application/json")
            .check(
                |r| match r.query.get("valueInputOption").map(String::as_str) {
                    Some("RAW" | "USER_ENTERED") => Ok(()),
                    other => Err(format!(
                        "valueInputOption must be RAW or USER_ENTERED, got {other:?}"
                    )),
                },
            )
            .json_fields(&["values"])
            .json_only(&["values", "range", "majorDimension"])
            .check(|r| {
                let b = r.json();
                let rows = b["values"]
                    .as_array()
                    .ok_or("`values` must be a list of rows")?;
                if rows.iter().all(|row| row.is_array()) {
                    Ok(())
                } else {
                    Err("each row of `values` must be a list".into())
                }
            })
            .reply(|r| {
                let id = &r.params["spreadsheet_id"];
                let sheet = r.params["range"]
                    .split('!')
                    .next()
                    .unwrap_or("Sheet1")
                    .to_string();
                let cols = r.json()["values"][0].as_array().map(Vec::len).unwrap_or(0);
                json_ok(id, &sheet, cols)
            }),
    ]
}

fn json_ok(id: &str, sheet: &str, cols: usize) -> Reply {
    let last = (b'A' + cols.saturating_sub(1) as u8) as char;
    Reply::json(
        200,
        json!({
            "spreadsheetId": id,
            "tableRange": format!("{sheet}!A1:{last}5"),
            "updates": {
                "spreadsheetId": id,
                "updatedRange": format!("{sheet}!A6:{last}6"),
                "updatedRows": 1,
                "updatedColumns": cols,
                "updatedCells": cols
            }
        }),
    )
}
