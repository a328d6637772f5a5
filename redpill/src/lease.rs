//! Leases with fencing epochs, and the fenced write that Redis itself rejects when stale.

use std::time::Duration;

use redis::{ToRedisArgs, Value};

use crate::client::Client;
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
        let mut conn = self.client.conn();
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
        let mut conn = self.client.conn();
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
        let mut conn = self.client.conn();
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
        let mut pipe = redis::pipe();
        for lease in leases {
            pipe.get(&lease.key).pttl(&lease.key);
        }
        let mut conn = first.client.conn();
        let replies: Vec<(Option<String>, i64)> = pipe.query_async(&mut conn).await?;
        Ok(replies
            .into_iter()
            .map(|(holder, remaining)| {
                holder
                    .as_deref()
                    .and_then(Grant::parse)
                    .map(|grant| (grant, Duration::from_millis(remaining.max(0) as u64)))
            })
            .collect())
    }

    /// A batch of writes that Redis applies only while `grant` holds this lease, all or none,
    /// in one round trip.
    pub fn fenced(&self, grant: &Grant) -> FencedWrite {
        FencedWrite {
            client: self.client.clone(),
            lease: self.name.clone(),
            epoch: grant.epoch,
            keys: vec![self.key.clone()],
            args: vec![grant.token().into_bytes()],
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
    args: Vec<Vec<u8>>,
    writes: usize,
    /// Queues and ids acked by the batch, forgotten by their handles once it commits.
    acked: Vec<(Queue, Vec<String>)>,
}

impl FencedWrite {
    /// Adds `command key args...`. Allowed commands: SET, DEL, HSET, HDEL, HINCRBY,
    /// HINCRBYFLOAT, RPUSH, LPUSH, LTRIM, XADD, ZADD, ZREM, SADD, SREM, INCRBY, PEXPIRE.
    pub fn write(mut self, command: &str, key: &str, args: impl ToRedisArgs) -> Self {
        let index = self.key_index(key);
        let args = args.to_redis_args();
        self.args.push(command.as_bytes().to_vec());
        self.args.push(index.to_string().into_bytes());
        self.args.push(args.len().to_string().into_bytes());
        self.args.extend(args);
        self.writes += 1;
        self
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
        let wake = topic.wake_channel().to_owned();
        let mut args: Vec<&[u8]> = Vec::with_capacity(bodies.len() + 1);
        args.push(b"b");
        args.extend(bodies.iter().map(AsRef::as_ref));
        self.write("XADDS", &key, args).publish(&wake, "1")
    }

    /// The KEYS index (1-based) of `key`, adding it if new.
    fn key_index(&mut self, key: &str) -> usize {
        match self.keys.iter().position(|known| known == key) {
            Some(index) => index + 1,
            None => {
                self.keys.push(key.to_owned());
                self.keys.len()
            }
        }
    }

    /// Adds a PUBLISH (a wake-up hint or a live message) to run only if the writes apply.
    pub fn publish(mut self, channel: &str, message: impl ToRedisArgs) -> Self {
        let message = message.to_redis_args();
        self.args.push(b"PUBLISH".to_vec());
        self.args.push(b"0".to_vec());
        self.args.push((message.len() + 1).to_string().into_bytes());
        self.args.push(channel.as_bytes().to_vec());
        self.args.extend(message);
        self.writes += 1;
        self
    }

    /// Pushes `(id, body)` messages onto `queue` (same tag as the lease) as part of the
    /// batch. Unlike [`Queue::push_with_ids`] there is no bound and no duplicate check: the
    /// fence is what makes the batch happen once.
    pub fn push(self, queue: &Queue, messages: &[(&str, &[u8])]) -> Self {
        if messages.is_empty() {
            return self;
        }
        let (waiting, body, wake) = queue.push_keys();
        let mut fields: Vec<&[u8]> = Vec::with_capacity(messages.len() * 2);
        let mut ids: Vec<&str> = Vec::with_capacity(messages.len());
        for (id, payload) in messages {
            fields.push(id.as_bytes());
            fields.push(payload);
            ids.push(id);
        }
        let wake = wake.to_owned();
        self.write("HSET", body, fields)
            .write("RPUSH", waiting, ids)
            .publish(&wake, "1")
    }

    /// Acknowledges `ids`, held in flight by this client in `queue` (same tag as the lease),
    /// as part of the batch — and makes the whole batch conditional on every one of them
    /// still being held: if any was re-queued meanwhile (this client was taken for dead),
    /// nothing is written and `commit` fails with [`Error::NotHeld`].
    pub fn ack<S: AsRef<str>>(mut self, queue: &Queue, ids: &[S]) -> Self {
        if ids.is_empty() {
            return self;
        }
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        self.acked.push((
            queue.clone(),
            ids.iter().map(|id| (*id).to_owned()).collect(),
        ));
        let keys = queue.ack_keys();
        let body = self.key_index(keys.body).to_string();
        let attempts = self.key_index(keys.attempts).to_string();
        self.write("ACK", keys.in_flight, (body, attempts, &ids))
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
        self.write("RPUSH", &dead, record)
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
        self.write("RPUSH", &key, records)
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
    pub async fn commit(self) -> Result<Vec<Value>> {
        debug_assert_one_slot("fenced write", &self.keys);
        let mut conn = self.client.conn();
        let reply: Vec<Value> =
            scripts::run(&mut conn, &scripts::FENCED_WRITE, &self.keys, &self.args).await?;
        let mut reply = reply.into_iter();
        match reply.next() {
            Some(Value::Int(1)) => {
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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
