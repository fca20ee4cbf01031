//! What the probe inputs (http_response, net_response, dns_query, x509_cert) share: running
//! one input's probes concurrently with a bound, and small helpers for their results.

use std::future::Future;

use futures_util::StreamExt;

/// How many probes of one input run at once. Each probe is bounded by its own timeout, so a
/// gather of N targets takes about `ceil(N / MAX_CONCURRENT_PROBES)` timeouts at worst.
pub const MAX_CONCURRENT_PROBES: usize = 256;

/// Runs `probe` on every item, at most `limit` at a time, on the calling task (no spawning:
/// a probe that times out is dropped with everything it holds). Results keep the item order.
pub async fn run_bounded<I, F, Fut, T>(items: I, limit: usize, probe: F) -> Vec<T>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = T>,
{
    futures_util::stream::iter(items)
        .map(probe)
        .buffered(limit.max(1))
        .collect()
        .await
}

/// Standard base64 (with padding), for `Authorization: Basic`.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[tokio::test]
    async fn run_bounded_keeps_order_and_bound() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = run_bounded(0..20u64, 4, |i| {
            let (now, peak) = (&now, &peak);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5 + (20 - i))).await;
                now.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }
}
