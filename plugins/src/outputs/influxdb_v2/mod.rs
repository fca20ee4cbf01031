//! `outputs.influxdb_v2`: writes line protocol to InfluxDB 2.x's `/api/v2/write` (and to
//! anything that speaks it: VictoriaMetrics, InfluxDB 3, sonde's own v2 listener).

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::common::http::TlsClientConfig;
use crate::common::http_client::HttpClientConfig;
use crate::common::influx_writer::{
    RateLimit, Transport, Writer, default_encoding, default_timeout, outcome, retry,
};
use crate::config_types::Duration as Dur;
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, Format, OutputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    token: String,
    #[serde(default)]
    organization: String,
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    bucket_tag: String,
    #[serde(default)]
    exclude_bucket_tag: bool,
    #[serde(default = "default_timeout")]
    timeout: Dur,
    user_agent: Option<String>,
    #[serde(default)]
    http_headers: BTreeMap<String, String>,
    #[serde(default = "default_encoding")]
    content_encoding: String,
    #[serde(default)]
    influx_uint_support: bool,
    #[serde(default)]
    influx_omit_timestamp: bool,
    ping_timeout: Option<Dur>,
    read_idle_timeout: Option<Dur>,
    /// Bytes of line protocol per `rate_limit_period`: a size, or "unlimited".
    rate_limit: Option<String>,
    rate_limit_period: Option<Dur>,
    concurrent_writes: Option<usize>,
}

struct InfluxDbV2 {
    writer: Writer,
    organization: String,
    bucket: String,
    bucket_tag: String,
    auth: Option<HeaderValue>,
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Output for InfluxDbV2 {
    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        let mut groups: BTreeMap<&str, Vec<&Metric>> = BTreeMap::new();
        for m in batch {
            let bucket = (!self.bucket_tag.is_empty())
                .then(|| m.tag(&self.bucket_tag))
                .flatten()
                .unwrap_or(&self.bucket);
            groups.entry(bucket).or_default().push(m);
        }
        let mut rejected = 0;
        let mut reason = None;
        for (bucket, metrics) in groups {
            let path = format!(
                "/api/v2/write?org={}&bucket={}&precision=ns",
                query_escape(&self.organization),
                query_escape(bucket)
            );
            let (n, why) = self
                .writer
                .send_all(&path, &metrics, self.auth.as_ref())
                .await
                .map_err(retry)?;
            rejected += n;
            if reason.is_none() {
                reason = why;
            }
        }
        // The agent logs the rejection with this reason, once.
        outcome(batch.len(), rejected, reason)
    }
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let http = HttpClientConfig::take(&mut table, &[&["local_address", "http_proxy"]])?;
    let cfg: Config = parse_config(table)?;
    let bad = |key: &str, message: String| {
        BuildError::Config(crate::registry::ConfigError {
            path: vec![key.into()],
            message,
        })
    };
    let limit = match cfg.rate_limit.as_deref().map(str::trim) {
        None | Some("") | Some("unlimited") => None,
        Some(s) => Some(crate::config_types::parse_size(s).map_err(|e| bad("rate_limit", e))?),
    };
    let period = cfg.rate_limit_period.filter(|d| !d.is_zero());
    let rate_limit = match (limit, period) {
        (Some(0), _) => {
            return Err(bad(
                "rate_limit",
                "must be above 0 (or \"unlimited\")".into(),
            ));
        }
        (Some(l), Some(p)) => Some(RateLimit::new(l, p.get())),
        (Some(_), None) => {
            return Err(bad(
                "rate_limit_period",
                "rate_limit needs a rate_limit_period above 0".into(),
            ));
        }
        (None, Some(_)) => {
            tracing::warn!(
                "{}: rate_limit_period has no effect without rate_limit",
                ctx.id
            );
            None
        }
        (None, None) => None,
    };
    if cfg.concurrent_writes == Some(0) {
        return Err(bad("concurrent_writes", "must be at least 1".into()));
    }
    let transport = Transport {
        read_idle_timeout: cfg
            .read_idle_timeout
            .filter(|d| !d.is_zero())
            .map(|d| d.get()),
        ping_timeout: cfg.ping_timeout.filter(|d| !d.is_zero()).map(|d| d.get()),
    };
    if transport.ping_timeout.is_some() && transport.read_idle_timeout.is_none() {
        // Go's HTTP/2 transport only pings after read_idle_timeout.
        tracing::warn!(
            "{}: ping_timeout has no effect without read_idle_timeout",
            ctx.id
        );
    }
    if cfg.bucket.is_empty() && cfg.bucket_tag.is_empty() {
        return Err(anyhow::anyhow!("bucket (or bucket_tag) is required").into());
    }
    let mut writer = Writer::new(
        &tls,
        &http,
        &transport,
        cfg.urls,
        cfg.timeout.get(),
        cfg.user_agent.as_deref(),
        &cfg.http_headers,
        &cfg.content_encoding,
        ctx,
    )?;
    writer.opts.uint_support = cfg.influx_uint_support;
    writer.omit_timestamp = cfg.influx_omit_timestamp;
    writer.rate_limit = rate_limit;
    writer.concurrency = cfg.concurrent_writes.unwrap_or(1);
    if cfg.exclude_bucket_tag && !cfg.bucket_tag.is_empty() {
        writer.exclude.push(cfg.bucket_tag.clone());
    }
    let auth = if cfg.token.is_empty() {
        None
    } else {
        let mut v = HeaderValue::from_str(&format!("Token {}", cfg.token))
            .map_err(|_| anyhow::anyhow!("token contains characters a header cannot carry"))?;
        v.set_sensitive(true);
        Some(v)
    };
    Ok(Box::new(InfluxDbV2 {
        writer,
        organization: cfg.organization,
        bucket: cfg.bucket,
        bucket_tag: cfg.bucket_tag,
        auth,
    }))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "influxdb_v2",
    description: "Write metrics to InfluxDB 2.x (or any /api/v2/write endpoint) over HTTP",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::influx_writer::tests::{serve_script, status, with_header};
    use crate::common::server;
    use std::time::Duration;

