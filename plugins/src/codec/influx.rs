//! InfluxDB line protocol: parser and serializer.
//!
//! Escapes are read exactly as InfluxDB 1.x and Telegraf read them (checked against a real
//! InfluxDB 1.x by `tests/tests/parsers.rs`), so a line that goes through sonde lands in InfluxDB
//! exactly as if it had been written there directly:
//! - a comma, space or `=` right after a backslash never ends a measurement, tag key, tag value
//!   or field key (InfluxDB looks at the byte before; a backslash before a backslash is a
//!   literal one that escapes the next byte in turn, so `a\\ b` is one tag value);
//! - then, left to right, measurement: `\,` `\ ` are escapes; tag keys and values: `\,` `\ `
//!   `\=`; field keys: `\,` `\ ` `\=` `\"`; a backslash before anything else (another
//!   backslash included) is kept;
//! - string field values: `\"` and `\\` are escapes.
//!
//! The serializer writes what those rules read back: `,`, ` ` (and `=` outside measurements)
//! get a backslash, a backslash is written as it is. A trailing backslash cannot be written at
//! all (it would escape the separator), so, like Telegraf, it is trimmed from tag keys and
//! values, and from measurements and field keys too.
//! Newline, carriage return, tab and form feed cannot appear raw in names, tags or field keys;
//! like Telegraf the serializer writes them as the two characters `\n`, `\r`, `\t`, `\f`.

use memchr::memchr;

use super::record::{Record, Writer};
use super::{ParseError, Parser, Serializer};
use crate::model::{FieldValue, Metric, Str, ValueType, spare, str_from};

/// Serializer options (Telegraf's `influx_*` keys).
#[derive(Clone, Debug)]
pub struct InfluxOptions {
    pub sort_fields: bool,
    /// Write unsigned fields with the `u` suffix; otherwise as signed integers, clamped at
    /// `i64::MAX`. The `influx` data format defaults to false, as Telegraf's does (see
    /// [`super::build_serializer`]); `Default` (line protocol for `--test` and the InfluxDB
    /// writer before its own option is applied) keeps them.
    pub uint_support: bool,
    /// Split lines longer than this into several (0 = no limit).
    pub max_line_bytes: usize,
}

