//! Executes one claimed run: from its first unfinished step, one step at a
//! time, in three phases per step — start (the record says running), act
//! ([`Step::run`]: the only place a step touches the world), record (the
//! outcome goes into the run, and the run into the store as the outcome
//! requires).
//!
//! One function walks a list of steps (`Walk::walk`): the workflow's own,
//! a `switch`'s chosen branch, and each item of a `for_each`, which runs up
//! to `concurrency` items at once. Each list's records live in the run
//! (at a `Place`: the run's steps, a switch's `steps`, an item's
//! `steps`), so what is saved is always the whole run as it stands. A
//! switch keeps the branch it took and a loop its items, so a run that
//! resumes goes on where it stopped: settled items are not run again.
//!
//! Saving follows what a step did. One that acted outside the run (an
//! `http` request, a script that may have written state: anything that
//! waited) is saved before the next step starts, and a delivered request is
//! durable before anything else happens, so a crash resumes after it and
//! never sends it again. The same holds inside a loop: an item that acted
//! outside the run is saved when it settles. Steps that finished in place
//! (a filter, a short script that writes no state) had no effect outside
//! the run: their results go out with the next save, and a crash before it
//! runs them again. A step still running after `SLOW_STEP` is saved as
//! running, for the API and the UI. A step failure is recorded in the run;
//! `Err` means the store itself failed.
//!
//! A run that must wait (a retry, a `delay`) is stored with its wake-up
//! time and lets its worker go. A `respond` step's answer is handed to the
//! request that waits for it ([`Responders`]); a run that ends without one
//! tells that request so, and it answers `202`.
//!
//! Before each step acts the claim is confirmed (`Store::hold`); a store
//! shared by several nodes answers `StoreError::LeaseLost` when another
//! node took the run over, and the executor then stops quietly.
//!
//! Secrets are redacted from what the run record keeps (outputs, errors,
//! log lines), never from the run context: a step's output goes to the next
//! step as it was.

use super::into_context;
use super::respond::Responders;
use crate::record::{
    Branch, EventId, ItemRecord, Run, RunStatus, StepKind, StepRecord, StepStatus, Timestamp,
};
use crate::step::for_each::ForEach;
use crate::step::switch::Switch;
use crate::step::{http::Sender, Action, Outcome, Step, StepEnv};
use crate::store::{Claim, Durability, Store, StoreError};
use crate::workflow::registry::Workflows;
use crate::workflow::Workflow;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info_span, Instrument};

/// A step still running after this long is saved as running, so the API
/// and the UI show it (faster steps are saved with their result only).
const SLOW_STEP: Duration = Duration::from_millis(100);

pub struct Executor {
    pub store: Store,
    pub workflows: Arc<Workflows>,
    pub http: Sender,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Requests waiting for the `respond` step of a run.
    pub responders: Responders,
    /// The longest a `delay` may wait (`--max-delay`).
    pub max_delay: Duration,
    /// Tests and dry runs: a `delay` is over at once (its output still
    /// says until when it would have waited).
    pub skip_waits: bool,
}

/// How a list of steps, or one step, ended this time.
#[derive(Debug)]
enum Flow {
    /// Every step is done; the output of the last one that ran (`null`
    /// when none did).
    Done(Value),
    /// One step, skipped (its `if`, or a switch with no branch to take).
    Skipped,
    /// A `filter` ended the list: the run, or inside a loop the item.
    Filtered,
    Failed(String),
    /// To go on at a later time.
    Later {
        at: Timestamp,
        why: Later,
    },
}

/// Why a run waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Later {
    Retry,
    Delay,
}

/// A flow, and what the steps did on the way (which decides the saves).
struct Went {
    flow: Flow,
    /// Some step acted outside the run, or took long.
    waited: bool,
    /// A request's answer is recorded in memory but not yet on disk.
    unsaved_request: bool,
}

impl Went {
    fn step(flow: Flow) -> Went {
        Went {
            flow,
            waited: false,
            unsaved_request: false,
        }
    }
}

