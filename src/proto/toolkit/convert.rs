//! Share conversions between the HE plaintext field Z_p and the ring Z_{2^ℓ}, with signed
//! re-centring; and field→ring fused with a truncation (HE outputs at scale 2s → ring at s).
//!
//! **Reference.** CrypTFlow2 (CCS'20) / Cheetah (USENIX Sec'22) §4–5 (HE-to-share then
//! prime-to-ring with one wrap comparison); SIRNN (S&P'21) for wrap computation from MSBs;
//! FASTLMPI's `gt_p_sub` (P→R) step, repaired with the signed re-centring it lacks.
//!
//! ## Field → ring ([`field_to_ring`])
//! **Functionality.** Shares `a_S + a_C ≡ x (mod p)` of a signed `x` with `|x| < 2^k` ↦
//! shares of the same signed `x` in Z_{2^ℓ}.
//!
//! **Method.** With `H = (p−1)/2` the server re-centres its share `a'_S = a_S + H mod p`, so
//! that `y = x + H ∈ [0, p)` and, as integers, `a'_S + a_C = y + w·p` with the wrap
//! `w = [a_C > t]`, `t = p − 1 − a'_S` (server-local). Then `x = a'_S − H + a_C − w·p`, which is
//! computed in the ring after a B2A of `w`.
//! Because `|x| ≤ B = 2^k − 1`, `y` stays at distance `M = H − B` from 0 and p, so
//! `a_C − t ≥ M + 1` when `w = 1` and `a_C − t ≤ −M` when `w = 0`. Comparing `⌊a_C/2^d⌋ >
//! ⌊t/2^d⌋` instead is therefore **exact** for any `d` with `2^d ≤ M + 1`; we take the largest
//! such `d`, so the millionaire runs on only `bits(p) − d` bits (e.g. 2–3 bits when
//! `|x| < 2^40` and `p ≈ 2^50`). This is the reduced-bit-width comparison of `cmp` in its
//! exact form.
//!
//! **Domain.** `|x| ≤ 2^k − 1` with `2^k − 1 < (p−1)/2` and `k ≤ ℓ − 1`. **Error:** exact.
//!
//! **Bytes per element.** `M(bits(p) − d) + C_cot(ℓ)` (millionaire on `bits(p) − d` bits, see
//! `cmp`, plus a ring B2A). Flights: 4 when the reduced wrap comparison has ≤ 4 bits (one digit:
//! OT-16 batch, then the B2A batch), in general millionaire flights + 1.
//!
//! ## Field → ring with truncation ([`field_to_ring_trunc`])
//! Field→ring into Z_{2^(ℓ+s)} followed by [`trunc`] by `s` bits there and a local reduction
//! mod 2^ℓ (a ring homomorphism). Domain: `|x| < 2^k`, `k ≤ ℓ + s − 2`, `ℓ + s ≤ 64`,
//! `2^k − 1 < (p−1)/2`. Error: exact floor (`Faithful`) or floor − {0,1} (`Approx`).
//! Bytes: `M(bits(p) − d) + C_cot(ℓ+s) + trunc cost at ℓ+s bits`.
//!
//! ## Ring → field ([`ring_to_field`])
//! **Functionality.** Shares of a signed `x ∈ [−2^(ℓ−2), 2^(ℓ−2))` over Z_{2^ℓ} ↦ shares of
//! the same signed `x` over Z_p (`ℓ ≤ bits(p)`, so `|x| < p/2`).
//!
//! **Method.** As in `trunc`: the server adds `2^(ℓ−2)` so `y` has MSB 0 and the ring wrap is
//! `w = m_S ∨ m_C` (MSBs of the shares). `m_S·m_C` is shared over Z_p with one correlated OT
//! mod p (`Δ = m_S`, the client chooses with `m_C`: the server keeps uniform `r`, the client
//! gets `r + m_S·m_C`). Then
//! `x = y_S + y_C − w·2^ℓ − 2^(ℓ−2)` is evaluated mod p.
//!
//! **Domain.** as above. **Error:** exact. **Bytes per element:** `C_cot(bits(p))`.
//! Flights: 2 (one OT batch).
//!
//! **Security (semi-honest).** Only OT and the millionaire are used, whose outputs are fresh
//! uniform shares (server masks `r` uniform over the whole ring/field); the server's local
//! re-centring and the client's local shifts reveal nothing. No value is ever opened.

use super::b2a::{b2a_ring, b2a_ring_cost};
use super::cmp::{millionaire_cost, millionaire_gt};
use crate::proto::ctx::{Cost, Party, Step};
use super::trunc::{trunc, trunc_cost, TruncMode};
use crate::error::{Error, Result};
use crate::share::{Field, Ring};

/// Number of low bits that the wrap comparison of [`field_to_ring`] may ignore (exactly)
/// when `|x| < 2^bound_bits`, and the resulting comparison width.
pub fn field_wrap_width(field: Field, bound_bits: u32) -> Result<(u32, u32)> {
    let half = (field.modulus() - 1) / 2;
    let max_abs = if bound_bits >= 63 { u64::MAX } else { (1u64 << bound_bits) - 1 };
    if max_abs >= half {
        return Err(Error::Config(format!(
            "field→ring bound 2^{bound_bits} does not fit below (p−1)/2 for p = {}",
            field.modulus()
        )));
    }
    let margin_plus_one = half - max_abs + 1;
    let drop = 63 - margin_plus_one.leading_zeros(); // floor(log2(M + 1))
    Ok((drop, field.bits() - drop))
}

