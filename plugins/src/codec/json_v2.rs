//! `json_v2` data format: Telegraf's current JSON parser, configured by `[[inputs.X.json_v2]]`
//! sub-tables. Metrics are named `measurement_name`, else after the plugin (`http`, `exec`, ...) as in
//! Telegraf. Paths are GJSON paths (the subset in [`super::gjson`]; anything else is refused
//! when the config loads).
//!
//! Each `json_v2` table is applied to the whole document on its own:
//! - `[[..field]]` / `[[..tag]]`: each path's value becomes a field / tag named `rename` (else
//!   the path's last dot-separated part); a path giving an array gives one metric per element,
//!   and the metrics of several paths are combined as Telegraf does (every combination). They
//!   share the table's measurement and timestamp.
//! - `[[..object]]`: the path selects an object or an array of objects; each object becomes a
//!   metric of its scalar values, nested objects flattened with `_` between the keys. Each
//!   element of an array inside the object becomes a metric of its own that also carries the
//!   object's scalars (Telegraf's "arrays are separate metrics" rule). `included_keys`,
//!   `excluded_keys`, `tags`, `renames`, `fields` (key → type) and `timestamp_key` use the
//!   flattened names (parents prepended); `disable_prepend_keys` only changes the name the
//!   metric gets. Tags need not be repeated in `included_keys`.
//! - When a table has both, every object metric also gets the tags and fields of the
//!   field/tag metrics.
//!
//! One difference from Telegraf: the paths of `[[..object.field]]` / `[[..object.tag]]` are
//! relative to each object (e.g. `meta.region`), and add that value to the object's metric
//! (Telegraf evaluates them against the object path's whole result and uses them to select
//! and type values). A path that matches nothing is an error unless `optional = true`; other
//! tables, objects and array elements carry on (Telegraf drops the whole document).
//!
//! Types: `float`, `int`, `uint`, `bool`, `string`; without one, JSON numbers are floats,
//! strings strings, booleans booleans (Telegraf's inference). `timestamp_format` takes
//! Telegraf's formats (unix ... or a Go layout, see [`crate::common::timestamp`]) and
//! `timestamp_timezone` the zone of times without an offset (`UTC`, `Local`, an IANA name).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::gjson::Path;
use super::json::{TimeFormat, parse_time_in};
use crate::common::timestamp::Location;

/// A time format and the zone times without an offset are read in.
type Stamp = (TimeFormat, Location);
use super::{ParseError, Parser};
use crate::model::{FieldValue, Metric, Str};

/// Most metrics one object may expand into (nested arrays multiply).
const MAX_EXPANSION: usize = 100_000;

/// One `[[inputs.X.json_v2]]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub measurement_name: String,
    pub measurement_name_path: String,
    pub timestamp_path: String,
    pub timestamp_format: String,
    pub timestamp_timezone: String,
    pub field: Vec<DataSet>,
    pub tag: Vec<DataSet>,
    pub object: Vec<ObjectConfig>,
}

/// A `field` or `tag` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSet {
    pub path: String,
    pub rename: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub optional: bool,
}

/// An `object` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectConfig {
    pub path: String,
    pub optional: bool,
    pub timestamp_key: String,
    pub timestamp_format: String,
    pub timestamp_timezone: String,
    pub disable_prepend_keys: bool,
    pub included_keys: Vec<String>,
    pub excluded_keys: Vec<String>,
    pub tags: Vec<String>,
    pub renames: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
    pub field: Vec<DataSet>,
    pub tag: Vec<DataSet>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Auto,
    Float,
    Int,
    UInt,
    Bool,
    String,
}

impl Kind {
    fn from_name(s: &str) -> Result<Kind, String> {
        Ok(match s {
            "" => Kind::Auto,
            "float" => Kind::Float,
            "int" => Kind::Int,
            "uint" => Kind::UInt,
            "bool" => Kind::Bool,
            "string" => Kind::String,
            other => {
                return Err(format!(
                    "unknown type {other:?} (expected float, int, uint, bool or string)"
                ));
            }
        })
    }
}

#[derive(Clone, Debug)]
struct Set {
    path: Path,
    name: Str,
    kind: Kind,
    optional: bool,
}

#[derive(Clone, Debug)]
struct Object {
    path: Path,
    optional: bool,
    timestamp_key: String,
    time_format: Stamp,
    disable_prepend_keys: bool,
    included: Vec<String>,
    excluded: Vec<String>,
    tags: Vec<String>,
    renames: BTreeMap<String, String>,
    fields: BTreeMap<String, Kind>,
    field: Vec<Set>,
    tag: Vec<Set>,
}

