//! Two-party tests of the real OT session over loopback TCP: correctness against the
//! cleartext functionality on random inputs, exact byte and flight counts against the
//! documented formulas, and rejection of malformed base-OT messages.

use fastlmpi::net::{packed_len, run_pair, Channel, CommStats};
use fastlmpi::ot::kk13;
use fastlmpi::ot::session::{choice_bits, BASE_SETUP_BYTES_SENT, BASE_SETUP_ROUNDS, SETUP_BYTES_SENT, SETUP_ROUNDS};
use fastlmpi::ot::{Ot, OtSession};
use fastlmpi::share::Role;
use fastlmpi::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

mod common;
use common::RecordingChannel;

const BATCHES: [usize; 6] = [0, 1, 127, 128, 129, 1000];
const WIDTHS: [u32; 4] = [1, 12, 37, 64];

fn mask(bits: u32) -> u64 {
    if bits == 64 { u64::MAX } else { (1 << bits) - 1 }
}

/// IKNP matrix bytes for m OTs plus the 8-byte header (nothing for an empty batch).
fn receiver_bytes(m: usize, calls_nonempty: bool) -> u64 {
    if calls_nonempty { 8 + 2048 * m.div_ceil(128) as u64 } else { 0 }
}

/// Run a server-side closure (OT sender) and a client-side closure (OT receiver) after setup;
/// return their outputs and the stats of the part after setup.
fn run_after_setup<S: Send, C: Send>(
    server: impl FnOnce(&mut OtSession, &mut dyn Channel) -> fastlmpi::Result<S> + Send,
    client: impl FnOnce(&mut OtSession, &mut dyn Channel) -> fastlmpi::Result<C> + Send,
) -> (S, C, CommStats, CommStats) {
    let out = run_pair(
        |ch| {
            let mut s = OtSession::setup(ch, Role::Server)?;
            // The client sent last in setup: one byte back settles the direction, so the
            // calls' first flight counts as a round.
            ch.send_bytes(&[0])?;
            let before = ch.stats();
            let r = server(&mut s, ch)?;
            Ok((r, ch.stats().since(&before)))
        },
        |ch| {
            let mut s = OtSession::setup(ch, Role::Client)?;
            ch.recv_bytes(&mut [0u8])?;
            let before = ch.stats();
            let r = client(&mut s, ch)?;
            ch.flush()?;
            Ok((r, ch.stats().since(&before)))
        },
    )
    .unwrap();
    (out.server.0, out.client.0, out.server.1, out.client.1)
}

#[test]
fn setup_costs_exactly_the_documented_bytes_and_flights() {
    let out = run_pair(|ch| OtSession::setup(ch, Role::Server).map(|_| ()), |ch| OtSession::setup(ch, Role::Client).map(|_| ()))
        .unwrap();
    assert_eq!(out.server_stats.bytes_sent, SETUP_BYTES_SENT);
    assert_eq!(out.client_stats.bytes_sent, SETUP_BYTES_SENT);
    // Base OTs (a point, 128 points), then 256 random OTs for KK13's base (header, 2 blocks).
    assert_eq!(SETUP_BYTES_SENT, 32 + 128 * 32 + 8 + 2 * 2048);
    assert_eq!(out.server_stats.rounds, SETUP_ROUNDS);
    assert_eq!(out.client_stats.rounds, SETUP_ROUNDS);
    assert_eq!(SETUP_ROUNDS, 4);
    let base = run_pair(|ch| OtSession::setup_iknp(ch, Role::Server).map(|_| ()), |ch| OtSession::setup_iknp(ch, Role::Client).map(|_| ()))
        .unwrap();
    assert_eq!((base.server_stats.bytes_sent, base.client_stats.bytes_sent), (BASE_SETUP_BYTES_SENT, BASE_SETUP_BYTES_SENT));
    assert_eq!(BASE_SETUP_BYTES_SENT, 32 + 128 * 32);
    assert_eq!((base.server_stats.rounds, base.client_stats.rounds), (BASE_SETUP_ROUNDS, BASE_SETUP_ROUNDS));
}

