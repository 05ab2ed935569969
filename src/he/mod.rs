//! BFV homomorphic-encryption layer over `fhe` 0.1.1: parameter presets with a checked
//! security level, the shared [`HeContext`], client/server key material and its *setup*
//! exchange, centred SIMD encoding, compact ciphertext transport ([`wire`]), circuit-private
//! returns ([`privacy`]) and HE↔share conversions ([`convert`]).
//!
//! Conventions used by every protocol on top of this module:
//! * Shares that enter or leave HE are additive over the plaintext field Z_t (`share::Field`),
//!   t prime with t ≡ 1 (mod 2N) so that SIMD batching works. Signed values are centred in
//!   (−t/2, t/2].
//! * Only the client owns a secret key. The server sees the client's public key, for the BSGS
//!   packing Galois (column-rotation) keys, and for a coefficient context the packing keys of
//!   [`galois`]; all are sent once as *setup* traffic (channel phase `he-setup`).
//! * Every ciphertext in a run is built against the single `Arc<BfvParameters>` held by the
//!   [`HeContext`] (`fhe` panics when two ciphertexts carry different `Arc`s).
//! * Ciphertexts coming from the peer are decoded by [`wire`] with exact size and range checks,
//!   so a malformed frame gives `Error::Protocol`, never a panic.

pub mod convert;
pub mod galois;
pub mod narrow;
pub mod privacy;
pub mod wire;

use std::sync::Arc;

use fhe::bfv::{BfvParameters, BfvParametersBuilder, Ciphertext, Encoding, EvaluationKey, Plaintext, PublicKey, SecretKey};
use fhe_math::ntt::NttOperator;
use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Poly, Representation};
use fhe_math::zq::primes::generate_prime;
use fhe_math::zq::Modulus;
use fhe_traits::{DeserializeParametrized, FheDecoder, FheDecrypter, FheEncoder, FheEncrypter, Serialize};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize as SerdeSerialize};

use crate::error::{Error, Result};
use crate::net::Channel;
use crate::share::Field;

/// Largest log2 Q for 128-bit classical security with a ternary/CBD secret (HomomorphicEncryption.org
/// standard, Table 1), by ring degree.
pub fn max_log_q_128(degree: usize) -> Option<u32> {
    match degree {
        1024 => Some(27),
        2048 => Some(54),
        4096 => Some(109),
        8192 => Some(218),
        16384 => Some(438),
        32768 => Some(881),
        _ => None,
    }
}

/// A named BFV parameter set: ring degree, ciphertext moduli sizes and plaintext size.
///
/// The actual primes are the largest primes below 2^size that are ≡ 1 mod 2N and different
/// from t and from each other, so log2 Q ≤ Σ sizes: the security check on Σ sizes is
/// conservative.
#[derive(Clone, Debug, PartialEq, Eq, SerdeSerialize, Deserialize)]
pub struct HePreset {
    pub name: String,
    pub degree: usize,
    pub moduli_bits: Vec<usize>,
    pub t_bits: u32,
}

