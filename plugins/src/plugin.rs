//! The plugin traits and the small context they are given.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::codec::record::Record;
use crate::codec::{Parser, Serializer};
use crate::model::{FieldValue, Metric, Str, ValueType};

/// Collects what one gather produces: metrics, plus errors that spoiled only part of it.
pub struct Accumulator {
    pub metrics: Vec<Metric>,
    pub errors: Vec<String>,
    time: i64,
}

impl Accumulator {
    /// An accumulator whose default timestamp is `time` (the gather's scheduled time).
    pub fn new(time: i64) -> Self {
        Accumulator {
            metrics: Vec::new(),
            errors: Vec::new(),
            time,
        }
    }

    /// The gather's timestamp, used for metrics that carry none of their own.
    pub fn time(&self) -> i64 {
        self.time
    }

    pub fn add(&mut self, metric: Metric) {
        if !metric.fields.is_empty() {
            self.metrics.push(metric);
        }
    }

    /// Adds a metric stamped with the gather's time. Metrics without fields are dropped.
    pub fn add_fields<K, V>(
        &mut self,
        name: &str,
        tags: &[(&str, &str)],
        fields: impl IntoIterator<Item = (K, V)>,
        kind: ValueType,
    ) where
        K: Into<Str>,
        V: Into<FieldValue>,
    {
        let mut m = Metric::new(name, self.time).with_kind(kind);
        for (k, v) in tags {
            m.add_tag(*k, *v);
        }
        for (k, v) in fields {
            m.add_field(k, v);
        }
        self.add(m);
    }

    /// Records an error that spoiled part of the gather; it is logged and counted.
    pub fn add_error(&mut self, err: impl std::fmt::Display) {
        self.errors.push(err.to_string());
    }
}

/// A gather error that continues one already reported (the same outage): the agent counts it
/// like any other but logs it at debug level only, so that an outage is logged once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RepeatedError(pub String);

/// An input polled on its interval.
#[async_trait]
pub trait Input: Send {
    /// One collection. Errors that affect only part of it go to [`Accumulator::add_error`];
    /// an `Err` means the whole gather failed.
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()>;
}

/// One batch on its way from an input to the processors.
pub struct Batch {
    pub metrics: Vec<Metric>,
    /// Metrics already encoded, from a sink's direct route ([`Direct`]); `metrics` is then
    /// empty.
    pub records: Vec<Record>,
    /// Set by sources that can push back (listeners): told whether every output buffer took
    /// the batch. Without it, a full buffer drops its oldest metrics instead.
    pub ack: Option<tokio::sync::oneshot::Sender<Delivery>>,
    /// The batch's share of the queue's byte budget, given back when it leaves the queue.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// With `ack`: how many more metrics (at most) the same write sends after this batch. An
    /// output that pushes back takes the batch only if it has room for those too, so that a
    /// write too large for the room left is refused whole, before any of it is stored.
    pub ahead: usize,
}

/// What became of a batch sent with an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every output buffer that takes it has it (written, and synced when its policy says so).
    Accepted,
    /// An output buffer is full: nothing was taken; try again after `retry_after`.
    Full {
        reason: String,
        retry_after: Duration,
    },
    /// An output buffer could not store it (a disk error): outputs before that one in the
    /// configuration may have stored it; the others did not.
    Failed(String),
}

/// The inputs' end of the queue to the processors, bounded by the estimated bytes of the
/// batches in it, so a slow pipeline pushes back on inputs before memory grows.
#[derive(Clone)]
pub struct PipelineSender {
    tx: flume::Sender<Batch>,
    budget: Arc<tokio::sync::Semaphore>,
    budget_bytes: u32,
}

impl PipelineSender {
    pub fn new(tx: flume::Sender<Batch>, budget_bytes: u32) -> Self {
        PipelineSender {
            tx,
            budget: Arc::new(tokio::sync::Semaphore::new(budget_bytes as usize)),
            budget_bytes,
        }
    }

    /// Queues a batch, waiting while the queue holds its byte budget.
    pub async fn send(
        &self,
        metrics: Vec<Metric>,
        ack: Option<tokio::sync::oneshot::Sender<Delivery>>,
    ) -> Result<(), SinkClosed> {
        self.queue(metrics, Vec::new(), ack, 0).await
    }

