//! Group commit of ingests: concurrent ingests are written together, in
//! one transaction whose statements insert many rows each (events, runs,
//! queue rows, dedupe keys), and every waiter is answered after the
//! COMMIT. A batch is whatever queued up while the previous one was being
//! written, so an idle node commits each ingest at once and a busy one
//! shares each commit among many.
//!
//! Dedupe keys are claimed first in the transaction (`INSERT … ON CONFLICT
//! DO UPDATE … WHERE expired`): a key another node is claiming at the same
//! moment makes this insert wait for that transaction, then see its
//! outcome, so two nodes never both start runs for one key. Two ingests of
//! one batch with the same key are written in successive batches.
//!
//! Fresh runs are held by this node from the start (their queue row names
//! it) while there is room in memory for them; the others are left free,
//! and other nodes are told after the commit (`NOTIFY`, never inside the
//! transaction: it would serialize commits across the database).

use super::{batch, describe, feed, get, pg, rows, HotRun, Shared, MAX_HOT};
use crate::record::{Event, Run, RunId};
use crate::store::{DedupeClaim, DedupeEntry, Ingest, Ingested, Result, StoreError};
use futures_util::future::join;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tracing::{debug, warn};

/// An ingest waiting for its batch.
pub struct Pending {
    pub ingest: Ingest,
    pub answer: oneshot::Sender<Result<Ingested>>,
}

/// `a,b` as the events table keeps the workflow names: `,a,b,` (names
/// never hold a comma), so `strpos(workflows, ',a,')` finds one.
pub fn workflows_column(names: &[String]) -> String {
    format!(",{},", names.join(","))
}

/// One writer: batches of ingests until the channel closes.
pub async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Pending>) {
    let mut carried: Vec<Pending> = Vec::new();
    loop {
        let Some(batch) = batch::next(&mut rx, std::mem::take(&mut carried)).await else {
            return;
        };
        // One claimant per dedupe key in a batch; the others go next.
        let mut keys = HashSet::new();
        let (now, later): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| {
            let mine: Vec<(String, String)> = p
                .ingest
                .claims
                .iter()
                .map(|(_, c)| (c.workflow.clone(), c.key.clone()))
                .collect();
            if mine.iter().any(|k| keys.contains(k)) {
                false
            } else {
                keys.extend(mine);
                true
            }
        });
        carried = later;
        write_and_answer(&shared, now).await;
    }
}

/// Write a batch; if it fails as a whole, write each ingest alone so that
/// one that cannot be stored fails alone.
async fn write_and_answer(shared: &Arc<Shared>, batch: Vec<Pending>) {
    let (ingests, answers): (Vec<Ingest>, Vec<oneshot::Sender<Result<Ingested>>>) =
        batch.into_iter().map(|p| (p.ingest, p.answer)).unzip();
    let mut prepared: Vec<Prepared> = ingests.into_iter().map(Prepared::new).collect();
    let single = prepared.len() == 1;
    match write(shared, &mut prepared).await {
        Ok(results) => answer(answers, Ok(results)),
        Err(e) if single => answer(answers, Err(e)),
        Err(e) => {
            // The batch is given back as it came (nothing of it was kept).
            warn!(error = %e, "a batch of ingests failed; writing them one by one");
            for (p, a) in prepared.into_iter().zip(answers) {
                let result = write(shared, &mut vec![p]).await;
                answer(vec![a], result);
            }
        }
    }
}

fn answer(answers: Vec<oneshot::Sender<Result<Ingested>>>, result: Result<Vec<Ingested>>) {
    match result {
        Ok(results) => {
            for (a, r) in answers.into_iter().zip(results) {
                let _ = a.send(Ok(r));
            }
        }
        Err(e) => {
            let text = e.to_string();
            for a in answers {
                let _ = a.send(Err(StoreError::Other(text.clone())));
            }
        }
    }
}

/// An ingest with its run ids made.
struct Prepared {
    event: Event,
    stored_event: Option<Event>,
    runs: Vec<crate::record::Run>,
    claims: Vec<(usize, DedupeClaim)>,
}

