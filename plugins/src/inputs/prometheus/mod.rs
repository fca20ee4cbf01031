//! `inputs.prometheus`: scrapes Prometheus text / OpenMetrics endpoints (and `file://` paths)
//! and maps the samples as Telegraf's metric_version 1 or 2 does.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::codec::Parser;
use crate::codec::prometheus::PrometheusParser;
use crate::common::http::{TlsClientConfig, error_chain};
use crate::common::http_client::{HttpClient, HttpClientConfig, PROXY_KEYS, ProxyDefault};
use crate::config_types::{Duration, Size};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

/// What we ask for: OpenMetrics first (it carries more), then text 0.0.4.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    urls: Vec<String>,
    metric_version: u8,
    url_tag: String,
    bearer_token: Option<std::path::PathBuf>,
    bearer_token_string: Option<String>,
    username: Option<String>,
    password: Option<String>,
    timeout: Option<Duration>,
    /// Telegraf's older name of `timeout`.
    response_timeout: Option<Duration>,
    ignore_timestamp: bool,
    /// Largest body read from one endpoint.
    /// Bytes, or a size such as "10MB" (0: no limit).
    content_length_limit: Size,
    http_headers: std::collections::BTreeMap<String, String>,
    content_type_override: String,
    enable_request_metrics: bool,
    http_service_discovery: Option<HttpSdConfig>,
}

/// Telegraf's Kubernetes and Consul discovery options: discovery is not built yet, so turning
/// it on is refused, and the settings that only tune it warn that they have no effect.
const DISCOVERY_SWITCHES: &[&str] = &["kubernetes_services", "monitor_kubernetes_pods", "consul"];
const DISCOVERY_SETTINGS: &[&str] = &[
    "kube_config",
    "monitor_kubernetes_pods_method",
    "monitor_kubernetes_pods_scheme",
    "monitor_kubernetes_pods_port",
    "monitor_kubernetes_pods_path",
    "monitor_kubernetes_pods_namespace",
    "pod_scrape_scope",
    "pod_scrape_interval",
    "node_ip",
    "pod_namespace_label_name",
    "kubernetes_label_selector",
    "kubernetes_field_selector",
    "pod_annotation_include",
    "pod_annotation_exclude",
    "pod_label_include",
    "pod_label_exclude",
    "cache_refresh_interval",
    "namespace_annotation_pass",
    "namespace_annotation_drop",
];

/// Takes the discovery keys out of the table: an enabled discovery is refused, the rest warn.
fn take_discovery(table: &mut toml::Table, id: &str) -> Result<(), BuildError> {
    let not_yet = |key: &str, what: &str| {
        BuildError::Config(ConfigError {
            path: vec![key.into()],
            message: format!("{what} is not supported yet"),
        })
    };
    for key in DISCOVERY_SWITCHES {
        let Some(v) = table.remove(*key) else {
            continue;
        };
        let on = match (*key, &v) {
            ("kubernetes_services", toml::Value::Array(a)) => !a.is_empty(),
            ("monitor_kubernetes_pods", toml::Value::Boolean(b)) => *b,
            // Telegraf's sub-tables: on when `enabled = true`.
            (_, toml::Value::Table(t)) => t.get("enabled").and_then(|e| e.as_bool()) == Some(true),
            _ => true,
        };
        if on {
            let what = match *key {
                "kubernetes_services" => "scraping Kubernetes services (kubernetes_services)",
                "monitor_kubernetes_pods" => "Kubernetes pod discovery (monitor_kubernetes_pods)",
                _ => "Consul discovery ([inputs.prometheus.consul])",
            };
            return Err(not_yet(key, what));
        }
        tracing::warn!("{id}: {key} has no effect: service discovery is not supported yet");
    }
    for key in DISCOVERY_SETTINGS {
        if table.remove(*key).is_some() {
            tracing::warn!(
                "{id}: {key} has no effect: it tunes Kubernetes discovery, which is not supported yet"
            );
        }
    }
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urls: Vec::new(),
            // Telegraf's default: a different one would rename every metric of a config
            // that leaves it out.
            metric_version: 1,
            url_tag: "url".into(),
            bearer_token: None,
            bearer_token_string: None,
            username: None,
            password: None,
            timeout: None,
            response_timeout: None,
            ignore_timestamp: false,
            content_length_limit: Size(0),
            http_headers: Default::default(),
            content_type_override: String::new(),
            enable_request_metrics: false,
            http_service_discovery: None,
        }
    }
}

