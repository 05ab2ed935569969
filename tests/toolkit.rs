//! Two-party tests of the non-linear toolkit (`proto::toolkit::{bits, cmp, b2a, mux, trunc, convert,
//! mul}`): every test runs both parties over loopback TCP with the real OT session, compares
//! the reconstructed output with a cleartext reference (exactly, or within the documented
//! bound), and checks the observed OT counts and own-message bytes against the documented
//! cost formula. `tests/toolkit_silent.rs` runs this same file on the silent OT backend.

use fastlmpi::net::{run_pair, Channel, CommStats};
use fastlmpi::ot::ferret::{refill_bytes, refill_iterations};
use fastlmpi::ot::{Ot, OtSession, SilentOt};
use fastlmpi::proto::toolkit::b2a::{b2a_field, b2a_field_cost, b2a_ring, b2a_ring_cost};
use fastlmpi::proto::toolkit::bits::{and, and_cost};
use fastlmpi::proto::toolkit::cmp::{
    drelu, floor_narrow, floor_narrow_cost, lt_public, lt_public_coarse, lt_public_coarse_cost, lt_public_coarse_partial, lt_public_coarse_partial_cost, lt_small_or, lt_small_or_cost, lt_public_cost, millionaire_cost,
    millionaire_gt, msb, msb_cost,
};
use fastlmpi::proto::toolkit::convert::{
    field_to_ring, field_to_ring_cost, field_to_ring_trunc, field_to_ring_trunc_cost, field_wrap_width, ring_to_field,
    ring_to_field_cost,
};
use fastlmpi::proto::ctx::{Cost, OtCall, OtKind, Party};
use fastlmpi::proto::toolkit::mul::{mul, mul_cost, mul_trunc, mul_trunc_cost, square, square_cost};
use fastlmpi::proto::toolkit::mux::{mux, mux_cost, mux_field, mux_field_cost};
use fastlmpi::proto::toolkit::trunc::trace;
use fastlmpi::proto::toolkit::trunc::{trunc, trunc_cost, TruncMode};
use fastlmpi::share::{Field, Ring, Role};
use fastlmpi::Result;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

mod support {
    use super::*;

    /// Whether this file runs on the silent backend (compiled into `toolkit_silent`).
    pub fn silent() -> bool {
        env!("CARGO_CRATE_NAME") == "toolkit_silent"
    }

    /// COTs per direction a silent session holds after its bootstrap (its first iteration).
    pub const SILENT_FIRST_FILL: usize = fastlmpi::ot::lpn::SET.net_outputs();

    /// The OT session each party uses in these tests: the real one (base OTs + IKNP), or the
    /// silent one, bootstrapped in both directions before the protocol starts.
    pub fn new_ot(ch: &mut dyn Channel, role: Role) -> Result<Box<dyn Ot>> {
        if silent() {
            let mut s = SilentOt::setup(ch, role)?;
            s.prefill(ch, SILENT_FIRST_FILL)?;
            return Ok(Box::new(s));
        }
        Ok(Box::new(OtSession::setup(ch, role)?))
    }

    /// One party's result of a two-party run.
    pub struct Side<T> {
        pub out: T,
        pub stats: CommStats,
        pub log: Vec<OtCall>,
    }

    impl<T> Side<T> {
        pub fn cost(&self) -> Cost {
            Cost::observed(&self.log, self.stats)
        }
    }

    fn side<T>(ch: &mut dyn Channel, role: Role, f: &(dyn Fn(&mut Party) -> Result<T> + Sync)) -> Result<Side<T>> {
        let mut ot = new_ot(ch, role)?;
        // Settle the channel direction (server sent last, client received last) so that the
        // first flight of the protocol is counted as a round on both sides.
        if role.is_server() {
            ch.send_bytes(&[0])?;
        } else {
            ch.recv_bytes(&mut [0u8])?;
        }
        let mut p = Party::new(role, ch, &mut *ot);
        let before = p.stats();
        let out = f(&mut p)?;
        Ok(Side { out, stats: p.stats().since(&before), log: p.ot_log().to_vec() })
    }

    /// Run `f` as both parties (it reads `p.role` to pick its own inputs).
    pub fn run<T: Send>(f: impl Fn(&mut Party) -> Result<T> + Sync) -> (Side<T>, Side<T>) {
        let out = run_pair(|ch| side(ch, Role::Server, &f), |ch| side(ch, Role::Client, &f)).unwrap();
        (out.server, out.client)
    }

