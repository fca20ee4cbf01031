//! Peers for the probe inputs, each started by the test on free loopback ports: Apache (HTTP,
//! HTTPS with the test's chain, HTTPS requiring a client certificate, a redirect, a 410),
//! dnsmasq with a test zone, blackbox_exporter, and small servers for what Apache cannot do on
//! demand (a slow body, a peer that accepts and never answers, TCP and UDP echo).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pki::Pki;
use crate::servers::free_port;
use crate::{TempDir, wait_until};

/// A server process stopped with SIGTERM (so it can stop its children), then SIGKILL.
pub struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn spawn(program: &str, args: &[String], log: std::path::PathBuf) -> Daemon {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: run tests/setup.sh (it installs the Debian packages)"
        );
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_tcp(mut self, port: u16, what: &str) -> Daemon {
        let ok = wait_until(Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited with {status}; log:\n{}", self.log());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ok, "{what} did not listen on {port}; log:\n{}", self.log());
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body Apache serves at `/index.html`.
pub const INDEX: &str = "hello from sonde's apache\n";

/// Apache on three ports: plain HTTP, HTTPS (leaf + intermediate + root sent; HTTP/2 offered
/// by ALPN), and HTTPS (HTTP/1.1 only) that requires a client certificate signed by the test CA. `/old` redirects (302) to
/// `/index.html`, `/gone` answers 410.
pub struct Apache {
    pub http: u16,
    pub https: u16,
    pub mtls: u16,
    _daemon: Daemon,
}

pub fn apache(dir: &TempDir, pki: &Pki) -> Apache {
    let (http, https, mtls) = (free_port(), free_port(), free_port());
    let root = dir.join("apache");
    let docs = root.join("htdocs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("index.html"), INDEX).unwrap();
    let chain = dir.write(
        "apache-chain.pem",
        &format!(
            "{}{}",
            std::fs::read_to_string(&pki.intermediate).unwrap(),
            std::fs::read_to_string(&pki.ca).unwrap()
        ),
    );
    let m = "/usr/lib/apache2/modules";
    let r = root.display();
    let conf = format!(
        r#"ServerRoot "{r}"
ServerName localhost
PidFile {r}/apache.pid
DefaultRuntimeDir {r}
Mutex file:{r} default
ErrorLog {r}/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule dir_module {m}/mod_dir.so
LoadModule mime_module {m}/mod_mime.so
LoadModule alias_module {m}/mod_alias.so
LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so
LoadModule ssl_module {m}/mod_ssl.so
LoadModule http2_module {m}/mod_http2.so
TypesConfig /etc/mime.types
StartServers 1
ServerLimit 4
ThreadsPerChild 64
MaxRequestWorkers 256
ListenBacklog 2048
KeepAlive On
Listen 127.0.0.1:{http}
Listen 127.0.0.1:{https}
Listen 127.0.0.1:{mtls}
DocumentRoot "{docs}"
<Directory "{docs}">
    Require all granted
</Directory>
DirectoryIndex index.html
Redirect 302 /old /index.html
Redirect gone /gone
SSLSessionCache shmcb:{r}/ssl_scache(512000)
<VirtualHost 127.0.0.1:{https}>
    Protocols h2 http/1.1
    SSLEngine on
    SSLCertificateFile {leaf}
    SSLCertificateKeyFile {key}
    SSLCertificateChainFile {chain}
</VirtualHost>
<VirtualHost 127.0.0.1:{mtls}>
    SSLEngine on
    SSLCertificateFile {leaf}
    SSLCertificateKeyFile {key}
    SSLCertificateChainFile {chain}
    SSLCACertificateFile {chain}
    SSLVerifyClient require
    SSLVerifyDepth 3
</VirtualHost>
"#,
        docs = docs.display(),
        leaf = pki.leaf.display(),
        key = pki.leaf_key.display(),
        chain = chain.display(),
    );
    let conf_path = dir.write("apache.conf", &conf);
    let daemon = Daemon::spawn(
        "/usr/sbin/apache2",
        &[
            "-DFOREGROUND".into(),
            "-f".into(),
            conf_path.display().to_string(),
        ],
        dir.join("apache.log"),
    )
    .wait_tcp(http, "apache2")
    .wait_tcp(https, "apache2")
    .wait_tcp(mtls, "apache2");
    Apache {
        http,
        https,
        mtls,
        _daemon: daemon,
    }
}

/// dnsmasq answering for the zone `sonde.test` on a free port (UDP and TCP): A and AAAA for
/// `www.sonde.test` (127.0.0.1, ::1), MX (10 mail.sonde.test), TXT ("v=spf1 -all") on
/// `sonde.test`, SRV `_http._tcp.sonde.test` (www.sonde.test:80, priority 0 weight 0) and
/// NXDOMAIN for any other name in the zone.
pub struct Dnsmasq {
    pub port: u16,
    _daemon: Daemon,
}

pub fn dnsmasq(dir: &TempDir) -> Dnsmasq {
    let port = free_port();
    let args: Vec<String> = [
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--user=root",
        "--local=/sonde.test/",
        "--host-record=www.sonde.test,127.0.0.1,::1",
        "--mx-host=sonde.test,mail.sonde.test,10",
        "--host-record=mail.sonde.test,127.0.0.2",
        "--txt-record=sonde.test,v=spf1 -all",
        "--srv-host=_http._tcp.sonde.test,www.sonde.test,80,0,0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--port={port}")])
    .collect();
    let daemon = Daemon::spawn("/usr/sbin/dnsmasq", &args, dir.join("dnsmasq.log"))
        .wait_tcp(port, "dnsmasq");
    Dnsmasq {
        port,
        _daemon: daemon,
    }
}

/// blackbox_exporter with the given modules YAML, on a free port.
pub struct Blackbox {
    pub port: u16,
    daemon: Daemon,
}

impl Blackbox {
    pub fn start(dir: &TempDir, modules: &str) -> Blackbox {
        let port = free_port();
        let cfg = dir.write("blackbox.yml", modules);
        let daemon = Daemon::spawn(
            "/usr/bin/prometheus-blackbox-exporter",
            &[
                format!("--config.file={}", cfg.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ],
            dir.join("blackbox.log"),
        )
        .wait_tcp(port, "blackbox_exporter");
        Blackbox { port, daemon }
    }

    /// `/probe?module=..&target=..`: the samples without labels, by name (the last value wins).
    pub fn probe(&self, module: &str, target: &str) -> std::collections::BTreeMap<String, f64> {
        let path = format!(
            "/probe?module={module}&target={}",
            crate::servers::enc(target)
        );
        let (status, body) =
            crate::servers::request(&format!("127.0.0.1:{}", self.port), "GET", &path, &[], b"")
                .unwrap();
        assert_eq!(status, 200, "{body}\n{}", self.daemon.log());
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                let name = name.split('{').next()?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }
}

/// A server that accepts connections and never answers; it records when each was accepted.
pub struct Silent {
    pub port: u16,
    pub accepted: Arc<Mutex<Vec<Instant>>>,
}

pub fn silent() -> Silent {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let rec = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            rec.lock().unwrap().push(Instant::now());
            held.push(s);
        }
    });
    Silent { port, accepted }
}

