//! A node's record: its state as the owner of its partition stores it in Redis.
//!
//! Each node of partition `p` is one hash, `P:{p<p>}:node:<topology>/<node>`, with its replay
//! buffer beside it, `P:{p<p>}:replay:<topology>/<node>`, and the set `P:{p<p>}:nodes` lists
//! the partition's nodes as `<topology>/<node>` (a node's *member* name).
//! Fields:
//!
//! | field | content |
//! |---|---|
//! | `function` | the function's registry name |
//! | `sources` | JSON array of source node ids |
//! | `targets` | JSON array of the nodes that list this one as a source |
//! | `attrs` | JSON object: settings and the function's running state |
//! | `seq` | the last output's seq (0 before the first output) |
//! | `output` | the latched output event, JSON, when the processors keep no replay buffer (see below) |
//! | `status` | JSON `{"state","last_error","dead_letters"}` |
//! | `hwm` | JSON object: source node → the last of its output seqs applied here |
//! | `archive` | `0` when the node's outputs do not go to the archive; absent when they do |
//!
//! Only the partition's owner writes these, inside its fenced batch commits ([`write_nodes`]).
//!
//! **Where the latched output lives.** Each output is stored once per node: with a replay
//! buffer (`GORGON_REPLAY_BUFFER` > 0, the default) the latched output is the buffer's newest
//! event, and the record has no `output` field; without one it is the record's `output` field.
//! A deployment that turns the buffer on or off leaves a node's former copy where it was
//! until the node outputs again ([`NodeRecord::dropped_fields`] removes a record's field
//! then), so a reader ([`read_node_records`]) takes, of the two, the one whose seq is the
//! record's `seq`, reading record and buffer in one atomic step.

use std::collections::HashMap;

use protocol::{partition_of, NodeSpec, NodeState as Health, NodeStatus};
use redpill::{Client, FencedWrite, Keys, Tag};
use serde_json::{Map, Value};

/// One node's stored state: what its partition's owner caches and writes, and what readers
/// (the API) read back.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    /// The function's registry name.
    pub function: String,
    /// Source node ids.
    pub sources: Vec<String>,
    /// Downstream node ids.
    pub targets: Vec<String>,
    /// Settings and running state.
    pub attrs: Map<String, Value>,
    /// The last output's seq.
    pub seq: u64,
    /// The latched output event as JSON text. Read by [`read_node_records`], wherever it is
    /// stored; read by [`read_partition_nodes`] (the processor's cache), the record's own
    /// `output` field only: `None` where the replay buffer holds the latched output.
    pub output: Option<String>,
    /// Health.
    pub status: NodeStatus,
    /// Per source: the last output seq applied here.
    pub hwm: HashMap<String, u64>,
    /// Whether its outputs go to the archive.
    pub archive: bool,
}

impl NodeRecord {
    /// A new node from its spec.
    pub fn new(spec: NodeSpec, targets: Vec<String>) -> NodeRecord {
        NodeRecord {
            archive: spec.archived(),
            function: spec.function,
            sources: spec.sources,
            targets,
            attrs: spec.attrs,
            seq: 0,
            output: None,
            status: NodeStatus {
                state: Health::Ok,
                last_error: None,
                dead_letters: 0,
            },
            hwm: HashMap::new(),
        }
    }

    /// Applies an update: function, sources, targets and archiving replaced; the attributes
    /// listed set, the others kept (or dropped with `reset_state`). Sources no longer listed
    /// lose their high-water mark.
    pub fn update(&mut self, spec: NodeSpec, targets: Vec<String>, reset_state: bool) {
        self.archive = spec.archived();
        self.function = spec.function;
        self.hwm.retain(|source, _| spec.sources.contains(source));
        self.sources = spec.sources;
        self.targets = targets;
        if reset_state {
            self.attrs = spec.attrs;
        } else {
            for (name, value) in spec.attrs {
                self.attrs.insert(name, value);
            }
        }
    }

