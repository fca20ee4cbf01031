//! Code shared by several plugins.

pub mod http;
