use super::*;
use crate::model::FieldValue;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

fn ca(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

struct Files {
    dir: PathBuf,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// root.pem, chain.pem (leaf + intermediate + root), expired.pem, future.pem.
fn pki() -> Files {
    let dir = std::env::temp_dir().join(format!(
        "sonde-x509-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let root = CertifiedIssuer::self_signed(ca("Root"), KeyPair::generate().unwrap()).unwrap();
    let inter = CertifiedIssuer::signed_by(ca("Intermediate"), KeyPair::generate().unwrap(), &root)
        .unwrap();
    let mut lp =
        CertificateParams::new(vec!["svc.test".to_string(), "127.0.0.1".to_string()]).unwrap();
    lp.distinguished_name.push(DnType::CommonName, "svc.test");
    let leaf = lp.signed_by(&KeyPair::generate().unwrap(), &inter).unwrap();
    let mut ep = CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    ep.not_before = rcgen::date_time_ymd(2019, 1, 1);
    ep.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let expired = ep.signed_by(&KeyPair::generate().unwrap(), &inter).unwrap();
    let mut fp = CertificateParams::new(vec!["new.test".to_string()]).unwrap();
    fp.not_before = rcgen::date_time_ymd(2090, 1, 1);
    fp.not_after = rcgen::date_time_ymd(2091, 1, 1);
    let future = fp.signed_by(&KeyPair::generate().unwrap(), &inter).unwrap();
    std::fs::write(dir.join("root.pem"), root.pem()).unwrap();
    std::fs::write(
        dir.join("chain.pem"),
        format!("{}{}{}", leaf.pem(), inter.pem(), root.pem()),
    )
    .unwrap();
    std::fs::write(
        dir.join("expired.pem"),
        format!("{}{}", expired.pem(), inter.pem()),
    )
    .unwrap();
    std::fs::write(dir.join("future.pem"), future.pem()).unwrap();
    Files { dir }
}

async fn gather(toml: &str) -> Accumulator {
    let mut p = new(toml::from_str(toml).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    let mut acc = Accumulator::new(0);
    p.gather(&mut acc).await.unwrap();
    acc
}

fn int(m: &Metric, k: &str) -> i64 {
    match m.field(k) {
        Some(FieldValue::Int(v)) => *v,
        o => panic!("{k}: {o:?}"),
    }
}

#[tokio::test]
async fn chain_file_types_and_verification() {
    let f = pki();
    let d = f.dir.display();
    let acc = gather(&format!(
        "sources = ['{d}/chain.pem']\ntls_ca = '{d}/root.pem'"
    ))
    .await;
    assert!(acc.errors.is_empty(), "{:?}", acc.errors);
    let types: Vec<_> = acc.metrics.iter().map(|m| m.tag("type").unwrap()).collect();
    assert_eq!(types, ["leaf", "intermediate", "root"]);
    for m in &acc.metrics {
        assert_eq!(m.tag("verification"), Some("valid"), "{m:?}");
        assert_eq!(int(m, "verification_code"), 0);
        assert!(int(m, "expiry") > 0);
        assert_eq!(
            int(m, "enddate") - int(m, "startdate"),
            int(m, "expiry") + int(m, "age")
        );
    }
    let leaf = &acc.metrics[0];
    assert_eq!(leaf.tag("common_name"), Some("svc.test"));
    assert_eq!(leaf.tag("issuer_common_name"), Some("Intermediate"));
    assert_eq!(leaf.tag("san"), Some("svc.test,127.0.0.1"));
    assert_eq!(leaf.tag("source").unwrap(), format!("file://{d}/chain.pem"));

    // Without the root trusted, nothing verifies; exclude_root_certs keeps the leaf only.
    let other = pki();
    let acc = gather(&format!(
        "sources = ['file://{d}/chain.pem']\ntls_ca = '{}/root.pem'\nexclude_root_certs = true",
        other.dir.display()
    ))
    .await;
    assert_eq!(acc.metrics.len(), 1);
    assert_eq!(acc.metrics[0].tag("verification"), Some("invalid"));
    let Some(FieldValue::String(e)) = acc.metrics[0].field("verification_error") else {
        panic!()
    };
    assert!(e.contains("unknown authority"), "{e}");
}

#[tokio::test]
async fn expired_and_future_certificates() {
    let f = pki();
    let d = f.dir.display();
    let acc = gather(&format!(
        "sources = ['{d}/expired.pem', '{d}/fut*.pem']\ntls_ca = '{d}/root.pem'"
    ))
    .await;
    assert_eq!(acc.metrics.len(), 3, "{:?}", acc.metrics);
    let expired = &acc.metrics[0];
    assert!(int(expired, "expiry") < 0);
    assert_eq!(int(expired, "enddate"), 1577836800);
    assert_eq!(expired.tag("verification"), Some("invalid"));
    // The intermediate that signed it is still valid.
    assert_eq!(acc.metrics[1].tag("verification"), Some("valid"));
    let future = &acc.metrics[2];
    assert!(int(future, "age") < 0);
    let Some(FieldValue::String(e)) = future.field("verification_error") else {
        panic!()
    };
    assert!(e.contains("not yet valid"), "{e}");
}

#[tokio::test]
async fn missing_file_and_refused_port_are_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let acc = gather(&format!(
        "sources = ['/nonexistent/x.pem', 'tcp://127.0.0.1:{port}']\ntimeout = '1s'"
    ))
    .await;
    assert!(acc.metrics.is_empty());
    assert_eq!(acc.errors.len(), 2, "{:?}", acc.errors);
}

#[test]
fn bad_sources_are_refused() {
    for s in ["ftp://x", "tcp://host-without-port", "relative.pem"] {
        match new(toml::from_str(&format!("sources = ['{s}']")).unwrap()) {
            Err(BuildError::Config(c)) => assert_eq!(c.path, ["sources", "0"]),
            _ => panic!("{s} accepted"),
        }
    }
}

/// A TLS server (TLS 1.3 with session tickets) answering with a leaf + intermediate chain.
async fn tls_server() -> (u16, Files) {
    let f = pki();
    let root = CertifiedIssuer::self_signed(ca("Root2"), KeyPair::generate().unwrap()).unwrap();
    let inter =
        CertifiedIssuer::signed_by(ca("Intermediate2"), KeyPair::generate().unwrap(), &root)
            .unwrap();
    let key = KeyPair::generate().unwrap();
    let mut lp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    lp.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf = lp.signed_by(&key, &inter).unwrap();
    std::fs::write(f.dir.join("root2.pem"), root.pem()).unwrap();
    let chain = vec![leaf.der().clone(), inter.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    cfg.send_tls13_tickets = 4;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    use tokio::io::AsyncReadExt;
                    let mut b = [0u8; 16];
                    let _ = tls.read(&mut b).await;
                }
            });
        }
    });
    (port, f)
}

