//! `GET /api/stream`: Server-Sent Events, one `run` event per change of
//! any run (`{"id", "workflow", "status", "event_id"}`), with keep-alive
//! comments. A listener that falls behind skips what it missed and is told
//! with a `lagged` event, so it can reload. A `retrying` update is sent
//! once the retry schedule is on disk (the executor flushes, then
//! publishes), so a listener may rely on it surviving a crash.

use super::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/stream", get(stream_runs))
}

async fn stream_runs(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.store.subscribe();
    let events = stream::unfold(rx, |mut rx| async move {
        loop {
            let event = match rx.recv().await {
                Ok(update) => match Event::default().event("run").json_data(&update) {
                    Ok(e) => e,
                    Err(_) => continue,
                },
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), rx));
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
