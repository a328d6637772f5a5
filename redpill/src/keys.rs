//! Every Redis key and channel name redpill uses, built in one place.
//!
//! Layout, under the configured prefix `P`:
//!
//! | key | type | what |
//! |---|---|---|
//! | `P:{T}:q:N` | list | ids of the messages waiting in queue `N` |
//! | `P:{T}:q:N:body` | hash | id → body of every message not yet acked |
//! | `P:{T}:q:N:att` | hash | id → failed deliveries so far (absent means 0) |
//! | `P:{T}:q:N:delay` | zset | ids waiting out a retry backoff, scored by due time (ms) |
//! | `P:{T}:q:N:fly:C` | list | ids consumer `C` has pulled and not acked, in pull order |
//! | `P:{T}:q:N:who` | set | consumers that may hold in-flight messages of `N` |
//! | `P:{T}:q:N:dlq` | list | dead letters, encoded by `queue::DeadLetter` |
//! | `P:{T}:q:N:once:K` | string | what push key `K` queued, for a repeat of it (`Queue::push_once`), with a TTL |
//! | `P:{T}:t:N` | stream | topic `N` |
//! | `P:{T}:lease:N` | string | `"<epoch> <holder>"` with a TTL |
//! | `P:{T}:lease:N:epoch` | string | the lease's epoch counter (INCR) |
//! | `P:{T}:outbox:N` | list | outbox `N`: entries for queues of other tags, see `outbox.rs` |
//! | `P:{T}:S` | any | a key of the caller's own under tag `T` ([`Keys::tagged`]) |
//! | `P:S` | any | a key of the caller's own with no tag ([`Keys::plain`]) |
//! | `P:{rpc.S}:q:requests` | queue | the requests of service `S` (`rpc.rs`) |
//! | `P:consumer:C` | string | heartbeat of consumer `C`, with a TTL |
//! | `P:members:N` | set | consumer ids of group `N` (see `Members`) |
//! | `P:setting:N` | string | a deployment-wide setting fixed by the first writer |
//! | `P:{r.C}:replies` | list | replies for requester `C` |
//! | channel `P:wake:K` | pub/sub | wake-up hint for waiters on key `K` |
//! | channel `P:live:{N}` | pub/sub | live channel `N` |
//!
//! `{T}` is a [`Tag`]: everything inside one pair of braces hashes to one Redis Cluster slot,
//! so every script that touches one queue, topic shard or lease touches one slot only.

use std::fmt;

/// A Redis Cluster hash tag: the keys built with one tag live in one slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag of partition `n`: `p17`. Everything one partition touches uses this tag.
    pub fn partition(n: u32) -> Self {
        Tag(format!("p{n}"))
    }

    /// A named tag for things that belong to no partition, e.g. `Tag::named("store")`.
    /// Braces are not allowed in the name.
    pub fn named(name: &str) -> Self {
        assert!(
            !name.contains(['{', '}']) && !name.is_empty(),
            "a tag name must be non-empty and free of braces: {name:?}"
        );
        Tag(name.to_owned())
    }

    /// The tag of service `name`'s request queue (`rpc.rs`).
    pub fn service(name: &str) -> Self {
        Tag::named(&format!("rpc.{name}"))
    }

    /// The tag text without braces.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds keys under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of queue `name`'s waiting list; the other queue keys extend it.
    pub fn queue(&self, tag: &Tag, name: &str) -> String {
        format!("{}:{{{tag}}}:q:{name}", self.prefix)
    }

    /// The stream of topic `name`.
    pub fn topic(&self, tag: &Tag, name: &str) -> String {
        format!("{}:{{{tag}}}:t:{name}", self.prefix)
    }

    /// The holder key of lease `name`.
    pub fn lease(&self, tag: &Tag, name: &str) -> String {
        format!("{}:{{{tag}}}:lease:{name}", self.prefix)
    }

    /// The epoch counter of lease `name`.
    pub fn lease_epoch(&self, tag: &Tag, name: &str) -> String {
        format!("{}:{{{tag}}}:lease:{name}:epoch", self.prefix)
    }

    /// The outbox list `name` under `tag`.
    pub fn outbox(&self, tag: &Tag, name: &str) -> String {
        format!("{}:{{{tag}}}:outbox:{name}", self.prefix)
    }

    /// The set of the consumer ids of group `name` (`Members`).
    pub fn members(&self, name: &str) -> String {
        format!("{}:members:{name}", self.prefix)
    }

    /// The deployment-wide setting `name`, fixed by its first writer.
    pub fn setting(&self, name: &str) -> String {
        format!("{}:setting:{name}", self.prefix)
    }

    /// A key of the caller's own under `tag`, e.g. a partition's node state.
    /// `suffix` must not contain braces.
    pub fn tagged(&self, tag: &Tag, suffix: &str) -> String {
        debug_assert!(
            !suffix.contains(['{', '}']),
            "braces in key suffix {suffix:?}"
        );
        format!("{}:{{{tag}}}:{suffix}", self.prefix)
    }

    /// A key of the caller's own with no tag (a single-key record such as a counter).
    pub fn plain(&self, suffix: &str) -> String {
        debug_assert!(
            !suffix.contains(['{', '}']),
            "braces in key suffix {suffix:?}"
        );
        format!("{}:{suffix}", self.prefix)
    }

    /// The heartbeat key of consumer `consumer`.
    pub fn consumer(&self, consumer: &str) -> String {
        format!("{}:consumer:{consumer}", self.prefix)
    }

    /// The reply list of requester `requester`.
    pub fn replies(&self, requester: &str) -> String {
        format!("{}:{{r.{requester}}}:replies", self.prefix)
    }

    /// The wake-up channel for waiters on `key`: in the slot of `key` (its tag is the first
    /// pair of braces), so a script may publish on it on a cluster.
    pub fn wake(&self, key: &str) -> String {
        format!("{}:wake:{key}", self.prefix)
    }

    /// The channel of live channel `name`: the name is its hash tag, so on a cluster all of
    /// a channel's traffic stays on the one shard that owns its slot. `name` must not contain
    /// braces.
    pub fn live(&self, name: &str) -> String {
        debug_assert!(
            !name.contains(['{', '}']),
            "braces in live channel name {name:?}"
        );
        format!("{}:live:{{{name}}}", self.prefix)
    }
}

