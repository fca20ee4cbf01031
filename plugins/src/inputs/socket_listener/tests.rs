use std::io::Write;

use super::*;
use crate::plugin::ServiceContext;

struct Running {
    rx: flume::Receiver<Vec<Metric>>,
    _stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(toml_text: &str, format: &str) -> Running {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let pc = crate::codec::ParserConfig {
        data_format: Some(format.into()),
        ..Default::default()
    };
    let ctx = BuildContext {
        parser: Some(
            crate::codec::build_parser_with_name(&pc, "influx", Some("socket_listener")).unwrap(),
        ),
        id: "socket_listener".into(),
        ..Default::default()
    };
    let mut l = Box::new(build_listener(table, &ctx).unwrap());
    l.start().await.unwrap();
    let shared = l.shared.clone();
    let (sink, rx) = crate::plugin::test_sink(64);
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(l.run(ServiceContext {
        sink,
        interval: Duration::from_secs(10),
        shutdown,
    }));
    Running {
        rx,
        _stop: stop,
        shared,
    }
}

/// A sink whose buffers refuse the first `refuse` batches as full, then accept.
fn refusing_sink(refuse: usize) -> (crate::plugin::MetricSink, flume::Receiver<Vec<Metric>>) {
    use crate::plugin::{Batch, Delivery, MetricSink, PipelineSender};
    let (tx, rx) = flume::unbounded::<Batch>();
    let (out_tx, out_rx) = flume::unbounded();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok(b) = rx.recv_async().await {
            n += 1;
            let ack = b.ack.unwrap();
            if n <= refuse {
                let _ = ack.send(Delivery::Full {
                    reason: "metric_buffer_limit reached".into(),
                    retry_after: Duration::from_millis(50),
                });
            } else {
                let _ = ack.send(Delivery::Accepted);
                let _ = out_tx.send(b.metrics);
            }
        }
    });
    let sink = MetricSink::new(
        PipelineSender::new(tx, u32::MAX),
        Arc::new(|_: &mut Vec<Metric>| {}),
    );
    (sink, out_rx)
}

async fn start_with_sink(
    toml_text: &str,
    sink: crate::plugin::MetricSink,
) -> (watch::Sender<bool>, Arc<Shared>) {
    let ctx = BuildContext {
        parser: Some(crate::codec::build_parser(&Default::default(), "influx").unwrap()),
        ..Default::default()
    };
    let mut l = Box::new(build_listener(toml::from_str(toml_text).unwrap(), &ctx).unwrap());
    l.start().await.unwrap();
    let shared = l.shared.clone();
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(l.run(ServiceContext {
        sink,
        interval: Duration::from_secs(10),
        shutdown,
    }));
    (stop, shared)
}

#[tokio::test]
async fn a_full_buffer_holds_a_stream_back_and_drops_datagrams_counted() {
    // Stream: refused twice, then the same lines are parsed again and delivered once.
    let port = free_port();
    let (sink, rx) = refusing_sink(2);
    let (_stop, _sh) = start_with_sink(
        &format!("service_address = \"tcp://127.0.0.1:{port}\""),
        sink,
    )
    .await;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"held a=1i 1\nheld b=2i 2\n").unwrap();
    let got = next(&rx).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].field("b"), Some(&crate::FieldValue::Int(2)));
    c.write_all(b"after c=3i 3\n").unwrap();
    assert_eq!(next(&rx).await[0].name, "after");
    assert!(rx.try_recv().is_err(), "nothing delivered twice");

    // Datagrams: the refused batch is dropped and counted, later ones are delivered.
    let port = free_port();
    let (sink, rx) = refusing_sink(1);
    let (_stop2, sh) = start_with_sink(
        &format!("service_address = \"udp://127.0.0.1:{port}\""),
        sink,
    )
    .await;
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"lost v=1i\nlost v=2i", ("127.0.0.1", port))
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), async {
            while sh.dropped.get() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .is_ok()
    );
    u.send_to(b"kept v=1i", ("127.0.0.1", port)).unwrap();
    assert_eq!(next(&rx).await[0].name, "kept");
    assert_eq!(sh.dropped.get(), 2);
}

async fn next(rx: &flume::Receiver<Vec<Metric>>) -> Vec<Metric> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv_async())
        .await
        .expect("metrics within 5s")
        .unwrap()
}

