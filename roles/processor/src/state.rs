//! Where the processor keeps node records: the keys of a partition's node hashes, replay
//! buffers and index.
//! The record itself, and its field layout, is `protocol::NodeRecord`.

use protocol::names;

/// The hash of node `member` (`<topology>/<node>`) of `partition`.
pub fn node_key(keys: &redpill::Keys, partition: u32, member: &str) -> String {
    keys.tagged(
        &redpill::Tag::partition(partition),
        &names::node_record(member),
    )
}

/// The list of node `member`'s most recent output events (JSON, oldest first) of
/// `partition`: its replay buffer, which socket.io clients resume from.
pub fn replay_key(keys: &redpill::Keys, partition: u32, member: &str) -> String {
    keys.tagged(
        &redpill::Tag::partition(partition),
        &names::node_replay(member),
    )
}

/// The set listing the nodes of `partition`.
pub fn nodes_key(keys: &redpill::Keys, partition: u32) -> String {
    keys.tagged(&redpill::Tag::partition(partition), names::NODE_INDEX)
}
