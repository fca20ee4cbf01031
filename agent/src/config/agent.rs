//! `[agent]`: sonde's options, plus Telegraf's other agent keys accepted as no-ops so a real
//! Telegraf config runs unchanged.

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
];

/// Telegraf agent keys sonde accepts and ignores.
pub const IGNORED_AGENT_KEYS: &[&str] = &[
    "utc",
    "flush_buffer_when_full",
    "logtarget",
    "log_level",
    "structured_log_message_key",
    "logfile_rotation_interval",
    "logfile_rotation_max_size",
    "logfile_rotation_max_archives",
    "log_with_timezone",
    "skip_processors_after_aggregators",
    "snmp_translator",
    "statefile",
    "always_include_local_tags",
    "always_include_global_tags",
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
    set!(precision, duration);
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
    for key in IGNORED_AGENT_KEYS {
        if sec.table.remove(*key).is_some() {
            tracing::debug!("[agent] {key} is a Telegraf option sonde ignores");
        }
    }
    let known: Vec<&str> = AGENT_KEYS
        .iter()
        .chain(IGNORED_AGENT_KEYS)
        .copied()
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
