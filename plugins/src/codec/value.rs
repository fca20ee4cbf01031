//! `value` data format: the payload is a single value (Telegraf's `value` parser).
//!
//! Whitespace (and NUL bytes) around the payload are trimmed. For every type but `string`, the
//! payload is split on whitespace and only the last word is used, as Telegraf does, so a command
//! printing progress lines and then a number yields that number. An empty payload gives nothing.
//! `data_type` is Telegraf's: `integer` (the default, also `int`), `float` (`long`), `string`
//! (`str`), `boolean` (`bool`), `base64` (the whole payload, untrimmed, base64-encoded as a
//! string field), `auto_integer` / `auto_float` (that number when the word is one, else the word
//! as a string field).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{ParseError, Parser};
use crate::model::{FieldValue, Metric, Str};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Integer,
    Float,
    String,
    Boolean,
    Base64,
    AutoInteger,
    AutoFloat,
}

impl DataType {
    /// Telegraf's names (and its aliases); "" is Telegraf's default, integer.
    pub fn from_name(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "" | "integer" | "int" => DataType::Integer,
            "float" | "long" | "double" => DataType::Float,
            "string" | "str" => DataType::String,
            "boolean" | "bool" => DataType::Boolean,
            "base64" => DataType::Base64,
            "auto_integer" => DataType::AutoInteger,
            "auto_float" => DataType::AutoFloat,
            other => anyhow::bail!(
                "invalid data_type {other:?} (expected integer, float, string, boolean, base64, auto_integer or auto_float)"
            ),
        })
    }
}

#[derive(Clone, Debug)]
pub struct ValueParser {
    pub data_type: DataType,
    pub field: Str,
    pub name: Str,
}

impl Default for ValueParser {
    fn default() -> Self {
        ValueParser {
            data_type: DataType::Float,
            field: "value".into(),
            name: "value".into(),
        }
    }
}

