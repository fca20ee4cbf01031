//! `inputs.apache`: reads mod_status's machine-readable page (`/server-status?auto`) from
//! each URL, concurrently, as Telegraf's plugin does: every `key: value` line with a numeric
//! value is a float field (spaces removed from the key), and the scoreboard is counted into
//! the eleven `scboard_*` fields.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::http::{ClientOptions, TlsClientConfig, build_client, error_chain};
use crate::config_types::Duration;
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

const DEFAULT_URL: &str = "http://localhost/server-status?auto";
/// Largest status page read (a scoreboard of 20,000 slots is ~25 kB).
const MAX_BODY: usize = 4 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    urls: Vec<String>,
    username: String,
    password: String,
    response_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urls: vec![DEFAULT_URL.into()],
            username: String::new(),
            password: String::new(),
            response_timeout: Duration::from_secs(5),
        }
    }
}

pub struct Apache {
    targets: Vec<Target>,
    client: reqwest::Client,
    auth: Option<(String, String)>,
}

struct Target {
    url: reqwest::Url,
    /// The URL without credentials, for messages.
    shown: String,
    server: String,
    port: String,
}

/// The scoreboard characters and their fields, in Telegraf's order.
const SCOREBOARD: [(u8, &str); 11] = [
    (b'_', "scboard_waiting"),
    (b'S', "scboard_starting"),
    (b'R', "scboard_reading"),
    (b'W', "scboard_sending"),
    (b'K', "scboard_keepalive"),
    (b'D', "scboard_dnslookup"),
    (b'C', "scboard_closing"),
    (b'L', "scboard_logging"),
    (b'G', "scboard_finishing"),
    (b'I', "scboard_idle_cleanup"),
    (b'.', "scboard_open"),
];

/// Parses a `?auto` page into fields, in page order. A page without the lines every mod_status
/// page has (`Scoreboard`, `BusyWorkers`) is refused.
pub fn parse_status(body: &str) -> Result<Vec<(String, f64)>, String> {
    let mut fields = Vec::new();
    let mut seen_status = false;
    for line in body.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key: String = key.chars().filter(|c| *c != ' ').collect();
        let value = value.trim();
        if key == "Scoreboard" {
            seen_status = true;
            let mut counts = [0u64; 11];
            for b in value.bytes() {
                if let Some(i) = SCOREBOARD.iter().position(|(c, _)| *c == b) {
                    counts[i] += 1;
                }
            }
            for (i, (_, name)) in SCOREBOARD.iter().enumerate() {
                fields.push(((*name).to_string(), counts[i] as f64));
            }
            continue;
        }
        if key == "BusyWorkers" {
            seen_status = true;
        }
        // Go's ParseFloat: no "inf"/"nan" words from a status page in practice, but refuse
        // them like any other text.
        if let Ok(v) = value.parse::<f64>()
            && v.is_finite()
        {
            fields.push((key, v));
        }
    }
    if !seen_status {
        let hint = if body.trim_start().starts_with('<') {
            " (an HTML page: add ?auto to the URL)"
        } else {
            ""
        };
        return Err(format!(
            "not mod_status output: no Scoreboard or BusyWorkers line{hint}"
        ));
    }
    Ok(fields)
}

async fn fetch(
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Option<(String, String)>,
) -> Result<String, String> {
    let mut req = client.get(url);
    if let Some((u, p)) = &auth {
        req = req.basic_auth(u, Some(p));
    }
    let mut resp = req.send().await.map_err(|e| error_chain(&e))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("server answered {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("status page larger than {MAX_BODY} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| "status page is not UTF-8 text".to_string())
}

#[async_trait]
impl Input for Apache {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let (client, url, auth) = (self.client.clone(), t.url.clone(), self.auth.clone());
            tasks.spawn(async move { (i, fetch(client, url, auth).await) });
        }
        let mut results: Vec<_> = tasks.join_all().await;
        results.sort_by_key(|(i, _)| *i);
        for (i, res) in results {
            let t = &self.targets[i];
            match res.and_then(|body| parse_status(&body)) {
                Ok(fields) => {
                    let mut m = Metric::new("apache", acc.time()).with_kind(ValueType::Untyped);
                    m.add_tag("server", t.server.as_str());
                    m.add_tag("port", t.port.as_str());
                    for (k, v) in fields {
                        m.add_field(k, v);
                    }
                    acc.add(m);
                }
                Err(e) => acc.add_error(format!("{}: {e}", t.shown)),
            }
        }
        Ok(())
    }
}