#[derive(Clone, Debug)]
struct Table {
    name: Str,
    name_path: Option<Path>,
    time: Option<(Path, Stamp)>,
    field: Vec<Set>,
    tag: Vec<Set>,
    object: Vec<Object>,
}

/// The parser built from one or more `json_v2` tables.
#[derive(Clone, Debug)]
pub struct JsonV2Parser {
    tables: Vec<Table>,
}

fn time_format(format: &str, tz: &str, what: &str) -> Result<Stamp, String> {
    let format = TimeFormat::from_name(format).map_err(|e| format!("{what}_format: {e}"))?;
    let loc = Location::from_name(tz).map_err(|e| format!("{what}_timezone: {e}"))?;
    Ok((format, loc))
}

fn sets(list: &[DataSet], what: &str) -> Result<Vec<Set>, String> {
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let path = Path::parse(&d.path).map_err(|e| format!("{what}[{i}].path: {e}"))?;
            let name = if d.rename.is_empty() {
                // Telegraf's default: the path's last dot-separated part.
                d.path
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .replace(' ', "_")
                    .into()
            } else {
                d.rename.as_str().into()
            };
            Ok(Set {
                kind: Kind::from_name(&d.kind).map_err(|e| format!("{what}[{i}].type: {e}"))?,
                name,
                path,
                optional: d.optional,
            })
        })
        .collect()
}

