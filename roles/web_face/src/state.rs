//! What every handler shares: the Redis client, the store requester, limits, tokens, the
//! rate limiter, and a short-lived cache of each topology's node ids for injects.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::store::{
    topology_tag, ApiError, Change, StoreRequest, TopologyRecord, TOPOLOGY_RECORD,
};
use redpill::{Client, Requester, Tag};

use crate::auth::{Caller, Tokens};
use crate::body::Limits;
use crate::error::{ApiResult, Failure};

/// How long an inject trusts the node ids it read: a node created since is still found (a
/// miss reads again), and an inject into a node deleted within this time is dead-lettered
/// by the processor as `node_deleted`.
const NODE_CACHE_TIME: Duration = Duration::from_secs(1);

/// The handlers' shared state.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// See [`AppState`].
pub struct Inner {
    /// Redis.
    pub client: Client,
    /// Requests to the store.
    pub requester: Requester,
    /// Body limits.
    pub limits: Limits,
    /// API tokens.
    pub tokens: Tokens,
    /// Settings.
    pub settings: Settings,
    /// Renders `/metrics`; `None` when another recorder was installed first.
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    buckets: Mutex<HashMap<String, Bucket>>,
    nodes: Mutex<HashMap<String, CachedNodes>>,
}

/// Settings from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The partition count.
    pub partitions: u32,
    /// Injects get 429 when their partition queue holds this many messages.
    pub queue_high_water: u64,
    /// How long an inject's `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// How long to wait for the store.
    pub store_timeout: Duration,
    /// Requests per second per caller; 0 is unlimited.
    pub rate_limit: u32,
}

/// A topology's node ids and when they were read.
type CachedNodes = (Instant, Arc<HashSet<String>>);

/// A token bucket of one caller.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AppState {
    /// The state.
    pub fn new(
        client: Client,
        limits: Limits,
        tokens: Tokens,
        prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
        settings: Settings,
    ) -> AppState {
        AppState(Arc::new(Inner {
            requester: Requester::new(&client),
            client,
            limits,
            tokens,
            settings,
            prometheus,
            buckets: Mutex::default(),
            nodes: Mutex::default(),
        }))
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn rate_check(&self, key: &str) -> Result<(), u32> {
        let rate = f64::from(self.0.settings.rate_limit);
        if rate == 0.0 {
            return Ok(());
        }
        let burst = rate * 2.0;
        let now = Instant::now();
        let mut buckets = self.0.buckets.lock().expect("rate buckets");
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u32)
        }
    }

    /// The stored topology, if it exists and `caller` may see it; else 404. An id that is no
    /// slug names no topology (and could not be made into its key).
    pub async fn topology(&self, caller: &Caller, topology: &str) -> ApiResult<TopologyRecord> {
        if protocol::validate_slug(topology).is_err() || !caller.grants.reads(topology) {
            return Err(Failure::no_topology(topology));
        }
        self.read_topology(topology)
            .await?
            .ok_or_else(|| Failure::no_topology(topology))
    }

    /// The stored topology, if it exists.
    pub async fn read_topology(&self, topology: &str) -> ApiResult<Option<TopologyRecord>> {
        let key = self.topology_key(topology);
        let fields = self
            .0
            .client
            .read_hashes(&[key])
            .await?
            .pop()
            .unwrap_or_default();
        TopologyRecord::from_fields(&fields).map_err(|error| {
            tracing::error!(%topology, %error, "a stored topology document does not parse");
            Failure::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the stored topology could not be read; the log has the details",
            )
        })
    }

    /// The key of `topology`'s record.
    pub fn topology_key(&self, topology: &str) -> String {
        self.0
            .client
            .keys()
            .tagged(&Tag::named(&topology_tag(topology)), TOPOLOGY_RECORD)
    }

    /// Whether `node` is in `topology`, from the cache when it is fresh and says yes.
    pub async fn has_node(&self, topology: &str, node: &str) -> ApiResult<bool> {
        let cached = self
            .0
            .nodes
            .lock()
            .expect("node cache")
            .get(topology)
            .filter(|(at, _)| at.elapsed() < NODE_CACHE_TIME)
            .map(|(_, nodes)| Arc::clone(nodes));
        if cached.is_some_and(|nodes| nodes.contains(node)) {
            return Ok(true);
        }
        let Some(record) = self.read_topology(topology).await? else {
            return Ok(false);
        };
        let nodes: Arc<HashSet<String>> =
            Arc::new(record.doc.node.into_iter().map(|spec| spec.id).collect());
        let found = nodes.contains(node);
        let mut cache = self.0.nodes.lock().expect("node cache");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(topology.to_owned(), (Instant::now(), nodes));
        Ok(found)
    }

    /// Asks the store for a page of history.
    pub async fn history(
        &self,
        query: &protocol::history::HistoryQuery,
    ) -> ApiResult<protocol::history::HistoryPage> {
        self.ask(protocol::names::HISTORY_SERVICE, query, "the history query")
            .await
    }

    /// Sends a change to the store and waits for its answer.
    pub async fn change(
        &self,
        topology: &str,
        if_match: Option<u64>,
        change: Change,
    ) -> ApiResult<protocol::store::Applied> {
        let request = StoreRequest {
            topology: topology.to_owned(),
            if_match,
            change,
        };
        self.ask(
            protocol::names::STORE_SERVICE,
            &request,
            "the change; it may still be applied, so read the topology before retrying",
        )
        .await
    }

    /// Sends `request` to the store's `service` and reads its answer, `Result<T, ApiError>`
    /// as JSON: 503 when no store answers in time (`what` names the request and says what
    /// to do), the store's error with its status.
    async fn ask<Q: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        service: &str,
        request: &Q,
        what: &str,
    ) -> ApiResult<T> {
        let body = serde_json::to_vec(request).expect("a request always serializes");
        let timeout = self.0.settings.store_timeout;
        let reply = self
            .0
            .requester
            .request(service, &body, timeout)
            .await
            .map_err(|error| match error {
                redpill::Error::Timeout { .. } => Failure::unavailable(format!(
                    "no store answered within {} ms: {what}",
                    timeout.as_millis()
                )),
                other => Failure::from(other),
            })?;
        let reply: Result<T, ApiError> = serde_json::from_slice(&reply).map_err(|error| {
            tracing::error!(%error, %service, "the store's reply does not parse");
            Failure::from_store(ApiError::new(
                "internal",
                "the store's reply could not be read",
            ))
        })?;
        reply.map_err(Failure::from_store)
    }
}
