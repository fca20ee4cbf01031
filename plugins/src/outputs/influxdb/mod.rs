//! `outputs.influxdb`: writes line protocol to InfluxDB 1.x's `/write`.
//!
//! The HTTP half (`common::influx_writer`: failover over `urls`, gzip, answer classification,
//! splitting on 413) is shared with `outputs.influxdb_v2`.

mod udp;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::common::http::TlsClientConfig;
use crate::common::http_client::HttpClientConfig;
use crate::common::influx_writer::{
    Answer, Transport, Writer, default_encoding, default_timeout, outcome, retry, server_message,
    shown_url,
};
use crate::config_types::Duration as Dur;
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, Format, OutputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    urls: Vec<String>,
    /// Telegraf's old single-URL form.
    url: Option<String>,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default)]
    database_tag: String,
    #[serde(default)]
    exclude_database_tag: bool,
    #[serde(default)]
    skip_database_creation: bool,
    #[serde(default)]
    retention_policy: String,
    #[serde(default)]
    retention_policy_tag: String,
    #[serde(default)]
    exclude_retention_policy_tag: bool,
    #[serde(default)]
    write_consistency: String,
    #[serde(default = "default_timeout")]
    timeout: Dur,
    username: Option<String>,
    password: Option<String>,
    user_agent: Option<String>,
    #[serde(default)]
    http_headers: BTreeMap<String, String>,
    #[serde(default = "default_encoding")]
    content_encoding: String,
    #[serde(default)]
    influx_uint_support: bool,
    #[serde(default)]
    influx_omit_timestamp: bool,
    /// Largest UDP datagram, for udp:// URLs.
    udp_payload: Option<crate::config_types::Size>,
}

fn default_database() -> String {
    "telegraf".into()
}

