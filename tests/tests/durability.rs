//! Durability end to end: the disk buffer across kill -9, a graceful stop during an outage,
//! backpressure from a full buffer, and a disk that fills up. The agent runs as a process;
//! the sink is a local HTTP server whose answers the test scripts.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sonde_tests::http::{Reply, Server};
use sonde_tests::servers::free_port;
use sonde_tests::{Agent, SIGTERM, TempDir, wait_until};

/// Posts `body` to the listener; the status, or None when the connection failed.
fn post(addr: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST /write?db=d HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).ok()?;
    let code = status.split_whitespace().nth(1)?.parse().ok()?;
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    Some((code, rest))
}

/// A batch of numbered metrics `seq n=<i>` for ids `first..first+n`.
fn batch(first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| format!("seq,src=load n={i}i {}\n", 1_700_000_000_000_000_000u64 + i))
        .collect()
}

/// Every id the sink took (answered 2xx), with how many times.
fn delivered(sink: &Server) -> BTreeMap<u64, u32> {
    let mut seen = BTreeMap::new();
    for r in sink.requests() {
        if !(200..300).contains(&r.answered) {
            continue;
        }
        for line in r.text().lines() {
            if let Some(n) = line
                .split_once(" n=")
                .and_then(|(_, rest)| rest.split(['i', ' ']).next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                *seen.entry(n).or_insert(0) += 1;
            }
        }
    }
    seen
}

fn config(dir: &TempDir, port: u16, sink: &Server, agent_extra: &str) -> std::path::PathBuf {
    dir.write(
        "sonde.toml",
        &format!(
            r#"
[agent]
  omit_hostname = true
  flush_interval = "200ms"
  metric_batch_size = 200
  shutdown_timeout = "2s"
  buffer_directory = "{buf}"
{agent_extra}

[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:{port}"

[[outputs.http]]
  url = "{url}"
  timeout = "2s"
"#,
            buf = dir.join("buffer").display(),
            url = sink.url("/ingest"),
        ),
    )
}

fn wait_listening(addr: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "listener {addr} did not come up"
    );
}

/// kill -9 at random moments while a load generator posts numbered metrics and the sink
/// fails a third of the time: every metric that got a 2xx is delivered at least once.
#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = TempDir::new("kill9");
    let sink = Arc::new(Server::start(vec![], Reply::status(204)));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = config(&dir, port, &sink, "  buffer_strategy = \"disk\"");

    // The sink flaps between up and down.
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (sink, stop) = (sink.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
                sink.set_default(if i.is_multiple_of(3) {
                    Reply::status(503)
                } else {
                    Reply::status(204)
                });
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    // The load: batches of 20 numbered metrics, as fast as the agent answers.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let loader = {
        let (acked, refused, stop, addr) =
            (acked.clone(), refused.clone(), stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match post(&addr, &batch(next, 20)) {
                    Some((code, _)) if (200..300).contains(&code) => {
                        acked.lock().unwrap().extend(next..next + 20);
                    }
                    Some(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
                next += 20;
            }
        })
    };

    let started = Instant::now();
    let mut kills = 0;
    let mut seed = 0x2545_f491u64;
    while started.elapsed() < Duration::from_secs(40) {
        let agent = Agent::start(&dir, &cfg);
        wait_listening(&addr);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 2000));
        drop(agent); // SIGKILL
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    flapper.join().unwrap();
    sink.set_default(Reply::status(204));

    // One last run delivers the backlog.
    let mut agent = Agent::start(&dir, &cfg);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 1000,
        "the load barely ran: {} acknowledged",
        acked.len()
    );
    let all_there = wait_until(Duration::from_secs(60), || {
        let got = delivered(&sink);
        acked.iter().all(|i| got.contains_key(i))
    });
    let got = delivered(&sink);
    let missing: Vec<u64> = acked
        .iter()
        .filter(|i| !got.contains_key(i))
        .copied()
        .collect();
    let duplicates: u64 = got.values().map(|&c| u64::from(c) - 1).sum();
    println!(
        "kill -9 loop: {kills} kills in {:?}, {} metrics acknowledged, {} delivered ({} distinct), {duplicates} duplicates, {} requests refused",
        started.elapsed(),
        acked.len(),
        got.values().map(|&c| u64::from(c)).sum::<u64>(),
        got.len(),
        refused.load(Ordering::Relaxed),
    );
    assert!(
        all_there,
        "{} acknowledged metrics never delivered, e.g. {:?}; log:\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        agent.log()
    );
    agent.signal(SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
}

