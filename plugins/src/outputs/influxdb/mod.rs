//! `outputs.influxdb`: writes line protocol to InfluxDB 1.x's `/write`.
//!
//! The HTTP half ([`Writer`]: failover over `urls`, gzip, answer classification, splitting on
//! 413) is shared with `outputs.influxdb_v2`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::codec::influx::{InfluxOptions, write_metric};
use crate::common::http::{ClientOptions, TlsClientConfig, build_client, parse_retry_after};
use crate::config_types::Duration as Dur;
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, Format, OutputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    urls: Vec<String>,
    /// Telegraf's old single-URL form.
    url: Option<String>,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default)]
    database_tag: String,
    #[serde(default)]
    exclude_database_tag: bool,
    #[serde(default)]
    skip_database_creation: bool,
    #[serde(default)]
    retention_policy: String,
    #[serde(default)]
    retention_policy_tag: String,
    #[serde(default)]
    exclude_retention_policy_tag: bool,
    #[serde(default)]
    write_consistency: String,
    #[serde(default = "default_timeout")]
    timeout: Dur,
    username: Option<String>,
    password: Option<String>,
    user_agent: Option<String>,
    #[serde(default)]
    http_headers: BTreeMap<String, String>,
    #[serde(default = "default_encoding")]
    content_encoding: String,
    #[serde(default)]
    influx_uint_support: bool,
    #[serde(default)]
    influx_omit_timestamp: bool,
}

fn default_database() -> String {
    "telegraf".into()
}
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

/// Posts line protocol to one of several URLs, failing over on retryable answers.
pub(crate) struct Writer {
    pub client: reqwest::Client,
    pub urls: Vec<String>,
    pub headers: HeaderMap,
    pub gzip: bool,
    pub opts: InfluxOptions,
    pub omit_timestamp: bool,
    /// Tags to leave out of the lines (database/bucket routing tags).
    pub exclude: Vec<String>,
    pub id: String,
}

