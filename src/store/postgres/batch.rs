//! What the two group-commit writers share (`ingest.rs` for ingests,
//! `writes.rs` for run writes): a channel of pending items drained by one
//! writer task, which takes whatever queued up while its previous batch
//! was being written. An idle node writes each item at once; a busy one
//! shares each statement and commit among many. One writer per kind, not
//! two taking turns: on the load bench two made smaller batches and cost
//! more CPU per event (see `docs/performance.md`), and an ingest and a run
//! write still commit side by side.

use super::Shared;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Items one batch takes at most.
const MAX_BATCH: usize = 256;

/// Items waiting for the writer at most (beyond, senders wait).
const QUEUED: usize = 4096;

/// Start the writer; the channel closes (and it ends) with the last store
/// handle.
pub fn start<T, F, Fut>(
    shared: &Arc<Shared>,
    handle: &tokio::runtime::Handle,
    writer: F,
) -> mpsc::Sender<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<Shared>, mpsc::Receiver<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUED);
    handle.spawn(writer(Arc::clone(shared), rx));
    tx
}

/// The next batch: what was carried over from the last one, then whatever
/// is queued, up to [`MAX_BATCH`]; with nothing carried over, it waits for
/// the first. `None` once the channel is closed and nothing is carried.
pub async fn next<T>(rx: &mut mpsc::Receiver<T>, mut batch: Vec<T>) -> Option<Vec<T>> {
    if batch.is_empty() {
        batch.push(rx.recv().await?);
    }
    drain(rx, &mut batch);
    if batch.len() > 1 {
        // Busy: let the tasks already running (requests being read, runs
        // ending) add theirs before the batch goes.
        tokio::task::yield_now().await;
        drain(rx, &mut batch);
    }
    Some(batch)
}

fn drain<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}