    /// Both parties observed exactly the documented OT counts and own-message bytes, and
    /// both saw the same number of own bytes.
    /// Bytes of one OT call according to the OT layer's documented cost table (IKNP matrix of
    /// 16 bytes per extended OT in 128-OT blocks or KK13 rows of 32 bytes per 1-of-N OT, an
    /// 8-byte batch header, the masked messages).
    pub fn iknp_call_bytes(call: &OtCall) -> u64 {
        let matrix = |m: usize| 2048 * m.div_ceil(128) as u64;
        let n = call.count;
        let bits = call.bits as usize;
        8 + match call.kind {
            OtKind::Correlated => matrix(n) + (n * bits).div_ceil(8) as u64,
            OtKind::Staircase => matrix(n) + fastlmpi::ot::staircase_payload_bits(n, call.bits).div_ceil(8) as u64,
            OtKind::Chosen => matrix(n) + (2 * n * bits).div_ceil(8) as u64,
            // KK13 rows of 32 bytes from N = 5, else ⌈log2 N⌉ IKNP OTs per 1-of-N OT.
            OtKind::OneOfN(k) if k >= 5 => 32 * n as u64 + (n * k * bits).div_ceil(8) as u64,
            OtKind::OneOfN(k) => matrix(n * k.next_power_of_two().trailing_zeros() as usize) + (n * k * bits).div_ceil(8) as u64,
        }
    }

    /// COTs one call consumes on the silent backend (⌈log2 N⌉ per 1-of-N OT).
    fn silent_cots(call: &OtCall) -> usize {
        match call.kind {
            OtKind::OneOfN(k) => call.count * k.next_power_of_two().trailing_zeros() as usize,
            _ => call.count,
        }
    }

    /// Bytes of each call (in log order) on the silent backend's documented cost table: the
    /// 8-byte header, one correction bit per COT, the masked messages, and the refill of the
    /// call's direction when its buffer runs short (replayed from the first fill). Also the
    /// number of calls that refilled (each adds two flights).
    pub fn silent_call_bytes(log: &[OtCall]) -> (Vec<u64>, u64) {
        // [this party sends, the peer sends]: (iterations run, COTs buffered).
        let mut dirs = [(1u64, SILENT_FIRST_FILL); 2];
        let mut refills = 0;
        let bytes = log
            .iter()
            .map(|call| {
                let need = silent_cots(call);
                let dir = &mut dirs[!call.sender as usize];
                let refill = refill_bytes(dir.0, dir.1, need);
                let k = refill_iterations(dir.0, dir.1, need);
                dir.0 += k;
                dir.1 += k as usize * fastlmpi::ot::lpn::SET.net_outputs();
                dir.1 -= need;
                refills += (refill > 0) as u64;
                let (n, bits) = (call.count, call.bits as usize);
                let payload = match call.kind {
                    OtKind::Correlated => n * bits,
                    OtKind::Staircase => fastlmpi::ot::staircase_payload_bits(n, call.bits),
                    OtKind::Chosen => 2 * n * bits,
                    OtKind::OneOfN(k) => n * k * bits,
                };
                refill + 8 + need.div_ceil(8) as u64 + payload.div_ceil(8) as u64
            })
            .collect();
        (bytes, refills)
    }

    pub fn assert_cost<T>(s: &Side<T>, c: &Side<T>, want: &Cost) {
        let mut extra_rounds = 0;
        if silent() {
            let (bytes, refills) = silent_call_bytes(&s.log);
            for (call, b) in s.log.iter().zip(bytes) {
                assert_eq!(call.stats.total_bytes(), b, "OT call {call:?}");
            }
            let (bytes, _) = silent_call_bytes(&c.log);
            for (call, b) in c.log.iter().zip(bytes) {
                assert_eq!(call.stats.total_bytes(), b, "OT call {call:?}");
            }
            extra_rounds = 2 * refills;
        } else {
            for call in s.log.iter().chain(&c.log) {
                assert_eq!(call.stats.total_bytes(), iknp_call_bytes(call), "OT call {call:?}");
            }
        }
        assert_eq!(s.cost(), want.without_steps(), "server-observed cost");
        assert_eq!(c.cost(), want.without_steps(), "client-observed cost");
        assert_eq!(s.stats.rounds, want.rounds() + extra_rounds, "server rounds");
        assert_eq!(c.stats.rounds, want.rounds() + extra_rounds, "client rounds");
    }

    pub fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    /// Signed values: edges of an ℓ-bit two's-complement range plus random ones below `2^mag`.
    pub fn signed_values(ring: Ring, mag: u32, extra: &[i64], n_random: usize, rng: &mut ChaCha20Rng) -> Vec<i64> {
        let mut v = vec![0i64, 1, -1];
        v.extend_from_slice(extra);
        let m = if mag >= 63 { i64::MAX } else { (1i64 << mag) - 1 };
        for _ in 0..n_random {
            let r = rng.next_u64() as i64;
            v.push(if m == i64::MAX { r } else { r.rem_euclid(2 * m + 1) - m });
        }
        let _ = ring;
        v
    }

    pub fn bools(b: &[u8], c: &[u8]) -> Vec<u8> {
        b.iter().zip(c).map(|(x, y)| x ^ y).collect()
    }
}

use support::*;

fn ring_edges(l: u32) -> Vec<i64> {
    let half = if l == 64 { i64::MIN } else { -(1i64 << (l - 1)) };
    vec![half, !half] // −2^(ℓ−1) and 2^(ℓ−1) − 1
}