/// Every gather reads the whole chain: a resumed session would carry no certificates.
#[tokio::test]
async fn every_gather_gets_the_chain() {
    let (port, f) = tls_server().await;
    let mut p = new(toml::from_str(&format!(
        "sources = ['https://localhost:{port}']\ntls_ca = '{}/root2.pem'",
        f.dir.display()
    ))
    .unwrap())
    .unwrap();
    for _ in 0..3 {
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let types: Vec<_> = acc.metrics.iter().map(|m| m.tag("type").unwrap()).collect();
        assert_eq!(types, ["leaf", "intermediate"]);
        assert!(
            acc.metrics
                .iter()
                .all(|m| m.tag("verification") == Some("valid"))
        );
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn leaf_der() -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["fuzz.test".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "fuzz.test");
        p.self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Damaged certificate files give an error or fewer certificates, never a panic, and
        /// whatever parses yields a metric or a counted error.
        #[test]
        fn damaged_certificates_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
            pem in any::<bool>(),
        ) {
            let mut der = leaf_der();
            for (i, b) in flips {
                let i = i.index(der.len());
                der[i] ^= b;
            }
            der.truncate(cut.index(der.len()) + 1);
            let dir = std::env::temp_dir().join(format!("sonde-x509-fuzz-{}-{}", std::process::id(), fastrand::u64(..)));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("c.pem");
            let data = if pem {
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
                )
                .into_bytes()
            } else {
                der.clone()
            };
            std::fs::write(&path, &data).unwrap();
            let p = new(toml::from_str(&format!("sources = ['{}']\ntls_ca = '{}'", path.display(), path.display()))
                .unwrap_or_else(|_| toml::Table::new()))
                .ok();
            if let (Ok(certs), Some(p)) = (read_certs(&path), p) {
                let f = Fetched { source: "x".into(), name: Some("fuzz.test".into()), chain: true, certs: Ok(certs.clone()) };
                let mut acc = Accumulator::new(0);
                p.metrics(&f, &certs, 0, &mut acc);
                prop_assert!(acc.metrics.len() + acc.errors.len() >= 1);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[tokio::test]
async fn serial_padding_and_refused_password() {
    let dir = std::env::temp_dir().join(format!("sonde-x509-pad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut p = CertificateParams::new(vec!["pad.test".to_string()]).unwrap();
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
    let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
    let file = dir.join("pad.pem");
    std::fs::write(&file, cert.pem()).unwrap();
    let plain = gather(&format!("sources = ['{}']", file.display())).await;
    assert_eq!(plain.metrics[0].tag("serial_number"), Some("abc"));
    let padded = gather(&format!(
        "sources = ['{}']\npad_serial_with_zeroes = true",
        file.display()
    ))
    .await;
    assert_eq!(
        padded.metrics[0].tag("serial_number"),
        Some("0000000000000abc")
    );
    std::fs::remove_dir_all(dir).unwrap();
    match new(toml::from_str("sources = ['/x.p12']\npassword = 'pw'").unwrap()) {
        Err(BuildError::Config(c)) => {
            assert_eq!(c.path, ["password"]);
            assert!(c.message.contains("not supported yet"), "{}", c.message);
        }
        _ => panic!("a PKCS#12 password must be refused"),
    }
    assert!(new(toml::from_str("sources = ['/x.pem']\npassword = ''").unwrap()).is_ok());
    match new(toml::from_str(
        "sources = ['/x.pem']\nuse_proxy = true\nproxy_url = 'socks5://p:1080'",
    )
    .unwrap())
    {
        Err(BuildError::Config(c)) => assert!(c.message.contains("not supported yet")),
        _ => panic!("SOCKS5 must be refused"),
    }
}

/// Network sources go through an HTTP proxy with CONNECT when use_proxy is set.
#[tokio::test]
async fn network_sources_through_a_connect_proxy() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (port, f) = tls_server().await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = l.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let target = head.split_whitespace().nth(1).unwrap().to_string();
                tx.send(head).unwrap();
                let mut up = tokio::net::TcpStream::connect(target).await.unwrap();
                let mut s = r.into_inner();
                s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    let acc = gather(&format!(
        "sources = ['https://localhost:{port}']\ntls_ca = '{}/root2.pem'\nuse_proxy = true\n\
         proxy_url = 'http://ops:p%40ss@127.0.0.1:{proxy_port}'",
        f.dir.display()
    ))
    .await;
    assert!(acc.errors.is_empty(), "{:?}", acc.errors);
    let types: Vec<_> = acc.metrics.iter().map(|m| m.tag("type").unwrap()).collect();
    assert_eq!(types, ["leaf", "intermediate"]);
    let head = rx.recv().await.unwrap();
    assert!(
        head.starts_with(&format!("CONNECT localhost:{port} HTTP/1.1\r\n")),
        "{head}"
    );
    // base64("ops:p@ss")
    assert!(
        head.contains("Proxy-Authorization: Basic b3BzOnBAc3M=\r\n"),
        "{head}"
    );
}
