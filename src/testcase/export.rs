//! A stored run as a test case: its request, its recorded `http` answers
//! as mocks, and its step results and status as expectations — so a
//! failure seen in production becomes a regression test. A switch's
//! branch and a loop's items are expected too, and a step inside a loop
//! gets its answers per item.

use crate::record::{Attempt, Event, Run, StepKind, StepRecord, StepStatus, REDACTED};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

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

    let mut mocks = BTreeMap::new();
    collect_mocks(&run.steps, None, &mut mocks);
    let mock: Map<String, Value> = mocks
        .into_iter()
        .map(|(id, m)| (id, m.into_value()))
        .collect();
    let steps = expect_list(&run.steps);
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

/// The recorded answers of one step.
enum Recorded {
    /// Outside loops: one answer per attempt.
    Attempts(Vec<Value>),
    /// Inside a loop: per item index, its answers per attempt.
    PerItem(BTreeMap<usize, Vec<Value>>),
}

impl Recorded {
    fn into_value(self) -> Value {
        let one_or_list = |mut answers: Vec<Value>| {
            if answers.len() == 1 {
                answers.remove(0)
            } else {
                Value::Array(answers)
            }
        };
        match self {
            Recorded::Attempts(answers) => one_or_list(answers),
            Recorded::PerItem(items) => {
                // Items that sent nothing (filtered, say) get a plain 200.
                let last = items.keys().next_back().copied().unwrap_or(0);
                let mut items = items;
                Value::Array(
                    (0..=last)
                        // A list inside the per-item list is per attempt.
                        .map(|i| match items.remove(&i) {
                            Some(answers) => one_or_list(answers),
                            None => json!({ "status": 200 }),
                        })
                        .collect(),
                )
            }
        }
    }
}

fn answers(attempts: &[Attempt]) -> Vec<Value> {
    attempts
        .iter()
        .map(|a| match &a.response {
            Some(r) => json!({ "status": r.status, "headers": r.headers, "body": r.body }),
            None => json!({ "error": a.error.clone().unwrap_or_else(|| "no answer".into()) }),
        })
        .collect()
}

/// The answers every `http` step got, by step id; inside a loop by the
/// item's index (mocks tell items apart by the innermost loop's index).
fn collect_mocks(steps: &[StepRecord], item: Option<usize>, out: &mut BTreeMap<String, Recorded>) {
    for step in steps {
        if step.kind == StepKind::Http && !step.attempts.is_empty() {
            let got = answers(&step.attempts);
            match item {
                None => {
                    out.insert(step.id.clone(), Recorded::Attempts(got));
                }
                Some(i) => {
                    let entry = out
                        .entry(step.id.clone())
                        .or_insert_with(|| Recorded::PerItem(BTreeMap::new()));
                    if let Recorded::PerItem(items) = entry {
                        items.entry(i).or_insert(got);
                    }
                }
            }
        }
        collect_mocks(step.steps.as_deref().unwrap_or_default(), item, out);
        for it in step.items.iter().flatten() {
            collect_mocks(&it.steps, Some(it.index), out);
        }
    }
}

/// Expectations for a list of records by step id; a switch's branch steps
/// are listed beside it (they share its scope), a loop's under its items.
fn expect_list(steps: &[StepRecord]) -> Map<String, Value> {
    let mut out = Map::new();
    for step in steps {
        out.insert(step.id.clone(), expect_step(step));
        out.extend(expect_list(step.steps.as_deref().unwrap_or_default()));
    }
    out
}

fn expect_step(step: &StepRecord) -> Value {
    let mut expect = Map::new();
    expect.insert("status".into(), json!(step.status));
    match step.status {
        StepStatus::Succeeded => {
            // A loop's output is its items' outputs, expected per item.
            if let (Some(out), false) = (&step.output, step.kind == StepKind::ForEach) {
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
    if let Some(branch) = step.branch {
        expect.insert("branch".into(), json!(branch));
    }
    if let Some(items) = &step.items {
        let items: Vec<Value> = items
            .iter()
            .map(|i| json!({ "status": i.status, "steps": expect_list(&i.steps) }))
            .collect();
        expect.insert("items".into(), Value::Array(items));
    }
    Value::Object(expect)
}
