//! Two-party tests of the share × share attention products (Q·Kᵀ and P·V shapes, several
//! heads, both packings) against a cleartext integer reference: exact after reconstruction.

use fastlmpi::he::{client_setup, convert, server_setup, HeContext, HePreset};
use fastlmpi::net::run_pair;
use fastlmpi::proto::linear::attention::{shared_matmul_client, shared_matmul_server, MatmulShape, SharedMatmulPlan};
use fastlmpi::proto::linear::Packing;
use rand::Rng;

fn reference(a: &[i64], b: &[i64], s: MatmulShape) -> Vec<i64> {
    let mut y = vec![0i64; s.n * s.m];
    for r in 0..s.n {
        for c in 0..s.m {
            y[r * s.m + c] = (0..s.k).map(|k| a[r * s.k + k] as i128 * b[k * s.m + c] as i128).sum::<i128>() as i64;
        }
    }
    y
}

fn run(shape: MatmulShape, packing: Packing, heads: usize, bound: i64, edge: bool) {
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let f = ctx.field();
    let mut rng = rand::rng();
    let mut gen = |len: usize, head: usize| -> Vec<i64> {
        (0..len)
            .map(|i| match (edge, head % 3) {
                (true, 0) => if i % 2 == 0 { bound } else { -bound },
                (true, 1) => -bound,
                (true, _) => 0,
                _ => rng.random_range(-bound..=bound),
            })
            .collect()
    };
    let a: Vec<Vec<i64>> = (0..heads).map(|h| gen(shape.n * shape.k, h)).collect();
    let b: Vec<Vec<i64>> = (0..heads).map(|h| gen(shape.k * shape.m, h)).collect();
    let split = |v: &Vec<Vec<i64>>, rng: &mut rand::rngs::ThreadRng| -> (Vec<Vec<u64>>, Vec<Vec<u64>>) {
        v.iter().map(|m| f.share_vec(&convert::from_signed_vec(f, m), rng)).unzip()
    };
    let (a_c, a_s) = split(&a, &mut rng);
    let (b_c, b_s) = split(&b, &mut rng);
    let plan = SharedMatmulPlan::new(&ctx, shape, heads, packing).unwrap();
    let rot = plan.rotations();
    let out = run_pair(
        |ch| {
            let keys = server_setup(ch, &ctx, &rot)?;
            shared_matmul_server(ch, &ctx, &keys, &plan, &a_s, &b_s)
        },
        |ch| {
            let keys = client_setup(ch, &ctx, &rot, &mut rand::rng())?;
            shared_matmul_client(ch, &ctx, &keys, &plan, &a_c, &b_c, &mut rand::rng())
        },
    )
    .unwrap();
    // All heads in one round trip: the client's key setup and uploads form one flight, the
    // server's returns the other.
    assert_eq!(out.client_stats.rounds, 2);
    for h in 0..heads {
        let got = convert::to_signed_vec(f, &f.reconstruct(&out.server[h], &out.client[h]));
        assert_eq!(got, reference(&a[h], &b[h], shape), "head {h} {packing:?} {shape:?}");
    }
}

#[test]
fn qk_shape_both_packings_random() {
    for packing in [Packing::Rfcp, Packing::Bsgs] {
        run(MatmulShape { n: 8, k: 4, m: 8 }, packing, 2, (1 << 20) - 1, false);
    }
}

#[test]
fn pv_shape_both_packings_edge_values() {
    for packing in [Packing::Rfcp, Packing::Bsgs] {
        run(MatmulShape { n: 12, k: 12, m: 5 }, packing, 3, (1 << 20) - 1, true);
    }
}

#[test]
fn heads_beyond_one_ciphertext_split_into_padded_calls() {
    // 1500 rows per head: two heads share a ciphertext row block, the third goes alone
    // (padded with a zero head).
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let shape = MatmulShape { n: 1500, k: 2, m: 3 };
    let plan = SharedMatmulPlan::new(&ctx, shape, 3, Packing::Bsgs).unwrap();
    assert_eq!((plan.heads_per_call, plan.calls(3)), (2, 2));
    run(shape, Packing::Bsgs, 3, (1 << 20) - 1, false);
}
