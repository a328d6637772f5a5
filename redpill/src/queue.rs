//! Reliable queues: batch push, atomic batch pull into an in-flight set, ack, nack with
//! backoff, dead letters, and re-queue of a dead consumer's messages at the head, in order.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::Value;

use crate::client::{cmd, Client};
use crate::error::{Error, Result};
use crate::keys::{QueueKeys, Tag};
use crate::scripts;

/// The most messages one pull may take; larger requests are clamped.
pub const MAX_PULL: usize = 1000;

/// A queue: many pushers, competing pullers, each message held by one puller at a time.
///
/// Cheap to build; the state lives in Redis. Every method is one round trip (the reaper pass
/// of [`Queue::pull_wait`] adds one every reap interval).
#[derive(Clone)]
pub struct Queue {
    client: Client,
    name: String,
    /// The tag and the short name, to address this queue from an outbox entry.
    address: Arc<(String, String)>,
    keys: Arc<QueueKeys>,
    in_flight_key: String,
    wake_channel: String,
    bound: u64,
    /// Lease holder key, grant token and lease name: pulls happen only while the grant holds.
    fence: Option<Arc<Fence>>,
    state: Arc<Mutex<PullState>>,
}

#[derive(Default)]
struct PullState {
    /// Ids delivered to this handle and not yet acked or nacked.
    held: HashSet<String>,
    /// A pull failed after it may have run in Redis: the next pull also returns this
    /// consumer's in-flight set, minus what `held` already has.
    resync: bool,
    last_reap: Option<Instant>,
    /// The wake-ups raised on the queue's channel when a pull that found fewer messages than
    /// it asked for began: while no more are raised, the queue has nothing new.
    quiet_since: Option<u64>,
}

/// One message handed to a puller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The message id (given at push, or generated).
    pub id: String,
    /// The body as pushed.
    pub body: Bytes,
    /// Failed deliveries before this one (0 the first time).
    pub attempts: u32,
}

/// What a nack did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NackOutcome {
    /// Messages scheduled for another attempt after their backoff.
    pub retried: u64,
    /// Messages that reached the last attempt and went to the dead-letter list.
    pub dead_lettered: u64,
}

/// A message that used up its attempts, with the last error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message id.
    pub id: String,
    /// The body as pushed.
    pub body: Bytes,
    /// Failed deliveries.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub error: String,
    /// When it was dead-lettered, in Unix milliseconds (Redis server time).
    pub at_ms: u64,
    /// The record as stored, which [`Queue::replay_dead_letters`] finds it by.
    record: Bytes,
}

/// What [`Queue::push_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushedOnce {
    /// The messages were pushed (this many newly queued) and the record kept.
    Queued(u64),
    /// The key was pushed before and its record still lives: nothing was pushed; the record.
    Repeated(String),
}

/// How many messages a queue holds, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting to be pulled.
    pub waiting: u64,
    /// Every message not yet acked or dead-lettered (waiting, in flight and delayed).
    pub held: u64,
    /// Waiting out a retry backoff.
    pub delayed: u64,
    /// In the dead-letter list.
    pub dead: u64,
    /// When the message at the head of the waiting list (the next to be pulled) was created,
    /// in unix ms, read from its id: a UUIDv7 as [`new_id`] makes, or an id starting with
    /// one. `None` when nothing waits or the id carries no time.
    pub oldest_ms: Option<u64>,
}

impl Queue {
    /// The queue `name` under hash tag `tag`. Everything it stores lives in the tag's slot.
    pub fn new(client: &Client, tag: &Tag, name: &str) -> Queue {
        let keys = QueueKeys::new(client.keys().queue(tag, name));
        let in_flight_key = keys.in_flight(client.consumer_id());
        let wake_channel = client.keys().wake(&keys.waiting);
        Queue {
            client: client.clone(),
            name: format!("queue {{{tag}}}:{name}"),
            address: Arc::new((tag.as_str().to_owned(), name.to_owned())),
            keys: Arc::new(keys),
            in_flight_key,
            wake_channel,
            bound: 0,
            fence: None,
            state: Arc::default(),
        }
    }

