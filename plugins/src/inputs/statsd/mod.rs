//! `inputs.statsd`: a StatsD server (UDP or TCP) that aggregates what it receives and emits
//! the aggregates every `interval` (the input's, else the agent's), with Telegraf's measurement
//! and field names, DogStatsD extensions (tags, events, service checks, distributions) and
//! Telegraf's graphite-style templates.
//!
//! Packets go from the socket into a queue of `allowed_pending_messages`, drained by
//! `number_workers_threads` parser tasks; when they fall behind, further packets are dropped
//! and counted, never blocking the socket reader.

#[cfg(test)]
mod fuzz_tests;
mod template;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::codec::series_memo::{Miss, SeriesMemo};
use crate::common::server::normalize_address;
use crate::config_types::{Duration as Dur, Size};
use crate::model::{Metric, Str, ValueType, now_ns};
use crate::plugin::{BuildContext, InputPlugin, ServiceContext, ServiceInput};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};
use crate::selfstat::{self, Stat};
use template::Templates;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_protocol")]
    protocol: String,
    #[serde(default = "default_address")]
    service_address: String,
    #[serde(default = "default_max_tcp")]
    max_tcp_connections: usize,
    /// SO_KEEPALIVE on accepted TCP connections.
    #[serde(default)]
    tcp_keep_alive: bool,
    /// Idle time before the first probe and between probes (the system's when unset).
    #[serde(default)]
    tcp_keep_alive_period: Option<Dur>,
    /// How often the aggregates are emitted. By default the input's `interval` (its own, else
    /// the agent's), as in Telegraf; this sonde-only option overrides it.
    #[serde(default)]
    flush_interval: Option<Dur>,
    #[serde(default = "yes")]
    delete_gauges: bool,
    #[serde(default = "yes")]
    delete_counters: bool,
    #[serde(default = "yes")]
    delete_sets: bool,
    #[serde(default = "yes")]
    delete_timings: bool,
    /// A `start_time` field on every aggregate and a `temporality` tag on counters.
    #[serde(default)]
    enable_aggregation_temporality: bool,
    #[serde(default)]
    percentiles: Vec<f64>,
    #[serde(default = "default_percentile_limit")]
    percentile_limit: usize,
    #[serde(default = "default_separator")]
    metric_separator: String,
    #[serde(default)]
    datadog_extensions: bool,
    /// sonde's earlier name of `datadog_extensions` (Telegraf's before 1.x), still accepted.
    #[serde(default)]
    parse_data_dog_tags: bool,
    #[serde(default)]
    datadog_distributions: bool,
    #[serde(default)]
    datadog_keep_container_tag: bool,
    #[serde(default)]
    templates: Vec<String>,
    #[serde(default = "default_pending")]
    allowed_pending_messages: usize,
    #[serde(default = "default_workers")]
    number_workers_threads: usize,
    /// SO_RCVBUF of the UDP socket (0: the system's default).
    #[serde(default)]
    read_buffer_size: Size,
    /// Forget series not updated for this long (when not deleted at each flush; 0: never).
    #[serde(default)]
    max_ttl: Dur,
    /// "" (names as received) or "upstream" (statsd's own sanitising).
    #[serde(default)]
    sanitize_name_method: String,
    #[serde(default)]
    convert_names: bool,
    #[serde(default)]
    float_counters: bool,
    #[serde(default)]
    float_timings: bool,
    #[serde(default)]
    float_sets: bool,
}

fn default_protocol() -> String {
    "udp".into()
}
fn default_address() -> String {
    ":8125".into()
}
fn default_max_tcp() -> usize {
    250
}
fn yes() -> bool {
    true
}
fn default_percentile_limit() -> usize {
    1000
}
fn default_separator() -> String {
    "_".into()
}
fn default_pending() -> usize {
    10000
}
fn default_workers() -> usize {
    5
}

/// The longest line a TCP client may send (Telegraf's scanner limit).
const MAX_TCP_LINE: usize = 64 * 1024;
/// The median is taken over the last this many values of a timing (Telegraf's limit).
const MEDIAN_LIMIT: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Gauge,
    Set,
    Timing,
    Histogram,
    Distribution,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Set => "set",
            Kind::Timing => "timing",
            Kind::Histogram => "histogram",
            Kind::Distribution => "distribution",
        }
    }
}

/// Running statistics of a timing, with a bounded sample for percentiles and the last
/// values for the median.
#[derive(Default)]
struct Timing {
    count: u64,
    sum: f64,
    sum_sq: f64,
    lower: f64,
    upper: f64,
    sample: Vec<f64>,
    /// A ring of the last MEDIAN_LIMIT values.
    recent: Vec<f64>,
    recent_next: usize,
}

impl Timing {
    /// Records `n` observations of `v` (a sampled timing stands for 1/rate of them). Costs
    /// at most `limit` steps however large `n` is: a tiny sample rate must not stall the parser.
    fn add(&mut self, v: f64, n: u64, limit: usize) {
        if self.count == 0 || v < self.lower {
            self.lower = v;
        }
        if self.count == 0 || v > self.upper {
            self.upper = v;
        }
        self.count = self.count.saturating_add(n);
        self.sum += v * n as f64;
        self.sum_sq += v * v * n as f64;
        for _ in 0..n.min(limit as u64) {
            if self.sample.len() < limit {
                self.sample.push(v);
            } else {
                // Past the limit, keep a uniform sample: replace a random slot.
                let i = fastrand::usize(..limit);
                self.sample[i] = v;
            }
        }
        for _ in 0..n.min(MEDIAN_LIMIT as u64) {
            if self.recent.len() < MEDIAN_LIMIT {
                self.recent.push(v);
            } else {
                self.recent[self.recent_next] = v;
            }
            self.recent_next = (self.recent_next + 1) % MEDIAN_LIMIT;
        }
    }
}

enum Value {
    /// Telegraf sums counters as integers (each value divided by its rate, truncated).
    Counter(i64),
    Gauge(f64),
    Set(HashSet<Str>),
    Timing(Box<Timing>),
}

struct Entry {
    fields: Vec<(Str, Value)>,
    updated: Instant,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    name: Str,
    tags: Vec<(Str, Str)>,
}

/// One parsed statsd value, before aggregation.
#[derive(Debug, PartialEq)]
struct Sample {
    name: Str,
    field: Str,
    tags: Vec<(Str, Str)>,
    kind: Kind,
    /// Gauge/timing/distribution value; for a gauge, `delta` says whether it adds.
    value: f64,
    /// A counter's value, already divided by its sample rate.
    count: i64,
    delta: bool,
    set_member: Str,
    rate: f64,
}

/// What lines parse into: values to aggregate, and metrics that go out as they are (DogStatsD
/// events and service checks). A parser task keeps one from packet to packet, for its
/// memo of buckets.
#[derive(Default)]
struct Parsed {
    samples: Vec<Sample>,
    events: Vec<Metric>,
    /// Measurement, field and tags of the buckets seen: senders repeat a few buckets, and
    /// sanitising them and applying the templates costs more than the lookup. The memo keeps
    /// buckets of up to `series_memo::MAX_KEY` bytes.
    buckets: SeriesMemo<(Str, Str, Tags)>,
    /// About what `buckets` takes in memory.
    buckets_bytes: usize,
}

impl Parsed {
    /// Keeps what `bucket`, which the memo missed, parsed into; starts the memo over first
    /// when that would take it past `MAX_BUCKETS_BYTES`.
    fn remember(&mut self, bucket: &str, miss: Miss, parsed: &(Str, Str, Tags)) {
        let bytes = bucket_bytes(bucket, &parsed.2);
        if self.buckets_bytes + bytes > MAX_BUCKETS_BYTES {
            self.buckets.clear();
        }
        // (Also emptied by `room` when it holds as many buckets as it may.)
        let Some(at) = self.buckets.room(bucket.as_bytes(), miss) else {
            return;
        };
        if self.buckets.is_empty() {
            self.buckets_bytes = 0;
        }
        self.buckets_bytes += bytes;
        self.buckets.insert(bucket.as_bytes(), at, parsed.clone());
    }
}

/// What a parser task's memo of buckets may take: a bucket with dozens of tags takes 48
/// bytes a tag there, so its count alone does not bound it.
const MAX_BUCKETS_BYTES: usize = 1 << 20;

/// About what a bucket and its parse take in the memo (a name or tag longer than a small
/// string's inline room takes at most the bucket's length once more).
fn bucket_bytes(bucket: &str, tags: &Tags) -> usize {
    2 * bucket.len()
        + std::mem::size_of::<(u64, u64, (Str, Str, Tags))>()
        + tags.len() * std::mem::size_of::<(Str, Str)>()
}

type Tags = Vec<(Str, Str)>;

/// Sets a tag, replacing an earlier one of the same key.
fn set_tag(tags: &mut Vec<(Str, Str)>, k: &str, v: &str) {
    match tags.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.into(),
        None => tags.push((k.into(), v.into())),
    }
}

