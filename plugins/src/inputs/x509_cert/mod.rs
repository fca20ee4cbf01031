//! `inputs.x509_cert`: one metric per certificate of each source (a TLS server's chain, or the
//! certificates of PEM/DER files), with Telegraf's tags and fields: dates, `expiry` (seconds
//! left), and whether the certificate verifies against the trusted roots.

mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use x509_parser::prelude::*;

use crate::common::http::{AcceptAny, TlsClientConfig};
use crate::common::probe::{MAX_CONCURRENT_PROBES, run_bounded};
use crate::config_types::Duration;
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    sources: Vec<String>,
    timeout: Duration,
    /// SNI and verification name for network sources (Telegraf's older name of
    /// `tls_server_name`).
    server_name: Option<String>,
    exclude_root_certs: bool,
    /// Telegraf: `%016x` of the serial (zero-padded to 16 hex digits).
    pad_serial_with_zeroes: bool,
    /// Password of PKCS#12/JKS sources, which sonde does not read yet.
    password: Option<String>,
    /// Connect to network sources through a proxy: `proxy_url`, else `ALL_PROXY`.
    use_proxy: bool,
    proxy_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sources: Vec::new(),
            timeout: Duration::from_secs(5),
            server_name: None,
            exclude_root_certs: false,
            pad_serial_with_zeroes: false,
            password: None,
            use_proxy: false,
            proxy_url: None,
        }
    }
}

/// An HTTP proxy reached with CONNECT: its address and the Proxy-Authorization value.
#[derive(Clone, Debug, PartialEq)]
struct ConnectProxy {
    addr: String,
    auth: Option<String>,
}

fn parse_proxy(u: &str) -> Result<ConnectProxy, String> {
    let url = url::Url::parse(u).map_err(|e| format!("{u:?}: {e}"))?;
    match url.scheme() {
        "http" => {}
        "socks5" | "socks5h" => {
            return Err(format!("{u:?}: SOCKS5 proxies are not supported yet"));
        }
        other => return Err(format!("{u:?}: unsupported proxy scheme {other:?}")),
    }
    let host = url.host_str().ok_or_else(|| format!("{u:?}: no host"))?;
    let addr = format!("{host}:{}", url.port().unwrap_or(80));
    let auth = (!url.username().is_empty()).then(|| {
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let creds = format!(
            "{}:{}",
            dec(url.username()),
            dec(url.password().unwrap_or(""))
        );
        format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, creds.as_bytes())
        )
    });
    Ok(ConnectProxy { addr, auth })
}

/// Opens a tunnel to `host:port` through an HTTP proxy.
async fn connect_via(
    proxy: &ConnectProxy,
    host: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr.as_str())
        .await
        .map_err(|e| format!("connecting to the proxy {}: {e}", proxy.addr))?;
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = &proxy.auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("proxy {}: {e}", proxy.addr))?;
    // Read the answer's head byte by byte: nothing of the tunnel may be consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tcp
            .read(&mut b)
            .await
            .map_err(|e| format!("proxy {}: {e}", proxy.addr))?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(format!("proxy {}: no answer to CONNECT", proxy.addr));
        }
        head.push(b[0]);
    }
    let status = String::from_utf8_lossy(&head);
    let first = status.lines().next().unwrap_or("");
    if first.split_whitespace().nth(1) != Some("200") {
        return Err(format!("proxy {} refused CONNECT: {first}", proxy.addr));
    }
    Ok(tcp)
}

enum Source {
    /// `https://host[:port]` or `tcp://host:port`: a TLS handshake.
    Net {
        shown: String,
        host: String,
        port: u16,
    },
    /// A file path (`file://` or plain), possibly a glob.
    Files { pattern: String },
}

pub struct X509Cert {
    sources: Vec<Source>,
    pad_serial: bool,
    proxy: Option<ConnectProxy>,
    timeout: StdDuration,
    server_name: Option<String>,
    exclude_root_certs: bool,
    /// Verification is skipped with `insecure_skip_verify`.
    verify: bool,
    /// DER of the trusted roots: `tls_ca`, else the system's.
    roots: Arc<Vec<CertificateDer<'static>>>,
    tls: Arc<rustls::ClientConfig>,
}

/// One source's certificates, or why there are none.
struct Fetched {
    source: String,
    /// The name the leaf is checked against (network sources).
    name: Option<String>,
    /// Whether the first certificate is the server's (a chain) rather than a file's list.
    chain: bool,
    certs: Result<Vec<CertificateDer<'static>>, String>,
}

