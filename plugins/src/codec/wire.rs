//! Byte writing shared by the binary encoders (the buffer's records, remote write) and
//! `model::str_from`: varints and the many short copies of names, keys and values, done in a
//! few fixed-size moves rather than a `memcpy` call each; and the hash both encoders find
//! their tag sets and labels by.

/// Appends `v` as a protobuf (LEB128) varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    // Room for the longest varint is made once; what is not used is cut off again.
    let at = out.len();
    out.extend_from_slice(&[0u8; 10]);
    let dst = &mut out[at..at + 10];
    let mut i = 0;
    while v >= 0x80 {
        dst[i] = v as u8 | 0x80;
        v >>= 7;
        i += 1;
    }
    dst[i] = v as u8;
    out.truncate(at + i + 1);
}

/// `out.extend_from_slice(src)`.
#[inline(always)]
pub fn extend_short(out: &mut Vec<u8>, src: &[u8]) {
    let n = src.len();
    if n > 32 {
        out.extend_from_slice(src);
        return;
    }
    let at = out.len();
    out.extend_from_slice(&[0u8; 32]);
    copy_short(&mut out[at..at + 32], src);
    out.truncate(at + n);
}

/// A fast hash of short byte strings (FxHash-style, 8 bytes at a time): remote write's
/// encoded labels, the record writer's tag sets.
#[inline]
pub fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = b.len() as u64;
    let (chunks, rest) = b.as_chunks::<8>();
    for c in chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(*c)).wrapping_mul(K);
    }
    // The tail in registers (`memcpy` into a zeroed word stalled on store forwarding).
    h = (h.rotate_left(5) ^ load_le(rest)).wrapping_mul(K);
    // The table uses the low bits: fold the well-mixed high bits down.
    h ^ (h >> 29)
}

/// `src` (at most 8 bytes) as a little-endian integer, zero above its length: one or two
/// loads, never past the end of `src`.
#[inline(always)]
pub fn load_le(src: &[u8]) -> u64 {
    let n = src.len();
    debug_assert!(n <= 8);
    match n {
        0 => 0,
        1..4 => {
            // The first, middle and last bytes cover every length up to three.
            src[0] as u64
                | (src[n / 2] as u64) << (n / 2 * 8)
                | (src[n - 1] as u64) << ((n - 1) * 8)
        }
        4..8 => {
            // Two overlapping 4-byte loads; the overlap holds the same bytes in both.
            let lo = u32::from_le_bytes(src[..4].try_into().unwrap()) as u64;
            let hi = u32::from_le_bytes(src[n - 4..].try_into().unwrap()) as u64;
            lo | hi << ((n - 4) * 8)
        }
        _ => u64::from_le_bytes(src[..8].try_into().unwrap()),
    }
}

/// Copies `src` (at most 32 bytes) to the start of `dst` with overlapping fixed-size moves.
#[inline(always)]
pub fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    debug_assert!(n <= 32);
    match n {
        0 => {}
        1..4 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..8 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..n].copy_from_slice(&src[n - 4..]);
        }
        8..16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..n].copy_from_slice(&src[n - 8..]);
        }
        _ => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..n].copy_from_slice(&src[n - 16..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_plain_loop() {
        let mut values = vec![0, 1, 0x7f, 0x80, 0x3fff, 0x4000, u64::MAX, u64::MAX >> 1];
        values.extend((0..64).map(|s| 1u64 << s));
        for v in values {
            let mut want = vec![9];
            let mut x = v;
            while x >= 0x80 {
                want.push(x as u8 | 0x80);
                x >>= 7;
            }
            want.push(x as u8);
            let mut got = vec![9];
            put_varint(&mut got, v);
            assert_eq!(got, want, "{v:#x}");
        }
    }

    #[test]
    fn loads_of_every_length() {
        let src: Vec<u8> = (0x11..=0x18).collect();
        for n in 0..=8 {
            let mut want = [0u8; 8];
            want[..n].copy_from_slice(&src[..n]);
            assert_eq!(load_le(&src[..n]), u64::from_le_bytes(want), "{n}");
        }
    }

    #[test]
    fn short_copies_of_every_length() {
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut out = vec![0xee; 3];
            extend_short(&mut out, &src[..n]);
            assert_eq!(&out[..3], &[0xee; 3]);
            assert_eq!(&out[3..], &src[..n], "{n}");
        }
    }
}
