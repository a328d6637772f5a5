//! gorgon_client: a Rust client of a Gorgon mesh. Every REST route of web_face as a typed
//! method (the bodies are the server's own types, [`protocol::api`]), errors typed by the
//! API's error codes ([`Error::Api`]), injects that are safe to retry (each carries an
//! `Idempotency-Key`), and [`Client::subscribe`]: the outputs of a topology or a node as a
//! [`Stream`](futures_util::Stream) that resumes with no gap and no repeat across dropped
//! connections and notifier restarts, reading from history what the replay buffer no longer
//! holds.
//!
//! It is not a socket.io client (the stream is the notifier's Server-Sent Events) and keeps
//! nothing on disk: a program that must resume after its own restart keeps the last `seq` of
//! each node and subscribes with [`StartAt::Positions`].
//!
//! ```no_run
//! use futures_util::StreamExt as _;
//! use gorgon_client::{Client, Document, StartAt};
//!
//! # async fn run() -> Result<(), gorgon_client::Error> {
//! let client = Client::builder("http://127.0.0.1:8080").token("t1").build()?;
//! let doc = r#"
//! [[node]]
//! id = "readings"
//! function = "pass"
//!
//! [[node]]
//! id = "count"
//! function = "count"
//! sources = ["readings"]
//! "#;
//! client.apply("sensors", &Document::toml(doc), Default::default()).await?;
//! // Open before the inject: outputs made once `subscribe` returned all come.
//! let mut outputs = client.subscribe("sensors", Some("count"), StartAt::Now).await?;
//! client.inject("sensors", "readings", &serde_json::json!({"celsius": 21.5})).await?;
//! while let Some(event) = outputs.next().await {
//!     let event = event?;
//!     println!("{} #{}: {}", event.node, event.seq, event.data);
//!     # break;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Addresses: web_face at the URL given; the notifier (for [`Client::subscribe`]) at
//! [`ClientBuilder::notifier_url`], by default the same scheme and host on port 8081 (the
//! notifier's default port).

mod error;
mod sse;
mod subscribe;

use std::time::Duration;

use protocol::api::{
    Applied, AttrsView, DeadLetterList, ErrorAnswer, FunctionList, HistoryParams, HistoryView,
    Injected, InjectedMany, ListQuery, NodeList, NodePatch, NodeView, OutputsParams, Replayed,
    TopologyList,
};
use protocol::{FunctionDescription, NodeSpec, OutputEvent, TopologyDoc};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

pub use error::{Error, Result};
pub use protocol;
pub use subscribe::{Counters, StartAt, Subscription};

/// Every route of web_face this client calls, as `(method, path)` in the OpenAPI document's
/// spelling, each with a method of [`Client`]: a test compares it with the server's
/// `/openapi.json`, so a route added to the server without a method here fails it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),                                // health
    ("GET", "/readyz"),                                 // ready
    ("GET", "/metrics"),                                // metrics
    ("GET", "/openapi.json"),                           // openapi
    ("GET", "/v1/functions"),                           // functions
    ("GET", "/v1/topologies"),                          // topologies
    ("GET", "/v1/topologies/{t}"),                      // topology, topology_toml
    ("PUT", "/v1/topologies/{t}"),                      // apply
    ("DELETE", "/v1/topologies/{t}"),                   // delete_topology
    ("GET", "/v1/topologies/{t}/graph.mmd"),            // graph
    ("GET", "/v1/topologies/{t}/nodes"),                // nodes
    ("POST", "/v1/topologies/{t}/nodes"),               // create_node
    ("GET", "/v1/topologies/{t}/nodes/{n}"),            // node
    ("PATCH", "/v1/topologies/{t}/nodes/{n}"),          // patch_node
    ("DELETE", "/v1/topologies/{t}/nodes/{n}"),         // delete_node
    ("PATCH", "/v1/topologies/{t}/nodes/{n}/attrs"),    // patch_attrs
    ("GET", "/v1/topologies/{t}/nodes/{n}/output"),     // output
    ("GET", "/v1/topologies/{t}/nodes/{n}/history"),    // history, next_page
    ("POST", "/v1/topologies/{t}/nodes/{n}/messages"), // inject, inject_with_key, inject_many, inject_ndjson
    ("GET", "/v1/topologies/{t}/outputs"),             // caused, next_page
    ("GET", "/v1/topologies/{t}/dead-letters"),        // dead_letters
    ("POST", "/v1/topologies/{t}/dead-letters/replay"), // replay_dead_letters
];