#[test]
fn millionaire_matches_cleartext() {
    for w in [1u32, 4, 5, 13, 36, 64] {
        let mut r = rng(w as u64);
        let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
        let mut xs = vec![0, mask, 0, mask, 5 & mask, 6 & mask];
        let mut ys = vec![0, mask, mask, 0, 5 & mask, 5 & mask];
        for _ in 0..300 {
            let y = r.next_u64() & mask;
            let x = match r.random_range(0..4) {
                0 => y,
                1 => y.wrapping_add(1) & mask,
                2 => y.wrapping_sub(1) & mask,
                _ => r.next_u64() & mask,
            };
            xs.push(x);
            ys.push(y);
        }
        let (s, c) = run(|p| millionaire_gt(p, if p.is_server() { &ys } else { &xs }, w));
        let got = bools(&s.out, &c.out);
        for i in 0..xs.len() {
            assert_eq!(got[i], (xs[i] > ys[i]) as u8, "w={w} x={} y={}", xs[i], ys[i]);
        }
        assert_cost(&s, &c, &millionaire_cost(xs.len(), w));
    }
}

#[test]
fn msb_and_drelu_are_exact_on_the_whole_ring() {
    for l in [12u32, 37, 64] {
        let ring = Ring::new(l).unwrap();
        let mut r = rng(100 + l as u64);
        let vals = signed_values(ring, l - 1, &ring_edges(l), 400, &mut r);
        let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
        let (x0, x1) = ring.share_vec(&enc, &mut r);
        let (s, c) = run(|p| msb(p, ring, if p.is_server() { &x0 } else { &x1 }));
        let got = bools(&s.out, &c.out);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(got[i], (v < 0) as u8, "ℓ={l} x={v}");
        }
        assert_cost(&s, &c, &msb_cost(vals.len(), l, 0));
        let (s, c) = run(|p| drelu(p, ring, if p.is_server() { &x0 } else { &x1 }));
        let got = bools(&s.out, &c.out);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(got[i], (v >= 0) as u8, "DReLU ℓ={l} x={v}");
        }
    }
}

#[test]
fn threshold_comparison_exact_and_reduced() {
    let l = 37;
    let ring = Ring::new(l).unwrap();
    let frac = 12;
    let thresholds = [(5.075f64 * 4096.0).round() as i64, -(5.075f64 * 4096.0).round() as i64, 5793, 0];
    let mut r = rng(7);
    let mut extra = Vec::new();
    for &t in &thresholds {
        extra.extend_from_slice(&[t - 1, t, t + 1, t - 200, t + 200]);
    }
    // Inputs bounded by 2^(k−1) − 2^15 so that x − T stays in range for the reduced k below.
    let k = 20u32;
    let vals = signed_values(ring, k - 2, &extra, 300, &mut r);
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    let (x0, x1) = ring.share_vec(&enc, &mut r);
    // Exact, full width.
    let (s, c) = run(|p| lt_public(p, ring, if p.is_server() { &x0 } else { &x1 }, &thresholds, l, 0));
    for (t_idx, &t) in thresholds.iter().enumerate() {
        let got = bools(&s.out[t_idx], &c.out[t_idx]);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(got[i], (v < t) as u8, "x={v} T={t}");
        }
    }
    assert_cost(&s, &c, &lt_public_cost(vals.len(), thresholds.len(), l, 0));
    // No inputs: one empty result per threshold, nothing sent.
    let (s, c) = run(|p| lt_public(p, ring, &[], &thresholds, l, 0));
    assert_eq!((s.out.len(), c.out.len()), (thresholds.len(), thresholds.len()));
    assert!(s.out.iter().chain(&c.out).all(Vec::is_empty));
    assert_eq!(s.stats.bytes_sent + c.stats.bytes_sent, 0);
    // Reduced width: k = 20 bits, d = 6 low bits dropped (millionaire on 13 bits, not 36).
    let d = 6u32;
    let (s, c) = run(|p| lt_public(p, ring, if p.is_server() { &x0 } else { &x1 }, &thresholds, k, d));
    let window = (1i64 << (d + 1)) - 2;
    for (t_idx, &t) in thresholds.iter().enumerate() {
        let got = bools(&s.out[t_idx], &c.out[t_idx]);
        for (i, &v) in vals.iter().enumerate() {
            let z = v - t;
            if (0..window).contains(&z) {
                assert!(got[i] == 1 || z >= 0, "inside the window only x<T may be reported");
            } else {
                assert_eq!(got[i], (v < t) as u8, "reduced x={v} T={t} frac={frac}");
            }
        }
    }
    assert_cost(&s, &c, &lt_public_cost(vals.len(), thresholds.len(), k, d));
    assert!(lt_public_cost(1, 1, k, d).one_of_n.values().sum::<usize>() < lt_public_cost(1, 1, l, 0).one_of_n.values().sum::<usize>());
}

