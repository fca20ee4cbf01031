//! The aggregators, one folder each.

use crate::registry::AggregatorSpec;

pub mod basicstats;
pub mod minmax;
mod series;

/// Every aggregators plugin, in name order.
pub static ALL: &[AggregatorSpec] = &[basicstats::SPEC, minmax::SPEC];