    /// The hash fields to write, in the order of the module docs; the output among them only
    /// when it is not `buffered` (the module docs: where the latched output lives).
    pub fn to_fields(&self, buffered: bool) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("function", self.function.clone()),
            ("sources", json(&self.sources)),
            ("targets", json(&self.targets)),
            ("attrs", json(&self.attrs)),
            ("seq", self.seq.to_string()),
            ("status", json(&self.status)),
            ("hwm", json(&self.hwm)),
        ];
        if !self.archive {
            fields.push(("archive", NOT_ARCHIVED.to_owned()));
        }
        match &self.output {
            Some(output) if !buffered => fields.push(("output", output.clone())),
            _ => {}
        }
        fields
    }

    /// The hash fields that differ from `before` (all of them for a new node): attributes,
    /// seq and output are written whenever the node ran; the rest only when they changed.
    /// With the output `buffered` (its replay buffer holds it), the output is not written.
    pub fn changed_fields(
        &self,
        before: Option<&NodeRecord>,
        buffered: bool,
    ) -> Vec<(&'static str, String)> {
        let Some(before) = before else {
            return self.to_fields(buffered);
        };
        let mut fields = Vec::with_capacity(4);
        if self.function != before.function {
            fields.push(("function", self.function.clone()));
        }
        if self.sources != before.sources {
            fields.push(("sources", json(&self.sources)));
        }
        if self.targets != before.targets {
            fields.push(("targets", json(&self.targets)));
        }
        if self.attrs != before.attrs {
            fields.push(("attrs", json(&self.attrs)));
        }
        if self.seq != before.seq {
            fields.push(("seq", self.seq.to_string()));
        }
        if self.status != before.status {
            fields.push(("status", json(&self.status)));
        }
        if self.hwm != before.hwm {
            fields.push(("hwm", json(&self.hwm)));
        }
        if !self.archive && before.archive {
            fields.push(("archive", NOT_ARCHIVED.to_owned()));
        }
        if self.output != before.output && !buffered {
            if let Some(output) = &self.output {
                fields.push(("output", output.clone()));
            }
        }
        fields
    }

    /// The hash fields to remove from the record `before` (as its partition's owner read or
    /// last wrote it) when this state replaces it: its `output` field, once a new output goes
    /// to the replay buffer instead (`buffered`), so the output is not stored twice; its
    /// `archive` field, once the node is archived again.
    pub fn dropped_fields(
        &self,
        before: Option<&NodeRecord>,
        buffered: bool,
    ) -> &'static [&'static str] {
        let Some(before) = before else {
            return &[];
        };
        let output = buffered && before.output.is_some() && self.output != before.output;
        let archive = self.archive && !before.archive;
        match (output, archive) {
            (true, true) => &["output", "archive"],
            (true, false) => &["output"],
            (false, true) => &["archive"],
            (false, false) => &[],
        }
    }

    /// The record as its owner's cache keeps it once written over `before`: with the output
    /// `buffered`, a new output went to the replay buffer and the record holds no `output`
    /// field ([`NodeRecord::dropped_fields`] removed any), so neither does the cache (which
    /// also spares the owner a copy of every node's last output); a record that did not
    /// output keeps whatever field it had.
    pub fn as_written(mut self, before: Option<&NodeRecord>, buffered: bool) -> NodeRecord {
        if buffered && self.output.as_deref() != before.and_then(|before| before.output.as_deref())
        {
            self.output = None;
        }
        self
    }

    /// Reads the hash fields back; `None` when a field is missing or unreadable.
    fn from_fields(fields: &HashMap<String, String>) -> Option<NodeRecord> {
        Some(NodeRecord {
            function: fields.get("function")?.clone(),
            sources: serde_json::from_str(fields.get("sources")?).ok()?,
            targets: serde_json::from_str(fields.get("targets")?).ok()?,
            attrs: serde_json::from_str(fields.get("attrs")?).ok()?,
            seq: fields.get("seq")?.parse().ok()?,
            output: fields.get("output").cloned(),
            status: serde_json::from_str(fields.get("status")?).ok()?,
            hwm: serde_json::from_str(fields.get("hwm")?).ok()?,
            archive: fields
                .get("archive")
                .is_none_or(|archive| archive != NOT_ARCHIVED),
        })
    }
}

