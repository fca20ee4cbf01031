//! `inputs.netstat`: TCP sockets by state and the UDP socket count, from /proc/net/{tcp,tcp6,
//! udp,udp6}, with Telegraf's netstat field names.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Field per kernel TCP state number (include/net/tcp_states.h), index = state.
const TCP_FIELDS: [&str; 13] = [
    "tcp_none",
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
    // TCP_NEW_SYN_RECV: a request socket, counted with syn_recv.
    "tcp_syn_recv",
];

/// The order Telegraf lists the fields in.
const ORDER: [&str; 12] = [
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
    "tcp_none",
];

/// Longest line of /proc/net/{tcp,udp}6 (the kernel pads tcp lines to 150 bytes, v6 ones are
/// about 180), with margin: see [`host::read_seq_to`].
const MAX_LINE: usize = 512;

struct Netstat {
    files: [(PathBuf, bool); 4],
    buf: String,
}

impl Netstat {
    fn new(paths: &HostPaths) -> Self {
        Netstat {
            files: [
                (paths.proc("net/tcp"), true),
                (paths.proc("net/tcp6"), true),
                (paths.proc("net/udp"), false),
                (paths.proc("net/udp6"), false),
            ],
            buf: String::new(),
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        let mut tcp = [0i64; 13];
        let mut udp = 0i64;
        for (path, is_tcp) in &self.files {
            if let Err(e) = host::read_seq_to(path, &mut self.buf, MAX_LINE) {
                // Hosts without IPv6 have no tcp6/udp6: not an error (as in gopsutil).
                let v6 = path.to_string_lossy().ends_with('6');
                if !(v6 && e.kind() == std::io::ErrorKind::NotFound) {
                    acc.add_error(format!("reading {}: {e}", path.display()));
                }
                continue;
            }
            let mut bad = 0;
            for line in self.buf.lines().skip(1) {
                if !is_tcp {
                    udp += 1;
                    continue;
                }
                // "  sl  local_address rem_address   st …": the state is the 4th column, in hex.
                let state = line
                    .split_ascii_whitespace()
                    .nth(3)
                    .and_then(|s| usize::from_str_radix(s, 16).ok());
                match state {
                    Some(s) if s < TCP_FIELDS.len() => tcp[s] += 1,
                    _ => bad += 1,
                }
            }
            if bad > 0 {
                acc.add_error(format!(
                    "{}: {bad} lines with no known TCP state",
                    path.display()
                ));
            }
        }
        let mut m = metric(acc, "netstat", ValueType::Untyped, 13);
        for name in ORDER {
            let n: i64 = TCP_FIELDS
                .iter()
                .zip(tcp)
                .filter(|(f, _)| **f == name)
                .map(|(_, n)| n)
                .sum();
            push(&mut m, name, n);
        }
        push(&mut m, "udp_socket", udp);
        acc.add(m);
    }
}

#[async_trait]
impl Input for Netstat {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let _cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Netstat::new(
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "netstat",
    description: "TCP connections by state and UDP sockets (Telegraf's netstat)",
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
        let mut n = Netstat::new(paths);
        let mut acc = Accumulator::new(1);
        n.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn counts_states_across_v4_and_v6() {
        let acc = gather(&fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let m = &acc.metrics[0];
        assert_eq!(m.fields.len(), 13);
        assert_eq!(m.field("tcp_listen"), Some(&FieldValue::Int(2)));
        assert_eq!(m.field("tcp_established"), Some(&FieldValue::Int(2)));
        assert_eq!(m.field("tcp_time_wait"), Some(&FieldValue::Int(1)));
        assert_eq!(m.field("tcp_syn_recv"), Some(&FieldValue::Int(1)));
        assert_eq!(m.field("tcp_close"), Some(&FieldValue::Int(0)));
        assert_eq!(m.field("udp_socket"), Some(&FieldValue::Int(3)));
    }

    #[test]
    fn no_ipv6_is_fine_missing_tcp_is_an_error() {
        let acc = gather(&fixture("old"));
        assert_eq!(acc.errors.len(), 2, "{:?}", acc.errors); // tcp and udp missing
        assert_eq!(
            acc.metrics[0].field("udp_socket"),
            Some(&FieldValue::Int(0))
        );
    }

    #[test]
    fn real_listening_socket_is_counted() {
        let count = || {
            let acc = gather(&HostPaths::default());
            assert!(acc.errors.is_empty(), "{:?}", acc.errors);
            match acc.metrics[0].field("tcp_listen") {
                Some(FieldValue::Int(n)) => *n,
                _ => panic!(),
            }
        };
        // 60 listeners make /proc/net/tcp longer than two pages: read_seq_to must not stop
        // early at the seq_file's page-sized chunks.
        let _l: Vec<_> = (0..60)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        // Other tests may open or close listeners concurrently: just require ours to show.
        assert!(count() >= 60);
    }
}
