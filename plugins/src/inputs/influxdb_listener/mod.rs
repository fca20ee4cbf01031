//! `inputs.influxdb_listener`: accepts InfluxDB 1.x writes (`/write`), answers `/ping` and the
//! `/query` statements clients send before writing (`SHOW DATABASES`, `CREATE DATABASE`).
//!
//! A 204 is sent only once the batch is in the pipeline's queue, so an acknowledged write is
//! never lost between the socket and the pipeline. The write path is `common::lp_listener`, shared
//! with `inputs.influxdb_v2_listener`.

mod jwt;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::common::lp_listener::{
    WriteCore, WriteOutcome, check_write_options, default_body, ping,
};
use crate::common::server::{self, Resp, ServerOptions, TlsServerConfig};
use crate::config_types::{Duration as Dur, Size};
use crate::plugin::{BuildContext, InputPlugin, ServiceContext, ServiceInput};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};
use crate::selfstat::Stat;

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
    /// JWT authentication (InfluxDB 1.x's): HMAC-signed bearer tokens naming this user.
    #[serde(default)]
    token_shared_secret: String,
    #[serde(default)]
    token_username: String,
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
    /// The names `SHOW DATABASES` lists: every `db` written to or created, up to
    /// [`MAX_DATABASES`] names of at most [`MAX_DATABASE_NAME`] bytes, so clients inventing a
    /// new name per request cannot grow memory without limit.
    databases: Mutex<BTreeSet<String>>,
    /// Names not remembered because of those limits (`databases_not_listed`).
    databases_over: Stat,
}

const MAX_DATABASES: usize = 1000;
const MAX_DATABASE_NAME: usize = 255;