    async fn queue(
        &self,
        metrics: Vec<Metric>,
        records: Vec<Record>,
        ack: Option<tokio::sync::oneshot::Sender<Delivery>>,
        ahead: usize,
    ) -> Result<(), SinkClosed> {
        let bytes: usize = metrics.iter().map(Metric::estimated_size).sum::<usize>()
            + records.iter().map(|r| r.data.len()).sum::<usize>();
        // A batch larger than the whole budget waits for an empty queue.
        let want = bytes.clamp(1, self.budget_bytes as usize) as u32;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| SinkClosed)?;
        self.tx
            .send_async(Batch {
                metrics,
                records,
                ack,
                permit: Some(permit),
                ahead,
            })
            .await
            .map_err(|_| SinkClosed)
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// Where a service input (listener) delivers metrics.
///
/// `send` completes once every output buffer that takes the batch has stored it, or says
/// why not, so a listener that answers after `send` acknowledges only what is safe.
#[derive(Clone)]
pub struct MetricSink {
    tx: PipelineSender,
    prepare: PrepareFn,
    direct: Option<Arc<Direct>>,
}

/// The direct route from a listener to the output buffers, offered by the agent when nothing
/// between them needs the metrics themselves (no processors, aggregators or filters, no
/// rename; only tags added): the listener encodes buffer records as it parses, and the
/// pipeline stores them as they come.
pub struct Direct {
    /// Tags added where a metric has none of that key, in order (the input's `tags`, the
    /// global tags, `host`), as the agent adds them to the metrics of other inputs.
    pub tags: Vec<(Str, Str)>,
    /// Metrics per record at most: the smallest `metric_batch_size` of the outputs.
    pub chunk: usize,
    /// Counts the metrics sent (the input's `metrics_gathered`).
    pub counted: Arc<dyn Fn(usize) + Send + Sync>,
}

/// What the agent does to a batch before it enters the pipeline (its per-input modifiers).
pub type PrepareFn = Arc<dyn Fn(&mut Vec<Metric>) + Send + Sync>;

/// The pipeline has shut down; the batch was not taken.
#[derive(Debug, thiserror::Error)]
#[error("pipeline closed")]
pub struct SinkClosed;

/// Why a batch was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the agent is shutting down")]
    Closed,
    /// An output buffer is full; the sender should try again later (HTTP 429).
    #[error("{reason}")]
    Full {
        reason: String,
        retry_after: Duration,
    },
    /// An output buffer could not store the batch (HTTP 503).
    #[error("{0}")]
    Failed(String),
}

impl MetricSink {
    pub fn new(tx: PipelineSender, prepare: PrepareFn) -> Self {
        MetricSink {
            tx,
            prepare,
            direct: None,
        }
    }

    /// The sink, offering the direct route.
    pub fn with_direct(mut self, direct: Direct) -> Self {
        self.direct = Some(Arc::new(direct));
        self
    }

    /// The direct route, when the agent offers it: a listener may then send records
    /// ([`MetricSink::send_records`]) instead of metrics.
    pub fn direct(&self) -> Option<&Direct> {
        self.direct.as_deref()
    }

    /// Sends a batch and waits until the output buffers have stored it (or refused it).
    pub async fn send(&self, batch: Vec<Metric>) -> Result<(), SendError> {
        self.send_ahead(batch, 0).await.map(|_| ())
    }

