//! The HTTP half of the InfluxDB outputs (`outputs.influxdb`, `outputs.influxdb_v2`): posts
//! line protocol to one of several URLs with failover, gzip, answer classification and
//! splitting on 413.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::codec::influx::{InfluxOptions, write_metric_filtered};
use crate::common::http::TlsClientConfig;
use crate::common::http_client::{HttpClient, HttpClientConfig, ProxyDefault};
use crate::config_types::Duration as Dur;
use crate::model::Metric;
use crate::plugin::{BuildContext, WriteError};
use crate::registry::BuildError;

pub(crate) fn default_timeout() -> Dur {
    Dur::from_secs(5)
}
pub(crate) fn default_encoding() -> String {
    "gzip".into()
}

/// What one HTTP attempt came to.
#[derive(Debug)]
pub(crate) enum Answer {
    Ok,
    /// 413: the body was too large.
    TooLarge,
    /// Bad data: drop it. `dropped` (v1) or `written` (v2) is the server's count when it
    /// wrote part of the request.
    Rejected {
        dropped: Option<usize>,
        written: Option<usize>,
        message: String,
    },
    /// v1's 404 "database not found".
    NoDatabase(String),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// The influxdb outputs' transport options beyond Telegraf's common ones.
#[derive(Clone, Debug, Default)]
pub(crate) struct Transport {
    /// HTTP/2 keep-alive pings: sent after this long without a frame (`read_idle_timeout`)...
    pub read_idle_timeout: Option<Duration>,
    /// ...and the connection is dropped when the answer takes longer (`ping_timeout`).
    pub ping_timeout: Option<Duration>,
}

/// `rate_limit` bytes (uncompressed line protocol) per fixed `rate_limit_period` window.
pub(crate) struct RateLimit {
    pub limit: u64,
    pub period: Duration,
    /// Start of the current window (from the first write) and the bytes sent in it.
    window: tokio::sync::Mutex<Option<(tokio::time::Instant, u64)>>,
}

impl RateLimit {
    pub fn new(limit: u64, period: Duration) -> RateLimit {
        RateLimit {
            limit,
            period,
            window: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits until `bytes` fit in the current window, and books them. A body larger than
    /// the whole budget goes alone in a fresh window (else it could never be sent).
    pub async fn acquire(&self, bytes: u64) {
        let mut slot = self.window.lock().await;
        let w = slot.get_or_insert_with(|| (tokio::time::Instant::now(), 0));
        loop {
            let now = tokio::time::Instant::now();
            if now >= w.0 + self.period {
                *w = (now, 0);
            }
            if w.1 + bytes <= self.limit || w.1 == 0 {
                w.1 += bytes;
                return;
            }
            tokio::time::sleep_until(w.0 + self.period).await;
        }
    }
}

/// Posts line protocol to one of several URLs, failing over on retryable answers.
pub(crate) struct Writer {
    pub client: HttpClient,
    /// `concurrent_writes`: how many requests of one batch are in flight at once.
    pub concurrency: usize,
    pub rate_limit: Option<RateLimit>,
    pub urls: Vec<String>,
    pub headers: HeaderMap,
    pub gzip: bool,
    pub opts: InfluxOptions,
    pub omit_timestamp: bool,
    /// Tags to leave out of the lines (database/bucket routing tags).
    pub exclude: Vec<String>,
    pub id: String,
    /// The line protocol of the batch being gzipped, kept from one request to the next.
    scratch: std::sync::Mutex<Vec<u8>>,
    /// Bytes per metric of the last batch, to size the next body in one allocation.
    bytes_per_metric: std::sync::atomic::AtomicUsize,
}

thread_local! {
    /// Uncompressed size of the body `encode` made last on this thread (for rate_limit).
    static LAST_RAW_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tls: &TlsClientConfig,
        http: &HttpClientConfig,
        transport: &Transport,
        urls: Vec<String>,
        timeout: Duration,
        user_agent: Option<&str>,
        http_headers: &BTreeMap<String, String>,
        content_encoding: &str,
        ctx: &BuildContext,
    ) -> Result<Writer, BuildError> {
        let t = transport.clone();
        // As in Telegraf, the proxy environment variables apply unless http_proxy is set.
        let client = HttpClient::build(
            http,
            tls,
            timeout,
            ProxyDefault::Environment,
            move |mut b| {
                if let Some(i) = t.read_idle_timeout {
                    b = b
                        .http2_keep_alive_interval(i)
                        .http2_keep_alive_while_idle(true);
                    if let Some(p) = t.ping_timeout {
                        b = b.http2_keep_alive_timeout(p);
                    }
                }
                b
            },
        )?;
        let urls = if urls.is_empty() {
            vec!["http://localhost:8086".to_string()]
        } else {
            urls
        };
        for u in &urls {
            let parsed = reqwest::Url::parse(u).map_err(|e| anyhow::anyhow!("url {u:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(anyhow::anyhow!(
                    "url {u:?}: only http and https are supported (not {})",
                    parsed.scheme()
                )
                .into());
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(ua) = user_agent {
            headers.insert(
                reqwest::header::USER_AGENT,
                HeaderValue::from_str(ua).map_err(|e| anyhow::anyhow!("user_agent: {e}"))?,
            );
        }
        for (k, v) in http_headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("http_headers key {k:?}: {e}"))?;
            let value =
                HeaderValue::from_str(v).map_err(|e| anyhow::anyhow!("http_headers.{k}: {e}"))?;
            headers.insert(name, value);
        }
        let gzip = match content_encoding {
            "gzip" => true,
            "identity" | "" => false,
            other => {
                return Err(anyhow::anyhow!(
                    "content_encoding must be \"gzip\" or \"identity\", not {other:?}"
                )
                .into());
            }
        };
        if gzip {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        Ok(Writer {
            client,
            concurrency: 1,
            rate_limit: None,
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            headers,
            gzip,
            opts: InfluxOptions::default(),
            omit_timestamp: false,
            exclude: Vec::new(),
            id: ctx.id.clone(),
            scratch: std::sync::Mutex::new(Vec::new()),
            bytes_per_metric: std::sync::atomic::AtomicUsize::new(96),
        })
    }

    /// Encodes metrics as line protocol (gzipped when configured): written straight from the
    /// metrics (routing tags and the timestamp left out as configured, no copies), into a
    /// body sized from the last batch, or for gzip into a buffer reused between requests.
    pub fn encode(&self, metrics: &[&Metric]) -> Vec<u8> {
        use std::sync::atomic::Ordering::Relaxed;
        let write = |out: &mut Vec<u8>| {
            for m in metrics {
                write_metric_filtered(out, m, &self.opts, &self.exclude, self.omit_timestamp);
            }
            if !metrics.is_empty() {
                self.bytes_per_metric
                    .store(out.len().div_ceil(metrics.len()), Relaxed);
            }
            LAST_RAW_LEN.with(|c| c.set(out.len()));
        };
        // A little over the last batch's size, so the body is written without regrowing.
        let estimate = metrics.len() * (self.bytes_per_metric.load(Relaxed) + 8);
        if !self.gzip {
            let mut out = Vec::with_capacity(estimate);
            write(&mut out);
            return out;
        }
        let mut lp = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        lp.clear();
        lp.reserve(estimate);
        write(&mut lp);
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(lp.len() / 4),
            flate2::Compression::fast(),
        );
        enc.write_all(&lp).expect("writing to a Vec");
        enc.finish().expect("writing to a Vec")
    }

