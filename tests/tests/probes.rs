//! End-to-end: the probe inputs (http_response, net_response, x509_cert, dns_query) of the
//! built binary against real peers started on loopback by the test itself: Apache (HTTP,
//! HTTPS with a test-made root → intermediate → leaf chain, mutual TLS, a redirect, a 410),
//! dnsmasq with a test zone, blackbox_exporter for the differential test, and small servers
//! for a slow body, a silent peer, a refused port and TCP/UDP echo.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sonde_tests::http::{Reply, Server};
use sonde_tests::pki::Pki;
use sonde_tests::probes::{
    Blackbox, INDEX, Line, apache, dnsmasq, parse_lines, refused_port, silent, slow_body, tcp_echo,
    udp_echo,
};
use sonde_tests::{TempDir, run};

const AGENT: &str = "[agent]\n  omit_hostname = true\n";

/// `sonde --test` with `inputs`; the parsed lines of the named measurement.
fn gather(dir: &TempDir, inputs: &str, measurement: &str) -> Vec<Line> {
    let cfg = dir.write("sonde.toml", &format!("{AGENT}{inputs}"));
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "stderr:\n{}", r.stderr);
    parse_lines(&r.stdout)
        .into_iter()
        .filter(|l| l.name == measurement)
        .collect()
}

fn by_server<'a>(lines: &'a [Line], server: &str) -> &'a Line {
    lines
        .iter()
        .find(|l| l.tag("server") == Some(server))
        .unwrap_or_else(|| panic!("no line for {server} in {lines:#?}"))
}

fn http_input(urls: &[String], extra: &str) -> String {
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[[inputs.http_response]]\n  urls = [{list}]\n{extra}\n")
}

