//! Loading the TOML configuration: Telegraf's shape, `${VAR}` substitution, merged
//! `--config-directory` files, and errors that name file, line, column, plugin and key.

mod agent;
mod doc;
mod env;
#[cfg(test)]
mod fuzz_tests;
mod plugins;
mod sample;
mod section;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sonde_plugins::plugin::{Aggregator, InputPlugin, Output, Processor};
use sonde_plugins::registry::{AggregatorSpec, InputSpec, OutputSpec, ProcessorSpec};

use crate::filter::Filter;
use section::Section;

pub use doc::{ConfigError, Diagnostic};
pub use sample::sample_config;

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
    /// Per-plugin `log_level`s: (module path of the plugin, level), in config order.
    pub plugin_log_levels: Vec<(String, String)>,
    /// How long shutdown waits for outputs to flush.
    pub shutdown_timeout: Duration,
    /// The outputs' buffer defaults.
    pub buffer: BufferOptions,
    /// Where processors run when there are aggregators: before them (on what inputs gather)
    /// and after them (on the aggregates). Telegraf's `skip_processors_before_aggregators`
    /// and `skip_processors_after_aggregators` turn one off.
    pub processors_before_aggregators: bool,
    pub processors_after_aggregators: bool,
    /// Plugin `tags` / global tags (and `host`) survive taginclude and tagexclude.
    pub always_include_local_tags: bool,
    pub always_include_global_tags: bool,
}

/// Where an output buffers metrics: `buffer_strategy`.
#[derive(Clone, Debug, PartialEq)]
pub enum BufferStrategy {
    Memory,
    /// Segment files under `buffer_directory`, bounded by `buffer_disk_limit`.
    Disk {
        limit_bytes: u64,
        sync: crate::pipeline::SyncPolicy,
    },
}

/// What a full buffer does with a batch from a listener (`overflow`). Polled inputs cannot
/// push back: for them a full buffer always drops its oldest metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the batch: the listener answers 429 with Retry-After (statsd counts a drop).
    Backpressure,
    /// Accept it and drop the oldest buffered metrics.
    DropOldest,
}

/// The buffer options, set in `[agent]` and overridden per output.
#[derive(Clone, Debug)]
pub struct BufferOptions {
    pub disk: bool,
    pub directory: PathBuf,
    pub disk_limit: u64,
    pub disk_sync: crate::pipeline::SyncPolicy,
    pub overflow: Overflow,
}

impl Default for BufferOptions {
    fn default() -> Self {
        BufferOptions {
            disk: false,
            directory: PathBuf::from("/var/lib/sonde/buffer"),
            disk_limit: 1 << 30,
            disk_sync: crate::pipeline::SyncPolicy::Every(Duration::from_secs(1)),
            overflow: Overflow::Backpressure,
        }
    }
}

impl BufferOptions {
    /// Reads the buffer keys of `sec` over these values.
    pub(crate) fn apply(&mut self, sec: &mut section::Section) {
        // Telegraf's "disk_write_through" is its full name for "disk".
        if let Some(s) = sec.choice("buffer_strategy", &["memory", "disk", "disk_write_through"]) {
            self.disk = s != "memory";
        }
        if let Some(d) = sec.string("buffer_directory") {
            if d.is_empty() {
                sec.value_error("buffer_directory", "must not be empty".into());
            } else {
                self.directory = PathBuf::from(d);
            }
        }
        if let Some(n) = sec.size("buffer_disk_limit") {
            if n == 0 {
                sec.value_error("buffer_disk_limit", "must be more than zero".into());
            } else {
                self.disk_limit = n;
            }
        }
        // Telegraf's form is a bool: true syncs every write, false leaves syncing to the OS
        // (here: the periodic default, which bounds the loss to one interval).
        let sync = match sec.table.get("buffer_disk_sync") {
            Some(toml::Value::Boolean(b)) => {
                let b = *b;
                sec.table.remove("buffer_disk_sync");
                Some(if b {
                    "always".to_string()
                } else {
                    "1s".to_string()
                })
            }
            _ => sec.string("buffer_disk_sync"),
        };
        if let Some(v) = sync {
            match v.as_str() {
                "always" => self.disk_sync = crate::pipeline::SyncPolicy::Always,
                other => match sonde_plugins::config_types::parse_duration(other) {
                    Ok(d) if !d.is_zero() => self.disk_sync = crate::pipeline::SyncPolicy::Every(d),
                    _ => sec.value_error(
                        "buffer_disk_sync",
                        format!("expected \"always\" or a duration such as \"1s\", got {other:?}"),
                    ),
                },
            }
        }
        if let Some(o) = sec.choice("overflow", &["backpressure", "drop_oldest"]) {
            self.overflow = if o == "backpressure" {
                Overflow::Backpressure
            } else {
                Overflow::DropOldest
            };
        }
    }

    pub fn strategy(&self) -> BufferStrategy {
        if self.disk {
            BufferStrategy::Disk {
                limit_bytes: self.disk_limit,
                sync: self.disk_sync,
            }
        } else {
            BufferStrategy::Memory
        }
    }
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
            plugin_log_levels: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            buffer: BufferOptions::default(),
            processors_before_aggregators: true,
            processors_after_aggregators: true,
            always_include_local_tags: false,
            always_include_global_tags: false,
        }
    }
}

impl AgentConfig {
    /// The logger's filter directives: the agent's level, then each plugin's `log_level`
    /// for its own module (the most verbose wins when instances of one plugin differ).
    pub fn log_directives(&self) -> String {
        let mut out = if self.debug {
            "debug"
        } else if self.quiet {
            "error"
        } else {
            "info"
        }
        .to_string();
        const ORDER: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        let rank = |l: &str| ORDER.iter().position(|o| *o == l).unwrap_or(0);
        let mut levels: Vec<(&str, &str)> = Vec::new();
        for (target, level) in &self.plugin_log_levels {
            match levels.iter_mut().find(|(t, _)| t == target) {
                Some(have) if rank(level) > rank(have.1) => have.1 = level,
                Some(_) => {}
                None => levels.push((target, level)),
            }
        }
        for (target, level) in levels {
            out.push_str(&format!(",{target}={level}"));
        }
        out
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
    pub startup_error_behavior: StartupErrorBehavior,
    /// The service could not start when the agent did and its behavior is `retry`: it tries
    /// again every interval before it runs.
    pub start_pending: bool,
    pub plugin: InputPlugin,
}

/// What the agent does when a plugin cannot start (a listener whose port is taken, an output
/// that cannot connect): Telegraf's `startup_error_behavior`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartupErrorBehavior {
    /// Exit non-zero, so that the service manager reports (and restarts) it.
    #[default]
    Error,
    /// Keep running and try the plugin again every interval until it starts.
    Retry,
    /// Keep running without the plugin.
    Ignore,
    /// As `Ignore`: sonde's plugins have no separate probe.
    Probe,
}

