//! Shared helpers for the host inputs (cpu, mem, disk, …): where the host's /proc, /sys, /etc
//! live (Telegraf's `HOST_*` variables, so a sidecar container can report its host), and small
//! allocation-free parsing helpers.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::{FieldValue, Metric, Str, ValueType};
use crate::plugin::Accumulator;

/// Roots of the host's pseudo file systems, as Telegraf and gopsutil take them from the
/// environment: `HOST_PROC`, `HOST_SYS`, `HOST_ETC`, `HOST_VAR`, `HOST_RUN`, `HOST_DEV` and
/// `HOST_MOUNT_PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
    pub var: PathBuf,
    pub run: PathBuf,
    pub dev: PathBuf,
    /// Prefix under which the host's mount points are visible (disk: statvfs the prefixed path,
    /// report the unprefixed one). Empty when unset.
    pub mount_prefix: String,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: "/proc".into(),
            sys: "/sys".into(),
            etc: "/etc".into(),
            var: "/var".into(),
            run: "/run".into(),
            dev: "/dev".into(),
            mount_prefix: String::new(),
        }
    }
}

impl HostPaths {
    /// Reads the `HOST_*` variables; unset or empty ones keep the defaults.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`HostPaths::from_env`] with a custom lookup (tests must not touch the process env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = HostPaths::default();
        let pick = |key: &str, default: PathBuf| match get(key) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => default,
        };
        HostPaths {
            proc: pick("HOST_PROC", d.proc),
            sys: pick("HOST_SYS", d.sys),
            etc: pick("HOST_ETC", d.etc),
            var: pick("HOST_VAR", d.var),
            run: pick("HOST_RUN", d.run),
            dev: pick("HOST_DEV", d.dev),
            mount_prefix: get("HOST_MOUNT_PREFIX")
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
        }
    }

    /// A fixture tree: `<root>/proc`, `<root>/sys`, … with no mount prefix.
    pub fn under(root: impl AsRef<Path>) -> Self {
        let r = root.as_ref();
        HostPaths {
            proc: r.join("proc"),
            sys: r.join("sys"),
            etc: r.join("etc"),
            var: r.join("var"),
            run: r.join("run"),
            dev: r.join("dev"),
            mount_prefix: String::new(),
        }
    }

    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }
}

/// Reads a whole (small) file into `buf`, reusing its allocation across gathers.
pub fn read_to(path: &Path, buf: &mut String) -> std::io::Result<()> {
    crate::common::procfs::read_path(path, buf)
}

/// Reads a seq_file-backed /proc file (such as /proc/net/tcp) into `buf`, without the extra
/// read that only returns EOF: for the socket tables that read walks the kernel's whole
/// connection hash table again (measured: 0.85 ms per walk on a 24 GB host), doubling the cost.
/// A seq_file read stops short of the caller's buffer only at EOF or when its page-sized kernel
/// buffer cannot take the next record, so a read shorter than a page minus the longest record
/// (`max_record` bytes) is the end. Regular files (fixture trees) read the same way.
pub fn read_seq_to(path: &Path, buf: &mut String, max_record: usize) -> std::io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let mut f = File::open(path)?;
    let mut bytes = std::mem::take(buf).into_bytes();
    bytes.clear();
    let page = page_size() as usize;
    loop {
        let start = bytes.len();
        bytes.resize(start + CHUNK, 0);
        let n = match f.read(&mut bytes[start..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        bytes.truncate(start + n);
        if n == 0 || n + max_record < page {
            break;
        }
    }
    *buf = String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(())
}

/// Reads a file into `buf` and names the file in the error, for `acc.add_error`.
pub fn read_or_err(path: &Path, buf: &mut String) -> Result<(), String> {
    read_to(path, buf).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// A `Metric` for this gather with room for `n` fields.
pub fn metric(acc: &Accumulator, name: &'static str, kind: ValueType, n: usize) -> Metric {
    let mut m = Metric::new(name, acc.time()).with_kind(kind);
    m.fields.reserve(n);
    m
}

/// Appends a field whose key is known to be unique in the metric (skips `add_field`'s scan).
#[inline]
pub fn push(m: &mut Metric, key: impl Into<Str>, value: impl Into<FieldValue>) {
    m.fields.push((key.into(), value.into()));
}

/// The system's clock ticks per second (USER_HZ), the unit of /proc/stat times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The system's page size in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Compiles glob patterns (Telegraf's filter syntax: `*`, `?`, `[...]`), naming a bad one.
pub fn compile_globs(key: &str, pats: &[String]) -> Result<Vec<glob::Pattern>, String> {
    pats.iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| format!("{key}: bad pattern {p:?}: {e}")))
        .collect()
}

