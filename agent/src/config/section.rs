//! One table of the config (`[agent]`, `[[inputs.exec]]`, …) being taken apart key by key,
//! with typed getters that record errors at the key's or value's position.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::doc::{Diagnostic, Doc};
use crate::filter::{self, Filter, FilterConfig};

/// The filter keys every plugin accepts.
pub const FILTER_KEYS: &[&str] = &[
    "namepass",
    "namepass_separator",
    "namedrop",
    "namedrop_separator",
    "fieldinclude",
    "fieldexclude",
    "fieldpass",
    "fielddrop",
    "tagpass",
    "tagdrop",
    "taginclude",
    "tagexclude",
];

pub struct Section<'a> {
    pub doc: &'a Doc,
    /// Path of this table inside the document, e.g. `["inputs", "exec", "0"]`.
    pub prefix: Vec<String>,
    /// How errors name it, e.g. `inputs.exec[0]`.
    pub name: String,
    /// The keys not taken yet.
    pub table: toml::Table,
    pub errors: Vec<Diagnostic>,
}

/// Keys whose values must never appear in messages.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "token", "secret", "credential"]
        .iter()
        .any(|s| k.contains(s))
        || k == "key"
        || k.ends_with("_key")
        || k.ends_with("apikey")
}

/// The candidate nearest to `word`, if it is close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean "x"?` or nothing.
pub fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default()
}

/// Hides the string value of a secret key wherever a message repeats it.
pub fn redact(key: &str, value: Option<&toml::Value>, message: String) -> String {
    match value {
        Some(toml::Value::String(s)) if is_secret(key) && !s.is_empty() => {
            message.replace(s.as_str(), "***")
        }
        _ => message,
    }
}

impl<'a> Section<'a> {
    pub fn new(doc: &'a Doc, prefix: Vec<String>, name: String, table: toml::Table) -> Self {
        Section {
            doc,
            prefix,
            name,
            table,
            errors: Vec::new(),
        }
    }

    /// Byte offset of a key (or its value) below this table; falls back to the nearest
    /// enclosing key that exists, and finally to the table's header.
    pub fn offset(&self, path: &[String], value: bool) -> Option<usize> {
        let mut full = self.prefix.clone();
        full.extend(path.iter().cloned());
        let mut value = value;
        while full.len() >= self.prefix.len() && !full.is_empty() {
            if let Some(s) = self.doc.spans(&full) {
                return Some(if value { s.value.start } else { s.key.start });
            }
            full.pop();
            // A missing key: point at its table's header, not at the table's name.
            value = true;
        }
        None
    }

    pub fn error(&mut self, path: &[String], at_value: bool, message: String) {
        let at = self.offset(path, at_value);
        let d = self.doc.diag(at, Some(self.name.clone()), message);
        self.errors.push(d);
    }

    pub fn error_at_header(&mut self, message: String) {
        self.error(&[], true, message);
    }

