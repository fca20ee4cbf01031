//! `inputs.cpu`: CPU time split and usage percentages from /proc/stat, as Telegraf's cpu plugin.

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::SharedFile;
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::{Str, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub percpu: bool,
    pub totalcpu: bool,
    pub collect_cpu_time: bool,
    pub report_active: bool,
    pub core_tags: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            percpu: true,
            totalcpu: true,
            collect_cpu_time: false,
            report_active: false,
            core_tags: false,
        }
    }
}

/// One /proc/stat cpu line, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Times {
    user: f64,
    nice: f64,
    system: f64,
    idle: f64,
    iowait: f64,
    irq: f64,
    softirq: f64,
    steal: f64,
    guest: f64,
    guest_nice: f64,
}

impl Times {
    /// Telegraf's total: guest time is already inside user (and guest_nice inside nice).
    fn total(&self) -> f64 {
        self.user
            + self.system
            + self.nice
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
            + self.idle
    }
    fn active(&self) -> f64 {
        self.total() - self.idle
    }
}

struct Cpu {
    cfg: Config,
    /// /proc/stat, read once per tick with inputs.system and inputs.kernel.
    stat: SharedFile,
    ticks: f64,
    /// Last gather's times by cpu tag ("cpu-total", "cpu0", …).
    last: Vec<(Str, Times)>,
    cur: Vec<(Str, Times)>,
    /// (cpu tag, core_id, physical_id) when core_tags is on.
    cores: Vec<(Str, Str, Str)>,
}

impl Cpu {
    fn new(cfg: Config, paths: &HostPaths) -> Self {
        let cores = if cfg.core_tags {
            read_core_ids(&paths.proc("cpuinfo"))
        } else {
            Vec::new()
        };
        Cpu {
            cfg,
            stat: SharedFile::new(paths.proc("stat")),
            ticks: host::clock_ticks(),
            last: Vec::new(),
            cur: Vec::new(),
            cores,
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        self.cur.clear();
        let (percpu, ticks, cur) = (self.cfg.percpu, self.ticks, &mut self.cur);
        let stat = &self.stat;
        let tick = acc.time();
        let total = match stat.with_or_err(tick, |text| {
            parse_stat(text, percpu, ticks, cur, |line| {
                acc.add_error(format!(
                    "{}: malformed cpu line {line:?}",
                    stat.path().display()
                ))
            })
        }) {
            Ok(total) => total,
            Err(e) => {
                acc.add_error(e);
                return;
            }
        };
        // Telegraf lists the per-cpu metrics first, then the total.
        if self.cfg.totalcpu {
            match total {
                Some(t) => self.cur.push(("cpu-total".into(), t)),
                None => acc.add_error(format!(
                    "{}: no aggregate cpu line",
                    self.stat.path().display()
                )),
            }
        }
        for (tag, t) in &self.cur {
            self.emit(acc, tag, t);
        }
        std::mem::swap(&mut self.last, &mut self.cur);
    }

    fn emit(&self, acc: &mut Accumulator, tag: &Str, t: &Times) {
        let tagged = |mut m: crate::model::Metric| {
            m.tags.push(("cpu".into(), tag.clone()));
            if let Some((_, core, phys)) = self.cores.iter().find(|(c, _, _)| c == tag) {
                m.add_tag("core_id", core.clone());
                m.add_tag("physical_id", phys.clone());
            }
            m
        };
        if self.cfg.collect_cpu_time {
            let mut m = metric(acc, "cpu", ValueType::Counter, 11);
            push(&mut m, "time_user", t.user);
            push(&mut m, "time_system", t.system);
            push(&mut m, "time_idle", t.idle);
            push(&mut m, "time_nice", t.nice);
            push(&mut m, "time_iowait", t.iowait);
            push(&mut m, "time_irq", t.irq);
            push(&mut m, "time_softirq", t.softirq);
            push(&mut m, "time_steal", t.steal);
            push(&mut m, "time_guest", t.guest);
            push(&mut m, "time_guest_nice", t.guest_nice);
            if self.cfg.report_active {
                push(&mut m, "time_active", t.active());
            }
            acc.add(tagged(m));
        }
        // Usage needs a previous sample: none on the first gather, as in Telegraf.
        let Some((_, l)) = self.last.iter().find(|(n, _)| n == tag) else {
            return;
        };
        let delta = t.total() - l.total();
        if delta < 0.0 {
            acc.add_error(format!(
                "{tag}: current total CPU time is less than previous total CPU time"
            ));
            return;
        }
        if delta == 0.0 {
            return;
        }
        let pct = |now: f64, before: f64| 100.0 * (now - before) / delta;
        let mut m = metric(acc, "cpu", ValueType::Gauge, 11);
        push(
            &mut m,
            "usage_user",
            pct(t.user - t.guest, l.user - l.guest),
        );
        push(&mut m, "usage_system", pct(t.system, l.system));
        push(&mut m, "usage_idle", pct(t.idle, l.idle));
        push(
            &mut m,
            "usage_nice",
            pct(t.nice - t.guest_nice, l.nice - l.guest_nice),
        );
        push(&mut m, "usage_iowait", pct(t.iowait, l.iowait));
        push(&mut m, "usage_irq", pct(t.irq, l.irq));
        push(&mut m, "usage_softirq", pct(t.softirq, l.softirq));
        push(&mut m, "usage_steal", pct(t.steal, l.steal));
        push(&mut m, "usage_guest", pct(t.guest, l.guest));
        push(&mut m, "usage_guest_nice", pct(t.guest_nice, l.guest_nice));
        if self.cfg.report_active {
            push(&mut m, "usage_active", pct(t.active(), l.active()));
        }
        acc.add(tagged(m));
    }
}

/// The cpu lines of /proc/stat: the per-cpu times into `cur` (when `percpu`), the aggregate
/// returned; `bad` gets each malformed cpu line.
fn parse_stat(
    text: &str,
    percpu: bool,
    ticks: f64,
    cur: &mut Vec<(Str, Times)>,
    mut bad: impl FnMut(&str),
) -> Option<Times> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let is_total = rest.starts_with(' ');
        let id = if is_total {
            ""
        } else {
            it.next().unwrap_or("")
        };
        let Some(times) = parse_times(&mut it, ticks) else {
            bad(line);
            continue;
        };
        if is_total {
            total = Some(times);
        } else if percpu {
            let mut tag = Str::new("cpu");
            tag.push_str(id);
            cur.push((tag, times));
        }
    }
    total
}

