//! Test support: a real `redis-server` on a free port in a temporary directory, killed on drop
//! ([`TestRedis`]), a real Redis Cluster of such servers ([`TestCluster`]), and the one of the
//! two a suite runs on, chosen by `GORGON_TEST_REDIS` ([`TestBackend`]).
//!
//! Enabled by the `test-support` feature. Uses the `redis-server` on the PATH, or the one
//! named by `REDIS_SERVER`, and for a cluster the `redis-cli` on the PATH, or `REDIS_CLI`.

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
    /// Further `redis-server` arguments (a cluster node's).
    extra: Vec<String>,
    /// An address to listen on besides 127.0.0.1 (a test network's).
    also_bind: Option<String>,
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
        Self::start_as(persistence, Vec::new(), None)
    }

    /// Starts a server with no persistence that listens on `address` as well as on 127.0.0.1:
    /// an address of a test network (`mesh_tests::hosts`), for clients on other "hosts".
    pub fn start_also_on(address: &str) -> TestRedis {
        Self::start_as(Persistence::None, Vec::new(), Some(address.to_owned()))
    }

    /// Starts a server with the given persistence, further `redis-server` arguments (a
    /// cluster node's), and an address to listen on besides 127.0.0.1.
    fn start_as(
        persistence: Persistence,
        extra: Vec<String>,
        also_bind: Option<String>,
    ) -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("redpill-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut server = TestRedis {
            dir,
            port: free_port(),
            persistence,
            extra,
            also_bind,
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

    /// Stops the server with SIGSTOP: it holds its connections and answers nothing, as a
    /// machine that hangs would, until [`TestRedis::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a server paused by [`TestRedis::pause`] go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the test redis-server is running");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
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
    ///
    /// # Panics
    ///
    /// If the server does not answer within 5 s.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args, Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "the test redis-server on port {} did not answer {args:?}",
                    self.port
                )
            })
    }

    /// Waits until `replicas` replicas acknowledge a write to this master, as `WAIT` counts
    /// them. A replica the master lists as `state=online` is not counted yet until its first
    /// acknowledgement after the sync ("Waiting for REPLCONF ACK from slave to enable
    /// streaming"), up to a second later.
    ///
    /// # Panics
    ///
    /// If they do not within `timeout`.
    pub fn wait_for_replicas(&self, replicas: usize, timeout: Duration) {
        let started = std::time::Instant::now();
        let wanted = format!(":{replicas}\r\n");
        loop {
            // A write and its WAIT, on one connection: WAIT counts that connection's writes.
            let reply = self.try_commands(
                &[
                    &["INCR", "redpill:test:replicated"],
                    &["WAIT", &replicas.to_string(), "100"],
                ],
                Duration::from_secs(5),
            );
            if reply.is_some_and(|reply| reply.ends_with(&wanted)) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{replicas} replicas of the test redis-server on port {} never acknowledged a write",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`TestRedis::command`], or `None` when the server does not answer within `timeout`
    /// (killed, or paused).
    fn try_command(&self, args: &[&str], timeout: Duration) -> Option<String> {
        self.try_commands(&[args], timeout)
    }

    /// Sends `commands` pipelined over one fresh connection and returns the raw RESP replies
    /// once there are as many lines as commands (each command here answers one line).
    fn try_commands(&self, commands: &[&[&str]], timeout: Duration) -> Option<String> {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        let mut request = String::new();
        for args in commands {
            request.push_str(&format!("*{}\r\n", args.len()));
            for arg in *args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
        }
        stream.write_all(request.as_bytes()).ok()?;
        if commands.len() > 1 {
            let mut replies = Vec::new();
            let mut chunk = [0u8; 4096];
            while replies.iter().filter(|&&byte| byte == b'\n').count() < commands.len() {
                let read = stream.read(&mut chunk).ok()?;
                if read == 0 {
                    return None;
                }
                replies.extend_from_slice(&chunk[..read]);
            }
            return Some(String::from_utf8_lossy(&replies).into_owned());
        }
        let mut reply = vec![0u8; 64 * 1024];
        let read = stream.read(&mut reply).ok()?;
        (read > 0).then(|| String::from_utf8_lossy(&reply[..read]).into_owned())
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
            .args(["--bind", "127.0.0.1"])
            .args(&self.also_bind)
            .args([
                "--port", &port,
                "--dir", &dir,
                "--logfile", &log,
                "--save", "",
                "--appendonly", appendonly,
                "--appendfsync", fsync,
                "--daemonize", "no",
                // Off only for a server that also listens on a test network (clients of the
                // test's own hosts), where protected mode would refuse every one.
                "--protected-mode", if self.also_bind.is_some() { "no" } else { "yes" },
            ])
            .args(&self.extra)
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

/// The Redis a test runs on, chosen by the environment so that one test serves both:
/// one `redis-server`, or with `GORGON_TEST_REDIS=cluster` a Redis Cluster of three masters
/// (no replicas: the failover tests start their own [`TestCluster`]). Tests that restart or
/// kill the one server use [`TestRedis`] directly.
pub enum TestBackend {
    /// One server.
    Single(TestRedis),
    /// A cluster.
    Cluster(TestCluster),
}

impl TestBackend {
    /// The environment variable that chooses the backend: `cluster`, or `single` (the default).
    pub const ENV: &'static str = "GORGON_TEST_REDIS";

    /// True when `GORGON_TEST_REDIS` asks for a cluster.
    pub fn cluster_requested() -> bool {
        match std::env::var(Self::ENV) {
            Ok(value) if value == "cluster" => true,
            Ok(value) if value.is_empty() || value == "single" => false,
            Ok(value) => panic!("{}={value}: use cluster or single", Self::ENV),
            Err(_) => false,
        }
    }

    /// Starts the backend the environment asks for, with no persistence.
    pub fn start() -> TestBackend {
        if Self::cluster_requested() {
            TestBackend::Cluster(TestCluster::start(3, 0))
        } else {
            TestBackend::Single(TestRedis::start())
        }
    }

    /// The URL roles and clients are given: the server's, or one node's of the cluster.
    pub fn url(&self) -> String {
        match self {
            TestBackend::Single(redis) => redis.url(),
            TestBackend::Cluster(cluster) => cluster.url(),
        }
    }

    /// A redpill config with [`TestRedis::config`]'s short timings.
    pub fn config(&self) -> Config {
        match self {
            TestBackend::Single(redis) => redis.config(),
            TestBackend::Cluster(cluster) => cluster.config(),
        }
    }

    /// True on a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, TestBackend::Cluster(_))
    }

    /// Sends `args` to the node that serves `key` and returns its raw reply.
    pub fn command_for(&self, key: &str, args: &[&str]) -> String {
        match self {
            TestBackend::Single(redis) => redis.command(args),
            TestBackend::Cluster(cluster) => {
                let node = cluster
                    .master_of(crate::keys::slot(key.as_bytes()))
                    .expect("a master serves every slot");
                cluster.node(node).command(args)
            }
        }
    }

    /// Sends `args` to the server, or to every master of the cluster, and returns each raw
    /// reply (for SCRIPT FLUSH, or a count of keys across the cluster).
    pub fn command_each(&self, args: &[&str]) -> Vec<String> {
        match self {
            TestBackend::Single(redis) => vec![redis.command(args)],
            TestBackend::Cluster(cluster) => cluster
                .masters()
                .into_iter()
                .map(|node| cluster.node(node).command(args))
                .collect(),
        }
    }

    /// The cluster, for a test that kills, pauses or reshards its nodes.
    ///
    /// # Panics
    /// On a single server.
    pub fn cluster_mut(&mut self) -> &mut TestCluster {
        match self {
            TestBackend::Cluster(cluster) => cluster,
            TestBackend::Single(_) => panic!("this test needs a Redis Cluster"),
        }
    }

    /// The one server, for a test that reads its INFO.
    ///
    /// # Panics
    /// On a cluster.
    pub fn single(&self) -> &TestRedis {
        match self {
            TestBackend::Single(redis) => redis,
            TestBackend::Cluster(_) => panic!("this test needs a single redis-server"),
        }
    }

    /// The one server, for a test that must kill or restart it.
    ///
    /// # Panics
    /// On a cluster.
    pub fn single_mut(&mut self) -> &mut TestRedis {
        match self {
            TestBackend::Single(redis) => redis,
            TestBackend::Cluster(_) => panic!("this test needs a single redis-server"),
        }
    }
}

impl From<TestRedis> for TestBackend {
    fn from(redis: TestRedis) -> TestBackend {
        TestBackend::Single(redis)
    }
}

/// A real Redis Cluster for a test: `masters` masters with `replicas` replicas each, every
/// node a [`TestRedis`] with `cluster-enabled yes` on free ports (the cluster bus on a port of
/// its own, `cluster-port`), made one cluster by `redis-cli --cluster create`, and killed on
/// drop. A node is named by its index, in start order; which is a master changes with
/// failovers ([`TestCluster::masters`]).
pub struct TestCluster {
    nodes: Vec<TestRedis>,
    node_timeout: Duration,
    /// The address the nodes announce to clients and to each other (127.0.0.1 unless started
    /// with [`TestCluster::start_announcing`]).
    address: String,
}

impl TestCluster {
    /// How long a node may not answer before the others take it for failed, unless set with
    /// [`TestCluster::start_with`]: short, so failover tests run in seconds.
    pub const NODE_TIMEOUT: Duration = Duration::from_millis(1_000);

    /// Starts a cluster of `masters` masters (at least 3, as `redis-cli --cluster create`
    /// requires) with `replicas` replicas each, no persistence, [`Self::NODE_TIMEOUT`], and
    /// waits until every node sees every slot served.
    pub fn start(masters: usize, replicas: usize) -> TestCluster {
        Self::start_with(masters, replicas, Persistence::None, Self::NODE_TIMEOUT)
    }

    /// [`TestCluster::start`] with the nodes' persistence and `cluster-node-timeout`.
    pub fn start_with(
        masters: usize,
        replicas: usize,
        persistence: Persistence,
        node_timeout: Duration,
    ) -> TestCluster {
        Self::start_as(masters, replicas, persistence, node_timeout, None)
    }

    /// [`TestCluster::start_with`] on a test network: every node listens on `address` as
    /// well as on 127.0.0.1 and announces `address` (`cluster-announce-ip`), so clients on
    /// the network's hosts (`mesh_tests::hosts`) given [`TestCluster::url`] reach every node.
    pub fn start_announcing(
        masters: usize,
        replicas: usize,
        persistence: Persistence,
        node_timeout: Duration,
        address: &str,
    ) -> TestCluster {
        Self::start_as(masters, replicas, persistence, node_timeout, Some(address))
    }

    fn start_as(
        masters: usize,
        replicas: usize,
        persistence: Persistence,
        node_timeout: Duration,
        announce: Option<&str>,
    ) -> TestCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let address = announce.unwrap_or("127.0.0.1").to_owned();
        let nodes: Vec<TestRedis> = (0..masters * (1 + replicas))
            .map(|_| {
                let mut args: Vec<String> = vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    "nodes.conf".into(),
                    "--cluster-node-timeout".into(),
                    node_timeout.as_millis().to_string(),
                    "--cluster-port".into(),
                    free_port().to_string(),
                ];
                if let Some(address) = announce {
                    args.extend(["--cluster-announce-ip".into(), address.to_owned()]);
                }
                TestRedis::start_as(persistence, args, announce.map(str::to_owned))
            })
            .collect();
        let cli = redis_cli();
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("{address}:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {}: {err}. Install redis-tools (apt-get install redis-tools) or set REDIS_CLI to its path",
                    cli.display()
                )
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = TestCluster {
            nodes,
            node_timeout,
            address,
        };
        cluster.wait_until_ok(Duration::from_secs(30));
        // A replica that never synced would not be allowed to take over: wait for every one.
        wait_for(
            Duration::from_secs(30),
            "every replica to sync with its master",
            || {
                cluster.nodes.iter().all(|node| {
                    let info = node.command(&["INFO", "replication"]);
                    info.contains("role:master") || info.contains("master_link_status:up")
                })
            },
        );
        cluster
    }

    /// The node with index `index`.
    pub fn node(&self, index: usize) -> &TestRedis {
        &self.nodes[index]
    }

    /// The node with index `index`, to kill, pause or restart it.
    pub fn node_mut(&mut self, index: usize) -> &mut TestRedis {
        &mut self.nodes[index]
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The `cluster-node-timeout` the nodes run with.
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// The URL of node 0 at the address the nodes announce: a client given any one node
    /// finds the others.
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.address, self.nodes[0].port())
    }

    /// A redpill config for the cluster, with [`TestRedis::config`]'s short timings.
    pub fn config(&self) -> Config {
        self.nodes[0].config().set_url(self.url())
    }

    /// The indexes of the nodes that are masters serving slots now, as the first running node
    /// that answers sees it, in index order.
    pub fn masters(&self) -> Vec<usize> {
        let mut masters: Vec<usize> = self
            .view()
            .into_iter()
            .filter(|node| node.master && !node.failed && !node.slots.is_empty())
            .filter_map(|node| self.index_of(node.port))
            .collect();
        masters.sort_unstable();
        masters
    }

    /// The index of the master serving `slot` now, as the first running node that answers
    /// sees it.
    pub fn master_of(&self, slot: u16) -> Option<usize> {
        self.view()
            .into_iter()
            .find(|node| {
                node.master
                    && !node.failed
                    && node
                        .slots
                        .iter()
                        .any(|(from, to)| (*from..=*to).contains(&slot))
            })
            .and_then(|node| self.index_of(node.port))
    }

    /// The indexes of the replicas of the master with index `master`.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let view = self.view();
        let Some(id) = view
            .iter()
            .find(|node| node.port == self.nodes[master].port())
            .map(|node| node.id.clone())
        else {
            return Vec::new();
        };
        view.into_iter()
            .filter(|node| node.master_id.as_deref() == Some(id.as_str()))
            .filter_map(|node| self.index_of(node.port))
            .collect()
    }

    /// Makes replica `replica` take over from its master, as an operator's manual failover
    /// does (`CLUSTER FAILOVER`), and waits until the cluster serves every slot again.
    pub fn failover(&self, replica: usize) {
        wait_for(
            Duration::from_secs(30),
            "the replica to sync with its master",
            || {
                self.nodes[replica]
                    .command(&["INFO", "replication"])
                    .contains("master_link_status:up")
            },
        );
        let reply = self.nodes[replica].command(&["CLUSTER", "FAILOVER"]);
        assert!(
            reply.starts_with("+OK"),
            "CLUSTER FAILOVER on node {replica}: {reply}"
        );
        wait_for(Duration::from_secs(30), "the failover", || {
            self.masters().contains(&replica)
        });
        self.wait_until_ok(Duration::from_secs(30));
    }

    /// Moves every slot of master `from` to master `to` with `redis-cli --cluster reshard`,
    /// as an operator drains a master, while clients go on; returns how many slots moved.
    pub fn reshard_all(&self, from: usize, to: usize) -> usize {
        let view = self.view();
        let node = |index: usize| {
            let port = self.nodes[index].port();
            view.iter()
                .find(|node| node.port == port)
                .expect("the node is in the cluster")
        };
        let slots: usize = node(from)
            .slots
            .iter()
            .map(|(first, last)| usize::from(last - first) + 1)
            .sum();
        let output = Command::new(redis_cli())
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", self.nodes[to].port()))
            .args([
                "--cluster-from",
                &node(from).id,
                "--cluster-to",
                &node(to).id,
            ])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            output.status.success(),
            "redis-cli --cluster reshard failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.wait_until_ok(Duration::from_secs(30));
        slots
    }

    /// Moves slot `slot` to master `to`, keys and all, as `redis-cli --cluster reshard` does
    /// for each slot it moves: the target imports, the source migrates, the keys go over with
    /// MIGRATE in batches (a client asking for a moved key meanwhile gets ASK), and then
    /// every master is told the slot's new owner (clients get MOVED from then on).
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.master_of(slot).expect("a master serves the slot");
        if from == to {
            return;
        }
        let id = |index: usize| {
            let port = self.nodes[index].port();
            self.view()
                .into_iter()
                .find(|node| node.port == port)
                .map(|node| node.id)
                .expect("the node is in the cluster")
        };
        let (from_id, to_id) = (id(from), id(to));
        let slot_text = slot.to_string();
        let ok = |reply: String, what: &str| {
            assert!(reply.starts_with("+OK"), "{what}: {reply}");
        };
        ok(
            self.nodes[to].command(&["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &from_id]),
            "SETSLOT IMPORTING",
        );
        ok(
            self.nodes[from].command(&["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &to_id]),
            "SETSLOT MIGRATING",
        );
        let port = self.nodes[to].port().to_string();
        loop {
            let reply = self.nodes[from].command(&["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"]);
            let keys = bulk_strings(&reply);
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "10000", "KEYS"];
            migrate.extend(keys.iter().map(String::as_str));
            ok(self.nodes[from].command(&migrate), "MIGRATE");
        }
        for master in [to, from] {
            ok(
                self.nodes[master].command(&["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]),
                "SETSLOT NODE",
            );
        }
        for master in self.masters() {
            if master != to && master != from {
                ok(
                    self.nodes[master].command(&["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]),
                    "SETSLOT NODE",
                );
            }
        }
        wait_for(
            Duration::from_secs(30),
            "every node to see the slot moved",
            || self.master_of(slot) == Some(to),
        );
    }

    /// Waits until every replica has received everything its master has (equal replication
    /// offsets), so that a failover that follows loses nothing.
    pub fn sync_replicas(&self) {
        let offset = |info: &str, field: &str| -> Option<u64> {
            info.lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().parse().ok())
        };
        wait_for(Duration::from_secs(30), "every replica to catch up", || {
            self.masters().into_iter().all(|master| {
                let Some(target) = offset(
                    &self.nodes[master].command(&["INFO", "replication"]),
                    "master_repl_offset:",
                ) else {
                    return false;
                };
                self.replicas_of(master).into_iter().all(|replica| {
                    offset(
                        &self.nodes[replica].command(&["INFO", "replication"]),
                        "slave_repl_offset:",
                    ) == Some(target)
                })
            })
        });
    }

    /// Waits until every running node that answers says `cluster_state:ok` (a paused node
    /// answers nothing and is left out).
    ///
    /// # Panics
    ///
    /// If that takes longer than `timeout`.
    pub fn wait_until_ok(&self, timeout: Duration) {
        wait_for(timeout, "cluster_state:ok on every running node", || {
            self.nodes
                .iter()
                .filter(|node| node.pid().is_some())
                .all(|node| {
                    node.try_command(&["CLUSTER", "INFO"], Duration::from_millis(500))
                        .is_none_or(|info| info.contains("cluster_state:ok"))
                })
        });
    }

    fn index_of(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|node| node.port() == port)
    }

    /// `CLUSTER NODES` as the first running node that answers sees it.
    fn view(&self) -> Vec<ClusterNode> {
        self.nodes
            .iter()
            .filter(|node| node.pid().is_some())
            .filter_map(|node| node.try_command(&["CLUSTER", "NODES"], Duration::from_millis(500)))
            .find(|reply| reply.starts_with('$'))
            .map(|reply| {
                reply
                    .lines()
                    .skip(1)
                    .filter_map(ClusterNode::parse)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The CPU time (user and system) process `pid` has used so far, from `/proc/<pid>/stat`;
/// `None` once it is gone (Linux only).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are the 12th and 13th of them, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(
        ticks * 1_000_000 / clock_ticks_per_second(),
    ))
}

/// `getconf CLK_TCK`, asked once; 100 (Linux's value) if that fails.
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// `redis-cli`: `REDIS_CLI`, or the one on the PATH.
fn redis_cli() -> PathBuf {
    std::env::var_os("REDIS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

/// The bulk strings of a raw RESP array reply (`*2\r\n$1\r\na\r\n$1\r\nb\r\n` → a, b).
fn bulk_strings(reply: &str) -> Vec<String> {
    let mut lines = reply.split("\r\n");
    let mut strings = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') {
            if let Some(text) = lines.next() {
                strings.push(text.to_owned());
            }
        }
    }
    strings
}

/// One line of `CLUSTER NODES`.
struct ClusterNode {
    id: String,
    port: u16,
    master: bool,
    failed: bool,
    master_id: Option<String>,
    slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot> ...`.
    fn parse(line: &str) -> Option<ClusterNode> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let address = fields[1].split('@').next()?;
        let port = address.rsplit(':').next()?.parse().ok()?;
        let flags = fields[2];
        let slots = fields[8..]
            .iter()
            .filter(|range| !range.starts_with('['))
            .filter_map(|range| match range.split_once('-') {
                Some((from, to)) => Some((from.parse().ok()?, to.parse().ok()?)),
                None => range.parse().ok().map(|slot| (slot, slot)),
            })
            .collect();
        Some(ClusterNode {
            id: fields[0].to_owned(),
            port,
            master: flags.contains("master"),
            failed: flags.contains("fail") && !flags.contains("fail?"),
            master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
            slots,
        })
    }
}

/// Calls `check` every 50 ms until it returns true.
///
/// # Panics
///
/// If it has not within `timeout`; the message names `what`.
fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
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
