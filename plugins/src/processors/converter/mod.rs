//! `processors.converter`: change the type of fields, turn tags into fields (or the
//! measurement name, or the timestamp) and fields into tags, with Telegraf's rules.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::common::timestamp::{self, Location, TimeFormat, TimeValue};
use crate::model::{FieldValue, Metric, Str};
use crate::plugin::{BuildContext, Processor};
use crate::registry::{BuildError, ConfigError, Format, ProcessorSpec, parse_config};
use crate::selfstat::{self, Stat, Stats};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub tags: Option<TagConversions>,
    pub fields: Option<FieldConversions>,
}

/// `[processors.converter.tags]`: target type = list of tag-key globs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConversions {
    #[serde(default)]
    pub measurement: Vec<String>,
    #[serde(default)]
    pub string: Vec<String>,
    #[serde(default)]
    pub integer: Vec<String>,
    #[serde(default)]
    pub unsigned: Vec<String>,
    #[serde(default)]
    pub boolean: Vec<String>,
    #[serde(default)]
    pub float: Vec<String>,
    #[serde(default)]
    pub timestamp: Vec<String>,
    pub timestamp_format: Option<String>,
}

/// `[processors.converter.fields]`: target type = list of field-key globs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConversions {
    #[serde(default)]
    pub measurement: Vec<String>,
    #[serde(default)]
    pub tag: Vec<String>,
    #[serde(default)]
    pub string: Vec<String>,
    #[serde(default)]
    pub integer: Vec<String>,
    #[serde(default)]
    pub unsigned: Vec<String>,
    #[serde(default)]
    pub boolean: Vec<String>,
    #[serde(default)]
    pub float: Vec<String>,
    #[serde(default)]
    pub timestamp: Vec<String>,
    pub timestamp_format: Option<String>,
    /// String fields holding the base64 of an IEEE 754 binary32, big-endian (as gNMI sends
    /// e.g. `"RKeAAA=="` for 1340), become floats.
    #[serde(default)]
    pub base64_ieee_float32: Vec<String>,
}

/// What a matching key becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Measurement,
    Tag,
    String,
    Integer,
    Unsigned,
    Boolean,
    Float,
    Timestamp,
    Base64Float32,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Measurement => "measurement",
            Target::Tag => "tag",
            Target::String => "string",
            Target::Integer => "integer",
            Target::Unsigned => "unsigned",
            Target::Boolean => "boolean",
            Target::Float => "float",
            Target::Timestamp => "timestamp",
            Target::Base64Float32 => "base64_ieee_float32",
        }
    }
}

/// Glob lists in Telegraf's precedence order: the first list matching a key wins.
struct Rules {
    rules: Vec<(Target, Vec<glob::Pattern>)>,
    /// The `timestamp_format` (unix ... unix_ns or a Go layout), when `timestamp` is used.
    ts_format: Option<TimeFormat>,
}

impl Rules {
    fn target(&self, key: &str) -> Option<Target> {
        self.rules
            .iter()
            .find(|(_, pats)| pats.iter().any(|p| p.matches(key)))
            .map(|(t, _)| *t)
    }
}

fn compile(
    section: &str,
    lists: Vec<(Target, Vec<String>)>,
    ts_format: Option<String>,
) -> Result<Rules, ConfigError> {
    let err = |path: Vec<String>, message: String| ConfigError { path, message };
    let mut rules = Vec::new();
    let mut wants_ts = false;
    for (target, globs) in lists {
        let mut pats = Vec::new();
        for (i, g) in globs.iter().enumerate() {
            let p = glob::Pattern::new(g).map_err(|e| {
                let path = vec![section.into(), target.name().into(), i.to_string()];
                err(path, format!("invalid glob {g:?}: {e}"))
            })?;
            pats.push(p);
        }
        if !pats.is_empty() {
            wants_ts |= target == Target::Timestamp;
            rules.push((target, pats));
        }
    }
    let path = vec![section.into(), "timestamp_format".into()];
    let ts_format = match ts_format.as_deref().filter(|f| !f.is_empty()) {
        // Telegraf's converter reads the same formats as its json parser, in UTC.
        Some(f) => Some(TimeFormat::from_name(f).map_err(|e| err(path, e))?),
        None if wants_ts => {
            return Err(err(path, "required when `timestamp` is set".into()));
        }
        None => None,
    };
    Ok(Rules { rules, ts_format })
}

