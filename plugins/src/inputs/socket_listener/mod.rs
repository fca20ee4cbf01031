//! `inputs.socket_listener`: Telegraf's generic socket listener. Metrics in any `data_format`
//! arrive over TCP (optionally TLS), UDP, a unix stream socket or a unix datagram socket.
//!
//! Stream sockets are cut into messages by `splitting_strategy` and each message is parsed on
//! its own, as Telegraf does; each datagram is one message. A stream reader waits while the
//! output buffers are full (the sender is held back by TCP flow control, nothing is dropped);
//! a datagram listener cannot hold its senders back and drops the batch, counted.

mod split;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket, UnixDatagram, UnixListener};
use tokio::sync::watch;

use crate::codec::Parser;
use crate::common::server::{AcceptBackoff, TlsServerConfig};
use crate::common::unix_socket::{self, SocketFile};
use crate::config_types::{Duration as Dur, Size};
use crate::model::{Metric, now_ns};
use crate::plugin::{BuildContext, InputPlugin, SendError, ServiceContext, ServiceInput};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};
use crate::selfstat::{self, Stat, Stats};
use split::{LengthField, Splitter};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    service_address: String,
    #[serde(default)]
    socket_mode: String,
    #[serde(default)]
    max_connections: u64,
    #[serde(default)]
    read_timeout: Dur,
    #[serde(default)]
    read_buffer_size: Size,
    keep_alive_period: Option<Dur>,
    #[serde(default)]
    content_encoding: String,
    #[serde(default = "default_decompression")]
    max_decompression_size: Size,
    /// Telegraf parses on a pool of this many goroutines; sonde parses on each connection's task.
    max_parallel_parsers: Option<i64>,
    #[serde(default)]
    allowed_sources: Vec<String>,
    #[serde(default)]
    multicast_source: String,
    #[serde(default)]
    splitting_strategy: String,
    #[serde(default)]
    splitting_delimiter: String,
    #[serde(default)]
    splitting_length: u64,
    #[serde(default)]
    splitting_length_field: LengthField,
    /// "metric" (default): the timestamp the data carries; "receive_time": when it arrived.
    #[serde(default)]
    time_source: String,
}

fn default_decompression() -> Size {
    Size(500 << 20)
}

