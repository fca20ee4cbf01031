//! The `sockets` property: the process's socket inodes (from `/proc/<pid>/fd`) matched to the
//! kernel's socket tables, read with netlink sock_diag (`SOCK_DIAG_BY_FAMILY`, as Telegraf
//! does through vishvananda/netlink): TCP with `tcp_info` (bytes, lost, retransmits), UDP, and
//! unix sockets with name, peer and queue lengths. Where netlink sock_diag is not available
//! (no inet_diag/unix_diag in the kernel, a sandbox that refuses the socket), the same sockets
//! come from the `/proc/net/{tcp,tcp6,udp,udp6,unix}` tables, without the fields only
//! sock_diag has (`bytes_received`, `bytes_sent`, `lost`; unix queues and peer).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::model::FieldValue;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp4,
    Tcp6,
    Udp4,
    Udp6,
    Unix,
}

impl Proto {
    pub const ALL: [Proto; 5] = [
        Proto::Tcp4,
        Proto::Tcp6,
        Proto::Udp4,
        Proto::Udp6,
        Proto::Unix,
    ];

    pub fn parse(s: &str) -> Option<Proto> {
        Some(match s {
            "tcp4" => Proto::Tcp4,
            "tcp6" => Proto::Tcp6,
            "udp4" => Proto::Udp4,
            "udp6" => Proto::Udp6,
            "unix" => Proto::Unix,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp4 => "tcp4",
            Proto::Tcp6 => "tcp6",
            Proto::Udp4 => "udp4",
            Proto::Udp6 => "udp6",
            Proto::Unix => "unix",
        }
    }
}

/// One socket as the kernel describes it: Telegraf's `procstat_socket` fields (without `pid`),
/// in Telegraf's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Socket {
    pub fields: Vec<(&'static str, FieldValue)>,
}

/// Telegraf's (Linux `TCP_*` state numbers) names.
pub fn state_name(s: u8) -> &'static str {
    match s {
        1 => "established",
        2 => "syn-sent",
        3 => "syn-recv",
        4 => "fin-wait1",
        5 => "fin-wait2",
        6 => "time-wait",
        7 => "closed",
        8 => "close-wait",
        9 => "last-ack",
        10 => "listen",
        11 => "closing",
        12 => "sync-recv",
        _ => "unknown",
    }
}

pub fn type_name(t: u8) -> &'static str {
    match t {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        4 => "rdm",
        5 => "seqpacket",
        6 => "dccp",
        10 => "packet",
        _ => "unknown",
    }
}

/// The socket inodes among a process's file descriptors (`socket:[N]` links).
pub fn socket_inodes(proc_root: &Path, pid: i32) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(proc_root.join(pid.to_string()).join("fd"))? {
        let Ok(e) = e else { continue };
        if let Ok(target) = std::fs::read_link(e.path())
            && let Some(ino) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        {
            out.push(ino);
        }
    }
    Ok(out)
}

/// The sockets of one protocol, by inode, read once per gather.
pub type Table = HashMap<u32, Socket>;

pub fn dump(proto: Proto) -> std::io::Result<Table> {
    let (family, protocol) = match proto {
        Proto::Tcp4 => (libc::AF_INET, libc::IPPROTO_TCP),
        Proto::Tcp6 => (libc::AF_INET6, libc::IPPROTO_TCP),
        Proto::Udp4 => (libc::AF_INET, libc::IPPROTO_UDP),
        Proto::Udp6 => (libc::AF_INET6, libc::IPPROTO_UDP),
        Proto::Unix => (libc::AF_UNIX, 0),
    };
    let req = if proto == Proto::Unix {
        unix_request()
    } else {
        inet_request(family as u8, protocol as u8)
    };
    let mut table = Table::new();
    query(&req, |payload| {
        let parsed = if proto == Proto::Unix {
            parse_unix(payload)
        } else {
            parse_inet(payload, proto)
        };
        if let Some((ino, s)) = parsed
            && ino != 0
        {
            table.insert(ino, s);
        }
    })?;
    Ok(table)
}

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;

