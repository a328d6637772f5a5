//! History queries: what web_face asks the store about a node's archived outputs, the page
//! it answers with, and how a page is read from a node's replay buffer instead, or joined
//! with it ([`Recent`]).
//!
//! web_face sends a [`HistoryQuery`] to the history service (`layout::HISTORY_SERVICE`)
//! (redpill request/reply, JSON); the store answers a [`HistoryReply`] from MongoDB. Before
//! that, web_face reads the node's newest outputs from Redis and asks the store only for
//! pages they cannot tell alone.

use serde::{Deserialize, Serialize};

use crate::output::OutputEvent;
use crate::store::ApiError;

/// The most items one page may hold.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

/// A page of one node's archived outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// The topology.
    pub topology: String,
    /// The node.
    pub node: String,
    /// Only outputs with a greater seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// Only outputs with a smaller seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
    /// Only outputs at or after this time (Unix ms, output `ts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// Only outputs before this time (Unix ms, output `ts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    /// At most this many (1 to [`MAX_HISTORY_LIMIT`]).
    pub limit: u32,
    /// Oldest first (`true`) or newest first.
    #[serde(default)]
    pub ascending: bool,
}

/// One page, in the order asked for (by `seq`); `more` when outputs beyond it match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The outputs.
    pub items: Vec<OutputEvent>,
    /// Whether more outputs match after the last item.
    pub more: bool,
}

/// How many outputs beyond a page's limit the store reads, so that a page can take every
/// output of its last seq: a node deleted and made again has one output per life at a seq,
/// and a page never ends between them ([`HistoryPage::cut`]). Up to this many more lives
/// sharing a seq at a page's end are kept together.
pub const SEQ_TIES: u32 = 8;

impl HistoryPage {
    /// The page of `events` (all of which match the query) that holds their first `limit` in
    /// the order asked for, by seq, outputs of one seq (of two lives) by `ts` then `msg_id`,
    /// and with them every other output of the page's last seq, so the next page (from
    /// `after_seq`/`before_seq` at that seq) misses none. `more` when any is left, or when
    /// `more_beyond` says more follow those given.
    pub fn cut(
        mut events: Vec<OutputEvent>,
        limit: usize,
        ascending: bool,
        more_beyond: bool,
    ) -> HistoryPage {
        events.sort_by(|a, b| (a.seq, a.ts, &a.msg_id).cmp(&(b.seq, b.ts, &b.msg_id)));
        if !ascending {
            events.reverse();
        }
        let mut end = limit.min(events.len());
        while end > 0 && end < events.len() && events[end].seq == events[end - 1].seq {
            end += 1;
        }
        let more = more_beyond || events.len() > end;
        events.truncate(end);
        HistoryPage {
            items: events,
            more,
        }
    }
}

/// The store's answer to an [`ArchiveQuery`].
pub type HistoryReply = Result<HistoryPage, ApiError>;

/// What the history service answers: a page of one node's outputs, or of the outputs one
/// inject caused. Untagged, so a [`HistoryQuery`] is sent as it always was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArchiveQuery {
    /// One node's outputs.
    Node(HistoryQuery),
    /// The outputs of one inject.
    Caused(crate::caused::CausedQuery),
}

/// A node's newest outputs as its replay buffer in Redis holds them: enough to answer a
/// history page that lies within them without the archive ([`Recent::answer`]), and to join
/// a page that reaches further back with the archive's ([`Recent::merge`]). Either way the
/// page is the one the archive would give if it held every output: the buffer is ahead of
/// the archive (which lags while it writes), never behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recent {
    /// Outputs of the node's current life, oldest first, with consecutive seqs ending at its
    /// latest output; empty when it has not output anything yet. Every output of the node
    /// from the first of them on is here.
    pub events: Vec<OutputEvent>,
    /// The highest seq a former life of the node reached (0 when it has none): a node deleted
    /// and made again counts from 1 again while the archive keeps its former outputs, so
    /// archived outputs at or below the floor may be ones the buffer never held.
    pub floor: u64,
}

/// Where a history page was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistorySource {
    /// The replay buffer in Redis alone.
    Recent,
    /// The archive alone.
    Archive,
    /// Both, joined by seq.
    Both,
}

impl HistorySource {
    /// As the `Gorgon-History-Source` header shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            HistorySource::Recent => "redis",
            HistorySource::Archive => "archive",
            HistorySource::Both => "redis+archive",
        }
    }
}

impl HistoryQuery {
    /// Whether `event` is within the query's seq and time bounds.
    pub fn matches(&self, event: &OutputEvent) -> bool {
        let ts = event.ts.unix_ms();
        self.after_seq.is_none_or(|after| event.seq > after)
            && self.before_seq.is_none_or(|before| event.seq < before)
            && self.from_ms.is_none_or(|from| ts >= from)
            && self.to_ms.is_none_or(|to| ts < to)
    }