pub struct Prometheus {
    urls: Vec<reqwest::Url>,
    client: HttpClient,
    headers: reqwest::header::HeaderMap,
    /// `content_type_override`: whether to read every answer as OpenMetrics.
    force_openmetrics: Option<bool>,
    request_metrics: bool,
    sd: Option<HttpSd>,
    url_tag: String,
    token_file: Option<std::path::PathBuf>,
    token: Option<String>,
    basic: Option<(String, Option<String>)>,
    ignore_timestamp: bool,
    limit: u64,
    metric_version: u8,
}

impl Prometheus {
    /// The body of one endpoint and whether it is OpenMetrics (by Content-Type), and for
    /// `enable_request_metrics` the response time (once an answer came) and the body length.
    async fn fetch(
        &self,
        url: &reqwest::Url,
        stats: &mut (Option<f64>, Option<i64>),
    ) -> anyhow::Result<(Vec<u8>, Option<bool>)> {
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("not a file path"))?;
            return Ok((tokio::fs::read(&path).await?, None));
        }
        let mut req = self
            .client
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, ACCEPT);
        if let Some(path) = &self.token_file {
            let t = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| anyhow::anyhow!("reading bearer_token {}: {e}", path.display()))?;
            req = req.bearer_auth(t.trim());
        } else if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        } else if let Some((u, p)) = &self.basic {
            req = req.basic_auth(u, p.as_ref());
        }
        // Telegraf's http_headers go last, over the auth headers.
        req = req.headers(self.headers.clone());
        let start = std::time::Instant::now();
        let mut resp = self
            .client
            .send(req)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        stats.0 = Some(start.elapsed().as_secs_f64());
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("server answered {status}");
        }
        let om = self.force_openmetrics.or_else(|| {
            resp.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|ct| ct.starts_with("application/openmetrics-text"))
        });
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?
        {
            body.extend_from_slice(&chunk);
            if self.limit > 0 && body.len() as u64 > self.limit {
                anyhow::bail!(
                    "body larger than content_length_limit ({} bytes)",
                    self.limit
                );
            }
        }
        stats.1 = Some(body.len() as i64);
        Ok((body, om))
    }
}

/// The URL without credentials, for tags and messages.
fn display_url(u: &reqwest::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[async_trait]
impl Input for Prometheus {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        if let Some(sd) = &self.sd
            && sd.last.is_none_or(|t| t.elapsed() >= sd.interval)
        {
            let url = sd.url.clone();
            match self.discover(&url).await {
                Ok(targets) => {
                    if targets.is_empty() {
                        tracing::warn!("{}: service discovery returned no targets", url);
                    }
                    let sd = self.sd.as_mut().expect("checked above");
                    sd.targets = targets;
                    sd.last = Some(std::time::Instant::now());
                }
                Err(e) => {
                    // Keep the targets found last; try again at the next gather.
                    acc.add_error(format!("service discovery {}: {e:#}", display_url(&url)));
                }
            }
        }
        for url in &self.urls {
            self.scrape(url, &[], acc).await;
        }
        if let Some(sd) = &self.sd {
            for (url, labels) in &sd.targets {
                self.scrape(url, labels, acc).await;
            }
        }
        Ok(())
    }
}

/// A Prometheus HTTP service discovery answer item.
#[derive(Deserialize)]
struct SdGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// `[inputs.prometheus.http_service_discovery]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpSdConfig {
    enabled: bool,
    url: String,
    query_interval: Duration,
}

impl Default for HttpSdConfig {
    fn default() -> Self {
        HttpSdConfig {
            enabled: false,
            url: "http://localhost:9000/service-discovery".into(),
            query_interval: Duration::from_secs(300),
        }
    }
}

