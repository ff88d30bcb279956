//! The in-memory mirror of the run queue, and the fresh-runs mark.
//!
//! The queue lives in sled (the `queue` tree) so runs survive restarts; the
//! scheduler claims from [`Queue`], an in-memory mirror of it. Ingest,
//! replays and retries push to the mirror only after their writes are
//! complete, so the scheduler never sees a run that is still being written;
//! at startup the mirror is filled from the tree, so after a crash every
//! entry is simply due again and its run resumes at its first unfinished
//! step. The mirror holds at most [`MAX_IN_MEMORY`] entries: beyond that,
//! entries stay only in the tree and are read back as the mirror empties,
//! so a long backlog costs disk, not memory.
//!
//! Fresh runs (those of an ingest) have no queue-tree entry: they are found
//! again from the `fresh_runs_from` mark, which [`checkpoint`] keeps below
//! every fresh run that may be unfinished.

use super::Trees;
use crate::record::{Event, Run, RunId, Timestamp};
use crate::store::StoreError;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::error;

/// A queue entry: a run due at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub due: Timestamp,
    pub run_id: RunId,
}

impl QueueEntry {
    /// The queue tree's key: due time (big-endian, so keys sort by it) ++ run id.
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.due.0.to_be_bytes().to_vec();
        k.extend_from_slice(self.run_id.as_str().as_bytes());
        k
    }

    pub fn from_key(k: &[u8]) -> Option<Self> {
        let (due, id) = k.split_at_checked(8)?;
        let due = u64::from_be_bytes(due.try_into().ok()?);
        Some(QueueEntry {
            due: Timestamp(due),
            run_id: RunId(String::from_utf8(id.to_vec()).ok()?),
        })
    }
}

/// Due runs, earliest first, and the runs being executed now.
#[derive(Clone)]
pub struct Queue(Arc<QueueInner>);

struct QueueInner {
    state: Mutex<QueueState>,
    changed: Notify,
    /// Entries kept in memory at most.
    capacity: usize,
}

impl Default for Queue {
    fn default() -> Self {
        Queue::with_capacity(MAX_IN_MEMORY)
    }
}

#[derive(Default)]
struct QueueState {
    due: BTreeSet<(Timestamp, Key)>,
    running: HashSet<Key>,
    /// Freshly stored runs with their event, so the executor need not read
    /// back what ingest just wrote. At most [`MAX_HOT`] entries and
    /// [`MAX_HOT_BYTES`] of events; the others are
    /// read from the store.
    hot: HashMap<RunId, Hot>,
    /// Bytes the events in `hot` hold, about.
    hot_bytes: usize,
    /// Entries were left out of `due` for lack of room: read the store
    /// again once `due` runs low.
    spilled: bool,
    /// Fresh runs (no queue entry; see [`crate::store`]) not finished yet:
    /// the `fresh_runs_from` mark must stay at or below each of them.
    fresh: BTreeSet<Key>,
    /// The smallest fresh run left out for lack of room since the last
    /// read of the store.
    spilled_fresh: Option<RunId>,
    /// Ingests under way, by the id floor of the moment they started: their
    /// runs are not in `fresh` yet, but the mark must not pass them.
    ingesting: BTreeMap<RunId, usize>,
}

/// A run id as the queue keeps it. A generated id (`run_` and 32 hex
/// digits) is packed into 16 bytes with no allocation: a long backlog keeps
/// one entry in `due` and one in `fresh` per run, which took about 210
/// bytes per run with the ids as strings and about 115 packed. Any other
/// id is kept as it is. Keys sort as their ids do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Packed(u64, u64),
    Text(Box<str>),
}

impl Key {
    fn of(id: &RunId) -> Key {
        match id.packed() {
            Some((high, low)) => Key::Packed(high, low),
            None => Key::Text(id.as_str().into()),
        }
    }

    fn id(&self) -> RunId {
        match self {
            Key::Packed(high, low) => RunId::from_packed(*high, *low),
            Key::Text(text) => RunId(text.to_string()),
        }
    }

