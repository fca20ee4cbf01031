//! The write path of the line-protocol HTTP listeners (`inputs.influxdb_listener` and
//! `inputs.influxdb_v2_listener`): body limits, parsing, queueing and the request counters, plus
//! the `/ping` answer both give.
//!
//! A write is acknowledged only once every output buffer that takes the batch has stored it;
//! when one is full the write is refused with 429 and Retry-After instead of being accepted
//! and dropped later.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::codec::{influx, record};
use crate::common::server::{self, BodyError, Resp};
use crate::config_types::Size;
use crate::model::now_ns;
use crate::plugin::{MetricSink, SendError};
use crate::registry::BuildError;
use crate::selfstat::{self, Stat, Stats};

/// Lines of a write body parsed and queued as one batch (Telegraf's default batch size).
const WRITE_CHUNK_LINES: usize = 1000;

/// The first pause of a write whose later chunk found a buffer full, before it asks again
/// (the pause doubles up to [`ROOM_POLL_MAX`]).
const ROOM_POLL: Duration = Duration::from_millis(10);
const ROOM_POLL_MAX: Duration = Duration::from_millis(250);

/// How many lines `rest` has at most (a string value may hold a newline).
fn lines_in(rest: &[u8]) -> usize {
    let newlines = memchr::memchr_iter(b'\n', rest).count();
    newlines + usize::from(rest.last().is_some_and(|&b| b != b'\n'))
}

pub(crate) fn default_body() -> Size {
    Size(32 << 20)
}

/// A chunk of a write, as the sink takes it.
enum Payload {
    Metrics(Vec<crate::model::Metric>),
    Records(Vec<record::Record>),
}

/// The limits and counters of a line-protocol write endpoint.
pub(crate) struct WriteCore {
    pub sink: MetricSink,
    pub max_body: usize,
    pub max_line: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Keeps the counters registered while the listener runs.
    _stats: Arc<Stats>,
    pub requests: Stat,
    pub writes: Stat,
    pub parse_errors: Stat,
    pub rejected_requests: Stat,
    /// Record writers of finished writes, kept with their room (the direct route).
    writers: std::sync::Mutex<Vec<record::Writer>>,
    /// The input's id, and whether the log has said that it takes the direct route.
    id: String,
    direct_logged: AtomicBool,
}

/// A record writer lent by [`WriteCore`] for one write, given back when dropped.
struct LentWriter<'a> {
    pool: &'a std::sync::Mutex<Vec<record::Writer>>,
    writer: record::Writer,
}

impl Drop for LentWriter<'_> {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        // About one per connection writing at once; a writer keeps a record's room.
        if pool.len() < 8 {
            pool.push(std::mem::take(&mut self.writer));
        }
    }
}

/// What a write put in the pipeline's queue: its metrics, in how many batches.
#[derive(Default)]
pub(crate) struct Queued {
    pub metrics: usize,
    pub batches: usize,
}

/// How a write request failed before or while parsing.
pub(crate) enum WriteOutcome {
    /// Every line was taken (possibly none).
    Ok,
    /// Some lines were bad; the good ones are in the pipeline. The message names the first.
    BadLines(String),
    /// The body was refused, or a chunk of it was not taken (earlier chunks may have been).
    Failed(StatusCode, String),
    /// A chunk was not taken because an output buffer is full (earlier chunks may have
    /// been). The client should retry after the duration (HTTP 429 with Retry-After).
    Busy(String, Duration),
}

