//! json_v2 and html parsing: documents per second for a ~10 kB and a ~1 MB document, each
//! beside its peer measured in the same run (serde_json's parse alone and the v1 `json`
//! parser for json_v2; scraper's document parse alone for html).
//!
//! `cargo bench -p sonde-plugins --bench web`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sonde_plugins::codec::{Parser, ParserConfig, build_parser};

/// A CryptoCompare-shaped answer of `n` coins (made-up figures).
fn market_json(n: usize) -> String {
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let price = 1000.0 / (i as f64 + 1.0) + 0.25;
        items.push(format!(
            r#"{{"CoinInfo":{{"Id":"{i}","Name":"C{i}","FullName":"Coin number {i}","Algorithm":"N/A"}},"RAW":{{"USD":{{"TYPE":"5","MARKET":"CCCAGG","FROMSYMBOL":"C{i}","TOSYMBOL":"USD","PRICE":{price},"LASTUPDATE":{t},"VOLUME24HOURTO":{v},"TOTALVOLUME24HTO":{v},"CHANGEPCT24HOUR":-1.5,"MKTCAP":{m}}}}},"DISPLAY":{{"USD":{{"PRICE":"$ {price:.2}"}}}}}}"#,
            t = 1_764_590_000 + i,
            v = price * 1e6,
            m = price * 1e8,
        ));
    }
    format!(
        r#"{{"Message":"Success","Type":100,"Data":[{}]}}"#,
        items.join(",")
    )
}

/// An HTML page with a table of `n` coins.
fn market_html(n: usize) -> String {
    let mut rows = String::new();
    for i in 0..n {
        let price = 1000.0 / (i as f64 + 1.0) + 0.25;
        rows.push_str(&format!(
            "<tr class=\"coin\"><td class=\"rank\">{}</td><td class=\"name\"><span class=\"full\">Coin number {i}</span> <span class=\"sym\">C{i}</span></td>\
             <td class=\"price\">$ {price:.2}</td><td class=\"change\">-1.50%</td><td class=\"mcap\">${:.1}M</td></tr>\n",
            i + 1,
            price * 100.0
        ));
    }
    format!(
        "<!DOCTYPE html><html><head><title>Markets</title></head><body><nav>menu</nav>\
         <table id=\"markets\"><thead><tr><th>#</th><th>Coin</th><th>Price</th></tr></thead><tbody>\n{rows}</tbody></table></body></html>"
    )
}

/// Repeats `make(n)` with growing n until the document is at least `bytes` long.
fn sized(bytes: usize, make: fn(usize) -> String) -> String {
    let mut n = 1;
    loop {
        let d = make(n);
        if d.len() >= bytes {
            return d;
        }
        n = (n * bytes / d.len()).max(n + 1);
    }
}

fn parser(toml_text: &str) -> std::sync::Arc<dyn Parser> {
    let cfg: ParserConfig = toml::from_str(toml_text).unwrap();
    build_parser(&cfg, "influx").unwrap()
}

const JSON_V2: &str = r#"
data_format = "json_v2"
[[json_v2]]
  measurement_name = "crypto_api"
  [[json_v2.object]]
    path = "Data"
    timestamp_key = "RAW_USD_LASTUPDATE"
    timestamp_format = "unix"
    included_keys = ["CoinInfo_Name", "RAW_USD_PRICE", "RAW_USD_MKTCAP", "RAW_USD_TOTALVOLUME24HTO"]
    tags = ["CoinInfo_Name"]
"#;

const JSON_V1: &str = r#"
data_format = "json"
json_query = "Data"
tag_keys = ["CoinInfo_Name"]
"#;

const HTML: &str = r#"
data_format = "html"
[[html]]
  measurement_name = "coin"
  [[html.object]]
    selector = "table#markets tbody tr.coin"
    [[html.object.tag]]
      name = "symbol"
      selector = "span.sym"
    [[html.object.field]]
      name = "price"
      selector = "td.price"
    [[html.object.field]]
      name = "change_24h_pct"
      selector = "td.change"
    [[html.object.field]]
      name = "market_cap"
      selector = "td.mcap"
"#;

fn bench(c: &mut Criterion) {
    let v2 = parser(JSON_V2);
    let v1 = parser(JSON_V1);
    let html = parser(HTML);
    let mut g = c.benchmark_group("json");
    for (label, size) in [("10kB", 10_000), ("1MB", 1_000_000)] {
        let doc = sized(size, market_json);
        g.throughput(Throughput::Elements(1));
        g.sample_size(if size > 100_000 { 20 } else { 100 });
        let mut out = Vec::new();
        // Check once that the parsers work on the document.
        assert!(v2.parse(doc.as_bytes(), 0, &mut out).is_empty() && !out.is_empty());
        g.bench_with_input(BenchmarkId::new("json_v2", label), &doc, |b, d| {
            b.iter(|| {
                out.clear();
                v2.parse(d.as_bytes(), 0, &mut out)
            })
        });
        g.bench_with_input(BenchmarkId::new("json_v1", label), &doc, |b, d| {
            b.iter(|| {
                out.clear();
                v1.parse(d.as_bytes(), 0, &mut out)
            })
        });
        g.bench_with_input(BenchmarkId::new("serde_json_value", label), &doc, |b, d| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(d.as_bytes()).unwrap())
        });
    }
    g.finish();
    let mut g = c.benchmark_group("html");
    for (label, size) in [("10kB", 10_000), ("1MB", 1_000_000)] {
        let doc = sized(size, market_html);
        g.throughput(Throughput::Elements(1));
        g.sample_size(if size > 100_000 { 10 } else { 100 });
        let mut out = Vec::new();
        assert!(html.parse(doc.as_bytes(), 0, &mut out).is_empty() && !out.is_empty());
        g.bench_with_input(BenchmarkId::new("html", label), &doc, |b, d| {
            b.iter(|| {
                out.clear();
                html.parse(d.as_bytes(), 0, &mut out)
            })
        });
        g.bench_with_input(
            BenchmarkId::new("scraper_parse_only", label),
            &doc,
            |b, d| b.iter(|| scraper::Html::parse_document(d)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
