//! `outputs.http`: POSTs each batch, serialized in the `data_format`, to a URL. Also the
//! generic webhook output.
//!
//! 2xx is success; 429, 5xx, 3xx and connection errors are retried (honouring `Retry-After`);
//! any other status (4xx, or one listed in `non_retryable_statuscodes`) rejects the batch for
//! good, with the server's answer in the reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::codec::Serializer;
use crate::common::http::{TlsClientConfig, response_error};
use crate::common::http_client::{HTTP_CLIENT_KEYS, HttpClient, HttpClientConfig, ProxyDefault};
use crate::config_types::Duration;
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, ConfigError, Format, OutputSpec, parse_config};

/// How much of a server's error body goes into the reason.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    url: String,
    method: String,
    headers: BTreeMap<String, String>,
    username: Option<String>,
    password: Option<String>,
    content_encoding: String,
    timeout: Duration,
    non_retryable_statuscodes: Vec<u16>,
    use_batch_format: bool,
    google_application_credentials: Option<String>,
    /// SigV4 signing (Telegraf's `common/aws` options), on when `aws_service` is set.
    aws_service: Option<String>,
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    token: Option<String>,
    role_arn: Option<String>,
    web_identity_token_file: Option<std::path::PathBuf>,
    role_session_name: Option<String>,
    profile: Option<String>,
    shared_credential_file: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: "http://127.0.0.1:8080/telegraf".into(),
            method: "POST".into(),
            headers: BTreeMap::new(),
            username: None,
            password: None,
            content_encoding: "identity".into(),
            timeout: Duration::from_secs(5),
            non_retryable_statuscodes: Vec::new(),
            use_batch_format: true,
            google_application_credentials: None,
            aws_service: None,
            region: None,
            access_key: None,
            secret_key: None,
            token: None,
            role_arn: None,
            web_identity_token_file: None,
            role_session_name: None,
            profile: None,
            shared_credential_file: None,
        }
    }
}

/// SigV4 signing of each request.
#[cfg(feature = "cloudwatch")]
struct Aws {
    service: String,
    settings: crate::common::aws_credentials::Settings,
    /// The credential cache and region, set up at the first write.
    chain: Option<(crate::common::aws_credentials::Cache, String)>,
}

pub struct Http {
    client: HttpClient,
    #[cfg(feature = "cloudwatch")]
    aws: Option<Aws>,
    url: reqwest::Url,
    method: reqwest::Method,
    headers: HeaderMap,
    auth: Option<(String, Option<String>)>,
    gzip: bool,
    non_retryable: Vec<u16>,
    serializer: Arc<dyn Serializer>,
}

impl Http {
    fn body(&self, batch: &[Metric]) -> Result<Vec<u8>, WriteError> {
        let mut buf = Vec::new();
        self.serializer.serialize(batch, &mut buf);
        if !self.gzip {
            return Ok(buf);
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&buf)
            .and_then(|()| gz.finish())
            .map_err(|e| WriteError::Retry {
                reason: format!("gzip: {e}"),
                retry_after: None,
            })
    }
}

#[async_trait]
impl Output for Http {
    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        let body = self.body(batch)?;
        #[cfg(feature = "cloudwatch")]
        let signed = self.sign(&body).await?;
        let mut req = self
            .client
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        #[cfg(feature = "cloudwatch")]
        for (k, v) in signed {
            req = req.header(k, v);
        }
        if let Some((user, pass)) = &self.auth {
            req = req.basic_auth(user, pass.as_ref());
        }
        let resp = self.client.send(req).await.map_err(|e| WriteError::Retry {
            reason: format!("sending to {}: {e}", self.url.host_str().unwrap_or("")),
            retry_after: None,
        })?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(response_error(resp, &self.non_retryable).await)
    }
}