    /// This queue, pulled from only while `grant` holds `lease` (of the same tag): a pull by a
    /// grant that lost the lease takes nothing and fails with [`Error::StaleEpoch`]. For a
    /// queue whose consumer is its lease holder, so that a holder paused past its lease cannot
    /// take messages from the next holder when it wakes.
    pub fn fenced_by(mut self, lease: &crate::Lease, grant: &crate::Grant) -> Queue {
        let (holder_key, token) = lease.fence_of(grant);
        self.fence = Some(Arc::new(Fence {
            holder_key,
            token,
            lease: lease.name().to_owned(),
            epoch: grant.epoch,
        }));
        self
    }

    /// Refuse pushes that would make the queue hold more than `bound` messages
    /// ([`Error::Full`], retryable). 0 (the default) means unbounded.
    pub fn with_bound(mut self, bound: u64) -> Queue {
        self.bound = bound;
        self
    }

    /// The queue's display name, `queue {tag}:name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pushes bodies with fresh ids (UUIDv7, time-ordered) and returns the ids in order.
    pub async fn push<B: AsRef<[u8]>>(&self, bodies: &[B]) -> Result<Vec<String>> {
        let ids: Vec<String> = bodies.iter().map(|_| new_id()).collect();
        let messages: Vec<(&str, &[u8])> = ids
            .iter()
            .zip(bodies)
            .map(|(id, body)| (id.as_str(), body.as_ref()))
            .collect();
        self.push_with_ids(&messages).await?;
        Ok(ids)
    }

    /// Pushes `(id, body)` pairs in order, in one round trip. An id that is still pending in
    /// this queue is skipped, so retrying a push whose reply was lost never queues a message
    /// twice. Returns how many were newly queued.
    pub async fn push_with_ids(&self, messages: &[(&str, &[u8])]) -> Result<u64> {
        match self.push_script(messages, None).await? {
            PushedOnce::Queued(added) => Ok(added),
            // Only a push with a key can be a repeat.
            PushedOnce::Repeated(_) => Ok(0),
        }
    }

    /// Pushes like [`Queue::push_with_ids`], once per `key` for `ttl`: the push keeps
    /// `record` under `key` in the same atomic step, and a push with the same key while the
    /// record lives adds nothing and returns [`PushedOnce::Repeated`] with it (also when the
    /// queue is full), however long ago its messages were acked. For callers that let their
    /// clients retry a push whose reply was lost: the record holds what to answer them.
    pub async fn push_once(
        &self,
        key: &str,
        ttl: Duration,
        record: &str,
        messages: &[(&str, &[u8])],
    ) -> Result<PushedOnce> {
        if key.is_empty() {
            return Err(Error::Invalid("a push key must not be empty".to_owned()));
        }
        self.push_script(messages, Some((key, ttl, record))).await
    }

