//! An output's buffer: records (encoded metric batches, [`sonde_plugins::codec::record`]) in
//! one of two storages, memory or disk, behind one interface, so both behave the same and are
//! tested by the same suite. Bounded by metric count (memory) and by bytes; when full it drops
//! the oldest records, or refuses new ones from a source that can push back.
//!
//! A write leases records from the front; they leave the buffer only when the write is
//! acknowledged, so a failed or abandoned write loses nothing.

mod disk;
mod memory;

use std::io;

use sonde_plugins::Metric;
use sonde_plugins::codec::record;
use sonde_plugins::selfstat::Stat;

use disk::DiskStore;
pub use disk::{DiskConfig, Recovery, SyncPolicy};
use memory::MemoryStore;

pub use sonde_plugins::codec::record::Record;

/// A memory buffer keeps records plain while it holds fewer bytes than this (or than a
/// quarter of its byte limit), and compresses the ones appended behind them: records that
/// leave with the next few writes are not worth compressing, a backlog is. Compressing and
/// decompressing a record cost about a tenth of the listener → remote-write path's CPU per
/// metric and save about half its bytes: 4 MiB held plain take 2 MiB more than compressed
/// (and 2% fewer instructions per metric on that path than 1 MiB in a 600,000-line burst).
const PLAIN_BYTES: u64 = 4 << 20;

/// Which bound a drop or a refusal hit, for the warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Count(usize),
    Bytes(u64),
    Disk(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "metric_buffer_limit = {n} metrics"),
            Limit::Bytes(n) => write!(f, "metric_buffer_limit_bytes = {n} bytes"),
            Limit::Disk(n) => write!(f, "buffer_disk_limit = {n} bytes"),
        }
    }
}

enum Store {
    Memory(MemoryStore),
    Disk(DiskStore),
}

pub struct Buffer {
    store: Store,
    /// Metric bound (memory storage only: the disk storage is bounded by bytes).
    limit: usize,
    limit_bytes: u64,
    leased: usize,
    /// Counts metrics dropped because the buffer was full.
    dropped: Stat,
    /// Mirrors the metric count, for `internal_write.buffer_size`.
    size: Stat,
    /// Metrics dropped since the last overflow warning, so the warning can be rate-limited,
    /// and the bound that made them go.
    pub unreported_drops: u64,
    pub last_limit: Option<Limit>,
}

impl Buffer {
    pub fn memory(limit: usize, limit_bytes: u64, dropped: Stat, size: Stat) -> Self {
        Buffer {
            store: Store::Memory(MemoryStore::default()),
            limit: limit.max(1),
            limit_bytes: limit_bytes.max(1),
            leased: 0,
            dropped,
            size,
            unreported_drops: 0,
            last_limit: None,
        }
    }

    /// Opens the disk storage in `cfg.dir`, with what an earlier process left there.
    pub fn disk(cfg: &DiskConfig, dropped: Stat, size: Stat) -> io::Result<(Self, Recovery)> {
        let (store, recovery) = DiskStore::open(cfg)?;
        let b = Buffer {
            store: Store::Disk(store),
            limit: usize::MAX,
            limit_bytes: cfg.limit_bytes.max(1),
            leased: 0,
            dropped,
            size,
            unreported_drops: 0,
            last_limit: None,
        };
        b.size.set(b.len() as i64);
        Ok((b, recovery))
    }

    /// The disk directory, when the storage is the disk.
    pub fn disk_dir(&self) -> Option<&std::path::Path> {
        match &self.store {
            Store::Disk(d) => Some(d.dir()),
            Store::Memory(_) => None,
        }
    }

    /// Takes the new configuration's bounds, sync policy and counters (a reload keeping
    /// this buffer).
    pub fn reconfigure(
        &mut self,
        limit: usize,
        limit_bytes: u64,
        sync: Option<SyncPolicy>,
        dropped: Stat,
        size: Stat,
    ) {
        match &mut self.store {
            Store::Memory(_) => self.limit = limit.max(1),
            Store::Disk(d) => {
                if let Some(s) = sync {
                    d.set_sync_policy(s);
                }
            }
        }
        self.limit_bytes = limit_bytes.max(1);
        self.dropped = dropped;
        self.size = size;
        self.size.set(self.len() as i64);
    }

