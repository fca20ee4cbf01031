//! The subset of GJSON path syntax (github.com/tidwall/gjson) that `json_v2` configs use,
//! compiled once at config time and evaluated on `serde_json` values.
//!
//! Supported:
//! - dotted keys `a.b.c`, array indexes `list.0`, `\` escapes (`a\.b` is the key `a.b`),
//!   `*` / `?` wildcards in keys (the first matching key, in key order);
//! - `#` (an array's length), `list.#.key` (the key of every element: an array);
//! - queries `list.#(key==value)` (first match) and `list.#(key==value)#` (every match), with
//!   `==` (or `=`), `!=`, `<`, `<=`, `>`, `>=`, `%` (wildcard like) and `!%`, a value that is a
//!   quoted string, a number, `true`, `false` or `null`, `#(key)` (the key exists) and
//!   `#(==value)` on arrays of scalars; the left side is itself a path;
//! - `|` (apply the rest to the result as a whole, e.g. `list.#.a|0`);
//! - the modifiers `@this`, `@reverse`, `@keys`, `@values`, `@flatten`.
//!
//! Not supported, refused with an error when the path is compiled: multipaths (`[a,b]`,
//! `{a,b}`), literals (`!true`), JSON Lines (`..`), modifier arguments (`@x:{...}`), other
//! modifiers, `~` truthiness in queries, and nested queries inside a query's left side.

use std::borrow::Cow;

use serde_json::Value;

/// A compiled path.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    steps: Vec<Step>,
    text: String,
}

#[derive(Clone, Debug, PartialEq)]
struct Step {
    seg: Seg,
    /// Reached through `|` rather than `.`.
    pipe: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key {
        key: String,
        wild: bool,
    },
    /// `#`: the length, or (with more path after a `.`) a projection over the elements.
    Hash,
    Query {
        query: Box<Query>,
        all: bool,
    },
    Modifier(Modifier),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Modifier {
    This,
    Reverse,
    Keys,
    Values,
    Flatten,
}

#[derive(Clone, Debug, PartialEq)]
struct Query {
    /// `None` compares the element itself (`#(=="x")`).
    lhs: Option<Path>,
    cmp: Option<(Op, Value)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    NotLike,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// Compiles a path; the error says what is wrong or not supported.
    pub fn parse(text: &str) -> Result<Path, String> {
        let steps = parse_steps(text).map_err(|e| format!("path {text:?}: {e}"))?;
        Ok(Path {
            steps,
            text: text.to_string(),
        })
    }

    /// The path's text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The last plain key of the path (Telegraf's default field/tag name), else the path.
    pub fn last_key(&self) -> &str {
        self.steps
            .iter()
            .rev()
            .find_map(|s| match &s.seg {
                Seg::Key { key, .. } if key.parse::<usize>().is_err() => Some(key.as_str()),
                _ => None,
            })
            .unwrap_or(&self.text)
    }

    /// Evaluates the path on `v`; `None` when it matches nothing.
    pub fn get<'a>(&self, v: &'a Value) -> Option<Cow<'a, Value>> {
        eval(&self.steps, Cow::Borrowed(v))
    }
}

fn parse_steps(text: &str) -> Result<Vec<Step>, String> {
    if text.is_empty() {
        return Err("empty path".into());
    }
    if text.starts_with("..") {
        return Err("JSON Lines paths (`..`) are not supported".into());
    }
    let b = text.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    let mut pipe = false;
    loop {
        // One component, up to an unescaped `.` or `|` outside parentheses and quotes.
        let start = i;
        let mut depth = 0usize;
        let mut in_str = false;
        while i < b.len() {
            let c = b[i];
            if in_str {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_str = false;
                }
            } else if c == b'\\' {
                i += 1;
            } else if c == b'"' && depth > 0 {
                in_str = true;
            } else if c == b'(' {
                depth += 1;
            } else if c == b')' {
                depth = depth.checked_sub(1).ok_or("unbalanced `)`")?;
            } else if depth == 0 && (c == b'.' || c == b'|') {
                break;
            }
            i += 1;
        }
        if depth > 0 || in_str {
            return Err("unclosed query `#(`".into());
        }
        let end = i.min(b.len());
        let comp = &text[start..end];
        steps.push(Step {
            seg: parse_component(comp)?,
            pipe,
        });
        if i >= b.len() {
            break;
        }
        pipe = b[i] == b'|';
        i += 1;
        if i >= b.len() {
            return Err("path ends with a separator".into());
        }
    }
    Ok(steps)
}

