//! Telegraf's common HTTP-client options (`plugins/common/{http,proxy,oauth,cookie}`), shared
//! by the plugins that have them: the transport (`idle_conn_timeout`, `max_idle_conn`,
//! `max_idle_conn_per_host`, `response_timeout`, `local_address`), the proxy
//! (`use_system_proxy`, `http_proxy_url`, and the influxdb outputs' `http_proxy`), OAuth2
//! client credentials and cookie authentication.
//!
//! As with [`TlsClientConfig`], the keys sit flat in a plugin's table: a plugin calls
//! [`HttpClientConfig::take`] with the groups of keys Telegraf gives it, then parses the rest
//! into its own struct. [`HttpClient::send`] adds the OAuth2 token and the login cookie to a
//! request and applies `response_timeout`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::common::http::{ClientOptions, TlsClientConfig, build_client_with, error_chain};
use crate::config_types::Duration as Dur;
use crate::registry::{BuildError, ConfigError, parse_config};

/// The options; which of them a plugin accepts is chosen by the key groups given to `take`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    pub idle_conn_timeout: Option<Dur>,
    pub max_idle_conn: Option<usize>,
    pub max_idle_conn_per_host: Option<usize>,
    pub response_timeout: Option<Dur>,
    pub local_address: Option<String>,
    pub use_system_proxy: Option<bool>,
    pub http_proxy_url: Option<String>,
    /// The influxdb outputs' name of the proxy URL.
    pub http_proxy: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub token_url: Option<String>,
    pub audience: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub cookie_auth_url: Option<String>,
    pub cookie_auth_method: Option<String>,
    pub cookie_auth_username: Option<String>,
    pub cookie_auth_password: Option<String>,
    pub cookie_auth_headers: Option<BTreeMap<String, String>>,
    pub cookie_auth_body: Option<String>,
    pub cookie_auth_renewal: Option<Dur>,
}

/// Telegraf's `common/http` transport keys.
pub const TRANSPORT_KEYS: &[&str] = &[
    "idle_conn_timeout",
    "max_idle_conn",
    "max_idle_conn_per_host",
    "response_timeout",
    "local_address",
];
/// Telegraf's `common/proxy` HTTP keys.
pub const PROXY_KEYS: &[&str] = &["use_system_proxy", "http_proxy_url"];
/// Telegraf's `common/oauth` keys.
pub const OAUTH_KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "token_url",
    "audience",
    "scopes",
];
/// Telegraf's `common/cookie` keys.
pub const COOKIE_KEYS: &[&str] = &[
    "cookie_auth_url",
    "cookie_auth_method",
    "cookie_auth_username",
    "cookie_auth_password",
    "cookie_auth_headers",
    "cookie_auth_body",
    "cookie_auth_renewal",
];
/// Everything `inputs.http` and `outputs.http` have (Telegraf's `HTTPClientConfig`).
pub const HTTP_CLIENT_KEYS: &[&[&str]] = &[TRANSPORT_KEYS, PROXY_KEYS, OAUTH_KEYS, COOKIE_KEYS];

/// Whether the proxy environment variables apply when the config names no proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProxyDefault {
    /// Telegraf's `common/proxy`: no proxy unless `use_system_proxy = true`.
    None,
    /// The influxdb outputs: `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` unless `http_proxy` is set.
    Environment,
}

fn bad(key: &str, message: String) -> BuildError {
    BuildError::Config(ConfigError {
        path: vec![key.into()],
        message,
    })
}

impl HttpClientConfig {
    /// Removes the keys of `groups` from a plugin's table and parses them.
    pub fn take(table: &mut toml::Table, groups: &[&[&str]]) -> Result<Self, BuildError> {
        let mut t = toml::Table::new();
        for key in groups.iter().flat_map(|g| g.iter()) {
            if let Some(v) = table.remove(*key) {
                t.insert((*key).to_string(), v);
            }
        }
        parse_config(t)
    }
}

/// `local_address`: an IP, optionally with port 0 (`"10.0.0.1"`, `"10.0.0.1:0"`, `"[::1]:0"`).
pub fn parse_local_address(s: &str) -> Result<Option<IpAddr>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Some(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        if sa.port() != 0 {
            return Err(format!(
                "{s:?}: a fixed source port is not supported (connections to one server \
                 would collide); give the address alone"
            ));
        }
        return Ok(Some(sa.ip()));
    }
    Err(format!("{s:?} is not an IP address"))
}

