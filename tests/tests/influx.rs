//! End-to-end: the real binary with a real InfluxDB 1.x, VictoriaMetrics, the Python
//! `influxdb-client` and real UDP statsd packets.

use std::time::Duration;

use sonde_tests::http::{Reply, Server};
use sonde_tests::servers::{self, Proc, enc, free_port, influxql, request};
use sonde_tests::{Agent, TempDir, sorted_lines, wait_until};

/// Starts sonde with `body` (after an [agent] section flushing every 100ms).
fn agent(dir: &TempDir, body: &str) -> Agent {
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  omit_hostname = true\n  interval = \"1h\"\n  flush_interval = \"100ms\"\n\n{body}"
        ),
    );
    Agent::start(dir, &cfg)
}

fn wait_port(addr: &str, agent: &Agent) {
    let ok = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    assert!(ok, "sonde did not listen on {addr}; log:\n{}", agent.log());
}

fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    request(addr, "POST", path, &[], body.as_bytes()).unwrap()
}

/// Polls an InfluxQL query until its answer contains `needle`.
fn wait_query(server: &Proc, db: &str, q: &str, needle: &str, agent: &Agent) -> String {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(15), || {
        last = influxql(server, db, q);
        last.contains(needle)
    });
    assert!(
        ok,
        "{q:?} never answered with {needle:?}; last: {last}\nsonde log:\n{}",
        agent.log()
    );
    last
}

