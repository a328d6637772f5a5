//! Chaos scenarios: a whole mesh as separate processes (its own Redis and MongoDB, a store, two
//! processors, web_face and a notifier) with short timeouts, the simulator's `chain` scenario
//! as load with its verification, one fault per scenario while the load runs, and one row of
//! figures per scenario.
//!
//! The figures of a row (`docs/reliability.md` defines each):
//! - `sent`, `lost`, `duplicated`, `reordered`, `unexpected`, `effect_mismatches`: the
//!   simulator's verification of every output its socket.io clients received (and what they
//!   read back from history after a `resync`);
//! - `archived`, `archive_missing`, `archive_extra`: MongoDB's documents of the chain against
//!   the outputs the nodes made (their latched seqs);
//! - `detect_ms`: from the fault until the mesh acted on it (another processor holds the
//!   partitions; web_face reports itself not ready; the poison message is dead-lettered);
//!   `null` where nothing has to be detected;
//! - `recover_ms`: from the fault until processing works again everywhere: a probe message
//!   injected into one node of every partition at the moment of the fault has come out of all
//!   of them. For archive faults: from the end of the fault until MongoDB holds every output
//!   made before it ended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use redpill::testing::{Persistence, TestBackend, TestCluster, TestRedis};
use redpill::Lease;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::hosts::Hosts;
use crate::mesh::{Mesh, PARTITIONS};
use crate::mongo::TestMongo;
use crate::socketio::Notifier;

/// The partition lease of the chaos meshes, in milliseconds.
pub const LEASE_MS: u64 = 1_000;
/// Delivery attempts before a message is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;
/// The topology the simulator builds.
const CHAIN: &str = "sim-chain";
/// Nodes in the chain: `link-0` to `link-7`, as the simulator names them (one digit below ten).
const CHAIN_LENGTH: usize = 8;
/// The topology of the probe nodes, one per partition.
const PROBES: &str = "probes";
/// How long into the load the fault comes.
const FAULT_AFTER: Duration = Duration::from_secs(3);
/// How long the load goes on after the fault ended.
const LOAD_AFTER: Duration = Duration::from_secs(4);
/// `cluster-node-timeout` of the cluster scenarios.
pub const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_secs(3);
/// The partition queues' high-water mark in the slow-consumer scenario.
const SLOW_HIGH_WATER: u64 = 2_000;

/// The figures of a row that must be 0 wherever Redis keeps what it acknowledged: nothing
/// lost, duplicated, reordered or made up, every effect once, the archive exact.
pub const MUST_BE_ZERO: [&str; 7] = [
    "lost",
    "duplicated",
    "reordered",
    "unexpected",
    "effect_mismatches",
    "archive_missing",
    "archive_extra",
];

/// One fault, injected while the load runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A processor SIGKILLed.
    ProcessorKill,
    /// A processor SIGSTOPped past its lease, then SIGCONT.
    ProcessorPause,
    /// Two processors join, then leave.
    ProcessorsJoinLeave,
    /// Redis SIGKILLed and started again, `appendfsync always`.
    RedisKillAlways,
    /// Redis SIGKILLed and started again, `appendfsync everysec`.
    RedisKillEverySec,
    /// Redis shut down (SHUTDOWN, which writes the AOF) and started again.
    RedisRestart,
    /// MongoDB down for a while.
    MongoDown,
    /// The store SIGKILLed while it archives, and started again.
    StoreKill,
    /// The notifier SIGKILLed and started again under 100 clients.
    NotifierKill,
    /// A message its function fails on, every time.
    Poison,
    /// Processors slower than the load: the entry queue fills to its high-water mark.
    SlowConsumer,
    /// 10 000 malformed requests during the load.
    Malformed,
    /// Every role process, Redis and MongoDB SIGKILLed at once, then started again in a
    /// random order.
    KillEverything,
    /// On a Redis Cluster (3 masters, a replica each, AOF always): the master of the chain's
    /// entry partition SIGKILLed; its replica takes over. No replica acknowledgements.
    ClusterMasterKill,
    /// The same with `GORGON_REPLICA_ACKS=1`: every acknowledged write was on the replica.
    ClusterMasterKillAcked,
    /// On a Redis Cluster: the replica of the entry partition's master SIGKILLed.
    ClusterReplicaKill,
    /// On a Redis Cluster: every slot of the entry partition's master moved to another master
    /// by `redis-cli --cluster reshard` under load.
    ClusterReshard,
    /// On a Redis Cluster: the entry partition's master SIGSTOPped past
    /// `cluster-node-timeout` (its replica takes over), then SIGCONT (it comes back as a
    /// replica).
    ClusterMasterPause,
    /// The same with `GORGON_REPLICA_ACKS=1`.
    ClusterMasterPauseAcked,
    /// The roles on three hosts of their own (network namespaces) and Redis Cluster on the
    /// hosts' network: the third host, with a processor and a notifier, cut off the network
    /// past its lease, then put back.
    HostCut,
}

