//! `inputs.net_response`: a TCP or UDP probe of one address, with Telegraf's options, tags,
//! fields and result codes. Unlike Telegraf, a failed probe still reports `response_time`
//! (the time waited).

use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::config_types::Duration;
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    protocol: String,
    address: String,
    timeout: Duration,
    read_timeout: Duration,
    send: String,
    expect: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: "tcp".into(),
            address: String::new(),
            timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            send: String::new(),
            expect: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Timeout,
    ConnectionFailed,
    ReadFailed,
    StringMismatch,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionFailed => "connection_failed",
            Outcome::ReadFailed => "read_failed",
            Outcome::StringMismatch => "string_mismatch",
        }
    }
    fn code(self) -> i64 {
        match self {
            Outcome::Success => 0,
            Outcome::Timeout => 1,
            Outcome::ConnectionFailed => 2,
            Outcome::ReadFailed => 3,
            Outcome::StringMismatch => 4,
        }
    }
}

pub struct NetResponse {
    udp: bool,
    address: String,
    host: String,
    port: String,
    timeout: std::time::Duration,
    read_timeout: std::time::Duration,
    send: Vec<u8>,
    expect: Option<regex::Regex>,
}

impl NetResponse {
    async fn tcp(&self) -> (Outcome, Option<String>) {
        let conn = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect(self.address.as_str()),
        )
        .await;
        let mut conn = match conn {
            Err(_) => return (Outcome::Timeout, None),
            Ok(Err(e)) => return (Outcome::ConnectionFailed, Some(e.to_string())),
            Ok(Ok(c)) => c,
        };
        if !self.send.is_empty()
            && let Err(e) = conn.write_all(&self.send).await
        {
            return (Outcome::ConnectionFailed, Some(format!("send: {e}")));
        }
        let Some(expect) = &self.expect else {
            return (Outcome::Success, None);
        };
        let mut line = Vec::new();
        let mut reader = BufReader::new(&mut conn);
        let read =
            tokio::time::timeout(self.read_timeout, reader.read_until(b'\n', &mut line)).await;
        match read {
            Err(_) => (Outcome::ReadFailed, Some("read timeout".into())),
            Ok(Err(e)) => (Outcome::ReadFailed, Some(e.to_string())),
            Ok(Ok(0)) => (Outcome::ReadFailed, Some("connection closed".into())),
            Ok(Ok(_)) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\r', '\n']);
                if expect.is_match(text) {
                    (Outcome::Success, None)
                } else {
                    (Outcome::StringMismatch, None)
                }
            }
        }
    }

    async fn udp(&self) -> (Outcome, Option<String>) {
        let target = match tokio::net::lookup_host(self.address.as_str()).await {
            Ok(mut a) => match a.next() {
                Some(a) => a,
                None => return (Outcome::ConnectionFailed, Some("no address".into())),
            },
            Err(e) => return (Outcome::ConnectionFailed, Some(e.to_string())),
        };
        let bind = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = match tokio::net::UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => return (Outcome::ConnectionFailed, Some(e.to_string())),
        };
        if let Err(e) = sock.connect(target).await {
            return (Outcome::ConnectionFailed, Some(e.to_string()));
        }
        if let Err(e) = sock.send(&self.send).await {
            return (Outcome::ConnectionFailed, Some(format!("send: {e}")));
        }
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(self.read_timeout, sock.recv(&mut buf)).await {
            Err(_) => (Outcome::ReadFailed, Some("read timeout".into())),
            Ok(Err(e)) => (Outcome::ReadFailed, Some(e.to_string())),
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                match &self.expect {
                    Some(re) if !re.is_match(&text) => (Outcome::StringMismatch, None),
                    _ => (Outcome::Success, None),
                }
            }
        }
    }

    async fn probe(&self, time: i64) -> (Metric, Option<String>) {
        let start = Instant::now();
        let (outcome, err) = if self.udp {
            self.udp().await
        } else {
            self.tcp().await
        };
        let elapsed = start.elapsed().as_secs_f64();
        let mut m = Metric::new("net_response", time).with_kind(ValueType::Gauge);
        m.add_tag("server", self.host.as_str());
        m.add_tag("port", self.port.as_str());
        m.add_tag("protocol", if self.udp { "udp" } else { "tcp" });
        m.add_tag("result", outcome.name());
        m.add_field("response_time", elapsed);
        m.add_field("result_code", outcome.code());
        m.add_field("result_type", outcome.name());
        if self.expect.is_some() {
            m.add_field("string_found", outcome == Outcome::Success);
        }
        (m, err.map(|e| format!("{}: {e}", self.address)))
    }
}

#[async_trait]
impl Input for NetResponse {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let (m, err) = self.probe(acc.time()).await;
        if let Some(e) = err {
            tracing::debug!("net_response: {e}");
        }
        acc.add(m);
        Ok(())
    }
}

