//! `inputs.disk`: space and inodes per mounted file system (mountinfo + statvfs), as Telegraf's
//! disk plugin.

use std::borrow::Cow;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::ProcFile;
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Only these mount points (exact paths). Empty: all.
    pub mount_points: Vec<String>,
    /// Telegraf's old name for `mount_points`.
    pub mountpoints: Vec<String>,
    pub ignore_fs: Vec<String>,
    pub ignore_mount_opts: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mount_points: Vec::new(),
            mountpoints: Vec::new(),
            ignore_fs: [
                "tmpfs", "devtmpfs", "devfs", "iso9660", "overlay", "aufs", "squashfs",
            ]
            .map(String::from)
            .to_vec(),
            ignore_mount_opts: Vec::new(),
        }
    }
}

/// One mount, borrowed from the mount table text.
struct Mount<'a> {
    device: &'a str,
    mount_point: Cow<'a, str>,
    fstype: &'a str,
    /// Per-mount options, plus "bind" when the mount shows a sub-tree (gopsutil's rule).
    opts: &'a str,
    bind: bool,
    dev_id: &'a str,
}

impl Mount<'_> {
    fn has_opt(&self, o: &str) -> bool {
        self.opts.split(',').any(|x| x == o) || (o == "bind" && self.bind)
    }
}

/// Parses one /proc/<pid>/mountinfo line:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
fn parse_mountinfo(line: &str) -> Option<Mount<'_>> {
    let (pre, post) = line.split_once(" - ")?;
    let mut a = pre.split_ascii_whitespace();
    let _id = a.next()?;
    let _parent = a.next()?;
    let dev_id = a.next()?;
    let root = a.next()?;
    let mount_point = a.next()?;
    let opts = a.next()?;
    let mut b = post.split_ascii_whitespace();
    let fstype = b.next()?;
    let device = b.next().unwrap_or("");
    Some(Mount {
        device,
        mount_point: unescape(mount_point),
        fstype,
        opts,
        bind: root != "/",
        dev_id,
    })
}

/// Parses one /proc/self/mounts line: `/dev/sda1 / ext4 rw,relatime 0 0`.
fn parse_mounts(line: &str) -> Option<Mount<'_>> {
    let mut a = line.split_ascii_whitespace();
    let device = a.next()?;
    let mount_point = a.next()?;
    let fstype = a.next()?;
    let opts = a.next()?;
    Some(Mount {
        device,
        mount_point: unescape(mount_point),
        fstype,
        opts,
        bind: false,
        dev_id: "",
    })
}

/// Undoes the kernel's octal escapes in mount paths (`\040` is a space).
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// File systems whose statfs is the kernel's `simple_statfs` (kernfs for sysfs and cgroup):
/// always 0 blocks, so never reported (gopsutil and Telegraf drop a total of 0). Not hugetlbfs
/// or efivarfs, which report a size.
const SIZELESS_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "nsfs",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "rpc_pipefs",
    "selinuxfs",
];

struct Usage {
    total: u64,
    free: u64,
    used: u64,
    inodes_total: u64,
    inodes_free: u64,
}

