//! Runs the codec bench's line-protocol batch through parse or serialize a fixed number of
//! times, for instruction counting on a noisy machine:
//! `valgrind --tool=callgrind cargo-built-binary parse 5` and compare against `... parse 0`
//! (`push` parses the shorter lines jobs push).

#[path = "../benches/lp_batch.rs"]
mod lp_batch;

use sonde_plugins::Metric;
use sonde_plugins::codec::influx::{self, InfluxOptions};

// The allocator of the shipped static binary, as in the codec bench.
#[global_allocator]
static ALLOCATOR: sonde_alloc::MiMalloc = sonde_alloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "parse".into());
    let rounds: usize = args.next().map_or(5, |n| n.parse().expect("rounds"));
    let input = lp_batch::batch();
    let mut metrics: Vec<Metric> = Vec::with_capacity(lp_batch::LINES);
    assert!(influx::parse(&input, 1, 0, &mut metrics).is_empty());
    let mut total = 0;
    match what.as_str() {
        "parse" => {
            let mut out = Vec::with_capacity(lp_batch::LINES);
            for _ in 0..rounds {
                out.clear();
                assert!(influx::parse(&input, 1, 0, &mut out).is_empty());
                total += out.len();
            }
        }
        "push" => {
            let push = lp_batch::push_batch();
            let mut out = Vec::with_capacity(lp_batch::LINES);
            for _ in 0..rounds {
                out.clear();
                assert!(influx::parse(&push, 1, 0, &mut out).is_empty());
                total += out.len();
            }
        }
        "serialize" => {
            let mut buf = Vec::with_capacity(input.len() * 2);
            let opts = InfluxOptions::default();
            for _ in 0..rounds {
                buf.clear();
                for m in &metrics {
                    influx::write_metric(&mut buf, m, &opts);
                }
                total += buf.len();
            }
        }
        other => panic!("unknown mode {other}"),
    }
    println!("{what} x{rounds}: {total}");
}
