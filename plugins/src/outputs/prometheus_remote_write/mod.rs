//! `outputs.prometheus_remote_write`: sends batches to a Prometheus remote-write endpoint
//! (Prometheus, VictoriaMetrics, Mimir, Thanos, Cortex) as a snappy-compressed protobuf
//! `WriteRequest` (remote write 1.0).
//!
//! Series are named as `outputs.prometheus_client` (metric_version 2) names them. 2xx is
//! success; 429 and 5xx (and connection errors) are retried, honouring `Retry-After`; other
//! statuses reject the batch for good with the server's message.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::common::http::{
    ClientOptions, TlsClientConfig, build_client, response_error, send_error,
};
use crate::config_types::Duration;
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, ConfigError, Format, OutputSpec, parse_config};

mod encode;
pub use encode::Encoder;

/// The remote-write 1.0 messages (prometheus/prompb/types.proto), the fields sonde sends.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    url: String,
    timeout: Duration,
    idle_conn_timeout: Duration,
    username: Option<String>,
    password: Option<String>,
    /// File holding a bearer token, read at each write (so a rotated token is picked up).
    bearer_token: Option<std::path::PathBuf>,
    bearer_token_string: Option<String>,
    headers: BTreeMap<String, String>,
    string_as_label: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: "http://127.0.0.1:9090/api/v1/write".into(),
            timeout: Duration::from_secs(5),
            idle_conn_timeout: Duration::default(),
            username: None,
            password: None,
            bearer_token: None,
            bearer_token_string: None,
            headers: BTreeMap::new(),
            string_as_label: false,
        }
    }
}

enum Auth {
    None,
    Basic(String, Option<String>),
    Token(String),
    TokenFile(std::path::PathBuf),
}

pub struct RemoteWrite {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    auth: Auth,
    string_as_label: bool,
    /// Request buffers, reused from batch to batch.
    encoder: Encoder,
}

#[async_trait]
impl Output for RemoteWrite {
    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        self.encoder.encode(batch, self.string_as_label);
        self.send().await
    }

    fn writes_records(&self) -> bool {
        true
    }

    async fn write_records(&mut self, records: &[&[u8]]) -> Result<(), WriteError> {
        let skipped = self.encoder.encode_records(records, self.string_as_label);
        self.send().await?;
        match skipped {
            None => Ok(()),
            Some((rejected, e)) => Err(WriteError::Partial {
                rejected,
                reason: e.to_string(),
            }),
        }
    }
}

impl RemoteWrite {
    /// Sends the encoder's request (nothing when it is empty).
    async fn send(&mut self) -> Result<(), WriteError> {
        if self.encoder.request().is_empty() {
            return Ok(());
        }
        let body = bytes::Bytes::copy_from_slice(self.encoder.compress().map_err(|e| {
            WriteError::Reject {
                reason: format!("snappy: {e}"),
            }
        })?);
        let mut rb = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        match &self.auth {
            Auth::None => {}
            Auth::Basic(u, p) => rb = rb.basic_auth(u, p.as_ref()),
            Auth::Token(t) => rb = rb.bearer_auth(t),
            Auth::TokenFile(path) => {
                let t = std::fs::read_to_string(path).map_err(|e| WriteError::Retry {
                    reason: format!("reading bearer_token {}: {e}", path.display()),
                    retry_after: None,
                })?;
                rb = rb.bearer_auth(t.trim());
            }
        }
        let resp = rb.send().await.map_err(|e| send_error(&self.url, &e))?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(response_error(resp, &[]).await)
    }
}

