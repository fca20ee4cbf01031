//! The running pipeline: inputs → processors → aggregators → per-output buffers → outputs.

pub mod buffer;
mod input;
mod output;
mod process;

pub use buffer::SyncPolicy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_plugins::Metric;
use sonde_plugins::model::now_ns;
use sonde_plugins::plugin::{Batch, Delivery, InputPlugin, PipelineSender};
use sonde_plugins::selfstat::{self, Stats};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use buffer::{Buffer, Record};
use input::PreparedInput;
use output::{AgentWriteStats, RunningOutput};
use process::{Chain, RunningAggregator, RunningProcessor};

/// The estimated bytes of the batches waiting between the inputs and the processor task.
/// Bounded so a slow processor pushes back on the inputs instead of growing without limit.
/// The processor task encodes far faster than the network delivers, so a few MiB keep it
/// busy; at 16 MiB the queue added about 4.5 MB to peak RSS under the remote-write bench's
/// burst of listener writes.
const QUEUE_BYTES: u32 = 4 << 20;
/// How long inputs get to stop before they are abandoned.
const INPUT_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A plugin's name_override, name_prefix and name_suffix, applied in Telegraf's order.
#[derive(Default)]
pub(crate) struct Rename {
    name_override: Option<sonde_plugins::Str>,
    name_prefix: Option<sonde_plugins::Str>,
    name_suffix: Option<sonde_plugins::Str>,
}

impl Rename {
    pub fn new(
        name_override: Option<String>,
        prefix: Option<String>,
        suffix: Option<String>,
    ) -> Self {
        Rename {
            name_override: name_override.map(Into::into),
            name_prefix: prefix.map(Into::into),
            name_suffix: suffix.map(Into::into),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.name_override.is_none() && self.name_prefix.is_none() && self.name_suffix.is_none()
    }

    pub fn apply(&self, m: &mut Metric) {
        if let Some(n) = &self.name_override {
            m.name = n.clone();
        }
        if let Some(p) = &self.name_prefix {
            m.name.insert_str(0, p);
        }
        if let Some(s) = &self.name_suffix {
            m.name.push_str(s);
        }
    }
}

pub(crate) fn jittered(base: Duration, jitter: Duration) -> Duration {
    base + jitter.mul_f64(fastrand::f64())
}

/// Agent-wide self-metrics (`internal_agent`).
struct AgentStats {
    _stats: Arc<Stats>,
    write: AgentWriteStats,
    gathered: selfstat::Stat,
    gather_errors: selfstat::Stat,
}

impl AgentStats {
    fn register() -> Self {
        let stats = selfstat::register("internal_agent", &[("version", env!("CARGO_PKG_VERSION"))]);
        AgentStats {
            write: AgentWriteStats {
                written: stats.stat("metrics_written"),
                dropped: stats.stat("metrics_dropped"),
                rejected: selfstat::Stat::default(),
            },
            gathered: stats.stat("metrics_gathered"),
            gather_errors: stats.stat("gather_errors"),
            _stats: stats,
        }
    }
}

/// Identity of an output across a reload: its name, alias and how many came before it with
/// the same name and alias. Buffered metrics move to the output with the same identity, and
/// its disk buffer directory is named after it, so editing an option keeps the backlog.
type OutputKey = (String, Option<String>, usize);

fn output_keys<'a>(outputs: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> Vec<OutputKey> {
    let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
    outputs
        .map(|(n, a)| {
            let k = (n.to_string(), a.map(str::to_string));
            let i = seen.entry(k.clone()).or_default();
            *i += 1;
            (k.0, k.1, *i - 1)
        })
        .collect()
}

/// The directory name of an output's disk buffer: `influxdb_v2`, `influxdb_v2-central` (an
/// alias), `influxdb_v2-2` (the second without an alias).
fn buffer_dir_name((name, alias, index): &OutputKey) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut d = clean(name);
    if let Some(a) = alias {
        d.push('-');
        d.push_str(&clean(a));
    }
    if *index > 0 {
        d.push_str(&format!("-{}", index + 1));
    }
    d
}

/// Starts every output with its buffer; `carried` holds the buffers of a previous
/// configuration.
fn start_outputs(
    outputs: Vec<crate::config::OutputConfig>,
    stats: &AgentStats,
    mut carried: HashMap<OutputKey, Buffer>,
    fallback: bool,
) -> Result<Vec<RunningOutput>, String> {
    let keys = output_keys(
        outputs
            .iter()
            .map(|o| (o.name.as_str(), o.alias.as_deref())),
    );
    let mut started = Vec::with_capacity(outputs.len());
    for (o, key) in outputs.into_iter().zip(keys) {
        let dir = o.buffer_directory.join(buffer_dir_name(&key));
        let old = carried.remove(&key);
        if let Some(b) = &old
            && !b.is_empty()
        {
            info!(output = %key.0, metrics = b.len(), "kept buffered metrics across reload");
        }
        started.push(RunningOutput::start(o, &stats.write, dir, old, fallback)?);
    }
    for (key, buffer) in carried {
        if !buffer.is_empty() && buffer.disk_dir().is_none() {
            warn!(output = %key.0, lost = buffer.len(), "output removed by reload: its buffered metrics are dropped");
            stats.write.dropped.add(buffer.len() as i64);
        }
    }
    Ok(started)
}

/// A started pipeline.
pub struct Running {
    outputs: Arc<Vec<RunningOutput>>,
    stop_inputs: watch::Sender<bool>,
    inputs: Vec<JoinHandle<()>>,
    processor: JoinHandle<()>,
    shutdown_timeout: Duration,
    _stats: AgentStats,
}

impl Running {
    /// Starts the pipeline. Fails when an output's buffer cannot be opened (a disk buffer
    /// directory that cannot be created, or one in use by another process).
    pub fn start(cfg: Config) -> Result<Running, String> {
        Self::start_with(cfg, HashMap::new(), false)
    }

