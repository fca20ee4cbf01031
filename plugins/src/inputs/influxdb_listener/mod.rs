//! `inputs.influxdb_listener`: accepts InfluxDB 1.x writes (`/write`), answers `/ping` and the
//! `/query` statements clients send before writing (`SHOW DATABASES`, `CREATE DATABASE`).
//!
//! A 204 is sent only once the batch is in the pipeline's queue, so an acknowledged write is
//! never lost between the socket and the pipeline. The write path ([`WriteCore`]) is shared
//! with `inputs.influxdb_v2_listener`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::codec::ParseError;
use crate::codec::influx;
use crate::common::server::{self, BodyError, Resp, ServerOptions, TlsServerConfig};
use crate::config_types::{Duration as Dur, Size};
use crate::model::{Metric, now_ns};
use crate::plugin::{BuildContext, InputPlugin, MetricSink, ServiceContext, ServiceInput};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};
use crate::selfstat::{self, Stat, Stats};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_address")]
    service_address: String,
    #[serde(default = "default_timeout")]
    read_timeout: Dur,
    #[serde(default = "default_timeout")]
    write_timeout: Dur,
    #[serde(default = "default_body")]
    max_body_size: Size,
    /// 0: no limit.
    #[serde(default)]
    max_line_size: Size,
    #[serde(default)]
    database_tag: String,
    #[serde(default)]
    retention_policy_tag: String,
    basic_username: Option<String>,
    basic_password: Option<String>,
    /// Telegraf's choice of parser; sonde has one, so both values use it.
    #[serde(default)]
    parser_type: Option<String>,
}

fn default_address() -> String {
    ":8186".into()
}
fn default_timeout() -> Dur {
    Dur::from_secs(10)
}
pub(crate) fn default_body() -> Size {
    Size(32 << 20)
}

/// The limits and counters of a line-protocol write endpoint.
pub(crate) struct WriteCore {
    pub sink: MetricSink,
    pub max_body: usize,
    pub max_line: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Keeps the counters registered while the listener runs.
    _stats: Arc<Stats>,
    pub requests: Stat,
    pub writes: Stat,
    pub parse_errors: Stat,
    pub rejected_requests: Stat,
}

/// How a write request failed before or while parsing.
pub(crate) enum WriteOutcome {
    /// Every line was taken (possibly none).
    Ok,
    /// Some lines were bad; the good ones are in the pipeline. The message names the first.
    BadLines(String),
    /// Nothing was taken.
    Failed(StatusCode, String),
}

impl WriteCore {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plugin: &'static str,
        id: &str,
        address: &str,
        sink: MetricSink,
        max_body: u64,
        max_line: u64,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        let stats = selfstat::register(plugin, &[("input", id), ("address", address)]);
        WriteCore {
            sink,
            max_body: max_body.min(usize::MAX as u64) as usize,
            max_line: max_line.min(usize::MAX as u64) as usize,
            read_timeout,
            write_timeout,
            requests: stats.stat("requests_received"),
            writes: stats.stat("writes_received"),
            parse_errors: stats.stat("parse_errors"),
            rejected_requests: stats.stat("requests_rejected"),
            _stats: stats,
        }
    }

    /// Reads, parses and queues one write. `tags` are added to every metric. Returns the
    /// outcome and the number of metrics queued.
    pub async fn write(
        &self,
        req: Request<Incoming>,
        precision: i64,
        tags: &[(&str, &str)],
    ) -> (WriteOutcome, usize) {
        let mut queued = 0;
        let outcome = self.write_inner(req, precision, tags, &mut queued).await;
        (outcome, queued)
    }

    async fn write_inner(
        &self,
        req: Request<Incoming>,
        precision: i64,
        tags: &[(&str, &str)],
        queued: &mut usize,
    ) -> WriteOutcome {
        self.writes.incr();
        let body = match server::read_body(req, self.max_body, self.read_timeout).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return WriteOutcome::Failed(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "http: request body too large (max_body_size is {} bytes)",
                        self.max_body
                    ),
                );
            }
            Err(BodyError::Timeout) => {
                return WriteOutcome::Failed(
                    StatusCode::REQUEST_TIMEOUT,
                    "timed out reading the request body".into(),
                );
            }
            Err(BodyError::Bad(m)) => return WriteOutcome::Failed(StatusCode::BAD_REQUEST, m),
        };
        let mut metrics = Vec::with_capacity(body.len() / 64 + 1);
        let errors = parse_limited(&body, self.max_line, precision, now_ns(), &mut metrics);
        if !tags.is_empty() {
            for m in &mut metrics {
                for (k, v) in tags {
                    m.add_tag(*k, *v);
                }
            }
        }
        if !metrics.is_empty() {
            let n = metrics.len();
            match tokio::time::timeout(self.write_timeout, self.sink.send(metrics)).await {
                Ok(Ok(())) => *queued = n,
                Ok(Err(_)) => {
                    return WriteOutcome::Failed(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the agent is shutting down".into(),
                    );
                }
                // The send future was dropped unfinished: nothing was queued, so a 503 is true.
                Err(_) => {
                    return WriteOutcome::Failed(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the pipeline did not take the batch within write_timeout".into(),
                    );
                }
            }
        }
        match errors.first() {
            None => WriteOutcome::Ok,
            Some(first) => {
                self.parse_errors.add(errors.len() as i64);
                let msg = format!(
                    "partial write: unable to parse '{}': {} (line {}); {} bad line(s) dropped",
                    line_text(&body, first.line),
                    first.message,
                    first.line,
                    errors.len()
                );
                tracing::debug!(error = %msg, "bad line protocol");
                WriteOutcome::BadLines(msg)
            }
        }
    }
}