impl JsonV2Parser {
    /// Compiles the tables; `default_name` is the measurement when a table names none.
    pub fn new(configs: &[Config], default_name: &str) -> Result<JsonV2Parser, String> {
        let mut tables = Vec::new();
        for (n, c) in configs.iter().enumerate() {
            let at = |e: String| format!("json_v2[{n}].{e}");
            let name_path = match c.measurement_name_path.as_str() {
                "" => None,
                p => Some(Path::parse(p).map_err(|e| at(format!("measurement_name_path: {e}")))?),
            };
            let time = match c.timestamp_path.as_str() {
                "" => None,
                p => {
                    if c.timestamp_format.is_empty() {
                        return Err(at(
                            "timestamp_path needs timestamp_format (e.g. \"unix\" or \"RFC3339\")"
                                .into(),
                        ));
                    }
                    let path = Path::parse(p).map_err(|e| at(format!("timestamp_path: {e}")))?;
                    (
                        path,
                        time_format(&c.timestamp_format, &c.timestamp_timezone, "timestamp")
                            .map_err(at)?,
                    )
                        .into()
                }
            };
            let mut objects = Vec::new();
            for (i, o) in c.object.iter().enumerate() {
                let oat = |e: String| at(format!("object[{i}].{e}"));
                let fields = o
                    .fields
                    .iter()
                    .map(|(k, t)| {
                        Kind::from_name(t)
                            .map(|kind| (k.clone(), kind))
                            .map_err(|e| oat(format!("fields.{k}: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
                if !o.timestamp_key.is_empty() && o.timestamp_format.is_empty() {
                    return Err(oat("timestamp_key needs timestamp_format".into()));
                }
                objects.push(Object {
                    path: Path::parse(&o.path).map_err(|e| oat(format!("path: {e}")))?,
                    optional: o.optional,
                    timestamp_key: o.timestamp_key.clone(),
                    time_format: if o.timestamp_key.is_empty() {
                        (TimeFormat::Unix(1_000_000_000), Location::default())
                    } else {
                        time_format(&o.timestamp_format, &o.timestamp_timezone, "timestamp")
                            .map_err(oat)?
                    },
                    disable_prepend_keys: o.disable_prepend_keys,
                    included: o.included_keys.clone(),
                    excluded: o.excluded_keys.clone(),
                    tags: o.tags.clone(),
                    renames: o.renames.clone(),
                    fields,
                    field: sets(&o.field, "field").map_err(oat)?,
                    tag: sets(&o.tag, "tag").map_err(oat)?,
                });
            }
            let table = Table {
                name: if c.measurement_name.is_empty() {
                    default_name.into()
                } else {
                    c.measurement_name.as_str().into()
                },
                name_path,
                time,
                field: sets(&c.field, "field").map_err(at)?,
                tag: sets(&c.tag, "tag").map_err(at)?,
                object: objects,
            };
            if table.field.is_empty() && table.tag.is_empty() && table.object.is_empty() {
                return Err(at(
                    "needs at least one [[...json_v2.field]], [[...json_v2.tag]] or [[...json_v2.object]]"
                        .into(),
                ));
            }
            tables.push(table);
        }
        if tables.is_empty() {
            return Err(
                "data_format = \"json_v2\" needs at least one [[inputs.NAME.json_v2]] table".into(),
            );
        }
        Ok(JsonV2Parser { tables })
    }
}

/// A value converted to a field of `kind`; `None` for nulls, objects and arrays, or a
/// conversion that cannot be made (e.g. "abc" as int).
fn to_field(v: &Value, kind: Kind) -> Result<Option<FieldValue>, String> {
    let bad = || format!("cannot convert {v} to {kind:?}").to_lowercase();
    Ok(Some(match (kind, v) {
        (_, Value::Null | Value::Object(_) | Value::Array(_)) => return Ok(None),
        (Kind::Auto, Value::Number(n)) => FieldValue::Float(n.as_f64().ok_or_else(bad)?),
        (Kind::Auto, Value::String(s)) => FieldValue::String(s.as_str().into()),
        (Kind::Auto | Kind::Bool, Value::Bool(b)) => FieldValue::Bool(*b),
        (Kind::Float, Value::Number(n)) => FieldValue::Float(n.as_f64().ok_or_else(bad)?),
        (Kind::Float, Value::String(s)) => FieldValue::Float(s.trim().parse().map_err(|_| bad())?),
        (Kind::Float, Value::Bool(b)) => FieldValue::Float(f64::from(u8::from(*b))),
        (Kind::Int, Value::Number(n)) => FieldValue::Int(match n.as_i64() {
            Some(i) => i,
            None => {
                let f = n.as_f64().ok_or_else(bad)?;
                if !(-9.2e18..9.2e18).contains(&f) {
                    return Err(bad());
                }
                f as i64
            }
        }),
        (Kind::Int, Value::String(s)) => FieldValue::Int(s.trim().parse().map_err(|_| bad())?),
        (Kind::Int, Value::Bool(b)) => FieldValue::Int(i64::from(*b)),
        (Kind::UInt, Value::Number(n)) => FieldValue::UInt(match n.as_u64() {
            Some(u) => u,
            None => {
                let f = n.as_f64().ok_or_else(bad)?;
                if !(0.0..1.8e19).contains(&f) {
                    return Err(bad());
                }
                f as u64
            }
        }),
        (Kind::UInt, Value::String(s)) => FieldValue::UInt(s.trim().parse().map_err(|_| bad())?),
        (Kind::UInt, Value::Bool(b)) => FieldValue::UInt(u64::from(*b)),
        (Kind::Bool, Value::Number(n)) => FieldValue::Bool(n.as_f64() != Some(0.0)),
        (Kind::Bool, Value::String(s)) => FieldValue::Bool(match s.trim() {
            "true" | "True" | "TRUE" | "1" | "t" | "T" => true,
            "false" | "False" | "FALSE" | "0" | "f" | "F" => false,
            _ => return Err(bad()),
        }),
        (Kind::String, Value::String(s)) => FieldValue::String(s.as_str().into()),
        (Kind::String, other) => FieldValue::String(other.to_string().into()),
    }))
}

fn to_tag(v: &Value) -> Option<Str> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}

/// What one field/tag path contributes: one partial metric per array element.
type Part = Vec<(Str, Entry)>;

#[derive(Clone, Debug)]
enum Entry {
    Tag(Str),
    Field(FieldValue),
}

impl Parser for JsonV2Parser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let mut errors = Vec::new();
        if input.iter().all(u8::is_ascii_whitespace) {
            return errors;
        }
        let root: Value = match serde_json::from_slice(input) {
            Ok(v) => v,
            Err(e) => {
                return vec![ParseError {
                    line: e.line().max(1),
                    message: format!("invalid JSON: {e}"),
                }];
            }
        };
        for t in &self.tables {
            if let Err(e) = t.apply(&root, now, out, &mut errors) {
                errors.push(ParseError {
                    line: 1,
                    message: e,
                });
            }
        }
        errors
    }
}

impl Table {
    fn apply(
        &self,
        root: &Value,
        now: i64,
        out: &mut Vec<Metric>,
        errors: &mut Vec<ParseError>,
    ) -> Result<(), String> {
        let name: Str = match &self.name_path {
            Some(p) => match p.get(root).as_deref().and_then(to_tag) {
                Some(n) if !n.is_empty() => n,
                _ => return Err(format!("measurement_name_path {p:?} matched no string")),
            },
            None => self.name.clone(),
        };
        let time = match &self.time {
            Some((p, f)) => {
                let v = p
                    .get(root)
                    .ok_or_else(|| format!("timestamp_path {p:?} matched nothing"))?;
                parse_time_in(&v, &f.0, &f.1)
                    .ok_or_else(|| format!("timestamp_path {p:?}: invalid time {v}"))?
            }
            None => now,
        };
        let mut sets = Vec::new();
        if (!self.field.is_empty() || !self.tag.is_empty())
            && let Err(e) = self.sets(root, &name, time, &mut sets)
        {
            errors.push(ParseError {
                line: 1,
                message: e,
            });
        }
        let mut objects = Vec::new();
        self.objects(root, &name, time, &mut objects, errors);
        if objects.is_empty() || sets.is_empty() {
            out.extend(sets.into_iter().filter(|m| !m.fields.is_empty()));
            out.extend(objects);
        } else {
            // Both: every object metric gets the tags and fields of every field/tag metric
            // (Telegraf's cartesian product).
            for o in &objects {
                for s in &sets {
                    let mut m = o.clone();
                    for (k, v) in &s.tags {
                        m.add_tag(k.clone(), v.clone());
                    }
                    for (k, v) in &s.fields {
                        m.add_field(k.clone(), v.clone());
                    }
                    out.push(m);
                }
            }
        }
        Ok(())
    }

    /// Fields and tags: every combination of their per-element parts.
    fn sets(
        &self,
        root: &Value,
        name: &Str,
        time: i64,
        out: &mut Vec<Metric>,
    ) -> Result<(), String> {
        {
            let mut combos: Vec<Part> = vec![Vec::new()];
            for (set, is_tag) in self
                .tag
                .iter()
                .map(|s| (s, true))
                .chain(self.field.iter().map(|s| (s, false)))
            {
                let parts = set_parts(set, is_tag, root)?;
                if parts.is_empty() {
                    continue;
                }
                if combos.len().saturating_mul(parts.len()) > MAX_EXPANSION {
                    return Err(format!("paths expand to more than {MAX_EXPANSION} metrics"));
                }
                combos = combos
                    .iter()
                    .flat_map(|c| {
                        parts.iter().map(move |p| {
                            let mut c = c.clone();
                            c.extend(p.iter().cloned());
                            c
                        })
                    })
                    .collect();
            }
            for c in combos {
                let mut m = Metric::new(name.clone(), time);
                for (k, e) in c {
                    match e {
                        Entry::Tag(v) => m.add_tag(k, v),
                        Entry::Field(v) => m.add_field(k, v),
                    }
                }
                // Tag-only metrics are kept for merging into object metrics.
                if !m.fields.is_empty() || !m.tags.is_empty() {
                    out.push(m);
                }
            }
        }
        Ok(())
    }

    fn objects(
        &self,
        root: &Value,
        name: &Str,
        time: i64,
        out: &mut Vec<Metric>,
        errors: &mut Vec<ParseError>,
    ) {
        for (i, o) in self.object.iter().enumerate() {
            let Some(v) = o.path.get(root) else {
                if o.optional {
                    continue;
                }
                errors.push(ParseError {
                    line: 1,
                    message: format!("object path {:?} matched nothing", o.path.as_str()),
                });
                continue;
            };
            let mut items: Vec<&Value> = Vec::new();
            collect_objects(&v, &mut items);
            for (n, item) in items.into_iter().enumerate() {
                if let Err(e) = o.metrics(item, name, time, out) {
                    errors.push(ParseError {
                        line: n + 1,
                        message: format!("object[{i}] {:?} element {n}: {e}", o.path.as_str()),
                    });
                }
            }
        }
    }
}

/// The objects of a value: itself, or the objects in it when it is an array (nested arrays
/// flattened).
fn collect_objects<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|e| collect_objects(e, out)),
        Value::Object(_) => out.push(v),
        _ => {}
    }
}

