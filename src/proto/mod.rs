//! Two-party protocols on additive shares. Every protocol module's doc header states: paper
//! reference, functionality, message flow, valid input domain, error bound, bytes per element
//! and a semi-honest security argument. Every protocol is tested as a real two-party run
//! (`net::run_pair`) against a cleartext fixed-point reference.
pub mod attention;
pub mod linear;
