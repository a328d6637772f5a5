//! The outputs one inject caused, across its topology: what web_face asks the store's
//! history service for them ([`CausedQuery`]), and how a page of them is read from the
//! replay buffers of the nodes downstream of the inject instead ([`answer`]), or joined with
//! the archive's page ([`merge`]).
//!
//! Every output carries the `input_id` of the inject that caused it, the same through the
//! whole graph. Pages list a query's outputs by `msg_id`: a UUIDv7, so the order they were
//! made in, to the millisecond.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::history::HistoryPage;
use crate::output::OutputEvent;

/// How far apart the clocks of two hosts of the mesh may be, in milliseconds, for a page read
/// from the replay buffers alone to be whole. Buffers are trusted only when they reach back
/// this much before the inject, and the topology's edges have not changed since this much
/// before it; otherwise the archive is asked too, which costs time, never outputs.
pub const CLOCK_SKEW_MS: i64 = 1_000;

/// A page of the outputs an inject caused in one topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausedQuery {
    /// The topology.
    pub topology: String,
    /// The id the inject answered with.
    pub input_id: String,
    /// Only outputs with a greater `msg_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many (1 to [`crate::history::MAX_HISTORY_LIMIT`]).
    pub limit: u32,
}

impl CausedQuery {
    /// Whether `event` is one of the query's outputs.
    pub fn matches(&self, event: &OutputEvent) -> bool {
        event.topology == self.topology
            && event.input_id == self.input_id
            && self
                .after
                .as_deref()
                .is_none_or(|after| event.msg_id.as_str() > after)
    }
}

/// What one node's replay buffer holds of the outputs an inject caused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Held {
    /// The buffered outputs of the inject, in any order.
    pub events: Vec<OutputEvent>,
    /// Since when every output the node made is in its buffer (Unix ms, output `ts`):
    /// `i64::MIN` when every output it ever made is; `None` when the buffer does not tell (it
    /// is off or not whole, or a former life of the node may have made outputs it never
    /// held).
    pub whole_since_ms: Option<i64>,
}

/// The page `query` asks for from the buffers of the nodes the inject's outputs could reach
/// (`held`: one per node, as the topology is now), when they alone are enough to tell it:
/// the inject was made at `injected_ms` (from its id), the topology's edges last changed at
/// the partitions at `settled_ms`, and both that and every buffer's reach lie at least
/// [`CLOCK_SKEW_MS`] before the inject, so the outputs went where the edges lead now and every
/// one of them is still buffered. `None` when the archive must be asked too ([`merge`]).
pub fn answer(
    query: &CausedQuery,
    held: &[Held],
    injected_ms: Option<i64>,
    settled_ms: Option<i64>,
) -> Option<HistoryPage> {
    let before = injected_ms?.checked_sub(CLOCK_SKEW_MS)?;
    let settled = settled_ms.is_some_and(|settled| settled < before);
    let reaches = held
        .iter()
        .all(|node| node.whole_since_ms.is_some_and(|since| since < before));
    (settled && reaches).then(|| page(query, held.iter().flat_map(|node| &node.events), false))
}

/// The page `query` asks for, from the archive's page for it and what the buffers hold:
/// both joined by `msg_id`, an output in both taken once. Exact because any archived output
/// on the joined page is on the archive's page (fewer archived outputs rank before it), and
/// more follow when the archive has more or the join is longer than the page. Outputs
/// neither archived yet nor buffered any more (an archive behind by more than a node's
/// buffer) are missing until the archive has them.
pub fn merge(query: &CausedQuery, held: &[Held], archived: HistoryPage) -> HistoryPage {
    let more = archived.more;
    let buffered = held.iter().flat_map(|node| &node.events);
    page(query, archived.items.iter().chain(buffered), more)
}

