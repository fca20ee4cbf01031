//! `inputs.kernel`: boot time, context switches, interrupts, forks and entropy, as Telegraf's
//! kernel plugin (from /proc/stat and /proc/sys/kernel/random/entropy_avail), plus Telegraf's
//! optional `collect` groups: `ksm` (/sys/kernel/mm/ksm) and `psi` (/proc/pressure).

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::{ProcFile, SharedFile};
use crate::inputs::host::{HostPaths, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Extra groups: "ksm" (kernel same-page merging) and "psi" (pressure stall information).
    #[serde(default)]
    collect: Vec<String>,
}

/// Telegraf's KSM counters, each a file of /sys/kernel/mm/ksm, reported as `ksm_<file>`.
const KSM_STATS: [&str; 14] = [
    "full_scans",
    "max_page_sharing",
    "merge_across_nodes",
    "pages_shared",
    "pages_sharing",
    "pages_to_scan",
    "pages_unshared",
    "pages_volatile",
    "run",
    "sleep_millisecs",
    "stable_node_chains",
    "stable_node_chains_prune_millisecs",
    "stable_node_dups",
    "use_zero_pages",
];
/// Only recent kernels have these; a missing one is left out, as Telegraf does.
const KSM_EXTRA_STATS: [&str; 1] = ["general_profit"];

