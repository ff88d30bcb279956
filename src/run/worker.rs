//! Which runs are due, and executing them at most `concurrency` at once.
//!
//! The queue lives in sled (the `queue` tree) so runs survive restarts; the
//! dispatcher works from [`Queue`], an in-memory mirror of it. Ingest,
//! replays and retries push to the mirror only after their writes are
//! complete, so the dispatcher never sees a run that is still being written;
//! at startup the mirror is filled from the tree, so after a crash every
//! entry is simply due again and its run resumes at its first unfinished
//! step.

use super::executor::Executor;
use crate::record::{Event, Run, RunId, Timestamp};
use crate::store::{QueueEntry, Store, StoreError};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::error;

/// Due runs, earliest first, and the runs being executed now.
#[derive(Clone, Default)]
pub struct Queue(Arc<QueueInner>);

#[derive(Default)]
struct QueueInner {
    state: Mutex<QueueState>,
    changed: Notify,
}

#[derive(Default)]
struct QueueState {
    due: BTreeSet<(Timestamp, RunId)>,
    running: HashSet<RunId>,
    /// Freshly stored runs with their event, so the executor need not read
    /// back what ingest just wrote. At most [`MAX_HOT`]; the others are
    /// read from the store.
    hot: HashMap<RunId, Hot>,
}

/// A run and its event exactly as they were just stored.
pub struct Hot {
    pub run: Run,
    pub event: Event,
}

/// Runs kept in memory with their event (a few MB at most).
const MAX_HOT: usize = 2048;

/// What [`Queue::take`] found.
enum Take {
    Run(QueueEntry),
    /// Nothing is due before this time (or at all).
    Wait(Option<Timestamp>),
}

impl Queue {
    /// Fill the queue from the store's queue tree (at startup).
    pub fn load(&self, store: &Store) -> Result<usize, StoreError> {
        let mut n = 0;
        for entry in store.queue_entries() {
            self.push(entry?);
            n += 1;
        }
        Ok(n)
    }

    /// Make a stored queue entry known to the dispatcher.
    pub fn push(&self, entry: QueueEntry) {
        self.lock().due.insert((entry.due, entry.run_id));
        self.0.changed.notify_one();
    }

    /// [`Queue::push`] a run that was just stored, keeping it and its event
    /// in memory for the executor when there is room.
    pub fn push_hot(&self, run: Run, event: Event) {
        let mut s = self.lock();
        s.due.insert((run.created_at, run.id.clone()));
        if s.hot.len() < MAX_HOT {
            s.hot.insert(run.id.clone(), Hot { run, event });
        }
        drop(s);
        self.0.changed.notify_one();
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
