//! For the CloudWatch tests: moto's server (the AWS API, from PyPI into tests/.venv), a
//! recording proxy in front of it (what sonde sent, request by request, and what moto answered),
//! a small scriptable HTTP server for the EC2 instance metadata and ECS credential endpoints,
//! and boto3 calls to read back what moto stored (tests/src/cloudwatch_query.py).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::servers::free_port;
use crate::{TempDir, wait_until};

fn venv_bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run tests/setup.sh (it installs moto[server] into tests/.venv)",
        p.display()
    );
    p
}

/// moto's server on a free loopback port; killed when dropped.
pub struct Moto {
    child: Child,
    pub dir: TempDir,
    pub addr: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub fn start() -> Moto {
        let dir = TempDir::new("moto");
        let port = free_port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let addr = format!("127.0.0.1:{port}");
        let m = Moto { child, dir, addr };
        let ok = wait_until(Duration::from_secs(60), || {
            matches!(
                crate::servers::request(&m.addr, "GET", "/moto-api/data.json", &[], b""),
                Ok((200, _))
            )
        });
        assert!(
            ok,
            "moto did not start; log:\n{}",
            std::fs::read_to_string(m.dir.join("moto.log")).unwrap_or_default()
        );
        m
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls `service.operation(**params)` with boto3 against moto; returns the answer as JSON
    /// (datetimes as ISO strings).
    pub fn call(
        &self,
        service: &str,
        operation: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/cloudwatch_query.py");
        let out = Command::new(venv_bin("python"))
            .arg(script)
            .args([&self.url(), service, operation, &params.to_string()])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{service}.{operation} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON from cloudwatch_query.py")
    }
}

/// One request that went through the proxy, and moto's answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Bytes on the wire (after any Content-Encoding).
    pub wire_len: usize,
    /// The body, decoded (gunzipped) when it was compressed.
    pub body: String,
    pub status: u16,
    pub response: String,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A form parameter of the (Query-protocol) body, decoded.
    pub fn param(&self, key: &str) -> Option<String> {
        self.body.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| form_decode(v))
        })
    }

    pub fn action(&self) -> String {
        self.param("Action").unwrap_or_default()
    }

    /// The access key id of the SigV4 Authorization header.
    pub fn access_key(&self) -> Option<String> {
        let auth = self.header("authorization")?;
        let cred = auth.split("Credential=").nth(1)?;
        Some(cred.split('/').next()?.to_string())
    }

    /// Number of MetricData members of a PutMetricData body.
    pub fn datums(&self) -> usize {
        self.body.matches(".MetricName=").count()
    }
}

pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 3 <= b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => out.push(x),
                    None => out.extend_from_slice(&b[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request read off a connection.
struct Raw {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Raw> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (headers, body) = crate::read_headers_and_body(reader)?;
    Some(Raw {
        method,
        path,
        headers,
        body,
    })
}

fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Send + Sync + Clone + 'static,
) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false).ok();
                    let h = handle.clone();
                    std::thread::spawn(move || h(conn));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// A proxy in front of moto that records every exchange. Each request is forwarded on a new
