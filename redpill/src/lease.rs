//! Leases with fencing epochs, and the fenced write that Redis itself rejects when stale.

use std::collections::HashMap;
use std::time::Duration;

use redis::{ToRedisArgs, Value};

use crate::client::{cmd, Client};
use crate::error::{Error, Result};
use crate::keys::{debug_assert_one_slot, Tag};
use crate::outbox::Outbox;
use crate::queue::Queue;
use crate::scripts;
use crate::topic::Topic;

/// A named lease under a tag: at most one holder at a time, each grant with a strictly
/// larger epoch than the last (INCR), expiring unless renewed.
#[derive(Clone)]
pub struct Lease {
    client: Client,
    name: String,
    key: String,
    epoch_key: String,
}

/// One grant of a lease: who holds it and at which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token: larger than every earlier grant's.
    pub epoch: u64,
    /// The holder named at acquire.
    pub owner: String,
}

impl Grant {
    fn token(&self) -> String {
        format!("{} {}", self.epoch, self.owner)
    }

    fn parse(text: &str) -> Option<Grant> {
        let (epoch, owner) = text.split_once(' ')?;
        Some(Grant {
            epoch: epoch.parse().ok()?,
            owner: owner.to_owned(),
        })
    }
}

/// What acquiring found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is ours, with this grant.
    Granted(Grant),
    /// Another owner holds it, for about this much longer.
    HeldBy(Grant, Duration),
}

impl Lease {
    /// Lease `name` under `tag`. Writes fenced by it must touch keys of the same tag.
    pub fn new(client: &Client, tag: &Tag, name: &str) -> Lease {
        Lease {
            client: client.clone(),
            name: format!("{{{tag}}}:{name}"),
            key: client.keys().lease(tag, name),
            epoch_key: client.keys().lease_epoch(tag, name),
        }
    }

    /// The lease's display name, `{tag}:name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the lease for `owner` for `ttl` unless another owner holds it.
    pub async fn acquire(&self, owner: &str, ttl: Duration) -> Result<Acquired> {
        if owner.is_empty() || owner.contains(' ') {
            return Err(Error::Invalid(format!(
                "a lease owner must be non-empty and free of spaces: {owner:?}"
            )));
        }
        let mut conn = self.client.conn().await?;
        let reply: Vec<Value> = scripts::run(
            &mut conn,
            &scripts::LEASE_ACQUIRE,
            &[&self.key, &self.epoch_key],
            (owner, ttl_ms(ttl)),
        )
        .await?;
        let number = |value: &Value| -> Result<i64> {
            redis::from_redis_value_ref(value).map_err(|err| Error::decode("lease reply", err))
        };
        match reply.as_slice() {
            [granted, epoch] if number(granted)? == 1 => Ok(Acquired::Granted(Grant {
                epoch: number(epoch)? as u64,
                owner: owner.to_owned(),
            })),
            [_, holder, remaining] => {
                let holder: String = redis::from_redis_value_ref(holder)
                    .map_err(|err| Error::decode("lease holder", err))?;
                let holder = Grant::parse(&holder)
                    .ok_or_else(|| Error::decode("lease holder", holder.clone()))?;
                Ok(Acquired::HeldBy(
                    holder,
                    Duration::from_millis(number(remaining)?.max(0) as u64),
                ))
            }
            _ => Err(Error::decode("lease reply", format!("{reply:?}"))),
        }
    }

