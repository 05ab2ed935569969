//! The server's encoded weight plaintexts, kept across the inferences of a server process.
//!
//! Encoding a weight matrix for an HE linear layer (SIMD layout, inverse NTT mod t, forward
//! NTT over every ciphertext modulus) costs about as much as the layer itself when the input
//! is short: for a 12-token sentence through MiniLM it is a third of the online time. The
//! encoding depends only on the weights and the public layout (which follows from the padded
//! length), so a server that answers many requests encodes each (matrix, layout) once.
//!
//! The cache holds at most `budget` bytes of polynomials. A layout that does not fit evicts the
//! least recently used entries, but never one the current inference has already used (the
//! caller passes the cache's clock at the start of its inference): an inference reads its
//! layers in a fixed order, so plain LRU under a budget smaller than one inference's weights
//! would evict every entry just before its next use and never hit. So a client that sends its
//! sentences grouped by padded length gets every group cached after its first sentence, up
//! to the budget, and a budget that holds part of the weights serves that part on every
//! inference; what does not fit is encoded per call as before. It only changes the server's local work: messages, bytes and results are the same
//! with and without it. An entry is keyed by the weight matrix's address and the layout, and is
//! used only after its field weights compare equal to the caller's, so a reused address can
//! never serve another matrix's plaintexts.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::he::HeContext;
use crate::model::QLinear;
use crate::proto::linear::coeff::{CoeffPlan, EncodedCoeff};
use crate::proto::linear::{EncodedLinear, LinearPlan, LinearShape, DEFAULT_WEIGHT_CACHE_BYTES};

type Key = (usize, LinearShape, String);

/// Encoded weights shared by the sessions of one server.
pub struct WeightCache {
    budget: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    used: usize,
    /// Logical clock for least-recently-used eviction.
    clock: u64,
    map: HashMap<Key, Entry>,
}

/// One encoded layout: an `EncodedLinear` (field backend) or an `EncodedCoeff`.
struct Entry {
    enc: Arc<dyn Any + Send + Sync>,
    bytes: usize,
    last_use: u64,
}

impl Entries {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
    /// Drop least recently used entries, among those last used before clock `since`, until
    /// `need` more bytes fit in `budget` (or no such entry is left).
    fn evict_for(&mut self, need: usize, budget: usize, since: u64) {
        while self.used + need > budget {
            let oldest = self.map.iter().filter(|(_, e)| e.last_use < since).min_by_key(|(_, e)| e.last_use).map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { return };
            if let Some(e) = self.map.remove(&oldest) {
                self.used = self.used.saturating_sub(e.bytes);
            }
        }
    }
}

/// The weights of `w` as the linear protocol takes them, after a shape check.
fn weights_of(w: &QLinear, d_in: usize, d_out: usize) -> Result<(&[i64], &[i64])> {
    if w.w.dim() != (d_in, d_out) || w.b.len() != d_out {
        return Err(Error::Shape { tensor: "linear weight".into(), expected: vec![d_in, d_out], got: w.w.shape().to_vec() });
    }
    let ws = w.w.as_slice().ok_or_else(|| Error::Model("weights not in standard layout".into()))?;
    let bs = w.b.as_slice().ok_or_else(|| Error::Model("bias not contiguous".into()))?;
    Ok((ws, bs))
}

