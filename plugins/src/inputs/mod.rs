//! The inputs, one folder each.

use crate::registry::InputSpec;

pub mod host;

pub mod cpu;
pub mod mem;
pub mod swap;

/// Every inputs plugin, in name order.
pub static ALL: &[InputSpec] = &[cpu::SPEC, mem::SPEC, swap::SPEC];
