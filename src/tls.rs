//! TLS as one more byte-in/byte-out layer (cargo feature `tls`, rustls).
//!
//! [`Session`] wraps a `rustls::ServerConnection`, the state machine the
//! rustls `tlsserver-mio` example drives: the loop gives it the bytes it
//! read from the socket ([`Session::feed`]), gets back the plaintext (which
//! then goes through the same sniffing and framing as a plain
//! connection's bytes) and the TLS records rustls wants sent (handshake
//! messages, alerts), which go into the connection's send queue as they
//! are. Output goes the other way through [`Session::seal`]: plaintext in,
//! records out. No socket is touched here.
//!
//! [`Acceptor`] owns the certificate and key: loaded at start-up (a bad
//! file is an error for the binary to report), reloaded on SIGHUP (a bad
//! file keeps the old ones). It hands each new connection an `Arc` of the
//! current `ServerConfig`, so a reload only affects handshakes that start
//! after it.
//!
//! Built without the feature, the same names exist but no [`Session`] can
//! be made (it is an empty enum), so the loop compiles unchanged and every
//! TLS branch in it is dead code.

use std::path::PathBuf;

/// Handshake reads (a ClientHello, or the client's Finished) processed per
/// loop turn; connections past the cap are read on the next turn, like
/// `unread`. A TLS 1.3 handshake with a P-256 certificate measured 0.6 ms
/// of the loop on this (2-core, shared, loaded) machine: with 32 a turn of
/// a burst took up to 25 ms, so 16 keeps a burst's turns near 10 ms and
/// still admits thousands of handshakes a second (docs/benchmarks.md).
pub const MAX_HANDSHAKES_PER_TURN: usize = 16;

/// rustls's own buffers, per connection: plaintext written before the
/// handshake finishes and records not yet taken by `write_tls` (we take
/// them at once, so this only bounds the pre-handshake greeting), and the
/// received plaintext not yet read (we read it all after every feed).
/// Its default is 64 KiB.
pub const BUFFER_LIMIT: usize = 16 * 1024;

/// What one [`Session::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// Keep going (plaintext and records, if any, were appended).
    Open,
    /// The peer sent close_notify: no more plaintext will come.
    Closed,
    /// A TLS error (not TLS at all, a failed handshake): close, after
    /// sending the alert that was appended to the records.
    Failed(String),
}

