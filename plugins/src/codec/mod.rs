//! Codecs: `data_format` parsers and serializers.
//!
//! Plugins that read or write a `data_format` are given an `Arc<dyn Parser>` or
//! `Arc<dyn Serializer>` built here from the format keys of their table.

pub mod gjson;
pub mod html;
pub mod influx;
pub mod json;
pub mod json_v2;
pub mod openmetrics;
pub mod prometheus;
pub mod prometheus_series;
pub mod record;
pub mod series_memo;
pub(crate) mod slots;
pub mod value;
pub mod wire;

use std::sync::Arc;

use serde::Deserialize;

use crate::model::{self, Metric};

/// One bad line (or record) of an input, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

pub trait Parser: Send + Sync {
    /// Parses a whole payload, appending good metrics to `out`. Every bad line is reported and
    /// parsing carries on with the next. Metrics without a timestamp get `now`.
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError>;
}

pub trait Serializer: Send + Sync {
    /// Appends the batch, encoded, to `out`.
    fn serialize(&self, batch: &[Metric], out: &mut Vec<u8>);
    /// The HTTP Content-Type of the encoding.
    fn content_type(&self) -> &'static str;
}

/// Telegraf's parser options, taken from a plugin's table by the agent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParserConfig {
    pub data_format: Option<String>,
    /// `value` format: integer (the default), float, string, boolean, base64, auto_integer or
    /// auto_float.
    pub data_type: Option<String>,
    /// `value` format: the field name (default "value").
    pub value_field_name: Option<String>,
    /// `json` format.
    pub json_name_key: Option<String>,
    pub json_query: Option<String>,
    pub json_time_key: Option<String>,
    pub json_time_format: Option<String>,
    pub json_timezone: Option<String>,
    /// `json` format: one bad object in an array rejects the payload (default true).
    pub json_strict: Option<bool>,
    pub json_string_fields: Option<Vec<String>>,
    pub tag_keys: Option<Vec<String>>,
    /// `prometheus` format: 1 or 2 (Telegraf's parser default: 2).
    pub prometheus_metric_version: Option<u8>,
    /// `prometheus` format: use the gather time, not the samples' timestamps.
    pub prometheus_ignore_timestamp: Option<bool>,
    /// `openmetrics` format: 1 or 2 (default 2).
    pub openmetrics_metric_version: Option<u8>,
    /// `openmetrics` format: use the gather time, not the samples' timestamps.
    pub openmetrics_ignore_timestamp: Option<bool>,
    /// `influx` format: precision of timestamps without one given by the caller.
    pub influx_timestamp_precision: Option<crate::config_types::Duration>,
    /// `json_v2` format: the `[[inputs.NAME.json_v2]]` tables.
    pub json_v2: Option<Vec<json_v2::Config>>,
    /// `html` format: the `[[inputs.NAME.html]]` tables.
    pub html: Option<Vec<html::Config>>,
}

/// Telegraf's serializer options, taken from a plugin's table by the agent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerializerConfig {
    pub data_format: Option<String>,
    pub influx_sort_fields: Option<bool>,
    pub influx_uint_support: Option<bool>,
    pub influx_max_line_bytes: Option<usize>,
    pub json_timestamp_units: Option<crate::config_types::Duration>,
    pub prometheus_export_timestamp: Option<bool>,
    pub prometheus_sort_metrics: Option<bool>,
    pub prometheus_string_as_label: Option<bool>,
}

/// The keys of [`ParserConfig`], for the agent to split them from a plugin's own keys.
pub const PARSER_KEYS: &[&str] = &[
    "data_format",
    "data_type",
    "value_field_name",
    "json_name_key",
    "json_query",
    "json_time_key",
    "json_time_format",
    "json_timezone",
    "json_strict",
    "json_string_fields",
    "tag_keys",
    "influx_timestamp_precision",
    "prometheus_metric_version",
    "prometheus_ignore_timestamp",
    "openmetrics_metric_version",
    "openmetrics_ignore_timestamp",
    "json_v2",
    "html",
];

