//! Hostile input for the statsd line parser and aggregates: arbitrary bytes and mutated
//! near-valid lines must be counted as parse errors or aggregated, never panic, and a flush
//! afterwards must produce well-formed metrics. `PROPTEST_CASES` raises the case count (CI's
//! fuzz step).

use super::*;
use proptest::prelude::*;

fn shared(datadog: bool, templates: &[&str]) -> Shared {
    let templates: Vec<String> = templates.iter().map(|s| s.to_string()).collect();
    Shared {
        parser: Parser {
            templates: Templates::new(&templates, "_").unwrap(),
            datadog,
            distributions: datadog,
            keep_container: !datadog,
            // The name options flip with datadog so both settings of each are explored.
            sanitize_upstream: datadog,
            convert_names: !datadog,
            temporality: datadog.then_some("delta"),
        },
        aggs: Mutex::new(Aggregates::new(20, 0)),
        parse_errors: Stat::default(),
        received: Stat::default(),
        refused: Stat::default(),
    }
}

fn config() -> Config {
    parse_config(
        toml::from_str(
            "percentiles = [0.0, 50.0, 99.9, 100.0]\ndelete_timings = false\n\
         enable_aggregation_temporality = true\nmax_ttl = \"1h\"",
        )
        .unwrap(),
    )
    .unwrap()
}

/// Feeds packets, flushes twice (the second flush sees kept state), checks the output.
fn feed(packets: &[Vec<u8>], datadog: bool) -> Result<(), TestCaseError> {
    let sh = shared(
        datadog,
        &["cpu.* measurement.measurement.region", "measurement.field*"],
    );
    let cfg = config();
    let mut parsed = Parsed::default();
    for p in packets {
        sh.handle_packet(&mut parsed, p, Some([127, 0, 0, 1].into()), 3);
    }
    for _ in 0..2 {
        let out = Statsd::flush(&cfg, &mut sh.aggs.lock().unwrap(), 1, Instant::now());
        for m in out {
            prop_assert!(!m.fields.is_empty(), "{m:?}");
            prop_assert!(!m.name.is_empty(), "{m:?}");
            prop_assert!(m.tags.iter().all(|(k, _)| !k.is_empty()), "{m:?}");
            // Aggregates carry metric_type; events and service checks do not.
            prop_assert!(
                m.tag("metric_type").is_some()
                    || m.field("text").is_some()
                    || m.name == "statsd_service_check",
                "{m:?}"
            );
        }
    }
    Ok(())
}

/// Lines close to valid statsd: a bucket, values, types, rates and DogStatsD tags.
fn near_valid() -> impl Strategy<Value = String> {
    "([a-z._,=/ -]{0,8}(:[-+]?[0-9.eE]{0,6}(\\|(c|g|s|ms|h|d|x))?(\\|@[-0-9.eE]{0,4})?(\\|#[a-z:,]{0,8})?(\\|c:[a-z0-9]{0,4})?){0,3}\n?){1,4}"
}

/// DogStatsD events and service checks, near valid: lengths that may or may not fit, and
/// metadata fields of every kind.
fn near_valid_datadog() -> impl Strategy<Value = String> {
    prop_oneof![
        "_e\\{[0-9]{0,2},[0-9]{0,2}\\}:[a-zé ]{0,6}\\|[a-z\\\\n]{0,6}(\\|(d:[0-9]{0,3}|p:(low|normal|x)|h:[a-z]{0,3}|t:(error|info|x)|k:[a-z]{0,2}|s:[a-z]{0,2}|#[a-z:,]{0,6}|[a-z]{0,2})){0,4}",
        "_sc\\|[a-z]{0,4}\\|[-0-9]{0,2}(\\|(d:[0-9]{0,12}|h:[a-z]{0,3}|m:[a-z\\\\n]{0,4}|#[a-z:,]{0,6}|[a-z]{0,2})){0,4}",
    ]
}

proptest! {
    #[test]
    fn statsd_never_panics_on_bytes(
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4),
        datadog in any::<bool>(),
    ) {
        feed(&packets, datadog)?;
    }

    #[test]
    fn statsd_never_panics_on_near_valid_lines(
        lines in prop::collection::vec(near_valid(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        datadog in any::<bool>(),
    ) {
        let mut packets: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
        for (at, byte) in edits {
            let p = at.get_mut(&mut packets);
            if !p.is_empty() {
                let i = at.index(p.len());
                p[i] = byte;
            }
        }
        feed(&packets, datadog)?;
    }

    #[test]
    fn statsd_never_panics_on_datadog_events_and_checks(
        lines in prop::collection::vec(near_valid_datadog(), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut packets: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
        // Also a truncated copy of the first: lengths that run past the end.
        let first = packets[0].clone();
        packets.push(first[..cut.index(first.len() + 1)].to_vec());
        feed(&packets, true)?;
        feed(&packets, false)?;
    }
}

#[test]
fn extreme_values_are_counted_not_panics() {
    // Found by hand around the fuzz targets: values and rates at the edges of f64.
    let packets: Vec<Vec<u8>> = [
        "a:1e308|c|@1e-308",
        "a:1e308|c|@0.0000001",
        "b:NaN|g",
        "b:inf|g",
        "b:-inf|g",
        "t:1e308|ms|@0.1",
        "t:-1e308|ms",
        "t:NaN|ms",
        "s:\u{0}|s",
        ":|",
        "|||",
        "a:1|c|@0",
        "a:1|c|@-1",
        "a:1|c|#a:b:c,,,:",
        "a,=,=b:1|c",
        "_e{1,1}:é|x",
        "_e{99999999999999999999,1}:a|b",
        "_e{18446744073709551615,1}:a|b",
        "_e{,}:",
        "_e{1,1}:a|b|",
        "_sc|x|9",
        "_sc||0",
        "_sc|x|0|d:99999999999999999",
        "x:1|d|#:,:a,b:",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    feed(&packets, true).unwrap();
    feed(&packets, false).unwrap();
}