/// The `archive` field of a node whose outputs are not archived.
const NOT_ARCHIVED: &str = "0";

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("node state serializes")
}

/// The hash of node `member`'s (`<topology>/<node>`) record, in `partition`.
pub(crate) fn record_key(keys: &Keys, partition: u32, member: &str) -> String {
    keys.tagged(&Tag::partition(partition), &format!("node:{member}"))
}

/// Node `member`'s replay buffer, in `partition`: a list of its latest output events (JSON,
/// oldest first, consecutive seqs ending with the node's `seq`), written only in its owner's
/// batch commits, with the outputs themselves; read by the notifier to resume clients.
pub(crate) fn replay_key(keys: &Keys, partition: u32, member: &str) -> String {
    keys.tagged(&Tag::partition(partition), &format!("replay:{member}"))
}

/// The sorted set of `partition`'s node floors: per member deleted at least once after it
/// output something, the highest seq any of its former lives reached. A node made again
/// under the same id counts from 1 again while the archive keeps its former outputs, so
/// archived outputs of that id at or below its floor may belong to a former life; only
/// raised (`ZADD GT`), never removed.
fn floors_key(keys: &Keys, partition: u32) -> String {
    keys.tagged(&Tag::partition(partition), "floors")
}

/// The set of the nodes (members) of `partition`.
pub(crate) fn index_key(keys: &Keys, partition: u32) -> String {
    keys.tagged(&Tag::partition(partition), "nodes")
}

/// The partition and the member name of node `(topology, node)`.
fn locate(partitions: u32, (topology, node): (&str, &str)) -> (u32, String) {
    (
        partition_of(topology, node, partitions),
        format!("{topology}/{node}"),
    )
}

fn record_keys(client: &Client, partitions: u32, nodes: &[(&str, &str)]) -> Vec<String> {
    nodes
        .iter()
        .map(|node| {
            let (partition, member) = locate(partitions, *node);
            record_key(client.keys(), partition, &member)
        })
        .collect()
}

/// Every node of `partition`, by member, with its record (`None` where it does not read: a
/// record is written whole when its node is made, so one missing a field or holding one that
/// does not parse is damage, for the caller to report).
pub async fn read_partition_nodes(
    client: &Client,
    partition: u32,
) -> redpill::Result<Vec<(String, Option<NodeRecord>)>> {
    let members = client
        .read_set(&index_key(client.keys(), partition))
        .await?;
    let keys: Vec<String> = members
        .iter()
        .map(|member| record_key(client.keys(), partition, member))
        .collect();
    let hashes = client.read_hashes(&keys).await?;
    Ok(members
        .into_iter()
        .zip(hashes)
        .map(|(member, fields)| {
            let record = NodeRecord::from_fields(&fields);
            (member, record)
        })
        .collect())
}

/// The records of `nodes` (`(topology, node)`) of a deployment of `partitions`, with their
/// latched outputs wherever they are stored (the module docs), in one round trip: `None`
/// where a node has none (not yet made by its processor, or deleted).
pub async fn read_node_records(
    client: &Client,
    partitions: u32,
    nodes: &[(&str, &str)],
) -> redpill::Result<Vec<Option<NodeRecord>>> {
    let pairs: Vec<(String, String)> = nodes
        .iter()
        .map(|node| {
            let (partition, member) = locate(partitions, *node);
            (
                record_key(client.keys(), partition, &member),
                replay_key(client.keys(), partition, &member),
            )
        })
        .collect();
    Ok(client
        .read_hashes_with_last(&pairs)
        .await?
        .into_iter()
        .map(|(fields, newest)| {
            let mut record = NodeRecord::from_fields(&fields)?;
            record.output = latched(record.seq, record.output.take(), newest);
            Some(record)
        })
        .collect())
}

