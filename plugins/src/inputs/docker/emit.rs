//! Turning the engine's answers into Telegraf's measurements.

use crate::model::{Metric, ValueType};
use crate::plugin::Accumulator;

use super::api::{self, Info, Inspect, Stats, Summary};
use super::{Classes, CpuSample, IncludeExclude, container_name, parse_image};

pub struct BaseTags<'a> {
    pub engine_host: &'a str,
    pub server_version: &'a str,
}

pub struct StatsOptions {
    pub perdevice: Classes,
    pub total: Classes,
}

/// Counters as Telegraf writes them by default: signed integers (saturating).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn metric(acc: &Accumulator, name: &str, tags: &[(String, String)], kind: ValueType) -> Metric {
    let mut m = Metric::new(name, acc.time()).with_kind(kind);
    for (k, v) in tags {
        m.add_tag(k.as_str(), v.as_str());
    }
    m
}

/// `docker`: the engine's counts and memory.
pub fn engine(acc: &mut Accumulator, info: &Info) {
    let tags = [
        ("engine_host".to_string(), info.name.clone()),
        ("server_version".to_string(), info.server_version.clone()),
    ];
    let mut m = metric(acc, "docker", &tags, ValueType::Gauge);
    for (k, v) in [
        ("n_cpus", info.ncpu),
        ("n_used_file_descriptors", info.n_fd),
        ("n_containers", info.containers),
        ("n_containers_running", info.containers_running),
        ("n_containers_stopped", info.containers_stopped),
        ("n_containers_paused", info.containers_paused),
        ("n_images", info.images),
        ("n_goroutines", info.n_goroutines),
        ("n_listener_events", info.n_events_listener),
    ] {
        m.add_field(k, v);
    }
    acc.add(m);
    let mut m = metric(acc, "docker", &tags, ValueType::Gauge);
    m.add_field("memory_total", info.mem_total);
    acc.add(m);
}

/// The tags every container measurement carries.
pub fn container_tags(
    base: &BaseTags,
    c: &Summary,
    inspect: &Inspect,
    labels: &IncludeExclude,
    tag_env: &[String],
    source_tag: bool,
) -> Vec<(String, String)> {
    let (image, version) = parse_image(&c.image);
    let mut tags = vec![
        ("engine_host".to_string(), base.engine_host.to_string()),
        (
            "server_version".to_string(),
            base.server_version.to_string(),
        ),
        (
            "container_name".to_string(),
            container_name(&c.names).to_string(),
        ),
        ("container_image".to_string(), image),
        ("container_version".to_string(), version),
    ];
    if source_tag {
        tags.push(("source".into(), c.id.chars().take(12).collect()));
    }
    if let Some(l) = &c.labels {
        for (k, v) in l {
            if labels.matches(k) {
                tags.push((k.clone(), v.clone()));
            }
        }
    }
    if let Some(env) = inspect.config.as_ref().and_then(|c| c.env.as_ref()) {
        for want in tag_env {
            for e in env {
                if let Some((k, v)) = e.split_once('=')
                    && k == want
                    && !v.trim().is_empty()
                {
                    tags.push((k.to_string(), v.to_string()));
                }
            }
        }
    }
    if let Some(s) = &inspect.state {
        tags.push(("container_status".into(), s.status.clone()));
    }
    tags
}

/// A Docker time, or None for Go's zero time ("0001-01-01T00:00:00Z") and garbage.
fn time_ns(s: &str) -> Option<i64> {
    if s.starts_with("0001-01-01") {
        return None;
    }
    crate::codec::json::parse_rfc3339(s)
}

