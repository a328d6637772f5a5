//! What the monitor reads from Redis itself, once a second: each partition's owner, input
//! queue (depths, age of the oldest waiting message) and outbox, and the archive's backlog
//! on the output topic, with the rates it grows and shrinks at and the time it would take
//! to drain ([`ArchiveRates`]). Four round trips for all partitions together.

use std::collections::VecDeque;

use redpill::{Client, Lease, Outbox, Queue, ShardStats, Topic};
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
    /// Entries added to the topic per second, over the last [`RATE_WINDOW_MS`] (`None`
    /// until two reads, or when Redis cannot tell).
    pub added_per_s: Option<f64>,
    /// Entries the archive wrote to MongoDB and acknowledged per second, over the same time.
    pub written_per_s: Option<f64>,
    /// How long the backlog would take to drain at those rates, seconds: 0 when there is
    /// none, `None` when it is not shrinking (or the rates are not known).
    pub drain_s: Option<f64>,
    /// Entries added and acknowledged so far, summed over the shards (`None` when a shard
    /// cannot tell): what the rates are made of.
    #[serde(skip)]
    pub totals: Option<(u64, u64)>,
}

/// The time the archive's rates are measured over, in milliseconds.
pub const RATE_WINDOW_MS: u64 = 10_000;

/// The archive's rates, from the totals of successive reads ([`ArchiveView::totals`]).
#[derive(Debug, Default)]
pub struct ArchiveRates {
    /// `(at_ms, added, written)`, oldest first, spanning at most [`RATE_WINDOW_MS`].
    samples: VecDeque<(u64, u64, u64)>,
}

impl ArchiveRates {
    /// Adds the read made at `now_ms` to `view`'s rates and drain time.
    pub fn observe(&mut self, now_ms: u64, view: &mut ArchiveView) {
        let Some((added, written)) = view.totals else {
            // Redis cannot tell (a stream trimmed past what the group read): start over.
            self.samples.clear();
            view.drain_s = (view.backlog == 0).then_some(0.0);
            return;
        };
        if self
            .samples
            .back()
            .is_some_and(|&(_, was_added, was_written)| added < was_added || written < was_written)
        {
            self.samples.clear(); // The topic was made again (a Redis that lost its data).
        }
        self.samples.push_back((now_ms, added, written));
        while self
            .samples
            .front()
            .is_some_and(|&(at, _, _)| now_ms.saturating_sub(at) > RATE_WINDOW_MS)
        {
            self.samples.pop_front();
        }
        let (first_at, first_added, first_written) = self.samples[0];
        let seconds = now_ms.saturating_sub(first_at) as f64 / 1000.0;
        if seconds > 0.0 {
            view.added_per_s = Some((added - first_added) as f64 / seconds);
            view.written_per_s = Some((written - first_written) as f64 / seconds);
        }
        view.drain_s = match (view.backlog, view.added_per_s, view.written_per_s) {
            (0, _, _) => Some(0.0),
            (backlog, Some(added), Some(written)) if written > added => {
                Some(backlog as f64 / (written - added))
            }
            _ => None,
        };
    }
}

/// Entries added to `shards` and acknowledged by `group` so far, summed; `None` when a shard
/// cannot tell.
fn totals(shards: &[ShardStats], group: &str) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for shard in shards {
        match shard.groups.iter().find(|backlog| backlog.group == group) {
            Some(backlog) => {
                let read = backlog.entries_read?;
                sum.0 += read + backlog.lag?;
                sum.1 += read.saturating_sub(backlog.pending);
            }
            // No group yet (no store has run): everything added is backlog, nothing read.
            None => sum.0 += shard.len,
        }
    }
    Some(sum)
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
            added_per_s: None,
            written_per_s: None,
            drain_s: None,
            totals: totals(&shards, layout::ARCHIVE_GROUP),
        };
        Ok((partitions, archive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(backlog: u64, totals: Option<(u64, u64)>) -> ArchiveView {
        ArchiveView {
            backlog,
            topic_entries: 0,
            topic_bound: 0,
            added_per_s: None,
            written_per_s: None,
            drain_s: None,
            totals,
        }
    }

    /// Rates over the window from the totals of successive reads; the drain time is the
    /// backlog over the rate it shrinks at, 0 without one, unknown while it grows.
    #[test]
    fn rates_and_drain_time_follow_the_totals() {
        let mut rates = ArchiveRates::default();
        let mut first = view(0, Some((0, 0)));
        rates.observe(1_000, &mut first);
        assert_eq!((first.added_per_s, first.drain_s), (None, Some(0.0)));
        // The archive stopped: 100 entries a second added, none written.
        let mut growing = view(200, Some((200, 0)));
        rates.observe(3_000, &mut growing);
        assert_eq!(growing.added_per_s, Some(100.0));
        assert_eq!(growing.written_per_s, Some(0.0));
        assert_eq!(growing.drain_s, None);
        // Back, writing 150 a second while 100 a second come in, over the last ten seconds.
        let mut rates = ArchiveRates::default();
        for second in 0..=12 {
            let mut read = view(100, Some((100 * second, 150 * second)));
            rates.observe(second * 1_000, &mut read);
            if second == 12 {
                assert_eq!(read.added_per_s, Some(100.0));
                assert_eq!(read.written_per_s, Some(150.0));
                assert_eq!(read.drain_s, Some(2.0));
            }
        }
        // Redis cannot tell, then the totals start over lower (Redis lost its data): no rate
        // from before either.
        let mut unknown = view(5, None);
        rates.observe(13_000, &mut unknown);
        assert_eq!((unknown.added_per_s, unknown.drain_s), (None, None));
        let mut again = view(3, Some((10, 7)));
        rates.observe(14_000, &mut again);
        assert_eq!((again.added_per_s, again.drain_s), (None, None));
        let mut lower = view(0, Some((4, 4)));
        rates.observe(15_000, &mut lower);
        assert_eq!((lower.added_per_s, lower.drain_s), (None, Some(0.0)));
    }
}
