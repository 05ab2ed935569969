//! Evaluation of several centred polynomials on one field-shared input, without ct × ct.
//!
//! **Paper reference.** FASTLMPI (arXiv 2412.16537), GeLU (prototype `gelu_test.cpp`, notes
//! §2.4): the server evaluates the segment polynomials under HE on the client-encrypted input.
//! The prototype squares ciphertexts (x→x²→x⁴, relinearisation, depth 3) and "rescales" by
//! multiplying with (2^s)^−1 mod p, which is wrong unless the value is a multiple of 2^s.
//! Fixed here: the client uploads its own powers, the server only does ct × pt, and the
//! result is the exact integer accumulator (no rescaling under HE; one truncation later, on
//! shares).
//!
//! **Functionality.** Input `x = x_c + x_s` over Z_t; public polynomials
//! `P_i(u) = Σ_k A_{i,k} u^k` in the centred variable `u = x − M_i` (integers `A`, `M`).
//! Output: fresh shares over Z_t of `V_i = P_i(x − M_i) mod t` for every i. Signed decoding
//! is exact iff `|V_i| < t/2`; for inputs where it is not (e.g. outside a segment) the value
//! wraps mod t, which callers must make harmless (GeLU multiplies it by a 0 indicator).
//!
//! **Method.** With `y = x_s − M` (server-local),
//! `(x_c + y)^k = Σ_j binom(k,j) x_c^j y^(k−j)`, so
//! `Enc(P) = Σ_{j≥1} c_j ⊙ Enc(x_c^j) + c_0` with the server's plaintext vectors
//! `c_j = Σ_{k≥j} A_k binom(k,j) y^(k−j) mod t`. All polynomials reuse the same uploads.
//!
//! **Message flow.**
//! ```text
//!   client                                    server
//!   Enc(x_c^j), j = 1..d   ──────────────▶    for each i: C_i = Σ_j c_{i,j} ⊙ Enc(x_c^j) + c_{i,0}
//!   V_i^c = Dec(C_i')      ◀──────────────    (C_i', −R_i) = private_return(C_i)
//! ```
//! d = max degree. Two flights. [`eval_polys_selected`] returns instead the selected sum
//! `Σ_i b_i·V_i` for XOR-shared bits `b_i` (the server's bits folded into its plaintexts, one
//! more return, then one correlated OT mod t per polynomial; see there).
//!
//! **Error.** Exact mod t.
//!
//! **Bytes per element** (per N-slot block, divided by N): `d·seeded + m·full(ℓ)` with m
//! polynomials ([`poly_bytes`]); the noise bound is `d·N·(t/2)·e_fresh` (d ct×pt terms with
//! arbitrary SIMD plaintexts).
//!
//! **Security (semi-honest).** As for `hemul`: the server sees only fresh client-key RLWE
//! ciphertexts; each returned ciphertext is masked with a uniform R, re-randomised, flooded
//! with ≥ 2^40 × the worst-case noise and switched down (`private_return`), so the client sees
//! uniformly masked values independent of the server's share and coefficients (which are
//! public here anyway). The server never decrypts.

use crate::proto::ctx::{Cost, Party};
use crate::proto::toolkit::mux::{client_bit_times_server_field, client_bit_times_server_field_cost};
use super::hemul::{self, block_slice, HeParty, LinComb};
use crate::error::{Error, Result};
use crate::he::HeContext;
use crate::share::Field;

/// `P(u) = Σ_k coeffs[k] · u^k` with `u = x − centre` (integers, signed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CentredPoly {
    pub centre: i64,
    pub coeffs: Vec<i64>,
}

