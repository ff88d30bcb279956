//! Executes one claimed run: from its first unfinished step, one step at a
//! time, in three phases per step — start (the record says running), act
//! ([`Step::run`]: the only place a step touches the world), record (the
//! outcome goes into the run, and the run into the store as the outcome
//! requires).
//!
//! Saving follows what a step did. One that acted outside the run (an
//! `http` request, a script that may have written state: anything that
//! waited) is saved before the next step starts, and a delivered request is
//! durable before anything else happens, so a crash resumes after it and
//! never sends it again. Steps that finished in place (a filter, a short
//! script that writes no state) had no effect outside the run: their
//! results go out with the next save, and a crash before it runs them
//! again. A step still running after `SLOW_STEP` is saved as running, for
//! the API and the UI. A step failure is recorded in the run; `Err` means
//! the store itself failed.
//!
//! Before each step the claim is confirmed ([`Store::hold`]); a store
//! shared by several nodes answers [`StoreError::LeaseLost`] when another
//! node took the run over, and the executor then stops quietly.
//!
//! Secrets are redacted from what the run record keeps (outputs, errors,
//! log lines), never from the run context: a step's output goes to the next
//! step as it was.

use super::into_context;
use crate::record::{Run, RunStatus, StepRecord, StepStatus, Timestamp};
use crate::step::{http::Sender, Action, Outcome, Step, StepEnv};
use crate::store::{Claim, Durability, Store, StoreError};
use crate::workflow::registry::Workflows;
use crate::workflow::Workflow;
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, info_span, Instrument};

/// A step still running after this long is saved as running, so the API
/// and the UI show it (faster steps are saved with their result only).
const SLOW_STEP: Duration = Duration::from_millis(100);

pub struct Executor {
    pub store: Store,
    pub workflows: Arc<Workflows>,
    pub http: Sender,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What the run does after a step.
enum Next {
    /// Go on with the next step.
    Continue,
    /// The run ended with this status (and error).
    End(RunStatus, Option<String>),
    /// The run waits for a later time; it is stored as such.
    Wait,
}

impl Executor {
    /// Execute the claimed run as far as it goes now.
    pub async fn execute(&self, claim: &Claim) -> Result<(), StoreError> {
        let span = info_span!("run", run_id = %claim.run_id);
        match self.execute_inner(claim).instrument(span).await {
            // Another node took the run over and carries it on: this one
            // stops here and writes nothing more.
            Err(StoreError::LeaseLost { run_id }) => {
                info!(%run_id, "run taken over by another node; stopping here");
                Ok(())
            }
            other => other,
        }
    }

    async fn execute_inner(&self, claim: &Claim) -> Result<(), StoreError> {
        let Some((mut run, event)) = self.store.load(claim).await? else {
            return Ok(());
        };
        let wf = match self.workflows.version(&run.workflow_version).await {
            Ok(wf) => wf,
            Err(e) => {
                return self
                    .finish(claim, &mut run, RunStatus::Failed, Some(e), false)
                    .await
            }
        };
        // Stored with the first step's result: a run that is running and
        // one that is queued resume the same way.
        run.status = RunStatus::Running;
        run.started_at.get_or_insert(Timestamp::now());
        run.next_attempt_at = None;
        self.store.publish(&run);

        // Outputs of the steps finished before a crash or a retry wait.
        let mut outputs = Map::new();
        for s in &run.steps {
            if let (StepStatus::Succeeded, Some(out)) = (s.status, &s.output) {
                outputs.insert(s.id.clone(), out.clone());
            }
        }
        let mut ctx = into_context(event, &wf.name, Some(&run.id), run.attempt.max(1), outputs);
        let env = StepEnv {
            workflow: &wf.name,
            state: self.store.state(),
            http: &self.http,
            redactor: &wf.redactor,
        };

        for (i, step) in wf.steps.iter().enumerate() {
            let idx = slot(&mut run, step);
            if run.steps[idx].status.is_done() {
                continue;
            }
            let is_http = matches!(step.action, Action::Http(_));
            // A step may act outside the run: only while the claim holds.
            self.store.hold(claim).await?;
            let (outcome, waited) = self.act(claim, &mut run, idx, step, &mut ctx, &env).await?;
            let last = i + 1 == wf.steps.len();
            match self.record(&wf, &mut run, idx, step, outcome, &mut ctx) {
                Next::Continue if !last => {
                    if waited {
                        // A delivered request must not be sent again after
                        // a crash; a script's state write is saved with it.
                        let d = if is_http {
                            Durability::Now
                        } else {
                            Durability::Lazy
                        };
                        self.store.save(claim, &run, d).await?;
                        self.store.crash_point("step.saved");
                        self.store.publish(&run);
                    }
                }
                Next::Continue => {
                    return self
                        .finish(claim, &mut run, RunStatus::Succeeded, None, is_http)
                        .await
                }
                Next::End(status, error) => {
                    // The final save carries this step's result too.
                    return self.finish(claim, &mut run, status, error, is_http).await;
                }
                Next::Wait => return self.store.schedule(claim, &run).await,
            }
        }
        self.finish(claim, &mut run, RunStatus::Succeeded, None, false)
            .await
    }

