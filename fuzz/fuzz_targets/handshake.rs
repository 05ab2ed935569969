//! The handshake on arbitrary peer bytes, as the server (peer speaks first) and as the client.
#![no_main]
use fastlmpi::net::handshake::{handshake, Hello};
use fastlmpi::net::replay::ReplayChannel;
use fastlmpi::share::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tiny = fastlmpi_fuzz::tiny_server();
    let fingerprint = tiny.model.config().shape_fingerprint();
    for role in [Role::Server, Role::Client] {
        let mine = Hello::new(role, fingerprint.clone(), tiny.profile.handshake_params());
        let mut ch = ReplayChannel::new(data);
        if let Ok(theirs) = handshake(&mut ch, &mine) {
            assert_ne!(theirs.role, role);
            assert_eq!(theirs.model_fingerprint, fingerprint);
        }
    }
});
