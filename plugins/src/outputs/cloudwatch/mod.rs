//! `outputs.cloudwatch`: writes metrics to Amazon CloudWatch with PutMetricData, and keeps the
//! configured metric alarms in place with PutMetricAlarm.
//!
//! Requests go out in the Query protocol (form-encoded, `Version=2010-08-01`), which real
//! CloudWatch and moto both speak, over sonde's reqwest client, signed with SigV4
//! (`aws-sigv4`); credentials come from the AWS credential chain (`aws-config`, see
//! [`credentials`]). Each request holds at most 1,000 datums and 1 MB of body; bodies over
//! 10 KiB are gzipped, as the AWS SDKs do.

mod alarms;
use crate::common::aws_credentials as credentials;
pub mod encode;
mod xml;

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::time::{Duration as StdDuration, Instant, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::Deserialize;

use crate::common::http::{TlsClientConfig, error_chain};
use crate::common::http_client::{HttpClient, HttpClientConfig, PROXY_KEYS, ProxyDefault};
use crate::config_types::Duration;
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, ConfigError, Format, OutputSpec, parse_config};

use alarms::{Alarm, AlarmConfig};
use encode::{Datum, Encoder, Mapping};

/// Bodies at least this large are gzipped (the AWS SDKs' default threshold).
pub const GZIP_MIN_BYTES: usize = 10 * 1024;
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// After this many datums of one request were refused one by one, the rest of it is refused
/// without more probing.
const MAX_PROBED_REFUSALS: usize = 10;
/// Attempts per request within one write for throttling, 5xx and connection errors.
const ATTEMPTS: u32 = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    token: Option<String>,
    role_arn: Option<String>,
    role_session_name: Option<String>,
    web_identity_token_file: Option<std::path::PathBuf>,
    profile: Option<String>,
    shared_credential_file: Option<std::path::PathBuf>,
    endpoint_url: Option<String>,
    namespace: String,
    high_resolution_metrics: bool,
    write_statistics: bool,
    max_dimensions: usize,
    timeout: Duration,
    alarm: Vec<AlarmConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: None,
            access_key: None,
            secret_key: None,
            token: None,
            role_arn: None,
            role_session_name: None,
            web_identity_token_file: None,
            profile: None,
            shared_credential_file: None,
            endpoint_url: None,
            namespace: "InfluxData/Telegraf".into(),
            high_resolution_metrics: false,
            write_statistics: false,
            max_dimensions: 10,
            timeout: Duration::from_secs(5),
            alarm: Vec::new(),
        }
    }
}

/// Where and as whom requests go, once connected.
struct Api {
    url: reqwest::Url,
    region: String,
    creds: credentials::Cache,
}

/// How a request ended.
#[derive(Debug)]
enum CallError {
    /// Worth trying again later (throttling, 5xx, no answer, credentials unavailable).
    Retry {
        reason: String,
        retry_after: Option<StdDuration>,
    },
    /// The server refused the data (validation): retrying the same request cannot help.
    Invalid(String),
}

/// Progress through a batch whose write failed half-way, so that its retry skips what was sent.
struct Resume {
    /// The batch's first `metrics` metrics produced the datums already sent ...
    metrics: usize,
    hash: u64,
    /// ... which were the first `datums` datums.
    datums: usize,
}

fn prefix_hash(batch: &[Metric]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in batch {
        m.name.hash(&mut h);
        m.tags.hash(&mut h);
        m.time.hash(&mut h);
        for (k, v) in &m.fields {
            k.hash(&mut h);
            v.as_f64().map(f64::to_bits).hash(&mut h);
        }
    }
    h.finish()
}

pub struct CloudWatch {
    id: String,
    settings: credentials::Settings,
    endpoint_url: Option<String>,
    client: reqwest::Client,
    encoder: Encoder,
    mapping: Mapping,
    alarms: Vec<Alarm>,
    /// When to try the alarms again after a failure; `None` once they are in place.
    alarms_due: Option<Instant>,
    alarm_failures: u32,
    api: Option<Api>,
    resume: Option<Resume>,
    warned_dimensions: bool,
    warned_values: bool,
    dropped_values: u64,
}

