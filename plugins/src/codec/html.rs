//! `html` data format (sonde's own; Telegraf has none): CSS selectors pick the rows of a table
//! or list, and, relative to each row, the values of its tags and fields.
//!
//! ```toml
//! data_format = "html"
//! [[inputs.http.html]]
//!   measurement_name = "coin"
//!   [[inputs.http.html.object]]
//!     selector = "table#prices tbody tr"      # one metric per matching element
//!     [[inputs.http.html.object.tag]]
//!       name = "symbol"
//!       selector = "td.symbol"
//!     [[inputs.http.html.object.field]]
//!       name = "price"
//!       selector = "td:nth-child(3)"
//!       # type = "float"  (default; also int, uint, bool, string)
//!       # attribute = "data-value"  (read an attribute instead of the text)
//!       # optional = false
//! ```
//!
//! Numbers are read from the first number in the text: `$ 5,059.62` is 5059.62, `1.2K` is
//! 1200 (K, M, B/bn, T suffixes), `-3.4%` and `−3.4 %` are -3.4, `(12)` is -12. Commas are
//! thousands separators (a decimal comma is not understood). An empty item selector means the
//! row element itself. A non-optional item that matches nothing, or a value that is not a
//! number, is an error for that row (counted, the other rows carry on).
//!
//! The document (`scraper::Html`) is not `Send`: it is parsed and dropped inside
//! [`Parser::parse`], which never awaits.

use scraper::{ElementRef, Html, Selector};
use serde::Deserialize;

use super::{ParseError, Parser};
use crate::model::{FieldValue, Metric, Str};