    async fn push_script(
        &self,
        messages: &[(&str, &[u8])],
        once: Option<(&str, Duration, &str)>,
    ) -> Result<PushedOnce> {
        if messages.is_empty() {
            return Ok(PushedOnce::Queued(0));
        }
        let ttl_ms = once
            .map_or(0, |(_, ttl, _)| ttl.as_millis().max(1))
            .to_string();
        let record = once.map_or("", |(_, _, record)| record);
        let mut args: Vec<&[u8]> = Vec::with_capacity(messages.len() * 2 + 2);
        args.push(ttl_ms.as_bytes());
        args.push(record.as_bytes());
        for (id, body) in messages {
            if id.is_empty() {
                return Err(Error::Invalid("a message id must not be empty".to_owned()));
            }
            args.push(id.as_bytes());
            args.push(body);
        }
        let once_key = once.map(|(key, _, _)| self.keys.once(key));
        let mut keys = vec![&self.keys.waiting, &self.keys.body];
        keys.extend(once_key.as_ref());
        let mut conn = self.client.conn().await?;
        let ((added, held, record), replicated): ((i64, u64, String), Result<()>) =
            scripts::run_acked(
                &mut conn,
                &scripts::QUEUE_PUSH,
                &keys,
                (self.bound, &self.wake_channel, args),
                self.client.replica_acks(),
            )
            .await?;
        match added {
            // A repeat is acknowledged as the first push would have been: once the replicas
            // have all the master has, the first push among it (that one may have failed
            // its own wait).
            -2 => replicated.map(|()| PushedOnce::Repeated(record)),
            added if added < 0 => Err(Error::Full {
                name: self.name.clone(),
                len: held,
                max: self.bound,
            }),
            // Queued: acknowledged once the replicas asked for have it.
            added => replicated.map(|()| PushedOnce::Queued(added as u64)),
        }
    }

