//! `inputs.swap`: swap space (/proc/meminfo) and swap traffic (/proc/vmstat), as Telegraf's swap.

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::{ProcFile, SharedFile};
use crate::inputs::host::{self, HostPaths, MemInfo, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

struct Swap {
    /// /proc/meminfo, read once per tick with inputs.mem.
    meminfo: SharedFile,
    vmstat: ProcFile,
    page_size: u64,
    buf: String,
}

impl Swap {
    fn new(paths: &HostPaths) -> Self {
        Swap {
            meminfo: SharedFile::new(paths.proc("meminfo")),
            vmstat: ProcFile::new(paths.proc("vmstat")),
            page_size: host::page_size(),
            buf: String::new(),
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        match self
            .meminfo
            .with_or_err(acc.time(), |t| MemInfo::parse(t).swap())
        {
            Err(e) => acc.add_error(e),
            Ok(swap) => match swap {
                (Some(total), Some(free)) => {
                    let used = total.saturating_sub(free);
                    let pct = if total == 0 {
                        0.0
                    } else {
                        100.0 * used as f64 / total as f64
                    };
                    let mut m = metric(acc, "swap", ValueType::Gauge, 4);
                    push(&mut m, "total", total);
                    push(&mut m, "used", used);
                    push(&mut m, "free", free);
                    push(&mut m, "used_percent", pct);
                    acc.add(m);
                }
                _ => acc.add_error(format!(
                    "{}: no SwapTotal/SwapFree",
                    self.meminfo.path().display()
                )),
            },
        }

        if let Err(e) = self.vmstat.read_or_err(&mut self.buf) {
            acc.add_error(e);
            return;
        }
        let (mut sin, mut sout) = (None, None);
        for line in self.buf.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "pswpin" => sin = host::first_u64(v),
                "pswpout" => sout = host::first_u64(v),
                _ => {}
            }
        }
        let mut m = metric(acc, "swap", ValueType::Counter, 2);
        // vmstat counts pages; Telegraf reports bytes.
        if let Some(v) = sin {
            push(&mut m, "in", v * self.page_size);
        }
        if let Some(v) = sout {
            push(&mut m, "out", v * self.page_size);
        }
        acc.add(m);
    }
}

/// This input's gather on a fixture tree, for the shared-read tests in `inputs::host`.
#[cfg(test)]
pub(crate) fn gatherer(paths: &HostPaths) -> impl FnMut(&mut Accumulator) {
    let mut input = Swap::new(paths);
    move |acc| input.gather_sync(acc)
}

#[async_trait]
impl Input for Swap {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let _cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Swap::new(
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "swap",
    description: "Swap space and swap traffic (Telegraf's swap)",
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
        let mut s = Swap::new(paths);
        s.page_size = 4096;
        let mut acc = Accumulator::new(1);
        s.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn space_and_traffic() {
        let acc = gather(&fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 2);
        let g = &acc.metrics[0];
        assert_eq!(g.field("total"), Some(&FieldValue::UInt(1_000_000 * 1024)));
        assert_eq!(g.field("used"), Some(&FieldValue::UInt(250_000 * 1024)));
        assert_eq!(g.field("used_percent"), Some(&FieldValue::Float(25.0)));
        let c = &acc.metrics[1];
        assert_eq!(c.kind, ValueType::Counter);
        assert_eq!(c.field("in"), Some(&FieldValue::UInt(10 * 4096)));
        assert_eq!(c.field("out"), Some(&FieldValue::UInt(20 * 4096)));
    }

    #[test]
    fn no_swap_configured_is_zero_percent_and_missing_vmstat_is_an_error() {
        let acc = gather(&fixture("old"));
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        assert!(acc.errors[0].contains("vmstat"));
        assert_eq!(
            acc.metrics[0].field("used_percent"),
            Some(&FieldValue::Float(0.0))
        );
    }
}
