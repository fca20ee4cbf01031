//! Telegraf's common HTTP-client options end to end, with the built binary: a forward proxy
//! that inputs.http, inputs.prometheus, outputs.http and outputs.influxdb (into a real
//! InfluxDB 1.x) go through; OAuth2 client credentials and cookie login against local fixture
//! endpoints (fetched, sent, renewed); tls_min_version and tls_cipher_suites against an
//! `openssl s_server` that speaks TLS 1.2 only; local_address as the source address the server
//! sees; rate_limit spacing the writes; a SigV4 signature checked by an independent verifier.

use std::time::Duration;

use sonde_tests::http::{Reply, Server};
use sonde_tests::http_client::{Proxy, Recorder};
use sonde_tests::pki::Pki;
use sonde_tests::servers::{free_port, influxd, influxql};
use sonde_tests::{Agent, TempDir, run, wait_until};

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const AGENT: &str =
    "[agent]\n  interval = \"500ms\"\n  flush_interval = \"500ms\"\n  omit_hostname = true\n\n";

#[test]
fn proxy_carries_the_requests_of_every_http_plugin() {
    let proxy = Proxy::start();
    let lp = Recorder::start(200, "via_proxy value=1i\n");
    let direct = Recorder::start(200, "direct value=2i\n");
    let prom = Recorder::start(200, "# TYPE proxied_up gauge\nproxied_up 1\n");
    let sink = Recorder::start(204, "");
    let influx = influxd();
    let dir = TempDir::new("http-proxy");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.http]]\n  urls = [\"{lp}\"]\n  http_proxy_url = \"{p}\"\n  data_format = \"influx\"\n\n\
             [[inputs.http]]\n  urls = [\"{direct}\"]\n  data_format = \"influx\"\n\n\
             [[inputs.prometheus]]\n  urls = [\"{prom}\"]\n  http_proxy_url = \"{p}\"\n\n\
             [[outputs.http]]\n  url = \"{sink}\"\n  http_proxy_url = \"{p}\"\n\n\
             [[outputs.influxdb]]\n  urls = [\"{influx}\"]\n  database = \"proxied\"\n  http_proxy = \"{p}\"\n",
            p = proxy.url(),
            lp = lp.url("/lp"),
            direct = direct.url("/direct"),
            prom = prom.url("/metrics"),
            sink = sink.url("/sink"),
            influx = influx.url(""),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let targets = |method: &str| -> Vec<String> {
        proxy
            .seen()
            .iter()
            .filter(|s| s.method() == method)
            .map(|s| s.target().to_string())
            .collect()
    };
    let want = [
        ("GET", lp.url("/lp")),
        ("GET", prom.url("/metrics")),
        ("POST", sink.url("/sink")),
        ("POST", format!("{}/write?db=proxied", influx.url(""))),
    ];
    let ok = wait_until(Duration::from_secs(20), || {
        want.iter()
            .all(|(m, t)| targets(m).iter().any(|x| x.starts_with(t.as_str())))
            && influxql(&influx, "proxied", "SELECT * FROM via_proxy").contains("\"values\"")
            && influxql(&influx, "proxied", "SELECT * FROM proxied_up").contains("\"values\"")
    });
    assert!(
        ok,
        "the proxy saw {:?}; log:\n{}",
        proxy.seen().iter().map(|s| &s.line).collect::<Vec<_>>(),
        agent.log()
    );
    // The input without a proxy went straight to its server, never through the proxy.
    assert!(!direct.seen().is_empty());
    assert!(
        proxy.seen().iter().all(|s| !s.target().contains("/direct")),
        "{:?}",
        proxy.seen()
    );
    // The origin servers were reached by the proxy, with the origin form of the path.
    assert!(lp.seen().iter().all(|s| s.target() == "/lp"));
    let posted: String = sink
        .seen()
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert!(posted.contains("via_proxy,url="), "{posted}");
    assert!(posted.contains("direct,url="), "{posted}");
}

