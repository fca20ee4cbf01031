//! `inputs.http`: fetches URLs and parses the bodies with the plugin's `data_format` (every
//! parser sonde has, `json_v2` and `html` included), as Telegraf's http input does.
//!
//! A status outside `success_status_codes`, a failed request and a body that does not parse
//! are gather errors that name the URL (credentials removed); the other URLs carry on.

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::codec::Parser;
use crate::common::http::TlsClientConfig;
use crate::common::http_client::{HTTP_CLIENT_KEYS, HttpClient, HttpClientConfig, ProxyDefault};
use crate::config_types::Duration;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

/// How much of an unexpected answer's body goes into the error.
const MAX_ERROR_BODY: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    urls: Vec<String>,
    method: String,
    headers: std::collections::BTreeMap<String, String>,
    body: String,
    content_encoding: String,
    /// File holding a bearer token (Telegraf's older name of `token_file`).
    bearer_token: Option<std::path::PathBuf>,
    token_file: Option<std::path::PathBuf>,
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
    success_status_codes: Vec<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urls: Vec::new(),
            method: "GET".into(),
            headers: Default::default(),
            body: String::new(),
            content_encoding: "identity".into(),
            bearer_token: None,
            token_file: None,
            token: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
            success_status_codes: vec![200],
        }
    }
}

enum Auth {
    None,
    TokenFile(std::path::PathBuf),
    Token(String),
    Basic(String, Option<String>),
}

pub struct Http {
    urls: Vec<reqwest::Url>,
    client: HttpClient,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    /// The request body, already encoded.
    body: Option<Arc<Vec<u8>>>,
    gzip: bool,
    auth: Auth,
    success: Vec<u16>,
    parser: Arc<dyn Parser>,
}

/// The URL without credentials, for tags and messages.
fn display_url(u: &reqwest::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

impl Http {
    async fn fetch(&self, url: &reqwest::Url) -> anyhow::Result<Vec<u8>> {
        let mut req = self
            .client
            .client
            .request(self.method.clone(), url.clone())
            .headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.as_ref().clone());
            if self.gzip {
                req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
            }
        }
        req = match &self.auth {
            Auth::None => req,
            Auth::Token(t) => req.bearer_auth(t),
            Auth::TokenFile(path) => {
                let t = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
                req.bearer_auth(t.trim())
            }
            Auth::Basic(u, p) => req.basic_auth(u, p.as_ref()),
        };
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let status = resp.status();
        let gzipped = resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let raw = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!(crate::common::http::error_chain(&e.without_url())))?;
        let body = if gzipped {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| anyhow::anyhow!("gzip body: {e}"))?;
            out
        } else {
            raw.to_vec()
        };
        if !self.success.contains(&status.as_u16()) {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            let cut = text.floor_char_boundary(MAX_ERROR_BODY);
            let more = if cut < text.len() { "..." } else { "" };
            anyhow::bail!(
                "received status code {status}, expected any value out of {:?}{}",
                self.success,
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {}{more}", &text[..cut])
                }
            );
        }
        Ok(body)
    }
}

#[async_trait]
impl Input for Http {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let fetches = self.urls.iter().map(|u| self.fetch(u));
        let results = futures_join_all(fetches).await;
        for (url, result) in self.urls.iter().zip(results) {
            let shown = display_url(url);
            let body = match result {
                Ok(b) => b,
                Err(e) => {
                    acc.add_error(format!("{shown}: {e:#}"));
                    continue;
                }
            };
            let mut metrics = Vec::new();
            let errors = self.parser.parse(&body, acc.time(), &mut metrics);
            if let Some(first) = errors.first() {
                acc.add_error(format!(
                    "{shown}: {} parse error(s), first: {first}",
                    errors.len()
                ));
            }
            for mut m in metrics {
                m.add_tag_if_absent("url", &shown);
                acc.add(m);
            }
        }
        Ok(())
    }
}

