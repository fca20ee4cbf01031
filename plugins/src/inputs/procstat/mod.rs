//! `inputs.procstat`: per-process CPU, memory, I/O, file descriptors, limits and sockets of
//! the processes a selector finds (pid file, executable name, command-line pattern, user,
//! cgroup, systemd unit, supervisord program), with Telegraf's `procstat`, `procstat_lookup`
//! and `procstat_socket` measurements. Linux: /proc is read directly, sockets through netlink.

mod filter;
mod proc;
mod service;
mod sockets;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;

use crate::inputs::host::{self, HostPaths, config_error};
use crate::model::{FieldValue, Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    pid_file: String,
    exe: String,
    pattern: String,
    user: String,
    systemd_unit: String,
    include_systemd_children: bool,
    cgroup: String,
    supervisor_units: Vec<String>,
    win_service: String,
    process_name: String,
    prefix: String,
    mode: String,
    tag_with: Vec<String>,
    properties: Vec<String>,
    socket_protocols: Vec<String>,
    pid_finder: String,
    /// Deprecated (Telegraf 1.29): the pid as a tag; `tag_with = ["pid"]` now.
    pid_tag: bool,
    filter: Vec<filter::FilterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pid_file: String::new(),
            exe: String::new(),
            pattern: String::new(),
            user: String::new(),
            systemd_unit: String::new(),
            include_systemd_children: false,
            cgroup: String::new(),
            supervisor_units: Vec::new(),
            win_service: String::new(),
            process_name: String::new(),
            prefix: String::new(),
            mode: "irix".into(),
            tag_with: Vec::new(),
            properties: vec![
                "cpu".into(),
                "limits".into(),
                "memory".into(),
                "mmap".into(),
            ],
            socket_protocols: Vec::new(),
            pid_finder: "pgrep".into(),
            pid_tag: false,
            filter: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
enum Selector {
    /// supervisord programs: the children of each running program's process.
    Supervisor(Vec<String>),
    /// A systemd unit's `MainPID` (`systemctl show`).
    Systemd(String),
    /// `include_systemd_children`: every process of the unit's cgroup (globs allowed).
    SystemdChildren(String),
    PidFile(String),
    Exe(regex::Regex),
    Pattern(regex::Regex),
    User(String),
    Cgroup(String),
}

#[derive(Default, Clone, Copy)]
struct Tagging {
    level: bool,
    cmdline: bool,
    pid: bool,
    ppid: bool,
    status: bool,
    user: bool,
    // procstat_socket fields made tags.
    protocol: bool,
    state: bool,
    src: bool,
    src_port: bool,
    dest: bool,
    dest_port: bool,
    name: bool,
}

impl Tagging {
    /// Whether a procstat_socket field is a tag instead.
    fn socket_tag(&self, field: &str) -> bool {
        match field {
            "protocol" => self.protocol,
            "state" => self.state,
            "src" => self.src,
            "src_port" => self.src_port,
            "dest" => self.dest,
            "dest_port" => self.dest_port,
            "name" => self.name,
            _ => false,
        }
    }
}

#[derive(Default, Clone)]
struct Props {
    cpu: bool,
    limits: bool,
    memory: bool,
    mmap: bool,
    /// The `sockets` property: the protocols of `socket_protocols`.
    sockets: Vec<sockets::Proto>,
}

pub struct Procstat {
    selector: Selector,
    /// The selector's tag (`pidfile`, `exe`, `pattern`, `user`, `cgroup`, `systemd_unit`,
    /// `supervisor_unit`) and value.
    selector_tag: (&'static str, String),
    /// `pattern`, which Telegraf adds as a tag to supervisor units' processes.
    pattern: String,
    pgrep: bool,
    pid_finder: String,
    process_name: String,
    prefix: String,
    solaris: bool,
    tagging: Tagging,
    props: Props,
    paths: HostPaths,
    /// CPU seconds (user+system+iowait) and when, per pid, from the previous gather.
    previous: HashMap<(usize, i32), (f64, Instant, u64)>,
    /// Protocols whose sockets come from /proc/net (netlink failed), warned about once.
    fallback_warned: std::collections::HashSet<sockets::Proto>,
    /// `[[inputs.procstat.filter]]` blocks (new-style); empty in the old mode.
    filters: Vec<filter::Filter>,
    tag_level: bool,
}

struct Found {
    pids: Vec<i32>,
    tags: Vec<(&'static str, String)>,
}

impl Procstat {
    fn proc_root(&self) -> PathBuf {
        self.paths.proc("")
    }

    async fn find(&self) -> anyhow::Result<Vec<Found>> {
        let root = self.proc_root();
        let one = |pids: Vec<i32>| {
            Ok(vec![Found {
                pids,
                tags: vec![(self.selector_tag.0, self.selector_tag.1.clone())],
            }])
        };
        match &self.selector {
            Selector::Supervisor(units) => {
                let units = service::supervisor_units(units)
                    .await
                    .map_err(|e| anyhow::anyhow!("getting supervisor PIDs failed: {e:#}"))?;
                let children = proc::children_map(&root)?;
                let mut out = Vec::new();
                for u in units {
                    let mut tags = u.tags();
                    let Some(main) = u.pid else {
                        // Not running: no processes, but its tags (status, error) go to the
                        // lookup metric, as in Telegraf.
                        out.push(Found {
                            pids: Vec::new(),
                            tags,
                        });
                        continue;
                    };
                    // Telegraf reports the children of the program's process; a program
                    // without children is left out.
                    let pids = children.get(&main).cloned().unwrap_or_default();
                    if pids.is_empty() {
                        continue;
                    }
                    if !self.pattern.is_empty() {
                        tags.push(("pattern", self.pattern.clone()));
                    }
                    out.push(Found { pids, tags });
                }
                Ok(out)
            }
            Selector::Systemd(unit) => {
                one(service::systemd_main_pid(unit).await?.into_iter().collect())
            }
            Selector::SystemdChildren(unit) => {
                // Telegraf's path: the cgroup v1 systemd hierarchy when it has a system.slice,
                // else the unified hierarchy's.
                let cg = if std::path::Path::new("/sys/fs/cgroup/systemd/system.slice").is_dir() {
                    format!("systemd/system.slice/{unit}")
                } else {
                    format!("system.slice/{unit}")
                };
                Ok(proc::cgroup_pids(&cg)?
                    .into_iter()
                    .map(|(full, pids)| Found {
                        pids,
                        tags: vec![("cgroup", cg.clone()), ("cgroup_full", full)],
                    })
                    .collect())
            }
            Selector::PidFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("failed to read pidfile {path:?}: {e}"))?;
                let pid: i32 = text
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("pidfile {path:?}: {e}"))?;
                one(vec![pid])
            }
            Selector::Cgroup(cg) => Ok(proc::cgroup_pids(cg)?
                .into_iter()
                .map(|(full, pids)| Found {
                    pids,
                    tags: vec![("cgroup", cg.clone()), ("cgroup_full", full)],
                })
                .collect()),
            _ if self.pgrep => one(self.pgrep().await?),
            Selector::Exe(re) => one(proc::pids(&root)?
                .into_iter()
                .filter(|p| proc::status(&root, *p).is_some_and(|s| re.is_match(&s.name)))
                .collect()),
            Selector::Pattern(re) => one(proc::pids(&root)?
                .into_iter()
                .filter(|p| proc::cmdline(&root, *p).is_some_and(|c| re.is_match(&c)))
                .collect()),
            Selector::User(u) => one(proc::pids(&root)?
                .into_iter()
                .filter(|p| {
                    proc::status(&root, *p)
                        .and_then(|s| s.uid)
                        .is_some_and(|uid| proc::user_name(uid) == *u)
                })
                .collect()),
        }
    }

    /// Telegraf's pgrep finder: `pgrep <exe>`, `pgrep -f <pattern>`, `pgrep -u <user>`.
    async fn pgrep(&self) -> anyhow::Result<Vec<i32>> {
        let (flag, value) = match &self.selector {
            Selector::Exe(re) => (None, re.as_str().to_string()),
            Selector::Pattern(re) => (Some("-f"), re.as_str().to_string()),
            Selector::User(u) => (Some("-u"), u.clone()),
            _ => unreachable!("pid files, cgroups and services need no pgrep"),
        };
        let mut cmd = tokio::process::Command::new("pgrep");
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let out = cmd
            .arg(&value)
            .output()
            .await
            .map_err(|e| anyhow::anyhow!("running pgrep: {e}"))?;
        // pgrep exits 1 when nothing matched: an empty result, not an error.
        if !out.status.success() && out.status.code() != Some(1) {
            anyhow::bail!(
                "pgrep failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_ascii_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// The `procstat` metric of one process, and its `procstat_socket` metrics with the
    /// `sockets` property, added to `acc`; false when the process is gone.
    fn process(
        &mut self,
        acc: &mut Accumulator,
        slot: usize,
        pid: i32,
        tags: &[(&'static str, String)],
        env: &mut Env,
    ) -> bool {
        let Some(m) = self.process_metric(acc, slot, pid, tags, env) else {
            return false;
        };
        let sockets = if self.props.sockets.is_empty() {
            Vec::new()
        } else {
            self.sockets(acc, pid, &m, env)
        };
        acc.add(m);
        for s in sockets {
            acc.add(s);
        }
        true
    }

    /// The process's sockets of the configured protocols, tagged as its `procstat` metric.
    fn sockets(
        &mut self,
        acc: &mut Accumulator,
        pid: i32,
        m: &Metric,
        env: &mut Env,
    ) -> Vec<Metric> {
        let root = self.proc_root();
        let inodes = match sockets::socket_inodes(&root, pid) {
            Ok(i) => i,
            Err(e) => {
                acc.add_error(format!("cannot get connections of PID {pid}: {e}"));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        if inodes.is_empty() {
            return out;
        }
        let warned = &mut self.fallback_warned;
        for proto in &self.props.sockets.clone() {
            let table = env.sockets.entry(*proto).or_insert_with(|| {
                sockets::dump(*proto).or_else(|e| {
                    // No sock_diag here: the /proc/net table, with fewer fields.
                    let t = sockets::read_proc_net(&root, *proto).map_err(|e2| {
                        format!(
                            "cannot get statistics for {:?}: netlink sock_diag: {e}; \
                             /proc/net: {e2}",
                            proto.name()
                        )
                    })?;
                    if warned.insert(*proto) {
                        tracing::warn!(
                            "procstat: netlink sock_diag for {} failed ({e}); reading /proc/net \
                             instead, without bytes_received, bytes_sent, lost and unix queues",
                            proto.name()
                        );
                    }
                    Ok(t)
                })
            });
            let table = match table {
                Ok(t) => t,
                Err(e) => {
                    // Once per gather and protocol.
                    if env.socket_errors.insert(*proto) {
                        acc.add_error(e.clone());
                    }
                    continue;
                }
            };
            for ino in &inodes {
                let Some(sock) = table.get(ino) else {
                    continue;
                };
                let mut s = Metric::new("procstat_socket", acc.time()).with_kind(ValueType::Gauge);
                for (k, v) in &m.tags {
                    s.add_tag(k.as_str(), v.as_str());
                }
                for (k, v) in &sock.fields {
                    if self.tagging.socket_tag(k) {
                        let text = match v {
                            FieldValue::String(t) => t.to_string(),
                            FieldValue::Int(i) => i.to_string(),
                            other => format!("{other:?}"),
                        };
                        s.add_tag(*k, text);
                    } else {
                        s.add_field(*k, v.clone());
                    }
                    if *k == "state" {
                        s.add_field("pid", pid as i64);
                    }
                }
                out.push(s);
            }
        }
        out
    }

    /// The `procstat` metric of one process; None when it is gone.
    fn process_metric(
        &mut self,
        acc: &Accumulator,
        slot: usize,
        pid: i32,
        tags: &[(&'static str, String)],
        env: &Env,
    ) -> Option<Metric> {
        let root = self.proc_root();
        let d = proc::dir(&root, pid);
        let stat = proc::parse_stat(&std::fs::read_to_string(d.join("stat")).ok()?)?;
        let status = proc::parse_status(&std::fs::read_to_string(d.join("status")).ok()?);
        if status.name.is_empty() {
            return None;
        }
        let px = &self.prefix;
        let k = |name: &str| -> String {
            if px.is_empty() {
                name.to_string()
            } else {
                format!("{px}_{name}")
            }
        };
        let mut m = Metric::new("procstat", acc.time()).with_kind(ValueType::Gauge);
        for (t, v) in tags {
            m.add_tag(*t, v.as_str());
        }
        let name = if self.process_name.is_empty() {
            status.name.clone()
        } else {
            self.process_name.clone()
        };
        m.add_tag("process_name", name);

        m.add_field(k("num_threads"), stat.num_threads);
        let fds = std::fs::read_dir(d.join("fd"))
            .ok()
            .map(|r| r.count() as i64);
        if let Some(n) = fds {
            m.add_field(k("num_fds"), n);
        }
        if let (Some(v), Some(i)) = (status.voluntary, status.involuntary) {
            m.add_field(k("voluntary_context_switches"), v as i64);
            m.add_field(k("involuntary_context_switches"), i as i64);
        }
        m.add_field(k("minor_faults"), stat.minflt as i64);
        m.add_field(k("major_faults"), stat.majflt as i64);
        m.add_field(k("child_minor_faults"), stat.cminflt as i64);
        m.add_field(k("child_major_faults"), stat.cmajflt as i64);
        if let Ok(text) = std::fs::read_to_string(d.join("io")) {
            let io = proc::parse_io(&text);
            m.add_field(k("read_count"), io.syscr as i64);
            m.add_field(k("write_count"), io.syscw as i64);
            m.add_field(k("read_bytes"), io.rchar as i64);
            m.add_field(k("write_bytes"), io.wchar as i64);
            m.add_field(k("disk_read_bytes"), io.read_bytes as i64);
            m.add_field(k("disk_write_bytes"), io.write_bytes as i64);
        }
        // gopsutil: boot time (s) * 1000 + start ticks * 1000 / USER_HZ, in ms; Telegraf * 1e6.
        let created_ms = env.btime * 1000 + stat.starttime * 1000 / env.ticks as u64;
        m.add_field(k("created_at"), (created_ms * 1_000_000) as i64);

        let (user_s, sys_s, io_s) = (
            stat.utime as f64 / env.ticks,
            stat.stime as f64 / env.ticks,
            stat.blkio_ticks as f64 / env.ticks,
        );
        if self.props.cpu {
            m.add_field(k("cpu_time_user"), user_s);
            m.add_field(k("cpu_time_system"), sys_s);
            m.add_field(k("cpu_time_iowait"), io_s);
            let now = Instant::now();
            let total = user_s + sys_s + io_s;
            // The previous sample must be of the same process (same start time).
            if let Some((prev, at, start)) = self.previous.get(&(slot, pid)).copied()
                && start == stat.starttime
            {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    let mut pct = (total - prev) / wall * 100.0;
                    if self.solaris {
                        pct /= env.ncpu as f64;
                    }
                    m.add_field(k("cpu_usage"), pct);
                }
            }
            self.previous
                .insert((slot, pid), (total, now, stat.starttime));
        }
        if self.props.memory {
            if let Some(rss) = status.vm_rss {
                m.add_field(k("memory_rss"), rss as i64);
                if env.mem_total > 0 {
                    m.add_field(k("memory_usage"), rss as f64 / env.mem_total as f64 * 100.0);
                }
            }
            if let Some(vms) = status.vm_size {
                m.add_field(k("memory_vms"), vms as i64);
            }
        }
        if self.props.mmap
            && let Ok(text) = std::fs::read_to_string(d.join("smaps_rollup"))
        {
            let fields = proc::parse_smaps_rollup(&text);
            if !fields.is_empty() {
                m.add_field(k("memory_size"), status.vm_size.unwrap_or(0) as i64);
            }
            for (name, v) in fields {
                m.add_field(k(name), v as i64);
            }
        }
        if self.props.limits
            && let Ok(text) = std::fs::read_to_string(d.join("limits"))
        {
            for (name, soft, hard) in proc::parse_limits(&text) {
                m.add_field(k(&format!("rlimit_{name}_soft")), soft);
                m.add_field(k(&format!("rlimit_{name}_hard")), hard);
                let used = match name {
                    "cpu_time" => Some((user_s + sys_s) as i64),
                    "memory_data" => status.vm_data.map(|v| v as i64),
                    "memory_stack" => status.vm_stk.map(|v| v as i64),
                    "memory_rss" => status.vm_rss.map(|v| v as i64),
                    "num_fds" => fds,
                    "memory_locked" => status.vm_lck.map(|v| v as i64),
                    "memory_vms" => status.vm_size.map(|v| v as i64),
                    "signals_pending" => status.sigq.map(|v| v as i64),
                    "nice_priority" => Some(stat.nice),
                    "realtime_priority" => Some(stat.rt_priority as i64),
                    _ => None,
                };
                if let Some(u) = used {
                    m.add_field(k(name), u);
                }
            }
        }
        if let Some(cmd) = proc::cmdline(&root, pid) {
            if self.tagging.cmdline {
                m.add_tag("cmdline", cmd);
            } else {
                m.add_field(k("cmdline"), cmd);
            }
        }
        if self.tagging.pid {
            m.add_tag("pid", pid.to_string());
        } else {
            // Telegraf writes `pid` without the prefix.
            m.add_field("pid", pid as i64);
        }
        if self.tagging.ppid {
            m.add_tag("ppid", stat.ppid.to_string());
        } else {
            m.add_field(k("ppid"), stat.ppid);
        }
        let st = proc::status_name(stat.state);
        if self.tagging.status {
            m.add_tag("status", st);
        } else {
            m.add_field(k("status"), st);
        }
        if let Some(uid) = status.uid {
            let user = proc::user_name(uid);
            if self.tagging.user {
                m.add_tag("user", user);
            } else {
                m.add_field(k("user"), user);
            }
        }
        Some(m)
    }
}

/// Host facts a gather needs once.
struct Env {
    btime: u64,
    ticks: f64,
    ncpu: usize,
    mem_total: u64,
    /// The kernel's socket tables, read on first use in a gather.
    sockets: HashMap<sockets::Proto, Result<sockets::Table, String>>,
    socket_errors: std::collections::HashSet<sockets::Proto>,
}

fn env(paths: &HostPaths) -> Env {
    let mut buf = String::new();
    let mut btime = 0;
    if host::read_to(&paths.proc("stat"), &mut buf).is_ok() {
        btime = buf
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
    }
    let mut mem_total = 0;
    if host::read_to(&paths.proc("meminfo"), &mut buf).is_ok() {
        mem_total = buf
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(host::first_u64)
            .map_or(0, |kb| kb * 1024);
    }
    Env {
        btime,
        ticks: host::clock_ticks(),
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total,
        sockets: HashMap::new(),
        socket_errors: Default::default(),
    }
}

#[async_trait]
impl Input for Procstat {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        if !self.filters.is_empty() {
            self.gather_filters(acc).await;
            return Ok(());
        }
        self.gather_old(acc).await
    }
}

impl Procstat {
    /// New-style: every filter block, its own `procstat_lookup` (tag `filter`).
    async fn gather_filters(&mut self, acc: &mut Accumulator) {
        let root = self.proc_root();
        let mut env = env(&self.paths);
        let mut alive = std::collections::HashSet::new();
        let filters = std::mem::take(&mut self.filters);
        for (slot, f) in filters.iter().enumerate() {
            let lookup =
                |acc: &mut Accumulator, count: i64, running: i64, code: i64, level: Option<i64>| {
                    let mut m =
                        Metric::new("procstat_lookup", acc.time()).with_kind(ValueType::Gauge);
                    m.add_tag("filter", f.name.as_str());
                    m.add_tag("result", if code == 0 { "success" } else { "lookup_error" });
                    m.add_field("pid_count", count);
                    m.add_field("running", running);
                    m.add_field("result_code", code);
                    if let Some(l) = level {
                        m.add_field("level", l);
                    }
                    acc.add(m);
                };
            let groups = match f.apply(&root).await {
                Ok(g) => g,
                Err(e) => {
                    lookup(acc, 0, 0, 1, None);
                    acc.add_error(format!("applying filter {:?} failed: {e:#}", f.name));
                    continue;
                }
            };
            let mut count = 0;
            let mut running = std::collections::HashSet::new();
            for g in &groups {
                count += g.pids.len() as i64;
                let mut tags = g.tags.clone();
                tags.push(("filter", f.name.clone()));
                if self.tag_level {
                    tags.push(("level", g.level.to_string()));
                }
                for pid in &g.pids {
                    if self.process(acc, slot, *pid, &tags, &mut env) {
                        running.insert(*pid);
                        alive.insert((slot, *pid));
                    }
                }
                if self.tag_level {
                    lookup(
                        acc,
                        g.pids.len() as i64,
                        running.len() as i64,
                        0,
                        Some(g.level),
                    );
                }
            }
            lookup(acc, count, running.len() as i64, 0, None);
        }
        self.filters = filters;
        self.previous.retain(|k, _| alive.contains(k));
    }

    async fn gather_old(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let mut lookup_tags: Vec<(&'static str, String)> =
            vec![("pid_finder", self.pid_finder.clone())];
        let found = match self.find().await {
            Ok(f) => f,
            Err(e) => {
                lookup_tags.push((self.selector_tag.0, self.selector_tag.1.clone()));
                lookup_tags.push(("result", "lookup_error".into()));
                let mut m = Metric::new("procstat_lookup", acc.time()).with_kind(ValueType::Gauge);
                for (k, v) in &lookup_tags {
                    m.add_tag(*k, v.as_str());
                }
                m.add_field("pid_count", 0i64);
                m.add_field("running", 0i64);
                m.add_field("result_code", 1i64);
                acc.add(m);
                return Err(e);
            }
        };
        let mut env = env(&self.paths);
        let mut count = 0i64;
        let mut running = std::collections::HashSet::new();
        for f in &found {
            count += f.pids.len() as i64;
            for pid in &f.pids {
                if self.process(acc, 0, *pid, &f.tags, &mut env) {
                    running.insert(*pid);
                }
            }
            // Later groups' tags win, as Telegraf merges them into one map.
            for t in &f.tags {
                lookup_tags.push((t.0, t.1.clone()));
            }
        }
        if found.is_empty() || matches!(self.selector, Selector::Supervisor(_)) {
            lookup_tags.push((self.selector_tag.0, self.selector_tag.1.clone()));
        }
        self.previous.retain(|(_, pid), _| running.contains(pid));
        lookup_tags.push(("result", "success".into()));
        let mut m = Metric::new("procstat_lookup", acc.time()).with_kind(ValueType::Gauge);
        for (k, v) in &lookup_tags {
            m.add_tag(*k, v.as_str());
        }
        m.add_field("pid_count", count);
        m.add_field("running", running.len() as i64);
        m.add_field("result_code", 0i64);
        acc.add(m);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    if !cfg.win_service.is_empty() {
        return Err(config_error(
            "win_service",
            "Windows services are not supported on this OS".into(),
        ));
    }
    if cfg.include_systemd_children && cfg.systemd_unit.is_empty() {
        tracing::warn!("procstat: include_systemd_children has no effect without systemd_unit");
    }
    let filters = cfg
        .filter
        .into_iter()
        .enumerate()
        .map(|(i, f)| filter::Filter::new(i, f))
        .collect::<Result<Vec<_>, _>>()?;
    let old_style = !cfg.pid_file.is_empty()
        || !cfg.exe.is_empty()
        || !cfg.pattern.is_empty()
        || !cfg.user.is_empty()
        || !cfg.cgroup.is_empty()
        || !cfg.systemd_unit.is_empty()
        || !cfg.supervisor_units.is_empty();
    if !filters.is_empty() && old_style {
        return Err(config_error(
            "filter",
            "cannot operate in mixed mode with filters and old-style config".into(),
        ));
    }
    let mut props = Props::default();
    for p in &cfg.properties {
        match p.as_str() {
            "cpu" => props.cpu = true,
            "limits" => props.limits = true,
            "memory" => props.memory = true,
            "mmap" => props.mmap = true,
            "sockets" => props.sockets = socket_protocols(&cfg.socket_protocols)?,
            other => {
                return Err(config_error(
                    "properties",
                    format!("{other:?}: expected cpu, limits, memory, mmap or sockets"),
                ));
            }
        }
    }
    let mut tagging = Tagging::default();
    for t in &cfg.tag_with {
        match t.as_str() {
            "cmdline" => tagging.cmdline = true,
            "pid" => tagging.pid = true,
            "ppid" => tagging.ppid = true,
            "status" => tagging.status = true,
            "user" => tagging.user = true,
            "level" => tagging.level = true,
            "child_level" | "parent_pid" => tracing::warn!(
                "procstat: tag_with {t:?} has no effect (as in Telegraf): the filter blocks' \
                 child processes always carry parent_pid, and \"level\" tags the level"
            ),
            "protocol" | "state" | "src" | "src_port" | "dest" | "dest_port" | "name"
                if props.sockets.is_empty() =>
            {
                return Err(config_error(
                    "tag_with",
                    format!("socket tagging option {t:?} specified without sockets enabled"),
                ));
            }
            "protocol" => tagging.protocol = true,
            "state" => tagging.state = true,
            "src" => tagging.src = true,
            "src_port" => tagging.src_port = true,
            "dest" => tagging.dest = true,
            "dest_port" => tagging.dest_port = true,
            "name" => tagging.name = true,
            other => {
                return Err(config_error(
                    "tag_with",
                    format!("invalid setting {other:?}"),
                ));
            }
        }
    }
    if cfg.pid_tag {
        tracing::warn!("procstat: pid_tag is deprecated, use tag_with = [\"pid\"]");
        tagging.pid = true;
    }
    let solaris = match cfg.mode.to_ascii_lowercase().as_str() {
        "irix" | "" => false,
        "solaris" => true,
        other => {
            return Err(config_error(
                "mode",
                format!("{other:?}: expected irix or solaris"),
            ));
        }
    };
    let pgrep = match cfg.pid_finder.as_str() {
        "pgrep" | "" => true,
        "native" => false,
        other => {
            return Err(config_error(
                "pid_finder",
                format!("unknown pid_finder {other:?}: expected pgrep or native"),
            ));
        }
    };
    let re = |key: &str, p: &str| {
        regex::Regex::new(p).map_err(|e| config_error(key, format!("bad pattern {p:?}: {e}")))
    };
    if !cfg.socket_protocols.is_empty() && props.sockets.is_empty() {
        tracing::warn!(
            "procstat: socket_protocols has no effect without \"sockets\" in properties"
        );
    }
    let pattern = cfg.pattern.clone();
    // Telegraf's order of precedence.
    let (selector, tag) = if !cfg.supervisor_units.is_empty() {
        (
            Selector::Supervisor(cfg.supervisor_units.clone()),
            ("supervisor_unit", cfg.supervisor_units.join(";")),
        )
    } else if !cfg.systemd_unit.is_empty() {
        let tag = ("systemd_unit", cfg.systemd_unit.clone());
        if cfg.include_systemd_children {
            (Selector::SystemdChildren(cfg.systemd_unit), tag)
        } else {
            (Selector::Systemd(cfg.systemd_unit), tag)
        }
    } else if !cfg.cgroup.is_empty() {
        (Selector::Cgroup(cfg.cgroup.clone()), ("cgroup", cfg.cgroup))
    } else if !cfg.pid_file.is_empty() {
        (
            Selector::PidFile(cfg.pid_file.clone()),
            ("pidfile", cfg.pid_file),
        )
    } else if !cfg.exe.is_empty() {
        (Selector::Exe(re("exe", &cfg.exe)?), ("exe", cfg.exe))
    } else if !cfg.pattern.is_empty() {
        (
            Selector::Pattern(re("pattern", &cfg.pattern)?),
            ("pattern", cfg.pattern),
        )
    } else if !cfg.user.is_empty() {
        (Selector::User(cfg.user.clone()), ("user", cfg.user))
    } else if !filters.is_empty() {
        (Selector::User(String::new()), ("filter", String::new()))
    } else {
        return Err(config_error(
            "pid_file",
            "no selector: set one of pid_file, exe, pattern, user, cgroup, systemd_unit or \
             supervisor_units, or filter blocks"
                .into(),
        ));
    };
    Ok(InputPlugin::Polled(Box::new(Procstat {
        selector,
        selector_tag: tag,
        pattern,
        pgrep,
        pid_finder: if pgrep {
            "pgrep".into()
        } else {
            "native".into()
        },
        process_name: cfg.process_name,
        prefix: cfg.prefix,
        solaris,
        tagging,
        props,
        paths: HostPaths::from_env(),
        previous: HashMap::new(),
        fallback_warned: Default::default(),
        tag_level: tagging.level,
        filters,
    })))
}

/// Telegraf's checks of `socket_protocols` (with the sockets property): empty means all.
fn socket_protocols(list: &[String]) -> Result<Vec<sockets::Proto>, BuildError> {
    let err = |m: String| Err(config_error("socket_protocols", m));
    if list.is_empty() {
        return Ok(sockets::Proto::ALL.to_vec());
    }
    let mut out = Vec::new();
    for p in list {
        if p == "all" {
            if list.len() > 1 {
                return err(
                    "additional 'socket_protocol' settings besides 'all' are not allowed".into(),
                );
            }
            return Ok(sockets::Proto::ALL.to_vec());
        }
        let Some(proto) = sockets::Proto::parse(p) else {
            return err(format!(
                "invalid 'socket_protocol' setting {p:?}: expected all, tcp4, tcp6, udp4, udp6 or unix"
            ));
        };
        if out.contains(&proto) {
            return err(format!("duplicate {p:?} in 'socket_protocol' setting"));
        }
        out.push(proto);
    }
    Ok(out)
}

pub const SPEC: InputSpec = InputSpec {
    name: "procstat",
    description: "Per-process CPU, memory, I/O, file descriptors, limits and sockets (Telegraf's procstat)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    fn input(text: &str) -> Box<dyn Input> {
        match build(toml::from_str(text).unwrap(), &BuildContext::default()) {
            Ok(InputPlugin::Polled(p)) => p,
            Err(e) => panic!("{e}"),
            _ => panic!(),
        }
    }

    fn err(text: &str) -> String {
        match build(toml::from_str(text).unwrap(), &BuildContext::default()) {
            Err(BuildError::Config(e)) => format!("{}: {}", e.path.join("."), e.message),
            Err(e) => e.to_string(),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(err("").contains("no selector"));
        assert_eq!(err("exe = 'x'\nsystemd_unit = 'a.service'"), "ok");
        assert_eq!(
            err("supervisor_units = ['a']\ninclude_systemd_children = true"),
            "ok"
        );
        assert!(err("win_service = 'x'").starts_with("win_service"));
        assert_eq!(err("exe = 'x'\nproperties = ['sockets']"), "ok");
        assert_eq!(err("exe = 'x'\nsocket_protocols = ['tcp4']"), "ok");
        assert!(err("exe = 'x'\ntag_with = ['src']").contains("without sockets"));
        assert_eq!(
            err("exe = 'x'\nproperties = ['sockets']\ntag_with = ['src', 'state', 'name']"),
            "ok"
        );
        assert_eq!(
            err("exe = 'x'\ntag_with = ['parent_pid', 'child_level']"),
            "ok"
        );
        for (protos, msg) in [
            ("['all', 'tcp4']", "besides 'all'"),
            ("['tcp4', 'tcp4']", "duplicate"),
            ("['sctp']", "invalid"),
        ] {
            let e = err(&format!(
                "exe = 'x'\nproperties = ['sockets']\nsocket_protocols = {protos}"
            ));
            assert!(e.starts_with("socket_protocols") && e.contains(msg), "{e}");
        }
        assert!(err("systemd_unit = 'a'\n[[filter]]\nname = 'a'").contains("mixed mode"));
        assert!(err("supervisor_units = ['a']\n[[filter]]\nname = 'a'").contains("mixed mode"));
        assert!(err("exe = '('").starts_with("exe"));
        assert!(err("exe = 'x'\nmode = 'bsd'").starts_with("mode"));
        assert!(err("exe = 'x'\npid_finder = 'ps'").starts_with("pid_finder"));
        assert_eq!(err("exe = 'x'\npid_tag = true"), "ok");
        assert_eq!(
            err("[[filter]]\nname = 'a'\npatterns = ['x']\nrecursion_depth = -1"),
            "ok"
        );
        assert!(err("[[filter]]\npatterns = ['x']").contains("must be named"));
        assert!(err("exe = 'x'\n[[filter]]\nname = 'a'").contains("mixed mode"));
        assert_eq!(err("[[filter]]\nname = 'a'\nsystemd_units = ['x*']"), "ok");
        assert_eq!(
            err("[[filter]]\nname = 'a'\nsupervisor_units = ['x']"),
            "ok"
        );
        assert!(
            err("[[filter]]\nname = 'a'\nsystemd_units = ['x']\nsupervisor_units = ['y']")
                .contains("\"systemd_units, supervisor_units\"")
        );
        assert!(
            err("[[filter]]\nname = 'a'\nwin_services = ['x']")
                .starts_with("filter.0.win_services")
        );
        assert!(
            err("[[filter]]\nname = 'a'\npid_files = ['p']\ncgroups = ['c']")
                .contains("multiple services")
        );
        assert!(err("[[filter]]\nname = 'a'\nusers = ['[']").starts_with("filter.0.users"));
    }

    #[tokio::test]
    async fn own_process_by_pid_file_and_pattern() {
        let dir = std::env::temp_dir().join(format!("sonde-procstat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("me.pid");
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        let mut p = input(&format!(
            "pid_file = '{}'\ntag_with = ['pid']\nprefix = 'x'",
            pidfile.display()
        ));
        let mut acc = Accumulator::new(1);
        p.gather(&mut acc).await.unwrap();
        let m = &acc.metrics[0];
        assert_eq!(m.name, "procstat");
        assert_eq!(m.tag("pid"), Some(std::process::id().to_string().as_str()));
        assert_eq!(m.tag("pidfile"), Some(pidfile.to_str().unwrap()));
        assert!(matches!(m.field("x_memory_rss"), Some(FieldValue::Int(n)) if *n > 0));
        assert!(m.field("x_cpu_usage").is_none(), "no previous sample yet");
        let l = &acc.metrics[1];
        assert_eq!(l.name, "procstat_lookup");
        assert_eq!(l.field("pid_count"), Some(&FieldValue::Int(1)));
        assert_eq!(l.tag("result"), Some("success"));
        let mut acc = Accumulator::new(2);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.metrics[0].field("x_cpu_usage").is_some());

        std::fs::write(&pidfile, "nope").unwrap();
        let mut acc = Accumulator::new(3);
        assert!(p.gather(&mut acc).await.is_err());
        assert_eq!(acc.metrics[0].tag("result"), Some("lookup_error"));
        assert_eq!(
            acc.metrics[0].field("result_code"),
            Some(&FieldValue::Int(1))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
