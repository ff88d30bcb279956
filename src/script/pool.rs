//! The threads that evaluate scripts for code that must not block: a
//! trigger's `when` with an `expr`, which would otherwise run on the threads
//! that answer requests and hold them for up to the wall-time limit while
//! other senders wait. A few threads, at a lower scheduling priority than
//! the request threads, take jobs from one channel; the caller awaits the
//! answer without holding a thread.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// How much lower than the request threads' priority the script threads'
/// is, as a nice value: an expensive `when` must not take CPU from the
/// threads that answer other senders. Less than the run threads' (see
/// [`crate::run::worker`]): a sender is waiting on this one.
const SCRIPT_THREAD_NICE: i32 = 5;

type Job = Box<dyn FnOnce() + Send>;

/// A small, fixed set of script threads. Dropping the pool lets them end
/// once the jobs already given to them are done.
pub struct ScriptPool {
    jobs: mpsc::Sender<Job>,
}

/// The pool could not give an answer: its threads are gone.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the script threads are not running")]
pub struct PoolGone;

impl ScriptPool {
    /// A pool sized for this machine: one thread per core, at least two
    /// (so that one slow script does not hold up every other) and at most
    /// four (each can hold a core for a whole wall-time limit).
    pub fn for_machine() -> std::io::Result<ScriptPool> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ScriptPool::start(cores.clamp(2, 4))
    }

    pub fn start(threads: usize) -> std::io::Result<ScriptPool> {
        let threads = threads.max(1);
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name("hookflow-script".into())
                .spawn(move || {
                    crate::priority::lower(SCRIPT_THREAD_NICE);
                    serve(&rx);
                })?;
        }
        Ok(ScriptPool { jobs })
    }

    /// Run `work` on a script thread and await its value.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolGone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .map_err(|_| PoolGone)?;
        rx.await.map_err(|_| PoolGone)
    }
}

/// Take jobs until the pool is dropped.
fn serve(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, never while one
        // runs, so it cannot be poisoned by a job's panic.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panicking job must not take the thread with it; its caller sees
        // the answer channel closed ([`PoolGone`]).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_script_threads_at_lower_priority() {
        let pool = ScriptPool::start(2).expect("threads");
        let (name, nice) = pool
            .run(|| {
                let name = std::thread::current().name().map(str::to_string);
                (name, crate::priority::current())
            })
            .await
            .expect("answered");
        assert_eq!(name.as_deref(), Some("hookflow-script"));
        let here = crate::priority::current();
        if cfg!(target_os = "linux") {
            assert_eq!(nice, (here + SCRIPT_THREAD_NICE).min(19));
        }
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_threads_go_on() {
        let pool = ScriptPool::start(1).expect("threads");
        let lost = pool.run(|| -> u8 { panic!("a job that fails") }).await;
        assert_eq!(lost, Err(PoolGone));
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn jobs_run_side_by_side() {
        let pool = ScriptPool::start(2).expect("threads");
        // Each job waits (bounded) for word from the other: both hear it
        // only when they run at the same time.
        let (tx1, rx1) = mpsc::channel::<()>();
        let (tx2, rx2) = mpsc::channel::<()>();
        let wait = std::time::Duration::from_secs(10);
        let (x, y) = tokio::join!(
            pool.run(move || {
                let _ = tx1.send(());
                rx2.recv_timeout(wait).is_ok()
            }),
            pool.run(move || {
                let _ = tx2.send(());
                rx1.recv_timeout(wait).is_ok()
            })
        );
        assert_eq!((x, y), (Ok(true), Ok(true)));
    }
}
