//! `json` data format.
