//! `inputs.file`: parses whole files with a `data_format` every interval, as Telegraf's
//! `inputs.file` does (files given by glob patterns, `**` included).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::codec::Parser;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    files: Vec<String>,
    #[serde(default)]
    character_encoding: String,
    #[serde(default)]
    file_tag: String,
    #[serde(default)]
    file_path_tag: String,
}

/// How file contents are turned into the parser's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// "": the bytes as they are.
    Raw,
    /// "utf-8": invalid sequences become U+FFFD; a byte-order mark is dropped.
    Utf8,
    Utf16Le,
    Utf16Be,
}

impl Encoding {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "" => Encoding::Raw,
            "utf-8" | "utf8" => Encoding::Utf8,
            "utf-16le" => Encoding::Utf16Le,
            "utf-16be" => Encoding::Utf16Be,
            _ => return None,
        })
    }

    /// Decodes `bytes` to the parser's input (UTF-8 text, or the raw bytes).
    fn decode(self, bytes: Vec<u8>) -> Vec<u8> {
        let text = match self {
            Encoding::Raw => return bytes,
            Encoding::Utf8 => match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
            Encoding::Utf16Le | Encoding::Utf16Be => {
                let units = bytes.chunks(2).map(|c| match (c, self) {
                    ([a, b], Encoding::Utf16Le) => u16::from_le_bytes([*a, *b]),
                    ([a, b], _) => u16::from_be_bytes([*a, *b]),
                    // An odd trailing byte is an invalid character.
                    _ => 0xFFFD,
                });
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect()
            }
        };
        match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.as_bytes().to_vec(),
            None => text.into_bytes(),
        }
    }
}

struct File {
    patterns: Vec<String>,
    encoding: Encoding,
    file_tag: String,
    file_path_tag: String,
    parser: Arc<dyn Parser>,
}

