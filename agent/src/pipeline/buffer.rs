//! An output's buffer: bounded by metric count and by bytes; drops the oldest when full.

use std::collections::VecDeque;

use sonde_plugins::Metric;
use sonde_plugins::selfstat::Stat;

pub struct Buffer {
    queue: VecDeque<Metric>,
    bytes: u64,
    limit: usize,
    limit_bytes: u64,
    /// Counts metrics dropped because the buffer was full.
    dropped: Stat,
    /// Mirrors the queue length, for `internal_write.buffer_size`.
    size: Stat,
    /// Metrics dropped since the last overflow warning, so the warning can be rate-limited.
    pub unreported_drops: u64,
}

impl Buffer {
    pub fn new(limit: usize, limit_bytes: u64, dropped: Stat, size: Stat) -> Self {
        Buffer {
            queue: VecDeque::new(),
            bytes: 0,
            limit: limit.max(1),
            limit_bytes: limit_bytes.max(1),
            dropped,
            size,
            unreported_drops: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends metrics at the back, then drops from the front whatever exceeds the bounds.
    pub fn push(&mut self, metrics: impl IntoIterator<Item = Metric>) {
        for m in metrics {
            self.bytes += m.estimated_size() as u64;
            self.queue.push_back(m);
        }
        self.enforce_limits();
    }

    /// Takes up to `n` metrics from the front for a write.
    pub fn take(&mut self, n: usize) -> Vec<Metric> {
        let n = n.min(self.queue.len());
        let batch: Vec<Metric> = self.queue.drain(..n).collect();
        for m in &batch {
            self.bytes -= m.estimated_size() as u64;
        }
        self.size.set(self.queue.len() as i64);
        batch
    }

    /// Puts a batch whose write failed back at the front, in order. If new metrics arrived
    /// meanwhile and the bounds are exceeded, the oldest (the batch itself first) are dropped.
    pub fn put_back(&mut self, batch: Vec<Metric>) {
        for m in batch.into_iter().rev() {
            self.bytes += m.estimated_size() as u64;
            self.queue.push_front(m);
        }
        self.enforce_limits();
    }

    /// Takes everything (reload hands it to the new output).
    pub fn drain_all(&mut self) -> Vec<Metric> {
        self.bytes = 0;
        self.size.set(0);
        self.queue.drain(..).collect()
    }

    fn enforce_limits(&mut self) {
        let mut dropped = 0u64;
        while self.queue.len() > self.limit
            || (self.bytes > self.limit_bytes && self.queue.len() > 1)
        {
            let m = self.queue.pop_front().expect("non-empty");
            self.bytes -= m.estimated_size() as u64;
            dropped += 1;
        }
        if dropped > 0 {
            self.dropped.add(dropped as i64);
            self.unreported_drops += dropped;
        }
        self.size.set(self.queue.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: i64) -> Metric {
        Metric::new("m", i).with_field("v", i)
    }

    fn buffer(limit: usize, bytes: u64) -> (Buffer, Stat) {
        let dropped = Stat::default();
        (
            Buffer::new(limit, bytes, dropped.clone(), Stat::default()),
            dropped,
        )
    }

    #[test]
    fn drops_oldest_and_counts() {
        let (mut b, dropped) = buffer(3, u64::MAX);
        b.push((0..5).map(m));
        assert_eq!(b.len(), 3);
        assert_eq!(dropped.get(), 2);
        let batch = b.take(10);
        assert_eq!(
            batch.iter().map(|x| x.time).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn byte_bound_holds() {
        let one = m(0).estimated_size() as u64;
        let (mut b, dropped) = buffer(1000, one * 4);
        b.push((0..10).map(m));
        assert_eq!(b.len(), 4);
        assert_eq!(dropped.get(), 6);
        assert!(b.bytes() <= one * 4);
    }

    #[test]
    fn failed_batch_goes_back_in_order() {
        let (mut b, dropped) = buffer(5, u64::MAX);
        b.push((0..4).map(m));
        let batch = b.take(2);
        b.push((4..6).map(m));
        b.put_back(batch);
        // 6 metrics for a limit of 5: the oldest (0) goes.
        assert_eq!(dropped.get(), 1);
        let all = b.take(10);
        assert_eq!(
            all.iter().map(|x| x.time).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }
}