    /// The id's text, without allocating.
    fn with_text<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Key::Packed(high, low) => {
                use std::io::Write;
                let mut buf = [0u8; 36];
                let mut w = &mut buf[..];
                let _ = write!(w, "{}{high:016x}{low:016x}", RunId::PREFIX);
                f(&buf)
            }
            Key::Text(text) => f(text.as_bytes()),
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            // Lowercase hex of one length sorts as the numbers do.
            (Key::Packed(a, b), Key::Packed(c, d)) => (a, b).cmp(&(c, d)),
            _ => self.with_text(|a| other.with_text(|b| a.cmp(b))),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A run and its event exactly as they were just stored.
pub struct Hot {
    pub run: Run,
    pub event: Event,
}

/// Runs kept in memory with their event: enough to cover the runs in
/// flight when there is no backlog (a few MB at most).
const MAX_HOT: usize = 512;

/// Bytes of events kept in memory at most: bodies may be up to the inbound
/// limit each (1 MiB by default), and a burst of large ones must not grow
/// memory with them.
const MAX_HOT_BYTES: usize = 8 * 1024 * 1024;

/// About how much memory a hot event holds.
fn hot_size(event: &Event) -> usize {
    let headers: usize = event.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    // The parsed body takes more than its text; twice is a fair bound for
    // JSON, plus the record's own fields.
    2 * event.body_size + headers + 512
}

/// Queue entries kept in memory (about 120 bytes each for a fresh run, so
/// 2.4 MB at most). Beyond it, entries are read back from the store half a
/// mirror at a time (10,000 entries took about 90 ms of one blocking thread
/// under the load bench), each time the mirror runs half empty. At 100,000
/// the mirror of a long backlog held about 11.5 MB, which the allocator
/// roughly doubles (`docs/performance.md`).
pub const MAX_IN_MEMORY: usize = 20_000;

/// Held by an ingest from before its runs' ids exist until they are in the
/// queue (see [`Queue::ingest`]).
pub struct Ingesting {
    queue: Queue,
    floor: RunId,
}

impl Drop for Ingesting {
    fn drop(&mut self) {
        let mut s = self.queue.lock();
        if let Some(n) = s.ingesting.get_mut(&self.floor) {
            *n -= 1;
            if *n == 0 {
                s.ingesting.remove(&self.floor);
            }
        }
    }
}

/// What [`Queue::take`] found.
enum Take {
    Run(QueueEntry),
    /// Nothing is due yet.
    Wait,
}

impl Queue {
    /// A queue that keeps at most `capacity` entries in memory.
    pub fn with_capacity(capacity: usize) -> Queue {
        Queue(Arc::new(QueueInner {
            state: Mutex::default(),
            changed: Notify::new(),
            capacity: capacity.max(1),
        }))
    }

    /// Fill the queue from the store: the queue tree, then the fresh runs
    /// from the `fresh_runs_from` mark on. At startup, and when entries
    /// were left out for lack of room and the queue runs low. Returns how
    /// many entries were added.
    pub fn load(&self, store: &Trees) -> Result<usize, StoreError> {
        // Cleared first: a push that finds no room meanwhile sets it again.
        {
            let mut s = self.lock();
            s.spilled = false;
        }
        let mut added = 0;
        let mut room = true;
        for entry in store.queue_entries() {
            let entry = entry?;
            match self.add_loaded(entry, false) {
                Some(a) => added += a,
                None => {
                    room = false;
                    break;
                }
            }
        }
        if room {
            let from = store
                .fresh_runs_from()?
                .unwrap_or_else(|| RunId::floor(Timestamp::now()));
            // The stored mark is at or below every fresh run left out, so
            // this scan finds them all again; while it runs the mark stays
            // put, and whatever does not fit now is recorded anew.
            let _hold = self.hold_floor(from.clone());
            self.lock().spilled_fresh = None;
            store.scan_unfinished_runs(&from, |entry| match self.add_loaded(entry, true) {
                Some(a) => {
                    added += a;
                    true
                }
                None => false,
            })?;
        }
        if added > 0 {
            self.0.changed.notify_one();
        }
        Ok(added)
    }

