//! OT extension messages: the IKNP `u` matrix, the batch header, the packed payloads of
//! chosen / 1-of-N OT as the receiving party reads them, and KK13's rows.
#![no_main]
use fastlmpi::net::replay::ReplayChannel;
use fastlmpi::net::Channel;
use fastlmpi::ot::header::{BatchHeader, OtKind, MAX_N};
use fastlmpi::ot::iknp::{ExtSender, KAPPA};
use fastlmpi::ot::kk13::{KkSender, CODE_BITS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, param, rest) = fastlmpi_fuzz::header(data);
    match mode % 4 {
        0 => {
            let seeds: Vec<u128> = (0..KAPPA as u128).map(|j| j * 0x9E37_79B9_7F4A_7C15).collect();
            let mut sender = ExtSender::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, &seeds).unwrap();
            let m = (param % 1024) as usize;
            if let Ok((rows, _)) = sender.extend(rest, m) {
                assert!(rows.len() >= m);
            }
        }
        1 => {
            let kind = [OtKind::Chosen, OtKind::Correlated, OtKind::OneOfN, OtKind::Random][param as usize % 4];
            let arity = 2 + (param as usize >> 2) % (MAX_N - 1);
            let header = BatchHeader::new(kind, 1 + (param >> 10) as u32 % 64, arity, 1000).unwrap();
            let _ = header.expect(&mut ReplayChannel::new(rest));
        }
        3 => {
            let seeds: Vec<u128> = (0..CODE_BITS as u128).map(|j| j * 0x9E37_79B9_7F4A_7C15).collect();
            let mut sender = KkSender::new([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210], &seeds).unwrap();
            let m = (param % 1024) as usize;
            if let Ok((rows, _)) = sender.extend(rest, m) {
                assert_eq!(rows.len(), m);
            }
        }
        _ => {
            let (n, bits) = (2 + (param as usize & 0xff) % (MAX_N - 1), 1 + (param >> 8) as u32 % 64);
            let rows = 1 + rest.first().copied().unwrap_or(0) as usize;
            let mut ch = ReplayChannel::new(rest.get(1..).unwrap_or(&[]));
            if let Ok(v) = ch.recv_packed(rows * n, bits) {
                assert_eq!(v.len(), rows * n);
            }
        }
    }
});
