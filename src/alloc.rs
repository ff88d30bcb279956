//! The process allocator: jemalloc, started with settings that keep a
//! long-running server small ([`JEMALLOC_CONF`]), plus a small pool that
//! recycles sled's log buffers, made ready once at start by the binary and
//! by the benches that measure as the server runs ([`tune_memory`]).
//!
//! jemalloc replaced mimalloc on 2026-12-07. Alternated with mimalloc in
//! the same hour: the 60 s load round peaked at 129 MB against 176 (medians
//! of three pairs), the server's RSS at rest grew 61 MB against 87 as
//! stored history went from 10,000 to 1,000,000 runs, and the CPU per
//! event was the same or lower (`docs/performance.md`, "jemalloc in place
//! of mimalloc").
//!
//! sled writes its log through one buffer per segment
//! ([`crate::store::sled::SEGMENT_SIZE`] bytes, 8 KiB aligned). It allocates a
//! fresh one each time a segment fills, and frees the old one once it is on
//! disk and no thread can still see it: under load, a few hundred times a
//! second, with about 30 alive at once. When mimalloc handed each freed
//! buffer back to the OS within a millisecond, every page of the next
//! buffer was faulted in and zeroed by the kernel again: about one page
//! fault per 4 KiB the store writes, 5% of the server's CPU under the load
//! benchmark. The pool keeps up to [`SPARE_BUFFERS`] freed buffers (16 MiB)
//! and hands them out again, already mapped; with it page faults fell from
//! 5.6 to 0.9 per event, for about 10 MB more at the peak. On jemalloc,
//! which keeps freed pages for a second of its own, the faults are gone
//! either way, but in three alternated pairs of 60 s rounds the pool still
//! gave the lower CPU per event (436 against 530 µs, medians) and the
//! faster round every time (`docs/performance.md`, stop 44), so it stays.
//!
//! Spares not needed go back: [`trim_spares`], called once a second by the
//! sled store, returns as many as the pool never dipped into since the last
//! call. Under load the pool empties now and then and keeps what it holds;
//! once the writes slow down (a backlog draining, an idle server) the
//! spares go back to the allocator within two seconds. Without it, the pool
//! sat full (32 spares, 16 MiB) through the drain of a long backlog, where
//! the server's RSS peaks.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Freed log buffers kept for reuse. With 4 or 16, most allocations still
/// found the pool empty, as sled frees its buffers in bursts; with 32, few
/// do.
pub const SPARE_BUFFERS: usize = 32;

/// Alignment of sled's log buffers.
const LOG_BUFFER_ALIGN: usize = 8192;

/// jemalloc with a pool of spare log buffers.
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

/// Give back to jemalloc the spares that were not needed since the last
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
        // SAFETY: a pooled block came from jemalloc with the log buffer's
        // layout, and left the pool above: it is freed once.
        unsafe { tikv_jemallocator::Jemalloc.dealloc(p as *mut u8, LOG_BUFFER) };
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

// SAFETY: every block comes from jemalloc and goes back to it, with its
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
        unsafe { tikv_jemallocator::Jemalloc.alloc(layout) }
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
        unsafe { tikv_jemallocator::Jemalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        unsafe { tikv_jemallocator::Jemalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received; a pooled block is a jemalloc block.
        unsafe { tikv_jemallocator::Jemalloc.realloc(ptr, layout, new_size) }
    }
}

