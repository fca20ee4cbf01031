//! One running output: its buffer and the flush task that writes batches from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sonde_plugins::Metric;
use sonde_plugins::plugin::{Output, WriteError};
use sonde_plugins::selfstat::{self, Stat, Stats};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::buffer::Buffer;
use super::{Rename, jittered};
use crate::config::OutputConfig;
use crate::filter::Filter;

/// What the flush task should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Run,
    /// Write everything buffered, giving up at the deadline, then close.
    Drain(Instant),
    /// Stop after the write in progress, leaving the buffer to a successor (reload).
    HandOver,
}

/// Counters of one output, Telegraf's `internal_write` fields.
struct WriteStats {
    _stats: Arc<Stats>,
    added: Stat,
    written: Stat,
    rejected: Stat,
    dropped: Stat,
    filtered: Stat,
    errors: Stat,
    write_time_ns: Stat,
    agent_written: Stat,
    agent_dropped: Stat,
    agent_rejected: Stat,
}

struct Shared {
    id: String,
    buffer: Mutex<Buffer>,
    batch_size: usize,
    batch_ready: Notify,
    flush_now: Notify,
    stats: WriteStats,
    last_drop_warning: Mutex<Option<Instant>>,
    /// The batch being written: out of the buffer but not yet delivered. Kept here so that a
    /// write cut off (shutdown deadline, reload) is handed over or counted, never lost unseen.
    in_flight: Mutex<Option<Arc<Vec<Metric>>>>,
    /// Set once the first connect has been tried (an endpoint that serves is listening then).
    connect_tried: watch::Sender<bool>,
}

pub struct RunningOutput {
    pub name: String,
    pub alias: Option<String>,
    filter: Filter,
    rename: Rename,
    shared: Arc<Shared>,
    mode: watch::Sender<Mode>,
    task: Option<JoinHandle<()>>,
}

/// The agent-wide counters that every output also adds to.
#[derive(Clone)]
pub struct AgentWriteStats {
    pub written: Stat,
    pub dropped: Stat,
    /// Metrics outputs refused for good (not a Telegraf field: kept for `--once`'s exit code).
    pub rejected: Stat,
}

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A server's Retry-After is honoured up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// How long a reload waits for an output's write in progress.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Overflow warnings are logged at most this often per output.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

impl RunningOutput {
    pub fn start(cfg: OutputConfig, agent: &AgentWriteStats) -> RunningOutput {
        let id = match &cfg.alias {
            Some(a) => format!("outputs.{}::{}", cfg.name, a),
            None => format!("outputs.{}", cfg.name),
        };
        let mut tags = vec![("output", cfg.name.as_str())];
        if let Some(a) = &cfg.alias {
            tags.push(("alias", a.as_str()));
        }
        let stats = selfstat::register("internal_write", &tags);
        stats
            .stat("buffer_limit")
            .set(cfg.metric_buffer_limit as i64);
        let ws = WriteStats {
            added: stats.stat("metrics_added"),
            written: stats.stat("metrics_written"),
            rejected: stats.stat("metrics_rejected"),
            dropped: stats.stat("metrics_dropped"),
            filtered: stats.stat("metrics_filtered"),
            errors: stats.stat("errors"),
            write_time_ns: stats.stat("write_time_ns"),
            agent_written: agent.written.clone(),
            agent_dropped: agent.dropped.clone(),
            agent_rejected: agent.rejected.clone(),
            _stats: stats.clone(),
        };
        let buffer = Buffer::new(
            cfg.metric_buffer_limit,
            cfg.metric_buffer_limit_bytes,
            ws.dropped.clone(),
            stats.stat("buffer_size"),
        );
        let shared = Arc::new(Shared {
            id,
            buffer: Mutex::new(buffer),
            batch_size: cfg.metric_batch_size.max(1),
            batch_ready: Notify::new(),
            flush_now: Notify::new(),
            stats: ws,
            last_drop_warning: Mutex::new(None),
            in_flight: Mutex::new(None),
            connect_tried: watch::Sender::new(false),
        });
        let (mode_tx, mode_rx) = watch::channel(Mode::Run);
        let task = tokio::spawn(flush_loop(
            cfg.plugin,
            shared.clone(),
            mode_rx,
            cfg.flush_interval,
            cfg.flush_jitter,
        ));
        RunningOutput {
            name: cfg.name,
            alias: cfg.alias,
            filter: cfg.filter,
            rename: Rename::new(cfg.name_override, cfg.name_prefix, cfg.name_suffix),
            shared,
            mode: mode_tx,
            task: Some(task),
        }
    }