struct Kernel {
    /// /proc/stat, read once per tick with inputs.cpu and inputs.system.
    stat: SharedFile,
    entropy: ProcFile,
    /// /sys/kernel/mm/ksm when `collect` has "ksm".
    ksm: Option<PathBuf>,
    /// /proc/pressure/{cpu,memory,io} when `collect` has "psi".
    psi: Option<[(&'static str, ProcFile); 3]>,
    buf: String,
}

impl Kernel {
    fn new(paths: &HostPaths) -> Self {
        Kernel {
            stat: SharedFile::new(paths.proc("stat")),
            entropy: ProcFile::new(paths.proc("sys/kernel/random/entropy_avail")),
            ksm: None,
            psi: None,
            buf: String::new(),
        }
    }

    fn with_collect(mut self, paths: &HostPaths, collect: &[String]) -> Result<Self, String> {
        for group in collect {
            match group.as_str() {
                "ksm" => {
                    let dir = paths.sys("kernel/mm/ksm");
                    if !dir.is_dir() {
                        return Err(format!(
                            "directory {} does not exist: KSM is not enabled in this kernel",
                            dir.display()
                        ));
                    }
                    self.ksm = Some(dir);
                }
                "psi" => {
                    let dir = paths.proc("pressure");
                    if !dir.is_dir() {
                        return Err(format!(
                            "directory {} does not exist: this kernel has no pressure stall \
                             information (PSI, Linux 4.20+ with CONFIG_PSI)",
                            dir.display()
                        ));
                    }
                    self.psi =
                        Some(["cpu", "memory", "io"].map(|r| (r, ProcFile::new(dir.join(r)))));
                }
                other => {
                    return Err(format!(
                        "unknown group {other:?}; valid groups: \"ksm\", \"psi\""
                    ));
                }
            }
        }
        Ok(self)
    }

    fn gather_ksm(
        &mut self,
        dir: &std::path::Path,
        m: &mut crate::model::Metric,
    ) -> Result<(), String> {
        for (name, required) in KSM_STATS
            .iter()
            .map(|n| (n, true))
            .chain(KSM_EXTRA_STATS.iter().map(|n| (n, false)))
        {
            let path = dir.join(name);
            match crate::inputs::host::read_to(&path, &mut self.buf) {
                Ok(()) => match self.buf.trim().parse::<i64>() {
                    Ok(v) => push(m, format!("ksm_{name}"), v),
                    Err(_) => {
                        return Err(format!(
                            "{}: not a number: {:?}",
                            path.display(),
                            self.buf.trim()
                        ));
                    }
                },
                Err(e) if required => return Err(format!("{}: {e}", path.display())),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Telegraf's `pressure` metrics: per resource and type a counter with `total` and a gauge
    /// with the averages; cpu/full is left out (always zero).
    fn gather_psi(&mut self, acc: &mut Accumulator) {
        let Some(files) = self.psi.as_mut() else {
            return;
        };
        for (resource, file) in files.iter_mut() {
            if let Err(e) = file.read_or_err(&mut self.buf) {
                acc.add_error(format!("reading {resource} pressure: {e}"));
                continue;
            }
            for line in self.buf.lines() {
                let Some(psi) = parse_psi_line(line) else {
                    acc.add_error(format!(
                        "{}: unexpected line {line:?}",
                        file.path().display()
                    ));
                    continue;
                };
                if *resource == "cpu" && psi.kind == "full" {
                    continue;
                }
                let tags = [("resource", *resource), ("type", psi.kind)];
                acc.add_fields(
                    "pressure",
                    &tags,
                    [("total", psi.total)],
                    ValueType::Counter,
                );
                acc.add_fields(
                    "pressure",
                    &tags,
                    [
                        ("avg10", psi.avg10),
                        ("avg60", psi.avg60),
                        ("avg300", psi.avg300),
                    ],
                    ValueType::Gauge,
                );
            }
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        let mut m = metric(acc, "kernel", ValueType::Counter, 7);
        match self.entropy.read_or_err(&mut self.buf) {
            Ok(()) => match self.buf.trim().parse::<i64>() {
                Ok(v) => push(&mut m, "entropy_avail", v),
                Err(_) => acc.add_error(format!(
                    "{}: not a number: {:?}",
                    self.entropy.path().display(),
                    self.buf.trim()
                )),
            },
            Err(e) => acc.add_error(e),
        }
        let stat = &self.stat;
        let tick = acc.time();
        let parsed = stat.with_or_err(tick, |text| {
            let int = |s: Option<&str>| s.and_then(|v| v.parse::<i64>().ok());
            for line in text.lines() {
                let mut it = line.split_ascii_whitespace();
                let (name, v) = match it.next() {
                    Some("intr") => ("interrupts", int(it.next())),
                    Some("ctxt") => ("context_switches", int(it.next())),
                    Some("processes") => ("processes_forked", int(it.next())),
                    Some("btime") => ("boot_time", int(it.next())),
                    // Only kernels before 2.6 have the "page" line.
                    Some("page") => {
                        if let (Some(i), Some(o)) = (int(it.next()), int(it.next())) {
                            push(&mut m, "disk_pages_in", i);
                            push(&mut m, "disk_pages_out", o);
                        }
                        continue;
                    }
                    _ => continue,
                };
                match v {
                    Some(v) => push(&mut m, name, v),
                    None => acc.add_error(format!(
                        "{}: bad {name} line {line:?}",
                        stat.path().display()
                    )),
                }
            }
        });
        if let Err(e) = parsed {
            acc.add_error(e);
        }
        if let Some(dir) = self.ksm.take() {
            if let Err(e) = self.gather_ksm(&dir, &mut m) {
                acc.add_error(e);
            }
            self.ksm = Some(dir);
        }
        acc.add(m);
        self.gather_psi(acc);
    }
}

struct PsiLine<'a> {
    kind: &'a str,
    avg10: f64,
    avg60: f64,
    avg300: f64,
    total: u64,
}

/// `some avg10=0.00 avg60=0.12 avg300=0.05 total=123456`
fn parse_psi_line(line: &str) -> Option<PsiLine<'_>> {
    let mut it = line.split_ascii_whitespace();
    let kind = it.next().filter(|k| *k == "some" || *k == "full")?;
    let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
    for kv in it {
        let (k, v) = kv.split_once('=')?;
        match k {
            "avg10" => avg10 = v.parse().ok(),
            "avg60" => avg60 = v.parse().ok(),
            "avg300" => avg300 = v.parse().ok(),
            "total" => total = v.parse().ok(),
            _ => {}
        }
    }
    Some(PsiLine {
        kind,
        avg10: avg10?,
        avg60: avg60?,
        avg300: avg300?,
        total: total?,
    })
}

/// This input's gather on a fixture tree, for the shared-read tests in `inputs::host`.
#[cfg(test)]
pub(crate) fn gatherer(paths: &HostPaths) -> impl FnMut(&mut Accumulator) {
    let mut input = Kernel::new(paths);
    move |acc| input.gather_sync(acc)
}

#[async_trait]
impl Input for Kernel {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let paths = HostPaths::from_env();
    let kernel = Kernel::new(&paths)
        .with_collect(&paths, &cfg.collect)
        .map_err(|e| crate::inputs::host::config_error("collect", e))?;
    Ok(InputPlugin::Polled(Box::new(kernel)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "kernel",
    description: "Kernel counters: boot time, context switches, interrupts, forks, entropy; KSM and pressure stall information (Telegraf's kernel)",
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
        let mut k = Kernel::new(paths);
        let mut acc = Accumulator::new(1);
        k.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn modern() {
        let acc = gather(&fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let m = &acc.metrics[0];
        assert_eq!(m.kind, ValueType::Counter);
        assert_eq!(m.field("interrupts"), Some(&FieldValue::Int(123456)));
        assert_eq!(m.field("context_switches"), Some(&FieldValue::Int(987654)));
        assert_eq!(m.field("processes_forked"), Some(&FieldValue::Int(4242)));
        assert_eq!(m.field("boot_time"), Some(&FieldValue::Int(1700000000)));
        assert_eq!(m.field("entropy_avail"), Some(&FieldValue::Int(256)));
        assert!(m.field("disk_pages_in").is_none());
    }

    #[test]
    fn old_kernel_page_line_and_missing_entropy() {
        let acc = gather(&fixture("old"));
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        assert!(acc.errors[0].contains("entropy_avail"));
        let m = &acc.metrics[0];
        assert_eq!(m.field("disk_pages_in"), Some(&FieldValue::Int(5741)));
        assert_eq!(m.field("disk_pages_out"), Some(&FieldValue::Int(1808)));
        assert_eq!(m.field("boot_time"), Some(&FieldValue::Int(1062191376)));
    }

    #[test]
    fn psi_lines_parse() {
        let p = parse_psi_line("full avg10=1.50 avg60=0.25 avg300=0.00 total=98765").unwrap();
        assert_eq!(p.kind, "full");
        assert_eq!(
            (p.avg10, p.avg60, p.avg300, p.total),
            (1.5, 0.25, 0.0, 98765)
        );
        assert!(parse_psi_line("some avg10=1.50 total=1").is_none());
        assert!(parse_psi_line("half avg10=0 avg60=0 avg300=0 total=1").is_none());
        assert!(parse_psi_line("").is_none());
    }

    #[test]
    fn unknown_collect_group_is_refused() {
        let e = Kernel::new(&HostPaths::default())
            .with_collect(&HostPaths::default(), &["kms".into()])
            .err()
            .unwrap();
        assert!(e.contains("\"kms\"") && e.contains("ksm"), "{e}");
        let missing = HostPaths::under("/nonexistent");
        let e = Kernel::new(&missing)
            .with_collect(&missing, &["ksm".into()])
            .err()
            .unwrap();
        assert!(e.contains("KSM is not enabled"), "{e}");
    }

    /// The host's own /sys/kernel/mm/ksm and /proc/pressure (present on this machine and on CI:
    /// the test fails, rather than skips, on a kernel without them).
    #[test]
    fn real_ksm_and_psi() {
        let paths = HostPaths::default();
        let mut k = Kernel::new(&paths)
            .with_collect(&paths, &["ksm".into(), "psi".into()])
            .unwrap();
        let mut acc = Accumulator::new(1);
        k.gather_sync(&mut acc);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let kernel = &acc.metrics[0];
        for name in KSM_STATS {
            let want: i64 = std::fs::read_to_string(format!("/sys/kernel/mm/ksm/{name}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let got = kernel.field(&format!("ksm_{name}"));
            // Counters such as full_scans may move between the two reads; flags and limits don't.
            if [
                "max_page_sharing",
                "merge_across_nodes",
                "run",
                "use_zero_pages",
            ]
            .contains(&name)
            {
                assert_eq!(got, Some(&FieldValue::Int(want)), "{name}");
            } else {
                assert!(matches!(got, Some(FieldValue::Int(_))), "{name}: {got:?}");
            }
        }
        let pressure: Vec<_> = acc
            .metrics
            .iter()
            .filter(|m| &*m.name == "pressure")
            .collect();
        // cpu some, memory some/full, io some/full: a counter and a gauge each.
        assert_eq!(pressure.len(), 10, "{pressure:?}");
        assert!(
            !pressure
                .iter()
                .any(|m| m.tag("resource") == Some("cpu") && m.tag("type") == Some("full"))
        );
        let io_full_total = pressure
            .iter()
            .find(|m| {
                m.tag("resource") == Some("io")
                    && m.tag("type") == Some("full")
                    && m.kind == ValueType::Counter
            })
            .unwrap();
        assert!(matches!(
            io_full_total.field("total"),
            Some(FieldValue::UInt(_))
        ));
    }

    #[test]
    fn real_boot_time_matches_proc_stat() {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let btime: i64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let acc = gather(&HostPaths::default());
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(
            acc.metrics[0].field("boot_time"),
            Some(&FieldValue::Int(btime))
        );
    }
}
