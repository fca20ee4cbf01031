//! `processors.override`: set the measurement name, a prefix or suffix, and tags, replacing
//! what metrics already have.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::{Metric, Str};
use crate::plugin::{BuildContext, Processor};
use crate::registry::{BuildError, Format, ProcessorSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub name_override: String,
    #[serde(default)]
    pub name_prefix: String,
    #[serde(default)]
    pub name_suffix: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

pub struct Override {
    /// Empty strings mean "leave alone", as in Telegraf.
    name: Option<Str>,
    prefix: String,
    suffix: String,
    tags: Vec<(Str, Str)>,
}

impl Override {
    fn new(cfg: Config) -> Self {
        Override {
            name: (!cfg.name_override.is_empty()).then(|| cfg.name_override.into()),
            prefix: cfg.name_prefix,
            suffix: cfg.name_suffix,
            tags: cfg
                .tags
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl Processor for Override {
    fn apply(&mut self, mut batch: Vec<Metric>) -> Vec<Metric> {
        for m in &mut batch {
            if let Some(name) = &self.name {
                m.name = name.clone();
            }
            if !self.prefix.is_empty() || !self.suffix.is_empty() {
                m.name = format!("{}{}{}", self.prefix, m.name, self.suffix).into();
            }
            for (k, v) in &self.tags {
                m.add_tag(k.clone(), v.clone());
            }
        }
        batch
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    Ok(Box::new(Override::new(parse_config(table)?)))
}

pub const SPEC: ProcessorSpec = ProcessorSpec {
    name: "override",
    description: "Override the measurement name or add a prefix/suffix, and set tags, on every metric",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: &str, m: Metric) -> Metric {
        let t: toml::Table = toml::from_str(cfg).unwrap();
        let mut p = build(t, &BuildContext::default()).unwrap();
        p.apply(vec![m]).pop().unwrap()
    }

    #[test]
    fn override_then_prefix_and_suffix() {
        let cfg = r#"
            name_override = "new"
            name_prefix = "pre_"
            name_suffix = "_suf"
        "#;
        let m = run(cfg, Metric::new("old", 0).with_field("v", 1i64));
        assert_eq!(m.name, "pre_new_suf");
    }

    #[test]
    fn tags_replace_existing_and_stay_sorted() {
        let cfg = r#"
            [tags]
            zone = "eu"
            host = "forced"
        "#;
        let m = run(
            cfg,
            Metric::new("m", 0)
                .with_tag("host", "orig")
                .with_tag("a", "1")
                .with_field("v", 1i64),
        );
        assert_eq!(m.name, "m", "no name option leaves the name alone");
        let tags: Vec<_> = m
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(tags, [("a", "1"), ("host", "forced"), ("zone", "eu")]);
    }

    #[test]
    fn empty_strings_change_nothing() {
        let m = run(
            r#"name_override = """#,
            Metric::new("keep", 0).with_field("v", 1i64),
        );
        assert_eq!(m.name, "keep");
    }

    #[test]
    fn bad_config_is_an_error() {
        for bad in ["name_overide = \"x\"", "[tags]\nport = 80"] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            assert!(build(t, &BuildContext::default()).is_err(), "{bad}");
        }
    }
}
