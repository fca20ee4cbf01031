//! The catalogue of plugins: name, one-line description, sample config and constructor.

use crate::plugin::{Aggregator, BuildContext, InputPlugin, Output, Processor};

/// Whether the agent should build a `data_format` parser or serializer for the plugin from the
/// format keys of its table (Telegraf's `data_format`, `influx_*`, `json_*`, … options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    None,
    /// Parses with a format; the string is the default `data_format`.
    Parser(&'static str),
    /// Serializes with a format; the string is the default `data_format`.
    Serializer(&'static str),
}

/// A configuration error inside a plugin's own table.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// Path of keys (and array indexes as strings) inside the plugin's table, e.g. `["commands", "0"]`.
    pub path: Vec<String>,
    pub message: String,
}

/// Why a plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Deserializes a plugin's table into its config struct, keeping the path of a bad key.
///
/// Only `erased_serde::deserialize::<T>` is instantiated per config type; the TOML value
/// deserializer and the path tracking behind it are compiled once, behind `dyn`. Instantiated
/// for each of ~100 config structs (at -O3, in this crate) they took about 1 MB of the binary.
/// Config parsing runs at startup and reload only, so the indirect calls cost nothing that
/// matters.
pub fn parse_config<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, BuildError> {
    let mut out = None;
    parse_erased(table, &mut |de| {
        out = Some(erased_serde::deserialize::<T>(de)?);
        Ok(())
    })?;
    Ok(out.expect("parse_erased succeeded, so the value was set"))
}

type ErasedParse<'a> =
    dyn FnMut(&mut dyn erased_serde::Deserializer<'static>) -> Result<(), erased_serde::Error> + 'a;

fn parse_erased(table: toml::Table, parse: &mut ErasedParse<'_>) -> Result<(), BuildError> {
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let de = serde_path_to_error::Deserializer::new(toml::Value::Table(table), &mut track);
        parse(&mut <dyn erased_serde::Deserializer>::erase(de))
    };
    result.map_err(|e| {
        let path = track
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        BuildError::Config(ConfigError {
            path,
            message: e.to_string(),
        })
    })
}

pub struct Spec<T> {
    pub name: &'static str,
    pub description: &'static str,
    /// The commented sample config (the plugin's `sample.toml`).
    pub sample: &'static str,
    pub format: Format,
    pub build: fn(toml::Table, &BuildContext) -> Result<T, BuildError>,
}

pub type InputSpec = Spec<InputPlugin>;
pub type ProcessorSpec = Spec<Box<dyn Processor>>;
pub type AggregatorSpec = Spec<Box<dyn Aggregator>>;
pub type OutputSpec = Spec<Box<dyn Output>>;

pub fn inputs() -> &'static [InputSpec] {
    crate::inputs::ALL
}
pub fn processors() -> &'static [ProcessorSpec] {
    crate::processors::ALL
}
pub fn aggregators() -> &'static [AggregatorSpec] {
    crate::aggregators::ALL
}
pub fn outputs() -> &'static [OutputSpec] {
    crate::outputs::ALL
}

pub fn find<'a, T>(specs: &'a [Spec<T>], name: &str) -> Option<&'a Spec<T>> {
    specs.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample config parses as TOML and its tables build a plugin (the samples are the docs).
    #[test]
    fn every_sample_parses() {
        fn check<T>(kind: &str, specs: &[Spec<T>]) {
            for s in specs {
                let doc: toml::Table = toml::from_str(s.sample)
                    .unwrap_or_else(|e| panic!("{kind}.{} sample.toml: {e}", s.name));
                let section = doc
                    .get(kind)
                    .and_then(|v| v.get(s.name))
                    .unwrap_or_else(|| {
                        panic!("{kind}.{} sample has no [[{kind}.{}]]", s.name, s.name)
                    });
                assert!(
                    section.is_array(),
                    "{kind}.{}: sample must use [[{kind}.{}]]",
                    s.name,
                    s.name
                );
                assert!(!s.description.is_empty());
            }
        }
        check("inputs", inputs());
        check("processors", processors());
        check("aggregators", aggregators());
        check("outputs", outputs());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = inputs().iter().map(|s| s.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }
}

/// The README's plugin table, generated from the registry.
pub fn markdown_table() -> String {
    fn rows<T>(kind: &str, specs: &[Spec<T>], out: &mut String) {
        for s in specs {
            out.push_str(&format!("| `{kind}.{}` | {} |\n", s.name, s.description));
        }
    }
    let mut out = String::from("| plugin | what it does |\n|---|---|\n");
    rows("inputs", inputs(), &mut out);
    rows("processors", processors(), &mut out);
    rows("aggregators", aggregators(), &mut out);
    rows("outputs", outputs(), &mut out);
    out
}

#[cfg(test)]
mod readme {
    const START: &str = "<!-- plugins:start (generated: SONDE_UPDATE_README=1 cargo test -p sonde-plugins readme) -->\n";
    const END: &str = "<!-- plugins:end -->";

    /// The README lists exactly the registered plugins. Run with SONDE_UPDATE_README=1 to
    /// rewrite the table.
    #[test]
    fn readme_plugin_table_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let start = readme
            .find(START)
            .expect("README has the plugins:start marker")
            + START.len();
        let end = readme.find(END).expect("README has the plugins:end marker");
        let want = super::markdown_table();
        if readme[start..end] != want {
            if std::env::var_os("SONDE_UPDATE_README").is_some() {
                let new = format!("{}{}{}", &readme[..start], want, &readme[end..]);
                std::fs::write(path, new).unwrap();
            } else {
                panic!("README's plugin table is out of date; expected:\n{want}");
            }
        }
    }
}