#[test]
fn listener_to_influxdb_read_back_with_influxql() {
    let influx = servers::influxd();
    let dir = TempDir::new("influx-v1");
    let listen = format!("127.0.0.1:{}", free_port());
    let a = agent(
        &dir,
        &format!(
            r#"[[inputs.influxdb_listener]]
  service_address = "{listen}"

[[outputs.influxdb]]
  urls = ["{}"]
  database = "sonde"
"#,
            influx.url("")
        ),
    );
    wait_port(&listen, &a);
    let lines = "api,scenario=login,region=eu\\ west duration=182.5,status=200i,ok=true,msg=\"fine \\\"ok\\\"\" 1700000000000000000\n\
                 api,scenario=search,region=us duration=90,status=500i,ok=false,msg=\"\" 1700000001000000000\n";
    let (status, body) = post(&listen, "/write", lines);
    assert_eq!(status, 204, "{body}");
    // Polled until the whole answer is there: InfluxDB keeps each field of a point under a
    // key of its own, and a query that runs while the write is applied can see some fields of
    // a point and not yet the others (CI once did).
    let want = r#"{"results":[{"statement_id":0,"series":[{"name":"api","columns":["time","duration","msg","ok","region","scenario","status"],"values":[[1700000000000000000,182.5,"fine \"ok\"",true,"eu west","login",200],[1700000001000000000,90,"",false,"us","search",500]]}]}]}"#;
    let got = wait_query(&influx, "sonde", "SELECT * FROM api", want, &a);
    assert_eq!(got, want.to_string() + "\n");
    let fields = influxql(&influx, "sonde", "SHOW FIELD KEYS FROM api");
    assert!(
        fields.contains(
            r#"[["duration","float"],["msg","string"],["ok","boolean"],["status","integer"]]"#
        ),
        "{fields}"
    );
    let tags = influxql(&influx, "sonde", "SHOW TAG KEYS FROM api");
    assert!(tags.contains(r#"[["region"],["scenario"]]"#), "{tags}");
}

/// Tricky line protocol: escapes, unicode, quoting, number edges, boolean spellings,
/// several fields, duplicate points (the last one wins), a line in the future.
const CORPUS: &str = r#"cpu,host=server\ 01,region=us-west usage_idle=98.5,usage_user=1.25 1700000000000000000
cpu,host=server\ 01,region=us-west usage_idle=97.5,usage_user=2.5 1700000000000000000
weird\,name,tag\=key=tag\,value field\ key="string with \"quotes\" and \\ backslash" 1700000000000000001
unicode,città=Zürich température=21.5,emoji="🚀 launch" 1700000000000000002
bools,t=1 a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE 1700000000000000003
numbers i_max=9223372036854775807i,i_min=-9223372036854775808i,f_exp=1.5e300,f_neg=-0.000001,f_int=42 1700000000000000004
paths,dir=C:\temp\new path="C:\\Program Files\\x" 1700000000000000005
spaces,a=b\ \ c v="  leading and trailing  " 1700000000000000006
multi,host=a x=1i,y=2i,z="three" 1700000000000000007
multi,host=b x=4i 1700000000000000008
long,k=v s="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" 1700000000000000009
equals,k=a\=b v="a=b" 1700000000000000010
"#;

#[test]
fn differential_corpus_direct_and_through_sonde_answer_identically() {
    let influx = servers::influxd();
    let dir = TempDir::new("influx-diff");
    let listen = format!("127.0.0.1:{}", free_port());
    let a = agent(
        &dir,
        &format!(
            r#"[[inputs.influxdb_listener]]
  service_address = "{listen}"

[[outputs.influxdb]]
  urls = ["{}"]
  database = "via"
"#,
            influx.url("")
        ),
    );
    wait_port(&listen, &a);
    influxql(&influx, "", "CREATE DATABASE direct");
    let (s1, b1) = post(&influx.addr, "/write?db=direct", CORPUS);
    let (s2, b2) = post(&listen, "/write?db=via", CORPUS);
    assert_eq!((s1, s2), (204, 204), "influxdb: {b1}; sonde: {b2}");
    // The same request with bad lines in it: both keep the good lines and answer 400.
    let bad = "ok,k=v v=1i 1700000000000000100\nbroken,k=v v= 1700000000000000101\nok,k=w v=2i 1700000000000000102\n";
    let (s1, b1) = post(&influx.addr, "/write?db=direct", bad);
    let (s2, b2) = post(&listen, "/write?db=via", bad);
    assert_eq!((s1, s2), (400, 400), "influxdb: {b1}; sonde: {b2}");
    assert!(b2.contains("broken,k=v v="), "{b2}");

    wait_query(&influx, "via", "SELECT count(*) FROM ok", "2]", &a);
    wait_query(&influx, "via", "SELECT count(*) FROM equals", "1]", &a);
    let queries = [
        "SHOW MEASUREMENTS",
        "SHOW SERIES",
        "SHOW TAG KEYS",
        "SHOW FIELD KEYS",
        "SELECT * FROM /.*/",
        "SELECT * FROM cpu WHERE host = 'server 01'",
        "SELECT * FROM \"weird,name\" WHERE \"tag=key\" = 'tag,value'",
        "SELECT \"température\", emoji FROM unicode WHERE \"città\" = 'Zürich'",
        "SELECT * FROM paths WHERE dir = 'C:\\\\temp\\\\new'",
        "SELECT sum(x) FROM multi GROUP BY host",
        "SELECT * FROM ok",
    ];
    for q in queries {
        let direct = influxql(&influx, "direct", q);
        let via = influxql(&influx, "via", q);
        assert_eq!(direct, via, "{q}");
        assert!(direct.contains("\"values\""), "{q} found nothing: {direct}");
    }
}

#[test]
fn influxdb_v2_output_to_victoria_metrics_read_back_through_export() {
    let vm = servers::victoria_metrics();
    let dir = TempDir::new("influx-vm");
    let listen = format!("127.0.0.1:{}", free_port());
    let a = agent(
        &dir,
        &format!(
            r#"[[inputs.influxdb_v2_listener]]
  service_address = "{listen}"

[[outputs.influxdb_v2]]
  urls = ["{}"]
  token = "unused-by-vm"
  organization = "org"
  bucket = "executor"
"#,
            vm.url("")
        ),
    );
    wait_port(&listen, &a);
    // VictoriaMetrics drops samples outside its retention (a month): use recent times.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (t0, t1) = (now - 120, now - 60);
    let lines = format!(
        "scenario,name=checkout,step=pay duration_ms=182i,ok=true {t0}000000000\n\
         scenario,name=checkout,step=pay duration_ms=95i,ok=false {t1}000000000\n"
    );
    let (status, body) = post(
        &listen,
        "/api/v2/write?org=org&bucket=b&precision=ns",
        &lines,
    );
    assert_eq!(status, 204, "{body}");
    let mut got = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        let _ = request(&vm.addr, "GET", "/internal/force_flush", &[], b"");
        let path = format!(
            "/api/v1/export?match[]={}",
            enc("{__name__=~\"scenario_.*\"}")
        );
        got = request(&vm.addr, "GET", &path, &[], b"")
            .map(|r| r.1)
            .unwrap_or_default();
        got.lines().count() >= 2
    });
    assert!(ok, "VictoriaMetrics has: {got:?}\nsonde log:\n{}", a.log());
    let mut lines: Vec<serde_like::Series> = got.lines().map(serde_like::parse).collect();
    lines.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(lines[0].name, "scenario_duration_ms");
    assert_eq!(lines[0].values, vec![182.0, 95.0]);
    assert_eq!(lines[0].timestamps, vec![t0 * 1000, t1 * 1000]);
    assert!(
        lines[0]
            .labels
            .contains(&("name".into(), "checkout".into()))
    );
    assert!(lines[0].labels.contains(&("step".into(), "pay".into())));
    assert_eq!(lines[1].name, "scenario_ok");
    assert_eq!(lines[1].values, vec![1.0, 0.0]);
}