/// Where a list of step records lives in a run.
#[derive(Debug, Clone, Default)]
struct Place(Vec<Nest>);

#[derive(Debug, Clone, Copy)]
enum Nest {
    /// The steps of the switch at this index: its chosen branch.
    Branch { step: usize },
    /// The steps of one item of the for_each at this index.
    Item { step: usize, item: usize },
}

impl Place {
    fn branch(&self, step: usize) -> Place {
        let mut p = self.clone();
        p.0.push(Nest::Branch { step });
        p
    }

    fn item(&self, step: usize, item: usize) -> Place {
        let mut p = self.clone();
        p.0.push(Nest::Item { step, item });
        p
    }

    fn records<'r>(&self, run: &'r mut Run) -> Option<&'r mut Vec<StepRecord>> {
        let mut list = &mut run.steps;
        for nest in &self.0 {
            list = match *nest {
                Nest::Branch { step } => list.get_mut(step)?.steps.as_mut()?,
                Nest::Item { step, item } => {
                    &mut list.get_mut(step)?.items.as_mut()?.get_mut(item)?.steps
                }
            };
        }
        Some(list)
    }
}

/// What the steps of one list see: the run context (with `$.item` and
/// `$.index` inside a loop, and the outputs of the steps before them), and
/// the indexes of the loop items they run in.
struct Scope {
    ctx: Value,
    items: Vec<usize>,
}

impl Scope {
    /// `$.steps.<id>` for the steps after this one.
    fn set_output(&mut self, id: &str, v: Value) {
        if let Some(Value::Object(steps)) = self.ctx.get_mut("steps") {
            steps.insert(id.to_string(), v);
        }
    }

    /// The outputs of a step finished in an earlier execution, for the
    /// steps after it. A switch's branch shares its scope: its steps'
    /// outputs are restored too (a loop's items have their own).
    fn restore(&mut self, rec: &StepRecord) {
        if rec.status == StepStatus::Succeeded {
            if let Some(out) = &rec.output {
                self.set_output(&rec.id, out.clone());
            }
        }
        if rec.kind == StepKind::Switch {
            for child in rec.steps.iter().flatten() {
                self.restore(child);
            }
        }
    }
}

type Walked<'s> = Pin<Box<dyn Future<Output = Result<Went, StoreError>> + Send + 's>>;

