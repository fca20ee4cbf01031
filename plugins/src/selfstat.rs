//! Self-metrics: counters and gauges the agent keeps per plugin, read by `inputs.internal`.
//!
//! A [`Stats`] is one measurement with fixed tags (e.g. `internal_write,output=http`). It
//! lives as long as the plugin that registered it: the registry keeps only weak references,
//! so a plugin removed by a reload stops being reported.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::model::{Metric, Str};

pub struct Stats {
    pub measurement: &'static str,
    /// Unique per registration: the `_id` tag of `inputs.internal`'s `per_instance` mode.
    pub id: u64,
    pub tags: Vec<(Str, Str)>,
    fields: Mutex<Vec<(&'static str, Arc<AtomicI64>)>>,
}

/// One field of a [`Stats`]: a shared atomic.
#[derive(Clone, Default)]
pub struct Stat(Arc<AtomicI64>);

impl Stat {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn incr(&self) {
        self.add(1);
    }
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Stats {
    /// The named field, created at zero the first time it is asked for.
    pub fn stat(&self, field: &'static str) -> Stat {
        let mut fields = self.fields.lock().unwrap();
        if let Some((_, a)) = fields.iter().find(|(f, _)| *f == field) {
            return Stat(a.clone());
        }
        let a = Arc::new(AtomicI64::new(0));
        fields.push((field, a.clone()));
        Stat(a)
    }

    pub fn to_metric(&self, time: i64, with_id: bool) -> Metric {
        let mut m = Metric::new(self.measurement, time);
        m.tags = self.tags.clone();
        if with_id {
            m.add_tag("_id", format!("{:08x}", self.id));
        }
        for (f, a) in self.fields.lock().unwrap().iter() {
            m.add_field(*f, a.load(Ordering::Relaxed));
        }
        m
    }
}

static REGISTRY: Mutex<Vec<Weak<Stats>>> = Mutex::new(Vec::new());

/// Registers a measurement with the given tags; tags are sorted here.
pub fn register(measurement: &'static str, tags: &[(&str, &str)]) -> Arc<Stats> {
    let mut t: Vec<(Str, Str)> = tags
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    t.sort();
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let s = Arc::new(Stats {
        measurement,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        tags: t,
        fields: Mutex::new(Vec::new()),
    });
    let mut reg = REGISTRY.lock().unwrap();
    reg.retain(|w| w.strong_count() > 0);
    reg.push(Arc::downgrade(&s));
    s
}

/// Every live measurement as a metric stamped `time`, tagged with its `_id` if `with_id`.
pub fn snapshot(time: i64, with_id: bool) -> Vec<Metric> {
    let reg = REGISTRY.lock().unwrap();
    reg.iter()
        .filter_map(Weak::upgrade)
        .map(|s| s.to_metric(time, with_id))
        .filter(|m| !m.fields.is_empty())
        .collect()
}

/// The allocator's heap figures under Telegraf's `internal_memstats` names. glibc's malloc
/// (the allocator of a gnu build) reports them through mallinfo2; the static musl build's
/// mimalloc keeps no such counters in release builds, so it reports none.
pub fn heap_stats() -> Vec<(&'static str, i64)> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let mi = unsafe { libc::mallinfo2() };
        let in_use = (mi.uordblks + mi.hblkhd) as i64;
        vec![
            ("alloc_bytes", in_use),
            ("heap_alloc_bytes", in_use),
            ("heap_in_use_bytes", in_use),
            ("heap_idle_bytes", mi.fordblks as i64),
        ]
    }
    #[cfg(not(target_env = "gnu"))]
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_reported_while_alive() {
        let s = register("internal_test_selfstat", &[("b", "2"), ("a", "1")]);
        s.stat("count").add(3);
        s.stat("count").incr();
        let snap = snapshot(7, false);
        let m = snap
            .iter()
            .find(|m| m.name == "internal_test_selfstat")
            .unwrap();
        assert_eq!(m.tag("a"), Some("1"));
        assert_eq!(m.field("count"), Some(&crate::FieldValue::Int(4)));
        drop(s);
        assert!(
            !snapshot(7, false)
                .iter()
                .any(|m| m.name == "internal_test_selfstat")
        );
    }
}
