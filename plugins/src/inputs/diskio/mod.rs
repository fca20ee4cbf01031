//! `inputs.diskio`: per block device I/O counters from /proc/diskstats, as Telegraf's diskio.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::ProcFile;
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Device names or glob patterns; `/dev/...` links (e.g. /dev/disk/by-id/…) are resolved
    /// to their device at start. Empty: every device, partitions included.
    pub devices: Vec<String>,
    pub skip_serial_number: bool,
    /// udev properties to add as tags.
    pub device_tags: Vec<String>,
    /// Templates like "$DM_VG_NAME/$DM_LV_NAME" for the name tag; the first whose variables
    /// all exist for the device wins.
    pub name_templates: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            devices: Vec::new(),
            skip_serial_number: true,
            device_tags: Vec::new(),
            name_templates: Vec::new(),
        }
    }
}

/// udev properties of one device, re-read when the udev database file changes.
struct UdevInfo {
    mtime: Option<std::time::SystemTime>,
    props: HashMap<String, String>,
}

struct DiskIo {
    cfg: Config,
    devices: Vec<glob::Pattern>,
    diskstats: ProcFile,
    udev_dir: PathBuf,
    sys: PathBuf,
    buf: String,
    udev: HashMap<(u32, u32), UdevInfo>,
}

impl DiskIo {
    fn new(cfg: Config, paths: &HostPaths) -> Result<Self, String> {
        let names: Vec<String> = cfg
            .devices
            .iter()
            .map(|d| {
                let is_glob = d.contains(['*', '?', '[']);
                if d.starts_with("/dev/") && !is_glob {
                    if let Ok(p) = std::fs::canonicalize(d)
                        && let Some(n) = p.file_name()
                    {
                        return n.to_string_lossy().into_owned();
                    }
                    return d.trim_start_matches("/dev/").to_string();
                }
                d.clone()
            })
            .collect();
        Ok(DiskIo {
            devices: host::compile_globs("devices", &names)?,
            diskstats: ProcFile::new(paths.proc("diskstats")),
            udev_dir: paths.run.join("udev/data"),
            sys: paths.sys.clone(),
            buf: String::new(),
            udev: HashMap::new(),
            cfg,
        })
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        if let Err(e) = self.diskstats.read_or_err(&mut self.buf) {
            acc.add_error(e);
            return;
        }
        let text = std::mem::take(&mut self.buf);
        let mut bad = 0;
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(major), Some(minor), Some(name)) = (it.next(), it.next(), it.next()) else {
                if !line.trim().is_empty() {
                    bad += 1;
                }
                continue;
            };
            // reads, merged reads, sectors read, read ms, writes, merged writes, sectors
            // written, write ms, in progress, io ms, weighted io ms; newer kernels add discard
            // and flush columns, which Telegraf does not report.
            let mut v = [0u64; 11];
            let mut n = 0;
            for (slot, s) in v.iter_mut().zip(&mut it) {
                match s.parse() {
                    Ok(x) => *slot = x,
                    Err(_) => break,
                }
                n += 1;
            }
            // Kernels 2.6.0–2.6.24 list partitions with only 4 counters: not reported, as in
            // gopsutil, and not an error.
            if n == 4 && it.next().is_none() {
                continue;
            }
            let (Ok(major), Ok(minor), 11) = (major.parse::<u32>(), minor.parse::<u32>(), n) else {
                bad += 1;
                continue;
            };
            if !self.devices.is_empty() && !host::glob_match(&self.devices, name) {
                continue;
            }
            let mut m = metric(acc, "diskio", ValueType::Counter, 11);
            self.tag(&mut m, name, major, minor);
            push(&mut m, "reads", v[0]);
            push(&mut m, "writes", v[4]);
            // The kernel counts 512-byte sectors whatever the device's block size.
            push(&mut m, "read_bytes", v[2] * 512);
            push(&mut m, "write_bytes", v[6] * 512);
            push(&mut m, "read_time", v[3]);
            push(&mut m, "write_time", v[7]);
            push(&mut m, "io_time", v[9]);
            push(&mut m, "weighted_io_time", v[10]);
            push(&mut m, "iops_in_progress", v[8]);
            push(&mut m, "merged_reads", v[1]);
            push(&mut m, "merged_writes", v[5]);
            acc.add(m);
        }
        if bad > 0 {
            acc.add_error(format!(
                "{}: {bad} malformed lines",
                self.diskstats.path().display()
            ));
        }
        self.buf = text;
    }

    fn tag(&mut self, m: &mut Metric, name: &str, major: u32, minor: u32) {
        let need_udev = !self.cfg.device_tags.is_empty()
            || !self.cfg.name_templates.is_empty()
            || !self.cfg.skip_serial_number;
        let props = if need_udev {
            udev_props(&mut self.udev, &self.udev_dir, major, minor)
        } else {
            None
        };
        let dev_name = props
            .and_then(|p| {
                self.cfg
                    .name_templates
                    .iter()
                    .find_map(|t| expand_template(t, p))
            })
            .unwrap_or_else(|| name.to_string());
        m.add_tag("name", dev_name);
        if let Some(p) = props {
            for t in &self.cfg.device_tags {
                if let Some(v) = p.get(t) {
                    m.add_tag(t.as_str(), v.as_str());
                }
            }
        }
        if !self.cfg.skip_serial_number {
            let serial = props
                .and_then(|p| p.get("ID_SERIAL").cloned())
                .or_else(|| sysfs_serial(&self.sys, major))
                .unwrap_or_else(|| "unknown".into());
            m.add_tag("serial", serial);
        }
    }
}