    /// Starts the pipeline; `carried` holds the buffers of a previous configuration. With
    /// `fallback`, a disk buffer that cannot be opened is replaced by a memory buffer.
    fn start_with(
        cfg: Config,
        carried: HashMap<OutputKey, Buffer>,
        fallback: bool,
    ) -> Result<Running, String> {
        let stats = AgentStats::register();
        let outputs = Arc::new(start_outputs(cfg.outputs, &stats, carried, fallback)?);

        let (tx, rx) = flume::unbounded::<Batch>();
        let tx = PipelineSender::new(tx, QUEUE_BYTES);
        let now = now_ns();
        let chain = Chain {
            processors: cfg
                .processors
                .into_iter()
                .map(RunningProcessor::new)
                .collect(),
            aggregators: cfg
                .aggregators
                .into_iter()
                .map(|a| RunningAggregator::new(a, now))
                .collect(),
            before: cfg.agent.processors_before_aggregators,
            after: cfg.agent.processors_after_aggregators,
        };
        let direct = direct_chunk(&chain, &outputs);
        let processor = tokio::spawn(process_loop(rx, chain, outputs.clone()));

        let (stop_inputs, stop_rx) = watch::channel(false);
        let inputs = cfg
            .inputs
            .into_iter()
            .map(|i| {
                let p = PreparedInput::new(
                    i,
                    &cfg.agent,
                    &cfg.global_tags,
                    stats.gathered.clone(),
                    stats.gather_errors.clone(),
                );
                tokio::spawn(input::run(p, tx.clone(), stop_rx.clone(), direct))
            })
            .collect();
        Ok(Running {
            outputs,
            stop_inputs,
            inputs,
            processor,
            shutdown_timeout: cfg.agent.shutdown_timeout,
            _stats: stats,
        })
    }

    /// SIGUSR1: every output writes what it has now.
    pub fn flush_now(&self) {
        for o in self.outputs.iter() {
            o.flush_now();
        }
    }

    /// Stops the inputs and lets everything in flight reach the output buffers.
    async fn stop_inputs(self) -> Vec<RunningOutput> {
        let _ = self.stop_inputs.send(true);
        // One deadline for all inputs: waiting INPUT_STOP_TIMEOUT for each in turn would let
        // a few stuck gathers eat the whole shutdown deadline before any output flushes.
        let limit = tokio::time::Instant::now() + INPUT_STOP_TIMEOUT;
        for mut task in self.inputs {
            if tokio::time::timeout_at(limit, &mut task).await.is_err() {
                warn!("an input did not stop in time; abandoning it");
                task.abort();
                let _ = task.await;
            }
        }
        // Every sender is gone now, so the processor task drains the queue and ends.
        let _ = self.processor.await;
        match Arc::try_unwrap(self.outputs) {
            Ok(v) => v,
            Err(_) => unreachable!("the processor task has ended and released the outputs"),
        }
    }

