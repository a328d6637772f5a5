//! Persistent topics on Redis streams: every subscriber group gets every message, including
//! those published while it had no live member; members of a group share the work.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::streams::{StreamId, StreamReadReply};
use redis::Value;

use crate::client::{cmd, Client};
use crate::conn::Routed;
use crate::error::{Error, Result};
use crate::keys::Tag;
use crate::scripts;

/// The default bound on entries kept per shard.
pub const DEFAULT_TOPIC_BOUND: u64 = 1_000_000;

/// A persistent topic, split into shards: one stream per shard, each under its own tag, so
/// that a writer in a partition's slot can append to the partition's shard atomically with
/// its other writes. A topic with one shard is a plain topic.
#[derive(Clone)]
pub struct Topic {
    client: Client,
    name: String,
    shards: Arc<Vec<String>>,
    /// Each shard's wake-up channel, in the shard's slot.
    wake_channels: Arc<Vec<String>>,
    bound: u64,
    ring: bool,
}

/// Where a new group starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// Everything the topic still retains.
    Beginning,
    /// Only what is published after the group is created.
    Now,
}

/// One entry of a topic, as a group member receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The shard it was published to.
    pub shard: usize,
    /// The stream entry id, `<ms>-<seq>`.
    pub id: String,
    /// The body as published.
    pub body: Bytes,
}

/// Fill and backlog of one group on one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupBacklog {
    /// The group name.
    pub group: String,
    /// Delivered to a member and not yet acknowledged.
    pub pending: u64,
    /// Not yet delivered to any member (`None` when Redis cannot tell after a trim).
    pub lag: Option<u64>,
    /// Delivered to the group since it was made (`None` when Redis cannot tell): with `lag`
    /// and `pending`, the shard's entries added (`entries_read + lag`) and acknowledged by the
    /// group (`entries_read - pending`) so far, whose changes over time are rates.
    pub entries_read: Option<u64>,
}

/// Fill level of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStats {
    /// Entries kept.
    pub len: u64,
    /// The bound on entries kept.
    pub bound: u64,
    /// Each group's backlog.
    pub groups: Vec<GroupBacklog>,
}

impl ShardStats {
    /// Entries of this shard group `group` has not acknowledged: pending plus not yet
    /// delivered (0 for a group the shard does not have).
    pub fn backlog(&self, group: &str) -> u64 {
        self.groups
            .iter()
            .filter(|backlog| backlog.group == group)
            .map(|backlog| backlog.pending + backlog.lag.unwrap_or(0))
            .sum()
    }
}

impl Topic {
    /// Topic `name` with one shard under tag `tag`.
    pub fn new(client: &Client, tag: &Tag, name: &str) -> Topic {
        let shards = vec![client.keys().topic(tag, name)];
        Self::with_shard_keys(client, name, shards)
    }

    /// Topic `name` with `shards` shards, shard `i` under [`Tag::partition`]`(i)`: the topic
    /// that partitions append to.
    pub fn partitioned(client: &Client, name: &str, shards: u32) -> Topic {
        let keys = (0..shards.max(1))
            .map(|shard| client.keys().topic(&Tag::partition(shard), name))
            .collect();
        Self::with_shard_keys(client, name, keys)
    }

    fn with_shard_keys(client: &Client, name: &str, shards: Vec<String>) -> Topic {
        Topic {
            wake_channels: Arc::new(shards.iter().map(|key| client.keys().wake(key)).collect()),
            client: client.clone(),
            name: format!("topic {name}"),
            shards: Arc::new(shards),
            bound: DEFAULT_TOPIC_BOUND,
            ring: false,
        }
    }

    /// Keep at most `bound` entries per shard; at the bound, publishing fails with
    /// [`Error::Full`] (retryable) until every group has acknowledged enough to trim.
    pub fn with_bound(mut self, bound: u64) -> Topic {
        self.bound = bound.max(1);
        self
    }

