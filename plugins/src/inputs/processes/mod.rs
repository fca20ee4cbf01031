//! `inputs.processes`: processes by state and the total thread count, from /proc/<pid>/stat,
//! as Telegraf's processes plugin on Linux.

use std::io::Read;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::inputs::host::{HostPaths, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Telegraf's option to run `ps` through sudo on BSDs; Linux reads /proc, so it is ignored.
    #[serde(default)]
    pub use_sudo: bool,
}

#[derive(Default)]
struct Counts {
    running: i64,
    sleeping: i64,
    blocked: i64,
    zombies: i64,
    stopped: i64,
    dead: i64,
    paging: i64,
    idle: i64,
    parked: i64,
    unknown: i64,
    total: i64,
    threads: i64,
}

struct Processes {
    proc: PathBuf,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Processes {
    fn new(paths: &HostPaths) -> Self {
        Processes {
            proc: paths.proc.clone(),
            path: PathBuf::new(),
            buf: Vec::with_capacity(512),
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        let rd = match std::fs::read_dir(&self.proc) {
            Ok(rd) => rd,
            Err(e) => {
                acc.add_error(format!("reading {}: {e}", self.proc.display()));
                return;
            }
        };
        let mut c = Counts::default();
        let mut first_err = None;
        for entry in rd.flatten() {
            let name = entry.file_name();
            let name = name.as_encoded_bytes();
            if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
                continue;
            }
            self.path.clear();
            self.path.push(entry.path());
            self.path.push("stat");
            self.buf.clear();
            match std::fs::File::open(&self.path).and_then(|mut f| f.read_to_end(&mut self.buf)) {
                Ok(_) => {}
                // The process exited between listing and reading.
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ESRCH) =>
                {
                    continue;
                }
                Err(e) => {
                    first_err
                        .get_or_insert_with(|| format!("reading {}: {e}", self.path.display()));
                    continue;
                }
            }
            if !count(&self.buf, &mut c) {
                first_err
                    .get_or_insert_with(|| format!("{}: unexpected content", self.path.display()));
            }
        }
        if let Some(e) = first_err {
            acc.add_error(e);
        }
        let mut m = metric(acc, "processes", ValueType::Gauge, 12);
        push(&mut m, "blocked", c.blocked);
        push(&mut m, "zombies", c.zombies);
        push(&mut m, "stopped", c.stopped);
        push(&mut m, "running", c.running);
        push(&mut m, "sleeping", c.sleeping);
        push(&mut m, "total", c.total);
        push(&mut m, "unknown", c.unknown);
        push(&mut m, "dead", c.dead);
        push(&mut m, "paging", c.paging);
        push(&mut m, "total_threads", c.threads);
        push(&mut m, "idle", c.idle);
        // Telegraf only has this field once a parked task was seen.
        if c.parked > 0 {
            push(&mut m, "parked", c.parked);
        }
        acc.add(m);
    }
}

/// Counts one /proc/<pid>/stat. The command name may hold spaces and parentheses, so the
/// fields start after the last ')'. Returns false when the content is not a stat line.
fn count(stat: &[u8], c: &mut Counts) -> bool {
    let Some(i) = memchr::memrchr(b')', stat) else {
        return false;
    };
    let rest = std::str::from_utf8(&stat[i + 1..]).unwrap_or("");
    let mut it = rest.split_ascii_whitespace();
    let Some(state) = it.next().and_then(|s| s.bytes().next()) else {
        return false;
    };
    match state {
        b'R' => c.running += 1,
        b'S' => c.sleeping += 1,
        b'D' => c.blocked += 1,
        b'Z' => c.zombies += 1,
        b'X' | b'x' => c.dead += 1,
        b'T' | b't' => c.stopped += 1,
        b'W' => c.paging += 1,
        b'I' => c.idle += 1,
        b'P' => c.parked += 1,
        _ => c.unknown += 1,
    }
    c.total += 1;
    // num_threads is field 20 of the line, the 17th after the state.
    if let Some(Ok(n)) = it.nth(16).map(str::parse::<i64>) {
        c.threads += n;
    }
    true
}

#[async_trait]
impl Input for Processes {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let _cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Processes::new(
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "processes",
    description: "Number of processes by state and total threads (Telegraf's processes)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn gather(paths: &HostPaths) -> Accumulator {
        let mut p = Processes::new(paths);
        let mut acc = Accumulator::new(1);
        p.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn counts_states_and_threads_from_fixture() {
        let acc = gather(&fixture("modern"));
        // pid 5 has a garbage stat: counted as an error, the rest still reported.
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        let m = &acc.metrics[0];
        let i = |k: &str| m.field(k).cloned();
        assert_eq!(i("total"), Some(FieldValue::Int(4)));
        assert_eq!(i("running"), Some(FieldValue::Int(1)));
        assert_eq!(i("sleeping"), Some(FieldValue::Int(1)));
        assert_eq!(i("zombies"), Some(FieldValue::Int(1)));
        assert_eq!(i("idle"), Some(FieldValue::Int(1)));
        assert_eq!(i("blocked"), Some(FieldValue::Int(0)));
        assert_eq!(i("total_threads"), Some(FieldValue::Int(1 + 12 + 1 + 1)));
        assert!(m.field("parked").is_none());
    }

    #[test]
    fn comm_with_parens_and_spaces() {
        let mut c = Counts::default();
        let line = b"42 (a) b) (c d) D 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 7 0 1\n";
        assert!(count(line, &mut c));
        assert_eq!((c.blocked, c.threads), (1, 7));
        assert!(!count(b"garbage", &mut c));
    }

    #[test]
    fn real_proc_counts_this_process() {
        let acc = gather(&HostPaths::default());
        let m = &acc.metrics[0];
        let Some(FieldValue::Int(total)) = m.field("total") else {
            panic!()
        };
        let Some(FieldValue::Int(threads)) = m.field("total_threads") else {
            panic!()
        };
        // Our own process is counted (its main thread may be sleeping while a test thread
        // runs, so "running" can be 0), and every process has exactly one state.
        let states: i64 = m
            .fields
            .iter()
            .filter(|(k, _)| k != "total" && k != "total_threads")
            .map(|(_, v)| match v {
                FieldValue::Int(n) => *n,
                _ => 0,
            })
            .sum();
        assert!(*total >= 1, "{m}");
        assert_eq!(states, *total, "{m}");
        assert!(threads >= total);
    }
}