#[test]
fn http_response_against_apache_and_failing_peers() {
    let dir = TempDir::new("probes-http");
    let pki = Pki::new(&dir);
    let ap = apache(&dir, &pki);
    let slow = slow_body();
    let quiet = silent();
    let refused = refused_port();
    let http = format!("http://127.0.0.1:{}", ap.http);
    let https = format!("https://localhost:{}", ap.https);
    let mtls = format!("https://localhost:{}", ap.mtls);
    let ca = pki.ca.display();
    let u = |s: &str| s.to_string();
    let inputs = [
        http_input(
            &[format!("{http}/index.html"), format!("{http}/gone")],
            "  response_string_match = \"hel+o from\"\n  response_status_code = 200\n  \
             [inputs.http_response.http_header_tags]\n    Server = \"http_server\"",
        ),
        http_input(
            &[format!("{http}/old")],
            "  alias = \"noredirect\"\n  tags = { case = \"noredirect\" }",
        ),
        http_input(
            &[format!("{http}/old?follow")],
            "  follow_redirects = true\n  response_body_field = \"body\"",
        ),
        http_input(
            &[format!("{https}/index.html")],
            &format!("  tls_ca = \"{ca}\"\n  tags = {{ case = \"tls_ok\" }}"),
        ),
        http_input(
            &[format!("{https}/index.html?system-roots")],
            "  tags = { case = \"tls_untrusted\" }",
        ),
        http_input(
            &[format!("{https}/index.html?insecure")],
            "  insecure_skip_verify = true",
        ),
        http_input(
            &[format!("{mtls}/index.html")],
            &format!(
                "  tls_ca = \"{ca}\"\n  tls_cert = \"{}\"\n  tls_key = \"{}\"",
                pki.client.display(),
                pki.client_key.display()
            ),
        ),
        http_input(
            &[format!("{mtls}/index.html?nocert")],
            &format!("  tls_ca = \"{ca}\""),
        ),
        http_input(
            &[
                format!("http://127.0.0.1:{slow}/slow"),
                format!("http://127.0.0.1:{}/silent", quiet.port),
                format!("http://127.0.0.1:{refused}/refused"),
            ],
            "  response_timeout = \"1s\"",
        ),
        http_input(
            &[u("http://sonde-no-such-host.invalid/")],
            "  response_timeout = \"5s\"",
        ),
    ]
    .concat();
    let lines = gather(&dir, &inputs, "http_response");
    assert_eq!(lines.len(), 13, "{lines:#?}");

    let ok = by_server(&lines, &format!("{http}/index.html"));
    assert_eq!(ok.tag("result"), Some("success"));
    assert_eq!(ok.tag("status_code"), Some("200"));
    assert_eq!(ok.tag("method"), Some("GET"));
    assert!(
        ok.tag("http_server").unwrap().starts_with("Apache"),
        "{ok:?}"
    );
    assert_eq!(ok.int("result_code"), 0);
    assert_eq!(ok.int("http_response_code"), 200);
    assert_eq!(ok.int("content_length"), INDEX.len() as i64);
    assert_eq!(ok.int("response_string_match"), 1);
    assert_eq!(ok.int("response_status_code_match"), 1);
    assert_eq!(ok.field("http_version"), Some("1.1"));
    assert!(!ok.fields.contains_key("tls_time"));
    let rt = ok.float("response_time");
    let parts = ok.float("dns_time") + ok.float("connect_time") + ok.float("first_byte_time");
    assert!(rt > 0.0 && parts <= rt + 1e-3, "{ok:?}");

    let gone = by_server(&lines, &format!("{http}/gone"));
    assert_eq!(gone.tag("status_code"), Some("410"));
    assert_eq!(gone.tag("result"), Some("response_status_code_mismatch"));
    assert_eq!(gone.int("result_code"), 6);
    assert_eq!(gone.int("response_status_code_match"), 0);
    assert_eq!(gone.int("response_string_match"), 0);

    let noredirect = by_server(&lines, &format!("{http}/old"));
    assert_eq!(noredirect.tag("status_code"), Some("302"));
    assert_eq!(noredirect.tag("result"), Some("success"));
    let followed = by_server(&lines, &format!("{http}/old?follow"));
    assert_eq!(followed.tag("status_code"), Some("200"));
    assert_eq!(followed.field("body"), Some(INDEX));

    let tls = by_server(&lines, &format!("{https}/index.html"));
    assert_eq!(tls.tag("result"), Some("success"), "{tls:?}");
    assert!(tls.float("tls_time") > 0.0);
    assert_eq!(tls.field("http_version"), Some("2"), "{tls:?}");
    assert_eq!(tls.int("content_length"), INDEX.len() as i64);
    let untrusted = by_server(&lines, &format!("{https}/index.html?system-roots"));
    assert_eq!(untrusted.tag("result"), Some("connection_failed"));
    assert_eq!(untrusted.int("result_code"), 3);
    assert!(untrusted.tag("status_code").is_none());
    let insecure = by_server(&lines, &format!("{https}/index.html?insecure"));
    assert_eq!(insecure.tag("status_code"), Some("200"));
    let mutual = by_server(&lines, &format!("{mtls}/index.html"));
    assert_eq!(mutual.tag("status_code"), Some("200"), "{mutual:?}");
    assert_eq!(mutual.field("http_version"), Some("1.1"));
    let nocert = by_server(&lines, &format!("{mtls}/index.html?nocert"));
    assert_ne!(nocert.tag("result"), Some("success"), "{nocert:?}");

    // Telegraf's bugs, fixed: a timeout while reading the body is a timeout, and a timed-out
    // probe reports the time it waited.
    let slow = by_server(&lines, &format!("http://127.0.0.1:{slow}/slow"));
    assert_eq!(slow.tag("result"), Some("timeout"), "{slow:?}");
    assert_eq!(slow.int("result_code"), 4);
    assert!(
        (0.9..3.0).contains(&slow.float("response_time")),
        "{slow:?}"
    );
    assert!(slow.fields.contains_key("first_byte_time"));
    let sil = by_server(&lines, &format!("http://127.0.0.1:{}/silent", quiet.port));
    assert_eq!(sil.tag("result"), Some("timeout"));
    assert!((0.9..3.0).contains(&sil.float("response_time")));
    let refused = by_server(&lines, &format!("http://127.0.0.1:{refused}/refused"));
    assert_eq!(refused.tag("result"), Some("connection_failed"));
    assert_eq!(refused.int("result_code"), 3);
    let dns = by_server(&lines, "http://sonde-no-such-host.invalid/");
    assert_eq!(dns.tag("result"), Some("dns_error"), "{dns:?}");
    assert_eq!(dns.int("result_code"), 5);
}

