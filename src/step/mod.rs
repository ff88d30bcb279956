//! Steps (SPEC §6): `filter`, `transform` and `http`, each in its own file.
//! A `uses` step (SPEC §9) is an `http` step written by a connector: what
//! the connector adds at run time is in `uses.rs` and `oauth2.rs`.
//! A step decides its outcome and records what happened in its
//! [`StepRecord`]; a failure is data, never an `Err` of the executor.

pub mod filter;
pub mod http;
pub mod oauth2;
pub mod policy;
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
}

impl Action {
    pub fn kind(&self) -> StepKind {
        match self {
            Action::Filter(_) => StepKind::Filter,
            Action::Transform(_) => StepKind::Transform,
            Action::Http(_) => StepKind::Http,
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
}

/// What a step may touch while it runs.
pub struct StepEnv<'a> {
    pub workflow: &'a str,
    pub state: StateStore,
    pub http: &'a http::Sender,
    /// Blanks the workflow's secrets out of everything the record keeps
    /// (never out of the output handed to the next step).
    pub redactor: &'a crate::secret::Redactor,
}

impl Step {
    /// The connector action a `uses` step calls, `connector.action`.
    pub fn uses(&self) -> Option<&str> {
        match &self.action {
            Action::Http(h) => h.uses.as_ref().map(|u| u.name.as_str()),
            Action::Filter(_) | Action::Transform(_) => None,
        }
    }

    /// Run the step against the run context, filling in `record`.
    pub async fn run(&self, ctx: &Value, env: &StepEnv<'_>, record: &mut StepRecord) -> Outcome {
        if let Some(cond) = &self.condition {
            match cond.eval(ctx) {
                Ok(true) => {}
                Ok(false) => return Outcome::Skipped,
                Err(e) => return Outcome::Failed(format!("`if` could not be evaluated: {e}")),
            }
        }
        match &self.action {
            Action::Filter(c) => filter::run(c, ctx),
            Action::Transform(s) => transform::run(s, ctx, env, record).await,
            Action::Http(h) => h.run(ctx, env, record).await,
        }
    }
}
