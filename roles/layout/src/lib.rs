//! layout: where the Gorgon mesh keeps everything in Redis, in one place.
//!
//! Every key, hash field and handle (queue, outbox, lease, topic, live channel, service) the
//! roles share is named here, and the records they store are written and read here: a role
//! asks this crate for a handle or a record and never spells a key, a field name or a Redis
//! command itself. It is built on redpill (which owns how a queue or a topic is laid out
//! inside its keys) and protocol (what the records hold); it is not a role, runs no loop and
//! decides nothing about what to write, only where and how it is stored.
//!
//! The layout, under the deployment's prefix `P` (`REDIS_PREFIX`) — braces are Redis Cluster
//! hash tags, so everything of one partition, one topology or one service is in one slot:
//!
//! | where | what | written by |
//! |---|---|---|
//! | queue `{p<n>}` `in` | partition `n`'s input: injects, forwards, node changes | web_face, processors, the store (through outboxes) |
//! | outbox `{p<n>}` `outbox` | forwards committed for other partitions | partition `n`'s owner |
//! | lease `{p<n>}` `owner` | which processor owns partition `n` | processors |
//! | `P:{p<n>}:node:<t>/<n>` | hash: a node's record ([`NodeRecord`]) | its partition's owner |
//! | `P:{p<n>}:replay:<t>/<n>` | list: a node's latest output events, for resuming clients | its partition's owner |
//! | `P:{p<n>}:nodes` | set: the nodes of partition `n`, as `<topology>/<node>` | its partition's owner |
//! | `P:{p<n>}:floors` | sorted set: per deleted node (`<topology>/<node>`), the highest seq any of its former lives reached | its partition's owner |
//! | topic `outputs`, one shard per partition (`{p<n>}`) | every output event, archived by group `archive` | processors |
//! | `P:{t:<id>}:topology` | hash: a topology's record ([`TopologyRecord`]) | the store |
//! | lease `{t:<id>}` `writer` | the store applying a change to the topology | the store |
//! | outbox `{t:<id>}` `changes` | node changes on their way to partitions | the store |
//! | `P:topologies` | set: topology ids (may briefly list one that no longer exists) | the store |
//! | `P:functions` | hash: function name → its description (JSON) | processors and stores |
//! | `P:published` | hash: settings roles publish for others ([`publish_replay_buffer`]) | processors |
//! | topic `{stats}` `stats` | a ring of every role's stats reports | every role |
//! | members `processors` | the live processors, by heartbeat | processors |
//! | services `store`, `history` | request/reply: topology changes, history queries | web_face asks, the store answers |
//! | live channel `out.<t>` | each batch's output events of topology `t`, for notifiers | processors |
//!
//! redpill adds the keys of its own structures under these (a queue's body hash, a lease's
//! epoch, ...; see `redpill/src/keys.rs`).

mod node;
mod topology;

use redpill::{Client, Lease, Members, Outbox, Queue, Responder, Tag, Topic};

pub use node::{
    read_caused_outputs, read_node_records, read_node_seqs, read_partition_nodes,
    read_recent_outputs, read_replay_tails, write_nodes, NodeRecord, NodeWrite,
};
pub use topology::{
    list_topologies, list_topology, read_topologies, read_topology_revs, read_topology_settled,
    read_topology_summaries, settle_topology, topology, unlist_topology, unsettle_topology,
    write_topology, StoredTopology, TopologyHandles, TopologyRecord, TopologySummary,
    TopologyWrite,
};

/// The most entries (batches of output events) each shard of the output topic keeps until
/// the archive has acknowledged them. At the bound the partition stops taking messages, so
/// its queue grows and the API pushes back; nothing is dropped.
pub const OUTPUT_TOPIC_BOUND: u64 = 100_000;

/// The subscriber group of the archive on the output topic.
pub const ARCHIVE_GROUP: &str = "archive";

/// How many reports the stats topic keeps, newest first (a ring): at one report a second,
/// a quarter of an hour for five or six instances. A monitor that restarts re-reads them.
pub const STATS_RING_BOUND: u64 = 5_000;

/// The request/reply service of the store: topology changes.
pub const STORE_SERVICE: &str = "store";

/// The request/reply service of the store's archive: history queries. Apart from
/// [`STORE_SERVICE`], so that reads never wait behind changes or the other way round.
pub const HISTORY_SERVICE: &str = "history";

const INPUT_QUEUE: &str = "in";
const OUTBOX: &str = "outbox";
const PARTITION_LEASE: &str = "owner";
const OUTPUT_TOPIC: &str = "outputs";
const STATS_TOPIC: &str = "stats";
const PROCESSORS: &str = "processors";
const FUNCTIONS: &str = "functions";
const PUBLISHED: &str = "published";
const REPLAY_BUFFER_SETTING: &str = "replay_buffer";