#[test]
fn http_response_sends_method_body_headers_and_auth() {
    let dir = TempDir::new("probes-http-req");
    let srv = Server::start(vec![], Reply::status(201).with_body("created"));
    let token = dir.write("token", "s3cret-token\n");
    let inputs = format!(
        "{}{}",
        http_input(
            &[srv.url("/basic")],
            "  method = \"POST\"\n  body = '{\"a\":1}'\n  username = \"alice\"\n  password = \"pw\"\n  \
             response_status_code = 201\n  [inputs.http_response.headers]\n    X-Probe = \"yes\"\n    \
             Host = \"api.example\""
        ),
        http_input(
            &[srv.url("/bearer")],
            &format!("  bearer_token = \"{}\"", token.display())
        ),
    );
    let lines = gather(&dir, &inputs, "http_response");
    assert_eq!(lines.len(), 2);
    let basic = by_server(&lines, &srv.url("/basic"));
    assert_eq!(basic.tag("method"), Some("POST"));
    assert_eq!(basic.tag("result"), Some("success"));
    let reqs = srv.requests();
    let b = reqs
        .iter()
        .find(|r| r.path == "/basic")
        .expect("basic request");
    assert_eq!(b.method, "POST");
    assert_eq!(b.text(), "{\"a\":1}");
    assert_eq!(b.header("x-probe"), Some("yes"));
    assert_eq!(b.header("host"), Some("api.example"));
    assert_eq!(b.header("authorization"), Some("Basic YWxpY2U6cHc="));
    let t = reqs
        .iter()
        .find(|r| r.path == "/bearer")
        .expect("bearer request");
    assert_eq!(t.header("authorization"), Some("Bearer s3cret-token"));
}

#[test]
fn http_response_probes_run_concurrently_within_their_timeout() {
    let dir = TempDir::new("probes-concurrent");
    let quiet = silent();
    let urls: Vec<String> = (0..40)
        .map(|i| format!("http://127.0.0.1:{}/{i}", quiet.port))
        .collect();
    let lines = gather(
        &dir,
        &http_input(&urls, "  response_timeout = \"2s\""),
        "http_response",
    );
    assert_eq!(lines.len(), 40);
    assert!(lines.iter().all(|l| l.tag("result") == Some("timeout")));
    // All 40 connections were open at once: the last was accepted before the first timed out.
    let acc = quiet.accepted.lock().unwrap().clone();
    assert_eq!(acc.len(), 40);
    let spread = *acc.iter().max().unwrap() - *acc.iter().min().unwrap();
    assert!(
        spread < Duration::from_secs(2),
        "accepts spread over {spread:?}"
    );
}

#[test]
fn net_response_tcp_and_udp() {
    let dir = TempDir::new("probes-net");
    let echo = tcp_echo();
    let uecho = udp_echo();
    let quiet = silent();
    let refused = refused_port();
    let net = |proto: &str, port: u16, extra: &str| {
        format!(
            "[[inputs.net_response]]\n  protocol = \"{proto}\"\n  address = \"127.0.0.1:{port}\"\n{extra}\n"
        )
    };
    let inputs = [
        net("tcp", echo, "  send = \"ping\\n\"\n  expect = \"echo: p.ng\"\n  tags = { case = \"match\" }"),
        net("tcp", echo, "  send = \"ping\\n\"\n  expect = \"pong\"\n  tags = { case = \"mismatch\" }"),
        net("tcp", echo, "  tags = { case = \"connect\" }"),
        net("tcp", quiet.port, "  send = \"hi\\n\"\n  expect = \"x\"\n  read_timeout = \"500ms\"\n  tags = { case = \"silent\" }"),
        net("tcp", refused, "  tags = { case = \"refused\" }"),
        net("udp", uecho, "  send = \"hello\"\n  expect = \"echo: hello\"\n  tags = { case = \"udp\" }"),
        net("udp", refused, "  send = \"hello\"\n  expect = \"x\"\n  read_timeout = \"500ms\"\n  tags = { case = \"udp_closed\" }"),
    ]
    .concat();
    let lines = gather(&dir, &inputs, "net_response");
    let case = |c: &str| {
        lines
            .iter()
            .find(|l| l.tag("case") == Some(c))
            .unwrap_or_else(|| panic!("no {c} in {lines:#?}"))
    };
    let m = case("match");
    assert_eq!(m.tag("result"), Some("success"));
    assert_eq!(m.tag("server"), Some("127.0.0.1"));
    assert_eq!(m.tag("port"), Some(echo.to_string().as_str()));
    assert_eq!(m.tag("protocol"), Some("tcp"));
    assert_eq!(m.int("result_code"), 0);
    assert!(m.float("response_time") > 0.0);
    assert_eq!(case("mismatch").tag("result"), Some("string_mismatch"));
    assert_eq!(case("mismatch").int("result_code"), 4);
    assert_eq!(case("connect").int("result_code"), 0);
    let s = case("silent");
    assert_eq!(s.tag("result"), Some("read_failed"));
    assert_eq!(s.int("result_code"), 3);
    assert!(s.float("response_time") >= 0.45);
    assert_eq!(case("refused").tag("result"), Some("connection_failed"));
    assert_eq!(case("refused").int("result_code"), 2);
    let u = case("udp");
    assert_eq!(u.tag("result"), Some("success"));
    assert_eq!(u.tag("protocol"), Some("udp"));
    assert_eq!(case("udp_closed").tag("result"), Some("read_failed"));
}

