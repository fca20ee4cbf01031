//! One running output: its buffer and the flush task that writes batches from it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sonde_plugins::Metric;
use sonde_plugins::plugin::{Output, WriteError};
use sonde_plugins::selfstat::{self, Stat, Stats};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::buffer::{Buffer, DiskConfig, Limit, Record, SyncPolicy};
use super::{Rename, jittered};
use crate::config::{BufferStrategy, OutputConfig, Overflow};
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
    /// Set once the first connect has been tried (an endpoint that serves is listening then).
    connect_tried: watch::Sender<bool>,
    /// When the flush task tries next after a failure (ms), for the Retry-After of refusals.
    retry_in_ms: AtomicU64,
    /// The longest backoff between retries: the flush interval (Telegraf retries every
    /// flush), within [MIN_BACKOFF, MAX_BACKOFF], so a peer that comes back after a long
    /// outage gets the backlog within about one flush interval.
    max_backoff: Duration,
}

pub struct RunningOutput {
    pub name: String,
    pub alias: Option<String>,
    filter: Filter,
    rename: Rename,
    overflow: Overflow,
    on_disk: bool,
    shared: Arc<Shared>,
    mode: watch::Sender<Mode>,
    task: Option<JoinHandle<()>>,
    sync_task: Option<JoinHandle<()>>,
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
    /// Starts the output with its buffer: `carried` is what the same output buffered before a
    /// reload (kept as it is when the storage did not change, else moved record by record).
    /// `dir` is this output's own disk buffer directory, used with the disk strategy.
    pub fn start(
        cfg: OutputConfig,
        agent: &AgentWriteStats,
        dir: std::path::PathBuf,
        carried: Option<Buffer>,
        fallback: bool,
    ) -> Result<RunningOutput, String> {
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
        let size = stats.stat("buffer_size");
        let buffer = open_buffer(&cfg, &id, &ws, size, dir, carried, fallback)?;
        let on_disk = buffer.disk_dir().is_some();
        let sync_every = match buffer.sync_policy() {
            Some(SyncPolicy::Every(d)) => Some(d),
            _ => None,
        };
        let shared = Arc::new(Shared {
            id,
            buffer: Mutex::new(buffer),
            batch_size: cfg.metric_batch_size.max(1),
            batch_ready: Notify::new(),
            flush_now: Notify::new(),
            stats: ws,
            last_drop_warning: Mutex::new(None),
            connect_tried: watch::Sender::new(false),
            retry_in_ms: AtomicU64::new(0),
            max_backoff: cfg.flush_interval.clamp(MIN_BACKOFF, MAX_BACKOFF),
        });
        let (mode_tx, mode_rx) = watch::channel(Mode::Run);
        let task = tokio::spawn(flush_loop(
            cfg.plugin,
            shared.clone(),
            mode_rx,
            cfg.flush_interval,
            cfg.flush_jitter,
        ));
        let sync_task = sync_every.map(|every| tokio::spawn(sync_loop(shared.clone(), every)));
        Ok(RunningOutput {
            name: cfg.name,
            alias: cfg.alias,
            filter: cfg.filter,
            rename: Rename::new(cfg.name_override, cfg.name_prefix, cfg.name_suffix),
            overflow: cfg.overflow,
            on_disk,
            shared,
            mode: mode_tx,
            task: Some(task),
            sync_task,
        })
    }

    /// Resolves once the output's first connect was tried, successfully or not.
    pub async fn connect_tried(&self) {
        let mut rx = self.shared.connect_tried.subscribe();
        let _ = rx.wait_for(|tried| *tried).await;
    }

    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Whether the output takes every metric unchanged (no filter, no rename), so that it can
    /// share the records encoded for others.
    pub fn takes_all(&self) -> bool {
        self.filter.is_empty() && self.rename.is_empty()
    }

    pub fn buffers_on_disk(&self) -> bool {
        self.on_disk
    }

    pub fn batch_size(&self) -> usize {
        self.shared.batch_size
    }