/// The keys of [`SerializerConfig`].
pub const SERIALIZER_KEYS: &[&str] = &[
    "data_format",
    "influx_sort_fields",
    "influx_uint_support",
    "influx_max_line_bytes",
    "json_timestamp_units",
    "prometheus_export_timestamp",
    "prometheus_sort_metrics",
    "prometheus_string_as_label",
];

/// Builds the parser for `data_format` (or `default_format` when unset). Formats that name
/// their metrics themselves (`json`, `value`) use the format's name; see
/// [`build_parser_with_name`].
pub fn build_parser(cfg: &ParserConfig, default_format: &str) -> anyhow::Result<Arc<dyn Parser>> {
    build_parser_with_name(cfg, default_format, None)
}

/// Like [`build_parser`], with the measurement name `json` and `value` payloads get (Telegraf
/// uses the plugin's name, e.g. "exec"); `None` keeps "json"/"value".
pub fn build_parser_with_name(
    cfg: &ParserConfig,
    default_format: &str,
    default_name: Option<&str>,
) -> anyhow::Result<Arc<dyn Parser>> {
    let format = cfg.data_format.as_deref().unwrap_or(default_format);
    let name = |fallback: &str| model::Str::from(default_name.unwrap_or(fallback));
    // Sub-tables of another format would be silently ignored: refuse them.
    for (key, given) in [
        ("json_v2", cfg.json_v2.is_some()),
        ("html", cfg.html.is_some()),
    ] {
        if given && format != key {
            anyhow::bail!("[[...{key}]] tables need data_format = \"{key}\" (it is {format:?})");
        }
    }
    match format {
        "influx" => {
            let precision = cfg
                .influx_timestamp_precision
                .map_or(1, |d| d.get().as_nanos().clamp(1, i64::MAX as u128) as i64);
            Ok(Arc::new(influx::InfluxParser { precision }))
        }
        "json" => Ok(Arc::new(json::JsonParser {
            name: name("json"),
            name_key: cfg.json_name_key.clone().filter(|k| !k.is_empty()),
            query: match cfg.json_query.as_deref().filter(|q| !q.is_empty()) {
                Some(q) => {
                    Some(gjson::Path::parse(q).map_err(|e| anyhow::anyhow!("json_query: {e}"))?)
                }
                None => None,
            },
            time_key: cfg.json_time_key.clone().filter(|k| !k.is_empty()),
            time_format: match cfg.json_time_format.as_deref().filter(|f| !f.is_empty()) {
                Some(f) => json::TimeFormat::from_name(f)
                    .map_err(|e| anyhow::anyhow!("json_time_format: {e}"))?,
                None if cfg.json_time_key.as_deref().is_some_and(|k| !k.is_empty()) => {
                    anyhow::bail!(
                        "json_time_key needs json_time_format (e.g. \"unix\" or \"2006-01-02T15:04:05Z07:00\")"
                    )
                }
                None => json::TimeFormat::Unix(1_000_000_000),
            },
            location: crate::common::timestamp::Location::from_name(
                cfg.json_timezone.as_deref().unwrap_or(""),
            )
            .map_err(|e| anyhow::anyhow!("json_timezone: {e}"))?,
            strict: cfg.json_strict.unwrap_or(true),
            string_fields: cfg.json_string_fields.clone().unwrap_or_default(),
            tag_keys: cfg.tag_keys.clone().unwrap_or_default(),
        })),
        "json_v2" => Ok(Arc::new(
            json_v2::JsonV2Parser::new(
                cfg.json_v2.as_deref().unwrap_or_default(),
                &name("json_v2"),
            )
            .map_err(anyhow::Error::msg)?,
        )),
        "html" => Ok(Arc::new(
            html::HtmlParser::new(cfg.html.as_deref().unwrap_or_default(), &name("html"))
                .map_err(anyhow::Error::msg)?,
        )),
        "prometheus" => Ok(Arc::new(prometheus::PrometheusFormat {
            parser: prometheus::PrometheusParser {
                metric_version: metric_version(
                    "prometheus_metric_version",
                    cfg.prometheus_metric_version,
                )?,
                openmetrics: None,
            },
            ignore_timestamp: cfg.prometheus_ignore_timestamp.unwrap_or(false),
        })),
        "openmetrics" => Ok(Arc::new(openmetrics::OpenMetricsParser {
            metric_version: metric_version(
                "openmetrics_metric_version",
                cfg.openmetrics_metric_version,
            )?,
            ignore_timestamp: cfg.openmetrics_ignore_timestamp.unwrap_or(false),
        })),
        "value" => Ok(Arc::new(value::ValueParser {
            data_type: value::DataType::from_name(cfg.data_type.as_deref().unwrap_or(""))?,
            field: cfg.value_field_name.as_deref().unwrap_or("value").into(),
            name: name("value"),
        })),
        other => anyhow::bail!(
            "unknown data_format {other:?} for a parser (expected influx, json, json_v2, html, prometheus, openmetrics or value)"
        ),
    }
}

