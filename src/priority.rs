//! Thread priorities: the threads that run workflows and scripts give way to
//! the threads that answer senders. A plain nice value per thread (Linux
//! keeps one per thread); where it cannot be set, every thread competes on
//! equal terms and nothing else changes. Why each pool has the value it has
//! is measured in `docs/performance.md`.

/// Raise the calling thread's nice value by `by` (capped at 19, the lowest
/// priority). Best effort: raising it needs no privilege on Linux, and
/// elsewhere this does nothing.
pub fn lower(by: i32) {
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

/// The calling thread's nice value (0 where threads have none of their own).
pub fn current() -> i32 {
    #[cfg(target_os = "linux")]
    // SAFETY: integer arguments only.
    unsafe {
        libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
    }
    #[cfg(not(target_os = "linux"))]
    0
}
