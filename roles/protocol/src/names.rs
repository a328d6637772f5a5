//! The names of the queues, topics and channels roles exchange messages through.
//!
//! Queue and lease names are used under a partition's tag (redpill `Tag::partition(p)`), so
//! everything one partition touches lives in one Redis Cluster slot.

/// Each partition's input queue: injected and forwarded messages, and node changes.
pub const INPUT_QUEUE: &str = "in";

/// Each partition's outbox: messages committed for other partitions, forwarded in order.
pub const OUTBOX: &str = "outbox";

/// The lease that makes a processor a partition's owner.
pub const PARTITION_LEASE: &str = "owner";

/// The partition-sharded topic of every output event, which the store archives. Each entry
/// is a JSON array of output events: those one processor batch committed, in commit order.
pub const OUTPUT_TOPIC: &str = "outputs";

/// The most entries (batches of output events) each shard of [`OUTPUT_TOPIC`] keeps until
/// the archive has acknowledged them. At the bound the partition stops taking messages, so
/// its queue grows and the API pushes back; nothing is dropped.
pub const OUTPUT_TOPIC_BOUND: u64 = 100_000;

/// The subscriber group of the archive on [`OUTPUT_TOPIC`].
pub const ARCHIVE_GROUP: &str = "archive";

/// The topic every role publishes its stats to, once a second.
pub const STATS_TOPIC: &str = "stats";

/// The request/reply service of the store: topology changes.
pub const STORE_SERVICE: &str = "store";

/// The request/reply service of the store's archive: history queries. Apart from
/// [`STORE_SERVICE`], so that reads never wait behind changes or the other way round.
pub const HISTORY_SERVICE: &str = "history";

/// The live channel carrying the output events of one topology, for the notifier. Each
/// message is a JSON array of output events in commit order (all those of one processor
/// batch); a message may be lost, as on any live channel, so consumers that must not miss
/// one resume from the output topic by `seq`.
pub fn live_outputs(topology: &str) -> String {
    format!("out.{topology}")
}

/// The key suffix, under a partition's tag, of the record of node `member`
/// (`<topology>/<node>`); see `NodeRecord`.
pub fn node_record(member: &str) -> String {
    format!("node:{member}")
}

/// The key suffix, under a partition's tag, of node `member`'s replay buffer: a list of its
/// latest output events (JSON, oldest first, consecutive seqs ending with the node's `seq`):
/// at least the processors' `GORGON_REPLAY_BUFFER` of them (when there are as many) and at
/// most a quarter more, plus one batch. Written only in the owner's batch commits, with the
/// outputs themselves; read by the notifier to resume clients.
pub fn node_replay(member: &str) -> String {
    format!("replay:{member}")
}

/// The key suffix (no tag) of the hash where roles publish settings others show or use:
/// field [`REPLAY_BUFFER_SETTING`] is written by every processor at start.
pub const PUBLISHED_SETTINGS: &str = "published";

/// The field of [`PUBLISHED_SETTINGS`] holding the replay buffer length processors keep.
pub const REPLAY_BUFFER_SETTING: &str = "replay_buffer";

/// The key suffix, under a partition's tag, of the set of the partition's nodes.
pub const NODE_INDEX: &str = "nodes";