/// The files a pattern names now, in name order (a plain path is its own match when it exists).
fn expand(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let paths =
        glob::glob(pattern).map_err(|e| format!("could not compile glob {pattern:?}: {e}"))?;
    let mut out: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[async_trait]
impl Input for File {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let mut files = Vec::new();
        for pattern in &self.patterns {
            match expand(pattern) {
                Ok(found) if found.is_empty() => {
                    acc.add_error(format!("could not find file(s): {pattern}"))
                }
                Ok(found) => files.extend(found),
                Err(e) => acc.add_error(e),
            }
        }
        for path in files {
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    acc.add_error(format!("could not read {:?}: {e}", path.display()));
                    continue;
                }
            };
            let input = self.encoding.decode(bytes);
            let mut metrics = Vec::new();
            let errors = self.parser.parse(&input, acc.time(), &mut metrics);
            if let Some(first) = errors.first() {
                acc.add_error(format!(
                    "could not parse {:?}: {first} ({} bad line(s) or record(s) skipped)",
                    path.display(),
                    errors.len()
                ));
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let abs = absolute(&path).to_string_lossy().into_owned();
            for mut m in metrics {
                if !self.file_tag.is_empty() {
                    m.add_tag(self.file_tag.as_str(), name.as_str());
                }
                if !self.file_path_tag.is_empty() {
                    m.add_tag(self.file_path_tag.as_str(), abs.as_str());
                }
                acc.add(m);
            }
        }
        Ok(())
    }
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let bad = |key: &str, message: String| {
        BuildError::Config(ConfigError {
            path: vec![key.into()],
            message,
        })
    };
    if cfg.files.is_empty() {
        return Err(bad(
            "files",
            "must list at least one file or pattern".into(),
        ));
    }
    for p in &cfg.files {
        glob::Pattern::new(p).map_err(|e| bad("files", format!("bad pattern {p:?}: {e}")))?;
    }
    let encoding = Encoding::from_name(&cfg.character_encoding).ok_or_else(|| {
        bad(
            "character_encoding",
            format!(
                "unknown encoding {:?} (expected \"utf-8\", \"utf-16le\", \"utf-16be\" or \"\")",
                cfg.character_encoding
            ),
        )
    })?;
    let parser = ctx
        .parser
        .clone()
        .ok_or_else(|| anyhow::anyhow!("file: no data_format parser was given"))?;
    Ok(InputPlugin::Polled(Box::new(File {
        patterns: cfg.files,
        encoding,
        file_tag: cfg.file_tag,
        file_path_tag: cfg.file_path_tag,
        parser,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "file",
    description: "Parse whole files (globs allowed) in any data format every interval",
    sample: include_str!("sample.toml"),
    format: Format::Parser("influx"),
    build,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(toml_text: &str, format: &str) -> Box<dyn Input> {
        let pc = crate::codec::ParserConfig {
            data_format: Some(format.into()),
            ..Default::default()
        };
        let ctx = BuildContext {
            parser: Some(
                crate::codec::build_parser_with_name(&pc, "influx", Some("file")).unwrap(),
            ),
            ..Default::default()
        };
        match build(toml::from_str(toml_text).unwrap(), &ctx).unwrap() {
            InputPlugin::Polled(p) => p,
            _ => panic!(),
        }
    }

    #[tokio::test]
    async fn globs_tags_encodings_and_errors() {
        let dir = crate::common::test_dir::TestDir::new("file-input");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("top.lp"), "m,src=top v=1 1\n").unwrap();
        std::fs::write(dir.join("a/b/deep.lp"), "m,src=deep v=2 2\nbroken\n").unwrap();
        let utf16: Vec<u8> = "\u{feff}m,src=wide,city=Zürich v=3 3\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        std::fs::write(dir.join("a/wide.lp16"), utf16).unwrap();
        let d = dir.display();
        let mut p = plugin(
            &format!(
                "files = [\"{d}/**/*.lp\", \"{d}/nothing/*.lp\"]\nfile_tag = \"file\"\nfile_path_tag = \"path\""
            ),
            "influx",
        );
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        let mut srcs: Vec<_> = acc
            .metrics
            .iter()
            .map(|m| (m.tag("src").unwrap(), m.tag("file").unwrap()))
            .collect();
        srcs.sort();
        assert_eq!(srcs, [("deep", "deep.lp"), ("top", "top.lp")]);
        assert!(acc.metrics[0].tag("path").unwrap().starts_with('/'));
        assert_eq!(acc.errors.len(), 2, "{:?}", acc.errors);
        assert!(acc.errors.iter().any(|e| e.contains("could not parse")));
        assert!(acc.errors.iter().any(|e| e.contains("could not find")));

        let mut p = plugin(
            &format!("files = [\"{d}/a/*.lp16\"]\ncharacter_encoding = \"utf-16le\""),
            "influx",
        );
        let mut acc = Accumulator::new(0);
        p.gather(&mut acc).await.unwrap();
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(acc.metrics[0].tag("city"), Some("Zürich"));
    }

    #[test]
    fn decoding() {
        assert_eq!(
            Encoding::Utf8.decode(b"\xef\xbb\xbfa\xffb".to_vec()),
            "a\u{fffd}b".as_bytes()
        );
        assert_eq!(Encoding::Raw.decode(b"\xff".to_vec()), b"\xff");
        let be: Vec<u8> = "hé".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(Encoding::Utf16Be.decode(be), "hé".as_bytes());
        // A lone surrogate and an odd byte become replacement characters.
        assert_eq!(
            Encoding::Utf16Le.decode(vec![0x00, 0xd8, b'a']),
            "\u{fffd}\u{fffd}".as_bytes()
        );
        assert!(Encoding::from_name("latin1").is_none());
    }

    proptest::proptest! {
        /// Any bytes in any encoding decode to valid UTF-8 (or stay as they are), never a panic.
        #[test]
        fn decoding_never_panics(data: Vec<u8>) {
            for e in [Encoding::Utf8, Encoding::Utf16Le, Encoding::Utf16Be] {
                proptest::prop_assert!(std::str::from_utf8(&e.decode(data.clone())).is_ok());
            }
            proptest::prop_assert_eq!(Encoding::Raw.decode(data.clone()), data);
        }
    }
}