fn set_parts(set: &Set, is_tag: bool, root: &Value) -> Result<Vec<Part>, String> {
    let Some(v) = set.path.get(root) else {
        if set.optional {
            return Ok(Vec::new());
        }
        return Err(format!(
            "{} path {:?} matched nothing",
            if is_tag { "tag" } else { "field" },
            set.path.as_str()
        ));
    };
    let one = |v: &Value| -> Result<Option<Part>, String> {
        let entry = if is_tag {
            to_tag(v).map(Entry::Tag)
        } else {
            to_field(v, set.kind)
                .map_err(|e| format!("field {:?}: {e}", set.name))?
                .map(Entry::Field)
        };
        Ok(entry.map(|e| vec![(set.name.clone(), e)]))
    };
    match v.as_ref() {
        Value::Array(items) => {
            let mut parts = Vec::new();
            for item in items {
                if let Some(p) = one(item)? {
                    parts.push(p);
                }
            }
            Ok(parts)
        }
        other => Ok(one(other)?.into_iter().collect()),
    }
}

impl Object {
    fn metrics(
        &self,
        obj: &Value,
        name: &Str,
        time: i64,
        out: &mut Vec<Metric>,
    ) -> Result<(), String> {
        let mut rows: Vec<Row> = Vec::new();
        self.rows("", "", obj, &mut rows)?;
        // Values addressed by path relative to the object.
        let mut extra: Vec<(Str, Entry)> = Vec::new();
        for (set, is_tag) in self
            .tag
            .iter()
            .map(|s| (s, true))
            .chain(self.field.iter().map(|s| (s, false)))
        {
            match set.path.get(obj) {
                Some(v) => {
                    let entry = if is_tag {
                        to_tag(&v).map(Entry::Tag)
                    } else {
                        to_field(&v, set.kind)?.map(Entry::Field)
                    };
                    if let Some(e) = entry {
                        extra.push((set.name.clone(), e));
                    }
                }
                None if set.optional => {}
                None => return Err(format!("path {:?} matched nothing", set.path.as_str())),
            }
        }
        for row in rows {
            let mut m = Metric::new(name.clone(), time);
            for (key, leaf, v) in row {
                if key == self.timestamp_key {
                    m.time = parse_time_in(v, &self.time_format.0, &self.time_format.1)
                        .ok_or_else(|| format!("timestamp_key {key:?}: invalid time {v}"))?;
                    continue;
                }
                let is_tag = self.tags.contains(&key);
                // Tags count as included without being listed (as in Telegraf).
                if !self.included.is_empty() && !is_tag && !self.included.contains(&key) {
                    continue;
                }
                if self.excluded.contains(&key) {
                    continue;
                }
                // Keys are matched by their flattened name; without prepending, the metric gets
                // the leaf key.
                let leaf = if self.disable_prepend_keys {
                    leaf.as_str()
                } else {
                    key.as_str()
                };
                let out_key = self.renames.get(&key).map_or(leaf, String::as_str);
                if is_tag {
                    if let Some(t) = to_tag(v) {
                        m.add_tag(out_key, t);
                    }
                    continue;
                }
                let kind = self.fields.get(&key).copied().unwrap_or(Kind::Auto);
                if let Some(f) = to_field(v, kind).map_err(|e| format!("{key:?}: {e}"))? {
                    m.add_field(out_key, f);
                }
            }
            for (k, e) in &extra {
                match e {
                    Entry::Tag(v) => m.add_tag(k.clone(), v.clone()),
                    Entry::Field(v) => m.add_field(k.clone(), v.clone()),
                }
            }
            if !m.fields.is_empty() {
                out.push(m);
            }
        }
        Ok(())
    }

