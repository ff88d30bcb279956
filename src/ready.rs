//! Readiness (`GET /readyz`): is this server able to do its job right now,
//! not merely alive (`/healthz`)? Two things must hold:
//!
//! - **The store takes writes.** A small write plus a flush through the
//!   group-commit flusher ([`crate::store::Store::flush`]) completes within
//!   [`PROBE_TIMEOUT`]. That covers a full or failing disk, a store that has
//!   turned read-only after an I/O error, and a flusher thread that has
//!   stopped or hangs. The result is reused for [`PROBE_REUSE`], and only
//!   one probe runs at a time, so a busy prober costs at most one flush a
//!   second.
//! - **The runs are being dispatched.** The dispatcher task has not ended,
//!   and its loop beats a [`Heartbeat`] on every turn. An idle loop turns
//!   at least once a second, so a beat older than [`STALL_AFTER`] means the
//!   loop is stuck, unless it was waiting for a free worker (every worker
//!   busy is load, not a fault).
//!
//! [`Readiness::check`] decides; the HTTP handler only renders the answer.

use crate::record::Timestamp;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{info, warn};

/// A store probe must write and flush within this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A probe result younger than this is reused.
pub const PROBE_REUSE: Duration = Duration::from_secs(1);
/// A dispatcher that has not turned its loop for this long (while not
/// waiting for a worker) is stuck.
pub const STALL_AFTER: Duration = Duration::from_secs(10);

/// The dispatcher loop's proof of life; cheap to clone.
#[derive(Clone)]
pub struct Heartbeat(Arc<Beat>);

struct Beat {
    origin: Instant,
    /// Milliseconds from `origin` to the last beat.
    last_ms: AtomicU64,
    /// At the last beat, every worker was busy: the loop now waits for one.
    waiting_for_worker: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(Arc::new(Beat {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting_for_worker: AtomicBool::new(false),
        }))
    }
}

