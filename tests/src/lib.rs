//! Helpers for the end-to-end tests, which run the real `ipclog` and `constat` binaries as a
//! user would: locating the built binaries, scratch directories, network namespaces that are
//! removed even when a test fails, the client/router/server conntrack lab (`lab`), a small
//! pcap writer for generated captures, and constat's report read back (`report`).

pub mod bins;
pub mod constat;
pub mod lab;
pub mod netns;
pub mod pcapgen;
pub mod report;
pub mod servers;