    /// Resolves once the output's first connect was tried, successfully or not.
    pub async fn connect_tried(&self) {
        let mut rx = self.shared.connect_tried.subscribe();
        let _ = rx.wait_for(|tried| *tried).await;
    }

    /// Filters and buffers metrics for this output.
    pub fn add(&self, mut metrics: Vec<Metric>) {
        if !self.filter.is_empty() {
            let before = metrics.len();
            metrics.retain_mut(|m| self.filter.selects(m) && self.filter.trim(m));
            self.shared
                .stats
                .filtered
                .add((before - metrics.len()) as i64);
        }
        if !self.rename.is_empty() {
            for m in &mut metrics {
                self.rename.apply(m);
            }
        }
        self.add_owned(metrics);
    }

    /// Buffers metrics that already passed the filter.
    pub fn add_owned(&self, metrics: Vec<Metric>) {
        if metrics.is_empty() {
            return;
        }
        let n = metrics.len();
        let (ready, drops) = {
            let mut buf = self.shared.buffer.lock().unwrap();
            buf.push(metrics);
            let drops = std::mem::take(&mut buf.unreported_drops);
            (buf.len() >= self.shared.batch_size, drops)
        };
        self.shared.stats.added.add(n as i64);
        if drops > 0 {
            self.shared.stats.agent_dropped.add(drops as i64);
            self.warn_drops(drops);
        }
        if ready {
            self.shared.batch_ready.notify_one();
        }
    }

    fn warn_drops(&self, drops: u64) {
        let mut last = self.shared.last_drop_warning.lock().unwrap();
        if last.is_none_or(|t| t.elapsed() >= DROP_WARNING_EVERY) {
            *last = Some(Instant::now());
            warn!(
                output = %self.shared.id,
                dropped = drops,
                total_dropped = self.shared.stats.dropped.get(),
                "buffer full: dropped the oldest metrics"
            );
        }
    }

    pub fn flush_now(&self) {
        self.shared.flush_now.notify_one();
    }

    /// Writes everything buffered (until `deadline`), closes the output and waits for that.
    pub async fn drain(mut self, deadline: Instant) {
        let _ = self.mode.send(Mode::Drain(deadline));
        // A write that hangs past its own timeout must not hold shutdown past the deadline.
        self.join(deadline + Duration::from_secs(1)).await;
        // Whatever is still here was not written: a write cut off, or a flush task that died
        // (a panicking output) before it could drain. Count it rather than lose it unseen.
        self.shared.count_lost();
    }

    /// Stops the flush task after any write in progress and returns what is still buffered,
    /// including a batch whose write had to be abandoned.
    pub async fn hand_over(mut self) -> Vec<Metric> {
        let _ = self.mode.send(Mode::HandOver);
        self.join(Instant::now() + HAND_OVER_TIMEOUT).await;
        let mut metrics = self.shared.take_in_flight();
        metrics.extend(self.shared.buffer.lock().unwrap().drain_all());
        metrics
    }

    /// Waits for the flush task until `limit`, then aborts it. Returns whether it finished.
    async fn join(&mut self, limit: Instant) -> bool {
        let Some(mut task) = self.task.take() else {
            return true;
        };
        if tokio::time::timeout_at(limit.into(), &mut task)
            .await
            .is_ok()
        {
            return true;
        }
        warn!(output = %self.shared.id, "output did not stop in time; abandoning its write");
        task.abort();
        let _ = task.await;
        false
    }
}

