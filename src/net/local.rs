//! Run both parties of a protocol over real loopback TCP (ephemeral port), one thread each.
//!
//! This is the harness every two-party test and micro-benchmark uses: it returns both
//! parties' outputs and both parties' byte/round counters.

use std::net::TcpListener;
use std::time::Duration;

use super::shaping::{Link, Shaped};
use super::tcp::{accept_with_timeout, connect_with_retry, TcpTransport};
use super::{Channel, CommStats, Metered, TcpChannel};
use crate::error::{Error, Result};

/// Both parties' results and counters.
#[derive(Debug)]
pub struct PairOutput<S, C> {
    pub server: S,
    pub client: C,
    pub server_stats: CommStats,
    pub client_stats: CommStats,
}

/// Options for [`run_pair_with`].
#[derive(Clone, Copy, Debug)]
pub struct PairOptions {
    pub timeout: Duration,
    pub link: Link,
    pub max_frame: usize,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions { timeout: Duration::from_secs(120), link: Link::Unlimited, max_frame: super::DEFAULT_MAX_FRAME }
    }
}

/// Open a connected pair of metered loopback channels `(server, client)`.
pub fn loopback_pair(opts: PairOptions) -> Result<(TcpChannel, TcpChannel)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Net { context: "binding a loopback port".into(), source: e })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Net { context: "reading the loopback port".into(), source: e })?;
    let client_stream = connect_with_retry(&addr.to_string(), 10, Duration::from_millis(20))?;
    let server_stream = accept_with_timeout(&listener, Some(Duration::from_secs(10)))?;
    let wrap = |s| -> Result<TcpChannel> {
        Ok(Metered::new(Shaped::new(TcpTransport::new(s, opts.timeout)?, opts.link)).with_max_frame(opts.max_frame))
    };
    Ok((wrap(server_stream)?, wrap(client_stream)?))
}

/// Run `server` and `client` concurrently over a fresh loopback connection.
///
/// If either party fails, its channel is dropped (closing the socket), so the other party
/// fails quickly with `PeerDisconnected` instead of hanging. The first error is returned,
/// preferring the one that is not a disconnect (the root cause).
pub fn run_pair<S, C, FS, FC>(server: FS, client: FC) -> Result<PairOutput<S, C>>
where
    S: Send,
    C: Send,
    FS: FnOnce(&mut dyn Channel) -> Result<S> + Send,
    FC: FnOnce(&mut dyn Channel) -> Result<C> + Send,
{
    run_pair_with(PairOptions::default(), server, client)
}

