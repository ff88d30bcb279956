//! The HTTP surface: [`app`] builds the one router (hooks, API, health).
//! One `router()` per resource file; handlers stay thin and call into
//! `inbound`, `store` and `workflow`. `/healthz` says the process serves;
//! `/readyz` says it can do its job (see [`crate::ready`]).

pub mod api;
pub mod auth;
pub mod budget;
pub mod error;
pub mod hooks;
pub mod metrics;
pub mod serve;
pub mod stream;
pub mod ui;

use crate::inbound::Inbox;
use crate::ready::Readiness;
use crate::store::Store;
use crate::workflow::registry::Workflows;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;

/// `status` of `/healthz`.
pub const STATUS_OK: &str = "ok";
/// `status` of `/readyz` when ready, and when not.
pub const STATUS_READY: &str = "ready";
pub const STATUS_NOT_READY: &str = "not_ready";

/// Everything a handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub inbox: Arc<Inbox>,
    pub store: Store,
    pub workflows: Arc<Workflows>,
    pub max_body: usize,
    pub body_timeout: std::time::Duration,
    /// Room for all inbound bodies being received at once.
    pub body_budget: budget::BodyBudget,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When set, `/api` and `/ui` require it.
    pub api_token: Option<crate::secret::Secret>,
    /// The address the listener is bound to: without a token, the admin
    /// routes answer only requests addressed to it or to a loopback name.
    pub listen: SocketAddr,
    pub readiness: Arc<Readiness>,
    /// Held while a replay is made (see [`api`]).
    pub replays: Arc<tokio::sync::Mutex<()>>,
}

pub fn app(state: AppState) -> Router {
    let admin = api::router()
        .merge(stream::router())
        .merge(ui::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": STATUS_OK})) }),
        )
        .route("/readyz", get(readyz))
        .merge(hooks::router())
        .merge(admin)
        .merge(ui::root())
        .merge(metrics::router())
        .fallback(|| async { error::ApiError::not_found("not found") })
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => Json(serde_json::json!({ "status": STATUS_READY })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": STATUS_NOT_READY, "reason": reason })),
        )
            .into_response(),
    }
}
