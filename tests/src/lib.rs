//! Helpers for the end-to-end tests: locate and run the built binary, local servers.