impl Executor {
    /// Execute the claimed run as far as it goes now.
    pub async fn execute(&self, claim: &Claim) -> Result<(), StoreError> {
        let span = info_span!("run", run_id = %claim.run_id);
        match self.execute_inner(claim).instrument(span).await {
            // Another node took the run over and carries it on: this one
            // stops here and writes nothing more.
            Err(StoreError::LeaseLost { run_id }) => {
                tracing::info!(%run_id, "run taken over by another node; stopping here");
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

        // Outputs of the steps finished before a crash or a wait are put
        // back as the walk passes them.
        let ctx = into_context(
            event,
            &wf.name,
            Some(&run.id),
            run.attempt.max(1),
            Map::new(),
        );
        let mut scope = Scope {
            ctx,
            items: Vec::new(),
        };
        let walk = Walk {
            exec: self,
            claim,
            wf: &wf,
            event: run.event_id.clone(),
            run: tokio::sync::Mutex::new(run),
        };
        let went = walk.walk(&wf.steps, &Place::default(), &mut scope).await?;
        let mut run = walk.run.into_inner();
        let after_request = went.unsaved_request;
        match went.flow {
            Flow::Done(_) | Flow::Skipped => {
                self.finish(claim, &mut run, RunStatus::Succeeded, None, after_request)
                    .await
            }
            Flow::Filtered => {
                self.finish(claim, &mut run, RunStatus::Filtered, None, after_request)
                    .await
            }
            Flow::Failed(e) => {
                self.finish(claim, &mut run, RunStatus::Failed, Some(e), after_request)
                    .await
            }
            Flow::Later { at, why } => {
                run.status = match why {
                    Later::Retry => RunStatus::Retrying,
                    Later::Delay => RunStatus::Waiting,
                };
                run.next_attempt_at = Some(at);
                self.store.schedule(claim, &run).await
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
        // A request still waiting for this run's `respond` step gets its
        // 202 now.
        self.responders.ended(&run.event_id, &run.workflow);
        Ok(())
    }
}

/// One run being executed: what every list of its steps shares.
struct Walk<'a> {
    exec: &'a Executor,
    claim: &'a Claim,
    wf: &'a Workflow,
    event: EventId,
    /// The run as it stands. Items of a loop run at once and each updates
    /// its own records; a save holds the lock while it writes, so saves
    /// reach the store in order and each carries every earlier change.
    run: tokio::sync::Mutex<Run>,
}

impl Walk<'_> {
    fn env<'e>(&'e self, items: &'e [usize]) -> StepEnv<'e> {
        StepEnv {
            workflow: &self.wf.name,
            state: self.exec.store.state(),
            http: &self.exec.http,
            redactor: &self.wf.redactor,
            items,
            max_delay: self.exec.max_delay,
        }
    }

    /// Change the record at `idx` of the list at `place`.
    async fn edit<R>(
        &self,
        place: &Place,
        idx: usize,
        f: impl FnOnce(&mut StepRecord) -> R,
    ) -> Result<R, StoreError> {
        let mut run = self.run.lock().await;
        let id = run.id.to_string();
        match place.records(&mut run).and_then(|list| list.get_mut(idx)) {
            Some(rec) => Ok(f(rec)),
            None => Err(StoreError::Corrupt {
                key: id,
                reason: format!("the run has no step record at {place:?}, step {idx}"),
            }),
        }
    }

    /// Save the run as it stands, and tell live listeners.
    async fn save(&self, durability: Durability) -> Result<(), StoreError> {
        let run = self.run.lock().await;
        self.exec.store.save(self.claim, &run, durability).await?;
        self.exec.store.publish(&run);
        Ok(())
    }

    /// The index of `step`'s record in the list at `place`, added
    /// (pending) when the run was made by another version of the workflow
    /// that lacked it, or had a step of another kind by that id.
    async fn slot(&self, place: &Place, step: &Step) -> Result<usize, StoreError> {
        let mut run = self.run.lock().await;
        let id = run.id.to_string();
        let Some(list) = place.records(&mut run) else {
            return Err(StoreError::Corrupt {
                key: id,
                reason: format!("the run has no step records at {place:?}"),
            });
        };
        let kind = step.action.kind();
        let fresh = StepRecord::pending(&step.id, kind).with_uses(step.uses());
        Ok(match list.iter().position(|r| r.id == step.id) {
            Some(i) => {
                if list[i].kind != kind && !list[i].status.is_done() {
                    list[i] = fresh;
                }
                i
            }
            None => {
                list.push(fresh);
                list.len() - 1
            }
        })
    }

    /// Walk a list of steps from its first unfinished one: the workflow's
    /// own, a switch's branch, or one item's.
    fn walk<'s>(&'s self, steps: &'s [Step], place: &'s Place, scope: &'s mut Scope) -> Walked<'s> {
        Box::pin(async move {
            let mut waited = false;
            let mut unsaved_request = false;
            let mut last = Value::Null;
            for (i, step) in steps.iter().enumerate() {
                let idx = self.slot(place, step).await?;
                let done = self
                    .edit(place, idx, |r| r.status.is_done().then(|| r.clone()))
                    .await?;
                if let Some(rec) = done {
                    match rec.status {
                        // A list a filter ended stays ended.
                        StepStatus::Filtered => {
                            return Ok(Went {
                                flow: Flow::Filtered,
                                waited,
                                unsaved_request,
                            })
                        }
                        StepStatus::Succeeded => last = rec.output.clone().unwrap_or(Value::Null),
                        StepStatus::Skipped
                        | StepStatus::Pending
                        | StepStatus::Running
                        | StepStatus::Retrying
                        | StepStatus::Waiting
                        | StepStatus::Failed => {}
                    }
                    scope.restore(&rec);
                    continue;
                }
                let went = self.step(step, place, idx, scope).await?;
                waited |= went.waited;
                unsaved_request |= went.unsaved_request;
                match went.flow {
                    Flow::Done(out) => last = out,
                    Flow::Skipped => {}
                    flow @ (Flow::Filtered | Flow::Failed(_) | Flow::Later { .. }) => {
                        return Ok(Went {
                            flow,
                            waited,
                            unsaved_request,
                        })
                    }
                }
                if went.waited && i + 1 < steps.len() {
                    // A delivered request must not be sent again after a
                    // crash; a script's state write is saved with it.
                    let d = if unsaved_request {
                        Durability::Now
                    } else {
                        Durability::Lazy
                    };
                    self.save(d).await?;
                    unsaved_request = false;
                    self.exec.store.crash_point("step.saved");
                }
            }
            Ok(Went {
                flow: Flow::Done(last),
                waited,
                unsaved_request,
            })
        })
    }

    async fn step(
        &self,
        step: &Step,
        place: &Place,
        idx: usize,
        scope: &mut Scope,
    ) -> Result<Went, StoreError> {
        match &step.action {
            Action::Switch(sw) => self.switch(step, sw, place, idx, scope).await,
            Action::ForEach(each) => self.for_each(step, each, place, idx, scope).await,
            Action::Filter(_)
            | Action::Transform(_)
            | Action::Http(_)
            | Action::Delay(_)
            | Action::Respond(_) => self.leaf(step, place, idx, scope).await,
        }
    }

    /// Run one step that holds no others: mark it running, let it act, and
    /// record its outcome.
    async fn leaf(
        &self,
        step: &Step,
        place: &Place,
        idx: usize,
        scope: &mut Scope,
    ) -> Result<Went, StoreError> {
        let is_http = matches!(step.action, Action::Http(_));
        let mut work = self
            .edit(place, idx, |rec| {
                rec.status = StepStatus::Running;
                rec.started_at.get_or_insert(Timestamp::now());
                rec.clone()
            })
            .await?;
        let attempt = if is_http {
            work.attempts.len() as u32 + 1
        } else {
            1
        };
        self.run.lock().await.attempt = attempt;
        if let Some(r) = scope.ctx.get_mut("run") {
            r["attempt"] = Value::from(attempt);
        }
        self.exec.store.crash_point("step.started");
        // A step may act outside the run: only while the claim holds.
        self.exec.store.hold(self.claim).await?;
        let env = self.env(&scope.items);
        let clock = Instant::now();
        let attempts_before = work.attempts.len();
        let (mut outcome, waited) = self.act(step, &mut scope.ctx, &env, &mut work).await?;
        self.exec.store.crash_point("step.acted");
        if let (Outcome::Wait { until }, true) = (&outcome, self.exec.skip_waits) {
            let until = until.to_rfc3339();
            work.logs.push(format!(
                "would wait until {until}; tests and dry runs do not wait"
            ));
            outcome = Outcome::Succeeded(serde_json::json!({ crate::step::delay::UNTIL: until }));
        }
        let kind = step.action.kind();
        self.exec
            .metrics
            .step(&self.wf.name, kind, clock.elapsed().as_secs_f64());
        for a in &work.attempts[attempts_before..] {
            self.exec
                .metrics
                .attempt(&self.wf.name, a.response.as_ref().map(|r| r.status));
        }
        work.duration_ms = Some(if is_http {
            work.attempts.iter().map(|a| a.duration_ms).sum()
        } else {
            clock.elapsed().as_millis() as u64
        });
        let flow = self.record(&step.id, &mut work, outcome, scope);
        self.edit(place, idx, |rec| *rec = work).await?;
        Ok(Went {
            flow,
            waited,
            unsaved_request: is_http,
        })
    }

    /// Let the step act on its own copy of its record, so the run as it
    /// stands can be saved while the step waits. Returns the outcome and
    /// whether the step waited (acted outside the run, or took long
    /// enough to be saved as running).
    async fn act(
        &self,
        step: &Step,
        ctx: &mut Value,
        env: &StepEnv<'_>,
        work: &mut StepRecord,
    ) -> Result<(Outcome, bool), StoreError> {
        let mut waited = false;
        let mut fut = std::pin::pin!(step.run(ctx, env, work));
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
                self.save(Durability::Lazy).await?;
                fut.await
            }
        };
        Ok((outcome, waited))
    }

