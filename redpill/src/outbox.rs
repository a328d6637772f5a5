//! Outboxes: messages committed, inside a fenced batch, for queues of other tags, then
//! delivered to them in order by the lease holder.
//!
//! An outbox lives under its writer's tag, so appending to it is part of the writer's atomic
//! batch. Delivery pushes entries to their queues with their ids (a queue skips an id that is
//! still pending, and consumers deduplicate the rest by id) and then trims what it delivered,
//! fenced by the same lease, so a delivery repeated after a crash can duplicate but never lose.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::client::{cmd, Client};
use crate::error::{Error, Result};
use crate::keys::Tag;
use crate::lease::{Grant, Lease};
use crate::queue::Queue;

/// The most entries one [`Outbox::deliver`] call moves.
pub const MAX_DELIVER: usize = 1000;

/// An outbox under one tag.
#[derive(Clone)]
pub struct Outbox {
    client: Client,
    key: String,
}

/// One entry as it waits in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    tag: String,
    queue: String,
    id: String,
    body: Bytes,
}

impl Outbox {
    /// Outbox `name` under `tag` (the tag of the lease that fences it).
    pub fn new(client: &Client, tag: &Tag, name: &str) -> Outbox {
        Outbox {
            client: client.clone(),
            key: client.keys().outbox(tag, name),
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Entries waiting to be delivered.
    pub async fn len(&self) -> Result<u64> {
        let mut lens = Outbox::lens(std::slice::from_ref(self)).await?;
        Ok(lens.pop().unwrap_or(0))
    }

    /// [`Outbox::len`] of each of `outboxes` (all of one client), in one round trip.
    pub async fn lens(outboxes: &[Outbox]) -> Result<Vec<u64>> {
        let Some(first) = outboxes.first() else {
            return Ok(Vec::new());
        };
        first
            .client
            .query_routed(
                outboxes
                    .iter()
                    .map(|outbox| (outbox.key.as_str(), cmd("LLEN", &outbox.key))),
            )
            .await
    }

    /// True when nothing waits.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Delivers up to [`MAX_DELIVER`] entries, oldest first, to their queues (one round trip
    /// for all queues), then removes them from the outbox with a write fenced by `grant`.
    /// Returns how many were delivered; fails with [`Error::StaleEpoch`] when the grant no
    /// longer holds `lease` (the entries stay for the new holder to deliver).
    pub async fn deliver(&self, lease: &Lease, grant: &Grant) -> Result<usize> {
        let mut conn = self.client.conn().await?;
        let records: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&self.key)
            .arg(0)
            .arg(MAX_DELIVER - 1)
            .query_async(&mut conn)
            .await?;
        if records.is_empty() {
            return Ok(0);
        }
        let pending = records
            .iter()
            .map(|record| decode(record))
            .collect::<Result<Vec<_>>>()?;
        // Group by queue, keeping each queue's entries in outbox order.
        let mut by_queue = BTreeMap::<(&str, &str), Vec<_>>::new();
        for entry in &pending {
            by_queue
                .entry((entry.tag.as_str(), entry.queue.as_str()))
                .or_default()
                .push((entry.id.as_str(), &entry.body[..]));
        }
        let queues: Vec<Queue> = by_queue
            .keys()
            .map(|(tag, name)| Queue::new(&self.client, &Tag::named(tag), name))
            .collect();
        let batches: Vec<_> = queues.iter().zip(by_queue.into_values()).collect();
        Queue::push_many(&self.client, &batches).await?;
        lease
            .fenced(grant)
            .list_drop_first(&self.key, records.len())
            .commit()
            .await?;
        Ok(records.len())
    }
}

/// `<tag>\n<queue>\n<id>\n<body>`.
pub(crate) fn encode(queue: &Queue, id: &str, body: &[u8]) -> Vec<u8> {
    let (tag, name) = queue.address();
    let mut record = format!("{tag}\n{name}\n{id}\n").into_bytes();
    record.extend_from_slice(body);
    record
}

fn decode(record: &[u8]) -> Result<Pending> {
    let mut parts = record.splitn(4, |&b| b == b'\n');
    let mut text = |what: &'static str| -> Result<String> {
        let part = parts
            .next()
            .ok_or_else(|| Error::decode("outbox entry", format!("no {what}")))?;
        String::from_utf8(part.to_vec())
            .map_err(|_| Error::decode("outbox entry", format!("{what} is not UTF-8")))
    };
    let tag = text("tag")?;
    let queue = text("queue")?;
    let id = text("id")?;
    let body = parts
        .next()
        .ok_or_else(|| Error::decode("outbox entry", "no body"))?;
    Ok(Pending {
        tag,
        queue,
        id,
        body: Bytes::copy_from_slice(body),
    })
}