    /// Make this a ring: keep about the newest `bound` entries per shard (Redis's `MAXLEN ~`,
    /// so a little more), trimming the oldest even when a group has not read them, so that
    /// publishing never fails with [`Error::Full`]. For telemetry, which must never hold a
    /// writer back and whose readers want recent entries, read with [`Topic::read_after`].
    pub fn ring(mut self, bound: u64) -> Topic {
        self.bound = bound.max(1);
        self.ring = true;
        self
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The stream key of shard `shard`, for writers that append inside their own scripts.
    pub fn shard_key(&self, shard: usize) -> &str {
        &self.shards[shard]
    }

    /// The wake-up channel of shard `shard`, in the shard's slot.
    pub fn wake_channel(&self, shard: usize) -> &str {
        &self.wake_channels[shard]
    }

    /// Appends `bodies` to shard `shard` in order, in one round trip. Returns the shard's
    /// length after the append.
    pub async fn publish<B: AsRef<[u8]>>(&self, shard: usize, bodies: &[B]) -> Result<u64> {
        let key = self
            .shards
            .get(shard)
            .ok_or_else(|| Error::Invalid(format!("{} has no shard {shard}", self.name)))?;
        if bodies.is_empty() {
            return Ok(0);
        }
        let bodies: Vec<&[u8]> = bodies.iter().map(AsRef::as_ref).collect();
        let mut conn = self.client.conn().await?;
        if self.ring {
            let mut pipe = redis::pipe();
            for body in &bodies {
                pipe.cmd("XADD")
                    .arg(key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.bound)
                    .arg("*")
                    .arg("b")
                    .arg(*body)
                    .ignore();
            }
            pipe.xlen(key)
                .cmd(conn.publish_command())
                .arg(&self.wake_channels[shard])
                .arg("1")
                .ignore();
            let (len,): (u64,) = pipe.query_async(&mut conn).await?;
            return Ok(len);
        }
        let (appended, len): (i64, u64) = scripts::run(
            &mut conn,
            &scripts::TOPIC_PUBLISH,
            &[key],
            (self.bound, &self.wake_channels[shard], bodies),
        )
        .await?;
        if appended < 0 {
            return Err(Error::Full {
                name: format!("{} shard {shard}", self.name),
                len,
                max: self.bound,
            });
        }
        Ok(len)
    }

    /// Trims shard `shard` of what every group has acknowledged, if it is at its bound, and
    /// returns its length: a writer that appends inside its own scripts checks for room with
    /// this before it appends, and holds off while the length is at the bound.
    pub async fn make_room(&self, shard: usize) -> Result<u64> {
        let key = self
            .shards
            .get(shard)
            .ok_or_else(|| Error::Invalid(format!("{} has no shard {shard}", self.name)))?;
        let mut conn = self.client.conn().await?;
        let (_, len): (i64, u64) = scripts::run(
            &mut conn,
            &scripts::TOPIC_PUBLISH,
            &[key],
            (self.bound, &self.wake_channels[shard]),
        )
        .await?;
        Ok(len)
    }

    /// The bound on entries kept per shard.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Joins (creating if needed) subscriber group `group`. A new group starts at `start`;
    /// an existing group keeps its position.
    pub async fn group(&self, group: &str, start: StartFrom) -> Result<Group> {
        let handle = Group {
            topic: self.clone(),
            group: group.to_owned(),
            start,
            state: Arc::default(),
        };
        handle.create().await?;
        Ok(handle)
    }

    /// Reads up to `max` entries of shard `shard` published after entry id `after`, oldest
    /// first, without a group: `"0"` reads from the oldest retained, `"<unix ms>"` from that
    /// time on. Pass the last id returned to read on. Returns at once, possibly with nothing.
    pub async fn read_after(&self, shard: usize, after: &str, max: usize) -> Result<Vec<Entry>> {
        let key = self
            .shards
            .get(shard)
            .ok_or_else(|| Error::Invalid(format!("{} has no shard {shard}", self.name)))?;
        let mut conn = self.client.conn().await?;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|id| entry_of(shard, id))
            .collect())
    }

    /// Like [`Topic::read_after`], but waits up to `timeout` for an entry when there is none.
    pub async fn read_after_wait(
        &self,
        shard: usize,
        after: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Entry>> {
        self.client
            .wait_for(&self.wake_channels[shard..=shard], timeout, None, || {
                self.read_after(shard, after, max)
            })
            .await
            .map(|waited| waited.found)
    }

    /// Fill level and per-group backlog of every shard.
    pub async fn stats(&self) -> Result<Vec<ShardStats>> {
        let mut conn = self.client.conn().await?;
        let mut routed = Routed::new(&conn);
        for key in self.shards.iter() {
            let mut groups = cmd("XINFO", "GROUPS");
            groups.arg(key);
            routed.add(key, cmd("XLEN", key)).add(key, groups);
        }
        // XINFO GROUPS fails on a stream that does not exist yet; ask per shard then.
        let replies: Vec<Value> = match routed.query(&conn).await {
            Ok(replies) => replies,
            Err(err) if err.code() == Some("ERR") => {
                let mut replies = Vec::new();
                for key in self.shards.iter() {
                    let len: u64 = redis::cmd("XLEN").arg(key).query_async(&mut conn).await?;
                    let groups: Value = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(key)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or(Value::Array(Vec::new()));
                    replies.push(Value::Int(len as i64));
                    replies.push(groups);
                }
                replies
            }
            Err(err) => return Err(err.into()),
        };
        let mut stats = Vec::with_capacity(self.shards.len());
        for pair in replies.chunks(2) {
            let len: u64 = redis::from_redis_value(pair[0].clone())
                .map_err(|err| Error::decode("stream length", err))?;
            stats.push(ShardStats {
                len,
                bound: self.bound,
                groups: decode_groups(&pair[1])?,
            });
        }
        Ok(stats)
    }
}