/// connection; the answer goes back with `Connection: close`.
pub struct Recorder {
    pub addr: String,
    log: Arc<Mutex<Vec<Exchange>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Recorder {
    pub fn start(upstream: &str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, up) = (log.clone(), upstream.to_string());
        accept_loop(listener, stop.clone(), move |conn| {
            conn.set_read_timeout(Some(Duration::from_secs(600))).ok();
            let mut writer = conn.try_clone().unwrap();
            let mut reader = BufReader::new(conn);
            let Some(req) = read_request(&mut reader) else {
                return;
            };
            let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
            for (k, v) in &req.headers {
                if !k.eq_ignore_ascii_case("connection") {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
            }
            head.push_str("connection: close\r\n\r\n");
            let answer = (|| -> std::io::Result<Vec<u8>> {
                let mut s = TcpStream::connect(&up)?;
                s.set_read_timeout(Some(Duration::from_secs(600)))?;
                s.write_all(head.as_bytes())?;
                s.write_all(&req.body)?;
                let mut raw = Vec::new();
                s.read_to_end(&mut raw)?;
                Ok(raw)
            })()
            .unwrap_or_else(|e| {
                format!(
                    "HTTP/1.1 502 Bad Gateway\r\ncontent-length: {}\r\n\r\n{e}",
                    e.to_string().len()
                )
                .into_bytes()
            });
            let text = String::from_utf8_lossy(&answer).into_owned();
            let (rhead, rbody) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let status = rhead.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let gz = req.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("content-encoding") && v.eq_ignore_ascii_case("gzip")
            });
            let body = if gz {
                let mut s = String::new();
                flate2::read::GzDecoder::new(&req.body[..])
                    .read_to_string(&mut s)
                    .expect("gzip body");
                s
            } else {
                String::from_utf8_lossy(&req.body).into_owned()
            };
            l.lock().unwrap().push(Exchange {
                path: req.path,
                headers: req.headers,
                wire_len: req.body.len(),
                body,
                status,
                response: rbody.to_string(),
            });
            // Pass the answer on, closing the connection after it.
            let mut out = Vec::new();
            for line in rhead.split("\r\n") {
                if !line.to_ascii_lowercase().starts_with("connection:") {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"connection: close\r\n\r\n");
            let body_start = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4)
                .unwrap_or(answer.len());
            out.extend_from_slice(&answer[body_start..]);
            let _ = writer.write_all(&out);
        });
        Recorder { addr, log, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().unwrap().clone()
    }

    /// The exchanges of one Query action (`PutMetricData`, `AssumeRole`, ...).
    pub fn of(&self, action: &str) -> Vec<Exchange> {
        self.exchanges()
            .into_iter()
            .filter(|e| e.action() == action)
            .collect()
    }
}

/// A request to a [`Fixture`].
#[derive(Clone, Debug)]
pub struct FixtureRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl FixtureRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fixture's answer: status, extra headers, body.
pub type FixtureReply = (u16, Vec<(&'static str, String)>, String);

type Handler = dyn Fn(&FixtureRequest) -> FixtureReply + Send + Sync;

/// A local HTTP server whose answers a closure computes (for the instance metadata and ECS
/// credential endpoints); records the requests.
pub struct Fixture {
    pub addr: String,
    log: Arc<Mutex<Vec<FixtureRequest>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Fixture {
    pub fn start(
        handler: impl Fn(&FixtureRequest) -> FixtureReply + Send + Sync + 'static,
    ) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let l = log.clone();
        accept_loop(listener, stop.clone(), move |conn| {
            conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
            let mut writer = conn.try_clone().unwrap();
            let mut reader = BufReader::new(conn);
            while let Some(raw) = read_request(&mut reader) {
                let req = FixtureRequest {
                    method: raw.method,
                    path: raw.path,
                    headers: raw.headers,
                };
                let (status, headers, body) = handler(&req);
                l.lock().unwrap().push(req);
                let mut resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&body);
                if writer.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
        });
        Fixture { addr, log, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<FixtureRequest> {
        self.log.lock().unwrap().clone()
    }
}

/// A sonde process with a controlled environment: no AWS_* variable from the caller, HOME in
/// its temp dir (so no ~/.aws of the machine is read), plus `env`. Killed when dropped.
pub struct Sonde {
    child: Child,
    log: PathBuf,
}

impl Drop for Sonde {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(crate::sonde_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", dir.path());
    // IMDS is off unless a test serves it (no probing of the link-local address).
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

impl Sonde {
    pub fn start(dir: &TempDir, config: &std::path::Path, env: &[(&str, &str)]) -> Sonde {
        let log = dir.join("sonde.log");
        let err = std::fs::File::create(&log).unwrap();
        let child = command(dir, &["--debug", "--config", config.to_str().unwrap()], env)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start sonde");
        Sonde { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (e.g. [`crate::SIGHUP`] to reload).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }
}

/// Runs `sonde --debug --once --config <config>` to completion in the controlled environment;
/// returns the exit code and stderr (the log).
pub fn once(
    dir: &TempDir,
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let out = command(
        dir,
        &["--debug", "--once", "--config", config.to_str().unwrap()],
        env,
    )
    .output()
    .expect("run sonde");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