/// An HTTP client with Telegraf's options applied.
#[derive(Clone)]
pub struct HttpClient {
    pub client: reqwest::Client,
    response_timeout: Option<Duration>,
    oauth: Option<Arc<OAuth2>>,
    cookie: Option<Arc<CookieAuth>>,
}

/// A request that got no answer (or whose credentials could not be had).
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    pub timeout: bool,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for SendError {}

impl SendError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        let timeout = e.is_timeout();
        // The URL may carry credentials: keep it out.
        SendError {
            message: error_chain(&e.without_url()),
            timeout,
        }
    }
}

impl HttpClient {
    /// Builds the client. `timeout` is the whole-request timeout (Telegraf's `timeout`);
    /// `more` sets anything else on the builder.
    pub fn build(
        cfg: &HttpClientConfig,
        tls: &TlsClientConfig,
        timeout: Duration,
        proxy_default: ProxyDefault,
        more: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<HttpClient, BuildError> {
        let proxy_url = match (&cfg.http_proxy_url, &cfg.http_proxy) {
            (Some(u), _) | (None, Some(u)) if !u.is_empty() => Some(u.clone()),
            _ => None,
        };
        let key = if cfg.http_proxy_url.is_some() {
            "http_proxy_url"
        } else {
            "http_proxy"
        };
        let proxy = match &proxy_url {
            Some(u) => {
                let parsed = reqwest::Url::parse(u).map_err(|e| bad(key, format!("{u:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad(
                        key,
                        format!("{u:?}: only http:// and https:// proxies are supported"),
                    ));
                }
                Some(reqwest::Proxy::all(u.as_str()).map_err(|e| bad(key, format!("{u:?}: {e}")))?)
            }
            None => None,
        };
        let system = cfg.use_system_proxy == Some(true);
        if system && proxy.is_some() {
            // Telegraf: use_system_proxy wins.
            tracing::warn!("http_proxy_url has no effect with use_system_proxy = true");
        }
        let local = match &cfg.local_address {
            Some(s) => parse_local_address(s).map_err(|m| bad("local_address", m))?,
            None => None,
        };
        // reqwest's pool caps idle connections per host only: the lower of the two caps
        // applies to each host (for a plugin talking to one server, that is the total).
        let max_idle = [cfg.max_idle_conn, cfg.max_idle_conn_per_host]
            .into_iter()
            .flatten()
            .filter(|n| *n > 0)
            .min();
        let idle = cfg
            .idle_conn_timeout
            .filter(|d| !d.is_zero())
            .map(|d| d.get());
        let response_timeout = cfg
            .response_timeout
            .filter(|d| !d.is_zero())
            .map(|d| d.get());
        let client = build_client_with(
            &ClientOptions {
                timeout: timeout.max(Duration::from_millis(1)),
                idle_conn_timeout: idle,
                tls,
            },
            move |mut b| {
                b = if system {
                    b // reqwest reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY by default
                } else if let Some(p) = proxy {
                    b.proxy(p)
                } else if proxy_default == ProxyDefault::Environment {
                    b
                } else {
                    b.no_proxy()
                };
                if let Some(ip) = local {
                    b = b.local_address(ip);
                }
                if let Some(n) = max_idle {
                    b = b.pool_max_idle_per_host(n);
                }
                more(b)
            },
        )?;
        let oauth = OAuth2::from_config(cfg)?.map(Arc::new);
        let cookie = CookieAuth::from_config(cfg)?.map(Arc::new);
        Ok(HttpClient {
            client,
            response_timeout,
            oauth,
            cookie,
        })
    }

    /// The login cookie for a request to `url` (logging in first when needed), for plugins that
    /// send their requests on a client of their own (`inputs.http_response`); `None` without
    /// cookie authentication.
    pub async fn cookie_for(
        &self,
        url: &reqwest::Url,
    ) -> Result<Option<reqwest::header::HeaderValue>, SendError> {
        match &self.cookie {
            Some(c) => c.header_for(&self.client, url).await,
            None => Ok(None),
        }
    }

    /// Sends a request with the OAuth2 token and the login cookie (when configured), waiting
    /// at most `response_timeout` for the answer's headers.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, SendError> {
        let mut req = req.build().map_err(SendError::from_reqwest)?;
        if let Some(o) = &self.oauth {
            let value = o.header(&self.client).await?;
            req.headers_mut()
                .insert(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(c) = &self.cookie
            && let Some(value) = c.header_for(&self.client, req.url()).await?
        {
            req.headers_mut().insert(reqwest::header::COOKIE, value);
        }
        let fut = self.client.execute(req);
        match self.response_timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r.map_err(SendError::from_reqwest),
                Err(_) => Err(SendError {
                    message: format!("no response within response_timeout ({t:?})"),
                    timeout: true,
                }),
            },
            None => fut.await.map_err(SendError::from_reqwest),
        }
    }
}