impl Prepared {
    fn new(ingest: Ingest) -> Prepared {
        let mut runs = ingest.runs;
        for r in &mut runs {
            r.id = RunId::generate();
        }
        Prepared {
            event: ingest.event,
            stored_event: ingest.stored_event,
            runs,
            claims: ingest.claims,
        }
    }
}

/// Write one batch in one transaction; the answers in batch order. Once
/// committed, the batch is taken (its runs go to this node's dispatcher);
/// on an error it is left as it came, to be written again.
async fn write(shared: &Arc<Shared>, batch: &mut Vec<Prepared>) -> Result<Vec<Ingested>> {
    let now = crate::record::Timestamp::now();
    let tx = Open::new(get(&shared.pool).await?);

    // Dedupe keys first: which ones this batch wins. Each claim's key as
    // the table holds it, once.
    let stored_keys: Vec<Vec<(String, String)>> = batch
        .iter()
        .map(|p| p.claims.iter().map(|(_, c)| stored_key(c)).collect())
        .collect();
    let claims: Vec<(usize, &DedupeClaim, &(String, String))> = batch
        .iter()
        .zip(&stored_keys)
        .enumerate()
        .flat_map(|(b, (p, keys))| p.claims.iter().zip(keys).map(move |((_, c), k)| (b, c, k)))
        .collect();
    let mut won: HashSet<(String, String)> = HashSet::new();
    let mut holders: HashMap<(String, String), DedupeEntry> = HashMap::new();
    if !claims.is_empty() {
        let workflows: Vec<&str> = claims.iter().map(|(_, _, k)| k.0.as_str()).collect();
        let keys: Vec<&str> = claims.iter().map(|(_, _, k)| k.1.as_str()).collect();
        let events: Vec<&str> = claims
            .iter()
            .map(|(b, _, _)| batch[*b].event.id.as_str())
            .collect();
        let runs: Vec<String> = claims
            .iter()
            .map(|(b, _, _)| {
                super::rows::to_json(&batch[*b].runs.iter().map(|r| &r.id).collect::<Vec<_>>())
            })
            .collect();
        let expires: Vec<i64> = claims
            .iter()
            .map(|(_, c, _)| c.expires_at.0 as i64)
            .collect();
        let stmt = tx
            .client()
            .prepare_cached(
                "INSERT INTO hookflow.dedupe (workflow, key, event_id, runs, expires_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
                 ON CONFLICT (workflow, key) DO UPDATE
                   SET event_id = EXCLUDED.event_id, runs = EXCLUDED.runs, expires_at = EXCLUDED.expires_at
                 WHERE hookflow.dedupe.expires_at <= $6
                 RETURNING workflow, key",
            )
            .await
            .map_err(pg("preparing the dedupe claim"))?;
        // BEGIN and the claim in one round trip.
        let params: [&(dyn ToSql + Sync); 6] =
            [&workflows, &keys, &events, &runs, &expires, &(now.0 as i64)];
        let rows = tx
            .begin_with(tx.client().query(&stmt, &params), "claiming dedupe keys")
            .await?;
        won = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let lost: Vec<&(String, String)> = claims
            .iter()
            .map(|(_, _, k)| *k)
            .filter(|k| !won.contains(*k))
            .collect();
        if !lost.is_empty() {
            let (lw, lk): (Vec<&str>, Vec<&str>) =
                lost.iter().map(|(w, k)| (w.as_str(), k.as_str())).unzip();
            let rows = tx
                .client()
                .query(
                    "SELECT d.workflow, d.key, d.event_id, d.runs, d.expires_at
                       FROM hookflow.dedupe d JOIN unnest($1::text[], $2::text[]) AS l(w, k)
                         ON d.workflow = l.w AND d.key = l.k",
                    &[&lw, &lk],
                )
                .await
                .map_err(pg("reading dedupe holders"))?;
            for r in rows {
                let runs: String = r.get(3);
                let expires: i64 = r.get(4);
                holders.insert(
                    (r.get(0), r.get(1)),
                    DedupeEntry {
                        event_id: crate::record::EventId(r.get(2)),
                        runs: serde_json::from_str(&runs).unwrap_or_default(),
                        expires_at: crate::record::Timestamp(expires.max(0) as u64),
                    },
                );
            }
        }
    }
    shared_crash_point("ingest.claims_written");

    // Decide each ingest: its runs whose key is free (or that have none);
    // `None` for a duplicate, which stores nothing.
    let mut answers: Vec<Ingested> = Vec::with_capacity(batch.len());
    let mut kept: Vec<Option<Vec<bool>>> = Vec::with_capacity(batch.len());
    let mut relink: Vec<(String, String, String)> = Vec::new();
    for (p, keys) in batch.iter().zip(&stored_keys) {
        let mut keep = vec![true; p.runs.len()];
        let mut holder: Option<DedupeEntry> = None;
        for ((i, _), k) in p.claims.iter().zip(keys) {
            if !won.contains(k) {
                if let Some(slot) = keep.get_mut(*i) {
                    *slot = false;
                }
                if holder.is_none() {
                    holder = holders.get(k).cloned();
                }
            }
        }
        if !keep.iter().any(|k| *k) && !p.claims.is_empty() && !p.runs.is_empty() {
            match holder {
                Some(h) => {
                    answers.push(Ingested::Duplicate {
                        event_id: h.event_id,
                        runs: h.runs,
                    });
                    kept.push(None);
                    continue;
                }
                None => {
                    return Err(StoreError::Other(
                        "a dedupe key was held but its holder could not be read".into(),
                    ))
                }
            }
        }
        let partial = keep.iter().any(|k| !*k);
        let run_ids: Vec<RunId> = kept_runs(&p.runs, &keep).map(|r| r.id.clone()).collect();
        if partial {
            let runs = super::rows::to_json(&run_ids);
            for ((i, _), (w, k)) in p.claims.iter().zip(keys) {
                if keep.get(*i).copied().unwrap_or(false) {
                    relink.push((w.clone(), k.clone(), runs.clone()));
                }
            }
        }
        answers.push(Ingested::Stored {
            event_id: p.event.id.clone(),
            runs: run_ids,
        });
        kept.push(Some(keep));
    }
    for (w, k, runs) in &relink {
        tx.client()
            .execute(
                "UPDATE hookflow.dedupe SET runs = $3 WHERE workflow = $1 AND key = $2",
                &[w, k, runs],
            )
            .await
            .map_err(pg("linking dedupe keys to their runs"))?;
    }

    // Which fresh runs this node holds (kept in memory) and which go free.
    let new_runs: usize = kept
        .iter()
        .flatten()
        .map(|keep| keep.iter().filter(|k| **k).count())
        .sum();
    let room = {
        let held = shared.hot.lock().unwrap_or_else(|e| e.into_inner()).len();
        let reserved = shared.hot_reserved.load(Ordering::Relaxed) as usize;
        MAX_HOT.saturating_sub(held + reserved).min(new_runs)
    };
    shared
        .hot_reserved
        .fetch_add(room as u64, Ordering::Relaxed);
    let committed = insert(shared, &tx, batch, &kept, room).await;
    drop(tx);
    shared
        .hot_reserved
        .fetch_sub(room as u64, Ordering::Relaxed);
    let tokens = committed?;
    shared_crash_point("ingest.flushed");

    // Durable: hand the held runs to this node's dispatcher (moved, with
    // their event: a second copy only for an event with several runs),
    // tell others about the free ones, and the live stream about all.
    let mut freed = false;
    let mut held: Vec<HotRun> = Vec::new();
    let mut tokens = tokens.into_iter();
    for (p, keep) in std::mem::take(batch).into_iter().zip(kept) {
        let Some(keep) = keep else { continue };
        let runs: Vec<Run> = kept_runs(p.runs, &keep).collect();
        let mut event = p.event;
        event.runs = runs.iter().map(|r| r.id.clone()).collect();
        let last = runs.len().saturating_sub(1);
        let mut event = Some(event);
        for (i, run) in runs.into_iter().enumerate() {
            feed::publish_local(shared, crate::record::RunUpdate::of(&run));
            match tokens.next().flatten() {
                Some(token) => {
                    let event = if i == last {
                        event.take()
                    } else {
                        event.clone()
                    };
                    held.push(HotRun { run, event, token });
                }
                None => freed = true,
            }
        }
    }
    shared
        .hot
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(held);
    if freed {
        shared.wake_for_db_work();
        feed::notify_work(shared).await;
    } else {
        shared.changed.notify_one();
    }
    Ok(answers)
}

