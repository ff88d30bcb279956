//! The process allocator: mimalloc, plus a small pool that recycles sled's
//! log buffers, and the settings that keep its memory low
//! ([`tune_memory`], [`purge_after`]), made once at start by the binary and
//! by the benches that measure as the server runs.
//!
//! sled writes its log through one buffer per segment
//! ([`crate::store::sled::SEGMENT_SIZE`] bytes, 8 KiB aligned). It allocates a
//! fresh one each time a segment fills, and frees the old one once it is on
//! disk and no thread can still see it: under load, a few hundred times a
//! second, with about 30 alive at once. mimalloc hands each freed buffer
//! back to the OS within a millisecond (the purge delay that keeps RSS low,
//! see `main.rs`), so every page of the next buffer was faulted in and
//! zeroed by the kernel again: about one page fault per 4 KiB the store
//! writes, 5% of the server's CPU under the load benchmark.
//!
//! The pool keeps up to [`SPARE_BUFFERS`] freed buffers (16 MiB) and hands
//! them out again, already mapped. Measured under the load benchmark: page
//! faults fell from 5.6 to 0.9 per event, and peak RSS rose by about 10 MB.
//!
//! Spares not needed go back: [`trim_spares`], called once a second by the
//! sled store, returns as many as the pool never dipped into since the last
//! call. Under load the pool empties now and then and keeps what it holds;
//! once the writes slow down (a backlog draining, an idle server) the
//! spares go back to mimalloc within two seconds. Without it, the pool sat
//! full (32 spares, 16 MiB) through the drain of a long backlog, where
//! the server's RSS peaks.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Freed log buffers kept for reuse. With 4 or 16, most allocations still
/// found the pool empty, as sled frees its buffers in bursts; with 32, few
/// do.
pub const SPARE_BUFFERS: usize = 32;

/// Alignment of sled's log buffers.
const LOG_BUFFER_ALIGN: usize = 8192;

/// mimalloc with a pool of spare log buffers.
pub struct Allocator;

struct Pool {
    /// Spares, the longest kept first.
    free: [usize; SPARE_BUFFERS],
    len: usize,
    /// The fewest spares held since the last [`trim_spares`]: that many
    /// were not needed.
    low: usize,
}

// A std mutex does not allocate; the critical sections cannot panic.
static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: [0; SPARE_BUFFERS],
    len: 0,
    low: 0,
});

/// Give back to mimalloc the spares that were not needed since the last
/// call (the fewest the pool held in between); returns how many. Meant to
/// be called at a steady pace (the sled store does, once a second).
pub fn trim_spares() -> usize {
    let mut unneeded = [0usize; SPARE_BUFFERS];
    let n = match POOL.lock() {
        Ok(mut pool) => {
            let n = pool.low.min(pool.len);
            // The longest kept go first.
            unneeded[..n].copy_from_slice(&pool.free[..n]);
            let len = pool.len;
            pool.free.copy_within(n..len, 0);
            pool.len -= n;
            pool.low = pool.len;
            n
        }
        Err(_) => 0,
    };
    for &p in &unneeded[..n] {
        // SAFETY: a pooled block came from mimalloc with the log buffer's
        // layout, and left the pool above: it is freed once.
        unsafe { mimalloc::MiMalloc.dealloc(p as *mut u8, LOG_BUFFER) };
    }
    n
}

/// Spares the pool holds now.
pub fn spares_held() -> usize {
    POOL.lock().map_or(0, |pool| pool.len)
}

/// The layout of sled's log buffers (checked when compiled).
const LOG_BUFFER: Layout =
    match Layout::from_size_align(crate::store::sled::SEGMENT_SIZE, LOG_BUFFER_ALIGN) {
        Ok(layout) => layout,
        Err(_) => panic!("sled's log buffer layout is not a valid layout"),
    };

/// Allocations of the log buffer's layout so far (pooled or not).
static LOG_BUFFERS: AtomicUsize = AtomicUsize::new(0);

/// How many blocks of the log buffer's layout were asked for since the
/// process started. The pool rests on sled asking for exactly this layout;
/// `tests/alloc_pool.rs` checks that it still does (after a sled upgrade,
/// say) by writing through the store and reading this count.
pub fn log_buffers_allocated() -> usize {
    LOG_BUFFERS.load(Ordering::Relaxed)
}

fn is_log_buffer(layout: Layout) -> bool {
    layout == LOG_BUFFER
}

