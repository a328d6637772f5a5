//! The cloneable handle every redpill channel hangs off: connection, keys, heartbeat, bus.
//!
//! "One round trip" below is one pipeline on a single Redis; on a cluster it is one pipeline
//! per slot, all sent at once ([`Client::query_routed`]).

use std::sync::Arc;
use std::time::Duration;

use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{FromRedisValue, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::bus::Bus;
use crate::config::{Config, DurabilityPolicy};
use crate::conn::{Conn, Connector, Routed};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::scripts::ReplicaAcks;

/// A connection to one Redis deployment, shared by every queue, topic, lease and channel made
/// from it. Clone it freely: clones share the connection and background tasks, which stop when
/// the last clone is dropped or [`Client::close`] is called.
///
/// Each client is one *consumer*: it has a unique id and keeps a heartbeat key alive in Redis
/// while it runs, so that other processes can tell when it died and re-queue what it held.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) keys: Keys,
    pub(crate) connector: Arc<Connector>,
    pub(crate) bus: Bus,
    pub(crate) consumer_id: String,
    pub(crate) shutdown: CancellationToken,
    _stop_tasks: DropGuard,
}

impl Client {
    /// Connects, checks the server's durability settings and starts the heartbeat.
    ///
    /// Fails with a retryable error when Redis cannot be reached; see [`Client::connect_lazy`]
    /// for a client that connects on first use instead.
    pub async fn connect(config: Config) -> Result<Client> {
        let client = Self::connect_lazy(config)?;
        client.ping().await?;
        client.check_durability().await?;
        // The first beat before returning: the heartbeat task may not have run yet, and a
        // consumer without a heartbeat key is taken for dead by reclaims and memberships.
        let mut conn = client.conn().await?;
        let _: () = client.heartbeat().query_async(&mut conn).await?;
        Ok(client)
    }

    /// Builds a client without touching the network: the connection is made on first use,
    /// and every call fails with a retryable error while Redis is unreachable.
    /// Fails only when the URL cannot be parsed.
    pub fn connect_lazy(config: Config) -> Result<Client> {
        let connector = Arc::new(Connector::new(&config)?);
        let shutdown = CancellationToken::new();
        let keys = Keys::new(config.prefix.clone());
        let consumer_id = new_consumer_id(&config.name);
        let bus = Bus::start(
            Arc::clone(&connector),
            config.reconnect_max_delay,
            config.response_timeout,
            shutdown.child_token(),
        );
        let client = Client {
            inner: Arc::new(Inner {
                keys,
                connector,
                bus,
                consumer_id,
                _stop_tasks: shutdown.clone().drop_guard(),
                shutdown,
                config,
            }),
        };
        client.spawn_heartbeat();
        Ok(client)
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The key builder (prefix included).
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// This client's consumer id: `<name>-<host>-<pid>-<random>`.
    pub fn consumer_id(&self) -> &str {
        &self.inner.consumer_id
    }

    /// The connection, for redpill's own modules: made on first use (a single Redis or a
    /// cluster, whichever the URL points at); a retryable error while Redis is unreachable.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        self.inner.connector.conn().await
    }

    /// The replicas every acknowledged write waits for, if any.
    pub(crate) fn replica_acks(&self) -> Option<ReplicaAcks> {
        let config = &self.inner.config;
        (config.replica_acks > 0).then_some(ReplicaAcks {
            count: config.replica_acks,
            timeout: config.replica_ack_timeout,
        })
    }

    /// True when this client talks to a Redis Cluster (connecting first if need be).
    pub async fn is_cluster(&self) -> Result<bool> {
        Ok(self.conn().await?.is_cluster())
    }

    /// Round trip to Redis; the readiness probe of every role.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// The command that renews this consumer's heartbeat key for one TTL.
    pub(crate) fn heartbeat(&self) -> redis::Cmd {
        heartbeat_cmd(
            &self.inner.keys.consumer(&self.inner.consumer_id),
            self.inner.config.consumer_ttl,
        )
    }

    /// Whether each consumer's heartbeat key exists, in one round trip.
    pub(crate) async fn consumers_alive(&self, consumers: &[String]) -> Result<Vec<bool>> {
        if consumers.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = consumers
            .iter()
            .map(|consumer| self.inner.keys.consumer(consumer))
            .collect();
        self.query_routed(keys.iter().map(|key| (key.as_str(), cmd("EXISTS", key))))
            .await
    }

