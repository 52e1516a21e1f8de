//! TLS for the `[https]` listener: the certificates of a watched directory, chosen per
//! handshake by SNI, and reloaded on change or SIGHUP without touching open connections.
//!
//! - The directory holds `NAME.pem` (the chain, then the key) or `NAME.crt` + `NAME.key`.
//! - SNI picks a certificate by its names (subjectAltName DNS entries, else the subject CN):
//!   an exact name first, then a wildcard `*.example.com` for one label under it; anything
//!   else, and a hello without SNI, gets the default: `default.pem`/`default.crt` if present,
//!   else the first certificate by file name.
//! - SNI only chooses the certificate. Requests are routed by their `Host` afterwards, as on
//!   :80, so HTTP/2 connection reuse across names cannot misroute.
//! - A reload replaces the whole set with one store. A file that does not load keeps its
//!   previous certificate (if there was one), logged and counted; a removed file goes.
//! - `drover_tls_cert_not_after_timestamp_seconds{cert}` tells when each one expires.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::metrics::Metrics;

/// The ALPN protocols offered, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The file stem of the certificate used when SNI matches nothing.
const DEFAULT_NAME: &str = "default";

/// One loaded certificate.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names it is valid for (`*.example.com` for wildcards).
    pub names: Vec<String>,
    /// Unix time of `notAfter`.
    pub not_after: i64,
}

/// Every certificate of the directory, indexed for SNI.
#[derive(Debug, Default)]
pub struct CertSet {
    /// By file stem.
    pub certs: BTreeMap<String, Arc<LoadedCert>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the parent domain of a `*.` name (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    pub default_name: Option<String>,
}

/// What a (re)load did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    /// File stem and why it did not load (the previous certificate, if any, stays).
    pub failed: Vec<(String, TlsError)>,
}

/// Why a certificate, or the whole directory, did not load: the operator's files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", .dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A certificate file that cannot be read or holds a bad PEM block.
    #[error("{}: {source}", .file.display())]
    ReadFile {
        file: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A service port's certificate file, whose modification time is checked on use.
    #[error("{}: {source}", .file.display())]
    Stat {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no CERTIFICATE block", .file.display())]
    NoCertificate { file: PathBuf },
    #[error("{}: no usable private key: {source}", .file.display())]
    NoKey {
        file: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A key of a type or curve rustls cannot sign with.
    #[error("{}: {source}", .file.display())]
    UnsupportedKey {
        file: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the key does not belong to the certificate: {0}")]
    KeyMismatch(#[source] rustls::Error),
    #[error("not a valid X.509 certificate: {0}")]
    InvalidX509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// `failed` is why each file of the directory did not load (maybe none).
    #[error(
        "no usable certificate in {} (NAME.pem, or NAME.crt + NAME.key){}",
        .dir.display(),
        failures(.failed)
    )]
    NoUsable {
        dir: PathBuf,
        failed: Vec<(String, TlsError)>,
    },
    #[error("{0}")]
    Setup(#[source] rustls::Error),
}

/// `: a: why; b: why`, or nothing when no file failed.
fn failures(failed: &[(String, TlsError)]) -> String {
    if failed.is_empty() {
        return String::new();
    }
    let why: Vec<String> = failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    format!(": {}", why.join("; "))
}

/// The certificates in use, swapped whole on reload; the rustls resolver reads it.
#[derive(Debug)]
pub struct CertStore {
    dir: PathBuf,
    current: ArcSwap<CertSet>,
}

// === impl CertSet ===

impl CertSet {
    fn index(certs: BTreeMap<String, Arc<LoadedCert>>) -> CertSet {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs.values() {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => {
                        wildcard
                            .entry(parent.to_string())
                            .or_insert_with(|| cert.key.clone());
                    }
                    None => {
                        exact
                            .entry(name.clone())
                            .or_insert_with(|| cert.key.clone());
                    }
                }
            }
        }
        let default_name = certs
            .contains_key(DEFAULT_NAME)
            .then(|| DEFAULT_NAME.to_string())
            .or_else(|| certs.keys().next().cloned());
        let default = default_name
            .as_ref()
            .and_then(|n| certs.get(n))
            .map(|c| c.key.clone());
        CertSet {
            certs,
            exact,
            wildcard,
            default,
            default_name,
        }
    }

    /// The certificate for an SNI name (any case, a trailing dot ignored), or the default.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(key) = self.exact.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(key) = self.wildcard.get(parent) {
                    return Some(key.clone());
                }
            }
        }
        self.default.clone()
    }
}

