//! The HTTP server shared by listener plugins: hyper 1 over tokio, optional TLS (Telegraf's
//! `tls_cert`/`tls_key`/`tls_allowed_cacerts`), bounded body reading with gzip, and a
//! graceful stop when the service context's shutdown flag flips.

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::registry::{BuildError, parse_config};

pub type Resp = Response<Full<Bytes>>;

/// Telegraf's server-side TLS options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CAs whose client certificates are accepted; set means client certificates are required.
    #[serde(default)]
    pub tls_allowed_cacerts: Vec<PathBuf>,
    /// Oldest TLS version accepted: "TLS12" (rustls' floor, the default) or "TLS13".
    #[serde(default)]
    pub tls_min_version: Option<String>,
}

pub const TLS_SERVER_KEYS: &[&str] = &[
    "tls_cert",
    "tls_key",
    "tls_allowed_cacerts",
    "tls_min_version",
];

impl TlsServerConfig {
    /// Removes the TLS keys from a plugin's table and parses them.
    pub fn take(table: &mut toml::Table) -> Result<Self, BuildError> {
        let mut tls = toml::Table::new();
        for key in TLS_SERVER_KEYS {
            if let Some(v) = table.remove(*key) {
                tls.insert((*key).to_string(), v);
            }
        }
        parse_config(tls)
    }

