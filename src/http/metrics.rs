//! `GET /metrics`: Prometheus text exposition of [`crate::metrics::Metrics`]
//! plus the queue gauges, read from the store at scrape time.

use super::AppState;
use crate::record::Timestamp;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let gauges = state.store.queue_gauges(Timestamp::now()).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(gauges),
    )
}