/// Membership of one subscriber group: this client reads as one member, named by its
/// consumer id, so it shares the group's work with the other members.
#[derive(Clone)]
pub struct Group {
    topic: Topic,
    group: String,
    start: StartFrom,
    state: Arc<Mutex<GroupState>>,
}

#[derive(Default)]
struct GroupState {
    held: HashSet<(usize, String)>,
    resync: bool,
    claimed: Vec<Entry>,
    last_reap: Option<Instant>,
}

impl Group {
    /// Reads up to `max` entries per shard that no member of the group has had yet (first any
    /// entries reclaimed from dead members). Returns at once, possibly with nothing.
    pub async fn read(&self, max: usize) -> Result<Vec<Entry>> {
        let (claimed, resync) = {
            let mut state = self.state.lock().expect("group state");
            (std::mem::take(&mut state.claimed), state.resync)
        };
        if !claimed.is_empty() {
            return Ok(self.hold(claimed));
        }
        let mut entries = Vec::new();
        if resync {
            // A read may have been delivered with its reply lost; our own pending list has it.
            entries.extend(self.read_from(max, "0").await?);
        }
        match self.read_from(max, ">").await {
            Ok(fresh) => entries.extend(fresh),
            Err(err) => {
                self.state.lock().expect("group state").resync = true;
                return Err(err);
            }
        }
        self.state.lock().expect("group state").resync = false;
        Ok(self.hold(entries))
    }

    /// Like [`Group::read`], but waits up to `timeout` for entries when there are none, and
    /// reclaims the pending entries of dead members once per reap interval.
    pub async fn read_wait(&self, max: usize, timeout: Duration) -> Result<Vec<Entry>> {
        self.topic
            .client
            .wait_for(&self.topic.wake_channels, timeout, None, || async {
                self.reap_if_due().await?;
                self.read(max).await
            })
            .await
            .map(|waited| waited.found)
    }