    /// Put a step's outcome into its record (and its output into the
    /// scope for the steps after it).
    fn record(&self, id: &str, rec: &mut StepRecord, outcome: Outcome, scope: &mut Scope) -> Flow {
        for line in &mut rec.logs {
            self.redact_str(line);
        }
        match outcome {
            Outcome::Succeeded(v) => {
                self.succeeded(id, rec, v.clone(), scope);
                Flow::Done(v)
            }
            Outcome::Skipped => {
                rec.status = StepStatus::Skipped;
                Flow::Skipped
            }
            Outcome::Filtered => {
                rec.status = StepStatus::Filtered;
                rec.output = Some(Value::Bool(false));
                Flow::Filtered
            }
            Outcome::Failed(mut e) => {
                self.redact_str(&mut e);
                rec.status = StepStatus::Failed;
                rec.error = Some(e.clone());
                Flow::Failed(e)
            }
            Outcome::Retry { mut error, at } => {
                self.redact_str(&mut error);
                rec.status = StepStatus::Retrying;
                rec.error = Some(error);
                Flow::Later {
                    at,
                    why: Later::Retry,
                }
            }
            Outcome::Wait { until } => {
                rec.status = StepStatus::Waiting;
                rec.error = None;
                rec.output = Some(serde_json::json!({
                    crate::step::delay::UNTIL: until.to_rfc3339()
                }));
                Flow::Later {
                    at: until,
                    why: Later::Delay,
                }
            }
            Outcome::Respond(answer) => {
                let output = answer.output();
                let line = if self
                    .exec
                    .responders
                    .answer(&self.event, &self.wf.name, answer)
                {
                    "answered the sender"
                } else {
                    "no request was waiting for this answer (it was answered 202 already, or this run resumed or is a replay)"
                };
                rec.logs.push(line.to_string());
                self.succeeded(id, rec, output.clone(), scope);
                Flow::Done(output)
            }
        }
    }

