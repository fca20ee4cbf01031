//! End-to-end: the generic ingest inputs (`http_listener_v2`, `socket_listener`, `file`) in
//! the real binary, observed through `outputs.file`.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::time::Duration;

use sonde_tests::servers::free_port;
use sonde_tests::{Agent, SIGHUP, TempDir, run, sorted_lines, wait_until};

/// A blocking HTTP/1.1 request; returns (status, whole response text).
fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out)
}

fn wait_tcp(addr: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "{addr} did not come up"
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Waits until the output file has a line containing every part; returns the file.
fn wait_line(agent: &Agent, out: &Path, parts: &[&str]) -> String {
    let ok = wait_until(Duration::from_secs(15), || {
        read(out)
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    });
    assert!(
        ok,
        "no line with {parts:?} in the output:\n{}\nlog:\n{}",
        read(out),
        agent.log()
    );
    read(out)
}

const HEAD: &str = r#"
[agent]
  omit_hostname = true
  interval = "1s"
  flush_interval = "100ms"
"#;

/// A batch job pushes Prometheus text, as it would to a pushgateway (or k6 with its
/// Prometheus output); a query-string source; basic auth refused without credentials.
#[test]
fn http_listener_v2_takes_pushed_prometheus_text_query_strings_and_checks_auth() {
    let dir = TempDir::new("hl2");
    let out = dir.join("out.lp");
    let (push, query, auth) = (free_port(), free_port(), free_port());
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.http_listener_v2]]
  service_address = "tcp://127.0.0.1:{push}"
  paths = ["/metrics/job/k6"]
  path_tag = true
  http_header_tags = {{"X-Run" = "run"}}
  data_format = "prometheus"

