//! `aggregators.basicstats`: count, min, max, mean, variance and friends per numeric field,
//! series and window, with Telegraf's field names and semantics.

use serde::Deserialize;

use super::series::{SeriesMap, numeric};
use crate::model::{FieldValue, Metric, Str};
use crate::plugin::{Aggregator, BuildContext};
use crate::registry::{AggregatorSpec, BuildError, ConfigError, Format, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which stats to emit; absent means Telegraf's default set, empty means none.
    pub stats: Option<Vec<String>>,
}

/// Every stat, in the order its fields are emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stat {
    Count,
    Min,
    Max,
    Mean,
    Stdev,
    S2,
    Sum,
    Diff,
    NonNegativeDiff,
    Rate,
    NonNegativeRate,
    PercentChange,
    Interval,
    Last,
    First,
}

const ALL: [(&str, Stat); 15] = [
    ("count", Stat::Count),
    ("min", Stat::Min),
    ("max", Stat::Max),
    ("mean", Stat::Mean),
    ("stdev", Stat::Stdev),
    ("s2", Stat::S2),
    ("sum", Stat::Sum),
    ("diff", Stat::Diff),
    ("non_negative_diff", Stat::NonNegativeDiff),
    ("rate", Stat::Rate),
    ("non_negative_rate", Stat::NonNegativeRate),
    ("percent_change", Stat::PercentChange),
    ("interval", Stat::Interval),
    ("last", Stat::Last),
    ("first", Stat::First),
];

const DEFAULT: [Stat; 6] = [
    Stat::Count,
    Stat::Min,
    Stat::Max,
    Stat::Mean,
    Stat::Stdev,
    Stat::S2,
];

/// Running state of one field: Welford's mean/M2 for a stable variance, and the first and
/// latest values and times for diff, rate and interval.
#[derive(Clone, Debug)]
struct Acc {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    mean: f64,
    m2: f64,
    first: f64,
    first_time: i64,
    last: f64,
    last_time: i64,
}

impl Acc {
    fn new(x: f64, time: i64) -> Self {
        Acc {
            count: 1,
            min: x,
            max: x,
            sum: x,
            mean: x,
            m2: 0.0,
            first: x,
            first_time: time,
            last: x,
            last_time: time,
        }
    }

    fn add(&mut self, x: f64, time: i64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.sum += x;
        self.last = x;
        self.last_time = time;
    }

    /// Sample variance; only defined with two values or more.
    fn variance(&self) -> f64 {
        self.m2 / (self.count - 1) as f64
    }

    /// Like Telegraf, the change between the first and the latest value added.
    fn diff(&self) -> f64 {
        self.last - self.first
    }

    fn interval_ns(&self) -> i64 {
        self.last_time.saturating_sub(self.first_time)
    }

    /// Change per second over the window; zero when all values share one timestamp
    /// (Telegraf leaves the rate at zero then rather than dividing by zero).
    fn rate(&self) -> f64 {
        match self.interval_ns() {
            0 => 0.0,
            ns => self.diff() / (ns as f64 / 1e9),
        }
    }
}

pub struct BasicStats {
    stats: Vec<Stat>,
    series: SeriesMap<Vec<(Str, Acc)>>,
}

impl BasicStats {
    fn new(stats: Vec<Stat>) -> Self {
        BasicStats {
            stats,
            series: SeriesMap::default(),
        }
    }
}

impl Aggregator for BasicStats {
    fn add(&mut self, metric: &Metric) {
        let fields = self.series.get_or_insert_with(metric, Vec::new);
        for (key, value) in &metric.fields {
            let Some(x) = numeric(value) else { continue };
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some((_, acc)) => acc.add(x, metric.time),
                None => fields.push((key.clone(), Acc::new(x, metric.time))),
            }
        }
    }

    fn push(&mut self, time: i64, out: &mut Vec<Metric>) {
        for e in self.series.iter() {
            let mut m = Metric::new(e.name.clone(), time);
            m.tags = e.tags.clone();
            for (key, acc) in &e.state {
                for &stat in &self.stats {
                    if let Some(v) = value(stat, acc) {
                        let name = ALL.iter().find(|(_, s)| *s == stat).map_or("", |p| p.0);
                        m.fields.push((format!("{key}_{name}").into(), v));
                    }
                }
            }
            if !m.fields.is_empty() {
                out.push(m);
            }
        }
    }

    fn reset(&mut self) {
        self.series.clear();
    }
}

