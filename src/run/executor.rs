//! Executes one run: from its first unfinished step, one step at a time.
//! The run is saved after every step that waited (an `http` request, a
//! script on the blocking pool that may have written state), and a
//! delivered request is flushed before anything else happens, so a crash
//! resumes after it and never sends it again. Steps that finished in place
//! (a filter, a short script that writes no state) had no effect outside
//! the run: their results go out with the next save, and a crash before
//! it runs them again. A step still running after `SLOW_STEP` is saved as
//! running, for the API and the UI. A step failure is recorded in the run;
//! `Err` means the store itself failed.
//!
//! Secrets are redacted from what the run record keeps (outputs, errors,
//! log lines), never from the run context: a step's output goes to the next
//! step as it was. A run that resumes from the store (after a retry wait, a
//! restart or in a replay) rebuilds its context from the stored records and
//! event, so there earlier outputs hold `[redacted]` where they held a
//! secret: the store keeps no secret to rebuild them from.

use super::{into_context, RunUpdate};
use crate::record::{Run, RunStatus, StepRecord, StepStatus, Timestamp};
use crate::step::{http::Sender, Action, Outcome, StepEnv};
use crate::store::{QueueEntry, Store, StoreError};
use crate::workflow::registry::Workflows;
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tracing::{info_span, warn, Instrument};

/// A step still running after this long is saved as running, so the API
/// and the UI show it (faster steps are saved with their result only).
const SLOW_STEP: Duration = Duration::from_millis(100);

pub struct Executor {
    pub store: Store,
    pub workflows: Arc<Workflows>,
    pub http: Sender,
    pub updates: broadcast::Sender<RunUpdate>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where retries are scheduled.
    pub queue: super::worker::Queue,
}

impl Executor {
    pub fn publish(&self, run: &Run) {
        // No listener (no open UI) is the normal case: skip the copies.
        if self.updates.receiver_count() == 0 {
            return;
        }
        let _ = self.updates.send(RunUpdate {
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            status: run.status,
            event_id: run.event_id.to_string(),
        });
    }

    /// Execute the run behind a due queue entry and settle the entry.
    pub async fn execute(&self, entry: &QueueEntry) -> Result<(), StoreError> {
        let span = info_span!("run", run_id = %entry.run_id);
        self.execute_inner(entry).instrument(span).await
    }

    /// The entry is done with: remove it from the queue tree, or for a
    /// fresh run (which has none) release the store's mark.
    fn settle(&self, entry: &QueueEntry, fresh: bool) -> Result<(), StoreError> {
        if fresh {
            self.queue.settle(&entry.run_id);
            Ok(())
        } else {
            self.store.dequeue(entry)
        }
    }

