//! Real servers for the end-to-end tests, each started in its own temp dir on a free loopback
//! port and stopped when dropped: InfluxDB 1.x (`influxd`) and VictoriaMetrics. Installed by
//! tests/setup.sh; a missing binary fails the test with a pointer to it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{TempDir, wait_until};

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run tests/setup.sh (it installs the servers the tests need)");
}

/// A running server process; killed when dropped.
pub struct Proc {
    child: Child,
    pub dir: TempDir,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
    fn wait_ready(self, path: &str) -> Proc {
        let ok = wait_until(Duration::from_secs(30), || {
            matches!(
                request(&self.addr, "GET", path, &[], b""),
                Ok((200..=299, _))
            )
        });
        assert!(
            ok,
            "server on {} did not become ready; log:\n{}",
            self.addr,
            self.log()
        );
        self
    }
}

fn spawn(dir: TempDir, addr: String, cmd: &mut Command) -> Proc {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start server");
    Proc { child, dir, addr }
}

/// InfluxDB 1.x with its own data dir, HTTP on a free port; ready once /ping answers.
pub fn influxd() -> Proc {
    let bin = binary("influxd");
    let dir = TempDir::new("influxd");
    let (http, rpc) = (free_port(), free_port());
    let d = dir.path().display();
    let cfg = dir.write(
        "influxdb.conf",
        &format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"#
        ),
    );
    let addr = format!("127.0.0.1:{http}");
    spawn(
        dir,
        addr,
        Command::new(bin).arg("run").arg("-config").arg(cfg),
    )
    .wait_ready("/ping")
}

/// VictoriaMetrics single-node with its own data dir; ready once /health answers.
pub fn victoria_metrics() -> Proc {
    let bin = binary("victoria-metrics");
    let dir = TempDir::new("vm");
    let addr = format!("127.0.0.1:{}", free_port());
    let data = dir.join("data");
    spawn(
        dir,
        addr.clone(),
        Command::new(bin)
            .arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr={addr}"))
            .arg("-loggerLevel=ERROR"),
    )
    .wait_ready("/health")
}

/// A blocking HTTP/1.1 request (`Connection: close`); returns status and the body
/// (chunked transfer encoding decoded).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Percent-encodes a query component.
pub fn enc(s: &str) -> String {
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

/// Runs an InfluxQL query against `db`; returns the JSON text (timestamps in ns).
pub fn influxql(server: &Proc, db: &str, q: &str) -> String {
    let path = format!("/query?db={}&epoch=ns&q={}", enc(db), enc(q));
    let (status, body) = request(&server.addr, "GET", &path, &[], b"").unwrap();
    assert_eq!(status, 200, "query {q:?}: {body}");
    body
}