impl HePreset {
    /// Linear layers and attention products at 12+12 fraction bits: N = 8192,
    /// Q = 55+55+54+54 = 218 bits (exactly the 128-bit bound), t a 54-bit prime (below every
    /// q_i, as the crate requires).
    /// Signed results must satisfy |y| < 2^53 (X·W at scale 24 needs ≤ 51 bits, see
    /// `proto::linear`). Measured flooding slack is documented in `proto::linear`.
    pub fn linear() -> HePreset {
        HePreset::simd(8192, 54)
    }
    /// Coefficient packing over the shares' ring (`HeContext::coefficient`): N = 8192,
    /// Q = 62 + 60 + 60 = 182 bits (below the 218-bit bound), t = 2^`ring_bits`. The 62-bit
    /// modulus is the one kept when switching down, so results return at a single modulus; the
    /// sizes are what 40-bit flooding over a key's whole return budget needs for share-sized
    /// plaintexts (`proto::linear::coeff`).
    pub fn coefficient(ring_bits: u32) -> HePreset {
        HePreset { name: format!("n8192-coeff-t2^{ring_bits}"), degree: 8192, moduli_bits: vec![62, 60, 60], t_bits: ring_bits }
    }
    /// A fast preset for unit tests: N = 4096, Q = 55+54 = 109 bits, t a 20-bit prime. It only
    /// supports short dot products (the flooding planner rejects what does not fit).
    pub fn small_test() -> HePreset {
        HePreset { name: "n4096-t20".into(), degree: 4096, moduli_bits: vec![55, 54], t_bits: 20 }
    }
    /// The smallest 128-bit-secure context: N = 2048, one 54-bit modulus, t a 20-bit prime.
    /// Too little noise room for any protocol; its keys and ciphertexts use the same wire
    /// formats and decoders as the real presets at an eighth of `small_test`'s size, so the HE
    /// decoders' fuzz targets run on it.
    pub fn wire_test() -> HePreset {
        HePreset { name: "n2048-t20".into(), degree: 2048, moduli_bits: vec![54], t_bits: 20 }
    }
    /// The largest 128-bit-secure modulus for `degree`, split into ~55-bit primes, with a
    /// `t_bits`-bit SIMD plaintext prime. `simd(8192, 54)` is [`HePreset::linear`];
    /// `simd(8192, 60)` is a candidate for depth-1 polynomial evaluation (GeLU powers).
    pub fn simd(degree: usize, t_bits: u32) -> HePreset {
        let max = max_log_q_128(degree).unwrap_or(109) as usize;
        // Prefer ~55-bit primes; every modulus must exceed t, so with a larger t use fewer,
        // larger primes (capped at 62 bits).
        let mut count = max.div_ceil(55).max(1);
        if max / count < t_bits as usize {
            count = (max / t_bits as usize).max(1);
        }
        let base = (max / count).min(62);
        let extra = if base == 62 { 0 } else { (max - base * count).min(count) };
        let moduli_bits = (0..count).map(|i| base + usize::from(i < extra)).collect();
        HePreset { name: format!("n{degree}-t{t_bits}"), degree, moduli_bits, t_bits }
    }
    /// Σ of the moduli sizes: an upper bound on log2 Q.
    pub fn log_q_bound(&self) -> u32 {
        self.moduli_bits.iter().sum::<usize>() as u32
    }
    /// Rejects any preset below 128-bit security or with malformed sizes.
    pub fn check_security(&self) -> Result<()> {
        let max = max_log_q_128(self.degree)
            .ok_or_else(|| Error::Config(format!("preset {}: degree {} not in the security table", self.name, self.degree)))?;
        if self.log_q_bound() > max {
            return Err(Error::Config(format!(
                "preset {}: log2 Q ≤ {} exceeds the 128-bit bound {} for N = {}",
                self.name,
                self.log_q_bound(),
                max,
                self.degree
            )));
        }
        if self.moduli_bits.iter().any(|&b| !(20..=62).contains(&b)) || !(12..=61).contains(&self.t_bits) {
            return Err(Error::Config(format!("preset {}: modulus or plaintext size out of range", self.name)));
        }
        Ok(())
    }
}

/// Everything both parties need to agree on to run HE protocols. Cheap to share by `&`.
pub struct HeContext {
    preset: HePreset,
    par: Arc<BfvParameters>,
    field: Field,
    /// SIMD slot i lives at NTT position `slot_map[i]` (the crate's batch-encoder order).
    slot_map: Vec<usize>,
    /// NTT mod t for SIMD batching; `None` for a coefficient-encoding context (t = 2^ℓ).
    ntt_t: Option<NttOperator>,
    /// Ciphertexts returned under this context's client key so far, and the most allowed
    /// (see [`privacy`]: the flooding width covers [`privacy::KEY_RETURN_BUDGET`] of them).
    returns: privacy::ReturnBudget,
    /// The prime results are sent at (coefficient contexts only, see [`narrow`]).
    narrow: Option<narrow::NarrowModulus>,
}

