//! The processor chain and the aggregator windows between inputs and outputs.

use std::sync::Arc;

use sonde_plugins::plugin::{Aggregator, Processor};
use sonde_plugins::selfstat::{self, Stat, Stats};
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

/// The processors and aggregators between the inputs and the outputs, in Telegraf's order:
/// processors, then aggregators, then the processors again on the aggregates. Telegraf's
/// `skip_processors_before_aggregators` moves the first run after the aggregators (Telegraf
/// then never processes what passes the aggregators, nor anything without aggregators: here
/// every metric is processed once); `skip_processors_after_aggregators` leaves aggregates
/// unprocessed.
pub struct Chain {
    pub processors: Vec<RunningProcessor>,
    pub aggregators: Vec<RunningAggregator>,
    pub before: bool,
    pub after: bool,
}

impl Chain {
    /// What inputs gathered: processed, offered to the aggregators; returns what goes on.
    pub fn take(&mut self, batch: Vec<Metric>) -> Vec<Metric> {
        self.run(batch, None)
    }

    /// As [`Chain::take`], but what the aggregators select is returned instead of offered
    /// to them (give it to [`Chain::offer`] once the outputs took the batch): a listener's
    /// write that an output refuses comes again, and must not be aggregated twice.
    pub fn take_deferred(&mut self, batch: Vec<Metric>) -> (Vec<Metric>, Vec<Metric>) {
        let mut offered = Vec::new();
        let out = self.run(batch, Some(&mut offered));
        (out, offered)
    }

    /// Offers metrics to every aggregator (see [`Chain::take_deferred`]).
    pub fn offer(&mut self, metrics: Vec<Metric>) {
        for m in &metrics {
            for a in &mut self.aggregators {
                a.add(m);
            }
        }
        sonde_plugins::model::spare::give_back(metrics);
    }

    /// Processes `batch` and drops the originals an aggregator with `drop_original` selects;
    /// the aggregators are offered what they select, or it is copied to `deferred`.
    fn run(&mut self, batch: Vec<Metric>, mut deferred: Option<&mut Vec<Metric>>) -> Vec<Metric> {
        if self.aggregators.is_empty() {
            return run_processors(&mut self.processors, batch);
        }
        let mut batch = if self.before {
            run_processors(&mut self.processors, batch)
        } else {
            batch
        };
        batch.retain(|m| {
            let (mut selected, mut keep) = (false, true);
            for a in self.aggregators.iter_mut() {
                let selects = match deferred {
                    Some(_) => a.selects(m),
                    None => a.add(m),
                };
                selected |= selects;
                keep &= !(selects && a.drop_original);
            }
            if let (true, Some(d)) = (selected, deferred.as_deref_mut()) {
                d.push(m.clone());
            }
            keep
        });
        if self.before {
            batch
        } else {
            run_processors(&mut self.processors, batch)
        }
    }

    /// Earliest time an aggregator's window is due.
    pub fn next_push(&self) -> Option<i64> {
        self.aggregators.iter().map(|a| a.due()).min()
    }

    /// The aggregates of every window due at `now` (all windows with `all`), processed.
    pub fn push(&mut self, now: i64, all: bool) -> Vec<Metric> {
        let mut aggregates = Vec::new();
        for a in self
            .aggregators
            .iter_mut()
            .filter(|a| all || a.due() <= now)
        {
            a.push(now, &mut aggregates);
        }
        if self.after {
            run_processors(&mut self.processors, aggregates)
        } else {
            aggregates
        }
    }
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
    _stats: Arc<Stats>,
    /// Metrics that arrived outside the window (Telegraf's internal_aggregate.metrics_dropped).
    dropped: Stat,
    pushed: Stat,
}

impl RunningAggregator {
    pub fn new(cfg: AggregatorConfig, now: i64) -> Self {
        let period_ns = (cfg.period.as_nanos() as i64).max(1);
        let mut tags = vec![("aggregator", cfg.name.as_str())];
        if let Some(a) = &cfg.alias {
            tags.push(("alias", a.as_str()));
        }
        let stats = selfstat::register("internal_aggregate", &tags);
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
            dropped: stats.stat("metrics_dropped"),
            pushed: stats.stat("metrics_pushed"),
            _stats: stats,
        }
    }

    /// Whether its filter selects `m` (an original it then drops with `drop_original`).
    pub fn selects(&self, m: &Metric) -> bool {
        self.filter.selects(m)
    }

    /// Offers a metric; returns whether the aggregator's filter selected it.
    pub fn add(&mut self, m: &Metric) -> bool {
        if !self.selects(m) {
            return false;
        }
        // Telegraf's bounds: grace before the window, delay after it, both inclusive.
        if m.time < self.start - self.grace_ns || m.time > self.end + self.delay_ns {
            self.dropped.incr();
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
        self.pushed.add((out.len() - first) as i64);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// Counts what it is given; pushes the count as `count n=…`.
    #[derive(Default)]
    struct Count(i64);
    impl Aggregator for Count {
        fn add(&mut self, _m: &Metric) {
            self.0 += 1;
        }
        fn push(&mut self, time: i64, out: &mut Vec<Metric>) {
            out.push(Metric::new("count", time).with_field("n", self.0));
        }
        fn reset(&mut self) {
            self.0 = 0;
        }
    }

    /// A counting aggregator over windows of `period` from `now`.
    pub(crate) fn counting(period: Duration, now: i64) -> RunningAggregator {
        let cfg = AggregatorConfig {
            name: "count".into(),
            alias: None,
            period,
            delay: Duration::from_nanos(10),
            grace: Duration::from_nanos(5),
            drop_original: false,
            name_override: None,
            name_prefix: None,
            name_suffix: None,
            tags: vec![("agg".into(), "yes".into())],
            filter: Filter::default(),
            plugin: Box::new(Count::default()),
        };
        RunningAggregator::new(cfg, now)
    }

    #[test]
    fn window_bounds_are_telegrafs_and_late_metrics_are_counted() {
        let mut a = counting(Duration::from_nanos(100), 1_000);
        let at = |t| Metric::new("m", t).with_field("v", 1i64);
        // Window [1000, 1100): grace reaches back to 995, delay forward to 1110 inclusive.
        for t in [995, 1000, 1099, 1110] {
            assert!(a.add(&at(t)));
        }
        for t in [994, 1111] {
            assert!(a.add(&at(t)));
        }
        assert_eq!(a.dropped.get(), 2);
        assert_eq!(a.due(), 1110);
        let mut out = Vec::new();
        a.push(1110, &mut out);
        assert_eq!(out[0].field("n"), Some(&sonde_plugins::FieldValue::Int(4)));
        assert_eq!(out[0].time, 1100);
        assert_eq!(out[0].tag("agg"), Some("yes"));
        assert_eq!(a.due(), 1210, "the next window follows on");
    }
}