/// Parses the tick columns of a cpu line. Kernels before 2.6.11/2.6.24/2.6.33 lack steal,
/// guest and guest_nice (they read as 0); later columns are ignored.
fn parse_times<'a>(it: &mut impl Iterator<Item = &'a str>, ticks: f64) -> Option<Times> {
    let mut v = [0f64; 10];
    let mut n = 0;
    for (slot, s) in v.iter_mut().zip(it) {
        *slot = s.parse::<u64>().ok()? as f64 / ticks;
        n += 1;
    }
    if n < 4 {
        return None;
    }
    Some(Times {
        user: v[0],
        nice: v[1],
        system: v[2],
        idle: v[3],
        iowait: v[4],
        irq: v[5],
        softirq: v[6],
        steal: v[7],
        guest: v[8],
        guest_nice: v[9],
    })
}

/// (cpuN, core id, physical id) from /proc/cpuinfo, for core_tags.
fn read_core_ids(path: &std::path::Path) -> Vec<(Str, Str, Str)> {
    let mut buf = String::new();
    if host::read_to(path, &mut buf).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let (mut cpu, mut core, mut phys) = (None, None, None);
    let mut flush = |cpu: &mut Option<Str>, core: &mut Option<Str>, phys: &mut Option<Str>| {
        if let Some(c) = cpu.take() {
            out.push((
                c,
                core.take().unwrap_or_default(),
                phys.take().unwrap_or_default(),
            ));
        }
        *core = None;
        *phys = None;
    };
    for line in buf.lines() {
        let Some((k, v)) = line.split_once(':') else {
            flush(&mut cpu, &mut core, &mut phys);
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "processor" => {
                flush(&mut cpu, &mut core, &mut phys);
                let mut s = Str::new("cpu");
                s.push_str(v);
                cpu = Some(s);
            }
            "core id" => core = Some(v.into()),
            "physical id" => phys = Some(v.into()),
            _ => {}
        }
    }
    flush(&mut cpu, &mut core, &mut phys);
    out
}

/// This input's gather on a fixture tree, for the shared-read tests in `inputs::host`.
#[cfg(test)]
pub(crate) fn gatherer(paths: &HostPaths) -> impl FnMut(&mut Accumulator) {
    let mut input = Cpu::new(
        Config {
            collect_cpu_time: true,
            ..Config::default()
        },
        paths,
    );
    move |acc| input.gather_sync(acc)
}

