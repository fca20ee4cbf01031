//! Metrics → CloudWatch datums → PutMetricData request bodies in the Query protocol
//! (`application/x-www-form-urlencoded`), split so that each request holds at most
//! [`MAX_DATUMS`] datums and at most [`MAX_BODY`] bytes of (uncompressed) body.

use crate::model::{FieldValue, Metric};

/// PutMetricData takes at most 1,000 datums per request.
pub const MAX_DATUMS: usize = 1000;
/// ... and at most 1 MB of request body.
pub const MAX_BODY: usize = 1_000_000;
/// CloudWatch's limits on names and values.
pub const MAX_NAME: usize = 255;
pub const MAX_DIMENSION_VALUE: usize = 1024;
/// CloudWatch refuses values of a magnitude outside this range (other than 0); the same bounds
/// as Telegraf's output.
const MIN_MAGNITUDE: f64 = 8.515920e-109;
const MAX_MAGNITUDE: f64 = 1.174271e+108;

/// What one datum carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Single(f64),
    Stats {
        min: f64,
        max: f64,
        sum: f64,
        count: f64,
    },
}

/// One MetricDatum, borrowing its names from the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum<'a> {
    pub measurement: &'a str,
    /// The field name (for a statistic set, without its `_min`/`_max`/... suffix).
    pub field: &'a str,
    /// Range of this datum's dimensions in [`Datums::dims`].
    pub dims: (u32, u32),
    pub value: Value,
    pub unit: Option<&'static str>,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Index of the metric in the batch it came from.
    pub metric: u32,
}

impl Datum<'_> {
    /// `<measurement>_<field>`, CloudWatch's metric name.
    pub fn name(&self) -> String {
        format!("{}_{}", self.measurement, self.field)
    }
}

/// Options of the mapping.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub write_statistics: bool,
    pub max_dimensions: usize,
}

/// What did not become a datum, for the counts and warnings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Skipped {
    /// String fields, NaN and infinities, values CloudWatch cannot store.
    pub values: u64,
    /// Metrics that carried no numeric field at all (nothing sent for them).
    pub metrics: Vec<u32>,
    /// Metrics that had more dimensions than `max_dimensions` (the extra tags were dropped).
    pub over_max_dimensions: u64,
    /// Datums dropped for a name or dimension CloudWatch would refuse, with the reason of the
    /// first one.
    pub invalid: u64,
    pub invalid_reason: Option<String>,
    /// The metrics those datums came from.
    pub invalid_metrics: Vec<u32>,
}

/// The datums of a batch and the dimension pairs they share.
#[derive(Debug, Default)]
pub struct Datums<'a> {
    pub datums: Vec<Datum<'a>>,
    pub dims: Vec<(&'a str, &'a str)>,
    pub skipped: Skipped,
}

/// A field's value as CloudWatch takes it: numbers and booleans (1/0), finite and in range.
fn number(v: &FieldValue) -> Option<f64> {
    let x = match *v {
        FieldValue::Float(x) => x,
        FieldValue::Int(x) => x as f64,
        FieldValue::UInt(x) => x as f64,
        FieldValue::Bool(b) => b as u8 as f64,
        FieldValue::String(_) => return None,
    };
    let m = x.abs();
    if !x.is_finite() || m > MAX_MAGNITUDE || (m != 0.0 && m < MIN_MAGNITUDE) {
        return None;
    }
    Some(x)
}

