//! `processors.rename`: rename measurements, tags and fields, one `[[replace]]` rule at a time.

use serde::Deserialize;

use crate::model::{Metric, Str};
use crate::plugin::{BuildContext, Processor};
use crate::registry::{BuildError, ConfigError, Format, ProcessorSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub replace: Vec<Replace>,
}

/// One rule: exactly one of `measurement`, `tag`, `field`, renamed to `dest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    pub measurement: Option<String>,
    pub tag: Option<String>,
    pub field: Option<String>,
    #[serde(default)]
    pub dest: String,
}

#[derive(Debug)]
enum Rule {
    Measurement(Str, Str),
    Tag(Str, Str),
    Field(Str, Str),
}

pub struct Rename {
    rules: Vec<Rule>,
}

impl Processor for Rename {
    fn apply(&mut self, mut batch: Vec<Metric>) -> Vec<Metric> {
        for m in &mut batch {
            // Rules apply in config order, so a later rule sees an earlier rule's result.
            for rule in &self.rules {
                match rule {
                    Rule::Measurement(from, to) => {
                        if m.name == *from {
                            m.name = to.clone();
                        }
                    }
                    Rule::Tag(from, to) => {
                        if let Some(v) = m.remove_tag(from) {
                            m.add_tag(to.clone(), v);
                        }
                    }
                    Rule::Field(from, to) => rename_field(m, from, to),
                }
            }
        }
        batch
    }
}

/// Renames in place so field order is kept; an existing field named `to` is replaced.
fn rename_field(m: &mut Metric, from: &str, to: &Str) {
    if from == to {
        return;
    }
    let Some(i) = m.fields.iter().position(|(k, _)| k == from) else {
        return;
    };
    m.fields[i].0 = to.clone();
    if let Some(j) = m
        .fields
        .iter()
        .position(|(k, _)| k == to)
        .filter(|&j| j != i)
    {
        m.fields.remove(j);
    }
}

fn rule(i: usize, r: Replace) -> Result<Rule, ConfigError> {
    let err = |message: String| ConfigError {
        path: vec!["replace".into(), i.to_string()],
        message,
    };
    if r.dest.is_empty() {
        return Err(err("`dest` is required and must not be empty".into()));
    }
    let to: Str = r.dest.into();
    let set: Vec<_> = [
        r.measurement
            .map(|s| Rule::Measurement(s.into(), to.clone())),
        r.tag.map(|s| Rule::Tag(s.into(), to.clone())),
        r.field.map(|s| Rule::Field(s.into(), to.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();
    match <[Rule; 1]>::try_from(set) {
        Ok([rule]) => Ok(rule),
        Err(_) => Err(err(
            "set exactly one of `measurement`, `tag` or `field` in each [[replace]]".into(),
        )),
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let cfg: Config = parse_config(table)?;
    let rules = cfg
        .replace
        .into_iter()
        .enumerate()
        .map(|(i, r)| rule(i, r))
        .collect::<Result<_, _>>()?;
    Ok(Box::new(Rename { rules }))
}

pub const SPEC: ProcessorSpec = ProcessorSpec {
    name: "rename",
    description: "Rename measurements, tags and fields",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldValue;

    fn processor(cfg: &str) -> Box<dyn Processor> {
        let t: toml::Table = toml::from_str(cfg).unwrap();
        build(t, &BuildContext::default()).unwrap()
    }

    const CFG: &str = r#"
        [[replace]]
        measurement = "network_interface_throughput"
        dest = "throughput"
        [[replace]]
        tag = "hostname"
        dest = "host"
        [[replace]]
        field = "lower"
        dest = "min"
        [[replace]]
        field = "upper"
        dest = "max"
    "#;

    #[test]
    fn renames_measurement_tag_and_fields_in_place() {
        let m = Metric::new("network_interface_throughput", 7)
            .with_tag("hostname", "a")
            .with_tag("z", "1")
            .with_field("lower", 1i64)
            .with_field("mid", 2i64)
            .with_field("upper", 3i64);
        let out = processor(CFG).apply(vec![m]);
        let m = &out[0];
        assert_eq!(m.name, "throughput");
        assert_eq!(
            m.tags,
            [("host".into(), "a".into()), ("z".into(), "1".into())]
        );
        let fields: Vec<_> = m.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(fields, ["min", "mid", "max"]);
        assert_eq!(m.time, 7);
    }

    #[test]
    fn non_matching_metrics_pass_unchanged() {
        let m = Metric::new("other", 0)
            .with_tag("host", "a")
            .with_field("v", 1i64);
        let out = processor(CFG).apply(vec![m.clone()]);
        assert_eq!(out, [m]);
    }

    #[test]
    fn renaming_onto_an_existing_field_replaces_it() {
        let p = &mut processor("[[replace]]\nfield = \"a\"\ndest = \"b\"");
        let m = Metric::new("m", 0)
            .with_field("b", 1i64)
            .with_field("a", 2i64);
        let out = p.apply(vec![m]);
        assert_eq!(out[0].fields, [("b".into(), FieldValue::Int(2))]);
    }

    #[test]
    fn rules_chain_in_order() {
        let p = &mut processor(
            "[[replace]]\ntag = \"a\"\ndest = \"b\"\n[[replace]]\ntag = \"b\"\ndest = \"c\"",
        );
        let out = p.apply(vec![
            Metric::new("m", 0).with_tag("a", "x").with_field("v", 1i64),
        ]);
        assert_eq!(out[0].tag("c"), Some("x"));
        assert_eq!(out[0].tags.len(), 1);
    }

    #[test]
    fn bad_rules_are_config_errors() {
        for bad in [
            "[[replace]]\ntag = \"a\"",
            "[[replace]]\ndest = \"a\"",
            "[[replace]]\ntag = \"a\"\nfield = \"b\"\ndest = \"c\"",
            "[[replace]]\ntags = \"a\"\ndest = \"c\"",
        ] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            let err = build(t, &BuildContext::default()).err().expect(bad);
            let BuildError::Config(e) = err else { panic!() };
            assert_eq!(e.path[0], "replace", "{bad}");
        }
    }
}
