//! Load generator for tests/bench/ingest.sh and tests/bench/remote_write.sh.
//!
//! `loadgen post ADDR PATH SECONDS CONNECTIONS LINES_PER_REQUEST` posts pre-built line protocol
//! over keep-alive HTTP/1.1 connections for SECONDS and prints
//! `lines_accepted seconds requests_refused` (only 2xx count as accepted).
//!
//! `loadgen lines ADDR PATH TOTAL CONNECTIONS LINES_PER_REQUEST TAG=VALUE` posts exactly TOTAL
//! distinct lines (every line its own series and timestamp pair, so a store keeps every sample)
//! of measurement `bench` with two fields, `duration_ms` (float) and `bytes` (integer), and the
//! tag TAG=VALUE (to tell apart the data of several agents in one store). Timestamps are whole
//! milliseconds (in nanoseconds) from one hour ago, one per line. A request answered 429 or 503
//! is retried after its Retry-After (1 s without one); a dropped connection is re-opened and the
//! request retried. Prints `lines_accepted seconds requests_retried lines_failed` (failed:
//! answered with another non-2xx status, not retried).
//!
//! `loadgen sink ADDR` answers every request with 204 (a stand-in InfluxDB v2 for the output).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn body(lines: usize, seed: usize) -> Vec<u8> {
    let mut s = String::with_capacity(lines * 120);
    let base = 1_700_000_000_000_000_000i64 + seed as i64 * 1_000_000_000;
    for i in 0..lines {
        s.push_str(&format!(
            "http_check,host=exec-{},scenario=s{},region=eu-west status=200i,duration_ms={}.5,ok=true,bytes={}i {}\n",
            i % 8,
            i % 50,
            i % 997,
            i * 7,
            base + i as i64
        ));
    }
    s.into_bytes()
}

/// Reads one response; returns its status.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    read_response_full(r).map(|(status, _)| status)
}

/// Reads one response; returns its status and its Retry-After in seconds, if any.
fn read_response_full(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Option<f64>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    let mut retry_after = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        } else if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("retry-after")
        {
            // Seconds; an HTTP date (not sent by the servers benchmarked) counts as 1 s.
            retry_after = Some(v.trim().parse().unwrap_or(1.0));
        }
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf)?;
    Ok((status, retry_after))
}

/// Requests of `per_request` lines, `total` lines in all, each line distinct (see the module doc).
fn distinct_bodies(total: usize, per_request: usize, tag: &str) -> Vec<Vec<u8>> {
    use std::fmt::Write as _;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let base_ms = now_ms - 3_600_000;
    let mut bodies = Vec::with_capacity(total.div_ceil(per_request));
    let mut i = 0usize;
    while i < total {
        let end = (i + per_request).min(total);
        let mut s = String::with_capacity((end - i) * 100);
        for n in i..end {
            // 10 hosts x 100 jobs = 1000 series per field; each line a new millisecond.
            writeln!(
                s,
                "bench,{tag},host=exec-{},job=j{} duration_ms={}.25,bytes={}i {}",
                n % 10,
                (n / 10) % 100,
                n % 997,
                n * 7 % 100_003,
                (base_ms + n as i64) * 1_000_000
            )
            .unwrap();
        }
        bodies.push(s.into_bytes());
        i = end;
    }
    bodies
}

/// Posts `total` distinct lines once, retrying what the server asks to retry.
fn lines(addr: &str, path: &str, total: usize, conns: usize, per_request: usize, tag: &str) {
    let bodies = Arc::new(distinct_bodies(total, per_request, tag));
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(600);
    let connect = |addr: &str| -> (TcpStream, BufReader<TcpStream>) {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).ok();
        (s.try_clone().unwrap(), BufReader::new(s))
    };
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (bodies, next, accepted, retried, failed) = (
                bodies.clone(),
                next.clone(),
                accepted.clone(),
                retried.clone(),
                failed.clone(),
            );
            let (addr, path) = (addr.to_string(), path.to_string());
            std::thread::spawn(move || {
                let (mut w, mut r) = connect(&addr);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(b) = bodies.get(k) else { break };
                    let n = b.iter().filter(|&&c| c == b'\n').count() as u64;
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
                        b.len()
                    );
                    loop {
                        assert!(Instant::now() < deadline, "gave up after 600 s of retries");
                        let sent = w
                            .write_all(head.as_bytes())
                            .and_then(|_| w.write_all(b))
                            .and_then(|_| read_response_full(&mut r));
                        match sent {
                            Ok((200..=299, _)) => {
                                accepted.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            Ok((429 | 503, after)) => {
                                retried.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_secs_f64(
                                    after.unwrap_or(1.0).clamp(0.0, 60.0),
                                ));
                            }
                            Ok((status, _)) => {
                                eprintln!("loadgen: request answered {status}, not retried");
                                failed.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            Err(e) => {
                                eprintln!("loadgen: {e}; reconnecting and retrying");
                                retried.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(100));
                                (w, r) = connect(&addr);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{} {elapsed:.3} {} {}",
        accepted.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}

fn post(addr: &str, path: &str, secs: f64, conns: usize, lines: usize) {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..8).map(|s| body(lines, s)).collect());
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let (bodies, accepted, refused, stop) = (
                bodies.clone(),
                accepted.clone(),
                refused.clone(),
                stop.clone(),
            );
            let (addr, path) = (addr.to_string(), path.to_string());
            std::thread::spawn(move || {
                let s = TcpStream::connect(&addr).expect("connect");
                s.set_nodelay(true).ok();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let b = &bodies[i % bodies.len()];
                    i += 1;
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
                        b.len()
                    );
                    w.write_all(head.as_bytes()).unwrap();
                    w.write_all(b).unwrap();
                    match read_response(&mut r) {
                        Ok(200..=299) => accepted.fetch_add(lines as u64, Ordering::Relaxed),
                        Ok(_) => refused.fetch_add(1, Ordering::Relaxed),
                        Err(e) => panic!("reading the response: {e}"),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{} {elapsed:.3} {}",
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

fn sink(addr: &str) {
    let l = TcpListener::bind(addr).expect("bind");
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            while read_response_as_request(&mut r).is_ok() {
                if w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
                    return;
                }
            }
        });
    }
}

/// Reads one request (headers and a content-length body).
fn read_response_as_request(r: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    read_response(r).map(|_| ())
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("post") if a.len() == 7 => post(
            &a[2],
            &a[3],
            a[4].parse().unwrap(),
            a[5].parse().unwrap(),
            a[6].parse().unwrap(),
        ),
        Some("lines") if a.len() == 8 => lines(
            &a[2],
            &a[3],
            a[4].parse().unwrap(),
            a[5].parse().unwrap(),
            a[6].parse().unwrap(),
            &a[7],
        ),
        Some("sink") if a.len() == 3 => sink(&a[2]),
        _ => {
            eprintln!(
                "usage: loadgen post ADDR PATH SECONDS CONNECTIONS LINES | \
                 loadgen lines ADDR PATH TOTAL CONNECTIONS LINES TAG=VALUE | loadgen sink ADDR"
            );
            std::process::exit(2);
        }
    }
}