    /// Posts `body` to `<url><path>`, trying each URL (from a random one) until one gives an
    /// answer that is not retryable.
    pub async fn post(&self, path: &str, body: Vec<u8>, auth: Option<&HeaderValue>) -> Answer {
        let n = self.urls.len();
        let start = if n > 1 { fastrand::usize(..n) } else { 0 };
        let body = bytes::Bytes::from(body);
        let mut last = None;
        for i in 0..n {
            let url = &self.urls[(start + i) % n];
            let answer = self.post_once(url, path, body.clone(), auth).await;
            match answer {
                Answer::Retry { .. } => {
                    if n > 1 {
                        tracing::debug!(output = %self.id, url = %shown_url(url), answer = ?answer, "trying the next url");
                    }
                    last = Some(answer);
                }
                other => return other,
            }
        }
        last.expect("at least one url")
    }

    async fn post_once(
        &self,
        url: &str,
        path: &str,
        body: bytes::Bytes,
        auth: Option<&HeaderValue>,
    ) -> Answer {
        let mut req = self
            .client
            .client
            .post(format!("{url}{path}"))
            .headers(self.headers.clone())
            .body(body);
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a.clone());
        }
        let resp = match self.client.send(req).await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.timeout { "timed out" } else { "failed" };
                return Answer::Retry {
                    reason: format!("{}: request {what}: {e}", shown_url(url)),
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Answer::Ok;
        }
        let retry_after = crate::common::http::retry_after(&resp);
        let text = resp.text().await.unwrap_or_default();
        let message = server_message(&text);
        let reason = format!("{}: {status}: {message}", shown_url(url));
        match status.as_u16() {
            413 => Answer::TooLarge,
            404 if message.contains("database not found") => Answer::NoDatabase(reason),
            // Authorization and wrong paths are configuration problems: keep the data.
            401 | 403 | 404 | 408 | 429 => Answer::Retry {
                reason,
                retry_after,
            },
            400..=499 => Answer::Rejected {
                dropped: dropped_count(&message),
                written: written_count(&message),
                message: reason,
            },
            _ => Answer::Retry {
                reason,
                retry_after,
            },
        }
    }

    /// Sends `metrics` to `path`, halving chunks the server finds too large (413). Returns the
    /// number of metrics the server refused and its first reason. A retryable failure (or a
    /// missing database) stops at once and is returned as the `Answer`; chunks already
    /// written are written again on retry, which InfluxDB treats as overwrites of the same
    /// points.
    pub async fn send_all(
        &self,
        path: &str,
        metrics: &[&Metric],
        auth: Option<&HeaderValue>,
    ) -> Result<(usize, Option<String>), Answer> {
        if self.concurrency <= 1 || metrics.len() < 2 {
            return self.send_chunks(path, metrics, auth).await;
        }
        // concurrent_writes: the batch in that many parts, in flight together.
        let size = metrics.len().div_ceil(self.concurrency);
        let parts = metrics
            .chunks(size)
            .map(|part| self.send_chunks(path, part, auth));
        let results = futures_util::future::join_all(parts).await;
        let mut rejected = 0;
        let mut reason = None;
        for r in results {
            let (n, why) = r?;
            rejected += n;
            if reason.is_none() {
                reason = why;
            }
        }
        Ok((rejected, reason))
    }

    async fn send_chunks(
        &self,
        path: &str,
        metrics: &[&Metric],
        auth: Option<&HeaderValue>,
    ) -> Result<(usize, Option<String>), Answer> {
        let mut stack = vec![metrics];
        let mut rejected = 0;
        let mut reason = None;
        while let Some(chunk) = stack.pop() {
            if chunk.is_empty() {
                continue;
            }
            let body = self.encode(chunk);
            if let Some(rl) = &self.rate_limit {
                rl.acquire(LAST_RAW_LEN.with(|c| c.get()) as u64).await;
            }
            match self.post(path, body, auth).await {
                Answer::Ok => {}
                Answer::TooLarge if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    stack.push(b);
                    stack.push(a);
                }
                Answer::TooLarge => {
                    rejected += 1;
                    reason.get_or_insert_with(|| {
                        "a single metric is larger than the server accepts (413)".to_string()
                    });
                }
                Answer::Rejected {
                    dropped,
                    written,
                    message,
                } => {
                    let refused = dropped
                        .or(written.map(|w| chunk.len().saturating_sub(w)))
                        .unwrap_or(chunk.len());
                    rejected += refused.min(chunk.len());
                    reason.get_or_insert(message);
                }
                stop @ (Answer::NoDatabase(_) | Answer::Retry { .. }) => return Err(stop),
            }
        }
        Ok((rejected, reason))
    }
}

