//! `inputs.crypto`: prices of the top coins by market cap (or a fixed list) from CryptoCompare's
//! `/data/top/mktcapfull` or CoinGecko's `/coins/markets`.
//!
//! Both APIs may answer an error or a rate limit with HTTP 200 and an error body: those are
//! gather errors carrying the source's message. A rate limit (HTTP 429, or CryptoCompare's
//! rate-limit message) backs off: gathers are skipped until `Retry-After` (else 1 minute,
//! doubling up to 30 minutes) has passed.
//!
//! `alert_threshold` and `alert_window` are read by `sonde export prometheus-rules`, which
//! writes the "price moved more than $threshold within the window" rule for this input.

use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::common::http::{ClientOptions, TlsClientConfig, build_client, error_chain};
use crate::config_types::Duration;
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

const CRYPTOCOMPARE_URL: &str = "https://min-api.cryptocompare.com";
const COINGECKO_URL: &str = "https://api.coingecko.com/api/v3";
/// How many coins are fetched to find a fixed `symbols` list among them.
const SYMBOL_SEARCH: [usize; 2] = [100, 250];
const FIRST_BACKOFF: StdDuration = StdDuration::from_secs(60);
const MAX_BACKOFF: StdDuration = StdDuration::from_secs(1800);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Cryptocompare,
    Coingecko,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Cryptocompare => "cryptocompare",
            Source::Coingecko => "coingecko",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: Source,
    pub base_url: String,
    pub currency: String,
    pub top: usize,
    pub symbols: Vec<String>,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Read by `sonde export prometheus-rules`: the move (in `currency`) that raises the alert.
    pub alert_threshold: f64,
    /// Read by `sonde export prometheus-rules`: the window the move is measured in.
    pub alert_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: Source::Cryptocompare,
            base_url: String::new(),
            currency: "USD".into(),
            top: 10,
            symbols: Vec::new(),
            api_key: None,
            timeout: Duration::from_secs(10),
            alert_threshold: 10.0,
            alert_window: Duration::from_secs(3600),
        }
    }
}

/// What `sonde export` needs from an `[[inputs.crypto]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSettings {
    pub threshold: f64,
    pub window: StdDuration,
    pub currency: String,
    pub source: &'static str,
}

/// Parses an `[[inputs.crypto]]` table (TLS keys and the agent's common keys removed by the
/// caller) for the settings `sonde export` uses.
pub fn alert_settings(table: toml::Table) -> Result<AlertSettings, BuildError> {
    let mut table = table;
    TlsClientConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    check(&cfg)?;
    Ok(AlertSettings {
        threshold: cfg.alert_threshold,
        window: cfg.alert_window.get(),
        currency: cfg.currency.to_ascii_uppercase(),
        source: cfg.source.name(),
    })
}

fn check(cfg: &Config) -> Result<(), BuildError> {
    let bad = |key: &str, message: &str| {
        Err(BuildError::Config(ConfigError {
            path: vec![key.into()],
            message: message.into(),
        }))
    };
    if cfg.top == 0 || cfg.top > 250 {
        return bad("top", "must be between 1 and 250");
    }
    if cfg.source == Source::Cryptocompare && cfg.top > 100 {
        return bad("top", "CryptoCompare gives at most 100 coins");
    }
    if cfg.currency.is_empty() || !cfg.currency.chars().all(|c| c.is_ascii_alphanumeric()) {
        return bad("currency", "expected a currency code such as \"USD\"");
    }
    if !(cfg.alert_threshold.is_finite() && cfg.alert_threshold > 0.0) {
        return bad("alert_threshold", "must be a positive number");
    }
    if cfg.alert_window.is_zero() {
        return bad("alert_window", "must be more than zero");
    }
    if cfg.timeout.is_zero() {
        return bad("timeout", "must be more than zero");
    }
    Ok(())
}

