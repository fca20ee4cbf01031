//! Telegraf's `[agent]` keys that change what comes out: where processors run around the
//! aggregators, tags that survive taginclude, `precision = ""`, and the keys that cannot apply
//! to sonde, which are accepted with a warning that says so.

use sonde_tests::{TempDir, run};

/// One input line `m v=1` through a rename processor and a minmax aggregator, with `agent`
/// as the `[agent]` section; returns the `--test` output lines, sorted.
fn processors_and_aggregators(agent: &str) -> Vec<String> {
    let dir = TempDir::new("agentopts");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  omit_hostname = true\n{agent}\n\
             [[inputs.exec]]\n  commands = [\"echo m v=1\"]\n  data_format = \"influx\"\n\
             [[processors.rename]]\n\
               [[processors.rename.replace]]\n    field = \"v\"\n    dest = \"w\"\n\
               [[processors.rename.replace]]\n    field = \"w_max\"\n    dest = \"top\"\n\
               [[processors.rename.replace]]\n    field = \"v_max\"\n    dest = \"vtop\"\n\
             [[aggregators.minmax]]\n  period = \"1h\"\n"
        ),
    );
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // "name fields time" -> "name fields" with the fields sorted (a rename keeps positions).
    let mut lines: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next().unwrap_or_default();
            let mut fields: Vec<&str> = parts.next().unwrap_or_default().split(',').collect();
            fields.sort();
            format!("{name} {}", fields.join(","))
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn processors_run_before_and_after_aggregators_as_configured() {
    // Default: processed before the aggregator (it sees w) and again after (w_max -> top).
    assert_eq!(processors_and_aggregators(""), ["m top=1,w_min=1", "m w=1"]);
    // skip_processors_after_aggregators: the aggregates are left as the aggregator made them.
    assert_eq!(
        processors_and_aggregators("  skip_processors_after_aggregators = true"),
        ["m w=1", "m w_max=1,w_min=1"]
    );
    // skip_processors_before_aggregators: the aggregator sees v; everything is processed
    // once, after it (Telegraf would leave the passing original unprocessed).
    assert_eq!(
        processors_and_aggregators("  skip_processors_before_aggregators = true"),
        ["m v_min=1,vtop=1", "m w=1"]
    );
    // Both: nothing would ever be processed; refused like Telegraf does.
    let dir = TempDir::new("agentopts-both");
    let cfg = dir.write(
        "sonde.toml",
        "[agent]\n  skip_processors_before_aggregators = true\n  skip_processors_after_aggregators = true\n[[inputs.mem]]\n",
    );
    let r = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("skip_processors_after_aggregators"),
        "{}",
        r.stderr
    );
}

#[test]
fn always_include_local_and_global_tags_survive_taginclude() {
    let dir = TempDir::new("agentopts-tags");
    let with = |agent: &str| {
        let cfg = dir.write(
            "sonde.toml",
            &format!(
                "[global_tags]\n  dc = \"eu\"\n[agent]\n  omit_hostname = true\n{agent}\n\
                 [[inputs.exec]]\n  commands = [\"echo m,src=x v=1 1700000000000000000\"]\n  \
                 data_format = \"influx\"\n  taginclude = [\"src\"]\n  [inputs.exec.tags]\n    team = \"ops\"\n"
            ),
        );
        let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.stdout.lines().next().unwrap_or_default().to_string()
    };
    assert!(with("").starts_with("m,src=x v=1"), "{}", with(""));
    assert!(
        with("  always_include_local_tags = true").starts_with("m,src=x,team=ops v=1"),
        "{}",
        with("  always_include_local_tags = true")
    );
    assert!(
        with("  always_include_global_tags = true").starts_with("m,dc=eu,src=x v=1"),
        "{}",
        with("  always_include_global_tags = true")
    );
}

#[test]
fn telegraf_agent_keys_are_taken_and_those_without_effect_say_so() {
    let dir = TempDir::new("agentopts-keys");
    let cfg = dir.write(
        "sonde.toml",
        "[agent]\n  precision = \"\"\n  buffer_strategy = \"disk_write_through\"\n  \
         buffer_directory = \"/tmp/sonde-agentopts-never-written\"\n  buffer_disk_sync = true\n  \
         statefile = \"\"\n  snmp_translator = \"netsnmp\"\n  logtarget = \"stderr\"\n  \
         logfile_rotation_max_size = \"10MB\"\n  config_url_retry_attempts = 3\n\
         [[inputs.mem]]\n[[outputs.discard]]\n",
    );
    let r = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for key in [
        "statefile",
        "snmp_translator",
        "logfile_rotation_max_size",
        "config_url_retry_attempts",
    ] {
        assert!(
            r.stderr.contains(&format!("{key} has no effect")),
            "no warning for {key}:\n{}",
            r.stderr
        );
    }
    assert!(
        !r.stderr.contains("logtarget"),
        "stderr is what sonde does:\n{}",
        r.stderr
    );
}

/// `log_level` on a plugin sets the level of that plugin's own messages: net_response says why
/// a probe failed at debug level, shown for it alone while the agent logs at info.
#[test]
fn a_plugins_log_level_applies_to_its_messages() {
    let dir = TempDir::new("agentopts-loglevel");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let log_of = |level: &str| {
        let cfg = dir.write(
            "sonde.toml",
            &format!(
                "[[inputs.net_response]]\n  protocol = \"tcp\"\n  address = \"127.0.0.1:{port}\"\n{level}\n\
                 [[outputs.discard]]\n"
            ),
        );
        // --once runs the gather and logs like the running agent (no --debug).
        let r = run(&["--once", "--config", cfg.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.stderr
    };
    let quiet = log_of("");
    assert!(!quiet.contains("net_response: "), "{quiet}");
    let verbose = log_of("  log_level = \"debug\"");
    assert!(
        verbose.contains("DEBUG") && verbose.contains("net_response: "),
        "{verbose}"
    );
    // Only that plugin's messages: the agent's own debug lines stay off.
    assert!(
        verbose
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .all(|l| l.contains("net_response")),
        "{verbose}"
    );
}