    /// Run one step: mark it running, let it act, and put its record back.
    /// Returns the outcome and whether the step waited (acted outside the
    /// run, or took long enough to be saved as running).
    async fn act(
        &self,
        claim: &Claim,
        run: &mut Run,
        idx: usize,
        step: &Step,
        ctx: &mut Value,
        env: &StepEnv<'_>,
    ) -> Result<(Outcome, bool), StoreError> {
        let is_http = matches!(step.action, Action::Http(_));
        run.attempt = if is_http {
            run.steps[idx].attempts.len() as u32 + 1
        } else {
            1
        };
        {
            let rec = &mut run.steps[idx];
            rec.status = StepStatus::Running;
            rec.started_at.get_or_insert(Timestamp::now());
        }
        if let Some(r) = ctx.get_mut("run") {
            r["attempt"] = Value::from(run.attempt);
        }
        self.store.crash_point("step.started");
        // The step fills in its own copy, so the run as it stands can be
        // saved while the step waits.
        let mut work = run.steps[idx].clone();
        let clock = Instant::now();
        let attempts_before = work.attempts.len();
        let (outcome, waited) = {
            let mut waited = false;
            let mut fut = std::pin::pin!(step.run(ctx, env, &mut work));
            let fut = std::future::poll_fn(|cx| {
                let poll = fut.as_mut().poll(cx);
                waited |= poll.is_pending();
                poll
            });
            let mut fut = std::pin::pin!(fut);
            let outcome = tokio::select! {
                biased;
                outcome = &mut fut => outcome,
                () = tokio::time::sleep(SLOW_STEP) => {
                    // Show a slow step as running, with what came before.
                    self.store.save(claim, run, Durability::Lazy).await?;
                    self.store.publish(run);
                    fut.await
                }
            };
            (outcome, waited)
        };
        self.store.crash_point("step.acted");
        run.steps[idx] = work;
        let rec = &mut run.steps[idx];
        let kind = step.action.kind();
        self.metrics
            .step(env.workflow, kind, clock.elapsed().as_secs_f64());
        for a in &rec.attempts[attempts_before..] {
            self.metrics
                .attempt(env.workflow, a.response.as_ref().map(|r| r.status));
        }
        rec.duration_ms = Some(if is_http {
            rec.attempts.iter().map(|a| a.duration_ms).sum()
        } else {
            clock.elapsed().as_millis() as u64
        });
        Ok((outcome, waited))
    }

    /// Put a step's outcome into the run (and its output into the context
    /// for the steps after it); decide what the run does next.
    fn record(
        &self,
        wf: &Workflow,
        run: &mut Run,
        idx: usize,
        step: &Step,
        outcome: Outcome,
        ctx: &mut Value,
    ) -> Next {
        let rec = &mut run.steps[idx];
        for line in &mut rec.logs {
            wf.redactor.redact_str(line);
        }
        match outcome {
            Outcome::Succeeded(v) => {
                // The record keeps a redacted copy; the next step gets the
                // output as it was.
                let mut kept = v.clone();
                wf.redactor.redact_value(&mut kept);
                rec.status = StepStatus::Succeeded;
                rec.error = None;
                rec.output = Some(kept);
                if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
                    steps.insert(step.id.clone(), v);
                }
                Next::Continue
            }
            Outcome::Skipped => {
                rec.status = StepStatus::Skipped;
                Next::Continue
            }
            Outcome::Filtered => {
                rec.status = StepStatus::Filtered;
                rec.output = Some(Value::Bool(false));
                Next::End(RunStatus::Filtered, None)
            }
            Outcome::Failed(mut e) => {
                wf.redactor.redact_str(&mut e);
                rec.status = StepStatus::Failed;
                rec.error = Some(e.clone());
                Next::End(RunStatus::Failed, Some(e))
            }
            Outcome::Retry { mut error, at } => {
                wf.redactor.redact_str(&mut error);
                rec.status = StepStatus::Retrying;
                rec.error = Some(error);
                run.status = RunStatus::Retrying;
                run.next_attempt_at = Some(at);
                Next::Wait
            }
        }
    }

    async fn finish(
        &self,
        claim: &Claim,
        run: &mut Run,
        status: RunStatus,
        error: Option<String>,
        after_request: bool,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        run.status = status;
        run.error = error;
        run.next_attempt_at = None;
        run.finished_at = Some(now);
        run.duration_ms = Some(now.millis_since(run.started_at.unwrap_or(now)));
        let d = if after_request {
            Durability::Now
        } else {
            Durability::Lazy
        };
        self.store.finish(claim, run, d).await?;
        self.metrics.run_finished(run);
        Ok(())
    }
}

/// The index of `step`'s record in the run, added (pending) when the run
/// was created by another version of the workflow that lacked it.
fn slot(run: &mut Run, step: &Step) -> usize {
    match run.steps.iter().position(|r| r.id == step.id) {
        Some(i) => i,
        None => {
            run.steps
                .push(StepRecord::pending(&step.id, step.action.kind()));
            run.steps.len() - 1
        }
    }
}
