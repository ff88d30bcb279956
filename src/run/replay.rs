//! Replays (SPEC §6): a new run of the same event, from the start or from
//! the failed step (earlier step results reused, so earlier `http` steps are
//! not called again), on the current or the recorded workflow version. The
//! new run has its own id, so its `http` steps carry a fresh
//! Idempotency-Key. [`plan`] decides; the caller stores and wakes workers.
//!
//! From the failed step, flow control goes on where it failed (SPEC §6.1):
//! a `switch` keeps the branch it took and goes on from its failed step; a
//! `for_each` keeps its items that succeeded (or were filtered) and runs
//! the others again, each from its own failed step.

use super::new_run;
use crate::record::{ItemRecord, Run, RunStatus, StepRecord, StepStatus, Timestamp};
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
                *slot = again(failed);
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

/// A failed step's record, ready to run again from where it failed.
fn again(failed: &StepRecord) -> StepRecord {
    let mut rec = StepRecord::pending(&failed.id, failed.kind);
    // The branch stays the one taken; its steps go on from the failed one.
    if let (Some(branch), Some(steps)) = (failed.branch, &failed.steps) {
        rec.branch = Some(branch);
        rec.steps = Some(again_list(steps));
    }
    // Items that ended well are kept; the others run again.
    if let Some(items) = &failed.items {
        rec.items = Some(
            items
                .iter()
                .map(|item| match item.status {
                    StepStatus::Succeeded | StepStatus::Filtered | StepStatus::Skipped => {
                        item.clone()
                    }
                    StepStatus::Pending
                    | StepStatus::Running
                    | StepStatus::Retrying
                    | StepStatus::Waiting
                    | StepStatus::Failed => ItemRecord {
                        index: item.index,
                        status: StepStatus::Pending,
                        steps: again_list(&item.steps),
                    },
                })
                .collect(),
        );
    }
    rec
}

/// A list of records that ended at a failed step: the done ones kept, the
/// failed one ready to go again, the rest pending.
fn again_list(steps: &[StepRecord]) -> Vec<StepRecord> {
    let mut out = Vec::with_capacity(steps.len());
    let mut reached = false;
    for s in steps {
        if reached {
            out.push(StepRecord::pending(&s.id, s.kind));
        } else if s.status.is_done() {
            out.push(s.clone());
        } else {
            reached = true;
            out.push(again(s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Branch, StepKind};

    fn rec(id: &str, kind: StepKind, status: StepStatus) -> StepRecord {
        let mut r = StepRecord::pending(id, kind);
        r.status = status;
        r.output = Some(serde_json::json!(id));
        r
    }

    #[test]
    fn a_failed_loop_keeps_its_good_items_and_a_switch_its_branch() {
        let mut each = rec("lines", StepKind::ForEach, StepStatus::Failed);
        let item = |index, status, steps| ItemRecord {
            index,
            status,
            steps,
        };
        each.items = Some(vec![
            item(
                0,
                StepStatus::Succeeded,
                vec![rec("push", StepKind::Http, StepStatus::Succeeded)],
            ),
            item(
                1,
                StepStatus::Filtered,
                vec![rec("push", StepKind::Http, StepStatus::Filtered)],
            ),
            item(
                2,
                StepStatus::Failed,
                vec![
                    rec("shape", StepKind::Transform, StepStatus::Succeeded),
                    rec("push", StepKind::Http, StepStatus::Failed),
                ],
            ),
        ]);
        let again = again(&each);
        assert_eq!(again.status, StepStatus::Pending);
        assert_eq!(again.output, None);
        let items = again.items.expect("items");
        assert_eq!(items[0].status, StepStatus::Succeeded);
        assert_eq!(items[1].status, StepStatus::Filtered);
        assert_eq!(items[2].status, StepStatus::Pending);
        assert_eq!(items[2].steps[0].status, StepStatus::Succeeded, "reused");
        assert_eq!(items[2].steps[1].status, StepStatus::Pending);
        assert!(items[2].steps[1].attempts.is_empty() && items[2].steps[1].output.is_none());

        let mut switch = rec("route", StepKind::Switch, StepStatus::Failed);
        switch.branch = Some(Branch::Case(1));
        switch.steps = Some(vec![
            rec("a", StepKind::Transform, StepStatus::Succeeded),
            rec("b", StepKind::Http, StepStatus::Failed),
            rec("c", StepKind::Http, StepStatus::Pending),
        ]);
        let again = super::again(&switch);
        assert_eq!(again.branch, Some(Branch::Case(1)));
        let steps = again.steps.expect("steps");
        let statuses: Vec<StepStatus> = steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [
                StepStatus::Succeeded,
                StepStatus::Pending,
                StepStatus::Pending
            ]
        );
    }
}