impl std::fmt::Debug for HeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeContext").field("preset", &self.preset).field("moduli", &self.par.moduli()).finish()
    }
}

/// Variance of the centred binomial error (and of the public-key encryption's u) of every
/// context: set explicitly because `he::privacy` samples its re-randomisation with it.
pub const ERROR_VARIANCE: usize = 10;

/// The crate's parameters for ring degree `degree`, ciphertext moduli `moduli` and plaintext
/// modulus `t`, with the error variance set explicitly.
fn bfv_parameters(degree: usize, moduli: &[u64], t: u64) -> Result<Arc<BfvParameters>> {
    Ok(BfvParametersBuilder::new()
        .set_degree(degree)
        .set_moduli(moduli)
        .set_plaintext_modulus(t)
        .set_variance(ERROR_VARIANCE)
        .build_arc()?)
}

impl HeContext {
    pub fn new(preset: &HePreset) -> Result<HeContext> {
        preset.check_security()?;
        let two_n = 2 * preset.degree as u64;
        let moduli = pick_moduli(&preset.moduli_bits, two_n)?;
        // The crate needs t < q_i for every i: take the largest suitable prime below all of them.
        let below = moduli.iter().copied().min().unwrap_or(0).min(1u64 << preset.t_bits);
        let t = generate_prime(preset.t_bits as usize, two_n, below)
            .ok_or_else(|| Error::Config(format!("no {}-bit prime ≡ 1 mod {two_n} below the moduli", preset.t_bits)))?;
        let par = bfv_parameters(preset.degree, &moduli, t)?;
        let ntt_t = NttOperator::new(&Modulus::new(t)?, preset.degree)
            .ok_or_else(|| Error::Config("plaintext modulus does not support SIMD".into()))?;
        Ok(HeContext { preset: preset.clone(), par, field: Field::new(t)?, slot_map: batch_slot_map(preset.degree), ntt_t: Some(ntt_t), returns: privacy::ReturnBudget::default(), narrow: None })
    }

    /// A coefficient-encoding context with t = 2^`preset.t_bits` (the shares' ring Z_2^ℓ): a
    /// plaintext is a polynomial of Z_t[X]/(X^N+1), ct×pt is a negacyclic product, and
    /// [`HeContext::field`] is Z_2^ℓ (addition and multiplication only).
    pub fn coefficient(preset: &HePreset) -> Result<HeContext> {
        preset.check_security()?;
        let moduli = pick_moduli(&preset.moduli_bits, 2 * preset.degree as u64)?;
        let t = 1u64 << preset.t_bits;
        if moduli.iter().any(|&q| q <= t) {
            return Err(Error::Config(format!("preset {}: every ciphertext modulus must exceed t = 2^{}", preset.name, preset.t_bits)));
        }
        let par = bfv_parameters(preset.degree, &moduli, t)?;
        let last = *par.context_at_level(par.max_level())?.moduli().first().ok_or_else(|| Error::Config("no ciphertext modulus".into()))?;
        let narrow = narrow::NarrowModulus::new(last, preset.t_bits, preset.degree)?;
        Ok(HeContext {
            preset: preset.clone(),
            par,
            field: Field::new(t)?,
            slot_map: Vec::new(),
            ntt_t: None,
            returns: privacy::ReturnBudget::default(),
            narrow: Some(narrow),
        })
    }

    /// The narrow modulus results of a coefficient context are sent at.
    pub fn narrow(&self) -> Result<&narrow::NarrowModulus> {
        self.narrow.as_ref().ok_or_else(|| Error::He("compact results need a coefficient-encoding context".into()))
    }

