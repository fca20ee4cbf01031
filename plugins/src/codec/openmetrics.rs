//! `openmetrics` data format: the OpenMetrics 1.0 text format, read as Telegraf's `openmetrics`
//! parser reads it.
//!
//! The payload must end with `# EOF` (else nothing is taken, as Telegraf). A family is opened
//! by its `# TYPE`/`# UNIT`/`# HELP` lines; a sample without them is a family of type unknown
//! of its own. Samples carry their family's name plus a suffix (`_total`, `_created`,
//! `_bucket`, `_sum`, `_count`, `_gsum`, `_gcount`); consecutive samples with the same labels
//! (without `le`, `quantile`, or a stateset's own label) form one series, and samples with
//! the same timestamp one point. Exemplars are skipped; timestamps are seconds. A family's
//! `# UNIT` becomes a `unit` tag. NaN values of unknown, gauge and counter points are dropped.
//!
//! `openmetrics_metric_version = 1`: the family name is the measurement; fields `value`
//! (unknown), `gauge`, `counter` (the `_total` sample); histograms and gauge histograms one
//! metric with `count`, `sum`, `created` and one field per bucket bound (`0.5`, `+Inf`);
//! summaries the same with one field per quantile; a stateset one metric with a boolean field
//! per state; an info metric the field `info` = 1 (unsigned) with its labels as tags.
//!
//! Version 2 (the default): measurement `openmetric` (Telegraf's name) and the family name as
//! the field (`<x>` for unknown, gauge and counter points; `<x>_<state>` for states;
//! `<x>_info`); histograms and summaries one metric with `<x>_count`, `<x>_sum`,
//! `<x>_created`, then one per bucket (`<x>_bucket`, tag `le`, a `+Inf` bucket added when
//! missing) or quantile (`<x>`, tag `quantile`).

use super::prometheus::{format_g, parse_float, parse_sample};
use super::{ParseError, Parser};
use crate::model::{Metric, Str, ValueType};

#[derive(Clone, Debug)]
pub struct OpenMetricsParser {
    /// 1 or 2.
    pub metric_version: u8,
    /// Use the gather time instead of the samples' timestamps.
    pub ignore_timestamp: bool,
}

impl Default for OpenMetricsParser {
    fn default() -> Self {
        OpenMetricsParser {
            metric_version: 2,
            ignore_timestamp: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unknown,
    Gauge,
    Counter,
    StateSet,
    Info,
    Histogram,
    GaugeHistogram,
    Summary,
}

impl Kind {
    fn from_name(s: &str) -> Option<Kind> {
        Some(match s {
            "unknown" | "untyped" => Kind::Unknown,
            "gauge" => Kind::Gauge,
            "counter" => Kind::Counter,
            "stateset" => Kind::StateSet,
            "info" => Kind::Info,
            "histogram" => Kind::Histogram,
            "gaugehistogram" => Kind::GaugeHistogram,
            "summary" => Kind::Summary,
            _ => return None,
        })
    }

    fn value_type(self) -> ValueType {
        match self {
            Kind::Gauge => ValueType::Gauge,
            Kind::Counter => ValueType::Counter,
            Kind::Histogram | Kind::GaugeHistogram => ValueType::Histogram,
            Kind::Summary => ValueType::Summary,
            _ => ValueType::Untyped,
        }
    }

    /// The suffixes a sample of this family may have after `<name>`.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["_total", "_created"],
            Kind::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Kind::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            Kind::Summary => &["", "_sum", "_count", "_created"],
            Kind::Info => &["_info"],
            _ => &[""],
        }
    }
}

#[derive(Default)]
struct Point {
    time_ms: Option<i64>,
    value: Option<f64>,
    created: Option<f64>,
    sum: Option<f64>,
    count: Option<f64>,
    /// (bound as Go formats it, bound, value)
    buckets: Vec<(String, f64, f64)>,
    quantiles: Vec<(String, f64)>,
    states: Vec<(String, bool)>,
    info: bool,
}

