//! Running inputs: the per-input modifiers (name, tags, filters, precision) and scheduling.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sonde_plugins::plugin::{
    Accumulator, Direct, Input, InputPlugin, MetricSink, PipelineSender, RepeatedError,
    ServiceContext,
};
use sonde_plugins::selfstat::{self, Stat, Stats};
use sonde_plugins::{Metric, Str};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::Rename;
use crate::config::InputConfig;
use crate::filter::Filter;

/// What the agent does to every metric an input produces, in Telegraf's order: select on the
/// original metric, rename, add tags (never overriding the metric's own), trim, round time.
pub struct Modifiers {
    pub filter: Filter,
    pub rename: Rename,
    /// Plugin tags first, then global tags, then `host`: earlier ones win.
    pub tags: Vec<(Str, Str)>,
    /// Tags put back after taginclude/tagexclude: Telegraf's `always_include_local_tags`
    /// (the plugin's `tags`) and `always_include_global_tags` (global tags and `host`).
    pub kept_tags: Vec<(Str, Str)>,
    /// Round timestamps to this many nanoseconds (0 or 1 = leave them).
    pub precision_ns: i64,
}

impl Modifiers {
    /// Whether all they do is add tags (where a metric has none of the key).
    pub fn only_add_tags(&self) -> bool {
        self.filter.is_empty()
            && self.rename.is_empty()
            && self.kept_tags.is_empty()
            && self.precision_ns <= 1
    }

    pub fn apply(&self, batch: &mut Vec<Metric>) {
        // A listener's plugin usually has none of these (and with `omit_hostname` no tags to
        // add): its batches of thousands then only lose metrics without fields, as `trim`
        // drops them.
        if self.only_add_tags() && self.tags.is_empty() {
            batch.retain(|m| !m.fields.is_empty());
            return;
        }
        batch.retain_mut(|m| {
            if !self.filter.selects(m) {
                return false;
            }
            self.rename.apply(m);
            for (k, v) in &self.tags {
                m.add_tag_if_absent(k, v);
            }
            if !self.filter.trim(m) {
                return false;
            }
            for (k, v) in &self.kept_tags {
                m.add_tag_if_absent(k, v);
            }
            if self.precision_ns > 1 {
                m.time = round_to(m.time, self.precision_ns);
            }
            true
        });
    }
}

fn round_to(t: i64, unit: i64) -> i64 {
    // In i128: a timestamp near i64::MAX (parsed from an input's data) must not overflow.
    let (t, unit) = (i128::from(t), i128::from(unit));
    let r = (t + unit / 2).div_euclid(unit) * unit;
    // Past the representable range, stay on the last multiple that fits.
    let r = if r > i128::from(i64::MAX) {
        r - unit
    } else if r < i128::from(i64::MIN) {
        r + unit
    } else {
        r
    };
    r as i64
}

/// Telegraf's default precision: the order of the interval, at most one second.
pub fn default_precision(interval: Duration) -> Duration {
    if interval >= Duration::from_secs(1) {
        Duration::from_secs(1)
    } else if interval >= Duration::from_millis(1) {
        Duration::from_millis(1)
    } else if interval >= Duration::from_micros(1) {
        Duration::from_micros(1)
    } else {
        Duration::from_nanos(1)
    }
}

/// Counters of one input, Telegraf's `internal_gather` fields.
pub struct GatherStats {
    _stats: Arc<Stats>,
    pub gathered: Stat,
    pub errors: Stat,
    pub time_ns: Stat,
    pub timeouts: Stat,
    pub agent_gathered: Stat,
    pub agent_errors: Stat,
}

impl GatherStats {
    pub fn new(name: &str, alias: Option<&str>, agent_gathered: Stat, agent_errors: Stat) -> Self {
        let mut tags = vec![("input", name)];
        if let Some(a) = alias {
            tags.push(("alias", a));
        }
        let stats = selfstat::register("internal_gather", &tags);
        GatherStats {
            gathered: stats.stat("metrics_gathered"),
            errors: stats.stat("errors"),
            time_ns: stats.stat("gather_time_ns"),
            timeouts: stats.stat("gather_timeouts"),
            agent_gathered,
            agent_errors,
            _stats: stats,
        }
    }

    fn error(&self) {
        self.errors.incr();
        self.agent_errors.incr();
    }
}

