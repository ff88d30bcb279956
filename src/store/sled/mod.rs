//! The sled backend: one process, one folder, nothing to install. Typed
//! trees:
//!
//! | tree       | key                           | value                      |
//! |------------|-------------------------------|----------------------------|
//! | `events`   | event id (time-ordered)       | [`Event`], see [`codec`]   |
//! | `runs`     | run id (time-ordered)         | [`Run`], see [`codec`]     |
//! | `events.packs`, `runs.packs` | the last id of a pack | finished records packed together ([`shelf`]) |
//! | `rejected` | event id of a rejected request | empty (an index, to keep the newest) |
//! | `queue`    | due time (ms, big-endian) ++ run id | empty                |
//! | `state`    | workflow `\0` key             | JSON value (`state_set`)   |
//! | `versions` | workflow version hash         | the workflow's source      |
//! | `meta`     | `fresh_runs_from`             | a run id (see below)       |
//! | `meta`     | `ready_probe`                 | time of the last readiness write |
//! | `meta`     | `live_bytes`                  | bytes of event and run records (see below) |
//!
//! Dedupe keys live in a database of their own, `DIR/dedupe` ([`dedupe`]).
//! That database is flushed once a second, not before each answer, so an
//! event's record also lists the keys it claimed: at open, the keys of the
//! events written since the last flush of the keys (and up to
//! [`MAX_INGEST_MS`] before it) are written again. An ingest that took
//! longer than that from the event's id to its record fails instead (the
//! sender retries), so none is missed.
//!
//! The `queue` tree holds runs waiting for a later time (retries, delays)
//! and replays. Fresh runs of an ingest get no queue entry, which saves two
//! writes per event: they are found again by scanning `runs` from the
//! `fresh_runs_from` mark, a run id below every fresh run that may still be
//! unfinished (kept by `queue.rs`). The scheduler works from an in-memory
//! mirror of the queue (`queue::Queue`); a claim is taking an entry from
//! it, as only this process uses the folder.
//!
//! Ids sort by creation time, so "newest first" is a reverse range scan and a
//! cursor is simply the last id seen. Events and runs are stored compressed
//! ([`codec`]); a minute after they were written (`--pack-after`), finished
//! ones move into packs of about 32 KiB of records each ([`shelf`]): sled
//! keeps memory per page it has written, so one entry per record made the
//! server's memory grow with stored history.
//!
//! Retention never scans the whole store: pruning by age walks from the
//! oldest event and stops at the first one inside the window; pruning by
//! size compares the bytes of event and run records — a running count
//! (`live_bytes`), kept on every write and saved with the fresh-runs mark —
//! with what the limit leaves them after sled's log and the dedupe keys
//! ([`records_budget`]); rejected requests are found through their own
//! index; dedupe keys are swept in the order they expire. The folder
//! itself is measured as `du` counts it, and near the limit new events are
//! paced so that sled's log can keep up ([`pace`]). Durability goes through
//! one flusher thread that serves every waiter with a single `flush`
//! (group commit).
//!
//! There are no sled transactions: the first one puts every later sled
//! operation of the process behind one global lock, which costs more than
//! the whole rest of an ingest under load. Each write sequence is ordered
//! instead so that any prefix of it is harmless (sled recovers a prefix of
//! the writes), and each has its crash points ([`crate::fault`]):
//!
//! - ingest: runs, dedupe keys, then the event (listing its keys). The event is the commit
//!   record: a run whose event is missing is discarded when it comes up, and
//!   a dedupe key whose event is missing (and was not pruned) holds nothing.
//! - retry and delay: the wake-up entry, then the run that waits for it,
//!   then the old entry goes. A crash in between leaves a spare entry (its
//!   run is not due then, or already finished: it is dropped), never a
//!   waiting run with nothing to wake it.
//! - finish: the final run, then its entry goes (a leftover entry of a
//!   finished run is dropped).
//! - replay: the entry, the run, then the links from its event and original.

pub mod codec;
pub(crate) mod dedupe;
pub(crate) mod pace;
pub(crate) mod queue;
pub(crate) mod shelf;

use super::{
    Claim, DedupeClaim, DedupeEntry, Durability, EventQuery, Ingest, Ingested, Page, Pruned,
    QueueGauges, Result, RunHead, RunQuery, StoreError, MAX_REJECTED_KEPT,
};
use crate::record::{Event, Outcome, Run, RunId, RunStatus, RunUpdate, Timestamp};
use queue::{Hot, Queue, QueueEntry};
use serde_json::Value;
use shelf::{Packing, Shelf};
use sled::Tree;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{error, info, warn};

const EVENTS: &str = "events";
const RUNS: &str = "runs";
const QUEUE: &str = "queue";
const STATE: &str = "state";
const VERSIONS: &str = "versions";
const DEDUPE: &str = "dedupe";
const META: &str = "meta";
const REJECTED: &str = "rejected";
const LIVE_BYTES: &[u8] = b"live_bytes";
const FRESH_RUNS_FROM: &[u8] = b"fresh_runs_from";
const READY_PROBE: &[u8] = b"ready_probe";

/// How often sled's flusher thread wakes to write out its buffer and to
/// move pages out of mostly dead segments, for at most half of it
/// (`tests/retention.rs`: without it, at a 16 MiB limit, 17.8 MB with it
/// only on the dedupe keys' database, 13.6–15.2 MB with it on both).
pub(crate) const SLED_CLEANER_EVERY_MS: u64 = 100;

/// The longest an ingest may take from its event's id to writing the
/// event's record, when the event claims dedupe keys; see the module doc.
pub(crate) const MAX_INGEST_MS: u64 = 30_000;

/// sled's segment size (its default, stated here because
/// [`crate::alloc`] recycles the log buffers of exactly this size).
pub const SEGMENT_SIZE: usize = 512 * 1024;

/// How many run updates a slow live listener may fall behind.
const FEED_CAPACITY: usize = 1024;

/// What the sled backend remembers about a claim it handed out.
#[derive(Debug)]
pub struct Ticket {
    /// The run has no queue-tree entry (a fresh run, found from the mark).
    fresh: bool,
}

/// The sled trees and the flusher: the persistence under [`SledStore`].
#[derive(Clone)]
pub(crate) struct Trees {
    db: sled::Db,
    events: Shelf,
    runs: Shelf,
    queue: Tree,
    state: Tree,
    versions: Tree,
    dedupe: Arc<dedupe::DedupeKeys>,
    meta: Tree,
    rejected: Tree,
    flusher: mpsc::Sender<oneshot::Sender<std::result::Result<(), String>>>,
    unreadable: Arc<Unreadable>,
    /// Bytes of event and run records (keys and values): what retention by
    /// size counts.
    live: Arc<AtomicI64>,
    /// Entries in the `rejected` index.
    rejected_count: Arc<AtomicI64>,
    /// What retention by size keeps of the records, as the last pruning
    /// set it; writes past it by [`prune_slack`] wake `prune_wanted`.
    records_target: Arc<std::sync::atomic::AtomicU64>,
    prune_wanted: Arc<tokio::sync::Notify>,
    /// Held by the packer and by pruning: one moves records into packs,
    /// the other removes them, never both at once.
    history_lock: Arc<std::sync::Mutex<()>>,
    /// The data folder's size on disk, and the pace it sets for new
    /// events (none for a temporary store).
    pace: Option<Arc<pace::DiskPace>>,
}

/// Records that cannot be decoded (a bad disk, a bug of an older version):
/// each is skipped wherever it comes up, so one bad record never stops
/// start-up, a listing or pruning; counted for `/metrics` and logged once.
#[derive(Default)]
pub(crate) struct Unreadable {
    count: std::sync::atomic::AtomicU64,
    logged: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Unreadable keys remembered for "log once"; beyond this every one is
/// still counted, and logged again.
const UNREADABLE_LOGGED: usize = 1024;

impl Unreadable {
    fn note(&self, tree: &str, key: &str, error: &StoreError) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let first = logged.insert(format!("{tree}/{key}"));
        if first {
            self.count.fetch_add(1, Ordering::Relaxed);
            error!(tree, key, error = %error, "skipping a record that cannot be read");
        }
        if logged.len() > UNREADABLE_LOGGED {
            logged.clear();
        }
    }
}

/// Handle to the sled backend; cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    trees: Trees,
    queue: Queue,
    updates: broadcast::Sender<RunUpdate>,
    claims: Arc<ClaimLocks>,
    /// Runs not finished (queued, running, retrying, waiting).
    unfinished: Arc<AtomicI64>,
    /// Runs whose stored status is `waiting` (a `delay`), for `/metrics`.
    waiting: Arc<Waiting>,
    /// History older than this is packed.
    pack_after: std::time::Duration,
}

