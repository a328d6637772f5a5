//! Where the store keeps each topology: its record, its lease and its outbox under the tag
//! `{t:<topology>}`, and the index of topology ids.
//!
//! The record is a hash: `doc` (the document, JSON), `rev`, `nodes` (node count),
//! `settled_ms`. `rev` outlives a deleted topology (`doc` and `nodes` go), so a topology
//! created again continues its count and an old `If-Match` never matches a new document.
//! `nodes` is written and removed with the document, so it says whether there is one without
//! reading it. `settled_ms` is when the node changes of the last change were all delivered to
//! the partitions (Unix ms, the store's clock); a change that sends node changes removes it
//! as it commits, and the store that delivers them writes it again.

use std::collections::HashMap;

use protocol::TopologyDoc;
use redpill::{Client, FencedWrite, Keys, Lease, Outbox, Tag};

const RECORD: &str = "topology";
const LEASE: &str = "writer";
const OUTBOX: &str = "changes";
const INDEX: &str = "topologies";
const DOC: &str = "doc";
const REV: &str = "rev";
const NODES: &str = "nodes";
const SETTLED: &str = "settled_ms";

fn tag(topology: &str) -> Tag {
    Tag::named(&format!("t:{topology}"))
}

/// The key of `topology`'s record.
pub(crate) fn record_key(keys: &Keys, topology: &str) -> String {
    keys.tagged(&tag(topology), RECORD)
}

fn record_keys(client: &Client, topologies: &[&str]) -> Vec<String> {
    topologies
        .iter()
        .map(|topology| record_key(client.keys(), topology))
        .collect()
}

/// A stored topology: its document and rev.
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyRecord {
    /// The document.
    pub doc: TopologyDoc,
    /// The rev.
    pub rev: u64,
}

/// A topology's record as read, not yet parsed (a large document is best parsed off the
/// async threads).
#[derive(Clone, Debug, Default)]
pub struct StoredTopology(HashMap<String, String>);

impl StoredTopology {
    /// Whether there is a document (the topology exists).
    pub fn exists(&self) -> bool {
        self.0.contains_key(DOC)
    }

    /// The rev: 0 when there never was a document.
    pub fn rev(&self) -> u64 {
        self.0
            .get(REV)
            .and_then(|rev| rev.parse().ok())
            .unwrap_or(0)
    }

    /// The record: `None` when there is no document (never created, or deleted), `Err` when
    /// the stored document does not parse.
    pub fn record(&self) -> Result<Option<TopologyRecord>, String> {
        let Some(doc) = self.0.get(DOC) else {
            return Ok(None);
        };
        let doc = TopologyDoc::from_json(doc).map_err(|error| error.message())?;
        Ok(Some(TopologyRecord {
            doc,
            rev: self.rev(),
        }))
    }
}

/// What a topology's list shows of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopologySummary {
    /// Its node count.
    pub nodes: u64,
    /// Its rev.
    pub rev: u64,
}

/// The handles of one topology: the lease the store applies a change under and the outbox
/// of the node changes it commits, both under the topology's tag with its record.
#[derive(Clone)]
pub struct TopologyHandles {
    /// Held by the store applying a change.
    pub lease: Lease,
    /// Node changes committed, on their way to the partitions.
    pub outbox: Outbox,
    client: Client,
    record: String,
}

/// The handles of `topology`.
pub fn topology(client: &Client, topology: &str) -> TopologyHandles {
    let tag = tag(topology);
    TopologyHandles {
        lease: Lease::new(client, &tag, LEASE),
        outbox: Outbox::new(client, &tag, OUTBOX),
        record: record_key(client.keys(), topology),
        client: client.clone(),
    }
}

impl TopologyHandles {
    /// The record as stored now.
    pub async fn read(&self) -> redpill::Result<StoredTopology> {
        let fields = self
            .client
            .read_hashes(std::slice::from_ref(&self.record))
            .await?
            .pop()
            .unwrap_or_default();
        Ok(StoredTopology(fields))
    }
}

/// What a change leaves of a topology's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyWrite<'a> {
    /// The new document (JSON), its node count and rev.
    Document {
        /// The document as JSON.
        json: &'a str,
        /// How many nodes it has.
        nodes: usize,
        /// Its rev.
        rev: u64,
    },
    /// The topology is deleted; its rev is kept.
    Deleted {
        /// The rev of the deletion.
        rev: u64,
    },
}