[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{query}"
  methods = ["GET"]
  data_source = "query"
  http_success_code = 200

[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{auth}"
  basic_username = "job"
  basic_password = "s3cret"
  data_format = "json"

[[inputs.http_listener_v2]]
  service_address = "unix://{}"
  socket_mode = "600"

[[outputs.file]]
  files = ["{}"]
  namedrop = ["internal*"]
"#,
            dir.join("http.sock").display(),
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    for p in [push, query, auth] {
        wait_tcp(&format!("127.0.0.1:{p}"));
    }
    // What a k6 run or a backup job writes with its Prometheus client.
    let prom = "# HELP k6_http_reqs Requests made.\n# TYPE k6_http_reqs counter\n\
                k6_http_reqs{scenario=\"login\",status=\"200\"} 42\n\
                # TYPE k6_vus gauge\nk6_vus 7\n";
    let (st, text) = http(
        &format!("127.0.0.1:{push}"),
        "POST",
        "/metrics/job/k6",
        &[
            ("X-Run", "nightly"),
            ("Content-Type", "text/plain; version=0.0.4"),
        ],
        prom.as_bytes(),
    );
    assert_eq!(st, 204, "{text}");
    // Telegraf's prometheus data format (metric version 2, its default): one `prometheus`
    // measurement with the metric names as fields.
    let file = wait_line(&agent, &out, &["k6_vus=7"]);
    let reqs = file
        .lines()
        .find(|l| l.starts_with("prometheus,") && l.contains(" k6_http_reqs=42"))
        .unwrap_or_else(|| panic!("no k6_http_reqs in {file}"));
    for want in [
        "scenario=login",
        "status=200",
        "run=nightly",
        "http_listener_v2_path=/metrics/job/k6",
    ] {
        assert!(reqs.contains(want), "{want} missing from {reqs}");
    }
    // Another path is not taken.
    let (st, _) = http(
        &format!("127.0.0.1:{push}"),
        "POST",
        "/other",
        &[],
        prom.as_bytes(),
    );
    assert_eq!(st, 404);

    let (st, text) = http(
        &format!("127.0.0.1:{query}"),
        "GET",
        "/telegraf?qry,host=h1%20value=0.42",
        &[],
        b"",
    );
    assert_eq!(st, 200, "{text}");
    wait_line(&agent, &out, &["qry,host=h1 value=0.42"]);

    // Without credentials, and with wrong ones: 401 and nothing stored.
    let a = format!("127.0.0.1:{auth}");
    assert_eq!(
        http(&a, "POST", "/telegraf", &[], br#"{"denied": 1}"#).0,
        401
    );
    let wrong = [("Authorization", "Basic am9iOndyb25n")]; // job:wrong
    assert_eq!(
        http(&a, "POST", "/telegraf", &wrong, br#"{"denied": 2}"#).0,
        401
    );
    let right = [("Authorization", "Basic am9iOnMzY3JldA==")]; // job:s3cret
    assert_eq!(
        http(&a, "POST", "/telegraf", &right, br#"{"allowed": 3}"#).0,
        204
    );
    let file = wait_line(&agent, &out, &["http_listener_v2 allowed=3"]);
    assert!(!file.contains("denied"), "{file}");

    // The same over a unix socket, as curl --unix-socket sends it.
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(dir.join("http.sock"))
        .args([
            "--data-binary",
            "over_unix_http v=1i",
            "http://sonde/telegraf",
        ])
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "204");
    wait_line(&agent, &out, &["over_unix_http v=1i"]);
}

/// A port in use stops sonde at startup with a clear message (startup_error_behavior's
/// default), for both listeners and both socket kinds.
#[test]
fn a_busy_address_stops_sonde_with_a_clear_message() {
    let dir = TempDir::new("ingest-busy");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (t, u) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    for (plugin, addr, want) in [
        (
            "http_listener_v2",
            format!("{t}"),
            format!("cannot listen on {t}"),
        ),
        (
            "socket_listener",
            format!("tcp://{t}"),
            format!("cannot listen on tcp://{t}"),
        ),
        (
            "socket_listener",
            format!("udp://{u}"),
            format!("cannot listen on udp://{u}"),
        ),
    ] {
        let cfg = dir.write(
            "sonde.toml",
            &format!("[[inputs.{plugin}]]\n  service_address = \"{addr}\"\n[[outputs.discard]]\n"),
        );
        let r = run(&["--config", cfg.to_str().unwrap()]);
        assert_eq!(r.code, Some(1), "{plugin} {addr}: {}", r.stderr);
        assert!(
            r.stderr.contains(&want),
            "{plugin}: no {want:?} in {}",
            r.stderr
        );
        assert!(r.stderr.contains("Address already in use"), "{}", r.stderr);
    }
}

/// A batch job pushes with the real Prometheus Python client (`push_to_gateway`, PUT of the
/// text format to /metrics/job/<job>), exactly as it pushed to a pushgateway.
#[test]
fn a_job_pushes_with_the_prometheus_python_client() {
    let dir = TempDir::new("hl2-pyclient");
    let out = dir.join("out.lp");
    let port = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{port}"
  paths = ["/metrics/job/backup"]
  data_format = "prometheus"

[[outputs.file]]
  files = ["{}"]
  namedrop = ["internal*"]
"#,
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    wait_tcp(&format!("127.0.0.1:{port}"));
    let script = dir.write(
        "push.py",
        &format!(
            r#"
from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway
r = CollectorRegistry()
Counter("backup_files", "Files backed up", ["volume"], registry=r).labels("data").inc(17)
Gauge("backup_last_success_unixtime", "Last success", registry=r).set(1700000000)
push_to_gateway("127.0.0.1:{port}", job="backup", registry=r)
"#
        ),
    );
    let o = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .output()
        .expect("run /usr/bin/python3 (tests/setup.sh installs python3-prometheus-client)");
    assert!(
        o.status.success(),
        "push failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Telegraf's prometheus data format, version 2: the `prometheus` measurement.
    wait_line(
        &agent,
        &out,
        &["prometheus,volume=data backup_files_total=17 "],
    );
    wait_line(
        &agent,
        &out,
        &["prometheus backup_last_success_unixtime=1700000000 "],
    );
}

/// Metrics are acknowledged only once stored: with the output down and its buffer full, the
/// listener answers 429 with Retry-After.
#[test]
fn http_listener_v2_answers_429_when_the_output_buffer_is_full() {
    let dir = TempDir::new("hl2-full");
    let port = free_port();
    let dead = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{port}"

[[outputs.http]]
  url = "http://127.0.0.1:{dead}/write"
  metric_buffer_limit = 100
  metric_batch_size = 50
  namedrop = ["internal*"]
"#
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let addr = format!("127.0.0.1:{port}");
    wait_tcp(&addr);
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..20 {
        let body: String = (0..25).map(|j| format!("m,i={i} j={j}i\n")).collect();
        let (st, text) = http(&addr, "POST", "/telegraf", &[], body.as_bytes());
        match st {
            204 => accepted += 25,
            429 => {
                refused = Some(text);
                break;
            }
            other => panic!("{other}: {text}\nlog:\n{}", agent.log()),
        }
    }
    let text = refused.expect("the listener never pushed back");
    assert_eq!(accepted, 100, "exactly the buffer's room is acknowledged");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: "),
        "{text}"
    );
}

/// Line protocol and JSON streams over TCP, UDP, a unix stream socket and a unix datagram
/// socket, into one agent; max_connections is enforced.
#[test]
fn socket_listener_over_tcp_udp_unix_and_unixgram() {
    let dir = TempDir::new("sockl");
    let out = dir.join("out.lp");
    let (tcp, udp, limited) = (free_port(), free_port(), free_port());
    let unix = dir.join("s.sock");
    let gram = dir.join("g.sock");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.socket_listener]]
  service_address = "tcp://127.0.0.1:{tcp}"
  read_timeout = "30s"
  keep_alive_period = "1m"

[[inputs.socket_listener]]
  service_address = "udp://127.0.0.1:{udp}"
  data_format = "json"
  tag_keys = ["src"]

[[inputs.socket_listener]]
  service_address = "unix://{}"
  socket_mode = "660"
  data_format = "json"
  json_name_key = "name"

[[inputs.socket_listener]]
  service_address = "unixgram://{}"

[[inputs.socket_listener]]
  service_address = "tcp4://127.0.0.1:{limited}"
  max_connections = 1

[[outputs.file]]
  files = ["{}"]
  namedrop = ["internal*"]
"#,
            unix.display(),
            gram.display(),
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    wait_tcp(&format!("127.0.0.1:{tcp}"));
    wait_tcp(&format!("127.0.0.1:{limited}"));
    assert!(wait_until(Duration::from_secs(5), || gram.exists() && unix.exists()));

    let mut c = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    c.write_all(b"over_tcp,proto=tcp n=1i 1700000000000000000\nover_tcp,proto=tcp n=2i 1700000001000000000\n")
        .unwrap();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(br#"{"src": "udp", "n": 3}"#, ("127.0.0.1", udp))
        .unwrap();
    let mut s = UnixStream::connect(&unix).unwrap();
    s.write_all(b"{\"name\": \"over_unix\", \"n\": 4}\n{\"name\": \"over_unix\", \"n\": 5}\n")
        .unwrap();
    drop(s);
    let g = UnixDatagram::unbound().unwrap();
    g.send_to(b"over_unixgram n=6i 1700000002000000000", &gram)
        .unwrap();

    wait_line(&agent, &out, &["over_unixgram"]);
    wait_line(&agent, &out, &["socket_listener,src=udp n=3"]);
    wait_line(&agent, &out, &["over_unix n=5"]);
    let file = wait_line(
        &agent,
        &out,
        &["over_tcp,proto=tcp n=2i 1700000001000000000"],
    );
    assert!(
        file.contains("over_tcp,proto=tcp n=1i 1700000000000000000"),
        "{file}"
    );
    assert!(file.contains("over_unix n=4"), "{file}");
    assert!(
        file.contains("over_unixgram n=6i 1700000002000000000"),
        "{file}"
    );
    drop(c);

    // max_connections = 1: a second connection is closed unread while the first is open.
    let mut first = TcpStream::connect(("127.0.0.1", limited)).unwrap();
    first.write_all(b"first_conn n=1i\n").unwrap();
    wait_line(&agent, &out, &["first_conn"]);
    let mut second = TcpStream::connect(("127.0.0.1", limited)).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = second.write_all(b"second_conn n=1i\n");
    let mut buf = [0u8; 8];
    assert!(
        matches!(second.read(&mut buf), Ok(0) | Err(_)),
        "second connection stayed open"
    );
    drop(second);
    drop(first);
    // Once the first is gone, a new connection is served.
    assert!(wait_until(Duration::from_secs(10), || {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", limited)) else {
            return false;
        };
        let _ = c.write_all(b"third_conn n=1i\n");
        drop(c);
        std::thread::sleep(Duration::from_millis(300));
        read(&out).contains("third_conn")
    }));
    assert!(!read(&out).contains("second_conn"), "{}", read(&out));
}

/// Garbage through both listeners: clear errors, counted in the internal metrics, and the
/// agent keeps taking good data.
#[test]
fn hostile_input_is_counted_and_never_stops_the_listeners() {
    let dir = TempDir::new("ingest-hostile");
    let out = dir.join("out.lp");
    let (tcp, http_port) = (free_port(), free_port());
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.socket_listener]]
  service_address = "tcp://127.0.0.1:{tcp}"

