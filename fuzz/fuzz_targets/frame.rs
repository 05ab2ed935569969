//! The frame reader and the typed receivers of `net::Channel` on arbitrary peer bytes.
#![no_main]
use fastlmpi::net::replay::ReplayChannel;
use fastlmpi::net::Channel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, param, stream) = fastlmpi_fuzz::header(data);
    // A 1 MiB frame limit: nothing may allocate beyond it, whatever the length prefix says.
    let mut ch = ReplayChannel::new(stream).with_max_frame(1 << 20);
    match mode % 4 {
        0 => {
            let _ = ch.recv_frame_limited(param as usize * 16);
        }
        1 => {
            let _ = ch.recv_u64s(param as usize % 512);
        }
        2 => {
            let (n, bits) = (param as usize & 0x1ff, 1 + (param >> 9) as u32 % 64);
            if let Ok(v) = ch.recv_packed(n, bits) {
                assert_eq!(v.len(), n);
                assert!(bits == 64 || v.iter().all(|&x| x < 1u64 << bits));
            }
        }
        _ => {
            while ch.recv_frame().is_ok() {}
        }
    }
});
