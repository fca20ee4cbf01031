//! The SSE2 implementations. Every function reads all the bytes of a block before it writes
//! any of them, which is what lets `copy_forward` and `copy_backward` serve `memmove`.

use core::arch::x86_64::{
    __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8, _mm_storeu_si128,
};
use core::ptr::{read_unaligned as rd, write_unaligned as wr};

/// From this size on, `rep movsb` / `rep stosb` beat the SSE loops.
const REP_THRESHOLD: usize = 2048;

#[inline(always)]
unsafe fn ld(p: *const u8) -> __m128i {
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

#[inline(always)]
unsafe fn st(p: *mut u8, v: __m128i) {
    unsafe { _mm_storeu_si128(p as *mut __m128i, v) }
}

/// Copies `n <= 32` bytes: the first and the last word of the range, overlapping in the
/// middle, all loaded before anything is stored.
#[inline(always)]
unsafe fn copy_upto_32(d: *mut u8, s: *const u8, n: usize) {
    unsafe {
        if n >= 16 {
            let (a, b) = (ld(s), ld(s.add(n - 16)));
            st(d, a);
            st(d.add(n - 16), b);
        } else if n >= 8 {
            let (a, b) = (rd(s as *const u64), rd(s.add(n - 8) as *const u64));
            wr(d as *mut u64, a);
            wr(d.add(n - 8) as *mut u64, b);
        } else if n >= 4 {
            let (a, b) = (rd(s as *const u32), rd(s.add(n - 4) as *const u32));
            wr(d as *mut u32, a);
            wr(d.add(n - 4) as *mut u32, b);
        } else if n >= 2 {
            let (a, b) = (rd(s as *const u16), rd(s.add(n - 2) as *const u16));
            wr(d as *mut u16, a);
            wr(d.add(n - 2) as *mut u16, b);
        } else if n == 1 {
            *d = *s;
        }
    }
}

/// Copies `n` bytes from `s` to `d` front to back. Overlap is allowed when `d` is below `s`
/// or the ranges are disjoint (`memcpy`, and `memmove` in that case).
///
/// # Safety
/// `s` readable and `d` writable for `n` bytes.
#[inline]
pub unsafe fn copy_forward(d: *mut u8, s: *const u8, n: usize) {
    unsafe {
        if n <= 32 {
            return copy_upto_32(d, s, n);
        }
        if n >= REP_THRESHOLD && (d as usize).wrapping_sub(s as usize) >= n {
            // Disjoint, or the destination below the source: forward `rep movsb` is exact.
            core::arch::asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") d => _,
                inout("rsi") s => _,
                options(nostack, preserves_flags)
            );
            return;
        }
        // The last 32 bytes are loaded first: the loop may overwrite them when the ranges
        // overlap.
        let (t0, t1) = (ld(s.add(n - 32)), ld(s.add(n - 16)));
        let mut i = 0;
        while i + 32 < n {
            let (a, b) = (ld(s.add(i)), ld(s.add(i + 16)));
            st(d.add(i), a);
            st(d.add(i + 16), b);
            i += 32;
        }
        st(d.add(n - 32), t0);
        st(d.add(n - 16), t1);
    }
}

/// Copies `n` bytes from `s` to `d` back to front, for a destination that starts inside the
/// source (`memmove`).
///
/// # Safety
/// `s` readable and `d` writable for `n` bytes.
#[inline]
pub unsafe fn copy_backward(d: *mut u8, s: *const u8, n: usize) {
    unsafe {
        if n <= 32 {
            return copy_upto_32(d, s, n);
        }
        // The first 32 bytes are loaded first, for the same reason as in `copy_forward`.
        let (h0, h1) = (ld(s), ld(s.add(16)));
        let mut end = n;
        while end > 32 {
            let (a, b) = (ld(s.add(end - 32)), ld(s.add(end - 16)));
            st(d.add(end - 32), a);
            st(d.add(end - 16), b);
            end -= 32;
        }
        st(d, h0);
        st(d.add(16), h1);
    }
}

/// Sets `n` bytes at `d` to `c`.
///
/// # Safety
/// `d` writable for `n` bytes.
#[inline]
pub unsafe fn fill(d: *mut u8, c: u8, n: usize) {
    unsafe {
        if n >= REP_THRESHOLD {
            core::arch::asm!(
                "rep stosb",
                inout("rcx") n => _,
                inout("rdi") d => _,
                in("al") c,
                options(nostack, preserves_flags)
            );
            return;
        }
        let w = u64::from(c) * 0x0101_0101_0101_0101;
        if n <= 16 {
            if n >= 8 {
                wr(d as *mut u64, w);
                wr(d.add(n - 8) as *mut u64, w);
            } else if n >= 4 {
                wr(d as *mut u32, w as u32);
                wr(d.add(n - 4) as *mut u32, w as u32);
            } else if n >= 2 {
                wr(d as *mut u16, w as u16);
                wr(d.add(n - 2) as *mut u16, w as u16);
            } else if n == 1 {
                *d = c;
            }
            return;
        }
        let v = _mm_set1_epi8(c as i8);
        let mut i = 0;
        while i + 16 < n {
            st(d.add(i), v);
            i += 16;
        }
        st(d.add(n - 16), v);
    }
}

/// Compares `n` bytes as unsigned bytes: negative, zero or positive as `memcmp`.
///
/// # Safety
/// `a` and `b` readable for `n` bytes.
#[inline]
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    // The tail is one more block (or word) ending at `n`, overlapping what was compared
    // before it: those bytes were equal, so its first difference is the range's first. Most
    // comparisons are of names and tag sets a few dozen bytes long, where a byte loop for the
    // tail cost more than the blocks.
    unsafe {
        if n >= 16 {
            let mut i = 0;
            while i + 16 <= n {
                if let Some(d) = block_diff(a, b, i) {
                    return d;
                }
                i += 16;
            }
            if i < n
                && let Some(d) = block_diff(a, b, n - 16)
            {
                return d;
            }
            return 0;
        }
        if n >= 8 {
            let (x, y) = (rd(a as *const u64), rd(b as *const u64));
            if x != y {
                return word_order(x.swap_bytes(), y.swap_bytes());
            }
            let (x, y) = (
                rd(a.add(n - 8) as *const u64),
                rd(b.add(n - 8) as *const u64),
            );
            return word_order(x.swap_bytes(), y.swap_bytes());
        }
        if n >= 4 {
            let (x, y) = (rd(a as *const u32), rd(b as *const u32));
            if x != y {
                return word_order(x.swap_bytes().into(), y.swap_bytes().into());
            }
            let (x, y) = (
                rd(a.add(n - 4) as *const u32),
                rd(b.add(n - 4) as *const u32),
            );
            return word_order(x.swap_bytes().into(), y.swap_bytes().into());
        }
        for i in 0..n {
            let (x, y) = (*a.add(i), *b.add(i));
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }
}

/// The order of the 16-byte blocks at `at`, when they differ: by their first differing byte.
#[inline(always)]
unsafe fn block_diff(a: *const u8, b: *const u8, at: usize) -> Option<i32> {
    unsafe {
        let eq = _mm_movemask_epi8(_mm_cmpeq_epi8(ld(a.add(at)), ld(b.add(at)))) as u32;
        if eq == 0xffff {
            return None;
        }
        let j = at + (!eq).trailing_zeros() as usize;
        Some(i32::from(*a.add(j)) - i32::from(*b.add(j)))
    }
}

/// The order of two big-endian words (so the first byte in memory is the most significant).
#[inline(always)]
fn word_order(x: u64, y: u64) -> i32 {
    (x > y) as i32 - (x < y) as i32
}