/// A claim's workflow and key as the dedupe table holds them (see
/// [`rows::key`]).
fn stored_key(c: &DedupeClaim) -> (String, String) {
    (c.workflow.clone(), rows::key(&c.key).into_owned())
}

/// The runs an ingest keeps (whose dedupe keys it won, or that have none),
/// in order: `keep` is the decision for each of `runs`.
fn kept_runs<'a, T>(
    runs: impl IntoIterator<Item = T> + 'a,
    keep: &'a [bool],
) -> impl Iterator<Item = T> + 'a {
    runs.into_iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(r, _)| r)
}

/// The crash points of an ingest (see the module doc of `postgres`).
fn shared_crash_point(point: &str) {
    if crate::fault::hits(point) {
        crate::fault::crash(point);
    }
}

/// Insert the events, runs and queue rows of the batch in one statement;
/// the first `held` runs are held by this node. Returns each run's token
/// (`None`: left free), in order.
async fn insert(
    shared: &Shared,
    tx: &Open,
    batch: &mut [Prepared],
    kept: &[Option<Vec<bool>>],
    held: usize,
) -> Result<Vec<Option<i64>>> {
    let mut e_id = Vec::new();
    let mut e_at = Vec::new();
    let mut e_outcome = Vec::new();
    let mut e_workflows = Vec::new();
    let mut e_runs = Vec::new();
    let mut e_bytes = Vec::new();
    let mut e_record = Vec::new();
    let mut r_id = Vec::new();
    let mut r_event = Vec::new();
    let mut r_workflow = Vec::new();
    let mut r_status = Vec::new();
    let mut r_created = Vec::new();
    let mut r_bytes = Vec::new();
    let mut r_plan = Vec::new();
    let mut r_head = Vec::new();
    let mut q_node: Vec<Option<&str>> = Vec::new();
    let mut q_token: Vec<Option<i64>> = Vec::new();
    let mut tokens = Vec::new();
    // The record as shown, without its runs (a column of their own),
    // written out without copying the event.
    let mut records = Vec::new();
    for (p, keep) in batch.iter_mut().zip(kept) {
        if keep.is_none() {
            continue;
        }
        let shown = match &mut p.stored_event {
            Some(s) => s,
            None => &mut p.event,
        };
        let runs = std::mem::take(&mut shown.runs);
        records.push(super::rows::to_json(&*shown));
        shown.runs = runs;
    }
    let stored = batch
        .iter()
        .zip(kept)
        .filter_map(|(p, keep)| Some((p, keep.as_ref()?)));
    for ((p, keep), text) in stored.zip(records) {
        let runs: Vec<&Run> = kept_runs(&p.runs, keep).collect();
        e_id.push(p.event.id.as_str());
        e_at.push(p.event.received_at.0 as i64);
        e_outcome.push(p.event.outcome.as_str());
        e_workflows.push(workflows_column(&p.event.workflows));
        e_runs.push(
            runs.iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        e_bytes.push(text.len() as i32);
        e_record.push(text);
        for r in runs {
            let head = super::rows::head_json(r);
            let plan = super::rows::plan_json(r);
            r_id.push(r.id.as_str());
            r_event.push(r.event_id.as_str());
            r_workflow.push(r.workflow.as_str());
            r_status.push(r.status.as_str());
            r_created.push(r.created_at.0 as i64);
            r_bytes.push((head.len() + plan.len()) as i32);
            r_plan.push(plan);
            r_head.push(head);
            let token = (tokens.len() < held).then(|| fastrand::i64((1 << 62)..i64::MAX));
            q_node.push(token.map(|_| shared.node.as_str()));
            q_token.push(token);
            tokens.push(token);
        }
    }
    let stmt = tx
        .client()
        .prepare_cached(
            "WITH e AS (
                INSERT INTO hookflow.events (id, received_at, outcome, workflows, runs, bytes, record)
                SELECT id, at, outcome, workflows, string_to_array(runs, ','), bytes, record
                  FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[])
                       AS t(id, at, outcome, workflows, runs, bytes, record)
             ), r AS (
                INSERT INTO hookflow.runs (id, event_id, workflow, status, created_at, bytes, plan, head)
                SELECT * FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::int4[], $14::text[], $15::text[])
             )
             INSERT INTO hookflow.queue (run_id, due, node, token, lease_until)
             SELECT id, due, node, token,
                    CASE WHEN node IS NULL THEN NULL ELSE now() + make_interval(secs => $18) END
               FROM unnest($8::text[], $12::int8[], $16::text[], $17::int8[]) AS q(id, due, node, token)",
        )
        .await
        .map_err(pg("preparing the ingest"))?;
    let params: [&(dyn ToSql + Sync); 18] = [
        &e_id,
        &e_at,
        &e_outcome,
        &e_workflows,
        &e_runs,
        &e_bytes,
        &e_record,
        &r_id,
        &r_event,
        &r_workflow,
        &r_status,
        &r_created,
        &r_bytes,
        &r_plan,
        &r_head,
        &q_node,
        &q_token,
        &shared.lease.as_secs_f64(),
    ];
    // Inside the transaction: a crash here rolls it back.
    shared_crash_point("ingest.runs_written");
    shared_crash_point("ingest.event_written");
    // The insert and the COMMIT in one round trip (with BEGIN too when the
    // batch claimed no dedupe key).
    tx.finish_with(
        tx.client().execute(&stmt, &params),
        "storing events and runs",
    )
    .await?;
    Ok(tokens)
}