impl Fault {
    /// Every scenario, in the order of the table.
    pub const ALL: [Fault; 20] = [
        Fault::ProcessorKill,
        Fault::ProcessorPause,
        Fault::ProcessorsJoinLeave,
        Fault::RedisKillAlways,
        Fault::RedisKillEverySec,
        Fault::RedisRestart,
        Fault::MongoDown,
        Fault::StoreKill,
        Fault::NotifierKill,
        Fault::Poison,
        Fault::SlowConsumer,
        Fault::Malformed,
        Fault::KillEverything,
        Fault::ClusterMasterKill,
        Fault::ClusterMasterKillAcked,
        Fault::ClusterReplicaKill,
        Fault::ClusterReshard,
        Fault::ClusterMasterPause,
        Fault::ClusterMasterPauseAcked,
        Fault::HostCut,
    ];

    /// The scenario's name, as the harness prints it and takes it on its command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ProcessorKill => "processor-kill",
            Fault::ProcessorPause => "processor-pause",
            Fault::ProcessorsJoinLeave => "processors-join-leave",
            Fault::RedisKillAlways => "redis-kill-always",
            Fault::RedisKillEverySec => "redis-kill-everysec",
            Fault::RedisRestart => "redis-restart",
            Fault::MongoDown => "mongodb-down",
            Fault::StoreKill => "store-kill",
            Fault::NotifierKill => "notifier-kill",
            Fault::Poison => "poison-message",
            Fault::SlowConsumer => "slow-consumer",
            Fault::Malformed => "malformed-requests",
            Fault::KillEverything => "kill-everything",
            Fault::ClusterMasterKill => "cluster-master-kill",
            Fault::ClusterMasterKillAcked => "cluster-master-kill-acked",
            Fault::ClusterReplicaKill => "cluster-replica-kill",
            Fault::ClusterReshard => "cluster-reshard",
            Fault::ClusterMasterPause => "cluster-master-pause",
            Fault::ClusterMasterPauseAcked => "cluster-master-pause-acked",
            Fault::HostCut => "host-cut",
        }
    }

    /// The scenario named `name`.
    pub fn named(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|fault| fault.name() == name)
    }

    /// Whether Redis keeps everything it acknowledged through this fault, so the row must
    /// show nothing lost or duplicated. A cluster master that fails without replica
    /// acknowledgements can take with it what its replica had not received yet.
    pub fn keeps_acknowledged(self) -> bool {
        !matches!(
            self,
            Fault::RedisKillEverySec | Fault::ClusterMasterKill | Fault::ClusterMasterPause
        )
    }

    /// Whether the scenario runs on a Redis Cluster.
    pub fn on_cluster(self) -> bool {
        matches!(
            self,
            Fault::ClusterMasterKill
                | Fault::ClusterMasterKillAcked
                | Fault::ClusterReplicaKill
                | Fault::ClusterReshard
                | Fault::ClusterMasterPause
                | Fault::ClusterMasterPauseAcked
                | Fault::HostCut
        )
    }
}

/// What a run may change.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Messages injected per second into the chain.
    pub rate: u64,
    /// How long MongoDB stays down.
    pub outage: Duration,
    /// Print what happens on stderr.
    pub verbose: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            rate: 100,
            outage: Duration::from_secs(30),
            verbose: false,
        }
    }
}

/// The mesh of one scenario.
struct Chaos {
    /// The notifier the simulator's clients use.
    notifier: Notifier,
    /// The other hosts' notifiers, when the mesh runs across hosts (dropped before the mesh,
    /// whose hosts go with it).
    more_notifiers: Vec<Notifier>,
    mesh: Mesh,
    mongo: TestMongo,
    http: reqwest::Client,
    probes: Vec<String>,
    verbose: bool,
    started: Instant,
}