/// Targets found with HTTP service discovery, queried again every `interval`.
struct HttpSd {
    url: reqwest::Url,
    interval: StdDuration,
    last: Option<std::time::Instant>,
    targets: Vec<(reqwest::Url, Vec<(String, String)>)>,
}

impl Prometheus {
    /// Asks the discovery endpoint for its targets (Prometheus's http_sd format): each target
    /// `host:port` (or a URL) with `/metrics` when it has no path, and its labels as tags.
    async fn discover(
        &self,
        url: &reqwest::Url,
    ) -> anyhow::Result<Vec<(reqwest::Url, Vec<(String, String)>)>> {
        let resp = self
            .client
            .send(self.client.client.get(url.clone()))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            anyhow::bail!("discovery failed with status {status}");
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!(error_chain(&e.without_url())))?;
        let groups: Vec<SdGroup> = serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("not a service discovery answer: {e}"))?;
        let mut out: Vec<(reqwest::Url, Vec<(String, String)>)> = Vec::new();
        for g in groups {
            for t in g.targets {
                let text = if t.starts_with("http://") || t.starts_with("https://") {
                    t.clone()
                } else {
                    format!("http://{t}")
                };
                let Ok(mut u) = reqwest::Url::parse(&text) else {
                    tracing::warn!("service discovery: cannot parse target {t:?}");
                    continue;
                };
                // Without a path (reqwest shows it as "/"), Telegraf scrapes /metrics.
                let after_scheme = &text[text.find("//").map_or(0, |i| i + 2)..];
                if !after_scheme.contains('/') {
                    u.set_path("/metrics");
                }
                let labels: Vec<(String, String)> = g
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                // The same target twice: the last one wins, as in Telegraf's map.
                out.retain(|(x, _)| x != &u);
                out.push((u, labels));
            }
        }
        Ok(out)
    }

    /// Scrapes one URL; `labels` (from discovery) are added as tags over the metrics' own.
    async fn scrape(&self, url: &reqwest::Url, labels: &[(String, String)], acc: &mut Accumulator) {
        let shown = display_url(url);
        let mut stats = (None, None);
        let fetched = self.fetch(url, &mut stats).await;
        if self.request_metrics && (stats.0.is_some() || stats.1.is_some()) {
            let mut m = crate::model::Metric::new("prometheus_request", acc.time());
            if !self.url_tag.is_empty() {
                m.add_tag(self.url_tag.as_str(), shown.as_str());
            }
            for (k, v) in labels {
                m.add_tag(k.as_str(), v.as_str());
            }
            if let Some(t) = stats.0 {
                m.add_field("response_time", t);
            }
            if let Some(n) = stats.1 {
                m.add_field("content_length", n);
            }
            acc.add(m);
        }
        let (body, om) = match fetched {
            Ok(b) => b,
            Err(e) => {
                acc.add_error(format!("{shown}: {e:#}"));
                return;
            }
        };
        let parser = PrometheusParser {
            metric_version: self.metric_version,
            openmetrics: om,
        };
        let mut metrics = Vec::new();
        let errors = parser.parse(&body, acc.time(), &mut metrics);
        if let Some(first) = errors.first() {
            acc.add_error(format!(
                "{shown}: {} bad line(s), first: {first}",
                errors.len()
            ));
        }
        for mut m in metrics {
            if self.ignore_timestamp {
                m.time = acc.time();
            }
            if !self.url_tag.is_empty() {
                m.add_tag(self.url_tag.as_str(), shown.as_str());
            }
            for (k, v) in labels {
                m.add_tag(k.as_str(), v.as_str());
            }
            acc.add(m);
        }
    }
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let http = HttpClientConfig::take(&mut table, &[PROXY_KEYS])?;
    take_discovery(&mut table, &ctx.id)?;
    let cfg: Config = parse_config(table)?;
    let bad =
        |path: Vec<String>, message: String| BuildError::Config(ConfigError { path, message });
    if !matches!(cfg.metric_version, 1 | 2) {
        return Err(bad(vec!["metric_version".into()], "expected 1 or 2".into()));
    }
    let sd = match &cfg.http_service_discovery {
        Some(c) if c.enabled => {
            let url = reqwest::Url::parse(&c.url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    bad(
                        vec!["http_service_discovery".into(), "url".into()],
                        format!("{:?} is not an http(s):// URL", c.url),
                    )
                })?;
            let interval = if c.query_interval.is_zero() {
                StdDuration::from_secs(300)
            } else {
                c.query_interval.get()
            };
            Some(HttpSd {
                url,
                interval,
                last: None,
                targets: Vec::new(),
            })
        }
        _ => None,
    };
    if cfg.urls.is_empty() && sd.is_none() {
        return Err(bad(
            vec!["urls".into()],
            "at least one URL (or service discovery) is needed".into(),
        ));
    }
    let mut urls = Vec::new();
    for (i, u) in cfg.urls.iter().enumerate() {
        let url = reqwest::Url::parse(u)
            .ok()
            .filter(|x| matches!(x.scheme(), "http" | "https" | "file"))
            .ok_or_else(|| {
                bad(
                    vec!["urls".into(), i.to_string()],
                    format!("{u:?} is not an http(s):// or file:// URL"),
                )
            })?;
        urls.push(url);
    }
    let auths = [
        cfg.bearer_token.is_some(),
        cfg.bearer_token_string.is_some(),
        cfg.username.is_some() || cfg.password.is_some(),
    ];
    if auths.iter().filter(|x| **x).count() > 1 {
        return Err(bad(
            vec!["bearer_token".into()],
            "use one of bearer_token, bearer_token_string and username/password".into(),
        ));
    }
    let timeout = cfg
        .timeout
        .or(cfg.response_timeout)
        .map_or(StdDuration::from_secs(3), |d| d.get());
    let client = HttpClient::build(&http, &tls, timeout, ProxyDefault::None, |b| b)?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &cfg.http_headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            bad(
                vec!["http_headers".into(), k.clone()],
                "not a valid header name".into(),
            )
        })?;
        let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            bad(
                vec!["http_headers".into(), k.clone()],
                "not a valid header value".into(),
            )
        })?;
        headers.insert(name, value);
    }
    let force_openmetrics = match cfg.content_type_override.as_str() {
        "" => None,
        "text" => Some(false),
        "openmetrics-text" => Some(true),
        p @ ("protobuf-delimiter"
        | "protobuf-compact"
        | "protobuf-text"
        | "openmetrics-protobuf") => {
            return Err(bad(
                vec!["content_type_override".into()],
                format!("{p:?}: the protobuf formats are not supported yet"),
            ));
        }
        other => {
            return Err(bad(
                vec!["content_type_override".into()],
                format!(
                    "{other:?}: expected \"text\", \"openmetrics-text\", \"protobuf-delimiter\", \
                     \"protobuf-compact\", \"protobuf-text\" or \"openmetrics-protobuf\""
                ),
            ));
        }
    };
    let basic = match (cfg.username, cfg.password) {
        (None, None) => None,
        (u, p) => Some((u.unwrap_or_default(), p)),
    };
    Ok(InputPlugin::Polled(Box::new(Prometheus {
        urls,
        client,
        headers,
        force_openmetrics,
        request_metrics: cfg.enable_request_metrics,
        sd,
        url_tag: cfg.url_tag,
        token_file: cfg.bearer_token,
        token: cfg.bearer_token_string,
        basic,
        ignore_timestamp: cfg.ignore_timestamp,
        limit: cfg.content_length_limit.0,
        metric_version: cfg.metric_version,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "prometheus",
    description: "Scrape Prometheus text / OpenMetrics endpoints",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldValue, ValueType};
    use std::io::{BufRead, BufReader, Write};

    const PAGE: &str = "# HELP up Whether up.\n# TYPE up gauge\nup{job=\"a\"} 1\n\
                        # TYPE reqs counter\nreqs_total 5\n# EOF\n";

    /// Answers every request with `body` (OpenMetrics), recording the request headers.
    fn server(body: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let _ = tx.send(head);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; \
                     version=1.0.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (port, rx)
    }

    fn input(text: &str) -> Box<dyn Input> {
        match build(toml::from_str(text).unwrap(), &BuildContext::default()) {
            Ok(InputPlugin::Polled(p)) => p,
            _ => panic!("build failed"),
        }
    }

    #[tokio::test]
    async fn scrapes_both_versions_with_auth_and_url_tag() {
        let (port, rx) = server(PAGE);
        let url = format!("http://127.0.0.1:{port}/metrics");
        let mut v2 = input(&format!(
            "urls = ['{url}']\nmetric_version = 2\nbearer_token_string = 'tok'"
        ));
        let mut acc = Accumulator::new(42);
        v2.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let head = rx.recv().unwrap().to_ascii_lowercase();
        assert!(head.contains("authorization: bearer tok"), "{head}");
        assert!(
            head.contains("accept: application/openmetrics-text"),
            "{head}"
        );
        let up = &acc.metrics[0];
        assert_eq!(up.name, "prometheus");
        assert_eq!(up.field("up"), Some(&FieldValue::Float(1.0)));
        assert_eq!(up.tag("url"), Some(url.as_str()));
        assert_eq!(up.tag("job"), Some("a"));
        assert_eq!(up.time, 42);
        let reqs = &acc.metrics[1];
        assert_eq!(reqs.kind, ValueType::Counter);
        assert_eq!(reqs.field("reqs_total"), Some(&FieldValue::Float(5.0)));

        // metric_version 1 is the default, as in Telegraf.
        let mut v1 = input(&format!(
            "urls = ['{url}']\nurl_tag = 'src'\nusername = 'u'\npassword = 'p'"
        ));
        let mut acc = Accumulator::new(42);
        v1.gather(&mut acc).await.unwrap();
        assert!(rx.recv().unwrap().contains("Basic dTpw"));
        assert_eq!(acc.metrics[0].name, "up");
        assert_eq!(acc.metrics[0].field("gauge"), Some(&FieldValue::Float(1.0)));
        assert_eq!(acc.metrics[0].tag("src"), Some(url.as_str()));
        assert_eq!(acc.metrics[1].name, "reqs_total");
        assert_eq!(
            acc.metrics[1].field("counter"),
            Some(&FieldValue::Float(5.0))
        );
    }

    #[tokio::test]
    async fn failures_are_errors_not_panics() {
        let dir = std::env::temp_dir().join(format!("sonde-prom-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("page.prom");
        std::fs::write(&file, "ok 1 1700000000000\nbad{ 1\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = input(&format!(
            "urls = ['http://127.0.0.1:{port}/metrics', 'file://{}']\ntimeout = '1s'",
            file.display()
        ));
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        assert_eq!(acc.errors.len(), 2, "{:?}", acc.errors);
        assert!(acc.errors[0].contains("127.0.0.1"));
        assert!(acc.errors[1].contains("1 bad line"), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 1);
        assert_eq!(acc.metrics[0].time, 1_700_000_000_000_000_000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn headers_and_request_metrics() {
        let (port, rx) = server(PAGE);
        let url = format!("http://127.0.0.1:{port}/metrics");
        let mut p = input(&format!(
            "urls = ['{url}']\nenable_request_metrics = true\n\
             http_headers = {{ X-Scope = 'team-a' }}\ncontent_type_override = 'openmetrics-text'"
        ));
        let mut acc = Accumulator::new(42);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let head = rx.recv().unwrap().to_ascii_lowercase();
        assert!(head.contains("x-scope: team-a"), "{head}");
        let req = acc
            .metrics
            .iter()
            .find(|m| m.name == "prometheus_request")
            .expect("prometheus_request");
        assert_eq!(req.tag("url"), Some(url.as_str()));
        assert_eq!(
            req.field("content_length"),
            Some(&FieldValue::Int(PAGE.len() as i64))
        );
        assert!(matches!(req.field("response_time"), Some(FieldValue::Float(t)) if *t > 0.0));
        // A server that is down: an error and no request metric (no answer, no fields).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut down = input(&format!(
            "urls = ['http://127.0.0.1:{port}/m']\nenable_request_metrics = true"
        ));
        let mut acc = Accumulator::new(0);
        down.gather(&mut acc).await.unwrap();
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.metrics.is_empty());
    }

    #[tokio::test]
    async fn http_service_discovery_finds_the_targets() {
        let (port, rx) = server(PAGE);
        let sd_body: &'static str = Box::leak(
            format!(
                r#"[{{"targets":["127.0.0.1:{port}"],"labels":{{"job":"node","team":"a"}}}},
                   {{"targets":["http://127.0.0.1:{port}/federate"],"labels":{{}}}}]"#
            )
            .into_boxed_str(),
        );
        let (sd_port, sd_rx) = server(sd_body);
        let mut p = input(&format!(
            "[http_service_discovery]\nenabled = true\n\
             url = 'http://127.0.0.1:{sd_port}/sd'\nquery_interval = '1h'"
        ));
        for _ in 0..2 {
            let mut acc = Accumulator::new(1);
            p.gather(&mut acc).await.unwrap();
            assert!(acc.errors.is_empty(), "{:?}", acc.errors);
            let up: Vec<_> = acc.metrics.iter().filter(|m| m.name == "up").collect();
            assert_eq!(up.len(), 2, "{:?}", acc.metrics);
            let found = format!("http://127.0.0.1:{port}/metrics");
            assert_eq!(up[0].tag("url"), Some(found.as_str()));
            assert_eq!(up[0].tag("team"), Some("a"));
            // The target's label wins over the metric's own (job="a" in the page).
            assert_eq!(up[0].tag("job"), Some("node"));
            let fed = format!("http://127.0.0.1:{port}/federate");
            assert_eq!(up[1].tag("url"), Some(fed.as_str()));
            assert_eq!(up[1].tag("job"), Some("a"));
        }
        // Asked once in the hour, the targets scraped at every gather.
        assert_eq!(sd_rx.try_iter().count(), 1);
        assert_eq!(rx.try_iter().count(), 4);
    }

    #[test]
    fn discovery_is_refused_as_not_supported_yet() {
        let err = |t: &str| match build(
            toml::from_str(&format!("urls = ['http://x']\n{t}")).unwrap(),
            &BuildContext::default(),
        ) {
            Err(BuildError::Config(c)) => (c.path.join("."), c.message),
            Err(e) => panic!("{t}: {e}"),
            Ok(_) => ("".into(), "built".into()),
        };
        for (t, key) in [
            ("monitor_kubernetes_pods = true", "monitor_kubernetes_pods"),
            (
                "kubernetes_services = ['http://svc:9100/metrics']",
                "kubernetes_services",
            ),
            (
                "[consul]\nenabled = true\nagent = 'http://localhost:8500'",
                "consul",
            ),
        ] {
            let (path, message) = err(t);
            assert_eq!(path, key, "{t}");
            assert!(message.ends_with("is not supported yet"), "{t}: {message}");
        }
        // Off, or settings that only tune discovery: accepted (with a warning).
        for t in [
            "monitor_kubernetes_pods = false\npod_scrape_scope = 'cluster'\nnode_ip = '10.0.0.1'\n\
             cache_refresh_interval = 60\nkube_config = '/k'\npod_label_include = ['a']",
            "[consul]\nenabled = false",
            "[namespace_annotation_pass]\nannotation_key = ['v']",
            "use_system_proxy = false\nhttp_proxy_url = 'http://proxy:3128'\ntls_enable = true\n\
             tls_renegotiation_method = 'never'",
        ] {
            assert_eq!(err(t).1, "built", "{t}");
        }
        assert_eq!(
            err("content_type_override = 'protobuf-delimiter'").0,
            "content_type_override"
        );
        assert_eq!(
            err("content_type_override = 'xml'").0,
            "content_type_override"
        );
    }

    #[test]
    fn config_errors() {
        for text in [
            "urls = []",
            "urls = ['ftp://x']",
            "urls = ['http://x']\nmetric_version = 3",
            "urls = ['http://x']\nusername = 'u'\nbearer_token_string = 't'",
        ] {
            assert!(
                matches!(
                    build(toml::from_str(text).unwrap(), &BuildContext::default()),
                    Err(BuildError::Config(_))
                ),
                "{text}"
            );
        }
    }
}