#[test]
fn oauth2_token_is_fetched_cached_renewed_and_sent() {
    // The first token lives 11 s, of which the last 10 are the renewal margin: the next write
    // after a second must fetch the second token, which then lasts.
    let idp = Server::start(
        vec![
            Reply::status(200)
                .with_header("content-type", "application/json")
                .with_body(r#"{"access_token":"tok-one","token_type":"bearer","expires_in":11}"#),
        ],
        Reply::status(200)
            .with_header("content-type", "application/json")
            .with_body(r#"{"access_token":"tok-two","token_type":"bearer","expires_in":3600}"#),
    );
    let api = Recorder::start(204, "");
    let dir = TempDir::new("http-oauth");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.mem]]\n\n[[outputs.http]]\n  url = \"{api}\"\n  client_id = \"sonde\"\n  \
             client_secret = \"s3cr:et\"\n  token_url = \"{idp}\"\n  audience = \"metrics-api\"\n  \
             scopes = [\"write\", \"read\"]\n",
            api = api.url("/ingest"),
            idp = idp.url("/oauth2/token"),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let ok = wait_until(Duration::from_secs(20), || {
        let seen = api.seen();
        seen.iter()
            .filter(|s| s.header("authorization") == Some("Bearer tok-two"))
            .count()
            >= 3
    });
    assert!(ok, "{:?}; log:\n{}", api.seen(), agent.log());
    let seen = api.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer tok-one"));
    // Cached: two token requests for many writes.
    let token_reqs = idp.requests();
    assert_eq!(token_reqs.len(), 2, "{token_reqs:?}");
    let t = &token_reqs[0];
    assert_eq!(t.method, "POST");
    assert_eq!(
        t.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = String::from_utf8_lossy(&t.body).into_owned();
    let mut pairs: Vec<&str> = form.split('&').collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            "audience=metrics-api",
            "grant_type=client_credentials",
            "scope=write+read"
        ]
    );
    // Client credentials in the Authorization header, form-encoded first (RFC 6749 2.3.1):
    // base64("sonde:s3cr%3Aet").
    assert_eq!(
        t.header("authorization"),
        Some("Basic c29uZGU6czNjciUzQWV0")
    );
}

#[test]
fn cookie_login_is_kept_sent_and_renewed() {
    let login = Server::start(
        vec![Reply::status(200).with_header("set-cookie", "session=first; Path=/; HttpOnly")],
        Reply::status(200).with_header("set-cookie", "session=second; Path=/"),
    );
    let api = Recorder::start(200, "guarded value=1i\n");
    let sink = Recorder::start(204, "");
    let dir = TempDir::new("http-cookie");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.http]]\n  urls = [\"{api}\"]\n  data_format = \"influx\"\n  \
             cookie_auth_url = \"{login}\"\n  cookie_auth_username = \"ops\"\n  \
             cookie_auth_password = \"pw\"\n  cookie_auth_body = '{{\"user\":\"ops\"}}'\n  \
             cookie_auth_renewal = \"2s\"\n  cookie_auth_headers = {{ Content-Type = \"application/json\" }}\n\n\
             [[outputs.http]]\n  url = \"{sink}\"\n",
            api = api.url("/api/metrics"),
            login = login.url("/auth/login"),
            sink = sink.url("/"),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let ok = wait_until(Duration::from_secs(20), || {
        api.seen()
            .iter()
            .any(|s| s.header("cookie") == Some("session=second"))
    });
    assert!(ok, "{:?}; log:\n{}", api.seen(), agent.log());
    let seen = api.seen();
    assert_eq!(seen[0].header("cookie"), Some("session=first"));
    let logins = login.requests();
    assert!(logins.len() >= 2, "{logins:?}");
    // Renewed on schedule, not per request: a 2 s renewal over >= 2 s of 0.5 s gathers.
    assert!(
        logins.len() < seen.len(),
        "{} logins for {} requests",
        logins.len(),
        seen.len()
    );
    let l = &logins[0];
    assert_eq!(l.method, "POST");
    assert_eq!(l.header("authorization"), Some("Basic b3BzOnB3"));
    assert_eq!(l.header("content-type"), Some("application/json"));
    assert_eq!(String::from_utf8_lossy(&l.body), r#"{"user":"ops"}"#);
    // The metrics behind the login arrived.
    assert!(wait_until(Duration::from_secs(10), || sink
        .seen()
        .iter()
        .any(
            |s| String::from_utf8_lossy(&s.body).contains("guarded,url=")
        )));
}

#[test]
fn tls_min_version_and_cipher_suites_against_a_tls12_only_server() {
    let dir = TempDir::new("http-tls12");
    let pki = Pki::new(&dir);
    let www = TempDir::new("http-tls12-www");
    www.write("m.txt", "tls_page value=1i\n");
    let port = free_port();
    // TLS 1.2 only, one ECDHE-ECDSA suite (the test PKI's keys are ECDSA P-256); -WWW serves
    // the files of its working directory.
    let child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            pki.leaf.to_str().unwrap(),
            "-cert_chain",
            pki.intermediate.to_str().unwrap(),
            "-key",
            pki.leaf_key.to_str().unwrap(),
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "-WWW",
        ])
        .current_dir(www.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl is missing: run tests/setup.sh");
    let _server = Killed(child);
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let url = format!("https://127.0.0.1:{port}/m.txt");
    let input = |name: &str, extra: &str| {
        format!(
            "[[inputs.http]]\n  name_override = \"{name}\"\n  urls = [\"{url}\"]\n  data_format = \"influx\"\n  \
             tls_ca = \"{ca}\"\n{extra}\n",
            ca = pki.ca.display()
        )
    };
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  omit_hostname = true\n\n{}{}{}{}[[outputs.discard]]\n",
            input("default", ""),
            input("min13", "  tls_min_version = \"TLS13\""),
            input(
                "suite_ok",
                "  tls_cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]"
            ),
            input(
                "suite_other",
                "  tls_cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]"
            ),
        ),
    );
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    let out = r.stdout;
    assert!(out.contains("default,url="), "{out}\n{}", r.stderr);
    assert!(out.contains("suite_ok,url="), "{out}\n{}", r.stderr);
    assert!(!out.contains("min13,"), "{out}");
    assert!(!out.contains("suite_other,"), "{out}");
    // Both failures are reported as the handshake errors they are.
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains(&url)).collect();
    assert_eq!(errors.len(), 2, "{}", r.stderr);
    assert!(
        errors.iter().any(|l| l.contains("ProtocolVersion")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|l| l.contains("HandshakeFailure")),
        "{errors:?}"
    );
}

