//! Web data end to end: inputs.crypto against CryptoCompare- and CoinGecko-shaped fixtures,
//! inputs.http with json_v2 and html, the generated alert rule under `promtool test rules`,
//! and a real Prometheus → Alertmanager → webhook chain firing on a price that moves, with the
//! generated Grafana dashboard's queries checked against that Prometheus.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sonde_tests::crypto::{self, Coin, LAST_UPDATE};
use sonde_tests::http::{Reply, Server};
use sonde_tests::servers::{Process, enc, free_port, get};
use sonde_tests::{Agent, TempDir, run, wait_until};

/// One line of line protocol: measurement, tags, fields (raw text), timestamp.
#[derive(Debug)]
struct Line {
    name: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
    time: i64,
}

impl Line {
    fn f(&self, k: &str) -> f64 {
        let v = self
            .fields
            .get(k)
            .unwrap_or_else(|| panic!("no field {k} in {self:?}"));
        v.trim_end_matches('i').parse().unwrap()
    }
    fn tag(&self, k: &str) -> &str {
        self.tags.get(k).map_or("", String::as_str)
    }
}

/// Splits on `sep` outside backslash escapes and double quotes.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut esc, mut quoted) = (false, false);
    for c in s.chars() {
        if esc {
            out.last_mut().unwrap().push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == '"' {
            quoted = !quoted;
            out.last_mut().unwrap().push(c);
        } else if c == sep && !quoted {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
    }
    out
}

fn parse_lines(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let parts = split_unescaped(l, ' ');
            assert_eq!(parts.len(), 3, "unexpected line {l:?}");
            let mut key = split_unescaped(&parts[0], ',').into_iter();
            let name = key.next().unwrap();
            let tags = key
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let fields = split_unescaped(&parts[1], ',')
                .into_iter()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            Line {
                name,
                tags,
                fields,
                time: parts[2].parse().unwrap(),
            }
        })
        .collect()
}

fn json_reply(body: &str) -> Reply {
    Reply::status(200)
        .with_header("Content-Type", "application/json")
        .with_body(body)
}

const HTML_PARSER: &str = r#"
  data_format = "html"
  [[inputs.http.html]]
    measurement_name = "coin_page"
    [[inputs.http.html.object]]
      selector = "table#markets tbody tr.coin-row"
      [[inputs.http.html.object.tag]]
        name = "symbol"
        selector = "span.sym"
      [[inputs.http.html.object.tag]]
        name = "name"
        selector = "span.full"
      [[inputs.http.html.object.field]]
        name = "price"
        selector = "td.price"
      [[inputs.http.html.object.field]]
        name = "change_24h_pct"
        selector = "td.change"
      [[inputs.http.html.object.field]]
        name = "market_cap"
        selector = "td.mcap"
      [[inputs.http.html.object.field]]
        name = "rank"
        selector = "td.rank"
        type = "int"
"#;

const JSON_V2_PARSER: &str = r#"
  data_format = "json_v2"
  [[inputs.http.json_v2]]
    measurement_name = "crypto_api"
    [[inputs.http.json_v2.object]]
      path = "Data"
      timestamp_key = "RAW_USD_LASTUPDATE"
      timestamp_format = "unix"
      included_keys = ["CoinInfo_Name", "CoinInfo_FullName", "RAW_USD_PRICE", "RAW_USD_MKTCAP"]
      tags = ["CoinInfo_Name", "CoinInfo_FullName"]
      [inputs.http.json_v2.object.renames]
        CoinInfo_Name = "symbol"
        CoinInfo_FullName = "name"
        RAW_USD_PRICE = "price"
        RAW_USD_MKTCAP = "market_cap"
  [[inputs.http.json_v2]]
    measurement_name = "crypto_api_summary"
    [[inputs.http.json_v2.field]]
      path = "Data.#"
      rename = "coins"
      type = "int"
    [[inputs.http.json_v2.field]]
      path = "Data.#(CoinInfo.Name==\"ETH\").RAW.USD.PRICE"
      rename = "eth_price"
  [[inputs.http.json_v2]]
    [[inputs.http.json_v2.field]]
      path = "MetaData.Count"
      type = "int"
"#;