/// Telegraf's parsers take metric version 1 or 2, and 2 when unset (0).
fn metric_version(key: &str, v: Option<u8>) -> anyhow::Result<u8> {
    match v.unwrap_or(2) {
        0 | 2 => Ok(2),
        1 => Ok(1),
        other => anyhow::bail!("{key} = {other}: expected 1 or 2"),
    }
}

/// Builds the serializer for `data_format` (or `default_format` when unset).
pub fn build_serializer(
    cfg: &SerializerConfig,
    default_format: &str,
) -> anyhow::Result<Arc<dyn Serializer>> {
    let format = cfg.data_format.as_deref().unwrap_or(default_format);
    match format {
        "influx" => Ok(Arc::new(influx::InfluxSerializer {
            opts: influx::InfluxOptions {
                sort_fields: cfg.influx_sort_fields.unwrap_or(false),
                uint_support: cfg.influx_uint_support.unwrap_or(false),
                max_line_bytes: cfg.influx_max_line_bytes.unwrap_or(0),
            },
        })),
        "json" => Ok(Arc::new(json::JsonSerializer::with_units(
            cfg.json_timestamp_units
                .map_or(std::time::Duration::from_secs(1), |d| d.get()),
        ))),
        "prometheus" => Ok(Arc::new(prometheus::PrometheusSerializer {
            export_timestamp: cfg.prometheus_export_timestamp.unwrap_or(false),
            sort_metrics: cfg.prometheus_sort_metrics.unwrap_or(false),
            string_as_label: cfg.prometheus_string_as_label.unwrap_or(false),
        })),
        other => anyhow::bail!(
            "unknown data_format {other:?} for a serializer (expected influx, json or prometheus)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser(cfg: &SerializerConfig, m: &Metric) -> String {
        let mut out = Vec::new();
        build_serializer(cfg, "influx")
            .unwrap()
            .serialize(std::slice::from_ref(m), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn influx_data_format_writes_unsigned_as_telegraf_by_default() {
        let m = Metric::new("mem", 1)
            .with_field("free", 5u64)
            .with_field("big", u64::MAX);
        assert_eq!(
            ser(&SerializerConfig::default(), &m),
            "mem free=5i,big=9223372036854775807i 1\n"
        );
        let on = SerializerConfig {
            influx_uint_support: Some(true),
            ..Default::default()
        };
        assert_eq!(ser(&on, &m), "mem free=5u,big=18446744073709551615u 1\n");
    }

    #[test]
    fn json_options_are_checked_when_built() {
        let cfg = |f: &str, tz: &str| ParserConfig {
            data_format: Some("json".into()),
            json_time_key: Some("t".into()),
            json_time_format: Some(f.into()),
            json_timezone: Some(tz.into()),
            ..Default::default()
        };
        assert!(build_parser(&cfg("2006-01-02 15:04:05", "Europe/Berlin"), "json").is_ok());
        let e = build_parser(&cfg("unix", "Mars/Olympus"), "json")
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("json_timezone"), "{e:#}");
        let e = build_parser(&cfg("yesterday", ""), "json").err().unwrap();
        assert!(format!("{e:#}").contains("json_time_format"), "{e:#}");
    }
}