fn bad(path: &str, message: impl Into<String>) -> BuildError {
    BuildError::Config(ConfigError {
        path: vec![path.to_string()],
        message: message.into(),
    })
}

fn new(table: toml::Table) -> Result<NetResponse, BuildError> {
    let cfg: Config = parse_config(table)?;
    let udp = match cfg.protocol.as_str() {
        "tcp" | "" => false,
        "udp" => true,
        p => {
            return Err(bad(
                "protocol",
                format!("{p:?}: expected \"tcp\" or \"udp\""),
            ));
        }
    };
    if cfg.address.is_empty() {
        return Err(bad("address", "an address (host:port) is needed"));
    }
    let (host, port) = cfg
        .address
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .ok_or_else(|| bad("address", format!("{:?} is not host:port", cfg.address)))?;
    let host = host.trim_matches(['[', ']']).to_string();
    let port = port.to_string();
    if udp && cfg.send.is_empty() {
        return Err(bad("send", "a UDP probe needs something to send"));
    }
    if udp && cfg.expect.is_empty() {
        return Err(bad("expect", "a UDP probe needs an expected answer"));
    }
    if cfg.timeout.is_zero() {
        return Err(bad("timeout", "must be more than 0"));
    }
    if cfg.read_timeout.is_zero() {
        return Err(bad("read_timeout", "must be more than 0"));
    }
    let expect = if cfg.expect.is_empty() {
        None
    } else {
        Some(
            regex::Regex::new(&cfg.expect)
                .map_err(|e| bad("expect", format!("not a regex: {e}")))?,
        )
    };
    Ok(NetResponse {
        udp,
        address: cfg.address,
        host,
        port,
        timeout: cfg.timeout.get(),
        read_timeout: cfg.read_timeout.get(),
        send: cfg.send.into_bytes(),
        expect,
    })
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    Ok(InputPlugin::Polled(Box::new(new(table)?)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "net_response",
    description: "Probe a TCP or UDP service: result and response time",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;
    use tokio::io::AsyncReadExt;

    fn plugin(t: &str) -> NetResponse {
        new(toml::from_str(t).unwrap()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn code(m: &Metric) -> i64 {
        match m.field("result_code") {
            Some(FieldValue::Int(v)) => *v,
            o => panic!("{o:?}"),
        }
    }

    #[tokio::test]
    async fn tcp_expect_match_mismatch_and_silence() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    let n = s.read(&mut b).await.unwrap_or(0);
                    if &b[..n] != b"quiet\n" {
                        let _ = s.write_all(b"echo: ").await;
                        let _ = s.write_all(&b[..n]).await;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                });
            }
        });
        let p = plugin(&format!(
            "address = '127.0.0.1:{port}'\nsend = \"ping\\n\"\nexpect = 'echo: p.ng'"
        ));
        let (m, _) = p.probe(0).await;
        assert_eq!(m.tag("result"), Some("success"));
        assert_eq!(m.tag("port"), Some(port.to_string().as_str()));
        assert_eq!(m.tag("server"), Some("127.0.0.1"));
        assert_eq!(code(&m), 0);
        let p = plugin(&format!(
            "address = '127.0.0.1:{port}'\nsend = \"pong\\n\"\nexpect = 'ping'"
        ));
        assert_eq!(code(&p.probe(0).await.0), 4);
        let p = plugin(&format!(
            "address = '127.0.0.1:{port}'\nsend = \"quiet\\n\"\nexpect = 'x'\nread_timeout = '200ms'"
        ));
        let (m, _) = p.probe(0).await;
        assert_eq!(code(&m), 3);
        let Some(FieldValue::Float(t)) = m.field("response_time") else {
            panic!()
        };
        assert!(*t >= 0.19, "{t}");
    }

    #[tokio::test]
    async fn refused_tcp_and_udp() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (m, _) = plugin(&format!("address = '127.0.0.1:{port}'"))
            .probe(0)
            .await;
        assert_eq!(m.tag("result"), Some("connection_failed"));
        assert_eq!(code(&m), 2);
        let (m, _) = plugin(&format!(
            "protocol = 'udp'\naddress = '127.0.0.1:{port}'\nsend = 'a'\nexpect = 'a'"
        ))
        .probe(0)
        .await;
        assert_eq!(code(&m), 3, "{m:?}");
        assert_eq!(m.tag("protocol"), Some("udp"));
    }

    #[test]
    fn config_checks() {
        for (t, key) in [
            ("address = 'x'", "address"),
            ("address = 'x:1'\nprotocol = 'icmp'", "protocol"),
            ("address = 'x:1'\nprotocol = 'udp'\nexpect = 'a'", "send"),
            ("address = 'x:1'\nprotocol = 'udp'\nsend = 'a'", "expect"),
            ("address = 'x:1'\nexpect = '('", "expect"),
        ] {
            match new(toml::from_str(t).unwrap()) {
                Err(BuildError::Config(c)) => assert_eq!(c.path, [key], "{t}"),
                _ => panic!("{t} accepted"),
            }
        }
    }
}
