//! Certificates made at run time for the simulators' https: a fresh CA per call, so a test
//! can hand Drover the right CA, or one that signed nothing it will meet.

use std::sync::Arc;

/// A new CA and the rustls server setup for a certificate it signed, valid for `127.0.0.1`
/// to `127.0.0.3` (where [`super::masters`] with own addresses listens) and `localhost`.
/// Returns the CA certificate in PEM, for the client's `ca_file`.
pub fn server_with_new_ca() -> (String, rustls::ServerConfig) {
    let (ca_pem, issuer) = new_ca("drover sim CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let names = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost"];
    let mut params =
        rcgen::CertificateParams::new(names.map(String::from).to_vec()).expect("server params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "drover sim");
    let cert = params.signed_by(&key, &issuer).expect("sign server cert");
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server TLS config");
    (ca_pem, config)
}

/// A CA that signed nothing the simulators serve: the wrong `ca_file` for a test.
pub fn unrelated_ca_pem() -> String {
    new_ca("some other CA").0
}

fn new_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).expect("self-sign CA").pem();
    (pem, rcgen::Issuer::new(params, key))
}