/// The unit a field's name announces.
pub fn unit_of(field: &str) -> Option<&'static str> {
    if field.ends_with("_bytes") || field == "bytes" {
        Some("Bytes")
    } else if field.ends_with("_seconds") || field == "seconds" {
        Some("Seconds")
    } else if field.ends_with("_percent") || field == "percent" {
        Some("Percent")
    } else {
        None
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stat {
    Min,
    Max,
    Sum,
    Count,
}

fn stat_of(field: &str) -> Option<(Stat, &str)> {
    for (suffix, s) in [
        ("_min", Stat::Min),
        ("_max", Stat::Max),
        ("_sum", Stat::Sum),
        ("_count", Stat::Count),
    ] {
        if let Some(base) = field.strip_suffix(suffix)
            && !base.is_empty()
        {
            return Some((s, base));
        }
    }
    None
}

/// Maps a batch to datums: one per numeric field named `<measurement>_<field>`, dimensions
/// from the tags (host first, then by name; empty values skipped; at most `max_dimensions`),
/// and with `write_statistics`, each complete `_min`/`_max`/`_sum`/`_count` group of a metric
/// as one statistic set (an incomplete group is sent field by field).
pub fn datums<'a>(batch: &'a [Metric], map: &Mapping) -> Datums<'a> {
    let mut out = Datums {
        datums: Vec::with_capacity(batch.len() * 2),
        dims: Vec::with_capacity(batch.len() * 2),
        skipped: Skipped::default(),
    };
    // Statistic groups of the current metric: base name → [min, max, sum, count].
    let mut groups: Vec<(&str, [Option<f64>; 4])> = Vec::new();
    for (mi, m) in batch.iter().enumerate() {
        let mi = mi as u32;
        let before = out.datums.len();
        // Dimensions, shared by every datum of the metric.
        let d0 = out.dims.len();
        if let Some(h) = m.tag("host").filter(|h| !h.is_empty()) {
            out.dims.push(("host", h));
        }
        let mut over = false;
        for (k, v) in &m.tags {
            if k == "host" || v.is_empty() {
                continue;
            }
            if out.dims.len() - d0 >= map.max_dimensions {
                over = true;
                break;
            }
            out.dims.push((k.as_str(), v.as_str()));
        }
        if out.dims.len() - d0 > map.max_dimensions {
            out.dims.truncate(d0 + map.max_dimensions);
            over = true;
        }
        if over {
            out.skipped.over_max_dimensions += 1;
        }
        let dims = (d0 as u32, out.dims.len() as u32);
        let invalid = out.dims[d0..].iter().find_map(|(k, v)| {
            if k.len() > MAX_NAME {
                Some(format!(
                    "dimension name {k:?} is longer than {MAX_NAME} bytes"
                ))
            } else if v.len() > MAX_DIMENSION_VALUE {
                Some(format!(
                    "value of dimension {k:?} is longer than {MAX_DIMENSION_VALUE} bytes"
                ))
            } else {
                None
            }
        });
        let time_ms = m.time.div_euclid(1_000_000);
        groups.clear();
        let push = |out: &mut Datums<'a>, field: &'a str, value: Value| {
            let unit = unit_of(field);
            let d = Datum {
                measurement: m.name.as_str(),
                field,
                dims,
                value,
                unit,
                time_ms,
                metric: mi,
            };
            let reason = invalid.clone().or_else(|| {
                (m.name.len() + 1 + field.len() > MAX_NAME)
                    .then(|| format!("metric name {:?} is longer than {MAX_NAME} bytes", d.name()))
            });
            match reason {
                Some(r) => {
                    out.skipped.invalid += 1;
                    if out.skipped.invalid_metrics.last() != Some(&mi) {
                        out.skipped.invalid_metrics.push(mi);
                    }
                    if out.skipped.invalid_reason.is_none() {
                        out.skipped.invalid_reason = Some(r);
                    }
                }
                None => out.datums.push(d),
            }
        };
        for (k, v) in &m.fields {
            let Some(x) = number(v) else {
                out.skipped.values += 1;
                continue;
            };
            if map.write_statistics
                && let Some((s, base)) = stat_of(k)
            {
                match groups.iter_mut().find(|g| g.0 == base) {
                    Some(g) => g.1[s as usize] = Some(x),
                    None => {
                        let mut vals = [None; 4];
                        vals[s as usize] = Some(x);
                        groups.push((base, vals));
                    }
                }
                continue;
            }
            push(&mut out, k.as_str(), Value::Single(x));
        }
        for (base, vals) in &groups {
            match *vals {
                [Some(min), Some(max), Some(sum), Some(count)] => push(
                    &mut out,
                    base,
                    Value::Stats {
                        min,
                        max,
                        sum,
                        count,
                    },
                ),
                _ => {
                    // Incomplete: each field on its own, under its own name.
                    for (k, v) in &m.fields {
                        if let Some((_, b)) = stat_of(k)
                            && b == *base
                            && let Some(x) = number(v)
                        {
                            push(&mut out, k.as_str(), Value::Single(x));
                        }
                    }
                }
            }
        }
        if out.datums.len() == before && !m.fields.iter().any(|(_, v)| number(v).is_some()) {
            out.skipped.metrics.push(mi);
        }
    }
    out
}

