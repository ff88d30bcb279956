//! A coarse clock for the sandbox's wall-time limit: while any evaluation
//! runs, one thread stores the milliseconds elapsed since the clock was
//! made, every [`TICK`]. Reading it is one atomic load, cheap enough for
//! every Rhai operation. Reading the system clock on every operation would
//! be most of a small script's cost, and reading it only every few thousand
//! operations let a loop of expensive calls (a hash of a 1 MiB string,
//! say) run for thousands of those calls past the limit.
//!
//! The reading never runs ahead of real time, so it can stop a script late
//! but never early. The sandbox still reads the system clock every 1,024
//! operations, so a clock thread that is starved of CPU (or that could not
//! be started) makes a stop later, never missing. The thread sleeps once
//! no evaluation has run for a moment, and ends with the last [`Clock`]
//! handle.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};
use tracing::warn;

/// How often the reading moves while evaluations run: the most a stop can
/// come late by, beyond the operation under way.
const TICK: Duration = Duration::from_millis(2);

/// How long the clock keeps ticking after the last evaluation ended before
/// it sleeps. Under steady traffic it then never sleeps, and starting an
/// evaluation costs no wake-up (a system call and a thread switch) each
/// time; idle, it costs nothing.
const LINGER: Duration = Duration::from_millis(200);

/// A handle on the clock; clones share it.
#[derive(Clone)]
pub(crate) struct Clock {
    shared: Arc<Shared>,
}

struct Shared {
    origin: Instant,
    /// Whole milliseconds from `origin` to the last tick.
    reading: AtomicU64,
    /// Evaluations running now: the thread ticks only while this is above 0.
    active: AtomicUsize,
    /// The ticking thread, started by the first evaluation; `None` if it
    /// could not be started.
    thread: OnceLock<Option<Thread>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Let a sleeping thread see that the clock is gone, and end.
        if let Some(Some(t)) = self.thread.get() {
            t.unpark();
        }
    }
}

/// Keeps the clock ticking while it lives (see [`Clock::running`]).
pub(crate) struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            shared: Arc::new(Shared {
                origin: Instant::now(),
                reading: AtomicU64::new(0),
                active: AtomicUsize::new(0),
                thread: OnceLock::new(),
            }),
        }
    }

    /// Milliseconds since the clock was made, as of the last tick.
    #[inline]
    pub fn reading(&self) -> u64 {
        self.shared.reading.load(Ordering::Relaxed)
    }

    /// The first reading that proves `deadline` has passed.
    pub fn reading_after(&self, deadline: Instant) -> u64 {
        let ms = deadline
            .saturating_duration_since(self.shared.origin)
            .as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
    }

    /// Tick while the returned guard lives (one per evaluation).
    pub fn running(&self) -> Running<'_> {
        if self.shared.active.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(thread) = self.thread() {
                thread.unpark();
            }
        }
        Running(&self.shared)
    }

    fn thread(&self) -> Option<&Thread> {
        self.shared
            .thread
            .get_or_init(|| {
                let shared = Arc::downgrade(&self.shared);
                match std::thread::Builder::new()
                    .name("hookflow-clock".into())
                    .spawn(move || tick(shared))
                {
                    Ok(handle) => Some(handle.thread().clone()),
                    Err(e) => {
                        warn!(error = %e, "cannot start the script clock; scripts are stopped at their wall-time limit less precisely");
                        None
                    }
                }
            })
            .as_ref()
    }
}

fn tick(shared: Weak<Shared>) {
    let mut idle_since: Option<Instant> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let ms = u64::try_from(s.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        s.reading.store(ms, Ordering::Relaxed);
        let idle = s.active.load(Ordering::SeqCst) == 0;
        drop(s);
        if !idle {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= LINGER {
            idle_since = None;
            // Woken by the next evaluation, or by the clock's end. An
            // evaluation that starts between the check and this call has
            // already unparked us, so this returns at once.
            std::thread::park();
            continue;
        }
        std::thread::sleep(TICK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reading_follows_time_while_running_and_never_leads_it() {
        let clock = Clock::new();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(30);
        let after = clock.reading_after(deadline);
        let running = clock.running();
        let bound = Instant::now() + Duration::from_secs(10);
        while clock.reading() < after {
            assert!(Instant::now() < bound, "the clock never moved");
            std::thread::yield_now();
        }
        assert!(Instant::now() >= deadline, "the reading ran ahead of time");
        drop(running);
    }
}
