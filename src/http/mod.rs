//! The HTTP surface: [`app`] builds the one router (hooks, API, health).
//! One `router()` per resource file; handlers stay thin and call into
//! `inbound`, `store` and `workflow`.

pub mod api;
pub mod auth;
pub mod error;
pub mod hooks;
pub mod metrics;
pub mod serve;
pub mod stream;
pub mod ui;

use crate::inbound::Inbox;
use crate::run::RunUpdate;
use crate::store::Store;
use crate::workflow::registry::Workflows;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Everything a handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub inbox: Arc<Inbox>,
    pub store: Store,
    pub workflows: Arc<Workflows>,
    pub max_body: usize,
    pub body_timeout: std::time::Duration,
    pub updates: broadcast::Sender<RunUpdate>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When set, `/api` and `/ui` require it.
    pub api_token: Option<crate::secret::Secret>,
}

pub fn app(state: AppState) -> Router {
    let admin = api::router()
        .merge(stream::router())
        .merge(ui::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .merge(hooks::router())
        .merge(admin)
        .merge(ui::root())
        .merge(metrics::router())
        .fallback(|| async { error::ApiError::not_found("not found") })
        .with_state(state)
}
