//! Socket counts by state from the kernel's NETLINK_SOCK_DIAG interface (inet_diag, what `ss`
//! uses): one dump request per protocol and family, reading only the state byte of each reply.
//! Unlike /proc/net/tcp{,6} it formats no text per socket, and sends everything in a few
//! datagrams instead of page-sized seq_file reads that each resume a walk of the hash tables.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h): the request and reply message type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK` (linux/inet_diag.h): the older request, which dumps TCP sockets of both
/// families in one walk of the hash tables (the v2 request walks them once per family).
const TCPDIAG_GETSOCK: u16 = 18;
const NLMSG_HDRLEN: usize = 16;
/// idiag_states: every TCP state from ESTABLISHED (1) to NEW_SYN_RECV (12; request sockets,
/// which the kernel lists with SYN_RECV), the sockets /proc/net/tcp lists. Not
/// TCP_BOUND_INACTIVE (13, kernels from 6.8): bound sockets that neither listen nor connect,
/// reported in state CLOSE; asking for them also walks the bind hash table, about a third
/// more kernel time per dump.
const STATES: u32 = ((1 << 13) - 1) & !1;

/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a 48-byte sockid.
const REQ_LEN: usize = 56;
/// `struct inet_diag_req`: family, src_len, dst_len, ext, the sockid, states, dbs.
const REQ_COMPAT_LEN: usize = 60;
/// Large enough for any dump skb the kernel sends (it caps them at 32 KiB by default).
const RECV_BUF: usize = 64 * 1024;

pub struct Diag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl Diag {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A reply that never comes must not hang the gather: time out (then /proc is used).
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: timeout is a valid timeval for the length given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Diag {
            fd,
            buf: vec![0; RECV_BUF],
            seq: 0,
        })
    }

    /// Adds one to `counts[state]` for every socket of `family` (AF_INET/AF_INET6, or
    /// AF_UNSPEC for both: TCP only) and `protocol` (IPPROTO_TCP/UDP); returns the number of
    /// sockets whose state is beyond `counts`.
    pub fn count(&mut self, family: u8, protocol: u8, counts: &mut [i64]) -> io::Result<usize> {
        self.seq = self.seq.wrapping_add(1);
        let kind = self.send(family, protocol)?;
        let mut unknown = 0;
        loop {
            // MSG_TRUNC makes recv return the datagram's real length, to detect a short buffer.
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > self.buf.len() {
                return Err(io::Error::other(format!(
                    "netlink message of {n} bytes truncated"
                )));
            }
            if let Some(done) = parse(&self.buf[..n], kind, self.seq, counts, &mut unknown) {
                return done.map(|()| unknown);
            }
        }
    }

    /// Sends the dump request; returns the message type of its replies.
    fn send(&self, family: u8, protocol: u8) -> io::Result<u16> {
        let compat = family == libc::AF_UNSPEC as u8;
        if compat && protocol != libc::IPPROTO_TCP as u8 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (kind, body) = if compat {
            (TCPDIAG_GETSOCK, REQ_COMPAT_LEN)
        } else {
            (SOCK_DIAG_BY_FAMILY, REQ_LEN)
        };
        let len = NLMSG_HDRLEN + body;
        let mut req = [0u8; NLMSG_HDRLEN + REQ_COMPAT_LEN];
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&kind.to_ne_bytes());
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let states = STATES.to_ne_bytes();
        if compat {
            req[NLMSG_HDRLEN + 52..NLMSG_HDRLEN + 56].copy_from_slice(&states);
        } else {
            req[16] = family;
            req[17] = protocol;
            req[20..24].copy_from_slice(&states);
        }
        let req = &req[..len];
        // SAFETY: zeroed sockaddr_nl is the kernel's address (nl_pid 0) once family is set.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: req and addr are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    req.as_ptr().cast(),
                    req.len(),
                    0,
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(kind);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Counts the socket states in one datagram of a dump reply; `Some` once the dump is over.
fn parse(
    mut msgs: &[u8],
    reply: u16,
    want_seq: u32,
    counts: &mut [i64],
    unknown: &mut usize,
) -> Option<io::Result<()>> {
    while msgs.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(msgs[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(msgs[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(msgs[8..12].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > msgs.len() {
            let e = io::Error::other(format!("bad netlink message length {len}"));
            return Some(Err(e));
        }
        let payload = &msgs[NLMSG_HDRLEN..len];
        // Messages are padded to 4 bytes; the last one may not be.
        msgs = &msgs[((len + 3) & !3).min(msgs.len())..];
        if seq != want_seq {
            continue; // left over from an earlier, abandoned dump
        }
        match kind as i32 {
            // A dump that failed part way reports its errno in NLMSG_DONE.
            libc::NLMSG_DONE => {
                return Some(match errno(payload) {
                    Some(e) if e < 0 => Err(io::Error::from_raw_os_error(-e)),
                    _ => Ok(()),
                });
            }
            libc::NLMSG_ERROR => {
                // Error 0 is an ACK, which a dump request does not ask for.
                let e = errno(payload).filter(|&e| e < 0).unwrap_or(-libc::EPROTO);
                return Some(Err(io::Error::from_raw_os_error(-e)));
            }
            // struct inet_diag_msg starts with family, state.
            _ if kind == reply => match payload.get(1).and_then(|&s| counts.get_mut(s as usize)) {
                Some(c) => *c += 1,
                None => *unknown += 1,
            },
            _ => {}
        }
    }
    None
}

/// The `int error` that starts NLMSG_ERROR and NLMSG_DONE payloads.
fn errno(payload: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 2]);
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(payload);
        m.resize((len + 3) & !3, 0);
        m
    }

    #[test]
    fn parses_states_done_and_errors() {
        let (mut counts, mut unknown) = ([0i64; 13], 0);
        let mut d = msg(SOCK_DIAG_BY_FAMILY, 7, &[2, 10, 0]); // a listener (odd length: padded)
        d.extend(msg(SOCK_DIAG_BY_FAMILY, 7, &[2, 1]));
        d.extend(msg(SOCK_DIAG_BY_FAMILY, 6, &[2, 1])); // stale dump: ignored
        d.extend(msg(SOCK_DIAG_BY_FAMILY, 7, &[2, 99])); // no such state
        assert!(parse(&d, SOCK_DIAG_BY_FAMILY, 7, &mut counts, &mut unknown).is_none());
        assert_eq!((counts[10], counts[1], unknown), (1, 1, 1));
        let done = msg(libc::NLMSG_DONE as u16, 7, &0i32.to_ne_bytes());
        assert!(matches!(
            parse(&done, SOCK_DIAG_BY_FAMILY, 7, &mut counts, &mut unknown),
            Some(Ok(()))
        ));
        let failed = msg(libc::NLMSG_DONE as u16, 7, &(-libc::EINTR).to_ne_bytes());
        let e = parse(&failed, SOCK_DIAG_BY_FAMILY, 7, &mut counts, &mut unknown)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR));
        let err = msg(libc::NLMSG_ERROR as u16, 7, &(-libc::ENOENT).to_ne_bytes());
        let e = parse(&err, SOCK_DIAG_BY_FAMILY, 7, &mut counts, &mut unknown)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let mut bad = msg(SOCK_DIAG_BY_FAMILY, 7, &[2, 1]);
        bad[0] = 200; // longer than the datagram
        assert!(
            parse(&bad, SOCK_DIAG_BY_FAMILY, 7, &mut counts, &mut unknown)
                .unwrap()
                .is_err()
        );
    }
}
