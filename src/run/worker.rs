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
use std::collections::{BTreeSet, HashMap, HashSet};
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
    due: BTreeSet<(Timestamp, RunId)>,
    running: HashSet<RunId>,
    /// Freshly stored runs with their event, so the executor need not read
    /// back what ingest just wrote. At most [`MAX_HOT`]; the others are
    /// read from the store.
    hot: HashMap<RunId, Hot>,
    /// Entries were left out of `due` for lack of room: read the tree
    /// again once `due` runs low.
    spilled: bool,
}

/// A run and its event exactly as they were just stored.
pub struct Hot {
    pub run: Run,
    pub event: Event,
}

/// Runs kept in memory with their event: enough to cover the runs in
/// flight when there is no backlog (a few MB at most).
const MAX_HOT: usize = 512;

/// Queue entries kept in memory (about 100 bytes each).
pub const MAX_IN_MEMORY: usize = 100_000;

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

    /// Fill the queue from the store's queue tree: at startup, and when
    /// entries were left out for lack of room and the queue runs low.
    /// Returns how many entries were added.
    pub fn load(&self, store: &Store) -> Result<usize, StoreError> {
        // Cleared first: a push that finds no room meanwhile sets it again.
        self.lock().spilled = false;
        let mut added = 0;
        for entry in store.queue_entries() {
            let entry = entry?;
            let mut s = self.lock();
            if s.due.len() >= self.0.capacity {
                s.spilled = true;
                break;
            }
            if !s.running.contains(&entry.run_id) && s.due.insert((entry.due, entry.run_id)) {
                added += 1;
            }
        }
        if added > 0 {
            self.0.changed.notify_one();
        }
        Ok(added)
    }

    /// Make a stored queue entry known to the dispatcher.
    pub fn push(&self, entry: QueueEntry) {
        let mut s = self.lock();
        if s.due.len() >= self.0.capacity {
            s.spilled = true;
            return;
        }
        s.due.insert((entry.due, entry.run_id));
        drop(s);
        self.0.changed.notify_one();
    }

    /// [`Queue::push`] a run that was just stored, keeping it and its event
    /// in memory for the executor when there is room.
    pub fn push_hot(&self, run: Run, event: Event) {
        let mut s = self.lock();
        if s.due.len() >= self.0.capacity {
            s.spilled = true;
            return;
        }
        s.due.insert((run.created_at, run.id.clone()));
        if s.hot.len() < MAX_HOT {
            s.hot.insert(run.id.clone(), Hot { run, event });
        }
        drop(s);
        self.0.changed.notify_one();
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
            Some((due, run_id)) if due <= now => {
                s.due.remove(&(due, run_id.clone()));
                s.running.insert(run_id.clone());
                Take::Run(QueueEntry { due, run_id })
            }
            Some((due, _)) => Take::Wait(Some(due)),
            None => Take::Wait(None),
        }
    }

    fn done(&self, run_id: &RunId) {
        self.lock().running.remove(run_id);
        self.0.changed.notify_one();
    }
}

/// How much lower than the HTTP threads' priority the run threads' is, as
/// a nice value (each step is worth about 20% less CPU under contention).
/// Measured under the load benchmark: 0 gives 7,100–7,300 acks/s and
/// 5,300–5,900 runs/s; 2 gives 7,800–7,900 and 5,400–5,700; 5 gives
/// 8,100–8,700 acks/s but 4,600–5,400 runs/s, as the backlog grows during
/// the load. 2 favours acceptance without starving delivery.
const RUN_THREAD_NICE: i32 = 2;

/// The runtime that executes runs: one thread per core, at lower priority.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("hookflow-run")
        .on_thread_start(|| lower_priority(RUN_THREAD_NICE))
        .enable_all()
        .build()
}

/// Raise the calling thread's nice value by `by`. Best effort: where it is
/// not possible, runs simply compete with requests on equal terms.
fn lower_priority(by: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: integer arguments only; on Linux the nice value is per
    // thread, and raising it needs no privilege.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, now.saturating_add(by).min(19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
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
