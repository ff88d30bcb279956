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
