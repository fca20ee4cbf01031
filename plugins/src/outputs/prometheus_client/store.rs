//! The series the endpoint serves, and their cached rendering.
//!
//! Every write updates a map family → label set → samples and marks the touched families
//! dirty. A scrape re-renders only the dirty families (each family keeps its rendered text per
//! format) and joins the chunks; when nothing changed since the last scrape the previous body
//! (and its gzip) is served as is. So a scrape of 100k unchanged series costs a clone of a
//! `Bytes`, and one changed series costs one family's rendering plus a copy.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::prometheus::sanitize_label_name;
use crate::codec::prometheus_series::{Place, is_bound, place};
use crate::model::{FieldValue, Metric, ValueType};

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    fn index(self) -> usize {
        self as usize
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Telegraf's metric_version: 1 or 2 (the naming of scalar fields).
    pub metric_version: u8,
    pub string_as_label: bool,
    pub export_timestamp: bool,
    /// Series not updated for this long are dropped; `None` keeps them forever.
    pub expiration: Option<Duration>,
    /// `metric_types`: families (by name, glob) served as counters or gauges whatever type
    /// their metrics carry. Counter wins when both match.
    pub counter_types: Vec<glob::Pattern>,
    pub gauge_types: Vec<glob::Pattern>,
}

/// A sample value, kept exact for integers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Val {
    F(f64),
    I(i64),
    U(u64),
}

struct Sample {
    /// "", "_bucket", "_sum" or "_count".
    suffix: &'static str,
    /// The `le` or `quantile` label of buckets and quantiles, with its numeric value for order.
    bound: Option<(&'static str, String, f64)>,
    value: Val,
}

struct Series {
    samples: Vec<Sample>,
    time_ms: i64,
    updated: Instant,
}

struct Family {
    kind: ValueType,
    /// Keyed by the rendered label pairs (`a="1",b="2"`), which also sorts them.
    series: BTreeMap<String, Series>,
    /// Rendered text per format; `None` when the family changed since.
    rendered: [Option<Vec<u8>>; 2],
    /// No series was updated before this (a lower bound), so expiry can skip the family.
    oldest: Instant,
}

struct Cached {
    generation: u64,
    body: Bytes,
    gzip: Option<Bytes>,
}

pub struct Store {
    opts: StoreOptions,
    families: BTreeMap<String, Family>,
    /// Bumped on every change; a cached body is valid while its generation matches.
    generation: u64,
    cache: [Option<Cached>; 2],
    labels: Vec<(String, String)>,
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

fn write_value(out: &mut Vec<u8>, v: Val) {
    match v {
        Val::I(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Val::U(u) => out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
        Val::F(f) if f.is_nan() => out.extend_from_slice(b"NaN"),
        Val::F(f) if f.is_infinite() => {
            out.extend_from_slice(if f > 0.0 { b"+Inf" } else { b"-Inf" })
        }
        Val::F(f) => out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes()),
    }
}

impl Store {
    pub fn new(opts: StoreOptions) -> Store {
        Store {
            opts,
            families: BTreeMap::new(),
            generation: 0,
            cache: [None, None],
            labels: Vec::new(),
        }
    }

    pub fn series_count(&self) -> usize {
        self.families.values().map(|f| f.series.len()).sum()
    }

    /// Takes a batch: every numeric field updates (or creates) its sample.
    pub fn write(&mut self, batch: &[Metric], now: Instant) {
        let mut key = String::new();
        for m in batch {
            for (fkey, fval) in &m.fields {
                let value = match *fval {
                    FieldValue::Float(f) => Val::F(f),
                    FieldValue::Int(i) => Val::I(i),
                    FieldValue::UInt(u) => Val::U(u),
                    FieldValue::Bool(b) => Val::I(b as i64),
                    FieldValue::String(_) => continue,
                };
                let Some(place) = place(m, fkey, self.opts.metric_version) else {
                    continue;
                };
                self.series_labels(m, place.bound.as_ref().map(|b| b.0), &mut key);
                self.update(m, place, key.as_str(), value, now);
            }
        }
    }

    /// Renders the labels of `m` (tags, and string fields with string_as_label; minus the
    /// bound label a bucket or quantile takes) as `a="1",b="2"` into `key`.
    fn series_labels(&mut self, m: &Metric, bound: Option<&str>, key: &mut String) {
        let labels = &mut self.labels;
        labels.clear();
        let bound_from_tag = bound.filter(|l| m.tag(l).is_some());
        for (k, v) in &m.tags {
            if !v.is_empty() && Some(k.as_str()) != bound_from_tag {
                labels.push((sanitize_label_name(k), v.to_string()));
            }
        }
        if self.opts.string_as_label {
            for (k, v) in &m.fields {
                if let FieldValue::String(s) = v {
                    labels.push((sanitize_label_name(k), s.to_string()));
                }
            }
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        // Two keys that sanitize alike: the first (a tag before a string field) wins.
        labels.dedup_by(|a, b| a.0 == b.0);
        key.clear();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(k);
            key.push_str("=\"");
            escape_label_value(key, v);
            key.push('"');
        }
    }

