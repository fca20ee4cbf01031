//! Telegraf's graphite templates, as the statsd input uses them: `"[filter] template [tags]"`
//! maps the dot-separated parts of a bucket name to measurement, field and tags.

use crate::model::Str;

struct Template {
    /// Dot-separated glob parts (`*` matches one part); empty for the default template.
    filter: Vec<String>,
    parts: Vec<String>,
    tags: Vec<(Str, Str)>,
}

pub struct Templates {
    list: Vec<Template>,
    default: Template,
    separator: String,
}

fn parse_template(parts: &str, filter: &str, tags: &str) -> Result<Template, String> {
    let mut t = Template {
        filter: if filter.is_empty() {
            vec![]
        } else {
            filter.split('.').map(String::from).collect()
        },
        parts: parts.split('.').map(String::from).collect(),
        tags: Vec::new(),
    };
    for kv in tags.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("template tag {kv:?} is not key=value"))?;
        t.tags.push((k.into(), v.into()));
    }
    if !t.parts.iter().any(|p| p.starts_with("measurement")) {
        return Err(format!("template {parts:?} has no measurement part"));
    }
    Ok(t)
}

impl Templates {
    pub fn new(specs: &[String], separator: &str) -> Result<Templates, String> {
        let mut list = Vec::new();
        let mut default = parse_template("measurement*", "", "")?;
        for spec in specs {
            let words: Vec<&str> = spec.split_whitespace().collect();
            let t = match words[..] {
                [t] => parse_template(t, "", "")?,
                [a, b] if b.contains('=') => parse_template(a, "", b)?,
                [f, t] => parse_template(t, f, "")?,
                [f, t, tags] => parse_template(t, f, tags)?,
                _ => {
                    return Err(format!(
                        "template {spec:?}: expected \"[filter] template [tags]\""
                    ));
                }
            };
            if t.filter.is_empty() {
                default = t;
            } else {
                list.push(t);
            }
        }
        // Most specific filter first: more parts, then fewer wildcards.
        list.sort_by_key(|t| {
            let wild = t.filter.iter().filter(|p| p.contains('*')).count();
            (std::cmp::Reverse(t.filter.len()), wild)
        });
        Ok(Templates {
            list,
            default,
            separator: separator.to_string(),
        })
    }

    /// Measurement, field ("value" unless the template names one) and tags for a bucket.
    pub fn apply(&self, bucket: &str) -> (Str, Str, Vec<(Str, Str)>) {
        let parts: Vec<&str> = bucket.split('.').collect();
        let t = self
            .list
            .iter()
            .find(|t| matches(&t.filter, &parts))
            .unwrap_or(&self.default);
        let (mut measurement, mut field) = (Vec::new(), Vec::new());
        let mut tags: Vec<(Str, Vec<&str>)> = Vec::new();
        for (i, tp) in t.parts.iter().enumerate() {
            if i >= parts.len() {
                break;
            }
            match tp.as_str() {
                "measurement" => measurement.push(parts[i]),
                "measurement*" => {
                    measurement.extend(&parts[i..]);
                    break;
                }
                "field" => field.push(parts[i]),
                "field*" => {
                    field.extend(&parts[i..]);
                    break;
                }
                "" => {}
                tag => match tags.iter_mut().find(|(k, _)| k == tag) {
                    Some((_, v)) => v.push(parts[i]),
                    None => tags.push((tag.into(), vec![parts[i]])),
                },
            }
        }
        let mut out_tags: Vec<(Str, Str)> = t.tags.clone();
        for (k, v) in tags {
            out_tags.push((k, v.join(&self.separator).into()));
        }
        let name = if measurement.is_empty() {
            bucket.into()
        } else {
            measurement.join(&self.separator).into()
        };
        let field = if field.is_empty() {
            "value".into()
        } else {
            field.join(&self.separator).into()
        };
        (name, field, out_tags)
    }
}

fn matches(filter: &[String], parts: &[&str]) -> bool {
    if filter.len() > parts.len() {
        return false;
    }
    // A filter matches a prefix of the parts; its last `*` part may match the rest.
    filter.iter().zip(parts).all(|(f, p)| {
        glob::Pattern::new(f)
            .map(|g| g.matches(p))
            .unwrap_or(f == p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_joins_with_the_separator() {
        let t = Templates::new(&[], "_").unwrap();
        let (m, f, tags) = t.apply("users.current.den001");
        assert_eq!((m.as_str(), f.as_str()), ("users_current_den001", "value"));
        assert!(tags.is_empty());
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
        let (m, f, tags) = t.apply("cpu.idle.us-west");
        assert_eq!((m.as_str(), f.as_str()), ("cpu_idle", "value"));
        assert_eq!(tags, vec![("region".into(), "us-west".into())]);
        let (m, f, tags) = t.apply("cpu.load.web1.shortterm");
        assert_eq!((m.as_str(), f.as_str()), ("cpu_load", "shortterm"));
        assert_eq!(tags, vec![("host".into(), "web1".into())]);
        let (m, _, tags) = t.apply("disk.sda");
        assert_eq!(m.as_str(), "disk");
        assert_eq!(
            tags,
            vec![("dc".into(), "eu".into()), ("host".into(), "sda".into())]
        );
        let (m, f, _) = t.apply("mem.free.bytes");
        assert_eq!((m.as_str(), f.as_str()), ("mem", "free_bytes"));
        assert!(Templates::new(&["a b c d".into()], "_").is_err());
        assert!(Templates::new(&["host.field".into()], "_").is_err());
    }
}