#[test]
fn crypto_and_http_inputs_read_every_coin() {
    let coins = crypto::top10();
    let cc = Server::start(vec![], json_reply(&crypto::cryptocompare(&coins, "USD")));
    let cg = Server::start(vec![], json_reply(&crypto::coingecko(&coins)));
    let page = Server::start(
        vec![],
        Reply::status(200)
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_body(&crypto::html_table(&coins)),
    );
    let dir = TempDir::new("web-inputs");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  omit_hostname = true\n\
             [[inputs.crypto]]\n  base_url = \"{cc}\"\n  api_key = \"cc-key\"\n\
             [[inputs.crypto]]\n  source = \"coingecko\"\n  base_url = \"{cg}\"\n\
             [[inputs.http]]\n  urls = [\"{cc}/data/top/mktcapfull?limit=10&tsym=USD\"]\n{JSON_V2_PARSER}\n\
             [[inputs.http]]\n  urls = [\"{page}\"]\n{HTML_PARSER}\n",
            cc = cc.url(""),
            cg = cg.url("/api/v3"),
            page = page.url("/markets"),
        ),
    );
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stderr.contains("ERROR"), "{}", r.stderr);
    let lines = parse_lines(&r.stdout);
    let pick = |name: &str, source: Option<&str>| -> BTreeMap<String, &Line> {
        lines
            .iter()
            .filter(|l| l.name == name && source.is_none_or(|s| l.tag("source") == s))
            .map(|l| (l.tag("symbol").to_string(), l))
            .collect()
    };
    let compare = pick("crypto", Some("cryptocompare"));
    let gecko = pick("crypto", Some("coingecko"));
    let api = pick("crypto_api", None);
    let html = pick("coin_page", None);
    for (set, what) in [
        (&compare, "cryptocompare"),
        (&gecko, "coingecko"),
        (&api, "json_v2"),
        (&html, "html"),
    ] {
        assert_eq!(
            set.len(),
            10,
            "{what}: {:?}\nstderr: {}",
            set.keys(),
            r.stderr
        );
    }
    for (i, c) in coins.iter().enumerate() {
        for (src, m) in [
            ("cryptocompare", compare[c.symbol]),
            ("coingecko", gecko[c.symbol]),
        ] {
            assert_eq!(m.tag("name"), c.name, "{m:?}");
            assert_eq!(m.tag("currency"), "USD");
            assert_eq!(m.tag("source"), src);
            assert_eq!(m.f("price"), c.price, "{m:?}");
            assert_eq!(m.f("market_cap"), c.market_cap);
            assert_eq!(m.f("volume_24h"), c.volume_24h);
            assert_eq!(m.f("change_24h_pct"), c.change_24h_pct);
            assert_eq!(m.f("rank"), (i + 1) as f64);
            assert!(m.fields["rank"].ends_with('i'), "rank is an integer: {m:?}");
        }
        // Timestamps are the sources' last updates.
        assert_eq!(
            compare[c.symbol].time,
            (LAST_UPDATE + i as i64) * 1_000_000_000
        );
        assert_eq!(
            gecko[c.symbol].time,
            (1_764_590_000 + i as i64) * 1_000_000_000,
            "2025-12-01T11:53:20Z + i"
        );
        // inputs.http + json_v2 on the same API gives the same prices as inputs.crypto.
        let a = api[c.symbol];
        assert_eq!(a.f("price"), compare[c.symbol].f("price"));
        assert_eq!(a.f("market_cap"), compare[c.symbol].f("market_cap"));
        assert_eq!(a.tag("name"), c.name);
        assert_eq!(a.time, compare[c.symbol].time);
        assert!(
            a.tag("url")
                .ends_with("/data/top/mktcapfull?limit=10&tsym=USD")
        );
        // The HTML page: numbers read from display text ("$ 61,234.50", "-1.25%", "$1212.5B").
        let h = html[c.symbol];
        let shown: f64 = if c.price < 1.0 {
            format!("{:.4}", c.price).parse().unwrap()
        } else {
            format!("{:.2}", c.price).parse().unwrap()
        };
        assert_eq!(h.f("price"), shown, "{h:?}");
        assert_eq!(
            h.f("change_24h_pct"),
            (c.change_24h_pct * 100.0).round() / 100.0
        );
        let mcap_shown: f64 = format!("{:.1}", c.market_cap / 1e9).parse::<f64>().unwrap() * 1e9;
        assert!((h.f("market_cap") - mcap_shown).abs() < 1.0, "{h:?}");
        assert_eq!(h.f("rank"), (i + 1) as f64);
        assert_eq!(h.tag("name"), c.name);
    }
    let summary = lines
        .iter()
        .find(|l| l.name == "crypto_api_summary")
        .unwrap();
    assert_eq!(summary.fields["coins"], "10i");
    assert_eq!(summary.f("eth_price"), 3012.25);
    // Without measurement_name, metrics are named after the plugin (as in Telegraf), and a
    // field is named after the path's last part.
    let unnamed = lines
        .iter()
        .find(|l| l.name == "http")
        .expect("an `http` metric");
    assert_eq!(unnamed.fields["Count"], "3412i");
    // The requests the sources were sent.
    // (inputs.crypto and inputs.http both asked the CryptoCompare fixture; only the first sent the key.)
    let reqs = cc.requests();
    assert_eq!(reqs.len(), 2);
    let req = reqs
        .iter()
        .find(|r| r.header("authorization").is_some())
        .expect("the API key was sent");
    assert_eq!(req.header("authorization"), Some("Apikey cc-key"));
    assert_eq!(req.path, "/data/top/mktcapfull?limit=10&tsym=USD");
    let req = &cg.requests()[0];
    assert_eq!(
        req.path,
        "/api/v3/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=10&page=1"
    );
}

