//! Every size up to a few blocks past each threshold, at every alignment and overlap, against
//! a byte-at-a-time reference.

extern crate std;
use super::*;
use proptest::prelude::*;
use std::vec::Vec;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const SIZES: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 95, 96, 97, 127, 128,
    129, 255, 256, 1000, 2047, 2048, 2049, 4099,
];

#[test]
fn copy_forward_matches_the_reference_at_every_size_and_alignment() {
    for &n in SIZES {
        for off in 0..8 {
            let src = pattern(n + 16, 7);
            let mut dst = pattern(n + 16, 99);
            let mut want = dst.clone();
            want[off..off + n].copy_from_slice(&src[3..3 + n]);
            unsafe { copy_forward(dst.as_mut_ptr().add(off), src.as_ptr().add(3), n) };
            assert_eq!(dst, want, "n={n} off={off}");
        }
    }
}

/// `memmove(buf + to, buf + from, n)` as the exported symbol does it, checked against
/// `copy_within`.
fn memmove_matches(len: usize, n: usize, from: usize, to: usize) -> bool {
    let mut buf = pattern(len, 5);
    let mut want = buf.clone();
    want.copy_within(from..from + n, to);
    unsafe {
        let (d, s) = (buf.as_mut_ptr().add(to), buf.as_ptr().add(from));
        if (d as usize).wrapping_sub(s as usize) >= n {
            copy_forward(d, s, n);
        } else {
            copy_backward(d, s, n);
        }
    }
    buf == want
}

/// memmove semantics within one buffer, for every distance in both directions.
fn overlapping(n: usize, from: usize, to: usize) {
    assert!(
        memmove_matches(n + 80, n, from, to),
        "n={n} from={from} to={to}"
    );
}

#[test]
fn overlapping_copies_match_copy_within() {
    for &n in SIZES {
        for delta in 0..40 {
            overlapping(n, 40, 40 + delta);
            overlapping(n, 40, 40 - delta);
        }
    }
}

#[test]
fn fill_matches_the_reference() {
    for &n in SIZES {
        for off in 0..8 {
            let mut buf = pattern(n + 16, 1);
            let mut want = buf.clone();
            want[off..off + n].fill(0xa5);
            unsafe { fill(buf.as_mut_ptr().add(off), 0xa5, n) };
            assert_eq!(buf, want, "n={n} off={off}");
        }
    }
}

fn reference_cmp(a: &[u8], b: &[u8]) -> i32 {
    match a.cmp(b) {
        core::cmp::Ordering::Less => -1,
        core::cmp::Ordering::Equal => 0,
        core::cmp::Ordering::Greater => 1,
    }
}

#[test]
fn compare_finds_the_first_difference_at_every_position() {
    for &n in SIZES {
        let a = pattern(n, 3);
        assert_eq!(unsafe { compare(a.as_ptr(), a.as_ptr(), n) }, 0);
        for at in 0..n {
            for delta in [1u8, 0x80, 0xff] {
                let mut b = a.clone();
                b[at] = b[at].wrapping_add(delta);
                let got = unsafe { compare(a.as_ptr(), b.as_ptr(), n) };
                assert_eq!(
                    got.signum(),
                    reference_cmp(&a, &b),
                    "n={n} at={at} delta={delta}"
                );
            }
        }
    }
}

#[test]
fn compare_follows_the_first_of_two_differences() {
    // The second difference has the opposite sign: a tail block or word that overlaps the
    // compared part must not let it decide.
    for n in 1..=48 {
        let a = pattern(n, 5);
        for first in 0..n {
            for second in first + 1..n {
                let mut b = a.clone();
                b[first] = b[first].wrapping_add(1);
                b[second] = b[second].wrapping_sub(1);
                let got = unsafe { compare(a.as_ptr(), b.as_ptr(), n) };
                assert_eq!(
                    got.signum(),
                    reference_cmp(&a, &b),
                    "n={n} {first} {second}"
                );
            }
        }
    }
}

proptest! {
    #[test]
    fn compare_agrees_with_slice_ordering(a in proptest::collection::vec(any::<u8>(), 0..100), b in proptest::collection::vec(any::<u8>(), 0..100)) {
        let n = a.len().min(b.len());
        let got = unsafe { compare(a.as_ptr(), b.as_ptr(), n) };
        prop_assert_eq!(got.signum(), reference_cmp(&a[..n], &b[..n]));
    }

    #[test]
    fn memmove_agrees_with_copy_within(n in 0usize..300, from in 0usize..300, to in 0usize..300) {
        prop_assert!(memmove_matches(700, n, from, to));
    }
}
