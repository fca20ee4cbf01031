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

    pub fn to_metric(&self, time: i64) -> Metric {
        let mut m = Metric::new(self.measurement, time);
        m.tags = self.tags.clone();
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
    let s = Arc::new(Stats {
        measurement,
        tags: t,
        fields: Mutex::new(Vec::new()),
    });
    let mut reg = REGISTRY.lock().unwrap();
    reg.retain(|w| w.strong_count() > 0);
    reg.push(Arc::downgrade(&s));
    s
}

/// Every live measurement as a metric stamped `time`.
pub fn snapshot(time: i64) -> Vec<Metric> {
    let reg = REGISTRY.lock().unwrap();
    reg.iter()
        .filter_map(Weak::upgrade)
        .map(|s| s.to_metric(time))
        .filter(|m| !m.fields.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_reported_while_alive() {
        let s = register("internal_test_selfstat", &[("b", "2"), ("a", "1")]);
        s.stat("count").add(3);
        s.stat("count").incr();
        let snap = snapshot(7);
        let m = snap
            .iter()
            .find(|m| m.name == "internal_test_selfstat")
            .unwrap();
        assert_eq!(m.tag("a"), Some("1"));
        assert_eq!(m.field("count"), Some(&crate::FieldValue::Int(4)));
        drop(s);
        assert!(
            !snapshot(7)
                .iter()
                .any(|m| m.name == "internal_test_selfstat")
        );
    }
}