/// Adds the record's write to a fenced write of the topology's lease.
pub fn write_topology(
    fenced: FencedWrite,
    topology: &TopologyHandles,
    write: TopologyWrite<'_>,
) -> FencedWrite {
    match write {
        TopologyWrite::Document { json, nodes, rev } => fenced.hash_set(
            &topology.record,
            &[
                (DOC, json.to_owned()),
                (REV, rev.to_string()),
                (NODES, nodes.to_string()),
            ],
        ),
        TopologyWrite::Deleted { rev } => fenced
            .hash_delete(&topology.record, &[DOC, NODES])
            .hash_set(&topology.record, &[(REV, rev.to_string())]),
    }
}

/// Adds to a fenced write of the topology's lease: its node changes are not all delivered
/// (from the commit that sends them).
pub fn unsettle_topology(fenced: FencedWrite, topology: &TopologyHandles) -> FencedWrite {
    fenced.hash_delete(&topology.record, &[SETTLED])
}

/// Adds to a fenced write of the topology's lease: its node changes were all delivered at
/// `at_ms`.
pub fn settle_topology(fenced: FencedWrite, topology: &TopologyHandles, at_ms: i64) -> FencedWrite {
    fenced.hash_set(&topology.record, &[(SETTLED, at_ms.to_string())])
}

/// When `topology`'s node changes were last all delivered to the partitions (Unix ms):
/// `None` while some are on their way, and for a topology last changed by a store that did
/// not record it.
pub async fn read_topology_settled(
    client: &Client,
    topology: &str,
) -> redpill::Result<Option<i64>> {
    Ok(client
        .read_hash_field(&record_keys(client, &[topology]), SETTLED)
        .await?
        .pop()
        .flatten()
        .and_then(|at| at.parse().ok()))
}

/// The records of `topologies`, in one round trip.
pub async fn read_topologies(
    client: &Client,
    topologies: &[&str],
) -> redpill::Result<Vec<StoredTopology>> {
    let keys = record_keys(client, topologies);
    Ok(client
        .read_hashes(&keys)
        .await?
        .into_iter()
        .map(StoredTopology)
        .collect())
}

/// The rev of each of `topologies`, in one small round trip: `None` where none was ever
/// stored.
pub async fn read_topology_revs(
    client: &Client,
    topologies: &[&str],
) -> redpill::Result<Vec<Option<u64>>> {
    let keys = record_keys(client, topologies);
    Ok(client
        .read_hash_field(&keys, REV)
        .await?
        .into_iter()
        .map(|rev| rev.and_then(|rev| rev.parse().ok()))
        .collect())
}

/// The node count and rev of each of `topologies` that has a document, without reading the
/// documents, in one round trip.
pub async fn read_topology_summaries(
    client: &Client,
    topologies: &[&str],
) -> redpill::Result<Vec<Option<TopologySummary>>> {
    let keys = record_keys(client, topologies);
    Ok(client
        .read_hash_fields(&keys, &[NODES, REV])
        .await?
        .into_iter()
        .map(|fields| {
            let [nodes, rev] = <[Option<String>; 2]>::try_from(fields).ok()?;
            Some(TopologySummary {
                nodes: nodes?.parse().unwrap_or(0),
                rev: rev.and_then(|rev| rev.parse().ok()).unwrap_or(0),
            })
        })
        .collect())
}

/// Every topology id the index lists (one may briefly be listed that no longer exists, or
/// not yet: readers skip those without a document).
pub async fn list_topologies(client: &Client) -> redpill::Result<Vec<String>> {
    client.read_set(&client.keys().plain(INDEX)).await
}

/// Lists `topology` in the index (before its creation commits, so that a store dying after
/// the commit cannot leave it unlisted).
pub async fn list_topology(client: &Client, topology: &str) -> redpill::Result<()> {
    client
        .update_set(&client.keys().plain(INDEX), &[topology], true)
        .await
}

/// Takes `topology` off the index (after its deletion committed).
pub async fn unlist_topology(client: &Client, topology: &str) -> redpill::Result<()> {
    client
        .update_set(&client.keys().plain(INDEX), &[topology], false)
        .await
}