impl Default for InfluxOptions {
    fn default() -> Self {
        InfluxOptions {
            sort_fields: false,
            uint_support: true,
            max_line_bytes: 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------------------------

/// Which characters need a backslash in a token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    Measurement,
    /// Tag keys and tag values.
    Tag,
    FieldKey,
}

impl Token {
    #[inline]
    fn needs_escape(self, b: u8) -> bool {
        match self {
            Token::Measurement => b == b',' || b == b' ',
            Token::Tag => b == b',' || b == b' ' || b == b'=',
            Token::FieldKey => b == b',' || b == b' ' || b == b'=' || b == b'"',
        }
    }
}

/// A token without its trailing backslashes, which line protocol cannot carry.
#[inline]
fn trim_backslashes(s: &str) -> &str {
    if s.ends_with('\\') {
        s.trim_end_matches('\\')
    } else {
        s
    }
}

#[inline(always)]
fn write_token(out: &mut Vec<u8>, s: &str, kind: Token) {
    let bytes = s.as_bytes();
    let stops = match kind {
        Token::Measurement => MEASUREMENT_STOPS,
        Token::Tag | Token::FieldKey => KEY_STOPS,
    };
    // Quick check (false positives allowed: other control bytes take the loop below and are
    // written as they are).
    if !has_any(bytes, stops, true) && (kind != Token::FieldKey || memchr(b'"', bytes).is_none()) {
        out.extend_from_slice(bytes);
    } else {
        write_token_escaped(out, bytes, kind);
    }
}

#[inline(never)]
fn write_token_escaped(out: &mut Vec<u8>, bytes: &[u8], kind: Token) {
    for &b in bytes {
        match b {
            // A backslash is written as it is (it is read back so, even before an escaped
            // separator). A quote in a field key is escaped: `\"` would be read as `"`, and a
            // bare one could be taken for the start of a string when splitting lines.
            b'"' if kind == Token::FieldKey => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0c => out.extend_from_slice(b"\\f"),
            b if kind.needs_escape(b) => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

fn write_string_value(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !has_any(bytes, STRING_STOPS, false) {
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    out.push(b'"');
}

/// Writes a finite float: shortest round-trip digits; whole numbers without ".0", as Telegraf
/// writes them (a number without suffix is a float in line protocol).
#[inline]
fn write_float(out: &mut Vec<u8>, v: f64) {
    // Whole numbers below 1e15 are what ryu writes as their integer digits plus ".0"; itoa is
    // much cheaper. -0.0 keeps its sign through ryu.
    if v.trunc() == v && v.abs() < 1e15 && !(v == 0.0 && v.is_sign_negative()) {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        return;
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes())
}

/// Writes `key=value`; returns false (writing nothing) for fields line protocol cannot carry.
#[inline]
fn write_field(out: &mut Vec<u8>, key: &str, value: &FieldValue, opts: &InfluxOptions) -> bool {
    let key = trim_backslashes(key);
    if key.is_empty() {
        return false;
    }
    if let FieldValue::Float(v) = value
        && !v.is_finite()
    {
        return false;
    }
    write_token(out, key, Token::FieldKey);
    out.push(b'=');
    match value {
        FieldValue::Float(v) => {
            write_float(out, *v);
        }
        FieldValue::Int(v) => {
            out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
            out.push(b'i');
        }
        FieldValue::UInt(v) => {
            if opts.uint_support {
                out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
                out.push(b'u');
            } else {
                let clamped = (*v).min(i64::MAX as u64);
                out.extend_from_slice(itoa::Buffer::new().format(clamped).as_bytes());
                out.push(b'i');
            }
        }
        FieldValue::Bool(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
        FieldValue::String(s) => write_string_value(out, s),
    }
    true
}

/// Appends one metric as a line (with trailing `\n`); several lines when `max_line_bytes`
/// requires it. Writes nothing for a metric line protocol cannot carry (empty name, a name
/// starting with `#`, no writable field: NaN and infinite floats are dropped).
#[inline]
pub fn write_metric(out: &mut Vec<u8>, metric: &Metric, opts: &InfluxOptions) {
    write_metric_filtered(out, metric, opts, &[], false);
}

/// [`write_metric`] leaving out the tags whose keys are in `skip_tags` and, with
/// `omit_timestamp`, the timestamp (the InfluxDB outputs' routing tags and
/// `influx_omit_timestamp`), without copying the metric.
pub fn write_metric_filtered(
    out: &mut Vec<u8>,
    metric: &Metric,
    opts: &InfluxOptions,
    skip_tags: &[String],
    omit_timestamp: bool,
) {
    let name = trim_backslashes(&metric.name);
    if name.is_empty() || name.starts_with('#') {
        return;
    }
    let start = out.len();
    write_token(out, name, Token::Measurement);
    for (k, v) in &metric.tags {
        let (k, v) = (trim_backslashes(k), trim_backslashes(v));
        // Empty keys or values are not encodable; Telegraf drops such tags too.
        if k.is_empty() || v.is_empty() {
            continue;
        }
        if !skip_tags.is_empty() && skip_tags.iter().any(|t| t == k) {
            continue;
        }
        out.push(b',');
        write_token(out, k, Token::Tag);
        out.push(b'=');
        write_token(out, v, Token::Tag);
    }
    out.push(b' ');
    let header_end = out.len();

    let mut ts = itoa::Buffer::new();
    let ts: &[u8] = if omit_timestamp {
        b""
    } else {
        ts.format(metric.time).as_bytes()
    };
    // " <timestamp>\n", or "\n" alone.
    let footer_len = if omit_timestamp { 1 } else { ts.len() + 2 };
    let footer = |out: &mut Vec<u8>| {
        if !omit_timestamp {
            out.push(b' ');
            out.extend_from_slice(ts);
        }
        out.push(b'\n');
    };

    if opts.max_line_bytes == 0 && !opts.sort_fields {
        // The common case: one line, fields in order.
        let mut written = false;
        for (k, v) in &metric.fields {
            let field_start = out.len();
            if written {
                out.push(b',');
            }
            if write_field(out, k, v, opts) {
                written = true;
            } else {
                out.truncate(field_start);
            }
        }
        if !written {
            out.truncate(start);
            return;
        }
        footer(out);
        return;
    }

    let mut line_start = start;
    let mut on_line = 0usize;
    let mut written = 0usize;
    let mut emit = |out: &mut Vec<u8>, key: &str, value: &FieldValue| {
        let field_start = out.len();
        if on_line > 0 {
            out.push(b',');
        }
        if !write_field(out, key, value, opts) {
            out.truncate(field_start);
            return;
        }
        if opts.max_line_bytes > 0
            && on_line > 0
            && out.len() - line_start + footer_len > opts.max_line_bytes
        {
            // Move this field to a fresh line with the same header.
            let field: Vec<u8> = out[field_start + 1..].to_vec();
            out.truncate(field_start);
            footer(out);
            line_start = out.len();
            out.extend_from_within(start..header_end);
            out.extend_from_slice(&field);
            on_line = 0;
        }
        on_line += 1;
        written += 1;
    };
    if opts.sort_fields {
        let mut idx: Vec<usize> = (0..metric.fields.len()).collect();
        idx.sort_by(|&a, &b| metric.fields[a].0.cmp(&metric.fields[b].0));
        for i in idx {
            let (k, v) = &metric.fields[i];
            emit(out, k, v);
        }
    } else {
        for (k, v) in &metric.fields {
            emit(out, k, v);
        }
    }
    if written == 0 {
        out.truncate(start);
        return;
    }
    footer(out);
}

/// The `influx` serializer.
#[derive(Clone, Debug, Default)]
pub struct InfluxSerializer {
    pub opts: InfluxOptions,
}

impl Serializer for InfluxSerializer {
    fn serialize(&self, batch: &[Metric], out: &mut Vec<u8>) {
        for m in batch {
            write_metric(out, m, &self.opts);
        }
    }

    fn content_type(&self) -> &'static str {
        "text/plain; charset=utf-8"
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// The `influx` parser. `precision` multiplies timestamps into nanoseconds
/// (1 for ns, 1_000 for us, 1_000_000 for ms, 1_000_000_000 for s).
#[derive(Clone, Debug)]
pub struct InfluxParser {
    pub precision: i64,
}

impl Default for InfluxParser {
    fn default() -> Self {
        InfluxParser { precision: 1 }
    }
}

impl Parser for InfluxParser {
    fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
        parse(input, self.precision, now, out)
    }
}

/// Parses line protocol, appending good metrics to `out` and returning one error per bad line.
/// Lines without a timestamp get `now`; given timestamps are multiplied by `precision`.
pub fn parse(input: &[u8], precision: i64, now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
    Lines::new(input).parse_next(usize::MAX, 0, precision, now, out)
}

/// Line protocol parsed a part at a time ([`Lines::parse_next`]), as the listeners do: a
/// large body is never held whole as metrics, and each line is scanned once. A clone marks a
/// place to parse from again.
#[derive(Clone)]
pub struct Lines<'a> {
    input: &'a [u8],
    /// `input` as text, when it is valid UTF-8 (checked once for the whole input; only when
    /// that fails is each line checked on its own, so a bad byte costs just its line).
    text: Option<&'a str>,
    /// Where the next line begins, and its number (a line as [`parse`] counts them: a string
    /// field may hold newlines).
    pos: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        let text = if input.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(input) })
        } else {
            std::str::from_utf8(input).ok()
        };
        Lines {
            input,
            text,
            pos: 0,
            line: 1,
        }
    }

    /// Whether every line has been parsed.
    pub fn is_done(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// Where the lines not parsed yet begin (the input's length once all are).
    pub fn pos(&self) -> usize {
        self.pos.min(self.input.len())
    }

    /// Parses up to `max_lines` more lines as [`parse`] does, appending good metrics to
    /// `out`; returns one error per bad line, numbered from the input's first line. A line
    /// longer than `max_line` bytes (when non-zero) is a bad line.
    pub fn parse_next(
        &mut self,
        max_lines: usize,
        max_line: usize,
        precision: i64,
        now: i64,
        out: &mut Vec<Metric>,
    ) -> Vec<ParseError> {
        let input = self.input;
        let mut errors = Vec::new();
        let mut scratch = Scratch {
            refill: ((input.len() - self.pos()) / 16 + 1)
                .min(max_lines)
                .min(SPARE_REFILL),
            ..Default::default()
        };
        for _ in 0..max_lines {
            let Some((pos, end, stop, newlines)) = self.peek_line() else {
                break;
            };
            // Lines start after a `\n` and end before `\n` or `\r`, so they are char
            // boundaries.
            let line = match self.text {
                Some(t) => Line::Text(&t[pos..stop]),
                None => Line::Bytes(&input[pos..stop]),
            };
            let parsed = if max_line != 0 && end - pos > max_line {
                Err(format!("line longer than max_line_size ({max_line} bytes)"))
            } else {
                parse_line(line, precision, now, &mut scratch, out)
            };
            self.finish_line(parsed, end, newlines, &mut scratch, &mut errors);
        }
        spare::give_back(std::mem::take(&mut scratch.spare));
        errors
    }
}

impl<'a> Lines<'a> {
    /// The next line: where it starts, where its `\n` is (or the input ends), where its text
    /// ends (before a `\r`), and how many newlines it spans; `None` at the end.
    #[inline]
    fn peek_line(&self) -> Option<(usize, usize, usize, usize)> {
        let (input, pos) = (self.input, self.pos);
        if pos >= input.len() {
            return None;
        }
        let (end, newlines) = line_end(input, pos);
        let mut stop = end;
        if stop > pos && input[stop - 1] == b'\r' {
            stop -= 1;
        }
        Some((pos, end, stop, newlines))
    }

    /// Moves past the line that ends at `end`, keeping its error, if any.
    #[inline]
    fn finish_line(
        &mut self,
        result: Result<(), String>,
        end: usize,
        newlines: usize,
        scratch: &mut Scratch,
        errors: &mut Vec<ParseError>,
    ) {
        if let Err(message) = result {
            scratch.tags.clear();
            scratch.fields.clear();
            errors.push(ParseError {
                line: self.line,
                message,
            });
        }
        scratch.field_fps.clear();
        self.line += newlines;
        self.pos = end + 1;
    }

    /// As [`Lines::parse_next`], but into buffer records of at most `chunk` metrics each,
    /// appended to `records` (the last one may be left open in `w`: [`Writer::take_record`]
    /// or another call closes it). Each metric gets `overrides` (replacing a tag of the same
    /// key) and then `added` (only where it has no tag of that key). A line without escapes
    /// and string fields, the usual kind, is written from its text without building a
    /// metric; the others are parsed as `parse_next` does.
    #[allow(clippy::too_many_arguments)]
    pub fn write_next<S: AsRef<str>>(
        &mut self,
        max_lines: usize,
        max_line: usize,
        precision: i64,
        now: i64,
        overrides: &[(&str, &str)],
        added: &[(S, S)],
        chunk: usize,
        w: &mut Writer,
        records: &mut Vec<Record>,
    ) -> Vec<ParseError> {
        let input = self.input;
        let mut errors = Vec::new();
        let mut scratch = Scratch::default();
        let mut parsed: Vec<Metric> = Vec::new();
        let mut tags: Vec<(&str, &str)> = Vec::new();
        let mut fields: Vec<(&str, FieldValue)> = Vec::new();
        // The tags put in decide a series' tags as much as its line does.
        let mut context = Vec::new();
        for (k, v) in overrides
            .iter()
            .copied()
            .chain([("", "")])
            .chain(added.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        {
            for s in [k, v] {
                crate::codec::wire::put_varint(&mut context, s.len() as u64);
                context.extend_from_slice(s.as_bytes());
            }
        }
        w.known_under(&context);
        for _ in 0..max_lines {
            let Some((pos, end, stop, newlines)) = self.peek_line() else {
                break;
            };
            let plain = match self.text {
                Some(t) if memchr::memchr2(b'\\', b'"', &input[pos..stop]).is_none() => {
                    Some(&t[pos..stop])
                }
                _ => None,
            };
            let result = if max_line != 0 && end - pos > max_line {
                Err(format!("line longer than max_line_size ({max_line} bytes)"))
            } else if plain.is_some_and(|l| {
                write_plain(
                    l,
                    precision,
                    now,
                    overrides,
                    added,
                    &mut tags,
                    &mut fields,
                    w,
                )
            }) {
                Ok(())
            } else {
                // Anything else (escapes, strings, a bad line) as `parse_next` has it.
                let line = match self.text {
                    Some(t) => Line::Text(&t[pos..stop]),
                    None => Line::Bytes(&input[pos..stop]),
                };
                let r = parse_line(line, precision, now, &mut scratch, &mut parsed);
                for mut m in parsed.drain(..) {
                    for (k, v) in overrides {
                        m.add_tag(*k, *v);
                    }
                    for (k, v) in added {
                        m.add_tag_if_absent(k.as_ref(), v.as_ref());
                    }
                    w.push(&m.name, &m.tags, &m.fields, m.time, m.kind);
                }
                r
            };
            self.finish_line(result, end, newlines, &mut scratch, &mut errors);
            if w.len() >= chunk.max(1) {
                records.extend(w.take_record());
            }
        }
        errors
    }
}

/// Writes a line that has no backslash and no quote (blank lines and comments write nothing);
/// false when it is not a line this reads (errors included), for [`parse_line`]. A line of a
/// series the writer knows (the same measurement and tags, as written) is written from its
/// fields alone.
#[inline]
#[allow(clippy::too_many_arguments)]
fn write_plain<'a, S: AsRef<str>>(
    s: &'a str,
    precision: i64,
    now: i64,
    overrides: &[(&'a str, &'a str)],
    added: &'a [(S, S)],
    tags: &mut Vec<(&'a str, &'a str)>,
    fields: &mut Vec<(&'a str, FieldValue)>,
    w: &mut Writer,
) -> bool {
    let b = s.as_bytes();
    let Some(first) = b.iter().position(|&c| c != b' ' && c != b'\t') else {
        return true;
    };
    if b[first] == b'#' {
        return true;
    }
    let mut new = None;
    if w.remembering() {
        // Without escapes the measurement and tags end at the first space.
        let series = &b[first..find_any(b, first, [b' '; 4])];
        match w.find_known(series) {
            Ok(known) => {
                fields.clear();
                let Some(time) = plain_fields(s, first + series.len(), precision, now, fields)
                else {
                    return false;
                };
                w.push_known(known, fields, time, ValueType::Untyped);
                return true;
            }
            Err(n) => new = Some((series, n)),
        }
    }
    let Some((name, time)) = plain_line(s, first, precision, now, tags, fields) else {
        return false;
    };
    for (k, v) in overrides {
        put_tag(tags, k, v, true);
    }
    for (k, v) in added {
        put_tag(tags, k.as_ref(), v.as_ref(), false);
    }
    w.push(name, tags, fields, time, ValueType::Untyped);
    if let Some((series, n)) = new {
        w.remember(series, n);
    }
    true
}

/// Reads a line that has no backslash and no quote, from its first byte that is not blank
/// (not a `#`), into its name and time and borrowed tags and fields, as [`parse_line`] would
/// (`tags` sorted, without repeats); anything unusual, errors included, is left to it (`None`).
#[inline]
fn plain_line<'a>(
    s: &'a str,
    first: usize,
    precision: i64,
    now: i64,
    tags: &mut Vec<(&'a str, &'a str)>,
    fields: &mut Vec<(&'a str, FieldValue)>,
) -> Option<(&'a str, i64)> {
    tags.clear();
    fields.clear();
    let b = s.as_bytes();
    let (i, _) = scan(b, first, MEASUREMENT_STOPS);
    if i == first {
        return None;
    }
    let name = &s[first..i];
    let mut i = i;
    let mut sorted = true;
    while i < b.len() && b[i] == b',' {
        let ks = i + 1;
        let (ke, _) = scan(b, ks, KEY_STOPS);
        if ke == ks || ke >= b.len() || b[ke] != b'=' {
            return None;
        }
        let vs = ke + 1;
        let (ve, _) = scan(b, vs, TAG_VALUE_STOPS);
        if ve == vs {
            return None;
        }
        let key = &s[ks..ke];
        if sorted && let Some(&(prev, _)) = tags.last() {
            // Mostly decided by the first bytes, as in `parse_line`.
            sorted = match prev.as_bytes()[0].cmp(&key.as_bytes()[0]) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => prev < key,
            };
        }
        tags.push((key, &s[vs..ve]));
        i = ve;
    }
    let time = plain_fields(s, i, precision, now, fields)?;
    if !sorted {
        // As `parse_line`: a stable sort, and of a repeated key the last value.
        tags.sort_by(|a, b| a.0.cmp(b.0));
        tags.reverse();
        tags.dedup_by(|a, b| a.0 == b.0);
        tags.reverse();
    }
    Some((name, time))
}

/// Reads the fields and the time of a plain line (see [`plain_line`]) from `i`, where its
/// tags end, into `fields` (empty); `None` when they are not plain.
#[inline]
fn plain_fields<'a>(
    s: &'a str,
    mut i: usize,
    precision: i64,
    now: i64,
    fields: &mut Vec<(&'a str, FieldValue)>,
) -> Option<i64> {
    let b = s.as_bytes();
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if i >= b.len() {
        return None;
    }
    loop {
        let ks = i;
        let (ke, _) = scan(b, ks, KEY_STOPS);
        if ke == ks || ke >= b.len() || b[ke] != b'=' {
            return None;
        }
        let vs = ke + 1;
        let ve = find_any(b, vs, FIELD_VALUE_STOPS);
        let value = parse_value(&s[vs..ve])?;
        let key = &s[ks..ke];
        // Of a repeated key the last value wins, in the first one's place.
        match fields.iter_mut().find(|(k, _)| *k == key) {
            Some(f) => f.1 = value,
            None => fields.push((key, value)),
        }
        i = ve;
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b' ') | None => break,
            Some(_) => return None,
        }
    }
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if i >= b.len() {
        return Some(now);
    }
    // Trailing blanks, an overflow, a bad timestamp: the general parser says which.
    parse_int_strict(&s[i..]).and_then(|t| t.checked_mul(precision))
}

/// Puts tag `k=v` into the sorted `tags`: replacing a tag of that key with `replace`, else
/// only when there is none.
#[inline]
fn put_tag<'t>(tags: &mut Vec<(&'t str, &'t str)>, k: &'t str, v: &'t str, replace: bool) {
    match tags.binary_search_by(|(x, _)| (*x).cmp(k)) {
        Ok(i) if replace => tags[i].1 = v,
        Ok(_) => {}
        Err(i) => tags.insert(i, (k, v)),
    }
}

