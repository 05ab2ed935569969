//! Truncation (arithmetic right shift by `s` bits) of a signed shared ring value.
//!
//! **Reference.** SIRNN (Rathee et al., S&P'21) §3.3 (faithful truncation from the wrap and
//! the carry of the low bits) and Cheetah (Huang et al., USENIX Sec'22) §5.2 (cheap wrap when
//! the MSB is known; "approximate truncation" with a one-unit error).
//!
//! **Functionality.** For `x = x_S + x_C mod 2^ℓ` in the domain below, shares of
//! * [`TruncMode::Faithful`]: `⌊x / 2^s⌋` exactly (floor, i.e. an arithmetic shift);
//! * [`TruncMode::Approx`] ("±1 LSB" variant): `⌊x / 2^s⌋ − c` with `c ∈ {0, 1}` depending on
//!   the random shares, i.e. the result is the floor or one unit below it.
//!
//! **Method.** The server adds `2^(ℓ−2)`, so `y = x + 2^(ℓ−2) ∈ [0, 2^(ℓ−1))` has MSB 0. Then the
//! wrap `w = [y_S + y_C ≥ 2^ℓ]` equals `msb(y_S) ∨ msb(y_C)` (if both MSBs are 0 the sum cannot
//! wrap; if either is 1 and it did not wrap, `y` would have MSB 1). With `y_P = u_P 2^s + l_P`:
//! `⌊y/2^s⌋ = u_S + u_C + c − w·2^(ℓ−s)` where `c = [l_S + l_C ≥ 2^s]`, and
//! `⌊x/2^s⌋ = ⌊y/2^s⌋ − 2^(ℓ−2−s)`.
//!
//! **Message flow.**
//! * Faithful: millionaire on `s` bits for `c` (server input `2^s − 1 − l_S`, client `l_C`; see
//!   `cmp`), then one batch of `2n` correlated OTs over Z_{2^ℓ} (server sender): B2A of `c`
//!   and the product `msb(y_S)·msb(y_C)` for `w = m_S + m_C − m_S m_C`.
//! * Approx: only the `n` correlated OTs for `w`, over Z_{2^s} (`w` is multiplied by `2^(ℓ−s)`,
//!   so its shares are needed mod `2^s` only).
//!
//! **Domain.** `−2^(ℓ−2) ≤ x < 2^(ℓ−2)` and `1 ≤ s ≤ ℓ − 2` (`s = 0` returns the input).
//! Outside the domain the result is wrong (no error is detectable on shares).
//!
//! **Error bound.** Faithful: exact. Approx: `−1 ≤ out − ⌊x/2^s⌋ ≤ 0`.
//!
//! **Bytes per element.** Faithful: `M(s) + 2·C_cot(ℓ)` where `M(s)` is the millionaire cost on
//! `s` bits (`cmp`). Approx: `C_cot(s)`. Flights: faithful = millionaire flights + 1 (`2L + 2`,
//! e.g. 6 for s = 12: q = 3, L = 2; 4 for s ≤ 4); approx = 2.
//!
//! **Security (semi-honest).** Composition of the millionaire, B2A and correlated-OT products,
//! each of which hands out fresh uniform shares; no value is ever opened. Local shifts of
//! shares reveal nothing.
//!
//! **Error model of `Approx`, for simulations.** The error is exactly the dropped carry:
//! `out = ⌊x/2^s⌋ − c` with `c = [l_S + l_C ≥ 2^s]`, `l_P` the low `s` bits of party P's share of
//! `y` (the server's including the bias). [`trace`] lets a test that runs both parties collect
//! each party's `l_P` per call and rebuild every `c` ([`trace::carries`]), so a fixed-point
//! simulation fed those carries must equal the private output bit for bit.

use super::cmp::{millionaire_cost, millionaire_gt};
use crate::proto::ctx::{Cost, Party, Step};
use crate::error::{Error, Result};
use crate::share::Ring;