/// The `E:` properties of `$HOST_RUN/udev/data/b<major>:<minor>`, cached until the file's
/// modification time changes.
fn udev_props<'a>(
    cache: &'a mut HashMap<(u32, u32), UdevInfo>,
    dir: &std::path::Path,
    major: u32,
    minor: u32,
) -> Option<&'a HashMap<String, String>> {
    let path = dir.join(format!("b{major}:{minor}"));
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    let entry = cache.entry((major, minor)).or_insert(UdevInfo {
        mtime: None,
        props: HashMap::new(),
    });
    if entry.mtime != Some(mtime) {
        entry.props.clear();
        let text = std::fs::read_to_string(&path).ok()?;
        let mut links = Vec::new();
        for line in text.lines() {
            if let Some(kv) = line.strip_prefix("E:")
                && let Some((k, v)) = kv.split_once('=')
            {
                entry.props.insert(k.to_string(), v.to_string());
            } else if let Some(l) = line.strip_prefix("S:") {
                links.push(format!("/dev/{l}"));
            }
        }
        if !links.is_empty() {
            entry.props.insert("DEVLINKS".into(), links.join(" "));
        }
        entry.mtime = Some(mtime);
    }
    Some(&entry.props)
}

/// gopsutil's fallback serial: `<model>_<serial>` of the whole disk in sysfs.
fn sysfs_serial(sys: &std::path::Path, major: u32) -> Option<String> {
    let dev = sys.join(format!("dev/block/{major}:0/device"));
    let model = std::fs::read_to_string(dev.join("model")).ok()?;
    let serial = std::fs::read_to_string(dev.join("serial")).ok()?;
    let (model, serial) = (model.trim(), serial.trim());
    (!model.is_empty() && !serial.is_empty()).then(|| format!("{model}_{serial}"))
}

/// Expands `$VAR` and `${VAR}` from the udev properties; `None` if any variable is missing.
fn expand_template(t: &str, props: &HashMap<String, String>) -> Option<String> {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (var, next) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}')?;
            (&inner[..end], &inner[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if var.is_empty() {
            out.push('$');
        } else {
            out.push_str(props.get(var)?);
        }
        rest = next;
    }
    out.push_str(rest);
    Some(out)
}