#[test]
fn x509_cert_chain_from_apache_and_files() {
    let dir = TempDir::new("probes-x509");
    let pki = Pki::new(&dir);
    let ap = apache(&dir, &pki);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let inputs = format!(
        "[[inputs.x509_cert]]\n  sources = [\"https://localhost:{}\", \"{}\", \"file://{}\", \"{}/fut*.pem\"]\n  \
         tls_ca = \"{}\"\n",
        ap.https,
        pki.ca.display(),
        pki.expired.display(),
        dir.path().display(),
        pki.ca.display(),
    );
    let lines = gather(&dir, &inputs, "x509_cert");
    let https = format!("https://localhost:{}", ap.https);
    let chain: Vec<&Line> = lines
        .iter()
        .filter(|l| l.tag("source") == Some(https.as_str()))
        .collect();
    let types: Vec<_> = chain.iter().map(|l| l.tag("type").unwrap()).collect();
    assert_eq!(types, ["leaf", "intermediate", "root"], "{lines:#?}");
    for l in &chain {
        assert_eq!(l.tag("verification"), Some("valid"), "{l:?}");
        assert_eq!(l.int("verification_code"), 0);
    }
    let leaf = chain[0];
    assert_eq!(leaf.tag("common_name"), Some("localhost"));
    assert_eq!(
        leaf.tag("issuer_common_name"),
        Some("sonde test intermediate")
    );
    assert_eq!(leaf.tag("san"), Some("localhost,127.0.0.1"));
    assert_eq!(leaf.int("enddate"), pki.leaf_not_after);
    let expiry = leaf.int("expiry");
    assert!((expiry - (pki.leaf_not_after - now)).abs() < 60, "{leaf:?}");
    let ca = format!("file://{}", pki.ca.display());
    let root = lines
        .iter()
        .find(|l| l.tag("source") == Some(ca.as_str()))
        .unwrap();
    assert_eq!(root.tag("type"), Some("root"));
    assert_eq!(root.tag("verification"), Some("valid"));
    let exp = format!("file://{}", pki.expired.display());
    let expired = lines
        .iter()
        .find(|l| l.tag("source") == Some(exp.as_str()))
        .unwrap();
    assert!(expired.int("expiry") < 0);
    assert_eq!(expired.tag("verification"), Some("invalid"));
    assert!(
        expired
            .field("verification_error")
            .unwrap()
            .contains("expired")
    );
    let fut = format!("file://{}", pki.future.display());
    let future = lines
        .iter()
        .find(|l| l.tag("source") == Some(fut.as_str()))
        .unwrap();
    assert!(future.int("age") < 0);
    assert_eq!(future.tag("verification"), Some("invalid"));
    assert!(
        future
            .field("verification_error")
            .unwrap()
            .contains("not yet valid")
    );

    // The wrong name for the leaf makes it invalid; exclude_root_certs keeps only the leaf.
    let inputs = format!(
        "[[inputs.x509_cert]]\n  sources = [\"tcp://127.0.0.1:{}\"]\n  server_name = \"other.example\"\n  \
         tls_ca = \"{}\"\n  exclude_root_certs = true\n",
        ap.https,
        pki.ca.display()
    );
    let lines = gather(&dir, &inputs, "x509_cert");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0].tag("verification"), Some("invalid"));
    assert!(
        lines[0]
            .field("verification_error")
            .unwrap()
            .contains("other.example")
    );
}