impl Shared {
    fn take_in_flight(&self) -> Vec<Metric> {
        self.in_flight
            .lock()
            .unwrap()
            .take()
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default()
    }

    /// Counts everything not yet written as dropped: shutdown gave up on it.
    fn count_lost(&self) {
        let lost = self.take_in_flight().len() + self.buffer.lock().unwrap().drain_all().len();
        if lost > 0 {
            self.stats.dropped.add(lost as i64);
            self.stats.agent_dropped.add(lost as i64);
            error!(output = %self.id, lost, "shutdown deadline passed before everything was written");
        }
    }
}

async fn flush_loop(
    mut output: Box<dyn Output>,
    shared: Arc<Shared>,
    mut mode: watch::Receiver<Mode>,
    flush_interval: Duration,
    flush_jitter: Duration,
) {
    let mut connected = false;
    let mut failures: u32 = 0;
    // Connect at once rather than after the first flush interval: an output that serves
    // (prometheus_client) listens from the start, and a bad endpoint is reported right away.
    let mut retry_in: Option<Duration> = Some(Duration::ZERO);
    // The flush timer runs on its own: a full batch written early does not postpone the
    // partial batch behind it.
    let mut next_flush = tokio::time::Instant::now() + jittered(flush_interval, flush_jitter);
    loop {
        let wake = match retry_in {
            Some(d) => tokio::time::Instant::now() + d,
            None => next_flush,
        };
        let batch_trigger = retry_in.is_none();
        let full_only = tokio::select! {
            _ = tokio::time::sleep_until(wake) => false,
            _ = shared.batch_ready.notified(), if batch_trigger => true,
            _ = shared.flush_now.notified() => false,
            _ = mode.changed() => false,
        };
        if !full_only && tokio::time::Instant::now() >= next_flush {
            next_flush = tokio::time::Instant::now() + jittered(flush_interval, flush_jitter);
        }
        let current = *mode.borrow();
        match current {
            Mode::HandOver => {
                // Release what the output holds (a listening socket, connections) so its
                // successor can take them over.
                if connected && let Err(e) = output.close().await {
                    warn!(output = %shared.id, error = %format!("{e:#}"), "close failed");
                }
                return;
            }
            Mode::Drain(deadline) => {
                drain(&mut output, &shared, &mut connected, deadline).await;
                return;
            }
            Mode::Run => {}
        }
        if !connected {
            let result = output.connect().await;
            let first = !shared.connect_tried.send_replace(true);
            match result {
                // The connect at start only connects: what the inputs gathered meanwhile waits
                // for a full batch or the flush timer, as it would for a connected output.
                Ok(()) if first => {
                    connected = true;
                    retry_in = None;
                    continue;
                }
                Ok(()) => connected = true,
                Err(e) => {
                    shared.stats.errors.incr();
                    failures += 1;
                    let d = backoff(failures, None);
                    error!(output = %shared.id, error = %format!("{e:#}"), retry_in = ?d, "connect failed");
                    retry_in = Some(d);
                    continue;
                }
            }
        }
        match write_batches(&mut output, &shared, full_only, &mode).await {
            Ok(()) => {
                failures = 0;
                retry_in = None;
            }
            Err(retry_after) => {
                failures += 1;
                retry_in = Some(backoff(failures, retry_after));
            }
        }
    }
}