    /// As [`MetricSink::send`], for the first batch of a write that sends up to `ahead` more
    /// metrics after it: the batch is refused unless the buffers have room for those too.
    /// `Ok(false)`: the input's filters left nothing of the batch to send.
    pub async fn send_ahead(
        &self,
        mut batch: Vec<Metric>,
        ahead: usize,
    ) -> Result<bool, SendError> {
        (self.prepare)(&mut batch);
        if batch.is_empty() {
            return Ok(false);
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .queue(batch, Vec::new(), Some(ack), ahead)
            .await
            .map_err(|_| SendError::Closed)?;
        Self::delivered(done).await
    }

    /// As [`MetricSink::send_ahead`], for records written as [`MetricSink::direct`] says
    /// (with its tags, of at most its `chunk` metrics each).
    pub async fn send_records(
        &self,
        records: Vec<Record>,
        ahead: usize,
    ) -> Result<bool, SendError> {
        let n: usize = records.iter().map(|r| r.count as usize).sum();
        if n == 0 {
            return Ok(false);
        }
        if let Some(d) = &self.direct {
            (d.counted)(n);
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .queue(Vec::new(), records, Some(ack), ahead)
            .await
            .map_err(|_| SendError::Closed)?;
        Self::delivered(done).await
    }

    async fn delivered(done: tokio::sync::oneshot::Receiver<Delivery>) -> Result<bool, SendError> {
        match done.await {
            Ok(Delivery::Accepted) => Ok(true),
            Ok(Delivery::Full {
                reason,
                retry_after,
            }) => Err(SendError::Full {
                reason,
                retry_after,
            }),
            Ok(Delivery::Failed(m)) => Err(SendError::Failed(m)),
            Err(_) => Err(SendError::Closed),
        }
    }

    /// Number of batches waiting in the queue (for 429-style backpressure).
    pub fn queued(&self) -> usize {
        self.tx.queued()
    }
}

/// A sink for a service input's unit tests: every batch is acknowledged as soon as it is
/// queued and handed on through a channel of `capacity` batches (records decoded).
#[cfg(test)]
pub(crate) fn test_sink(capacity: usize) -> (MetricSink, flume::Receiver<Vec<Metric>>) {
    let (tx, rx) = flume::unbounded::<Batch>();
    let (out_tx, out_rx) = flume::bounded(capacity);
    tokio::spawn(async move {
        while let Ok(b) = rx.recv_async().await {
            if let Some(ack) = b.ack {
                let _ = ack.send(Delivery::Accepted);
            }
            let mut metrics = b.metrics;
            for r in &b.records {
                crate::codec::record::decode(&r.data, &mut metrics).expect("records read back");
            }
            if out_tx.send_async(metrics).await.is_err() {
                break;
            }
        }
    });
    let sink = MetricSink::new(
        PipelineSender::new(tx, u32::MAX),
        Arc::new(|_: &mut Vec<Metric>| {}),
    );
    (sink, out_rx)
}

/// What a service input gets to run with.
pub struct ServiceContext {
    pub sink: MetricSink,
    /// The input's `interval` (its own, else the agent's): when a service that aggregates
    /// (statsd) emits what it has collected.
    pub interval: Duration,
    /// Resolves when the agent is stopping or reloading; the service must return soon after.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// An input that runs continuously (a listener) and pushes metrics as they arrive.
#[async_trait]
pub trait ServiceInput: Send {
    /// Acquires what the service needs before the agent reports that it started (a listener
    /// binds its socket here), so that a port in use is a startup error that follows the
    /// plugin's `startup_error_behavior`. When it was not called (a reload, `--test`), `run`
    /// acquires it itself.
    async fn start(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()>;
}

pub enum InputPlugin {
    Polled(Box<dyn Input>),
    Service(Box<dyn ServiceInput>),
}

/// Transforms metrics as they pass. Runs on the pipeline's processor task.
pub trait Processor: Send {
    fn apply(&mut self, batch: Vec<Metric>) -> Vec<Metric>;
}

/// Summarises the metrics of a window. The agent owns the window timing.
pub trait Aggregator: Send {
    fn add(&mut self, metric: &Metric);
    /// Emits the aggregates of the window that ends at `time`.
    fn push(&mut self, time: i64, out: &mut Vec<Metric>);
    fn reset(&mut self);
}

/// Why a write did not fully succeed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Nothing was accepted; try the same batch again later.
    #[error("{reason}")]
    Retry {
        reason: String,
        /// The server's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The batch was permanently rejected (bad data): drop it, count it, do not retry.
    #[error("{reason}")]
    Reject { reason: String },
    /// Part of the batch was accepted, `rejected` metrics were permanently refused.
    #[error("{rejected} metrics rejected: {reason}")]
    Partial { rejected: usize, reason: String },
}

/// Delivers batches somewhere.
#[async_trait]
pub trait Output: Send {
    /// Acquires local resources before the agent reports that it started (an endpoint that
    /// serves binds its socket here), so that a port in use follows the plugin's
    /// `startup_error_behavior`. A remote peer that is down is not a start error: `connect`
    /// and `write` are retried. When this was not called (a reload), `connect` acquires them.
    async fn start(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn connect(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError>;
    /// Whether the agent hands this output its batches as the buffer's records, through
    /// `write_records`, instead of decoding them into metrics for `write`: for an output that
    /// encodes straight from a record's bytes.
    fn writes_records(&self) -> bool {
        false
    }
    /// Writes the metrics of buffer records ([`crate::codec::record`]). The default decodes
    /// them and calls `write`.
    async fn write_records(&mut self, records: &[&[u8]]) -> Result<(), WriteError> {
        let mut batch = Vec::new();
        for r in records {
            crate::codec::record::decode(r, &mut batch).map_err(|e| WriteError::Reject {
                reason: e.to_string(),
            })?;
        }
        self.write(&batch).await
    }
    async fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What the agent hands a plugin when building it.
#[derive(Clone, Default)]
pub struct BuildContext {
    /// The agent's hostname (after `[agent] hostname`).
    pub hostname: String,
    /// The plugin's alias, or its name, for logs.
    pub id: String,
    /// The plugin's `data_format` parser, for plugins registered with [`crate::registry::Format::Parser`].
    pub parser: Option<Arc<dyn Parser>>,
    /// The plugin's `data_format` serializer, for plugins registered with [`crate::registry::Format::Serializer`].
    pub serializer: Option<Arc<dyn Serializer>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulator_drops_fieldless_metrics_and_stamps_time() {
        let mut acc = Accumulator::new(42);
        acc.add_fields("m", &[("t", "v")], [("f", 1i64)], ValueType::Gauge);
        acc.add_fields::<&str, i64>("empty", &[], [], ValueType::Gauge);
        assert_eq!(acc.metrics.len(), 1);
        assert_eq!(acc.metrics[0].time, 42);
        assert_eq!(acc.metrics[0].tag("t"), Some("v"));
    }

    #[tokio::test]
    async fn sink_prepares_queues_and_waits_for_the_buffers() {
        let (tx, rx) = flume::bounded(1);
        let sink = MetricSink::new(
            PipelineSender::new(tx, 1 << 20),
            Arc::new(|b: &mut Vec<Metric>| b.retain(|m| m.name != "drop")),
        );
        let pipeline = tokio::spawn(async move {
            let first: Batch = rx.recv_async().await.unwrap();
            assert_eq!(first.metrics.len(), 1);
            assert_eq!(first.metrics[0].name, "keep");
            first.ack.unwrap().send(Delivery::Accepted).unwrap();
            let second: Batch = rx.recv_async().await.unwrap();
            second
                .ack
                .unwrap()
                .send(Delivery::Full {
                    reason: "full".into(),
                    retry_after: Duration::from_secs(2),
                })
                .unwrap();
        });
        let batch = || {
            vec![
                Metric::new("keep", 0).with_field("f", 1i64),
                Metric::new("drop", 0),
            ]
        };
        sink.send(batch()).await.unwrap();
        match sink.send(batch()).await {
            Err(SendError::Full { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(2))
            }
            other => panic!("{other:?}"),
        }
        pipeline.await.unwrap();
    }

    #[tokio::test]
    async fn the_queue_budget_holds_senders_back() {
        let (tx, rx) = flume::unbounded();
        let sender = PipelineSender::new(tx, 100);
        let big = || vec![Metric::new("m", 0).with_field("f", 1i64)];
        // One metric is more than 100 estimated bytes: it takes the whole budget.
        sender.send(big(), None).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), sender.send(big(), None));
        assert!(blocked.await.is_err(), "the second batch must wait");
        drop(rx.recv().unwrap());
        tokio::time::timeout(Duration::from_secs(5), sender.send(big(), None))
            .await
            .expect("budget returned")
            .unwrap();
    }
}
