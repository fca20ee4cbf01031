//! `inputs.http_listener_v2`: Telegraf's generic HTTP write listener. Requests to one of
//! `paths` with one of `methods` carry metrics in any `data_format`, in the body (gzip or
//! snappy encoded, as Telegraf reads them) or in the query string (`data_source = "query"`).
//!
//! A request is answered `http_success_code` only once every output buffer that takes its
//! metrics has stored them; a full buffer is answered 429 with Retry-After, a buffer that
//! cannot store them 503, so a pushing job (a k6 run, a batch job that used to push to a
//! Prometheus pushgateway) can retry instead of losing data.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::codec::Parser;
use crate::common::lp_listener::WriteCore;
use crate::common::server::{self, BodyError, Resp, ServerOptions, TlsServerConfig};
use crate::common::unix_socket::{self, SocketFile};
use crate::config_types::{Duration as Dur, Size};
use crate::model::{Metric, now_ns};
use crate::plugin::{BuildContext, InputPlugin, SendError, ServiceContext, ServiceInput};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

/// Telegraf's default and the value `max_body_size = 0` stands for: 500 MiB.
const DEFAULT_MAX_BODY: u64 = 500 * 1024 * 1024;
/// The tag `path_tag = true` adds.
const PATH_TAG: &str = "http_listener_v2_path";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_address")]
    service_address: String,
    /// Unix sockets only; accepted for TCP with a warning (Telegraf ignores it there too).
    #[serde(default)]
    socket_mode: String,
    paths: Option<Vec<String>>,
    /// Telegraf's older single-path option; added to `paths`.
    path: Option<String>,
    #[serde(default)]
    path_tag: bool,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    /// Headers added to every response.
    #[serde(default)]
    http_headers: BTreeMap<String, String>,
    #[serde(default)]
    http_success_code: u16,
    #[serde(default = "default_timeout")]
    read_timeout: Dur,
    #[serde(default = "default_timeout")]
    write_timeout: Dur,
    #[serde(default)]
    max_body_size: Size,
    #[serde(default = "default_source")]
    data_source: String,
    basic_username: Option<String>,
    basic_password: Option<String>,
    /// Request header name → tag name.
    #[serde(default)]
    http_header_tags: BTreeMap<String, String>,
}

fn default_address() -> String {
    ":8080".into()
}
fn default_methods() -> Vec<String> {
    vec!["POST".into(), "PUT".into()]
}
fn default_timeout() -> Dur {
    Dur::from_secs(10)
}
fn default_source() -> String {
    "body".into()
}

/// Where a request's metrics are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Body,
    Query,
}

/// Where the listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    Tcp(String),
    Unix(std::path::PathBuf),
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, SocketFile),
}

struct Settings {
    address: String,
    paths: Vec<String>,
    path_tag: bool,
    methods: Vec<String>,
    response_headers: Vec<(HeaderName, HeaderValue)>,
    success: StatusCode,
    source: Source,
    auth: Option<(String, String)>,
    header_tags: Vec<(HeaderName, String)>,
}

struct Listener {
    listen: Address,
    socket_mode: Option<u32>,
    settings: Settings,
    core_args: (u64, Dur, Dur),
    id: String,
    parser: Arc<dyn Parser>,
    tls: Option<Arc<rustls::ServerConfig>>,
    bound: Option<Bound>,
}

impl Listener {
    async fn bind(&self) -> anyhow::Result<Bound> {
        Ok(match &self.listen {
            Address::Tcp(a) => Bound::Tcp(server::bind(a).await?),
            Address::Unix(p) => {
                let (l, file) = unix_socket::bind_stream(p, self.socket_mode)?;
                Bound::Unix(l, file)
            }
        })
    }
}

struct State {
    core: WriteCore,
    settings: Settings,
    parser: Arc<dyn Parser>,
}