impl StartupErrorBehavior {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("retry") => Self::Retry,
            Some("ignore") => Self::Ignore,
            Some("probe") => Self::Probe,
            _ => Self::Error,
        }
    }
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
    pub buffer_strategy: BufferStrategy,
    /// The base directory of disk buffers; each output has its own directory below it.
    pub buffer_directory: PathBuf,
    pub overflow: Overflow,
    pub name_override: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub filter: Filter,
    pub startup_error_behavior: StartupErrorBehavior,
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

impl std::fmt::Debug for Config {
    /// The plugins by name: they are not `Debug` themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |n: Vec<&str>| n.join(", ");
        f.debug_struct("Config")
            .field("agent", &self.agent)
            .field("global_tags", &self.global_tags)
            .field(
                "inputs",
                &names(self.inputs.iter().map(|p| p.name.as_str()).collect()),
            )
            .field(
                "processors",
                &names(self.processors.iter().map(|p| p.name.as_str()).collect()),
            )
            .field(
                "aggregators",
                &names(self.aggregators.iter().map(|p| p.name.as_str()).collect()),
            )
            .field(
                "outputs",
                &names(self.outputs.iter().map(|p| p.name.as_str()).collect()),
            )
            .finish()
    }
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

/// Where a config without files comes from, in messages.
pub const EMBEDDED_ORIGIN: &str = "<embedded default>";

/// The plugins a config may use: the built-in ones, or fakes in tests.
#[derive(Clone, Copy)]
pub struct Registry {
    pub inputs: &'static [InputSpec],
    pub processors: &'static [ProcessorSpec],
    pub aggregators: &'static [AggregatorSpec],
    pub outputs: &'static [OutputSpec],
}

impl Registry {
    pub fn builtin() -> Self {
        use sonde_plugins::registry as r;
        Registry {
            inputs: r::inputs(),
            processors: r::processors(),
            aggregators: r::aggregators(),
            outputs: r::outputs(),
        }
    }
}

/// Loads and builds the configuration: the `--config` files, then the `*.toml` and `*.conf`
/// files of each `--config-directory` in name order. With no sources at all, the embedded
/// default. Every problem found is reported, each with its file, line and column.
pub fn load(
    sources: &Sources,
    selection: &Selection,
    registry: &Registry,
) -> Result<Config, ConfigError> {
    let (texts, diags) = read_sources(sources);
    load_texts(
        &texts,
        selection,
        registry,
        &|k| std::env::var(k).ok(),
        diags,
    )
}

/// The tables of every `[[inputs.NAME]]` in the sources as written (after `${VAR}`
/// substitution), in config order: what `sonde export` reads a plugin's settings from. Call
/// [`load`] first to validate the configuration.
pub fn input_tables(sources: &Sources, name: &str) -> Result<Vec<RawInput>, ConfigError> {
    let (texts, mut diags) = read_sources(sources);
    let mut tables: Vec<toml::Table> = Vec::new();
    let out = &mut tables;
    for (i, (origin, text)) in texts.iter().enumerate() {
        match doc::Doc::parse(i, origin, text, &|k| std::env::var(k).ok()) {
            Ok(d) => match d.table.get("inputs").and_then(|t| t.get(name)) {
                Some(toml::Value::Array(list)) => {
                    out.extend(list.iter().filter_map(|v| v.as_table().cloned()))
                }
                Some(toml::Value::Table(t)) => out.push(t.clone()),
                _ => {}
            },
            Err(errs) => diags.extend(errs),
        }
    }
    if !diags.is_empty() {
        return Err(ConfigError::new(diags));
    }
    Ok(tables
        .into_iter()
        .map(|mut own| {
            let mut common = toml::Table::new();
            for k in plugins::INPUT_KEYS.iter().chain(section::FILTER_KEYS) {
                if let Some(v) = own.remove(*k) {
                    common.insert((*k).to_string(), v);
                }
            }
            RawInput { common, own }
        })
        .collect())
}

/// An input's table as written, split into the agent's keys (`interval`, `name_override`,
/// filters, ...) and the plugin's own.
#[derive(Clone, Debug, Default)]
pub struct RawInput {
    pub common: toml::Table,
    pub own: toml::Table,
}

/// The texts of the config files (the embedded default when there are none), and problems
/// reading them.
fn read_sources(sources: &Sources) -> (Vec<(String, String)>, Vec<Diagnostic>) {
    let mut texts = Vec::new();
    let mut diags = Vec::new();
    if sources.files.is_empty() && sources.directories.is_empty() {
        texts.push((EMBEDDED_ORIGIN.to_string(), DEFAULT_CONFIG.to_string()));
    }
    for f in &sources.files {
        match std::fs::read_to_string(f) {
            Ok(t) => texts.push((f.display().to_string(), t)),
            Err(e) => diags.push(Diagnostic::file(
                &f.display().to_string(),
                format!("cannot read: {e}"),
            )),
        }
    }
    for d in &sources.directories {
        match directory_files(d) {
            Ok(files) => {
                for f in files {
                    match std::fs::read_to_string(&f) {
                        Ok(t) => texts.push((f.display().to_string(), t)),
                        Err(e) => diags.push(Diagnostic::file(
                            &f.display().to_string(),
                            format!("cannot read: {e}"),
                        )),
                    }
                }
            }
            Err(e) => diags.push(Diagnostic::file(
                &d.display().to_string(),
                format!("cannot read directory: {e}"),
            )),
        }
    }
    (texts, diags)
}

