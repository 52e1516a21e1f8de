//! Drover on an embedded default, no cluster needed.
//!
//! Starts three small HTTP backends on 127.0.0.1, writes a config and a catalog file into a
//! temporary directory, runs Drover on them in this process, and prints `curl` lines to
//! try. Edit the printed catalog file while it runs and the routes change within a moment;
//! Ctrl-C drains and exits.
//!
//! ```sh
//! cargo run --release --example demo
//! ```
//!
//! Ports: the HTTP router on 127.0.0.1:8080, admin on 127.0.0.1:9090 and a TCP service port
//! on 127.0.0.1:10001 when free (otherwise any free port, as printed).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use drover::config::Config;
use drover::server::{Options, Server};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let backends_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let blue1 = backends_rt.block_on(backend("blue-1"))?;
    let blue2 = backends_rt.block_on(backend("blue-2"))?;
    let green = backends_rt.block_on(backend("green-1"))?;
    // The backends run on their own thread for as long as the demo does.
    std::thread::spawn(move || backends_rt.block_on(std::future::pending::<()>()));

    let http = port_or_any(8080);
    let admin = port_or_any(9090);
    let tcp = port_or_any(10001);
    let dir = std::env::temp_dir().join(format!("drover-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("drover.toml");
    let catalog_path = dir.join("services.toml");
    std::fs::write(
        &config_path,
        format!(
            "# Written by examples/demo.rs\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             [tcp]\nbind = \"127.0.0.1\"\nports = \"{tcp}-{tcp}\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [catalog]\nfile = \"services.toml\"\n\n\
             [runtime]\nworkers = 1\ndrain_timeout = \"5s\"\n"
        ),
    )?;
    std::fs::write(
        &catalog_path,
        format!(
            "# Written by examples/demo.rs; edit me while the demo runs.\n\n\
             [[app]]\nid = \"/shop/web\"\n\
             labels = {{ HAPROXY_0_VHOST = \"shop.localhost\" }}\n\
             ports = [{tcp}]\n\
             tasks = [ {{ host = \"127.0.0.1\", ports = [{}] }}, {{ host = \"127.0.0.1\", ports = [{}] }} ]\n\n\
             [[app]]\nid = \"/shop/api\"\n\
             labels = {{ HAPROXY_0_VHOST = \"shop.localhost\", HAPROXY_0_PATH = \"/api\" }}\n\
             ports = [10002]\n\
             tasks = [ {{ host = \"127.0.0.1\", ports = [{}] }} ]\n",
            blue1.port(),
            blue2.port(),
            green.port()
        ),
    )?;

    let config = Config::load(&config_path)?;
    let server = Server::start(
        config,
        Options {
            config_path: Some(config_path.clone()),
            handle_signals: true,
        },
    )?;
    println!(
        "\nDrover is running (config {}, catalog {}).\nTry:\n\
         \n  curl -H 'Host: shop.localhost' http://127.0.0.1:{http}/        # blue-1 and blue-2 in turn\
         \n  curl -H 'Host: shop.localhost' http://127.0.0.1:{http}/api/x   # green-1: longest path prefix wins\
         \n  curl -H 'Host: nope.localhost' http://127.0.0.1:{http}/        # 404: unknown host\
         \n  curl http://127.0.0.1:{tcp}/                                # the TCP service port of /shop/web\
         \n  curl http://127.0.0.1:{admin}/debug/routes                     # the route table as JSON\
         \n  curl -s http://127.0.0.1:{admin}/metrics | grep drover_http     # Prometheus metrics\
         \n\nEdit {} (say, remove a task) and the routes follow within a second. Ctrl-C stops.\n",
        config_path.display(),
        catalog_path.display(),
        catalog_path.display(),
    );
    server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `preferred` if it is free on 127.0.0.1, else any free port.
fn port_or_any(preferred: u16) -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", preferred))
        .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

/// An HTTP backend answering `hello from NAME` to everything.
async fn backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let body = format!(
                            "hello from {name} ({} {})\n",
                            req.method(),
                            req.uri().path()
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
