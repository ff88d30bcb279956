//! The process allocator: mimalloc, plus a small pool that recycles sled's
//! log buffers.
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
//! Other blocks of [`MAPPED`] bytes or more are mapped from the OS on their
//! own and unmapped when freed, as glibc's malloc does past its threshold.
//! A zeroed one then costs no memory until it is written: opening sled
//! allocates about 30 MiB of zeroed tables (41 histograms of 512 KiB for
//! metrics that are compiled out, page-table arrays), which mimalloc handed
//! out written through, resident for the life of the process. Opening the
//! two databases took RSS from 9.2 to 45.4 MB; it takes 3.9 MB with
//! glibc. Such blocks are rare once the store is open (a handful per
//! load-bench round besides the log buffers, by heaptrack), so the
//! system calls cost nothing measurable.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Freed log buffers kept for reuse. With 4 or 16, most allocations still
/// found the pool empty, as sled frees its buffers in bursts; with 32, few
/// do.
pub const SPARE_BUFFERS: usize = 32;

/// Alignment of sled's log buffers.
const LOG_BUFFER_ALIGN: usize = 8192;

/// Blocks of this size or more (and at most page-aligned) are mapped from
/// the OS on their own. Log buffers (8 KiB-aligned) stay with mimalloc and
/// the pool.
pub const MAPPED: usize = 256 * 1024;

/// The alignment every mapping has.
const PAGE: usize = 4096;

fn is_mapped(layout: Layout) -> bool {
    layout.size() >= MAPPED && layout.align() <= PAGE
}

/// A fresh private mapping of `size` bytes, zeroed, not resident until
/// written; null if the OS refuses.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address the OS picks.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// mimalloc with a pool of spare log buffers.
pub struct Allocator;

struct Pool {
    free: [usize; SPARE_BUFFERS],
    len: usize,
}

// A std mutex does not allocate; the critical sections cannot panic.
static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: [0; SPARE_BUFFERS],
    len: 0,
});

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
    layout.size() == crate::store::sled::SEGMENT_SIZE && layout.align() == LOG_BUFFER_ALIGN
}

/// Whether a mapping can be resized in place of a copy.
const fn can_remap() -> bool {
    cfg!(target_os = "linux")
}

/// The mapping of `old` bytes at `ptr`, resized to `new` (moved if need be).
///
/// # Safety
/// `ptr` is a mapping of `old` bytes made by [`map`].
#[cfg(target_os = "linux")]
unsafe fn remap(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
    // SAFETY: as the caller promises.
    let p = unsafe { libc::mremap(ptr.cast(), old, new, libc::MREMAP_MAYMOVE) };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(not(target_os = "linux"))]
unsafe fn remap(_ptr: *mut u8, _old: usize, _new: usize) -> *mut u8 {
    unreachable!("can_remap() is false")
}

// SAFETY: a block's layout decides where it comes from and goes back to:
// a mapping of its own for [`is_mapped`] layouts (made by `map`, freed by
// `munmap`, resized by `mremap` or by a copy into a block of the other
// kind), mimalloc for every other; a pooled block is a mimalloc block, only
// handed out for the layout it was freed with, which `GlobalAlloc::alloc`
// allows to hold any bytes.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_log_buffer(layout) {
            LOG_BUFFERS.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut pool) = POOL.lock() {
                if pool.len > 0 {
                    pool.len -= 1;
                    return pool.free[pool.len] as *mut u8;
                }
            }
        }
        if is_mapped(layout) {
            return map(layout.size());
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
        if is_mapped(layout) {
            // SAFETY: `ptr` is a mapping of this size made by `map` (a
            // block of this layout never comes from mimalloc).
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout) {
            return map(layout.size());
        }
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` with the block's alignment is a valid layout,
        // as `GlobalAlloc::realloc` requires of its caller.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_mapped(layout), is_mapped(new_layout)) {
            // SAFETY: forwarded as received; a pooled block is a mimalloc
            // block.
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes.
            (true, true) if can_remap() => unsafe { remap(ptr, layout.size(), new_size) },
            // Across the threshold: a new block of the other kind.
            _ => {
                // SAFETY: a valid layout (above); the old block is freed
                // with its own layout once its bytes are copied.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_log_buffer_is_handed_out_again_and_others_are_not_pooled() {
        let a = Allocator;
        let log = Layout::from_size_align(crate::store::sled::SEGMENT_SIZE, LOG_BUFFER_ALIGN)
            .expect("a valid layout");
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
            let pooled = POOL.lock().expect("pool").len;
            assert_eq!(pooled, SPARE_BUFFERS);

            // Another layout never comes from the pool.
            let other = Layout::from_size_align(crate::store::sled::SEGMENT_SIZE, 8)
                .expect("a valid layout");
            let r = a.alloc(other);
            assert!(!r.is_null());
            assert_eq!(POOL.lock().expect("pool").len, pooled);
            a.dealloc(r, other);
        }
    }

    /// How many of the pages of `len` bytes at `p` are resident.
    fn resident_pages(p: *mut u8, len: usize) -> usize {
        let mut flags = vec![0u8; len.div_ceil(PAGE)];
        // SAFETY: `p` is page-aligned and maps `len` bytes; `flags` has a
        // byte per page.
        let r = unsafe { libc::mincore(p.cast(), len, flags.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        flags.iter().filter(|&&f| f & 1 == 1).count()
    }

    #[test]
    fn a_large_zeroed_block_takes_no_memory_until_written() {
        let a = Allocator;
        let size = 4 * MAPPED;
        let big = Layout::from_size_align(size, 8).expect("a valid layout");
        // SAFETY: each block is freed once, with the layout it has then.
        unsafe {
            let p = a.alloc_zeroed(big);
            assert!(!p.is_null());
            assert_eq!(p as usize % PAGE, 0, "a mapping of its own");
            assert_eq!(resident_pages(p, size), 0, "nothing resident yet");
            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
            p.add(PAGE * 3).write(5);
            assert!(resident_pages(p, size) >= 1);

            // Grown in place or moved, the bytes stay; shrunk below the
            // threshold, it becomes a mimalloc block with them.
            let grown = a.realloc(p, big, 2 * size);
            assert_eq!(*grown.add(PAGE * 3), 5);
            let big2 = Layout::from_size_align(2 * size, 8).expect("a valid layout");
            let small = a.realloc(grown, big2, PAGE * 4);
            assert_eq!(*small.add(PAGE * 3), 5);
            let small_layout = Layout::from_size_align(PAGE * 4, 8).expect("a valid layout");
            let back = a.realloc(small, small_layout, size);
            assert_eq!(*back.add(PAGE * 3), 5);
            assert_eq!(back as usize % PAGE, 0);
            a.dealloc(back, big);

            // Below the threshold, or aligned like a log buffer: mimalloc.
            let below = Layout::from_size_align(MAPPED - 8, 8).expect("a valid layout");
            let q = a.alloc(below);
            assert!(!q.is_null());
            a.dealloc(q, below);
        }
    }
}
