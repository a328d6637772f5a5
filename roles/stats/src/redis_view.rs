//! What the monitor reads from Redis itself, once a second: each partition's owner, input
//! queue (depths, age of the oldest waiting message) and outbox, and the archive's backlog
//! on the output topic. Four round trips for all partitions together.

use redpill::{Client, Lease, Outbox, Queue, Topic};
use serde::Serialize;

/// One partition.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionView {
    /// Its number.
    pub partition: u32,
    /// The instance holding its lease, if any.
    pub owner: Option<String>,
    /// The time left on the lease, ms.
    pub lease_ms_left: Option<u64>,
    /// Messages waiting in its input queue.
    pub waiting: u64,
    /// Pulled by the owner and not yet committed.
    pub in_flight: u64,
    /// Waiting out a retry backoff.
    pub delayed: u64,
    /// In its dead-letter list.
    pub dead: u64,
    /// How long the oldest waiting message has waited, ms (from its id's time; `None` when
    /// nothing waits).
    pub oldest_age_ms: Option<u64>,
    /// Forwards committed for other partitions and not yet delivered.
    pub outbox: u64,
}

/// The archive's side of the output topic.
#[derive(Clone, Debug, Serialize)]
pub struct ArchiveView {
    /// Output topic entries (each a batch of output events) not yet archived.
    pub backlog: u64,
    /// Entries the output topic holds.
    pub topic_entries: u64,
    /// The most it holds (all shards).
    pub topic_bound: u64,
}

/// The handles for every partition, made once.
pub struct RedisView {
    queues: Vec<Queue>,
    leases: Vec<Lease>,
    outboxes: Vec<Outbox>,
    outputs: Topic,
}

impl RedisView {
    /// The view of a deployment of `partitions` partitions.
    pub fn new(client: &Client, partitions: u32) -> RedisView {
        RedisView {
            queues: (0..partitions)
                .map(|partition| layout::input_queue(client, partition))
                .collect(),
            leases: (0..partitions)
                .map(|partition| layout::partition_lease(client, partition))
                .collect(),
            outboxes: (0..partitions)
                .map(|partition| layout::partition_outbox(client, partition))
                .collect(),
            outputs: layout::output_topic(client, partitions),
        }
    }

    /// Reads every partition and the archive's backlog; `now_ms` ages the oldest messages.
    pub async fn read(&self, now_ms: u64) -> redpill::Result<(Vec<PartitionView>, ArchiveView)> {
        let (depths, holders, outboxes, shards) = tokio::try_join!(
            Queue::depths(&self.queues),
            Lease::holders(&self.leases),
            Outbox::lens(&self.outboxes),
            self.outputs.stats(),
        )?;
        let partitions = depths
            .into_iter()
            .zip(holders)
            .zip(outboxes)
            .enumerate()
            .map(|(number, ((depth, holder), outbox))| PartitionView {
                partition: number as u32,
                lease_ms_left: holder.as_ref().map(|(_, left)| left.as_millis() as u64),
                owner: holder.map(|(grant, _)| grant.owner),
                waiting: depth.waiting,
                in_flight: depth.held.saturating_sub(depth.waiting + depth.delayed),
                delayed: depth.delayed,
                dead: depth.dead,
                oldest_age_ms: depth.oldest_ms.map(|at| now_ms.saturating_sub(at)),
                outbox,
            })
            .collect();
        let archive = ArchiveView {
            backlog: shards
                .iter()
                .map(|shard| shard.backlog(layout::ARCHIVE_GROUP))
                .sum(),
            topic_entries: shards.iter().map(|shard| shard.len).sum(),
            topic_bound: shards.iter().map(|shard| shard.bound).sum(),
        };
        Ok((partitions, archive))
    }
}