    /// The rows (one per metric) of `v`: an object's scalar leaves (nested objects flattened)
    /// form one row; each element of an array in it becomes a row of its own that also carries
    /// the object's scalar leaves (Telegraf's "arrays are separate metrics" rule).
    fn rows<'v>(
        &self,
        prefix: &str,
        leaf_name: &str,
        v: &'v Value,
        out: &mut Vec<Row<'v>>,
    ) -> Result<(), String> {
        match v {
            Value::Object(_) => {
                let mut base = Vec::new();
                let mut arrays = Vec::new();
                self.split(prefix, v, &mut base, &mut arrays);
                if arrays.is_empty() {
                    out.push(base);
                    return Ok(());
                }
                for (key, leaf, items) in arrays {
                    for item in items {
                        let mut sub = Vec::new();
                        self.rows(&key, &leaf, item, &mut sub)?;
                        for r in sub {
                            if out.len() >= MAX_EXPANSION {
                                return Err(format!(
                                    "nested arrays expand to more than {MAX_EXPANSION} metrics"
                                ));
                            }
                            let mut row = base.clone();
                            row.extend(r);
                            out.push(row);
                        }
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.rows(prefix, leaf_name, item, out)?;
                }
            }
            Value::Null => {}
            leaf => out.push(vec![(prefix.to_string(), leaf_name.to_string(), leaf)]),
        }
        Ok(())
    }

    /// An object's scalar leaves (under their flattened names) and its non-empty arrays.
    fn split<'v>(
        &self,
        prefix: &str,
        v: &'v Value,
        base: &mut Row<'v>,
        arrays: &mut Vec<(String, String, &'v Vec<Value>)>,
    ) {
        let Value::Object(o) = v else { return };
        for (k, child) in o {
            let k = k.replace(' ', "_");
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}_{k}")
            };
            if self.excluded.contains(&key) {
                continue;
            }
            // A container is only entered when an included key (or tag) lies inside it.
            if matches!(child, Value::Object(_) | Value::Array(_))
                && !self.included.is_empty()
                && !self
                    .included
                    .iter()
                    .chain(&self.tags)
                    .any(|i| i.starts_with(key.as_str()))
            {
                continue;
            }
            match child {
                Value::Object(_) => self.split(&key, child, base, arrays),
                Value::Array(a) if a.is_empty() => {}
                Value::Array(a) => arrays.push((key, k, a)),
                Value::Null => {}
                leaf => base.push((key, k, leaf)),
            }
        }
    }
}