struct Series {
    labels: Vec<(Str, Str)>,
    points: Vec<Point>,
}

struct Family {
    name: String,
    kind: Kind,
    unit: Option<String>,
    series: Vec<Series>,
}

impl Family {
    fn new(name: &str) -> Self {
        Family {
            name: name.to_string(),
            kind: Kind::Unknown,
            unit: None,
            series: Vec::new(),
        }
    }
}

impl Parser for OpenMetricsParser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let mut errors = Vec::new();
        let mut families: Vec<Family> = Vec::new();
        let mut eof = false;
        for (n, raw) in input.split(|&b| b == b'\n').enumerate() {
            let line_no = n + 1;
            let err = |message: String| ParseError {
                line: line_no,
                message,
            };
            let Ok(line) = std::str::from_utf8(raw) else {
                errors.push(err("invalid UTF-8".into()));
                continue;
            };
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if eof {
                errors.push(err("text after # EOF".into()));
                break;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let comment = comment.trim_start();
                if comment == "EOF" {
                    eof = true;
                    continue;
                }
                let mut words = comment.splitn(3, ' ');
                let (what, name, rest) = (words.next(), words.next(), words.next());
                let (Some(what @ ("TYPE" | "UNIT" | "HELP")), Some(name)) = (what, name) else {
                    continue;
                };
                if families.last().is_none_or(|f| f.name != name) {
                    families.push(Family::new(name));
                }
                let fam = families.last_mut().expect("just pushed");
                match what {
                    "TYPE" => match Kind::from_name(rest.unwrap_or("").trim()) {
                        Some(k) => fam.kind = k,
                        None => errors.push(err(format!(
                            "unknown metric type {:?} for {name:?}",
                            rest.unwrap_or("")
                        ))),
                    },
                    "UNIT" => {
                        let unit = rest.unwrap_or("").trim();
                        fam.unit = (!unit.is_empty()).then(|| unit.to_string());
                    }
                    _ => {}
                }
                continue;
            }
            let sample = match parse_sample(line, true) {
                Ok(s) => s,
                Err(message) => {
                    errors.push(err(message));
                    continue;
                }
            };
            // Which family, and which part of it?
            let suffix = families.last().and_then(|f| {
                let rest = sample.name.strip_prefix(f.name.as_str())?;
                f.kind.suffixes().contains(&rest).then_some(rest)
            });
            let suffix = match suffix {
                Some(s) => s,
                None => {
                    families.push(Family::new(sample.name));
                    ""
                }
            };
            let fam = families.last_mut().expect("a family");
            let special = match fam.kind {
                Kind::Histogram | Kind::GaugeHistogram => Some("le"),
                Kind::Summary => Some("quantile"),
                Kind::StateSet => Some(fam.name.as_str()),
                _ => None,
            };
            let mut special_value = None;
            let mut labels = Vec::with_capacity(sample.labels.len());
            for (k, v) in sample.labels {
                if Some(k.as_str()) == special {
                    special_value.get_or_insert(v);
                } else {
                    labels.push((k, v));
                }
            }
            labels.sort();
            if fam.series.last().is_none_or(|s| s.labels != labels) {
                fam.series.push(Series {
                    labels,
                    points: Vec::new(),
                });
            }
            let series = fam.series.last_mut().expect("a series");
            let time_ms = if self.ignore_timestamp {
                None
            } else {
                sample.time_ms
            };
            if series.points.last().is_none_or(|p| p.time_ms != time_ms) {
                series.points.push(Point {
                    time_ms,
                    ..Default::default()
                });
            }
            let point = series.points.last_mut().expect("a point");
            let v = sample.value;
            match (fam.kind, suffix) {
                (Kind::Counter, "_created") => point.created = Some(v),
                (Kind::Unknown | Kind::Gauge | Kind::Counter, _) => point.value = Some(v),
                (Kind::StateSet, _) => match special_value {
                    Some(state) => point.states.push((state.replace(' ', "_"), v > 0.0)),
                    None => errors.push(err(format!(
                        "stateset sample {:?} without its {:?} label",
                        sample.name, fam.name
                    ))),
                },
                (Kind::Info, _) => point.info = true,
                (_, "_sum" | "_gsum") => point.sum = Some(v),
                (_, "_count" | "_gcount") => point.count = Some(v),
                (_, "_created") => point.created = Some(v),
                (Kind::Histogram | Kind::GaugeHistogram, _) => {
                    let bound = special_value
                        .as_deref()
                        .and_then(parse_float)
                        .unwrap_or(f64::NAN);
                    point.buckets.push((format_g(bound), bound, v));
                }
                (Kind::Summary, _) => {
                    let q = match special_value.as_deref() {
                        Some("+Inf") => f64::MAX,
                        Some(t) => parse_float(t).unwrap_or(f64::NAN),
                        None => f64::NAN,
                    };
                    point.quantiles.push((format_g(q), v));
                }
            }
        }
        if !eof {
            errors.push(ParseError {
                line: input.split(|&b| b == b'\n').count().max(1),
                message: "OpenMetrics text must end with # EOF: nothing taken".into(),
            });
            return errors;
        }
        for fam in &families {
            self.emit(fam, now, out);
        }
        errors
    }
}

