//! The outputs, one folder each.

#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
pub mod discard;
pub mod file;
pub mod http;
pub mod influxdb;
pub mod influxdb_v2;
pub mod prometheus_client;
pub mod prometheus_remote_write;

use crate::registry::OutputSpec;

/// Every outputs plugin, in name order.
pub static ALL: &[OutputSpec] = &[
    #[cfg(feature = "cloudwatch")]
    cloudwatch::SPEC,
    discard::SPEC,
    file::SPEC,
    http::SPEC,
    influxdb::SPEC,
    influxdb_v2::SPEC,
    prometheus_client::SPEC,
    prometheus_remote_write::SPEC,
];
