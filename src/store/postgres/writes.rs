//! Group commit of run writes: the saves, reschedules and ends of runs
//! that arrive while the previous batch is being written go together, in
//! one statement and one commit, and every waiter is answered after the
//! COMMIT. An idle node writes each one at once; a busy one shares each
//! statement, each commit and each WAL flush among many runs.
//!
//! Fencing is per run, as with one statement per write: the batch's
//! fence parts update or delete only the queue rows whose token still
//! matches, and a run's head, step records and attempts are written only
//! when its own fence matched. The statement returns the runs that
//! matched; a run not among them lost its lease and wrote nothing.
//!
//! A run is written by one executor at a time, so a batch holds each run
//! once (a second write of the same run waits for the next batch). If a
//! batch fails as a whole, each write is tried alone, so one that cannot
//! be stored fails alone.

use super::rows::Delta;
use super::{batch, get, pg, Shared};
use crate::record::Timestamp;
use crate::store::{Result, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// How a run write checks and changes its queue row.
#[derive(Clone, Copy, Debug)]
pub enum Fence {
    /// The run goes on: renew the lease.
    Renew,
    /// The run waits: the row is freed, due at this time.
    Reschedule(Timestamp),
    /// The run ended: the row goes.
    Finish,
}

impl Fence {
    /// The `kind` column of the batch statement.
    fn kind(self) -> i16 {
        match self {
            Fence::Renew => 0,
            Fence::Reschedule(_) => 1,
            Fence::Finish => 2,
        }
    }

    fn due(self) -> i64 {
        match self {
            Fence::Reschedule(due) => due.0 as i64,
            _ => 0,
        }
    }
}

/// One run's write: its claim's token, what to do with its queue row and
/// the rows that bring the store up to date.
pub struct Write {
    pub run_id: String,
    pub token: i64,
    pub status: &'static str,
    pub fence: Fence,
    pub delta: Delta,
}

/// A write waiting for its batch; answered `true` when its fence matched
/// (the rows are written), `false` when the lease was lost (nothing is).
pub struct Pending {
    pub write: Write,
    pub answer: oneshot::Sender<Result<bool>>,
}

/// One writer: batches of run writes until the channel closes.
pub async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Pending>) {
    let mut carried: Vec<Pending> = Vec::new();
    loop {
        let Some(batch) = batch::next(&mut rx, std::mem::take(&mut carried)).await else {
            return;
        };
        // Each run once per batch; a second write of one goes next.
        let mut runs = HashSet::new();
        let (now, later): (Vec<Pending>, Vec<Pending>) = batch
            .into_iter()
            .partition(|p| runs.insert(p.write.run_id.clone()));
        carried = later;
        write_and_answer(&shared, now).await;
    }
}

async fn write_and_answer(shared: &Shared, batch: Vec<Pending>) {
    let (writes, answers): (Vec<Write>, Vec<oneshot::Sender<Result<bool>>>) =
        batch.into_iter().map(|p| (p.write, p.answer)).unzip();
    match write(shared, &writes).await {
        Ok(matched) => {
            for (w, a) in writes.iter().zip(answers) {
                let _ = a.send(Ok(matched.contains(w.run_id.as_str())));
            }
        }
        Err(e) if writes.len() == 1 => {
            if let Some(a) = answers.into_iter().next() {
                let _ = a.send(Err(e));
            }
        }
        Err(e) => {
            warn!(error = %e, writes = writes.len(), "a batch of run writes failed; writing them one by one");
            for (w, a) in writes.iter().zip(answers) {
                let result = write(shared, std::slice::from_ref(w)).await;
                let _ = a.send(result.map(|matched| matched.contains(w.run_id.as_str())));
            }
        }
    }
}