/// DogStatsD tags `k:v,k2,k3:` (a tag without value is "true", as Telegraf has it).
fn parse_datadog_tags(tags: &mut Vec<(Str, Str)>, text: &str) {
    for t in text.split(',') {
        let (k, v) = t.split_once(':').unwrap_or((t, ""));
        if k.is_empty() {
            continue;
        }
        set_tag(tags, k, if v.is_empty() { "true" } else { v });
    }
}

/// statsd's upstream sanitising: whitespace runs become `_`, `/` becomes `-`, and anything
/// but `[a-zA-Z0-9_.;=-]` is removed.
fn sanitize_upstream(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_space = false;
    for c in name.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        match c {
            '/' => out.push('-'),
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ';' | '=') => {
                out.push(c)
            }
            _ => {}
        }
    }
    out
}

struct Parser {
    templates: Templates,
    datadog: bool,
    distributions: bool,
    keep_container: bool,
    sanitize_upstream: bool,
    convert_names: bool,
    /// With enable_aggregation_temporality: counters' `temporality` tag.
    temporality: Option<&'static str>,
}

impl Parser {
    /// Parses one line (`bucket:value|type[|@rate][|#tags]`, possibly `:value|type` repeated;
    /// with the DataDog extensions also `_e{..}` events and `_sc|` service checks). `source` is
    /// the sender's address (the `source` tag of events), `now` the time the packet came.
    fn parse_line(
        &self,
        line: &str,
        source: Option<&str>,
        now: i64,
        out: &mut Parsed,
    ) -> Result<(), String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(());
        }
        if self.datadog && line.starts_with("_e{") {
            out.events.push(parse_event(line, source, now)?);
            return Ok(());
        }
        if self.datadog && line.starts_with("_sc|") {
            out.events.push(parse_service_check(line, source, now)?);
            return Ok(());
        }
        let (bucket, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("no ':' in {line:?}"))?;
        let values = split_values(rest);
        // DataDog tags apply to every value of the line: find them first.
        let mut dd_tags: Vec<(Str, Str)> = Vec::new();
        if self.datadog {
            for v in &values {
                for seg in v.split('|').skip(2) {
                    if let Some(tags) = seg.strip_prefix('#') {
                        parse_datadog_tags(&mut dd_tags, tags);
                    } else if let Some(c) = seg.strip_prefix("c:")
                        && self.keep_container
                    {
                        set_tag(&mut dd_tags, "container", c);
                    }
                }
            }
        }
        let looked = out
            .buckets
            .looking()
            .then(|| out.buckets.find(bucket.as_bytes()));
        let fresh;
        let (name, field, bucket_tags) = match looked {
            Some(Ok(i)) => out.buckets.get(i),
            looked => {
                fresh = self.parse_name(bucket)?;
                if let Some(Err(miss)) = looked {
                    out.remember(bucket, miss, &fresh);
                }
                &fresh
            }
        };
        for v in values {
            let mut segs = v.split('|');
            let value = segs.next().unwrap_or_default();
            let kind = match segs.next() {
                Some("c") => Kind::Counter,
                Some("g") => Kind::Gauge,
                Some("s") => Kind::Set,
                Some("ms") => Kind::Timing,
                Some("h") => Kind::Histogram,
                Some("d") => Kind::Distribution,
                Some(t) => return Err(format!("unknown metric type {t:?} in {line:?}")),
                None => return Err(format!("no metric type in {line:?}")),
            };
            let mut rate = 1.0;
            for seg in segs {
                if let Some(r) = seg.strip_prefix('@') {
                    rate = r
                        .parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0 && *r <= 1.0)
                        .ok_or_else(|| format!("bad sample rate {r:?} in {line:?}"))?;
                }
            }
            let signed = value.starts_with('+') || value.starts_with('-');
            if signed && !matches!(kind, Kind::Gauge | Kind::Counter) {
                return Err(format!(
                    "+/- values are only for gauges and counters, in {line:?}"
                ));
            }
            // Room for what is added below: a clone alone would grow on the first push.
            let mut tags = Vec::with_capacity(bucket_tags.len() + 2 + dd_tags.len());
            tags.extend_from_slice(bucket_tags);
            set_tag(&mut tags, "metric_type", kind.tag());
            if kind == Kind::Counter
                && let Some(t) = self.temporality
            {
                set_tag(&mut tags, "temporality", t);
            }
            for (k, v) in &dd_tags {
                set_tag(&mut tags, k, v);
            }
            let mut s = Sample {
                name: name.clone(),
                field: field.clone(),
                tags,
                kind,
                value: 0.0,
                count: 0,
                delta: kind == Kind::Gauge && signed,
                set_member: Str::default(),
                rate,
            };
            let bad = || format!("bad value {value:?} in {line:?}");
            match kind {
                Kind::Set if value.is_empty() => {
                    return Err(format!("empty set member in {line:?}"));
                }
                Kind::Set => s.set_member = value.into(),
                Kind::Counter => {
                    // An integer, else a float truncated; then divided by the rate (Telegraf).
                    let v = match value.parse::<i64>() {
                        Ok(v) => v,
                        Err(_) => value
                            .parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .ok_or_else(bad)? as i64,
                    };
                    s.count = if rate == 1.0 {
                        v
                    } else {
                        (v as f64 / rate) as i64
                    };
                }
                _ => {
                    s.value = value
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(bad)?;
                }
            }
            // Without datadog_distributions (and the extensions), Telegraf parses
            // distributions and drops them.
            if kind == Kind::Distribution && !(self.datadog && self.distributions) {
                continue;
            }
            out.samples.push(s);
        }
        Ok(())
    }

    /// Measurement, field and tags of a bucket `name[,tag=value...]`, as Telegraf derives them:
    /// sanitised, cut at whitespace, through the templates (whose tags win over the bucket's),
    /// then `convert_names`.
    fn parse_name(&self, bucket: &str) -> Result<(Str, Str, Tags), String> {
        let mut parts = bucket.split(',');
        let raw = parts.next().unwrap_or_default();
        let sanitized;
        let name = if self.sanitize_upstream {
            sanitized = sanitize_upstream(raw);
            sanitized.as_str()
        } else {
            raw
        };
        let name = name.split_whitespace().next().unwrap_or_default();
        if name.is_empty() {
            return Err(format!("empty metric name in {bucket:?}"));
        }
        let applied = self.templates.apply(name);
        let mut tags = applied.tags;
        for t in parts {
            if let Some((k, v)) = t.split_once('=')
                && !k.is_empty()
                && !tags.iter().any(|(key, _)| key == k)
            {
                tags.push((k.into(), v.into()));
            }
        }
        let mut measurement = applied.measurement;
        if self.convert_names {
            measurement = measurement.replace('.', "_").replace('-', "__");
        }
        if measurement.is_empty() {
            return Err(format!("the template leaves no measurement for {name:?}"));
        }
        let field = if applied.field.is_empty() {
            "value".into()
        } else {
            applied.field.into()
        };
        Ok((measurement.into(), field, tags))
    }
}

/// `\n` written as two characters in event texts stands for a newline.
fn uncomment(s: &str) -> String {
    s.replace("\\n", "\n")
}

/// A DogStatsD event `_e{<title length>,<text length>}:<title>|<text>[|d:..|p:..|h:..|t:..|k:..|s:..|#tags]`
/// as Telegraf emits it: measurement = the title, fields `text`, `priority`, `alert_type` (and
/// `ts`, `source_type_name`), tags `source` (the sender, or `h:`/the `host` tag),
/// `aggregation_key` and the DataDog tags.
fn parse_event(line: &str, source: Option<&str>, now: i64) -> Result<Metric, String> {
    let invalid = || format!("invalid event {line:?}");
    let (header, msg) = line.split_once(':').ok_or_else(invalid)?;
    if header.len() < 7 || msg.len() < 3 {
        return Err(invalid());
    }
    let lens = header[3..].strip_suffix('}').ok_or_else(invalid)?;
    let (title_len, text_len) = lens.split_once(',').ok_or_else(invalid)?;
    let title_len: usize = title_len.parse().map_err(|_| invalid())?;
    let text_len: usize = text_len.parse().map_err(|_| invalid())?;
    let text_end = title_len
        .checked_add(1)
        .and_then(|n| n.checked_add(text_len))
        .filter(|n| *n <= msg.len())
        .ok_or_else(|| format!("event lengths exceed the message in {line:?}"))?;
    let title = msg.get(..title_len).ok_or_else(invalid)?;
    let text = msg.get(title_len + 1..text_end).ok_or_else(invalid)?;
    let rest = msg.get(text_end..).ok_or_else(invalid)?;
    if title.is_empty() || text.is_empty() {
        return Err(format!("empty event title or text in {line:?}"));
    }
    let mut tags: Vec<(Str, Str)> = Vec::new();
    if let Some(s) = source.filter(|s| !s.is_empty()) {
        set_tag(&mut tags, "source", s);
    }
    let mut m = Metric::new(title, now);
    m.add_field("alert_type", "info");
    m.add_field("text", uncomment(text));
    m.add_field("priority", "normal");
    if rest.len() >= 2 {
        // The byte after the text is the separator; a multi-byte character there is invalid.
        for meta in rest.get(1..).ok_or_else(invalid)?.split('|') {
            let (key, value) = (meta.get(..2), meta.get(2..).unwrap_or_default());
            match key {
                None => return Err(format!("too short event metadata in {line:?}")),
                Some("d:") => {
                    if let Ok(ts) = value.parse::<i64>() {
                        m.add_field("ts", ts);
                    }
                }
                Some("p:") if value == "low" => m.add_field("priority", "low"),
                Some("p:") => {}
                Some("h:") => set_tag(&mut tags, "source", value),
                Some("t:") if matches!(value, "error" | "warning" | "success" | "info") => {
                    m.add_field("alert_type", value)
                }
                Some("t:") => {}
                Some("k:") => set_tag(&mut tags, "aggregation_key", value),
                Some("s:") => m.add_field("source_type_name", value),
                Some(_) if meta.starts_with('#') => parse_datadog_tags(&mut tags, &meta[1..]),
                Some(_) => return Err(format!("unknown event metadata {meta:?} in {line:?}")),
            }
        }
    }
    host_to_source(&mut tags);
    for (k, v) in tags {
        m.add_tag(k, v);
    }
    Ok(m)
}