#[test]
fn local_address_is_the_source_address_the_server_sees() {
    let sink = Recorder::start(204, "");
    let dir = TempDir::new("http-local-addr");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.mem]]\n\n\
             [[outputs.http]]\n  url = \"{http}\"\n  local_address = \"127.0.0.2\"\n\n\
             [[outputs.influxdb]]\n  urls = [\"{influx}\"]\n  local_address = \"127.0.0.3\"\n  skip_database_creation = true\n\n\
             [[outputs.influxdb_v2]]\n  urls = [\"{influx}\"]\n  bucket = \"b\"\n  local_address = \"127.0.0.4\"\n",
            http = sink.url("/http"),
            influx = sink.url(""),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let peer_of = |prefix: &str| {
        sink.seen()
            .iter()
            .find(|s| s.target().starts_with(prefix))
            .map(|s| s.peer.ip().to_string())
    };
    let ok = wait_until(Duration::from_secs(20), || {
        peer_of("/http").is_some()
            && peer_of("/write").is_some()
            && peer_of("/api/v2/write").is_some()
    });
    assert!(ok, "{:?}; log:\n{}", sink.seen(), agent.log());
    assert_eq!(peer_of("/http").as_deref(), Some("127.0.0.2"));
    assert_eq!(peer_of("/write").as_deref(), Some("127.0.0.3"));
    assert_eq!(peer_of("/api/v2/write").as_deref(), Some("127.0.0.4"));
}