impl WriteCore {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plugin: &'static str,
        id: &str,
        address: &str,
        sink: MetricSink,
        max_body: u64,
        max_line: u64,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        let stats = selfstat::register(plugin, &[("input", id), ("address", address)]);
        WriteCore {
            sink,
            max_body: max_body.min(usize::MAX as u64) as usize,
            max_line: max_line.min(usize::MAX as u64) as usize,
            read_timeout,
            write_timeout,
            requests: stats.stat("requests_received"),
            writes: stats.stat("writes_received"),
            parse_errors: stats.stat("parse_errors"),
            rejected_requests: stats.stat("requests_rejected"),
            _stats: stats,
            writers: Default::default(),
            id: id.to_string(),
            direct_logged: Default::default(),
        }
    }

    /// Another counter of this listener's `internal_*` measurement.
    pub fn stat(&self, field: &'static str) -> Stat {
        self._stats.stat(field)
    }

    /// Reads, parses and queues one write. `tags` are added to every metric. Returns the
    /// outcome and what was queued.
    pub async fn write(
        &self,
        req: Request<Incoming>,
        precision: i64,
        tags: &[(&str, &str)],
    ) -> (WriteOutcome, Queued) {
        let mut queued = Queued::default();
        let outcome = self.write_inner(req, precision, tags, &mut queued).await;
        (outcome, queued)
    }

    async fn write_inner(
        &self,
        req: Request<Incoming>,
        precision: i64,
        tags: &[(&str, &str)],
        queued: &mut Queued,
    ) -> WriteOutcome {
        self.writes.incr();
        let body = match server::read_body(req, self.max_body, self.read_timeout).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return WriteOutcome::Failed(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "http: request body too large (max_body_size is {} bytes)",
                        self.max_body
                    ),
                );
            }
            Err(BodyError::Timeout) => {
                return WriteOutcome::Failed(
                    StatusCode::REQUEST_TIMEOUT,
                    "timed out reading the request body".into(),
                );
            }
            Err(BodyError::Bad(m)) => return WriteOutcome::Failed(StatusCode::BAD_REQUEST, m),
            Err(e @ BodyError::UnsupportedEncoding(_)) => {
                let (status, message) = e.status(self.max_body);
                return WriteOutcome::Failed(status, message);
            }
        };
        // The body is parsed and queued a chunk of lines at a time: parsed metrics take five
        // or more times the memory of their text, so a whole large body is never held as
        // structs, and the first chunk moves on while the next is parsed. The first chunk is
        // taken only if the buffers also have room for the lines after it, so a write that
        // does not fit is refused whole (429) before any of it is stored, and the client's
        // retry sends nothing twice. A later chunk that finds a buffer full (another write
        // took the room meanwhile, or the write is larger than the room the first chunk asks
        // for) is parsed and sent again as the outputs drain, for up to `write_timeout`: only
        // then is a write refused in part.
        let now = now_ns();
        let mut errors = Vec::new();
        let mut lines = influx::Lines::new(&body);
        let mut waiting: Option<(tokio::time::Instant, Duration)> = None;
        // With the direct route the lines are written straight into buffer records.
        // (A writer kept from an earlier write: grown to the size of a record already.)
        let mut writer = self.sink.direct().map(|_| LentWriter {
            writer: self
                .writers
                .lock()
                .map(|mut p| p.pop())
                .ok()
                .flatten()
                .unwrap_or_default(),
            pool: &self.writers,
        });
        while !lines.is_done() {
            let (chunk_start, errors_before) = (lines.clone(), errors.len());
            let batch = match (self.sink.direct(), &mut writer) {
                (Some(direct), Some(LentWriter { writer: w, .. })) => {
                    if !self.direct_logged.swap(true, Ordering::Relaxed) {
                        tracing::debug!(
                            input = %self.id,
                            "writing lines straight into buffer records: no processor, \
                             aggregator or output filter needs them as metrics"
                        );
                    }
                    let mut records = Vec::new();
                    errors.extend(lines.write_next(
                        WRITE_CHUNK_LINES,
                        self.max_line,
                        precision,
                        now,
                        tags,
                        &direct.tags,
                        direct.chunk,
                        w,
                        &mut records,
                    ));
                    records.extend(w.take_record());
                    Payload::Records(records)
                }
                _ => {
                    // Room for a line per 16 bytes: most lines are longer (the list grows
                    // if not).
                    let room = WRITE_CHUNK_LINES.min((body.len() - lines.pos()) / 16 + 1);
                    let mut metrics = Vec::with_capacity(room);
                    errors.extend(lines.parse_next(
                        WRITE_CHUNK_LINES,
                        self.max_line,
                        precision,
                        now,
                        &mut metrics,
                    ));
                    for m in &mut metrics {
                        for (k, v) in tags {
                            m.add_tag(*k, *v);
                        }
                    }
                    Payload::Metrics(metrics)
                }
            };
            let n = match &batch {
                Payload::Metrics(m) => m.len(),
                Payload::Records(r) => r.iter().map(|r| r.count as usize).sum(),
            };
            if n == 0 {
                continue;
            }
            // Each line makes at most one metric.
            let ahead = if queued.batches == 0 {
                lines_in(&body[lines.pos()..])
            } else {
                0
            };
            let sent = async {
                match batch {
                    Payload::Metrics(m) => self.sink.send_ahead(m, ahead).await,
                    Payload::Records(r) => self.sink.send_records(r, ahead).await,
                }
            };
            match tokio::time::timeout(self.write_timeout, sent).await {
                Ok(Ok(taken)) => {
                    if taken {
                        queued.metrics += n;
                        queued.batches += 1;
                    }
                }
                Ok(Err(SendError::Full {
                    reason,
                    retry_after,
                })) => {
                    if queued.batches > 0 {
                        let (since, pause) =
                            waiting.get_or_insert_with(|| (tokio::time::Instant::now(), ROOM_POLL));
                        if since.elapsed() < self.write_timeout {
                            tokio::time::sleep(*pause).await;
                            *pause = (*pause * 2).min(ROOM_POLL_MAX);
                            lines = chunk_start;
                            errors.truncate(errors_before);
                            continue;
                        }
                    }
                    self.rejected_requests.incr();
                    let reason = match queued.metrics {
                        0 => reason,
                        taken => format!(
                            "{reason}; {taken} metrics of this write were stored before it \
                             filled up and did not drain within write_timeout: a retry sends \
                             them again"
                        ),
                    };
                    return WriteOutcome::Busy(reason, retry_after);
                }
                Ok(Err(SendError::Failed(m))) => {
                    return WriteOutcome::Failed(StatusCode::SERVICE_UNAVAILABLE, m);
                }
                Ok(Err(SendError::Closed)) => {
                    return WriteOutcome::Failed(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the agent is shutting down".into(),
                    );
                }
                // Dropped unfinished: the batch may still reach the buffers, but the client
                // is told to send it again (a duplicate rather than a loss).
                Err(_) => {
                    return WriteOutcome::Failed(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the pipeline did not take the batch within write_timeout".into(),
                    );
                }
            }
        }
        match errors.first() {
            None => WriteOutcome::Ok,
            Some(first) => {
                self.parse_errors.add(errors.len() as i64);
                let msg = format!(
                    "partial write: unable to parse '{}': {} (line {}); {} bad line(s) dropped",
                    line_text(&body, first.line),
                    first.message,
                    first.line,
                    errors.len()
                );
                tracing::debug!(error = %msg, "bad line protocol");
                WriteOutcome::BadLines(msg)
            }
        }
    }
}