pub struct Crypto {
    source: Source,
    url: reqwest::Url,
    client: reqwest::Client,
    currency: String,
    top: usize,
    /// Upper-case; empty for the top N.
    symbols: Vec<String>,
    api_key: Option<String>,
    /// Gathers before this instant are skipped (after a rate limit).
    backoff_until: Option<Instant>,
    backoff: StdDuration,
}

/// One coin as read from a source.
#[derive(Debug, Default, PartialEq)]
struct Coin {
    symbol: String,
    name: String,
    price: Option<f64>,
    market_cap: Option<f64>,
    volume_24h: Option<f64>,
    change_24h_pct: Option<f64>,
    rank: Option<i64>,
    time: Option<i64>,
}

/// Why a gather failed.
#[derive(Debug)]
enum Failure {
    RateLimited(String, Option<StdDuration>),
    Other(String),
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// CryptoCompare: `{"Message":"Success","Type":100,"Data":[{"CoinInfo":{..},"RAW":{"USD":{..}}}]}`;
/// errors: `{"Response":"Error","Message":"..","Type":99}` (with HTTP 200).
fn parse_cryptocompare(body: &Value, currency: &str) -> Result<Vec<(Coin, Vec<String>)>, Failure> {
    if body.get("Response").and_then(Value::as_str) == Some("Error")
        || body.get("Data").is_some_and(|d| !d.is_array())
    {
        let msg = body
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or("error without a message")
            .to_string();
        if msg.to_ascii_lowercase().contains("rate limit") {
            return Err(Failure::RateLimited(msg, None));
        }
        return Err(Failure::Other(format!("CryptoCompare: {msg}")));
    }
    let Some(data) = body.get("Data").and_then(Value::as_array) else {
        return Err(Failure::Other(
            "CryptoCompare: the answer has no Data list".into(),
        ));
    };
    let mut out = Vec::new();
    for (i, item) in data.iter().enumerate() {
        let info = &item["CoinInfo"];
        let raw = &item["RAW"][currency];
        let mut missing = Vec::new();
        let mut get = |key: &str| {
            let v = num(&raw[key]);
            if v.is_none() {
                missing.push(key.to_string());
            }
            v
        };
        let coin = Coin {
            symbol: info["Name"].as_str().unwrap_or("").to_ascii_uppercase(),
            name: info["FullName"].as_str().unwrap_or("").to_string(),
            price: get("PRICE"),
            market_cap: get("MKTCAP"),
            volume_24h: get("TOTALVOLUME24HTO"),
            change_24h_pct: get("CHANGEPCT24HOUR"),
            rank: Some(i as i64 + 1),
            time: num(&raw["LASTUPDATE"])
                .filter(|t| *t > 0.0 && *t < 1e11)
                .map(|t| (t * 1e9) as i64),
        };
        out.push((coin, missing));
    }
    Ok(out)
}

/// CoinGecko: `[{"id":"bitcoin","symbol":"btc","name":"Bitcoin","current_price":..,..}]`;
/// errors: `{"error":".."}` or `{"status":{"error_code":429,"error_message":".."}}`.
fn parse_coingecko(body: &Value) -> Result<Vec<(Coin, Vec<String>)>, Failure> {
    let Some(list) = body.as_array() else {
        let msg = body["status"]["error_message"]
            .as_str()
            .or_else(|| body["error"].as_str())
            .unwrap_or("unexpected answer (not a list of coins)")
            .to_string();
        let code = body["status"]["error_code"].as_i64();
        if code == Some(429) || msg.to_ascii_lowercase().contains("rate limit") {
            return Err(Failure::RateLimited(msg, None));
        }
        return Err(Failure::Other(format!("CoinGecko: {msg}")));
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let mut missing = Vec::new();
        let mut get = |key: &str| {
            let v = num(&item[key]);
            if v.is_none() {
                missing.push(key.to_string());
            }
            v
        };
        let coin = Coin {
            symbol: item["symbol"].as_str().unwrap_or("").to_ascii_uppercase(),
            name: item["name"].as_str().unwrap_or("").to_string(),
            price: get("current_price"),
            market_cap: get("market_cap"),
            volume_24h: get("total_volume"),
            change_24h_pct: get("price_change_percentage_24h"),
            rank: num(&item["market_cap_rank"])
                .map(|r| r as i64)
                .or(Some(i as i64 + 1)),
            time: item["last_updated"]
                .as_str()
                .and_then(crate::codec::json::parse_rfc3339),
        };
        out.push((coin, missing));
    }
    Ok(out)
}

impl Crypto {
    fn request(&self) -> reqwest::RequestBuilder {
        let want = if self.symbols.is_empty() {
            self.top
        } else {
            SYMBOL_SEARCH[usize::from(self.source == Source::Coingecko)]
        };
        let mut url = self.url.clone();
        let mut req = match self.source {
            Source::Cryptocompare => {
                url.path_segments_mut()
                    .map(|mut s| {
                        s.pop_if_empty().extend(["data", "top", "mktcapfull"]);
                    })
                    .ok();
                url.query_pairs_mut()
                    .append_pair("limit", &want.to_string())
                    .append_pair("tsym", &self.currency);
                let r = self.client.get(url);
                match &self.api_key {
                    Some(k) => r.header(reqwest::header::AUTHORIZATION, format!("Apikey {k}")),
                    None => r,
                }
            }
            Source::Coingecko => {
                url.path_segments_mut()
                    .map(|mut s| {
                        s.pop_if_empty().extend(["coins", "markets"]);
                    })
                    .ok();
                url.query_pairs_mut()
                    .append_pair("vs_currency", &self.currency.to_ascii_lowercase())
                    .append_pair("order", "market_cap_desc")
                    .append_pair("per_page", &want.to_string())
                    .append_pair("page", "1");
                let r = self.client.get(url);
                match &self.api_key {
                    Some(k)
                        if self
                            .url
                            .host_str()
                            .is_some_and(|h| h.starts_with("pro-api")) =>
                    {
                        r.header("x-cg-pro-api-key", k)
                    }
                    Some(k) => r.header("x-cg-demo-api-key", k),
                    None => r,
                }
            }
        };
        req = req.header(reqwest::header::ACCEPT, "application/json");
        req
    }