/// The latched output of a node whose record says `seq`: of the record's own `output` field
/// and its replay buffer's newest event, the one with that seq (the module docs). The other
/// is a copy left from before the buffer was turned on or off; if neither has the seq (a
/// record written by hand), the buffer's.
fn latched(seq: u64, field: Option<String>, newest: Option<String>) -> Option<String> {
    let has_seq = |event: &Option<String>| event.as_deref().and_then(event_seq) == Some(seq);
    if seq == 0 {
        None
    } else if has_seq(&newest) || !has_seq(&field) {
        newest.or(field)
    } else {
        field
    }
}

/// Each node's latest output seq, in one round trip: 0 before its first output, `None` when
/// the node has no record.
pub async fn read_node_seqs(
    client: &Client,
    partitions: u32,
    nodes: &[(&str, &str)],
) -> redpill::Result<Vec<Option<u64>>> {
    let keys = record_keys(client, partitions, nodes);
    Ok(client
        .read_hash_field(&keys, "seq")
        .await?
        .into_iter()
        .map(|seq| seq.map(|seq| seq.parse().unwrap_or(0)))
        .collect())
}

/// The newest `count` events (JSON, oldest first; all when fewer) of each node's replay
/// buffer, in one round trip.
pub async fn read_replay_tails(
    client: &Client,
    partitions: u32,
    tails: &[((&str, &str), usize)],
) -> redpill::Result<Vec<Vec<String>>> {
    let lists: Vec<(String, usize)> = tails
        .iter()
        .map(|(node, count)| {
            let (partition, member) = locate(partitions, *node);
            (replay_key(client.keys(), partition, &member), *count)
        })
        .collect();
    client.read_list_tails(&lists).await
}

/// Node `(topology, node)`'s newest outputs from its replay buffer, for history (none when
/// it has not output anything yet): `None` when the node has no record, no buffer, or a
/// buffer that is not every output from its oldest to the node's latest (the buffer was
/// turned off for a while, or an event does not read).
/// With `newest` > 0 only that many of the newest events are read. Record, buffer and floor
/// are read in one atomic step.
pub async fn read_recent_outputs(
    client: &Client,
    partitions: u32,
    node: (&str, &str),
    newest: usize,
) -> redpill::Result<Option<protocol::history::Recent>> {
    let (partition, member) = locate(partitions, node);
    let keys = client.keys();
    let read = redpill::LogRead {
        hash: record_key(keys, partition, &member),
        field: "seq".to_owned(),
        list: replay_key(keys, partition, &member),
        newest,
        containing: None,
        sorted_set: floors_key(keys, partition),
        member,
    };
    let snapshot = client.read_logs(&[read]).await?.pop().unwrap_or_default();
    Ok(recent_of(snapshot))
}

/// What the replay buffers of `nodes` (all of one topology) hold of the outputs inject
/// `input_id` caused, one per node, in one round trip: each buffer searched in Redis for the
/// id, with the node's latest seq, its buffer's length and oldest event and its floor, read
/// in one atomic step, which tell since when the buffer holds every output of the node
/// (`protocol::caused::Held`).
pub async fn read_caused_outputs(
    client: &Client,
    partitions: u32,
    nodes: &[(&str, &str)],
    input_id: &str,
) -> redpill::Result<Vec<protocol::caused::Held>> {
    // As the id appears in an event's JSON: serde_json writes events compactly.
    let needle = format!(
        "\"input_id\":{}",
        serde_json::to_string(input_id).expect("a string serializes")
    );
    let keys = client.keys();
    let reads: Vec<redpill::LogRead> = nodes
        .iter()
        .map(|node| {
            let (partition, member) = locate(partitions, *node);
            redpill::LogRead {
                hash: record_key(keys, partition, &member),
                field: "seq".to_owned(),
                list: replay_key(keys, partition, &member),
                newest: 0,
                containing: Some(needle.clone()),
                sorted_set: floors_key(keys, partition),
                member,
            }
        })
        .collect();
    Ok(client
        .read_logs(&reads)
        .await?
        .into_iter()
        .map(|snapshot| held_of(snapshot, input_id))
        .collect())
}

