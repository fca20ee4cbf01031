//! `inputs.http_response`: probes HTTP(S) URLs as Telegraf's plugin does (same options, tags,
//! fields and result codes), with blackbox_exporter's per-phase durations, and without
//! Telegraf's known bugs: a timeout while reading the body is `timeout` (not
//! `body_read_error`), a timed-out probe still reports its elapsed `response_time`, and an
//! address error has its own result code (7) instead of 0.

mod client;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use crate::common::http::{TlsClientConfig, rustls_client_config};
use crate::common::probe::{MAX_CONCURRENT_PROBES, run_bounded};
use crate::config_types::{Duration, Size};
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

use client::{Failure, Phases, Proxy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Deprecated in Telegraf 1.12 in favour of `urls`; still accepted.
    address: Option<String>,
    urls: Vec<String>,
    http_proxy: Option<String>,
    response_timeout: Duration,
    method: String,
    follow_redirects: bool,
    body: Option<String>,
    /// Form fields sent as an `application/x-www-form-urlencoded` body when `body` is unset.
    body_form: BTreeMap<String, Vec<String>>,
    response_body_field: Option<String>,
    response_body_max_size: Size,
    response_string_match: Option<String>,
    response_status_code: u16,
    headers: BTreeMap<String, String>,
    http_header_tags: BTreeMap<String, String>,
    interface: Option<String>,
    username: Option<String>,
    password: Option<String>,
    /// A file holding a bearer token, read at every probe (tokens rotate).
    bearer_token: Option<PathBuf>,
    /// A bearer token given inline (Telegraf's `token`).
    token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: None,
            urls: Vec::new(),
            http_proxy: None,
            response_timeout: Duration::from_secs(5),
            method: "GET".into(),
            follow_redirects: false,
            body: None,
            body_form: BTreeMap::new(),
            response_body_field: None,
            response_body_max_size: Size(0),
            response_string_match: None,
            response_status_code: 0,
            headers: BTreeMap::new(),
            http_header_tags: BTreeMap::new(),
            interface: None,
            username: None,
            password: None,
            bearer_token: None,
            token: None,
        }
    }
}

const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;

/// Telegraf's result types and codes; `address_error` is sonde's (Telegraf reports it as 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    StringMismatch,
    BodyReadError,
    ConnectionFailed,
    Timeout,
    DnsError,
    StatusCodeMismatch,
    AddressError,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::StringMismatch => "response_string_mismatch",
            Outcome::BodyReadError => "body_read_error",
            Outcome::ConnectionFailed => "connection_failed",
            Outcome::Timeout => "timeout",
            Outcome::DnsError => "dns_error",
            Outcome::StatusCodeMismatch => "response_status_code_mismatch",
            Outcome::AddressError => "address_error",
        }
    }
    fn code(self) -> i64 {
        match self {
            Outcome::Success => 0,
            Outcome::StringMismatch => 1,
            Outcome::BodyReadError => 2,
            Outcome::ConnectionFailed => 3,
            Outcome::Timeout => 4,
            Outcome::DnsError => 5,
            Outcome::StatusCodeMismatch => 6,
            Outcome::AddressError => 7,
        }
    }
}

struct Target {
    /// As configured (without a password in it): the `server` tag.
    shown: String,
    url: url::Url,
    /// `Authorization: Basic` from credentials in the URL (as Go's client sends them).
    auth: Option<String>,
}

pub struct HttpResponse {
    targets: Vec<Target>,
    method: http::Method,
    body: Bytes,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    host_header: Option<String>,
    follow_redirects: bool,
    timeout: std::time::Duration,
    max_body: u64,
    string_match: Option<regex::bytes::Regex>,
    body_field: Option<String>,
    status_code: u16,
    header_tags: Vec<(http::HeaderName, String)>,
    tls: Arc<rustls::ClientConfig>,
    sni: Option<String>,
    local_addr: Option<IpAddr>,
    proxy: Option<Proxy>,
    basic: Option<String>,
    bearer_file: Option<PathBuf>,
    token: Option<http::HeaderValue>,
    /// Cookie authentication (Telegraf's `cookie_auth_*`): the login runs on this client.
    cookie: Option<crate::common::http_client::HttpClient>,
}