/// "host" is the agent's own tag: the sender's host goes into "source", as in Telegraf.
fn host_to_source(tags: &mut Vec<(Str, Str)>) {
    if let Some(i) = tags.iter().position(|(k, _)| k == "host") {
        let (_, host) = tags.remove(i);
        set_tag(tags, "source", &host);
    }
}

/// A DogStatsD service check `_sc|<name>|<status>[|d:<unix time>|h:<host>|#tags|m:<message>]`
/// into Telegraf's `statsd_service_check` (tags `check_name`, `source`; fields `status`,
/// `status_text`, `message`).
fn parse_service_check(line: &str, source: Option<&str>, now: i64) -> Result<Metric, String> {
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() < 3 {
        return Err(format!(
            "invalid service check {line:?}: expected _sc|name|status"
        ));
    }
    let name = parts[1];
    if name.is_empty() {
        return Err(format!("empty service check name in {line:?}"));
    }
    const STATUSES: [&str; 4] = ["ok", "warning", "critical", "unknown"];
    let status: i64 = parts[2]
        .parse()
        .ok()
        .filter(|s| (0..4).contains(s))
        .ok_or_else(|| format!("bad service check status {:?} in {line:?}", parts[2]))?;
    let mut tags: Vec<(Str, Str)> = vec![("check_name".into(), name.into())];
    if let Some(s) = source.filter(|s| !s.is_empty()) {
        set_tag(&mut tags, "source", s);
    }
    let mut time = now;
    let mut m = Metric::new("statsd_service_check", now);
    m.add_field("status", status);
    m.add_field("status_text", STATUSES[status as usize]);
    for part in &parts[3..] {
        if let Some(d) = part.strip_prefix("d:") {
            if let Ok(secs) = d.parse::<i64>() {
                time = secs.saturating_mul(1_000_000_000);
            }
        } else if let Some(h) = part.strip_prefix("h:") {
            set_tag(&mut tags, "source", h);
        } else if let Some(msg) = part.strip_prefix("m:") {
            m.add_field("message", uncomment(msg));
        } else if let Some(t) = part.strip_prefix('#') {
            parse_datadog_tags(&mut tags, t);
        }
    }
    host_to_source(&mut tags);
    m.time = time;
    for (k, v) in tags {
        m.add_tag(k, v);
    }
    Ok(m)
}

/// Splits `v1|c:v2|ms` into values; a ':' inside DataDog tags (`|#k:v`) does not split.
fn split_values(rest: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut seg, mut in_tags) = (0, 0, false);
    let b = rest.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'|' => {
                seg += 1;
                // Segment 1 is the type; later `#...` and `c:...` segments hold ':' themselves.
                in_tags = seg >= 2 && matches!(b.get(i + 1), Some(b'#' | b'c'));
            }
            b':' if !in_tags => {
                out.push(&rest[start..i]);
                start = i + 1;
                seg = 0;
            }
            _ => {}
        }
    }
    out.push(&rest[start..]);
    out
}

struct Aggregates {
    entries: HashMap<Key, Entry>,
    percentile_limit: usize,
    /// Distributions go out one metric per value (Telegraf's datadog_distributions).
    distributions: Vec<Sample>,
    /// Events and service checks, as received.
    events: Vec<Metric>,
    /// The previous flush (or the start), in ns: the `start_time` of the next aggregates.
    last_flush: i64,
}

impl Aggregates {
    fn new(percentile_limit: usize, start: i64) -> Aggregates {
        Aggregates {
            entries: HashMap::new(),
            // Telegraf takes 0 as its default limit.
            percentile_limit: if percentile_limit == 0 {
                default_percentile_limit()
            } else {
                percentile_limit
            },
            distributions: Vec::new(),
            events: Vec::new(),
            last_flush: start,
        }
    }

    /// Takes the samples and events of `parsed`, leaving its memo.
    fn take(&mut self, parsed: &mut Parsed, now: Instant) {
        self.events.append(&mut parsed.events);
        for s in parsed.samples.drain(..) {
            self.add(s, now);
        }
    }

    fn add(&mut self, s: Sample, now: Instant) {
        if s.kind == Kind::Distribution {
            self.distributions.push(s);
            return;
        }
        let mut tags = s.tags;
        tags.sort();
        tags.dedup_by(|a, b| a.0 == b.0);
        let key = Key {
            kind: s.kind,
            name: s.name,
            tags,
        };
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            fields: Vec::new(),
            updated: now,
        });
        entry.updated = now;
        let slot = match entry.fields.iter().position(|(f, _)| *f == s.field) {
            Some(i) => &mut entry.fields[i].1,
            None => {
                let v = match s.kind {
                    Kind::Counter => Value::Counter(0),
                    Kind::Gauge => Value::Gauge(0.0),
                    Kind::Set => Value::Set(HashSet::new()),
                    _ => Value::Timing(Box::default()),
                };
                entry.fields.push((s.field, v));
                &mut entry.fields.last_mut().unwrap().1
            }
        };
        match slot {
            Value::Counter(c) => *c = c.wrapping_add(s.count),
            Value::Gauge(g) => {
                if s.delta {
                    *g += s.value
                } else {
                    *g = s.value
                }
            }
            Value::Set(set) => {
                set.insert(s.set_member);
            }
            Value::Timing(t) => {
                // A sampled timing stands for 1/rate observations, as in Telegraf.
                let n = (1.0 / s.rate) as u64;
                t.add(s.value, n.max(1), self.percentile_limit);
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64) * p / 100.0) as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        n => v[n / 2],
    }
}

fn percentile_name(p: f64) -> String {
    // Telegraf prints the number as Go's %v does: 90 → "90", 99.9 → "99.9".
    format!("{p}_percentile")
}

struct Statsd {
    cfg: Config,
    parser: Parser,
    id: String,
    /// Bound by `start`.
    bound: Option<Socket>,
}

/// The socket statsd listens on.
enum Socket {
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpListener),
}

impl Socket {
    async fn bind(cfg: &Config) -> anyhow::Result<Socket> {
        let addr = normalize_address(&cfg.service_address);
        let listen_error = |e| {
            anyhow::anyhow!(
                "cannot listen on {} {}: {e}",
                cfg.protocol,
                cfg.service_address
            )
        };
        match cfg.protocol.as_str() {
            "udp" | "udp4" | "udp6" => {
                let sock = tokio::net::UdpSocket::bind(&addr)
                    .await
                    .map_err(listen_error)?;
                if cfg.read_buffer_size.0 > 0 {
                    set_recv_buffer(&sock, cfg.read_buffer_size.0);
                }
                Ok(Socket::Udp(sock))
            }
            "tcp" | "tcp4" | "tcp6" => Ok(Socket::Tcp(
                tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(listen_error)?,
            )),
            p => anyhow::bail!("protocol must be udp or tcp, not {p:?}"),
        }
    }
}

/// One packet (UDP) or line (TCP) waiting to be parsed.
struct Message {
    data: Vec<u8>,
    source: Option<IpAddr>,
    time: i64,
}

struct Shared {
    parser: Parser,
    aggs: Mutex<Aggregates>,
    parse_errors: Stat,
    received: Stat,
    /// Aggregates the output buffers refused (full).
    refused: Stat,
}