/// Percent-encodes for a form body: unreserved characters as they are, the rest as %XX.
pub fn form_encode(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

/// `2024-01-02T03:04:05.678Z` of milliseconds since the epoch.
pub fn iso8601(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = crate::common::time::civil_from_days(days);
    fn two(out: &mut Vec<u8>, n: i64) {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    }
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, sod / 3600);
    out.extend_from_slice(b"%3A");
    two(out, sod / 60 % 60);
    out.extend_from_slice(b"%3A");
    two(out, sod % 60);
    out.push(b'.');
    out.push(b'0' + (milli / 100) as u8);
    two(out, milli % 100);
    out.push(b'Z');
}

fn write_f64(out: &mut Vec<u8>, x: f64) {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(x as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(x).as_bytes());
    }
}

/// Builds PutMetricData bodies.
pub struct Encoder {
    /// `Action=PutMetricData&Version=2010-08-01&Namespace=<ns>`.
    head: Vec<u8>,
    high_resolution: bool,
    max_datums: usize,
    max_body: usize,
}

/// One request's body and which datums it holds.
#[derive(Debug)]
pub struct Request {
    pub body: Vec<u8>,
    /// Range of datums (indexes into the slice given to [`Encoder::encode`]).
    pub datums: std::ops::Range<usize>,
}

impl Encoder {
    pub fn new(namespace: &str, high_resolution: bool) -> Encoder {
        let mut head = b"Action=PutMetricData&Version=2010-08-01&Namespace=".to_vec();
        form_encode(&mut head, namespace);
        Encoder {
            head,
            high_resolution,
            max_datums: MAX_DATUMS,
            max_body: MAX_BODY,
        }
    }

    /// Lower limits, for tests.
    pub fn with_limits(mut self, max_datums: usize, max_body: usize) -> Encoder {
        self.max_datums = max_datums.clamp(1, MAX_DATUMS);
        self.max_body = max_body.min(MAX_BODY);
        self
    }