    fn update(&mut self, m: &Metric, place: Place, labels: &str, value: Val, now: Instant) {
        let kind = self.kind_of(&place.family, m.kind);
        let family = match self.families.get_mut(place.family.as_str()) {
            Some(f) => f,
            None => self.families.entry(place.family).or_insert(Family {
                kind,
                series: BTreeMap::new(),
                rendered: [None, None],
                oldest: now,
            }),
        };
        family.kind = kind;
        family.rendered = [None, None];
        self.generation += 1;
        let series = match family.series.get_mut(labels) {
            Some(s) => s,
            None => family.series.entry(labels.to_string()).or_insert(Series {
                samples: Vec::new(),
                time_ms: 0,
                updated: now,
            }),
        };
        series.time_ms = m.time.div_euclid(1_000_000);
        series.updated = now;
        let bound = place.bound.map(|(l, text)| {
            let v = is_bound(&text).unwrap_or(f64::NAN);
            (l, text, v)
        });
        let same = |s: &Sample| {
            s.suffix == place.suffix
                && match (&s.bound, &bound) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.2 == b.2 || a.1 == b.1,
                    _ => false,
                }
        };
        match series.samples.iter_mut().find(|s| same(s)) {
            Some(s) => s.value = value,
            None => {
                series.samples.push(Sample {
                    suffix: place.suffix,
                    bound,
                    value,
                });
                // Buckets and quantiles by bound, then _sum, then _count.
                let rank = |s: &Sample| match s.suffix {
                    "_sum" => 1,
                    "_count" => 2,
                    _ => 0,
                };
                series.samples.sort_by(|a, b| {
                    rank(a).cmp(&rank(b)).then_with(|| {
                        let (x, y) = (a.bound.as_ref(), b.bound.as_ref());
                        let (x, y) = (x.map_or(0.0, |b| b.2), y.map_or(0.0, |b| b.2));
                        x.total_cmp(&y)
                    })
                });
            }
        }
    }

    /// The type a family is served with: `metric_types` overrides a scalar's own type
    /// (histograms and summaries keep theirs, their samples need it).
    fn kind_of(&self, family: &str, kind: ValueType) -> ValueType {
        if matches!(kind, ValueType::Histogram | ValueType::Summary) {
            return kind;
        }
        let o = &self.opts;
        if o.counter_types.iter().any(|p| p.matches(family)) {
            ValueType::Counter
        } else if o.gauge_types.iter().any(|p| p.matches(family)) {
            ValueType::Gauge
        } else {
            kind
        }
    }

    /// Drops series not updated within the expiration interval.
    pub fn expire(&mut self, now: Instant) {
        let Some(exp) = self.opts.expiration else {
            return;
        };
        let Some(cutoff) = now.checked_sub(exp) else {
            return;
        };
        let mut changed = false;
        self.families.retain(|_, f| {
            if f.oldest >= cutoff {
                return true;
            }
            let before = f.series.len();
            f.series.retain(|_, s| s.updated >= cutoff);
            f.oldest = f.series.values().map(|s| s.updated).min().unwrap_or(now);
            if f.series.len() != before {
                f.rendered = [None, None];
                changed = true;
            }
            !f.series.is_empty()
        });
        if changed {
            self.generation += 1;
        }
    }

    /// The body of every family in `format` (without OpenMetrics' `# EOF`), and its gzip when
    /// `gzip` is asked; rendered again only for families that changed since the last call.
    pub fn render(&mut self, format: Format, gzip: bool) -> (Bytes, Option<Bytes>) {
        let i = format.index();
        let fresh = matches!(&self.cache[i], Some(c) if c.generation == self.generation);
        if !fresh {
            let opts = &self.opts;
            let mut total = 0;
            for (name, f) in self.families.iter_mut() {
                let chunk = f.rendered[i].get_or_insert_with(|| {
                    let mut out = Vec::new();
                    render_family(&mut out, name, f.kind, &f.series, format, opts);
                    out
                });
                total += chunk.len();
            }
            let mut body = Vec::with_capacity(total);
            for f in self.families.values() {
                body.extend_from_slice(f.rendered[i].as_deref().unwrap_or_default());
            }
            self.cache[i] = Some(Cached {
                generation: self.generation,
                body: body.into(),
                gzip: None,
            });
        }
        let c = self.cache[i].as_mut().expect("cache filled above");
        if gzip && c.gzip.is_none() {
            c.gzip = Some(gzip_bytes(&c.body).into());
        }
        (c.body.clone(), if gzip { c.gzip.clone() } else { None })
    }
}

pub fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(data);
    gz.finish().unwrap_or_default()
}

