//! Property tests: the share arithmetic over Z_2^ℓ and Z_p, the fixed-point encoding, and
//! the wire round-trips (bit packing, frames, requests, OT batch headers, ciphertexts) on
//! inputs proptest draws, beyond the fixed examples of the unit tests.

use std::sync::OnceLock;

use fastlmpi::engine::session::{decode_inference_request, decode_session_request, MAX_SESSION_LENGTHS};
use fastlmpi::engine::{InferenceRequest, Reveal, SessionRequest};
use fastlmpi::he::wire::{decode_full, decode_seeded, encode_full, encode_seeded};
use fastlmpi::he::{ClientKeys, HeContext, HePreset};
use fastlmpi::model::BertConfig;
use fastlmpi::net::replay::ReplayChannel;
use fastlmpi::net::{pack_bits, packed_len, unpack_bits, Channel};
use fastlmpi::ot::header::{BatchHeader, OtKind};
use fastlmpi::share::{floor_shift, Field, FixedPoint, Ring};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Primes of the sizes the protocols use (small, 32-bit, the 37-bit class, 2^61 − 1).
const PRIMES: [u64; 4] = [65_537, 4_294_967_291, 137_438_953_447, 2_305_843_009_213_693_951];

fn ring() -> impl Strategy<Value = Ring> {
    (1u32..=64).prop_map(|b| Ring::new(b).unwrap())
}

fn field() -> impl Strategy<Value = Field> {
    prop::sample::select(PRIMES.to_vec()).prop_map(|p| Field::new(p).unwrap())
}

fn rng_from(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ring_shares_reconstruct_and_add(r in ring(), x in any::<u64>(), y in any::<u64>(), c in any::<u64>(), seed in any::<u64>()) {
        let mut rng = rng_from(seed);
        let (x, y, c) = (r.reduce(x), r.reduce(y), r.reduce(c));
        let (x0, x1) = r.share(x, &mut rng);
        let (y0, y1) = r.share(y, &mut rng);
        prop_assert!(x0 <= r.mask() && x1 <= r.mask());
        prop_assert_eq!(r.add(x0, x1), x);
        // Local addition, subtraction and public scaling of shares.
        prop_assert_eq!(r.add(r.add(x0, y0), r.add(x1, y1)), r.add(x, y));
        prop_assert_eq!(r.add(r.sub(x0, y0), r.sub(x1, y1)), r.sub(x, y));
        prop_assert_eq!(r.add(r.mul(c, x0), r.mul(c, x1)), r.mul(c, x));
        prop_assert_eq!(r.add(r.neg(x0), r.neg(x1)), r.neg(x));
    }

    #[test]
    fn ring_signed_lift_round_trips(r in ring(), v in any::<i64>()) {
        // Values in the signed range of the ring come back unchanged; the msb is the sign.
        let m = 1i128 << r.bits();
        let v = ((v as i128).rem_euclid(m) - m / 2) as i64;
        let u = r.from_signed(v);
        prop_assert!(u <= r.mask());
        prop_assert_eq!(r.to_signed(u), v);
        prop_assert_eq!(r.msb(u), (v < 0) as u64);
    }

    #[test]
    fn field_shares_reconstruct_and_invert(f in field(), x in any::<u64>(), y in any::<u64>(), seed in any::<u64>()) {
        let mut rng = rng_from(seed);
        let (x, y) = (f.reduce(x), f.reduce(y));
        let (x0, x1) = f.share(x, &mut rng);
        prop_assert!(x0 < f.modulus() && x1 < f.modulus());
        prop_assert_eq!(f.add(x0, x1), x);
        let (y0, y1) = f.share(y, &mut rng);
        prop_assert_eq!(f.add(f.add(x0, y0), f.add(x1, y1)), f.add(x, y));
        prop_assert_eq!(f.sub(f.add(x, y), y), x);
        prop_assert_eq!(((x as u128 * y as u128) % f.modulus() as u128) as u64, f.mul(x, y));
        if x != 0 {
            prop_assert_eq!(f.mul(x, f.inv(x).unwrap()), 1);
        } else {
            prop_assert!(f.inv(0).is_err());
        }
    }

    #[test]
    fn field_signed_lift_round_trips(f in field(), v in any::<i64>()) {
        let half = (f.modulus() / 2) as i64;
        let v = v.rem_euclid(2 * half + 1) - half;
        prop_assert_eq!(f.to_signed(f.from_signed(v)), v);
    }

    #[test]
    fn fixed_point_encoding_is_within_half_an_ulp(frac in 0u32..=24, v in -1.0e6f64..1.0e6) {
        let fp = FixedPoint::new(frac);
        let ulp = fp.scale().recip();
        prop_assert!((fp.decode(fp.encode(v)) - v).abs() <= ulp / 2.0 + 1e-9 * v.abs().max(1.0));
        // Integers at the scale come back exactly.
        let x = fp.encode(v);
        prop_assert_eq!(fp.encode(fp.decode(x)), x);
    }

    #[test]
    fn floor_shift_is_floor_division(x in any::<i64>(), s in 0u32..63) {
        prop_assert_eq!(floor_shift(x, s) as i128, (x as i128).div_euclid(1i128 << s));
    }

    #[test]
    fn bit_packing_round_trips(bits in 1u32..=64, v in prop::collection::vec(any::<u64>(), 0..200)) {
        let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let packed = pack_bits(&v, bits);
        prop_assert_eq!(packed.len(), packed_len(v.len(), bits));
        let back = unpack_bits(&packed, v.len(), bits);
        prop_assert_eq!(back, v.iter().map(|x| x & mask).collect::<Vec<_>>());
    }

    #[test]
    fn frames_round_trip_and_oversized_prefixes_are_refused(data in prop::collection::vec(any::<u8>(), 0..4096), limit in 0usize..8192) {
        let mut out = ReplayChannel::new(&[]);
        out.send_frame(&data).unwrap();
        let wire = out.sent().to_vec();
        prop_assert_eq!(wire.len(), 8 + data.len());
        let mut ch = ReplayChannel::new(&wire);
        let got = ch.recv_frame_limited(limit);
        if data.len() <= limit {
            prop_assert_eq!(got.unwrap(), data);
        } else {
            // Refused from the prefix alone, before any payload byte is read.
            prop_assert!(got.is_err());
            prop_assert_eq!(ch.remaining(), data.len());
        }
    }

    #[test]
    fn frames_cut_short_are_a_disconnect(data in prop::collection::vec(any::<u8>(), 1..512), cut in any::<prop::sample::Index>()) {
        let mut out = ReplayChannel::new(&[]);
        out.send_frame(&data).unwrap();
        let wire = out.sent().to_vec();
        let mut ch = ReplayChannel::new(&wire[..cut.index(wire.len())]);
        prop_assert!(ch.recv_frame().is_err());
    }

    #[test]
    fn ot_batch_headers_match_only_themselves(kind in 0usize..3, bits in 1u32..=64, arity in 2usize..=16, len in 0usize..1 << 20,
                                              bits2 in 1u32..=64, arity2 in 2usize..=16, len2 in 0usize..1 << 20) {
        let kinds = [OtKind::Chosen, OtKind::Correlated, OtKind::OneOfN];
        let a = BatchHeader::new(kinds[kind], bits, arity, len).unwrap();
        let b = BatchHeader::new(kinds[kind], bits2, arity2, len2).unwrap();
        let mut ch = ReplayChannel::new(&[]);
        a.send(&mut ch).unwrap();
        let wire = ch.sent().to_vec();
        prop_assert!(a.expect(&mut ReplayChannel::new(&wire)).is_ok());
        prop_assert_eq!(b.expect(&mut ReplayChannel::new(&wire)).is_ok(), a == b);
    }
}

