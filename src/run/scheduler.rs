//! Which runs execute when: claims due runs from the store and hands each
//! to the executor, at most `concurrency` at once, on the run threads.
//!
//! Runs execute on their own runtime ([`runtime`]) whose threads have a
//! lower scheduling priority than the ones answering webhooks: when the
//! machine is busy, accepting (what senders wait for, and time out on)
//! comes first and runs use the rest; the queue absorbs the difference.
//! The scheduler never looks inside a run: claiming is the store's
//! ([`crate::store::Store::claim`]), walking the steps the executor's.

use super::executor::Executor;
use crate::record::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tracing::error;

/// How much lower than the HTTP threads' priority the run threads' is, as
/// a nice value, and how many run threads there are per core. Runs wait
/// on the sink and on flushes, so one thread per core leaves the CPU idle
/// while a backlog drains; two per core keep it busy, and the nice value
/// keeps the extra threads from taking CPU from acceptance. The value sets
/// the split of the CPU between accepting and running under a backlog;
/// the measurements behind it, and the stronger alternatives measured and
/// not kept, are in `docs/performance.md`.
const RUN_THREAD_NICE: i32 = 9;
const RUN_THREADS_PER_CORE: usize = 2;

/// The runtime that executes runs: two threads per core, at lower priority.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores * RUN_THREADS_PER_CORE)
        .thread_name("hookflow-run")
        .on_thread_start(|| crate::priority::lower(RUN_THREAD_NICE))
        .enable_all()
        .build()
}

/// How long the scheduler sleeps at most when nothing is due: new work
/// wakes it at once, this only bounds how late a run due at a known time
/// (or claimable again on another node) is noticed.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Claim and execute due runs until `shutdown` turns true, then wait up to
/// `grace` for runs in flight; what is left stays queued for the next start.
/// Each turn of the loop beats `heartbeat` (see [`crate::ready`]).
pub async fn dispatch(
    executor: Arc<Executor>,
    concurrency: usize,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    heartbeat: crate::ready::Heartbeat,
) {
    let store = executor.store.clone();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    loop {
        heartbeat.beat(permits.available_permits() == 0);
        if *shutdown.borrow() {
            break;
        }
        let first = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        // Claim as many runs as there are free permits (one round trip for
        // a backend that claims over the network).
        let mut held = vec![first];
        while let Ok(p) = Arc::clone(&permits).try_acquire_owned() {
            held.push(p);
        }
        let now = Timestamp::now();
        let claims = match store.claim(now, held.len()).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "cannot claim due runs; trying again in a second");
                drop(held);
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_WAIT) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        let idle = claims.is_empty();
        for claim in claims {
            let Some(permit) = held.pop() else {
                // The store handed out more than asked: let it have them back.
                store.release(claim, true);
                continue;
            };
            let executor = Arc::clone(&executor);
            tokio::spawn(async move {
                let failed = executor.execute(&claim).await.err();
                if let Some(e) = &failed {
                    // The run is still stored; it is offered again later
                    // rather than spinning on a failing store.
                    error!(run_id = %claim.run_id, error = %e, "run could not be executed; trying again in a second");
                }
                executor.store.release(claim, failed.is_some());
                // Release the store before the permit: once every permit
                // is back, shutdown may reopen the same folder.
                drop(executor);
                drop(permit);
            });
        }
        drop(held);
        if idle {
            let wait = store
                .next_due()
                .map(|d| Duration::from_millis(d.0.saturating_sub(now.0)))
                .unwrap_or(IDLE_WAIT)
                .min(IDLE_WAIT);
            tokio::select! {
                _ = store.work_arrived() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
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

    /// The split of the CPU between answering and running rests on the run
    /// threads having their own, lower priority: this fails where the nice
    /// value stops being per thread (then it would lower the whole process).
    #[test]
    fn run_threads_have_lower_priority_than_the_caller() {
        let rt = runtime().expect("run runtime");
        let here = crate::priority::current();
        let (name, nice) = rt.block_on(async {
            tokio::spawn(async {
                (
                    std::thread::current().name().map(str::to_string),
                    crate::priority::current(),
                )
            })
            .await
            .expect("ran")
        });
        assert_eq!(name.as_deref(), Some("hookflow-run"));
        if cfg!(target_os = "linux") {
            assert_eq!(nice, (here + RUN_THREAD_NICE).min(19));
            assert_eq!(crate::priority::current(), here, "the caller keeps its own");
        }
    }
}
