//! `inputs.mem`: memory from /proc/meminfo with Telegraf's (gopsutil's) Linux fields and formulas.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::SharedFile;
use crate::inputs::host::{self, HostPaths, MemInfo, MemKey as K, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Telegraf's extended Linux fields: active/inactive anon and file pages, percpu,
    /// unevictable.
    #[serde(default)]
    collect_extended: bool,
}

struct Mem {
    collect_extended: bool,
    /// /proc/meminfo, read once per tick with inputs.swap.
    meminfo: SharedFile,
    zoneinfo: PathBuf,
    page_size: u64,
}

impl Mem {
    fn new(paths: &HostPaths) -> Self {
        Mem {
            collect_extended: false,
            meminfo: SharedFile::new(paths.proc("meminfo")),
            zoneinfo: paths.proc("zoneinfo"),
            page_size: host::page_size(),
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        let mi = match self.meminfo.with_or_err(acc.time(), MemInfo::parse) {
            Ok(mi) => mi,
            Err(e) => {
                acc.add_error(e);
                return;
            }
        };
        let Some(total) = mi.get(K::MemTotal).filter(|t| *t > 0) else {
            acc.add_error(format!("{}: no MemTotal", self.meminfo.path().display()));
            return;
        };
        let free = mi.or0(K::MemFree);
        let buffers = mi.or0(K::Buffers);
        // gopsutil counts reclaimable slab as cache.
        let cached = mi.or0(K::Cached) + mi.or0(K::SReclaimable);
        let available = match mi.get(K::MemAvailable) {
            Some(a) => a,
            None => self.estimate_available(&mi, free, cached),
        };
        let used = total.saturating_sub(free + buffers + cached);

        let mut m = metric(acc, "mem", ValueType::Gauge, 34);
        push(&mut m, "total", total);
        push(&mut m, "available", available);
        push(&mut m, "used", used);
        push(
            &mut m,
            "available_percent",
            100.0 * available as f64 / total as f64,
        );
        push(&mut m, "used_percent", 100.0 * used as f64 / total as f64);
        push(&mut m, "active", mi.or0(K::Active));
        push(&mut m, "buffered", buffers);
        push(&mut m, "cached", cached);
        push(&mut m, "commit_limit", mi.or0(K::CommitLimit));
        push(&mut m, "committed_as", mi.or0(K::CommittedAs));
        push(&mut m, "dirty", mi.or0(K::Dirty));
        push(&mut m, "free", free);
        push(&mut m, "high_free", mi.or0(K::HighFree));
        push(&mut m, "high_total", mi.or0(K::HighTotal));
        push(&mut m, "huge_pages_free", mi.or0(K::HugePagesFree));
        push(&mut m, "huge_page_size", mi.or0(K::Hugepagesize));
        push(&mut m, "huge_pages_total", mi.or0(K::HugePagesTotal));
        push(&mut m, "inactive", mi.or0(K::Inactive));
        push(&mut m, "low_free", mi.or0(K::LowFree));
        push(&mut m, "low_total", mi.or0(K::LowTotal));
        push(&mut m, "mapped", mi.or0(K::Mapped));
        push(&mut m, "page_tables", mi.or0(K::PageTables));
        push(&mut m, "shared", mi.or0(K::Shmem));
        push(&mut m, "slab", mi.or0(K::Slab));
        push(&mut m, "sreclaimable", mi.or0(K::SReclaimable));
        push(&mut m, "sunreclaim", mi.or0(K::SUnreclaim));
        push(&mut m, "swap_cached", mi.or0(K::SwapCached));
        push(&mut m, "swap_free", mi.or0(K::SwapFree));
        push(&mut m, "swap_total", mi.or0(K::SwapTotal));
        push(&mut m, "vmalloc_chunk", mi.or0(K::VmallocChunk));
        push(&mut m, "vmalloc_total", mi.or0(K::VmallocTotal));
        push(&mut m, "vmalloc_used", mi.or0(K::VmallocUsed));
        push(&mut m, "write_back", mi.or0(K::Writeback));
        push(&mut m, "write_back_tmp", mi.or0(K::WritebackTmp));
        if self.collect_extended {
            push(&mut m, "active_anon", mi.or0(K::ActiveAnon));
            push(&mut m, "active_file", mi.or0(K::ActiveFile));
            push(&mut m, "inactive_anon", mi.or0(K::InactiveAnon));
            push(&mut m, "inactive_file", mi.or0(K::InactiveFile));
            push(&mut m, "percpu", mi.or0(K::Percpu));
            push(&mut m, "unevictable", mi.or0(K::Unevictable));
        }
        acc.add(m);
    }

    /// Kernels before 3.14 have no MemAvailable: gopsutil estimates it the way the kernel
    /// does (free + page cache + reclaimable slab, less the low watermarks) when the inputs
    /// exist, and falls back to free + cached otherwise.
    fn estimate_available(&mut self, mi: &MemInfo, free: u64, cached: u64) -> u64 {
        let (Some(af), Some(inf), Some(sr)) = (
            mi.get(K::ActiveFile),
            mi.get(K::InactiveFile),
            mi.get(K::SReclaimable),
        ) else {
            return free + cached;
        };
        let mut zi = String::new();
        if host::read_to(&self.zoneinfo, &mut zi).is_err() {
            return free + cached;
        }
        let low: u64 = zi
            .lines()
            .filter_map(|l| {
                let mut it = l.split_ascii_whitespace();
                (it.next() == Some("low") && it.clone().count() == 1)
                    .then(|| it.next()?.parse::<u64>().ok())?
            })
            .sum::<u64>()
            * self.page_size;
        let page_cache = af + inf;
        let page_cache = page_cache - (page_cache / 2).min(low);
        let slab = sr - (sr / 2).min(low);
        (free as i128 - low as i128 + page_cache as i128 + slab as i128).max(0) as u64
    }
}

/// This input's gather on a fixture tree, for the shared-read tests in `inputs::host`.
#[cfg(test)]
pub(crate) fn gatherer(paths: &HostPaths) -> impl FnMut(&mut Accumulator) {
    let mut input = Mem::new(paths);
    move |acc| input.gather_sync(acc)
}

#[async_trait]
impl Input for Mem {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let mut mem = Mem::new(&HostPaths::from_env());
    mem.collect_extended = cfg.collect_extended;
    Ok(InputPlugin::Polled(Box::new(mem)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "mem",
    description: "Memory usage from /proc/meminfo (Telegraf's mem)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn gather(paths: &HostPaths) -> Accumulator {
        let mut m = Mem::new(paths);
        m.page_size = 4096;
        let mut acc = Accumulator::new(1);
        m.gather_sync(&mut acc);
        acc
    }

    fn u(m: &crate::model::Metric, k: &str) -> u64 {
        match m.field(k) {
            Some(FieldValue::UInt(v)) => *v,
            other => panic!("{k}: {other:?}"),
        }
    }

    #[test]
    fn modern_kernel() {
        let acc = gather(&fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let m = &acc.metrics[0];
        assert_eq!(m.fields.len(), 34);
        assert_eq!(u(m, "total"), 8_000_000 * 1024);
        assert_eq!(u(m, "available"), 5_000_000 * 1024);
        // cached = Cached + SReclaimable; used = total - free - buffers - cached
        assert_eq!(u(m, "cached"), (2_000_000 + 100_000) * 1024);
        assert_eq!(
            u(m, "used"),
            (8_000_000 - 3_000_000 - 200_000 - 2_100_000) * 1024
        );
        assert_eq!(u(m, "huge_pages_total"), 4);
        assert_eq!(u(m, "huge_page_size"), 2048 * 1024);
        assert_eq!(u(m, "high_free"), 0);
        assert_eq!(m.field("used_percent"), Some(&FieldValue::Float(33.75)));
        assert_eq!(m.field("available_percent"), Some(&FieldValue::Float(62.5)));
    }

    /// collect_extended adds gopsutil's ExLinux fields, read from the host's own meminfo.
    #[test]
    fn extended_fields_match_real_meminfo() {
        let mut m = Mem::new(&HostPaths::default());
        m.collect_extended = true;
        let mut acc = Accumulator::new(1);
        m.gather_sync(&mut acc);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let got = &acc.metrics[0];
        assert_eq!(got.fields.len(), 40);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kb = |key: &str| -> u64 {
            let line = meminfo
                .lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
                * 1024
        };
        // Anonymous and percpu pages move a little between the two reads; allow 64 MiB.
        for (field, key) in [
            ("active_anon", "Active(anon)"),
            ("inactive_anon", "Inactive(anon)"),
            ("active_file", "Active(file)"),
            ("inactive_file", "Inactive(file)"),
            ("percpu", "Percpu"),
            ("unevictable", "Unevictable"),
        ] {
            let (g, w) = (u(got, field), kb(key));
            assert!(g.abs_diff(w) < 64 << 20, "{field}: {g} vs {w}");
        }
        // Off by default: the 34 fields Telegraf reports on Linux.
        let acc = gather(&HostPaths::default());
        assert!(acc.metrics[0].field("active_anon").is_none());
    }

    #[test]
    fn old_kernel_without_memavailable_falls_back_to_free_plus_cached() {
        let acc = gather(&fixture("old"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let m = &acc.metrics[0];
        assert_eq!(u(m, "available"), (500_000 + 300_000) * 1024);
        assert_eq!(u(m, "sreclaimable"), 0);
    }

    #[test]
    fn kernel_without_memavailable_uses_watermarks() {
        let acc = gather(&fixture("extra"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let m = &acc.metrics[0];
        // low = (100 + 200) pages = 1_228_800 bytes
        let low = 300 * 4096u64;
        let (free, af, inf, sr) = (
            1_000_000 * 1024u64,
            400_000 * 1024u64,
            600_000 * 1024u64,
            50_000 * 1024u64,
        );
        let pc = af + inf - ((af + inf) / 2).min(low);
        let want = free - low + pc + sr - (sr / 2).min(low);
        assert_eq!(u(m, "available"), want);
    }

    #[test]
    fn missing_memtotal_is_an_error() {
        let acc = gather(&fixture("broken"));
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        assert!(acc.metrics.is_empty());
    }

    #[test]
    fn real_total_matches_kernel_memtotal() {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kb: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let acc = gather(&HostPaths::default());
        assert_eq!(u(&acc.metrics[0], "total"), kb * 1024);
    }
}
