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

/// The bound label of a placed field (`le`/`quantile` and its value), borrowed from the
/// metric: the field key (Telegraf's v1 shape) or the tag (v2 shape).
pub(crate) type BoundRef<'a> = Option<(&'static str, &'a str)>;

/// [`place`] for encoders that write into a reused buffer: appends the series name
/// (`<family><suffix>`, exactly as `place` names it) to `name` and returns the bound label
/// without allocating. `None` when the field has no place (then `name` holds partial text).
pub(crate) fn place_into<'a>(
    measurement: &str,
    kind: ValueType,
    tag: impl FnOnce(&'static str) -> Option<&'a str>,
    key: &'a str,
    version: u8,
    name: &mut Vec<u8>,
) -> Option<BoundRef<'a>> {
    match kind {
        ValueType::Histogram | ValueType::Summary => {
            let histo = kind == ValueType::Histogram;
            let label = if histo { "le" } else { "quantile" };
            if key == "sum" || key == "count" {
                sanitize_into(name, &[measurement], true);
                name.extend_from_slice(if key == "sum" { b"_sum" } else { b"_count" });
                return Some(None);
            }
            if is_bound(key).is_some() {
                sanitize_into(name, &[measurement], true);
                if histo {
                    name.extend_from_slice(b"_bucket");
                }
                return Some(Some((label, key)));
            }
            for suffix in ["_sum", "_count"] {
                if let Some(base) = key.strip_suffix(suffix) {
                    join_name_into(name, measurement, base);
                    name.extend_from_slice(suffix.as_bytes());
                    return Some(None);
                }
            }
            let bound = tag(label)?;
            if histo {
                let base = key.strip_suffix("_bucket")?;
                join_name_into(name, measurement, base);
                name.extend_from_slice(b"_bucket");
            } else {
                join_name_into(name, measurement, key);
            }
            Some(Some((label, bound)))
        }
        _ if version == 1 => {
            let plain = key == "value"
                || (key == "counter" && kind == ValueType::Counter)
                || (key == "gauge" && kind == ValueType::Gauge);
            if plain {
                sanitize_into(name, &[measurement], true);
            } else {
                sanitize_into(name, &[measurement, "_", key], true);
            }
            Some(None)
        }
        _ => {
            join_name_into(name, measurement, key);
            Some(None)
        }
    }
}

/// [`join_name`] appended to `out`.
fn join_name_into(out: &mut Vec<u8>, measurement: &str, field: &str) {
    if measurement == "prometheus" {
        sanitize_into(out, &[field], true);
    } else {
        sanitize_into(out, &[measurement, "_", field], true);
    }
}

/// Appends the sanitized concatenation of `parts`, as
/// [`crate::codec::prometheus::sanitize_metric_name`] (`colon`) or `sanitize_label_name`
/// would return it: a `_` before a leading digit (or for an empty name), every character
/// outside `[a-zA-Z0-9_]` (and `:` with `colon`) as one `_`.
pub(crate) fn sanitize_into(out: &mut Vec<u8>, parts: &[&str], colon: bool) {
    let first = parts.iter().find_map(|p| p.as_bytes().first().copied());
    if first.is_none_or(|b| b.is_ascii_digit()) {
        out.push(b'_');
    }
    let allowed = if colon { NAME | COLON } else { NAME };
    let ok = |b: u8| NAME_BYTES[b as usize] & allowed != 0;
    for part in parts {
        let bytes = part.as_bytes();
        if bytes.iter().all(|&b| ok(b)) {
            out.extend_from_slice(bytes);
            continue;
        }
        for &b in bytes {
            if ok(b) {
                out.push(b);
            } else if !(0x80..0xc0).contains(&b) {
                // One `_` per character: UTF-8 continuation bytes add nothing.
                out.push(b'_');
            }
        }
    }
}