/// jemalloc's settings, by name, read by jemalloc when it starts (before
/// the first allocation; the `MALLOC_CONF`-style variable
/// `_RJEM_MALLOC_CONF` still overrides each one):
/// - `narenas:2`: two arenas instead of four per core. Fewer arenas keep
///   fewer partly used pages beside a server's long-lived blocks (sled's
///   cached pages, its tables): to 200,000 stored runs, RSS grew 18 MB with
///   two arenas against 28 MB with eight. Each thread still allocates from
///   its own cache first.
/// - `background_thread:true`: freed memory goes back to the OS from a
///   background thread, whether or not the thread that freed it allocates
///   again (an idle server gives back what a backlog left).
/// - `dirty_decay_ms:1000`, `muzzy_decay_ms:0`: freed pages are kept for
///   reuse for about a second, then returned at once rather than in two
///   stages.
///
/// What each setting was measured against is in `docs/performance.md`
/// ("jemalloc in place of mimalloc"). A test below reads each option back
/// from jemalloc by name, so a rename of the symbol it reads this from
/// (the crate's symbol prefix) fails there instead of going unnoticed.
pub const JEMALLOC_CONF: &CStr =
    c"narenas:2,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

/// [`JEMALLOC_CONF`] where jemalloc looks for it: its `malloc_conf`
/// symbol (a C `const char *`, here the string's first byte), named with
/// the prefix the `tikv-jemallocator` crate gives every jemalloc symbol on
/// Linux.
#[cfg(target_os = "linux")]
#[used]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &u8 = &JEMALLOC_CONF.to_bytes_with_nul()[0];

/// Keep memory low: no transparent huge pages for this process (with them
/// the allocator's memory is taken 2 MiB at a time, and a page stays
/// resident while any of its 2 MiB is used). The allocator's own settings
/// are [`JEMALLOC_CONF`], read when it starts.
pub fn tune_memory() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; failure leaves THP as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
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

            // More spares than the pool keeps go back to jemalloc.
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

    /// jemalloc read [`JEMALLOC_CONF`]: each option, asked for by name,
    /// has the value it sets. Fails if jemalloc stops finding the
    /// `malloc_conf` symbol (a new symbol prefix, say) and starts with its
    /// defaults (eight arenas on two cores, no background thread, 10 s
    /// decay). Run in a child process without `_RJEM_MALLOC_CONF`, which
    /// would override the settings.
    #[test]
    fn jemalloc_starts_with_the_settings_it_is_given_by_name() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--ignored",
                "--exact",
                "alloc::tests::jemalloc_options_probe",
                "--nocapture",
            ])
            .env_remove("_RJEM_MALLOC_CONF")
            .output()
            .expect("the probe runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let conf = JEMALLOC_CONF.to_str().expect("ASCII settings");
        for setting in conf.split(',') {
            let want = format!("opt.{}", setting.replace(':', "="));
            assert!(text.contains(&want), "{setting} is not in effect: {text}");
        }
    }

    /// Run by the test above in a child process: prints jemalloc's options.
    #[test]
    #[ignore = "a probe started by jemalloc_starts_with_the_settings_it_is_given_by_name"]
    fn jemalloc_options_probe() {
        // Start jemalloc as the server does: through this module's allocator.
        let layout = Layout::from_size_align(64, 8).expect("a valid layout");
        // SAFETY: freed once, with the layout it was made with.
        unsafe {
            let p = Allocator.alloc(layout);
            assert!(!p.is_null());
            Allocator.dealloc(p, layout);
        }
        let narenas: u32 = read_option(c"opt.narenas");
        let background: bool = read_option(c"opt.background_thread");
        let dirty: isize = read_option(c"opt.dirty_decay_ms");
        let muzzy: isize = read_option(c"opt.muzzy_decay_ms");
        println!(
            "opt.narenas={narenas} opt.background_thread={background} \
             opt.dirty_decay_ms={dirty} opt.muzzy_decay_ms={muzzy}"
        );
    }

    /// One of jemalloc's options, read by name. `T` must be the option's
    /// C type (`unsigned` → u32, `bool` → bool, `ssize_t` → isize).
    fn read_option<T: Copy + Default>(name: &std::ffi::CStr) -> T {
        let mut value = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `value` and `len` describe a writable T; jemalloc checks
        // `len` against the option's size and fails rather than overrun.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut value as *mut T).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0, "mallctl({name:?}) failed");
        assert_eq!(len, std::mem::size_of::<T>(), "{name:?} has another size");
        value
    }
}
