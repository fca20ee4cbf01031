//! `inputs.influxdb_v2_listener`: accepts InfluxDB 2.x writes (`/api/v2/write`) with token
//! auth, and answers `/health`, `/ready` and `/ping`. Shares the write path
//! (`common::lp_listener`) with `inputs.influxdb_listener`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::common::lp_listener::{
    VERSION, WriteCore, WriteOutcome, check_write_options, default_body, ping,
};
use crate::common::server::{self, Resp, ServerOptions, TlsServerConfig};
use crate::config_types::{Duration as Dur, Size};
use crate::plugin::{BuildContext, InputPlugin, ServiceContext, ServiceInput};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_address")]
    service_address: String,
    /// Answer 429 while about this many metrics wait in the pipeline's queue (0: never).
    #[serde(default = "default_undelivered")]
    max_undelivered_metrics: u64,
    #[serde(default = "default_timeout")]
    read_timeout: Dur,
    #[serde(default = "default_timeout")]
    write_timeout: Dur,
    #[serde(default = "default_body")]
    max_body_size: Size,
    #[serde(default)]
    bucket_tag: String,
    token: Option<String>,
    #[serde(default)]
    parser_type: Option<String>,
    /// Telegraf's switch to statistics tagged with the alias: sonde's always are.
    #[serde(default)]
    use_internal_statistics: Option<bool>,
}

fn default_address() -> String {
    ":8086".into()
}
fn default_undelivered() -> u64 {
    10_000
}
fn default_timeout() -> Dur {
    Dur::from_secs(10)
}

struct Listener {
    cfg: Config,
    id: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Bound by `start`.
    bound: Option<tokio::net::TcpListener>,
}

struct State {
    core: WriteCore,
    cfg: Config,
    started: String,
    /// Metrics per batch this listener queued, as a moving average (x1000, for atomics):
    /// turns the queue's length in batches into an estimate in metrics.
    avg_batch_milli: AtomicU64,
}

#[async_trait]
impl ServiceInput for Listener {
    async fn start(&mut self) -> anyhow::Result<()> {
        self.bound = Some(server::bind(&self.cfg.service_address).await?);
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let Listener {
            cfg,
            id,
            tls,
            bound,
        } = *self;
        let listener = server::bound_or_bind(bound, &cfg.service_address).await?;
        tracing::info!(input = %id, address = %listener.local_addr()?, "influxdb_v2_listener listening");
        let core = WriteCore::new(
            "internal_influxdb_v2_listener",
            &id,
            &cfg.service_address,
            ctx.sink,
            cfg.max_body_size.0,
            0,
            cfg.read_timeout.get(),
            cfg.write_timeout.get(),
        );
        let opts = ServerOptions {
            read_timeout: cfg.read_timeout.get(),
            tls,
        };
        let state = Arc::new(State {
            core,
            cfg,
            started: rfc3339_now(),
            avg_batch_milli: AtomicU64::new(0),
        });
        let handler = move |req| {
            let st = state.clone();
            async move { handle(&st, req).await }
        };
        server::serve(listener, opts, handler, ctx.shutdown).await;
        Ok(())
    }
}

fn v2_error(status: StatusCode, code: &str, message: &str) -> Resp {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    server::respond(status, "application/json; charset=utf-8", body)
}

async fn handle(st: &State, req: Request<Incoming>) -> Resp {
    st.core.requests.incr();
    let path = req.uri().path().to_string();
    let resp = match (req.method(), path.as_str()) {
        (_, "/ping") => ping(&req),
        (&Method::GET, "/health") => server::respond(
            StatusCode::OK,
            "application/json; charset=utf-8",
            serde_json::json!({
                "name": "sonde", "message": "ready for queries and writes", "status": "pass",
                "checks": [], "version": VERSION,
            })
            .to_string(),
        ),
        (&Method::GET, "/ready") => server::respond(
            StatusCode::OK,
            "application/json; charset=utf-8",
            serde_json::json!({ "status": "ready", "started": st.started }).to_string(),
        ),
        (&Method::POST, "/api/v2/write") => {
            if authorized(st, &req) {
                write(st, req).await
            } else {
                v2_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unauthorized access",
                )
            }
        }
        (_, "/api/v2/write") => v2_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
            "method not allowed",
        ),
        _ => v2_error(StatusCode::NOT_FOUND, "not found", "path not found"),
    };
    if resp.status().is_client_error() || resp.status().is_server_error() {
        st.core.rejected_requests.incr();
    }
    resp
}