#[async_trait]
impl Input for DiskIo {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let d =
        DiskIo::new(cfg, &HostPaths::from_env()).map_err(|e| host::config_error("devices", e))?;
    Ok(InputPlugin::Polled(Box::new(d)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "diskio",
    description: "Disk I/O counters per block device (Telegraf's diskio)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn gather(cfg: Config, paths: &HostPaths) -> Accumulator {
        let mut d = DiskIo::new(cfg, paths).unwrap();
        let mut acc = Accumulator::new(1);
        d.gather_sync(&mut acc);
        acc
    }

    fn u(m: &Metric, k: &str) -> u64 {
        match m.field(k) {
            Some(FieldValue::UInt(v)) => *v,
            o => panic!("{k}: {o:?}"),
        }
    }

    #[test]
    fn modern_kernel_with_discard_and_flush_columns() {
        let acc = gather(Config::default(), &fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let names: Vec<_> = acc.metrics.iter().map(|m| m.tag("name").unwrap()).collect();
        assert_eq!(names, ["sda", "sda1", "dm-0"]);
        let sda = &acc.metrics[0];
        assert_eq!(sda.kind, ValueType::Counter);
        assert_eq!(sda.tags.len(), 1, "no serial by default");
        assert_eq!(u(sda, "reads"), 100);
        assert_eq!(u(sda, "merged_reads"), 2);
        assert_eq!(u(sda, "read_bytes"), 3000 * 512);
        assert_eq!(u(sda, "read_time"), 40);
        assert_eq!(u(sda, "writes"), 50);
        assert_eq!(u(sda, "merged_writes"), 6);
        assert_eq!(u(sda, "write_bytes"), 7000 * 512);
        assert_eq!(u(sda, "write_time"), 80);
        assert_eq!(u(sda, "iops_in_progress"), 1);
        assert_eq!(u(sda, "io_time"), 90);
        assert_eq!(u(sda, "weighted_io_time"), 120);
    }

    #[test]
    fn old_kernel_short_lines_are_errors_not_panics() {
        let acc = gather(Config::default(), &fixture("old"));
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 1);
        assert_eq!(acc.metrics[0].tag("name"), Some("hda"));
    }

    #[test]
    fn globs_serial_device_tags_and_name_templates() {
        let cfg = Config {
            devices: vec!["sd?".into(), "dm-*".into()],
            skip_serial_number: false,
            device_tags: vec!["ID_FS_TYPE".into(), "MISSING".into()],
            name_templates: vec!["$MISSING".into(), "${DM_VG_NAME}/$DM_LV_NAME".into()],
        };
        let acc = gather(cfg, &fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics.len(), 2);
        let sda = &acc.metrics[0];
        assert_eq!(sda.tag("name"), Some("sda"));
        assert_eq!(sda.tag("serial"), Some("DISK_SERIAL_1"));
        let dm = &acc.metrics[1];
        assert_eq!(dm.tag("name"), Some("vg0/root"));
        assert_eq!(dm.tag("ID_FS_TYPE"), Some("ext4"));
        assert_eq!(dm.tag("MISSING"), None);
        // No udev data and no sysfs model/serial.
        assert_eq!(dm.tag("serial"), Some("unknown"));
    }

    #[test]
    fn template_expansion() {
        let p: HashMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand_template("$A-${A}", &p).as_deref(), Some("x-x"));
        assert_eq!(expand_template("$B", &p), None);
        assert_eq!(expand_template("plain", &p).as_deref(), Some("plain"));
    }

    #[test]
    fn real_diskstats_parses_cleanly() {
        let acc = gather(Config::default(), &HostPaths::default());
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let lines = std::fs::read_to_string("/proc/diskstats")
            .unwrap()
            .lines()
            .count();
        assert_eq!(acc.metrics.len(), lines);
    }
}
