//! Which runs are due, and executing them at most `concurrency` at once.
//!
//! Runs execute on their own runtime ([`runtime`]) whose threads have a
//! lower scheduling priority than the ones answering webhooks: when the
//! machine is busy, accepting (what senders wait for, and time out on)
//! comes first and runs use the rest; the queue absorbs the difference.
//!
//! The queue lives in sled (the `queue` tree) so runs survive restarts; the
//! dispatcher works from [`Queue`], an in-memory mirror of it. Ingest,
//! replays and retries push to the mirror only after their writes are
//! complete, so the dispatcher never sees a run that is still being written;
//! at startup the mirror is filled from the tree, so after a crash every
//! entry is simply due again and its run resumes at its first unfinished
//! step. The mirror holds at most [`MAX_IN_MEMORY`] entries: beyond that,
//! entries stay only in the tree and are read back as the mirror empties,
//! so a long backlog costs disk, not memory.

use super::executor::Executor;
use crate::record::{Event, Run, RunId, Timestamp};
use crate::store::{QueueEntry, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::error;

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
    /// back what ingest just wrote. At most [`MAX_HOT`]; the others are
    /// read from the store.
    hot: HashMap<RunId, Hot>,
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
        let packed = id
            .as_str()
            .strip_prefix(RunId::PREFIX)
            .filter(|hex| {
                hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
            .and_then(|hex| {
                let high = u64::from_str_radix(&hex[..16], 16).ok()?;
                let low = u64::from_str_radix(&hex[16..], 16).ok()?;
                Some(Key::Packed(high, low))
            });
        packed.unwrap_or_else(|| Key::Text(id.as_str().into()))
    }

    fn id(&self) -> RunId {
        match self {
            Key::Packed(high, low) => RunId(format!("{}{high:016x}{low:016x}", RunId::PREFIX)),
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

/// Queue entries kept in memory (about 120 bytes each for a fresh run).
pub const MAX_IN_MEMORY: usize = 100_000;

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
    /// Nothing is due before this time (or at all).
    Wait(Option<Timestamp>),
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
    pub fn load(&self, store: &Store) -> Result<usize, StoreError> {
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
        if s.hot.len() < MAX_HOT {
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
    fn wants_refill(&self) -> bool {
        let s = self.lock();
        s.spilled && s.due.len() < self.0.capacity / 2
    }

    /// The in-memory copy of a run pushed with [`Queue::push_hot`], once.
    pub fn take_hot(&self, run_id: &RunId) -> Option<Hot> {
        self.lock().hot.remove(run_id)
    }

    /// Runs waiting or running.
    pub fn len(&self) -> usize {
        let s = self.lock();
        s.due.len() + s.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent even if a holder panicked.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The earliest due entry whose run is not running already.
    fn take(&self, now: Timestamp) -> Take {
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
            Some((due, _)) => Take::Wait(Some(due)),
            None => Take::Wait(None),
        }
    }

    fn done(&self, run_id: &RunId) {
        self.lock().running.remove(&Key::of(run_id));
        self.0.changed.notify_one();
    }
}

/// How much lower than the HTTP threads' priority the run threads' is, as
/// a nice value (each step is worth about 20% less CPU under contention),
/// and how many run threads there are per core. Runs wait on the sink and
/// on flushes, so with one thread per core a draining backlog left the CPU
/// 15–20% idle; two per core keep it busy, and the larger nice value keeps
/// the extra threads from taking CPU from acceptance. Measured under the
/// load benchmark in nine alternating pairs against one thread per core at
/// nice 2: runs/s median 6,430 against 5,630 (seven of nine pairs better),
/// acks/s median 9,240 against 9,580 (four of nine better), peak RSS
/// 5–10 MB higher (146 MB at most). Nice 10 gave fewer runs/s (5,020–
/// 5,720) and peak RSS up to 147 MB. Earlier, with one thread per core:
/// nice 0 gave 7,100–7,300 acks/s and 5,300–5,900 runs/s, 2 gave 7,800–
/// 7,900 and 5,400–5,700, 5 gave 8,100–8,700 acks/s but 4,600–5,400.
/// Once a run needed one save instead of three, runs took a larger share
/// of the CPU at nice 7: nice 9 gave a median of 10,800 acks/s in fifteen
/// single rounds against 10,000 in nine at nice 7, with the same runs/s
/// within the noise. Its longer backlog took peak RSS up to 149 MB until
/// the queue kept its ids packed (134–142 MB since).
///
/// Two stronger ways of putting requests first were measured and not kept,
/// as each gives acks what it takes from runs: run threads under
/// `SCHED_IDLE` (14,000 acks/s at p99 5.7–6.4 ms against 10,000 at 8.0–
/// 8.5, but 2,100–2,400 runs/s while the load was on and peak RSS about
/// 200 MB), and 100 µs time slices (`sched_setattr`, Linux 6.12+) for
/// every thread but these (eleven pairs: acks/s higher in all, median
/// +13%; ack p99 lower in ten, median −10%; but runs/s while the load was
/// on lower in ten, median −19%, and peak RSS up to 149 MB).
const RUN_THREAD_NICE: i32 = 9;
const RUN_THREADS_PER_CORE: usize = 2;

/// The runtime that executes runs: two threads per core, at lower priority.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores * RUN_THREADS_PER_CORE)
        .thread_name("hookflow-run")
        .on_thread_start(|| crate::script::pool::lower_priority(RUN_THREAD_NICE))
        .enable_all()
        .build()
}

/// Move the store's `fresh_runs_from` mark up to what the queue allows:
/// the low-water mark is taken first, then everything written so far is
/// flushed (so every run that settled before is durably final), then the
/// mark is written.
pub async fn checkpoint(queue: &Queue, store: &Store) -> Result<(), StoreError> {
    let mark = queue.low_water(Timestamp::now());
    store.flush().await?;
    store.set_fresh_runs_from(&mark)
}

/// [`checkpoint`] every second until `shutdown` turns true (the server
/// makes the last one once the runs have stopped).
pub async fn keep_marking(queue: Queue, store: Store, mut shutdown: watch::Receiver<bool>) {
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
    }
}

/// Run the dispatcher until `shutdown` turns true, then wait up to `grace`
/// for runs in flight; what is left stays queued for the next start.
pub async fn dispatch(
    executor: Arc<Executor>,
    concurrency: usize,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let queue = executor.queue.clone();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        if queue.wants_refill() {
            let (q, store) = (queue.clone(), executor.store.clone());
            match tokio::task::spawn_blocking(move || q.load(&store)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => error!(error = %e, "cannot read the run queue"),
                Err(e) => error!(error = %e, "reading the run queue was interrupted"),
            }
        }
        let now = Timestamp::now();
        match queue.take(now) {
            Take::Run(entry) => {
                let executor = Arc::clone(&executor);
                let queue = queue.clone();
                tokio::spawn(async move {
                    let failed = executor.execute(&entry).await.err();
                    queue.done(&entry.run_id);
                    if let Some(e) = failed {
                        // The entry is still stored; offer it again later
                        // rather than spinning on a failing store.
                        error!(run_id = %entry.run_id, error = %e, "run could not be executed; trying again in a second");
                        let queue = queue.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            queue.push(entry);
                        });
                    }
                    // Release the store before the permit: once every
                    // permit is back, shutdown may reopen the same folder.
                    drop(executor);
                    drop(permit);
                });
            }
            Take::Wait(next_due) => {
                drop(permit);
                let wait = next_due
                    .map(|d| Duration::from_millis(d.0.saturating_sub(now.0)))
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1));
                tokio::select! {
                    _ = queue.0.changed.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    // Wait for in-flight runs: they finish their current step or stop at the
    // grace limit (and resume after the next start).
    let all = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(grace, permits.acquire_many(all)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(due: u64, n: u32) -> QueueEntry {
        QueueEntry {
            due: Timestamp(due),
            run_id: RunId(format!("run_{n:04}")),
        }
    }

    fn drain(q: &Queue, now: Timestamp) -> Vec<RunId> {
        let mut taken = Vec::new();
        while let Take::Run(e) = q.take(now) {
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
        assert!(matches!(
            q.take(Timestamp(100)),
            Take::Wait(Some(Timestamp(500)))
        ));
    }

    #[test]
    fn a_running_run_is_not_taken_twice() {
        let q = Queue::with_capacity(10);
        q.push(entry(10, 1));
        let Take::Run(first) = q.take(Timestamp(100)) else {
            panic!("the entry is due")
        };
        // A second entry of the same run (a retry scheduled while it runs).
        q.push(entry(20, 1));
        assert!(matches!(q.take(Timestamp(100)), Take::Wait(_)));
        q.done(&first.run_id);
        assert!(matches!(q.take(Timestamp(100)), Take::Run(_)));
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
    fn run_all(q: &Queue, store: &Store) -> Vec<RunId> {
        let mut taken = Vec::new();
        loop {
            if q.wants_refill() {
                q.load(store).expect("refill");
            }
            let Take::Run(e) = q.take(Timestamp::now().plus(Duration::from_secs(1))) else {
                return taken;
            };
            let mut run = store.run(e.run_id.as_str()).expect("read").expect("stored");
            run.status = crate::record::RunStatus::Succeeded;
            store.save_run(&run).expect("save");
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
        let store = Store::temporary().expect("store");
        let q = Queue::with_capacity(4);
        checkpoint(&q, &store).await.expect("mark");
        let mut ids = Vec::new();
        for _ in 0..10 {
            let _ingesting = q.ingest();
            let e = event();
            let run = fresh_run(&e);
            store
                .insert_event(&e, std::slice::from_ref(&run), &[])
                .expect("ingest");
            ids.push(run.id.clone());
            q.push_hot(run, e);
        }
        assert_eq!(store.queue_len(), 0, "fresh runs write no queue entry");
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
        let store = Store::temporary().expect("store");
        let q = Queue::with_capacity(4);
        for n in 0..10 {
            let e = entry(10 + u64::from(n), n);
            store.enqueue(&e).expect("enqueue");
            q.push(e);
        }
        assert_eq!(q.len(), 4, "only the capacity is kept in memory");
        let mut seen = Vec::new();
        for _ in 0..10 {
            if q.wants_refill() {
                q.load(&store).expect("refill");
            }
            let Take::Run(e) = q.take(Timestamp(1000)) else {
                break;
            };
            store.dequeue(&e).expect("dequeue");
            q.done(&e.run_id);
            seen.push(e.run_id);
        }
        let expected: Vec<RunId> = (0..10).map(|n| entry(0, n).run_id).collect();
        assert_eq!(seen, expected, "every stored entry ran once, in order");
        assert!(q.is_empty());
        assert!(!q.wants_refill());
    }
}