#[test]
fn bit_and_matches_cleartext() {
    let mut r = rng(11);
    let n = 777;
    let x: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
    let y: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
    let xm: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
    let ym: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
    let (xs, xc) = (bools(&x, &xm), xm.clone());
    let (ys, yc) = (bools(&y, &ym), ym.clone());
    let (s, c) = run(|p| if p.is_server() { and(p, &xs, &ys) } else { and(p, &xc, &yc) });
    let got = bools(&s.out, &c.out);
    for i in 0..n {
        assert_eq!(got[i], x[i] & y[i]);
    }
    assert_cost(&s, &c, &and_cost(n));
}

fn random_bit_pairs(r: &mut ChaCha20Rng, n: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let b: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
    let m: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
    (bools(&b, &m), m, b)
}

#[test]
fn b2a_into_ring_and_field() {
    let mut r = rng(12);
    let n = 500;
    let (bs, bc, b) = random_bit_pairs(&mut r, n);
    for l in [1u32, 12, 37, 64] {
        let ring = Ring::new(l).unwrap();
        let (s, c) = run(|p| b2a_ring(p, ring, if p.is_server() { &bs } else { &bc }));
        assert_eq!(ring.reconstruct(&s.out, &c.out), b.iter().map(|&v| v as u64).collect::<Vec<_>>());
        assert_cost(&s, &c, &b2a_ring_cost(n, ring));
    }
    for pm in [1125899906842597u64, 2305843009213693951] {
        let field = Field::new(pm).unwrap();
        let (s, c) = run(|p| b2a_field(p, field, if p.is_server() { &bs } else { &bc }));
        assert!(s.out.iter().chain(&c.out).all(|&v| v < pm));
        assert_eq!(field.reconstruct(&s.out, &c.out), b.iter().map(|&v| v as u64).collect::<Vec<_>>());
        assert_cost(&s, &c, &b2a_field_cost(n, field));
    }
}

#[test]
fn multiplexer_selects() {
    let mut r = rng(13);
    for l in [12u32, 37, 64] {
        let ring = Ring::new(l).unwrap();
        let vals = signed_values(ring, l - 1, &ring_edges(l), 300, &mut r);
        let n = vals.len();
        let (bs, bc, b) = random_bit_pairs(&mut r, n);
        let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
        let (x0, x1) = ring.share_vec(&enc, &mut r);
        let (s, c) = run(|p| if p.is_server() { mux(p, ring, &bs, &x0) } else { mux(p, ring, &bc, &x1) });
        let got = ring.reconstruct(&s.out, &c.out);
        for i in 0..n {
            assert_eq!(got[i], if b[i] == 1 { enc[i] } else { 0 }, "ℓ={l}");
        }
        assert_cost(&s, &c, &mux_cost(n, ring));
    }
}

#[test]
fn truncation_faithful_and_approx() {
    for (l, s_bits) in [(12u32, 3u32), (37, 12), (64, 12), (37, 1), (12, 10)] {
        let ring = Ring::new(l).unwrap();
        let mut r = rng(200 + l as u64 + s_bits as u64);
        let lim = 1i64 << (l - 2);
        let unit = 1i64 << s_bits;
        let extra = vec![-lim, lim - 1, unit, -unit, unit - 1, -unit + 1, unit + 1, -unit - 1, 3 * unit, -3 * unit];
        let mut vals = signed_values(ring, l - 2, &extra, 400, &mut r);
        vals.retain(|v| (-lim..lim).contains(v));
        let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
        let (x0, x1) = ring.share_vec(&enc, &mut r);
        for mode in [TruncMode::Faithful, TruncMode::Approx] {
            let (s, c) = run(|p| trunc(p, ring, if p.is_server() { &x0 } else { &x1 }, s_bits, mode));
            let got = ring.reconstruct(&s.out, &c.out);
            for (i, &v) in vals.iter().enumerate() {
                let want = v >> s_bits;
                let diff = ring.to_signed(got[i]) - want;
                match mode {
                    TruncMode::Faithful => assert_eq!(diff, 0, "ℓ={l} s={s_bits} x={v}"),
                    TruncMode::Approx => assert!((-1..=0).contains(&diff), "ℓ={l} s={s_bits} x={v} diff={diff}"),
                }
            }
            assert_cost(&s, &c, &trunc_cost(vals.len(), ring, s_bits, mode));
        }
    }
}

