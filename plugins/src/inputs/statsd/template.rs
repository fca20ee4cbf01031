//! Telegraf's graphite templates, as the statsd input uses them:
//! `"[separator] [filter] template [tag=value,...]"` maps the parts of a bucket name to the
//! measurement, the field and tags.
//!
//! The semantics are Telegraf's (its `internal/templating`): the filter is matched part by part
//! against the bucket, an exact part before `*` (a `*` part matches any one part, other glob
//! characters are literal), and a filter matches a bucket that has more parts than it. Without
//! a matching filter the template without filter applies, by default `measurement*`. Parts
//! the template names the same are joined with `metric_separator`; `measurement*` and `field*`
//! take the rest of the parts.

use crate::model::Str;

struct Template {
    /// Splits the bucket (and the template and filter): "." unless the spec says otherwise.
    separator: String,
    parts: Vec<String>,
    tags: Vec<(Str, Str)>,
}

/// A node of the filter tree: children sorted, a `*` child last.
#[derive(Default)]
struct Node {
    value: String,
    children: Vec<Node>,
    template: Option<usize>,
}

impl Node {
    fn insert(&mut self, parts: &[&str], template: usize) {
        let Some((first, rest)) = parts.split_first() else {
            self.template = Some(template);
            return;
        };
        if let Some(child) = self.children.iter_mut().find(|c| c.value == *first) {
            child.insert(rest, template);
            return;
        }
        let mut child = Node {
            value: first.to_string(),
            ..Node::default()
        };
        child.insert(rest, template);
        self.children.push(child);
        self.children
            .sort_by(|a, b| (a.value == "*", &a.value).cmp(&(b.value == "*", &b.value)));
    }

    fn search(&self, parts: &[&str]) -> Option<usize> {
        let Some((first, rest)) = parts.split_first() else {
            return self.template;
        };
        if self.children.is_empty() {
            return self.template;
        }
        let wildcard = self.children.last().filter(|c| c.value == "*");
        if let Some(found) = self
            .children
            .iter()
            .find(|c| c.value != "*" && c.value == *first)
            .and_then(|c| c.search(rest))
        {
            return Some(found);
        }
        // As Telegraf: once a `*` child exists, its answer is final (even none).
        match wildcard {
            Some(w) => w.search(rest),
            None => self.template,
        }
    }
}

pub struct Templates {
    templates: Vec<Template>,
    root: Node,
    /// The separator the bucket is split with to search the tree.
    root_separator: String,
    default: usize,
    joiner: String,
}

/// The parts of one template spec.
struct Spec<'a> {
    separator: &'a str,
    filter: &'a str,
    template: &'a str,
    tags: &'a str,
}

fn parse_spec(spec: &str) -> Result<Spec<'_>, String> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let mut s = Spec {
        separator: ".",
        filter: "",
        template: "",
        tags: "",
    };
    match words[..] {
        [t] => s.template = t,
        [sep, f, t, tags] => (s.separator, s.filter, s.template, s.tags) = (sep, f, t, tags),
        [t, tags] if tags.contains('=') => (s.template, s.tags) = (t, tags),
        [f, t, tags] if tags.contains('=') => (s.filter, s.template, s.tags) = (f, t, tags),
        [f, t] => (s.filter, s.template) = (f, t),
        [sep, f, t] => (s.separator, s.filter, s.template) = (sep, f, t),
        _ => {
            return Err(format!(
                "template {spec:?}: expected \"[separator] [filter] template [tag=value,...]\""
            ));
        }
    }
    Ok(s)
}

