//! `/api/*`: workflows, events and runs as JSON (SPEC §8). Lists are newest
//! first and answer `{"items": [...], "next_before": cursor-or-null}`.
//! Events and runs are redacted when stored; a workflow's source is
//! redacted here. 5xx answers are generic; their cause goes to the log.

use super::error::ApiError;
use super::AppState;
use crate::record::Timestamp;
use crate::record::{Outcome, RunStatus};
use crate::run::replay;
use crate::store::{EventQuery, RunQuery};
use crate::workflow::registry::FileReport;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/workflows", get(list_workflows))
        .route("/api/workflows/{name}", get(get_workflow))
        .route("/api/events", get(list_events))
        .route("/api/events/{id}", get(get_event))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/replay", post(replay_one))
        .route("/api/runs/{id}/test-case", get(test_case))
        .route("/api/stats", get(stats))
        .route("/api/runs/replay", post(replay_many))
}

/// Replay one run and store it; the error is an API answer.
///
/// Only a finished run is replayed: the original's record gets the link
/// to its replay, and while a run is not final the executor owns that
/// record and would write over the link (and a replay would run the same
/// event twice at once). Replays are made one at a time, so two replays of
/// one run cannot drop each other's link either.
async fn replay(
    state: &AppState,
    original_id: &str,
    opts: replay::Options,
) -> Result<String, ApiError> {
    let _one_at_a_time = state.replays.lock().await;
    let mut original = state
        .store
        .run(original_id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no run `{original_id}`")))?;
    if !original.status.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "run {original_id} is {}: it can be replayed once it has finished (succeeded, filtered or failed)",
                original.status.as_str()
            ),
        ));
    }
    let wf = match opts.version {
        replay::Version::Recorded => state
            .workflows
            .version(&original.workflow_version)
            .await
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?,
        replay::Version::Current => state
            .workflows
            .current()
            .by_name(&original.workflow)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "workflow `{}` is not loaded now; replay on the recorded version",
                        original.workflow
                    ),
                )
            })?,
    };
    let run = replay::plan(&original, &wf, opts.from, Timestamp::now())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    original.replays.push(run.id.clone());
    state
        .store
        .insert_replay(&original, &run)
        .await
        .map_err(ApiError::store)?;
    Ok(run.id.to_string())
}

fn options(body: &Bytes) -> Result<replay::Options, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(replay::Options::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "replay options: {e}; send {{\"from\": \"start\"|\"failed_step\", \"version\": \"current\"|\"recorded\"}}"
        ))
    })
}

async fn replay_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let opts = options(&body)?;
    let run_id = replay(&state, &id, opts).await?;
    Ok((StatusCode::CREATED, Json(json!({ "run_id": run_id }))))
}

/// The most runs one bulk replay takes; call again for more.
const MAX_BULK: usize = 1000;

async fn replay_many(
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let opts = options(&body)?;
    let statuses: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    let status = parse_filter(&p.status, RunStatus::parse, "status", &statuses)?
        .unwrap_or(RunStatus::Failed);
    let q = RunQuery {
        workflow: p.workflow(),
        status: Some(status),
        before: None,
        limit: MAX_BULK,
    };
    let page = state.store.list_runs(&q).await.map_err(ApiError::store)?;
    let mut run_ids = Vec::new();
    // Runs not replayed, each with the reason: one that is not finished
    // yet, one whose workflow version is gone, and the like.
    let mut skipped = Vec::new();
    // Oldest first, so the replays queue in the order the originals arrived.
    for original in page.items.iter().rev() {
        match replay(&state, original.id.as_str(), opts).await {
            Ok(id) => run_ids.push(id),
            Err(e) => skipped.push(json!({ "run_id": original.id, "error": e.message })),
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_ids": run_ids, "skipped": skipped })),
    ))
}

fn workflow_json(f: &FileReport) -> Value {
    json!({
        "name": f.name,
        "path": f.path,
        "hook": f.path.as_deref().map(crate::inbound::hooks_path),
        "file": f.file,
        "enabled": f.enabled,
        "status": f.status,
        "errors": f.errors,
        "version": f.version,
        "serving_version": f.serving_version,
        "connectors": f.connectors,
    })
}

async fn list_workflows(State(state): State<AppState>) -> Json<Value> {
    let reg = state.workflows.current();
    let mut items: Vec<Value> = reg.files.iter().map(workflow_json).collect();
    for (item, f) in items.iter_mut().zip(&reg.files) {
        if let Some(w) = reg.by_name(&f.name).filter(|w| w.file == f.file) {
            item["description"] = json!(w.description);
            item["methods"] = json!(w.methods);
        }
    }
    Json(Value::Array(items))
}

