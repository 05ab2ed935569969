//! TLS under the metered channel (rustls with the ring provider; no OpenSSL).
//!
//! [`TlsTransport`] is a [`Transport`]: the [`super::Metered`] channel above it counts the
//! protocol's bytes exactly as over plain TCP, and a [`WireCounter`] under it counts the bytes
//! that actually cross the socket (records, handshake, alerts), so the TLS overhead is
//! reported apart. The handshake runs when the transport is made, so a wrong CA or a plain
//! peer fails there with a message naming TLS, before any protocol message.
//!
//! Only the server authenticates (a certificate chain checked against the client's
//! `--tls-ca`); the protocol above needs no client identity.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use super::Transport;
use crate::error::{Error, Result};

/// Plaintext bytes buffered before they are sealed into records and written.
const WRITE_BUF: usize = 1 << 20;

/// Bytes on the socket under TLS (shared with the session that reports them).
#[derive(Debug, Default)]
pub struct WireCounter {
    sent: AtomicU64,
    recv: AtomicU64,
}

impl WireCounter {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn recv(&self) -> u64 {
        self.recv.load(Ordering::Relaxed)
    }
}

/// The socket, counting what crosses it.
struct CountingSocket {
    inner: TcpStream,
    counter: Arc<WireCounter>,
}

impl Read for CountingSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.recv.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for CountingSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// A TLS stream with write buffering (one flush seals a flight into as few records as fit).
pub struct TlsTransport {
    stream: Box<dyn Duplex>,
    pending: Vec<u8>,
    timeout_secs: u64,
}

impl Transport for TlsTransport {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= WRITE_BUF {
            self.stream.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.stream.read_exact(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.stream.write_all(&self.pending)?;
            self.pending.clear();
        }
        self.stream.flush()
    }
    fn timeout_secs(&self) -> u64 {
        self.timeout_secs
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(context: String) -> impl Fn(rustls::Error) -> Error {
    move |e| Error::Config(format!("{context}: {e}"))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Input(format!("reading certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Input(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// Server side: the certificate chain and key (PEM files).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| Error::Input(format!("reading the private key {}: {e}", key.display())))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("TLS server configuration".into()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err(format!("TLS certificate {} with its key", cert.display())))?;
    Ok(Arc::new(cfg))
}

/// Client side: trust exactly the CA certificate(s) in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).map_err(tls_err(format!("CA certificate {}", ca.display())))?;
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("TLS client configuration".into()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn socket(stream: TcpStream, timeout: Duration) -> Result<(CountingSocket, Arc<WireCounter>)> {
    let ctx = |e: io::Error| Error::Net { context: "configuring socket".into(), source: e };
    stream.set_nodelay(true).map_err(ctx)?;
    stream.set_read_timeout(Some(timeout)).map_err(ctx)?;
    stream.set_write_timeout(Some(timeout)).map_err(ctx)?;
    let counter = Arc::new(WireCounter::default());
    Ok((CountingSocket { inner: stream, counter: Arc::clone(&counter) }, counter))
}

fn handshake_err(context: String) -> impl Fn(io::Error) -> Error {
    move |e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout { context: context.clone(), secs: 0 },
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            Error::PeerDisconnected(format!("{context} (is the peer speaking TLS?)"))
        }
        _ => Error::Handshake(format!("{context}: {e}")),
    }
}

/// Connect as a TLS client to `host` (the name or IP address the certificate must carry).
pub fn connect(stream: TcpStream, cfg: Arc<ClientConfig>, host: &str, timeout: Duration) -> Result<(TlsTransport, Arc<WireCounter>)> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| Error::Input(format!("`{host}` is not a valid TLS server name: {e}")))?;
    let mut conn = ClientConnection::new(cfg, name).map_err(tls_err("TLS client".into()))?;
    let (mut sock, counter) = socket(stream, timeout)?;
    let context = format!("TLS handshake with {host} (is --tls-ca the CA that signed the server's certificate?)");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(handshake_err(context.clone()))?;
    }
    let stream = Box::new(StreamOwned::new(conn, sock));
    Ok((TlsTransport { stream, pending: Vec::new(), timeout_secs: timeout.as_secs().max(1) }, counter))
}