/// A configured input ready to run: its plugin, schedule and modifiers.
pub struct PreparedInput {
    /// The plugin's name (`cpu`).
    pub name: String,
    /// `inputs.NAME`, or `inputs.NAME::ALIAS`: how logs name it.
    pub id: String,
    /// A service that could not start with the agent: retried every interval before it runs.
    pub start_pending: bool,
    pub interval: Duration,
    pub jitter: Duration,
    pub offset: Duration,
    pub round_interval: bool,
    pub modifiers: Arc<Modifiers>,
    pub stats: GatherStats,
    pub plugin: InputPlugin,
}

impl PreparedInput {
    pub fn new(
        cfg: InputConfig,
        agent: &crate::config::AgentConfig,
        global_tags: &[(String, String)],
        agent_gathered: Stat,
        agent_errors: Stat,
    ) -> Self {
        let id = match &cfg.alias {
            Some(a) => format!("inputs.{}::{}", cfg.name, a),
            None => format!("inputs.{}", cfg.name),
        };
        let to_str = |(k, v): &(String, String)| (Str::from(k.as_str()), Str::from(v.as_str()));
        let mut tags: Vec<(Str, Str)> = cfg
            .tags
            .iter()
            .chain(global_tags.iter())
            .map(to_str)
            .collect();
        if !agent.omit_hostname {
            tags.push(("host".into(), agent.hostname.as_str().into()));
        }
        let mut kept_tags = Vec::new();
        if agent.always_include_local_tags {
            kept_tags.extend(cfg.tags.iter().map(to_str));
        }
        if agent.always_include_global_tags {
            kept_tags.extend(tags[cfg.tags.len()..].iter().cloned());
        }
        let precision = if cfg.precision.is_zero() {
            if agent.precision.is_zero() {
                default_precision(cfg.interval)
            } else {
                agent.precision
            }
        } else {
            cfg.precision
        };
        let stats = GatherStats::new(
            &cfg.name,
            cfg.alias.as_deref(),
            agent_gathered,
            agent_errors,
        );
        // Telegraf leaves the timestamps of service inputs (listeners) as they came.
        let precision_ns = match cfg.plugin {
            InputPlugin::Polled(_) => precision.as_nanos() as i64,
            InputPlugin::Service(_) => 0,
        };
        PreparedInput {
            name: cfg.name.clone(),
            id,
            start_pending: cfg.start_pending,
            interval: cfg.interval,
            jitter: cfg.collection_jitter,
            offset: cfg.collection_offset,
            round_interval: agent.round_interval,
            modifiers: Arc::new(Modifiers {
                filter: cfg.filter,
                rename: Rename::new(cfg.name_override, cfg.name_prefix, cfg.name_suffix),
                tags,
                kept_tags,
                precision_ns,
            }),
            stats,
            plugin: cfg.plugin,
        }
    }
}

/// Gathers once now, bounded by `timeout`; returns the prepared metrics.
pub async fn gather_once(
    id: &str,
    plugin: &mut dyn Input,
    modifiers: &Modifiers,
    stats: &GatherStats,
    timeout: Duration,
) -> Vec<Metric> {
    let now = sonde_plugins::model::now_ns();
    gather_at(id, plugin, modifiers, stats, timeout, now).await
}

/// Gathers once for the tick at `time` (the accumulator's timestamp; the inputs woken by one
/// tick share it, and with it their reads of the same /proc files).
async fn gather_at(
    id: &str,
    plugin: &mut dyn Input,
    modifiers: &Modifiers,
    stats: &GatherStats,
    timeout: Duration,
    time: i64,
) -> Vec<Metric> {
    let started = std::time::Instant::now();
    let mut acc = Accumulator::new(time);
    match tokio::time::timeout(timeout, plugin.gather(&mut acc)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            stats.error();
            if e.downcast_ref::<RepeatedError>().is_some() {
                debug!(input = id, error = %format!("{e:#}"), "gather failed again");
            } else {
                error!(input = id, error = %format!("{e:#}"), "gather failed");
            }
        }
        Err(_) => {
            stats.error();
            stats.timeouts.incr();
            error!(input = id, ?timeout, "gather timed out");
        }
    }
    for e in &acc.errors {
        stats.error();
        error!(input = id, error = %e, "gather error");
    }
    stats.time_ns.set(started.elapsed().as_nanos() as i64);
    let mut metrics = acc.metrics;
    modifiers.apply(&mut metrics);
    stats.gathered.add(metrics.len() as i64);
    stats.agent_gathered.add(metrics.len() as i64);
    debug!(input = id, metrics = metrics.len(), elapsed = ?started.elapsed(), "gathered");
    metrics
}

/// Wall-clock nanoseconds since the epoch.
fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Where the ticks of unaligned intervals (`round_interval = false`) fall: every interval
/// from the first time a schedule is computed, for every input alike.
fn phase() -> i128 {
    static PHASE: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    *PHASE.get_or_init(wall_ns)
}

