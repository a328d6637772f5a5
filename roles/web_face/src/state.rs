//! What every handler shares: the Redis client, the store requester, limits, tokens, the
//! rate limiter, and a cache of the topologies read, checked against their rev.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use layout::TopologyRecord;
use protocol::store::{ApiError, Change, StoreRequest};
use protocol::{NodeSpec, TopologyDoc, TopologyError};
use redpill::{Client, Requester};

use crate::auth::{Caller, Tokens};
use crate::body::Limits;
use crate::error::{ApiResult, Failure};
use crate::Config;

/// How long an inject trusts the topology it read without asking for its rev: a node
/// created since is still found (a miss reads again), and an inject into a node deleted
/// within this time is dead-lettered by the processor as `node_deleted`.
const NODE_CACHE_TIME: Duration = Duration::from_secs(1);

/// How long a cached topology serves reads whose rev check matches. Every change bumps the
/// rev, so this only bounds how long a copy could outlive a Redis that lost its data and
/// came back to the same rev with another document.
const TOPOLOGY_CACHE_TIME: Duration = Duration::from_secs(10);

/// The most topologies kept parsed; past it the one whose rev was checked longest ago is
/// dropped.
const TOPOLOGY_CACHE_SIZE: usize = 256;

/// The handlers' shared state.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

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
    topologies: Mutex<HashMap<String, CachedTopology>>,
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

/// A stored topology as the handlers read it: parsed and resolved once per rev, so that a
/// node read in a topology of 10 000 nodes costs a hash lookup, not a parse of the document.
#[derive(Debug)]
pub struct TopologyView {
    /// The document as stored.
    pub doc: TopologyDoc,
    /// Its rev.
    pub rev: u64,
    /// The resolved nodes, in document order (see [`TopologyDoc::resolved_nodes`]); the
    /// problem when the stored document does not resolve, which the store never lets in.
    resolved: Result<Vec<NodeSpec>, TopologyError>,
    /// Node id → its position in `resolved`.
    index: HashMap<String, usize>,
    /// The positions in `resolved` of the distinct ids, sorted by id: the order of paged
    /// node reads, whose cursor (the last id read) stays good while nodes come and go.
    by_id: Vec<usize>,
    /// Node id → the nodes that receive its outputs; made on the first read that needs it.
    targets: OnceLock<BTreeMap<String, Vec<String>>>,
}

impl TopologyView {
    fn new(TopologyRecord { doc, rev }: TopologyRecord) -> TopologyView {
        let resolved = doc.resolved_nodes();
        let mut index = HashMap::new();
        for (position, node) in resolved.iter().flatten().enumerate() {
            // The first of repeated ids counts, as in a search in document order.
            index.entry(node.id.clone()).or_insert(position);
        }
        let mut by_id: Vec<usize> = index.values().copied().collect();
        if let Ok(nodes) = &resolved {
            by_id.sort_unstable_by(|&a, &b| nodes[a].id.cmp(&nodes[b].id));
        }
        TopologyView {
            doc,
            rev,
            resolved,
            index,
            by_id,
            targets: OnceLock::new(),
        }
    }

    /// The resolved nodes, or the problem of a document that does not resolve.
    pub fn nodes(&self) -> ApiResult<&[NodeSpec]> {
        self.resolved
            .as_deref()
            .map_err(|error| Failure::new(error.code(), error.message()))
    }

    /// The resolved node `id`, if the topology has it.
    pub fn node(&self, id: &str) -> ApiResult<Option<&NodeSpec>> {
        let nodes = self.nodes()?;
        Ok(self.index.get(id).map(|&position| &nodes[position]))
    }

    /// At most `limit` nodes in id order, those after the id `after` (from the start without
    /// one), and whether more follow.
    pub fn page(&self, after: Option<&str>, limit: usize) -> ApiResult<(Vec<&NodeSpec>, bool)> {
        let nodes = self.nodes()?;
        let start = after.map_or(0, |after| {
            self.by_id
                .partition_point(|&position| nodes[position].id.as_str() <= after)
        });
        let end = start.saturating_add(limit).min(self.by_id.len());
        let page = self.by_id[start..end]
            .iter()
            .map(|&position| &nodes[position])
            .collect();
        Ok((page, end < self.by_id.len()))
    }

    /// Node `from` and every node its outputs reach, in breadth-first order, or `None` when
    /// they are more than `most` (or the topology has no node `from`).
    pub fn downstream(&self, from: &str, most: usize) -> ApiResult<Option<Vec<&str>>> {
        let nodes = self.nodes()?;
        let targets = self.targets.get_or_init(|| protocol::targets(nodes));
        let Some((from, _)) = targets.get_key_value(from) else {
            return Ok(None);
        };
        let mut reached: Vec<&str> = vec![from.as_str()];
        let mut seen: HashSet<&str> = reached.iter().copied().collect();
        let mut next = 0;
        while let Some(&node) = reached.get(next) {
            next += 1;
            for target in targets.get(node).into_iter().flatten() {
                if seen.insert(target.as_str()) {
                    if reached.len() == most {
                        return Ok(None);
                    }
                    reached.push(target.as_str());
                }
            }
        }
        Ok(Some(reached))
    }

    /// Whether the document declares node `id`.
    fn has(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }
}

/// A topology read: parsed at `parsed` (read again after [`TOPOLOGY_CACHE_TIME`]), its rev
/// last found unchanged at `checked` (an inject trusts it for [`NODE_CACHE_TIME`] after).
struct CachedTopology {
    parsed: Instant,
    checked: Instant,
    view: Arc<TopologyView>,
}