#[test]
fn chosen_ot_delivers_the_chosen_message_at_every_width_and_batch_size() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut cases = Vec::new();
    for &bits in &WIDTHS {
        for &n in &BATCHES {
            let msgs: Vec<[u64; 2]> = (0..n).map(|_| [rng.random(), rng.random()]).collect();
            let choices: Vec<bool> = (0..n).map(|_| rng.random()).collect();
            cases.push((bits, msgs, choices));
        }
    }
    let server_cases: Vec<_> = cases.iter().map(|(b, m, _)| (*b, m.clone())).collect();
    let client_cases: Vec<_> = cases.iter().map(|(b, _, c)| (*b, c.clone())).collect();
    let (_, got, s_stats, c_stats) = run_after_setup(
        move |ot, ch| {
            let mut per_call = Vec::new();
            for (bits, msgs) in &server_cases {
                let before = ch.stats();
                ot.send_chosen(ch, msgs, *bits)?;
                per_call.push(ch.stats().since(&before).bytes_sent);
            }
            Ok(per_call)
        },
        move |ot, ch| client_cases.iter().map(|(bits, c)| ot.recv_chosen(ch, c, *bits)).collect::<fastlmpi::Result<Vec<_>>>(),
    );
    let mut expect_client = 0;
    let mut expect_server = 0;
    for ((bits, msgs, choices), out) in cases.iter().zip(&got) {
        let m = mask(*bits);
        let expect: Vec<u64> = msgs.iter().zip(choices).map(|(p, &c)| p[c as usize] & m).collect();
        assert_eq!(out, &expect, "bits {bits}, n {}", msgs.len());
        expect_client += receiver_bytes(msgs.len(), !msgs.is_empty());
        expect_server += packed_len(2 * msgs.len(), *bits) as u64;
    }
    assert_eq!(c_stats.bytes_sent, expect_client);
    assert_eq!(s_stats.bytes_sent, expect_server);
    // Two flights per non-empty call, all calls alternate R→S then S→R.
    let nonempty = cases.iter().filter(|c| !c.1.is_empty()).count() as u64;
    assert_eq!(c_stats.rounds, 2 * nonempty);
}

#[test]
fn correlated_ot_gives_x_and_x_plus_delta() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    for &bits in &WIDTHS {
        let n_cases: Vec<usize> = BATCHES.to_vec();
        let deltas: Vec<Vec<u64>> = n_cases.iter().map(|&n| (0..n).map(|_| rng.random::<u64>() & mask(bits)).collect()).collect();
        let choices: Vec<Vec<bool>> = n_cases.iter().map(|&n| (0..n).map(|_| rng.random()).collect()).collect();
        let (d2, c2) = (deltas.clone(), choices.clone());
        let (xs, ys, s_stats, c_stats) = run_after_setup(
            move |ot, ch| d2.iter().map(|d| ot.send_correlated(ch, d, bits)).collect::<fastlmpi::Result<Vec<_>>>(),
            move |ot, ch| c2.iter().map(|c| ot.recv_correlated(ch, c, bits)).collect::<fastlmpi::Result<Vec<_>>>(),
        );
        let m = mask(bits);
        let mut expect_server = 0;
        let mut expect_client = 0;
        for k in 0..n_cases.len() {
            for i in 0..n_cases[k] {
                assert!(xs[k][i] <= m);
                let expect = if choices[k][i] { xs[k][i].wrapping_add(deltas[k][i]) & m } else { xs[k][i] };
                assert_eq!(ys[k][i], expect, "bits {bits}, n {}, i {i}", n_cases[k]);
            }
            expect_server += packed_len(n_cases[k], bits) as u64;
            expect_client += receiver_bytes(n_cases[k], n_cases[k] > 0);
        }
        assert_eq!(s_stats.bytes_sent, expect_server);
        assert_eq!(c_stats.bytes_sent, expect_client);
        // The sender's x must not be constant (a broken hash would give zeros).
        if bits >= 12 {
            assert!(xs[5].iter().any(|&x| x != xs[5][0]));
        }
    }
}