/// One tick of an input's schedule.
struct Tick {
    /// When to wake.
    wake: tokio::time::Instant,
    /// The gather's timestamp, in nanoseconds.
    time: i64,
    /// The grid point (before offset and jitter), in wall-clock nanoseconds.
    grid: i128,
}

/// The next tick of an input's schedule, after the grid point `last`.
///
/// Ticks fall on one wall-clock grid per interval: its multiples when `round_interval`
/// (Telegraf's aligned ticker), else multiples counted from one process-wide start (its
/// unaligned ticker), plus the input's offset. So the polled inputs of one interval wake at
/// the same instant (the runtime's timer fires them together) with the same timestamp, by
/// which they share one read of the /proc files they have in common. A random jitter moves
/// one input's tick, as in Telegraf.
fn next_tick(
    interval: Duration,
    round: bool,
    offset: Duration,
    jitter: Duration,
    last: Option<i128>,
) -> Tick {
    let now_instant = tokio::time::Instant::now();
    let now = wall_ns();
    let i = interval.as_nanos().max(1) as i128;
    let start = if round { 0 } else { phase() };
    let mut grid = now + i - (now - start).rem_euclid(i);
    // A wall clock stepped back must not repeat a tick.
    if let Some(last) = last
        && grid <= last
    {
        grid += (last - grid) / i * i + i;
    }
    let extra = offset + jitter.mul_f64(fastrand::f64());
    let wake = now_instant + Duration::from_nanos((grid - now) as u64) + extra;
    let time = (grid + extra.as_nanos() as i128).clamp(0, i128::from(i64::MAX)) as i64;
    Tick { wake, time, grid }
}

