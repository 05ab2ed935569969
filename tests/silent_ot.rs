//! Two-party tests of the silent OT backend (`ot::SilentOt`) over loopback TCP: the derived
//! chosen, correlated and 1-of-N OTs against the cleartext functionality in both directions,
//! the exact bytes of a call after the refill, what the receiver sees of the unchosen
//! messages, and clear errors (on both sides, without hanging) for mismatched batches and a
//! peer that disconnects in the middle of an iteration.

use fastlmpi::net::{packed_len, run_pair, Channel, CommStats};
use fastlmpi::ot::ferret::refill_bytes;
use fastlmpi::ot::lpn::SET;
use fastlmpi::ot::session::choice_bits;
use fastlmpi::ot::{Ot, SilentOt};
use fastlmpi::share::Role;
use fastlmpi::Error;

mod common;
use common::RecordingChannel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// COTs a direction holds after the bootstrap (its first iteration).
const FIRST_FILL: usize = SET.net_outputs();

fn mask(bits: u32) -> u64 {
    if bits == 64 { u64::MAX } else { (1 << bits) - 1 }
}

/// Both parties after `SilentOt::setup` and a prefill of `FIRST_FILL`; returns outputs and the
/// stats of the part after the prefill.
fn run_silent<S: Send, C: Send>(
    server: impl FnOnce(&mut SilentOt, &mut dyn Channel) -> fastlmpi::Result<S> + Send,
    client: impl FnOnce(&mut SilentOt, &mut dyn Channel) -> fastlmpi::Result<C> + Send,
) -> (S, C, CommStats, CommStats) {
    let out = run_pair(
        |ch| {
            let mut s = SilentOt::setup(ch, Role::Server)?;
            s.prefill(ch, FIRST_FILL)?;
            // Settle the direction (server sent last) so the first flight counts on both sides.
            ch.send_bytes(&[0])?;
            let before = ch.stats();
            let r = server(&mut s, ch)?;
            Ok((r, ch.stats().since(&before)))
        },
        |ch| {
            let mut s = SilentOt::setup(ch, Role::Client)?;
            s.prefill(ch, FIRST_FILL)?;
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
fn chosen_and_correlated_ot_in_both_directions_with_exact_bytes() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let n = 1000;
    for bits in [1u32, 37, 64] {
        let msgs: Vec<[u64; 2]> = (0..n).map(|_| [rng.random::<u64>() & mask(bits), rng.random::<u64>() & mask(bits)]).collect();
        let deltas: Vec<u64> = (0..n).map(|_| rng.random::<u64>() & mask(bits)).collect();
        let c1: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let c2: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let (m, d, a, b) = (msgs.clone(), deltas.clone(), c1.clone(), c2.clone());
        let (xs, (got, ys), s_stats, c_stats) = run_silent(
            move |ot, ch| {
                ot.send_chosen(ch, &m, bits)?;
                let xs = ot.send_correlated(ch, &d, bits)?;
                // Roles swapped: the server receives from the client.
                let back = ot.recv_chosen(ch, &b, bits)?;
                Ok((xs, back))
            },
            move |ot, ch| {
                let got = ot.recv_chosen(ch, &a, bits)?;
                let ys = ot.recv_correlated(ch, &a, bits)?;
                ot.send_chosen(ch, &vec![[5 & mask(bits), 6 & mask(bits)]; n], bits)?;
                Ok((got, ys))
            },
        );
        let (xs, back) = xs;
        for i in 0..n {
            assert_eq!(got[i], msgs[i][c1[i] as usize], "chosen, {bits} bits, OT {i}");
            let want = if c1[i] { xs[i].wrapping_add(deltas[i]) & mask(bits) } else { xs[i] };
            assert_eq!(ys[i], want, "correlated, {bits} bits, OT {i}");
            assert_eq!(back[i], if c2[i] { 6 } else { 5 } & mask(bits));
        }
        // Receiver: header + one correction bit per OT; sender: the payload.
        let recv = |n: usize| 8 + n.div_ceil(8) as u64;
        assert_eq!(c_stats.bytes_sent, 2 * recv(n) + packed_len(2 * n, bits) as u64, "{bits} bits");
        assert_eq!(s_stats.bytes_sent, packed_len(2 * n, bits) as u64 + packed_len(n, bits) as u64 + recv(n), "{bits} bits");
    }
}

/// Decreasing widths on stored correlations: instance i mod 2^(bits − i mod bits), one
/// correction bit per instance from the receiver and bits·(bits + 1)/2 payload bits per group.
#[test]
fn staircase_correlated_ot_narrows_each_instance_and_its_payload() {
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    for bits in [1u32, 40, 64] {
        let n = 5 * bits as usize;
        let deltas: Vec<u64> = (0..n).map(|_| rng.random::<u64>()).collect();
        let choices: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let (d, c) = (deltas.clone(), choices.clone());
        let (xs, ys, s_stats, c_stats) = run_silent(move |ot, ch| ot.send_correlated_staircase(ch, &d, bits), move |ot, ch| ot.recv_correlated_staircase(ch, &c, bits));
        for i in 0..n {
            let m = mask(fastlmpi::ot::staircase_width(bits, i));
            let want = if choices[i] { xs[i].wrapping_add(deltas[i]) & m } else { xs[i] };
            assert_eq!(ys[i], want, "bits {bits}, OT {i}");
        }
        assert_eq!(c_stats.bytes_sent, 8 + n.div_ceil(8) as u64);
        assert_eq!(s_stats.bytes_sent, fastlmpi::ot::staircase_payload_bits(n, bits).div_ceil(8) as u64);
    }
}

/// Correlated OT mod p on stored correlations: one correction bit per OT from the receiver,
/// one bits(p)-bit message per OT from the sender.
#[test]
fn correlated_ot_mod_p_sends_one_residue_per_ot() {
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    for p in [3u64, 4_503_599_627_370_449] {
        let n = 777;
        let deltas: Vec<u64> = (0..n).map(|_| rng.random_range(0..p)).collect();
        let choices: Vec<bool> = (0..n).map(|_| rng.random()).collect();
        let (d, c) = (deltas.clone(), choices.clone());
        let (xs, ys, s_stats, c_stats) = run_silent(move |ot, ch| ot.send_correlated_mod(ch, &d, p), move |ot, ch| ot.recv_correlated_mod(ch, &c, p));
        for i in 0..n {
            let want = if choices[i] { (xs[i] + deltas[i]) % p } else { xs[i] };
            assert!(xs[i] < p);
            assert_eq!(ys[i], want, "p {p}, OT {i}");
        }
        assert_eq!(c_stats.bytes_sent, 8 + n.div_ceil(8) as u64);
        assert_eq!(s_stats.bytes_sent, packed_len(n, 64 - p.leading_zeros()) as u64);
    }
}

#[test]
fn one_of_n_ot_delivers_the_chosen_entry_with_log_n_correction_bits() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    for (n, bits, len) in [(2usize, 64u32, 129usize), (16, 2, 1000), (16, 37, 1), (256, 64, 130), (5, 8, 77)] {
        let msgs: Vec<u64> = (0..len * n).map(|_| rng.random::<u64>() & mask(bits)).collect();
        let choices: Vec<u8> = (0..len).map(|_| rng.random_range(0..n) as u8).collect();
        let (m2, c2) = (msgs.clone(), choices.clone());
        let (_, got, s_stats, c_stats) =
            run_silent(move |ot, ch| ot.send_1_of_n(ch, &m2, n, bits), move |ot, ch| ot.recv_1_of_n(ch, &c2, n, bits));
        for i in 0..len {
            assert_eq!(got[i], msgs[i * n + choices[i] as usize], "N {n}, i {i}");
        }
        assert_eq!(c_stats.bytes_sent, 8 + (len * choice_bits(n)).div_ceil(8) as u64, "N {n}");
        assert_eq!(s_stats.bytes_sent, packed_len(len * n, bits) as u64, "N {n}");
        assert_eq!(c_stats.rounds, 2);
    }
}

#[test]
fn calls_past_the_first_fill_run_an_iteration_and_stay_correct() {
    // More than the first iteration buffered: the call pays for one more (documented bytes).
    let n = FIRST_FILL + 1_000;
    let c: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let c2 = c.clone();
    let (_, got, s_stats, _) = run_silent(
        move |ot, ch| ot.send_chosen(ch, &vec![[7, 9]; n], 8),
        move |ot, ch| ot.recv_chosen(ch, &c2, 8),
    );
    assert!(got.iter().zip(&c).all(|(&g, &b)| g == if b { 9 } else { 7 }));
    assert_eq!(s_stats.bytes_sent, refill_bytes(1, FIRST_FILL, n) + packed_len(2 * n, 8) as u64);
    assert_eq!(refill_bytes(1, FIRST_FILL, n), 8 + 264 * (32 * 13 + 16));
}

#[test]
fn receivers_view_does_not_depend_on_the_unchosen_message() {
    // The receiver always chooses 0; the sender's unchosen message is all-zero in one run and
    // all-ones in the other. The received unchosen ciphertexts must look uniform in both
    // (every bit position balanced), i.e. carry no trace of the message.
    let n = 20_000;
    for unchosen in [0u64, u64::MAX] {
        let (_, (got, seen), _, _) = run_silent(
            move |ot, ch| ot.send_chosen(ch, &vec![[42, unchosen]; n], 64),
            move |ot, ch| {
                let mut rec = RecordingChannel { inner: ch, seen: Vec::new() };
                let got = ot.recv_chosen(&mut rec, &vec![false; n], 64)?;
                Ok((got, rec.seen))
            },
        );
        assert!(got.iter().all(|&g| g == 42));
        assert_eq!(seen.len(), 2 * n * 8, "the receiver sees exactly the two masked messages per OT");
        for bit in 0..64 {
            let ones = (0..n).filter(|&i| {
                let off = (2 * i + 1) * 8;
                let w = u64::from_le_bytes(seen[off..off + 8].try_into().unwrap());
                (w >> bit) & 1 == 1
            });
            let frac = ones.count() as f64 / n as f64;
            // 20,000 fair coins: |frac − ½| < 0.02 fails with probability < 2^-25 per position.
            assert!((frac - 0.5).abs() < 0.02, "unchosen = {unchosen:#x}: bit {bit} is 1 in {frac} of the OTs");
        }
    }
}

/// Run `server` and `client` on fresh silent sessions; each side's own result (not just the
/// first error) is returned.
fn both_results(
    server: impl FnOnce(&mut SilentOt, &mut dyn Channel) -> fastlmpi::Result<()> + Send,
    client: impl FnOnce(&mut SilentOt, &mut dyn Channel) -> fastlmpi::Result<()> + Send,
) -> (fastlmpi::Result<()>, fastlmpi::Result<()>) {
    let start = std::time::Instant::now();
    let out = run_pair(
        |ch| {
            let mut s = SilentOt::setup(ch, Role::Server)?;
            Ok(server(&mut s, ch))
        },
        |ch| {
            let mut s = SilentOt::setup(ch, Role::Client)?;
            Ok(client(&mut s, ch))
        },
    )
    .unwrap();
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    (out.server, out.client)
}

#[test]
fn mismatched_batch_is_a_clear_error_on_both_sides() {
    let (s, c) = both_results(
        |ot, ch| ot.send_chosen(ch, &[[1, 2]; 10], 8),
        |ot, ch| ot.recv_chosen(ch, &[true; 11], 8).map(|_| ()),
    );
    assert!(matches!(s, Err(Error::Protocol { .. })), "server: {s:?}");
    assert!(matches!(c, Err(Error::PeerDisconnected(_)) | Err(Error::Net { .. })), "client: {c:?}");
}

#[test]
fn peer_disconnecting_mid_iteration_is_a_clear_error_on_both_sides() {
    // The client (COT receiver of the server's direction) leaves after the bootstrap's IKNP
    // message, without reading the iteration's tree message; the server sends into a closed
    // connection or waits for the corrections, and must see the disconnect either way.
    let (s, c) = both_results(
        |ot, ch| ot.send_chosen(ch, &[[1, 2]; 10], 8),
        |_ot, ch| {
            // Announce a matching batch, then the bootstrap's IKNP header and matrix.
            ch.send_u64(1 | 8 << 8 | 1 << 16 | 10 << 32)?;
            ch.send_u64(5 | 64 << 8 | 1 << 16 | (SET.base_cots() as u64) << 32)?;
            ch.send_bytes(&vec![0x5au8; 2048 * SET.base_cots().div_ceil(128)])?;
            ch.flush()?;
            Err(Error::Ot("client gave up".into()))
        },
    );
    assert!(matches!(s, Err(Error::PeerDisconnected(_)) | Err(Error::Net { .. })), "server: {s:?}");
    assert!(c.is_err());
    // And the receiver's side when the sender leaves mid-iteration: the client waits for the
    // tree message and must see the disconnect.
    let (s, c) = both_results(
        |_ot, ch| {
            let mut header = [0u8; 8];
            ch.recv_bytes(&mut header)?;
            let mut part = vec![0u8; 8 + 2048 * SET.base_cots().div_ceil(128)];
            ch.recv_bytes(&mut part)?;
            ch.send_u64(0 << 8 | SET.h as u64)?; // the iteration tag, then nothing
            Err(Error::Ot("server gave up".into()))
        },
        |ot, ch| ot.recv_chosen(ch, &[true; 10], 8).map(|_| ()),
    );
    assert!(s.is_err());
    assert!(matches!(c, Err(Error::PeerDisconnected(_)) | Err(Error::Net { .. })), "client: {c:?}");
}
