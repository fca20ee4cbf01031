//! Property tests of the Prometheus exposition path: what `outputs.prometheus_client` renders,
//! the parser reads back unchanged (text and OpenMetrics); the parser never panics.

use std::time::Instant;

use proptest::prelude::*;
use sonde_plugins::codec::Parser;
use sonde_plugins::codec::prometheus::PrometheusParser;
use sonde_plugins::model::{FieldValue, Metric, ValueType};
use sonde_plugins::outputs::prometheus_client::store::{Format, Store, StoreOptions};

fn metric() -> impl Strategy<Value = Metric> {
    (
        "[a-z][a-z0-9_]{0,8}",
        proptest::collection::btree_map("[a-z][a-z0-9_]{0,6}", "\\PC{0,12}", 0..4),
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            any::<i32>().prop_map(f64::from)
        ],
        prop_oneof![Just(ValueType::Gauge), Just(ValueType::Untyped)],
    )
        .prop_map(|(field, tags, v, kind)| {
            let mut m = Metric::new("prometheus", 0).with_kind(kind);
            for (k, val) in tags {
                // Empty tags are not rendered; the url tag is the input's.
                if !val.is_empty() && k != "url" {
                    m.add_tag(k, val);
                }
            }
            m.add_field(field, v);
            m
        })
}

proptest! {
    #[test]
    fn render_then_parse_round_trips(m in metric(), om in any::<bool>()) {
        let mut store = Store::new(StoreOptions {
            metric_version: 2,
            string_as_label: false,
            export_timestamp: false,
            expiration: None,
            counter_types: Vec::new(),
            gauge_types: Vec::new(),
        });
        store.write(std::slice::from_ref(&m), Instant::now());
        let format = if om { Format::OpenMetrics } else { Format::Text };
        let (body, _) = store.render(format, false);
        let mut text = body.to_vec();
        if om {
            text.extend_from_slice(b"# EOF\n");
        }
        let parser = PrometheusParser { metric_version: 2, openmetrics: Some(om) };
        let mut out = Vec::new();
        let errors = parser.parse(&text, 7, &mut out);
        prop_assert!(errors.is_empty(), "{errors:?} in {}", String::from_utf8_lossy(&text));
        prop_assert_eq!(out.len(), 1);
        let got = &out[0];
        prop_assert_eq!(&got.tags, &m.tags);
        let (k, v) = &m.fields[0];
        let want = v.as_f64().unwrap();
        prop_assert_eq!(got.field(k), Some(&FieldValue::Float(want)));
        prop_assert_eq!(got.time, 7);
    }

    #[test]
    fn parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..300),
                           om in any::<Option<bool>>(), v in 1u8..=2) {
        let parser = PrometheusParser { metric_version: v, openmetrics: om };
        let mut out = Vec::new();
        let _ = parser.parse(&input, 0, &mut out);
    }

    #[test]
    fn parser_never_panics_on_near_valid_text(
        text in "(# (TYPE|HELP) [a-z_]{1,6} (counter|gauge|histogram|summary|unknown|info)?\n)?\
                 [a-z_]{1,6}(_bucket|_sum|_count|_total|_created)?(\\{([a-z]{1,3}=\"([^\"\\\\]|\\\\[\"\\\\n])*\",?){0,3}\\})? \
                 (-?[0-9.e+]{1,8}|NaN|[+-]Inf)( -?[0-9.]{1,14})?( # \\{[a-z]=\"x\"\\} 1)?\n{0,2}",
        om in any::<bool>(),
    ) {
        let parser = PrometheusParser { metric_version: 2, openmetrics: Some(om) };
        let mut out = Vec::new();
        let _ = parser.parse(text.as_bytes(), 0, &mut out);
    }
}