/// SIGTERM during an outage: the disk buffer keeps the backlog and the next start delivers
/// it; the memory buffer loses it and says so with its exit status.
#[test]
fn a_stop_during_an_outage_keeps_the_disk_backlog_and_reports_memory_loss() {
    for disk in [true, false] {
        let dir = TempDir::new("stop");
        let sink = Server::start(vec![], Reply::status(503));
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let strategy = if disk { "disk" } else { "memory" };
        let cfg = config(
            &dir,
            port,
            &sink,
            &format!("  buffer_strategy = \"{strategy}\""),
        );
        let mut agent = Agent::start(&dir, &cfg);
        wait_listening(&addr);
        for i in 0..5 {
            let (code, text) = post(&addr, &batch(i * 100, 100)).unwrap();
            assert_eq!(code, 204, "{text}");
        }
        agent.signal(SIGTERM);
        let code = agent.wait_exit(Duration::from_secs(10));
        let log = agent.log();
        if !disk {
            assert_eq!(
                code,
                Some(1),
                "memory loss must fail the exit status; log:\n{log}"
            );
            assert!(log.contains("metrics are lost"), "{log}");
            continue;
        }
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.contains("kept unwritten metrics in the disk buffer"),
            "{log}"
        );
        assert!(delivered(&sink).is_empty());
        sink.set_default(Reply::status(204));
        let agent = Agent::start(&dir, &cfg);
        let ok = wait_until(Duration::from_secs(15), || delivered(&sink).len() == 500);
        assert!(
            ok,
            "delivered {} of 500; log:\n{}",
            delivered(&sink).len(),
            agent.log()
        );
        agent.wait_log(
            "resuming with metrics left by the previous run",
            1,
            Duration::from_secs(1),
        );
        // In order: the sink saw ids ascending.
        let mut ids = Vec::new();
        for r in sink.requests().iter().filter(|r| r.answered == 204) {
            for l in r.text().lines() {
                ids.push(
                    l.split(" n=")
                        .nth(1)
                        .unwrap()
                        .split('i')
                        .next()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
    }
}

/// A full buffer pushes back: the listener answers 429 with Retry-After instead of accepting
/// what would be dropped; once the sink is back, everything acknowledged arrives.
#[test]
fn a_full_buffer_pushes_back_on_the_listener() {
    let dir = TempDir::new("pushback");
    let sink = Server::start(vec![], Reply::status(503));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = config(&dir, port, &sink, "  metric_buffer_limit = 1000");
    let agent = Agent::start(&dir, &cfg);
    wait_listening(&addr);
    let mut acked = 0u64;
    let mut busy = None;
    for i in 0..50 {
        let (code, text) = post(&addr, &batch(i * 100, 100)).unwrap();
        match code {
            204 => acked += 100,
            429 => {
                busy = Some(text);
                break;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    let text = busy.expect("never refused");
    assert_eq!(acked, 1000, "exactly the buffer limit is accepted");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    assert!(text.contains("metric_buffer_limit = 1000"), "{text}");
    sink.set_default(Reply::status(204));
    let ok = wait_until(Duration::from_secs(20), || {
        delivered(&sink).len() as u64 == acked
    });
    assert!(
        ok,
        "delivered {} of {acked}; log:\n{}",
        delivered(&sink).len(),
        agent.log()
    );
    // With room again, writes are taken.
    assert_eq!(post(&addr, &batch(100_000, 10)).unwrap().0, 204);
}

/// A write larger than the room left is refused before any of it is stored, so a client that
/// retries it (as Telegraf's outputs do on 429) never gets a part of it delivered twice.
#[test]
fn a_write_that_does_not_fit_is_refused_whole() {
    let dir = TempDir::new("pushback-whole");
    let sink = Server::start(vec![], Reply::status(503));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = config(&dir, port, &sink, "  metric_buffer_limit = 2500");
    let agent = Agent::start(&dir, &cfg);
    wait_listening(&addr);
    assert_eq!(post(&addr, &batch(0, 1500)).unwrap().0, 204);
    // Its first 1,000 lines (one chunk) would fit in the 1,000 left; the whole write does not.
    let big = batch(1500, 2000);
    let (code, text) = post(&addr, &big).unwrap();
    assert_eq!(code, 429, "{text}");
    assert!(!text.contains("were stored"), "{text}");
    sink.set_default(Reply::status(204));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match post(&addr, &big).unwrap() {
            (204, _) => break,
            (429, _) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            (code, text) => panic!("{code}: {text}"),
        }
    }
    let ok = wait_until(Duration::from_secs(20), || delivered(&sink).len() == 3500);
    let seen = delivered(&sink);
    assert!(
        ok,
        "delivered {} of 3500; log:\n{}",
        seen.len(),
        agent.log()
    );
    let twice: Vec<_> = seen
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "{} delivered more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );
}

/// The disk under the buffer fills up: the write is refused with a clear error (503), the
/// agent keeps running, and what it acknowledged is delivered once the sink is back.
#[test]
fn a_full_disk_refuses_writes_and_never_crashes() {
    let dir = TempDir::new("diskfull");
    let mnt = dir.join("buffer");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "this test needs to mount a small tmpfs (root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let sink = Server::start(vec![], Reply::status(503));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = config(
        &dir,
        port,
        &sink,
        "  buffer_strategy = \"disk\"\n  buffer_disk_limit = \"100MiB\"",
    );
    let agent = Agent::start(&dir, &cfg);
    wait_listening(&addr);
    let mut acked = 0u64;
    let mut refusal = None;
    for i in 0..2000 {
        let (code, text) = post(&addr, &batch(i * 100, 100)).unwrap();
        if code == 204 {
            acked += 100;
        } else {
            refusal = Some((code, text));
            break;
        }
    }
    let (code, text) = refusal.expect("a 256 KiB disk never filled up");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(acked > 0);
    agent.wait_log("buffer cannot store metrics", 1, Duration::from_secs(5));
    sink.set_default(Reply::status(204));
    let ok = wait_until(Duration::from_secs(20), || {
        delivered(&sink).len() as u64 >= acked
    });
    assert!(
        ok,
        "delivered {} of {acked}; log:\n{}",
        delivered(&sink).len(),
        agent.log()
    );
    // Room again once delivered segments are deleted.
    assert!(wait_until(Duration::from_secs(10), || post(
        &addr,
        &batch(10_000_000, 10)
    )
    .is_some_and(|(c, _)| c == 204)));
}