    async fn execute_inner(&self, entry: &QueueEntry) -> Result<(), StoreError> {
        let fresh = self.queue.is_fresh(&entry.run_id);
        let (mut run, hot_event) = match self.queue.take_hot(&entry.run_id) {
            Some(hot) => (hot.run, Some(hot.event)),
            None => match self.store.run(entry.run_id.as_str())? {
                Some(run) => (run, None),
                None => {
                    warn!("queued run is missing from the store; dropping its queue entry");
                    return self.settle(entry, fresh);
                }
            },
        };
        // A final run, or a spare entry left by a crash while a retry was
        // being scheduled (the run's own entry is the later one).
        if run.status.is_final() || run.next_attempt_at.is_some_and(|at| at > entry.due) {
            return self.settle(entry, fresh);
        }
        let now = Timestamp::now();
        let event = match hot_event {
            Some(e) => Some(e),
            None => self.store.event_by_id(&run.event_id)?,
        };
        let Some(event) = event else {
            // Only an ingest interrupted before its event was written (and
            // so before its 202) leaves a run without its event.
            warn!(event_id = %run.event_id, "discarding a run whose event was never stored");
            self.store.discard_orphan(&entry.run_id)?;
            return self.settle(entry, fresh);
        };
        let wf = match self.workflows.version(&run.workflow_version) {
            Ok(wf) => wf,
            Err(e) => {
                self.finish(&mut run, RunStatus::Failed, Some(e))?;
                return self.settle(entry, fresh);
            }
        };
        // Stored with the first step's result: a run that is running and
        // one that is queued resume the same way.
        run.status = RunStatus::Running;
        run.started_at.get_or_insert(now);
        run.next_attempt_at = None;
        self.publish(&run);

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
            let idx = match run.steps.iter().position(|r| r.id == step.id) {
                Some(i) => i,
                None => {
                    run.steps
                        .push(StepRecord::pending(&step.id, step.action.kind()));
                    run.steps.len() - 1
                }
            };
            if run.steps[idx].status.is_done() {
                continue;
            }
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
            // The step fills in its own copy, so the run as it stands can
            // be saved while the step waits.
            let mut work = run.steps[idx].clone();
            let clock = Instant::now();
            let attempts_before = work.attempts.len();
            let (outcome, waited) = {
                let mut waited = false;
                let mut fut = std::pin::pin!(step.run(&ctx, &env, &mut work));
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
                        self.store.save_run(&run)?;
                        self.publish(&run);
                        fut.await
                    }
                };
                (outcome, waited)
            };
            run.steps[idx] = work;
            let rec = &mut run.steps[idx];
            self.metrics
                .step(&wf.name, step.action.kind(), clock.elapsed().as_secs_f64());
            for a in &rec.attempts[attempts_before..] {
                self.metrics
                    .attempt(&wf.name, a.response.as_ref().map(|r| r.status));
            }
            rec.duration_ms = Some(if is_http {
                rec.attempts.iter().map(|a| a.duration_ms).sum()
            } else {
                clock.elapsed().as_millis() as u64
            });
            for line in &mut rec.logs {
                wf.redactor.redact_str(line);
            }
            let ended = match outcome {
                Outcome::Succeeded(v) => {
                    // The record keeps a redacted copy; the next step gets
                    // the output as it was.
                    let mut kept = v.clone();
                    wf.redactor.redact_value(&mut kept);
                    rec.status = StepStatus::Succeeded;
                    rec.error = None;
                    rec.output = Some(kept);
                    if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
                        steps.insert(step.id.clone(), v);
                    }
                    None
                }
                Outcome::Skipped => {
                    rec.status = StepStatus::Skipped;
                    None
                }
                Outcome::Filtered => {
                    rec.status = StepStatus::Filtered;
                    rec.output = Some(Value::Bool(false));
                    Some((RunStatus::Filtered, None))
                }
                Outcome::Failed(mut e) => {
                    wf.redactor.redact_str(&mut e);
                    rec.status = StepStatus::Failed;
                    rec.error = Some(e.clone());
                    Some((RunStatus::Failed, Some(e)))
                }
                Outcome::Retry { mut error, at } => {
                    wf.redactor.redact_str(&mut error);
                    rec.status = StepStatus::Retrying;
                    rec.error = Some(error);
                    run.status = RunStatus::Retrying;
                    run.next_attempt_at = Some(at);
                    // New entry first: a crash in between leaves a spare
                    // entry (harmless: the run is not due before `at`),
                    // never no entry.
                    self.store.save_run(&run)?;
                    self.store.enqueue(&QueueEntry {
                        due: at,
                        run_id: run.id.clone(),
                    })?;
                    if !fresh {
                        self.store.dequeue(entry)?;
                    }
                    self.store.flush().await?;
                    // The new entry is on disk: the run no longer needs the
                    // mark.
                    self.queue.settle(&run.id);
                    self.queue.push(QueueEntry {
                        due: at,
                        run_id: run.id.clone(),
                    });
                    self.publish(&run);
                    return Ok(());
                }
            };
            let last = i + 1 == wf.steps.len();
            if let Some((status, error)) = ended.or(last.then_some((RunStatus::Succeeded, None))) {
                // The final save carries this step's result too.
                self.finish(&mut run, status, error)?;
                if is_http {
                    self.store.flush().await?;
                }
                return self.settle(entry, fresh);
            }
            // A step that finished in place (a filter, a short script) had
            // no effect outside the run: its result goes out with the next
            // save. One that waited may have had one (a request, a state
            // write): it is saved before the next step starts.
            if waited {
                self.store.save_run(&run)?;
                if is_http {
                    // A delivered request must not be sent again after a crash.
                    self.store.flush().await?;
                }
                self.publish(&run);
            }
        }
        self.finish(&mut run, RunStatus::Succeeded, None)?;
        self.settle(entry, fresh)
    }

    fn finish(
        &self,
        run: &mut Run,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        run.status = status;
        run.error = error;
        run.next_attempt_at = None;
        run.finished_at = Some(now);
        run.duration_ms = Some(now.millis_since(run.started_at.unwrap_or(now)));
        self.store.save_run(run)?;
        self.metrics.run_finished(run);
        self.publish(run);
        Ok(())
    }
}
