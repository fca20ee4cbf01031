//! End-to-end with a real Prometheus, VictoriaMetrics and node_exporter (Debian packages,
//! installed by tests/setup.sh; each test starts its own server on a free loopback port).

use std::time::Duration;

use sonde_tests::servers::{Process, enc as urlencode, free_port, get};
use sonde_tests::{Agent, TempDir, run, wait_until};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const VICTORIA: &str = "/usr/bin/victoria-metrics";
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// Starts Prometheus with its remote-write receiver, scraping `targets` every second.
fn start_prometheus(dir: &TempDir, targets: &[String]) -> (Process, u16) {
    let port = free_port();
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: [{list}]\n"
        ),
    );
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-remote-write-receiver".into(),
    ];
    let p = Process::start(
        PROMETHEUS,
        &args,
        dir.join("prometheus.log"),
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(60),
    );
    (p, port)
}

/// The value of an instant query's first result, once it has one.
fn query(base: &str, promql: &str, timeout: Duration) -> Option<f64> {
    let url = format!("{base}/api/v1/query?query={}", urlencode(promql));
    let mut found = None;
    wait_until(timeout, || {
        let Ok((200, body)) = get(&url) else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        found = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok());
        found.is_some()
    });
    found
}

/// An exec input printing `lines` every second.
fn exec_input(dir: &TempDir, lines: &str) -> String {
    let data = dir.write("lines.txt", lines);
    let script = dir.script("emit.sh", &format!("cat {}", data.display()));
    format!(
        "[[inputs.exec]]\n  commands = [\"{}\"]\n  data_format = \"influx\"\n",
        script.display()
    )
}

const AGENT: &str = "[agent]\n  omit_hostname = true\n  interval = \"1s\"\n  flush_interval = \"500ms\"\n  precision = \"1ms\"\n";

#[test]
fn prometheus_scrapes_prometheus_client() {
    let dir = TempDir::new("prom-scrape");
    let sonde_port = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}{}\n[[outputs.prometheus_client]]\n  listen = \"127.0.0.1:{sonde_port}\"\n",
            exec_input(
                &dir,
                "e2e_scrape,src=sonde,path=a\\=b\"c gauge_v=42.5,count_v=7i,up=true\n"
            )
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let (prom, port) = start_prometheus(&dir, &[format!("127.0.0.1:{sonde_port}")]);
    let base = format!("http://127.0.0.1:{port}");
    let q = |promql: &str| query(&base, promql, Duration::from_secs(30));
    let v = q("e2e_scrape_gauge_v{src=\"sonde\",path=\"a=b\\\"c\"}");
    assert_eq!(
        v,
        Some(42.5),
        "sonde log:\n{}\nprometheus log:\n{}",
        agent.log(),
        prom.log()
    );
    assert_eq!(q("e2e_scrape_count_v{src=\"sonde\"}"), Some(7.0));
    assert_eq!(q("e2e_scrape_up{src=\"sonde\"}"), Some(1.0));
    // The scrape itself was healthy, and the process collector was served too.
    assert_eq!(q("up{job=\"sonde\"}"), Some(1.0));
    assert!(q("process_resident_memory_bytes{job=\"sonde\"}").unwrap() > 1e6);
}

fn remote_write_config(dir: &TempDir, url: &str, measurement: &str) -> std::path::PathBuf {
    dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}{}\n[[outputs.prometheus_remote_write]]\n  url = \"{url}\"\n",
            exec_input(
                dir,
                &format!("{measurement},src=sonde,zone=eu value=12.25,total=99i\n")
            )
        ),
    )
}

