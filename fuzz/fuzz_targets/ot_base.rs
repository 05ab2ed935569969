//! Base-OT points from the peer: the sender's `A`, the receiver's `B_i`.
#![no_main]
use fastlmpi::ot::base::{decode_point, receive, BaseSender, POINT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, param, rest) = fastlmpi_fuzz::header(data);
    match mode % 3 {
        0 => {
            let _ = decode_point(rest, "point");
        }
        1 => {
            let choices: Vec<bool> = (0..(param % 4) as usize).map(|i| (param >> (4 + i)) & 1 == 1).collect();
            if let Ok((msg, keys)) = receive(1, rest, &choices) {
                assert_eq!(msg.len(), choices.len() * POINT_BYTES);
                assert_eq!(keys.len(), choices.len());
            }
        }
        _ => {
            let (sender, _) = BaseSender::start(2);
            let k = (param % 8) as usize;
            if let Ok(keys) = sender.finish(rest, k) {
                assert_eq!(keys.len(), k);
            }
        }
    }
});
