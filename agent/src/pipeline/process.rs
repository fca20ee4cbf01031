//! The processor chain and the aggregator windows between inputs and outputs.

use sonde_plugins::plugin::{Aggregator, Processor};
use sonde_plugins::{Metric, Str};
use tracing::debug;

use super::Rename;
use crate::config::{AggregatorConfig, ProcessorConfig};
use crate::filter::Filter;

pub struct RunningProcessor {
    filter: Filter,
    plugin: Box<dyn Processor>,
}

impl RunningProcessor {
    pub fn new(cfg: ProcessorConfig) -> Self {
        RunningProcessor {
            filter: cfg.filter,
            plugin: cfg.plugin,
        }
    }

    /// Metrics the filter does not select pass by unchanged.
    fn apply(&mut self, batch: Vec<Metric>) -> Vec<Metric> {
        if self.filter.is_empty() {
            return self.plugin.apply(batch);
        }
        let (selected, mut passed): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|m| self.filter.selects(m));
        if selected.is_empty() {
            return passed;
        }
        let mut out = self.plugin.apply(selected);
        out.append(&mut passed);
        out
    }
}

/// Runs the chain in order.
pub fn run_processors(chain: &mut [RunningProcessor], mut batch: Vec<Metric>) -> Vec<Metric> {
    for p in chain {
        if batch.is_empty() {
            break;
        }
        batch = p.apply(batch);
    }
    batch
}

/// An aggregator and its current window `[start, end)`.
pub struct RunningAggregator {
    pub id: String,
    period_ns: i64,
    delay_ns: i64,
    grace_ns: i64,
    pub drop_original: bool,
    rename: Rename,
    tags: Vec<(Str, Str)>,
    filter: Filter,
    plugin: Box<dyn Aggregator>,
    start: i64,
    end: i64,
}

impl RunningAggregator {
    pub fn new(cfg: AggregatorConfig, now: i64) -> Self {
        let period_ns = (cfg.period.as_nanos() as i64).max(1);
        let start = now - now.rem_euclid(period_ns);
        RunningAggregator {
            id: match &cfg.alias {
                Some(a) => format!("aggregators.{}::{}", cfg.name, a),
                None => format!("aggregators.{}", cfg.name),
            },
            period_ns,
            delay_ns: cfg.delay.as_nanos() as i64,
            grace_ns: cfg.grace.as_nanos() as i64,
            drop_original: cfg.drop_original,
            rename: Rename::new(cfg.name_override, cfg.name_prefix, cfg.name_suffix),
            tags: cfg
                .tags
                .iter()
                .map(|(k, v)| (Str::from(k.as_str()), Str::from(v.as_str())))
                .collect(),
            filter: cfg.filter,
            plugin: cfg.plugin,
            start,
            end: start + period_ns,
        }
    }

    /// Offers a metric; returns whether the aggregator's filter selected it (for drop_original).
    pub fn add(&mut self, m: &Metric) -> bool {
        if !self.filter.selects(m) {
            return false;
        }
        if m.time < self.start - self.grace_ns || m.time >= self.end + self.delay_ns {
            debug!(aggregator = %self.id, "metric outside the window, not aggregated");
            return true;
        }
        if self.filter.is_empty() {
            self.plugin.add(m);
        } else {
            let mut m = m.clone();
            if self.filter.trim(&mut m) {
                self.plugin.add(&m);
            }
        }
        true
    }

    /// When the current window must be pushed (nanoseconds since the epoch).
    pub fn due(&self) -> i64 {
        self.end + self.delay_ns
    }

    /// Emits the window's aggregates and opens the next window after `now`.
    pub fn push(&mut self, now: i64, out: &mut Vec<Metric>) {
        let first = out.len();
        self.plugin.push(self.end, out);
        self.plugin.reset();
        for m in &mut out[first..] {
            self.rename.apply(m);
            for (k, v) in &self.tags {
                m.add_tag(k.clone(), v.clone());
            }
        }
        self.start = self.end;
        // Skip windows that passed while the agent was busy or suspended.
        if now >= self.start + self.period_ns + self.delay_ns {
            self.start = now - now.rem_euclid(self.period_ns);
        }
        self.end = self.start + self.period_ns;
    }
}
