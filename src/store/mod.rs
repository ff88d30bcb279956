//! Every sled call lives here. One database, typed trees:
//!
//! | tree       | key                           | value                      |
//! |------------|-------------------------------|----------------------------|
//! | `events`   | event id (time-ordered)       | [`Event`] as JSON          |
//! | `runs`     | run id (time-ordered)         | [`Run`] as JSON            |
//! | `queue`    | due time (ms, big-endian) ++ run id | empty                |
//! | `state`    | workflow `\0` key             | JSON value (`state_set`)   |
//! | `versions` | workflow version hash         | the workflow's source      |
//! | `dedupe`   | workflow `\0` dedupe key      | [`DedupeEntry`] as JSON    |
//! | `meta`     | `fresh_runs_from`             | a run id (see below)       |
//! | `meta`     | `ready_probe`                 | time of the last readiness write |
//!
//! The `queue` tree holds runs waiting for a later time (retries) and
//! replays. Fresh runs of an ingest get no queue entry, which saves two
//! writes per event: they are found again by scanning `runs` from the
//! `fresh_runs_from` mark, a run id below every fresh run that may still be
//! unfinished (kept by [`crate::run::worker`]).
//!
//! Ids sort by creation time, so "newest first" is a reverse range scan and a
//! cursor is simply the last id seen. Durability goes through one flusher
//! thread that serves every waiter with a single `flush` (group commit).

use crate::record::{Event, EventId, Outcome, Run, RunId, RunStatus, Timestamp};
use serde_json::Value;
use sled::Tree;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

const EVENTS: &str = "events";
const RUNS: &str = "runs";
const QUEUE: &str = "queue";
const STATE: &str = "state";
const VERSIONS: &str = "versions";
const DEDUPE: &str = "dedupe";
const META: &str = "meta";
const FRESH_RUNS_FROM: &[u8] = b"fresh_runs_from";
const READY_PROBE: &[u8] = b"ready_probe";

/// sled's segment size (its default, stated here because
/// [`crate::alloc`] recycles the log buffers of exactly this size).
pub const SEGMENT_SIZE: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: record {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("store: flushing to disk failed: {0}")]
    Flush(String),
}

impl StoreError {
    /// Another handle (an exiting process, or a server that is still
    /// shutting down in this one) still holds the store's lock.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock"))
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Handle to the store; cheap to clone (sled trees are reference-counted).
#[derive(Clone)]
pub struct Store {
    events: Tree,
    runs: Tree,
    queue: Tree,
    state: Tree,
    versions: Tree,
    dedupe: Tree,
    meta: Tree,
    flusher: mpsc::Sender<oneshot::Sender<std::result::Result<(), String>>>,
}

/// Filters of a run listing.
#[derive(Debug, Default, Clone)]
pub struct RunQuery {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub before: Option<String>,
    pub limit: usize,
}

/// Filters of an event listing.
#[derive(Debug, Default, Clone)]
pub struct EventQuery {
    pub workflow: Option<String>,
    pub outcome: Option<Outcome>,
    pub before: Option<String>,
    pub limit: usize,
}

/// One page of a listing: the items and the cursor for the next page.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_before: Option<String>,
}

/// A queue entry: a run due at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub due: Timestamp,
    pub run_id: RunId,
}

impl QueueEntry {
    fn key(&self) -> Vec<u8> {
        let mut k = self.due.0.to_be_bytes().to_vec();
        k.extend_from_slice(self.run_id.as_str().as_bytes());
        k
    }

    fn from_key(k: &[u8]) -> Option<Self> {
        let (due, id) = k.split_at_checked(8)?;
        let due = u64::from_be_bytes(due.try_into().ok()?);
        Some(QueueEntry {
            due: Timestamp(due),
            run_id: RunId(String::from_utf8(id.to_vec()).ok()?),
        })
    }
}

/// Rejected requests kept at most; pruning removes older ones.
pub const MAX_REJECTED_KEPT: usize = 10_000;

/// The first event seen with a dedupe key, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupeEntry {
    pub event_id: EventId,
    pub runs: Vec<RunId>,
    pub expires_at: Timestamp,
}

/// A dedupe key to claim together with a new event.
#[derive(Debug, Clone)]
pub struct DedupeClaim {
    pub workflow: String,
    pub key: String,
    pub expires_at: Timestamp,
}