/// Runs an input until `shutdown` turns true. Polled inputs gather on their schedule (the first
/// gather at once, as the fastest path to data); service inputs run continuously. With
/// `direct` (see `pipeline::direct_chunk`), a listener whose modifiers only add tags is offered
/// the direct route, in records of that many metrics.
pub async fn run(
    input: PreparedInput,
    tx: PipelineSender,
    mut shutdown: watch::Receiver<bool>,
    direct: Option<usize>,
) {
    let PreparedInput {
        name: _,
        id,
        start_pending,
        interval,
        jitter,
        offset,
        round_interval,
        modifiers,
        stats,
        plugin,
    } = input;
    match plugin {
        InputPlugin::Service(mut service) => {
            // startup_error_behavior = "retry": keep trying to start, without holding up a stop.
            if start_pending {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    match service.start().await {
                        Ok(()) => {
                            info!(input = %id, "started after retrying");
                            break;
                        }
                        Err(e) => {
                            stats.error();
                            warn!(input = %id, error = %format!("{e:#}"), "still cannot start; retrying");
                        }
                    }
                }
            }
            let m = modifiers.clone();
            let gathered = stats.gathered.clone();
            let agent_gathered = stats.agent_gathered.clone();
            let counted = Arc::new(move |n: usize| {
                gathered.add(n as i64);
                agent_gathered.add(n as i64);
            });
            let count = counted.clone();
            let prepare = Arc::new(move |b: &mut Vec<Metric>| {
                m.apply(b);
                count(b.len());
            });
            let mut sink = MetricSink::new(tx, prepare);
            if let Some(chunk) = direct.filter(|_| modifiers.only_add_tags()) {
                sink = sink.with_direct(Direct {
                    tags: modifiers.tags.clone(),
                    chunk,
                    counted,
                });
            }
            let ctx = ServiceContext {
                sink,
                interval,
                shutdown,
            };
            if let Err(e) = service.run(ctx).await {
                stats.error();
                error!(input = %id, error = %format!("{e:#}"), "service input stopped with an error");
            }
        }
        InputPlugin::Polled(mut plugin) => {
            let timeout = interval.max(Duration::from_millis(100));
            // The first gather at once, then on the interval's grid.
            let mut time = sonde_plugins::model::now_ns();
            let mut last = None;
            let mut first = true;
            loop {
                if !first {
                    let tick = next_tick(interval, round_interval, offset, jitter, last);
                    tokio::select! {
                        _ = tokio::time::sleep_until(tick.wake) => {}
                        _ = shutdown.changed() => {}
                    }
                    (time, last) = (tick.time, Some(tick.grid));
                }
                first = false;
                if *shutdown.borrow() {
                    return;
                }
                let metrics =
                    gather_at(&id, plugin.as_mut(), &modifiers, &stats, timeout, time).await;
                // A polled input cannot push back: a full output buffer drops its oldest.
                if !metrics.is_empty() && tx.send(metrics, None).await.is_err() {
                    warn!(input = %id, "pipeline closed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_default_precision() {
        assert_eq!(round_to(1_499_999_999, 1_000_000_000), 1_000_000_000);
        assert_eq!(round_to(1_500_000_000, 1_000_000_000), 2_000_000_000);
        assert_eq!(round_to(-1_600_000_000, 1_000_000_000), -2_000_000_000);
        // Extreme timestamps from input data round without overflowing.
        let top = round_to(i64::MAX, 1_000_000_000);
        assert!(top > i64::MAX - 1_000_000_000 && top % 1_000_000_000 == 0);
        assert_eq!(round_to(i64::MIN, 1_000_000_000) % 1_000_000_000, 0);
        assert_eq!(
            default_precision(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            default_precision(Duration::from_millis(500)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn modifiers_rename_and_tag_without_overriding() {
        let m = Modifiers {
            filter: Filter::default(),
            rename: Rename::new(None, Some("p_".into()), Some("_s".into())),
            tags: vec![("host".into(), "h".into()), ("dc".into(), "x".into())],
            kept_tags: Vec::new(),
            precision_ns: 1_000_000_000,
        };
        let mut batch = vec![
            Metric::new("cpu", 1_700_000_000_400_000_000)
                .with_tag("dc", "own")
                .with_field("v", 1i64),
        ];
        m.apply(&mut batch);
        assert_eq!(batch[0].name, "p_cpu_s");
        assert_eq!(batch[0].tag("dc"), Some("own"));
        assert_eq!(batch[0].tag("host"), Some("h"));
        assert_eq!(batch[0].time, 1_700_000_000_000_000_000);
    }

    #[test]
    fn modifiers_with_nothing_to_do_only_drop_fieldless_metrics() {
        let m = Modifiers {
            filter: Filter::default(),
            rename: Rename::new(None, None, None),
            tags: Vec::new(),
            kept_tags: Vec::new(),
            precision_ns: 1,
        };
        let kept = Metric::new("cpu", 1_700_000_000_400_000_001)
            .with_tag("dc", "own")
            .with_field("v", 1i64);
        let mut batch = vec![kept.clone(), Metric::new("empty", 5), kept.clone()];
        m.apply(&mut batch);
        assert_eq!(batch, vec![kept.clone(), kept]);
    }

    #[test]
    fn round_interval_aligns_to_the_boundary() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _g = rt.enter();
        let t = next_tick(
            Duration::from_secs(10),
            true,
            Duration::ZERO,
            Duration::ZERO,
            None,
        );
        let d = t.wake - tokio::time::Instant::now();
        assert!(d <= Duration::from_secs(10));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + d;
        // Within a few ms of a 10s boundary.
        assert!(now.as_millis() % 10_000 < 50 || now.as_millis() % 10_000 > 9_950);
        // The timestamp is the boundary itself.
        assert_eq!(t.time % 10_000_000_000, 0);
        assert_eq!(i128::from(t.time), t.grid);
    }

    #[test]
    fn inputs_of_one_interval_share_ticks_and_offset_and_jitter_move_them() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _g = rt.enter();
        let ms = Duration::from_millis;
        for round in [true, false] {
            let a = next_tick(ms(200), round, Duration::ZERO, Duration::ZERO, None);
            let b = next_tick(ms(200), round, Duration::ZERO, Duration::ZERO, None);
            // Computed at (nearly) the same moment: the same tick, unless a boundary fell
            // between the two calls.
            assert!(
                a.time == b.time || b.time - a.time == 200_000_000,
                "{round}"
            );
            // The next tick after `a` is one interval later, never `a` again.
            let c = next_tick(ms(200), round, Duration::ZERO, Duration::ZERO, Some(a.grid));
            assert!(c.grid > a.grid && (c.grid - a.grid) % 200_000_000 == 0);
            // A grid point in the future (a clock stepped back) is not repeated.
            let d = next_tick(
                ms(200),
                round,
                Duration::ZERO,
                Duration::ZERO,
                Some(a.grid + 400_000_000),
            );
            assert_eq!(d.grid, a.grid + 600_000_000);
            // Offset: the same grid, later.
            let o = next_tick(ms(200), round, ms(30), Duration::ZERO, None);
            assert_eq!(i128::from(o.time) - o.grid, 30_000_000);
            // Jitter: within [offset, offset + jitter).
            let j = next_tick(ms(200), round, ms(30), ms(50), None);
            let extra = i128::from(j.time) - j.grid;
            assert!((30_000_000..80_000_000).contains(&extra), "{extra}");
        }
    }
}
