//! `inputs.internal`: the agent's own metrics (Telegraf's `internal_*` measurements).
//!
//! `internal_agent`, `internal_gather` and `internal_write` are kept by the agent in
//! [`crate::selfstat`]; this input reports them, summed per plugin type as Telegraf does (or
//! per instance with an `_id` tag, `per_instance = true`), plus the process's memory as
//! `internal_memstats` with Telegraf's field names where they mean something for a process
//! without a garbage collector.

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
    /// Go runtime statistics: accepted for Telegraf configs, with a warning (no Go runtime).
    collect_gostats: bool,
    per_instance: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collect_memstats: true,
            collect_gostats: false,
            per_instance: false,
        }
    }
}

pub struct Internal {
    collect_memstats: bool,
    per_instance: bool,
}

#[async_trait]
impl Input for Internal {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let stats = selfstat::snapshot(acc.time(), self.per_instance);
        for m in if self.per_instance {
            stats
        } else {
            sum_per_type(stats)
        } {
            acc.add(m);
        }
        if self.collect_memstats {
            match std::fs::read_to_string("/proc/self/status") {
                Ok(status) => {
                    let mut fields = memstats(&status);
                    fields.extend(selfstat::heap_stats());
                    acc.add_fields("internal_memstats", &[], fields, ValueType::Gauge)
                }
                Err(e) => acc.add_error(format!("reading /proc/self/status: {e}")),
            }
        }
        Ok(())
    }
}

/// Telegraf's default: the metrics of plugins of one type (same measurement and tags, such as
/// two unaliased `inputs.cpu`) are summed field by field into one.
fn sum_per_type(metrics: Vec<crate::model::Metric>) -> Vec<crate::model::Metric> {
    let mut out: Vec<crate::model::Metric> = Vec::with_capacity(metrics.len());
    for m in metrics {
        match out
            .iter_mut()
            .find(|o| o.name == m.name && o.tags == m.tags)
        {
            Some(o) => {
                for (k, v) in m.fields {
                    let add = match v {
                        crate::FieldValue::Int(n) => n,
                        _ => continue,
                    };
                    match o.fields.iter_mut().find(|(ok, _)| *ok == k) {
                        Some((_, crate::FieldValue::Int(have))) => *have += add,
                        _ => o.add_field(k, add),
                    }
                }
            }
            None => out.push(m),
        }
    }
    out
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
    if cfg.collect_gostats {
        tracing::warn!(
            "inputs.internal: collect_gostats has no effect: sonde has no Go runtime; its memory \
             is in internal_memstats"
        );
    }
    Ok(InputPlugin::Polled(Box::new(Internal {
        collect_memstats: cfg.collect_memstats,
        per_instance: cfg.per_instance,
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
        for field in ["rss_bytes", "sys_bytes", "heap_sys_bytes"] {
            match mem.field(field) {
                Some(FieldValue::Int(n)) => assert!(*n > 0, "{field}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        // Test binaries run on glibc's allocator, whose mallinfo2 gives the heap in use.
        #[cfg(target_env = "gnu")]
        for field in ["alloc_bytes", "heap_alloc_bytes", "heap_in_use_bytes"] {
            match mem.field(field) {
                Some(FieldValue::Int(n)) => assert!(*n > 0, "{field}"),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    /// Two instances of one plugin type: summed by default, apart with `_id` per instance.
    #[tokio::test]
    async fn per_type_sums_and_per_instance_keeps_apart() {
        let tags = [("output", "internal_sum_test")];
        let a = selfstat::register("internal_write", &tags);
        let b = selfstat::register("internal_write", &tags);
        a.stat("metrics_written").add(5);
        b.stat("metrics_written").add(7);
        b.stat("errors").add(1);
        let mine = |acc: &Accumulator| -> Vec<crate::model::Metric> {
            acc.metrics
                .iter()
                .filter(|m| m.tag("output") == Some("internal_sum_test"))
                .cloned()
                .collect()
        };
        for (per_instance, want) in [(false, 1), (true, 2)] {
            let table: toml::Table =
                toml::from_str(&format!("per_instance = {per_instance}")).unwrap();
            let InputPlugin::Polled(mut input) = build(table, &Default::default()).unwrap() else {
                panic!()
            };
            let mut acc = Accumulator::new(1);
            input.gather(&mut acc).await.unwrap();
            let got = mine(&acc);
            assert_eq!(got.len(), want, "{got:?}");
            if per_instance {
                let ids: Vec<_> = got
                    .iter()
                    .map(|m| m.tag("_id").unwrap().to_string())
                    .collect();
                assert_ne!(ids[0], ids[1]);
                let total: i64 = got
                    .iter()
                    .map(|m| match m.field("metrics_written") {
                        Some(FieldValue::Int(n)) => *n,
                        _ => 0,
                    })
                    .sum();
                assert_eq!(total, 12);
            } else {
                assert!(got[0].tag("_id").is_none());
                assert_eq!(got[0].field("metrics_written"), Some(&FieldValue::Int(12)));
                assert_eq!(got[0].field("errors"), Some(&FieldValue::Int(1)));
            }
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