pub fn run_pair_with<S, C, FS, FC>(opts: PairOptions, server: FS, client: FC) -> Result<PairOutput<S, C>>
where
    S: Send,
    C: Send,
    FS: FnOnce(&mut dyn Channel) -> Result<S> + Send,
    FC: FnOnce(&mut dyn Channel) -> Result<C> + Send,
{
    let (mut sch, mut cch) = loopback_pair(opts)?;
    let (s_res, c_res) = std::thread::scope(|scope| {
        let s = scope.spawn(move || {
            let r = server(&mut sch).and_then(|v| {
                sch.flush()?;
                Ok(v)
            });
            (r, sch.stats())
        });
        let c = scope.spawn(move || {
            let r = client(&mut cch).and_then(|v| {
                cch.flush()?;
                Ok(v)
            });
            (r, cch.stats())
        });
        (join(s), join(c))
    });
    let ((s_out, server_stats), (c_out, client_stats)) = (s_res?, c_res?);
    match (s_out, c_out) {
        (Ok(server), Ok(client)) => Ok(PairOutput { server, client, server_stats, client_stats }),
        (Err(e), Err(Error::PeerDisconnected(_))) | (Err(Error::PeerDisconnected(_)), Err(e)) => Err(e),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> Result<T> {
    h.join().map_err(|_| Error::protocol("test harness", "a party thread panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_exchange_counts_bytes_and_rounds_exactly() {
        let out = run_pair(
            |ch| {
                ch.send_u64s(&[1, 2, 3])?; // flight 1: 24 bytes
                ch.send_frame(b"hello")?; // same flight: 8 + 5 bytes
                let back = ch.recv_u64()?; // flight 2
                ch.send_packed(&[5, 6, 7, 8], 12)?; // flight 3: 6 bytes
                Ok(back)
            },
            |ch| {
                let v = ch.recv_u64s(3)?;
                let f = ch.recv_frame()?;
                ch.send_u64(v.iter().sum::<u64>() + f.len() as u64)?;
                ch.recv_packed(4, 12)
            },
        )
        .unwrap();
        assert_eq!(out.server, 11);
        assert_eq!(out.client, vec![5, 6, 7, 8]);
        assert_eq!(out.server_stats.bytes_sent, 24 + 13 + 6);
        assert_eq!(out.server_stats.bytes_recv, 8);
        assert_eq!(out.client_stats.bytes_sent, out.server_stats.bytes_recv);
        assert_eq!(out.client_stats.bytes_recv, out.server_stats.bytes_sent);
        assert_eq!(out.server_stats.rounds, 3);
        assert_eq!(out.client_stats.rounds, 3);
    }

    #[test]
    fn oversized_frame_is_rejected_before_allocation() {
        let res = run_pair(
            |ch| {
                ch.send_u64(u64::MAX / 2)?; // a length prefix of ~9 EB
                ch.send_bytes(&[0u8; 16])?;
                ch.recv_u64()
            },
            |ch| ch.recv_frame().map(|v| v.len() as u64),
        );
        match res {
            Err(Error::Protocol { detail, .. }) => assert!(detail.contains("limit"), "{detail}"),
            other => panic!("expected a frame-limit error, got {other:?}"),
        }
    }

    #[test]
    fn peer_failure_is_reported_not_hung() {
        let t0 = std::time::Instant::now();
        let res = run_pair(
            |ch| {
                let _ = ch.recv_u64()?;
                Err::<(), _>(Error::Input("server gave up".into()))
            },
            |ch| {
                ch.send_u64(1)?;
                ch.recv_u64() // the server never answers; its socket closes
            },
        );
        assert!(matches!(res, Err(Error::Input(_))), "{res:?}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn stalled_peer_times_out() {
        let opts = PairOptions { timeout: Duration::from_millis(300), ..Default::default() };
        let res = run_pair_with(
            opts,
            |ch| {
                std::thread::sleep(Duration::from_millis(1200));
                ch.send_u64(1)
            },
            |ch| ch.recv_u64(),
        );
        assert!(matches!(res, Err(Error::Timeout { .. })), "{res:?}");
    }

    #[test]
    fn shaped_link_throughput_is_close_to_configured() {
        let bits_per_sec = 200e6; // 25 MB/s
        let opts = PairOptions { link: Link::Shaped { bits_per_sec, rtt_ms: 0.0 }, ..Default::default() };
        let n = 10 << 20; // 10 MiB
        let out = run_pair_with(
            opts,
            move |ch| {
                let t0 = std::time::Instant::now();
                ch.send_bytes(&vec![7u8; n])?;
                ch.flush()?;
                let _ = ch.recv_u64()?;
                Ok(t0.elapsed())
            },
            move |ch| {
                let mut buf = vec![0u8; n];
                ch.recv_bytes(&mut buf)?;
                ch.send_u64(1)?;
                Ok(())
            },
        )
        .unwrap();
        let measured = (n as f64 * 8.0) / out.server.as_secs_f64();
        let ratio = measured / bits_per_sec;
        // The link never runs faster than configured (an unshaped loopback moves GB/s); it may
        // run slower when the test shares its cores with others, so the lower bound only
        // catches a shaper that throttles far below its rate.
        assert!((0.5..=1.1).contains(&ratio), "throughput {measured:.3e} bit/s vs {bits_per_sec:.3e} (ratio {ratio:.3})");
    }
}
