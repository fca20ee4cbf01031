//! Building the plugins of one file: common options taken from each table, then the
//! plugin's own constructor, with its errors mapped back to the text.

use std::time::Duration;

use sonde_plugins::codec::{self, PARSER_KEYS, ParserConfig, SERIALIZER_KEYS, SerializerConfig};
use sonde_plugins::plugin::BuildContext;
use sonde_plugins::registry::{BuildError, Format, Spec};

use super::doc::{Diagnostic, Doc};
use super::section::{FILTER_KEYS, Section, did_you_mean, redact, suggest};
use super::{
    AgentConfig, AggregatorConfig, Config, InputConfig, OutputConfig, ProcessorConfig,
    StartupErrorBehavior,
};
use super::{Registry, Selection};
use sonde_plugins::plugin::{Aggregator, InputPlugin, Output};

pub const INPUT_KEYS: &[&str] = &[
    "interval",
    "precision",
    "collection_jitter",
    "collection_offset",
    "name_override",
    "name_prefix",
    "name_suffix",
    "alias",
    "tags",
    "log_level",
    "startup_error_behavior",
];
pub const PROCESSOR_KEYS: &[&str] = &["order", "alias", "log_level"];
pub const AGGREGATOR_KEYS: &[&str] = &[
    "period",
    "delay",
    "grace",
    "drop_original",
    "name_override",
    "name_prefix",
    "name_suffix",
    "alias",
    "tags",
    "log_level",
];
pub const OUTPUT_KEYS: &[&str] = &[
    "alias",
    "flush_interval",
    "flush_jitter",
    "metric_batch_size",
    "metric_buffer_limit",
    "metric_buffer_limit_bytes",
    "name_override",
    "name_prefix",
    "name_suffix",
    "log_level",
    "startup_error_behavior",
    "buffer_strategy",
    "buffer_directory",
    "buffer_disk_limit",
    "buffer_disk_sync",
    "overflow",
];

const LOG_LEVELS: &[&str] = &["", "error", "warn", "info", "debug", "trace"];
const STARTUP_BEHAVIORS: &[&str] = &["error", "retry", "ignore", "probe"];

/// Builds every selected plugin of `doc` into `cfg`, recording problems in `diags`.
pub fn build_all(
    doc: &Doc,
    registry: &Registry,
    selection: &Selection,
    cfg: &mut Config,
    diags: &mut Vec<Diagnostic>,
) {
    let agent = cfg.agent.clone();
    for_each(
        doc,
        "inputs",
        registry.inputs,
        &selection.inputs,
        diags,
        |sec, spec| {
            log_level(sec, "inputs", spec.name, &mut cfg.agent);
            let (alias, finish) = input_options(sec, &agent, spec.name);
            let plugin = build(sec, spec, INPUT_KEYS, &agent, alias.as_deref())?;
            cfg.inputs.push(finish(plugin));
            Some(())
        },
    );
    for_each(
        doc,
        "processors",
        registry.processors,
        &selection.processors,
        diags,
        |sec, spec| {
            let alias = sec.string("alias");
            let order = sec.int("order").unwrap_or(0);
            log_level(sec, "processors", spec.name, &mut cfg.agent);
            let filter = sec.filter();
            let plugin = build(sec, spec, PROCESSOR_KEYS, &agent, alias.as_deref())?;
            cfg.processors.push(ProcessorConfig {
                name: spec.name.into(),
                alias,
                order,
                filter,
                plugin,
            });
            Some(())
        },
    );
    for_each(
        doc,
        "aggregators",
        registry.aggregators,
        &selection.aggregators,
        diags,
        |sec, spec| {
            log_level(sec, "aggregators", spec.name, &mut cfg.agent);
            let (alias, finish) = aggregator_options(sec, spec.name);
            let plugin = build(sec, spec, AGGREGATOR_KEYS, &agent, alias.as_deref())?;
            cfg.aggregators.push(finish(plugin));
            Some(())
        },
    );
    for_each(
        doc,
        "outputs",
        registry.outputs,
        &selection.outputs,
        diags,
        |sec, spec| {
            log_level(sec, "outputs", spec.name, &mut cfg.agent);
            let (alias, finish) = output_options(sec, &agent, spec.name);
            let plugin = build(sec, spec, OUTPUT_KEYS, &agent, alias.as_deref())?;
            cfg.outputs.push(finish(plugin));
            Some(())
        },
    );
}