    /// Extends `grant` by `ttl` from now. Returns false when the grant no longer holds the
    /// lease (it expired or another grant took it): stop acting on it.
    pub async fn renew(&self, grant: &Grant, ttl: Duration) -> Result<bool> {
        let mut conn = self.client.conn().await?;
        let renewed: i64 = scripts::run(
            &mut conn,
            &scripts::LEASE_RENEW,
            &[&self.key],
            (grant.token(), ttl_ms(ttl)),
        )
        .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up so another owner can take it at once. Returns false when `grant`
    /// no longer held it.
    pub async fn release(&self, grant: &Grant) -> Result<bool> {
        let mut conn = self.client.conn().await?;
        let released: i64 = scripts::run(
            &mut conn,
            &scripts::LEASE_RELEASE,
            &[&self.key],
            grant.token(),
        )
        .await?;
        Ok(released == 1)
    }

    /// The holder key and the token a fenced script compares it with.
    pub(crate) fn fence_of(&self, grant: &Grant) -> (String, String) {
        (self.key.clone(), grant.token())
    }

    /// The current holder and the time left, if any.
    pub async fn holder(&self) -> Result<Option<(Grant, Duration)>> {
        let mut holders = Lease::holders(std::slice::from_ref(self)).await?;
        Ok(holders.pop().flatten())
    }

    /// [`Lease::holder`] of each of `leases` (all of one client), in one round trip.
    pub async fn holders(leases: &[Lease]) -> Result<Vec<Option<(Grant, Duration)>>> {
        let Some(first) = leases.first() else {
            return Ok(Vec::new());
        };
        let replies: Vec<Value> = first
            .client
            .query_routed(leases.iter().flat_map(|lease| {
                [
                    (lease.key.as_str(), cmd("GET", &lease.key)),
                    (lease.key.as_str(), cmd("PTTL", &lease.key)),
                ]
            }))
            .await?;
        replies
            .chunks(2)
            .map(|reply| {
                let holder: Option<String> = redis::from_redis_value(reply[0].clone())
                    .map_err(|err| Error::decode("lease holder", err))?;
                let remaining: i64 = redis::from_redis_value(reply[1].clone())
                    .map_err(|err| Error::decode("lease time to live", err))?;
                Ok(holder
                    .as_deref()
                    .and_then(Grant::parse)
                    .map(|grant| (grant, Duration::from_millis(remaining.max(0) as u64))))
            })
            .collect()
    }

    /// A batch of writes that Redis applies only while `grant` holds this lease, all or none,
    /// in one round trip.
    pub fn fenced(&self, grant: &Grant) -> FencedWrite {
        FencedWrite {
            client: self.client.clone(),
            lease: self.name.clone(),
            epoch: grant.epoch,
            keys: vec![self.key.clone()],
            key_indexes: HashMap::from([(self.key.clone(), 1)]),
            args: Args::new(grant.token().as_bytes()),
            writes: 0,
            acked: Vec::new(),
        }
    }
}

/// Writes guarded by a lease grant, applied atomically by one Lua script that first checks
/// the grant still holds the lease. Every key must share the lease's hash tag.
pub struct FencedWrite {
    client: Client,
    lease: String,
    epoch: u64,
    keys: Vec<String>,
    /// Where each key is in `keys`, 1-based as KEYS: a batch names hundreds of keys (two per
    /// node it changes), too many to search the list for each write.
    key_indexes: HashMap<String, usize>,
    args: Args,
    writes: usize,
    /// Queues and ids acked by the batch, forgotten by their handles once it commits.
    acked: Vec<(Queue, Vec<String>)>,
}

impl FencedWrite {
    /// Adds `command key args...` (one of those `fenced_write.lua` allows).
    pub(crate) fn write(mut self, command: &str, key: &str, args: impl ToRedisArgs) -> Self {
        let index = self.key_index(key);
        self.args.write(command, index, args);
        self.writes += 1;
        self
    }

    /// Sets `fields` (name, value) of hash `key`.
    pub fn hash_set<V: ToRedisArgs>(self, key: &str, fields: &[(&str, V)]) -> Self {
        if fields.is_empty() {
            return self;
        }
        self.write("HSET", key, fields)
    }

    /// Removes `fields` from hash `key`.
    pub fn hash_delete(self, key: &str, fields: &[&str]) -> Self {
        if fields.is_empty() {
            return self;
        }
        self.write("HDEL", key, fields)
    }