fn with_header(body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    m.extend_from_slice(body);
    m
}

/// `inet_diag_req_v2` (56 bytes): family, protocol, extensions (tcp_info), all states.
fn inet_request(family: u8, protocol: u8) -> Vec<u8> {
    let mut b = vec![0u8; 56];
    b[0] = family;
    b[1] = protocol;
    b[2] = 1 << (INET_DIAG_INFO - 1);
    b[4..8].copy_from_slice(&0xffff_ffffu32.to_ne_bytes());
    with_header(&b)
}

/// `unix_diag_req` (24 bytes): all states, with name, peer and queue lengths.
fn unix_request() -> Vec<u8> {
    let mut b = vec![0u8; 24];
    b[0] = libc::AF_UNIX as u8;
    b[4..8].copy_from_slice(&0xffff_ffffu32.to_ne_bytes());
    b[12..16]
        .copy_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    with_header(&b)
}

struct Fd(libc::c_int);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Sends one dump request and hands every answer's payload to `each`, until NLMSG_DONE.
fn query(req: &[u8], mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = Fd(fd);
    // Never hang a gather on the kernel's answer.
    let tv = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: tv is valid for the call.
    unsafe {
        libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    // SAFETY: a zeroed sockaddr_nl with the family set addresses the kernel.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: req and addr are valid for the call.
    let sent = unsafe {
        libc::sendto(
            fd.0,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(fd.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        match walk(&buf[..n as usize], &mut each)? {
            true => return Ok(()),
            false => continue,
        }
    }
}

/// Walks the netlink messages of one datagram; true when the dump is done.
fn walk(mut data: &[u8], each: &mut impl FnMut(&[u8])) -> std::io::Result<bool> {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < 16 || len > data.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("netlink message of {len} bytes in {}", data.len()),
            ));
        }
        let payload = &data[16..len];
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = payload
                    .get(0..4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
                return Ok(true);
            }
            _ => each(payload),
        }
        let next = (len + 3) & !3;
        if next >= data.len() {
            break;
        }
        data = &data[next..];
    }
    Ok(false)
}

/// The route attributes after a fixed header: (type, value).
fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((ty, &data[4..len]));
        let next = (len + 3) & !3;
        if next >= data.len() {
            break;
        }
        data = &data[next..];
    }
    out
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Go's net.IP String: IPv4-mapped IPv6 addresses are written as IPv4.
fn addr_string(family: u8, raw: &[u8]) -> String {
    let ip = if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let a: [u8; 16] = raw[..16].try_into().unwrap();
        let v6 = Ipv6Addr::from(a);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    };
    ip.to_string()
}

/// One `inet_diag_msg` (72 bytes) and its attributes: (inode, socket).
pub fn parse_inet(p: &[u8], proto: Proto) -> Option<(u32, Socket)> {
    if p.len() < 72 {
        return None;
    }
    let family = p[0];
    let state = p[1];
    let sport = u16::from_be_bytes([p[4], p[5]]);
    let dport = u16::from_be_bytes([p[6], p[7]]);
    let src = addr_string(family, &p[8..24]);
    let dst = addr_string(family, &p[24..40]);
    let rq = u32_at(p, 56)?;
    let wq = u32_at(p, 60)?;
    let ino = u32_at(p, 68)?;
    let mut f: Vec<(&'static str, FieldValue)> = vec![
        ("protocol", proto.name().into()),
        ("state", state_name(state).into()),
        ("src", src.into()),
        ("src_port", (sport as i64).into()),
        ("dest", dst.into()),
        ("dest_port", (dport as i64).into()),
    ];
    if matches!(proto, Proto::Tcp4 | Proto::Tcp6) {
        // struct tcp_info: retransmits (u8 at 2), lost (u32 at 32), bytes_received (u64 at
        // 128), bytes_sent (u64 at 200, Linux 4.19+).
        if let Some((_, info)) = attrs(&p[72..])
            .into_iter()
            .find(|(t, _)| *t == INET_DIAG_INFO)
        {
            if let Some(v) = u64_at(info, 128) {
                f.push(("bytes_received", (v as i64).into()));
            }
            if let Some(v) = u64_at(info, 200) {
                f.push(("bytes_sent", (v as i64).into()));
            }
            if let Some(v) = u32_at(info, 32) {
                f.push(("lost", (v as i64).into()));
            }
            if let Some(v) = info.get(2) {
                f.push(("retransmits", (*v as i64).into()));
            }
        }
    }
    f.push(("rx_queue", (rq as i64).into()));
    f.push(("tx_queue", (wq as i64).into()));
    Some((ino, Socket { fields: f }))
}