/// The text of 1-based line `n`, shortened for an error message.
fn line_text(body: &[u8], n: usize) -> String {
    let line = body.split(|&b| b == b'\n').nth(n - 1).unwrap_or_default();
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end_matches('\r');
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The options both listeners validate the same way. `max_body_size = 0` is Telegraf's "the
/// default" (32 MiB), and its sample config sets it.
pub(crate) fn check_write_options(
    parser_type: Option<&str>,
    max_body_size: &mut Size,
) -> Result<(), BuildError> {
    if let Some(p) = parser_type
        && p != "internal"
        && p != "upstream"
    {
        return Err(
            anyhow::anyhow!("parser_type must be \"internal\" or \"upstream\", not {p:?}").into(),
        );
    }
    if max_body_size.0 == 0 {
        *max_body_size = default_body();
    }
    Ok(())
}

pub(crate) const VERSION: &str = "1.8.10";

pub(crate) fn ping(req: &Request<Incoming>) -> Resp {
    let verbose =
        server::query_param(req.uri().query(), "verbose").is_some_and(|v| v == "true" || v == "1");
    let mut r = if verbose {
        server::respond(
            StatusCode::OK,
            "application/json",
            format!("{{\"version\":\"{VERSION}\"}}"),
        )
    } else {
        server::empty(StatusCode::NO_CONTENT)
    };
    r.headers_mut().insert(
        "X-Influxdb-Version",
        http::HeaderValue::from_static(VERSION),
    );
    r.headers_mut()
        .insert("X-Influxdb-Build", http::HeaderValue::from_static("OSS"));
    r
}

/// Helpers for the listeners' tests: start one, send it raw HTTP requests.
#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use crate::model::Metric;
    use crate::plugin::{BuildContext, InputPlugin, ServiceContext};
    use crate::registry::InputSpec;

    /// A running listener built from `toml`, its address, and the receiving end of its sink.
    pub(crate) struct Running {
        pub addr: String,
        pub rx: flume::Receiver<Vec<Metric>>,
        pub stop: tokio::sync::watch::Sender<bool>,
        pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    /// A listener on the direct route (as the agent runs one without processors), its
    /// records decoded for `rx`.
    pub(crate) async fn start(spec: &InputSpec, toml_text: &str, capacity: usize) -> Running {
        let (sink, rx) = crate::plugin::test_sink(capacity);
        let sink = sink.with_direct(crate::plugin::Direct {
            tags: Vec::new(),
            chunk: 1000,
            counted: std::sync::Arc::new(|_| {}),
        });
        start_with(spec, toml_text, sink, rx).await
    }

    /// Like [`start`], with the sink given (a test that plays the pipeline itself).
    pub(crate) async fn start_with(
        spec: &InputSpec,
        toml_text: &str,
        sink: crate::plugin::MetricSink,
        rx: flume::Receiver<Vec<Metric>>,
    ) -> Running {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let table: toml::Table =
            toml::from_str(&format!("service_address = \"{addr}\"\n{toml_text}")).unwrap();
        let InputPlugin::Service(svc) = (spec.build)(table, &BuildContext::default()).unwrap()
        else {
            panic!("not a service input")
        };
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(svc.run(ServiceContext {
            sink,
            interval: Duration::from_secs(10),
            shutdown,
        }));
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Running {
            addr,
            rx,
            stop,
            task,
        }
    }

    /// A blocking HTTP/1.1 request; returns (status, headers+body text).
    pub(crate) fn request(
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        (status, out)
    }

    pub(crate) async fn req(
        addr: &str,
        method: &'static str,
        path: &str,
        headers: &[(&'static str, &'static str)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let (addr, path, headers) = (addr.to_string(), path.to_string(), headers.to_vec());
        tokio::task::spawn_blocking(move || request(&addr, method, &path, &headers, &body))
            .await
            .unwrap()
    }
}