    /// Acknowledges entries for this group, in one round trip. Acking twice is harmless.
    pub async fn ack(&self, entries: &[Entry]) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut by_shard: HashMap<usize, Vec<&str>> = HashMap::new();
        for entry in entries {
            by_shard.entry(entry.shard).or_default().push(&entry.id);
        }
        let acked: Vec<u64> = self
            .topic
            .client
            .query_routed(by_shard.iter().map(|(shard, ids)| {
                let key = self.topic.shards[*shard].as_str();
                let mut xack = cmd("XACK", key);
                xack.arg(&self.group).arg(ids);
                (key, xack)
            }))
            .await?;
        let mut state = self.state.lock().expect("group state");
        for entry in entries {
            state.held.remove(&(entry.shard, entry.id.clone()));
        }
        Ok(acked.iter().sum())
    }

    /// Takes over the pending entries of group members whose heartbeat has expired and
    /// removes those members; the next read returns the entries. Returns how many were taken.
    pub async fn reap(&self) -> Result<u64> {
        let client = &self.topic.client;
        let ttl = client.config().consumer_ttl;
        let mut conn = client.conn().await?;
        let me = client.consumer_id();
        let mut taken = Vec::new();
        for (shard, key) in self.topic.shards.iter().enumerate() {
            let consumers: Value = match redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(key)
                .arg(&self.group)
                .query_async(&mut conn)
                .await
            {
                Ok(consumers) => consumers,
                Err(err) if err.code() == Some("NOGROUP") || err.code() == Some("ERR") => continue,
                Err(err) => return Err(err.into()),
            };
            let others: Vec<(String, u64)> = decode_consumers(&consumers)?
                .into_iter()
                .filter(|(name, _)| name != me)
                .collect();
            let names: Vec<String> = others.iter().map(|(name, _)| name.clone()).collect();
            let alive = client.consumers_alive(&names).await?;
            for ((name, pending), alive) in others.into_iter().zip(alive) {
                if alive {
                    continue;
                }
                if pending > 0 {
                    let pending_ids: Vec<Value> = redis::cmd("XPENDING")
                        .arg(key)
                        .arg(&self.group)
                        .arg("-")
                        .arg("+")
                        .arg(pending.min(10_000))
                        .arg(&name)
                        .query_async(&mut conn)
                        .await?;
                    let ids: Vec<String> = pending_ids
                        .iter()
                        .filter_map(|row| match row {
                            Value::Array(fields) => fields
                                .first()
                                .and_then(|id| redis::from_redis_value::<String>(id.clone()).ok()),
                            _ => None,
                        })
                        .collect();
                    if !ids.is_empty() {
                        // The minimum idle time makes a second reaper's claim of the same
                        // entries a no-op: the first claim reset their idle time.
                        let claimed: StreamClaim = redis::cmd("XCLAIM")
                            .arg(key)
                            .arg(&self.group)
                            .arg(me)
                            .arg((ttl / 2).as_millis() as u64)
                            .arg(&ids)
                            .query_async(&mut conn)
                            .await?;
                        tracing::warn!(topic = %self.topic.name, group = %self.group, consumer = %name, entries = claimed.0.len(), "group member died holding entries; taking them over");
                        taken.extend(claimed.0.into_iter().filter_map(|id| entry_of(shard, id)));
                    }
                }
                // Remove the dead member only once it holds nothing.
                let left: Vec<Value> = redis::cmd("XPENDING")
                    .arg(key)
                    .arg(&self.group)
                    .arg("-")
                    .arg("+")
                    .arg(1)
                    .arg(&name)
                    .query_async(&mut conn)
                    .await?;
                if left.is_empty() {
                    let _: i64 = redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(key)
                        .arg(&self.group)
                        .arg(&name)
                        .query_async(&mut conn)
                        .await?;
                }
            }
        }
        let count = taken.len() as u64;
        self.state
            .lock()
            .expect("group state")
            .claimed
            .extend(taken);
        Ok(count)
    }

    async fn create(&self) -> Result<()> {
        let start = match self.start {
            StartFrom::Beginning => "0",
            StartFrom::Now => "$",
        };
        let mut conn = self.topic.client.conn().await?;
        for key in self.topic.shards.iter() {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(&self.group)
                .arg(start)
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {}
                Err(err) if err.code() == Some("BUSYGROUP") => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    async fn read_from(&self, max: usize, from: &str) -> Result<Vec<Entry>> {
        let client = &self.topic.client;
        let replies: Result<Vec<Option<StreamReadReply>>> = client
            .query_routed(self.topic.shards.iter().map(|key| {
                let mut read = cmd("XREADGROUP", "GROUP");
                read.arg(&self.group)
                    .arg(client.consumer_id())
                    .arg("COUNT")
                    .arg(max.max(1))
                    .arg("STREAMS")
                    .arg(key)
                    .arg(from);
                (key.as_str(), read)
            }))
            .await;
        let replies = match replies {
            Ok(replies) => replies,
            Err(Error::Redis(err)) if err.code() == Some("NOGROUP") => {
                // The stream or group vanished (deleted, or Redis lost its data): recreate.
                tracing::warn!(topic = %self.topic.name, group = %self.group, "subscriber group missing; re-creating it");
                self.create().await?;
                return Ok(Vec::new());
            }
            Err(err) => return Err(err),
        };
        let mut entries = Vec::new();
        for (shard, reply) in replies.into_iter().enumerate() {
            for stream in reply.into_iter().flat_map(|reply| reply.keys) {
                entries.extend(stream.ids.into_iter().filter_map(|id| entry_of(shard, id)));
            }
        }
        Ok(entries)
    }

    fn hold(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut state = self.state.lock().expect("group state");
        entries
            .into_iter()
            .filter(|entry| state.held.insert((entry.shard, entry.id.clone())))
            .collect()
    }

    async fn reap_if_due(&self) -> Result<()> {
        let interval = self.topic.client.config().reap_interval;
        let due = {
            let mut state = self.state.lock().expect("group state");
            let due = state.last_reap.is_none_or(|at| at.elapsed() >= interval);
            if due {
                state.last_reap = Some(Instant::now());
            }
            due
        };
        if due {
            self.reap().await?;
        }
        Ok(())
    }
}

/// The entries an XCLAIM returned (deleted entries come back as nil and are skipped).
struct StreamClaim(Vec<StreamId>);

impl redis::FromRedisValue for StreamClaim {
    fn from_redis_value(value: Value) -> std::result::Result<Self, redis::ParsingError> {
        let Value::Array(rows) = value else {
            return Ok(StreamClaim(Vec::new()));
        };
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let Value::Array(mut parts) = row else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop().unwrap_or(Value::Nil);
            let id: String = redis::from_redis_value(parts.pop().unwrap_or(Value::Nil))?;
            let map: HashMap<String, Value> = field_map(&fields);
            ids.push(StreamId {
                id,
                map,
                ..StreamId::default()
            });
        }
        Ok(StreamClaim(ids))
    }
}