/// Finds the end of the line starting at `start` (index of its `\n`, or input length) and the
/// number of newlines it spans. String field values may contain raw newlines, so when the line
/// has a quote this scans like InfluxDB's `scanLine`.
fn line_end(input: &[u8], start: usize) -> (usize, usize) {
    let rest = &input[start..];
    let p = find_newline_or_quote(input, start);
    if p == input.len() || input[p] == b'\n' {
        return (p, 1);
    }
    let nl = memchr(b'\n', rest).unwrap_or(rest.len());
    let body = rest.iter().position(|&b| b != b' ' && b != b'\t');
    if body.is_none_or(|i| rest[i] == b'#') {
        return (start + nl, 1);
    }
    let (mut quoted, mut fields, mut escaped) = (false, false, false);
    let (mut equals, mut commas, mut newlines) = (0usize, 0usize, 1usize);
    for (i, &c) in rest.iter().enumerate().skip(body.unwrap_or(0)) {
        if escaped {
            // Outside strings a run of backslashes escapes the byte after it (see `scan`).
            if c == b'\\' && !quoted {
                continue;
            }
            escaped = false;
            if c == b'\n' {
                newlines += 1;
            }
            continue;
        }
        match c {
            b'\\' => escaped = true,
            b' ' => fields = true,
            b'=' if fields && !quoted => equals += 1,
            b',' if fields && !quoted => commas += 1,
            b'"' if fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => return (start + i, newlines),
            b'\n' => newlines += 1,
            _ => {}
        }
    }
    (input.len(), newlines)
}

#[inline]
fn is_tag_escape(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ')
}

#[inline]
fn is_field_key_escape(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ' | b'"')
}

#[inline]
fn is_measurement_escape(b: u8) -> bool {
    matches!(b, b',' | b' ')
}

/// Index of the first byte at or after `i` equal to one of `stops` (or `b.len()`).
///
/// Tokens are short, so the per-call cost matters more than the per-byte cost: on x86_64 this
/// compares 16 bytes at a time with SSE2 (always present there), including one final
/// overlapping block for the tail, so a typical token is found with a single compare.
#[inline(always)]
fn find_any(b: &[u8], i: usize, stops: [u8; 4]) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if b.len() >= 16 {
        return find_any_sse2(b, i, stops);
    }
    find_any_scalar(b, i, stops)
}

#[inline(always)]
fn find_any_scalar(b: &[u8], i: usize, stops: [u8; 4]) -> usize {
    let [s0, s1, s2, s3] = stops;
    b.get(i..).map_or(b.len(), |rest| {
        rest.iter()
            .position(|&c| c == s0 || c == s1 || c == s2 || c == s3)
            .map_or(b.len(), |p| i + p)
    })
}

/// Bit `k` set when byte `k` of the 16 bytes `lo` (bytes 0-7) and `hi` (bytes 8-15) is one of
/// `stops`, or (with `ctrl`) at most 0x0d (`\t`, `\n`, `\f`, `\r` and other controls).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn mask16(lo: u64, hi: u64, stops: [u8; 4], ctrl: bool) -> u32 {
    // SAFETY: SSE2 is part of the x86_64 baseline this code is compiled for (the cfg above).
    let v = unsafe { std::arch::x86_64::_mm_set_epi64x(hi as i64, lo as i64) };
    mask_vec(v, stops, ctrl)
}

/// `mask16` of the 16 bytes in `v`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn mask_vec(v: std::arch::x86_64::__m128i, stops: [u8; 4], ctrl: bool) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: these intrinsics only require SSE2, which this code is compiled for (the cfg
    // above; it is part of the x86_64 baseline). They take no pointers.
    unsafe {
        let e0 = _mm_cmpeq_epi8(v, _mm_set1_epi8(stops[0] as i8));
        let e1 = _mm_cmpeq_epi8(v, _mm_set1_epi8(stops[1] as i8));
        let e2 = _mm_cmpeq_epi8(v, _mm_set1_epi8(stops[2] as i8));
        let e3 = _mm_cmpeq_epi8(v, _mm_set1_epi8(stops[3] as i8));
        let mut any = _mm_or_si128(_mm_or_si128(e0, e1), _mm_or_si128(e2, e3));
        if ctrl {
            // Unsigned v <= 0x0d, as min(v, 0x0d) == v.
            let low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x0d)), v);
            any = _mm_or_si128(any, low);
        }
        _mm_movemask_epi8(any) as u32
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Bit `k` set when `b[at + k]` is one of `stops`, for the 16 bytes at `at`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn block_mask(b: &[u8], at: usize, stops: [u8; 4]) -> u32 {
    let block: &[u8; 16] = b[at..at + 16].try_into().unwrap();
    // SAFETY: SSE2 is baseline on x86_64 (the cfg above); the load reads the 16 bytes of
    // `block`, which the bounds-checked slice above guarantees exist.
    let v = unsafe { std::arch::x86_64::_mm_loadu_si128(block.as_ptr().cast()) };
    mask_vec(v, stops, false)
}

/// Whether any byte of `b` is one of `stops` or (with `ctrl`) at most 0x0d. Short slices are
/// covered by overlapping loads (order does not matter for "any"), so nothing is read twice
/// byte by byte.
#[inline(always)]
fn has_any(b: &[u8], stops: [u8; 4], ctrl: bool) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let n = b.len();
        let u32_at = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
        let (lo, hi) = match n {
            0 => return false,
            1..4 => return has_any_scalar(b, stops, ctrl),
            4..8 => {
                let w = u32_at(0) | u32_at(n - 4) << 32;
                (w, w)
            }
            8..16 => (word(b, 0), word(b, n - 8)),
            _ => {
                let mut i = 0;
                while i + 16 < n {
                    if mask16(word(b, i), word(b, i + 8), stops, ctrl) != 0 {
                        return true;
                    }
                    i += 16;
                }
                (word(b, n - 16), word(b, n - 8))
            }
        };
        mask16(lo, hi, stops, ctrl) != 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    has_any_scalar(b, stops, ctrl)
}

#[inline(always)]
fn has_any_scalar(b: &[u8], stops: [u8; 4], ctrl: bool) -> bool {
    b.iter().any(|&c| stops.contains(&c) || (ctrl && c <= 0x0d))
}

/// `find_any` for `b.len() >= 16`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn find_any_sse2(b: &[u8], mut i: usize, stops: [u8; 4]) -> usize {
    while i + 16 <= b.len() {
        let m = block_mask(b, i, stops);
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    if i >= b.len() {
        return b.len();
    }
    // The last 16 bytes, ignoring those before `i` (already looked at).
    let start = b.len() - 16;
    let m = block_mask(b, start, stops) >> (i - start);
    if m != 0 {
        i + m.trailing_zeros() as usize
    } else {
        b.len()
    }
}