    /// Add an entry read from the store; `None` when there is no room.
    fn add_loaded(&self, entry: QueueEntry, fresh: bool) -> Option<usize> {
        let mut s = self.lock();
        if self.no_room(&mut s, fresh.then_some(&entry.run_id)) {
            return None;
        }
        let key = Key::of(&entry.run_id);
        if fresh {
            s.fresh.insert(key.clone());
        }
        let new = !s.running.contains(&key) && s.due.insert((entry.due, key));
        Some(usize::from(new))
    }

    /// At capacity: note that entries now wait in the store only (and the
    /// smallest fresh run among them, which the mark must not pass).
    fn no_room(&self, s: &mut QueueState, fresh: Option<&RunId>) -> bool {
        if s.due.len() < self.0.capacity {
            return false;
        }
        s.spilled = true;
        if let Some(id) = fresh {
            if s.spilled_fresh.as_ref().is_none_or(|m| id < m) {
                s.spilled_fresh = Some(id.clone());
            }
        }
        true
    }

    /// Make a stored queue entry known to the dispatcher.
    pub fn push(&self, entry: QueueEntry) {
        let mut s = self.lock();
        if self.no_room(&mut s, None) {
            return;
        }
        s.due.insert((entry.due, Key::of(&entry.run_id)));
        drop(s);
        self.0.changed.notify_one();
    }

    /// Call before creating an ingest's runs; hold until they are pushed
    /// with [`Queue::push_hot`].
    pub fn ingest(&self) -> Ingesting {
        self.hold_floor(RunId::floor(Timestamp::now()))
    }

    /// Keep the mark at or below `floor` while the guard lives.
    fn hold_floor(&self, floor: RunId) -> Ingesting {
        *self.lock().ingesting.entry(floor.clone()).or_default() += 1;
        Ingesting {
            queue: self.clone(),
            floor,
        }
    }

    /// Push a fresh run that was just stored, keeping it and its event in
    /// memory for the executor when there is room.
    pub fn push_hot(&self, run: Run, event: Event) {
        let mut s = self.lock();
        if self.no_room(&mut s, Some(&run.id)) {
            return;
        }
        let key = Key::of(&run.id);
        s.fresh.insert(key.clone());
        s.due.insert((run.created_at, key));
        let size = hot_size(&event);
        if s.hot.len() < MAX_HOT && s.hot_bytes + size <= MAX_HOT_BYTES {
            s.hot_bytes += size;
            s.hot.insert(run.id.clone(), Hot { run, event });
        }
        drop(s);
        self.0.changed.notify_one();
    }

    /// The run has no queue entry (it is found from the mark instead).
    pub fn is_fresh(&self, run_id: &RunId) -> bool {
        self.lock().fresh.contains(&Key::of(run_id))
    }

    /// The run no longer needs the mark: it is finished, or has a queue
    /// entry of its own now. Its final state must be written (not
    /// necessarily flushed: [`checkpoint`] flushes before moving the mark).
    pub fn settle(&self, run_id: &RunId) {
        self.lock().fresh.remove(&Key::of(run_id));
    }

    /// Where the `fresh_runs_from` mark may be moved: below every fresh run
    /// that may be unfinished, and every ingest under way.
    fn low_water(&self, now: Timestamp) -> RunId {
        let floor = RunId::floor(now);
        let s = self.lock();
        let first_fresh = s.fresh.first().map(Key::id);
        let held = [
            first_fresh.as_ref(),
            s.spilled_fresh.as_ref(),
            s.ingesting.keys().next(),
        ]
        .into_iter()
        .flatten()
        .min();
        held.filter(|h| **h < floor).cloned().unwrap_or(floor)
    }

    /// Entries are waiting in the tree only and the queue runs low.
    pub fn wants_refill(&self) -> bool {
        let s = self.lock();
        s.spilled && s.due.len() < self.0.capacity / 2
    }

    /// The in-memory copy of a run pushed with [`Queue::push_hot`], once.
    pub fn take_hot(&self, run_id: &RunId) -> Option<Hot> {
        let mut s = self.lock();
        let hot = s.hot.remove(run_id)?;
        s.hot_bytes = s.hot_bytes.saturating_sub(hot_size(&hot.event));
        Some(hot)
    }