/// The batch statement. `w` holds one row per run; the three fence parts
/// each take the runs of their kind; the head, step and attempt rows are
/// written for the runs whose fence matched.
const SQL: &str = "WITH w AS (
    SELECT * FROM unnest($1::text[], $2::int8[], $3::int2[], $4::int8[], $5::text[], $6::text[], $7::int4[], $8::text[])
        AS t(run_id, token, kind, due, head, status, bytes, plan)
 ), renewed AS (
    UPDATE hookflow.queue q SET lease_until = now() + make_interval(secs => $9)
      FROM w WHERE w.kind = 0 AND q.run_id = w.run_id AND q.token = w.token
    RETURNING q.run_id
 ), rescheduled AS (
    UPDATE hookflow.queue q SET due = w.due, node = NULL, token = NULL, lease_until = NULL
      FROM w WHERE w.kind = 1 AND q.run_id = w.run_id AND q.token = w.token
    RETURNING q.run_id
 ), finished AS (
    DELETE FROM hookflow.queue q USING w
     WHERE w.kind = 2 AND q.run_id = w.run_id AND q.token = w.token
    RETURNING q.run_id
 ), fence AS (
    SELECT run_id FROM renewed UNION ALL SELECT run_id FROM rescheduled
    UNION ALL SELECT run_id FROM finished
 ), head AS (
    UPDATE hookflow.runs r
       SET head = w.head, status = w.status, bytes = r.bytes + w.bytes, plan = COALESCE(w.plan, r.plan)
      FROM w JOIN fence f ON f.run_id = w.run_id
     WHERE r.id = w.run_id
 ), st AS (
    INSERT INTO hookflow.steps (run_id, idx, record)
    SELECT s.run_id, s.idx, s.record
      FROM unnest($10::text[], $11::int4[], $12::text[]) AS s(run_id, idx, record)
      JOIN fence f ON f.run_id = s.run_id
    ON CONFLICT (run_id, idx) DO UPDATE SET record = EXCLUDED.record
 ), at AS (
    INSERT INTO hookflow.attempts (run_id, step_idx, n, record)
    SELECT a.run_id, a.s, a.n, a.r
      FROM unnest($13::text[], $14::int4[], $15::int4[], $16::text[]) AS a(run_id, s, n, r)
      JOIN fence f ON f.run_id = a.run_id
    ON CONFLICT DO NOTHING
 )
 SELECT run_id FROM fence";

/// Write a batch in one statement; the runs whose fence matched.
async fn write(shared: &Shared, batch: &[Write]) -> Result<HashSet<String>> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut tokens = Vec::with_capacity(batch.len());
    let mut kinds = Vec::with_capacity(batch.len());
    let mut dues = Vec::with_capacity(batch.len());
    let mut heads = Vec::with_capacity(batch.len());
    let mut statuses = Vec::with_capacity(batch.len());
    let mut bytes = Vec::with_capacity(batch.len());
    let mut plans = Vec::with_capacity(batch.len());
    let (mut step_run, mut step_idx, mut step_row) = (Vec::new(), Vec::new(), Vec::new());
    let (mut at_run, mut at_step, mut at_n, mut at_row) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for w in batch {
        let d = &w.delta;
        ids.push(w.run_id.as_str());
        tokens.push(w.token);
        kinds.push(w.fence.kind());
        dues.push(w.fence.due());
        heads.push(d.head.as_str());
        statuses.push(w.status);
        bytes.push(d.bytes);
        plans.push(d.plan.as_deref());
        for (i, row) in d.step_idx.iter().zip(&d.step_rows) {
            step_run.push(w.run_id.as_str());
            step_idx.push(*i);
            step_row.push(row.as_str());
        }
        for ((s, n), row) in d.attempt_step.iter().zip(&d.attempt_n).zip(&d.attempt_rows) {
            at_run.push(w.run_id.as_str());
            at_step.push(*s);
            at_n.push(*n);
            at_row.push(row.as_str());
        }
    }
    let lease = shared.lease.as_secs_f64();
    let client = get(&shared.pool).await?;
    let stmt = client
        .prepare_cached(SQL)
        .await
        .map_err(pg("preparing a run write"))?;
    let rows = client
        .query(
            &stmt,
            &[
                &ids, &tokens, &kinds, &dues, &heads, &statuses, &bytes, &plans, &lease, &step_run,
                &step_idx, &step_row, &at_run, &at_step, &at_n, &at_row,
            ],
        )
        .await
        .map_err(pg("writing a run"))?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, String>(0)
                .map_err(|e| StoreError::Other(format!("reading a run write's answer: {e}")))
        })
        .collect()
}