    fn build_with(toml_text: &str) -> Box<dyn Output> {
        let t: toml::Table = toml::from_str(toml_text).unwrap();
        build(t, &BuildContext::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn metrics(n: usize) -> Vec<Metric> {
        (0..n)
            .map(|i| {
                Metric::new("m", i as i64)
                    .with_tag("bucket", if i % 2 == 0 { "even" } else { "odd" })
                    .with_field("v", i as i64)
            })
            .collect()
    }

    #[tokio::test]
    async fn token_org_bucket_tag_and_gzip() {
        let (url, seen, _stop) =
            serve_script(|_, _| server::empty(http::StatusCode::NO_CONTENT)).await;
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\ntoken = \"t0k\"\norganization = \"my org\"\nbucket = \"default\"\n\
             bucket_tag = \"bucket\"\nexclude_bucket_tag = true"
        ));
        out.write(&metrics(3)).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0].path,
            "/api/v2/write?org=my%20org&bucket=even&precision=ns"
        );
        assert_eq!(seen[0].body, "m v=0i 0\nm v=2i 2\n");
        assert_eq!(
            seen[1].path,
            "/api/v2/write?org=my%20org&bucket=odd&precision=ns"
        );
        assert_eq!(seen[0].headers["authorization"], "Token t0k");
        assert_eq!(seen[0].headers["content-encoding"], "gzip");
    }

    use std::sync::{Arc, Mutex};

    /// A server that holds every answer 300 ms and reports the most requests in flight at
    /// once, and every body it got.
    async fn slow_server() -> (
        String,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<Mutex<Vec<String>>>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (m, b) = (max.clone(), bodies.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let (now, max, bodies) = (now.clone(), m.clone(), b.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        let body = buf[end + 4..end + 4 + len].to_vec();
                        buf.drain(..end + 4 + len);
                        let mut lp = String::new();
                        use std::io::Read;
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_string(&mut lp)
                            .unwrap();
                        bodies.lock().unwrap().push(lp);
                        let in_flight = now.fetch_add(1, SeqCst) + 1;
                        max.fetch_max(in_flight, SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        now.fetch_sub(1, SeqCst);
                        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                            .await
                            .unwrap();
                    }
                });
            }
        });
        (url, max, bodies)
    }

    #[tokio::test]
    async fn concurrent_writes_sends_the_parts_together() {
        use std::sync::atomic::Ordering::SeqCst;
        let batch: Vec<Metric> = (0..8)
            .map(|i| Metric::new("m", i).with_field("v", i))
            .collect();
        let (url, max, bodies) = slow_server().await;
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\nbucket = \"b\"\nconcurrent_writes = 4"
        ));
        out.write(&batch).await.unwrap();
        assert_eq!(max.load(SeqCst), 4);
        let mut lines: Vec<String> = bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.lines().map(String::from).collect::<Vec<_>>())
            .collect();
        lines.sort();
        assert_eq!(lines.len(), 8, "every metric once: {lines:?}");
        assert_eq!(bodies.lock().unwrap().len(), 4);
        // The default: one request at a time.
        let (url, max, _) = slow_server().await;
        let mut out = build_with(&format!("urls = [\"{url}\"]\nbucket = \"b\""));
        out.write(&batch).await.unwrap();
        assert_eq!(max.load(SeqCst), 1);
    }

    #[test]
    fn influx_v2_transport_options() {
        for ok in [
            "rate_limit = 'unlimited'\nrate_limit_period = '0s'",
            "rate_limit = '5MB'\nrate_limit_period = '5m'",
            "ping_timeout = '15s'\nread_idle_timeout = '30s'",
            "http_proxy = 'http://proxy:3128'\nlocal_address = '127.0.0.1'",
        ] {
            let t: toml::Table = toml::from_str(&format!("bucket = 'b'\n{ok}")).unwrap();
            if let Err(e) = build(t, &BuildContext::default()) {
                panic!("{ok}: {e}");
            }
        }
        for bad in [
            "rate_limit = '5MB'",
            "rate_limit = 'lots'\nrate_limit_period = '1s'",
            "concurrent_writes = 0",
            "http_proxy = 'socks5://p:1080'",
        ] {
            let t: toml::Table = toml::from_str(&format!("bucket = 'b'\n{bad}")).unwrap();
            assert!(build(t, &BuildContext::default()).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn splits_on_413_until_the_server_takes_the_parts() {
        // Refuses bodies of more than 3 lines.
        let (url, seen, _stop) = serve_script(|_, s| {
            if s.body.lines().count() > 3 {
                status(413, r#"{"code":"request too large","message":"too large"}"#)
            } else {
                server::empty(http::StatusCode::NO_CONTENT)
            }
        })
        .await;
        let mut out = build_with(&format!("urls = [\"{url}\"]\nbucket = \"b\""));
        out.write(&metrics(10)).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let written: Vec<String> = seen
            .iter()
            .filter(|s| s.body.lines().count() <= 3)
            .flat_map(|s| s.body.lines().map(String::from).collect::<Vec<_>>())
            .collect();
        let want: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    "m,bucket={} v={i}i {i}",
                    if i % 2 == 0 { "even" } else { "odd" }
                )
            })
            .collect();
        assert_eq!(written, want, "every metric once, in order");
        assert_eq!(seen.len(), 7, "10 → 5+5 → 2+3 each: 1 + 2 + 4 requests");
    }

    #[tokio::test]
    async fn retry_after_on_429_and_503_and_rejects_bad_data() {
        let (url, _seen, _stop) = serve_script(|n, _| match n {
            0 => with_header(
                status(429, r#"{"code":"too many requests","message":"slow down"}"#),
                "retry-after",
                "3",
            ),
            1 => with_header(
                status(503, ""),
                "retry-after",
                "Thu, 01 Jan 1970 00:00:00 GMT",
            ),
            2 => status(
                400,
                r#"{"code":"invalid","message":"unable to parse 'm v=': missing field value"}"#,
            ),
            3 => status(413, "one metric too big"),
            _ => server::empty(http::StatusCode::NO_CONTENT),
        })
        .await;
        let mut out = build_with(&format!("urls = [\"{url}\"]\nbucket = \"b\""));
        match out.write(&metrics(1)).await {
            Err(WriteError::Retry {
                retry_after,
                reason,
            }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert!(reason.contains("slow down"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match out.write(&metrics(1)).await {
            Err(WriteError::Retry { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::ZERO))
            }
            other => panic!("{other:?}"),
        }
        match out.write(&metrics(1)).await {
            Err(WriteError::Reject { reason }) => {
                assert!(reason.contains("missing field value"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            out.write(&metrics(1)).await,
            Err(WriteError::Reject { .. })
        ));
        out.write(&metrics(1)).await.unwrap();
    }

    #[test]
    fn config_checks() {
        let t: toml::Table = toml::from_str("urls = [\"http://x\"]").unwrap();
        let err = build(t, &BuildContext::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bucket"), "{err}");
    }
}
