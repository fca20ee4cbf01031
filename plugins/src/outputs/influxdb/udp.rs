//! `outputs.influxdb` over UDP (`udp://host:port` URLs): line protocol in datagrams of at most
//! `udp_payload` bytes, as InfluxDB 1.x's UDP listener takes it (the database is set on the
//! server side).

use std::net::SocketAddr;

use async_trait::async_trait;

use crate::codec::influx::{InfluxOptions, write_metric_filtered};
use crate::model::Metric;
use crate::plugin::{Output, WriteError};

/// The largest payload of one UDP datagram over IPv4.
const MAX_DATAGRAM: usize = 65_507;

pub struct UdpInfluxDb {
    /// `host:port` of each URL, resolved at every connect.
    pub targets: Vec<String>,
    pub payload: usize,
    pub opts: InfluxOptions,
    pub omit_timestamp: bool,
    pub exclude: Vec<String>,
    pub local: Option<std::net::IpAddr>,
    socket: Option<(tokio::net::UdpSocket, Vec<SocketAddr>)>,
}

impl UdpInfluxDb {
    pub fn new(targets: Vec<String>, payload: usize) -> UdpInfluxDb {
        UdpInfluxDb {
            targets,
            payload,
            opts: InfluxOptions::default(),
            omit_timestamp: false,
            exclude: Vec::new(),
            local: None,
            socket: None,
        }
    }
}

/// Packs lines into datagrams of at most `payload` bytes (a line is never split; one longer
/// than `payload` goes alone). Returns the datagrams and the number of lines too large for
/// any datagram.
pub fn pack(lines: &[Vec<u8>], payload: usize) -> (Vec<Vec<u8>>, usize) {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur = Vec::new();
    let mut too_large = 0;
    for line in lines {
        if line.len() > MAX_DATAGRAM {
            too_large += 1;
            continue;
        }
        if !cur.is_empty() && cur.len() + line.len() > payload {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(line);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    (out, too_large)
}

#[async_trait]
impl Output for UdpInfluxDb {
    async fn connect(&mut self) -> anyhow::Result<()> {
        let mut addrs = Vec::new();
        for t in &self.targets {
            let found: Vec<SocketAddr> = tokio::net::lookup_host(t.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("resolving {t}: {e}"))?
                .collect();
            addrs.extend(found.first().copied());
        }
        let local: SocketAddr = match (self.local, addrs.first()) {
            (Some(ip), _) => (ip, 0).into(),
            (None, Some(a)) if a.is_ipv6() => "[::]:0".parse().expect("literal"),
            _ => "0.0.0.0:0".parse().expect("literal"),
        };
        let socket = tokio::net::UdpSocket::bind(local)
            .await
            .map_err(|e| anyhow::anyhow!("binding a UDP socket to {local}: {e}"))?;
        self.socket = Some((socket, addrs));
        Ok(())
    }

    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        if self.socket.is_none() {
            self.connect().await.map_err(|e| WriteError::Retry {
                reason: format!("{e:#}"),
                retry_after: None,
            })?;
        }
        let lines: Vec<Vec<u8>> = batch
            .iter()
            .map(|m| {
                let mut l = Vec::new();
                write_metric_filtered(&mut l, m, &self.opts, &self.exclude, self.omit_timestamp);
                l
            })
            .filter(|l| !l.is_empty())
            .collect();
        let (datagrams, too_large) = pack(&lines, self.payload);
        let (socket, addrs) = self.socket.as_ref().expect("connected above");
        let n = addrs.len();
        let start = if n > 1 { fastrand::usize(..n) } else { 0 };
        for d in &datagrams {
            // Each datagram to the first target that takes it.
            let mut last = None;
            for i in 0..n {
                match socket.send_to(d, addrs[(start + i) % n]).await {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                return Err(WriteError::Retry {
                    reason: format!("sending UDP datagram: {e}"),
                    retry_after: None,
                });
            }
        }
        if too_large > 0 {
            let reason = format!("{too_large} line(s) longer than a UDP datagram can carry");
            return Err(if too_large >= batch.len() {
                WriteError::Reject { reason }
            } else {
                WriteError::Partial {
                    rejected: too_large,
                    reason,
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_keeps_lines_whole_and_under_the_payload() {
        let lines: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("m v={i}i {i}\n").into_bytes())
            .collect();
        let (d, big) = pack(&lines, 30);
        assert_eq!(big, 0);
        assert!(d.iter().all(|x| x.len() <= 30), "{d:?}");
        assert_eq!(d.concat(), lines.concat());
        // A line over the payload goes alone.
        let long = vec![b"x".repeat(50), b"y\n".to_vec()];
        let (d, _) = pack(&long, 30);
        assert_eq!(d.len(), 2);
        let (d, big) = pack(&[vec![b'z'; MAX_DATAGRAM + 1]], 512);
        assert_eq!((d.len(), big), (0, 1));
    }

    #[tokio::test]
    async fn datagrams_reach_the_listener() {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let mut out = UdpInfluxDb::new(vec![addr.to_string()], 64);
        out.local = Some("127.0.0.2".parse().unwrap());
        let batch: Vec<Metric> = (0..6)
            .map(|i| {
                Metric::new("udp_m", i)
                    .with_tag("host", "a")
                    .with_field("v", i)
            })
            .collect();
        out.write(&batch).await.unwrap();
        let mut got = String::new();
        let mut buf = [0u8; 2048];
        while got.lines().count() < 6 {
            let (n, from) =
                tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
                    .await
                    .expect("a datagram")
                    .unwrap();
            assert!(n <= 64, "datagram of {n} bytes");
            assert_eq!(from.ip().to_string(), "127.0.0.2");
            got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        assert_eq!(got.lines().next(), Some("udp_m,host=a v=0i 0"));
        assert_eq!(got.lines().count(), 6);
    }
}
