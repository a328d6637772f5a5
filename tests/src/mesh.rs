//! A whole mesh for API tests: a Redis of its own, the store, processors and web_face as
//! real processes, and an HTTP client for the API.

use std::ops::Deref;
use std::time::Duration;

use redpill::testing::{free_port, TestBackend};
use redpill::Client;
use reqwest::StatusCode;
use serde_json::Value;

use crate::hosts::Hosts;
pub use crate::http::Answer;
use crate::http::Http;
use crate::RoleProcess;

/// The partition count of test meshes.
pub const PARTITIONS: u32 = 8;

/// Redis, a store, processors and web_face; on this machine, or spread over test hosts
/// ([`Mesh::start_across`]).
pub struct Mesh {
    /// The mesh's Redis: one server, or a cluster under `GORGON_TEST_REDIS=cluster`.
    pub redis: TestBackend,
    /// A redpill client on it.
    pub client: Client,
    /// The store.
    pub store: RoleProcess,
    /// The processors.
    pub processors: Vec<RoleProcess>,
    /// web_face.
    pub web: RoleProcess,
    /// The other web_face when the mesh runs across hosts (on the second host).
    pub more_web: Vec<RoleProcess>,
    /// The API (its base URL is `base`, through `Deref`).
    api: Http,
    env: Vec<(String, String)>,
    /// The admin token every role takes, when the mesh runs across hosts (an HTTP role
    /// listens beyond 127.0.0.1 only with tokens); the API client sends it.
    pub token: Option<String>,
    /// The hosts the roles run on, if not on this machine; dropped after the roles.
    pub hosts: Option<Hosts>,
}

/// The admin token of a mesh across hosts.
const HOSTS_TOKEN: &str = "mesh-across-hosts";

impl Mesh {
    /// Starts a mesh with `processors` processors and `env` added to every role's
    /// environment (tokens, limits), and waits until the API answers.
    pub async fn start(processors: usize, env: &[(&str, &str)]) -> Mesh {
        Mesh::start_on(TestBackend::start(), processors, env).await
    }

    /// The same, on `redis`.
    pub async fn start_on(
        redis: impl Into<TestBackend>,
        processors: usize,
        env: &[(&str, &str)],
    ) -> Mesh {
        Mesh::assemble(redis.into(), None, processors, env).await
    }

    /// Starts a mesh across `hosts`, as on machines of their own: one processor on each
    /// host, a web_face on each of the first two (the API is the first's), and the store on
    /// this machine, beside `redis` and MongoDB. `redis` must listen on the hosts' gateway
    /// ([`TestCluster::start_announcing`](redpill::testing::TestCluster::start_announcing)).
    /// Every role takes an admin token, [`Mesh::token`], which the API client sends.
    pub async fn start_across(
        redis: impl Into<TestBackend>,
        hosts: Hosts,
        env: &[(&str, &str)],
    ) -> Mesh {
        let processors = hosts.len();
        Mesh::assemble(redis.into(), Some(hosts), processors, env).await
    }

    /// Starts the roles on this machine, or across `hosts` (processor `i` on host `i`, the
    /// web_faces on the first two, the store here), and waits until they serve.
    async fn assemble(
        redis: TestBackend,
        hosts: Option<Hosts>,
        processors: usize,
        env: &[(&str, &str)],
    ) -> Mesh {
        let port = free_port();
        let token = hosts.as_ref().map(|_| HOSTS_TOKEN.to_owned());
        let tokens = format!("{HOSTS_TOKEN}=admin");
        let mut env = env.to_vec();
        if token.is_some() {
            env.push(("GORGON_API_TOKENS", &tokens));
        }
        let all = mesh_env(&redis, port, &env);
        let client = Client::connect(redis.config().set_prefix("gorgon"))
            .await
            .expect("connect to the test Redis");
        let on = |role: &str, host: usize| match &hosts {
            Some(hosts) => spawn_on(hosts, host, role, &all),
            None => spawn(role, &all),
        };
        let address = hosts.as_ref().map_or("127.0.0.1".to_owned(), |hosts| {
            hosts.host(0).address().to_string()
        });
        let more_web = hosts.as_ref().map_or(0, |hosts| hosts.len().min(2) - 1);
        let mesh = Mesh {
            store: spawn("store", &all),
            processors: (0..processors).map(|host| on("processor", host)).collect(),
            web: on("web_face", 0),
            more_web: (1..=more_web).map(|host| on("web_face", host)).collect(),
            redis,
            client,
            api: Http::authorized(format!("http://{address}:{port}"), token.as_deref()),
            env: all,
            token,
            hosts,
        };
        mesh.ready().await
    }

