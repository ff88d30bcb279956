//! The storage interface the engine talks to, and nothing else does: every
//! byte of history, the run queue, dedupe keys, workflow state and
//! workflow versions go through [`Store`]. The backends live in their own
//! folders and no other module names them: `sled/` (the default, one
//! process, embedded) and `postgres/` (any number of processes on one
//! database, SPEC §10).
//!
//! What the engine asks of a store:
//!
//! | call | what it promises |
//! |---|---|
//! | [`Store::ingest`] | the event, its new runs and their dedupe keys are durable together on return, or not at all (a later read never sees a run without its event); a held dedupe key gives [`Ingested::Duplicate`] |
//! | [`Store::claim`] | due runs, each to one executor at a time, with a [`Claim`] every later write of that run presents |
//! | [`Store::hold`] | before a step acts: the claim is still this executor's (a backend shared by many processes checks its lease) |
//! | [`Store::load`] | the claimed run and its event, or `None` when there is nothing to do (finished meanwhile, or the leftover of an interrupted write) |
//! | [`Store::save`] | the run as it stands; durable on return with [`Durability::Now`] |
//! | [`Store::schedule`] | the run waits (`retrying` or `waiting`) until `next_attempt_at`; durable on return, and never a run that waits with nothing to wake it |
//! | [`Store::finish`] | the run's final state; the claim is done with |
//! | [`Store::release`] | the executor let go of the claim |
//! | [`Store::insert_replay`] | a new run of a stored event, queued and linked both ways; durable on return |
//!
//! A write with a claim another process has taken over fails with
//! [`StoreError::LeaseLost`] and writes nothing; the executor then stops
//! quietly (the new owner carries on).
//!
//! Write sequences are crash-consistent: each backend names its crash
//! points (see [`crate::fault`]) and the crash tests stop the real binary at
//! every one of them.

pub mod postgres;
pub mod sled;

use crate::record::{Event, EventId, Outcome, Run, RunId, RunStatus, RunUpdate, Timestamp};
use serde_json::Value;
use std::path::Path;
use tokio::sync::{broadcast, watch};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] ::sled::Error),
    #[error("store: record {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("store: flushing to disk failed: {0}")]
    Flush(String),
    #[error("store: {0}")]
    Other(String),
    /// New events are paced near the size limit and this one's turn was
    /// too far: nothing was stored (sled). The sender may try again after
    /// `retry_after_secs`.
    #[error("store: {reason}")]
    Paced {
        reason: String,
        retry_after_secs: u64,
    },
    #[error("store: PostgreSQL, {doing}: {reason}")]
    Postgres { doing: &'static str, reason: String },
    /// Another process took the run over (this one's lease ran out): the
    /// write did nothing, and nothing more may be written with this claim.
    #[error(
        "store: run {run_id} was taken over by another node; this node writes nothing more for it"
    )]
    LeaseLost { run_id: String },
}

impl StoreError {
    /// Another handle (an exiting process, or a server that is still
    /// shutting down in this one) still holds the store's lock.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Sled(::sled::Error::Io(e)) if e.to_string().contains("could not acquire lock"))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// When a write must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// With the next write that asks for it (a crash before then loses it,
    /// which must be harmless: the step runs again).
    Lazy,
    /// Before the call returns.
    Now,
}

/// An event to store with the runs it starts.
#[derive(Debug)]
pub struct Ingest {
    /// The event as received: what its runs start from.
    pub event: Event,
    /// The event as stored and shown, when it differs (secrets redacted).
    pub stored_event: Option<Event>,
    pub runs: Vec<Run>,
    /// Dedupe keys to claim, by index into `runs`: a run whose key is held
    /// is not created.
    pub claims: Vec<(usize, DedupeClaim)>,
}

/// What [`Store::ingest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored (with the runs whose keys were free, possibly none).
    Stored { event_id: EventId, runs: Vec<RunId> },
    /// Every run's dedupe key was held: nothing stored.
    Duplicate { event_id: EventId, runs: Vec<RunId> },
}