/// Largest message a stream may hold before its end is seen, at least (Go's bufio.Scanner).
const MIN_MESSAGE: usize = 64 * 1024;
/// Largest datagram.
const MAX_DATAGRAM: usize = 64 * 1024;
/// Most datagrams handed to the pipeline as one batch.
const DATAGRAM_BATCH: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    Tcp(String, Family),
    Udp(String, Family),
    Unix(PathBuf),
    Unixgram(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

impl Address {
    fn is_stream(&self) -> bool {
        matches!(self, Address::Tcp(..) | Address::Unix(_))
    }
}

fn bad(key: &str, message: impl Into<String>) -> BuildError {
    BuildError::Config(ConfigError {
        path: vec![key.into()],
        message: message.into(),
    })
}

fn parse_address(addr: &str) -> Result<Address, BuildError> {
    let err = |m: String| bad("service_address", m);
    let Some((scheme, rest)) = addr.split_once("://") else {
        return Err(err(format!(
            "{addr:?} has no protocol: write e.g. \"tcp://:8094\", \"udp://:8094\" or \"unix:///tmp/sonde.sock\""
        )));
    };
    let host_port = |family: Family| -> Result<String, BuildError> {
        if rest.contains('%') {
            return Err(err(format!(
                "{addr:?}: interface names and zones (%) are not supported yet"
            )));
        }
        crate::common::server::check_address(rest).map_err(err)?;
        // ":port" with tcp/udp is every interface of both families, as in Go (and Telegraf):
        // the IPv6 wildcard, dual-stack; IPv4's where the host has no IPv6 (see `bind`).
        Ok(match (rest.strip_prefix(':'), family) {
            (Some(port), Family::V4) => format!("0.0.0.0:{port}"),
            (Some(port), _) => format!("[::]:{port}"),
            (None, _) => rest.to_string(),
        })
    };
    let path = || -> Result<PathBuf, BuildError> {
        if rest.is_empty() {
            return Err(err(format!("{addr:?}: no socket path")));
        }
        Ok(PathBuf::from(rest))
    };
    Ok(match scheme {
        "tcp" => Address::Tcp(host_port(Family::Any)?, Family::Any),
        "tcp4" => Address::Tcp(host_port(Family::V4)?, Family::V4),
        "tcp6" => Address::Tcp(host_port(Family::V6)?, Family::V6),
        "udp" => Address::Udp(host_port(Family::Any)?, Family::Any),
        "udp4" => Address::Udp(host_port(Family::V4)?, Family::V4),
        "udp6" => Address::Udp(host_port(Family::V6)?, Family::V6),
        "unix" => Address::Unix(path()?),
        "unixgram" => Address::Unixgram(path()?),
        "unixpacket" | "ip" | "ip4" | "ip6" | "vsock" => {
            return Err(err(format!(
                "{scheme}:// sockets are not supported yet (tcp, tcp4, tcp6, udp, udp4, udp6, unix and unixgram are)"
            )));
        }
        other => return Err(err(format!("unknown protocol {other:?} in {addr:?}"))),
    })
}

/// What every connection and datagram handler shares.
struct Shared {
    id: String,
    /// The service address as configured, for logs.
    address: String,
    parser: Arc<dyn Parser>,
    splitter: Splitter,
    gzip: bool,
    max_decompressed: usize,
    max_message: usize,
    read_timeout: Option<Duration>,
    keep_alive: Option<Duration>,
    max_connections: usize,
    allowed: Vec<IpAddr>,
    receive_time: bool,
    connections: AtomicUsize,
    _stats: Arc<Stats>,
    stat_connections: Stat,
    refused: Stat,
    messages: Stat,
    parse_errors: Stat,
    read_errors: Stat,
    dropped: Stat,
}

impl Shared {
    fn allowed(&self, ip: IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip4 = ip.to_canonical();
        self.allowed.is_empty() || self.allowed.iter().any(|a| *a == ip || *a == ip4)
    }

    /// Parses one message into `out`, counting (and sometimes logging) its errors.
    fn parse(&self, msg: &[u8], now: i64, out: &mut Vec<Metric>) {
        if msg.is_empty() {
            return;
        }
        self.messages.incr();
        let errors = self.parser.parse(msg, now, out);
        if let Some(first) = errors.first() {
            let before = self.parse_errors.get();
            self.parse_errors.add(errors.len() as i64);
            if before % 1000 == 0 {
                tracing::warn!(
                    input = %self.id,
                    total = before + errors.len() as i64,
                    "socket_listener: cannot parse {:?}: {first}",
                    String::from_utf8_lossy(&msg[..msg.len().min(200)])
                );
            }
        }
    }

    fn stamp(&self, metrics: &mut [Metric], received: i64) {
        if self.receive_time {
            for m in metrics {
                m.time = received;
            }
        }
    }
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener, SocketFile),
    Unixgram(UnixDatagram, SocketFile),
}

struct Listener {
    address: Address,
    socket_mode: Option<u32>,
    read_buffer: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    bound: Option<Bound>,
}

fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: fd is an open socket owned by the caller; value lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_read_buffer(fd: &impl AsRawFd, size: usize) -> anyhow::Result<()> {
    if size > 0 {
        setsockopt_int(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            size.min(i32::MAX as usize) as i32,
        )
        .map_err(|e| anyhow::anyhow!("setting read_buffer_size: {e}"))?;
    }
    Ok(())
}

fn set_keep_alive(fd: &impl AsRawFd, period: Duration) -> std::io::Result<()> {
    let fd = fd.as_raw_fd();
    if period.is_zero() {
        return setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0);
    }
    let secs = period.as_secs().clamp(1, i32::MAX as u64) as i32;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs)?;
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs)
}

async fn resolve(addr: &str, family: Family) -> anyhow::Result<SocketAddr> {
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    addrs
        .into_iter()
        .find(|a| match family {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        })
        .ok_or_else(|| anyhow::anyhow!("cannot listen on {addr}: no address of that family"))
}

