//! What sonde tells a service manager, and the health check a container engine runs.
//!
//! systemd's `Type=notify` protocol: one datagram per state change to the socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name after `@`). Without that variable (not run
//! by systemd) every call is a no-op, so nothing else needs to know how sonde was started.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Sends one `KEY=value` state (e.g. `READY=1`) to systemd, if sonde runs under it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!("cannot notify systemd ({state}): {e}");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// `RELOADING=1` with the monotonic time systemd's `Type=notify-reload` asks for.
pub fn reloading_state() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// The embedded default config's endpoint: `$SONDE_LISTEN` (a wildcard address is checked on
/// loopback), else 127.0.0.1:9273.
pub fn default_health_url() -> String {
    let listen = std::env::var("SONDE_LISTEN").unwrap_or_default();
    let listen = listen.trim();
    let addr = match listen.rsplit_once(':') {
        _ if listen.is_empty() => "127.0.0.1:9273".to_string(),
        Some(("" | "0.0.0.0" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => listen.to_string(),
    };
    format!("http://{addr}/metrics")
}

/// GETs `url` (plain `http://host:port/path`) and succeeds on a 2xx answer within `timeout`.
///
/// The container image is `FROM scratch`, so its HEALTHCHECK cannot run curl: it runs
/// `sonde health` instead.
pub fn check_health(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs can be checked"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let deadline = Instant::now() + timeout;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).ok();
    stream.set_write_timeout(Some(left)).ok();
    // One write: `write!` sends each formatted piece apart, and a server that answers after
    // the first piece and closes makes the rest fail with a broken pipe.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sonde-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    // The status line is all we need: "HTTP/1.1 200 OK".
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    let line = std::str::from_utf8(&head[..n]).unwrap_or("");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("{url}: HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn notify_sends_the_state_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("sonde-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notify_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sonde-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn reloading_carries_a_monotonic_time() {
        let s = reloading_state();
        let usec: u64 = s
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
    }

    fn serve_once(answer: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request, as a server reads it before answering.
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            s.write_all(answer.as_bytes()).unwrap();
        });
        format!("http://{addr}/metrics")
    }

    #[test]
    fn health_accepts_2xx_and_refuses_the_rest() {
        let ok = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(check_health(&ok, Duration::from_secs(2)), Ok(200));
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = check_health(&bad, Duration::from_secs(2)).unwrap_err();
        assert!(err.contains("HTTP 503"), "{err}");
        let garbage = serve_once("hello\r\n");
        assert!(check_health(&garbage, Duration::from_secs(2)).is_err());
    }

    #[test]
    fn health_fails_on_a_closed_port_and_non_http_urls() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            check_health(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(1)).is_err()
        );
        assert!(check_health("https://127.0.0.1/", Duration::from_secs(1)).is_err());
    }
}
