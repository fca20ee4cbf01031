//! Code shared by several plugins.

pub mod http;
pub mod server;
pub mod postgres;
