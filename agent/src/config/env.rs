//! `${VAR}` substitution on the raw config text, before TOML parsing, as Telegraf does:
//! `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`,
//! `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`. Comments are left alone. An unset
//! variable without a default is left as written (Telegraf keeps the original text).
//!
//! Substituted text changes byte offsets, so an [`OffsetMap`] maps offsets in the result back
//! to the original text, where line and column numbers are computed.

/// A substitution that failed: byte offset of the `$` in the original text, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct EnvError {
    pub offset: usize,
    pub message: String,
}

/// Maps byte offsets in the substituted text to offsets in the original.
#[derive(Debug, Default)]
pub struct OffsetMap {
    /// Replaced regions, in order: (start in result, end in result, start in original, end in original).
    segments: Vec<(usize, usize, usize, usize)>,
}

impl OffsetMap {
    pub fn to_original(&self, offset: usize) -> usize {
        let i = self.segments.partition_point(|s| s.0 <= offset);
        if i == 0 {
            return offset;
        }
        let (_, end, orig_start, orig_end) = self.segments[i - 1];
        if offset < end {
            // Inside a substituted value: point at the `$` that produced it.
            orig_start
        } else {
            orig_end + (offset - end)
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Normal,
    Comment,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// Substitutes variables in `text`, looking them up with `lookup`.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (String, OffsetMap, Vec<EnvError>) {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut map = OffsetMap::default();
    let mut errors = Vec::new();
    let mut state = State::Normal;
    let mut copied = 0; // text[copied..i] is still to be copied to out
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let rest = &b[i..];
        match state {
            State::Comment => {
                if c == b'\n' {
                    state = State::Normal;
                }
                i += 1;
                continue;
            }
            State::Normal => {
                let (next, skip) = match c {
                    b'#' => (State::Comment, 1),
                    b'"' if rest.starts_with(b"\"\"\"") => (State::MultiBasic, 3),
                    b'"' => (State::Basic, 1),
                    b'\'' if rest.starts_with(b"'''") => (State::MultiLiteral, 3),
                    b'\'' => (State::Literal, 1),
                    _ => (State::Normal, 0),
                };
                if skip > 0 {
                    state = next;
                    i += skip;
                    continue;
                }
            }
            State::Basic | State::MultiBasic if c == b'\\' => {
                // An escaped character (`\"`, `\\`, `\$`) never starts or ends anything.
                i += 2;
                continue;
            }
            State::Basic | State::Literal if c == b'\n' => {
                state = State::Normal;
                i += 1;
                continue;
            }
            State::Basic if c == b'"' => {
                state = State::Normal;
                i += 1;
                continue;
            }
            State::Literal if c == b'\'' => {
                state = State::Normal;
                i += 1;
                continue;
            }
            State::MultiBasic if rest.starts_with(b"\"\"\"") => {
                state = State::Normal;
                i += 3;
                continue;
            }
            State::MultiLiteral if rest.starts_with(b"'''") => {
                state = State::Normal;
                i += 3;
                continue;
            }
            _ => {}
        }
        if c != b'$' {
            i += 1;
            continue;
        }
        match expand_at(text, i, lookup) {
            Ok(Some((len, value))) => {
                out.push_str(&text[copied..i]);
                let start = out.len();
                out.push_str(&value);
                map.segments.push((start, out.len(), i, i + len));
                i += len;
                copied = i;
            }
            Ok(None) => i += 1,
            Err(message) => {
                errors.push(EnvError { offset: i, message });
                i += 1;
            }
        }
    }
    out.push_str(&text[copied..]);
    (out, map, errors)
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Expands the reference starting at `text[at] == '$'`: `Ok(Some((length in text, value)))`,
/// or `Ok(None)` to leave it as written.
fn expand_at(
    text: &str,
    at: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(usize, String)>, String> {
    let b = text.as_bytes();
    match b.get(at + 1) {
        Some(b'$') => Ok(Some((2, "$".into()))),
        Some(&c) if is_name_start(c) => {
            let end = (at + 1..b.len())
                .find(|&j| !is_name_char(b[j]))
                .unwrap_or(b.len());
            let name = &text[at + 1..end];
            Ok(lookup(name).map(|v| (end - at, v)))
        }
        Some(b'{') => {
            let close = matching_brace(b, at + 1).ok_or_else(|| {
                "unterminated \"${\" (write \"$$\" for a literal \"$\")".to_string()
            })?;
            let inner = &text[at + 2..close];
            let len = close + 1 - at;
            let name_len = inner.bytes().take_while(|&c| is_name_char(c)).count();
            let name = &inner[..name_len];
            if name.is_empty() || !is_name_start(name.as_bytes()[0]) {
                return Err(format!(
                    "invalid variable reference \"${{{inner}}}\" (write \"$$\" for a literal \"$\")"
                ));
            }
            let value = lookup(name);
            let op_text = &inner[name_len..];
            let (op, arg) = ["", ":-", "-", ":?", "?", ":+", "+"]
                .iter()
                .rev()
                .find_map(|op| op_text.strip_prefix(op).map(|arg| (*op, arg)))
                .filter(|(op, arg)| !op.is_empty() || arg.is_empty())
                .ok_or_else(|| format!("invalid variable reference \"${{{inner}}}\""))?;
            let set = value.is_some();
            let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
            // Defaults may themselves hold references: `${A:-${B}}`.
            let arg = || -> Result<String, String> {
                let (s, _, errs) = substitute(arg, lookup);
                match errs.into_iter().next() {
                    Some(e) => Err(e.message),
                    None => Ok(s),
                }
            };
            let result = match op {
                "" => value,
                ":-" => Some(if nonempty { value.unwrap() } else { arg()? }),
                "-" => Some(if set { value.unwrap() } else { arg()? }),
                ":?" | "?" => {
                    let ok = if op == ":?" { nonempty } else { set };
                    if !ok {
                        let why = if op == ":?" {
                            "unset or empty"
                        } else {
                            "unset"
                        };
                        let msg = arg()?;
                        return Err(if msg.is_empty() {
                            format!("environment variable {name} is {why}")
                        } else {
                            format!("environment variable {name} is {why}: {msg}")
                        });
                    }
                    value
                }
                ":+" => Some(if nonempty { arg()? } else { String::new() }),
                _ => Some(if set { arg()? } else { String::new() }),
            };
            Ok(result.map(|v| (len, v)))
        }
        _ => Ok(None),
    }
}

/// Index of the `}` closing the `{` at `open`, allowing nested `${...}`.
fn matching_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (j, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            b'\n' => return None,
            _ => {}
        }
    }
    None
}

/// 1-based line and column (in characters) of a byte offset. An offset inside a multi-byte
/// character (a parser's span can end there) counts as that character's.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
    (line, text[line_start..offset].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db1".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8086".into()),
            "LONG" => Some("a much longer value".into()),
            _ => None,
        }
    }

    fn sub(text: &str) -> String {
        let (out, _, errs) = substitute(text, &env);
        assert!(errs.is_empty(), "{errs:?}");
        out
    }

    #[test]
    fn forms() {
        assert_eq!(sub("a = \"${HOST}\""), "a = \"db1\"");
        assert_eq!(sub("a = \"$HOST:$PORT\""), "a = \"db1:8086\"");
        assert_eq!(sub("port = ${PORT}"), "port = 8086");
        assert_eq!(sub("a = \"${NOPE:-x}\""), "a = \"x\"");
        assert_eq!(sub("a = \"${EMPTY:-x}\""), "a = \"x\"");
        assert_eq!(sub("a = \"${EMPTY-x}\""), "a = \"\"");
        assert_eq!(sub("a = \"${NOPE-x}\""), "a = \"x\"");
        assert_eq!(sub("a = \"${HOST:?need it}\""), "a = \"db1\"");
        assert_eq!(sub("a = \"${HOST:+on}${NOPE:+on}\""), "a = \"on\"");
        assert_eq!(sub("a = \"${EMPTY+set}\""), "a = \"set\"");
        assert_eq!(sub("a = \"${NOPE:-${HOST}}\""), "a = \"db1\"");
        assert_eq!(sub("a = \"cost $$5\""), "a = \"cost $5\"");
        // Unset without default: kept as written, as Telegraf does.
        assert_eq!(sub("a = \"${NOPE} $NOPE\""), "a = \"${NOPE} $NOPE\"");
        // A lone `$` is just a character.
        assert_eq!(sub("a = \"5$ $.x\""), "a = \"5$ $.x\"");
    }

    #[test]
    fn comments_are_not_substituted_but_hashes_in_strings_are_not_comments() {
        assert_eq!(
            sub("# ${HOST:?x}\na = 1 # $HOST"),
            "# ${HOST:?x}\na = 1 # $HOST"
        );
        assert_eq!(sub("a = \"#${HOST}\" # $HOST"), "a = \"#db1\" # $HOST");
        assert_eq!(sub("a = '#${HOST}'"), "a = '#db1'");
        assert_eq!(sub("a = \"\\\"#$HOST\""), "a = \"\\\"#db1\"");
        assert_eq!(
            sub("a = \"\"\"\n# $HOST\n\"\"\"\n# $HOST"),
            "a = \"\"\"\n# db1\n\"\"\"\n# $HOST"
        );
        // An apostrophe inside a comment does not open a string.
        assert_eq!(sub("# don't\na = \"$HOST\""), "# don't\na = \"db1\"");
    }

    #[test]
    fn required_variables_report_where() {
        let text =
            "a = 1\nb = \"${NOPE:?set NOPE to the URL}\"\nc = \"${EMPTY:?}\"\nd = \"${EMPTY?}\"";
        let (_, _, errs) = substitute(text, &env);
        assert_eq!(
            errs,
            vec![
                EnvError {
                    offset: 11,
                    message: "environment variable NOPE is unset or empty: set NOPE to the URL"
                        .into()
                },
                EnvError {
                    offset: 46,
                    message: "environment variable EMPTY is unset or empty".into()
                },
            ]
        );
        assert_eq!(line_col(text, 11), (2, 6));
    }

    #[test]
    fn bad_references_are_errors() {
        let (_, _, errs) = substitute("a = \"${1}\"\nb = \"${X\"", &env);
        assert_eq!(errs.len(), 2);
        assert!(errs[0].message.contains("invalid variable reference"));
        assert!(errs[1].message.contains("unterminated"));
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let text = "a = \"${LONG}\" x\nb = $PORT y";
        let (out, map, _) = substitute(text, &env);
        let x = out.find('x').unwrap();
        assert_eq!(map.to_original(x), text.find('x').unwrap());
        let y = out.find('y').unwrap();
        assert_eq!(map.to_original(y), text.find('y').unwrap());
        // Inside a substituted value: the `$`.
        assert_eq!(map.to_original(out.find("much").unwrap()), 5);
        assert_eq!(map.to_original(0), 0);
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("é = 1\nab", 7), (2, 1));
        assert_eq!(line_col("é = 1\nab", 8), (2, 2));
        assert_eq!(line_col("é = x", 5), (1, 5));
    }
}