fn authorized(st: &State, req: &Request<Incoming>) -> bool {
    let Some(token) = &st.cfg.token else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Token ")
                .or_else(|| v.strip_prefix("Bearer "))
        });
    given.is_some_and(|g| server::secret_eq(g.trim(), token))
}

async fn write(st: &State, req: Request<Incoming>) -> Resp {
    if st.cfg.max_undelivered_metrics > 0 {
        let avg = st.avg_batch_milli.load(Ordering::Relaxed) / 1000;
        let undelivered = st.core.sink.queued() as u64 * avg.max(1);
        if undelivered >= st.cfg.max_undelivered_metrics {
            let mut r = v2_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
                &format!(
                    "about {undelivered} metrics are waiting in the pipeline (max_undelivered_metrics is {})",
                    st.cfg.max_undelivered_metrics
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            return r;
        }
    }
    let q = req.uri().query().map(str::to_string);
    let q = q.as_deref();
    let precision = match server::query_param(q, "precision")
        .as_deref()
        .unwrap_or("ns")
    {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        p => {
            return v2_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("invalid precision {p:?}: expected ns, us, ms or s"),
            );
        }
    };
    let bucket = server::query_param(q, "bucket").unwrap_or_default();
    if bucket.is_empty() {
        return v2_error(StatusCode::BAD_REQUEST, "invalid", "bucket is required");
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    if !st.cfg.bucket_tag.is_empty() {
        tags.push((&st.cfg.bucket_tag, &bucket));
    }
    let (outcome, queued) = st.core.write(req, precision, &tags).await;
    if let Some(per_batch) = queued.metrics.checked_div(queued.batches) {
        note_batch(st, per_batch);
    }
    match outcome {
        WriteOutcome::Ok => server::empty(StatusCode::NO_CONTENT),
        WriteOutcome::BadLines(m) => v2_error(StatusCode::BAD_REQUEST, "invalid", &m),
        WriteOutcome::Busy(m, retry_after) => {
            let mut r = v2_error(StatusCode::TOO_MANY_REQUESTS, "too many requests", &m);
            r.headers_mut()
                .insert(header::RETRY_AFTER, server::retry_after_value(retry_after));
            r
        }
        WriteOutcome::Failed(status, m) => {
            let code = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                _ => "invalid",
            };
            let mut r = v2_error(status, code, &m);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            }
            r
        }
    }
}

/// Folds the size of the batches just queued (a large write is queued in several) into the
/// moving average.
fn note_batch(st: &State, len: usize) {
    let n = len as u64 * 1000;
    let old = st.avg_batch_milli.load(Ordering::Relaxed);
    let new = if old == 0 { n } else { (old * 7 + n) / 8 };
    st.avg_batch_milli.store(new, Ordering::Relaxed);
}

fn rfc3339_now() -> String {
    crate::common::time::rfc3339_seconds(crate::model::now_ns() / 1_000_000_000)
}