/// Runs the futures concurrently, keeping their order (no extra dependency for join_all).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let http = HttpClientConfig::take(&mut table, HTTP_CLIENT_KEYS)?;
    let cfg: Config = parse_config(table)?;
    let bad = |key: &str, message: String| {
        BuildError::Config(ConfigError {
            path: vec![key.into()],
            message,
        })
    };
    if cfg.urls.is_empty() {
        return Err(bad("urls", "at least one URL is needed".into()));
    }
    let mut urls = Vec::new();
    for (i, u) in cfg.urls.iter().enumerate() {
        let url = reqwest::Url::parse(u)
            .ok()
            .filter(|x| matches!(x.scheme(), "http" | "https"))
            .ok_or_else(|| {
                BuildError::Config(ConfigError {
                    path: vec!["urls".into(), i.to_string()],
                    message: format!("{u:?} is not an http(s):// URL"),
                })
            })?;
        urls.push(url);
    }
    let method = reqwest::Method::from_bytes(cfg.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad("method", format!("{:?} is not an HTTP method", cfg.method)))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &cfg.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad("headers", format!("{k:?} is not a valid header name")))?;
        let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            bad(
                "headers",
                format!("the value of {k:?} is not a valid header value"),
            )
        })?;
        if name == reqwest::header::HOST {
            // reqwest sets Host from the URL; Telegraf lets a header override it.
            return Err(bad(
                "headers",
                "a Host header is not supported: put the host in the URL".into(),
            ));
        }
        headers.insert(name, value);
    }
    let gzip = match cfg.content_encoding.as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            return Err(bad(
                "content_encoding",
                format!("{other:?}: expected \"identity\" or \"gzip\""),
            ));
        }
    };
    let body = if cfg.body.is_empty() {
        None
    } else if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(cfg.body.as_bytes())
            .and_then(|_| enc.finish())
            .map(|b| Some(Arc::new(b)))
            .map_err(|e| anyhow::anyhow!("compressing body: {e}"))?
    } else {
        Some(Arc::new(cfg.body.clone().into_bytes()))
    };
    if gzip && body.is_none() {
        tracing::warn!(
            "{}: content_encoding = \"gzip\" has no effect without a body",
            ctx.id
        );
    }
    let file = cfg.token_file.or(cfg.bearer_token);
    let auths = [
        file.is_some(),
        cfg.token.is_some(),
        cfg.username.is_some() || cfg.password.is_some(),
    ];
    if auths.iter().filter(|x| **x).count() > 1 {
        return Err(bad(
            "token",
            "use one of token, token_file (bearer_token) and username/password".into(),
        ));
    }
    let auth = match (file, cfg.token, cfg.username, cfg.password) {
        (Some(f), ..) => Auth::TokenFile(f),
        (_, Some(t), ..) => Auth::Token(t),
        (_, _, None, None) => Auth::None,
        (_, _, u, p) => Auth::Basic(u.unwrap_or_default(), p),
    };
    if cfg.success_status_codes.is_empty() {
        return Err(bad(
            "success_status_codes",
            "at least one status code is needed".into(),
        ));
    }
    let client = HttpClient::build(&http, &tls, cfg.timeout.get(), ProxyDefault::None, |b| b)?;
    let parser = ctx.parser.clone().map_or_else(
        || crate::codec::build_parser(&Default::default(), "influx"),
        Ok,
    )?;
    Ok(InputPlugin::Polled(Box::new(Http {
        urls,
        client,
        method,
        headers,
        body,
        gzip,
        auth,
        success: cfg.success_status_codes,
        parser,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "http",
    description: "Read metrics in any data_format (json_v2, html, influx, ...) from HTTP(S) URLs",
    sample: include_str!("sample.toml"),
    format: Format::Parser("influx"),
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ParserConfig, build_parser};
    use std::io::{BufRead, BufReader, Write};

    /// Answers every request with `status` and `body`, recording the request head and body.
    fn server(
        status: u16,
        body: &'static str,
    ) -> (u16, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut b = vec![0; len];
                r.read_exact(&mut b).unwrap();
                let _ = tx.send((head, b));
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (port, rx)
    }

    fn input(text: &str, parser: ParserConfig) -> Box<dyn Input> {
        let ctx = BuildContext {
            parser: Some(build_parser(&parser, "influx").unwrap()),
            ..Default::default()
        };
        match build(toml::from_str(text).unwrap(), &ctx) {
            Ok(InputPlugin::Polled(p)) => p,
            Err(e) => panic!("build failed: {e}"),
            _ => panic!("not polled"),
        }
    }

    #[tokio::test]
    async fn post_with_headers_gzip_body_and_token_parses_json_v2() {
        let (port, rx) = server(200, r#"{"data": {"price": 12.5, "sym": "BTC"}}"#);
        let url = format!("http://127.0.0.1:{port}/api");
        let parser: ParserConfig = toml::from_str(
            "data_format = 'json_v2'\n[[json_v2]]\nmeasurement_name = 'quote'\n\
             [[json_v2.tag]]\npath = 'data.sym'\n[[json_v2.field]]\npath = 'data.price'\n",
        )
        .unwrap();
        let mut p = input(
            &format!(
                "urls = ['{url}']\nmethod = 'POST'\nbody = '{{\"q\":1}}'\ncontent_encoding = 'gzip'\n\
                 token = 'sekret'\nheaders = {{ X-Api = 'v1' }}"
            ),
            parser,
        );
        let mut acc = Accumulator::new(9);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let (head, body) = rx.recv().unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("post /api"), "{head}");
        assert!(head.contains("authorization: bearer sekret"), "{head}");
        assert!(
            head.contains("x-api: v1") && head.contains("content-encoding: gzip"),
            "{head}"
        );
        let mut s = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "{\"q\":1}");
        let m = &acc.metrics[0];
        assert_eq!(m.name, "quote");
        assert_eq!(m.tag("sym"), Some("BTC"));
        assert_eq!(m.tag("url"), Some(url.as_str()));
        assert_eq!(m.field("price").and_then(|f| f.as_f64()), Some(12.5));
    }

    #[tokio::test]
    async fn bad_status_and_bad_body_are_errors_naming_the_url() {
        let (port, _rx) = server(503, "busy");
        let url = format!("http://user:pw@127.0.0.1:{port}/m");
        let mut p = input(
            &format!("urls = ['{url}']\nusername = 'u'\npassword = 'p'"),
            Default::default(),
        );
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        let e = &acc.errors[0];
        assert!(
            e.contains(&format!("http://127.0.0.1:{port}/m"))
                && e.contains("503")
                && e.contains("busy"),
            "{e}"
        );
        assert!(!e.contains("pw"), "{e}");
        let (port, _rx) = server(200, "this is not line protocol\n");
        let mut p = input(
            &format!("urls = ['http://127.0.0.1:{port}/x']"),
            Default::default(),
        );
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.metrics.is_empty());
        assert!(
            acc.errors[0].contains(&format!("127.0.0.1:{port}/x"))
                && acc.errors[0].contains("parse error"),
            "{:?}",
            acc.errors
        );
        // A custom success code accepts what the default would refuse.
        let (port, _rx) = server(203, "m v=1i 1\n");
        let mut p = input(
            &format!("urls = ['http://127.0.0.1:{port}/']\nsuccess_status_codes = [200, 203]"),
            Default::default(),
        );
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 1);
    }

    #[tokio::test]
    async fn requests_go_through_http_proxy_url() {
        let (port, rx) = server(200, "m v=1i 1\n");
        let mut p = input(
            &format!(
                "urls = ['http://prices.invalid/feed']\nhttp_proxy_url = 'http://127.0.0.1:{port}'"
            ),
            Default::default(),
        );
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let (head, _) = rx.recv().unwrap();
        assert!(
            head.starts_with("GET http://prices.invalid/feed "),
            "{head}"
        );
        assert_eq!(
            acc.metrics[0].tag("url"),
            Some("http://prices.invalid/feed")
        );
    }

    #[test]
    fn config_errors() {
        let err = |t: &str| match build(toml::from_str(t).unwrap(), &BuildContext::default()) {
            Err(BuildError::Config(c)) => (c.path.join("."), c.message),
            Err(e) => ("".into(), e.to_string()),
            Ok(_) => panic!("{t} built"),
        };
        assert_eq!(err("urls = []").0, "urls");
        assert_eq!(err("urls = ['ftp://x']").0, "urls.0");
        assert_eq!(
            err("urls = ['http://x']\ncontent_encoding = 'br'").0,
            "content_encoding"
        );
        assert_eq!(
            err("urls = ['http://x']\ntoken = 'a'\nusername = 'b'").0,
            "token"
        );
        assert_eq!(err("urls = ['http://x']\nmethod = 'G ET'").0, "method");
        assert_eq!(
            err("urls = ['http://x']\nhttp_proxy_url = '::'").0,
            "http_proxy_url"
        );
        for (key, line, words) in [
            (
                "tls_min_version",
                "tls_min_version = 'TLS10'",
                "TLS 1.2 and 1.3 only",
            ),
            ("tls_min_version", "tls_min_version = 'SSL3'", "expected"),
            (
                "tls_cipher_suites",
                "tls_cipher_suites = ['TLS_RSA_WITH_RC4_128_SHA']",
                "insecure",
            ),
            (
                "tls_cipher_suites",
                "tls_cipher_suites = ['NOPE']",
                "not a cipher suite",
            ),
            ("tls_key_pwd", "tls_key_pwd = 'secret'", "not supported yet"),
            (
                "tls_renegotiation_method",
                "tls_renegotiation_method = 'always'",
                "expected",
            ),
            (
                "local_address",
                "local_address = 'eth0'",
                "not an IP address",
            ),
            (
                "local_address",
                "local_address = '127.0.0.1:99'",
                "source port",
            ),
            ("cookie_auth_url", "cookie_auth_url = 'ftp://x'", "http(s)"),
            (
                "token_url",
                "client_id = 'a'\nclient_secret = 'b'\ntoken_url = 'x'",
                "http(s)",
            ),
        ] {
            let (path, message) = err(&format!("urls = ['http://x']\n{line}"));
            assert_eq!(path, key, "{line}");
            assert!(message.contains(words), "{line}: {message}");
        }
        // Telegraf's options of the common HTTP client are all known.
        for line in [
            "max_idle_conn = 10\nmax_idle_conn_per_host = 2\nidle_conn_timeout = '30s'",
            "response_timeout = '2s'\nlocal_address = '127.0.0.1'",
            "use_system_proxy = true",
            "tls_min_version = 'TLS13'\ntls_cipher_suites = ['secure']",
            "tls_renegotiation_method = 'freely'\ntls_key_pwd = ''\ntls_enable = true",
            "client_id = 'a'\nclient_secret = 'b'\ntoken_url = 'http://t/'\naudience = 'x'\nscopes = ['s']",
            "cookie_auth_url = 'http://l/'\ncookie_auth_method = 'GET'\ncookie_auth_username = 'u'\n\
             cookie_auth_password = 'p'\ncookie_auth_body = '{}'\ncookie_auth_renewal = '5m'\n\
             cookie_auth_headers = { X-A = 'b' }",
        ] {
            let t = format!("urls = ['http://x']\n{line}");
            if let Err(e) = build(toml::from_str(&t).unwrap(), &BuildContext::default()) {
                panic!("{line}: {e}");
            }
        }
    }
}
