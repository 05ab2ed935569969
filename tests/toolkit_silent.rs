//! The toolkit's two-party tests (`tests/toolkit.rs`, every protocol, exact OT counts and
//! bytes) on the silent OT backend: the same file, compiled as a module of this test crate,
//! whose name switches `support::new_ot` to `SilentOt` and the byte checks to its cost table.

#[path = "toolkit.rs"]
mod toolkit;
