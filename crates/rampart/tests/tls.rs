//! Native TLS (`http.tls`) on the real binary, with a certificate authority and leaves generated
//! here (rcgen) and real clients: rustls limited to one protocol version, and OpenSSL's `s_client`
//! for the versions rustls cannot offer.
//!
//! What is proven: TLS 1.2 and 1.3 handshakes succeed with forward-secret AEAD suites and serve
//! exactly the configured chain (NIST SP 800-52r2 §3.1 and §3.3.1; RFC 8446); TLS 1.0 and 1.1
//! client hellos, which this machine's OpenSSL completes against a server that allows them, are
//! answered by Rampart with a fatal alert and nothing else (RFC 8996; OWASP Transport Layer
//! Security Cheat Sheet); plain HTTP on the TLS port gets no HTTP answer; a
//! renewed certificate is served after SIGHUP without a restart, and a renewal whose key does not
//! match its certificate leaves the current one in place, as it is refused at start-up.

mod support;

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{ProtocolVersion, SupportedProtocolVersion};
use sha2::{Digest as _, Sha256};

/// How long a single connection may take before the test fails (a bound on failure, never a
/// pause: every read returns as soon as the server answers or closes).
const IO_BOUND: Duration = Duration::from_secs(10);
/// How long the server may take to act on a SIGHUP before the test fails.
const RELOAD_BOUND: Duration = Duration::from_secs(20);

const RELOADED: &str = "tls certificate reloaded";
const RELOAD_FAILED: &str = "tls certificate reload failed; the previous certificate stays in use";

/// A throwaway certificate authority and the files the server reads.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// A leaf for `localhost` and 127.0.0.1, its chain as served (leaf, then the CA) and its key.
struct Leaf {
    chain_pem: String,
    chain_der: Vec<Vec<u8>>,
    key_pem: String,
}

impl Leaf {
    fn der(&self) -> &[u8] {
        &self.chain_der[0]
    }
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Rampart test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("tls/chain.pem");
        let key_path = dir.path().join("tls/key.pem");
        std::fs::create_dir_all(cert_path.parent().unwrap()).unwrap();
        Pki { dir, ca, cert_path, key_path }
    }

    fn leaf(&self, serial: &str) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("localhost ({serial})"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.ca.pem()),
            chain_der: vec![cert.der().to_vec(), self.ca.der().to_vec()],
            key_pem: key.serialize_pem(),
        }
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Writes the files as a renewal tool does: each one replaced whole (write, then rename).
    fn install(&self, chain_pem: &str, key_pem: &str) {
        replace(&self.cert_path, chain_pem);
        replace(&self.key_path, key_pem);
    }

    /// `rampart serve` with `http.tls` naming the files, in its own directory (embedded SQLite).
    fn command(&self) -> Command {
        let mut cmd = support::rampart(self.dir.path());
        cmd.env("RAMPART__HTTP__TLS__CERT_PATH", &self.cert_path).env("RAMPART__HTTP__TLS__KEY_PATH", &self.key_path);
        cmd
    }
}

fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The running server's socket address (the support module names it as an http URL).
fn address(server: &support::Server) -> SocketAddr {
    server.base_url.trim_start_matches("http://").parse().unwrap()
}

fn start(pki: &Pki) -> support::Server {
    let server = support::serve(pki.command()).unwrap_or_else(|(code, log)| panic!("exit {code}: {log}"));
    assert!(server.log.join("\n").contains("rampart listening on https://"), "{}", server.log.join("\n"));
    server
}

/// What one TLS connection saw: the negotiated version and suite, the chain the server sent and
/// the HTTP answer to `GET /healthz`.
#[derive(Debug)]
struct Exchange {
    version: ProtocolVersion,
    suite: String,
    chain: Vec<Vec<u8>>,
    answer: String,
}

/// Connects with rustls offering only `version`, trusting only the test CA, and asks for
/// `/healthz` over the connection.
fn https_get(
    addr: SocketAddr,
    server_name: &str,
    version: &'static SupportedProtocolVersion,
    ca: CertificateDer<'static>,
) -> Result<Exchange, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(IO_BOUND)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("handshake or request: {e}"))?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // A server that closes after its answer without close_notify still answered.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(format!("reading the answer: {e}")),
    }
    let chain = tls.conn.peer_certificates().unwrap_or_default().iter().map(|c| c.to_vec()).collect();
    Ok(Exchange {
        version: tls.conn.protocol_version().unwrap(),
        suite: format!("{:?}", tls.conn.negotiated_cipher_suite().unwrap().suite()),
        chain,
        answer: String::from_utf8_lossy(&answer).into_owned(),
    })
}