fn parse_component(c: &str) -> Result<Seg, String> {
    if c.is_empty() {
        return Err("empty path component (two separators in a row)".into());
    }
    match c.as_bytes()[0] {
        b'[' | b'{' => return Err(format!("multipaths ({c}) are not supported")),
        b'!' => return Err(format!("literals ({c}) are not supported")),
        b'@' => {
            return Ok(Seg::Modifier(match c {
                "@this" => Modifier::This,
                "@reverse" => Modifier::Reverse,
                "@keys" => Modifier::Keys,
                "@values" => Modifier::Values,
                "@flatten" => Modifier::Flatten,
                _ if c.contains(':') => {
                    return Err(format!("modifier arguments ({c}) are not supported"));
                }
                _ => {
                    return Err(format!(
                        "modifier {c} is not supported (supported: @this, @reverse, @keys, @values, @flatten; for a key that starts with @, escape it: \\{c})"
                    ));
                }
            }));
        }
        _ => {}
    }
    if c == "#" {
        return Ok(Seg::Hash);
    }
    if let Some(rest) = c.strip_prefix("#(") {
        let (inner, all) = if let Some(x) = rest.strip_suffix(")#") {
            (x, true)
        } else if let Some(x) = rest.strip_suffix(')') {
            (x, false)
        } else {
            return Err(format!("query {c} must end with `)` or `)#`"));
        };
        return Ok(Seg::Query {
            query: Box::new(parse_query(inner)?),
            all,
        });
    }
    // A plain key: unescape, note wildcards.
    let mut key = String::with_capacity(c.len());
    let mut wild = false;
    let mut chars = c.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some(n) => key.push(n),
                None => return Err("path ends with a lone `\\`".into()),
            },
            '*' | '?' => {
                wild = true;
                key.push(ch);
            }
            _ => key.push(ch),
        }
    }
    Ok(Seg::Key { key, wild })
}

fn parse_query(q: &str) -> Result<Query, String> {
    // The operator: the first of = ! < > % outside quotes.
    let b = q.as_bytes();
    let mut in_str = false;
    let mut at = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'\\' {
            i += 1;
        } else if c == b'"' {
            in_str = true;
        } else if matches!(c, b'=' | b'!' | b'<' | b'>' | b'%') {
            at = Some(i);
            break;
        } else if c == b'~' {
            return Err("`~` in queries is not supported".into());
        } else if c == b'(' {
            return Err("nested queries are not supported".into());
        }
        i += 1;
    }
    let Some(at) = at else {
        let lhs = q.trim();
        if lhs.is_empty() {
            return Err("empty query `#()`".into());
        }
        return Ok(Query {
            lhs: Some(Path::parse(lhs)?),
            cmp: None,
        });
    };
    let lhs = q[..at].trim();
    let rest = &q[at..];
    let (op, len) = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("!%", Op::NotLike),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("%", Op::Like),
    ]
    .iter()
    .find(|(s, _)| rest.starts_with(s))
    .map(|(s, op)| (*op, s.len()))
    .ok_or_else(|| format!("unknown operator in query ({q})"))?;
    let raw = rest[len..].trim();
    let value = parse_literal(raw).ok_or_else(|| {
        format!("query value {raw:?} must be a quoted string, a number, true, false or null ({q})")
    })?;
    if matches!(op, Op::Like | Op::NotLike) && !value.is_string() {
        return Err(format!("`%` and `!%` need a quoted pattern ({q})"));
    }
    Ok(Query {
        lhs: if lhs.is_empty() {
            None
        } else {
            Some(Path::parse(lhs)?)
        },
        cmp: Some((op, value)),
    })
}

fn parse_literal(raw: &str) -> Option<Value> {
    match raw {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" => return Some(Value::Null),
        _ => {}
    }
    if raw.starts_with('"') {
        return serde_json::from_str::<String>(raw).ok().map(Value::String);
    }
    let f: f64 = raw.parse().ok()?;
    serde_json::Number::from_f64(f).map(Value::Number)
}

fn eval<'a>(steps: &[Step], v: Cow<'a, Value>) -> Option<Cow<'a, Value>> {
    let Some((first, rest)) = steps.split_first() else {
        return Some(v);
    };
    match &first.seg {
        Seg::Key { key, wild } => {
            let child = match v {
                Cow::Borrowed(v) => Cow::Borrowed(child(v, key, *wild)?),
                Cow::Owned(v) => Cow::Owned(child(&v, key, *wild)?.clone()),
            };
            eval(rest, child)
        }
        Seg::Hash => {
            let Value::Array(items) = v.as_ref() else {
                return None;
            };
            match rest.first() {
                None => Some(Cow::Owned(Value::from(items.len()))),
                Some(s) if s.pipe => eval(rest, Cow::Owned(Value::from(items.len()))),
                Some(_) => project(items, rest),
            }
        }
        Seg::Query { query, all } => {
            let Value::Array(items) = v.as_ref() else {
                return None;
            };
            if !*all {
                let found = items.iter().position(|e| query.matches(e))?;
                let child = match v {
                    Cow::Borrowed(Value::Array(a)) => Cow::Borrowed(&a[found]),
                    _ => Cow::Owned(items[found].clone()),
                };
                return eval(rest, child);
            }
            let matched: Vec<Value> = items.iter().filter(|e| query.matches(e)).cloned().collect();
            match rest.first() {
                Some(s) if !s.pipe => project(&matched, rest),
                _ => eval(rest, Cow::Owned(Value::Array(matched))),
            }
        }
        Seg::Modifier(m) => eval(rest, Cow::Owned(modify(*m, v.as_ref())?)),
    }
}

