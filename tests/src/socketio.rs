//! socket.io clients on the official `socket.io-client` (npm, pinned in
//! `tests/socketio/package-lock.json`), run by Node from `tests/socketio/clients.mjs`, and
//! notifier processes for them to connect to.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redpill::testing::free_port;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::mesh::Mesh;
use crate::RoleProcess;

/// A notifier process and its URL.
pub struct Notifier {
    /// The process.
    pub process: RoleProcess,
    /// Its port.
    pub port: u16,
    /// `http://<address>:<port>`: 127.0.0.1, or its host's address.
    pub url: String,
    extra: Vec<(String, String)>,
    /// The test host it runs on ([`Mesh::start_across`]), if not on this machine.
    host: Option<usize>,
}

impl Notifier {
    /// Starts a notifier for `mesh` on a free port with `extra` environment, and waits until
    /// it serves.
    pub async fn start(mesh: &Mesh, extra: &[(&str, &str)]) -> Notifier {
        Notifier::start_at(mesh, None, extra).await
    }

    /// The same on host `host` of a mesh that runs across hosts.
    pub async fn start_on(mesh: &Mesh, host: usize, extra: &[(&str, &str)]) -> Notifier {
        Notifier::start_at(mesh, Some(host), extra).await
    }

    async fn start_at(mesh: &Mesh, host: Option<usize>, extra: &[(&str, &str)]) -> Notifier {
        let port = free_port();
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain([("GORGON_NOTIFIER_PORT".to_owned(), port.to_string())])
            .collect();
        let process = spawn(mesh, host, &extra);
        serving(&process).await;
        let address = match (host, &mesh.hosts) {
            (Some(host), Some(hosts)) => hosts.host(host).address().to_string(),
            _ => "127.0.0.1".to_owned(),
        };
        Notifier {
            process,
            port,
            url: format!("http://{address}:{port}"),
            extra,
            host,
        }
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub async fn kill(&mut self) {
        self.process.signal("KILL");
        self.process.wait_for_exit(Duration::from_secs(10)).await;
    }

    /// Starts it again on the same port, with the same environment, and waits until it
    /// serves.
    pub async fn restart(&mut self, mesh: &Mesh) {
        self.respawn(mesh);
        serving(&self.process).await;
    }

    /// Starts it again on the same port, with the same environment, without waiting (it
    /// serves once it reaches Redis).
    pub fn respawn(&mut self, mesh: &Mesh) {
        self.process = spawn(mesh, self.host, &self.extra);
    }
}

fn spawn(mesh: &Mesh, host: Option<usize>, extra: &[(String, String)]) -> RoleProcess {
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match host {
        Some(host) => mesh.spawn_on_with(host, "notifier", &extra),
        None => mesh.spawn_with("notifier", &extra),
    }
}

/// Waits until `process` serves socket.io.
async fn serving(process: &RoleProcess) {
    process
        .wait_for_output("serving socket.io", Duration::from_secs(20))
        .await;
}

/// The folder of the Node clients, with its `node_modules` installed.
fn clients_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("socketio");
    assert!(
        dir.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed: run `scripts/deps test` (scripts/test does)"
    );
    dir
}

/// A running `clients.mjs`: its JSON lines as they come.
pub struct Clients {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Clients {
    /// Starts `clients.mjs` with `settings` (see the script's header).
    pub fn start(settings: &Value) -> Clients {
        let dir = clients_dir();
        let mut child = Command::new("node")
            .arg(dir.join("clients.mjs"))
            .arg(settings.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (install Node.js)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let into = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("clients.mjs printed {line:?}"));
                into.lock().unwrap().push(value);
            }
        });
        let errors = child.stderr.take().expect("stderr");
        let into = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut reader = BufReader::new(errors).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("clients.mjs: {line}");
                let mut text = into.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Clients {
            child,
            lines,
            stderr,
        }
    }

    /// Waits for the line whose `event` is `event`, and returns it.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what the script wrote on stderr.
    pub async fn wait_for(&self, event: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = {
                let lines = self.lines.lock().unwrap();
                lines.iter().find(|line| line["event"] == event).cloned()
            };
            if let Some(line) = found {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "clients.mjs did not print {event:?} within {timeout:?}; its stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the script to end and returns its last line.
    pub async fn finish(mut self, timeout: Duration) -> Value {
        let report = self.wait_for("done", timeout).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        report
    }
}

/// Runs one probe (`mode: "probe"`) and returns its report.
pub async fn probe(settings: &Value) -> Value {
    let mut settings = settings.clone();
    settings["mode"] = Value::from("probe");
    let clients = Clients::start(&settings);
    clients.wait_for("probe", Duration::from_secs(30)).await
}