/// Decreasing widths: instance i works mod 2^(bits − i mod bits) and the sender's payload is
/// bits·(bits + 1)/2 bits per group; a batch that is not whole groups is refused on both sides.
#[test]
fn staircase_correlated_ot_narrows_each_instance_and_its_payload() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    for bits in [1u32, 37, 64] {
        let n = 3 * bits as usize;
        let deltas: Vec<u64> = (0..n).map(|_| rng.random::<u64>()).collect();
        let choices: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let (d2, c2) = (deltas.clone(), choices.clone());
        let (xs, ys, s_stats, _) = run_after_setup(move |ot, ch| ot.send_correlated_staircase(ch, &d2, bits), move |ot, ch| ot.recv_correlated_staircase(ch, &c2, bits));
        for i in 0..n {
            let m = mask(fastlmpi::ot::staircase_width(bits, i));
            assert!(xs[i] <= m && ys[i] <= m, "bits {bits}, i {i}");
            let expect = if choices[i] { xs[i].wrapping_add(deltas[i]) & m } else { xs[i] };
            assert_eq!(ys[i], expect, "bits {bits}, i {i}");
        }
        assert_eq!(s_stats.bytes_sent, fastlmpi::ot::staircase_payload_bits(n, bits).div_ceil(8) as u64);
    }
    let out = run_pair(
        |ch| {
            let mut ot = OtSession::setup(ch, Role::Server)?;
            ot.send_correlated_staircase(ch, &[1, 2, 3], 2)
        },
        |ch| {
            let mut ot = OtSession::setup(ch, Role::Client)?;
            ot.recv_correlated_staircase(ch, &[true, false, true], 2)
        },
    );
    assert!(out.is_err());
}

/// Correlated OT mod p: x uniform in Z_p, the receiver x + c·δ mod p (δ given unreduced too),
/// one bits(p)-bit message per OT; a modulus outside 2..=2^62 is refused before any message.
#[test]
fn correlated_ot_mod_p_gives_x_and_x_plus_delta_mod_p() {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    for p in [2u64, 3, 4_503_599_627_370_449, (1 << 62) - 57] {
        let n = 1000;
        let deltas: Vec<u64> = (0..n).map(|i| if i % 7 == 0 { rng.random::<u64>() } else { rng.random_range(0..p) }).collect();
        let choices: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let (d2, c2) = (deltas.clone(), choices.clone());
        let (xs, ys, s_stats, _) = run_after_setup(move |ot, ch| ot.send_correlated_mod(ch, &d2, p), move |ot, ch| ot.recv_correlated_mod(ch, &c2, p));
        for i in 0..n {
            assert!(xs[i] < p && ys[i] < p, "p {p}, i {i}");
            let expect = if choices[i] { ((xs[i] as u128 + deltas[i] as u128) % p as u128) as u64 } else { xs[i] };
            assert_eq!(ys[i], expect, "p {p}, i {i}");
        }
        assert_eq!(s_stats.bytes_sent, packed_len(n, 64 - p.leading_zeros()) as u64, "p {p}");
        // Both residues occur (x is not stuck at 0 for p = 2).
        if p == 2 {
            assert!(xs.iter().any(|&x| x == 1) && xs.iter().any(|&x| x == 0));
        }
    }
    for bad in [0u64, 1, (1 << 62) + 1] {
        let out = run_pair(
            move |ch| {
                let mut ot = OtSession::setup(ch, Role::Server)?;
                ot.send_correlated_mod(ch, &[1, 2], bad)
            },
            move |ch| {
                let mut ot = OtSession::setup(ch, Role::Client)?;
                ot.recv_correlated_mod(ch, &[true, false], bad)
            },
        );
        assert!(out.is_err(), "modulus {bad} accepted");
    }
}

#[test]
fn random_ot_gives_pairs_and_the_chosen_key_both_directions() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let choices: Vec<bool> = (0..1000).map(|_| rng.random()).collect();
    let (c1, c2) = (choices.clone(), choices.clone());
    let out = run_pair(
        move |ch| {
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let pairs = ot.send_random(ch, 1000)?;
            let got = ot.recv_random(ch, &c1)?; // roles swapped
            Ok((pairs, got))
        },
        move |ch| {
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let got = ot.recv_random(ch, &c2)?;
            let pairs = ot.send_random(ch, 1000)?;
            Ok((got, pairs))
        },
    )
    .unwrap();
    let (s_pairs, s_got) = out.server;
    let (c_got, c_pairs) = out.client;
    for i in 0..1000 {
        assert_eq!(c_got[i], s_pairs[i][choices[i] as usize]);
        assert_ne!(c_got[i], s_pairs[i][!choices[i] as usize]);
        assert_eq!(s_got[i], c_pairs[i][choices[i] as usize]);
    }
    let setup = SETUP_BYTES_SENT;
    assert_eq!(out.client_stats.bytes_sent, setup + receiver_bytes(1000, true));
    assert_eq!(out.server_stats.bytes_sent, setup + receiver_bytes(1000, true));
}