    /// The records of what this output takes from `batch`: filtered, trimmed and renamed
    /// copies of the selected metrics only, and how many it filtered out.
    pub fn select(&self, batch: &[Metric]) -> (Vec<Record>, usize) {
        let mut mine = Vec::new();
        for m in batch {
            if !self.filter.selects(m) {
                continue;
            }
            let mut m = m.clone();
            if !self.filter.trim(&mut m) {
                continue;
            }
            self.rename.apply(&mut m);
            mine.push(m);
        }
        let filtered = batch.len() - mine.len();
        (
            Record::encode_chunks(&mine, self.shared.batch_size),
            filtered,
        )
    }

    /// `records` as this output's buffer will store them: the ones it would compress
    /// (a backlog's, the disk's) compressed here, outside the lock the flush task leases
    /// from, and before [`RunningOutput::refuses`] weighs them. `compressed` holds the
    /// compressed form of each record once made: outputs that share records share it too,
    /// instead of compressing the same bytes once each and keeping a copy each.
    pub fn prepare(
        &self,
        records: &[Record],
        compressed: &mut [Option<Record>],
        scratch: &mut Vec<u8>,
    ) -> Vec<Record> {
        let compress: Vec<bool> = {
            let buf = self.shared.buffer.lock().unwrap();
            let mut before = 0;
            records
                .iter()
                .map(|r| {
                    let c = buf.compresses(r, before);
                    before += buf.cost(std::slice::from_ref(r));
                    c
                })
                .collect()
        };
        records
            .iter()
            .zip(compressed)
            .zip(compress)
            .map(|((r, done), c)| match c {
                true => done
                    .get_or_insert_with(|| r.clone().compressed(scratch))
                    .clone(),
                false => r.clone(),
            })
            .collect()
    }

    /// The bound a listener's batch (and the `ahead` metrics its write still sends) would
    /// exceed, when this output pushes back rather than dropping its oldest.
    pub fn refuses(&self, records: &[Record], ahead: usize) -> Option<Limit> {
        if self.overflow != Overflow::Backpressure {
            return None;
        }
        self.shared
            .buffer
            .lock()
            .unwrap()
            .would_overflow(records, ahead)
    }

    /// How long a refused sender should wait: the output's next retry, at least a second.
    pub fn retry_after(&self) -> Duration {
        Duration::from_millis(self.shared.retry_in_ms.load(Ordering::Relaxed))
            .max(Duration::from_secs(1))
    }

    /// Buffers records (dropping the oldest when full). An error means the storage could not
    /// take them (a disk error); they are counted as dropped.
    pub fn store(&self, records: Vec<Record>, filtered: usize) -> Result<(), String> {
        if filtered > 0 {
            self.shared.stats.filtered.add(filtered as i64);
        }
        if records.is_empty() {
            return Ok(());
        }
        let n: i64 = records.iter().map(|r| i64::from(r.count)).sum();
        let (result, ready, drops, limit) = {
            let mut buf = self.shared.buffer.lock().unwrap();
            let result = buf.push(records);
            let drops = std::mem::take(&mut buf.unreported_drops);
            (
                result,
                buf.available() >= self.shared.batch_size,
                drops,
                buf.last_limit,
            )
        };
        if let Err(e) = &result {
            self.shared.stats.dropped.add(n);
            self.shared.stats.agent_dropped.add(n);
            self.shared.stats.errors.incr();
            error!(output = %self.shared.id, error = %e, dropped = n, "buffer cannot store metrics");
        } else {
            self.shared.stats.added.add(n);
        }
        if drops > 0 {
            self.shared.stats.agent_dropped.add(drops as i64);
            self.warn_drops(drops, limit);
        }
        if ready {
            self.shared.batch_ready.notify_one();
        }
        result.map_err(|e| format!("{}: buffer cannot store metrics: {e}", self.shared.id))
    }

    fn warn_drops(&self, drops: u64, limit: Option<Limit>) {
        let mut last = self.shared.last_drop_warning.lock().unwrap();
        if last.is_none_or(|t| t.elapsed() >= DROP_WARNING_EVERY) {
            *last = Some(Instant::now());
            let limit = limit.map(|l| l.to_string()).unwrap_or_default();
            warn!(
                output = %self.shared.id,
                dropped = drops,
                total_dropped = self.shared.stats.dropped.get(),
                %limit,
                "buffer full: dropped the oldest metrics"
            );
        }
    }

    pub fn flush_now(&self) {
        self.shared.flush_now.notify_one();
    }

