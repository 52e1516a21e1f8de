//! The one HTTP client path of Drover: [`Get`], one GET over a fresh connection, used by
//! the Marathon client, the Mesos poll and the health probes. It holds what they share:
//! the connection (TCP, TLS when the target is https), basic auth, the step timeouts, and
//! [`read_body`] with a size limit. Each caller keeps its own headers, its reading of the
//! answer, and its words for errors.
//!
//! TLS: the rustls client setup, trusting a configured `ca_file` alone or else the system's
//! roots, and the handshake with an error that says what the certificate must satisfy.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
#[cfg(test)]
use http_body_util::Empty;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

/// A TLS client setup, made once per source configuration (loading roots is slow).
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    /// What the certificate must chain to, in words for errors: the ca_file, or a system root.
    trusts: String,
}

// By hand: tokio-rustls has no `Debug` for the connector.
impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("trusts", &self.trusts)
            .finish()
    }
}

impl TlsClient {
    /// Trusts the certificates of `ca_file` alone when given, else the system's roots;
    /// `section` (`marathon`, `mesos`) names the config section in errors.
    pub fn new(ca_file: Option<&Path>, section: &str) -> Result<TlsClient, TlsSetupError> {
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(tls_config(ca_file, section)?)),
            trusts: match ca_file {
                Some(file) => format!("a CA in ca_file {}", file.display()),
                None => format!("a system root (or set [{section}] ca_file)"),
            },
        })
    }

    /// The TLS handshake on `stream` for server `host` (a name or an IP address, which
    /// the certificate must name), within `timeout` when one is set.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
        timeout: Option<Duration>,
    ) -> Result<TlsStream<TcpStream>, GetError> {
        let name =
            ServerName::try_from(host.to_string()).map_err(|source| GetError::ServerName {
                host: host.to_string(),
                source,
            })?;
        within(timeout, self.connector.connect(name, stream))
            .await
            .map_err(GetError::TlsTimeout)?
            .map_err(|e| tls_failure(e, &self.trusts))
    }
}

/// Why the TLS client setup failed: the operator's `ca_file`, or the host's trust store.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read ca_file {file}: {source}")]
    ReadCaFile {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `index` counts from 1, as an operator counts the blocks of the file.
    #[error("ca_file {file}: certificate {index} unreadable: {source}")]
    Unreadable {
        file: PathBuf,
        index: usize,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("ca_file {file}: certificate {index} unusable: {source}")]
    Unusable {
        file: PathBuf,
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "ca_file {file} holds no certificate (expected PEM blocks -----BEGIN CERTIFICATE-----)"
    )]
    NoCertificate { file: PathBuf },
    /// `found` lists why each system root failed to load, or says none was found.
    #[error(
        "https URLs in [{section}]: no system root certificate could be loaded ({found}); \
         set [{section}] ca_file to the CA that signed the servers' certificates"
    )]
    NoSystemRoots { section: String, found: String },
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
}

// === One GET ===

/// One GET over a fresh connection. Nothing is pooled: a source reads a few times a minute
/// (Marathon's event stream holds its own connection), and a probe must open a new
/// connection to prove anything.
#[derive(Debug, Clone, Copy)]
pub struct Get<'a> {
    /// `host:port` (or an IP address and port) to connect to.
    pub authority: &'a str,
    /// Over TLS, to a server whose certificate must name the `&str`; plain TCP when `None`.
    pub tls: Option<(&'a TlsClient, &'a str)>,
    /// Sent as `Authorization` (see [`basic_auth`]).
    pub auth: Option<&'a HeaderValue>,
    /// Bounds each step on its own: the connect, the TLS handshake, the response head.
    /// `None` when the caller bounds the whole exchange instead.
    pub step_timeout: Option<Duration>,
}

/// What a request may carry: nothing for a GET (`Empty`), a whole body for a POST (`Full`).
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// Why a GET failed, by step, in the words its callers have always logged. A caller's own
/// refusals (a status, a body it cannot decode) are its own error type; see [`Get::send`].
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{host:?} is not a valid TLS server name: {source}")]
    ServerName {
        host: String,
        #[source]
        source: InvalidDnsNameError,
    },
    #[error("no TLS handshake within {0:?}")]
    TlsTimeout(Duration),
    /// `trusts` is set when the server's certificate was refused: what it must chain to.
    #[error("TLS handshake: {source}{}", certificate_hint(.trusts.as_deref()))]
    Tls {
        #[source]
        source: std::io::Error,
        trusts: Option<String>,
    },
    #[error("handshake: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("no answer within {0:?}")]
    AnswerTimeout(Duration),
    #[error("request: {0}")]
    Request(#[source] hyper::Error),
    #[error("reading the body: {0}")]
    Body(#[source] BodyError),
}

/// Why [`read_body`] gave no body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the caller's limit: a runaway or hostile answer.
    #[error("length limit exceeded")]
    TooLarge { limit: usize },
    /// The connection failed while the body was read.
    #[error("{0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn certificate_hint(trusts: Option<&str>) -> String {
    trusts
        .map(|trusts| format!(" (the certificate must name the URL's host and chain to {trusts})"))
        .unwrap_or_default()
}

