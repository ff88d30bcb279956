//! Crash points: named places in the write sequences (ingest, step, loop
//! item, retry, delay, finish, replay) where the crash tests stop the real process, the
//! way a power cut or `kill -9` would, to prove that every sequence is
//! crash-consistent.
//!
//! A point does nothing unless the process was started with
//! `HOOKFLOW_CRASH_AT=<point>` (or `<point>:<n>`, to stop at its n-th
//! pass). Then, at that pass, everything written so far is made durable
//! first — the worst case for an interrupted sequence: its first half
//! survives — and the process aborts. The check is one load of a value
//! read once, so the points cost nothing in normal operation.
//!
//! The names are listed in [`POINTS`]; the crash tests go through all of
//! them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a crash point.
pub const ENV: &str = "HOOKFLOW_CRASH_AT";

/// Every crash point, in the order of the sequences they interrupt.
pub const POINTS: &[&str] = &[
    // An ingest: runs, dedupe keys, then the event that makes them count.
    "ingest.runs_written",
    "ingest.claims_written",
    "ingest.event_written",
    // Durable, but the sender has no answer yet (it sends again).
    "ingest.flushed",
    // A step: the run is marked running, the step acts (an outbound request
    // answered, a script that wrote state), and its result is saved.
    "step.started",
    "step.acted",
    "step.saved",
    // An item of a `for_each` that acted outside the run settles: the run
    // is saved with it, before the loop takes another item.
    "step.item_saved",
    // A retry: the wake-up entry, then the run that waits for it, then the
    // entry that brought the run here is removed.
    "retry.entry_written",
    "retry.run_saved",
    "retry.old_entry_removed",
    // A delay: the same sequence as a retry.
    "delay.entry_written",
    "delay.run_saved",
    "delay.old_entry_removed",
    // The end of a run: its final state, then its queue entry goes.
    "finish.run_saved",
    "finish.entry_removed",
    // A replay: its queue entry, the new run, then the links to it.
    "replay.entry_written",
    "replay.run_written",
    "replay.linked",
    // Packing finished history: the pack, then the records it holds go
    // from the hot tree.
    "pack.written",
];

struct Armed {
    point: String,
    at_pass: u64,
    passes: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (point, n) = match spec.split_once(':') {
                Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                point,
                at_pass: n.max(1),
                passes: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Does passing `point` now stop the process?
pub fn hits(point: &str) -> bool {
    debug_assert!(POINTS.contains(&point), "unlisted crash point {point}");
    match armed() {
        Some(a) if a.point == point => a.passes.fetch_add(1, Ordering::SeqCst) + 1 == a.at_pass,
        _ => false,
    }
}

/// Stop the process at once, as a crash would (no destructors, no flush
/// beyond what the caller made durable).
pub fn crash(point: &str) -> ! {
    eprintln!("hookflow: stopping at crash point {point} ({ENV})");
    std::process::abort()
}