fn bert_config() -> BertConfig {
    BertConfig::from_json(
        r#"{"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 128,
            "max_position_embeddings": 128, "vocab_size": 100, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}"#,
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn requests_round_trip_and_are_validated(seq_lens in prop::collection::vec(0usize..200, 0..=MAX_SESSION_LENGTHS + 1), mask in prop::collection::vec(0u32..3, 0..160),
                                             layers in 0usize..5, reveal in 0usize..3) {
        let cfg = bert_config();
        let s = SessionRequest { seq_lens: seq_lens.clone() };
        let valid = !seq_lens.is_empty() && seq_lens.len() <= MAX_SESSION_LENGTHS && seq_lens.iter().all(|&n| (1..=128).contains(&n));
        match decode_session_request(&serde_json::to_vec(&s).unwrap(), &cfg) {
            Ok(back) => { prop_assert!(valid); prop_assert_eq!(back, s); }
            Err(e) => { prop_assert!(!valid); prop_assert!(e.to_string().contains("sequence length"), "{}", e); }
        }
        let reveal = [Reveal::Label, Reveal::Logits, Reveal::Embedding][reveal];
        let r = InferenceRequest { seq_len: mask.len(), mask: mask.clone(), layers, reveal };
        let valid = (1..=128).contains(&mask.len()) && mask.iter().all(|&m| m <= 1) && mask.contains(&1) && (1..=3).contains(&layers);
        match decode_inference_request(&serde_json::to_vec(&Some(&r)).unwrap(), &cfg) {
            Ok(back) => { prop_assert!(valid); prop_assert_eq!(back, Some(r)); }
            Err(e) => { prop_assert!(!valid); prop_assert!(e.to_string().contains("inference request")); }
        }
    }
}

/// The smallest HE context and one key pair, made once (key generation dominates a case).
fn he() -> &'static (HeContext, ClientKeys) {
    static HE: OnceLock<(HeContext, ClientKeys)> = OnceLock::new();
    HE.get_or_init(|| {
        let ctx = HeContext::new(&HePreset::wire_test()).unwrap();
        let keys = ClientKeys::generate(&ctx, &[], &mut rng_from(7)).unwrap();
        (ctx, keys)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn ciphertexts_round_trip_through_the_wire(values in prop::collection::vec(any::<u64>(), 1..64), seed in any::<u64>()) {
        let (ctx, keys) = he();
        let t = ctx.field().modulus();
        let slots: Vec<u64> = values.iter().map(|v| v % t).collect();
        let seeded = encode_seeded(&keys.encrypt_seeded(ctx, &slots, &mut rng_from(seed)).unwrap());
        let ct = decode_seeded(ctx, &seeded).unwrap();
        prop_assert_eq!(&ctx.decrypt(&keys.sk, &ct).unwrap()[..slots.len()], &slots[..]);
        // The full form is a fixed point of decode ∘ encode, byte for byte.
        let full = encode_full(ctx, &ct, 0).unwrap();
        let again = decode_full(ctx, 0, &full).unwrap();
        prop_assert_eq!(encode_full(ctx, &again, 0).unwrap(), full);
        prop_assert_eq!(&ctx.decrypt(&keys.sk, &again).unwrap()[..slots.len()], &slots[..]);
    }
}