/// `docker_container_status` and, with a HEALTHCHECK, `docker_container_health`.
pub fn status(acc: &mut Accumulator, tags: &[(String, String)], c: &Summary, inspect: &Inspect) {
    let Some(state) = &inspect.state else { return };
    let now = crate::model::now_ns();
    let mut m = metric(acc, "docker_container_status", tags, ValueType::Gauge);
    m.add_field("container_id", c.id.as_str());
    m.add_field("oomkilled", state.oom_killed);
    m.add_field("pid", state.pid);
    m.add_field("exitcode", state.exit_code);
    m.add_field("restart_count", inspect.restart_count);
    let finished = match time_ns(&state.finished_at) {
        Some(f) => {
            m.add_field("finished_at", f);
            f
        }
        None => now,
    };
    if let Some(started) = time_ns(&state.started_at) {
        m.add_field("started_at", started);
        let uptime = if finished < started {
            now - started
        } else {
            finished - started
        };
        m.add_field("uptime_ns", uptime);
    }
    acc.add(m);
    if let Some(h) = &state.health {
        let mut m = metric(acc, "docker_container_health", tags, ValueType::Gauge);
        m.add_field("health_status", h.status.as_str());
        m.add_field("failing_streak", h.failing_streak);
        acc.add(m);
    }
}

/// The keys of `memory_stats.stats` Telegraf copies as fields (cgroup v1 has them all; v2
/// only some: active_anon, active_file, inactive_anon, inactive_file, pgfault, pgmajfault,
/// unevictable, ...).
const MEM_KEYS: &[&str] = &[
    "active_anon",
    "active_file",
    "cache",
    "hierarchical_memory_limit",
    "inactive_anon",
    "inactive_file",
    "mapped_file",
    "pgfault",
    "pgmajfault",
    "pgpgin",
    "pgpgout",
    "rss",
    "rss_huge",
    "total_active_anon",
    "total_active_file",
    "total_cache",
    "total_inactive_anon",
    "total_inactive_file",
    "total_mapped_file",
    "total_pgfault",
    "total_pgmajfault",
    "total_pgpgin",
    "total_pgpgout",
    "total_rss",
    "total_rss_huge",
    "total_unevictable",
    "total_writeback",
    "unevictable",
    "writeback",
];

/// Memory in use without the page cache, as `docker stats` computes it: usage minus
/// `total_inactive_file` (cgroup v1) or `inactive_file` (cgroup v2).
pub fn mem_usage_no_cache(mem: &api::MemStats) -> u64 {
    let usage = mem.usage.unwrap_or(0);
    let Some(stats) = mem.stats.as_ref() else {
        return usage;
    };
    if let Some(&v) = stats.get("total_inactive_file")
        && v < usage
    {
        return usage - v;
    }
    match stats.get("inactive_file") {
        Some(&v) if v < usage => usage - v,
        _ => usage,
    }
}

/// CPU percent as `docker stats` computes it, between two samples of the same container.
pub fn cpu_percent(prev: CpuSample, cur: CpuSample, online_cpus: u32) -> f64 {
    let cpu = cur.total as f64 - prev.total as f64;
    let sys = cur.system as f64 - prev.system as f64;
    if sys > 0.0 && cpu > 0.0 {
        cpu / sys * f64::from(online_cpus) * 100.0
    } else {
        0.0
    }
}