pub fn glob_match(pats: &[glob::Pattern], s: &str) -> bool {
    pats.iter().any(|p| p.matches(s))
}

/// Value of a `Key: value` line from files like /proc/meminfo or /proc/stat: the first
/// whitespace-separated token after the key, parsed as u64.
pub fn first_u64(rest: &str) -> Option<u64> {
    rest.split_ascii_whitespace().next()?.parse().ok()
}

/// Builds a `ConfigError` for a plugin whose option is invalid.
pub fn config_error(key: &str, message: String) -> crate::registry::BuildError {
    crate::registry::BuildError::Config(crate::registry::ConfigError {
        path: vec![key.to_string()],
        message,
    })
}

/// /proc/meminfo keys (inputs.mem, inputs.swap) read, with how many bytes one unit is (kB lines, or bare counts).
const MEMINFO_KEYS: &[(&str, u64)] = &[
    ("MemTotal", 1024),
    ("MemFree", 1024),
    ("MemAvailable", 1024),
    ("Buffers", 1024),
    ("Cached", 1024),
    ("Active", 1024),
    ("Inactive", 1024),
    ("Active(file)", 1024),
    ("Inactive(file)", 1024),
    ("Writeback", 1024),
    ("WritebackTmp", 1024),
    ("Dirty", 1024),
    ("Shmem", 1024),
    ("Slab", 1024),
    ("SReclaimable", 1024),
    ("SUnreclaim", 1024),
    ("PageTables", 1024),
    ("SwapCached", 1024),
    ("CommitLimit", 1024),
    ("Committed_AS", 1024),
    ("HighTotal", 1024),
    ("HighFree", 1024),
    ("LowTotal", 1024),
    ("LowFree", 1024),
    ("SwapTotal", 1024),
    ("SwapFree", 1024),
    ("Mapped", 1024),
    ("VmallocTotal", 1024),
    ("VmallocUsed", 1024),
    ("VmallocChunk", 1024),
    ("HugePages_Total", 1),
    ("HugePages_Free", 1),
    ("Hugepagesize", 1024),
    ("Active(anon)", 1024),
    ("Inactive(anon)", 1024),
    ("Unevictable", 1024),
    ("Percpu", 1024),
];

/// Index of a key in [`MEMINFO_KEYS`] (checked by a test).
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum MemKey {
    MemTotal,
    MemFree,
    MemAvailable,
    Buffers,
    Cached,
    Active,
    Inactive,
    ActiveFile,
    InactiveFile,
    Writeback,
    WritebackTmp,
    Dirty,
    Shmem,
    Slab,
    SReclaimable,
    SUnreclaim,
    PageTables,
    SwapCached,
    CommitLimit,
    CommittedAs,
    HighTotal,
    HighFree,
    LowTotal,
    LowFree,
    SwapTotal,
    SwapFree,
    Mapped,
    VmallocTotal,
    VmallocUsed,
    VmallocChunk,
    HugePagesTotal,
    HugePagesFree,
    Hugepagesize,
    ActiveAnon,
    InactiveAnon,
    Unevictable,
    Percpu,
}

