//! The PostgreSQL client shared by `inputs.postgresql` and `inputs.postgresql_extensible`:
//! Telegraf's `address` (a `postgres://` URL or libpq `key=value` pairs), the `server` tag made
//! from it, TLS with rustls (libpq's `sslmode` semantics), one connection kept across gathers
//! and reopened after an error, and column values mapped to typed fields.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, Row, Statement};

use crate::model::FieldValue;

/// Telegraf's address when none (or just `localhost`) is given.
pub const DEFAULT_ADDRESS: &str = "host=localhost sslmode=disable";

/// A parsed `address`: its key/value pairs in the order written, and whether it was a URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub pairs: Vec<(String, String)>,
    pub url: bool,
}

impl Address {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `server` tag: Telegraf's sanitized address. A URL becomes sorted `key=value` pairs;
    /// libpq pairs keep their order. `password` and every `ssl*` key are left out.
    pub fn server_tag(&self) -> String {
        let keep = |k: &str| k != "password" && !k.starts_with("ssl");
        let mut parts: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, v)| keep(k) && !v.is_empty())
            .map(|(k, v)| format!("{k}={}", escape_value(v)))
            .collect();
        if self.url {
            parts.sort();
        }
        parts.join(" ")
    }

    /// The database connected to (`dbname`, else the user's name, else `postgres`).
    pub fn database(&self) -> String {
        self.get("dbname")
            .or(self.get("database"))
            .map(String::from)
            .unwrap_or_else(|| "postgres".into())
    }
}

/// libpq-style escaping of a value for the tag (backslash before space, quote and backslash).
fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ' ' | '\'' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses an `address`: `postgres://` / `postgresql://` URL or libpq `key=value` pairs.
pub fn parse_address(s: &str) -> Result<Address, String> {
    let s = s.trim();
    if s.is_empty() || s == "localhost" {
        return parse_address(DEFAULT_ADDRESS);
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return parse_url(s).map(|pairs| Address { pairs, url: true });
    }
    if s.contains("://") {
        return Err("expected a postgres:// or postgresql:// URL or key=value pairs".into());
    }
    parse_pairs(s).map(|pairs| Address { pairs, url: false })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8".to_string())
}

fn parse_url(s: &str) -> Result<Vec<(String, String)>, String> {
    let rest = s.split_once("://").map(|x| x.1).unwrap_or_default();
    let (rest, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let mut pairs = Vec::new();
    let mut push = |k: &str, v: String| {
        if !v.is_empty() {
            pairs.push((k.to_string(), v));
        }
    };
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            push("user", percent_decode(u)?);
            if let Some(p) = p {
                push("password", percent_decode(p)?);
            }
            hp
        }
        None => authority,
    };
    // [v6]:port, host:port, host
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| format!("bad host in {hostport:?}"))?;
        (
            h.to_string(),
            after.strip_prefix(':').unwrap_or("").to_string(),
        )
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (percent_decode(h)?, p.to_string()),
            None => (percent_decode(hostport)?, String::new()),
        }
    };
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return Err(format!("bad port {port:?}"));
    }
    push("host", host);
    push("port", port);
    push("dbname", percent_decode(path)?);
    for kv in query.unwrap_or("").split('&').filter(|x| !x.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(&v.replace('+', " "))?;
        let k = percent_decode(k)?;
        push(&k, v);
    }
    Ok(pairs)
}

fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(format!("missing \"=\" after {key:?}"));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => return Err(format!("unterminated quoted value of {key:?}")),
                    Some('\\') => value.push(it.next().ok_or("trailing backslash")?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    value.push(it.next().ok_or("trailing backslash")?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What is needed to open a connection (built once from the address).
#[derive(Clone)]
pub struct ConnectOptions {
    pub config: tokio_postgres::Config,
    pub tls_mode: TlsMode,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password; keep it that way.
        f.debug_struct("ConnectOptions")
            .field("config", &self.config)
            .field("tls_mode", &self.tls_mode)
            .finish()
    }
}

/// Runtime parameters are sent in the startup packet's `options` as `-c key=value`.
fn escape_option(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if c == ' ' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn duration_secs(key: &str, v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{key}: expected whole seconds, got {v:?}"))
}

impl ConnectOptions {
    /// Builds the connection options from an address, with libpq's environment defaults
    /// (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`).
    pub fn new(addr: &Address) -> Result<ConnectOptions, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut c = tokio_postgres::Config::new();
        let mut options: Vec<String> = Vec::new();
        let mut mode = None;
        let (mut rootcert, mut cert, mut key) = (None, None, None);
        let mut host_set = false;
        let mut user_set = false;
        let mut port_set = false;
        let mut fallback_app = None;
        for (k, v) in &addr.pairs {
            match k.as_str() {
                "host" => {
                    for h in v.split(',') {
                        if h.starts_with('/') || h.starts_with('@') {
                            // Telegraf accepts the socket file itself: keep its directory.
                            let dir = strip_socket_name(h);
                            c.host_path(dir);
                        } else {
                            c.host(h);
                        }
                    }
                    host_set = true;
                }
                "hostaddr" => {
                    for h in v.split(',') {
                        c.hostaddr(h.parse().map_err(|_| format!("hostaddr: bad IP {h:?}"))?);
                    }
                }
                "port" => {
                    for p in v.split(',') {
                        c.port(p.parse().map_err(|_| format!("port: bad number {p:?}"))?);
                    }
                    port_set = true;
                }
                "user" => {
                    c.user(v);
                    user_set = true;
                }
                "password" => {
                    c.password(v.as_str());
                }
                "dbname" | "database" => {
                    c.dbname(v);
                }
                "application_name" => {
                    c.application_name(v);
                }
                "options" => options.push(v.clone()),
                "connect_timeout" => {
                    c.connect_timeout(duration_secs(k, v)?);
                }
                "keepalives" => {
                    c.keepalives(v != "0");
                }
                "keepalives_idle" => {
                    c.keepalives_idle(duration_secs(k, v)?);
                }
                "target_session_attrs" => {
                    c.target_session_attrs(match v.as_str() {
                        "any" => tokio_postgres::config::TargetSessionAttrs::Any,
                        "read-write" => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
                        "read-only" => tokio_postgres::config::TargetSessionAttrs::ReadOnly,
                        _ => return Err(format!("target_session_attrs: unknown value {v:?}")),
                    });
                }
                "channel_binding" => {
                    c.channel_binding(match v.as_str() {
                        "disable" => tokio_postgres::config::ChannelBinding::Disable,
                        "prefer" => tokio_postgres::config::ChannelBinding::Prefer,
                        "require" => tokio_postgres::config::ChannelBinding::Require,
                        _ => return Err(format!("channel_binding: unknown value {v:?}")),
                    });
                }
                "keepalives_interval" => {
                    c.keepalives_interval(duration_secs(k, v)?);
                }
                "keepalives_count" => {
                    c.keepalives_retries(
                        v.parse()
                            .map_err(|_| format!("keepalives_count: bad number {v:?}"))?,
                    );
                }
                "tcp_user_timeout" => {
                    let ms: u64 = v
                        .parse()
                        .map_err(|_| format!("tcp_user_timeout: bad number {v:?}"))?;
                    c.tcp_user_timeout(Duration::from_millis(ms));
                }
                "load_balance_hosts" => {
                    c.load_balance_hosts(match v.as_str() {
                        "disable" => tokio_postgres::config::LoadBalanceHosts::Disable,
                        "random" => tokio_postgres::config::LoadBalanceHosts::Random,
                        _ => return Err(format!("load_balance_hosts: unknown value {v:?}")),
                    });
                }
                "fallback_application_name" => fallback_app = Some(v.clone()),
                // GSSAPI encryption is not available: "disable" and "prefer" connect without.
                "gssencmode" if v != "require" => {}
                "gssencmode" | "passfile" | "service" | "requirepeer" | "krbsrvname" | "gsslib"
                | "replication" => {
                    return Err(format!("{k} is not supported"));
                }
                "sslmode" => mode = Some(parse_mode(v)?),
                "sslrootcert" => rootcert = Some(v.clone()),
                "sslcert" => cert = Some(PathBuf::from(v)),
                "sslkey" => key = Some(PathBuf::from(v)),
                "sslpassword" | "sslcrl" | "sslcompression" | "sslsni" => {
                    return Err(format!("{k} is not supported"));
                }
                // Anything else is a run-time parameter (statement_timeout, search_path, ...),
                // as pgx treats it.
                _ => options.push(format!("-c {k}={}", escape_option(v))),
            }
        }
        if !host_set {
            match env("PGHOST") {
                Some(h) if h.starts_with('/') => {
                    c.host_path(h);
                }
                Some(h) => {
                    c.host(h);
                }
                None => {
                    c.host("localhost");
                }
            }
        }
        if !port_set {
            let port = env("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432);
            c.port(port);
        }
        if !user_set {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "postgres".into());
            c.user(user);
        }
        if c.get_password().is_none()
            && let Some(p) = env("PGPASSWORD")
        {
            c.password(p);
        }
        if c.get_dbname().is_none()
            && let Some(d) = env("PGDATABASE")
        {
            c.dbname(d);
        }
        if !options.is_empty() {
            c.options(options.join(" "));
        }
        if c.get_application_name().is_none() {
            c.application_name(fallback_app.unwrap_or_else(|| "sonde".into()));
        }
        let mut mode = match mode {
            Some(m) => m,
            None => env("PGSSLMODE")
                .map(|m| parse_mode(&m))
                .transpose()?
                .unwrap_or(TlsMode::Prefer),
        };
        // libpq: sslmode=require with a root certificate checks the chain like verify-ca.
        if mode == TlsMode::Require && rootcert.is_some() {
            mode = TlsMode::VerifyCa;
        }
        // TLS is not used on Unix sockets (libpq ignores sslmode there).
        let unix = c
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        if unix {
            mode = TlsMode::Disable;
        }
        c.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = if mode == TlsMode::Disable {
            None
        } else {
            Some(Arc::new(tls_config(mode, rootcert.as_deref(), cert, key)?))
        };
        Ok(ConnectOptions {
            config: c,
            tls_mode: mode,
            tls,
        })
    }
}

/// `/run/postgresql/.s.PGSQL.5432` → `/run/postgresql`.
fn strip_socket_name(h: &str) -> &str {
    match h.rsplit_once("/.s.PGSQL.") {
        Some((dir, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => dir,
        _ => h,
    }
}

fn parse_mode(v: &str) -> Result<TlsMode, String> {
    Ok(match v {
        "disable" => TlsMode::Disable,
        "allow" | "prefer" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        _ => {
            return Err(format!(
                "sslmode: unknown value {v:?} (disable, allow, prefer, require, verify-ca, verify-full)"
            ));
        }
    })
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {what} {}: {e}", path.display()))
}

fn tls_config(
    mode: TlsMode,
    rootcert: Option<&str>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        // libpq's prefer/require: encryption without checking who the server is.
        TlsMode::Prefer | TlsMode::Require => Arc::new(crate::common::http::AcceptAny::new()),
        _ => {
            let webpki = match rootcert {
                Some("system") => None,
                _ => {
                    let path = match rootcert {
                        Some(p) => PathBuf::from(p),
                        None => {
                            let home = std::env::var_os("HOME").unwrap_or_default();
                            PathBuf::from(home).join(".postgresql/root.crt")
                        }
                    };
                    let mut roots = rustls::RootCertStore::empty();
                    for c in CertificateDer::pem_slice_iter(&read_file(&path, "sslrootcert")?) {
                        let c = c.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                        roots
                            .add(c)
                            .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                    }
                    if roots.is_empty() {
                        return Err(format!("sslrootcert {}: no certificate", path.display()));
                    }
                    Some(
                        rustls::client::WebPkiServerVerifier::builder_with_provider(
                            Arc::new(roots),
                            provider.clone(),
                        )
                        .build()
                        .map_err(|e| format!("sslrootcert: {e}"))?,
                    )
                }
            };
            let inner: Arc<dyn ServerCertVerifier> = match webpki {
                Some(v) => v,
                None => Arc::new(
                    rustls_platform_verifier::Verifier::new(provider.clone())
                        .map_err(|e| format!("loading the system's CA roots: {e}"))?,
                ),
            };
            if mode == TlsMode::VerifyCa {
                Arc::new(ChainOnly(inner))
            } else {
                inner
            }
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(&read_file(&cert, "sslcert")?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&read_file(&key, "sslkey")?)
                .map_err(|e| format!("sslkey {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("sslcert and sslkey must be given together".into()),
    };
    // PostgreSQL 17's direct TLS negotiation wants ALPN "postgresql"; harmless otherwise.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS hook on tokio-rustls.
#[derive(Clone)]
struct RustlsConnect(Arc<rustls::ClientConfig>);

struct RustlsConnectOne {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectOne;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectOne, Self::Error> {
        let name = ServerName::try_from(domain.to_string())?;
        Ok(RustlsConnectOne {
            config: self.0.clone(),
            name,
        })
    }
}

type ConnectFuture<S> =
    Pin<Box<dyn Future<Output = std::io::Result<RustlsStream<S>>> + Send + 'static>>;

impl<S> TlsConnect<S> for RustlsConnectOne
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = ConnectFuture<S>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let s = connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(s)))
        })
    }
}

struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929): a hash of the server's certificate, for
    /// SCRAM-SHA-256-PLUS.
    fn channel_binding(&self) -> ChannelBinding {
        match self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            Some(cert) => ChannelBinding::tls_server_end_point(end_point_hash(cert)),
            None => ChannelBinding::none(),
        }
    }
}

/// One DER element at the start of `der`: (tag, content, rest).
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The certificate hashed with its signature's hash (SHA-256 for MD5, SHA-1 and anything
/// unrecognised), as RFC 5929 asks.
fn end_point_hash(cert: &[u8]) -> Vec<u8> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ... }, ... }
    let oid = der_element(cert)
        .and_then(|(_, body, _)| der_element(body))
        .and_then(|(_, _, after_tbs)| der_element(after_tbs))
        .and_then(|(_, alg, _)| der_element(alg))
        .map(|(_, oid, _)| oid)
        .unwrap_or_default();
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    let alg = if SHA384.contains(&oid) {
        &ring::digest::SHA384
    } else if SHA512.contains(&oid) {
        &ring::digest::SHA512
    } else {
        &ring::digest::SHA256
    };
    ring::digest::digest(alg, cert).as_ref().to_vec()
}

/// Parses and checks the connection options both PostgreSQL inputs share (`address`,
/// `prepared_statements`, `max_lifetime`, `max_idle`, `max_open`). An error names its key;
/// warnings (an option without effect) are added to `warnings`.
pub fn connection(
    address: &str,
    prepared: bool,
    max_lifetime: Duration,
    max_idle: i64,
    max_open: i64,
    warnings: &mut Vec<String>,
) -> Result<(Address, Connection), (&'static str, String)> {
    let addr = parse_address(address).map_err(|e| ("address", e))?;
    let opts = ConnectOptions::new(&addr).map_err(|e| ("address", e))?;
    if max_open < 0 {
        return Err(("max_open", "must not be negative".into()));
    }
    if max_idle < 0 {
        return Err(("max_idle", "must not be negative".into()));
    }
    if max_open > 1 {
        warnings.push(format!(
            "max_open = {max_open} has no effect: sonde runs the queries one after another on one connection"
        ));
    }
    let lifetime = (!max_lifetime.is_zero()).then_some(max_lifetime);
    Ok((addr, Connection::new(opts, prepared, lifetime)))
}