    async fn fetch(&self) -> Result<Vec<(Coin, Vec<String>)>, Failure> {
        let resp = self
            .request()
            .send()
            .await
            .map_err(|e| Failure::Other(error_chain(&e)))?;
        let status = resp.status();
        let retry_after = crate::common::http::retry_after(&resp);
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Other(error_chain(&e)))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let short = || {
            let t = text.trim();
            t[..t.floor_char_boundary(200)].to_string()
        };
        if status.as_u16() == 429 {
            let msg = body
                .as_ref()
                .and_then(|b| {
                    b["status"]["error_message"]
                        .as_str()
                        .or_else(|| b["Message"].as_str())
                        .map(String::from)
                })
                .unwrap_or_else(short);
            return Err(Failure::RateLimited(msg, retry_after));
        }
        let Some(body) = body else {
            return Err(Failure::Other(format!(
                "server answered {status} with a body that is not JSON: {}",
                short()
            )));
        };
        let parsed = match self.source {
            Source::Cryptocompare => parse_cryptocompare(&body, &self.currency),
            Source::Coingecko => parse_coingecko(&body),
        };
        match parsed {
            Err(Failure::RateLimited(m, _)) => Err(Failure::RateLimited(m, retry_after)),
            Err(e) => Err(e),
            Ok(_) if !status.is_success() => Err(Failure::Other(format!(
                "server answered {status}: {}",
                short()
            ))),
            Ok(c) => Ok(c),
        }
    }
}

