//! The Lua scripts (`redpill/lua/`), loaded once, and the one way to run them.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, Script, ToRedisArgs};

use crate::keys::debug_assert_one_slot;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("../lua/", $file))));
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

/// Runs several invocations of `script` in one pipeline (one round trip), loading the script
/// and trying once more if the server does not know it (after a restart). Every invocation
/// must be safe to run twice. Each invocation's keys must share one slot (asserted in debug
/// builds); different invocations may use different slots.
pub(crate) async fn run_many<T: FromRedisValue>(
    conn: &mut ConnectionManager,
    script: &Script,
    invocations: &[(Vec<String>, Vec<Vec<u8>>)],
) -> redis::RedisResult<Vec<T>> {
    let mut pipe = redis::pipe();
    let prepared: Vec<_> = invocations
        .iter()
        .map(|(keys, args)| {
            debug_assert_one_slot("script", keys);
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation
        })
        .collect();
    for invocation in &prepared {
        pipe.invoke_script(invocation);
    }
    match pipe.query_async(conn).await {
        Err(err) if err.code() == Some("NOSCRIPT") => {
            script.prepare_invoke().load_async(conn).await?;
            pipe.query_async(conn).await
        }
        other => other,
    }
}

/// Runs `script` with `keys` and `args` (EVALSHA, loading it on NOSCRIPT). `args` may be a
/// tuple or a list; each element becomes one or more ARGV entries.
///
/// In debug builds, panics if the keys span more than one cluster slot.
pub(crate) async fn run<T: FromRedisValue, K: AsRef<str> + ToRedisArgs>(
    conn: &mut ConnectionManager,
    script: &Script,
    keys: &[K],
    args: impl ToRedisArgs,
) -> redis::RedisResult<T> {
    debug_assert_one_slot("script", keys);
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    invocation.arg(args);
    invocation.invoke_async(conn).await
}
