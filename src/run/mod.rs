//! Running workflows: `scheduler.rs` claims due runs from the store with
//! bounded concurrency and hands each to `executor.rs`, which walks one
//! run's steps and saves it as it goes; `replay.rs` plans replays;
//! `respond.rs` hands a `respond` step's answer to the request waiting for
//! it. This module builds the run context they share. The scheduler and
//! the executor do not look into each other: the store is their only
//! meeting point.

pub mod executor;
pub mod replay;
pub mod respond;
pub mod scheduler;

use crate::record::{Event, EventId, Run, RunId, RunStatus, StepRecord, Timestamp};
use crate::workflow::Workflow;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The run context of SPEC §3.1, taking the event's body, headers and
/// query without copying them.
pub fn into_context(
    event: Event,
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    let request = [
        Value::String(event.method),
        Value::String(event.path),
        strings(event.headers),
        strings(event.query),
    ];
    assemble(event.body, request, workflow, run_id, attempt, steps)
}

/// The run context of SPEC §3.1, copying only what it shows of the event.
pub fn context(
    event: &Event,
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    let copied = |map: &BTreeMap<String, String>| {
        Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    let request = [
        Value::String(event.method.clone()),
        Value::String(event.path.clone()),
        copied(&event.headers),
        copied(&event.query),
    ];
    assemble(
        event.body.clone(),
        request,
        workflow,
        run_id,
        attempt,
        steps,
    )
}

/// The context around the event's body and its request's method, path,
/// headers and query (in that order). Built by hand: `json!` would copy
/// every value it is given.
fn assemble(
    body: Value,
    [method, path, headers, query]: [Value; 4],
    workflow: &str,
    run_id: Option<&RunId>,
    attempt: u32,
    steps: Map<String, Value>,
) -> Value {
    let request = object([
        ("method", method),
        ("path", path),
        ("headers", headers),
        ("query", query),
    ]);
    let run_id = run_id.map_or(Value::Null, |id| Value::String(id.as_str().to_string()));
    object([
        ("event", body),
        ("request", request),
        ("steps", Value::Object(steps)),
        (
            "workflow",
            object([("name", Value::String(workflow.to_string()))]),
        ),
        (
            "run",
            object([("id", run_id), ("attempt", Value::from(attempt))]),
        ),
    ])
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// A string map as a JSON object, moving the strings in.
fn strings(map: BTreeMap<String, String>) -> Value {
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
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
            .map(|s| StepRecord::pending(&s.id, s.action.kind()).with_uses(s.uses()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context copied from a borrowed event is the one built by moving
    /// it: the two builders cannot drift apart.
    #[test]
    fn the_copied_context_is_the_moved_one() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": EventId::generate(), "received_at": Timestamp::now(),
            "path": "/hooks/w", "method": "POST",
            "headers": {"content-type": "application/json", "x-n": "1"},
            "query": {"q": "a b"},
            "body": {"k": [1, {"v": "x"}]}, "outcome": "accepted", "reason": null,
            "workflows": ["w"], "runs": [], "source": "127.0.0.1"
        }))
        .expect("an event");
        let run = RunId::generate();
        let steps = Map::from_iter([("s".to_string(), Value::from(3))]);
        let copied = context(&event, "w", Some(&run), 2, steps.clone());
        assert_eq!(copied, into_context(event, "w", Some(&run), 2, steps));
        assert_eq!(copied["request"]["headers"]["x-n"], "1");
        assert_eq!(copied["event"]["k"][1]["v"], "x");
        assert_eq!(copied["run"]["attempt"], 2);
    }
}
