//! Steps (SPEC §6): `filter`, `transform`, `http`, and the flow control of
//! §6.1 (`switch`, `for_each`, `delay`, `respond`), each in its own file.
//! A `uses` step (SPEC §9) is an `http` step written by a connector: what
//! the connector adds at run time is in `uses.rs` and `oauth2.rs`.
//! A step decides its outcome and records what happened in its
//! [`StepRecord`]; a failure is data, never an `Err` of the executor.
//! `switch` and `for_each` hold steps of their own: they decide (which
//! branch, which items) and the executor walks what they hold.

pub mod delay;
pub mod filter;
pub mod for_each;
pub mod http;
pub mod oauth2;
pub mod policy;
pub mod respond;
pub mod switch;
pub mod transform;
pub mod uses;

use crate::expr::condition::Condition;
use crate::record::{StepKind, StepRecord, Timestamp};
use crate::store::StateStore;
use serde_json::Value;

/// One compiled step of a workflow.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    /// The step's `if`: when it does not hold the step is skipped.
    pub condition: Option<Condition>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum Action {
    Filter(Condition),
    Transform(crate::script::Script),
    Http(http::HttpAction),
    Switch(switch::Switch),
    ForEach(for_each::ForEach),
    Delay(delay::Delay),
    Respond(respond::Respond),
}

impl Action {
    pub fn kind(&self) -> StepKind {
        match self {
            Action::Filter(_) => StepKind::Filter,
            Action::Transform(_) => StepKind::Transform,
            Action::Http(_) => StepKind::Http,
            Action::Switch(_) => StepKind::Switch,
            Action::ForEach(_) => StepKind::ForEach,
            Action::Delay(_) => StepKind::Delay,
            Action::Respond(_) => StepKind::Respond,
        }
    }

    /// The steps this one holds (every branch of a switch, a loop's
    /// steps), in workflow order.
    pub fn children(&self) -> Vec<&Step> {
        match self {
            Action::Switch(s) => s
                .cases
                .iter()
                .flat_map(|c| &c.steps)
                .chain(s.default.iter().flatten())
                .collect(),
            Action::ForEach(f) => f.steps.iter().collect(),
            Action::Filter(_)
            | Action::Transform(_)
            | Action::Http(_)
            | Action::Delay(_)
            | Action::Respond(_) => Vec::new(),
        }
    }
}

/// How a step ended this time.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Filtered,
    Skipped,
    Failed(String),
    /// A retryable failure with attempts left: run again at this time.
    Retry {
        error: String,
        at: Timestamp,
    },
    /// A `delay`: wait until this time, then run the step again.
    Wait {
        until: Timestamp,
    },
    /// A `respond` step rendered this answer for the sender.
    Respond(respond::Answer),
}

/// What a step may touch while it runs.
pub struct StepEnv<'a> {
    pub workflow: &'a str,
    pub state: StateStore,
    pub http: &'a http::Sender,
    /// Blanks the workflow's secrets out of everything the record keeps
    /// (never out of the output handed to the next step).
    pub redactor: &'a crate::secret::Redactor,
    /// The indexes of the `for_each` items the step runs in, outermost
    /// first (empty outside loops): part of an `http` step's
    /// Idempotency-Key, and how test mocks tell items apart.
    pub items: &'a [usize],
    /// The longest a `delay` may wait (`--max-delay`).
    pub max_delay: std::time::Duration,
}

impl Step {
    /// The connector action a `uses` step calls, `connector.action`.
    pub fn uses(&self) -> Option<&str> {
        match &self.action {
            Action::Http(h) => h.uses.as_ref().map(|u| u.name.as_str()),
            Action::Filter(_)
            | Action::Transform(_)
            | Action::Switch(_)
            | Action::ForEach(_)
            | Action::Delay(_)
            | Action::Respond(_) => None,
        }
    }

    /// The step's `if`: `None` when the step goes ahead, else how it ends
    /// (skipped, or failed when the condition cannot be evaluated).
    pub fn blocked(&self, ctx: &Value) -> Option<Outcome> {
        match self.condition.as_ref().map(|c| c.eval(ctx)) {
            None | Some(Ok(true)) => None,
            Some(Ok(false)) => Some(Outcome::Skipped),
            Some(Err(e)) => Some(Outcome::Failed(format!("`if` could not be evaluated: {e}"))),
        }
    }

    /// Run the step against the run context, filling in `record`. A
    /// `switch` or `for_each` only decides here that it goes ahead: the
    /// executor walks the steps it holds.
    /// `ctx` is lent mutably so a step can add a key for its own templates
    /// for a while (a connector's `$.params`); it is as it was after.
    pub async fn run(
        &self,
        ctx: &mut Value,
        env: &StepEnv<'_>,
        record: &mut StepRecord,
    ) -> Outcome {
        if let Some(blocked) = self.blocked(ctx) {
            return blocked;
        }
        match &self.action {
            Action::Filter(c) => filter::run(c, ctx),
            Action::Transform(s) => transform::run(s, ctx, env, record).await,
            Action::Http(h) => h.run(ctx, env, record).await,
            Action::Delay(d) => {
                d.decide(ctx, record.output.as_ref(), Timestamp::now(), env.max_delay)
            }
            Action::Respond(r) => match r.render(ctx) {
                Ok(answer) => Outcome::Respond(answer),
                Err(e) => Outcome::Failed(e),
            },
            Action::Switch(_) | Action::ForEach(_) => Outcome::Failed(format!(
                "step `{}` holds steps: the executor walks them, it does not run it",
                self.id
            )),
        }
    }
}
