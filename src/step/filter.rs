//! The `filter` step: a condition that ends the run as `filtered` when it
//! does not hold. Its output is `true`.

use super::Outcome;
use crate::expr::condition::Condition;
use serde_json::Value;

pub fn run(condition: &Condition, ctx: &Value) -> Outcome {
    match condition.eval(ctx) {
        Ok(true) => Outcome::Succeeded(Value::Bool(true)),
        Ok(false) => Outcome::Filtered,
        Err(e) => Outcome::Failed(format!("filter could not be evaluated: {e}")),
    }
}