#[test]
fn rate_limit_spaces_the_writes() {
    // Every flush (every 100 ms) has a body over the 1-byte budget, so each write needs a
    // window of its own: at most one write per second.
    let sink = Recorder::start(204, "");
    let dir = TempDir::new("http-rate-limit");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  interval = \"100ms\"\n  flush_interval = \"100ms\"\n  omit_hostname = true\n\n\
             [[inputs.mem]]\n\n\
             [[outputs.influxdb_v2]]\n  urls = [\"{url}\"]\n  bucket = \"b\"\n  rate_limit = \"1B\"\n  \
             rate_limit_period = \"1s\"\n",
            url = sink.url(""),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let ok = wait_until(Duration::from_secs(20), || sink.seen().len() >= 4);
    assert!(ok, "{:?}; log:\n{}", sink.seen(), agent.log());
    let seen = sink.seen();
    for pair in seen.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(950),
            "writes {gap:?} apart: {:?}",
            seen.iter().map(|s| s.at).collect::<Vec<_>>()
        );
    }
    // Nothing was lost: later writes carry the metrics held back meanwhile.
    let lines: usize = seen
        .iter()
        .map(|s| {
            let mut text = String::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(&s.body[..])
                .read_to_string(&mut text)
                .unwrap();
            text.lines().count()
        })
        .sum();
    assert!(lines > seen.len(), "{lines} lines in {} writes", seen.len());
}

/// Recomputes a SigV4 signature from the request as received (Python's hmac and hashlib, not
/// the aws-sigv4 crate sonde signs with) and prints "ok" when it matches.
const SIGV4_CHECK: &str = r#"
import hashlib, hmac, json, sys
r = json.load(sys.stdin)
h = {k.lower(): v for k, v in r["headers"]}
auth = h["authorization"]
algo, rest = auth.split(" ", 1)
parts = dict(p.strip().split("=", 1) for p in rest.split(","))
akid, date, region, service, term = parts["Credential"].split("/")
signed = parts["SignedHeaders"].split(";")
path, _, query = r["target"].partition("?")
canon_headers = "".join(f"{n}:{' '.join(h[n].split())}\n" for n in signed)
body = bytes.fromhex(r["body"])
canon = "\n".join([r["method"], path, query, canon_headers, ";".join(signed),
                   hashlib.sha256(body).hexdigest()])
amz_date = h["x-amz-date"]
scope = f"{date}/{region}/{service}/{term}"
to_sign = "\n".join([algo, amz_date, scope, hashlib.sha256(canon.encode()).hexdigest()])
def mac(k, m): return hmac.new(k, m.encode(), hashlib.sha256).digest()
k = mac(mac(mac(mac(("AWS4" + r["secret"]).encode(), date), region), service), term)
sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
ok = sig == parts["Signature"] and akid == r["akid"] and region == r["region"] \
    and service == r["service"] and "host" in signed and "x-amz-date" in signed
print("ok" if ok else f"mismatch: {sig} vs {parts['Signature']} ({akid} {region} {service} {signed})")
"#;