/// A dedupe key to claim together with a new event.
#[derive(Debug, Clone)]
pub struct DedupeClaim {
    pub workflow: String,
    pub key: String,
    pub expires_at: Timestamp,
}

/// The first event seen with a dedupe key, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupeEntry {
    pub event_id: EventId,
    pub runs: Vec<RunId>,
    pub expires_at: Timestamp,
}

/// A due run handed to one executor. Every write of the run presents it.
#[derive(Debug)]
pub struct Claim {
    pub run_id: RunId,
    /// When the run became due.
    pub due: Timestamp,
    pub(crate) ticket: Ticket,
}

/// What a backend needs to know about a claim it handed out.
#[derive(Debug)]
pub(crate) enum Ticket {
    Sled(sled::Ticket),
    // Boxed: it carries what the store holds of the run.
    Postgres(Box<postgres::Ticket>),
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

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: usize,
    pub runs: usize,
    pub dedupe: usize,
    /// Of `dedupe`, keys dropped before their window ended, as they
    /// outgrew their share of `--retention-size` (sled).
    pub dedupe_early: usize,
}

/// Records a backend found undecodable (a bad disk, a bug of an older
/// version): each is skipped wherever it comes up, so one bad record never
/// stops start-up, a listing or pruning; counted for `/metrics` and logged
/// once per record, however often a list or a polling UI reads past it.
#[derive(Default)]
pub struct Unreadable {
    count: std::sync::atomic::AtomicU64,
    logged: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Unreadable keys remembered for "count and log once"; beyond this the
/// memory is cleared and a record seen again is counted and logged again.
const UNREADABLE_REMEMBERED: usize = 1024;

impl Unreadable {
    /// Note the record `key` of `table` that failed with `error`.
    pub fn note(&self, table: &str, key: &str, error: &StoreError) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.insert(format!("{table}/{key}")) {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(table, key, error = %error, "skipping a record that cannot be read");
        }
        if logged.len() > UNREADABLE_REMEMBERED {
            logged.clear();
        }
    }

    /// Records noted since start.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What `/metrics` shows of the store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueGauges {
    /// Every run waiting or running: queued, running, retrying, waiting.
    pub depth: usize,
    /// Those of them that wait for a later time (a retry or a delay).
    pub later: usize,
    /// Those of them stored as `waiting`: for a `delay`.
    pub waiting: usize,
    /// Records skipped since start because they cannot be decoded.
    pub unreadable: u64,
    /// Bytes of stored event and run records (keys and values, as stored:
    /// compressed), what retention by size counts; `None` where the store
    /// does not keep the count (PostgreSQL: the database reports its own).
    pub record_bytes: Option<u64>,
    /// Bytes of stored dedupe keys and entries (sled; counted against
    /// `--retention-size` beside the records).
    pub dedupe_bytes: Option<u64>,
    /// Bytes the data folder takes on disk, as `du` counts them (sled).
    pub disk_bytes: Option<u64>,
    /// Bytes of new events admitted per second near the size limit, 0
    /// while not pacing (sled).
    pub pace_bytes: Option<u64>,
    /// The bytes of records retention by size keeps now: their share of
    /// `--retention-size`, less while the folder is held at the limit
    /// (sled; `None` before the first pruning pass).
    pub record_target_bytes: Option<u64>,
}

/// The head of a run (what the UI's counts need), read without the rest.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RunHead {
    pub id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub created_at: Timestamp,
}

/// Rejected requests kept at most; pruning removes older ones.
pub const MAX_REJECTED_KEPT: usize = 10_000;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub enum Store {
    Sled(sled::SledStore),
    Postgres(postgres::PgStore),
}

/// Where a store lives, as `--store` / `HOOKFLOW_STORE` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `sled:PATH`: a folder on this machine.
    Sled(std::path::PathBuf),
    /// `postgres://…` (or `postgresql://…`): a database any number of
    /// nodes share.
    Postgres(String),
}

