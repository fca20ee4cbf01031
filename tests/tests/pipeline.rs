//! End-to-end: the real binary, a real exec script, real files and a local HTTP server.

use std::time::Duration;

use sonde_tests::http::{Reply, Server};
use sonde_tests::{Agent, SIGHUP, SIGTERM, TempDir, run, sorted_lines, wait_until};

const LINES: &str = r#"weather,city=Berlin temp=21.5,hum=40i 1700000000000000000
weather,city=Paris\ Nord temp=-3e2,ok=true,note="say \"hi\"" 1700000001000000000
"#;

/// What the LINES become after `processors.override` adds env=e2e.
const EXPECTED: &[&str] = &[
    "weather,city=Berlin,env=e2e temp=21.5,hum=40i 1700000000000000000",
    r#"weather,city=Paris\ Nord,env=e2e temp=-300,ok=true,note="say \"hi\"" 1700000001000000000"#,
];

/// LINES as sonde writes them back (no processor).
fn lines_out() -> Vec<String> {
    EXPECTED.iter().map(|l| l.replace(",env=e2e", "")).collect()
}

fn printing_script(dir: &TempDir, lines: &str) -> String {
    let data = dir.write("lines.txt", lines);
    dir.script("emit.sh", &format!("cat {}", data.display()))
        .display()
        .to_string()
}

fn exec_to_file_config(dir: &TempDir, out: &str) -> std::path::PathBuf {
    let script = printing_script(dir, LINES);
    dir.write(
        "sonde.toml",
        &format!(
            r#"
[agent]
  omit_hostname = true
  interval = "1h"
  flush_interval = "100ms"

[[inputs.exec]]
  commands = ["{script}"]
  data_format = "influx"

[[processors.override]]
  [processors.override.tags]
    env = "e2e"

[[outputs.file]]
  files = ["{out}"]
"#
        ),
    )
}