impl Chaos {
    /// Starts the mesh on `redis`: on this machine, or across `hosts` with a notifier on
    /// each (the simulator's clients use the second host's).
    async fn start(
        redis: TestBackend,
        hosts: Option<Hosts>,
        extra: &[(&str, &str)],
        verbose: bool,
    ) -> Chaos {
        let started = Instant::now();
        let mongo = TestMongo::start();
        let uri = mongo.uri();
        let lease = LEASE_MS.to_string();
        let attempts = MAX_ATTEMPTS.to_string();
        let mut env = vec![
            ("MONGODB_URI", uri.as_str()),
            ("GORGON_ARCHIVE_WRITE_CONCERN", "journaled"),
            ("GORGON_MONGODB_TIMEOUT_MS", "1000"),
            ("GORGON_LEASE_MS", lease.as_str()),
            ("GORGON_CONSUMER_TTL_MS", "1000"),
            ("GORGON_MAX_ATTEMPTS", attempts.as_str()),
            ("GORGON_STORE_LEASE_MS", "1000"),
            ("GORGON_STORE_SWEEP_MS", "500"),
        ];
        env.extend_from_slice(extra);
        let (mesh, notifier, more_notifiers) = match hosts {
            None => {
                let mesh = Mesh::start_on(redis, 2, &env).await;
                let notifier = Notifier::start(&mesh, &[]).await;
                (mesh, notifier, Vec::new())
            }
            Some(hosts) => {
                let count = hosts.len();
                let mesh = Mesh::start_across(redis, hosts, &env).await;
                let mut notifiers = Vec::new();
                for host in 0..count {
                    notifiers.push(Notifier::start_on(&mesh, host, &[]).await);
                }
                let notifier = notifiers.remove(1);
                (mesh, notifier, notifiers)
            }
        };
        let probes: Vec<String> = (0..PARTITIONS)
            .map(|partition| {
                (0..)
                    .map(|i| format!("p{partition}-{i}"))
                    .find(|node| protocol::partition_of(PROBES, node, PARTITIONS) == partition)
                    .expect("some name hashes to every partition")
            })
            .collect();
        let http = crate::http::client(Duration::from_secs(10), mesh.token.as_deref());
        let chaos = Chaos {
            mesh,
            mongo,
            notifier,
            more_notifiers,
            http,
            probes,
            verbose,
            started,
        };
        let nodes: Vec<Value> = chaos
            .probes
            .iter()
            .map(|id| json!({"id": id, "function": "pass"}))
            .collect();
        chaos.put(PROBES, &json!({ "node": nodes })).await;
        chaos.say("mesh up");
        chaos
    }