/// One `[[inputs.X.html]]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub measurement_name: String,
    pub object: Vec<ObjectConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectConfig {
    /// CSS selector of the rows.
    pub selector: String,
    /// No error when no row matches.
    pub optional: bool,
    pub tag: Vec<Item>,
    pub field: Vec<Item>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Item {
    pub name: String,
    /// CSS selector relative to the row; empty for the row itself.
    pub selector: String,
    /// Read this attribute instead of the text.
    pub attribute: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub optional: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Float,
    Int,
    UInt,
    Bool,
    String,
}

struct CItem {
    name: Str,
    selector: Option<Selector>,
    attribute: Option<String>,
    kind: Kind,
    optional: bool,
}

struct CObject {
    text: String,
    selector: Selector,
    optional: bool,
    tag: Vec<CItem>,
    field: Vec<CItem>,
}

struct Table {
    name: Str,
    object: Vec<CObject>,
}

pub struct HtmlParser {
    tables: Vec<Table>,
}

fn selector(s: &str) -> Result<Selector, String> {
    Selector::parse(s).map_err(|e| format!("invalid CSS selector {s:?}: {e}"))
}

fn items(list: &[Item], what: &str) -> Result<Vec<CItem>, String> {
    list.iter()
        .enumerate()
        .map(|(i, it)| {
            let at = |e: String| format!("{what}[{i}].{e}");
            if it.name.is_empty() {
                return Err(at("name: required".into()));
            }
            Ok(CItem {
                name: it.name.as_str().into(),
                selector: match it.selector.trim() {
                    "" => None,
                    s => Some(selector(s).map_err(|e| at(format!("selector: {e}")))?),
                },
                attribute: (!it.attribute.is_empty()).then(|| it.attribute.clone()),
                kind: match it.kind.as_str() {
                    "" | "float" => Kind::Float,
                    "int" => Kind::Int,
                    "uint" => Kind::UInt,
                    "bool" => Kind::Bool,
                    "string" => Kind::String,
                    other => {
                        return Err(at(format!(
                            "type: unknown type {other:?} (expected float, int, uint, bool or string)"
                        )));
                    }
                },
                optional: it.optional,
            })
        })
        .collect()
}

impl HtmlParser {
    pub fn new(configs: &[Config], default_name: &str) -> Result<HtmlParser, String> {
        let mut tables = Vec::new();
        for (n, c) in configs.iter().enumerate() {
            let at = |e: String| format!("html[{n}].{e}");
            let mut object = Vec::new();
            for (i, o) in c.object.iter().enumerate() {
                let oat = |e: String| at(format!("object[{i}].{e}"));
                if o.field.is_empty() {
                    return Err(oat("needs at least one [[...object.field]]".into()));
                }
                object.push(CObject {
                    text: o.selector.clone(),
                    selector: selector(&o.selector).map_err(|e| oat(format!("selector: {e}")))?,
                    optional: o.optional,
                    tag: items(&o.tag, "tag").map_err(oat)?,
                    field: items(&o.field, "field").map_err(oat)?,
                });
            }
            if object.is_empty() {
                return Err(at("needs at least one [[...html.object]]".into()));
            }
            tables.push(Table {
                name: if c.measurement_name.is_empty() {
                    default_name.into()
                } else {
                    c.measurement_name.as_str().into()
                },
                object,
            });
        }
        if tables.is_empty() {
            return Err(
                "data_format = \"html\" needs at least one [[inputs.NAME.html]] table".into(),
            );
        }
        Ok(HtmlParser { tables })
    }
}

/// The first number in `text`, with K/M/B/T suffixes, a minus sign (ASCII or U+2212) or
/// accounting parentheses for negatives; currency signs, `%` and words around it are ignored.
pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let start = t
        .char_indices()
        .find(|&(i, c)| {
            c.is_ascii_digit() || (c == '.' && t[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        })?
        .0;
    let before = &t[..start];
    let neg = before.contains(['-', '−'])
        || (before.trim_start().starts_with('(') && t.trim_end().ends_with(')'));
    let rest = &t[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(rest.len());
    let digits: String = rest[..end].chars().filter(|&c| c != ',').collect();
    let mut v: f64 = digits.trim_end_matches('.').parse().ok()?;
    let after = rest[end..].trim_start();
    let mult = match after.chars().next() {
        Some('k' | 'K') => 1e3,
        Some('M') => 1e6,
        Some('B') => 1e9,
        Some('b') if after.starts_with("bn") => 1e9,
        Some('T') => 1e12,
        _ => 1.0,
    };
    // A suffix letter only counts when it ends the word ("1.2K", "3 M", not "5 Mbps").
    let suffix_ends = after
        .chars()
        .nth(if after.starts_with("bn") { 2 } else { 1 })
        .is_none_or(|c| !c.is_alphabetic());
    if mult != 1.0 && suffix_ends {
        v *= mult;
    }
    Some(if neg { -v } else { v })
}

fn text_of(el: &ElementRef) -> String {
    let mut s = String::new();
    for t in el.text() {
        s.push_str(t);
    }
    // Collapse whitespace the way a browser shows it.
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn value(row: &ElementRef, item: &CItem) -> Option<String> {
    let el = match &item.selector {
        None => *row,
        Some(s) => row.select(s).next()?,
    };
    match &item.attribute {
        Some(a) => el.value().attr(a).map(|v| v.trim().to_string()),
        None => Some(text_of(&el)),
    }
}

fn to_field(text: &str, kind: Kind) -> Result<FieldValue, String> {
    let bad = || format!("{text:?} is not a {kind:?}").to_lowercase();
    Ok(match kind {
        Kind::String => FieldValue::String(text.into()),
        Kind::Float => FieldValue::Float(parse_number(text).ok_or_else(bad)?),
        Kind::Int | Kind::UInt => {
            let f = parse_number(text).ok_or_else(bad)?;
            if f.fract() != 0.0 || !(-9.2e18..9.2e18).contains(&f) {
                return Err(bad());
            }
            if kind == Kind::Int {
                FieldValue::Int(f as i64)
            } else if f < 0.0 {
                return Err(bad());
            } else {
                FieldValue::UInt(f as u64)
            }
        }
        Kind::Bool => FieldValue::Bool(match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            _ => return Err(bad()),
        }),
    })
}

impl Parser for HtmlParser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let mut errors = Vec::new();
        let text = String::from_utf8_lossy(input);
        let doc = Html::parse_document(&text);
        for t in &self.tables {
            for o in &t.object {
                let mut rows = 0;
                for (n, row) in doc.select(&o.selector).enumerate() {
                    rows += 1;
                    match row_metric(&t.name, o, &row, now) {
                        Ok(m) => out.push(m),
                        Err(e) => errors.push(ParseError {
                            line: n + 1,
                            message: format!("row {} of {:?}: {e}", n + 1, o.text),
                        }),
                    }
                }
                if rows == 0 && !o.optional {
                    errors.push(ParseError {
                        line: 1,
                        message: format!("selector {:?} matched no element", o.text),
                    });
                }
            }
        }
        errors
    }
}

fn row_metric(name: &Str, o: &CObject, row: &ElementRef, now: i64) -> Result<Metric, String> {
    let mut m = Metric::new(name.clone(), now);
    for it in &o.tag {
        match value(row, it) {
            Some(v) if !v.is_empty() => m.add_tag(it.name.clone(), v),
            _ if it.optional => {}
            _ => return Err(format!("tag {:?}: no value", it.name)),
        }
    }
    for it in &o.field {
        match value(row, it) {
            Some(v) => m.add_field(
                it.name.clone(),
                to_field(&v, it.kind).map_err(|e| format!("field {:?}: {e}", it.name))?,
            ),
            None if it.optional => {}
            None => return Err(format!("field {:?}: selector matched nothing", it.name)),
        }
    }
    if m.fields.is_empty() {
        return Err("no fields".into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(text: &str) -> Result<HtmlParser, String> {
        #[derive(Deserialize)]
        struct Wrap {
            html: Vec<Config>,
        }
        let w: Wrap = toml::from_str(text).map_err(|e| e.to_string())?;
        HtmlParser::new(&w.html, "http")
    }

    const TABLE: &str = r#"
[[html]]
  measurement_name = "coin"
  [[html.object]]
    selector = "table#top tbody tr"
    [[html.object.tag]]
      name = "symbol"
      selector = "td.sym"
    [[html.object.field]]
      name = "price"
      selector = "td:nth-child(3)"
    [[html.object.field]]
      name = "change_24h_pct"
      selector = "td.chg"
    [[html.object.field]]
      name = "rank"
      selector = "td.rank"
      type = "int"
    [[html.object.field]]
      name = "volume_24h"
      selector = "td.vol"
      attribute = "data-raw"
      optional = true
"#;

    const PAGE: &str = r#"<!doctype html><html><body>
      <table id="top"><thead><tr><th>#</th><th>Coin</th><th>Price</th></tr></thead>
      <tbody>
        <tr><td class="rank">1</td><td class="sym">BTC</td><td>$ 61,234.50</td>
            <td class="chg">-3.4%</td><td class="vol" data-raw="1.2K">1.2 K</td></tr>
        <tr><td class="rank">2</td><td class="sym">ETH</td><td>$3,012.25</td>
            <td class="chg">+1.25 %</td></tr>
        <tr><td class="rank">3</td><td class="sym">XRP</td><td>n/a</td>
            <td class="chg">0%</td></tr>
      </tbody></table></body></html>"#;

    #[test]
    fn rows_tags_and_numbers() {
        let p = parser(TABLE).unwrap();
        let mut out = Vec::new();
        let errs = p.parse(PAGE.as_bytes(), 5, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].tag("symbol"), Some("BTC"));
        assert_eq!(out[0].field("price"), Some(&FieldValue::Float(61234.5)));
        assert_eq!(
            out[0].field("change_24h_pct"),
            Some(&FieldValue::Float(-3.4))
        );
        assert_eq!(out[0].field("rank"), Some(&FieldValue::Int(1)));
        assert_eq!(out[0].field("volume_24h"), Some(&FieldValue::Float(1200.0)));
        assert_eq!(out[1].field("price"), Some(&FieldValue::Float(3012.25)));
        assert_eq!(
            out[1].field("change_24h_pct"),
            Some(&FieldValue::Float(1.25))
        );
        assert_eq!(out[1].field("volume_24h"), None);
        assert_eq!(out[0].time, 5);
        assert_eq!(out[0].name, "coin");
        // The row whose price is not a number is an error naming the row and the field.
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.contains("row 3") && errs[0].message.contains("price"),
            "{errs:?}"
        );
        // Nothing matching is an error.
        let errs = p.parse(b"<p>maintenance</p>", 0, &mut out);
        assert!(errs[0].message.contains("matched no element"), "{errs:?}");
    }

    #[test]
    fn numbers_from_text() {
        for (t, want) in [
            ("$ 5,059.62", Some(5059.62)),
            ("1.2K", Some(1200.0)),
            ("-3.4%", Some(-3.4)),
            ("−3.4 %", Some(-3.4)),
            ("(12)", Some(-12.0)),
            ("€0.5", Some(0.5)),
            (".5", Some(0.5)),
            ("2.1B", Some(2.1e9)),
            ("3 bn", Some(3e9)),
            ("1.5T", Some(1.5e12)),
            ("7 Mbps", Some(7.0)),
            ("4M", Some(4e6)),
            ("USD 1,000,000", Some(1e6)),
            ("n/a", None),
            ("", None),
            ("-", None),
        ] {
            assert_eq!(parse_number(t), want, "{t:?}");
        }
    }

    #[test]
    fn config_errors() {
        let e = parser(
            "[[html]]\n[[html.object]]\nselector = \"tr[\"\n[[html.object.field]]\nname = \"x\"\n",
        )
        .err()
        .unwrap();
        assert!(e.contains("invalid CSS selector"), "{e}");
        let e = parser("[[html]]\n[[html.object]]\nselector = \"tr\"\n")
            .err()
            .unwrap();
        assert!(e.contains("at least one"), "{e}");
        let e = parser("[[html]]\n[[html.object]]\nselector = \"tr\"\n[[html.object.field]]\nselector = \"td\"\n")
            .err()
            .unwrap();
        assert!(e.contains("name: required"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(input in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let p = parser(TABLE).unwrap();
            let mut out = Vec::new();
            let _ = p.parse(&input, 0, &mut out);
        }

        #[test]
        fn never_panics_on_html_shaped_input(input in "(<(table|tr|td|tbody)( id=\"top\"| class=\"(sym|rank|chg)\")?>|</(table|tr|td)>|[-$0-9.,%KMBT()a-z ])*") {
            let p = parser(TABLE).unwrap();
            let mut out = Vec::new();
            let _ = p.parse(input.as_bytes(), 0, &mut out);
            let _ = parse_number(&input);
        }
    }
}