/// Shares mod `2^ℓ` of the signed value `x`, `|x| < 2^bound_bits`, given its shares mod p.
pub fn field_to_ring(p: &mut Party, field: Field, ring: Ring, a: &[u64], bound_bits: u32) -> Result<Vec<u64>> {
    if bound_bits + 1 > ring.bits() {
        return Err(Error::Config(format!("field→ring bound 2^{bound_bits} does not fit the {}-bit ring", ring.bits())));
    }
    let (drop, width) = field_wrap_width(field, bound_bits)?;
    p.ch.set_phase("field-to-ring");
    let pm = field.modulus();
    let half = (pm - 1) / 2;
    let own: Vec<u64> = if p.is_server() {
        a.iter().map(|&v| field.add(field.reduce(v), half)).collect()
    } else {
        a.iter().map(|&v| field.reduce(v)).collect()
    };
    let mill_in: Vec<u64> = if p.is_server() { own.iter().map(|&v| (pm - 1 - v) >> drop).collect() } else { own.iter().map(|&v| v >> drop).collect() };
    let wrap = millionaire_gt(p, &mill_in, width)?;
    let wrap_a = b2a_ring(p, ring, &wrap)?;
    let p_ring = ring.reduce(pm);
    let shift = if p.is_server() { ring.reduce(half) } else { 0 };
    Ok(own
        .iter()
        .zip(&wrap_a)
        .map(|(&v, &w)| ring.sub(ring.sub(ring.reduce(v), shift), ring.mul(w, p_ring)))
        .collect())
}

/// Field→ring conversion fused with a truncation by `s` bits: shares mod `2^ℓ` of
/// `⌊x / 2^s⌋` (exact in `Faithful` mode) for `|x| < 2^bound_bits`.
pub fn field_to_ring_trunc(p: &mut Party, field: Field, ring: Ring, a: &[u64], bound_bits: u32, s: u32, mode: TruncMode) -> Result<Vec<u64>> {
    let wide = Ring::new(ring.bits() + s)?;
    if bound_bits + 2 > wide.bits() {
        return Err(Error::Config(format!("field→ring+trunc bound 2^{bound_bits} needs ℓ + s ≥ {}", bound_bits + 2)));
    }
    let x = field_to_ring(p, field, wide, a, bound_bits)?;
    let t = trunc(p, wide, &x, s, mode)?;
    Ok(t.iter().map(|&v| ring.reduce(v)).collect())
}

/// Shares mod p of the signed value `x ∈ [−2^(ℓ−2), 2^(ℓ−2))` given its shares mod `2^ℓ`.
pub fn ring_to_field(p: &mut Party, ring: Ring, field: Field, x: &[u64]) -> Result<Vec<u64>> {
    let l = ring.bits();
    if l < 2 || l > field.bits() {
        return Err(Error::Config(format!("ring→field needs 2 ≤ ℓ ≤ bits(p) (ℓ = {l}, bits(p) = {})", field.bits())));
    }
    p.ch.set_phase("ring-to-field");
    let pm = field.modulus();
    let bias = 1u64 << (l - 2);
    let y: Vec<u64> = if p.is_server() { x.iter().map(|&v| ring.add(v, bias)).collect() } else { x.iter().map(|&v| ring.reduce(v)).collect() };
    let msbs: Vec<u8> = y.iter().map(|&v| ring.msb(v) as u8).collect();
    let raw = if p.is_server() {
        let deltas: Vec<u64> = msbs.iter().map(|&m| m as u64).collect();
        p.cot_send_mod(&deltas, pm)?
    } else {
        p.cot_recv_mod(&msbs, pm)?
    };
    let two_l = ((1u128 << l) % pm as u128) as u64;
    let shift = if p.is_server() { field.reduce(bias) } else { 0 };
    Ok((0..x.len())
        .map(|i| {
            // w share over Z_p: server m_S + r, client m_C − (r + m_S m_C).
            let m = msbs[i] as u64;
            let w = if p.is_server() { field.add(m, raw[i]) } else { field.sub(m, raw[i]) };
            let v = field.sub(field.reduce(y[i]), shift);
            field.sub(v, field.mul(w, two_l))
        })
        .collect())
}

/// Documented cost of [`field_to_ring`] on `n` elements.
pub fn field_to_ring_cost(n: usize, field: Field, ring: Ring, bound_bits: u32) -> Result<Cost> {
    let (_, width) = field_wrap_width(field, bound_bits)?;
    Ok(millionaire_cost(n, width) + b2a_ring_cost(n, ring))
}

/// Documented cost of [`field_to_ring_trunc`] on `n` elements.
pub fn field_to_ring_trunc_cost(n: usize, field: Field, ring: Ring, bound_bits: u32, s: u32, mode: TruncMode) -> Result<Cost> {
    let wide = Ring::new(ring.bits() + s)?;
    Ok(field_to_ring_cost(n, field, wide, bound_bits)? + trunc_cost(n, wide, s, mode))
}

/// Documented cost of [`ring_to_field`] on `n` elements.
pub fn ring_to_field_cost(n: usize, field: Field) -> Cost {
    Cost::cot(field.bits(), n).then(&[Step::OtServerSends])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_width_keeps_the_exactness_margin() {
        let f = Field::new(1125899906826241).unwrap(); // a 50-bit prime
        let (drop, width) = field_wrap_width(f, 40).unwrap();
        let half = (f.modulus() - 1) / 2;
        let margin = half - ((1u64 << 40) - 1);
        assert!(1u64 << drop <= margin + 1);
        assert!(1u64 << (drop + 1) > margin + 1);
        assert_eq!(width, f.bits() - drop);
        assert!(field_wrap_width(f, 49).is_err());
    }
}
