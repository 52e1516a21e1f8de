//! `DROVER_{n}_BACKEND_PROTO` and `DROVER_{n}_BACKEND_CA`: which protocol the HTTP router
//! speaks to a service's backends. HTTP/1.1 by default; HTTP/2 in clear text (`h2c`, the
//! usual gRPC deployment inside a cluster) or over TLS (`h2`, verified against a CA file).
//!
//! Pure: the CA file is only named here. `routing::backend_tls` reads it when the table is
//! built and disables the app when it cannot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Mode;

/// How the router speaks to a service's backends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendProto {
    /// HTTP/1.1, one request per pooled connection at a time (the default).
    #[default]
    Http1,
    /// HTTP/2 without TLS, prior knowledge: many streams on few connections.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`); backends' certificates must chain to `ca`.
    H2 { ca: PathBuf },
}

// === impl BackendProto ===

impl BackendProto {
    /// Whether requests go over HTTP/2.
    pub fn is_h2(&self) -> bool {
        !matches!(self, BackendProto::Http1)
    }

    /// The label word, for logs and the route dump.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendProto::Http1 => "http1",
            BackendProto::H2c => "h2c",
            BackendProto::H2 { .. } => "h2",
        }
    }
}

/// The backend protocol of service port `index`, or the problem message that disables the
/// app (a String: the message is the product, shown to the operator as is).
pub(super) fn parse(
    labels: &BTreeMap<String, String>,
    index: usize,
    mode: Mode,
) -> Result<BackendProto, String> {
    let proto_key = format!("DROVER_{index}_BACKEND_PROTO");
    let ca_key = format!("DROVER_{index}_BACKEND_CA");
    let bad =
        |key: &str, value: &str, why: &str| format!("label {key} = {value:?}: {why}; app disabled");
    let proto = labels.get(&proto_key).map(|raw| raw.trim());
    let ca = labels.get(&ca_key).map(|raw| raw.trim());
    let parsed = match proto.map(str::to_ascii_lowercase).as_deref() {
        None | Some("http1") => BackendProto::Http1,
        Some("h2c") => BackendProto::H2c,
        Some("h2") => {
            let Some(ca) = ca else {
                return Err(bad(
                    &proto_key,
                    "h2",
                    &format!("HTTP/2 over TLS needs {ca_key}, the CA file that signed the backends' certificates"),
                ));
            };
            let path = PathBuf::from(ca);
            if !path.is_absolute() {
                return Err(bad(&ca_key, ca, "must be an absolute path to a PEM file"));
            }
            BackendProto::H2 { ca: path }
        }
        Some(_) => {
            return Err(bad(
                &proto_key,
                proto.unwrap_or_default(),
                "expected http1, h2c or h2",
            ))
        }
    };
    if let (Some(ca), false) = (ca, matches!(parsed, BackendProto::H2 { .. })) {
        return Err(bad(
            &ca_key,
            ca,
            &format!("a CA file is only used with {proto_key} = \"h2\""),
        ));
    }
    if parsed.is_h2() && mode != Mode::Http {
        return Err(bad(
            &proto_key,
            proto.unwrap_or_default(),
            "HTTP/2 to backends needs an http-mode port (a vhost or HAPROXY_{n}_MODE = http)",
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn words_and_defaults() {
        let none = labels(&[]);
        assert_eq!(parse(&none, 0, Mode::Http), Ok(BackendProto::Http1));
        let h2c = labels(&[("DROVER_1_BACKEND_PROTO", " H2C ")]);
        assert_eq!(parse(&h2c, 1, Mode::Http), Ok(BackendProto::H2c));
        // Another port's label leaves this port alone.
        assert_eq!(parse(&h2c, 0, Mode::Http), Ok(BackendProto::Http1));
        let h2 = labels(&[
            ("DROVER_0_BACKEND_PROTO", "h2"),
            ("DROVER_0_BACKEND_CA", "/etc/ca.pem"),
        ]);
        assert_eq!(
            parse(&h2, 0, Mode::Http),
            Ok(BackendProto::H2 {
                ca: "/etc/ca.pem".into()
            })
        );
    }

    #[test]
    fn bad_values_name_the_label() {
        let cases = [
            (
                labels(&[("DROVER_0_BACKEND_PROTO", "h3")]),
                "label DROVER_0_BACKEND_PROTO = \"h3\": expected http1, h2c or h2; app disabled",
            ),
            (
                labels(&[("DROVER_0_BACKEND_PROTO", "h2")]),
                "needs DROVER_0_BACKEND_CA",
            ),
            (
                labels(&[
                    ("DROVER_0_BACKEND_PROTO", "h2"),
                    ("DROVER_0_BACKEND_CA", "ca.pem"),
                ]),
                "must be an absolute path",
            ),
            (
                labels(&[
                    ("DROVER_0_BACKEND_PROTO", "h2c"),
                    ("DROVER_0_BACKEND_CA", "/ca.pem"),
                ]),
                "only used with DROVER_0_BACKEND_PROTO = \"h2\"",
            ),
        ];
        for (labels, want) in cases {
            let got = parse(&labels, 0, Mode::Http).unwrap_err();
            assert!(got.contains(want), "{got}");
        }
        let tcp = labels(&[("DROVER_0_BACKEND_PROTO", "h2c")]);
        let got = parse(&tcp, 0, Mode::Tcp).unwrap_err();
        assert!(got.contains("http-mode port"), "{got}");
    }
}
