//! The outputs, one folder each.

pub mod discard;
pub mod file;
pub mod influxdb;

use crate::registry::OutputSpec;

/// Every outputs plugin, in name order.
pub static ALL: &[OutputSpec] = &[discard::SPEC, file::SPEC, influxdb::SPEC];