/// Queue sub-keys, derived from the queue's base key.
pub(crate) struct QueueKeys {
    pub(crate) waiting: String,
    pub(crate) body: String,
    pub(crate) attempts: String,
    pub(crate) delayed: String,
    pub(crate) who: String,
    pub(crate) dead: String,
}

impl QueueKeys {
    pub(crate) fn new(base: String) -> Self {
        QueueKeys {
            body: format!("{base}:body"),
            attempts: format!("{base}:att"),
            delayed: format!("{base}:delay"),
            who: format!("{base}:who"),
            dead: format!("{base}:dlq"),
            waiting: base,
        }
    }

    /// The record of push key `key` (`Queue::push_once`).
    pub(crate) fn once(&self, key: &str) -> String {
        format!("{}:once:{key}", self.waiting)
    }

    /// The in-flight set of `consumer`.
    pub(crate) fn in_flight(&self, consumer: &str) -> String {
        format!("{}:fly:{consumer}", self.waiting)
    }
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key
/// when it has none, modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Panics (in debug builds) when `keys` span more than one cluster slot.
///
/// Every script and MULTI block calls this with its keys, so a change that would break on
/// Redis Cluster fails every test that runs it.
#[track_caller]
pub(crate) fn debug_assert_one_slot<S: AsRef<str>>(what: &str, keys: &[S]) {
    if cfg!(debug_assertions) {
        if let Some(first) = keys.first() {
            let first_slot = slot(first.as_ref().as_bytes());
            for key in keys {
                let key = key.as_ref();
                assert_eq!(
                    slot(key.as_bytes()),
                    first_slot,
                    "{what} touches more than one cluster slot: {:?} and {key:?}",
                    first.as_ref()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot function agrees with the values Redis Cluster documents.
    #[test]
    fn slot_matches_redis_cluster() {
        // CLUSTER KEYSLOT values from the Redis documentation and a live server.
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    /// All keys of one queue, topic and lease with one tag share a slot.
    #[test]
    fn keys_of_one_tag_share_a_slot() {
        let keys = Keys::new("gorgon");
        let tag = Tag::partition(17);
        let queue = QueueKeys::new(keys.queue(&tag, "in"));
        let all = [
            queue.waiting.clone(),
            queue.body.clone(),
            queue.attempts.clone(),
            queue.delayed.clone(),
            queue.who.clone(),
            queue.dead.clone(),
            queue.in_flight("c1"),
            keys.topic(&tag, "outputs"),
            keys.lease(&tag, "owner"),
            keys.lease_epoch(&tag, "owner"),
            keys.tagged(&tag, "node:a"),
        ];
        debug_assert_one_slot("test", &all);
        assert_eq!(queue.waiting, "gorgon:{p17}:q:in");
        assert_eq!(queue.in_flight("c1"), "gorgon:{p17}:q:in:fly:c1");
    }

    /// Two partitions' tags land in different slots (the point of tagging them).
    #[test]
    #[should_panic(expected = "more than one cluster slot")]
    #[cfg(debug_assertions)]
    fn mixed_slots_are_caught() {
        let keys = Keys::new("gorgon");
        debug_assert_one_slot(
            "test",
            &[
                keys.queue(&Tag::partition(1), "in"),
                keys.queue(&Tag::partition(2), "in"),
            ],
        );
    }
}