/// Partition `partition`'s input queue: injected and forwarded messages, and node changes.
pub fn input_queue(client: &Client, partition: u32) -> Queue {
    Queue::new(client, &Tag::partition(partition), INPUT_QUEUE)
}

/// Partition `partition`'s outbox: messages its owner committed for other partitions,
/// forwarded in order.
pub fn partition_outbox(client: &Client, partition: u32) -> Outbox {
    Outbox::new(client, &Tag::partition(partition), OUTBOX)
}

/// The lease that makes a processor partition `partition`'s owner.
pub fn partition_lease(client: &Client, partition: u32) -> Lease {
    Lease::new(client, &Tag::partition(partition), PARTITION_LEASE)
}

/// The group of live processors, which share the partitions out.
pub fn processors(client: &Client) -> Members {
    Members::new(client, PROCESSORS)
}

/// The partition-sharded topic of every output event, which the store archives. Each entry
/// is a JSON array of output events: those one processor batch committed, in commit order.
/// Bounded by [`OUTPUT_TOPIC_BOUND`] entries per shard.
pub fn output_topic(client: &Client, partitions: u32) -> Topic {
    Topic::partitioned(client, OUTPUT_TOPIC, partitions).with_bound(OUTPUT_TOPIC_BOUND)
}

/// The topic every role publishes its stats to, once a second: one shard, a ring of
/// [`STATS_RING_BOUND`] reports.
pub fn stats_topic(client: &Client) -> Topic {
    Topic::new(client, &Tag::named(STATS_TOPIC), STATS_TOPIC).ring(STATS_RING_BOUND)
}

/// The live channel carrying the output events of `topology`, for the notifier. Each
/// message is a JSON array of output events in commit order (all those of one processor
/// batch); a message may be lost, as on any live channel, so consumers that must not miss
/// one resume from the node's replay buffer by `seq`.
pub fn live_outputs(topology: &str) -> String {
    format!("out.{topology}")
}

/// The store's side of [`STORE_SERVICE`].
pub fn store_service(client: &Client) -> Responder {
    Responder::new(client, STORE_SERVICE)
}

/// The store's side of [`HISTORY_SERVICE`].
pub fn history_service(client: &Client) -> Responder {
    Responder::new(client, HISTORY_SERVICE)
}

/// Publishes function descriptions (name → JSON), as every processor does with its registry
/// at start and the store with the built-ins, for the store to validate topologies against
/// and the API to list. A later description of the same name replaces an earlier one.
pub async fn publish_functions(
    client: &Client,
    functions: &[protocol::FunctionDescription],
) -> redpill::Result<()> {
    let fields: Vec<(String, String)> = functions
        .iter()
        .map(|function| {
            (
                function.name.clone(),
                serde_json::to_string(function).expect("a description always serializes"),
            )
        })
        .collect();
    client
        .write_hash(&client.keys().plain(FUNCTIONS), &fields)
        .await
}

/// The function descriptions published so far, in no order; one that does not parse is
/// logged and skipped.
pub async fn read_functions(
    client: &Client,
) -> redpill::Result<Vec<protocol::FunctionDescription>> {
    let fields = client
        .read_hashes(&[client.keys().plain(FUNCTIONS)])
        .await?
        .pop()
        .unwrap_or_default();
    Ok(fields
        .into_iter()
        .filter_map(|(name, json)| {
            serde_json::from_str(&json)
                .inspect_err(|error| {
                    tracing::warn!(function = %name, %error, "skipping an unreadable function description");
                })
                .ok()
        })
        .collect())
}

/// Publishes the replay buffer length processors keep (every processor does at start), for
/// notifiers to show and use.
pub async fn publish_replay_buffer(client: &Client, length: usize) -> redpill::Result<()> {
    client
        .write_hash(
            &client.keys().plain(PUBLISHED),
            &[(REPLAY_BUFFER_SETTING.to_owned(), length.to_string())],
        )
        .await
}

/// The replay buffer length processors last published, if any did.
pub async fn read_replay_buffer(client: &Client) -> redpill::Result<Option<u64>> {
    let value = client
        .read_hash_field(&[client.keys().plain(PUBLISHED)], REPLAY_BUFFER_SETTING)
        .await?
        .pop()
        .flatten();
    Ok(value.and_then(|length| length.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the table in the crate docs gives are the keys the handles use.
    #[test]
    fn keys_are_where_the_docs_say() {
        let keys = redpill::Keys::new("P");
        assert_eq!(node::record_key(&keys, 3, "t/a"), "P:{p3}:node:t/a");
        assert_eq!(node::replay_key(&keys, 3, "t/a"), "P:{p3}:replay:t/a");
        assert_eq!(node::index_key(&keys, 3), "P:{p3}:nodes");
        assert_eq!(topology::record_key(&keys, "t"), "P:{t:t}:topology");
        assert_eq!(live_outputs("t"), "out.t");
    }
}
