//! A real ZooKeeper for the tests and the `zk_failover` bench: Debian's `zookeeper` package
//! (the server's jar, run by Java) started on 127.0.0.1 on a free port with a config made
//! here (data in a directory of its own, no admin server, a short tick so sessions and
//! restarts are quick), and killed when dropped. Plus [`Election`]: leadership moved the
//! way the real masters move it, by ephemeral sequential znodes with their real payloads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zkc;

/// Where Debian's packages put the server and Java.
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
const JAVA: &str = "/usr/bin/java";

/// How long the server may take to answer `ruok` (a JVM start on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A ZooKeeper server this process started.
pub struct ZooKeeper {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl ZooKeeper {
    /// Starts a standalone server on a free loopback port and waits until it answers.
    /// Fails, saying what to install, when the `zookeeper` package is missing.
    pub async fn start() -> Result<ZooKeeper, String> {
        for (path, package) in [(ZOOKEEPER_JAR, "zookeeper"), (JAVA, "default-jre")] {
            if !Path::new(path).exists() {
                return Err(format!(
                    "{path} is missing: install Debian's `{package}` package (apt-get install zookeeper); the ZooKeeper tests run a real server on 127.0.0.1"
                ));
            }
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "drover-zk-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        let cfg = format!(
            "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\nmaxSessionTimeout=20000\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("zoo.cfg"), cfg).map_err(|e| e.to_string())?;
        let mut zk = ZooKeeper {
            child: None,
            port,
            dir,
        };
        zk.restart().await?;
        Ok(zk)
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `zk://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("zk://{}{path}", self.addr())
    }

    /// Kills the server (as a crash would) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data (after [`ZooKeeper::stop`]),
    /// and waits until it answers.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let log = std::fs::File::create(self.dir.join("server.log")).map_err(|e| e.to_string())?;
        let child = Command::new(JAVA)
            .args(["-Xmx64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg("-cp")
            .arg(ZOOKEEPER_JAR)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {JAVA}: {e}"))?;
        self.child = Some(child);
        let start = tokio::time::Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if self.answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        Err(format!(
            "ZooKeeper did not answer on {} within {START_TIMEOUT:?}; its log:\n{log}",
            self.addr()
        ))
    }

    /// Whether the server says `imok` to `ruok`.
    async fn answers(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(self.addr()).await else {
            return false;
        };
        let mut reply = Vec::new();
        let asked = async {
            s.write_all(b"ruok").await?;
            s.read_to_end(&mut reply).await
        };
        let ok = tokio::time::timeout(Duration::from_secs(2), asked).await;
        matches!(ok, Ok(Ok(_))) && reply == b"imok"
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One election path, moved by a client of its own: candidates join with their real
/// payloads (ephemeral sequential znodes, as Mesos masters and Marathon's Curator latch
/// create them) and leave by deleting their node.
pub struct Election {
    client: zkc::Client,
    path: String,
}

impl Election {
    /// Connects to `zk` and makes sure `path` exists.
    pub async fn open(zk: SocketAddr, path: &str) -> Result<Election, zkc::Error> {
        let client = zkc::Client::connector()
            .with_session_timeout(Duration::from_secs(20))
            .connect(&zk.to_string())
            .await?;
        let dir = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
        client.mkdir(path, &dir).await?;
        Ok(Election {
            client,
            path: path.to_string(),
        })
    }

    /// A Mesos master at `addr` joins (`json.info_N` with its MasterInfo); returns the node.
    pub async fn join_mesos(&self, addr: SocketAddr) -> Result<String, zkc::Error> {
        self.join("json.info_", master_info(addr).as_bytes()).await
    }

    /// A Marathon instance at `host_port` joins the leader latch; returns the node.
    pub async fn join_marathon(&self, host_port: &str) -> Result<String, zkc::Error> {
        let id = format!("_c_{}-latch-", uuid());
        self.join(&id, host_port.as_bytes()).await
    }

    /// Writes a node with any data (a bad payload, a foreign node).
    pub async fn join(&self, prefix: &str, data: &[u8]) -> Result<String, zkc::Error> {
        let mode = zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all());
        let (_, seq) = self
            .client
            .create(&format!("{}/{prefix}", self.path), data, &mode)
            .await?;
        Ok(format!("{prefix}{seq}"))
    }

    /// The candidate `node` leaves (its master stopped or lost the session).
    pub async fn leave(&self, node: &str) -> Result<(), zkc::Error> {
        self.client
            .delete(&format!("{}/{node}", self.path), None)
            .await
    }

    /// Every candidate leaves.
    pub async fn clear(&self) -> Result<(), zkc::Error> {
        for node in self.client.list_children(&self.path).await? {
            match self.leave(&node).await {
                Ok(()) | Err(zkc::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The MasterInfo a Mesos 1.x master at `addr` writes to its `json.info_` node (the shape
/// of `tests/fixtures/zk/mesos-master-info.json`): `ip` is the IPv4 address as a uint32 in
/// network byte order, `pid` is `master@ip:port`.
pub fn master_info(addr: SocketAddr) -> String {
    let ip = addr.ip().to_string();
    let ip_u32 = match addr.ip() {
        std::net::IpAddr::V4(v4) => u32::from_le_bytes(v4.octets()),
        std::net::IpAddr::V6(_) => 0,
    };
    json!({
        "address": {"hostname": ip, "ip": ip, "port": addr.port()},
        "capabilities": [{"type": "AGENT_UPDATE"}, {"type": "AGENT_DRAIN"}, {"type": "QUOTA_V2"}],
        "hostname": ip,
        "id": format!("{}-{}-{}", uuid(), addr.port(), ip_u32),
        "ip": ip_u32,
        "pid": format!("master@{addr}"),
        "port": addr.port(),
        "version": "1.11.0"
    })
    .to_string()
}

/// A random version-4 UUID in text (Curator's latch names start with one).
fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}