/// The path of `openssl`, or a failure naming the package that provides it.
fn openssl() -> &'static str {
    let found = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the TLS version tests need the openssl command line tool: apt-get install -y openssl (.ci/run installs it)"
    );
    "openssl"
}

/// `openssl s_client` offering only the protocol `flag` (`-tls1`, `-tls1_1`), with the security
/// level lowered so this OpenSSL is willing to send such a client hello. Returns the exit status's
/// success and the whole output.
fn s_client(addr: SocketAddr, flag: &str) -> (bool, String) {
    let out = Command::new(openssl())
        .args(["s_client", "-connect", &addr.to_string(), "-servername", "localhost", flag])
        .args(["-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// An `openssl s_server` that accepts only the protocol `flag`, for one connection: the control
/// that shows this machine's client really offers and completes that version.
struct LegacyServer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl LegacyServer {
    fn start(pki: &Pki, flag: &str) -> LegacyServer {
        let mut child = Command::new(openssl())
            .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", flag])
            .args(["-cipher", "DEFAULT@SECLEVEL=0", "-cert"])
            .arg(&pki.cert_path)
            .arg("-key")
            .arg(&pki.key_path)
            // s_server stops when its standard input ends, so it stays open until the child ends.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("s_server said where it listens").unwrap();
            if let Some(addr) = line.strip_prefix("ACCEPT ") {
                break addr.parse().unwrap();
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        LegacyServer { child, addr }
    }
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_1_2_and_1_3_handshakes_succeed_with_forward_secret_aead_suites_and_serve_the_configured_chain() {
    let pki = Pki::new();
    let leaf = pki.leaf("first");
    pki.install(&leaf.chain_pem, &leaf.key_pem);
    let server = start(&pki);
    let addr = address(&server);

    for (version, expected) in [(&TLS12, ProtocolVersion::TLSv1_2), (&TLS13, ProtocolVersion::TLSv1_3)] {
        // By name and by address: the leaf carries both, and the client checks it against the CA.
        for server_name in ["localhost", "127.0.0.1"] {
            let seen = https_get(addr, server_name, version, pki.ca_der())
                .unwrap_or_else(|e| panic!("{expected:?} to {server_name}: {e}"));
            assert_eq!(seen.version, expected);
            assert!(seen.answer.starts_with("HTTP/1.1 200"), "{expected:?}: {}", seen.answer);
            assert_eq!(
                seen.chain,
                leaf.chain_der,
                "{expected:?}: served leaf {} instead of the configured {}",
                seen.chain.first().map(|c| sha256(c)).unwrap_or_default(),
                sha256(leaf.der())
            );
            // NIST SP 800-52r2 §3.3.1: ephemeral (EC)DHE key exchange and AEAD. TLS 1.3 suites are
            // all both (RFC 8446 §9.1); TLS 1.2 ones must say so in their name.
            let fine = match expected {
                ProtocolVersion::TLSv1_2 => {
                    seen.suite.contains("ECDHE") && (seen.suite.contains("GCM") || seen.suite.contains("CHACHA20"))
                }
                _ => seen.suite.starts_with("TLS13_"),
            };
            assert!(fine, "{expected:?} negotiated {}", seen.suite);
        }
    }
}

#[test]
fn tls_1_0_and_1_1_are_refused_with_a_fatal_alert_although_this_client_completes_them_with_a_legacy_server() {
    let pki = Pki::new();
    let leaf = pki.leaf("first");
    pki.install(&leaf.chain_pem, &leaf.key_pem);
    let server = start(&pki);
    let addr = address(&server);

    // The same client, flags and security level complete TLS 1.2 with Rampart: what differs below
    // is the protocol version alone.
    let (ok, out) = s_client(addr, "-tls1_2");
    assert!(ok && out.contains("Protocol  : TLSv1.2\n"), "-tls1_2 against rampart: {out}");

    for (flag, shown) in [("-tls1", "TLSv1\n"), ("-tls1_1", "TLSv1.1\n")] {
        // The control: this client completes that version with a server that allows it, so a
        // refusal below is the server's, not the client's inability to offer it.
        let legacy = LegacyServer::start(&pki, flag);
        let (ok, out) = s_client(legacy.addr, flag);
        assert!(ok && out.contains(&format!("Protocol  : {shown}")), "{flag} against s_server: {out}");
        drop(legacy);

        let (ok, out) = s_client(addr, flag);
        assert!(!ok, "{flag}: the handshake must fail: {out}");
        assert!(out.contains("Cipher is (NONE)"), "{flag}: no session may be negotiated: {out}");
        // The server answered the client hello with one fatal alert record (5-byte header, level
        // and description; RFC 8446 §5.1, §6) and nothing else: no server hello, no certificate.
        assert!(out.contains("SSL handshake has read 7 bytes"), "{flag}: {out}");
        // OpenSSL names a received alert "… alert <description>" with its number. rustls refuses
        // a TLS 1.0/1.1 hello with handshake_failure (40), because such a hello cannot carry the
        // signature_algorithms extension it requires (RFC 5246 §7.4.1.4.1); a hello that had one
        // would get protocol_version (70; RFC 8446 §4.2.1). Either is the server refusing.
        let refused = (out.contains("alert handshake failure") && out.contains("alert number 40"))
            || (out.contains("alert protocol version") && out.contains("alert number 70"));
        assert!(refused, "{flag}: no fatal alert from the server: {out}");
    }

    // The refusals cost the server nothing: TLS 1.3 still works.
    let seen = https_get(addr, "localhost", &TLS13, pki.ca_der()).unwrap();
    assert!(seen.answer.starts_with("HTTP/1.1 200"), "{}", seen.answer);
}

#[test]
fn plain_http_on_the_tls_port_gets_no_http_answer_and_the_connection_is_closed() {
    let pki = Pki::new();
    let leaf = pki.leaf("first");
    pki.install(&leaf.chain_pem, &leaf.key_pem);
    let server = start(&pki);
    let addr = address(&server);

    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_BOUND)).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let closed = match tcp.read_to_end(&mut answer) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
                "the server must close the connection, not leave it open: {e}"
            );
            true
        }
    };
    assert!(closed);
    assert!(!answer.starts_with(b"HTTP/"), "an HTTP answer on the TLS port: {}", String::from_utf8_lossy(&answer));
    // Nothing at all, or a TLS alert record (content type 21, RFC 8446 §5.1) and nothing else.
    assert!(answer.is_empty() || (answer[0] == 21 && answer.len() <= 7), "not a TLS alert: {answer:?}");

    let seen = https_get(addr, "localhost", &TLS13, pki.ca_der()).unwrap();
    assert!(seen.answer.starts_with("HTTP/1.1 200"), "{}", seen.answer);
}

