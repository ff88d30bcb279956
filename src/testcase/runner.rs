//! Runs one event through one workflow with the real executor, on a
//! temporary store, with outbound HTTP sent by the given [`Sender`] (mocks
//! for tests and dry runs, the network for `hookflow run --send`). Retry
//! waits and delays are skipped: the next attempt, or the step after the
//! delay, runs at once.

use crate::inbound::{classify_with, Answer, Decision, Inbound};
use crate::record::{Run, Timestamp};
use crate::run::executor::Executor;
use crate::script::Engine;
use crate::step::http::Sender;
use crate::store::{Ingest, Ingested, Store};
use crate::workflow::registry::{Registry, Workflows};
use crate::workflow::Workflow;
use std::sync::Arc;

/// What became of the event.
#[derive(Debug)]
pub struct CaseRun {
    /// The run's status, or what happened instead (`unmatched`, `rejected`,
    /// `not_found`, `method_not_allowed`, `bad_request`).
    pub status: String,
    /// Why no run was created, when none was.
    pub reason: Option<String>,
    pub run: Option<Run>,
}

/// The most attempts a test run makes before it is stopped.
const MAX_EXECUTIONS: usize = 100;

pub async fn run_once(
    wf: Arc<Workflow>,
    req: Inbound,
    check_signatures: bool,
    sender: Sender,
    engine: Engine,
) -> Result<CaseRun, String> {
    let store = Store::temporary().map_err(|e| e.to_string())?;
    let workflows = Arc::new(Workflows::new(store.clone(), engine));
    workflows
        .replace(Registry {
            workflows: vec![wf],
            files: Vec::new(),
            catalog: Default::default(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let reg = workflows.current();
    let now = Timestamp::now();
    let (event, runs) = match classify_with(&reg, &req, now, check_signatures) {
        Decision::Answer(a) => {
            let (status, reason) = match a {
                Answer::NotFound => (
                    "not_found",
                    "no workflow is served at this path".to_string(),
                ),
                Answer::MethodNotAllowed(m) => {
                    ("method_not_allowed", format!("use {}", m.join(", ")))
                }
                Answer::BadRequest(e) => ("bad_request", e),
                Answer::Rejected(e) => ("rejected", e),
                Answer::Unavailable(e) => ("unavailable", e),
                Answer::Accepted { .. } | Answer::Duplicate { .. } | Answer::Responded(_) => {
                    ("accepted", String::new())
                }
            };
            return Ok(CaseRun {
                status: status.into(),
                reason: Some(reason),
                run: None,
            });
        }
        Decision::Reject { reason, .. } => {
            return Ok(CaseRun {
                status: "rejected".into(),
                reason: Some(reason),
                run: None,
            })
        }
        Decision::Store { event, runs, .. } => (event, runs),
    };
    if runs.is_empty() {
        return Ok(CaseRun {
            status: "unmatched".into(),
            reason: event.reason.clone(),
            run: None,
        });
    }
    let stored = store
        .ingest(Ingest {
            event: *event,
            stored_event: None,
            runs,
            claims: Vec::new(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let Ingested::Stored { runs, .. } = stored else {
        return Err("the test store answered a duplicate".into());
    };
    let run_id = runs
        .into_iter()
        .next()
        .ok_or_else(|| "the run was not stored".to_string())?;
    let executor = Executor {
        store: store.clone(),
        workflows,
        http: sender,
        metrics: Arc::default(),
        responders: crate::run::respond::Responders::default(),
        max_delay: crate::step::delay::DEFAULT_MAX_DELAY,
        skip_waits: true,
    };
    for _ in 0..MAX_EXECUTIONS {
        // Retry waits are skipped: claim as if their time had come.
        let far = Timestamp(u64::MAX / 2);
        for claim in store.claim(far, 1).await.map_err(|e| e.to_string())? {
            let result = executor.execute(&claim).await;
            store.release(claim, false);
            result.map_err(|e| e.to_string())?;
        }
        let run = store
            .run(run_id.as_str())
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the run disappeared".to_string())?;
        if run.status.is_final() {
            return Ok(CaseRun {
                status: run.status.as_str().into(),
                reason: None,
                run: Some(run),
            });
        }
    }
    Err(format!(
        "the run did not finish within {MAX_EXECUTIONS} attempts"
    ))
}