fn entry_of(shard: usize, id: StreamId) -> Option<Entry> {
    let body = match id.map.get("b") {
        Some(Value::BulkString(bytes)) => Bytes::from(bytes.clone()),
        _ => return None,
    };
    Some(Entry {
        shard,
        id: id.id,
        body,
    })
}

fn field_map(value: &Value) -> HashMap<String, Value> {
    let mut map = HashMap::new();
    match value {
        Value::Array(fields) => {
            for pair in fields.chunks(2) {
                if let [name, value] = pair {
                    if let Ok(name) = redis::from_redis_value::<String>(name.clone()) {
                        map.insert(name, value.clone());
                    }
                }
            }
        }
        Value::Map(pairs) => {
            for (name, value) in pairs {
                if let Ok(name) = redis::from_redis_value::<String>(name.clone()) {
                    map.insert(name, value.clone());
                }
            }
        }
        _ => {}
    }
    map
}

fn decode_groups(value: &Value) -> Result<Vec<GroupBacklog>> {
    let Value::Array(groups) = value else {
        return Ok(Vec::new());
    };
    groups
        .iter()
        .map(|group| {
            let fields = field_map(group);
            let text = |name: &str| -> Result<String> {
                fields
                    .get(name)
                    .cloned()
                    .map(redis::from_redis_value::<String>)
                    .transpose()
                    .map_err(|err| Error::decode("XINFO GROUPS", err))?
                    .ok_or_else(|| Error::decode("XINFO GROUPS", format!("no {name}")))
            };
            let number = |name: &str| -> Option<u64> {
                fields
                    .get(name)
                    .cloned()
                    .and_then(|value| redis::from_redis_value::<u64>(value).ok())
            };
            Ok(GroupBacklog {
                group: text("name")?,
                pending: number("pending").unwrap_or(0),
                lag: number("lag"),
                // Redis leaves it unset for a group that has not read yet.
                entries_read: number("entries-read").or_else(|| {
                    fields
                        .get("last-delivered-id")
                        .cloned()
                        .and_then(|id| redis::from_redis_value::<String>(id).ok())
                        .is_some_and(|id| id == "0-0")
                        .then_some(0)
                }),
            })
        })
        .collect()
}

fn decode_consumers(value: &Value) -> Result<Vec<(String, u64)>> {
    let Value::Array(consumers) = value else {
        return Ok(Vec::new());
    };
    consumers
        .iter()
        .map(|consumer| {
            let fields = field_map(consumer);
            let name = fields
                .get("name")
                .cloned()
                .map(redis::from_redis_value::<String>)
                .transpose()
                .map_err(|err| Error::decode("XINFO CONSUMERS", err))?
                .ok_or_else(|| Error::decode("XINFO CONSUMERS", "no name"))?;
            let pending = fields
                .get("pending")
                .cloned()
                .and_then(|value| redis::from_redis_value::<u64>(value).ok())
                .unwrap_or(0);
            Ok((name, pending))
        })
        .collect()
}