#[async_trait]
impl ServiceInput for Listener {
    async fn start(&mut self) -> anyhow::Result<()> {
        self.bound = Some(self.bind().await?);
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let bound = match self.bound.take() {
            Some(b) => b,
            None => self.bind().await?,
        };
        let Listener {
            settings,
            core_args: (max_body, read_timeout, write_timeout),
            id,
            parser,
            tls,
            ..
        } = *self;
        tracing::info!(input = %id, address = %settings.address, "http_listener_v2 listening");
        let core = WriteCore::new(
            "internal_http_listener_v2",
            &id,
            &settings.address,
            ctx.sink,
            max_body,
            0,
            read_timeout.get(),
            write_timeout.get(),
        );
        let opts = ServerOptions {
            read_timeout: read_timeout.get(),
            tls,
        };
        let state = Arc::new(State {
            core,
            settings,
            parser,
        });
        let handler = move |req| {
            let st = state.clone();
            async move { handle(&st, req).await }
        };
        match bound {
            Bound::Tcp(l) => server::serve(l, opts, handler, ctx.shutdown).await,
            Bound::Unix(l, file) => {
                server::serve_unix(l, opts, handler, ctx.shutdown).await;
                drop(file);
            }
        }
        Ok(())
    }
}

fn json_error(status: StatusCode, message: &str) -> Resp {
    server::respond(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

async fn handle(st: &State, req: Request<Incoming>) -> Resp {
    st.core.requests.incr();
    let mut resp = route(st, req).await;
    if resp.status().is_client_error() || resp.status().is_server_error() {
        st.core.rejected_requests.incr();
    }
    for (k, v) in &st.settings.response_headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

async fn route(st: &State, req: Request<Incoming>) -> Resp {
    let s = &st.settings;
    if let Some((user, pass)) = &s.auth {
        let ok = server::basic_auth(&req)
            .is_some_and(|(u, p)| server::secret_eq(&u, user) && server::secret_eq(&p, pass));
        if !ok {
            let mut r = server::respond(StatusCode::UNAUTHORIZED, "text/plain", "Unauthorized.\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sonde\""),
            );
            return r;
        }
    }
    let path = req.uri().path().to_string();
    if !s.paths.contains(&path) {
        return server::respond(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n");
    }
    if !s.methods.iter().any(|m| m == req.method().as_str()) {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "http: method not allowed");
    }
    st.core.writes.incr();
    let header_tags: Vec<(String, String)> = s
        .header_tags
        .iter()
        .filter_map(|(h, tag)| {
            let v = req.headers().get(h)?.to_str().ok()?;
            (!v.is_empty()).then(|| (tag.clone(), v.to_string()))
        })
        .collect();
    let payload = match s.source {
        Source::Query => {
            let q = req.uri().query().unwrap_or("");
            match query_unescape(q) {
                Some(q) => server::Body::from(q.into_bytes()),
                None => return json_error(StatusCode::BAD_REQUEST, "http: bad query escape"),
            }
        }
        Source::Body => match read_body(st, req).await {
            Ok(b) => b,
            Err(r) => return r,
        },
    };
    let mut metrics = Vec::with_capacity(payload.len() / 64 + 1);
    let errors = st.parser.parse(&payload, now_ns(), &mut metrics);
    if !header_tags.is_empty() || s.path_tag {
        for m in &mut metrics {
            for (k, v) in &header_tags {
                m.add_tag(k.as_str(), v.as_str());
            }
            if s.path_tag {
                m.add_tag(PATH_TAG, path.as_str());
            }
        }
    }
    if !metrics.is_empty()
        && let Err(r) = send(st, metrics).await
    {
        return r;
    }
    match errors.first() {
        None => server::empty(s.success),
        Some(first) => {
            st.core.parse_errors.add(errors.len() as i64);
            let msg = format!(
                "http: bad request: {first}; {} bad line(s) or record(s) dropped, the rest were accepted",
                errors.len()
            );
            tracing::debug!(error = %msg, "http_listener_v2: parse error");
            json_error(StatusCode::BAD_REQUEST, &msg)
        }
    }
}

/// Reads the body: gzip (by `server::read_body`) or snappy (block format, as Telegraf and
/// Prometheus remote write use it), bounded by `max_body_size` after decoding.
async fn read_body(st: &State, mut req: Request<Incoming>) -> Result<server::Body, Resp> {
    let limit = st.core.max_body;
    let snappy = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"snappy"));
    if snappy {
        req.headers_mut().remove(header::CONTENT_ENCODING);
    }
    let body = match server::read_body(req, limit, st.core.read_timeout).await {
        Ok(b) => b,
        Err(e) => {
            let (status, msg) = match e {
                BodyError::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "http: request body too large".to_string(),
                ),
                e => e.status(limit),
            };
            return Err(json_error(status, &msg));
        }
    };
    if !snappy {
        return Ok(body);
    }
    let bad = |m: String| json_error(StatusCode::BAD_REQUEST, &m);
    match snap::raw::decompress_len(&body) {
        Ok(n) if n > limit => Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "http: request body too large",
        )),
        Ok(_) => snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map(server::Body::from)
            .map_err(|e| bad(format!("bad snappy body: {e}"))),
        Err(e) => Err(bad(format!("bad snappy body: {e}"))),
    }
}

