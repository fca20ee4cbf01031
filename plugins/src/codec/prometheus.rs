//! `prometheus` data format.
