//! The status page in a real browser: Debian's headless `chromium`, driven over WebDriver by
//! `chromedriver`, loads the admin port's `/` from a running Drover (catalog-file routes to
//! real loopback backends, a master alias over simulated masters, `[dns]` on) and must show
//! the routes, the backends' states and the alias's leader; a backend stopped must show as
//! down within 3 s without a reload; and the browser must log no console error. Also
//! `/status.json` alone: traffic rates and the upstream errors of both proxies.
//!
//! The WebDriver client is the few commands needed, as JSON over HTTP on the tests' own
//! hyper client, rather than a crate: a WebDriver crate brings a dependency tree for four
//! commands, and the browser log (`/se/log`, how chromedriver hands out console messages)
//! is outside the W3C commands such crates cover anyway.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use drover::sim::masters::FakeMasters;
use http_body_util::Full;
use hyper::{Method, Request};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::{self, app, eventually, free_port, Backend, Drover};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The page must show a backend that went down within this, without a reload.
const SHOWN_DOWN_WITHIN: Duration = Duration::from_secs(3);

/// Longest one WebDriver command may take (starting the browser is the slow one).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

// === the WebDriver client ===

/// A `chromedriver` this test started, killed (by its own pid) when dropped.
struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
}

impl ChromeDriver {
    /// Starts `chromedriver` on a free loopback port and waits until it is ready. Fails
    /// the test, saying what to install, when Chromium or its driver is missing: a browser
    /// test that passed without a browser would assert nothing.
    async fn start() -> ChromeDriver {
        for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} ({what}) is missing; the status page test needs a real browser: \
                 apt-get install chromium chromium-driver (.ci/run installs both)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = ChromeDriver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        eventually("chromedriver ready", || async {
            let status = driver.call(Method::GET, "/status", None).await.ok()?;
            (status["ready"] == true).then_some(())
        })
        .await;
        driver
    }

    /// One command: its `value`, or the error WebDriver gave.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("request");
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, support::send(req))
            .await
            .map_err(|_| format!("{path}: no answer within {COMMAND_TIMEOUT:?}"))??;
        let json: Value = serde_json::from_str(&answer.body)
            .map_err(|e| format!("{path}: {e}: {}", answer.body))?;
        if !answer.status.is_success() {
            return Err(format!("{path}: {} {json}", answer.status));
        }
        Ok(json["value"].clone())
    }

    /// A headless Chromium session that keeps every console message.
    async fn session(&self, profile: &std::path::Path) -> Session<'_> {
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-background-networking".to_string(),
            "--no-first-run".to_string(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,900".to_string(),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let created = self
            .call(Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        let id = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Session { driver: self, id }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // Our own child, by its pid; the session's Drop has closed the browser already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window.
struct Session<'d> {
    driver: &'d ChromeDriver,
    id: String,
}

impl Session<'_> {
    async fn cmd(&self, method: Method, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{what}", self.id);
        self.driver
            .call(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn open(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    async fn eval(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.cmd(Method::POST, "/execute/sync", Some(body)).await
    }

    /// Waits, at most `limit`, for `script` to return something other than null.
    async fn wait_for(&self, what: &str, script: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(script).await;
            if !v.is_null() {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "the page did not show {what} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The console messages logged since the last call.
    async fn console(&self) -> Vec<Value> {
        let v = self
            .cmd(Method::POST, "/se/log", Some(json!({ "type": "browser" })))
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    async fn close(self) {
        self.cmd(Method::DELETE, "", None).await;
        std::mem::forget(self);
    }
}

impl Drop for Session<'_> {
    /// A failed test still closes its browser, so no Chromium outlives the test.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.driver.addr) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let req = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.id, self.driver.addr
        );
        let _ = s.write_all(req.as_bytes());
        let _ = s.read_to_end(&mut Vec::new());
    }
}

// === the tests ===

const WEB: &str = "web_10001";
const GONE: &str = "gone_10002";

/// A script returning `want` once the page shows `backend` of `route` in that state, else
/// null. The state is read as shown: the badge's text.
fn shows_state(route: &str, backend: SocketAddr, want: &str) -> String {
    format!(
        "const b = document.querySelector('[data-route=\"{route}\"] [data-backend=\"{backend}\"] [data-state]');\n\
         return b && b.textContent.split(' ')[0] === '{want}' ? '{want}' : null;"
    )
}

#[tokio::test]
async fn the_status_page_shows_the_cluster_live_in_a_browser() {
    let driver = ChromeDriver::start().await;
    let (b0, b1) = (Backend::start("b0").await, Backend::start("b1").await);
    let gone: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let masters = FakeMasters::start(3, Some(1)).await;
    let mut catalog = app("/web", "web.test", 10001, &[b0.addr, b1.addr]);
    catalog.push_str(
        "health_checks = [ { path = \"/health\", interval = \"100ms\", timeout = \"500ms\", fall = 1, rise = 1 } ]\n\n",
    );
    catalog.push_str(&app("/gone", "gone.test", 10002, &[gone]));
    let extra = format!(
        "[ejection]\nafter = 0\n\n[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n\n\
         [[alias]]\nhost = \"mesos.test\"\nbackends = {}\ncheck = \"mesos\"\ninterval = \"200ms\"\n",
        masters.backends_toml()
    );
    let d = Drover::start(&extra, &catalog);
    d.ready().await;
    // One failed request, for the upstream errors table.
    assert_eq!(support::get(d.http(), "gone.test", "/").await.status, 502);

    let profile = tempfile::tempdir().expect("profile dir");
    let page = driver.session(profile.path()).await;
    page.open(&format!("http://{}/", d.admin())).await;
    let long = support::DEADLINE;

    // The routes, each backend's state, the alias's leader.
    page.wait_for(
        "the web route",
        &format!("return document.querySelector('[data-route=\"{WEB}\"]') ? true : null;"),
        long,
    )
    .await;
    for b in [b0.addr, b1.addr] {
        page.wait_for(&format!("{b} up"), &shows_state(WEB, b, "up"), long)
            .await;
    }
    let leader = masters.addrs()[1].to_string();
    let shown = page
        .wait_for(
            "the alias leader",
            "const l = document.querySelector('[data-alias=\"mesos.test\"] [data-leader]'); return l ? l.textContent : null;",
            long,
        )
        .await;
    assert_eq!(shown, leader.as_str());
    let standbys = page
        .eval("return [...document.querySelectorAll('[data-alias=\"mesos.test\"] [data-master] [data-state]')].map(s => s.textContent).sort();")
        .await;
    assert_eq!(standbys, json!(["leader", "standby", "standby"]));
    // The failed request, and the zone.
    page.wait_for(
        "the upstream error",
        &format!("return document.querySelector('[data-error-route=\"{GONE}\"]') ? true : null;"),
        long,
    )
    .await;
    let serial = page
        .wait_for("the DNS zone", "const z = document.querySelector('[data-zone=\"mesos.\"]'); return z ? z.textContent : null;", long)
        .await;
    assert!(
        serial.as_str().is_some_and(|s| s.contains("mesos")),
        "{serial}"
    );

    // b1 stops: the page, left alone, shows it down within 3 s (the check every 100 ms,
    // the page every 2 s). A reload would clear the mark.
    page.eval("window.droverMark = 'not reloaded'; return null;")
        .await;
    let b1_addr = b1.addr;
    let stopped = Instant::now();
    drop(b1);
    let down = shows_state(WEB, b1_addr, "down");
    page.wait_for("b1 down", &down, SHOWN_DOWN_WITHIN).await;
    let took = stopped.elapsed();
    assert!(took <= SHOWN_DOWN_WITHIN, "shown down after {took:?}");
    assert_eq!(page.eval("return window.droverMark;").await, "not reloaded");
    // Trouble on top: the routes with a backend down (web) or failing (gone) come first.
    let order = page
        .eval("return [...document.querySelectorAll('tbody[data-route]')].map(t => [t.dataset.route, t.classList.contains('trouble')]);")
        .await;
    let order: Vec<(String, bool)> = serde_json::from_value(order).expect("pairs");
    let first_calm = order.iter().position(|(_, t)| !t).unwrap_or(order.len());
    assert!(order[first_calm..].iter().all(|(_, t)| !t), "{order:?}");
    assert!(
        order[..first_calm].iter().any(|(r, _)| r == WEB),
        "{order:?}"
    );

    // No console errors. A message logged on purpose proves the log is read at all.
    page.eval("console.error('status-page-test: the log works'); return null;")
        .await;
    let logged = page.console().await;
    let severe: Vec<&Value> = logged.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(
        severe.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .contains("status-page-test")),
        "the browser log did not come through: {logged:?}"
    );
    let others: Vec<_> = severe
        .iter()
        .filter(|e| {
            !e["message"]
                .as_str()
                .unwrap_or("")
                .contains("status-page-test")
        })
        .collect();
    assert!(others.is_empty(), "console errors: {others:?}");
    page.close().await;
    drop(b0);
}

/// Reads `/status.json`.
async fn status(d: &Drover) -> Value {
    let body = support::get(d.admin(), "admin", "/status.json").await.body;
    serde_json::from_str(&body).expect("status json")
}

#[tokio::test]
async fn status_json_counts_traffic_and_keeps_both_proxies_errors() {
    let web = Backend::start("web").await;
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let port = free_port();
    let mut catalog = app("/web", "web.test", 10001, &[web.addr]);
    catalog.push_str(&app("/dead", "", port, &[dead]));
    let extra = format!(
        "[ejection]\nafter = 0\n\n[tcp]\nbind = \"127.0.0.1\"\nports = \"{port}-{port}\"\n"
    );
    let d = Drover::start(&extra, &catalog);
    d.ready().await;
    for _ in 0..20 {
        assert_eq!(support::get(d.http(), "web.test", "/").await.status, 200);
    }
    // The TCP proxy cannot reach the dead backend and closes on the client.
    let tcp = format!("127.0.0.1:{port}").parse().expect("addr");
    let _ = support::raw(tcp, b"hello").await;

    let dead_route = format!("dead_{port}");
    let s = eventually("rates and the TCP error", || async {
        let s = status(&d).await;
        let web = s["routes"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == WEB)?
            .clone();
        let counted = web["requests_per_s"].as_f64()? > 0.0 && web["p99_ms"].as_f64().is_some();
        let failed = s["upstream_errors"]
            .as_array()?
            .iter()
            .any(|e| e["route"] == dead_route);
        (counted && failed).then_some(s)
    })
    .await;
    let error = s["upstream_errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["route"] == dead_route)
        .expect("the TCP error")
        .clone();
    assert_eq!(error["backend"], dead.to_string(), "{error}");
    assert_eq!(error["fault"], "upstream");
    assert!(
        error["reason"]
            .as_str()
            .expect("reason")
            .starts_with("cannot connect"),
        "{error}"
    );
    // The dead route is trouble and comes first; the file source has been read.
    assert_eq!(s["routes"][0]["name"], dead_route, "{s}");
    assert_eq!(s["routes"][0]["trouble"], true);
    let file = &s["sources"][0];
    assert_eq!(file["name"], "file");
    assert!(file["last_sync_age_s"].as_f64().is_some(), "{file}");
    assert_eq!(s["ready"], true);
    assert!(s["uptime_s"].as_f64().expect("uptime") > 0.0);
}
