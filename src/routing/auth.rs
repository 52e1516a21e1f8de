//! HTTP basic auth in front of a service (`HAPROXY_{n}_AUTH` = `realm:user:hash`), checked
//! against a crypt(3) SHA-512 (`$6$`) or SHA-256 (`$5$`) hash as HAProxy's userlist does.
//!
//! A crypt check costs thousands of hash rounds (milliseconds), far too much per request, so
//! each route remembers the few `Authorization` values that passed (a positive cache, cleared
//! when the route is rebuilt); a wrong password is checked every time it is tried.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine;
use hyper::header::HeaderValue;

use crate::catalog::AuthLabel;

/// Distinct good `Authorization` values remembered per route.
const CACHE_SIZE: usize = 64;

#[derive(Debug)]
pub struct BasicAuth {
    label: AuthLabel,
    challenge: HeaderValue,
    passed: Mutex<HashSet<Vec<u8>>>,
}

impl BasicAuth {
    pub fn new(label: &AuthLabel) -> BasicAuth {
        let realm = label.realm.replace(['"', '\\'], "");
        BasicAuth {
            challenge: HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("Basic")),
            label: label.clone(),
            passed: Mutex::new(HashSet::new()),
        }
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// Whether the request's `Authorization` value carries the right user and password.
    pub fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let raw = value.as_bytes();
        if self.cache().contains(raw) {
            return true;
        }
        let ok = self.check(raw);
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(raw.to_vec());
        }
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<Vec<u8>>> {
        self.passed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, raw: &[u8]) -> bool {
        let Some(encoded) = raw
            .strip_prefix(b"Basic ")
            .or_else(|| raw.strip_prefix(b"basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii())
        else {
            return false;
        };
        let Ok(text) = std::str::from_utf8(&decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        if user != self.label.user {
            return false;
        }
        let hash = self.label.hash.as_str();
        if hash.starts_with("$6$") {
            sha_crypt::sha512_check(password, hash).is_ok()
        } else if hash.starts_with("$5$") {
            sha_crypt::sha256_check(password, hash).is_ok()
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mkpasswd -m sha-512 -S saltsalt secret` (rounds 5000, the default).
    fn label() -> AuthLabel {
        let hash = sha_crypt::sha512_simple("secret", &sha_crypt::Sha512Params::new(5000).unwrap())
            .unwrap();
        AuthLabel {
            realm: "ops".into(),
            user: "admin".into(),
            hash,
        }
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    #[test]
    fn the_right_user_and_password_pass_and_nothing_else() {
        let auth = BasicAuth::new(&label());
        assert!(auth.allows(Some(&basic("admin", "secret"))));
        assert!(auth.allows(Some(&basic("admin", "secret"))), "cached");
        assert!(!auth.allows(Some(&basic("admin", "wrong"))));
        assert!(!auth.allows(Some(&basic("root", "secret"))));
        assert!(!auth.allows(Some(&HeaderValue::from_static("Bearer abc"))));
        assert!(!auth.allows(Some(&HeaderValue::from_static("Basic !!!"))));
        assert!(!auth.allows(None));
        assert_eq!(auth.challenge(), "Basic realm=\"ops\"");
    }
}
