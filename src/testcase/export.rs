//! A stored run as a test case: its request, its recorded `http` answers
//! as mocks, and its step results and status as expectations — so a
//! failure seen in production becomes a regression test.

use crate::record::{Event, Run, StepKind, StepStatus, REDACTED};
use serde_json::{json, Map, Value};

/// Headers that describe the connection rather than the event.
const TRANSPORT_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "accept",
    "accept-encoding",
    "user-agent",
    "transfer-encoding",
];

/// The test suite (YAML) that replays `run` of `event`.
pub fn suite_yaml(run: &Run, event: &Event) -> Result<String, String> {
    let headers: Map<String, Value> = event
        .headers
        .iter()
        .filter(|(k, v)| v.as_str() != REDACTED && !TRANSPORT_HEADERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut request = Map::new();
    if event.method != "POST" {
        request.insert("method".into(), json!(event.method));
    }
    request.insert("headers".into(), Value::Object(headers));
    if !event.query.is_empty() {
        request.insert("query".into(), json!(event.query));
    }
    match &event.body {
        Value::String(text) => request.insert("body".into(), json!(text)),
        body => request.insert("event".into(), body.clone()),
    };

    let mut mock = Map::new();
    let mut steps = Map::new();
    for step in &run.steps {
        if step.kind == StepKind::Http && !step.attempts.is_empty() {
            let answers: Vec<Value> = step
                .attempts
                .iter()
                .map(|a| match &a.response {
                    Some(r) => json!({ "status": r.status, "headers": r.headers, "body": r.body }),
                    None => {
                        json!({ "error": a.error.clone().unwrap_or_else(|| "no answer".into()) })
                    }
                })
                .collect();
            mock.insert(
                step.id.clone(),
                if answers.len() == 1 {
                    answers[0].clone()
                } else {
                    Value::Array(answers)
                },
            );
        }
        let mut expect = Map::new();
        expect.insert("status".into(), json!(step.status));
        match step.status {
            StepStatus::Succeeded => {
                if let Some(out) = &step.output {
                    expect.insert("output".into(), out.clone());
                }
            }
            StepStatus::Failed => {
                if let Some(e) = &step.error {
                    expect.insert("error".into(), json!(e));
                }
            }
            StepStatus::Pending
            | StepStatus::Running
            | StepStatus::Filtered
            | StepStatus::Skipped
            | StepStatus::Retrying
            | StepStatus::Waiting => {}
        }
        steps.insert(step.id.clone(), Value::Object(expect));
    }
    let mut case = Map::new();
    case.insert(
        "name".into(),
        json!(format!("recorded run {} ({})", run.id, run.status.as_str())),
    );
    case.insert("request".into(), Value::Object(request));
    if !mock.is_empty() {
        case.insert("mock".into(), Value::Object(mock));
    }
    case.insert(
        "expect".into(),
        json!({ "status": run.status, "steps": steps }),
    );
    let suite = json!({ "workflow": run.workflow, "cases": [Value::Object(case)] });
    let yaml =
        serde_yaml::to_string(&suite).map_err(|e| format!("cannot write the test case: {e}"))?;
    Ok(format!(
        "# Recorded from run {} on {}.\n{yaml}",
        run.id,
        run.created_at.to_rfc3339()
    ))
}