impl HttpResponse {
    async fn probe(&self, target: &Target, time: i64) -> (Metric, Option<String>) {
        let mut m = Metric::new("http_response", time).with_kind(ValueType::Gauge);
        m.add_tag("server", target.shown.as_str());
        m.add_tag("method", self.method.as_str());
        let mut headers = self.headers.clone();
        let mut error = None;
        if let Some(path) = &self.bearer_file {
            match tokio::fs::read_to_string(path).await {
                Ok(t) => headers.push((
                    http::header::AUTHORIZATION,
                    http::HeaderValue::try_from(format!("Bearer {}", t.trim()))
                        .unwrap_or(http::HeaderValue::from_static("")),
                )),
                Err(e) => error = Some(format!("reading bearer_token {}: {e}", path.display())),
            }
        } else if let Some(t) = &self.token {
            headers.push((http::header::AUTHORIZATION, t.clone()));
        } else if let Some(b) = self.basic.as_ref().or(target.auth.as_ref())
            && let Ok(v) = http::HeaderValue::try_from(b.as_str())
        {
            headers.push((http::header::AUTHORIZATION, v));
        }
        if let Some(c) = &self.cookie {
            match c.cookie_for(&target.url).await {
                Ok(Some(v)) => headers.push((http::header::COOKIE, v)),
                Ok(None) => {}
                Err(e) => error = Some(format!("{}: {e}", target.shown)),
            }
        }
        let req = client::Request {
            method: &self.method,
            url: &target.url,
            headers: &headers,
            host_header: self.host_header.as_deref(),
            body: &self.body,
            follow_redirects: self.follow_redirects,
            max_body: self.max_body,
            tls: &self.tls,
            sni: self.sni.as_deref(),
            local_addr: self.local_addr,
            proxy: self.proxy.as_ref(),
        };
        let start = Instant::now();
        let mut phases = Phases::default();
        let res = tokio::time::timeout(self.timeout, client::probe(&req, start, &mut phases)).await;
        let elapsed = start.elapsed();
        add_phases(&mut m, &phases);
        let outcome = match res {
            Err(_) => {
                // Telegraf reports no time for a timeout; the time waited is what a user needs.
                m.add_field("response_time", elapsed.as_secs_f64());
                error = Some(format!(
                    "{}: timeout after {:?}",
                    target.shown, self.timeout
                ));
                Outcome::Timeout
            }
            Ok(Err(f)) => {
                m.add_field("response_time", elapsed.as_secs_f64());
                let (o, e) = match f {
                    Failure::Dns(e) => (Outcome::DnsError, e),
                    Failure::Connect(e) => (Outcome::ConnectionFailed, e),
                    Failure::Address(e) => (Outcome::AddressError, e),
                    Failure::BodyRead(e) => (Outcome::BodyReadError, e),
                };
                error = Some(format!("{}: {e}", target.shown));
                o
            }
            Ok(Ok(answer)) => {
                let response = phases.response.unwrap_or(elapsed);
                m.add_field("response_time", response.as_secs_f64());
                m.add_field("http_response_code", i64::from(answer.status));
                m.add_field("content_length", answer.body.len() as i64);
                m.add_field("http_version", answer.version);
                m.add_tag("status_code", answer.status.to_string());
                for (h, tag) in &self.header_tags {
                    if let Some(v) = answer.headers.get(h).and_then(|v| v.to_str().ok()) {
                        m.add_tag(tag.as_str(), v);
                    }
                }
                self.judge(&mut m, &answer, &mut error, &target.shown)
            }
        };
        m.add_tag("result", outcome.name());
        m.add_field("result_type", outcome.name());
        m.add_field("result_code", outcome.code());
        (m, error)
    }

    /// Telegraf's checks on a response, in its order: body size, body field, string match,
    /// status code (a later check's failure wins).
    fn judge(
        &self,
        m: &mut Metric,
        answer: &client::Answer,
        error: &mut Option<String>,
        shown: &str,
    ) -> Outcome {
        if answer.too_large {
            *error = Some(format!(
                "{shown}: body larger than response_body_max_size ({} bytes)",
                self.max_body
            ));
            return Outcome::BodyReadError;
        }
        let mut outcome = Outcome::Success;
        if let Some(field) = &self.body_field {
            match std::str::from_utf8(&answer.body) {
                Ok(s) => m.add_field(field.as_str(), s),
                Err(_) => {
                    *error = Some(format!("{shown}: body is not valid UTF-8"));
                    return Outcome::BodyReadError;
                }
            }
        }
        if let Some(re) = &self.string_match {
            if re.is_match(&answer.body) {
                m.add_field("response_string_match", 1i64);
            } else {
                m.add_field("response_string_match", 0i64);
                outcome = Outcome::StringMismatch;
            }
        }
        if self.status_code > 0 {
            if answer.status == self.status_code {
                m.add_field("response_status_code_match", 1i64);
            } else {
                m.add_field("response_status_code_match", 0i64);
                outcome = Outcome::StatusCodeMismatch;
            }
        }
        outcome
    }
}