/// Parses `body`, treating lines longer than `max_line` (when non-zero) as bad lines.
pub(crate) fn parse_limited(
    body: &[u8],
    max_line: usize,
    precision: i64,
    now: i64,
    out: &mut Vec<Metric>,
) -> Vec<ParseError> {
    if max_line == 0 || body.len() <= max_line {
        return influx::parse(body, precision, now, out);
    }
    // Parse the runs of acceptable lines between over-long ones, keeping line numbers.
    let mut errors = Vec::new();
    let (mut seg_start, mut seg_line, mut pos, mut line) = (0, 1, 0, 1);
    let mut flush = |from: usize, to: usize, first_line: usize, errors: &mut Vec<ParseError>| {
        for mut e in influx::parse(&body[from..to], precision, now, out) {
            e.line += first_line - 1;
            errors.push(e);
        }
    };
    while pos < body.len() {
        let end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i);
        if end - pos > max_line {
            flush(seg_start, pos, seg_line, &mut errors);
            errors.push(ParseError {
                line,
                message: format!("line longer than max_line_size ({max_line} bytes)"),
            });
            seg_start = (end + 1).min(body.len());
            seg_line = line + 1;
        }
        pos = end + 1;
        line += 1;
    }
    flush(seg_start, body.len(), seg_line, &mut errors);
    errors.sort_by_key(|e| e.line);
    errors
}