    /// Redact what a record keeps: the workflow's secrets, and those learnt
    /// while running (OAuth2 tokens a connector fetched).
    fn redact_str(&self, s: &mut String) {
        self.wf.redactor.redact_str(s);
        crate::secret::learnt().redactor().redact_str(s);
    }

    fn redact_value(&self, v: &mut Value) {
        self.wf.redactor.redact_value(v);
        crate::secret::learnt().redactor().redact_value(v);
    }

    /// The record keeps a redacted copy; the steps after get the output as
    /// it was.
    fn succeeded(&self, id: &str, rec: &mut StepRecord, v: Value, scope: &mut Scope) {
        let mut kept = v.clone();
        self.redact_value(&mut kept);
        rec.status = StepStatus::Succeeded;
        rec.error = None;
        rec.output = Some(kept);
        scope.set_output(id, v);
    }

    /// A step that holds others ends: its record, its output, its flow.
    async fn close(
        &self,
        step: &Step,
        place: &Place,
        idx: usize,
        flow: Flow,
        scope: &mut Scope,
    ) -> Result<Flow, StoreError> {
        let mut kept = None;
        if let Flow::Done(v) = &flow {
            let mut k = v.clone();
            self.redact_value(&mut k);
            kept = Some(k);
            scope.set_output(&step.id, v.clone());
        }
        let mut flow = flow;
        let now = Timestamp::now();
        self.edit(place, idx, |rec| {
            rec.duration_ms = rec.started_at.map(|t| now.millis_since(t));
            match &mut flow {
                Flow::Done(_) => {
                    rec.status = StepStatus::Succeeded;
                    rec.error = None;
                    rec.output = kept;
                }
                Flow::Skipped => rec.status = StepStatus::Skipped,
                Flow::Filtered => rec.status = StepStatus::Filtered,
                Flow::Failed(e) => {
                    self.redact_str(e);
                    rec.status = StepStatus::Failed;
                    rec.error = Some(e.clone());
                }
                Flow::Later { .. } => rec.status = StepStatus::Retrying,
            }
        })
        .await?;
        Ok(flow)
    }

