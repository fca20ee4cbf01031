//! The outputs, one folder each.

use crate::registry::OutputSpec;

/// Every outputs plugin, in name order.
pub static ALL: &[OutputSpec] = &[];
