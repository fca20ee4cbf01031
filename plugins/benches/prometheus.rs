//! Prometheus exposition: `outputs.prometheus_client` scrapes over 100,000 series (full
//! render, cached scrape with nothing changed, scrape after one series changed, gzip) and
//! parsing a large scrape (100,000 samples, text 0.0.4) with metric_version 1 and 2.

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonde_plugins::codec::Parser;
use sonde_plugins::codec::prometheus::PrometheusParser;
use sonde_plugins::model::{Metric, ValueType};
use sonde_plugins::outputs::prometheus_client::store::{Format, Store, StoreOptions};

const SERIES: usize = 100_000;

/// 100k series over 50 families: 2,000 label sets each (host x cpu-like labels).
fn metrics(value: f64) -> Vec<Metric> {
    (0..SERIES)
        .map(|i| {
            Metric::new(format!("app_{}", i % 50), 1_700_000_000_000_000_000)
                .with_kind(if i % 2 == 0 {
                    ValueType::Gauge
                } else {
                    ValueType::Counter
                })
                .with_tag(
                    "host",
                    format!("web-{:03}.prod.example.com", (i / 50) % 200),
                )
                .with_tag("shard", format!("{}", (i / 10_000) % 10))
                .with_tag("region", "eu-west-1")
                .with_field("value", value + i as f64)
        })
        .collect()
}

fn store() -> Store {
    let mut s = Store::new(StoreOptions {
        metric_version: 2,
        string_as_label: true,
        export_timestamp: false,
        expiration: None,
        counter_types: Vec::new(),
        gauge_types: Vec::new(),
    });
    s.write(&metrics(1.5), Instant::now());
    s
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("prometheus_client_100k_series");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.sample_size(10);
    let batch = metrics(2.5);
    g.bench_function("write_100k", |b| {
        let mut s = store();
        b.iter(|| s.write(&batch, Instant::now()))
    });
    g.bench_function("scrape_full_render", |b| {
        let mut s = store();
        b.iter(|| {
            // Every series changed: the whole page is rendered again.
            s.write(&batch, Instant::now());
            s.render(Format::Text, false).0.len()
        })
    });
    g.bench_function("scrape_unchanged", |b| {
        let mut s = store();
        s.render(Format::Text, false);
        b.iter(|| s.render(Format::Text, false).0.len())
    });
    let one = [batch[7].clone()];
    g.bench_function("scrape_one_series_changed", |b| {
        let mut s = store();
        b.iter(|| {
            s.write(&one, Instant::now());
            s.render(Format::Text, false).0.len()
        })
    });
    g.bench_function("scrape_unchanged_gzip", |b| {
        let mut s = store();
        s.render(Format::Text, true);
        b.iter(|| s.render(Format::Text, true).1.map(|z| z.len()))
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let mut s = store();
    let page = s.render(Format::Text, false).0;
    let mut g = c.benchmark_group("prometheus_parse_100k_samples");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.sample_size(10);
    for version in [1u8, 2] {
        let parser = PrometheusParser {
            metric_version: version,
            openmetrics: Some(false),
        };
        g.bench_function(format!("metric_version_{version}"), |b| {
            let mut out = Vec::with_capacity(SERIES);
            b.iter(|| {
                out.clear();
                parser.parse(&page, 0, &mut out).len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, render, parse);
criterion_main!(benches);
