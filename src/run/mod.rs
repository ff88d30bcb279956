//! Running workflows: `executor.rs` walks one run's steps and persists after
//! each; `worker.rs` claims due runs from the queue with bounded concurrency.

pub mod executor;
pub mod replay;
pub mod worker;

use crate::record::{Event, EventId, Run, RunId, RunStatus, StepRecord, Timestamp};
use crate::workflow::Workflow;
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

/// The run context of SPEC §3.1, taking the event's body without copying.
pub fn into_context(
    mut event: Event,
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    let body = std::mem::take(&mut event.body);
    build(body, &event, workflow, run_id, attempt, steps)
}

/// The run context of SPEC §3.1.
pub fn context(
    event: &Event,
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    build(event.body.clone(), event, workflow, run_id, attempt, steps)
}

fn build(
    body: Value,
    event: &Event,
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    json!({
        "event": body,
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

/// A fresh run of `w` for an event, with every step pending.
pub fn new_run(w: &Workflow, event_id: &EventId, now: Timestamp) -> Run {
    Run {
        id: RunId::generate(),
        workflow: w.name.clone(),
        workflow_version: w.version.clone(),
        event_id: event_id.clone(),
        status: RunStatus::Queued,
        attempt: 0,
        created_at: now,
        started_at: None,
        finished_at: None,
        duration_ms: None,
        next_attempt_at: None,
        replay_of: None,
        replays: Vec::new(),
        error: None,
        summary: String::new(),
        steps: w
            .steps
            .iter()
            .map(|s| StepRecord::pending(&s.id, s.action.kind()))
            .collect(),
    }
}
