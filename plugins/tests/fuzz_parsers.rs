//! Hostile input for every `data_format` parser and the small parsers that read untrusted
//! text (gjson paths, durations, sizes, Retry-After): arbitrary bytes and structured inputs
//! mutated a few bytes at a time. Each target asserts that the parser returns (metrics and/or
//! errors, never a panic), that what it returns is well formed, and that whatever it parsed
//! serializes without a panic in every output format.
//!
//! The case count is proptest's: `PROPTEST_CASES` (256 by default); CI's fuzz step raises it.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;
use sonde_plugins::codec::gjson::Path;
use sonde_plugins::codec::prometheus::PrometheusParser;
use sonde_plugins::codec::{
    self, ParseError, Parser, ParserConfig, SerializerConfig, html, influx,
};

/// Parsers in several configurations each, built the way the agent builds them.
fn parsers() -> &'static [(String, Arc<dyn Parser>)] {
    static P: std::sync::OnceLock<Vec<(String, Arc<dyn Parser>)>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let tables = [
            "data_format = \"influx\"",
            "data_format = \"influx\"\ninflux_timestamp_precision = \"1s\"",
            "data_format = \"prometheus\"",
            "data_format = \"value\"\ndata_type = \"integer\"",
            "data_format = \"value\"\ndata_type = \"float\"",
            "data_format = \"value\"\ndata_type = \"string\"",
            "data_format = \"value\"\ndata_type = \"boolean\"",
            "data_format = \"json\"",
            "data_format = \"json\"\ntag_keys = [\"*\", \"a?\", \"t*g\"]\njson_string_fields = [\"s*\"]\njson_name_key = \"name\"",
            "data_format = \"json\"\njson_query = \"a.#.b\"\njson_time_key = \"t\"\njson_time_format = \"unix_ms\"",
            "data_format = \"json\"\njson_query = \"a\"\njson_time_key = \"t\"\njson_time_format = \"2006-01-02T15:04:05Z07:00\"",
            "data_format = \"json\"\njson_time_key = \"t\"\njson_time_format = \"RFC3339\"",
            r#"data_format = "json_v2"
[[json_v2]]
  measurement_name_path = "name"
  timestamp_path = "t"
  timestamp_format = "unix"
  [[json_v2.tag]]
    path = "a.#.b"
    optional = true
  [[json_v2.field]]
    path = "v"
    type = "int"
    optional = true
  [[json_v2.field]]
    path = "a.#(b>1)#.c"
    optional = true
  [[json_v2.object]]
    path = "@this"
    tags = ["t*", "name"]
    disable_prepend_keys = false
  [[json_v2.object]]
    path = "a"
    optional = true
    included_keys = ["b", "c"]
"#,
            r#"data_format = "html"
[[html]]
  measurement_name = "t"
  [[html.object]]
    selector = "table tr"
    [[html.object.tag]]
      name = "k"
      selector = "td:nth-child(1)"
    [[html.object.field]]
      name = "v"
      selector = "td.v"
      optional = true
    [[html.object.field]]
      name = "n"
      selector = "td"
      attribute = "data-n"
      type = "int"
      optional = true
"#,
        ];
        let mut out: Vec<(String, Arc<dyn Parser>)> = tables
            .iter()
            .map(|t| {
                let cfg: ParserConfig = toml::from_str(t).unwrap_or_else(|e| panic!("{t}: {e}"));
                let p = codec::build_parser(&cfg, "influx").unwrap_or_else(|e| panic!("{t}: {e}"));
                (t.lines().take(2).collect::<Vec<_>>().join(" "), p)
            })
            .collect();
        for (v, om) in [(1, None), (2, None), (1, Some(true)), (2, Some(false))] {
            out.push((
                format!("prometheus v{v} om {om:?}"),
                Arc::new(PrometheusParser {
                    metric_version: v,
                    openmetrics: om,
                }),
            ));
        }
        out
    })
}

fn serializers() -> Vec<Arc<dyn codec::Serializer>> {
    [
        "data_format = \"influx\"",
        "data_format = \"influx\"\ninflux_sort_fields = true\ninflux_uint_support = false\ninflux_max_line_bytes = 64",
        "data_format = \"json\"",
        "data_format = \"prometheus\"",
        "data_format = \"prometheus\"\nprometheus_string_as_label = true\nprometheus_export_timestamp = true",
    ]
    .iter()
    .map(|t| {
        let cfg: SerializerConfig = toml::from_str(t).unwrap();
        codec::build_serializer(&cfg, "influx").unwrap()
    })
    .collect()
}

/// Runs every parser on `input`; checks errors and metrics are well formed, then serializes.
fn all_parsers(input: &[u8]) -> Result<(), TestCaseError> {
    let sers = serializers();
    for (name, p) in parsers() {
        let mut out = Vec::new();
        let errs: Vec<ParseError> = p.parse(input, 1_700_000_000_000_000_000, &mut out);
        for e in &errs {
            prop_assert!(e.line >= 1, "{name}: line 0 in {e:?}");
            prop_assert!(!e.message.is_empty(), "{name}: empty message");
        }
        for m in &out {
            prop_assert!(!m.name.is_empty(), "{name}: unnamed metric {m:?}");
            prop_assert!(!m.fields.is_empty(), "{name}: metric without fields {m:?}");
        }
        for s in &sers {
            let mut buf = Vec::new();
            s.serialize(&out, &mut buf);
        }
    }
    Ok(())
}

