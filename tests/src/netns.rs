//! Network namespaces for kernel tests: created per test with unique names, removed on drop.
