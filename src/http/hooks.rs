//! `/hooks/*`: the public inbound endpoint. Reads the request (size limit
//! first, within the byte budget for bodies in flight, see
//! [`super::budget`]), hands it to [`crate::inbound::Inbox`], and maps the
//! answer onto SPEC §5's statuses, or sends a `respond` step's answer as the
//! step rendered it (SPEC §6.1).

use super::budget::{self, Held, RETRY_AFTER_SECS};
use super::error::ApiError;
use super::AppState;
use crate::inbound::{Answer, Inbound};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{*path}", any(receive))
}

async fn receive(State(state): State<AppState>, req: Request<Body>) -> Response {
    // Room for the body is held until the answer is sent: until then the
    // bytes are in memory (in the event being stored).
    let mut held = Held::default();
    match read(&state, req, &mut held).await {
        Ok(inbound) => match state.inbox.accept(inbound).await {
            Ok(answer) => answer_response(answer),
            Err(e) => ApiError::store(e).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// Why a request was not read.
enum Unread {
    Api(ApiError),
    /// The bodies in flight leave no room for this one.
    Busy {
        budget: usize,
    },
}

impl From<ApiError> for Unread {
    fn from(e: ApiError) -> Self {
        Unread::Api(e)
    }
}

impl IntoResponse for Unread {
    fn into_response(self) -> Response {
        match self {
            Unread::Api(e) => e.into_response(),
            Unread::Busy { budget } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many request bodies are being received at once (the budget is {budget} bytes); \
                     retry in {RETRY_AFTER_SECS}s"
                ),
            )
            .retry_after(RETRY_AFTER_SECS)
            .into_response(),
        }
    }
}

async fn read(state: &AppState, req: Request<Body>, held: &mut Held) -> Result<Inbound, Unread> {
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
        return Err(too_large().into());
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
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let path = parts.uri.path().strip_prefix("/hooks").unwrap_or("");
    let hook_path = crate::workflow::compile::normalize_path(path);
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let busy = || Unread::Busy {
        budget: state.body_budget.total(),
    };
    // A declared length is room taken before a byte is read; hyper holds
    // the body to exactly that length.
    if let Some(n) = declared {
        state
            .body_budget
            .reserve(held, n, budget::WAIT)
            .await
            .map_err(|_| busy())?;
    }
    let read_all = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("the body could not be read: {e}")))?;
            let len = buf.len() + chunk.len();
            if len > state.max_body {
                return Err(too_large().into());
            }
            // Without a length, the bytes are counted as they arrive.
            if len > held.bytes() {
                state
                    .body_budget
                    .reserve(held, len - held.bytes(), budget::WAIT)
                    .await
                    .map_err(|_| busy())?;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok::<_, Unread>(buf)
    };
    let body = match tokio::time::timeout(state.body_timeout, read_all).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(state.body_timeout)
                ),
            )
            .into())
        }
    };
    Ok(Inbound {
        method: parts.method.as_str().to_string(),
        hook_path,
        target,
        headers,
        query,
        body: body.into(),
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
        Answer::Responded(a) => responded(a),
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

/// A `respond` step's answer as the sender gets it. The step checked its
/// status and headers when it rendered them.
fn responded(a: crate::step::respond::Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut r = Response::new(Body::from(a.body));
    *r.status_mut() = status;
    for (k, v) in a.headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r
}