    /// Start a step that holds others: `None` when it goes ahead, else how
    /// it ended (its `if` did not hold, or could not be evaluated).
    async fn start(
        &self,
        step: &Step,
        place: &Place,
        idx: usize,
        scope: &mut Scope,
    ) -> Result<Option<Flow>, StoreError> {
        if let Some(outcome) = step.blocked(&scope.ctx) {
            let flow = {
                let mut rec = self.edit(place, idx, |r| r.clone()).await?;
                let flow = self.record(&step.id, &mut rec, outcome, scope);
                self.edit(place, idx, |r| *r = rec).await?;
                flow
            };
            return Ok(Some(flow));
        }
        self.edit(place, idx, |rec| {
            rec.status = StepStatus::Running;
            rec.started_at.get_or_insert(Timestamp::now());
        })
        .await?;
        Ok(None)
    }

    /// A `switch`: choose a branch (once: a run that resumes keeps the one
    /// it took), then walk it. Its output is the branch's last output.
    async fn switch(
        &self,
        step: &Step,
        sw: &Switch,
        place: &Place,
        idx: usize,
        scope: &mut Scope,
    ) -> Result<Went, StoreError> {
        let clock = Instant::now();
        let branch = match self.branch_of(step, sw, place, idx, scope).await? {
            Ok(branch) => branch,
            Err(flow) => return Ok(Went::step(flow)),
        };
        let went = match (branch, sw.branch(branch)) {
            (Branch::None, _) => Went::step(Flow::Skipped),
            (_, None) => Went::step(Flow::Failed(format!(
                "the branch this run took ({}) is not in this version of the workflow; replay the run from the start",
                serde_json::to_string(&branch).unwrap_or_default()
            ))),
            (_, Some(steps)) => self.walk(steps, &place.branch(idx), scope).await?,
        };
        let flow = self.close(step, place, idx, went.flow, scope).await?;
        self.exec.metrics.step(
            &self.wf.name,
            StepKind::Switch,
            clock.elapsed().as_secs_f64(),
        );
        Ok(Went { flow, ..went })
    }

    /// The branch a switch takes: the one it took before (a run that
    /// resumes, or is replayed from its failed step), else the first case
    /// that holds now, recorded with its steps pending. `Err`: the step
    /// ended instead (its `if`, or a `when` that could not be evaluated).
    async fn branch_of(
        &self,
        step: &Step,
        sw: &Switch,
        place: &Place,
        idx: usize,
        scope: &mut Scope,
    ) -> Result<Result<Branch, Flow>, StoreError> {
        let (status, recorded) = self.edit(place, idx, |r| (r.status, r.branch)).await?;
        if let Some(taken) = recorded.filter(|b| *b != Branch::None) {
            if status == StepStatus::Pending {
                self.edit(place, idx, |rec| {
                    rec.status = StepStatus::Running;
                    rec.started_at.get_or_insert(Timestamp::now());
                })
                .await?;
            }
            return Ok(Ok(taken));
        }
        if let Some(flow) = self.start(step, place, idx, scope).await? {
            return Ok(Err(flow));
        }
        let branch = match sw.choose(&scope.ctx) {
            Ok(b) => b,
            Err(e) => {
                let flow = self.close(step, place, idx, Flow::Failed(e), scope).await?;
                return Ok(Err(flow));
            }
        };
        let pending: Vec<StepRecord> = sw
            .branch(branch)
            .unwrap_or_default()
            .iter()
            .map(|s| StepRecord::pending(&s.id, s.action.kind()).with_uses(s.uses()))
            .collect();
        self.edit(place, idx, |rec| {
            rec.branch = Some(branch);
            rec.steps = Some(pending);
        })
        .await?;
        Ok(Ok(branch))
    }

