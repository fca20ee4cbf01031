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
//! Parser: a payload is an object or an array of objects (after `json_query`, a dotted path such
//! as `data.items` or `data.0`). Nested objects and arrays are flattened with `_` joins (`a_b`,
//! `list_0`); numbers become float fields; strings are kept only when their key matches
//! `json_string_fields`; booleans are dropped unless named in `tag_keys`. `tag_keys` (both may
//! use `*`/`?` wildcards) turn values into tags. The measurement is the value of `json_name_key`,
//! else the parser's `name` (the plugin name when the caller passes one to
//! [`super::build_parser_with_name`], else "json"). `json_time_key` with `json_time_format`
//! (`unix`, `unix_ms`, `unix_us`, `unix_ns`, `RFC3339`/`RFC3339Nano`/Go layout
//! `2006-01-02T15:04:05Z07:00`, or `2006-01-02 15:04:05` read as UTC) sets the timestamp.

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFormat {
    /// Nanoseconds per unit: unix (1e9), unix_ms, unix_us, unix_ns.
    Unix(i64),
    Rfc3339,
    /// `2006-01-02 15:04:05`, read as UTC.
    DateTime,
}

impl TimeFormat {
    pub fn from_name(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "unix" => TimeFormat::Unix(1_000_000_000),
            "unix_ms" => TimeFormat::Unix(1_000_000),
            "unix_us" => TimeFormat::Unix(1_000),
            "unix_ns" => TimeFormat::Unix(1),
            "RFC3339"
            | "RFC3339Nano"
            | "rfc3339"
            | "2006-01-02T15:04:05Z07:00"
            | "2006-01-02T15:04:05.999999999Z07:00" => TimeFormat::Rfc3339,
            "2006-01-02 15:04:05" => TimeFormat::DateTime,
            other => anyhow::bail!(
                "unsupported json_time_format {other:?} (supported: unix, unix_ms, unix_us, unix_ns, RFC3339, \"2006-01-02 15:04:05\")"
            ),
        })
    }
}

#[derive(Clone, Debug)]
pub struct JsonParser {
    pub name: Str,
    pub name_key: Option<String>,
    /// Dotted path to the object or array to read.
    pub query: Option<String>,
    pub time_key: Option<String>,
    pub time_format: TimeFormat,
    pub string_fields: Vec<String>,
    pub tag_keys: Vec<String>,
}

impl Default for JsonParser {
    fn default() -> Self {
        JsonParser {
            name: "json".into(),
            name_key: None,
            query: None,
            time_key: None,
            time_format: TimeFormat::Unix(1_000_000_000),
            string_fields: Vec::new(),
            tag_keys: Vec::new(),
        }
    }
}

