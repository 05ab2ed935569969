//! TCP transport: TCP_NODELAY, buffered both ways, read/write timeouts, bounded connect retry.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::Transport;
use crate::error::{Error, Result};

const BUF_SIZE: usize = 1 << 20;

pub struct TcpTransport {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    timeout_secs: u64,
}

impl TcpTransport {
    /// Wrap a connected stream, setting NODELAY and both timeouts.
    pub fn new(stream: TcpStream, timeout: Duration) -> Result<TcpTransport> {
        let ctx = |e: io::Error| Error::Net { context: "configuring socket".into(), source: e };
        stream.set_nodelay(true).map_err(ctx)?;
        stream.set_read_timeout(Some(timeout)).map_err(ctx)?;
        stream.set_write_timeout(Some(timeout)).map_err(ctx)?;
        let r = stream.try_clone().map_err(ctx)?;
        Ok(TcpTransport {
            reader: BufReader::with_capacity(BUF_SIZE, r),
            writer: BufWriter::with_capacity(BUF_SIZE, stream),
            timeout_secs: timeout.as_secs().max(1),
        })
    }
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.writer.get_ref().peer_addr().ok()
    }
}

impl Transport for TcpTransport {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.writer.write_all(data)
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
    fn timeout_secs(&self) -> u64 {
        self.timeout_secs
    }
}

/// Connect to `addr`, retrying a bounded number of times (the server may still be starting).
pub fn connect_with_retry(addr: &str, attempts: u32, delay: Duration) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::Input(format!("cannot resolve address `{addr}`: {e}")))?
        .collect();
    let mut last = None;
    for attempt in 0..attempts.max(1) {
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_secs(10)) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        if attempt + 1 < attempts {
            std::thread::sleep(delay);
        }
    }
    Err(Error::Net {
        context: format!("connecting to {addr} ({attempts} attempts)"),
        source: last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
    })
}

/// Accept one connection, giving up after `timeout` (None: wait forever).
pub fn accept_with_timeout(listener: &TcpListener, timeout: Option<Duration>) -> Result<TcpStream> {
    let ctx = |e: io::Error| Error::Net { context: "accepting a connection".into(), source: e };
    let Some(timeout) = timeout else {
        let (s, _) = listener.accept().map_err(ctx)?;
        return Ok(s);
    };
    listener.set_nonblocking(true).map_err(ctx)?;
    let deadline = Instant::now() + timeout;
    let result = loop {
        match listener.accept() {
            Ok((s, _)) => break Ok(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    break Err(Error::Timeout { context: "waiting for the peer to connect".into(), secs: timeout.as_secs() });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => break Err(ctx(e)),
        }
    };
    listener.set_nonblocking(false).map_err(ctx)?;
    let s = result?;
    s.set_nonblocking(false).map_err(ctx)?;
    Ok(s)
}
