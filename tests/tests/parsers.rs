//! End-to-end: the `data_format` parsers and the influx serializer as Telegraf's, with the real
//! binary and a real InfluxDB 1.x.
//! - line protocol with tricky escapes lands in InfluxDB through sonde (influxdb_listener →
//!   outputs.influxdb) exactly as when written to InfluxDB directly;
//! - outputs.http in the influx data format into InfluxDB 1.x's /write lands every metric,
//!   unsigned fields included (written as Telegraf does by default, `influx_uint_support =
//!   false`);
//! - json (Go time layouts, json_timezone, json_strict), value (base64, auto_integer),
//!   openmetrics and prometheus (metric versions) through `inputs.exec --test`.

use std::time::Duration;

use sonde_tests::servers::{self, Proc, free_port, influxql, request};
use sonde_tests::{Agent, TempDir, run, sorted_lines, wait_until};

fn agent(dir: &TempDir, body: &str) -> Agent {
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  omit_hostname = true\n  interval = \"1s\"\n  flush_interval = \"100ms\"\n\n{body}"
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

fn create_db(influx: &Proc, db: &str) {
    let q = format!(
        "/query?q={}",
        servers::enc(&format!("CREATE DATABASE {db}"))
    );
    let (status, body) = request(&influx.addr, "POST", &q, &[], b"").unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Lines whose escapes InfluxDB 1.x and Telegraf read in their own way (a separator after a
/// backslash is escaped, `\\` is kept as two characters in names, keys and tags, `\"` is a
/// quote in field keys only; tabs are whitespace between sections). Every line is accepted by
/// InfluxDB.
const TRICKY: &str = r#"esc,t=a\\\ b f=1 1000000000
esc,t=a\\ b f=2 2000000000
esc,t=a\\=b f=3 3000000000
esc,t=a\b,u=a\"b f=4 4000000000
esc,t=a\\\,b f=5 5000000000
esc,t=C:\temp\dir,sp=C:\Program\ Files\ x f=6 6000000000
esc\\x,t=x f=1 1000000000
esc\"x f=1 1000000000
esc2 f\"k=1,f\\\=k=2,f\ k=3,s="a\\b",s2="a\b",s3="a\\\"b",s4="tab	and \\\\" 1000000000
esc\ space\,comma,k\ ey=v\,al,k\=2=v\=2 f=1i 1000000000
esc3,t=é\ ✓ f=true 1000000000
esc4,t=x 	 f=1 1000000000
esc4,t=y f=2 	2000000000
"#;

#[test]
fn escapes_land_in_influxdb_as_if_written_directly() {
    let influx = servers::influxd();
    create_db(&influx, "direct");
    let (status, body) = request(
        &influx.addr,
        "POST",
        "/write?db=direct",
        &[],
        TRICKY.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 204, "InfluxDB itself refused the lines: {body}");

    let dir = TempDir::new("parsers-escapes");
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
    let (status, body) = request(&listen, "POST", "/write", &[], TRICKY.as_bytes()).unwrap();
    assert_eq!(status, 204, "{body}");

    let queries = [
        "SHOW MEASUREMENTS",
        "SHOW SERIES",
        "SHOW FIELD KEYS",
        "SHOW TAG KEYS",
        "SELECT * FROM /.*/",
    ];
    let want: Vec<String> = queries
        .iter()
        .map(|q| influxql(&influx, "direct", q))
        .collect();
    // Spot checks that the direct write means what the escapes say (so the comparison below
    // compares something).
    assert!(want[1].contains(r#""esc,t=a\\\\ b""#), "{}", want[1]);
    assert!(want[4].contains(r#""a\\ b""#), "{}", want[4]);
    assert!(want[4].contains(r#""f\"k""#), "{}", want[4]);
    let mut got = Vec::new();
    let ok = wait_until(Duration::from_secs(15), || {
        got = queries
            .iter()
            .map(|q| influxql(&influx, "via", q))
            .collect();
        got == want
    });
    for (q, (g, w)) in queries.iter().zip(got.iter().zip(&want)) {
        assert_eq!(g, w, "{q} differs via sonde; log:\n{}", a.log());
    }
    assert!(ok);
}

#[test]
fn http_output_in_influx_format_lands_unsigned_fields_in_influxdb_1x() {
    let influx = servers::influxd();
    create_db(&influx, "web");
    let dir = TempDir::new("parsers-http-uint");
    let listen = format!("127.0.0.1:{}", free_port());
    let a = agent(
        &dir,
        &format!(
            r#"[[inputs.influxdb_listener]]
  service_address = "{listen}"

[[inputs.mem]]

[[outputs.http]]
  url = "{}"
  data_format = "influx"
"#,
            influx.url("/write?db=web")
        ),
    );
    wait_port(&listen, &a);
    let mut lines = String::new();
    for i in 0..200u64 {
        lines.push_str(&format!(
            "jobs,n={i} done={i}u,big=18446744073709551615u,ratio=0.5,ok=true {}\n",
            1_700_000_000_000_000_000u64 + i * 1_000_000_000
        ));
    }
    let (status, body) = request(&listen, "POST", "/write", &[], lines.as_bytes()).unwrap();
    assert_eq!(status, 204, "{body}");
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(15), || {
        last = influxql(&influx, "web", "SELECT count(done) FROM jobs");
        last.contains(",200]")
    });
    assert!(
        ok,
        "not every metric landed: {last}; sonde log:\n{}",
        a.log()
    );
    let one = influxql(&influx, "web", "SELECT done, big FROM jobs WHERE n = '7'");
    assert!(
        one.contains(",7,9223372036854775807]"),
        "unsigned written as Telegraf does (signed, clamped): {one}"
    );
    let fields = influxql(&influx, "web", "SHOW FIELD KEYS FROM jobs");
    assert!(fields.contains(r#"["done","integer"]"#), "{fields}");
    // inputs.mem's unsigned fields land too.
    let mut mem = String::new();
    let ok = wait_until(Duration::from_secs(15), || {
        mem = influxql(&influx, "web", "SHOW FIELD KEYS FROM mem");
        mem.contains(r#"["total","integer"]"#)
    });
    assert!(ok, "mem: {mem}; sonde log:\n{}", a.log());
    // Not a bare "400": log timestamps and durations hold those digits too.
    assert!(
        !a.log().contains("rejected permanently"),
        "a batch was rejected: {}",
        a.log()
    );
}

#[test]
fn data_formats_through_exec_test_mode() {
    let dir = TempDir::new("parsers-exec");
    let json = dir.write(
        "x.json",
        r#"[{"name":"a","when":"04/06/2016 12:41:45","v":1,"ok":true,"n":null,"id":7},
            {"name":"b","when":"04/06/2016 12:41:46","v":2,"ok":false,"id":8}]"#,
    );
    let bad_json = dir.write(
        "bad.json",
        r#"[{"when":"04/06/2016 12:41:45","v":1},{"when":"not a time","v":2}]"#,
    );
    let blob = dir.write("blob.bin", "hi\n");
    let word = dir.write("word.txt", "status: up\n");
    let om = dir.write(
        "om.txt",
        "# TYPE jobs counter\n# UNIT jobs seconds\njobs_total{q=\"a\"} 3 1700000002.0\njobs_created{q=\"a\"} 1600000000\n# TYPE st stateset\nst{st=\"ready\"} 1\n# EOF\n",
    );
    let prom = dir.write(
        "prom.txt",
        "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 4 1700000000000\nrpc_sum 10 1700000000000\nrpc_count 3 1700000000000\n",
    );
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  omit_hostname = true

[[inputs.exec]]
  commands = ["cat {json}"]
  data_format = "json"
  json_name_key = "name"
  tag_keys = ["id"]
  json_string_fields = ["ok"]
  json_time_key = "when"
  json_time_format = "01/02/2006 15:04:05"
  json_timezone = "America/New_York"

[[inputs.exec]]
  commands = ["cat {bad_json}"]
  data_format = "json"
  name_override = "lenient"
  json_strict = false
  json_time_key = "when"
  json_time_format = "01/02/2006 15:04:05"

[[inputs.exec]]
  commands = ["cat {bad_json}"]
  data_format = "json"
  name_override = "strict"
  json_time_key = "when"
  json_time_format = "01/02/2006 15:04:05"

[[inputs.exec]]
  commands = ["cat {blob}"]
  data_format = "value"
  data_type = "base64"
  name_override = "b64"

[[inputs.exec]]
  commands = ["cat {word}"]
  data_format = "value"
  data_type = "auto_integer"
  value_field_name = "state"
  name_override = "auto"

[[inputs.exec]]
  commands = ["cat {om}"]
  data_format = "openmetrics"
  openmetrics_metric_version = 1

[[inputs.exec]]
  commands = ["cat {om}"]
  data_format = "openmetrics"

[[inputs.exec]]
  commands = ["cat {prom}"]
  data_format = "prometheus"
  prometheus_ignore_timestamp = true

[[inputs.exec]]
  commands = ["cat {prom}"]
  data_format = "prometheus"
  prometheus_metric_version = 1
"#,
            json = json.display(),
            bad_json = bad_json.display(),
            blob = blob.display(),
            word = word.display(),
            om = om.display(),
            prom = prom.display(),
        ),
    );
    let r = run(&["--config", cfg.to_str().unwrap(), "--test"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let lines = sorted_lines(&r.stdout);
    let has = |want: &str| {
        assert!(
            lines.iter().any(|l| l == want),
            "missing {want:?} in:\n{}\nstderr:\n{}",
            r.stdout,
            r.stderr
        )
    };
    // 12:41:45 in New York (EDT) is 16:41:45 UTC.
    has("a,id=7 ok=true,v=1 1459960905000000000");
    has("b,id=8 ok=false,v=2 1459960906000000000");
    has("lenient v=1 1459946505000000000");
    assert!(
        !lines.iter().any(|l| l.starts_with("strict")),
        "json_strict drops the whole array: {}",
        r.stdout
    );
    assert!(r.stderr.contains("json_strict"), "{}", r.stderr);
    has(&format!("b64 value=\"aGkK\" {}", time_of(&lines, "b64")));
    has(&format!("auto state=\"up\" {}", time_of(&lines, "auto")));
    has("jobs,q=a,unit=seconds counter=3 1700000002000000000");
    has(&format!("st ready=true {}", time_of(&lines, "st ")));
    has("openmetric,q=a,unit=seconds jobs=3 1700000002000000000");
    has(&format!(
        "openmetric st_ready=true {}",
        time_of(&lines, "openmetric st_")
    ));
    let now_rpc = time_of(&lines, "prometheus rpc_count");
    assert_ne!(now_rpc, "1700000000000000000", "ignored timestamp");
    has(&format!("prometheus rpc_count=3,rpc_sum=10 {now_rpc}"));
    has(&format!("prometheus,quantile=0.5 rpc=4 {now_rpc}"));
    has("rpc 0.5=4,sum=10,count=3 1700000000000000000");
}

/// The timestamp of the first line starting with `prefix`.
fn time_of(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no line {prefix:?} in {lines:?}"))
        .to_string()
}