impl CentredPoly {
    pub fn degree(&self) -> usize {
        self.coeffs.len().saturating_sub(1)
    }
    /// Exact evaluation over the integers (i128; `None` on overflow).
    pub fn eval_exact(&self, x: i64) -> Option<i128> {
        let u = x as i128 - self.centre as i128;
        let mut acc: i128 = 0;
        for &a in self.coeffs.iter().rev() {
            acc = acc.checked_mul(u)?.checked_add(a as i128)?;
        }
        Some(acc)
    }
    /// Evaluation mod t of the field element `x` (the cleartext mirror of the protocol).
    pub fn eval_field(&self, field: Field, x: u64) -> u64 {
        let u = field.sub(x, field.from_signed(self.centre));
        let mut acc = 0u64;
        for &a in self.coeffs.iter().rev() {
            acc = field.add(field.mul(acc, u), field.from_signed(a));
        }
        acc
    }
}

fn max_degree(polys: &[CentredPoly]) -> usize {
    polys.iter().map(CentredPoly::degree).max().unwrap_or(0)
}

fn check_polys(field: Field, polys: &[CentredPoly]) -> Result<usize> {
    let d = max_degree(polys);
    if polys.is_empty() || d == 0 {
        return Err(Error::Config("HE polynomial evaluation needs at least one polynomial of degree ≥ 1".into()));
    }
    let half = (field.modulus() / 2) as i64;
    let too_big = |v: i64| v.unsigned_abs() >= half as u64;
    if polys.iter().any(|p| too_big(p.centre) || p.coeffs.iter().any(|&a| too_big(a))) {
        return Err(Error::Config("polynomial coefficient or centre does not fit the plaintext field".into()));
    }
    Ok(d)
}

/// Binomial coefficients binom(k, j) mod t for k ≤ d.
fn binomials(field: Field, d: usize) -> Vec<Vec<u64>> {
    let mut rows: Vec<Vec<u64>> = vec![vec![1]];
    for k in 1..=d {
        let prev = &rows[k - 1];
        let row: Vec<u64> = (0..=k)
            .map(|j| {
                let left = if j > 0 { prev[j - 1] } else { 0 };
                let right = if j < k { prev[j] } else { 0 };
                field.add(left, right)
            })
            .collect();
        rows.push(row);
    }
    rows
}

/// The server's plaintext vectors c_0..c_d of `poly` for its shares `x_s` (slot-major:
/// result[j][slot]).
fn server_coefficients(field: Field, binom: &[Vec<u64>], poly: &CentredPoly, d: usize, x_s: &[u64]) -> Vec<Vec<u64>> {
    let a: Vec<u64> = poly.coeffs.iter().map(|&c| field.from_signed(c)).collect();
    let m = field.from_signed(poly.centre);
    let mut c = vec![vec![0u64; x_s.len()]; d + 1];
    let mut ypow = vec![1u64; d + 1];
    for (slot, &xs) in x_s.iter().enumerate() {
        let y = field.sub(xs, m);
        for e in 1..=d {
            ypow[e] = field.mul(ypow[e - 1], y);
        }
        for j in 0..=d {
            let mut acc = 0u64;
            for k in j..a.len() {
                acc = field.add(acc, field.mul(field.mul(a[k], binom[k][j]), ypow[k - j]));
            }
            c[j][slot] = acc;
        }
    }
    c
}

/// The client's powers x_c^1..x_c^d.
fn client_powers(field: Field, x_c: &[u64], d: usize) -> Vec<Vec<u64>> {
    let mut out: Vec<Vec<u64>> = Vec::with_capacity(d);
    out.push(x_c.iter().map(|&v| field.reduce(v)).collect());
    for j in 1..d {
        let next: Vec<u64> = out[j - 1].iter().zip(x_c).map(|(&p, &x)| field.mul(p, x)).collect();
        out.push(next);
    }
    out
}

/// Documented bytes of [`eval_polys`] for `len` inputs, `polys.len()` outputs.
pub fn poly_bytes(ctx: &HeContext, len: usize, polys: &[CentredPoly]) -> Result<u64> {
    let d = check_polys(ctx.field(), polys)?;
    hemul::he_bytes(ctx, len, d, polys.len(), d)
}

