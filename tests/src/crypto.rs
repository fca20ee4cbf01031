//! Fixtures for the web-data tests: answers in the shape of CryptoCompare's
//! `/data/top/mktcapfull` and CoinGecko's `/coins/markets`, and an HTML page with a top-10
//! table, all generated from one list of made-up coins (no recorded third-party data).

use serde_json::{Value, json};

/// One coin of the fixtures.
#[derive(Clone, Debug)]
pub struct Coin {
    pub symbol: &'static str,
    pub name: &'static str,
    pub price: f64,
    pub market_cap: f64,
    pub volume_24h: f64,
    pub change_24h_pct: f64,
}

/// Ten coins by market cap, with invented figures.
pub fn top10() -> Vec<Coin> {
    let c = |symbol, name, price, market_cap, volume_24h, change_24h_pct| Coin {
        symbol,
        name,
        price,
        market_cap,
        volume_24h,
        change_24h_pct,
    };
    vec![
        c("BTC", "Bitcoin", 61234.5, 1.2125e12, 3.1e10, -1.25),
        c("ETH", "Ethereum", 3012.25, 3.62e11, 1.5e10, 2.5),
        c("USDT", "Tether", 1.0002, 1.2e11, 4.5e10, 0.01),
        c("BNB", "BNB", 612.4, 9.1e10, 1.9e9, -0.6),
        c("SOL", "Solana", 158.75, 7.3e10, 3.2e9, 4.1),
        c("USDC", "USD Coin", 0.9999, 3.4e10, 6.1e9, -0.02),
        c("XRP", "XRP", 0.6123, 3.3e10, 1.4e9, 1.3),
        c("DOGE", "Dogecoin", 0.1534, 2.2e10, 1.1e9, -3.4),
        c("TON", "Toncoin", 6.42, 1.6e10, 3.1e8, 0.8),
        c("ADA", "Cardano", 0.4512, 1.59e10, 4.2e8, -2.05),
    ]
}

/// The Unix time the fixtures say the prices were last updated.
pub const LAST_UPDATE: i64 = 1_764_590_000;

/// A CryptoCompare `/data/top/mktcapfull` success answer in `currency`.
pub fn cryptocompare(coins: &[Coin], currency: &str) -> String {
    let data: Vec<Value> = coins
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "CoinInfo": {
                    "Id": (1000 + i).to_string(),
                    "Name": c.symbol,
                    "FullName": c.name,
                    "Internal": c.symbol,
                    "ImageUrl": format!("/media/{}.png", c.symbol.to_lowercase()),
                    "Algorithm": "N/A",
                    "ProofType": "N/A",
                    "Rating": {"Weiss": {"Rating": "", "TechnologyAdoptionRating": "", "MarketPerformanceRating": ""}},
                    "NetHashesPerSecond": 0,
                    "BlockNumber": 0,
                    "AssetLaunchDate": "2015-01-01"
                },
                "RAW": {currency: {
                    "TYPE": "5",
                    "MARKET": "CCCAGG",
                    "FROMSYMBOL": c.symbol,
                    "TOSYMBOL": currency,
                    "FLAGS": "2049",
                    "PRICE": c.price,
                    "LASTUPDATE": LAST_UPDATE + i as i64,
                    "VOLUME24HOUR": c.volume_24h / c.price,
                    "VOLUME24HOURTO": c.volume_24h * 0.6,
                    "TOTALVOLUME24H": c.volume_24h / c.price * 1.4,
                    "TOTALVOLUME24HTO": c.volume_24h,
                    "CHANGE24HOUR": c.price * c.change_24h_pct / 100.0,
                    "CHANGEPCT24HOUR": c.change_24h_pct,
                    "SUPPLY": c.market_cap / c.price,
                    "MKTCAP": c.market_cap
                }},
                "DISPLAY": {currency: {
                    "FROMSYMBOL": c.symbol,
                    "TOSYMBOL": "$",
                    "PRICE": format!("$ {:.2}", c.price),
                    "MKTCAP": format!("$ {:.2} B", c.market_cap / 1e9)
                }}
            })
        })
        .collect();
    json!({
        "Message": "Success",
        "Type": 100,
        "MetaData": {"Count": 3412},
        "SponsoredData": [],
        "Data": data,
        "RateLimit": {},
        "HasWarning": false
    })
    .to_string()
}

/// CryptoCompare's error answer (sent with HTTP 200).
pub fn cryptocompare_error(message: &str) -> String {
    json!({
        "Response": "Error",
        "Message": message,
        "HasWarning": false,
        "Type": 2,
        "RateLimit": {},
        "Data": {},
        "ParamWithError": "tsym"
    })
    .to_string()
}

/// A CoinGecko `/coins/markets` success answer.
pub fn coingecko(coins: &[Coin]) -> String {
    let list: Vec<Value> = coins
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "id": c.name.to_lowercase().replace(' ', "-"),
                "symbol": c.symbol.to_lowercase(),
                "name": c.name,
                "image": format!("https://img.invalid/{}.png", c.symbol.to_lowercase()),
                "current_price": c.price,
                "market_cap": c.market_cap,
                "market_cap_rank": i + 1,
                "fully_diluted_valuation": c.market_cap * 1.05,
                "total_volume": c.volume_24h,
                "high_24h": c.price * 1.02,
                "low_24h": c.price * 0.97,
                "price_change_24h": c.price * c.change_24h_pct / 100.0,
                "price_change_percentage_24h": c.change_24h_pct,
                "circulating_supply": c.market_cap / c.price,
                "last_updated": format!("2025-12-01T11:53:{:02}.000Z", 20 + i)
            })
        })
        .collect();
    Value::Array(list).to_string()
}

/// An HTML page with the coins in a table, numbers written as a web page shows them.
pub fn html_table(coins: &[Coin]) -> String {
    let mut rows = String::new();
    for (i, c) in coins.iter().enumerate() {
        rows.push_str(&format!(
            "      <tr class=\"coin-row\" data-symbol=\"{sym}\">\n\
             \x20       <td class=\"rank\">{rank}</td>\n\
             \x20       <td class=\"name\"><a href=\"/coins/{sym}\"><span class=\"full\">{name}</span> <span class=\"sym\">{sym}</span></a></td>\n\
             \x20       <td class=\"price\">$ {price}</td>\n\
             \x20       <td class=\"change {dir}\">{chg:+.2}%</td>\n\
             \x20       <td class=\"mcap\">${mcap:.1}B</td>\n\
             \x20     </tr>\n",
            sym = c.symbol,
            rank = i + 1,
            name = c.name,
            price = thousands(c.price),
            dir = if c.change_24h_pct < 0.0 { "down" } else { "up" },
            chg = c.change_24h_pct,
            mcap = c.market_cap / 1e9,
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Top coins</title>\n\
         <script>window.__state = {{\"loaded\": true}};</script></head>\n<body>\n\
         <nav><ul><li>Markets</li><li>Exchanges</li></ul></nav>\n\
         <table id=\"markets\" class=\"table\">\n  <thead><tr><th>#</th><th>Coin</th><th>Price</th><th>24h</th><th>Market cap</th></tr></thead>\n\
         \x20 <tbody>\n{rows}  </tbody>\n</table>\n<footer>Prices for testing only.</footer>\n</body></html>\n"
    )
}

/// `61234.5` as `61,234.50`; prices under 1 keep four decimals.
fn thousands(v: f64) -> String {
    let s = if v < 1.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    };
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{out}.{frac}")
}
