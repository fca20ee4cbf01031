//! `inputs.netstat`: TCP sockets by state and the UDP socket count, with Telegraf's netstat
//! field names. When reading this host's /proc, TCP states come from the kernel's sock_diag
//! netlink interface and the UDP count from /proc/net/sockstat{,6} (much cheaper); else, or if
//! those fail, both come from /proc/net/{tcp,tcp6,udp,udp6}.

mod diag;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::ProcFile;
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Field per kernel TCP state number (include/net/tcp_states.h), index = state.
const TCP_FIELDS: [&str; 13] = [
    "tcp_none",
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
    // TCP_NEW_SYN_RECV: a request socket, counted with syn_recv.
    "tcp_syn_recv",
];

/// The order Telegraf lists the fields in.
const ORDER: [&str; 12] = [
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
    "tcp_none",
];

/// Longest line of /proc/net/{tcp,udp}6 (the kernel pads tcp lines to 150 bytes, v6 ones are
/// about 180), with margin: see [`host::read_seq_to`].
const MAX_LINE: usize = 512;

struct Netstat {
    files: [(PathBuf, bool); 4],
    /// /proc/net/sockstat and sockstat6, for the UDP count when netlink is used.
    sockstat: [ProcFile; 2],
    buf: String,
    /// Netlink sees the network namespace of this process, so it is used only when /proc is
    /// our own; dropped for good (logged once) on its first failure.
    diag: Option<diag::Diag>,
}

impl Netstat {
    fn new(paths: &HostPaths) -> Self {
        let diag = if paths.proc == Path::new("/proc") {
            diag::Diag::open()
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "netstat: no sock_diag netlink, reading /proc/net")
                })
                .ok()
        } else {
            None
        };
        Self::with_diag(paths, diag)
    }

    fn with_diag(paths: &HostPaths, diag: Option<diag::Diag>) -> Self {
        Netstat {
            diag,
            files: [
                (paths.proc("net/tcp"), true),
                (paths.proc("net/tcp6"), true),
                (paths.proc("net/udp"), false),
                (paths.proc("net/udp6"), false),
            ],
            sockstat: [
                ProcFile::new(paths.proc("net/sockstat")),
                ProcFile::new(paths.proc("net/sockstat6")),
            ],
            buf: String::new(),
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        let mut tcp = [0i64; 13];
        let mut udp = 0i64;
        if let Some(d) = &mut self.diag {
            let counted = count_tcp_netlink(d, &mut tcp).and_then(|unknown| {
                Ok((
                    unknown,
                    count_udp_sockstat(&mut self.sockstat, &mut self.buf)?,
                ))
            });
            match counted {
                Ok((unknown, udp)) => {
                    if unknown > 0 {
                        acc.add_error(format!(
                            "netlink: {unknown} sockets with no known TCP state"
                        ));
                    }
                    emit(acc, &tcp, udp);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "netstat: counting from sock_diag and sockstat failed, reading /proc/net/{{tcp,udp}}{{,6}} from now on");
                    self.diag = None;
                    tcp = [0; 13];
                }
            }
        }
        self.read_proc(acc, &mut tcp, &mut udp);
        emit(acc, &tcp, udp);
    }

    fn read_proc(&mut self, acc: &mut Accumulator, tcp: &mut [i64; 13], udp: &mut i64) {
        for (path, is_tcp) in &self.files {
            if let Err(e) = host::read_seq_to(path, &mut self.buf, MAX_LINE) {
                // Hosts without IPv6 have no tcp6/udp6: not an error (as in gopsutil).
                let v6 = path.to_string_lossy().ends_with('6');
                if !(v6 && e.kind() == std::io::ErrorKind::NotFound) {
                    acc.add_error(format!("reading {}: {e}", path.display()));
                }
                continue;
            }
            let mut bad = 0;
            for line in self.buf.lines().skip(1) {
                if !is_tcp {
                    *udp += 1;
                    continue;
                }
                // "  sl  local_address rem_address   st …": the state is the 4th column, in hex.
                let state = line
                    .split_ascii_whitespace()
                    .nth(3)
                    .and_then(|s| usize::from_str_radix(s, 16).ok());
                match state {
                    Some(s) if s < TCP_FIELDS.len() => tcp[s] += 1,
                    _ => bad += 1,
                }
            }
            if bad > 0 {
                acc.add_error(format!(
                    "{}: {bad} lines with no known TCP state",
                    path.display()
                ));
            }
        }
    }
}

