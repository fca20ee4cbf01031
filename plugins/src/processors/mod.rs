//! The processors, one folder each.

use crate::registry::ProcessorSpec;

pub mod converter;
pub mod r#override;
pub mod rename;

/// Every processors plugin, in name order.
pub static ALL: &[ProcessorSpec] = &[converter::SPEC, r#override::SPEC, rename::SPEC];

#[cfg(test)]
mod tests {
    /// Every sample, as shipped, builds a working plugin (uncommented options included).
    #[test]
    fn samples_build() {
        for spec in super::ALL {
            let doc: toml::Table = toml::from_str(spec.sample).unwrap();
            let tables = doc[KIND][spec.name].as_array().unwrap();
            for t in tables {
                let table = t.as_table().unwrap().clone();
                let ctx = crate::plugin::BuildContext::default();
                if let Err(e) = (spec.build)(table, &ctx) {
                    panic!("{KIND}.{} sample: {e}", spec.name);
                }
            }
        }
    }

    const KIND: &str = "processors";
}
