//! Command-line interface (clap). No protocol logic lives here.
