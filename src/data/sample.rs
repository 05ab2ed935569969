//! `eval --limit N`: a seeded sample of a split, stratified by origin (UCI part or file) and
//! label, so a small evaluation sees every source and both labels in their proportions instead
//! of the first N sentences (which in UCI's order are all from the first file).
//!
//! Allocation: each stratum (origin, label) gets `N × size / total` sentences, rounded down,
//! and the sentences left over go to the largest remainders (ties: stratum order). Within a
//! stratum the sentences are a seeded shuffle (ChaCha8), so the same seed gives the same sample.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::load::{Dataset, Example, Split};

/// The seed `eval` uses unless `--seed` says otherwise.
pub const DEFAULT_SEED: u64 = 21;

/// How many sentences one stratum had and how many were drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stratum {
    pub origin: String,
    pub label: u8,
    pub available: usize,
    pub drawn: usize,
}

/// The sample's definition, written into the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleInfo {
    pub method: &'static str,
    pub seed: u64,
    pub strata: Vec<Stratum>,
}

/// At most `limit` sentences of `split`, stratified by origin and label, in index order. With no
/// limit, or one at least the split's size, the whole split (and no sample description).
pub fn stratified_sample(ds: &Dataset, split: Split, limit: Option<usize>, seed: u64) -> (Vec<(usize, &Example)>, Option<SampleInfo>) {
    let all = ds.select(split, None);
    let Some(limit) = limit.filter(|&l| l < all.len()) else { return (all, None) };
    // Strata in first-seen order.
    let mut strata: Vec<((String, u8), Vec<usize>)> = Vec::new();
    for (pos, (index, ex)) in all.iter().enumerate() {
        let key = (ds.origin_of(*index).to_string(), ex.label);
        match strata.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(pos),
            None => strata.push((key, vec![pos])),
        }
    }
    let quotas = allocate(&strata.iter().map(|(_, m)| m.len()).collect::<Vec<_>>(), limit);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(limit);
    let mut info = Vec::with_capacity(strata.len());
    for (((origin, label), mut members), quota) in strata.into_iter().zip(quotas) {
        members.shuffle(&mut rng);
        chosen.extend_from_slice(&members[..quota]);
        info.push(Stratum { origin, label, available: members.len(), drawn: quota });
    }
    chosen.sort_unstable();
    let rows = chosen.into_iter().map(|pos| all[pos]).collect();
    (rows, Some(SampleInfo { method: "stratified by origin and label, seeded shuffle within each stratum", seed, strata: info }))
}

/// Largest-remainder allocation of `n` over strata of the given sizes (each quota ≤ its size).
fn allocate(sizes: &[usize], n: usize) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    if total == 0 {
        return vec![0; sizes.len()];
    }
    let n = n.min(total);
    let mut quotas: Vec<usize> = sizes.iter().map(|&s| s * n / total).collect();
    let mut by_remainder: Vec<usize> = (0..sizes.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(sizes[i] * n % total));
    let mut left = n - quotas.iter().sum::<usize>();
    for i in by_remainder.into_iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if quotas[i] < sizes[i] {
            quotas[i] += 1;
            left -= 1;
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_sources() -> Dataset {
        // 3 origins × 40 sentences, labels alternating in pairs.
        let examples = (0..120).map(|i| Example { text: format!("s{i}"), label: ((i / 2) % 2) as u8 }).collect();
        Dataset { name: "uci".into(), examples, parts: vec![("amazon".into(), 40), ("imdb".into(), 40), ("yelp".into(), 40)] }
    }

    #[test]
    fn sample_covers_every_origin_and_label_in_proportion() {
        let ds = three_sources();
        let (rows, info) = stratified_sample(&ds, Split::Test, Some(12), 7);
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|(i, _)| i % 2 == 1), "only the test split");
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "index order, no repeats");
        let info = info.unwrap();
        assert_eq!(info.strata.len(), 6);
        assert!(info.strata.iter().all(|s| s.drawn == 2 && s.available == 10), "{info:?}");
        for origin in ["amazon", "imdb", "yelp"] {
            assert_eq!(rows.iter().filter(|(i, _)| ds.origin_of(*i) == origin).count(), 4);
        }
    }

    #[test]
    fn same_seed_same_sample_other_seed_other_sample() {
        let ds = three_sources();
        let idx = |seed| stratified_sample(&ds, Split::Test, Some(12), seed).0.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        assert_eq!(idx(1), idx(1));
        assert_ne!(idx(1), idx(2));
    }

    #[test]
    fn no_limit_or_a_large_one_takes_the_whole_split() {
        let ds = three_sources();
        let (rows, info) = stratified_sample(&ds, Split::Test, Some(1000), 1);
        assert_eq!((rows.len(), info), (60, None));
        assert_eq!(stratified_sample(&ds, Split::Test, None, 1).0.len(), 60);
    }

    #[test]
    fn allocation_is_exact_and_bounded() {
        assert_eq!(allocate(&[10, 10, 10], 4), vec![2, 1, 1]);
        assert_eq!(allocate(&[1, 99], 10), vec![0, 10]);
        assert_eq!(allocate(&[3, 0, 2], 5), vec![3, 0, 2]);
        assert_eq!(allocate(&[], 3), Vec::<usize>::new());
        for n in 0..=30 {
            let q = allocate(&[7, 13, 5, 5], n);
            assert_eq!(q.iter().sum::<usize>(), n);
            assert!(q.iter().zip([7, 13, 5, 5]).all(|(a, b)| *a <= b));
        }
    }
}
