//! End-to-end: the listeners of the built binary under hostile input. Each test starts sonde
//! with `inputs.influxdb_listener`, `inputs.influxdb_v2_listener` and `inputs.statsd` (UDP and
//! TCP) writing to a file and `outputs.prometheus_client` serving /metrics, throws generated hostile requests at them (garbage bytes, huge
//! headers, lying Content-Length, bad and bomb gzip, unknown encodings, slowloris-style partial
//! bodies held open, invalid UTF-8, absurd precisions and parameters), and after every case
//! checks that each listener still answers a valid request. At the end every acknowledged
//! canary must be in the output and the log must show no panic.
//!
//! The case count is `PROPTEST_CASES` (default 48); CI's fuzz step raises it.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sonde_tests::servers::free_port;
use sonde_tests::{Agent, TempDir, wait_until};

struct Listeners {
    agent: Agent,
    v1: String,
    v2: String,
    /// outputs.prometheus_client's /metrics server.
    prom: String,
    udp: String,
    tcp: String,
    out: PathBuf,
}

fn start(dir: &TempDir) -> Listeners {
    let (v1, v2, udp, tcp) = (free_port(), free_port(), free_port(), free_port());
    let prom = free_port();
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  omit_hostname = true
  interval = "1h"
  flush_interval = "100ms"

[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:{v1}"
  max_body_size = "64KiB"
  max_line_size = "4KiB"
  read_timeout = "2s"
  database_tag = "db"

[[inputs.influxdb_v2_listener]]
  service_address = "127.0.0.1:{v2}"
  max_body_size = "64KiB"
  read_timeout = "2s"
  bucket_tag = "bucket"

[[inputs.statsd]]
  protocol = "udp"
  service_address = "127.0.0.1:{udp}"
  flush_interval = "200ms"
  parse_data_dog_tags = true
  percentiles = [50.0, 99.9]

[[inputs.statsd]]
  protocol = "tcp"
  service_address = "127.0.0.1:{tcp}"
  flush_interval = "200ms"
  max_tcp_connections = 64

[[outputs.file]]
  files = ["{}"]

[[outputs.prometheus_client]]
  listen = "127.0.0.1:{prom}"
  ip_range = ["::ffff:127.0.0.0/104"]
"#,
            out.display()
        ),
    );
    let agent = Agent::start(dir, &cfg);
    let l = Listeners {
        agent,
        v1: format!("127.0.0.1:{v1}"),
        v2: format!("127.0.0.1:{v2}"),
        prom: format!("127.0.0.1:{prom}"),
        udp: format!("127.0.0.1:{udp}"),
        tcp: format!("127.0.0.1:{tcp}"),
        out,
    };
    for addr in [&l.v1, &l.v2, &l.tcp, &l.prom] {
        let ok = wait_until(Duration::from_secs(15), || TcpStream::connect(addr).is_ok());
        assert!(
            ok,
            "sonde did not listen on {addr}; log:\n{}",
            l.agent.log()
        );
    }
    l.agent
        .wait_log("statsd listening on UDP", 1, Duration::from_secs(10));
    l
}

/// Sends raw bytes and reads the answer (up to `wait`); `None` when the server closed or
/// did not answer in time.
fn exchange(addr: &str, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    exchange_then(addr, bytes, wait, false)
}

/// Like [`exchange`]; with `close_write`, shuts the sending side after writing, so a server
/// waiting for the rest of a head or body sees the end at once instead of a timeout.
fn exchange_then(addr: &str, bytes: &[u8], wait: Duration, close_write: bool) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    s.set_write_timeout(Some(wait)).ok()?;
    // The server may answer (413, 431, 400) and close before everything is written.
    let _ = s.write_all(bytes);
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Some(out)
}