/// Accept a TLS client on a connected socket.
pub fn accept(stream: TcpStream, cfg: Arc<ServerConfig>, timeout: Duration) -> Result<(TlsTransport, Arc<WireCounter>)> {
    let mut conn = ServerConnection::new(cfg).map_err(tls_err("TLS server".into()))?;
    let (mut sock, counter) = socket(stream, timeout)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(handshake_err("TLS handshake with a client".into()))?;
    }
    let stream = Box::new(StreamOwned::new(conn, sock));
    Ok((TlsTransport { stream, pending: Vec::new(), timeout_secs: timeout.as_secs().max(1) }, counter))
}

/// Files written by [`write_local_pair`].
pub struct LocalPair {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A fresh CA and a server certificate for `names` (DNS names or IP addresses) signed by it,
/// as `ca.pem`, `cert.pem` and `key.pem` (mode 0600) in `dir`. For local use and tests.
pub fn write_local_pair(dir: &Path, names: &[String]) -> Result<LocalPair> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let gen = |e: rcgen::Error| Error::Config(format!("making the certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(gen)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(DnType::CommonName, "fastlmpi local CA");
    let ca = ca_params.self_signed(&ca_key).map_err(gen)?;
    let key = KeyPair::generate().map_err(gen)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(gen)?;
    params.distinguished_name.push(DnType::CommonName, "fastlmpi server");
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(gen)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let pair = LocalPair { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&pair.ca, ca.pem()).map_err(|e| Error::io(&pair.ca, e))?;
    std::fs::write(&pair.cert, cert.pem()).map_err(|e| Error::io(&pair.cert, e))?;
    write_private(&pair.key, &key.serialize_pem())?;
    Ok(pair)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(tag: &str) -> LocalPair {
        let dir = std::env::temp_dir().join(format!("fastlmpi-tls-{tag}-{}", std::process::id()));
        write_local_pair(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap()
    }

    /// Echo one message over TLS; returns the client's result.
    fn exchange(server: &LocalPair, ca: &Path) -> Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let scfg = server_config(&server.cert, &server.key).unwrap();
        let srv = std::thread::spawn(move || -> Result<()> {
            let (s, _) = listener.accept().unwrap();
            let (mut t, _) = accept(s, scfg, Duration::from_secs(5))?;
            let mut buf = [0u8; 5];
            t.read_exact(&mut buf).map_err(|e| Error::Net { context: "echo".into(), source: e })?;
            t.write_all(&buf).and_then(|_| t.flush()).map_err(|e| Error::Net { context: "echo".into(), source: e })
        });
        let ccfg = client_config(ca)?;
        let result = (|| {
            let (mut t, wire) = connect(TcpStream::connect(addr).unwrap(), ccfg, "127.0.0.1", Duration::from_secs(5))?;
            t.write_all(b"hello").and_then(|_| t.flush()).map_err(|e| Error::Net { context: "echo".into(), source: e })?;
            let mut back = [0u8; 5];
            t.read_exact(&mut back).map_err(|e| Error::Net { context: "echo".into(), source: e })?;
            assert!(wire.sent() > 5 && wire.recv() > 5, "the wire counter sees records and the handshake");
            Ok(back.to_vec())
        })();
        let _ = srv.join();
        result
    }

    #[test]
    fn tls_round_trip_and_wrong_ca_is_refused() {
        let good = pair("good");
        assert_eq!(exchange(&good, &good.ca).unwrap(), b"hello");
        let other = pair("other");
        let err = exchange(&good, &other.ca).unwrap_err().to_string();
        assert!(err.contains("TLS handshake") && err.contains("--tls-ca"), "{err}");
    }
}
