//! Per-plugin metric filters: namepass/namedrop, fieldinclude/fieldexclude (and the old
//! fieldpass/fielddrop), tagpass/tagdrop, taginclude/tagexclude, with glob patterns.
//!
//! Semantics are Telegraf's: a metric is selected when its name passes namepass (if set) and
//! not namedrop, and its tags pass tagpass (some listed tag has a matching value) and not
//! tagdrop. Trimming removes fields and tags by include/exclude; a metric left without fields
//! is dropped.

use sonde_plugins::Metric;

/// The filter options as written in a plugin's table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterConfig {
    pub namepass: Vec<String>,
    pub namedrop: Vec<String>,
    /// Characters `*` does not cross in namepass/namedrop (`**` does), e.g. ".".
    pub namepass_separator: String,
    pub namedrop_separator: String,
    pub fieldinclude: Vec<String>,
    pub fieldexclude: Vec<String>,
    pub taginclude: Vec<String>,
    pub tagexclude: Vec<String>,
    /// Tag key -> value globs.
    pub tagpass: Vec<(String, Vec<String>)>,
    pub tagdrop: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    namepass: Option<GlobSet>,
    namedrop: Option<GlobSet>,
    tagpass: Vec<(String, GlobSet)>,
    tagdrop: Vec<(String, GlobSet)>,
    fieldinclude: Option<GlobSet>,
    fieldexclude: Option<GlobSet>,
    taginclude: Option<GlobSet>,
    tagexclude: Option<GlobSet>,
}

impl Filter {
    /// Compiles every pattern once. Fails on a malformed glob (e.g. an unclosed `[`).
    pub fn new(cfg: &FilterConfig) -> Result<Filter, String> {
        let set = |p: &[String], seps: &str| GlobSet::new(p, seps);
        let tags = |t: &[(String, Vec<String>)]| -> Result<Vec<(String, GlobSet)>, String> {
            t.iter()
                .map(|(k, v)| Ok((k.clone(), GlobSet::new(v, "")?.unwrap_or_default())))
                .collect()
        };
        Ok(Filter {
            namepass: set(&cfg.namepass, &cfg.namepass_separator)?,
            namedrop: set(&cfg.namedrop, &cfg.namedrop_separator)?,
            tagpass: tags(&cfg.tagpass)?,
            tagdrop: tags(&cfg.tagdrop)?,
            fieldinclude: set(&cfg.fieldinclude, "")?,
            fieldexclude: set(&cfg.fieldexclude, "")?,
            taginclude: set(&cfg.taginclude, "")?,
            tagexclude: set(&cfg.tagexclude, "")?,
        })
    }

    /// True when the filter has no conditions at all (the common case: skip work).
    pub fn is_empty(&self) -> bool {
        self.namepass.is_none()
            && self.namedrop.is_none()
            && self.tagpass.is_empty()
            && self.tagdrop.is_empty()
            && self.fieldinclude.is_none()
            && self.fieldexclude.is_none()
            && self.taginclude.is_none()
            && self.tagexclude.is_none()
    }

    /// namepass/namedrop/tagpass/tagdrop: does the metric pass to this plugin?
    pub fn selects(&self, metric: &Metric) -> bool {
        passes(self.namepass.as_ref(), self.namedrop.as_ref(), &metric.name)
            && (self.tagpass.is_empty() || tags_match(&self.tagpass, metric))
            && (self.tagdrop.is_empty() || !tags_match(&self.tagdrop, metric))
    }

    /// fieldinclude/fieldexclude/taginclude/tagexclude: trims the metric in place. Returns
    /// false when no field is left (the metric must then be dropped).
    pub fn trim(&self, metric: &mut Metric) -> bool {
        if self.fieldinclude.is_some() || self.fieldexclude.is_some() {
            let (inc, exc) = (self.fieldinclude.as_ref(), self.fieldexclude.as_ref());
            metric.fields.retain(|(k, _)| passes(inc, exc, k));
        }
        if self.taginclude.is_some() || self.tagexclude.is_some() {
            let (inc, exc) = (self.taginclude.as_ref(), self.tagexclude.as_ref());
            metric.tags.retain(|(k, _)| passes(inc, exc, k));
        }
        !metric.fields.is_empty()
    }
}