    /// Pushes batches onto several queues in one round trip, each batch as
    /// [`Queue::push_with_ids`] would (pending ids skipped, so a retry is safe). Queues are
    /// usually of different tags; bounds are not applied. Returns how many were newly queued
    /// per batch.
    pub async fn push_many(client: &Client, batches: &[QueueBatch<'_>]) -> Result<Vec<u64>> {
        let invocations: Vec<(Vec<String>, Vec<Vec<u8>>)> = batches
            .iter()
            .filter(|(_, messages)| !messages.is_empty())
            .map(|(queue, messages)| {
                let mut args = vec![
                    b"0".to_vec(),
                    queue.wake_channel.as_bytes().to_vec(),
                    b"0".to_vec(),
                    Vec::new(),
                ];
                for (id, body) in messages {
                    args.push(id.as_bytes().to_vec());
                    args.push(body.to_vec());
                }
                (
                    vec![queue.keys.waiting.clone(), queue.keys.body.clone()],
                    args,
                )
            })
            .collect();
        if invocations.is_empty() {
            return Ok(Vec::new());
        }
        let conn = client.conn().await?;
        let replies: Vec<(i64, u64, String)> = scripts::run_many(
            &conn,
            &scripts::QUEUE_PUSH,
            &invocations,
            client.replica_acks(),
        )
        .await?;
        Ok(replies
            .into_iter()
            .map(|(added, _, _)| added.max(0) as u64)
            .collect())
    }

    /// Takes up to `max` messages (at most [`MAX_PULL`]) from the head into this consumer's
    /// in-flight set, atomically. Returns at once, possibly with nothing.
    pub async fn pull(&self, max: usize) -> Result<Vec<Delivery>> {
        let resync = self.state.lock().expect("queue state").resync;
        let mut conn = self.client.conn().await?;
        let mut keys = vec![
            &self.keys.waiting,
            &self.keys.body,
            &self.keys.attempts,
            &self.keys.delayed,
            &self.in_flight_key,
            &self.keys.who,
        ];
        let token = self.fence.as_ref().map(|fence| {
            keys.push(&fence.holder_key);
            fence.token.as_str()
        });
        let reply: redis::RedisResult<Vec<Value>> = scripts::run(
            &mut conn,
            &scripts::QUEUE_PULL,
            &keys,
            (
                max.clamp(1, MAX_PULL),
                self.client.consumer_id(),
                if resync { "1" } else { "0" },
                token,
            ),
        )
        .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) if err.code() == Some("STALE") => {
                let fence = self.fence.as_ref().expect("only a fenced pull is stale");
                return Err(Error::StaleEpoch {
                    lease: fence.lease.clone(),
                    epoch: fence.epoch,
                });
            }
            Err(err) => {
                // The script may have run and its reply been lost: those messages sit in our
                // in-flight set. Ask for the set with the next pull.
                self.state.lock().expect("queue state").resync = true;
                return Err(err.into());
            }
        };
        let (resynced, deliveries) = decode_deliveries(reply)?;
        let mut state = self.state.lock().expect("queue state");
        state.resync = false;
        // Of the in-flight set returned after a lost reply, keep only what the caller never
        // got; everything freshly pulled is new to the caller even if its id was held before
        // (a message re-queued and pulled again).
        Ok(deliveries
            .into_iter()
            .enumerate()
            .filter(|(index, delivery)| {
                let fresh = state.held.insert(delivery.id.clone());
                fresh || *index >= resynced
            })
            .map(|(_, delivery)| delivery)
            .collect())
    }

    /// Like [`Queue::pull`], but when the queue is empty waits up to `timeout` for messages,
    /// woken by pushes (and polling every poll interval in case a wake-up is lost).
    /// Also re-queues the in-flight messages of dead consumers once per reap interval.
    ///
    /// After a pull that emptied the queue, the next call does not ask Redis again until a
    /// push (or a re-queue) has been published: at low rates that saves a round trip and a
    /// script per batch. Messages that come back without a hint, such as retries whose
    /// backoff ends, are pulled within a poll interval.
    pub async fn pull_wait(&self, max: usize, timeout: Duration) -> Result<Vec<Delivery>> {
        let max = max.clamp(1, MAX_PULL);
        let quiet_since = self.state.lock().expect("queue state").quiet_since.take();
        let waited = self
            .client
            .wait_for(
                std::slice::from_ref(&self.wake_channel),
                timeout,
                quiet_since,
                || async {
                    self.reap_if_due().await?;
                    self.pull(max).await
                },
            )
            .await?;
        if waited.found.len() < max {
            self.state.lock().expect("queue state").quiet_since = Some(waited.raised);
        }
        Ok(waited.found)
    }

    /// Acknowledges messages this consumer holds. Returns the ids that were no longer held
    /// (already acked, or re-queued because this consumer was taken for dead); their bodies
    /// are left for whoever holds them now.
    pub async fn ack<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        let mut conn = self.client.conn().await?;
        let missing: Vec<String> = scripts::run(
            &mut conn,
            &scripts::QUEUE_ACK,
            &[&self.in_flight_key, &self.keys.body, &self.keys.attempts],
            &ids,
        )
        .await?;
        self.forget(&ids);
        Ok(missing)
    }

    /// Gives messages back after a failure: each is retried after a backoff that doubles per
    /// failed attempt, or dead-lettered with `error` when it reaches the attempt limit.
    pub async fn nack<S: AsRef<str>>(&self, ids: &[S], error: &str) -> Result<NackOutcome> {
        if ids.is_empty() {
            return Ok(NackOutcome::default());
        }
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        let config = self.client.config();
        let mut conn = self.client.conn().await?;
        let (retried, dead_lettered): (u64, u64) = scripts::run(
            &mut conn,
            &scripts::QUEUE_NACK,
            &[
                &self.in_flight_key,
                &self.keys.body,
                &self.keys.attempts,
                &self.keys.delayed,
                &self.keys.dead,
            ],
            (
                config.max_attempts,
                config.retry_backoff.as_millis() as u64,
                config.retry_backoff_max.as_millis() as u64,
                error,
                &ids,
            ),
        )
        .await?;
        self.forget(&ids);
        Ok(NackOutcome {
            retried,
            dead_lettered,
        })
    }

    /// Hands back everything this consumer holds, at the head and in order, without counting
    /// an attempt: the graceful-shutdown path. Returns how many were handed back.
    pub async fn release(&self) -> Result<u64> {
        let consumer = self.client.consumer_id().to_owned();
        let (requeued, _) = self.requeue(&[consumer], false, "").await?;
        self.state.lock().expect("queue state").held.clear();
        Ok(requeued)
    }

    /// Re-queues the in-flight messages of every consumer of this queue whose heartbeat has
    /// expired, at the head and in pull order, counting one failed attempt each (a message
    /// that keeps killing its consumer ends in the dead-letter list). Returns how many
    /// messages were re-queued.
    pub async fn reap(&self) -> Result<u64> {
        let consumers = self.client.read_set(&self.keys.who).await?;
        if consumers.is_empty() {
            return Ok(0);
        }
        let alive = self.client.consumers_alive(&consumers).await?;
        let dead: Vec<String> = consumers
            .into_iter()
            .zip(alive)
            .filter_map(|(consumer, alive)| (!alive).then_some(consumer))
            .collect();
        if dead.is_empty() {
            return Ok(0);
        }
        let reason = format!(
            "consumer {} stopped heartbeating while holding the message",
            dead.join(", ")
        );
        let (requeued, dead_lettered) = self.requeue(&dead, true, &reason).await?;
        if requeued + dead_lettered > 0 {
            tracing::warn!(queue = %self.name, consumers = ?dead, requeued, dead_lettered, "consumers died holding messages; re-queued them at the head");
        }
        Ok(requeued)
    }

    /// Re-queues what every *other* consumer holds in flight, at the head and in pull order,
    /// counting one failed attempt each, whether or not their heartbeats have expired: for a
    /// new owner of a queue whose previous owner lost its lease, so that the previous
    /// owner's messages are processed again before anything newer. Returns how many.
    pub async fn take_over(&self) -> Result<u64> {
        let consumers = self.client.read_set(&self.keys.who).await?;
        let others: Vec<String> = consumers
            .into_iter()
            .filter(|consumer| consumer != self.client.consumer_id())
            .collect();
        if others.is_empty() {
            return Ok(0);
        }
        let reason = format!(
            "its previous owner ({}) lost the queue while holding the message",
            others.join(", ")
        );
        let (requeued, dead_lettered) = self.requeue(&others, true, &reason).await?;
        if requeued + dead_lettered > 0 {
            tracing::info!(queue = %self.name, previous = ?others, requeued, dead_lettered, "took over in-flight messages of the previous owner");
        }
        Ok(requeued)
    }

    /// How many messages the queue holds, by state.
    pub async fn depth(&self) -> Result<QueueDepth> {
        let mut depths = Queue::depths(std::slice::from_ref(self)).await?;
        Ok(depths.pop().unwrap_or_default())
    }

    /// [`Queue::depth`] of each of `queues` (all of one client), in one round trip.
    pub async fn depths(queues: &[Queue]) -> Result<Vec<QueueDepth>> {
        let Some(first) = queues.first() else {
            return Ok(Vec::new());
        };
        let replies: Vec<Value> = first
            .client
            .query_routed(queues.iter().flat_map(|queue| {
                let keys = &queue.keys;
                let mut head = cmd("LINDEX", &keys.waiting);
                head.arg(0);
                [
                    (keys.waiting.as_str(), cmd("LLEN", &keys.waiting)),
                    (keys.waiting.as_str(), cmd("HLEN", &keys.body)),
                    (keys.waiting.as_str(), cmd("ZCARD", &keys.delayed)),
                    (keys.waiting.as_str(), cmd("LLEN", &keys.dead)),
                    (keys.waiting.as_str(), head),
                ]
            }))
            .await?;
        replies
            .chunks(5)
            .map(|reply| {
                let count = |value: &Value| -> Result<u64> {
                    redis::from_redis_value(value.clone())
                        .map_err(|err| Error::decode("queue depth", err))
                };
                let head: Option<String> = redis::from_redis_value(reply[4].clone())
                    .map_err(|err| Error::decode("queue head", err))?;
                Ok(QueueDepth {
                    waiting: count(&reply[0])?,
                    held: count(&reply[1])?,
                    delayed: count(&reply[2])?,
                    dead: count(&reply[3])?,
                    oldest_ms: head.as_deref().and_then(id_time_ms),
                })
            })
            .collect()
    }

    /// Up to `count` dead letters from position `start` (0 = the oldest).
    pub async fn dead_letters(&self, start: u64, count: u64) -> Result<Vec<DeadLetter>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.client.conn().await?;
        let records: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&self.keys.dead)
            .arg(start)
            .arg(start + count - 1)
            .query_async(&mut conn)
            .await?;
        records
            .iter()
            .map(|record| decode_dead_letter(record))
            .collect()
    }

    /// Moves up to `count` dead letters, oldest first, back to the tail of the queue with a
    /// fresh attempt count. Returns their ids.
    pub async fn replay_dead(&self, count: u64) -> Result<Vec<String>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.client.conn().await?;
        let ids: Vec<String> = scripts::run(
            &mut conn,
            &scripts::QUEUE_REPLAY_DEAD,
            &[
                &self.keys.dead,
                &self.keys.waiting,
                &self.keys.body,
                &self.keys.attempts,
            ],
            (count, &self.wake_channel),
        )
        .await?;
        Ok(ids)
    }

    /// Moves these dead letters (as read by [`Queue::dead_letters`]) back to the tail of the
    /// queue with a fresh attempt count, in order. One that left the dead-letter list
    /// meanwhile is skipped. Returns the ids replayed.
    pub async fn replay_dead_letters(&self, letters: &[DeadLetter]) -> Result<Vec<String>> {
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(letters.len() * 2 + 1);
        args.push(self.wake_channel.as_bytes());
        for letter in letters {
            args.push(&letter.record);
            args.push(letter.id.as_bytes());
        }
        let mut conn = self.client.conn().await?;
        let ids: Vec<String> = scripts::run(
            &mut conn,
            &scripts::QUEUE_REPLAY_RECORDS,
            &[
                &self.keys.dead,
                &self.keys.waiting,
                &self.keys.body,
                &self.keys.attempts,
            ],
            args,
        )
        .await?;
        Ok(ids)
    }

    /// The tag and short name.
    pub(crate) fn address(&self) -> (&str, &str) {
        (&self.address.0, &self.address.1)
    }

    /// The keys a fenced write needs to acknowledge messages of this client.
    pub(crate) fn ack_keys(&self) -> AckKeys<'_> {
        AckKeys {
            in_flight: &self.in_flight_key,
            body: &self.keys.body,
            attempts: &self.keys.attempts,
            delayed: &self.keys.delayed,
            dead: &self.keys.dead,
        }
    }

    /// The keys a fenced write needs to push onto this queue: waiting list, body hash and
    /// wake channel.
    pub(crate) fn push_keys(&self) -> (&str, &str, &str) {
        (&self.keys.waiting, &self.keys.body, &self.wake_channel)
    }

    async fn requeue(
        &self,
        consumers: &[String],
        count_attempt: bool,
        reason: &str,
    ) -> Result<(u64, u64)> {
        let config = self.client.config();
        let mut keys = vec![
            self.keys.waiting.clone(),
            self.keys.body.clone(),
            self.keys.attempts.clone(),
            self.keys.dead.clone(),
            self.keys.who.clone(),
        ];
        keys.extend(
            consumers
                .iter()
                .map(|consumer| self.keys.in_flight(consumer)),
        );
        let mut conn = self.client.conn().await?;
        let outcome: (u64, u64) = scripts::run(
            &mut conn,
            &scripts::QUEUE_REQUEUE,
            &keys,
            (
                if count_attempt { "1" } else { "0" },
                config.max_attempts,
                reason,
                &self.wake_channel,
                consumers,
            ),
        )
        .await?;
        Ok(outcome)
    }

    async fn reap_if_due(&self) -> Result<()> {
        let interval = self.client.config().reap_interval;
        let due = {
            let mut state = self.state.lock().expect("queue state");
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

    /// Stops tracking `ids` as delivered to the caller (after a fenced batch acked them).
    pub(crate) fn forget(&self, ids: &[&str]) {
        let mut state = self.state.lock().expect("queue state");
        for id in ids {
            state.held.remove(*id);
        }
    }
}

/// One queue's share of [`Queue::push_many`]: `(id, body)` pairs in order.
pub type QueueBatch<'a> = (&'a Queue, Vec<(&'a str, &'a [u8])>);

