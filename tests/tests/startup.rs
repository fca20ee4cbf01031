//! Startup tells the truth: the plugins loaded, warnings raised while loading, a listener that
//! cannot bind (startup_error_behavior), and configurations that would run nothing.

use std::net::TcpListener;
use std::time::Duration;

use sonde_tests::servers::{free_port, get, request};
use sonde_tests::{Agent, TempDir, run, wait_until};

fn config(dir: &TempDir, body: &str) -> String {
    dir.write("sonde.toml", body).display().to_string()
}

#[test]
fn a_busy_port_stops_sonde_with_a_clear_message() {
    let dir = TempDir::new("busy");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = config(
        &dir,
        &format!(
            "[[inputs.influxdb_listener]]\n  service_address = \"{addr}\"\n[[outputs.discard]]\n"
        ),
    );
    let r = run(&["--config", &cfg]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "inputs.influxdb_listener: cannot listen on {addr}: Address already in use"
        )),
        "{}",
        r.stderr
    );
    // The endpoint of an output too.
    let cfg = config(
        &dir,
        &format!("[[inputs.mem]]\n[[outputs.prometheus_client]]\n  listen = \"{addr}\"\n"),
    );
    let r = run(&["--config", &cfg]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("outputs.prometheus_client: cannot listen on"),
        "{}",
        r.stderr
    );
}

#[test]
fn retry_keeps_running_and_listens_once_the_port_is_free() {
    let dir = TempDir::new("retry");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let scrape = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  flush_interval = \"100ms\"\n  omit_hostname = true\n\
             [[inputs.influxdb_listener]]\n  service_address = \"{addr}\"\n  interval = \"200ms\"\n\
               startup_error_behavior = \"retry\"\n\
             [[outputs.prometheus_client]]\n  listen = \"127.0.0.1:{scrape}\"\n"
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    agent.wait_log_line(
        &["cannot start; retrying", "Address already in use"],
        Duration::from_secs(10),
    );
    // Still running, and the rest of it serves.
    let up = wait_until(Duration::from_secs(10), || {
        get(&format!("http://127.0.0.1:{scrape}/metrics")).is_ok_and(|(s, _)| s == 200)
    });
    assert!(up, "{}", agent.log());
    drop(taken);
    agent.wait_log("started after retrying", 1, Duration::from_secs(10));
    let a = addr.to_string();
    let accepted = wait_until(Duration::from_secs(10), || {
        matches!(
            request(&a, "POST", "/write", &[], b"late v=1i 1"),
            Ok((204, _))
        )
    });
    assert!(accepted, "{}", agent.log());
    let served = wait_until(Duration::from_secs(10), || {
        get(&format!("http://127.0.0.1:{scrape}/metrics"))
            .is_ok_and(|(_, body)| body.contains("late_v 1"))
    });
    assert!(served, "{}", agent.log());
}

#[test]
fn ignore_runs_without_the_plugin_that_cannot_start() {
    let dir = TempDir::new("ignore");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let scrape = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  interval = \"200ms\"\n  flush_interval = \"100ms\"\n\
             [[inputs.statsd]]\n  protocol = \"tcp\"\n  service_address = \"{addr}\"\n\
               startup_error_behavior = \"ignore\"\n\
             [[inputs.mem]]\n\
             [[outputs.prometheus_client]]\n  listen = \"127.0.0.1:{scrape}\"\n"
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    agent.wait_log_line(
        &["inputs.statsd", "running without it"],
        Duration::from_secs(10),
    );
    let served = wait_until(Duration::from_secs(10), || {
        get(&format!("http://127.0.0.1:{scrape}/metrics"))
            .is_ok_and(|(_, body)| body.contains("mem_total"))
    });
    assert!(served, "{}", agent.log());
}

#[test]
fn the_first_lines_list_the_plugins_and_warnings_raised_while_loading() {
    let dir = TempDir::new("truth");
    let scrape = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[[inputs.mem]]\n[[inputs.system]]\n  alias = \"sys\"\n\
             [[inputs.http_response]]\n  address = \"http://127.0.0.1:{scrape}/metrics\"\n\
             [[processors.rename]]\n\
             [[outputs.prometheus_client]]\n  listen = \"127.0.0.1:{scrape}\"\n"
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    agent.wait_log("started", 1, Duration::from_secs(10));
    let log = agent.log();
    let lines: Vec<&str> = log.lines().collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
    };
    assert!(lines[pos("loaded inputs:")].ends_with("loaded inputs: http_response mem system::sys"));
    assert!(lines[pos("loaded processors:")].ends_with("loaded processors: rename"));
    assert!(lines[pos("loaded aggregators:")].ends_with("loaded aggregators: none"));
    assert!(lines[pos("loaded outputs:")].ends_with("loaded outputs: prometheus_client"));
    let warning = pos("`address` is deprecated, use `urls`");
    assert!(lines[warning].contains("WARN"));
    assert!(
        warning < pos("started"),
        "said before the agent runs:\n{log}"
    );

    // config check says it too, and still passes.
    let r = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: http_response: `address` is deprecated, use `urls`"),
        "{}",
        r.stderr
    );
}

#[test]
fn config_check_refuses_what_could_never_run() {
    let dir = TempDir::new("never");
    let check = |body: &str, args: &[&str]| {
        let cfg = config(&dir, body);
        let mut all = vec!["config", "check", "--config", cfg.as_str()];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, Some(1), "{body} was accepted: {}", r.stdout);
        r.stderr
    };
    let e = check(
        "[[inputs.influxdb_listener]]\n  service_address = \"8186\"\n[[outputs.discard]]\n",
        &[],
    );
    assert!(
        e.contains("sonde.toml:2:21: inputs.influxdb_listener[0]: service_address"),
        "{e}"
    );
    assert!(e.contains("write host:port"), "{e}");
    let e = check(
        "[[inputs.statsd]]\n  service_address = \"localhost\"\n[[outputs.discard]]\n",
        &[],
    );
    assert!(e.contains("service_address"), "{e}");
    let e = check("[[outputs.discard]]\n", &[]);
    assert!(e.contains("no inputs in the configuration"), "{e}");
    let e = check("[[inputs.mem]]\n", &[]);
    assert!(e.contains("no outputs in the configuration"), "{e}");
    let e = check(
        "[[inputs.mem]]\n[[outputs.discard]]\n",
        &["--input-filter", "mem:cpu"],
    );
    assert!(
        e.contains("--input-filter: the configuration has no inputs.cpu"),
        "{e}"
    );

    // --test needs no output.
    let cfg = config(&dir, "[[inputs.mem]]\n");
    let r = run(&["--test", "--config", &cfg]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.starts_with("mem,"), "{}", r.stdout);
}
