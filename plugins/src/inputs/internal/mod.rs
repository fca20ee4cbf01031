//! `inputs.internal`: the agent's own metrics (Telegraf's `internal_*` measurements).
//!
//! `internal_agent`, `internal_gather` and `internal_write` are kept by the agent in
//! [`crate::selfstat`]; this input reports them, plus the process's memory as
//! `internal_memstats`.

use async_trait::async_trait;
use serde::Deserialize;

use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};
use crate::selfstat;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    collect_memstats: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collect_memstats: true,
        }
    }
}

pub struct Internal {
    collect_memstats: bool,
}

#[async_trait]
impl Input for Internal {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        for m in selfstat::snapshot(acc.time()) {
            acc.add(m);
        }
        if self.collect_memstats {
            match std::fs::read_to_string("/proc/self/status") {
                Ok(status) => acc.add_fields(
                    "internal_memstats",
                    &[],
                    memstats(&status),
                    ValueType::Gauge,
                ),
                Err(e) => acc.add_error(format!("reading /proc/self/status: {e}")),
            }
        }
        Ok(())
    }
}

/// The memory fields of `/proc/self/status` (values given there in kB), in bytes.
fn memstats(status: &str) -> Vec<(&'static str, i64)> {
    // (field in /proc, our field name): Telegraf's `sys_bytes` is what the runtime got from
    // the OS, which for a non-GC process is closest to the resident set.
    const MAP: &[(&str, &str)] = &[
        ("VmRSS", "rss_bytes"),
        ("VmHWM", "rss_peak_bytes"),
        ("VmSize", "vm_bytes"),
        ("VmData", "heap_sys_bytes"),
    ];
    let mut out = Vec::new();
    for line in status.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        if key == "Threads" {
            if let Ok(n) = rest.trim().parse::<i64>() {
                out.push(("threads", n));
            }
            continue;
        }
        let Some((_, name)) = MAP.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        let kb = rest.trim().trim_end_matches("kB").trim();
        if let Ok(n) = kb.parse::<i64>() {
            out.push((*name, n * 1024));
            if *name == "rss_bytes" {
                out.push(("sys_bytes", n * 1024));
            }
        }
    }
    out
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Internal {
        collect_memstats: cfg.collect_memstats,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "internal",
    description: "The agent's own metrics: gathers, writes, drops, buffers, memory",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldValue;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tsonde\nVmPeak:\t  9000 kB\nVmSize:\t  8000 kB\nVmHWM:\t  3000 kB\n\
                      VmRSS:\t  2000 kB\nVmData:\t  1000 kB\nThreads:\t4\n";
        let got = memstats(status);
        assert!(got.contains(&("rss_bytes", 2000 * 1024)));
        assert!(got.contains(&("sys_bytes", 2000 * 1024)));
        assert!(got.contains(&("rss_peak_bytes", 3000 * 1024)));
        assert!(got.contains(&("vm_bytes", 8000 * 1024)));
        assert!(got.contains(&("heap_sys_bytes", 1000 * 1024)));
        assert!(got.contains(&("threads", 4)));
        assert_eq!(got.len(), 6);
    }

    #[tokio::test]
    async fn reports_selfstats_and_memory() {
        let stats = selfstat::register("internal_write", &[("output", "internal_test")]);
        stats.stat("metrics_written").add(5);
        let InputPlugin::Polled(mut input) =
            build(toml::Table::new(), &Default::default()).unwrap()
        else {
            panic!("internal is a polled input");
        };
        let mut acc = Accumulator::new(99);
        input.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let w = acc
            .metrics
            .iter()
            .find(|m| m.name == "internal_write" && m.tag("output") == Some("internal_test"))
            .expect("selfstat reported");
        assert_eq!(w.field("metrics_written"), Some(&FieldValue::Int(5)));
        assert_eq!(w.time, 99);
        let mem = acc
            .metrics
            .iter()
            .find(|m| m.name == "internal_memstats")
            .expect("memstats reported");
        match mem.field("rss_bytes") {
            Some(FieldValue::Int(n)) => assert!(*n > 0),
            other => panic!("rss_bytes: {other:?}"),
        }
    }

    #[tokio::test]
    async fn memstats_can_be_turned_off() {
        let table: toml::Table = toml::from_str("collect_memstats = false").unwrap();
        let InputPlugin::Polled(mut input) = build(table, &Default::default()).unwrap() else {
            panic!("internal is a polled input");
        };
        let mut acc = Accumulator::new(1);
        input.gather(&mut acc).await.unwrap();
        assert!(!acc.metrics.iter().any(|m| m.name == "internal_memstats"));
    }
}