/// The lease a fenced queue's pulls are conditional on; see [`Queue::fenced_by`].
struct Fence {
    /// The lease's holder key, compared inside the pull script.
    holder_key: String,
    /// The grant's `"<epoch> <owner>"`.
    token: String,
    /// The lease's name and the grant's epoch, for the error.
    lease: String,
    epoch: u64,
}

/// See [`Queue::ack_keys`].
pub(crate) struct AckKeys<'a> {
    pub(crate) in_flight: &'a String,
    pub(crate) body: &'a String,
    pub(crate) attempts: &'a String,
    pub(crate) delayed: &'a String,
    pub(crate) dead: &'a String,
}

/// The dead-letter record the Lua scripts write, for writers outside them.
pub(crate) fn encode_dead_letter(
    id: &str,
    body: &[u8],
    attempts: u32,
    error: &str,
    at_ms: u64,
) -> Vec<u8> {
    let mut record = format!(
        "v1\n{}\n{}\n{attempts}\n{at_ms}\n{id}{error}",
        id.len(),
        error.len()
    )
    .into_bytes();
    record.extend_from_slice(body);
    record
}

/// A fresh message id: a UUIDv7 in simple (32 hex digit) form, ordered by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The creation time, in unix ms, of a message id that is or starts with a UUIDv7 in simple
/// form ([`new_id`]; forwarded messages append `.<suffix>` to one).
pub fn id_time_ms(id: &str) -> Option<u64> {
    let uuid = uuid::Uuid::try_parse(id.get(..32)?).ok()?;
    if uuid.get_version_num() != 7 {
        return None;
    }
    let (seconds, nanos) = uuid.get_timestamp()?.to_unix();
    Some(seconds * 1_000 + u64::from(nanos) / 1_000_000)
}

