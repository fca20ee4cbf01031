//! `inputs.system`: load averages, CPU counts, logged-in users and uptime, as Telegraf's system.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::{ProcFile, SharedFile};
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::{FieldValue, Str, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

struct System {
    loadavg: ProcFile,
    /// /proc/stat, read once per tick with inputs.cpu and inputs.kernel.
    stat: SharedFile,
    cpu_dir: PathBuf,
    utmp: PathBuf,
    buf: String,
    utmp_buf: Vec<u8>,
    /// Physical core count, recomputed only when the online CPU count changes.
    physical: Option<(i64, i64)>,
    /// Wall clock in seconds, replaceable for tests.
    now: fn() -> u64,
}

fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl System {
    fn new(paths: &HostPaths) -> Self {
        System {
            loadavg: ProcFile::new(paths.proc("loadavg")),
            stat: SharedFile::new(paths.proc("stat")),
            cpu_dir: paths.sys("devices/system/cpu"),
            utmp: paths.var.join("run/utmp"),
            buf: String::new(),
            utmp_buf: Vec::new(),
            physical: None,
            now: wall_secs,
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        let mut g = metric(acc, "system", ValueType::Gauge, 7);
        match self.loadavg.read_or_err(&mut self.buf) {
            Err(e) => acc.add_error(e),
            Ok(()) => {
                let mut it = self.buf.split_ascii_whitespace().map(str::parse::<f64>);
                match (it.next(), it.next(), it.next()) {
                    (Some(Ok(l1)), Some(Ok(l5)), Some(Ok(l15))) => {
                        push(&mut g, "load1", l1);
                        push(&mut g, "load5", l5);
                        push(&mut g, "load15", l15);
                    }
                    _ => acc.add_error(format!(
                        "{}: unexpected content {:?}",
                        self.loadavg.path().display(),
                        self.buf.trim()
                    )),
                }
            }
        }

        // One read of /proc/stat gives the online CPUs (its cpuN lines) and the boot time.
        let mut btime = None;
        let counted = self.stat.with_or_err(acc.time(), |text| {
            let mut n_cpus = 0i64;
            for line in text.lines() {
                let b = line.as_bytes();
                if b.len() > 3 && b.starts_with(b"cpu") && b[3].is_ascii_digit() {
                    n_cpus += 1;
                } else if let Some(v) = line.strip_prefix("btime ") {
                    btime = host::first_u64(v);
                }
            }
            n_cpus
        });
        match counted {
            Err(e) => acc.add_error(e),
            Ok(n_cpus) => {
                push(&mut g, "n_cpus", n_cpus);
                let phys = match self.physical {
                    Some((n, p)) if n == n_cpus => p,
                    _ => {
                        let p = physical_cores(&self.cpu_dir);
                        self.physical = Some((n_cpus, p));
                        p
                    }
                };
                if phys > 0 {
                    push(&mut g, "n_physical_cpus", phys);
                }
            }
        }

        // A missing or unreadable utmp only drops the user counts, as in Telegraf.
        if let Some((n, unique)) = self.users() {
            push(&mut g, "n_users", n);
            push(&mut g, "n_unique_users", unique);
        }
        acc.add(g);

        match btime {
            Some(b) => {
                let up = (self.now)().saturating_sub(b);
                let mut c = metric(acc, "system", ValueType::Counter, 1);
                push(&mut c, "uptime", up);
                acc.add(c);
                let mut s = metric(acc, "system", ValueType::Untyped, 1);
                push(
                    &mut s,
                    "uptime_format",
                    FieldValue::String(format_uptime(up)),
                );
                acc.add(s);
            }
            None => acc.add_error(format!("{}: no btime line", self.stat.path().display())),
        }
    }

    /// (sessions, distinct user names) of USER_PROCESS records in utmp.
    fn users(&mut self) -> Option<(i64, i64)> {
        use std::io::Read;
        self.utmp_buf.clear();
        std::fs::File::open(&self.utmp)
            .and_then(|mut f| f.read_to_end(&mut self.utmp_buf))
            .ok()?;
        // glibc's struct utmp on Linux: 384 bytes, ut_type (i16) at 0, ut_user[32] at 44.
        const SIZE: usize = 384;
        const USER_PROCESS: i16 = 7;
        let mut names: Vec<&[u8]> = Vec::new();
        let mut n = 0;
        for rec in self.utmp_buf.chunks_exact(SIZE) {
            if i16::from_ne_bytes([rec[0], rec[1]]) != USER_PROCESS {
                continue;
            }
            n += 1;
            let user = &rec[44..76];
            let user = &user[..user.iter().position(|&b| b == 0).unwrap_or(32)];
            if !names.contains(&user) {
                names.push(user);
            }
        }
        Some((n, names.len() as i64))
    }
}

/// Distinct `topology/core_cpus_list` (or the older `thread_siblings_list`) contents over the
/// CPUs: one per physical core, as gopsutil counts them. 0 when sysfs has no topology.
fn physical_cores(cpu_dir: &std::path::Path) -> i64 {
    let Ok(rd) = std::fs::read_dir(cpu_dir) else {
        return 0;
    };
    let cpus: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.as_encoded_bytes();
            n.len() > 3 && n.starts_with(b"cpu") && n[3..].iter().all(u8::is_ascii_digit)
        })
        .map(|e| e.path())
        .collect();
    let mut buf = String::new();
    for file in ["topology/core_cpus_list", "topology/thread_siblings_list"] {
        let mut seen: Vec<String> = Vec::new();
        for cpu in &cpus {
            if host::read_to(&cpu.join(file), &mut buf).is_ok() {
                let v = buf.trim();
                if !v.is_empty() && !seen.iter().any(|s| s == v) {
                    seen.push(v.to_string());
                }
            }
        }
        if !seen.is_empty() {
            return seen.len() as i64;
        }
    }
    0
}