pub struct Converter {
    tags: Option<Rules>,
    fields: Option<Rules>,
    /// Keeps the self-metrics registered for as long as the processor lives.
    _stats: std::sync::Arc<Stats>,
    conversion_errors: Stat,
    metrics_dropped: Stat,
    warn: WarnLimiter,
}

/// Logs the first conversion failure, then at most one summary a minute, so a bad field
/// on every metric is visible without flooding the log.
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn warn(&mut self, msg: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            self.suppressed += 1;
            return;
        }
        let msg = msg();
        if self.suppressed > 0 {
            tracing::warn!(
                "processors.converter: {msg} ({} more failures not logged)",
                self.suppressed
            );
        } else {
            tracing::warn!("processors.converter: {msg}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}

impl Converter {
    fn fail(&mut self, what: &str, key: &str, value: &FieldValue, target: Target) {
        self.conversion_errors.incr();
        self.warn.warn(|| {
            format!(
                "cannot convert {what} {key:?} ({} {value:?}) to {}; dropped it",
                value.type_name(),
                target.name()
            )
        });
    }

    fn convert_tags(&mut self, m: &mut Metric) {
        let Some(rules) = self.tags.take() else {
            return;
        };
        let tags = std::mem::take(&mut m.tags);
        for (key, value) in tags {
            let Some(target) = rules.target(&key) else {
                // Untouched tags go back in order, so the list stays sorted.
                m.tags.push((key, value));
                continue;
            };
            let as_value = FieldValue::String(value);
            match target {
                Target::Measurement => m.name = to_string(&as_value),
                Target::Timestamp => match to_time(&as_value, rules.ts_format.as_ref()) {
                    Some(t) => m.time = t,
                    None => {
                        // Telegraf keeps the tag when it is not a valid timestamp.
                        self.fail("tag", &key, &as_value, target);
                        m.tags.push((key, to_string(&as_value)));
                    }
                },
                _ => match convert(&as_value, target) {
                    Some(v) => m.add_field(key, v),
                    None => self.fail("tag", &key, &as_value, target),
                },
            }
        }
        self.tags = Some(rules);
    }

    fn convert_fields(&mut self, m: &mut Metric) {
        let Some(rules) = self.fields.take() else {
            return;
        };
        let fields = std::mem::take(&mut m.fields);
        for (key, value) in fields {
            let Some(target) = rules.target(&key) else {
                m.fields.push((key, value));
                continue;
            };
            match target {
                Target::Measurement => m.name = to_string(&value),
                Target::Tag => m.add_tag(key, to_string(&value)),
                Target::Timestamp => match to_time(&value, rules.ts_format.as_ref()) {
                    Some(t) => m.time = t,
                    None => {
                        self.fail("field", &key, &value, target);
                        m.fields.push((key, value));
                    }
                },
                _ => match convert(&value, target) {
                    Some(v) => m.fields.push((key, v)),
                    None => self.fail("field", &key, &value, target),
                },
            }
        }
        self.fields = Some(rules);
    }
}

impl Processor for Converter {
    fn apply(&mut self, mut batch: Vec<Metric>) -> Vec<Metric> {
        for m in &mut batch {
            self.convert_tags(m);
            self.convert_fields(m);
        }
        let before = batch.len();
        // A metric must keep at least one field (e.g. after turning every field into a tag).
        batch.retain(|m| !m.fields.is_empty());
        let dropped = before - batch.len();
        if dropped > 0 {
            self.metrics_dropped.add(dropped as i64);
            self.warn.warn(|| {
                format!("{dropped} metrics left without fields after conversion; dropped them")
            });
        }
        batch
    }
}

/// Converts to a field of the target type as Telegraf does; None when the value cannot be.
fn convert(v: &FieldValue, target: Target) -> Option<FieldValue> {
    Some(match target {
        Target::String => FieldValue::String(to_string(v)),
        Target::Integer => FieldValue::Int(to_integer(v)?),
        Target::Unsigned => FieldValue::UInt(to_unsigned(v)?),
        Target::Boolean => FieldValue::Bool(to_bool(v)?),
        Target::Float => FieldValue::Float(to_float(v)?),
        Target::Base64Float32 => FieldValue::Float(base64_f32(v)? as f64),
        Target::Measurement | Target::Tag | Target::Timestamp => return None,
    })
}

/// Telegraf's base64_ieee_float32: exactly four bytes, most significant first.
fn base64_f32(v: &FieldValue) -> Option<f32> {
    use base64::Engine as _;
    let FieldValue::String(s) = v else {
        return None;
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .ok()?;
    Some(f32::from_be_bytes(bytes.try_into().ok()?))
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip form, no exponent.
fn to_string(v: &FieldValue) -> Str {
    match v {
        FieldValue::String(s) => s.clone(),
        FieldValue::Int(i) => i.to_string().into(),
        FieldValue::UInt(u) => u.to_string().into(),
        FieldValue::Bool(b) => b.to_string().into(),
        FieldValue::Float(f) if f.is_infinite() => if *f > 0.0 { "+Inf" } else { "-Inf" }.into(),
        FieldValue::Float(f) => f.to_string().into(),
    }
}

/// Parses a float as Go's `strconv.ParseFloat` does for ordinary input.
fn parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Rounds half away from zero and saturates at the integer range, as Telegraf does.
fn float_to_i64(f: f64) -> Option<i64> {
    // Go gives an undefined value for NaN; refusing it is the only sane reading.
    (!f.is_nan()).then(|| f.round() as i64)
}

fn float_to_u64(f: f64) -> Option<u64> {
    (!f.is_nan()).then(|| if f < 0.0 { 0 } else { f.round() as u64 })
}

/// Integers from strings first (decimal or `0x` hex), then as a rounded float:
/// "3.7" becomes 4, "-2.5" becomes -3, "1e3" becomes 1000.
fn to_integer(v: &FieldValue) -> Option<i64> {
    match v {
        FieldValue::Int(i) => Some(*i),
        FieldValue::UInt(u) => Some(i64::try_from(*u).unwrap_or(i64::MAX)),
        FieldValue::Float(f) => float_to_i64(*f),
        FieldValue::Bool(b) => Some(*b as i64),
        FieldValue::String(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16).ok(),
                None => s.parse::<i64>().ok(),
            };
            parsed.or_else(|| float_to_i64(parse_float(s)?))
        }
    }
}

/// Like [`to_integer`]; negative values become 0.
fn to_unsigned(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::Int(i) => Some((*i).max(0) as u64),
        FieldValue::UInt(u) => Some(*u),
        FieldValue::Float(f) => float_to_u64(*f),
        FieldValue::Bool(b) => Some(*b as u64),
        FieldValue::String(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse::<u64>().ok(),
            };
            parsed.or_else(|| float_to_u64(parse_float(s)?))
        }
    }
}