/// Whether `s` is a valid label name as it is (`sanitize_label_name` would not change it).
pub(crate) fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|&c| NAME_BYTES[c as usize] & NAME != 0)
}

/// What each byte may be in a name: `NAME` for `[a-zA-Z0-9_]`, `COLON` for `:` (metric names
/// only). A table: names and labels are checked byte by byte for every sample.
const NAME: u8 = 1;
const COLON: u8 = 2;
const NAME_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'_' {
            t[b] = NAME;
        } else if c == b':' {
            t[b] = COLON;
        }
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::prometheus::{sanitize_label_name, sanitize_metric_name};

    /// The byte table against the character-based sanitizers, for every ASCII character.
    #[test]
    fn every_ascii_character_is_judged_like_sanitize() {
        for c in (0u8..128).map(char::from) {
            let word = format!("a{c}b");
            let mut out = Vec::new();
            sanitize_into(&mut out, &[&word], true);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                sanitize_metric_name(&word),
                "{c:?}"
            );
            let mut out = Vec::new();
            sanitize_into(&mut out, &[&word], false);
            let label = sanitize_label_name(&word);
            assert_eq!(String::from_utf8(out).unwrap(), label, "{c:?}");
            assert_eq!(is_label_name(&word), label == word, "{c:?}");
        }
    }

    #[test]
    fn sanitize_into_matches_sanitize() {
        let samples = [
            "",
            "a",
            "9x",
            "_",
            "a.b-c",
            "é",
            "aé:b",
            "ünïcödé_ñ",
            "1",
            "x:y",
            "prometheus",
            "💡lamp",
            "a b\tc",
            "ÿ",
        ];
        for a in samples {
            for b in samples {
                let joined = format!("{a}_{b}");
                let mut out = Vec::new();
                sanitize_into(&mut out, &[a, "_", b], true);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    sanitize_metric_name(&joined)
                );
                let mut out = Vec::new();
                sanitize_into(&mut out, &[a, b], false);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    sanitize_label_name(&format!("{a}{b}"))
                );
            }
            assert_eq!(is_label_name(a), sanitize_label_name(a) == a, "{a:?}");
        }
    }

    #[test]
    fn place_into_matches_place() {
        let names = ["cpu", "prometheus", "9lives", "a.b", "é", ""];
        let keys = [
            "sum",
            "count",
            "0.5",
            "+Inf",
            "NaN",
            "1e3",
            "rt_bucket",
            "rt_sum",
            "rt_count",
            "bucket",
            "_bucket",
            "value",
            "counter",
            "gauge",
            "x-y",
            "ü",
            "",
        ];
        let kinds = [
            ValueType::Untyped,
            ValueType::Counter,
            ValueType::Gauge,
            ValueType::Histogram,
            ValueType::Summary,
        ];
        for name in names {
            for kind in kinds {
                for tags in [&[][..], &[("le", "0.25")][..], &[("quantile", "0.99")][..]] {
                    let mut m = Metric::new(name, 0).with_kind(kind);
                    for (k, v) in tags {
                        m.add_tag(*k, *v);
                    }
                    for key in keys {
                        for version in [1, 2] {
                            let mut buf = Vec::new();
                            let got =
                                place_into(&m.name, m.kind, |l| m.tag(l), key, version, &mut buf);
                            let want = place(&m, key, version);
                            match (got, want) {
                                (None, None) => {}
                                (Some(bound), Some(p)) => {
                                    assert_eq!(
                                        String::from_utf8(buf).unwrap(),
                                        format!("{}{}", p.family, p.suffix)
                                    );
                                    assert_eq!(
                                        bound,
                                        p.bound.as_ref().map(|(l, v)| (*l, v.as_str()))
                                    );
                                }
                                (g, w) => panic!(
                                    "{name:?} {kind:?} {key:?} v{version}: {g:?} vs {}",
                                    w.is_some()
                                ),
                            }
                        }
                    }
                }
            }
        }
    }
}