impl X509Cert {
    async fn fetch_net(&self, shown: &str, host: &str, port: u16) -> Fetched {
        let name = self.server_name.clone().unwrap_or_else(|| host.to_string());
        let certs = tokio::time::timeout(self.timeout, async {
            let tcp = match &self.proxy {
                Some(p) => connect_via(p, host, port).await?,
                None => tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(|e| format!("connecting: {e}"))?,
            };
            let sni = ServerName::try_from(name.clone()).map_err(|e| format!("{name:?}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(sni, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (_, conn) = tls.get_ref();
            Ok(conn
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| c.clone().into_owned())
                .collect())
        })
        .await
        .unwrap_or_else(|_| Err(format!("timeout after {:?}", self.timeout)));
        Fetched {
            source: shown.to_string(),
            name: Some(name),
            chain: true,
            certs,
        }
    }

    fn fetch_files(pattern: &str) -> Vec<Fetched> {
        let paths: Vec<PathBuf> = match glob::glob(pattern) {
            Ok(g) => g.filter_map(Result::ok).collect(),
            Err(e) => {
                return vec![Fetched {
                    source: format!("file://{pattern}"),
                    name: None,
                    chain: false,
                    certs: Err(format!("bad glob: {e}")),
                }];
            }
        };
        if paths.is_empty() {
            return vec![Fetched {
                source: format!("file://{pattern}"),
                name: None,
                chain: false,
                certs: Err("no such file".into()),
            }];
        }
        paths
            .into_iter()
            .map(|p| Fetched {
                source: format!("file://{}", p.display()),
                name: None,
                chain: false,
                certs: read_certs(&p),
            })
            .collect()
    }

    fn metrics(
        &self,
        f: &Fetched,
        certs: &[CertificateDer<'static>],
        time: i64,
        acc: &mut Accumulator,
    ) {
        let now = SystemTime::now();
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let parsed: Vec<Option<X509Certificate<'_>>> = certs
            .iter()
            .map(|c| parse_x509_certificate(c).ok().map(|(_, x)| x))
            .collect();
        let roots: Vec<X509Certificate<'_>> = self
            .roots
            .iter()
            .filter_map(|c| parse_x509_certificate(c).ok().map(|(_, x)| x))
            .collect();
        for (i, cert) in parsed.iter().enumerate() {
            let Some(cert) = cert else {
                acc.add_error(format!("{}: certificate {i} does not parse", f.source));
                continue;
            };
            let kind = classify(cert, i == 0 && f.chain);
            if self.exclude_root_certs && i > 0 {
                break;
            }
            let mut m = Metric::new("x509_cert", time).with_kind(ValueType::Gauge);
            add_tags(&mut m, cert, &f.source);
            if self.pad_serial {
                let hex = cert.tbs_certificate.serial.to_str_radix(16);
                m.add_tag("serial_number", format!("{hex:0>16}"));
            }
            m.add_tag("type", kind);
            let start = cert.validity().not_before.timestamp();
            let end = cert.validity().not_after.timestamp();
            m.add_field("age", now_secs - start);
            m.add_field("expiry", end - now_secs);
            m.add_field("startdate", start);
            m.add_field("enddate", end);
            if self.verify {
                let res = if i == 0 {
                    verify::leaf(&certs[0], &certs[1..], &self.roots, f.name.as_deref(), now)
                } else {
                    verify::ca(i, &parsed, &roots, now_secs)
                };
                match res {
                    Ok(()) => {
                        m.add_tag("verification", "valid");
                        m.add_field("verification_code", 0i64);
                    }
                    Err(e) => {
                        m.add_tag("verification", "invalid");
                        m.add_field("verification_code", 1i64);
                        m.add_field("verification_error", e);
                    }
                }
            }
            acc.add(m);
        }
    }
}

/// Telegraf's classification: self-signed is `root`, another CA is `intermediate`, the rest
/// (and the first certificate a server sends) `leaf`.
fn classify(cert: &X509Certificate<'_>, server_leaf: bool) -> &'static str {
    if server_leaf && !(cert.is_ca() && self_signed(cert)) {
        "leaf"
    } else if cert.is_ca() && self_signed(cert) {
        "root"
    } else if cert.is_ca() {
        "intermediate"
    } else {
        "leaf"
    }
}

fn self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
        && cert.verify_signature(Some(cert.public_key())).is_ok()
}

fn first(it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>) -> Option<String> {
    it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
}

fn add_tags(m: &mut Metric, cert: &X509Certificate<'_>, source: &str) {
    m.add_tag("source", source);
    let subject = cert.subject();
    m.add_tag(
        "common_name",
        first(&mut subject.iter_common_name()).unwrap_or_default(),
    );
    for (tag, v) in [
        ("organization", first(&mut subject.iter_organization())),
        (
            "organizational_unit",
            first(&mut subject.iter_organizational_unit()),
        ),
        ("country", first(&mut subject.iter_country())),
        ("province", first(&mut subject.iter_state_or_province())),
        ("locality", first(&mut subject.iter_locality())),
        (
            "issuer_common_name",
            first(&mut cert.issuer().iter_common_name()),
        ),
        (
            "issuer_serial_number",
            first(
                &mut cert
                    .issuer()
                    .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER),
            ),
        ),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            m.add_tag(tag, v);
        }
    }
    m.add_tag(
        "serial_number",
        cert.tbs_certificate.serial.to_str_radix(16),
    );
    m.add_tag(
        "signature_algorithm",
        signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
    );
    m.add_tag(
        "public_key_algorithm",
        key_name(&cert.public_key().algorithm.algorithm.to_id_string()),
    );
    let mut san = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) | GeneralName::RFC822Name(d) => san.push(d.to_string()),
                GeneralName::URI(u) => san.push(u.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => san
                        .push(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()),
                    16 => san.push(
                        std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    // Telegraf's order: DNS names, e-mail addresses, IPs, URIs.
    if !san.is_empty() {
        m.add_tag("san", san.join(","));
    }
}

/// Go's names of the signature algorithms (crypto/x509 `SignatureAlgorithm.String()`).
fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.4" => "MD5-RSA",
        "1.2.840.113549.1.1.5" => "SHA1-RSA",
        "1.2.840.113549.1.1.11" => "SHA256-RSA",
        "1.2.840.113549.1.1.12" => "SHA384-RSA",
        "1.2.840.113549.1.1.13" => "SHA512-RSA",
        "1.2.840.113549.1.1.10" => "SHA256-RSAPSS",
        "1.2.840.10045.4.1" => "ECDSA-SHA1",
        "1.2.840.10045.4.3.2" => "ECDSA-SHA256",
        "1.2.840.10045.4.3.3" => "ECDSA-SHA384",
        "1.2.840.10045.4.3.4" => "ECDSA-SHA512",
        "1.3.101.112" => "Ed25519",
        other => return other.to_string(),
    }
    .to_string()
}

