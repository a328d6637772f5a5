//! The Lua scripts (`redpill/lua/`), each with the shared `lib.lua` before it, loaded once,
//! and the one way to run them.

use std::sync::LazyLock;

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{FromRedisValue, Script, ToRedisArgs};

use crate::conn::{Conn, Routed};
use crate::error::{Error, Result};
use crate::keys::debug_assert_one_slot;

/// Replicas every acknowledged write waits for (`WAIT`), from
/// [`Config::set_replica_acks`](crate::Config::set_replica_acks).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplicaAcks {
    pub(crate) count: u32,
    pub(crate) timeout: std::time::Duration,
}

impl ReplicaAcks {
    /// Appends `WAIT` to `pipe`, whose writes it then covers: they went on this connection to
    /// the master that took them, and WAIT waits for that connection's writes.
    fn append(self, pipe: &mut redis::Pipeline) {
        pipe.cmd("WAIT")
            .arg(self.count)
            .arg(self.timeout.as_millis() as u64);
    }

    /// Checks WAIT's reply, the number of replicas that acknowledged.
    fn check(self, reply: redis::Value) -> Result<()> {
        let got: i64 =
            redis::from_redis_value(reply).map_err(|err| Error::decode("WAIT reply", err))?;
        let got = u32::try_from(got.max(0)).unwrap_or(u32::MAX);
        if got < self.count {
            return Err(Error::Unreplicated {
                wanted: self.count,
                got,
                after: self.timeout,
            });
        }
        Ok(())
    }

    /// Waits once more for this client's writes on the master of `key`'s slot: `WAIT` on the
    /// same connection to that master, which covers every write made on it. For a write
    /// already applied whose first wait fell short.
    pub(crate) async fn wait_again(self, conn: &mut Conn, key: &str) -> Result<()> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.count).arg(self.timeout.as_millis() as u64);
        let reply = match conn {
            Conn::Single(_) => wait.query_async(conn).await?,
            Conn::Cluster(cluster, _) => {
                let route = Route::new(crate::keys::slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                cluster.route_command(wait, routing).await?
            }
        };
        self.check(reply)
    }
}

/// What every script shares (`lua/lib.lua`), put before each one.
const LIB: &str = include_str!("../lua/lib.lua");

/// One script in its two forms: wake-ups with PUBLISH on a single Redis, with SPUBLISH (to
/// the shard of the script's own slot) on a Redis Cluster.
pub(crate) struct Lua {
    single: Script,
    cluster: Script,
}

impl Lua {
    fn new(body: &str) -> Lua {
        let with = |publish: &str| {
            Script::new(&format!(
                "local PUBLISH_COMMAND = '{publish}'\n{LIB}\n{body}"
            ))
        };
        Lua {
            single: with("PUBLISH"),
            cluster: with("SPUBLISH"),
        }
    }

    /// The form for `conn`.
    fn on(&self, conn: &Conn) -> &Script {
        if conn.is_cluster() {
            &self.cluster
        } else {
            &self.single
        }
    }
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Lua> =
            LazyLock::new(|| Lua::new(include_str!(concat!("../lua/", $file))));
    };
}

script!(QUEUE_PUSH, "queue_push.lua");
script!(QUEUE_PULL, "queue_pull.lua");
script!(QUEUE_ACK, "queue_ack.lua");
script!(QUEUE_NACK, "queue_nack.lua");
script!(QUEUE_REQUEUE, "queue_requeue.lua");
script!(QUEUE_REPLAY_DEAD, "queue_replay_dead.lua");
script!(QUEUE_REPLAY_RECORDS, "queue_replay_records.lua");
script!(TOPIC_PUBLISH, "topic_publish.lua");
script!(LEASE_ACQUIRE, "lease_acquire.lua");
script!(LEASE_RENEW, "lease_renew.lua");
script!(LEASE_RELEASE, "lease_release.lua");
script!(FENCED_WRITE, "fenced_write.lua");
script!(READ_HASH_AND_LAST, "read_hash_and_last.lua");
script!(READ_LOG, "read_log.lua");

/// Every script by name (its file's, without `.lua`), for [`script_hashes`].
static ALL: [(&str, &LazyLock<Lua>); 14] = [
    ("queue_push", &QUEUE_PUSH),
    ("queue_pull", &QUEUE_PULL),
    ("queue_ack", &QUEUE_ACK),
    ("queue_nack", &QUEUE_NACK),
    ("queue_requeue", &QUEUE_REQUEUE),
    ("queue_replay_dead", &QUEUE_REPLAY_DEAD),
    ("queue_replay_records", &QUEUE_REPLAY_RECORDS),
    ("topic_publish", &TOPIC_PUBLISH),
    ("lease_acquire", &LEASE_ACQUIRE),
    ("lease_renew", &LEASE_RENEW),
    ("lease_release", &LEASE_RELEASE),
    ("fenced_write", &FENCED_WRITE),
    ("read_hash_and_last", &READ_HASH_AND_LAST),
    ("read_log", &READ_LOG),
];

