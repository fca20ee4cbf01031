//! A small HTTP/1.1 client that takes its own connect steps, so each phase of a probe (name
//! resolution, TCP connect, TLS handshake, first byte, body transfer) can be timed, as
//! blackbox_exporter does. Every probe opens fresh connections: a probe measures the whole
//! path, not a pooled connection.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What the probe has measured so far; kept by the caller so a timed-out probe still reports
/// the phases it finished and its elapsed time.
#[derive(Debug, Default, Clone)]
pub struct Phases {
    pub dns: Duration,
    pub connect: Duration,
    pub tls: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub transfer: Option<Duration>,
    /// Start of the probe to the head of the final response (Telegraf's `response_time`).
    pub response: Option<Duration>,
}

/// Why a probe failed, mapped to Telegraf's result types by the caller.
#[derive(Debug)]
pub enum Failure {
    Dns(String),
    Connect(String),
    /// The address cannot be used (bad host, unsupported redirect target, bad proxy answer).
    Address(String),
    BodyRead(String),
}

/// The final response of a probe.
pub struct Answer {
    pub status: u16,
    pub version: &'static str,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// The body was larger than the limit (reading stopped there).
    pub too_large: bool,
}

/// One request to make (the caller's fixed settings).
pub struct Request<'a> {
    pub method: &'a http::Method,
    pub url: &'a url::Url,
    pub headers: &'a [(http::HeaderName, http::HeaderValue)],
    /// A `Host` header given in the config.
    pub host_header: Option<&'a str>,
    pub body: &'a Bytes,
    pub follow_redirects: bool,
    pub max_body: u64,
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// The name to send as SNI instead of the URL's host (`tls_server_name`).
    pub sni: Option<&'a str>,
    pub local_addr: Option<IpAddr>,
    pub proxy: Option<&'a Proxy>,
}

