//! The inputs, one folder each.

pub mod exec;
pub mod influxdb_listener;
pub mod influxdb_v2_listener;
pub mod internal;

use crate::registry::InputSpec;

/// Every inputs plugin, in name order.
pub static ALL: &[InputSpec] = &[
    exec::SPEC,
    influxdb_listener::SPEC,
    influxdb_v2_listener::SPEC,
    internal::SPEC,
];