/// Parsed /proc/meminfo values in bytes (counts for HugePages_*), `None` when absent.
pub(crate) struct MemInfo([Option<u64>; MEMINFO_KEYS.len()]);

impl MemInfo {
    pub(crate) fn parse(text: &str) -> MemInfo {
        let mut v = [None; MEMINFO_KEYS.len()];
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            if let Some(i) = MEMINFO_KEYS.iter().position(|(k, _)| *k == key)
                && let Some(n) = first_u64(rest)
            {
                v[i] = Some(n.saturating_mul(MEMINFO_KEYS[i].1));
            }
        }
        MemInfo(v)
    }
    pub(crate) fn get(&self, k: MemKey) -> Option<u64> {
        self.0[k as usize]
    }
    pub(crate) fn or0(&self, k: MemKey) -> u64 {
        self.get(k).unwrap_or(0)
    }
    pub(crate) fn swap(&self) -> (Option<u64>, Option<u64>) {
        (self.get(MemKey::SwapTotal), self.get(MemKey::SwapFree))
    }
}

/// Root of the committed fixture trees, for tests.
#[cfg(test)]
pub fn fixture(variant: &str) -> HostPaths {
    HostPaths::under(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/host")
            .join(variant),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_defaults() {
        let p = HostPaths::from_lookup(|k| match k {
            "HOST_PROC" => Some("/hostfs/proc".into()),
            "HOST_SYS" => Some(String::new()),
            "HOST_MOUNT_PREFIX" => Some("/hostfs/".into()),
            _ => None,
        });
        assert_eq!(p.proc, PathBuf::from("/hostfs/proc"));
        assert_eq!(p.sys, PathBuf::from("/sys"));
        assert_eq!(p.etc, PathBuf::from("/etc"));
        assert_eq!(p.mount_prefix, "/hostfs");
        assert_eq!(p.proc("stat"), PathBuf::from("/hostfs/proc/stat"));
    }

    #[test]
    fn seq_read_gets_whole_files_small_and_large() {
        let dir = std::env::temp_dir().join(format!("sonde-seq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut buf = String::from("stale");
        for len in [0usize, 10, 4000, 4096, 70_000, 200_000] {
            let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let p = dir.join(format!("f{len}"));
            std::fs::write(&p, &text).unwrap();
            read_seq_to(&p, &mut buf, 256).unwrap();
            assert_eq!(buf, text, "length {len}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // The real socket table: the same lines as a plain read (sockets may change between
        // the reads, so compare the header and that every line is complete).
        read_seq_to(Path::new("/proc/net/tcp"), &mut buf, 256).unwrap();
        assert!(buf.starts_with("  sl  local_address"), "{buf}");
        assert!(buf.is_empty() || buf.ends_with('\n'));
    }

    #[test]
    fn meminfo_key_table_matches_enum() {
        assert_eq!(
            MEMINFO_KEYS[MemKey::Hugepagesize as usize].0,
            "Hugepagesize"
        );
        assert_eq!(MEMINFO_KEYS[MemKey::ActiveFile as usize].0, "Active(file)");
        assert_eq!(MEMINFO_KEYS[MemKey::CommittedAs as usize].0, "Committed_AS");
    }

    /// Copies a fixture tree, so a test can change its files.
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_tree(&e.path(), &dst);
            } else {
                std::fs::copy(e.path(), &dst).unwrap();
            }
        }
    }

    #[test]
    fn inputs_of_one_tick_read_stat_and_meminfo_once_and_a_new_tick_rereads() {
        use crate::common::procfs::SharedFile;
        use crate::inputs::{cpu, kernel, mem, swap, system};
        use crate::model::FieldValue;
        let root = std::env::temp_dir().join(format!("sonde-host-tick-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let src = fixture("modern");
        copy_tree(src.proc.parent().unwrap(), &root);
        let paths = HostPaths::under(&root);
        // The readers' handles, to count reads of the two files.
        let stat = SharedFile::new(paths.proc("stat"));
        let meminfo = SharedFile::new(paths.proc("meminfo"));
        type Gather<'a> = Box<dyn FnMut(&mut Accumulator) + 'a>;
        let mut inputs: Vec<(&str, Gather)> = vec![
            ("cpu", Box::new(cpu::gatherer(&paths))),
            ("system", Box::new(system::gatherer(&paths))),
            ("kernel", Box::new(kernel::gatherer(&paths))),
            ("mem", Box::new(mem::gatherer(&paths))),
            ("swap", Box::new(swap::gatherer(&paths))),
        ];
        let ctxt = |acc: &Accumulator| {
            acc.metrics
                .iter()
                .find_map(|m| m.field("context_switches").cloned())
        };
        let mem_total = |acc: &Accumulator| {
            acc.metrics
                .iter()
                .find(|m| m.name == "mem")
                .and_then(|m| m.field("total").cloned())
        };
        // Tick 1: five inputs, one read of each file. The files change half-way through the
        // tick: the later inputs of the tick still parse the tick's read.
        for (i, (name, gather)) in inputs.iter_mut().enumerate() {
            let mut acc = Accumulator::new(1_000);
            gather(&mut acc);
            assert!(acc.errors.is_empty(), "{name}: {:?}", acc.errors);
            assert!(!acc.metrics.is_empty(), "{name}");
            if *name == "kernel" {
                assert_eq!(ctxt(&acc), Some(FieldValue::Int(987654)));
            }
            if *name == "swap" {
                assert!(acc.metrics.iter().any(|m| m.field("total").is_some()));
            }
            if i == 1 {
                let s = std::fs::read_to_string(paths.proc("stat")).unwrap();
                std::fs::write(paths.proc("stat"), s.replace("ctxt 987654", "ctxt 987700"))
                    .unwrap();
            }
        }
        assert_eq!((stat.reads(), meminfo.reads()), (1, 1));
        // Tick 2: read again, once, with the new content.
        let s = std::fs::read_to_string(paths.proc("meminfo")).unwrap();
        let total = s
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .unwrap()
            .to_string();
        std::fs::write(
            paths.proc("meminfo"),
            s.replace(&total, "MemTotal:        4 kB"),
        )
        .unwrap();
        for (name, gather) in inputs.iter_mut() {
            let mut acc = Accumulator::new(2_000);
            gather(&mut acc);
            if *name == "kernel" {
                assert_eq!(ctxt(&acc), Some(FieldValue::Int(987700)));
            }
            if *name == "mem" {
                assert_eq!(mem_total(&acc), Some(FieldValue::UInt(4096)));
            }
        }
        assert_eq!((stat.reads(), meminfo.reads()), (2, 2));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_file_error_names_path() {
        let mut buf = String::new();
        let e = read_or_err(Path::new("/nonexistent/x"), &mut buf).unwrap_err();
        assert!(e.contains("/nonexistent/x"), "{e}");
    }
}

#[cfg(test)]
mod sample_tests {
    /// Every host input builds from its own sample config (the samples are the docs).
    #[test]
    fn host_samples_build() {
        for name in [
            "cpu",
            "disk",
            "diskio",
            "kernel",
            "mem",
            "net",
            "netstat",
            "processes",
            "swap",
            "system",
        ] {
            let spec = crate::registry::find(crate::registry::inputs(), name).unwrap();
            let doc: toml::Table = toml::from_str(spec.sample).unwrap();
            let table = doc["inputs"][name].as_array().unwrap()[0]
                .as_table()
                .unwrap()
                .clone();
            let ctx = crate::plugin::BuildContext::default();
            assert!((spec.build)(table, &ctx).is_ok(), "{name}");
        }
        let spec = crate::registry::find(crate::registry::inputs(), "cpu").unwrap();
        let bad: toml::Table = toml::from_str("percpus = true").unwrap();
        assert!((spec.build)(bad, &Default::default()).is_err());
    }
}
