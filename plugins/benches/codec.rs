//! Line protocol parse and serialize throughput on a realistic 10,000-line batch
//! (cpu/mem/disk-like lines with 3-5 tags and 5-10 fields), reported in lines/s; parse and
//! the listener's route (lines written straight into buffer records) also on the shorter lines
//! jobs push, the remote-write bench's load; and
//! Prometheus remote-write encoding of the same metrics (1,000 and 10,000 per request).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonde_plugins::Metric;
use sonde_plugins::codec::influx::{self, InfluxOptions};
use sonde_plugins::codec::{Serializer, json, prometheus, record};
use sonde_plugins::outputs::prometheus_remote_write;

#[path = "lp_batch.rs"]
mod lp_batch;
use lp_batch::{LINES, batch};

#[path = "common/mod.rs"]
mod common;
use common::thread_cpu_ns;

// The allocator of the shipped static binary (glibc malloc costs more per metric).
#[global_allocator]
static ALLOCATOR: sonde_alloc::MiMalloc = sonde_alloc::MiMalloc;

fn cpu_rate(what: &str, f: impl FnMut()) {
    cpu_rate_n(what, LINES, f);
}

/// Median of 7 runs of 20 calls, each call handling `n` metrics.
fn cpu_rate_n(what: &str, n: usize, mut f: impl FnMut()) {
    let mut rates: Vec<f64> = (0..7)
        .map(|_| {
            let t = thread_cpu_ns();
            for _ in 0..20 {
                f();
            }
            (20 * n) as f64 / ((thread_cpu_ns() - t) as f64 / 1e9)
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{what}: median {:.0} metrics (lines) per CPU-second, {:.1} ns each",
        rates[3],
        1e9 / rates[3]
    );
}

/// The buffer records of `batch`, as an output's buffer without a backlog holds them
/// (plain, 1,000 metrics each).
fn records(batch: &[Metric]) -> Vec<Vec<u8>> {
    batch
        .chunks(1000)
        .map(|c| {
            let mut r = Vec::new();
            record::encode(c, &mut r);
            r
        })
        .collect()
}

/// One remote-write request body for `records`, read from them as the output does:
/// protobuf, snappy-compressed, in the encoder's reused buffers. Returns its size.
fn remote_write(enc: &mut prometheus_remote_write::Encoder, records: &[Vec<u8>]) -> usize {
    let records: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
    assert!(enc.encode_records(&records, false).is_none());
    enc.compress().unwrap().len()
}

/// Writes `lines` into buffer records as a listener on the direct route does.
fn write_records(lines: &[u8], writer: &mut record::Writer) {
    let mut written = Vec::new();
    let mut lines = influx::Lines::new(lines);
    while !lines.is_done() {
        let errors = lines.write_next(
            usize::MAX,
            0,
            1,
            0,
            &[],
            &[] as &[(&str, &str)],
            5_000,
            writer,
            &mut written,
        );
        assert!(errors.is_empty());
    }
    written.extend(writer.take_record());
}

fn bench(c: &mut Criterion) {
    let input = batch();
    let mut metrics: Vec<Metric> = Vec::with_capacity(LINES);
    assert!(influx::parse(&input, 1, 0, &mut metrics).is_empty());
    assert_eq!(metrics.len(), LINES);

    let mut out = Vec::with_capacity(LINES);
    cpu_rate("influx parse", || {
        out.clear();
        influx::parse(&input, 1, 0, &mut out);
    });
    let push = lp_batch::push_batch();
    cpu_rate("influx parse (push lines)", || {
        out.clear();
        influx::parse(&push, 1, 0, &mut out);
    });
    // What a listener does with them (the direct route): lines written into buffer records
    // of 5,000 metrics, by a writer kept from one write to the next.
    let mut writer = record::Writer::default();
    cpu_rate("influx write into records (push lines)", || {
        write_records(&push, &mut writer)
    });
    let mut writer = record::Writer::default();
    cpu_rate("influx write into records", || {
        write_records(&input, &mut writer)
    });
    let mut buf = Vec::with_capacity(input.len() * 2);
    cpu_rate("influx serialize", || {
        buf.clear();
        for m in &metrics {
            influx::write_metric(&mut buf, m, &InfluxOptions::default());
        }
    });

    let mut enc = prometheus_remote_write::Encoder::new();
    let recs = [records(&metrics[..1_000]), records(&metrics)];
    for r in &recs {
        let n = if r.len() == 1 { 1_000 } else { LINES };
        cpu_rate_n(&format!("remote_write encode+snappy {n}"), n, || {
            remote_write(&mut enc, r);
        });
    }

    let mut g = c.benchmark_group("influx");
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("parse_10k_lines", |b| {
        let mut out = Vec::with_capacity(LINES);
        b.iter(|| {
            out.clear();
            let errs = influx::parse(&input, 1, 0, &mut out);
            assert!(errs.is_empty());
            out.len()
        })
    });
    g.bench_function("serialize_10k_lines", |b| {
        let mut out = Vec::with_capacity(input.len() * 2);
        let opts = InfluxOptions::default();
        b.iter(|| {
            out.clear();
            for m in &metrics {
                influx::write_metric(&mut out, m, &opts);
            }
            out.len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("prometheus_remote_write");
    for (n, r) in [1_000, LINES].into_iter().zip(&recs) {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("encode_snappy_{n}"), |b| {
            b.iter(|| remote_write(&mut enc, r))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("other");
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("json_serialize_10k", |b| {
        let mut out = Vec::with_capacity(input.len() * 3);
        let s = json::JsonSerializer::default();
        b.iter(|| {
            out.clear();
            s.serialize(&metrics, &mut out);
            out.len()
        })
    });
    g.bench_function("prometheus_serialize_10k", |b| {
        let mut out = Vec::with_capacity(input.len() * 3);
        let s = prometheus::PrometheusSerializer::default();
        b.iter(|| {
            out.clear();
            s.serialize(&metrics, &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
