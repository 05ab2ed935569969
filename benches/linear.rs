//! Criterion micro-benchmarks of the private linear layer: one two-party call over loopback
//! per iteration, ids `linear/<packing>/<n>x<d_in>x<d_out>`. Setup (keys, weight encoding) is
//! outside the timed region.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fastlmpi::he::{client_setup, server_setup, HeContext, HePreset};
use fastlmpi::net::local::loopback_pair;
use fastlmpi::proto::linear::{linear_client, linear_server, EncodedLinear, LinearPlan, LinearShape, Packing};

fn bench_linear(c: &mut Criterion) {
    let ctx = HeContext::new(&HePreset::linear()).unwrap();
    let f = ctx.field();
    let mut group = c.benchmark_group("linear");
    group.sample_size(10);
    for shape in [LinearShape { n: 16, d_in: 64, d_out: 32 }, LinearShape { n: 128, d_in: 64, d_out: 64 }] {
        for packing in [Packing::Rfcp, Packing::Bsgs] {
            let plan = LinearPlan::new(&ctx, shape, packing).unwrap();
            let w = vec![3i64; shape.d_in * shape.d_out];
            let enc = EncodedLinear::new(&ctx, plan.clone(), &w, None).unwrap();
            let mut rng = rand::rng();
            let x_c: Vec<u64> = (0..shape.n * shape.d_in).map(|_| f.random(&mut rng)).collect();
            let x_s = x_c.clone();
            let (mut sch, mut cch) = loopback_pair(Default::default()).unwrap();
            let rot = plan.rotations();
            let (skeys, ckeys) = std::thread::scope(|s| {
                let h = s.spawn(|| server_setup(&mut sch, &ctx, &rot).unwrap());
                let c = client_setup(&mut cch, &ctx, &rot, &mut rand::rng()).unwrap();
                (h.join().unwrap(), c)
            });
            let id = BenchmarkId::new(packing.name(), format!("{}x{}x{}", shape.n, shape.d_in, shape.d_out));
            group.bench_function(id, |b| {
                b.iter(|| {
                    std::thread::scope(|s| {
                        let h = s.spawn(|| linear_server(&mut sch, &ctx, &skeys, &enc, &x_s).unwrap());
                        linear_client(&mut cch, &ctx, &ckeys, &plan, &x_c, &mut rand::rng()).unwrap();
                        h.join().unwrap();
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_linear);
criterion_main!(benches);