    /// Deletes `key`, whatever it holds.
    pub fn delete(self, key: &str) -> Self {
        self.write("DEL", key, Vec::<String>::new())
    }

    /// Adds `members` to set `key`.
    pub fn set_add<M: ToRedisArgs>(self, key: &str, members: &[M]) -> Self {
        if members.is_empty() {
            return self;
        }
        self.write("SADD", key, members)
    }

    /// Removes `members` from set `key`.
    pub fn set_remove<M: ToRedisArgs>(self, key: &str, members: &[M]) -> Self {
        if members.is_empty() {
            return self;
        }
        self.write("SREM", key, members)
    }

    /// Sets `member`'s score in sorted set `key` to `score` unless it already holds a greater
    /// one (`ZADD GT`): a high-water mark that only rises.
    pub fn sorted_set_raise(self, key: &str, member: &str, score: u64) -> Self {
        self.write("ZADD", key, ("GT", score, member))
    }

    /// Appends `values` to list `key`, in order.
    pub fn list_append<V: ToRedisArgs>(self, key: &str, values: &[V]) -> Self {
        if values.is_empty() {
            return self;
        }
        self.write("RPUSH", key, values)
    }

    /// Drops the first (oldest) `count` values of list `key`.
    pub(crate) fn list_drop_first(self, key: &str, count: usize) -> Self {
        self.write("LTRIM", key, (count, -1))
    }

    /// Trims list `key` to its newest (rightmost) `count` values.
    pub fn list_keep_last(self, key: &str, count: u64) -> Self {
        let from = -(i64::try_from(count.max(1)).unwrap_or(i64::MAX));
        self.write("LTRIM", key, (from, -1))
    }

    /// Appends one entry per body to shard `shard` of `topic` (the lease's tag), as
    /// [`Topic::publish`] would but unbounded (the writer checks room with
    /// [`Topic::make_room`]), and wakes the topic's readers.
    pub fn publish_to_topic<B: AsRef<[u8]>>(
        self,
        topic: &Topic,
        shard: usize,
        bodies: &[B],
    ) -> Self {
        if bodies.is_empty() {
            return self;
        }
        let key = topic.shard_key(shard).to_owned();
        let wake = topic.wake_channel(shard).to_owned();
        let mut args: Vec<&[u8]> = Vec::with_capacity(bodies.len() + 1);
        args.push(b"b");
        args.extend(bodies.iter().map(AsRef::as_ref));
        self.write("XADDS", &key, args).publish(&wake, "1")
    }

    /// The KEYS index (1-based) of `key`, adding it if new.
    fn key_index(&mut self, key: &str) -> usize {
        if let Some(&index) = self.key_indexes.get(key) {
            return index;
        }
        self.keys.push(key.to_owned());
        self.key_indexes.insert(key.to_owned(), self.keys.len());
        self.keys.len()
    }

    /// Adds a wake-up hint to run only if the writes apply (SPUBLISH on a cluster: `channel`
    /// must hash to the slot of the lease's tag, as every wake channel of a key does).
    pub(crate) fn publish(mut self, channel: &str, message: impl ToRedisArgs) -> Self {
        // PUBLISH names no key (index 0): the channel is its first argument.
        self.args.write("PUBLISH", 0, (channel, message));
        self.writes += 1;
        self
    }

    /// Pushes `(id, body)` messages onto `queue` (same tag as the lease) as part of the
    /// batch, skipping ids still pending, as [`Queue::push_with_ids`] does, but with no bound:
    /// the writer's own queue must take what its batch forwards.
    pub fn push(mut self, queue: &Queue, messages: &[(&str, &[u8])]) -> Self {
        if messages.is_empty() {
            return self;
        }
        let (waiting, body, wake) = queue.push_keys();
        let body = self.key_index(body).to_string();
        let mut args: Vec<&[u8]> = Vec::with_capacity(messages.len() * 2 + 1);
        args.push(body.as_bytes());
        for (id, payload) in messages {
            args.push(id.as_bytes());
            args.push(payload);
        }
        let wake = wake.to_owned();
        self.write("PUSH", waiting, args).publish(&wake, "1")
    }