/// The approximate mode's error is exactly the carry of the low bits it drops: with both
/// parties' low bits traced, every output is ⌊x/2^s⌋ − c with c = [l_S + l_C ≥ 2^s], and both
/// values of c occur. Untraced calls record nothing.
#[test]
fn approximate_truncation_drops_exactly_the_traced_carry() {
    let ring = Ring::new(40).unwrap();
    let mut r = rng(777);
    let lim = 1i64 << 38;
    let mut vals = signed_values(ring, 38, &[-lim, lim - 1, 4095, 4096, -4096, 0], 2000, &mut r);
    vals.retain(|v| (-lim..lim).contains(v));
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    let (x0, x1) = ring.share_vec(&enc, &mut r);
    let (s, c) = run(|p| {
        let mine = if p.is_server() { &x0 } else { &x1 };
        trace::start();
        let out = trunc(p, ring, mine, 12, TruncMode::Approx)?;
        let low = trace::finish();
        trunc(p, ring, mine, 12, TruncMode::Approx)?;
        Ok((out, low, trace::finish()))
    });
    assert!(s.out.2.is_empty() && c.out.2.is_empty(), "a call after finish() was recorded");
    let carries = trace::carries(&s.out.1, &c.out.1).unwrap();
    assert_eq!(carries.len(), 1, "one traced call per party");
    let got = ring.reconstruct(&s.out.0, &c.out.0);
    for (i, &v) in vals.iter().enumerate() {
        assert_eq!(ring.to_signed(got[i]), (v >> 12) - i64::from(carries[0][i]), "x={v}");
    }
    let ones = carries[0].iter().filter(|&&b| b == 1).count();
    assert!(ones > 0 && ones < vals.len(), "{ones} carries of {}", vals.len());
    // Records of different calls do not pair up.
    let mut short = c.out.1.clone();
    short[0].low.pop();
    assert!(trace::carries(&s.out.1, &short).is_err());
}

const P50: u64 = 1125899906842597; // largest prime below 2^50
const P61: u64 = 2305843009213693951; // 2^61 − 1

/// Field shares of `x` with the server share forced to each wrap-critical value.
fn edge_field_shares(field: Field, vals: &[i64], r: &mut ChaCha20Rng) -> (Vec<i64>, Vec<u64>, Vec<u64>) {
    let pm = field.modulus();
    let h = (pm - 1) / 2;
    let mut xs = Vec::new();
    let (mut a0, mut a1) = (Vec::new(), Vec::new());
    for &v in vals {
        let enc = field.from_signed(v);
        let mut servers = vec![0, 1, pm - 1, pm - 2, h, h + 1, h - 1, enc, field.sub(enc, 1)];
        servers.push(field.random(r));
        for s in servers {
            xs.push(v);
            a0.push(s);
            a1.push(field.sub(enc, s));
        }
    }
    (xs, a0, a1)
}

#[test]
fn field_to_ring_exact_with_wrap_edges() {
    for (pm, l, k) in [(P50, 37u32, 30u32), (P50, 64, 48), (P61, 44, 40), (P61, 12, 11)] {
        let field = Field::new(pm).unwrap();
        let ring = Ring::new(l).unwrap();
        let mut r = rng(pm ^ l as u64);
        let b = (1i64 << k) - 1;
        let vals = signed_values(ring, k, &[b, -b, b - 1, -b + 1], 20, &mut r);
        let (xs, a0, a1) = edge_field_shares(field, &vals, &mut r);
        let (s, c) = run(|p| field_to_ring(p, field, ring, if p.is_server() { &a0 } else { &a1 }, k));
        let got = ring.reconstruct(&s.out, &c.out);
        for (i, &v) in xs.iter().enumerate() {
            assert_eq!(ring.to_signed(got[i]), v, "p={pm} ℓ={l} x={v} a_S={}", a0[i]);
        }
        assert_cost(&s, &c, &field_to_ring_cost(xs.len(), field, ring, k).unwrap());
        let (_, width) = field_wrap_width(field, k).unwrap();
        assert!(width <= 3, "reduced wrap comparison width {width}");
    }
}

#[test]
fn field_to_ring_with_truncation() {
    let field = Field::new(P50).unwrap();
    let ring = Ring::new(37).unwrap();
    let s_bits = 12;
    let k = 44; // values at scale 2s with |x| < 2^44
    let mut r = rng(21);
    let unit = 1i64 << s_bits;
    let vals = signed_values(ring, k, &[unit, -unit, unit - 1, -unit - 1, (1 << k) - 1, -(1 << k) + 1], 30, &mut r);
    let (xs, a0, a1) = edge_field_shares(field, &vals, &mut r);
    for mode in [TruncMode::Faithful, TruncMode::Approx] {
        let (s, c) = run(|p| field_to_ring_trunc(p, field, ring, if p.is_server() { &a0 } else { &a1 }, k, s_bits, mode));
        let got = ring.reconstruct(&s.out, &c.out);
        for (i, &v) in xs.iter().enumerate() {
            let diff = ring.to_signed(got[i]) - (v >> s_bits);
            match mode {
                TruncMode::Faithful => assert_eq!(diff, 0, "x={v}"),
                TruncMode::Approx => assert!((-1..=0).contains(&diff), "x={v}"),
            }
        }
        assert_cost(&s, &c, &field_to_ring_trunc_cost(xs.len(), field, ring, k, s_bits, mode).unwrap());
    }
}