    /// Whether plaintexts are coefficient vectors (t = 2^ℓ) rather than SIMD slots.
    pub fn is_coefficient(&self) -> bool {
        self.ntt_t.is_none()
    }

    /// The crate encoding of this context's plaintexts at `level`.
    fn encoding_at(&self, level: usize) -> Encoding {
        if self.is_coefficient() {
            Encoding::poly_at_level(level)
        } else {
            Encoding::simd_at_level(level)
        }
    }
    pub fn preset(&self) -> &HePreset {
        &self.preset
    }
    /// The per-key count of circuit-private returns (one context serves one client key).
    pub fn returns(&self) -> &privacy::ReturnBudget {
        &self.returns
    }
    pub fn params(&self) -> &Arc<BfvParameters> {
        &self.par
    }
    /// The plaintext field Z_t in which shares entering/leaving HE live.
    pub fn field(&self) -> Field {
        self.field
    }
    pub fn t(&self) -> u64 {
        self.par.plaintext()
    }
    pub fn degree(&self) -> usize {
        self.par.degree()
    }
    /// SIMD slots per ciphertext (= N, as two rows of N/2).
    pub fn slots(&self) -> usize {
        self.par.degree()
    }
    pub fn max_level(&self) -> usize {
        self.par.max_level()
    }
    /// log2 of the ciphertext modulus at `level`.
    pub fn log_q_at(&self, level: usize) -> f64 {
        self.par.moduli()[..self.par.moduli().len() - level].iter().map(|&q| (q as f64).log2()).sum()
    }
    pub fn largest_modulus(&self) -> u64 {
        self.par.moduli().iter().copied().max().unwrap_or(0)
    }
    /// Bound on the fresh encryption error (centred binomial, variance σ² = 10 ⇒ |e| ≤ 20) plus
    /// one unit of encoding rounding.
    pub fn fresh_noise(&self) -> f64 {
        21.0
    }

    /// SIMD plaintext polynomial of `slots` (values mod t, zero-padded) with *centred*
    /// coefficients in (−t/2, t/2], in NTT form at `level`, ready for `dot_product`.
    pub fn simd_poly(&self, slots: &[u64], level: usize) -> Result<Poly> {
        let mut coeffs = self.slots_to_coeffs(slots)?;
        let t = self.t();
        let centred: Vec<i64> =
            coeffs.iter_mut().map(|c| if *c > t / 2 { *c as i64 - t as i64 } else { *c as i64 }).collect();
        let ctx = self.par.context_at_level(level)?;
        let mut p = Poly::try_convert_from(&centred[..], ctx, true, Representation::PowerBasis)?;
        p.change_representation(Representation::Ntt);
        Ok(p)
    }

    /// Inverse SIMD map: coefficients in [0, t) of the plaintext polynomial holding `slots`.
    fn slots_to_coeffs(&self, slots: &[u64]) -> Result<Vec<u64>> {
        let n = self.degree();
        if slots.len() > n {
            return Err(Error::He(format!("{} values do not fit {} slots", slots.len(), n)));
        }
        let ntt_t = self.ntt_t.as_ref().ok_or_else(|| Error::He("SIMD encoding in a coefficient context".into()))?;
        let t = self.t();
        let mut v = vec![0u64; n];
        for (i, &x) in slots.iter().enumerate() {
            v[self.slot_map[i]] = x % t;
        }
        ntt_t.backward(&mut v);
        Ok(v)
    }

    /// A crate plaintext (values mod t; slots, or coefficients in a coefficient context) at
    /// `level`, for additions to ciphertexts.
    pub fn plaintext(&self, slots: &[u64], level: usize) -> Result<Plaintext> {
        Ok(Plaintext::try_encode(slots, self.encoding_at(level), &self.par)?)
    }

    /// The zero plaintext at `level`.
    pub fn zero_plaintext(&self, level: usize) -> Result<Plaintext> {
        Ok(Plaintext::zero(self.encoding_at(level), &self.par)?)
    }