impl Location {
    /// Read `--store`: `sled:PATH` or a `postgres://` URL.
    pub fn parse(s: &str) -> std::result::Result<Location, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("sled:") {
            if path.is_empty() {
                return Err("`sled:` needs a folder, e.g. sled:./data".into());
            }
            return Ok(Location::Sled(path.into()));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            postgres::parse_url(s)?;
            return Ok(Location::Postgres(s.to_string()));
        }
        Err(format!(
            "`{}` is not a store: write sled:PATH (e.g. sled:./data) or postgres://user:password@host:5432/db",
            postgres::redact_url(s)
        ))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sled(p) => write!(f, "sled:{}", p.display()),
            Location::Postgres(url) => f.write_str(&postgres::redact_url(url)),
        }
    }
}

impl Store {
    /// Open (or create) the sled store in `dir`, with sled's page cache
    /// bounded as `options` say.
    pub fn open_sled(dir: &Path, options: sled::SledOptions) -> Result<Store> {
        Ok(Store::Sled(sled::SledStore::open(dir, options)?))
    }

    /// Connect to a PostgreSQL store, creating or upgrading its tables.
    pub async fn open_postgres(url: &str, options: &postgres::PgOptions) -> Result<Store> {
        Ok(Store::Postgres(
            postgres::PgStore::open(url, options).await?,
        ))
    }

    /// A store that lives in a temporary folder and is removed on drop
    /// (used by `hookflow test` and `hookflow run`).
    pub fn temporary() -> Result<Store> {
        Ok(Store::Sled(sled::SledStore::temporary()?))
    }

