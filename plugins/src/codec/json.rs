//! `json` data format: Telegraf's JSON serializer and the essentials of its JSON parser (v1).
//!
//! Serializer: one object per metric,
//! `{"fields":{..},"name":"..","tags":{..},"timestamp":<int>}`, where the timestamp is in
//! `json_timestamp_units` (default 1s; truncated to a power of ten as Telegraf does).
//! `build_serializer` gives newline-delimited objects (Telegraf's per-metric form, what its
//! `file` output writes); an output that wants Telegraf's batch form `{"metrics":[..]}` builds
//! `JsonSerializer { batch: true, .. }` itself. NaN and infinite floats are dropped (JSON has no
//! such numbers), like Telegraf.
//!
//! Parser: a payload is an object or an array of objects (after `json_query`, a GJSON path as in
//! Telegraf, e.g. `data.items`, `data.0` or `items.#(kind=="a")#`; a path that matches nothing
//! is reported). Nested objects and arrays are flattened with `_` joins (`a_b`, `list_0`);
//! numbers become float fields; strings (and booleans) are kept only when their key matches
//! `json_string_fields`, or turned into tags by `tag_keys`. `tag_keys` (both may
//! use `*`/`?` wildcards) turn values into tags. The measurement is the value of `json_name_key`,
//! else the parser's `name` (the plugin name when the caller passes one to
//! [`super::build_parser_with_name`], else "json"). `json_time_key` with `json_time_format`
//! (`unix`, `unix_ms`, `unix_us`, `unix_ns`, or any Go layout such as
//! `2006-01-02T15:04:05Z07:00`; see [`crate::common::timestamp`]) sets the timestamp; times
//! without an offset are read in `json_timezone` (UTC by default, `Local`, or an IANA name).
//! As Telegraf: booleans named in `json_string_fields` are kept as boolean fields; nulls are
//! skipped; a null document is no metric; a leading UTF-8 BOM is ignored; an array with an
//! element that is not an object is rejected whole, and with `json_strict` (the default) so is
//! one with an object whose time is missing or invalid.

use serde_json::Value;

use super::{ParseError, Parser, Serializer};
use crate::model::{FieldValue, Metric, Str};

// ---------------------------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct JsonSerializer {
    /// Nanoseconds per timestamp unit (a power of ten).
    pub units_ns: i64,
    /// Write `{"metrics":[...]}` for a batch instead of one object per line.
    pub batch: bool,
}

impl Default for JsonSerializer {
    fn default() -> Self {
        JsonSerializer {
            units_ns: 1_000_000_000,
            batch: false,
        }
    }
}

impl JsonSerializer {
    /// Telegraf truncates `json_timestamp_units` to the largest power of ten not above it.
    pub fn with_units(units: std::time::Duration) -> Self {
        let n = units.as_nanos();
        let units_ns = if n == 0 {
            1_000_000_000
        } else {
            let mut d: u128 = 1;
            while d * 10 <= n && d * 10 <= i64::MAX as u128 {
                d *= 10;
            }
            d as i64
        };
        JsonSerializer {
            units_ns,
            batch: false,
        }
    }