/// Field shares of `P_i(x − M_i)` for every polynomial (result[i][element]).
pub fn eval_polys(p: &mut Party, he: &HeParty, x: &[u64], polys: &[CentredPoly]) -> Result<Vec<Vec<u64>>> {
    he.check_role(p)?;
    let field = he.ctx.field();
    let d = check_polys(field, polys)?;
    let len = x.len();
    if len == 0 {
        return Ok(vec![Vec::new(); polys.len()]);
    }
    p.ch.set_phase("he-poly");
    if p.is_server() {
        let ups = hemul::server_receive(p, he, d, len)?;
        let ups: Vec<Vec<_>> = ups.iter().map(|blk| blk.iter().collect()).collect();
        let binom = binomials(field, d);
        let ctx = he.ctx;
        hemul::server_evaluate_return(p, he, &ups, len, polys.len(), d, |blk| {
            let xs = block_slice(ctx, x, blk);
            Ok(polys.iter().map(|poly| lin_comb(server_coefficients(field, &binom, poly, d, xs))).collect())
        })
    } else {
        hemul::client_upload(p, he, &client_powers(field, x, d), len)?;
        hemul::client_receive(p, he, len, polys.len(), d)
    }
}

/// The output `c_0 + Σ_{j≥1} c_j ⊙ Enc(x_c^j)` for the plaintext vectors `c` (upload j − 1
/// holds `x_c^j`).
fn lin_comb(mut c: Vec<Vec<u64>>) -> LinComb {
    let constant = std::mem::take(&mut c[0]);
    let mults = c.into_iter().enumerate().skip(1).map(|(j, v)| (j - 1, v)).collect();
    LinComb { mults, constant }
}

/// The server's outputs of [`eval_polys_selected`] for one block: `U_i = (1 − 2b_i) ⊙ P_i`
/// for every polynomial, then `W = Σ_i b_i ⊙ P_i` (`coeffs[i][j]` the plaintext vectors of
/// `P_i`, `bits[i]` the server's bits of the block).
fn selection_outputs(field: Field, coeffs: Vec<Vec<Vec<u64>>>, bits: &[&[u8]]) -> Vec<LinComb> {
    let slots = bits.first().map_or(0, |b| b.len());
    let terms = coeffs.first().map_or(0, Vec::len);
    let mut w = vec![vec![0u64; slots]; terms];
    let mut out = Vec::with_capacity(coeffs.len() + 1);
    for (mut c, b) in coeffs.into_iter().zip(bits) {
        for (cj, wj) in c.iter_mut().zip(w.iter_mut()) {
            for ((v, acc), &bit) in cj.iter_mut().zip(wj.iter_mut()).zip(b.iter()) {
                if bit & 1 == 1 {
                    *acc = field.add(*acc, *v);
                    *v = field.neg(*v);
                }
            }
        }
        out.push(lin_comb(c));
    }
    out.push(lin_comb(w));
    out
}

