//! Standing in for the store and the API towards processors: creating nodes and injecting
//! messages the way those roles do, through redpill, and reading node state back.

use std::collections::HashMap;

use layout::NodeRecord;
use protocol::{partition_of, Body, Envelope, NodeSpec, ENVELOPE_VERSION};
use redpill::{Client, Queue};
use serde_json::Value;

/// One topology of a deployment with `partitions` partitions.
pub struct Graph {
    client: Client,
    /// The topology id.
    pub topology: String,
    /// The deployment's partition count.
    pub partitions: u32,
}

impl Graph {
    /// Topology `topology` through `client`.
    pub fn new(client: &Client, topology: &str, partitions: u32) -> Graph {
        Graph {
            client: client.clone(),
            topology: topology.to_owned(),
            partitions,
        }
    }

    /// The partition of `node`.
    pub fn partition(&self, node: &str) -> u32 {
        partition_of(&self.topology, node, self.partitions)
    }

    fn queue(&self, partition: u32) -> Queue {
        layout::input_queue(&self.client, partition)
    }

    /// Creates (or updates) nodes: `(id, function, sources, attrs)`. Targets are derived from
    /// the sources of the nodes given, as the store does.
    pub async fn create(&self, nodes: &[(&str, &str, &[&str], Value)]) {
        let mut targets: HashMap<&str, Vec<String>> = HashMap::new();
        for (id, _, sources, _) in nodes {
            for source in *sources {
                targets.entry(source).or_default().push((*id).to_owned());
            }
        }
        let envelopes: Vec<(u32, String, Vec<u8>)> = nodes
            .iter()
            .map(|(id, function, sources, attrs)| {
                let envelope = Envelope {
                    version: ENVELOPE_VERSION,
                    topology: self.topology.clone(),
                    node: (*id).to_owned(),
                    body: Body::Upsert {
                        spec: NodeSpec {
                            id: (*id).to_owned(),
                            function: (*function).to_owned(),
                            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
                            attrs: attrs.as_object().cloned().unwrap_or_default(),
                            archive: None,
                        },
                        targets: targets.get(id).cloned().unwrap_or_default(),
                        reset_state: false,
                    },
                };
                (self.partition(id), redpill::new_id(), envelope.to_bytes())
            })
            .collect();
        self.push(&envelopes).await;
    }

    /// Injects `data` into `node` for each item, in order; returns the input ids.
    pub async fn inject(&self, messages: &[(&str, Value)]) -> Vec<String> {
        let now = protocol::Timestamp::now().unix_ms();
        let mut ids = Vec::with_capacity(messages.len());
        let envelopes: Vec<(u32, String, Vec<u8>)> = messages
            .iter()
            .map(|(node, data)| {
                let id = redpill::new_id();
                ids.push(id.clone());
                let envelope = Envelope::inject(&self.topology, node, &id, now, data.clone());
                (self.partition(node), id, envelope.to_bytes())
            })
            .collect();
        self.push(&envelopes).await;
        ids
    }

    /// Pushes `(partition, id, envelope)` in order, one round trip, retrying while Redis is
    /// unreachable (pushes are idempotent by id).
    async fn push(&self, envelopes: &[(u32, String, Vec<u8>)]) {
        let mut by_partition: HashMap<u32, Vec<(&str, &[u8])>> = HashMap::new();
        for (partition, id, body) in envelopes {
            by_partition.entry(*partition).or_default().push((id, body));
        }
        let queues: Vec<(u32, Queue)> = by_partition.keys().map(|p| (*p, self.queue(*p))).collect();
        let batches: Vec<_> = queues
            .iter()
            .map(|(partition, queue)| (queue, by_partition[partition].clone()))
            .collect();
        for attempt in 0.. {
            match Queue::push_many(&self.client, &batches).await {
                Ok(_) => return,
                Err(err) if err.is_retryable() && attempt < 100 => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(err) => panic!("push failed: {err}"),
            }
        }
    }

    /// The stored state of `node`, if it exists.
    pub async fn node(&self, node: &str) -> Option<NodeRecord> {
        self.nodes(&[node]).await.pop().flatten()
    }

    /// The stored state of each node, in order.
    pub async fn nodes(&self, nodes: &[&str]) -> Vec<Option<NodeRecord>> {
        let nodes: Vec<(&str, &str)> = nodes
            .iter()
            .map(|node| (self.topology.as_str(), *node))
            .collect();
        layout::read_node_records(&self.client, self.partitions, &nodes)
            .await
            .expect("read node state")
    }

    /// The `count` attribute of each node (0 for a node with none yet).
    pub async fn counts(&self, nodes: &[&str]) -> Vec<u64> {
        self.nodes(nodes)
            .await
            .into_iter()
            .map(|state| {
                state
                    .and_then(|state| state.attrs.get("count").and_then(Value::as_u64))
                    .unwrap_or(0)
            })
            .collect()
    }
}