/// OAuth2 client credentials: a token from `token_url`, kept until shortly before it expires.
struct OAuth2 {
    client_id: String,
    client_secret: String,
    token_url: reqwest::Url,
    audience: String,
    scopes: Vec<String>,
    token: tokio::sync::Mutex<Option<(reqwest::header::HeaderValue, Option<Instant>)>>,
}

/// A token is renewed this long before it expires (Go's oauth2 does the same).
const EXPIRY_DELTA: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl OAuth2 {
    fn from_config(cfg: &HttpClientConfig) -> Result<Option<OAuth2>, BuildError> {
        let (Some(id), Some(secret), Some(url)) = (
            cfg.client_id.as_deref().filter(|s| !s.is_empty()),
            cfg.client_secret.as_deref().filter(|s| !s.is_empty()),
            cfg.token_url.as_deref().filter(|s| !s.is_empty()),
        ) else {
            let any = cfg.client_id.is_some()
                || cfg.client_secret.is_some()
                || cfg.token_url.is_some()
                || cfg.audience.is_some()
                || cfg.scopes.is_some();
            if any {
                // Telegraf ignores a partial set silently; sonde says so.
                tracing::warn!(
                    "the OAuth2 options have no effect: client_id, client_secret and token_url \
                     are all needed"
                );
            }
            return Ok(None);
        };
        let token_url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| bad("token_url", format!("{url:?} is not an http(s):// URL")))?;
        Ok(Some(OAuth2 {
            client_id: id.into(),
            client_secret: secret.into(),
            token_url,
            audience: cfg.audience.clone().unwrap_or_default(),
            scopes: cfg.scopes.clone().unwrap_or_default(),
            token: tokio::sync::Mutex::new(None),
        }))
    }

    async fn header(
        &self,
        client: &reqwest::Client,
    ) -> Result<reqwest::header::HeaderValue, SendError> {
        let mut slot = self.token.lock().await;
        if let Some((v, expiry)) = &*slot
            && expiry.is_none_or(|e| Instant::now() + EXPIRY_DELTA < e)
        {
            return Ok(v.clone());
        }
        let (v, expiry) = self.fetch(client).await.map_err(|message| SendError {
            message: format!("OAuth2 token from {}: {message}", self.token_url),
            timeout: false,
        })?;
        *slot = Some((v.clone(), expiry));
        Ok(v)
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
    ) -> Result<(reqwest::header::HeaderValue, Option<Instant>), String> {
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !self.scopes.is_empty() {
                form.append_pair("scope", &self.scopes.join(" "));
            }
            if !self.audience.is_empty() {
                form.append_pair("audience", &self.audience);
            }
            form.finish()
        };
        // Client authentication in the header (RFC 6749 2.3.1), Go's first choice.
        let resp = client
            .post(self.token_url.clone())
            .basic_auth(
                url::form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect::<String>(),
                Some(
                    url::form_urlencoded::byte_serialize(self.client_secret.as_bytes())
                        .collect::<String>(),
                ),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        if !status.is_success() {
            let cut = body.floor_char_boundary(256);
            return Err(format!("server answered {status}: {}", &body[..cut]));
        }
        let t: TokenAnswer =
            serde_json::from_str(&body).map_err(|e| format!("not a token answer: {e}"))?;
        if t.access_token.is_empty() {
            return Err("the answer has no access_token".into());
        }
        let kind = if t.token_type.is_empty() || t.token_type.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else {
            t.token_type.as_str()
        };
        let secs = match &t.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let expiry = secs
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(|s| Instant::now() + Duration::from_secs_f64(s.min(1e9)));
        let mut v = reqwest::header::HeaderValue::from_str(&format!("{kind} {}", t.access_token))
            .map_err(|_| "the token cannot be sent in a header".to_string())?;
        v.set_sensitive(true);
        Ok((v, expiry))
    }
}

/// One cookie from the login answer.
#[derive(Clone, Debug, PartialEq)]
struct Cookie {
    name: String,
    value: String,
    /// The host it was set by, or its Domain attribute.
    domain: String,
    host_only: bool,
    path: String,
}

