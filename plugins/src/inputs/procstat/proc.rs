//! Reading one process from /proc (Linux).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What /proc/<pid>/stat says (fields after the command name).
#[derive(Debug, Default, Clone)]
pub struct Stat {
    pub state: char,
    pub ppid: i64,
    pub minflt: u64,
    pub cminflt: u64,
    pub majflt: u64,
    pub cmajflt: u64,
    pub utime: u64,
    pub stime: u64,
    pub nice: i64,
    pub num_threads: i64,
    pub starttime: u64,
    pub rt_priority: u64,
    pub blkio_ticks: u64,
}

pub fn parse_stat(s: &str) -> Option<Stat> {
    // The command name is in parentheses and may contain spaces and ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state).
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    let ni = |i: usize| f.get(i - 3).and_then(|v| v.parse::<i64>().ok());
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: ni(4)?,
        minflt: n(10)?,
        cminflt: n(11)?,
        majflt: n(12)?,
        cmajflt: n(13)?,
        utime: n(14)?,
        stime: n(15)?,
        nice: ni(19)?,
        num_threads: ni(20)?,
        starttime: n(22)?,
        rt_priority: n(40).unwrap_or(0),
        blkio_ticks: n(42).unwrap_or(0),
    })
}

/// The `Key:\tvalue` lines of /proc/<pid>/status that are used.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub name: String,
    pub uid: Option<u32>,
    /// kB values, in bytes.
    pub vm_rss: Option<u64>,
    pub vm_size: Option<u64>,
    pub vm_swap: Option<u64>,
    pub vm_data: Option<u64>,
    pub vm_stk: Option<u64>,
    pub vm_lck: Option<u64>,
    pub voluntary: Option<u64>,
    pub involuntary: Option<u64>,
    pub sigq: Option<u64>,
}

pub fn parse_status(s: &str) -> Status {
    let mut st = Status::default();
    for line in s.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let kb = || {
            v.split_ascii_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .map(|x| x * 1024)
        };
        match k {
            "Name" => st.name = v.to_string(),
            "Uid" => {
                st.uid = v
                    .split_ascii_whitespace()
                    .next()
                    .and_then(|x| x.parse().ok())
            }
            "VmRSS" => st.vm_rss = kb(),
            "VmSize" => st.vm_size = kb(),
            "VmSwap" => st.vm_swap = kb(),
            "VmData" => st.vm_data = kb(),
            "VmStk" => st.vm_stk = kb(),
            "VmLck" => st.vm_lck = kb(),
            "voluntary_ctxt_switches" => st.voluntary = v.parse().ok(),
            "nonvoluntary_ctxt_switches" => st.involuntary = v.parse().ok(),
            "SigQ" => st.sigq = v.split('/').next().and_then(|x| x.parse().ok()),
            _ => {}
        }
    }
    st
}

/// /proc/<pid>/io.
#[derive(Debug, Default, Clone)]
pub struct Io {
    pub rchar: u64,
    pub wchar: u64,
    pub syscr: u64,
    pub syscw: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

pub fn parse_io(s: &str) -> Io {
    let mut io = Io::default();
    for line in s.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let v: u64 = v.trim().parse().unwrap_or(0);
            match k {
                "rchar" => io.rchar = v,
                "wchar" => io.wchar = v,
                "syscr" => io.syscr = v,
                "syscw" => io.syscw = v,
                "read_bytes" => io.read_bytes = v,
                "write_bytes" => io.write_bytes = v,
                _ => {}
            }
        }
    }
    io
}

/// One line of /proc/<pid>/limits: (field name as Telegraf names it, soft, hard).
/// "unlimited" and values above 2147483647 are reported as 2147483647, as Telegraf does.
pub fn parse_limits(s: &str) -> Vec<(&'static str, i64, i64)> {
    const NAMES: &[(&str, &str)] = &[
        ("Max cpu time", "cpu_time"),
        ("Max data size", "memory_data"),
        ("Max stack size", "memory_stack"),
        ("Max resident set", "memory_rss"),
        ("Max open files", "num_fds"),
        ("Max locked memory", "memory_locked"),
        ("Max address space", "memory_vms"),
        ("Max file locks", "file_locks"),
        ("Max pending signals", "signals_pending"),
        ("Max nice priority", "nice_priority"),
        ("Max realtime priority", "realtime_priority"),
    ];
    let cap = |v: &str| -> i64 {
        match v.parse::<u64>() {
            Ok(n) => n.min(i32::MAX as u64) as i64,
            Err(_) => i32::MAX as i64,
        }
    };
    let mut out = Vec::new();
    for line in s.lines().skip(1) {
        for (prefix, name) in NAMES {
            if let Some(rest) = line.strip_prefix(prefix) {
                // The name column is padded to 26 characters; then soft and hard.
                let mut it = rest.split_ascii_whitespace();
                if let (Some(soft), Some(hard)) = (it.next(), it.next()) {
                    out.push((*name, cap(soft), cap(hard)));
                }
            }
        }
    }
    out
}