/// Just enough JSON reading for VictoriaMetrics' export lines, without a JSON dependency.
mod serde_like {
    pub struct Series {
        pub name: String,
        pub labels: Vec<(String, String)>,
        pub values: Vec<f64>,
        pub timestamps: Vec<i64>,
    }

    fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
        let i = s.find(start).unwrap() + start.len();
        let j = s[i..].find(end).unwrap() + i;
        &s[i..j]
    }

    pub fn parse(line: &str) -> Series {
        let metric = between(line, "\"metric\":{", "}");
        let mut name = String::new();
        let mut labels = Vec::new();
        for kv in metric.split(",\"") {
            let kv = kv.trim_start_matches('"');
            let (k, v) = kv.split_once("\":\"").unwrap();
            let v = v.trim_end_matches('"').to_string();
            if k == "__name__" {
                name = v;
            } else {
                labels.push((k.to_string(), v));
            }
        }
        let values = between(line, "\"values\":[", "]")
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        let timestamps = between(line, "\"timestamps\":[", "]")
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        Series {
            name,
            labels,
            values,
            timestamps,
        }
    }
}

#[test]
fn influxdb_v2_output_retries_a_429_splits_on_413_and_sends_the_token() {
    let server = Server::start(
        vec![
            Reply::status(429).with_header("Retry-After", "1"),
            Reply::status(413),
        ],
        Reply::status(204),
    );
    let dir = TempDir::new("influx-v2-local");
    let listen = format!("127.0.0.1:{}", free_port());
    let a = agent(
        &dir,
        &format!(
            r#"[[inputs.influxdb_listener]]
  service_address = "{listen}"

[[outputs.influxdb_v2]]
  urls = ["{}"]
  token = "s3cret-token"
  organization = "org"
  bucket = "b"
  content_encoding = "identity"
"#,
            server.url("")
        ),
    );
    wait_port(&listen, &a);
    let lines: String = (0..10).map(|i| format!("m v={i}i {i}\n")).collect();
    assert_eq!(post(&listen, "/write", &lines).0, 204);
    let ok = wait_until(Duration::from_secs(10), || server.requests().len() >= 4);
    let reqs = server.requests();
    assert!(ok, "requests: {reqs:?}\nlog:\n{}", a.log());
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some("Token s3cret-token"))
    );
    assert_eq!(reqs[0].answered, 429);
    assert_eq!(reqs[1].answered, 413);
    assert_eq!(reqs[1].text().lines().count(), 10);
    assert_eq!(reqs[2].text().lines().count(), 5);
    assert_eq!(reqs[3].text().lines().count(), 5);
    let all: Vec<String> = reqs[2..4]
        .iter()
        .flat_map(|r| r.text().lines().map(String::from).collect::<Vec<_>>())
        .collect();
    let want: Vec<String> = lines.lines().map(String::from).collect();
    assert_eq!(
        all, want,
        "the two halves carry every metric once, in order"
    );
}