#[tokio::test]
async fn tcp_lines_partial_writes_and_bad_lines() {
    let port = free_port();
    let r = start(
        &format!("service_address = \"tcp://127.0.0.1:{port}\""),
        "influx",
    )
    .await;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A line split across two writes is put back together.
    c.write_all(b"cpu,host=a usage=1 1700000000000000000\nmem fr")
        .unwrap();
    let got = next(&r.rx).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tag("host"), Some("a"));
    c.write_all(b"ee=2i\r\nnot line protocol\n").unwrap();
    let got = next(&r.rx).await;
    assert_eq!(got[0].name, "mem");
    assert_eq!(got[0].field("free"), Some(&crate::FieldValue::Int(2)));
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.shared.parse_errors.get(), 1);
    assert_eq!(r.shared.messages.get(), 3);
}

#[tokio::test]
async fn udp_json_datagrams() {
    let port = free_port();
    let r = start(
        &format!("service_address = \"udp4://127.0.0.1:{port}\"\ntime_source = \"receive_time\""),
        "json",
    )
    .await;
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(br#"{"a": 1, "b": 2}"#, ("127.0.0.1", port))
        .unwrap();
    let got = next(&r.rx).await;
    assert_eq!(got[0].name, "socket_listener");
    assert_eq!(got[0].field("a"), Some(&crate::FieldValue::Float(1.0)));
    assert!(got[0].time > 0);
    s.send_to(b"{broken", ("127.0.0.1", port)).unwrap();
    s.send_to(br#"{"c": 3}"#, ("127.0.0.1", port)).unwrap();
    let got = next(&r.rx).await;
    assert!(got.iter().any(|m| m.field("c").is_some()));
    assert_eq!(r.shared.parse_errors.get(), 1);
}

#[tokio::test]
async fn unix_stream_and_datagram_sockets() {
    let dir = std::env::temp_dir().join(format!("sonde-sl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stream_path = dir.join("s.sock");
    let gram_path = dir.join("g.sock");
    let r = start(
        &format!(
            "service_address = \"unix://{}\"\nsocket_mode = \"600\"",
            stream_path.display()
        ),
        "influx",
    )
    .await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stream_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut c = std::os::unix::net::UnixStream::connect(&stream_path).unwrap();
    c.write_all(b"u v=1\n").unwrap();
    assert_eq!(next(&r.rx).await[0].name, "u");

    let g = start(
        &format!("service_address = \"unixgram://{}\"", gram_path.display()),
        "influx",
    )
    .await;
    let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
    s.send_to(b"g v=1\ng v=2", &gram_path).unwrap();
    assert_eq!(next(&g.rx).await.len(), 2);
    drop((r, g));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn max_connections_delimiter_and_gzip() {
    let port = free_port();
    let r = start(
        &format!(
            "service_address = \"tcp://127.0.0.1:{port}\"\nmax_connections = 1\n\
             splitting_strategy = \"delimiter\"\nsplitting_delimiter = \"0x3B\"\ncontent_encoding = \"gzip\""
        ),
        "influx",
    )
    .await;
    let mut first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"a v=1;b v=2;").unwrap();
    first.write_all(&gz.finish().unwrap()).unwrap();
    let got = next(&r.rx).await;
    assert_eq!(got.len(), 2, "{got:?}");
    // A second connection while the first is open is closed without being read.
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::task::spawn_blocking(move || std::io::Read::read(&mut second, &mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert_eq!(r.shared.refused.get(), 1);
    drop(first);
}

#[tokio::test]
async fn read_timeout_closes_an_idle_connection() {
    let port = free_port();
    let _r = start(
        &format!("service_address = \"tcp://127.0.0.1:{port}\"\nread_timeout = \"200ms\""),
        "influx",
    )
    .await;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = std::time::Instant::now();
    let n = tokio::task::spawn_blocking(move || std::io::Read::read(&mut c, &mut [0u8; 1]))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0)), "{n:?}");
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn allowed_sources_keep_other_senders_out() {
    let port = free_port();
    let r = start(
        &format!("service_address = \"udp://127.0.0.1:{port}\"\nallowed_sources = [\"10.9.9.9\"]"),
        "influx",
    )
    .await;
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"blocked v=1i", ("127.0.0.1", port)).unwrap();
    let port2 = free_port();
    let ok = start(
        &format!(
            "service_address = \"tcp://127.0.0.1:{port2}\"\nallowed_sources = [\"127.0.0.1\"]"
        ),
        "influx",
    )
    .await;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port2)).unwrap();
    c.write_all(b"allowed v=1i\n").unwrap();
    assert_eq!(next(&ok.rx).await[0].name, "allowed");
    for _ in 0..500 {
        if r.shared.refused.get() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.shared.refused.get(), 1);
    assert!(r.rx.try_recv().is_err());
}

#[tokio::test]
async fn a_gzip_bomb_without_message_ends_closes_the_connection() {
    let port = free_port();
    let r = start(
        &format!("service_address = \"tcp://127.0.0.1:{port}\"\ncontent_encoding = \"gzip\""),
        "influx",
    )
    .await;
    // 8 MiB of one never-ending line, a few KiB compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"ok v=1i\n").unwrap();
    let zeros = vec![b'a'; 1 << 20];
    for _ in 0..8 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = c.write_all(&bomb);
    assert_eq!(next(&r.rx).await[0].name, "ok");
    for _ in 0..500 {
        if r.shared.read_errors.get() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        r.shared.read_errors.get(),
        1,
        "the connection is closed with an error"
    );
}

#[tokio::test]
async fn a_bare_port_listens_on_both_families() {
    let port = free_port();
    let r = start(&format!("service_address = \"tcp://:{port}\""), "influx").await;
    for (i, host) in ["127.0.0.1", "::1"].into_iter().enumerate() {
        let mut c = std::net::TcpStream::connect((host, port)).unwrap();
        c.write_all(format!("fam n={i}i\n").as_bytes()).unwrap();
        assert_eq!(
            next(&r.rx).await[0].field("n"),
            Some(&crate::FieldValue::Int(i as i64))
        );
    }
    let port = free_port();
    let r = start(&format!("service_address = \"udp://:{port}\""), "influx").await;
    for (i, (local, host)) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")]
        .into_iter()
        .enumerate()
    {
        let u = std::net::UdpSocket::bind(local).unwrap();
        u.send_to(format!("fam n={i}i").as_bytes(), (host, port))
            .unwrap();
        assert_eq!(
            next(&r.rx).await[0].field("n"),
            Some(&crate::FieldValue::Int(i as i64))
        );
    }
}

#[test]
fn addresses_and_options() {
    let ctx = BuildContext {
        parser: Some(crate::codec::build_parser(&Default::default(), "influx").unwrap()),
        ..Default::default()
    };
    let err = |t: &str| match build(toml::from_str(t).unwrap(), &ctx) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{t} accepted"),
    };
    assert!(err("service_address = \":8094\"").contains("no protocol"));
    assert!(err("service_address = \"vsock://1:80\"").contains("not supported yet"));
    assert!(err("service_address = \"udp://[ff02::1%eth0]:8094\"").contains("not supported yet"));
    assert!(err("service_address = \"sctp://:1\"").contains("unknown protocol"));
    assert!(err("service_address = \"tcp://8094\"").contains("host:port"));
    let tcp = "service_address = \"tcp://:8094\"\n";
    assert!(err(&format!("{tcp}content_encoding = \"zstd\"")).contains("gzip"));
    assert!(err(&format!("{tcp}socket_mode = \"rwx\"")).contains("octal"));
    assert!(err(&format!("{tcp}splitting_strategy = \"lines\"")).contains("unknown strategy"));
    assert!(err(&format!("{tcp}multicast_source = \"10.0.0.1\"")).contains("not supported yet"));
    assert!(err(&format!("{tcp}allowed_sources = [\"x\"]")).contains("IP address"));
    assert!(err(&format!("{tcp}time_source = \"now\"")).contains("receive_time"));
    assert_eq!(
        parse_address("tcp6://:1").unwrap(),
        Address::Tcp("[::]:1".into(), Family::V6)
    );
    assert_eq!(
        parse_address("udp4://:1").unwrap(),
        Address::Udp("0.0.0.0:1".into(), Family::V4)
    );
    assert_eq!(
        parse_address("tcp://:1").unwrap(),
        Address::Tcp("[::]:1".into(), Family::Any)
    );
    assert_eq!(
        parse_address("unixgram:///tmp/x").unwrap(),
        Address::Unixgram("/tmp/x".into())
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Garbage of any shape through the split-and-parse path: counted, never a panic.
    #[test]
    fn garbage_is_counted_never_a_panic(data: Vec<u8>) {
        let sh = Shared {
            id: "t".into(),
            address: "tcp://:1".into(),
            parser: crate::codec::build_parser(&Default::default(), "influx").unwrap(),
            splitter: Splitter::Newline,
            gzip: true,
            max_decompressed: 1 << 16,
            max_message: MIN_MESSAGE,
            read_timeout: None,
            keep_alive: None,
            max_connections: 0,
            allowed: vec![],
            receive_time: false,
            connections: AtomicUsize::new(0),
            _stats: selfstat::register("t", &[]),
            stat_connections: Stat::default(),
            refused: Stat::default(),
            messages: Stat::default(),
            parse_errors: Stat::default(),
            read_errors: Stat::default(),
            dropped: Stat::default(),
        };
        let mut out = Vec::new();
        datagram(&sh, &data, 0, &mut out);
        proptest::prop_assert!(sh.parse_errors.get() >= 1 || data.is_empty() || !out.is_empty());
    }
}