    /// Appends member `n` (1-based) of MetricData.
    fn datum(&self, out: &mut Vec<u8>, n: usize, d: &Datum, dims: &[(&str, &str)]) {
        let mut nb = itoa::Buffer::new();
        let n = nb.format(n);
        let key = |out: &mut Vec<u8>, k: &str| {
            out.extend_from_slice(b"&MetricData.member.");
            out.extend_from_slice(n.as_bytes());
            out.push(b'.');
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
        };
        key(out, "MetricName");
        form_encode(out, d.measurement);
        out.push(b'_');
        form_encode(out, d.field);
        let mut jb = itoa::Buffer::new();
        for (j, (k, v)) in dims[d.dims.0 as usize..d.dims.1 as usize]
            .iter()
            .enumerate()
        {
            let j = jb.format(j + 1);
            for (part, text) in [("Name=", k), ("Value=", v)] {
                out.extend_from_slice(b"&MetricData.member.");
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b".Dimensions.member.");
                out.extend_from_slice(j.as_bytes());
                out.push(b'.');
                out.extend_from_slice(part.as_bytes());
                form_encode(out, text);
            }
        }
        key(out, "Timestamp");
        iso8601(out, d.time_ms);
        match d.value {
            Value::Single(x) => {
                key(out, "Value");
                write_f64(out, x);
            }
            Value::Stats {
                min,
                max,
                sum,
                count,
            } => {
                for (k, x) in [
                    ("StatisticValues.Minimum", min),
                    ("StatisticValues.Maximum", max),
                    ("StatisticValues.Sum", sum),
                    ("StatisticValues.SampleCount", count),
                ] {
                    key(out, k);
                    write_f64(out, x);
                }
            }
        }
        if let Some(u) = d.unit {
            key(out, "Unit");
            out.extend_from_slice(u.as_bytes());
        }
        if self.high_resolution {
            key(out, "StorageResolution");
            out.push(b'1');
        }
    }

    /// Splits `datums` into request bodies within both limits, in order.
    pub fn encode(&self, datums: &[Datum], dims: &[(&str, &str)]) -> Vec<Request> {
        let mut reqs = Vec::new();
        let mut body: Vec<u8> = Vec::new();
        let mut start = 0;
        for (i, d) in datums.iter().enumerate() {
            if body.is_empty() {
                body.reserve(64 * 1024);
                body.extend_from_slice(&self.head);
                start = i;
            }
            let mark = body.len();
            self.datum(&mut body, i - start + 1, d, dims);
            if body.len() > self.max_body && i > start {
                // Does not fit: close this request and start the next one with it.
                body.truncate(mark);
                reqs.push(Request {
                    body: std::mem::take(&mut body),
                    datums: start..i,
                });
                body.extend_from_slice(&self.head);
                start = i;
                self.datum(&mut body, 1, d, dims);
            }
            if i + 1 - start == self.max_datums {
                reqs.push(Request {
                    body: std::mem::take(&mut body),
                    datums: start..i + 1,
                });
            }
        }
        if !body.is_empty() {
            reqs.push(Request {
                body,
                datums: start..datums.len(),
            });
        }
        reqs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &[u8]) -> Vec<(String, String)> {
        fn dec(s: &str) -> String {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        }
        std::str::from_utf8(body)
            .unwrap()
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (dec(k), dec(v))
            })
            .collect()
    }

    fn get<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
        f.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    const MAP: Mapping = Mapping {
        write_statistics: false,
        max_dimensions: 10,
    };

    #[test]
    fn timestamps_are_iso8601_utc() {
        let mut out = Vec::new();
        iso8601(&mut out, 1_700_000_000_123);
        assert_eq!(out, b"2023-11-14T22%3A13%3A20.123Z");
        out.clear();
        iso8601(&mut out, 951_825_600_007); // leap day 2000
        assert_eq!(out, b"2000-02-29T12%3A00%3A00.007Z");
        out.clear();
        iso8601(&mut out, 0);
        assert_eq!(out, b"1970-01-01T00%3A00%3A00.000Z");
    }

    #[test]
    fn maps_names_dimensions_values_and_units() {
        let batch = [Metric::new("mem", 1_700_000_000_123_456_789)
            .with_tag("zone", "b")
            .with_tag("empty", "")
            .with_tag("host", "web 1")
            .with_tag("az", "eu-1a")
            .with_field("used_percent", 42.5)
            .with_field("available_bytes", 1024u64)
            .with_field("up", true)
            .with_field("down", false)
            .with_field("state", "ok")
            .with_field("nan", f64::NAN)
            .with_field("inf", f64::INFINITY)
            .with_field("tiny", 1e-200)
            .with_field("uptime_seconds", -3i64)];
        let d = datums(&batch, &MAP);
        assert_eq!(d.skipped.values, 4);
        assert!(d.skipped.metrics.is_empty());
        assert_eq!(d.datums.len(), 5);
        let names: Vec<String> = d.datums.iter().map(|x| x.name()).collect();
        assert_eq!(
            names,
            [
                "mem_used_percent",
                "mem_available_bytes",
                "mem_up",
                "mem_down",
                "mem_uptime_seconds"
            ]
        );
        let units: Vec<_> = d.datums.iter().map(|x| x.unit).collect();
        assert_eq!(
            units,
            [Some("Percent"), Some("Bytes"), None, None, Some("Seconds")]
        );
        assert_eq!(d.dims, [("host", "web 1"), ("az", "eu-1a"), ("zone", "b")]);
        let reqs = Encoder::new("Sonde/Test", true).encode(&d.datums, &d.dims);
        assert_eq!(reqs.len(), 1);
        let f = form(&reqs[0].body);
        assert_eq!(get(&f, "Action"), Some("PutMetricData"));
        assert_eq!(get(&f, "Version"), Some("2010-08-01"));
        assert_eq!(get(&f, "Namespace"), Some("Sonde/Test"));
        assert_eq!(
            get(&f, "MetricData.member.1.MetricName"),
            Some("mem_used_percent")
        );
        assert_eq!(
            get(&f, "MetricData.member.1.Dimensions.member.1.Name"),
            Some("host")
        );
        assert_eq!(
            get(&f, "MetricData.member.1.Dimensions.member.1.Value"),
            Some("web 1")
        );
        assert_eq!(
            get(&f, "MetricData.member.1.Dimensions.member.3.Value"),
            Some("b")
        );
        assert_eq!(get(&f, "MetricData.member.1.Value"), Some("42.5"));
        assert_eq!(get(&f, "MetricData.member.1.Unit"), Some("Percent"));
        assert_eq!(
            get(&f, "MetricData.member.1.Timestamp"),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(get(&f, "MetricData.member.1.StorageResolution"), Some("1"));
        assert_eq!(get(&f, "MetricData.member.2.Value"), Some("1024"));
        assert_eq!(get(&f, "MetricData.member.3.Value"), Some("1"));
        assert_eq!(get(&f, "MetricData.member.4.Value"), Some("0"));
        assert_eq!(get(&f, "MetricData.member.4.Unit"), None);
        assert_eq!(get(&f, "MetricData.member.5.Value"), Some("-3"));
        assert_eq!(get(&f, "MetricData.member.6.MetricName"), None);
    }

    #[test]
    fn string_only_metrics_are_reported() {
        let batch = [
            Metric::new("a", 0).with_field("s", "x"),
            Metric::new("b", 0).with_field("v", 1.0),
        ];
        let d = datums(&batch, &MAP);
        assert_eq!(d.skipped.metrics, [0]);
        assert_eq!(d.datums.len(), 1);
        assert_eq!(d.datums[0].metric, 1);
    }

    #[test]
    fn extra_dimensions_are_dropped_and_counted() {
        let mut m = Metric::new("m", 0).with_field("v", 1.0);
        for i in 0..5 {
            m.add_tag(format!("t{i}"), "v");
        }
        m.add_tag("host", "h");
        let map = Mapping {
            max_dimensions: 3,
            ..MAP
        };
        let batch = [m];
        let d = datums(&batch, &map);
        assert_eq!(d.dims, [("host", "h"), ("t0", "v"), ("t1", "v")]);
        assert_eq!(d.skipped.over_max_dimensions, 1);
        let d = datums(&batch, &MAP);
        assert_eq!(d.dims.len(), 6);
        assert_eq!(d.skipped.over_max_dimensions, 0);
    }

    #[test]
    fn statistic_sets_when_complete() {
        let batch = [Metric::new("rt", 60_000_000_000)
            .with_tag("host", "h")
            .with_field("latency_seconds_min", 0.1)
            .with_field("latency_seconds_max", 0.9)
            .with_field("latency_seconds_sum", 3.0)
            .with_field("latency_seconds_count", 10u64)
            .with_field("size_min", 1.0)
            .with_field("size_max", 5.0)
            .with_field("plain", 7.0)];
        let map = Mapping {
            write_statistics: true,
            ..MAP
        };
        let d = datums(&batch, &map);
        let got: Vec<(String, Value, Option<&str>)> = d
            .datums
            .iter()
            .map(|x| (x.name(), x.value, x.unit))
            .collect();
        assert_eq!(
            got,
            [
                ("rt_plain".into(), Value::Single(7.0), None),
                (
                    "rt_latency_seconds".into(),
                    Value::Stats {
                        min: 0.1,
                        max: 0.9,
                        sum: 3.0,
                        count: 10.0
                    },
                    Some("Seconds")
                ),
                ("rt_size_min".into(), Value::Single(1.0), None),
                ("rt_size_max".into(), Value::Single(5.0), None),
            ]
        );
        let reqs = Encoder::new("N", false).encode(&d.datums, &d.dims);
        let f = form(&reqs[0].body);
        assert_eq!(
            get(&f, "MetricData.member.2.StatisticValues.SampleCount"),
            Some("10")
        );
        assert_eq!(
            get(&f, "MetricData.member.2.StatisticValues.Minimum"),
            Some("0.1")
        );
        assert_eq!(get(&f, "MetricData.member.2.Value"), None);
        assert_eq!(get(&f, "MetricData.member.1.StorageResolution"), None);
        // Without write_statistics every field is its own datum.
        assert_eq!(datums(&batch, &MAP).datums.len(), 7);
    }

    #[test]
    fn over_long_names_and_values_are_dropped_with_a_reason() {
        let long = "x".repeat(300);
        let batch = [
            Metric::new("m", 0)
                .with_tag("host", "x".repeat(1025))
                .with_field("v", 1.0),
            Metric::new("m", 0).with_field(long.as_str(), 1.0),
            Metric::new("m", 0).with_field("ok", 1.0),
        ];
        let d = datums(&batch, &MAP);
        assert_eq!(d.datums.len(), 1);
        assert_eq!(d.skipped.invalid, 2);
        assert!(d.skipped.invalid_reason.unwrap().contains("host"));
    }

    #[test]
    fn requests_respect_both_limits() {
        let long = "v".repeat(1000);
        let batch: Vec<Metric> = (0..2500)
            .map(|i| {
                Metric::new("m", i)
                    .with_tag("host", "h")
                    .with_tag("k", format!("{long}{i}"))
                    .with_field("v", i as f64)
            })
            .collect();
        let d = datums(&batch, &MAP);
        let reqs = Encoder::new("N", false).encode(&d.datums, &d.dims);
        let mut next = 0;
        for r in &reqs {
            assert!(r.body.len() <= MAX_BODY, "{}", r.body.len());
            assert!(r.datums.len() <= MAX_DATUMS);
            assert_eq!(r.datums.start, next);
            next = r.datums.end;
            let f = form(&r.body);
            let n = r.datums.len();
            assert!(get(&f, &format!("MetricData.member.{n}.Value")).is_some());
            assert!(get(&f, &format!("MetricData.member.{}.Value", n + 1)).is_none());
            let first = &d.datums[r.datums.start];
            assert_eq!(
                get(&f, "MetricData.member.1.Value").unwrap(),
                match first.value {
                    Value::Single(x) => x.to_string(),
                    _ => unreachable!(),
                }
            );
        }
        assert_eq!(next, 2500);
        assert!(reqs.len() >= 3, "1 MB must split 2.5 MB: {}", reqs.len());
        // Small datums: the count limit splits.
        let small: Vec<Metric> = (0..2001)
            .map(|i| Metric::new("m", i).with_field("v", 1.0))
            .collect();
        let d = datums(&small, &MAP);
        let reqs = Encoder::new("N", false).encode(&d.datums, &d.dims);
        let sizes: Vec<usize> = reqs.iter().map(|r| r.datums.len()).collect();
        assert_eq!(sizes, [1000, 1000, 1]);
        // And lowered limits for tests.
        let reqs = Encoder::new("N", false)
            .with_limits(2, MAX_BODY)
            .encode(&d.datums[..5], &d.dims);
        assert_eq!(reqs.len(), 3);
    }

    proptest::proptest! {
        /// Whatever the tags and values, every request stays within both limits and every datum
        /// is in exactly one request.
        #[test]
        fn batching_covers_every_datum(
            n in 1usize..300,
            tag_len in 0usize..3000,
            max_datums in 1usize..50,
            max_body in 200usize..20_000,
        ) {
            let tag = "é".repeat(tag_len / 2);
            let batch: Vec<Metric> = (0..n)
                .map(|i| Metric::new("m", i as i64).with_tag("t", tag.as_str()).with_field("v", i as f64))
                .collect();
            let d = datums(&batch, &MAP);
            let reqs = Encoder::new("N", false).with_limits(max_datums, max_body).encode(&d.datums, &d.dims);
            let mut next = 0;
            for r in &reqs {
                proptest::prop_assert!(r.datums.len() <= max_datums);
                proptest::prop_assert!(r.body.len() <= max_body || r.datums.len() == 1);
                proptest::prop_assert_eq!(r.datums.start, next);
                next = r.datums.end;
            }
            proptest::prop_assert_eq!(next, d.datums.len());
        }
    }
}
