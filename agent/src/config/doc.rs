//! One config file: its text, the substituted TOML table, and where each key sits in the
//! original text, so every error can name file, line and column.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use super::env::{self, OffsetMap};

/// One problem in the configuration, printed as `file:line:col: section: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub origin: String,
    /// 1-based line and column in the original text, when the problem has a place.
    pub position: Option<(usize, usize)>,
    /// e.g. `inputs.exec[0]` or `agent`.
    pub section: Option<String>,
    pub message: String,
    /// File order and byte offset, to print errors in reading order.
    sort_key: (usize, usize),
}

impl Diagnostic {
    /// A problem with a file as a whole (unreadable, missing).
    pub fn file(origin: &str, message: String) -> Self {
        Diagnostic {
            origin: origin.to_string(),
            position: None,
            section: None,
            message,
            sort_key: (usize::MAX, 0),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(section) = &self.section {
            write!(f, ": {section}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    pub(super) fn new(mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| d.sort_key);
        ConfigError { diagnostics }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where a key and its value are, as byte ranges in the substituted text.
#[derive(Clone, Debug)]
pub struct Spans {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// A parsed config file.
pub struct Doc {
    /// Index in load order, for sorting errors.
    pub index: usize,
    pub origin: String,
    original: String,
    map: OffsetMap,
    /// Spans of every key path (array indexes as strings), e.g. `["inputs","exec","0","commands"]`.
    spans: HashMap<Vec<String>, Spans>,
    pub table: toml::Table,
}

impl Doc {
    /// Substitutes the environment and parses; on failure returns every problem found.
    pub fn parse(
        index: usize,
        origin: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Doc, Vec<Diagnostic>> {
        let (substituted, map, env_errors) = env::substitute(text, lookup);
        let mut doc = Doc {
            index,
            origin: origin.to_string(),
            original: text.to_string(),
            map,
            spans: HashMap::new(),
            table: toml::Table::new(),
        };
        if !env_errors.is_empty() {
            return Err(env_errors
                .into_iter()
                // Offsets of env errors are already in the original text.
                .map(|e| doc.diag_original(Some(e.offset), None, e.message))
                .collect());
        }
        let (tree, errors) = toml::de::DeTable::parse_recoverable(&substituted);
        if !errors.is_empty() {
            return Err(errors
                .iter()
                .map(|e| {
                    let at = e.span().map(|s| s.start);
                    doc.diag(at, None, syntax_message(e.message()))
                })
                .collect());
        }
        let mut path = Vec::new();
        index_table(tree.get_ref(), &mut path, &mut doc.spans);
        doc.table = match toml::from_str(&substituted) {
            Ok(t) => t,
            Err(e) => {
                let at = e.span().map(|s| s.start);
                return Err(vec![doc.diag(at, None, syntax_message(e.message()))]);
            }
        };
        Ok(doc)
    }

    pub fn spans(&self, path: &[String]) -> Option<&Spans> {
        self.spans.get(path)
    }

    /// A diagnostic at a byte offset of the substituted text.
    pub fn diag(
        &self,
        offset: Option<usize>,
        section: Option<String>,
        message: String,
    ) -> Diagnostic {
        self.diag_original(offset.map(|o| self.map.to_original(o)), section, message)
    }

    fn diag_original(
        &self,
        offset: Option<usize>,
        section: Option<String>,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            origin: self.origin.clone(),
            position: offset.map(|o| env::line_col(&self.original, o)),
            section,
            message,
            sort_key: (self.index, offset.unwrap_or(0)),
        }
    }
}

/// The toml crate's message without its trailing newline.
fn syntax_message(m: &str) -> String {
    format!("TOML syntax error: {}", m.trim_end())
}

fn index_table(
    table: &toml::de::DeTable<'_>,
    path: &mut Vec<String>,
    out: &mut HashMap<Vec<String>, Spans>,
) {
    for (k, v) in table {
        path.push(k.get_ref().to_string());
        out.insert(
            path.clone(),
            Spans {
                key: k.span(),
                value: v.span(),
            },
        );
        index_value(v.get_ref(), path, out);
        path.pop();
    }
}

fn index_value(
    value: &toml::de::DeValue<'_>,
    path: &mut Vec<String>,
    out: &mut HashMap<Vec<String>, Spans>,
) {
    match value {
        toml::de::DeValue::Table(t) => index_table(t, path, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                out.insert(
                    path.clone(),
                    Spans {
                        key: item.span(),
                        value: item.span(),
                    },
                );
                index_value(item.get_ref(), path, out);
                path.pop();
            }
        }
        _ => {}
    }
}