    /// Runs waiting or running.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let s = self.lock();
        s.due.len() + s.running.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent even if a holder panicked.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The earliest due entry whose run is not running already; the run
    /// counts as running until [`Queue::done`].
    pub fn take(&self, now: Timestamp) -> Option<QueueEntry> {
        match self.take_or_wait(now) {
            Take::Run(e) => Some(e),
            Take::Wait => None,
        }
    }

    /// When the earliest entry that is not running is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        let s = self.lock();
        s.due
            .iter()
            .find(|(_, id)| !s.running.contains(id))
            .map(|(due, _)| *due)
    }

    /// Entries in memory due after `now`.
    pub fn due_after(&self, now: Timestamp) -> usize {
        let s = self.lock();
        s.due.iter().rev().take_while(|(due, _)| *due > now).count()
    }

    /// Resolves when an entry was pushed or a run was done with.
    pub async fn changed(&self) {
        self.0.changed.notified().await
    }

    fn take_or_wait(&self, now: Timestamp) -> Take {
        let mut s = self.lock();
        let found = s
            .due
            .iter()
            .find(|(_, id)| !s.running.contains(id))
            .cloned();
        match found {
            Some((due, key)) if due <= now => {
                let run_id = key.id();
                s.due.remove(&(due, key.clone()));
                s.running.insert(key);
                Take::Run(QueueEntry { due, run_id })
            }
            Some(_) | None => Take::Wait,
        }
    }

    pub fn done(&self, run_id: &RunId) {
        self.lock().running.remove(&Key::of(run_id));
        self.0.changed.notify_one();
    }
}

/// Move the store's `fresh_runs_from` mark up to what the queue allows:
/// the low-water mark is taken first, then everything written so far is
/// flushed (so every run that settled before is durably final), then the
/// mark is written.
pub async fn checkpoint(queue: &Queue, store: &Trees) -> Result<(), StoreError> {
    let mark = queue.low_water(Timestamp::now());
    store.flush().await?;
    store.save_live_bytes()?;
    store.set_fresh_runs_from(&mark)?;
    let trees = store.clone();
    crate::store::blocking(move || trees.flush_dedupe_keys()).await
}

/// [`checkpoint`] every second until `shutdown` turns true (the server
/// makes the last one once the runs have stopped), and give back the log
/// buffers the allocator's pool kept and sled did not need
/// ([`crate::alloc::trim_spares`]).
pub async fn keep_marking(queue: Queue, store: Trees, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = checkpoint(&queue, &store).await {
            error!(error = %e, "cannot store the fresh-runs mark");
        }
        // The log buffers sled did not need this second go back.
        crate::alloc::trim_spares();
    }
}

/// Run the dispatcher until `shutdown` turns true, then wait up to `grace`
/// for runs in flight; what is left stays queued for the next start.
#[cfg(test)]
mod tests {
    use super::*;

    fn trees() -> Trees {
        crate::store::sled::SledStore::temporary()
            .expect("store")
            .trees
            .clone()
    }

    fn entry(due: u64, n: u32) -> QueueEntry {
        QueueEntry {
            due: Timestamp(due),
            run_id: RunId(format!("run_{n:04}")),
        }
    }

    fn drain(q: &Queue, now: Timestamp) -> Vec<RunId> {
        let mut taken = Vec::new();
        while let Take::Run(e) = q.take_or_wait(now) {
            q.done(&e.run_id);
            taken.push(e.run_id);
        }
        taken
    }

    #[test]
    fn takes_due_entries_in_order_and_waits_for_later_ones() {
        let q = Queue::with_capacity(10);
        q.push(entry(30, 3));
        q.push(entry(10, 1));
        q.push(entry(20, 2));
        q.push(entry(500, 4));
        let taken = drain(&q, Timestamp(100));
        assert_eq!(
            taken,
            vec![
                entry(10, 1).run_id,
                entry(20, 2).run_id,
                entry(30, 3).run_id
            ]
        );
        assert!(matches!(q.take_or_wait(Timestamp(100)), Take::Wait));
        assert_eq!(q.next_due(), Some(Timestamp(500)));
    }