#[async_trait]
impl Input for Crypto {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let source = self.source.name();
        if let Some(until) = self.backoff_until {
            if Instant::now() < until {
                tracing::debug!("crypto: {source} rate limit: skipping this gather");
                return Ok(());
            }
            self.backoff_until = None;
        }
        let coins = match self.fetch().await {
            Ok(c) => {
                self.backoff = FIRST_BACKOFF;
                c
            }
            Err(Failure::RateLimited(msg, after)) => {
                let wait = after.unwrap_or(self.backoff).min(MAX_BACKOFF);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.backoff_until = Some(Instant::now() + wait);
                anyhow::bail!(
                    "{source}: rate limited ({msg}); backing off for {}s",
                    wait.as_secs()
                );
            }
            Err(Failure::Other(msg)) => anyhow::bail!("{source}: {msg}"),
        };
        let mut wanted: Vec<&str> = self.symbols.iter().map(String::as_str).collect();
        let mut taken = 0;
        for (coin, missing) in coins {
            if self.symbols.is_empty() {
                if taken == self.top {
                    break;
                }
            } else if let Some(pos) = wanted.iter().position(|s| *s == coin.symbol) {
                wanted.remove(pos);
            } else {
                continue;
            }
            taken += 1;
            if coin.symbol.is_empty() || coin.price.is_none() {
                acc.add_error(format!(
                    "{source}: coin {} (rank {}) has no {}; skipped",
                    if coin.symbol.is_empty() {
                        "?"
                    } else {
                        &coin.symbol
                    },
                    coin.rank.unwrap_or(0),
                    if coin.symbol.is_empty() {
                        "symbol".to_string()
                    } else {
                        missing.join(", ")
                    }
                ));
                continue;
            }
            let mut m = Metric::new("crypto", coin.time.unwrap_or(acc.time()))
                .with_kind(ValueType::Gauge)
                .with_tag("symbol", coin.symbol.as_str())
                .with_tag("currency", self.currency.as_str())
                .with_tag("source", source);
            if !coin.name.is_empty() {
                m.add_tag("name", coin.name.as_str());
            }
            for (k, v) in [
                ("price", coin.price),
                ("market_cap", coin.market_cap),
                ("volume_24h", coin.volume_24h),
                ("change_24h_pct", coin.change_24h_pct),
            ] {
                if let Some(v) = v {
                    m.add_field(k, v);
                }
            }
            if let Some(r) = coin.rank {
                m.add_field("rank", r);
            }
            acc.add(m);
        }
        if !wanted.is_empty() {
            acc.add_error(format!(
                "{source}: {} not among the top {} coins",
                wanted.join(", "),
                SYMBOL_SEARCH[usize::from(self.source == Source::Coingecko)]
            ));
        }
        Ok(())
    }
}

