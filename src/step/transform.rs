//! The `transform` step: a compiled Rhai script whose value is the step's
//! output. It runs on the blocking pool so a slow script never stalls the
//! async runtime; the sandbox limits bound how long it can take.

use super::{Outcome, StepEnv};
use crate::record::StepRecord;
use crate::script::Script;
use serde_json::Value;

pub async fn run(
    script: &Script,
    ctx: &Value,
    env: &StepEnv<'_>,
    record: &mut StepRecord,
) -> Outcome {
    let script = script.clone();
    let ctx = ctx.clone();
    let state = Some((env.state.clone(), env.workflow.to_string()));
    let outcome = tokio::task::spawn_blocking(move || script.run(&ctx, state)).await;
    match outcome {
        Ok(out) => {
            record.logs = out.logs;
            match out.result {
                Ok(v) => Outcome::Succeeded(v),
                Err(e) => Outcome::Failed(format!("script failed: {e}")),
            }
        }
        Err(e) => Outcome::Failed(format!("script was interrupted: {e}")),
    }
}