[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{http_port}"
  data_format = "json"

[[inputs.internal]]

[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let addr = format!("127.0.0.1:{http_port}");
    wait_tcp(&addr);
    wait_tcp(&format!("127.0.0.1:{tcp}"));
    let mut c = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let mut junk: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    junk.extend_from_slice(b"\nok_after_junk v=1i\n,,,\n=\n\"\n\xff\xfe\n");
    c.write_all(&junk).unwrap();
    drop(c);
    for body in [
        &b"{not json"[..],
        b"\x00\x01\x02",
        b"[1,2,",
        b"{\"a\": {\"b\": [}",
    ] {
        let (st, text) = http(&addr, "POST", "/telegraf", &[], body);
        assert_eq!(st, 400, "{text}");
        assert!(text.contains("bad request"), "{text}");
    }
    let (st, _) = http(
        &addr,
        "POST",
        "/telegraf",
        &[("Content-Encoding", "gzip")],
        b"not gzip",
    );
    assert_eq!(st, 400);
    let (st, _) = http(
        &addr,
        "POST",
        "/telegraf",
        &[],
        br#"{"ok_after_garbage": 1}"#,
    );
    assert_eq!(st, 204);
    wait_line(&agent, &out, &["ok_after_junk v=1i"]);
    wait_line(&agent, &out, &["http_listener_v2 ok_after_garbage=1"]);
    // The junk lines are counted (how many the binary run makes is not fixed; at least 4).
    let counted = |l: &str| {
        l.starts_with("internal_socket_listener")
            && l.split("parse_errors=")
                .nth(1)
                .and_then(|v| v.split('i').next()?.parse::<i64>().ok())
                .is_some_and(|n| n >= 4)
    };
    assert!(
        wait_until(Duration::from_secs(15), || read(&out).lines().any(counted)),
        "{}",
        read(&out)
    );
    let file = wait_line(
        &agent,
        &out,
        &["internal_http_listener_v2", "parse_errors=4i"],
    );
    assert!(file.contains("requests_rejected=5i"), "{file}");
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

/// inputs.file reads a glob (with `**`) each interval, tags the file name, and decodes a
/// UTF-16 file.
#[test]
fn file_input_reads_globs_with_file_tag_and_utf16() {
    let dir = TempDir::new("file-in");
    std::fs::create_dir_all(dir.join("jobs/nightly")).unwrap();
    dir.write("jobs/a.lp", "job,name=a done=1i 1700000000000000000\n");
    dir.write(
        "jobs/nightly/b.lp",
        "job,name=b done=2i 1700000000000000000\n",
    );
    dir.write("jobs/ignored.txt", "job,name=ignored done=3i\n");
    let wide: Vec<u8> = "\u{feff}wide,city=Zürich temp=21.5 1700000000000000000\r\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(dir.join("wide.lp"), wide).unwrap();
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.file]]
  files = ["{d}/jobs/**/*.lp"]
  file_tag = "file"

[[inputs.file]]
  files = ["{d}/wide.lp"]
  character_encoding = "utf-16le"
  file_path_tag = "path"

[[outputs.file]]
  files = ["{o}"]
"#,
            d = dir.path().display(),
            o = out.display()
        ),
    );
    let r = run(&["--once", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let wide_path = dir.join("wide.lp").display().to_string();
    assert_eq!(
        sorted_lines(&read(&out)),
        [
            "job,file=a.lp,name=a done=1i 1700000000000000000".to_string(),
            "job,file=b.lp,name=b done=2i 1700000000000000000".to_string(),
            format!("wide,city=Zürich,path={wide_path} temp=21.5 1700000000000000000"),
        ]
    );
}

/// TLS with client certificates (`tls_allowed_cacerts`) on both listeners: a client without
/// a certificate is refused, one with a certificate from the allowed CA is served.
#[test]
fn listeners_serve_mutual_tls() {
    use std::process::{Command, Stdio};
    let dir = TempDir::new("ingest-tls");
    let pki = sonde_tests::pki::Pki::new(&dir);
    let out = dir.join("out.lp");
    let (http_port, tcp) = (free_port(), free_port());
    let tls = format!(
        "  tls_cert = \"{}\"\n  tls_key = \"{}\"\n  tls_allowed_cacerts = [\"{}\"]\n",
        pki.chain.display(),
        pki.leaf_key.display(),
        pki.intermediate.display()
    );
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{http_port}"
  tls_min_version = "TLS12"
{tls}
[[inputs.socket_listener]]
  service_address = "tcp://127.0.0.1:{tcp}"
  tls_min_version = "TLS13"
{tls}
[[outputs.file]]
  files = ["{}"]
  namedrop = ["internal*"]
"#,
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    wait_tcp(&format!("127.0.0.1:{http_port}"));
    wait_tcp(&format!("127.0.0.1:{tcp}"));
    let url = format!("https://127.0.0.1:{http_port}/telegraf");
    let curl = |with_cert: bool, body: &str| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&pki.ca)
            .args(["--data-binary", body]);
        if with_cert {
            c.arg("--cert")
                .arg(&pki.client)
                .arg("--key")
                .arg(&pki.client_key);
        }
        let o = c.arg(&url).output().expect("run curl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_ne!(curl(false, "no_cert v=1i"), "204");
    assert_eq!(curl(true, "tls_http v=1i"), "204");
    wait_line(&agent, &out, &["tls_http v=1i"]);

    // Sends a line with openssl s_client; returns its stderr.
    let send = |with_cert: bool, tls12: bool, line: &str| {
        let mut c = Command::new("openssl");
        c.args(["s_client", "-quiet", "-no_ign_eof"]);
        if tls12 {
            c.arg("-tls1_2");
        }
        c.arg("-connect")
            .arg(format!("127.0.0.1:{tcp}"))
            .arg("-CAfile")
            .arg(&pki.ca);
        if with_cert {
            c.arg("-cert")
                .arg(&pki.client)
                .arg("-key")
                .arg(&pki.client_key);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl");
        let _ = child.stdin.take().unwrap().write_all(line.as_bytes());
        let o = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    send(false, false, "tls_nocert v=1i\n");
    // tls_min_version = "TLS13": a TLS 1.2 client is turned away in the handshake.
    let refused = send(true, true, "tls12_client v=1i\n");
    assert!(refused.contains("protocol version"), "{refused}");
    send(true, false, "tls_socket v=2i\n");
    let file = wait_line(&agent, &out, &["tls_socket v=2i"]);
    assert!(
        !file.contains("no_cert") && !file.contains("tls_nocert"),
        "{file}"
    );
}

/// An option that cannot apply to the socket type is accepted with a warning that says so,
/// in `config check` as at startup; one not built yet is refused as such.
#[test]
fn options_that_cannot_apply_are_warned_about_and_unbuilt_ones_refused() {
    let dir = TempDir::new("ingest-warn");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[[inputs.socket_listener]]\n  service_address = \"udp://127.0.0.1:{}\"\n  max_connections = 3\n  \
             read_timeout = \"5s\"\n\
             [[inputs.http_listener_v2]]\n  service_address = \"127.0.0.1:{}\"\n  socket_mode = \"777\"\n  path = \"/old\"\n\
             [[outputs.discard]]\n",
            free_port(),
            free_port()
        ),
    );
    let r = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for want in [
        "socket_listener: max_connections has no effect",
        "socket_listener: read_timeout has no effect",
        "http_listener_v2: socket_mode has no effect",
        "http_listener_v2: the option path is deprecated",
    ] {
        assert!(r.stderr.contains(want), "no {want:?} in {}", r.stderr);
    }
    let cfg = dir.write(
        "sonde.toml",
        "[[inputs.socket_listener]]\n  service_address = \"vsock://3:80\"\n[[outputs.discard]]\n",
    );
    let r = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("vsock:// sockets are not supported yet"),
        "{}",
        r.stderr
    );
}