    /// Decrypt a ciphertext and decode its N slots (coefficients in a coefficient context),
    /// values in [0, t).
    pub fn decrypt(&self, sk: &SecretKey, ct: &Ciphertext) -> Result<Vec<u64>> {
        let level = self.par.level_of_context(ct[0].ctx())?;
        let pt = sk.try_decrypt(ct)?;
        Ok(Vec::<u64>::try_decode(&pt, self.encoding_at(level))?)
    }
}

/// Distinct primes ≡ 1 mod `two_n`, the largest below 2^bits for each size.
fn pick_moduli(sizes: &[usize], two_n: u64) -> Result<Vec<u64>> {
    let mut out: Vec<u64> = Vec::with_capacity(sizes.len());
    for &bits in sizes {
        let mut upper = 1u64 << bits;
        loop {
            let p = generate_prime(bits, two_n, upper)
                .ok_or_else(|| Error::Config(format!("ran out of {bits}-bit NTT primes")))?;
            if !out.contains(&p) {
                out.push(p);
                break;
            }
            upper = p;
        }
    }
    Ok(out)
}

/// The batch-encoder slot order: slot i of row 0 (row 1) sits at the bit-reversed index of
/// (3^i mod 2N − 1)/2 (resp. of (2N − 3^i mod 2N − 1)/2), so that the Galois element 3 acts
/// as a cyclic shift of each row by one slot.
fn batch_slot_map(n: usize) -> Vec<usize> {
    let row = n / 2;
    let m = 2 * n;
    let log_n = n.trailing_zeros();
    let bitrev = |x: usize| x.reverse_bits() >> (usize::BITS - log_n);
    let mut map = vec![0usize; n];
    let mut power = 1usize;
    for i in 0..row {
        map[i] = bitrev((power - 1) / 2);
        map[row + i] = bitrev((m - power - 1) / 2);
        power = (power * 3) % m;
    }
    map
}

/// The client's key material. The secret key never leaves the client.
pub struct ClientKeys {
    pub sk: SecretKey,
    pub pk: PublicKey,
    /// Galois keys, built only when some plan needs column rotations.
    pub ek: Option<EvaluationKey>,
    /// The secret key as an NTT polynomial at the top level (for seeded uploads).
    s_top: Poly,
    /// The secret key as an NTT polynomial at the narrow modulus, for compact results
    /// (coefficient contexts only).
    s_narrow: Option<Poly>,
}

impl ClientKeys {
    /// Decryption of a compact result ([`wire::CompactCt`], at the narrow modulus q' of
    /// [`narrow`]) at its c0 positions only: m = ⌊t·[c0 + c1·s]_{q'} / q'⌉ mod t, the BFV
    /// decryption at one modulus, without building or transforming the (mostly zero) c0.
    pub fn decrypt_compact(&self, ctx: &HeContext, ct: &wire::CompactCt, positions: &[usize]) -> Result<Vec<u64>> {
        let s = self.s_narrow.as_ref().ok_or_else(|| Error::He("compact results need a coefficient-encoding context".into()))?;
        if ct.c1.ctx() != s.ctx() || ct.c0.len() != positions.len() {
            return Err(Error::He("compact result not at the narrow modulus or of the wrong length".into()));
        }
        let mut c1s = &ct.c1 * s;
        c1s.change_representation(Representation::PowerBasis);
        let q = ctx.narrow()?.q();
        let modulus = Modulus::new(q)?;
        let t = ctx.t() as u128;
        let row = c1s.coefficients();
        positions
            .iter()
            .zip(&ct.c0)
            .map(|(&p, &c0)| {
                let c1s_p = *row.get((0, p)).ok_or_else(|| Error::He(format!("coefficient {p} outside the ring degree")))?;
                let x = modulus.add(c0, c1s_p) as u128;
                Ok(((t * x + (q as u128) / 2) / q as u128 % t) as u64)
            })
            .collect()
    }
}