/// `rest` up to its first `|` applies to each element; the remainder to the array of results.
fn project<'a>(items: &[Value], rest: &[Step]) -> Option<Cow<'a, Value>> {
    let split = rest
        .iter()
        .position(|s| s.pipe)
        .filter(|&p| p > 0)
        .unwrap_or(rest.len());
    let (each, after) = rest.split_at(split);
    let out: Vec<Value> = items
        .iter()
        .filter_map(|e| eval(each, Cow::Borrowed(e)).map(Cow::into_owned))
        .collect();
    eval(after, Cow::Owned(Value::Array(out)))
}

fn child<'v>(v: &'v Value, key: &str, wild: bool) -> Option<&'v Value> {
    match v {
        Value::Object(o) => {
            if wild {
                o.iter().find(|(k, _)| like(key, k)).map(|(_, v)| v)
            } else {
                o.get(key)
            }
        }
        Value::Array(a) if !wild => a.get(key.parse::<usize>().ok()?),
        _ => None,
    }
}

fn modify(m: Modifier, v: &Value) -> Option<Value> {
    Some(match (m, v) {
        (Modifier::This, v) => v.clone(),
        (Modifier::Reverse, Value::Array(a)) => Value::Array(a.iter().rev().cloned().collect()),
        (Modifier::Reverse, Value::Object(o)) => {
            // serde_json keeps keys sorted: the reverse of an object is the same object.
            Value::Object(o.clone())
        }
        (Modifier::Keys, Value::Object(o)) => {
            Value::Array(o.keys().map(|k| Value::String(k.clone())).collect())
        }
        (Modifier::Values, Value::Object(o)) => Value::Array(o.values().cloned().collect()),
        (Modifier::Flatten, Value::Array(a)) => {
            let mut out = Vec::new();
            for e in a {
                match e {
                    Value::Array(inner) => out.extend(inner.iter().cloned()),
                    other => out.push(other.clone()),
                }
            }
            Value::Array(out)
        }
        (Modifier::Reverse | Modifier::Flatten, other) => other.clone(),
        (Modifier::Keys | Modifier::Values, _) => return None,
    })
}

impl Query {
    fn matches(&self, e: &Value) -> bool {
        let target = match &self.lhs {
            None => Some(Cow::Borrowed(e)),
            Some(p) => p.get(e),
        };
        let Some(target) = target else {
            return false;
        };
        let Some((op, want)) = &self.cmp else {
            return true;
        };
        compare(*op, target.as_ref(), want)
    }
}

fn compare(op: Op, got: &Value, want: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (got, want) {
        (Value::String(a), Value::String(b)) => {
            match op {
                Op::Like => return like(b, a),
                Op::NotLike => return !like(b, a),
                _ => {}
            }
            a.as_str().cmp(b.as_str())
        }
        (Value::Number(a), Value::Number(b)) => {
            match a
                .as_f64()
                .unwrap_or(f64::NAN)
                .partial_cmp(&b.as_f64().unwrap_or(f64::NAN))
            {
                Some(o) => o,
                None => return false,
            }
        }
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Like | Op::NotLike => false,
    }
}