async fn get_workflow(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let reg = state.workflows.current();
    let f = reg
        .file(&name)
        .ok_or_else(|| ApiError::not_found(format!("no workflow named `{name}`")))?;
    let mut v = workflow_json(f);
    let loaded = reg.by_name(&name).filter(|w| w.file == f.file);
    // A verify secret may be written in the file (or as a `??` fallback).
    v["source"] = json!(match loaded {
        Some(w) => w.redactor.redacted(&f.source),
        None => std::borrow::Cow::Borrowed(f.source.as_str()),
    });
    if let Some(w) = loaded {
        v["description"] = json!(w.description);
        v["methods"] = json!(w.methods);
        v["steps"] = json!(w
            .steps
            .iter()
            .map(|s| json!({"id": s.id, "kind": s.action.kind(), "uses": s.uses()}))
            .collect::<Vec<_>>());
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
struct ListParams {
    workflow: Option<String>,
    status: Option<String>,
    outcome: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
}

impl ListParams {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    fn workflow(&self) -> Option<String> {
        self.workflow.clone().filter(|w| !w.is_empty())
    }
}

fn parse_filter<T>(
    value: &Option<String>,
    parse: fn(&str) -> Option<T>,
    what: &str,
    all: &[&str],
) -> Result<Option<T>, ApiError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse(s).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown {what} `{s}`; use one of: {}",
                all.join(", ")
            ))
        }),
    }
}

async fn list_runs(
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let statuses: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    let q = RunQuery {
        workflow: p.workflow(),
        status: parse_filter(&p.status, RunStatus::parse, "status", &statuses)?,
        before: p.before.clone().filter(|b| !b.is_empty()),
        limit: p.limit(),
    };
    let page = state.store.list_runs(&q).await.map_err(ApiError::store)?;
    Ok(page_json(page))
}

async fn list_events(
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    let q = EventQuery {
        workflow: p.workflow(),
        outcome: parse_filter(&p.outcome, Outcome::parse, "outcome", &outcomes)?,
        before: p.before.clone().filter(|b| !b.is_empty()),
        limit: p.limit(),
    };
    let page = state.store.list_events(&q).await.map_err(ApiError::store)?;
    Ok(page_json(page))
}

/// A page as `{"items": [...], "next_before": cursor-or-null}`.
fn page_json<T: serde::Serialize>(page: crate::store::Page<T>) -> Json<Value> {
    Json(json!({ "items": page.items, "next_before": page.next_before }))
}

async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let event = state
        .store
        .event(&id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no event `{id}`")))?;
    Ok(Json(json!(event)))
}

async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = state
        .store
        .run(&id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    Ok(Json(json!(run)))
}

/// The run as a test case (SPEC §7), as YAML.
async fn test_case(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let run = state
        .store
        .run(&id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    let event = state
        .store
        .event(run.event_id.as_str())
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| {
            ApiError::not_found(format!("the event of run `{id}` is no longer stored"))
        })?;
    let yaml = crate::testcase::export::suite_yaml(&run, &event)
        .map_err(|e| ApiError::internal("exporting a test case", e))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/yaml; charset=utf-8",
        )],
        yaml,
    ))
}

/// Runs in the last `SCAN_CAP` records at most, for the UI's chart and the
/// workflow counts: runs per minute over the last hour by status, and runs
/// per workflow over the last 24 hours by status.
const SCAN_CAP: usize = 200_000;

async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = Timestamp::now();
    let minute = 60_000;
    let this_minute = now.0 / minute * minute;
    let first_minute = this_minute - 59 * minute;
    let day_ago = Timestamp(now.0.saturating_sub(24 * 3600 * 1000));
    let heads = state
        .store
        .run_heads(day_ago, SCAN_CAP)
        .await
        .map_err(ApiError::store)?;
    let mut per_minute: Vec<serde_json::Map<String, Value>> = vec![serde_json::Map::new(); 60];
    let mut by_workflow: std::collections::BTreeMap<String, serde_json::Map<String, Value>> =
        Default::default();
    for head in heads {
        let status = head.status.as_str();
        let bump = |m: &mut serde_json::Map<String, Value>| {
            let n = m.get(status).and_then(Value::as_u64).unwrap_or(0);
            m.insert(status.to_string(), Value::from(n + 1));
        };
        bump(by_workflow.entry(head.workflow).or_default());
        if head.created_at.0 >= first_minute {
            let slot = ((head.created_at.0 - first_minute) / minute) as usize;
            if let Some(m) = per_minute.get_mut(slot) {
                bump(m);
            }
        }
    }
    let per_minute: Vec<Value> = per_minute
        .into_iter()
        .enumerate()
        .map(|(i, counts)| json!({ "minute": Timestamp(first_minute + i as u64 * minute), "counts": counts }))
        .collect();
    Ok(Json(
        json!({ "per_minute": per_minute, "by_workflow_24h": by_workflow }),
    ))
}
