//! Loading the TOML configuration: Telegraf's shape, `${VAR}` substitution, merged
//! `--config-directory` files, and errors that name file, line, column, plugin and key.

use std::path::PathBuf;
use std::time::Duration;

use sonde_plugins::plugin::{Aggregator, InputPlugin, Output, Processor};

use crate::filter::Filter;

/// `[agent]`.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub interval: Duration,
    pub round_interval: bool,
    pub collection_jitter: Duration,
    pub collection_offset: Duration,
    pub flush_interval: Duration,
    pub flush_jitter: Duration,
    pub metric_batch_size: usize,
    pub metric_buffer_limit: usize,
    /// Per-output byte bound on the buffer (sonde's addition; Telegraf bounds only by count).
    pub metric_buffer_limit_bytes: u64,
    /// Zero means: derived from the interval as Telegraf does (at most 1s).
    pub precision: Duration,
    pub hostname: String,
    pub omit_hostname: bool,
    pub debug: bool,
    pub quiet: bool,
    pub logfile: Option<PathBuf>,
    /// "text" or "json".
    pub logformat: String,
    /// How long shutdown waits for outputs to flush.
    pub shutdown_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            interval: Duration::from_secs(10),
            round_interval: true,
            collection_jitter: Duration::ZERO,
            collection_offset: Duration::ZERO,
            flush_interval: Duration::from_secs(10),
            flush_jitter: Duration::ZERO,
            metric_batch_size: 1000,
            metric_buffer_limit: 10000,
            metric_buffer_limit_bytes: 64 << 20,
            precision: Duration::ZERO,
            hostname: String::new(),
            omit_hostname: false,
            debug: false,
            quiet: false,
            logfile: None,
            logformat: "text".into(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The options every input accepts besides its own.
pub struct InputConfig {
    /// Plugin name, e.g. "exec".
    pub name: String,
    pub alias: Option<String>,
    /// Falls back to `[agent] interval`.
    pub interval: Duration,
    pub collection_jitter: Duration,
    pub collection_offset: Duration,
    pub precision: Duration,
    pub name_override: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    /// `[inputs.X.tags]`, sorted.
    pub tags: Vec<(String, String)>,
    pub filter: Filter,
    pub plugin: InputPlugin,
}

pub struct ProcessorConfig {
    pub name: String,
    pub alias: Option<String>,
    pub order: i64,
    pub filter: Filter,
    pub plugin: Box<dyn Processor>,
}

pub struct AggregatorConfig {
    pub name: String,
    pub alias: Option<String>,
    pub period: Duration,
    pub delay: Duration,
    pub grace: Duration,
    pub drop_original: bool,
    pub name_override: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub tags: Vec<(String, String)>,
    pub filter: Filter,
    pub plugin: Box<dyn Aggregator>,
}

pub struct OutputConfig {
    pub name: String,
    pub alias: Option<String>,
    pub flush_interval: Duration,
    pub flush_jitter: Duration,
    pub metric_batch_size: usize,
    pub metric_buffer_limit: usize,
    pub metric_buffer_limit_bytes: u64,
    pub filter: Filter,
    pub plugin: Box<dyn Output>,
    /// The plugin's table as written (after substitution), to tell whether a reload changed it.
    pub fingerprint: String,
}

/// A fully loaded configuration: every plugin built and ready to run.
pub struct Config {
    pub agent: AgentConfig,
    pub global_tags: Vec<(String, String)>,
    pub inputs: Vec<InputConfig>,
    /// Sorted by `order`, then config order.
    pub processors: Vec<ProcessorConfig>,
    pub aggregators: Vec<AggregatorConfig>,
    pub outputs: Vec<OutputConfig>,
}

/// Where the configuration comes from; kept so SIGHUP can load it again.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub files: Vec<PathBuf>,
    pub directories: Vec<PathBuf>,
}

/// Plugin selection from the CLI's `--input-filter` etc.; empty means all.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub processors: Vec<String>,
    pub aggregators: Vec<String>,
}

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/sonde.toml");