    /// A `for_each`: its items (decided once, recorded as pending), then
    /// every item not settled yet, up to `concurrency` at once, in index
    /// order. An item that must wait (a retry) stops new items from
    /// starting, so at concurrency 1 the order holds; the loop then waits
    /// for the earliest of them. A failed item fails the loop once every
    /// other item has settled.
    async fn for_each(
        &self,
        step: &Step,
        each: &ForEach,
        place: &Place,
        idx: usize,
        scope: &mut Scope,
    ) -> Result<Went, StoreError> {
        let clock = Instant::now();
        let fresh = self
            .edit(place, idx, |r| r.status == StepStatus::Pending)
            .await?;
        if fresh {
            if let Some(flow) = self.start(step, place, idx, scope).await? {
                return Ok(Went::step(flow));
            }
        }
        let (values, statuses) = match self.items(each, place, idx, scope).await? {
            Ok(items) => items,
            Err(e) => {
                let flow = self.close(step, place, idx, Flow::Failed(e), scope).await?;
                return Ok(Went::step(flow));
            }
        };
        let ran = self
            .run_items(each, place, idx, values, &statuses, scope)
            .await?;
        let items = self
            .edit(place, idx, |rec| rec.items.clone().unwrap_or_default())
            .await?;
        let flow = loop_flow(&items, ran.outputs, ran.later);
        let flow = self.close(step, place, idx, flow, scope).await?;
        self.exec.metrics.step(
            &self.wf.name,
            StepKind::ForEach,
            clock.elapsed().as_secs_f64(),
        );
        Ok(Went {
            flow,
            waited: ran.waited,
            unsaved_request: false,
        })
    }

    /// The loop's items for this run context, and each one's status.
    /// Items are recorded once: a loop that resumes, or is replayed from its
    /// failed step, keeps the ones it has (and must still be given as many).
    async fn items(
        &self,
        each: &ForEach,
        place: &Place,
        idx: usize,
        scope: &Scope,
    ) -> Result<Result<(Vec<Value>, Vec<StepStatus>), String>, StoreError> {
        let values = match each.items(&scope.ctx) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let count = values.len();
        let statuses = self
            .edit(place, idx, |rec| {
                let items = rec.items.get_or_insert_with(Vec::new);
                if items.is_empty() {
                    *items = (0..count)
                        .map(|index| ItemRecord {
                            index,
                            status: StepStatus::Pending,
                            steps: each
                                .steps
                                .iter()
                                .map(|s| {
                                    StepRecord::pending(&s.id, s.action.kind()).with_uses(s.uses())
                                })
                                .collect(),
                        })
                        .collect();
                }
                items.iter().map(|i| i.status).collect::<Vec<_>>()
            })
            .await?;
        if statuses.len() != count {
            return Ok(Err(format!(
                "the loop's items changed since it began ({} then, {count} now); replay the run from the start",
                statuses.len()
            )));
        }
        Ok(Ok((values, statuses)))
    }