/// The name an input's log lines carry: its id, or `default` (the plugin's name) without one.
pub fn input_id(id: &str, default: &str) -> String {
    if id.is_empty() { default } else { id }.to_string()
}

/// Keeps an outage (a server down, a gather failing the same way) to one log line: the first
/// failed gather is an ordinary error, the following ones are [`RepeatedError`]s, which the
/// agent counts but logs at debug level; the recovery is logged.
#[derive(Default)]
pub struct Outage {
    failures: u64,
}

impl Outage {
    pub fn failed(&mut self, e: anyhow::Error) -> anyhow::Error {
        self.failures += 1;
        if self.failures == 1 {
            e
        } else {
            anyhow::Error::new(crate::plugin::RepeatedError(format!(
                "{e:#} (failed gather {} in a row)",
                self.failures
            )))
        }
    }

    pub fn ok(&mut self, id: &str, server: &str) {
        if self.failures > 0 {
            tracing::info!(
                input = id,
                "{server}: gathering again after {} failed gathers",
                self.failures
            );
            self.failures = 0;
        }
    }
}

/// One open connection with its prepared statements.
struct Session {
    client: Client,
    opened: Instant,
    statements: HashMap<String, Statement>,
    /// `server_version_num`, e.g. 150004.
    version: i32,
}