#[cfg(feature = "cloudwatch")]
impl Http {
    /// The SigV4 headers for this body, when `aws_service` is set.
    async fn sign(&mut self, body: &[u8]) -> Result<Vec<(&'static str, String)>, WriteError> {
        let Some(aws) = &mut self.aws else {
            return Ok(Vec::new());
        };
        let retry = |reason: String| WriteError::Retry {
            reason,
            retry_after: None,
        };
        if aws.chain.is_none() {
            let chain = crate::common::aws_credentials::chain(&aws.settings)
                .await
                .map_err(|e| retry(format!("AWS credentials: {e:#}")))?;
            tracing::info!(
                "signing requests with SigV4 for {:?} in {} using {}",
                aws.service,
                chain.region,
                chain.describe
            );
            aws.chain = Some((
                crate::common::aws_credentials::Cache::new(chain.provider),
                chain.region,
            ));
        }
        let (cache, region) = aws.chain.as_mut().expect("set above");
        let creds = cache.get().await.map_err(retry)?;
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        crate::common::aws_credentials::sign_headers(
            &creds,
            region,
            &aws.service,
            self.method.as_str(),
            self.url.as_str(),
            &headers,
            body,
            std::time::SystemTime::now(),
        )
        .map_err(retry)
    }
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let http = HttpClientConfig::take(&mut table, HTTP_CLIENT_KEYS)?;
    let cfg: Config = parse_config(table)?;
    let bad = |path: &[&str], message: String| {
        BuildError::Config(ConfigError {
            path: path.iter().map(|s| s.to_string()).collect(),
            message,
        })
    };
    let url = reqwest::Url::parse(&cfg.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| bad(&["url"], format!("not an http(s) URL: {:?}", cfg.url)))?;
    let method = match cfg.method.to_ascii_uppercase().as_str() {
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        "PATCH" => reqwest::Method::PATCH,
        other => {
            return Err(bad(
                &["method"],
                format!("{other:?}: expected POST, PUT or PATCH"),
            ));
        }
    };
    let gzip = match cfg.content_encoding.as_str() {
        "gzip" => true,
        "identity" | "" => false,
        other => {
            return Err(bad(
                &["content_encoding"],
                format!("{other:?}: expected \"gzip\" or \"identity\""),
            ));
        }
    };
    if !cfg.use_batch_format {
        return Err(bad(
            &["use_batch_format"],
            "only batch format (true) is supported".into(),
        ));
    }
    if let Some(c) = cfg
        .non_retryable_statuscodes
        .iter()
        .find(|c| !(100..=599).contains(*c))
    {
        return Err(bad(
            &["non_retryable_statuscodes"],
            format!("{c} is not an HTTP status code"),
        ));
    }
    let serializer = ctx
        .serializer
        .clone()
        .ok_or_else(|| anyhow::anyhow!("http: no data_format serializer was given"))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(serializer.content_type()),
    );
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    // The user's headers last, so they can override Content-Type.
    for (k, v) in &cfg.headers {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|e| bad(&["headers", k], format!("bad header name: {e}")))?;
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|e| bad(&["headers", k], format!("bad header value: {e}")))?;
        headers.insert(name, value);
    }
    if cfg
        .google_application_credentials
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(bad(
            &["google_application_credentials"],
            "Google API authentication is not supported yet".into(),
        ));
    }
    let aws_service = cfg.aws_service.clone().filter(|s| !s.is_empty());
    let aws_keys_set = cfg.region.is_some()
        || cfg.access_key.is_some()
        || cfg.secret_key.is_some()
        || cfg.token.is_some()
        || cfg.role_arn.is_some()
        || cfg.web_identity_token_file.is_some()
        || cfg.role_session_name.is_some()
        || cfg.profile.is_some()
        || cfg.shared_credential_file.is_some();
    if aws_service.is_none() && aws_keys_set {
        // Telegraf builds AWS credentials only with aws_service.
        tracing::warn!(
            "{}: the AWS options (region, access_key, ...) have no effect without aws_service",
            ctx.id
        );
    }
    #[cfg(feature = "cloudwatch")]
    let aws = aws_service.map(|service| Aws {
        service,
        settings: crate::common::aws_credentials::Settings {
            region: cfg.region.clone(),
            access_key: cfg.access_key.clone(),
            secret_key: cfg.secret_key.clone(),
            token: cfg.token.clone(),
            role_arn: cfg.role_arn.clone(),
            role_session_name: cfg.role_session_name.clone(),
            web_identity_token_file: cfg.web_identity_token_file.clone(),
            profile: cfg.profile.clone(),
            shared_credential_file: cfg.shared_credential_file.clone(),
        },
        chain: None,
    });
    #[cfg(not(feature = "cloudwatch"))]
    if aws_service.is_some() {
        return Err(bad(
            &["aws_service"],
            "this build of sonde has no AWS support (feature \"cloudwatch\")".into(),
        ));
    }
    let client = HttpClient::build(&http, &tls, cfg.timeout.get(), ProxyDefault::None, |b| b)?;
    let auth = match (cfg.username, cfg.password) {
        (None, None) => None,
        (u, p) => Some((u.unwrap_or_default(), p)),
    };
    Ok(Box::new(Http {
        client,
        #[cfg(feature = "cloudwatch")]
        aws,
        url,
        method,
        headers,
        auth,
        gzip,
        non_retryable: cfg.non_retryable_statuscodes,
        serializer,
    }))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "http",
    description: "Send batches to an HTTP endpoint (webhook) in a data_format",
    sample: include_str!("sample.toml"),
    format: Format::Serializer("influx"),
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{SerializerConfig, build_serializer};
    use std::io::Read;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What the test server saw of one request.
    #[derive(Debug)]
    struct Request {
        head: String,
        body: Vec<u8>,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    /// A tiny HTTP/1.1 server: answers each request with the next canned response (the last
    /// one repeats) and records the requests.
    async fn server(responses: Vec<&'static str>) -> (String, Arc<Mutex<Vec<Request>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let head_end = loop {
                    let mut chunk = [0u8; 4096];
                    let k = sock.read(&mut chunk).await.unwrap();
                    assert!(k > 0, "client closed before the end of the headers");
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let req = Request {
                    head,
                    body: Vec::new(),
                };
                let len: usize = req
                    .header("content-length")
                    .map(|v| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = buf[head_end..].to_vec();
                while body.len() < len {
                    let mut chunk = [0u8; 4096];
                    let k = sock.read(&mut chunk).await.unwrap();
                    assert!(k > 0);
                    body.extend_from_slice(&chunk[..k]);
                }
                log.lock().unwrap().push(Request { body, ..req });
                let resp = responses[n.min(responses.len() - 1)];
                n += 1;
                let resp = resp.replace('\n', "\r\n");
                sock.write_all(resp.as_bytes()).await.unwrap();
                let _ = sock.shutdown().await;
            }
        });
        (format!("http://{addr}/write"), seen)
    }

    fn output(extra: &str, url: &str) -> Box<dyn Output> {
        let ctx = BuildContext {
            serializer: Some(build_serializer(&SerializerConfig::default(), "influx").unwrap()),
            ..Default::default()
        };
        let table = toml::from_str(&format!("url = {url:?}\n{extra}")).unwrap();
        build(table, &ctx).unwrap_or_else(|e| panic!("{e}"))
    }

    fn batch() -> Vec<Metric> {
        vec![
            Metric::new("cpu", 1)
                .with_tag("host", "a")
                .with_field("v", 1.5),
            Metric::new("mem", 2).with_field("used", 10i64),
        ]
    }
    const LINES: &str = "cpu,host=a v=1.5 1\nmem used=10i 2\n";

    const NO_CONTENT: &str = "HTTP/1.1 204 No Content\nConnection: close\n\n";

    #[tokio::test]
    async fn success_posts_exactly_the_serialized_lines() {
        let (url, seen) = server(vec![NO_CONTENT]).await;
        let mut out = output("[headers]\nX-Token = 'abc'", &url);
        out.write(&batch()).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].head.starts_with("POST /write HTTP/1.1"),
            "{}",
            seen[0].head
        );
        assert_eq!(String::from_utf8_lossy(&seen[0].body), LINES);
        assert_eq!(seen[0].header("x-token"), Some("abc"));
        assert_eq!(
            seen[0].header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(seen[0].header("authorization"), None);
    }

    #[tokio::test]
    async fn gzip_body_decodes_to_the_lines_and_put_is_used() {
        let (url, seen) = server(vec![NO_CONTENT]).await;
        let mut out = output("content_encoding = 'gzip'\nmethod = 'put'", &url);
        out.write(&batch()).await.unwrap();
        let seen = seen.lock().unwrap();
        assert!(seen[0].head.starts_with("PUT "), "{}", seen[0].head);
        assert_eq!(seen[0].header("content-encoding"), Some("gzip"));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&seen[0].body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, LINES);
    }

    #[tokio::test]
    async fn basic_auth_header() {
        let (url, seen) = server(vec![NO_CONTENT]).await;
        let mut out = output("username = 'user'\npassword = 'secret'", &url);
        out.write(&batch()).await.unwrap();
        // base64("user:secret")
        assert_eq!(
            seen.lock().unwrap()[0].header("authorization"),
            Some("Basic dXNlcjpzZWNyZXQ=")
        );
    }

    #[tokio::test]
    async fn unavailable_is_retried_with_retry_after() {
        let (url, _) = server(vec![
            "HTTP/1.1 503 Service Unavailable\nRetry-After: 7\nContent-Length: 4\nConnection: close\n\nbusy",
        ])
        .await;
        let mut out = output("", &url);
        match out.write(&batch()).await {
            Err(WriteError::Retry {
                reason,
                retry_after,
            }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)));
                assert!(
                    reason.contains("503") && reason.contains("busy"),
                    "{reason}"
                );
            }
            other => panic!("expected Retry, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn too_many_requests_is_retried() {
        let (url, _) = server(vec![
            "HTTP/1.1 429 Too Many Requests\nContent-Length: 0\nConnection: close\n\n",
        ])
        .await;
        let mut out = output("", &url);
        assert!(matches!(
            out.write(&batch()).await,
            Err(WriteError::Retry {
                retry_after: None,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn bad_request_is_rejected_with_the_servers_message() {
        let (url, _) = server(vec![
            "HTTP/1.1 400 Bad Request\nContent-Length: 29\nConnection: close\n\nunable to parse 'cpu v=': bad",
        ])
        .await;
        let mut out = output("", &url);
        match out.write(&batch()).await {
            Err(WriteError::Reject { reason }) => {
                assert!(reason.contains("400"), "{reason}");
                assert!(reason.contains("unable to parse 'cpu v=': bad"), "{reason}");
            }
            other => panic!("expected Reject, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn non_retryable_statuscodes_reject_a_5xx() {
        let (url, _) = server(vec![
            "HTTP/1.1 507 Insufficient Storage\nContent-Length: 0\nConnection: close\n\n",
        ])
        .await;
        let mut out = output("non_retryable_statuscodes = [507]", &url);
        assert!(matches!(
            out.write(&batch()).await,
            Err(WriteError::Reject { .. })
        ));
    }

    #[tokio::test]
    async fn connection_refused_is_retried() {
        // Bind then drop, so nothing listens on the port.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let mut out = output("", &format!("http://{addr}/write"));
        match out.write(&batch()).await {
            Err(WriteError::Retry { reason, .. }) => {
                assert!(reason.to_lowercase().contains("refused"), "{reason}")
            }
            other => panic!("expected Retry, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_is_retried() {
        // Accepts but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let _conn = listener.accept().await;
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        });
        let mut out = output("timeout = '300ms'", &format!("http://{addr}/write"));
        assert!(matches!(
            out.write(&batch()).await,
            Err(WriteError::Retry { .. })
        ));
        hold.abort();
    }

    #[test]
    fn bad_config_names_the_key() {
        let ctx = BuildContext {
            serializer: Some(build_serializer(&SerializerConfig::default(), "influx").unwrap()),
            ..Default::default()
        };
        let path = |t: &str| match build(toml::from_str(t).unwrap(), &ctx) {
            Err(BuildError::Config(c)) => c.path,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted {t}"),
        };
        assert_eq!(path("url = 'ftp://x'"), ["url"]);
        assert_eq!(path("method = 'GET'"), ["method"]);
        assert_eq!(path("content_encoding = 'br'"), ["content_encoding"]);
        assert_eq!(
            path("[headers]\n'bad header' = 'x'"),
            ["headers", "bad header"]
        );
        assert_eq!(
            path("non_retryable_statuscodes = [1000]"),
            ["non_retryable_statuscodes"]
        );
        assert_eq!(path("tls_ca = 5"), ["tls_ca"]);
        assert_eq!(path("urll = 'http://x'"), ["urll"]);
        let ok = "url = 'https://x'\ntls_server_name = 'x'\ninsecure_skip_verify = true\nidle_conn_timeout = '30s'";
        assert!(build(toml::from_str(ok).unwrap(), &ctx).is_ok());
    }
}