// === impl CertStore ===

impl CertStore {
    /// Loads `dir`. Fails when the directory cannot be read or holds no usable certificate,
    /// so a broken setup is refused at start rather than serving handshake errors.
    pub fn load(dir: &Path, metrics: &Metrics) -> Result<CertStore, TlsError> {
        let store = CertStore {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(CertSet::default()),
        };
        let report = store.reload(metrics)?;
        if store.current.load().certs.is_empty() {
            return Err(TlsError::NoUsable {
                dir: dir.to_path_buf(),
                failed: report.failed,
            });
        }
        Ok(store)
    }

    /// Re-reads the directory; a file that fails keeps its previous certificate. `Err` only
    /// when the directory itself cannot be read (then nothing changes).
    pub fn reload(&self, metrics: &Metrics) -> Result<LoadReport, TlsError> {
        let files = list(&self.dir)?;
        let previous = self.current.load_full();
        let mut certs = BTreeMap::new();
        let mut report = LoadReport::default();
        for (name, source) in files {
            match load_one(&source) {
                Ok(cert) => {
                    report.loaded.push(name.clone());
                    certs.insert(name, Arc::new(cert));
                }
                Err(e) => {
                    warn!(cert = %name, error = %e, "certificate not loaded; keeping the previous one if any");
                    metrics.tls_reloads.with_label_values(&["error"]).inc();
                    if let Some(old) = previous.certs.get(&name) {
                        certs.insert(name.clone(), old.clone());
                    }
                    report.failed.push((name, e));
                }
            }
        }
        for (name, cert) in &certs {
            metrics
                .tls_cert_not_after
                .with_label_values(&[name])
                .set(cert.not_after as f64);
        }
        for gone in previous.certs.keys().filter(|n| !certs.contains_key(*n)) {
            let _ = metrics.tls_cert_not_after.remove_label_values(&[gone]);
        }
        let set = CertSet::index(certs);
        info!(
            dir = %self.dir.display(),
            certs = set.certs.len(),
            default = set.default_name.as_deref().unwrap_or("-"),
            "TLS certificates loaded"
        );
        metrics.tls_reloads.with_label_values(&["ok"]).inc();
        self.current.store(Arc::new(set));
        Ok(report)
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A rustls server config choosing certificates from this store, offering h2 and
    /// HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver(self.clone())));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A TLS acceptor for one PEM file (chain, then key), for a service port's own TLS
/// (`HAPROXY_{n}_SSL_CERT`). HTTP/1.1 only: what follows is proxied as bytes.
pub fn acceptor_for_file(path: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let cert = load_one(&Source::Pem(path.to_path_buf()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            (*cert.key).clone(),
        )));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Chooses the certificate for each handshake from the store's current set.
#[derive(Debug)]
struct SniResolver(Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current.load().pick(hello.server_name())
    }
}

/// Where one certificate comes from.
enum Source {
    /// Chain then key in one file.
    Pem(PathBuf),
    /// Chain and key apart.
    Pair { crt: PathBuf, key: PathBuf },
}

/// The certificate files of `dir` by stem. A `.crt` without its `.key` is listed (it fails
/// to load, and says why).
fn list(dir: &Path) -> Result<BTreeMap<String, Source>, TlsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TlsError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if stem.starts_with('.') {
            continue;
        }
        match ext {
            "pem" => {
                out.insert(stem.to_string(), Source::Pem(path.clone()));
            }
            "crt" => {
                let key = path.with_extension("key");
                out.insert(stem.to_string(), Source::Pair { crt: path, key });
            }
            _ => {}
        }
    }
    Ok(out)
}

fn load_one(source: &Source) -> Result<LoadedCert, TlsError> {
    let (cert_path, key_path) = match source {
        Source::Pem(p) => (p, p),
        Source::Pair { crt, key } => (crt, key),
    };
    let read_file = |source| TlsError::ReadFile {
        file: cert_path.clone(),
        source,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(read_file)?
        .collect::<Result<_, _>>()
        .map_err(read_file)?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            file: cert_path.clone(),
        });
    };
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::NoKey {
        file: key_path.clone(),
        source,
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
        TlsError::UnsupportedKey {
            file: key_path.clone(),
            source,
        }
    })?;
    let (names, not_after) = describe(leaf)?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(TlsError::KeyMismatch)?;
    Ok(LoadedCert {
        key: Arc::new(key),
        names,
        not_after,
    })
}