#[test]
fn dns_query_against_dnsmasq() {
    let dir = TempDir::new("probes-dns");
    let dns = dnsmasq(&dir);
    let q = |rt: &str, domains: &str, extra: &str| {
        format!(
            "[[inputs.dns_query]]\n  servers = [\"127.0.0.1\"]\n  port = {}\n  record_type = \"{rt}\"\n  \
             domains = [{domains}]\n{extra}\n",
            dns.port
        )
    };
    let inputs = [
        q(
            "A",
            "\"www.sonde.test\", \"nothere.sonde.test\"",
            "  include_fields = [\"first_ip\"]",
        ),
        q(
            "AAAA",
            "\"www.sonde.test\"",
            "  network = \"tcp\"\n  include_fields = [\"all_ips\"]",
        ),
        q("MX", "\"sonde.test\"", ""),
        q("TXT", "\"sonde.test\"", ""),
        q("SRV", "\"_http._tcp.sonde.test\"", ""),
    ]
    .concat();
    let lines = gather(&dir, &inputs, "dns_query");
    let find = |rt: &str, d: &str| {
        lines
            .iter()
            .find(|l| l.tag("record_type") == Some(rt) && l.tag("domain") == Some(d))
            .unwrap_or_else(|| panic!("no {rt} {d} in {lines:#?}"))
    };
    let a = find("A", "www.sonde.test");
    assert_eq!(a.tag("result"), Some("success"));
    assert_eq!(a.tag("rcode"), Some("NOERROR"));
    assert_eq!(a.tag("server"), Some("127.0.0.1"));
    assert_eq!(a.field("ip"), Some("127.0.0.1"));
    assert_eq!(a.int("rcode_value"), 0);
    assert!(a.float("query_time_ms") > 0.0);
    let nx = find("A", "nothere.sonde.test");
    assert_eq!(nx.tag("result"), Some("error"));
    assert_eq!(nx.tag("rcode"), Some("NXDOMAIN"));
    assert_eq!(nx.int("rcode_value"), 3);
    assert_eq!(nx.int("result_code"), 2);
    let aaaa = find("AAAA", "www.sonde.test");
    assert_eq!(aaaa.tag("result"), Some("success"));
    assert_eq!(aaaa.field("ip_0"), Some("::1"));
    for (rt, d) in [
        ("MX", "sonde.test"),
        ("TXT", "sonde.test"),
        ("SRV", "_http._tcp.sonde.test"),
    ] {
        let l = find(rt, d);
        assert_eq!(l.tag("result"), Some("success"), "{l:?}");
        assert_eq!(l.int("result_code"), 0);
    }

    // A server that never answers: timeout, with the time waited.
    let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = quiet.local_addr().unwrap().port();
    let inputs = format!(
        "[[inputs.dns_query]]\n  servers = [\"127.0.0.1\"]\n  port = {port}\n  record_type = \"A\"\n  \
         domains = [\"www.sonde.test\"]\n  timeout = \"500ms\"\n"
    );
    let lines = gather(&dir, &inputs, "dns_query");
    assert_eq!(lines[0].tag("result"), Some("timeout"));
    assert_eq!(lines[0].int("result_code"), 1);
    assert!(lines[0].float("query_time_ms") >= 490.0);
}

