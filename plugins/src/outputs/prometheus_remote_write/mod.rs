//! `outputs.prometheus_remote_write`: sends batches to a Prometheus remote-write endpoint
//! (Prometheus, VictoriaMetrics, Mimir, Thanos, Cortex) as a snappy-compressed protobuf
//! `WriteRequest` (remote write 1.0).
//!
//! Series are named as `outputs.prometheus_client` (metric_version 2) names them. 2xx is
//! success; 429 and 5xx (and connection errors) are retried, honouring `Retry-After`; other
//! statuses reject the batch for good with the server's message.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::codec::prometheus::sanitize_label_name;
use crate::codec::prometheus_series::place;
use crate::common::http::{
    ClientOptions, TlsClientConfig, build_client, response_error, send_error,
};
use crate::config_types::Duration;
use crate::model::{FieldValue, Metric};
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, ConfigError, Format, OutputSpec, parse_config};

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
}

/// Builds the request of a batch: one time series per name + label set, samples in time
/// order (one per timestamp: the last written wins), labels sorted by name.
pub fn encode(batch: &[Metric], string_as_label: bool) -> proto::WriteRequest {
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

#[async_trait]
impl Output for RemoteWrite {
    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        let req = encode(batch, self.string_as_label);
        if req.timeseries.is_empty() {
            return Ok(());
        }
        let raw = prost::Message::encode_to_vec(&req);
        let body =
            snap::raw::Encoder::new()
                .compress_vec(&raw)
                .map_err(|e| WriteError::Reject {
                    reason: format!("snappy: {e}"),
                })?;
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
    use crate::model::ValueType;
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