#[test]
fn remote_write_to_prometheus() {
    let dir = TempDir::new("prom-rw");
    let (prom, port) = start_prometheus(&dir, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let cfg = remote_write_config(&dir, &format!("{base}/api/v1/write"), "e2e_rw");
    let agent = Agent::start(&dir, &cfg);
    let q = |promql: &str| query(&base, promql, Duration::from_secs(30));
    assert_eq!(
        q("e2e_rw_value{src=\"sonde\",zone=\"eu\"}"),
        Some(12.25),
        "sonde log:\n{}\nprometheus log:\n{}",
        agent.log(),
        prom.log()
    );
    assert_eq!(q("e2e_rw_total{src=\"sonde\"}"), Some(99.0));
    assert!(!agent.log().contains("rejected"), "{}", agent.log());
}

#[test]
fn remote_write_to_victoria_metrics() {
    let dir = TempDir::new("vm-rw");
    let port = free_port();
    let args = vec![
        format!("-httpListenAddr=127.0.0.1:{port}"),
        format!("-storageDataPath={}", dir.join("vm").display()),
        // Make ingested samples searchable at once.
        "-search.latencyOffset=0s".into(),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let vm = Process::start(
        VICTORIA,
        &args,
        dir.join("vm.log"),
        &format!("{base}/health"),
        Duration::from_secs(60),
    );
    let cfg = remote_write_config(&dir, &format!("{base}/api/v1/write"), "e2e_vm");
    let agent = Agent::start(&dir, &cfg);
    let q = |promql: &str| query(&base, promql, Duration::from_secs(30));
    assert_eq!(
        q("e2e_vm_value{src=\"sonde\",zone=\"eu\"}"),
        Some(12.25),
        "sonde log:\n{}\nvictoria-metrics log:\n{}",
        agent.log(),
        vm.log()
    );
    assert_eq!(q("e2e_vm_total{src=\"sonde\"}"), Some(99.0));
}

/// The value of `field` in a line-protocol line.
fn value(line: &str, field: &str) -> f64 {
    // Tags may hold escaped spaces; fields and the timestamp are the last two parts.
    let fields = line.rsplit(' ').nth(1).unwrap_or("");
    let v = fields
        .split(',')
        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no field {field} in {line}"));
    v.trim_end_matches('i').parse().unwrap()
}

/// The sample lines of `name` in an exposition page.
fn samples<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .collect()
}

const FIXTURE: &str = r#"# HELP edge_escaped Label values with every escape.
# TYPE edge_escaped gauge
edge_escaped{path="a=b",quote="say \"hi\"",slash="c:\\dir",nl="x\ny"} 1.5
edge_special{kind="nan"} NaN
edge_special{kind="pinf"} +Inf
edge_special{kind="ninf"} -Inf
edge_untyped_with_ts 3 1700000000123
# TYPE edge_hist histogram
edge_hist_bucket{le="0.5"} 2
edge_hist_bucket{le="+Inf"} 5
edge_hist_sum 4.25
edge_hist_count 5
# TYPE edge_sum summary
edge_sum{quantile="0.99"} 8
edge_sum_sum 20
edge_sum_count 4
"#;

#[test]
fn prometheus_input_reads_what_real_exporters_serve() {
    let dir = TempDir::new("prom-input");
    let ne_port = free_port();
    let ne_url = format!("http://127.0.0.1:{ne_port}/metrics");
    let _ne = Process::start(
        NODE_EXPORTER,
        &[format!("--web.listen-address=127.0.0.1:{ne_port}")],
        dir.join("node_exporter.log"),
        &ne_url,
        Duration::from_secs(30),
    );
    let (_prom, prom_port) = start_prometheus(&dir, &[]);
    let prom_url = format!("http://127.0.0.1:{prom_port}/metrics");
    let fixture = dir.write("edge.prom", FIXTURE);
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.prometheus]]\n  metric_version = 2\n  urls = [\"{ne_url}\", \"{prom_url}\", \"file://{}\"]\n\
             [[outputs.discard]]\n",
            fixture.display()
        ),
    );
    let out = run(&["--config", cfg.to_str().unwrap(), "--test"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let find = |field: &str, url: &str| -> Vec<&str> {
        lines
            .iter()
            .copied()
            // The field anywhere in the field set (after the space, or after a comma).
            .filter(|l| {
                let fields = l.rsplit(' ').nth(1).unwrap_or("");
                fields
                    .split(',')
                    .any(|kv| kv.strip_prefix(field).is_some_and(|r| r.starts_with('=')))
                    && l.contains(url)
            })
            .collect()
    };

    // node_exporter's build info: same labels and value as the page it serves.
    let (_, page) = get(&ne_url).unwrap();
    let served = samples(&page, "node_exporter_build_info");
    assert_eq!(served.len(), 1, "{page}");
    let got = find("node_exporter_build_info", &format!("url={ne_url}"));
    assert_eq!(got.len(), 1, "{}", out.stdout);
    for label in ["version", "goversion", "branch", "revision"] {
        let want = served[0]
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert!(
            got[0].contains(&format!("{label}={}", want.replace(' ', "\\ "))),
            "{label}={want} missing in {}",
            got[0]
        );
    }
    let served_value: f64 = served[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value(got[0], "node_exporter_build_info"), served_value);
    // A constant the exporter computes once: the number of CPUs it reports stays the same.
    let cpus = samples(&page, "node_cpu_seconds_total")
        .iter()
        .filter(|l| l.contains("mode=\"idle\""))
        .count();
    let got_cpus = find("node_cpu_seconds_total", &ne_url)
        .iter()
        .filter(|l| l.contains("mode=idle"))
        .count();
    assert_eq!(got_cpus, cpus);

    // Prometheus's own /metrics: its build info and a histogram kept as buckets.
    let got = find("prometheus_build_info", &prom_url);
    assert_eq!(got.len(), 1, "{}", out.stdout);
    assert!(got[0].contains("version=2."), "{}", got[0]);
    assert!(!find("prometheus_http_request_duration_seconds_bucket", &prom_url).is_empty());

    // The fixture's edge cases.
    let file = |field: &str| find(field, "url=file://");
    let esc = file("edge_escaped");
    assert_eq!(esc.len(), 1, "{}", out.stdout);
    assert!(esc[0].contains(r#"path=a\=b"#), "{}", esc[0]);
    assert!(esc[0].contains(r#"quote=say\ "hi""#), "{}", esc[0]);
    assert!(esc[0].contains(r#"slash=c:\dir"#), "{}", esc[0]);
    assert_eq!(value(esc[0], "edge_escaped"), 1.5);
    // NaN and ±Inf are parsed (see the codec's tests) but line protocol cannot carry them:
    // `--test` prints none, and the samples after them still come through.
    assert!(file("edge_special").is_empty(), "{}", out.stdout);
    let ts = file("edge_untyped_with_ts");
    assert!(ts[0].ends_with(" 1700000000123000000"), "{}", ts[0]);
    assert_eq!(value(ts[0], "edge_untyped_with_ts"), 3.0);
    let buckets = file("edge_hist_bucket");
    let bucket = |le: &str| {
        let l = buckets
            .iter()
            .find(|l| l.contains(&format!(",le={le},")))
            .unwrap();
        value(l, "edge_hist_bucket")
    };
    assert_eq!((bucket("0.5"), bucket("+Inf")), (2.0, 5.0), "{buckets:?}");
    let sums = file("edge_hist_sum");
    assert_eq!(value(sums[0], "edge_hist_sum"), 4.25);
    assert_eq!(value(sums[0], "edge_hist_count"), 5.0);
    assert!(file("edge_sum")[0].contains("quantile=0.99"));
}
