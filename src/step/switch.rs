//! The `switch` step (SPEC §6.1): cases with `when` conditions, the first
//! that holds picks its branch, else the optional `default`. Choosing is
//! pure ([`Switch::choose`]); the executor walks the chosen branch's steps
//! and records the choice, so a run that resumes keeps the branch it took.

use super::Step;
use crate::expr::condition::Condition;
use crate::record::Branch;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Switch {
    pub cases: Vec<Case>,
    /// Runs when no case holds; without it the step is skipped.
    pub default: Option<Vec<Step>>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub when: Condition,
    pub steps: Vec<Step>,
}

impl Switch {
    /// The first case whose `when` holds, else `default` (when there is
    /// one), else [`Branch::None`]. A `when` that cannot be evaluated is
    /// an error: the step fails rather than take another branch.
    pub fn choose(&self, ctx: &Value) -> Result<Branch, String> {
        for (i, case) in self.cases.iter().enumerate() {
            match case.when.eval(ctx) {
                Ok(true) => return Ok(Branch::Case(i)),
                Ok(false) => {}
                Err(e) => return Err(format!("case {i}: `when` could not be evaluated: {e}")),
            }
        }
        Ok(if self.default.is_some() {
            Branch::Default
        } else {
            Branch::None
        })
    }

    /// The steps of a branch; `None` for [`Branch::None`], or a branch this
    /// version of the workflow does not have (a record made by another).
    pub fn branch(&self, branch: Branch) -> Option<&[Step]> {
        match branch {
            Branch::Case(i) => self.cases.get(i).map(|c| c.steps.as_slice()),
            Branch::Default => self.default.as_deref(),
            Branch::None => None,
        }
    }
}
