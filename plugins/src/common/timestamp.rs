//! Telegraf's timestamp formats, shared by the `json` data format (`json_time_format`,
//! `json_timezone`) and `processors.converter` (`timestamp_format`).
//!
//! A format is `unix`, `unix_ms`, `unix_us`, `unix_ns` (a number, or a decimal string, of that
//! unit), one of Go's named layouts (`RFC3339`, `RFC3339Nano`, `ANSIC`, `UnixDate`, `RubyDate`,
//! `RFC822`, `RFC822Z`, `RFC850`, `RFC1123`, `RFC1123Z`, `Stamp`, `StampMilli`, `StampMicro`,
//! `StampNano`, any case), or a Go reference layout such as `2006-01-02T15:04:05Z07:00` or
//! `01/02/2006 15:04:05`, read with Go's `time.Parse` rules: every element of the reference time
//! `Mon Jan 2 15:04:05 MST 2006` (`2006` `06` `January` `Jan` `01` `1` `02` `_2` `2` `002`
//! `Monday` `Mon` `15` `03` `3` `04` `4` `05` `5` `PM` `pm` `.000`/`.999` fractions, `Z07:00`
//! `-0700` and the other offsets, `MST` zone names); runs of spaces match runs of spaces; a
//! fraction after the seconds is accepted even when the layout has none. A time without an
//! offset is read in the given location (`UTC`, `Local`, or an IANA name read from the system's
//! zoneinfo files); a zone abbreviation that is not the location's is read as UTC, as Go does.