/// A metric's values: flattened key (parent keys prepended with `_`), leaf key, value.
type Row<'v> = Vec<(String, String, &'v Value)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::influx::write_metric;

    fn parser(toml_text: &str) -> Result<JsonV2Parser, String> {
        #[derive(Deserialize)]
        struct Wrap {
            json_v2: Vec<Config>,
        }
        let w: Wrap = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        JsonV2Parser::new(&w.json_v2, "file")
    }

    fn lines(p: &JsonV2Parser, input: &str) -> (Vec<String>, Vec<ParseError>) {
        let mut out = Vec::new();
        let errs = p.parse(input.as_bytes(), 7, &mut out);
        let mut v: Vec<String> = out
            .iter()
            .map(|m| {
                let mut b = Vec::new();
                write_metric(&mut b, m, &Default::default());
                String::from_utf8(b).unwrap().trim_end().to_string()
            })
            .collect();
        v.sort();
        (v, errs)
    }

    const MARKET: &str = r#"{
      "Message": "Success",
      "Data": [
        {"CoinInfo": {"Name": "BTC", "FullName": "Bitcoin"},
         "RAW": {"USD": {"PRICE": 61234.5, "LASTUPDATE": 1764590000, "MKTCAP": 1.2e12}}},
        {"CoinInfo": {"Name": "ETH", "FullName": "Ethereum"},
         "RAW": {"USD": {"PRICE": 3012.25, "LASTUPDATE": 1764590060, "MKTCAP": 3.6e11}}}
      ],
      "count": 2
    }"#;

    #[test]
    fn fields_and_tags_with_names_types_and_time() {
        let p = parser(
            r#"
            [[json_v2]]
              measurement_name = "market"
              timestamp_path = "Data.0.RAW.USD.LASTUPDATE"
              timestamp_format = "unix"
              [[json_v2.tag]]
                path = "Message"
                rename = "status"
              [[json_v2.field]]
                path = "count"
                type = "int"
              [[json_v2.field]]
                path = "Data.#(CoinInfo.Name==\"ETH\").RAW.USD.PRICE"
                rename = "eth"
            "#,
        )
        .unwrap();
        let (got, errs) = lines(&p, MARKET);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            got,
            ["market,status=Success count=2i,eth=3012.25 1764590000000000000"]
        );
    }

    #[test]
    fn array_results_give_a_metric_per_element() {
        let p = parser(
            r#"
            [[json_v2]]
              [[json_v2.field]]
                path = "Data.#.RAW.USD.PRICE"
                rename = "price"
            "#,
        )
        .unwrap();
        let (got, _) = lines(&p, MARKET);
        assert_eq!(got, ["file price=3012.25 7", "file price=61234.5 7"]);
    }

    #[test]
    fn objects_flatten_filter_rename_and_stamp() {
        let p = parser(
            r#"
            [[json_v2]]
              measurement_name = "coin"
              [[json_v2.object]]
                path = "Data"
                timestamp_key = "RAW_USD_LASTUPDATE"
                timestamp_format = "unix"
                included_keys = ["CoinInfo_Name", "RAW_USD_PRICE", "RAW_USD_MKTCAP"]
                tags = ["CoinInfo_Name"]
                [json_v2.object.renames]
                  CoinInfo_Name = "symbol"
                  RAW_USD_PRICE = "price"
                [json_v2.object.fields]
                  RAW_USD_MKTCAP = "uint"
            "#,
        )
        .unwrap();
        let (got, errs) = lines(&p, MARKET);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            got,
            [
                "coin,symbol=BTC RAW_USD_MKTCAP=1200000000000u,price=61234.5 1764590000000000000",
                "coin,symbol=ETH RAW_USD_MKTCAP=360000000000u,price=3012.25 1764590060000000000",
            ]
        );
    }

    #[test]
    fn disable_prepend_keys_excluded_keys_nested_arrays_and_relative_paths() {
        let p = parser(
            r#"
            [[json_v2]]
              [[json_v2.object]]
                path = "@this"
                disable_prepend_keys = true
                excluded_keys = ["skip"]
                tags = ["host"]
                [[json_v2.object.tag]]
                  path = "meta.region"
                [[json_v2.object.field]]
                  path = "meta.load"
                  type = "int"
                  rename = "load"
            "#,
        )
        .unwrap();
        let doc = r#"{"host": "a", "skip": 1, "meta": {"region": "eu", "load": "3"},
                      "cpu": [{"id": 0, "v": 1.5}, {"id": 1, "v": 2.5}]}"#;
        let (got, errs) = lines(&p, doc);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            got,
            [
                "file,host=a,region=eu load=3i,region=\"eu\",id=0,v=1.5 7",
                "file,host=a,region=eu load=3i,region=\"eu\",id=1,v=2.5 7",
            ]
        );
    }

    #[test]
    fn arrays_in_objects_are_separate_metrics_with_the_objects_scalars() {
        // The shape of Telegraf's README example "multiple arrays in object".
        let p = parser(
            "[[json_v2]]\n[[json_v2.object]]\npath = \"book\"\ntags = [\"title\"]\n\
             disable_prepend_keys = true\n",
        )
        .unwrap();
        let doc = r#"{"book": {"title": "Tales", "author": "Anon", "pages": null,
            "chapters": ["One", "Two"],
            "characters": [{"name": "Ann", "kind": "fox"}, {"name": "Bo", "kind": "owl"}],
            "random": [1, 2]}}"#;
        let (got, errs) = lines(&p, doc);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            got,
            [
                "file,title=Tales author=\"Anon\",chapters=\"One\" 7",
                "file,title=Tales author=\"Anon\",chapters=\"Two\" 7",
                "file,title=Tales author=\"Anon\",kind=\"fox\",name=\"Ann\" 7",
                "file,title=Tales author=\"Anon\",kind=\"owl\",name=\"Bo\" 7",
                "file,title=Tales author=\"Anon\",random=1 7",
                "file,title=Tales author=\"Anon\",random=2 7",
            ]
        );
        // With prepended keys, nested names carry their parents; renames and excluded_keys
        // use those names.
        let p = parser(
            "[[json_v2]]\n[[json_v2.object]]\npath = \"book\"\nexcluded_keys = [\"random\", \"chapters\"]\n\
             [json_v2.object.renames]\ncharacters_name = \"who\"\n",
        )
        .unwrap();
        let (got, _) = lines(&p, doc);
        assert_eq!(
            got,
            [
                "file author=\"Anon\",title=\"Tales\",characters_kind=\"fox\",who=\"Ann\" 7",
                "file author=\"Anon\",title=\"Tales\",characters_kind=\"owl\",who=\"Bo\" 7",
            ]
        );
    }

    #[test]
    fn top_level_tags_and_fields_join_object_metrics() {
        let p = parser(
            "[[json_v2]]\n[[json_v2.tag]]\npath = \"Message\"\n[[json_v2.field]]\npath = \"count\"\ntype = \"int\"\n\
             [[json_v2.object]]\npath = \"Data\"\nincluded_keys = [\"RAW_USD_PRICE\"]\ntags = [\"CoinInfo_Name\"]\n",
        )
        .unwrap();
        let (got, errs) = lines(&p, MARKET);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            got,
            [
                "file,CoinInfo_Name=BTC,Message=Success RAW_USD_PRICE=61234.5,count=2i 7",
                "file,CoinInfo_Name=ETH,Message=Success RAW_USD_PRICE=3012.25,count=2i 7",
            ]
        );
    }

    #[test]
    fn missing_paths_are_errors_unless_optional() {
        let p = parser(
            "[[json_v2]]\n[[json_v2.field]]\npath = \"nope\"\n[[json_v2.object]]\npath = \"gone\"\n",
        )
        .unwrap();
        let (got, errs) = lines(&p, MARKET);
        assert!(got.is_empty());
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].message.contains("\"nope\" matched nothing"),
            "{errs:?}"
        );
        assert!(
            errs[1].message.contains("\"gone\" matched nothing"),
            "{errs:?}"
        );
        let p = parser(
            "[[json_v2]]\n[[json_v2.field]]\npath = \"nope\"\noptional = true\n[[json_v2.field]]\npath = \"count\"\n",
        )
        .unwrap();
        let (got, errs) = lines(&p, MARKET);
        assert!(errs.is_empty());
        assert_eq!(got, ["file count=2 7"]);
        // A bad conversion and bad JSON are errors too.
        let p =
            parser("[[json_v2]]\n[[json_v2.field]]\npath = \"Message\"\ntype = \"int\"\n").unwrap();
        assert!(lines(&p, MARKET).1[0].message.contains("cannot convert"));
        assert!(lines(&p, "{").1[0].message.contains("invalid JSON"));
    }

    #[test]
    fn config_errors_name_the_problem() {
        let e = parser("[[json_v2]]\n[[json_v2.field]]\npath = \"[a,b]\"\n").unwrap_err();
        assert!(
            e.contains("json_v2[0].field[0].path") && e.contains("multipaths"),
            "{e}"
        );
        let e =
            parser("[[json_v2]]\n[[json_v2.field]]\npath = \"a\"\ntype = \"num\"\n").unwrap_err();
        assert!(e.contains("unknown type"), "{e}");
        let e = parser("[[json_v2]]\ntimestamp_path = \"t\"\n[[json_v2.field]]\npath = \"a\"\n")
            .unwrap_err();
        assert!(e.contains("needs timestamp_format"), "{e}");
        let e = parser("[[json_v2]]\nmeasurement_name = \"x\"\n").unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e = parser("[[json_v2]]\ntimestamp_path = \"t\"\ntimestamp_format = \"unix\"\ntimestamp_timezone = \"Mars/Olympus\"\n[[json_v2.field]]\npath = \"a\"\n").unwrap_err();
        assert!(e.contains("timestamp_timezone"), "{e}");
    }

    #[test]
    fn timestamps_in_a_time_zone_with_go_layouts() {
        let p = parser(
            "[[json_v2]]\ntimestamp_path = \"t\"\ntimestamp_format = \"2006-01-02 15:04\"\n\
             timestamp_timezone = \"Europe/Paris\"\n[[json_v2.field]]\npath = \"a\"\n",
        )
        .unwrap();
        let (l, e) = lines(&p, r#"{"t":"2024-07-01 10:00","a":1}"#);
        assert!(e.is_empty(), "{e:?}");
        // 10:00 CEST is 08:00 UTC.
        assert_eq!(l, ["file a=1 1719820800000000000"]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(input in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let p = parser(
                "[[json_v2]]\n[[json_v2.field]]\npath = \"a.#.b\"\noptional = true\n\
                 [[json_v2.object]]\npath = \"@this\"\ntags = [\"t\"]\n",
            ).unwrap();
            let mut out = Vec::new();
            let _ = p.parse(&input, 0, &mut out);
        }

        #[test]
        fn never_panics_on_json_shaped_input(input in "[\\[\\]{}\":,0-9a-z.#()=\\\\ -]{0,200}") {
            let p = parser(
                "[[json_v2]]\n[[json_v2.field]]\npath = \"a.#(b==1)#.c\"\noptional = true\n\
                 [[json_v2.object]]\npath = \"a\"\noptional = true\n",
            ).unwrap();
            let mut out = Vec::new();
            let _ = p.parse(input.as_bytes(), 0, &mut out);
            // Any path text either compiles or is refused with a reason.
            if let Ok(path) = Path::parse(&input) {
                let _ = path.get(&serde_json::json!({"a": [{"b": 1, "c": [1, 2]}]}));
            }
        }
    }
}
