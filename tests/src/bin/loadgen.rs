//! Load generator for tests/bench/ingest.sh.
//!
//! `loadgen post ADDR PATH SECONDS CONNECTIONS LINES_PER_REQUEST` posts pre-built line protocol
//! over keep-alive HTTP/1.1 connections and prints `lines_accepted seconds` (only 2xx count).
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
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
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
        }
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf)?;
    Ok(status)
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
        Some("sink") if a.len() == 3 => sink(&a[2]),
        _ => {
            eprintln!(
                "usage: loadgen post ADDR PATH SECONDS CONNECTIONS LINES | loadgen sink ADDR"
            );
            std::process::exit(2);
        }
    }
}
