//! The cluster Drover fronts, simulated in process: one fake Marathon
//! ([`marathon::FakeMarathon`]) and one set of fake masters ([`masters::FakeMasters`]) that
//! the integration tests, `examples/demo.rs` and the `event_latency` and `failover` benches
//! all run against. Behind the cargo feature `sim`, which the crate's own dev-dependency
//! turns on, so it is never part of the binary.
//!
//! Both serve HTTP/1 (optionally https, see [`pki`]) on 127.0.0.x with OS-assigned ports, in
//! the JSON shapes and headers of the real thing, and keep no judgement of their own: the
//! caller moves leadership, pushes events and injects faults. They panic when the machine
//! cannot give them a loopback socket: beside a test or a demo that is the clearest failure.

pub mod marathon;
pub mod masters;
mod operator_api;
pub mod pki;
pub mod zookeeper;

use std::convert::Infallible;
use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Every simulator's response body: whole bodies and the event stream alike.
type RespBody = BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> RespBody {
    Full::new(s.into()).boxed()
}

/// `Basic base64(user:password)`, the whole `Authorization` value.
pub fn basic_auth(user: &str, password: &str) -> String {
    let plain = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(plain)
    )
}

/// Binds `ip:0`, naming the simulator in the panic.
async fn bind(ip: &str, who: &str) -> TcpListener {
    TcpListener::bind((ip, 0))
        .await
        .unwrap_or_else(|e| panic!("bind {who} on {ip}: {e}"))
}

/// Accepts until the task running it is aborted. `admit` sees each new connection first and
/// may keep or drop it (`None`) instead of serving it. Connections run in a `JoinSet` this
/// loop owns, so aborting the loop ends every connection with it.
async fn accept_loop<A, H>(listener: TcpListener, tls: Option<TlsAcceptor>, mut admit: A, handle: H)
where
    A: FnMut(TcpStream) -> Option<TcpStream>,
    H: Fn(SocketAddr, Request<Incoming>) -> Response<RespBody> + Clone + Send + Sync + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { return };
                let Some(stream) = admit(stream) else { continue };
                let handle = handle.clone();
                conns.spawn(serve(stream, tls.clone(), move |req| handle(peer, req)));
            }
            // Reap finished connections so the set does not grow over a long run.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One connection with HTTP/1, after a TLS handshake when `tls` is set. The handshake runs
/// in the connection's task, so a client that fails it holds up no one else.
async fn serve<H>(stream: TcpStream, tls: Option<TlsAcceptor>, handle: H)
where
    H: Fn(Request<Incoming>) -> Response<RespBody> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let resp = handle(req);
        async move { Ok::<_, Infallible>(resp) }
    });
    let http = hyper::server::conn::http1::Builder::new();
    match tls {
        None => {
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        }
        Some(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_is_rfc_7617() {
        assert_eq!(
            super::basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(super::basic_auth("", ""), "Basic Og==");
    }
}