fn build(mut table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let tls = TlsClientConfig::take(&mut table)?;
    let cfg: Config = parse_config(table)?;
    check(&cfg)?;
    let base = match (cfg.base_url.as_str(), cfg.source) {
        ("", Source::Cryptocompare) => CRYPTOCOMPARE_URL,
        ("", Source::Coingecko) => COINGECKO_URL,
        (u, _) => u,
    };
    let url = reqwest::Url::parse(base)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
        .ok_or_else(|| {
            BuildError::Config(ConfigError {
                path: vec!["base_url".into()],
                message: format!("{base:?} is not an http(s):// URL"),
            })
        })?;
    let client = build_client(&ClientOptions {
        timeout: cfg.timeout.get(),
        idle_conn_timeout: None,
        tls: &tls,
    })?;
    Ok(InputPlugin::Polled(Box::new(Crypto {
        source: cfg.source,
        url,
        client,
        currency: cfg.currency.to_ascii_uppercase(),
        top: cfg.top,
        symbols: cfg.symbols.iter().map(|s| s.to_ascii_uppercase()).collect(),
        api_key: cfg.api_key.filter(|k| !k.is_empty()),
        backoff_until: None,
        backoff: FIRST_BACKOFF,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "crypto",
    description: "Prices of the top coins by market cap from CryptoCompare or CoinGecko",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};

    const CC: &str = r#"{"Message":"Success","Type":100,"MetaData":{"Count":3},"Data":[
      {"CoinInfo":{"Id":"1","Name":"BTC","FullName":"Bitcoin"},
       "RAW":{"USD":{"PRICE":61234.5,"MKTCAP":1212000000000,"TOTALVOLUME24HTO":31000000000,
                     "CHANGEPCT24HOUR":-1.25,"LASTUPDATE":1764590000}}},
      {"CoinInfo":{"Id":"2","Name":"ETH","FullName":"Ethereum"},
       "RAW":{"USD":{"PRICE":3012.25,"MKTCAP":362000000000,"TOTALVOLUME24HTO":15000000000,
                     "CHANGEPCT24HOUR":2.5,"LASTUPDATE":1764590030}}},
      {"CoinInfo":{"Id":"3","Name":"USDT","FullName":"Tether"},
       "RAW":{"USD":{"MKTCAP":120000000000,"LASTUPDATE":1764590040}}}
    ]}"#;

    /// Answers requests in turn from `replies` (status, extra header, body), repeating the
    /// last; records the request lines and headers.
    fn server(
        replies: Vec<(u16, &'static str, &'static str)>,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for (n, s) in l.incoming().enumerate() {
                let mut s = s.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                s2.lock().unwrap().push(head);
                let (status, header, body) = replies[n.min(replies.len() - 1)];
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (base, seen)
    }

    fn input(text: &str) -> Box<dyn Input> {
        match build(toml::from_str(text).unwrap(), &BuildContext::default()) {
            Ok(InputPlugin::Polled(p)) => p,
            Err(e) => panic!("{e}"),
            _ => panic!(),
        }
    }

    #[tokio::test]
    async fn cryptocompare_top_coins_with_key_and_missing_fields() {
        let (base, seen) = server(vec![(200, "", CC)]);
        let mut p = input(&format!("base_url = '{base}'\ntop = 3\napi_key = 'k1'"));
        let mut acc = Accumulator::new(5);
        p.gather(&mut acc).await.unwrap();
        let head = seen.lock().unwrap()[0].clone();
        assert!(
            head.starts_with("GET /data/top/mktcapfull?limit=3&tsym=USD "),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: apikey k1"),
            "{head}"
        );
        assert_eq!(acc.metrics.len(), 2);
        let btc = &acc.metrics[0];
        assert_eq!(btc.name, "crypto");
        assert_eq!(btc.tag("symbol"), Some("BTC"));
        assert_eq!(btc.tag("name"), Some("Bitcoin"));
        assert_eq!(btc.tag("currency"), Some("USD"));
        assert_eq!(btc.tag("source"), Some("cryptocompare"));
        assert_eq!(btc.field("price").unwrap().as_f64(), Some(61234.5));
        assert_eq!(btc.field("market_cap").unwrap().as_f64(), Some(1.212e12));
        assert_eq!(btc.field("volume_24h").unwrap().as_f64(), Some(3.1e10));
        assert_eq!(btc.field("change_24h_pct").unwrap().as_f64(), Some(-1.25));
        assert_eq!(btc.field("rank"), Some(&crate::model::FieldValue::Int(1)));
        assert_eq!(btc.time, 1_764_590_000_000_000_000);
        assert_eq!(acc.errors.len(), 1);
        assert!(
            acc.errors[0].contains("USDT") && acc.errors[0].contains("PRICE"),
            "{:?}",
            acc.errors
        );
    }

    #[tokio::test]
    async fn error_bodies_with_200_and_rate_limits_back_off() {
        let (base, seen) = server(vec![
            (
                200,
                "",
                r#"{"Response":"Error","Message":"tsym param seems to be missing.","Type":2,"Data":{}}"#,
            ),
            (
                200,
                "",
                r#"{"Response":"Error","Message":"You are over your rate limit please upgrade your account!","Type":99,"Data":{}}"#,
            ),
            (200, "", CC),
        ]);
        let mut p = input(&format!("base_url = '{base}'"));
        let mut acc = Accumulator::new(0);
        let e = p.gather(&mut acc).await.unwrap_err().to_string();
        assert!(e.contains("tsym param seems to be missing"), "{e}");
        let e = p.gather(&mut acc).await.unwrap_err().to_string();
        assert!(
            e.contains("rate limit") && e.contains("backing off for 60s"),
            "{e}"
        );
        // Backing off: no request is made.
        p.gather(&mut acc).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert!(acc.metrics.is_empty());
    }

    #[tokio::test]
    async fn coingecko_symbols_and_429_with_retry_after() {
        const CG: &str = r#"[
          {"id":"bitcoin","symbol":"btc","name":"Bitcoin","current_price":61250.0,"market_cap":1212500000000,
           "market_cap_rank":1,"total_volume":30500000000,"price_change_percentage_24h":-1.1,
           "last_updated":"2026-12-01T10:00:00.000Z"},
          {"id":"ethereum","symbol":"eth","name":"Ethereum","current_price":3010.0,"market_cap":361000000000,
           "market_cap_rank":2,"total_volume":14000000000,"price_change_percentage_24h":2.4,
           "last_updated":"2026-12-01T10:00:05.000Z"}
        ]"#;
        let (base, seen) = server(vec![
            (
                429,
                "Retry-After: 0\r\n",
                r#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}"#,
            ),
            (200, "", CG),
        ]);
        let mut p = input(&format!(
            "source = 'coingecko'\nbase_url = '{base}/api/v3'\nsymbols = ['eth', 'doge']\napi_key = 'cg'"
        ));
        let mut acc = Accumulator::new(0);
        let e = p.gather(&mut acc).await.unwrap_err().to_string();
        assert!(
            e.contains("exceeded the Rate Limit") && e.contains("backing off for 0s"),
            "{e}"
        );
        p.gather(&mut acc).await.unwrap();
        let heads = seen.lock().unwrap().clone();
        assert!(
            heads[1].starts_with("GET /api/v3/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=250&page=1 "),
            "{}",
            heads[1]
        );
        assert!(
            heads[1]
                .to_ascii_lowercase()
                .contains("x-cg-demo-api-key: cg")
        );
        assert_eq!(acc.metrics.len(), 1);
        let eth = &acc.metrics[0];
        assert_eq!(eth.tag("symbol"), Some("ETH"));
        assert_eq!(eth.tag("source"), Some("coingecko"));
        assert_eq!(eth.field("price").unwrap().as_f64(), Some(3010.0));
        assert_eq!(eth.field("rank"), Some(&crate::model::FieldValue::Int(2)));
        assert_eq!(eth.time, 1_796_119_205_000_000_000);
        assert!(acc.errors[0].contains("DOGE not among"), "{:?}", acc.errors);
    }

    #[test]
    fn config_checks_and_alert_settings() {
        let s = alert_settings(
            toml::from_str("alert_threshold = 25.5\nalert_window = '30m'\ncurrency = 'eur'")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(s.threshold, 25.5);
        assert_eq!(s.window, StdDuration::from_secs(1800));
        assert_eq!(s.currency, "EUR");
        let d = alert_settings(toml::Table::new()).unwrap();
        assert_eq!(
            (d.threshold, d.window.as_secs(), d.source),
            (10.0, 3600, "cryptocompare")
        );
        for bad in [
            "top = 0",
            "top = 101",
            "alert_threshold = -1.0",
            "currency = 'U S'",
            "source = 'binance'",
            "base_url = 'ftp://x'",
        ] {
            assert!(
                build(toml::from_str(bad).unwrap(), &BuildContext::default()).is_err(),
                "{bad}"
            );
        }
    }
}