impl Parser for JsonParser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let err = |line: usize, message: String| ParseError { line, message };
        if input.iter().all(|b| b.is_ascii_whitespace()) {
            return Vec::new();
        }
        let root: Value = match serde_json::from_slice(input) {
            Ok(v) => v,
            Err(e) => return vec![err(e.line().max(1), format!("invalid JSON: {e}"))],
        };
        let mut node = &root;
        if let Some(q) = self.query.as_deref().filter(|q| !q.is_empty()) {
            for part in q.split('.') {
                let next = match node {
                    Value::Object(o) => o.get(part),
                    Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                match next {
                    Some(n) => node = n,
                    None => return vec![err(1, format!("json_query {q:?} matched nothing"))],
                }
            }
        }
        let mut errors = Vec::new();
        match node {
            Value::Object(_) => {
                if let Err(e) = self.parse_object(node, now, out) {
                    errors.push(err(1, e));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let r = match item {
                        Value::Object(_) => self.parse_object(item, now, out),
                        _ => Err("expected an object".to_string()),
                    };
                    if let Err(e) = r {
                        errors.push(err(i + 1, format!("array element {}: {e}", i + 1)));
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
    fn parse_object(&self, obj: &Value, now: i64, out: &mut Vec<Metric>) -> Result<(), String> {
        let mut flat: Vec<(String, &Value)> = Vec::new();
        flatten(String::new(), obj, &mut flat);
        let mut m = Metric::new(self.name.clone(), now);
        let mut has_time = false;
        for (key, v) in flat {
            if self.name_key.as_deref() == Some(key.as_str()) {
                if let Value::String(s) = v {
                    m.name = s.as_str().into();
                }
                continue;
            }
            if self.time_key.as_deref() == Some(key.as_str()) {
                m.time = parse_time(v, &self.time_format)
                    .ok_or_else(|| format!("invalid time {v} in json_time_key {key:?}"))?;
                has_time = true;
                continue;
            }
            if self.tag_keys.iter().any(|p| wildcard(p, &key)) {
                let tag = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
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
                _ => {}
            }
        }
        if let Some(k) = &self.time_key
            && !has_time
        {
            return Err(format!("json_time_key {k:?} not found"));
        }
        if m.fields.is_empty() {
            // Telegraf drops objects without fields silently; a count here is more useful.
            return Err("no fields (numbers, or strings named in json_string_fields)".into());
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

pub(crate) fn parse_time(v: &Value, format: &TimeFormat) -> Option<i64> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    match *format {
        TimeFormat::Unix(unit) => parse_unix(&text, unit),
        TimeFormat::Rfc3339 => parse_rfc3339(&text),
        TimeFormat::DateTime => parse_rfc3339(&format!("{}Z", text.replacen(' ', "T", 1))),
    }
}

/// A decimal number of `unit`s to nanoseconds, exactly where the number is written plainly.
pub(crate) fn parse_unix(text: &str, unit: i64) -> Option<i64> {
    if text.contains(['e', 'E']) {
        let f: f64 = text.parse().ok()?;
        let ns = f * unit as f64;
        return (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns as i64);
    }
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut ns = if int.is_empty() {
        0
    } else {
        int.parse::<i64>().ok()?
    }
    .checked_mul(unit)?;
    // Fractional digits beyond the nanosecond are dropped.
    let mut scale = unit / 10;
    for d in frac.bytes() {
        if scale == 0 {
            break;
        }
        ns = ns.checked_add(i64::from(d - b'0') * scale)?;
        scale /= 10;
    }
    Some(if neg { -ns } else { ns })
}

/// RFC 3339 (`2024-01-02T03:04:05.123Z`, `+02:00` offsets, `t`/space separator) to ns.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let o = h * 3600 + m * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let days = crate::common::time::days_from_civil(year, month, day);
    let secs = days * 86400 + hour * 3600 + min * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
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
            query: Some("data.items".into()),
            name_key: Some("kind".into()),
            time_key: Some("ts".into()),
            time_format: TimeFormat::from_name("unix_ms").unwrap(),
            ..Default::default()
        };
        let (m, e) = parse(
            &p,
            r#"{"data":{"items":[{"kind":"a","ts":1700000000123,"v":1},{"kind":"b","ts":"1700000000123.5","v":2},{"v":3},5]}}"#,
        );
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].name.as_str(), m[0].time),
            ("a", 1_700_000_000_123_000_000)
        );
        assert_eq!(m[1].time, 1_700_000_000_123_500_000);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].line, 3);
        assert!(e[0].message.contains("json_time_key \"ts\" not found"));
        assert!(e[1].message.contains("expected an object"));
        let (_, e) = parse(&p, r#"{"data":{}}"#);
        assert!(e[0].message.contains("matched nothing"));
        let (_, e) = parse(&p, "{\n\"x\": }");
        assert_eq!(e[0].line, 2);
        assert!(e[0].message.starts_with("invalid JSON"));
    }

    #[test]
    fn time_formats() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:30:45.5+02:00"),
            Some(1_709_202_645_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-01-01T00:00:00.123456789123Z"),
            Some(1_704_067_200_123_456_789)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1_000_000_000));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00"), None);
        assert_eq!(parse_unix("1.5", 1_000_000_000), Some(1_500_000_000));
        assert_eq!(parse_unix("-2", 1_000), Some(-2_000));
        assert_eq!(
            parse_unix("1.7e9", 1_000_000_000),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_unix("abc", 1), None);
        assert_eq!(parse_unix("99999999999999999", 1_000_000_000), None);
        let v = Value::String("2024-01-01 00:00:01".into());
        assert_eq!(
            parse_time(&v, &TimeFormat::DateTime),
            Some(1_704_067_201_000_000_000)
        );
        assert!(TimeFormat::from_name("Mon Jan 2").is_err());
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
