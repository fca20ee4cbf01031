//! `inputs.system`: load averages, CPU counts, logged-in users and uptime, as Telegraf's system.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::{ProcFile, SharedFile};
use crate::config_types::Duration;
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::{FieldValue, Metric, Str, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Telegraf's groups: "legacy" (the default: three metrics), or any of "cpus", "dmi",
    /// "load", "os", "uptime", "users" (one untyped metric with their fields).
    #[serde(default)]
    include: Vec<String>,
    /// How long the "os" and "dmi" groups are cached between gathers.
    #[serde(default = "eight_hours")]
    os_cache_ttl: Duration,
    #[serde(default = "eight_hours")]
    dmi_cache_ttl: Duration,
}

fn eight_hours() -> Duration {
    Duration::from_secs(8 * 3600)
}

/// Which of Telegraf's `include` groups are on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Groups {
    legacy: bool,
    cpus: bool,
    dmi: bool,
    load: bool,
    os: bool,
    uptime: bool,
    users: bool,
}

impl Groups {
    fn parse(include: &[String]) -> Result<Groups, String> {
        let mut g = Groups::default();
        if include.is_empty() {
            g.legacy = true;
        }
        for name in include {
            let flag = match name.as_str() {
                "legacy" => &mut g.legacy,
                "cpus" => &mut g.cpus,
                "dmi" => &mut g.dmi,
                "load" => &mut g.load,
                "os" => &mut g.os,
                "uptime" => &mut g.uptime,
                "users" => &mut g.users,
                other => {
                    return Err(format!(
                        "invalid group {other:?}; valid groups: legacy, cpus, dmi, load, os, uptime, users"
                    ));
                }
            };
            *flag = true;
        }
        Ok(g)
    }

    fn fine_grained(self) -> bool {
        self.cpus || self.dmi || self.load || self.os || self.uptime || self.users
    }
}

/// String fields of a slowly changing group ("os", "dmi"), kept for a TTL.
struct Cached {
    ttl: std::time::Duration,
    at: Option<std::time::Instant>,
    fields: Vec<(&'static str, Str)>,
}

impl Cached {
    fn new(ttl: Duration) -> Self {
        Cached {
            ttl: ttl.get(),
            at: None,
            fields: Vec::new(),
        }
    }