#[test]
fn source_errors_are_gather_errors_with_the_sources_message() {
    let mut coins = crypto::top10();
    // Missing fields: BTC has no price (skipped, with an error), ETH no market cap (kept).
    let mut broken: serde_json::Value =
        serde_json::from_str(&crypto::cryptocompare(&coins, "USD")).unwrap();
    broken["Data"][0]["RAW"]["USD"]
        .as_object_mut()
        .unwrap()
        .remove("PRICE");
    broken["Data"][1]["RAW"]["USD"]
        .as_object_mut()
        .unwrap()
        .remove("MKTCAP");
    let missing = Server::start(vec![], json_reply(&broken.to_string()));
    let error = Server::start(
        vec![],
        json_reply(&crypto::cryptocompare_error(
            "fsym param is not valid: not a known coin",
        )),
    );
    let limited = Server::start(
        vec![],
        Reply::status(429)
            .with_header("Retry-After", "120")
            .with_body(r#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit. Please visit our API page."}}"#),
    );
    let down = Server::start(vec![], Reply::status(502).with_body("bad gateway"));
    let not_json = Server::start(
        vec![],
        Reply::status(200).with_body("<html>maintenance</html>"),
    );
    coins.truncate(2);
    let dir = TempDir::new("web-errors");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  omit_hostname = true\n\
             [[inputs.crypto]]\n  alias = \"missing\"\n  base_url = \"{}\"\n\
             [[inputs.crypto]]\n  alias = \"error\"\n  base_url = \"{}\"\n\
             [[inputs.crypto]]\n  alias = \"limited\"\n  source = \"coingecko\"\n  base_url = \"{}\"\n\
             [[inputs.http]]\n  alias = \"down\"\n  urls = [\"{}\"]\n  data_format = \"json_v2\"\n  [[inputs.http.json_v2]]\n    [[inputs.http.json_v2.field]]\n      path = \"a\"\n\
             [[inputs.http]]\n  alias = \"not_json\"\n  urls = [\"{}\"]\n  data_format = \"json_v2\"\n  [[inputs.http.json_v2]]\n    [[inputs.http.json_v2.field]]\n      path = \"a\"\n",
            missing.url(""),
            error.url(""),
            limited.url(""),
            down.url("/down"),
            not_json.url("/page"),
        ),
    );
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = parse_lines(&r.stdout);
    let symbols: Vec<&str> = lines.iter().map(|l| l.tag("symbol")).collect();
    assert_eq!(symbols.len(), 9, "{symbols:?}\n{}", r.stderr);
    assert!(!symbols.contains(&"BTC"));
    let eth = lines.iter().find(|l| l.tag("symbol") == "ETH").unwrap();
    assert!(!eth.fields.contains_key("market_cap") && eth.f("price") == 3012.25);
    let err = &r.stderr;
    let has = |parts: &[&str]| err.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(has(&["missing", "BTC", "PRICE"]), "{err}");
    assert!(
        has(&["error", "fsym param is not valid: not a known coin"]),
        "{err}"
    );
    assert!(
        has(&["limited", "exceeded the Rate Limit", "backing off for 120s"]),
        "{err}"
    );
    assert!(
        has(&["down", &down.url("/down"), "502", "bad gateway"]),
        "{err}"
    );
    assert!(
        has(&["not_json", &not_json.url("/page"), "invalid JSON"]),
        "{err}"
    );
}