    /// Metrics buffered, including those out for a write.
    pub fn len(&self) -> usize {
        (match &self.store {
            Store::Memory(m) => m.metrics(),
            Store::Disk(d) => d.metrics(),
        }) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Metrics not out for a write.
    pub fn available(&self) -> usize {
        self.len() - self.leased
    }

    /// Bytes held: encoded records (memory) or segment files (disk).
    pub fn bytes(&self) -> u64 {
        match &self.store {
            Store::Memory(m) => m.bytes(),
            Store::Disk(d) => d.bytes(),
        }
    }

    /// The bytes `records` count for in this buffer's bounds.
    pub fn cost(&self, records: &[Record]) -> u64 {
        records
            .iter()
            .map(|r| match &self.store {
                Store::Memory(_) => MemoryStore::cost(r),
                Store::Disk(_) => DiskStore::cost(r),
            })
            .sum()
    }

    /// The bound that appending `records`, and then `ahead` more metrics of about their size
    /// each, would exceed, if any. Room for more than half the buffer is not asked for: a
    /// write that large needs half the buffer free (and room for `records` themselves), so
    /// that it is not refused for good while other sources keep the buffer from emptying.
    pub fn would_overflow(&self, records: &[Record], ahead: usize) -> Option<Limit> {
        let n: usize = records.iter().map(|r| r.count as usize).sum();
        let cost = self.cost(records);
        let count = n.saturating_add(ahead).min(self.limit / 2).max(n);
        let ahead_bytes = match n {
            0 => 0,
            n => (cost as u128 * ahead as u128 / n as u128).min(u64::MAX as u128) as u64,
        };
        let bytes = self.bytes()
            + cost
                .saturating_add(ahead_bytes)
                .min(self.limit_bytes / 2)
                .max(cost);
        match &self.store {
            Store::Memory(_) if self.len() + count > self.limit => Some(Limit::Count(self.limit)),
            Store::Memory(_) if bytes > self.limit_bytes => Some(Limit::Bytes(self.limit_bytes)),
            Store::Disk(_) if bytes > self.limit_bytes => Some(Limit::Disk(self.limit_bytes)),
            _ => None,
        }
    }

    /// Whether `rec` would be compressed if pushed after records of `before` bytes (their
    /// [`Buffer::cost`]): on the disk, and in memory behind [`PLAIN_BYTES`] (or a quarter of
    /// the byte limit) of others. A caller that compresses before [`Buffer::push`] keeps that
    /// work out of whatever lock guards the buffer (push leaves compressed records as they
    /// are).
    pub fn compresses(&self, rec: &Record, before: u64) -> bool {
        match &self.store {
            Store::Memory(m) => {
                m.bytes() + before + MemoryStore::cost(rec) > PLAIN_BYTES.min(self.limit_bytes / 4)
            }
            Store::Disk(_) => true,
        }
    }

    /// Appends records at the back, then drops from the front (oldest first, records out for
    /// a write last) whatever exceeds the bounds. An error means the storage could not take
    /// them (a disk error): nothing of them was kept.
    pub fn push(&mut self, records: impl IntoIterator<Item = Record>) -> io::Result<()> {
        let mut result = Ok(());
        let mut scratch = Vec::new();
        for rec in records {
            let compress = self.compresses(&rec, 0);
            match &mut self.store {
                Store::Memory(m) if !compress => m.append(rec),
                Store::Memory(m) => m.append(rec.compressed(&mut scratch)),
                Store::Disk(d) => {
                    if let Err(e) = d.append(&rec.compressed(&mut scratch)) {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        self.enforce_limits();
        result
    }

    /// Leases up to `max` metrics from the front for a write. Nothing leaves the buffer until
    /// [`Buffer::ack`]; [`Buffer::release`] gives them back.
    pub fn lease(&mut self, max: usize) -> io::Result<Vec<Metric>> {
        let mut metrics = Vec::new();
        self.lease_into(max, &mut metrics, &mut Vec::new())?;
        Ok(metrics)
    }

    /// As [`Buffer::lease`], appending to `out` and building the metrics in `spare`'s (see
    /// [`record::decode_reusing`]), so a writer that hands each batch back to `spare` does
    /// not allocate per metric.
    pub fn lease_into(
        &mut self,
        max: usize,
        out: &mut Vec<Metric>,
        spare: &mut Vec<Metric>,
    ) -> io::Result<()> {
        let records = self.lease_records(max)?;
        out.reserve(self.leased);
        for r in &records {
            // Records are checked when read from the disk, and memory ones were encoded here:
            // a failure is a bug, and a record we cannot decode cannot be sent either.
            if let Err(e) = record::decode_reusing(&r.data, out, spare) {
                tracing::error!(error = %e, metrics = r.count, "dropping an undecodable buffer record");
                self.dropped.add(i64::from(r.count));
            }
        }
        Ok(())
    }

    /// As [`Buffer::lease`], the records themselves: for an output that reads them (see
    /// `Output::write_records`).
    pub fn lease_records(&mut self, max: usize) -> io::Result<Vec<Record>> {
        debug_assert_eq!(self.leased, 0, "one write at a time");
        let records = match &mut self.store {
            Store::Memory(m) => m.lease(max),
            Store::Disk(d) => d.lease(max)?,
        };
        self.leased = records.iter().map(|r| r.count as usize).sum();
        Ok(records)
    }

    /// The leased metrics were delivered (or rejected for good): they leave the buffer.
    pub fn ack(&mut self) -> io::Result<()> {
        self.leased = 0;
        let r = match &mut self.store {
            Store::Memory(m) => {
                m.ack();
                Ok(())
            }
            Store::Disk(d) => d.ack(),
        };
        self.size.set(self.len() as i64);
        r
    }

    /// The write failed: the leased metrics are the oldest again. If the bounds are exceeded
    /// meanwhile, they are the first to go.
    pub fn release(&mut self) {
        self.leased = 0;
        match &mut self.store {
            Store::Memory(m) => m.release(),
            Store::Disk(d) => d.release(),
        }
        self.enforce_limits();
    }

    /// Forces appended records to the disk (disk storage; a no-op in memory).
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.store {
            Store::Disk(d) => d.sync(),
            Store::Memory(_) => Ok(()),
        }
    }

    /// What the periodic sync must fsync, taken under the lock and synced outside it so
    /// that appends do not wait for the disk.
    pub fn pending_sync(&mut self) -> io::Result<Option<(std::fs::File, std::fs::File)>> {
        match &mut self.store {
            Store::Disk(d) => d.pending_sync(),
            Store::Memory(_) => Ok(None),
        }
    }

    pub fn sync_policy(&self) -> Option<SyncPolicy> {
        match &self.store {
            Store::Disk(d) => Some(d.sync_policy()),
            Store::Memory(_) => None,
        }
    }

    /// Takes every record out (a reload that moves them to another storage).
    pub fn take_all(&mut self) -> io::Result<Vec<Record>> {
        self.leased = 0;
        let r = match &mut self.store {
            Store::Memory(m) => Ok(m.take_all()),
            Store::Disk(d) => d.take_all(),
        };
        self.size.set(self.len() as i64);
        r
    }

    fn enforce_limits(&mut self) {
        let mut dropped = 0u64;
        loop {
            let limit = match &self.store {
                Store::Memory(_) if self.len() > self.limit => Limit::Count(self.limit),
                Store::Memory(_) if self.bytes() > self.limit_bytes => {
                    Limit::Bytes(self.limit_bytes)
                }
                Store::Disk(_) if self.bytes() > self.limit_bytes => Limit::Disk(self.limit_bytes),
                _ => break,
            };
            let excess = match limit {
                Limit::Count(n) => (self.len() - n) as u64,
                _ => u64::MAX,
            };
            let gone = match &mut self.store {
                Store::Memory(m) => m.drop_oldest(excess),
                Store::Disk(d) => match d.drop_oldest() {
                    Ok(g) => {
                        // The lease, if any, was in the dropped segment.
                        self.leased = 0;
                        g
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "disk buffer: cannot drop the oldest segment");
                        None
                    }
                },
            };
            match gone {
                Some(n) => {
                    dropped += n;
                    self.last_limit = Some(limit);
                }
                // Only records out for a write are left: they go if that write fails.
                None => break,
            }
        }
        if dropped > 0 {
            self.dropped.add(dropped as i64);
            self.unreported_drops += dropped;
        }
        self.size.set(self.len() as i64);
    }
}

#[cfg(test)]
mod tests;
