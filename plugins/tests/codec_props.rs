//! Property tests for the codecs: line protocol round trips, agreement with the
//! `influxdb-line-protocol` crate (InfluxDB 3's parser) as an oracle, and no panics on any input.

use proptest::prelude::*;
use sonde_plugins::codec::influx::{self, InfluxOptions};
use sonde_plugins::codec::{Parser, json, prometheus, value};
use sonde_plugins::{FieldValue, Metric};

/// Characters that stress escaping: separators, quotes, backslashes, unicode.
fn text(min: usize, tricky: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = tricky.chars().collect();
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(chars),
            2 => prop::char::range('a', 'z'),
            1 => any::<char>().prop_filter("no control chars", |c| !c.is_control()),
        ],
        min..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

const TRICKY: &str = " ,=\"\\#é日🦀";

/// A name, key or tag value line protocol can carry: not ending with a backslash (which
/// would escape the separator; the serializer trims it, as Telegraf does).
fn key(tricky: &'static str) -> impl Strategy<Value = String> {
    text(1, tricky).prop_filter("no trailing backslash", |s| !s.ends_with('\\'))
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Int),
        any::<u64>().prop_map(FieldValue::UInt),
        any::<bool>().prop_map(FieldValue::Bool),
        // String field values may hold newlines and anything else.
        text(0, " ,=\"\\\n\r\té").prop_map(|s| FieldValue::String(s.into())),
    ]
}

/// Any metric line protocol can carry: non-empty name not starting with `#`, non-empty tag
/// keys/values and field keys without newline/tab/CR/FF (those are not representable).
fn metric() -> impl Strategy<Value = Metric> {
    metric_of(TRICKY)
}

/// A metric whose names, keys and tag values draw their tricky characters from `tricky`.
fn metric_of(tricky: &'static str) -> impl Strategy<Value = Metric> {
    (
        key(tricky).prop_filter("not a comment", |s| !s.starts_with('#')),
        prop::collection::vec((key(tricky), key(tricky)), 0..4),
        prop::collection::vec((key(tricky), field_value()), 1..6),
        any::<i64>(),
    )
        .prop_map(|(name, tags, fields, time)| {
            let mut m = Metric::new(name, time);
            for (k, v) in tags {
                m.add_tag(k, v);
            }
            for (k, v) in fields {
                m.add_field(k, v);
            }
            m
        })
}

fn serialize(ms: &[Metric]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in ms {
        influx::write_metric(&mut out, m, &InfluxOptions::default());
    }
    out
}

