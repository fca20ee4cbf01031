//! How a byte stream is cut into messages: Telegraf's `splitting_strategy` values.

use serde::Deserialize;

/// `splitting_length_field`: where a message's length is in its header.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LengthField {
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub endianness: String,
    #[serde(default)]
    pub header_length: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Splitter {
    /// At `\n`, dropping a `\r` before it (the default).
    Newline,
    /// At NUL bytes.
    Null,
    /// After a byte sequence (not part of the message).
    Delimiter(Vec<u8>),
    /// Every `n` bytes.
    Fixed(usize),
    /// By a length field in a header.
    Variable {
        offset: usize,
        bytes: usize,
        little_endian: bool,
        header: usize,
    },
}

impl Splitter {
    pub fn new(
        strategy: &str,
        delimiter: &str,
        length: u64,
        field: &LengthField,
    ) -> Result<Splitter, (&'static str, String)> {
        Ok(match strategy {
            "" | "newline" => Splitter::Newline,
            "null" => Splitter::Null,
            "delimiter" => {
                let hex = delimiter.trim().to_ascii_lowercase();
                let hex = hex
                    .strip_prefix("0x")
                    .or_else(|| hex.strip_prefix('x'))
                    .unwrap_or(&hex);
                let bad = || {
                    (
                        "splitting_delimiter",
                        format!(
                            "{delimiter:?} is not a hex byte sequence (e.g. \"0x0D0A\" for CR LF)"
                        ),
                    )
                };
                if hex.is_empty() || !hex.len().is_multiple_of(2) {
                    return Err(bad());
                }
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| bad())?;
                Splitter::Delimiter(bytes)
            }
            "fixed length" => {
                if length == 0 {
                    return Err((
                        "splitting_length",
                        "must be positive for splitting_strategy = \"fixed length\"".into(),
                    ));
                }
                Splitter::Fixed(length as usize)
            }
            "variable length" => {
                let little_endian = match field.endianness.to_ascii_lowercase().as_str() {
                    "" | "be" => false,
                    "le" => true,
                    other => {
                        return Err((
                            "splitting_length_field",
                            format!("invalid endianness {other:?} (\"be\" or \"le\")"),
                        ));
                    }
                };
                if !(1..=8).contains(&field.bytes) {
                    return Err((
                        "splitting_length_field",
                        "bytes must be 1 to 8 for splitting_strategy = \"variable length\"".into(),
                    ));
                }
                Splitter::Variable {
                    offset: field.offset as usize,
                    bytes: field.bytes as usize,
                    little_endian,
                    header: field.header_length as usize,
                }
            }
            other => {
                return Err((
                    "splitting_strategy",
                    format!(
                        "unknown strategy {other:?} (newline, null, delimiter, \"fixed length\" or \"variable length\")"
                    ),
                ));
            }
        })
    }

    /// The next message in `data`: (bytes consumed, message range). At the end of the stream
    /// (`at_eof`) what is left is the last message. `None`: more data is needed.
    pub fn next(&self, data: &[u8], at_eof: bool) -> Option<(usize, std::ops::Range<usize>)> {
        if data.is_empty() {
            return None;
        }
        let rest = || at_eof.then_some((data.len(), 0..data.len()));
        match self {
            Splitter::Newline => match memchr::memchr(b'\n', data) {
                Some(i) => {
                    let end = if i > 0 && data[i - 1] == b'\r' {
                        i - 1
                    } else {
                        i
                    };
                    Some((i + 1, 0..end))
                }
                None => {
                    let (n, r) = rest()?;
                    let end = if data.ends_with(b"\r") {
                        r.end - 1
                    } else {
                        r.end
                    };
                    Some((n, 0..end))
                }
            },
            Splitter::Null => match memchr::memchr(0, data) {
                Some(i) => Some((i + 1, 0..i)),
                None => rest(),
            },
            Splitter::Delimiter(d) => match memchr::memmem::find(data, d) {
                Some(i) => Some((i + d.len(), 0..i)),
                None => rest(),
            },
            Splitter::Fixed(n) => {
                if data.len() >= *n {
                    Some((*n, 0..*n))
                } else {
                    rest()
                }
            }
            Splitter::Variable {
                offset,
                bytes,
                little_endian,
                header,
            } => {
                if data.len() >= offset + bytes {
                    let field = &data[*offset..offset + bytes];
                    let mut buf = [0u8; 8];
                    let length = if *little_endian {
                        buf[..*bytes].copy_from_slice(field);
                        u64::from_le_bytes(buf)
                    } else {
                        buf[8 - bytes..].copy_from_slice(field);
                        u64::from_be_bytes(buf)
                    };
                    let end = (length as usize).saturating_add(*header);
                    if end <= data.len() {
                        return Some((end.max(1), (*header).min(end)..end));
                    }
                }
                rest()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &Splitter, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some((n, r)) = s.next(&data[pos..], true) {
            out.push(data[pos..][r].to_vec());
            pos += n;
        }
        out
    }

    #[test]
    fn strategies() {
        let f = LengthField::default();
        let nl = Splitter::new("", "", 0, &f).unwrap();
        assert_eq!(all(&nl, b"a\r\nb\n\nc"), [&b"a"[..], b"b", b"", b"c"]);
        assert_eq!(nl.next(b"partial", false), None);
        let null = Splitter::new("null", "", 0, &f).unwrap();
        assert_eq!(all(&null, b"a\0b"), [&b"a"[..], b"b"]);
        let d = Splitter::new("delimiter", "0x0D0A", 0, &f).unwrap();
        assert_eq!(all(&d, b"a\nb\r\nc"), [&b"a\nb"[..], b"c"]);
        assert_eq!(
            Splitter::new("delimiter", "x2c", 0, &f).unwrap(),
            Splitter::Delimiter(b",".to_vec())
        );
        assert!(Splitter::new("delimiter", "0xZZ", 0, &f).is_err());
        assert!(Splitter::new("delimiter", "", 0, &f).is_err());
        let fixed = Splitter::new("fixed length", "", 2, &f).unwrap();
        assert_eq!(all(&fixed, b"aabbc"), [&b"aa"[..], b"bb", b"c"]);
        assert!(Splitter::new("fixed length", "", 0, &f).is_err());
        let var = Splitter::new(
            "variable length",
            "",
            0,
            &LengthField {
                offset: 0,
                bytes: 2,
                endianness: "be".into(),
                header_length: 2,
            },
        )
        .unwrap();
        assert_eq!(all(&var, b"\x00\x03abc\x00\x01d"), [&b"abc"[..], b"d"]);
        assert_eq!(var.next(b"\x00\x05ab", false), None);
        assert!(Splitter::new("lines", "", 0, &f).is_err());
    }

    proptest::proptest! {
        /// Any strategy over any bytes: every call makes progress and never panics.
        #[test]
        fn never_panics_and_progresses(data: Vec<u8>, n in 1u64..5, off in 0u64..4, b in 1u64..9, h in 0u64..6) {
            let field = LengthField { offset: off, bytes: b, endianness: "le".into(), header_length: h };
            for s in [
                Splitter::new("newline", "", 0, &field).unwrap(),
                Splitter::new("null", "", 0, &field).unwrap(),
                Splitter::new("delimiter", "0a0d", 0, &field).unwrap(),
                Splitter::new("fixed length", "", n, &field).unwrap(),
                Splitter::new("variable length", "", 0, &field).unwrap(),
            ] {
                let mut pos = 0;
                while let Some((adv, r)) = s.next(&data[pos..], true) {
                    proptest::prop_assert!(adv > 0 && r.start <= r.end && r.end <= data.len() - pos);
                    pos += adv;
                }
                proptest::prop_assert_eq!(pos, data.len());
            }
        }
    }
}