/// The first `query.limit` of `events` that match, each once, by `msg_id`; `more` when more
/// match or `more_beyond`.
fn page<'a>(
    query: &CausedQuery,
    events: impl Iterator<Item = &'a OutputEvent>,
    more_beyond: bool,
) -> HistoryPage {
    let mut seen = HashSet::new();
    let mut items: Vec<OutputEvent> = events
        .filter(|event| query.matches(event) && seen.insert(event.msg_id.as_str()))
        .cloned()
        .collect();
    items.sort_by(|a, b| a.msg_id.cmp(&b.msg_id));
    let limit = query.limit as usize;
    let more = more_beyond || items.len() > limit;
    items.truncate(limit);
    HistoryPage { items, more }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    /// Output `seq` of `node`, caused by `input`, made at `ts` ms with id `id`.
    fn event(node: &str, seq: u64, input: &str, id: &str, ts: i64) -> OutputEvent {
        OutputEvent {
            topology: "t".into(),
            node: node.into(),
            seq,
            msg_id: id.into(),
            input_id: input.into(),
            injected_at: Timestamp::from_unix_ms(ts),
            ts: Timestamp::from_unix_ms(ts),
            data: serde_json::json!(seq),
        }
    }

    fn query(after: Option<&str>, limit: u32) -> CausedQuery {
        CausedQuery {
            topology: "t".into(),
            input_id: "x".into(),
            after: after.map(str::to_owned),
            limit,
        }
    }

    fn ids(page: &HistoryPage) -> Vec<&str> {
        page.items
            .iter()
            .map(|event| event.msg_id.as_str())
            .collect()
    }

    /// A chain a → b → c: the inject `x` at 10 000 caused a1, b1, c1; `y` caused the others.
    fn chain() -> Vec<Held> {
        vec![
            Held {
                events: vec![event("a", 1, "x", "a1", 10_001)],
                whole_since_ms: Some(i64::MIN),
            },
            Held {
                events: vec![event("b", 7, "x", "b1", 10_002)],
                whole_since_ms: Some(5_000),
            },
            Held {
                events: vec![event("c", 3, "x", "c1", 10_003)],
                whole_since_ms: Some(8_999),
            },
        ]
    }

    /// Buffers reaching back a second before the inject, edges settled before that: the
    /// page is theirs alone, in msg_id order, paged by `after`.
    #[test]
    fn whole_buffers_answer_alone() {
        let held = chain();
        let page = answer(&query(None, 10), &held, Some(10_000), Some(1)).expect("buffers");
        assert_eq!(ids(&page), ["a1", "b1", "c1"]);
        assert!(!page.more);
        let first = answer(&query(None, 2), &held, Some(10_000), Some(1)).expect("buffers");
        assert_eq!(ids(&first), ["a1", "b1"]);
        assert!(first.more);
        let second = answer(&query(Some("b1"), 2), &held, Some(10_000), Some(1)).expect("buffers");
        assert_eq!(ids(&second), ["c1"]);
        assert!(!second.more);
    }

    /// Each reason to ask the archive: a buffer that starts within the skew of the inject,
    /// one that does not tell, edges changed within the skew or at an unknown time, an
    /// inject time not known.
    #[test]
    fn the_archive_is_asked_unless_all_is_known() {
        let q = query(None, 10);
        let mut late = chain();
        late[2].whole_since_ms = Some(9_000);
        assert_eq!(answer(&q, &late, Some(10_000), Some(1)), None);
        let mut unknown = chain();
        unknown[1].whole_since_ms = None;
        assert_eq!(answer(&q, &unknown, Some(10_000), Some(1)), None);
        assert_eq!(answer(&q, &chain(), Some(10_000), Some(9_000)), None);
        assert_eq!(answer(&q, &chain(), Some(10_000), None), None);
        assert_eq!(answer(&q, &chain(), None, Some(1)), None);
        assert!(answer(&q, &chain(), Some(10_000), Some(8_999)).is_some());
    }

    /// Joined with the archive: every output once, in msg_id order, whether it is only
    /// archived (evicted from its buffer), only buffered (the archive behind) or both; pages
    /// followed by `after` give each once.
    #[test]
    fn pages_join_buffers_and_the_archive() {
        let a0 = event("a", 1, "x", "a0", 10_001);
        let b0 = event("b", 4, "x", "b0", 10_002);
        let other = event("b", 5, "y", "b00", 10_002);
        let mut held = chain();
        held[0].whole_since_ms = None;
        held[1].events.push(other.clone());
        let archived_all = [a0.clone(), b0.clone(), held[0].events[0].clone(), other];
        let archive_page = |q: &CausedQuery| {
            let mut items: Vec<OutputEvent> = archived_all
                .iter()
                .filter(|event| q.matches(event))
                .cloned()
                .collect();
            items.sort_by(|a, b| a.msg_id.cmp(&b.msg_id));
            let more = items.len() > q.limit as usize;
            items.truncate(q.limit as usize);
            HistoryPage { items, more }
        };
        for limit in 1..=6 {
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let q = query(after.as_deref(), limit);
                let page = merge(&q, &held, archive_page(&q));
                got.extend(ids(&page).into_iter().map(str::to_owned));
                match (page.more, page.items.last()) {
                    (true, Some(last)) => after = Some(last.msg_id.clone()),
                    _ => break,
                }
            }
            assert_eq!(got, ["a0", "a1", "b0", "b1", "c1"], "limit {limit}");
        }
    }

    /// Queries of another topology's outputs, or of another inject, match nothing.
    #[test]
    fn only_the_topology_and_input_match() {
        let q = query(None, 10);
        assert!(q.matches(&event("a", 1, "x", "a1", 0)));
        assert!(!q.matches(&event("a", 1, "y", "a1", 0)));
        let mut elsewhere = event("a", 1, "x", "a1", 0);
        elsewhere.topology = "u".into();
        assert!(!q.matches(&elsewhere));
    }
}