#[test]
fn exec_through_processor_to_file_gives_exact_lines() {
    let dir = TempDir::new("exec-file");
    let out = dir.join("out.lp");
    let cfg = exec_to_file_config(&dir, &out.display().to_string());
    let r = run(&["--once", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(sorted_lines(&written), EXPECTED);
}

#[test]
fn test_mode_prints_only_line_protocol_on_stdout() {
    let dir = TempDir::new("test-mode");
    let out = dir.join("never.lp");
    let cfg = exec_to_file_config(&dir, &out.display().to_string());
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert_eq!(sorted_lines(&r.stdout), EXPECTED);
    assert!(!out.exists(), "--test must not write to outputs");
}

#[test]
fn bad_config_names_file_line_column_and_suggests() {
    let dir = TempDir::new("bad-config");
    let cfg = dir.write(
        "bad.toml",
        "[agent]\n  interval = \"10s\"\n\n[[inputs.exec]]\n  comands = [\"true\"]\n",
    );
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(1));
    let want = format!("{}:5:3", cfg.display());
    assert!(r.stderr.contains(&want), "no {want} in: {}", r.stderr);
    assert!(r.stderr.contains("inputs.exec"), "{}", r.stderr);
    assert!(
        r.stderr.contains("commands"),
        "no suggestion in: {}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let check = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(check.code, Some(1));
}

fn http_config(dir: &TempDir, lines: &str, extra_output: &str, extra: &str) -> std::path::PathBuf {
    let script = printing_script(dir, lines);
    dir.write(
        "sonde.toml",
        &format!(
            r#"
[agent]
  omit_hostname = true
  interval = "1h"
  flush_interval = "100ms"
  shutdown_timeout = "10s"

[[inputs.exec]]
  commands = ["{script}"]
  data_format = "influx"

{extra}

[[outputs.http]]
  namedrop = ["internal*"]
{extra_output}
"#
        ),
    )
}

#[test]
fn http_output_retries_503_and_delivers_exactly_once() {
    let dir = TempDir::new("http-503");
    let server = Server::start(
        vec![Reply::status(503), Reply::status(503)],
        Reply::status(204),
    );
    let cfg = http_config(
        &dir,
        LINES,
        &format!("  url = \"{}\"", server.url("/write")),
        "",
    );
    let r = run(&["--once", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "two 503s then one 204");
    let delivered: Vec<String> = reqs
        .iter()
        .filter(|r| r.answered == 204)
        .flat_map(|r| sorted_lines(&r.text()))
        .collect();
    assert_eq!(delivered, lines_out());
    assert!(
        reqs.iter()
            .all(|r| r.method == "POST" && r.path == "/write")
    );
}

/// Lines `m i=<k>i` for k in 0..n, at distinct whole-second timestamps.
fn numbered_lines(n: usize) -> String {
    (0..n)
        .map(|k| {
            format!(
                "m i={k}i {}\n",
                1_700_000_000_000_000_000i64 + k as i64 * 1_000_000_000
            )
        })
        .collect()
}

fn internal_to_file(out: &std::path::Path) -> String {
    format!(
        r#"
[[inputs.internal]]
  interval = "200ms"

[[outputs.file]]
  files = ["{}"]
  namepass = ["internal_write"]
"#,
        out.display()
    )
}

/// The last value of `field` in internal_write lines for output=http.
fn last_http_stat(file: &std::path::Path, field: &str) -> Option<i64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .rev()
        .filter(|l| l.starts_with("internal_write,") && l.contains("output=http"))
        .filter_map(|l| {
            let fields = l.split(' ').nth(1)?;
            fields.split(',').find_map(|kv| {
                let v = kv.strip_prefix(&format!("{field}="))?;
                v.trim_end_matches('i').parse().ok()
            })
        })
        .next()
}

#[test]
fn http_400_drops_the_batch_and_counts_it() {
    let dir = TempDir::new("http-400");
    let server = Server::start(vec![], Reply::status(400).with_body("field type conflict"));
    let stats = dir.join("stats.lp");
    let cfg = http_config(
        &dir,
        &numbered_lines(5),
        &format!("  url = \"{}\"", server.url("/write")),
        &internal_to_file(&stats),
    );
    let agent = Agent::start(&dir, &cfg);
    assert!(wait_until(Duration::from_secs(10), || last_http_stat(
        &stats,
        "metrics_rejected"
    ) == Some(5)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.requests().len(),
        1,
        "a rejected batch is never retried"
    );
    agent.wait_log_line(&["field type conflict"], Duration::from_secs(1));
}

#[test]
fn overflow_drops_oldest_and_counts_metrics_dropped() {
    let dir = TempDir::new("overflow");
    let server = Server::start(vec![], Reply::status(503));
    let stats = dir.join("stats.lp");
    let cfg = http_config(
        &dir,
        &numbered_lines(20),
        &format!(
            "  url = \"{}\"\n  metric_buffer_limit = 5\n  metric_batch_size = 5",
            server.url("/write")
        ),
        &internal_to_file(&stats),
    );
    let _agent = Agent::start(&dir, &cfg);
    assert!(wait_until(Duration::from_secs(10), || last_http_stat(
        &stats,
        "metrics_dropped"
    ) == Some(15)));
    // What is retried is the newest five.
    assert!(wait_until(Duration::from_secs(5), || !server
        .requests()
        .is_empty()));
    let body = server.requests()[0].text();
    assert_eq!(
        sorted_lines(&body),
        sorted_lines(
            &numbered_lines(20)
                .lines()
                .skip(15)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        )
    );
}

#[test]
fn sighup_reload_keeps_buffered_metrics() {
    let dir = TempDir::new("sighup");
    let server = Server::start(vec![], Reply::status(503));
    // Each run of the script prints lines tagged with its run number.
    let counter = dir.join("runs");
    let script = dir.script(
        "count.sh",
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\nfor i in 1 2 3 4; do echo \"m,run=$n i=${{i}}i 170000000${{i}}000000000\"; done",
            c = counter.display()
        ),
    );
    let write_cfg = |extra: &str| {
        dir.write(
            "sonde.toml",
            &format!(
                r#"
[agent]
  omit_hostname = true
  interval = "1h"
  flush_interval = "100ms"

[[inputs.exec]]
  commands = ["{}"]
  data_format = "influx"

[[outputs.http]]
  url = "{}"
{extra}
"#,
                script.display(),
                server.url("/write")
            ),
        )
    };
    let cfg = write_cfg("");
    let agent = Agent::start(&dir, &cfg);
    assert!(wait_until(Duration::from_secs(10), || !server
        .requests()
        .is_empty()));
    // The first run's lines are buffered behind the 503s. Change the config and reload.
    write_cfg("  [outputs.http.headers]\n    X-Reloaded = \"yes\"");
    server.set_default(Reply::status(204));
    agent.signal(SIGHUP);
    assert!(wait_until(Duration::from_secs(15), || {
        let delivered: usize = server
            .requests()
            .iter()
            .filter(|r| r.answered == 204)
            .map(|r| sorted_lines(&r.text()).len())
            .sum();
        delivered >= 8
    }));
    std::thread::sleep(Duration::from_millis(300));
    let mut delivered: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.answered == 204)
        .flat_map(|r| {
            assert_eq!(
                r.header("x-reloaded"),
                Some("yes"),
                "written by the reloaded output"
            );
            sorted_lines(&r.text())
        })
        .collect();
    delivered.sort();
    let mut want: Vec<String> = (1..=2)
        .flat_map(|run| (1..=4).map(move |i| format!("m,run={run} i={i}i 170000000{i}000000000")))
        .collect();
    want.sort();
    assert_eq!(delivered, want, "both runs, each line exactly once");
}

#[test]
fn sigterm_flushes_what_is_buffered() {
    let dir = TempDir::new("sigterm");
    let out = dir.join("out.lp");
    let script = printing_script(&dir, LINES);
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"
[agent]
  omit_hostname = true
  interval = "1h"
  flush_interval = "1h"

[[inputs.exec]]
  commands = ["{script}"]
  data_format = "influx"

[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    let mut agent = Agent::start(&dir, &cfg);
    agent.wait_log_line(&["gathered", "inputs.exec"], Duration::from_secs(10));
    assert!(
        std::fs::read_to_string(&out).unwrap_or_default().is_empty(),
        "nothing written before the flush"
    );
    agent.signal(SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        sorted_lines(&std::fs::read_to_string(&out).unwrap()),
        lines_out()
    );
}

#[test]
fn sighup_rebinds_listeners_and_the_scrape_endpoint() {
    use sonde_tests::servers::{free_port, get, request};
    let dir = TempDir::new("sighup-listen");
    let listen = format!("127.0.0.1:{}", free_port());
    let scrape = format!("127.0.0.1:{}", free_port());
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"
[agent]
  omit_hostname = true
  flush_interval = "100ms"

[[inputs.influxdb_listener]]
  service_address = "{listen}"

[[outputs.prometheus_client]]
  listen = "{scrape}"
"#
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let write = |line: &str| {
        request(&listen, "POST", "/write", &[], line.as_bytes())
            .map(|(status, _)| status)
            .unwrap_or(0)
    };
    let scraped = |needle: &str| {
        get(&format!("http://{scrape}/metrics"))
            .map(|(_, body)| body.contains(needle))
            .unwrap_or(false)
    };
    assert!(wait_until(Duration::from_secs(10), || write("m,run=a v=1") == 204));
    assert!(wait_until(Duration::from_secs(10), || scraped(
        "m_v{run=\"a\"}"
    )));
    agent.signal(SIGHUP);
    agent.wait_log("reloaded", 1, Duration::from_secs(10));
    // The same addresses are bound again by the new configuration's plugins.
    assert!(wait_until(Duration::from_secs(10), || write("m,run=b v=2") == 204));
    assert!(wait_until(Duration::from_secs(10), || scraped(
        "m_v{run=\"b\"}"
    )));
    assert!(!agent.log().contains("ERROR"), "{}", agent.log());
}

/// outputs.file rotates at the configured size, keeps the configured number of archives, and
/// with gzip every line written is read back whole from the current file and its archives.
#[test]
fn file_output_rotates_by_size_and_keeps_the_archives_asked_for() {
    use sonde_tests::servers::{free_port, request};
    use std::io::Read;
    let dir = TempDir::new("rotate");
    let listen = format!("127.0.0.1:{}", free_port());
    let (kept, all) = (dir.join("kept"), dir.join("all"));
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::create_dir_all(&all).unwrap();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  flush_interval = "100ms"
  metric_batch_size = 100
  omit_hostname = true

[[inputs.influxdb_listener]]
  service_address = "{listen}"

[[outputs.file]]
  files = ["{kept}/m.out"]
  rotation_max_size = "2KB"
  rotation_max_archives = 3

[[outputs.file]]
  files = ["{all}/m.out.gz"]
  rotation_max_size = "300B"
  rotation_max_archives = -1
  compression_algorithm = "gzip"
"#,
            kept = kept.display(),
            all = all.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    // 40 posts of 50 lines, ~45 bytes each: about 90 kB, so dozens of rotations.
    let mut sent = Vec::new();
    for post in 0..40 {
        let body: String = (0..50)
            .map(|i| {
                let line = format!(
                    "job,run=r{post} seq={}i {}\n",
                    post * 50 + i,
                    1_700_000_000_000_000_000i64 + post * 50 + i
                );
                sent.push(line.trim_end().to_string());
                line
            })
            .collect();
        let ok = wait_until(Duration::from_secs(10), || {
            matches!(
                request(&listen, "POST", "/write", &[], body.as_bytes()),
                Ok((204, _))
            )
        });
        assert!(ok, "post {post} refused; log:\n{}", agent.log());
    }
    let files = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    // None while a file is mid-write (a gzip stream not yet finished).
    let read_all = |d: &std::path::Path| -> Option<Vec<String>> {
        let mut lines = Vec::new();
        for p in files(d) {
            // A file just rotated in is empty until the next batch.
            if std::fs::metadata(&p).ok()?.len() == 0 {
                continue;
            }
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).ok()?)
                .read_to_string(&mut text)
                .ok()?;
            lines.extend(text.lines().map(String::from));
        }
        lines.sort();
        Some(lines)
    };
    sent.sort();
    let complete = wait_until(Duration::from_secs(20), || {
        read_all(&all).as_ref() == Some(&sent)
    });
    assert!(
        complete,
        "gzip files hold {:?} of {} lines; log:\n{}",
        read_all(&all).map(|l| l.len()),
        sent.len(),
        agent.log()
    );
    assert!(
        files(&all).len() > 10,
        "rotated many times: {:?}",
        files(&all)
    );

    // The size-limited output keeps exactly three archives plus the current file, each archive
    // at least 2 KB and at most 2 KB plus one batch (100 lines of ~45 bytes).
    let kept_files = files(&kept);
    assert_eq!(kept_files.len(), 4, "{kept_files:?}");
    for p in &kept_files {
        let name = p.file_name().unwrap().to_string_lossy();
        if name == "m.out" {
            continue;
        }
        assert!(name.starts_with("m.") && name.ends_with(".out"), "{name}");
        let len = std::fs::metadata(p).unwrap().len();
        assert!(
            (2000..2000 + 100 * 50).contains(&len),
            "{name}: {len} bytes"
        );
    }
}

