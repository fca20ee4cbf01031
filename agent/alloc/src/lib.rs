//! The static build's global allocator: mimalloc (musl's own allocator is slow under many
//! small, concurrent allocations), called the way it is fastest.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`. In mimalloc 3 that
//! takes a slow path whenever the page of the size class has no free block ready, and there,
//! for a size that is not a power of two, it over-allocates by `align - 1` bytes: the block
//! comes from the next size class, so the page of the asked size is never refilled and every
//! later allocation of that size takes the slow path again. A `Vec` of two fields (112 bytes)
//! is such a size: half of the allocations of a line-protocol parse went that way, at about
//! 170 instructions each instead of about 20. Every mimalloc block is aligned to at least a
//! word, so for alignments up to that the plain calls are used (as mimalloc's own
//! `mi_realloc_aligned` does); larger alignments still go through the crate.
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment of every block mimalloc hands out.
const WORD: usize = std::mem::size_of::<usize>();

unsafe extern "C" {
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_zalloc(size: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, newsize: usize) -> *mut c_void;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// mimalloc as the global allocator: `#[global_allocator] static A: MiMalloc = MiMalloc;`.
pub struct MiMalloc;

// SAFETY: each call is mimalloc's for the same layout; blocks are freed with `mi_free` (the
// crate's `dealloc`) whichever call made them.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: mi_malloc takes any size.
            unsafe { mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: mi_zalloc takes any size.
            unsafe { mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from mimalloc (this allocator).
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: ptr came from mimalloc; mi_realloc keeps the first bytes and word alignment.
            unsafe { mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

/// Sets mimalloc's options for sonde; call once, first thing in `main`.
///
/// mimalloc 3 gives freed memory back to the OS a second after it is freed (its
/// `purge_delay`; 2.x waited 10 ms), so under a burst of writes a second's worth of freed
/// batches stays resident: about 4 MB more peak RSS in the remote-write bench. 10 ms costs no
/// measurable CPU there. `MIMALLOC_PURGE_DELAY` in the environment still wins.
pub fn configure() {
    // The index of `mi_option_purge_delay` in mimalloc.h; mimalloc keeps deprecated entries
    // in that enum so the numbers never move.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's global options; any value is valid for this one.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
    }
}

#[cfg(test)]
mod tests;