/// The stats measurements of one container; returns its CPU sample for the next gather.
pub fn stats(
    acc: &mut Accumulator,
    tags: &[(String, String)],
    id: &str,
    s: &Stats,
    prev: Option<CpuSample>,
    opts: &StatsOptions,
) -> Option<CpuSample> {
    // A stopped container's stats come back empty (zero read time, no usage).
    if s.read.starts_with("0001-01-01") && s.memory_stats.usage.is_none() {
        return None;
    }
    // memory
    let mem = &s.memory_stats;
    let mut m = metric(acc, "docker_container_mem", tags, ValueType::Gauge);
    m.add_field("container_id", id);
    if let Some(st) = &mem.stats {
        for k in MEM_KEYS {
            if let Some(&v) = st.get(*k) {
                m.add_field(*k, int(v));
            }
        }
    }
    if let Some(f) = mem.failcnt
        && f != 0
    {
        m.add_field("fail_count", int(f));
    }
    let limit = mem.limit.unwrap_or(0);
    m.add_field("limit", int(limit));
    if let Some(max) = mem.max_usage {
        m.add_field("max_usage", int(max));
    }
    let usage = mem_usage_no_cache(mem);
    m.add_field("usage", int(usage));
    let pct = if limit != 0 {
        usage as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    m.add_field("usage_percent", pct);
    acc.add(m);

    // cpu
    let cpu = &s.cpu_stats;
    let sample = cpu.system_cpu_usage.map(|system| CpuSample {
        total: cpu.cpu_usage.total_usage,
        system,
    });
    let percpu = cpu.cpu_usage.percpu_usage.as_deref().unwrap_or(&[]);
    let online = if cpu.online_cpus > 0 {
        cpu.online_cpus
    } else {
        percpu.len() as u32
    };
    if opts.total.cpu {
        let mut tags = tags.to_vec();
        tags.push(("cpu".into(), "cpu-total".into()));
        let mut m = metric(acc, "docker_container_cpu", &tags, ValueType::Gauge);
        m.add_field("container_id", id);
        m.add_field("usage_total", int(cpu.cpu_usage.total_usage));
        m.add_field("usage_in_usermode", int(cpu.cpu_usage.usage_in_usermode));
        m.add_field(
            "usage_in_kernelmode",
            int(cpu.cpu_usage.usage_in_kernelmode),
        );
        m.add_field("usage_system", int(cpu.system_cpu_usage.unwrap_or(0)));
        m.add_field("throttling_periods", int(cpu.throttling_data.periods));
        m.add_field(
            "throttling_throttled_periods",
            int(cpu.throttling_data.throttled_periods),
        );
        m.add_field(
            "throttling_throttled_time",
            int(cpu.throttling_data.throttled_time),
        );
        if let (Some(p), Some(c)) = (prev, sample) {
            m.add_field("usage_percent", cpu_percent(p, c, online));
        }
        acc.add(m);
    }
    if opts.perdevice.cpu && !percpu.is_empty() {
        let n = if cpu.online_cpus > 0 {
            (cpu.online_cpus as usize).min(percpu.len())
        } else {
            percpu.len()
        };
        for (i, v) in percpu[..n].iter().enumerate() {
            let mut tags = tags.to_vec();
            tags.push(("cpu".into(), format!("cpu{i}")));
            let mut m = metric(acc, "docker_container_cpu", &tags, ValueType::Gauge);
            m.add_field("container_id", id);
            m.add_field("usage_total", int(*v));
            acc.add(m);
        }
    }

    // network
    if let Some(nets) = &s.networks {
        let mut total = [0u64; 8];
        for (name, n) in nets {
            let vals = [
                n.rx_dropped,
                n.rx_bytes,
                n.rx_errors,
                n.tx_packets,
                n.tx_dropped,
                n.rx_packets,
                n.tx_errors,
                n.tx_bytes,
            ];
            for (t, v) in total.iter_mut().zip(vals) {
                *t = t.wrapping_add(v);
            }
            if opts.perdevice.network {
                let mut tags = tags.to_vec();
                tags.push(("network".into(), name.clone()));
                acc.add(net_metric(acc, &tags, id, vals));
            }
        }
        if opts.total.network && !nets.is_empty() {
            let mut tags = tags.to_vec();
            tags.push(("network".into(), "total".into()));
            acc.add(net_metric(acc, &tags, id, total));
        }
    }

    // block I/O
    blkio(acc, tags, id, &s.blkio_stats, opts);
    sample
}

const NET_FIELDS: [&str; 8] = [
    "rx_dropped",
    "rx_bytes",
    "rx_errors",
    "tx_packets",
    "tx_dropped",
    "rx_packets",
    "tx_errors",
    "tx_bytes",
];

fn net_metric(acc: &Accumulator, tags: &[(String, String)], id: &str, vals: [u64; 8]) -> Metric {
    let mut m = metric(acc, "docker_container_net", tags, ValueType::Gauge);
    m.add_field("container_id", id);
    for (k, v) in NET_FIELDS.iter().zip(vals) {
        m.add_field(*k, int(v));
    }
    m
}

fn blkio(
    acc: &mut Accumulator,
    tags: &[(String, String)],
    id: &str,
    b: &api::Blkio,
    opts: &StatsOptions,
) {
    // device -> (field, value), in first-seen device order
    let mut devices: Vec<(String, Vec<(String, u64)>)> = Vec::new();
    let lists: [(&Option<Vec<api::BlkEntry>>, &str, bool); 8] = [
        (
            &b.io_service_bytes_recursive,
            "io_service_bytes_recursive_",
            true,
        ),
        (&b.io_serviced_recursive, "io_serviced_recursive_", true),
        (&b.io_queue_recursive, "io_queue_recursive_", true),
        (
            &b.io_service_time_recursive,
            "io_service_time_recursive_",
            true,
        ),
        (&b.io_wait_time_recursive, "io_wait_time_", true),
        (&b.io_merged_recursive, "io_merged_recursive_", true),
        (&b.io_time_recursive, "io_time_recursive", false),
        (&b.sectors_recursive, "sectors_recursive", false),
    ];
    for (list, prefix, with_op) in lists {
        for e in list.iter().flatten() {
            let dev = format!("{}:{}", e.major, e.minor);
            let field = if with_op {
                format!("{prefix}{}", e.op.to_ascii_lowercase())
            } else {
                prefix.to_string()
            };
            let slot = match devices.iter().position(|(d, _)| *d == dev) {
                Some(i) => i,
                None => {
                    devices.push((dev, Vec::new()));
                    devices.len() - 1
                }
            };
            let fields = &mut devices[slot].1;
            match fields.iter_mut().find(|(f, _)| *f == field) {
                Some(x) => x.1 = e.value,
                None => fields.push((field, e.value)),
            }
        }
    }
    let mut total: Vec<(String, u64)> = Vec::new();
    for (dev, fields) in &devices {
        if opts.perdevice.blkio {
            let mut tags = tags.to_vec();
            tags.push(("device".into(), dev.clone()));
            let mut m = metric(acc, "docker_container_blkio", &tags, ValueType::Gauge);
            m.add_field("container_id", id);
            for (k, v) in fields {
                m.add_field(k.as_str(), int(*v));
            }
            acc.add(m);
        }
        for (k, v) in fields {
            match total.iter_mut().find(|(f, _)| f == k) {
                Some(x) => x.1 = x.1.wrapping_add(*v),
                None => total.push((k.clone(), *v)),
            }
        }
    }
    if opts.total.blkio {
        let mut tags = tags.to_vec();
        tags.push(("device".into(), "total".into()));
        let mut m = metric(acc, "docker_container_blkio", &tags, ValueType::Gauge);
        m.add_field("container_id", id);
        for (k, v) in &total {
            m.add_field(k.as_str(), int(*v));
        }
        acc.add(m);
    }
}

/// `docker_swarm`: desired and running tasks per service.
pub fn swarm(acc: &mut Accumulator, services: &[api::Service], tasks: &[api::Task]) {
    for s in services {
        let running = tasks
            .iter()
            .filter(|t| t.service_id == s.id && t.status.state == "running")
            .count() as i64;
        let not_shutdown = tasks
            .iter()
            .filter(|t| t.service_id == s.id && t.desired_state != "shutdown")
            .count() as i64;
        let mode = &s.spec.mode;
        let tags = |m: &str| {
            vec![
                ("service_id".to_string(), s.id.clone()),
                ("service_name".to_string(), s.spec.name.clone()),
                ("service_mode".to_string(), m.to_string()),
            ]
        };
        let mut m;
        if let Some(r) = mode.get("Replicated").and_then(|r| r.get("Replicas")) {
            m = metric(acc, "docker_swarm", &tags("replicated"), ValueType::Gauge);
            m.add_field("tasks_running", running);
            m.add_field("tasks_desired", r.as_i64().unwrap_or(0));
        } else if mode.get("Global").is_some() {
            m = metric(acc, "docker_swarm", &tags("global"), ValueType::Gauge);
            m.add_field("tasks_running", running);
            m.add_field("tasks_desired", not_shutdown);
        } else if let Some(j) = mode.get("ReplicatedJob") {
            m = metric(
                acc,
                "docker_swarm",
                &tags("replicated_job"),
                ValueType::Gauge,
            );
            m.add_field("tasks_running", running);
            if let Some(v) = j.get("MaxConcurrent").and_then(|v| v.as_i64()) {
                m.add_field("max_concurrent", v);
            }
            if let Some(v) = j.get("TotalCompletions").and_then(|v| v.as_i64()) {
                m.add_field("total_completions", v);
            }
        } else if mode.get("GlobalJob").is_some() {
            m = metric(acc, "docker_swarm", &tags("global_job"), ValueType::Gauge);
            m.add_field("tasks_running", running);
        } else {
            acc.add_error(format!(
                "docker: service {}: unknown mode {mode}",
                s.spec.name
            ));
            continue;
        }
        acc.add(m);
    }
}

/// `docker_disk_usage`: layers, and the selected containers, images and volumes.
pub fn disk_usage(
    acc: &mut Accumulator,
    base: &BaseTags,
    du: &api::DiskUsage,
    (containers, images, volumes): (bool, bool, bool),
    source_tag: bool,
) {
    let tags = vec![
        ("engine_host".to_string(), base.engine_host.to_string()),
        (
            "server_version".to_string(),
            base.server_version.to_string(),
        ),
    ];
    let mut m = metric(acc, "docker_disk_usage", &tags, ValueType::Gauge);
    m.add_field("layers_size", du.layers_size);
    acc.add(m);
    if containers {
        for c in du.containers.iter().flatten() {
            let (image, version) = parse_image(&c.image);
            let mut t = tags.clone();
            t.push(("container_name".into(), container_name(&c.names).into()));
            t.push(("container_image".into(), image));
            t.push(("container_version".into(), version));
            if source_tag {
                t.push(("source".into(), c.id.chars().take(12).collect()));
            }
            let mut m = metric(acc, "docker_disk_usage", &t, ValueType::Gauge);
            m.add_field("size_rw", c.size_rw);
            m.add_field("size_root_fs", c.size_root_fs);
            acc.add(m);
        }
    }
    if images {
        for i in du.images.iter().flatten() {
            let mut t = tags.clone();
            let short: String =
                i.id.strip_prefix("sha256:")
                    .unwrap_or(&i.id)
                    .chars()
                    .take(12)
                    .collect();
            t.push(("image_id".into(), short));
            if let Some(first) = i.repo_tags.as_ref().and_then(|r| r.first()) {
                let (name, version) = parse_image(first);
                t.push(("image_name".into(), name));
                t.push(("image_version".into(), version));
            }
            let mut m = metric(acc, "docker_disk_usage", &t, ValueType::Gauge);
            m.add_field("size", i.size);
            m.add_field("shared_size", i.shared_size);
            acc.add(m);
        }
    }
    if volumes {
        for v in du.volumes.iter().flatten() {
            let mut t = tags.clone();
            t.push(("volume_name".into(), v.name.clone()));
            let mut m = metric(acc, "docker_disk_usage", &t, ValueType::Gauge);
            m.add_field("size", v.usage_data.as_ref().map_or(0, |u| u.size));
            acc.add(m);
        }
    }
}
