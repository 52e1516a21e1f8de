//! The TLS client setups of `h2` backends (`DROVER_{n}_BACKEND_PROTO = "h2"`), one per CA
//! file, carried in the route table so a request finds its setup in the snapshot it routes
//! by. `control` calls [`load`] on every rebuild, before `compile`: the one file read on
//! the way to a table, so a replaced CA file takes effect on the next rebuild (SIGHUP
//! forces one). An app whose CA file cannot be used is disabled with a problem naming the
//! label; other apps are unaffected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

use crate::catalog::{AppProblem, BackendProto, Catalog};

/// The TLS connectors of the table's `h2` routes, by CA file.
#[derive(Default, Clone)]
pub struct BackendTlsSet(HashMap<PathBuf, TlsConnector>);

// By hand: tokio-rustls has no `Debug` for the connector.
impl fmt::Debug for BackendTlsSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

// === impl BackendTlsSet ===

impl BackendTlsSet {
    /// The connector trusting `ca` (ALPN `h2`), if it loaded.
    pub fn get(&self, ca: &Path) -> Option<&TlsConnector> {
        self.0.get(ca)
    }
}

/// Loads every CA file the catalog's `h2` services name. The apps whose file cannot be
/// used lose all their services and get a problem each.
pub fn load(catalog: &mut Catalog) -> BackendTlsSet {
    let mut set = BackendTlsSet::default();
    let mut failed: BTreeMap<PathBuf, String> = BTreeMap::new();
    for service in &catalog.services {
        let BackendProto::H2 { ca } = &service.backend_proto else {
            continue;
        };
        if set.0.contains_key(ca) || failed.contains_key(ca) {
            continue;
        }
        match connector(ca) {
            Ok(c) => {
                set.0.insert(ca.clone(), c);
            }
            Err(why) => {
                failed.insert(ca.clone(), why);
            }
        }
    }
    if failed.is_empty() {
        return set;
    }
    let mut disabled = HashSet::new();
    for service in &catalog.services {
        let BackendProto::H2 { ca } = &service.backend_proto else {
            continue;
        };
        if let Some(why) = failed.get(ca) {
            disabled.insert(service.app_id.clone());
            catalog.problems.push(AppProblem {
                app_id: service.app_id.clone(),
                message: format!(
                    "label DROVER_{}_BACKEND_CA = {:?}: {why}; app disabled",
                    service.index,
                    ca.display().to_string()
                ),
            });
        }
    }
    catalog.services.retain(|s| !disabled.contains(&s.app_id));
    set
}

/// A TLS client trusting the certificates of `ca` alone, offering ALPN `h2` only.
fn connector(ca: &Path) -> Result<TlsConnector, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read it: {e}"))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| format!("certificate {} unreadable: {e}", i + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} unusable: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err(
            "holds no certificate (expected PEM blocks -----BEGIN CERTIFICATE-----)".to_string(),
        );
    }
    // Named, not the process default, like every TLS setup of Drover's.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RawApp;
    use crate::config::Groups;

    /// An app on a vhost with `labels` (more than its vhost) on port indexes 0 and 1.
    fn app(id: &str, labels: &[(&str, String)]) -> RawApp {
        let mut all: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        all.insert("HAPROXY_0_VHOST".into(), format!("{}.test", &id[1..]));
        all.insert("HAPROXY_1_VHOST".into(), format!("{}-1.test", &id[1..]));
        RawApp {
            id: id.to_string(),
            labels: all,
            ports: vec![10000, 10001],
            ..RawApp::default()
        }
    }

    fn h2(index: usize, ca: &Path) -> [(&'static str, String); 2] {
        let (proto, key) = match index {
            0 => ("DROVER_0_BACKEND_PROTO", "DROVER_0_BACKEND_CA"),
            _ => ("DROVER_1_BACKEND_PROTO", "DROVER_1_BACKEND_CA"),
        };
        [(proto, "h2".into()), (key, ca.display().to_string())]
    }

    #[test]
    fn a_bad_ca_disables_its_app_only() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&good, params.self_signed(&key).unwrap().pem()).unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let apps = [
            app("/good", &h2(0, &good)),
            app("/plain", &[("DROVER_0_BACKEND_PROTO", "h2c".into())]),
            app("/empty", &h2(1, &empty)),
            app("/missing", &h2(0, &missing)),
        ];
        let mut catalog = crate::catalog::build(&apps, &Groups::all());
        assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);
        let set = load(&mut catalog);
        assert!(set.get(&good).is_some());
        let mut left: Vec<&str> = catalog.services.iter().map(|s| s.app_id.as_str()).collect();
        left.dedup();
        assert_eq!(left, ["/good", "/plain"]);
        let problems: Vec<String> = catalog.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("app /empty: label DROVER_1_BACKEND_CA = ")
                && problems[0].contains("holds no certificate"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("app /missing: label DROVER_0_BACKEND_CA = ")
                && problems[1].contains("cannot read it")
                && problems[1].ends_with("app disabled"),
            "{problems:?}"
        );
    }
}
