//! `/hooks/*`: the public inbound endpoint. Reads the request (size limit
//! first), hands it to [`crate::inbound::Inbox`], and maps the answer onto
//! SPEC §5's statuses.

use super::error::ApiError;
use super::AppState;
use crate::inbound::{Answer, Inbound};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{*path}", any(receive))
}

async fn receive(State(state): State<AppState>, req: Request<Body>) -> Response {
    match read(&state, req).await {
        Ok(inbound) => match state.inbox.accept(inbound).await {
            Ok(answer) => answer_response(answer),
            Err(e) => ApiError::store(e).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn read(state: &AppState, req: Request<Body>) -> Result<Inbound, ApiError> {
    let (parts, body) = req.into_parts();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the limit of {} bytes", state.max_body),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body) {
        return Err(too_large());
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let query: BTreeMap<String, String> = match parts.uri.query() {
        None => BTreeMap::new(),
        Some(q) => crate::inbound::body::check_form(q.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("query string is {e}")))
            .and_then(|()| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                    .map_err(|e| ApiError::bad_request(format!("query string is not valid: {e}")))
            })?
            .into_iter()
            .collect(),
    };
    let path = parts.uri.path().strip_prefix("/hooks").unwrap_or("");
    let hook_path = crate::workflow::compile::normalize_path(path);
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let body = match tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.max_body),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(too_large()),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(state.body_timeout)
                ),
            ))
        }
    };
    Ok(Inbound {
        method: parts.method.as_str().to_string(),
        hook_path,
        headers,
        query,
        body: body.to_vec(),
        source,
    })
}

fn answer_response(answer: Answer) -> Response {
    match answer {
        Answer::Accepted { event_id, runs } => (
            StatusCode::ACCEPTED,
            Json(json!({ "event_id": event_id, "runs": runs })),
        )
            .into_response(),
        Answer::Duplicate { event_id, runs } => (
            StatusCode::OK,
            Json(json!({ "event_id": event_id, "duplicate": true, "runs": runs })),
        )
            .into_response(),
        Answer::Rejected(reason) => ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response(),
        Answer::NotFound => {
            ApiError::not_found("no workflow is served at this path").into_response()
        }
        Answer::MethodNotAllowed(allowed) => {
            let mut r = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed here; use {}", allowed.join(", ")),
            )
            .into_response();
            if let Ok(v) = allowed.join(", ").parse() {
                r.headers_mut().insert(header::ALLOW, v);
            }
            r
        }
        Answer::BadRequest(msg) => ApiError::bad_request(msg).into_response(),
        Answer::Unavailable(msg) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
        }
    }
}
