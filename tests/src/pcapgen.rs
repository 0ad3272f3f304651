//! A small pcap writer for generated test captures.