/// An `http_proxy`: plain HTTP requests are sent to it in absolute form, HTTPS ones through a
/// CONNECT tunnel.
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization` value, when the proxy URL carries credentials.
    pub auth: Option<String>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Conn = Pin<Box<dyn std::future::Future<Output = Result<(), hyper::Error>> + Send>>;

/// A connection whose driver is polled alongside whatever waits on it, so that nothing is
/// spawned (for HTTP/1.1) and dropping the probe drops the socket.
struct Driven {
    conn: Conn,
    done: bool,
}

/// The request side of an HTTP/1.1 or HTTP/2 (negotiated by ALPN) connection.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(
        &mut self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
    fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }
}

impl Driven {
    async fn run<F: std::future::Future>(&mut self, fut: F) -> F::Output {
        tokio::pin!(fut);
        if !self.done {
            tokio::select! {
                biased;
                out = &mut fut => return out,
                _ = self.conn.as_mut() => self.done = true,
            }
        }
        fut.await
    }
}

const MAX_REDIRECTS: usize = 10;

/// Makes the request (following redirects if asked), timing each phase into `phases`.
pub async fn probe(
    req: &Request<'_>,
    start: Instant,
    phases: &mut Phases,
) -> Result<Answer, Failure> {
    let mut url = req.url.clone();
    let mut method = req.method.clone();
    let mut body = req.body.clone();
    let mut same_origin = true;
    for _ in 0..=MAX_REDIRECTS {
        let (mut driven, mut sender) = connect(req, &url, phases).await?;
        let request = build_request(req, &url, &method, &body, same_origin, sender.is_h2())?;
        let sent = Instant::now();
        let resp = driven
            .run(sender.send(request))
            .await
            .map_err(|e| Failure::Connect(crate::common::http::error_chain(&e)))?;
        phases.first_byte = Some(phases.first_byte.unwrap_or_default() + sent.elapsed());
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if req.follow_redirects
            && matches!(status, 301 | 302 | 303 | 307 | 308)
            && let Some(loc) = location
        {
            let next = url
                .join(&loc)
                .map_err(|e| Failure::Address(format!("redirect to {loc:?}: {e}")))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(Failure::Address(format!(
                    "redirect to unsupported scheme {:?}",
                    next.scheme()
                )));
            }
            // Read (and drop) the redirect's body so the time is counted, then go on.
            let t = Instant::now();
            let _ = driven.run(resp.into_body().collect()).await;
            phases.transfer = Some(phases.transfer.unwrap_or_default() + t.elapsed());
            // As Go's client: 301/302/303 turn other methods into a GET without a body.
            if (301..=303).contains(&status)
                && method != http::Method::GET
                && method != http::Method::HEAD
            {
                method = http::Method::GET;
                body = Bytes::new();
            }
            same_origin = same_origin
                && next.host_str() == req.url.host_str()
                && next.port_or_known_default() == req.url.port_or_known_default();
            url = next;
            continue;
        }
        phases.response = Some(start.elapsed());
        let version = match resp.version() {
            http::Version::HTTP_09 => "0.9",
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_3 => "3",
            _ => "1.1",
        };
        let (parts, mut incoming) = resp.into_parts();
        let t = Instant::now();
        let mut body = Vec::new();
        let mut too_large = false;
        let read = driven
            .run(async {
                while let Some(frame) = incoming.frame().await {
                    let frame = frame.map_err(|e| crate::common::http::error_chain(&e))?;
                    if let Ok(data) = frame.into_data() {
                        if (body.len() + data.len()) as u64 > req.max_body {
                            too_large = true;
                            return Ok(());
                        }
                        body.extend_from_slice(&data);
                    }
                }
                Ok::<(), String>(())
            })
            .await;
        phases.transfer = Some(phases.transfer.unwrap_or_default() + t.elapsed());
        read.map_err(Failure::BodyRead)?;
        return Ok(Answer {
            status,
            version,
            headers: parts.headers,
            body,
            too_large,
        });
    }
    Err(Failure::Connect(format!(
        "stopped after {MAX_REDIRECTS} redirects"
    )))
}

fn build_request(
    req: &Request<'_>,
    url: &url::Url,
    method: &http::Method,
    body: &Bytes,
    same_origin: bool,
    h2: bool,
) -> Result<http::Request<Full<Bytes>>, Failure> {
    let host = url.host_str().unwrap_or_default();
    let host_value = match (req.host_header, url.port()) {
        (Some(h), _) if same_origin => h.to_string(),
        (_, Some(p)) => format!("{}:{p}", bracket(host)),
        (_, None) => bracket(host),
    };
    let target = if h2 || (req.proxy.is_some() && url.scheme() == "http") {
        let mut u = url.clone();
        u.set_fragment(None);
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.to_string()
    } else {
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    };
    let mut b = http::Request::builder().method(method.clone()).uri(target);
    // HTTP/2 carries the host as :authority (from the URI); a configured Host header wins.
    if h2 {
        b = b.version(http::Version::HTTP_2);
    }
    if !h2 || (req.host_header.is_some() && same_origin) {
        b = b.header(http::header::HOST, host_value);
    }
    let mut has_ua = false;
    for (k, v) in req.headers {
        if !same_origin && *k == http::header::AUTHORIZATION {
            continue;
        }
        has_ua |= *k == http::header::USER_AGENT;
        b = b.header(k, v);
    }
    if !has_ua {
        b = b.header(
            http::header::USER_AGENT,
            concat!("sonde/", env!("CARGO_PKG_VERSION")),
        );
    }
    if let (Some(p), "http") = (req.proxy, url.scheme())
        && let Some(auth) = &p.auth
    {
        b = b.header(http::header::PROXY_AUTHORIZATION, auth);
    }
    if !body.is_empty() || matches!(*method, http::Method::POST | http::Method::PUT) {
        b = b.header(http::header::CONTENT_LENGTH, body.len());
    }
    b.body(Full::new(body.clone()))
        .map_err(|e| Failure::Address(format!("building the request: {e}")))
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

async fn connect(
    req: &Request<'_>,
    url: &url::Url,
    phases: &mut Phases,
) -> Result<(Driven, Sender), Failure> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(Failure::Address(format!("{url}: no host"))),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Failure::Address(format!("{url}: no port")))?;
    let (dial_host, dial_port) = match req.proxy {
        Some(p) => (p.host.clone(), p.port),
        None => (host.clone(), port),
    };
    let t = Instant::now();
    let addrs = resolve(&dial_host, dial_port).await;
    phases.dns += t.elapsed();
    let addrs = addrs?;
    let t = Instant::now();
    let mut tcp = dial(&addrs, req.local_addr).await;
    if let (Ok(stream), Some(p), "https") = (&mut tcp, req.proxy, url.scheme())
        && let Err(e) = tunnel(stream, &host, port, p).await
    {
        phases.connect += t.elapsed();
        return Err(e);
    }
    phases.connect += t.elapsed();
    let tcp = tcp?;
    let mut h2 = false;
    let io: Box<dyn Io> = if url.scheme() == "https" {
        let name = req.sni.unwrap_or(&host).to_string();
        let name = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| Failure::Address(format!("TLS server name: {e}")))?;
        let t = Instant::now();
        let tls = tokio_rustls::TlsConnector::from(req.tls.clone())
            .connect(name, tcp)
            .await;
        phases.tls = Some(phases.tls.unwrap_or_default() + t.elapsed());
        let tls = tls.map_err(|e| Failure::Connect(format!("TLS handshake: {e}")))?;
        h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let handshake_err = |e: hyper::Error| Failure::Connect(crate::common::http::error_chain(&e));
    let (sender, conn): (Sender, Conn) = if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(io),
        )
        .await
        .map_err(handshake_err)?;
        (Sender::H2(s), Box::pin(c))
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(handshake_err)?;
        (Sender::H1(s), Box::pin(c))
    };
    Ok((Driven { conn, done: false }, sender))
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::Dns(format!("lookup {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::Dns(format!("lookup {host}: no addresses")));
    }
    Ok(addrs)
}

/// Connects to the first address that answers; the last error otherwise.
async fn dial(addrs: &[SocketAddr], local: Option<IpAddr>) -> Result<TcpStream, Failure> {
    let mut last = String::new();
    for addr in addrs {
        if let Some(l) = local
            && l.is_ipv4() != addr.is_ipv4()
        {
            last = format!("{addr}: the interface has no address of this family");
            continue;
        }
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let res = async {
            let sock = sock?;
            if let Some(l) = local {
                sock.bind(SocketAddr::new(l, 0))?;
            }
            sock.connect(*addr).await
        }
        .await;
        match res {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("dial tcp {addr}: {e}"),
        }
    }
    Err(Failure::Connect(last))
}

/// Opens a CONNECT tunnel through the proxy to `host:port`.
async fn tunnel(s: &mut TcpStream, host: &str, port: u16, p: &Proxy) -> Result<(), Failure> {
    let target = format!("{}:{port}", bracket(host));
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &p.auth {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| Failure::Connect(format!("proxy CONNECT: {e}")))?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Err(Failure::Connect("proxy CONNECT: answer too long".into()));
        }
        let n = s
            .read(&mut byte)
            .await
            .map_err(|e| Failure::Connect(format!("proxy CONNECT: {e}")))?;
        if n == 0 {
            return Err(Failure::Connect("proxy CONNECT: connection closed".into()));
        }
        buf.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&buf);
    let status = line.get(9..12).unwrap_or("");
    if status != "200" {
        return Err(Failure::Connect(format!(
            "proxy CONNECT: {}",
            line.lines().next().unwrap_or("")
        )));
    }
    Ok(())
}

/// The first address of a network interface (IPv4 preferred), for `interface`.
pub fn interface_addr(name: &str) -> Option<IpAddr> {
    let mut found: Option<IpAddr> = None;
    // SAFETY: getifaddrs fills a linked list that we walk read-only and free once.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return None;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() {
                continue;
            }
            let ifname = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if ifname != name {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    found = Some(IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes()));
                    break;
                }
                libc::AF_INET6 if found.is_none() => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    found = Some(IpAddr::from(sa.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(head);
    }
    found
}
