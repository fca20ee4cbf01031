//! `outputs.file`: appends each batch, serialized in the `data_format`, to stdout and/or files,
//! rotating the files by age and size and optionally compressing what it writes.

mod rotate;

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::Deserialize;

use rotate::{Policy, RotatingFile};

use crate::codec::Serializer;
use crate::config_types::{Duration, Size};
use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, ConfigError, Format, OutputSpec, parse_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    files: Vec<String>,
    use_batch_format: bool,
    rotation_interval: Duration,
    rotation_max_size: Size,
    rotation_max_archives: i64,
    compression_algorithm: String,
    compression_level: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            files: vec!["stdout".into()],
            use_batch_format: false,
            rotation_interval: Duration::default(),
            rotation_max_size: Size::default(),
            rotation_max_archives: 5,
            compression_algorithm: String::new(),
            compression_level: 0,
        }
    }
}

/// How each write is compressed: one complete gzip or zlib stream per batch, so the file is a
/// concatenation of streams that `zcat` (gzip) reads as one.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Compression {
    None,
    Gzip(flate2::Compression),
    Zlib(flate2::Compression),
}

impl Compression {
    fn from_config(algorithm: &str, level: i64) -> Result<Self, ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            path: vec![key.into()],
            message,
        };
        let flate_level = || match level {
            0 | -1 => Ok(flate2::Compression::default()),
            1..=9 => Ok(flate2::Compression::new(level as u32)),
            _ => Err(err(
                "compression_level",
                format!("{algorithm} takes levels 1 to 9, or 0/-1 for the default; not {level}"),
            )),
        };
        match algorithm {
            "" | "identity" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip(flate_level()?)),
            "zlib" => Ok(Compression::Zlib(flate_level()?)),
            "zstd" => Err(err(
                "compression_algorithm",
                "\"zstd\" is not supported yet; use \"gzip\" or \"zlib\"".into(),
            )),
            other => Err(err(
                "compression_algorithm",
                format!("unknown algorithm {other:?}; supported: \"gzip\", \"zlib\", \"identity\""),
            )),
        }
    }

    /// Compresses `data` into `out` (cleared first).
    fn encode(self, data: &[u8], out: &mut Vec<u8>) {
        out.clear();
        // Writing into a Vec cannot fail.
        match self {
            Compression::None => out.extend_from_slice(data),
            Compression::Gzip(level) => {
                let mut e = flate2::write::GzEncoder::new(out, level);
                e.write_all(data).expect("in memory");
                e.finish().expect("in memory");
            }
            Compression::Zlib(level) => {
                let mut e = flate2::write::ZlibEncoder::new(out, level);
                e.write_all(data).expect("in memory");
                e.finish().expect("in memory");
            }
        }
    }
}

enum Target {
    Stdout,
    /// Opened on connect, or on the next write after a failure.
    File(RotatingFile),
}

pub struct FileOutput {
    targets: Vec<Target>,
    serializer: Arc<dyn Serializer>,
    use_batch_format: bool,
    compression: Compression,
    /// Reused encoding buffers: serialized, then compressed.
    buf: Vec<u8>,
    compressed: Vec<u8>,
}

impl Target {
    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        match self {
            Target::Stdout => {
                // Blocking, but stdout is a pipe or terminal and the batch is small.
                let mut out = std::io::stdout().lock();
                out.write_all(data)
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("stdout: {e}"))
            }
            // Reopened on the next write after an error: the file may have been removed or the
            // disk remounted.
            Target::File(f) => f
                .write(data, SystemTime::now())
                .await
                .map_err(|e| format!("writing {}: {e}", f.path().display())),
        }
    }
}