impl Heartbeat {
    /// The loop turned; `waiting_for_worker` when it is about to wait for a
    /// worker to come free (however long that takes is not a stall).
    pub fn beat(&self, waiting_for_worker: bool) {
        let ms = u64::try_from(self.0.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0
            .waiting_for_worker
            .store(waiting_for_worker, Ordering::Relaxed);
        self.0.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the last beat was, and whether the loop then waited for a worker.
    fn last(&self) -> (Instant, bool) {
        let ms = self.0.last_ms.load(Ordering::Relaxed);
        (
            self.0.origin + Duration::from_millis(ms),
            self.0.waiting_for_worker.load(Ordering::Relaxed),
        )
    }
}

/// Judge the dispatcher at `now` from its last beat: `Err` says why it is
/// not running.
pub fn judge_dispatcher(
    last_beat: Instant,
    waiting_for_worker: bool,
    ended: bool,
    now: Instant,
) -> Result<(), String> {
    if ended {
        return Err("the run dispatcher has stopped".into());
    }
    let silent = now.saturating_duration_since(last_beat);
    if silent > STALL_AFTER && !waiting_for_worker {
        return Err(format!(
            "the run dispatcher has not looked for due runs for {}s",
            silent.as_secs()
        ));
    }
    Ok(())
}

/// Everything `/readyz` looks at.
pub struct Readiness {
    store: Store,
    heartbeat: Heartbeat,
    /// Background tasks that must keep running, by what they do.
    tasks: Vec<(&'static str, AbortHandle)>,
    probe: tokio::sync::Mutex<Probe>,
    /// The last verdict logged.
    reported: std::sync::Mutex<Result<(), String>>,
}

#[derive(Default)]
struct Probe {
    last: Option<(Instant, Result<(), String>)>,
    /// A probe under way, kept across checks so that a hanging store gets
    /// one probe in flight, not one more per check.
    running: Option<(Instant, JoinHandle<Result<(), String>>)>,
}

impl Readiness {
    /// `dispatcher` is the dispatch task; `others` are further tasks that
    /// must not end while the server runs.
    pub fn new(
        store: Store,
        heartbeat: Heartbeat,
        dispatcher: AbortHandle,
        others: Vec<(&'static str, AbortHandle)>,
    ) -> Readiness {
        let mut tasks = vec![("the run dispatcher", dispatcher)];
        tasks.extend(others);
        Readiness {
            store,
            heartbeat,
            tasks,
            probe: tokio::sync::Mutex::default(),
            reported: std::sync::Mutex::new(Ok(())),
        }
    }

    /// Ready, or the first reason not to be. A change of verdict is
    /// logged once, not on every probe.
    pub async fn check(&self) -> Result<(), String> {
        let verdict = self.verdict().await;
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if *reported != verdict {
            match &verdict {
                Ok(()) => info!("ready again"),
                Err(reason) => warn!(%reason, "not ready"),
            }
            *reported = verdict.clone();
        }
        verdict
    }

    async fn verdict(&self) -> Result<(), String> {
        let dispatcher_ended = self.tasks.first().is_some_and(|(_, t)| t.is_finished());
        let (last, waiting) = self.heartbeat.last();
        judge_dispatcher(last, waiting, dispatcher_ended, Instant::now())?;
        if let Some((name, _)) = self.tasks.iter().skip(1).find(|(_, t)| t.is_finished()) {
            return Err(format!("{name} has stopped"));
        }
        self.probe_store().await
    }

    async fn probe_store(&self) -> Result<(), String> {
        let mut probe = self.probe.lock().await;
        if let Some((at, result)) = &probe.last {
            if at.elapsed() < PROBE_REUSE {
                return result.clone();
            }
        }
        let (started, handle) = probe.running.get_or_insert_with(|| {
            let store = self.store.clone();
            (Instant::now(), tokio::spawn(write_and_flush(store)))
        });
        let left = PROBE_TIMEOUT.saturating_sub(started.elapsed());
        let result = match tokio::time::timeout(left, handle).await {
            Ok(joined) => {
                probe.running = None;
                joined.unwrap_or_else(|e| Err(format!("the store probe failed: {e}")))
            }
            Err(_) => Err(format!(
                "a store write and flush started {}s ago has not completed (limit {}s)",
                probe
                    .running
                    .as_ref()
                    .map_or(0, |(at, _)| at.elapsed().as_secs()),
                PROBE_TIMEOUT.as_secs()
            )),
        };
        probe.last = Some((Instant::now(), result.clone()));
        result
    }
}

/// One small write, then a flush to disk.
async fn write_and_flush(store: Store) -> Result<(), String> {
    store
        .write_probe(Timestamp::now())
        .await
        .map_err(|e| format!("the store refused a write: {e}"))?;
    store
        .flush()
        .await
        .map_err(|e| format!("the store cannot flush to disk: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_dispatcher_is_stuck_unless_it_waits_for_a_worker() {
        let beat = Instant::now();
        let soon = beat + Duration::from_secs(2);
        let late = beat + STALL_AFTER + Duration::from_secs(1);
        assert_eq!(judge_dispatcher(beat, false, false, soon), Ok(()));
        assert_eq!(judge_dispatcher(beat, true, false, late), Ok(()));
        let stuck = judge_dispatcher(beat, false, false, late).expect_err("stuck");
        assert!(stuck.contains("11s"), "{stuck}");
        assert!(judge_dispatcher(beat, true, true, soon)
            .expect_err("ended")
            .contains("stopped"));
        // A clock that reads before the beat is not a stall.
        assert_eq!(judge_dispatcher(soon, false, false, beat), Ok(()));
    }

    #[test]
    fn a_heartbeat_remembers_its_last_beat() {
        let hb = Heartbeat::default();
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        hb.beat(true);
        let (at, waiting) = hb.last();
        assert!(waiting);
        assert!(at > before, "the beat is later than a moment before it");
        hb.beat(false);
        assert!(!hb.last().1);
    }

    /// The real dispatcher over an empty queue, beating `hb`, stopped by
    /// sending `true`.
    fn start_dispatcher(
        store: &Store,
        hb: Heartbeat,
    ) -> (tokio::sync::watch::Sender<bool>, JoinHandle<()>) {
        let engine = crate::script::Engine::new(crate::script::Limits::default());
        let executor = Arc::new(crate::run::executor::Executor {
            store: store.clone(),
            workflows: Arc::new(crate::workflow::registry::Workflows::new(
                store.clone(),
                engine,
            )),
            http: crate::step::http::Sender::live(crate::step::policy::OutboundPolicy {
                deny_private: false,
            })
            .expect("an HTTP client"),
            metrics: Arc::default(),
            responders: Default::default(),
            max_delay: crate::step::delay::DEFAULT_MAX_DELAY,
            skip_waits: false,
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(crate::run::scheduler::dispatch(
            executor,
            2,
            stopped,
            Duration::from_secs(1),
            hb,
        ));
        (stop, task)
    }

    #[tokio::test]
    async fn ready_while_the_dispatcher_runs_and_not_once_it_stops() {
        let store = Store::temporary().expect("store");
        let hb = Heartbeat::default();
        let (stop, dispatcher) = start_dispatcher(&store, hb.clone());
        let r = Readiness::new(store, hb.clone(), dispatcher.abort_handle(), Vec::new());
        assert_eq!(r.check().await, Ok(()));
        assert_eq!(r.check().await, Ok(()), "a reused probe result");
        let _ = stop.send(true);
        let _ = dispatcher.await;
        assert_eq!(
            r.check().await,
            Err("the run dispatcher has stopped".to_string())
        );
    }

    #[tokio::test]
    async fn another_task_that_ends_is_named() {
        let store = Store::temporary().expect("store");
        let hb = Heartbeat::default();
        let (stop, dispatcher) = start_dispatcher(&store, hb.clone());
        let ended = tokio::spawn(async {});
        let ended_handle = ended.abort_handle();
        ended.await.expect("the task ran");
        let r = Readiness::new(
            store,
            hb,
            dispatcher.abort_handle(),
            vec![("the queue checkpoint", ended_handle)],
        );
        assert_eq!(
            r.check().await,
            Err("the queue checkpoint has stopped".to_string())
        );
        let _ = stop.send(true);
        let _ = dispatcher.await;
    }
}
