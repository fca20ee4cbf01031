//! Prometheus series naming shared by the outputs that turn metrics into Prometheus series
//! (`outputs.prometheus_client`, `outputs.prometheus_remote_write`): which family, sample suffix
//! and bound label (`le`/`quantile`) a field becomes, in both of Telegraf's shapes.

use crate::codec::prometheus::sanitize_metric_name;
use crate::model::{Metric, ValueType};

pub(crate) fn is_bound(key: &str) -> Option<f64> {
    if key == "+Inf" {
        return Some(f64::INFINITY);
    }
    key.parse::<f64>().ok().filter(|v| !v.is_nan())
}

/// `<measurement>_<field>`, or the field alone for the prometheus input's `prometheus`
/// measurement (Telegraf's metric_version 2 naming).
pub(crate) fn join_name(measurement: &str, field: &str) -> String {
    if measurement == "prometheus" {
        sanitize_metric_name(field)
    } else {
        let mut s = String::with_capacity(measurement.len() + field.len() + 1);
        s.push_str(measurement);
        s.push('_');
        s.push_str(field);
        sanitize_metric_name(&s)
    }
}

/// Where one field goes: family name, sample suffix, and the bound label it takes from a tag
/// (`le`/`quantile`, removed from the labels) or from the field key.
pub(crate) struct Place {
    pub family: String,
    pub suffix: &'static str,
    pub bound: Option<(&'static str, String)>,
}

pub(crate) fn place(m: &Metric, key: &str, version: u8) -> Option<Place> {
    let name = m.name.as_str();
    let p = |family, suffix, bound| {
        Some(Place {
            family,
            suffix,
            bound,
        })
    };
    match m.kind {
        ValueType::Histogram | ValueType::Summary => {
            let histo = m.kind == ValueType::Histogram;
            let label = if histo { "le" } else { "quantile" };
            // Telegraf's v1 shape: fields sum, count and one per bound, on the family's metric.
            if key == "sum" || key == "count" {
                let suffix = if key == "sum" { "_sum" } else { "_count" };
                return p(sanitize_metric_name(name), suffix, None);
            }
            if is_bound(key).is_some() {
                let suffix = if histo { "_bucket" } else { "" };
                let bound = Some((label, key.to_string()));
                return p(sanitize_metric_name(name), suffix, bound);
            }
            // The v2 shape: `<x>_bucket` with an `le` tag, `<x>_sum`, `<x>_count`, and for
            // summaries `<x>` with a `quantile` tag.
            for (suffix, s) in [("_sum", "_sum"), ("_count", "_count")] {
                if let Some(base) = key.strip_suffix(suffix) {
                    return p(join_name(name, base), s, None);
                }
            }
            if histo {
                let base = key.strip_suffix("_bucket")?;
                return p(
                    join_name(name, base),
                    "_bucket",
                    Some((label, m.tag(label)?.into())),
                );
            }
            p(
                join_name(name, key),
                "",
                Some((label, m.tag(label)?.into())),
            )
        }
        _ if version == 1 => {
            // Telegraf v1: the prometheus input's `counter`/`gauge`/`value` fields keep the
            // measurement's name.
            let plain = key == "value"
                || (key == "counter" && m.kind == ValueType::Counter)
                || (key == "gauge" && m.kind == ValueType::Gauge);
            let family = if plain {
                sanitize_metric_name(name)
            } else {
                sanitize_metric_name(&format!("{name}_{key}"))
            };
            p(family, "", None)
        }
        _ => p(join_name(name, key), "", None),
    }
}
