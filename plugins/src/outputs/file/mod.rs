//! `outputs.file`: appends each batch, serialized in the `data_format`, to stdout and/or files.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

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
    /// Telegraf's rotation options: accepted so Telegraf configs load, not implemented.
    rotation_interval: Duration,
    rotation_max_size: Size,
    rotation_max_archives: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            files: vec!["stdout".into()],
            use_batch_format: false,
            rotation_interval: Duration::default(),
            rotation_max_size: Size::default(),
            rotation_max_archives: 5,
        }
    }
}

enum Target {
    Stdout,
    /// Opened on connect, or on the next write after a failure.
    File {
        path: PathBuf,
        file: Option<tokio::fs::File>,
    },
}

pub struct FileOutput {
    targets: Vec<Target>,
    serializer: Arc<dyn Serializer>,
    use_batch_format: bool,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

async fn open(path: &PathBuf) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

impl Target {
    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        match self {
            Target::Stdout => {
                // Blocking, but stdout is a pipe or terminal and the batch is small.
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(data)
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("stdout: {e}"))
            }
            Target::File { path, file } => {
                let f = match file {
                    Some(f) => f,
                    None => file.insert(
                        open(path)
                            .await
                            .map_err(|e| format!("opening {}: {e}", path.display()))?,
                    ),
                };
                let res = match f.write_all(data).await {
                    Ok(()) => f.flush().await,
                    Err(e) => Err(e),
                };
                res.map_err(|e| {
                    // Reopen next time: the file may have been removed or the disk remounted.
                    *file = None;
                    format!("writing {}: {e}", path.display())
                })
            }
        }
    }
}

#[async_trait]
impl Output for FileOutput {
    async fn connect(&mut self) -> anyhow::Result<()> {
        for t in &mut self.targets {
            if let Target::File { path, file } = t {
                let f = open(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
                *file = Some(f);
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
        let mut errors = Vec::new();
        for t in &mut self.targets {
            if let Err(e) = t.write(&self.buf).await {
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
            if let Target::File { file, .. } = t {
                *file = None;
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
    if !cfg.rotation_interval.is_zero() || cfg.rotation_max_size.0 != 0 {
        tracing::warn!(
            plugin = %ctx.id,
            "outputs.file: rotation_interval and rotation_max_size are not implemented; files grow without rotation"
        );
    }
    let serializer = ctx
        .serializer
        .clone()
        .ok_or_else(|| anyhow::anyhow!("file: no data_format serializer was given"))?;
    let targets = cfg
        .files
        .iter()
        .map(|f| match f.as_str() {
            "stdout" => Target::Stdout,
            path => Target::File {
                path: path.into(),
                file: None,
            },
        })
        .collect();
    Ok(Box::new(FileOutput {
        targets,
        serializer,
        use_batch_format: cfg.use_batch_format,
        buf: Vec::new(),
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

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sonde-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
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