fn parse(input: &[u8]) -> (Vec<Metric>, Vec<sonde_plugins::codec::ParseError>) {
    let mut out = Vec::new();
    let errs = influx::parse(input, 1, 0, &mut out);
    (out, errs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn influx_round_trip(ms in prop::collection::vec(metric(), 1..5)) {
        let bytes = serialize(&ms);
        let (back, errs) = parse(&bytes);
        prop_assert!(errs.is_empty(), "{errs:?} in {}", String::from_utf8_lossy(&bytes));
        prop_assert_eq!(back, ms);
    }

    #[test]
    // Tags written in any order (keys sharing first bytes, escaped or not) come out sorted,
    // the metric otherwise as written.
    fn influx_tags_in_any_order(
        (m, written) in (
            metric(),
            prop::collection::vec((key("ab\\ ,=\"A0"), key(TRICKY)), 0..7),
        )
            .prop_flat_map(|(mut m, tags)| {
                m.tags.clear();
                for (k, v) in tags {
                    m.add_tag(k, v);
                }
                let tags = m.tags.clone();
                (Just(m), Just(tags).prop_shuffle())
            })
    ) {
        let mut unsorted = m.clone();
        unsorted.tags = written;
        let (back, errs) = parse(&serialize(&[unsorted]));
        prop_assert!(errs.is_empty(), "{errs:?}");
        prop_assert_eq!(back, vec![m]);
    }

    #[test]
    fn influx_round_trip_split_lines(m in metric(), max in 1usize..80) {
        // Split lines carry the same series and timestamp; together they hold every field.
        let mut bytes = Vec::new();
        let opts = InfluxOptions { max_line_bytes: max, ..Default::default() };
        influx::write_metric(&mut bytes, &m, &opts);
        let (back, errs) = parse(&bytes);
        prop_assert!(errs.is_empty(), "{errs:?}");
        let mut merged = back[0].clone();
        for part in &back[1..] {
            prop_assert_eq!(&part.name, &m.name);
            prop_assert_eq!(&part.tags, &m.tags);
            prop_assert_eq!(part.time, m.time);
            for (k, v) in &part.fields {
                merged.add_field(k.clone(), v.clone());
            }
        }
        prop_assert_eq!(merged, m);
    }

    #[test]
    // The oracle (InfluxDB 3's parser) reads `\\` in a token as one backslash and keeps `\"`
    // in field keys, where InfluxDB 1.x (and sonde, which reads tokens as it does) keeps both
    // characters: tokens here hold no backslash or quote.
    fn influx_agrees_with_oracle(m in metric_of(" ,=#é日🦀")) {
        let odd = |s: &str| s.contains(['\\', '"']);
        prop_assume!(!odd(&m.name));
        prop_assume!(!m.tags.iter().any(|(k, v)| odd(k) || odd(v)));
        prop_assume!(!m.fields.iter().any(|(k, _)| odd(k)));
        let bytes = serialize(std::slice::from_ref(&m));
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<_> = influxdb_line_protocol::parse_lines(&text).collect();
        prop_assert_eq!(lines.len(), 1);
        let line = lines.into_iter().next().unwrap();
        prop_assert!(line.is_ok(), "oracle rejected {text:?}: {line:?}");
        let line = line.unwrap();
        prop_assert_eq!(line.series.measurement.as_str(), m.name.as_str());
        let tags: Vec<(String, String)> = line
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ours: Vec<(String, String)> =
            m.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        prop_assert_eq!(tags, ours);
        prop_assert_eq!(line.timestamp, Some(m.time));
        prop_assert_eq!(line.field_set.len(), m.fields.len());
        for ((ok, ov), (k, v)) in line.field_set.iter().zip(&m.fields) {
            prop_assert_eq!(ok.as_str(), k.as_str());
            use influxdb_line_protocol::FieldValue as O;
            let same = match (ov, v) {
                (O::F64(a), FieldValue::Float(b)) => a == b,
                (O::I64(a), FieldValue::Int(b)) => a == b,
                (O::U64(a), FieldValue::UInt(b)) => a == b,
                (O::Boolean(a), FieldValue::Bool(b)) => a == b,
                (O::String(a), FieldValue::String(b)) => a.as_str() == b.as_str(),
                _ => false,
            };
            prop_assert!(same, "field {k:?}: oracle {ov:?}, ours {v:?}");
        }
    }

    #[test]
    fn influx_never_panics_on_bytes(input in prop::collection::vec(any::<u8>(), 0..200)) {
        let (ms, errs) = parse(&input);
        // Every non-blank line either parses or is reported.
        prop_assert!(ms.len() + errs.len() <= input.len() + 1);
        for e in &errs {
            prop_assert!(e.line >= 1 && !e.message.is_empty());
        }
    }

    #[test]
    fn influx_never_panics_on_mutated_lines(
        ms in prop::collection::vec(metric(), 1..3),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = serialize(&ms);
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        let (good, _) = parse(&bytes);
        // Whatever parses must serialize to lines that parse back to the same metrics
        // (up to the characters line protocol cannot carry in keys: control characters are
        // written as the text "\n", "\t", … as Telegraf does; a raw newline gets into a parsed
        // key only through a backslash-escaped line break).
        for m in good {
            let printable = |s: &str| !s.contains(['\n', '\t', '\r', '\x0c']);
            if printable(&m.name) && m.tags.iter().all(|(k, v)| printable(k) && printable(v))
                && m.fields.iter().all(|(k, _)| printable(k)) && !m.name.starts_with('#')
            {
                let again = serialize(std::slice::from_ref(&m));
                let (back, errs) = parse(&again);
                prop_assert!(errs.is_empty(), "{errs:?} {:?}", String::from_utf8_lossy(&again));
                prop_assert_eq!(back, vec![m]);
            }
        }
    }

    #[test]
    fn influx_payload_utf8_check_matches_per_line(
        ms in prop::collection::vec(metric(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        // A payload that is valid UTF-8 is checked once; a leading comment with an invalid
        // byte forces the per-line check. Both must give the same metrics and errors.
        let mut bytes = serialize(&ms);
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let (fast, fast_errs) = parse(&bytes);
        let mut slow_input = b"#\xff\n".to_vec();
        slow_input.extend_from_slice(&bytes);
        let (slow, slow_errs) = parse(&slow_input);
        prop_assert_eq!(fast, slow);
        let shifted: Vec<_> = slow_errs.iter().map(|e| (e.line - 1, e.message.clone())).collect();
        let fast_errs: Vec<_> = fast_errs.iter().map(|e| (e.line, e.message.clone())).collect();
        prop_assert_eq!(fast_errs, shifted);
    }

    #[test]
    fn other_parsers_never_panic(input in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut out = Vec::new();
        let _ = prometheus::PrometheusParser::default().parse(&input, 0, &mut out);
        let _ = json::JsonParser { tag_keys: vec!["*".into()], ..Default::default() }.parse(&input, 0, &mut out);
        let _ = value::ValueParser::default().parse(&input, 0, &mut out);
    }

    #[test]
    fn prometheus_text_never_panics(text in "[a-z_{}=\",\\\\ #\n0-9.+ITNEaf-]{0,120}") {
        let mut out = Vec::new();
        let _ = prometheus::PrometheusParser::default().parse(text.as_bytes(), 0, &mut out);
    }
}