fn key_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.10045.2.1" => "ECDSA",
        "1.3.101.112" => "Ed25519",
        "1.2.840.10040.4.1" => "DSA",
        other => return other.to_string(),
    }
    .to_string()
}

/// The certificates of a PEM file (every CERTIFICATE block), or of a DER file.
fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    if data.trim_ascii_start().starts_with(b"-----BEGIN") {
        let certs = CertificateDer::pem_slice_iter(&data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad PEM: {e}"))?;
        if certs.is_empty() {
            return Err("no CERTIFICATE in the PEM file".into());
        }
        Ok(certs)
    } else {
        parse_x509_certificate(&data)
            .map_err(|e| format!("neither PEM nor a DER certificate: {e}"))?;
        Ok(vec![CertificateDer::from(data)])
    }
}

#[async_trait]
impl Input for X509Cert {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let time = acc.time();
        let this = &*self;
        let fetched = run_bounded(
            0..this.sources.len(),
            MAX_CONCURRENT_PROBES,
            |i| async move {
                match &this.sources[i] {
                    Source::Net { shown, host, port } => {
                        vec![this.fetch_net(shown, host, *port).await]
                    }
                    Source::Files { pattern } => X509Cert::fetch_files(pattern),
                }
            },
        )
        .await;
        for f in fetched.iter().flatten() {
            match &f.certs {
                Ok(certs) if certs.is_empty() => {
                    acc.add_error(format!("{}: no certificate", f.source));
                }
                Ok(certs) => self.metrics(f, certs, time, acc),
                Err(e) => acc.add_error(format!("{}: {e}", f.source)),
            }
        }
        Ok(())
    }
}

fn bad(path: Vec<String>, message: String) -> BuildError {
    BuildError::Config(ConfigError { path, message })
}