use super::time::days_from_civil;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFormat {
    /// Nanoseconds per unit: unix (1e9), unix_ms, unix_us, unix_ns.
    Unix(i64),
    Layout(Vec<Chunk>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Lit(String),
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    /// `MST`.
    Tz,
    /// Offsets: `Z` prefix allowed, number of parts (h, hm, hms), colons.
    Offset {
        z: bool,
        parts: u8,
        colon: bool,
    },
    /// `.000` (exact digits) or `.999` (optional, any digits).
    Frac {
        digits: usize,
        optional: bool,
    },
}

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl TimeFormat {
    /// Telegraf's format names; anything else is a Go layout.
    pub fn from_name(s: &str) -> Result<Self, String> {
        let named = match s.to_ascii_lowercase().as_str() {
            "unix" => return Ok(TimeFormat::Unix(1_000_000_000)),
            "unix_ms" => return Ok(TimeFormat::Unix(1_000_000)),
            "unix_us" => return Ok(TimeFormat::Unix(1_000)),
            "unix_ns" => return Ok(TimeFormat::Unix(1)),
            "" => return Err("a time format is required".into()),
            "ansic" => "Mon Jan _2 15:04:05 2006",
            "unixdate" => "Mon Jan _2 15:04:05 MST 2006",
            "rubydate" => "Mon Jan 02 15:04:05 -0700 2006",
            "rfc822" => "02 Jan 06 15:04 MST",
            "rfc822z" => "02 Jan 06 15:04 -0700",
            "rfc850" => "Monday, 02-Jan-06 15:04:05 MST",
            "rfc1123" => "Mon, 02 Jan 2006 15:04:05 MST",
            "rfc1123z" => "Mon, 02 Jan 2006 15:04:05 -0700",
            "rfc3339" => "2006-01-02T15:04:05Z07:00",
            "rfc3339nano" => "2006-01-02T15:04:05.999999999Z07:00",
            "stamp" => "Jan _2 15:04:05",
            "stampmilli" => "Jan _2 15:04:05.000",
            "stampmicro" => "Jan _2 15:04:05.000000",
            "stampnano" => "Jan _2 15:04:05.000000000",
            _ => s,
        };
        let chunks = layout_chunks(named);
        if !chunks.iter().any(|c| !matches!(c, Chunk::Lit(_))) {
            return Err(format!(
                "time format {s:?} is neither unix, unix_ms, unix_us, unix_ns nor a Go layout of the reference time \"2006-01-02T15:04:05Z07:00\""
            ));
        }
        Ok(TimeFormat::Layout(chunks))
    }
}

/// Splits a Go layout into literals and elements (Go's `nextStdChunk`).
fn layout_chunks(layout: &str) -> Vec<Chunk> {
    let b = layout.as_bytes();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let at = |i: usize, s: &str| b[i..].starts_with(s.as_bytes());
    while i < b.len() {
        let (chunk, len) = match b[i] {
            b'J' if at(i, "January") => (Some(Chunk::LongMonth), 7),
            b'J' if at(i, "Jan") => (Some(Chunk::Month), 3),
            b'M' if at(i, "Monday") => (Some(Chunk::LongWeekDay), 6),
            b'M' if at(i, "Mon") => (Some(Chunk::WeekDay), 3),
            b'M' if at(i, "MST") => (Some(Chunk::Tz), 3),
            b'0' if at(i, "002") => (Some(Chunk::ZeroYearDay), 3),
            b'0' if b.get(i + 1).is_some_and(|c| (b'1'..=b'6').contains(c)) => (
                Some(match b[i + 1] {
                    b'1' => Chunk::ZeroMonth,
                    b'2' => Chunk::ZeroDay,
                    b'3' => Chunk::ZeroHour12,
                    b'4' => Chunk::ZeroMinute,
                    b'5' => Chunk::ZeroSecond,
                    _ => Chunk::Year,
                }),
                2,
            ),
            b'1' if at(i, "15") => (Some(Chunk::Hour), 2),
            b'1' => (Some(Chunk::NumMonth), 1),
            b'2' if at(i, "2006") => (Some(Chunk::LongYear), 4),
            b'2' => (Some(Chunk::Day), 1),
            b'_' if at(i, "_2006") => (None, 1),
            b'_' if at(i, "__2") => (Some(Chunk::UnderYearDay), 3),
            b'_' if at(i, "_2") => (Some(Chunk::UnderDay), 2),
            b'3' => (Some(Chunk::Hour12), 1),
            b'4' => (Some(Chunk::Minute), 1),
            b'5' => (Some(Chunk::Second), 1),
            b'P' if at(i, "PM") => (Some(Chunk::PM), 2),
            b'p' if at(i, "pm") => (Some(Chunk::Pm), 2),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let rest = &layout[i + 1..];
                let found = [
                    ("070000", 3, false),
                    ("07:00:00", 3, true),
                    ("0700", 2, false),
                    ("07:00", 2, true),
                    ("07", 1, false),
                ]
                .into_iter()
                .find(|(p, _, _)| rest.starts_with(p));
                match found {
                    Some((p, parts, colon)) => {
                        (Some(Chunk::Offset { z, parts, colon }), 1 + p.len())
                    }
                    None => (None, 1),
                }
            }
            b'.' | b',' if b.get(i + 1).is_some_and(|&c| c == b'0' || c == b'9') => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    (None, 1)
                } else {
                    let digits = j - i - 1;
                    let optional = ch == b'9';
                    (Some(Chunk::Frac { digits, optional }), j - i)
                }
            }
            _ => (None, 1),
        };
        match chunk {
            Some(c) => {
                if !lit.is_empty() {
                    out.push(Chunk::Lit(std::mem::take(&mut lit)));
                }
                out.push(c);
                i += len;
            }
            None => {
                // One character (of any width) of literal text.
                let ch = layout[i..].chars().next().unwrap_or(' ');
                lit.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !lit.is_empty() {
        out.push(Chunk::Lit(lit));
    }
    out
}

/// A time zone: offsets from the system's zoneinfo (TZif) files.
#[derive(Clone, Debug, Default)]
pub struct Location {
    /// Transition times (Unix seconds) and the offset and abbreviation that start at each.
    transitions: Vec<(i64, usize)>,
    /// (UTC offset in seconds, abbreviation).
    types: Vec<(i64, String)>,
}

impl Location {
    /// `""`/`UTC` (UTC), `Local` (`$TZ` or /etc/localtime), or an IANA name.
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "" | "UTC" => Ok(Location::default()),
            "Local" => match std::env::var("TZ") {
                Ok(tz) if !tz.is_empty() => Self::from_name(tz.trim_start_matches(':')),
                _ => match std::fs::read("/etc/localtime") {
                    Ok(data) => Self::from_tzif(&data).ok_or_else(|| {
                        "cannot read /etc/localtime: not a zoneinfo file".to_string()
                    }),
                    Err(_) => Ok(Location::default()),
                },
            },
            _ => {
                if name.contains("..") || name.starts_with('/') {
                    return Err(format!("invalid time zone {name:?}"));
                }
                let dir = std::env::var("ZONEINFO")
                    .or_else(|_| std::env::var("TZDIR"))
                    .unwrap_or_else(|_| "/usr/share/zoneinfo".into());
                let path = std::path::Path::new(&dir).join(name);
                let data = std::fs::read(&path)
                    .map_err(|e| format!("unknown time zone {name:?} ({}: {e})", path.display()))?;
                Self::from_tzif(&data).ok_or_else(|| {
                    format!(
                        "unknown time zone {name:?}: {} is not a zoneinfo file",
                        path.display()
                    )
                })
            }
        }
    }

    /// Reads a TZif file (version 1, or the 64-bit data of versions 2 and later).
    fn from_tzif(data: &[u8]) -> Option<Self> {
        fn be32(d: &[u8], at: usize) -> Option<u32> {
            Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
        }
        let header = |d: &[u8]| -> Option<[usize; 6]> {
            if !d.starts_with(b"TZif") {
                return None;
            }
            let mut n = [0usize; 6];
            for (k, v) in n.iter_mut().enumerate() {
                *v = be32(d, 20 + 4 * k)? as usize;
            }
            Some(n)
        };
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = header(data)?;
        let v1_len = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        let (d, wide) = if data.get(4).is_some_and(|&v| v >= b'2') {
            (data.get(v1_len..)?, true)
        } else {
            (data, false)
        };
        let [_, _, _, timecnt, typecnt, charcnt] = header(d)?;
        let tsize = if wide { 8 } else { 4 };
        let mut at = 44;
        let mut times = Vec::with_capacity(timecnt);
        for _ in 0..timecnt {
            let t = if wide {
                i64::from_be_bytes(d.get(at..at + 8)?.try_into().ok()?)
            } else {
                i64::from(be32(d, at)? as i32)
            };
            times.push(t);
            at += tsize;
        }
        let idx = d.get(at..at + timecnt)?.to_vec();
        at += timecnt;
        let types_at = at;
        let chars_at = types_at + typecnt * 6;
        let chars = d.get(chars_at..chars_at + charcnt)?;
        let mut types = Vec::with_capacity(typecnt);
        for k in 0..typecnt {
            let o = types_at + k * 6;
            let off = i64::from(be32(d, o)? as i32);
            let ai = *d.get(o + 5)? as usize;
            let abbr = chars.get(ai..)?.split(|&c| c == 0).next()?;
            types.push((off, String::from_utf8_lossy(abbr).into_owned()));
        }
        if types.is_empty() {
            return None;
        }
        let mut transitions = Vec::with_capacity(timecnt);
        for (t, i) in times.into_iter().zip(idx) {
            if usize::from(i) >= types.len() {
                return None;
            }
            transitions.push((t, usize::from(i)));
        }
        Some(Location { transitions, types })
    }

    /// The zone (offset, abbreviation) in effect at Unix time `t`.
    fn zone_at(&self, t: i64) -> (i64, &str) {
        if self.types.is_empty() {
            return (0, "UTC");
        }
        let k = self.transitions.partition_point(|&(start, _)| start <= t);
        // Before the first transition: the first standard type (type 0, as Go approximates).
        let ty = if k == 0 { 0 } else { self.transitions[k - 1].1 };
        let (off, abbr) = &self.types[ty];
        (*off, abbr)
    }

    /// The UTC offset of a wall-clock time (seconds since 1970 as if UTC) in this zone.
    fn offset_of_local(&self, local: i64) -> i64 {
        // Go's Date: the offset at (local - offset) where offset is first guessed at `local`.
        let (off, _) = self.zone_at(local);
        let (off2, _) = self.zone_at(local - off);
        if off2 == off {
            off
        } else {
            let (off3, _) = self.zone_at(local - off2);
            if off3 == off2 { off2 } else { off }
        }
    }
}

