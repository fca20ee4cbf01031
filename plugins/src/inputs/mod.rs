//! The inputs, one folder each.

use crate::registry::InputSpec;

/// Every inputs plugin, in name order.
pub static ALL: &[InputSpec] = &[];
