//! Running workflows: `executor.rs` walks one run's steps and persists after
//! each; `worker.rs` claims due runs from the queue with bounded concurrency.

pub mod executor;
pub mod worker;

use crate::record::{Event, RunId, RunStatus};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// A change to a run, for live listeners (`/api/stream`).
#[derive(Debug, Clone, Serialize)]
pub struct RunUpdate {
    pub id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub event_id: String,
}

/// The run context of SPEC §3.1, taking the event's parts without copying.
pub fn into_context(
    event: Event,
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    json!({
        "event": event.body,
        "request": {
            "method": event.method,
            "path": event.path,
            "headers": event.headers,
            "query": event.query,
        },
        "steps": steps,
        "workflow": { "name": workflow },
        "run": { "id": run_id, "attempt": attempt },
    })
}

/// The run context of SPEC §3.1.
pub fn context(
    event: &Event,
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    json!({
        "event": event.body,
        "request": {
            "method": event.method,
            "path": event.path,
            "headers": event.headers,
            "query": event.query,
        },
        "steps": steps,
        "workflow": { "name": workflow },
        "run": { "id": run_id, "attempt": attempt },
    })
}