/// The value of one stat, or None where Telegraf emits nothing: stats that need two values
/// when there is one, the non-negative ones when the change is negative, and results that
/// are not finite (percent change from zero), which line protocol cannot carry.
fn value(stat: Stat, a: &Acc) -> Option<FieldValue> {
    let two = a.count > 1;
    let x = match stat {
        Stat::Count => a.count as f64,
        Stat::Min => a.min,
        Stat::Max => a.max,
        Stat::Mean => a.mean,
        Stat::Sum => a.sum,
        Stat::Last => a.last,
        Stat::First => a.first,
        Stat::S2 if two => a.variance(),
        Stat::Stdev if two => a.variance().sqrt(),
        Stat::Diff if two => a.diff(),
        Stat::NonNegativeDiff if two && a.diff() >= 0.0 => a.diff(),
        Stat::Rate if two => a.rate(),
        Stat::NonNegativeRate if two && a.diff() >= 0.0 => a.rate(),
        Stat::PercentChange if two => a.diff() / a.first * 100.0,
        Stat::Interval if two => return Some(FieldValue::Int(a.interval_ns())),
        _ => return None,
    };
    x.is_finite().then_some(FieldValue::Float(x))
}

fn parse_stats(names: Option<Vec<String>>) -> Result<Vec<Stat>, BuildError> {
    let Some(names) = names else {
        return Ok(DEFAULT.to_vec());
    };
    let mut wanted = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match ALL.iter().find(|(n, _)| n == name) {
            Some(&(_, s)) => wanted.push(s),
            // Telegraf's own sample config lists "variance", which Telegraf then ignores with a
            // warning: the user asked for the variance, so it is given (as Telegraf's `_s2`).
            None if name == "variance" => {
                tracing::warn!(
                    "aggregators.basicstats: stat \"variance\" is reported as the field suffix \
                     _s2, Telegraf's name for the variance (Telegraf itself ignores \"variance\")"
                );
                wanted.push(Stat::S2);
            }
            None => {
                let valid: Vec<_> = ALL.iter().map(|(n, _)| *n).collect();
                let hint = if name == "variance" {
                    " (the variance is \"s2\")"
                } else {
                    ""
                };
                return Err(ConfigError {
                    path: vec!["stats".into(), i.to_string()],
                    message: format!(
                        "unknown stat {name:?}{hint}; valid stats: {}",
                        valid.join(", ")
                    ),
                }
                .into());
            }
        }
    }
    // Emit in the canonical order whatever order they were listed in, each once.
    Ok(ALL
        .iter()
        .map(|&(_, s)| s)
        .filter(|s| wanted.contains(s))
        .collect())
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<Box<dyn Aggregator>, BuildError> {
    let cfg: Config = parse_config(table)?;
    Ok(Box::new(BasicStats::new(parse_stats(cfg.stats)?)))
}