impl Writer {
    pub fn new(
        tls: &TlsClientConfig,
        urls: Vec<String>,
        timeout: Duration,
        user_agent: Option<&str>,
        http_headers: &BTreeMap<String, String>,
        content_encoding: &str,
        ctx: &BuildContext,
    ) -> Result<Writer, BuildError> {
        let client = build_client(&ClientOptions {
            timeout,
            idle_conn_timeout: None,
            tls,
        })?;
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
        })
    }

    /// Encodes metrics as line protocol (gzipped when configured).
    pub fn encode(&self, metrics: &[&Metric]) -> Vec<u8> {
        let mut out = Vec::with_capacity(metrics.len() * 96);
        for m in metrics {
            let needs_copy = self.omit_timestamp || self.exclude.iter().any(|t| m.tag(t).is_some());
            if needs_copy {
                let mut m = (*m).clone();
                for t in &self.exclude {
                    m.remove_tag(t);
                }
                let start = out.len();
                write_metric(&mut out, &m, &self.opts);
                if self.omit_timestamp {
                    omit_timestamp(&mut out, start);
                }
            } else {
                write_metric(&mut out, m, &self.opts);
            }
        }
        if !self.gzip {
            return out;
        }
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(out.len() / 4),
            flate2::Compression::fast(),
        );
        enc.write_all(&out).expect("writing to a Vec");
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
            .post(format!("{url}{path}"))
            .headers(self.headers.clone())
            .body(body);
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Answer::Retry {
                    reason: format!("{}: request {what}: {}", shown_url(url), error_chain(&e)),
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Answer::Ok;
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
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
        let mut stack = vec![metrics];
        let mut rejected = 0;
        let mut reason = None;
        while let Some(chunk) = stack.pop() {
            if chunk.is_empty() {
                continue;
            }
            match self.post(path, self.encode(chunk), auth).await {
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

/// Removes the timestamp from the line(s) written since `start` (`influx_omit_timestamp`).
fn omit_timestamp(out: &mut Vec<u8>, start: usize) {
    let text = out.split_off(start);
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let cut = line.iter().rposition(|&b| b == b' ').unwrap_or(line.len());
        out.extend_from_slice(&line[..cut]);
        out.push(b'\n');
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
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

struct InfluxDb {
    writer: Writer,
    database: String,
    database_tag: String,
    retention_policy: String,
    retention_policy_tag: String,
    consistency: String,
    skip_database_creation: bool,
    auth: Option<HeaderValue>,
}

fn basic(user: &str, pass: &str) -> HeaderValue {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{pass}");
    let mut out = String::from("Basic ");
    for c in input.as_bytes().chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let mut v = HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
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

impl InfluxDb {
    /// `CREATE DATABASE` on the first URL that answers; false when none did.
    async fn create_database(&self, db: &str) -> bool {
        let q = format!(
            "CREATE DATABASE \"{}\"",
            db.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let path = format!("/query?q={}", query_escape(&q));
        let mut ok = false;
        for url in &self.writer.urls {
            let mut req = self.writer.client.post(format!("{url}{path}"));
            if let Some(a) = &self.auth {
                req = req.header(reqwest::header::AUTHORIZATION, a.clone());
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    tracing::warn!(output = %self.writer.id, url = %shown_url(url), database = %db, "CREATE DATABASE failed: {status}: {}", server_message(&text));
                }
                Err(e) => {
                    tracing::warn!(output = %self.writer.id, url = %shown_url(url), database = %db, "CREATE DATABASE failed: {}", error_chain(&e))
                }
            }
        }
        ok
    }

    fn path(&self, db: &str, rp: &str) -> String {
        let mut p = format!("/write?db={}", query_escape(db));
        if !rp.is_empty() {
            p.push_str("&rp=");
            p.push_str(&query_escape(rp));
        }
        if !self.consistency.is_empty() {
            p.push_str("&consistency=");
            p.push_str(&query_escape(&self.consistency));
        }
        p
    }
}

#[async_trait]
impl Output for InfluxDb {
    async fn connect(&mut self) -> anyhow::Result<()> {
        if !self.skip_database_creation {
            // Like Telegraf: a user without admin rights can still write, so only warn.
            let db = self.database.clone();
            self.create_database(&db).await;
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        // Group by (database, retention policy) when tags route them.
        let mut groups: BTreeMap<(&str, &str), Vec<&Metric>> = BTreeMap::new();
        for m in batch {
            let db = (!self.database_tag.is_empty())
                .then(|| m.tag(&self.database_tag))
                .flatten()
                .unwrap_or(&self.database);
            let rp = (!self.retention_policy_tag.is_empty())
                .then(|| m.tag(&self.retention_policy_tag))
                .flatten()
                .unwrap_or(&self.retention_policy);
            groups.entry((db, rp)).or_default().push(m);
        }
        let mut rejected = 0;
        let mut reason = None;
        for ((db, rp), metrics) in groups {
            let path = self.path(db, rp);
            let (n, why) = match self
                .writer
                .send_all(&path, &metrics, self.auth.as_ref())
                .await
            {
                Ok(r) => r,
                Err(Answer::NoDatabase(reason)) => {
                    let created = !self.skip_database_creation && self.create_database(db).await;
                    return Err(WriteError::Retry {
                        reason: if created {
                            format!("{reason} (created it; writing again)")
                        } else {
                            reason
                        },
                        retry_after: created.then_some(Duration::ZERO),
                    });
                }
                Err(stop) => return Err(retry(stop)),
            };
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
    // Parse first so unknown keys are reported before anything else.
    let cfg: Config = parse_config(table)?;
    let mut urls = cfg.urls.clone();
    if let Some(u) = &cfg.url {
        urls.push(u.clone());
    }
    if urls.iter().any(|u| u.starts_with("udp")) {
        return Err(anyhow::anyhow!("UDP urls are not supported; use http:// or https://").into());
    }
    if !["", "any", "one", "quorum", "all"].contains(&cfg.write_consistency.as_str()) {
        return Err(anyhow::anyhow!(
            "write_consistency must be any, one, quorum or all, not {:?}",
            cfg.write_consistency
        )
        .into());
    }
    if cfg.username.is_some() != cfg.password.is_some() {
        return Err(anyhow::anyhow!("username and password must be given together").into());
    }
    let mut writer = Writer::new(
        &tls,
        urls,
        cfg.timeout.get(),
        cfg.user_agent.as_deref(),
        &cfg.http_headers,
        &cfg.content_encoding,
        ctx,
    )?;
    writer.opts.uint_support = cfg.influx_uint_support;
    writer.omit_timestamp = cfg.influx_omit_timestamp;
    if cfg.exclude_database_tag && !cfg.database_tag.is_empty() {
        writer.exclude.push(cfg.database_tag.clone());
    }
    if cfg.exclude_retention_policy_tag && !cfg.retention_policy_tag.is_empty() {
        writer.exclude.push(cfg.retention_policy_tag.clone());
    }
    let auth = match (&cfg.username, &cfg.password) {
        (Some(u), Some(p)) => Some(basic(u, p)),
        _ => None,
    };
    Ok(Box::new(InfluxDb {
        writer,
        database: cfg.database,
        database_tag: cfg.database_tag,
        retention_policy: cfg.retention_policy,
        retention_policy_tag: cfg.retention_policy_tag,
        consistency: cfg.write_consistency,
        skip_database_creation: cfg.skip_database_creation,
        auth,
    }))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "influxdb",
    description: "Write metrics to InfluxDB 1.x over HTTP",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

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

    fn build_with(toml_text: &str) -> Box<dyn Output> {
        let t: toml::Table = toml::from_str(toml_text).unwrap();
        build(t, &BuildContext::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn batch() -> Vec<Metric> {
        vec![
            Metric::new("cpu", 1_000_000_000)
                .with_tag("host", "a")
                .with_tag("db", "other")
                .with_field("usage", 1.5)
                .with_field("n", 5u64),
            Metric::new("mem", 2_000_000_000).with_field("free", 3i64),
        ]
    }

    pub(crate) fn status(code: u16, body: &str) -> Resp {
        server::respond(
            http::StatusCode::from_u16(code).unwrap(),
            "application/json",
            body.to_string(),
        )
    }

    #[tokio::test]
    async fn creates_database_writes_gzip_with_auth_and_routes_by_tag() {
        let (url, seen, _stop) =
            serve_script(|_, _| server::empty(http::StatusCode::NO_CONTENT)).await;
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\ndatabase = \"main\"\ndatabase_tag = \"db\"\nexclude_database_tag = true\n\
             retention_policy = \"week\"\nusername = \"u\"\npassword = \"p\"\nuser_agent = \"ua/1\"\n\
             http_headers = {{ X-Env = \"test\" }}"
        ));
        out.connect().await.unwrap();
        out.write(&batch()).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].path, "/query?q=CREATE%20DATABASE%20%22main%22");
        assert_eq!(seen[0].headers["authorization"], "Basic dTpw");
        // Groups in (database, rp) order: "main" then "other".
        assert_eq!(seen[1].path, "/write?db=main&rp=week");
        assert_eq!(seen[1].body, "mem free=3i 2000000000\n");
        assert_eq!(seen[2].path, "/write?db=other&rp=week");
        assert_eq!(
            seen[2].body, "cpu,host=a usage=1.5,n=5i 1000000000\n",
            "db tag excluded, uint as int"
        );
        assert_eq!(seen[2].headers["content-encoding"], "gzip");
        assert_eq!(seen[2].headers["user-agent"], "ua/1");
        assert_eq!(seen[2].headers["x-env"], "test");
        assert_eq!(seen[2].headers["authorization"], "Basic dTpw");
    }

    #[tokio::test]
    async fn maps_answers_to_write_errors() {
        let (url, _seen, _stop) = serve_script(|n, _| match n {
            0 => status(400, r#"{"error":"partial write: field type conflict: input field \"usage\" on measurement \"cpu\" is type integer, already exists as type float dropped=1"}"#),
            1 => status(400, r#"{"error":"unable to parse 'x': bad"}"#),
            2 => with_header(status(503, "overloaded"), "retry-after", "7"),
            3 => status(500, "boom"),
            _ => status(401, r#"{"error":"authorization failed"}"#),
        })
        .await;
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\nskip_database_creation = true\ncontent_encoding = \"identity\""
        ));
        match out.write(&batch()).await {
            Err(WriteError::Partial {
                rejected: 1,
                reason,
            }) => assert!(reason.contains("field type conflict"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match out.write(&batch()).await {
            Err(WriteError::Reject { reason }) => {
                assert!(reason.contains("unable to parse 'x': bad"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match out.write(&batch()).await {
            Err(WriteError::Retry { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            out.write(&batch()).await,
            Err(WriteError::Retry {
                retry_after: None,
                ..
            })
        ));
        assert!(
            matches!(out.write(&batch()).await, Err(WriteError::Retry { .. })),
            "401 keeps the data"
        );
    }

    pub(crate) fn with_header(mut r: Resp, k: &'static str, v: &'static str) -> Resp {
        r.headers_mut().insert(k, HeaderValue::from_static(v));
        r
    }

    #[tokio::test]
    async fn a_password_in_the_url_is_used_but_never_shown() {
        let (url, seen, _stop) = serve_script(|_, _| status(500, "boom")).await;
        let url = url.replace("http://", "http://writer:s3cret@");
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\nskip_database_creation = true\ncontent_encoding = \"identity\""
        ));
        out.connect().await.unwrap();
        match out.write(&batch()).await {
            Err(WriteError::Retry { reason, .. }) => {
                assert!(!reason.contains("s3cret"), "{reason}");
                assert!(reason.contains("writer:***@"), "{reason}");
            }
            other => panic!("expected Retry, got {other:?}"),
        }
        let auth = seen.lock().unwrap()[0].headers[http::header::AUTHORIZATION].clone();
        assert_eq!(auth, "Basic d3JpdGVyOnMzY3JldA==");
    }

    #[tokio::test]
    async fn fails_over_to_the_next_url_and_creates_a_missing_database() {
        // A port nobody listens on, then a server that first says the database is missing.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (url, seen, _stop) = serve_script(|n, _| match n {
            0 => status(404, r#"{"error":"database not found: \"telegraf\""}"#),
            _ => server::empty(http::StatusCode::NO_CONTENT),
        })
        .await;
        let mut out = build_with(&format!(
            "urls = [\"http://{dead}\", \"{url}\"]\nskip_database_creation = false\ncontent_encoding = \"identity\""
        ));
        match out.write(&batch()).await {
            Err(WriteError::Retry { reason, .. }) => {
                assert!(reason.contains("created it"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        for _ in 0..4 {
            out.write(&batch()).await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen[1].path.starts_with("/query?q=CREATE%20DATABASE"),
            "{:?}",
            seen[1].path
        );
        assert_eq!(
            seen.iter().filter(|s| s.path.starts_with("/write")).count(),
            5
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(basic("u", "p"), "Basic dTpw");
        assert_eq!(basic("user", "pass"), "Basic dXNlcjpwYXNz");
        assert_eq!(dropped_count("partial write: x dropped=12"), Some(12));
        assert_eq!(dropped_count("nope"), None);
        assert_eq!(
            written_count("partial write error (5 written): bad"),
            Some(5)
        );
        let mut out = b"keep\ncpu v=1 123\n".to_vec();
        omit_timestamp(&mut out, 5);
        assert_eq!(out, b"keep\ncpu v=1\n");
        let t: toml::Table = toml::from_str("urls = [\"udp://localhost:8089\"]").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
        let t: toml::Table = toml::from_str("content_encoding = \"br\"").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
    }
}
