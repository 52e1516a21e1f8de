//! The two ends of `bench/udp.sh`: a UDP echo backend, and a closed-loop load generator
//! that measures round trips per second through whatever sits between them (nothing,
//! Drover's UDP service port, nginx's `stream` UDP proxy).
//!
//! ```text
//! cargo run --release --example udp_load -- echo 127.0.0.1:19000
//! cargo run --release --example udp_load -- load 127.0.0.1:19001 FLOWS SECONDS [WINDOW] [BYTES]
//! ```
//!
//! `echo` answers every datagram with itself, on one thread. `load` opens FLOWS client
//! sockets (one flow each, as a proxy sees them), keeps WINDOW datagrams of BYTES bytes in
//! flight on each (default 4 and 64) and, after SECONDS, prints one line:
//! `round_trips_per_second lost`. A socket that hears nothing for 200 ms counts its window
//! as lost and sends a new one, so a dropped datagram slows the run instead of stopping it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, what: &str| -> String {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| usage(&format!("missing {what}")))
    };
    match arg(0, "mode").as_str() {
        "echo" => echo(parse(&arg(1, "address"))),
        "load" => {
            let target = parse(&arg(1, "target"));
            let flows = parse(&arg(2, "FLOWS"));
            let seconds: u64 = parse(&arg(3, "SECONDS"));
            let window = args.get(4).map_or(4, |w| parse(w));
            let bytes = args.get(5).map_or(64, |b| parse(b));
            load(target, flows, Duration::from_secs(seconds), window, bytes);
        }
        other => usage(&format!("unknown mode {other:?}")),
    }
}

fn usage(why: &str) -> ! {
    eprintln!(
        "udp_load: {why}\nusage: udp_load echo ADDR | udp_load load TARGET FLOWS SECONDS [WINDOW] [BYTES]"
    );
    std::process::exit(2)
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("cannot read {s:?}")))
}

/// Answers every datagram with itself until killed.
fn echo(addr: SocketAddr) {
    let socket = std::net::UdpSocket::bind(addr).expect("bind the echo socket");
    let mut buf = vec![0; 65_536];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

fn load(target: SocketAddr, flows: usize, length: Duration, window: usize, bytes: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (done, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = Instant::now() + length;
    rt.block_on(async {
        let tasks: Vec<_> = (0..flows)
            .map(|_| {
                let (done, lost) = (done.clone(), lost.clone());
                tokio::spawn(flow(target, deadline, window, bytes, done, lost))
            })
            .collect();
        for t in tasks {
            t.await.expect("flow task");
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:.0} {}",
        done.load(Relaxed) as f64 / secs,
        lost.load(Relaxed)
    );
}

/// One client flow: `window` datagrams in flight, a new one for each answer.
async fn flow(
    target: SocketAddr,
    deadline: Instant,
    window: usize,
    bytes: usize,
    done: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a client socket");
    socket.connect(target).await.expect("connect");
    let out = vec![b'x'; bytes];
    let mut buf = vec![0; bytes.max(1) + 64];
    let send_window = || async {
        for _ in 0..window {
            let _ = socket.send(&out).await;
        }
    };
    send_window().await;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
            Ok(Ok(_)) => {
                done.fetch_add(1, Relaxed);
                let _ = socket.send(&out).await;
            }
            // Refused (nothing listening yet): wait a little, then as for silence.
            Ok(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                lost.fetch_add(window as u64, Relaxed);
                send_window().await;
            }
            // Silent: count the window lost, send a new one.
            Err(_) => {
                lost.fetch_add(window as u64, Relaxed);
                send_window().await;
            }
        }
    }
}