pub const SPEC: AggregatorSpec = AggregatorSpec {
    name: "basicstats",
    description: "Keep count, min, max, mean, variance and other statistics of each numeric field per series",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    fn with(stats: &str) -> BasicStats {
        let t: toml::Table = toml::from_str(stats).unwrap();
        let cfg: Config = parse_config(t).unwrap();
        BasicStats::new(parse_stats(cfg.stats).unwrap())
    }

    fn all() -> BasicStats {
        BasicStats::new(ALL.iter().map(|p| p.1).collect())
    }

    fn float(m: &Metric, k: &str) -> f64 {
        match m.field(k) {
            Some(FieldValue::Float(x)) => *x,
            other => panic!("{k} is {other:?}, want a float"),
        }
    }

    fn push(a: &mut BasicStats, time: i64) -> Vec<Metric> {
        let mut out = Vec::new();
        a.push(time, &mut out);
        out
    }

    #[test]
    fn every_stat_on_a_hand_computed_series() {
        // Values 2, 4, 4, 4, 5, 5, 7, 9 at t = 0..7 s: mean 5, M2 32, s2 32/7.
        let mut a = all();
        for (i, v) in [2i64, 4, 4, 4, 5, 5, 7, 9].into_iter().enumerate() {
            a.add(
                &Metric::new("m", i as i64 * S)
                    .with_tag("h", "x")
                    .with_field("v", v),
            );
        }
        let out = push(&mut a, 10 * S);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(
            (m.name.as_str(), m.tag("h"), m.time),
            ("m", Some("x"), 10 * S)
        );
        assert_eq!(float(m, "v_count"), 8.0);
        assert_eq!(float(m, "v_min"), 2.0);
        assert_eq!(float(m, "v_max"), 9.0);
        assert_eq!(float(m, "v_mean"), 5.0);
        assert_eq!(float(m, "v_sum"), 40.0);
        assert!((float(m, "v_s2") - 32.0 / 7.0).abs() < 1e-12);
        assert!((float(m, "v_stdev") - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(float(m, "v_diff"), 7.0);
        assert_eq!(float(m, "v_non_negative_diff"), 7.0);
        assert_eq!(float(m, "v_rate"), 1.0, "7 over 7 seconds");
        assert_eq!(float(m, "v_non_negative_rate"), 1.0);
        assert_eq!(float(m, "v_percent_change"), 350.0);
        assert_eq!(m.field("v_interval"), Some(&FieldValue::Int(7 * S)));
        assert_eq!(float(m, "v_last"), 9.0);
        // Canonical field order, whatever the config order.
        let names: Vec<_> = m.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names[..4], ["v_count", "v_min", "v_max", "v_mean"]);
    }

    #[test]
    fn default_stats_and_one_point_has_no_variance() {
        let mut a = with("");
        a.add(&Metric::new("m", 0).with_field("v", 3.5));
        let out = push(&mut a, S);
        let names: Vec<_> = out[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        // With one value Telegraf emits count/min/max/mean but no stdev or s2.
        assert_eq!(names, ["v_count", "v_min", "v_max", "v_mean"]);
        assert_eq!(float(&out[0], "v_mean"), 3.5);
    }

    #[test]
    fn falling_values_drop_the_non_negative_stats() {
        let mut a = with(r#"stats = ["diff", "non_negative_diff", "rate", "non_negative_rate"]"#);
        a.add(&Metric::new("m", 0).with_field("v", 10i64));
        a.add(&Metric::new("m", 2 * S).with_field("v", 4i64));
        let out = push(&mut a, 3 * S);
        let m = &out[0];
        assert_eq!(float(m, "v_diff"), -6.0);
        assert_eq!(float(m, "v_rate"), -3.0);
        assert!(m.field("v_non_negative_diff").is_none());
        assert!(m.field("v_non_negative_rate").is_none());
    }

    #[test]
    fn same_timestamp_rate_is_zero_and_percent_change_from_zero_is_omitted() {
        let mut a = with(r#"stats = ["rate", "percent_change", "interval"]"#);
        a.add(&Metric::new("m", 5).with_field("v", 0i64));
        a.add(&Metric::new("m", 5).with_field("v", 3i64));
        let m = &push(&mut a, 9)[0];
        assert_eq!(float(m, "v_rate"), 0.0);
        assert_eq!(m.field("v_interval"), Some(&FieldValue::Int(0)));
        assert!(m.field("v_percent_change").is_none(), "3/0 is not a number");
    }

    #[test]
    fn series_and_fields_are_kept_apart_and_non_numeric_ignored() {
        let mut a = with(r#"stats = ["count", "sum"]"#);
        a.add(
            &Metric::new("m", 0)
                .with_tag("h", "a")
                .with_field("x", 1i64)
                .with_field("s", "t"),
        );
        a.add(
            &Metric::new("m", 0)
                .with_tag("h", "b")
                .with_field("x", 10u64),
        );
        a.add(
            &Metric::new("m", 1)
                .with_tag("h", "a")
                .with_field("x", 2.0)
                .with_field("y", true),
        );
        a.add(
            &Metric::new("n", 1)
                .with_tag("h", "a")
                .with_field("x", 100i64),
        );
        let out = push(&mut a, 2);
        assert_eq!(out.len(), 3);
        assert_eq!((out[0].name.as_str(), out[0].tag("h")), ("m", Some("a")));
        assert_eq!(
            out[0].fields.len(),
            2,
            "only x: strings and bools are ignored"
        );
        assert_eq!(float(&out[0], "x_count"), 2.0);
        assert_eq!(float(&out[0], "x_sum"), 3.0);
        assert_eq!(float(&out[1], "x_sum"), 10.0);
        assert_eq!(
            (out[2].name.as_str(), float(&out[2], "x_sum")),
            ("n", 100.0)
        );
    }

    #[test]
    fn reset_between_windows() {
        let mut a = with(r#"stats = ["count", "mean"]"#);
        a.add(&Metric::new("m", 0).with_field("v", 1i64));
        a.add(&Metric::new("m", 1).with_field("v", 3i64));
        assert_eq!(float(&push(&mut a, 2)[0], "v_mean"), 2.0);
        a.reset();
        assert!(push(&mut a, 3).is_empty());
        a.add(&Metric::new("m", 4).with_field("v", 10i64));
        let m = &push(&mut a, 5)[0];
        assert_eq!(float(m, "v_count"), 1.0);
        assert_eq!(float(m, "v_mean"), 10.0);
    }

    #[test]
    fn empty_stats_emit_nothing_and_unknown_stats_are_errors() {
        let mut a = with("stats = []");
        a.add(&Metric::new("m", 0).with_field("v", 1i64));
        assert!(push(&mut a, 1).is_empty());

        let t: toml::Table = toml::from_str(r#"stats = ["count", "varience"]"#).unwrap();
        let Err(BuildError::Config(e)) = build(t, &BuildContext::default()) else {
            panic!("unknown stat accepted");
        };
        assert_eq!(e.path, ["stats", "1"]);
        assert!(e.message.contains("first"), "{}", e.message);
    }

    /// Telegraf's sample config: `stats = ["count","min","max","mean","variance","stdev"]`.
    #[test]
    fn telegraf_sample_stats_and_first() {
        let mut a =
            with(r#"stats = ["count", "min", "max", "mean", "variance", "stdev", "first"]"#);
        for (t, v) in [(0, 4.0), (1, 2.0), (2, 9.0)] {
            a.add(&Metric::new("m", t).with_field("v", v));
        }
        let m = &push(&mut a, 3)[0];
        assert_eq!(float(m, "v_first"), 4.0);
        assert_eq!(float(m, "v_count"), 3.0);
        // sample variance of 4, 2, 9: mean 5, squares 1 + 9 + 16 = 26, / 2
        assert_eq!(float(m, "v_s2"), 13.0);
        assert!(m.field("v_variance").is_none());
    }

    proptest! {
        /// Welford's running mean and variance agree with the two-pass textbook formulas.
        #[test]
        fn mean_and_s2_match_two_pass(xs in prop::collection::vec(-1e6f64..1e6, 2..200)) {
            let mut a = with(r#"stats = ["mean", "s2"]"#);
            for (i, x) in xs.iter().enumerate() {
                a.add(&Metric::new("m", i as i64).with_field("v", *x));
            }
            let m = &push(&mut a, 0)[0];
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let s2 = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let tol = |want: f64| 1e-9 * want.abs().max(1.0);
            prop_assert!((float(m, "v_mean") - mean).abs() <= tol(mean));
            prop_assert!((float(m, "v_s2") - s2).abs() <= tol(s2).max(1e-6));
        }
    }
}
