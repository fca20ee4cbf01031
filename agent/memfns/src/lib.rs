//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp` for the static musl build.
//!
//! musl's x86_64 `memcpy` copies with `movsb`/`rep movsq`, whose start-up costs tens of cycles,
//! and its `memcmp` compares a byte at a time. sonde makes many short copies and comparisons
//! (names, tag keys and values of every metric), so with musl's versions the static binary
//! spent far more CPU per metric than the glibc build. These use unaligned 8- and 16-byte
//! (SSE2, the x86_64 baseline) loads and stores, and `rep movsb`/`rep stosb` only for large
//! sizes, where it is fast on every x86_64 since 2012.
//!
//! The crate is `no_builtins`, so the compiler never turns these loops back into calls to the
//! functions they define. The C symbols are exported only on x86_64 musl (where they take the
//! place of libc.a's, which are then not linked); elsewhere the functions are plain Rust, so
//! the tests compare them with the standard library's on any build.
#![no_std]
#![no_builtins]

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::{compare, copy_backward, copy_forward, fill};

/// The C symbols. `memmove` must be defined too: musl's `memmove.o` calls into its
/// `memcpy.o`, which would then be linked twice.
#[cfg(all(target_arch = "x86_64", target_env = "musl"))]
mod symbols {
    use super::*;

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
        unsafe { copy_forward(d, s, n) };
        d
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
        // Copying forward is right unless the destination starts inside the source.
        if (d as usize).wrapping_sub(s as usize) >= n {
            unsafe { copy_forward(d, s, n) };
        } else {
            unsafe { copy_backward(d, s, n) };
        }
        d
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8 {
        unsafe { fill(d, c as u8, n) };
        d
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        unsafe { compare(a, b, n) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        unsafe { compare(a, b, n) }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests;