fn parse_source(s: &str) -> Option<Source> {
    if let Some(p) = s.strip_prefix("file://") {
        return Some(Source::Files {
            pattern: p.to_string(),
        });
    }
    if s.starts_with('/') {
        return Some(Source::Files {
            pattern: s.to_string(),
        });
    }
    let u = url::Url::parse(s).ok()?;
    let port = match u.scheme() {
        "https" => u.port().unwrap_or(443),
        "tcp" | "tcp4" | "tcp6" => u.port()?,
        _ => return None,
    };
    let host = match u.host()? {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Some(Source::Net {
        shown: s.to_string(),
        host,
        port,
    })
}

fn new(mut table: toml::Table) -> Result<X509Cert, BuildError> {
    let tls_opts = TlsClientConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    if cfg.sources.is_empty() {
        return Err(bad(
            vec!["sources".into()],
            "at least one source is needed".into(),
        ));
    }
    let mut sources = Vec::new();
    for (i, s) in cfg.sources.iter().enumerate() {
        sources.push(parse_source(s).ok_or_else(|| {
            bad(
                vec!["sources".into(), i.to_string()],
                format!(
                    "{s:?}: expected https://host[:port], tcp://host:port, file://PATH or /PATH"
                ),
            )
        })?);
    }
    if cfg.server_name.is_some() && tls_opts.tls_server_name.is_some() {
        return Err(bad(
            vec!["server_name".into()],
            "use either server_name or tls_server_name".into(),
        ));
    }
    if cfg.timeout.is_zero() {
        return Err(bad(vec!["timeout".into()], "must be more than 0".into()));
    }
    if cfg.password.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(bad(
            vec!["password".into()],
            "PKCS#12 and JKS sources (password) are not supported yet: convert them to PEM".into(),
        ));
    }
    let proxy = if cfg.use_proxy {
        let url = cfg.proxy_url.clone().filter(|u| !u.is_empty()).or_else(|| {
            // golang.org/x/net/proxy's FromEnvironment: ALL_PROXY.
            std::env::var("ALL_PROXY")
                .or_else(|_| std::env::var("all_proxy"))
                .ok()
                .filter(|u| !u.is_empty())
        });
        match url {
            Some(u) => Some(parse_proxy(&u).map_err(|m| bad(vec!["proxy_url".into()], m))?),
            None => None,
        }
    } else {
        if cfg.proxy_url.as_deref().is_some_and(|u| !u.is_empty()) {
            tracing::warn!("x509_cert: proxy_url has no effect without use_proxy = true");
        }
        None
    };
    if tls_opts.tls_cert.is_some() != tls_opts.tls_key.is_some() {
        return Err(bad(
            vec!["tls_cert".into()],
            "tls_cert and tls_key must be given together".into(),
        ));
    }
    let roots: Vec<CertificateDer<'static>> = match &tls_opts.tls_ca {
        Some(ca) => {
            let data = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("reading tls_ca {}: {e}", ca.display()))?;
            CertificateDer::pem_slice_iter(&data)
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("tls_ca {}: {e}", ca.display()))?
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            if native.certs.is_empty()
                && let Some(e) = native.errors.first()
            {
                tracing::warn!("x509_cert: no system CA roots ({e}); every chain will be invalid");
            }
            native.certs
        }
    };
    // The handshake only fetches the chain: it accepts any certificate (checked afterwards).
    crate::common::http::install_crypto_provider();
    // tls_min_version and tls_cipher_suites apply to the handshake, as in Telegraf.
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = tls_opts.suites()? {
        provider.cipher_suites = suites;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(tls_opts.versions()?)
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny::new()));
    let mut tls = match (&tls_opts.tls_cert, &tls_opts.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
            };
            let certs = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("tls_cert {}: {e}", cert.display()))?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| anyhow::anyhow!("tls_key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| anyhow::anyhow!("tls_cert/tls_key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    // A resumed TLS 1.3 session carries no certificates: always a full handshake.
    tls.resumption = rustls::client::Resumption::disabled();
    Ok(X509Cert {
        sources,
        pad_serial: cfg.pad_serial_with_zeroes,
        proxy,
        timeout: cfg.timeout.get(),
        server_name: tls_opts
            .tls_server_name
            .clone()
            .or(cfg.server_name)
            .filter(|s| !s.is_empty()),
        exclude_root_certs: cfg.exclude_root_certs,
        verify: !tls_opts.insecure_skip_verify,
        roots: Arc::new(roots),
        tls: Arc::new(tls),
    })
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    Ok(InputPlugin::Polled(Box::new(new(table)?)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "x509_cert",
    description: "Certificates of TLS servers and files: expiry, dates and verification",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests;