fn new_template(spec: &Spec) -> Result<Template, String> {
    let parts: Vec<String> = spec
        .template
        .split(spec.separator)
        .map(String::from)
        .collect();
    if !parts.iter().any(|p| p.starts_with("measurement")) {
        return Err(format!(
            "template {:?} has no measurement part",
            spec.template
        ));
    }
    if parts.iter().any(|p| p == "measurement*") && parts.iter().any(|p| p == "field*") {
        return Err(format!(
            "template {:?}: either 'field*' or 'measurement*' can be used, not both",
            spec.template
        ));
    }
    let mut tags = Vec::new();
    for kv in spec.tags.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("template tag {kv:?} is not key=value"))?;
        tags.push((k.into(), v.into()));
    }
    Ok(Template {
        separator: spec.separator.to_string(),
        parts,
        tags,
    })
}

/// What a template makes of a bucket name.
#[derive(Debug, PartialEq)]
pub struct Applied {
    pub measurement: String,
    /// Empty when the template names no field.
    pub field: String,
    pub tags: Vec<(Str, Str)>,
}

impl Templates {
    pub fn new(specs: &[String], joiner: &str) -> Result<Templates, String> {
        let mut parsed = Vec::new();
        for spec in specs {
            if spec.trim().is_empty() {
                continue;
            }
            let s = parse_spec(spec)?;
            if s.separator.is_empty() {
                return Err(format!("template {spec:?}: empty separator"));
            }
            parsed.push(s);
        }
        // Telegraf's insertion order: templates without filter first, then by number of
        // parts; a later template for the same filter replaces an earlier one.
        parsed.sort_by_key(|s| (!s.filter.is_empty(), s.template.split(s.separator).count()));
        let mut templates = vec![new_template(&parse_spec("measurement*")?)?];
        let mut t = Templates {
            templates: Vec::new(),
            root: Node::default(),
            root_separator: ".".into(),
            default: 0,
            joiner: joiner.to_string(),
        };
        for s in &parsed {
            templates.push(new_template(s)?);
            let i = templates.len() - 1;
            t.root_separator = s.separator.to_string();
            if s.filter.is_empty() {
                t.default = i;
            } else {
                let parts: Vec<&str> = s.filter.split(s.separator).collect();
                t.root.insert(&parts, i);
            }
        }
        t.templates = templates;
        Ok(t)
    }

    /// Measurement, field and tags for a bucket name (without its `,tag=value` part).
    pub fn apply(&self, name: &str) -> Applied {
        let parts = split(name, &self.root_separator);
        let t = &self.templates[self.root.search(&parts).unwrap_or(self.default)];
        let fields = if t.separator == self.root_separator {
            parts
        } else {
            split(name, &t.separator)
        };
        let (mut measurement, mut field) = (Vec::new(), Vec::new());
        let mut tags: Vec<(Str, Vec<&str>)> = t
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), vec![v.as_str()]))
            .collect();
        for (i, tp) in t.parts.iter().enumerate() {
            let Some(value) = fields.get(i) else { continue };
            match tp.as_str() {
                "" => {}
                "measurement" => measurement.push(*value),
                "field" => field.push(*value),
                // Greedy parts take the rest, and (as in Telegraf) later parts still apply.
                "measurement*" => measurement.extend(&fields[i..]),
                "field*" => field.extend(&fields[i..]),
                tag => match tags.iter_mut().find(|(k, _)| k == tag) {
                    Some((_, v)) => v.push(value),
                    None => tags.push((tag.into(), vec![value])),
                },
            }
        }
        Applied {
            measurement: measurement.join(&self.joiner),
            field: field.join(&self.joiner),
            tags: tags
                .into_iter()
                .map(|(k, v)| (k, v.join(&self.joiner).into()))
                .collect(),
        }
    }
}