#[test]
fn ring_to_field_exact() {
    for (pm, l) in [(P50, 37u32), (P50, 12), (P61, 61), (P50, 50)] {
        let field = Field::new(pm).unwrap();
        let ring = Ring::new(l).unwrap();
        let mut r = rng(31 + l as u64);
        let lim = 1i64 << (l - 2);
        let vals = signed_values(ring, l - 2, &[-lim, lim - 1, lim - 2, -lim + 1], 400, &mut r);
        let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
        let (x0, x1) = ring.share_vec(&enc, &mut r);
        let (s, c) = run(|p| ring_to_field(p, ring, field, if p.is_server() { &x0 } else { &x1 }));
        assert!(s.out.iter().chain(&c.out).all(|&v| v < pm));
        let got = field.reconstruct(&s.out, &c.out);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(field.to_signed(got[i]), v, "p={pm} ℓ={l}");
        }
        assert_cost(&s, &c, &ring_to_field_cost(vals.len(), field));
    }
}

#[test]
fn multiplication_square_and_fixed_point_product() {
    for l in [12u32, 37, 64] {
        let ring = Ring::new(l).unwrap();
        let mut r = rng(41 + l as u64);
        let vals = signed_values(ring, l - 1, &ring_edges(l), 120, &mut r);
        let n = vals.len();
        let ys = signed_values(ring, l - 1, &[-1, 1, 0, 3, -7], n - 8, &mut r);
        let ex: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
        let ey: Vec<u64> = ys.iter().map(|&v| ring.from_signed(v)).collect();
        let (x0, x1) = ring.share_vec(&ex, &mut r);
        let (y0, y1) = ring.share_vec(&ey, &mut r);
        let (s, c) = run(|p| if p.is_server() { mul(p, ring, &x0, &y0) } else { mul(p, ring, &x1, &y1) });
        let got = ring.reconstruct(&s.out, &c.out);
        for i in 0..n {
            assert_eq!(got[i], ring.mul(ex[i], ey[i]), "ℓ={l}");
        }
        assert_cost(&s, &c, &mul_cost(n, ring));
        let (s, c) = run(|p| square(p, ring, if p.is_server() { &x0 } else { &x1 }));
        let got = ring.reconstruct(&s.out, &c.out);
        for i in 0..n {
            assert_eq!(got[i], ring.mul(ex[i], ex[i]), "square ℓ={l}");
        }
        assert_cost(&s, &c, &square_cost(n, ring));
    }
    // Fixed-point product at ℓ = 37, s = 12 with operands below 2^16 (product < 2^35).
    let ring = Ring::new(37).unwrap();
    let s_bits = 12;
    let mut r = rng(49);
    let xs = signed_values(ring, 16, &[4096, -4096, 1 << 16, -(1 << 16)], 150, &mut r);
    let ys = signed_values(ring, 16, &[4096, 4096, (1 << 16) - 1, (1 << 16) - 1], 150, &mut r);
    let ex: Vec<u64> = xs.iter().map(|&v| ring.from_signed(v)).collect();
    let ey: Vec<u64> = ys.iter().map(|&v| ring.from_signed(v)).collect();
    let (x0, x1) = ring.share_vec(&ex, &mut r);
    let (y0, y1) = ring.share_vec(&ey, &mut r);
    let (s, c) = run(|p| {
        if p.is_server() {
            mul_trunc(p, ring, &x0, &y0, s_bits, TruncMode::Faithful)
        } else {
            mul_trunc(p, ring, &x1, &y1, s_bits, TruncMode::Faithful)
        }
    });
    let got = ring.reconstruct(&s.out, &c.out);
    for i in 0..xs.len() {
        assert_eq!(ring.to_signed(got[i]), (xs[i] * ys[i]) >> s_bits);
    }
    assert_cost(&s, &c, &mul_trunc_cost(xs.len(), ring, s_bits, TruncMode::Faithful));
}

#[test]
fn gelu_style_segment_indicators_are_one_hot() {
    use fastlmpi::proto::toolkit::cmp::segment_indicators;
    let ring = Ring::new(37).unwrap();
    let (k, d) = (20u32, 5u32);
    let grid = 1i64 << d;
    let round = |v: f64| ((v * 4096.0 / grid as f64).round() as i64) * grid;
    let bps = [round(-5.075), round(-std::f64::consts::SQRT_2), round(std::f64::consts::SQRT_2), round(5.075)];
    let mut r = rng(61);
    let mut extra = Vec::new();
    for &t in &bps {
        extra.extend_from_slice(&[t - 1, t, t + 1, t + 2 * grid - 2, t + 2 * grid - 3]);
    }
    let vals = signed_values(ring, 17, &extra, 400, &mut r);
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    let (x0, x1) = ring.share_vec(&enc, &mut r);
    for (kk, dd) in [(37u32, 0u32), (k, d)] {
        let (s, c) = run(|p| segment_indicators(p, ring, if p.is_server() { &x0 } else { &x1 }, &bps, kk, dd));
        let ind: Vec<Vec<u8>> = s.out.iter().zip(&c.out).map(|(a, b)| bools(a, b)).collect();
        let window = (1i64 << (dd + 1)) - 2;
        for (i, &v) in vals.iter().enumerate() {
            let hot: Vec<usize> = (0..ind.len()).filter(|&j| ind[j][i] == 1).collect();
            assert_eq!(hot.len(), 1, "x={v}: not one-hot");
            let exact = bps.iter().filter(|&&t| t <= v).count();
            let near = bps.iter().any(|&t| (0..window).contains(&(v - t)));
            assert!(hot[0] == exact || (near && hot[0] + 1 == exact), "x={v} got segment {} want {exact}", hot[0]);
        }
        assert_cost(&s, &c, &lt_public_cost(vals.len(), bps.len(), kk, dd));
    }
}

