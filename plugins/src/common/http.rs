//! The HTTP client shared by plugins that talk HTTP(S): Telegraf's client TLS options and a
//! reqwest client built from them.
//!
//! The TLS keys (`tls_ca`, `tls_cert`, ...) sit flat in a plugin's table, as in Telegraf. A
//! plugin does not declare them: it calls [`TlsClientConfig::take`] on its table first, which
//! removes and parses them, then parses the rest into its own struct. Both structs keep
//! `deny_unknown_fields` (which `#[serde(flatten)]` would defeat).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

use crate::plugin::WriteError;
use crate::registry::{BuildError, parse_config};

/// Telegraf's client-side TLS options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    /// PEM file of the CA(s) to trust instead of the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// PEM files of the client certificate (chain) and its key, for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The name to check the server's certificate against (and send as SNI) instead of the
    /// URL's host.
    pub tls_server_name: Option<String>,
    /// Skip every check of the server's certificate. Dangerous.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Password of an encrypted `tls_key`: only the empty string (no password) is supported
    /// yet.
    pub tls_key_pwd: Option<String>,
    /// The lowest TLS version accepted: "TLS12" (the default) or "TLS13". rustls has no TLS
    /// 1.0/1.1, so "TLS10" and "TLS11" are refused.
    pub tls_min_version: Option<String>,
    /// Telegraf's (Go's) cipher suite names, or "all"/"secure": the TLS 1.2 suites offered.
    /// As in Go, TLS 1.3's suites are not configurable and stay on.
    pub tls_cipher_suites: Option<Vec<String>>,
    /// "never", "once" or "freely": rustls never renegotiates, so the others warn.
    pub tls_renegotiation_method: Option<String>,
    /// false: ignore the other TLS options (the defaults apply to https:// URLs).
    pub tls_enable: Option<bool>,
}

/// The keys of [`TlsClientConfig`].
pub const TLS_CLIENT_KEYS: &[&str] = &[
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_server_name",
    "insecure_skip_verify",
    "tls_key_pwd",
    "tls_min_version",
    "tls_cipher_suites",
    "tls_renegotiation_method",
    "tls_enable",
];

