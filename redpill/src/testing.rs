//! Test support: a real `redis-server` on a free port in a temporary directory, killed on drop.
//!
//! Enabled by the `test-support` feature. Uses the `redis-server` on the PATH, or the one
//! named by `REDIS_SERVER`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;

/// How a test server persists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk: a restart starts empty.
    None,
    /// AOF with `appendfsync always`: every acknowledged write survives kill -9.
    AofAlways,
    /// AOF with `appendfsync everysec`.
    AofEverySec,
}

/// A `redis-server` of the test's own.
pub struct TestRedis {
    dir: tempfile::TempDir,
    port: u16,
    persistence: Persistence,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts a server with no persistence.
    pub fn start() -> TestRedis {
        Self::start_with(Persistence::None)
    }

    /// Starts a server with AOF, `appendfsync always`.
    pub fn start_with_aof() -> TestRedis {
        Self::start_with(Persistence::AofAlways)
    }

    /// Starts a server with the given persistence.
    pub fn start_with(persistence: Persistence) -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("redpill-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut server = TestRedis {
            dir,
            port: free_port(),
            persistence,
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A redpill config for this server with timings short enough for tests:
    /// consumer TTL 1 s, reap every 200 ms, poll every 50 ms, reconnect at most every 200 ms.
    pub fn config(&self) -> Config {
        Config::default()
            .set_url(self.url())
            .set_consumer_ttl(Duration::from_secs(1))
            .set_reap_interval(Duration::from_millis(200))
            .set_poll_interval(Duration::from_millis(50))
            .set_retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .set_response_timeout(Duration::from_secs(2))
            .set_connect_timeout(Duration::from_millis(500))
            .set_reconnect_max_delay(Duration::from_millis(200))
    }

    /// Kills the server with SIGKILL (no shutdown, no final fsync).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL and starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the server again after [`TestRedis::kill`], on the same port and data.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "the test redis-server is already running"
        );
        self.spawn();
    }

    /// Sends one command over a fresh connection and returns the raw RESP reply.
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the test redis-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream
            .write_all(request.as_bytes())
            .expect("send to the test redis-server");
        let mut reply = vec![0u8; 64 * 1024];
        let read = stream
            .read(&mut reply)
            .expect("read from the test redis-server");
        String::from_utf8_lossy(&reply[..read]).into_owned()
    }

    fn spawn(&mut self) {
        let binary = std::env::var_os("REDIS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let (appendonly, fsync) = match self.persistence {
            Persistence::None => ("no", "everysec"),
            Persistence::AofAlways => ("yes", "always"),
            Persistence::AofEverySec => ("yes", "everysec"),
        };
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let log = self
            .dir
            .path()
            .join("redis.log")
            .to_string_lossy()
            .into_owned();
        let child = Command::new(&binary)
            .args([
                "--port", &port,
                "--bind", "127.0.0.1",
                "--dir", &dir,
                "--logfile", &log,
                "--save", "",
                "--appendonly", appendonly,
                "--appendfsync", fsync,
                "--daemonize", "no",
                "--protected-mode", "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {}: {err}. Install Redis (apt-get install redis-server) or set REDIS_SERVER to its path",
                    binary.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut pong = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!(
                    "redis-server exited at start-up ({status}) on port {}:\n{log}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Calls `check` every 20 ms until it returns `Some`, and returns that value.
///
/// # Panics
///
/// If `check` has not returned `Some` within `timeout`; the message names `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ports handed out start here, below the kernel's ephemeral range (32768 and up on Linux):
/// a port picked by binding port 0 and then released can be taken a moment later as the local
/// port of some outgoing connection, and the server meant for it then fails with "address in
/// use" (seen in CI).
const PORT_BASE: u16 = 20_000;
/// How many ports the range holds.
const PORT_SPAN: u16 = 12_000;

/// A port nothing listens on right now, never handed out twice by this process.
///
/// Ports come from 20000–31999, outside the ephemeral range, in a sequence that starts at an
/// offset taken from the process id, so test binaries running side by side rarely meet; each
/// candidate is bound once to check nobody holds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(2_654_435_761) % u32::from(PORT_SPAN);
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..PORT_SPAN {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % u32::from(PORT_SPAN);
        let port = PORT_BASE + u16::try_from(offset).expect("offset below PORT_SPAN");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_BASE}..{}", PORT_BASE + PORT_SPAN)
}
