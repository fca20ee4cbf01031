//! `inputs.dns_query`: queries DNS servers for domains with Telegraf's options, tags, fields
//! and result codes. Messages are built and parsed by hickory-proto; the transport (one UDP
//! datagram or one TCP exchange per query) is ours, so the time waited is known even on a
//! timeout (Telegraf reports 0 then).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Instant;

use async_trait::async_trait;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::probe::{MAX_CONCURRENT_PROBES, run_bounded};
use crate::config_types::Duration;
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    servers: Vec<String>,
    network: String,
    domains: Vec<String>,
    record_type: String,
    port: u16,
    timeout: Duration,
    include_fields: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: Vec::new(),
            network: "udp".into(),
            domains: vec![".".into()],
            record_type: "NS".into(),
            port: 53,
            timeout: Duration::from_secs(2),
            include_fields: Vec::new(),
        }
    }
}

const RECORD_TYPES: &[&str] = &[
    "A", "AAAA", "ANY", "CNAME", "MX", "NS", "PTR", "SOA", "SPF", "SRV", "TXT",
];

pub struct DnsQuery {
    /// (tag, address) of each server.
    servers: Vec<(String, SocketAddr)>,
    tcp: bool,
    domains: Vec<String>,
    record_type: String,
    qtype: RecordType,
    timeout: std::time::Duration,
    first_ip: bool,
    all_ips: bool,
}

enum Failure {
    Timeout,
    Error(String),
}

/// Go's (miekg/dns) names of response codes, which Telegraf puts in the `rcode` tag.
fn rcode_name(v: u16) -> String {
    match v {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADSIG",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        other => return other.to_string(),
    }
    .to_string()
}

