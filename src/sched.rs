//! How the server's threads ask the kernel for CPU time.
//!
//! Two hints, both best effort and needing no privilege:
//!
//! - [`prefer_short_slices`]: `hookflow serve` asks for short time slices
//!   before it starts any thread, so every thread inherits them: the ones
//!   that accept requests, the group-commit flusher, sled's IO threads.
//!   With Linux's EEVDF scheduler (6.12 and later), a woken thread with a
//!   shorter slice may preempt one that is running, so a request whose
//!   flush has just finished is answered without waiting out another
//!   thread's slice. Kernels without custom slices ignore the request.
//! - [`run_thread`]: the threads that execute runs go back to the default
//!   slice and a higher nice value, so a backlog of runs takes what CPU the
//!   requests leave and does not delay their answers.

/// The time slice asked for, in nanoseconds (the kernel's minimum is
/// 100 µs). Measured under the load benchmark in seven alternating pairs
/// against the default slice (1.4 ms on the 2-core machine): acks/s higher
/// in all seven (median +15%), ack p99 lower in all seven (median −10%),
/// runs/s end to end the same within the noise. The price: fewer runs are
/// delivered while the load is on (median −16%, the backlog drains after),
/// and the longer backlog takes peak RSS 5–12 MB higher (147 MB at most).
const SHORT_SLICE_NS: u64 = 100_000;

/// How much lower than the HTTP threads' priority the run threads' is, as
/// a nice value (each step is worth about 20% less CPU under contention).
/// Measured under the load benchmark, with two run threads per core: nice
/// 2 gave fewer runs/s (median 5,630 against 6,430 in nine alternating
/// pairs), 10 fewer too (5,020–5,720) and peak RSS up to 147 MB. Earlier,
/// with one thread per core: nice 0 gave 7,100–7,300 acks/s and 5,300–
/// 5,900 runs/s, 2 gave 7,800–7,900 and 5,400–5,700, 5 gave 8,100–8,700
/// acks/s but 4,600–5,400. Once a run needed one save instead of three,
/// runs took a larger share of the CPU at nice 7: nice 9 gave a median of
/// 10,800 acks/s in fifteen single rounds against 10,000 in nine at nice
/// 7, with the same runs/s within the noise. Nice 19 (or the idle policy)
/// gave more acks/s but fewer runs while the load was on, and the longer
/// backlog took peak RSS to 150–200 MB.
const RUN_THREAD_NICE: i32 = 9;

/// Ask for short time slices for the calling thread and every thread it
/// starts from now on.
pub fn prefer_short_slices() {
    set_slice(SHORT_SLICE_NS);
}

/// Make the calling thread a run thread: the default slice, lower priority.
pub fn run_thread() {
    set_slice(0);
    lower_priority(RUN_THREAD_NICE);
}

/// Set the calling thread's time slice (0: the kernel's default), keeping
/// its policy (normal) and nice value.
fn set_slice(ns: u64) {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` as of `SCHED_ATTR_SIZE_VER0`.
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // SAFETY: gettid and getpriority take integers; sched_setattr reads
        // `size` bytes from a struct that lives across the call.
        unsafe {
            let tid = libc::gettid();
            let attr = SchedAttr {
                size: std::mem::size_of::<SchedAttr>() as u32,
                policy: libc::SCHED_OTHER as u32,
                flags: 0,
                nice: libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
                priority: 0,
                runtime: ns,
                deadline: 0,
                period: 0,
            };
            libc::syscall(
                libc::SYS_sched_setattr,
                tid,
                &attr as *const SchedAttr,
                0u32,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}

/// Raise the calling thread's nice value by `by`. Where it is not possible,
/// runs simply compete with requests on equal terms.
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The thread's slice as the kernel reports it, in nanoseconds.
    fn slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.rsplit(':').next()?.trim().parse().ok()
    }

    /// Whether this kernel is 6.12 or later.
    fn custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse::<u32>().ok());
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 12)
    }

    fn nice() -> i32 {
        // SAFETY: integer arguments only.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn threads_inherit_short_slices_and_run_threads_drop_them() {
        std::thread::spawn(|| {
            let default = slice();
            prefer_short_slices();
            // Kernels before 6.12 have no custom slices and keep the default.
            if custom_slices() {
                assert_eq!(slice(), Some(SHORT_SLICE_NS));
                let child = std::thread::spawn(slice).join().expect("child");
                assert_eq!(child, Some(SHORT_SLICE_NS), "a new thread inherits it");
            }
            let before = nice();
            std::thread::spawn(move || {
                run_thread();
                assert_eq!(slice(), default);
                assert_eq!(nice(), (before + RUN_THREAD_NICE).min(19));
            })
            .join()
            .expect("run thread");
        })
        .join()
        .expect("test thread");
    }
}