/// The runs stored as `waiting`: every write of a run passes here, so the
/// gauge follows the records themselves (a set, not a counter, so a run
/// written twice counts once).
#[derive(Default)]
struct Waiting {
    runs: std::sync::Mutex<std::collections::HashSet<RunId>>,
    /// `runs.len()`, readable without the lock: most writes are of runs
    /// that never waited, and skip the lock while nothing waits.
    count: std::sync::atomic::AtomicUsize,
}

impl Waiting {
    fn note(&self, run: &Run) {
        let waits = run.status == RunStatus::Waiting;
        if !waits && self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if waits {
            runs.insert(run.id.clone());
        } else {
            runs.remove(&run.id);
        }
        self.count.store(runs.len(), Ordering::Relaxed);
    }

    fn set(&self, ids: std::collections::HashSet<RunId>) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        *runs = ids;
        self.count.store(runs.len(), Ordering::Relaxed);
    }
}

/// How the sled backend is opened.
#[derive(Debug, Clone, Copy)]
pub struct SledOptions {
    /// sled's page cache bound, in MiB (split between the history's and
    /// the dedupe keys' databases).
    pub cache_mb: u64,
    /// Finished events and runs older than this are packed ([`shelf`]).
    pub pack_after: std::time::Duration,
}

/// Packs are made of history a minute old: by then a run has usually
/// finished, and its event is rarely read again.
pub const DEFAULT_PACK_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A queued or running run holds the packer back (it is about to finish,
/// and is packed with its neighbours then) unless it is older than this.
const BACKLOG_AT_MOST_MS: u64 = 3_600_000;

/// How often the packer looks for history to pack.
const PACK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Packs written per packer pass at most, per kind of record (the next
/// pass goes on): bounds the time pruning may wait for the packer.
const PACKS_PER_PASS: usize = 64;

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_mb: 16,
            pack_after: DEFAULT_PACK_AFTER,
        }
    }
}