/// What the server holds: the client's public key (also in the form the circuit-private
/// return uses) and (optionally) its Galois keys.
pub struct ServerKeys {
    pub pk: PublicKey,
    pub ret: privacy::ReturnKey,
    pub ek: Option<EvaluationKey>,
    /// Keys for packing result ciphertexts (coefficient contexts only, [`galois`]).
    pub packing: Option<galois::PackingKeys>,
}

impl ClientKeys {
    /// Fresh keys; `rotations` lists the column-rotation amounts (in slots, 1..N/2) the
    /// server will need (empty: no Galois keys).
    pub fn generate<R: RngCore + CryptoRng>(ctx: &HeContext, rotations: &[usize], rng: &mut R) -> Result<ClientKeys> {
        let sk = SecretKey::random(ctx.params(), rng);
        let pk = PublicKey::new(&sk, rng);
        let ek = if rotations.is_empty() {
            None
        } else {
            let mut b = fhe::bfv::EvaluationKeyBuilder::new(&sk)?;
            for &r in rotations {
                b.enable_column_rotation(r)?;
            }
            Some(b.build(rng)?)
        };
        let coeffs = fhe::proto::bfv::SecretKey::from(&sk).coeffs;
        let s_at = |level: usize| -> Result<Poly> {
            let mut s = Poly::try_convert_from(&coeffs[..], ctx.params().context_at_level(level)?, false, Representation::PowerBasis)?;
            s.change_representation(Representation::Ntt);
            Ok(s)
        };
        let s_top = s_at(0)?;
        let s_narrow = match &ctx.narrow {
            Some(nm) => {
                let mut s = Poly::try_convert_from(&coeffs[..], nm.context(), false, Representation::PowerBasis)?;
                s.change_representation(Representation::Ntt);
                Some(s)
            }
            None => None,
        };
        Ok(ClientKeys { sk, pk, ek, s_top, s_narrow })
    }

    /// Secret-key encryption of `slots` at the top level, returned in seeded form: the
    /// server regenerates c1 from the 32-byte seed, so an upload costs half a ciphertext.
    pub fn encrypt_seeded<R: RngCore + CryptoRng>(&self, ctx: &HeContext, slots: &[u64], rng: &mut R) -> Result<wire::SeededCt> {
        let pt = ctx.plaintext(slots, 0)?;
        let ct: Ciphertext = self.sk.try_encrypt(&pt, rng)?;
        // Re-express (c0, c1) with c1 drawn from a seed we know: c0' = c0 + (c1 − a)·s keeps
        // c0' + a·s = c0 + c1·s, hence the same message and noise.
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let a = Poly::random_from_seed(ctx.params().context_at_level(0)?, Representation::Ntt, seed);
        let mut diff = ct[1].clone();
        diff -= &a;
        diff *= &self.s_top;
        let mut c0 = ct[0].clone();
        c0 += &diff;
        Ok(wire::SeededCt { seed, c0 })
    }
}

const PHASE_SETUP: &str = "he-setup";

/// Client side of the key setup: sends the public key, when `rotations` is non-empty the
/// Galois keys, and for a coefficient context the packing keys of [`galois`]. All bytes are
/// setup traffic (phase `he-setup`).
pub fn client_setup<R: RngCore + CryptoRng>(
    ch: &mut dyn Channel,
    ctx: &HeContext,
    rotations: &[usize],
    rng: &mut R,
) -> Result<ClientKeys> {
    ch.set_phase(PHASE_SETUP);
    let keys = ClientKeys::generate(ctx, rotations, rng)?;
    ch.send_frame(&keys.pk.to_bytes())?;
    if let Some(ek) = &keys.ek {
        ch.send_frame(&ek.to_bytes())?;
    }
    if ctx.is_coefficient() {
        ch.send_frame(&galois::generate_keys(ctx, &keys.sk, rng)?)?;
    }
    ch.flush()?;
    Ok(keys)
}