/// Cookie authentication: logs in at `cookie_auth_url`, keeps the cookies it sets, sends them
/// with the plugin's requests to the same site, and logs in again every `cookie_auth_renewal`.
struct CookieAuth {
    url: reqwest::Url,
    method: reqwest::Method,
    username: Option<String>,
    password: String,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
    renewal: Option<Duration>,
    state: tokio::sync::Mutex<Option<(Vec<Cookie>, Instant)>>,
}

impl CookieAuth {
    fn from_config(cfg: &HttpClientConfig) -> Result<Option<CookieAuth>, BuildError> {
        let Some(u) = cfg.cookie_auth_url.as_deref().filter(|s| !s.is_empty()) else {
            let any = cfg.cookie_auth_method.is_some()
                || cfg.cookie_auth_username.is_some()
                || cfg.cookie_auth_password.is_some()
                || cfg.cookie_auth_headers.is_some()
                || cfg.cookie_auth_body.is_some()
                || cfg.cookie_auth_renewal.is_some();
            if any {
                tracing::warn!("the cookie_auth_* options have no effect without cookie_auth_url");
            }
            return Ok(None);
        };
        let url = reqwest::Url::parse(u)
            .ok()
            .filter(|x| matches!(x.scheme(), "http" | "https"))
            .ok_or_else(|| bad("cookie_auth_url", format!("{u:?} is not an http(s):// URL")))?;
        let m = cfg.cookie_auth_method.as_deref().unwrap_or("POST");
        let method = reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad("cookie_auth_method", format!("{m:?} is not an HTTP method")))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in cfg.cookie_auth_headers.iter().flatten() {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad("cookie_auth_headers", format!("{k:?} is not a header name")))?;
            let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                bad(
                    "cookie_auth_headers",
                    format!("the value of {k:?} is not a valid header value"),
                )
            })?;
            headers.insert(name, value);
        }
        Ok(Some(CookieAuth {
            url,
            method,
            username: cfg.cookie_auth_username.clone().filter(|s| !s.is_empty()),
            password: cfg.cookie_auth_password.clone().unwrap_or_default(),
            headers,
            body: cfg.cookie_auth_body.clone().filter(|s| !s.is_empty()),
            renewal: cfg
                .cookie_auth_renewal
                .filter(|d| !d.is_zero())
                .map(|d| d.get()),
            state: tokio::sync::Mutex::new(None),
        }))
    }

    /// The Cookie header for a request to `url`, logging in first when there is no cookie yet
    /// or the renewal period has passed.
    async fn header_for(
        &self,
        client: &reqwest::Client,
        url: &reqwest::Url,
    ) -> Result<Option<reqwest::header::HeaderValue>, SendError> {
        let mut state = self.state.lock().await;
        let stale = match &*state {
            None => true,
            Some((_, at)) => self.renewal.is_some_and(|r| at.elapsed() >= r),
        };
        if stale {
            let cookies = self.login(client).await.map_err(|message| SendError {
                message: format!("cookie login at {}: {message}", self.url),
                timeout: false,
            })?;
            *state = Some((cookies, Instant::now()));
        }
        let cookies = &state.as_ref().expect("set above").0;
        Ok(cookie_header(cookies, url))
    }

    async fn login(&self, client: &reqwest::Client) -> Result<Vec<Cookie>, String> {
        let mut req = client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(u) = &self.username {
            req = req.basic_auth(u, Some(&self.password));
        }
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = resp.status();
        let cookies: Vec<Cookie> = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| parse_set_cookie(v, &self.url))
            .collect();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let cut = body.floor_char_boundary(256);
            return Err(format!("server answered {status}: {}", &body[..cut]));
        }
        if cookies.is_empty() {
            tracing::warn!(url = %self.url, "cookie login succeeded but set no cookie");
        }
        Ok(cookies)
    }
}

/// Parses one `Set-Cookie` header set by `from` (RFC 6265 5.2, the parts a client needs).
fn parse_set_cookie(header: &str, from: &reqwest::Url) -> Option<Cookie> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let host = from.host_str()?.to_ascii_lowercase();
    let mut cookie = Cookie {
        name: name.into(),
        value: value.trim().trim_matches('"').into(),
        domain: host.clone(),
        host_only: true,
        path: default_path(from.path()),
    };
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("domain") && !v.is_empty() {
            let d = v.trim_start_matches('.').to_ascii_lowercase();
            // A site may only set a cookie for itself or a parent domain.
            if host != d && !host.ends_with(&format!(".{d}")) {
                return None;
            }
            cookie.domain = d;
            cookie.host_only = false;
        } else if k.eq_ignore_ascii_case("path") && v.starts_with('/') {
            cookie.path = v.into();
        } else if k.eq_ignore_ascii_case("max-age") && v.parse::<i64>().is_ok_and(|n| n <= 0) {
            return None;
        }
    }
    Some(cookie)
}