    /// Writes everything buffered (until `deadline`), closes the output and waits for that.
    /// Returns the metrics lost: what a memory buffer still held at the deadline. A disk
    /// buffer keeps them for the next start.
    pub async fn drain(mut self, deadline: Instant) -> u64 {
        let _ = self.mode.send(Mode::Drain(deadline));
        // A write that hangs past its own timeout must not hold shutdown past the deadline.
        self.join(deadline + Duration::from_secs(1)).await;
        self.stop_sync();
        // Whatever is still here was not written: a write cut off, or a flush task that died
        // (a panicking output) before it could drain.
        self.shared.keep_or_count_lost()
    }

    /// Stops the flush task after any write in progress and returns the buffer, with a batch
    /// whose write had to be abandoned back at its front.
    pub async fn hand_over(mut self) -> Buffer {
        let _ = self.mode.send(Mode::HandOver);
        self.join(Instant::now() + HAND_OVER_TIMEOUT).await;
        self.stop_sync();
        let mut buf = self.shared.buffer.lock().unwrap();
        buf.release();
        let _ = buf.sync();
        std::mem::replace(
            &mut *buf,
            Buffer::memory(1, 1, Stat::default(), Stat::default()),
        )
    }

    fn stop_sync(&mut self) {
        if let Some(t) = self.sync_task.take() {
            t.abort();
        }
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
    /// At the end: a disk buffer keeps what is left for the next start; a memory buffer
    /// loses it, counted and reported as an error. Returns the metrics lost.
    fn keep_or_count_lost(&self) -> u64 {
        let mut buf = self.buffer.lock().unwrap();
        buf.release();
        let left = buf.len() as u64;
        if left == 0 {
            return 0;
        }
        if let Some(dir) = buf.disk_dir().map(|d| d.display().to_string()) {
            match buf.sync() {
                Ok(()) => {
                    info!(output = %self.id, metrics = left, dir = %dir, "kept unwritten metrics in the disk buffer for the next start")
                }
                Err(e) => {
                    error!(output = %self.id, metrics = left, error = %e, "disk buffer: final sync failed")
                }
            }
            return 0;
        }
        let _ = buf.take_all();
        drop(buf);
        self.stats.dropped.add(left as i64);
        self.stats.agent_dropped.add(left as i64);
        error!(output = %self.id, lost = left, "stopped before everything was written: the memory buffer's metrics are lost (buffer_strategy = \"disk\" keeps them)");
        left
    }
}

/// Opens the buffer the configuration asks for, taking over `carried`.
fn open_buffer(
    cfg: &OutputConfig,
    id: &str,
    ws: &WriteStats,
    size: Stat,
    dir: std::path::PathBuf,
    carried: Option<Buffer>,
    fallback: bool,
) -> Result<Buffer, String> {
    let want_dir = match &cfg.buffer_strategy {
        BufferStrategy::Memory => None,
        BufferStrategy::Disk { .. } => Some(dir.as_path()),
    };
    let (limit_bytes, sync) = match &cfg.buffer_strategy {
        BufferStrategy::Memory => (cfg.metric_buffer_limit_bytes, None),
        BufferStrategy::Disk { limit_bytes, sync } => (*limit_bytes, Some(*sync)),
    };
    let mut carried = carried;
    if let Some(b) = &mut carried
        && b.disk_dir() == want_dir
    {
        let mut b = carried.take().expect("checked");
        b.reconfigure(
            cfg.metric_buffer_limit,
            limit_bytes,
            sync,
            ws.dropped.clone(),
            size,
        );
        return Ok(b);
    }
    let mut buffer = match &cfg.buffer_strategy {
        BufferStrategy::Memory => Buffer::memory(
            cfg.metric_buffer_limit,
            cfg.metric_buffer_limit_bytes,
            ws.dropped.clone(),
            size,
        ),
        BufferStrategy::Disk { limit_bytes, sync } => {
            let dc = DiskConfig {
                dir: dir.clone(),
                limit_bytes: *limit_bytes,
                sync: *sync,
            };
            match Buffer::disk(&dc, ws.dropped.clone(), size.clone()) {
                Err(e) if fallback => {
                    error!(output = %id, error = %e, "cannot open the disk buffer; buffering in memory");
                    Buffer::memory(
                        cfg.metric_buffer_limit,
                        cfg.metric_buffer_limit_bytes,
                        ws.dropped.clone(),
                        size,
                    )
                }
                Err(e) => return Err(format!("{id}: disk buffer: {e}")),
                Ok((b, rec)) => {
                    if rec.corrupt_records > 0 || rec.truncated_bytes > 0 {
                        warn!(output = %id, dir = %dir.display(), corrupt_records = rec.corrupt_records, truncated_bytes = rec.truncated_bytes, "disk buffer: skipped damaged records (a crash while writing, or disk corruption)");
                    }
                    if rec.metrics > 0 {
                        info!(output = %id, metrics = rec.metrics, dir = %dir.display(), "disk buffer: resuming with metrics left by the previous run");
                    }
                    b
                }
            }
        }
    };
    if let Some(mut old) = carried {
        // The storage changed (memory <-> disk, or another directory): move the records.
        match old.take_all() {
            Ok(records) => {
                if let Err(e) = buffer.push(records) {
                    error!(output = %id, error = %e, "cannot move buffered metrics to the new buffer");
                }
            }
            Err(e) => error!(output = %id, error = %e, "cannot read the old buffer"),
        }
        let drops = std::mem::take(&mut buffer.unreported_drops);
        ws.agent_dropped.add(drops as i64);
    }
    Ok(buffer)
}

/// Forces a disk buffer's appends to the disk every `every`.
async fn sync_loop(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pending = shared.buffer.lock().unwrap().pending_sync();
        let r = match pending {
            Ok(Some((segment, position))) => tokio::task::spawn_blocking(move || {
                segment.sync_data()?;
                position.sync_data()
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            shared.stats.errors.incr();
            error!(output = %shared.id, error = %e, "disk buffer: sync failed");
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
    let mut reuse = Reuse::default();
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
                drain(&mut output, &shared, &mut connected, deadline, &mut reuse).await;
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
                    let d = backoff(failures, None, shared.max_backoff);
                    error!(output = %shared.id, error = %format!("{e:#}"), retry_in = ?d, "connect failed");
                    retry_in = Some(d);
                    continue;
                }
            }
        }
        match write_batches(&mut output, &shared, full_only, &mode, &mut reuse).await {
            Ok(()) => {
                failures = 0;
                retry_in = None;
            }
            Err(retry_after) => {
                failures += 1;
                retry_in = Some(backoff(failures, retry_after, shared.max_backoff));
            }
        }
        shared.retry_in_ms.store(
            retry_in.map_or(0, |d| d.as_millis() as u64),
            Ordering::Relaxed,
        );
    }
}