    #[test]
    fn a_running_run_is_not_taken_twice() {
        let q = Queue::with_capacity(10);
        q.push(entry(10, 1));
        let Take::Run(first) = q.take_or_wait(Timestamp(100)) else {
            panic!("the entry is due")
        };
        // A second entry of the same run (a retry scheduled while it runs).
        q.push(entry(20, 1));
        assert!(matches!(q.take_or_wait(Timestamp(100)), Take::Wait));
        q.done(&first.run_id);
        assert!(matches!(q.take_or_wait(Timestamp(100)), Take::Run(_)));
    }

    fn fresh_run(event: &Event) -> Run {
        serde_json::from_value(serde_json::json!({
            "id": RunId::generate(), "workflow": "w", "workflow_version": "v",
            "event_id": event.id, "status": "queued", "attempt": 0,
            "created_at": Timestamp::now(), "started_at": null, "finished_at": null,
            "duration_ms": null, "next_attempt_at": null, "replay_of": null,
            "replays": [], "steps": []
        }))
        .expect("a run")
    }

    fn event() -> Event {
        serde_json::from_value(serde_json::json!({
            "id": crate::record::EventId::generate(), "received_at": Timestamp::now(),
            "path": "/hooks/w", "method": "POST", "headers": {}, "query": {},
            "body": {}, "outcome": "accepted", "reason": null, "runs": []
        }))
        .expect("an event")
    }

    /// Take every due run (settling it as finished in the store), reading
    /// the store again whenever the queue asks for it.
    fn run_all(q: &Queue, store: &Trees) -> Vec<RunId> {
        let mut taken = Vec::new();
        loop {
            if q.wants_refill() {
                q.load(store).expect("refill");
            }
            let Take::Run(e) = q.take_or_wait(Timestamp::now().plus(Duration::from_secs(1))) else {
                return taken;
            };
            let bytes = store
                .runs
                .hot
                .get(e.run_id.as_str().as_bytes())
                .expect("read")
                .expect("stored");
            let mut run: Run = serde_json::from_slice(&bytes).expect("a run");
            run.status = crate::record::RunStatus::Succeeded;
            store
                .runs
                .hot
                .insert(
                    run.id.as_str().as_bytes(),
                    serde_json::to_vec(&run).expect("json"),
                )
                .expect("save");
            q.settle(&e.run_id);
            q.done(&e.run_id);
            taken.push(e.run_id);
        }
    }

    #[test]
    fn keys_give_back_their_ids_and_sort_as_the_ids_do() {
        let mut ids: Vec<RunId> = (0..50).map(|_| RunId::generate()).collect();
        ids.extend(
            [
                "run_0000000000000000",
                "run_ffffffffffffffffffffffffffffffff",
                "run_00000000000000000000000000000000",
                "run_0123456789ABCDEF0123456789abcdef",
                "run_0123456789abcdef0123456789abcde",
                "run_0123456789abcdef0123456789abcdef0",
                "run_x",
                "evt_0123456789abcdef0123456789abcdef",
                "",
            ]
            .map(|s| RunId(s.to_string())),
        );
        ids.push(RunId::floor(Timestamp::now()));
        for id in &ids {
            assert_eq!(&Key::of(id).id(), id);
        }
        assert!(matches!(Key::of(&ids[0]), Key::Packed(..)));
        assert!(matches!(Key::of(&RunId("run_x".into())), Key::Text(_)));
        let mut by_id = ids.clone();
        by_id.sort();
        let mut by_key: Vec<Key> = ids.iter().map(Key::of).collect();
        by_key.sort();
        assert_eq!(by_key.iter().map(Key::id).collect::<Vec<_>>(), by_id);
        for a in &ids {
            for b in &ids {
                assert_eq!(Key::of(a).cmp(&Key::of(b)), a.cmp(b), "{a} against {b}");
            }
        }
    }