    fn get(&mut self, read: impl FnOnce() -> Vec<(&'static str, Str)>) -> &[(&'static str, Str)] {
        if self.at.is_none_or(|at| at.elapsed() >= self.ttl) {
            self.fields = read();
            self.at = Some(std::time::Instant::now());
        }
        &self.fields
    }
}

struct System {
    groups: Groups,
    loadavg: ProcFile,
    /// /proc/stat, read once per tick with inputs.cpu and inputs.kernel.
    stat: SharedFile,
    cpu_dir: PathBuf,
    utmp: PathBuf,
    paths: HostPaths,
    os: Cached,
    dmi: Cached,
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
            groups: Groups {
                legacy: true,
                ..Groups::default()
            },
            loadavg: ProcFile::new(paths.proc("loadavg")),
            stat: SharedFile::new(paths.proc("stat")),
            cpu_dir: paths.sys("devices/system/cpu"),
            utmp: paths.var.join("run/utmp"),
            paths: paths.clone(),
            os: Cached::new(eight_hours()),
            dmi: Cached::new(eight_hours()),
            buf: String::new(),
            utmp_buf: Vec::new(),
            physical: None,
            now: wall_secs,
        }
    }

    /// The 1, 5 and 15-minute load averages.
    fn load(&mut self, acc: &mut Accumulator) -> Option<[f64; 3]> {
        if let Err(e) = self.loadavg.read_or_err(&mut self.buf) {
            acc.add_error(e);
            return None;
        }
        let mut it = self.buf.split_ascii_whitespace().map(str::parse::<f64>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(l1)), Some(Ok(l5)), Some(Ok(l15))) => Some([l1, l5, l15]),
            _ => {
                acc.add_error(format!(
                    "{}: unexpected content {:?}",
                    self.loadavg.path().display(),
                    self.buf.trim()
                ));
                None
            }
        }
    }

    /// Online logical CPUs (the cpuN lines of /proc/stat) and the boot time, from one read.
    fn stat(&mut self, acc: &mut Accumulator) -> Option<(i64, Option<u64>)> {
        let counted = self.stat.with_or_err(acc.time(), |text| {
            let mut n_cpus = 0i64;
            let mut btime = None;
            for line in text.lines() {
                let b = line.as_bytes();
                if b.len() > 3 && b.starts_with(b"cpu") && b[3].is_ascii_digit() {
                    n_cpus += 1;
                } else if let Some(v) = line.strip_prefix("btime ") {
                    btime = host::first_u64(v);
                }
            }
            (n_cpus, btime)
        });
        match counted {
            Err(e) => {
                acc.add_error(e);
                None
            }
            Ok(c) => Some(c),
        }
    }

    fn push_cpus(&mut self, m: &mut Metric, n_cpus: i64) {
        push(m, "n_cpus", n_cpus);
        let phys = match self.physical {
            Some((n, p)) if n == n_cpus => p,
            _ => {
                let p = physical_cores(&self.cpu_dir);
                self.physical = Some((n_cpus, p));
                p
            }
        };
        if phys > 0 {
            push(m, "n_physical_cpus", phys);
        }
    }

    fn uptime(&self, acc: &mut Accumulator, btime: Option<u64>) -> Option<u64> {
        match btime {
            Some(b) => Some((self.now)().saturating_sub(b)),
            None => {
                acc.add_error(format!("{}: no btime line", self.stat.path().display()));
                None
            }
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        if self.groups.legacy {
            self.gather_legacy(acc);
        }
        if self.groups.fine_grained() {
            self.gather_groups(acc);
        }
    }

    /// Telegraf's default layout: a gauge, a counter with the uptime, and the formatted uptime.
    fn gather_legacy(&mut self, acc: &mut Accumulator) {
        let mut g = metric(acc, "system", ValueType::Gauge, 7);
        if let Some([l1, l5, l15]) = self.load(acc) {
            push(&mut g, "load1", l1);
            push(&mut g, "load5", l5);
            push(&mut g, "load15", l15);
        }
        let stat = self.stat(acc);
        if let Some((n_cpus, _)) = stat {
            self.push_cpus(&mut g, n_cpus);
        }
        // A missing or unreadable utmp only drops the user counts, as in Telegraf.
        if let Some((n, unique)) = self.users() {
            push(&mut g, "n_users", n);
            push(&mut g, "n_unique_users", unique);
        }
        acc.add(g);

        if let Some((_, btime)) = stat
            && let Some(up) = self.uptime(acc, btime)
        {
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
    }

    /// The fine-grained groups: one untyped metric with the fields of every group chosen.
    fn gather_groups(&mut self, acc: &mut Accumulator) {
        let g = self.groups;
        let mut m = metric(acc, "system", ValueType::Untyped, 40);
        if g.os {
            let paths = &self.paths;
            for (k, v) in self.os.get(|| os_fields(paths)) {
                push(&mut m, *k, FieldValue::String(v.clone()));
            }
        }
        if g.dmi {
            let dir = self.paths.sys("class/dmi/id");
            for (k, v) in self.dmi.get(|| dmi_fields(&dir)) {
                push(&mut m, *k, FieldValue::String(v.clone()));
            }
        }
        if g.load
            && let Some([l1, l5, l15]) = self.load(acc)
        {
            push(&mut m, "load1", l1);
            push(&mut m, "load5", l5);
            push(&mut m, "load15", l15);
        }
        if g.users
            && let Some((n, unique)) = self.users()
        {
            push(&mut m, "n_users", n);
            push(&mut m, "n_unique_users", unique);
        }
        if (g.cpus || g.uptime)
            && let Some((n_cpus, btime)) = self.stat(acc)
        {
            if g.cpus {
                self.push_cpus(&mut m, n_cpus);
            }
            if g.uptime
                && let Some(up) = self.uptime(acc, btime)
            {
                push(&mut m, "uptime", up);
            }
        }
        acc.add(m);
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

/// Telegraf's "os" group: OS family, architecture, distribution and kernel release, the way
/// gopsutil reads them on Linux (os-release, debian_version, uname).
fn os_fields(paths: &HostPaths) -> Vec<(&'static str, Str)> {
    let os_release = std::fs::read_to_string(paths.etc.join("os-release"))
        .or_else(|_| std::fs::read_to_string(paths.etc.join("../usr/lib/os-release")))
        .unwrap_or_default();
    let (platform, family, version) = platform_information(&os_release, || {
        std::fs::read_to_string(paths.etc.join("debian_version")).ok()
    });
    let kernel = std::fs::read_to_string(paths.proc("sys/kernel/osrelease")).unwrap_or_default();
    vec![
        ("os", "linux".into()),
        ("arch", uname_machine().into()),
        ("platform", platform.into()),
        ("platform_family", family.into()),
        ("platform_version", version.into()),
        ("kernel_version", kernel.trim().into()),
    ]
}

/// (platform, family, version) as gopsutil derives them: Debian reports its point release
/// from /etc/debian_version; otherwise os-release's ID and VERSION_ID.
fn platform_information(
    os_release: &str,
    debian_version: impl FnOnce() -> Option<String>,
) -> (String, String, String) {
    let get = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    let id = get("ID").to_ascii_lowercase();
    let mut version = get("VERSION_ID");
    if id == "debian"
        && let Some(v) = debian_version()
    {
        version = v.trim().to_string();
    }
    let family = match id.as_str() {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" => "debian",
        "oracle" | "ol" | "centos" | "redhat" | "rhel" | "scientific" | "amzn" | "amazon"
        | "xenserver" | "cloudlinux" | "rocky" | "almalinux" => "rhel",
        "fedora" => "fedora",
        "suse" | "sles" | "sled" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "suse",
        "gentoo" => "gentoo",
        "arch" | "archlinux" | "manjaro" => "arch",
        "alpine" => "alpine",
        "coreos" | "flatcar" => "coreos",
        _ => "",
    };
    let family = if family.is_empty() {
        get("ID_LIKE")
            .split_whitespace()
            .next()
            .unwrap_or(&id)
            .to_string()
    } else {
        family.to_string()
    };
    (id, family, version)
}

fn uname_machine() -> String {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return std::env::consts::ARCH.to_string();
    }
    let bytes: Vec<u8> = u
        .machine
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Telegraf's "dmi" group from /sys/class/dmi/id: an absent file is an empty string, a file
/// the kernel keeps from this user (serials, UUID without root) is "unknown", as ghw reports.
fn dmi_fields(dir: &std::path::Path) -> Vec<(&'static str, Str)> {
    const FILES: [(&str, &str); 21] = [
        ("bios_vendor", "bios_vendor"),
        ("bios_version", "bios_version"),
        ("bios_date", "bios_date"),
        ("board_vendor", "board_vendor"),
        ("board_product", "board_name"),
        ("board_version", "board_version"),
        ("board_serial", "board_serial"),
        ("board_asset_tag", "board_asset_tag"),
        ("chassis_vendor", "chassis_vendor"),
        ("chassis_type_code", "chassis_type"),
        ("chassis_version", "chassis_version"),
        ("chassis_serial", "chassis_serial"),
        ("chassis_asset_tag", "chassis_asset_tag"),
        ("product_vendor", "sys_vendor"),
        ("product_name", "product_name"),
        ("product_family", "product_family"),
        ("product_version", "product_version"),
        ("product_serial", "product_serial"),
        ("product_sku", "product_sku"),
        ("product_uuid", "product_uuid"),
        ("chassis_type", "chassis_type"),
    ];
    FILES
        .iter()
        .map(|(field, file)| {
            let v = match std::fs::read_to_string(dir.join(file)) {
                Ok(v) => v.trim().to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => "unknown".into(),
                Err(_) => String::new(),
            };
            let v = if *field == "chassis_type" {
                chassis_type_name(&v).to_string()
            } else {
                v
            };
            (*field, v.into())
        })
        .collect()
}

/// SMBIOS (DSP0134) chassis type codes.
fn chassis_type_name(code: &str) -> &'static str {
    const NAMES: [&str; 36] = [
        "Other",
        "Unknown",
        "Desktop",
        "Low Profile Desktop",
        "Pizza Box",
        "Mini Tower",
        "Tower",
        "Portable",
        "Laptop",
        "Notebook",
        "Hand Held",
        "Docking Station",
        "All in One",
        "Sub Notebook",
        "Space-saving",
        "Lunch Box",
        "Main Server Chassis",
        "Expansion Chassis",
        "SubChassis",
        "Bus Expansion Chassis",
        "Peripheral Chassis",
        "RAID Chassis",
        "Rack Mount Chassis",
        "Sealed-case PC",
        "Multi-system chassis",
        "Compact PCI",
        "Advanced TCA",
        "Blade",
        "Blade Enclosure",
        "Tablet",
        "Convertible",
        "Detachable",
        "IoT Gateway",
        "Embedded PC",
        "Mini PC",
        "Stick PC",
    ];
    match code.parse::<usize>() {
        Ok(n @ 1..=36) => NAMES[n - 1],
        _ if code == "unknown" => "unknown",
        _ => "",
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let groups = Groups::parse(&cfg.include).map_err(|e| host::config_error("include", e))?;
    let mut system = System::new(&HostPaths::from_env());
    system.groups = groups;
    system.os = Cached::new(cfg.os_cache_ttl);
    system.dmi = Cached::new(cfg.dmi_cache_ttl);
    Ok(InputPlugin::Polled(Box::new(system)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "system",
    description: "Load averages, CPU count, logged-in users, uptime, OS and DMI information (Telegraf's system)",
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
    fn fine_grained_groups_make_one_untyped_metric() {
        let paths = fixture("modern");
        let mut s = System::new(&paths);
        s.now = || 1_700_000_000 + 100;
        s.groups = Groups::parse(&[
            "load".into(),
            "cpus".into(),
            "uptime".into(),
            "users".into(),
        ])
        .unwrap();
        let mut acc = Accumulator::new(1);
        s.gather_sync(&mut acc);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 1);
        let m = &acc.metrics[0];
        assert_eq!(m.kind, ValueType::Untyped);
        let mut keys: Vec<&str> = m.fields.iter().map(|(k, _)| &**k).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "load1",
                "load15",
                "load5",
                "n_cpus",
                "n_physical_cpus",
                "n_unique_users",
                "n_users",
                "uptime"
            ]
        );
        assert_eq!(m.field("uptime"), Some(&FieldValue::UInt(100)));

        // legacy and a group together: the three legacy metrics and the fine-grained one.
        s.groups = Groups::parse(&["legacy".into(), "load".into()]).unwrap();
        let mut acc = Accumulator::new(1);
        s.gather_sync(&mut acc);
        assert_eq!(acc.metrics.len(), 4);
        assert!(
            Groups::parse(&["loads".into()])
                .unwrap_err()
                .contains("\"loads\"")
        );
        assert_eq!(
            Groups::parse(&[]).unwrap(),
            Groups {
                legacy: true,
                ..Groups::default()
            }
        );
    }

    #[test]
    fn os_group_reads_the_host_and_is_cached() {
        let mut s = System::new(&HostPaths::default());
        s.groups = Groups::parse(&["os".into()]).unwrap();
        let mut acc = Accumulator::new(1);
        s.gather_sync(&mut acc);
        let m = &acc.metrics[0];
        let text = |k: &str| match m.field(k) {
            Some(FieldValue::String(v)) => v.to_string(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(text("os"), "linux");
        assert_eq!(text("arch"), std::env::consts::ARCH);
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(text("kernel_version"), release.trim());
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap();
        let id = os_release
            .lines()
            .find_map(|l| l.strip_prefix("ID="))
            .unwrap();
        assert_eq!(text("platform"), id.trim_matches('"'));
        assert!(!text("platform_family").is_empty());
        assert!(!text("platform_version").is_empty());
        let first = s.os.at;
        s.gather_sync(&mut Accumulator::new(2));
        assert_eq!(s.os.at, first, "read again within os_cache_ttl");
        s.os.ttl = std::time::Duration::ZERO;
        s.gather_sync(&mut Accumulator::new(3));
        assert_ne!(s.os.at, first, "a zero TTL reads on every gather");
    }

    #[test]
    fn platform_like_gopsutil() {
        let debian = "ID=debian\nVERSION_ID=\"12\"\n";
        assert_eq!(
            platform_information(debian, || Some("12.11\n".into())),
            ("debian".into(), "debian".into(), "12.11".into())
        );
        let ubuntu = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n";
        assert_eq!(
            platform_information(ubuntu, || Some("trixie/sid".into())),
            ("ubuntu".into(), "debian".into(), "24.04".into())
        );
        let rocky = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n";
        assert_eq!(
            platform_information(rocky, || None),
            ("rocky".into(), "rhel".into(), "9.3".into())
        );
        let other = "ID=nixos\nVERSION_ID=\"24.05\"\n";
        assert_eq!(
            platform_information(other, || None),
            ("nixos".into(), "nixos".into(), "24.05".into())
        );
    }

    /// This VM has no /sys/class/dmi: a fixture tree stands in, with a file kept from the user.
    #[test]
    fn dmi_group_from_sysfs() {
        let dir = std::env::temp_dir().join(format!("sonde-dmi-{}", std::process::id()));
        let id = dir.join("sys/class/dmi/id");
        std::fs::create_dir_all(&id).unwrap();
        std::fs::write(id.join("sys_vendor"), "Dell Inc.\n").unwrap();
        std::fs::write(id.join("product_name"), "PowerEdge R750\n").unwrap();
        std::fs::write(id.join("chassis_type"), "23\n").unwrap();
        std::fs::write(id.join("bios_date"), "04/12/2024\n").unwrap();
        let mut s = System::new(&HostPaths::under(&dir));
        s.groups = Groups::parse(&["dmi".into()]).unwrap();
        let mut acc = Accumulator::new(1);
        s.gather_sync(&mut acc);
        let m = &acc.metrics[0];
        let text = |k: &str| match m.field(k) {
            Some(FieldValue::String(v)) => v.to_string(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(text("product_vendor"), "Dell Inc.");
        assert_eq!(text("product_name"), "PowerEdge R750");
        assert_eq!(text("chassis_type_code"), "23");
        assert_eq!(text("chassis_type"), "Rack Mount Chassis");
        assert_eq!(text("bios_date"), "04/12/2024");
        assert_eq!(text("board_serial"), "");
        assert_eq!(m.fields.len(), 21);
        std::fs::remove_dir_all(&dir).unwrap();
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