/// sonde and blackbox_exporter probe the same targets in the same run: `result` agrees with
/// `probe_success`, the status code with `probe_http_status_code`, the leaf's expiry with
/// `probe_ssl_earliest_cert_expiry`; DNS and TCP results with its dns and tcp probers.
#[test]
fn blackbox_differential() {
    let dir = TempDir::new("probes-blackbox");
    let pki = Pki::new(&dir);
    let ap = apache(&dir, &pki);
    let quiet = silent();
    let refused = refused_port();
    let bb = Blackbox::start(
        &dir,
        &format!(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n    http:\n      \
             preferred_ip_protocol: ip4\n      follow_redirects: false\n      tls_config:\n        \
             ca_file: {}\n  tcp_connect:\n    prober: tcp\n    timeout: 2s\n    tcp:\n      \
             preferred_ip_protocol: ip4\n  dns_www:\n    prober: dns\n    timeout: 2s\n    dns:\n      \
             query_name: www.sonde.test\n      query_type: A\n      preferred_ip_protocol: ip4\n  \
             dns_missing:\n    prober: dns\n    timeout: 2s\n    dns:\n      \
             query_name: nothere.sonde.test\n      query_type: A\n      preferred_ip_protocol: ip4\n",
            pki.ca.display()
        ),
    );
    let http = format!("http://127.0.0.1:{}", ap.http);
    let https = format!("https://localhost:{}", ap.https);
    let targets = vec![
        format!("{http}/index.html"),
        format!("{http}/gone"),
        format!("{http}/missing"),
        format!("{http}/old"),
        format!("{https}/index.html"),
        format!("http://127.0.0.1:{}/silent", quiet.port),
        format!("http://127.0.0.1:{refused}/"),
    ];
    // blackbox counts 2xx as success; sonde's equivalent check is response_status_code.
    let lines = gather(
        &dir,
        &http_input(
            &targets,
            &format!(
                "  response_timeout = \"2s\"\n  response_status_code = 200\n  tls_ca = \"{}\"",
                pki.ca.display()
            ),
        ),
        "http_response",
    );
    for t in &targets {
        let l = by_server(&lines, t);
        let b = bb.probe("http_2xx", t);
        let bb_ok = b["probe_success"] == 1.0;
        assert_eq!(
            l.tag("result") == Some("success"),
            bb_ok,
            "{t}: sonde {l:?} vs blackbox {b:?}"
        );
        let code = l
            .tag("status_code")
            .map_or(0, |c| c.parse::<i64>().unwrap());
        assert_eq!(
            code as f64, b["probe_http_status_code"],
            "{t}: {l:?} vs {b:?}"
        );
    }
    // Certificate expiry: sonde's leaf `enddate` vs blackbox's earliest expiry of the chain.
    let b = bb.probe("http_2xx", &format!("{https}/index.html"));
    let lines = gather(
        &dir,
        &format!(
            "[[inputs.x509_cert]]\n  sources = [\"{https}\"]\n  tls_ca = \"{}\"\n",
            pki.ca.display()
        ),
        "x509_cert",
    );
    let earliest = lines.iter().map(|l| l.int("enddate")).min().unwrap();
    assert_eq!(
        earliest as f64, b["probe_ssl_earliest_cert_expiry"],
        "{lines:#?} vs {b:?}"
    );
    // DNS: dns_query's result vs blackbox's dns prober (NOERROR is success for both).
    let dns = dnsmasq(&dir);
    for (module, domain) in [
        ("dns_www", "www.sonde.test"),
        ("dns_missing", "nothere.sonde.test"),
    ] {
        let b = bb.probe(module, &format!("127.0.0.1:{}", dns.port));
        let lines = gather(
            &dir,
            &format!(
                "[[inputs.dns_query]]\n  servers = [\"127.0.0.1\"]\n  port = {}\n  \
                 record_type = \"A\"\n  domains = [\"{domain}\"]\n",
                dns.port
            ),
            "dns_query",
        );
        assert_eq!(
            lines[0].tag("result") == Some("success"),
            b["probe_success"] == 1.0,
            "{domain}: {lines:?} vs {b:?}"
        );
    }
    // TCP probes: net_response's result vs blackbox's tcp prober.
    for (port, expect_ok) in [(ap.http, true), (refused, false)] {
        let lines = gather(
            &dir,
            &format!("[[inputs.net_response]]\n  address = \"127.0.0.1:{port}\"\n"),
            "net_response",
        );
        let b = bb.probe("tcp_connect", &format!("127.0.0.1:{port}"));
        assert_eq!(b["probe_success"] == 1.0, expect_ok);
        assert_eq!(
            lines[0].tag("result") == Some("success"),
            expect_ok,
            "{lines:?}"
        );
    }
}