    /// How many of a node's newest buffered outputs the query needs, 0 for all of them: a
    /// newest-first page bounded only from below needs no more than one beyond its limit.
    pub fn recent_needed(&self) -> usize {
        let newest_first_from_top = !self.ascending
            && self.before_seq.is_none()
            && self.from_ms.is_none()
            && self.to_ms.is_none();
        match newest_first_from_top {
            true => self.limit as usize + 1,
            false => 0,
        }
    }
}

impl Recent {
    /// The page `query` asks for, when these outputs alone are enough to tell it: when every
    /// output that matches and could be archived is among them (the query starts after the
    /// oldest held and above the floor), or, newest first, when more than a page of them
    /// matches above the floor (what the archive holds besides ranks after them). `None`
    /// when the archive must be asked too ([`Recent::merge`]).
    pub fn answer(&self, query: &HistoryQuery) -> Option<HistoryPage> {
        // Without outputs in this life, all of it is held (none).
        let oldest = self.events.first().map_or(1, |event| event.seq);
        let after = query.after_seq.unwrap_or(0);
        let matching: Vec<&OutputEvent> = self
            .events
            .iter()
            .filter(|event| query.matches(event))
            .collect();
        let limit = query.limit as usize;
        let holds_all = after.saturating_add(1) >= oldest && self.floor <= after;
        // Newest first, the one beyond the page is the `limit`-th from the end.
        let fills_page = !query.ascending
            && matching
                .len()
                .checked_sub(limit + 1)
                .is_some_and(|beyond| matching[beyond].seq > self.floor);
        (holds_all || fills_page).then(|| {
            // One life's outputs, one per seq: the page and the one beyond it are enough.
            let wanted = match query.ascending {
                true => &matching[..matching.len().min(limit + 1)],
                false => &matching[matching.len().saturating_sub(limit + 1)..],
            };
            let events = wanted.iter().map(|&event| event.clone()).collect();
            HistoryPage::cut(
                events,
                limit,
                query.ascending,
                matching.len() > wanted.len(),
            )
        })
    }