fn build(mut table: toml::Table, _ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    let bad = |path: &[&str], message: String| {
        BuildError::Config(ConfigError {
            path: path.iter().map(|s| s.to_string()).collect(),
            message,
        })
    };
    let url = reqwest::Url::parse(&cfg.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| bad(&["url"], format!("not an http(s) URL: {:?}", cfg.url)))?;
    let basic = cfg.username.is_some() || cfg.password.is_some();
    let auth = match (basic, cfg.bearer_token, cfg.bearer_token_string) {
        (false, None, None) => Auth::None,
        (true, None, None) => Auth::Basic(cfg.username.unwrap_or_default(), cfg.password),
        (false, Some(f), None) => Auth::TokenFile(f),
        (false, None, Some(t)) => Auth::Token(t),
        _ => {
            return Err(bad(
                &["bearer_token"],
                "use one of username/password, bearer_token and bearer_token_string".into(),
            ));
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    headers.insert(
        HeaderName::from_static("x-prometheus-remote-write-version"),
        HeaderValue::from_static("0.1.0"),
    );
    for (k, v) in &cfg.headers {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|e| bad(&["headers", k], format!("bad header name: {e}")))?;
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|e| bad(&["headers", k], format!("bad header value: {e}")))?;
        headers.insert(name, value);
    }
    let client = build_client(&ClientOptions {
        timeout: cfg.timeout.get(),
        idle_conn_timeout: (!cfg.idle_conn_timeout.is_zero()).then(|| cfg.idle_conn_timeout.get()),
        tls: &tls,
    })?;
    Ok(Box::new(RemoteWrite {
        client,
        url,
        headers,
        auth,
        string_as_label: cfg.string_as_label,
        encoder: Encoder::new(),
    }))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "prometheus_remote_write",
    description: "Send metrics to a Prometheus remote-write endpoint (protobuf + snappy)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::prometheus::sanitize_label_name;
    use crate::codec::prometheus_series::place;
    use crate::codec::record;
    use crate::model::{FieldValue, ValueType};
    use std::collections::HashMap;
    /// The encoder as it was before [`Encoder`]: prost messages with a `String` per label.
    /// Kept as the reference the hand-written encoding must match byte for byte.
    fn reference_encode(batch: &[Metric], string_as_label: bool) -> proto::WriteRequest {
        let mut index: HashMap<Vec<proto::Label>, usize> = HashMap::new();
        let mut series: Vec<proto::TimeSeries> = Vec::new();
        let mut labels: Vec<proto::Label> = Vec::new();
        for m in batch {
            for (key, value) in &m.fields {
                let Some(value) = value
                    .as_f64()
                    .filter(|_| !matches!(value, FieldValue::String(_)))
                else {
                    continue;
                };
                let Some(p) = place(m, key, 2) else {
                    continue;
                };
                labels.clear();
                labels.push(proto::Label {
                    name: "__name__".into(),
                    value: format!("{}{}", p.family, p.suffix),
                });
                let bound_tag = p.bound.as_ref().map(|b| b.0).filter(|l| m.tag(l).is_some());
                for (k, v) in &m.tags {
                    if !v.is_empty() && Some(k.as_str()) != bound_tag {
                        labels.push(proto::Label {
                            name: sanitize_label_name(k),
                            value: v.to_string(),
                        });
                    }
                }
                if string_as_label {
                    for (k, v) in &m.fields {
                        if let FieldValue::String(s) = v {
                            labels.push(proto::Label {
                                name: sanitize_label_name(k),
                                value: s.to_string(),
                            });
                        }
                    }
                }
                if let Some((l, text)) = p.bound {
                    labels.push(proto::Label {
                        name: l.into(),
                        value: text,
                    });
                }
                // Remote write wants names sorted; a stable sort keeps the first of two keys that
                // sanitize alike, which dedup then keeps.
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                labels.dedup_by(|a, b| a.name == b.name);
                let sample = proto::Sample {
                    value,
                    timestamp: m.time.div_euclid(1_000_000),
                };
                match index.get(&labels) {
                    Some(&i) => series[i].samples.push(sample),
                    None => {
                        index.insert(labels.clone(), series.len());
                        series.push(proto::TimeSeries {
                            labels: labels.clone(),
                            samples: vec![sample],
                        });
                    }
                }
            }
        }
        for s in &mut series {
            if s.samples.len() > 1 {
                // Stable: for equal timestamps the later write comes last and is the one kept.
                s.samples.sort_by_key(|x| x.timestamp);
                let mut kept: Vec<proto::Sample> = Vec::with_capacity(s.samples.len());
                for x in s.samples.drain(..) {
                    match kept.last_mut() {
                        Some(last) if last.timestamp == x.timestamp => *last = x,
                        _ => kept.push(x),
                    }
                }
                s.samples = kept;
            }
        }
        proto::WriteRequest { timeseries: series }
    }

    /// What the hand-written encoder sends for `batch`, decoded.
    fn encode(batch: &[Metric], string_as_label: bool) -> proto::WriteRequest {
        let mut enc = Encoder::new();
        prost::Message::decode(enc.encode(batch, string_as_label)).unwrap()
    }

    use std::io::{BufRead, BufReader, Read, Write};

    fn names(ts: &proto::TimeSeries) -> Vec<(&str, &str)> {
        ts.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn encodes_series_sorted_and_deduplicated() {
        let batch = [
            Metric::new("cpu", 2_000_000_000)
                .with_kind(ValueType::Gauge)
                .with_tag("zone", "b")
                .with_tag("Host", "a")
                .with_field("usage_idle", 90.0)
                .with_field("state", "ok")
                .with_field("up", true),
            Metric::new("cpu", 1_000_000_000)
                .with_tag("zone", "b")
                .with_tag("Host", "a")
                .with_field("usage_idle", 80.0),
            Metric::new("cpu", 2_000_000_000)
                .with_tag("zone", "b")
                .with_tag("Host", "a")
                .with_field("usage_idle", 95.0),
            Metric::new("prometheus", 3_000_000)
                .with_kind(ValueType::Histogram)
                .with_tag("le", "0.5")
                .with_field("rt_bucket", 4u64),
        ];
        let req = encode(&batch, false);
        assert_eq!(req.timeseries.len(), 3);
        let idle = &req.timeseries[0];
        // Sorted by name: uppercase sorts before "__name__".
        assert_eq!(
            names(idle),
            [("Host", "a"), ("__name__", "cpu_usage_idle"), ("zone", "b")]
        );
        let samples: Vec<(i64, f64)> = idle
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value))
            .collect();
        assert_eq!(samples, [(1000, 80.0), (2000, 95.0)]);
        assert_eq!(req.timeseries[1].samples[0].value, 1.0);
        assert_eq!(
            names(&req.timeseries[2]),
            [("__name__", "rt_bucket"), ("le", "0.5")]
        );
        let with_strings = encode(&batch[..1], true);
        assert!(names(&with_strings.timeseries[0]).contains(&("state", "ok")));
    }

    /// A batch with everything the encoder has to get right: every value type and kind,
    /// both histogram/summary shapes, NaN/infinities/zeros, strings, label names that need
    /// sanitizing (and collide once sanitized), special characters in values, repeated and
    /// out-of-order timestamps, negative and zero times.
    fn varied_batch() -> Vec<Metric> {
        let mut b = vec![
            Metric::new("cpu", 2_000_000_000)
                .with_kind(ValueType::Gauge)
                .with_tag("host", "a \"quoted\", comma=eq\\back")
                .with_tag("zone", "ünïcödé ✓")
                .with_tag("empty", "")
                .with_field("usage_idle", 90.5)
                .with_field("nan", f64::NAN)
                .with_field("inf", f64::INFINITY)
                .with_field("ninf", f64::NEG_INFINITY)
                .with_field("zero", 0.0)
                .with_field("negzero", -0.0)
                .with_field("state", "ok")
                .with_field("up", true)
                .with_field("down", false)
                .with_field("n", -7i64)
                .with_field("big", u64::MAX),
            Metric::new("cpu", 1_000_000_000)
                .with_kind(ValueType::Gauge)
                .with_tag("host", "a \"quoted\", comma=eq\\back")
                .with_tag("zone", "ünïcödé ✓")
                .with_field("usage_idle", 80.0),
            // Same series and timestamp as the first: the later value wins.
            Metric::new("cpu", 2_000_000_000)
                .with_kind(ValueType::Gauge)
                .with_tag("host", "a \"quoted\", comma=eq\\back")
                .with_tag("zone", "ünïcödé ✓")
                .with_field("usage_idle", 95.0),
            Metric::new("http.requests-total", 0)
                .with_kind(ValueType::Counter)
                .with_tag("method.name", "GET")
                .with_tag("method-name", "POST")
                .with_tag("9lives", "cat")
                .with_tag("__name__", "sneaky")
                .with_tag("Upper", "x\ny")
                .with_field("counter", 12u64),
            Metric::new("old", -1_500_000)
                .with_field("v", 1.0)
                .with_field("text", "line\nbreak"),
            // Telegraf's v1 histogram and summary shapes.
            Metric::new("rt", 3_000_000)
                .with_kind(ValueType::Histogram)
                .with_tag("le", "stale")
                .with_tag("path", "/api")
                .with_field("sum", 12.5)
                .with_field("count", 4u64)
                .with_field("0.5", 1u64)
                .with_field("1", 3u64)
                .with_field("+Inf", 4u64),
            Metric::new("lat", 3_000_000)
                .with_kind(ValueType::Summary)
                .with_field("sum", 2.0)
                .with_field("count", 2u64)
                .with_field("0.99", 1.9)
                .with_field("0.5", f64::NAN),
            // The v2 shapes: the bound in a tag.
            Metric::new("prometheus", 4_000_000)
                .with_kind(ValueType::Histogram)
                .with_tag("le", "0.25")
                .with_field("req_bucket", 7u64)
                .with_field("req_sum", 1.5)
                .with_field("req_count", 9u64)
                .with_field("req_other", 1.0),
            Metric::new("prometheus", 4_000_000)
                .with_kind(ValueType::Summary)
                .with_tag("quantile", "0.9")
                .with_field("rpc", 0.2),
            // No bound tag: the bucket has no place.
            Metric::new("prometheus", 4_000_000)
                .with_kind(ValueType::Histogram)
                .with_field("req_bucket", 7u64),
            Metric::new("strings_only", 5).with_field("s", "x"),
        ];
        // Many samples of a few series, timestamps shuffled with repeats.
        let mut rng = fastrand::Rng::with_seed(1);
        for i in 0..300 {
            b.push(
                Metric::new("mem", rng.i64(0..40) * 1_000_000 + rng.i64(0..999_999))
                    .with_tag("host", format!("h{}", i % 7))
                    .with_field("used", rng.f64())
                    .with_field("free", i as i64),
            );
        }
        b
    }

    #[test]
    fn hand_encoding_matches_prost_byte_for_byte() {
        let batch = varied_batch();
        let mut enc = Encoder::new();
        for string_as_label in [false, true] {
            // Twice with one encoder, a smaller batch between: nothing of a batch stays.
            for part in [&batch[..], &batch[3..9], &batch[..]] {
                let want = prost::Message::encode_to_vec(&reference_encode(part, string_as_label));
                let got = enc.encode(part, string_as_label).to_vec();
                assert_eq!(got, want, "string_as_label {string_as_label}");
                // And it decodes to the same request.
                let got: proto::WriteRequest = prost::Message::decode(&got[..]).unwrap();
                let want: proto::WriteRequest = prost::Message::decode(&want[..]).unwrap();
                assert_eq!(format!("{got:?}"), format!("{want:?}"));
            }
        }
        let req = encode(&batch, false);
        let find = |name: &str| {
            req.timeseries
                .iter()
                .find(|t| {
                    t.labels
                        .iter()
                        .any(|l| l.name == "__name__" && l.value == name)
                })
                .unwrap_or_else(|| panic!("no series {name}"))
        };
        assert!(find("cpu_nan").samples[0].value.is_nan());
        assert_eq!(find("cpu_ninf").samples[0].value, f64::NEG_INFINITY);
        assert_eq!(find("cpu_big").samples[0].value, u64::MAX as f64);
        assert_eq!(
            names(find("http_requests_total_counter")),
            [
                ("Upper", "x\ny"),
                ("_9lives", "cat"),
                ("__name__", "http_requests_total_counter"),
                ("method_name", "POST"),
            ]
        );
        assert_eq!(find("old_v").samples[0].timestamp, -2);
        // The stale `le` tag gives way to the bound from the field key.
        let inf: Vec<_> = req
            .timeseries
            .iter()
            .filter(|t| names(t).contains(&("__name__", "rt_bucket")))
            .map(|t| names(t))
            .collect();
        assert_eq!(inf.len(), 3);
        assert!(inf.contains(&vec![
            ("__name__", "rt_bucket"),
            ("le", "+Inf"),
            ("path", "/api")
        ]));
        assert!(
            !req.timeseries
                .iter()
                .any(|t| names(t).contains(&("__name__", "strings_only_s")))
        );
    }

    #[test]
    fn random_batches_match_prost() {
        let mut rng = fastrand::Rng::with_seed(42);
        // Lengths around the encoder's short-label path (32 bytes) and two-byte varints.
        let long: Vec<String> = [26, 27, 32, 33, 140].map(|n| "l".repeat(n)).into();
        let names = ["cpu", "prometheus", "a.b", "9x", "é", &long[0], &long[4]];
        let keys = [
            "v", "sum", "count", "0.5", "+Inf", "x_bucket", "x_sum", "q", "s", "le",
        ];
        let tag_keys = [
            "host", "le", "quantile", "a-b", "a_b", "a.b", "__name__", "ü", &long[2], &long[3],
        ];
        let kinds = [
            ValueType::Untyped,
            ValueType::Counter,
            ValueType::Gauge,
            ValueType::Histogram,
            ValueType::Summary,
        ];
        let mut enc = Encoder::new();
        for _ in 0..300 {
            let batch: Vec<Metric> = (0..rng.usize(0..60))
                .map(|_| {
                    let mut m =
                        Metric::new(names[rng.usize(..names.len())], rng.i64(-3..4) * 999_999)
                            .with_kind(kinds[rng.usize(..kinds.len())]);
                    for _ in 0..rng.usize(0..4) {
                        let v =
                            ["", "x", "0.5", "y z", &long[2], &long[3], &long[4]][rng.usize(..7)];
                        m.add_tag(tag_keys[rng.usize(..tag_keys.len())], v);
                    }
                    for _ in 0..rng.usize(1..5) {
                        let k = keys[rng.usize(..keys.len())];
                        match rng.usize(..6) {
                            0 => m.add_field(k, rng.i64(-2..3) as f64 / 2.0),
                            1 => m.add_field(k, f64::NAN),
                            2 => m.add_field(k, rng.i64(..)),
                            3 => m.add_field(k, rng.bool()),
                            4 => m.add_field(k, ["", "txt"][rng.usize(..2)]),
                            _ => m.add_field(k, rng.u64(..)),
                        }
                    }
                    m
                })
                .collect();
            let sal = rng.bool();
            let want = prost::Message::encode_to_vec(&reference_encode(&batch, sal));
            assert_eq!(enc.encode(&batch, sal), &want[..], "{batch:?}");

            // The same batch as the buffer holds it: records of a few metrics each, some
            // compressed, read straight from their bytes; a damaged record among them is
            // left out whole and counted.
            let mut records = Vec::new();
            let mut rest = &batch[..];
            while !rest.is_empty() {
                let (part, tail) = rest.split_at(rng.usize(1..=rest.len()));
                let mut buf = Vec::new();
                if rng.bool() {
                    record::encode_compressed(part, &mut buf, &mut Vec::new());
                } else {
                    record::encode(part, &mut buf);
                }
                records.push(buf);
                rest = tail;
            }
            let slices: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
            assert_eq!(enc.encode_records(&slices, sal), None);
            assert_eq!(enc.request(), &want[..], "{batch:?}");

            let (good, bad) = batch.split_at(rng.usize(0..=batch.len()));
            let mut damaged = Vec::new();
            record::encode(bad, &mut damaged);
            damaged.pop();
            let mut intact = Vec::new();
            record::encode(good, &mut intact);
            let want = prost::Message::encode_to_vec(&reference_encode(good, sal));
            let (lost, _) = enc
                .encode_records(&[&damaged, &intact], sal)
                .expect("the damaged record is reported");
            assert_eq!(enc.request(), &want[..], "{batch:?}");
            assert_eq!(lost, record::count(&damaged).unwrap_or(0));
        }
    }

    /// Batches that repeat a few tag sets over more (measurement, field) pairs than the
    /// encoder caches, as agents' batches do: series found by pair, by their labels, and by
    /// both in one batch give prost's bytes.
    #[test]
    fn repeated_tag_sets_and_many_names_match_prost() {
        let mut rng = fastrand::Rng::with_seed(9);
        let tag_sets: [&[(&str, &str)]; 7] = [
            &[],
            &[("host", "a")],
            &[("host", "b"), ("job", "j")],
            // Sorts before `__name__`: the general path.
            &[("A", "x"), ("host", "a")],
            // Two names that sanitize alike: the first kept.
            &[("a-b", "1"), ("a_b", "2")],
            &[("host", "a"), ("s", "")],
            // The values of `host=a` under another key: a tag set is its keys and values.
            &[("job", "a")],
        ];
        let mut enc = Encoder::new();
        for _ in 0..200 {
            let batch: Vec<Metric> = (0..rng.usize(0..300))
                .map(|_| {
                    // 40 measurements × 3 keys: more pairs than the name cache keeps; and
                    // "a.b" + "c" and "a" + "b.c" both name the series "a_b_c".
                    let name = match rng.usize(..42) {
                        40 => "a.b".to_string(),
                        41 => "a".to_string(),
                        n => format!("m{n}"),
                    };
                    let key = ["c", "b.c", "v"][rng.usize(..3)];
                    let mut m = Metric::new(name, rng.i64(0..5) * 1_000_000);
                    for &(k, v) in tag_sets[rng.usize(..tag_sets.len())] {
                        m.add_tag(k, v);
                    }
                    m.add_field(key, rng.i64(-5..5));
                    if rng.usize(..8) == 0 {
                        m.add_field("s", "txt");
                    }
                    // A second numeric field: the per-position name memo past the first.
                    if rng.bool() {
                        m.add_field("w", rng.f64());
                    }
                    m
                })
                .collect();
            let sal = rng.bool();
            let want = prost::Message::encode_to_vec(&reference_encode(&batch, sal));
            assert_eq!(enc.encode(&batch, sal), &want[..], "{batch:?}");
            let mut records = Vec::new();
            for part in batch.chunks(rng.usize(1..50)) {
                let mut buf = Vec::new();
                record::encode_compressed(part, &mut buf, &mut Vec::new());
                records.push(buf);
            }
            let slices: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
            assert_eq!(enc.encode_records(&slices, sal), None);
            assert_eq!(enc.request(), &want[..], "{batch:?}");
        }
    }

    /// Records damaged anywhere (or not records at all) are reported, never a panic, and
    /// what is sent then holds only the intact records' samples.
    #[test]
    fn damaged_records_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut enc = Encoder::new();
        let intact_batch: Vec<Metric> = (0..20)
            .map(|i| {
                Metric::new("m", i * 1_000_000)
                    .with_tag("t", "x")
                    .with_field("v", i)
            })
            .collect();
        let mut intact = Vec::new();
        record::encode(&intact_batch, &mut intact);
        let want = enc.encode(&intact_batch, false).to_vec();
        for i in 0..3000 {
            let mut bytes = Vec::new();
            if i % 2 == 0 {
                bytes.extend((0..rng.usize(0..64)).map(|_| rng.u8(..)));
            } else {
                record::encode_compressed(&intact_batch, &mut bytes, &mut Vec::new());
                let at = rng.usize(..bytes.len());
                bytes[at] = rng.u8(..);
            }
            if enc.encode_records(&[&bytes, &intact], false).is_some() {
                assert_eq!(enc.request(), &want[..]);
            }
        }
    }

    /// A request as the test server saw it: headers and body.
    type Seen = (Vec<(String, String)>, Vec<u8>);

    /// Serves one scripted status per request on a thread; returns the port and the requests.
    fn server(replies: Vec<&'static str>) -> (u16, std::sync::mpsc::Receiver<Seen>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for reply in replies {
                let (mut s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(": ") {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.parse().unwrap();
                        }
                        headers.push((k.to_ascii_lowercase(), v.to_string()));
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                tx.send((headers, body)).unwrap();
                s.write_all(reply.as_bytes()).unwrap();
            }
        });
        (port, rx)
    }

    fn output(port: u16, extra: &str) -> Box<dyn Output> {
        let t = format!("url = 'http://127.0.0.1:{port}/api/v1/write'\n{extra}");
        build(toml::from_str(&t).unwrap(), &BuildContext::default()).unwrap()
    }

    #[tokio::test]
    async fn sends_snappy_protobuf_with_headers_and_maps_statuses() {
        let ok = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        let busy = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n";
        let bad = "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\nout of order";
        let down = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        let (port, rx) = server(vec![ok, busy, bad, down]);
        let mut out = output(
            port,
            "bearer_token_string = 'sekrit'\n[headers]\nX-Scope-OrgID = 'tenant1'",
        );
        let batch = [Metric::new("m", 5_000_000).with_field("v", 1.5)];
        out.write(&batch).await.unwrap();
        let (headers, body) = rx.recv().unwrap();
        let h = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("content-encoding"), Some("snappy"));
        assert_eq!(h("content-type"), Some("application/x-protobuf"));
        assert_eq!(h("x-prometheus-remote-write-version"), Some("0.1.0"));
        assert_eq!(h("authorization"), Some("Bearer sekrit"));
        assert_eq!(h("x-scope-orgid"), Some("tenant1"));
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req: proto::WriteRequest = prost::Message::decode(&raw[..]).unwrap();
        assert_eq!(names(&req.timeseries[0]), [("__name__", "m_v")]);
        assert_eq!(req.timeseries[0].samples[0].timestamp, 5);
        match out.write(&batch).await {
            Err(WriteError::Retry { retry_after, .. }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)))
            }
            other => panic!("429 must be retried: {other:?}"),
        }
        match out.write(&batch).await {
            Err(WriteError::Reject { reason }) => assert!(reason.contains("out of order")),
            other => panic!("400 must be rejected: {other:?}"),
        }
        assert!(matches!(
            out.write(&batch).await,
            Err(WriteError::Retry { .. })
        ));
        // Strings only: nothing to send, nothing sent.
        out.write(&[Metric::new("m", 0).with_field("s", "x")])
            .await
            .unwrap();
    }

    #[test]
    fn conflicting_auth_is_refused() {
        let t: toml::Table = toml::from_str("username = 'u'\nbearer_token_string = 't'").unwrap();
        assert!(matches!(
            build(t, &BuildContext::default()),
            Err(BuildError::Config(_))
        ));
    }
}