/// An ingest transaction sent in as few round trips as its statements
/// allow: BEGIN goes with the first statement, COMMIT with the last (the
/// client sends requests made together without waiting for each answer).
/// A statement that fails aborts the transaction, so the COMMIT sent behind
/// it rolls back; the statement's own error is what is reported. Dropped
/// while open (an error between the two), it rolls back before its
/// connection goes back to the pool.
struct Open {
    client: Option<deadpool_postgres::Object>,
    /// BEGIN sent, COMMIT not yet.
    open: AtomicBool,
}

impl Open {
    fn new(client: deadpool_postgres::Object) -> Open {
        Open {
            client: Some(client),
            open: AtomicBool::new(false),
        }
    }

    fn client(&self) -> &deadpool_postgres::Object {
        match &self.client {
            Some(c) => c,
            // Taken only by `drop`.
            None => {
                unreachable!("the connection of an open ingest transaction is taken on drop only")
            }
        }
    }

    /// BEGIN, then `first` (which is `doing`), in one round trip:
    /// `first`'s answer.
    async fn begin_with<T>(
        &self,
        first: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
        doing: &'static str,
    ) -> Result<T> {
        self.open.store(true, Ordering::Relaxed);
        let (begun, answer) = join(self.client().batch_execute("BEGIN"), first).await;
        begun.map_err(pg(BEGIN))?;
        answer.map_err(pg(doing))
    }