    /// Resolves once every output has tried its first connect (an endpoint that serves is
    /// listening then), or after `limit`: what the service manager is told as "ready".
    pub async fn ready(&self, limit: Duration) {
        let all = async {
            for o in self.outputs.iter() {
                o.connect_tried().await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// Graceful stop: inputs stop, the queue drains, every output flushes within the deadline.
    /// Returns the metrics lost: what memory buffers still held at the deadline (disk buffers
    /// keep theirs for the next start).
    pub async fn shutdown(self) -> u64 {
        let deadline = Instant::now() + self.shutdown_timeout;
        let outputs = self.stop_inputs().await;
        drain_all(outputs, deadline).await
    }

    /// Replaces the running configuration, carrying each output's buffer over to the output
    /// with the same identity in the new configuration. If the new outputs cannot start (a
    /// disk buffer that cannot be opened), they buffer in memory instead of failing: the old
    /// configuration is already stopped.
    pub async fn reload(self, cfg: Config) -> Running {
        let outputs = self.stop_inputs().await;
        let keys = output_keys(
            outputs
                .iter()
                .map(|o| (o.name.as_str(), o.alias.as_deref())),
        );
        let mut carried = HashMap::new();
        for (o, key) in outputs.into_iter().zip(keys) {
            carried.insert(key, o.hand_over().await);
        }
        match Running::start_with(cfg, carried, true) {
            Ok(r) => r,
            Err(e) => unreachable!("outputs fall back to memory on reload: {e}"),
        }
    }
}

/// Drains every output within the deadline; returns the metrics lost.
async fn drain_all(outputs: Vec<RunningOutput>, deadline: Instant) -> u64 {
    let mut tasks = tokio::task::JoinSet::new();
    for o in outputs {
        tasks.spawn(o.drain(deadline));
    }
    let mut lost = 0;
    while let Some(r) = tasks.join_next().await {
        lost += r.unwrap_or(0);
    }
    lost
}

/// The processor task: runs each batch through processors and aggregators and fans it out
/// (see [`process`]), and tells a listener waiting for it whether the buffers took it.
async fn process_loop(
    rx: flume::Receiver<Batch>,
    mut chain: Chain,
    outputs: Arc<Vec<RunningOutput>>,
) {
    // Appends to a disk buffer (and fsync under "always") block: with one, fan-out runs
    // under block_in_place so the runtime moves other tasks off this thread meanwhile.
    let block_in_place = outputs.iter().any(|o| o.buffers_on_disk())
        && tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
    loop {
        let wait = chain
            .next_push()
            .map(|due| Duration::from_nanos((due - now_ns()).max(0) as u64));
        let received = tokio::select! {
            r = rx.recv_async() => r.ok(),
            _ = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => {
                let aggregates = chain.push(now_ns(), false);
                fan_out(&outputs, aggregates, None);
                continue;
            }
        };
        let Some(Batch {
            metrics,
            records,
            ack,
            permit,
            ahead,
        }) = received
        else {
            break;
        };
        // The queue's byte budget covers the batch until it is processed.
        let refuse = ack.is_some().then_some(ahead);
        let run = || match records.is_empty() {
            true => process(&mut chain, &outputs, metrics, refuse),
            false => process_records(&mut chain, &outputs, records, refuse),
        };
        let delivery = if block_in_place {
            tokio::task::block_in_place(run)
        } else {
            run()
        };
        drop(permit);
        if let Some(ack) = ack {
            let _ = ack.send(delivery);
        }
    }
    // Inputs are gone: emit the open windows so nothing aggregated is lost.
    let aggregates = chain.push(now_ns(), true);
    fan_out(&outputs, aggregates, None);
}

/// Runs a batch through the chain and fans it out. With `refuse` (a listener waits for the
/// answer) the aggregators are offered the batch only once the outputs took it: a refused
/// write is sent again, and would otherwise be aggregated twice.
fn process(
    chain: &mut Chain,
    outputs: &[RunningOutput],
    metrics: Vec<Metric>,
    refuse: Option<usize>,
) -> Delivery {
    if refuse.is_none() {
        return fan_out(outputs, chain.take(metrics), None);
    }
    let (batch, offered) = chain.take_deferred(metrics);
    let delivery = fan_out(outputs, batch, refuse);
    // Not after a failure either: the listener answers with an error, and the client's
    // retry is aggregated.
    if delivery == Delivery::Accepted {
        chain.offer(offered);
    }
    delivery
}

/// Whether a listener may send records straight to the output buffers ([`Direct`]): with
/// nothing between them that needs metrics, and every output taking every metric. Returns the
/// metrics a record may hold: the smallest batch of the outputs.
///
/// [`Direct`]: sonde_plugins::plugin::Direct
fn direct_chunk(chain: &Chain, outputs: &[RunningOutput]) -> Option<usize> {
    if !chain.processors.is_empty() || !chain.aggregators.is_empty() {
        return None;
    }
    if !outputs.iter().all(RunningOutput::takes_all) {
        return None;
    }
    outputs.iter().map(RunningOutput::batch_size).min()
}

/// Stores records a listener encoded itself (see [`direct_chunk`]) in every output's
/// buffer. Should the pipeline no longer be one they suit, they are decoded and go the way
/// of metrics.
fn process_records(
    chain: &mut Chain,
    outputs: &[RunningOutput],
    records: Vec<Record>,
    refuse: Option<usize>,
) -> Delivery {
    let fits = direct_chunk(chain, outputs)
        .is_some_and(|chunk| records.iter().all(|r| r.count as usize <= chunk));
    if fits {
        return deliver(outputs, records, vec![None; outputs.len()], refuse);
    }
    let mut metrics = Vec::new();
    for r in &records {
        if let Err(e) = sonde_plugins::codec::record::decode(&r.data, &mut metrics) {
            return Delivery::Failed(format!("a listener's batch could not be read: {e}"));
        }
    }
    process(chain, outputs, metrics, refuse)
}

/// Gives every output what it takes of the batch, encoded into buffer records: outputs that
/// take the batch unchanged share one encoding, the others copy only the metrics they select.
/// With `refuse` (a listener waits for the answer), an output that pushes back and has no
/// room for the batch and the `ahead` metrics its write still sends refuses the whole batch
/// before any output stores it.
pub(crate) fn fan_out(
    outputs: &[RunningOutput],
    batch: Vec<Metric>,
    refuse: Option<usize>,
) -> Delivery {
    if batch.is_empty() || outputs.is_empty() {
        return Delivery::Accepted;
    }
    let shared_chunk = outputs
        .iter()
        .filter(|o| o.takes_all())
        .map(|o| o.batch_size())
        .min();
    let shared = shared_chunk.map(|c| Record::encode_chunks(&batch, c));
    let own: Vec<Option<(Vec<Record>, usize)>> = outputs
        .iter()
        .map(|o| (!o.takes_all()).then(|| o.select(&batch)))
        .collect();
    sonde_plugins::model::spare::give_back(batch);
    deliver(outputs, shared.unwrap_or_default(), own, refuse)
}

/// Stores `shared` in every output without its `own` records, and its own in the others;
/// with `refuse`, nothing when one of them has no room (see [`fan_out`]).
fn deliver(
    outputs: &[RunningOutput],
    shared: Vec<Record>,
    own: Vec<Option<(Vec<Record>, usize)>>,
    refuse: Option<usize>,
) -> Delivery {
    // Each output's own records, or the shared ones (cloned Arcs), as its buffer will store
    // them: room is asked for what they will take. A shared record is compressed at most once.
    let mut shared_compressed = vec![None; shared.len()];
    let mut scratch = Vec::new();
    let prepared: Vec<(Vec<Record>, usize)> = outputs
        .iter()
        .zip(own)
        .map(|(o, own)| match own {
            Some((records, filtered)) => {
                let mut compressed = vec![None; records.len()];
                (o.prepare(&records, &mut compressed, &mut scratch), filtered)
            }
            None => (o.prepare(&shared, &mut shared_compressed, &mut scratch), 0),
        })
        .collect();
    if let Some(ahead) = refuse {
        for (o, (records, _)) in outputs.iter().zip(&prepared) {
            if let Some(limit) = o.refuses(records, ahead) {
                return Delivery::Full {
                    reason: format!("{}: buffer full ({limit})", o.id()),
                    retry_after: o.retry_after(),
                };
            }
        }
    }
    let mut failed = None;
    for (o, (records, filtered)) in outputs.iter().zip(prepared) {
        if let Err(e) = o.store(records, filtered) {
            failed.get_or_insert(e);
        }
    }
    match failed {
        None => Delivery::Accepted,
        Some(e) => Delivery::Failed(e),
    }
}

/// Runs each input once (service inputs for `wait`), processors and aggregators, and returns
/// the result: `--test` and `--once`.
/// Starts what must be up before the agent reports that it runs: every listener binds its
/// socket, every serving output its endpoint. A plugin that cannot start follows its
/// `startup_error_behavior`: `error` fails the start with a message naming the plugin (the
/// caller exits non-zero), `ignore` and `probe` drop it with an error in the log, `retry` keeps
/// it and tries again every interval (inputs) or on the output's reconnect backoff.
pub async fn start_plugins(cfg: &mut Config) -> Result<(), String> {
    use crate::config::StartupErrorBehavior as B;
    let id = |kind: &str, name: &str, alias: Option<&str>| match alias {
        Some(a) => format!("{kind}.{name}::{a}"),
        None => format!("{kind}.{name}"),
    };
    let mut inputs = Vec::with_capacity(cfg.inputs.len());
    for mut i in std::mem::take(&mut cfg.inputs) {
        if let InputPlugin::Service(s) = &mut i.plugin
            && let Err(e) = s.start().await
        {
            let id = id("inputs", &i.name, i.alias.as_deref());
            match i.startup_error_behavior {
                B::Error => return Err(format!("{id}: {e:#}")),
                B::Ignore | B::Probe => {
                    error!(input = %id, error = %format!("{e:#}"), "cannot start; running without it (startup_error_behavior)");
                    continue;
                }
                B::Retry => {
                    warn!(input = %id, error = %format!("{e:#}"), retry_every = ?i.interval, "cannot start; retrying");
                    i.start_pending = true;
                }
            }
        }
        inputs.push(i);
    }
    cfg.inputs = inputs;
    let mut outputs = Vec::with_capacity(cfg.outputs.len());
    for mut o in std::mem::take(&mut cfg.outputs) {
        if let Err(e) = o.plugin.start().await {
            let id = id("outputs", &o.name, o.alias.as_deref());
            match o.startup_error_behavior {
                B::Error => return Err(format!("{id}: {e:#}")),
                B::Ignore | B::Probe => {
                    error!(output = %id, error = %format!("{e:#}"), "cannot start; running without it (startup_error_behavior)");
                    continue;
                }
                // The flush loop's connect acquires it, with backoff.
                B::Retry => {
                    warn!(output = %id, error = %format!("{e:#}"), "cannot start; retrying")
                }
            }
        }
        outputs.push(o);
    }
    cfg.outputs = outputs;
    Ok(())
}

/// Inputs whose rates come from the difference of two samples. `--test` and `--once` gather
/// them twice, half a second apart, and keep the second gather, so that their rate fields
/// appear (Telegraf does the same for cpu and procstat).
const TWO_SAMPLE_INPUTS: &[&str] = &["cpu", "docker", "procstat"];

pub async fn gather_once(cfg: &mut Config, wait: Duration) -> Vec<Metric> {
    // The aggregation windows open before the gathers, as in a running agent: opened after a
    // slow gather (or `--test-wait`) they would begin after the metrics and miss them.
    let started = now_ns();
    let stats = AgentStats::register();
    let inputs: Vec<_> = std::mem::take(&mut cfg.inputs)
        .into_iter()
        .map(|i| {
            PreparedInput::new(
                i,
                &cfg.agent,
                &cfg.global_tags,
                stats.gathered.clone(),
                stats.gather_errors.clone(),
            )
        })
        .collect();
    let (tx, rx) = flume::unbounded::<Batch>();
    let tx = PipelineSender::new(tx, u32::MAX);
    let (stop, stop_rx) = watch::channel(false);
    let mut services = Vec::new();
    let mut polled = Vec::new();
    for p in inputs {
        if matches!(p.plugin, InputPlugin::Service(_)) {
            services.push(tokio::spawn(input::run(
                p,
                tx.clone(),
                stop_rx.clone(),
                None,
            )));
        } else {
            polled.push(p);
        }
    }
    let mut gathers = tokio::task::JoinSet::new();
    for mut p in polled {
        let tx = tx.clone();
        gathers.spawn(async move {
            if let InputPlugin::Polled(plugin) = &mut p.plugin {
                let timeout = p.interval.max(Duration::from_millis(100));
                if TWO_SAMPLE_INPUTS.contains(&p.name.as_str()) {
                    input::gather_once(&p.id, plugin.as_mut(), &p.modifiers, &p.stats, timeout)
                        .await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let m = input::gather_once(&p.id, plugin.as_mut(), &p.modifiers, &p.stats, timeout)
                    .await;
                let _ = tx.send(m, None).await;
            }
        });
    }
    while gathers.join_next().await.is_some() {}
    if !services.is_empty() {
        tokio::time::sleep(wait).await;
    }
    let _ = stop.send(true);
    for s in services {
        let _ = tokio::time::timeout(INPUT_STOP_TIMEOUT, s).await;
    }
    drop(tx);
    let mut chain = Chain {
        processors: std::mem::take(&mut cfg.processors)
            .into_iter()
            .map(RunningProcessor::new)
            .collect(),
        aggregators: std::mem::take(&mut cfg.aggregators)
            .into_iter()
            .map(|a| RunningAggregator::new(a, started))
            .collect(),
        before: cfg.agent.processors_before_aggregators,
        after: cfg.agent.processors_after_aggregators,
    };
    let mut all = Vec::new();
    while let Ok(Batch { metrics, ack, .. }) = rx.try_recv() {
        // `--test` stores nothing: a listener's batch is as good as taken.
        if let Some(ack) = ack {
            let _ = ack.send(Delivery::Accepted);
        }
        all.extend(chain.take(metrics));
    }
    all.extend(chain.push(now_ns(), true));
    all
}

/// `--once`: gathers once, writes everything to the outputs and waits for that (up to the
/// shutdown timeout). Returns how many metrics could not be written: dropped, or refused by
/// an output for good.
pub async fn run_once(mut cfg: Config, wait: Duration) -> Result<i64, String> {
    let metrics = gather_once(&mut cfg, wait).await;
    let stats = AgentStats::register();
    let outputs = start_outputs(
        std::mem::take(&mut cfg.outputs),
        &stats,
        HashMap::new(),
        false,
    )?;
    fan_out(&outputs, metrics, None);
    let deadline = Instant::now() + cfg.agent.shutdown_timeout;
    drain_all(outputs, deadline).await;
    Ok(stats.write.dropped.get() + stats.write.rejected.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentConfig, InputConfig, OutputConfig};
    use crate::filter::Filter;
    use async_trait::async_trait;
    use sonde_plugins::plugin::{Accumulator, Input, Output, WriteError};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Emits `n` metrics on its first gather only.
    struct Burst(usize, bool);
    #[async_trait]
    impl Input for Burst {
        async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
            if !self.1 {
                self.1 = true;
                for i in 0..self.0 {
                    acc.add(Metric::new("burst", i as i64).with_field("i", i as i64));
                }
            }
            Ok(())
        }
    }

    /// Fails with the scripted errors first, then records what it is given. With `records`,
    /// it takes the buffer's records (and `write` fails the test).
    struct Scripted {
        fail: Arc<Mutex<Vec<WriteError>>>,
        got: Arc<Mutex<Vec<Metric>>>,
        calls: Arc<AtomicUsize>,
        records: bool,
    }
    #[async_trait]
    impl Output for Scripted {
        async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
            assert!(!self.records, "given metrics, not records");
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(e) = self.fail.lock().unwrap().pop() {
                return Err(e);
            }
            self.got.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }

        fn writes_records(&self) -> bool {
            self.records
        }

        async fn write_records(&mut self, records: &[&[u8]]) -> Result<(), WriteError> {
            assert!(self.records, "given records, not metrics");
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(e) = self.fail.lock().unwrap().pop() {
                return Err(e);
            }
            let mut got = self.got.lock().unwrap();
            for r in records {
                sonde_plugins::codec::record::decode(r, &mut got).unwrap();
            }
            Ok(())
        }
    }

    struct Probe {
        fail: Arc<Mutex<Vec<WriteError>>>,
        got: Arc<Mutex<Vec<Metric>>>,
        calls: Arc<AtomicUsize>,
    }

    fn retry() -> WriteError {
        WriteError::Retry {
            reason: "503".into(),
            retry_after: Some(Duration::from_millis(20)),
        }
    }

    fn config(n: usize, fail: Vec<WriteError>, limit: usize) -> (Config, Probe) {
        config_with(n, fail, limit, false)
    }

    fn config_with(
        n: usize,
        fail: Vec<WriteError>,
        limit: usize,
        records: bool,
    ) -> (Config, Probe) {
        let probe = Probe {
            fail: Arc::new(Mutex::new(fail)),
            got: Arc::default(),
            calls: Arc::default(),
        };
        let agent = AgentConfig {
            omit_hostname: true,
            shutdown_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let input = InputConfig {
            name: "burst".into(),
            alias: None,
            interval: Duration::from_secs(3600),
            collection_jitter: Duration::ZERO,
            collection_offset: Duration::ZERO,
            precision: Duration::from_nanos(1),
            name_override: None,
            name_prefix: None,
            name_suffix: None,
            tags: vec![("src".into(), "test".into())],
            filter: Filter::default(),
            startup_error_behavior: Default::default(),
            start_pending: false,
            plugin: InputPlugin::Polled(Box::new(Burst(n, false))),
        };
        let output = OutputConfig {
            name: "scripted".into(),
            alias: None,
            flush_interval: Duration::from_millis(30),
            flush_jitter: Duration::ZERO,
            metric_batch_size: 4,
            metric_buffer_limit: limit,
            metric_buffer_limit_bytes: u64::MAX,
            buffer_strategy: crate::config::BufferStrategy::Memory,
            buffer_directory: std::env::temp_dir(),
            overflow: crate::config::Overflow::Backpressure,
            name_override: None,
            name_prefix: None,
            name_suffix: None,
            filter: Filter::default(),
            startup_error_behavior: Default::default(),
            plugin: Box::new(Scripted {
                fail: probe.fail.clone(),
                got: probe.got.clone(),
                calls: probe.calls.clone(),
                records,
            }),
            fingerprint: String::new(),
        };
        let cfg = Config {
            agent,
            global_tags: vec![],
            inputs: vec![input],
            processors: vec![],
            aggregators: vec![],
            outputs: vec![output],
        };
        (cfg, probe)
    }

    async fn wait_for(mut cond: impl FnMut() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in 2s");
    }

    /// For an output given decoded metrics, and for one given the buffer's records.
    #[tokio::test]
    async fn retryable_failures_deliver_everything_exactly_once() {
        for records in [false, true] {
            let (cfg, probe) = config_with(10, vec![retry(), retry()], 100, records);
            let running = Running::start(cfg).unwrap();
            wait_for(|| probe.got.lock().unwrap().len() >= 10).await;
            running.shutdown().await;
            let got = probe.got.lock().unwrap();
            let mut times: Vec<i64> = got.iter().map(|m| m.time).collect();
            times.sort();
            assert_eq!(times, (0..10).collect::<Vec<_>>(), "records: {records}");
            assert_eq!(got[0].tag("src"), Some("test"));
            assert!(probe.calls.load(Ordering::SeqCst) >= 5);
        }
    }

    #[tokio::test]
    async fn rejected_batch_is_dropped_not_retried() {
        let (cfg, probe) = config(
            3,
            vec![WriteError::Reject {
                reason: "400 bad".into(),
            }],
            100,
        );
        let running = Running::start(cfg).unwrap();
        wait_for(|| probe.calls.load(Ordering::SeqCst) >= 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        running.shutdown().await;
        assert_eq!(
            probe.calls.load(Ordering::SeqCst),
            1,
            "a rejected batch is not retried"
        );
        assert!(probe.got.lock().unwrap().is_empty());
    }

    /// Outputs for fan-out tests: (namepass, metric_buffer_limit, overflow) each.
    fn outputs(
        specs: &[(&[&str], usize, crate::config::Overflow)],
    ) -> (Vec<RunningOutput>, Vec<Probe>) {
        let stats = AgentStats::register();
        let mut outs = Vec::new();
        let mut probes = Vec::new();
        for (i, (namepass, limit, overflow)) in specs.iter().enumerate() {
            let (mut cfg, probe) = config(0, vec![], *limit);
            let mut o = cfg.outputs.remove(0);
            o.alias = Some(format!("o{i}"));
            o.overflow = *overflow;
            o.flush_interval = Duration::from_secs(3600);
            o.metric_batch_size = 1000;
            o.filter = Filter::new(&crate::filter::FilterConfig {
                namepass: namepass.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .unwrap();
            outs.push(
                RunningOutput::start(o, &stats.write, std::env::temp_dir(), None, false).unwrap(),
            );
            probes.push(probe);
        }
        (outs, probes)
    }

    fn named(name: &str, n: i64) -> Vec<Metric> {
        (0..n)
            .map(|i| Metric::new(name, i).with_field("v", i))
            .collect()
    }

    #[tokio::test]
    async fn fan_out_gives_each_output_only_what_it_selects() {
        use crate::config::Overflow::Backpressure;
        let (outs, probes) = outputs(&[
            (&[], 100, Backpressure),
            (&["a*"], 100, Backpressure),
            (&["zzz"], 100, Backpressure),
        ]);
        let mut batch = named("api", 3);
        batch.extend(named("db", 2));
        assert_eq!(fan_out(&outs, batch, Some(0)), Delivery::Accepted);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lost = 0;
        for o in outs {
            lost += o.drain(deadline).await;
        }
        assert_eq!(lost, 0);
        let names = |p: &Probe| {
            p.got
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&probes[0]), ["api", "api", "api", "db", "db"]);
        assert_eq!(names(&probes[1]), ["api", "api", "api"]);
        assert!(names(&probes[2]).is_empty());
    }

    #[tokio::test]
    async fn a_full_output_refuses_a_listener_batch_for_every_output() {
        use crate::config::Overflow::{Backpressure, DropOldest};
        let (outs, probes) = outputs(&[(&[], 100, DropOldest), (&[], 5, Backpressure)]);
        assert_eq!(fan_out(&outs, named("m", 4), Some(0)), Delivery::Accepted);
        match fan_out(&outs, named("m", 4), Some(0)) {
            Delivery::Full {
                reason,
                retry_after,
            } => {
                assert!(reason.contains("outputs.scripted::o1"), "{reason}");
                assert!(
                    reason.contains("metric_buffer_limit = 5 metrics"),
                    "{reason}"
                );
                assert!(retry_after >= Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        // A polled input's batch is never refused: the full output drops its oldest.
        assert_eq!(fan_out(&outs, named("n", 4), None), Delivery::Accepted);
        let deadline = Instant::now() + Duration::from_secs(5);
        for o in outs {
            o.drain(deadline).await;
        }
        // The refused batch reached neither output.
        assert_eq!(probes[0].got.lock().unwrap().len(), 8);
        let second: Vec<(String, i64)> = probes[1]
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|m| (m.name.to_string(), m.time))
            .collect();
        assert_eq!(
            second,
            [
                ("m".into(), 3),
                ("n".into(), 0),
                ("n".into(), 1),
                ("n".into(), 2),
                ("n".into(), 3)
            ]
        );
    }

    #[tokio::test]
    async fn a_listener_write_is_refused_whole_when_its_rest_would_not_fit() {
        use crate::config::Overflow::Backpressure;
        let (outs, probes) = outputs(&[(&[], 20, Backpressure)]);
        assert_eq!(fan_out(&outs, named("a", 12), Some(0)), Delivery::Accepted);
        // 4 now and 5 to come do not fit in the 8 left: nothing of the write is stored.
        let refused = fan_out(&outs, named("x", 4), Some(5));
        assert!(matches!(refused, Delivery::Full { .. }), "{refused:?}");
        assert_eq!(fan_out(&outs, named("m", 4), Some(4)), Delivery::Accepted);
        // The write's later batches are checked for themselves.
        assert_eq!(fan_out(&outs, named("n", 4), Some(0)), Delivery::Accepted);
        let deadline = Instant::now() + Duration::from_secs(5);
        for o in outs {
            assert_eq!(o.drain(deadline).await, 0);
        }
        let got = probes[0].got.lock().unwrap();
        assert_eq!(got.len(), 20);
        assert!(
            got.iter().all(|m| m.name != "x"),
            "the refused batch was stored"
        );
    }

    /// Records a listener wrote itself go to every buffer as they are, refused whole when one
    /// has no room; where the pipeline needs metrics (an aggregator here) they are decoded.
    #[tokio::test]
    async fn records_from_a_listener_are_stored_as_they_come() {
        use crate::config::Overflow::{Backpressure, DropOldest};
        let (outs, probes) = outputs(&[(&[], 10, Backpressure), (&[], 100, DropOldest)]);
        let mut chain = Chain {
            processors: Vec::new(),
            aggregators: Vec::new(),
            before: true,
            after: true,
        };
        assert_eq!(direct_chunk(&chain, &outs), Some(1000));
        let records = |name, n| Record::encode_chunks(&named(name, n), 1000);
        let taken = process_records(&mut chain, &outs, records("r", 6), Some(0));
        assert_eq!(taken, Delivery::Accepted);
        let refused = process_records(&mut chain, &outs, records("x", 6), Some(0));
        assert!(matches!(refused, Delivery::Full { .. }), "{refused:?}");
        // With an aggregator the route is closed, and records that still come are decoded.
        chain.aggregators = vec![process::tests::counting(Duration::from_secs(3600), 0)];
        assert_eq!(direct_chunk(&chain, &outs), None);
        let taken = process_records(&mut chain, &outs, records("a", 2), Some(0));
        assert_eq!(taken, Delivery::Accepted);
        let counted = chain.push(i64::MAX / 2, true);
        assert_eq!(
            counted[0].field("n"),
            Some(&sonde_plugins::FieldValue::Int(2))
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        for o in outs {
            assert_eq!(o.drain(deadline).await, 0);
        }
        for p in &probes {
            let got = p.got.lock().unwrap();
            let names: Vec<_> = got.iter().map(|m| m.name.to_string()).collect();
            assert_eq!(names, ["r", "r", "r", "r", "r", "r", "a", "a"]);
        }
        // A filtering output closes the route too.
        let (filtering, _) = outputs(&[(&["a*"], 10, Backpressure)]);
        chain.aggregators.clear();
        assert_eq!(direct_chunk(&chain, &filtering), None);
    }

    /// A listener's write that an output refuses is sent again: the aggregators count it
    /// once, when it is taken.
    #[tokio::test]
    async fn a_refused_listener_batch_is_not_aggregated() {
        use crate::config::Overflow::Backpressure;
        let (outs, _probes) = outputs(&[(&[], 6, Backpressure)]);
        let mut chain = Chain {
            processors: Vec::new(),
            aggregators: vec![process::tests::counting(Duration::from_secs(3600), 0)],
            before: true,
            after: true,
        };
        let (accepted, refused) = (named("m", 4), named("m", 4));
        assert_eq!(
            process(&mut chain, &outs, accepted, Some(0)),
            Delivery::Accepted
        );
        let delivery = process(&mut chain, &outs, refused, Some(0));
        assert!(matches!(delivery, Delivery::Full { .. }), "{delivery:?}");
        // A polled input's batch is aggregated whatever the outputs do with it.
        process(&mut chain, &outs, named("n", 3), None);
        let aggregates = chain.push(0, true);
        assert_eq!(
            aggregates[0].field("n"),
            Some(&sonde_plugins::FieldValue::Int(7))
        );
    }

    #[tokio::test]
    async fn room_is_asked_for_what_a_write_takes_compressed() {
        let stats = AgentStats::register();
        let (mut cfg, probe) = config(0, vec![], 1_000_000);
        let mut o = cfg.outputs.remove(0);
        o.overflow = crate::config::Overflow::Backpressure;
        o.flush_interval = Duration::from_secs(3600);
        o.metric_batch_size = 1000;
        o.metric_buffer_limit_bytes = 64 << 10;
        let outs =
            vec![RunningOutput::start(o, &stats.write, std::env::temp_dir(), None, false).unwrap()];
        let batch = |from: i64, n: i64| -> Vec<Metric> {
            (from..from + n)
                .map(|i| {
                    Metric::new("m", i)
                        .with_tag("t", format!("{}-{i}", "x".repeat(100)))
                        .with_field("v", i)
                })
                .collect()
        };
        assert_eq!(fan_out(&outs, batch(0, 200), Some(0)), Delivery::Accepted);
        // 600 more take more than the whole buffer as plain records, and a few KiB as the
        // compressed records a backlog keeps: they fit.
        let more = batch(200, 600);
        let mut plain = Vec::new();
        sonde_plugins::codec::record::encode(&more, &mut plain);
        assert!(plain.len() > 64 << 10, "{}", plain.len());
        assert_eq!(fan_out(&outs, more, Some(0)), Delivery::Accepted);
        let deadline = Instant::now() + Duration::from_secs(5);
        for o in outs {
            assert_eq!(o.drain(deadline).await, 0);
        }
        assert_eq!(probe.got.lock().unwrap().len(), 800);
    }

    #[tokio::test]
    async fn outputs_that_share_records_share_their_compressed_form() {
        let stats = AgentStats::register();
        let outs: Vec<RunningOutput> = (0..2)
            .map(|i| {
                let (mut cfg, _) = config(0, vec![], 1_000_000);
                let mut o = cfg.outputs.remove(0);
                o.alias = Some(format!("o{i}"));
                o.flush_interval = Duration::from_secs(3600);
                // A quarter of this is less than the records: both buffers compress them.
                o.metric_buffer_limit_bytes = 16 << 10;
                RunningOutput::start(o, &stats.write, std::env::temp_dir(), None, false).unwrap()
            })
            .collect();
        let batch: Vec<Metric> = (0..2000)
            .map(|i| {
                Metric::new("m", i)
                    .with_tag("t", "x".repeat(50))
                    .with_field("v", i)
            })
            .collect();
        let shared = Record::encode_chunks(&batch, 1000);
        let mut compressed = vec![None; shared.len()];
        let mut scratch = Vec::new();
        let a = outs[0].prepare(&shared, &mut compressed, &mut scratch);
        let b = outs[1].prepare(&shared, &mut compressed, &mut scratch);
        for ((a, b), plain) in a.iter().zip(&b).zip(&shared) {
            assert!(a.data.len() < plain.data.len() / 4, "not compressed");
            assert!(Arc::ptr_eq(&a.data, &b.data), "compressed once each");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for o in outs {
            assert_eq!(o.drain(deadline).await, 0);
        }
    }

    #[tokio::test]
    async fn overflow_drops_oldest_and_shutdown_flushes_the_rest() {
        let (mut cfg, probe) = config(10, vec![], 6);
        // Flush only at shutdown, so the whole burst sits in the buffer.
        cfg.outputs[0].flush_interval = Duration::from_secs(3600);
        cfg.outputs[0].metric_batch_size = 100;
        let running = Running::start(cfg).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        running.shutdown().await;
        let got = probe.got.lock().unwrap();
        let times: Vec<i64> = got.iter().map(|m| m.time).collect();
        assert_eq!(
            times,
            vec![4, 5, 6, 7, 8, 9],
            "the oldest four were dropped"
        );
    }

    #[tokio::test]
    async fn reload_carries_buffered_metrics_to_the_new_output() {
        let failing = (0..1000).map(|_| retry()).collect();
        let (cfg, old) = config(8, failing, 100);
        let running = Running::start(cfg).unwrap();
        wait_for(|| old.calls.load(Ordering::SeqCst) >= 2).await;
        let (new_cfg, new) = config(0, vec![], 100);
        let running = running.reload(new_cfg).await;
        wait_for(|| new.got.lock().unwrap().len() >= 8).await;
        running.shutdown().await;
        assert!(old.got.lock().unwrap().is_empty());
        assert_eq!(new.got.lock().unwrap().len(), 8);
    }

    /// Never finishes a write.
    struct Hang;
    #[async_trait]
    impl Output for Hang {
        async fn write(&mut self, _batch: &[Metric]) -> Result<(), WriteError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_write_cut_off_at_shutdown_is_counted_as_dropped() {
        let (mut cfg, _probe) = config(5, vec![], 100);
        cfg.outputs[0].plugin = Box::new(Hang);
        cfg.agent.shutdown_timeout = Duration::from_millis(300);
        let running = Running::start(cfg).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dropped = running._stats.write.dropped.clone();
        running.shutdown().await;
        assert_eq!(dropped.get(), 5);
    }

    /// Stamps its metric with the gather's start and takes longer than an aggregation period.
    struct Slow;
    #[async_trait]
    impl Input for Slow {
        async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
            let t = acc.time();
            tokio::time::sleep(Duration::from_millis(1200)).await;
            acc.add(Metric::new("slow", t).with_field("v", 1i64));
            Ok(())
        }
    }

    /// Counts the metrics of a window.
    #[derive(Default)]
    struct CountAgg(i64);
    impl sonde_plugins::plugin::Aggregator for CountAgg {
        fn add(&mut self, _m: &Metric) {
            self.0 += 1;
        }
        fn push(&mut self, time: i64, out: &mut Vec<Metric>) {
            if self.0 > 0 {
                out.push(Metric::new("count", time).with_field("n", self.0));
            }
        }
        fn reset(&mut self) {
            self.0 = 0;
        }
    }

    #[tokio::test]
    async fn test_mode_aggregates_what_a_slow_gather_produced() {
        let (mut cfg, _probe) = config(0, vec![], 100);
        cfg.inputs[0].plugin = InputPlugin::Polled(Box::new(Slow));
        cfg.aggregators.push(crate::config::AggregatorConfig {
            name: "count".into(),
            alias: None,
            period: Duration::from_secs(1),
            delay: Duration::from_millis(100),
            grace: Duration::ZERO,
            drop_original: true,
            name_override: None,
            name_prefix: None,
            name_suffix: None,
            tags: vec![],
            filter: Filter::default(),
            plugin: Box::new(CountAgg::default()),
        });
        let out = gather_once(&mut cfg, Duration::ZERO).await;
        let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["count"], "the gathered metric was aggregated");
        assert_eq!(out[0].field("n"), Some(&sonde_plugins::FieldValue::Int(1)));
    }

    #[tokio::test]
    async fn once_counts_rejected_metrics_as_not_written() {
        let reject = || WriteError::Reject {
            reason: "400 bad".into(),
        };
        // Three batches of 4, 4 and 2: the first two are refused, the last is written.
        let (cfg, probe) = config(10, vec![reject(), reject()], 100);
        let lost = run_once(cfg, Duration::ZERO).await.unwrap();
        assert_eq!(probe.got.lock().unwrap().len(), 2);
        assert_eq!(
            lost, 8,
            "refused metrics were not written: --once must fail"
        );
    }

    /// Panics on its first write, as a buggy output plugin might.
    struct Panics;
    #[async_trait]
    impl Output for Panics {
        async fn write(&mut self, _batch: &[Metric]) -> Result<(), WriteError> {
            panic!("output bug");
        }
    }

    #[tokio::test]
    async fn metrics_left_by_a_dead_flush_task_are_counted_as_dropped() {
        let (mut cfg, _probe) = config(6, vec![], 100);
        cfg.outputs[0].plugin = Box::new(Panics);
        let running = Running::start(cfg).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dropped = running._stats.write.dropped.clone();
        running.shutdown().await;
        // The batch in flight (4) and the rest of the buffer (2) never reached the output.
        assert_eq!(dropped.get(), 6);
    }

    /// A gather that never ends (its timeout is the one-hour interval).
    struct Stuck;
    #[async_trait]
    impl Input for Stuck {
        async fn gather(&mut self, _acc: &mut Accumulator) -> anyhow::Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn stuck_inputs_share_one_stop_timeout() {
        let (mut cfg, probe) = config(0, vec![], 100);
        for _ in 0..2 {
            let (mut extra, _) = config(0, vec![], 100);
            let mut input = extra.inputs.remove(0);
            input.plugin = InputPlugin::Polled(Box::new(Stuck));
            cfg.inputs.push(input);
        }
        cfg.inputs[0].plugin = InputPlugin::Polled(Box::new(Burst(3, false)));
        cfg.outputs[0].flush_interval = Duration::from_secs(3600);
        cfg.agent.shutdown_timeout = Duration::from_secs(8);
        let running = Running::start(cfg).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        running.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            probe.got.lock().unwrap().len(),
            3,
            "the buffer was still flushed"
        );
    }

    #[test]
    fn output_identity_counts_duplicates() {
        let keys = output_keys([("http", None), ("http", None), ("http", Some("a"))].into_iter());
        assert_eq!(keys[1], ("http".into(), None, 1));
        assert_eq!(keys[2], ("http".into(), Some("a".into()), 0));
    }
}