    /// Waits until the API answers, the store has started and web_face serves.
    async fn ready(self) -> Mesh {
        self.wait_until_ready().await;
        // The store publishes the function registry at start; wait for it too.
        self.web
            .wait_for_output("serving the REST API", Duration::from_secs(5))
            .await;
        self.store
            .wait_for_output("starting", Duration::from_secs(10))
            .await;
        for web in &self.more_web {
            web.wait_for_output("serving the REST API", Duration::from_secs(20))
                .await;
        }
        self
    }

    /// Starts one more role process of `role` with the mesh's environment.
    pub fn spawn(&self, role: &str) -> RoleProcess {
        spawn(role, &self.env)
    }

    /// The same with `extra` added to (or replacing in) the environment.
    pub fn spawn_with(&self, role: &str, extra: &[(&str, &str)]) -> RoleProcess {
        spawn(role, &self.env_with(extra))
    }

    /// The same on host `host` of [`Mesh::start_across`]'s hosts, listening on its address
    /// (`GORGON_BIND`).
    ///
    /// # Panics
    ///
    /// If the mesh does not run across hosts.
    pub fn spawn_on_with(&self, host: usize, role: &str, extra: &[(&str, &str)]) -> RoleProcess {
        let hosts = self.hosts.as_ref().expect("the mesh runs across hosts");
        spawn_on(hosts, host, role, &self.env_with(extra))
    }

    /// The mesh's environment with `extra` added to it, or replacing what it names.
    fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter(|(key, _)| !extra.iter().any(|(name, _)| name == key))
            .cloned()
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect()
    }

    /// How many messages each partition queue holds, waiting, in flight or delayed, plus
    /// the dead letters: a fingerprint of what was enqueued.
    pub async fn queue_lengths(&self) -> Vec<(u64, u64)> {
        queue_lengths(&self.client).await
    }
}

impl Deref for Mesh {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.api
    }
}

/// How many messages each partition queue of the mesh `client` is on holds, waiting, in
/// flight or delayed, plus the dead letters.
pub async fn queue_lengths(client: &Client) -> Vec<(u64, u64)> {
    let mut lengths = Vec::new();
    for partition in 0..PARTITIONS {
        let queue = layout::input_queue(client, partition);
        let depth = queue.depth().await.expect("queue depth");
        lengths.push((depth.held, depth.dead));
    }
    lengths
}

/// Every role's environment: Redis, the partitions, a short lease, web_face's port, and
/// `env` after them (it wins where it names the same variable).
fn mesh_env(redis: &TestBackend, web_port: u16, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), redis.url()),
        ("GORGON_PARTITIONS".into(), PARTITIONS.to_string()),
        ("GORGON_LEASE_MS".into(), "1000".into()),
        ("GORGON_WEB_PORT".into(), web_port.to_string()),
    ];
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    all
}

fn spawn(role: &str, env: &[(String, String)]) -> RoleProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    RoleProcess::spawn(role, &env)
}

/// Starts `role` on host `host`, listening on the host's address.
fn spawn_on(hosts: &Hosts, host: usize, role: &str, env: &[(String, String)]) -> RoleProcess {
    let host = hosts.host(host);
    let bind = host.address().to_string();
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("GORGON_BIND", bind.as_str())])
        .collect();
    RoleProcess::spawn_on(host, role, &env)
}

/// Injects `{"i": n}` for each `n` of `numbers` into `topology/node` of the API at `base`,
/// as one ndjson request; returns the answer's status.
pub async fn inject_numbers(
    http: &reqwest::Client,
    base: &str,
    topology: &str,
    node: &str,
    numbers: std::ops::Range<u64>,
) -> StatusCode {
    let body: String = numbers.map(|i| format!("{{\"i\":{i}}}\n")).collect();
    http.post(format!(
        "{base}/v1/topologies/{topology}/nodes/{node}/messages"
    ))
    .header("content-type", "application/x-ndjson")
    .body(body)
    .send()
    .await
    .expect("the API answered")
    .status()
}

/// The JSON body of `GET url`; `None` when the request or the body fails.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// The roles of the instances a stats snapshot shows healthy, sorted (a role twice for two
/// instances).
pub fn healthy_roles(snapshot: &Value) -> Vec<String> {
    let mut roles: Vec<String> = snapshot["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|instance| instance["healthy"] == true)
        .filter_map(|instance| instance["role"].as_str().map(str::to_owned))
        .collect();
    roles.sort();
    roles
}