/// The DNS names (SANs, else the subject CN) and the `notAfter` of a certificate.
fn describe(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), TlsError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(TlsError::InvalidX509)?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`, written as `dir/stem.pem` (chain then key).
    fn write_cert(dir: &Path, stem: &str, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).expect("cert");
        let pem = format!("{}{}", cert.cert.pem(), cert.signing_key.serialize_pem());
        std::fs::write(dir.join(format!("{stem}.pem")), pem).expect("write");
    }

    fn metrics() -> Metrics {
        Metrics::new(prometheus::Registry::new())
    }

    fn same(a: &Option<Arc<CertifiedKey>>, set: &CertSet, stem: &str) -> bool {
        a.as_ref()
            .is_some_and(|k| Arc::ptr_eq(k, &set.certs[stem].key))
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let dir = tempfile::tempdir().unwrap();
        write_cert(dir.path(), "default", &["fallback.example.com"]);
        write_cert(dir.path(), "star", &["*.example.com"]);
        write_cert(
            dir.path(),
            "shop",
            &["shop.example.com", "www.shop.example.com"],
        );
        let store = CertStore::load(dir.path(), &metrics()).unwrap();
        let set = store.current();
        assert!(same(&set.pick(Some("shop.example.com")), &set, "shop"));
        assert!(same(&set.pick(Some("SHOP.example.com.")), &set, "shop"));
        assert!(same(&set.pick(Some("api.example.com")), &set, "star"));
        // A wildcard covers one label only.
        assert!(same(&set.pick(Some("a.b.example.com")), &set, "default"));
        assert!(same(&set.pick(Some("other.org")), &set, "default"));
        assert!(same(&set.pick(None), &set, "default"));
    }

    #[test]
    fn a_broken_file_keeps_its_previous_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        write_cert(dir.path(), "shop", &["shop.example.com"]);
        write_cert(dir.path(), "api", &["api.example.com"]);
        let store = CertStore::load(dir.path(), &m).unwrap();
        let before = store.current().certs["shop"].key.clone();

        std::fs::write(
            dir.path().join("shop.pem"),
            "-----BEGIN CERTIFICATE-----\nnope\n",
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("api.pem")).unwrap();
        write_cert(dir.path(), "new", &["new.example.com"]);
        let report = store.reload(&m).unwrap();
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].0, "shop");
        let set = store.current();
        assert!(Arc::ptr_eq(&set.certs["shop"].key, &before), "old one kept");
        assert!(!set.certs.contains_key("api"), "a removed file goes");
        assert!(same(&set.pick(Some("new.example.com")), &set, "new"));
        let text = m.render();
        assert!(
            text.contains("drover_tls_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("drover_tls_cert_not_after_timestamp_seconds{cert=\"new\"}"),
            "{text}"
        );
        assert!(!text.contains("cert=\"api\""), "{text}");
    }

    #[test]
    fn crt_and_key_pairs_load_and_a_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.example.com".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example.com".into()]).unwrap();
        std::fs::write(dir.path().join("a.crt"), a.cert.pem()).unwrap();
        std::fs::write(dir.path().join("a.key"), a.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("b.crt"), b.cert.pem()).unwrap();
        std::fs::write(dir.path().join("b.key"), a.signing_key.serialize_pem()).unwrap();
        let store = CertStore::load(dir.path(), &metrics()).unwrap();
        let set = store.current();
        assert_eq!(set.certs.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(set.certs["a"].names, ["a.example.com"]);
        assert!(set.certs["a"].not_after > 1_700_000_000);
    }

    #[test]
    fn an_empty_or_missing_directory_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let e = CertStore::load(dir.path(), &metrics()).unwrap_err();
        assert!(matches!(e, TlsError::NoUsable { .. }), "{e:?}");
        assert!(e.to_string().contains("no usable certificate"), "{e}");
        let e = CertStore::load(&dir.path().join("nope"), &metrics()).unwrap_err();
        assert!(matches!(e, TlsError::ReadDir { .. }), "{e:?}");
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