/// The text of 1-based line `n`, shortened for an error message.
fn line_text(body: &[u8], n: usize) -> String {
    let line = body.split(|&b| b == b'\n').nth(n - 1).unwrap_or_default();
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end_matches('\r');
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Nanoseconds per unit of InfluxDB 1.x's `precision` parameter.
pub(crate) fn precision_v1(p: Option<&str>) -> Option<i64> {
    Some(match p.unwrap_or("") {
        "" | "n" | "ns" => 1,
        "u" | "us" | "µ" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

pub(crate) fn json_error(status: StatusCode, message: &str) -> Resp {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = server::respond(status, "application/json", body);
    r.headers_mut()
        .insert("X-Influxdb-Error", header_value(message));
    r
}

fn header_value(s: &str) -> http::HeaderValue {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .take(512)
        .collect();
    http::HeaderValue::from_str(&clean).unwrap_or(http::HeaderValue::from_static("error"))
}

/// The options both listeners validate the same way.
pub(crate) fn check_write_options(
    parser_type: Option<&str>,
    max_body_size: Size,
) -> Result<(), BuildError> {
    if let Some(p) = parser_type
        && p != "internal"
        && p != "upstream"
    {
        return Err(
            anyhow::anyhow!("parser_type must be \"internal\" or \"upstream\", not {p:?}").into(),
        );
    }
    if max_body_size.0 == 0 {
        return Err(anyhow::anyhow!("max_body_size must be positive").into());
    }
    Ok(())
}

pub(crate) const VERSION: &str = "1.8.10";

struct Listener {
    cfg: Config,
    id: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Bound by `start`.
    bound: Option<tokio::net::TcpListener>,
}

struct State {
    core: WriteCore,
    cfg: Config,
    databases: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl ServiceInput for Listener {
    async fn start(&mut self) -> anyhow::Result<()> {
        self.bound = Some(server::bind(&self.cfg.service_address).await?);
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let Listener {
            cfg,
            id,
            tls,
            bound,
        } = *self;
        let listener = server::bound_or_bind(bound, &cfg.service_address).await?;
        tracing::info!(input = %id, address = %listener.local_addr()?, "influxdb_listener listening");
        let core = WriteCore::new(
            "internal_influxdb_listener",
            &id,
            &cfg.service_address,
            ctx.sink,
            cfg.max_body_size.0,
            cfg.max_line_size.0,
            cfg.read_timeout.get(),
            cfg.write_timeout.get(),
        );
        let opts = ServerOptions {
            read_timeout: cfg.read_timeout.get(),
            tls,
        };
        let state = Arc::new(State {
            core,
            cfg,
            databases: Mutex::new(BTreeSet::new()),
        });
        let handler = move |req| {
            let st = state.clone();
            async move { handle(&st, req).await }
        };
        server::serve(listener, opts, handler, ctx.shutdown).await;
        Ok(())
    }
}

async fn handle(st: &State, req: Request<Incoming>) -> Resp {
    st.core.requests.incr();
    let path = req.uri().path().to_string();
    if path == "/ping" {
        return ping(&req);
    }
    if !authorized(st, &req) {
        st.core.rejected_requests.incr();
        let mut r = json_error(StatusCode::UNAUTHORIZED, "authorization failed");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"sonde\""),
        );
        return r;
    }
    let resp = match (req.method(), path.as_str()) {
        (&Method::POST, "/write") => write(st, req).await,
        (&Method::GET | &Method::POST, "/query") => query(st, req).await,
        (_, "/write" | "/query") => {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    };
    if resp.status().is_client_error() || resp.status().is_server_error() {
        st.core.rejected_requests.incr();
    }
    resp
}

pub(crate) fn ping(req: &Request<Incoming>) -> Resp {
    let verbose =
        server::query_param(req.uri().query(), "verbose").is_some_and(|v| v == "true" || v == "1");
    let mut r = if verbose {
        server::respond(
            StatusCode::OK,
            "application/json",
            format!("{{\"version\":\"{VERSION}\"}}"),
        )
    } else {
        server::empty(StatusCode::NO_CONTENT)
    };
    r.headers_mut().insert(
        "X-Influxdb-Version",
        http::HeaderValue::from_static(VERSION),
    );
    r.headers_mut()
        .insert("X-Influxdb-Build", http::HeaderValue::from_static("OSS"));
    r
}

fn authorized(st: &State, req: &Request<Incoming>) -> bool {
    let (Some(user), Some(pass)) = (&st.cfg.basic_username, &st.cfg.basic_password) else {
        return st.cfg.basic_username.is_none() && st.cfg.basic_password.is_none();
    };
    // Basic auth, or InfluxDB 1.x's `u`/`p` query parameters.
    let given = server::basic_auth(req).or_else(|| {
        let q = req.uri().query();
        Some((server::query_param(q, "u")?, server::query_param(q, "p")?))
    });
    given.is_some_and(|(u, p)| server::secret_eq(&u, user) && server::secret_eq(&p, pass))
}

async fn write(st: &State, req: Request<Incoming>) -> Resp {
    let q = req.uri().query().map(str::to_string);
    let q = q.as_deref();
    let Some(precision) = precision_v1(server::query_param(q, "precision").as_deref()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid precision (expected n, ns, u, us, ms, s, m or h)",
        );
    };
    let db = server::query_param(q, "db").unwrap_or_default();
    let rp = server::query_param(q, "rp").unwrap_or_default();
    if !db.is_empty() {
        st.databases.lock().unwrap().insert(db.clone());
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    if !st.cfg.database_tag.is_empty() && !db.is_empty() {
        tags.push((&st.cfg.database_tag, &db));
    }
    if !st.cfg.retention_policy_tag.is_empty() && !rp.is_empty() {
        tags.push((&st.cfg.retention_policy_tag, &rp));
    }
    match st.core.write(req, precision, &tags).await.0 {
        WriteOutcome::Ok => server::empty(StatusCode::NO_CONTENT),
        WriteOutcome::BadLines(m) => json_error(StatusCode::BAD_REQUEST, &m),
        WriteOutcome::Failed(status, m) => {
            let mut r = json_error(status, &m);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            }
            r
        }
    }
}

/// Answers the statements InfluxDB clients send before writing, as InfluxDB 1.x does.
async fn query(st: &State, req: Request<Incoming>) -> Resp {
    let mut q = server::query_param(req.uri().query(), "q");
    if q.is_none() && req.method() == Method::POST {
        // Form-encoded body (`q=...`), as the Go and Python clients send it.
        if let Ok(body) = server::read_body(req, 1 << 20, st.core.read_timeout).await {
            q = server::query_param(Some(&String::from_utf8_lossy(&body)), "q");
        }
    }
    let Some(q) = q.filter(|q| !q.trim().is_empty()) else {
        return json_error(StatusCode::BAD_REQUEST, "missing required parameter \"q\"");
    };
    let mut results = Vec::new();
    for (i, stmt) in q
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        let upper: Vec<String> = words
            .iter()
            .take(2)
            .map(|w| w.to_ascii_uppercase())
            .collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        match upper[..] {
            ["SHOW", "DATABASES"] => {
                let values: Vec<_> = st
                    .databases
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|d| serde_json::json!([d]))
                    .collect();
                results.push(serde_json::json!({
                    "statement_id": i,
                    "series": [{"name": "databases", "columns": ["name"], "values": values}],
                }));
            }
            ["CREATE", "DATABASE"] if words.len() >= 3 => {
                let name = words[2].trim_matches('"').to_string();
                st.databases.lock().unwrap().insert(name);
                results.push(serde_json::json!({ "statement_id": i }));
            }
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "error parsing query: sonde's listener answers only SHOW DATABASES and CREATE DATABASE, not {stmt:?}"
                    ),
                );
            }
        }
    }
    server::respond(
        StatusCode::OK,
        "application/json",
        serde_json::json!({ "results": results }).to_string(),
    )
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsServerConfig::take(&mut table)?.build()?;
    let cfg: Config = parse_config(table)?;
    if cfg.basic_username.is_some() != cfg.basic_password.is_some() {
        return Err(
            anyhow::anyhow!("basic_username and basic_password must be given together").into(),
        );
    }
    check_write_options(cfg.parser_type.as_deref(), cfg.max_body_size)?;
    server::check_address(&cfg.service_address).map_err(|message| ConfigError {
        path: vec!["service_address".into()],
        message,
    })?;
    Ok(InputPlugin::Service(Box::new(Listener {
        cfg,
        id: ctx.id.clone(),
        tls,
        bound: None,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "influxdb_listener",
    description: "Accept InfluxDB 1.x line-protocol writes over HTTP",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A running listener built from `toml`, its address, and the receiving end of its sink.
    pub(crate) struct Running {
        pub addr: String,
        pub rx: flume::Receiver<Vec<Metric>>,
        pub stop: tokio::sync::watch::Sender<bool>,
        pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    pub(crate) async fn start(spec: &InputSpec, toml_text: &str, capacity: usize) -> Running {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let table: toml::Table =
            toml::from_str(&format!("service_address = \"{addr}\"\n{toml_text}")).unwrap();
        let InputPlugin::Service(svc) = (spec.build)(table, &BuildContext::default()).unwrap()
        else {
            panic!("not a service input")
        };
        let (tx, rx) = flume::bounded(capacity);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let sink = MetricSink::new(tx, Arc::new(|_: &mut Vec<Metric>| {}));
        let task = tokio::spawn(svc.run(ServiceContext {
            sink,
            interval: Duration::from_secs(10),
            shutdown,
        }));
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Running {
            addr,
            rx,
            stop,
            task,
        }
    }

    /// A blocking HTTP/1.1 request; returns (status, headers+body text).
    pub(crate) fn request(
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        (status, out)
    }

    pub(crate) async fn req(
        addr: &str,
        method: &'static str,
        path: &str,
        headers: &[(&'static str, &'static str)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let (addr, path, headers) = (addr.to_string(), path.to_string(), headers.to_vec());
        tokio::task::spawn_blocking(move || request(&addr, method, &path, &headers, &body))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn write_ping_query_and_bad_lines() {
        let r = start(
            &SPEC,
            "database_tag = \"database\"\nretention_policy_tag = \"rp\"",
            16,
        )
        .await;
        let body = b"cpu,host=a usage=1.5 1700000000\nmem free=2i 1700000001\n".to_vec();
        let (st, _) = req(
            &r.addr,
            "POST",
            "/write?db=telegraf&rp=week&precision=s",
            &[],
            body,
        )
        .await;
        assert_eq!(st, 204);
        let got = r.rx.try_recv().expect("a 204 means the batch is queued");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].time, 1_700_000_000_000_000_000);
        assert_eq!(got[0].tag("database"), Some("telegraf"));
        assert_eq!(got[0].tag("rp"), Some("week"));
        assert_eq!(got[1].field("free"), Some(&crate::FieldValue::Int(2)));

        // One bad line among good ones: the good ones are kept, 400 names the first bad line.
        let body = b"a v=1\nb v=\nc v=3\nd,x v=4\n".to_vec();
        let (st, text) = req(&r.addr, "POST", "/write", &[], body).await;
        assert_eq!(st, 400);
        assert!(
            text.contains("{\"error\":\"partial write: unable to parse 'b v=': "),
            "{text}"
        );
        assert!(
            text.contains("(line 2)") && text.contains("2 bad line(s)"),
            "{text}"
        );
        let got = r.rx.try_recv().unwrap();
        assert_eq!(
            got.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );

        let (st, text) = req(&r.addr, "GET", "/ping", &[], vec![]).await;
        assert_eq!(st, 204);
        assert!(
            text.to_ascii_lowercase()
                .contains("x-influxdb-version: 1.8"),
            "{text}"
        );

        let (st, _) = req(
            &r.addr,
            "POST",
            "/query?q=CREATE+DATABASE+%22mydb%22",
            &[],
            vec![],
        )
        .await;
        assert_eq!(st, 200);
        let (st, text) = req(&r.addr, "GET", "/query?q=SHOW%20DATABASES", &[], vec![]).await;
        assert_eq!(st, 200);
        assert!(
            text.contains(r#"{"results":[{"series":[{"columns":["name"],"name":"databases","values":[["mydb"],["telegraf"]]}],"statement_id":0}]}"#),
            "{text}"
        );
        let (st, _) = req(&r.addr, "GET", "/query?q=SELECT+*+FROM+cpu", &[], vec![]).await;
        assert_eq!(st, 400);
        let (st, _) = req(
            &r.addr,
            "POST",
            "/write?precision=fortnights",
            &[],
            b"a v=1".to_vec(),
        )
        .await;
        assert_eq!(st, 400);
        assert!(r.rx.is_empty());

        r.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), r.task)
            .await
            .expect("stops on shutdown")
            .unwrap()
            .unwrap();
        assert!(
            std::net::TcpStream::connect(&r.addr).is_err(),
            "port released"
        );
    }

    #[tokio::test]
    async fn gzip_size_limits_and_auth() {
        let r = start(
            &SPEC,
            "max_body_size = 100\nmax_line_size = 20\nbasic_username = \"u\"\nbasic_password = \"p\"",
            16,
        )
        .await;
        let auth = ("authorization", "Basic dTpw"); // u:p
        let (st, _) = req(&r.addr, "POST", "/write", &[], b"a v=1".to_vec()).await;
        assert_eq!(st, 401);
        let (st, _) = req(&r.addr, "POST", "/write?u=u&p=p", &[], b"a v=1".to_vec()).await;
        assert_eq!(st, 204);
        r.rx.try_recv().unwrap();

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"g v=1\ng v=2\n").unwrap();
        let (st, _) = req(
            &r.addr,
            "POST",
            "/write",
            &[auth, ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
        assert_eq!(st, 204);
        assert_eq!(r.rx.try_recv().unwrap().len(), 2);

        let (st, text) = req(&r.addr, "POST", "/write", &[auth], vec![b'x'; 101]).await;
        assert_eq!(st, 413, "{text}");
        // A gzip bomb is bounded by max_body_size after decompression too.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&[b'a'; 10_000]).unwrap();
        let (st, _) = req(
            &r.addr,
            "POST",
            "/write",
            &[auth, ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
        assert_eq!(st, 413);

        let (st, text) = req(
            &r.addr,
            "POST",
            "/write",
            &[auth],
            b"ok v=1\nthis_line_is_far_too_long v=1\nok v=2".to_vec(),
        )
        .await;
        assert_eq!(st, 400);
        assert!(
            text.contains("max_line_size") && text.contains("(line 2)"),
            "{text}"
        );
        assert_eq!(r.rx.try_recv().unwrap().len(), 2);
        r.stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn bind_failure_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let table: toml::Table = toml::from_str(&format!("service_address = \"{addr}\"")).unwrap();
        let InputPlugin::Service(svc) = build(table, &BuildContext::default()).unwrap() else {
            panic!()
        };
        let (tx, _rx) = flume::bounded(1);
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let sink = MetricSink::new(tx, Arc::new(|_: &mut Vec<Metric>| {}));
        let err = svc
            .run(ServiceContext {
                sink,
                interval: Duration::from_secs(10),
                shutdown,
            })
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("cannot listen on {addr}")),
            "{err}"
        );
    }

    #[test]
    fn config_errors() {
        let t: toml::Table = toml::from_str("basic_username = \"u\"").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
        let t: toml::Table =
            toml::from_str("tls_cert = \"/nonexistent.pem\"\ntls_key = \"/k\"").unwrap();
        let err = build(t, &BuildContext::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent.pem"), "{err}");
        let t: toml::Table = toml::from_str("no_such_key = 1").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
    }
}