fn default_path(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].into(),
    }
}

/// The `Cookie` header of the cookies that go to `url`.
fn cookie_header(cookies: &[Cookie], url: &reqwest::Url) -> Option<reqwest::header::HeaderValue> {
    let host = url.host_str()?.to_ascii_lowercase();
    let path = url.path();
    let parts: Vec<String> = cookies
        .iter()
        .filter(|c| {
            let domain_ok = if c.host_only {
                host == c.domain
            } else {
                host == c.domain || host.ends_with(&format!(".{}", c.domain))
            };
            let path_ok = path == c.path
                || (path.starts_with(&c.path)
                    && (c.path.ends_with('/') || path[c.path.len()..].starts_with('/')));
            domain_ok && path_ok
        })
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    if parts.is_empty() {
        return None;
    }
    let mut v = reqwest::header::HeaderValue::from_str(&parts.join("; ")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_forms() {
        assert_eq!(
            parse_local_address("127.0.0.2").unwrap(),
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            parse_local_address("[::1]:0").unwrap(),
            Some("::1".parse().unwrap())
        );
        assert_eq!(parse_local_address("").unwrap(), None);
        assert!(parse_local_address("127.0.0.2:8080").is_err());
        assert!(parse_local_address("eth0").is_err());
    }

    #[test]
    fn take_only_the_groups_given() {
        let mut t: toml::Table = toml::from_str(
            "url = 'x'\nhttp_proxy_url = 'http://p:3128'\nclient_id = 'a'\nlocal_address = '127.0.0.1'",
        )
        .unwrap();
        let c = HttpClientConfig::take(&mut t, &[PROXY_KEYS, TRANSPORT_KEYS]).unwrap();
        assert_eq!(c.http_proxy_url.as_deref(), Some("http://p:3128"));
        assert_eq!(c.local_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.client_id, None);
        let mut left: Vec<_> = t.keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["client_id", "url"]);
    }

    #[tokio::test]
    async fn response_timeout_bounds_the_wait_for_the_headers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    let _ = s.read(&mut b).await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        let client = |extra: &str| {
            let mut t: toml::Table = toml::from_str(extra).unwrap();
            let cfg = HttpClientConfig::take(&mut t, HTTP_CLIENT_KEYS).unwrap();
            HttpClient::build(
                &cfg,
                &TlsClientConfig::default(),
                Duration::from_secs(10),
                ProxyDefault::None,
                |b| b,
            )
            .unwrap()
        };
        let url = format!("http://{addr}/");
        let quick = client("response_timeout = '200ms'");
        let t0 = Instant::now();
        let err = quick.send(quick.client.get(&url)).await.unwrap_err();
        assert!(
            err.timeout && err.message.contains("response_timeout"),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_millis(1400));
        let patient = client("");
        let resp = patient.send(patient.client.get(&url)).await.unwrap();
        assert_eq!(resp.status(), 200);
    }

    #[test]
    fn cookies_go_to_their_site_only() {
        let login = reqwest::Url::parse("http://api.example.test/auth/login").unwrap();
        let a = parse_set_cookie("session=abc; Path=/; HttpOnly", &login).unwrap();
        let b = parse_set_cookie("wide=1; Domain=.example.test; Path=/metrics", &login).unwrap();
        assert!(parse_set_cookie("evil=1; Domain=other.test", &login).is_none());
        assert!(parse_set_cookie("gone=1; Max-Age=0", &login).is_none());
        let jar = vec![a, b];
        let h = |u: &str| {
            cookie_header(&jar, &reqwest::Url::parse(u).unwrap())
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            h("http://api.example.test/").as_deref(),
            Some("session=abc")
        );
        assert_eq!(
            h("http://api.example.test/metrics/x").as_deref(),
            Some("session=abc; wide=1")
        );
        assert_eq!(
            h("http://db.example.test/metrics").as_deref(),
            Some("wide=1")
        );
        assert_eq!(h("http://elsewhere.test/"), None);
        // Without a Path attribute, the path defaults to the login URL's directory.
        let c = parse_set_cookie("k=v", &login).unwrap();
        assert_eq!(c.path, "/auth");
    }
}