    fn say(&self, text: &str) {
        if self.verbose {
            eprintln!(
                "chaos: {:6.1} s  {text}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mesh.base)
    }

    async fn put(&self, topology: &str, doc: &Value) {
        let answer = self
            .mesh
            .call(Method::PUT, &format!("/v1/topologies/{topology}"), doc)
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }

    /// POSTs `body` to `path` until it is answered 202 (503s and refused connections are
    /// what a Redis outage looks like); returns the first message id.
    async fn inject(&self, path: &str, body: &Value) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = self.http.post(self.url(path)).json(body).send().await;
            match response {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    let reply: Value = response.json().await.expect("an inject reply");
                    return reply["msg_id"].as_str().unwrap_or_default().to_owned();
                }
                Ok(response)
                    if response.status() == StatusCode::SERVICE_UNAVAILABLE
                        || response.status() == StatusCode::TOO_MANY_REQUESTS => {}
                Ok(response) => panic!("inject into {path}: {}", response.status()),
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "inject into {path}: no 202 in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The latched seq of `node` of `topology`; `None` while the API cannot say.
    async fn latched(&self, topology: &str, node: &str) -> Option<u64> {
        let url = self.url(&format!("/v1/topologies/{topology}/nodes/{node}/output"));
        let response = self.http.get(url).send().await.ok()?;
        match response.status() {
            StatusCode::NOT_FOUND => Some(0),
            StatusCode::OK => response.json::<Value>().await.ok()?["seq"].as_u64(),
            _ => None,
        }
    }

    /// The latched seqs of the chain's nodes, summed: the outputs it made. Retried while the
    /// API cannot answer.
    async fn chain_outputs(&self) -> u64 {
        crate::eventually(
            Duration::from_secs(60),
            "the chain's latched seqs",
            || async {
                let mut total = 0;
                for node in 0..CHAIN_LENGTH {
                    total += self.latched(CHAIN, &format!("link-{node}")).await?;
                }
                Some(total)
            },
        )
        .await
    }

    /// Injects probe message `round` into every probe node and waits until each has output
    /// it; returns the time from `since`.
    async fn probe(&self, round: u64, since: Instant) -> Duration {
        for node in &self.probes {
            self.inject(
                &format!("/v1/topologies/{PROBES}/nodes/{node}/messages"),
                &json!({ "probe": round }),
            )
            .await;
        }
        crate::eventually(Duration::from_secs(60), "every probe through", || async {
            for node in &self.probes {
                if self.latched(PROBES, node).await? < round {
                    return None;
                }
            }
            Some(())
        })
        .await;
        since.elapsed()
    }

    /// Distinct holders of the partition leases, once every partition is held; `None` while
    /// one is not or Redis cannot say.
    async fn holders(&self) -> Option<usize> {
        let leases: Vec<Lease> = (0..PARTITIONS)
            .map(|partition| layout::partition_lease(&self.mesh.client, partition))
            .collect();
        let holders = Lease::holders(&leases).await.ok()?;
        let mut owners: Vec<String> = holders
            .into_iter()
            .map(|holder| holder.map(|(grant, _)| grant.owner))
            .collect::<Option<_>>()?;
        owners.sort();
        owners.dedup();
        Some(owners.len())
    }

    /// Waits until the partitions are held by exactly `distinct` processors; the time from
    /// `since`.
    async fn held_by(&self, distinct: usize, since: Instant) -> Duration {
        crate::eventually(
            Duration::from_secs(30),
            &format!("every partition held by {distinct} processor(s)"),
            || async { (self.holders().await? == distinct).then_some(()) },
        )
        .await;
        since.elapsed()
    }

    /// Replaces processor `index` with one started with `extra` in its environment (the old
    /// one hands its partitions over on SIGTERM), and waits until two processors hold them all.
    async fn replace_processor(&mut self, index: usize, extra: &[(&str, &str)]) {
        let new = self.mesh.spawn_with("processor", extra);
        let mut old = std::mem::replace(&mut self.mesh.processors[index], new);
        old.signal("TERM");
        let (status, output) = old.wait_for_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "a replaced processor failed:\n{output}");
        self.held_by(self.mesh.processors.len(), Instant::now())
            .await;
    }

    /// Prints the first warnings and errors each role logged, for `--verbose`.
    fn print_problems(&self) {
        let mut roles = vec![("web_face", &self.mesh.web), ("store", &self.mesh.store)];
        roles.extend(
            self.mesh
                .processors
                .iter()
                .map(|process| ("processor", process)),
        );
        roles.extend(
            self.mesh
                .more_web
                .iter()
                .map(|process| ("web_face", process)),
        );
        roles.push(("notifier", &self.notifier.process));
        roles.extend(
            self.more_notifiers
                .iter()
                .map(|notifier| ("notifier", &notifier.process)),
        );
        for (role, process) in roles {
            let output = process.output();
            let problems: Vec<&str> = output
                .lines()
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
                .filter(|line| !line.contains("redis::cluster_handling"))
                .take(20)
                .collect();
            for line in problems {
                eprintln!("chaos: {role}: {line}");
            }
        }
    }

    /// Waits until `replica` serves `slot` (the cluster failed over); the time from `since`.
    async fn failed_over(&mut self, slot: u16, replica: usize, since: Instant) -> Duration {
        let cluster = self.mesh.redis.cluster_mut();
        while cluster.master_of(slot) != Some(replica) {
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "no failover to node {replica} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        since.elapsed()
    }

    /// Bytes Redis uses (`INFO memory`'s `used_memory`) and keys it has evicted (`INFO
    /// stats`'s `evicted_keys`); `None` when a reply lacks them.
    fn redis_memory(&self) -> Option<(u64, u64)> {
        let field = |section: &str, name: &str| -> Option<u64> {
            let info = self.mesh.redis.single().command(&["INFO", section]);
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
                .trim()
                .parse()
                .ok()
        };
        Some((
            field("memory", "used_memory")?,
            field("stats", "evicted_keys")?,
        ))
    }

    /// Waits until web_face's `/readyz` is not 200 (it lost Redis); the time from `since`.
    async fn unready(&self, since: Instant) -> Duration {
        crate::eventually(Duration::from_secs(30), "web_face not ready", || async {
            let ready = self.http.get(self.url("/readyz")).send().await;
            (!ready.is_ok_and(|answer| answer.status().is_success())).then_some(())
        })
        .await;
        since.elapsed()
    }

    /// The value of counter `name` on web_face's `/metrics` (0 before its first increment);
    /// `None` while web_face cannot say.
    async fn web_counter(&self, name: &str) -> Option<u64> {
        let response = self.http.get(self.url("/metrics")).send().await.ok()?;
        let text = response.text().await.ok()?;
        Some(
            text.lines()
                .filter(|line| {
                    line.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with([' ', '{']))
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }

    /// Documents of the chain in MongoDB.
    async fn archived(&self) -> Option<u64> {
        let client = self.mongo.client().await;
        client
            .database(crate::mongo::DATABASE)
            .collection::<mongodb::bson::Document>("outputs")
            .count_documents(doc! {"topology": CHAIN})
            .await
            .ok()
    }

    /// Waits until MongoDB holds at least `outputs` documents of the chain; the time from
    /// `since`.
    async fn archived_at_least(&self, outputs: u64, since: Instant) -> Duration {
        crate::eventually(
            Duration::from_secs(120),
            &format!("{outputs} outputs archived"),
            || async { (self.archived().await? >= outputs).then_some(()) },
        )
        .await;
        since.elapsed()
    }

    /// Runs the simulator's chain scenario as `load` says; its `--json` report and its
    /// stderr.
    fn simulate(&self, load: &Load) -> tokio::task::JoinHandle<(Value, String)> {
        let messages = ((load.rate as f64) * load.seconds).round() as u64;
        let mut command = tokio::process::Command::new(crate::role_binary("simulator"));
        command
            .args(["--api", &self.mesh.base, "--notifier", &self.notifier.url])
            .args(["--json", "--keep", "--settle-timeout-s", "120"])
            .args(["--messages", &messages.to_string()])
            .args(["--duration-s", &load.seconds.to_string()])
            .args(["--rate", &load.rate.to_string()])
            .args(["--batch", &load.batch.to_string()])
            .args(["--clients", &load.clients.to_string(), "--readers", "1"])
            .args(self.mesh.token.iter().flat_map(|token| ["--token", token]))
            .args(["chain", "--length", &CHAIN_LENGTH.to_string()])
            .kill_on_drop(true);
        tokio::spawn(async move {
            let output = command.output().await.expect("run the simulator");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            let report = serde_json::from_slice(&output.stdout)
                .unwrap_or_else(|error| panic!("no JSON report ({error}); stderr:\n{stderr}"));
            (report, stderr)
        })
    }
}

/// The simulator's load of one scenario.
struct Load {
    /// Messages per second.
    rate: u64,
    /// How long it injects.
    seconds: f64,
    /// Messages per inject request.
    batch: u64,
    /// socket.io clients.
    clients: usize,
}

/// Runs `fault`'s scenario and returns its row.
pub async fn run(fault: Fault, settings: &Settings) -> Value {
    let persistence = match fault {
        Fault::RedisKillEverySec => Persistence::AofEverySec,
        _ => Persistence::AofAlways,
    };
    let high_water = SLOW_HIGH_WATER.to_string();
    let extra_env: &[(&str, &str)] = match fault {
        Fault::SlowConsumer => &[("GORGON_QUEUE_HIGH_WATER", high_water.as_str())],
        Fault::ClusterMasterKillAcked | Fault::ClusterMasterPauseAcked => {
            &[("GORGON_REPLICA_ACKS", "1")]
        }
        _ => &[],
    };
    let hosts = (fault == Fault::HostCut).then(|| Hosts::create(3));
    let redis = match &hosts {
        // The cluster on the hosts' network, announcing its address there: no replicas, as
        // Redis is not what fails.
        Some(hosts) => TestBackend::Cluster(TestCluster::start_announcing(
            3,
            0,
            persistence,
            CLUSTER_NODE_TIMEOUT,
            &hosts.gateway().to_string(),
        )),
        // A node timeout that a busy two-core machine does not trip by itself.
        None if fault.on_cluster() => TestBackend::Cluster(TestCluster::start_with(
            3,
            1,
            persistence,
            CLUSTER_NODE_TIMEOUT,
        )),
        None => TestBackend::Single(TestRedis::start_with(persistence)),
    };
    let mut chaos = Chaos::start(redis, hosts, extra_env, settings.verbose).await;
    match fault {
        // The processor to pause holds each batch 100 ms between running it and committing
        // it, so the pause lands in that gap and its commit comes after the lease is gone.
        Fault::ProcessorPause => {
            chaos
                .replace_processor(0, &[("GORGON_FAILPOINT", "batch_delay_ms:100")])
                .await;
        }
        // Batches of 50 held 200 ms each: at most 250 messages/s a partition.
        Fault::SlowConsumer => {
            let slow = [
                ("GORGON_FAILPOINT", "batch_delay_ms:200"),
                ("GORGON_BATCH_SIZE", "50"),
            ];
            for index in 0..chaos.mesh.processors.len() {
                chaos.replace_processor(index, &slow).await;
            }
            // Nothing may be evicted: past this, Redis refuses writes instead.
            chaos
                .mesh
                .redis
                .single()
                .command(&["CONFIG", "SET", "maxmemory", "512mb"]);
            chaos
                .mesh
                .redis
                .single()
                .command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
        }
        _ => {}
    }
    let fault_length = match fault {
        Fault::MongoDown => settings.outage,
        Fault::ProcessorPause
        | Fault::ProcessorsJoinLeave
        | Fault::ClusterMasterPause
        | Fault::ClusterMasterPauseAcked
        | Fault::HostCut => Duration::from_secs(4),
        _ => Duration::from_secs(1),
    };
    let load = match fault {
        Fault::SlowConsumer => Load {
            rate: settings.rate * 10,
            seconds: 8.0,
            batch: 50,
            clients: 2,
        },
        _ => Load {
            rate: settings.rate,
            seconds: (FAULT_AFTER + fault_length + LOAD_AFTER).as_secs_f64(),
            batch: 5,
            clients: if fault == Fault::NotifierKill { 100 } else { 2 },
        },
    };
    let load_started = Instant::now();
    let load = chaos.simulate(&load);
    if fault != Fault::SlowConsumer {
        // Wait until outputs flow through the chain, then a little more.
        let deadline = Instant::now() + Duration::from_secs(60);
        let last = format!("link-{}", CHAIN_LENGTH - 1);
        while chaos.latched(CHAIN, &last).await.unwrap_or(0) == 0 {
            if load.is_finished() {
                let (report, stderr) = load.await.expect("the simulator task");
                panic!("the simulator ended before any output: {report}\n{stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "no output of the chain within 60 s of starting the simulator"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(FAULT_AFTER).await;
    }
    chaos.say(&format!("fault: {}", fault.name()));

    let mut extra = BTreeMap::<&str, Value>::new();
    let at = Instant::now();
    let (detect, recover) = match fault {
        Fault::ProcessorKill => {
            chaos.mesh.processors[0].signal("KILL");
            let probe = chaos.probe(1, at);
            let (detect, recover) = tokio::join!(chaos.held_by(1, at), probe);
            (Some(detect), recover)
        }
        Fault::ProcessorPause => {
            chaos.mesh.processors[0].signal("STOP");
            let detect = chaos.held_by(1, at).await;
            let recover = chaos.probe(1, at).await;
            tokio::time::sleep(fault_length.saturating_sub(at.elapsed())).await;
            let paused = &chaos.mesh.processors[0];
            paused.signal("CONT");
            // Its partitions are gone: every fenced write it tries now is refused.
            tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
            extra.insert("stale_writes_refused", json!(paused.count("lease lost")));
            (Some(detect), recover)
        }
        Fault::ProcessorsJoinLeave => {
            chaos.mesh.processors.push(chaos.mesh.spawn("processor"));
            chaos.mesh.processors.push(chaos.mesh.spawn("processor"));
            let joined = chaos.held_by(4, at).await;
            tokio::time::sleep(fault_length / 2).await;
            let left_at = Instant::now();
            for mut leaving in chaos.mesh.processors.drain(2..) {
                leaving.signal("TERM");
                let (status, output) = leaving.wait_for_exit(Duration::from_secs(20)).await;
                assert!(status.success(), "a leaving processor failed:\n{output}");
            }
            let left = chaos.held_by(2, left_at).await;
            extra.insert("join_ms", json!(joined.as_millis() as u64));
            extra.insert("leave_ms", json!(left.as_millis() as u64));
            (None, chaos.probe(1, left_at).await)
        }
        Fault::RedisKillAlways | Fault::RedisKillEverySec | Fault::RedisRestart => {
            if fault == Fault::RedisRestart {
                // SHUTDOWN writes and syncs the AOF, then the server exits.
                let _ = chaos.mesh.redis.single().command(&["SHUTDOWN"]);
            }
            chaos.mesh.redis.single_mut().kill();
            let detect = chaos.unready(at).await;
            tokio::time::sleep(fault_length.saturating_sub(at.elapsed())).await;
            chaos.mesh.redis.single_mut().start_again();
            chaos.say("Redis started again");
            (Some(detect), chaos.probe(1, at).await)
        }
        Fault::MongoDown => {
            chaos.mongo.stop();
            tokio::time::sleep(fault_length).await;
            chaos.mongo.start_again();
            let back = Instant::now();
            chaos.say("MongoDB started again");
            let made = chaos.chain_outputs().await;
            (None, chaos.archived_at_least(made, back).await)
        }
        Fault::StoreKill => {
            chaos.mesh.store.signal("KILL");
            chaos
                .mesh
                .store
                .wait_for_exit(Duration::from_secs(10))
                .await;
            let made = chaos.chain_outputs().await;
            chaos.mesh.store = chaos.mesh.spawn("store");
            (None, chaos.archived_at_least(made, at).await)
        }
        Fault::NotifierKill => {
            chaos.notifier.kill().await;
            tokio::time::sleep(fault_length).await;
            chaos.notifier.restart(&chaos.mesh).await;
            (None, at.elapsed())
        }
        Fault::Poison => {
            chaos
                .put(
                    "poison",
                    &json!({"node": [{"id": "hot", "function": "threshold",
                                      "attrs": {"field": "/c", "above": 30}}]}),
                )
                .await;
            let path = "/v1/topologies/poison/nodes/hot/messages";
            let poison = chaos.inject(path, &json!({"c": "very hot"})).await;
            let queue = layout::input_queue(
                &chaos.mesh.client,
                protocol::partition_of("poison", "hot", PARTITIONS),
            );
            let dead = crate::eventually(
                Duration::from_secs(30),
                "the poison message dead-lettered",
                || async {
                    let dead = queue.dead_letters(0, 10).await.ok()?;
                    (!dead.is_empty()).then_some(dead)
                },
            )
            .await;
            let detect = at.elapsed();
            extra.insert("dead_lettered", json!(dead.len()));
            extra.insert(
                "dead_letter_is_the_poison",
                json!(dead.len() == 1 && dead[0].id == poison),
            );
            extra.insert("attempts", json!(dead[0].attempts));
            (Some(detect), chaos.probe(1, at).await)
        }
        Fault::SlowConsumer => {
            // Sampled until the simulator is done: it ends once the backlog has drained and
            // every output has arrived.
            let entry = protocol::partition_of(CHAIN, "link-0", PARTITIONS) as usize;
            let mut reached = None;
            let (mut entry_max, mut backlog_max, mut memory_max, mut evicted) = (0, 0, 0, 0);
            while !load.is_finished() {
                let lengths = chaos.mesh.queue_lengths().await;
                entry_max = entry_max.max(lengths[entry].0);
                backlog_max = backlog_max.max(lengths.iter().map(|(held, _)| held).sum());
                if reached.is_none() && lengths[entry].0 >= SLOW_HIGH_WATER {
                    reached = Some(load_started.elapsed());
                    chaos.say("the entry queue is at its high-water mark");
                }
                if let Some((used, gone)) = chaos.redis_memory() {
                    memory_max = memory_max.max(used);
                    evicted = gone;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            extra.insert("high_water", json!(SLOW_HIGH_WATER));
            extra.insert("entry_backlog_max", json!(entry_max));
            extra.insert("backlog_max", json!(backlog_max));
            extra.insert("redis_peak_mb", json!(memory_max / (1 << 20)));
            extra.insert("evicted_keys", json!(evicted));
            extra.insert(
                "backlog_left",
                json!(chaos
                    .mesh
                    .queue_lengths()
                    .await
                    .iter()
                    .map(|(held, _)| held)
                    .sum::<u64>()),
            );
            // recover_ms is the drain: the simulator's settle time, below.
            (reached, Duration::ZERO)
        }
        Fault::KillEverything => {
            for process in &chaos.mesh.processors {
                process.signal("KILL");
            }
            chaos.mesh.store.signal("KILL");
            chaos.mesh.web.signal("KILL");
            chaos.notifier.process.signal("KILL");
            chaos.mesh.redis.single_mut().kill();
            chaos.mongo.stop();
            for process in chaos.mesh.processors.iter_mut() {
                process.wait_for_exit(Duration::from_secs(10)).await;
            }
            chaos
                .mesh
                .store
                .wait_for_exit(Duration::from_secs(10))
                .await;
            chaos.mesh.web.wait_for_exit(Duration::from_secs(10)).await;
            chaos.notifier.kill().await;
            tokio::time::sleep(fault_length).await;
            let seed: u64 = rand::random();
            let mut order: Vec<usize> = (0..5 + chaos.mesh.processors.len()).collect();
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let mut started = Vec::new();
            for part in order {
                let name = match part {
                    0 => {
                        chaos.mesh.redis.single_mut().start_again();
                        "redis".to_owned()
                    }
                    1 => {
                        chaos.mongo.start_again();
                        "mongodb".to_owned()
                    }
                    2 => {
                        chaos.mesh.store = chaos.mesh.spawn("store");
                        "store".to_owned()
                    }
                    3 => {
                        chaos.mesh.web = chaos.mesh.spawn("web_face");
                        "web_face".to_owned()
                    }
                    4 => {
                        chaos.notifier.respawn(&chaos.mesh);
                        "notifier".to_owned()
                    }
                    processor => {
                        chaos.mesh.processors[processor - 5] = chaos.mesh.spawn("processor");
                        format!("processor-{}", processor - 5)
                    }
                };
                chaos.say(&format!("started {name}"));
                started.push(name);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            extra.insert("restart_order", json!(started));
            extra.insert("seed", json!(seed));
            (None, chaos.probe(1, at).await)
        }
        Fault::ClusterMasterKill
        | Fault::ClusterMasterKillAcked
        | Fault::ClusterMasterPause
        | Fault::ClusterMasterPauseAcked => {
            let slot = entry_slot();
            let cluster = chaos.mesh.redis.cluster_mut();
            let master = cluster
                .master_of(slot)
                .expect("a master serves the entry partition");
            let replica = cluster.replicas_of(master)[0];
            let pause = matches!(
                fault,
                Fault::ClusterMasterPause | Fault::ClusterMasterPauseAcked
            );
            if pause {
                cluster.node(master).pause();
            } else {
                cluster.node_mut(master).kill();
            }
            let detect = chaos.failed_over(slot, replica, at).await;
            chaos.say("the replica took over");
            // The old master comes back (SIGCONT, or started again as its supervisor
            // would) and joins as its replica's replica: with GORGON_REPLICA_ACKS=1 and one
            // replica a master, the shard takes no acknowledged write until then.
            tokio::time::sleep(fault_length.saturating_sub(at.elapsed())).await;
            let cluster = chaos.mesh.redis.cluster_mut();
            if pause {
                cluster.node(master).resume();
            } else {
                cluster.node_mut(master).start_again();
            }
            chaos.say("the old master is back");
            (Some(detect), chaos.probe(1, at).await)
        }
        Fault::ClusterReplicaKill => {
            let cluster = chaos.mesh.redis.cluster_mut();
            let master = cluster
                .master_of(entry_slot())
                .expect("a master serves the entry partition");
            let replica = cluster.replicas_of(master)[0];
            cluster.node_mut(replica).kill();
            (None, chaos.probe(1, at).await)
        }
        Fault::ClusterReshard => {
            let cluster = chaos.mesh.redis.cluster_mut();
            let from = cluster
                .master_of(entry_slot())
                .expect("a master serves the entry partition");
            let to = cluster
                .masters()
                .into_iter()
                .find(|&master| master != from)
                .expect("another master");
            let moved = tokio::task::block_in_place(|| cluster.reshard_all(from, to));
            extra.insert("slots_moved", json!(moved));
            extra.insert("reshard_ms", json!(at.elapsed().as_millis() as u64));
            chaos.say(&format!("{moved} slots moved"));
            (None, chaos.probe(1, at).await)
        }
        Fault::HostCut => {
            let hosts = chaos
                .mesh
                .hosts
                .as_ref()
                .expect("the mesh runs across hosts");
            hosts.cut(2);
            // The other two processors take the cut one's partitions once its lease ends.
            let detect = chaos.held_by(2, at).await;
            chaos.say("the other hosts hold every partition");
            let recover = chaos.probe(1, at).await;
            tokio::time::sleep(fault_length.saturating_sub(at.elapsed())).await;
            let hosts = chaos
                .mesh
                .hosts
                .as_ref()
                .expect("the mesh runs across hosts");
            hosts.restore(2);
            let back = Instant::now();
            chaos.say("the host is back on the network");
            // What the cut processor still had to write reaches Redis now, and is refused;
            // then it takes its share of the partitions again.
            extra.insert(
                "rejoin_ms",
                json!(chaos.held_by(3, back).await.as_millis() as u64),
            );
            // Which of its two checks finds the lease gone first depends on timing: the
            // fence refusing a commit it had in flight ("lease lost"), or the renewal round
            // finding another holder ("partition lost").
            let cut = &chaos.mesh.processors[2];
            extra.insert("stale_writes_refused", json!(cut.count("lease lost")));
            extra.insert("renewals_refused", json!(cut.count("partition lost")));
            (Some(detect), recover)
        }
        Fault::Malformed => {
            let statuses = malformed(&chaos, 10_000).await;
            extra.insert("malformed_statuses", json!(statuses));
            (None, chaos.probe(1, at).await)
        }
    };
    chaos.say("fault over; waiting for the load to end");

    let (report, stderr) = load.await.expect("the simulator task");
    if chaos.verbose && report["passed"] != true {
        eprintln!("{stderr}");
    }
    let made = chaos.chain_outputs().await;
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        chaos.archived_at_least(made, Instant::now()),
    )
    .await;
    let archived = chaos.archived().await.unwrap_or(0);
    let verdict = &report["verdict"];
    let mut row = json!({
        "scenario": fault.name(),
        "sent": report["sent"],
        "expected": verdict["expected"],
        "received": verdict["received"],
        "lost": verdict["lost"],
        "duplicated": verdict["duplicated"],
        "reordered": verdict["out_of_order"],
        "unexpected": verdict["unexpected"],
        "effect_mismatches": verdict["effect_mismatches"],
        "errors": report["errors"],
        "reconnects": report["reconnects"],
        "recovered_from_history": report["recovered"],
        "archived": archived,
        "archive_missing": made.saturating_sub(archived),
        "archive_extra": archived.saturating_sub(made),
        "detect_ms": detect.map(|detect| detect.as_millis() as u64),
        "recover_ms": recover.as_millis() as u64,
        "e2e_p99_ms": report["e2e_terminal_ms"]["p99"],
        "throttled": report["throttled"],
        "resent": report["resent"],
        "answered_from_key": chaos.web_counter("gorgon_inject_repeats_total").await,
    });
    if fault == Fault::SlowConsumer {
        // From the last inject until every client had every output: the backlog drained.
        let settle = report["seconds"].as_f64().unwrap_or(0.0)
            - report["inject_seconds"].as_f64().unwrap_or(0.0);
        row["recover_ms"] = json!((settle * 1000.0).round() as u64);
    }
    for (key, value) in extra {
        row[key] = value;
    }
    if chaos.verbose {
        chaos.print_problems();
    }
    row
}

/// The cluster slot of the chain's entry partition (`link-0`'s), where most of the load goes.
fn entry_slot() -> u16 {
    let partition = protocol::partition_of(CHAIN, "link-0", PARTITIONS);
    redpill::keys::slot(format!("{{{}}}", redpill::Tag::partition(partition)).as_bytes())
}

/// Sends `count` malformed requests, 16 at a time, of several kinds in turn; how many got each
/// status.
async fn malformed(chaos: &Chaos, count: usize) -> BTreeMap<u16, u64> {
    use futures_util::stream::{self, StreamExt as _};
    let inject = chaos.url(&format!("/v1/topologies/{CHAIN}/nodes/link-0/messages"));
    let requests = (0..count).map(|i| {
        let request = match i % 5 {
            0 => chaos
                .http
                .post(&inject)
                .header("content-type", "application/json")
                .body("{\"unterminated"),
            1 => chaos
                .http
                .post(chaos.url(&format!("/v1/topologies/{CHAIN}/nodes/No%20Such/messages")))
                .json(&json!(1)),
            2 => chaos
                .http
                .put(chaos.url(&format!("/v1/topologies/{CHAIN}")))
                .header("content-type", "application/json")
                .body("[1,2"),
            3 => chaos
                .http
                .post(&inject)
                .header("content-type", "application/x-ndjson")
                .body("{\"a\":1}\nnot json\n"),
            _ => chaos
                .http
                .post(&inject)
                .header("content-type", "text/plain")
                .body("hello"),
        };
        async move {
            request
                .send()
                .await
                .map_or(0, |response| response.status().as_u16())
        }
    });
    let mut statuses = BTreeMap::new();
    let mut answered = stream::iter(requests).buffer_unordered(16);
    while let Some(status) = answered.next().await {
        *statuses.entry(status).or_insert(0) += 1;
    }
    statuses
}