/// A value holding a timestamp.
#[derive(Clone, Copy, Debug)]
pub enum TimeValue<'a> {
    Str(&'a str),
    Int(i64),
    UInt(u64),
    Float(f64),
}

/// Parses `value` in `format` to Unix nanoseconds. A Go layout needs a string; a layout
/// without a year reads the time in the current year, as Telegraf's json parser does.
pub fn parse(format: &TimeFormat, value: TimeValue<'_>, loc: &Location) -> Result<i64, String> {
    match format {
        TimeFormat::Unix(unit) => {
            let unit = *unit;
            let r = match value {
                TimeValue::Int(i) => i.checked_mul(unit),
                TimeValue::UInt(u) => i64::try_from(u).ok().and_then(|i| i.checked_mul(unit)),
                TimeValue::Float(f) => {
                    let ns = (f * unit as f64).round();
                    (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns as i64)
                }
                TimeValue::Str(s) => parse_unix(s.trim(), unit),
            };
            r.ok_or_else(|| format!("invalid unix time {value:?}"))
        }
        TimeFormat::Layout(chunks) => match value {
            TimeValue::Str(s) => parse_layout(chunks, s, loc),
            other => Err(format!(
                "a time layout needs a string, not the number {other:?}"
            )),
        },
    }
}