/// A stopping answer of [`Writer::send_all`] as a retry.
pub(crate) fn retry(answer: Answer) -> WriteError {
    match answer {
        Answer::Retry {
            reason,
            retry_after,
        } => WriteError::Retry {
            reason,
            retry_after,
        },
        other => WriteError::Retry {
            reason: format!("{other:?}"),
            retry_after: None,
        },
    }
}

/// Folds per-group results into the write's result.
pub(crate) fn outcome(
    total: usize,
    rejected: usize,
    reason: Option<String>,
) -> Result<(), WriteError> {
    let reason = reason.unwrap_or_default();
    if rejected == 0 {
        Ok(())
    } else if rejected >= total {
        Err(WriteError::Reject { reason })
    } else {
        Err(WriteError::Partial { rejected, reason })
    }
}

/// A URL as messages show it: a password in it (`http://user:pass@host`) is masked, since
/// the reasons of failed writes are logged.
pub(crate) fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.as_str().trim_end_matches('/').to_string()
        }
        _ => url.to_string(),
    }
}

/// InfluxDB's error message from a response body: v1 `{"error":...}`, v2 `{"message":...}`.
pub(crate) fn server_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(s) = v.get(key).and_then(|x| x.as_str()) {
                return s.to_string();
            }
        }
    }
    body.trim().chars().take(500).collect()
}