/// A batch out for a write: decoded, or the records as they are for an output that reads
/// them itself.
enum Leased {
    Metrics(Vec<Metric>),
    Records(Vec<Record>),
}

/// The metrics of written batches, kept by an output's task so that decoding the next batch
/// reuses their allocations (see `record::decode_reusing`).
#[derive(Default)]
struct Reuse {
    batch: Vec<Metric>,
    spare: Vec<Metric>,
}

impl Reuse {
    /// Takes back a written batch, keeping at most one batch of spare metrics.
    fn recycle(&mut self, mut batch: Vec<Metric>, batch_size: usize) {
        let keep = batch_size.saturating_sub(self.spare.len()).min(batch.len());
        self.spare.extend(batch.drain(..keep));
        batch.clear();
        self.batch = batch;
    }
}

/// Writes batches from the buffer. With `full_only`, stops when less than a batch is left.
/// Returns `Err(retry_after)` after a retryable failure (the batch is back in the buffer).
async fn write_batches(
    output: &mut Box<dyn Output>,
    shared: &Shared,
    full_only: bool,
    mode: &watch::Receiver<Mode>,
    reuse: &mut Reuse,
) -> Result<(), Option<Duration>> {
    loop {
        if *mode.borrow() == Mode::HandOver {
            return Ok(());
        }
        let leased = {
            let mut buf = shared.buffer.lock().unwrap();
            if buf.available() == 0 || (full_only && buf.available() < shared.batch_size) {
                return Ok(());
            }
            let leased = if output.writes_records() {
                buf.lease_records(shared.batch_size).map(Leased::Records)
            } else {
                let mut batch = std::mem::take(&mut reuse.batch);
                buf.lease_into(shared.batch_size, &mut batch, &mut reuse.spare)
                    .map(|()| Leased::Metrics(batch))
            };
            match leased {
                Ok(l) => l,
                Err(e) => {
                    shared.stats.errors.incr();
                    error!(output = %shared.id, error = %e, "disk buffer: cannot read");
                    return Err(None);
                }
            }
        };
        let n = match &leased {
            Leased::Metrics(batch) => batch.len(),
            Leased::Records(records) => records.iter().map(|r| r.count as usize).sum(),
        };
        if n == 0 {
            // Leased records that could not be decoded (counted as dropped).
            if let Leased::Metrics(batch) = leased {
                reuse.batch = batch;
            }
            ack(shared);
            continue;
        }
        let n = n as i64;
        let started = Instant::now();
        let result = match leased {
            Leased::Metrics(batch) => {
                let result = output.write(&batch).await;
                reuse.recycle(batch, shared.batch_size);
                result
            }
            Leased::Records(records) => {
                let bytes: Vec<&[u8]> = records.iter().map(|r| &r.data[..]).collect();
                output.write_records(&bytes).await
            }
        };
        shared
            .stats
            .write_time_ns
            .set(started.elapsed().as_nanos() as i64);
        match result {
            Ok(()) => {
                ack(shared);
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
                    buf.release();
                    let drops = std::mem::take(&mut buf.unreported_drops);
                    shared.stats.agent_dropped.add(drops as i64);
                    buf.len()
                };
                warn!(output = %shared.id, error = %reason, buffered, "write failed, will retry");
                return Err(retry_after);
            }
            Err(WriteError::Reject { reason }) => {
                ack(shared);
                shared.stats.errors.incr();
                shared.stats.rejected.add(n);
                shared.stats.agent_rejected.add(n);
                error!(output = %shared.id, rejected = n, error = %reason, "batch rejected permanently, dropped");
            }
            Err(WriteError::Partial { rejected, reason }) => {
                ack(shared);
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

/// The leased batch is done with (written, or rejected for good).
fn ack(shared: &Shared) {
    if let Err(e) = shared.buffer.lock().unwrap().ack() {
        shared.stats.errors.incr();
        error!(output = %shared.id, error = %e, "disk buffer: cannot save the read position");
    }
}

async fn drain(
    output: &mut Box<dyn Output>,
    shared: &Shared,
    connected: &mut bool,
    deadline: Instant,
    reuse: &mut Reuse,
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
                        tokio::time::sleep(backoff(failures, None, shared.max_backoff)).await;
                        continue;
                    }
                }
            }
            match write_batches(output, shared, false, &mode, reuse).await {
                Ok(()) => return,
                Err(retry_after) => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures, retry_after, shared.max_backoff)).await;
                }
            }
        }
    })
    .await;
    if finished.is_err() {
        warn!(output = %shared.id, "shutdown deadline passed before everything was written");
    }
    if *connected && let Err(e) = output.close().await {
        warn!(output = %shared.id, error = %format!("{e:#}"), "close failed");
    }
    info!(output = %shared.id, "stopped");
}