/// Loads one config given as text; `origin` names it in errors (a path, or [`EMBEDDED_ORIGIN`]).
pub fn load_str(
    text: &str,
    origin: &str,
    selection: &Selection,
    registry: &Registry,
) -> Result<Config, ConfigError> {
    let texts = [(origin.to_string(), text.to_string())];
    load_texts(
        &texts,
        selection,
        registry,
        &|k| std::env::var(k).ok(),
        Vec::new(),
    )
}

/// The `*.toml` and `*.conf` files of a directory, in name order.
fn directory_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if matches!(ext, Some("toml" | "conf")) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "agent",
    "global_tags",
    "inputs",
    "processors",
    "aggregators",
    "outputs",
];

fn load_texts(
    texts: &[(String, String)],
    selection: &Selection,
    registry: &Registry,
    lookup: &dyn Fn(&str) -> Option<String>,
    mut diags: Vec<Diagnostic>,
) -> Result<Config, ConfigError> {
    let mut docs = Vec::new();
    for (i, (origin, text)) in texts.iter().enumerate() {
        match doc::Doc::parse(i, origin, text, lookup) {
            Ok(d) => docs.push(d),
            Err(errs) => diags.extend(errs),
        }
    }

    // [agent] and [global_tags] first: plugins take their defaults from them.
    let mut agent = AgentConfig::default();
    let mut global_tags = std::collections::BTreeMap::new();
    let mut batch_at = None;
    let mut limit_at = None;
    for doc in &docs {
        let mut top = Section::new(doc, vec![], "config".into(), doc.table.clone());
        for key in TOP_LEVEL_KEYS {
            top.table.remove(*key);
        }
        top.reject_unknown(TOP_LEVEL_KEYS);
        diags.extend(top.errors);
        if let Some(t) = section_table(doc, "agent", &mut diags) {
            let mut sec = Section::new(doc, vec!["agent".into()], "agent".into(), t);
            if sec.table.contains_key("metric_batch_size") {
                batch_at = Some(doc.index);
            }
            if sec.table.contains_key("metric_buffer_limit") {
                limit_at = Some(doc.index);
            }
            agent::apply(&mut sec, &mut agent);
            diags.extend(sec.errors);
        }
        if let Some(t) = section_table(doc, "global_tags", &mut diags) {
            let mut sec = Section::new(doc, vec![], "global_tags".into(), Default::default());
            sec.table
                .insert("global_tags".into(), toml::Value::Table(t));
            global_tags.extend(sec.string_map("global_tags"));
            diags.extend(sec.errors);
        }
    }
    if agent.metric_buffer_limit < agent.metric_batch_size {
        // Point at whichever of the two was set last.
        let (key, at) = match (limit_at, batch_at) {
            (Some(l), Some(b)) if b > l => ("metric_batch_size", b),
            (Some(l), _) => ("metric_buffer_limit", l),
            (None, b) => ("metric_batch_size", b.unwrap_or(0)),
        };
        if let Some(doc) = docs.iter().find(|d| d.index == at) {
            let mut sec = Section::new(
                doc,
                vec!["agent".into()],
                "agent".into(),
                Default::default(),
            );
            sec.value_error(
                key,
                format!(
                    "metric_buffer_limit ({}) must be at least metric_batch_size ({})",
                    agent.metric_buffer_limit, agent.metric_batch_size
                ),
            );
            diags.extend(sec.errors);
        }
    }
    if agent.hostname.is_empty() {
        agent.hostname = agent::os_hostname();
    }

    let mut cfg = Config {
        agent,
        global_tags: global_tags.into_iter().collect(),
        inputs: Vec::new(),
        processors: Vec::new(),
        aggregators: Vec::new(),
        outputs: Vec::new(),
    };
    for doc in &docs {
        plugins::build_all(doc, registry, selection, &mut cfg, &mut diags);
    }
    if !diags.is_empty() {
        return Err(ConfigError::new(diags));
    }
    // Stable: equal orders keep config order.
    cfg.processors.sort_by_key(|p| p.order);
    Ok(cfg)
}