/// Field shares of `Σ_i b_i · P_i(x − M_i)`: the polynomials selected by XOR-shared bits
/// (`bits[i]` this party's shares of `b_i`, one per element; GeLU's one-hot segment
/// indicator). Since `b_i = b_i^S + (1 − 2b_i^S)·b_i^C`, the server folds its own bits into
/// the evaluation: it returns `U_i = (1 − 2b_i^S) ⊙ P_i` for every i and `W = Σ_i b_i^S ⊙ P_i`
/// (P + 1 masked returns, the same ct × pt noise bound as [`eval_polys`]); the client then
/// multiplies its share of each `U_i` by its bit locally, and the server's share by one
/// correlated OT mod t (`mux::client_bit_times_server_field`):
/// `Σ_i b_i P_i = W + Σ_i b_i^C·U_i`. P OTs instead of the 2P of a multiplexer per
/// polynomial, for one more returned ciphertext per block. Flights: the two of the HE step,
/// then the OT's two.
///
/// Security: the client sees P + 1 returns, each masked by its own uniform R over Z_t
/// (flooded and switched down as in [`eval_polys`]), and the OT's output masked by the
/// sender's uniform r; the server sees client-key ciphertexts and the OT receiver's
/// (hidden) choices. The server's bits enter only its plaintext vectors.
pub fn eval_polys_selected(p: &mut Party, he: &HeParty, x: &[u64], polys: &[CentredPoly], bits: &[&[u8]]) -> Result<Vec<u64>> {
    he.check_role(p)?;
    let field = he.ctx.field();
    let d = check_polys(field, polys)?;
    let len = x.len();
    if bits.len() != polys.len() || bits.iter().any(|b| b.len() != len) {
        return Err(Error::Config(format!("polynomial selection: {} bit vectors for {} polynomials of {len} inputs", bits.len(), polys.len())));
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    let m = polys.len();
    p.ch.set_phase("he-poly");
    let shares = if p.is_server() {
        let ups = hemul::server_receive(p, he, d, len)?;
        let ups: Vec<Vec<_>> = ups.iter().map(|blk| blk.iter().collect()).collect();
        let binom = binomials(field, d);
        let ctx = he.ctx;
        hemul::server_evaluate_return(p, he, &ups, len, m + 1, d, |blk| {
            let xs = block_slice(ctx, x, blk);
            let start = (blk * ctx.slots()).min(len);
            let own: Vec<&[u8]> = bits.iter().map(|b| &b[start..start + xs.len()]).collect();
            let coeffs = polys.iter().map(|poly| server_coefficients(field, &binom, poly, d, xs)).collect();
            Ok(selection_outputs(field, coeffs, &own))
        })?
    } else {
        hemul::client_upload(p, he, &client_powers(field, x, d), len)?;
        hemul::client_receive(p, he, len, m + 1, d)?
    };
    let (u, w) = shares.split_at(m);
    let mut y = w[0].clone();
    if p.is_server() {
        let cross = client_bit_times_server_field(p, field, &Vec::new(), &u.concat())?;
        for chunk in cross.chunks(len) {
            field.add_into(&mut y, chunk);
        }
    } else {
        let cross = client_bit_times_server_field(p, field, &bits.concat(), &[])?;
        for ((ui, bi), chunk) in u.iter().zip(bits).zip(cross.chunks(len)) {
            let own: Vec<u64> = ui.iter().zip(bi.iter()).map(|(&v, &b)| if b & 1 == 1 { v } else { 0 }).collect();
            field.add_into(&mut y, &own);
            field.add_into(&mut y, chunk);
        }
    }
    Ok(y)
}

/// Documented cost of [`eval_polys_selected`] on `len` inputs (HE bytes as `own_bytes`).
pub fn eval_polys_selected_cost(ctx: &HeContext, len: usize, polys: &[CentredPoly]) -> Result<Cost> {
    let d = check_polys(ctx.field(), polys)?;
    let he = hemul::he_bytes(ctx, len, d, polys.len() + 1, d)?;
    Ok(Cost::own(he) + client_bit_times_server_field_cost(len * polys.len(), ctx.field()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_coefficients_reassemble_the_polynomial() {
        let field = Field::new(2_305_843_009_213_693_951).unwrap();
        let poly = CentredPoly { centre: -7, coeffs: vec![3, -5, 11, 0, -2] };
        let d = poly.degree();
        let binom = binomials(field, d);
        for (x, xc) in [(5i64, 123_456_789u64), (-20, 42), (0, field.modulus() - 1)] {
            let xv = field.from_signed(x);
            let xs = field.sub(xv, xc);
            let c = server_coefficients(field, &binom, &poly, d, &[xs]);
            let mut acc = c[0][0];
            let mut pw = 1u64;
            for cj in c.iter().skip(1) {
                pw = field.mul(pw, xc);
                acc = field.add(acc, field.mul(cj[0], pw));
            }
            assert_eq!(field.to_signed(acc) as i128, poly.eval_exact(x).unwrap());
            assert_eq!(acc, poly.eval_field(field, xv));
        }
    }

    #[test]
    fn binomial_rows() {
        let field = Field::new(97).unwrap();
        assert_eq!(binomials(field, 4)[4], vec![1, 4, 6, 4, 1]);
    }
}
