//! The few Docker Engine API calls the input makes, and the JSON shapes it reads.
//!
//! The client is reqwest, the HTTP client sonde already ships (hyper underneath), pointed at
//! the engine's unix socket with `ClientBuilder::unix_socket`, or at `tcp://` with the shared
//! TLS options. Paths are unversioned, so the engine answers with its own API version; the
//! version is read once from `/version` to decide whether `one-shot` stats are available.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::common::http::{ClientOptions, TlsClientConfig, build_client, error_chain};

/// A client for one engine.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `http://docker` for a unix socket (the host is not used), `http(s)://host:port` for TCP.
    base: String,
}

/// Where the engine is.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp { authority: String },
}

/// Parses `unix:///path` or `tcp://host:port` (Telegraf's forms; `DOCKER_HOST`'s too).
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(format!("{s:?}: a unix endpoint needs an absolute path"));
        }
        return Ok(Endpoint::Unix(path.into()));
    }
    if let Some(rest) = s.strip_prefix("tcp://") {
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("{s:?}: expected tcp://host:port"));
        }
        return Ok(Endpoint::Tcp {
            authority: authority.to_string(),
        });
    }
    Err(format!(
        "{s:?}: expected unix:///path, tcp://host:port or ENV"
    ))
}

impl Api {
    /// `max_idle` connections are kept between gathers (one per concurrent request).
    pub fn new(
        endpoint: &Endpoint,
        tls: &TlsClientConfig,
        use_tls: bool,
        timeout: Duration,
        max_idle: usize,
    ) -> Result<Api, crate::registry::BuildError> {
        match endpoint {
            Endpoint::Unix(path) => {
                crate::common::http::install_crypto_provider();
                let client = reqwest::Client::builder()
                    .unix_socket(path.as_path())
                    .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(timeout)
                    .pool_max_idle_per_host(max_idle)
                    .build()
                    .map_err(|e| anyhow::anyhow!("building the Docker client: {e}"))?;
                Ok(Api {
                    client,
                    base: "http://docker".into(),
                })
            }
            Endpoint::Tcp { authority } => {
                let client = build_client(&ClientOptions {
                    timeout,
                    idle_conn_timeout: None,
                    tls,
                })?;
                let scheme = if use_tls { "https" } else { "http" };
                Ok(Api {
                    client,
                    base: format!("{scheme}://{authority}"),
                })
            }
        }
    }

    /// GET `path` and decode the JSON answer; a non-2xx answer is an error with the engine's
    /// message.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.get_bytes(path).await?;
        serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("{path}: bad JSON: {e}"))
    }

    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {}", error_chain(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {}", error_chain(&e)))?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct Msg {
                message: String,
            }
            let msg = serde_json::from_slice::<Msg>(&body)
                .map(|m| m.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
            anyhow::bail!("{path}: engine answered {status}: {msg}");
        }
        Ok(body)
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct Version {
    pub api_version: String,
    pub version: String,
}

/// Parses "1.41" into (1, 41).
pub fn api_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct Info {
    pub name: String,
    pub server_version: String,
    #[serde(rename = "NCPU")]
    pub ncpu: i64,
    pub n_fd: i64,
    pub containers: i64,
    pub containers_running: i64,
    pub containers_stopped: i64,
    pub containers_paused: i64,
    pub images: i64,
    pub n_goroutines: i64,
    pub n_events_listener: i64,
    pub mem_total: i64,
    pub driver_status: Option<Vec<Vec<String>>>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct Summary {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub state: String,
    pub status: String,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct Inspect {
    pub state: Option<InspectState>,
    pub restart_count: i64,
    pub config: Option<InspectConfig>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct InspectState {
    pub status: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub started_at: String,
    pub finished_at: String,
    pub health: Option<Health>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub struct InspectConfig {
    pub env: Option<Vec<String>>,
}

/// One answer of `/containers/ID/stats` (Linux shape; cgroup v1 and v2 differ in the keys of
/// `memory_stats.stats` and in which blkio lists are filled).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct Stats {
    pub read: String,
    pub cpu_stats: CpuStats,
    pub memory_stats: MemStats,
    pub networks: Option<BTreeMap<String, NetStats>>,
    pub blkio_stats: Blkio,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    pub system_cpu_usage: Option<u64>,
    pub online_cpus: u32,
    pub throttling_data: Throttling,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct CpuUsage {
    pub total_usage: u64,
    pub percpu_usage: Option<Vec<u64>>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct MemStats {
    pub usage: Option<u64>,
    pub max_usage: Option<u64>,
    pub stats: Option<BTreeMap<String, u64>>,
    pub failcnt: Option<u64>,
    pub limit: Option<u64>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct NetStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct Blkio {
    pub io_service_bytes_recursive: Option<Vec<BlkEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkEntry>>,
    pub io_queue_recursive: Option<Vec<BlkEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkEntry>>,
    pub io_merged_recursive: Option<Vec<BlkEntry>>,
    pub io_time_recursive: Option<Vec<BlkEntry>>,
    pub sectors_recursive: Option<Vec<BlkEntry>>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct BlkEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// One entry of `/events` (only what the inspection cache needs).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
}

/// `/system/df` (API 1.42+; `type=` selects the objects).
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct DiskUsage {
    pub layers_size: i64,
    pub containers: Option<Vec<DfContainer>>,
    pub images: Option<Vec<DfImage>>,
    pub volumes: Option<Vec<DfVolume>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct DfContainer {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    pub size_rw: i64,
    pub size_root_fs: i64,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct DfImage {
    pub id: String,
    pub repo_tags: Option<Vec<String>>,
    pub size: i64,
    pub shared_size: i64,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct DfVolume {
    pub name: String,
    pub usage_data: Option<VolumeUsage>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeUsage {
    pub size: i64,
}

/// Swarm services and tasks (only what `docker_swarm` needs).
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub spec: ServiceSpec,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceSpec {
    pub name: String,
    pub mode: serde_json::Value,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub desired_state: String,
    pub status: TaskStatus,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskStatus {
    pub state: String,
}