    /// The page `query` asks for, from the archive's page for the same query and these
    /// outputs: both joined by seq, an output in both taken once (by `msg_id`). Exact because
    /// any archived output on the joined page is on the archive's page (fewer archived
    /// outputs rank before it), and more follow when the archive has more or the join is
    /// longer than the page. Outputs of two lives with the same seq go by `ts`, then `msg_id`.
    /// Archived outputs of the current life newer than these (archived since they were read,
    /// perhaps without the one before them) are left to a later read, so a page has no gap.
    pub fn merge(&self, query: &HistoryQuery, mut archived: HistoryPage) -> HistoryPage {
        let newest = self.events.last().map_or(0, |event| event.seq);
        archived
            .items
            .retain(|event| event.seq <= newest || event.seq <= self.floor);
        let seen: std::collections::HashSet<&str> = archived
            .items
            .iter()
            .map(|event| event.msg_id.as_str())
            .collect();
        let fresh: Vec<OutputEvent> = self
            .events
            .iter()
            .filter(|event| query.matches(event) && !seen.contains(event.msg_id.as_str()))
            .cloned()
            .collect();
        let mut items = archived.items;
        items.extend(fresh);
        HistoryPage::cut(items, query.limit as usize, query.ascending, archived.more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    /// Output `seq` of node `t/n` at `ts` ms, its id naming its life.
    fn event(life: &str, seq: u64, ts: i64) -> OutputEvent {
        OutputEvent {
            topology: "t".into(),
            node: "n".into(),
            seq,
            msg_id: format!("{life}-{seq}"),
            input_id: "i".into(),
            injected_at: Timestamp::from_unix_ms(ts),
            ts: Timestamp::from_unix_ms(ts),
            data: serde_json::json!(seq),
        }
    }

    fn query(after: Option<u64>, before: Option<u64>, limit: u32, ascending: bool) -> HistoryQuery {
        HistoryQuery {
            topology: "t".into(),
            node: "n".into(),
            after_seq: after,
            before_seq: before,
            from_ms: None,
            to_ms: None,
            limit,
            ascending,
        }
    }

    /// Every output of one life, 1 to `latest`, at ts = seq.
    fn life(name: &str, latest: u64) -> Vec<OutputEvent> {
        (1..=latest)
            .map(|seq| event(name, seq, seq as i64))
            .collect()
    }

    /// The archive's page for `query` over `archived` (what the store answers).
    fn archive_page(archived: &[OutputEvent], query: &HistoryQuery) -> HistoryPage {
        let items: Vec<OutputEvent> = archived
            .iter()
            .filter(|event| query.matches(event))
            .cloned()
            .collect();
        HistoryPage::cut(items, query.limit as usize, query.ascending, false)
    }

    fn seqs(page: &HistoryPage) -> Vec<u64> {
        page.items.iter().map(|event| event.seq).collect()
    }

    /// The page as web_face reads it: as much of the buffer as the query needs, then from it
    /// alone when it can, else joined.
    fn read(recent: &Recent, archived: &[OutputEvent], query: &HistoryQuery) -> HistoryPage {
        let needed = query.recent_needed();
        let held = recent.events.len();
        let recent = match needed {
            0 => recent.clone(),
            needed => Recent {
                events: recent.events[held.saturating_sub(needed)..].to_vec(),
                floor: recent.floor,
            },
        };
        recent
            .answer(query)
            .unwrap_or_else(|| recent.merge(query, archive_page(archived, query)))
    }

    /// Follows `next` the way web_face makes it, from the newest or the oldest.
    fn walk(recent: &Recent, archived: &[OutputEvent], limit: u32, ascending: bool) -> Vec<u64> {
        walk_events(recent, archived, limit, ascending)
            .iter()
            .map(|event| event.seq)
            .collect()
    }

    /// The same, every output of every page.
    fn walk_events(
        recent: &Recent,
        archived: &[OutputEvent],
        limit: u32,
        ascending: bool,
    ) -> Vec<OutputEvent> {
        let mut got = Vec::new();
        let mut cursor: Option<u64> = None;
        loop {
            let q = match ascending {
                true => query(cursor, None, limit, true),
                false => query(None, cursor, limit, false),
            };
            let page = read(recent, archived, &q);
            let next = page.items.last().map(|last| last.seq);
            got.extend(page.items);
            match (page.more, next) {
                (true, Some(seq)) => cursor = Some(seq),
                _ => return got,
            }
        }
    }

    /// 1 to 25 output, the buffer holds 16 to 25, the archive 1 to 20 (it lags by five):
    /// pages of every size in both orders give 1 to 25 with no gap and no repeat, and the
    /// newest pages within the buffer need no archive.
    #[test]
    fn pages_join_at_the_buffer_edge_with_the_archive_behind() {
        let all = life("a", 25);
        let recent = Recent {
            events: all[15..].to_vec(),
            floor: 0,
        };
        let archived = &all[..20];
        for limit in 1..=30 {
            assert_eq!(
                walk(&recent, archived, limit, false),
                (1..=25).rev().collect::<Vec<_>>(),
                "desc {limit}"
            );
            assert_eq!(
                walk(&recent, archived, limit, true),
                (1..=25).collect::<Vec<_>>(),
                "asc {limit}"
            );
        }
        // The newest 9 (and one beyond) are in the buffer: no archive.
        let newest = recent
            .answer(&query(None, None, 9, false))
            .expect("from the buffer");
        assert_eq!(seqs(&newest), (17..=25).rev().collect::<Vec<_>>());
        assert!(newest.more);
        // The newest 10: whether more follow is the archive's to say.
        assert_eq!(recent.answer(&query(None, None, 10, false)), None);
        // Oldest first after 15: all in the buffer, the last page says so.
        let tail = recent
            .answer(&query(Some(15), None, 10, true))
            .expect("from the buffer");
        assert_eq!(seqs(&tail), (16..=25).collect::<Vec<_>>());
        assert!(!tail.more);
        // Oldest first after 14: 15 is only archived.
        assert_eq!(recent.answer(&query(Some(14), None, 10, true)), None);
    }

    /// A node made again: its former life reached 30 and is archived; the new one reached 12,
    /// all in the buffer, 1 to 8 archived. Pages are the archive's own answer had it caught up:
    /// former outputs are never hidden by the new life's buffer.
    #[test]
    fn a_node_made_again_keeps_its_former_outputs_in_pages() {
        let former: Vec<OutputEvent> = life("old", 30);
        let current: Vec<OutputEvent> = (1..=12)
            .map(|seq| event("new", seq, 100 + seq as i64))
            .collect();
        let recent = Recent {
            events: current.clone(),
            floor: 30,
        };
        let mut archived = former.clone();
        archived.extend_from_slice(&current[..8]);
        let mut everything = former;
        everything.extend(current);
        for limit in [1, 3, 7, 12, 50] {
            for ascending in [false, true] {
                for cursor in [None, Some(5), Some(12), Some(20), Some(31)] {
                    let q = match ascending {
                        true => query(cursor, None, limit, true),
                        false => query(None, cursor, limit, false),
                    };
                    assert_eq!(
                        read(&recent, &archived, &q),
                        archive_page(&everything, &q),
                        "limit {limit} ascending {ascending} cursor {cursor:?}"
                    );
                }
            }
        }
        // The newest page is not the buffer's alone: the former life ranks above it.
        assert_eq!(recent.answer(&query(None, None, 5, false)), None);
        // Above the floor nothing of a former life can be: from the buffer.
        let above = recent
            .answer(&query(Some(30), None, 5, true))
            .expect("from the buffer");
        assert_eq!(above.items, Vec::<OutputEvent>::new());
        assert!(!above.more);
    }

    /// A node made again twice, each life reaching 12: pages of every size in both orders,
    /// followed by seq as web_face's `next` does, give every output of every life once, a
    /// page never ending between two outputs of one seq.
    #[test]
    fn pages_keep_the_outputs_of_one_seq_together() {
        let mut everything = life("one", 12);
        everything.extend((1..=12).map(|seq| event("two", seq, 100 + seq as i64)));
        let current: Vec<OutputEvent> = (1..=12)
            .map(|seq| event("three", seq, 200 + seq as i64))
            .collect();
        everything.extend(current.iter().cloned());
        let recent = Recent {
            events: current[4..].to_vec(),
            floor: 12,
        };
        let archived: Vec<OutputEvent> = everything[..30].to_vec();
        for limit in 1..=8 {
            for ascending in [false, true] {
                let mut got: Vec<String> = walk_events(&recent, &archived, limit, ascending)
                    .into_iter()
                    .map(|event| event.msg_id)
                    .collect();
                let mut expected: Vec<String> = everything
                    .iter()
                    .map(|event| event.msg_id.clone())
                    .collect();
                got.sort();
                expected.sort();
                assert_eq!(got, expected, "limit {limit} ascending {ascending}");
            }
        }
    }

    /// Time bounds apply to buffered outputs as the archive applies them (`from` included,
    /// `to` not).
    #[test]
    fn time_bounds_match_the_archive() {
        let all = life("a", 40);
        let recent = Recent {
            events: all[20..].to_vec(),
            floor: 0,
        };
        let archived = &all[..30];
        for (from, to) in [
            (Some(25), Some(35)),
            (Some(10), None),
            (None, Some(22)),
            (Some(38), Some(38)),
        ] {
            for ascending in [false, true] {
                let mut q = query(None, None, 4, ascending);
                q.from_ms = from;
                q.to_ms = to;
                assert_eq!(
                    read(&recent, archived, &q),
                    archive_page(&all, &q),
                    "{from:?} {to:?} {ascending}"
                );
            }
        }
    }

    /// Outputs archived after the buffer was read, the one before them not yet: left out,
    /// the page ends at the buffer's newest without a gap.
    #[test]
    fn outputs_archived_since_the_read_wait_for_the_next() {
        let all = life("a", 30);
        let recent = Recent {
            events: all[20..25].to_vec(),
            floor: 0,
        };
        let mut archived: Vec<OutputEvent> = all[..20].to_vec();
        archived.push(all[26].clone()); // 27, without 21 to 26
        let page = read(&recent, &archived, &query(None, None, 10, false));
        assert_eq!(seqs(&page), (16..=25).rev().collect::<Vec<_>>());
        assert!(page.more);
        let page = read(&recent, &archived, &query(Some(18), None, 100, true));
        assert_eq!(seqs(&page), (19..=25).collect::<Vec<_>>());
        assert!(!page.more);
    }

    /// A node that has not output anything yet: an empty last page from Redis, unless a
    /// former life may have archived outputs.
    #[test]
    fn a_node_without_outputs_needs_no_archive() {
        let fresh = Recent {
            events: Vec::new(),
            floor: 0,
        };
        for ascending in [false, true] {
            let page = fresh
                .answer(&query(None, None, 10, ascending))
                .expect("from Redis");
            assert_eq!(
                page,
                HistoryPage {
                    items: Vec::new(),
                    more: false
                }
            );
        }
        let remade = Recent {
            events: Vec::new(),
            floor: 4,
        };
        assert_eq!(remade.answer(&query(None, None, 10, false)), None);
        let former = life("old", 4);
        assert_eq!(
            seqs(&read(&remade, &former, &query(None, None, 3, false))),
            [4, 3, 2]
        );
        assert!(remade.answer(&query(Some(4), None, 10, true)).is_some());
    }

    /// Only newest-first pages from the top may read part of the buffer.
    #[test]
    fn only_pages_from_the_top_read_part_of_the_buffer() {
        assert_eq!(query(None, None, 10, false).recent_needed(), 11);
        assert_eq!(query(Some(3), None, 10, false).recent_needed(), 11);
        assert_eq!(query(None, Some(30), 10, false).recent_needed(), 0);
        assert_eq!(query(None, None, 10, true).recent_needed(), 0);
        let mut timed = query(None, None, 10, false);
        timed.from_ms = Some(1);
        assert_eq!(timed.recent_needed(), 0);
    }
}