/// The IPv4 wildcard to fall back to when the dual-stack wildcard cannot be bound.
fn v4_fallback(sa: SocketAddr, family: Family) -> Option<SocketAddr> {
    (family == Family::Any && sa.ip() == IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED))
        .then(|| SocketAddr::from(([0, 0, 0, 0], sa.port())))
}

/// Whether a bind failed because the host has no IPv6 (not because the port is taken).
fn no_ipv6(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// Binds `sa`, or the IPv4 wildcard when `sa` is the dual-stack wildcard on a host without
/// IPv6; errors name the address as configured.
async fn bind_with_fallback<T, F, Fut>(
    scheme: &str,
    addr: &str,
    family: Family,
    bind: F,
) -> anyhow::Result<T>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    let sa = resolve(addr, family).await?;
    match bind(sa).await {
        Ok(b) => Ok(b),
        Err(e) if no_ipv6(&e) && v4_fallback(sa, family).is_some() => {
            let v4 = v4_fallback(sa, family).unwrap_or(sa);
            bind(v4)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {scheme}://{v4}: {e}"))
        }
        Err(e) => Err(anyhow::anyhow!("cannot listen on {scheme}://{addr}: {e}")),
    }
}

impl Listener {
    fn bind_tcp(&self, sa: SocketAddr, family: Family) -> std::io::Result<TcpListener> {
        let sock = if sa.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            let s = tokio::net::TcpSocket::new_v6()?;
            if sa.ip().is_unspecified() && family == Family::Any {
                // Both families on the wildcard, whatever net.ipv6.bindv6only says.
                setsockopt_int(s.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
            }
            s
        };
        sock.set_reuseaddr(true)?;
        if self.read_buffer > 0 {
            sock.set_recv_buffer_size(self.read_buffer.min(u32::MAX as usize) as u32)?;
        }
        sock.bind(sa)?;
        sock.listen(1024)
    }

    async fn bind(&self) -> anyhow::Result<Bound> {
        Ok(match &self.address {
            Address::Tcp(addr, family) => Bound::Tcp(
                bind_with_fallback("tcp", addr, *family, |sa| async move {
                    self.bind_tcp(sa, *family)
                })
                .await?,
            ),
            Address::Udp(addr, family) => {
                let sock = bind_with_fallback("udp", addr, *family, UdpSocket::bind).await?;
                set_read_buffer(&sock, self.read_buffer)?;
                let ip = sock.local_addr()?.ip();
                match ip {
                    IpAddr::V4(g) if g.is_multicast() => {
                        sock.join_multicast_v4(g, std::net::Ipv4Addr::UNSPECIFIED)?
                    }
                    IpAddr::V6(g) if g.is_multicast() => sock.join_multicast_v6(&g, 0)?,
                    _ => {}
                }
                Bound::Udp(sock)
            }
            Address::Unix(path) => {
                let (l, file) = unix_socket::bind_stream(path, self.socket_mode)?;
                set_read_buffer(&l, self.read_buffer)?;
                Bound::Unix(l, file)
            }
            Address::Unixgram(path) => {
                let (s, file) = unix_socket::bind_datagram(path, self.socket_mode)?;
                set_read_buffer(&s, self.read_buffer)?;
                Bound::Unixgram(s, file)
            }
        })
    }
}

#[async_trait]
impl ServiceInput for Listener {
    async fn start(&mut self) -> anyhow::Result<()> {
        self.bound = Some(self.bind().await?);
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let bound = match self.bound {
            Some(b) => b,
            None => self.bind().await?,
        };
        let sh = self.shared.clone();
        let tls = self.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let sink = ctx.sink;
        let shutdown = ctx.shutdown;
        match bound {
            Bound::Tcp(l) => {
                tracing::info!(input = %sh.id, address = %l.local_addr()?, "socket_listener listening on tcp");
                accept_loop(StreamListener::Tcp(l), sh, tls, sink, shutdown).await;
            }
            Bound::Unix(l, file) => {
                tracing::info!(input = %sh.id, address = %sh.address, "socket_listener listening");
                accept_loop(StreamListener::Unix(l), sh, tls, sink, shutdown).await;
                drop(file);
            }
            Bound::Udp(s) => {
                tracing::info!(input = %sh.id, address = %s.local_addr()?, "socket_listener listening on udp");
                datagram_loop(Dgram::Udp(s), sh, sink, shutdown).await;
            }
            Bound::Unixgram(s, file) => {
                tracing::info!(input = %sh.id, address = %sh.address, "socket_listener listening");
                datagram_loop(Dgram::Unixgram(s), sh, sink, shutdown).await;
                drop(file);
            }
        }
        Ok(())
    }
}