/// Server side of the key setup. The expected frame sizes are learnt from throw-away keys of
/// the same shape, so a frame of any other size is rejected before it is parsed; parsing is
/// additionally guarded against panics inside the crate.
pub fn server_setup(ch: &mut dyn Channel, ctx: &HeContext, rotations: &[usize]) -> Result<ServerKeys> {
    ch.set_phase(PHASE_SETUP);
    let mut rng = rand::rng();
    let probe = ClientKeys::generate(ctx, rotations, &mut rng)?;
    let pk_len = probe.pk.to_bytes().len();
    let pk = decode_public_key(ctx, &ch.recv_frame_limited(pk_len)?, pk_len)?;
    let ek = match &probe.ek {
        None => None,
        Some(probe_ek) => {
            let ek_len = probe_ek.to_bytes().len();
            Some(decode_galois_keys(ctx, &ch.recv_frame_limited(ek_len)?, ek_len, rotations)?)
        }
    };
    let packing = if ctx.is_coefficient() {
        let len = galois::keys_len(ctx)?;
        Some(galois::PackingKeys::decode(ctx, &ch.recv_frame_limited(len)?)?)
    } else {
        None
    };
    let ret = privacy::ReturnKey::new(ctx, &pk)?;
    Ok(ServerKeys { pk, ret, ek, packing })
}

/// Parse the client's public key (peer bytes), which must be exactly `expected_len` long.
pub fn decode_public_key(ctx: &HeContext, bytes: &[u8], expected_len: usize) -> Result<PublicKey> {
    expect_len("public key", bytes.len(), expected_len)?;
    guarded("public key", || PublicKey::from_bytes(bytes, ctx.params()).map_err(Error::from))
}

/// Parse the client's Galois keys (peer bytes) and check they cover every needed rotation.
pub fn decode_galois_keys(ctx: &HeContext, bytes: &[u8], expected_len: usize, rotations: &[usize]) -> Result<EvaluationKey> {
    expect_len("Galois keys", bytes.len(), expected_len)?;
    let ek = guarded("Galois keys", || EvaluationKey::from_bytes(bytes, ctx.params()).map_err(Error::from))?;
    if let Some(r) = rotations.iter().find(|&&r| !ek.supports_column_rotation_by(r)) {
        return Err(Error::protocol(PHASE_SETUP, format!("Galois keys lack rotation by {r}")));
    }
    Ok(ek)
}

fn expect_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::protocol(PHASE_SETUP, format!("{what}: {got} bytes, expected {want}")));
    }
    Ok(())
}

