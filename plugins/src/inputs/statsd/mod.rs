//! `inputs.statsd`: a StatsD server (UDP or TCP) that aggregates what it receives and emits
//! the aggregates every `interval` (the input's, else the agent's), with Telegraf's measurement and field names.
//!
//! Packets go from the socket into a queue of `allowed_pending_messages`; when the parser
//! falls behind, further packets are dropped and counted, never blocking the socket reader.

#[cfg(test)]
mod fuzz_tests;
mod template;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

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
    #[serde(default)]
    percentiles: Vec<f64>,
    #[serde(default = "default_percentile_limit")]
    percentile_limit: usize,
    #[serde(default = "default_separator")]
    metric_separator: String,
    #[serde(default)]
    parse_data_dog_tags: bool,
    #[serde(default)]
    datadog_keep_container_tag: bool,
    #[serde(default)]
    templates: Vec<String>,
    #[serde(default = "default_pending")]
    allowed_pending_messages: usize,
    /// SO_RCVBUF of the UDP socket (0: the system's default).
    #[serde(default)]
    read_buffer_size: Size,
    /// Forget series not updated for this long (when not deleted at each flush; 0: never).
    #[serde(default)]
    max_ttl: Dur,
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

/// The longest line a TCP client may send (Telegraf's scanner limit).
const MAX_TCP_LINE: usize = 64 * 1024;

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

/// Running statistics of a timing, with a bounded sample for percentiles.
#[derive(Default)]
struct Timing {
    count: u64,
    sum: f64,
    sum_sq: f64,
    lower: f64,
    upper: f64,
    sample: Vec<f64>,
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
    }
}

enum Value {
    Counter(f64),
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
    /// Counter/gauge/timing value; for a gauge, `delta` says whether it adds.
    value: f64,
    delta: bool,
    set_member: Str,
    rate: f64,
}

struct Parser {
    templates: Templates,
    datadog: bool,
    keep_container: bool,
}

impl Parser {
    /// Parses one line (`bucket:value|type[|@rate][|#tags]`, possibly `:value|type` repeated).
    fn parse_line(&self, line: &str, out: &mut Vec<Sample>) -> Result<(), String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(());
        }
        if self.datadog && (line.starts_with("_e{") || line.starts_with("_sc|")) {
            return Ok(()); // DataDog events and service checks carry no metric.
        }
        let (bucket, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("no ':' in {line:?}"))?;
        // DataDog tags apply to every value of the line: find them first.
        let mut dd_tags: Vec<(Str, Str)> = Vec::new();
        let mut values: Vec<&str> = Vec::new();
        for part in split_values(rest) {
            values.push(part);
        }
        if self.datadog {
            for v in &values {
                for seg in v.split('|').skip(2) {
                    if let Some(tags) = seg.strip_prefix('#') {
                        for t in tags.split(',').filter(|t| !t.is_empty()) {
                            let (k, v) = t.split_once(':').unwrap_or((t, "true"));
                            dd_tags.push((k.into(), v.into()));
                        }
                    } else if let Some(c) = seg.strip_prefix("c:")
                        && self.keep_container
                    {
                        dd_tags.push(("container".into(), c.into()));
                    }
                }
            }
        }
        // Influx-style tags in the bucket: `name,tag=value,...`.
        let mut parts = bucket.split(',');
        let base = parts.next().unwrap_or_default();
        if base.is_empty() {
            return Err(format!("empty metric name in {line:?}"));
        }
        let mut tags: Vec<(Str, Str)> = Vec::new();
        for t in parts {
            if let Some((k, v)) = t.split_once('=')
                && !k.is_empty()
            {
                tags.push((k.into(), v.into()));
            }
        }
        let (name, field, tmpl_tags) = self.templates.apply(base);
        tags.extend(tmpl_tags);
        tags.extend(dd_tags);
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
            let mut s = Sample {
                name: name.clone(),
                field: field.clone(),
                tags: tags.clone(),
                kind,
                value: 0.0,
                delta: false,
                set_member: Str::default(),
                rate,
            };
            if kind == Kind::Set {
                if value.is_empty() {
                    return Err(format!("empty set member in {line:?}"));
                }
                s.set_member = value.into();
            } else {
                s.value = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("bad value {value:?} in {line:?}"))?;
                s.delta = kind == Kind::Gauge && (value.starts_with('+') || value.starts_with('-'));
            }
            out.push(s);
        }
        Ok(())
    }
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
}