    /// Read what the queue needs and start the store's own background work
    /// (until `stop` turns true). Call once, before the first ingest.
    pub async fn start(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>> {
        match self {
            Store::Sled(s) => s.start(stop).await,
            Store::Postgres(s) => s.start(stop).await,
        }
    }

    /// After the last run stopped: leave the store consistent and on disk.
    pub async fn close(&self) -> Result<()> {
        match self {
            Store::Sled(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// Stop the process here if `point` is the armed crash point (see
    /// [`crate::fault`]), after making everything written so far durable.
    pub fn crash_point(&self, point: &str) {
        match self {
            Store::Sled(s) => s.crash_point(point),
            Store::Postgres(s) => s.crash_point(point),
        }
    }

    /// Write a small record that only proves the store takes writes
    /// ([`crate::ready`]); flush to see it reach the disk.
    pub async fn write_probe(&self, now: Timestamp) -> Result<()> {
        match self {
            Store::Sled(s) => {
                let s = s.clone();
                blocking(move || s.write_probe(now)).await
            }
            Store::Postgres(s) => s.write_probe(now).await,
        }
    }

    /// Wait until everything written so far is on disk.
    pub async fn flush(&self) -> Result<()> {
        match self {
            Store::Sled(s) => s.flush().await,
            // Every write is durable when it returns.
            Store::Postgres(_) => Ok(()),
        }
    }

    // --- inbound ------------------------------------------------------------

    /// Store an event with its runs and dedupe keys; durable on return. The
    /// runs get their ids here (`ingest.runs[i].id` is replaced), and join
    /// the queue.
    pub async fn ingest(&self, ingest: Ingest) -> Result<Ingested> {
        match self {
            Store::Sled(s) => s.ingest(ingest).await,
            Store::Postgres(s) => s.ingest(ingest).await,
        }
    }

    /// Keep a rejected request's metadata (not necessarily durable).
    pub async fn save_rejected(&self, event: &Event) -> Result<()> {
        match self {
            Store::Sled(s) => s.save_rejected(event),
            Store::Postgres(s) => s.save_rejected(event).await,
        }
    }

    // --- the queue ----------------------------------------------------------

    /// Up to `limit` runs due at `now`, each claimed for one executor.
    pub async fn claim(&self, now: Timestamp, limit: usize) -> Result<Vec<Claim>> {
        match self {
            Store::Sled(s) => s.claim(now, limit).await,
            Store::Postgres(s) => s.claim(now, limit).await,
        }
    }

    /// When the next run is due, if one is known to be waiting.
    pub fn next_due(&self) -> Option<Timestamp> {
        match self {
            Store::Sled(s) => s.next_due(),
            Store::Postgres(s) => s.next_due(),
        }
    }

    /// Resolves when new work may have arrived (a hint: callers also wake
    /// on a timer).
    pub async fn work_arrived(&self) {
        match self {
            Store::Sled(s) => s.work_arrived().await,
            Store::Postgres(s) => s.work_arrived().await,
        }
    }

    /// Before a step acts on the world: the claim is still this
    /// executor's, or [`StoreError::LeaseLost`].
    pub async fn hold(&self, claim: &Claim) -> Result<()> {
        match self {
            // One process owns the folder: a claim is never taken over.
            Store::Sled(_) => Ok(()),
            Store::Postgres(s) => s.hold(claim).await,
        }
    }

    /// The claimed run and its event; `None` when there is nothing to do
    /// (the claim is then settled).
    pub async fn load(&self, claim: &Claim) -> Result<Option<(Run, Event)>> {
        match self {
            Store::Sled(s) => s.load(claim).await,
            Store::Postgres(s) => s.load(claim).await,
        }
    }

    /// Save the run as it stands.
    pub async fn save(&self, claim: &Claim, run: &Run, durability: Durability) -> Result<()> {
        match self {
            Store::Sled(s) => s.save(claim, run, durability).await,
            Store::Postgres(s) => s.save(claim, run, durability).await,
        }
    }

    /// The run waits (`retrying` or `waiting`) until `run.next_attempt_at`.
    /// Durable on return.
    pub async fn schedule(&self, claim: &Claim, run: &Run) -> Result<()> {
        match self {
            Store::Sled(s) => s.schedule(claim, run).await,
            Store::Postgres(s) => s.schedule(claim, run).await,
        }
    }

    /// The run reached its final state.
    pub async fn finish(&self, claim: &Claim, run: &Run, durability: Durability) -> Result<()> {
        match self {
            Store::Sled(s) => s.finish(claim, run, durability).await,
            Store::Postgres(s) => s.finish(claim, run, durability).await,
        }
    }

    /// The executor is done with the claim. `failed` (the store failed
    /// under it): offer the run again a little later.
    pub fn release(&self, claim: Claim, failed: bool) {
        match self {
            Store::Sled(s) => s.release(claim, failed),
            Store::Postgres(s) => s.release(claim, failed),
        }
    }

    /// Store a replay: the new run, queued, and the links from its event
    /// and its original (`original` carries the new link already).
    /// Durable on return.
    pub async fn insert_replay(&self, original: &Run, replay: &Run) -> Result<()> {
        match self {
            Store::Sled(s) => s.insert_replay(original, replay).await,
            Store::Postgres(s) => s.insert_replay(original, replay).await,
        }
    }

    /// Runs waiting or running, for `/metrics`.
    pub async fn queue_gauges(&self, now: Timestamp) -> QueueGauges {
        match self {
            Store::Sled(s) => s.queue_gauges(now),
            Store::Postgres(s) => s.queue_gauges(now).await,
        }
    }

    // --- the change feed ----------------------------------------------------

    /// Tell live listeners (`/api/stream`) about a change of `run`.
    pub fn publish(&self, run: &Run) {
        match self {
            Store::Sled(s) => s.publish(run),
            Store::Postgres(s) => s.publish(run),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunUpdate> {
        match self {
            Store::Sled(s) => s.subscribe(),
            Store::Postgres(s) => s.subscribe(),
        }
    }

    // --- reads ----------------------------------------------------------------

    pub async fn run(&self, id: &str) -> Result<Option<Run>> {
        match self {
            Store::Sled(s) => s.run(id),
            Store::Postgres(s) => s.run(id).await,
        }
    }

    pub async fn event(&self, id: &str) -> Result<Option<Event>> {
        match self {
            Store::Sled(s) => s.event(id),
            Store::Postgres(s) => s.event(id).await,
        }
    }

    pub async fn list_runs(&self, q: &RunQuery) -> Result<Page<Run>> {
        match self {
            Store::Sled(s) => {
                let (s, q) = (s.clone(), q.clone());
                blocking(move || s.list_runs(&q)).await
            }
            Store::Postgres(s) => s.list_runs(q).await,
        }
    }

    pub async fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        match self {
            Store::Sled(s) => {
                let (s, q) = (s.clone(), q.clone());
                blocking(move || s.list_events(&q)).await
            }
            Store::Postgres(s) => s.list_events(q).await,
        }
    }

    /// The heads of the runs created at or after `since`, newest first, at
    /// most `cap`.
    pub async fn run_heads(&self, since: Timestamp, cap: usize) -> Result<Vec<RunHead>> {
        match self {
            Store::Sled(s) => {
                let s = s.clone();
                blocking(move || s.run_heads(since, cap)).await
            }
            Store::Postgres(s) => s.run_heads(since, cap).await,
        }
    }

    // --- workflow state and versions ------------------------------------------

    /// The per-workflow key/value store behind `state_get` / `state_set`.
    pub fn state(&self) -> StateStore {
        match self {
            Store::Sled(s) => StateStore(StateBackend::Sled(s.state())),
            Store::Postgres(s) => StateStore(StateBackend::Postgres(s.state())),
        }
    }

    /// Keep a workflow version's source (once; later calls are no-ops).
    pub async fn put_version(&self, hash: &str, source: &str) -> Result<()> {
        match self {
            Store::Sled(s) => s.put_version(hash, source),
            Store::Postgres(s) => s.put_version(hash, source).await,
        }
    }

    pub async fn version(&self, hash: &str) -> Result<Option<String>> {
        match self {
            Store::Sled(s) => s.version(hash),
            Store::Postgres(s) => s.version(hash).await,
        }
    }

    // --- retention ------------------------------------------------------------

    /// Woken when the records pass what retention by size keeps, so that
    /// pruning follows the traffic rather than its timer (sled; PostgreSQL
    /// prunes on its timer).
    pub fn prune_wanted(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        match self {
            Store::Sled(s) => Some(s.prune_wanted()),
            Store::Postgres(_) => None,
        }
    }

    /// Remove history older than `cutoff`, then the oldest history while the
    /// store takes more than `max_bytes`; and expired dedupe keys. Runs that
    /// are not final, and events with such runs, are never removed.
    pub async fn prune(&self, cutoff: Timestamp, max_bytes: u64, now: Timestamp) -> Result<Pruned> {
        match self {
            Store::Sled(s) => {
                let s = s.clone();
                blocking(move || s.prune(cutoff, max_bytes, now)).await
            }
            Store::Postgres(s) => s.prune(cutoff, max_bytes, now).await,
        }
    }
}

/// Run a blocking store call off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(format!("a store task was interrupted: {e}")))?
}

/// The per-workflow key/value store behind `state_get` / `state_set`.
/// Scripts call it synchronously, from the thread that evaluates them.
#[derive(Clone)]
pub struct StateStore(StateBackend);

#[derive(Clone)]
enum StateBackend {
    Sled(sled::SledState),
    Postgres(postgres::PgState),
}

impl StateStore {
    /// A call waits for another machine (the database): scripts that use
    /// state must not run on an async runtime thread.
    pub fn blocks(&self) -> bool {
        match &self.0 {
            StateBackend::Sled(_) => false,
            StateBackend::Postgres(_) => true,
        }
    }

    pub fn get(&self, workflow: &str, key: &str) -> Result<Option<Value>> {
        match &self.0 {
            StateBackend::Sled(s) => s.get(workflow, key),
            StateBackend::Postgres(s) => s.get(workflow, key),
        }
    }

    pub fn set(&self, workflow: &str, key: &str, value: &Value) -> Result<()> {
        match &self.0 {
            StateBackend::Sled(s) => s.set(workflow, key, value),
            StateBackend::Postgres(s) => s.set(workflow, key, value),
        }
    }
}
