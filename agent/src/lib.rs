//! The sonde agent: configuration, filters and the running pipeline. `main.rs` is the CLI.

pub mod config;
pub mod export;
pub mod filter;
pub mod pipeline;
pub mod service;
