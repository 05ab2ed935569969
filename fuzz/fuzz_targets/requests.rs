//! Session and inference requests (JSON frames from the client) as the server reads them.
#![no_main]
use fastlmpi::engine::session::{decode_inference_request, decode_session_request, MAX_SESSION_LENGTHS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = fastlmpi_fuzz::tiny_server().model.config();
    let (mode, _, frame) = fastlmpi_fuzz::header(data);
    if mode % 2 == 0 {
        if let Ok(req) = decode_session_request(frame, cfg) {
            assert!(!req.seq_lens.is_empty() && req.seq_lens.len() <= MAX_SESSION_LENGTHS);
            assert!(req.seq_lens.iter().all(|&n| n >= 1 && n <= cfg.max_position_embeddings));
        }
    } else if let Ok(Some(req)) = decode_inference_request(frame, cfg) {
        assert_eq!(req.mask.len(), req.seq_len);
        assert!(req.layers >= 1 && req.layers <= cfg.num_hidden_layers);
    }
});