fn target(u: &str) -> Result<Target, String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("{u:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{u:?} is not an http(s):// URL"));
    }
    let host = url.host_str().unwrap_or("");
    let server = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_string();
    let port = match url.port() {
        Some(p) => p.to_string(),
        None if url.scheme() == "https" => "443".into(),
        None => "80".into(),
    };
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    Ok(Target {
        shown: shown.to_string(),
        url,
        server,
        port,
    })
}

fn build(mut table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    let bad =
        |path: Vec<String>, message: String| BuildError::Config(ConfigError { path, message });
    let urls = if cfg.urls.is_empty() {
        vec![DEFAULT_URL.to_string()]
    } else {
        cfg.urls
    };
    let mut targets = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        targets.push(target(u).map_err(|e| bad(vec!["urls".into(), i.to_string()], e))?);
    }
    // Telegraf: a timeout under one second means the default, 5s.
    let timeout = if cfg.response_timeout.get() < StdDuration::from_secs(1) {
        StdDuration::from_secs(5)
    } else {
        cfg.response_timeout.get()
    };
    let client = build_client(&ClientOptions {
        timeout,
        idle_conn_timeout: None,
        tls: &tls,
    })?;
    let auth = (!cfg.username.is_empty()).then_some((cfg.username, cfg.password));
    Ok(InputPlugin::Polled(Box::new(Apache {
        targets,
        client,
        auth,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "apache",
    description: "Read Apache httpd status from mod_status (server-status?auto)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "127.0.0.1\nServerVersion: Apache/2.4.62 (Debian)\nServerMPM: event\n\
        Server Built: 2024-01-01T00:00:00\nCurrentTime: Monday, 01-Dec-2026 17:00:00 UTC\n\
        ServerUptimeSeconds: 120\nLoad1: 0.25\nTotal Accesses: 17\nTotal kBytes: 9\n\
        Total Duration: 42\nCPUUser: .5\nCPULoad: .416667\nReqPerSec: .141667\n\
        DurationPerReq: 2.47059\nBusyWorkers: 1\nIdleWorkers: 4\nProcesses: 1\nStopping: 0\n\
        ConnsTotal: 1\nConnsAsyncWriting: 0\nCacheSharedMemory: 512000\n\
        Scoreboard: _W_K_.....R\nTLSSessionCacheStatus\nCacheType: SHMCB\n";

    #[test]
    fn parses_every_numeric_line_and_the_scoreboard() {
        let f = parse_status(PAGE).unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("TotalAccesses"), Some(17.0));
        assert_eq!(get("TotalkBytes"), Some(9.0));
        assert_eq!(get("CPUUser"), Some(0.5));
        assert_eq!(get("DurationPerReq"), Some(2.47059));
        assert_eq!(get("Processes"), Some(1.0));
        assert_eq!(get("Stopping"), Some(0.0));
        assert_eq!(get("CacheSharedMemory"), Some(512000.0));
        assert_eq!(get("ServerVersion"), None);
        assert_eq!(get("CacheType"), None);
        assert_eq!(get("scboard_waiting"), Some(3.0));
        assert_eq!(get("scboard_sending"), Some(1.0));
        assert_eq!(get("scboard_keepalive"), Some(1.0));
        assert_eq!(get("scboard_open"), Some(5.0));
        assert_eq!(get("scboard_reading"), Some(1.0));
        assert_eq!(get("scboard_idle_cleanup"), Some(0.0));
        let sum: f64 = f
            .iter()
            .filter(|(k, _)| k.starts_with("scboard_"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(sum, 11.0);
    }

    #[test]
    fn refuses_pages_that_are_not_mod_status() {
        let e = parse_status("<html><body>It works</body></html>").unwrap_err();
        assert!(e.contains("not mod_status") && e.contains("?auto"), "{e}");
        assert!(parse_status("hello: 1\n").is_err());
        assert!(parse_status("").is_err());
    }

    #[test]
    fn tags_and_urls() {
        let t = target("http://u:p@web.example/server-status?auto").unwrap();
        assert_eq!((t.server.as_str(), t.port.as_str()), ("web.example", "80"));
        assert!(!t.shown.contains(":p@"));
        let t = target("https://[::1]/server-status?auto").unwrap();
        assert_eq!((t.server.as_str(), t.port.as_str()), ("::1", "443"));
        let t = target("http://127.0.0.1:8080/s?auto").unwrap();
        assert_eq!(t.port, "8080");
        assert!(target("ftp://x/").is_err());
        assert!(
            build(
                toml::from_str("urls = ['nope']").unwrap(),
                &BuildContext::default()
            )
            .is_err()
        );
        assert!(build(toml::Table::new(), &BuildContext::default()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = parse_status(&s);
        }
    }
}