/// The summed /proc/<pid>/smaps_rollup (kB lines, in bytes): Telegraf's `mmap` fields.
pub fn parse_smaps_rollup(s: &str) -> Vec<(&'static str, u64)> {
    const KEYS: &[(&str, &str)] = &[
        ("Pss", "memory_pss"),
        ("Shared_Clean", "memory_shared_clean"),
        ("Shared_Dirty", "memory_shared_dirty"),
        ("Private_Clean", "memory_private_clean"),
        ("Private_Dirty", "memory_private_dirty"),
        ("Referenced", "memory_referenced"),
        ("Anonymous", "memory_anonymous"),
        ("Swap", "memory_swap"),
    ];
    let mut out = Vec::new();
    for line in s.lines() {
        if let Some((k, v)) = line.split_once(':')
            && let Some((_, name)) = KEYS.iter().find(|(key, _)| *key == k)
            && let Some(n) = v
                .split_ascii_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
        {
            out.push((*name, n * 1024));
        }
    }
    out
}

/// The numeric entries of the proc directory.
pub fn pids(proc_root: &Path) -> std::io::Result<Vec<i32>> {
    let mut v: Vec<i32> = std::fs::read_dir(proc_root)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

pub fn dir(proc_root: &Path, pid: i32) -> PathBuf {
    proc_root.join(pid.to_string())
}

/// The pids of every cgroup a (glob) path names: (cgroup directory, pids). Relative paths
/// are under /sys/fs/cgroup.
pub fn cgroup_pids(cg: &str) -> anyhow::Result<Vec<(String, Vec<i32>)>> {
    let path = if cg.starts_with('/') {
        cg.to_string()
    } else {
        format!("/sys/fs/cgroup/{cg}")
    };
    let mut out = Vec::new();
    for item in glob::glob(&path)?.flatten() {
        let file = item.join("cgroup.procs");
        let procs = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let pids = procs
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.trim().parse::<i32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        out.push((item.display().to_string(), pids));
    }
    Ok(out)
}

/// Parent pid -> child pids, from every /proc/<pid>/stat.
pub fn children_map(root: &Path) -> std::io::Result<HashMap<i32, Vec<i32>>> {
    let mut map: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in pids(root)? {
        if let Ok(text) = std::fs::read_to_string(dir(root, pid).join("stat"))
            && let Some(st) = parse_stat(&text)
        {
            map.entry(st.ppid as i32).or_default().push(pid);
        }
    }
    Ok(map)
}

/// The command line with NULs as spaces, trailing ones removed.
pub fn cmdline(proc_root: &Path, pid: i32) -> Option<String> {
    let raw = std::fs::read(dir(proc_root, pid).join("cmdline")).ok()?;
    let s: String = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ");
    Some(s)
}

pub fn status(proc_root: &Path, pid: i32) -> Option<Status> {
    std::fs::read_to_string(dir(proc_root, pid).join("status"))
        .ok()
        .map(|s| parse_status(&s))
}

/// A user name for a uid (getpwuid_r), or the number.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the call; the result points into `buf`/`pwd`.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc == 0 && !out.is_null() {
        // SAFETY: pw_name is a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    uid.to_string()
}

/// gopsutil's names of the state letters.
pub fn status_name(c: char) -> &'static str {
    match c {
        'D' | 'U' => "blocked",
        'I' => "idle",
        'L' => "lock",
        'R' => "running",
        'S' => "sleep",
        'T' | 't' => "stop",
        'W' => "wait",
        'Z' => "zombie",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_name() {
        let s = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 7 2 1 50 25 3 4 20 0 3 0 12345 1000 200 \
                 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 9 0 0";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(
            (st.minflt, st.cminflt, st.majflt, st.cmajflt),
            (100, 7, 2, 1)
        );
        assert_eq!((st.utime, st.stime), (50, 25));
        assert_eq!((st.nice, st.num_threads, st.starttime), (0, 3, 12345));
        assert_eq!(st.blkio_ticks, 9);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn limits_are_capped_like_telegraf() {
        let s = "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max cpu time              unlimited            unlimited            seconds   \n\
                 Max open files            1024                 524288               files     \n\
                 Max locked memory         8388608              8388608              bytes     \n";
        let l = parse_limits(s);
        assert_eq!(l[0], ("cpu_time", 2147483647, 2147483647));
        assert_eq!(l[1], ("num_fds", 1024, 524288));
        assert_eq!(l[2], ("memory_locked", 8388608, 8388608));
    }

    #[test]
    fn own_process_reads() {
        let root = Path::new("/proc");
        let me = std::process::id() as i32;
        let st = status(root, me).unwrap();
        assert!(st.vm_rss.unwrap() > 0);
        assert!(cmdline(root, me).unwrap().contains("sonde"));
        assert!(pids(root).unwrap().contains(&me));
        assert_eq!(user_name(0), "root");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,400}") {
            let _ = parse_stat(&s);
            let _ = parse_status(&s);
            let _ = parse_io(&s);
            let _ = parse_limits(&s);
            let _ = parse_smaps_rollup(&s);
        }

        #[test]
        fn stat_round_trips_its_numbers(name in "[^\\n]{0,20}", utime in 0u64..1 << 40, threads in 1i64..10000) {
            let line = format!("7 ({name}) R 1 7 7 0 -1 0 1 2 3 4 {utime} 5 0 0 20 0 {threads} 0 99 0 0");
            let st = parse_stat(&line).unwrap();
            proptest::prop_assert_eq!(st.utime, utime);
            proptest::prop_assert_eq!(st.num_threads, threads);
            proptest::prop_assert_eq!(st.starttime, 99);
        }
    }
}