fn to_float(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Float(f) => Some(*f),
        FieldValue::Int(i) => Some(*i as f64),
        FieldValue::UInt(u) => Some(*u as f64),
        FieldValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        // Hex strings of any length, as Telegraf's big-integer path allows.
        FieldValue::String(s) => match s.strip_prefix("0x") {
            Some(hex) if !hex.is_empty() => hex
                .chars()
                .try_fold(0f64, |acc, c| Some(acc * 16.0 + c.to_digit(16)? as f64)),
            Some(_) => None,
            None => parse_float(s),
        },
    }
}

/// Go's `strconv.ParseBool` for strings; numbers are true when greater than zero.
fn to_bool(v: &FieldValue) -> Option<bool> {
    match v {
        FieldValue::Bool(b) => Some(*b),
        FieldValue::Int(i) => Some(*i > 0),
        FieldValue::UInt(u) => Some(*u > 0),
        FieldValue::Float(f) => Some(*f > 0.0),
        FieldValue::String(s) => match s.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        },
    }
}

/// A timestamp in the `timestamp_format` (the same code as the json parser's).
fn to_time(v: &FieldValue, format: Option<&TimeFormat>) -> Option<i64> {
    let value = match v {
        FieldValue::Int(i) => TimeValue::Int(*i),
        FieldValue::UInt(u) => TimeValue::UInt(*u),
        FieldValue::Float(f) => TimeValue::Float(*f),
        FieldValue::String(s) => TimeValue::Str(s.trim()),
        FieldValue::Bool(_) => return None,
    };
    timestamp::parse(format?, value, &Location::default()).ok()
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let cfg: Config = parse_config(table)?;
    if cfg.tags.is_none() && cfg.fields.is_none() {
        return Err(ConfigError {
            path: vec![],
            message: "nothing to convert: add [processors.converter.tags] or [processors.converter.fields]".into(),
        }
        .into());
    }
    let tags = cfg
        .tags
        .map(|t| {
            let lists = vec![
                (Target::Measurement, t.measurement),
                (Target::String, t.string),
                (Target::Integer, t.integer),
                (Target::Unsigned, t.unsigned),
                (Target::Boolean, t.boolean),
                (Target::Float, t.float),
                (Target::Timestamp, t.timestamp),
            ];
            compile("tags", lists, t.timestamp_format)
        })
        .transpose()?;
    let fields = cfg
        .fields
        .map(|f| {
            let lists = vec![
                (Target::Measurement, f.measurement),
                (Target::Tag, f.tag),
                (Target::Float, f.float),
                (Target::Integer, f.integer),
                (Target::Unsigned, f.unsigned),
                (Target::Boolean, f.boolean),
                (Target::String, f.string),
                (Target::Timestamp, f.timestamp),
                (Target::Base64Float32, f.base64_ieee_float32),
            ];
            compile("fields", lists, f.timestamp_format)
        })
        .transpose()?;
    let id = if ctx.id.is_empty() {
        "converter"
    } else {
        &ctx.id
    };
    let stats = selfstat::register("internal_converter", &[("processor", id)]);
    Ok(Box::new(Converter {
        tags,
        fields,
        conversion_errors: stats.stat("conversion_errors"),
        metrics_dropped: stats.stat("metrics_dropped"),
        _stats: stats,
        warn: WarnLimiter {
            last: None,
            suppressed: 0,
        },
    }))
}