impl SledStore {
    pub fn open(dir: &Path, options: SledOptions) -> Result<SledStore> {
        let cache = options.cache_mb.saturating_mul(1024 * 1024);
        // The dedupe keys are looked up once per event: an eighth of the
        // cache holds their hot pages.
        let dedupe_cache = (cache / 8).max(1024 * 1024);
        // sled's bound is looser than it reads: a page read from disk is
        // counted against it only once 64 accesses have queued up in its
        // 256th of the cache, so each database can hold up to 16,128 pages
        // uncounted; with a million stored runs, about 45 MB at rest
        // (`docs/performance.md`, stop 46).
        let db = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_SIZE)
            .cache_capacity(cache.saturating_sub(dedupe_cache).max(dedupe_cache))
            // Durability is ours: the group-commit flusher below decides
            // when an answer waits for the disk. sled's own flusher thread
            // runs too, for its other task: moving the live pages out of
            // mostly dead segments so that they can be reused (without it,
            // a segment waits until every page in it has moved on by
            // itself, and the folder outgrows `--retention-size`).
            .flush_every_ms(Some(SLED_CLEANER_EVERY_MS))
            .open()?;
        let dedupe = dedupe::DedupeKeys::open(&dir.join(DEDUPE), dedupe_cache)?;
        let pace = pace::DiskPace::start(dir).map_err(|e| {
            StoreError::Other(format!("cannot start the disk measuring thread: {e}"))
        })?;
        Self::from_db(db, dedupe, Some(pace), options.pack_after)
    }

    pub fn temporary() -> Result<SledStore> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::from_db(
            db,
            dedupe::DedupeKeys::temporary()?,
            None,
            DEFAULT_PACK_AFTER,
        )
    }

    fn from_db(
        db: sled::Db,
        dedupe: dedupe::DedupeKeys,
        pace: Option<Arc<pace::DiskPace>>,
        pack_after: std::time::Duration,
    ) -> Result<SledStore> {
        let moved = dedupe.take_over(&db, DEDUPE)?;
        if moved > 0 {
            info!(
                keys = moved,
                "moved the dedupe keys into their own database"
            );
        }
        let live: Arc<AtomicI64> = Arc::default();
        let unreadable: Arc<Unreadable> = Arc::default();
        let events = Shelf::open(&db, EVENTS, live.clone(), unreadable.clone())?;
        let recovered = dedupe.recover(&events, Timestamp::now())?;
        if recovered > 0 {
            info!(
                keys = recovered,
                "wrote again the dedupe keys a crash had cut short"
            );
        }
        let dedupe = Arc::new(dedupe);
        let (tx, rx) = mpsc::channel::<oneshot::Sender<std::result::Result<(), String>>>();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("hookflow-flush".into())
            .spawn(move || group_commit(flush_db, rx))
            .map_err(|e| StoreError::Flush(format!("cannot start the flusher thread: {e}")))?;
        let prune_wanted: Arc<tokio::sync::Notify> = Arc::default();
        if let Some(p) = &pace {
            p.wake_on_squeeze(prune_wanted.clone());
        }
        let trees = Trees {
            events,
            runs: Shelf::open(&db, RUNS, live.clone(), unreadable.clone())?,
            queue: db.open_tree(QUEUE)?,
            state: db.open_tree(STATE)?,
            versions: db.open_tree(VERSIONS)?,
            dedupe,
            meta: db.open_tree(META)?,
            rejected: db.open_tree(REJECTED)?,
            db,
            flusher: tx,
            unreadable,
            live,
            rejected_count: Arc::default(),
            records_target: Arc::new(u64::MAX.into()),
            prune_wanted,
            history_lock: Arc::default(),
            pace,
        };
        Ok(SledStore {
            trees,
            queue: Queue::default(),
            updates: broadcast::channel(FEED_CAPACITY).0,
            claims: Arc::default(),
            unfinished: Arc::default(),
            waiting: Arc::default(),
            pack_after,
        })
    }

    /// Fill the queue mirror, count the unfinished runs, store the first
    /// fresh-runs mark, and keep moving the mark every second.
    pub async fn start(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>> {
        let (q, t) = (self.queue.clone(), self.trees.clone());
        let (counted, waiting) = super::blocking(move || {
            q.load(&t)?;
            t.count_records()?;
            t.count_unfinished()
        })
        .await?;
        self.unfinished.store(counted as i64, Ordering::Relaxed);
        self.waiting.set(waiting);
        // The fresh-runs mark must be on disk before the first ingest.
        queue::checkpoint(&self.queue, &self.trees).await?;
        let marker = tokio::spawn(queue::keep_marking(
            self.queue.clone(),
            self.trees.clone(),
            stop.clone(),
        ));
        let packer = tokio::spawn(keep_packing(self.clone(), stop));
        Ok(vec![marker, packer])
    }

    /// Pack the history older than the packing age (see [`shelf`]).
    /// How many events and runs went into packs, and whether there is more
    /// to pack at once.
    pub fn pack(&self, now: Timestamp) -> Result<(usize, usize, bool)> {
        let t = &self.trees;
        let _alone = t.history_lock.lock().unwrap_or_else(|e| e.into_inner());
        let at = Timestamp(now.0.saturating_sub(self.pack_after.as_millis() as u64));
        let crash = || self.crash_point("pack.written");
        // Runs: final ones go; a run waiting for a retry or a delay stays
        // hot (it may wait for days); a run of the backlog holds the
        // packer back until it is done, unless it is older than an hour:
        // then it is stuck, not waiting its turn, and holds nothing back.
        let stuck = |id: &str| id_time(id).is_some_and(|t| t.0 + BACKLOG_AT_MOST_MS < now.0);
        let busy = |s: RunStatus| matches!(s, RunStatus::Queued | RunStatus::Running);
        let runs = t.runs.pack(
            RunId::floor(at).as_str().as_bytes(),
            |id, v| match codec::run_head_unless_ended(id, v) {
                None => Packing::Pack,
                Some(Ok(h)) if h.status.is_final() => Packing::Pack,
                Some(Ok(h)) if busy(h.status) && !stuck(id) => Packing::Stop,
                _ => Packing::Skip,
            },
            PACKS_PER_PASS,
            &crash,
        )?;
        // Events: once no run of theirs is queued or running (executors
        // read the event of each run they start).
        let events = t.events.pack(
            crate::record::EventId::floor(at).as_str().as_bytes(),
            |id, v| {
                let Ok(head) = codec::event_head(id, v) else {
                    return Packing::Skip;
                };
                for run in &head.runs {
                    let hot = t.runs.hot.get(run.as_str().as_bytes()).ok().flatten();
                    let running = hot.is_some_and(|r| {
                        matches!(codec::run_head_unless_ended(run.as_str(), &r),
                            Some(Ok(h)) if busy(h.status))
                    });
                    if running {
                        return if stuck(id) {
                            Packing::Skip
                        } else {
                            Packing::Stop
                        };
                    }
                }
                Packing::Pack
            },
            PACKS_PER_PASS,
            &crash,
        )?;
        Ok((events.0, runs.0, events.1 || runs.1))
    }

    pub async fn close(&self) -> Result<()> {
        queue::checkpoint(&self.queue, &self.trees).await?;
        self.flush().await
    }

    pub async fn flush(&self) -> Result<()> {
        self.trees.flush().await
    }

    pub fn write_probe(&self, now: Timestamp) -> Result<()> {
        self.trees.meta.insert(READY_PROBE, &now.0.to_be_bytes())?;
        Ok(())
    }

    /// Make everything written so far durable, then stop the process if
    /// `point` is the armed crash point.
    pub fn crash_point(&self, point: &str) {
        if crate::fault::hits(point) {
            if let Err(e) = self.trees.db.flush() {
                eprintln!("hookflow: flush before the crash point failed: {e}");
            }
            crate::fault::crash(point);
        }
    }

    // --- inbound ------------------------------------------------------------

    pub async fn ingest(&self, ingest: Ingest) -> Result<Ingested> {
        let Ingest {
            mut event,
            mut stored_event,
            runs,
            claims,
        } = ingest;
        // Near the size limit, wait for this event's slot before writing
        // anything of it (see [`pace`]).
        if let Some(p) = &self.trees.pace {
            let cost = event.body_size as u64 + pace::RECORD_COST * (1 + runs.len() as u64);
            p.wait_turn(cost).await?;
        }
        // Before any run id exists: the fresh-runs mark must not pass the
        // runs this ingest creates.
        let _ingesting = self.queue.ingest();
        let now = event.received_at;
        let _held = self.claims.hold(&claims).await;
        let mut keep = vec![true; runs.len()];
        let mut holder: Option<DedupeEntry> = None;
        for (i, claim) in &claims {
            if let Some(h) = self.dedupe_holder(&claim.workflow, &claim.key, now)? {
                keep[*i] = false;
                holder.get_or_insert(h);
            }
        }
        if let Some(h) = holder {
            if !keep.iter().any(|k| *k) {
                return Ok(Ingested::Duplicate {
                    event_id: h.event_id,
                    runs: h.runs,
                });
            }
        }
        let mut runs: Vec<Run> = runs
            .into_iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| r)
            .collect();
        for r in &mut runs {
            r.id = RunId::generate();
        }
        let claims: Vec<DedupeClaim> = claims
            .into_iter()
            .filter(|(i, _)| keep[*i])
            .map(|(_, c)| c)
            .collect();
        event.runs = runs.iter().map(|r| r.id.clone()).collect();
        if let Some(stored) = &mut stored_event {
            stored.runs = event.runs.clone();
        }

        for r in &runs {
            self.trees
                .put(&self.trees.runs, r.id.as_str(), codec::encode_run(r))?;
        }
        self.crash_point("ingest.runs_written");
        let mut claimed = Vec::with_capacity(claims.len());
        for c in &claims {
            let entry = DedupeEntry {
                event_id: event.id.clone(),
                runs: event.runs.clone(),
                expires_at: c.expires_at,
            };
            let key = dedupe_key(&c.workflow, &c.key);
            self.trees.dedupe.put(&key, &entry)?;
            claimed.push(codec::ClaimedKey {
                key: hex::encode(key),
                expires_at: c.expires_at,
            });
        }
        self.crash_point("ingest.claims_written");
        // Past this, a crash before the keys' next flush would not find
        // this event among those whose keys it writes again.
        let started = id_time(event.id.as_str()).unwrap_or(event.received_at);
        if !claimed.is_empty() && Timestamp::now().0.saturating_sub(started.0) > MAX_INGEST_MS {
            // The keys go too: a key whose event is missing and older than
            // every event kept would read as pruned, and hold the retry.
            for c in &claims {
                self.trees
                    .dedupe
                    .release(&dedupe_key(&c.workflow, &c.key), &event.id)?;
            }
            return Err(StoreError::Other(format!(
                "the event took more than {} s to store (a slow disk?); the sender's retry will store it",
                MAX_INGEST_MS / 1000
            )));
        }
        self.trees.put(
            &self.trees.events,
            event.id.as_str(),
            codec::encode_event_claiming(stored_event.as_ref().unwrap_or(&event), &claimed),
        )?;
        self.crash_point("ingest.event_written");
        self.flush().await?;
        self.crash_point("ingest.flushed");

        self.unfinished
            .fetch_add(runs.len() as i64, Ordering::Relaxed);
        let answer = Ingested::Stored {
            event_id: event.id.clone(),
            runs: event.runs.clone(),
        };
        let mut event = Some(event);
        let n = runs.len();
        for (i, r) in runs.into_iter().enumerate() {
            self.publish(&r);
            let e = if i + 1 == n {
                event.take()
            } else {
                event.clone()
            };
            if let Some(e) = e {
                self.queue.push_hot(r, e);
            }
        }
        Ok(answer)
    }

    /// The live holder of a dedupe key, if any. A key written by an ingest
    /// that was interrupted before its event (and so before its answer)
    /// holds nothing: the sender's retry must get through.
    fn dedupe_holder(
        &self,
        workflow: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<DedupeEntry>> {
        let Some(b) = self.trees.dedupe.get(&dedupe_key(workflow, key))? else {
            return Ok(None);
        };
        let e: DedupeEntry = match codec::decode_dedupe(key, &b) {
            Ok(e) => e,
            Err(err) => {
                // An unreadable key holds nothing.
                self.trees.unreadable.note(DEDUPE, key, &err);
                return Ok(None);
            }
        };
        if e.expires_at <= now {
            return Ok(None);
        }
        if self.trees.events.contains(e.event_id.as_str())? {
            return Ok(Some(e));
        }
        // The event is missing: pruned (older than every event kept: the
        // key still holds), or never written (the ingest was interrupted).
        let oldest_kept = self.trees.events.first_id()?;
        let pruned = oldest_kept.is_some_and(|k| e.event_id.as_str().as_bytes() < &k[..]);
        Ok(pruned.then_some(e))
    }

    /// Keep a rejected request's metadata, and index it (only the newest
    /// [`MAX_REJECTED_KEPT`] are kept).
    pub fn save_rejected(&self, event: &Event) -> Result<()> {
        let key = event.id.as_str();
        self.trees
            .put(&self.trees.events, key, codec::encode_event(event))?;
        if self
            .trees
            .rejected
            .insert(key.as_bytes(), &[] as &[u8])?
            .is_none()
        {
            self.trees.rejected_count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    // --- the queue ----------------------------------------------------------

    pub async fn claim(&self, now: Timestamp, limit: usize) -> Result<Vec<Claim>> {
        if self.queue.wants_refill() {
            let (q, t) = (self.queue.clone(), self.trees.clone());
            super::blocking(move || q.load(&t)).await?;
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(entry) = self.queue.take(now) else {
                break;
            };
            let fresh = self.queue.is_fresh(&entry.run_id);
            out.push(Claim {
                run_id: entry.run_id,
                due: entry.due,
                ticket: super::Ticket::Sled(Ticket { fresh }),
            });
        }
        Ok(out)
    }

    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.next_due()
    }

    pub async fn work_arrived(&self) {
        self.queue.changed().await
    }

    fn ticket(claim: &Claim) -> &Ticket {
        // Claims go back to the store that handed them out; a claim of
        // another store has no entry here.
        static NONE: Ticket = Ticket { fresh: false };
        match &claim.ticket {
            super::Ticket::Sled(t) => t,
            super::Ticket::Postgres(_) => &NONE,
        }
    }

    fn entry(claim: &Claim) -> QueueEntry {
        QueueEntry {
            due: claim.due,
            run_id: claim.run_id.clone(),
        }
    }

    /// The claim is done with: remove its queue-tree entry, or for a fresh
    /// run (which has none) release the store's mark.
    fn settle(&self, claim: &Claim) -> Result<()> {
        if Self::ticket(claim).fresh {
            self.queue.settle(&claim.run_id);
            Ok(())
        } else {
            self.dequeue(&Self::entry(claim))
        }
    }

    pub async fn load(&self, claim: &Claim) -> Result<Option<(Run, Event)>> {
        let (run, hot_event) = match self.queue.take_hot(&claim.run_id) {
            Some(Hot { run, event }) => (run, Some(event)),
            None => match self.read_run(claim.run_id.as_str()) {
                Ok(Some(run)) => (run, None),
                Ok(None) => {
                    warn!(run_id = %claim.run_id, "queued run is missing from the store; dropping its queue entry");
                    self.settle(claim)?;
                    return Ok(None);
                }
                Err(e @ StoreError::Corrupt { .. }) => {
                    self.trees.unreadable.note(RUNS, claim.run_id.as_str(), &e);
                    self.settle(claim)?;
                    self.unfinished.fetch_sub(1, Ordering::Relaxed);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            },
        };
        // A final run, or a spare entry left by a crash while a retry was
        // being scheduled (the run's own entry is the later one).
        if run.status.is_final() || run.next_attempt_at.is_some_and(|at| at > claim.due) {
            self.settle(claim)?;
            return Ok(None);
        }
        let event = match hot_event {
            Some(e) => Some(e),
            None => match self.read_event(run.event_id.as_str()) {
                Ok(e) => e,
                Err(e @ StoreError::Corrupt { .. }) => {
                    self.trees
                        .unreadable
                        .note(EVENTS, run.event_id.as_str(), &e);
                    None
                }
                Err(e) => return Err(e),
            },
        };
        let Some(event) = event else {
            // Only an ingest interrupted before its event was written (and
            // so before its 202) leaves a run without its event.
            warn!(run_id = %claim.run_id, event_id = %run.event_id, "discarding a run whose event was never stored");
            self.trees.runs.remove(claim.run_id.as_str())?;
            self.settle(claim)?;
            self.unfinished.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        };
        Ok(Some((run, event)))
    }

    pub async fn save(&self, _claim: &Claim, run: &Run, durability: Durability) -> Result<()> {
        self.save_run(run)?;
        if durability == Durability::Now {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn schedule(&self, claim: &Claim, run: &Run) -> Result<()> {
        let due = run.next_attempt_at.ok_or_else(|| {
            StoreError::Other(format!("run {} is scheduled with no time", run.id))
        })?;
        let seq = match run.status {
            RunStatus::Waiting => "delay",
            _ => "retry",
        };
        let entry = QueueEntry {
            due,
            run_id: run.id.clone(),
        };
        // Wake-up entry first: a crash after it leaves a spare entry
        // (harmless), never a waiting run with nothing to wake it.
        self.trees.queue.insert(entry.key(), &[] as &[u8])?;
        self.crash_point(&format!("{seq}.entry_written"));
        self.save_run(run)?;
        self.crash_point(&format!("{seq}.run_saved"));
        if !Self::ticket(claim).fresh {
            self.dequeue(&Self::entry(claim))?;
        }
        self.crash_point(&format!("{seq}.old_entry_removed"));
        self.flush().await?;
        // The new entry is on disk: the run no longer needs the mark.
        self.queue.settle(&run.id);
        self.queue.push(entry);
        self.publish(run);
        Ok(())
    }

    pub async fn finish(&self, claim: &Claim, run: &Run, durability: Durability) -> Result<()> {
        self.save_run(run)?;
        self.crash_point("finish.run_saved");
        self.settle(claim)?;
        self.crash_point("finish.entry_removed");
        self.unfinished.fetch_sub(1, Ordering::Relaxed);
        if durability == Durability::Now {
            self.flush().await?;
        }
        self.publish(run);
        Ok(())
    }

    pub fn release(&self, claim: Claim, failed: bool) {
        self.queue.done(&claim.run_id);
        if failed {
            let queue = self.queue.clone();
            let entry = Self::entry(&claim);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                queue.push(entry);
            });
        }
    }

    pub async fn insert_replay(&self, original: &Run, replay: &Run) -> Result<()> {
        let entry = QueueEntry {
            due: replay.created_at,
            run_id: replay.id.clone(),
        };
        self.trees.queue.insert(entry.key(), &[] as &[u8])?;
        self.crash_point("replay.entry_written");
        self.trees.put(
            &self.trees.runs,
            replay.id.as_str(),
            codec::encode_run(replay),
        )?;
        self.crash_point("replay.run_written");
        let key = replay.event_id.as_str();
        if let Some(bytes) = self.trees.events.get(key)? {
            // An unreadable event keeps its bytes; the replay still runs.
            if let Ok(mut event) = codec::decode_event(key, &bytes) {
                if !event.runs.contains(&replay.id) {
                    event.runs.push(replay.id.clone());
                    self.trees
                        .put(&self.trees.events, key, codec::encode_event(&event))?;
                }
            }
        }
        self.trees.put(
            &self.trees.runs,
            original.id.as_str(),
            codec::encode_run(original),
        )?;
        self.crash_point("replay.linked");
        self.flush().await?;
        self.unfinished.fetch_add(1, Ordering::Relaxed);
        self.queue.push(entry);
        self.publish(replay);
        self.publish(original);
        Ok(())
    }

    pub fn queue_gauges(&self, now: Timestamp) -> QueueGauges {
        QueueGauges {
            depth: self.unfinished.load(Ordering::Relaxed).max(0) as usize,
            later: self.queue.due_after(now),
            waiting: self.waiting.count.load(Ordering::Relaxed),
            unreadable: self.unreadable_records(),
            record_bytes: Some(self.trees.live_bytes()),
            dedupe_bytes: Some(self.trees.dedupe.bytes()),
            disk_bytes: self.trees.disk_bytes(),
            pace_bytes: self.trees.pace.as_ref().map(|p| p.rate()),
            record_target_bytes: Some(self.trees.records_target.load(Ordering::Relaxed))
                .filter(|t| *t != u64::MAX),
        }
    }

    /// Records skipped because they cannot be decoded, since start.
    pub fn unreadable_records(&self) -> u64 {
        self.trees.unreadable.count.load(Ordering::Relaxed)
    }

    fn dequeue(&self, entry: &QueueEntry) -> Result<()> {
        self.trees.queue.remove(entry.key())?;
        Ok(())
    }

    // --- the change feed ----------------------------------------------------

    pub fn publish(&self, run: &Run) {
        // No listener (no open UI) is the normal case: skip the copies.
        if self.updates.receiver_count() == 0 {
            return;
        }
        let _ = self.updates.send(RunUpdate::of(run));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunUpdate> {
        self.updates.subscribe()
    }

    // --- reads ----------------------------------------------------------------

    fn save_run(&self, run: &Run) -> Result<()> {
        self.trees
            .put(&self.trees.runs, run.id.as_str(), codec::encode_run(run))?;
        self.waiting.note(run);
        Ok(())
    }

    fn read_run(&self, id: &str) -> Result<Option<Run>> {
        self.trees
            .runs
            .get(id)?
            .map(|b| codec::decode_run(id, &b))
            .transpose()
    }

    fn read_event(&self, id: &str) -> Result<Option<Event>> {
        self.trees
            .events
            .get(id)?
            .map(|b| codec::decode_event(id, &b))
            .transpose()
    }

    pub fn run(&self, id: &str) -> Result<Option<Run>> {
        self.read_run(id)
    }

    pub fn event(&self, id: &str) -> Result<Option<Event>> {
        self.read_event(id)
    }

    pub fn list_runs(&self, q: &RunQuery) -> Result<Page<Run>> {
        list(
            &self.trees.runs,
            q.before.as_deref(),
            q.limit,
            |key, bytes| {
                let run: Run = match codec::decode_run(key, bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        self.trees.unreadable.note(RUNS, key, &e);
                        return Ok(None);
                    }
                };
                let keep = q.workflow.as_ref().is_none_or(|w| &run.workflow == w)
                    && q.status.is_none_or(|s| run.status == s);
                Ok(keep.then_some(run))
            },
        )
    }

    pub fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        list(
            &self.trees.events,
            q.before.as_deref(),
            q.limit,
            |key, bytes| {
                let event: Event = match codec::decode_event(key, bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        self.trees.unreadable.note(EVENTS, key, &e);
                        return Ok(None);
                    }
                };
                let keep = q.outcome.is_none_or(|o| event.outcome == o)
                    && q.workflow
                        .as_ref()
                        .is_none_or(|w| event.workflows.contains(w));
                Ok(keep.then_some(event))
            },
        )
    }

    pub fn run_heads(&self, since: Timestamp, cap: usize) -> Result<Vec<RunHead>> {
        let mut out = Vec::new();
        for entry in self.trees.runs.scan_rev(None).take(cap) {
            let (k, v) = entry?;
            let key = String::from_utf8_lossy(&k);
            let head = match codec::decode_run::<RunHead>(&key, &v) {
                Ok(h) => h,
                Err(e) => {
                    self.trees.unreadable.note(RUNS, &key, &e);
                    continue;
                }
            };
            if head.created_at < since {
                break;
            }
            out.push(head);
        }
        Ok(out)
    }

    // --- workflow state and versions ----------------------------------------

    pub fn prune_wanted(&self) -> Arc<tokio::sync::Notify> {
        self.trees.prune_wanted.clone()
    }

    pub fn state(&self) -> SledState {
        SledState {
            tree: self.trees.state.clone(),
        }
    }

    pub fn put_version(&self, hash: &str, source: &str) -> Result<()> {
        if !self.trees.versions.contains_key(hash.as_bytes())? {
            self.trees
                .versions
                .insert(hash.as_bytes(), source.as_bytes())?;
        }
        Ok(())
    }

    pub fn version(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .trees
            .versions
            .get(hash.as_bytes())?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    // --- retention ------------------------------------------------------------

    pub fn prune(&self, cutoff: Timestamp, max_bytes: u64, now: Timestamp) -> Result<Pruned> {
        let t = &self.trees;
        let _alone = t.history_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut pruned = Pruned::default();
        if let Some(p) = &t.pace {
            p.set_limit(max_bytes);
        }
        // By age, then by size: both from the oldest event.
        // The dedupe keys first: what they take is not the history's.
        let swept = t.dedupe.sweep(now, dedupe_budget(max_bytes))?;
        pruned.dedupe += swept.expired + swept.early;
        pruned.dedupe_early += swept.early;
        let budget = records_budget(max_bytes, t.dedupe.bytes());
        let records = t.pace.as_ref().map_or(budget, |p| p.records_share(budget));
        t.records_target.store(records, Ordering::Relaxed);
        t.prune_oldest(&mut pruned, |key, picked| {
            id_time(key).is_some_and(|at| at < cutoff)
                || t.live_bytes().saturating_sub(picked) > records
        })?;
        // Rejected requests: only the newest are worth keeping.
        while t.rejected_count.load(Ordering::Relaxed) > MAX_REJECTED_KEPT as i64 {
            let Some((k, _)) = t.rejected.pop_min()? else {
                break;
            };
            t.rejected_count.fetch_sub(1, Ordering::Relaxed);
            if t.events.remove(&String::from_utf8_lossy(&k))? {
                pruned.events += 1;
            }
        }
        Ok(pruned)
    }
}

/// The bytes of event and run records that retention by size keeps, for
/// a limit on the data folder as `du` counts it and the bytes the dedupe
/// keys take now.
///
/// sled's log holds more than its records: leaves of time-ordered keys are
/// about half full, a page is a base plus up to ten deltas, a segment is
/// reused only once every page in it has moved on, and a few segments are
/// always being written or drained. Measured under steady pruning
/// (`tests/retention.rs`; figures in `docs/performance.md`), each database
/// took a few MB plus three to five and a half times its records. So each
/// gets a fixed part for its segments in flight, the dedupe keys a factor
/// on their bytes, and the history a sixth of the rest.
pub fn records_budget(limit: u64, dedupe_bytes: u64) -> u64 {
    limit
        .saturating_sub(LOG_IN_FLIGHT + DEDUPE_LOG_IN_FLIGHT)
        .saturating_sub(dedupe_bytes.saturating_mul(DEDUPE_LOG_FACTOR))
        / LOG_FACTOR
}

/// How far the records may pass their target before pruning is woken: an
/// eighth of it, and at most [`PRUNE_STEP_MAX`]. Each pass then removes
/// about this much, so a large `--retention-size` prunes often and a little
/// at a time rather than tens of thousands of events at once.
fn prune_slack(target: u64) -> u64 {
    (target / 8).min(PRUNE_STEP_MAX)
}

/// The most a pass of pruning by size removes while writes go on: old
/// history is read back through sled's cache to be removed, and a pass of
/// an eighth at the default limit (about 20 MiB of records, some 24,000
/// Stripe-sized events) raised a loaded server's RSS by tens of MB for a
/// few seconds (`docs/performance.md`, "Pruning a little at a time").
const PRUNE_STEP_MAX: u64 = 4 * 1024 * 1024;

/// The bytes the dedupe keys may take, within their window: beyond, the
/// keys that expire first are dropped early (and counted, and logged), so
/// that the limit holds and the history keeps most of it.
pub fn dedupe_budget(limit: u64) -> u64 {
    limit / 16
}

/// The part of the history's log that does not shrink with the records:
/// segments being written, drained or waiting to be reused.
const LOG_IN_FLIGHT: u64 = 6 * 1024 * 1024;

/// The same for the dedupe keys' own database.
const DEDUPE_LOG_IN_FLIGHT: u64 = 2 * 1024 * 1024;

/// Bytes of log, at most, for a byte of history records.
const LOG_FACTOR: u64 = 6;

/// Bytes of log, at most, for a byte of dedupe keys (written at random
/// places, never pruned by age within their window).
const DEDUPE_LOG_FACTOR: u64 = 4;

/// The smallest `--retention-size` the sled store can hold to: below it,
/// the segments in flight alone come close to the limit.
pub const MIN_RETENTION_SIZE: u64 = 16 * 1024 * 1024;

/// Events read per batch when pruning (memory stays bounded).
const PRUNE_BATCH: usize = 1024;

/// Events with unfinished runs a pass of pruning steps over before it
/// ends, once it has removed something. Behind a backlog every newer
/// event waits too: a pass went on reading the whole backlog back (each
/// event and its runs, out of sled's cache, decompressed and parsed) to
/// find nothing more to remove, and passes come every few seconds while
/// a burst fills the data folder: 39% of the server's CPU in that phase
/// (`docs/performance.md`). A pass that has removed nothing yet goes on
/// as far as it must, so history behind runs that wait for days is still
/// pruned.
const PRUNE_SKIPS_AFTER_PROGRESS: usize = PRUNE_BATCH;

impl Trees {
    /// Write an event or run record, keeping the byte count.
    fn put(&self, shelf: &Shelf, key: &str, value: Vec<u8>) -> Result<()> {
        let live = shelf.put(key, value)?;
        let target = self.records_target.load(Ordering::Relaxed);
        if live.max(0) as u64 > target.saturating_add(prune_slack(target)) {
            self.prune_wanted.notify_one();
        }
        Ok(())
    }

    /// The byte count saved with the last mark, or counted anew (a store
    /// written by an earlier version); and the rejected index's size.
    fn count_records(&self) -> Result<()> {
        let saved = self
            .meta
            .get(LIVE_BYTES)?
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map(i64::from_le_bytes);
        let live = match saved {
            Some(n) => n,
            None => self.events.count_bytes()? + self.runs.count_bytes()?,
        };
        self.live.store(live, Ordering::Relaxed);
        self.rejected_count.store(
            self.rejected.iter().keys().count() as i64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Bytes the data folder takes on disk, as `du` counts them: every
    /// file of both databases (the logs with their free space, snapshots,
    /// blobs). `None` for a temporary store.
    fn disk_bytes(&self) -> Option<u64> {
        self.pace.as_ref().map(|p| p.used())
    }

    /// Flush the dedupe keys' database, with the time up to which its keys
    /// are on disk.
    pub(crate) fn flush_dedupe_keys(&self) -> Result<()> {
        self.dedupe.mark_durable(Timestamp::now())
    }

    /// Bytes of event and run records, as counted. After a crash the count
    /// restarts from its last save and may fall below zero as records
    /// written since are replaced or removed: that reads as none, never as
    /// a huge number that would make pruning by size empty the store.
    fn live_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed).max(0) as u64
    }

    /// Keep the byte count with the fresh-runs mark (durable with the next
    /// flush; after a crash it may miss the last second of writes, which
    /// retention by size can bear).
    pub(crate) fn save_live_bytes(&self) -> Result<()> {
        let n = self.live.load(Ordering::Relaxed).max(0);
        self.meta.insert(LIVE_BYTES, &n.to_le_bytes())?;
        Ok(())
    }

    /// Remove the oldest events (with their runs) while `doomed` says so of
    /// the next one's id, given the bytes the events picked so far will
    /// free. An event whose runs are not all final stays: pruning must not
    /// lose work. Once a pass has removed something, it ends after stepping
    /// over [`PRUNE_SKIPS_AFTER_PROGRESS`] such events. Reads a batch at a
    /// time, and removes each batch's runs, then its events (so a pack is
    /// rewritten once per batch, not once per record).
    fn prune_oldest(&self, pruned: &mut Pruned, doomed: impl Fn(&str, u64) -> bool) -> Result<()> {
        let mut from: Option<sled::IVec> = None;
        let removed_before = pruned.events;
        let mut skipped = 0usize;
        loop {
            let start = match &from {
                Some(k) => std::ops::Bound::Excluded(&k[..]),
                None => std::ops::Bound::Unbounded,
            };
            let mut batch = Vec::with_capacity(PRUNE_BATCH);
            for entry in self.events.scan(start).take(PRUNE_BATCH) {
                batch.push(entry?);
            }
            if batch.is_empty() {
                return Ok(());
            }
            let (mut events, mut runs, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
            // Bytes the picked records take as read (a packed record takes
            // less: the estimate is high, and is checked again below).
            let mut picked = 0u64;
            let mut stopped = false;
            let mut enough_skips = false;
            for (k, v) in batch {
                let key = String::from_utf8_lossy(&k).into_owned();
                if !doomed(&key, picked) {
                    stopped = true;
                    break;
                }
                from = Some(k.clone());
                match codec::event_head(&key, &v) {
                    Ok(head) => {
                        let Some(run_bytes) = self.final_runs_bytes(&head.runs)? else {
                            skipped += 1;
                            let progress = pruned.events > removed_before || !events.is_empty();
                            if progress && skipped >= PRUNE_SKIPS_AFTER_PROGRESS {
                                enough_skips = true;
                                break;
                            }
                            continue;
                        };
                        picked += run_bytes;
                        runs.extend(head.runs.into_iter().map(|r| r.0));
                        if head.outcome == Outcome::Rejected {
                            rejected.push(k.clone());
                        }
                    }
                    // Unreadable: only its id's time is known.
                    Err(e) => self.unreadable.note(EVENTS, &key, &e),
                }
                picked += (k.len() + v.len()) as u64;
                events.push(key);
            }
            pruned.runs += self.runs.remove_many(runs.iter().map(String::as_str))?;
            pruned.events += self.events.remove_many(events.iter().map(String::as_str))?;
            for k in rejected {
                if self.rejected.remove(&k)?.is_some() {
                    self.rejected_count.fetch_sub(1, Ordering::Relaxed);
                }
            }
            // Stopped on the estimate: ask again with what was freed.
            if (stopped && picked == 0) || enough_skips {
                return Ok(());
            }
        }
    }

    /// The bytes these runs take, if every one is final (or gone, or
    /// unreadable: it cannot be resumed either); `None` if one is not.
    fn final_runs_bytes(&self, runs: &[RunId]) -> Result<Option<u64>> {
        let mut bytes = 0;
        for id in runs {
            if let Some(record) = self.runs.get(id.as_str())? {
                match codec::run_head_unless_ended(id.as_str(), &record) {
                    Some(Ok(head)) if !head.status.is_final() => return Ok(None),
                    Some(Err(e)) => self.unreadable.note(RUNS, id.as_str(), &e),
                    _ => {}
                }
                bytes += (id.as_str().len() + record.len()) as u64;
            }
        }
        Ok(Some(bytes))
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.flusher
            .send(tx)
            .map_err(|_| StoreError::Flush("the flusher thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Flush("the flusher thread has stopped".into()))?
            .map_err(StoreError::Flush)
    }

    /// The `fresh_runs_from` mark, if one was ever stored.
    fn fresh_runs_from(&self) -> Result<Option<RunId>> {
        Ok(self
            .meta
            .get(FRESH_RUNS_FROM)?
            .map(|b| RunId(String::from_utf8_lossy(&b).into_owned())))
    }

    /// Move the `fresh_runs_from` mark (durable with the next flush; an
    /// older mark is always safe, it only makes the next scan longer).
    fn set_fresh_runs_from(&self, id: &RunId) -> Result<()> {
        self.meta.insert(FRESH_RUNS_FROM, id.as_str().as_bytes())?;
        Ok(())
    }

    /// Call `f` with every queued or running run at or above `from`, in id
    /// order (runs waiting for a retry or a delay have a queue entry
    /// instead). An unreadable record is skipped: it must not stop the
    /// others.
    fn scan_unfinished_runs(
        &self,
        from: &RunId,
        mut f: impl FnMut(QueueEntry) -> bool,
    ) -> Result<()> {
        // Unfinished runs are never packed: the hot tree holds them all.
        for entry in self.runs.hot.range(from.as_str().as_bytes()..) {
            let (k, v) = entry?;
            let key = String::from_utf8_lossy(&k);
            let head: RunHead = match codec::decode_run(&key, &v) {
                Ok(h) => h,
                Err(e) => {
                    self.unreadable.note(RUNS, &key, &e);
                    continue;
                }
            };
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

    /// Queue entries in due order, starting with the earliest.
    fn queue_entries(&self) -> impl Iterator<Item = Result<QueueEntry>> + '_ {
        self.queue.iter().keys().filter_map(|k| match k {
            Ok(k) => QueueEntry::from_key(&k).map(Ok),
            Err(e) => Some(Err(StoreError::from(e))),
        })
    }

    /// Runs not finished: every queue entry's run, and the fresh runs from
    /// the mark on; and those of them that wait for a `delay`.
    fn count_unfinished(&self) -> Result<(usize, std::collections::HashSet<RunId>)> {
        let mut runs = std::collections::HashSet::new();
        let mut waiting = std::collections::HashSet::new();
        for e in self.queue_entries() {
            let id = e?.run_id;
            // A leftover entry of a finished (or vanished) run is not work.
            let status = match self.runs.get(id.as_str())? {
                Some(b) => match codec::run_head_unless_ended(id.as_str(), &b) {
                    None => None,
                    Some(Ok(h)) => Some(h.status).filter(|s| !s.is_final()),
                    Some(Err(e)) => {
                        self.unreadable.note(RUNS, id.as_str(), &e);
                        None
                    }
                },
                None => None,
            };
            if status == Some(RunStatus::Waiting) {
                waiting.insert(id.clone());
            }
            if status.is_some() {
                runs.insert(id);
            }
        }
        let from = self
            .fresh_runs_from()?
            .unwrap_or_else(|| RunId::floor(Timestamp::now()));
        self.scan_unfinished_runs(&from, |e| {
            runs.insert(e.run_id);
            true
        })?;
        Ok((runs.len(), waiting))
    }
}

/// The per-workflow key/value store behind `state_get` / `state_set`.
#[derive(Clone)]
pub struct SledState {
    tree: Tree,
}

impl SledState {
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

/// The creation time a generated id carries (see `record`'s id types):
/// 16 hex digits of milliseconds shifted by 16 bits, after the prefix.
fn id_time(id: &str) -> Option<Timestamp> {
    let hex = id.get(4..20)?;
    u64::from_str_radix(hex, 16)
        .ok()
        .map(|v| Timestamp(v >> 16))
}

/// The first byte of a dedupe key as this version writes it: 16 bytes of
/// SHA-256 of `workflow \0 key` follow. Keys are looked up, never listed,
/// so their text need not be kept; a short key of fixed length keeps the
/// tree small, and this tree is written at a random place for every event
/// (its leaves are rewritten whole: smaller entries, fewer bytes on disk).
/// Earlier versions wrote `workflow \0 key` as it is (moved over by
/// [`dedupe::DedupeKeys::take_over`]),
/// which never starts with this byte: workflow names are printable.
pub(crate) const HASHED_DEDUPE_KEY: u8 = 0;

pub(crate) fn dedupe_key(workflow: &str, key: &str) -> [u8; 17] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(workflow.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let mut k = [HASHED_DEDUPE_KEY; 17];
    k[1..].copy_from_slice(&digest[..16]);
    k
}

/// Locks for dedupe keys, striped by hash: an ingest holds the stripes of
/// its keys from the holder check until its write is on disk, so two
/// deliveries of one event cannot both start runs. Keys that share a stripe
/// merely wait for each other; ingests without dedupe take none.
struct ClaimLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for ClaimLocks {
    fn default() -> Self {
        ClaimLocks {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl ClaimLocks {
    async fn hold(&self, claims: &[(usize, DedupeClaim)]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash, Hasher};
        let mut idx: Vec<usize> = claims
            .iter()
            .map(|(_, c)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&c.workflow, &c.key).hash(&mut h);
                (h.finish() % self.stripes.len() as u64) as usize
            })
            .collect();
        // Always in the same order, each stripe once: no deadlock.
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        for i in idx {
            guards.push(self.stripes[i].lock().await);
        }
        guards
    }
}

/// Flushes start at least this far apart. A flush costs about 250 µs of
/// CPU whatever it carries: sled hands the write to its IO pool, which
/// wakes every one of its seven idle threads for it, and the flusher and
/// the writers wait on each other. Under load, waiting out the rest of the
/// interval lets one flush serve many writers; an idle store flushes at
/// once. Under the closed-loop load benchmark, 0.5, 2, 3 and 4 ms measured
/// the same as 1 ms within the machine's noise, and flushing at once after
/// a small flush lowered acks/s in every pair.
const MIN_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// The longest a writer waits for its flush to start: the interval grows
/// up to this while writers come too slowly to fill a flush.
const MAX_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(3);

/// Writers one flush is meant to serve. At a steady 2,000 events a second
/// (about four writers a millisecond: the acks, and the runs' ends after
/// a request) a 1 ms interval made a flush of four writers every
/// millisecond, and the server spent a fifth more CPU per event than with
/// flushes of twelve (`docs/performance.md`).
const WRITERS_PER_FLUSH: f64 = 12.0;

/// When the next flush may start: once [`WRITERS_PER_FLUSH`] writers can
/// have come, at the rate they have been coming, within
/// [`MIN_FLUSH_INTERVAL`] and [`MAX_FLUSH_INTERVAL`] of the last flush's
/// start. Near saturation every millisecond brings a flush's worth, and the
/// interval is the minimum, as it always was; at a moderate rate an ack
/// waits up to 2 ms longer, for a third as many flushes.
#[derive(Debug, Default)]
struct FlushPace {
    /// Writers per millisecond, smoothed over the last few flushes.
    rate: f64,
    last_start: Option<std::time::Instant>,
}

impl FlushPace {
    fn interval(&self) -> std::time::Duration {
        let wanted = if self.rate > 0.0 {
            std::time::Duration::from_secs_f64(WRITERS_PER_FLUSH / self.rate / 1000.0)
        } else {
            MAX_FLUSH_INTERVAL
        };
        wanted.clamp(MIN_FLUSH_INTERVAL, MAX_FLUSH_INTERVAL)
    }

    /// How long to wait before the next flush, at `now`.
    fn wait(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        let due = self.last_start? + self.interval();
        due.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// A flush starts at `now`, serving `writers`.
    fn started(&mut self, now: std::time::Instant, writers: usize) {
        if let Some(last) = self.last_start {
            // After a pause the rate falls towards nothing, and climbs
            // back within a few flushes once writers come again.
            let ms = now.duration_since(last).as_secs_f64() * 1000.0;
            let seen = writers as f64 / ms.max(1e-3);
            self.rate = (self.rate + seen) / 2.0;
        }
        self.last_start = Some(now);
    }
}

fn group_commit(
    db: sled::Db,
    rx: mpsc::Receiver<oneshot::Sender<std::result::Result<(), String>>>,
) {
    let mut pace = FlushPace::default();
    // Block for the first waiter, wait out the interval, then take everyone
    // who queued up meanwhile: they are all covered by the one flush.
    while let Ok(first) = rx.recv() {
        if let Some(wait) = pace.wait(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut waiters = vec![first];
        waiters.extend(rx.try_iter());
        pace.started(std::time::Instant::now(), waiters.len());
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Pack history in the background, off the async runtime, every
/// [`PACK_EVERY`] (sooner while there is more to pack), until `stop`.
async fn keep_packing(store: SledStore, mut stop: watch::Receiver<bool>) {
    loop {
        let s = store.clone();
        let packed = super::blocking(move || s.pack(Timestamp::now())).await;
        let more = match packed {
            Ok((_, _, more)) => more,
            Err(e) => {
                warn!(error = %e, "packing history failed; will try again");
                false
            }
        };
        let pause = if more {
            std::time::Duration::from_millis(10)
        } else {
            PACK_EVERY
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

fn list<T>(
    shelf: &Shelf,
    before: Option<&str>,
    limit: usize,
    mut keep: impl FnMut(&str, &[u8]) -> Result<Option<T>>,
) -> Result<Page<T>> {
    let limit = limit.max(1);
    let mut items = Vec::new();
    let mut last_key = None;
    for entry in shelf.scan_rev(before.map(str::as_bytes)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EventId;
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// `flushes` flushes `every` apart, each serving `writers`; the
    /// interval the pace then asks for.
    fn paced(
        pace: &mut FlushPace,
        at: &mut Instant,
        every: Duration,
        writers: usize,
        flushes: usize,
    ) -> Duration {
        for _ in 0..flushes {
            *at += every;
            pace.started(*at, writers);
        }
        pace.interval()
    }

    #[test]
    fn flushes_wait_for_a_fill_of_writers_within_one_to_three_milliseconds() {
        let ms = Duration::from_millis;
        let mut pace = FlushPace::default();
        let mut at = Instant::now();
        // The first flush starts at once.
        assert_eq!(pace.wait(at), None);
        // Saturated: 16 writers a millisecond, the shortest interval.
        assert_eq!(paced(&mut pace, &mut at, ms(1), 16, 10), MIN_FLUSH_INTERVAL);
        // 6 a millisecond: twelve writers take 2 ms.
        let two = paced(&mut pace, &mut at, ms(2), 12, 20);
        assert!(
            two > ms(1) && two < ms(3) && (two.as_secs_f64() - 0.002).abs() < 1e-4,
            "{two:?}"
        );
        // Three a millisecond: capped at 3 ms, whatever the fill.
        assert_eq!(paced(&mut pace, &mut at, ms(3), 9, 20), MAX_FLUSH_INTERVAL);
        // The wait counts from the last start, and a store idle for longer
        // than the interval flushes at once.
        assert_eq!(pace.wait(at + ms(1)), Some(ms(2)));
        assert_eq!(pace.wait(at + ms(5)), None);
        // A burst after a pause: back to the shortest within a few flushes.
        at += Duration::from_secs(10);
        pace.started(at, 1);
        assert_eq!(pace.interval(), MAX_FLUSH_INTERVAL);
        assert_eq!(paced(&mut pace, &mut at, ms(1), 20, 4), MIN_FLUSH_INTERVAL);
    }

    /// An event with one queued run of workflow `w`, and its dedupe claim.
    fn ingest_of(id: EventId, key: &str) -> Ingest {
        let event: Event = serde_json::from_value(json!({
            "id": id, "received_at": Timestamp::now(),
            "path": "/hooks/w", "method": "POST", "headers": {}, "query": {},
            "body": {}, "outcome": "accepted", "reason": null,
            "workflows": ["w"], "runs": []
        }))
        .expect("an event");
        let run: Run = serde_json::from_value(json!({
            "id": RunId::generate(), "workflow": "w", "workflow_version": "v1",
            "event_id": event.id, "status": "queued", "attempt": 0,
            "created_at": Timestamp::now(), "started_at": null, "finished_at": null,
            "duration_ms": null, "next_attempt_at": null, "replay_of": null,
            "replays": [], "steps": []
        }))
        .expect("a run");
        let claim = DedupeClaim {
            workflow: "w".into(),
            key: key.into(),
            expires_at: Timestamp(Timestamp::now().0 + 3_600_000),
        };
        Ingest {
            event,
            stored_event: None,
            runs: vec![run],
            claims: vec![(0, claim)],
        }
    }

    /// Ingests `event()` until the records take more than `bytes`; returns
    /// the most one ingest added.
    async fn write_past(store: &SledStore, bytes: u64, event: &mut impl FnMut() -> Ingest) -> u64 {
        let mut largest = 0;
        while store.trees.live_bytes() <= bytes {
            let before = store.trees.live_bytes();
            store.ingest(event()).await.expect("ingest");
            largest = largest.max(store.trees.live_bytes().saturating_sub(before));
        }
        largest
    }

    /// Events without runs (nothing to finish before pruning), each with
    /// `len` bytes of a body zstd cannot shrink much.
    fn events_of(len: usize) -> impl FnMut() -> Ingest {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        move || {
            let mut ingest = ingest_of(EventId::generate(), "unused");
            ingest.runs.clear();
            ingest.claims.clear();
            let body: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b'!' + (seed % 90) as u8)
                })
                .collect();
            ingest.event.body = serde_json::Value::String(body);
            ingest
        }
    }

    /// A temporary sled store pruned once at `--retention-size` `limit`,
    /// and the records' target that set.
    fn pruned_at(limit: u64) -> (SledStore, u64) {
        let store = SledStore::temporary().expect("store");
        store
            .prune(Timestamp(0), limit, Timestamp::now())
            .expect("prune");
        let target = store.trees.records_target.load(Ordering::Relaxed);
        (store, target)
    }

    /// Whether pruning was woken since the last call.
    async fn woken(store: &SledStore) -> bool {
        tokio::time::timeout(
            std::time::Duration::from_millis(1),
            store.prune_wanted().notified(),
        )
        .await
        .is_ok()
    }

    /// Behind a backlog, a pass of pruning that has removed the finished
    /// history in front of it ends after stepping over
    /// [`PRUNE_SKIPS_AFTER_PROGRESS`] events whose runs are still to run,
    /// rather than reading the whole backlog; a pass that has removed
    /// nothing goes on past every one of them to what it can remove. No
    /// event with an unfinished run is ever removed.
    #[tokio::test]
    async fn pruning_steps_over_a_bounded_part_of_a_backlog_once_it_has_removed_some() {
        let store = SledStore::temporary().expect("store");
        let backlog = PRUNE_SKIPS_AFTER_PROGRESS + 50;
        // The front and the tail have ended; the backlog's runs are queued.
        let mut order = Vec::new();
        for (name, count) in [("front", 10), ("backlog", backlog), ("tail", 10)] {
            for i in 0..count {
                let mut ingest = ingest_of(EventId::generate(), &format!("{name} {i}"));
                if name != "backlog" {
                    ingest.runs[0].status = RunStatus::Succeeded;
                }
                order.push((name, ingest.event.id.clone()));
                store.ingest(ingest).await.expect("ingest");
            }
        }
        let stored = |name: &str| {
            order
                .iter()
                .filter(|(n, id)| *n == name && store.event(id.as_str()).expect("read").is_some())
                .count()
        };
        // Everything is past its age: only unfinished runs hold events back.
        let later = Timestamp::now().plus(Duration::from_secs(60));
        let first = store.prune(later, u64::MAX, later).expect("prune");
        assert_eq!(first.events, 10, "the first pass removes the front only");
        assert_eq!((stored("front"), stored("tail")), (0, 10));
        let second = store.prune(later, u64::MAX, later).expect("prune");
        assert_eq!(
            second.events, 10,
            "the next pass steps over the whole backlog"
        );
        assert_eq!(stored("tail"), 0);
        assert_eq!(stored("backlog"), backlog, "no waiting event was removed");
    }

    /// A large `--retention-size` is pruned a little at a time: writes
    /// past the records' target by [`PRUNE_STEP_MAX`] wake pruning (not
    /// only past an eighth of a target of tens of MiB), and the pass that
    /// follows removes about that much.
    #[tokio::test]
    async fn a_large_limit_is_pruned_a_little_at_a_time() {
        let limit = 256 * 1024 * 1024;
        let (store, target) = pruned_at(limit);
        assert!(
            target / 8 > PRUNE_STEP_MAX + PRUNE_STEP_MAX / 4,
            "a target of {target} bytes is too small to tell the cap from an eighth"
        );
        let mut big_event = events_of(256 * 1024);
        let mut largest = write_past(&store, target + PRUNE_STEP_MAX / 2, &mut big_event).await;
        assert!(
            !woken(&store).await,
            "woken before the records passed their step"
        );
        largest = largest.max(write_past(&store, target + PRUNE_STEP_MAX, &mut big_event).await);
        assert!(woken(&store).await, "not woken past the step");
        let before = store.trees.live_bytes();
        let pruned = store
            .prune(Timestamp(0), limit, Timestamp::now())
            .expect("prune");
        let freed = before - store.trees.live_bytes();
        assert!(
            pruned.events > 0 && freed > PRUNE_STEP_MAX && freed <= PRUNE_STEP_MAX + 2 * largest,
            "the pass freed {freed} bytes ({} events, each at most {largest})",
            pruned.events
        );
        assert!(store.trees.live_bytes() <= target);
    }

    /// Below the cap, an eighth of the target still decides: at the
    /// smallest limit sled takes, pruning is woken past an eighth of its
    /// records' target, not only 4 MiB past it.
    #[tokio::test]
    async fn a_small_limit_is_pruned_past_an_eighth() {
        let (store, target) = pruned_at(MIN_RETENTION_SIZE);
        let slack = target / 8;
        assert!(slack < PRUNE_STEP_MAX / 4, "a target of {target} bytes");
        let mut event = events_of(4 * 1024);
        write_past(&store, target + slack / 2, &mut event).await;
        assert!(
            !woken(&store).await,
            "woken before an eighth past the target"
        );
        write_past(&store, target + slack, &mut event).await;
        assert!(woken(&store).await, "not woken an eighth past the target");
    }

    /// An ingest that took longer than [`MAX_INGEST_MS`] fails, stores no
    /// event, and leaves its dedupe key free: the sender's retry is stored,
    /// not answered as a duplicate of an event that never was.
    #[tokio::test]
    async fn an_ingest_past_its_time_fails_and_frees_its_dedupe_key() {
        let store = SledStore::temporary().expect("store");
        // A newer event kept: a key whose event is missing and older than
        // every event kept would read as pruned, and hold.
        store
            .ingest(ingest_of(EventId::generate(), "evt_other"))
            .await
            .expect("stored");
        let late = EventId::floor(Timestamp(Timestamp::now().0 - MAX_INGEST_MS - 1_000));
        let err = store
            .ingest(ingest_of(late.clone(), "evt_a"))
            .await
            .expect_err("too late");
        assert!(err.to_string().contains("to store"), "{err}");
        assert!(!store.trees.events.contains(late.as_str()).expect("read"));
        let retry = store
            .ingest(ingest_of(EventId::generate(), "evt_a"))
            .await
            .expect("stored");
        assert!(
            matches!(retry, Ingested::Stored { ref runs, .. } if runs.len() == 1),
            "{retry:?}"
        );
    }

    /// Finished events and runs go into packs, and read, list, replay,
    /// deduplicate and prune as they did before.
    #[tokio::test]
    async fn finished_history_is_packed_and_still_read_listed_replayed_and_pruned() {
        let store = SledStore::temporary().expect("store");
        // The oldest run stays queued (claimed, then let go unfinished).
        let stuck = ingest_of(EventId::generate(), "evt_stuck");
        let stuck_event = stuck.event.id.clone();
        let Ingested::Stored { runs, .. } = store.ingest(stuck).await.expect("ingest") else {
            panic!("stored");
        };
        let stuck_run = runs[0].clone();
        let mut events = Vec::new();
        for i in 0..200 {
            let ingest = ingest_of(EventId::generate(), &format!("evt_{i}"));
            events.push(ingest.event.id.clone());
            store.ingest(ingest).await.expect("ingest");
        }
        let mut finished = Vec::new();
        loop {
            let claims = store.claim(Timestamp::now(), 64).await.expect("claim");
            if claims.is_empty() {
                break;
            }
            for c in claims {
                let (mut run, _) = store.load(&c).await.expect("load").expect("a run");
                if run.event_id == stuck_event {
                    store.release(c, false);
                    continue;
                }
                run.status = RunStatus::Succeeded;
                store
                    .finish(&c, &run, Durability::Lazy)
                    .await
                    .expect("finish");
                finished.push(run.id.clone());
                store.release(c, false);
            }
        }
        assert_eq!(finished.len(), 200);
        // Nothing is old enough yet.
        assert_eq!(store.pack(Timestamp::now()).expect("pack").0, 0);
        // Old enough, but behind a queued run: it will be done soon.
        let later = Timestamp(Timestamp::now().0 + 600_000);
        assert_eq!(store.pack(later).expect("pack"), (0, 0, false));
        // Queued for over an hour: stuck, it holds nothing back.
        let later = Timestamp(Timestamp::now().0 + 2 * BACKLOG_AT_MOST_MS);
        let (e, r, _) = store.pack(later).expect("pack");
        assert!(e > 100 && r > 100, "{e} events and {r} runs packed");
        assert!(store.trees.runs.packs() > 0 && store.trees.events.packs() > 0);
        assert!(
            store.trees.runs.hot.len() < 100,
            "packed runs leave the hot tree"
        );
        for id in &finished {
            let run = store.run(id.as_str()).expect("read").expect("there");
            assert_eq!(run.status, RunStatus::Succeeded);
        }
        for id in &events {
            assert!(store.event(id.as_str()).expect("read").is_some());
        }
        // Newest first, each once, page after page.
        let (mut listed, mut before) = (Vec::new(), None);
        loop {
            let page = store
                .list_runs(&RunQuery {
                    before: before.clone(),
                    limit: 37,
                    ..RunQuery::default()
                })
                .expect("list");
            listed.extend(page.items.into_iter().map(|r| r.id));
            match page.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        let mut newest_first = finished.clone();
        newest_first.push(stuck_run);
        newest_first.sort();
        newest_first.reverse();
        assert_eq!(listed, newest_first);
        let events_listed = store
            .list_events(&EventQuery {
                limit: 500,
                ..EventQuery::default()
            })
            .expect("list");
        assert_eq!(events_listed.items.len(), 201);
        assert!(store
            .trees
            .events
            .hot
            .contains_key(stuck_event.as_str())
            .expect("read"));
        // A packed event still holds its dedupe key.
        let again = store
            .ingest(ingest_of(EventId::generate(), "evt_5"))
            .await
            .expect("ingest");
        assert!(matches!(again, Ingested::Duplicate { .. }), "{again:?}");
        // A replay of a packed run links it and its event: the hot copies
        // win over the packed ones.
        let mut original = store.run(finished[3].as_str()).expect("read").expect("run");
        let mut replay = original.clone();
        replay.id = RunId::generate();
        replay.status = RunStatus::Queued;
        replay.replay_of = Some(original.id.clone());
        original.replays.push(replay.id.clone());
        store
            .insert_replay(&original, &replay)
            .await
            .expect("replay");
        let linked = store.run(original.id.as_str()).expect("read").expect("run");
        assert_eq!(linked.replays, vec![replay.id.clone()]);
        let event = store
            .event(original.event_id.as_str())
            .expect("read")
            .expect("event");
        assert!(event.runs.contains(&replay.id));
        let once = store
            .list_runs(&RunQuery {
                limit: 500,
                ..RunQuery::default()
            })
            .expect("list");
        assert_eq!(once.items.len(), 202, "the replay, and each run once");
        // Everything final goes; the replayed event stays with its queued
        // replay, and the stuck one with its run.
        let pruned = store
            .prune(later, u64::MAX, Timestamp::now())
            .expect("prune");
        assert_eq!(pruned.events, 199);
        assert_eq!(pruned.runs, 199);
        assert!(store
            .event(original.event_id.as_str())
            .expect("read")
            .is_some());
        assert!(store.run(finished[0].as_str()).expect("read").is_none());
        let left = store.trees.events.count_bytes().expect("count")
            + store.trees.runs.count_bytes().expect("count");
        assert_eq!(
            store.trees.live.load(Ordering::Relaxed),
            left,
            "the byte count holds"
        );
    }
}