/// Arbitrary JSON documents of modest size.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9 .:TZ+-]{0,12}".prop_map(Value::String),
        Just(Value::String("2024-01-02T03:04:05.123456789+02:00".into())),
        Just(Value::from(1e308)),
        Just(Value::from(-9_223_372_036_854_775_808i64)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("a".to_string()),
                        Just("b".to_string()),
                        Just("c".to_string()),
                        Just("t".to_string()),
                        Just("v".to_string()),
                        Just("name".to_string()),
                        "[a-z.*?#|@\\\\]{1,6}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Applies a few byte edits (replace, insert, delete).
fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, byte, op) in edits {
        let i = at.index(bytes.len() + 1);
        match op % 3 {
            0 if i < bytes.len() => bytes[i] = *byte,
            1 => bytes.insert(i, *byte),
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>(), any::<u8>()),
        0..4,
    )
}

fn prometheus_text() -> impl Strategy<Value = String> {
    "((# (TYPE|HELP|UNIT) [a-z_:]{1,8}( (counter|gauge|histogram|summary|untyped|info|stateset|gaugehistogram|unknown|[a-z]{0,6}))?\n)|\
     ([a-z_:]{1,8}(_bucket|_sum|_count|_total|_created|_info)?(\\{([a-z_]{1,4}=\"([^\"\\\\\n]|\\\\[\"\\\\n])*\",?){0,3}\\})? \
     (-?[0-9.e+]{1,8}|NaN|[+-]Inf|1e400)( -?[0-9.]{1,20})?( # \\{[a-z]=\"x\"\\} 1( 2)?)?\n)){1,6}(# EOF\n)?"
}

fn html_text() -> impl Strategy<Value = String> {
    "(<(table|tr|td|tbody|th|div)( class=\"v\"| data-n=\"[-0-9.e]{0,6}\")?>|</(table|tr|td|tbody)>|[-$0-9.,%KMBT()a-z &;<>])*"
}

proptest! {
    #[test]
    fn every_parser_on_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        all_parsers(&input)?;
    }

    #[test]
    fn every_parser_on_mutated_json(doc in json_value(), edits in edits()) {
        let bytes = mutate(serde_json::to_vec(&doc).unwrap(), &edits);
        all_parsers(&bytes)?;
    }

    #[test]
    fn every_parser_on_mutated_line_protocol(
        text in "([a-z,=\\\\ \"]{1,14} [a-z\\\\ ,=\"]{1,6}=(-?[0-9.eE+]{1,8}[iu]?|\"[^\"]{0,6}\"|t|F|true)(,[a-z]=[0-9]{1,3})?( -?[0-9]{1,20})?\r?\n){1,5}",
        edits in edits(),
    ) {
        all_parsers(&mutate(text.into_bytes(), &edits))?;
    }

    #[test]
    fn every_parser_on_mutated_prometheus_text(text in prometheus_text(), edits in edits()) {
        all_parsers(&mutate(text.into_bytes(), &edits))?;
    }

    #[test]
    fn every_parser_on_mutated_html(text in html_text(), edits in edits()) {
        let _ = html::parse_number(&text);
        all_parsers(&mutate(text.into_bytes(), &edits))?;
    }

    #[test]
    fn gjson_paths_on_arbitrary_documents(
        path in "([a-z0-9.*?#|@!=<>%\\\\\\[\\]{}(),:\" -]|\\.\\.|#\\(|@this|@reverse|@keys|@values|@flatten){0,12}",
        doc in json_value(),
    ) {
        match Path::parse(&path) {
            Ok(p) => {
                let _ = p.get(&doc);
                let _ = p.last_key();
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn config_value_parsers(s in "[-+0-9.a-zA-Zµ_ ]{0,16}") {
        let _ = sonde_plugins::config_types::parse_duration(&s);
        let _ = sonde_plugins::config_types::parse_size(&s);
        let _ = sonde_plugins::common::http::parse_retry_after(&s, std::time::SystemTime::now());
    }

    #[test]
    fn influx_parse_at_every_precision(
        input in prop::collection::vec(any::<u8>(), 0..256),
        precision in prop_oneof![Just(1i64), Just(1_000), Just(1_000_000), Just(1_000_000_000), Just(60_000_000_000), Just(3_600_000_000_000), Just(i64::MAX)],
    ) {
        let mut out = Vec::new();
        let _ = influx::parse(&input, precision, i64::MAX, &mut out);
        let _ = influx::parse(b"m v=1 9223372036854775807\nm v=1 -9223372036854775808\n", precision, 0, &mut out);
    }
}

#[test]
fn known_hostile_inputs() {
    // Inputs kept from fuzzing and hand-picked edges: every parser must return, not panic.
    let cases: &[&[u8]] = &[
        b"",
        b"\n\n\n",
        b"\xff\xfe\xfd",
        b"m v=1 99999999999999999999999",
        b"m v=1e400",
        b"{\"a\":1e400}",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        b"{\"t\":\"2024-13-45T99:99:99Z\",\"v\":1}",
        b"{\"t\":-1e30,\"v\":1}",
        b"{\"t\":\"\\ud800\",\"v\":1}",
        b"# TYPE x histogram\nx_bucket{le=\"+Inf\"} 1\nx_bucket{le=\"nope\"} 2\n",
        b"x{a=\"\\\"} 1\n",
        b"x 1 99999999999999999999\n# EOF\n",
        b"<table><tr><td>1</td><td class=\"v\">1e999</td></tr></table>",
        b"<table><tr><td data-n=\"-9223372036854775809\">x</td></tr>",
    ];
    for c in cases {
        all_parsers(c).unwrap();
    }
}
