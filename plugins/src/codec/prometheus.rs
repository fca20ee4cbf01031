//! `prometheus` data format: text exposition format 0.0.4.
//!
//! Serializer (Telegraf's mapping): each field becomes a sample named
//! `<measurement>_<field>` (just `<field>` when the measurement is `prometheus`, as Telegraf's
//! metric_version 2 input writes it), sanitized to `[a-zA-Z_:][a-zA-Z0-9_:]*`; tags become
//! labels. Samples are grouped by family under a `# TYPE` line from the metric's
//! [`ValueType`]. Histograms and summaries are read in both of Telegraf's shapes:
//! version 2 (`<name>_bucket` fields with an `le` tag, `<name>_sum`, `<name>_count`; summary
//! quantiles as `<name>` fields with a `quantile` tag) and version 1 (what [`PrometheusParser`]
//! produces: fields `sum`, `count` and one field per bucket bound / quantile, e.g. `0.5`,
//! `+Inf`). Booleans are 0/1; string fields are dropped, or with `string_as_label` added as
//! labels. The same series twice in one batch is written once (the later sample wins), since
//! Prometheus rejects a scrape with duplicate series.
//!
//! Parser (Telegraf's metric_version 1): the family name is the measurement; counters, gauges
//! and untyped samples get one field `counter`, `gauge` or `value`; a histogram series becomes
//! one metric with `sum`, `count` and a field per `le` bound; a summary series one metric with
//! `sum`, `count` and a field per quantile. Labels become tags. Sample timestamps (ms) are used
//! when present. Samples without a `# TYPE` are untyped.

use std::collections::HashMap;

use super::{ParseError, Parser, Serializer};
use crate::model::{FieldValue, Metric, Str, ValueType};

// ---------------------------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
pub struct PrometheusSerializer {
    pub export_timestamp: bool,
    pub sort_metrics: bool,
    pub string_as_label: bool,
}

