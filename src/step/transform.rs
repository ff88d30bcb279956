//! The `transform` step: a compiled Rhai script whose value is the step's
//! output. Short scripts run in place; one that takes more than a few
//! thousand operations or a couple of milliseconds, or writes state, gives
//! up there without effect and runs on the blocking pool, so a slow script
//! never stalls the async runtime. The sandbox's wall-time limit bounds how
//! long it can take there.

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
    let state = Some((env.state.clone(), env.workflow.to_string()));
    let outcome = match script.try_inline(ctx, state.clone()) {
        Some(out) => Ok(out),
        None => {
            let (script, ctx) = (script.clone(), ctx.clone());
            tokio::task::spawn_blocking(move || script.run(&ctx, state)).await
        }
    };
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