/// Calls `f` for every selected `[[kind.name]]` table of the document.
fn for_each<T>(
    doc: &Doc,
    kind: &str,
    specs: &[Spec<T>],
    selected: &[String],
    diags: &mut Vec<Diagnostic>,
    mut f: impl FnMut(&mut Section, &Spec<T>) -> Option<()>,
) {
    let Some(value) = doc.table.get(kind) else {
        return;
    };
    let singular = kind.trim_end_matches('s');
    let Some(plugins) = value.as_table() else {
        let mut sec = Section::new(doc, vec![], kind.into(), Default::default());
        sec.error(
            &[kind.into()],
            true,
            format!(
                "expected tables like [[{kind}.NAME]], found {}",
                value.type_str()
            ),
        );
        diags.extend(sec.errors);
        return;
    };
    for (name, instances) in plugins {
        if !selected.is_empty() && !selected.iter().any(|s| s == name) {
            continue;
        }
        let prefix = vec![kind.to_string(), name.clone()];
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            let hint = did_you_mean(suggest(name, specs.iter().map(|s| s.name)));
            let mut sec = Section::new(doc, prefix, format!("{kind}.{name}"), Default::default());
            sec.error(
                &[],
                false,
                format!("unknown {singular} plugin {name:?}{hint}"),
            );
            diags.extend(sec.errors);
            continue;
        };
        // `[[inputs.x]]` (an array of tables) is the norm; Telegraf also takes `[inputs.x]`.
        let tables: Vec<(Vec<String>, String, toml::Value)> = match instances {
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut p = prefix.clone();
                    p.push(i.to_string());
                    (p, format!("{kind}.{name}[{i}]"), t.clone())
                })
                .collect(),
            other => vec![(prefix.clone(), format!("{kind}.{name}"), other.clone())],
        };
        for (path, section_name, table) in tables {
            let mut sec = Section::new(doc, path, section_name, Default::default());
            match table {
                toml::Value::Table(t) => {
                    sec.table = t;
                    let _ = f(&mut sec, spec);
                }
                other => sec.error_at_header(format!(
                    "expected a table like [[{kind}.{name}]], found {}",
                    other.type_str()
                )),
            }
            diags.extend(sec.errors);
        }
    }
}

