//! `outputs.prometheus_client`: serves the metrics written to it on an HTTP endpoint for
//! Prometheus to scrape (Telegraf's options and naming).
//!
//! The server starts in `connect` and stops on `close` or when the output is dropped (a
//! reload). Rendering is cached per family (see [`store`]). Text 0.0.4 or OpenMetrics 1.0.0 by
//! the `Accept` header, gzip by `Accept-Encoding`.

pub mod store;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::watch;

use crate::common::server::{self, PeerAddr, Resp, ServerOptions, TlsServerConfig};
use crate::config_types::Duration;
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, ConfigError, Format as Fmt, OutputSpec, parse_config};
use store::{Format, Store, StoreOptions, gzip_bytes};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    listen: String,
    path: String,
    read_timeout: Duration,
    /// Accepted for Telegraf compatibility; a scrape's response is written in one piece.
    write_timeout: Duration,
    metric_version: u8,
    basic_username: Option<String>,
    basic_password: Option<String>,
    ip_range: Vec<String>,
    expiration_interval: Duration,
    collectors_exclude: Vec<String>,
    string_as_label: bool,
    export_timestamp: bool,
    /// "legacy" (ASCII names, the default) or Telegraf's "utf8".
    name_sanitization: String,
    /// Headers added to every response.
    http_headers: std::collections::BTreeMap<String, String>,
    /// Families whose type is set whatever the metric says (globs on the family name).
    metric_types: MetricTypes,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MetricTypes {
    counter: Vec<String>,
    gauge: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ":9273".into(),
            path: "/metrics".into(),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            // Telegraf's default (see the prometheus input).
            metric_version: 1,
            basic_username: None,
            basic_password: None,
            ip_range: Vec::new(),
            expiration_interval: Duration::from_secs(60),
            collectors_exclude: Vec::new(),
            string_as_label: true,
            export_timestamp: false,
            name_sanitization: "legacy".into(),
            http_headers: Default::default(),
            metric_types: MetricTypes::default(),
        }
    }
}

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, b)) => (ip.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return None;
        }
        // `::ffff:10.0.0.0/104` is the IPv4 network 10.0.0.0/8 written in IPv6 form; Go's
        // net.IPNet (Telegraf) matches IPv4 clients against it, so does sonde. A prefix shorter
        // than the `::ffff:` part masks it away and stays an IPv6 network, as in Go.
        if let IpAddr::V6(v6) = ip
            && bits >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Some(Cidr {
                net: IpAddr::V4(v4),
                bits: bits - 96,
            });
        }
        Some(Cidr { net: ip, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mask = |bits: u8, width: u32| -> u128 {
            if bits == 0 {
                0
            } else {
                (!0u128 << (width - bits as u32)) & (!0u128 >> (128 - width))
            }
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask(self.bits, 32);
                (u32::from(n) as u128 & m) == (u32::from(a) as u128 & m)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask(self.bits, 128);
                (u128::from(n) & m) == (u128::from(a) & m)
            }
            _ => false,
        }
    }
}

