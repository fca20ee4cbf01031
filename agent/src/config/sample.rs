//! `sonde config`: a complete sample configuration built from each plugin's `sample.toml`.

use sonde_plugins::registry::Spec;

use super::{DEFAULT_CONFIG, Registry, Selection};

const HEADER: &str = r##"# sonde configuration
#
# Plugins are enabled by [[inputs.NAME]], [[processors.NAME]], [[aggregators.NAME]] and
# [[outputs.NAME]] tables; lines starting with "#" are comments.
#
# Environment variables can be used anywhere: "${VAR}", "${VAR:-default}",
# "${VAR:?error message}" (strings need the quotes; numbers and booleans do not).
#
# Every plugin also takes the common options: alias, and the filters namepass, namedrop,
# fieldinclude, fieldexclude, tagpass, tagdrop, taginclude, tagexclude; inputs also interval,
# precision, collection_jitter, collection_offset, name_override, name_prefix, name_suffix and
# [inputs.NAME.tags]; outputs flush_interval, flush_jitter, metric_batch_size,
# metric_buffer_limit, metric_buffer_limit_bytes and the buffer_* options and overflow.

# Tags added to every metric.
[global_tags]
  # dc = "us-east-1"
  # user = "${USER}"

# Configuration for the agent itself.
[agent]
  ## Default collection interval for all inputs.
  interval = "10s"
  ## Align collection to the interval: with "10s", collect at :00, :10, :20, …
  round_interval = true
  ## Sleep a random time up to this before each collection.
  collection_jitter = "0s"
  ## Shift every collection by this much.
  collection_offset = "0s"

  ## Outputs write batches of at most this many metrics.
  metric_batch_size = 1000
  ## Most unwritten metrics kept per output; the oldest are dropped beyond it.
  metric_buffer_limit = 10000
  ## Most memory each output's buffer may use (the encoded size of what it holds).
  metric_buffer_limit_bytes = "64MiB"

  ## Where outputs buffer unwritten metrics: "memory", or "disk" (segment files in a
  ## directory per output under buffer_directory, kept across restarts, crashes and
  ## kill -9; a stop keeps the backlog there for the next start).
  buffer_strategy = "memory"
  buffer_directory = "/var/lib/sonde/buffer"
  ## Most disk each output's disk buffer may use; beyond it the oldest segments are dropped.
  buffer_disk_limit = "1GiB"
  ## When disk buffer writes are forced to the disk: "always" (before a listener
  ## acknowledges them) or at most once per interval. A kill -9 loses nothing either way;
  ## a power loss may lose the last interval.
  buffer_disk_sync = "1s"
  ## What a full buffer does with metrics from a listener: "backpressure" refuses them
  ## (HTTP 429 with Retry-After, so the sender retries), "drop_oldest" takes them and drops
  ## the oldest buffered. Polled inputs cannot push back: for them the oldest are dropped.
  overflow = "backpressure"

  ## Default interval between writes for all outputs, and a random delay up to
  ## flush_jitter added to each.
  flush_interval = "10s"
  flush_jitter = "0s"

  ## Timestamps are rounded to this precision; "0s" (or "") derives it from the interval.
  precision = "0s"

  ## Override the hostname; empty uses the machine's.
  hostname = ""
  ## Do not add the "host" tag.
  omit_hostname = false

  ## Log at debug level / only errors.
  debug = false
  quiet = false
  ## Log to this file instead of stderr.
  logfile = ""
  ## "text" or "json".
  logformat = "text"
  ## Telegraf's "stderr" or "file" (file when logfile is set); "eventlog" has no effect.
  logtarget = "stderr"
  ## Log timestamps are in UTC; any other zone has no effect (with a warning).
  log_with_timezone = ""

  ## With aggregators, processors run on what the inputs gather before it reaches the
  ## aggregators, and again on the aggregates. Skip either run (not both).
  skip_processors_before_aggregators = false
  skip_processors_after_aggregators = false
  ## Keep the plugins' own `tags` / the global tags and host through taginclude/tagexclude.
  always_include_local_tags = false
  always_include_global_tags = false

  ## How long shutdown waits for outputs to write what they buffered.
  shutdown_timeout = "10s"
"##;

/// The sample configuration: header, `[global_tags]`, `[agent]` with every option and its
/// default, then the samples of the selected plugins. With nothing selected for a kind, every
/// plugin of that kind is printed, those of the embedded default enabled and the rest
/// commented out (as Telegraf does).
pub fn sample_config(selection: &Selection, registry: &Registry) -> String {
    let defaults: toml::Table = toml::from_str(DEFAULT_CONFIG).unwrap_or_default();
    let mut out = HEADER.to_string();
    section(
        &mut out,
        "INPUT PLUGINS",
        "inputs",
        registry.inputs,
        &selection.inputs,
        &defaults,
    );
    section(
        &mut out,
        "PROCESSOR PLUGINS",
        "processors",
        registry.processors,
        &selection.processors,
        &defaults,
    );
    section(
        &mut out,
        "AGGREGATOR PLUGINS",
        "aggregators",
        registry.aggregators,
        &selection.aggregators,
        &defaults,
    );
    section(
        &mut out,
        "OUTPUT PLUGINS",
        "outputs",
        registry.outputs,
        &selection.outputs,
        &defaults,
    );
    out
}

fn section<T>(
    out: &mut String,
    title: &str,
    kind: &str,
    specs: &[Spec<T>],
    selected: &[String],
    defaults: &toml::Table,
) {
    let in_default = |name: &str| defaults.get(kind).and_then(|k| k.get(name)).is_some();
    let chosen: Vec<&Spec<T>> = specs
        .iter()
        .filter(|s| selected.is_empty() || selected.iter().any(|n| n == s.name))
        .collect();
    if chosen.is_empty() {
        return;
    }
    out.push_str(&format!(
        "\n\n{}\n#{title:^77}#\n{}\n",
        "#".repeat(79),
        "#".repeat(79)
    ));
    for spec in chosen {
        let enabled = !selected.is_empty() || in_default(spec.name);
        out.push_str(&format!("\n# {}\n", spec.description));
        for line in spec.sample.trim_end().lines() {
            if !enabled && !line.trim().is_empty() {
                out.push_str("# ");
            }
            out.push_str(line);
            out.push('\n');
        }
    }
}
