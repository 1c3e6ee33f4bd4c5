//! `mediahost edge` in front of a test [`Server`], and stopping/starting that origin.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Server, free_port, http_ok, spawn_serve};

/// The operator key the test edge accepts for purges.
pub const OPERATOR_KEY: &str = "edge-test-operator-key";

/// A running edge process; killed on drop.
pub struct Edge {
    child: Child,
    pub base: String,
    log: tempfile::NamedTempFile,
}

impl Edge {
    /// `mediahost edge --origin <origin> --listen <free port>`, waited for until healthy.
    pub fn start(origin: &Server) -> Edge {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(BIN)
            .args(["edge", "--origin", &origin.base, "--listen", &addr])
            .env("MEDIAHOST_OPERATOR_KEY", OPERATOR_KEY)
            .env_remove("MEDIAHOST_CONFIG")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start mediahost edge");
        let mut edge = Edge {
            child,
            base: format!("http://{addr}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_ok(&addr, "/healthz") {
            if let Ok(Some(status)) = edge.child.try_wait() {
                panic!("edge exited with {status}; log:\n{}", edge.log());
            }
            assert!(
                Instant::now() < deadline,
                "edge not healthy:\n{}",
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        edge
    }

    /// The edge's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The value of a counter or gauge without labels in the edge's `/metrics` (0 when absent,
    /// as Prometheus exporters omit counters never incremented).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- edge log ---\n{}", self.log());
        }
    }
}

impl Server {
    /// Kills the server (SIGKILL) and waits until it is gone, so its port refuses connections.
    pub fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts a server stopped with [`Server::stop`] again on the same address and data dir.
    pub fn start_again(&mut self) {
        self.child = spawn_serve(&self.addr, self.data_dir.path(), &self.log);
        self.wait_healthy();
    }
}