/// The usable part of a [`read_caused_outputs`] snapshot (see there).
fn held_of(snapshot: redpill::LogSnapshot, input_id: &str) -> protocol::caused::Held {
    let events = snapshot
        .newest
        .iter()
        .filter_map(|text| serde_json::from_str::<protocol::OutputEvent>(text).ok())
        .filter(|event| event.input_id == input_id)
        .collect();
    protocol::caused::Held {
        events,
        whole_since_ms: whole_since(&snapshot),
    }
}

/// Since when a node's buffer holds every output the node made (see
/// `protocol::caused::Held::whole_since_ms`).
fn whole_since(snapshot: &redpill::LogSnapshot) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Oldest {
        seq: u64,
        ts: protocol::Timestamp,
    }
    // Scores are whole seqs, far below 2^53.
    let floor = snapshot.score.map_or(0, |score| score as u64);
    let latest: u64 = snapshot.field.as_deref()?.parse().ok()?;
    let Some(first) = snapshot.first.as_deref() else {
        // No output in this life: none ever, unless a former life made some.
        return (latest == 0 && floor == 0).then_some(i64::MIN);
    };
    let oldest: Oldest = serde_json::from_str(first).ok()?;
    if oldest.seq.checked_add(snapshot.len)? != latest + 1 {
        return None;
    }
    Some(match oldest.seq == 1 && floor == 0 {
        true => i64::MIN,
        false => oldest.ts.unix_ms(),
    })
}

/// The seq of output event `text` (JSON), reading nothing else of it.
fn event_seq(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_str::<Seq>(text)
        .ok()
        .map(|event| event.seq)
}

/// The usable part of a [`read_recent_outputs`] snapshot (see there).
fn recent_of(snapshot: redpill::LogSnapshot) -> Option<protocol::history::Recent> {
    // Scores are whole seqs, far below 2^53.
    let floor = snapshot.score.map_or(0, |score| score as u64);
    let latest: u64 = snapshot.field?.parse().ok()?;
    if latest == 0 && snapshot.len == 0 {
        // No output in this life yet: nothing of it can be archived either.
        return Some(protocol::history::Recent {
            events: Vec::new(),
            floor,
        });
    }
    let oldest = event_seq(snapshot.first.as_deref()?)?;
    let events = snapshot
        .newest
        .iter()
        .map(|text| serde_json::from_str::<protocol::OutputEvent>(text).ok())
        .collect::<Option<Vec<_>>>()?;
    let newest = events.last()?.seq;
    // The whole list, read or not, ends at the latest and is as long as its ends are apart;
    // the part read is also checked pair by pair.
    let whole = newest == latest && newest.checked_sub(oldest)? + 1 == snapshot.len;
    let consecutive = events.windows(2).all(|pair| pair[1].seq == pair[0].seq + 1);
    (whole && consecutive).then_some(protocol::history::Recent { events, floor })
}

/// One write of a partition owner's batch commit to a node's keys. Which writes a batch makes
/// is the processor's to decide (`processor::batch`); how each is stored is this crate's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeWrite<'a> {
    /// The node's record: the fields that changed ([`NodeRecord::changed_fields`]) and those
    /// to remove ([`NodeRecord::dropped_fields`]); a `created` node is also listed in its
    /// partition's index.
    Record {
        /// The node, `<topology>/<node>`.
        member: &'a str,
        /// Field names and values.
        fields: Vec<(&'static str, String)>,
        /// Field names to remove.
        dropped: &'static [&'static str],
        /// Whether the node is new.
        created: bool,
    },
    /// The node is gone: its record, its replay buffer and its place in the index; its floor
    /// is raised to `last_seq` (when above 0).
    Delete {
        /// The node, `<topology>/<node>`.
        member: &'a str,
        /// The highest seq the node reached (at least), for its floor.
        last_seq: u64,
    },
    /// Output events appended to the node's replay buffer, which is then trimmed to its
    /// newest `keep` events when `keep` is set.
    Replay {
        /// The node, `<topology>/<node>`.
        member: &'a str,
        /// The events, JSON, oldest first.
        events: Vec<&'a str>,
        /// How many of the newest events to keep, if the buffer is trimmed.
        keep: Option<u64>,
    },
}

