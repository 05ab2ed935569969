//! Command-line interface (clap). No protocol logic lives here.

pub mod eval;
pub mod train_head;