/// A token bucket of one caller.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AppState {
    /// The state of a web_face configured by `config`, on `client` (connected to the mesh's
    /// Redis, with the mesh's prefix); `/metrics` renders `prometheus`. Refuses what
    /// [`Config::tokens`] refuses.
    pub fn from_config(
        config: &Config,
        client: Client,
        prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> anyhow::Result<AppState> {
        Ok(AppState::new(
            client,
            Limits {
                body: config.body_limit,
                depth: config.json_depth,
                lines: config.ndjson_lines,
            },
            config.tokens()?,
            prometheus,
            Settings {
                partitions: config.redis.partitions,
                queue_high_water: config.queue_high_water,
                idempotency_ttl: Duration::from_secs(config.idempotency_ttl_s.max(1)),
                store_timeout: Duration::from_millis(config.store_timeout_ms),
                rate_limit: config.rate_limit,
            },
        ))
    }

    /// The state.
    fn new(
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
            topologies: Mutex::default(),
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
    pub async fn topology(&self, caller: &Caller, topology: &str) -> ApiResult<Arc<TopologyView>> {
        if protocol::validate_slug(topology).is_err() || !caller.grants.reads(topology) {
            return Err(Failure::no_topology(topology));
        }
        self.read_topology(topology)
            .await?
            .ok_or_else(|| Failure::no_topology(topology))
    }

    /// The stored topology, if it exists, as of this call: one small round trip reads its
    /// rev, and the document is read and parsed again only when the rev differs from the
    /// cached copy's (or the copy was parsed more than [`TOPOLOGY_CACHE_TIME`] ago).
    pub async fn read_topology(&self, topology: &str) -> ApiResult<Option<Arc<TopologyView>>> {
        let stored_rev = layout::read_topology_revs(&self.0.client, &[topology])
            .await?
            .pop()
            .flatten();
        {
            let mut cache = self.0.topologies.lock().expect("topology cache");
            if let Some(cached) = cache.get_mut(topology).filter(|cached| {
                cached.parsed.elapsed() < TOPOLOGY_CACHE_TIME && Some(cached.view.rev) == stored_rev
            }) {
                cached.checked = Instant::now();
                return Ok(Some(Arc::clone(&cached.view)));
            }
        }
        let stored = layout::read_topologies(&self.0.client, &[topology])
            .await?
            .pop()
            .unwrap_or_default();
        let record = stored.record().map_err(|error| {
            tracing::error!(%topology, %error, "a stored topology document does not parse");
            Failure::new(
                protocol::ErrorCode::Internal,
                "the stored topology could not be read; the log has the details",
            )
        })?;
        let view = record.map(|record| Arc::new(TopologyView::new(record)));
        let mut cache = self.0.topologies.lock().expect("topology cache");
        let Some(view) = view else {
            cache.remove(topology);
            return Ok(None);
        };
        if cache.len() >= TOPOLOGY_CACHE_SIZE && !cache.contains_key(topology) {
            let oldest = cache
                .iter()
                .min_by_key(|(_, cached)| cached.checked)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        let now = Instant::now();
        cache.insert(
            topology.to_owned(),
            CachedTopology {
                parsed: now,
                checked: now,
                view: Arc::clone(&view),
            },
        );
        Ok(Some(view))
    }

    /// Whether `node` is in `topology`. An inject's hot path: a copy read within
    /// [`NODE_CACHE_TIME`] that has the node answers without a round trip.
    pub async fn has_node(&self, topology: &str, node: &str) -> ApiResult<bool> {
        let trusted = self
            .0
            .topologies
            .lock()
            .expect("topology cache")
            .get(topology)
            .is_some_and(|cached| {
                cached.checked.elapsed() < NODE_CACHE_TIME && cached.view.has(node)
            });
        if trusted {
            return Ok(true);
        }
        Ok(self
            .read_topology(topology)
            .await?
            .is_some_and(|view| view.has(node)))
    }

    /// Asks the store for a page of history: of a node, or of the outputs of an inject.
    pub async fn history(
        &self,
        query: &protocol::history::ArchiveQuery,
    ) -> ApiResult<protocol::history::HistoryPage> {
        self.ask(layout::HISTORY_SERVICE, query, "the history query")
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
            layout::STORE_SERVICE,
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
                protocol::ErrorCode::Internal,
                "the store's reply could not be read",
            ))
        })?;
        reply.map_err(Failure::from_store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(doc: serde_json::Value) -> TopologyView {
        TopologyView::new(TopologyRecord {
            doc: TopologyDoc::from_json(&doc.to_string()).unwrap(),
            rev: 1,
        })
    }

    /// A node and everything its outputs reach, each once, breadth first (a diamond reaches
    /// its last node by two paths); `None` past the bound or for a node that is not there.
    #[test]
    fn downstream_walks_the_edges_once_within_a_bound() {
        let diamond = view(serde_json::json!({
            "graph": "a --> b\na --> c\nb --> d\nc --> d\nz --> d",
            "node": [
                {"id": "a", "function": "pass"}, {"id": "b", "function": "pass"},
                {"id": "c", "function": "pass"}, {"id": "d", "function": "merge"},
                {"id": "z", "function": "pass"},
            ],
        }));
        assert_eq!(
            diamond.downstream("a", 10).unwrap(),
            Some(vec!["a", "b", "c", "d"])
        );
        assert_eq!(diamond.downstream("b", 10).unwrap(), Some(vec!["b", "d"]));
        assert_eq!(diamond.downstream("d", 1).unwrap(), Some(vec!["d"]));
        assert_eq!(
            diamond.downstream("a", 4).unwrap().map(|v| v.len()),
            Some(4)
        );
        assert_eq!(diamond.downstream("a", 3).unwrap(), None);
        assert_eq!(diamond.downstream("nope", 10).unwrap(), None);
    }
}