fn build(mut table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsServerConfig::take(&mut table)?.build()?;
    let mut cfg: Config = parse_config(table)?;
    check_write_options(cfg.parser_type.as_deref(), &mut cfg.max_body_size)?;
    if let Some(v) = cfg.use_internal_statistics {
        tracing::warn!(
            "{}: use_internal_statistics = {v} has no effect: sonde always reports the listener's \
             statistics tagged with the input's alias (the `input` tag)",
            ctx.id
        );
    }
    server::check_address(&cfg.service_address).map_err(|message| ConfigError {
        path: vec!["service_address".into()],
        message,
    })?;
    Ok(InputPlugin::Service(Box::new(Listener {
        cfg,
        id: ctx.id.clone(),
        tls,
        bound: None,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "influxdb_v2_listener",
    description: "Accept InfluxDB 2.x line-protocol writes over HTTP",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::lp_listener::tests::{req, start, start_with};
    use std::time::Duration;

    #[tokio::test]
    async fn token_bucket_tag_health_and_precision() {
        let r = start(&SPEC, "token = \"s3cret\"\nbucket_tag = \"bucket\"", 16).await;
        let path = "/api/v2/write?org=o&bucket=b1&precision=ms";
        let (st, text) = req(&r.addr, "POST", path, &[], b"m v=1 1700000000000".to_vec()).await;
        assert_eq!(st, 401, "{text}");
        assert!(text.contains("\"code\":\"unauthorized\""));
        let (st, _) = req(
            &r.addr,
            "POST",
            path,
            &[("authorization", "Token wrong")],
            b"m v=1".to_vec(),
        )
        .await;
        assert_eq!(st, 401);
        assert!(r.rx.is_empty());
        let auth = ("authorization", "Token s3cret");
        let (st, _) = req(
            &r.addr,
            "POST",
            path,
            &[auth],
            b"m v=1 1700000000000".to_vec(),
        )
        .await;
        assert_eq!(st, 204);
        let got = r.rx.try_recv().unwrap();
        assert_eq!(got[0].time, 1_700_000_000_000_000_000);
        assert_eq!(got[0].tag("bucket"), Some("b1"));

        let (st, text) = req(&r.addr, "POST", path, &[auth], b"ok v=1\nbad\n".to_vec()).await;
        assert_eq!(st, 400);
        assert!(
            text.contains("\"code\":\"invalid\"") && text.contains("(line 2)"),
            "{text}"
        );
        assert_eq!(r.rx.try_recv().unwrap().len(), 1, "good lines kept");

        let (st, text) = req(&r.addr, "GET", "/health", &[], vec![]).await;
        assert_eq!(st, 200);
        assert!(text.contains("\"status\":\"pass\""));
        let (st, text) = req(&r.addr, "GET", "/ready", &[], vec![]).await;
        assert_eq!(st, 200);
        assert!(text.contains("\"status\":\"ready\""), "{text}");
        let (st, _) = req(
            &r.addr,
            "POST",
            "/api/v2/write?org=o",
            &[auth],
            b"m v=1".to_vec(),
        )
        .await;
        assert_eq!(st, 400, "bucket is required");
        r.stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn throttles_when_the_pipeline_lags_and_acknowledges_only_what_the_buffers_took() {
        use crate::plugin::{Batch, Delivery, MetricSink, PipelineSender};
        // The test plays the pipeline: a batch waits in its queue until it is answered.
        let (tx, queue) = flume::unbounded::<Batch>();
        let sink = MetricSink::new(
            PipelineSender::new(tx, u32::MAX),
            std::sync::Arc::new(|_: &mut Vec<crate::model::Metric>| {}),
        );
        let (_unused, rx) = flume::bounded(1);
        let r = start_with(
            &SPEC,
            "max_undelivered_metrics = 3\nwrite_timeout = \"5s\"",
            sink,
            rx,
        )
        .await;
        let path = "/api/v2/write?bucket=b";
        let body = b"m v=1\nm v=2\nm v=3\n".to_vec();
        let write = || {
            let (addr, body) = (r.addr.clone(), body.clone());
            tokio::spawn(async move { req(&addr, "POST", path, &[], body).await })
        };
        let w1 = write();
        let b1 = queue.recv_async().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !w1.is_finished(),
            "no answer before the buffers took the batch"
        );
        b1.ack.unwrap().send(Delivery::Accepted).unwrap();
        assert_eq!(w1.await.unwrap().0, 204);
        // A batch of 3 metrics waits in the queue: the next write is throttled.
        let w2 = write();
        while queue.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (st3, text3) = write().await.unwrap();
        assert_eq!(st3, 429, "{text3}");
        assert!(
            text3.to_ascii_lowercase().contains("retry-after: 1"),
            "{text3}"
        );
        // A full output buffer refuses: 429 with the output's Retry-After, nothing taken.
        let b2 = queue.recv_async().await.unwrap();
        b2.ack
            .unwrap()
            .send(Delivery::Full {
                reason: "outputs.http: buffer full".into(),
                retry_after: Duration::from_secs(7),
            })
            .unwrap();
        let (st2, text2) = w2.await.unwrap();
        assert_eq!(st2, 429, "{text2}");
        assert!(
            text2.to_ascii_lowercase().contains("retry-after: 7"),
            "{text2}"
        );
        assert!(text2.contains("buffer full"), "{text2}");
        r.stop.send(true).unwrap();
        drop(queue);
        tokio::time::timeout(Duration::from_secs(5), r.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// The next batch the listener queues (a test that plays the pipeline).
    async fn next(queue: &flume::Receiver<crate::plugin::Batch>) -> crate::plugin::Batch {
        tokio::time::timeout(Duration::from_secs(5), queue.recv_async())
            .await
            .expect("no batch within 5 s")
            .unwrap()
    }

    #[tokio::test]
    async fn a_write_is_refused_whole_or_waits_for_the_room_it_lacks() {
        use crate::model::FieldValue;
        use crate::plugin::{Batch, Delivery, MetricSink, PipelineSender};
        let (tx, queue) = flume::unbounded::<Batch>();
        let sink = MetricSink::new(
            PipelineSender::new(tx, u32::MAX),
            std::sync::Arc::new(|_: &mut Vec<crate::model::Metric>| {}),
        );
        let (_unused, rx) = flume::bounded(1);
        let r = start_with(&SPEC, "write_timeout = \"1s\"", sink, rx).await;
        // 2,500 lines: queued as chunks of 1,000, 1,000 and 500.
        let body: String = (0..2500).map(|i| format!("m v={i}i\n")).collect();
        let write = || {
            let (addr, body) = (r.addr.clone(), body.clone().into_bytes());
            tokio::spawn(
                async move { req(&addr, "POST", "/api/v2/write?bucket=b", &[], body).await },
            )
        };
        let full = || Delivery::Full {
            reason: "outputs.x: buffer full".into(),
            retry_after: Duration::from_secs(3),
        };
        let first_value = |b: &Batch| b.metrics[0].field("v").cloned();
        let answer = |b: Batch, d: Delivery| b.ack.unwrap().send(d).unwrap();
        // The first chunk asks for room for the whole write; refused, nothing is stored.
        let w = write();
        let b = next(&queue).await;
        assert_eq!((b.metrics.len(), b.ahead), (1000, 1500));
        answer(b, full());
        let (st, text) = w.await.unwrap();
        assert_eq!(st, 429, "{text}");
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 3"),
            "{text}"
        );
        assert!(!text.contains("were stored"), "{text}");
        assert!(queue.is_empty(), "a refused write sent more");
        // Taken whole: the later chunks ask for their own room only.
        let w = write();
        let b1 = next(&queue).await;
        answer(b1, Delivery::Accepted);
        let b2 = next(&queue).await;
        assert_eq!((b2.metrics.len(), b2.ahead), (1000, 0));
        assert_eq!(first_value(&b2), Some(FieldValue::Int(1000)));
        answer(b2, Delivery::Accepted);
        let b3 = next(&queue).await;
        assert_eq!((b3.metrics.len(), b3.ahead), (500, 0));
        answer(b3, Delivery::Accepted);
        assert_eq!(w.await.unwrap().0, 204);
        // A later chunk that finds a buffer full is sent again as the buffers drain: no
        // part of the write is stored twice, and the write is taken whole.
        let w = write();
        answer(next(&queue).await, Delivery::Accepted);
        let b2 = next(&queue).await;
        answer(b2, full());
        let again = next(&queue).await;
        assert_eq!(first_value(&again), Some(FieldValue::Int(1000)));
        assert_eq!(again.metrics.len(), 1000);
        answer(again, Delivery::Accepted);
        let b3 = next(&queue).await;
        assert_eq!(first_value(&b3), Some(FieldValue::Int(2000)));
        answer(b3, Delivery::Accepted);
        assert_eq!(w.await.unwrap().0, 204);
        assert!(queue.is_empty());
        // Still full after write_timeout: the 429 says what was stored.
        let started = std::time::Instant::now();
        let w = write();
        answer(next(&queue).await, Delivery::Accepted);
        let mut asked = 0;
        while !w.is_finished() {
            if let Ok(Ok(b)) =
                tokio::time::timeout(Duration::from_millis(50), queue.recv_async()).await
            {
                assert_eq!(first_value(&b), Some(FieldValue::Int(1000)));
                answer(b, full());
                asked += 1;
            }
        }
        let (st, text) = w.await.unwrap();
        assert_eq!(st, 429, "{text}");
        assert!(
            text.contains("1000 metrics of this write were stored"),
            "{text}"
        );
        assert!(started.elapsed() >= Duration::from_secs(1), "gave up early");
        assert!(asked > 2, "asked {asked} times");
        assert!(queue.is_empty());
        r.stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn a_write_the_buffers_do_not_take_in_time_is_503() {
        use crate::plugin::{Batch, MetricSink, PipelineSender};
        let (tx, queue) = flume::unbounded::<Batch>();
        let sink = MetricSink::new(
            PipelineSender::new(tx, u32::MAX),
            std::sync::Arc::new(|_: &mut Vec<crate::model::Metric>| {}),
        );
        let (_unused_tx, rx) = flume::bounded(1);
        let r = start_with(&SPEC, "write_timeout = \"300ms\"", sink, rx).await;
        let (st, text) = req(
            &r.addr,
            "POST",
            "/api/v2/write?bucket=b",
            &[],
            b"m v=1\n".to_vec(),
        )
        .await;
        assert_eq!(st, 503, "{text}");
        assert!(text.to_ascii_lowercase().contains("retry-after"), "{text}");
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn rfc3339() {
        let s = rfc3339_now();
        assert_eq!(s.len(), 20);
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }
}