impl WeightCache {
    /// A cache holding at most `budget` bytes of encoded polynomials (0: encode every call).
    pub fn new(budget: usize) -> WeightCache {
        WeightCache { budget, inner: Mutex::new(Entries::default()) }
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Whether `plan`'s encoded weights would still fit.
    pub fn has_room_for(&self, ctx: &HeContext, plan: &LinearPlan) -> bool {
        self.used() + plan.weight_bytes(ctx) <= self.budget
    }

    /// The clock now: pass it as `since` to every lookup of one inference, so that the
    /// inference never evicts what it has already used.
    pub fn clock(&self) -> u64 {
        self.lock().map(|e| e.clock + 1).unwrap_or(u64::MAX)
    }

    /// Bytes of polynomials held.
    pub fn used(&self) -> usize {
        self.lock().map(|e| e.used).unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Entries>> {
        self.inner.lock().map_err(|_| Error::Config("weight cache poisoned by an earlier failure".into()))
    }

    /// The encoded weights of `w` for `plan`: from the cache, or encoded now and kept (evicting
    /// the least recently used entries not used since clock `since` when they would not fit,
    /// unless they exceed the budget).
    pub fn encoded(&self, ctx: &HeContext, plan: &LinearPlan, w: &QLinear, since: u64) -> Result<Arc<EncodedLinear>> {
        let LinearShape { d_in, d_out, .. } = plan.shape;
        let (ws, bs) = weights_of(w, d_in, d_out)?;
        let key: Key = (std::ptr::from_ref(w) as usize, plan.shape, plan.describe());
        self.get_or_encode(
            key,
            plan.weight_bytes(ctx),
            since,
            |e: &EncodedLinear| e.same_weights(ctx, ws, bs),
            |limit| EncodedLinear::with_cache_limit(ctx, plan.clone(), ws, Some(bs), limit),
            |e| e.is_cached().then(|| e.cached_bytes(ctx)),
            DEFAULT_WEIGHT_CACHE_BYTES,
        )
    }

    /// The coefficient-packing weight polynomials of `w` for `plan` (same policy as [`WeightCache::encoded`]).
    pub fn encoded_coeff(&self, ctx: &HeContext, plan: &CoeffPlan, w: &QLinear, since: u64) -> Result<Arc<EncodedCoeff>> {
        let LinearShape { d_in, d_out, .. } = plan.shape;
        let (ws, bs) = weights_of(w, d_in, d_out)?;
        let key: Key = (std::ptr::from_ref(w) as usize, plan.shape, plan.describe());
        self.get_or_encode(
            key,
            plan.weight_bytes(ctx),
            since,
            |e: &EncodedCoeff| e.plan == *plan && e.same_weights(ctx, ws, bs),
            |limit| EncodedCoeff::new(ctx, plan.clone(), ws, Some(bs), limit),
            |e| e.is_cached().then(|| e.cached_bytes(ctx)),
            0,
        )
    }

    /// The cache policy shared by both encodings: a hit is used only after `same` confirms
    /// the weights; otherwise `make(limit)` encodes (pre-encoding up to `limit` bytes, at
    /// least `uncached_limit`) and the result is kept when `cached` reports its bytes and they
    /// fit. The coefficient encoding passes 0: encoded per call it makes each polynomial once
    /// anyway, so pre-encoding outside the cache would only raise peak memory.
    fn get_or_encode<T: Any + Send + Sync>(
        &self,
        key: Key,
        need: usize,
        since: u64,
        same: impl Fn(&T) -> bool,
        make: impl FnOnce(usize) -> Result<T>,
        cached: impl Fn(&T) -> Option<usize>,
        uncached_limit: usize,
    ) -> Result<Arc<T>> {
        {
            let mut e = self.lock()?;
            let now = e.tick();
            if let Some(hit) = e.map.get_mut(&key) {
                if let Ok(enc) = Arc::clone(&hit.enc).downcast::<T>() {
                    if same(&enc) {
                        hit.last_use = now;
                        return Ok(enc);
                    }
                }
            }
            if need <= self.budget {
                e.evict_for(need, self.budget, since);
            }
        }
        // Without room, encode as an uncached layer would.
        let room = self.budget.saturating_sub(self.used());
        let enc = Arc::new(make(room.max(uncached_limit))?);
        if let Some(bytes) = cached(&enc).filter(|&b| b <= room) {
            let mut e = self.lock()?;
            if let Some(old) = e.map.remove(&key) {
                e.used = e.used.saturating_sub(old.bytes);
            }
            if e.used + bytes <= self.budget {
                let last_use = e.tick();
                e.used += bytes;
                let stored: Arc<dyn Any + Send + Sync> = Arc::clone(&enc) as Arc<dyn Any + Send + Sync>;
                e.map.insert(key, Entry { enc: stored, bytes, last_use });
            }
        }
        Ok(enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::HePreset;
    use crate::proto::linear::{encoded_poly_bytes, Packing};
    use ndarray::{Array1, Array2};

    /// `since` for lookups outside any inference: every entry may be evicted (plain LRU).
    const LRU: u64 = u64::MAX;

    /// The HE context and the plan of an 8 × 8 layer over 4 rows, shared by the tests.
    fn small_layer() -> (HeContext, LinearPlan) {
        let ctx = HeContext::new(&HePreset::linear()).unwrap();
        let plan = LinearPlan::new(&ctx, LinearShape { n: 4, d_in: 8, d_out: 8 }, Packing::Bsgs).unwrap();
        (ctx, plan)
    }

    fn qlinear(d_in: usize, d_out: usize, seed: i64) -> QLinear {
        QLinear::from_quantized(
            Array2::from_shape_fn((d_in, d_out), |(i, j)| (i as i64 * 7 + j as i64 * 3 + seed) % 50 - 25),
            Array1::from_shape_fn(d_out, |j| j as i64 - 4 + seed),
        )
    }

    #[test]
    fn keeps_what_fits_and_never_serves_other_weights() {
        let (ctx, plan) = small_layer();
        let poly = encoded_poly_bytes(&ctx);
        let w = qlinear(8, 8, 1);
        let cache = WeightCache::new(64 * poly);
        let a = cache.encoded(&ctx, &plan, &w, LRU).unwrap();
        assert!(a.is_cached());
        assert!(cache.used() > 0 && cache.used() <= cache.budget());
        let b = cache.encoded(&ctx, &plan, &w, LRU).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second call must reuse the entry");

        // Same address, changed weights: a fresh encoding, never the stale entry.
        let mut w = w;
        w.w[(0, 0)] += 1;
        let c = cache.encoded(&ctx, &plan, &w, LRU).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(c.same_weights(&ctx, w.w.as_slice().unwrap(), w.b.as_slice().unwrap()));
        assert!(!a.same_weights(&ctx, w.w.as_slice().unwrap(), w.b.as_slice().unwrap()));

        // A zero budget keeps nothing.
        let none = WeightCache::new(0);
        let d = none.encoded(&ctx, &plan, &w, LRU).unwrap();
        assert!(!none.has_room_for(&ctx, &plan));
        assert_eq!(none.used(), 0);
        assert!(!Arc::ptr_eq(&d, &none.encoded(&ctx, &plan, &w, LRU).unwrap()));
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used() {
        let (ctx, plan) = small_layer();
        let one = plan.weight_bytes(&ctx);
        let cache = WeightCache::new(2 * one);
        let (w1, w2, w3) = (qlinear(8, 8, 1), qlinear(8, 8, 2), qlinear(8, 8, 3));
        let a1 = cache.encoded(&ctx, &plan, &w1, LRU).unwrap();
        let a2 = cache.encoded(&ctx, &plan, &w2, LRU).unwrap();
        // Touch w1 so that w2 is the least recently used when w3 needs room.
        assert!(Arc::ptr_eq(&a1, &cache.encoded(&ctx, &plan, &w1, LRU).unwrap()));
        let a3 = cache.encoded(&ctx, &plan, &w3, LRU).unwrap();
        assert_eq!(cache.used(), 2 * one);
        assert!(Arc::ptr_eq(&a1, &cache.encoded(&ctx, &plan, &w1, LRU).unwrap()));
        assert!(Arc::ptr_eq(&a3, &cache.encoded(&ctx, &plan, &w3, LRU).unwrap()));
        assert!(!Arc::ptr_eq(&a2, &cache.encoded(&ctx, &plan, &w2, LRU).unwrap()), "w2 was evicted");
        // A layout larger than the whole budget is encoded but never evicts anything.
        let small = WeightCache::new(one - 1);
        small.encoded(&ctx, &plan, &w1, LRU).unwrap();
        assert_eq!(small.used(), 0);
    }

    #[test]
    fn a_budget_below_one_inference_keeps_serving_its_first_layers() {
        let (ctx, plan) = small_layer();
        let one = plan.weight_bytes(&ctx);
        let cache = WeightCache::new(2 * one);
        let ws = [qlinear(8, 8, 1), qlinear(8, 8, 2), qlinear(8, 8, 3)];
        // Three layers read in order by every inference, room for two: plain LRU would evict
        // each entry just before its next use; an inference never evicts what it has used.
        let mut first = Vec::new();
        for round in 0..3 {
            let since = cache.clock();
            let encs: Vec<_> = ws.iter().map(|w| cache.encoded(&ctx, &plan, w, since).unwrap()).collect();
            assert_eq!(cache.used(), 2 * one);
            if round == 0 {
                first = encs;
            } else {
                assert!(Arc::ptr_eq(&first[0], &encs[0]) && Arc::ptr_eq(&first[1], &encs[1]), "round {round}: the first two layers are hits");
                assert!(!Arc::ptr_eq(&first[2], &encs[2]), "the third layer is encoded per call");
            }
        }
        // An inference over other weights (another padded length) replaces the older entries.
        let (w4, w5) = (qlinear(8, 8, 4), qlinear(8, 8, 5));
        let since = cache.clock();
        let a4 = cache.encoded(&ctx, &plan, &w4, since).unwrap();
        let a5 = cache.encoded(&ctx, &plan, &w5, since).unwrap();
        let since = cache.clock();
        assert!(Arc::ptr_eq(&a4, &cache.encoded(&ctx, &plan, &w4, since).unwrap()));
        assert!(Arc::ptr_eq(&a5, &cache.encoded(&ctx, &plan, &w5, since).unwrap()));
        assert_eq!(cache.used(), 2 * one);
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let (ctx, plan) = small_layer();
        let cache = WeightCache::new(1 << 30);
        assert!(matches!(cache.encoded(&ctx, &plan, &qlinear(8, 6, 0), LRU), Err(Error::Shape { .. })));
    }
}