fn status(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A well-formed request; returns the status.
fn valid(addr: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> Option<u16> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    status(&exchange(addr, &req, Duration::from_secs(10))?)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[derive(Clone, Debug)]
enum Body {
    Bytes(Vec<u8>),
    /// Near-valid line protocol with a few bytes changed.
    Lines(Vec<u8>),
    Gzip(Vec<u8>),
    /// A gzip stream cut short or with flipped bytes.
    BadGzip(Vec<u8>, usize, u8),
    /// Gzip of a long run of one byte: small on the wire, large decompressed.
    Bomb(usize),
}

#[derive(Clone, Debug)]
enum Length {
    Exact,
    /// Declares more than is sent: the body never completes (held open, then dropped).
    Short(usize),
    /// Declares less than is sent: the rest is read as a next (garbage) request.
    Long(usize),
    Garbage(String),
    Chunked,
    Absent,
}

#[derive(Clone, Debug)]
enum Attack {
    /// Arbitrary bytes to an HTTP port.
    Raw {
        to: u8,
        bytes: Vec<u8>,
    },
    Http {
        /// 0: influxdb_listener, 1: influxdb_v2_listener, 2: outputs.prometheus_client.
        to: u8,
        method: String,
        path: String,
        headers: Vec<(String, Vec<u8>)>,
        encoding: Option<String>,
        length: Length,
        body: Body,
    },
    /// One header of this many bytes (hyper refuses heads above its limit).
    HugeHeader {
        to: u8,
        size: usize,
    },
    Udp(Vec<u8>),
    StatsdTcp(Vec<u8>),
}

fn lp_lines() -> impl Strategy<Value = Vec<u8>> {
    (
        "([a-z,=\\\\ \"]{1,12} [a-z]{1,4}=(-?[0-9.]{1,6}[iu]?|\"[^\"]{0,6}\"|t|F)( -?[0-9]{1,20})?\n){1,4}",
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(text, edits)| {
            let mut b = text.into_bytes();
            for (at, byte) in edits {
                let i = at.index(b.len());
                b[i] = byte;
            }
            b
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Body::Bytes),
        lp_lines().prop_map(Body::Lines),
        lp_lines().prop_map(Body::Gzip),
        (lp_lines(), any::<usize>(), any::<u8>()).prop_map(|(l, i, b)| Body::BadGzip(l, i, b)),
        (1usize..4_000_000).prop_map(Body::Bomb),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("db"),
        Just("rp"),
        Just("precision"),
        Just("org"),
        Just("bucket"),
        Just("q"),
        Just("u"),
        Just("p"),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("fortnights".to_string()),
        Just("n".to_string()),
        Just("s".to_string()),
        Just("%zz%".to_string()),
        Just("SHOW+DATABASES".to_string()),
        Just("CREATE+DATABASE+%22x%22%3BSHOW+DATABASES".to_string()),
        "[a-zA-Z0-9%+;=&/.-]{0,40}",
        (1usize..20_000).prop_map(|n| "d".repeat(n)),
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|kv| {
        kv.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn attack() -> impl Strategy<Value = Attack> {
    let http = (
        0u8..3,
        prop_oneof![
            Just("POST".to_string()),
            Just("GET".to_string()),
            Just("PUT".to_string()),
            Just("OPTIONS".to_string()),
            "[A-Z]{0,10}",
            "[^ \r\n]{1,8}",
        ],
        prop_oneof![
            Just("/write"),
            Just("/api/v2/write"),
            Just("/query"),
            Just("/ping"),
            Just("/health"),
            Just("/ready"),
            Just("/"),
            Just("*"),
        ],
        query(),
        prop::collection::vec(
            ("[a-zA-Z-]{1,16}", prop::collection::vec(any::<u8>(), 0..64)),
            0..4,
        ),
        prop_oneof![
            Just(None),
            Just(Some("gzip".to_string())),
            Just(Some("deflate".to_string())),
            Just(Some("identity".to_string())),
            Just(Some("gzip, gzip".to_string())),
            "[a-z, -]{0,12}".prop_map(Some),
        ],
        prop_oneof![
            4 => Just(Length::Exact),
            1 => (1usize..100_000).prop_map(Length::Short),
            1 => (1usize..64).prop_map(Length::Long),
            1 => "[-0-9a-z ,]{0,22}".prop_map(Length::Garbage),
            1 => Just(Length::Chunked),
            1 => Just(Length::Absent),
        ],
        body(),
    )
        .prop_map(
            |(to, method, path, q, headers, encoding, length, body)| Attack::Http {
                to,
                method,
                path: if q.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{q}")
                },
                headers,
                encoding,
                length,
                body,
            },
        );
    prop_oneof![
        3 => http,
        1 => (0u8..3, prop::collection::vec(any::<u8>(), 0..1024))
            .prop_map(|(to, bytes)| Attack::Raw { to, bytes }),
        1 => (0u8..3, 1usize..1_000_000).prop_map(|(to, size)| Attack::HugeHeader { to, size }),
        1 => prop_oneof![
            prop::collection::vec(any::<u8>(), 0..1400),
            "([a-z.,=:#|@-]{0,20}(:[-+]?[0-9.eE]{0,8}\\|(c|g|s|ms|h|d)(\\|@[0-9.e-]{0,5})?(\\|#[a-z:,]{0,10})?)?\n){1,6}"
                .prop_map(String::into_bytes),
        ]
        .prop_map(Attack::Udp),
        1 => prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            (1usize..200_000).prop_map(|n| vec![b'x'; n]),
        ]
        .prop_map(Attack::StatsdTcp),
    ]
}

/// Renders an HTTP attack as bytes; true when the body is left incomplete.
fn render(
    method: &str,
    path: &str,
    headers: &[(String, Vec<u8>)],
    encoding: &Option<String>,
    length: &Length,
    body: &Body,
) -> (Vec<u8>, bool) {
    let payload = match body {
        Body::Bytes(b) | Body::Lines(b) => b.clone(),
        Body::Gzip(b) => gzip(b),
        Body::BadGzip(b, at, byte) => {
            let mut g = gzip(b);
            let i = at % g.len();
            if byte % 2 == 0 {
                g.truncate(i);
            } else {
                g[i] ^= byte | 1;
            }
            g
        }
        Body::Bomb(n) => gzip(&vec![b'a'; *n]),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n").into_bytes();
    for (k, v) in headers {
        head.extend_from_slice(k.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    if let Some(e) = encoding {
        head.extend_from_slice(format!("Content-Encoding: {e}\r\n").as_bytes());
    }
    let mut partial = false;
    let mut body_bytes = payload.clone();
    match length {
        Length::Exact => {
            head.extend_from_slice(format!("Content-Length: {}\r\n", payload.len()).as_bytes())
        }
        Length::Short(extra) => {
            partial = true;
            head.extend_from_slice(
                format!("Content-Length: {}\r\n", payload.len() + extra).as_bytes(),
            )
        }
        Length::Long(less) => head.extend_from_slice(
            format!(
                "Content-Length: {}\r\n",
                payload.len().saturating_sub(*less)
            )
            .as_bytes(),
        ),
        Length::Garbage(g) => head.extend_from_slice(format!("Content-Length: {g}\r\n").as_bytes()),
        Length::Chunked => {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            // One honest chunk, then a bad size line.
            body_bytes = format!("{:x}\r\n", payload.len()).into_bytes();
            body_bytes.extend_from_slice(&payload);
            body_bytes.extend_from_slice(b"\r\nzz\r\n");
        }
        Length::Absent => {}
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(&body_bytes);
    (head, partial)
}

/// Runs one attack. Partial requests are returned open (the caller holds them a while).
fn run(l: &Listeners, a: &Attack, held: &mut Vec<TcpStream>) -> Result<(), TestCaseError> {
    let http_addr = |to: u8| match to {
        0 => &l.v1,
        1 => &l.v2,
        _ => &l.prom,
    };
    match a {
        Attack::Raw { to, bytes } => {
            if let Some(ans) = exchange_then(http_addr(*to), bytes, Duration::from_secs(5), true) {
                prop_assert!(
                    status(&ans) != Some(500),
                    "{}",
                    String::from_utf8_lossy(&ans)
                );
            }
        }
        Attack::HugeHeader { to, size } => {
            let mut req = b"POST /write HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
            req.extend(std::iter::repeat_n(b'h', *size));
            req.extend_from_slice(b"\r\nContent-Length: 5\r\n\r\na v=1");
            if let Some(ans) = exchange_then(http_addr(*to), &req, Duration::from_secs(5), true) {
                prop_assert!(status(&ans) != Some(500));
            }
        }
        Attack::Http {
            to,
            method,
            path,
            headers,
            encoding,
            length,
            body,
        } => {
            let (bytes, partial) = render(method, path, headers, encoding, length, body);
            if partial {
                // Slowloris: the head and part of the body, then nothing; kept open.
                if let Ok(mut s) = TcpStream::connect(http_addr(*to)) {
                    let _ = s.write_all(&bytes);
                    held.push(s);
                    if held.len() > 16 {
                        held.remove(0);
                    }
                }
            } else if let Some(ans) =
                exchange_then(http_addr(*to), &bytes, Duration::from_secs(5), true)
            {
                let st = status(&ans);
                prop_assert!(st != Some(500), "{a:?}\n{}", String::from_utf8_lossy(&ans));
                if let (Some(e), Some(s)) = (encoding, st) {
                    let e = e.trim();
                    let unknown = !e.is_empty()
                        && e.split(',')
                            .any(|c| !matches!(c.trim(), "" | "gzip" | "identity"));
                    if unknown && path.starts_with("/write") && method == "POST" {
                        // Never read as text: refused (415), or refused earlier for another
                        // reason (401/400/404/405/413), never accepted.
                        prop_assert!(s != 204, "{a:?} was accepted");
                    }
                }
            }
        }
        Attack::Udp(bytes) => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let _ = s.send_to(bytes, &l.udp);
        }
        Attack::StatsdTcp(bytes) => {
            let _ = exchange_then(&l.tcp, bytes, Duration::from_millis(300), true);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

#[test]
fn listeners_keep_answering_under_hostile_requests() {
    let dir = TempDir::new("hostile");
    let l = start(&dir);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let held: RefCell<Vec<TcpStream>> = RefCell::new(Vec::new());
    let count = Cell::new(0u32);
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        // Shrinking restarts cases against the same process: keep it short.
        max_shrink_iters: 64,
        ..Config::default()
    };
    let seed = std::env::var("SONDE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(fastrand_seed);
    eprintln!(
        "hostile listener fuzz: {} cases, SONDE_FUZZ_SEED={seed}",
        config.cases
    );
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let result = runner.run(&attack(), |a| {
        let t0 = std::time::Instant::now();
        run(&l, &a, &mut held.borrow_mut())?;
        if t0.elapsed() > Duration::from_millis(300) {
            let text = format!("{a:?}");
            eprintln!("SLOW {:?} {}", t0.elapsed(), &text[..text.len().min(300)]);
        }
        count.set(count.get() + 1);
        let n = count.get();
        // Every listener still answers a valid request, acknowledging it.
        let st = valid(
            &l.v1,
            "POST",
            "/write?db=canary",
            "",
            format!("canary,src=v1 n={n}i").as_bytes(),
        );
        prop_assert_eq!(st, Some(204), "influxdb_listener after {:?}", a);
        let st = valid(
            &l.v2,
            "POST",
            "/api/v2/write?bucket=b&org=o",
            "",
            format!("canary,src=v2 n={n}i").as_bytes(),
        );
        prop_assert_eq!(st, Some(204), "influxdb_v2_listener after {:?}", a);
        prop_assert_eq!(valid(&l.v1, "GET", "/ping", "", b""), Some(204));
        prop_assert_eq!(
            valid(&l.prom, "GET", "/metrics", "", b""),
            Some(200),
            "prometheus_client after {:?}",
            a
        );
        udp.send_to(b"canary_udp:1|c", &l.udp).unwrap();
        let mut tcp = TcpStream::connect(&l.tcp).map_err(|e| {
            TestCaseError::fail(format!("statsd TCP refused a connection after {a:?}: {e}"))
        })?;
        tcp.write_all(b"canary_tcp:1|c\n").unwrap();
        Ok(())
    });
    drop(held);
    let canaries = count.get();
    if let Err(e) = result {
        panic!("{e}\nsonde log:\n{}", tail(&l.agent.log()));
    }

    // Every acknowledged canary was delivered; the statsd canaries were all counted.
    let mut text = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        text = std::fs::read_to_string(&l.out).unwrap_or_default();
        let count = |src: &str| {
            text.lines()
                .filter(|x| x.starts_with("canary,") && x.contains(src))
                .count()
        };
        count("src=v1") == canaries as usize
            && count("src=v2") == canaries as usize
            && sum_counter(&text, "canary_tcp") == canaries as u64
            && sum_counter(&text, "canary_udp") == canaries as u64
    });
    assert!(
        ok,
        "{canaries} canaries sent; output has v1 {}, v2 {}, tcp {}, udp {}\nlog:\n{}",
        text.lines().filter(|x| x.contains("src=v1")).count(),
        text.lines().filter(|x| x.contains("src=v2")).count(),
        sum_counter(&text, "canary_tcp"),
        sum_counter(&text, "canary_udp"),
        tail(&l.agent.log())
    );
    let log = l.agent.log();
    assert!(
        !log.contains("panicked"),
        "a panic in the log:\n{}",
        tail(&log)
    );
    eprintln!("hostile listener fuzz: {canaries} cases passed");
}

/// The sum of a statsd counter's flushed values in line protocol output.
fn sum_counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name},")))
        .filter_map(|l| {
            let v = l.split(' ').nth(1)?.strip_prefix("value=")?;
            v.trim_end_matches('i').parse::<u64>().ok()
        })
        .sum()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn fastrand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now())
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn statsd_tcp_backs_off_when_out_of_file_descriptors() {
    let dir = TempDir::new("emfile");
    let port = free_port();
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  omit_hostname = true
  interval = "1h"
  flush_interval = "100ms"

[[inputs.statsd]]
  protocol = "tcp"
  service_address = "127.0.0.1:{port}"
  flush_interval = "200ms"
  max_tcp_connections = 1000

[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    let log = dir.join("sonde.log");
    // A low descriptor limit, so that clients can exhaust it: accept() then fails with EMFILE
    // for as long as connections wait in the backlog.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 40 && exec \"$0\" --debug --config \"$1\" 2>\"$2\"")
        .arg(sonde_tests::sonde_bin())
        .arg(&cfg)
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let _guard = Kill(&mut child);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let addr = format!("127.0.0.1:{port}");
    let ok = wait_until(Duration::from_secs(15), || {
        read_log().contains("statsd listening")
    });
    assert!(ok, "log:\n{}", read_log());

    let clients: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(
        clients.len() > 60,
        "only {} clients connected",
        clients.len()
    );
    let ok = wait_until(Duration::from_secs(10), || {
        read_log().contains("accepting a connection failed")
    });
    assert!(ok, "no accept error logged; log:\n{}", tail(&read_log()));
    // While the backlog stays full the listening socket stays readable: a loop that retries
    // at once burns a whole core (about 100 ticks a second); the backoff sleeps instead.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 30,
        "sonde used {used} CPU ticks in 3 s with accept() failing: the accept loop spins"
    );
    let log_now = read_log();
    let warnings = log_now.matches("accepting a connection failed").count();
    assert!(
        warnings < 20,
        "{warnings} accept warnings: not rate-limited"
    );

    // Once clients go away, the listener accepts again.
    drop(clients);
    let ok = wait_until(Duration::from_secs(15), || {
        TcpStream::connect(&addr)
            .and_then(|mut s| s.write_all(b"after_emfile:1|c\n"))
            .is_ok()
            && {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::read_to_string(&out)
                    .unwrap_or_default()
                    .contains("after_emfile")
            }
    });
    assert!(ok, "statsd did not recover; log:\n{}", tail(&read_log()));
    assert!(!read_log().contains("panicked"));
}