/// An HTTP server that sends its headers (Content-Length 1000) and 10 bytes of body at once,
/// then one byte per second.
pub fn slow_body() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789");
                for _ in 0..990 {
                    std::thread::sleep(Duration::from_secs(1));
                    if s.write_all(b"x").is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A line echo server over TCP: answers each line with `echo: <line>`.
pub fn tcp_echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if s.write_all(format!("echo: {line}").as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

/// A UDP echo server: answers each datagram with `echo: <datagram>`.
pub fn udp_echo() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let mut out = b"echo: ".to_vec();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, peer);
        }
    });
    port
}

/// A port nothing listens on (bound, then released).
pub fn refused_port() -> u16 {
    free_port()
}

/// One parsed line of line protocol.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub tags: std::collections::BTreeMap<String, String>,
    pub fields: std::collections::BTreeMap<String, String>,
}

impl Line {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
    /// A field's text as written (`12i`, `0.5`, `"s"` → `s`).
    pub fn field(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v.strip_suffix('i').unwrap_or(v))
        })
    }
    pub fn int(&self, k: &str) -> i64 {
        self.field(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no integer field {k} in {self:?}"))
    }
    pub fn float(&self, k: &str) -> f64 {
        self.field(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no float field {k} in {self:?}"))
    }
}

/// Splits on `sep` outside backslash escapes and double quotes.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if quoted {
                        out.last_mut().unwrap().push('\\');
                    }
                    out.last_mut().unwrap().push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                out.last_mut().unwrap().push(c);
            }
            c if c == sep && !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Parses the line-protocol lines of `sonde --test` output (comments and blanks skipped).
pub fn parse_lines(out: &str) -> Vec<Line> {
    records(out)
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with('>'))
        .map(|l| {
            // measurement,tags fields time: split on unescaped, unquoted spaces.
            let parts = split_unescaped_keep(l, ' ');
            let head = split_unescaped_keep(&parts[0], ',');
            let mut tags = std::collections::BTreeMap::new();
            for t in &head[1..] {
                let kv = split_unescaped(t, '=');
                tags.insert(kv[0].clone(), kv[1..].join("="));
            }
            let mut fields = std::collections::BTreeMap::new();
            for f in split_unescaped_keep(&parts[1], ',') {
                let (k, v) = f.split_once('=').unwrap();
                fields.insert(unescape(k), v.to_string());
            }
            Line {
                name: unescape(&head[0]),
                tags,
                fields,
            }
        })
        .collect()
}

/// Splits the output into records at newlines outside string field values.
fn records(out: &str) -> Vec<String> {
    let mut recs = vec![String::new()];
    let mut quoted = false;
    let mut chars = out.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                recs.last_mut().unwrap().push(c);
                if let Some(n) = chars.next() {
                    recs.last_mut().unwrap().push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                recs.last_mut().unwrap().push(c);
            }
            '\n' if !quoted => recs.push(String::new()),
            c => recs.last_mut().unwrap().push(c),
        }
    }
    recs
}

fn unescape(s: &str) -> String {
    split_unescaped(s, '\u{0}').concat()
}

/// Splits on `sep` outside escapes and quotes, keeping escapes in the parts.
fn split_unescaped_keep(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.last_mut().unwrap().push(c);
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                out.last_mut().unwrap().push(c);
            }
            c if c == sep && !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}