#[cfg(feature = "tls")]
mod imp {
    use std::io::{self, Read, Write};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ServerConfig, ServerConnection};

    use super::{BUFFER_LIMIT, Fed};

    /// The certificate and key in force, and where they came from.
    pub struct Acceptor {
        pub(super) cert: PathBuf,
        pub(super) key: PathBuf,
        config: Arc<ServerConfig>,
    }

    impl Acceptor {
        /// Loads `cert` (PEM, the chain, leaf first) and `key` (PEM,
        /// PKCS#8, PKCS#1 or SEC1) and checks that they belong together.
        pub fn load(cert: &Path, key: &Path) -> Result<Acceptor, String> {
            Ok(Acceptor {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                config: server_config(cert, key)?,
            })
        }

        /// Reads the files again (SIGHUP). On error the old certificate
        /// stays in force and the error says why.
        pub fn reload(&mut self) -> Result<(), String> {
            self.config = server_config(&self.cert, &self.key)?;
            Ok(())
        }

        /// A session for a new connection, with the current certificate.
        pub fn session(&self) -> Result<Session, String> {
            let mut conn = ServerConnection::new(Arc::clone(&self.config))
                .map_err(|e| format!("TLS session: {e}"))?;
            conn.set_buffer_limit(Some(BUFFER_LIMIT));
            Ok(Session(Box::new(conn)))
        }
    }

    fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "no certificate (-----BEGIN CERTIFICATE-----) in {}",
                cert.display()
            ));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| {
                format!(
                    "TLS certificate {} and key {} do not work together: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        Ok(Arc::new(config))
    }

    /// One connection's TLS state. Boxed: a `ServerConnection` is about a
    /// kilobyte, and plain connections should not pay for it.
    pub struct Session(Box<ServerConnection>);

    impl std::fmt::Debug for Session {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Session")
        }
    }

    impl Session {
        /// Still in the handshake (the expensive part).
        pub fn handshaking(&self) -> bool {
            self.0.is_handshaking()
        }

        /// Feeds `input` (bytes read from the socket). Plaintext is
        /// appended to `plain`, records to send to `records`.
        pub fn feed(
            &mut self,
            mut input: &[u8],
            plain: &mut Vec<u8>,
            records: &mut Vec<u8>,
        ) -> Fed {
            let mut fed = Fed::Open;
            while !input.is_empty() {
                if let Err(e) = self.0.read_tls(&mut input) {
                    fed = Fed::Failed(format!("TLS read: {e}"));
                    break;
                }
                if let Err(e) = self.0.process_new_packets() {
                    fed = Fed::Failed(format!("TLS: {e}"));
                    break;
                }
                if self.drain_plaintext(plain) {
                    fed = Fed::Closed;
                    break;
                }
            }
            self.take_records(records);
            fed
        }

        /// Reads all decrypted plaintext. Returns `true` on close_notify.
        fn drain_plaintext(&mut self, plain: &mut Vec<u8>) -> bool {
            let mut chunk = [0u8; 4096];
            loop {
                match self.0.reader().read(&mut chunk) {
                    Ok(0) => return true,
                    Ok(n) => plain.extend_from_slice(&chunk[..n]),
                    // WouldBlock: no more for now. UnexpectedEof only
                    // comes after the socket's EOF, which the loop sees.
                    Err(_) => return false,
                }
            }
        }

        /// Encrypts `plaintext`, appending the records to `records`.
        /// rustls takes at most [`BUFFER_LIMIT`] at a time (its records
        /// count against the limit until taken), so this writes and takes
        /// turn about. Fails only if rustls takes nothing even with its
        /// records taken: before the handshake has finished, with more
        /// than [`BUFFER_LIMIT`] of plaintext waiting for it.
        pub fn seal(&mut self, mut plaintext: &[u8], records: &mut Vec<u8>) -> io::Result<()> {
            while !plaintext.is_empty() {
                let n = self.0.writer().write(plaintext)?;
                self.take_records(records);
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                plaintext = &plaintext[n..];
            }
            self.take_records(records);
            Ok(())
        }

        /// close_notify, as records appended to `records`.
        pub fn close(&mut self, records: &mut Vec<u8>) {
            self.0.send_close_notify();
            self.take_records(records);
        }

        fn take_records(&mut self, records: &mut Vec<u8>) {
            while self.0.wants_write() {
                match self.0.write_tls(records) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        }
    }
}

#[cfg(not(feature = "tls"))]
mod imp {
    use std::io;
    use std::path::Path;

    use super::Fed;

    /// Built without TLS: never constructed.
    pub enum Acceptor {}

    impl Acceptor {
        pub fn load(_cert: &Path, _key: &Path) -> Result<Acceptor, String> {
            Err("this loopchat-server was built without the `tls` feature".to_string())
        }
        pub fn reload(&mut self) -> Result<(), String> {
            match *self {}
        }
        pub fn session(&self) -> Result<Session, String> {
            match *self {}
        }
    }

    /// Built without TLS: never constructed.
    #[derive(Debug)]
    pub enum Session {}

    impl Session {
        pub fn handshaking(&self) -> bool {
            match *self {}
        }
        pub fn feed(&mut self, _input: &[u8], _plain: &mut Vec<u8>, _records: &mut Vec<u8>) -> Fed {
            match *self {}
        }
        pub fn seal(&mut self, _plaintext: &[u8], _records: &mut Vec<u8>) -> io::Result<()> {
            match *self {}
        }
        pub fn close(&mut self, _records: &mut Vec<u8>) {
            match *self {}
        }
    }
}

pub use imp::{Acceptor, Session};

/// Whether this binary was built with TLS.
pub const AVAILABLE: bool = cfg!(feature = "tls");

/// Where the certificate and key come from (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// [`Acceptor::load`] of these files.
    pub fn load(&self) -> Result<Acceptor, String> {
        Acceptor::load(&self.cert, &self.key)
    }
}

/// Socket-free: our [`Session`] against a rustls client, bytes passed by
/// hand, with the test certificate in tests/tls_support/ (self-signed,
/// for tests only).
#[cfg(all(test, feature = "tls"))]
mod tests {
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