    pub fn write_metric(&self, out: &mut Vec<u8>, m: &Metric) {
        out.extend_from_slice(b"{\"fields\":{");
        let mut first = true;
        for (k, v) in &m.fields {
            if let FieldValue::Float(f) = v
                && !f.is_finite()
            {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, k);
            out.push(b':');
            match v {
                FieldValue::Float(f) => {
                    out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes())
                }
                FieldValue::Int(i) => {
                    out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes())
                }
                FieldValue::UInt(u) => {
                    out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes())
                }
                FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                FieldValue::String(s) => write_str(out, s),
            }
        }
        out.extend_from_slice(b"},\"name\":");
        write_str(out, &m.name);
        out.extend_from_slice(b",\"tags\":{");
        for (i, (k, v)) in m.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        }
        out.extend_from_slice(b"},\"timestamp\":");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(m.time.div_euclid(self.units_ns))
                .as_bytes(),
        );
        out.push(b'}');
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Serializer for JsonSerializer {
    fn serialize(&self, batch: &[Metric], out: &mut Vec<u8>) {
        if self.batch {
            out.extend_from_slice(b"{\"metrics\":[");
            for (i, m) in batch.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                self.write_metric(out, m);
            }
            out.extend_from_slice(b"]}\n");
        } else {
            for m in batch {
                self.write_metric(out, m);
                out.push(b'\n');
            }
        }
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

pub use crate::common::timestamp::TimeFormat;
use crate::common::timestamp::{self, Location, TimeValue};

#[derive(Clone, Debug)]
pub struct JsonParser {
    pub name: Str,
    pub name_key: Option<String>,
    /// `json_query`: the GJSON path of the object or array to read.
    pub query: Option<super::gjson::Path>,
    pub time_key: Option<String>,
    pub time_format: TimeFormat,
    /// `json_timezone`: where times without an offset are read.
    pub location: Location,
    pub string_fields: Vec<String>,
    pub tag_keys: Vec<String>,
    /// `json_strict` (Telegraf's default true): one bad object in an array rejects the payload.
    pub strict: bool,
}

impl Default for JsonParser {
    fn default() -> Self {
        JsonParser {
            name: "json".into(),
            name_key: None,
            query: None,
            time_key: None,
            time_format: TimeFormat::Unix(1_000_000_000),
            location: Location::default(),
            string_fields: Vec::new(),
            tag_keys: Vec::new(),
            strict: true,
        }
    }
}

impl Parser for JsonParser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let err = |line: usize, message: String| ParseError { line, message };
        let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
        if input.iter().all(|b| b.is_ascii_whitespace()) {
            return Vec::new();
        }
        let root: Value = match serde_json::from_slice(input) {
            Ok(v) => v,
            Err(e) => return vec![err(e.line().max(1), format!("invalid JSON: {e}"))],
        };
        let found;
        let node = match &self.query {
            Some(q) => match q.get(&root) {
                Some(n) => {
                    found = n;
                    &*found
                }
                None => {
                    return vec![err(
                        1,
                        format!("json_query {:?} matched nothing", q.as_str()),
                    )];
                }
            },
            None => &root,
        };
        let mut errors = Vec::new();
        match node {
            // Telegraf: a null document (or query result) is no metrics, not an error.
            Value::Null => {}
            Value::Object(_) => {
                if let Err((e, _)) = self.parse_object(node, now, out) {
                    errors.push(err(1, e));
                }
            }
            Value::Array(items) => {
                // As Telegraf: an element that is not an object rejects the whole payload;
                // with json_strict, so does an object that fails (a bad time, say).
                if let Some(i) = items.iter().position(|v| !v.is_object()) {
                    return vec![err(
                        i + 1,
                        format!("array element {}: expected an object", i + 1),
                    )];
                }
                let first = out.len();
                for (i, item) in items.iter().enumerate() {
                    if let Err((e, fatal)) = self.parse_object(item, now, out) {
                        let message = format!("array element {}: {e}", i + 1);
                        if fatal && self.strict {
                            out.truncate(first);
                            return vec![err(
                                i + 1,
                                format!("{message} (json_strict: the whole array is dropped)"),
                            )];
                        }
                        errors.push(err(i + 1, message));
                    }
                }
            }
            _ => errors.push(err(
                1,
                "expected a JSON object or an array of objects".into(),
            )),
        }
        errors
    }
}