/// InfluxDB 1.x ends a partial write's message with `dropped=N`.
fn dropped_count(message: &str) -> Option<usize> {
    let i = message.rfind("dropped=")?;
    let digits: String = message[i + 8..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// InfluxDB 2.x reports a partial write as "partial write error (N written): ...".
fn written_count(message: &str) -> Option<usize> {
    let i = message.find(" written)")?;
    let start = message[..i].rfind('(')? + 1;
    message[start..i].trim().parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::common::server::{self, Resp};
    use std::sync::{Arc, Mutex};

    /// One request as the test server saw it.
    #[derive(Clone, Debug)]
    pub(crate) struct Seen {
        pub path: String,
        pub headers: http::HeaderMap,
        /// The body, gunzipped.
        pub body: String,
    }

    /// A local HTTP server answering with `answer(request number, request)`.
    pub(crate) async fn serve_script(
        answer: impl Fn(usize, &Seen) -> Resp + Send + Sync + 'static,
    ) -> (
        String,
        Arc<Mutex<Vec<Seen>>>,
        tokio::sync::watch::Sender<bool>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let answer = Arc::new(answer);
        let s = seen.clone();
        let handler = move |req: http::Request<hyper::body::Incoming>| {
            let (s, answer) = (s.clone(), answer.clone());
            async move {
                let path = req.uri().to_string();
                let headers = req.headers().clone();
                let body = server::read_body(req, 1 << 30, Duration::from_secs(5))
                    .await
                    .unwrap();
                let seen = Seen {
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let n = {
                    let mut v = s.lock().unwrap();
                    v.push(seen.clone());
                    v.len() - 1
                };
                answer(n, &seen)
            }
        };
        let opts = server::ServerOptions {
            read_timeout: Duration::from_secs(5),
            tls: None,
        };
        tokio::spawn(server::serve(listener, opts, handler, rx));
        (url, seen, stop)
    }

    pub(crate) fn status(code: u16, body: &str) -> Resp {
        server::respond(
            http::StatusCode::from_u16(code).unwrap(),
            "application/json",
            body.to_string(),
        )
    }

    pub(crate) fn with_header(mut r: Resp, k: &'static str, v: &'static str) -> Resp {
        r.headers_mut().insert(k, HeaderValue::from_static(v));
        r
    }

    #[test]
    fn encode_leaves_out_routing_tags_and_timestamps() {
        let writer = |gzip: &str| {
            Writer::new(
                &TlsClientConfig::default(),
                &HttpClientConfig::default(),
                &Transport::default(),
                vec![],
                Duration::from_secs(1),
                None,
                &BTreeMap::new(),
                gzip,
                &BuildContext::default(),
            )
            .unwrap()
        };
        let m = Metric::new("m", 7)
            .with_tag("db", "x")
            .with_tag("host", "a")
            .with_field("s", "two\nlines 1")
            .with_field("v", 1i64);
        let plain = writer("identity");
        assert_eq!(
            plain.encode(&[&m]),
            b"m,db=x,host=a s=\"two\nlines 1\",v=1i 7\n"
        );
        let mut w = writer("identity");
        w.exclude.push("db".into());
        w.omit_timestamp = true;
        // The string's line break stays inside the quotes: only the timestamp goes.
        assert_eq!(
            w.encode(&[&m, &m]),
            b"m,host=a s=\"two\nlines 1\",v=1i\n".repeat(2)
        );
        let mut gz = writer("gzip");
        gz.exclude.push("db".into());
        for n in [3, 1, 2] {
            let batch = vec![&m; n];
            let mut text = Vec::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(&gz.encode(&batch)[..])
                .read_to_end(&mut text)
                .unwrap();
            assert_eq!(text, b"m,host=a s=\"two\nlines 1\",v=1i 7\n".repeat(n));
        }
    }

    #[test]
    fn partial_write_counts() {
        assert_eq!(dropped_count("partial write: x dropped=12"), Some(12));
        assert_eq!(dropped_count("nope"), None);
        assert_eq!(
            written_count("partial write error (5 written): bad"),
            Some(5)
        );
    }
}