/// statsd emits its aggregates on the input's interval, as Telegraf does (it used to emit on a
/// fixed 10 s clock whatever the interval said).
#[test]
fn statsd_aggregates_arrive_on_the_input_interval() {
    use sonde_tests::servers::free_port;
    let dir = TempDir::new("statsd-interval");
    let port = free_port();
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  interval = "10s"
  flush_interval = "100ms"
  omit_hostname = true

[[inputs.statsd]]
  interval = "1s"
  service_address = "127.0.0.1:{port}"
  delete_counters = false

[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    agent.wait_log("listening", 1, Duration::from_secs(10));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"jobs.done:1|c", ("127.0.0.1", port)).unwrap();
    let arrived = wait_until(Duration::from_secs(8), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("jobs_done"))
    });
    assert!(arrived, "no aggregate within 8 s; log:\n{}", agent.log());
    // Two more one-second windows: each emits the counter again (delete_counters = false).
    let counted = wait_until(Duration::from_secs(8), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.matches("jobs_done").count() >= 3)
    });
    assert!(
        counted,
        "aggregates are not emitted every second; log:\n{}",
        agent.log()
    );
}

/// A listener's lines get the input's tags, the global tags and `host` where they have none of
/// the key, whether they go straight to the outputs as records (nothing between) or through a
/// processor as metrics; lines with escapes and strings too.
#[test]
fn a_listener_adds_the_agents_tags_on_either_route() {
    use sonde_tests::servers::{free_port, request};
    const BODY: &str = "m,host=own,b=2,a=1 v=1i 1700000000000000000\n\
                        m,dc=mine v=2 1700000001000000000\n\
                        e\\ x,k\\,=v v=\"s\" 1700000002000000000\n";
    let routes = [
        ("direct", ""),
        (
            "processed",
            "[[processors.override]]\n  [processors.override.tags]\n    z = \"1\"\n",
        ),
    ];
    let mut outs = Vec::new();
    for (name, processor) in routes {
        let dir = TempDir::new(&format!("listener-tags-{name}"));
        let listen = format!("127.0.0.1:{}", free_port());
        let out = dir.join("out.lp");
        let cfg = dir.write(
            "sonde.toml",
            &format!(
                r#"
[global_tags]
  dc = "eu"
[agent]
  hostname = "node-1"
  flush_interval = "100ms"

[[inputs.influxdb_listener]]
  service_address = "{listen}"
  [inputs.influxdb_listener.tags]
    src = "lp"

{processor}
[[outputs.file]]
  files = ["{}"]
"#,
                out.display()
            ),
        );
        let agent = Agent::start(&dir, &cfg);
        assert!(wait_until(Duration::from_secs(10), || {
            request(&listen, "POST", "/write", &[], BODY.as_bytes()).is_ok_and(|(s, _)| s == 204)
        }));
        // Again, once written: the series of the first write are known by now.
        assert!(wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 3)
        }));
        let (status, _) = request(&listen, "POST", "/write", &[], BODY.as_bytes()).unwrap();
        assert_eq!(status, 204);
        assert!(wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 6)
        }));
        let text = std::fs::read_to_string(&out).unwrap();
        outs.push(text.replace(",z=1", ""));
        let log = agent.log();
        assert!(!log.contains("ERROR"), "{log}");
        // Only where nothing needs the metrics are lines written straight into records
        // (`Agent` runs sonde with `--debug`).
        let direct = log.contains("writing lines straight into buffer records");
        assert_eq!(direct, name == "direct", "{name}: {log}");
    }
    let want = [
        "m,a=1,b=2,dc=eu,host=own,src=lp v=1i 1700000000000000000",
        "m,dc=mine,host=node-1,src=lp v=2 1700000001000000000",
        "e\\ x,dc=eu,host=node-1,k\\,=v,src=lp v=\"s\" 1700000002000000000",
    ];
    assert_eq!(outs[0].lines().collect::<Vec<_>>(), want.repeat(2));
    assert_eq!(outs[0], outs[1]);
}