impl JsonParser {
    /// Parses one object. On error, the message and whether it is one Telegraf fails the
    /// object on (a bad or missing time), as opposed to an object that has no fields.
    fn parse_object(
        &self,
        obj: &Value,
        now: i64,
        out: &mut Vec<Metric>,
    ) -> Result<(), (String, bool)> {
        let mut flat: Vec<(String, &Value)> = Vec::new();
        flatten(String::new(), obj, &mut flat);
        let mut m = Metric::new(self.name.clone(), now);
        if let Some(nk) = &self.name_key
            && let Some((_, Value::String(s))) = flat.iter().rev().find(|(k, _)| k == nk)
        {
            m.name = s.as_str().into();
        }
        if let Some(tk) = &self.time_key {
            let Some(pos) = flat.iter().rposition(|(k, _)| k == tk) else {
                return Err((format!("json_time_key {tk:?} not found"), true));
            };
            let (_, v) = flat.remove(pos);
            flat.retain(|(k, _)| k != tk);
            // A fractional number is read from its digits, so no nanosecond is lost to f64.
            let digits;
            let value = match v {
                Value::String(s) => TimeValue::Str(s),
                Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => TimeValue::Int(i),
                    (_, Some(u)) => TimeValue::UInt(u),
                    _ => {
                        digits = n.to_string();
                        TimeValue::Str(&digits)
                    }
                },
                _ => return Err((format!("invalid time {v} in json_time_key {tk:?}"), true)),
            };
            m.time = timestamp::parse(&self.time_format, value, &self.location)
                .map_err(|e| (format!("json_time_key {tk:?}: {e}"), true))?;
        }
        for (key, v) in flat {
            if self.tag_keys.iter().any(|p| wildcard(p, &key)) {
                let tag = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    // Go's FormatFloat(f, 'f', -1): all digits, no exponent.
                    Value::Number(n) => format!("{}", n.as_f64().unwrap_or(f64::NAN)),
                    _ => continue,
                };
                m.add_tag(key, tag);
                continue;
            }
            match v {
                Value::Number(n) => {
                    if let Some(f) = n.as_f64() {
                        m.add_field(key, f);
                    }
                }
                Value::String(s) if self.string_fields.iter().any(|p| wildcard(p, &key)) => {
                    m.add_field(key, s.as_str());
                }
                Value::Bool(b) if self.string_fields.iter().any(|p| wildcard(p, &key)) => {
                    m.add_field(key, *b);
                }
                _ => {}
            }
        }
        if m.fields.is_empty() {
            // Telegraf drops objects without fields silently; a count here is more useful.
            return Err((
                "no fields (numbers, or strings named in json_string_fields)".into(),
                false,
            ));
        }
        out.push(m);
        Ok(())
    }
}

fn flatten<'a>(prefix: String, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}_{k}")
        }
    };
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                flatten(join(k), child, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                flatten(join(&i.to_string()), child, out);
            }
        }
        Value::Null => {}
        _ => out.push((prefix, v)),
    }
}

/// `*` matches any run, `?` one character.
fn wildcard(pattern: &str, s: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == s;
    }
    super::gjson::like(pattern, s)
}

/// RFC 3339 (`2024-01-02T03:04:05.123Z`, `+02:00` offsets) to ns.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    static RFC3339: std::sync::LazyLock<TimeFormat> =
        std::sync::LazyLock::new(|| TimeFormat::from_name("RFC3339Nano").expect("a valid layout"));
    timestamp::parse(&RFC3339, TimeValue::Str(s), &Location::default()).ok()
}