/// Where a field goes: family, sample name, and an extra label (`le`/`quantile`).
type Placement = (String, String, Option<(&'static str, String)>);

struct Family {
    name: String,
    kind: ValueType,
    /// Sample lines keyed by `name{labels}` for de-duplication; insertion ordered.
    samples: Vec<(String, f64, i64)>,
    index: HashMap<String, usize>,
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: other characters become `_`; a leading digit gets a `_` prefix.
pub fn sanitize_metric_name(s: &str) -> String {
    sanitize(s, true)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn sanitize_label_name(s: &str) -> String {
    sanitize(s, false)
}

fn sanitize(s: &str, colon: bool) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    for c in s.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        out.push(if ok { c } else { '_' });
    }
    out
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

fn family_name(measurement: &str, key: &str) -> String {
    if measurement == "prometheus" {
        sanitize_metric_name(key)
    } else {
        sanitize_metric_name(&format!("{measurement}_{key}"))
    }
}

fn is_bound(key: &str) -> bool {
    key == "+Inf" || key.parse::<f64>().is_ok()
}

impl PrometheusSerializer {
    /// Where one field goes: (family, sample name, extra label).
    fn place(&self, m: &Metric, key: &str) -> Option<Placement> {
        let name = m.name.as_str();
        match m.kind {
            ValueType::Histogram => {
                if let Some(base) = key.strip_suffix("_bucket") {
                    let le = m.tag("le")?;
                    let fam = family_name(name, base);
                    return Some((fam.clone(), fam + "_bucket", Some(("le", le.to_string()))));
                }
                if is_bound(key) {
                    let fam = sanitize_metric_name(name);
                    return Some((fam.clone(), fam + "_bucket", Some(("le", key.to_string()))));
                }
            }
            ValueType::Summary => {
                if is_bound(key) {
                    let fam = sanitize_metric_name(name);
                    return Some((fam.clone(), fam, Some(("quantile", key.to_string()))));
                }
                if !key.ends_with("_sum")
                    && !key.ends_with("_count")
                    && key != "sum"
                    && key != "count"
                {
                    let q = m.tag("quantile")?;
                    let fam = family_name(name, key);
                    return Some((fam.clone(), fam, Some(("quantile", q.to_string()))));
                }
            }
            _ => {
                let fam = family_name(name, key);
                return Some((fam.clone(), fam, None));
            }
        }
        for suffix in ["sum", "count"] {
            if key == suffix {
                let fam = sanitize_metric_name(name);
                return Some((fam.clone(), format!("{fam}_{suffix}"), None));
            }
            if let Some(base) = key.strip_suffix(suffix).and_then(|b| b.strip_suffix('_')) {
                let fam = family_name(name, base);
                return Some((fam.clone(), format!("{fam}_{suffix}"), None));
            }
        }
        None
    }
}

impl Serializer for PrometheusSerializer {
    fn serialize(&self, batch: &[Metric], out: &mut Vec<u8>) {
        let mut families: Vec<Family> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut key = String::new();
        for m in batch {
            for (fkey, fval) in &m.fields {
                let value = match fval {
                    FieldValue::String(_) => continue,
                    v => match v.as_f64() {
                        Some(x) => x,
                        None => continue,
                    },
                };
                let Some((fam, sample, extra)) = self.place(m, fkey) else {
                    continue;
                };
                labels.clear();
                let consumed = extra.as_ref().map(|(l, _)| *l);
                for (k, v) in &m.tags {
                    if v.is_empty() || Some(k.as_str()) == consumed {
                        continue;
                    }
                    labels.push((sanitize_label_name(k), v.to_string()));
                }
                if self.string_as_label {
                    for (k, v) in &m.fields {
                        if let FieldValue::String(s) = v {
                            labels.push((sanitize_label_name(k), s.to_string()));
                        }
                    }
                }
                if let Some((l, v)) = extra {
                    labels.push((l.to_string(), v));
                }
                labels.sort();
                labels.dedup_by(|a, b| a.0 == b.0);

                key.clear();
                key.push_str(&sample);
                if !labels.is_empty() {
                    key.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            key.push(',');
                        }
                        key.push_str(k);
                        key.push_str("=\"");
                        escape_label_value(&mut key, v);
                        key.push('"');
                    }
                    key.push('}');
                }
                let fi = *by_name.entry(fam.clone()).or_insert_with(|| {
                    families.push(Family {
                        name: fam,
                        kind: m.kind,
                        samples: Vec::new(),
                        index: HashMap::new(),
                    });
                    families.len() - 1
                });
                let f = &mut families[fi];
                let ts_ms = m.time.div_euclid(1_000_000);
                match f.index.get(&key) {
                    Some(&i) => f.samples[i] = (key.clone(), value, ts_ms),
                    None => {
                        f.index.insert(key.clone(), f.samples.len());
                        f.samples.push((key.clone(), value, ts_ms));
                    }
                }
            }
        }
        if self.sort_metrics {
            families.sort_by(|a, b| a.name.cmp(&b.name));
        }
        for f in &mut families {
            if self.sort_metrics {
                f.samples.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let kind = match f.kind {
                ValueType::Counter => "counter",
                ValueType::Gauge => "gauge",
                ValueType::Untyped => "untyped",
                ValueType::Histogram => "histogram",
                ValueType::Summary => "summary",
            };
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(f.name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(kind.as_bytes());
            out.push(b'\n');
            for (k, v, ts) in &f.samples {
                out.extend_from_slice(k.as_bytes());
                out.push(b' ');
                format_value(out, *v);
                if self.export_timestamp {
                    out.push(b' ');
                    out.extend_from_slice(itoa::Buffer::new().format(*ts).as_bytes());
                }
                out.push(b'\n');
            }
        }
    }

    fn content_type(&self) -> &'static str {
        "text/plain; version=0.0.4; charset=utf-8"
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Parses the Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
#[derive(Clone, Debug)]
pub struct PrometheusParser {
    /// Telegraf's metric_version: 1 (one metric per family and series, fields `counter`,
    /// `gauge`, `value`, `sum`, `count`, bounds) or 2 (measurement `prometheus`, one field per
    /// sample name; buckets and quantiles keep their `le`/`quantile` label as a tag).
    pub metric_version: u8,
    /// Timestamps are OpenMetrics' (seconds, possibly fractional) rather than 0.0.4's
    /// milliseconds. `None`: OpenMetrics when the payload ends with `# EOF`.
    pub openmetrics: Option<bool>,
}

impl Default for PrometheusParser {
    fn default() -> Self {
        PrometheusParser {
            metric_version: 1,
            openmetrics: None,
        }
    }
}

pub(crate) struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(Str, Str)>,
    pub value: f64,
    pub time_ms: Option<i64>,
}

pub(crate) fn parse_float(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            // Rust also accepts "infinity" and friends; only plain numbers get here.
            if s.bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
            {
                s.parse().ok()
            } else {
                None
            }
        }
    }
}

fn is_name_char(c: u8, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':' || (!first && c.is_ascii_digit())
}

pub(crate) fn parse_sample(line: &str, openmetrics: bool) -> Result<Sample<'_>, String> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && is_name_char(b[i], i == 0) {
        i += 1;
    }
    if i == 0 {
        return Err("invalid metric name".into());
    }
    let name = &line[..i];
    let skip_ws = |mut i: usize| {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        i
    };
    i = skip_ws(i);
    let mut labels = Vec::new();
    if b.get(i) == Some(&b'{') {
        i += 1;
        loop {
            i = skip_ws(i);
            if b.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let ls = i;
            while i < b.len() && is_name_char(b[i], i == ls) && b[i] != b':' {
                i += 1;
            }
            if i == ls {
                return Err(format!("invalid label name in {name:?}"));
            }
            let lname = &line[ls..i];
            i = skip_ws(i);
            if b.get(i) != Some(&b'=') {
                return Err(format!("missing '=' after label {lname:?}"));
            }
            i = skip_ws(i + 1);
            if b.get(i) != Some(&b'"') {
                return Err(format!("label value of {lname:?} must be quoted"));
            }
            i += 1;
            let mut value = String::new();
            let mut closed = false;
            let mut chunk = i;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        value.push_str(&line[chunk..i]);
                        closed = true;
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        value.push_str(&line[chunk..i]);
                        match b.get(i + 1) {
                            Some(b'n') => value.push('\n'),
                            Some(b'\\') => value.push('\\'),
                            Some(b'"') => value.push('"'),
                            // Unknown escapes are kept as written.
                            _ => {
                                value.push('\\');
                                i += 1;
                                chunk = i;
                                continue;
                            }
                        }
                        i += 2;
                        chunk = i;
                    }
                    _ => i += 1,
                }
            }
            if !closed {
                return Err(format!("unterminated label value for {lname:?}"));
            }
            // Telegraf keeps no tag for an empty label value.
            if lname != "__name__" && !value.is_empty() {
                labels.push((Str::from(lname), Str::from(value)));
            }
            i = skip_ws(i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' after label {lname:?}")),
            }
        }
    }
    let mut rest = line[i..].trim();
    // An OpenMetrics exemplar (`# {trace_id="..."} 1.0 1.5`) follows the sample: not kept.
    if let Some(hash) = rest.find('#') {
        if !rest[hash + 1..].trim_start().starts_with('{') {
            return Err(format!("invalid exemplar after sample {name:?}"));
        }
        rest = rest[..hash].trim_end();
    }
    let mut parts = rest.split_ascii_whitespace();
    let vtext = parts
        .next()
        .ok_or_else(|| format!("missing value for {name:?}"))?;
    let value =
        parse_float(vtext).ok_or_else(|| format!("invalid value {vtext:?} for {name:?}"))?;
    let time_ms = match parts.next() {
        None => None,
        Some(t) => {
            let ms = if openmetrics {
                parse_float(t)
                    .map(|secs| secs * 1000.0)
                    .filter(|ms| ms.is_finite() && ms.abs() < 9.2e15)
                    .map(|ms| ms.round() as i64)
            } else {
                t.parse::<i64>().ok()
            };
            Some(
                ms.filter(|ms| ms.checked_mul(1_000_000).is_some())
                    .ok_or_else(|| format!("invalid timestamp {t:?} for {name:?}"))?,
            )
        }
    };
    if parts.next().is_some() {
        return Err(format!("unexpected text after sample {name:?}"));
    }
    Ok(Sample {
        name,
        labels,
        value,
        time_ms,
    })
}

