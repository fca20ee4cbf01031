//! The memory storage of an output buffer: records in a queue.

use std::collections::VecDeque;

use sonde_plugins::codec::record;

use super::Record;

/// Per-record cost beyond its bytes: the queue slot and the shared allocation's header.
const RECORD_OVERHEAD: u64 = 48;

#[derive(Default)]
pub struct MemoryStore {
    records: VecDeque<Record>,
    metrics: u64,
    bytes: u64,
    /// Records at the front that are out for a write.
    leased: usize,
}

impl MemoryStore {
    pub fn metrics(&self) -> u64 {
        self.metrics
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn cost(rec: &Record) -> u64 {
        rec.data.len() as u64 + RECORD_OVERHEAD
    }

    pub fn append(&mut self, rec: Record) {
        self.metrics += u64::from(rec.count);
        self.bytes += Self::cost(&rec);
        self.records.push_back(rec);
    }

    /// The records after the leased ones, oldest first, up to `max` metrics (at least one
    /// record when there is one); they become leased.
    pub fn lease(&mut self, max: usize) -> Vec<Record> {
        let mut n = 0usize;
        let mut out = Vec::new();
        for rec in self.records.iter().skip(self.leased) {
            if !out.is_empty() && n + rec.count as usize > max {
                break;
            }
            n += rec.count as usize;
            out.push(rec.clone());
        }
        self.leased += out.len();
        out
    }

    /// The leased records were written: they go.
    pub fn ack(&mut self) {
        for rec in self.records.drain(..self.leased) {
            self.metrics -= u64::from(rec.count);
            self.bytes -= Self::cost(&rec);
        }
        self.leased = 0;
    }

    pub fn release(&mut self) {
        self.leased = 0;
    }

    /// Drops up to `at_most` of the oldest metrics that are not leased: the oldest record, or
    /// its oldest part when it holds more. Returns how many went.
    pub fn drop_oldest(&mut self, at_most: u64) -> Option<u64> {
        let rec = self.records.remove(self.leased)?;
        self.metrics -= u64::from(rec.count);
        self.bytes -= Self::cost(&rec);
        if u64::from(rec.count) <= at_most {
            return Some(u64::from(rec.count));
        }
        // Keep the newer part of the record (an overflow by a few metrics must not cost a
        // whole batch).
        let mut metrics = Vec::with_capacity(rec.count as usize);
        if record::decode(&rec.data, &mut metrics).is_err() {
            return Some(u64::from(rec.count));
        }
        let kept = &metrics[at_most as usize..];
        let mut buf = Vec::new();
        record::encode_compressed(kept, &mut buf, &mut Vec::new());
        let rest = Record {
            data: buf.into(),
            count: kept.len() as u32,
        };
        self.metrics += u64::from(rest.count);
        self.bytes += Self::cost(&rest);
        self.records.insert(self.leased, rest);
        Some(at_most)
    }

    pub fn take_all(&mut self) -> Vec<Record> {
        self.metrics = 0;
        self.bytes = 0;
        self.leased = 0;
        self.records.drain(..).collect()
    }
}
