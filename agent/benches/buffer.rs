//! The output buffer's cost per metric on a realistic 10,000-line batch: encoding into
//! records, then a full cycle (push, lease with decoding, ack) through the memory and the disk
//! storage, and the bytes each holds per metric against live structs. Reported per CPU-second
//! of this thread (the machine is shared; wall-clock figures mostly measure the neighbours).

use sonde::pipeline::buffer::{Buffer, DiskConfig, Record, SyncPolicy};
use sonde_plugins::Metric;
use sonde_plugins::codec::influx;
use sonde_plugins::selfstat::Stat;

#[path = "../../plugins/benches/lp_batch.rs"]
mod lp_batch;
use lp_batch::{LINES, batch};

#[path = "../../plugins/benches/common/mod.rs"]
mod common;
use common::thread_cpu_ns;

/// Runs `f` (one pass over the batch) 20 times, 7 rounds; prints the median rate.
fn cpu_rate(what: &str, mut f: impl FnMut()) {
    let mut rates: Vec<f64> = (0..7)
        .map(|_| {
            let t = thread_cpu_ns();
            for _ in 0..20 {
                f();
            }
            (20 * LINES) as f64 / ((thread_cpu_ns() - t) as f64 / 1e9)
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{what}: median {:.2} M metrics per CPU-second ({:.0} ns per metric)",
        rates[3] / 1e6,
        1e9 / rates[3]
    );
}

fn cycle(b: &mut Buffer, records: &[Record]) {
    b.push(records.iter().cloned()).unwrap();
    while b.available() > 0 {
        let got = b.lease(1000).unwrap();
        std::hint::black_box(got);
        b.ack().unwrap();
    }
}

fn main() {
    let input = batch();
    let mut metrics: Vec<Metric> = Vec::with_capacity(LINES);
    assert!(influx::parse(&input, 1, 0, &mut metrics).is_empty());
    let mut scratch = Vec::new();
    let records = Record::encode_chunks(&metrics, 1000);
    let plain: usize = records.iter().map(|r| r.data.len()).sum();
    let compressed: usize = records
        .iter()
        .map(|r| r.clone().compressed(&mut scratch).data.len())
        .sum();
    let live: usize = metrics.iter().map(Metric::estimated_size).sum();
    println!(
        "record size: {:.1} bytes per metric compressed ({:.1} plain), {:.1} live ({:.1}x the compressed); line protocol {:.1}",
        compressed as f64 / LINES as f64,
        plain as f64 / LINES as f64,
        live as f64 / LINES as f64,
        live as f64 / compressed as f64,
        input.len() as f64 / LINES as f64
    );

    cpu_rate("encode (plain)", || {
        std::hint::black_box(Record::encode_chunks(&metrics, 1000));
    });
    cpu_rate("encode + compress (a backlog's records)", || {
        for r in Record::encode_chunks(&metrics, 1000) {
            std::hint::black_box(r.compressed(&mut scratch));
        }
    });
    cpu_rate("clone (what fan-out did before)", || {
        std::hint::black_box(metrics.clone());
    });
    let mut mem = Buffer::memory(usize::MAX, u64::MAX, Stat::default(), Stat::default());
    cpu_rate("memory push+lease+ack", || cycle(&mut mem, &records));

    let dir = std::env::temp_dir().join(format!("sonde-bench-buffer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, sync) in [
        (
            "disk push+lease+ack, sync every 1s",
            SyncPolicy::Every(std::time::Duration::from_secs(1)),
        ),
        ("disk push+lease+ack, sync always", SyncPolicy::Always),
    ] {
        let cfg = DiskConfig {
            dir: dir.clone(),
            limit_bytes: 1 << 30,
            sync,
        };
        let (mut disk, _) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
        cpu_rate(name, || cycle(&mut disk, &records));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