/// Formats an `le`/`quantile` bound the way Telegraf's field keys and tags have it: Go's
/// `FormatFloat(v, 'g', -1, 64)` (`+Inf`, `0.5`, `1` for "1.0", `1e+06`).
fn bound_key(text: &str) -> Option<Str> {
    let v = parse_float(text.trim())?;
    if v.is_nan() {
        return None;
    }
    Some(format_g(v).into())
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`.
pub fn format_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Shortest digits, then Go's choice: %e when the exponent is < -4 or >= 6 (shortest).
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

impl Parser for PrometheusParser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let start = out.len();
        let openmetrics = self
            .openmetrics
            .unwrap_or_else(|| input.trim_ascii_end().ends_with(b"# EOF"));
        let mut errors = Vec::new();
        let mut types: HashMap<String, ValueType> = HashMap::new();
        // Histogram/summary series being assembled: (family, labels) -> index into `out`.
        let mut groups: HashMap<(String, Vec<(Str, Str)>), usize> = HashMap::new();
        for (n, raw) in input.split(|&b| b == b'\n').enumerate() {
            let line_no = n + 1;
            let Ok(line) = std::str::from_utf8(raw) else {
                errors.push(ParseError {
                    line: line_no,
                    message: "invalid UTF-8".into(),
                });
                continue;
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_ascii_whitespace();
                if words.next() == Some("TYPE")
                    && let (Some(name), Some(kind)) = (words.next(), words.next())
                {
                    let kind = match kind {
                        "counter" => ValueType::Counter,
                        // OpenMetrics' info and stateset samples are 0/1 gauges.
                        "gauge" | "info" | "stateset" => ValueType::Gauge,
                        "histogram" => ValueType::Histogram,
                        "summary" => ValueType::Summary,
                        // untyped, unknown, and gaugehistogram (whose _gsum/_gcount samples
                        // are kept one by one).
                        _ => ValueType::Untyped,
                    };
                    types.insert(name.to_string(), kind);
                }
                continue;
            }
            let s = match parse_sample(line, openmetrics) {
                Ok(s) => s,
                Err(message) => {
                    errors.push(ParseError {
                        line: line_no,
                        message,
                    });
                    continue;
                }
            };
            // As Telegraf: only positive timestamps are used.
            let time = s
                .time_ms
                .filter(|&ms| ms > 0)
                .map_or(now, |ms| ms * 1_000_000);
            // Which family, and which part of it, is this sample?
            let mut family = s.name;
            let mut kind = types.get(s.name).copied();
            let mut suffix = "";
            if kind.is_none() {
                // OpenMetrics: a counter family `x` has samples `x_total`; `x_created` (of
                // counters, histograms, summaries) is a start time, not a value: skipped.
                if let Some(base) = s.name.strip_suffix("_total")
                    && types.get(base) == Some(&ValueType::Counter)
                {
                    kind = Some(ValueType::Counter);
                }
                if let Some(base) = s.name.strip_suffix("_created")
                    && matches!(
                        types.get(base),
                        Some(ValueType::Counter | ValueType::Histogram | ValueType::Summary)
                    )
                {
                    continue;
                }
            }
            if kind.is_none() {
                for suf in ["_bucket", "_sum", "_count"] {
                    if let Some(base) = s.name.strip_suffix(suf)
                        && let Some(&k @ (ValueType::Histogram | ValueType::Summary)) =
                            types.get(base)
                        && (suf != "_bucket" || k == ValueType::Histogram)
                    {
                        family = base;
                        kind = Some(k);
                        suffix = suf;
                        break;
                    }
                }
            }
            let kind = kind.unwrap_or_default();
            match kind {
                ValueType::Histogram | ValueType::Summary => {
                    let mut labels = s.labels;
                    let bound_label = if kind == ValueType::Histogram {
                        "le"
                    } else {
                        "quantile"
                    };
                    let field: Str = match suffix {
                        "_sum" => "sum".into(),
                        "_count" => "count".into(),
                        _ => {
                            let Some(pos) = labels.iter().position(|(k, _)| k == bound_label)
                            else {
                                errors.push(ParseError {
                                    line: line_no,
                                    message: format!(
                                        "{} sample {:?} without {bound_label:?} label",
                                        if kind == ValueType::Histogram {
                                            "histogram"
                                        } else {
                                            "summary"
                                        },
                                        s.name
                                    ),
                                });
                                continue;
                            };
                            let (_, text) = labels.remove(pos);
                            match bound_key(&text) {
                                Some(k) => k,
                                None => {
                                    errors.push(ParseError {
                                        line: line_no,
                                        message: format!("invalid {bound_label} value {text:?}"),
                                    });
                                    continue;
                                }
                            }
                        }
                    };
                    if kind == ValueType::Summary
                        && s.value.is_nan()
                        && !matches!(suffix, "_sum" | "_count")
                    {
                        continue;
                    }
                    labels.sort();
                    let key = (family.to_string(), labels);
                    let idx = match groups.get(&key) {
                        Some(&i) => i,
                        None => {
                            let mut m = Metric::new(family, time).with_kind(kind);
                            for (k, v) in &key.1 {
                                m.add_tag(k.clone(), v.clone());
                            }
                            out.push(m);
                            groups.insert(key, out.len() - 1);
                            out.len() - 1
                        }
                    };
                    out[idx].add_field(field, s.value);
                }
                _ => {
                    // Telegraf drops NaN samples of counters, gauges and untyped metrics.
                    if s.value.is_nan() {
                        continue;
                    }
                    let field = match kind {
                        ValueType::Counter => "counter",
                        ValueType::Gauge => "gauge",
                        _ => "value",
                    };
                    let mut m = Metric::new(family, time).with_kind(kind);
                    for (k, v) in s.labels {
                        m.add_tag(k, v);
                    }
                    m.add_field(field, s.value);
                    out.push(m);
                }
            }
        }
        if self.metric_version == 2 {
            let v1: Vec<Metric> = out.drain(start..).collect();
            to_version_2(v1, out);
        }
        errors
    }
}

/// Telegraf's metric_version 2 shape of metric_version 1 metrics: measurement `prometheus`,
/// the sample name as the field; a histogram series becomes one metric with `<x>_count` and
/// `<x>_sum` fields followed by one metric per bucket with field `<x>_bucket` and tag `le` (a
/// `+Inf` bucket holding the count is added when the series has none, as Telegraf does); a
/// summary the same with field `<x>` and tag `quantile`.
pub fn to_version_2(v1: Vec<Metric>, out: &mut Vec<Metric>) {
    for m in v1 {
        let family = m.name.as_str();
        let base = |time| {
            let mut x = Metric::new("prometheus", time).with_kind(m.kind);
            x.tags = m.tags.clone();
            x
        };
        match m.kind {
            ValueType::Histogram | ValueType::Summary => {
                let histo = m.kind == ValueType::Histogram;
                let mut totals = base(m.time);
                let mut parts = Vec::new();
                let mut inf_seen = false;
                for (k, v) in &m.fields {
                    match k.as_str() {
                        "sum" | "count" => {}
                        bound => {
                            let mut b = base(m.time);
                            let (tag, field) = if histo {
                                ("le", format!("{family}_bucket"))
                            } else {
                                ("quantile", family.to_string())
                            };
                            inf_seen |= bound == "+Inf";
                            b.add_tag(tag, bound);
                            b.add_field(field, v.clone());
                            parts.push(b);
                        }
                    }
                }
                let count = m.field("count").cloned();
                for k in ["count", "sum"] {
                    if let Some(v) = m.field(k) {
                        totals.add_field(format!("{family}_{k}"), v.clone());
                    }
                }
                if !totals.fields.is_empty() {
                    out.push(totals);
                }
                out.extend(parts);
                if histo
                    && !inf_seen
                    && let Some(count) = count
                {
                    let mut b = base(m.time);
                    b.add_tag("le", "+Inf");
                    b.add_field(format!("{family}_bucket"), count);
                    out.push(b);
                }
            }
            _ => {
                let mut x = base(m.time);
                for (_, v) in &m.fields {
                    x.add_field(family, v.clone());
                }
                out.push(x);
            }
        }
    }
}

/// The `prometheus` data format (Telegraf's parser options): `prometheus_metric_version`
/// (2 when unset, as Telegraf's parser; the `prometheus` input defaults to 1 itself) and
/// `prometheus_ignore_timestamp` (every metric gets the gather time).
#[derive(Clone, Debug)]
pub struct PrometheusFormat {
    pub parser: PrometheusParser,
    pub ignore_timestamp: bool,
}

impl Parser for PrometheusFormat {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let start = out.len();
        let errors = self.parser.parse(input, now, out);
        if self.ignore_timestamp {
            for m in &mut out[start..] {
                m.time = now;
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser(s: &PrometheusSerializer, batch: &[Metric]) -> String {
        let mut out = Vec::new();
        s.serialize(batch, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn parse(text: &str) -> (Vec<Metric>, Vec<ParseError>) {
        let mut out = Vec::new();
        let e = PrometheusParser::default().parse(text.as_bytes(), 5_000_000, &mut out);
        (out, e)
    }

    #[test]
    fn serializer_basic_types_and_escaping() {
        let batch = [
            Metric::new("cpu", 1_000_000_000)
                .with_kind(ValueType::Gauge)
                .with_tag("host", "a\"b\\c\nd")
                .with_tag("cpu-id", "0")
                .with_field("usage idle", 1.5)
                .with_field("up", true)
                .with_field("msg", "skipped"),
            Metric::new("cpu", 2_000_000_000)
                .with_kind(ValueType::Gauge)
                .with_tag("host", "z")
                .with_field("usage idle", f64::NAN),
            Metric::new("net", 0)
                .with_kind(ValueType::Counter)
                .with_field("bytes", 10u64),
            Metric::new("prometheus", 0).with_field("go_goroutines", 3i64),
            Metric::new("1x", 0).with_field("v", f64::NEG_INFINITY),
        ];
        let text = ser(&PrometheusSerializer::default(), &batch);
        assert_eq!(
            text,
            "# TYPE cpu_usage_idle gauge\n\
             cpu_usage_idle{cpu_id=\"0\",host=\"a\\\"b\\\\c\\nd\"} 1.5\n\
             cpu_usage_idle{host=\"z\"} NaN\n\
             # TYPE cpu_up gauge\n\
             cpu_up{cpu_id=\"0\",host=\"a\\\"b\\\\c\\nd\"} 1.0\n\
             # TYPE net_bytes counter\n\
             net_bytes 10.0\n\
             # TYPE go_goroutines untyped\n\
             go_goroutines 3.0\n\
             # TYPE _1x_v untyped\n\
             _1x_v -Inf\n"
        );
        // Our own parser reads it back (names, labels, values).
        let (ms, e) = parse(&text);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(ms[0].tag("host"), Some("a\"b\\c\nd"));
        assert_eq!(ms[0].field("gauge"), Some(&FieldValue::Float(1.5)));
    }

    #[test]
    fn serializer_timestamps_strings_dedup_sort() {
        let s = PrometheusSerializer {
            export_timestamp: true,
            sort_metrics: true,
            string_as_label: true,
        };
        let batch = [
            Metric::new("z", 1_500_000_000)
                .with_field("v", 1i64)
                .with_field("state", "ok"),
            Metric::new("a", 0).with_field("v", 1i64),
            Metric::new("z", 2_500_000_000)
                .with_field("v", 2i64)
                .with_field("state", "ok"),
        ];
        assert_eq!(
            ser(&s, &batch),
            "# TYPE a_v untyped\na_v 1.0 0\n# TYPE z_v untyped\nz_v{state=\"ok\"} 2.0 2500\n"
        );
    }

    #[test]
    fn serializer_histograms_both_shapes() {
        let v2 = [
            Metric::new("prometheus", 0)
                .with_kind(ValueType::Histogram)
                .with_tag("le", "0.5")
                .with_field("lat_bucket", 3.0),
            Metric::new("prometheus", 0)
                .with_kind(ValueType::Histogram)
                .with_tag("le", "+Inf")
                .with_field("lat_bucket", 4.0),
            Metric::new("prometheus", 0)
                .with_kind(ValueType::Histogram)
                .with_field("lat_sum", 1.25)
                .with_field("lat_count", 4.0),
        ];
        let t = ser(&PrometheusSerializer::default(), &v2);
        assert_eq!(
            t,
            "# TYPE lat histogram\nlat_bucket{le=\"0.5\"} 3.0\nlat_bucket{le=\"+Inf\"} 4.0\nlat_sum 1.25\nlat_count 4.0\n"
        );
        // v1 shape, as our parser makes it, comes out the same.
        let (ms, e) = parse(&t);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(ms.len(), 1);
        assert_eq!(ser(&PrometheusSerializer::default(), &ms), t);
    }

    #[test]
    fn parser_v1_mapping() {
        let text = "# HELP http_requests_total Total.\n\
            # TYPE http_requests_total counter\n\
            http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
            http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
            \n\
            # TYPE temp gauge\n\
            temp{path=\"C:\\\\dir\",q=\"a\\\"b=c\",n=\"x\\ny\",} -Inf\n\
            untyped_thing 1e3\n\
            # TYPE rpc summary\n\
            rpc{quantile=\"0.5\"} 4773\n\
            rpc{quantile=\"0.99\"} NaN\n\
            rpc_sum 1.7e6\n\
            rpc_count 2693\n\
            # TYPE lat histogram\n\
            lat_bucket{le=\"0.05\",svc=\"a\"} 24054\n\
            lat_bucket{svc=\"a\",le=\"+Inf\"} 144320\n\
            lat_sum{svc=\"a\"} 53423\n\
            lat_count{svc=\"a\"} 144320\n";
        let (ms, e) = parse(text);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(ms.len(), 6);
        assert_eq!(ms[0].name, "http_requests_total");
        assert_eq!(ms[0].kind, ValueType::Counter);
        assert_eq!(ms[0].field("counter"), Some(&FieldValue::Float(1027.0)));
        assert_eq!(ms[0].tag("code"), Some("200"));
        assert_eq!(ms[0].time, 1_395_066_363_000_000_000);
        assert_eq!(ms[1].field("counter"), Some(&FieldValue::Float(3.0)));
        assert_eq!(ms[2].tag("path"), Some("C:\\dir"));
        assert_eq!(ms[2].tag("q"), Some("a\"b=c"));
        assert_eq!(ms[2].tag("n"), Some("x\ny"));
        assert_eq!(
            ms[2].field("gauge"),
            Some(&FieldValue::Float(f64::NEG_INFINITY))
        );
        assert_eq!(ms[3].field("value"), Some(&FieldValue::Float(1000.0)));
        assert_eq!(ms[3].kind, ValueType::Untyped);
        assert_eq!(ms[3].time, 5_000_000);
        let rpc = &ms[4];
        assert_eq!(rpc.kind, ValueType::Summary);
        assert_eq!(rpc.field("0.5"), Some(&FieldValue::Float(4773.0)));
        // Telegraf leaves NaN quantiles out.
        assert_eq!(rpc.field("0.99"), None);
        assert_eq!(rpc.field("sum"), Some(&FieldValue::Float(1.7e6)));
        assert_eq!(rpc.field("count"), Some(&FieldValue::Float(2693.0)));
        let lat = &ms[5];
        assert_eq!(lat.kind, ValueType::Histogram);
        assert_eq!(lat.tags, vec![("svc".into(), "a".into())]);
        assert_eq!(lat.field("0.05"), Some(&FieldValue::Float(24054.0)));
        assert_eq!(lat.field("+Inf"), Some(&FieldValue::Float(144320.0)));
        assert_eq!(lat.field("count"), Some(&FieldValue::Float(144320.0)));
    }

    #[test]
    fn data_format_options_as_telegraf() {
        let text = "# TYPE lat histogram\n\
            lat_bucket{le=\"1.0\",svc=\"a\",empty=\"\"} 2 1700000000000\n\
            lat_sum{svc=\"a\"} 3 1700000000000\n\
            lat_count{svc=\"a\"} 4 1700000000000\n\
            # TYPE up gauge\n\
            up NaN\n\
            up{x=\"1\"} 1 0\n";
        let build = |version: Option<u8>, ignore: Option<bool>| {
            crate::codec::build_parser(
                &crate::codec::ParserConfig {
                    data_format: Some("prometheus".into()),
                    prometheus_metric_version: version,
                    prometheus_ignore_timestamp: ignore,
                    ..Default::default()
                },
                "influx",
            )
            .unwrap()
        };
        let lines = |p: &dyn Parser| {
            let mut out = Vec::new();
            assert!(p.parse(text.as_bytes(), 9, &mut out).is_empty());
            out.iter()
                .map(|m| m.to_string().trim_end().to_string())
                .collect::<Vec<_>>()
        };
        // Unset: Telegraf's parser default, version 2; a missing +Inf bucket is added; NaN
        // samples, empty labels and timestamps <= 0 are left out.
        assert_eq!(
            lines(&*build(None, None)),
            [
                "prometheus,svc=a lat_count=4,lat_sum=3 1700000000000000000",
                "prometheus,le=1,svc=a lat_bucket=2 1700000000000000000",
                "prometheus,le=+Inf,svc=a lat_bucket=4 1700000000000000000",
                "prometheus,x=1 up=1 9",
            ]
        );
        assert_eq!(
            lines(&*build(Some(1), Some(true))),
            ["lat,svc=a 1=2,sum=3,count=4 9", "up,x=1 gauge=1 9",]
        );
        assert!(
            crate::codec::build_parser(
                &crate::codec::ParserConfig {
                    data_format: Some("prometheus".into()),
                    prometheus_metric_version: Some(3),
                    ..Default::default()
                },
                "influx",
            )
            .is_err()
        );
    }

    #[test]
    fn parser_errors_carry_on() {
        let (ms, e) =
            parse("ok 1\n{a=\"b\"} 1\nm{a=b} 1\nm{a=\"b} 1\nm abc\nm 1 2 3\nm 1 1.5\nm\nok2 2\n");
        assert_eq!(ms.len(), 2);
        let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8]);
        assert!(e[1].message.contains("must be quoted"));
        assert!(e[2].message.contains("unterminated"));
        assert!(e[3].message.contains("invalid value"));
        assert!(e[5].message.contains("invalid timestamp"));
        assert!(e[6].message.contains("missing value"));
        let (_, e) = parse("# TYPE h histogram\nh_bucket 1\n");
        assert!(e[0].message.contains("without \"le\""));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics_in_either_version(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "# TYPE h histogram\n", "# TYPE s summary\n", "# TYPE c counter\n",
                    "h_bucket{le=\"1\"} 2\n", "h_bucket{le=\"+Inf\",a=\"\"} 3\n", "h_sum 1\n",
                    "h_count NaN\n", "s{quantile=\"0.5\"} NaN\n", "s_sum 1 -5\n", "c 1 1700000000000\n",
                    "c_total 2\n", "x{a=\"b\"} 1e400\n", "{", "\"", "\n", "# EOF\n", "\u{0}",
                ]),
                0..40,
            ),
            version in 1u8..=2,
            ignore in proptest::bool::ANY,
        ) {
            let p = PrometheusFormat {
                parser: PrometheusParser { metric_version: version, openmetrics: None },
                ignore_timestamp: ignore,
            };
            let mut out = Vec::new();
            let _ = p.parse(parts.concat().as_bytes(), 5, &mut out);
            for m in &out {
                proptest::prop_assert!(!m.fields.is_empty());
                proptest::prop_assert!(!ignore || m.time == 5);
                proptest::prop_assert!(version == 1 || m.name == "prometheus");
            }
        }
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize_metric_name("a.b-c:d"), "a_b_c:d");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_label_name("é"), "_");
    }
}
