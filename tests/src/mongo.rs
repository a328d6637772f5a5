//! A MongoDB-wire server of the test's own: on a free port, its data in a temporary directory,
//! killed on drop, like redpill's `TestRedis`.
//!
//! It runs `mongod` when that is on the PATH. Otherwise it runs nx-27017, a MongoDB-wire
//! server on SQLite from PyPI: the one named by `GORGON_NX_27017`, else
//! `<workspace>/.venv/bin/nx-27017`, which `scripts/deps test` installs when there is no `mongod`.

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;
use redpill::testing::free_port;

/// The database the tests use: the path of [`TestMongo::uri`].
pub const DATABASE: &str = "gorgon-test";

/// How long [`TestMongo::start`] and [`TestMongo::start_again`] wait for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The file in the temporary directory that gathers the server's stdout and stderr.
const OUTPUT_FILE: &str = "server.out";

/// Which server a [`TestMongo`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MongoKind {
    /// A real `mongod` from the PATH.
    Mongod(PathBuf),
    /// nx-27017, MongoDB's wire protocol over SQLite; not every command behaves as in MongoDB.
    Nx27017(PathBuf),
}

impl MongoKind {
    /// The server on this machine: `mongod` on the PATH, else nx-27017 from `GORGON_NX_27017`
    /// or the workspace's `.venv`.
    ///
    /// # Panics
    ///
    /// If there is neither; the message says how to install nx-27017.
    pub fn find() -> MongoKind {
        if let Some(mongod) = on_path("mongod") {
            return MongoKind::Mongod(mongod);
        }
        if let Some(nx) = std::env::var_os("GORGON_NX_27017") {
            let nx = PathBuf::from(nx);
            assert!(
                nx.is_file(),
                "GORGON_NX_27017 names {}, which is not a file; point it at an nx-27017 executable \
                 or unset it to use <workspace>/.venv/bin/nx-27017",
                nx.display()
            );
            return MongoKind::Nx27017(nx);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("mesh-tests is inside the workspace");
        let nx = workspace.join(".venv/bin/nx-27017");
        assert!(
            nx.is_file(),
            "no MongoDB server for the tests: no `mongod` on the PATH and no {}. Run `scripts/deps test`, \
             or in {}: `python3 -m venv .venv && .venv/bin/pip install nx-27017` \
             (or set GORGON_NX_27017 to an nx-27017 executable)",
            nx.display(),
            workspace.display()
        );
        MongoKind::Nx27017(nx)
    }

    /// The server's executable.
    pub fn binary(&self) -> &Path {
        match self {
            MongoKind::Mongod(path) | MongoKind::Nx27017(path) => path,
        }
    }
}

impl fmt::Display for MongoKind {
    /// `mongod` or `nx-27017`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MongoKind::Mongod(_) => "mongod",
            MongoKind::Nx27017(_) => "nx-27017",
        })
    }
}

/// A MongoDB-wire server of the test's own (see the module doc for which one).
///
/// Everything it writes stays in its temporary directory: the data under `data/`, its
/// output in `server.out`, and for nx-27017 also its log and pid files, so tests in parallel
/// never share a file.
pub struct TestMongo {
    dir: tempfile::TempDir,
    port: u16,
    kind: MongoKind,
    child: Option<Child>,
}

impl TestMongo {
    /// Starts a server on a free port with an empty data directory, and waits until it
    /// answers `ping`.
    ///
    /// # Panics
    ///
    /// If there is no server to run (see [`MongoKind::find`]), or it does not answer within
    /// 20 s; the message then holds the server's output.
    pub fn start() -> TestMongo {
        let dir = tempfile::Builder::new()
            .prefix("gorgon-mongo-")
            .tempdir()
            .expect("create a temporary directory for the MongoDB server");
        std::fs::create_dir(dir.path().join("data")).expect("create the data directory");
        let mut server = TestMongo {
            dir,
            port: free_port(),
            kind: MongoKind::find(),
            child: None,
        };
        server.spawn();
        server
    }

    /// `mongodb://127.0.0.1:<port>/gorgon-test`: the server, and [`DATABASE`] as the default
    /// database.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// A driver client with timeouts short enough for tests: server selection and connecting
    /// give up after 2 s (the driver's defaults are 30 s and 10 s). While the server is
    /// stopped, a write on a pooled connection fails at once with an I/O error and later
    /// operations after about 2 s; an operation waits out a restart shorter than that. The
    /// same client works again after [`TestMongo::start_again`].
    pub async fn client(&self) -> mongodb::Client {
        let mut options = ClientOptions::parse(self.uri())
            .await
            .expect("parse the test server's URI");
        options.server_selection_timeout = Some(Duration::from_secs(2));
        options.connect_timeout = Some(Duration::from_secs(2));
        options.app_name = Some("gorgon-tests".to_owned());
        mongodb::Client::with_options(options).expect("build a MongoDB client")
    }

