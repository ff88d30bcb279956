//! What the two group-commit writers share (`ingest.rs` for ingests,
//! `writes.rs` for run writes): a channel of pending items drained by a
//! few writer tasks, each taking whatever queued up while the previous
//! batch was being written, so an idle node writes each item at once and
//! a busy one shares each statement and commit among many.

use super::Shared;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex as AsyncMutex};

/// Items one batch takes at most.
pub const MAX_BATCH: usize = 256;

/// Batches being written at once: one commits while the next fills.
const WRITERS: usize = 2;

/// Items waiting for a writer at most (beyond, senders wait).
const QUEUED: usize = 4096;

/// The writers' shared end of the channel.
pub type Queue<T> = Arc<AsyncMutex<mpsc::Receiver<T>>>;

/// Start the writers; the channel closes (and they end) with the last
/// store handle.
pub fn start<T, F, Fut>(
    shared: &Arc<Shared>,
    handle: &tokio::runtime::Handle,
    writer: F,
) -> mpsc::Sender<T>
where
    T: Send + 'static,
    F: Fn(Arc<Shared>, Queue<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUED);
    let rx = Arc::new(AsyncMutex::new(rx));
    for _ in 0..WRITERS {
        handle.spawn(writer(Arc::clone(shared), Arc::clone(&rx)));
    }
    tx
}

/// The next batch: what was carried over from the last one, then whatever
/// is queued, up to [`MAX_BATCH`]; with nothing carried over, it waits for
/// the first. With something carried over it takes only what is queued
/// already (the other writer may be waiting on the channel, holding it).
/// `None` once the channel is closed and nothing is carried.
pub async fn next<T>(rx: &Queue<T>, mut batch: Vec<T>) -> Option<Vec<T>> {
    let rx = if batch.is_empty() {
        Some(rx.lock().await)
    } else {
        rx.try_lock().ok()
    };
    if let Some(mut rx) = rx {
        if batch.is_empty() {
            batch.push(rx.recv().await?);
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
    }
    Some(batch)
}