    /// The rustls config, or `None` for plain HTTP.
    pub fn build(&self) -> Result<Option<Arc<rustls::ServerConfig>>, BuildError> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            _ => return Err(anyhow::anyhow!("tls_cert and tls_key must be given together").into()),
        };
        crate::common::http::install_crypto_provider();
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {what} {}: {e}", p.display()))
        };
        let certs = CertificateDer::pem_slice_iter(&read(cert, "tls_cert")?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("tls_cert {}: {e}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(key, "tls_key")?)
            .map_err(|e| anyhow::anyhow!("tls_key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self
            .tls_min_version
            .as_deref()
            .unwrap_or("")
        {
            "" | "TLS10" | "TLS11" | "TLS12" => &[&rustls::version::TLS13, &rustls::version::TLS12],
            "TLS13" => &[&rustls::version::TLS13],
            other => {
                return Err(anyhow::anyhow!(
                        "tls_min_version must be \"TLS12\" or \"TLS13\" (TLS 1.0 and 1.1 are not offered), not {other:?}"
                    )
                    .into());
            }
        };
        if matches!(self.tls_min_version.as_deref(), Some("TLS10" | "TLS11")) {
            tracing::warn!(
                "tls_min_version = {:?} has no effect: sonde's TLS accepts TLS 1.2 and 1.3 only",
                self.tls_min_version.as_deref().unwrap_or_default()
            );
        }
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?;
        let builder = if self.tls_allowed_cacerts.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for ca in &self.tls_allowed_cacerts {
                for c in CertificateDer::pem_slice_iter(&read(ca, "tls_allowed_cacerts")?) {
                    let c = c.map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
                }
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| anyhow::anyhow!("tls_allowed_cacerts: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| anyhow::anyhow!("tls_cert/tls_key: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// Telegraf's `service_address` form: ":8186" means every interface.
pub fn normalize_address(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

/// Checks a listen address when the config is loaded: `host:port`, `[v6]:port` or `:port`,
/// with a port number. A bare port ("8186") or a missing port is refused here rather than
/// when sonde starts.
pub fn check_address(addr: &str) -> Result<(), String> {
    let a = normalize_address(addr);
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(format!(
            "{addr:?} is not a listen address: write host:port, or :port for every interface"
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{addr:?}: {port:?} is not a port number"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{addr:?}: no host before the port"));
    }
    Ok(())
}

/// Binds a TCP listener, with an error that names the address.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let a = normalize_address(addr);
    TcpListener::bind(&a)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// A listener bound by `ServiceInput::start`, or bound now (reload, `--test`).
pub async fn bound_or_bind(bound: Option<TcpListener>, addr: &str) -> anyhow::Result<TcpListener> {
    match bound {
        Some(l) => Ok(l),
        None => bind(addr).await,
    }
}

pub struct ServerOptions {
    /// Limit on reading a request's headers (the body is bounded by the handler).
    pub read_timeout: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` becomes true, then stops accepting, lets
/// in-flight requests finish (up to 5s) and returns.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    opts: ServerOptions,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let tls = opts.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    backoff.failed(&e, "HTTP listener").await;
                    continue;
                }
            },
            _ = shutdown.changed() => continue,
        };
        backoff.succeeded();
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let read_timeout = opts.read_timeout;
        conns.spawn(async move {
            match tls {
                None => {
                    serve_conn(TokioIo::new(stream), peer, handler, read_timeout, shutdown).await
                }
                Some(acc) => match tokio::time::timeout(read_timeout, acc.accept(stream)).await {
                    Ok(Ok(s)) => {
                        serve_conn(TokioIo::new(s), peer, handler, read_timeout, shutdown).await
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// Like [`serve`], on a unix stream socket (Telegraf's `unix://` service addresses). A unix
/// client has no IP address: its requests carry the [`PeerAddr`] 0.0.0.0:0.
pub async fn serve_unix<F, Fut>(
    listener: tokio::net::UnixListener,
    opts: ServerOptions,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let tls = opts.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    backoff.failed(&e, "HTTP listener (unix socket)").await;
                    continue;
                }
            },
            _ = shutdown.changed() => continue,
        };
        backoff.succeeded();
        while conns.try_join_next().is_some() {}
        let (handler, tls, shutdown) = (handler.clone(), tls.clone(), shutdown.clone());
        let read_timeout = opts.read_timeout;
        conns.spawn(async move {
            match tls {
                None => {
                    serve_conn(
                        TokioIo::new(stream),
                        unspecified,
                        handler,
                        read_timeout,
                        shutdown,
                    )
                    .await
                }
                Some(acc) => match tokio::time::timeout(read_timeout, acc.accept(stream)).await {
                    Ok(Ok(s)) => {
                        serve_conn(
                            TokioIo::new(s),
                            unspecified,
                            handler,
                            read_timeout,
                            shutdown,
                        )
                        .await
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// Paces an accept loop after errors. Running out of file descriptors (EMFILE, ENFILE) or
/// buffers persists while connections wait in the backlog, and the listening socket stays
/// readable: retrying at once spins a core and floods the log. Waits 10 ms after the first
/// error of a run, doubling up to 1 s, and logs the first error of a run and every 100th.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// Consecutive failures.
    errors: u32,
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    /// The wait after the `n`th consecutive failure (1-based).
    pub fn delay(n: u32) -> Duration {
        Self::FIRST
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(Self::MAX)
    }

    /// Logs (rate-limited) and waits before the next accept.
    pub async fn failed(&mut self, e: &std::io::Error, what: &str) {
        self.errors = self.errors.saturating_add(1);
        if self.errors % 100 == 1 {
            tracing::warn!(
                error = %e,
                consecutive = self.errors,
                "{what}: accepting a connection failed; retrying with backoff"
            );
        }
        tokio::time::sleep(Self::delay(self.errors)).await;
    }

    /// A connection was accepted: the next error starts a new run.
    pub fn succeeded(&mut self) {
        self.errors = 0;
    }
}

/// The client's address, put in every request's extensions by [`serve`] (for allow-lists).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The most a connection's read buffer grows to (hyper's default is about 400 KiB). A body's
/// chunks are split off that buffer, so each refill of a large one was a new allocation:
/// above malloc's mmap threshold, fresh pages the kernel zeroed as recv wrote into them.
/// At 64 KiB the buffers come from, and go back to, the allocator's free lists.
const READ_BUF_MAX: usize = 64 * 1024;

async fn serve_conn<I, F, Fut>(
    io: I,
    peer: std::net::SocketAddr,
    handler: F,
    read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        let f = handler(req);
        async move { Ok::<_, std::convert::Infallible>(f.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    builder.header_read_timeout(read_timeout);
    builder.max_buf_size(READ_BUF_MAX);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Timeout,
    Bad(String),
    /// A `Content-Encoding` other than gzip or identity: answered 415, never read as text.
    UnsupportedEncoding(String),
}

impl BodyError {
    /// The status a listener answers with, and a message for the client.
    pub fn status(&self, limit: usize) -> (StatusCode, String) {
        match self {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("http: request body too large (max_body_size is {limit} bytes)"),
            ),
            BodyError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "timed out reading the request body".into(),
            ),
            BodyError::Bad(m) => (StatusCode::BAD_REQUEST, m.clone()),
            BodyError::UnsupportedEncoding(e) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {e:?} (gzip or identity are accepted)"),
            ),
        }
    }
}

/// How a request body is encoded: `Ok(true)` for gzip, `Ok(false)` for none (absent, empty or
/// `identity`), an error naming anything else (deflate, br, zstd, a list of codings, ...).
pub fn content_encoding(headers: &http::HeaderMap) -> Result<bool, BodyError> {
    let mut gzip = false;
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(text) = v.to_str() else {
            return Err(BodyError::UnsupportedEncoding(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        };
        for coding in text.split(',').map(str::trim) {
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                if gzip {
                    // gzip applied twice: not something a client sends; refuse, not guess.
                    return Err(BodyError::UnsupportedEncoding(text.to_string()));
                }
                gzip = true;
            } else if !(coding.is_empty() || coding.eq_ignore_ascii_case("identity")) {
                return Err(BodyError::UnsupportedEncoding(text.to_string()));
            }
        }
    }
    Ok(gzip)
}

/// A request body read whole. Its buffer goes back to a small pool when it is dropped: a
/// listener under load then reads each body into memory it already has, where a fresh buffer
/// of a few hundred KB cost a page fault for every page, every request.
pub struct Body(Vec<u8>);

/// Buffers kept for the next bodies, at most this many bytes of them.
const KEPT_BODY_BYTES: usize = 4 << 20;

static SPARE_BODIES: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

impl Body {
    /// An empty body with room for `n` bytes, in a kept buffer if there is one.
    fn with_room(n: usize) -> Body {
        let mut v = SPARE_BODIES
            .lock()
            .ok()
            .and_then(|mut kept| kept.pop())
            .unwrap_or_default();
        v.clear();
        v.reserve(n);
        Body(v)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body(v)
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 || v.capacity() > KEPT_BODY_BYTES {
            return;
        }
        if let Ok(mut kept) = SPARE_BODIES.lock() {
            let held: usize = kept.iter().map(Vec::capacity).sum();
            if held + v.capacity() <= KEPT_BODY_BYTES {
                kept.push(v);
            }
        }
    }
}

/// Reads a request body of at most `limit` bytes (after gunzipping when the request says
/// `Content-Encoding: gzip`), within `timeout`. Any other encoding is refused before the body
/// is read ([`BodyError::UnsupportedEncoding`], a 415).
pub async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Body, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let gzip = content_encoding(req.headers())?;
    let mut body = Limited::new(req.into_body(), limit);
    // Copied into one buffer frame by frame as they arrive (sized by Content-Length when
    // given, up to a bound a client that declares much and sends little cannot make large),
    // rather than all frames collected and then copied: a body is held once, not twice.
    let read = async {
        let mut buf = Body::with_room(declared.map_or(0, |n| n.min(4 << 20) as usize));
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.0.extend_from_slice(&data);
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(buf)
    };
    let read = match tokio::time::timeout(timeout, read).await {
        Err(_) => return Err(BodyError::Timeout),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(BodyError::TooLarge);
        }
        Ok(Err(e)) => return Err(BodyError::Bad(format!("reading the body: {e}"))),
        Ok(Ok(b)) => b,
    };
    if !gzip {
        return Ok(read);
    }
    let mut out = Body::with_room(read.len() * 4);
    let mut dec = flate2::read::MultiGzDecoder::new(&read[..]).take(limit as u64 + 1);
    dec.read_to_end(&mut out.0)
        .map_err(|e| BodyError::Bad(format!("bad gzip body: {e}")))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(out)
}

/// A response with a body and content type.
pub fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A Retry-After header value in whole seconds, at least 1.
pub fn retry_after_value(d: std::time::Duration) -> http::HeaderValue {
    http::HeaderValue::from(d.as_secs_f64().ceil().max(1.0) as u64)
}

/// A response without a body.
pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// The value of query parameter `key` (percent-decoded), if present.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` (form encoding) of a query component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a `Basic` Authorization header into (user, password).
pub fn basic_auth(req: &Request<Incoming>) -> Option<(String, String)> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let enc = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let dec = base64_decode(enc.trim())?;
    let s = String::from_utf8(dec).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Standard base64, padded or not (clients differ).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(s).ok()
}

/// Compares secrets without leaking their contents through timing.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_and_base64() {
        assert_eq!(
            query_param(Some("db=my%20db&precision=s"), "db").as_deref(),
            Some("my db")
        );
        assert_eq!(query_param(Some("db=x"), "rp"), None);
        assert_eq!(
            query_param(Some("q=SHOW+DATABASES"), "q").as_deref(),
            Some("SHOW DATABASES")
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("@@").is_none());
        assert!(secret_eq("abc", "abc") && !secret_eq("abc", "abd") && !secret_eq("a", "ab"));
        assert_eq!(normalize_address(":8186"), "0.0.0.0:8186");
    }

    #[test]
    fn a_dropped_body_lends_its_buffer_to_the_next_up_to_the_bound() {
        let body = Body::from(b"m v=1\n".repeat(1000));
        let (at, room) = (body.as_ptr(), body.0.capacity());
        drop(body);
        let mut next = Body::with_room(10);
        assert!(next.is_empty());
        assert_eq!((next.as_ptr(), next.0.capacity()), (at, room));
        // Taken out, so that it does not go back to the pool.
        drop(std::mem::take(&mut next.0));
        drop(next);
        drop(Body::from(Vec::<u8>::with_capacity(KEPT_BODY_BYTES + 1)));
        for _ in 0..3 {
            drop(Body::from(Vec::<u8>::with_capacity(KEPT_BODY_BYTES / 2)));
        }
        let kept = SPARE_BODIES.lock().unwrap();
        assert_eq!(kept.len(), 2, "two halves fill the bound");
        assert!(kept.iter().map(Vec::capacity).sum::<usize>() <= KEPT_BODY_BYTES);
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;

    #[test]
    fn only_gzip_and_identity_encodings_are_read() {
        let enc = |values: &[&[u8]]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_bytes(v).unwrap(),
                );
            }
            content_encoding(&h)
        };
        assert!(matches!(enc(&[]), Ok(false)));
        assert!(matches!(enc(&[b"identity"]), Ok(false)));
        assert!(matches!(enc(&[b""]), Ok(false)));
        assert!(matches!(enc(&[b"GZIP"]), Ok(true)));
        assert!(matches!(enc(&[b"identity, gzip"]), Ok(true)));
        assert!(matches!(enc(&[b"x-gzip"]), Ok(true)));
        let bad: [&[&[u8]]; 6] = [
            &[b"deflate"],
            &[b"br"],
            &[b"zstd"],
            &[b"gzip, deflate"],
            &[b"gzip", b"gzip"],
            &[b"gzip\xff"],
        ];
        for bad in bad {
            let e = enc(bad).unwrap_err();
            assert!(matches!(e, BodyError::UnsupportedEncoding(_)), "{bad:?}");
            assert_eq!(e.status(1).0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }

    /// Bodies many times the bounded read buffer still arrive whole, one after another on
    /// a kept-alive connection.
    #[tokio::test]
    async fn bodies_pass_the_bounded_read_buffer_whole() {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let opts = ServerOptions {
            read_timeout: Duration::from_secs(5),
            tls: None,
        };
        // Counts and sums the bytes itself (read_body's buffer pool is shared by the tests).
        let handler = |req: Request<Incoming>| async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
            respond(
                StatusCode::OK,
                "text/plain",
                format!("{} {sum}", body.len()),
            )
        };
        let server = tokio::spawn(serve(listener, opts, handler, shutdown));
        let mut c = tokio::io::BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        for n in [3 << 20, 10, READ_BUF_MAX * 5 + 7] {
            let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let head = format!("POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
            c.get_mut().write_all(head.as_bytes()).await.unwrap();
            c.get_mut().write_all(&body).await.unwrap();
            let (mut line, mut len) = (String::new(), 0);
            while line != "\r\n" {
                line.clear();
                c.read_line(&mut line).await.unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut answer = vec![0; len];
            c.read_exact(&mut answer).await.unwrap();
            let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
            assert_eq!(String::from_utf8(answer).unwrap(), format!("{n} {sum}"));
        }
        drop(c);
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[test]
    fn accept_backoff_grows_to_a_ceiling() {
        assert_eq!(AcceptBackoff::delay(1), AcceptBackoff::FIRST);
        assert_eq!(AcceptBackoff::delay(2), AcceptBackoff::FIRST * 2);
        assert_eq!(AcceptBackoff::delay(30), AcceptBackoff::MAX);
        assert_eq!(AcceptBackoff::delay(u32::MAX), AcceptBackoff::MAX);
    }
}

#[cfg(test)]
mod address_tests {
    use super::check_address;

    #[test]
    fn listen_addresses_are_checked_when_loading() {
        for ok in [
            ":8186",
            "0.0.0.0:8186",
            "127.0.0.1:0",
            "[::1]:9273",
            "localhost:80",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "8186",
            "127.0.0.1",
            "127.0.0.1:http",
            ":99999",
            "[::1]",
            " :80",
        ] {
            assert!(check_address(bad).is_err(), "{bad} accepted");
        }
        assert!(check_address("8186").unwrap_err().contains("host:port"));
    }
}