/// Index of the first `\n` or `"` at or after `i` (or `b.len()`): a whole line is looked
/// through, so 32 bytes at a time.
#[inline]
fn find_newline_or_quote(b: &[u8], mut i: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while i + 32 <= b.len() {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let block: &[u8; 32] = b[i..i + 32].try_into().unwrap();
        // SAFETY: SSE2 is baseline on x86_64 (the cfg above); the two loads read the 32 bytes
        // of `block`, which the bounds-checked slice above guarantees exist.
        let m = unsafe {
            let p = block.as_ptr().cast::<__m128i>();
            let (lo, hi) = (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
            let (nl, q) = (_mm_set1_epi8(b'\n' as i8), _mm_set1_epi8(b'"' as i8));
            let mlo = _mm_or_si128(_mm_cmpeq_epi8(lo, nl), _mm_cmpeq_epi8(lo, q));
            let mhi = _mm_or_si128(_mm_cmpeq_epi8(hi, nl), _mm_cmpeq_epi8(hi, q));
            _mm_movemask_epi8(mlo) as u32 | (_mm_movemask_epi8(mhi) as u32) << 16
        };
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 32;
    }
    find_any(b, i, [b'\n', b'"', b'\n', b'"'])
}

/// Scans a measurement, tag key, tag value or field key from `i` up to the first byte in
/// `stops` (which must include the backslash) that does not follow a backslash, as InfluxDB
/// 1.x does. Returns its end and whether it contains a backslash.
#[inline(always)]
fn scan(b: &[u8], mut i: usize, stops: [u8; 4]) -> (usize, bool) {
    let mut esc = false;
    loop {
        i = find_any(b, i, stops);
        if i < b.len() && b[i] == b'\\' {
            esc = true;
            // Every backslash of a run is literal but the last, and the byte after the run is
            // part of the token whatever it is.
            while i < b.len() && b[i] == b'\\' {
                i += 1;
            }
            i += 1;
            if i >= b.len() {
                return (b.len(), esc);
            }
            continue;
        }
        return (i, esc);
    }
}

/// Scans a string field value up to its closing quote: a backslash and the byte after it go
/// together (`\\` is one backslash).
#[inline(always)]
fn scan_pairs(b: &[u8], mut i: usize, stops: [u8; 4]) -> (usize, bool) {
    let mut esc = false;
    loop {
        i = find_any(b, i, stops);
        if i < b.len() && b[i] == b'\\' {
            // The escaped byte is part of the token whatever it is.
            esc = true;
            i += 2;
            if i >= b.len() {
                return (b.len(), esc);
            }
            continue;
        }
        return (i, esc);
    }
}

/// Stop bytes for the tokens, padded with repeats to four.
const MEASUREMENT_STOPS: [u8; 4] = [b',', b' ', b'\\', b'\\'];
const KEY_STOPS: [u8; 4] = [b'=', b',', b' ', b'\\'];
const TAG_VALUE_STOPS: [u8; 4] = [b',', b' ', b'\\', b'\\'];
const STRING_STOPS: [u8; 4] = [b'"', b'\\', b'"', b'\\'];
const FIELD_VALUE_STOPS: [u8; 4] = [b',', b' ', b',', b' '];

#[inline(always)]
fn unescape(tok: &str, has_escape: bool, is_escape: fn(u8) -> bool, scratch: &mut String) -> Str {
    if !has_escape {
        return str_from(tok);
    }
    unescape_slow(tok, is_escape, scratch)
}

#[inline(never)]
fn unescape_slow(tok: &str, is_escape: fn(u8) -> bool, scratch: &mut String) -> Str {
    scratch.clear();
    let mut rest = tok;
    while let Some(p) = rest.find('\\') {
        scratch.push_str(&rest[..p]);
        match rest.as_bytes().get(p + 1) {
            Some(&c) if is_escape(c) => {
                scratch.push(c as char);
                rest = &rest[p + 2..];
            }
            _ => {
                scratch.push('\\');
                rest = &rest[p + 1..];
            }
        }
    }
    scratch.push_str(rest);
    Str::from(scratch.as_str())
}

/// What a line is parsed into: a metric costs one allocation for its tags and one for its
/// fields (plus any string longer than compact_str keeps inline); see `take_exact`.
#[derive(Default)]
struct Scratch {
    text: String,
    tags: Vec<(Str, Str)>,
    fields: Vec<(Str, FieldValue)>,
    /// `key_fingerprint` of each entry in `fields`, to find duplicate keys cheaply.
    field_fps: Vec<u64>,
    /// How many tags and fields the last metric had.
    tag_count: usize,
    field_count: usize,
    /// Metrics taken from [`spare`] to parse into; what is left goes back after the input.
    spare: Vec<Metric>,
    /// How many to take from the pool at a time (0: it was empty).
    refill: usize,
}

/// Metrics taken from the spare pool at a time, at most: a line takes 16 bytes or more, so a
/// short input (one line from a socket) takes only what it can use.
const SPARE_REFILL: usize = 256;

/// A cheap summary of a key (length, first and last bytes): equal keys have equal
/// fingerprints, so only keys with equal fingerprints need comparing.
#[inline]
fn key_fingerprint(k: &[u8]) -> u64 {
    let n = k.len();
    let word = |at: usize| u64::from_le_bytes(k[at..at + 8].try_into().unwrap());
    // (A short key is loaded in registers: copied into a zeroed buffer and read back whole,
    // it stalled on store forwarding.)
    let (head, tail) = if n >= 8 {
        (word(0), word(n - 8))
    } else {
        (crate::codec::wire::load_le(k), 0)
    };
    head ^ tail.rotate_left(29) ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A line, already known to be UTF-8 or not yet checked.
#[derive(Clone, Copy)]
enum Line<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// Parses one line (without its newline) into `out`; blank lines and comments add nothing.
/// On error `sc.tags` and `sc.fields` may hold the line's tokens.
fn parse_line(
    line: Line<'_>,
    precision: i64,
    now: i64,
    sc: &mut Scratch,
    out: &mut Vec<Metric>,
) -> Result<(), String> {
    let bytes = match line {
        Line::Text(t) => t.as_bytes(),
        Line::Bytes(b) => b,
    };
    let Some(first) = bytes.iter().position(|&b| b != b' ' && b != b'\t') else {
        return Ok(());
    };
    if bytes[first] == b'#' {
        return Ok(());
    }
    let s = match line {
        Line::Text(t) => t,
        Line::Bytes(b) => std::str::from_utf8(b).map_err(|_| "invalid UTF-8".to_string())?,
    };
    let b = s.as_bytes();

    // Measurement.
    let (i, esc) = scan(b, first, MEASUREMENT_STOPS);
    if i == first {
        return Err("missing measurement".into());
    }
    let name = unescape(&s[first..i], esc, is_measurement_escape, &mut sc.text);
    let mut time = now;
    let mut i = i;

    // Tags. Whether they come sorted is decided on the way, mostly from the keys' first
    // bytes (the full keys are compared only when those are equal).
    let mut sorted = true;
    while i < b.len() && b[i] == b',' {
        let ks = i + 1;
        let (ke, kesc) = scan(b, ks, KEY_STOPS);
        if ke == ks {
            return Err("missing tag key".into());
        }
        if ke >= b.len() || b[ke] != b'=' {
            return Err(format!("missing tag value for tag {:?}", &s[ks..ke]));
        }
        let vs = ke + 1;
        let (ve, vesc) = scan(b, vs, TAG_VALUE_STOPS);
        if ve == vs {
            return Err(format!("missing tag value for tag {:?}", &s[ks..ke]));
        }
        if kesc || vesc {
            let key = unescape(&s[ks..ke], kesc, is_tag_escape, &mut sc.text);
            let value = unescape(&s[vs..ve], vesc, is_tag_escape, &mut sc.text);
            sc.tags.push((key, value));
        } else {
            push_in_place(
                &mut sc.tags,
                || str_from(&s[ks..ke]),
                || str_from(&s[vs..ve]),
            );
        }
        if sorted && let [.., (prev, _), (key, _)] = &sc.tags[..] {
            sorted = match prev.as_bytes().first().cmp(&key.as_bytes().first()) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => prev < key,
            };
        }
        i = ve;
    }

    // Fields: after the space that ends the tags, further spaces and tabs are skipped (as
    // InfluxDB and Telegraf do); a tab inside a token is part of it.
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if i >= b.len() {
        return Err("missing fields".into());
    }
    loop {
        let ks = i;
        let (ke, kesc) = scan(b, ks, KEY_STOPS);
        if ke == ks {
            return Err("missing field key".into());
        }
        let key_raw = &s[ks..ke];
        if ke >= b.len() || b[ke] != b'=' {
            return Err(format!("missing field value for field {key_raw:?}"));
        }
        let vs = ke + 1;
        let (value, ve) = if b.get(vs) == Some(&b'"') {
            let (close, vesc) = scan_pairs(b, vs + 1, STRING_STOPS);
            if close >= b.len() {
                return Err(format!("unterminated string in field {key_raw:?}"));
            }
            let text = unescape(
                &s[vs + 1..close],
                vesc,
                |c| c == b'"' || c == b'\\',
                &mut sc.text,
            );
            (FieldValue::String(text), close + 1)
        } else {
            let ve = find_any(b, vs, FIELD_VALUE_STOPS);
            let tok = &s[vs..ve];
            let Some(value) = parse_value(tok) else {
                return Err(value_error(tok, key_raw));
            };
            (value, ve)
        };
        // Duplicate keys: the last value wins, in the first one's place. A key without
        // escapes is looked up by its text and built only when new.
        let escaped = kesc.then(|| unescape_slow(key_raw, is_field_key_escape, &mut sc.text));
        let key_bytes = escaped
            .as_ref()
            .map_or(key_raw.as_bytes(), |k| k.as_bytes());
        let fp = key_fingerprint(key_bytes);
        let dup = sc
            .field_fps
            .iter()
            .zip(&sc.fields)
            .position(|(&f, (k, _))| f == fp && k.as_bytes() == key_bytes);
        match (dup, escaped) {
            (Some(j), _) => sc.fields[j].1 = value,
            (None, Some(key)) => {
                sc.fields.push((key, value));
                sc.field_fps.push(fp);
            }
            (None, None) => {
                push_in_place(&mut sc.fields, || str_from(key_raw), || value);
                sc.field_fps.push(fp);
            }
        }
        i = ve;
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b' ') => break,
            None => break,
            Some(_) => {
                return Err(format!(
                    "invalid field value for field {key_raw:?}: unexpected text after string"
                ));
            }
        }
    }

    // Timestamp.
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    // Usually the rest of the line is just the timestamp: no need to look for its end.
    if let Some(t) = parse_int_strict(&s[i..]) {
        time = t
            .checked_mul(precision)
            .ok_or_else(|| format!("invalid timestamp {:?}: out of range", &s[i..]))?;
    } else if i < b.len() {
        let te = b[i..]
            .iter()
            .position(|&c| c == b' ' || c == b'\t')
            .map_or(b.len(), |p| i + p);
        let tok = &s[i..te];
        let t = parse_int_strict(tok).ok_or_else(|| format!("invalid timestamp {tok:?}"))?;
        time = t
            .checked_mul(precision)
            .ok_or_else(|| format!("invalid timestamp {tok:?}: out of range"))?;
        if b[te..].iter().any(|&c| c != b' ' && c != b'\t') {
            return Err(format!("unexpected text after timestamp {tok:?}"));
        }
    }
    if !sorted {
        // Of a repeated key the last value wins (as `Metric::add_tag`): the sort is stable,
        // and `dedup_by` keeps the first of a run, so it runs on the list reversed.
        sc.tags.sort_by(|a, b| a.0.cmp(&b.0));
        sc.tags.reverse();
        sc.tags.dedup_by(|a, b| a.0 == b.0);
        sc.tags.reverse();
    }
    if sc.spare.is_empty() && sc.refill > 0 {
        spare::take(sc.refill, &mut sc.spare);
        if sc.spare.is_empty() {
            // The pool is empty: not asked again during this input.
            sc.refill = 0;
        }
    }
    match sc.spare.pop() {
        Some(mut m) => {
            m.refill(name, &mut sc.tags, &mut sc.fields, time);
            out.push(m);
        }
        None => out.push(Metric {
            name,
            tags: take_exact(&mut sc.tags, &mut sc.tag_count),
            fields: take_exact(&mut sc.fields, &mut sc.field_count),
            time,
            kind: ValueType::Untyped,
        }),
    }
    Ok(())
}

/// `v.push((first(), second()))` with each half built where it is kept. Built on the stack
/// and then copied in, the pair was stored in 8-byte words and read back in 16-byte ones,
/// which stalls on store forwarding: about a tenth of the parse, per tag and field.
#[inline(always)]
fn push_in_place<A, B>(v: &mut Vec<(A, B)>, first: impl FnOnce() -> A, second: impl FnOnce() -> B) {
    v.reserve(1);
    let slot = v.spare_capacity_mut()[0].as_mut_ptr();
    // SAFETY: `slot` is spare capacity reserved above, and the length takes it in only once
    // both halves are written. (Were `second` to panic, `first`'s value would leak; no more.)
    unsafe {
        (&raw mut (*slot).0).write(first());
        (&raw mut (*slot).1).write(second());
        v.set_len(v.len() + 1);
    }
}

