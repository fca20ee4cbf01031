//! `inputs.net`: per-interface traffic from /proc/net/dev and the system-wide protocol counters
//! of /proc/net/snmp (tagged interface=all), as Telegraf's net plugin.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::ProcFile;
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::{Str, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Glob patterns of interfaces to report, regardless of their state. Empty: every
    /// interface that is up, except loopback.
    pub interfaces: Vec<String>,
    pub ignore_protocol_stats: bool,
}

/// The /proc/net/snmp sections gopsutil (and so Telegraf) reports.
const PROTOCOLS: &[&str] = &["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"];

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;

struct Net {
    interfaces: Vec<glob::Pattern>,
    ignore_protocol_stats: bool,
    dev: ProcFile,
    snmp: ProcFile,
    class_net: PathBuf,
    buf: String,
    small: String,
    path: PathBuf,
}

impl Net {
    fn new(cfg: Config, paths: &HostPaths) -> Result<Self, String> {
        Ok(Net {
            interfaces: host::compile_globs("interfaces", &cfg.interfaces)?,
            ignore_protocol_stats: cfg.ignore_protocol_stats,
            dev: ProcFile::new(paths.proc("net/dev")),
            snmp: ProcFile::new(paths.proc("net/snmp")),
            class_net: paths.sys("class/net"),
            buf: String::new(),
            small: String::new(),
            path: PathBuf::new(),
        })
    }

    /// Reads a small sysfs attribute of an interface (flags, speed) into `self.small`.
    fn read_attr(&mut self, iface: &str, attr: &str) -> Option<&str> {
        self.path.clear();
        self.path.push(&self.class_net);
        self.path.push(iface);
        self.path.push(attr);
        host::read_to(&self.path, &mut self.small).ok()?;
        Some(self.small.trim())
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        match self.dev.read_or_err(&mut self.buf) {
            Err(e) => acc.add_error(e),
            Ok(()) => {
                let text = std::mem::take(&mut self.buf);
                // Two header lines, then "  name: rx… tx…".
                for line in text.lines().skip(2) {
                    self.interface(acc, line);
                }
                self.buf = text;
            }
        }
        if !self.ignore_protocol_stats {
            self.protocols(acc);
        }
    }

    fn interface(&mut self, acc: &mut Accumulator, line: &str) {
        let Some((name, rest)) = line.rsplit_once(':') else {
            acc.add_error(format!(
                "{}: malformed line {line:?}",
                self.dev.path().display()
            ));
            return;
        };
        let name = name.trim();
        if !self.interfaces.is_empty() {
            if !host::glob_match(&self.interfaces, name) {
                return;
            }
        } else {
            // Telegraf skips interfaces it cannot see, loopback and interfaces that are down.
            let flags = self
                .read_attr(name, "flags")
                .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
            match flags {
                Some(f) if f & IFF_LOOPBACK == 0 && f & IFF_UP != 0 => {}
                _ => return,
            }
        }
        let mut v = [0u64; 16];
        let mut n = 0;
        for (slot, s) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
            match s.parse() {
                Ok(x) => *slot = x,
                Err(_) => break,
            }
            n += 1;
        }
        if n < 12 {
            acc.add_error(format!(
                "{}: malformed line {line:?}",
                self.dev.path().display()
            ));
            return;
        }
        let speed = self
            .read_attr(name, "speed")
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(-1);
        let mut m = metric(acc, "net", ValueType::Counter, 9);
        m.tags.push(("interface".into(), name.into()));
        push(&mut m, "bytes_sent", v[8]);
        push(&mut m, "bytes_recv", v[0]);
        push(&mut m, "packets_sent", v[9]);
        push(&mut m, "packets_recv", v[1]);
        push(&mut m, "err_in", v[2]);
        push(&mut m, "err_out", v[10]);
        push(&mut m, "drop_in", v[3]);
        push(&mut m, "drop_out", v[11]);
        push(&mut m, "speed", speed);
        acc.add(m);
    }

    /// /proc/net/snmp: pairs of "Proto: Name1 Name2 …" / "Proto: v1 v2 …" lines, reported as
    /// lower-cased `proto_name` integer fields.
    fn protocols(&mut self, acc: &mut Accumulator) {
        if let Err(e) = self.snmp.read_or_err(&mut self.buf) {
            acc.add_error(e);
            return;
        }
        let mut m = metric(acc, "net", ValueType::Untyped, 128);
        m.tags.push(("interface".into(), "all".into()));
        let mut lines = self.buf.lines();
        while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            let (Some((proto, names)), Some((vproto, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                acc.add_error(format!("{}: malformed section", self.snmp.path().display()));
                return;
            };
            if proto != vproto {
                acc.add_error(format!(
                    "{}: section {proto} is not followed by its values",
                    self.snmp.path().display()
                ));
                return;
            }
            if !PROTOCOLS.contains(&proto) {
                continue;
            }
            if names.split_ascii_whitespace().count() != values.split_ascii_whitespace().count() {
                acc.add_error(format!(
                    "{}: {proto}: header and values differ in length",
                    self.snmp.path().display()
                ));
                continue;
            }
            let start = m.fields.len();
            for (name, value) in names
                .split_ascii_whitespace()
                .zip(values.split_ascii_whitespace())
            {
                let Ok(value) = value.parse::<i64>() else {
                    acc.add_error(format!(
                        "{}: {proto} {name}: bad value {value:?}",
                        self.snmp.path().display()
                    ));
                    m.fields.truncate(start);
                    break;
                };
                let mut key = Str::with_capacity(proto.len() + 1 + name.len());
                key.extend(proto.chars().map(|c| c.to_ascii_lowercase()));
                key.push('_');
                key.extend(name.chars().map(|c| c.to_ascii_lowercase()));
                push(&mut m, key, value);
            }
        }
        acc.add(m);
    }
}

