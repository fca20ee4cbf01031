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

#[cfg(test)]
mod tests {
    use super::*;

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