#[test]
fn python_influxdb_client_writes_to_the_v2_listener() {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: run tests/setup.sh (it installs influxdb-client into tests/.venv)"
    );
    let dir = TempDir::new("influx-py");
    let listen = format!("127.0.0.1:{}", free_port());
    let out = dir.join("out.lp");
    let a = agent(
        &dir,
        &format!(
            r#"[[inputs.influxdb_v2_listener]]
  service_address = "{listen}"
  token = "py-token"
  bucket_tag = "bucket"

[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    wait_port(&listen, &a);
    let script = dir.write(
        "client.py",
        &format!(
            r#"
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
with InfluxDBClient(url="http://{listen}", token="py-token", org="acme") as c:
    w = c.write_api(write_options=SYNCHRONOUS)
    w.write(bucket="jobs", record=Point("job").tag("name", "nightly build").field("duration", 12.5).field("exit", 0).time(1700000000, WritePrecision.S))
    w.write(bucket="jobs", record="job,name=lint duration=1.5,exit=1i 1700000001000000000")
    print("ok")
"#
        ),
    );
    let r = std::process::Command::new(python)
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        r.status.success() && String::from_utf8_lossy(&r.stdout).contains("ok"),
        "python client failed: {}\n{}",
        String::from_utf8_lossy(&r.stderr),
        a.log()
    );
    let mut written = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        written = std::fs::read_to_string(&out).unwrap_or_default();
        written.lines().count() >= 2
    });
    assert!(ok, "file has {written:?}; log:\n{}", a.log());
    assert_eq!(
        sorted_lines(&written),
        [
            "job,bucket=jobs,name=lint duration=1.5,exit=1i 1700000001000000000",
            "job,bucket=jobs,name=nightly\\ build duration=12.5,exit=0i 1700000000000000000",
        ]
    );
}

#[test]
fn statsd_udp_packets_become_telegraf_shaped_aggregates() {
    let dir = TempDir::new("statsd");
    let port = free_port();
    let out = dir.join("out.lp");
    let a = agent(
        &dir,
        &format!(
            r#"[[inputs.statsd]]
  service_address = "127.0.0.1:{port}"
  flush_interval = "300ms"
  percentiles = [90.0]
  parse_data_dog_tags = true

[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    let ok = wait_until(Duration::from_secs(10), || {
        a.log().contains("statsd listening")
    });
    assert!(ok, "log:\n{}", a.log());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{port}");
    sock.send_to(
        b"jobs.done:1|c|#env:ci\njobs.done:4|c|@0.5|#env:ci",
        &target,
    )
    .unwrap();
    sock.send_to(b"queue.depth:10|g\nqueue.depth:-3|g", &target)
        .unwrap();
    let timings: String = (1..=10).map(|i| format!("step.time:{i}|ms\n")).collect();
    sock.send_to(timings.as_bytes(), &target).unwrap();
    sock.send_to(b"users:alice|s\nusers:bob|s\nusers:alice|s", &target)
        .unwrap();
    let mut written = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        written = std::fs::read_to_string(&out).unwrap_or_default();
        written.lines().count() >= 4
    });
    assert!(ok, "file has {written:?}; log:\n{}", a.log());
    let strip_time = |l: &str| l.rsplit_once(' ').unwrap().0.to_string();
    let mut got: Vec<String> = written.lines().map(strip_time).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "jobs_done,env=ci,metric_type=counter value=9i",
            "queue_depth,metric_type=gauge value=7",
            "step_time,metric_type=timing mean=5.5,median=5.5,stddev=2.8722813232690143,sum=55,upper=10,lower=1,count=10i,90_percentile=10",
            "users,metric_type=set value=2i",
        ]
    );
}