enum StreamListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl StreamListener {
    async fn accept(&self) -> std::io::Result<(Conn, Option<SocketAddr>)> {
        match self {
            StreamListener::Tcp(l) => l.accept().await.map(|(s, a)| (Conn::Tcp(s), Some(a))),
            StreamListener::Unix(l) => l.accept().await.map(|(s, _)| (Conn::Unix(s), None)),
        }
    }
}

impl Conn {
    fn boxed(self) -> Box<dyn AsyncRead + Unpin + Send> {
        match self {
            Conn::Tcp(s) => Box::new(s),
            Conn::Unix(s) => Box::new(s),
        }
    }
}

async fn accept_loop(
    listener: StreamListener,
    sh: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sink: crate::plugin::MetricSink,
    mut shutdown: watch::Receiver<bool>,
) {
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
                    backoff.failed(&e, "socket_listener").await;
                    continue;
                }
            },
            _ = shutdown.changed() => continue,
        };
        backoff.succeeded();
        while conns.try_join_next().is_some() {}
        if let Some(peer) = peer
            && !sh.allowed(peer.ip())
        {
            sh.refused.incr();
            tracing::debug!(input = %sh.id, %peer, "socket_listener: source not in allowed_sources; connection closed");
            continue;
        }
        if sh.max_connections > 0 && sh.connections.load(Ordering::Relaxed) >= sh.max_connections {
            sh.refused.incr();
            tracing::debug!(input = %sh.id, "socket_listener: max_connections reached; connection closed");
            continue;
        }
        if let (Some(p), Conn::Tcp(tcp)) = (sh.keep_alive, &stream)
            && let Err(e) = set_keep_alive(tcp, p)
        {
            tracing::debug!(input = %sh.id, error = %e, "socket_listener: setting keep_alive_period failed");
        }
        sh.connections.fetch_add(1, Ordering::Relaxed);
        sh.stat_connections.incr();
        let (sh2, sink, tls, shutdown) = (sh.clone(), sink.clone(), tls.clone(), shutdown.clone());
        conns.spawn(async move {
            let reader: Option<Box<dyn AsyncRead + Unpin + Send>> = match tls {
                None => Some(stream.boxed()),
                Some(acc) => {
                    let limit = sh2.read_timeout.unwrap_or(Duration::from_secs(10));
                    let hs = match stream {
                        Conn::Tcp(s) => tokio::time::timeout(limit, acc.accept(s))
                            .await
                            .map(|r| r.map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>)),
                        Conn::Unix(s) => tokio::time::timeout(limit, acc.accept(s))
                            .await
                            .map(|r| r.map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>)),
                    };
                    match hs {
                        Ok(Ok(s)) => Some(s),
                        Ok(Err(e)) => {
                            tracing::debug!(input = %sh2.id, error = %e, "socket_listener: TLS handshake failed");
                            None
                        }
                        Err(_) => None,
                    }
                }
            };
            if let Some(r) = reader
                && let Err(e) = read_stream(r, &sh2, &sink, shutdown).await
            {
                sh2.read_errors.incr();
                tracing::warn!(input = %sh2.id, error = %e, "socket_listener: connection closed");
            }
            sh2.connections.fetch_sub(1, Ordering::Relaxed);
            sh2.stat_connections.add(-1);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// Reads one stream connection to its end: decode, split, parse, deliver.
