//! `inputs.docker`: per-container CPU, memory, network, block I/O, health and status from the
//! Docker Engine API, with Telegraf's measurement, tag and field names.
//!
//! What makes it fast with many containers: stats are asked for with `one-shot=true` (no second
//! sample inside the engine), CPU percent is computed against the previous gather's sample of
//! the same container, inspections are cached by container id and refreshed only when the
//! engine reports a change (its event log since the last gather, or a new state in the list),
//! and all containers are asked for at once (bounded by [`MAX_IN_FLIGHT`]) under one deadline.

mod api;
mod emit;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::http::TlsClientConfig;
use crate::config_types::Duration;
use crate::inputs::host::{compile_globs, config_error, glob_match};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

use api::{Api, Endpoint, Info, Inspect, Stats, Summary};

/// Most stats/inspect requests in flight at once. The engine answers a one-shot stats call on
/// its next collection tick (1 s), so every container must be asked in the same wave: a bound
/// below the container count would cost one tick per wave.
pub const MAX_IN_FLIGHT: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    endpoint: String,
    gather_services: bool,
    source_tag: bool,
    container_name_include: Vec<String>,
    container_name_exclude: Vec<String>,
    container_state_include: Vec<String>,
    container_state_exclude: Vec<String>,
    storage_objects: Vec<String>,
    timeout: Duration,
    podman_cache_ttl: Option<Duration>,
    perdevice_include: Vec<String>,
    total_include: Vec<String>,
    docker_label_include: Vec<String>,
    docker_label_exclude: Vec<String>,
    tag_env: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "unix:///var/run/docker.sock".into(),
            gather_services: false,
            source_tag: false,
            container_name_include: Vec::new(),
            container_name_exclude: Vec::new(),
            container_state_include: Vec::new(),
            container_state_exclude: Vec::new(),
            storage_objects: Vec::new(),
            timeout: Duration(StdDuration::from_secs(5)),
            podman_cache_ttl: None,
            perdevice_include: vec!["cpu".into()],
            total_include: vec!["cpu".into(), "blkio".into(), "network".into()],
            docker_label_include: Vec::new(),
            docker_label_exclude: Vec::new(),
            tag_env: Vec::new(),
        }
    }
}

/// Telegraf's include/exclude filter: everything passes an empty include list.
struct IncludeExclude {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

impl IncludeExclude {
    fn new(key: &str, include: &[String], exclude: &[String]) -> Result<Self, BuildError> {
        Ok(IncludeExclude {
            include: compile_globs(&format!("{key}_include"), include)
                .map_err(|e| config_error(&format!("{key}_include"), e))?,
            exclude: compile_globs(&format!("{key}_exclude"), exclude)
                .map_err(|e| config_error(&format!("{key}_exclude"), e))?,
        })
    }

