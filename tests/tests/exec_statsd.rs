//! Telegraf's `inputs.exec` and `inputs.statsd` options, end to end: the built binary runs
//! real scripts and receives real UDP and TCP statsd traffic, and `outputs.file` writes what
//! comes out as line protocol.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use sonde_tests::servers::free_port;
use sonde_tests::{Agent, TempDir, wait_until};

/// The output file's lines without their timestamps.
fn lines_without_time(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| match l.rsplit_once(' ') {
            Some((rest, ts)) if ts.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
            _ => l.to_string(),
        })
        .collect()
}

#[test]
fn exec_array_commands_ignore_error_and_log_stderr() {
    let dir = TempDir::new("exec-options");
    // One metric per argument: an argument with spaces must arrive as one argument.
    let args = dir.script(
        "args.sh",
        r#"i=0
for a in "$@"; do
  i=$((i+1))
  e=$(printf %s "$a" | sed 's/"/\\"/g')
  printf 'exec_args,pos=%d text="%s",len=%di\n' "$i" "$e" "${#a}"
done"#,
    );
    let lenient = dir.script(
        "lenient.sh",
        "echo 'partial value=1i'\necho 'W! disk almost full' >&2\necho 'plain stderr line' >&2\nexit 1",
    );
    let strict = dir.script(
        "strict.sh",
        "echo 'strict value=1i'\necho 'strict failed' >&2\nexit 1",
    );
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  interval = "1s"
  flush_interval = "1s"
  omit_hostname = true

[[inputs.exec]]
  commands = [["{args}", "two words", "it's \"quoted\"", ""]]
  data_format = "influx"

[[inputs.exec]]
  commands = [["{lenient}"]]
  ignore_error = true
  log_stderr = true
  data_format = "influx"

[[inputs.exec]]
  command = "{strict}"
  log_stderr = true
  data_format = "influx"

[[outputs.file]]
  files = ["{out}"]
"#,
            args = args.display(),
            lenient = lenient.display(),
            strict = strict.display(),
            out = out.display(),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let want = [
        r#"exec_args,pos=1 text="two words",len=9i"#,
        r#"exec_args,pos=2 text="it's \"quoted\"",len=13i"#,
        "partial value=1i",
    ];
    let ok = wait_until(Duration::from_secs(15), || {
        let got = lines_without_time(&out);
        want.iter().all(|w| got.iter().any(|l| l == w))
    });
    let got = lines_without_time(&out);
    assert!(ok, "missing {want:?} in {got:#?}\nlog:\n{}", agent.log());
    // The empty third argument is passed too (len=0), not dropped by any splitting.
    assert!(
        got.iter().any(|l| l.starts_with("exec_args,pos=3 ")),
        "{got:#?}"
    );
    // Without ignore_error a non-zero exit parses nothing (Telegraf) and is an error.
    assert!(!got.iter().any(|l| l.starts_with("strict")), "{got:#?}");
    agent.wait_log("strict failed", 1, Duration::from_secs(5));
    let log = agent.log();
    assert!(log.contains("exit status: 1"), "{log}");
    // log_stderr: the W! prefix logs at warning level without the prefix; a plain line at
    // error level. A failed command's stderr is not logged line by line (it is in the error).
    let line_with = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{log}"))
            .to_string()
    };
    let warn = line_with("disk almost full");
    assert!(warn.contains("WARN") && !warn.contains("W! "), "{warn}");
    assert!(line_with("plain stderr line").contains("ERROR"));
    // The deprecated single command works and says so at startup.
    assert!(log.contains("\"command\" is deprecated"), "{log}");
}