// === impl Get ===

impl Get<'_> {
    /// Connects, sends `request` (with `auth` added) and hands the answer to `read`. The
    /// connection is driven inside this future until `read` is done, so dropping the
    /// future (a caller's timeout) closes the socket. After a successful `read` it runs on
    /// in the background for as long as a body `read` left unread still needs it.
    ///
    /// The error is the caller's type `E`: a [`GetError`] for a failed step, or whatever
    /// `read` refused the answer with, so a caller matches on one enum.
    pub async fn send<B, T, E, F, Fut>(self, mut request: Request<B>, read: F) -> Result<T, E>
    where
        B: RequestBody,
        E: From<GetError>,
        F: FnOnce(Response<Incoming>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(auth) = self.auth {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        let stream = within(self.step_timeout, TcpStream::connect(self.authority))
            .await
            .map_err(GetError::ConnectTimeout)?
            .map_err(GetError::Connect)?;
        let _ = stream.set_nodelay(true);
        match self.tls {
            None => exchange(stream, request, self.step_timeout, read).await,
            Some((tls, host)) => {
                let stream = tls.connect(host, stream, self.step_timeout).await?;
                exchange(stream, request, self.step_timeout, read).await
            }
        }
    }
}

/// The HTTP/1 request and answer on an open connection (plain or TLS).
async fn exchange<S, B, T, E, F, Fut>(
    stream: S,
    request: Request<B>,
    head_timeout: Option<Duration>,
    read: F,
) -> Result<T, E>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: RequestBody,
    E: From<GetError>,
    F: FnOnce(Response<Incoming>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let (mut sender, mut connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(GetError::Handshake)?;
    let mut exchange = pin!(async move {
        let response = within(head_timeout, sender.send_request(request))
            .await
            .map_err(GetError::AnswerTimeout)?
            .map_err(GetError::Request)?;
        // One request per connection: without a sender it closes once the answer is read.
        drop(sender);
        read(response).await
    });
    tokio::select! {
        biased;
        outcome = &mut exchange => {
            if outcome.is_ok() {
                // A body `read` left unread (an event stream) still needs the connection.
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            return outcome;
        }
        _ = &mut connection => {}
    }
    // The connection ended first. hyper has handed the exchange its answer or its error;
    // dropping the connection closes whatever the exchange still waits on.
    drop(connection);
    exchange.await
}

/// `fut`, or `Err(limit)` when it takes longer than `limit`; no bound when `limit` is `None`.
async fn within<F: Future>(limit: Option<Duration>, fut: F) -> Result<F::Output, Duration> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut).await.map_err(|_| limit),
        None => Ok(fut.await),
    }
}

/// The whole body, refusing more than `limit` bytes (a guard against a runaway or hostile
/// answer).
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e)),
    }
}

/// The `Authorization` value of HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> HeaderValue {
    let token = STANDARD.encode(format!("{user}:{password}"));
    let mut value =
        HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header");
    // Kept out of debug output and HPACK tables.
    value.set_sensitive(true);
    value
}

/// Why a TLS handshake failed, with what the certificate must chain to when it is the problem.
fn tls_failure(source: std::io::Error, trusts: &str) -> GetError {
    let certificate = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    GetError::Tls {
        source,
        trusts: certificate.then(|| trusts.to_string()),
    }
}

