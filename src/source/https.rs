//! HTTPS and basic auth for the sources that read HTTP APIs (Marathon, Mesos masters):
//! the rustls client setup, trusting a configured `ca_file` alone or else the system's
//! roots, and the handshake with an error that says what the certificate must satisfy.
//! Sources connect themselves (a fresh connection per request) and hand the stream here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::header::HeaderValue;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
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
    pub fn new(ca_file: Option<&Path>, section: &str) -> Result<TlsClient, String> {
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(tls_config(ca_file, section)?)),
            trusts: match ca_file {
                Some(file) => format!("a CA in ca_file {}", file.display()),
                None => format!("a system root (or set [{section}] ca_file)"),
            },
        })
    }

    /// The TLS handshake on `stream` for server `host` (a name or an IP address, which
    /// the certificate must name), within `timeout`.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
        tokio::time::timeout(timeout, self.connector.connect(name, stream))
            .await
            .map_err(|_| format!("no TLS handshake within {timeout:?}"))?
            .map_err(|e| tls_failure(&e, &self.trusts))
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

/// Why a TLS handshake failed, with a hint when the certificate is the problem.
fn tls_failure(e: &std::io::Error, trusts: &str) -> String {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    let hint = if certificate {
        format!(" (the certificate must name the URL's host and chain to {trusts})")
    } else {
        String::new()
    };
    format!("TLS handshake: {e}{hint}")
}

/// The rustls client setup for https URLs: trusting `ca_file` alone when given, else the
/// system's roots.
fn tls_config(ca_file: Option<&Path>, section: &str) -> Result<rustls::ClientConfig, String> {
    let roots = match ca_file {
        Some(file) => roots_from_pem(file)?,
        None => system_roots(section)?,
    };
    // The provider is named, not taken from the process default, so that no other crate's
    // choice of default can change (or panic) what this client uses.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Every certificate of a PEM bundle, as trust roots; at least one is required.
fn roots_from_pem(file: &Path) -> Result<RootCertStore, String> {
    let name = file.display();
    let pem = std::fs::read(file).map_err(|e| format!("cannot read ca_file {name}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert =
            cert.map_err(|e| format!("ca_file {name}: certificate {} unreadable: {e}", i + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {name}: certificate {} unusable: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "ca_file {name} holds no certificate (expected PEM blocks \
             -----BEGIN CERTIFICATE-----)"
        ));
    }
    debug!(ca_file = %name, certificates = roots.len(), "loaded a CA bundle");
    Ok(roots)
}

/// The operating system's trust roots (as `rustls-native-certs` finds them, honouring
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`).
fn system_roots(section: &str) -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(format!(
            "https URLs in [{section}]: no system root certificate could be loaded ({}); \
             set [{section}] ca_file to the CA that signed the servers' certificates",
            if errors.is_empty() {
                "none found".to_string()
            } else {
                errors.join("; ")
            }
        ));
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
        let e = roots_from_pem(&empty).unwrap_err();
        assert!(e.contains(&empty.display().to_string()), "{e}");
        assert!(e.contains("no certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = TlsClient::new(Some(&missing), "mesos").unwrap_err();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("cannot read ca_file"), "{e}");
    }
}