/// Which truncation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TruncMode {
    /// Exact `⌊x / 2^s⌋`.
    Faithful,
    /// `⌊x / 2^s⌋` or one less ("±1 LSB"); much cheaper (one short COT per element).
    Approx,
}

impl TruncMode {
    /// `approx` or `faithful` (command-line spelling).
    pub fn parse(name: &str) -> Result<TruncMode> {
        match name {
            "approx" => Ok(TruncMode::Approx),
            "faithful" => Ok(TruncMode::Faithful),
            other => Err(Error::Input(format!("unknown truncation `{other}` (expected approx or faithful)"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TruncMode::Approx => "approx",
            TruncMode::Faithful => "faithful",
        }
    }
}

fn check(ring: Ring, s: u32) -> Result<()> {
    if s + 2 > ring.bits() {
        return Err(Error::Config(format!("truncation by {s} bits needs ℓ ≥ s + 2 (ℓ = {})", ring.bits())));
    }
    Ok(())
}

/// Shares of `⌊x / 2^s⌋` (or one less in `Approx` mode) for `x ∈ [−2^(ℓ−2), 2^(ℓ−2))`.
pub fn trunc(p: &mut Party, ring: Ring, x: &[u64], s: u32, mode: TruncMode) -> Result<Vec<u64>> {
    if s == 0 {
        return Ok(x.to_vec());
    }
    check(ring, s)?;
    p.ch.set_phase("truncation");
    let l = ring.bits();
    let bias = if p.is_server() { 1u64 << (l - 2) } else { 0 };
    let y: Vec<u64> = x.iter().map(|&v| ring.add(v, bias)).collect();
    let msbs: Vec<u8> = y.iter().map(|&v| ring.msb(v) as u8).collect();
    let low_mask = (1u64 << s) - 1;
    let n = x.len();

    let (carry, w) = match mode {
        TruncMode::Faithful => {
            let low: Vec<u64> = y.iter().map(|&v| v & low_mask).collect();
            let mill_in: Vec<u64> = if p.is_server() { low.iter().map(|&v| low_mask - v).collect() } else { low };
            let c_bits = millionaire_gt(p, &mill_in, s)?;
            let mut choice_bits = c_bits.clone();
            choice_bits.extend_from_slice(&msbs);
            let arith = and_arith(p, ring, &choice_bits)?;
            let carry: Vec<u64> = (0..n).map(|i| b2a_from_product(p, ring, c_bits[i], arith[i])).collect();
            let w: Vec<u64> = (0..n).map(|i| or_from_product(p, ring, msbs[i], arith[n + i])).collect();
            (carry, w)
        }
        TruncMode::Approx => {
            trace::record(s, || y.iter().map(|&v| v & low_mask).collect());
            let short = Ring::new(s)?;
            let prod = and_arith(p, short, &msbs)?;
            let w: Vec<u64> = (0..n).map(|i| or_from_product(p, short, msbs[i], prod[i])).collect();
            (vec![0; n], w)
        }
    };
    let offset = if p.is_server() { 1u64 << (l - 2 - s) } else { 0 };
    let wrap_unit = 1u64 << (l - s);
    Ok((0..n)
        .map(|i| {
            let u = y[i] >> s;
            let v = ring.add(u, carry[i]);
            let v = ring.sub(v, ring.mul(w[i], wrap_unit));
            ring.sub(v, offset)
        })
        .collect())
}

/// Test instrumentation of [`TruncMode::Approx`]: while a thread has called [`trace::start`],
/// every approximate truncation it runs keeps this party's low bits `l_P` (its own share's
/// bits, never sent anywhere); [`trace::finish`] hands them back. Off by default: the check is
/// one thread-local read per call.
pub mod trace {
    use std::cell::RefCell;

    use crate::error::{Error, Result};

    /// One approximate truncation as one party saw it: the shift and its low bits per element.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct LowBits {
        pub shift: u32,
        pub low: Vec<u64>,
    }

    thread_local! {
        static CALLS: RefCell<Option<Vec<LowBits>>> = const { RefCell::new(None) };
    }

    /// Start keeping this thread's approximate truncations (dropping any earlier record).
    pub fn start() {
        CALLS.with(|c| *c.borrow_mut() = Some(Vec::new()));
    }

    /// Stop keeping them; the calls since [`start`], in order.
    pub fn finish() -> Vec<LowBits> {
        CALLS.with(|c| c.borrow_mut().take()).unwrap_or_default()
    }

    /// Whether this thread is keeping its truncations (callers skip collecting low bits otherwise).
    pub(crate) fn is_active() -> bool {
        CALLS.with(|c| c.borrow().is_some())
    }

    pub(crate) fn record(shift: u32, low: impl FnOnce() -> Vec<u64>) {
        CALLS.with(|c| {
            if let Some(calls) = c.borrow_mut().as_mut() {
                calls.push(LowBits { shift, low: low() });
            }
        });
    }

    /// The carries `c = [l_S + l_C ≥ 2^s]` of each call, from both parties' records.
    pub fn carries(server: &[LowBits], client: &[LowBits]) -> Result<Vec<Vec<u8>>> {
        if server.len() != client.len() {
            return Err(Error::Config(format!("{} truncations traced by the server, {} by the client", server.len(), client.len())));
        }
        server
            .iter()
            .zip(client)
            .map(|(s, c)| {
                if s.shift != c.shift || s.low.len() != c.low.len() {
                    return Err(Error::Config("the parties traced different truncations".into()));
                }
                Ok(s.low.iter().zip(&c.low).map(|(&a, &b)| u8::from((a + b) >> s.shift != 0)).collect())
            })
            .collect()
    }
}

/// Shares over `ring` of the product `b_S · b_C` of the two parties' local bits (one COT each,
/// server sender): the server's share is `−r`, the client's `r + b_S b_C`. Returns the raw COT
/// output (`r` on the server, `r + b_S b_C` on the client).
pub(crate) fn and_arith(p: &mut Party, ring: Ring, b: &[u8]) -> Result<Vec<u64>> {
    if p.is_server() {
        let deltas: Vec<u64> = b.iter().map(|&x| (x & 1) as u64).collect();
        p.cot_send(&deltas, ring.bits())
    } else {
        p.cot_recv(b, ring.bits())
    }
}

/// Share of `b_S ⊕ b_C = b_S + b_C − 2 b_S b_C` from the raw COT output of [`and_arith`].
fn b2a_from_product(p: &Party, ring: Ring, b: u8, raw: u64) -> u64 {
    let b = (b & 1) as u64;
    if p.is_server() {
        ring.add(b, ring.mul(2, raw))
    } else {
        ring.sub(b, ring.mul(2, raw))
    }
}

/// Share of `b_S ∨ b_C = b_S + b_C − b_S b_C` from the raw COT output of [`and_arith`].
pub(crate) fn or_from_product(p: &Party, ring: Ring, b: u8, raw: u64) -> u64 {
    let b = (b & 1) as u64;
    if p.is_server() {
        ring.add(b, raw)
    } else {
        ring.sub(b, raw)
    }
}

/// Documented cost of [`trunc`] on `n` elements.
pub fn trunc_cost(n: usize, ring: Ring, s: u32, mode: TruncMode) -> Cost {
    if s == 0 || n == 0 {
        return Cost::default();
    }
    match mode {
        TruncMode::Faithful => millionaire_cost(n, s) + Cost::cot(ring.bits(), 2 * n).then(&[Step::OtServerSends]),
        TruncMode::Approx => Cost::cot(s, n).then(&[Step::OtServerSends]),
    }
}

/// Cleartext reference of the faithful truncation (arithmetic shift).
pub fn trunc_reference(ring: Ring, x: u64, s: u32) -> u64 {
    ring.from_signed(ring.to_signed(x) >> s)
}