/// `⌊x/2^s⌋ mod 2^k` from ring shares, exact on the whole ring (both ends included).
#[test]
fn narrow_floor_is_exact_on_the_whole_ring() {
    let l = 40;
    let ring = Ring::new(l).unwrap();
    let (s_bits, k) = (12u32, 11u32);
    let narrow = Ring::new(k).unwrap();
    let mut r = rng(21);
    let mut extra = ring_edges(l);
    extra.extend([4095, 4096, -4096, -4097, (1 << 23) - 1, -(1 << 23)]);
    let vals = signed_values(ring, l - 1, &extra, 300, &mut r);
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    let (x0, x1) = ring.share_vec(&enc, &mut r);
    let (s, c) = run(|p| floor_narrow(p, ring, if p.is_server() { &x0 } else { &x1 }, s_bits, narrow));
    let got = narrow.reconstruct(&s.out, &c.out);
    for (i, &v) in vals.iter().enumerate() {
        assert_eq!(got[i], narrow.from_signed(v >> s_bits), "x = {v}");
    }
    assert_cost(&s, &c, &floor_narrow_cost(vals.len(), s_bits, k));
    // s + k beyond ℓ is a configuration error on both sides, not a wrong result.
    let (s, c) = run(|p| Ok(floor_narrow(p, ring, &[], 30, narrow).is_err()));
    assert!(s.out && c.out);
}

/// Thresholds on a grid of 2^s: exact on the integer part, at the thresholds ±1 and at the
/// domain edges; cheaper than the full-width comparison; off-grid thresholds are rejected.
#[test]
fn coarse_threshold_comparison_is_exact() {
    let l = 40;
    let ring = Ring::new(l).unwrap();
    let (s_bits, k) = (12u32, 11u32);
    // SoftMax's exp knots: −10 … −1 units at 12 fraction bits; inputs z ∈ (−2^21, 0].
    let thresholds: Vec<i64> = (1..=10).map(|j| -j * 4096).collect();
    let lim = (1i64 << 21) - 1;
    let mut extra = vec![-lim, 0, -1, lim];
    for &t in &thresholds {
        extra.extend([t - 1, t, t + 1]);
    }
    let mut r = rng(22);
    let vals = signed_values(ring, 21, &extra, 300, &mut r);
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    let (x0, x1) = ring.share_vec(&enc, &mut r);
    let (s, c) = run(|p| lt_public_coarse(p, ring, if p.is_server() { &x0 } else { &x1 }, &thresholds, s_bits, k));
    for (t_idx, &t) in thresholds.iter().enumerate() {
        let got = bools(&s.out[t_idx], &c.out[t_idx]);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(got[i], (v < t) as u8, "x = {v}, T = {t}");
        }
    }
    let n = vals.len();
    assert_cost(&s, &c, &lt_public_coarse_cost(n, thresholds.len(), s_bits, k));
    let full = lt_public_cost(n, thresholds.len(), s_bits + k, 0);
    assert!(lt_public_coarse_cost(n, thresholds.len(), s_bits, k).ot_count() * 2 < full.ot_count(), "coarse comparison saves OTs");
    // No inputs: one empty result per threshold, nothing sent.
    let (s, c) = run(|p| lt_public_coarse(p, ring, &[], &thresholds, s_bits, k));
    assert!(s.out.len() == thresholds.len() && s.out.iter().chain(&c.out).all(Vec::is_empty));
    assert_eq!(s.stats.bytes_sent + c.stats.bytes_sent, 0);
    let off_grid = run(|p| {
        let e = lt_public_coarse(p, ring, if p.is_server() { &x0 } else { &x1 }, &[4096, 100], s_bits, k);
        Ok(e.is_err())
    });
    assert!(off_grid.0.out && off_grid.1.out);
}

