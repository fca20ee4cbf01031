//! `outputs.discard`: accepts every batch and drops it (for testing and benchmarking).

use async_trait::async_trait;
use serde::Deserialize;

use crate::model::Metric;
use crate::plugin::{BuildContext, Output, WriteError};
use crate::registry::{BuildError, Format, OutputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

pub struct Discard;

#[async_trait]
impl Output for Discard {
    async fn write(&mut self, _batch: &[Metric]) -> Result<(), WriteError> {
        Ok(())
    }
    /// The buffer's records are dropped as they are: decoding them only to drop the metrics
    /// would cost more than the rest of the output's path.
    fn writes_records(&self) -> bool {
        true
    }
    async fn write_records(&mut self, _records: &[&[u8]]) -> Result<(), WriteError> {
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<Box<dyn Output>, BuildError> {
    let _: Config = parse_config(table)?;
    Ok(Box::new(Discard))
}

pub const SPEC: OutputSpec = OutputSpec {
    name: "discard",
    description: "Accept metrics and drop them",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_everything_and_rejects_unknown_keys() {
        let mut out = build(toml::Table::new(), &BuildContext::default()).unwrap();
        let batch = vec![Metric::new("m", 1).with_field("f", 1i64)];
        assert!(out.write(&batch).await.is_ok());
        assert!(out.writes_records(), "records are dropped undecoded");
        let mut record = Vec::new();
        crate::codec::record::encode(&batch, &mut record);
        assert!(out.write_records(&[&record]).await.is_ok());
        let bad: toml::Table = toml::from_str("foo = 1").unwrap();
        assert!(build(bad, &BuildContext::default()).is_err());
    }
}