// SAFETY: every block comes from mimalloc and goes back to it, with its
// layout; a pooled block is only handed out for the layout it was freed
// with, which `GlobalAlloc::alloc` allows to hold any bytes.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_log_buffer(layout) {
            LOG_BUFFERS.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut pool) = POOL.lock() {
                if pool.len > 0 {
                    pool.len -= 1;
                    pool.low = pool.low.min(pool.len);
                    return pool.free[pool.len] as *mut u8;
                }
            }
        }
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_log_buffer(layout) {
            if let Ok(mut pool) = POOL.lock() {
                if pool.len < SPARE_BUFFERS {
                    let n = pool.len;
                    pool.free[n] = ptr as usize;
                    pool.len += 1;
                    return;
                }
            }
        }
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received; a pooled block is a mimalloc block.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`, which the Rust
/// bindings do not name. A test below fails if the number stops naming it.
pub const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory waits before it goes back to the OS on a node
/// whose store is PostgreSQL, in ms. Such a node keeps no store in memory
/// (about 40 MB under the load bench), and with the 1 ms that keeps a sled
/// server small it faulted a page back in about once per event: a tenth of
/// its CPU with two nodes on one machine. At 100 ms it takes a third of the
/// page faults for about 3 MB more (`docs/performance.md`).
pub const POSTGRES_PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Keep memory low: no transparent huge pages for this process (with them,
/// mimalloc's arenas take 2 MiB at a time), and freed memory goes back to
/// the OS after 1 ms instead of mimalloc's default (1 s in mimalloc 3).
/// Under the load benchmark this took peak RSS from about 160 MB to about
/// 120 MB at the same throughput.
pub fn tune_memory() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; failure leaves THP as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    purge_after(1);
}

/// Freed memory goes back to the OS after `ms`.
pub fn purge_after(ms: std::ffi::c_long) {
    // SAFETY: a plain setter of a process-wide allocator option.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_log_buffer_is_handed_out_again_others_are_not_pooled_and_unneeded_ones_go_back() {
        let a = Allocator;
        let log = LOG_BUFFER;
        // SAFETY: each block is freed once, with the layout it was made with.
        unsafe {
            let p = a.alloc(log);
            assert!(!p.is_null());
            p.write_bytes(7, crate::store::sled::SEGMENT_SIZE);
            a.dealloc(p, log);
            let q = a.alloc(log);
            assert_eq!(p, q, "the spare buffer is reused");
            assert_eq!(*q.add(100), 7, "and handed out as it was left");

            // More spares than the pool keeps go back to mimalloc.
            let many: Vec<*mut u8> = (0..SPARE_BUFFERS + 2).map(|_| a.alloc(log)).collect();
            for &m in &many {
                a.dealloc(m, log);
            }
            a.dealloc(q, log);
            let pooled = spares_held();
            assert_eq!(pooled, SPARE_BUFFERS);

            // Another layout never comes from the pool.
            let other = Layout::from_size_align(crate::store::sled::SEGMENT_SIZE, 8)
                .expect("a valid layout");
            let r = a.alloc(other);
            assert!(!r.is_null());
            assert_eq!(spares_held(), pooled);
            a.dealloc(r, other);

            // Spares not needed go back. The pool is full: a first trim
            // starts the count (what it gives back depends on what the
            // steps above left as the low mark), a second with nothing in
            // between gives back all that is left.
            trim_spares();
            let left = spares_held();
            assert_eq!(trim_spares(), left, "nothing was needed since");
            assert_eq!(spares_held(), 0);

            // Eight spares; three are taken and come back: five were never
            // needed and go, the three stay until a second passes without
            // them being needed.
            let eight: Vec<*mut u8> = (0..8).map(|_| a.alloc(log)).collect();
            for &m in &eight {
                a.dealloc(m, log);
            }
            trim_spares(); // the count starts at 8
            let three: Vec<*mut u8> = (0..3).map(|_| a.alloc(log)).collect();
            for &m in &three {
                a.dealloc(m, log);
            }
            assert_eq!(trim_spares(), 5, "the five never taken go back");
            assert_eq!(spares_held(), 3);
            let kept = a.alloc(log);
            assert!(three.contains(&kept), "the three needed ones stay pooled");
            a.dealloc(kept, log);
            assert_eq!(trim_spares(), 2, "the low mark was 2");
            assert_eq!(trim_spares(), 1);
            assert_eq!(trim_spares(), 0);
        }
    }

    /// The purge delay is set by its number. mimalloc reads each option
    /// from the environment by its name (`MIMALLOC_PURGE_DELAY`), so a child
    /// started with that variable and asked for option `PURGE_DELAY` shows
    /// whether the number still names the purge delay (a mimalloc upgrade
    /// that renumbers its options fails here).
    #[test]
    fn the_purge_delay_option_number_names_the_purge_delay() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--ignored",
                "--exact",
                "alloc::tests::purge_delay_probe",
                "--nocapture",
            ])
            .env("MIMALLOC_PURGE_DELAY", "37")
            .output()
            .expect("the probe runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("purge_delay=37"),
            "option {PURGE_DELAY} did not read MIMALLOC_PURGE_DELAY: {text}"
        );
        tune_memory();
        // SAFETY: a plain getter of a process-wide allocator option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(delay, 1, "the purge delay is 1 ms once set");
    }

    /// Run by the test above in a child process.
    #[test]
    #[ignore = "a probe started by the_purge_delay_option_number_names_the_purge_delay"]
    fn purge_delay_probe() {
        // SAFETY: a plain getter of a process-wide allocator option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        println!("purge_delay={delay}");
    }
}