/// The query name: an IP for PTR queries becomes its reverse name (Telegraf does the same).
fn query_name(domain: &str, qtype: RecordType) -> Result<Name, String> {
    if qtype == RecordType::PTR
        && let Ok(ip) = domain.parse::<IpAddr>()
    {
        return Ok(Name::from(ip));
    }
    let mut name = Name::from_str(domain).map_err(|e| format!("domain {domain:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

impl DnsQuery {
    async fn exchange(&self, server: SocketAddr, request: &Message) -> Result<Message, Failure> {
        let bytes = request
            .to_vec()
            .map_err(|e| Failure::Error(format!("encoding the query: {e}")))?;
        let id = request.metadata.id;
        let io = |e: std::io::Error| Failure::Error(e.to_string());
        if self.tcp {
            let mut s = tokio::net::TcpStream::connect(server).await.map_err(io)?;
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            s.write_all(&framed).await.map_err(io)?;
            let len = s.read_u16().await.map_err(io)?;
            let mut buf = vec![0u8; usize::from(len)];
            s.read_exact(&mut buf).await.map_err(io)?;
            let msg = Message::from_vec(&buf).map_err(|e| Failure::Error(e.to_string()))?;
            if msg.metadata.id != id {
                return Err(Failure::Error("answer with another id".into()));
            }
            Ok(msg)
        } else {
            let bind: SocketAddr = if server.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            let sock = tokio::net::UdpSocket::bind(bind).await.map_err(io)?;
            sock.connect(server).await.map_err(io)?;
            sock.send(&bytes).await.map_err(io)?;
            let mut buf = vec![0u8; 65535];
            // Stray or spoofed datagrams with another id are skipped until the timeout.
            loop {
                let n = sock.recv(&mut buf).await.map_err(io)?;
                match Message::from_vec(&buf[..n]) {
                    Ok(msg)
                        if msg.metadata.id == id
                            && msg.metadata.message_type == MessageType::Response =>
                    {
                        return Ok(msg);
                    }
                    _ => continue,
                }
            }
        }
    }

    async fn probe(
        &self,
        server: &(String, SocketAddr),
        domain: &str,
        time: i64,
    ) -> (Metric, Option<String>) {
        let mut m = Metric::new("dns_query", time).with_kind(ValueType::Gauge);
        m.add_tag("server", server.0.as_str());
        m.add_tag("domain", domain);
        m.add_tag("record_type", self.record_type.as_str());
        let start = Instant::now();
        let res = match query_name(domain, self.qtype) {
            Err(e) => Err(Failure::Error(e)),
            Ok(name) => {
                let mut req = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
                req.metadata.recursion_desired = true;
                req.add_query(Query::query(name, self.qtype));
                match tokio::time::timeout(self.timeout, self.exchange(server.1, &req)).await {
                    Err(_) => Err(Failure::Timeout),
                    Ok(r) => r,
                }
            }
        };
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        m.add_field("query_time_ms", ms);
        let mut error = None;
        let (result, code) = match res {
            Err(Failure::Timeout) => {
                error = Some(format!("{domain} at {}: timeout", server.0));
                ("timeout", 1i64)
            }
            Err(Failure::Error(e)) => {
                error = Some(format!("{domain} at {}: {e}", server.0));
                ("error", 2)
            }
            Ok(msg) => {
                let rcode = u16::from(msg.metadata.response_code);
                m.add_tag("rcode", rcode_name(rcode));
                m.add_field("rcode_value", i64::from(rcode));
                if self.first_ip
                    && let Some(ip) = msg.answers.iter().find_map(|r| ip_of(&r.data))
                {
                    m.add_field("ip", ip);
                }
                if self.all_ips {
                    for (i, r) in msg.answers.iter().enumerate() {
                        if let Some(ip) = ip_of(&r.data) {
                            m.add_field(format!("ip_{i}"), ip);
                        }
                    }
                }
                if rcode == 0 {
                    ("success", 0)
                } else {
                    error = Some(format!(
                        "invalid answer ({}) from {} after {} query for {domain}",
                        rcode_name(rcode),
                        server.0,
                        self.record_type
                    ));
                    ("error", 2)
                }
            }
        };
        m.add_tag("result", result);
        m.add_field("result_code", code);
        (m, error)
    }
}

fn ip_of(d: &RData) -> Option<String> {
    match d {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        _ => None,
    }
}

#[async_trait]
impl Input for DnsQuery {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let time = acc.time();
        let this = &*self;
        let n = this.domains.len();
        let results = run_bounded(0..this.servers.len() * n, MAX_CONCURRENT_PROBES, |i| {
            this.probe(&this.servers[i / n], &this.domains[i % n], time)
        })
        .await;
        for (m, err) in results {
            if let Some(e) = err {
                acc.add_error(e);
            }
            acc.add(m);
        }
        Ok(())
    }
}

fn bad(path: &str, message: impl Into<String>) -> BuildError {
    BuildError::Config(ConfigError {
        path: vec![path.to_string()],
        message: message.into(),
    })
}

/// The `nameserver` lines of /etc/resolv.conf, used when `servers` is empty (as Telegraf).
fn resolv_conf_servers() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn new(table: toml::Table) -> Result<DnsQuery, BuildError> {
    let cfg: Config = parse_config(table)?;
    let tcp = match cfg.network.as_str() {
        "udp" | "" => false,
        "tcp" => true,
        n => {
            return Err(bad(
                "network",
                format!("{n:?}: expected \"udp\" or \"tcp\""),
            ));
        }
    };
    let rt = cfg.record_type.to_ascii_uppercase();
    if !RECORD_TYPES.contains(&rt.as_str()) {
        return Err(bad(
            "record_type",
            format!(
                "{:?}: expected one of {}",
                cfg.record_type,
                RECORD_TYPES.join(", ")
            ),
        ));
    }
    let qtype = if rt == "SPF" {
        RecordType::from(99u16)
    } else {
        RecordType::from_str(&rt).map_err(|e| bad("record_type", e.to_string()))?
    };
    let mut first_ip = false;
    let mut all_ips = false;
    for f in &cfg.include_fields {
        match f.as_str() {
            "first_ip" => first_ip = true,
            "all_ips" => all_ips = true,
            other => {
                return Err(bad(
                    "include_fields",
                    format!("{other:?}: expected \"first_ip\" or \"all_ips\""),
                ));
            }
        }
    }
    let names = if cfg.servers.is_empty() {
        resolv_conf_servers()
    } else {
        cfg.servers.clone()
    };
    if names.is_empty() {
        return Err(bad(
            "servers",
            "no servers given and none in /etc/resolv.conf",
        ));
    }
    let mut servers = Vec::new();
    for s in names {
        let host = s.trim_matches(['[', ']']);
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, cfg.port),
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, cfg.port))
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| bad("servers", format!("{s:?} does not resolve")))?,
        };
        servers.push((s, addr));
    }
    if cfg.domains.is_empty() {
        return Err(bad("domains", "at least one domain is needed"));
    }
    if cfg.timeout.is_zero() {
        return Err(bad("timeout", "must be more than 0"));
    }
    Ok(DnsQuery {
        servers,
        tcp,
        domains: cfg.domains,
        record_type: rt,
        qtype,
        timeout: cfg.timeout.get(),
        first_ip,
        all_ips,
    })
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    Ok(InputPlugin::Polled(Box::new(new(table)?)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "dns_query",
    description: "Query DNS servers: result, response code and query time",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;

    /// A UDP DNS server answering A queries for `ok.test.` with 192.0.2.7 and NXDOMAIN for
    /// anything else; queries for `slow.test.` get no answer.
    async fn server() -> u16 {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf[..n]).unwrap();
                let name = q.queries[0].name().clone();
                if name.to_ascii() == "slow.test." {
                    continue;
                }
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.add_query(q.queries[0].clone());
                if name.to_ascii() == "ok.test." {
                    r.answers
                        .push(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 7))));
                } else {
                    r.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
                }
                // A stray datagram with another id first: it must be skipped.
                let mut stray = r.clone();
                stray.metadata.id = q.metadata.id.wrapping_add(1);
                sock.send_to(&stray.to_vec().unwrap(), peer).await.unwrap();
                sock.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
            }
        });
        port
    }

    #[tokio::test]
    async fn answers_nxdomain_and_timeout() {
        let port = server().await;
        let mut p = new(toml::from_str(&format!(
            "servers = ['127.0.0.1']\nport = {port}\nrecord_type = 'A'\n\
                 domains = ['ok.test', 'missing.test', 'slow.test']\ntimeout = '300ms'\n\
                 include_fields = ['first_ip', 'all_ips']"
        ))
        .unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        let [ok, nx, slow] = &acc.metrics[..] else {
            panic!("{:?}", acc.metrics)
        };
        assert_eq!(ok.tag("result"), Some("success"));
        assert_eq!(ok.tag("rcode"), Some("NOERROR"));
        assert_eq!(ok.field("ip"), Some(&FieldValue::from("192.0.2.7")));
        assert_eq!(ok.field("ip_0"), Some(&FieldValue::from("192.0.2.7")));
        assert_eq!(nx.tag("result"), Some("error"));
        assert_eq!(nx.tag("rcode"), Some("NXDOMAIN"));
        assert_eq!(nx.field("rcode_value"), Some(&FieldValue::Int(3)));
        assert_eq!(nx.field("result_code"), Some(&FieldValue::Int(2)));
        assert_eq!(slow.tag("result"), Some("timeout"));
        assert_eq!(slow.field("result_code"), Some(&FieldValue::Int(1)));
        let Some(FieldValue::Float(ms)) = slow.field("query_time_ms") else {
            panic!()
        };
        assert!(*ms >= 299.0, "{ms}");
        assert_eq!(acc.errors.len(), 2);
    }

    #[test]
    fn ptr_names_are_reversed() {
        let n = query_name("192.0.2.7", RecordType::PTR).unwrap();
        assert_eq!(n.to_ascii(), "7.2.0.192.in-addr.arpa.");
        let n = query_name("example.org", RecordType::A).unwrap();
        assert_eq!(n.to_ascii(), "example.org.");
    }

    #[test]
    fn config_checks() {
        for (t, key) in [
            (
                "servers = ['127.0.0.1']\nrecord_type = 'XYZ'",
                "record_type",
            ),
            ("servers = ['127.0.0.1']\nnetwork = 'quic'", "network"),
            (
                "servers = ['127.0.0.1']\ninclude_fields = ['ttl']",
                "include_fields",
            ),
        ] {
            match new(toml::from_str(t).unwrap()) {
                Err(BuildError::Config(c)) => assert_eq!(c.path, [key], "{t}"),
                _ => panic!("{t} accepted"),
            }
        }
        assert!(
            new(toml::from_str("servers = ['127.0.0.1']\nrecord_type = 'spf'").unwrap()).is_ok()
        );
    }
}