/// Decodes a pull reply (see queue_pull.lua): how many deliveries came from the in-flight
/// set, then the deliveries, in order. Ids without a body were acked or dead-lettered
/// meanwhile and are skipped.
fn decode_deliveries(reply: Vec<Value>) -> Result<(usize, Vec<Delivery>)> {
    let mut values = reply.into_iter();
    let resync_groups: usize = values
        .next()
        .map(redis::from_redis_value)
        .transpose()
        .map_err(|err| Error::decode("pulled messages", err))?
        .unwrap_or(0);
    if !values.len().is_multiple_of(3) {
        return Err(Error::decode(
            "pulled messages",
            "reply is not id/body/attempts groups",
        ));
    }
    let mut deliveries = Vec::new();
    let mut resynced = 0;
    let mut group = 0;
    while let (Some(ids), Some(bodies), Some(attempts)) =
        (values.next(), values.next(), values.next())
    {
        let ids: Vec<String> =
            redis::from_redis_value(ids).map_err(|err| Error::decode("message ids", err))?;
        let bodies: Vec<Option<Vec<u8>>> =
            redis::from_redis_value(bodies).map_err(|err| Error::decode("message bodies", err))?;
        let attempts: Vec<Option<u32>> = redis::from_redis_value(attempts)
            .map_err(|err| Error::decode("attempt counts", err))?;
        if bodies.len() != ids.len() || !(attempts.is_empty() || attempts.len() == ids.len()) {
            return Err(Error::decode(
                "pulled messages",
                "a group's bodies or attempt counts do not match its ids",
            ));
        }
        let before = deliveries.len();
        deliveries.reserve(ids.len());
        let mut attempts = attempts.into_iter();
        for (id, body) in ids.into_iter().zip(bodies) {
            let attempts = attempts.next().flatten().unwrap_or(0);
            if let Some(body) = body {
                deliveries.push(Delivery {
                    id,
                    body: Bytes::from(body),
                    attempts,
                });
            }
        }
        if group < resync_groups {
            resynced += deliveries.len() - before;
        }
        group += 1;
    }
    Ok((resynced, deliveries))
}