/// Telegraf's include/exclude rule: in the include list (if any) and not in the exclude list.
fn passes(include: Option<&GlobSet>, exclude: Option<&GlobSet>, key: &str) -> bool {
    include.is_none_or(|g| g.matches(key)) && !exclude.is_some_and(|g| g.matches(key))
}

/// True when any of the metric's tags has a listed key and a matching value.
fn tags_match(filters: &[(String, GlobSet)], metric: &Metric) -> bool {
    filters
        .iter()
        .any(|(key, globs)| metric.tag(key).is_some_and(|v| globs.matches(v)))
}

/// Checks one glob pattern, for config errors that point at the bad value.
pub fn validate_glob(pattern: &str) -> Result<(), String> {
    for p in expand_braces(pattern)? {
        Glob::compile(&p)?;
    }
    Ok(())
}

/// A list of globs; matches when any does.
#[derive(Clone, Debug, Default)]
struct GlobSet {
    globs: Vec<Glob>,
    /// Characters `*` and `?` do not match.
    separators: String,
}

impl GlobSet {
    /// `None` for an empty list: no condition.
    fn new(patterns: &[String], separators: &str) -> Result<Option<GlobSet>, String> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut globs = Vec::new();
        for p in patterns {
            for alt in expand_braces(p)? {
                globs.push(Glob::compile(&alt)?);
            }
        }
        Ok(Some(GlobSet {
            globs,
            separators: separators.to_string(),
        }))
    }

    fn matches(&self, s: &str) -> bool {
        self.globs.iter().any(|g| match g {
            Glob::Exact(e) => e == s,
            Glob::Pattern(toks) => match_tokens(toks, s, &self.separators),
        })
    }
}

#[derive(Clone, Debug)]
enum Glob {
    Exact(String),
    Pattern(Vec<Tok>),
}

#[derive(Clone, Debug)]
enum Tok {
    Char(char),
    /// `?`
    Any,
    /// `*`: any run of non-separator characters.
    Star,
    /// `**`: any run of characters, separators included.
    SuperStar,
    /// `[abc]`, `[a-z]`, `[!x]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    fn compile(p: &str) -> Result<Glob, String> {
        if !p.contains(['*', '?', '[', '\\']) {
            return Ok(Glob::Exact(p.to_string()));
        }
        let mut toks = Vec::new();
        let mut chars = p.chars().peekable();
        while let Some(c) = chars.next() {
            toks.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Tok::SuperStar
                }
                '*' => Tok::Star,
                '?' => Tok::Any,
                '\\' => Tok::Char(
                    chars
                        .next()
                        .ok_or_else(|| format!("invalid glob {p:?}: trailing '\\'"))?,
                ),
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        let lo = match chars.next() {
                            None => return Err(format!("invalid glob {p:?}: unclosed '['")),
                            Some(']') if !ranges.is_empty() => break,
                            Some('\\') => chars
                                .next()
                                .ok_or_else(|| format!("invalid glob {p:?}: unclosed '['"))?,
                            Some(c) => c,
                        };
                        let hi = if chars.next_if_eq(&'-').is_some() {
                            match chars.next() {
                                Some(']') | None => {
                                    return Err(format!(
                                        "invalid glob {p:?}: bad range in '[...]'"
                                    ));
                                }
                                Some(h) => h,
                            }
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    Tok::Class { negated, ranges }
                }
                c => Tok::Char(c),
            });
        }
        Ok(Glob::Pattern(toks))
    }
}