/// The rustls client setup for https URLs: trusting `ca_file` alone when given, else the
/// system's roots.
fn tls_config(
    ca_file: Option<&Path>,
    section: &str,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let roots = match ca_file {
        Some(file) => roots_from_pem(file)?,
        None => system_roots(section)?,
    };
    // The provider is named, not taken from the process default, so that no other crate's
    // choice of default can change (or panic) what this client uses.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Every certificate of a PEM bundle, as trust roots; at least one is required.
fn roots_from_pem(file: &Path) -> Result<RootCertStore, TlsSetupError> {
    let pem = std::fs::read(file).map_err(|source| TlsSetupError::ReadCaFile {
        file: file.to_path_buf(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|source| TlsSetupError::Unreadable {
            file: file.to_path_buf(),
            index: i + 1,
            source,
        })?;
        roots.add(cert).map_err(|source| TlsSetupError::Unusable {
            file: file.to_path_buf(),
            index: i + 1,
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            file: file.to_path_buf(),
        });
    }
    debug!(ca_file = %file.display(), certificates = roots.len(), "loaded a CA bundle");
    Ok(roots)
}

/// The operating system's trust roots (as `rustls-native-certs` finds them, honouring
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`).
fn system_roots(section: &str) -> Result<RootCertStore, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(TlsSetupError::NoSystemRoots {
            section: section.to_string(),
            found: if errors.is_empty() {
                "none found".to_string()
            } else {
                errors.join("; ")
            },
        });
    }
    for e in &found.errors {
        warn!(error = %e, "some system root certificates could not be loaded");
    }
    info!(
        roots = added,
        ignored, section, "loaded the system root certificates for https URLs"
    );
    Ok(roots)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn basic_auth_headers_are_unchanged() {
        // What the hand-written encoder this replaced gave (it matched the base64 crate on
        // 1,500 random inputs of 0 to 299 bytes): no padding, one `=`, two, and UTF-8.
        for (user, password, want) in [
            ("a", "b", "Basic YTpi"),
            ("ab", "cd", "Basic YWI6Y2Q="),
            ("ab", "c", "Basic YWI6Yw=="),
            ("", "", "Basic Og=="),
            (
                "Aladdin",
                "open sesame",
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            ),
            (
                "mesos-principal",
                "pässwörd ✓\t",
                "Basic bWVzb3MtcHJpbmNpcGFsOnDDpHNzd8O2cmQg4pyTCQ==",
            ),
        ] {
            let value = basic_auth(user, password);
            assert_eq!(value, want, "{user:?}:{password:?}");
            assert!(value.is_sensitive());
        }
    }

    /// A self-signed CA certificate in PEM.
    pub(crate) fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_ca_file_with_certificates_becomes_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, format!("{}\n{}", ca_pem(), ca_pem())).unwrap();
        assert_eq!(roots_from_pem(&file).unwrap().len(), 2);
        let tls = TlsClient::new(Some(&file), "mesos").unwrap();
        assert!(tls.trusts.contains("ca.pem"), "{tls:?}");
    }

    #[test]
    fn an_empty_or_missing_ca_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = roots_from_pem(&empty).unwrap_err().to_string();
        assert!(e.contains(&empty.display().to_string()), "{e}");
        assert!(e.contains("no certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = TlsClient::new(Some(&missing), "mesos").unwrap_err();
        assert!(matches!(e, TlsSetupError::ReadCaFile { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("cannot read ca_file"), "{e}");
    }

    /// A server that reads whatever comes and never answers; its end of each connection
    /// comes back through the channel.
    async fn silent_server() -> (String, tokio::sync::mpsc::Receiver<TcpStream>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = tx.send(stream).await;
            }
        });
        (addr, rx)
    }

    fn request() -> Request<Empty<Bytes>> {
        Request::get("/").body(Empty::new()).unwrap()
    }

    #[tokio::test]
    async fn a_step_timeout_names_the_step_and_auth_is_sent() {
        let (addr, mut accepted) = silent_server().await;
        let auth = basic_auth("a", "b");
        let get = Get {
            authority: &addr,
            tls: None,
            auth: Some(&auth),
            step_timeout: Some(Duration::from_millis(100)),
        };
        let e = get
            .send(request(), |r| async { Ok::<_, GetError>(r) })
            .await
            .unwrap_err();
        assert!(matches!(e, GetError::AnswerTimeout(_)), "{e:?}");
        assert_eq!(e.to_string(), "no answer within 100ms");
        let mut server = accepted.recv().await.unwrap();
        let mut head = vec![0; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut server, &mut head)
            .await
            .unwrap();
        let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
        assert!(head.contains("authorization: basic ytpi\r\n"), "{head}");
    }

    #[tokio::test]
    async fn dropping_a_get_closes_its_socket() {
        let (addr, mut accepted) = silent_server().await;
        let get = Get {
            authority: &addr,
            tls: None,
            auth: None,
            step_timeout: None,
        };
        let sent = get.send(request(), |r| async { Ok::<_, GetError>(r) });
        // The caller's bound on the whole exchange, as the Mesos poll and the probes have.
        assert!(tokio::time::timeout(Duration::from_millis(100), sent)
            .await
            .is_err());
        let mut server = accepted.recv().await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut server, &mut rest);
        let closed = tokio::time::timeout(Duration::from_secs(5), read).await;
        assert!(
            matches!(closed, Ok(Ok(_))),
            "the client end is closed: {closed:?}"
        );
        assert!(rest.starts_with(b"GET / HTTP/1.1\r\n"));
    }
}
