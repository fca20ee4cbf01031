//! The inputs, one folder each.

use crate::registry::InputSpec;

/// Host paths (HOST_PROC, HOST_SYS, …) and small helpers shared by the host inputs.
pub mod host;

pub mod apache;
pub mod cpu;
pub mod crypto;
pub mod disk;
pub mod diskio;
pub mod dns_query;
pub mod docker;
pub mod exec;
pub mod file;
pub mod http;
pub mod http_listener_v2;
pub mod http_response;
pub mod influxdb_listener;
pub mod influxdb_v2_listener;
pub mod internal;
pub mod kernel;
pub mod mem;
pub mod net;
pub mod net_response;
pub mod netstat;
pub mod postgresql;
pub mod postgresql_extensible;
pub mod processes;
pub mod procstat;
pub mod prometheus;
pub mod socket_listener;
pub mod statsd;
pub mod swap;
pub mod system;
pub mod x509_cert;

/// Every inputs plugin, in name order.
pub static ALL: &[InputSpec] = &[
    apache::SPEC,
    cpu::SPEC,
    crypto::SPEC,
    disk::SPEC,
    diskio::SPEC,
    dns_query::SPEC,
    docker::SPEC,
    exec::SPEC,
    file::SPEC,
    http::SPEC,
    http_listener_v2::SPEC,
    http_response::SPEC,
    influxdb_listener::SPEC,
    influxdb_v2_listener::SPEC,
    internal::SPEC,
    kernel::SPEC,
    mem::SPEC,
    net::SPEC,
    net_response::SPEC,
    netstat::SPEC,
    postgresql::SPEC,
    postgresql_extensible::SPEC,
    processes::SPEC,
    procstat::SPEC,
    prometheus::SPEC,
    socket_listener::SPEC,
    statsd::SPEC,
    swap::SPEC,
    system::SPEC,
    x509_cert::SPEC,
];