/// Matches `s` against the compiled pattern by simulating the pattern as an NFA: the set of
/// pattern positions reachable after each character. O(len(s) × len(pattern)) time whatever
/// the input, so a hostile tag value cannot make a pattern like `a*a*a*a*b` backtrack
/// exponentially (a recursive matcher took minutes on 10k characters).
fn match_tokens(toks: &[Tok], s: &str, seps: &str) -> bool {
    let n = toks.len();
    // live[i]: the pattern is matched up to token i (exclusive).
    let mut live = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    live[0] = true;
    close_stars(toks, &mut live);
    for c in s.chars() {
        next.iter_mut().for_each(|b| *b = false);
        let mut any = false;
        for (i, tok) in toks.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let (stay, advance) = match tok {
                Tok::SuperStar => (true, false),
                Tok::Star => (!seps.contains(c), false),
                Tok::Char(x) => (false, *x == c),
                Tok::Any => (false, !seps.contains(c)),
                Tok::Class { negated, ranges } => (
                    false,
                    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
                ),
            };
            if stay {
                next[i] = true;
                any = true;
            }
            if advance {
                next[i + 1] = true;
                any = true;
            }
        }
        if !any {
            return false;
        }
        close_stars(toks, &mut next);
        std::mem::swap(&mut live, &mut next);
    }
    live[n]
}

/// A star may match nothing: a live position before a star makes the one after it live.
fn close_stars(toks: &[Tok], live: &mut [bool]) {
    for (i, tok) in toks.iter().enumerate() {
        if live[i] && matches!(tok, Tok::Star | Tok::SuperStar) {
            live[i + 1] = true;
        }
    }
}

