//! Replays (SPEC §6): a new run of the same event, from the start or from
//! the failed step (earlier step results reused, so earlier `http` steps are
//! not called again), on the current or the recorded workflow version. The
//! new run has its own id, so its `http` steps carry a fresh
//! Idempotency-Key. [`plan`] decides; the caller stores and wakes workers.

use super::new_run;
use crate::record::{Run, RunStatus, StepStatus, Timestamp};
use crate::workflow::Workflow;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum From {
    #[default]
    Start,
    FailedStep,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    #[default]
    Current,
    Recorded,
}

/// The optional body of a replay request.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default)]
    pub from: From,
    #[serde(default)]
    pub version: Version,
}

/// Build the replay of `original` on workflow `wf`.
pub fn plan(original: &Run, wf: &Workflow, from: From, now: Timestamp) -> Result<Run, String> {
    let mut run = new_run(wf, &original.event_id, now);
    run.replay_of = Some(original.id.clone());
    run.summary = original.summary.clone();
    if from == From::FailedStep {
        if original.status != RunStatus::Failed {
            return Err(format!(
                "run {} is {}, not failed: replay it from the start",
                original.id,
                original.status.as_str()
            ));
        }
        let failed = original
            .steps
            .iter()
            .find(|s| s.status == StepStatus::Failed)
            .ok_or_else(|| {
                format!(
                    "run {} has no failed step: replay it from the start",
                    original.id
                )
            })?;
        if !run.steps.iter().any(|s| s.id == failed.id) {
            return Err(format!(
                "step `{}` is not in this version of the workflow: replay from the start",
                failed.id
            ));
        }
        for slot in run.steps.iter_mut() {
            if slot.id == failed.id {
                break;
            }
            match original.steps.iter().find(|s| s.id == slot.id) {
                Some(done) if done.status.is_done() => *slot = done.clone(),
                _ => {
                    return Err(format!(
                        "step `{}` did not complete in run {}: replay from the start",
                        slot.id, original.id
                    ))
                }
            }
        }
    }
    Ok(run)
}