    fn matches(&self, s: &str) -> bool {
        (self.include.is_empty() || glob_match(&self.include, s)) && !glob_match(&self.exclude, s)
    }
}

/// Which per-device and total metrics to emit.
#[derive(Clone, Copy, Default)]
pub struct Classes {
    pub cpu: bool,
    pub blkio: bool,
    pub network: bool,
}

impl Classes {
    fn parse(key: &str, list: &[String]) -> Result<Self, BuildError> {
        let mut c = Classes::default();
        for (i, v) in list.iter().enumerate() {
            match v.as_str() {
                "cpu" => c.cpu = true,
                "blkio" => c.blkio = true,
                "network" => c.network = true,
                other => {
                    return Err(BuildError::Config(crate::registry::ConfigError {
                        path: vec![key.into(), i.to_string()],
                        message: format!("{other:?}: expected \"cpu\", \"blkio\" or \"network\""),
                    }));
                }
            }
        }
        Ok(c)
    }
}

/// A cached inspection: valid while the container's list entry keeps the same `key`.
struct Cached {
    key: String,
    inspect: Arc<Inspect>,
}

/// The CPU counters of a container's previous sample.
#[derive(Clone, Copy)]
pub struct CpuSample {
    pub total: u64,
    pub system: u64,
}

struct Engine {
    name: String,
    version: String,
    one_shot: bool,
    api_version: String,
}

pub struct Docker {
    api: Api,
    timeout: StdDuration,
    names: IncludeExclude,
    states: IncludeExclude,
    labels: IncludeExclude,
    tag_env: Vec<String>,
    source_tag: bool,
    perdevice: Classes,
    total: Classes,
    gather_services: bool,
    storage: (bool, bool, bool),
    engine: Option<Engine>,
    inspections: HashMap<String, Cached>,
    previous: HashMap<String, CpuSample>,
    /// The engine's clock at the last gather: events after it invalidate inspections.
    events_since: Option<String>,
}

/// What one container's task brings back.
struct Answer {
    idx: usize,
    inspect: Result<Arc<Inspect>, String>,
    fresh: bool,
    stats: Option<Result<Stats, String>>,
}

/// The part of a list entry whose change means the inspection is stale: the state and every
/// parenthesised part of the status text ("(healthy)", "(3)", "(Paused)"), not its clock.
fn change_key(c: &Summary) -> String {
    let mut key = c.state.clone();
    let mut rest = c.status.as_str();
    while let Some(open) = rest.find('(') {
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        key.push('|');
        key.push_str(&rest[open..open + close + 1]);
        rest = &rest[open + close + 1..];
    }
    key
}

/// Telegraf's container name: the first name without a '/' once the leading one is removed.
pub fn container_name(names: &[String]) -> &str {
    names
        .iter()
        .map(|n| n.strip_prefix('/').unwrap_or(n))
        .find(|n| !n.contains('/'))
        .unwrap_or("")
}

/// Telegraf's image name and version ("unknown" when the reference has no tag).
pub fn parse_image(image: &str) -> (String, String) {
    let (domain, rest) = match image.find('/') {
        Some(i) if image[..i].contains(['.', ':']) || &image[..i] == "localhost" => {
            (Some(&image[..i]), &image[i + 1..])
        }
        _ => (None, image),
    };
    let (name, version) = match rest.rfind(':') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "unknown"),
    };
    let name = match domain {
        Some(d) => format!("{d}/{name}"),
        None => name.to_string(),
    };
    (name, version.to_string())
}

impl Docker {
    async fn engine(&mut self) -> anyhow::Result<&Engine> {
        if self.engine.is_none() {
            let v: api::Version = self.api.get("/version").await?;
            self.engine = Some(Engine {
                name: String::new(),
                version: v.version,
                one_shot: api::api_at_least(&v.api_version, 1, 41),
                api_version: v.api_version,
            });
        }
        Ok(self.engine.as_ref().unwrap())
    }

    /// Drops cached inspections of containers the engine reported events for since the last
    /// gather. Without a usable event log, every inspection is dropped.
    async fn apply_events(&mut self, until: &str) {
        let Some(since) = self.events_since.replace(until.to_string()) else {
            return;
        };
        if self.inspections.is_empty() {
            return;
        }
        // filters={"type":["container"]}
        let path = format!(
            "/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22container%22%5D%7D"
        );
        match self.api.get_bytes(&path).await {
            Ok(body) => {
                for line in body.split(|b| *b == b'\n') {
                    if let Ok(ev) = serde_json::from_slice::<api::Event>(line)
                        && (ev.kind.is_empty() || ev.kind == "container")
                    {
                        self.inspections.remove(&ev.actor.id);
                    }
                }
            }
            Err(e) => {
                tracing::debug!("docker: reading events failed, re-inspecting all: {e:#}");
                self.inspections.clear();
            }
        }
    }