/// TCP sockets by state, v4 and v6; returns the count of unknown states.
fn count_tcp_netlink(d: &mut diag::Diag, tcp: &mut [i64; 13]) -> std::io::Result<usize> {
    // One walk of the TCP hash tables for both families. It costs about 2 ms on a host whose
    // established table has 256 Ki buckets, however few sockets are open.
    d.count(libc::AF_UNSPEC as u8, libc::IPPROTO_TCP as u8, tcp)
}

/// All UDP sockets, v4 and v6: the `inuse` counts of /proc/net/sockstat{,6}. The kernel counts
/// a UDP socket there while it is in its hash table, which is what /proc/net/udp{,6} and a
/// sock_diag dump list; reading two counters costs far less than dumping the table. No
/// sockstat6: no IPv6.
fn count_udp_sockstat(files: &mut [ProcFile; 2], buf: &mut String) -> std::io::Result<i64> {
    let mut udp = 0;
    for (file, key) in files.iter_mut().zip(["\nUDP: inuse ", "\nUDP6: inuse "]) {
        match file.read(buf) {
            Ok(()) => {}
            Err(e) if key.contains('6') && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let at = file.path().display();
                return Err(std::io::Error::new(e.kind(), format!("{at}: {e}")));
            }
        }
        let n = buf
            .find(key)
            .and_then(|at| buf[at + key.len()..].split_ascii_whitespace().next())
            .and_then(|n| n.parse::<i64>().ok());
        udp += n.ok_or_else(|| {
            std::io::Error::other(format!(
                "{}: no {} count",
                file.path().display(),
                key.trim()
            ))
        })?;
    }
    Ok(udp)
}

fn emit(acc: &mut Accumulator, tcp: &[i64; 13], udp: i64) {
    let mut m = metric(acc, "netstat", ValueType::Untyped, 13);
    for name in ORDER {
        let n: i64 = TCP_FIELDS
            .iter()
            .zip(tcp)
            .filter(|(f, _)| **f == name)
            .map(|(_, n)| n)
            .sum();
        push(&mut m, name, n);
    }
    push(&mut m, "udp_socket", udp);
    acc.add(m);
}

