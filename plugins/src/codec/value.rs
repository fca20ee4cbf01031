//! `value` data format: the payload is a single value (Telegraf's `value` parser).
//!
//! Whitespace (and NUL bytes) around the payload are trimmed. For every type but `string`, the
//! payload is split on whitespace and only the last word is used, as Telegraf does, so a command
//! printing progress lines and then a number yields that number. An empty payload gives nothing.

use super::{ParseError, Parser};
use crate::model::{FieldValue, Metric, Str};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Integer,
    Float,
    String,
    Boolean,
}

impl DataType {
    pub fn from_name(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "integer" | "int" => DataType::Integer,
            "float" | "double" => DataType::Float,
            "string" => DataType::String,
            "boolean" | "bool" => DataType::Boolean,
            other => anyhow::bail!(
                "invalid data_type {other:?} (expected integer, float, string or boolean)"
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
        let Ok(text) = std::str::from_utf8(input) else {
            return err("invalid UTF-8".into());
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
    fn empty_payload_gives_nothing() {
        let (m, e) = run(&ValueParser::default(), " \n\t ");
        assert!(m.is_empty() && e.is_empty());
        assert!(DataType::from_name("number").is_err());
    }
}