    /// The engine's clock as the `since`/`until` form of /events: seconds.nanoseconds.
    fn engine_clock(info_time: &str) -> Option<String> {
        let ns = crate::codec::json::parse_rfc3339(info_time)?;
        Some(format!(
            "{}.{:09}",
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000)
        ))
    }

    async fn gather_all(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let one_shot = self.engine().await?.one_shot;
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct InfoTime {
            #[serde(rename = "SystemTime")]
            system_time: String,
        }
        let info_body = self.api.get_bytes("/info").await?;
        let info: Info = serde_json::from_slice(&info_body)
            .map_err(|e| anyhow::anyhow!("/info: bad JSON: {e}"))?;
        let clock: InfoTime = serde_json::from_slice(&info_body).unwrap_or_default();
        {
            let engine = self.engine.as_mut().unwrap();
            engine.name = info.name.clone();
            engine.version = info.server_version.clone();
        }
        emit::engine(acc, &info);
        if let Some(until) = Self::engine_clock(&clock.system_time) {
            self.apply_events(&until).await;
        } else {
            self.inspections.clear();
        }

        if self.gather_services
            && let Err(e) = self.services(acc).await
        {
            acc.add_error(format!("docker: gathering swarm services: {e:#}"));
        }

        let list: Vec<Summary> = self.api.get("/containers/json?all=1").await?;
        let selected: Vec<Summary> = list
            .into_iter()
            .filter(|c| {
                let name = container_name(&c.names);
                !name.is_empty() && self.names.matches(name) && self.states.matches(&c.state)
            })
            .collect();
        let seen: HashSet<&str> = selected.iter().map(|c| c.id.as_str()).collect();
        self.inspections.retain(|id, _| seen.contains(id.as_str()));
        self.previous.retain(|id, _| seen.contains(id.as_str()));

        // Ask for every container at once, bounded, under the gather's one deadline.
        let sem = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut set = tokio::task::JoinSet::new();
        for (idx, c) in selected.iter().enumerate() {
            let key = change_key(c);
            let cached = self
                .inspections
                .get(&c.id)
                .filter(|x| x.key == key)
                .map(|x| x.inspect.clone());
            let want_stats = matches!(c.state.as_str(), "running" | "paused");
            let api = self.api.clone();
            let id = c.id.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let inspect_fut = async {
                    match cached {
                        Some(i) => (Ok(i), false),
                        None => (
                            api.get::<Inspect>(&format!("/containers/{id}/json"))
                                .await
                                .map(Arc::new)
                                .map_err(|e| format!("{e:#}")),
                            true,
                        ),
                    }
                };
                let stats_fut = async {
                    if !want_stats {
                        return None;
                    }
                    let q = if one_shot {
                        "stream=false&one-shot=true"
                    } else {
                        "stream=false"
                    };
                    Some(
                        api.get::<Stats>(&format!("/containers/{id}/stats?{q}"))
                            .await
                            .map_err(|e| format!("{e:#}")),
                    )
                };
                let ((inspect, fresh), stats) = tokio::join!(inspect_fut, stats_fut);
                Answer {
                    idx,
                    inspect,
                    fresh,
                    stats,
                }
            });
        }
        let mut answers: Vec<Option<Answer>> = (0..selected.len()).map(|_| None).collect();
        let mut late = false;
        loop {
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok(a))) => {
                    let i = a.idx;
                    answers[i] = Some(a);
                }
                Ok(Some(Err(e))) => acc.add_error(format!("docker: container task failed: {e}")),
                Ok(None) => break,
                Err(_) => {
                    late = true;
                    set.abort_all();
                    break;
                }
            }
        }
        if late {
            let missing = answers.iter().filter(|a| a.is_none()).count();
            acc.add_error(format!(
                "docker: {missing} of {} container(s) did not answer within the timeout ({:?})",
                selected.len(),
                self.timeout
            ));
        }

        let engine = self.engine.as_ref().unwrap();
        let base = emit::BaseTags {
            engine_host: &engine.name,
            server_version: &engine.version,
        };
        for (c, a) in selected.iter().zip(answers) {
            let Some(a) = a else { continue };
            let inspect = match a.inspect {
                Ok(i) => i,
                Err(e) => {
                    acc.add_error(format!(
                        "docker: inspecting {}: {e}",
                        container_name(&c.names)
                    ));
                    continue;
                }
            };
            if a.fresh {
                self.inspections.insert(
                    c.id.clone(),
                    Cached {
                        key: change_key(c),
                        inspect: inspect.clone(),
                    },
                );
            }
            let tags = emit::container_tags(
                &base,
                c,
                &inspect,
                &self.labels,
                &self.tag_env,
                self.source_tag,
            );
            emit::status(acc, &tags, c, &inspect);
            match a.stats {
                None => {}
                Some(Err(e)) => acc.add_error(format!(
                    "docker: stats of {}: {e}",
                    container_name(&c.names)
                )),
                Some(Ok(stats)) => {
                    let prev = self.previous.get(&c.id).copied();
                    let opts = emit::StatsOptions {
                        perdevice: self.perdevice,
                        total: self.total,
                    };
                    if let Some(sample) = emit::stats(acc, &tags, &c.id, &stats, prev, &opts) {
                        self.previous.insert(c.id.clone(), sample);
                    }
                }
            }
        }

        let (sc, si, sv) = self.storage;
        if (sc || si || sv)
            && let Err(e) = self.disk_usage(acc).await
        {
            acc.add_error(format!("docker: gathering disk usage: {e:#}"));
        }
        Ok(())
    }

    async fn services(&self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let services: Vec<api::Service> = self.api.get("/services").await?;
        if services.is_empty() {
            return Ok(());
        }
        let tasks: Vec<api::Task> = self.api.get("/tasks").await?;
        emit::swarm(acc, &services, &tasks);
        Ok(())
    }

    async fn disk_usage(&self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let engine = self.engine.as_ref().unwrap();
        let (sc, si, sv) = self.storage;
        // `type=` needs API 1.42; older engines answer everything and we pick.
        let path = if api::api_at_least(&engine.api_version, 1, 42) {
            let mut p = String::from("/system/df?");
            for (on, t) in [(sc, "container"), (si, "image"), (sv, "volume")] {
                if on {
                    p.push_str("type=");
                    p.push_str(t);
                    p.push('&');
                }
            }
            p.pop();
            p
        } else {
            "/system/df".to_string()
        };
        let du: api::DiskUsage = self.api.get(&path).await?;
        let base = emit::BaseTags {
            engine_host: &engine.name,
            server_version: &engine.version,
        };
        emit::disk_usage(acc, &base, &du, self.storage, self.source_tag);
        Ok(())
    }
}