fn statvfs(path: &str, cbuf: &mut Vec<u8>) -> std::io::Result<Usage> {
    cbuf.clear();
    cbuf.extend_from_slice(path.as_bytes());
    cbuf.push(0);
    let c = std::ffi::CStr::from_bytes_with_nul(cbuf)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: c is NUL-terminated and st is a plain out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let f = st.f_frsize as u64;
    Ok(Usage {
        total: st.f_blocks as u64 * f,
        free: st.f_bavail as u64 * f,
        used: (st.f_blocks as u64).saturating_sub(st.f_bfree as u64) * f,
        inodes_total: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

struct Disk {
    cfg: Config,
    paths: HostPaths,
    mountinfo: ProcFile,
    mounts: PathBuf,
    buf: String,
    cbuf: Vec<u8>,
    small: String,
}

impl Disk {
    fn new(mut cfg: Config, paths: HostPaths) -> Self {
        if cfg.mount_points.is_empty() {
            cfg.mount_points = std::mem::take(&mut cfg.mountpoints);
        }
        // An autofs mount only announces a mount; statting it would trigger the mount.
        cfg.ignore_fs.push("autofs".into());
        Disk {
            mountinfo: ProcFile::new(paths.proc("1/mountinfo")),
            mounts: paths.proc("self/mounts"),
            paths,
            cfg,
            buf: String::new(),
            cbuf: Vec::new(),
            small: String::new(),
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        // `buf` holds nothing but the mount table between gathers: an unchanged one is reused.
        let is_mountinfo = match self.mountinfo.read_mounts_if_changed(&mut self.buf) {
            Ok(_) => true,
            Err(_) => match host::read_or_err(&self.mounts, &mut self.buf) {
                Ok(()) => false,
                Err(e) => {
                    acc.add_error(e);
                    return;
                }
            },
        };
        let text = std::mem::take(&mut self.buf);
        let parse = if is_mountinfo {
            parse_mountinfo
        } else {
            parse_mounts
        };
        let prefix = self.paths.mount_prefix.clone();
        let all: Vec<Cow<str>> = if prefix.is_empty() {
            Vec::new()
        } else {
            text.lines()
                .filter_map(parse)
                .map(|m| m.mount_point)
                .collect()
        };
        let mut bad = 0;
        for line in text.lines() {
            let Some(m) = parse(line) else {
                bad += 1;
                continue;
            };
            if self.cfg.ignore_mount_opts.iter().any(|o| m.has_opt(o))
                || (!self.cfg.mount_points.is_empty()
                    && !self.cfg.mount_points.iter().any(|p| *p == m.mount_point))
                || self.cfg.ignore_fs.iter().any(|f| f == m.fstype)
            {
                continue;
            }
            // In a container the host's mounts are visible under the prefix: statvfs there,
            // skipping host paths that are also mounted as-is (they would be counted twice).
            let target: Cow<str> = if !prefix.is_empty() && !m.mount_point.starts_with(&prefix) {
                let t = format!("{prefix}{}", m.mount_point);
                if all.iter().any(|p| *p == t) {
                    continue;
                }
                Cow::Owned(t)
            } else {
                Cow::Borrowed(&m.mount_point)
            };
            // Kernel pseudo file systems have no size, so Telegraf drops them below: known
            // ones are dropped without the statvfs.
            if SIZELESS_FS.contains(&m.fstype) {
                continue;
            }
            // Unreachable mounts (permissions, stale) are skipped, as in Telegraf.
            let Ok(u) = statvfs(&target, &mut self.cbuf) else {
                continue;
            };
            // Pseudo file systems (proc, sysfs, cgroup, …) have no size.
            if u.total == 0 {
                continue;
            }
            let path = m
                .mount_point
                .strip_prefix(prefix.as_str())
                .unwrap_or(&m.mount_point);
            let path = if path.starts_with('/') {
                Cow::Borrowed(path)
            } else {
                Cow::Owned(format!("/{path}"))
            };
            let device = self.device_name(&m);
            let mode = if m.has_opt("rw") {
                "rw"
            } else if m.has_opt("ro") {
                "ro"
            } else {
                "unknown"
            };
            let mut x = metric(acc, "disk", ValueType::Gauge, 8);
            x.add_tag("device", device.replace("/dev/", ""));
            x.add_tag("fstype", m.fstype);
            if let Some(label) = self.dm_label(&device) {
                x.add_tag("label", label);
            }
            x.add_tag("mode", mode);
            x.add_tag("path", path.as_ref());
            let pct = |a: u64, b: u64| {
                if a + b > 0 {
                    100.0 * a as f64 / (a as f64 + b as f64)
                } else {
                    0.0
                }
            };
            let inodes_used = u.inodes_total.saturating_sub(u.inodes_free);
            push(&mut x, "total", u.total);
            push(&mut x, "free", u.free);
            push(&mut x, "used", u.used);
            push(&mut x, "used_percent", pct(u.used, u.free));
            push(&mut x, "inodes_total", u.inodes_total);
            push(&mut x, "inodes_free", u.inodes_free);
            push(&mut x, "inodes_used", inodes_used);
            push(
                &mut x,
                "inodes_used_percent",
                pct(inodes_used, u.inodes_free),
            );
            acc.add(x);
        }
        if bad > 0 {
            acc.add_error(format!("mount table: {bad} malformed lines"));
        }
        self.buf = text;
    }

    /// gopsutil's device fix-ups: /dev/mapper/x → /dev/dm-N, /dev/root → the real partition.
    fn device_name(&self, m: &Mount) -> String {
        if let Some(rest) = m.device.strip_prefix("/dev/mapper/")
            && let Ok(p) = std::fs::canonicalize(self.paths.dev.join("mapper").join(rest))
            && let Some(name) = p.file_name()
        {
            return format!("/dev/{}", name.to_string_lossy());
        }
        if m.device == "/dev/root"
            && !m.dev_id.is_empty()
            && let Ok(p) = std::fs::read_link(self.paths.sys("dev/block").join(m.dev_id))
            && let Some(name) = p.file_name()
        {
            return format!("/dev/{}", name.to_string_lossy());
        }
        m.device.to_string()
    }

    /// The device-mapper name of a dm-N device (Telegraf's `label` tag).
    fn dm_label(&mut self, device: &str) -> Option<String> {
        let name = device.strip_prefix("/dev/")?;
        if !name.starts_with("dm-") {
            return None;
        }
        let p = self.paths.sys("block").join(name).join("dm/name");
        host::read_to(&p, &mut self.small).ok()?;
        let l = self.small.trim();
        (!l.is_empty()).then(|| l.to_string())
    }
}

#[async_trait]
impl Input for Disk {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Disk::new(
        cfg,
        HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "disk",
    description: "Disk space and inodes per mount point (Telegraf's disk)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    /// A fixture whose mount table points at directories of this machine, so statvfs works.
    fn fixture_with(mountinfo: &str) -> (tempdir::Dir, HostPaths) {
        let d = tempdir::Dir::new();
        std::fs::create_dir_all(d.0.join("proc/1")).unwrap();
        std::fs::write(d.0.join("proc/1/mountinfo"), mountinfo).unwrap();
        let p = HostPaths::under(&d.0);
        (d, p)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("sonde-disk-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn gather(cfg: Config, paths: HostPaths) -> Accumulator {
        let mut d = Disk::new(cfg, paths);
        let mut acc = Accumulator::new(1);
        d.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn parses_mountinfo_lines() {
        let m = parse_mountinfo(
            "36 35 98:0 /sub /mnt/my\\040disk rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.mount_point, "/mnt/my disk");
        assert_eq!(
            (m.fstype, m.device, m.dev_id),
            ("ext3", "/dev/root", "98:0")
        );
        assert!(m.has_opt("rw") && m.has_opt("noatime") && m.has_opt("bind"));
        assert!(!m.has_opt("ro"));
        assert!(parse_mountinfo("garbage").is_none());
        let m = parse_mounts("/dev/sda1 / ext4 ro,relatime 0 0").unwrap();
        assert!(m.has_opt("ro") && !m.has_opt("bind"));
    }

    #[test]
    fn filters_tags_and_fields() {
        let (_d, p) = fixture_with(
            "1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
             2 1 0:5 / /proc rw - proc proc rw\n\
             3 1 0:6 / /dev/shm rw - tmpfs tmpfs rw\n\
             4 1 8:1 /var /tmp ro,relatime - ext4 /dev/sda1 rw\n\
             broken line\n",
        );
        let acc = gather(Config::default(), p.clone());
        // proc has size 0, tmpfs is ignored by default; the malformed line is reported.
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        let paths: Vec<_> = acc.metrics.iter().map(|m| m.tag("path").unwrap()).collect();
        assert_eq!(paths, ["/", "/tmp"]);
        let root = &acc.metrics[0];
        assert_eq!(root.tag("device"), Some("sda1"));
        assert_eq!(root.tag("fstype"), Some("ext4"));
        assert_eq!(root.tag("mode"), Some("rw"));
        assert_eq!(acc.metrics[1].tag("mode"), Some("ro"));

        let cfg = Config {
            ignore_mount_opts: vec!["bind".into()],
            ..Config::default()
        };
        assert_eq!(gather(cfg, p.clone()).metrics.len(), 1);
        let cfg = Config {
            mountpoints: vec!["/tmp".into()],
            ..Config::default()
        };
        let acc = gather(cfg, p);
        assert_eq!(acc.metrics.len(), 1);
        assert_eq!(acc.metrics[0].tag("path"), Some("/tmp"));
    }

    #[test]
    fn mount_prefix_stats_prefixed_path_reports_host_path() {
        // The "host" mounts / and /etc; this container sees them under <tmp>/hostfs.
        let (d, mut p) = fixture_with("");
        let hostfs = d.0.join("hostfs");
        std::fs::create_dir_all(hostfs.join("etc")).unwrap();
        let prefix = hostfs.to_str().unwrap().to_string();
        std::fs::write(
            d.0.join("proc/1/mountinfo"),
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
             2 1 8:2 / /etc rw - ext4 /dev/sda2 rw\n\
             3 1 8:3 / /nonexistent rw - ext4 /dev/sda3 rw\n",
        )
        .unwrap();
        p.mount_prefix = prefix;
        let acc = gather(Config::default(), p);
        let paths: Vec<_> = acc.metrics.iter().map(|m| m.tag("path").unwrap()).collect();
        assert_eq!(paths, ["/", "/etc"]);
    }

    #[test]
    fn real_root_total_matches_statvfs() {
        let cfg = Config {
            mount_points: vec!["/".into()],
            ..Config::default()
        };
        let acc = gather(cfg, HostPaths::default());
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let Some(m) = acc.metrics.first() else {
            // A root on an ignored fs type (overlay in a container) is not reported.
            return;
        };
        let u = statvfs("/", &mut Vec::new()).unwrap();
        assert_eq!(m.field("total"), Some(&FieldValue::UInt(u.total)));
        assert_eq!(
            m.field("inodes_total"),
            Some(&FieldValue::UInt(u.inodes_total))
        );
    }
}
