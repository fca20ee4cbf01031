//! A netlink socket on the kernel's link group (RTMGRP_LINK): the kernel sends it a message
//! whenever an interface of the socket's network namespace is added, removed, renamed or
//! changes state. The net input keeps interfaces' sysfs files open only while no message came.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct LinkWatch {
    fd: OwnedFd,
}

impl LinkWatch {
    /// Subscribes to link changes in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid; family and groups are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: addr is valid for the length given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkWatch { fd })
    }

    /// Whether any link changed since the watch was opened or last asked; reads every
    /// waiting message. A failure (the socket's queue overflowed: ENOBUFS) counts as a change.
    pub fn changed(&self) -> bool {
        let mut changed = false;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: buf is valid for its length; the socket does not block.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                changed = true;
                continue;
            }
            if n == 0 {
                // No datagram is empty: something is off, take it as a change.
                return true;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return changed,
                io::ErrorKind::Interrupted => continue,
                // ENOBUFS: messages were lost. Reading on empties the queue.
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                _ => return true,
            }
        }
    }

    /// The index of interface `name` in the watch's network namespace (SIOCGIFINDEX, which
    /// any socket answers for its own namespace).
    pub fn index_of(&self, name: &str) -> Option<u32> {
        // SAFETY: a zeroed ifreq is valid; the name is copied in below, NUL-terminated.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= req.ifr_name.len() {
            return None;
        }
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: req is a valid ifreq for SIOCGIFINDEX, which writes its ifindex member.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut req) };
        // SAFETY: the union's bytes are initialised (zeroed, then the ifindex written on success).
        let index = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
        (r == 0).then_some(index)
    }
}