    /// Every field of each hash in `keys`, in one round trip (an empty map for a missing key).
    /// For state a writer keeps in hashes under its tag.
    pub async fn read_hashes(
        &self,
        keys: &[String],
    ) -> Result<Vec<std::collections::HashMap<String, String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.query_routed(keys.iter().map(|key| (key.as_str(), cmd("HGETALL", key))))
            .await
    }

    /// Field `field` of each hash in `keys`, in one round trip (`None` where the hash or the
    /// field is missing).
    pub async fn read_hash_field(
        &self,
        keys: &[String],
        field: &str,
    ) -> Result<Vec<Option<String>>> {
        Ok(self
            .read_hash_fields(keys, &[field])
            .await?
            .into_iter()
            .map(|mut values| values.pop().flatten())
            .collect())
    }

    /// Fields `fields` of each hash in `keys` (HMGET), in one round trip: one list per key,
    /// in the order of `fields`, `None` where the hash or the field is missing.
    pub async fn read_hash_fields(
        &self,
        keys: &[String],
        fields: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>> {
        if keys.is_empty() || fields.is_empty() {
            return Ok(vec![Vec::new(); keys.len()]);
        }
        self.query_routed(keys.iter().map(|key| {
            let mut hmget = cmd("HMGET", key);
            hmget.arg(fields);
            (key.as_str(), hmget)
        }))
        .await
    }

    /// The last `count` elements (or all, if fewer) of each `(key, count)` list, first to
    /// last, in one round trip (empty for a missing key). For bounded lists a writer keeps
    /// under its tag, such as replay buffers.
    pub async fn read_list_tails(&self, lists: &[(String, usize)]) -> Result<Vec<Vec<String>>> {
        if lists.is_empty() {
            return Ok(Vec::new());
        }
        self.query_routed(lists.iter().map(|(key, count)| {
            let mut lrange = cmd("LRANGE", key);
            // LRANGE 1 0 is empty: a tail of no elements.
            let (from, to) = if *count == 0 {
                (1, 0)
            } else {
                (-(*count as isize), -1)
            };
            lrange.arg(from).arg(to);
            (key.as_str(), lrange)
        }))
        .await
    }

    /// Each `(hash, list)` pair's hash with the list's last element (`None` when the list is
    /// empty or missing), both read in one atomic step per pair (a script), all pairs in one
    /// round trip. For a writer that keeps a record and a log of it under one tag and
    /// changes both in one script, such as a node's record and its replay buffer: the reader
    /// sees them as one write left them. A pair's keys must share a slot.
    pub async fn read_hashes_with_last(
        &self,
        pairs: &[(String, String)],
    ) -> Result<Vec<(std::collections::HashMap<String, String>, Option<String>)>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let invocations: Vec<(Vec<String>, Vec<Vec<u8>>)> = pairs
            .iter()
            .map(|(hash, list)| (vec![hash.clone(), list.clone()], Vec::new()))
            .collect();
        let conn = self.conn().await?;
        crate::scripts::run_many(
            &conn,
            &crate::scripts::READ_HASH_AND_LAST,
            &invocations,
            None,
        )
        .await
    }

    /// Each log of `logs` read in one atomic step (a script) with what is kept beside it, all
    /// in one round trip: for a writer that appends to a list and changes a hash and a sorted
    /// set under the same tag in the same scripts, such as a node's replay buffer, its record
    /// and its partition's floors. A read's keys must share a slot.
    pub async fn read_logs(&self, logs: &[LogRead]) -> Result<Vec<LogSnapshot>> {
        if logs.is_empty() {
            return Ok(Vec::new());
        }
        let invocations: Vec<(Vec<String>, Vec<Vec<u8>>)> = logs
            .iter()
            .map(|log| {
                (
                    vec![log.hash.clone(), log.list.clone(), log.sorted_set.clone()],
                    [
                        log.field.clone().into_bytes(),
                        log.newest.to_string().into_bytes(),
                        log.member.clone().into_bytes(),
                    ]
                    .into_iter()
                    .chain(log.containing.clone().map(String::into_bytes))
                    .collect(),
                )
            })
            .collect();
        let conn = self.conn().await?;
        // The script's reply, in the order of `LogSnapshot`'s fields.
        type Reply = (
            Option<String>,
            u64,
            Option<String>,
            Vec<String>,
            Option<f64>,
        );
        let replies: Vec<Reply> =
            crate::scripts::run_many(&conn, &crate::scripts::READ_LOG, &invocations, None).await?;
        Ok(replies
            .into_iter()
            .map(|(field, len, first, newest, score)| LogSnapshot {
                field,
                len,
                first,
                newest,
                score,
            })
            .collect())
    }

    /// Runs `commands`, each given with the key that routes it, on keys of any slots: one
    /// pipeline on a single Redis; on a cluster one pipeline per slot, all sent at once.
    /// The replies come back in the order of `commands`.
    pub(crate) async fn query_routed<'k, T: FromRedisValue>(
        &self,
        commands: impl IntoIterator<Item = (&'k str, redis::Cmd)>,
    ) -> Result<Vec<T>> {
        let conn = self.conn().await?;
        let mut routed = Routed::new(&conn);
        for (key, command) in commands {
            routed.add(key, command);
        }
        if routed.len() == 0 {
            return Ok(Vec::new());
        }
        Ok(routed.query(&conn).await?)
    }

    /// Sets `fields` of the hash at `key`, in one round trip. For state a role publishes for
    /// others to read, such as the function descriptions of a processor.
    pub async fn write_hash(&self, key: &str, fields: &[(String, String)]) -> Result<()> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg(fields)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Adds `members` to the set at `key` (`add`) or removes them, in one round trip.
    pub async fn update_set(&self, key: &str, members: &[&str], add: bool) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let _: () = redis::cmd(if add { "SADD" } else { "SREM" })
            .arg(key)
            .arg(members)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The members of the set at `key`, sorted.
    pub async fn read_set(&self, key: &str) -> Result<Vec<String>> {
        let mut conn = self.conn().await?;
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut conn)
            .await?;
        members.sort();
        Ok(members)
    }

    /// Records `value` for setting `name` (key `P:setting:<name>`) if none is recorded yet,
    /// and returns the recorded value: a deployment-wide setting fixed by whoever starts
    /// first, such as the partition count.
    pub async fn fixed_setting(&self, name: &str, value: &str) -> Result<String> {
        let key = self.inner.keys.setting(name);
        let mut conn = self.conn().await?;
        let (_, recorded): (redis::Value, String) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("NX")
            .cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        Ok(recorded)
    }

    /// Reads `appendonly`, `appendfsync` and `maxmemory-policy` and warns about (or, under
    /// [`DurabilityPolicy::Refuse`], refuses) settings that can lose acknowledged writes.
    /// Returns the list of problems found.
    pub async fn check_durability(&self) -> Result<Vec<String>> {
        let mut conn = self.conn().await?;
        let mut get = redis::cmd("CONFIG");
        get.arg("GET")
            .arg("appendonly")
            .arg("appendfsync")
            .arg("maxmemory-policy");
        // Every master of a cluster keeps acknowledged writes, so every master is asked.
        let replies: Vec<(String, redis::RedisResult<Value>)> = match &mut conn {
            Conn::Single(_) => vec![(
                self.inner.config.masked_url(),
                get.query_async(&mut conn).await,
            )],
            Conn::Cluster(cluster, _) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match cluster.route_command(get, routing).await {
                    Ok(Value::Map(per_node)) => per_node
                        .into_iter()
                        .map(|(node, reply)| {
                            let node = redis::from_redis_value::<String>(node)
                                .unwrap_or_else(|_| "a master".to_owned());
                            (node, Ok(reply))
                        })
                        .collect(),
                    Ok(other) => vec![(self.inner.config.masked_url(), Ok(other))],
                    Err(err) => vec![(self.inner.config.masked_url(), Err(err))],
                }
            }
        };
        let mut problems = Vec::new();
        for (node, reply) in replies {
            let pairs: Vec<String> = match reply
                .and_then(|value| Ok(redis::from_redis_value(value)?))
            {
                Ok(pairs) => pairs,
                Err(err) if err.code() == Some("ERR") || err.code() == Some("NOPERM") => {
                    tracing::warn!(error = %err, node, "cannot read the Redis persistence settings (CONFIG GET refused); make sure appendonly is yes and maxmemory-policy is noeviction");
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            let settings: std::collections::HashMap<String, String> = pairs
                .chunks(2)
                .filter_map(|pair| match pair {
                    [name, value] => Some((name.clone(), value.clone())),
                    _ => None,
                })
                .collect();
            for problem in durability_problems(&settings) {
                tracing::warn!(node, "{problem}");
                problems.push(if conn.is_cluster() {
                    format!("{node}: {problem}")
                } else {
                    problem
                });
            }
        }
        if !problems.is_empty() && self.inner.config.durability == DurabilityPolicy::Refuse {
            return Err(Error::UnsafeServer(problems.join("; ")));
        }
        Ok(problems)
    }

    /// Stops the heartbeat and background tasks and deletes this consumer's heartbeat key,
    /// so that whatever it still holds in flight is re-queued by the next reaper pass.
    /// Call [`crate::Queue::release`] first to hand in-flight messages back without
    /// counting an attempt.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let key = self.inner.keys.consumer(&self.inner.consumer_id);
        let deleted: Result<i64> = async {
            let mut conn = self.conn().await?;
            Ok(redis::cmd("DEL").arg(&key).query_async(&mut conn).await?)
        }
        .await;
        if let Err(err) = deleted {
            tracing::debug!(error = %err, "could not delete the heartbeat key on close; it expires by itself");
        }
    }

    /// True once [`Client::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// A token cancelled when the client closes; background tasks of channels select on it.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Calls `attempt` until it returns something or `timeout` passes. Between attempts it
    /// sleeps until a hint on any of `wake_channels` (subscribed on first use), at most one poll
    /// interval, since a wake-up hint can be lost. The wake-up is armed before each attempt,
    /// so one published while the attempt runs is not missed.
    ///
    /// `quiet_since` is the [`Waited::raised`] of an earlier call whose attempt found
    /// everything there was: when nothing has been published on the channels since, the first
    /// attempt is skipped (it could only find nothing) and the wait begins at once. The
    /// attempt after the wait always runs, so what arrives without a hint (a retry whose
    /// backoff ends, a lost hint) is found within a poll interval, as when idle.
    pub(crate) async fn wait_for<T, F, Fut>(
        &self,
        wake_channels: &[String],
        timeout: Duration,
        quiet_since: Option<u64>,
        mut attempt: F,
    ) -> Result<Waited<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let wake = self.inner.bus.wake(wake_channels).await;
        let mut quiet_since = quiet_since;
        loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let raised = wake.raised();
            let now = if quiet_since.take() == Some(raised) {
                tokio::time::Instant::now()
            } else {
                let found = attempt().await?;
                let now = tokio::time::Instant::now();
                if !found.is_empty() || now >= deadline {
                    return Ok(Waited { found, raised });
                }
                now
            };
            let nap = deadline
                .saturating_duration_since(now)
                .min(self.inner.config.poll_interval);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
                _ = self.inner.shutdown.cancelled() => return Err(Error::Closed),
            }
        }
    }

    /// Renews `P:consumer:<id>` every third of the TTL from a task of its own, so that a busy
    /// caller is never mistaken for a dead one. The task holds only a weak reference, so it
    /// ends with the last clone of the client.
    fn spawn_heartbeat(&self) {
        let weak = Arc::downgrade(&self.inner);
        let token = self.inner.shutdown.child_token();
        let ttl = self.inner.config.consumer_ttl;
        let key = self.inner.keys.consumer(&self.inner.consumer_id);
        let period = (ttl / 3).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing_since: Option<std::time::Instant> = None;
            let mut warned = false;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let connector = Arc::clone(&inner.connector);
                drop(inner);
                let renewed: Result<()> = async {
                    let mut conn = connector.conn().await?;
                    Ok(heartbeat_cmd(&key, ttl).query_async(&mut conn).await?)
                }
                .await;
                match renewed {
                    Ok(()) => {
                        if warned {
                            tracing::info!(consumer = %key, "heartbeat renewed again");
                        }
                        failing_since = None;
                        warned = false;
                    }
                    Err(err) => {
                        let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                        // Warn once per outage, when it has lasted long enough for other
                        // processes to take this consumer for dead.
                        if !warned && since.elapsed() >= ttl {
                            tracing::warn!(error = %err, consumer = %key, "heartbeat not renewed for longer than its TTL: in-flight messages of this process may be re-queued to others");
                            warned = true;
                        } else {
                            tracing::debug!(error = %err, consumer = %key, "heartbeat not renewed; retrying");
                        }
                    }
                }
            }
        });
    }
}

