//! The aggregators, one folder each.

use crate::registry::AggregatorSpec;

/// Every aggregators plugin, in name order.
pub static ALL: &[AggregatorSpec] = &[];