/// SigV4 headers for a CloudWatch request (`monitoring` service): `authorization`,
/// `x-amz-date` and, with a session token, `x-amz-security-token`.
pub fn sign_request(
    creds: &Credentials,
    region: &str,
    url: &str,
    body: &[u8],
    gzip: bool,
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>, String> {
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("monitoring")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing: {e}"))?
        .into();
    let mut headers = vec![("content-type", FORM)];
    if gzip {
        headers.push(("content-encoding", "gzip"));
    }
    let req = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _) = sign(req, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    let (hs, _) = instructions.into_parts();
    Ok(hs
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

/// Gzips a body (fast level: the point is the wire size, not the last byte).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

/// The error code and message of a Query-protocol error body.
fn error_of(body: &str) -> (String, String) {
    match xml::parse(body) {
        Some(doc) => (
            doc.find("Code")
                .map(|e| e.text.trim().to_string())
                .unwrap_or_default(),
            doc.find("Message")
                .map(|e| e.text.trim().to_string())
                .unwrap_or_default(),
        ),
        None => (String::new(), body.trim().chars().take(300).collect()),
    }
}

const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServiceError",
];
const AUTH: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "RequestExpired",
    "InvalidAccessKeyId",
    "AccessDenied",
    "AccessDeniedException",
    "MissingAuthenticationToken",
    "OptInRequired",
];

impl CloudWatch {
    /// Sends one Query request (signed, gzipped when large), with up to [`ATTEMPTS`] tries for
    /// what is worth retrying. Returns the answer's body.
    async fn call(&mut self, body: &[u8], what: &str) -> Result<String, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.call_once(body, what).await {
                Ok(text) => return Ok(text),
                Err(e @ CallError::Invalid(_)) => return Err(e),
                Err(e) => e,
            };
            if attempt >= ATTEMPTS {
                return Err(err);
            }
            let CallError::Retry { retry_after, .. } = &err else {
                return Err(err);
            };
            let backoff = StdDuration::from_millis(250 << attempt)
                .mul_f64(0.8 + fastrand::f64() * 0.4)
                .max(retry_after.unwrap_or_default())
                .min(StdDuration::from_secs(10));
            tracing::debug!(output = %self.id, error = ?err, ?backoff, "cloudwatch: {what} failed, trying again");
            tokio::time::sleep(backoff).await;
        }
    }

    async fn call_once(&mut self, body: &[u8], what: &str) -> Result<String, CallError> {
        let retry = |reason: String| CallError::Retry {
            reason,
            retry_after: None,
        };
        let api = self
            .api
            .as_mut()
            .ok_or_else(|| retry("not connected".into()))?;
        let creds = api.creds.get().await.map_err(retry)?;
        let zipped = (body.len() >= GZIP_MIN_BYTES).then(|| gzip(body));
        let payload = zipped.as_deref().unwrap_or(body);
        let headers = sign_request(
            &creds,
            &api.region,
            api.url.as_str(),
            payload,
            zipped.is_some(),
            SystemTime::now(),
        )
        .map_err(CallError::Invalid)?;
        let mut rb = self
            .client
            .post(api.url.clone())
            .header(reqwest::header::CONTENT_TYPE, FORM)
            .body(payload.to_vec());
        if zipped.is_some() {
            rb = rb.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        let host = api.url.host_str().unwrap_or("").to_string();
        let resp = rb
            .send()
            .await
            .map_err(|e| retry(format!("{what}: sending to {host}: {}", error_chain(&e))))?;
        let status = resp.status();
        let retry_after = crate::common::http::retry_after(&resp);
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(text);
        }
        let (code, message) = error_of(&text);
        let reason = format!("{what}: {status} {code}: {message}");
        let code = code.as_str();
        if status.as_u16() == 429 || status.is_server_error() || THROTTLED.contains(&code) {
            Err(CallError::Retry {
                reason,
                retry_after,
            })
        } else if status.as_u16() == 403 || status.as_u16() == 401 || AUTH.contains(&code) {
            // Not the data's fault: fetch credentials again, keep the data.
            if let Some(api) = self.api.as_mut() {
                api.creds.invalidate();
            }
            Err(retry(reason))
        } else {
            Err(CallError::Invalid(reason))
        }
    }

    /// Creates or updates the configured alarms that are missing or differ.
    async fn sync_alarms(&mut self) -> Result<(), String> {
        let alarms = self.alarms.clone();
        let mut have: Vec<Alarm> = Vec::new();
        for chunk in alarms.chunks(100) {
            let names: Vec<&str> = chunk.iter().map(|a| a.name.as_str()).collect();
            let text = self
                .call(&alarms::describe_body(&names), "DescribeAlarms")
                .await
                .map_err(|e| format!("{e:?}"))?;
            let doc =
                xml::parse(&text).ok_or_else(|| "DescribeAlarms: unreadable answer".to_string())?;
            have.extend(alarms::parse_described(&doc));
        }
        for a in &alarms {
            let diff = have
                .iter()
                .find(|h| h.name == a.name)
                .map(|h| alarms::differences(a, h));
            match &diff {
                Some(d) if d.is_empty() => {
                    tracing::info!(output = %self.id, alarm = %a.name, "cloudwatch: alarm unchanged");
                    continue;
                }
                _ => {}
            }
            self.call(&alarms::put_body(a), "PutMetricAlarm")
                .await
                .map_err(|e| match e {
                    CallError::Invalid(r) => format!("alarm {:?}: {r}", a.name),
                    CallError::Retry { reason, .. } => format!("alarm {:?}: {reason}", a.name),
                })?;
            match diff {
                None => {
                    tracing::info!(output = %self.id, alarm = %a.name, "cloudwatch: alarm created")
                }
                Some(d) => {
                    tracing::info!(output = %self.id, alarm = %a.name, changed = %d.join(","), "cloudwatch: alarm updated")
                }
            }
        }
        Ok(())
    }

    async fn maybe_sync_alarms(&mut self) {
        let Some(due) = self.alarms_due else { return };
        if Instant::now() < due {
            return;
        }
        match self.sync_alarms().await {
            Ok(()) => {
                self.alarms_due = None;
                self.alarm_failures = 0;
            }
            Err(e) => {
                self.alarm_failures += 1;
                let wait = StdDuration::from_secs(5 << self.alarm_failures.min(6));
                tracing::error!(output = %self.id, error = %e, retry_in = ?wait, "cloudwatch: could not put the alarms in place; metrics are still written");
                self.alarms_due = Some(Instant::now() + wait);
            }
        }
    }

    /// Sends `datums` (already split into requests within the limits); a request the server
    /// refuses is split in halves until the offending datums are found, and only those are
    /// dropped. Returns the number of datums sent before a retryable failure, if one happened.
    async fn send(
        &mut self,
        datums: &[Datum<'_>],
        dims: &[(&str, &str)],
        rejected: &mut BTreeSet<u32>,
        reasons: &mut Vec<String>,
    ) -> Result<(), (usize, CallError)> {
        let reqs = self.encoder.encode(datums, dims);
        for r in reqs {
            match self.call(&r.body, "PutMetricData").await {
                Ok(_) => {}
                Err(CallError::Invalid(reason)) => {
                    // Find the offending datums by halving. When many datums are refused
                    // one by one, the cause is not in single datums: the rest of the request
                    // is refused with the same reason rather than probed request by request.
                    let mut stack = vec![r.datums.clone()];
                    let mut first = Some(reason);
                    let mut singles = 0;
                    while let Some(range) = stack.pop() {
                        if singles >= MAX_PROBED_REFUSALS {
                            for d in &datums[range] {
                                rejected.insert(d.metric);
                            }
                            continue;
                        }
                        let result = match first.take() {
                            Some(why) => Err(CallError::Invalid(why)),
                            None => {
                                let reqs = self.encoder.encode(&datums[range.clone()], dims);
                                self.call(&reqs[0].body, "PutMetricData").await
                            }
                        };
                        match result {
                            Ok(_) => {}
                            Err(CallError::Invalid(why)) if range.len() == 1 => {
                                singles += 1;
                                let d = &datums[range.start];
                                rejected.insert(d.metric);
                                tracing::debug!(output = %self.id, metric = %d.name(), error = %why, "cloudwatch: datum refused");
                                if reasons.len() < 5 {
                                    reasons.push(format!("{} refused: {why}", d.name()));
                                }
                            }
                            Err(CallError::Invalid(_)) => {
                                let mid = range.start + range.len() / 2;
                                stack.push(mid..range.end);
                                stack.push(range.start..mid);
                            }
                            Err(e) => return Err((r.datums.start, e)),
                        }
                    }
                }
                Err(e) => return Err((r.datums.start, e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Output for CloudWatch {
    async fn connect(&mut self) -> anyhow::Result<()> {
        let chain = credentials::chain(&self.settings).await?;
        let url = match self.endpoint_url.clone().or_else(|| {
            ["AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        }) {
            Some(u) => u,
            None => {
                let suffix = if chain.region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://monitoring.{}.{suffix}/", chain.region)
            }
        };
        let mut url =
            reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("endpoint_url {url:?}: {e}"))?;
        if url.path().is_empty() {
            url.set_path("/");
        }
        tracing::info!(
            output = %self.id,
            region = %chain.region,
            endpoint = %url.host_str().unwrap_or(""),
            credentials = %chain.describe,
            "cloudwatch: connected"
        );
        self.api = Some(Api {
            url,
            region: chain.region,
            creds: credentials::Cache::new(chain.provider),
        });
        if !self.alarms.is_empty() {
            self.alarms_due = Some(Instant::now());
            self.maybe_sync_alarms().await;
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        self.maybe_sync_alarms().await;
        let ds = encode::datums(batch, &self.mapping);
        if ds.skipped.over_max_dimensions > 0 && !self.warned_dimensions {
            self.warned_dimensions = true;
            tracing::warn!(
                output = %self.id,
                max_dimensions = self.mapping.max_dimensions,
                "cloudwatch: metrics with more tags than max_dimensions: the extra tags (after host, by name) are not sent as dimensions (logged once)"
            );
        }
        if ds.skipped.values > 0 {
            self.dropped_values += ds.skipped.values;
            if !self.warned_values {
                self.warned_values = true;
                tracing::warn!(output = %self.id, "cloudwatch: string, NaN and infinite field values cannot be sent and are dropped (logged once; counted at debug level)");
            }
            tracing::debug!(output = %self.id, dropped = ds.skipped.values, total = self.dropped_values, "cloudwatch: field values dropped");
        }
        let mut rejected: BTreeSet<u32> = ds.skipped.metrics.iter().copied().collect();
        rejected.extend(ds.skipped.invalid_metrics.iter().copied());
        let mut reasons = Vec::new();
        if !ds.skipped.metrics.is_empty() {
            reasons.push(format!(
                "{} metrics without a numeric field",
                ds.skipped.metrics.len()
            ));
        }
        if let Some(r) = &ds.skipped.invalid_reason {
            reasons.push(format!(
                "{} datums refused before sending: {r}",
                ds.skipped.invalid
            ));
        }
        let skip = match self.resume.take() {
            Some(r)
                if r.metrics <= batch.len()
                    && r.datums <= ds.datums.len()
                    && prefix_hash(&batch[..r.metrics]) == r.hash =>
            {
                r.datums
            }
            _ => 0,
        };
        let todo = &ds.datums[skip..];
        if let Err((sent, e)) = self.send(todo, &ds.dims, &mut rejected, &mut reasons).await {
            let done = skip + sent;
            if done > 0 {
                let metrics = ds.datums[done - 1].metric as usize + 1;
                // Only a clean cut (no metric split across the sent and unsent parts) can be
                // resumed; otherwise the whole batch goes again.
                if ds
                    .datums
                    .get(done)
                    .is_none_or(|d| d.metric as usize >= metrics)
                {
                    self.resume = Some(Resume {
                        metrics,
                        hash: prefix_hash(&batch[..metrics]),
                        datums: done,
                    });
                } else {
                    let metrics = metrics - 1;
                    let datums = ds
                        .datums
                        .iter()
                        .take_while(|d| (d.metric as usize) < metrics)
                        .count();
                    if datums > 0 {
                        self.resume = Some(Resume {
                            metrics,
                            hash: prefix_hash(&batch[..metrics]),
                            datums,
                        });
                    }
                }
            }
            return Err(match e {
                CallError::Retry {
                    reason,
                    retry_after,
                } => WriteError::Retry {
                    reason,
                    retry_after,
                },
                CallError::Invalid(reason) => WriteError::Retry {
                    reason,
                    retry_after: None,
                },
            });
        }
        if rejected.is_empty() {
            return Ok(());
        }
        let reason = reasons.join("; ");
        if rejected.len() >= batch.len() {
            Err(WriteError::Reject { reason })
        } else {
            Err(WriteError::Partial {
                rejected: rejected.len(),
                reason,
            })
        }
    }
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let http = HttpClientConfig::take(&mut table, &[PROXY_KEYS])?;
    let mut cfg: Config = parse_config(table)?;
    // Telegraf's sample writes `key = ""` for every credential it leaves unset.
    for s in [
        &mut cfg.region,
        &mut cfg.access_key,
        &mut cfg.secret_key,
        &mut cfg.token,
        &mut cfg.role_arn,
        &mut cfg.role_session_name,
        &mut cfg.profile,
        &mut cfg.endpoint_url,
    ] {
        if s.as_deref() == Some("") {
            *s = None;
        }
    }
    for p in [
        &mut cfg.web_identity_token_file,
        &mut cfg.shared_credential_file,
    ] {
        if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            *p = None;
        }
    }
    let bad = |path: &[&str], message: String| {
        BuildError::Config(ConfigError {
            path: path.iter().map(|s| s.to_string()).collect(),
            message,
        })
    };
    if cfg.namespace.is_empty()
        || cfg.namespace.len() > 255
        || cfg.namespace.starts_with(':')
        || cfg.namespace.starts_with("AWS/")
    {
        return Err(bad(
            &["namespace"],
            "must be 1 to 255 characters, not start with ':' and not be an AWS/ namespace".into(),
        ));
    }
    if cfg.max_dimensions > 30 {
        return Err(bad(
            &["max_dimensions"],
            "CloudWatch takes at most 30 dimensions per metric".into(),
        ));
    }
    if cfg.access_key.is_some() != cfg.secret_key.is_some() {
        return Err(bad(
            &["secret_key"],
            "access_key and secret_key must be given together".into(),
        ));
    }
    if cfg.token.is_some() && cfg.access_key.is_none() {
        return Err(bad(
            &["token"],
            "token needs access_key and secret_key".into(),
        ));
    }
    if cfg.web_identity_token_file.is_some() && cfg.role_arn.is_none() {
        return Err(bad(
            &["web_identity_token_file"],
            "needs role_arn (the role the token is exchanged for)".into(),
        ));
    }
    if cfg.role_session_name.is_some() && cfg.role_arn.is_none() {
        tracing::warn!("outputs.cloudwatch: role_session_name has no effect without role_arn");
    }
    if let Some(u) = &cfg.endpoint_url {
        let ok = reqwest::Url::parse(u)
            .map(|x| matches!(x.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !ok {
            return Err(bad(&["endpoint_url"], format!("not an http(s) URL: {u:?}")));
        }
    }
    if cfg.timeout.is_zero() {
        return Err(bad(&["timeout"], "must be more than 0".into()));
    }
    let mut alarms = Vec::new();
    for (i, a) in cfg.alarm.iter().enumerate() {
        let alarm = a
            .resolve(&ctx.hostname, &cfg.namespace)
            .map_err(|m| bad(&["alarm", &i.to_string()], m))?;
        if alarms.iter().any(|x: &Alarm| x.name == alarm.name) {
            return Err(bad(
                &["alarm", &i.to_string(), "name"],
                format!("alarm {:?} is configured twice", alarm.name),
            ));
        }
        alarms.push(alarm);
    }
    // Telegraf's common/proxy: no proxy unless use_system_proxy or http_proxy_url.
    let client =
        HttpClient::build(&http, &tls, cfg.timeout.get(), ProxyDefault::None, |b| b)?.client;
    Ok(Box::new(CloudWatch {
        id: ctx.id.clone(),
        settings: credentials::Settings {
            region: cfg.region.filter(|r| !r.is_empty()),
            access_key: cfg.access_key,
            secret_key: cfg.secret_key,
            token: cfg.token.filter(|t| !t.is_empty()),
            role_arn: cfg.role_arn,
            role_session_name: cfg.role_session_name,
            web_identity_token_file: cfg.web_identity_token_file,
            profile: cfg.profile,
            shared_credential_file: cfg.shared_credential_file,
        },
        endpoint_url: cfg.endpoint_url,
        client,
        encoder: Encoder::new(&cfg.namespace, cfg.high_resolution_metrics),
        mapping: Mapping {
            write_statistics: cfg.write_statistics,
            max_dimensions: cfg.max_dimensions,
        },
        alarms,
        alarms_due: None,
        alarm_failures: 0,
        api: None,
        resume: None,
        warned_dimensions: false,
        warned_values: false,
        dropped_values: 0,
    }))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "cloudwatch",
    description: "Write metrics to Amazon CloudWatch and keep the configured metric alarms in place",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests;