/// Command `name` on `key`, for the caller to add arguments to.
pub(crate) fn cmd(name: &str, key: &str) -> redis::Cmd {
    let mut command = redis::cmd(name);
    command.arg(key);
    command
}

fn heartbeat_cmd(key: &str, ttl: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(1).arg("PX").arg(ttl.as_millis() as u64);
    cmd
}

fn durability_problems(settings: &std::collections::HashMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    match settings.get("appendonly").map(String::as_str) {
        Some("yes") => {}
        Some(other) => problems.push(format!(
            "appendonly is {other}: a Redis restart loses everything since the last snapshot; set appendonly yes"
        )),
        None => {}
    }
    if let Some("no") = settings.get("appendfsync").map(String::as_str) {
        problems.push(
            "appendfsync is no: a crash can lose about 30 s of acknowledged writes; use everysec or always"
                .to_owned(),
        );
    }
    match settings.get("maxmemory-policy").map(String::as_str) {
        Some("noeviction") | None => {}
        Some(other) => problems.push(format!(
            "maxmemory-policy is {other}: Redis may silently evict queued messages; set noeviction"
        )),
    }
    problems
}

fn new_consumer_id(name: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let random: u32 = rand::random();
    format!("{name}-{host}-{}-{random:08x}", std::process::id())
}

