//! marathon-lb's HTTP labels end to end: REDIRECT_TO_HTTPS, STICKY (with a backend that
//! leaves), AUTH, BACKEND_NETWORK_ALLOWED_ACL (HTTP 403, TCP close) and
//! HTTP_BACKEND_PROXYPASS_PATH. (USE_HSTS is in `tls`, where answers go over https.)

use std::net::SocketAddr;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use crate::support::{self, eventually, Backend, Drover};

/// A catalog app on vhost `web.test`, service port 10001, with extra labels.
fn web(labels: &[(&str, &str)], backends: &[SocketAddr]) -> String {
    web_at(10001, labels, backends)
}

/// `web` with service port `port`.
fn web_at(port: u16, labels: &[(&str, &str)], backends: &[SocketAddr]) -> String {
    let mut all = vec![("HAPROXY_0_VHOST".to_string(), "web.test".to_string())];
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let labels: Vec<String> = all.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    let tasks: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ host = \"{}\", ports = [{}] }}", b.ip(), b.port()))
        .collect();
    format!(
        "[[app]]\nid = \"/web\"\nlabels = {{ {} }}\nports = [{port}]\ntasks = [{}]\n",
        labels.join(", "),
        tasks.join(", ")
    )
}

async fn send(d: &Drover, path: &str, headers: &[(&str, &str)]) -> support::Answer {
    let mut req = Request::get(format!("http://{}{path}", d.http())).header("host", "web.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    support::send(req.body(Full::<Bytes>::default()).unwrap())
        .await
        .expect("answered")
}

#[tokio::test]
async fn redirect_to_https_answers_301_with_the_same_url() {
    let b = Backend::start("web").await;
    let d = Drover::start(
        "",
        &web(&[("HAPROXY_0_REDIRECT_TO_HTTPS", "true")], &[b.addr]),
    );
    d.ready().await;
    let a = send(&d, "/cart?item=7", &[]).await;
    assert_eq!(a.status, 301);
    assert_eq!(a.header("location"), Some("https://web.test/cart?item=7"));
    assert_eq!(b.hits(), 0, "nothing reaches the backend over plain HTTP");
}

#[tokio::test]
async fn sticky_sessions_keep_a_client_on_its_backend_until_it_leaves() {
    let backends = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let d = Drover::start("", &web(&[("HAPROXY_0_STICKY", "true")], &addrs));
    d.ready().await;
    let first = send(&d, "/", &[]).await;
    let cookie = first
        .header("set-cookie")
        .expect("a sticky cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("mesosphere_server_id="), "{cookie}");
    let home = first.header("x-backend").unwrap().to_string();
    for _ in 0..10 {
        let a = send(&d, "/", &[("cookie", &cookie)]).await;
        assert_eq!(a.header("x-backend"), Some(home.as_str()));
        assert_eq!(a.header("set-cookie"), None, "a good cookie is not re-sent");
    }

    // Its backend leaves: the cookie names nobody, normal balancing picks another, and
    // the client gets a cookie for that one.
    let left: Vec<SocketAddr> = backends
        .iter()
        .filter(|b| b.name != home)
        .map(|b| b.addr)
        .collect();
    let version = d.version();
    d.write("catalog.toml", &web(&[("HAPROXY_0_STICKY", "true")], &left));
    d.newer_than(version).await;
    let a = send(&d, "/", &[("cookie", &cookie)]).await;
    assert_eq!(a.status, 200);
    assert_ne!(a.header("x-backend"), Some(home.as_str()));
    let new_cookie = a.header("set-cookie").expect("a new cookie").to_string();
    assert!(!new_cookie.starts_with(&cookie), "{new_cookie}");
}

#[tokio::test]
async fn basic_auth_lets_only_the_right_password_through() {
    let b = Backend::start("web").await;
    let params = sha_crypt::Sha512Params::new(5000).unwrap();
    let hash = sha_crypt::sha512_simple("s3cret", &params).unwrap();
    let d = Drover::start(
        "",
        &web(
            &[("HAPROXY_0_AUTH", &format!("ops:admin:{hash}"))],
            &[b.addr],
        ),
    );
    d.ready().await;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let a = send(&d, "/", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("www-authenticate"), Some("Basic realm=\"ops\""));
    let a = send(&d, "/", &[("authorization", &basic("admin", "wrong"))]).await;
    assert_eq!(a.status, 401);
    assert_eq!(b.hits(), 0);
    let a = send(&d, "/", &[("authorization", &basic("admin", "s3cret"))]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "web");
}

#[tokio::test]
async fn the_network_acl_refuses_other_sources_on_http_and_tcp() {
    let b = Backend::start("web").await;
    // A free port: a fixed one may be taken on a machine running something else.
    let svc = support::free_port();
    let tcp = format!("[tcp]\nbind = \"127.0.0.1\"\nports = \"{svc}\"\n");
    let d = Drover::start(
        &tcp,
        &web_at(
            svc,
            &[(
                "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL",
                "10.0.0.0/8, 192.168.0.0/16",
            )],
            &[b.addr],
        ),
    );
    d.ready().await;
    let a = send(&d, "/", &[]).await;
    assert_eq!(a.status, 403, "127.0.0.1 is not in the ACL");
    // The service port closes on a refused source without a byte.
    let port = SocketAddr::from(([127, 0, 0, 1], svc));
    let answer = eventually("the service port listens", || async {
        let out = support::raw(port, b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n").await;
        Some(out)
    })
    .await;
    assert_eq!(answer, "", "closed without an answer");
    assert_eq!(b.hits(), 0);

    // Loopback allowed: both work.
    let version = d.version();
    d.write(
        "catalog.toml",
        &web_at(
            svc,
            &[("HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL", "127.0.0.0/8")],
            &[b.addr],
        ),
    );
    d.newer_than(version).await;
    assert_eq!(send(&d, "/", &[]).await.status, 200);
}

#[tokio::test]
async fn proxypass_path_is_removed_before_forwarding() {
    let b = Backend::start("web").await;
    let d = Drover::start(
        "",
        &web(
            &[("HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH", "/api")],
            &[b.addr],
        ),
    );
    d.ready().await;
    let a = send(&d, "/api/users?active=1", &[]).await;
    assert_eq!(a.header("x-path"), Some("/users?active=1"));
    let a = send(&d, "/apiary", &[]).await;
    assert_eq!(a.header("x-path"), Some("/apiary"), "only a whole prefix");
}