/// The SHA1 of each of redpill's scripts, in both forms (single Redis and cluster), with the
/// script's name: what `EVALSHA` shows in `SLOWLOG`, `MONITOR` or a profile.
pub fn script_hashes() -> Vec<(String, &'static str)> {
    ALL.iter()
        .flat_map(|(name, lua)| {
            [
                (lua.single.get_hash().to_owned(), *name),
                (lua.cluster.get_hash().to_owned(), *name),
            ]
        })
        .collect()
}

/// Runs several invocations of `script`, one pipeline per slot (one in all on a single
/// Redis), all sent at once, loading the script and trying a slot's pipeline once more if
/// its server does not know the script (after a restart, or on a new master after a
/// failover). With `acks`, each slot's pipeline ends with WAIT, and the call fails when a
/// master had fewer replicas acknowledge. Every invocation must be safe to run twice. Each
/// invocation's keys must share one slot (asserted in debug builds); different invocations
/// may use different slots.
pub(crate) async fn run_many<T: FromRedisValue>(
    conn: &Conn,
    script: &Lua,
    invocations: &[(Vec<String>, Vec<Vec<u8>>)],
    acks: Option<ReplicaAcks>,
) -> Result<Vec<T>> {
    let script = script.on(conn);
    let mut routed = Routed::new(conn);
    for (keys, args) in invocations {
        debug_assert_one_slot("script", keys);
        routed.add(
            keys.first().map_or("", String::as_str),
            evalsha(script, keys, args),
        );
    }
    let replies = routed
        .query_each(conn, |conn, mut pipe| async move {
            if let Some(acks) = acks {
                acks.append(&mut pipe);
            }
            let mut replies = query_loading(conn, script, &pipe).await?;
            if let Some(acks) = acks {
                acks.check(replies.pop().unwrap_or(redis::Value::Nil))?;
            }
            Ok::<_, Error>(replies)
        })
        .await?;
    replies
        .into_iter()
        .map(|reply| {
            T::from_redis_value(reply).map_err(|err| Error::from(redis::RedisError::from(err)))
        })
        .collect()
}

/// Runs `pipe`, which invokes `script`: when its server does not know the script, loads it
/// (SCRIPT LOAD goes to every node of a cluster) and runs the pipeline once more.
async fn query_loading(
    mut conn: Conn,
    script: &Script,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<Vec<redis::Value>> {
    match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
        Err(err) if err.code() == Some("NOSCRIPT") => {
            script.prepare_invoke().load_async(&mut conn).await?;
            pipe.query_async(&mut conn).await
        }
        other => other,
    }
}

/// Runs `script` like [`run`], and with `acks` waits in the same round trip for that many
/// replicas to have the write. Returns the script's reply and whether the replicas had it in
/// time (always `Ok` without `acks`), so the caller decides what a short wait means for a
/// write the script may or may not have made.
pub(crate) async fn run_acked<T: FromRedisValue, K: AsRef<str> + ToRedisArgs>(
    conn: &mut Conn,
    script: &Lua,
    keys: &[K],
    args: impl ToRedisArgs,
    acks: Option<ReplicaAcks>,
) -> Result<(T, Result<()>)> {
    let Some(acks) = acks else {
        return Ok((run(conn, script, keys, args).await?, Ok(())));
    };
    debug_assert_one_slot("script", keys);
    let script = script.on(conn);
    let mut pipe = redis::pipe();
    pipe.add_command(evalsha(script, keys, args));
    acks.append(&mut pipe);
    let mut replies = query_loading(conn.clone(), script, &pipe)
        .await?
        .into_iter();
    let reply = replies.next().unwrap_or(redis::Value::Nil);
    let replicated = acks.check(replies.next().unwrap_or(redis::Value::Nil));
    let reply =
        T::from_redis_value(reply).map_err(|err| Error::from(redis::RedisError::from(err)))?;
    Ok((reply, replicated))
}

/// Runs `script` with `keys` and `args` (EVALSHA, loading it on NOSCRIPT). `args` may be a
/// tuple or a list; each element becomes one or more ARGV entries.
///
/// In debug builds, panics if the keys span more than one cluster slot.
pub(crate) async fn run<T: FromRedisValue, K: AsRef<str> + ToRedisArgs>(
    conn: &mut Conn,
    script: &Lua,
    keys: &[K],
    args: impl ToRedisArgs,
) -> redis::RedisResult<T> {
    debug_assert_one_slot("script", keys);
    let script = script.on(conn);
    let evalsha = evalsha(script, keys, args);
    match evalsha.query_async(conn).await {
        Err(err) if err.code() == Some("NOSCRIPT") => {
            script.prepare_invoke().load_async(conn).await?;
            evalsha.query_async(conn).await
        }
        other => other,
    }
}

/// `EVALSHA` of `script` with `keys` and `args`, written straight into the command's one
/// buffer: a script invocation would first copy each argument into a vector of its own,
/// which for a batch commit of thousands of arguments was a measurable share of its cost.
fn evalsha<K: ToRedisArgs>(script: &Script, keys: &[K], args: impl ToRedisArgs) -> redis::Cmd {
    let mut evalsha = redis::cmd("EVALSHA");
    evalsha
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    evalsha
}
