//! Names for addresses, networks and services, from the constat lookup file, plus a reverse-DNS
//! name cache.