/// A decimal number of `unit`s to nanoseconds, exactly where the number is written plainly.
pub fn parse_unix(text: &str, unit: i64) -> Option<i64> {
    if text.contains(['e', 'E']) {
        let f: f64 = text.parse().ok()?;
        let ns = f * unit as f64;
        return (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns as i64);
    }
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = body
        .split_once('.')
        .or_else(|| body.split_once(','))
        .unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut ns = if int.is_empty() {
        0
    } else {
        int.parse::<i64>().ok()?
    }
    .checked_mul(unit)?;
    // Fractional digits beyond the nanosecond are dropped.
    let mut scale = unit / 10;
    for d in frac.bytes() {
        if scale == 0 {
            break;
        }
        ns = ns.checked_add(i64::from(d - b'0') * scale)?;
        scale /= 10;
    }
    Some(if neg { -ns } else { ns })
}

fn lookup<'a>(names: &[&str], v: &'a str, len: Option<usize>) -> Option<(usize, &'a str)> {
    for (k, name) in names.iter().enumerate() {
        let n = len.unwrap_or(name.len());
        let want = &name[..n];
        if v.len() >= n && v.is_char_boundary(n) && v[..n].eq_ignore_ascii_case(want) {
            return Some((k, &v[n..]));
        }
    }
    None
}

/// Go's `getnum`: one or two digits, or exactly two when `fixed`.
fn getnum(v: &str, fixed: bool) -> Option<(i64, &str)> {
    let b = v.as_bytes();
    if !b.first()?.is_ascii_digit() {
        return None;
    }
    if !b.get(1).is_some_and(u8::is_ascii_digit) {
        if fixed {
            return None;
        }
        return Some((i64::from(b[0] - b'0'), &v[1..]));
    }
    Some((
        i64::from(b[0] - b'0') * 10 + i64::from(b[1] - b'0'),
        &v[2..],
    ))
}

fn digits(v: &str, n: usize) -> Option<(i64, &str)> {
    let d = v.get(..n)?;
    if !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((d.parse().ok()?, &v[n..]))
}

/// Nanoseconds of the digits after a `.`/`,` (the first byte of `v`), up to `n` bytes.
fn frac_nanos(v: &str, n: usize) -> Option<i64> {
    let d = v.get(1..n)?;
    if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut ns = 0i64;
    for (k, c) in d.bytes().take(9).enumerate() {
        ns += i64::from(c - b'0') * 10i64.pow(8 - k as u32);
    }
    Some(ns)
}