/// A plugin's `log_level`: the level of the log messages of its own code (its module), kept
/// for the logger as a `sonde_plugins::<kind>::<name>=<level>` directive.
fn log_level(sec: &mut Section, kind: &str, name: &str, agent: &mut AgentConfig) {
    if let Some(level) = sec
        .choice("log_level", LOG_LEVELS)
        .filter(|l| !l.is_empty())
    {
        agent
            .plugin_log_levels
            .push((format!("sonde_plugins::{kind}::{name}"), level));
    }
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

/// Takes an input's common options; returns its alias and how to finish the config once
/// the plugin is built.
fn input_options(
    sec: &mut Section,
    agent: &AgentConfig,
    name: &str,
) -> (
    Option<String>,
    impl FnOnce(InputPlugin) -> InputConfig + use<>,
) {
    let alias = sec.string("alias");
    let interval = sec.positive_duration("interval").unwrap_or(agent.interval);
    let collection_jitter = sec
        .duration("collection_jitter")
        .unwrap_or(agent.collection_jitter);
    let collection_offset = sec
        .duration("collection_offset")
        .unwrap_or(agent.collection_offset);
    let precision = sec.duration("precision").unwrap_or(agent.precision);
    let name_override = sec.string("name_override");
    let name_prefix = sec.string("name_prefix");
    let name_suffix = sec.string("name_suffix");
    let tags = sorted(sec.string_map("tags"));
    let startup_error_behavior = StartupErrorBehavior::parse(
        sec.choice("startup_error_behavior", STARTUP_BEHAVIORS)
            .as_deref(),
    );
    let filter = sec.filter();
    let name = name.to_string();
    let a = alias.clone();
    let finish = move |plugin| InputConfig {
        name,
        alias: a,
        interval,
        collection_jitter,
        collection_offset,
        precision,
        name_override,
        name_prefix,
        name_suffix,
        tags,
        filter,
        startup_error_behavior,
        start_pending: false,
        plugin,
    };
    (alias, finish)
}

fn aggregator_options(
    sec: &mut Section,
    name: &str,
) -> (
    Option<String>,
    impl FnOnce(Box<dyn Aggregator>) -> AggregatorConfig + use<>,
) {
    let alias = sec.string("alias");
    let period = sec
        .positive_duration("period")
        .unwrap_or(Duration::from_secs(30));
    let delay = sec.duration("delay").unwrap_or(Duration::from_millis(100));
    let grace = sec.duration("grace").unwrap_or(Duration::ZERO);
    let drop_original = sec.bool("drop_original").unwrap_or(false);
    let name_override = sec.string("name_override");
    let name_prefix = sec.string("name_prefix");
    let name_suffix = sec.string("name_suffix");
    let tags = sorted(sec.string_map("tags"));
    let filter = sec.filter();
    let name = name.to_string();
    let a = alias.clone();
    let finish = move |plugin| AggregatorConfig {
        name,
        alias: a,
        period,
        delay,
        grace,
        drop_original,
        name_override,
        name_prefix,
        name_suffix,
        tags,
        filter,
        plugin,
    };
    (alias, finish)
}

fn output_options(
    sec: &mut Section,
    agent: &AgentConfig,
    name: &str,
) -> (
    Option<String>,
    impl FnOnce(Box<dyn Output>) -> OutputConfig + use<>,
) {
    // The table as written, to tell on reload whether this output changed.
    let fingerprint = toml::to_string(&sec.table).unwrap_or_default();
    let alias = sec.string("alias");
    let flush_interval = sec
        .positive_duration("flush_interval")
        .unwrap_or(agent.flush_interval);
    let flush_jitter = sec.duration("flush_jitter").unwrap_or(agent.flush_jitter);
    let batch = sec.count("metric_batch_size", 1);
    let limit = sec.count("metric_buffer_limit", 1);
    let metric_batch_size = batch.unwrap_or(agent.metric_batch_size);
    let metric_buffer_limit = limit.unwrap_or(agent.metric_buffer_limit);
    if metric_buffer_limit < metric_batch_size && (batch.is_some() || limit.is_some()) {
        let key = if limit.is_some() {
            "metric_buffer_limit"
        } else {
            "metric_batch_size"
        };
        sec.value_error(
            key,
            format!(
                "metric_buffer_limit ({metric_buffer_limit}) must be at least metric_batch_size ({metric_batch_size})"
            ),
        );
    }
    let mut metric_buffer_limit_bytes = agent.metric_buffer_limit_bytes;
    if let Some(n) = sec.size("metric_buffer_limit_bytes") {
        if n == 0 {
            sec.value_error("metric_buffer_limit_bytes", "must be more than zero".into());
        } else {
            metric_buffer_limit_bytes = n;
        }
    }
    let name_override = sec.string("name_override");
    let name_prefix = sec.string("name_prefix");
    let name_suffix = sec.string("name_suffix");
    let startup_error_behavior = StartupErrorBehavior::parse(
        sec.choice("startup_error_behavior", STARTUP_BEHAVIORS)
            .as_deref(),
    );
    let mut buffer = agent.buffer.clone();
    buffer.apply(sec);
    let filter = sec.filter();
    let name = name.to_string();
    let a = alias.clone();
    let finish = move |plugin| OutputConfig {
        name,
        alias: a,
        flush_interval,
        flush_jitter,
        metric_batch_size,
        metric_buffer_limit,
        metric_buffer_limit_bytes,
        buffer_strategy: buffer.strategy(),
        buffer_directory: buffer.directory,
        overflow: buffer.overflow,
        name_override,
        name_prefix,
        name_suffix,
        filter,
        startup_error_behavior,
        plugin,
        fingerprint,
    };
    (alias, finish)
}

/// Most unknown keys one table reports (each is found by building again without it).
const MAX_UNKNOWN: usize = 20;

/// Takes the format keys, builds the plugin and maps its errors onto the text. Returns the
/// plugin only when the whole table was valid.
fn build<T>(
    sec: &mut Section,
    spec: &Spec<T>,
    common: &[&str],
    agent: &AgentConfig,
    alias: Option<&str>,
) -> Option<T> {
    let mut ctx = BuildContext {
        hostname: agent.hostname.clone(),
        id: alias.unwrap_or(spec.name).to_string(),
        parser: None,
        serializer: None,
    };
    let mut known: Vec<&str> = common.iter().chain(FILTER_KEYS).copied().collect();
    match spec.format {
        Format::None => {}
        Format::Parser(default) => {
            known.extend(PARSER_KEYS);
            if let Some(cfg) = take_format::<ParserConfig>(sec, PARSER_KEYS) {
                // json, value, json_v2 and html name their metrics after the plugin (Telegraf).
                match codec::build_parser_with_name(&cfg, default, Some(spec.name)) {
                    Ok(p) => ctx.parser = Some(p),
                    Err(e) => sec.error(&["data_format".into()], true, format!("{e:#}")),
                }
            }
        }
        Format::Serializer(default) => {
            known.extend(SERIALIZER_KEYS);
            if let Some(cfg) = take_format::<SerializerConfig>(sec, SERIALIZER_KEYS) {
                match codec::build_serializer(&cfg, default) {
                    Ok(s) => ctx.serializer = Some(s),
                    Err(e) => sec.error(&["data_format".into()], true, format!("{e:#}")),
                }
            }
        }
    }
    let mut table = std::mem::take(&mut sec.table);
    let original = table.clone();
    let mut built = None;
    for _ in 0..=MAX_UNKNOWN {
        match (spec.build)(table.clone(), &ctx) {
            Ok(p) => {
                built = Some(p);
                break;
            }
            Err(BuildError::Other(e)) => {
                sec.error_at_header(format!("{e:#}"));
                break;
            }
            Err(BuildError::Config(e)) => {
                let message = clean(&e.message);
                let unknown = plugin_error(sec, &original, e.path, &message, &known);
                // Report every unknown key, not just the first serde stops at.
                match unknown {
                    Some(path) if remove_path(&mut table, &path) => continue,
                    _ => break,
                }
            }
        }
    }
    if sec.errors.is_empty() { built } else { None }
}

/// Takes the format keys into their config struct, recording errors at their keys.
fn take_format<C: serde::de::DeserializeOwned>(sec: &mut Section, keys: &[&str]) -> Option<C> {
    let mut sub = toml::Table::new();
    for k in keys {
        if let Some(v) = sec.table.remove(*k) {
            sub.insert(k.to_string(), v);
        }
    }
    let original = sub.clone();
    match sonde_plugins::registry::parse_config::<C>(sub) {
        Ok(c) => Some(c),
        Err(BuildError::Config(e)) => {
            plugin_error(sec, &original, e.path, &clean(&e.message), &[]);
            None
        }
        Err(BuildError::Other(e)) => {
            sec.error_at_header(format!("{e:#}"));
            None
        }
    }
}

/// Records a plugin's config error at its key. For an unknown key returns its path, so the
/// caller can look for more.
fn plugin_error(
    sec: &mut Section,
    table: &toml::Table,
    mut path: Vec<String>,
    message: &str,
    common: &[&str],
) -> Option<Vec<String>> {
    if let Some(key) = between(message, "unknown field `", "`") {
        if path.last().map(String::as_str) != Some(key) {
            path.push(key.to_string());
        }
        // serde lists the valid keys: "expected one of `a`, `b`" or "expected `a`".
        let expected = message.split_once("expected").map_or("", |(_, e)| e);
        let own = expected.split('`').skip(1).step_by(2);
        // Common keys are valid only at the top of the plugin's table.
        let top = if path.len() == 1 { common } else { &[] };
        let hint = did_you_mean(suggest(key, own.chain(top.iter().copied())));
        let msg = format!("unknown key {:?}{hint}", dotted(&path));
        sec.error(&path, false, msg);
        return Some(path);
    }
    if let Some(key) = between(message, "missing field `", "`") {
        let mut full = path.clone();
        full.push(key.to_string());
        sec.error(
            &path,
            true,
            format!("missing required key {:?}", dotted(&full)),
        );
        return None;
    }
    let last_key = path
        .iter()
        .rev()
        .find(|s| s.parse::<usize>().is_err())
        .cloned()
        .unwrap_or_default();
    let mut msg = redact(&last_key, lookup(table, &path), message.to_string());
    // "unknown variant `gzp`, expected `gzip` or `identity`": suggest the nearest too.
    if let Some(variant) = between(message, "unknown variant `", "`") {
        let expected = message.split_once("expected").map_or("", |(_, e)| e);
        msg.push_str(&did_you_mean(suggest(
            variant,
            expected.split('`').skip(1).step_by(2),
        )));
    }
    let msg = if path.is_empty() {
        msg
    } else {
        format!("{}: {msg}", dotted(&path))
    };
    sec.error(&path, true, msg);
    None
}

/// The toml crate ends value errors with "\nin `key`": we name the key ourselves.
fn clean(message: &str) -> String {
    let m = message.split("\nin `").next().unwrap_or(message);
    m.trim_end().to_string()
}

fn between<'m>(s: &'m str, start: &str, end: &str) -> Option<&'m str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// `commands[1]`, `headers.Authorization`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

fn lookup<'t>(table: &'t toml::Table, path: &[String]) -> Option<&'t toml::Value> {
    let (first, rest) = path.split_first()?;
    let mut v = table.get(first)?;
    for seg in rest {
        v = match v {
            toml::Value::Table(t) => t.get(seg)?,
            toml::Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn remove_path(table: &mut toml::Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut t = table;
    for seg in parents {
        let next = t.get_mut(seg);
        t = match next {
            Some(toml::Value::Table(inner)) => inner,
            _ => return false,
        };
    }
    t.remove(last).is_some()
}