/// The partial-carry variant: the floor takes the carry of only the top bits of the low s, so
/// each comparison is exactly `[x − γ·2^d < T]` with γ the carry of the shares' low d bits
/// (traced); inputs just above a threshold (inside the 2^d reach) see both outcomes over the
/// random shares; the documented cost, lower than the exact floor's.
#[test]
fn partial_carry_comparison_is_exact_given_its_traced_carries() {
    let ring = Ring::new(40).unwrap();
    let (s_bits, k) = (12u32, 11u32);
    let thresholds: Vec<i64> = (1..=10).map(|j| -j * 4096).collect();
    let lim = (1i64 << 21) - 1;
    let mut extra = vec![-lim, 0, -1, lim];
    for &t in &thresholds {
        extra.extend((0..12).map(|j| t + j * 21));
        extra.push(t - 1);
    }
    let mut r = rng(24);
    let vals = signed_values(ring, 21, &extra, 300, &mut r);
    let enc: Vec<u64> = vals.iter().map(|&v| ring.from_signed(v)).collect();
    let (x0, x1) = ring.share_vec(&enc, &mut r);
    for carry_bits in [0u32, 4] {
        let d = s_bits - carry_bits;
        let (s, c) = run(|p| {
            trace::start();
            let out = lt_public_coarse_partial(p, ring, if p.is_server() { &x0 } else { &x1 }, &thresholds, s_bits, carry_bits, k);
            Ok((out?, trace::finish()))
        });
        let gamma = trace::carries(&s.out.1, &c.out.1).unwrap();
        assert_eq!(gamma.len(), 1);
        let mut flipped = 0;
        for (t_idx, &t) in thresholds.iter().enumerate() {
            let got = bools(&s.out.0[t_idx], &c.out.0[t_idx]);
            for (i, &v) in vals.iter().enumerate() {
                let seen = v - (i64::from(gamma[0][i]) << d);
                assert_eq!(got[i], (seen < t) as u8, "x = {v}, γ = {}, T = {t}, carry bits {carry_bits}", gamma[0][i]);
                flipped += usize::from(got[i] != (v < t) as u8);
            }
        }
        assert!(flipped > 0, "no input inside a threshold's reach was classified below it");
        let n = vals.len();
        let cost = lt_public_coarse_partial_cost(n, thresholds.len(), s_bits, carry_bits, k);
        assert_cost(&s, &c, &cost);
        assert!(cost.ot_count() < lt_public_coarse_cost(n, thresholds.len(), s_bits, k).ot_count());
    }
}

/// The table lookup: `[t ∨ (j < τ)]` for an index shared mod 16 and a shared bit, on every
/// index and both tail values (each with random shares), thresholds 0 and 16 included; its
/// documented cost; bad arguments are configuration errors.
#[test]
fn small_shared_index_comparison_is_exact() {
    let mut r = rng(25);
    let n = 16 * 2 * 5;
    let (j, t): (Vec<u8>, Vec<u8>) = (0..n).map(|i| ((i % 16) as u8, ((i / 16) % 2) as u8)).unzip();
    let js: Vec<u8> = (0..n).map(|_| (r.next_u32() % 16) as u8).collect();
    let jc: Vec<u8> = j.iter().zip(&js).map(|(&v, &a)| (v + 16 - a) % 16).collect();
    let ts: Vec<u8> = (0..n).map(|_| (r.next_u32() & 1) as u8).collect();
    let tc: Vec<u8> = t.iter().zip(&ts).map(|(&v, &a)| v ^ a).collect();
    let taus: Vec<u8> = vec![0, 1, 5, 10, 15, 16];
    let (s, c) = run(|p| if p.is_server() { lt_small_or(p, &js, &ts, &taus) } else { lt_small_or(p, &jc, &tc, &taus) });
    for (k, &tau) in taus.iter().enumerate() {
        let got = bools(&s.out[k], &c.out[k]);
        for i in 0..n {
            assert_eq!(got[i], u8::from(t[i] == 1 || j[i] < tau), "j = {}, t = {}, τ = {tau}", j[i], t[i]);
        }
    }
    assert_cost(&s, &c, &lt_small_or_cost(n, taus.len()));
    let (s, c) = run(|p| Ok(lt_small_or(p, &js, &ts, &[17]).is_err() && lt_small_or(p, &js[1..], &ts, &[3]).is_err()));
    assert!(s.out && c.out);
}

#[test]
fn field_multiplexer_selects() {
    let field = Field::new(1125899906842597).unwrap();
    let mut r = rng(23);
    let n = 301;
    let vals: Vec<u64> = (0..n).map(|i| if i < 3 { [0, 1, field.modulus() - 1][i] } else { field.random(&mut r) }).collect();
    let (bs, bc, b) = random_bit_pairs(&mut r, n);
    let (x0, x1) = field.share_vec(&vals, &mut r);
    let (s, c) = run(|p| if p.is_server() { mux_field(p, field, &bs, &x0) } else { mux_field(p, field, &bc, &x1) });
    let got = field.reconstruct(&s.out, &c.out);
    for i in 0..n {
        assert_eq!(got[i], if b[i] == 1 { vals[i] } else { 0 }, "element {i}");
    }
    assert_cost(&s, &c, &mux_field_cost(n, field));
}