fn render_family(
    out: &mut Vec<u8>,
    name: &str,
    kind: ValueType,
    series: &BTreeMap<String, Series>,
    format: Format,
    opts: &StoreOptions,
) {
    let om = format == Format::OpenMetrics;
    // OpenMetrics names a counter family without `_total` and requires it on the sample; a
    // counter whose name lacks `_total` is served as `unknown` so its series keep the same
    // name in both formats.
    let (type_name, kind_text) = match kind {
        ValueType::Counter if om => match name.strip_suffix("_total") {
            Some(base) => (base, "counter"),
            None => (name, "unknown"),
        },
        ValueType::Counter => (name, "counter"),
        ValueType::Gauge => (name, "gauge"),
        ValueType::Histogram => (name, "histogram"),
        ValueType::Summary => (name, "summary"),
        ValueType::Untyped if om => (name, "unknown"),
        ValueType::Untyped => (name, "untyped"),
    };
    // Telegraf's help text, so that a scrape of sonde reads like a scrape of Telegraf.
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(type_name.as_bytes());
    out.extend_from_slice(b" Telegraf collected metric\n");
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(type_name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind_text.as_bytes());
    out.push(b'\n');
    for (labels, s) in series {
        for sample in &s.samples {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(sample.suffix.as_bytes());
            if !labels.is_empty() || sample.bound.is_some() {
                out.push(b'{');
                out.extend_from_slice(labels.as_bytes());
                if let Some((l, text, _)) = &sample.bound {
                    if !labels.is_empty() {
                        out.push(b',');
                    }
                    out.extend_from_slice(l.as_bytes());
                    out.extend_from_slice(b"=\"");
                    out.extend_from_slice(text.as_bytes());
                    out.push(b'"');
                }
                out.push(b'}');
            }
            out.push(b' ');
            write_value(out, sample.value);
            if opts.export_timestamp {
                out.push(b' ');
                if om {
                    // OpenMetrics timestamps are seconds.
                    let secs = s.time_ms.div_euclid(1000);
                    let ms = s.time_ms.rem_euclid(1000);
                    out.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
                    let _ = write!(out, ".{ms:03}");
                } else {
                    out.extend_from_slice(itoa::Buffer::new().format(s.time_ms).as_bytes());
                }
            }
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> StoreOptions {
        StoreOptions {
            metric_version: 2,
            string_as_label: true,
            export_timestamp: false,
            expiration: None,
            counter_types: Vec::new(),
            gauge_types: Vec::new(),
        }
    }

    fn text(store: &mut Store, format: Format) -> String {
        String::from_utf8(store.render(format, false).0.to_vec()).unwrap()
    }

    #[test]
    fn names_labels_types_and_escaping() {
        let mut s = Store::new(opts());
        let now = Instant::now();
        s.write(
            &[
                Metric::new("cpu", 0)
                    .with_kind(ValueType::Gauge)
                    .with_tag("host", "a\"b\\c\nd")
                    .with_tag("empty", "")
                    .with_tag("cpu-id", "cpu0")
                    .with_field("usage.idle", 99.5)
                    .with_field("up", true)
                    .with_field("state", "ok"),
                Metric::new("prometheus", 0)
                    .with_kind(ValueType::Counter)
                    .with_field("http_requests_total", 7u64),
                Metric::new("mem", 0).with_field("free", -3i64),
            ],
            now,
        );
        let t = text(&mut s, Format::Text);
        assert_eq!(
            t,
            "# HELP cpu_up Telegraf collected metric\n# TYPE cpu_up gauge\n\
             cpu_up{cpu_id=\"cpu0\",host=\"a\\\"b\\\\c\\nd\",state=\"ok\"} 1\n\
             # HELP cpu_usage_idle Telegraf collected metric\n# TYPE cpu_usage_idle gauge\n\
             cpu_usage_idle{cpu_id=\"cpu0\",host=\"a\\\"b\\\\c\\nd\",state=\"ok\"} 99.5\n\
             # HELP http_requests_total Telegraf collected metric\n# TYPE http_requests_total counter\n\
             http_requests_total 7\n\
             # HELP mem_free Telegraf collected metric\n# TYPE mem_free untyped\n\
             mem_free -3\n"
        );
        let om = text(&mut s, Format::OpenMetrics);
        assert!(om.contains("# HELP http_requests Telegraf collected metric\n# TYPE http_requests counter\nhttp_requests_total 7\n"));
        assert!(
            om.contains("# HELP mem_free Telegraf collected metric\n# TYPE mem_free unknown\n")
        );
    }

    #[test]
    fn version_1_naming() {
        let mut s = Store::new(StoreOptions {
            metric_version: 1,
            ..opts()
        });
        s.write(
            &[
                Metric::new("go_goroutines", 0)
                    .with_kind(ValueType::Gauge)
                    .with_field("gauge", 12.0),
                Metric::new("up", 0).with_field("value", 1.0),
                Metric::new("cpu", 0).with_field("idle", 1.0),
            ],
            Instant::now(),
        );
        let t = text(&mut s, Format::Text);
        assert!(
            t.contains("# HELP go_goroutines Telegraf collected metric\n# TYPE go_goroutines gauge\ngo_goroutines 12.0\n"),
            "{t}"
        );
        assert!(t.contains("\nup 1.0\n"), "{t}");
        assert!(t.contains("\ncpu_idle 1.0\n"), "{t}");
    }

    #[test]
    fn histograms_in_both_shapes_render_in_order() {
        let mut s = Store::new(opts());
        let h = |le: &str, v: u64| {
            Metric::new("prometheus", 0)
                .with_kind(ValueType::Histogram)
                .with_tag("path", "/")
                .with_tag("le", le)
                .with_field("req_seconds_bucket", v)
        };
        s.write(
            &[
                h("+Inf", 10),
                h("0.5", 4),
                Metric::new("prometheus", 0)
                    .with_kind(ValueType::Histogram)
                    .with_tag("path", "/")
                    .with_field("req_seconds_sum", 3.5)
                    .with_field("req_seconds_count", 10u64),
                h("0.1", 1),
                Metric::new("lat", 0)
                    .with_kind(ValueType::Summary)
                    .with_field("0.99", 8.0)
                    .with_field("sum", 20.0)
                    .with_field("count", 4u64)
                    .with_field("0.5", 5.0),
            ],
            Instant::now(),
        );
        assert_eq!(
            text(&mut s, Format::Text),
            "# HELP lat Telegraf collected metric\n# TYPE lat summary\n\
             lat{quantile=\"0.5\"} 5.0\n\
             lat{quantile=\"0.99\"} 8.0\n\
             lat_sum 20.0\n\
             lat_count 4\n\
             # HELP req_seconds Telegraf collected metric\n# TYPE req_seconds histogram\n\
             req_seconds_bucket{path=\"/\",le=\"0.1\"} 1\n\
             req_seconds_bucket{path=\"/\",le=\"0.5\"} 4\n\
             req_seconds_bucket{path=\"/\",le=\"+Inf\"} 10\n\
             req_seconds_sum{path=\"/\"} 3.5\n\
             req_seconds_count{path=\"/\"} 10\n"
        );
    }

    #[test]
    fn cache_is_reused_until_something_changes() {
        let mut s = Store::new(opts());
        let now = Instant::now();
        s.write(&[Metric::new("a", 0).with_field("x", 1i64)], now);
        let (b1, g1) = s.render(Format::Text, true);
        let (b2, g2) = s.render(Format::Text, true);
        // Same allocation: nothing was rendered or compressed again.
        assert_eq!(b1.as_ptr(), b2.as_ptr());
        assert_eq!(g1.unwrap().as_ptr(), g2.unwrap().as_ptr());
        s.write(&[Metric::new("a", 0).with_field("x", 2i64)], now);
        let (b3, _) = s.render(Format::Text, false);
        assert_eq!(
            &b3[..],
            b"# HELP a_x Telegraf collected metric\n# TYPE a_x untyped\na_x 2\n"
        );
    }

    #[test]
    fn series_expire() {
        let mut s = Store::new(StoreOptions {
            expiration: Some(Duration::from_secs(60)),
            ..opts()
        });
        let t0 = Instant::now();
        s.write(
            &[Metric::new("a", 0).with_tag("k", "1").with_field("x", 1i64)],
            t0,
        );
        let t1 = t0 + Duration::from_secs(30);
        s.write(
            &[Metric::new("a", 0).with_tag("k", "2").with_field("x", 1i64)],
            t1,
        );
        s.expire(t0 + Duration::from_secs(61));
        assert_eq!(s.series_count(), 1);
        assert!(text(&mut s, Format::Text).contains("k=\"2\""));
        s.expire(t1 + Duration::from_secs(61));
        assert_eq!(s.series_count(), 0);
        assert_eq!(text(&mut s, Format::Text), "");
    }

    #[test]
    fn timestamps_in_both_formats() {
        let mut s = Store::new(StoreOptions {
            export_timestamp: true,
            ..opts()
        });
        s.write(
            &[Metric::new("a", 1_700_000_000_123_000_000)
                .with_kind(ValueType::Gauge)
                .with_field("x", 1.5)],
            Instant::now(),
        );
        assert!(text(&mut s, Format::Text).contains("a_x 1.5 1700000000123\n"));
        assert!(text(&mut s, Format::OpenMetrics).contains("a_x 1.5 1700000000.123\n"));
    }
}
