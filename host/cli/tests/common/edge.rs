//! `mediahost edge` in front of a test [`Server`], and stopping/starting that origin.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Server, free_port, http_ok, spawn_serve};

/// The URI lines of a playlist (not tags, not blank).
pub fn uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `url` with its directory part kept and the last segment replaced by `relative`.
pub fn join(url: &str, relative: &str) -> String {
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    format!("{}{relative}", &path[..path.rfind('/').unwrap() + 1])
}

/// The operator key the test edge accepts for purges.
pub const OPERATOR_KEY: &str = "edge-test-operator-key";

/// A running edge process; killed on drop.
pub struct Edge {
    child: Child,
    pub base: String,
    addr: String,
    /// Its data dir, where the disk cache lives (kept across [`Edge::restart`]).
    pub data_dir: tempfile::TempDir,
    /// `edge` and its arguments, to start it again the same way.
    args: Vec<String>,
    log: tempfile::NamedTempFile,
}

impl Edge {
    /// `mediahost edge --origin <origin> --listen <free port>`, waited for until healthy.
    pub fn start(origin: &Server) -> Edge {
        Self::start_with(origin, &[])
    }

    /// Like [`Edge::start`], with `extra` arguments (e.g. `--cache-bytes`).
    pub fn start_with(origin: &Server, extra: &[&str]) -> Edge {
        Self::start_at(origin, &format!("127.0.0.1:{}", free_port()), extra)
    }

    /// Like [`Edge::start_with`], listening on `addr`.
    pub fn start_at(origin: &Server, addr: &str, extra: &[&str]) -> Edge {
        let addr = addr.to_owned();
        let data_dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![
            "edge".into(),
            "--origin".into(),
            origin.base.clone(),
            "--listen".into(),
            addr.clone(),
            "--data-dir".into(),
            data_dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut edge = Edge {
            child: Self::spawn(&args, &log),
            base: format!("http://{addr}"),
            addr,
            data_dir,
            args,
            log,
        };
        edge.wait_healthy();
        edge
    }

    fn spawn(args: &[String], log: &tempfile::NamedTempFile) -> Child {
        Command::new(BIN)
            .args(args)
            .env("MEDIAHOST_OPERATOR_KEY", OPERATOR_KEY)
            .env_remove("MEDIAHOST_CONFIG")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start mediahost edge")
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_ok(&self.addr, "/healthz") {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("edge exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "edge not healthy:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the edge (SIGKILL, as in a crash) and starts it again with the same arguments,
    /// address and data dir.
    pub fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(&self.args, &self.log);
        self.wait_healthy();
    }

    /// The edge's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The value of a counter or gauge in the edge's `/metrics`, named with its labels if it
    /// has any (`name{label="value"}`); 0 when absent, as Prometheus exporters omit counters
    /// never incremented.
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
