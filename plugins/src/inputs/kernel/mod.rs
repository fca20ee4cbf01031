//! `inputs.kernel`: boot time, context switches, interrupts, forks and entropy, as Telegraf's
//! kernel plugin (from /proc/stat and /proc/sys/kernel/random/entropy_avail).

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::{ProcFile, SharedFile};
use crate::inputs::host::{HostPaths, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

struct Kernel {
    /// /proc/stat, read once per tick with inputs.cpu and inputs.system.
    stat: SharedFile,
    entropy: ProcFile,
    buf: String,
}

impl Kernel {
    fn new(paths: &HostPaths) -> Self {
        Kernel {
            stat: SharedFile::new(paths.proc("stat")),
            entropy: ProcFile::new(paths.proc("sys/kernel/random/entropy_avail")),
            buf: String::new(),
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
        acc.add(m);
    }
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
    let _cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Kernel::new(
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "kernel",
    description: "Kernel counters: boot time, context switches, interrupts, forks, entropy (Telegraf's kernel)",
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
