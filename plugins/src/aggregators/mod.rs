//! The aggregators, one folder each.

use crate::registry::AggregatorSpec;

pub mod basicstats;
pub mod minmax;
mod series;

/// Every aggregators plugin, in name order.
pub static ALL: &[AggregatorSpec] = &[basicstats::SPEC, minmax::SPEC];

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

    const KIND: &str = "aggregators";
}