#[async_trait]
impl Input for Net {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let net =
        Net::new(cfg, &HostPaths::from_env()).map_err(|e| host::config_error("interfaces", e))?;
    Ok(InputPlugin::Polled(Box::new(net)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "net",
    description: "Network interface traffic and protocol counters (Telegraf's net)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn gather(cfg: Config, paths: &HostPaths) -> Accumulator {
        let mut n = Net::new(cfg, paths).unwrap();
        let mut acc = Accumulator::new(1);
        n.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn default_skips_loopback_and_down_interfaces() {
        let acc = gather(Config::default(), &fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let names: Vec<_> = acc
            .metrics
            .iter()
            .map(|m| m.tag("interface").unwrap())
            .collect();
        // lo is loopback, eth1 is down, docker0 has no sysfs entry.
        assert_eq!(names, ["eth0", "all"]);
        let eth0 = &acc.metrics[0];
        assert_eq!(eth0.field("bytes_recv"), Some(&FieldValue::UInt(1000)));
        assert_eq!(eth0.field("packets_recv"), Some(&FieldValue::UInt(10)));
        assert_eq!(eth0.field("drop_in"), Some(&FieldValue::UInt(2)));
        assert_eq!(eth0.field("bytes_sent"), Some(&FieldValue::UInt(2000)));
        assert_eq!(eth0.field("err_out"), Some(&FieldValue::UInt(3)));
        assert_eq!(eth0.field("drop_out"), Some(&FieldValue::UInt(4)));
        assert_eq!(eth0.field("speed"), Some(&FieldValue::Int(1000)));
        let all = &acc.metrics[1];
        assert_eq!(all.field("tcp_maxconn"), Some(&FieldValue::Int(-1)));
        assert_eq!(all.field("ip_forwarding"), Some(&FieldValue::Int(2)));
        assert_eq!(all.field("icmpmsg_intype3"), Some(&FieldValue::Int(11)));
        assert_eq!(all.field("udplite_indatagrams"), Some(&FieldValue::Int(0)));
        assert!(all.fields.iter().all(|(k, _)| !k.starts_with("future")));
    }

    #[test]
    fn explicit_globs_include_loopback_and_down() {
        let cfg = Config {
            interfaces: vec!["lo".into(), "eth*".into()],
            ignore_protocol_stats: true,
        };
        let acc = gather(cfg, &fixture("modern"));
        let names: Vec<_> = acc
            .metrics
            .iter()
            .map(|m| m.tag("interface").unwrap())
            .collect();
        assert_eq!(names, ["lo", "eth0", "eth1"]);
        // eth1 has no speed attribute.
        assert_eq!(acc.metrics[2].field("speed"), Some(&FieldValue::Int(-1)));
    }

    #[test]
    fn old_kernel_format_and_mismatched_snmp() {
        let cfg = Config {
            interfaces: vec!["*".into()],
            ignore_protocol_stats: false,
        };
        let acc = gather(cfg, &fixture("old"));
        // eth0 glued to its counters ("eth0:123"), and an Ip section whose lengths differ.
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        assert_eq!(acc.metrics[1].tag("interface"), Some("eth0"));
        assert_eq!(
            acc.metrics[1].field("bytes_recv"),
            Some(&FieldValue::UInt(123))
        );
        assert_eq!(
            acc.metrics[1].field("bytes_sent"),
            Some(&FieldValue::UInt(456))
        );
        let all = acc.metrics.last().unwrap();
        assert!(all.field("ip_forwarding").is_none());
        assert_eq!(all.field("tcp_activeopens"), Some(&FieldValue::Int(5)));
    }

    #[test]
    fn bad_glob_is_a_config_error() {
        let cfg = Config {
            interfaces: vec!["[".into()],
            ignore_protocol_stats: false,
        };
        assert!(Net::new(cfg, &fixture("modern")).is_err());
    }

    #[test]
    fn real_loopback_counters_move_with_traffic() {
        let cfg = Config {
            interfaces: vec!["lo".into()],
            ignore_protocol_stats: true,
        };
        let mut n = Net::new(cfg, &HostPaths::default()).unwrap();
        let sent = |n: &mut Net| {
            let mut acc = Accumulator::new(1);
            n.gather_sync(&mut acc);
            match acc.metrics[0].field("bytes_sent") {
                Some(FieldValue::UInt(v)) => *v,
                _ => panic!(),
            }
        };
        let before = sent(&mut n);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sock.local_addr().unwrap();
        for _ in 0..10 {
            sock.send_to(&[0u8; 1000], to).unwrap();
        }
        assert!(sent(&mut n) >= before + 10_000);
    }
}