/// What the request handler needs, shared with the output.
struct Shared {
    store: Mutex<Store>,
    path: String,
    auth: Option<(String, String)>,
    ip_range: Vec<Cidr>,
    process: bool,
    /// `http_headers`, added to every response (errors too, as Telegraf's handler does).
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

pub struct PrometheusClient {
    shared: Arc<Shared>,
    listen: String,
    read_timeout: std::time::Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Bound by `start`, served from `connect`.
    bound: Option<tokio::net::TcpListener>,
    server: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

#[async_trait]
impl Output for PrometheusClient {
    async fn start(&mut self) -> anyhow::Result<()> {
        if self.server.is_none() && self.bound.is_none() {
            self.bound = Some(server::bind(&self.listen).await?);
        }
        Ok(())
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        let listener = server::bound_or_bind(self.bound.take(), &self.listen).await?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(
            address = %listener.local_addr().map_or(self.listen.clone(), |a| a.to_string()),
            path = %self.shared.path,
            "prometheus_client: serving metrics on {scheme}"
        );
        let (tx, rx) = watch::channel(false);
        let shared = self.shared.clone();
        let handler = move |req| {
            let shared = shared.clone();
            async move {
                let mut r = handle(&shared, req);
                for (k, v) in &shared.headers {
                    r.headers_mut().insert(k.clone(), v.clone());
                }
                r
            }
        };
        let opts = ServerOptions {
            read_timeout: self.read_timeout,
            tls: self.tls.clone(),
        };
        let task = tokio::spawn(server::serve(listener, opts, handler, rx));
        self.server = Some((tx, task));
        Ok(())
    }

    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        self.shared
            .store
            .lock()
            .unwrap()
            .write(batch, Instant::now());
        Ok(())
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some((tx, task)) = self.server.take() {
            let _ = tx.send(true);
            let _ = task.await;
        }
        Ok(())
    }
}

impl Drop for PrometheusClient {
    /// A reload drops the output without `close`: stop serving so the new one can bind.
    fn drop(&mut self) {
        if let Some((tx, _)) = &self.server {
            let _ = tx.send(true);
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Resp {
    server::respond(status, "text/plain; charset=utf-8", text)
}

/// Which format the client prefers: OpenMetrics when it ranks it at least as high as text.
fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    let Some(v) = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        parts.next().is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
            && !parts.any(|p| p.replace(' ', "") == "q=0")
    })
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Resp {
    if !shared.ip_range.is_empty() {
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
        if !peer.is_some_and(|ip| shared.ip_range.iter().any(|c| c.contains(ip))) {
            return plain(StatusCode::FORBIDDEN, "forbidden\n");
        }
    }
    if let Some((user, pass)) = &shared.auth {
        let ok = server::basic_auth(&req)
            .is_some_and(|(u, p)| server::secret_eq(&u, user) & server::secret_eq(&p, pass));
        if !ok {
            let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sonde\""),
            );
            return r;
        }
    }
    if req.uri().path() != shared.path {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let format = negotiate(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let gzip = accepts_gzip(&req);
    let (body, zipped) = {
        let mut store = shared.store.lock().unwrap();
        store.expire(Instant::now());
        store.render(format, gzip)
    };
    // What changes on every scrape is rendered after the cached part: the process metrics
    // and OpenMetrics' terminator. A gzip stream may have several members, so the cached gzip
    // is followed by a small gzip of the tail.
    let mut tail = Vec::new();
    if shared.process {
        process::render(&mut tail, format);
    }
    if format == Format::OpenMetrics {
        tail.extend_from_slice(b"# EOF\n");
    }
    let body: Bytes = match (zipped, tail.is_empty()) {
        (Some(z), true) => z,
        (Some(z), false) => [&z[..], &gzip_bytes(&tail)].concat().into(),
        (None, true) => body,
        (None, false) => [&body[..], &tail].concat().into(),
    };
    let mut r = server::respond(StatusCode::OK, format.content_type(), body);
    if gzip {
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    r
}

/// The standard `process_*` metrics of the agent itself, from /proc/self.
mod process {
    use super::Format;

    fn stat() -> Option<(f64, f64, f64, f64)> {
        let s = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which may contain spaces, in parentheses.
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        // SAFETY: sysconf has no preconditions.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK) as f64,
                libc::sysconf(libc::_SC_PAGESIZE) as f64,
            )
        };
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
        // Indexes are the field numbers of proc(5) minus 3.
        let cpu = (num(11)? + num(12)?) / tick;
        let start_ticks = num(19)?;
        let vsize = num(20)?;
        let rss = num(21)? * page;
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        Some((cpu, btime + start_ticks / tick, vsize, rss))
    }

    pub fn render(out: &mut Vec<u8>, format: Format) {
        use std::io::Write;
        let Some((cpu, start, vsize, rss)) = stat() else {
            return;
        };
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let counter = if format == Format::OpenMetrics {
            "# TYPE process_cpu_seconds counter\n"
        } else {
            "# TYPE process_cpu_seconds_total counter\n"
        };
        let _ = write!(
            out,
            "{counter}process_cpu_seconds_total {cpu}\n\
             # TYPE process_open_fds gauge\nprocess_open_fds {fds}\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n\
             # TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {start}\n\
             # TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes {vsize}\n"
        );
    }
}

fn build(mut table: toml::Table, _ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let tls = TlsServerConfig::take(&mut table)?.build()?;
    let cfg: Config = parse_config(table)?;
    let bad = |key: &str, message: String| {
        BuildError::Config(ConfigError {
            path: vec![key.to_string()],
            message,
        })
    };
    if !matches!(cfg.metric_version, 1 | 2) {
        return Err(bad("metric_version", "expected 1 or 2".into()));
    }
    if !cfg.path.starts_with('/') {
        return Err(bad("path", format!("{:?} must start with '/'", cfg.path)));
    }
    server::check_address(&cfg.listen).map_err(|m| bad("listen", m))?;
    let mut ip_range = Vec::new();
    for (i, r) in cfg.ip_range.iter().enumerate() {
        let c = Cidr::parse(r.trim()).ok_or_else(|| {
            BuildError::Config(ConfigError {
                path: vec!["ip_range".into(), i.to_string()],
                message: format!("{r:?} is not an IP network such as \"192.168.0.0/24\""),
            })
        })?;
        ip_range.push(c);
    }
    for (i, c) in cfg.collectors_exclude.iter().enumerate() {
        if !matches!(c.as_str(), "gocollector" | "process") {
            return Err(BuildError::Config(ConfigError {
                path: vec!["collectors_exclude".into(), i.to_string()],
                message: format!("{c:?}: expected \"gocollector\" or \"process\""),
            }));
        }
    }
    if cfg.name_sanitization != "legacy" {
        let message = if cfg.name_sanitization == "utf8" {
            "\"utf8\" is not supported yet: names are sanitized to Prometheus' ASCII rules \
             (\"legacy\")"
                .to_string()
        } else {
            format!(
                "{:?}: expected \"legacy\" or \"utf8\"",
                cfg.name_sanitization
            )
        };
        return Err(bad("name_sanitization", message));
    }
    let mut headers = Vec::new();
    for (k, v) in &cfg.http_headers {
        let name = header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad("http_headers", format!("{k:?} is not a valid header name")))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            bad(
                "http_headers",
                format!("the value of {k:?} is not a valid header value"),
            )
        })?;
        headers.push((name, value));
    }
    let type_globs = |key: &str, pats: &[String]| -> Result<Vec<glob::Pattern>, BuildError> {
        pats.iter()
            .enumerate()
            .map(|(i, p)| {
                glob::Pattern::new(p).map_err(|e| {
                    BuildError::Config(ConfigError {
                        path: vec!["metric_types".into(), key.into(), i.to_string()],
                        message: format!("{p:?}: {e}"),
                    })
                })
            })
            .collect()
    };
    let counter_types = type_globs("counter", &cfg.metric_types.counter)?;
    let gauge_types = type_globs("gauge", &cfg.metric_types.gauge)?;
    let auth = match (cfg.basic_username, cfg.basic_password) {
        (None, None) => None,
        (u, p) => Some((u.unwrap_or_default(), p.unwrap_or_default())),
    };
    let store = Store::new(StoreOptions {
        metric_version: cfg.metric_version,
        string_as_label: cfg.string_as_label,
        export_timestamp: cfg.export_timestamp,
        expiration: (!cfg.expiration_interval.is_zero()).then(|| cfg.expiration_interval.get()),
        counter_types,
        gauge_types,
    });
    Ok(Box::new(PrometheusClient {
        shared: Arc::new(Shared {
            store: Mutex::new(store),
            path: cfg.path,
            auth,
            ip_range,
            process: !cfg.collectors_exclude.iter().any(|c| c == "process"),
            headers,
        }),
        listen: cfg.listen,
        read_timeout: cfg.read_timeout.get(),
        tls,
        bound: None,
        server: None,
    }))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "prometheus_client",
    description: "Serve metrics on an HTTP endpoint for Prometheus to scrape",
    sample: include_str!("sample.toml"),
    format: Fmt::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write as _};

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("192.168.0.0/24").unwrap();
        assert!(c.contains("192.168.0.77".parse().unwrap()));
        assert!(!c.contains("192.168.1.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.0.9".parse().unwrap()));
        let any = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
        let one = Cidr::parse("10.0.0.1").unwrap();
        assert!(one.contains("10.0.0.1".parse().unwrap()));
        assert!(!one.contains("10.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        // ip_range entries in IPv4-mapped IPv6 form match IPv4 clients and mapped peers.
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.1.2.3".parse().unwrap()));
        assert!(mapped.contains("::ffff:10.200.0.1".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        assert!(!mapped.contains("::ffff:11.0.0.1".parse().unwrap()));
        let host = Cidr::parse("::ffff:127.0.0.1").unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(host.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert!(!host.contains("::1".parse().unwrap()));
        // A prefix that masks away the ::ffff: part is an IPv6 network: no IPv4 client matches.
        let wide = Cidr::parse("::ffff:10.0.0.0/64").unwrap();
        assert!(!wide.contains("10.0.0.1".parse().unwrap()));
        assert!(wide.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("::ffff:10.0.0.0/129").is_none());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }

    #[test]
    fn accept_negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(negotiate(Some("text/plain")), Format::Text);
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(
            negotiate(Some("text/plain;q=0.9,application/openmetrics-text;q=0.5")),
            Format::Text
        );
    }

    fn build_from(toml_text: &str) -> Result<Box<dyn Output>, BuildError> {
        build(toml::from_str(toml_text).unwrap(), &BuildContext::default())
    }

    #[test]
    fn config_errors_name_the_key() {
        for (text, key) in [
            ("metric_version = 3", "metric_version"),
            ("ip_range = ['10.0.0.0/8', 'x']", "ip_range"),
            ("collectors_exclude = ['gc']", "collectors_exclude"),
            ("path = 'metrics'", "path"),
            ("tls_cert = '/c.pem'", ""),
        ] {
            match build_from(text) {
                Err(BuildError::Config(e)) => assert_eq!(e.path[0], key, "{text}"),
                Err(BuildError::Other(_)) => assert_eq!(key, "", "{text}"),
                Ok(_) => panic!("{text} must be refused"),
            }
        }
        assert!(
            build_from(
                include_str!("sample.toml")
                    .replace("[[outputs.prometheus_client]]", "")
                    .as_str()
            )
            .is_ok()
        );
    }

    /// A raw HTTP/1.1 GET; returns (status, headers, body).
    fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head[9..12].parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// http_headers on every answer (a refused one too), metric_types overriding the type.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_headers_and_metric_types() {
        let port = free_port();
        let mut out = build_from(&format!(
            "listen = '127.0.0.1:{port}'\ncollectors_exclude = ['process']\n\
             http_headers = {{ 'X-Special-Header' = 'Special-Value' }}\n\
             [metric_types]\ncounter = ['cpu_time_*']\ngauge = ['disk_*']"
        ))
        .unwrap();
        out.connect().await.unwrap();
        out.write(&[
            Metric::new("cpu", 0)
                .with_kind(crate::model::ValueType::Untyped)
                .with_field("time_idle", 12.5)
                .with_field("usage_idle", 1.0),
            Metric::new("disk", 0)
                .with_kind(crate::model::ValueType::Counter)
                .with_field("free", 3u64),
        ])
        .await
        .unwrap();
        let (ok, missing) = tokio::task::spawn_blocking(move || {
            (get(port, "/metrics", &[]), get(port, "/nope", &[]))
        })
        .await
        .unwrap();
        assert_eq!(ok.0, 200);
        assert!(ok.1.contains("x-special-header: Special-Value"), "{}", ok.1);
        assert_eq!(missing.0, 404);
        assert!(
            missing.1.contains("x-special-header: Special-Value"),
            "{}",
            missing.1
        );
        let body = String::from_utf8(ok.2).unwrap();
        assert!(body.contains("# TYPE cpu_time_idle counter\n"), "{body}");
        assert!(body.contains("# TYPE cpu_usage_idle untyped\n"), "{body}");
        assert!(body.contains("# TYPE disk_free gauge\n"), "{body}");
        out.close().await.unwrap();
    }

    #[test]
    fn name_sanitization_utf8_is_refused_until_supported() {
        let Err(BuildError::Config(e)) = build_from("name_sanitization = 'utf8'") else {
            panic!("utf8 accepted")
        };
        assert_eq!(e.path, ["name_sanitization"]);
        assert!(e.message.contains("not supported yet"), "{}", e.message);
        assert!(build_from("name_sanitization = 'legacy'").is_ok());
        assert!(build_from("name_sanitization = 'ascii'").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_scrapes_with_auth_gzip_and_openmetrics() {
        let port = free_port();
        let mut out = build_from(&format!(
            "listen = '127.0.0.1:{port}'\nbasic_username = 'u'\nbasic_password = 'p'\n\
             collectors_exclude = ['process']"
        ))
        .unwrap();
        out.connect().await.unwrap();
        out.write(&[Metric::new("cpu", 0)
            .with_kind(crate::model::ValueType::Gauge)
            .with_tag("cpu", "cpu0")
            .with_field("usage_idle", 42.5)])
            .await
            .unwrap();
        let auth = ("Authorization", "Basic dTpw"); // u:p
        let r = tokio::task::spawn_blocking(move || {
            (
                get(port, "/metrics", &[]),
                get(port, "/metrics", &[auth]),
                get(port, "/other", &[auth]),
                get(port, "/metrics", &[auth, ("Accept-Encoding", "gzip")]),
                get(
                    port,
                    "/metrics",
                    &[
                        auth,
                        ("Accept", "application/openmetrics-text; version=1.0.0"),
                    ],
                ),
            )
        })
        .await
        .unwrap();
        let (unauth, ok, missing, zipped, om) = r;
        assert_eq!(unauth.0, 401);
        assert_eq!(ok.0, 200);
        assert!(ok.1.contains("text/plain; version=0.0.4"));
        let want = "# HELP cpu_usage_idle Telegraf collected metric\n# TYPE cpu_usage_idle gauge\ncpu_usage_idle{cpu=\"cpu0\"} 42.5\n";
        assert_eq!(String::from_utf8(ok.2).unwrap(), want);
        assert_eq!(missing.0, 404);
        assert!(
            zipped
                .1
                .to_ascii_lowercase()
                .contains("content-encoding: gzip")
        );
        let mut unzipped = String::new();
        flate2::read::MultiGzDecoder::new(&zipped.2[..])
            .read_to_string(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, want);
        assert!(om.1.contains("application/openmetrics-text"));
        assert_eq!(String::from_utf8(om.2).unwrap(), format!("{want}# EOF\n"));
        out.close().await.unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ip_range_and_process_collector() {
        let port = free_port();
        let mut out = build_from(&format!(
            "listen = '127.0.0.1:{port}'\nip_range = ['10.0.0.0/8']"
        ))
        .unwrap();
        out.connect().await.unwrap();
        let denied = tokio::task::spawn_blocking(move || get(port, "/metrics", &[]))
            .await
            .unwrap();
        assert_eq!(denied.0, 403);
        drop(out);

        let port = free_port();
        let mut out = build_from(&format!(
            "listen = '127.0.0.1:{port}'\nip_range = ['127.0.0.0/8']"
        ))
        .unwrap();
        out.connect().await.unwrap();
        let r = tokio::task::spawn_blocking(move || {
            get(port, "/metrics", &[("Accept-Encoding", "gzip")])
        })
        .await
        .unwrap();
        assert_eq!(r.0, 200);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&r.2[..])
            .read_to_string(&mut text)
            .unwrap();
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .expect("process metrics")
            .parse()
            .unwrap();
        assert!(rss > 1e6, "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ip_range_in_ipv4_mapped_form_admits_ipv4_clients() {
        // On a dual-stack listener an IPv4 client's address is ::ffff:127.0.0.1; on an IPv4
        // listener it is 127.0.0.1. An ip_range written in either form admits both.
        for (listen, range) in [
            ("127.0.0.1", "::ffff:127.0.0.0/104"),
            ("[::]", "::ffff:127.0.0.1/128"),
            ("[::]", "127.0.0.0/8"),
        ] {
            let port = free_port();
            let mut out = build_from(&format!(
                "listen = '{listen}:{port}'\nip_range = ['{range}']"
            ))
            .unwrap();
            out.connect().await.unwrap();
            let r = tokio::task::spawn_blocking(move || get(port, "/metrics", &[]))
                .await
                .unwrap();
            assert_eq!(r.0, 200, "listen {listen}, ip_range {range}");
            drop(out);
        }
        let port = free_port();
        let mut out = build_from(&format!(
            "listen = '[::]:{port}'\nip_range = ['::ffff:10.0.0.0/104']"
        ))
        .unwrap();
        out.connect().await.unwrap();
        let r = tokio::task::spawn_blocking(move || get(port, "/metrics", &[]))
            .await
            .unwrap();
        assert_eq!(r.0, 403);
    }
}