    /// Removes a key and deserializes its value, recording an error at the value.
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.table.remove(key)?;
        match T::deserialize(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = redact(key, Some(&value), format!("{key}: {}", e.message()));
                self.error(&[key.to_string()], true, msg);
                None
            }
        }
    }

    /// An error at a key's value, for checks after `take`.
    pub fn value_error(&mut self, key: &str, message: String) {
        self.error(&[key.to_string()], true, format!("{key}: {message}"));
    }

    pub fn duration(&mut self, key: &str) -> Option<Duration> {
        self.take::<sonde_plugins::config_types::Duration>(key)
            .map(|d| d.get())
    }

    /// A duration that must be more than zero.
    pub fn positive_duration(&mut self, key: &str) -> Option<Duration> {
        let d = self.duration(key)?;
        if d.is_zero() {
            self.value_error(key, "must be more than zero".into());
            return None;
        }
        Some(d)
    }

    pub fn size(&mut self, key: &str) -> Option<u64> {
        self.take::<sonde_plugins::config_types::Size>(key)
            .map(|s| s.0)
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        self.take(key)
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        self.take(key)
    }

    /// A string that must be one of `allowed`.
    pub fn choice(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(key)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        self.value_error(
            key,
            format!("{s:?} is not one of {}{}", list.join(", "), {
                did_you_mean(suggest(&s, allowed.iter().copied()))
            }),
        );
        None
    }

    pub fn int(&mut self, key: &str) -> Option<i64> {
        self.take(key)
    }

    /// A non-negative count of at least `min`.
    pub fn count(&mut self, key: &str, min: usize) -> Option<usize> {
        let n = self.int(key)?;
        if n < min as i64 {
            let why = if n < 0 {
                "must not be negative".to_string()
            } else {
                format!("must be at least {min}")
            };
            self.value_error(key, format!("{why} (got {n})"));
            return None;
        }
        Some(n as usize)
    }

    /// An array of glob patterns, each checked.
    fn globs(&mut self, key: &str) -> Vec<String> {
        let list: Vec<String> = self.take(key).unwrap_or_default();
        for (i, p) in list.iter().enumerate() {
            if let Err(e) = filter::validate_glob(p) {
                self.error(
                    &[key.to_string(), i.to_string()],
                    true,
                    format!("{key}: {e}"),
                );
            }
        }
        list
    }

    /// `[X.tags]`-style string tables, sorted by key.
    pub fn string_map(&mut self, key: &str) -> Vec<(String, String)> {
        let Some(table) = self.take::<toml::Table>(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in table {
            match v {
                toml::Value::String(s) => out.push((k, s)),
                other => self.error(
                    &[key.to_string(), k.clone()],
                    true,
                    format!("{key}.{k}: expected a string, found {}", other.type_str()),
                ),
            }
        }
        out
    }

    /// `[X.tagpass]`-style tables: tag key -> array of globs.
    fn glob_map(&mut self, key: &str) -> Vec<(String, Vec<String>)> {
        let Some(table) = self.take::<toml::Table>(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in table {
            let path = [key.to_string(), k.clone()];
            let Ok(globs) = Vec::<String>::deserialize(v) else {
                self.error(
                    &path,
                    true,
                    format!("{key}.{k}: expected an array of strings"),
                );
                continue;
            };
            for (i, p) in globs.iter().enumerate() {
                if let Err(e) = filter::validate_glob(p) {
                    let path = [key.to_string(), k.clone(), i.to_string()];
                    self.error(&path, true, format!("{key}.{k}: {e}"));
                }
            }
            out.push((k, globs));
        }
        out
    }

    /// Takes the filter keys and compiles them.
    pub fn filter(&mut self) -> Filter {
        let errors_before = self.errors.len();
        let mut cfg = FilterConfig {
            namepass: self.globs("namepass"),
            namedrop: self.globs("namedrop"),
            namepass_separator: self.string("namepass_separator").unwrap_or_default(),
            namedrop_separator: self.string("namedrop_separator").unwrap_or_default(),
            fieldinclude: self.globs("fieldinclude"),
            fieldexclude: self.globs("fieldexclude"),
            taginclude: self.globs("taginclude"),
            tagexclude: self.globs("tagexclude"),
            tagpass: self.glob_map("tagpass"),
            tagdrop: self.glob_map("tagdrop"),
        };
        // The old names still work, merged with the new ones.
        cfg.fieldinclude.extend(self.globs("fieldpass"));
        cfg.fieldexclude.extend(self.globs("fielddrop"));
        if self.errors.len() > errors_before {
            return Filter::default();
        }
        Filter::new(&cfg).unwrap_or_else(|e| {
            self.error_at_header(e);
            Filter::default()
        })
    }

    /// Reports every key not taken as unknown, suggesting the nearest of `known`.
    pub fn reject_unknown(&mut self, known: &[&str]) {
        let keys: Vec<String> = self.table.keys().cloned().collect();
        for k in keys {
            let hint = did_you_mean(suggest(&k, known.iter().copied()));
            self.error(
                std::slice::from_ref(&k),
                false,
                format!("unknown key {k:?}{hint}"),
            );
        }
    }
}