/// A top-level table such as `[agent]`, or an error when it is something else.
fn section_table(doc: &doc::Doc, key: &str, diags: &mut Vec<Diagnostic>) -> Option<toml::Table> {
    match doc.table.get(key)? {
        toml::Value::Table(t) => Some(t.clone()),
        other => {
            let mut sec = Section::new(doc, vec![], key.into(), Default::default());
            sec.error(
                &[key.into()],
                true,
                format!("expected a table [{key}], found {}", other.type_str()),
            );
            diags.extend(sec.errors);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;

    use serde::Deserialize;
    use sonde_plugins::config_types::Duration as CfgDuration;
    use sonde_plugins::plugin::{Accumulator, BuildContext, Input, WriteError};
    use sonde_plugins::registry::{self as reg, BuildError, Format, Spec};
    use sonde_plugins::{Metric, registry::ConfigError as PluginError};

    use super::*;

    type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    thread_local! {
        /// (id, table) of every plugin built on this thread: what the plugin was given.
        static BUILT: RefCell<Vec<(String, toml::Table)>> = const { RefCell::new(Vec::new()) };
    }

    fn built() -> Vec<(String, toml::Table)> {
        BUILT.with(|b| b.borrow_mut().drain(..).collect())
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct ExecConfig {
        commands: Vec<String>,
        #[serde(default)]
        timeout: Option<CfgDuration>,
        #[serde(default)]
        token: Option<u64>,
        #[serde(default)]
        tls: Option<Tls>,
        #[serde(default)]
        encoding: Option<Encoding>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Encoding {
        Gzip,
        Identity,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tls {
        ca: String,
    }

    struct FakeInput;
    impl Input for FakeInput {
        fn gather<'a, 'b, 'c>(
            &'a mut self,
            _acc: &'b mut Accumulator,
        ) -> BoxFuture<'c, anyhow::Result<()>>
        where
            'a: 'c,
            'b: 'c,
            Self: 'c,
        {
            Box::pin(async { Ok(()) })
        }
    }

    struct FakeOutput;
    impl Output for FakeOutput {
        fn write<'a, 'b, 'c>(
            &'a mut self,
            _b: &'b [Metric],
        ) -> BoxFuture<'c, Result<(), WriteError>>
        where
            'a: 'c,
            'b: 'c,
            Self: 'c,
        {
            Box::pin(async { Ok(()) })
        }
    }

    struct FakeProcessor;
    impl Processor for FakeProcessor {
        fn apply(&mut self, batch: Vec<Metric>) -> Vec<Metric> {
            batch
        }
    }

    struct FakeAggregator;
    impl Aggregator for FakeAggregator {
        fn add(&mut self, _m: &Metric) {}
        fn push(&mut self, _t: i64, _out: &mut Vec<Metric>) {}
        fn reset(&mut self) {}
    }

    fn record(table: &toml::Table, ctx: &BuildContext) {
        BUILT.with(|b| b.borrow_mut().push((ctx.id.clone(), table.clone())));
    }

    fn build_exec(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
        record(&table, ctx);
        let c: ExecConfig = reg::parse_config(table)?;
        if let Some(i) = c.commands.iter().position(|c| c.is_empty()) {
            return Err(PluginError {
                path: vec!["commands".into(), i.to_string()],
                message: "a command must not be empty".into(),
            }
            .into());
        }
        if c.commands.iter().any(|c| c == "fail") {
            return Err(anyhow::anyhow!("cannot prepare command \"fail\"").into());
        }
        Ok(InputPlugin::Polled(Box::new(FakeInput)))
    }

    /// A plugin without options.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoOptions {}

    fn build_cpu(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
        record(&table, ctx);
        let _: NoOptions = reg::parse_config(table)?;
        Ok(InputPlugin::Polled(Box::new(FakeInput)))
    }

    fn build_rename(
        table: toml::Table,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, BuildError> {
        record(&table, ctx);
        let _: NoOptions = reg::parse_config(table)?;
        Ok(Box::new(FakeProcessor))
    }

    fn build_minmax(
        table: toml::Table,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Aggregator>, BuildError> {
        record(&table, ctx);
        let _: NoOptions = reg::parse_config(table)?;
        Ok(Box::new(FakeAggregator))
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct FileConfig {
        files: Vec<String>,
    }

    fn build_file(table: toml::Table, ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
        record(&table, ctx);
        let _: FileConfig = reg::parse_config(table)?;
        Ok(Box::new(FakeOutput))
    }

    static INPUTS: &[InputSpec] = &[
        Spec {
            name: "cpu",
            description: "CPU usage",
            sample: "[[inputs.cpu]]\n",
            format: Format::None,
            build: build_cpu,
        },
        Spec {
            name: "exec",
            description: "Runs commands",
            sample: "[[inputs.exec]]\n  ## Commands to run.\n  commands = [\"echo 1\"]\n  # timeout = \"5s\"\n",
            format: Format::None,
            build: build_exec,
        },
    ];
    /// Like exec, but with a `data_format` parser.
    static PARSING: &[InputSpec] = &[Spec {
        name: "exec",
        description: "Runs commands",
        sample: "",
        format: Format::Parser("influx"),
        build: build_exec,
    }];

    static PROCESSORS: &[ProcessorSpec] = &[Spec {
        name: "rename",
        description: "Renames",
        sample: "[[processors.rename]]\n",
        format: Format::None,
        build: build_rename,
    }];
    static AGGREGATORS: &[AggregatorSpec] = &[Spec {
        name: "minmax",
        description: "Min and max",
        sample: "[[aggregators.minmax]]\n  period = \"30s\"\n",
        format: Format::None,
        build: build_minmax,
    }];
    static OUTPUTS: &[OutputSpec] = &[Spec {
        name: "file",
        description: "Writes files",
        sample: "[[outputs.file]]\n  files = [\"stdout\"]\n",
        format: Format::None,
        build: build_file,
    }];

    const FAKES: Registry = Registry {
        inputs: INPUTS,
        processors: PROCESSORS,
        aggregators: AGGREGATORS,
        outputs: OUTPUTS,
    };

    fn env(name: &str) -> Option<String> {
        match name {
            "URL" => Some("http://example.com:8086/write".into()),
            "N" => Some("5".into()),
            _ => None,
        }
    }

    fn load_all(texts: &[(&str, &str)], selection: &Selection) -> Result<Config, ConfigError> {
        let texts: Vec<_> = texts
            .iter()
            .map(|(o, t)| (o.to_string(), t.to_string()))
            .collect();
        load_texts(&texts, selection, &FAKES, &env, Vec::new())
    }

    fn ok(text: &str) -> Config {
        match load_all(&[("test.toml", text)], &Selection::default()) {
            Ok(c) => c,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    /// The error lines of a config that must fail.
    fn errors(text: &str) -> Vec<String> {
        match load_all(&[("test.toml", text)], &Selection::default()) {
            Ok(_) => panic!("config should not load"),
            Err(e) => e.to_string().lines().map(String::from).collect(),
        }
    }

    fn error(text: &str) -> String {
        let e = errors(text);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    }

    const S: std::time::Duration = std::time::Duration::from_secs(1);

    #[test]
    fn a_full_config_loads_with_its_options_and_defaults() {
        built();
        let c = ok(r#"
[agent]
  interval = "5s"
  flush_interval = 20
  metric_batch_size = 10
  metric_buffer_limit = 100
  metric_buffer_limit_bytes = "1MiB"
  hostname = "box"
  logformat = "structured"
  logfile = "/tmp/sonde.log"
  # Telegraf options sonde ignores:
  logtarget = "file"
  statefile = ""
  always_include_global_tags = true

[global_tags]
  dc = "eu"

[[inputs.exec]]
  commands = ["echo 1"]
  timeout = "2s"
  interval = "1m"
  alias = "first"
  name_prefix = "x_"
  [inputs.exec.tags]
    z = "1"
    a = "2"

[[inputs.exec]]
  commands = ["echo 2"]
  namepass = ["cpu*"]

[[processors.rename]]
  order = 2
  alias = "second"

[[processors.rename]]
  order = 1
  alias = "first"

[[aggregators.minmax]]
  drop_original = true

[[outputs.file]]
  files = ["stdout"]
  metric_batch_size = 5
"#);
        let a = &c.agent;
        assert_eq!(a.interval, 5 * S);
        assert_eq!(a.flush_interval, 20 * S);
        assert_eq!(a.metric_batch_size, 10);
        assert_eq!(a.metric_buffer_limit, 100);
        assert_eq!(a.metric_buffer_limit_bytes, 1 << 20);
        assert_eq!(a.hostname, "box");
        assert_eq!(a.logformat, "json");
        assert_eq!(a.logfile, Some(PathBuf::from("/tmp/sonde.log")));
        assert!(a.round_interval);
        assert_eq!(c.global_tags, vec![("dc".into(), "eu".into())]);

        assert_eq!(c.inputs.len(), 2);
        let i = &c.inputs[0];
        assert_eq!(i.name, "exec");
        assert_eq!(i.alias.as_deref(), Some("first"));
        assert_eq!(i.interval, 60 * S);
        assert_eq!(i.name_prefix.as_deref(), Some("x_"));
        assert_eq!(
            i.tags,
            vec![("a".into(), "2".into()), ("z".into(), "1".into())]
        );
        assert!(i.filter.is_empty());
        // Defaults come from [agent].
        assert_eq!(c.inputs[1].interval, 5 * S);
        assert!(!c.inputs[1].filter.is_empty());
        assert!(!c.inputs[1].filter.selects(&Metric::new("mem", 0)));

        // Processors sorted by order.
        let order: Vec<_> = c.processors.iter().map(|p| p.alias.as_deref()).collect();
        assert_eq!(order, [Some("first"), Some("second")]);

        let g = &c.aggregators[0];
        assert_eq!(
            (g.period, g.delay, g.grace, g.drop_original),
            (30 * S, S / 10, std::time::Duration::ZERO, true)
        );

        let o = &c.outputs[0];
        assert_eq!(o.metric_batch_size, 5);
        assert_eq!(o.metric_buffer_limit, 100);
        assert_eq!(o.flush_interval, 20 * S);
        assert_eq!(o.metric_buffer_limit_bytes, 1 << 20);
        assert!(o.fingerprint.contains("metric_batch_size = 5"));

        // The plugins saw only their own keys; the context names them by alias.
        let b = built();
        assert_eq!(b[0].0, "first");
        assert_eq!(b[0].1.keys().collect::<Vec<_>>(), ["commands", "timeout"]);
        assert_eq!(b[1].0, "exec");
        assert_eq!(b[1].1.keys().collect::<Vec<_>>(), ["commands"]);
        assert!(
            b.iter()
                .skip(2)
                .all(|(_, t)| t.keys().all(|k| k == "files"))
        );
    }

    #[test]
    fn hostname_defaults_to_the_machines() {
        let c = ok("");
        assert!(!c.agent.hostname.is_empty());
        assert_eq!(c.agent.interval, 10 * S);
    }

    #[test]
    fn single_table_form_is_accepted() {
        let c = ok("[inputs.exec]\n  commands = [\"a\"]\n");
        assert_eq!(c.inputs.len(), 1);
    }

    #[test]
    fn integer_durations_are_seconds() {
        assert_eq!(ok("[agent]\ninterval = 10").agent.interval, 10 * S);
    }

    #[test]
    fn syntax_error_points_at_the_problem() {
        let e = error("[agent]\ninterval = \"10s\"\nround_interval = tru\n");
        assert!(e.starts_with("test.toml:3:18: TOML syntax error: "), "{e}");
        let e = error("[agent]\ninterval = \"10s\"\ninterval = \"5s\"\n");
        assert_eq!(e, "test.toml:3:1: TOML syntax error: duplicate key");
    }

    #[test]
    fn bad_value_points_at_the_value() {
        assert_eq!(
            error("[agent]\n  interval = \"ten\"\n"),
            "test.toml:2:14: agent: interval: invalid duration \"ten\": expected a number"
        );
        assert_eq!(
            error("[agent]\n  round_interval = \"yes\"\n"),
            "test.toml:2:20: agent: round_interval: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            error("[[inputs.exec]]\n  commands = [\"a\"]\n  interval = \"0s\"\n"),
            "test.toml:3:14: inputs.exec[0]: interval: must be more than zero"
        );
    }

    #[test]
    fn unknown_agent_key_suggests_the_nearest() {
        assert_eq!(
            error("[agent]\n  intervall = \"10s\"\n"),
            "test.toml:2:3: agent: unknown key \"intervall\"; did you mean \"interval\"?"
        );
        assert_eq!(
            error("[agent]\n  zzz = 1\n"),
            "test.toml:2:3: agent: unknown key \"zzz\""
        );
    }

    #[test]
    fn unknown_plugin_suggests_the_nearest() {
        assert_eq!(
            error("[[inputs.exce]]\n  commands = [\"a\"]\n"),
            "test.toml:1:10: inputs.exce: unknown input plugin \"exce\"; did you mean \"exec\"?"
        );
        assert_eq!(
            error("[[outputs.nothing_like_it]]\n"),
            "test.toml:1:11: outputs.nothing_like_it: unknown output plugin \"nothing_like_it\""
        );
    }

    #[test]
    fn unknown_top_level_table() {
        assert_eq!(
            error("[[input.exec]]\n"),
            "test.toml:1:3: config: unknown key \"input\"; did you mean \"inputs\"?"
        );
    }

    #[test]
    fn plugin_sections_must_be_tables() {
        assert_eq!(
            error("outputs = 5\n"),
            "test.toml:1:11: outputs: expected tables like [[outputs.NAME]], found integer"
        );
        assert_eq!(
            error("[inputs]\ncpu = \"yes\"\n"),
            "test.toml:2:7: inputs.cpu: expected a table like [[inputs.cpu]], found string"
        );
    }

    #[test]
    fn unknown_plugin_keys_are_all_reported_with_suggestions() {
        assert_eq!(
            errors("[[inputs.exec]]\n  comands = [\"a\"]\n  timout = \"1s\"\n  intervl = \"5s\"\n"),
            [
                "test.toml:1:1: inputs.exec[0]: missing required key \"commands\"",
                "test.toml:2:3: inputs.exec[0]: unknown key \"comands\"; did you mean \"commands\"?",
                "test.toml:3:3: inputs.exec[0]: unknown key \"timout\"; did you mean \"timeout\"?",
                "test.toml:4:3: inputs.exec[0]: unknown key \"intervl\"; did you mean \"interval\"?",
            ]
        );
    }

    #[test]
    fn nested_unknown_key() {
        assert_eq!(
            error(
                "[[inputs.exec]]\n  commands = [\"a\"]\n  [inputs.exec.tls]\n    ca = \"x\"\n    cert = \"y\"\n"
            ),
            "test.toml:5:5: inputs.exec[0]: unknown key \"tls.cert\""
        );
    }

    #[test]
    fn plugin_type_errors_point_at_the_value() {
        assert_eq!(
            error("[[inputs.exec]]\n  commands = [\"a\"]\n  timeout = \"soon\"\n"),
            "test.toml:3:13: inputs.exec[0]: timeout: invalid duration \"soon\": expected a number"
        );
        assert_eq!(
            error("[[inputs.exec]]\n  commands = [\"a\", 5]\n"),
            "test.toml:2:20: inputs.exec[0]: commands[1]: invalid type: integer `5`, expected a string"
        );
    }

    #[test]
    fn plugin_errors_map_their_path_and_other_errors_the_header() {
        assert_eq!(
            error("\n[[inputs.exec]]\n  commands = [\"a\", \"\"]\n"),
            "test.toml:3:20: inputs.exec[0]: commands[1]: a command must not be empty"
        );
        assert_eq!(
            error("[[inputs.cpu]]\n[[inputs.exec]]\n  commands = [\"fail\"]\n"),
            "test.toml:2:1: inputs.exec[0]: cannot prepare command \"fail\""
        );
    }

    #[test]
    fn unknown_variant_suggests_the_nearest() {
        assert_eq!(
            error("[[inputs.exec]]\n  commands = [\"a\"]\n  encoding = \"gzp\"\n"),
            "test.toml:3:14: inputs.exec[0]: encoding: unknown variant `gzp`, expected `gzip` or `identity`; did you mean \"gzip\"?"
        );
    }

    #[test]
    fn format_keys_are_taken_for_parser_plugins() {
        let registry = Registry {
            inputs: PARSING,
            ..FAKES
        };
        let text =
            "[[inputs.exec]]\n  commands = [\"a\"]\n  data_format = 5\n  json_qery = \"x\"\n";
        let texts = [("t.toml".to_string(), text.to_string())];
        let e = load_texts(&texts, &Selection::default(), &registry, &env, Vec::new())
            .unwrap_err()
            .to_string();
        // The plugin never sees data_format; typos are matched against the format keys too.
        assert_eq!(
            e,
            "t.toml:3:17: inputs.exec[0]: data_format: invalid type: integer `5`, expected a string\n\
             t.toml:4:3: inputs.exec[0]: unknown key \"json_qery\"; did you mean \"json_query\"?"
        );
    }

    #[test]
    fn secrets_are_not_echoed() {
        let e = error("[[inputs.exec]]\n  commands = [\"a\"]\n  token = \"hunter2\"\n");
        assert_eq!(
            e,
            "test.toml:3:11: inputs.exec[0]: token: invalid type: string \"***\", expected u64"
        );
    }

    #[test]
    fn out_of_range_values() {
        assert_eq!(
            error("[agent]\n  metric_batch_size = 0\n"),
            "test.toml:2:23: agent: metric_batch_size: must be at least 1 (got 0)"
        );
        assert_eq!(
            error("[agent]\n  metric_buffer_limit = -5\n"),
            "test.toml:2:25: agent: metric_buffer_limit: must not be negative (got -5)"
        );
        assert_eq!(
            error("[agent]\n  metric_buffer_limit = 10\n"),
            "test.toml:2:25: agent: metric_buffer_limit: metric_buffer_limit (10) must be at least metric_batch_size (1000)"
        );
        assert_eq!(
            error("[[outputs.file]]\n  files = []\n  metric_batch_size = 20000\n"),
            "test.toml:3:23: outputs.file[0]: metric_batch_size: metric_buffer_limit (10000) must be at least metric_batch_size (20000)"
        );
        assert_eq!(
            error("[agent]\n  logformat = \"jsn\"\n"),
            "test.toml:2:15: agent: logformat: \"jsn\" is not one of \"text\", \"json\", \"structured\"; did you mean \"json\"?"
        );
    }

    #[test]
    fn all_errors_are_reported_in_file_order() {
        let e = errors(
            "[[outputs.file]]\n  files = 1\n[agent]\n  interval = \"x\"\n[[inputs.exec]]\n  commands = [\"a\"]\n  bogus = 1\n",
        );
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(
            e[0].starts_with("test.toml:2:11: outputs.file[0]: files: "),
            "{e:#?}"
        );
        assert!(e[1].starts_with("test.toml:4:14: agent: interval: "));
        assert!(e[2].starts_with("test.toml:7:3: inputs.exec[0]: unknown key \"bogus\""));
    }

    #[test]
    fn environment_is_substituted_and_errors_use_original_positions() {
        let c = ok("[agent]\n  metric_batch_size = ${N}\n  hostname = \"${NOPE:-h}\"\n");
        assert_eq!(c.agent.metric_batch_size, 5);
        assert_eq!(c.agent.hostname, "h");
        assert_eq!(
            error("[agent]\n  hostname = \"${NOPE:?set the hostname}\"\n"),
            "test.toml:2:15: environment variable NOPE is unset or empty: set the hostname"
        );
        // The column after a substituted value is the column in the file as written.
        assert_eq!(
            error("[agent]\n  hostname = \"$URL\"\n  interval = \"${URL}\"\n"),
            "test.toml:3:14: agent: interval: invalid duration \"http://example.com:8086/write\": expected a number"
        );
        assert_eq!(
            error("[agent]\n  hostname = \"${URL}\"; x = 1\n"),
            "test.toml:2:22: TOML syntax error: unexpected key or value, expected newline, `#`"
        );
    }

    #[test]
    fn files_merge_agent_overrides_and_plugins_concatenate() {
        let c = load_all(
            &[
                (
                    "a.toml",
                    "[agent]\ninterval = \"5s\"\nflush_interval = \"3s\"\n[global_tags]\ndc = \"a\"\nrack = \"1\"\n[[inputs.exec]]\ncommands = [\"a\"]\n",
                ),
                (
                    "b.toml",
                    "[agent]\ninterval = \"7s\"\n[global_tags]\ndc = \"b\"\n[[inputs.exec]]\ncommands = [\"b\"]\nalias = \"b\"\n",
                ),
            ],
            &Selection::default(),
        )
        .unwrap();
        assert_eq!(c.agent.interval, 7 * S);
        assert_eq!(c.agent.flush_interval, 3 * S);
        assert_eq!(
            c.global_tags,
            vec![("dc".into(), "b".into()), ("rack".into(), "1".into())]
        );
        let aliases: Vec<_> = c.inputs.iter().map(|i| i.alias.as_deref()).collect();
        assert_eq!(aliases, [None, Some("b")]);

        let e = load_all(
            &[
                ("a.toml", "[agent]\nmetric_buffer_limit = 100\n"),
                ("b.toml", "[[inputs.exec]]\n\n  comands = 1\n"),
                ("c.toml", "[agent]\nmetric_batch_size = 200\n"),
            ],
            &Selection::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "b.toml:1:1: inputs.exec[0]: missing required key \"commands\"\n\
             b.toml:3:3: inputs.exec[0]: unknown key \"comands\"; did you mean \"commands\"?\n\
             c.toml:2:21: agent: metric_batch_size: metric_buffer_limit (100) must be at least metric_batch_size (200)"
        );
    }

    /// A fresh empty directory under the system temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sonde-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn directories_merge_toml_and_conf_in_name_order() {
        let d = temp_dir("dir");
        let input =
            |alias: &str| format!("[[inputs.exec]]\ncommands = [\"x\"]\nalias = \"{alias}\"\n");
        std::fs::write(d.join("b.conf"), input("b")).unwrap();
        std::fs::write(d.join("a.toml"), input("a")).unwrap();
        std::fs::write(d.join("c.toml"), input("c")).unwrap();
        std::fs::write(d.join("ignored.txt"), "not toml [[").unwrap();
        let main = d.join("main.cfg");
        std::fs::write(&main, input("main")).unwrap();
        let sources = Sources {
            files: vec![main.clone()],
            directories: vec![d.clone()],
        };
        let c = load(&sources, &Selection::default(), &FAKES).unwrap();
        let aliases: Vec<_> = c.inputs.iter().map(|i| i.alias.clone().unwrap()).collect();
        assert_eq!(aliases, ["main", "a", "b", "c"]);

        // Errors name the file they are in.
        std::fs::write(
            d.join("b.conf"),
            "[[inputs.exec]]\ncommands = [\"x\"]\ntimeout = \"x\"\n",
        )
        .unwrap();
        let e = load(&sources, &Selection::default(), &FAKES)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{}:3:11: inputs.exec[0]: timeout: invalid duration \"x\": expected a number",
                d.join("b.conf").display()
            )
        );
        std::fs::remove_dir_all(&d).unwrap();

        let missing = Sources {
            files: vec![d.join("gone.toml")],
            directories: vec![],
        };
        let e = load(&missing, &Selection::default(), &FAKES)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read: ", d.join("gone.toml").display())),
            "{e}"
        );
    }

    #[test]
    fn selection_skips_other_plugins_entirely() {
        let text = "[[inputs.cpu]]\n[[inputs.exec]]\ncommands = [\"a\"]\n[[inputs.unknown_thing]]\nbad = 1\n[[outputs.file]]\nfiles = []\n";
        let sel = Selection {
            inputs: vec!["cpu".into()],
            outputs: vec!["none".into()],
            ..Default::default()
        };
        let c = load_all(&[("t.toml", text)], &sel).unwrap();
        assert_eq!(c.inputs.len(), 1);
        assert_eq!(c.inputs[0].name, "cpu");
        assert!(c.outputs.is_empty());
        // Unselected plugins must still be valid TOML.
        let e = load_all(
            &[("t.toml", "[[inputs.cpu]]\n[[inputs.exec]]\ncommands = [\n")],
            &sel,
        );
        assert!(e.is_err());
    }

    #[test]
    fn filters_are_taken_from_every_plugin_kind() {
        let c = ok(r#"
[[inputs.cpu]]
  namedrop = ["cpu"]
  fieldpass = ["usage_*"]
  fieldinclude = ["time_*"]
  namepass_separator = "."
  [inputs.cpu.tagpass]
    host = ["web*"]
[[processors.rename]]
  namepass = ["mem"]
[[aggregators.minmax]]
  taginclude = ["host"]
[[outputs.file]]
  files = []
  tagexclude = ["host"]
"#);
        let f = &c.inputs[0].filter;
        assert!(!f.selects(&Metric::new("cpu", 0).with_tag("host", "web1")));
        assert!(f.selects(&Metric::new("disk", 0).with_tag("host", "web1")));
        assert!(!f.selects(&Metric::new("disk", 0).with_tag("host", "db1")));
        let mut m = Metric::new("disk", 0)
            .with_field("usage_a", 1i64)
            .with_field("time_a", 1i64)
            .with_field("other", 1i64);
        assert!(f.trim(&mut m));
        assert_eq!(
            m.fields.len(),
            2,
            "old fieldpass and new fieldinclude both apply"
        );
        assert!(!c.processors[0].filter.selects(&Metric::new("cpu", 0)));
        let mut m = Metric::new("x", 0)
            .with_tag("host", "h")
            .with_tag("a", "b")
            .with_field("f", 1i64);
        assert!(c.aggregators[0].filter.trim(&mut m));
        assert_eq!(m.tags.len(), 1);
        assert!(c.outputs[0].filter.trim(&mut m));
        assert!(m.tags.is_empty());
    }

    #[test]
    fn filter_errors_point_at_the_value() {
        assert_eq!(
            error("[[inputs.cpu]]\n  namepass = [\"ok\", \"cpu[0\"]\n"),
            "test.toml:2:21: inputs.cpu[0]: namepass: invalid glob \"cpu[0\": unclosed '['"
        );
        assert_eq!(
            error("[[inputs.cpu]]\n  [inputs.cpu.tagpass]\n    host = \"web*\"\n"),
            "test.toml:3:12: inputs.cpu[0]: tagpass.host: expected an array of strings"
        );
        assert_eq!(
            error("[[inputs.cpu]]\n  [inputs.cpu.tags]\n    n = 1\n"),
            "test.toml:3:9: inputs.cpu[0]: tags.n: expected a string, found integer"
        );
    }

    #[test]
    fn buffer_options_from_the_agent_and_per_output() {
        use crate::pipeline::SyncPolicy;
        let c = ok(r#"
[agent]
  buffer_strategy = "disk"
  buffer_directory = "/srv/sonde-buffer"
  buffer_disk_limit = "2GiB"
  buffer_disk_sync = "always"
  overflow = "drop_oldest"
[[outputs.file]]
  files = ["stdout"]
[[outputs.file]]
  files = ["stdout"]
  buffer_strategy = "memory"
  overflow = "backpressure"
[[outputs.file]]
  files = ["stdout"]
  buffer_disk_sync = "250ms"
  buffer_directory = "/other"
"#);
        let o = &c.outputs;
        assert_eq!(
            o[0].buffer_strategy,
            BufferStrategy::Disk {
                limit_bytes: 2 << 30,
                sync: SyncPolicy::Always
            }
        );
        assert_eq!(o[0].buffer_directory, PathBuf::from("/srv/sonde-buffer"));
        assert_eq!(o[0].overflow, Overflow::DropOldest);
        assert_eq!(o[1].buffer_strategy, BufferStrategy::Memory);
        assert_eq!(o[1].overflow, Overflow::Backpressure);
        assert_eq!(
            o[2].buffer_strategy,
            BufferStrategy::Disk {
                limit_bytes: 2 << 30,
                sync: SyncPolicy::Every(Duration::from_millis(250))
            }
        );
        assert_eq!(o[2].buffer_directory, PathBuf::from("/other"));
        // The defaults: memory, pushing back, /var/lib/sonde/buffer for disk.
        let d = ok("[[outputs.file]]\n  files = [\"stdout\"]\n");
        assert_eq!(d.outputs[0].buffer_strategy, BufferStrategy::Memory);
        assert_eq!(d.outputs[0].overflow, Overflow::Backpressure);
        assert_eq!(
            d.outputs[0].buffer_directory,
            PathBuf::from("/var/lib/sonde/buffer")
        );
    }

    #[test]
    fn plugin_log_levels_become_module_directives() {
        let mut a = AgentConfig::default();
        assert_eq!(a.log_directives(), "info");
        a.quiet = true;
        a.plugin_log_levels = vec![
            ("sonde_plugins::inputs::statsd".into(), "debug".into()),
            ("sonde_plugins::outputs::http".into(), "error".into()),
            ("sonde_plugins::inputs::statsd".into(), "warn".into()),
        ];
        assert_eq!(
            a.log_directives(),
            "error,sonde_plugins::inputs::statsd=debug,sonde_plugins::outputs::http=error"
        );
        // Every directive is one the logger accepts.
        a.log_directives()
            .parse::<tracing_subscriber::filter::Targets>()
            .unwrap();
    }

    /// Telegraf's spellings: `precision = ""`, a bool `buffer_disk_sync`, "disk_write_through".
    #[test]
    fn telegraf_agent_spellings() {
        let c = ok(
            "[agent]\n  precision = \"\"\n  buffer_strategy = \"disk_write_through\"\n  \
             buffer_disk_sync = true\n",
        );
        assert_eq!(c.agent.precision, Duration::ZERO);
        assert!(c.agent.buffer.disk);
        assert_eq!(
            c.agent.buffer.disk_sync,
            crate::pipeline::SyncPolicy::Always
        );
        let c = ok("[agent]\n  buffer_disk_sync = false\n");
        assert_eq!(
            c.agent.buffer.disk_sync,
            crate::pipeline::SyncPolicy::Every(Duration::from_secs(1))
        );
    }

    #[test]
    fn bad_buffer_options_are_errors() {
        assert_eq!(
            error("[agent]\n  buffer_disk_sync = \"sometimes\"\n"),
            "test.toml:2:22: agent: buffer_disk_sync: expected \"always\" or a duration such as \"1s\", got \"sometimes\""
        );
        assert!(
            error("[[outputs.file]]\n  files = [\"stdout\"]\n  buffer_strategy = \"tape\"\n")
                .contains("buffer_strategy"),
        );
        assert!(
            error("[[outputs.file]]\n  files = [\"stdout\"]\n  overflow = \"block\"\n")
                .contains("overflow")
        );
        assert!(error("[agent]\n  buffer_disk_limit = 0\n").contains("must be more than zero"));
    }

    #[test]
    fn sample_config_loads() {
        let all = sample_config(&Selection::default(), &FAKES);
        for key in agent::AGENT_KEYS {
            assert!(all.contains(&format!("\n  {key} = ")), "sample lacks {key}");
        }
        assert!(
            all.contains("# [[inputs.exec]]"),
            "unselected plugins are commented out"
        );
        let c = load_all(&[("sample", &all)], &Selection::default()).unwrap();
        // Only the plugins of the embedded default are enabled in the sample.
        for i in &c.inputs {
            let table = format!("[[inputs.{}]]", i.name);
            assert!(
                DEFAULT_CONFIG.contains(&table),
                "{table} enabled in the sample"
            );
        }
        let d = AgentConfig::default();
        assert_eq!(c.agent.interval, d.interval);
        assert_eq!(
            c.agent.metric_buffer_limit_bytes,
            d.metric_buffer_limit_bytes
        );

        let sel = Selection {
            inputs: vec!["exec".into(), "cpu".into()],
            outputs: vec!["file".into()],
            processors: vec!["rename".into()],
            aggregators: vec!["minmax".into()],
        };
        let some = sample_config(&sel, &FAKES);
        assert!(some.contains("\n[[inputs.exec]]\n"));
        let c = load_all(&[("sample", &some)], &Selection::default()).unwrap();
        assert_eq!(
            (
                c.inputs.len(),
                c.processors.len(),
                c.aggregators.len(),
                c.outputs.len()
            ),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn embedded_default_is_valid_toml() {
        let doc = doc::Doc::parse(0, EMBEDDED_ORIGIN, DEFAULT_CONFIG, &env);
        assert!(doc.is_ok());
        // With the built-in plugins not all present yet, errors still name the origin.
        if let Err(e) = load_str(
            DEFAULT_CONFIG,
            EMBEDDED_ORIGIN,
            &Selection::default(),
            &FAKES,
        ) {
            assert!(e.to_string().starts_with("<embedded default>:"), "{e}");
        }
    }
}
