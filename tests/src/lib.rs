//! Helpers for the end-to-end tests: locating the built binaries, and network namespaces that
//! are removed even when a test fails.