    use super::{Acceptor, Fed, Session};

    fn support(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tls_support")
            .join(name)
    }

    fn acceptor() -> Acceptor {
        match Acceptor::load(&support("test-cert.pem"), &support("test-key.pem")) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    /// Accepts any certificate: the test only checks the byte plumbing.
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn client() -> ClientConnection {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
    }

    /// Client output fed to the server `step` bytes at a time; returns
    /// the server's plaintext and last `Fed`.
    fn to_server(c: &mut ClientConnection, s: &mut Session, step: usize) -> (Vec<u8>, Fed) {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let (mut plain, mut records) = (Vec::new(), Vec::new());
        let mut fed = Fed::Open;
        for piece in wire.chunks(step) {
            fed = s.feed(piece, &mut plain, &mut records);
            if fed != Fed::Open {
                break;
            }
        }
        // Whatever the server said goes back to the client.
        let mut rd = &records[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
        (plain, fed)
    }

    #[test]
    fn lines_both_ways_in_one_byte_pieces() {
        let mut s = acceptor().session().unwrap();
        let mut c = client();
        assert!(s.handshaking());
        // ClientHello, then the client's Finished and its first bytes.
        to_server(&mut c, &mut s, 1);
        c.writer().write_all(b"alice\nhi\n").unwrap();
        let (plain, fed) = to_server(&mut c, &mut s, 1);
        assert_eq!((plain.as_slice(), fed), (&b"alice\nhi\n"[..], Fed::Open));
        assert!(!s.handshaking());
        let mut records = Vec::new();
        s.seal(b"[bob] hello\n", &mut records).unwrap();
        let mut rd = &records[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
        let mut got = [0u8; 64];
        let n = c.reader().read(&mut got).unwrap();
        assert_eq!(&got[..n], b"[bob] hello\n");
        c.send_close_notify();
        assert_eq!(to_server(&mut c, &mut s, 7).1, Fed::Closed);
    }

    /// More than rustls's buffer limit in one seal (a long /who, the
    /// page's script): all of it, in records, nothing refused.
    #[test]
    fn a_seal_larger_than_the_buffer_limit_goes_out_whole() {
        let mut s = acceptor().session().unwrap();
        let mut c = client();
        to_server(&mut c, &mut s, 4096);
        to_server(&mut c, &mut s, 4096);
        assert!(!s.handshaking());
        let big: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut records = Vec::new();
        s.seal(&big, &mut records).unwrap();
        let mut rd = &records[..];
        let mut got = Vec::new();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = c.reader().read(&mut chunk) {
                got.extend_from_slice(&chunk[..n]);
            }
        }
        assert_eq!(got.len(), big.len());
        assert!(got == big);
    }

    #[test]
    fn plain_text_fails_with_an_alert() {
        let mut s = acceptor().session().unwrap();
        let (mut plain, mut records) = (Vec::new(), Vec::new());
        let fed = s.feed(b"alice\n", &mut plain, &mut records);
        assert!(matches!(fed, Fed::Failed(_)), "{fed:?}");
        assert!(plain.is_empty());
        assert_eq!(records.first(), Some(&0x15), "an alert record");
    }

    #[test]
    fn bad_files_say_why() {
        let err = |cert: &str, key: &str| match Acceptor::load(&support(cert), &support(key)) {
            Ok(_) => panic!("{cert} {key} loaded"),
            Err(e) => e,
        };
        let e = err("missing.pem", "test-key.pem");
        assert!(e.contains("cannot read the TLS certificate"), "{e}");
        let e = err("test-key.pem", "test-key.pem");
        assert!(e.contains("no certificate"), "{e}");
        let e = err("test-cert.pem", "test-cert.pem");
        assert!(e.contains("cannot read the TLS key"), "{e}");
        let e = err("test-cert.pem", "other-key.pem");
        assert!(e.contains("do not work together"), "{e}");
    }

    #[test]
    fn reload_keeps_the_old_config_on_error() {
        let mut a = acceptor();
        assert!(a.reload().is_ok());
        a.key = support("other-key.pem");
        assert!(a.reload().is_err());
        assert!(a.session().is_ok());
    }
}
