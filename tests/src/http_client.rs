//! Peers for the HTTP-client option tests (tests/tests/http_client.rs): a forward HTTP proxy
//! (absolute-form requests and CONNECT) that records what went through it, and an HTTP server
//! that records each request with its arrival time and the client's address.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as a server or the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub peer: SocketAddr,
    /// `METHOD target HTTP/1.1`.
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }
    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
}

/// Reads one request head and its body (Content-Length only); `None` at end of stream.
fn read_request(r: &mut BufReader<TcpStream>, peer: SocketAddr) -> Option<Seen> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let at = Instant::now();
    let (headers, body) = crate::read_headers_and_body(r)?;
    Some(Seen {
        at,
        peer,
        line: line.trim_end().to_string(),
        headers,
        body,
    })
}

/// Accepts connections on `listener` until `stop`, handling each on its own thread.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
) {
    listener.set_nonblocking(true).unwrap();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, peer)) => {
                    conn.set_nonblocking(false).ok();
                    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
                    let h = handle.clone();
                    std::thread::spawn(move || h(conn, peer));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// A server that answers every request with `status` and `body`, recording it.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    pub fn start(status: u16, body: &str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, body) = (seen.clone(), body.to_string());
        accept_loop(listener, stop.clone(), move |conn, peer| {
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            while let Some(req) = read_request(&mut r, peer) {
                log.lock().unwrap().push(req);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
        });
        Recorder { addr, seen, stop }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A forward proxy: `GET http://host/path` is sent on to the host (one request per
/// connection), `CONNECT host:port` opens a tunnel. Every request line is recorded.
pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let log = seen.clone();
        accept_loop(listener, stop.clone(), move |conn, peer| {
            let mut client = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            let Some(req) = read_request(&mut r, peer) else {
                return;
            };
            log.lock().unwrap().push(req.clone());
            if req.method() == "CONNECT" {
                let Ok(upstream) = TcpStream::connect(req.target()) else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let mut up_r = upstream.try_clone().unwrap();
                let mut up_w = upstream;
                let mut down_w = client;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut down_w);
                    let _ = down_w.shutdown(std::net::Shutdown::Both);
                });
                let _ = std::io::copy(&mut r, &mut up_w);
                let _ = up_w.shutdown(std::net::Shutdown::Both);
                return;
            }
            // Absolute form: http://host:port/path → origin form to host:port.
            let rest = req.target().strip_prefix("http://").unwrap_or("");
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let Ok(mut up) = TcpStream::connect(host) else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                return;
            };
            let mut head = format!("{} {path} HTTP/1.1\r\n", req.method());
            for (k, v) in &req.headers {
                if k.eq_ignore_ascii_case("connection")
                    || k.eq_ignore_ascii_case("proxy-connection")
                    || k.eq_ignore_ascii_case("proxy-authorization")
                {
                    continue;
                }
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("connection: close\r\n\r\n");
            let _ = up.write_all(head.as_bytes());
            let _ = up.write_all(&req.body);
            // The answer: head, then a Content-Length body (or up to EOF without one).
            let mut ur = BufReader::new(up);
            let mut answer = Vec::new();
            let mut len = None;
            loop {
                let mut h = String::new();
                if ur.read_line(&mut h).unwrap_or(0) == 0 {
                    break;
                }
                if h == "\r\n" {
                    // One request per client connection: tell the client so.
                    answer.extend_from_slice(b"connection: close\r\n\r\n");
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse::<usize>().ok();
                    }
                    if k.eq_ignore_ascii_case("connection") {
                        continue;
                    }
                }
                answer.extend_from_slice(h.as_bytes());
            }
            match len {
                Some(n) => {
                    let mut body = vec![0; n];
                    let _ = ur.read_exact(&mut body);
                    answer.extend_from_slice(&body);
                }
                None => {
                    let _ = ur.read_to_end(&mut answer);
                }
            }
            let _ = client.write_all(&answer);
            let _ = client.shutdown(std::net::Shutdown::Both);
        });
        Proxy { addr, seen, stop }
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