/// The notifier's default port, where [`Client::subscribe`] connects unless told otherwise.
pub const DEFAULT_NOTIFIER_PORT: u16 = 8081;

/// The stats role's default port, where [`Client::stats_snapshot`] asks unless told
/// otherwise.
pub const DEFAULT_STATS_PORT: u16 = 8082;

/// A client of one mesh: web_face's URL, the notifier's, a token. Cheap to clone (clones
/// share one connection pool).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    notifier: String,
    stats: String,
    token: Option<String>,
    retry: Retry,
    timeout: Duration,
    stream_idle: Duration,
    history_wait: Duration,
}

/// How calls that are safe to repeat (reads, and injects, which carry an `Idempotency-Key`)
/// are retried when the server is unreachable, answers 429 or 503: up to `attempts` tries
/// in all, waiting `first_wait` and doubling up to `max_wait`, or what `Retry-After` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included (1: no retry).
    pub attempts: u32,
    /// The wait after the first failure.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
}

impl Default for Retry {
    /// Five tries over about three seconds.
    fn default() -> Retry {
        Retry {
            attempts: 5,
            first_wait: Duration::from_millis(200),
            max_wait: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// The wait before try `attempt + 1` (`attempt` counting from 1).
    fn wait(&self, attempt: u32, error: &Error) -> Duration {
        let doubled = self
            .first_wait
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        // A server's Retry-After is followed, up to half a minute.
        error
            .retry_after()
            .map_or(doubled.min(self.max_wait), |asked| {
                asked.min(Duration::from_secs(30))
            })
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    base: String,
    notifier: Option<String>,
    stats: Option<String>,
    token: Option<String>,
    retry: Retry,
    timeout: Duration,
    connect_timeout: Duration,
    stream_idle: Duration,
    history_wait: Duration,
}

impl ClientBuilder {
    /// The token (`Authorization: Bearer`), when the mesh has `GORGON_API_TOKENS`.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// The notifier's URL (`http://host:8081`), for [`Client::subscribe`].
    pub fn notifier_url(mut self, url: impl Into<String>) -> ClientBuilder {
        self.notifier = Some(url.into());
        self
    }

    /// The stats role's URL (`http://host:8082`), for [`Client::stats_snapshot`].
    pub fn stats_url(mut self, url: impl Into<String>) -> ClientBuilder {
        self.stats = Some(url.into());
        self
    }

    /// The retry policy of reads and injects; see [`Retry`].
    pub fn retry(mut self, retry: Retry) -> ClientBuilder {
        self.retry = retry;
        self
    }

    /// How long one request may take, its answer read (default 30 s). Subscriptions are not
    /// bound by it.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// How long a subscription waits without a byte from the notifier before it takes the
    /// connection for dead and reconnects (default 60 s; the notifier sends a comment on a
    /// quiet stream every `GORGON_NOTIFIER_PING_INTERVAL_MS`, 25 s by default, so keep this
    /// above that).
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.stream_idle = timeout;
        self
    }

    /// How long a subscription keeps trying to read a gap's outputs from history before it
    /// reports them as an [`Error::Gap`] (default 30 s: the archive may be behind by a few
    /// seconds, or unreachable for a while).
    pub fn history_wait(mut self, wait: Duration) -> ClientBuilder {
        self.history_wait = wait;
        self
    }

    /// The client; fails when a URL does not parse.
    pub fn build(self) -> Result<Client> {
        let base = checked_url(&self.base)?;
        let notifier = beside(&base, self.notifier, DEFAULT_NOTIFIER_PORT)?;
        let stats = beside(&base, self.stats, DEFAULT_STATS_PORT)?;
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("gorgon_client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::Invalid(format!("the HTTP client cannot start: {error}")))?;
        Ok(Client {
            http,
            base,
            notifier,
            stats,
            token: self.token,
            retry: self.retry,
            timeout: self.timeout,
            stream_idle: self.stream_idle,
            history_wait: self.history_wait,
        })
    }
}

/// `url` checked, or else the API's `base` with `port`.
fn beside(base: &str, url: Option<String>, port: u16) -> Result<String> {
    if let Some(url) = url {
        return checked_url(&url);
    }
    let mut url = reqwest::Url::parse(base)
        .map_err(|error| Error::Invalid(format!("{base:?} is not a URL: {error}")))?;
    url.set_port(Some(port))
        .map_err(|()| Error::Invalid(format!("{base:?} cannot have a port")))?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `url` without a trailing slash, if it is an http(s) URL.
fn checked_url(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        Error::Invalid(format!(
            "{url:?} is not a URL ({error}); give one such as http://127.0.0.1:8080"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Invalid(format!(
            "{url:?} is not an http or https URL"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A topology document to apply: its text and format, sent as it is (the server parses and
/// validates it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    text: String,
    toml: bool,
}

impl Document {
    /// A TOML document.
    pub fn toml(text: impl Into<String>) -> Document {
        Document {
            text: text.into(),
            toml: true,
        }
    }

    /// A JSON document.
    pub fn json(text: impl Into<String>) -> Document {
        Document {
            text: text.into(),
            toml: false,
        }
    }

    /// A document read from `path`: TOML when its name ends in `.toml`, JSON otherwise.
    pub fn read(path: &std::path::Path) -> std::io::Result<Document> {
        let text = std::fs::read_to_string(path)?;
        let toml = path.extension().is_some_and(|ext| ext == "toml");
        Ok(Document { text, toml })
    }

    /// The document as text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it is TOML.
    pub fn is_toml(&self) -> bool {
        self.toml
    }
}

impl From<&TopologyDoc> for Document {
    fn from(doc: &TopologyDoc) -> Document {
        Document::json(serde_json::to_string(doc).expect("a topology document encodes"))
    }
}

/// Options of [`Client::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Answer the plan only; change nothing.
    pub dry_run: bool,
    /// Reset the state attributes of updated nodes to the document's values.
    pub reset_state: bool,
    /// Apply only if the topology is at this rev (else 412 `rev_mismatch`).
    pub if_match: Option<u64>,
}

/// A topology document and its rev.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The document.
    pub doc: TopologyDoc,
    /// Its rev (for [`ApplyOptions::if_match`]).
    pub rev: u64,
}

/// A request on its way: method, path, query, body, and whether it may be repeated.
struct Call {
    method: Method,
    path: String,
    /// The query's fields, absent ones left out; reqwest encodes them.
    query: Vec<(String, String)>,
    body: Option<(&'static str, String)>,
    headers: HeaderMap,
    retry: bool,
}

/// The fields of a query struct as name and text, leaving out those that are absent
/// (`None`), as the server's query reader expects.
fn query_pairs(query: &impl Serialize) -> Vec<(String, String)> {
    let Ok(Value::Object(fields)) = serde_json::to_value(query) else {
        unreachable!("every query of this crate is a struct of fields");
    };
    fields
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::Null => None,
            Value::String(text) => Some((name, text)),
            other => Some((name, other.to_string())),
        })
        .collect()
}

impl Call {
    fn new(method: Method, path: String) -> Call {
        let retry = method == Method::GET;
        Call {
            method,
            path,
            query: Vec::new(),
            body: None,
            headers: HeaderMap::new(),
            retry,
        }
    }

    fn query(mut self, query: &impl Serialize) -> Call {
        self.query = query_pairs(query);
        self
    }

    fn json(mut self, body: &impl Serialize) -> Call {
        let text = serde_json::to_string(body).expect("a request body encodes");
        self.body = Some(("application/json", text));
        self
    }

    fn body(mut self, content_type: &'static str, text: String) -> Call {
        self.body = Some((content_type, text));
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Result<Call> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| Error::Invalid(format!("{value:?} cannot be sent as {name}")))?;
        self.headers.insert(name, value);
        Ok(self)
    }

    fn if_match(self, rev: Option<u64>) -> Result<Call> {
        match rev {
            Some(rev) => self.header("if-match", &rev.to_string()),
            None => Ok(self),
        }
    }

    fn retried(mut self) -> Call {
        self.retry = true;
        self
    }
}

impl Client {
    /// A client of the web_face at `url` (`http://127.0.0.1:8080`), with the defaults.
    pub fn new(url: impl Into<String>) -> Result<Client> {
        Client::builder(url).build()
    }

    /// A builder for a client of the web_face at `url`.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: url.into(),
            notifier: None,
            stats: None,
            token: None,
            retry: Retry::default(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            stream_idle: Duration::from_secs(60),
            history_wait: Duration::from_secs(30),
        }
    }

    /// web_face's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The notifier's URL.
    pub fn notifier_url(&self) -> &str {
        &self.notifier
    }

    /// The stats role's URL.
    pub fn stats_url(&self) -> &str {
        &self.stats
    }

    // ---- functions and topologies ----

    /// `GET /v1/functions`: the function registry, by name.
    pub async fn functions(&self) -> Result<Vec<FunctionDescription>> {
        let list: FunctionList = self
            .read(Call::new(Method::GET, "/v1/functions".into()))
            .await?;
        Ok(list.functions)
    }

    /// `GET /v1/topologies`: the topologies the token may see.
    pub async fn topologies(&self) -> Result<TopologyList> {
        self.read(Call::new(Method::GET, "/v1/topologies".into()))
            .await
    }

    /// `PUT /v1/topologies/{t}`: applies a whole document (creates, updates and deletes nodes
    /// to match), or with [`ApplyOptions::dry_run`] answers the plan only.
    pub async fn apply(
        &self,
        topology: &str,
        doc: &Document,
        options: ApplyOptions,
    ) -> Result<Applied> {
        let content_type = if doc.toml {
            "application/toml"
        } else {
            "application/json"
        };
        #[derive(Serialize)]
        struct Flags {
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            dry_run: bool,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            reset_state: bool,
        }
        let flags = Flags {
            dry_run: options.dry_run,
            reset_state: options.reset_state,
        };
        let call = Call::new(Method::PUT, topology_path(topology)?)
            .query(&flags)
            .body(content_type, doc.text.clone())
            .if_match(options.if_match)?;
        self.read(call).await
    }

    /// `GET /v1/topologies/{t}`: the document and its rev.
    pub async fn topology(&self, topology: &str) -> Result<Topology> {
        let response = self
            .send(Call::new(Method::GET, topology_path(topology)?))
            .await?;
        let rev = etag_rev(&response);
        let url = response.url().to_string();
        let text = text_of(response).await?;
        let doc = TopologyDoc::from_json(&text).map_err(|error| Error::Unexpected {
            url,
            status: 200,
            detail: format!("the document does not read: {}", error.message()),
        })?;
        Ok(Topology { doc, rev })
    }

    /// `GET /v1/topologies/{t}` as TOML, as the server writes it.
    pub async fn topology_toml(&self, topology: &str) -> Result<String> {
        let call = Call::new(Method::GET, topology_path(topology)?)
            .header("accept", "application/toml")?;
        text_of(self.send(call).await?).await
    }

    /// `DELETE /v1/topologies/{t}`: the topology, its nodes, state and latched outputs
    /// (history stays).
    pub async fn delete_topology(&self, topology: &str, if_match: Option<u64>) -> Result<()> {
        let call = Call::new(Method::DELETE, topology_path(topology)?).if_match(if_match)?;
        self.send(call).await.map(drop)
    }

    /// `GET /v1/topologies/{t}/graph.mmd`: a Mermaid `flowchart LR`.
    pub async fn graph(&self, topology: &str) -> Result<String> {
        let call = Call::new(
            Method::GET,
            format!("{}/graph.mmd", topology_path(topology)?),
        );
        text_of(self.send(call).await?).await
    }

    // ---- nodes ----

    /// `POST /v1/topologies/{t}/nodes`: creates a node.
    pub async fn create_node(&self, topology: &str, node: &NodeSpec) -> Result<NodeView> {
        let call =
            Call::new(Method::POST, format!("{}/nodes", topology_path(topology)?)).json(node);
        self.read(call).await
    }

    /// `GET /v1/topologies/{t}/nodes`: every node in document order, the ones named in
    /// `query.ids`, or a page (`query.limit`, `query.after`).
    pub async fn nodes(&self, topology: &str, query: &ListQuery) -> Result<NodeList> {
        let call =
            Call::new(Method::GET, format!("{}/nodes", topology_path(topology)?)).query(query);
        self.read(call).await
    }

    /// `GET /v1/topologies/{t}/nodes/{n}`: the node, its attributes, latched output and
    /// status.
    pub async fn node(&self, topology: &str, node: &str) -> Result<NodeView> {
        self.read(Call::new(Method::GET, node_path(topology, node)?))
            .await
    }

    /// `PATCH /v1/topologies/{t}/nodes/{n}`: changes its function, sources or archiving.
    pub async fn patch_node(
        &self,
        topology: &str,
        node: &str,
        patch: &NodePatch,
    ) -> Result<NodeView> {
        let call = Call::new(Method::PATCH, node_path(topology, node)?).json(patch);
        self.read(call).await
    }

    /// `PATCH /v1/topologies/{t}/nodes/{n}/attrs`: a JSON merge patch of its attributes
    /// (`null` deletes a key); answers the attributes after it.
    pub async fn patch_attrs(
        &self,
        topology: &str,
        node: &str,
        patch: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let call = Call::new(
            Method::PATCH,
            format!("{}/attrs", node_path(topology, node)?),
        )
        .json(patch);
        let view: AttrsView = self.read(call).await?;
        Ok(view.attrs)
    }

    /// `DELETE /v1/topologies/{t}/nodes/{n}`: 409 `has_dependents` while others source from
    /// it, unless `force` (which also removes those edges).
    pub async fn delete_node(&self, topology: &str, node: &str, force: bool) -> Result<()> {
        #[derive(Serialize)]
        struct Force {
            force: bool,
        }
        let force = Force { force };
        let call = Call::new(Method::DELETE, node_path(topology, node)?).query(&force);
        self.send(call).await.map(drop)
    }

    /// `GET /v1/topologies/{t}/nodes/{n}/output`: the latched output, or `None` before the
    /// first one.
    pub async fn output(&self, topology: &str, node: &str) -> Result<Option<OutputEvent>> {
        let call = Call::new(
            Method::GET,
            format!("{}/output", node_path(topology, node)?),
        );
        match self.read(call).await {
            Ok(event) => Ok(Some(event)),
            Err(Error::Api {
                code: protocol::ErrorCode::NoOutput,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /v1/topologies/{t}/nodes/{n}/history`: a page of the node's outputs.
    pub async fn history(
        &self,
        topology: &str,
        node: &str,
        query: &HistoryParams,
    ) -> Result<HistoryView> {
        let call = Call::new(
            Method::GET,
            format!("{}/history", node_path(topology, node)?),
        )
        .query(query);
        self.read(call).await
    }

    /// The page a page's `next` names (of history or of [`Client::caused`]).
    pub async fn next_page(&self, next: &str) -> Result<HistoryView> {
        if !next.starts_with("/v1/") {
            return Err(Error::Invalid(format!(
                "{next:?} is not a page path of this API"
            )));
        }
        self.read(Call::new(Method::GET, next.to_owned())).await
    }

    /// `GET /v1/topologies/{t}/outputs?input_id=`: the outputs one inject caused, every
    /// node's, oldest first.
    pub async fn caused(&self, topology: &str, query: &OutputsParams) -> Result<HistoryView> {
        let call =
            Call::new(Method::GET, format!("{}/outputs", topology_path(topology)?)).query(query);
        self.read(call).await
    }

    // ---- messages ----

    /// `POST /v1/topologies/{t}/nodes/{n}/messages`: injects one message. It carries a new
    /// `Idempotency-Key`, so it is retried (see [`Retry`]) when the server is unreachable,
    /// busy (429) or without Redis (503) and is queued once however many tries reach it.
    pub async fn inject(&self, topology: &str, node: &str, message: &Value) -> Result<Injected> {
        self.inject_with_key(topology, node, message, &new_key())
            .await
    }

    /// [`Client::inject`] with the caller's `Idempotency-Key` (1 to 255 visible ASCII
    /// characters): a repeat of the same request with the same key within the server's
    /// `GORGON_IDEMPOTENCY_TTL_S` is answered with the first one's id and queues nothing.
    pub async fn inject_with_key(
        &self,
        topology: &str,
        node: &str,
        message: &Value,
        key: &str,
    ) -> Result<Injected> {
        let call = Call::new(
            Method::POST,
            format!("{}/messages", node_path(topology, node)?),
        )
        .json(message)
        .header("idempotency-key", key)?
        .retried();
        self.read(call).await
    }

    /// Injects many messages in one request (`application/x-ndjson`), all or none, with one
    /// `Idempotency-Key` for the request; retried as [`Client::inject`]. The server takes at
    /// most 10 000 lines and 1 MiB a request by default.
    pub async fn inject_many(
        &self,
        topology: &str,
        node: &str,
        messages: &[Value],
    ) -> Result<InjectedMany> {
        let mut text = String::new();
        for message in messages {
            text.push_str(&serde_json::to_string(message).expect("a message encodes"));
            text.push('\n');
        }
        self.inject_ndjson(topology, node, text, &new_key()).await
    }

    /// Injects ndjson text as it is (one message a line) with `key` as its
    /// `Idempotency-Key`; retried as [`Client::inject`].
    pub async fn inject_ndjson(
        &self,
        topology: &str,
        node: &str,
        ndjson: String,
        key: &str,
    ) -> Result<InjectedMany> {
        let call = Call::new(
            Method::POST,
            format!("{}/messages", node_path(topology, node)?),
        )
        .body("application/x-ndjson", ndjson)
        .header("idempotency-key", key)?
        .retried();
        self.read(call).await
    }

    /// `GET /v1/topologies/{t}/dead-letters`: the topology's dead letters, or one node's.
    pub async fn dead_letters(&self, topology: &str, node: Option<&str>) -> Result<DeadLetterList> {
        let query = NodeQuery { node };
        let call = Call::new(
            Method::GET,
            format!("{}/dead-letters", topology_path(topology)?),
        )
        .query(&query);
        self.read(call).await
    }

    /// `POST /v1/topologies/{t}/dead-letters/replay`: puts them back on their queues.
    pub async fn replay_dead_letters(
        &self,
        topology: &str,
        node: Option<&str>,
    ) -> Result<Replayed> {
        let query = NodeQuery { node };
        let call = Call::new(
            Method::POST,
            format!("{}/dead-letters/replay", topology_path(topology)?),
        )
        .query(&query);
        self.read(call).await
    }

    // ---- operations ----

    /// `GET /healthz`: whether web_face answers (`{"status": "ok"}`).
    pub async fn health(&self) -> Result<Value> {
        self.read(Call::new(Method::GET, "/healthz".into())).await
    }

    /// `GET /metrics`: web_face's Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        let call = Call::new(Method::GET, "/metrics".into()).header("accept", "text/plain")?;
        text_of(self.send(call).await?).await
    }

    /// `GET /readyz`: whether web_face reaches Redis (an error when it does not).
    pub async fn ready(&self) -> Result<Value> {
        self.read(Call::new(Method::GET, "/readyz".into())).await
    }

    /// `GET /openapi.json`: the API's OpenAPI document.
    pub async fn openapi(&self) -> Result<Value> {
        self.read(Call::new(Method::GET, "/openapi.json".into()))
            .await
    }

    /// The stats role's `GET /api/v1/snapshot` of the last `window_s` seconds: role
    /// instances, partitions with their owners and backlogs, the archive's lag, throughput
    /// and latency (its shape: `docs/stats.md`). Needs an admin token when the mesh has
    /// tokens.
    pub async fn stats_snapshot(&self, window_s: u64) -> Result<Value> {
        let url = format!("{}/api/v1/snapshot?window={window_s}", self.stats);
        self.read(Call::new(Method::GET, url)).await
    }

    /// A GET of any path of the API, read as `T` (for routes newer than this client).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.read(Call::new(Method::GET, path.to_owned())).await
    }

    /// The outputs of `topology` (every node, later ones too) or of one `node`, from
    /// `start`, as a stream that reconnects by itself; see [`Subscription`]. It returns once
    /// the notifier has taken the subscription (the first connection retried as reads are),
    /// so an inject made after it is followed.
    pub async fn subscribe(
        &self,
        topology: &str,
        node: Option<&str>,
        start: StartAt,
    ) -> Result<Subscription> {
        Subscription::open(self.clone(), topology, node, start).await
    }

    // ---- the wire ----

    async fn read<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let response = self.send(call).await?;
        let url = response.url().to_string();
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| Error::transport(&url, &error))?;
        serde_json::from_slice(&bytes).map_err(|error| Error::Unexpected {
            url,
            status,
            detail: format!("{error}: {}", preview(&bytes)),
        })
    }

    /// Sends `call`, retrying as [`Retry`] says when it may; a success, or the error.
    async fn send(&self, call: Call) -> Result<Response> {
        let attempts = if call.retry {
            self.retry.attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            match self.send_once(&call).await {
                Ok(response) => return Ok(response),
                Err(error) if attempt < attempts && error.is_transient() => {
                    tokio::time::sleep(self.retry.wait(attempt, &error)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn send_once(&self, call: &Call) -> Result<Response> {
        // A path of the API, or the whole URL of another role's route.
        let url = if call.path.starts_with('/') {
            format!("{}{}", self.base, call.path)
        } else {
            call.path.clone()
        };
        let mut request = self
            .request(call.method.clone(), &url)
            .timeout(self.timeout)
            .headers(call.headers.clone());
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some((content_type, text)) = &call.body {
            request = request
                .header(CONTENT_TYPE, *content_type)
                .body(text.clone());
        }
        if !call.headers.contains_key(ACCEPT) {
            request = request.header(ACCEPT, "application/json");
        }
        let response = request
            .send()
            .await
            .map_err(|error| Error::transport(&url, &error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(answer_error(response).await)
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }
}

/// `?node=` of the dead-letter routes.
#[derive(Serialize)]
struct NodeQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
}

/// The error an answer that is not a success stands for.
async fn answer_error(response: Response) -> Error {
    let url = response.url().to_string();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => return Error::transport(&url, &error),
    };
    match serde_json::from_slice::<ErrorAnswer>(&bytes) {
        Ok(answer) => Error::Api {
            status: status.as_u16(),
            code: answer.error.code,
            message: answer.error.message,
            problems: answer.error.problems,
            retry_after,
        },
        Err(_) => Error::Unexpected {
            url,
            status: status.as_u16(),
            detail: preview(&bytes),
        },
    }
}

async fn text_of(response: Response) -> Result<String> {
    let url = response.url().to_string();
    response
        .text()
        .await
        .map_err(|error| Error::transport(&url, &error))
}

/// The rev an `ETag` header carries (`"7"`), or 0 without one.
fn etag_rev(response: &Response) -> u64 {
    response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim_start_matches("W/").trim_matches('"'))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The start of a body, for an error message.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if text.trim().is_empty() {
        format!("an empty body ({} bytes)", bytes.len())
    } else {
        text
    }
}

/// A new `Idempotency-Key`: a UUIDv7.
fn new_key() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn slug(id: &str, what: &str) -> Result<()> {
    protocol::validate_slug(id)
        .map(drop)
        .map_err(|error| Error::Invalid(format!("{what} id {id:?}: {error}")))
}

fn topology_path(topology: &str) -> Result<String> {
    slug(topology, "topology")?;
    Ok(format!("/v1/topologies/{topology}"))
}

fn node_path(topology: &str, node: &str) -> Result<String> {
    slug(node, "node")?;
    Ok(format!("{}/nodes/{node}", topology_path(topology)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queries leave out absent fields and give the others as text.
    #[test]
    fn queries_leave_out_absent_fields() {
        let query = HistoryParams {
            after_seq: Some(4),
            from: Some("2026-12-05T10:00:00+01:00".into()),
            ..HistoryParams::default()
        };
        assert_eq!(
            query_pairs(&query),
            [
                ("after_seq".to_owned(), "4".to_owned()),
                ("from".to_owned(), "2026-12-05T10:00:00+01:00".to_owned())
            ]
        );
        assert_eq!(query_pairs(&NodeQuery { node: None }), []);
    }

    /// The notifier's URL follows the API's host on port 8081 unless given; bad URLs and
    /// ids are refused before anything is sent.
    #[test]
    fn urls_and_ids() {
        let client = Client::new("http://10.0.0.7:8080/").unwrap();
        assert_eq!(client.url(), "http://10.0.0.7:8080");
        assert_eq!(client.notifier_url(), "http://10.0.0.7:8081");
        assert_eq!(client.stats_url(), "http://10.0.0.7:8082");
        let client = Client::builder("https://gorgon.example.com")
            .notifier_url("https://live.example.com/")
            .build()
            .unwrap();
        assert_eq!(client.notifier_url(), "https://live.example.com");
        assert!(matches!(
            Client::new("127.0.0.1:8080"),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            node_path("sensors", "Bad Id"),
            Err(Error::Invalid(_))
        ));
        assert_eq!(
            node_path("sensors", "t1").unwrap(),
            "/v1/topologies/sensors/nodes/t1"
        );
    }
}