/// The connection of one plugin instance: opened on first use, kept across gathers, reopened
/// after an error that closed it, after `max_lifetime`, or after a gather that was cut off.
pub struct Connection {
    opts: ConnectOptions,
    prepared: bool,
    max_lifetime: Option<Duration>,
    session: Option<Session>,
    /// Set while a query runs; still set at the next use means the last gather was cut off
    /// (timeout) mid-query, and the connection is in an unknown state.
    busy: bool,
}

impl Connection {
    pub fn new(opts: ConnectOptions, prepared: bool, max_lifetime: Option<Duration>) -> Self {
        Connection {
            opts,
            prepared,
            max_lifetime,
            session: None,
            busy: false,
        }
    }

    /// Opens the connection if there is none usable; returns the server's version number.
    pub async fn ensure(&mut self) -> Result<i32, String> {
        let stale = self.session.as_ref().is_some_and(|s| {
            s.client.is_closed()
                || self.busy
                || self.max_lifetime.is_some_and(|l| s.opened.elapsed() >= l)
        });
        if stale {
            self.close();
        }
        self.busy = false;
        if let Some(s) = &self.session {
            return Ok(s.version);
        }
        let client = self.connect().await?;
        let mut s = Session {
            client,
            opened: Instant::now(),
            statements: HashMap::new(),
            version: 0,
        };
        let row = query_on(
            &mut s,
            self.prepared,
            "SELECT current_setting('server_version_num')::int4",
        )
        .await
        .map_err(|e| describe(&e))?;
        s.version = row
            .first()
            .and_then(|r| r.try_get::<_, i32>(0).ok())
            .unwrap_or(0);
        let v = s.version;
        self.session = Some(s);
        Ok(v)
    }

    async fn connect(&self) -> Result<Client, String> {
        let cfg = &self.opts.config;
        let client = match &self.opts.tls {
            None => {
                let (client, conn) = cfg
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| describe(&e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("postgresql connection closed: {}", describe(&e));
                    }
                });
                client
            }
            Some(tls) => {
                let (client, conn) = cfg
                    .connect(RustlsConnect(tls.clone()))
                    .await
                    .map_err(|e| describe(&e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("postgresql connection closed: {}", describe(&e));
                    }
                });
                client
            }
        };
        Ok(client)
    }

    /// Whether a connection is open (a failed query may have closed it).
    pub fn is_open(&self) -> bool {
        self.session.is_some()
    }

    /// Closes the connection (the next use opens a new one).
    pub fn close(&mut self) {
        self.session = None;
        self.busy = false;
    }

    /// Runs one query. An error that closed the connection drops it, so that the next use
    /// reconnects; an error in the query alone (syntax, permissions) keeps it.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Row>, String> {
        let Some(s) = self.session.as_mut() else {
            return Err("not connected".into());
        };
        self.busy = true;
        let res = query_on(s, self.prepared, sql).await;
        self.busy = false;
        match res {
            Ok(rows) => Ok(rows),
            Err(e) => {
                if s.client.is_closed() || e.is_closed() {
                    self.session = None;
                } else {
                    // A failed statement may have been dropped server-side.
                    s.statements.remove(sql);
                }
                Err(describe(&e))
            }
        }
    }
}

async fn query_on(
    s: &mut Session,
    prepared: bool,
    sql: &str,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if !prepared {
        // One unnamed statement per query (Parse/Bind/Execute/Sync in one go): what PgBouncer
        // in transaction mode needs, and still typed results.
        return s.client.query_typed(sql, &[]).await;
    }
    let stmt = match s.statements.get(sql) {
        Some(st) => st.clone(),
        None => {
            let st = s.client.prepare(sql).await?;
            s.statements.insert(sql.to_string(), st.clone());
            st
        }
    };
    s.client.query(&stmt, &[]).await
}