impl OpenMetricsParser {
    fn emit(&self, fam: &Family, now: i64, out: &mut Vec<Metric>) {
        let v2 = self.metric_version != 1;
        let name = fam.name.as_str();
        let vt = fam.kind.value_type();
        for series in &fam.series {
            for p in &series.points {
                let time = p
                    .time_ms
                    .and_then(|ms| ms.checked_mul(1_000_000))
                    .unwrap_or(now);
                let metric = |measurement: &str| {
                    let mut m = Metric::new(measurement, time).with_kind(vt);
                    for (k, v) in &series.labels {
                        m.add_tag(k.clone(), v.clone());
                    }
                    if let Some(u) = &fam.unit {
                        m.add_tag("unit", u.as_str());
                    }
                    m
                };
                let measurement = if v2 { "openmetric" } else { name };
                match fam.kind {
                    Kind::Unknown | Kind::Gauge | Kind::Counter => {
                        let Some(v) = p.value.filter(|v| !v.is_nan()) else {
                            continue;
                        };
                        let field = match (v2, fam.kind) {
                            (true, _) => name,
                            (false, Kind::Gauge) => "gauge",
                            (false, Kind::Counter) => "counter",
                            (false, _) => "value",
                        };
                        out.push(metric(measurement).with_field(field, v));
                    }
                    Kind::StateSet => {
                        if v2 {
                            for (state, on) in &p.states {
                                out.push(
                                    metric(measurement).with_field(format!("{name}_{state}"), *on),
                                );
                            }
                        } else {
                            let mut m = metric(measurement);
                            for (state, on) in &p.states {
                                m.add_field(state.as_str(), *on);
                            }
                            if !m.fields.is_empty() {
                                out.push(m);
                            }
                        }
                    }
                    Kind::Info => {
                        let field = if v2 {
                            format!("{name}_info")
                        } else {
                            "info".into()
                        };
                        out.push(metric(measurement).with_field(field, 1u64));
                    }
                    Kind::Histogram | Kind::GaugeHistogram | Kind::Summary => {
                        let histo = fam.kind != Kind::Summary;
                        let count = p.count.unwrap_or(0.0).max(0.0).trunc();
                        let key = |k: &str| {
                            if v2 {
                                format!("{name}_{k}")
                            } else {
                                k.to_string()
                            }
                        };
                        let mut totals = metric(measurement);
                        totals.add_field(key("count"), count);
                        if let Some(s) = p.sum {
                            totals.add_field(key("sum"), s);
                        }
                        if let Some(c) = p.created {
                            totals.add_field(key("created"), c);
                        }
                        if !v2 {
                            if histo {
                                for (b, _, v) in &p.buckets {
                                    totals.add_field(b.as_str(), v.max(0.0).trunc());
                                }
                            } else {
                                for (q, v) in p.quantiles.iter().filter(|(_, v)| !v.is_nan()) {
                                    totals.add_field(q.as_str(), *v);
                                }
                            }
                            out.push(totals);
                            continue;
                        }
                        out.push(totals);
                        if histo {
                            let mut inf_seen = false;
                            for (b, bound, v) in &p.buckets {
                                inf_seen |= *bound == f64::INFINITY;
                                let mut m = metric(measurement);
                                m.add_tag("le", b.as_str());
                                m.add_field(format!("{name}_bucket"), v.max(0.0).trunc());
                                out.push(m);
                            }
                            if !inf_seen {
                                let mut m = metric(measurement);
                                m.add_tag("le", "+Inf");
                                m.add_field(format!("{name}_bucket"), count);
                                out.push(m);
                            }
                        } else {
                            for (q, v) in &p.quantiles {
                                let mut m = metric(measurement);
                                m.add_tag("quantile", q.as_str());
                                m.add_field(name, *v);
                                out.push(m);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    fn run(version: u8, text: &str) -> (Vec<String>, Vec<ParseError>) {
        let p = OpenMetricsParser {
            metric_version: version,
            ignore_timestamp: false,
        };
        let mut out = Vec::new();
        let errs = p.parse(text.as_bytes(), 7, &mut out);
        let lines = out
            .iter()
            .map(|m| {
                let mut b = Vec::new();
                super::super::influx::write_metric(&mut b, m, &Default::default());
                String::from_utf8(b).unwrap().trim_end().to_string()
            })
            .collect();
        (lines, errs)
    }

    const SUMMARY: &str = "# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32
acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0
acme_http_router_request_seconds{path=\"/api/v1\",method=\"GET\",quantile=\"0.5\"} 1.29854
acme_http_router_request_seconds{path=\"/api/v1\",method=\"GET\",quantile=\"0.99\"} 6884.32324
acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0
# TYPE go_goroutines gauge
go_goroutines 69
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
process_cpu_seconds_total 4.20072246e+06
process_cpu_seconds_created 1605281325.0
# EOF
";

    #[test]
    fn version_1_names_as_telegraf_documents() {
        let (lines, errs) = run(1, SUMMARY);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            lines,
            [
                "acme_http_router_request_seconds,method=GET,path=/api/v1,unit=seconds count=807283,sum=9036.32,created=1605281325,0.5=1.29854,0.99=6884.32324 7",
                "go_goroutines gauge=69 7",
                "process_cpu_seconds,unit=seconds counter=4200722.46 7",
            ]
        );
    }

    #[test]
    fn version_2_names_as_telegraf_documents() {
        let (lines, errs) = run(2, SUMMARY);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            lines,
            [
                "openmetric,method=GET,path=/api/v1,unit=seconds acme_http_router_request_seconds_count=807283,acme_http_router_request_seconds_sum=9036.32,acme_http_router_request_seconds_created=1605281325 7",
                "openmetric,method=GET,path=/api/v1,quantile=0.5,unit=seconds acme_http_router_request_seconds=1.29854 7",
                "openmetric,method=GET,path=/api/v1,quantile=0.99,unit=seconds acme_http_router_request_seconds=6884.32324 7",
                "openmetric go_goroutines=69 7",
                "openmetric,unit=seconds process_cpu_seconds=4200722.46 7",
            ]
        );
    }

    #[test]
    fn histograms_states_info_exemplars_and_timestamps() {
        let text = "# TYPE req histogram
req_bucket{le=\"0.5\"} 3 # {trace_id=\"abc\"} 0.4 1700000000.5
req_bucket{le=\"1.0\"} 5
req_count 5
req_sum 2.5
# TYPE queue gaugehistogram
queue_bucket{le=\"+Inf\"} 4
queue_gcount 4
queue_gsum 9
# TYPE feature stateset
feature{feature=\"a b\"} 1
feature{feature=\"c\"} 0
# TYPE build info
build_info{version=\"1.2\"} 1
# TYPE t gauge
t 1.5 1700000000.250
t NaN
# EOF";
        let (lines, errs) = run(2, text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            lines,
            [
                "openmetric req_count=5,req_sum=2.5 7",
                "openmetric,le=0.5 req_bucket=3 7",
                "openmetric,le=1 req_bucket=5 7",
                "openmetric,le=+Inf req_bucket=5 7",
                "openmetric queue_count=4,queue_sum=9 7",
                "openmetric,le=+Inf queue_bucket=4 7",
                "openmetric feature_a_b=true 7",
                "openmetric feature_c=false 7",
                "openmetric,version=1.2 build_info=1u 7",
                "openmetric t=1.5 1700000000250000000",
            ]
        );
        let (lines, _) = run(1, text);
        assert_eq!(lines[0], "req count=5,sum=2.5,0.5=3,1=5 7");
        assert_eq!(lines[1], "queue count=4,sum=9,+Inf=4 7");
        assert_eq!(lines[2], "feature a_b=true,c=false 7");
        assert_eq!(lines[3], "build,version=1.2 info=1u 7");
        // Ignoring timestamps: the gather time.
        let p = OpenMetricsParser {
            metric_version: 2,
            ignore_timestamp: true,
        };
        let mut out = Vec::new();
        p.parse(b"# TYPE t gauge\nt 1.5 1700000000\n# EOF\n", 7, &mut out);
        assert_eq!(out[0].time, 7);
    }

    #[test]
    fn missing_eof_and_bad_lines() {
        let (lines, errs) = run(2, "# TYPE t gauge\nt 1\n");
        assert!(lines.is_empty());
        assert!(errs[0].message.contains("# EOF"));
        let (lines, errs) = run(2, "t{a=\"x} 1\nu 2\n# EOF\nv 3\n");
        assert_eq!(lines, ["openmetric u=2 7"]);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, 1);
        assert!(errs[1].message.contains("after # EOF"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "# TYPE x histogram\n", "# TYPE x summary\n", "# TYPE x stateset\n",
                    "# TYPE x info\n", "# TYPE x counter\n", "# UNIT x s\n", "# EOF\n",
                    "x_bucket{le=\"1\"} 2\n", "x{quantile=\"0.5\"} NaN\n", "x{x=\"a\"} 1\n",
                    "x_total 3 1.5\n", "x_info{a=\"b\"} 1\n", "x_count 1\n", "x_created 5\n",
                    "x 1 # {a=\"b\"} 1\n", "y{", "\"", "\n", "x_sum -Inf\n", "\u{0}",
                ]),
                0..40,
            ),
            version in 1u8..=2,
        ) {
            let p = OpenMetricsParser { metric_version: version, ignore_timestamp: false };
            let mut out = Vec::new();
            let _ = p.parse(parts.concat().as_bytes(), 0, &mut out);
            for m in &out {
                proptest::prop_assert!(!m.fields.is_empty());
            }
        }

        #[test]
        fn gauges_round_trip(values in proptest::collection::vec(-1e9f64..1e9, 1..10)) {
            let mut text = String::from("# TYPE g gauge\n");
            for (i, v) in values.iter().enumerate() {
                text.push_str(&format!("g{{i=\"{i}\"}} {v}\n"));
            }
            text.push_str("# EOF\n");
            let p = OpenMetricsParser::default();
            let mut out = Vec::new();
            let errs = p.parse(text.as_bytes(), 0, &mut out);
            proptest::prop_assert!(errs.is_empty());
            proptest::prop_assert_eq!(out.len(), values.len());
            for (m, v) in out.iter().zip(&values) {
                proptest::prop_assert_eq!(m.field("g"), Some(&FieldValue::Float(*v)));
            }
        }
    }

    #[test]
    fn go_float_format() {
        for (v, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (f64::INFINITY, "+Inf"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(format_g(v), want);
        }
    }
}
