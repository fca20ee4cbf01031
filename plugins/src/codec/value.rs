//! `value` data format.
