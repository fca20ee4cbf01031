//! The plugin traits and the small context they are given.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

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

/// Where a service input (listener) delivers metrics.
///
/// `send` completes once the batch is in the pipeline's bounded queue, so a listener that
/// answers after `send` never acknowledges data that could still be lost in between.
#[derive(Clone)]
pub struct MetricSink {
    tx: flume::Sender<Vec<Metric>>,
    prepare: PrepareFn,
}

/// What the agent does to a batch before it enters the pipeline (its per-input modifiers).
pub type PrepareFn = Arc<dyn Fn(&mut Vec<Metric>) + Send + Sync>;

/// The pipeline has shut down; the batch was not taken.
#[derive(Debug, thiserror::Error)]
#[error("pipeline closed")]
pub struct SinkClosed;

impl MetricSink {
    pub fn new(tx: flume::Sender<Vec<Metric>>, prepare: PrepareFn) -> Self {
        MetricSink { tx, prepare }
    }

    pub async fn send(&self, mut batch: Vec<Metric>) -> Result<(), SinkClosed> {
        (self.prepare)(&mut batch);
        if batch.is_empty() {
            return Ok(());
        }
        self.tx.send_async(batch).await.map_err(|_| SinkClosed)
    }

    /// Number of batches waiting in the queue (for 429-style backpressure).
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
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
    async fn sink_prepares_then_queues() {
        let (tx, rx) = flume::bounded(1);
        let sink = MetricSink::new(
            tx,
            Arc::new(|b: &mut Vec<Metric>| b.retain(|m| m.name != "drop")),
        );
        sink.send(vec![
            Metric::new("keep", 0).with_field("f", 1i64),
            Metric::new("drop", 0),
        ])
        .await
        .unwrap();
        let got = rx.recv().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "keep");
    }
}