struct InfluxDb {
    writer: Writer,
    database: String,
    database_tag: String,
    retention_policy: String,
    retention_policy_tag: String,
    consistency: String,
    skip_database_creation: bool,
    auth: Option<HeaderValue>,
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl InfluxDb {
    /// `CREATE DATABASE` on the first URL that answers; false when none did.
    async fn create_database(&self, db: &str) -> bool {
        let q = format!(
            "CREATE DATABASE \"{}\"",
            db.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let path = format!("/query?q={}", query_escape(&q));
        let mut ok = false;
        for url in &self.writer.urls {
            let mut req = self.writer.client.client.post(format!("{url}{path}"));
            if let Some(a) = &self.auth {
                req = req.header(reqwest::header::AUTHORIZATION, a.clone());
            }
            match self.writer.client.send(req).await {
                Ok(r) if r.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    tracing::warn!(output = %self.writer.id, url = %shown_url(url), database = %db, "CREATE DATABASE failed: {status}: {}", server_message(&text));
                }
                Err(e) => {
                    tracing::warn!(output = %self.writer.id, url = %shown_url(url), database = %db, "CREATE DATABASE failed: {e}")
                }
            }
        }
        ok
    }

    fn path(&self, db: &str, rp: &str) -> String {
        let mut p = format!("/write?db={}", query_escape(db));
        if !rp.is_empty() {
            p.push_str("&rp=");
            p.push_str(&query_escape(rp));
        }
        if !self.consistency.is_empty() {
            p.push_str("&consistency=");
            p.push_str(&query_escape(&self.consistency));
        }
        p
    }
}

#[async_trait]
impl Output for InfluxDb {
    async fn connect(&mut self) -> anyhow::Result<()> {
        if !self.skip_database_creation {
            // Like Telegraf: a user without admin rights can still write, so only warn.
            let db = self.database.clone();
            self.create_database(&db).await;
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        // Group by (database, retention policy) when tags route them.
        let mut groups: BTreeMap<(&str, &str), Vec<&Metric>> = BTreeMap::new();
        for m in batch {
            let db = (!self.database_tag.is_empty())
                .then(|| m.tag(&self.database_tag))
                .flatten()
                .unwrap_or(&self.database);
            let rp = (!self.retention_policy_tag.is_empty())
                .then(|| m.tag(&self.retention_policy_tag))
                .flatten()
                .unwrap_or(&self.retention_policy);
            groups.entry((db, rp)).or_default().push(m);
        }
        let mut rejected = 0;
        let mut reason = None;
        for ((db, rp), metrics) in groups {
            let path = self.path(db, rp);
            let (n, why) = match self
                .writer
                .send_all(&path, &metrics, self.auth.as_ref())
                .await
            {
                Ok(r) => r,
                Err(Answer::NoDatabase(reason)) => {
                    let created = !self.skip_database_creation && self.create_database(db).await;
                    return Err(WriteError::Retry {
                        reason: if created {
                            format!("{reason} (created it; writing again)")
                        } else {
                            reason
                        },
                        retry_after: created.then_some(Duration::ZERO),
                    });
                }
                Err(stop) => return Err(retry(stop)),
            };
            rejected += n;
            if reason.is_none() {
                reason = why;
            }
        }
        // The agent logs the rejection with this reason, once.
        outcome(batch.len(), rejected, reason)
    }
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let http = HttpClientConfig::take(&mut table, &[&["local_address", "http_proxy"]])?;
    // Parse first so unknown keys are reported before anything else.
    let cfg: Config = parse_config(table)?;
    let mut urls = cfg.urls.clone();
    if let Some(u) = &cfg.url {
        urls.push(u.clone());
    }
    let is_udp = |u: &String| {
        ["udp://", "udp4://", "udp6://"]
            .iter()
            .any(|p| u.to_ascii_lowercase().starts_with(p))
    };
    let udp_urls = urls.iter().filter(|u| is_udp(u)).count();
    if udp_urls > 0 && udp_urls < urls.len() {
        return Err(anyhow::anyhow!(
            "mixing udp:// and http(s):// URLs in one outputs.influxdb is not supported yet; \
             use two outputs"
        )
        .into());
    }
    if udp_urls > 0 {
        return build_udp(&urls, &cfg, &http, ctx);
    }
    if cfg.udp_payload.is_some() {
        tracing::warn!(
            "{}: udp_payload has no effect: it applies to udp:// URLs only",
            ctx.id
        );
    }
    if !["", "any", "one", "quorum", "all"].contains(&cfg.write_consistency.as_str()) {
        return Err(anyhow::anyhow!(
            "write_consistency must be any, one, quorum or all, not {:?}",
            cfg.write_consistency
        )
        .into());
    }
    if cfg.username.is_some() != cfg.password.is_some() {
        return Err(anyhow::anyhow!("username and password must be given together").into());
    }
    let mut writer = Writer::new(
        &tls,
        &http,
        &Transport::default(),
        urls,
        cfg.timeout.get(),
        cfg.user_agent.as_deref(),
        &cfg.http_headers,
        &cfg.content_encoding,
        ctx,
    )?;
    writer.opts.uint_support = cfg.influx_uint_support;
    writer.omit_timestamp = cfg.influx_omit_timestamp;
    if cfg.exclude_database_tag && !cfg.database_tag.is_empty() {
        writer.exclude.push(cfg.database_tag.clone());
    }
    if cfg.exclude_retention_policy_tag && !cfg.retention_policy_tag.is_empty() {
        writer.exclude.push(cfg.retention_policy_tag.clone());
    }
    let auth = match (&cfg.username, &cfg.password) {
        (Some(u), Some(p)) => Some(crate::common::http::basic_auth_header(u, p)),
        _ => None,
    };
    Ok(Box::new(InfluxDb {
        writer,
        database: cfg.database,
        database_tag: cfg.database_tag,
        retention_policy: cfg.retention_policy,
        retention_policy_tag: cfg.retention_policy_tag,
        consistency: cfg.write_consistency,
        skip_database_creation: cfg.skip_database_creation,
        auth,
    }))
}

/// The UDP form: every URL is udp://host:port.
fn build_udp(
    urls: &[String],
    cfg: &Config,
    http: &HttpClientConfig,
    ctx: &BuildContext,
) -> Result<Box<dyn Output>, BuildError> {
    let mut targets = Vec::new();
    for u in urls {
        let parsed = reqwest::Url::parse(u).map_err(|e| anyhow::anyhow!("url {u:?}: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("url {u:?}: no host"))?;
        let port = parsed
            .port()
            .ok_or_else(|| anyhow::anyhow!("url {u:?}: a UDP URL needs a port"))?;
        // host_str keeps an IPv6 address in brackets, as host:port wants it.
        targets.push(format!("{host}:{port}"));
    }
    let payload = cfg.udp_payload.map_or(512, |s| s.0 as usize);
    if payload == 0 {
        return Err(anyhow::anyhow!("udp_payload must be above 0").into());
    }
    let mut out = udp::UdpInfluxDb::new(targets, payload);
    out.opts.uint_support = cfg.influx_uint_support;
    out.omit_timestamp = cfg.influx_omit_timestamp;
    if cfg.exclude_database_tag && !cfg.database_tag.is_empty() {
        out.exclude.push(cfg.database_tag.clone());
    }
    if cfg.exclude_retention_policy_tag && !cfg.retention_policy_tag.is_empty() {
        out.exclude.push(cfg.retention_policy_tag.clone());
    }
    out.local = match &http.local_address {
        Some(a) => crate::common::http_client::parse_local_address(a)
            .map_err(|m| anyhow::anyhow!("local_address: {m}"))?,
        None => None,
    };
    // The HTTP-only options that a UDP output cannot apply say so.
    let http_only = [
        ("username", cfg.username.is_some()),
        ("http_proxy", http.http_proxy.is_some()),
        ("user_agent", cfg.user_agent.is_some()),
        ("http_headers", !cfg.http_headers.is_empty()),
        ("retention_policy", !cfg.retention_policy.is_empty()),
        ("write_consistency", !cfg.write_consistency.is_empty()),
        ("database_tag", !cfg.database_tag.is_empty()),
    ];
    for (key, set) in http_only {
        if set {
            tracing::warn!(
                "{}: {key} has no effect with udp:// URLs (the database is set on the server's \
                 UDP listener)",
                ctx.id
            );
        }
    }
    Ok(Box::new(out))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "influxdb",
    description: "Write metrics to InfluxDB 1.x over HTTP",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::influx_writer::tests::{serve_script, status, with_header};
    use crate::common::server;

    fn build_with(toml_text: &str) -> Box<dyn Output> {
        let t: toml::Table = toml::from_str(toml_text).unwrap();
        build(t, &BuildContext::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn batch() -> Vec<Metric> {
        vec![
            Metric::new("cpu", 1_000_000_000)
                .with_tag("host", "a")
                .with_tag("db", "other")
                .with_field("usage", 1.5)
                .with_field("n", 5u64),
            Metric::new("mem", 2_000_000_000).with_field("free", 3i64),
        ]
    }

    #[tokio::test]
    async fn creates_database_writes_gzip_with_auth_and_routes_by_tag() {
        let (url, seen, _stop) =
            serve_script(|_, _| server::empty(http::StatusCode::NO_CONTENT)).await;
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\ndatabase = \"main\"\ndatabase_tag = \"db\"\nexclude_database_tag = true\n\
             retention_policy = \"week\"\nusername = \"u\"\npassword = \"p\"\nuser_agent = \"ua/1\"\n\
             http_headers = {{ X-Env = \"test\" }}"
        ));
        out.connect().await.unwrap();
        out.write(&batch()).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].path, "/query?q=CREATE%20DATABASE%20%22main%22");
        assert_eq!(seen[0].headers["authorization"], "Basic dTpw");
        // Groups in (database, rp) order: "main" then "other".
        assert_eq!(seen[1].path, "/write?db=main&rp=week");
        assert_eq!(seen[1].body, "mem free=3i 2000000000\n");
        assert_eq!(seen[2].path, "/write?db=other&rp=week");
        assert_eq!(
            seen[2].body, "cpu,host=a usage=1.5,n=5i 1000000000\n",
            "db tag excluded, uint as int"
        );
        assert_eq!(seen[2].headers["content-encoding"], "gzip");
        assert_eq!(seen[2].headers["user-agent"], "ua/1");
        assert_eq!(seen[2].headers["x-env"], "test");
        assert_eq!(seen[2].headers["authorization"], "Basic dTpw");
    }

    #[tokio::test]
    async fn maps_answers_to_write_errors() {
        let (url, _seen, _stop) = serve_script(|n, _| match n {
            0 => status(400, r#"{"error":"partial write: field type conflict: input field \"usage\" on measurement \"cpu\" is type integer, already exists as type float dropped=1"}"#),
            1 => status(400, r#"{"error":"unable to parse 'x': bad"}"#),
            2 => with_header(status(503, "overloaded"), "retry-after", "7"),
            3 => status(500, "boom"),
            _ => status(401, r#"{"error":"authorization failed"}"#),
        })
        .await;
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\nskip_database_creation = true\ncontent_encoding = \"identity\""
        ));
        match out.write(&batch()).await {
            Err(WriteError::Partial {
                rejected: 1,
                reason,
            }) => assert!(reason.contains("field type conflict"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match out.write(&batch()).await {
            Err(WriteError::Reject { reason }) => {
                assert!(reason.contains("unable to parse 'x': bad"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match out.write(&batch()).await {
            Err(WriteError::Retry { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            out.write(&batch()).await,
            Err(WriteError::Retry {
                retry_after: None,
                ..
            })
        ));
        assert!(
            matches!(out.write(&batch()).await, Err(WriteError::Retry { .. })),
            "401 keeps the data"
        );
    }

    #[tokio::test]
    async fn a_password_in_the_url_is_used_but_never_shown() {
        let (url, seen, _stop) = serve_script(|_, _| status(500, "boom")).await;
        let url = url.replace("http://", "http://writer:s3cret@");
        let mut out = build_with(&format!(
            "urls = [\"{url}\"]\nskip_database_creation = true\ncontent_encoding = \"identity\""
        ));
        out.connect().await.unwrap();
        match out.write(&batch()).await {
            Err(WriteError::Retry { reason, .. }) => {
                assert!(!reason.contains("s3cret"), "{reason}");
                assert!(reason.contains("writer:***@"), "{reason}");
            }
            other => panic!("expected Retry, got {other:?}"),
        }
        let auth = seen.lock().unwrap()[0].headers[http::header::AUTHORIZATION].clone();
        assert_eq!(auth, "Basic d3JpdGVyOnMzY3JldA==");
    }

    #[tokio::test]
    async fn fails_over_to_the_next_url_and_creates_a_missing_database() {
        // A port nobody listens on, then a server that first says the database is missing.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (url, seen, _stop) = serve_script(|n, _| match n {
            0 => status(404, r#"{"error":"database not found: \"telegraf\""}"#),
            _ => server::empty(http::StatusCode::NO_CONTENT),
        })
        .await;
        let mut out = build_with(&format!(
            "urls = [\"http://{dead}\", \"{url}\"]\nskip_database_creation = false\ncontent_encoding = \"identity\""
        ));
        match out.write(&batch()).await {
            Err(WriteError::Retry { reason, .. }) => {
                assert!(reason.contains("created it"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        for _ in 0..4 {
            out.write(&batch()).await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen[1].path.starts_with("/query?q=CREATE%20DATABASE"),
            "{:?}",
            seen[1].path
        );
        assert_eq!(
            seen.iter().filter(|s| s.path.starts_with("/write")).count(),
            5
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(
            crate::common::http::basic_auth_header("u", "p"),
            "Basic dTpw"
        );
        assert_eq!(
            crate::common::http::basic_auth_header("user", "pass"),
            "Basic dXNlcjpwYXNz"
        );
        let t: toml::Table = toml::from_str("urls = [\"udp://localhost:8089\"]").unwrap();
        assert!(build(t, &BuildContext::default()).is_ok());
        let t: toml::Table =
            toml::from_str("urls = [\"udp://localhost:8089\", \"http://localhost:8086\"]").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
        let t: toml::Table = toml::from_str("urls = [\"udp://localhost\"]").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
        let t: toml::Table = toml::from_str("content_encoding = \"br\"").unwrap();
        assert!(build(t, &BuildContext::default()).is_err());
    }
}