#[async_trait]
impl Input for Docker {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let timeout = self.timeout;
        match tokio::time::timeout(
            timeout + StdDuration::from_millis(250),
            self.gather_all(acc),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // The engine may have been restarted or replaced: read its version again.
                self.engine = None;
                self.events_since = None;
                self.inspections.clear();
                Err(e)
            }
            Err(_) => {
                self.engine = None;
                self.events_since = None;
                self.inspections.clear();
                anyhow::bail!("docker: no answer from the engine within {timeout:?}")
            }
        }
    }
}

fn build(mut table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let mut tls = TlsClientConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    let mut use_tls = tls.tls_ca.is_some()
        || tls.tls_cert.is_some()
        || tls.tls_key.is_some()
        || tls.insecure_skip_verify
        || tls.tls_server_name.is_some();
    let endpoint = if cfg.endpoint == "ENV" {
        // Docker's client environment: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH.
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        if let Ok(dir) = std::env::var("DOCKER_CERT_PATH")
            && !dir.is_empty()
        {
            let dir = std::path::PathBuf::from(dir);
            tls.tls_ca.get_or_insert(dir.join("ca.pem"));
            tls.tls_cert.get_or_insert(dir.join("cert.pem"));
            tls.tls_key.get_or_insert(dir.join("key.pem"));
            use_tls = true;
        }
        if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
            use_tls = true;
        }
        api::parse_endpoint(&host)
            .map_err(|e| config_error("endpoint", format!("DOCKER_HOST {e}")))?
    } else {
        api::parse_endpoint(&cfg.endpoint).map_err(|e| config_error("endpoint", e))?
    };
    if use_tls && matches!(endpoint, Endpoint::Unix(_)) {
        tracing::warn!("docker: TLS options have no effect on a unix:// endpoint");
        use_tls = false;
    }
    if cfg.podman_cache_ttl.is_some() {
        tracing::warn!(
            "docker: podman_cache_ttl has no effect: sonde keeps the previous sample of every \
             listed container (Docker or Podman) and forgets it when the container goes"
        );
    }
    let (states_inc, states_exc) =
        if cfg.container_state_include.is_empty() && cfg.container_state_exclude.is_empty() {
            (vec!["running".to_string()], Vec::new())
        } else {
            (
                cfg.container_state_include.clone(),
                cfg.container_state_exclude.clone(),
            )
        };
    let mut storage = (false, false, false);
    for (i, o) in cfg.storage_objects.iter().enumerate() {
        match o.as_str() {
            "container" => storage.0 = true,
            "image" => storage.1 = true,
            "volume" => storage.2 = true,
            other => {
                return Err(BuildError::Config(crate::registry::ConfigError {
                    path: vec!["storage_objects".into(), i.to_string()],
                    message: format!("{other:?}: expected \"container\", \"image\" or \"volume\""),
                }));
            }
        }
    }
    let timeout = if cfg.timeout.is_zero() {
        StdDuration::from_secs(5)
    } else {
        cfg.timeout.get()
    };
    let api = Api::new(&endpoint, &tls, use_tls, timeout, MAX_IN_FLIGHT)?;
    Ok(InputPlugin::Polled(Box::new(Docker {
        api,
        timeout,
        names: IncludeExclude::new(
            "container_name",
            &cfg.container_name_include,
            &cfg.container_name_exclude,
        )?,
        states: IncludeExclude::new("container_state", &states_inc, &states_exc)?,
        labels: IncludeExclude::new(
            "docker_label",
            &cfg.docker_label_include,
            &cfg.docker_label_exclude,
        )?,
        tag_env: cfg.tag_env,
        source_tag: cfg.source_tag,
        perdevice: Classes::parse("perdevice_include", &cfg.perdevice_include)?,
        total: Classes::parse("total_include", &cfg.total_include)?,
        gather_services: cfg.gather_services,
        storage,
        engine: None,
        inspections: HashMap::new(),
        previous: HashMap::new(),
        events_since: None,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "docker",
    description: "Per-container CPU, memory, network, block I/O, health and status from the Docker Engine API",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    fn build_err(text: &str) -> String {
        match build(toml::from_str(text).unwrap(), &BuildContext::default()) {
            Err(BuildError::Config(e)) => format!("{}: {}", e.path.join("."), e.message),
            Err(e) => format!("{e}"),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(build_err(""), "ok");
        // Every option of the sample, uncommented, is accepted.
        let sample: Vec<String> = include_str!("sample.toml")
            .lines()
            .map(|l| l.trim_start().trim_start_matches("# ").to_string())
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .collect();
        assert!(sample.len() >= 17, "{sample:?}");
        assert_eq!(build_err(&sample.join("\n")), "ok");
        assert!(build_err("perdevice_include = ['disk']").starts_with("perdevice_include.0"));
        assert!(build_err("total_include = ['cpu', 'x']").starts_with("total_include.1"));
        assert!(build_err("storage_objects = ['layer']").starts_with("storage_objects.0"));
        assert!(build_err("endpoint = 'http://x'").starts_with("endpoint"));
        assert!(build_err("container_name_include = ['[']").starts_with("container_name_include"));
        assert!(build_err("perdevice = true").contains("perdevice"));
        assert_eq!(
            api::parse_endpoint("tcp://127.0.0.1:2375/").unwrap(),
            Endpoint::Tcp {
                authority: "127.0.0.1:2375".into()
            }
        );
    }

    #[test]
    fn image_and_name_like_telegraf() {
        assert_eq!(parse_image("busybox"), ("busybox".into(), "unknown".into()));
        assert_eq!(parse_image("redis:7"), ("redis".into(), "7".into()));
        assert_eq!(
            parse_image("localhost:5000/a/b:1.2"),
            ("localhost:5000/a/b".into(), "1.2".into())
        );
        assert_eq!(
            parse_image("quay.io/x/y"),
            ("quay.io/x/y".into(), "unknown".into())
        );
        assert_eq!(
            container_name(&["/web/db".into(), "/db".into()]),
            "db",
            "a link name is skipped"
        );
    }

    #[test]
    fn change_key_ignores_the_clock() {
        let s = |state: &str, status: &str| Summary {
            state: state.into(),
            status: status.into(),
            ..Default::default()
        };
        assert_eq!(
            change_key(&s("running", "Up 3 seconds (healthy)")),
            change_key(&s("running", "Up 2 minutes (healthy)"))
        );
        assert_ne!(
            change_key(&s("running", "Up 3 seconds (healthy)")),
            change_key(&s("running", "Up 3 seconds (unhealthy)"))
        );
        assert_ne!(
            change_key(&s("exited", "Exited (0) 1 second ago")),
            change_key(&s("exited", "Exited (3) 1 second ago"))
        );
    }

    fn mem(usage: u64, stats: &[(&str, u64)]) -> api::MemStats {
        api::MemStats {
            usage: Some(usage),
            stats: Some(stats.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn memory_usage_excludes_cache_for_both_cgroup_versions() {
        // cgroup v1: total_inactive_file, even when `cache` is there too.
        let v1 = mem(
            1000,
            &[
                ("cache", 300),
                ("total_inactive_file", 200),
                ("inactive_file", 100),
            ],
        );
        assert_eq!(emit::mem_usage_no_cache(&v1), 800);
        // cgroup v2: inactive_file.
        let v2 = mem(1000, &[("inactive_file", 100), ("anon", 700)]);
        assert_eq!(emit::mem_usage_no_cache(&v2), 900);
        assert_eq!(
            emit::mem_usage_no_cache(&mem(50, &[("inactive_file", 100)])),
            50
        );
    }

    #[test]
    fn cpu_percent_like_docker_stats() {
        let p = CpuSample {
            total: 1_000,
            system: 10_000,
        };
        let c = CpuSample {
            total: 3_000,
            system: 20_000,
        };
        // 2000 of 10000 system ns, 2 CPUs: 40 %.
        assert!((emit::cpu_percent(p, c, 2) - 40.0).abs() < 1e-9);
        // A restarted container (counter went back) is 0, not negative.
        assert_eq!(emit::cpu_percent(c, p, 2), 0.0);
    }

    const V2_STATS: &str = r#"{"read":"2026-01-01T00:00:01.5Z",
      "cpu_stats":{"cpu_usage":{"total_usage":5000,"usage_in_kernelmode":1000,"usage_in_usermode":4000},
        "system_cpu_usage":100000,"online_cpus":4,"throttling_data":{"periods":1,"throttled_periods":0,"throttled_time":0}},
      "memory_stats":{"usage":10000,"stats":{"inactive_file":1000,"active_anon":5000,"anon":6000,"pgfault":7},"limit":100000},
      "networks":{"eth0":{"rx_bytes":10,"rx_packets":1,"tx_bytes":20,"tx_packets":2},
                  "eth1":{"rx_bytes":5,"rx_packets":1,"tx_bytes":0,"tx_packets":0}},
      "blkio_stats":{"io_service_bytes_recursive":[{"major":8,"minor":0,"op":"read","value":4096},{"major":8,"minor":0,"op":"write","value":8192},
        {"major":8,"minor":16,"op":"read","value":1}],"io_serviced_recursive":null}}"#;

    #[test]
    fn cgroup_v2_stats_shape() {
        let s: Stats = serde_json::from_str(V2_STATS).unwrap();
        let mut acc = Accumulator::new(7);
        let opts = emit::StatsOptions {
            perdevice: Classes {
                cpu: true,
                blkio: true,
                network: true,
            },
            total: Classes {
                cpu: true,
                blkio: true,
                network: true,
            },
        };
        let tags = vec![("container_name".to_string(), "c".to_string())];
        let prev = CpuSample {
            total: 4000,
            system: 90000,
        };
        let sample = emit::stats(&mut acc, &tags, "id1", &s, Some(prev), &opts).unwrap();
        assert_eq!((sample.total, sample.system), (5000, 100000));
        let find = |name: &str, tag: Option<(&str, &str)>| {
            acc.metrics
                .iter()
                .find(|m| m.name == name && tag.is_none_or(|(k, v)| m.tag(k) == Some(v)))
                .unwrap_or_else(|| panic!("{name} {tag:?} missing"))
        };
        let m = find("docker_container_mem", None);
        assert_eq!(m.field("usage"), Some(&FieldValue::Int(9000)));
        assert_eq!(m.field("active_anon"), Some(&FieldValue::Int(5000)));
        assert_eq!(m.field("anon"), None, "only Telegraf's keys");
        assert_eq!(m.field("max_usage"), None, "cgroup v2 has none");
        assert_eq!(m.field("usage_percent"), Some(&FieldValue::Float(9.0)));
        let cpu = find("docker_container_cpu", Some(("cpu", "cpu-total")));
        // 1000 / 10000 * 4 CPUs * 100
        assert_eq!(cpu.field("usage_percent"), Some(&FieldValue::Float(40.0)));
        assert!(
            !acc.metrics.iter().any(|m| m.tag("cpu") == Some("cpu0")),
            "cgroup v2 has no per-CPU usage"
        );
        let total = find("docker_container_net", Some(("network", "total")));
        assert_eq!(total.field("rx_bytes"), Some(&FieldValue::Int(15)));
        assert_eq!(total.field("tx_packets"), Some(&FieldValue::Int(2)));
        let d = find("docker_container_blkio", Some(("device", "8:0")));
        assert_eq!(
            d.field("io_service_bytes_recursive_write"),
            Some(&FieldValue::Int(8192))
        );
        let t = find("docker_container_blkio", Some(("device", "total")));
        assert_eq!(
            t.field("io_service_bytes_recursive_read"),
            Some(&FieldValue::Int(4097))
        );
        assert_eq!(
            t.field("container_id"),
            Some(&FieldValue::String("id1".into()))
        );
    }

    #[test]
    fn first_sample_has_no_cpu_percent_and_stopped_stats_emit_nothing() {
        let s: Stats = serde_json::from_str(V2_STATS).unwrap();
        let mut acc = Accumulator::new(7);
        let opts = emit::StatsOptions {
            perdevice: Classes::default(),
            total: Classes {
                cpu: true,
                ..Default::default()
            },
        };
        emit::stats(&mut acc, &[], "id", &s, None, &opts);
        let cpu = acc
            .metrics
            .iter()
            .find(|m| m.name == "docker_container_cpu")
            .unwrap();
        assert_eq!(cpu.field("usage_percent"), None);
        let stopped: Stats =
            serde_json::from_str(r#"{"read":"0001-01-01T00:00:00Z","memory_stats":{}}"#).unwrap();
        let mut acc = Accumulator::new(7);
        assert!(emit::stats(&mut acc, &[], "id", &stopped, None, &opts).is_none());
        assert!(acc.metrics.is_empty());
    }

    #[tokio::test]
    async fn an_absent_engine_is_a_gather_error_not_a_hang() {
        let mut p = match build(
            toml::from_str("endpoint = 'unix:///nonexistent/docker.sock'\ntimeout = '1s'").unwrap(),
            &BuildContext::default(),
        ) {
            Ok(InputPlugin::Polled(p)) => p,
            _ => panic!(),
        };
        let mut acc = Accumulator::new(0);
        let err = p.gather(&mut acc).await.unwrap_err();
        assert!(format!("{err:#}").contains("/version"), "{err:#}");
    }

    proptest::proptest! {
        #[test]
        fn text_helpers_never_panic(s in "\\PC{0,80}") {
            let _ = parse_image(&s);
            let _ = container_name(std::slice::from_ref(&s));
            let _ = change_key(&Summary { state: s.clone(), status: s.clone(), ..Default::default() });
            let _ = serde_json::from_str::<Stats>(&s);
            let _ = api::parse_endpoint(&s);
        }
    }
}