    #[tokio::test]
    async fn fresh_runs_have_no_queue_entry_and_come_back_from_the_mark() {
        let store = trees();
        let q = Queue::with_capacity(4);
        checkpoint(&q, &store).await.expect("mark");
        let mut ids = Vec::new();
        for _ in 0..10 {
            let _ingesting = q.ingest();
            let e = event();
            let run = fresh_run(&e);
            store
                .runs
                .hot
                .insert(
                    run.id.as_str().as_bytes(),
                    serde_json::to_vec(&run).expect("json"),
                )
                .expect("run");
            store
                .events
                .hot
                .insert(
                    e.id.as_str().as_bytes(),
                    serde_json::to_vec(&e).expect("json"),
                )
                .expect("event");
            ids.push(run.id.clone());
            q.push_hot(run, e);
        }
        assert_eq!(store.queue.len(), 0, "fresh runs write no queue entry");
        assert_eq!(q.len(), 4, "only the capacity is kept in memory");
        checkpoint(&q, &store).await.expect("mark");
        let mark = store.fresh_runs_from().expect("read").expect("a mark");
        assert!(mark <= ids[0], "the mark stays below every unfinished run");

        // A restart: a new queue finds every unfinished run from the mark.
        let restarted = Queue::with_capacity(100);
        assert_eq!(restarted.load(&store).expect("load"), 10);
        drop(restarted);

        // Run them all, reading the left-out ones back from the store.
        assert_eq!(
            run_all(&q, &store),
            ids,
            "every fresh run ran once, in order"
        );
        checkpoint(&q, &store).await.expect("mark");
        let mark = store.fresh_runs_from().expect("read").expect("a mark");
        assert!(
            mark > ids[9],
            "with nothing unfinished the mark moves past them all"
        );
        assert_eq!(Queue::with_capacity(100).load(&store).expect("load"), 0);
    }

    #[test]
    fn hot_events_are_bounded_in_bytes() {
        let q = Queue::with_capacity(10_000);
        for _ in 0..100 {
            let mut e = event();
            e.body_size = 512 * 1024;
            let run = fresh_run(&e);
            q.push_hot(run, e);
        }
        let s = q.lock();
        assert_eq!(s.due.len(), 100, "every run is queued");
        assert!(s.hot_bytes <= MAX_HOT_BYTES, "{} bytes kept", s.hot_bytes);
        assert!(
            !s.hot.is_empty() && s.hot.len() < 100,
            "{} kept",
            s.hot.len()
        );
    }

    #[test]
    fn the_mark_never_passes_an_ingest_under_way() {
        let q = Queue::with_capacity(10);
        let ingesting = q.ingest();
        // The runs of that ingest get their ids now, later than its start.
        let id = RunId::generate();
        std::thread::sleep(Duration::from_millis(5));
        assert!(q.low_water(Timestamp::now()) <= id);
        drop(ingesting);
        std::thread::sleep(Duration::from_millis(5));
        assert!(q.low_water(Timestamp::now()) > id);
    }

    #[test]
    fn a_backlog_beyond_capacity_waits_in_the_store_and_is_read_back() {
        let store = trees();
        let q = Queue::with_capacity(4);
        for n in 0..10 {
            let e = entry(10 + u64::from(n), n);
            store.queue.insert(e.key(), &[] as &[u8]).expect("enqueue");
            q.push(e);
        }
        assert_eq!(q.len(), 4, "only the capacity is kept in memory");
        let mut seen = Vec::new();
        for _ in 0..10 {
            if q.wants_refill() {
                q.load(&store).expect("refill");
            }
            let Take::Run(e) = q.take_or_wait(Timestamp(1000)) else {
                break;
            };
            store.queue.remove(e.key()).expect("dequeue");
            q.done(&e.run_id);
            seen.push(e.run_id);
        }
        let expected: Vec<RunId> = (0..10).map(|n| entry(0, n).run_id).collect();
        assert_eq!(seen, expected, "every stored entry ran once, in order");
        assert!(q.is_empty());
        assert!(!q.wants_refill());
    }

    #[test]
    fn the_server_queue_keeps_twenty_thousand_entries_in_memory() {
        // The README's bound: at most 20,000 queued runs in memory.
        let q = Queue::default();
        for n in 0..=20_000 {
            q.push(entry(10, n));
        }
        assert_eq!(q.len(), 20_000, "the rest waits in the store");
        assert!(!q.wants_refill(), "a full mirror reads nothing back");
        for _ in 0..10_001 {
            let Take::Run(e) = q.take_or_wait(Timestamp(1000)) else {
                panic!("every entry kept is due");
            };
            q.done(&e.run_id);
        }
        assert!(q.wants_refill(), "half empty, it reads the store again");
    }
}