/// Writes batches from the buffer. With `full_only`, stops when less than a batch is left.
/// Returns `Err(retry_after)` after a retryable failure (the batch is back in the buffer).
async fn write_batches(
    output: &mut Box<dyn Output>,
    shared: &Shared,
    full_only: bool,
    mode: &watch::Receiver<Mode>,
) -> Result<(), Option<Duration>> {
    loop {
        if *mode.borrow() == Mode::HandOver {
            return Ok(());
        }
        let batch = {
            let mut buf = shared.buffer.lock().unwrap();
            if buf.is_empty() || (full_only && buf.len() < shared.batch_size) {
                return Ok(());
            }
            buf.take(shared.batch_size)
        };
        let n = batch.len() as i64;
        let started = Instant::now();
        let batch = Arc::new(batch);
        *shared.in_flight.lock().unwrap() = Some(batch.clone());
        let result = output.write(&batch).await;
        shared.in_flight.lock().unwrap().take();
        shared
            .stats
            .write_time_ns
            .set(started.elapsed().as_nanos() as i64);
        match result {
            Ok(()) => {
                shared.stats.written.add(n);
                shared.stats.agent_written.add(n);
                debug!(output = %shared.id, metrics = n, elapsed = ?started.elapsed(), "wrote batch");
            }
            Err(WriteError::Retry {
                reason,
                retry_after,
            }) => {
                shared.stats.errors.incr();
                let buffered = {
                    let mut buf = shared.buffer.lock().unwrap();
                    buf.put_back(Arc::unwrap_or_clone(batch));
                    let drops = std::mem::take(&mut buf.unreported_drops);
                    shared.stats.agent_dropped.add(drops as i64);
                    buf.len()
                };
                warn!(output = %shared.id, error = %reason, buffered, "write failed, will retry");
                return Err(retry_after);
            }
            Err(WriteError::Reject { reason }) => {
                shared.stats.errors.incr();
                shared.stats.rejected.add(n);
                shared.stats.agent_rejected.add(n);
                error!(output = %shared.id, rejected = n, error = %reason, "batch rejected permanently, dropped");
            }
            Err(WriteError::Partial { rejected, reason }) => {
                let rejected = (rejected as i64).min(n);
                shared.stats.errors.incr();
                shared.stats.rejected.add(rejected);
                shared.stats.agent_rejected.add(rejected);
                shared.stats.written.add(n - rejected);
                shared.stats.agent_written.add(n - rejected);
                error!(output = %shared.id, rejected, error = %reason, "part of the batch rejected permanently, dropped");
            }
        }
    }
}

async fn drain(
    output: &mut Box<dyn Output>,
    shared: &Shared,
    connected: &mut bool,
    deadline: Instant,
) {
    let (_keep_running, mode) = watch::channel(Mode::Run);
    let mut failures = 0;
    let finished = tokio::time::timeout_at(deadline.into(), async {
        loop {
            if !*connected {
                match output.connect().await {
                    Ok(()) => *connected = true,
                    Err(e) => {
                        warn!(output = %shared.id, error = %format!("{e:#}"), "connect failed during shutdown");
                        failures += 1;
                        tokio::time::sleep(backoff(failures, None)).await;
                        continue;
                    }
                }
            }
            match write_batches(output, shared, false, &mode).await {
                Ok(()) => return,
                Err(retry_after) => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures, retry_after)).await;
                }
            }
        }
    })
    .await;
    if finished.is_err() {
        shared.count_lost();
    }
    if *connected && let Err(e) = output.close().await {
        warn!(output = %shared.id, error = %format!("{e:#}"), "close failed");
    }
    info!(output = %shared.id, "stopped");
}

/// Exponential backoff with ±20% jitter, or the server's Retry-After when it gave one.
fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(MAX_RETRY_AFTER);
    }
    let exp = MIN_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = exp.min(MAX_BACKOFF);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b1 = backoff(1, None);
        assert!(b1 >= MIN_BACKOFF.mul_f64(0.8) && b1 <= MIN_BACKOFF.mul_f64(1.2));
        let b3 = backoff(3, None);
        assert!(b3 >= (MIN_BACKOFF * 4).mul_f64(0.8));
        assert!(backoff(40, None) <= MAX_BACKOFF.mul_f64(1.2));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
    }
}