async fn read_stream(
    mut r: Box<dyn AsyncRead + Unpin + Send>,
    sh: &Shared,
    sink: &crate::plugin::MetricSink,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut gz = sh
        .gzip
        .then(|| flate2::write::MultiGzDecoder::new(Vec::new()));
    let mut eof = false;
    while !eof {
        let read = async {
            match sh.read_timeout {
                Some(t) => tokio::time::timeout(t, r.read(&mut chunk))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                None => r.read(&mut chunk).await,
            }
        };
        let n = tokio::select! {
            n = read => n,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        let n = match n {
            Ok(n) => n,
            // Telegraf closes an idle connection quietly after read_timeout.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::debug!(input = %sh.id, "socket_listener: read_timeout; connection closed");
                0
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e.into()),
        };
        eof = n == 0;
        match &mut gz {
            Some(d) => {
                // Small steps, handing on what they decode, so a gzip bomb cannot balloon
                // memory: at most about GZIP_STEP × 1032 bytes decoded at a time.
                for piece in chunk[..n].chunks(GZIP_STEP) {
                    d.write_all(piece)
                        .and_then(|_| d.flush())
                        .map_err(|e| anyhow::anyhow!("bad gzip stream: {e}"))?;
                    pending.append(d.get_mut());
                    if pending.len() >= GZIP_HAND_ON {
                        take_messages(&mut pending, false, sh, sink, &mut shutdown).await?;
                    }
                }
                if n == 0 {
                    d.try_finish()
                        .map_err(|e| anyhow::anyhow!("bad gzip stream: {e}"))?;
                    pending.append(d.get_mut());
                }
            }
            None => pending.extend_from_slice(&chunk[..n]),
        }
        take_messages(&mut pending, eof, sh, sink, &mut shutdown).await?;
    }
    Ok(())
}

/// Bytes of a gzip stream decoded at a time, and the decoded bytes that make the reader hand
/// the complete messages on before decoding more.
const GZIP_STEP: usize = 4096;
const GZIP_HAND_ON: usize = 1 << 20;

/// Parses and delivers the complete messages at the start of `pending` (all of it at `eof`)
/// and removes them; the rest waits for more data.
async fn take_messages(
    pending: &mut Vec<u8>,
    eof: bool,
    sh: &Shared,
    sink: &crate::plugin::MetricSink,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Cut and parse the complete messages; deliver them before taking them from `pending`,
    // so a full buffer can be waited out and the same bytes parsed again.
    let now = now_ns();
    let mut metrics = Vec::new();
    let mut used = 0;
    while let Some((adv, range)) = sh.splitter.next(&pending[used..], eof) {
        let msg = &pending[used..][range];
        sh.parse(msg, now, &mut metrics);
        used += adv;
    }
    sh.stamp(&mut metrics, now);
    deliver_stream(metrics, sh, sink, shutdown, || {
        let mut again = Vec::new();
        let mut pos = 0;
        while let Some((adv, range)) = sh.splitter.next(&pending[pos..used], eof) {
            let _ = sh.parser.parse(&pending[pos..][range], now, &mut again);
            pos += adv;
        }
        sh.stamp(&mut again, now);
        again
    })
    .await?;
    pending.drain(..used);
    if pending.len() > sh.max_message {
        anyhow::bail!(
            "a message is longer than {} bytes without its end (splitting_strategy); raise read_buffer_size",
            sh.max_message
        );
    }
    Ok(())
}

/// Hands a stream's metrics to the pipeline, waiting while an output buffer is full (the
/// sender waits too: nothing is read from it meanwhile).
async fn deliver_stream(
    mut metrics: Vec<Metric>,
    sh: &Shared,
    sink: &crate::plugin::MetricSink,
    shutdown: &mut watch::Receiver<bool>,
    reparse: impl Fn() -> Vec<Metric>,
) -> anyhow::Result<()> {
    let mut warned = false;
    while !metrics.is_empty() {
        match sink.send(metrics).await {
            Ok(()) => return Ok(()),
            Err(SendError::Full {
                reason,
                retry_after,
            }) => {
                if !warned {
                    tracing::warn!(input = %sh.id, %reason, "socket_listener: output buffer full; holding the sender back");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(retry_after) => {}
                    _ = shutdown.wait_for(|s| *s) => anyhow::bail!("shutting down with undelivered metrics"),
                }
                metrics = reparse();
            }
            Err(SendError::Failed(m)) => {
                anyhow::bail!("the output buffers cannot store metrics: {m}")
            }
            Err(SendError::Closed) => return Ok(()),
        }
    }
    Ok(())
}

