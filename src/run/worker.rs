//! Claims due runs from the queue and executes them, at most `concurrency`
//! at once. The queue lives in sled, so runs survive restarts; which runs
//! are in flight lives in memory, so after a crash every entry is simply
//! due again and its run resumes at its first unfinished step.

use super::executor::Executor;
use crate::record::{RunId, Timestamp};
use crate::store::QueueEntry;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::error;

/// Handle for waking the dispatcher when new work was queued.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// Run the dispatcher until `shutdown` turns true, then wait up to `grace`
/// for runs in flight; what is left stays queued for the next start.
pub async fn dispatch(
    executor: Arc<Executor>,
    concurrency: usize,
    wake: Wake,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let in_flight: Arc<Mutex<HashSet<RunId>>> = Arc::default();
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
        let (claim, next_due) = next_entry(&executor, &in_flight, now);
        match claim {
            Some(entry) => {
                if let Ok(mut f) = in_flight.lock() {
                    f.insert(entry.run_id.clone());
                }
                let executor = Arc::clone(&executor);
                let in_flight = Arc::clone(&in_flight);
                let wake = wake.clone();
                tokio::spawn(async move {
                    if let Err(e) = executor.execute(&entry).await {
                        error!(run_id = %entry.run_id, error = %e, "run could not be executed; it stays queued");
                    }
                    if let Ok(mut f) = in_flight.lock() {
                        f.remove(&entry.run_id);
                    }
                    // Release the store before the permit: once every
                    // permit is back, shutdown may reopen the same folder.
                    drop(executor);
                    wake.notify();
                    drop(permit);
                });
            }
            None => {
                drop(permit);
                let wait = next_due
                    .map(|d| Duration::from_millis(d.0.saturating_sub(now.0)))
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1));
                tokio::select! {
                    _ = wake.0.notified() => {}
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

/// The earliest due entry not already in flight, or the time the next one
/// falls due.
fn next_entry(
    executor: &Executor,
    in_flight: &Mutex<HashSet<RunId>>,
    now: Timestamp,
) -> (Option<QueueEntry>, Option<Timestamp>) {
    let Ok(flying) = in_flight.lock() else {
        return (None, None);
    };
    for entry in executor.store.queue_entries() {
        match entry {
            Ok(e) if flying.contains(&e.run_id) => continue,
            Ok(e) if e.due <= now => return (Some(e), None),
            Ok(e) => return (None, Some(e.due)),
            Err(err) => {
                error!(error = %err, "cannot read the run queue");
                return (None, None);
            }
        }
    }
    (None, None)
}