/// The generated rule under `promtool test rules`: $11 within the hour fires, $9 does not, a
/// rise and fall of $11 fires, a slow $18 drift over two hours ($9 per hour) does not, and the
/// alert ends once the move is more than an hour old.
#[test]
fn promtool_tests_the_generated_rule() {
    let dir = TempDir::new("web-promtool");
    let cfg = dir.write(
        "sonde.toml",
        "[[inputs.crypto]]\n[[outputs.prometheus_client]]\n  listen = \"127.0.0.1:0\"\n",
    );
    let r = run(&[
        "export",
        "prometheus-rules",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let rules = dir.write("rules.yml", &r.stdout);
    // --output writes the same file; a config without a crypto input is an error.
    let out = dir.join("out.yml");
    let r2 = run(&[
        "export",
        "prometheus-rules",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r2.code, Some(0), "{}", r2.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), r.stdout);
    let none = dir.write("none.toml", "[[inputs.mem]]\n");
    let r3 = run(&[
        "export",
        "grafana-dashboard",
        "--config",
        none.to_str().unwrap(),
    ]);
    assert_eq!(r3.code, Some(1));
    assert!(r3.stderr.contains("nothing to export"), "{}", r3.stderr);
    let check = std::process::Command::new("/usr/bin/promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (tests/setup.sh installs prometheus)");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let labels = |sym: &str, name: &str| {
        format!(
            "crypto_price{{symbol=\"{sym}\",name=\"{name}\",currency=\"USD\",source=\"cryptocompare\"}}"
        )
    };
    let exp = |sym: &str, name: &str, change: &str| {
        format!(
            "          - exp_labels: {{severity: warning, window: 1h, symbol: {sym}, name: {name}, currency: USD, source: cryptocompare}}\n\
             \x20           exp_annotations:\n\
             \x20             summary: \"{name} ({sym}) moved {change} USD within 1h\"\n\
             \x20             description: \"The price of {name} ({sym}) in USD moved by {change} USD (highest minus lowest price) within the last 1h, up or down: more than the threshold of 10 USD.\"\n"
        )
    };
    let test = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
         \x20     - series: '{btc}'\n        values: '61000+0x29 61011+0x29 61011+0x90'\n\
         \x20     - series: '{eth}'\n        values: '3000+0x29 3009+0x29 3009+0x90'\n\
         \x20     - series: '{sol}'\n        values: '150+0x19 161+0x9 150+0x29 150+0x90'\n\
         \x20     - series: '{ada}'\n        values: '0.40+0.15x150'\n\
         \x20   alert_rule_test:\n\
         \x20     - eval_time: 59m\n        alertname: CryptoPriceMoved\n        exp_alerts:\n{btc_alert}{sol_alert}\
         \x20     - eval_time: 150m\n        alertname: CryptoPriceMoved\n        exp_alerts: []\n",
        btc = labels("BTC", "Bitcoin"),
        eth = labels("ETH", "Ethereum"),
        sol = labels("SOL", "Solana"),
        ada = labels("ADA", "Cardano"),
        btc_alert = exp("BTC", "Bitcoin", "11.00"),
        sol_alert = exp("SOL", "Solana", "11.00"),
    );
    let test_file = dir.write("rules_test.yml", &test);
    let out = std::process::Command::new("/usr/bin/promtool")
        .args(["test", "rules"])
        .arg(&test_file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And the negative: the same test expecting ETH ($9) to fire must fail.
    let wrong = test.replace(
        &exp("SOL", "Solana", "11.00"),
        &exp("ETH", "Ethereum", "9.00"),
    );
    let wrong_file = dir.write("wrong_test.yml", &wrong);
    let out = std::process::Command::new("/usr/bin/promtool")
        .args(["test", "rules"])
        .arg(&wrong_file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a $9 move must not fire");
}

/// Starts Prometheus scraping `target` every second, evaluating `rules` every second and
/// sending alerts to `alertmanager`.
fn start_prometheus(
    dir: &TempDir,
    target: &str,
    rules: &std::path::Path,
    alertmanager: &str,
) -> (Process, String) {
    let port = free_port();
    let cfg = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n\
             scrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    );
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let p = Process::start(
        "/usr/bin/prometheus",
        &args,
        dir.join("prometheus.log"),
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(60),
    );
    (p, format!("http://127.0.0.1:{port}"))
}

fn start_alertmanager(dir: &TempDir, webhook: &str) -> (Process, String) {
    let port = free_port();
    let cfg = dir.write(
        "alertmanager.yml",
        &format!(
            "route:\n  receiver: hook\n  group_by: ['alertname', 'symbol']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: false\n"
        ),
    );
    std::fs::create_dir_all(dir.join("am-data")).unwrap();
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.path={}", dir.join("am-data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".into(),
    ];
    let p = Process::start(
        "/usr/bin/prometheus-alertmanager",
        &args,
        dir.join("alertmanager.log"),
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(60),
    );
    (p, format!("127.0.0.1:{port}"))
}

/// An instant query's result list.
fn query(base: &str, promql: &str) -> Vec<serde_json::Value> {
    let url = format!("{base}/api/v1/query?query={}", enc(promql));
    let (code, body) = get(&url).unwrap();
    assert_eq!(code, 200, "{promql}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{promql}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn with_prices(coins: &[Coin], btc: f64, eth: f64) -> Vec<Coin> {
    let mut c = coins.to_vec();
    c[0].price = btc;
    c[1].price = eth;
    c
}

/// sonde (crypto input → prometheus_client) scraped by a real Prometheus with the generated
/// rule (a 45s window: the test stays short and the alert lasts through a slow machine); BTC
/// moves $11 and ETH $9 while it runs: the alert for BTC, and only BTC, reaches a real
/// Alertmanager, which posts it to the test's webhook. The generated dashboard's queries are
/// then run against the same Prometheus.
#[test]
fn price_move_alert_reaches_the_webhook_and_dashboard_queries_work() {
    let started = Instant::now();
    let coins = crypto::top10();
    let fixture = Server::start(vec![], json_reply(&crypto::cryptocompare(&coins, "USD")));
    let hook = Server::start(vec![], Reply::status(200));
    let dir = TempDir::new("web-alert");
    let sonde_port = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  interval = \"1s\"\n  flush_interval = \"500ms\"\n  omit_hostname = true\n\
             [[inputs.crypto]]\n  base_url = \"{}\"\n  alert_threshold = 10.0\n  alert_window = \"45s\"\n\
             [[outputs.prometheus_client]]\n  listen = \"127.0.0.1:{sonde_port}\"\n",
            fixture.url("")
        ),
    );
    let r = run(&[
        "export",
        "prometheus-rules",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("[45s]"), "{}", r.stdout);
    let rules = dir.write("rules.yml", &r.stdout);
    let agent = Agent::start(&dir, &cfg);
    let (am, am_addr) = start_alertmanager(&dir, &hook.url("/hook"));
    let (prom, base) = start_prometheus(&dir, &format!("127.0.0.1:{sonde_port}"), &rules, &am_addr);
    let logs = || {
        format!(
            "sonde:\n{}\nprometheus:\n{}\nalertmanager:\n{}",
            agent.log(),
            prom.log(),
            am.log()
        )
    };
    // Every coin is in Prometheus.
    let ok = wait_until(Duration::from_secs(30), || {
        query(&base, "count(crypto_price{source=\"cryptocompare\"})")
            .first()
            .and_then(|r| r["value"][1].as_str().map(|s| s == "10"))
            .unwrap_or(false)
    });
    assert!(ok, "crypto_price not scraped\n{}", logs());
    // Steady prices for a few evaluations: no alert.
    std::thread::sleep(Duration::from_secs(3));
    assert!(query(&base, "ALERTS{alertname=\"CryptoPriceMoved\"}").is_empty());
    // BTC up $11, ETH up $9.
    fixture.set_default(json_reply(&crypto::cryptocompare(
        &with_prices(&coins, 61234.5 + 11.0, 3012.25 + 9.0),
        "USD",
    )));
    let delivered = wait_until(Duration::from_secs(40), || {
        hook.requests().iter().any(|r| r.method == "POST")
    });
    assert!(delivered, "no alert reached the webhook\n{}", logs());
    let post = hook
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&post.text()).unwrap();
    assert_eq!(v["status"], "firing", "{v}");
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{v}");
    let a = &alerts[0];
    assert_eq!(a["labels"]["alertname"], "CryptoPriceMoved");
    assert_eq!(a["labels"]["symbol"], "BTC");
    assert_eq!(a["labels"]["name"], "Bitcoin");
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(
        a["annotations"]["summary"], "Bitcoin (BTC) moved 11.00 USD within 45s",
        "{a}"
    );
    // Only BTC fired: ETH's $9 did not (checked in Prometheus and in what was delivered).
    let firing: Vec<String> = query(
        &base,
        "ALERTS{alertname=\"CryptoPriceMoved\",alertstate=\"firing\"}",
    )
    .iter()
    .map(|r| r["metric"]["symbol"].as_str().unwrap_or("").to_string())
    .collect();
    assert_eq!(firing, ["BTC"], "{}", logs());
    let moved = query(
        &base,
        "max_over_time(crypto_price{symbol=\"ETH\"}[2m]) - min_over_time(crypto_price{symbol=\"ETH\"}[2m])",
    );
    let eth_move: f64 = moved[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((eth_move - 9.0).abs() < 1e-6, "ETH moved {eth_move}");
    for r in hook.requests() {
        assert!(
            !r.text().contains("\"ETH\""),
            "ETH must not alert: {}",
            r.text()
        );
    }

    // The dashboard: Grafana's JSON model, one panel repeated over the coin variable, and
    // every query valid PromQL over metrics sonde serves (asked of this Prometheus).
    let out = dir.join("grafana");
    let r = run(&[
        "export",
        "grafana-dashboard",
        "--config",
        cfg.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        "--prometheus-url",
        &base,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sonde-crypto.json")).unwrap())
            .unwrap();
    check_dashboard(&d, &base);
    let ds = std::fs::read_to_string(out.join("provisioning/datasources/prometheus.yaml")).unwrap();
    assert!(
        ds.contains("type: prometheus")
            && ds.contains(&base)
            && ds.contains("uid: sonde-prometheus"),
        "{ds}"
    );
    let prov = std::fs::read_to_string(out.join("provisioning/dashboards/sonde.yaml")).unwrap();
    assert!(
        prov.contains("apiVersion: 1") && prov.contains("type: file"),
        "{prov}"
    );
    eprintln!("alert e2e took {:?}", started.elapsed());
}

fn check_dashboard(d: &serde_json::Value, base: &str) {
    assert!(d["uid"].is_string() && d["title"].is_string());
    assert!(d["schemaVersion"].as_u64().unwrap() >= 39, "current schema");
    let vars = d["templating"]["list"].as_array().unwrap();
    let symbol = vars
        .iter()
        .find(|v| v["name"] == "symbol")
        .expect("a symbol variable");
    assert_eq!(symbol["type"], "query");
    assert_eq!(symbol["includeAll"], true);
    assert_eq!(symbol["multi"], true);
    let ds_var = vars.iter().find(|v| v["type"] == "datasource").unwrap();
    assert_eq!(ds_var["query"], "prometheus");
    // The variable's values come from the series sonde serves.
    let def = symbol["definition"].as_str().unwrap();
    let inner = def
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(", symbol)"))
        .unwrap_or_else(|| panic!("unexpected variable query {def}"));
    let (code, body) = get(&format!(
        "{base}/api/v1/label/symbol/values?match[]={}",
        enc(inner)
    ))
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let values: serde_json::Value = serde_json::from_str(&body).unwrap();
    let values: Vec<&str> = values["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(values.len(), 10, "{values:?}");
    let panels = d["panels"].as_array().unwrap();
    let repeated: Vec<&serde_json::Value> =
        panels.iter().filter(|p| p["repeat"].is_string()).collect();
    assert_eq!(repeated.len(), 1, "one repeated panel");
    assert_eq!(repeated[0]["repeat"], "symbol");
    assert!(repeated[0]["title"].as_str().unwrap().contains("$symbol"));
    let mut ids = std::collections::HashSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "gridPos.{k} in {p}");
        }
        assert_eq!(p["datasource"]["type"], "prometheus");
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("$symbol"), "{expr} follows the coin variable");
            // As Grafana sends it: one coin, and a multi-value selection.
            for sel in ["BTC", "(BTC|ETH)"] {
                let q = expr.replace("$symbol", sel);
                let res = query(base, &q);
                assert!(!res.is_empty(), "{q} gives no series");
                assert!(
                    res.iter()
                        .all(|r| sel.contains(r["metric"]["symbol"].as_str().unwrap())),
                    "{q}: {res:?}"
                );
            }
        }
    }
}