/// The scratch list itself when its capacity is exactly its length (then replaced by one of
/// the same size: lines of one shape in a row each hand theirs over and nothing is copied);
/// else a copy with exact capacity. Two lines in a row of one length trim the scratch list to
/// it, which starts the handing over; lines of changing lengths keep the largest list and copy.
#[inline]
fn take_exact<T>(scratch: &mut Vec<T>, prev_len: &mut usize) -> Vec<T> {
    let len = scratch.len();
    let same_len = std::mem::replace(prev_len, len) == len;
    if scratch.capacity() == len {
        return std::mem::replace(scratch, Vec::with_capacity(len));
    }
    let mut exact = Vec::with_capacity(len);
    exact.append(scratch);
    if same_len {
        scratch.shrink_to(len);
    }
    exact
}

/// `-?[0-9]+` as i64.
#[inline]
fn parse_int_strict(tok: &str) -> Option<i64> {
    let (neg, digits) = match tok.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, tok),
    };
    let v = parse_u64_digits(digits.as_bytes())?;
    if neg {
        // -(2^63) is the one value whose magnitude exceeds i64::MAX.
        (v <= i64::MAX as u64 + 1).then(|| (v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// `[0-9]+` as u64.
#[inline]
fn parse_u64_digits(d: &[u8]) -> Option<u64> {
    if d.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    if d.len() <= 19 {
        // 19 digits stay below 10^19 < 2^64: no overflow checks needed.
        let (chunks, rest) = d.as_chunks::<8>();
        for chunk in chunks {
            v = v * 100_000_000 + u64::from(eight_digits(chunk)?);
        }
        for &c in rest {
            let digit = c.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            v = v * 10 + u64::from(digit);
        }
        return Some(v);
    }
    for &c in d {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(digit))?;
    }
    Some(v)
}

/// Eight ASCII digits (most significant first) as a number, or `None` if any byte is not a
/// digit: SWAR, as in simdjson's `parse_eight_digits_unrolled`.
#[inline]
fn eight_digits(chunk: &[u8; 8]) -> Option<u32> {
    let v = u64::from_le_bytes(*chunk);
    // Every high nibble 3 (0x30..=0x3f) and, after adding 6, still 3 (so at most 0x39).
    // Adding 6 cannot carry between bytes once every byte is at most 0x3f.
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    if (v & HIGH) | ((v.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    Some(((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32) as u32)
}

/// Exact float parse for the common case (no exponent, at most 19 digits, mantissa below
/// 2^53, at most 22 decimals): one correctly rounded division (Clinger's fast path). `None`
/// sends the token to the general parser.
#[inline]
fn fast_float(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let neg = b.first() == Some(&b'-');
    let mut i = usize::from(neg);
    let (mut mant, mut nd, mut frac) = (0u64, 0u32, 0i32);
    while i < b.len() && b[i].is_ascii_digit() {
        mant = mant.wrapping_mul(10).wrapping_add(u64::from(b[i] - b'0'));
        nd += 1;
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            mant = mant.wrapping_mul(10).wrapping_add(u64::from(b[i] - b'0'));
            nd += 1;
            frac += 1;
            i += 1;
        }
    }
    if nd == 0 || nd > 19 || i != b.len() || mant >> 53 != 0 {
        return None;
    }
    let m = mant as f64;
    let v = match frac {
        0 => m,
        f if f <= 22 => m / POW10[f as usize],
        _ => return None,
    };
    Some(if neg { -v } else { v })
}

fn is_float_syntax(tok: &str) -> bool {
    let b = tok.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// A field value token as a value; `None` when it is not one (see `value_error`).
#[inline(always)]
fn parse_value(tok: &str) -> Option<FieldValue> {
    let bytes = tok.as_bytes();
    match *bytes.last()? {
        b'i' => return parse_int_strict(&tok[..tok.len() - 1]).map(FieldValue::Int),
        b'u' => return parse_u64_digits(&bytes[..bytes.len() - 1]).map(FieldValue::UInt),
        _ => {}
    }
    if let Some(v) = fast_float(bytes) {
        return Some(FieldValue::Float(v));
    }
    parse_value_other(tok)
}

/// Booleans and floats `fast_float` leaves to the general parser.
#[inline(never)]
fn parse_value_other(tok: &str) -> Option<FieldValue> {
    match tok {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(FieldValue::Bool(false)),
        _ => {}
    }
    if is_float_syntax(tok)
        && let Ok(v) = tok.parse::<f64>()
        && v.is_finite()
    {
        return Some(FieldValue::Float(v));
    }
    None
}

/// Why `parse_value` rejected `tok`.
#[cold]
fn value_error(tok: &str, key: &str) -> String {
    match tok.as_bytes() {
        [] => format!("missing field value for field {key:?}"),
        [.., b'i'] => format!("invalid integer {tok:?} in field {key:?}"),
        [.., b'u'] => format!("invalid unsigned integer {tok:?} in field {key:?}"),
        [c, ..] if c.is_ascii_digit() || *c == b'-' || *c == b'.' => {
            format!("invalid float {tok:?} in field {key:?}")
        }
        _ => format!("invalid field value {tok:?} in field {key:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(input: impl AsRef<[u8]>) -> (Vec<Metric>, Vec<ParseError>) {
        let mut out = Vec::new();
        let errs = parse(input.as_ref(), 1, 42, &mut out);
        (out, errs)
    }

    fn one(input: &str) -> Metric {
        let (m, e) = p(input);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(m.len(), 1, "{m:?}");
        m.into_iter().next().unwrap()
    }

    fn ser(m: &Metric) -> String {
        let mut out = Vec::new();
        write_metric(&mut out, m, &InfluxOptions::default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn basic_line() {
        let m = one("cpu,host=a,cpu=cpu0 usage=1.5,n=3i,u=4u,ok=true,s=\"hi\" 1700000000000000000");
        assert_eq!(m.name, "cpu");
        assert_eq!(
            m.tags,
            vec![("cpu".into(), "cpu0".into()), ("host".into(), "a".into())]
        );
        assert_eq!(m.field("usage"), Some(&FieldValue::Float(1.5)));
        assert_eq!(m.field("n"), Some(&FieldValue::Int(3)));
        assert_eq!(m.field("u"), Some(&FieldValue::UInt(4)));
        assert_eq!(m.field("ok"), Some(&FieldValue::Bool(true)));
        assert_eq!(m.field("s"), Some(&FieldValue::String("hi".into())));
        assert_eq!(m.time, 1_700_000_000_000_000_000);
    }

    #[test]
    fn no_timestamp_gets_now_and_precision_scales() {
        assert_eq!(one("m v=1").time, 42);
        let mut out = Vec::new();
        assert!(parse(b"m v=1 1700000000", 1_000_000_000, 0, &mut out).is_empty());
        assert_eq!(out[0].time, 1_700_000_000_000_000_000);
        let errs = parse(b"m v=1 99999999999999", 1_000_000_000, 0, &mut out);
        assert!(errs[0].message.contains("invalid timestamp"), "{errs:?}");
        assert_eq!(one("m v=1 -5").time, -5);
    }

    #[test]
    fn escapes_in_names_and_tags() {
        let m = one(r"my\ meas\,ure=x,t\ k\=1=v\,a\ l\=ue f\,i\=e\ ld=1");
        assert_eq!(m.name, "my meas,ure=x");
        assert_eq!(m.tags, vec![("t k=1".into(), "v,a l=ue".into())]);
        assert_eq!(m.fields[0].0, "f,i=e ld");
        // As InfluxDB 1.x reads them (each checked against InfluxDB 1.6): a backslash is kept,
        // and a separator right after one is part of the token.
        let m = one(r"a\\b,p=C:\temp\\ x,q=a\\\ b x\y=1");
        assert_eq!(m.name, r"a\\b");
        assert_eq!(m.tag("p"), Some(r"C:\temp\ x"));
        assert_eq!(m.tag("q"), Some(r"a\\ b"));
        assert_eq!(m.fields[0].0, r"x\y");
        assert_eq!(one(r"m,t=a\\=b f=1").tag("t"), Some(r"a\=b"));
        assert_eq!(one(r#"m,t=a\"b f=1"#).tag("t"), Some(r#"a\"b"#));
        assert_eq!(one(r#"m f\"k=1"#).fields[0].0, r#"f"k"#);
        assert_eq!(one(r"m f\\\=k=1").fields[0].0, r"f\\=k");
        assert_eq!(one(r#"m\"x f=1"#).name, r#"m\"x"#);
        // Tabs: whitespace between sections, part of a token otherwise (InfluxDB 1.6).
        let m = one("m2\tx,t=a\tb \tf=1,\tg=2 \t5");
        assert_eq!(m.name, "m2\tx");
        assert_eq!(m.tag("t"), Some("a\tb"));
        assert_eq!(m.fields[0].0, "f");
        assert_eq!(m.fields[1].0, "\tg");
        assert_eq!(m.time, 5);
        assert!(!p("m,t=x f=1\t1").1.is_empty());
        // InfluxDB refuses these: the separator after `\\` does not end the token.
        for bad in [
            r"m,t=x\\ f=1 1",
            r"m\\ f=1 1",
            r"m,t=x f\\=1 1",
            r"m,t\\=x f=1",
        ] {
            assert!(!p(bad).1.is_empty(), "{bad}");
        }
        // `=` needs no escape in a measurement; `\=` there stays literal.
        assert_eq!(one(r"a=b\=c v=1").name, r"a=b\=c");
    }

    #[test]
    fn string_fields() {
        let m = one(r#"m s="a \"q\" b\\c \d",t="""#);
        assert_eq!(
            m.field("s"),
            Some(&FieldValue::String(r#"a "q" b\c \d"#.into()))
        );
        assert_eq!(m.field("t"), Some(&FieldValue::String("".into())));
        // Separators inside strings do not split fields; newlines do not split lines.
        let (ms, e) = p("m s=\"a, b=c d\nnext\" 5\nm v=2\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(ms.len(), 2);
        assert_eq!(
            ms[0].field("s"),
            Some(&FieldValue::String("a, b=c d\nnext".into()))
        );
        assert_eq!(ms[0].time, 5);
        let (_, e) = p("m v=1\nm s=\"abc\nm v=3");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 2);
        assert!(e[0].message.contains("unterminated string"), "{e:?}");
    }

    #[test]
    fn numbers() {
        let m = one(
            "m a=1,b=-1.5e3,c=2E-2,d=.5,e=-0,f=9223372036854775807i,g=-9223372036854775808i,h=18446744073709551615u,k=1e+2",
        );
        assert_eq!(m.field("a"), Some(&FieldValue::Float(1.0)));
        assert_eq!(m.field("b"), Some(&FieldValue::Float(-1500.0)));
        assert_eq!(m.field("c"), Some(&FieldValue::Float(0.02)));
        assert_eq!(m.field("d"), Some(&FieldValue::Float(0.5)));
        assert_eq!(m.field("f"), Some(&FieldValue::Int(i64::MAX)));
        assert_eq!(m.field("g"), Some(&FieldValue::Int(i64::MIN)));
        assert_eq!(m.field("h"), Some(&FieldValue::UInt(u64::MAX)));
        assert_eq!(m.field("k"), Some(&FieldValue::Float(100.0)));
        for (line, reason) in [
            ("m v=9223372036854775808i", "invalid integer"),
            ("m v=1.5i", "invalid integer"),
            ("m v=-1u", "invalid unsigned"),
            ("m v=18446744073709551616u", "invalid unsigned"),
            ("m v=1x", "invalid float"),
            ("m v=1e", "invalid float"),
            ("m v=NaN", "invalid field value"),
            ("m v=inf", "invalid field value"),
            ("m v=+1", "invalid field value"),
            ("m v=1e999", "invalid float"),
            ("m v=yes", "invalid field value"),
        ] {
            let (ms, e) = p(line);
            assert!(ms.is_empty(), "{line}");
            assert!(e[0].message.contains(reason), "{line}: {e:?}");
        }
    }

    #[test]
    fn fast_float_matches_std() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            let bits = rng.u32(1..53);
            let int = rng.u64(0..1 << bits);
            let decimals = rng.usize(0..12);
            let frac: String = (0..decimals).map(|_| rng.digit(10)).collect();
            let tok = if decimals == 0 {
                format!("-{int}")
            } else {
                format!("{int}.{frac}")
            };
            let want: f64 = tok.parse().unwrap();
            if let Some(got) = fast_float(tok.as_bytes()) {
                assert_eq!(got.to_bits(), want.to_bits(), "{tok}");
            }
        }
        assert_eq!(fast_float(b"-"), None);
        assert_eq!(fast_float(b"1e5"), None);
        assert_eq!(fast_float(b"12345678901234567890"), None);
    }

    #[test]
    fn find_any_fast_path_matches_scalar() {
        // Random short lines over a small alphabet, so stop bytes are frequent and rare alike,
        // from every start offset: the SSE2 blocks (and the overlapping last block) must agree
        // with the plain scan.
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet = b"ab,= \\\"\n0";
        for _ in 0..20_000 {
            let len = rng.usize(0..70);
            let dense = rng.usize(1..alphabet.len());
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.usize(0..8) == 0 {
                        alphabet[rng.usize(0..dense)]
                    } else {
                        b'x'
                    }
                })
                .collect();
            for stops in [
                MEASUREMENT_STOPS,
                KEY_STOPS,
                TAG_VALUE_STOPS,
                STRING_STOPS,
                FIELD_VALUE_STOPS,
            ] {
                for i in 0..=len {
                    assert_eq!(
                        find_any(&b, i, stops),
                        find_any_scalar(&b, i, stops),
                        "{:?} from {i}",
                        String::from_utf8_lossy(&b)
                    );
                }
            }
        }
    }

    #[test]
    fn has_any_fast_path_matches_scalar() {
        let mut rng = fastrand::Rng::with_seed(3);
        let rare = b",= \\\"\n\t\r\x0c\x01\x0e\x80\xff";
        for _ in 0..50_000 {
            let len = rng.usize(0..50);
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.usize(0..len.max(1) * 2) == 0 {
                        rare[rng.usize(0..rare.len())]
                    } else {
                        rng.u8(b'a'..=b'z')
                    }
                })
                .collect();
            for stops in [MEASUREMENT_STOPS, KEY_STOPS, STRING_STOPS] {
                for ctrl in [false, true] {
                    assert_eq!(
                        has_any(&b, stops, ctrl),
                        has_any_scalar(&b, stops, ctrl),
                        "{b:?} {stops:?} {ctrl}"
                    );
                }
            }
        }
    }

    #[test]
    fn whole_floats_written_as_ryu_would() {
        let ryu_text = |v: f64| {
            let mut buf = ryu::Buffer::new();
            let s = buf.format_finite(v).to_string();
            s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
        };
        let mut rng = fastrand::Rng::with_seed(9);
        let mut cases = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            999_999_999_999_999.0,
            1e15,
            -1e15,
            1e16,
        ];
        for _ in 0..100_000 {
            let v = rng.i64(-(1 << 53)..1 << 53) as f64 / 10f64.powi(rng.i32(0..6));
            cases.push(v.trunc());
            cases.push(v);
        }
        for v in cases {
            let mut out = Vec::new();
            write_float(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), ryu_text(v), "{v:?}");
        }
    }

    #[test]
    fn digits_match_std() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..100_000 {
            let len = rng.usize(1..22);
            let mut tok: Vec<u8> = (0..len).map(|_| b'0' + rng.u8(0..10)).collect();
            if rng.usize(0..4) == 0 {
                // One byte that is not a digit, including neighbours of '0' and '9'.
                let at = rng.usize(0..len);
                tok[at] = [b'/', b':', b'a', b' ', 0x80, 0xff, 0x3a, 0x2f][rng.usize(0..8)];
            }
            let text = std::str::from_utf8(&tok).unwrap_or("x");
            assert_eq!(parse_u64_digits(&tok), text.parse::<u64>().ok(), "{tok:?}");
        }
        assert_eq!(eight_digits(b"12345678"), Some(12_345_678));
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        assert_eq!(eight_digits(b"1234567:"), None);
        assert_eq!(parse_u64_digits(b""), None);
        assert_eq!(parse_u64_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64_digits(b"18446744073709551616"), None);
    }

    #[test]
    fn booleans() {
        for t in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(one(&format!("m v={t}")).fields[0].1, FieldValue::Bool(true));
        }
        for f in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(
                one(&format!("m v={f}")).fields[0].1,
                FieldValue::Bool(false)
            );
        }
        assert!(!p("m v=tRUE").1.is_empty());
    }

    #[test]
    fn comments_blank_lines_crlf_and_line_numbers() {
        let input =
            "# comment \"quoted\n\r\n   \n  # indented\nm v=1 10\r\nbad\r\nm,t=1 v=2\r\nm v=\r\n";
        let (ms, e) = p(input);
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].time, 10);
        assert_eq!(ms[1].tag("t"), Some("1"));
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!((e[0].line, e[0].message.as_str()), (6, "missing fields"));
        assert_eq!(e[1].line, 8);
        assert!(e[1].message.contains("missing field value"));
    }

    #[test]
    fn errors_carry_on() {
        // Lines 5 and 7 fail after a tag or field was read: none of it may reach the next line.
        let (ms, e) = p(b"m,t= v=1\nm,=x v=1\nm,t v=1\n,t=1 v=1\nm,a=1 v=1 abc\nm v=1 1 2\nm,b=2 v=\"x\"y\nm =1\nm\xff v=1\nok v=1");
        assert_eq!(ms.len(), 1);
        assert_eq!((ms[0].name.as_str(), &ms[0].tags[..]), ("ok", &[][..]));
        assert_eq!(ms[0].fields, vec![("v".into(), FieldValue::Float(1.0))]);
        let reasons: Vec<_> = e.iter().map(|e| (e.line, e.message.clone())).collect();
        assert_eq!(reasons.len(), 9, "{reasons:?}");
        assert!(reasons[0].1.starts_with("missing tag value"));
        assert!(reasons[1].1.starts_with("missing tag key"));
        assert!(reasons[2].1.starts_with("missing tag value"));
        assert!(reasons[3].1.starts_with("missing measurement"));
        assert!(reasons[4].1.starts_with("invalid timestamp"));
        assert!(reasons[5].1.starts_with("unexpected text after timestamp"));
        assert!(reasons[6].1.contains("unexpected text after string"));
        assert!(reasons[7].1.starts_with("missing field key"));
        assert_eq!(reasons[8], (9, "invalid UTF-8".to_string()));
    }

    /// Parsed metrics hold no spare capacity (they may wait in batches), whether the scratch
    /// lists were handed over (runs of one shape) or copied (shapes changing).
    #[test]
    fn parsed_lines_of_changing_shapes_keep_their_own_tags_and_fields() {
        let mut input = String::new();
        for i in 0..6 {
            input.push_str(&format!("a,x=1,y=2 f=1,g=2 {i}\n"));
        }
        for i in 0..6 {
            if i % 2 == 0 {
                input.push_str("b,x=1 f=1\n");
            } else {
                input.push_str("c,x=1,y=2,z=3,w=4 f=1,g=2,h=3 5\n");
            }
        }
        input.push_str("d f=1\nd f=1\nd,x=1 f=1,g=2\nbad line\ne,x=1,y=2,z=3 f=1\n");
        let (metrics, errors) = p(&input);
        assert_eq!((metrics.len(), errors.len()), (16, 1));
        let counts: Vec<_> = metrics
            .iter()
            .map(|m| (m.tags.len(), m.fields.len()))
            .collect();
        let mut want = vec![(2, 2); 6];
        want.extend([(1, 1), (4, 3)].repeat(3));
        want.extend([(0, 1), (0, 1), (1, 2), (3, 1)]);
        assert_eq!(counts, want);
        assert_eq!(metrics[0].tags, metrics[5].tags);
    }

    /// Lists a parse hands over hold no spare capacity when no kept metric is refilled. (With
    /// the process's spare pool, which tests on other threads fill, a metric keeps the lists it
    /// is refilled with: this is tested on `take_exact` itself, not through `parse`.)
    #[test]
    fn take_exact_hands_over_lists_of_exact_capacity() {
        let mut scratch: Vec<u32> = Vec::new();
        let mut prev_len = 0;
        for len in [2, 2, 2, 1, 4, 1, 4, 0, 0, 1, 3, 3, 3] {
            scratch.extend(0..len as u32);
            let list = take_exact(&mut scratch, &mut prev_len);
            assert_eq!(list, (0..len as u32).collect::<Vec<_>>());
            assert_eq!(list.capacity(), len, "{len}");
            assert!(scratch.is_empty());
        }
    }

    #[test]
    fn duplicate_fields_last_wins_and_tags_sorted() {
        let m = one("m,z=1,a=2 v=1,w=2,v=3");
        assert_eq!(m.tags[0].0, "a");
        // Sorted by the keys as read: `\ b` is " b", before "A" (its raw `\` is after).
        let tags = |m: Metric| {
            m.tags
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(tags(one(r"m,A=1,\ b=2 f=1")), [" b=2", "A=1"]);
        assert_eq!(tags(one(r"m,\ b=2,A=1 f=1")), [" b=2", "A=1"]);
        // A tag key given twice: the last value wins.
        assert_eq!(tags(one("m,t=1,u=0,t=2 f=1")), ["t=2", "u=0"]);
        assert_eq!(tags(one("m,t=1,t=2 f=1")), ["t=2"]);
        // Escaped field keys are compared unescaped, with the plain ones.
        let fields = one(r"m a\ b=1,c=2i,a\ b=3,c=4i,d=5").fields;
        assert_eq!(
            fields,
            [
                ("a b".into(), FieldValue::Float(3.0)),
                ("c".into(), FieldValue::Int(4)),
                ("d".into(), FieldValue::Float(5.0)),
            ]
        );
        assert_eq!(
            m.fields,
            vec![
                ("v".into(), FieldValue::Float(3.0)),
                ("w".into(), FieldValue::Float(2.0))
            ]
        );
    }

    #[test]
    fn extra_spaces_and_trailing_whitespace() {
        let m = one("  m,t=1   v=1   7  \t");
        assert_eq!((m.name.as_str(), m.time), ("m", 7));
    }

    #[test]
    fn serialize_escapes_and_round_trips() {
        let m = Metric::new("my meas,ure=x", 7)
            .with_tag("t k=1", "v,a l=ue")
            .with_tag("path", r"C:\temp\ x")
            .with_tag("q", r"a\\ b")
            .with_field("f,i=e ld", 1.0)
            .with_field(r"x\y", 2i64)
            .with_field(r#"k\"q"#, 3i64)
            .with_field("s", r#"a "q" b\c"#)
            .with_field("u", u64::MAX)
            .with_field("b", false);
        let line = ser(&m);
        assert_eq!(
            line,
            "my\\ meas\\,ure=x,path=C:\\temp\\\\ x,q=a\\\\\\ b,t\\ k\\=1=v\\,a\\ l\\=ue f\\,i\\=e\\ ld=1,x\\y=2i,k\\\\\"q=3i,s=\"a \\\"q\\\" b\\\\c\",u=18446744073709551615u,b=false 7\n"
        );
        assert_eq!(one(&line), m);
        // Trailing backslashes cannot be written: trimmed, as Telegraf does.
        let m = Metric::new(r"m\", 1)
            .with_tag(r"t\", r"v\\")
            .with_tag("e", r"\")
            .with_field(r"f\", 1i64);
        assert_eq!(ser(&m), "m,t=v f=1i 1\n");
    }

    #[test]
    fn string_values_keep_line_breaks_inside_quotes() {
        // InfluxDB has no escape for a line break in a string field value: its parsers
        // (1.x/2.x `scanLine`, InfluxDB 3's `split_lines`) keep a raw `\n` between quotes in
        // the line and store it as is, while `\n` written as two characters (Telegraf's
        // escape) is stored as a backslash and an `n` (checked against InfluxDB 1.6). So the
        // break is written raw, and everything that splits lines must honour quotes.
        let m = Metric::new("m", 5)
            .with_field("s", "two\nlines, a=\"b\" \\\r\n")
            .with_field("v", 1i64);
        let line = ser(&m);
        assert_eq!(line, "m s=\"two\nlines, a=\\\"b\\\" \\\\\r\n\",v=1i 5\n");
        let (back, errs) = p(format!("{line}{line}"));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(back, vec![m.clone(), m.clone()]);
        let oracle: Vec<_> = influxdb_line_protocol::parse_lines(&line)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(oracle.len(), 1);
        match oracle[0].field_value("s") {
            Some(influxdb_line_protocol::FieldValue::String(s)) => {
                assert_eq!(s.as_str(), "two\nlines, a=\"b\" \\\r\n")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn filtered_write_skips_tags_and_timestamp() {
        let m = Metric::new("m", 5)
            .with_tag("db", "x")
            .with_tag("host", "h")
            .with_field("s", "a\nb")
            .with_field("v", 1.5);
        let mut out = Vec::new();
        let skip = ["db".to_string()];
        write_metric_filtered(&mut out, &m, &InfluxOptions::default(), &skip, true);
        assert_eq!(out, b"m,host=h s=\"a\nb\",v=1.5\n");
        out.clear();
        write_metric_filtered(&mut out, &m, &InfluxOptions::default(), &skip, false);
        assert_eq!(out, b"m,host=h s=\"a\nb\",v=1.5 5\n");
        // Split lines each lose their timestamp.
        out.clear();
        let opts = InfluxOptions {
            max_line_bytes: 12,
            ..Default::default()
        };
        write_metric_filtered(&mut out, &m, &opts, &[], true);
        assert_eq!(out, b"m,db=x,host=h s=\"a\nb\"\nm,db=x,host=h v=1.5\n");
    }

    #[test]
    fn serialize_skips_non_finite_and_unencodable() {
        let m = Metric::new("m", 1)
            .with_field("a", f64::NAN)
            .with_field("b", 2.0);
        assert_eq!(ser(&m), "m b=2 1\n");
        let m = Metric::new("m", 1).with_field("a", f64::INFINITY);
        assert_eq!(ser(&m), "");
        assert_eq!(ser(&Metric::new("", 1).with_field("a", 1.0)), "");
        assert_eq!(ser(&Metric::new("#x", 1).with_field("a", 1.0)), "");
        let m = Metric::new("m", 1).with_tag("e", "").with_field("a", 1.0);
        assert_eq!(ser(&m), "m a=1 1\n");
        let m = Metric::new("m\nx", 1)
            .with_tag("t", "a\tb")
            .with_field("a", 1.0);
        assert_eq!(ser(&m), "m\\nx,t=a\\tb a=1 1\n");
    }

    #[test]
    fn serialize_floats_round_trip() {
        for v in [
            0.1,
            1e21,
            1e-7,
            -0.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            123456789.123,
        ] {
            let line = ser(&Metric::new("m", 0).with_field("v", v));
            assert_eq!(one(&line).fields[0].1, FieldValue::Float(v), "{line}");
        }
    }

    #[test]
    fn serialize_uint_without_support_clamps() {
        let opts = InfluxOptions {
            uint_support: false,
            ..Default::default()
        };
        let mut out = Vec::new();
        write_metric(
            &mut out,
            &Metric::new("m", 0)
                .with_field("a", u64::MAX)
                .with_field("b", 5u64),
            &opts,
        );
        assert_eq!(out, b"m a=9223372036854775807i,b=5i 0\n");
    }

    #[test]
    fn serialize_sort_fields_and_max_line_bytes() {
        let m = Metric::new("m", 5)
            .with_tag("t", "1")
            .with_field("c", 3i64)
            .with_field("a", 1i64)
            .with_field("b", 2i64);
        let mut out = Vec::new();
        write_metric(
            &mut out,
            &m,
            &InfluxOptions {
                sort_fields: true,
                ..Default::default()
            },
        );
        assert_eq!(out, b"m,t=1 a=1i,b=2i,c=3i 5\n");
        out.clear();
        // "m,t=1 c=3i,a=1i 5\n" is 18 bytes: a limit of 18 fits two fields per line.
        write_metric(
            &mut out,
            &m,
            &InfluxOptions {
                max_line_bytes: 18,
                ..Default::default()
            },
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "m,t=1 c=3i,a=1i 5\nm,t=1 b=2i 5\n"
        );
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.len() < 18);
        }
        // A field longer than the limit still goes out, alone on its line.
        out.clear();
        write_metric(
            &mut out,
            &m,
            &InfluxOptions {
                max_line_bytes: 5,
                ..Default::default()
            },
        );
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// Text made of the characters line protocol treats specially, plus plain and
        /// multi-byte ones.
        fn text(min: usize) -> impl Strategy<Value = String> {
            let chars = prop::sample::select(vec![
                'a', 'b', 'Z', '0', '9', '_', '.', '-', ' ', ',', '=', '"', '\\', '\'', '#', 'é',
                '✓', '💡', 'i', 'u', 't', 'e',
            ]);
            prop::collection::vec(chars, min..12).prop_map(|v| v.into_iter().collect())
        }

        /// String field values may also hold line breaks and tabs.
        fn string_value() -> impl Strategy<Value = String> {
            let chars = prop::sample::select(vec![
                'a', ' ', ',', '=', '"', '\\', '\n', '\r', '\t', 'é', '💡', 'n',
            ]);
            prop::collection::vec(chars, 0..12).prop_map(|v| v.into_iter().collect())
        }

        fn value() -> impl Strategy<Value = FieldValue> {
            prop_oneof![
                any::<f64>()
                    .prop_filter("finite", |v| v.is_finite())
                    .prop_map(FieldValue::Float),
                prop::sample::select(vec![
                    0.0,
                    -0.0,
                    1e21,
                    1e-7,
                    -1.5e300,
                    f64::MAX,
                    f64::MIN,
                    f64::MIN_POSITIVE,
                    5e-324,
                    0.1,
                    123456789.125,
                ])
                .prop_map(FieldValue::Float),
                any::<i64>().prop_map(FieldValue::Int),
                prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]).prop_map(FieldValue::Int),
                any::<u64>().prop_map(FieldValue::UInt),
                prop::sample::select(vec![u64::MAX, 0]).prop_map(FieldValue::UInt),
                any::<bool>().prop_map(FieldValue::Bool),
                string_value().prop_map(|s| FieldValue::String(s.into())),
            ]
        }

        /// Names, keys and tag values line protocol can carry: not ending with a backslash
        /// (the serializer trims those).
        fn token() -> impl Strategy<Value = String> {
            text(1).prop_filter("no trailing backslash", |s| !s.ends_with('\\'))
        }

        fn metric() -> impl Strategy<Value = Metric> {
            (
                token().prop_filter("not a comment", |s| !s.starts_with('#')),
                prop::collection::vec((token(), token()), 0..5),
                prop::collection::vec((token(), value()), 1..8),
                any::<i64>(),
            )
                .prop_map(|(name, tags, fields, time)| {
                    let mut m = Metric::new(name, time);
                    for (k, v) in tags {
                        m.add_tag(k, v);
                    }
                    for (k, v) in fields {
                        m.add_field(k, v);
                    }
                    m
                })
        }

        /// Equal, floats compared by bits (so -0.0 must stay -0.0).
        fn same(a: &Metric, b: &Metric) -> bool {
            a.name == b.name
                && a.tags == b.tags
                && a.time == b.time
                && a.fields.len() == b.fields.len()
                && a.fields.iter().zip(&b.fields).all(|((ka, va), (kb, vb))| {
                    ka == kb
                        && match (va, vb) {
                            (FieldValue::Float(x), FieldValue::Float(y)) => {
                                x.to_bits() == y.to_bits()
                            }
                            _ => va == vb,
                        }
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(
                input in prop::collection::vec(any::<u8>(), 0..200),
                precision in prop::sample::select(vec![1i64, 1_000, 1_000_000_000]),
            ) {
                let mut out = Vec::new();
                let errs = parse(&input, precision, 0, &mut out);
                let lines = input.iter().filter(|&&b| b == b'\n').count() + 1;
                prop_assert!(out.len() + errs.len() <= lines);
                for e in &errs {
                    prop_assert!(e.line >= 1 && e.line <= lines, "{e:?}");
                }
                for m in &out {
                    prop_assert!(!m.fields.is_empty());
                    prop_assert!(m.tags.windows(2).all(|w| w[0].0 < w[1].0));
                }
            }

            #[test]
            fn line_protocol_shaped_bytes_never_panic(
                parts in prop::collection::vec(
                    prop::sample::select(vec![
                        "m", ",", "=", " ", "\"", "\\", "\n", "\r", "\t", "#", "1", "-", ".", "e",
                        "i", "u", "t", "f", "true", "1.5", "9223372036854775808", "é", "\u{0}",
                    ]),
                    0..60,
                ),
            ) {
                let input = parts.concat();
                let mut out = Vec::new();
                let _ = parse(input.as_bytes(), 1, 0, &mut out);
            }

            /// Parsing in parts of `k` lines (as the listeners do) gives the
            /// metrics, errors and error line numbers of parsing the whole input at once,
            /// also when a string field's line breaks or a bad line fall on a boundary.
            #[test]
            fn chunks_parse_like_the_whole(
                parts in prop::collection::vec(
                    prop::sample::select(vec![
                        "m v=1\n", "m,t=a v=2i 5\n", "s v=\"a\nb\nc\" 7\n", "bad\n", "\n",
                        "# c\n", "x v=\"q\\\"\n\" 1\n", "y v=1\r\n", "z v=t", " m v=3 9\n",
                        // Series again, with their tags unsorted or repeated, or followed
                        // by a bad field.
                        "m,b=2,a=1 v=1,w=2i 5\n", "m,a=1,a=2,c=3 v=1u 6\n", "m,t=a v=1,\n",
                        "m,t=a,u=\"q\" v=3 1\n", "m,t= v=1\n",
                    ]),
                    0..40,
                ),
                k in 1usize..6,
            ) {
                let input = parts.concat();
                let b = input.as_bytes();
                let (mut whole, mut chunked) = (Vec::new(), Vec::new());
                let want = parse(b, 1, 0, &mut whole);
                let mut got = Vec::new();
                let mut lines = Lines::new(b);
                while !lines.is_done() {
                    let pos = lines.pos();
                    got.extend(lines.parse_next(k, 0, 1, 0, &mut chunked));
                    prop_assert!(lines.pos() > pos);
                }
                prop_assert_eq!(chunked, whole);
                prop_assert_eq!(
                    got.iter().map(|e| (e.line, &e.message)).collect::<Vec<_>>(),
                    want.iter().map(|e| (e.line, &e.message)).collect::<Vec<_>>()
                );
            }

            /// Lines written straight into records (the listeners' direct route) read back
            /// as the metrics parsing gives, with the same tags put in, and the same errors
            /// on the same lines: lines of every kind, escaped and quoted ones included.
            #[test]
            fn writing_records_reads_like_parsing(
                metrics in prop::collection::vec(metric(), 0..4),
                parts in prop::collection::vec(
                    prop::sample::select(vec![
                        "m v=1\n", "m,t=a v=2i 5\n", "m,b=2,a=1 v=1,v=2i,w=t 5\n",
                        "m,a=1,a=2,c=3 v=1u 6\n", "m v=1 5 \n", "m v=1 99999999999999999999\n",
                        "m v=1 12x\n", "m v=1,\n", "m,t= v=1\n", "\tm v=-3.5e3,x=F  -7\n",
                        "m  v=1\n", "s v=\"a\nb\" 7\n", "bad\n", "\n", "# c\n", "y v=1\r\n",
                        "z v=t", "e\\ x,k\\,=v\\ w v=1 3\n", "m,host=h,zz=9 v=1 4\n", "m v=1e400\n",
                    ]),
                    0..30,
                ),
                k in 1usize..5,
                chunk in 1usize..4,
                precision in prop::sample::select(vec![1i64, 1_000]),
                overrides in prop::collection::vec((token(), token()), 0..2),
                added in prop::collection::vec((token(), token()), 0..3),
            ) {
                let mut input = Vec::new();
                for m in &metrics {
                    write_metric(&mut input, m, &InfluxOptions { uint_support: true, ..Default::default() });
                }
                input.extend_from_slice(parts.concat().as_bytes());
                let overrides: Vec<(&str, &str)> =
                    overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let added: Vec<(Str, Str)> =
                    added.iter().map(|(k, v)| (Str::from(k.as_str()), Str::from(v.as_str()))).collect();
                // Twice through one writer, which keeps the series it has seen: the second
                // time with a tag replaced, which those series must not keep.
                let mut w = Writer::default();
                let second: Vec<(&str, &str)> = overrides.iter().copied().chain([("t", "o")]).collect();
                for overrides in [&overrides, &second] {
                    let mut want = Vec::new();
                    let want_errors = parse(&input, precision, 42, &mut want);
                    for m in &mut want {
                        for (k, v) in overrides {
                            m.add_tag(*k, *v);
                        }
                        for (k, v) in &added {
                            m.add_tag_if_absent(k.as_str(), v.as_str());
                        }
                    }
                    let (mut records, mut errors) = (Vec::new(), Vec::new());
                    let mut lines = Lines::new(&input);
                    while !lines.is_done() {
                        errors.extend(lines.write_next(
                            k, 0, precision, 42, overrides, &added, chunk, &mut w, &mut records,
                        ));
                    }
                    records.extend(w.take_record());
                    let mut got = Vec::new();
                    for r in &records {
                        prop_assert!(r.count as usize <= chunk);
                        let before = got.len();
                        crate::codec::record::decode(&r.data, &mut got).unwrap();
                        prop_assert_eq!(got.len() - before, r.count as usize);
                    }
                    prop_assert_eq!(got.len(), want.len());
                    for (a, b) in got.iter().zip(&want) {
                        prop_assert!(same(a, b) && a.kind == b.kind, "{a:?} != {b:?}");
                    }
                    prop_assert_eq!(
                        errors.iter().map(|e| (e.line, &e.message)).collect::<Vec<_>>(),
                        want_errors.iter().map(|e| (e.line, &e.message)).collect::<Vec<_>>()
                    );
                }
            }

            /// Metrics kept from earlier batches (other names, tags, fields, kinds) that the
            /// parser refills change nothing in what it gives.
            #[test]
            fn parsing_into_kept_metrics_is_the_same(
                batch in prop::collection::vec(metric(), 1..6),
                kept in prop::collection::vec(metric(), 0..12),
            ) {
                let mut buf = Vec::new();
                for m in &batch {
                    write_metric(&mut buf, m, &InfluxOptions { uint_support: true, ..Default::default() });
                }
                spare::take(usize::MAX, &mut Vec::new());
                let mut fresh = Vec::new();
                parse(&buf, 1, 0, &mut fresh);
                spare::take(usize::MAX, &mut Vec::new());
                spare::give_back(kept.into_iter().map(|m| m.with_kind(ValueType::Counter)).collect());
                let mut refilled = Vec::new();
                parse(&buf, 1, 0, &mut refilled);
                prop_assert_eq!(fresh.len(), refilled.len());
                for (a, b) in fresh.iter().zip(&refilled) {
                    prop_assert!(same(a, b) && a.kind == b.kind, "{a:?} != {b:?}");
                }
            }

            #[test]
            fn serialized_metrics_parse_back_exactly(
                batch in prop::collection::vec(metric(), 1..5),
            ) {
                let mut buf = Vec::new();
                let opts = InfluxOptions { uint_support: true, ..Default::default() };
                for m in &batch {
                    write_metric(&mut buf, m, &opts);
                }
                let mut out = Vec::new();
                let errs = parse(&buf, 1, 0, &mut out);
                let text = String::from_utf8_lossy(&buf);
                prop_assert!(errs.is_empty(), "{errs:?} in {text:?}");
                prop_assert_eq!(out.len(), batch.len(), "{}", text);
                for (got, want) in out.iter().zip(&batch) {
                    prop_assert!(same(got, want), "{got:?} != {want:?} via {text:?}");
                }
                // InfluxDB 3's own parser reads the same values where no backslash or quote is
                // in a token (it reads `\\` as one backslash and keeps `\"` in field keys).
                let has_bs = |m: &Metric| {
                    m.name.contains('\\')
                        || m.tags.iter().any(|(k, v)| k.contains('\\') || v.contains('\\'))
                        || m.fields.iter().any(|(k, _)| k.contains(['\\', '"']))
                };
                if batch.iter().any(has_bs) {
                    return Ok(());
                }
                let lines: Vec<_> = influxdb_line_protocol::parse_lines(std::str::from_utf8(&buf).unwrap())
                    .collect::<Result<_, _>>()
                    .map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
                prop_assert_eq!(lines.len(), batch.len());
                for (line, want) in lines.iter().zip(&batch) {
                    prop_assert_eq!(line.series.measurement.as_str(), want.name.as_str());
                    let tags: Vec<(String, String)> = line.series.tag_set.iter().flatten()
                        .map(|(k, v)| (k.to_string(), v.to_string())).collect();
                    let want_tags: Vec<(String, String)> = want.tags.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())).collect();
                    prop_assert_eq!(tags, want_tags);
                    prop_assert_eq!(line.timestamp, Some(want.time));
                    prop_assert_eq!(line.field_set.len(), want.fields.len());
                    for ((k, v), (wk, wv)) in line.field_set.iter().zip(&want.fields) {
                        prop_assert_eq!(k.as_str(), wk.as_str());
                        use influxdb_line_protocol::FieldValue as O;
                        let ok = match (v, wv) {
                            (O::F64(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
                            (O::I64(x), FieldValue::Int(y)) => x == y,
                            (O::U64(x), FieldValue::UInt(y)) => x == y,
                            (O::Boolean(x), FieldValue::Bool(y)) => x == y,
                            (O::String(x), FieldValue::String(y)) => x.as_str() == y.as_str(),
                            _ => false,
                        };
                        prop_assert!(ok, "{k}: {v:?} vs {wv:?} in {text:?}");
                    }
                }
            }
        }
    }
}