impl Aggregates {
    fn add(&mut self, s: Sample) {
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
            updated: Instant::now(),
        });
        entry.updated = Instant::now();
        let slot = match entry.fields.iter().position(|(f, _)| *f == s.field) {
            Some(i) => &mut entry.fields[i].1,
            None => {
                let v = match s.kind {
                    Kind::Counter => Value::Counter(0.0),
                    Kind::Gauge => Value::Gauge(0.0),
                    Kind::Set => Value::Set(HashSet::new()),
                    _ => Value::Timing(Box::default()),
                };
                entry.fields.push((s.field, v));
                &mut entry.fields.last_mut().unwrap().1
            }
        };
        match slot {
            Value::Counter(c) => *c += s.value / s.rate,
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

struct Shared {
    parser: Parser,
    aggs: Mutex<Aggregates>,
    parse_errors: Stat,
    received: Stat,
    /// Aggregates the output buffers refused (full).
    refused: Stat,
}

impl Shared {
    fn handle_packet(&self, packet: &[u8]) {
        let text = String::from_utf8_lossy(packet);
        let mut samples = Vec::new();
        for line in text.split('\n') {
            if let Err(e) = self.parser.parse_line(line, &mut samples) {
                self.parse_errors.incr();
                tracing::debug!(error = %e, "bad statsd line");
            }
        }
        self.received.add(samples.len() as i64);
        let mut aggs = self.aggs.lock().unwrap();
        for s in samples {
            aggs.add(s);
        }
    }
}

impl Statsd {
    fn flush(cfg: &Config, aggs: &mut Aggregates, time: i64) -> Vec<Metric> {
        let mut out = Vec::with_capacity(aggs.entries.len());
        let ttl = cfg.max_ttl.get();
        let now = Instant::now();
        for (key, entry) in &aggs.entries {
            let kind = match key.kind {
                Kind::Counter => ValueType::Counter,
                Kind::Gauge | Kind::Set => ValueType::Gauge,
                _ => ValueType::Summary,
            };
            let mut m = Metric::new(key.name.clone(), time).with_kind(kind);
            m.tags = key.tags.clone();
            m.add_tag("metric_type", key.kind.tag());
            for (field, v) in &entry.fields {
                let prefix = if field == "value" {
                    String::new()
                } else {
                    format!("{field}_")
                };
                match v {
                    Value::Counter(c) if cfg.float_counters => m.add_field(field.clone(), *c),
                    Value::Counter(c) => m.add_field(field.clone(), *c as i64),
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
                        // With percentile_limit = 0 no sample is kept: no median, no percentiles.
                        if !sorted.is_empty() {
                            let mid = sorted.len() / 2;
                            let median = if sorted.len() % 2 == 1 {
                                sorted[mid]
                            } else {
                                (sorted[mid - 1] + sorted[mid]) / 2.0
                            };
                            m.add_field(format!("{prefix}median"), median);
                        }
                        m.add_field(format!("{prefix}stddev"), var.sqrt());
                        m.add_field(format!("{prefix}sum"), t.sum);
                        m.add_field(format!("{prefix}upper"), t.upper);
                        m.add_field(format!("{prefix}lower"), t.lower);
                        if cfg.float_timings {
                            m.add_field(format!("{prefix}count"), n);
                        } else {
                            m.add_field(format!("{prefix}count"), t.count as i64);
                        }
                        for p in cfg.percentiles.iter().filter(|_| !sorted.is_empty()) {
                            m.add_field(
                                format!("{prefix}{}", percentile_name(*p)),
                                percentile(&sorted, *p),
                            );
                        }
                    }
                    Value::Timing(_) => {}
                }
            }
            if !m.fields.is_empty() {
                out.push(m);
            }
        }
        aggs.entries.retain(|key, entry| {
            let delete = match key.kind {
                Kind::Counter => cfg.delete_counters,
                Kind::Gauge => cfg.delete_gauges,
                Kind::Set => cfg.delete_sets,
                _ => cfg.delete_timings,
            };
            !delete && (ttl.is_zero() || now.duration_since(entry.updated) < ttl)
        });
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
        let shared = Arc::new(Shared {
            parser,
            aggs: Mutex::new(Aggregates {
                entries: HashMap::new(),
                percentile_limit: cfg.percentile_limit,
            }),
            parse_errors: stats.stat("parse_errors"),
            received: stats.stat("metrics_received"),
            refused: stats.stat("metrics_dropped"),
        });
        let (tx, rx) = flume::bounded::<Vec<u8>>(cfg.allowed_pending_messages.max(1));
        let mut shutdown = ctx.shutdown.clone();
        let reader = match socket {
            Socket::Udp(sock) => {
                tracing::info!(input = %id, address = %sock.local_addr()?, "statsd listening on UDP");
                let dropped = dropped.clone();
                let mut sd = shutdown.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        tokio::select! {
                            r = sock.recv_from(&mut buf) => match r {
                                Ok((n, _)) => push(&tx, buf[..n].to_vec(), &dropped),
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
                let dropped = dropped.clone();
                let current = stats.stat("tcp_current_connections");
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
                        let stream = match accepted {
                            Ok((s, _)) => s,
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
                        let Ok(permit) = conns.clone().try_acquire_owned() else {
                            tracing::warn!(
                                "statsd: refused a TCP connection: max_tcp_connections ({max}) reached"
                            );
                            continue;
                        };
                        let (tx, dropped, current) = (tx.clone(), dropped.clone(), current.clone());
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
                                        Ok(_) => push(&tx, std::mem::take(&mut line), &dropped),
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
        // The parser: one task draining the queue into the aggregates.
        let sh = shared.clone();
        let parser_task = tokio::spawn(async move {
            while let Ok(packet) = rx.recv_async().await {
                sh.handle_packet(&packet);
            }
        });
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
        let _ = parser_task.await;
        Self::emit(&cfg, &shared, &ctx.sink).await;
        Ok(())
    }
}

impl Statsd {
    /// Flushes the aggregates into the pipeline; false when the pipeline is gone.
    async fn emit(cfg: &Config, shared: &Shared, sink: &crate::plugin::MetricSink) -> bool {
        let batch = {
            let mut aggs = shared.aggs.lock().unwrap();
            Self::flush(cfg, &mut aggs, now_ns())
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

fn push(tx: &flume::Sender<Vec<u8>>, msg: Vec<u8>, dropped: &Stat) {
    if tx.try_send(msg).is_err() {
        // Log the first drop and then every 1000th, not every packet.
        if dropped.get() % 1000 == 0 {
            tracing::warn!(
                dropped = dropped.get() + 1,
                "statsd: message queue full (allowed_pending_messages); dropping messages"
            );
        }
        dropped.incr();
    }
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
    let templates =
        Templates::new(&cfg.templates, &cfg.metric_separator).map_err(anyhow::Error::msg)?;
    let parser = Parser {
        templates,
        datadog: cfg.parse_data_dog_tags,
        keep_container: cfg.datadog_keep_container_tag,
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
            keep_container: false,
        }
    }

    fn cfg(extra: &str) -> Config {
        parse_config(toml::from_str(extra).unwrap()).unwrap()
    }

    fn run_lines(cfg: &Config, lines: &str, datadog: bool) -> Vec<Metric> {
        let p = parser(datadog);
        let mut aggs = Aggregates {
            entries: HashMap::new(),
            percentile_limit: cfg.percentile_limit,
        };
        for l in lines.lines() {
            let mut v = Vec::new();
            p.parse_line(l, &mut v).unwrap_or_else(|e| panic!("{e}"));
            for s in v {
                aggs.add(s);
            }
        }
        let mut out = Statsd::flush(cfg, &mut aggs, 7);
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
    fn timings_without_a_sample_flush_without_panicking() {
        let c = cfg("percentile_limit = 0\npercentiles = [50.0]");
        let out = run_lines(&c, "rt:3|ms\nrt:5|ms", false);
        assert_eq!(out[0].field("count"), Some(&FieldValue::Int(2)));
        assert_eq!(out[0].field("mean"), Some(&FieldValue::Float(4.0)));
        assert_eq!(out[0].field("median"), None);
    }

    #[test]
    fn datadog_tags_and_errors() {
        let c = cfg("");
        let out = run_lines(&c, "req:1|c|#env:prod,canary\n_e{5,4}:title|text", true);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].tag("env"), Some("prod"));
        assert_eq!(out[0].tag("canary"), Some("true"));
        let p = parser(false);
        let mut v = Vec::new();
        for bad in ["novalue", "x:1|zz", "x:abc|c", "x:1|c|@2", ":1|c", "x:1"] {
            assert!(p.parse_line(bad, &mut v).is_err(), "{bad}");
        }
        assert!(v.is_empty());
    }

    #[test]
    fn delete_options_keep_or_reset_state() {
        let keep = cfg("delete_counters = false\ndelete_gauges = false");
        let p = parser(false);
        let mut aggs = Aggregates {
            entries: HashMap::new(),
            percentile_limit: 10,
        };
        for l in ["c:1|c", "g:3|g", "t:1|ms"] {
            let mut v = Vec::new();
            p.parse_line(l, &mut v).unwrap();
            v.into_iter().for_each(|s| aggs.add(s));
        }
        assert_eq!(Statsd::flush(&keep, &mut aggs, 1).len(), 3);
        let mut v = Vec::new();
        p.parse_line("c:2|c", &mut v).unwrap();
        v.into_iter().for_each(|s| aggs.add(s));
        let out = Statsd::flush(&keep, &mut aggs, 2);
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

    #[test]
    fn full_queue_drops_and_counts() {
        let (tx, _rx) = flume::bounded(1);
        let dropped = Stat::default();
        push(&tx, b"a:1|c".to_vec(), &dropped);
        push(&tx, b"a:1|c".to_vec(), &dropped);
        push(&tx, b"a:1|c".to_vec(), &dropped);
        assert_eq!(dropped.get(), 2);
    }
}
