//! The inputs, one folder each.

use crate::registry::InputSpec;

/// Host paths (HOST_PROC, HOST_SYS, …) and small helpers shared by the host inputs.
pub mod host;

pub mod cpu;
pub mod disk;
pub mod diskio;
pub mod docker;
pub mod exec;
pub mod influxdb_listener;
pub mod influxdb_v2_listener;
pub mod internal;
pub mod kernel;
pub mod mem;
pub mod net;
pub mod netstat;
pub mod processes;
pub mod procstat;
pub mod prometheus;
pub mod statsd;
pub mod swap;
pub mod system;

/// Every inputs plugin, in name order.
pub static ALL: &[InputSpec] = &[
    cpu::SPEC,
    disk::SPEC,
    diskio::SPEC,
    docker::SPEC,
    exec::SPEC,
    influxdb_listener::SPEC,
    influxdb_v2_listener::SPEC,
    internal::SPEC,
    kernel::SPEC,
    mem::SPEC,
    net::SPEC,
    netstat::SPEC,
    processes::SPEC,
    procstat::SPEC,
    prometheus::SPEC,
    statsd::SPEC,
    swap::SPEC,
    system::SPEC,
];