/// Splits on the separator; a one-byte separator (the usual ".") splits by byte, cheaper
/// than a substring search.
fn split<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    match sep.as_bytes() {
        [b] if b.is_ascii() => s.split(*b as char).collect(),
        _ => s.split(sep).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(t: &Templates, name: &str) -> (String, String, Vec<(String, String)>) {
        let a = t.apply(name);
        let mut tags: Vec<(String, String)> = a
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tags.sort();
        (a.measurement, a.field, tags)
    }

    fn tag(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn default_joins_with_the_separator() {
        let t = Templates::new(&[], "_").unwrap();
        assert_eq!(
            apply(&t, "users.current.den001"),
            ("users_current_den001".into(), "".into(), vec![])
        );
    }

    #[test]
    fn filters_fields_and_tags() {
        let t = Templates::new(
            &[
                "cpu.* measurement.measurement.region".into(),
                "cpu.load.* measurement.measurement.host.field".into(),
                "measurement.host dc=eu".into(),
                "mem.* measurement.field*".into(),
            ],
            "_",
        )
        .unwrap();
        assert_eq!(
            apply(&t, "cpu.idle.us-west"),
            ("cpu_idle".into(), "".into(), vec![tag("region", "us-west")])
        );
        assert_eq!(
            apply(&t, "cpu.load.web1.shortterm"),
            (
                "cpu_load".into(),
                "shortterm".into(),
                vec![tag("host", "web1")]
            )
        );
        assert_eq!(
            apply(&t, "disk.sda"),
            (
                "disk".into(),
                "".into(),
                vec![tag("dc", "eu"), tag("host", "sda")]
            )
        );
        assert_eq!(
            apply(&t, "mem.free.bytes"),
            ("mem".into(), "free_bytes".into(), vec![])
        );
        assert!(Templates::new(&["a b c d e".into()], "_").is_err());
        assert!(Templates::new(&["host.field".into()], "_").is_err());
        assert!(Templates::new(&["measurement*.field*".into()], "_").is_err());
        // Two words without "=": filter and template, and "dc" has no measurement.
        assert!(Templates::new(&["measurement dc".into()], "_").is_err());
        assert!(Templates::new(&["x measurement dc=".into()], "_").is_ok());
        assert!(Templates::new(&["x measurement =eu".into()], "_").is_err());
    }

    /// Telegraf's matching: an exact part before `*`, a filter matches longer buckets, and
    /// other glob characters are literal.
    #[test]
    fn filter_tree_matches_as_telegraf() {
        let t = Templates::new(
            &[
                "servers.localhost .host.measurement*".into(),
                "servers.* .host.measurement.field".into(),
                "*.localhost measurement.host".into(),
                "cp? measurement.zone".into(),
                "measurement.measurement.rest*".into(),
            ],
            ".",
        )
        .unwrap();
        assert_eq!(
            apply(&t, "servers.localhost.cpu.idle"),
            ("cpu.idle".into(), "".into(), vec![tag("host", "localhost")])
        );
        assert_eq!(
            apply(&t, "servers.web1.cpu.idle"),
            ("cpu".into(), "idle".into(), vec![tag("host", "web1")])
        );
        assert_eq!(
            apply(&t, "db.localhost.x"),
            ("db".into(), "".into(), vec![tag("host", "localhost")])
        );
        // "cp?" is not a glob: "cpu.a" falls to the default template.
        assert_eq!(
            apply(&t, "cpu.a.b"),
            ("cpu.a".into(), "".into(), vec![tag("rest*", "b")])
        );
        assert_eq!(
            apply(&t, "cp?.eu"),
            ("cp?".into(), "".into(), vec![tag("zone", "eu")])
        );
        // A filter longer than the bucket does not match it.
        assert_eq!(apply(&t, "servers").0, "servers");
    }

    #[test]
    fn custom_separator_and_greedy_parts_keep_going() {
        let t = Templates::new(&["_ app_* measurement_host".into()], "-").unwrap();
        // The filter and the template split on "_"; the tree is searched with it.
        assert_eq!(
            apply(&t, "app_web1"),
            ("app".into(), "".into(), vec![tag("host", "web1")])
        );
        // Parts after measurement* still apply, as Telegraf's loop goes on.
        let t = Templates::new(&["greedy.* measurement*.region".into()], "-").unwrap();
        assert_eq!(
            apply(&t, "greedy.a.b"),
            ("greedy-a-b".into(), "".into(), vec![tag("region", "a")])
        );
    }
}