/// `*` matches any run, `?` one character.
pub(crate) fn like(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        // A `*` in the pattern is a wildcard even where the value has a literal `*`.
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "name": {"first": "Tom", "last": "Anderson"},
            "age": 37,
            "children": ["Sara", "Alex", "Jack"],
            "fav.movie": "Deer Hunter",
            "friends": [
                {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
                {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
                {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]}
            ]
        })
    }

    fn get(path: &str) -> Option<Value> {
        Path::parse(path).unwrap().get(&doc()).map(Cow::into_owned)
    }

    #[test]
    fn gjson_readme_examples() {
        assert_eq!(get("name.last"), Some(json!("Anderson")));
        assert_eq!(get("age"), Some(json!(37)));
        assert_eq!(get("children"), Some(json!(["Sara", "Alex", "Jack"])));
        assert_eq!(get("children.#"), Some(json!(3)));
        assert_eq!(get("children.1"), Some(json!("Alex")));
        assert_eq!(get("child*.2"), Some(json!("Jack")));
        assert_eq!(get("c?ildren.0"), Some(json!("Sara")));
        assert_eq!(get("fav\\.movie"), Some(json!("Deer Hunter")));
        assert_eq!(
            get("friends.#.first"),
            Some(json!(["Dale", "Roger", "Jane"]))
        );
        assert_eq!(get("friends.1.last"), Some(json!("Craig")));
        assert_eq!(
            get("friends.#(last==\"Murphy\").first"),
            Some(json!("Dale"))
        );
        assert_eq!(
            get("friends.#(last==\"Murphy\")#.first"),
            Some(json!(["Dale", "Jane"]))
        );
        assert_eq!(
            get("friends.#(age>45)#.last"),
            Some(json!(["Craig", "Murphy"]))
        );
        assert_eq!(get("friends.#(first%\"D*\").last"), Some(json!("Murphy")));
        assert_eq!(get("friends.#(first!%\"D*\").last"), Some(json!("Craig")));
        assert_eq!(
            get("children|@reverse"),
            Some(json!(["Jack", "Alex", "Sara"]))
        );
        assert_eq!(get("children|@reverse|0"), Some(json!("Jack")));
        assert_eq!(get("friends.#(last==\"Murphy\")#|#"), Some(json!(2)));
        assert_eq!(get("friends.#.first|1"), Some(json!("Roger")));
        assert_eq!(get("friends.#.nets|@flatten|#"), Some(json!(7)));
        assert_eq!(get("name.@keys"), Some(json!(["first", "last"])));
        assert_eq!(get("@this.age"), Some(json!(37)));
        assert_eq!(get("friends.#(age)#|#"), Some(json!(3)));
        assert_eq!(get("children.#(==\"Alex\")"), Some(json!("Alex")));
        assert_eq!(get("missing"), None);
        assert_eq!(get("children.7"), None);
        assert_eq!(get("age.x"), None);
        assert_eq!(Path::parse("friends.#.first").unwrap().last_key(), "first");
        let logs = json!({"@timestamp": "t", "a.b": {"c": 1}});
        let p = Path::parse("\\@timestamp").unwrap();
        assert_eq!(p.get(&logs).map(Cow::into_owned), Some(json!("t")));
        let p = Path::parse("a\\.b.c").unwrap();
        assert_eq!(p.get(&logs).map(Cow::into_owned), Some(json!(1)));
        let e = Path::parse("@timestamp").unwrap_err();
        assert!(e.contains("escape it: \\@timestamp"), "{e}");
    }

    #[test]
    fn unsupported_syntax_is_refused_with_a_reason() {
        for (p, why) in [
            ("[name.first,age]", "multipaths"),
            ("{name.first,age}", "multipaths"),
            ("..0", "JSON Lines"),
            ("!true", "literals"),
            ("children|@join", "not supported"),
            ("children|@pretty:{\"sortKeys\":true}", "arguments"),
            ("friends.#(first~true)", "`~`"),
            ("friends.#(nets.#(==\"fb\"))#.first", "nested queries"),
            ("friends.#(last==Murphy)", "quoted string"),
            ("friends.#(last==\"Murphy\"", "unclosed"),
            ("a..b", "empty path component"),
            ("a.", "ends with a separator"),
            ("", "empty path"),
        ] {
            let e = Path::parse(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }

    #[test]
    fn like_is_polynomial_on_hostile_values() {
        // Shared by `%` queries and the json parser's tag_keys/json_string_fields wildcards.
        let value = "a".repeat(10_000);
        assert!(!like("a*a*a*a*a*a*a*b", &value));
        assert!(like("a*a*a*a*a*a*a*a", &value));
    }

    #[test]
    fn like_star_is_a_wildcard_against_a_literal_star() {
        // Found by like_agrees_with_the_reference: a `*` in the value was matched as a
        // literal by the pattern's `*`, which then could not match a run.
        assert!(like("?*?", "**"));
        assert!(like("a*b", "a*xb"));
        assert!(like("*", "*"));
    }

    /// The plain recursive definition: exponential, fine for short inputs.
    fn like_reference(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|k| like_reference(rest, &s[k..])),
            Some((&c, rest)) => {
                s.first().is_some_and(|&x| c == '?' || c == x) && like_reference(rest, &s[1..])
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn like_agrees_with_the_reference(p in "[ab?*]{0,8}", s in "[ab?*]{0,12}") {
            let (pc, sc): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
            proptest::prop_assert_eq!(like(&p, &s), like_reference(&pc, &sc), "{:?} {:?}", p, s);
        }

        #[test]
        fn paths_never_panic(path in "[a-z0-9.*?#|@\\\\%=!<>\\[\\]{}()\",: -]{0,24}") {
            if let Ok(p) = Path::parse(&path) {
                let _ = p.get(&doc());
            }
        }
    }
}