impl Shared {
    /// Parses a packet into `parsed` (the parser task's, kept from packet to packet) and
    /// hands what it holds to the aggregates.
    fn handle_packet(&self, parsed: &mut Parsed, packet: &[u8], source: Option<IpAddr>, time: i64) {
        // Checked first: the lossy conversion walks valid text more slowly.
        let text = match std::str::from_utf8(packet) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(packet),
        };
        // An IPv4 sender on a dual-stack socket is named as IPv4, as Go prints it.
        let source = source.map(|ip| ip.to_canonical().to_string());
        for line in text.split('\n') {
            if let Err(e) = self
                .parser
                .parse_line(line, source.as_deref(), time, parsed)
            {
                self.parse_errors.incr();
                tracing::debug!(error = %e, "bad statsd line");
            }
        }
        self.received
            .add((parsed.samples.len() + parsed.events.len()) as i64);
        self.aggs.lock().unwrap().take(parsed, Instant::now());
    }
}

impl Statsd {
    /// The aggregates (and distributions, events) at `time` (ns), then the reset the delete_*
    /// options and max_ttl ask for; `now` is the clock max_ttl is measured with.
    fn flush(cfg: &Config, aggs: &mut Aggregates, time: i64, now: Instant) -> Vec<Metric> {
        let mut out = Vec::with_capacity(aggs.entries.len() + aggs.distributions.len());
        let ttl = cfg.max_ttl.get();
        let start_time = cfg.enable_aggregation_temporality.then(|| {
            crate::common::time::rfc3339_seconds(aggs.last_flush.div_euclid(1_000_000_000))
        });
        out.append(&mut aggs.events);
        for d in aggs.distributions.drain(..) {
            let mut m = Metric::new(d.name, time);
            for (k, v) in d.tags {
                m.add_tag(k, v);
            }
            m.add_field(d.field, d.value);
            if let Some(st) = &start_time {
                m.add_field("start_time", st.as_str());
            }
            out.push(m);
        }
        for (key, entry) in &aggs.entries {
            let kind = match key.kind {
                Kind::Counter => ValueType::Counter,
                Kind::Gauge | Kind::Set => ValueType::Gauge,
                _ => ValueType::Summary,
            };
            let mut m = Metric::new(key.name.clone(), time).with_kind(kind);
            m.tags = key.tags.clone();
            for (field, v) in &entry.fields {
                let prefix = if field == "value" {
                    String::new()
                } else {
                    format!("{field}_")
                };
                match v {
                    Value::Counter(c) if cfg.float_counters => {
                        m.add_field(field.clone(), *c as f64)
                    }
                    Value::Counter(c) => m.add_field(field.clone(), *c),
                    Value::Gauge(g) => m.add_field(field.clone(), *g),
                    Value::Set(s) if cfg.float_sets => m.add_field(field.clone(), s.len() as f64),
                    Value::Set(s) => m.add_field(field.clone(), s.len() as i64),
                    Value::Timing(t) if t.count > 0 => {
                        let n = t.count as f64;
                        let mean = t.sum / n;
                        let var = (t.sum_sq / n - mean * mean).max(0.0);
                        let mut sorted = t.sample.clone();
                        sorted.sort_by(f64::total_cmp);
                        m.add_field(format!("{prefix}mean"), mean);
                        m.add_field(format!("{prefix}median"), median(&t.recent));
                        m.add_field(format!("{prefix}stddev"), var.sqrt());
                        m.add_field(format!("{prefix}sum"), t.sum);
                        m.add_field(format!("{prefix}upper"), t.upper);
                        m.add_field(format!("{prefix}lower"), t.lower);
                        if cfg.float_timings {
                            m.add_field(format!("{prefix}count"), n);
                        } else {
                            m.add_field(format!("{prefix}count"), t.count as i64);
                        }
                        for p in &cfg.percentiles {
                            m.add_field(
                                format!("{prefix}{}", percentile_name(*p)),
                                percentile(&sorted, *p),
                            );
                        }
                    }
                    Value::Timing(_) => {}
                }
            }
            if m.fields.is_empty() {
                continue;
            }
            if let Some(st) = &start_time {
                m.add_field("start_time", st.as_str());
            }
            out.push(m);
        }
        aggs.entries.retain(|key, entry| {
            let delete = match key.kind {
                Kind::Counter => cfg.delete_counters,
                Kind::Gauge => cfg.delete_gauges,
                Kind::Set => cfg.delete_sets,
                _ => cfg.delete_timings,
            };
            // Telegraf forgets a series once it has gone longer than max_ttl without update.
            !delete && (ttl.is_zero() || now.saturating_duration_since(entry.updated) <= ttl)
        });
        aggs.last_flush = time;
        out
    }
}

fn set_recv_buffer(sock: &tokio::net::UdpSocket, size: u64) {
    use std::os::fd::AsRawFd;
    let v = size.min(i32::MAX as u64) as libc::c_int;
    // SAFETY: a valid socket fd and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "setting read_buffer_size");
    }
}

/// tcp_keep_alive: SO_KEEPALIVE, and with a period TCP_KEEPIDLE and TCP_KEEPINTVL (as Go's
/// SetKeepAlivePeriod sets both). A failure is logged; the connection is served anyway.
fn set_keep_alive(stream: &tokio::net::TcpStream, period: Option<std::time::Duration>) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, v: libc::c_int| {
        // SAFETY: a valid socket fd and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "statsd: setting tcp_keep_alive");
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    if let Some(p) = period {
        let secs = p.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
        set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs);
    }
}

#[async_trait]
impl ServiceInput for Statsd {
    async fn start(&mut self) -> anyhow::Result<()> {
        self.bound = Some(Socket::bind(&self.cfg).await?);
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let Statsd {
            cfg,
            parser,
            id,
            bound,
        } = *self;
        let socket = match bound {
            Some(s) => s,
            None => Socket::bind(&cfg).await?,
        };
        let stats = selfstat::register(
            "internal_statsd",
            &[("input", &id), ("address", &cfg.service_address)],
        );
        let dropped = stats.stat("dropped_messages");
        // Telegraf's names for the listener's own counters.
        stats
            .stat("max_pending_messages")
            .set(cfg.allowed_pending_messages as i64);
        let pending = stats.stat("pending_messages");
        let parse_time = stats.stat("parse_time_ns");
        let shared = Arc::new(Shared {
            parser,
            aggs: Mutex::new(Aggregates::new(cfg.percentile_limit, now_ns())),
            parse_errors: stats.stat("parse_errors"),
            received: stats.stat("metrics_received"),
            refused: stats.stat("metrics_dropped"),
        });
        let (tx, rx) = flume::bounded::<Message>(cfg.allowed_pending_messages.max(1));
        let mut shutdown = ctx.shutdown.clone();
        let reader = match socket {
            Socket::Udp(sock) => {
                tracing::info!(input = %id, address = %sock.local_addr()?, "statsd listening on UDP");
                let dropped = dropped.clone();
                let (packets, bytes, udp_dropped) = (
                    stats.stat("udp_packets_received"),
                    stats.stat("udp_bytes_received"),
                    stats.stat("udp_packets_dropped"),
                );
                let mut sd = shutdown.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        tokio::select! {
                            r = sock.recv_from(&mut buf) => match r {
                                Ok((n, from)) => {
                                    packets.incr();
                                    bytes.add(n as i64);
                                    if !push(&tx, Message {
                                        data: buf[..n].to_vec(),
                                        source: Some(from.ip()),
                                        time: now_ns(),
                                    }, &dropped) {
                                        udp_dropped.incr();
                                    }
                                }
                                Err(e) => tracing::debug!(error = %e, "statsd recv"),
                            },
                            _ = sd.wait_for(|s| *s) => break,
                        }
                    }
                })
            }
            Socket::Tcp(listener) => {
                tracing::info!(input = %id, address = %listener.local_addr()?, "statsd listening on TCP");
                let max = cfg.max_tcp_connections;
                let keep_alive = cfg
                    .tcp_keep_alive
                    .then(|| cfg.tcp_keep_alive_period.map(|d| d.get()));
                let dropped = dropped.clone();
                let current = stats.stat("tcp_current_connections");
                stats.stat("tcp_max_connections").set(max as i64);
                let total = stats.stat("tcp_total_connections");
                let (packets, bytes) = (
                    stats.stat("tcp_packets_received"),
                    stats.stat("tcp_bytes_received"),
                );
                let errors = shared.parse_errors.clone();
                let mut sd = shutdown.clone();
                tokio::spawn(async move {
                    let conns = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
                    let mut backoff = crate::common::server::AcceptBackoff::default();
                    loop {
                        let accepted = tokio::select! {
                            r = listener.accept() => r,
                            _ = sd.wait_for(|s| *s) => break,
                        };
                        let (stream, peer) = match accepted {
                            Ok((s, peer)) => (s, peer),
                            // EMFILE and the like last while clients wait in the backlog:
                            // back off instead of spinning on the readable socket.
                            Err(e) => {
                                let stopped = tokio::select! {
                                    _ = backoff.failed(&e, "statsd") => false,
                                    _ = sd.wait_for(|s| *s) => true,
                                };
                                if stopped {
                                    break;
                                }
                                continue;
                            }
                        };
                        backoff.succeeded();
                        if let Some(period) = keep_alive {
                            set_keep_alive(&stream, period);
                        }
                        let Ok(permit) = conns.clone().try_acquire_owned() else {
                            tracing::warn!(
                                "statsd: refused a TCP connection: max_tcp_connections ({max}) reached"
                            );
                            continue;
                        };
                        total.incr();
                        let (tx, dropped, current) = (tx.clone(), dropped.clone(), current.clone());
                        let (packets, bytes) = (packets.clone(), bytes.clone());
                        let errors = errors.clone();
                        let mut sd = sd.clone();
                        current.incr();
                        tokio::spawn(async move {
                            let mut reader = tokio::io::BufReader::new(stream);
                            let mut line = Vec::new();
                            loop {
                                line.clear();
                                // Bounded: a client that never sends '\n' must not grow memory.
                                let mut limited = (&mut reader).take(MAX_TCP_LINE as u64 + 1);
                                tokio::select! {
                                    r = limited.read_until(b'\n', &mut line) => match r {
                                        Ok(0) | Err(_) => break,
                                        Ok(_) if line.len() > MAX_TCP_LINE && !line.ends_with(b"\n") => {
                                            // As Telegraf's scanner does: count, log, close.
                                            errors.incr();
                                            tracing::warn!("statsd: closing a TCP connection whose line exceeds {MAX_TCP_LINE} bytes");
                                            break;
                                        }
                                        Ok(n) => {
                                            packets.incr();
                                            bytes.add(n as i64);
                                            push(&tx, Message {
                                                data: std::mem::take(&mut line),
                                                source: Some(peer.ip()),
                                                time: now_ns(),
                                            }, &dropped);
                                        }
                                    },
                                    _ = sd.wait_for(|s| *s) => break,
                                }
                            }
                            current.add(-1);
                            drop(permit);
                        });
                    }
                })
            }
        };
        // The parsers: number_workers_threads tasks draining the queue into the aggregates.
        let parser_tasks: Vec<_> = (0..cfg.number_workers_threads.max(1))
            .map(|_| {
                let (sh, rx) = (shared.clone(), rx.clone());
                let (pending, parse_time) = (pending.clone(), parse_time.clone());
                tokio::spawn(async move {
                    let mut parsed = Parsed::default();
                    while let Ok(msg) = rx.recv_async().await {
                        let started = std::time::Instant::now();
                        sh.handle_packet(&mut parsed, &msg.data, msg.source, msg.time);
                        parse_time.set(started.elapsed().as_nanos() as i64);
                        pending.set(rx.len() as i64);
                    }
                })
            })
            .collect();
        drop(rx);
        let every = cfg.flush_interval.map_or(ctx.interval, |d| d.get());
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if !Self::emit(&cfg, &shared, &ctx.sink).await {
                return Ok(());
            }
        }
        // Let the parser finish what was already received, then flush once more.
        let _ = reader.await;
        for t in parser_tasks {
            let _ = t.await;
        }
        Self::emit(&cfg, &shared, &ctx.sink).await;
        Ok(())
    }
}