/// An error with its causes, and the server's message, detail and hint when it sent them.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    crate::common::http::error_chain(e)
}

/// A column's value, decoded from the binary format by its type.
#[derive(Clone, Debug, PartialEq)]
pub enum PgValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// timestamp / timestamptz, as nanoseconds since the Unix epoch.
    Time(i64),
    /// A type with no field mapping (arrays, json, intervals, ...).
    Other,
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl<'a> FromSql<'a> for PgValue {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let be = |n: usize| -> Result<&[u8], Box<dyn std::error::Error + Sync + Send>> {
            if raw.len() == n {
                Ok(raw)
            } else {
                Err(format!("{ty}: expected {n} bytes, got {}", raw.len()).into())
            }
        };
        Ok(match *ty {
            Type::BOOL => PgValue::Bool(be(1)?[0] != 0),
            Type::INT2 => PgValue::Int(i16::from_be_bytes(be(2)?.try_into()?) as i64),
            Type::INT4 => PgValue::Int(i32::from_be_bytes(be(4)?.try_into()?) as i64),
            Type::INT8 => PgValue::Int(i64::from_be_bytes(be(8)?.try_into()?)),
            Type::OID | Type::XID | Type::CID | Type::REGCLASS | Type::REGPROC => {
                PgValue::Int(u32::from_be_bytes(be(4)?.try_into()?) as i64)
            }
            Type::FLOAT4 => PgValue::Float(f32::from_be_bytes(be(4)?.try_into()?) as f64),
            Type::FLOAT8 => PgValue::Float(f64::from_be_bytes(be(8)?.try_into()?)),
            Type::NUMERIC => PgValue::Float(numeric(raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                PgValue::Text(std::str::from_utf8(raw)?.to_string())
            }
            Type::CHAR => PgValue::Text((be(1)?[0] as char).to_string()),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                let us = i64::from_be_bytes(be(8)?.try_into()?);
                PgValue::Time(us.saturating_add(PG_EPOCH_US).saturating_mul(1000))
            }
            Type::INET | Type::CIDR => PgValue::Text(inet(raw)?),
            Type::PG_LSN => PgValue::Int(i64::from_be_bytes(be(8)?.try_into()?)),
            _ => PgValue::Other,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// NUMERIC's binary form: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(raw: &[u8]) -> Result<f64, Box<dyn std::error::Error + Sync + Send>> {
    if raw.len() < 8 {
        return Err("numeric: short value".into());
    }
    let word = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    let ndigits = word(0) as usize;
    let weight = word(2) as i16 as i32;
    let sign = word(4);
    if raw.len() != 8 + 2 * ndigits {
        return Err("numeric: bad length".into());
    }
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let mut v = 0f64;
    for i in 0..ndigits {
        let d = word(8 + 2 * i) as f64;
        v += d * 10000f64.powi(weight - i as i32);
    }
    Ok(if sign == 0x4000 { -v } else { v })
}

/// INET/CIDR binary form: family, bits, is_cidr, length, address bytes.
fn inet(raw: &[u8]) -> Result<String, Box<dyn std::error::Error + Sync + Send>> {
    if raw.len() < 4 || raw.len() != 4 + raw[3] as usize {
        return Err("inet: bad length".into());
    }
    let bits = raw[1];
    let addr: std::net::IpAddr = match raw[3] {
        4 => <[u8; 4]>::try_from(&raw[4..8])?.into(),
        16 => <[u8; 16]>::try_from(&raw[4..20])?.into(),
        _ => return Err("inet: bad address length".into()),
    };
    let full = if addr.is_ipv4() { 32 } else { 128 };
    Ok(if bits == full {
        addr.to_string()
    } else {
        format!("{addr}/{bits}")
    })
}

impl PgValue {
    /// The field value (NULL, times and unmapped types have none).
    pub fn field(self) -> Option<FieldValue> {
        match self {
            PgValue::Bool(b) => Some(FieldValue::Bool(b)),
            PgValue::Int(i) => Some(FieldValue::Int(i)),
            PgValue::Float(f) => Some(FieldValue::Float(f)),
            PgValue::Text(s) => Some(FieldValue::String(s.into())),
            PgValue::Time(_) | PgValue::Other => None,
        }
    }

    /// The value as a tag (text and numbers).
    pub fn tag(&self) -> Option<String> {
        match self {
            PgValue::Text(s) => Some(s.clone()),
            PgValue::Int(i) => Some(i.to_string()),
            PgValue::Float(f) => Some(f.to_string()),
            PgValue::Bool(b) => Some(b.to_string()),
            PgValue::Time(_) | PgValue::Other => None,
        }
    }
}

/// The column values of a row, by name (NULL → None). A value that cannot be decoded counts
/// as NULL and is reported in `bad`.
pub fn row_values(row: &Row, bad: &mut Vec<String>) -> Vec<(String, Option<PgValue>)> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = match row.try_get::<_, Option<PgValue>>(i) {
                Ok(v) => v,
                Err(e) => {
                    bad.push(format!("column {}: {e}", c.name()));
                    None
                }
            };
            (c.name().to_string(), v)
        })
        .collect()
}