    /// `last` (which is `doing`) then COMMIT, with BEGIN before them if not
    /// sent yet, in one round trip: `last`'s answer once committed. Closed
    /// either way.
    async fn finish_with<T>(
        &self,
        last: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
        doing: &'static str,
    ) -> Result<T> {
        let client = self.client();
        let (begun, (answer, committed)) = if self.open.load(Ordering::Relaxed) {
            (Ok(()), join(last, client.batch_execute("COMMIT")).await)
        } else {
            let begin = client.batch_execute("BEGIN");
            join(begin, join(last, client.batch_execute("COMMIT"))).await
        };
        // Committed, or rolled back by the COMMIT behind a failure.
        self.open.store(false, Ordering::Relaxed);
        begun.map_err(pg(BEGIN))?;
        let answer = answer.map_err(pg(doing))?;
        committed.map_err(pg("committing an ingest"))?;
        Ok(answer)
    }
}

const BEGIN: &str = "starting an ingest transaction";

impl Drop for Open {
    fn drop(&mut self) {
        if !*self.open.get_mut() {
            return;
        }
        let (Some(client), Ok(handle)) =
            (self.client.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        handle.spawn(async move {
            if let Err(e) = client.batch_execute("ROLLBACK").await {
                debug!(error = %describe(&e), "cannot roll back an ingest transaction");
            }
        });
    }
}