fn add_phases(m: &mut Metric, p: &Phases) {
    m.add_field("dns_time", p.dns.as_secs_f64());
    m.add_field("connect_time", p.connect.as_secs_f64());
    if let Some(t) = p.tls {
        m.add_field("tls_time", t.as_secs_f64());
    }
    if let Some(t) = p.first_byte {
        m.add_field("first_byte_time", t.as_secs_f64());
    }
    if let Some(t) = p.transfer {
        m.add_field("transfer_time", t.as_secs_f64());
    }
}

#[async_trait]
impl Input for HttpResponse {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let time = acc.time();
        let this = &*self;
        // Indexes rather than references: keeps the closure free of higher-ranked lifetimes.
        let results = run_bounded(0..this.targets.len(), MAX_CONCURRENT_PROBES, |i| {
            this.probe(&this.targets[i], time)
        })
        .await;
        for (m, err) in results {
            if let Some(e) = err {
                tracing::debug!("http_response: {e}");
            }
            acc.add(m);
        }
        Ok(())
    }
}

fn bad(path: &str, message: String) -> BuildError {
    BuildError::Config(ConfigError {
        path: vec![path.to_string()],
        message,
    })
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    Ok(InputPlugin::Polled(Box::new(new(table)?)))
}

fn new(mut table: toml::Table) -> Result<HttpResponse, BuildError> {
    use crate::common::http_client::{COOKIE_KEYS, HttpClient, HttpClientConfig, ProxyDefault};
    let tls_opts = TlsClientConfig::take(&mut table)?;
    let any_cookie_key = COOKIE_KEYS.iter().any(|k| table.contains_key(*k));
    let cookie_cfg = HttpClientConfig::take(&mut table, &[COOKIE_KEYS])?;
    let mut cfg: Config = parse_config(table)?;
    // The client checks the cookie options (and warns when they lack cookie_auth_url).
    let cookie = match any_cookie_key {
        true => Some(HttpClient::build(
            &cookie_cfg,
            &tls_opts,
            cfg.response_timeout.get(),
            ProxyDefault::None,
            |b| b,
        )?)
        .filter(|_| {
            cookie_cfg
                .cookie_auth_url
                .as_deref()
                .is_some_and(|u| !u.is_empty())
        }),
        false => None,
    };
    if cfg.body.as_deref().is_none_or(str::is_empty) && !cfg.body_form.is_empty() {
        cfg.body = Some(form_urlencode(&cfg.body_form));
        let has_type = cfg
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"));
        if !has_type {
            // Telegraf sends the form without saying so; servers need the type to read it.
            cfg.headers.insert(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            );
        }
    }
    let mut urls = cfg.urls.clone();
    if let Some(a) = &cfg.address {
        tracing::warn!("http_response: `address` is deprecated, use `urls`");
        urls.push(a.clone());
    }
    if urls.is_empty() {
        urls.push("http://localhost".into());
    }
    let mut targets = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let url = url::Url::parse(u)
            .ok()
            .filter(|x| matches!(x.scheme(), "http" | "https") && x.host_str().is_some())
            .ok_or_else(|| {
                BuildError::Config(ConfigError {
                    path: vec!["urls".into(), i.to_string()],
                    message: format!("{u:?} is not an http:// or https:// URL with a host"),
                })
            })?;
        let auth = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let user = percent_decode(url.username());
            let pass = percent_decode(url.password().unwrap_or(""));
            basic_auth(&user, &pass)
        });
        let shown = if url.password().is_some() {
            // Secrets stay out of tags and logs.
            let mut bare = url.clone();
            let _ = bare.set_password(None);
            bare.to_string()
        } else {
            u.clone()
        };
        targets.push(Target { shown, url, auth });
    }
    let method = http::Method::from_bytes(cfg.method.as_bytes())
        .map_err(|_| bad("method", format!("{:?} is not an HTTP method", cfg.method)))?;
    let mut headers = Vec::new();
    let mut host_header = None;
    for (k, v) in &cfg.headers {
        if k.eq_ignore_ascii_case("host") {
            host_header = Some(v.clone());
            continue;
        }
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad("headers", format!("{k:?} is not a header name")))?;
        let value = http::HeaderValue::try_from(v.as_str()).map_err(|_| {
            bad(
                "headers",
                format!("the value of {k:?} is not a header value"),
            )
        })?;
        headers.push((name, value));
    }
    let mut header_tags = Vec::new();
    for (k, tag) in &cfg.http_header_tags {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad("http_header_tags", format!("{k:?} is not a header name")))?;
        header_tags.push((name, tag.clone()));
    }
    let string_match = match &cfg.response_string_match {
        Some(s) if !s.is_empty() => Some(
            regex::bytes::Regex::new(s)
                .map_err(|e| bad("response_string_match", format!("not a regex: {e}")))?,
        ),
        _ => None,
    };
    let local_addr = match &cfg.interface {
        Some(name) if !name.is_empty() => Some(client::interface_addr(name).ok_or_else(|| {
            bad(
                "interface",
                format!("no interface {name:?} with an address"),
            )
        })?),
        _ => None,
    };
    let proxy = match &cfg.http_proxy {
        Some(p) if !p.is_empty() => {
            let u = url::Url::parse(p)
                .ok()
                .filter(|u| u.scheme() == "http" && u.host_str().is_some())
                .ok_or_else(|| bad("http_proxy", format!("{p:?} is not an http:// URL")))?;
            let auth = (!u.username().is_empty()).then(|| {
                let user = percent_decode(u.username());
                let pass = percent_decode(u.password().unwrap_or(""));
                basic_auth(&user, &pass)
            });
            Some(Proxy {
                host: u
                    .host_str()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_string(),
                port: u.port_or_known_default().unwrap_or(80),
                auth,
            })
        }
        _ => None,
    };
    if cfg.bearer_token.is_some() && (cfg.username.is_some() || cfg.password.is_some()) {
        return Err(bad(
            "bearer_token",
            "use either bearer_token or username/password".into(),
        ));
    }
    let token = cfg.token.as_deref().filter(|t| !t.is_empty());
    if token.is_some() && cfg.bearer_token.is_some() {
        return Err(bad(
            "token",
            "use either token or bearer_token, not both".into(),
        ));
    }
    if token.is_some() && (cfg.username.is_some() || cfg.password.is_some()) {
        return Err(bad("token", "use either token or username/password".into()));
    }
    let token = match token {
        Some(t) => {
            let mut v = http::HeaderValue::try_from(format!("Bearer {t}"))
                .map_err(|_| bad("token", "not a valid header value".into()))?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    let basic = (cfg.username.is_some() || cfg.password.is_some()).then(|| {
        basic_auth(
            cfg.username.as_deref().unwrap_or(""),
            cfg.password.as_deref().unwrap_or(""),
        )
    });
    let mut tls = rustls_client_config(&tls_opts)?;
    // HTTP/2 when the server offers it (as Go's client, hence Telegraf), else HTTP/1.1.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Every probe measures a full handshake (as blackbox_exporter does), not a resumed one.
    tls.resumption = rustls::client::Resumption::disabled();
    let max_body = if cfg.response_body_max_size.0 == 0 {
        DEFAULT_MAX_BODY
    } else {
        cfg.response_body_max_size.0
    };
    if cfg.response_timeout.is_zero() {
        return Err(bad("response_timeout", "must be more than 0".into()));
    }
    Ok(HttpResponse {
        targets,
        method,
        body: Bytes::from(cfg.body.unwrap_or_default()),
        headers,
        host_header,
        follow_redirects: cfg.follow_redirects,
        timeout: cfg.response_timeout.get(),
        max_body,
        string_match,
        body_field: cfg.response_body_field.filter(|s| !s.is_empty()),
        status_code: cfg.response_status_code,
        header_tags,
        tls: Arc::new(tls),
        sni: tls_opts.tls_server_name.clone(),
        local_addr,
        proxy,
        basic,
        bearer_file: cfg.bearer_token,
        token,
        cookie,
    })
}

/// The `Authorization` value for basic authentication, as text.
fn basic_auth(user: &str, pass: &str) -> String {
    let v = crate::common::http::basic_auth_header(user, pass);
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

/// Go's `url.Values.Encode`: keys sorted, each value as `key=value`, escaped as a query.
fn form_urlencode(form: &BTreeMap<String, Vec<String>>) -> String {
    fn escape(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (k, values) in form {
        for v in values {
            if !out.is_empty() {
                out.push('&');
            }
            escape(k, &mut out);
            out.push('=');
            escape(v, &mut out);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub const SPEC: InputSpec = InputSpec {
    name: "http_response",
    description: "Probe HTTP(S) URLs: result, status, response time and per-phase durations",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn token_is_sent_as_bearer() {
        let (port, mut rx) = proxy().await;
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/p']\ntoken = 'tok-123'\n\
             tls_renegotiation_method = 'once'"
        ));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("success"), "{m:?}");
        let head = rx.recv().await.unwrap();
        assert!(head.contains("authorization: Bearer tok-123\r\n"), "{head}");
        for bad in [
            "token = 't'\nbearer_token = '/t'",
            "token = 't'\nusername = 'u'",
        ] {
            let t = format!("urls = ['http://x/']\n{bad}");
            assert!(new(toml::from_str(&t).unwrap()).is_err(), "{bad}");
        }
    }

    /// Telegraf's body_form (a form-encoded body) and cookie_auth_* (a login whose cookie goes
    /// with every probe), against a server that records what it is sent.
    #[tokio::test]
    async fn body_form_and_cookie_login() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let reply: &[u8] = if req.starts_with("POST /login") {
                        b"HTTP/1.1 200 OK\r\nset-cookie: sid=abc123; Path=/\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    let _ = tx.send(req);
                    let _ = s.write_all(reply).await;
                });
            }
        });
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/probe']\nmethod = 'POST'\n\
             body_form = {{ user = ['ann lee'], q = ['a&b', 'c'] }}\n\
             cookie_auth_url = 'http://127.0.0.1:{port}/login'\n\
             cookie_auth_username = 'u'\ncookie_auth_password = 'p'"
        ));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("success"), "{m:?}");
        let login = rx.recv().await.unwrap();
        assert!(login.starts_with("POST /login"), "{login}");
        assert!(
            login
                .to_ascii_lowercase()
                .contains("authorization: basic dtpw"),
            "{login}"
        );
        let probe = rx.recv().await.unwrap();
        assert!(probe.starts_with("POST /probe"), "{probe}");
        assert!(probe.contains("cookie: sid=abc123\r\n"), "{probe}");
        assert!(
            probe.contains("content-type: application/x-www-form-urlencoded\r\n"),
            "{probe}"
        );
        assert!(
            probe.ends_with("\r\n\r\nq=a%26b&q=c&user=ann+lee"),
            "{probe}"
        );
        // The cookie is kept: a second probe does not log in again.
        probe_one(&p).await;
        assert!(rx.recv().await.unwrap().starts_with("POST /probe"));
    }

    fn plugin(toml: &str) -> HttpResponse {
        new(toml::from_str(toml).unwrap()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A one-shot-per-connection server answering every request with `reply` after `delay`.
    async fn server(reply: &'static str, delay_ms: u64) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(b"\r\n\r\n").await;
                    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                    let _ = s.write_all(body.as_bytes()).await;
                });
            }
        });
        port
    }

    async fn probe_one(p: &HttpResponse) -> Metric {
        p.probe(&p.targets[0], 0).await.0
    }

    fn int(m: &Metric, k: &str) -> i64 {
        match m.field(k) {
            Some(FieldValue::Int(v)) => *v,
            other => panic!("{k}: {other:?} in {m:?}"),
        }
    }

    #[tokio::test]
    async fn success_string_and_status_checks() {
        let port = server(
            "HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx-app: demo\r\n\r\nhello world",
            0,
        )
        .await;
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/x']\nresponse_string_match = 'wor.d'\n\
             response_status_code = 200\n[http_header_tags]\nX-App = 'app'"
        ));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("success"));
        assert_eq!(m.tag("status_code"), Some("200"));
        assert_eq!(m.tag("app"), Some("demo"));
        assert_eq!(int(&m, "result_code"), 0);
        assert_eq!(int(&m, "content_length"), 11);
        assert_eq!(int(&m, "response_string_match"), 1);
        assert_eq!(int(&m, "response_status_code_match"), 1);
        assert!(m.field("first_byte_time").is_some());
        assert!(m.field("tls_time").is_none());

        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/']\nresponse_string_match = 'absent'"
        ));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("response_string_mismatch"));
        assert_eq!(int(&m, "result_code"), 1);
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/']\nresponse_status_code = 204"
        ));
        let m = probe_one(&p).await;
        assert_eq!(int(&m, "result_code"), 6);
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/']\nresponse_body_max_size = 4"
        ));
        assert_eq!(int(&probe_one(&p).await, "result_code"), 2);
    }

    #[tokio::test]
    async fn timeout_in_body_is_timeout_with_elapsed_time() {
        let port = server("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", 2000).await;
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/']\nresponse_timeout = '300ms'"
        ));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("timeout"));
        assert_eq!(int(&m, "result_code"), 4);
        let Some(FieldValue::Float(t)) = m.field("response_time") else {
            panic!("{m:?}")
        };
        assert!((0.29..1.5).contains(t), "{t}");
        assert!(m.field("first_byte_time").is_some(), "{m:?}");
    }

    #[tokio::test]
    async fn refused_and_dns_errors() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let p = plugin(&format!("urls = ['http://127.0.0.1:{port}/']"));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("connection_failed"));
        assert_eq!(int(&m, "result_code"), 3);
        assert!(m.field("response_time").is_some());
        let p = plugin("urls = ['http://no-such-host.invalid/']");
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("dns_error"));
        assert_eq!(int(&m, "result_code"), 5);
    }

    /// A proxy that records the first line and headers of each request: plain requests get a
    /// 200, CONNECT gets a 403.
    async fn proxy() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let reply: &[u8] = if head.starts_with("CONNECT") {
                        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    let _ = tx.send(head);
                    let _ = s.write_all(reply).await;
                });
            }
        });
        (port, rx)
    }

    /// Telegraf reports an address error with result code 0; here it is `address_error`, 7.
    #[tokio::test]
    async fn address_error_has_its_own_code() {
        let port = server(
            "HTTP/1.1 302 Found\r\nlocation: ftp://files.example/x\r\ncontent-length: 0\r\n\r\n",
            0,
        )
        .await;
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/']\nfollow_redirects = true"
        ));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("address_error"), "{m:?}");
        assert_eq!(int(&m, "result_code"), 7);
        assert!(m.field("response_time").is_some());
    }

    #[tokio::test]
    async fn url_credentials_become_basic_auth_and_leave_the_tag() {
        let (port, mut rx) = proxy().await;
        let p = plugin(&format!(
            "urls = ['http://bob:s%3Acret@127.0.0.1:{port}/p']"
        ));
        let m = probe_one(&p).await;
        assert_eq!(
            m.tag("server"),
            Some(format!("http://bob@127.0.0.1:{port}/p").as_str())
        );
        let head = rx.recv().await.unwrap();
        // bob:s:cret
        assert!(
            head.contains("authorization: Basic Ym9iOnM6Y3JldA==\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn interface_sets_the_source_address() {
        assert_eq!(
            client::interface_addr("lo"),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        let port = server("HTTP/1.1 204 No Content\r\n\r\n", 0).await;
        let p = plugin(&format!(
            "urls = ['http://127.0.0.1:{port}/']\ninterface = 'lo'"
        ));
        assert_eq!(p.local_addr, Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(probe_one(&p).await.tag("status_code"), Some("204"));
    }

    #[tokio::test]
    async fn http_proxy_absolute_form_and_connect() {
        let (port, mut rx) = proxy().await;
        let p = plugin(&format!(
            "urls = ['http://target.invalid:8080/a?b=1', 'https://secure.invalid/x']\n\
             http_proxy = 'http://u%40x:pw@127.0.0.1:{port}'"
        ));
        let m = probe_one(&p).await;
        assert_eq!(m.tag("result"), Some("success"), "{m:?}");
        let head = rx.recv().await.unwrap();
        assert!(
            head.starts_with("GET http://target.invalid:8080/a?b=1 HTTP/1.1\r\n"),
            "{head}"
        );
        // u@x:pw
        assert!(
            head.contains("proxy-authorization: Basic dUB4OnB3\r\n"),
            "{head}"
        );
        let m = p.probe(&p.targets[1], 0).await.0;
        assert_eq!(m.tag("result"), Some("connection_failed"), "{m:?}");
        let head = rx.recv().await.unwrap();
        assert!(
            head.starts_with("CONNECT secure.invalid:443 HTTP/1.1\r\n"),
            "{head}"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |t: &str| match build(toml::from_str(t).unwrap(), &BuildContext::default()) {
            Err(BuildError::Config(c)) => c.path.join("."),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted {t}"),
        };
        assert_eq!(err("urls = ['ftp://x']"), "urls.0");
        assert_eq!(err("response_string_match = '('"), "response_string_match");
        assert_eq!(err("interface = 'no-such-if0'"), "interface");
        assert_eq!(err("http_proxy = 'socks5://x'"), "http_proxy");
        assert_eq!(err("nonsense = 1"), "nonsense");
    }

    #[test]
    fn percent_decoding_of_proxy_credentials() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("plain%"), "plain%");
    }
}