#[async_trait]
impl Output for FileOutput {
    async fn connect(&mut self) -> anyhow::Result<()> {
        for t in &mut self.targets {
            if let Target::File(f) = t {
                f.open(SystemTime::now())
                    .await
                    .map_err(|e| anyhow::anyhow!("opening {}: {e}", f.path().display()))?;
            }
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        self.buf.clear();
        if self.use_batch_format {
            self.serializer.serialize(batch, &mut self.buf);
        } else {
            // One metric at a time: for formats such as json this gives one document per metric.
            for m in batch {
                self.serializer
                    .serialize(std::slice::from_ref(m), &mut self.buf);
            }
        }
        self.compression.encode(&self.buf, &mut self.compressed);
        let mut errors = Vec::new();
        for t in &mut self.targets {
            if let Err(e) = t.write(&self.compressed).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(WriteError::Retry {
                reason: errors.join("; "),
                retry_after: None,
            })
        }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        for t in &mut self.targets {
            if let Target::File(f) = t {
                f.close();
            }
        }
        Ok(())
    }
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let cfg: Config = parse_config(table)?;
    if cfg.files.is_empty() {
        return Err(BuildError::Config(ConfigError {
            path: vec!["files".into()],
            message: "no files given (use [\"stdout\"] for standard output)".into(),
        }));
    }
    let compression = Compression::from_config(&cfg.compression_algorithm, cfg.compression_level)?;
    let policy = Policy {
        interval: cfg.rotation_interval.0,
        max_size: cfg.rotation_max_size.0,
        max_archives: cfg.rotation_max_archives,
    };
    let serializer = ctx
        .serializer
        .clone()
        .ok_or_else(|| anyhow::anyhow!("file: no data_format serializer was given"))?;
    let targets = cfg
        .files
        .iter()
        .map(|f| match f.as_str() {
            "stdout" => Target::Stdout,
            path => Target::File(RotatingFile::new(path.into(), policy)),
        })
        .collect();
    Ok(Box::new(FileOutput {
        targets,
        serializer,
        use_batch_format: cfg.use_batch_format,
        compression,
        buf: Vec::new(),
        compressed: Vec::new(),
    }))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "file",
    description: "Write metrics to stdout or files in a data_format",
    sample: include_str!("sample.toml"),
    format: Format::Serializer("influx"),
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{SerializerConfig, build_serializer};

    fn temp_dir(name: &str) -> crate::common::test_dir::TestDir {
        crate::common::test_dir::TestDir::new(&format!("file-{name}"))
    }

    fn output(toml_text: &str) -> Result<Box<dyn Output>, BuildError> {
        let ctx = BuildContext {
            serializer: Some(build_serializer(&SerializerConfig::default(), "influx").unwrap()),
            ..Default::default()
        };
        build(toml::from_str(toml_text).unwrap(), &ctx)
    }

    fn batch(n: i64) -> Vec<Metric> {
        (0..n)
            .map(|i| {
                Metric::new("cpu", i)
                    .with_tag("host", "a b")
                    .with_field("v", i)
            })
            .collect()
    }

    #[tokio::test]
    async fn appends_every_batch_to_every_file() {
        let dir = temp_dir("append");
        let (a, b) = (dir.join("a.out"), dir.join("b.out"));
        std::fs::write(&a, "old\n").unwrap();
        let mut out = output(&format!("files = [{:?}, {:?}]", a, b)).unwrap();
        out.connect().await.unwrap();
        out.write(&batch(2)).await.unwrap();
        out.write(&batch(1)).await.unwrap();
        out.close().await.unwrap();
        let lines = "cpu,host=a\\ b v=0i 0\ncpu,host=a\\ b v=1i 1\ncpu,host=a\\ b v=0i 0\n";
        assert_eq!(
            std::fs::read_to_string(&a).unwrap(),
            format!("old\n{lines}")
        );
        assert_eq!(std::fs::read_to_string(&b).unwrap(), lines);
    }

    #[tokio::test]
    async fn gzip_writes_one_stream_per_batch_that_zcat_reads_as_one() {
        use std::io::Read;
        let dir = temp_dir("gzip");
        let path = dir.join("m.out.gz");
        let mut out = output(&format!(
            "files = [{path:?}]\ncompression_algorithm = \"gzip\"\ncompression_level = 9"
        ))
        .unwrap();
        out.connect().await.unwrap();
        out.write(&batch(2)).await.unwrap();
        out.write(&batch(1)).await.unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip magic");
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            "cpu,host=a\\ b v=0i 0\ncpu,host=a\\ b v=1i 1\ncpu,host=a\\ b v=0i 0\n"
        );
    }

    #[test]
    fn compression_options_are_checked() {
        let err = |t: &str| match output(t) {
            Err(BuildError::Config(e)) => (e.path.join("."), e.message),
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("{t} should be refused"),
        };
        assert_eq!(
            err("compression_algorithm = \"lz4\"").0,
            "compression_algorithm"
        );
        let (key, msg) = err("compression_algorithm = \"zstd\"");
        assert_eq!(key, "compression_algorithm");
        assert!(msg.contains("not supported yet"), "{msg}");
        assert_eq!(
            err("compression_algorithm = \"gzip\"\ncompression_level = 12").0,
            "compression_level"
        );
        assert!(output("compression_algorithm = \"zlib\"\ncompression_level = -1").is_ok());
        assert!(output("compression_algorithm = \"identity\"").is_ok());
    }

    #[tokio::test]
    async fn unwritable_file_is_a_retry_and_recovers() {
        let dir = temp_dir("retry");
        let sub = dir.join("later");
        let path = sub.join("m.out");
        let mut out = output(&format!("files = [{path:?}]")).unwrap();
        assert!(out.connect().await.is_err());
        match out.write(&batch(1)).await {
            Err(WriteError::Retry { reason, .. }) => {
                assert!(reason.contains("m.out"), "{reason}")
            }
            other => panic!("expected Retry, got {other:?}"),
        }
        std::fs::create_dir_all(&sub).unwrap();
        out.write(&batch(1)).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "cpu,host=a\\ b v=0i 0\n"
        );
    }

    #[test]
    fn config_defaults_and_errors() {
        let cfg: Config = parse_config(toml::Table::new()).unwrap();
        assert_eq!(cfg.files, ["stdout"]);
        assert!(output("files = []").is_err());
        assert!(output("filez = [\"stdout\"]").is_err());
        assert!(output("rotation_max_size = \"10MB\"\nrotation_max_archives = 3").is_ok());
    }
}