/// Exponential backoff up to `cap` with ±20% jitter, or the server's Retry-After when it gave
/// one.
fn backoff(failures: u32, retry_after: Option<Duration>, cap: Duration) -> Duration {
    if let Some(d) = retry_after {
        return d.min(MAX_RETRY_AFTER);
    }
    let exp = MIN_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = exp.min(cap);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b1 = backoff(1, None, MAX_BACKOFF);
        assert!(b1 >= MIN_BACKOFF.mul_f64(0.8) && b1 <= MIN_BACKOFF.mul_f64(1.2));
        let b3 = backoff(3, None, MAX_BACKOFF);
        assert!(b3 >= (MIN_BACKOFF * 4).mul_f64(0.8));
        assert!(backoff(40, None, MAX_BACKOFF) <= MAX_BACKOFF.mul_f64(1.2));
        // Capped at the flush interval: the default 10s, not a minute.
        let ten = Duration::from_secs(10);
        let b40 = backoff(40, None, ten);
        assert!(
            b40 >= ten.mul_f64(0.8) && b40 <= ten.mul_f64(1.2),
            "{b40:?}"
        );
        // The server's Retry-After wins over the cap.
        assert_eq!(
            backoff(1, Some(Duration::from_secs(30)), ten),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(100_000)), ten),
            MAX_RETRY_AFTER
        );
    }
}
