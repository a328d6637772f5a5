//! What the notifier reads from Redis: which nodes a topology has, each node's latest seq,
//! and each node's replay buffer (its latest output events, written by its processor in the
//! same commit as the outputs themselves).

use redpill::Client;

use crate::hub::Event;

/// A node, as `(topology, node)`.
pub type Member = (String, String);

/// Reads topologies, seqs and replay buffers. Cloning shares the connection.
#[derive(Clone)]
pub struct Reader {
    client: Client,
    partitions: u32,
}

impl Reader {
    /// Reads through `client`, in a deployment of `partitions` partitions.
    pub fn new(client: Client, partitions: u32) -> Reader {
        Reader { client, partitions }
    }

    /// The node ids of each topology (`None` where it does not exist), in one round trip.
    pub async fn nodes(&self, topologies: &[&str]) -> redpill::Result<Vec<Option<Vec<String>>>> {
        let records = layout::read_topologies(&self.client, topologies).await?;
        Ok(topologies
            .iter()
            .zip(records)
            .map(|(topology, stored)| match stored.record() {
                Ok(record) => {
                    record.map(|record| record.doc.node.into_iter().map(|n| n.id).collect())
                }
                Err(error) => {
                    tracing::error!(%topology, %error, "a stored topology document does not parse");
                    None
                }
            })
            .collect())
    }

    /// Each node's latest output seq: 0 before its first output, `None` when the node has
    /// no record (deleted, or not yet made by its processor). One round trip.
    pub async fn seqs(&self, members: &[Member]) -> redpill::Result<Vec<Option<u64>>> {
        let nodes: Vec<(&str, &str)> = members
            .iter()
            .map(|(topology, node)| (topology.as_str(), node.as_str()))
            .collect();
        layout::read_node_seqs(&self.client, self.partitions, &nodes).await
    }

    /// For each `(node, cursor, known)`: the node's replay buffer from just after `cursor`
    /// (or as far back as it goes), oldest first, where `known` is a seq the node is known
    /// to have reached. Reads only the tail it needs: usually one round trip for all nodes,
    /// one more for nodes whose buffer grew meanwhile. When `known` is not above `cursor`
    /// (the node counts from 1 again), the buffer's last `known` entries.
    pub async fn buffers(&self, wants: &[(Member, u64, u64)]) -> redpill::Result<Vec<Vec<Event>>> {
        let nodes: Vec<(&str, &str)> = wants
            .iter()
            .map(|((topology, node), _, _)| (topology.as_str(), node.as_str()))
            .collect();
        let mut counts: Vec<usize> = wants
            .iter()
            .map(|(_, cursor, known)| {
                let needed = if known > cursor {
                    known - cursor
                } else {
                    *known
                };
                needed.max(1) as usize
            })
            .collect();
        let mut found: Vec<Option<Vec<Event>>> = (0..wants.len()).map(|_| None).collect();
        for round in 0.. {
            let pending: Vec<usize> = (0..wants.len()).filter(|i| found[*i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let tails: Vec<((&str, &str), usize)> =
                pending.iter().map(|i| (nodes[*i], counts[*i])).collect();
            let tails = layout::read_replay_tails(&self.client, self.partitions, &tails).await?;
            for (i, texts) in pending.into_iter().zip(tails) {
                let complete = texts.len() < counts[i];
                let events = consecutive_tail(
                    texts
                        .iter()
                        .filter_map(|text| Event::parse(text).map(|(_, event)| event))
                        .collect(),
                );
                let cursor = wants[i].1;
                let reaches = events.first().is_none_or(|first| first.seq <= cursor + 1);
                let newest = events.last().map_or(0, |last| last.seq);
                if complete
                    || reaches
                    || events.len() < texts.len()
                    || newest <= cursor
                    || round >= 4
                {
                    found[i] = Some(events);
                } else {
                    // The buffer grew since `known` was read: ask for a tail twice as long
                    // as the gap, so a node that keeps outputting between two reads cannot
                    // outrun them (asking for exactly the gap fell short each round under
                    // load, and the client was sent a resync the buffer did not call for).
                    counts[i] = ((newest - cursor) as usize).saturating_mul(2);
                }
            }
        }
        Ok(found
            .into_iter()
            .zip(wants)
            .map(|(events, (_, cursor, known))| {
                let mut events = events.unwrap_or_default();
                if known > cursor {
                    // A longer tail also holds what the client already has.
                    events.retain(|event| event.seq > *cursor);
                }
                events
            })
            .collect())
    }
}

/// The events after the last break in their seqs (a buffer holds consecutive seqs, but one
/// written across a node's deletion and re-creation could hold two runs).
fn consecutive_tail(mut events: Vec<Event>) -> Vec<Event> {
    let start = events
        .windows(2)
        .rposition(|pair| pair[1].seq != pair[0].seq + 1)
        .map_or(0, |break_at| break_at + 1);
    events.drain(..start);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(seqs: &[u64]) -> Vec<Event> {
        seqs.iter()
            .map(|seq| {
                Event::parse(&format!(r#"{{"topology":"t","node":"a","seq":{seq}}}"#))
                    .unwrap()
                    .1
            })
            .collect()
    }

    /// Only the last run of consecutive seqs is kept.
    #[test]
    fn keeps_the_consecutive_tail() {
        let seqs = |events: Vec<Event>| events.iter().map(|event| event.seq).collect::<Vec<_>>();
        assert_eq!(seqs(consecutive_tail(events(&[3, 4, 5]))), [3, 4, 5]);
        assert_eq!(seqs(consecutive_tail(events(&[8, 9, 1, 2]))), [1, 2]);
        assert_eq!(seqs(consecutive_tail(events(&[]))), Vec::<u64>::new());
        assert_eq!(seqs(consecutive_tail(events(&[5]))), [5]);
    }
}