#[test]
fn one_of_n_ot_delivers_the_chosen_row_entry() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    for (n, bits, len) in [(2usize, 64u32, 129usize), (4, 1, 1000), (16, 12, 1000), (16, 37, 1), (256, 64, 130), (5, 8, 77), (8, 2, 5000), (255, 3, 3)] {
        let msgs: Vec<u64> = (0..len * n).map(|_| rng.random::<u64>() & mask(bits)).collect();
        let choices: Vec<u8> = (0..len).map(|_| rng.random_range(0..n) as u8).collect();
        let (m2, c2) = (msgs.clone(), choices.clone());
        let (_, got, s_stats, c_stats) = run_after_setup(
            move |ot, ch| ot.send_1_of_n(ch, &m2, n, bits),
            move |ot, ch| ot.recv_1_of_n(ch, &c2, n, bits),
        );
        for i in 0..len {
            assert_eq!(got[i], msgs[i * n + choices[i] as usize], "N {n}, i {i}");
        }
        // KK13 from N = 5: one 32-byte row per OT; below, ⌈log2 N⌉ IKNP OTs.
        let want = if n >= 5 { 8 + 32 * len as u64 } else { receiver_bytes(len * choice_bits(n), true) };
        assert_eq!(kk13::runs_on_kk13(n), n >= 5);
        assert_eq!(c_stats.bytes_sent, want, "N {n}");
        assert_eq!(s_stats.bytes_sent, packed_len(len * n, bits) as u64, "N {n}");
        assert_eq!(c_stats.rounds, 2);
    }
    assert_eq!((choice_bits(2), choice_bits(4), choice_bits(5), choice_bits(16), choice_bits(256)), (1, 2, 3, 4, 8));
}

#[test]
fn many_batches_in_one_session_stay_correct() {
    // Counters advance across batches: later batches must still decode.
    let (_, got, _, _) = run_after_setup(
        |ot, ch| {
            for k in 0..5u64 {
                ot.send_chosen(ch, &vec![[k, k + 100]; 200], 16)?;
            }
            Ok(())
        },
        |ot, ch| (0..5).map(|k| ot.recv_chosen(ch, &vec![k % 2 == 1; 200], 16)).collect::<fastlmpi::Result<Vec<_>>>(),
    );
    for (k, v) in got.iter().enumerate() {
        let expect = if k % 2 == 1 { k as u64 + 100 } else { k as u64 };
        assert!(v.iter().all(|&x| x == expect), "batch {k}");
    }
}

#[test]
fn garbage_base_ot_point_from_the_peer_is_a_clear_error() {
    for garbage in [[0u8; 32], [0xffu8; 32]] {
        let res = run_pair(
            |ch| OtSession::setup(ch, Role::Server).map(|_| ()),
            move |ch| {
                let mut a_s = [0u8; 32];
                ch.recv_bytes(&mut a_s)?;
                ch.send_bytes(&garbage)?; // the client's A
                ch.send_bytes(&vec![0x42u8; 128 * 32])?;
                let mut rest = vec![0u8; 128 * 32];
                ch.recv_bytes(&mut rest)?;
                Ok(())
            },
        );
        match res {
            Err(Error::Protocol { step, detail }) => {
                assert_eq!(step, "base OT");
                assert!(detail.contains("point"), "{detail}");
            }
            other => panic!("expected a base-OT protocol error, got {other:?}"),
        }
    }
}

#[test]
fn mismatched_calls_are_detected() {
    let res = run_pair(
        |ch| {
            let mut ot = OtSession::setup(ch, Role::Server)?;
            ot.send_chosen(ch, &[[1, 2]; 10], 8)
        },
        |ch| {
            let mut ot = OtSession::setup(ch, Role::Client)?;
            ot.recv_correlated(ch, &[true; 10], 8).map(|_| ())
        },
    );
    assert!(matches!(res, Err(Error::Protocol { .. })), "{res:?}");
}