    /// Acknowledges `ids`, held in flight by this client in `queue` (same tag as the lease),
    /// as part of the batch — and makes the whole batch conditional on every one of them
    /// still being held: if any was re-queued meanwhile (this client was taken for dead),
    /// nothing is written and `commit` fails with [`Error::NotHeld`].
    pub fn ack<S: AsRef<str>>(mut self, queue: &Queue, ids: &[S]) -> Self {
        let Some(ids) = self.release_held(queue, ids) else {
            return self;
        };
        let keys = queue.ack_keys();
        let body = self.key_index(keys.body).to_string();
        let attempts = self.key_index(keys.attempts).to_string();
        self.write("ACK", keys.in_flight, (body, attempts, &ids))
    }

    /// Gives back `ids`, held in flight by this client in `queue` (same tag as the lease), for
    /// another attempt after the retry backoff, counting a failed attempt, as
    /// [`Queue::nack`] does short of the last attempt — as part of the batch, and on the same
    /// condition as [`FencedWrite::ack`]. The writer decides which messages are retried and
    /// which dead-lettered ([`FencedWrite::dead_letter`]).
    pub fn retry<S: AsRef<str>>(mut self, queue: &Queue, ids: &[S]) -> Self {
        let Some(ids) = self.release_held(queue, ids) else {
            return self;
        };
        let keys = queue.ack_keys();
        let attempts = self.key_index(keys.attempts).to_string();
        let delayed = self.key_index(keys.delayed).to_string();
        let config = self.client.config();
        let backoff = (
            config.retry_backoff.as_millis() as u64,
            config.retry_backoff_max.as_millis() as u64,
        );
        self.write(
            "RETRY",
            keys.in_flight,
            (attempts, delayed, backoff.0, backoff.1, &ids),
        )
    }

    /// The ids of an ack or a retry, which `queue`'s handle forgets once the batch commits;
    /// `None` when there are none.
    fn release_held<S: AsRef<str>>(&mut self, queue: &Queue, ids: &[S]) -> Option<Vec<String>> {
        if ids.is_empty() {
            return None;
        }
        let ids: Vec<String> = ids.iter().map(|id| id.as_ref().to_owned()).collect();
        self.acked.push((queue.clone(), ids.clone()));
        Some(ids)
    }

    /// Adds a dead letter for message `id` of `queue` (same tag as the lease), recorded like
    /// those [`Queue::nack`] writes, with this machine's clock as its time. Pair it with
    /// [`FencedWrite::ack`] of the same id.
    pub fn dead_letter(
        self,
        queue: &Queue,
        id: &str,
        body: &[u8],
        attempts: u32,
        error: &str,
    ) -> Self {
        let record = crate::queue::encode_dead_letter(id, body, attempts, error, unix_ms());
        let dead = queue.ack_keys().dead.clone();
        self.list_append(&dead, &[record])
    }

    /// Appends `(queue, id, body)` messages (queues of any tag) to `outbox` (the lease's tag),
    /// in order, to be delivered by [`Outbox::deliver`] after the batch commits.
    pub fn append(self, outbox: &Outbox, messages: &[(&Queue, &str, &[u8])]) -> Self {
        if messages.is_empty() {
            return self;
        }
        let records: Vec<Vec<u8>> = messages
            .iter()
            .map(|(queue, id, body)| crate::outbox::encode(queue, id, body))
            .collect();
        let key = outbox.key().to_owned();
        self.list_append(&key, &records)
    }

    /// The number of writes added so far.
    pub fn len(&self) -> usize {
        self.writes
    }

    /// True when no write was added.
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }

    /// Applies the batch. Fails with [`Error::StaleEpoch`], having written nothing, when the
    /// grant no longer holds the lease. Returns each write's reply, in order.
    ///
    /// With replica acknowledgements ([`Config::set_replica_acks`](crate::Config::set_replica_acks)),
    /// an applied batch returns only once that many replicas have it. When the first wait
    /// falls short (a master whose replica is away, as right after a failover), it waits
    /// again on the same master, five times in all, and then fails with
    /// [`Error::Unreplicated`], the batch applied on the master. An error while waiting (the
    /// master changed) leaves the batch's fate unknown: the caller reads back what Redis holds.
    pub async fn commit(self) -> Result<Vec<Value>> {
        debug_assert_one_slot("fenced write", &self.keys);
        let mut conn = self.client.conn().await?;
        let acks = self.client.replica_acks();
        let (reply, mut replicated): (Vec<Value>, Result<()>) = scripts::run_acked(
            &mut conn,
            &scripts::FENCED_WRITE,
            &self.keys,
            &self.args,
            acks,
        )
        .await?;
        let mut reply = reply.into_iter();
        match reply.next() {
            Some(Value::Int(1)) => {
                if let Some(acks) = acks {
                    let key = self.keys.first().map_or("", String::as_str);
                    let mut waits = 1;
                    while matches!(replicated, Err(Error::Unreplicated { .. }))
                        && waits < REPLICA_WAITS
                    {
                        replicated = acks.wait_again(&mut conn, key).await;
                        waits += 1;
                    }
                }
                replicated?;
                for (queue, ids) in &self.acked {
                    queue.forget(&ids.iter().map(String::as_str).collect::<Vec<_>>());
                }
                Ok(reply.collect())
            }
            Some(Value::Int(0)) => Err(Error::StaleEpoch {
                lease: self.lease,
                epoch: self.epoch,
            }),
            Some(Value::Int(2)) => Err(Error::NotHeld {
                id: reply
                    .next()
                    .and_then(|id| redis::from_redis_value::<String>(id).ok())
                    .unwrap_or_default(),
            }),
            other => Err(Error::decode("fenced write reply", format!("{other:?}"))),
        }
    }
}

/// The ARGV of a fenced write, kept in one buffer as they are added (a `redis::Cmd` used
/// as a flat list of arguments): no allocation per argument, and one copy into the
/// `EVALSHA` command that carries them (`scripts::evalsha`). Each write is `command, key index, argument count, arguments...`; the count is
/// known only once its arguments are written, so it is kept aside and put in its place when
/// the arguments are sent ([`ToRedisArgs`]).
struct Args {
    flat: redis::Cmd,
    /// Per write: the position of its count among the arguments, and the count.
    counts: Vec<(usize, usize)>,
}

impl Args {
    /// The arguments, starting with the grant's token.
    fn new(token: &[u8]) -> Args {
        let mut flat = redis::Cmd::new();
        flat.arg(token);
        Args {
            flat,
            counts: Vec::new(),
        }
    }

    /// Appends one write.
    fn write(&mut self, command: &str, key_index: usize, args: impl ToRedisArgs) {
        self.flat.arg(command).arg(key_index).arg(&[] as &[u8]);
        let slot = self.flat.args_iter().len() - 1;
        self.flat.arg(args);
        let count = self.flat.args_iter().len() - 1 - slot;
        self.counts.push((slot, count));
    }
}

impl ToRedisArgs for Args {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let mut counts = self.counts.iter().peekable();
        for (position, arg) in self.flat.args_iter().enumerate() {
            match counts.peek() {
                Some(&&(slot, count)) if slot == position => {
                    out.write_arg_fmt(count);
                    counts.next();
                }
                _ => {
                    if let redis::Arg::Simple(bytes) = arg {
                        out.write_arg(bytes);
                    }
                }
            }
        }
    }
}

/// How many times a fenced commit waits for its replicas (each up to
/// `GORGON_REPLICA_ACK_TIMEOUT_MS`) before it fails as unreplicated.
const REPLICA_WAITS: u32 = 5;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
