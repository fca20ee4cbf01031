//! The outputs, one folder each.

pub mod discard;
pub mod file;
pub mod http;
pub mod influxdb;
pub mod influxdb_v2;

use crate::registry::OutputSpec;

/// Every outputs plugin, in name order.
pub static ALL: &[OutputSpec] = &[
    discard::SPEC,
    file::SPEC,
    http::SPEC,
    influxdb::SPEC,
    influxdb_v2::SPEC,
];