/// Run a crate parser on peer bytes, turning an internal panic into a protocol error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::protocol(PHASE_SETUP, format!("{what}: {e}"))),
        Err(_) => Err(Error::protocol(PHASE_SETUP, format!("{what}: malformed encoding"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_preset_is_128_bit_secure() {
        for p in [HePreset::linear(), HePreset::small_test(), HePreset::simd(8192, 60), HePreset::simd(16384, 60)] {
            p.check_security().unwrap();
        }
        let weak = HePreset { name: "weak".into(), degree: 4096, moduli_bits: vec![55, 55], t_bits: 20 };
        assert!(weak.check_security().is_err());
        let weak = HePreset { name: "weak".into(), degree: 8192, moduli_bits: vec![60, 60, 60, 40], t_bits: 54 };
        assert!(weak.check_security().is_err());
        assert_eq!(HePreset::linear().moduli_bits, vec![55, 55, 54, 54]);
        assert_eq!(HePreset::simd(8192, 60).moduli_bits, vec![62, 62, 62]);
        for p in [HePreset::linear(), HePreset::simd(8192, 60)] {
            let ctx = HeContext::new(&p).unwrap();
            assert_eq!(64 - ctx.t().leading_zeros(), p.t_bits);
            assert!(ctx.params().moduli().iter().all(|&q| q > ctx.t()));
            assert!(ctx.log_q_at(0) <= 218.0);
        }
    }

    /// The one-modulus decryption of compact results (switched to the narrow modulus) agrees
    /// with the crate's full decryption of the returned ciphertext at every position, for
    /// t = 2^40, values at 0 and t−1, and the largest flooding a single-modulus return allows.
    #[test]
    fn compact_decryption_matches_the_crate_decryption() {
        let ctx = HeContext::coefficient(&HePreset::coefficient(40)).unwrap();
        let f = ctx.field();
        let mut rng = rand::rng();
        let keys = ClientKeys::generate(&ctx, &[], &mut rng).unwrap();
        let key = privacy::ReturnKey::new(&ctx, &keys.pk).unwrap();
        let positions: Vec<usize> = (0..ctx.degree()).collect();
        let widest = (1..200).map(|b| (b as f64).exp2()).take_while(|&v| privacy::return_level(&ctx, 0, v).ok() == Some(ctx.max_level())).last().unwrap();
        assert!(privacy::flood_bits(&ctx, widest) >= 137, "every coefficient plan floods at most 2^137");
        for v in [ctx.fresh_noise(), widest] {
            let mut x: Vec<u64> = (0..ctx.degree()).map(|_| f.random(&mut rng)).collect();
            x[0] = 0;
            x[1] = ctx.t() - 1;
            let ct: Ciphertext = keys.sk.try_encrypt(&ctx.plaintext(&x, 0).unwrap(), &mut rng).unwrap();
            let (parts, share) = privacy::private_return_parts(&ctx, &key, ct, v, &mut rng).unwrap();
            let bytes = wire::encode_compact(&ctx, &wire::compact_result(&ctx, &parts, &positions).unwrap()).unwrap();
            assert_eq!(bytes.len(), wire::compact_len(&ctx, positions.len()).unwrap());
            let received = wire::decode_compact_parts(&ctx, positions.len(), &bytes).unwrap();
            let mine = keys.decrypt_compact(&ctx, &received, &positions).unwrap();
            let mut ntt = parts.to_vec();
            ntt.iter_mut().for_each(|p| p.change_representation(Representation::Ntt));
            let full = ctx.decrypt(&keys.sk, &Ciphertext::new(ntt, ctx.params()).unwrap()).unwrap();
            assert_eq!(mine, full);
            assert_eq!(f.reconstruct(&mine, &share), x);
            // The wrong number of positions is refused.
            assert!(keys.decrypt_compact(&ctx, &received, &positions[1..]).is_err());
        }
        // 53 bits per coefficient instead of the return modulus's 62.
        assert_eq!(wire::compact_len(&ctx, 1024).unwrap(), (8192 + 1024) * 53 / 8);
    }

    #[test]
    fn centred_simd_poly_matches_crate_encoding() {
        let ctx = HeContext::new(&HePreset::small_test()).unwrap();
        let f = ctx.field();
        let mut rng = rand::rng();
        let vals: Vec<u64> = (0..ctx.slots()).map(|_| f.random(&mut rng)).collect();
        let mine = ctx.simd_poly(&vals, 0).unwrap();
        let pt = ctx.plaintext(&vals, 0).unwrap();
        let crate_poly = Poly::try_convert_from(&pt, ctx.params().context_at_level(0).unwrap(), false, None).unwrap();
        let mut m = mine.clone();
        m.change_representation(Representation::PowerBasis);
        let q0 = ctx.params().moduli()[0];
        let t = ctx.t();
        for (a, b) in m.coefficients().row(0).iter().zip(crate_poly.coefficients().row(0).iter()) {
            let centred = if *a > q0 / 2 { (*a as i128 - q0 as i128).rem_euclid(t as i128) as u64 } else { a % t };
            assert_eq!(centred, *b);
        }
    }
}
