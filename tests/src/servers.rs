//! Real servers for end-to-end tests: start a program, wait until an HTTP URL answers, kill it
//! when dropped. Plus a tiny blocking HTTP GET for talking to them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A server process; killed (and reaped) when dropped.
pub struct Process {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, output to `log`, and waits up to `timeout` until
    /// `ready_url` answers 200. Panics with the program's log when it does not.
    pub fn start(
        program: &str,
        args: &[String],
        log: PathBuf,
        ready_url: &str,
        timeout: Duration,
    ) -> Process {
        assert!(
            std::path::Path::new(program).exists(),
            "{program} is missing: run tests/setup.sh (it installs the Debian packages)"
        );
        let out = std::fs::File::create(&log).expect("server log");
        let err = out.try_clone().expect("server log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let mut p = Process {
            child,
            name: program.to_string(),
            log,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("{program} exited with {status}; log:\n{}", p.log());
            }
            if get(ready_url).is_ok_and(|(code, _)| code == 200) {
                return p;
            }
            if Instant::now() > deadline {
                panic!(
                    "{program} not ready at {ready_url} in {timeout:?}; log:\n{}",
                    p.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url` (plain http) with HTTP/1.0, so the body is neither chunked nor compressed.
/// Returns the status and the body.
pub fn get(url: &str) -> std::io::Result<(u16, String)> {
    get_with(url, &[])
}

/// [`get`] with extra request headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> std::io::Result<(u16, String)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    Ok((
        code,
        String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    ))
}

/// Percent-encodes a query-string component.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