impl DedupeClaim {
    fn tree_key(&self) -> Vec<u8> {
        dedupe_key(&self.workflow, &self.key)
    }
}

fn dedupe_key(workflow: &str, key: &str) -> Vec<u8> {
    let mut k = workflow.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The fields of a stored run that scans need, read without the rest.
#[derive(serde::Deserialize)]
struct RunHead {
    id: RunId,
    workflow: String,
    status: RunStatus,
    created_at: Timestamp,
}

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: usize,
    pub runs: usize,
    pub dedupe: usize,
}

impl Store {
    /// Open (or create) the store in `dir`, with sled's page cache bounded
    /// to `cache_mb`.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<Store> {
        let db = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_SIZE)
            .cache_capacity(cache_mb.saturating_mul(1024 * 1024))
            // Durability is ours: the group-commit flusher below decides
            // when data reaches the disk, not a background timer.
            .flush_every_ms(None)
            .open()?;
        Self::from_db(db)
    }

    /// A store that lives in a temporary folder and is removed on drop
    /// (used by `hookflow test` and `hookflow run`).
    pub fn temporary() -> Result<Store> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::from_db(db)
    }

    fn from_db(db: sled::Db) -> Result<Store> {
        let (tx, rx) = mpsc::channel::<oneshot::Sender<std::result::Result<(), String>>>();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("hookflow-flush".into())
            .spawn(move || group_commit(flush_db, rx))
            .map_err(|e| StoreError::Flush(format!("cannot start the flusher thread: {e}")))?;
        Ok(Store {
            events: db.open_tree(EVENTS)?,
            runs: db.open_tree(RUNS)?,
            queue: db.open_tree(QUEUE)?,
            state: db.open_tree(STATE)?,
            versions: db.open_tree(VERSIONS)?,
            dedupe: db.open_tree(DEDUPE)?,
            meta: db.open_tree(META)?,
            flusher: tx,
        })
    }

    /// Wait until everything written so far is on disk. Concurrent callers
    /// share one flush.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.flusher
            .send(tx)
            .map_err(|_| StoreError::Flush("the flusher thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Flush("the flusher thread has stopped".into()))?
            .map_err(StoreError::Flush)
    }

    /// Write an event with its new runs and its dedupe claims. The caller
    /// checks the claims first (holding the keys, see
    /// [`crate::inbound::Inbox`]), keeps the runs above the
    /// `fresh_runs_from` mark until they finish, and flushes before
    /// answering.
    ///
    /// There is no transaction: the first sled transaction or batch puts
    /// every later sled operation of the process behind one global lock,
    /// which costs more than the whole rest of an ingest under load.
    /// Atomicity comes from the order instead. Sled recovers a prefix of
    /// each thread's writes, and the writes go runs, event, claims: an
    /// interrupted ingest leaves at most runs whose event is missing, which
    /// the executor discards ([`Store::discard_orphan`]), and never a claim
    /// without its event. None of it was acknowledged, so the sender
    /// retries.
    pub fn insert_event(&self, event: &Event, runs: &[Run], claims: &[DedupeClaim]) -> Result<()> {
        for r in runs {
            self.runs.insert(r.id.as_str().as_bytes(), to_bytes(r))?;
        }
        self.events
            .insert(event.id.as_str().as_bytes(), to_bytes(event))?;
        for c in claims {
            let entry = DedupeEntry {
                event_id: event.id.clone(),
                runs: event.runs.clone(),
                expires_at: c.expires_at,
            };
            self.dedupe.insert(c.tree_key(), to_bytes(&entry))?;
        }
        Ok(())
    }

    /// The `fresh_runs_from` mark, if one was ever stored.
    pub fn fresh_runs_from(&self) -> Result<Option<RunId>> {
        Ok(self
            .meta
            .get(FRESH_RUNS_FROM)?
            .map(|b| RunId(String::from_utf8_lossy(&b).into_owned())))
    }

    /// Move the `fresh_runs_from` mark (durable with the next flush; an
    /// older mark is always safe, it only makes the next scan longer).
    pub fn set_fresh_runs_from(&self, id: &RunId) -> Result<()> {
        self.meta.insert(FRESH_RUNS_FROM, id.as_str().as_bytes())?;
        Ok(())
    }

    /// Write a small record that only proves the store takes writes
    /// ([`crate::ready`]); flush to see it reach the disk.
    pub fn write_probe(&self, now: Timestamp) -> Result<()> {
        self.meta.insert(READY_PROBE, &now.0.to_be_bytes())?;
        Ok(())
    }

    /// Call `f` with every queued or running run at or above `from`, in id
    /// order (runs waiting for a retry have a queue entry instead).
    pub fn scan_unfinished_runs(
        &self,
        from: &RunId,
        mut f: impl FnMut(QueueEntry) -> bool,
    ) -> Result<()> {
        for entry in self.runs.range(from.as_str().as_bytes()..) {
            let (k, v) = entry?;
            let head: RunHead = from_bytes(&String::from_utf8_lossy(&k), &v)?;
            if matches!(head.status, RunStatus::Queued | RunStatus::Running) {
                let go_on = f(QueueEntry {
                    due: head.created_at,
                    run_id: head.id,
                });
                if !go_on {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Remove what an interrupted write left behind: a queued run whose
    /// event never made it to disk (see [`Store::insert_event`]). Its
    /// queue entry, if any, is settled like any other.
    pub fn discard_orphan(&self, run_id: &RunId) -> Result<()> {
        self.runs.remove(run_id.as_str().as_bytes())?;
        Ok(())
    }

    /// The live holder of a dedupe key, if any.
    pub fn dedupe_holder(
        &self,
        workflow: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<DedupeEntry>> {
        let k = dedupe_key(workflow, key);
        match self.dedupe.get(&k)? {
            None => Ok(None),
            Some(b) => {
                let e: DedupeEntry = from_bytes(key, &b)?;
                Ok((e.expires_at > now).then_some(e))
            }
        }
    }

    /// Store a replay: its queue entry, the new run, the event's list of
    /// runs and the original's link to it, in that order (see
    /// [`Store::insert_event`] for why there is no transaction).
    pub fn insert_replay(&self, original: &Run, replay: &Run) -> Result<()> {
        let entry = QueueEntry {
            due: replay.created_at,
            run_id: replay.id.clone(),
        };
        self.queue.insert(entry.key(), &[] as &[u8])?;
        self.runs
            .insert(replay.id.as_str().as_bytes(), to_bytes(replay))?;
        self.events
            .update_and_fetch(replay.event_id.as_str().as_bytes(), |old| {
                let bytes = old?;
                match serde_json::from_slice::<Event>(bytes) {
                    Ok(mut event) => {
                        if !event.runs.contains(&replay.id) {
                            event.runs.push(replay.id.clone());
                        }
                        Some(to_bytes(&event))
                    }
                    Err(_) => Some(bytes.to_vec()),
                }
            })?;
        self.runs
            .insert(original.id.as_str().as_bytes(), to_bytes(original))?;
        Ok(())
    }

    /// Remove history older than `cutoff`, then the oldest history while
    /// records take more than `max_bytes`; and expired dedupe keys. Runs
    /// that are not final, and events with such runs, are never removed:
    /// pruning must not lose work.
    pub fn prune(&self, cutoff: Timestamp, max_bytes: u64, now: Timestamp) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let mut total: u64 = self.record_bytes()?;
        let mut doomed = Vec::new();
        for entry in self.events.iter() {
            let (k, v) = entry?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let event: Event = from_bytes(&key, &v)?;
            if event.received_at >= cutoff && total <= max_bytes {
                break;
            }
            let mut size = v.len() as u64;
            let mut removable = true;
            for run_id in &event.runs {
                if let Some(run_bytes) = self.runs.get(run_id.as_str().as_bytes())? {
                    let run: Run = from_bytes(run_id.as_str(), &run_bytes)?;
                    if !run.status.is_final() {
                        removable = false;
                        break;
                    }
                    size += run_bytes.len() as u64;
                }
            }
            if removable {
                total = total.saturating_sub(size);
                doomed.push(event);
            }
        }
        for event in doomed {
            for run_id in &event.runs {
                if self.runs.remove(run_id.as_str().as_bytes())?.is_some() {
                    pruned.runs += 1;
                }
            }
            self.events.remove(event.id.as_str().as_bytes())?;
            pruned.events += 1;
        }
        // Rejected requests: only the newest are worth keeping.
        let mut rejected_seen = 0usize;
        let needle = format!("\"outcome\":\"{}\"", Outcome::Rejected.as_str());
        let mut excess = Vec::new();
        for entry in self.events.iter().rev() {
            let (k, v) = entry?;
            // The byte check can also match a body holding the same text;
            // the parsed record decides.
            let rejected = contains(&v, Some(&needle))
                && serde_json::from_slice::<Event>(&v)
                    .is_ok_and(|e| e.outcome == Outcome::Rejected);
            if rejected {
                rejected_seen += 1;
                if rejected_seen > MAX_REJECTED_KEPT {
                    excess.push(k);
                }
            }
        }
        for k in excess {
            self.events.remove(k)?;
            pruned.events += 1;
        }
        for entry in self.dedupe.iter() {
            let (k, v) = entry?;
            match serde_json::from_slice::<DedupeEntry>(&v) {
                Ok(e) if e.expires_at > now => {}
                _ => {
                    self.dedupe.remove(k)?;
                    pruned.dedupe += 1;
                }
            }
        }
        Ok(pruned)
    }

    /// Call `f` with the workflow, status and creation time of every run
    /// created at or after `since`, newest first, at most `cap` runs.
    pub fn scan_run_heads(
        &self,
        since: Timestamp,
        cap: usize,
        mut f: impl FnMut(&str, RunStatus, Timestamp),
    ) -> Result<()> {
        for entry in self.runs.iter().rev().take(cap) {
            let (k, v) = entry?;
            let head: RunHead = from_bytes(&String::from_utf8_lossy(&k), &v)?;
            if head.created_at < since {
                break;
            }
            f(&head.workflow, head.status, head.created_at);
        }
        Ok(())
    }

    /// Bytes held by event and run records.
    pub fn record_bytes(&self) -> Result<u64> {
        let mut total = 0u64;
        for tree in [&self.events, &self.runs] {
            for entry in tree.iter() {
                let (k, v) = entry?;
                total += (k.len() + v.len()) as u64;
            }
        }
        Ok(total)
    }

    pub fn save_run(&self, run: &Run) -> Result<()> {
        self.runs
            .insert(run.id.as_str().as_bytes(), to_bytes(run))?;
        Ok(())
    }

    pub fn save_event(&self, event: &Event) -> Result<()> {
        self.events
            .insert(event.id.as_str().as_bytes(), to_bytes(event))?;
        Ok(())
    }

    pub fn run(&self, id: &str) -> Result<Option<Run>> {
        self.runs
            .get(id.as_bytes())?
            .map(|b| from_bytes(id, &b))
            .transpose()
    }

    pub fn event(&self, id: &str) -> Result<Option<Event>> {
        self.events
            .get(id.as_bytes())?
            .map(|b| from_bytes(id, &b))
            .transpose()
    }

    pub fn event_by_id(&self, id: &EventId) -> Result<Option<Event>> {
        self.event(id.as_str())
    }

    pub fn list_runs(&self, q: &RunQuery) -> Result<Page<Run>> {
        // Cheap byte checks skip most non-matching records before the JSON
        // is parsed; the parsed record is then checked exactly.
        let wf_needle = q
            .workflow
            .as_ref()
            .map(|w| format!("\"workflow\":{}", Value::from(w.as_str())));
        let st_needle = q.status.map(|s| format!("\"status\":\"{}\"", s.as_str()));
        list(&self.runs, q.before.as_deref(), q.limit, |key, bytes| {
            if !contains(bytes, wf_needle.as_deref()) || !contains(bytes, st_needle.as_deref()) {
                return Ok(None);
            }
            let run: Run = from_bytes(key, bytes)?;
            let keep = q.workflow.as_ref().is_none_or(|w| &run.workflow == w)
                && q.status.is_none_or(|s| run.status == s);
            Ok(keep.then_some(run))
        })
    }

    pub fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        let oc_needle = q.outcome.map(|o| format!("\"outcome\":\"{}\"", o.as_str()));
        list(&self.events, q.before.as_deref(), q.limit, |key, bytes| {
            if !contains(bytes, oc_needle.as_deref()) {
                return Ok(None);
            }
            let event: Event = from_bytes(key, bytes)?;
            let keep = q.outcome.is_none_or(|o| event.outcome == o)
                && q.workflow
                    .as_ref()
                    .is_none_or(|w| event.workflows.contains(w));
            Ok(keep.then_some(event))
        })
    }

    // --- queue -----------------------------------------------------------

    pub fn enqueue(&self, entry: &QueueEntry) -> Result<()> {
        self.queue.insert(entry.key(), &[] as &[u8])?;
        Ok(())
    }

    pub fn dequeue(&self, entry: &QueueEntry) -> Result<()> {
        self.queue.remove(entry.key())?;
        Ok(())
    }

    /// Queue entries in due order, starting with the earliest.
    pub fn queue_entries(&self) -> impl Iterator<Item = Result<QueueEntry>> + '_ {
        self.queue.iter().keys().filter_map(|k| match k {
            Ok(k) => QueueEntry::from_key(&k).map(Ok),
            Err(e) => Some(Err(StoreError::from(e))),
        })
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    // --- workflow state and versions ----------------------------------------

    pub fn state(&self) -> StateStore {
        StateStore {
            tree: self.state.clone(),
        }
    }

    pub fn put_version(&self, hash: &str, source: &str) -> Result<()> {
        if !self.versions.contains_key(hash.as_bytes())? {
            self.versions.insert(hash.as_bytes(), source.as_bytes())?;
        }
        Ok(())
    }

    pub fn version(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .versions
            .get(hash.as_bytes())?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

/// The per-workflow key/value store behind `state_get` / `state_set`.
#[derive(Clone)]
pub struct StateStore {
    tree: Tree,
}

impl StateStore {
    fn key(workflow: &str, key: &str) -> Vec<u8> {
        let mut k = workflow.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(key.as_bytes());
        k
    }

    pub fn get(&self, workflow: &str, key: &str) -> Result<Option<Value>> {
        let k = Self::key(workflow, key);
        self.tree.get(&k)?.map(|b| from_bytes(key, &b)).transpose()
    }

    pub fn set(&self, workflow: &str, key: &str, value: &Value) -> Result<()> {
        let k = Self::key(workflow, key);
        if value.is_null() {
            self.tree.remove(k)?;
        } else {
            self.tree.insert(k, to_bytes(value))?;
        }
        Ok(())
    }
}

/// Flushes start at most this often. A flush costs about 150 µs of CPU
/// whatever it carries (plus a wake-up of all of sled's IO threads), so
/// under load waiting out the rest of the interval lets one flush serve
/// many writers; an idle store flushes at once. Under the load benchmark,
/// 0.5, 2, 3 and 4 ms measured the same as 1 ms within the machine's noise;
/// the shortest of those keeps latency lowest at moderate load. The interval
/// is most of the median ack at moderate load (about 1.1 ms at a paced
/// 3,000 events/s): flushing at once after a flush that carried fewer than
/// 8 or 16 waiters took it to 0.7 ms (fewer than 4: no change), but every
/// threshold lowered acks/s under the closed-loop load in every pair, as
/// did no interval at all.
const MIN_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

fn group_commit(
    db: sled::Db,
    rx: mpsc::Receiver<oneshot::Sender<std::result::Result<(), String>>>,
) {
    let mut last_start: Option<std::time::Instant> = None;
    // Block for the first waiter, wait out the interval, then take everyone
    // who queued up meanwhile: they are all covered by the one flush.
    while let Ok(first) = rx.recv() {
        if let Some(wait) = last_start.and_then(|t| MIN_FLUSH_INTERVAL.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        let mut waiters = vec![first];
        waiters.extend(rx.try_iter());
        last_start = Some(std::time::Instant::now());
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn contains(haystack: &[u8], needle: Option<&str>) -> bool {
    match needle {
        None => true,
        Some(n) => haystack.windows(n.len()).any(|w| w == n.as_bytes()),
    }
}

fn list<T>(
    tree: &Tree,
    before: Option<&str>,
    limit: usize,
    mut keep: impl FnMut(&str, &[u8]) -> Result<Option<T>>,
) -> Result<Page<T>> {
    let limit = limit.max(1);
    let iter = match before {
        Some(b) => tree.range(..b.as_bytes().to_vec()),
        None => tree.iter(),
    };
    let mut items = Vec::new();
    let mut last_key = None;
    for entry in iter.rev() {
        let (k, v) = entry?;
        let key = String::from_utf8_lossy(&k).into_owned();
        if let Some(item) = keep(&key, &v)? {
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next_before: last_key,
                });
            }
            items.push(item);
            last_key = Some(key);
        }
    }
    Ok(Page {
        items,
        next_before: None,
    })
}

fn to_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records are plain data and always serialize")
}

fn from_bytes<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}