#[test]
fn statsd_udp_and_tcp_with_datadog_templates_and_names() {
    let dir = TempDir::new("statsd-options");
    let (udp, tcp) = (free_port(), free_port());
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  interval = "1s"
  flush_interval = "1s"
  omit_hostname = true

[[inputs.statsd]]
  protocol = "udp"
  service_address = "127.0.0.1:{udp}"
  datadog_extensions = true
  datadog_distributions = true
  templates = ["api.* measurement.host.field region=eu"]
  percentiles = [90]
  read_buffer_size = 262144

[[inputs.statsd]]
  protocol = "tcp"
  service_address = "127.0.0.1:{tcp}"
  tcp_keep_alive = true
  tcp_keep_alive_period = "30s"
  datadog_extensions = true
  convert_names = true
  sanitize_name_method = "upstream"
  float_counters = true
  number_workers_threads = 2

[[outputs.file]]
  files = ["{out}"]
"#,
            out = out.display(),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    agent.wait_log("statsd listening on UDP", 1, Duration::from_secs(15));
    agent.wait_log("statsd listening on TCP", 1, Duration::from_secs(15));

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(
        b"api.web1.latency:12|ms|#team:core\napi.web1.hits:3|c|#team:core\n\
          lat:7.5|d|#svc:pay\nlat:2|d|#svc:pay\n_sc|db|2|m:down\n_e{5,2}:alert|hi|t:error",
        format!("127.0.0.1:{udp}"),
    )
    .unwrap();
    let mut conn = TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    conn.write_all(b"web.req-count:2|c|#env:prod\nweb/my jobs:1|c\nweb.req-count:3|c|#env:prod\n")
        .unwrap();
    conn.flush().unwrap();

    let want = [
        "api,host=web1,metric_type=counter,region=eu,team=core hits=3i",
        "lat,metric_type=distribution,svc=pay value=7.5",
        "lat,metric_type=distribution,svc=pay value=2",
        r#"statsd_service_check,check_name=db,source=127.0.0.1 status=2i,status_text="critical",message="down""#,
        r#"alert,source=127.0.0.1 alert_type="error",text="hi",priority="normal""#,
        // upstream sanitising ("/" → "-", the space → "_"), then convert_names ("-" → "__").
        "web__my_jobs,metric_type=counter value=1",
    ];
    // convert_names: '.' → '_', '-' → '__'; float_counters; the DataDog tag. The two TCP
    // lines are two messages: an emission may fall between them, so sum what came.
    let tcp_sum = |got: &[String]| -> f64 {
        got.iter()
            .filter_map(|l| l.strip_prefix("web_req__count,env=prod,metric_type=counter value="))
            .map(|v| v.parse::<f64>().expect("a float counter"))
            .sum()
    };
    let ok = wait_until(Duration::from_secs(15), || {
        let got = lines_without_time(&out);
        want.iter().all(|w| got.iter().any(|l| l == w))
            && got
                .iter()
                .any(|l| l.starts_with("api,host=web1,metric_type=timing"))
            && tcp_sum(&got) == 5.0
    });
    let got = lines_without_time(&out);
    assert!(
        ok,
        "missing some of {want:?} in {got:#?}\nlog:\n{}",
        agent.log()
    );
    // The template's field prefixes the timing statistics.
    let timing = got
        .iter()
        .find(|l| l.starts_with("api,host=web1,metric_type=timing,region=eu,team=core "))
        .unwrap();
    for f in [
        "latency_mean=12",
        "latency_count=1i",
        "latency_90_percentile=12",
    ] {
        assert!(timing.contains(f), "{f} not in {timing}");
    }
    // Aggregates come on the 1 s interval (not the agent's default 10 s): a second packet
    // shows up within a few seconds.
    sock.send_to(b"api.web1.hits:4|c", format!("127.0.0.1:{udp}"))
        .unwrap();
    let ok = wait_until(Duration::from_secs(5), || {
        lines_without_time(&out)
            .iter()
            .any(|l| l == "api,host=web1,metric_type=counter,region=eu hits=4i")
    });
    assert!(
        ok,
        "second emission missing: {:#?}",
        lines_without_time(&out)
    );
    // delete_counters (the default): the first counter went out in one emission only.
    let got = lines_without_time(&out);
    let first = "api,host=web1,metric_type=counter,region=eu,team=core hits=3i";
    assert_eq!(got.iter().filter(|l| *l == first).count(), 1, "{got:#?}");
}

#[test]
fn statsd_options_that_cannot_apply_warn_at_startup() {
    let dir = TempDir::new("statsd-warn");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[[inputs.statsd]]
  protocol = "udp"
  service_address = "127.0.0.1:{}"
  tcp_keep_alive = true
  datadog_distributions = true

[[outputs.discard]]
"#,
            free_port()
        ),
    );
    let r = sonde_tests::run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("tcp_keep_alive has no effect with protocol \"udp\""),
        "{all}"
    );
    assert!(
        all.contains("datadog_distributions has no effect without datadog_extensions"),
        "{all}"
    );
    let bad = dir.write(
        "bad.toml",
        "[[inputs.statsd]]\n  sanitize_name_method = \"lowercase\"\n[[outputs.discard]]\n",
    );
    let r = sonde_tests::run(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("sanitize_name_method"), "{}", r.stderr);
}