    /// Run every item not settled yet, in index order, up to `concurrency`
    /// at once. An item that must wait (a retry) stops new items from
    /// starting, so at concurrency 1 the order holds.
    async fn run_items(
        &self,
        each: &ForEach,
        place: &Place,
        idx: usize,
        values: Vec<Value>,
        statuses: &[StepStatus],
        outer: &Scope,
    ) -> Result<RanItems, StoreError> {
        let mut todo = statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_settled())
            .map(|(k, _)| k);
        let mut values: Vec<Option<Value>> = values.into_iter().map(Some).collect();
        let mut ran = RanItems {
            outputs: vec![None; values.len()],
            later: None,
            waited: false,
        };
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < each.concurrency && ran.later.is_none() {
                let Some(k) = todo.next() else { break };
                let value = values[k].take().unwrap_or(Value::Null);
                running.push(self.item(each, place, idx, k, value, outer));
            }
            let Some(done) = running.next().await else {
                break;
            };
            let (k, went) = done?;
            ran.waited |= went.waited;
            match went.flow {
                Flow::Done(out) => ran.outputs[k] = Some(out),
                Flow::Later { at, .. } => {
                    ran.later = Some(ran.later.map_or(at, |l: Timestamp| l.min(at)))
                }
                Flow::Skipped | Flow::Filtered | Flow::Failed(_) => {}
            }
        }
        Ok(ran)
    }

    /// One item of a loop: its steps walked in a scope of its own. An item
    /// that acted outside the run is saved when it settles (or waits).
    async fn item(
        &self,
        each: &ForEach,
        place: &Place,
        idx: usize,
        k: usize,
        value: Value,
        outer: &Scope,
    ) -> Result<(usize, Went), StoreError> {
        self.set_item_status(place, idx, k, StepStatus::Running)
            .await?;
        let mut ctx = outer.ctx.clone();
        if let Value::Object(fields) = &mut ctx {
            fields.insert("item".into(), value);
            fields.insert("index".into(), Value::from(k));
        }
        let mut items = outer.items.clone();
        items.push(k);
        let mut scope = Scope { ctx, items };
        let went = self
            .walk(&each.steps, &place.item(idx, k), &mut scope)
            .await?;
        let status = match went.flow {
            Flow::Done(_) | Flow::Skipped => StepStatus::Succeeded,
            Flow::Filtered => StepStatus::Filtered,
            Flow::Failed(_) => StepStatus::Failed,
            Flow::Later { .. } => StepStatus::Retrying,
        };
        self.set_item_status(place, idx, k, status).await?;
        if went.waited {
            let d = if went.unsaved_request {
                Durability::Now
            } else {
                Durability::Lazy
            };
            self.save(d).await?;
            self.exec.store.crash_point("step.item_saved");
        }
        Ok((
            k,
            Went {
                unsaved_request: false,
                ..went
            },
        ))
    }

    async fn set_item_status(
        &self,
        place: &Place,
        idx: usize,
        k: usize,
        status: StepStatus,
    ) -> Result<(), StoreError> {
        self.edit(place, idx, |rec| {
            if let Some(item) = rec.items.as_mut().and_then(|items| items.get_mut(k)) {
                item.status = status;
            }
        })
        .await
    }
}

/// What running a loop's items gave this time.
struct RanItems {
    /// The outputs of the items that finished now, as they were.
    outputs: Vec<Option<Value>>,
    /// The earliest time an item asked to be run again at.
    later: Option<Timestamp>,
    /// Some item acted outside the run.
    waited: bool,
}

/// How a loop ends once its items ran: it waits while an item waits for a
/// retry; then fails when an item failed; else its output is every item's
/// (those that ran now as they were, the others as recorded).
fn loop_flow(items: &[ItemRecord], outputs: Vec<Option<Value>>, later: Option<Timestamp>) -> Flow {
    if let Some(at) = later {
        return Flow::Later {
            at,
            why: Later::Retry,
        };
    }
    if let Some(e) = failure(items) {
        return Flow::Failed(e);
    }
    let all = items
        .iter()
        .zip(outputs)
        .map(|(item, live)| live.unwrap_or_else(|| item.output()))
        .collect();
    Flow::Done(Value::Array(all))
}

/// Why a loop failed: its first failed item's error, and how many others
/// failed; `None` when no item failed.
fn failure(items: &[ItemRecord]) -> Option<String> {
    let mut failed = items.iter().filter(|i| i.status == StepStatus::Failed);
    let first = failed.next()?;
    let others = failed.count();
    let error = first_error(&first.steps).unwrap_or_else(|| "a step failed".to_string());
    let more = match others {
        0 => String::new(),
        1 => " (and 1 more item failed)".to_string(),
        n => format!(" (and {n} more items failed)"),
    };
    Some(format!("item {} failed: {error}{more}", first.index))
}

/// The error of the first failed step among `steps` (a switch's or a
/// loop's error already says what failed inside it).
fn first_error(steps: &[StepRecord]) -> Option<String> {
    steps
        .iter()
        .find(|s| s.status == StepStatus::Failed)
        .and_then(|s| s.error.clone())
}