#[async_trait]
impl Input for Cpu {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Cpu::new(
        cfg,
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "cpu",
    description: "CPU usage and time split per CPU and in total (Telegraf's cpu)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn f(m: &crate::model::Metric, k: &str) -> f64 {
        m.field(k).and_then(FieldValue::as_f64).unwrap()
    }

    fn run(c: &mut Cpu) -> Accumulator {
        // A tick of its own: /proc/stat is read afresh.
        let mut acc = Accumulator::new(crate::model::now_ns());
        c.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn first_gather_has_no_usage_then_deltas() {
        let cfg = Config {
            collect_cpu_time: true,
            report_active: true,
            ..Config::default()
        };
        let mut c = Cpu::new(cfg, &fixture("modern"));
        c.ticks = 100.0;
        let acc = run(&mut c);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        // cpu0, cpu1, cpu-total: time metrics only.
        assert_eq!(acc.metrics.len(), 3);
        assert!(acc.metrics.iter().all(|m| m.field("usage_user").is_none()));
        let total = &acc.metrics[2];
        assert_eq!(total.tag("cpu"), Some("cpu-total"));
        assert_eq!(total.kind, ValueType::Counter);
        assert_eq!(f(total, "time_user"), 1000.0);
        assert_eq!(f(total, "time_guest_nice"), 0.5);
        assert_eq!(acc.metrics[0].tag("cpu"), Some("cpu0"));

        // Pretend 100s passed: add known deltas to the last sample.
        for (_, t) in c.last.iter_mut() {
            t.user -= 30.0; // of which guest 10
            t.guest -= 10.0;
            t.system -= 20.0;
            t.idle -= 50.0;
        }
        let acc = run(&mut c);
        let usage: Vec<_> = acc
            .metrics
            .iter()
            .filter(|m| m.kind == ValueType::Gauge)
            .collect();
        assert_eq!(usage.len(), 3);
        let u = usage[2];
        assert_eq!(u.tag("cpu"), Some("cpu-total"));
        assert!((f(u, "usage_user") - 20.0).abs() < 1e-9);
        assert!((f(u, "usage_guest") - 10.0).abs() < 1e-9);
        assert!((f(u, "usage_system") - 20.0).abs() < 1e-9);
        assert!((f(u, "usage_idle") - 50.0).abs() < 1e-9);
        assert!((f(u, "usage_active") - 50.0).abs() < 1e-9);
    }

    #[test]
    fn old_kernel_without_steal_and_guest() {
        let mut c = Cpu::new(
            Config {
                collect_cpu_time: true,
                ..Config::default()
            },
            &fixture("old"),
        );
        let acc = run(&mut c);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 2);
        assert_eq!(f(&acc.metrics[1], "time_steal"), 0.0);
        assert_eq!(f(&acc.metrics[1], "time_guest"), 0.0);
    }

    #[test]
    fn extra_columns_ignored_and_options_respected() {
        let mut c = Cpu::new(
            Config {
                percpu: false,
                collect_cpu_time: true,
                core_tags: true,
                ..Config::default()
            },
            &fixture("extra"),
        );
        let acc = run(&mut c);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 1);
        assert_eq!(acc.metrics[0].tag("cpu"), Some("cpu-total"));
        let mut c = Cpu::new(
            Config {
                totalcpu: false,
                collect_cpu_time: true,
                core_tags: true,
                ..Config::default()
            },
            &fixture("extra"),
        );
        let acc = run(&mut c);
        assert_eq!(acc.metrics.len(), 2);
        assert_eq!(acc.metrics[1].tag("core_id"), Some("1"));
        assert_eq!(acc.metrics[1].tag("physical_id"), Some("0"));
    }

    #[test]
    fn missing_file_is_an_error_not_a_panic() {
        let mut c = Cpu::new(Config::default(), &fixture("empty"));
        let acc = run(&mut c);
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.metrics.is_empty());
    }

    #[test]
    fn real_proc_usage_sums_to_100_on_second_gather() {
        let mut c = Cpu::new(Config::default(), &HostPaths::default());
        assert!(run(&mut c).metrics.is_empty());
        // Burn a little CPU so the interval has ticks to share out.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_add(1);
        }
        std::hint::black_box(x);
        let acc = run(&mut c);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let total = acc
            .metrics
            .iter()
            .find(|m| m.tag("cpu") == Some("cpu-total"))
            .expect("cpu-total usage");
        let sum: f64 = total
            .fields
            .iter()
            .filter(|(k, _)| k.starts_with("usage_"))
            .map(|(_, v)| v.as_f64().unwrap())
            .sum();
        assert!((sum - 100.0).abs() < 0.01, "sum {sum}");
    }
}