/// Hands the metrics to the pipeline; the response when they were not all stored.
async fn send(st: &State, metrics: Vec<Metric>) -> Result<(), Resp> {
    let failed = |status: StatusCode, m: &str| {
        let mut r = json_error(status, m);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    match tokio::time::timeout(st.core.write_timeout, st.core.sink.send(metrics)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(SendError::Full {
            reason,
            retry_after,
        })) => {
            let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, &reason);
            r.headers_mut()
                .insert(header::RETRY_AFTER, server::retry_after_value(retry_after));
            Err(r)
        }
        Ok(Err(SendError::Failed(m))) => Err(failed(StatusCode::SERVICE_UNAVAILABLE, &m)),
        Ok(Err(SendError::Closed)) => Err(failed(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        )),
        Err(_) => Err(failed(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline did not take the metrics within write_timeout",
        )),
    }
}

/// Go's `url.QueryUnescape`: `%XX` escapes and `+` as a space; `None` for a bad escape or
/// a result that is not UTF-8.
fn query_unescape(q: &str) -> Option<String> {
    let b = q.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
                let (h, l) = (hex(b.get(i + 1))?, hex(b.get(i + 2))?);
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn bad(key: &str, message: impl Into<String>) -> BuildError {
    BuildError::Config(ConfigError {
        path: vec![key.into()],
        message: message.into(),
    })
}

/// Telegraf's `service_address`: `tcp://host:port`, `host:port` (TCP) or `unix:///path`.
fn parse_address(addr: &str) -> Result<Address, BuildError> {
    let rest = match addr.split_once("://") {
        None => addr,
        Some(("tcp", rest)) => rest,
        Some(("unix", path)) if !path.is_empty() => {
            return Ok(Address::Unix(path.into()));
        }
        Some(("unix", _)) => return Err(bad("service_address", "unix:// needs a socket path")),
        Some((other, _)) => {
            return Err(bad(
                "service_address",
                format!("unknown protocol {other:?} (expected tcp:// or unix://)"),
            ));
        }
    };
    server::check_address(rest).map_err(|m| bad("service_address", m))?;
    Ok(Address::Tcp(rest.to_string()))
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsServerConfig::take(&mut table)?.build()?;
    let cfg: Config = parse_config(table)?;
    let parser = ctx
        .parser
        .clone()
        .ok_or_else(|| anyhow::anyhow!("http_listener_v2: no data_format parser was given"))?;
    let listen = parse_address(&cfg.service_address)?;
    let socket_mode =
        unix_socket::parse_mode(&cfg.socket_mode).map_err(|m| bad("socket_mode", m))?;
    if socket_mode.is_some() && !matches!(listen, Address::Unix(_)) {
        tracing::warn!(
            "{}: socket_mode has no effect: it applies to unix sockets only",
            ctx.id
        );
    }
    let mut paths = cfg.paths.clone().unwrap_or_default();
    if let Some(p) = &cfg.path {
        tracing::warn!(
            "{}: the option path is deprecated; use paths = [{p:?}]",
            ctx.id
        );
        if !paths.contains(p) {
            paths.push(p.clone());
        }
    }
    if cfg.paths.is_none() && cfg.path.is_none() {
        paths.push("/telegraf".into());
    }
    if paths.is_empty() {
        return Err(bad("paths", "must list at least one path"));
    }
    if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(bad("paths", format!("{p:?} must start with '/'")));
    }
    if cfg.methods.is_empty() {
        return Err(bad("methods", "must list at least one HTTP method"));
    }
    for m in &cfg.methods {
        if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
            return Err(bad(
                "methods",
                format!("{m:?} is not an HTTP method (write it in capitals, e.g. \"POST\")"),
            ));
        }
    }
    let success = match cfg.http_success_code {
        0 => StatusCode::NO_CONTENT,
        c => match StatusCode::from_u16(c) {
            Ok(s) if s.is_success() => s,
            _ => {
                return Err(bad(
                    "http_success_code",
                    format!("{c} is not a 2xx HTTP status"),
                ));
            }
        },
    };
    let source = match cfg.data_source.to_ascii_lowercase().as_str() {
        "body" | "" => Source::Body,
        "query" => Source::Query,
        other => {
            return Err(bad(
                "data_source",
                format!("must be \"body\" or \"query\", not {other:?}"),
            ));
        }
    };
    // Empty values mean "not set" (a config filled from unset environment variables).
    let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let auth = match (given(&cfg.basic_username), given(&cfg.basic_password)) {
        (None, None) => None,
        (Some(u), Some(p)) => Some((u, p)),
        _ => {
            return Err(bad(
                "basic_username",
                "basic_username and basic_password must both be given (and not empty)",
            ));
        }
    };
    let mut response_headers = Vec::new();
    for (k, v) in &cfg.http_headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad("http_headers", format!("{k:?} is not a header name")))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| bad("http_headers", format!("{v:?} is not a header value")))?;
        response_headers.push((name, value));
    }
    let mut header_tags = Vec::new();
    for (k, tag) in &cfg.http_header_tags {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad("http_header_tags", format!("{k:?} is not a header name")))?;
        if tag.is_empty() {
            return Err(bad(
                "http_header_tags",
                format!("the tag name for header {k:?} is empty"),
            ));
        }
        header_tags.push((name, tag.clone()));
    }
    // Telegraf's floors: 0 means the default, timeouts under a second mean 10 s.
    let max_body = if cfg.max_body_size.0 == 0 {
        DEFAULT_MAX_BODY
    } else {
        cfg.max_body_size.0
    };
    let floor = |d: Dur| {
        if d.get() < std::time::Duration::from_secs(1) {
            default_timeout()
        } else {
            d
        }
    };
    Ok(InputPlugin::Service(Box::new(Listener {
        listen,
        socket_mode,
        settings: Settings {
            address: cfg.service_address.clone(),
            paths,
            path_tag: cfg.path_tag,
            methods: cfg.methods,
            response_headers,
            success,
            source,
            auth,
            header_tags,
        },
        core_args: (max_body, floor(cfg.read_timeout), floor(cfg.write_timeout)),
        id: ctx.id.clone(),
        parser,
        tls,
        bound: None,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "http_listener_v2",
    description: "Accept metrics in any data format over HTTP (body or query string)",
    sample: include_str!("sample.toml"),
    format: Format::Parser("influx"),
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::lp_listener::tests::req;
    use crate::plugin::ServiceContext;
    use std::time::Duration;

    struct Running {
        addr: String,
        rx: flume::Receiver<Vec<Metric>>,
        _stop: tokio::sync::watch::Sender<bool>,
    }

    async fn start(toml_text: &str, format: &str) -> Running {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let table: toml::Table =
            toml::from_str(&format!("service_address = \"tcp://{addr}\"\n{toml_text}")).unwrap();
        let pc = crate::codec::ParserConfig {
            data_format: Some(format.into()),
            ..Default::default()
        };
        let ctx = BuildContext {
            parser: Some(
                crate::codec::build_parser_with_name(&pc, "influx", Some("http_listener_v2"))
                    .unwrap(),
            ),
            ..Default::default()
        };
        let InputPlugin::Service(mut svc) = build(table, &ctx).unwrap() else {
            panic!()
        };
        svc.start().await.unwrap();
        let (sink, rx) = crate::plugin::test_sink(16);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(svc.run(ServiceContext {
            sink,
            interval: Duration::from_secs(10),
            shutdown,
        }));
        Running {
            addr,
            rx,
            _stop: stop,
        }
    }

    #[tokio::test]
    async fn body_paths_methods_tags_and_errors() {
        let r = start(
            "paths = [\"/a\", \"/b\"]\npath_tag = true\nhttp_success_code = 200\n\
             http_header_tags = {\"X-Job\" = \"job\"}\nhttp_headers = {\"X-Served-By\" = \"sonde\"}",
            "influx",
        )
        .await;
        let (st, text) = req(
            &r.addr,
            "POST",
            "/b",
            &[("X-Job", "nightly")],
            b"cpu,host=a v=1 1700000000000000000\n".to_vec(),
        )
        .await;
        assert_eq!(st, 200, "{text}");
        assert!(
            text.to_ascii_lowercase().contains("x-served-by: sonde"),
            "{text}"
        );
        let got = r.rx.try_recv().expect("acknowledged means queued");
        assert_eq!(got[0].tag("job"), Some("nightly"));
        assert_eq!(got[0].tag(PATH_TAG), Some("/b"));
        assert_eq!(got[0].time, 1_700_000_000_000_000_000);

        assert_eq!(
            req(&r.addr, "POST", "/c", &[], b"x v=1".to_vec()).await.0,
            404
        );
        assert_eq!(req(&r.addr, "GET", "/a", &[], vec![]).await.0, 405);
        let (st, text) = req(&r.addr, "POST", "/a", &[], b"ok v=1\nbad line\n".to_vec()).await;
        assert_eq!(st, 400);
        assert!(text.contains("1 bad line(s)"), "{text}");
        assert_eq!(r.rx.try_recv().unwrap()[0].name, "ok");
    }

    #[tokio::test]
    async fn gzip_snappy_query_and_auth() {
        let r = start(
            "data_source = \"query\"\nbasic_username = \"u\"\nbasic_password = \"p\"\nmethods = [\"GET\"]",
            "influx",
        )
        .await;
        // "dTo=" is "u:" (no password), "dTpw" is "u:p".
        let (st, _) = req(&r.addr, "GET", "/telegraf?m%20v=1", &[], vec![]).await;
        assert_eq!(st, 401);
        let (st, _) = req(
            &r.addr,
            "GET",
            "/telegraf?m%20v=1",
            &[("Authorization", "Basic dTo=")],
            vec![],
        )
        .await;
        assert_eq!(st, 401);
        assert!(r.rx.try_recv().is_err());
        let (st, text) = req(
            &r.addr,
            "GET",
            "/telegraf?m,t=x%20v=2",
            &[("Authorization", "Basic dTpw")],
            vec![],
        )
        .await;
        assert_eq!(st, 204, "{text}");
        let got = r.rx.try_recv().unwrap();
        assert_eq!(got[0].tag("t"), Some("x"));

        let r = start("max_body_size = 100", "json").await;
        let json = br#"{"a": 1, "b": 2.5}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, json).unwrap();
        let (st, t) = req(
            &r.addr,
            "POST",
            "/telegraf",
            &[("Content-Encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
        assert_eq!(st, 204, "{t}");
        let got = r.rx.try_recv().unwrap();
        assert_eq!(got[0].name, "http_listener_v2");
        let sn = snap::raw::Encoder::new().compress_vec(json).unwrap();
        let (st, t) = req(
            &r.addr,
            "POST",
            "/telegraf",
            &[("Content-Encoding", "snappy")],
            sn,
        )
        .await;
        assert_eq!(st, 204, "{t}");
        assert!(r.rx.try_recv().is_ok());
        let (st, _) = req(
            &r.addr,
            "POST",
            "/telegraf",
            &[("Content-Encoding", "snappy")],
            b"\xff\xff\xff\xff\x0fgarbage".to_vec(),
        )
        .await;
        assert!(st == 400 || st == 413, "{st}");
        let (st, _) = req(&r.addr, "POST", "/telegraf", &[], vec![b' '; 200]).await;
        assert_eq!(st, 413);
        let (st, _) = req(
            &r.addr,
            "POST",
            "/telegraf",
            &[("Content-Encoding", "br")],
            b"xx".to_vec(),
        )
        .await;
        assert_eq!(st, 415);
    }

    #[tokio::test]
    async fn serves_a_unix_socket() {
        use std::io::{Read, Write};
        let path = std::env::temp_dir().join(format!("sonde-hl2-{}.sock", std::process::id()));
        let table: toml::Table = toml::from_str(&format!(
            "service_address = \"unix://{}\"\nsocket_mode = \"600\"",
            path.display()
        ))
        .unwrap();
        let ctx = BuildContext {
            parser: Some(crate::codec::build_parser(&Default::default(), "influx").unwrap()),
            ..Default::default()
        };
        let InputPlugin::Service(mut svc) = build(table, &ctx).unwrap() else {
            panic!()
        };
        svc.start().await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (sink, rx) = crate::plugin::test_sink(4);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(svc.run(ServiceContext {
            sink,
            interval: Duration::from_secs(10),
            shutdown,
        }));
        let p = path.clone();
        let text = tokio::task::spawn_blocking(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            let body = "over_unix v=1i";
            write!(
                s,
                "POST /telegraf HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(text.starts_with("HTTP/1.1 204"), "{text}");
        assert_eq!(rx.try_recv().unwrap()[0].name, "over_unix");
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        assert!(!path.exists(), "the socket file is removed on stop");
    }

    #[test]
    fn options_are_checked() {
        let ctx = BuildContext {
            parser: Some(crate::codec::build_parser(&Default::default(), "influx").unwrap()),
            ..Default::default()
        };
        let err = |t: &str| match build(toml::from_str(t).unwrap(), &ctx) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{t} accepted"),
        };
        assert!(err("service_address = \"udp://:1\"").contains("unknown protocol"));
        assert!(err("socket_mode = \"abc\"").contains("octal"));
        assert!(err("service_address = \"8080\"").contains("host:port"));
        assert!(err("data_source = \"header\"").contains("body"));
        assert!(err("http_success_code = 404").contains("2xx"));
        assert!(err("basic_username = \"u\"").contains("both"));
        assert!(err("basic_username = \"u\"\nbasic_password = \"\"").contains("both"));
        let no_auth = "basic_username = \"\"\nbasic_password = \"\"";
        assert!(build(toml::from_str(no_auth).unwrap(), &ctx).is_ok());
        assert!(err("methods = [\"post\"]").contains("capitals"));
        assert!(err("paths = []").contains("at least one"));
        assert!(build(toml::from_str("path = \"/old\"").unwrap(), &ctx).is_ok());
        assert_eq!(query_unescape("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(query_unescape("%zz"), None);
    }

    proptest::proptest! {
        /// Any query string: decoded or refused, never a panic; plain text comes back as is.
        #[test]
        fn query_unescape_never_panics(q: String) {
            let _ = query_unescape(&q);
            if !q.contains(['%', '+']) {
                proptest::prop_assert_eq!(query_unescape(&q), Some(q.clone()));
            }
        }
    }
}