/// Parses `v1\n<id len>\n<error len>\n<attempts>\n<unix ms>\n<id><error><body>`.
fn decode_dead_letter(record: &[u8]) -> Result<DeadLetter> {
    let bad = |detail: &str| Error::decode("dead letter", detail);
    let mut fields = Vec::with_capacity(5);
    let mut pos = 0;
    for _ in 0..5 {
        let newline = record[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("truncated header"))?;
        fields.push(
            std::str::from_utf8(&record[pos..pos + newline])
                .map_err(|_| bad("header is not UTF-8"))?,
        );
        pos += newline + 1;
    }
    if fields[0] != "v1" {
        return Err(bad("unknown record version"));
    }
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| bad("header field is not a number"))
    };
    let id_len = number(fields[1])? as usize;
    let error_len = number(fields[2])? as usize;
    let attempts = number(fields[3])? as u32;
    let at_ms = number(fields[4])?;
    if record.len() < pos + id_len + error_len {
        return Err(bad("shorter than its header says"));
    }
    let id = String::from_utf8_lossy(&record[pos..pos + id_len]).into_owned();
    let error =
        String::from_utf8_lossy(&record[pos + id_len..pos + id_len + error_len]).into_owned();
    let body = Bytes::copy_from_slice(&record[pos + id_len + error_len..]);
    Ok(DeadLetter {
        id,
        body,
        attempts,
        error,
        at_ms,
        record: Bytes::copy_from_slice(record),
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn id_time_comes_from_uuid_v7_ids_and_their_forwarded_forms() {
        let id = super::new_id();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let at = super::id_time_ms(&id).expect("a v7 id");
        assert!(now.abs_diff(at) < 1_000, "{at} vs {now}");
        assert_eq!(super::id_time_ms(&format!("{id}.room-1")), Some(at));
        // 0x0190_0000_0000 ms = 1 717 986 918 400: a fixed v7 id decodes exactly.
        assert_eq!(
            super::id_time_ms("01900000000070008000000000000000"),
            Some(1_717_986_918_400)
        );
        assert_eq!(super::id_time_ms("m1"), None);
        assert_eq!(super::id_time_ms("0190000000004000800000000000000z"), None);
        // A v4 id carries no time.
        assert_eq!(super::id_time_ms("01900000000040008000000000000000"), None);
    }

    use super::*;

    /// The dead-letter record written by the Lua scripts reads back field for field, and the
    /// Rust encoder writes the same bytes.
    #[test]
    fn dead_letter_record_round_trips() {
        assert_eq!(
            encode_dead_letter("abc", b"{\"x\":1}\n", 3, "boom!", 1_700_000_000_123),
            b"v1\n3\n5\n3\n1700000000123\nabcboom!{\"x\":1}\n"
        );
        let record = b"v1\n3\n5\n3\n1700000000123\nabcboom!{\"x\":1}\n";
        let letter = decode_dead_letter(record).unwrap();
        assert_eq!(letter.id, "abc");
        assert_eq!(letter.error, "boom!");
        assert_eq!(letter.attempts, 3);
        assert_eq!(letter.at_ms, 1_700_000_000_123);
        assert_eq!(&letter.body[..], b"{\"x\":1}\n");
        assert!(decode_dead_letter(b"v1\n3\n").is_err());
        assert!(decode_dead_letter(b"v1\n99\n0\n1\n1\nabc").is_err());
    }

    /// Ids are 32 hex digits and sort by creation time.
    #[test]
    fn ids_are_time_ordered() {
        let first = new_id();
        std::thread::sleep(Duration::from_millis(2));
        let second = new_id();
        assert_eq!(first.len(), 32);
        assert!(first < second);
    }
}
