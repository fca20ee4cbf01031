//! Code shared by several plugins.

#[cfg(feature = "cloudwatch")]
pub mod aws_credentials;
pub mod http;
pub mod http_client;
pub mod influx_writer;
pub mod lp_listener;
pub mod postgres;
pub mod probe;
pub mod procfs;
pub mod server;
#[cfg(test)]
pub(crate) mod test_dir;
pub mod time;
pub mod timestamp;
pub mod unix_socket;
