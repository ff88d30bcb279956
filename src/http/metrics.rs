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
    let store = state.store.clone();
    let gauges = tokio::task::spawn_blocking(move || {
        let now = Timestamp::now();
        let mut depth = 0;
        let mut backlog = 0;
        for e in store.queue_entries().flatten() {
            depth += 1;
            if e.due > now {
                backlog += 1;
            }
        }
        (depth, backlog)
    })
    .await
    .unwrap_or((0, 0));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(gauges.0, gauges.1),
    )
}