/// `{a,b}` alternatives, expanded into plain patterns (`cpu{0,1}` -> `cpu0`, `cpu1`).
fn expand_braces(p: &str) -> Result<Vec<String>, String> {
    let Some(open) = p.find('{') else {
        return Ok(vec![p.to_string()]);
    };
    let mut depth = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, c) in p[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let close = close.ok_or_else(|| format!("invalid glob {p:?}: unclosed '{{'"))?;
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alt = &p[w[0] + 1..w[1]];
        out.extend(expand_braces(&format!(
            "{}{alt}{}",
            &p[..open],
            &p[close + 1..]
        ))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn metric() -> Metric {
        Metric::new("cpu", 0)
            .with_tag("cpu", "cpu0")
            .with_tag("host", "web1")
            .with_field("usage_user", 1.0)
            .with_field("usage_idle", 2.0)
            .with_field("time_user", 3i64)
    }

    fn filter(f: impl FnOnce(&mut FilterConfig)) -> Filter {
        let mut cfg = FilterConfig::default();
        f(&mut cfg);
        Filter::new(&cfg).unwrap()
    }

    fn glob(p: &str, s: &str) -> bool {
        GlobSet::new(&[p.to_string()], "")
            .unwrap()
            .unwrap()
            .matches(s)
    }

    #[test]
    fn globs() {
        assert!(glob("cpu", "cpu"));
        assert!(!glob("cpu", "cpu0"));
        assert!(glob("cpu*", "cpu0"));
        assert!(glob("*", ""));
        assert!(glob("c?u", "cpu"));
        assert!(!glob("c?u", "cu"));
        assert!(glob("cpu[0-3]", "cpu2"));
        assert!(!glob("cpu[0-3]", "cpu4"));
        assert!(glob("cpu[!0-3]", "cpu4"));
        assert!(glob("*_user", "usage_user"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("disk{io,}", "diskio"));
        assert!(glob("disk{io,}", "disk"));
        assert!(!glob("disk{io,}", "disks"));
        assert!(glob("a\\*", "a*"));
        assert!(!glob("a\\*", "ab"));
        assert!(glob("é*", "été"));
    }

    #[test]
    fn separators_stop_single_stars() {
        let set = GlobSet::new(&v(&["foo.*"]), ".").unwrap().unwrap();
        assert!(set.matches("foo.bar"));
        assert!(!set.matches("foo.bar.baz"));
        let set = GlobSet::new(&v(&["foo.**"]), ".").unwrap().unwrap();
        assert!(set.matches("foo.bar.baz"));
        let set = GlobSet::new(&v(&["foo?bar"]), ".").unwrap().unwrap();
        assert!(!set.matches("foo.bar"));
    }

    #[test]
    fn bad_globs_are_errors() {
        assert_eq!(
            validate_glob("cpu[0-"),
            Err("invalid glob \"cpu[0-\": bad range in '[...]'".into())
        );
        assert_eq!(
            validate_glob("cpu[0"),
            Err("invalid glob \"cpu[0\": unclosed '['".into())
        );
        assert!(validate_glob("a{b,c").is_err());
        assert!(validate_glob("a\\").is_err());
        assert!(validate_glob("[]]").is_ok());
    }

    #[test]
    fn empty_filter_passes_everything() {
        let f = Filter::default();
        assert!(f.is_empty());
        let mut m = metric();
        assert!(f.selects(&m));
        assert!(f.trim(&mut m));
        assert_eq!(m, metric());
        assert!(Filter::new(&FilterConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn namepass_and_namedrop() {
        let f = filter(|c| c.namepass = v(&["cp*", "mem"]));
        assert!(!f.is_empty());
        assert!(f.selects(&metric()));
        assert!(!f.selects(&Metric::new("disk", 0)));
        let f = filter(|c| c.namedrop = v(&["cpu"]));
        assert!(!f.selects(&metric()));
        assert!(f.selects(&Metric::new("disk", 0)));
        // Both: must pass namepass and not be dropped.
        let f = filter(|c| {
            c.namepass = v(&["c*"]);
            c.namedrop = v(&["cpu"]);
        });
        assert!(!f.selects(&metric()));
        assert!(f.selects(&Metric::new("conntrack", 0)));
    }

    #[test]
    fn namepass_separator() {
        let f = filter(|c| {
            c.namepass = v(&["net.*"]);
            c.namepass_separator = ".".into();
        });
        assert!(f.selects(&Metric::new("net.eth0", 0)));
        assert!(!f.selects(&Metric::new("net.eth0.rx", 0)));
    }

    #[test]
    fn tagpass_matches_any_listed_tag() {
        let f = filter(|c| {
            c.tagpass = vec![
                ("cpu".into(), v(&["cpu1", "cpu2"])),
                ("host".into(), v(&["web*"])),
            ]
        });
        assert!(
            f.selects(&metric()),
            "host matches even though cpu does not"
        );
        let f = filter(|c| c.tagpass = vec![("cpu".into(), v(&["cpu1"]))]);
        assert!(!f.selects(&metric()));
        // A metric without the tag does not pass tagpass.
        assert!(!f.selects(&Metric::new("cpu", 0)));
    }

    #[test]
    fn tagdrop_drops_on_any_match() {
        let f = filter(|c| c.tagdrop = vec![("host".into(), v(&["web?"]))]);
        assert!(!f.selects(&metric()));
        assert!(f.selects(&Metric::new("cpu", 0).with_tag("host", "db1")));
        // A metric without the tag is not dropped.
        assert!(f.selects(&Metric::new("cpu", 0)));
    }

    #[test]
    fn name_and_tag_conditions_combine() {
        let f = filter(|c| {
            c.namepass = v(&["cpu"]);
            c.tagdrop = vec![("cpu".into(), v(&["cpu0"]))];
        });
        assert!(!f.selects(&metric()));
        assert!(f.selects(&Metric::new("cpu", 0).with_tag("cpu", "cpu1")));
        assert!(!f.selects(&Metric::new("mem", 0).with_tag("cpu", "cpu1")));
    }

    #[test]
    fn fieldinclude_and_fieldexclude() {
        let f = filter(|c| c.fieldinclude = v(&["usage_*"]));
        let mut m = metric();
        assert!(f.trim(&mut m));
        let keys: Vec<_> = m.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["usage_user", "usage_idle"]);

        let f = filter(|c| {
            c.fieldinclude = v(&["usage_*"]);
            c.fieldexclude = v(&["*_idle"]);
        });
        let mut m = metric();
        assert!(f.trim(&mut m));
        let keys: Vec<_> = m.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["usage_user"]);
        // Tags are untouched by field filters.
        assert_eq!(m.tags.len(), 2);
    }

    #[test]
    fn metric_without_fields_left_is_dropped() {
        let f = filter(|c| c.fieldexclude = v(&["*"]));
        let mut m = metric();
        assert!(!f.trim(&mut m));
        assert!(m.fields.is_empty());
    }

    #[test]
    fn taginclude_and_tagexclude() {
        let f = filter(|c| c.taginclude = v(&["host"]));
        let mut m = metric();
        assert!(f.trim(&mut m));
        assert_eq!(m.tags, vec![("host".into(), "web1".into())]);
        assert_eq!(m.fields.len(), 3);

        let f = filter(|c| c.tagexclude = v(&["h*"]));
        let mut m = metric();
        assert!(f.trim(&mut m));
        assert_eq!(m.tags, vec![("cpu".into(), "cpu0".into())]);
    }

    #[test]
    fn hostile_values_do_not_backtrack_exponentially() {
        // A backtracking matcher needs about C(10000, 7) steps here; this one 10000 × 15.
        let value = "a".repeat(10_000);
        assert!(!glob("a*a*a*a*a*a*a*b", &value));
        assert!(glob("a*a*a*a*a*a*a*a", &value));
        let set = GlobSet::new(&v(&["**a*a*a*a*a*a*b"]), ".")
            .unwrap()
            .unwrap();
        assert!(!set.matches(&"a.".repeat(5_000)));
        let f = filter(|c| c.tagpass = vec![("host".into(), v(&["*a*a*a*a*a*a*a*a*b"]))]);
        let m = Metric::new("cpu", 0)
            .with_tag("host", value.as_str())
            .with_field("v", 1.0);
        assert!(!f.selects(&m));
    }

    /// The plain recursive definition of a glob match: exponential, fine for short inputs.
    fn reference(toks: &[Tok], s: &[char], seps: &str) -> bool {
        let Some((tok, rest)) = toks.split_first() else {
            return s.is_empty();
        };
        match tok {
            Tok::Star | Tok::SuperStar => (0..=s.len()).any(|k| {
                (matches!(tok, Tok::SuperStar) || !s[..k].iter().any(|c| seps.contains(*c)))
                    && reference(rest, &s[k..], seps)
            }),
            _ => {
                let Some((&c, tail)) = s.split_first() else {
                    return false;
                };
                let ok = match tok {
                    Tok::Char(x) => *x == c,
                    Tok::Any => !seps.contains(c),
                    Tok::Class { negated, ranges } => {
                        ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                    }
                    Tok::Star | Tok::SuperStar => unreachable!(),
                };
                ok && reference(rest, tail, seps)
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_the_reference(
            pattern in "([ab.?*]|\\\\[*?]|\\[!?[ab]\\]|\\*\\*){0,8}",
            value in "[ab.*?]{0,12}",
            dotted in proptest::bool::ANY,
        ) {
            let seps = if dotted { "." } else { "" };
            let Ok(Glob::Pattern(toks)) = Glob::compile(&pattern) else {
                // Exact patterns (no wildcard) compare strings; nothing to check.
                return Ok(());
            };
            let chars: Vec<char> = value.chars().collect();
            let set = GlobSet::new(std::slice::from_ref(&pattern), seps).unwrap().unwrap();
            proptest::prop_assert_eq!(
                set.matches(&value),
                reference(&toks, &chars, seps),
                "pattern {:?} value {:?} seps {:?}", pattern, value, seps
            );
        }
    }
}