#[async_trait]
impl Input for Netstat {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let _cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Netstat::new(
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "netstat",
    description: "TCP connections by state and UDP sockets (Telegraf's netstat)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn gather(paths: &HostPaths) -> Accumulator {
        let mut n = Netstat::new(paths);
        let mut acc = Accumulator::new(1);
        n.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn counts_states_across_v4_and_v6() {
        let acc = gather(&fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let m = &acc.metrics[0];
        assert_eq!(m.fields.len(), 13);
        assert_eq!(m.field("tcp_listen"), Some(&FieldValue::Int(2)));
        assert_eq!(m.field("tcp_established"), Some(&FieldValue::Int(2)));
        assert_eq!(m.field("tcp_time_wait"), Some(&FieldValue::Int(1)));
        assert_eq!(m.field("tcp_syn_recv"), Some(&FieldValue::Int(1)));
        assert_eq!(m.field("tcp_close"), Some(&FieldValue::Int(0)));
        assert_eq!(m.field("udp_socket"), Some(&FieldValue::Int(3)));
    }

    #[test]
    fn no_ipv6_is_fine_missing_tcp_is_an_error() {
        let acc = gather(&fixture("old"));
        assert_eq!(acc.errors.len(), 2, "{:?}", acc.errors); // tcp and udp missing
        assert_eq!(
            acc.metrics[0].field("udp_socket"),
            Some(&FieldValue::Int(0))
        );
    }

    #[test]
    fn udp_count_from_sockstat_v4_and_v6() {
        let dir = crate::common::test_dir::TestDir::new("netstat-sockstat");
        let files = || {
            [
                ProcFile::new(dir.join("sockstat")),
                ProcFile::new(dir.join("sockstat6")),
            ]
        };
        let count = || count_udp_sockstat(&mut files(), &mut String::new());
        // No sockstat: an error naming the file.
        let e = count().unwrap_err().to_string();
        assert!(e.contains("sockstat: No such file"), "{e}");
        std::fs::write(
            dir.join("sockstat"),
            "sockets: used 40\nTCP: inuse 3 orphan 0 tw 1 alloc 5 mem 1\nUDP: inuse 7 mem 2\nUDPLITE: inuse 4\n",
        )
        .unwrap();
        // No sockstat6: IPv6 is off, not an error.
        assert_eq!(count().unwrap(), 7);
        std::fs::write(
            dir.join("sockstat6"),
            "TCP6: inuse 2\nUDP6: inuse 5\nUDPLITE6: inuse 9\nRAW6: inuse 0\n",
        )
        .unwrap();
        assert_eq!(count().unwrap(), 12);
        // A file without the count is an error (the input then reads /proc/net/udp{,6}).
        std::fs::write(dir.join("sockstat6"), "TCP6: inuse 2\nUDP6: inuse x\n").unwrap();
        let e = count().unwrap_err().to_string();
        assert!(e.contains("sockstat6: no UDP6: inuse count"), "{e}");
    }

    #[test]
    fn real_listening_socket_is_counted() {
        let count = || {
            let acc = gather(&HostPaths::default());
            assert!(acc.errors.is_empty(), "{:?}", acc.errors);
            match acc.metrics[0].field("tcp_listen") {
                Some(FieldValue::Int(n)) => *n,
                _ => panic!(),
            }
        };
        // 60 listeners make /proc/net/tcp longer than two pages: read_seq_to must not stop
        // early at the seq_file's page-sized chunks.
        let _l: Vec<_> = (0..60)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        // Other tests may open or close listeners concurrently: just require ours to show.
        assert!(count() >= 60);
    }
}

#[cfg(test)]
mod netlink_tests {
    use std::net::{TcpListener, TcpStream, UdpSocket};

    use super::*;
    use crate::model::Metric;

    fn fields(n: &mut Netstat) -> Metric {
        let mut acc = Accumulator::new(1);
        n.gather_sync(&mut acc);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        acc.metrics.pop().unwrap()
    }

    /// A TCP socket bound to a loopback port and left there.
    fn bound_inactive() -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: a new socket, owned from here on; bind reads the address given.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let r = libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&addr as *const libc::sockaddr_in).cast(),
                len,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            fd
        }
    }

    #[test]
    fn netlink_counts_equal_proc_files() {
        let paths = HostPaths::default();
        let mut nl = Netstat::new(&paths);
        assert!(nl.diag.is_some(), "sock_diag netlink unavailable");
        let mut pf = Netstat::with_diag(&paths, None);
        // Sockets in several states, v4 and v6: listeners, an established pair, a connection
        // closed by the client (FIN_WAIT2 / CLOSE_WAIT, or TIME_WAIT), bound and connected UDP.
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        // About 90 bytes per socket: 500 listeners make the dump span several datagrams.
        let _many: Vec<_> = (0..500)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let _l6 = TcpListener::bind("[::1]:0").ok();
        let _c = TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let _s = l4.accept().unwrap();
        let closed = TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let _closed_peer = l4.accept().unwrap();
        drop(closed);
        // Bound, neither listening nor connecting: not in /proc/net/tcp (nor in Telegraf's
        // counts); kernels from 6.8 list it in a dump that asks for TCP_BOUND_INACTIVE.
        let _bound = bound_inactive();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _u6 = UdpSocket::bind("[::1]:0").ok();
        let v = UdpSocket::bind("127.0.0.1:0").unwrap();
        v.connect(u.local_addr().unwrap()).unwrap();
        // Dual-stack, and not bound at all (in no hash table, so in neither count).
        let _any6 = UdpSocket::bind("[::]:0").ok();
        // SAFETY: a new socket, closed when the test ends.
        let _unbound = unsafe {
            use std::os::fd::FromRawFd;
            std::os::fd::OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0))
        };
        // Other tests of this binary and other processes open and close sockets meanwhile:
        // accept a /proc reading that equals the netlink readings taken just before and after.
        let mut last = None;
        for _ in 0..50 {
            let (a, p, b) = (fields(&mut nl), fields(&mut pf), fields(&mut nl));
            if a.fields == p.fields && p.fields == b.fields {
                let n = |k| match p.field(k) {
                    Some(crate::model::FieldValue::Int(n)) => *n,
                    _ => panic!("{k}"),
                };
                assert!(n("tcp_listen") >= 501 && n("tcp_established") >= 2, "{p}");
                assert!(n("udp_socket") >= 2, "{p}");
                assert!(nl.diag.is_some(), "netlink fell back to /proc");
                return;
            }
            last = Some((a, p, b));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("netlink and /proc never agreed: {last:?}");
    }
}