/// What [`Client::read_logs`] reads of one log (all keys in one slot).
#[derive(Clone, Debug)]
pub struct LogRead {
    /// The hash kept beside the log.
    pub hash: String,
    /// The field of it to read.
    pub field: String,
    /// The log: a list appended to at its tail.
    pub list: String,
    /// How many of its newest elements to read; 0 for all.
    pub newest: usize,
    /// Of those, only the elements holding these bytes, if set (a byte search in Redis, so
    /// a reader looking for a few elements of a long log does not fetch all of it).
    pub containing: Option<String>,
    /// The sorted set kept beside it.
    pub sorted_set: String,
    /// The member whose score to read.
    pub member: String,
}

/// One log as [`Client::read_logs`] found it, all read in one atomic step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogSnapshot {
    /// The hash field, if set.
    pub field: Option<String>,
    /// The list's length.
    pub len: u64,
    /// Its first (oldest) element.
    pub first: Option<String>,
    /// Its newest elements as asked for (those holding [`LogRead::containing`], if set),
    /// oldest first.
    pub newest: Vec<String>,
    /// The member's score, if it has one.
    pub score: Option<f64>,
}

/// What [`Client::wait_for`] found, and the count of wake-ups raised on its channels when the
/// attempt that found it began.
pub(crate) struct Waited<T> {
    pub(crate) found: Vec<T>,
    pub(crate) raised: u64,
}

#[cfg(test)]
mod tests {
    use super::durability_problems;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// AOF with noeviction is safe; each unsafe setting is named once.
    #[test]
    fn names_each_unsafe_setting() {
        let safe = settings(&[
            ("appendonly", "yes"),
            ("appendfsync", "everysec"),
            ("maxmemory-policy", "noeviction"),
        ]);
        assert!(durability_problems(&safe).is_empty());
        let unsafe_ = settings(&[
            ("appendonly", "no"),
            ("appendfsync", "no"),
            ("maxmemory-policy", "allkeys-lru"),
        ]);
        let problems = durability_problems(&unsafe_);
        assert_eq!(problems.len(), 3);
        assert!(problems[0].starts_with("appendonly is no"));
        assert!(problems[1].starts_with("appendfsync is no"));
        assert!(problems[2].starts_with("maxmemory-policy is allkeys-lru"));
    }
}
