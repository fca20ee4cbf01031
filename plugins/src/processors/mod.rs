//! The processors, one folder each.

use crate::registry::ProcessorSpec;

/// Every processors plugin, in name order.
pub static ALL: &[ProcessorSpec] = &[];
