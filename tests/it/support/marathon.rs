//! The fake Marathon (`drover::sim::marathon`, shared with the demo and the benches) and
//! the Marathon fixtures of `tests/fixtures/marathon/`, moved to loopback so the fake can
//! serve them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde_json::Value;

pub use drover::sim::basic_auth;
pub use drover::sim::marathon::*;
pub use drover::sim::pki::unrelated_ca_pem;

// === fixtures ===

/// A file under `tests/fixtures/marathon/`, as text.
pub fn fixture_text(rel: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/marathon/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// A JSON fixture with every address a test could reach moved to loopback: each `host`
/// and `ipAddress` string and each `HAPROXY_{n}_BIND_ADDR` label, through `to_loopback`.
/// Empty hosts stay empty.
pub fn load_fixture(rel: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture_text(rel))
        .unwrap_or_else(|e| panic!("fixture {rel} is not JSON: {e}"));
    rewrite_hosts(&mut v);
    v
}

/// `a.b.c.d` -> `127.b.c.d`: distinct within each fixture, and easy to map the addresses
/// of `EXPECTED.md` by hand. A name that is not IPv4 becomes `127.0.0.1`.
pub fn to_loopback(host: &str) -> String {
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => {
            let [_, b, c, d] = ip.octets();
            Ipv4Addr::new(127, b, c, d).to_string()
        }
        Err(_) => Ipv4Addr::LOCALHOST.to_string(),
    }
}

fn rewrite_hosts(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let address = k == "host" || k == "ipAddress" || k.ends_with("_BIND_ADDR");
                match v {
                    Value::String(s) if address && !s.is_empty() => *s = to_loopback(s),
                    _ => rewrite_hosts(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_hosts),
        _ => {}
    }
}

/// Every distinct `host`/`ipAddress` value of a fixture, before and after `to_loopback`.
pub fn fixture_addresses(rel: &str) -> HashMap<String, String> {
    fn walk(v: &Value, out: &mut HashMap<String, String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        Value::String(s) if (k == "host" || k == "ipAddress") && !s.is_empty() => {
                            out.insert(s.clone(), to_loopback(s));
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let v: Value = serde_json::from_str(&fixture_text(rel)).expect("fixture JSON");
    let mut out = HashMap::new();
    walk(&v, &mut out);
    out
}