/// Telegraf's uptime_format: "[N day[s], ]HH:MM" with the hour padded by a space.
fn format_uptime(up: u64) -> Str {
    let days = up / 86400;
    let hours = (up / 3600) % 24;
    let minutes = (up / 60) % 60;
    let mut s = String::new();
    if days != 0 {
        s.push_str(&format!("{days} day{}, ", if days > 1 { "s" } else { "" }));
    }
    s.push_str(&format!("{hours:2}:{minutes:02}"));
    s.into()
}

/// This input's gather on a fixture tree, for the shared-read tests in `inputs::host`.
#[cfg(test)]
pub(crate) fn gatherer(paths: &HostPaths) -> impl FnMut(&mut Accumulator) {
    let mut input = System::new(paths);
    move |acc| input.gather_sync(acc)
}

#[async_trait]
impl Input for System {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let _cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(System::new(
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "system",
    description: "Load averages, CPU count, logged-in users and uptime (Telegraf's system)",
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
        let mut s = System::new(paths);
        s.now = || 1_700_000_000 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5;
        let mut acc = Accumulator::new(1);
        s.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn fixture_fields_and_three_metrics() {
        let acc = gather(&fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 3);
        let g = &acc.metrics[0];
        assert_eq!(g.field("load1"), Some(&FieldValue::Float(0.5)));
        assert_eq!(g.field("load15"), Some(&FieldValue::Float(0.25)));
        assert_eq!(g.field("n_cpus"), Some(&FieldValue::Int(2)));
        assert_eq!(g.field("n_physical_cpus"), Some(&FieldValue::Int(1)));
        // utmp: alice twice, bob once, one dead process record.
        assert_eq!(g.field("n_users"), Some(&FieldValue::Int(3)));
        assert_eq!(g.field("n_unique_users"), Some(&FieldValue::Int(2)));
        let up = 2 * 86400 + 3 * 3600 + 4 * 60 + 5;
        assert_eq!(acc.metrics[1].field("uptime"), Some(&FieldValue::UInt(up)));
        assert_eq!(acc.metrics[1].kind, ValueType::Counter);
        assert_eq!(
            acc.metrics[2].field("uptime_format"),
            Some(&FieldValue::String("2 days,  3:04".into()))
        );
    }

    #[test]
    fn no_utmp_no_sysfs_just_drops_those_fields() {
        let acc = gather(&fixture("old"));
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors); // old has no loadavg
        let g = &acc.metrics[0];
        assert_eq!(g.field("n_cpus"), Some(&FieldValue::Int(1)));
        assert!(g.field("n_users").is_none());
        assert!(g.field("n_physical_cpus").is_none());
    }

    #[test]
    fn uptime_format_like_telegraf() {
        assert_eq!(format_uptime(0), " 0:00");
        assert_eq!(format_uptime(86400 + 3600 * 13 + 60 * 7), "1 day, 13:07");
        assert_eq!(
            format_uptime(14 * 86400 + 11 * 3600 + 7 * 60),
            "14 days, 11:07"
        );
    }

    #[test]
    fn real_n_cpus_equals_online_cpus() {
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        let mut want = 0;
        for range in online.trim().split(',') {
            want += match range.split_once('-') {
                Some((a, b)) => b.parse::<i64>().unwrap() - a.parse::<i64>().unwrap() + 1,
                None => 1,
            };
        }
        let mut s = System::new(&HostPaths::default());
        let mut acc = Accumulator::new(1);
        s.gather_sync(&mut acc);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics[0].field("n_cpus"), Some(&FieldValue::Int(want)));
        let up = std::fs::read_to_string("/proc/uptime").unwrap();
        let up: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
        let Some(FieldValue::UInt(got)) = acc.metrics[1].field("uptime") else {
            panic!()
        };
        assert!((*got as f64 - up).abs() < 3.0, "{got} vs {up}");
    }
}