#[test]
fn sigv4_signature_of_outputs_http_verifies() {
    let api = Recorder::start(204, "");
    let dir = TempDir::new("http-sigv4");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.mem]]\n\n[[outputs.http]]\n  url = \"{url}\"\n  aws_service = \"execute-api\"\n  \
             region = \"eu-west-3\"\n  access_key = \"AKIDSONDETEST\"\n  secret_key = \"s3cr3t/key\"\n  \
             token = \"session-token\"\n  [outputs.http.headers]\n    X-Team = \"metrics\"\n",
            url = api.url("/prod/ingest?src=sonde"),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    assert!(
        wait_until(Duration::from_secs(20), || !api.seen().is_empty()),
        "log:\n{}",
        agent.log()
    );
    let req = &api.seen()[0];
    assert_eq!(req.header("x-amz-security-token"), Some("session-token"));
    let input = serde_json::json!({
        "method": req.method(),
        "target": req.target(),
        "headers": req.headers,
        "body": req.body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "secret": "s3cr3t/key",
        "akid": "AKIDSONDETEST",
        "region": "eu-west-3",
        "service": "execute-api",
    });
    let mut child = std::process::Command::new("python3")
        .args(["-c", SIGV4_CHECK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let verdict = String::from_utf8_lossy(&out.stdout);
    assert_eq!(verdict.trim(), "ok", "{req:?}");
    // A body changed in transit no longer verifies.
    let mut tampered = input.clone();
    tampered["body"] = serde_json::json!("00");
    let mut child = std::process::Command::new("python3")
        .args(["-c", SIGV4_CHECK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tampered.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mismatch"));
}

#[test]
fn influxdb_output_over_udp_into_a_real_influxdb() {
    let dir = TempDir::new("influx-udp");
    let (http, rpc, udp) = (free_port(), free_port(), free_port());
    let d = dir.path().display();
    let conf = dir.write(
        "influxdb.conf",
        &format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n[[udp]]\n  enabled = true\n  \
             bind-address = \"127.0.0.1:{udp}\"\n  database = \"udpdb\"\n  batch-size = 1\n  \
             batch-timeout = \"100ms\"\n"
        ),
    );
    let _influxd = sonde_tests::servers::Process::start(
        "/usr/bin/influxd",
        &["run".into(), "-config".into(), conf.display().to_string()],
        dir.join("influxd.log"),
        &format!("http://127.0.0.1:{http}/query?q=SHOW%20DATABASES"),
        Duration::from_secs(30),
    );
    // The database of the UDP listener must exist before points arrive.
    let create = sonde_tests::servers::request(
        &format!("127.0.0.1:{http}"),
        "POST",
        "/query?q=CREATE%20DATABASE%20udpdb",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(create.0, 200, "{create:?}");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.mem]]\n\n[[outputs.influxdb]]\n  urls = [\"udp://127.0.0.1:{udp}\"]\n  \
             udp_payload = \"256B\"\n"
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let query = |q: &str| {
        let path = format!("/query?db=udpdb&q={}", sonde_tests::servers::enc(q));
        sonde_tests::servers::request(&format!("127.0.0.1:{http}"), "GET", &path, &[], b"")
            .map(|r| r.1)
            .unwrap_or_default()
    };
    let ok = wait_until(Duration::from_secs(20), || {
        query("SELECT count(total) FROM mem").contains("\"values\"")
    });
    assert!(ok, "log:\n{}", agent.log());
}

#[test]
fn system_proxy_from_the_environment_and_cloudwatch_through_a_proxy() {
    let proxy = Proxy::start();
    let page = Recorder::start(200, "env_proxied value=1i\n");
    let cw = Recorder::start(200, "<PutMetricDataResponse/>");
    let dir = TempDir::new("http-env-proxy");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "{AGENT}[[inputs.http]]\n  urls = [\"{page}\"]\n  use_system_proxy = true\n  data_format = \"influx\"\n\n\
             [[inputs.http]]\n  name_override = \"not_proxied\"\n  urls = [\"{page2}\"]\n  data_format = \"influx\"\n\n\
             [[outputs.cloudwatch]]\n  region = \"us-east-1\"\n  access_key = \"AKIDTEST\"\n  secret_key = \"secret\"\n  \
             namespace = \"sonde\"\n  endpoint_url = \"{cw}\"\n  http_proxy_url = \"{p}\"\n",
            page = page.url("/env"),
            page2 = page.url("/direct"),
            cw = cw.url("/"),
            p = proxy.url(),
        ),
    );
    let log = std::fs::File::create(dir.join("sonde.log")).unwrap();
    let child = std::process::Command::new(sonde_tests::sonde_bin())
        .args(["--debug", "--config", cfg.to_str().unwrap()])
        .env("HTTP_PROXY", proxy.url())
        .env("http_proxy", proxy.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _agent = Killed(child);
    let through = |path: &str| {
        proxy
            .seen()
            .iter()
            .any(|s| s.target().starts_with(&page.url(path)))
    };
    let ok = wait_until(Duration::from_secs(20), || {
        through("/env")
            && proxy
                .seen()
                .iter()
                .any(|s| s.method() == "POST" && s.target().starts_with(&cw.url("/")))
    });
    let log = std::fs::read_to_string(dir.join("sonde.log")).unwrap_or_default();
    assert!(
        ok,
        "{:?}; log:\n{log}",
        proxy.seen().iter().map(|s| &s.line).collect::<Vec<_>>()
    );
    // The input without use_system_proxy ignores the environment, as in Telegraf.
    assert!(page.seen().iter().any(|s| s.target() == "/direct"));
    assert!(!through("/direct"));
    // The proxy saw the request before it reached the fixture: wait for the fixture too.
    let arrived = wait_until(Duration::from_secs(10), || {
        cw.seen()
            .iter()
            .any(|s| String::from_utf8_lossy(&s.body).contains("Action=PutMetricData"))
    });
    assert!(arrived, "{:?}", cw.seen());
}