#[test]
fn a_renewed_certificate_is_served_after_sighup_without_a_restart_and_a_broken_renewal_changes_nothing() {
    let pki = Pki::new();
    let first = pki.leaf("first");
    pki.install(&first.chain_pem, &first.key_pem);
    let mut server = start(&pki);
    let addr = address(&server);
    let served = |version| https_get(addr, "localhost", version, pki.ca_der()).unwrap().chain;
    assert_eq!(served(&TLS13), first.chain_der);
    let hangup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());

    // A renewal half done (the new chain beside the old key) is refused and the first stays.
    let renewed = pki.leaf("renewed");
    pki.install(&renewed.chain_pem, &first.key_pem);
    hangup(server.pid());
    let failed =
        server.wait_for_log(RELOAD_FAILED, RELOAD_BOUND).unwrap_or_else(|| panic!("{}", server.log.join("\n")));
    assert!(failed["error"].as_str().unwrap_or_default().contains("key.pem"), "{failed}");
    assert_eq!(served(&TLS13), first.chain_der, "a broken renewal replaced the certificate");
    assert_eq!(served(&TLS12), first.chain_der);

    // The complete renewal is read on the next SIGHUP.
    pki.install(&renewed.chain_pem, &renewed.key_pem);
    hangup(server.pid());
    let reloaded = server.wait_for_log(RELOADED, RELOAD_BOUND).unwrap_or_else(|| panic!("{}", server.log.join("\n")));
    assert_eq!(reloaded["tls.cert_sha256"], sha256(renewed.der()), "{reloaded}");
    // The acceptor takes the new configuration between two connections; a connection already
    // being accepted as the log line was written may still get the first one, so this waits for
    // the change with a bound, and never sees anything but the two chains.
    let deadline = Instant::now() + RELOAD_BOUND;
    loop {
        let chain = served(&TLS13);
        if chain == renewed.chain_der {
            break;
        }
        assert_eq!(chain, first.chain_der, "neither the first nor the renewed chain");
        assert!(Instant::now() < deadline, "the renewed certificate was not served within {RELOAD_BOUND:?}");
    }
    assert_eq!(served(&TLS12), renewed.chain_der);

    // Still the same process: it was never restarted.
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert_eq!(log.matches("rampart listening").count(), 1, "{log}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused_at_start_up_naming_both_files() {
    let pki = Pki::new();
    let (leaf, other) = (pki.leaf("first"), pki.leaf("other"));
    pki.install(&leaf.chain_pem, &other.key_pem);
    let (code, log) = support::serve(pki.command()).err().expect("a mismatched key must stop the server");
    assert_ne!(code, 0, "{log}");
    assert!(!log.contains("rampart listening"), "{log}");
    assert!(log.contains("tls/key.pem") && log.contains("tls/chain.pem"), "{log}");
}