/// One `unix_diag_msg` (16 bytes) and its attributes: (inode, socket).
pub fn parse_unix(p: &[u8]) -> Option<(u32, Socket)> {
    if p.len() < 16 {
        return None;
    }
    let ty = p[1];
    let state = p[2];
    let ino = u32_at(p, 4)?;
    let (mut name, mut peer, mut rq, mut wq) = (None, None, 0u32, 0u32);
    for (t, v) in attrs(&p[16..]) {
        match t {
            UNIX_DIAG_NAME if !v.is_empty() => {
                // Abstract names start with a NUL: written with '@', as /proc/net/unix does.
                name = Some(match v.split_first() {
                    Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
                    _ => String::from_utf8_lossy(v)
                        .trim_end_matches('\0')
                        .to_string(),
                });
            }
            UNIX_DIAG_PEER => peer = u32_at(v, 0),
            UNIX_DIAG_RQLEN => {
                rq = u32_at(v, 0).unwrap_or(0);
                wq = u32_at(v, 4).unwrap_or(0);
            }
            _ => {}
        }
    }
    let mut f: Vec<(&'static str, FieldValue)> = vec![
        ("protocol", "unix".into()),
        ("type", type_name(ty).into()),
        ("state", state_name(state).into()),
        (
            "name",
            name.unwrap_or_else(|| format!("inode-{ino}")).into(),
        ),
        ("rx_queue", (rq as i64).into()),
        ("tx_queue", (wq as i64).into()),
        ("inode", (ino as i64).into()),
    ];
    if let Some(p) = peer {
        f.push(("peer", (p as i64).into()));
    }
    Some((ino, Socket { fields: f }))
}

/// The `/proc/net` table of a protocol (under the proc root: the agent's network namespace,
/// as with netlink).
pub fn read_proc_net(proc_root: &Path, proto: Proto) -> std::io::Result<Table> {
    let file = match proto {
        Proto::Tcp4 => "tcp",
        Proto::Tcp6 => "tcp6",
        Proto::Udp4 => "udp",
        Proto::Udp6 => "udp6",
        Proto::Unix => "unix",
    };
    let text = std::fs::read_to_string(proc_root.join("net").join(file))?;
    let mut table = Table::new();
    for line in text.lines().skip(1) {
        let parsed = if proto == Proto::Unix {
            parse_proc_net_unix(line)
        } else {
            parse_proc_net_inet(line, proto)
        };
        if let Some((ino, sock)) = parsed
            && ino != 0
        {
            table.insert(ino, sock);
        }
    }
    Ok(table)
}