impl Parser for ValueParser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        let err = |message: String| vec![ParseError { line: 1, message }];
        let text = match std::str::from_utf8(input) {
            Ok(t) => t,
            // base64 carries any bytes; only its word split needs text.
            Err(_) if self.data_type == DataType::Base64 => &String::from_utf8_lossy(input),
            Err(_) => return err("invalid UTF-8".into()),
        };
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        let word = match self.data_type {
            DataType::String => text,
            _ => match text.split_whitespace().next_back() {
                Some(w) => w,
                None => return Vec::new(),
            },
        };
        if word.is_empty() {
            return Vec::new();
        }
        let value = match self.data_type {
            DataType::String => FieldValue::String(word.into()),
            DataType::Base64 => FieldValue::String(STANDARD.encode(input).into()),
            DataType::AutoInteger => match word.parse::<i64>() {
                Ok(v) => FieldValue::Int(v),
                Err(_) => FieldValue::String(word.into()),
            },
            DataType::AutoFloat => match word.parse::<f64>() {
                Ok(v) => FieldValue::Float(v),
                Err(_) => FieldValue::String(word.into()),
            },
            DataType::Integer => match word.parse::<i64>() {
                Ok(v) => FieldValue::Int(v),
                Err(_) => return err(format!("invalid integer {word:?}")),
            },
            DataType::Float => match word.parse::<f64>() {
                Ok(v) => FieldValue::Float(v),
                Err(_) => return err(format!("invalid float {word:?}")),
            },
            // Go's strconv.ParseBool spellings.
            DataType::Boolean => match word {
                "1" | "t" | "T" | "true" | "True" | "TRUE" => FieldValue::Bool(true),
                "0" | "f" | "F" | "false" | "False" | "FALSE" => FieldValue::Bool(false),
                _ => return err(format!("invalid boolean {word:?}")),
            },
        };
        out.push(Metric::new(self.name.clone(), now).with_field(self.field.clone(), value));
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &ValueParser, input: &str) -> (Vec<Metric>, Vec<ParseError>) {
        let mut out = Vec::new();
        let e = p.parse(input.as_bytes(), 9, &mut out);
        (out, e)
    }

    #[test]
    fn types_and_last_word() {
        let int = ValueParser {
            data_type: DataType::Integer,
            ..Default::default()
        };
        let (m, e) = run(&int, "  starting...\ndone 42 \n");
        assert!(e.is_empty());
        assert_eq!(m[0].name, "value");
        assert_eq!(m[0].time, 9);
        assert_eq!(m[0].field("value"), Some(&FieldValue::Int(42)));
        let (m, e) = run(&int, "4.5");
        assert!(m.is_empty());
        assert_eq!(e[0].message, "invalid integer \"4.5\"");

        let (m, _) = run(&ValueParser::default(), "-1.5e3\0");
        assert_eq!(m[0].fields[0].1, FieldValue::Float(-1500.0));

        let s = ValueParser {
            data_type: DataType::String,
            field: "msg".into(),
            name: "exec".into(),
        };
        let (m, _) = run(&s, "\n hello world \n");
        assert_eq!(m[0].name, "exec");
        assert_eq!(
            m[0].field("msg"),
            Some(&FieldValue::String("hello world".into()))
        );

        let b = ValueParser {
            data_type: DataType::Boolean,
            ..Default::default()
        };
        assert_eq!(run(&b, "TRUE").0[0].fields[0].1, FieldValue::Bool(true));
        assert_eq!(run(&b, "0").0[0].fields[0].1, FieldValue::Bool(false));
        assert!(run(&b, "yes").1[0].message.contains("invalid boolean"));
    }

    #[test]
    fn auto_types_and_base64() {
        let p = |t: &str| ValueParser {
            data_type: DataType::from_name(t).unwrap(),
            ..Default::default()
        };
        let ai = p("auto_integer");
        assert_eq!(run(&ai, "x 42\n").0[0].fields[0].1, FieldValue::Int(42));
        assert_eq!(
            run(&ai, "4.5").0[0].fields[0].1,
            FieldValue::String("4.5".into())
        );
        let af = p("auto_float");
        assert_eq!(run(&af, "42").0[0].fields[0].1, FieldValue::Float(42.0));
        assert_eq!(
            run(&af, "up").0[0].fields[0].1,
            FieldValue::String("up".into())
        );
        // The whole payload, untrimmed and any bytes.
        let b = p("base64");
        let (m, e) = run(&b, "hello world\n");
        assert!(e.is_empty());
        assert_eq!(
            m[0].fields[0].1,
            FieldValue::String("aGVsbG8gd29ybGQK".into())
        );
        let mut out = Vec::new();
        assert!(b.parse(&[0xff, 0x00, b'a'], 0, &mut out).is_empty());
        assert_eq!(out[0].fields[0].1, FieldValue::String("/wBh".into()));
        // Telegraf's default and aliases.
        assert_eq!(DataType::from_name("").unwrap(), DataType::Integer);
        assert_eq!(DataType::from_name("long").unwrap(), DataType::Float);
        assert_eq!(DataType::from_name("str").unwrap(), DataType::String);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_yields_at_most_one(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            t in proptest::sample::select(vec!["integer", "float", "string", "boolean", "base64", "auto_integer", "auto_float"]),
        ) {
            let p = ValueParser { data_type: DataType::from_name(t).unwrap(), ..Default::default() };
            let mut out = Vec::new();
            let errs = p.parse(&input, 0, &mut out);
            proptest::prop_assert!(out.len() + errs.len() <= 1);
            if matches!(p.data_type, DataType::AutoInteger | DataType::AutoFloat | DataType::Base64) {
                proptest::prop_assert!(errs.is_empty() || std::str::from_utf8(&input).is_err());
            }
        }

        #[test]
        fn numbers_round_trip(v in proptest::num::i64::ANY, f in proptest::num::f64::NORMAL) {
            let p = ValueParser { data_type: DataType::AutoInteger, ..Default::default() };
            let mut out = Vec::new();
            p.parse(v.to_string().as_bytes(), 0, &mut out);
            proptest::prop_assert_eq!(&out[0].fields[0].1, &FieldValue::Int(v));
            let p = ValueParser { data_type: DataType::AutoFloat, ..Default::default() };
            out.clear();
            p.parse(f.to_string().as_bytes(), 0, &mut out);
            proptest::prop_assert_eq!(&out[0].fields[0].1, &FieldValue::Float(f));
        }
    }

    #[test]
    fn empty_payload_gives_nothing() {
        let (m, e) = run(&ValueParser::default(), " \n\t ");
        assert!(m.is_empty() && e.is_empty());
        assert!(DataType::from_name("number").is_err());
        // base64 of whitespace alone: nothing, as Telegraf (no word to keep).
        let b = ValueParser {
            data_type: DataType::Base64,
            ..Default::default()
        };
        assert!(run(&b, " \n").0.is_empty());
    }
}
