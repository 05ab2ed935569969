//! The server's handling of a new connection (handshake, channel check, session request) on
//! the first bytes a stranger sends.
#![no_main]
use fastlmpi::cli::party::serve_session;
use fastlmpi::engine::ServerSessionReport;
use fastlmpi::net::replay::ReplayChannel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tiny = fastlmpi_fuzz::tiny_server();
    let fingerprint = tiny.model.config().shape_fingerprint();
    let mut ch = ReplayChannel::new(data);
    let mut report = ServerSessionReport::default();
    // Any input either fails cleanly or (never, with a finite input) completes a session.
    assert!(serve_session(&mut ch, &tiny.server, &tiny.profile, "tiny", &fingerprint, &mut report).is_err());
});