/// Go's names of the cipher suites rustls (ring) has, with rustls's suite. TLS 1.3 first.
const CIPHER_NAMES: &[(&str, rustls::CipherSuite)] = {
    use rustls::CipherSuite as C;
    &[
        ("TLS_AES_128_GCM_SHA256", C::TLS13_AES_128_GCM_SHA256),
        ("TLS_AES_256_GCM_SHA384", C::TLS13_AES_256_GCM_SHA384),
        (
            "TLS_CHACHA20_POLY1305_SHA256",
            C::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
};

/// Go's insecure suites (CBC, RC4, 3DES, static RSA): named so that the error says why.
const INSECURE_CIPHERS: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

fn tls_error(key: &str, message: String) -> BuildError {
    BuildError::Config(crate::registry::ConfigError {
        path: vec![key.into()],
        message,
    })
}

impl TlsClientConfig {
    /// Removes the TLS keys from a plugin's table and parses them. Checks the values that
    /// need no file (versions, suites, renegotiation), warns about the ones that cannot apply,
    /// and with `tls_enable = false` drops the others, as Telegraf does.
    pub fn take(table: &mut toml::Table) -> Result<Self, BuildError> {
        let mut tls = toml::Table::new();
        for key in TLS_CLIENT_KEYS {
            if let Some(v) = table.remove(*key) {
                tls.insert((*key).to_string(), v);
            }
        }
        let mut cfg: TlsClientConfig = parse_config(tls)?;
        // Telegraf's samples write `tls_ca = ""` and the like for "not set".
        for p in [&mut cfg.tls_ca, &mut cfg.tls_cert, &mut cfg.tls_key] {
            if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                *p = None;
            }
        }
        for s in [&mut cfg.tls_server_name, &mut cfg.tls_min_version] {
            if s.as_deref() == Some("") {
                *s = None;
            }
        }
        cfg.check()?;
        if cfg.tls_enable == Some(false) {
            return Ok(TlsClientConfig {
                tls_enable: Some(false),
                ..Default::default()
            });
        }
        Ok(cfg)
    }

    fn check(&self) -> Result<(), BuildError> {
        self.versions()?;
        self.suites()?;
        match self.tls_renegotiation_method.as_deref() {
            None | Some("") | Some("never") => {}
            Some(m @ ("once" | "freely")) => tracing::warn!(
                "tls_renegotiation_method = {m:?} has no effect: sonde's TLS library (rustls) \
                 never renegotiates, as with \"never\""
            ),
            Some(other) => {
                return Err(tls_error(
                    "tls_renegotiation_method",
                    format!("{other:?}: expected \"never\", \"once\" or \"freely\""),
                ));
            }
        }
        if self.tls_key_pwd.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(tls_error(
                "tls_key_pwd",
                "an encrypted tls_key (tls_key_pwd) is not supported yet: decrypt the key \
                 (openssl pkey -in key.pem -out plain.pem) and leave tls_key_pwd empty"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The protocol versions allowed by `tls_min_version`.
    pub fn versions(
        &self,
    ) -> Result<&'static [&'static rustls::SupportedProtocolVersion], BuildError> {
        match self.tls_min_version.as_deref() {
            None | Some("") | Some("TLS12") => Ok(rustls::DEFAULT_VERSIONS),
            Some("TLS13") => {
                static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] =
                    &[&rustls::version::TLS13];
                Ok(TLS13_ONLY)
            }
            Some(v @ ("TLS10" | "TLS11")) => Err(tls_error(
                "tls_min_version",
                format!(
                    "{v:?} is not supported: sonde's TLS library (rustls) speaks TLS 1.2 and \
                     1.3 only; use \"TLS12\" or \"TLS13\""
                ),
            )),
            Some(other) => Err(tls_error(
                "tls_min_version",
                format!("{other:?}: expected \"TLS12\" or \"TLS13\""),
            )),
        }
    }

    /// The cipher suites `tls_cipher_suites` selects (`None`: rustls's defaults).
    pub fn suites(&self) -> Result<Option<Vec<rustls::SupportedCipherSuite>>, BuildError> {
        let Some(names) = &self.tls_cipher_suites else {
            return Ok(None);
        };
        if names.is_empty() {
            return Ok(None);
        }
        let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
        let mut wanted: Vec<rustls::CipherSuite> = Vec::new();
        for name in names {
            let upper = name.to_ascii_uppercase();
            match name.as_str() {
                "all" | "secure" => wanted.extend(all.iter().map(|s| s.suite())),
                "insecure" => {
                    return Err(tls_error(
                        "tls_cipher_suites",
                        "\"insecure\" is not supported: sonde's TLS library (rustls) has no \
                         insecure cipher suites"
                            .into(),
                    ));
                }
                _ => match CIPHER_NAMES.iter().find(|(n, _)| *n == upper) {
                    Some((_, s)) => wanted.push(*s),
                    None if INSECURE_CIPHERS.contains(&upper.as_str()) => {
                        return Err(tls_error(
                            "tls_cipher_suites",
                            format!(
                                "{name:?} is an insecure suite that sonde's TLS library \
                                 (rustls) does not have"
                            ),
                        ));
                    }
                    None => {
                        return Err(tls_error(
                            "tls_cipher_suites",
                            format!(
                                "{name:?} is not a cipher suite sonde knows; known: \"all\", \
                                 \"secure\", {}",
                                CIPHER_NAMES
                                    .iter()
                                    .map(|(n, _)| format!("{n:?}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                },
            }
        }
        // As in Go, the TLS 1.3 suites are not configurable: they stay on.
        Ok(Some(
            all.iter()
                .filter(|s| s.version() == &rustls::version::TLS13 || wanted.contains(&s.suite()))
                .copied()
                .collect(),
        ))
    }

    /// Whether reqwest's own TLS setup cannot express these options, so that a rustls config
    /// must be handed to it.
    fn needs_rustls_config(&self) -> bool {
        self.tls_server_name.is_some()
            || !matches!(
                self.tls_min_version.as_deref(),
                None | Some("") | Some("TLS12")
            )
            || self
                .tls_cipher_suites
                .as_ref()
                .is_some_and(|s| !s.is_empty())
    }
}

/// How to build a client.
pub struct ClientOptions<'a> {
    /// Whole-request timeout (connect, send, response).
    pub timeout: Duration,
    /// How long an idle pooled connection is kept; `None` for reqwest's default.
    pub idle_conn_timeout: Option<Duration>,
    pub tls: &'a TlsClientConfig,
}

/// Installs the ring provider as rustls's process default (reqwest is built without one).
pub fn install_crypto_provider() {
    // Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("reading {what} {}: {e}", path.display()).into())
}

/// Builds a reqwest client with the given timeouts and TLS options.
pub fn build_client(opts: &ClientOptions) -> Result<reqwest::Client, BuildError> {
    build_client_with(opts, |b| b)
}

/// Like [`build_client`], letting the caller set more on the builder (e.g. a proxy).
pub fn build_client_with(
    opts: &ClientOptions,
    more: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, BuildError> {
    install_crypto_provider();
    let tls = opts.tls;
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout);
    if let Some(idle) = opts.idle_conn_timeout {
        b = b.pool_idle_timeout(idle);
    }
    if tls.tls_cert.is_some() != tls.tls_key.is_some() {
        return Err(anyhow::anyhow!("tls_cert and tls_key must be given together").into());
    }
    if tls.needs_rustls_config() {
        // reqwest cannot check against another name, nor restrict versions or suites: hand
        // it a rustls config that does.
        b = b.tls_backend_preconfigured(server_name_config(tls)?);
    } else {
        if let Some(ca) = &tls.tls_ca {
            let pem = read(ca, "tls_ca")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("tls_ca {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(anyhow::anyhow!("tls_ca {}: no certificate", ca.display()).into());
            }
            b = b.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&tls.tls_cert, &tls.tls_key) {
            let mut pem = read(cert, "tls_cert")?;
            pem.push(b'\n');
            pem.extend(read(key, "tls_key")?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("tls_cert/tls_key: {e}"))?;
            b = b.identity(id);
        }
        b = b.tls_danger_accept_invalid_certs(tls.insecure_skip_verify);
    }
    more(b)
        .build()
        .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}").into())
}

/// A rustls config that checks the server's certificate against `tls_server_name`.
fn server_name_config(tls: &TlsClientConfig) -> Result<rustls::ClientConfig, BuildError> {
    let mut config = rustls_client_config(tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A rustls client config from Telegraf's TLS options, for plugins that drive their own
/// connections (probes): `tls_ca` (else the system's roots), `tls_cert`/`tls_key`,
/// `insecure_skip_verify`, and `tls_server_name` (checked instead of the name connected to).
/// No ALPN is set.
pub fn rustls_client_config(tls: &TlsClientConfig) -> Result<rustls::ClientConfig, BuildError> {
    install_crypto_provider();
    if tls.tls_cert.is_some() != tls.tls_key.is_some() {
        return Err(anyhow::anyhow!("tls_cert and tls_key must be given together").into());
    }
    let fixed = match &tls.tls_server_name {
        Some(name) => Some(
            ServerName::try_from(name.clone())
                .map_err(|e| anyhow::anyhow!("tls_server_name {name:?}: {e}"))?,
        ),
        None => None,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = tls.suites()? {
        provider.cipher_suites = suites;
    }
    let versions = tls.versions()?;
    let provider = Arc::new(provider);
    let inner: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAny(provider.clone()))
    } else if let Some(ca) = &tls.tls_ca {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read(ca, "tls_ca")?) {
            let cert = cert.map_err(|e| anyhow::anyhow!("tls_ca {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("tls_ca {}: {e}", ca.display()))?;
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| anyhow::anyhow!("tls_ca {}: {e}", ca.display()))?
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| anyhow::anyhow!("loading the system's CA roots: {e}"))?,
        )
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(match fixed {
            Some(name) => Arc::new(FixedName { name, inner }),
            None => inner,
        });
    let config = match (&tls.tls_cert, &tls.tls_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(&read(cert, "tls_cert")?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("tls_cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key, "tls_key")?)
                .map_err(|e| anyhow::anyhow!("tls_key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| anyhow::anyhow!("tls_cert/tls_key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// Verifies as `inner` would, but against a fixed server name.
#[derive(Debug)]
struct FixedName {
    name: ServerName<'static>,
    inner: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: accepts any certificate (signatures are still checked).
#[derive(Debug)]
pub struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl AcceptAny {
    /// A verifier that accepts any certificate chain, with ring's signature algorithms.
    pub fn new() -> Self {
        AcceptAny(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl Default for AcceptAny {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An error with its causes ("error sending request: connection refused").
/// `Authorization: Basic …` for a user and password, marked sensitive (kept out of logs).
pub fn basic_auth_header(user: &str, pass: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut v = http::HeaderValue::from_str(&format!("Basic {encoded}"))
        .expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A request that got no answer: always worth retrying. The reason names the host only,
/// since a URL may carry credentials.
pub fn send_error(url: &reqwest::Url, e: &reqwest::Error) -> WriteError {
    WriteError::Retry {
        reason: format!(
            "sending to {}: {}",
            url.host_str().unwrap_or(""),
            error_chain(e)
        ),
        retry_after: None,
    }
}

/// How much of a server's error body goes into the logged reason.
const MAX_REASON_BODY: usize = 512;

/// The answer's `Retry-After` (seconds or an HTTP date), if it has a usable one.
pub fn retry_after(resp: &reqwest::Response) -> Option<std::time::Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
}

/// Maps a non-2xx answer: 429, 5xx (and stray 1xx/3xx) are retried, honouring `Retry-After`;
/// other 4xx, and the codes in `permanent`, reject the batch for good. The reason carries the
/// status and the start of the server's body.
pub async fn response_error(resp: reqwest::Response, permanent: &[u16]) -> WriteError {
    let status = resp.status();
    let retry_after = retry_after(&resp);
    let text = resp.text().await.unwrap_or_default();
    let text = text.trim();
    let mut reason = format!("server answered {status}");
    if !text.is_empty() {
        let cut = text.floor_char_boundary(MAX_REASON_BODY);
        let more = if cut < text.len() { "..." } else { "" };
        reason = format!("{reason}: {}{more}", &text[..cut]);
    }
    let code = status.as_u16();
    if !permanent.contains(&code)
        && (code == 429 || status.is_server_error() || !status.is_client_error())
    {
        WriteError::Retry {
            reason,
            retry_after,
        }
    } else {
        WriteError::Reject { reason }
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date (IMF-fixdate, as RFC 9110
/// requires senders to use). A date in the past gives zero.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<std::time::SystemTime> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else {
        return None;
    };
    // The year is bounded so that the arithmetic below cannot overflow on a hostile header.
    if !(1..=31).contains(&day) || !(0..=9999).contains(&year) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::common::time::days_from_civil(year, month, day);
    let secs = days * 86400 + h * 3600 + m * 60 + sec;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784111777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        // A server's nonsense must give no delay, not an arithmetic overflow.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 9223372036854775807 08:49:37 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov -9223372036854775807 08:49:37 GMT", now),
            None
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(951825600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn take_removes_tls_keys_and_checks_them() {
        let mut t: toml::Table =
            toml::from_str("url = 'x'\ntls_ca = '/ca.pem'\ninsecure_skip_verify = true").unwrap();
        let tls = TlsClientConfig::take(&mut t).unwrap();
        assert_eq!(tls.tls_ca, Some(PathBuf::from("/ca.pem")));
        assert!(tls.insecure_skip_verify);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["url"]);
        let mut bad: toml::Table = toml::from_str("insecure_skip_verify = 'yes'").unwrap();
        match TlsClientConfig::take(&mut bad) {
            Err(BuildError::Config(c)) => assert_eq!(c.path, ["insecure_skip_verify"]),
            _ => panic!("a string for a bool must be refused"),
        }
    }

    #[test]
    fn tls_enable_false_drops_the_other_options_and_versions_map() {
        let mut t: toml::Table = toml::from_str(
            "tls_enable = false\ntls_ca = '/nonexistent/ca.pem'\ntls_min_version = 'TLS13'",
        )
        .unwrap();
        let tls = TlsClientConfig::take(&mut t).unwrap();
        assert_eq!(tls.tls_ca, None);
        assert!(rustls_client_config(&tls).is_ok());
        let v13 = TlsClientConfig {
            tls_min_version: Some("TLS13".into()),
            ..Default::default()
        };
        assert_eq!(v13.versions().unwrap().len(), 1);
        assert!(v13.needs_rustls_config());
        let suites = TlsClientConfig {
            tls_cipher_suites: Some(vec!["tls_ecdhe_rsa_with_aes_128_gcm_sha256".into()]),
            ..Default::default()
        }
        .suites()
        .unwrap()
        .unwrap();
        // The one TLS 1.2 suite named, plus every TLS 1.3 suite (not configurable, as in Go).
        let tls12: Vec<_> = suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            [rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        assert_eq!(suites.len(), 4);
    }

    #[test]
    fn client_builds_with_and_without_tls_options() {
        let none = TlsClientConfig::default();
        let opts = |tls| ClientOptions {
            timeout: Duration::from_secs(1),
            idle_conn_timeout: Some(Duration::from_secs(5)),
            tls,
        };
        assert!(build_client(&opts(&none)).is_ok());
        let named = TlsClientConfig {
            tls_server_name: Some("metrics.internal".into()),
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert!(build_client(&opts(&named)).is_ok());
        let missing_ca = TlsClientConfig {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = build_client(&opts(&missing_ca)).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let half = TlsClientConfig {
            tls_cert: Some("/c.pem".into()),
            ..Default::default()
        };
        assert!(build_client(&opts(&half)).is_err());
    }
}