/// `ADDR:PORT` of /proc/net/{tcp,udp}{,6}: the address as 32-bit words in host byte order,
/// the port in hex.
fn proc_net_endpoint(s: &str) -> Option<(String, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words = match addr.len() {
        8 => 1,
        32 => 4,
        _ => return None,
    };
    let mut raw = [0u8; 16];
    for w in 0..words {
        let v = u32::from_str_radix(addr.get(w * 8..w * 8 + 8)?, 16).ok()?;
        raw[w * 4..w * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let family = if words == 1 {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    Some((addr_string(family, &raw), port))
}

/// One line of /proc/net/{tcp,tcp6,udp,udp6}: (inode, socket).
pub fn parse_proc_net_inet(line: &str, proto: Proto) -> Option<(u32, Socket)> {
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let (src, sport) = proc_net_endpoint(f[1])?;
    let (dst, dport) = proc_net_endpoint(f[2])?;
    let state = u8::from_str_radix(f[3], 16).ok()?;
    let (tx, rx) = f[4].split_once(':')?;
    let tx = u32::from_str_radix(tx, 16).ok()?;
    let rx = u32::from_str_radix(rx, 16).ok()?;
    let retrans = u32::from_str_radix(f[6], 16).ok()?;
    let ino: u32 = f[9].parse().ok()?;
    let mut fields: Vec<(&'static str, FieldValue)> = vec![
        ("protocol", proto.name().into()),
        ("state", state_name(state).into()),
        ("src", src.into()),
        ("src_port", (sport as i64).into()),
        ("dest", dst.into()),
        ("dest_port", (dport as i64).into()),
    ];
    if matches!(proto, Proto::Tcp4 | Proto::Tcp6) {
        fields.push(("retransmits", (retrans as i64).into()));
    }
    fields.push(("rx_queue", (rx as i64).into()));
    fields.push(("tx_queue", (tx as i64).into()));
    Some((ino, Socket { fields }))
}

/// One line of /proc/net/unix: (inode, socket). Listening: the `__SO_ACCEPTCON` flag;
/// connected: `SS_CONNECTED`; otherwise closed (netlink's TCP_CLOSE for unix sockets).
pub fn parse_proc_net_unix(line: &str) -> Option<(u32, Socket)> {
    // Num: RefCount Protocol Flags Type St Inode [Path]; the path is the rest of the line
    // (it may hold spaces).
    let mut rest = line;
    let mut f = [""; 7];
    for slot in &mut f {
        rest = rest.trim_start();
        let end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        *slot = &rest[..end];
        rest = &rest[end..];
    }
    f[0].strip_suffix(':')?;
    let flags = u32::from_str_radix(f[3], 16).ok()?;
    let ty = u8::from_str_radix(f[4], 16).ok()?;
    let st = u8::from_str_radix(f[5], 16).ok()?;
    let ino: u32 = f[6].parse().ok()?;
    let after = rest.trim();
    let state = if flags & 0x10000 != 0 {
        "listen"
    } else if st == 3 {
        "established"
    } else {
        "closed"
    };
    let name = if after.is_empty() {
        format!("inode-{ino}")
    } else {
        after.to_string()
    };
    let fields: Vec<(&'static str, FieldValue)> = vec![
        ("protocol", "unix".into()),
        ("type", type_name(ty).into()),
        ("state", state.into()),
        ("name", name.into()),
        ("inode", (ino as i64).into()),
    ];
    Some((ino, Socket { fields }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet_msg(family: u8, state: u8, ino: u32, info: Option<Vec<u8>>) -> Vec<u8> {
        let mut p = vec![0u8; 72];
        p[0] = family;
        p[1] = state;
        p[4..6].copy_from_slice(&8080u16.to_be_bytes());
        p[6..8].copy_from_slice(&443u16.to_be_bytes());
        if family == libc::AF_INET as u8 {
            p[8..12].copy_from_slice(&[127, 0, 0, 1]);
            p[24..28].copy_from_slice(&[10, 1, 2, 3]);
        } else {
            p[8..24].copy_from_slice(&"::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
            p[24..40].copy_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        }
        p[56..60].copy_from_slice(&5u32.to_ne_bytes());
        p[60..64].copy_from_slice(&6u32.to_ne_bytes());
        p[68..72].copy_from_slice(&ino.to_ne_bytes());
        if let Some(info) = info {
            p.extend_from_slice(&((info.len() + 4) as u16).to_ne_bytes());
            p.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
            p.extend_from_slice(&info);
        }
        p
    }

    fn get<'a>(s: &'a Socket, k: &str) -> Option<&'a FieldValue> {
        s.fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    #[test]
    fn inet_messages() {
        let mut info = vec![0u8; 232];
        info[2] = 3;
        info[32..36].copy_from_slice(&4u32.to_ne_bytes());
        info[128..136].copy_from_slice(&1000u64.to_ne_bytes());
        info[200..208].copy_from_slice(&2000u64.to_ne_bytes());
        let (ino, s) = parse_inet(
            &inet_msg(libc::AF_INET as u8, 1, 77, Some(info)),
            Proto::Tcp4,
        )
        .unwrap();
        assert_eq!(ino, 77);
        let names: Vec<&str> = s.fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "protocol",
                "state",
                "src",
                "src_port",
                "dest",
                "dest_port",
                "bytes_received",
                "bytes_sent",
                "lost",
                "retransmits",
                "rx_queue",
                "tx_queue"
            ]
        );
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("established")));
        assert_eq!(get(&s, "src"), Some(&FieldValue::from("127.0.0.1")));
        assert_eq!(get(&s, "dest"), Some(&FieldValue::from("10.1.2.3")));
        assert_eq!(get(&s, "src_port"), Some(&FieldValue::Int(8080)));
        assert_eq!(get(&s, "dest_port"), Some(&FieldValue::Int(443)));
        assert_eq!(get(&s, "bytes_received"), Some(&FieldValue::Int(1000)));
        assert_eq!(get(&s, "bytes_sent"), Some(&FieldValue::Int(2000)));
        assert_eq!(get(&s, "lost"), Some(&FieldValue::Int(4)));
        assert_eq!(get(&s, "retransmits"), Some(&FieldValue::Int(3)));
        assert_eq!(get(&s, "rx_queue"), Some(&FieldValue::Int(5)));
        assert_eq!(get(&s, "tx_queue"), Some(&FieldValue::Int(6)));

        // IPv6 UDP, mapped source written as IPv4, no tcp_info fields; a short tcp_info
        // (older kernels) gives what it has.
        let (_, s) = parse_inet(&inet_msg(libc::AF_INET6 as u8, 7, 1, None), Proto::Udp6).unwrap();
        assert_eq!(get(&s, "src"), Some(&FieldValue::from("127.0.0.1")));
        assert_eq!(get(&s, "dest"), Some(&FieldValue::from("fe80::1")));
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("closed")));
        assert!(get(&s, "bytes_received").is_none());
        let (_, s) = parse_inet(
            &inet_msg(libc::AF_INET6 as u8, 10, 1, Some(vec![0u8; 136])),
            Proto::Tcp6,
        )
        .unwrap();
        assert!(get(&s, "bytes_received").is_some() && get(&s, "bytes_sent").is_none());
        assert!(parse_inet(&[0u8; 40], Proto::Tcp4).is_none());
    }

    #[test]
    fn unix_messages() {
        let mut p = vec![0u8; 16];
        p[0] = libc::AF_UNIX as u8;
        p[1] = 1;
        p[2] = 10;
        p[4..8].copy_from_slice(&99u32.to_ne_bytes());
        let name = b"\0hidden";
        p.extend_from_slice(&((name.len() + 4) as u16).to_ne_bytes());
        p.extend_from_slice(&UNIX_DIAG_NAME.to_ne_bytes());
        p.extend_from_slice(name);
        p.push(0); // padding to 4
        p.extend_from_slice(&12u16.to_ne_bytes());
        p.extend_from_slice(&UNIX_DIAG_RQLEN.to_ne_bytes());
        p.extend_from_slice(&2u32.to_ne_bytes());
        p.extend_from_slice(&128u32.to_ne_bytes());
        let (ino, s) = parse_unix(&p).unwrap();
        assert_eq!(ino, 99);
        assert_eq!(get(&s, "name"), Some(&FieldValue::from("@hidden")));
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("listen")));
        assert_eq!(get(&s, "type"), Some(&FieldValue::from("stream")));
        assert_eq!(get(&s, "rx_queue"), Some(&FieldValue::Int(2)));
        assert_eq!(get(&s, "tx_queue"), Some(&FieldValue::Int(128)));
        assert!(get(&s, "peer").is_none());
        let mut q = vec![0u8; 16];
        q[1] = 2;
        q[2] = 7;
        q[4..8].copy_from_slice(&5u32.to_ne_bytes());
        q.extend_from_slice(&8u16.to_ne_bytes());
        q.extend_from_slice(&UNIX_DIAG_PEER.to_ne_bytes());
        q.extend_from_slice(&6u32.to_ne_bytes());
        let (_, s) = parse_unix(&q).unwrap();
        assert_eq!(get(&s, "name"), Some(&FieldValue::from("inode-5")));
        assert_eq!(get(&s, "type"), Some(&FieldValue::from("dgram")));
        assert_eq!(get(&s, "peer"), Some(&FieldValue::Int(6)));
    }

    #[test]
    fn walk_stops_at_done_and_reports_errors() {
        let mut d = with_header(&[1, 2, 3, 4]);
        d[4..6].copy_from_slice(&20u16.to_ne_bytes());
        let mut done = with_header(&[0, 0, 0, 0]);
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        d.extend_from_slice(&done);
        let mut seen = Vec::new();
        assert!(walk(&d, &mut |p: &[u8]| seen.push(p.to_vec())).unwrap());
        assert_eq!(seen, vec![vec![1, 2, 3, 4]]);
        let mut e = with_header(&(-libc::EACCES).to_ne_bytes());
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(walk(&e, &mut |_: &[u8]| {}).is_err());
        let mut bad = with_header(&[]);
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(walk(&bad, &mut |_: &[u8]| {}).is_err());
    }

    #[test]
    fn own_listening_socket_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port() as i64;
        let me = std::process::id() as i32;
        let inodes = socket_inodes(Path::new("/proc"), me).unwrap();
        let table = dump(Proto::Tcp4).unwrap();
        let s = inodes
            .iter()
            .filter_map(|i| table.get(i))
            .find(|s| get(s, "src_port") == Some(&FieldValue::Int(port)))
            .expect("own listener in the netlink dump");
        assert_eq!(get(s, "state"), Some(&FieldValue::from("listen")));
    }

    #[test]
    fn proc_net_lines() {
        // 127.0.0.1:8080 <- 10.1.2.3:443, established, tx 5, rx 6, 2 retransmits.
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let far = u32::from_ne_bytes([10, 1, 2, 3]);
        let line = format!(
            "   0: {lo:08X}:1F90 {far:08X}:01BB 01 00000005:00000006 00:00000000 00000002     0 \
             0 4242 1 0000000000000000 20 4 30 10 -1"
        );
        let (ino, s) = parse_proc_net_inet(&line, Proto::Tcp4).unwrap();
        assert_eq!(ino, 4242);
        assert_eq!(get(&s, "src"), Some(&FieldValue::from("127.0.0.1")));
        assert_eq!(get(&s, "dest"), Some(&FieldValue::from("10.1.2.3")));
        assert_eq!(get(&s, "src_port"), Some(&FieldValue::Int(8080)));
        assert_eq!(get(&s, "dest_port"), Some(&FieldValue::Int(443)));
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("established")));
        assert_eq!(get(&s, "retransmits"), Some(&FieldValue::Int(2)));
        assert_eq!(get(&s, "tx_queue"), Some(&FieldValue::Int(5)));
        assert_eq!(get(&s, "rx_queue"), Some(&FieldValue::Int(6)));
        assert!(get(&s, "bytes_received").is_none());

        // ::1 listening (tcp6) and an IPv4-mapped UDP socket (udp6).
        let words = |a: Ipv6Addr| -> String {
            a.octets()
                .chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes(c.try_into().unwrap())))
                .collect()
        };
        let one = words(Ipv6Addr::LOCALHOST);
        let any = words(Ipv6Addr::UNSPECIFIED);
        let line = format!(
            "   1: {one}:0050 {any}:0000 0A 00000000:00000003 00:00000000 00000000     0        0 77 1"
        );
        let (_, s) = parse_proc_net_inet(&line, Proto::Tcp6).unwrap();
        assert_eq!(get(&s, "src"), Some(&FieldValue::from("::1")));
        assert_eq!(get(&s, "dest"), Some(&FieldValue::from("::")));
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("listen")));
        let mapped = words("::ffff:192.168.1.2".parse().unwrap());
        let line = format!(
            " 9: {mapped}:0035 {any}:0000 07 00000000:00000000 00:00000000 00000000 0 0 78 2 0000000000000000 0"
        );
        let (_, s) = parse_proc_net_inet(&line, Proto::Udp6).unwrap();
        assert_eq!(get(&s, "src"), Some(&FieldValue::from("192.168.1.2")));
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("closed")));
        assert!(get(&s, "retransmits").is_none());
        // The header and broken lines are not sockets.
        assert!(
            parse_proc_net_inet(
                "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
                Proto::Tcp4
            )
            .is_none()
        );
        assert!(parse_proc_net_inet("0: 0100007F:zz 0:0 01 0:0 0 0 0 0 1", Proto::Tcp4).is_none());
    }

    #[test]
    fn proc_net_unix_lines() {
        let (ino, s) = parse_proc_net_unix(
            "0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/my app.sock",
        )
        .unwrap();
        assert_eq!(ino, 12345);
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("listen")));
        assert_eq!(get(&s, "type"), Some(&FieldValue::from("stream")));
        assert_eq!(get(&s, "name"), Some(&FieldValue::from("/run/my app.sock")));
        let (_, s) =
            parse_proc_net_unix("000000003d81c9fa: 00000003 00000000 00000000 0001 03 3693277")
                .unwrap();
        assert_eq!(get(&s, "state"), Some(&FieldValue::from("established")));
        assert_eq!(get(&s, "name"), Some(&FieldValue::from("inode-3693277")));
        let (_, s) =
            parse_proc_net_unix("00000000aa: 00000002 00000000 00000000 0002 01 9 @abstract")
                .unwrap();
        assert_eq!(
            (get(&s, "type"), get(&s, "state"), get(&s, "name")),
            (
                Some(&FieldValue::from("dgram")),
                Some(&FieldValue::from("closed")),
                Some(&FieldValue::from("@abstract"))
            )
        );
        assert!(
            parse_proc_net_unix("Num       RefCount Protocol Flags    Type St Inode Path")
                .is_none()
        );
    }

    /// The /proc/net tables and netlink agree on this process's own sockets.
    #[test]
    fn proc_net_agrees_with_netlink() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let u = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let dir = std::env::temp_dir().join(format!("sonde-sock-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let ux = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        let me = std::process::id() as i32;
        let inodes = socket_inodes(Path::new("/proc"), me).unwrap();
        let common = [
            "protocol",
            "state",
            "src",
            "src_port",
            "dest",
            "dest_port",
            "type",
            "name",
        ];
        for proto in [Proto::Tcp4, Proto::Udp6, Proto::Unix] {
            let nl = dump(proto).unwrap();
            let pn = read_proc_net(Path::new("/proc"), proto).unwrap();
            let mine: Vec<&u32> = inodes.iter().filter(|i| nl.contains_key(i)).collect();
            assert!(!mine.is_empty(), "{proto:?}");
            for ino in mine {
                let (a, b) = (&nl[ino], &pn[ino]);
                for k in common {
                    assert_eq!(get(a, k), get(b, k), "{proto:?} {k}");
                }
            }
        }
        drop((l, c, u, ux));
        let _ = std::fs::remove_file(&dir);
    }

    proptest::proptest! {
        #[test]
        fn text_parsers_never_panic(s in "\\PC{0,300}") {
            let _ = parse_proc_net_inet(&s, Proto::Tcp6);
            let _ = parse_proc_net_unix(&s);
        }

        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_inet(&b, Proto::Tcp6);
            let _ = parse_unix(&b);
            let _ = walk(&b, &mut |_: &[u8]| {});
            let _ = attrs(&b);
        }
    }
}