/// A reload (SIGHUP) replaces the unix sockets: the new listener's socket file stays (the old
/// listener removes only its own), and the socket serves before and after.
#[test]
fn unix_sockets_survive_a_reload() {
    let dir = TempDir::new("ingest-reload");
    let out = dir.join("out.lp");
    let (stream, gram) = (dir.join("s.sock"), dir.join("g.sock"));
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"{HEAD}
[[inputs.socket_listener]]
  service_address = "unix://{}"

[[inputs.socket_listener]]
  service_address = "unixgram://{}"

[[outputs.file]]
  files = ["{}"]
  namedrop = ["internal*"]
"#,
            stream.display(),
            gram.display(),
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    assert!(wait_until(Duration::from_secs(10), || stream.exists() && gram.exists()));
    let send = |tag: &str| {
        let mut s = UnixStream::connect(&stream).unwrap();
        s.write_all(format!("reload,when={tag} via=\"stream\"\n").as_bytes())
            .unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to(format!("reload,when={tag} via=\"gram\"").as_bytes(), &gram)
            .unwrap();
    };
    send("before");
    wait_line(&agent, &out, &["when=before", "via=\"stream\""]);
    wait_line(&agent, &out, &["when=before", "via=\"gram\""]);
    agent.signal(SIGHUP);
    agent.wait_log("reloaded", 1, Duration::from_secs(10));
    assert!(
        stream.exists() && gram.exists(),
        "a reload lost the socket files"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        UnixStream::connect(&stream).is_ok()
    }));
    send("after");
    wait_line(&agent, &out, &["when=after", "via=\"stream\""]);
    wait_line(&agent, &out, &["when=after", "via=\"gram\""]);
}