impl Statsd {
    /// Flushes the aggregates into the pipeline; false when the pipeline is gone.
    async fn emit(cfg: &Config, shared: &Shared, sink: &crate::plugin::MetricSink) -> bool {
        let batch = {
            let mut aggs = shared.aggs.lock().unwrap();
            Self::flush(cfg, &mut aggs, now_ns(), Instant::now())
        };
        if batch.is_empty() {
            return true;
        }
        let n = batch.len();
        match sink.send(batch).await {
            Ok(()) => true,
            Err(crate::plugin::SendError::Closed) => false,
            // statsd cannot push back on UDP senders: what a full buffer refuses is counted.
            Err(e) => {
                shared.refused.add(n as i64);
                tracing::warn!(metrics = n, error = %e, "statsd: the output buffers refused the aggregates; dropped");
                true
            }
        }
    }
}

/// Queues a message for the parsers; false (counted and logged) when the queue is full.
fn push(tx: &flume::Sender<Message>, msg: Message, dropped: &Stat) -> bool {
    if tx.try_send(msg).is_err() {
        // Log the first drop and then every 1000th, not every packet.
        if dropped.get() % 1000 == 0 {
            tracing::warn!(
                dropped = dropped.get() + 1,
                "statsd: message queue full (allowed_pending_messages); dropping messages"
            );
        }
        dropped.incr();
        return false;
    }
    true
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    if !matches!(
        cfg.protocol.as_str(),
        "udp" | "udp4" | "udp6" | "tcp" | "tcp4" | "tcp6"
    ) {
        return Err(anyhow::anyhow!(
            "protocol must be \"udp\" or \"tcp\", not {:?}",
            cfg.protocol
        )
        .into());
    }
    if cfg.flush_interval.is_some_and(|d| d.is_zero()) {
        return Err(anyhow::anyhow!("flush_interval must be positive").into());
    }
    if let Some(p) = cfg.percentiles.iter().find(|p| !(0.0..=100.0).contains(*p)) {
        return Err(anyhow::anyhow!("percentiles must be between 0 and 100, not {p}").into());
    }
    let sanitize_upstream = match cfg.sanitize_name_method.as_str() {
        "" => false,
        "upstream" => true,
        other => {
            return Err(ConfigError {
                path: vec!["sanitize_name_method".into()],
                message: format!("must be \"\" or \"upstream\", not {other:?}"),
            }
            .into());
        }
    };
    let separator = if cfg.metric_separator.is_empty() {
        default_separator()
    } else {
        cfg.metric_separator.clone()
    };
    let templates = Templates::new(&cfg.templates, &separator).map_err(|message| ConfigError {
        path: vec!["templates".into()],
        message,
    })?;
    let id = &ctx.id;
    if cfg.parse_data_dog_tags {
        tracing::warn!("{id}: parse_data_dog_tags is deprecated: use datadog_extensions");
    }
    let datadog = cfg.datadog_extensions || cfg.parse_data_dog_tags;
    for (set, option) in [
        (cfg.datadog_distributions, "datadog_distributions"),
        (cfg.datadog_keep_container_tag, "datadog_keep_container_tag"),
    ] {
        if set && !datadog {
            tracing::warn!("{id}: {option} has no effect without datadog_extensions = true");
        }
    }
    let tcp = cfg.protocol.starts_with("tcp");
    if cfg.tcp_keep_alive && !tcp {
        tracing::warn!(
            "{id}: tcp_keep_alive has no effect with protocol {:?}",
            cfg.protocol
        );
    }
    if cfg.tcp_keep_alive_period.is_some() && !cfg.tcp_keep_alive {
        tracing::warn!("{id}: tcp_keep_alive_period has no effect without tcp_keep_alive = true");
    }
    if cfg.read_buffer_size.0 > 0 && tcp {
        tracing::warn!(
            "{id}: read_buffer_size has no effect with protocol {:?}: it sizes the UDP socket",
            cfg.protocol
        );
    }
    let parser = Parser {
        templates,
        datadog,
        distributions: cfg.datadog_distributions,
        keep_container: cfg.datadog_keep_container_tag,
        sanitize_upstream,
        convert_names: cfg.convert_names,
        temporality: cfg
            .enable_aggregation_temporality
            .then_some(if cfg.delete_counters {
                "delta"
            } else {
                "cumulative"
            }),
    };
    crate::common::server::check_address(&cfg.service_address).map_err(|message| ConfigError {
        path: vec!["service_address".into()],
        message,
    })?;
    Ok(InputPlugin::Service(Box::new(Statsd {
        cfg,
        parser,
        id: ctx.id.clone(),
        bound: None,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "statsd",
    description: "Receive StatsD metrics over UDP or TCP and emit their aggregates",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldValue;
    use std::time::Duration;

    fn parser(datadog: bool) -> Parser {
        Parser {
            templates: Templates::new(&[], "_").unwrap(),
            datadog,
            distributions: true,
            keep_container: false,
            sanitize_upstream: false,
            convert_names: false,
            temporality: None,
        }
    }

    /// Parses lines with `p` into `aggs` (panics on a bad line).
    fn feed(p: &Parser, aggs: &mut Aggregates, lines: &str, now: Instant) {
        // One `Parsed` for all lines, as a parser task keeps it: later lines of a bucket
        // come from its memo.
        let mut parsed = Parsed::default();
        for l in lines.lines() {
            p.parse_line(l, Some("10.1.2.3"), 5, &mut parsed)
                .unwrap_or_else(|e| panic!("{e}"));
            aggs.take(&mut parsed, now);
        }
    }

    fn cfg(extra: &str) -> Config {
        parse_config(toml::from_str(extra).unwrap()).unwrap()
    }

    fn run_lines(cfg: &Config, lines: &str, datadog: bool) -> Vec<Metric> {
        run_with(cfg, &parser(datadog), lines)
    }

    fn run_with(cfg: &Config, p: &Parser, lines: &str) -> Vec<Metric> {
        let mut aggs = Aggregates::new(cfg.percentile_limit, 0);
        feed(p, &mut aggs, lines, Instant::now());
        let mut out = Statsd::flush(cfg, &mut aggs, 7, Instant::now());
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    #[test]
    fn counters_gauges_sets_with_rates_and_deltas() {
        let c = cfg("");
        let out = run_lines(
            &c,
            "hits:1|c\nhits:2|c|@0.5\nload:5|g\nload:+2|g\nload:-1|g\nusers:a|s\nusers:b|s\nusers:a|s\nmulti.part,host=a:3|c:4|c",
            false,
        );
        let by = |n: &str| out.iter().find(|m| m.name == n).unwrap();
        assert_eq!(by("hits").field("value"), Some(&FieldValue::Int(5)));
        assert_eq!(by("hits").tag("metric_type"), Some("counter"));
        assert_eq!(by("load").field("value"), Some(&FieldValue::Float(6.0)));
        assert_eq!(by("users").field("value"), Some(&FieldValue::Int(2)));
        assert_eq!(by("multi_part").field("value"), Some(&FieldValue::Int(7)));
        assert_eq!(by("multi_part").tag("host"), Some("a"));
    }

    #[test]
    fn timings_with_percentiles() {
        let c = cfg("percentiles = [50.0, 90.0, 99.9]");
        let lines: String = (1..=100).map(|i| format!("rt:{i}|ms\n")).collect();
        let out = run_lines(&c, &lines, false);
        let m = &out[0];
        assert_eq!(m.tag("metric_type"), Some("timing"));
        assert_eq!(m.field("count"), Some(&FieldValue::Int(100)));
        assert_eq!(m.field("lower"), Some(&FieldValue::Float(1.0)));
        assert_eq!(m.field("upper"), Some(&FieldValue::Float(100.0)));
        assert_eq!(m.field("mean"), Some(&FieldValue::Float(50.5)));
        assert_eq!(m.field("median"), Some(&FieldValue::Float(50.5)));
        assert_eq!(m.field("sum"), Some(&FieldValue::Float(5050.0)));
        assert_eq!(m.field("50_percentile"), Some(&FieldValue::Float(51.0)));
        assert_eq!(m.field("90_percentile"), Some(&FieldValue::Float(91.0)));
        assert_eq!(m.field("99.9_percentile"), Some(&FieldValue::Float(100.0)));
        let FieldValue::Float(sd) = m.field("stddev").unwrap() else {
            panic!()
        };
        assert!((sd - 28.866).abs() < 0.01, "{sd}");
        // A sampled timing counts for 1/rate observations.
        let out = run_lines(&c, "rt:10|ms|@0.25\nh:1|h", false);
        assert_eq!(out[1].field("count"), Some(&FieldValue::Int(4)));
        assert_eq!(out[0].tag("metric_type"), Some("histogram"));
    }

    #[test]
    fn tiny_sample_rate_is_counted_without_looping_per_observation() {
        let c = cfg("percentiles = [90.0]");
        let started = Instant::now();
        // 1/rate = 1e12 observations: one step each would stall the parser for hours.
        let out = run_lines(&c, "rt:3|ms|@0.000000000001", false);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            out[0].field("count"),
            Some(&FieldValue::Int(1_000_000_000_000))
        );
        assert_eq!(out[0].field("90_percentile"), Some(&FieldValue::Float(3.0)));
        assert_eq!(out[0].field("mean"), Some(&FieldValue::Float(3.0)));
    }

    #[test]
    fn percentile_limit_zero_is_telegrafs_default() {
        let c = cfg("percentile_limit = 0\npercentiles = [50.0]");
        let out = run_lines(&c, "rt:3|ms\nrt:5|ms", false);
        assert_eq!(out[0].field("count"), Some(&FieldValue::Int(2)));
        assert_eq!(out[0].field("mean"), Some(&FieldValue::Float(4.0)));
        assert_eq!(out[0].field("median"), Some(&FieldValue::Float(4.0)));
        assert_eq!(out[0].field("50_percentile"), Some(&FieldValue::Float(5.0)));
    }

    #[test]
    fn datadog_tags_and_errors() {
        let c = cfg("");
        let out = run_lines(
            &c,
            "req:1|c|#env:prod,canary,empty:,metric_type:x\nreq:2|c|#env:prod,canary,empty:,metric_type:x",
            true,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].tag("env"), Some("prod"));
        assert_eq!(out[0].tag("canary"), Some("true"));
        assert_eq!(out[0].tag("empty"), Some("true"));
        // As in Telegraf, DataDog tags are applied last and win, even over metric_type.
        assert_eq!(out[0].tag("metric_type"), Some("x"));
        assert_eq!(out[0].field("value"), Some(&FieldValue::Int(3)));
        let p = parser(false);
        let mut v = Parsed::default();
        for bad in [
            "novalue", "x:1|zz", "x:abc|c", "x:1|c|@2", ":1|c", "x:1", "x:-1|ms", "x:+a|s", " :1|c",
        ] {
            assert!(p.parse_line(bad, None, 0, &mut v).is_err(), "{bad}");
        }
        assert!(v.samples.is_empty());
    }

    fn lp(out: &[Metric]) -> Vec<String> {
        let mut v: Vec<String> = out.iter().map(|m| m.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn event_with_a_multibyte_character_after_the_text_is_an_error_not_a_panic() {
        // Found by the bounded fuzz step: the byte after the text split a character.
        assert!(parse_event("_e{1,1}:   é|", None, 0).is_err());
        assert!(parse_event("_e{1,1}:a|bé|d:1", None, 0).is_err());
    }

    #[test]
    fn datadog_events_as_telegraf_emits_them() {
        let c = cfg("");
        let out = run_lines(
            &c,
            "_e{9,14}:Deploy v2|rolled\\nout ok|d:1700000000|p:low|t:success|k:dep|s:ci|#env:prod,host:web1",
            true,
        );
        assert_eq!(
            lp(&out),
            [
                "Deploy\\ v2,aggregation_key=dep,env=prod,source=web1 alert_type=\"success\",text=\"rolled\nout ok\",priority=\"low\",ts=1700000000i,source_type_name=\"ci\" 5"
            ]
        );
        // Defaults, and the sender's address as source.
        let out = run_lines(&c, "_e{1,2}:t|ab", true);
        assert_eq!(
            lp(&out),
            ["t,source=10.1.2.3 alert_type=\"info\",text=\"ab\",priority=\"normal\" 5"]
        );
        let p = parser(true);
        let mut v = Parsed::default();
        for bad in [
            "_e{5,4}:title|tex",
            "_e{0,4}:|text",
            "_e{1,1}:a|b|x",
            "_e{1,1}:a|b|zz:1",
            "_e{a,1}:a|b",
        ] {
            assert!(p.parse_line(bad, None, 0, &mut v).is_err(), "{bad}");
        }
        assert!(v.events.is_empty());
        // Without the extensions an event line is just a bad line.
        assert!(
            parser(false)
                .parse_line("_e{1,1}:a|b", None, 0, &mut v)
                .is_err()
        );
    }

    #[test]
    fn datadog_service_checks() {
        let c = cfg("");
        let out = run_lines(
            &c,
            "_sc|db.ping|2|d:1700000000|h:db1|#env:prod|m:down\\nhard\n_sc|api|0",
            true,
        );
        assert_eq!(
            lp(&out),
            [
                "statsd_service_check,check_name=api,source=10.1.2.3 status=0i,status_text=\"ok\" 5",
                "statsd_service_check,check_name=db.ping,env=prod,source=db1 status=2i,status_text=\"critical\",message=\"down\nhard\" 1700000000000000000",
            ]
        );
        let mut v = Parsed::default();
        for bad in ["_sc|x", "_sc||0", "_sc|x|4", "_sc|x|ok"] {
            assert!(
                parser(true).parse_line(bad, None, 0, &mut v).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn distributions_one_metric_per_value_only_when_enabled() {
        let c = cfg("");
        let out = run_lines(&c, "lat:3|d|#svc:a\nlat:5.5|d|@0.5|#svc:a", true);
        assert_eq!(
            lp(&out),
            [
                "lat,metric_type=distribution,svc=a value=3 7",
                "lat,metric_type=distribution,svc=a value=5.5 7",
            ]
        );
        // Without datadog_distributions (or the extensions) Telegraf drops them.
        let mut off = parser(true);
        off.distributions = false;
        assert!(run_with(&c, &off, "lat:3|d").is_empty());
        assert!(run_lines(&c, "lat:3|d", false).is_empty());
        // And a bad distribution is still a parse error.
        assert!(
            off.parse_line("lat:x|d", None, 0, &mut Parsed::default())
                .is_err()
        );
    }

    #[test]
    fn container_tag_kept_only_when_asked() {
        let c = cfg("");
        let mut keep = parser(true);
        keep.keep_container = true;
        let out = run_with(&c, &keep, "a:1|c|c:abc123|#x:y");
        assert_eq!(out[0].tag("container"), Some("abc123"));
        let out = run_lines(&c, "a:1|c|c:abc123|#x:y", true);
        assert_eq!(out[0].tag("container"), None);
        assert_eq!(out[0].tag("x"), Some("y"));
    }

    #[test]
    fn sanitize_and_convert_names() {
        let c = cfg("");
        let mut up = parser(false);
        up.sanitize_upstream = true;
        let out = run_with(&c, &up, "my  app/req*s#.x-y;k=v:1|c");
        assert_eq!(out[0].name, "my_app-reqs_x-y;k=v");
        // Without sanitising, the name is cut at whitespace, as Telegraf's template parser does.
        let out = run_lines(&c, "my app.x:1|c", false);
        assert_eq!(out[0].name, "my");
        let mut conv = parser(false);
        conv.convert_names = true;
        let out = run_with(&c, &conv, "a.b-c:1|c");
        assert_eq!(out[0].name, "a_b__c");
        // Without convert_names only the separator joins parts; '-' stays.
        let out = run_lines(&c, "a.b-c:1|c", false);
        assert_eq!(out[0].name, "a_b-c");
    }

    #[test]
    fn templates_through_the_parser_and_their_tags_win() {
        let c = cfg("");
        let mut p = parser(true);
        p.templates = Templates::new(&["api.* measurement.host.field dc=eu".into()], "_").unwrap();
        let out = run_with(
            &c,
            &p,
            "api.web1.latency,host=bucket,zone=z:12|ms|#team:core\napi.web1.hits:2|c",
        );
        assert_eq!(
            lp(&out),
            [
                "api,dc=eu,host=web1,metric_type=counter hits=2i 7",
                "api,dc=eu,host=web1,metric_type=timing,team=core,zone=z latency_mean=12,latency_median=12,latency_stddev=0,latency_sum=12,latency_upper=12,latency_lower=12,latency_count=1i 7",
            ]
        );
    }

    #[test]
    fn a_remembered_bucket_parses_as_a_new_one_and_the_memo_is_bounded() {
        use crate::codec::series_memo::MAX_KEY;
        let kept_in = |v: &mut Parsed, bucket: &str| v.buckets.find(bucket.as_bytes()).ok();
        let mut p = parser(true);
        p.templates = Templates::new(&["api.* measurement.host.field dc=eu".into()], "_").unwrap();
        let line = "api.web1.latency,zone=z:12|ms|#team:core";
        let mut fresh = Parsed::default();
        p.parse_line(line, None, 5, &mut fresh).unwrap();
        // The second time the bucket comes from the memo, with other DataDog tags.
        let mut kept = Parsed::default();
        p.parse_line(line, None, 5, &mut kept).unwrap();
        p.parse_line("api.web1.latency,zone=z:3|c|#team:web", None, 5, &mut kept)
            .unwrap();
        assert!(kept_in(&mut kept, "api.web1.latency,zone=z").is_some());
        assert_eq!(kept.samples[0], fresh.samples[0]);
        let second = &kept.samples[1];
        assert_eq!(
            (second.name.as_str(), second.field.as_str()),
            ("api", "latency")
        );
        let tags: Vec<_> = second
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            tags,
            [
                "dc=eu",
                "host=web1",
                "zone=z",
                "metric_type=counter",
                "team=web"
            ]
        );
        // A bucket that fails is not remembered, and fails again.
        assert!(p.parse_line(",zone=z:1|c", None, 5, &mut kept).is_err());
        assert!(p.parse_line(",zone=z:1|c", None, 5, &mut kept).is_err());
        assert!(kept_in(&mut kept, ",zone=z").is_none());
        // Buckets of many tags (about 2.5 kB each in the memo), far past its budget: it
        // starts over, keeps count of what it holds, and every line still parses.
        let tags: String = (0..40).map(|t| format!(",t{t:02}=v")).collect();
        let buckets: Vec<String> = (0..1000).map(|i| format!("b{i}{tags}")).collect();
        for bucket in &buckets {
            assert!(bucket.len() <= MAX_KEY);
            p.parse_line(&format!("{bucket}:1|c"), None, 5, &mut kept)
                .unwrap();
        }
        assert!(kept.buckets_bytes <= MAX_BUCKETS_BYTES);
        let held: Vec<&String> = buckets
            .iter()
            .filter(|b| kept_in(&mut kept, b).is_some())
            .collect();
        assert!(
            !held.is_empty() && held.len() < 1000,
            "the memo started over"
        );
        let counted: usize = held
            .iter()
            .map(|b| {
                let i = kept_in(&mut kept, b).unwrap();
                bucket_bytes(b, &kept.buckets.get(i).2)
            })
            .sum();
        assert_eq!(counted, kept.buckets_bytes);
        assert_eq!(kept.samples.len(), 2 + 1000);
        let last = kept.samples.last().unwrap();
        assert_eq!((last.name.as_str(), last.tags.len()), ("b999", 41));
        // A bucket longer than the memo's longest key parses but is not remembered.
        let (p, mut v) = (parser(false), Parsed::default());
        let name = "x".repeat(MAX_KEY + 1);
        p.parse_line(&format!("{name},k=v:1|g"), None, 5, &mut v)
            .unwrap();
        assert!(v.buckets.is_empty());
        assert_eq!(
            (v.samples[0].name.as_str(), v.samples[0].tags.len()),
            (&name[..], 2)
        );
    }

    #[test]
    fn float_options_and_integer_counters() {
        let out = run_lines(&cfg(""), "c:1.9|c\nc:2|c|@0.3\ns:a|s\nt:1|ms", false);
        let by = |out: &[Metric], n: &str| out.iter().find(|m| m.name == n).cloned().unwrap();
        // Telegraf: 1.9 truncates to 1; 2 at rate 0.3 counts int(6.67) = 6.
        assert_eq!(by(&out, "c").field("value"), Some(&FieldValue::Int(7)));
        assert_eq!(by(&out, "s").field("value"), Some(&FieldValue::Int(1)));
        assert_eq!(by(&out, "t").field("count"), Some(&FieldValue::Int(1)));
        let c = cfg("float_counters = true\nfloat_sets = true\nfloat_timings = true");
        let out = run_lines(&c, "c:1.9|c\nc:2|c|@0.3\ns:a|s\nt:1|ms", false);
        assert_eq!(by(&out, "c").field("value"), Some(&FieldValue::Float(7.0)));
        assert_eq!(by(&out, "s").field("value"), Some(&FieldValue::Float(1.0)));
        assert_eq!(by(&out, "t").field("count"), Some(&FieldValue::Float(1.0)));
    }

    #[test]
    fn aggregation_temporality_start_time_and_tag() {
        let c = cfg("enable_aggregation_temporality = true");
        let mut p = parser(true);
        p.temporality = Some("delta");
        let mut aggs = Aggregates::new(10, 1_700_000_000_000_000_000);
        let now = Instant::now();
        feed(&p, &mut aggs, "c:1|c\ng:2|g\nd:1|d", now);
        let out = Statsd::flush(&c, &mut aggs, 1_700_000_010_000_000_000, now);
        assert_eq!(out.len(), 3);
        for m in &out {
            assert_eq!(
                m.field("start_time"),
                Some(&FieldValue::from("2023-11-14T22:13:20Z")),
                "{m}"
            );
        }
        let counter = out.iter().find(|m| m.name == "c").unwrap();
        assert_eq!(counter.tag("temporality"), Some("delta"));
        assert_eq!(
            out.iter()
                .find(|m| m.name == "g")
                .unwrap()
                .tag("temporality"),
            None
        );
        // The next aggregates start at this flush.
        feed(&p, &mut aggs, "c:1|c", now);
        let out = Statsd::flush(&c, &mut aggs, 1_700_000_020_000_000_000, now);
        assert_eq!(
            out[0].field("start_time"),
            Some(&FieldValue::from("2023-11-14T22:13:30Z"))
        );
    }

    #[test]
    fn max_ttl_forgets_idle_series_on_a_controlled_clock() {
        let c = cfg("delete_gauges = false\ndelete_counters = false\nmax_ttl = \"10s\"");
        let p = parser(false);
        let mut aggs = Aggregates::new(10, 0);
        let t0 = Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        feed(&p, &mut aggs, "idle:1|g\nbusy:1|c", t0);
        assert_eq!(Statsd::flush(&c, &mut aggs, 1, at(5)).len(), 2);
        feed(&p, &mut aggs, "busy:1|c", at(8));
        // At 10 s idle is exactly max_ttl old: still there (Telegraf expires after).
        assert_eq!(Statsd::flush(&c, &mut aggs, 2, at(10)).len(), 2);
        // At 11 s it is emitted one last time, then forgotten; busy (updated at 8) stays.
        assert_eq!(Statsd::flush(&c, &mut aggs, 3, at(11)).len(), 2);
        let out = Statsd::flush(&c, &mut aggs, 4, at(12));
        assert_eq!(lp(&out), ["busy,metric_type=counter value=2i 4"]);
        // busy, idle since 8 s, goes out a last time at 19 s and is then forgotten.
        assert_eq!(Statsd::flush(&c, &mut aggs, 5, at(19)).len(), 1);
        assert!(Statsd::flush(&c, &mut aggs, 6, at(20)).is_empty());
    }

    #[test]
    fn options_that_cannot_apply_are_refused_or_warned() {
        let b = |t: &str| build(toml::from_str(t).unwrap(), &BuildContext::default());
        match b("sanitize_name_method = \"lower\"") {
            Err(BuildError::Config(c)) => assert_eq!(c.path, ["sanitize_name_method"]),
            _ => panic!("accepted a bad sanitize_name_method"),
        }
        match b("templates = [\"host.field\"]") {
            Err(BuildError::Config(c)) => assert_eq!(c.path, ["templates"]),
            _ => panic!("accepted a template without measurement"),
        }
        for ok in [
            "tcp_keep_alive = true\ntcp_keep_alive_period = \"30s\"\nprotocol = \"tcp\"",
            "datadog_distributions = true\nnumber_workers_threads = 2",
            "read_buffer_size = 65535\nsanitize_name_method = \"upstream\"\nconvert_names = true",
            "percentiles = [50, 90]\nmetric_separator = \"\"",
        ] {
            assert!(b(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn delete_options_keep_or_reset_state() {
        let keep = cfg("delete_counters = false\ndelete_gauges = false");
        let p = parser(false);
        let mut aggs = Aggregates::new(10, 0);
        let now = Instant::now();
        feed(&p, &mut aggs, "c:1|c\ng:3|g\nt:1|ms", now);
        assert_eq!(Statsd::flush(&keep, &mut aggs, 1, now).len(), 3);
        feed(&p, &mut aggs, "c:2|c", now);
        let out = Statsd::flush(&keep, &mut aggs, 2, now);
        assert_eq!(out.len(), 2, "timing deleted, counter and gauge kept");
        let c = out.iter().find(|m| m.name == "c").unwrap();
        assert_eq!(
            c.field("value"),
            Some(&FieldValue::Int(3)),
            "counter keeps counting"
        );
    }

    async fn start(
        toml_text: &str,
    ) -> (
        String,
        flume::Receiver<Vec<Metric>>,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let t: toml::Table =
            toml::from_str(&format!("service_address = \"{addr}\"\n{toml_text}")).unwrap();
        let InputPlugin::Service(svc) = build(t, &BuildContext::default()).unwrap() else {
            panic!()
        };
        let (sink, rx) = crate::plugin::test_sink(16);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(svc.run(ServiceContext {
            sink,
            interval: Duration::from_secs(10),
            shutdown,
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        (addr, rx, stop, task)
    }

    #[tokio::test]
    async fn udp_packets_flush_on_the_timer_and_on_shutdown() {
        let (addr, rx, stop, task) = start("flush_interval = \"200ms\"").await;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.send_to(b"a:1|c\na:2|c\nb:7|g", &addr).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv_async())
            .await
            .unwrap()
            .unwrap();
        let a = got.iter().find(|m| m.name == "a").unwrap();
        assert_eq!(a.field("value"), Some(&FieldValue::Int(3)));
        // Telegraf's self-metric names for the listener.
        let me = crate::selfstat::snapshot(0, false)
            .into_iter()
            .find(|m| m.name == "internal_statsd" && m.tag("address") == Some(addr.as_str()))
            .unwrap();
        assert_eq!(me.field("udp_packets_received"), Some(&FieldValue::Int(1)));
        assert_eq!(me.field("udp_bytes_received"), Some(&FieldValue::Int(17)));
        assert_eq!(me.field("udp_packets_dropped"), Some(&FieldValue::Int(0)));
        assert_eq!(
            me.field("max_pending_messages"),
            Some(&FieldValue::Int(10000))
        );
        assert!(matches!(me.field("parse_time_ns"), Some(FieldValue::Int(n)) if *n > 0));
        sock.send_to(b"c:1|c", &addr).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let rest: Vec<Metric> = rx.drain().flatten().collect();
        assert!(
            rest.iter().any(|m| m.name == "c"),
            "final flush on shutdown: {rest:?}"
        );
    }

    #[tokio::test]
    async fn tcp_lines() {
        use tokio::io::AsyncWriteExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let t: toml::Table = toml::from_str(&format!(
            "protocol = \"tcp\"\nservice_address = \"{addr}\"\nflush_interval = \"100ms\""
        ))
        .unwrap();
        let InputPlugin::Service(svc) = build(t, &BuildContext::default()).unwrap() else {
            panic!()
        };
        let (sink, rx) = crate::plugin::test_sink(16);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(svc.run(ServiceContext {
            sink,
            interval: Duration::from_secs(10),
            shutdown,
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"t:5|c\nt:5|c\n").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv_async())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got[0].field("value"), Some(&FieldValue::Int(10)));
        let me = crate::selfstat::snapshot(0, false)
            .into_iter()
            .find(|m| m.name == "internal_statsd" && m.tag("address") == Some(addr.as_str()))
            .unwrap();
        assert_eq!(me.field("tcp_packets_received"), Some(&FieldValue::Int(2)));
        assert_eq!(me.field("tcp_bytes_received"), Some(&FieldValue::Int(12)));
        assert_eq!(me.field("tcp_total_connections"), Some(&FieldValue::Int(1)));
        assert_eq!(me.field("tcp_max_connections"), Some(&FieldValue::Int(250)));
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn tcp_line_without_end_is_bounded_and_closes_the_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let t: toml::Table = toml::from_str(&format!(
            "protocol = \"tcp\"\nservice_address = \"{addr}\"\nflush_interval = \"100ms\""
        ))
        .unwrap();
        let InputPlugin::Service(svc) = build(t, &BuildContext::default()).unwrap() else {
            panic!()
        };
        let (sink, rx) = crate::plugin::test_sink(16);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(svc.run(ServiceContext {
            sink,
            interval: Duration::from_secs(10),
            shutdown,
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A line of exactly the limit is still taken.
        let mut ok = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut long_ok = vec![b'a'; MAX_TCP_LINE - 4];
        long_ok.extend_from_slice(b":1|c\n");
        ok.write_all(&long_ok).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv_async())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got[0].field("value"), Some(&FieldValue::Int(1)));
        // A line that never ends: the server must give up on it instead of buffering forever.
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = s.write_all(&vec![b'x'; 4 * MAX_TCP_LINE]).await;
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "connection still open: {closed:?}"
        );
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    /// The timer field (`tr`) of the established TCP sockets whose local port is `port`, from
    /// /proc/net/tcp: 2 means the keep-alive timer runs.
    fn server_side_timers(port: u16) -> Vec<String> {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let local_port = u16::from_str_radix(cols[1].rsplit(':').next()?, 16).ok()?;
                (local_port == port && cols[3] == "01")
                    .then(|| cols[5].split(':').next().unwrap().to_string())
            })
            .collect()
    }

    #[tokio::test]
    async fn tcp_keep_alive_arms_the_timer_on_accepted_connections() {
        for (keep, want) in [(true, "02"), (false, "00")] {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let t: toml::Table = toml::from_str(&format!(
                "protocol = \"tcp\"\nservice_address = \"127.0.0.1:{port}\"\n\
                 tcp_keep_alive = {keep}\ntcp_keep_alive_period = \"30s\""
            ))
            .unwrap();
            let InputPlugin::Service(svc) = build(t, &BuildContext::default()).unwrap() else {
                panic!()
            };
            let (sink, _rx) = crate::plugin::test_sink(16);
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(svc.run(ServiceContext {
                sink,
                interval: Duration::from_secs(10),
                shutdown,
            }));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let ok = {
                let mut found = Vec::new();
                for _ in 0..50 {
                    // The kernel establishes it before the server accepts and sets it up.
                    found = server_side_timers(port);
                    if found == [want] {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                found
            };
            assert_eq!(ok, [want], "tcp_keep_alive = {keep}");
            stop.send(true).unwrap();
            task.await.unwrap().unwrap();
        }
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let (tx, _rx) = flume::bounded(1);
        let dropped = Stat::default();
        let msg = || Message {
            data: b"a:1|c".to_vec(),
            source: None,
            time: 0,
        };
        push(&tx, msg(), &dropped);
        push(&tx, msg(), &dropped);
        push(&tx, msg(), &dropped);
        assert_eq!(dropped.get(), 2);
    }
}
