//! A whole mesh for API tests: a Redis of its own, the store, processors and web_face as
//! real processes, and an HTTP client for the API.

use std::time::Duration;

use redpill::testing::{free_port, TestRedis};
use redpill::{Client, Queue, Tag};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::RoleProcess;

/// The partition count of test meshes.
pub const PARTITIONS: u32 = 8;

/// Redis, a store, processors and web_face.
pub struct Mesh {
    /// The mesh's Redis.
    pub redis: TestRedis,
    /// A redpill client on it.
    pub client: Client,
    /// The store.
    pub store: RoleProcess,
    /// The processors.
    pub processors: Vec<RoleProcess>,
    /// web_face.
    pub web: RoleProcess,
    /// The API's base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    http: reqwest::Client,
    env: Vec<(String, String)>,
}

/// A response: status, headers and the body as JSON (`Value::Null` when it is not JSON;
/// the text is in `text`).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body, as JSON.
    pub json: Value,
    /// The body, as text.
    pub text: String,
}

impl Answer {
    /// The error code of an error body, or "".
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

impl Mesh {
    /// Starts a mesh with `processors` processors and `env` added to every role's
    /// environment (tokens, limits), and waits until the API answers.
    pub async fn start(processors: usize, env: &[(&str, &str)]) -> Mesh {
        Mesh::start_on(TestRedis::start(), processors, env).await
    }

    /// The same, on `redis`.
    pub async fn start_on(redis: TestRedis, processors: usize, env: &[(&str, &str)]) -> Mesh {
        let port = free_port();
        let mut all: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), redis.url()),
            ("GORGON_PARTITIONS".into(), PARTITIONS.to_string()),
            ("GORGON_LEASE_MS".into(), "1000".into()),
            ("GORGON_WEB_PORT".into(), port.to_string()),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let client = Client::connect(redis.config().set_prefix("gorgon"))
            .await
            .expect("connect to the test Redis");
        let mesh = Mesh {
            store: spawn("store", &all),
            processors: (0..processors).map(|_| spawn("processor", &all)).collect(),
            web: spawn("web_face", &all),
            redis,
            client,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            env: all,
        };
        let base = mesh.base.clone();
        let http = mesh.http.clone();
        crate::eventually(Duration::from_secs(30), "the API to answer", || {
            let (base, http) = (base.clone(), http.clone());
            async move {
                let ready = http.get(format!("{base}/readyz")).send().await.ok()?;
                ready.status().is_success().then_some(())
            }
        })
        .await;
        // The store publishes the function registry at start; wait for it too.
        mesh.web
            .wait_for_output("serving the REST API", Duration::from_secs(5))
            .await;
        mesh.store
            .wait_for_output("starting", Duration::from_secs(10))
            .await;
        mesh
    }

    /// Starts one more role process of `role` with the mesh's environment.
    pub fn spawn(&self, role: &str) -> RoleProcess {
        spawn(role, &self.env)
    }

    /// The same with `extra` added to (or replacing in) the environment.
    pub fn spawn_with(&self, role: &str, extra: &[(&str, &str)]) -> RoleProcess {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(key, _)| !extra.iter().any(|(name, _)| name == key))
            .cloned()
            .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        spawn(role, &env)
    }

    /// A request to `path` (under the base URL).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends `request` and reads the answer.
    pub async fn send(&self, request: RequestBuilder) -> Answer {
        let response = request.send().await.expect("the API answered");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            text,
        }
    }

    /// `method path` with a JSON body (none for `Value::Null`).
    pub async fn call(&self, method: Method, path: &str, body: &Value) -> Answer {
        let mut request = self.request(method, path);
        if !body.is_null() {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// How many messages each partition queue holds, waiting, in flight or delayed, plus
    /// the dead letters: a fingerprint of what was enqueued.
    pub async fn queue_lengths(&self) -> Vec<(u64, u64)> {
        let mut lengths = Vec::new();
        for partition in 0..PARTITIONS {
            let queue = Queue::new(
                &self.client,
                &Tag::partition(partition),
                protocol::names::INPUT_QUEUE,
            );
            let depth = queue.depth().await.expect("queue depth");
            lengths.push((depth.held, depth.dead));
        }
        lengths
    }
}

fn spawn(role: &str, env: &[(String, String)]) -> RoleProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    RoleProcess::spawn(role, &env)
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