enum Dgram {
    Udp(UdpSocket),
    Unixgram(UnixDatagram),
}

impl Dgram {
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<IpAddr>)> {
        match self {
            Dgram::Udp(s) => s.recv_from(buf).await.map(|(n, a)| (n, Some(a.ip()))),
            Dgram::Unixgram(s) => s.recv(buf).await.map(|n| (n, None)),
        }
    }

    fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<IpAddr>)> {
        match self {
            Dgram::Udp(s) => s.try_recv_from(buf).map(|(n, a)| (n, Some(a.ip()))),
            Dgram::Unixgram(s) => s.try_recv(buf).map(|n| (n, None)),
        }
    }
}

/// Receives datagrams; those that queued while the last batch was delivered are taken as
/// one batch (up to [`DATAGRAM_BATCH`]).
async fn datagram_loop(
    sock: Dgram,
    sh: Arc<Shared>,
    sink: crate::plugin::MetricSink,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut backoff = AcceptBackoff::default();
    loop {
        let first = tokio::select! {
            r = sock.recv(&mut buf) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let now = now_ns();
        let mut metrics = Vec::new();
        let mut next = Some(first);
        let mut n_datagrams = 0;
        while let Some(r) = next.take() {
            match r {
                Ok((n, src)) => {
                    backoff.succeeded();
                    n_datagrams += 1;
                    if src.is_none_or(|ip| sh.allowed(ip)) {
                        datagram(&sh, &buf[..n], now, &mut metrics);
                    } else {
                        sh.refused.incr();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    sh.read_errors.incr();
                    backoff.failed(&e, "socket_listener").await;
                    break;
                }
            }
            if n_datagrams < DATAGRAM_BATCH {
                next = Some(sock.try_recv(&mut buf));
            }
        }
        sh.stamp(&mut metrics, now);
        if metrics.is_empty() {
            continue;
        }
        let n = metrics.len();
        match sink.send(metrics).await {
            Ok(()) => {}
            Err(SendError::Closed) => return,
            Err(e) => {
                let before = sh.dropped.get();
                sh.dropped.add(n as i64);
                if before == 0 || before / 10_000 != (before + n as i64) / 10_000 {
                    tracing::warn!(input = %sh.id, error = %e, dropped = before + n as i64, "socket_listener: datagrams dropped: the output buffers did not take them");
                }
            }
        }
    }
}

/// Decodes (gzip) and parses one datagram.
fn datagram(sh: &Shared, data: &[u8], now: i64, out: &mut Vec<Metric>) {
    if !sh.gzip {
        sh.parse(data, now, out);
        return;
    }
    use std::io::Read;
    let mut plain = Vec::new();
    let r = flate2::read::MultiGzDecoder::new(data)
        .take(sh.max_decompressed as u64 + 1)
        .read_to_end(&mut plain);
    match r {
        Ok(_) if plain.len() > sh.max_decompressed => {
            sh.parse_errors.incr();
            tracing::debug!(input = %sh.id, "socket_listener: datagram larger than max_decompression_size after decompression");
        }
        Ok(_) => sh.parse(&plain, now, out),
        Err(e) => {
            sh.parse_errors.incr();
            tracing::debug!(input = %sh.id, error = %e, "socket_listener: bad gzip datagram");
        }
    }
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    Ok(InputPlugin::Service(Box::new(build_listener(table, ctx)?)))
}

fn build_listener(mut table: toml::Table, ctx: &BuildContext) -> Result<Listener, BuildError> {
    let tls_cfg = TlsServerConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    let parser = ctx
        .parser
        .clone()
        .ok_or_else(|| anyhow::anyhow!("socket_listener: no data_format parser was given"))?;
    let address = parse_address(&cfg.service_address)?;
    let id = ctx.id.clone();
    let warn = |what: &str, why: &str| {
        tracing::warn!("{id}: {what} has no effect: {why}");
    };
    let stream = address.is_stream();
    let tls = tls_cfg.build()?;
    if tls.is_some() && !stream {
        warn(
            "TLS (tls_cert, tls_key)",
            "it applies to tcp and unix stream sockets only",
        );
    }
    if !stream {
        if cfg.max_connections > 0 {
            warn(
                "max_connections",
                "it applies to stream sockets (tcp, unix) only",
            );
        }
        if !cfg.read_timeout.is_zero() {
            warn(
                "read_timeout",
                "it applies to stream sockets (tcp, unix) only",
            );
        }
        if !cfg.splitting_strategy.is_empty() && cfg.splitting_strategy != "newline" {
            warn(
                "splitting_strategy",
                "each datagram is one message (stream sockets only are split)",
            );
        }
    }
    if cfg.keep_alive_period.is_some() && !matches!(address, Address::Tcp(..)) {
        warn("keep_alive_period", "it applies to tcp sockets only");
    }
    let socket_mode =
        unix_socket::parse_mode(&cfg.socket_mode).map_err(|m| bad("socket_mode", m))?;
    if socket_mode.is_some() && !matches!(address, Address::Unix(_) | Address::Unixgram(_)) {
        warn("socket_mode", "it applies to unix sockets only");
    }
    let gzip = match cfg.content_encoding.to_ascii_lowercase().as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            return Err(bad(
                "content_encoding",
                format!("must be \"identity\" or \"gzip\", not {other:?}"),
            ));
        }
    };
    if let Some(n) = cfg.max_parallel_parsers
        && n > 1
    {
        warn(
            "max_parallel_parsers",
            "sonde parses each connection on its own task",
        );
    }
    if !cfg.multicast_source.is_empty() {
        return Err(bad(
            "multicast_source",
            "source-specific multicast is not supported yet",
        ));
    }
    let mut allowed = Vec::new();
    for s in &cfg.allowed_sources {
        allowed.push(
            s.parse::<IpAddr>()
                .map_err(|_| bad("allowed_sources", format!("{s:?} is not an IP address")))?,
        );
    }
    if !allowed.is_empty() && matches!(address, Address::Unix(_) | Address::Unixgram(_)) {
        warn("allowed_sources", "unix sockets have no source address");
    }
    let receive_time = match cfg.time_source.as_str() {
        "" | "metric" => false,
        "receive_time" => true,
        other => {
            return Err(bad(
                "time_source",
                format!("must be \"metric\" or \"receive_time\", not {other:?}"),
            ));
        }
    };
    let splitter = Splitter::new(
        &cfg.splitting_strategy,
        &cfg.splitting_delimiter,
        cfg.splitting_length,
        &cfg.splitting_length_field,
    )
    .map_err(|(key, m)| bad(key, m))?;
    let stats = selfstat::register(
        "internal_socket_listener",
        &[("input", &id), ("address", &cfg.service_address)],
    );
    let read_buffer = cfg.read_buffer_size.0.min(usize::MAX as u64 >> 1) as usize;
    let shared = Shared {
        id: id.clone(),
        address: cfg.service_address.clone(),
        parser,
        splitter,
        gzip,
        max_decompressed: cfg
            .max_decompression_size
            .0
            .clamp(1, usize::MAX as u64 >> 1) as usize,
        max_message: read_buffer.max(MIN_MESSAGE),
        read_timeout: (!cfg.read_timeout.is_zero()).then(|| cfg.read_timeout.get()),
        keep_alive: cfg.keep_alive_period.map(Dur::get),
        max_connections: cfg.max_connections.min(usize::MAX as u64) as usize,
        allowed,
        receive_time,
        connections: AtomicUsize::new(0),
        stat_connections: stats.stat("connections"),
        refused: stats.stat("connections_refused"),
        messages: stats.stat("messages_received"),
        parse_errors: stats.stat("parse_errors"),
        read_errors: stats.stat("read_errors"),
        dropped: stats.stat("metrics_dropped"),
        _stats: stats,
    };
    Ok(Listener {
        address,
        socket_mode,
        read_buffer,
        tls,
        shared: Arc::new(shared),
        bound: None,
    })
}

pub const SPEC: InputSpec = InputSpec {
    name: "socket_listener",
    description: "Accept metrics in any data format over TCP, UDP or unix sockets",
    sample: include_str!("sample.toml"),
    format: Format::Parser("influx"),
    build,
};

#[cfg(test)]
mod tests;