/// Adds `writes`, to nodes of `partition`, to a fenced write of that partition's lease.
pub fn write_nodes(
    mut fenced: FencedWrite,
    client: &Client,
    partition: u32,
    writes: &[NodeWrite<'_>],
) -> FencedWrite {
    let keys = client.keys();
    let index = index_key(keys, partition);
    for write in writes {
        fenced = match write {
            NodeWrite::Record {
                member,
                fields,
                dropped,
                created,
            } => {
                let record = record_key(keys, partition, member);
                let fenced = fenced
                    .hash_set(&record, fields)
                    .hash_delete(&record, dropped);
                if *created {
                    fenced.set_add(&index, &[*member])
                } else {
                    fenced
                }
            }
            NodeWrite::Delete { member, last_seq } => {
                let fenced = fenced
                    .delete(&record_key(keys, partition, member))
                    .delete(&replay_key(keys, partition, member))
                    .set_remove(&index, &[*member]);
                match last_seq {
                    0 => fenced,
                    seq => fenced.sorted_set_raise(&floors_key(keys, partition), member, *seq),
                }
            }
            NodeWrite::Replay {
                member,
                events,
                keep,
            } => {
                let replay = replay_key(keys, partition, member);
                let fenced = fenced.list_append(&replay, events);
                match keep {
                    Some(keep) => fenced.list_keep_last(&replay, *keep),
                    None => fenced,
                }
            }
        };
    }
    fenced
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(attrs: Value) -> NodeSpec {
        NodeSpec {
            id: "b".into(),
            function: "count".into(),
            sources: vec!["a".into()],
            attrs: attrs.as_object().unwrap().clone(),
            archive: None,
        }
    }

    /// The stored fields read back into the same state.
    #[test]
    fn fields_round_trip() {
        let mut state = NodeRecord::new(spec(json!({"count": 2})), vec!["c".into()]);
        state.seq = 2;
        state.output = Some("{\"seq\":2}".into());
        state.hwm.insert("a".into(), 9);
        let fields: HashMap<String, String> = state
            .to_fields(false)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert_eq!(fields["attrs"], r#"{"count":2}"#);
        assert_eq!(
            fields["status"],
            r#"{"state":"ok","last_error":null,"dead_letters":0}"#
        );
        assert_eq!(NodeRecord::from_fields(&fields).unwrap(), state);
    }

    /// A node that does not archive says so in an `archive` field, written when it stops
    /// archiving and removed when it starts again; a node that archives has none.
    #[test]
    fn archiving_is_a_field_only_while_off() {
        let names = |fields: Vec<(&'static str, String)>| -> Vec<&'static str> {
            fields.into_iter().map(|(name, _)| name).collect()
        };
        let on = NodeRecord::new(spec(json!({})), Vec::new());
        assert!(on.archive);
        assert!(!names(on.to_fields(true)).contains(&"archive"));
        let mut off = on.clone();
        off.update(
            NodeSpec {
                archive: Some(false),
                ..spec(json!({}))
            },
            Vec::new(),
            false,
        );
        assert!(!off.archive);
        assert_eq!(
            off.changed_fields(Some(&on), true),
            [("archive", "0".to_owned())]
        );
        assert_eq!(off.dropped_fields(Some(&on), true), [] as [&str; 0]);
        let fields: HashMap<String, String> = off
            .to_fields(true)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert_eq!(NodeRecord::from_fields(&fields).unwrap(), off);
        assert_eq!(on.changed_fields(Some(&off), true), []);
        assert_eq!(on.dropped_fields(Some(&off), true), ["archive"]);
    }

    /// Only what changed is written again; a new node writes everything.
    #[test]
    fn changed_fields_are_only_what_changed() {
        let before = NodeRecord::new(spec(json!({"count": 1})), Vec::new());
        assert_eq!(before.changed_fields(None, false).len(), 7);
        let mut after = before.clone();
        after.attrs.insert("count".into(), json!(2));
        after.seq = 1;
        after.output = Some("{}".into());
        let names: Vec<&str> = after
            .changed_fields(Some(&before), false)
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(names, ["attrs", "seq", "output"]);
        assert!(before.changed_fields(Some(&before), false).is_empty());
        // With a replay buffer the output is its newest event, not a field of the record.
        let names: Vec<&str> = after
            .changed_fields(Some(&before), true)
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(names, ["attrs", "seq"]);
        assert!(after
            .to_fields(true)
            .iter()
            .all(|(name, _)| *name != "output"));
    }

    /// A record's own `output` field is removed when a buffered output replaces it, and only
    /// then.
    #[test]
    fn a_record_field_goes_when_the_buffer_takes_over() {
        let mut field = NodeRecord::new(spec(json!({})), Vec::new());
        field.seq = 3;
        field.output = Some(r#"{"seq":3}"#.into());
        let mut next = field.clone();
        next.seq = 4;
        next.output = Some(r#"{"seq":4}"#.into());
        assert_eq!(next.dropped_fields(Some(&field), true), ["output"]);
        assert!(next.dropped_fields(Some(&field), false).is_empty());
        assert!(field.dropped_fields(Some(&field), true).is_empty());
        let cached = next.clone().as_written(Some(&field), true);
        assert_eq!(cached.output, None);
        assert!(next.dropped_fields(Some(&cached), true).is_empty());
        assert!(next.dropped_fields(None, true).is_empty());
        // Written without a new output, the record keeps its field, and so does the cache.
        let mut patched = field.clone();
        patched.attrs.insert("k".into(), json!(1));
        assert_eq!(patched.clone().as_written(Some(&field), true), patched);
        assert_eq!(next.clone().as_written(Some(&field), false), next);
    }

    /// The latched output is whichever copy has the record's seq, the buffer's first.
    #[test]
    fn the_latched_output_is_the_copy_with_the_records_seq() {
        let event = |seq: u64| Some(format!(r#"{{"seq":{seq},"data":1}}"#));
        // Buffered (the usual case): no field.
        assert_eq!(latched(5, None, event(5)), event(5));
        // No buffer: the field; a buffer left from before it was turned off is older.
        assert_eq!(latched(5, event(5), None), event(5));
        assert_eq!(latched(5, event(5), event(3)), event(5));
        // The buffer turned on: a field left from before is older.
        assert_eq!(latched(9, event(4), event(9)), event(9));
        // No output yet.
        assert_eq!(latched(0, None, None), None);
        // Neither has the seq (written by hand): the buffer's.
        assert_eq!(latched(7, event(5), event(6)), event(6));
    }

    /// An update keeps running state unless asked to reset it, and forgets dropped sources.
    #[test]
    fn update_keeps_state_unless_reset() {
        let mut state = NodeRecord::new(spec(json!({"count": 5, "limit": 1})), Vec::new());
        state.hwm.insert("a".into(), 3);
        let mut next = spec(json!({"limit": 2}));
        next.sources = vec!["x".into()];
        state.update(next.clone(), vec!["t".into()], false);
        assert_eq!(
            Value::Object(state.attrs.clone()),
            json!({"count": 5, "limit": 2})
        );
        assert!(state.hwm.is_empty());
        assert_eq!(state.targets, ["t"]);
        state.update(next, Vec::new(), true);
        assert_eq!(Value::Object(state.attrs), json!({"limit": 2}));
    }
}
