//! `inputs.prometheus`: scrapes Prometheus text / OpenMetrics endpoints (and `file://` paths)
//! and maps the samples as Telegraf's metric_version 1 or 2 does.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::codec::Parser;
use crate::codec::prometheus::PrometheusParser;
use crate::common::http::{ClientOptions, TlsClientConfig, build_client, error_chain};
use crate::config_types::Duration;
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
    content_length_limit: u64,
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
            content_length_limit: 0,
        }
    }
}

pub struct Prometheus {
    urls: Vec<reqwest::Url>,
    client: reqwest::Client,
    url_tag: String,
    token_file: Option<std::path::PathBuf>,
    token: Option<String>,
    basic: Option<(String, Option<String>)>,
    ignore_timestamp: bool,
    limit: u64,
    metric_version: u8,
}

impl Prometheus {
    /// The body of one endpoint and whether it is OpenMetrics (by Content-Type).
    async fn fetch(&self, url: &reqwest::Url) -> anyhow::Result<(Vec<u8>, Option<bool>)> {
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("not a file path"))?;
            return Ok((tokio::fs::read(&path).await?, None));
        }
        let mut req = self
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
        let mut resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("server answered {status}");
        }
        let om = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.starts_with("application/openmetrics-text"));
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
        for url in &self.urls {
            let shown = display_url(url);
            let (body, om) = match self.fetch(url).await {
                Ok(b) => b,
                Err(e) => {
                    acc.add_error(format!("{shown}: {e:#}"));
                    continue;
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
                acc.add(m);
            }
        }
        Ok(())
    }
}

fn build(mut table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    let bad =
        |path: Vec<String>, message: String| BuildError::Config(ConfigError { path, message });
    if !matches!(cfg.metric_version, 1 | 2) {
        return Err(bad(vec!["metric_version".into()], "expected 1 or 2".into()));
    }
    if cfg.urls.is_empty() {
        return Err(bad(
            vec!["urls".into()],
            "at least one URL is needed".into(),
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
    let client = build_client(&ClientOptions {
        timeout,
        idle_conn_timeout: None,
        tls: &tls,
    })?;
    let basic = match (cfg.username, cfg.password) {
        (None, None) => None,
        (u, p) => Some((u.unwrap_or_default(), p)),
    };
    Ok(InputPlugin::Polled(Box::new(Prometheus {
        urls,
        client,
        url_tag: cfg.url_tag,
        token_file: cfg.bearer_token,
        token: cfg.bearer_token_string,
        basic,
        ignore_timestamp: cfg.ignore_timestamp,
        limit: cfg.content_length_limit,
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