    /// The archive's collection, `outputs` of [`DATABASE`], on a new [`TestMongo::client`].
    pub async fn outputs(&self) -> mongodb::Collection<mongodb::bson::Document> {
        self.client().await.database(DATABASE).collection("outputs")
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which server runs.
    pub fn kind(&self) -> &MongoKind {
        &self.kind
    }

    /// The temporary directory: `data/`, `server.out` and nx-27017's log and pid files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server wrote to stdout and stderr so far (nx-27017's log is there too).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(OUTPUT_FILE)).unwrap_or_default()
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits for it to exit. What it
    /// acknowledged stays in the data directory for [`TestMongo::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again after [`TestMongo::stop`], on the same port and data, and waits
    /// until it answers `ping`.
    ///
    /// # Panics
    ///
    /// If it is still running, or does not answer within 20 s.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "the test MongoDB server is already running; stop it first"
        );
        self.spawn();
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let data = dir.join("data");
        let port = self.port.to_string();
        let mut command = Command::new(self.kind.binary());
        match &self.kind {
            MongoKind::Mongod(_) => {
                command
                    .args(["--port", &port, "--bind_ip", "127.0.0.1", "--nounixsocket"])
                    .arg("--dbpath")
                    .arg(&data);
            }
            MongoKind::Nx27017(_) => {
                // The pid file of a killed server names a dead process, which nx-27017 ignores;
                // removing it guards against that pid having been reused meanwhile.
                let pid_file = dir.join("nx-27017.pid");
                let _ = std::fs::remove_file(&pid_file);
                // In the foreground (no `-d`), with every file it writes in `dir`: its
                // defaults are shared files in /tmp.
                command
                    .args(["--host", "127.0.0.1", "-p", &port])
                    .arg("--data-dir")
                    .arg(&data)
                    .arg("--log-file")
                    .arg(dir.join("nx-27017.log"))
                    .arg("--pid-file")
                    .arg(&pid_file);
            }
        }
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(OUTPUT_FILE))
            .expect("create the server's output file");
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("share the output file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {} ({}): {err}. Run `scripts/deps test` to install nx-27017, or put \
                     mongod on the PATH",
                    self.kind,
                    self.kind.binary().display()
                )
            });
        self.child = Some(child);
        self.wait_until_up();
    }

    /// Waits until the server answers `ping` on its port.
    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Err(last_error) = ping(self.port) else {
                return;
            };
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "{} exited at start-up ({status}) on port {}:\n{}",
                    self.kind,
                    self.port,
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "{} did not answer ping on port {} within {START_TIMEOUT:?} (last: {last_error}); \
                     its output:\n{}",
                    self.kind,
                    self.port,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestMongo {
    /// Kills the server; shows its output when a test fails while it runs.
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("output of {} so far:\n{}", self.kind, self.output());
        }
        self.stop();
    }
}

/// Sends `{ping: 1}` to the admin database as one OP_MSG over a fresh connection, without the
/// driver: [`TestMongo::start`] is synchronous and may run inside a tokio runtime.
fn ping(port: u16) -> Result<(), String> {
    /// OP_MSG, the opcode of every command since MongoDB 3.6.
    const OP_MSG: i32 = 2013;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())?;
    let timeout = Some(Duration::from_secs(2));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|err| err.to_string())?;

    let mut body = Vec::new();
    doc! { "ping": 1, "$db": "admin" }
        .to_writer(&mut body)
        .map_err(|err| err.to_string())?;
    // Header (length, request id, response to, opcode), flag bits, section kind 0, the body.
    let length = 16 + 4 + 1 + body.len();
    let mut message = Vec::with_capacity(length);
    for field in [length as i32, 1, 0, OP_MSG] {
        message.extend_from_slice(&field.to_le_bytes());
    }
    message.extend_from_slice(&0u32.to_le_bytes());
    message.push(0);
    message.extend_from_slice(&body);
    stream.write_all(&message).map_err(|err| err.to_string())?;

    let mut header = [0u8; 16];
    stream
        .read_exact(&mut header)
        .map_err(|err| format!("reading the reply: {err}"))?;
    let length = i32::from_le_bytes(header[..4].try_into().unwrap());
    let opcode = i32::from_le_bytes(header[12..].try_into().unwrap());
    let length = usize::try_from(length)
        .ok()
        .filter(|length| (16 + 5..=16 * 1024 * 1024).contains(length))
        .ok_or_else(|| format!("a reply of implausible length {length}"))?;
    let mut reply = vec![0u8; length - 16];
    stream
        .read_exact(&mut reply)
        .map_err(|err| format!("reading the reply: {err}"))?;
    if opcode != OP_MSG || reply[4] != 0 {
        return Err(format!("an unexpected reply (opcode {opcode})"));
    }
    let reply = Document::from_reader(&reply[5..]).map_err(|err| err.to_string())?;
    let ok = reply
        .get("ok")
        .and_then(|ok| match ok {
            mongodb::bson::Bson::Double(ok) => Some(*ok),
            mongodb::bson::Bson::Int32(ok) => Some(f64::from(*ok)),
            mongodb::bson::Bson::Int64(ok) => Some(*ok as f64),
            _ => None,
        })
        .unwrap_or(0.0);
    if ok == 1.0 {
        Ok(())
    } else {
        Err(format!("ping answered {reply}"))
    }
}

/// The first file called `name` in a directory of the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
