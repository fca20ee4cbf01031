//! `[agent]`: sonde's options, plus Telegraf's other agent keys: those that cannot apply to
//! sonde are accepted with a startup warning that says so, so a real Telegraf config runs
//! unchanged and nothing is ignored silently.

use std::path::PathBuf;

use super::AgentConfig;
use super::section::Section;

/// The keys sonde acts on.
pub const AGENT_KEYS: &[&str] = &[
    "interval",
    "round_interval",
    "collection_jitter",
    "collection_offset",
    "flush_interval",
    "flush_jitter",
    "metric_batch_size",
    "metric_buffer_limit",
    "metric_buffer_limit_bytes",
    "precision",
    "hostname",
    "omit_hostname",
    "debug",
    "quiet",
    "logfile",
    "logformat",
    "shutdown_timeout",
    "buffer_strategy",
    "buffer_directory",
    "buffer_disk_limit",
    "buffer_disk_sync",
    "overflow",
    "skip_processors_before_aggregators",
    "skip_processors_after_aggregators",
    "always_include_local_tags",
    "always_include_global_tags",
    "logtarget",
    "log_with_timezone",
];

/// Telegraf agent keys that cannot apply to sonde, and why: accepted, with a warning.
pub const IGNORED_AGENT_KEYS: &[(&str, &str)] = &[
    (
        "utc",
        "sonde always logs in UTC (Telegraf removed this key)",
    ),
    (
        "flush_buffer_when_full",
        "outputs always write as soon as a batch is full (Telegraf removed this key)",
    ),
    (
        "structured_log_message_key",
        "sonde's JSON log lines keep the message under \"fields.message\"",
    ),
    (
        "logfile_rotation_interval",
        "sonde does not rotate its log file; log to journald or rotate with logrotate's copytruncate",
    ),
    (
        "logfile_rotation_max_size",
        "sonde does not rotate its log file; log to journald or rotate with logrotate's copytruncate",
    ),
    (
        "logfile_rotation_max_archives",
        "sonde does not rotate its log file; log to journald or rotate with logrotate's copytruncate",
    ),
    ("snmp_translator", "sonde has no SNMP plugins"),
    (
        "log_level",
        "sonde's log level is set by debug and quiet (and per plugin by log_level)",
    ),
    (
        "statefile",
        "no sonde plugin keeps state across restarts (the disk buffer keeps its own position)",
    ),
    (
        "config_url_retry_attempts",
        "sonde reads its configuration from files only, not from URLs",
    ),
];

/// Applies one file's `[agent]` over `agent`: keys it sets override earlier files.
pub fn apply(sec: &mut Section, agent: &mut AgentConfig) {
    macro_rules! set {
        ($field:ident, $getter:ident) => {
            if let Some(v) = sec.$getter(stringify!($field)) {
                agent.$field = v;
            }
        };
    }
    set!(interval, positive_duration);
    set!(round_interval, bool);
    set!(collection_jitter, duration);
    set!(collection_offset, duration);
    set!(flush_interval, positive_duration);
    set!(flush_jitter, duration);
    // Telegraf writes `precision = ""` for "not set" (derived from the interval).
    match sec.table.get("precision") {
        Some(toml::Value::String(p)) if p.is_empty() => {
            sec.table.remove("precision");
            agent.precision = std::time::Duration::ZERO;
        }
        _ => set!(precision, duration),
    }
    set!(hostname, string);
    set!(omit_hostname, bool);
    set!(debug, bool);
    set!(quiet, bool);
    set!(shutdown_timeout, duration);
    if let Some(n) = sec.count("metric_batch_size", 1) {
        agent.metric_batch_size = n;
    }
    if let Some(n) = sec.count("metric_buffer_limit", 1) {
        agent.metric_buffer_limit = n;
    }
    if let Some(n) = sec.size("metric_buffer_limit_bytes") {
        if n == 0 {
            sec.value_error("metric_buffer_limit_bytes", "must be more than zero".into());
        } else {
            agent.metric_buffer_limit_bytes = n;
        }
    }
    agent.buffer.apply(sec);
    if let Some(f) = sec.string("logfile") {
        agent.logfile = (!f.is_empty()).then(|| PathBuf::from(f));
    }
    if let Some(f) = sec.choice("logformat", &["text", "json", "structured"]) {
        // Telegraf's "structured" is its JSON-ish format.
        agent.logformat = if f == "structured" { "json".into() } else { f };
    }
    let before = sec
        .bool("skip_processors_before_aggregators")
        .map(|skip| !skip);
    let after = sec
        .bool("skip_processors_after_aggregators")
        .map(|skip| !skip);
    if before == Some(false) && after == Some(false) {
        sec.value_error(
            "skip_processors_after_aggregators",
            "cannot be true together with skip_processors_before_aggregators: processors would \
             never run"
                .into(),
        );
    }
    if let Some(b) = before {
        agent.processors_before_aggregators = b;
    }
    if let Some(a) = after {
        agent.processors_after_aggregators = a;
    }
    set!(always_include_local_tags, bool);
    set!(always_include_global_tags, bool);
    // sonde logs to `logfile` when one is set and to stderr otherwise, which is what
    // Telegraf's "file" and "stderr" mean; Windows' event log has no counterpart.
    if let Some(t) = sec.choice("logtarget", &["file", "stderr", "eventlog"])
        && t == "eventlog"
    {
        tracing::warn!(
            "[agent] logtarget = \"eventlog\" has no effect: sonde logs to stderr or logfile"
        );
    }
    if let Some(tz) = sec.string("log_with_timezone")
        && !tz.is_empty()
        && !tz.eq_ignore_ascii_case("utc")
    {
        tracing::warn!(
            "[agent] log_with_timezone = {tz:?} has no effect: sonde's log timestamps are in UTC"
        );
    }
    for (key, why) in IGNORED_AGENT_KEYS {
        if sec.table.remove(*key).is_some() {
            tracing::warn!("[agent] {key} has no effect: {why}");
        }
    }
    let known: Vec<&str> = AGENT_KEYS
        .iter()
        .copied()
        .chain(IGNORED_AGENT_KEYS.iter().map(|(k, _)| *k))
        .collect();
    sec.reject_unknown(&known);
}

/// The machine's hostname, for `[agent] hostname = ""`.
pub fn os_hostname() -> String {
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            return h.to_string();
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
