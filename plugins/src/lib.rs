//! sonde's metric model, plugin traits, codecs and every plugin.
//!
//! Plugins know nothing of the agent: they see the model, their own config struct and the
//! small context the traits give them.

pub mod codec;
pub mod common;
pub mod config_types;
pub mod model;
pub mod plugin;
pub mod registry;
pub mod selfstat;

pub mod aggregators;
pub mod inputs;
pub mod outputs;
pub mod processors;

pub use model::{FieldValue, Metric, Str, ValueType};
