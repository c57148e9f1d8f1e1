//! A recording HTTPS front for a plain-HTTP emulator: terminates TLS with its own throw-away CA,
//! passes every byte through unchanged (so SDK-HMAC signatures over the Host header still verify)
//! and writes down the method and path of every request it forwards, faulted or not. The
//! emulator counts calls by route template only; this tells which task id or protection group a
//! DELETE named. HTTP/1.1 only (no ALPN is offered); a request with a chunked body stops the
//! recording of that connection and is reported by [`Recorder::unparsed`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// One request as it went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The path without the query.
    pub path: String,
}

/// The running front; stops when dropped.
pub struct Recorder {
    url: String,
    ca_pem: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    unparsed: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// Listens on a free loopback port and forwards to `upstream` (plain HTTP).
    pub async fn start(upstream: SocketAddr) -> Recorder {
        let (ca_pem, acceptor) = tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the recorder binds loopback");
        let addr = listener.local_addr().expect("the recorder's address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let unparsed = Arc::new(AtomicU64::new(0));
        let (log2, unparsed2) = (log.clone(), unparsed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let (acceptor, log, unparsed) = (acceptor.clone(), log2.clone(), unparsed2.clone());
                tokio::spawn(async move {
                    let Ok(client) = acceptor.accept(client).await else { return };
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    relay(client, server, log, unparsed).await;
                });
            }
        });
        Recorder { url: format!("https://{addr}"), ca_pem, log, unparsed, task }
    }

    /// `https://127.0.0.1:<port>`, for a policy's endpoints.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The CA certificate (PEM) the controller must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The DELETE requests so far.
    pub fn deletes(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == "DELETE").collect()
    }

    /// Connections whose requests could not all be read (chunked bodies); must stay 0 for the
    /// log to be complete.
    pub fn unparsed(&self) -> u64 {
        self.unparsed.load(Ordering::Relaxed)
    }
}

async fn relay(
    client: tokio_rustls::server::TlsStream<TcpStream>,
    server: TcpStream,
    log: Arc<Mutex<Vec<Recorded>>>,
    unparsed: Arc<AtomicU64>,
) {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = server.into_split();
    let down = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    let up = async {
        let mut parser = Parser::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for request in parser.feed(&buf[..n]) {
                log.lock().unwrap_or_else(PoisonError::into_inner).push(request);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        if parser.broken {
            unparsed.fetch_add(1, Ordering::Relaxed);
        }
        let _ = server_write.shutdown().await;
    };
    // Whichever side ends first ends the connection: an emulator that closes without answering
    // (an injected reset) closes the client's connection too.
    tokio::select! {
        () = down => {}
        () = up => {}
    }
}

/// Splits an HTTP/1.1 request stream into requests (heads read, bodies skipped by Content-Length).
#[derive(Default)]
struct Parser {
    pending: Vec<u8>,
    body_left: usize,
    broken: bool,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Recorded> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        self.pending.extend_from_slice(bytes);
        loop {
            if self.body_left > 0 {
                let n = self.body_left.min(self.pending.len());
                self.pending.drain(..n);
                self.body_left -= n;
                if self.body_left > 0 {
                    return out;
                }
            }
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else { return out };
            let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            self.pending.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let mut first = lines.next().unwrap_or_default().split(' ');
            let method = first.next().unwrap_or_default().to_string();
            let target = first.next().unwrap_or_default();
            let path = target.split('?').next().unwrap_or_default().to_string();
            for line in lines {
                let Some((name, value)) = line.split_once(':') else { continue };
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    self.body_left = value.parse().unwrap_or(0);
                } else if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
                    self.broken = true;
                }
            }
            out.push(Recorded { method, path });
            if self.broken {
                return out;
            }
        }
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it; the acceptor offers HTTP/1.1 only.
fn tls() -> (String, TlsAcceptor) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.distinguished_name.push(DnType::CommonName, "taskreaper test recorder CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("parameters");
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("a server key");
    let cert = params.signed_by(&key, &issuer).expect("the server certificate");
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("the server certificate is usable");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_cert.pem(), TlsAcceptor::from(Arc::new(config)))
}