impl State {
    /// Remembers a database name for `SHOW DATABASES`, within the limits.
    fn remember_database(&self, name: &str) {
        let mut set = self.databases.lock().unwrap();
        if set.contains(name) {
            return;
        }
        if set.len() < MAX_DATABASES && name.len() <= MAX_DATABASE_NAME {
            set.insert(name.to_string());
            return;
        }
        drop(set);
        let n = self.databases_over.get();
        if n % 1000 == 0 {
            tracing::warn!(
                not_listed = n + 1,
                "influxdb_listener: database name not remembered for SHOW DATABASES: at most \
                 {MAX_DATABASES} names of at most {MAX_DATABASE_NAME} bytes are kept (the writes \
                 are still accepted)"
            );
        }
        self.databases_over.incr();
    }
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
        let databases_over = core.stat("databases_not_listed");
        let state = Arc::new(State {
            core,
            cfg,
            databases: Mutex::new(BTreeSet::new()),
            databases_over,
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
    if let Err(why) = authorized(st, &req) {
        st.core.rejected_requests.incr();
        let mut r = json_error(StatusCode::UNAUTHORIZED, &why);
        let challenge = if st.cfg.token_shared_secret.is_empty() {
            "Basic realm=\"sonde\""
        } else {
            "Bearer"
        };
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(challenge),
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

fn authorized(st: &State, req: &Request<Incoming>) -> Result<(), String> {
    if !st.cfg.token_shared_secret.is_empty() {
        // InfluxDB reads `Authorization: Bearer`; Telegraf reads `Authentication` (a bug in
        // Telegraf): both are taken, so clients of either work.
        let bearer = [header::AUTHORIZATION.as_str(), "authentication"]
            .iter()
            .find_map(|h| {
                req.headers()
                    .get(*h)?
                    .to_str()
                    .ok()?
                    .strip_prefix("Bearer ")
                    .map(str::trim)
            })
            .ok_or("authorization failed: a bearer token is required")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        return jwt::verify(
            bearer,
            st.cfg.token_shared_secret.as_bytes(),
            &st.cfg.token_username,
            now,
        )
        .map_err(|e| e.to_string());
    }
    let (Some(user), Some(pass)) = (&st.cfg.basic_username, &st.cfg.basic_password) else {
        return if st.cfg.basic_username.is_none() && st.cfg.basic_password.is_none() {
            Ok(())
        } else {
            Err("authorization failed".into())
        };
    };
    // Basic auth, or InfluxDB 1.x's `u`/`p` query parameters.
    let given = server::basic_auth(req).or_else(|| {
        let q = req.uri().query();
        Some((server::query_param(q, "u")?, server::query_param(q, "p")?))
    });
    if given.is_some_and(|(u, p)| server::secret_eq(&u, user) && server::secret_eq(&p, pass)) {
        Ok(())
    } else {
        Err("authorization failed".into())
    }
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
        st.remember_database(&db);
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
        WriteOutcome::Busy(m, retry_after) => {
            let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, &m);
            r.headers_mut()
                .insert(header::RETRY_AFTER, server::retry_after_value(retry_after));
            r
        }
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
        match server::read_body(req, 1 << 20, st.core.read_timeout).await {
            Ok(body) => q = server::query_param(Some(&String::from_utf8_lossy(&body)), "q"),
            Err(e) => {
                let (status, message) = e.status(1 << 20);
                return json_error(status, &message);
            }
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
                st.remember_database(words[2].trim_matches('"'));
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
    let mut cfg: Config = parse_config(table)?;
    if cfg.basic_username.is_some() != cfg.basic_password.is_some() {
        return Err(
            anyhow::anyhow!("basic_username and basic_password must be given together").into(),
        );
    }
    if cfg.token_shared_secret.is_empty() != cfg.token_username.is_empty() {
        return Err(anyhow::anyhow!(
            "token_shared_secret and token_username must be given together for token authentication"
        )
        .into());
    }
    if !cfg.token_shared_secret.is_empty() && cfg.basic_username.is_some() {
        return Err(
            anyhow::anyhow!("cannot use basic authentication and tokens at the same time").into(),
        );
    }
    check_write_options(cfg.parser_type.as_deref(), &mut cfg.max_body_size)?;
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
mod tests {
    use super::*;
    use crate::codec::influx;
    use crate::common::lp_listener::tests::{req, start};
    use crate::model::Metric;
    use std::io::Write;
    use std::time::Duration;

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

    /// A large body is parsed and queued in batches of at most 1,000 lines, in order, with
    /// nothing lost or numbered differently from parsing it whole: a string value's line
    /// breaks span the first boundary, and the bad line past the second is reported by its
    /// number in the whole body.
    #[tokio::test]
    async fn large_body_is_queued_in_chunks() {
        let r = start(&SPEC, "database_tag = \"db\"", 16).await;
        let mut body = String::new();
        for i in 0..2_500 {
            match i {
                998 => body.push_str("s text=\"a\nb\nc\" 1\n"),
                2_100 => body.push_str("broken line\n"),
                _ => body.push_str(&format!("m,i={i} v={i}i {i}\n")),
            }
        }
        let mut whole = Vec::new();
        let errors = influx::parse(body.as_bytes(), 1, 0, &mut whole);
        assert_eq!(errors.len(), 1);
        let (st, text) = req(&r.addr, "POST", "/write?db=x", &[], body.into_bytes()).await;
        assert_eq!(st, 400, "{text}");
        assert!(
            text.contains(&format!("(line {})", errors[0].line)),
            "{text}"
        );
        let mut got = Vec::new();
        while let Ok(batch) = r.rx.try_recv() {
            assert!(!batch.is_empty() && batch.len() <= 1_000, "{}", batch.len());
            got.push(batch);
        }
        assert_eq!(got.len(), 3, "2,499 good lines in batches of 1,000");
        let got: Vec<Metric> = got.into_iter().flatten().collect();
        assert_eq!(got.len(), whole.len());
        for (g, w) in got.iter().zip(&whole) {
            assert_eq!((&g.name, &g.fields, g.time), (&w.name, &w.fields, w.time));
            assert_eq!(g.tag("db"), Some("x"));
        }
    }

    /// Telegraf's sample sets `max_body_size = 0`, meaning its default of 32 MiB.
    #[tokio::test]
    async fn max_body_size_zero_is_the_default() {
        let r = start(&SPEC, "max_body_size = 0", 16).await;
        let body = vec![b'x'; 1 << 20];
        let (st, _) = req(
            &r.addr,
            "POST",
            "/write",
            &[],
            [b"a v=1\n# ".as_slice(), &body].concat(),
        )
        .await;
        assert_eq!(st, 204, "a 1 MiB body is within 32 MiB");
    }

    /// JWT bearer tokens, in `Authorization` (InfluxDB's header) and `Authentication`
    /// (Telegraf's); anything else is 401 and nothing reaches the pipeline.
    #[tokio::test]
    async fn token_authentication() {
        let r = start(
            &SPEC,
            "token_shared_secret = \"s3cret\"\ntoken_username = \"writer\"",
            16,
        )
        .await;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let good = jwt::tests::token(
            "HS256",
            b"s3cret",
            &format!(r#"{{"username":"writer","exp":{exp}}}"#),
        );
        let expired = jwt::tests::token("HS256", b"s3cret", r#"{"username":"writer","exp":1}"#);
        let forged = jwt::tests::token("HS256", b"guess", r#"{"username":"writer"}"#);
        // The test helper takes 'static headers.
        let bearer =
            |t: &str| -> &'static str { Box::leak(format!("Bearer {t}").into_boxed_str()) };
        for (header, token, want) in [
            ("authorization", good.as_str(), 204),
            ("authentication", good.as_str(), 204),
            ("authorization", expired.as_str(), 401),
            ("authorization", forged.as_str(), 401),
        ] {
            let (st, text) = req(
                &r.addr,
                "POST",
                "/write",
                &[(header, bearer(token))],
                b"a v=1".to_vec(),
            )
            .await;
            assert_eq!(st, want, "{header} {token}: {text}");
        }
        let (st, text) = req(&r.addr, "POST", "/write", &[], b"a v=1".to_vec()).await;
        assert_eq!(st, 401);
        assert!(text.contains("bearer token is required"), "{text}");
        assert_eq!(r.rx.len(), 2, "only the two good writes were taken");

        for bad in [
            "token_shared_secret = \"s\"",
            "token_username = \"u\"",
            "token_shared_secret = \"s\"\ntoken_username = \"u\"\nbasic_username = \"a\"\nbasic_password = \"b\"",
        ] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            assert!(build(t, &BuildContext::default()).is_err(), "{bad}");
        }
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
    async fn unknown_content_encoding_is_415_not_text() {
        let r = start(&SPEC, "", 16).await;
        // Telegraf-compatible clients send gzip; anything else must not be parsed as text
        // (a deflate body that happens to look like line protocol would be garbage metrics).
        for enc in ["deflate", "br", "zstd", "gzip, br", "x-custom"] {
            let (st, text) = req(
                &r.addr,
                "POST",
                "/write?db=x",
                &[("content-encoding", enc)],
                b"a v=1".to_vec(),
            )
            .await;
            assert_eq!(st, 415, "{enc}: {text}");
            assert!(text.contains("Content-Encoding"), "{text}");
        }
        assert!(r.rx.is_empty(), "nothing was queued");
        let (st, _) = req(
            &r.addr,
            "POST",
            "/query",
            &[
                ("content-encoding", "br"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"q=SHOW+DATABASES".to_vec(),
        )
        .await;
        assert_eq!(st, 415);
        let (st, _) = req(
            &r.addr,
            "POST",
            "/write",
            &[("content-encoding", "identity")],
            b"a v=1".to_vec(),
        )
        .await;
        assert_eq!(st, 204);
        assert_eq!(r.rx.try_recv().unwrap().len(), 1);
        r.stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn remembered_database_names_are_bounded() {
        let r = start(&SPEC, "database_tag = \"db\"", 16).await;
        // One request creating more databases than are kept, and a name that is too long.
        let mut q = String::from("q=");
        for i in 0..MAX_DATABASES + 200 {
            q.push_str(&format!("CREATE+DATABASE+d{i:05}%3B"));
        }
        let (st, text) = req(&r.addr, "POST", "/query", &[], q.into_bytes()).await;
        assert_eq!(st, 200, "{text}");
        let long = "x".repeat(MAX_DATABASE_NAME + 1);
        let (st, _) = req(
            &r.addr,
            "POST",
            &format!("/write?db={long}"),
            &[],
            b"a v=1".to_vec(),
        )
        .await;
        assert_eq!(st, 204, "the write itself is accepted");
        let got = r.rx.try_recv().unwrap();
        assert_eq!(got[0].tag("db"), Some(long.as_str()));
        let (st, text) = req(&r.addr, "GET", "/query?q=SHOW+DATABASES", &[], vec![]).await;
        assert_eq!(st, 200);
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let names = v["results"][0]["series"][0]["values"].as_array().unwrap();
        assert_eq!(names.len(), MAX_DATABASES);
        assert_eq!(names[0][0], "d00000");
        assert!(!body.contains(&long));
        let over = crate::selfstat::snapshot(0, false)
            .into_iter()
            .find(|m| {
                m.name == "internal_influxdb_listener" && m.tag("address") == Some(r.addr.as_str())
            })
            .and_then(|m| m.field("databases_not_listed").cloned());
        assert_eq!(over, Some(crate::FieldValue::Int(201)));
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
        let (sink, _rx) = crate::plugin::test_sink(1);
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
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