/// Quotes a string as an SQL literal (standard_conforming_strings, on since 9.1).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(a: &Address) -> Vec<(&str, &str)> {
        a.pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn urls_and_pairs_parse_and_sanitize_like_telegraf() {
        let a = parse_address(
            "postgres://bob:s%40cret@db.example:6432/app?sslmode=verify-full&statement_timeout=10000&application_name=my%20app",
        )
        .unwrap();
        assert!(a.url);
        assert_eq!(a.get("password"), Some("s@cret"));
        assert_eq!(a.get("application_name"), Some("my app"));
        assert_eq!(
            a.server_tag(),
            "application_name=my\\ app dbname=app host=db.example port=6432 statement_timeout=10000 user=bob"
        );
        assert_eq!(a.database(), "app");

        let k = parse_address(
            "host=localhost user=postgres password='a b\\'c' sslmode=require sslrootcert=/ca.pem dbname=x",
        )
        .unwrap();
        assert_eq!(
            pairs(&k),
            [
                ("host", "localhost"),
                ("user", "postgres"),
                ("password", "a b'c"),
                ("sslmode", "require"),
                ("sslrootcert", "/ca.pem"),
                ("dbname", "x")
            ]
        );
        // Order kept, password and ssl keys gone (even a quoted password with a space).
        assert_eq!(k.server_tag(), "host=localhost user=postgres dbname=x");
        assert!(!k.server_tag().contains("a b"));

        assert_eq!(parse_address("").unwrap().server_tag(), "host=localhost");
        assert_eq!(
            parse_address("localhost").unwrap().get("sslmode"),
            Some("disable")
        );
        let v6 = parse_address("postgresql://[::1]:5433").unwrap();
        assert_eq!(pairs(&v6), [("host", "::1"), ("port", "5433")]);
        assert!(parse_address("mysql://x").is_err());
        assert!(parse_address("host").is_err());
        assert!(parse_address("password='open").is_err());
        assert!(parse_address("postgres://h:notaport/").is_err());
    }

    #[test]
    fn connect_options_follow_libpq() {
        let o = ConnectOptions::new(
            &parse_address("host=/run/postgresql/.s.PGSQL.5432 user=u sslmode=require").unwrap(),
        )
        .unwrap();
        // Unix socket: the socket file's directory, and no TLS there.
        assert!(matches!(
            &o.config.get_hosts()[0],
            tokio_postgres::config::Host::Unix(p) if p == std::path::Path::new("/run/postgresql")
        ));
        assert_eq!(o.tls_mode, TlsMode::Disable);

        let o = ConnectOptions::new(
            &parse_address("host=h user=u statement_timeout=5000 search_path='a b'").unwrap(),
        )
        .unwrap();
        assert_eq!(
            o.config.get_options(),
            Some("-c statement_timeout=5000 -c search_path=a\\ b")
        );
        assert_eq!(o.tls_mode, TlsMode::Prefer);
        assert!(!format!("{o:?}").contains("secret"));

        let o =
            ConnectOptions::new(&parse_address("host=h user=u password=secret").unwrap()).unwrap();
        assert!(!format!("{o:?}").contains("secret"), "{o:?}");

        let o = ConnectOptions::new(
            &parse_address("host=h channel_binding=require keepalives_count=3 gssencmode=prefer")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            o.config.get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
        assert_eq!(o.config.get_options(), None);
        assert_eq!(o.config.get_application_name(), Some("sonde"));

        for bad in [
            "host=h channel_binding=maybe",
            "host=h gssencmode=require",
            "host=h service=x",
            "host=h sslmode=sometimes",
            "host=h port=x",
            "host=h sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
            "host=h sslmode=require sslcert=/c.pem",
            "host=h connect_timeout=soon",
        ] {
            assert!(
                ConnectOptions::new(&parse_address(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn values_decode_from_binary() {
        let v = |ty: &Type, raw: &[u8]| PgValue::from_sql(ty, raw).unwrap();
        assert_eq!(v(&Type::INT4, &7i32.to_be_bytes()), PgValue::Int(7));
        assert_eq!(
            v(&Type::OID, &u32::MAX.to_be_bytes()),
            PgValue::Int(4294967295)
        );
        assert_eq!(v(&Type::FLOAT8, &1.5f64.to_be_bytes()), PgValue::Float(1.5));
        assert_eq!(v(&Type::NAME, b"db"), PgValue::Text("db".into()));
        assert_eq!(v(&Type::BOOL, &[1]), PgValue::Bool(true));
        // numeric -12345.678: digits 1 2345 6780, weight 1, sign negative, dscale 3
        let mut raw = Vec::new();
        for w in [3u16, 1, 0x4000, 3, 1, 2345, 6780] {
            raw.extend(w.to_be_bytes());
        }
        assert_eq!(v(&Type::NUMERIC, &raw), PgValue::Float(-12345.678));
        assert_eq!(
            v(&Type::TIMESTAMPTZ, &0i64.to_be_bytes()),
            PgValue::Time(946_684_800_000_000_000)
        );
        assert_eq!(
            v(&Type::INET, &[2, 32, 0, 4, 127, 0, 0, 1]),
            PgValue::Text("127.0.0.1".into())
        );
        assert_eq!(v(&Type::JSONB, b"\x01{}"), PgValue::Other);
        assert!(PgValue::from_sql(&Type::INT8, &[1, 2]).is_err());
        assert!(PgValue::from_sql(&Type::NUMERIC, &[0, 5, 0, 0]).is_err());
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        // A skeleton certificate: SEQUENCE { SEQUENCE {} (tbs), SEQUENCE { OID }, BIT STRING }
        let cert = |oid: &[u8]| {
            let mut alg = vec![0x06, oid.len() as u8];
            alg.extend(oid);
            let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
            body.extend(alg);
            body.extend([0x03, 0x01, 0x00]);
            let mut c = vec![0x30, body.len() as u8];
            c.extend(body);
            c
        };
        let ecdsa384 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
        assert_eq!(end_point_hash(&ecdsa384).len(), 48);
        let rsa512 = cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]);
        assert_eq!(end_point_hash(&rsa512).len(), 64);
        let ecdsa256 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        assert_eq!(end_point_hash(&ecdsa256).len(), 32);
        assert_eq!(end_point_hash(b"junk").len(), 32);
    }

    proptest::proptest! {
        #[test]
        fn end_point_hash_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = end_point_hash(&raw);
        }

        /// Whatever a server sends, decoding returns a value or an error, never a panic.
        #[test]
        fn decoding_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            for ty in [Type::NUMERIC, Type::INET, Type::INT8, Type::TEXT, Type::TIMESTAMPTZ, Type::CHAR] {
                let _ = PgValue::from_sql(&ty, &raw);
            }
        }

        #[test]
        fn address_parsing_never_panics(s in "\\PC{0,60}") {
            let _ = parse_address(&s);
            let _ = parse_address(&format!("postgres://{s}"));
        }
    }
}
