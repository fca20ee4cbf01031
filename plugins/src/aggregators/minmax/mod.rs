//! `aggregators.minmax`: the minimum and maximum of each numeric field per series and window.

use serde::Deserialize;

use super::series::{SeriesMap, numeric};
use crate::model::{Metric, Str};
use crate::plugin::{Aggregator, BuildContext};
use crate::registry::{AggregatorSpec, BuildError, Format, parse_config};

/// No options of its own: period, drop_original etc. are the agent's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

#[derive(Default)]
pub struct MinMax {
    /// Per series: (field, min, max) in first-seen field order.
    series: SeriesMap<Vec<(Str, f64, f64)>>,
}

impl Aggregator for MinMax {
    fn add(&mut self, metric: &Metric) {
        let fields = self.series.get_or_insert_with(metric, Vec::new);
        for (key, value) in &metric.fields {
            let Some(x) = numeric(value) else { continue };
            match fields.iter_mut().find(|(k, _, _)| k == key) {
                Some((_, min, max)) => {
                    *min = min.min(x);
                    *max = max.max(x);
                }
                None => fields.push((key.clone(), x, x)),
            }
        }
    }

    fn push(&mut self, time: i64, out: &mut Vec<Metric>) {
        for e in self.series.iter() {
            let mut m = Metric::new(e.name.clone(), time);
            m.tags = e.tags.clone();
            for (k, min, max) in &e.state {
                m.fields.push((format!("{k}_min").into(), (*min).into()));
                m.fields.push((format!("{k}_max").into(), (*max).into()));
            }
            // A series that only ever had string or boolean fields has nothing to report.
            if !m.fields.is_empty() {
                out.push(m);
            }
        }
    }

    fn reset(&mut self) {
        self.series.clear();
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<Box<dyn Aggregator>, BuildError> {
    let _: Config = parse_config(table)?;
    Ok(Box::new(MinMax::default()))
}

pub const SPEC: AggregatorSpec = AggregatorSpec {
    name: "minmax",
    description: "Keep the minimum and maximum of each numeric field per series",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldValue;

    fn f(m: &Metric, k: &str) -> Option<f64> {
        match m.field(k)? {
            FieldValue::Float(x) => Some(*x),
            other => panic!("{k} is {other:?}, want a float"),
        }
    }

    #[test]
    fn min_and_max_per_series_as_floats() {
        let mut a = MinMax::default();
        a.add(
            &Metric::new("cpu", 1)
                .with_tag("host", "a")
                .with_field("v", 3i64),
        );
        a.add(
            &Metric::new("cpu", 2)
                .with_tag("host", "a")
                .with_field("v", -2.5),
        );
        a.add(
            &Metric::new("cpu", 3)
                .with_tag("host", "a")
                .with_field("v", 7u64),
        );
        a.add(
            &Metric::new("cpu", 4)
                .with_tag("host", "b")
                .with_field("v", 1i64),
        );
        let mut out = Vec::new();
        a.push(100, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "cpu");
        assert_eq!(out[0].tag("host"), Some("a"));
        assert_eq!(out[0].time, 100);
        assert_eq!(f(&out[0], "v_min"), Some(-2.5));
        assert_eq!(f(&out[0], "v_max"), Some(7.0));
        assert_eq!(out[1].tag("host"), Some("b"));
        assert_eq!(f(&out[1], "v_min"), Some(1.0));
        assert_eq!(f(&out[1], "v_max"), Some(1.0));
    }

    #[test]
    fn strings_and_bools_are_ignored_like_telegraf() {
        let mut a = MinMax::default();
        a.add(
            &Metric::new("m", 1)
                .with_field("s", "x")
                .with_field("b", true)
                .with_field("n", 2i64),
        );
        a.add(&Metric::new("only_text", 1).with_field("s", "x"));
        let mut out = Vec::new();
        a.push(5, &mut out);
        assert_eq!(out.len(), 1, "a series with no numeric field emits nothing");
        let names: Vec<_> = out[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["n_min", "n_max"]);
    }

    #[test]
    fn reset_starts_a_new_window() {
        let mut a = MinMax::default();
        a.add(&Metric::new("m", 1).with_field("v", 10i64));
        let mut out = Vec::new();
        a.push(5, &mut out);
        a.reset();
        a.add(&Metric::new("m", 6).with_field("v", 1i64));
        out.clear();
        a.push(10, &mut out);
        assert_eq!(f(&out[0], "v_max"), Some(1.0));
        a.reset();
        out.clear();
        a.push(15, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn rejects_unknown_keys() {
        let t: toml::Table = toml::from_str("fields = [\"x\"]").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
    }
}