fn parse_layout(chunks: &[Chunk], value: &str, loc: &Location) -> Result<i64, String> {
    let bad = || format!("cannot parse {value:?} with the time layout");
    let mut v = value;
    let (mut year, mut month, mut day, mut yday) = (0i64, -1i64, -1i64, -1i64);
    let (mut hour, mut min, mut sec, mut nsec) = (0i64, 0i64, 0i64, 0i64);
    let (mut pm, mut am) = (false, false);
    let mut offset: Option<i64> = None;
    let mut zone_name: Option<String> = None;
    for (k, chunk) in chunks.iter().enumerate() {
        match chunk {
            Chunk::Lit(lit) => {
                // Go's `skip`: a space in the layout matches a run of spaces.
                let mut p = lit.as_str();
                while !p.is_empty() {
                    if p.starts_with(' ') {
                        if !v.is_empty() && !v.starts_with(' ') {
                            return Err(bad());
                        }
                        p = p.trim_start_matches(' ');
                        v = v.trim_start_matches(' ');
                        continue;
                    }
                    let c = p.chars().next().unwrap_or(' ');
                    if !v.starts_with(c) {
                        return Err(bad());
                    }
                    p = &p[c.len_utf8()..];
                    v = &v[c.len_utf8()..];
                }
            }
            Chunk::LongYear => {
                (year, v) = digits(v, 4).ok_or_else(bad)?;
            }
            Chunk::Year => {
                let (y, r) = digits(v, 2).ok_or_else(bad)?;
                year = if y >= 69 { 1900 + y } else { 2000 + y };
                v = r;
            }
            Chunk::LongMonth | Chunk::Month => {
                let len = (*chunk == Chunk::Month).then_some(3);
                let (m, r) = lookup(&LONG_MONTHS, v, len).ok_or_else(bad)?;
                month = m as i64 + 1;
                v = r;
            }
            Chunk::NumMonth | Chunk::ZeroMonth => {
                (month, v) = getnum(v, *chunk == Chunk::ZeroMonth).ok_or_else(bad)?;
                if !(1..=12).contains(&month) {
                    return Err(format!("{}: month out of range", bad()));
                }
            }
            Chunk::LongWeekDay | Chunk::WeekDay => {
                let len = (*chunk == Chunk::WeekDay).then_some(3);
                v = lookup(&LONG_DAYS, v, len).ok_or_else(bad)?.1;
            }
            Chunk::Day | Chunk::UnderDay | Chunk::ZeroDay => {
                if *chunk == Chunk::UnderDay && v.starts_with(' ') {
                    v = &v[1..];
                }
                (day, v) = getnum(v, *chunk == Chunk::ZeroDay).ok_or_else(bad)?;
            }
            Chunk::UnderYearDay | Chunk::ZeroYearDay => {
                for _ in 0..2 {
                    if *chunk == Chunk::UnderYearDay && v.starts_with(' ') {
                        v = &v[1..];
                    }
                }
                let n = v.bytes().take(3).take_while(u8::is_ascii_digit).count();
                if n == 0 || (*chunk == Chunk::ZeroYearDay && n < 3) {
                    return Err(bad());
                }
                (yday, v) = digits(v, n).ok_or_else(bad)?;
            }
            Chunk::Hour => {
                (hour, v) = getnum(v, false).ok_or_else(bad)?;
                if hour > 23 {
                    return Err(format!("{}: hour out of range", bad()));
                }
            }
            Chunk::Hour12 | Chunk::ZeroHour12 => {
                (hour, v) = getnum(v, *chunk == Chunk::ZeroHour12).ok_or_else(bad)?;
                if hour > 12 {
                    return Err(format!("{}: hour out of range", bad()));
                }
            }
            Chunk::Minute | Chunk::ZeroMinute => {
                (min, v) = getnum(v, *chunk == Chunk::ZeroMinute).ok_or_else(bad)?;
                if min > 59 {
                    return Err(format!("{}: minute out of range", bad()));
                }
            }
            Chunk::Second | Chunk::ZeroSecond => {
                (sec, v) = getnum(v, *chunk == Chunk::ZeroSecond).ok_or_else(bad)?;
                if sec > 59 {
                    return Err(format!("{}: second out of range", bad()));
                }
                // A fraction in the value that the layout does not have is read anyway.
                let next_is_frac = matches!(chunks.get(k + 1), Some(Chunk::Frac { .. }));
                let vb = v.as_bytes();
                if !next_is_frac
                    && vb.len() >= 2
                    && matches!(vb[0], b'.' | b',')
                    && vb[1].is_ascii_digit()
                {
                    let n = 1 + vb[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    nsec = frac_nanos(v, n).ok_or_else(bad)?;
                    v = &v[n..];
                }
            }
            Chunk::PM | Chunk::Pm => {
                let p = v.get(..2).ok_or_else(bad)?;
                let (a, b) = if *chunk == Chunk::PM {
                    ("AM", "PM")
                } else {
                    ("am", "pm")
                };
                if p == b {
                    pm = true;
                } else if p == a {
                    am = true;
                } else {
                    return Err(bad());
                }
                v = &v[2..];
            }
            Chunk::Offset { z, parts, colon } => {
                if *z && v.starts_with('Z') {
                    v = &v[1..];
                    offset = Some(0);
                    continue;
                }
                let sign = match v.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return Err(bad()),
                };
                v = &v[1..];
                let mut total = 0i64;
                for part in 0..*parts {
                    if part > 0 && *colon {
                        v = v.strip_prefix(':').ok_or_else(bad)?;
                    }
                    let (n, r) = digits(v, 2).ok_or_else(bad)?;
                    total = total * 60 + n;
                    v = r;
                }
                for _ in *parts..3 {
                    total *= 60;
                }
                offset = Some(sign * total);
            }
            Chunk::Tz => {
                if let Some(r) = v.strip_prefix("UTC") {
                    offset = Some(0);
                    v = r;
                    continue;
                }
                let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
                if n < 3 {
                    return Err(bad());
                }
                zone_name = Some(v[..n].to_string());
                v = &v[n..];
            }
            Chunk::Frac { digits, optional } => {
                let vb = v.as_bytes();
                if *optional {
                    if vb.len() < 2 || !matches!(vb[0], b'.' | b',') || !vb[1].is_ascii_digit() {
                        continue;
                    }
                    let n = 1 + vb[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    nsec = frac_nanos(v, n).ok_or_else(bad)?;
                    v = &v[n..];
                } else {
                    if vb.first().is_none_or(|c| !matches!(c, b'.' | b',')) {
                        return Err(bad());
                    }
                    nsec = frac_nanos(v, digits + 1).ok_or_else(bad)?;
                    v = &v[digits + 1..];
                }
            }
        }
    }
    if !v.is_empty() {
        return Err(format!("{}: extra text {v:?}", bad()));
    }
    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    if year == 0 {
        // A layout without a year (e.g. `Stamp`): this year, as Telegraf's json parser does
        // (year 0 is out of range for nanoseconds anyway).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        year = super::time::civil_from_days(now.div_euclid(86_400)).0;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if yday >= 0 {
        if yday < 1 || yday > if leap { 366 } else { 365 } {
            return Err(format!("{}: day-of-year out of range", bad()));
        }
        let start = days_from_civil(year, 1, 1) + yday - 1;
        let (_, m, d) = super::time::civil_from_days(start);
        if (month >= 0 && month != m) || (day >= 0 && day != d) {
            return Err(format!("{}: day-of-year does not match", bad()));
        }
        month = m;
        day = d;
    }
    if month < 0 {
        month = 1;
    }
    if day < 0 {
        day = 1;
    }
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day < 1 || day > days_in[(month - 1) as usize] {
        return Err(format!("{}: day out of range", bad()));
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    let off = match (offset, zone_name) {
        (Some(o), _) => o,
        (None, Some(name)) => {
            // The location's offset when the abbreviation is its own at that time, else UTC.
            let guess = loc.offset_of_local(local);
            let (o, abbr) = loc.zone_at(local - guess);
            if abbr == name { o } else { 0 }
        }
        (None, None) => loc.offset_of_local(local),
    };
    (local - off)
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nsec))
        .ok_or_else(|| format!("{}: out of range", bad()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(format: &str, v: &str) -> Result<i64, String> {
        parse(
            &TimeFormat::from_name(format).unwrap(),
            TimeValue::Str(v),
            &Location::default(),
        )
    }

    const T: i64 = 1_136_239_445_000_000_000; // 2006-01-02T22:04:05Z

    #[test]
    fn go_layouts() {
        assert_eq!(
            p("2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05-07:00"),
            Ok(T)
        );
        assert_eq!(
            p("2006-01-02T15:04:05Z07:00", "2006-01-02T22:04:05Z"),
            Ok(T)
        );
        assert_eq!(p("RFC3339", "2006-01-02T22:04:05.5Z"), Ok(T + 500_000_000));
        assert_eq!(
            p("rfc3339nano", "2006-01-02T22:04:05.123456789Z"),
            Ok(T + 123_456_789)
        );
        assert_eq!(p("2006-01-02 15:04:05", "2006-01-02 22:04:05"), Ok(T));
        assert_eq!(p("01/02/2006 15:04:05", "01/02/2006 22:04:05"), Ok(T));
        assert_eq!(
            p(
                "Mon Jan 2 15:04:05 -0700 MST 2006",
                "Mon Jan 2 15:04:05 -0700 MST 2006"
            ),
            Ok(T)
        );
        assert_eq!(p("ANSIC", "Mon Jan  2 22:04:05 2006"), Ok(T));
        assert_eq!(p("RFC1123", "Mon, 02 Jan 2006 22:04:05 UTC"), Ok(T));
        assert_eq!(p("RFC1123Z", "Mon, 02 Jan 2006 15:04:05 -0700"), Ok(T));
        assert_eq!(p("RFC822", "02 Jan 06 22:04 GMT"), Ok(T - 5_000_000_000));
        assert_eq!(p("2006-01-02 3:04:05 PM", "2006-01-02 10:04:05 PM"), Ok(T));
        assert_eq!(
            p("2006-01-02 15:04:05.000", "2006-01-02 22:04:05.250"),
            Ok(T + 250_000_000)
        );
        assert_eq!(
            p("January 2, 2006 15:04", "january 2, 2006 22:04"),
            Ok(T - 5_000_000_000)
        );
        assert_eq!(p("2006.002", "2006.002"), Ok(T - 79_445_000_000_000));
        // Without a year: this year.
        let stamp = p("Stamp", "Jan  2 22:04:05").unwrap() / 1_000_000_000;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let year = super::super::time::civil_from_days(now / 86_400).0;
        assert_eq!(stamp, days_from_civil(year, 1, 2) * 86_400 + 79_445);
        for (layout, bad) in [
            ("2006-01-02", "2006-1-02"),
            ("2006-01-02", "2006-01-02x"),
            ("2006-01-02", "2006-02-30"),
            ("15:04", "24:00"),
            ("2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05"),
        ] {
            assert!(p(layout, bad).is_err(), "{layout} {bad}");
        }
        assert!(TimeFormat::from_name("no layout here").is_err());
    }

    #[test]
    fn unix_formats() {
        let f = TimeFormat::from_name("unix_ms").unwrap();
        let utc = Location::default();
        assert_eq!(parse(&f, TimeValue::Int(1500), &utc), Ok(1_500_000_000));
        assert_eq!(parse(&f, TimeValue::Float(1.5), &utc), Ok(1_500_000));
        assert_eq!(
            parse(&f, TimeValue::Str("1500.25"), &utc),
            Ok(1_500_250_000)
        );
        assert!(parse(&f, TimeValue::Str("x"), &utc).is_err());
        assert!(parse(&f, TimeValue::Int(i64::MAX), &utc).is_err());
    }

    #[test]
    fn time_zones_from_zoneinfo() {
        let ny = Location::from_name("America/New_York").unwrap();
        let f = TimeFormat::from_name("2006-01-02 15:04:05").unwrap();
        // Winter: UTC-5; summer: UTC-4.
        assert_eq!(parse(&f, TimeValue::Str("2006-01-02 17:04:05"), &ny), Ok(T));
        let summer = parse(&f, TimeValue::Str("2024-07-01 08:00:00"), &ny).unwrap();
        assert_eq!(summer, 1_719_835_200_000_000_000);
        // An explicit offset wins over the location; its own abbreviation gives its offset.
        let g = TimeFormat::from_name("2006-01-02 15:04:05 MST").unwrap();
        assert_eq!(
            parse(&g, TimeValue::Str("2006-01-02 17:04:05 EST"), &ny),
            Ok(T)
        );
        assert_eq!(
            parse(&g, TimeValue::Str("2006-01-02 22:04:05 XYZ"), &ny),
            Ok(T)
        );
        assert!(Location::from_name("Not/AZone").is_err());
        assert!(Location::from_name("../etc/passwd").is_err());
        assert!(Location::from_name("Local").is_ok());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(layout in "[-0-9A-Za-z_:.,/ ]{0,24}", value in "[-+0-9A-Za-z_:.,/ ]{0,24}") {
            if let Ok(f) = TimeFormat::from_name(&layout) {
                let _ = parse(&f, TimeValue::Str(&value), &Location::default());
            }
        }

        #[test]
        fn rfc3339_round_trips(secs in -9_223_372_035i64..9_223_372_035, nanos in 0i64..1_000_000_000) {
            let s = format!("{}.{nanos:09}Z", &super::super::time::rfc3339_seconds(secs)[..19]);
            let f = TimeFormat::from_name("RFC3339Nano").unwrap();
            proptest::prop_assert_eq!(parse(&f, TimeValue::Str(&s), &Location::default()), Ok(secs * 1_000_000_000 + nanos));
        }
    }
}