/// A JSON value as a time in `format`, read in `loc` when it has no offset (for `json_v2`).
pub(crate) fn parse_time_in(v: &Value, format: &TimeFormat, loc: &Location) -> Option<i64> {
    let digits;
    let value = match v {
        Value::String(s) => TimeValue::Str(s.trim()),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => TimeValue::Int(i),
            (_, Some(u)) => TimeValue::UInt(u),
            _ => {
                digits = n.to_string();
                TimeValue::Str(&digits)
            }
        },
        _ => return None,
    };
    timestamp::parse(format, value, loc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &JsonParser, s: &str) -> (Vec<Metric>, Vec<ParseError>) {
        let mut out = Vec::new();
        let e = p.parse(s.as_bytes(), 7, &mut out);
        (out, e)
    }

    #[test]
    fn serializer_shape_and_units() {
        let m = Metric::new("docker", 1_458_229_140_123_456_789)
            .with_tag("host", "ray\"nor")
            .with_field("a", 30i64)
            .with_field("b", 1.5)
            .with_field("nan", f64::NAN)
            .with_field("u", 7u64)
            .with_field("ok", true)
            .with_field("s", "x\ny");
        let mut out = Vec::new();
        JsonSerializer::default().serialize(std::slice::from_ref(&m), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"fields\":{\"a\":30,\"b\":1.5,\"u\":7,\"ok\":true,\"s\":\"x\\ny\"},\"name\":\"docker\",\"tags\":{\"host\":\"ray\\\"nor\"},\"timestamp\":1458229140}\n"
        );
        let ser = JsonSerializer {
            batch: true,
            ..JsonSerializer::with_units(std::time::Duration::from_millis(5))
        };
        let mut out = Vec::new();
        ser.serialize(&[m.clone(), m], &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["metrics"].as_array().unwrap().len(), 2);
        assert_eq!(v["metrics"][1]["timestamp"], 1_458_229_140_123i64);
        assert_eq!(
            JsonSerializer::with_units(std::time::Duration::from_secs(60)).units_ns,
            10_000_000_000
        );
    }

    #[test]
    fn parser_flattens_and_filters() {
        let p = JsonParser {
            string_fields: vec!["msg*".into()],
            tag_keys: vec!["host".into(), "dc_*".into()],
            ..Default::default()
        };
        let (m, e) = parse(
            &p,
            r#"{"host":"a","dc":{"name":"x"},"cpu":{"user":1.5,"sys":2},"list":[1,2],"msg":"hi","other":"drop","up":true,"n":null}"#,
        );
        assert!(e.is_empty(), "{e:?}");
        let m = &m[0];
        assert_eq!(m.name, "json");
        assert_eq!(m.time, 7);
        assert_eq!(
            m.tags,
            vec![("dc_name".into(), "x".into()), ("host".into(), "a".into())]
        );
        assert_eq!(m.field("cpu_user"), Some(&FieldValue::Float(1.5)));
        assert_eq!(m.field("cpu_sys"), Some(&FieldValue::Float(2.0)));
        assert_eq!(m.field("list_1"), Some(&FieldValue::Float(2.0)));
        assert_eq!(m.field("msg"), Some(&FieldValue::String("hi".into())));
        assert_eq!(m.field("other"), None);
        assert_eq!(m.field("up"), None);
    }

    #[test]
    fn parser_query_name_and_time() {
        let p = JsonParser {
            query: Some(super::super::gjson::Path::parse("data.items").unwrap()),
            name_key: Some("kind".into()),
            time_key: Some("ts".into()),
            time_format: TimeFormat::from_name("unix_ms").unwrap(),
            strict: false,
            ..Default::default()
        };
        let doc = r#"{"data":{"items":[{"kind":"a","ts":1700000000123,"v":1},{"kind":"b","ts":"1700000000123.5","v":2},{"v":3},{"ts":1700000000123.25,"v":4}]}}"#;
        let (m, e) = parse(&p, doc);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].name.as_str(), m[0].time),
            ("a", 1_700_000_000_123_000_000)
        );
        assert_eq!(m[1].time, 1_700_000_000_123_500_000);
        assert_eq!(m[2].time, 1_700_000_000_123_250_000);
        // The time key is not a field.
        assert_eq!(m[0].fields, vec![("v".into(), FieldValue::Float(1.0))]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 3);
        assert!(e[0].message.contains("json_time_key \"ts\" not found"));
        // json_strict (Telegraf's default): the bad object drops the whole array.
        let strict = JsonParser {
            strict: true,
            ..p.clone()
        };
        let (m, e) = parse(&strict, doc);
        assert!(m.is_empty());
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("json_strict"), "{e:?}");
        // An element that is not an object rejects the array in both modes.
        let (m, e) = parse(&p, r#"{"data":{"items":[{"kind":"a","ts":1,"v":1},5]}}"#);
        assert!(m.is_empty());
        assert!(e[0].message.contains("expected an object"));
        let (_, e) = parse(&p, r#"{"data":{}}"#);
        assert!(e[0].message.contains("matched nothing"));
        let (_, e) = parse(&p, "{\n\"x\": }");
        assert_eq!(e[0].line, 2);
        assert!(e[0].message.starts_with("invalid JSON"));
    }

    #[test]
    fn nulls_bools_bom_and_numeric_tags() {
        let p = JsonParser {
            tag_keys: vec!["id".into(), "on".into()],
            string_fields: vec!["flag".into(), "s".into()],
            ..Default::default()
        };
        let (m, e) = parse(
            &p,
            "\u{feff}{\"id\":5,\"on\":true,\"flag\":false,\"s\":\"x\",\"n\":null,\"v\":2,\"o\":{\"z\":null}}",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            m[0].tags,
            vec![("id".into(), "5".into()), ("on".into(), "true".into())]
        );
        assert_eq!(
            m[0].fields,
            vec![
                ("flag".into(), FieldValue::Bool(false)),
                ("s".into(), FieldValue::String("x".into())),
                ("v".into(), FieldValue::Float(2.0)),
            ]
        );
        let (m, e) = parse(&p, "null");
        assert!(m.is_empty() && e.is_empty());
    }

    #[test]
    fn json_query_is_a_gjson_path() {
        let p = JsonParser {
            query: Some(super::super::gjson::Path::parse(r#"items.#(kind=="a")#"#).unwrap()),
            ..Default::default()
        };
        let (m, e) = parse(
            &p,
            r#"{"items":[{"kind":"a","v":1},{"kind":"b","v":2},{"kind":"a","v":3}]}"#,
        );
        assert!(e.is_empty(), "{e:?}");
        let v: Vec<_> = m.iter().map(|m| m.fields[0].1.clone()).collect();
        assert_eq!(v, [FieldValue::Float(1.0), FieldValue::Float(3.0)]);
    }

    #[test]
    fn go_time_layouts_and_timezone() {
        let p = JsonParser {
            time_key: Some("t".into()),
            time_format: TimeFormat::from_name("01/02/2006 15:04:05").unwrap(),
            location: Location::from_name("America/New_York").unwrap(),
            ..Default::default()
        };
        let (m, e) = parse(&p, r#"{"t":"04/06/2016 12:41:45","v":1}"#);
        assert!(e.is_empty(), "{e:?}");
        // 12:41:45 EDT is 16:41:45 UTC.
        assert_eq!(m[0].time, 1_459_960_905_000_000_000);
        let p = JsonParser {
            time_key: Some("t".into()),
            time_format: TimeFormat::from_name("2006-01-02T15:04:05Z07:00").unwrap(),
            ..Default::default()
        };
        let (m, _) = parse(&p, r#"{"t":"2024-02-29T12:30:45+02:00","v":1}"#);
        assert_eq!(m[0].time, 1_709_202_645_000_000_000);
        let (m, e) = parse(&p, r#"{"t":"yesterday","v":1}"#);
        assert!(m.is_empty());
        assert!(e[0].message.contains("cannot parse"), "{e:?}");
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(input in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let p = JsonParser {
                time_key: Some("t".into()),
                time_format: TimeFormat::from_name("2006-01-02T15:04:05Z07:00").unwrap(),
                tag_keys: vec!["*id".into()],
                ..Default::default()
            };
            let mut out = Vec::new();
            let _ = p.parse(&input, 0, &mut out);
        }

        #[test]
        fn serialized_metrics_parse_back(fields in proptest::collection::btree_map("[a-z]{1,6}", (-1_000_000_000i64..1_000_000_000).prop_map(|v| v as f64 / 4.0), 1..6), t in 0i64..4_000_000_000) {
            let mut m = Metric::new("json", t * 1_000_000_000);
            for (k, v) in &fields {
                m.add_field(k.as_str(), *v);
            }
            let mut buf = Vec::new();
            JsonSerializer::default().serialize(std::slice::from_ref(&m), &mut buf);
            // The serializer's shape read back: fields under "fields", time under "timestamp".
            let p = JsonParser {
                query: Some(super::super::gjson::Path::parse("fields").unwrap()),
                ..Default::default()
            };
            let mut out = Vec::new();
            let errs = p.parse(&buf, t * 1_000_000_000, &mut out);
            proptest::prop_assert!(errs.is_empty(), "{:?}", errs);
            proptest::prop_assert_eq!(&out[0], &m);
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abbc"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "abbc"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("x", "xy"));
        // Polynomial, not exponential, on a hostile key.
        assert!(!wildcard("a*a*a*a*a*a*a*b", &"a".repeat(10_000)));
    }
}