pub const SPEC: ProcessorSpec = ProcessorSpec {
    name: "converter",
    description: "Convert field types, and tags to fields, the measurement name or the timestamp",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(cfg: &str) -> Box<dyn Processor> {
        let t: toml::Table = toml::from_str(cfg).unwrap();
        build(t, &BuildContext::default()).unwrap()
    }

    fn one(cfg: &str, m: Metric) -> Metric {
        let mut out = processor(cfg).apply(vec![m]);
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    #[test]
    fn strings_to_integers_round_like_telegraf() {
        let m = Metric::new("m", 0)
            .with_field("a", "3.7")
            .with_field("b", "-2.5")
            .with_field("c", "42")
            .with_field("d", "0x1F")
            .with_field("e", "1e3")
            .with_field("f", 2.5)
            .with_field("g", u64::MAX)
            .with_field("h", true)
            .with_field("i", "1e30");
        let m = one("[fields]\ninteger = [\"*\"]", m);
        let got: Vec<_> = m.fields.iter().map(|(_, v)| v.clone()).collect();
        let want = [4, -3, 42, 31, 1000, 3, i64::MAX, 1, i64::MAX].map(FieldValue::Int);
        assert_eq!(got, want);
    }

    #[test]
    fn unparsable_values_drop_only_that_field_and_are_counted() {
        let t: toml::Table = toml::from_str("[fields]\ninteger = [\"x*\"]").unwrap();
        let ctx = BuildContext {
            id: "conv_test_counted".into(),
            ..Default::default()
        };
        let mut p = build(t, &ctx).unwrap();
        let m = Metric::new("m", 0)
            .with_field("x1", "abc")
            .with_field("x2", "7")
            .with_field("y", "abc");
        let out = p.apply(vec![m]);
        let keys: Vec<_> = out[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["x2", "y"]);
        assert_eq!(out[0].field("x2"), Some(&FieldValue::Int(7)));
        let snap = selfstat::snapshot(0, false);
        let s = snap
            .iter()
            .find(|m| m.tag("processor") == Some("conv_test_counted"))
            .expect("self-stats registered");
        assert_eq!(s.field("conversion_errors"), Some(&FieldValue::Int(1)));
    }

    /// Telegraf's README example: "RKeAAA==" is 1340 as a big-endian IEEE 754 binary32.
    #[test]
    fn base64_ieee_float32_like_telegraf() {
        let m = Metric::new("m", 0)
            .with_field("output_power", "RKeAAA==")
            .with_field("negative", "wCAAAA==")
            .with_field("short", "RKc=")
            .with_field("not_base64", "!!!!")
            .with_field("number", 3i64);
        let m = one("[fields]\nbase64_ieee_float32 = [\"*\"]", m);
        assert_eq!(m.field("output_power"), Some(&FieldValue::Float(1340.0)));
        assert_eq!(m.field("negative"), Some(&FieldValue::Float(-2.5)));
        for dropped in ["short", "not_base64", "number"] {
            assert!(m.field(dropped).is_none(), "{dropped} kept: {m:?}");
        }
    }

    #[test]
    fn unsigned_clamps_negatives_to_zero() {
        let m = Metric::new("m", 0)
            .with_field("a", -5i64)
            .with_field("b", "-1.5")
            .with_field("c", "0xff")
            .with_field("d", 2.4);
        let m = one("[fields]\nunsigned = [\"*\"]", m);
        let got: Vec<_> = m.fields.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(got, [0, 0, 255, 2].map(FieldValue::UInt));
    }

    #[test]
    fn booleans_floats_and_strings() {
        let cfg = r#"
            [fields]
            boolean = ["b*"]
            float = ["f*"]
            string = ["s*"]
        "#;
        let m = Metric::new("m", 0)
            .with_field("b1", "TRUE")
            .with_field("b2", -3i64)
            .with_field("b3", "yes")
            .with_field("f1", "2.5e1")
            .with_field("f2", 7i64)
            .with_field("f3", "0x10")
            .with_field("s1", 0.1)
            .with_field("s2", 1e21)
            .with_field("s3", false)
            .with_field("s4", 3.0);
        let m = one(cfg, m);
        assert_eq!(m.field("b1"), Some(&FieldValue::Bool(true)));
        assert_eq!(
            m.field("b2"),
            Some(&FieldValue::Bool(false)),
            "numbers: > 0"
        );
        assert_eq!(m.field("b3"), None, "\"yes\" is not a Go boolean");
        assert_eq!(m.field("f1"), Some(&FieldValue::Float(25.0)));
        assert_eq!(m.field("f2"), Some(&FieldValue::Float(7.0)));
        assert_eq!(m.field("f3"), Some(&FieldValue::Float(16.0)));
        assert_eq!(m.field("s1"), Some(&FieldValue::from("0.1")));
        assert_eq!(
            m.field("s2"),
            Some(&FieldValue::from("1000000000000000000000"))
        );
        assert_eq!(m.field("s3"), Some(&FieldValue::from("false")));
        assert_eq!(m.field("s4"), Some(&FieldValue::from("3")));
    }

    #[test]
    fn tags_become_fields_measurement_and_time() {
        let cfg = r#"
            [tags]
            measurement = ["topic"]
            string = ["port"]
            integer = ["code"]
            timestamp = ["ts"]
            timestamp_format = "unix_ms"
        "#;
        let m = Metric::new("mqtt", 0)
            .with_tag("code", "200")
            .with_tag("host", "a")
            .with_tag("port", "80")
            .with_tag("topic", "sensor")
            .with_tag("ts", "1700000000123")
            .with_field("v", 1i64);
        let m = one(cfg, m);
        assert_eq!(m.name, "sensor");
        assert_eq!(m.tags, [("host".into(), "a".into())]);
        assert_eq!(m.field("port"), Some(&FieldValue::from("80")));
        assert_eq!(m.field("code"), Some(&FieldValue::Int(200)));
        assert_eq!(m.time, 1_700_000_000_123_000_000);
    }

    #[test]
    fn failed_tag_conversion_drops_the_tag_but_bad_timestamp_keeps_it() {
        let cfg = r#"
            [tags]
            integer = ["n"]
            timestamp = ["ts"]
            timestamp_format = "unix"
        "#;
        let m = Metric::new("m", 5)
            .with_tag("n", "many")
            .with_tag("ts", "yesterday")
            .with_field("v", 1i64);
        let m = one(cfg, m);
        assert_eq!(m.tags, [("ts".into(), "yesterday".into())]);
        assert_eq!(m.fields.len(), 1);
        assert_eq!(m.time, 5);
    }

    #[test]
    fn fields_become_tags_measurement_and_time_then_types_apply_to_tag_fields() {
        let cfg = r#"
            [tags]
            string = ["port"]
            [fields]
            tag = ["status"]
            measurement = ["kind"]
            integer = ["port"]
            timestamp = ["at"]
            timestamp_format = "unix"
        "#;
        let m = Metric::new("m", 0)
            .with_tag("port", "8080")
            .with_field("status", 2.5)
            .with_field("kind", "web")
            .with_field("at", 1.5)
            .with_field("v", 1i64);
        let m = one(cfg, m);
        assert_eq!(m.name, "web");
        assert_eq!(m.tag("status"), Some("2.5"));
        assert_eq!(m.tag("port"), None);
        assert_eq!(m.field("port"), Some(&FieldValue::Int(8080)));
        assert_eq!(m.time, 1_500_000_000);
        let keys: Vec<_> = m.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["v", "port"]);
    }

    #[test]
    fn go_layout_timestamps_as_the_json_parser() {
        let cfg = r#"
            [tags]
            timestamp = ["at"]
            timestamp_format = "2006-01-02T15:04:05Z07:00"
            [fields]
            timestamp = ["when"]
            timestamp_format = "02/01/2006 15:04:05.000"
        "#;
        let m = Metric::new("m", 0)
            .with_tag("at", "2024-02-29T12:30:45+02:00")
            .with_field("v", 1i64);
        assert_eq!(one(cfg, m).time, 1_709_202_645_000_000_000);
        let m = Metric::new("m", 0)
            .with_field("when", "29/02/2024 10:30:45.250")
            .with_field("v", 1i64);
        let m = one(cfg, m);
        assert_eq!(m.time, 1_709_202_645_250_000_000);
        assert_eq!(m.field("when"), None);
    }

    #[test]
    fn first_matching_type_wins_in_telegraf_order() {
        // For fields Telegraf checks float before integer.
        let m = Metric::new("m", 0).with_field("x", "3");
        let m = one("[fields]\ninteger = [\"x\"]\nfloat = [\"*\"]", m);
        assert_eq!(m.field("x"), Some(&FieldValue::Float(3.0)));
    }

    #[test]
    fn metrics_left_without_fields_are_dropped() {
        let mut p = processor("[fields]\ntag = [\"*\"]");
        let out = p.apply(vec![
            Metric::new("m", 0).with_field("a", 1i64),
            Metric::new("n", 0)
                .with_field("a", 1i64)
                .with_tag("keep", "x"),
        ]);
        assert!(out.is_empty());
    }

    #[test]
    fn config_errors() {
        for (bad, want) in [
            ("", "nothing to convert"),
            ("[fields]\ninteger = [\"[\"]", "invalid glob"),
            ("[fields]\ntimestamp = [\"t\"]", "required"),
            (
                "[tags]\ntimestamp = [\"t\"]\ntimestamp_format = \"no layout\"",
                "neither unix",
            ),
            ("[tags]\ntag = [\"t\"]", "unknown field"),
            ("[fields]\nintegers = [\"t\"]", "unknown field"),
        ] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            let Err(BuildError::Config(e)) = build(t, &BuildContext::default()) else {
                panic!("accepted: {bad}");
            };
            assert!(e.message.contains(want), "{bad}: {}", e.message);
        }
    }
}
