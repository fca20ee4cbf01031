//! outputs.cloudwatch: mapping, Query encoding (split at 1,000 datums / 1 MB) and SigV4 signing
//! of 100,000 metrics, with and without gzip. Line-protocol serialization of the same metrics
//! is measured in the same run as a reference. Reported in metrics per CPU-second (medians of
//! 7 rounds) and by criterion.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonde_plugins::Metric;
use sonde_plugins::codec::influx::{self, InfluxOptions};
use sonde_plugins::outputs::cloudwatch::encode::{self, Encoder, Mapping};
use sonde_plugins::outputs::cloudwatch::{GZIP_MIN_BYTES, gzip, sign_request};

#[path = "common/mod.rs"]
mod common;
use common::thread_cpu_ns;

const N: usize = 100_000;

fn cpu_rate(what: &str, mut f: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..7)
        .map(|_| {
            let t = thread_cpu_ns();
            f();
            N as f64 / ((thread_cpu_ns() - t) as f64 / 1e9)
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!("{what}: median {:.0} metrics per CPU-second", rates[3]);
    rates[3]
}

/// 100,000 host-like metrics: one float field each, tags host, cpu and region.
fn metrics() -> Vec<Metric> {
    let t0 = 1_700_000_000_000_000_000i64;
    (0..N)
        .map(|i| {
            Metric::new("cpu", t0 + (i as i64 % 60) * 1_000_000_000)
                .with_tag("host", format!("web-{:03}", i % 200))
                .with_tag("cpu", format!("cpu{}", i % 16))
                .with_tag("region", "eu-west-1")
                .with_field("usage_idle", 50.0 + (i % 97) as f64 / 7.0)
        })
        .collect()
}

const URL: &str = "https://monitoring.eu-west-1.amazonaws.com/";

fn encode_sign(batch: &[Metric], enc: &Encoder, creds: &Credentials, zip: bool) -> usize {
    let map = Mapping {
        write_statistics: false,
        max_dimensions: 10,
    };
    let d = encode::datums(batch, &map);
    let reqs = enc.encode(&d.datums, &d.dims);
    let now = SystemTime::now();
    let mut bytes = 0;
    for r in &reqs {
        let zipped = (zip && r.body.len() >= GZIP_MIN_BYTES).then(|| gzip(&r.body));
        let body = zipped.as_deref().unwrap_or(&r.body);
        let h = sign_request(creds, "eu-west-1", URL, body, zipped.is_some(), now).unwrap();
        bytes += body.len() + h.len();
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let batch = metrics();
    let enc = Encoder::new("Sonde/Bench", false);
    let creds = Credentials::new("AKIDBENCH", "secret", Some("token".into()), None, "bench");
    let map = Mapping {
        write_statistics: false,
        max_dimensions: 10,
    };
    let d = encode::datums(&batch, &map);
    let reqs = enc.encode(&d.datums, &d.dims);
    let raw: usize = reqs.iter().map(|r| r.body.len()).sum();
    let zipped: usize = reqs.iter().map(|r| gzip(&r.body).len()).sum();
    println!(
        "{N} metrics -> {} requests, {raw} bytes of body ({} per datum), {zipped} gzipped",
        reqs.len(),
        raw / N
    );

    let lp = cpu_rate("line protocol serialize (reference)", || {
        let mut buf = Vec::with_capacity(N * 80);
        for m in &batch {
            influx::write_metric(&mut buf, m, &InfluxOptions::default());
        }
        std::hint::black_box(buf.len());
    });
    let e = cpu_rate("cloudwatch encode", || {
        let d = encode::datums(&batch, &map);
        std::hint::black_box(enc.encode(&d.datums, &d.dims).len());
    });
    let s = cpu_rate("cloudwatch encode + sign", || {
        std::hint::black_box(encode_sign(&batch, &enc, &creds, false));
    });
    let z = cpu_rate("cloudwatch encode + gzip + sign", || {
        std::hint::black_box(encode_sign(&batch, &enc, &creds, true));
    });
    println!(
        "ratios to line protocol: encode {:.2}, encode+sign {:.2}, encode+gzip+sign {:.2}",
        e / lp,
        s / lp,
        z / lp
    );

    let mut g = c.benchmark_group("cloudwatch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("encode_sign_100k", |b| {
        b.iter(|| encode_sign(&batch, &enc, &creds, false))
    });
    g.bench_function("encode_gzip_sign_100k", |b| {
        b.iter(|| encode_sign(&batch, &enc, &creds, true))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