#[test]
fn kk13_receivers_view_does_not_depend_on_the_unchosen_messages() {
    // 1-of-16 on KK13: the receiver always chooses 0; the 15 other messages are all-zero in
    // one run and all-ones in the other. Every bit position of the received unchosen entries
    // must stay balanced in both, i.e. carry no trace of the messages.
    let (n, len) = (16usize, 4_000usize);
    for unchosen in [0u64, u64::MAX] {
        let table: Vec<u64> = (0..len * n).map(|k| if k % n == 0 { 42 } else { unchosen }).collect();
        let (_, (got, seen), _, _) = run_after_setup(
            move |ot, ch| ot.send_1_of_n(ch, &table, n, 64),
            move |ot, ch| {
                let mut rec = RecordingChannel { inner: ch, seen: Vec::new() };
                let got = ot.recv_1_of_n(&mut rec, &vec![0u8; len], n, 64)?;
                Ok((got, rec.seen))
            },
        );
        assert!(got.iter().all(|&g| g == 42));
        assert_eq!(seen.len(), len * n * 8, "the receiver sees exactly the masked table");
        let entries = len * (n - 1);
        for bit in 0..64 {
            let ones = (0..len * n).filter(|k| k % n != 0).filter(|&k| {
                let w = u64::from_le_bytes(seen[k * 8..k * 8 + 8].try_into().unwrap());
                (w >> bit) & 1 == 1
            });
            let frac = ones.count() as f64 / entries as f64;
            // 60,000 fair coins: |frac − ½| < 0.015 fails with probability < 2^-38 per position.
            assert!((frac - 0.5).abs() < 0.015, "unchosen = {unchosen:#x}: bit {bit} is 1 in {frac} of the entries");
        }
    }
}

#[test]
fn kk13_one_of_n_needs_its_base_ots() {
    // A session set up for IKNP only (the silent backend's bootstrap) refuses N ≥ 5 clearly
    // on both sides, before anything is sent.
    let out = run_pair(
        |ch| {
            let mut ot = OtSession::setup_iknp(ch, Role::Server)?;
            Ok(ot.send_1_of_n(ch, &[0; 16], 16, 4))
        },
        |ch| {
            let mut ot = OtSession::setup_iknp(ch, Role::Client)?;
            Ok(ot.recv_1_of_n(ch, &[3], 16, 4).map(|_| ()))
        },
    )
    .unwrap();
    for r in [out.server, out.client] {
        assert!(matches!(&r, Err(Error::Ot(m)) if m.contains("KK13")), "{r:?}");
    }
}

#[test]
fn kk13_batches_in_both_directions_stay_correct() {
    // Counters of both KK13 directions advance independently across interleaved batches.
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    let choices: Vec<Vec<u8>> = (0..4).map(|k| (0..100 + 70 * k).map(|_| rng.random_range(0..16u8)).collect()).collect();
    let table = |k: usize, len: usize| -> Vec<u64> { (0..len * 16).map(|e| (e as u64 * 31 + k as u64) & 0xfff).collect() };
    let (c1, c2) = (choices.clone(), choices.clone());
    let out = run_pair(
        move |ch| {
            let mut ot = OtSession::setup(ch, Role::Server)?;
            let mut got = Vec::new();
            for (k, c) in c1.iter().enumerate() {
                if k % 2 == 0 {
                    ot.send_1_of_n(ch, &table(k, c.len()), 16, 12)?;
                } else {
                    got.push(ot.recv_1_of_n(ch, c, 16, 12)?);
                }
            }
            Ok(got)
        },
        move |ch| {
            let mut ot = OtSession::setup(ch, Role::Client)?;
            let mut got = Vec::new();
            for (k, c) in c2.iter().enumerate() {
                if k % 2 == 0 {
                    got.push(ot.recv_1_of_n(ch, c, 16, 12)?);
                } else {
                    ot.send_1_of_n(ch, &table(k, c.len()), 16, 12)?;
                }
            }
            Ok(got)
        },
    )
    .unwrap();
    for (k, c) in choices.iter().enumerate() {
        let got = if k % 2 == 0 { &out.client[k / 2] } else { &out.server[k / 2] };
        let t = table(k, c.len());
        for (i, &v) in c.iter().enumerate() {
            assert_eq!(got[i], t[i * 16 + v as usize], "batch {k}, OT {i}");
        }
    }
}
