//! The one error type of redpill, and whether a retry can help.

use std::time::Duration;

/// Everything a redpill call can fail with.
///
/// Branch on [`Error::is_retryable`] rather than on the message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis answered with an error or the connection failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// No answer in time (a request/reply call, or a wait for Redis to come back).
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// A bounded queue or topic is at its bound; try again once consumers have caught up.
    #[error("{name} is full ({len} of {max} messages); retry after consumers catch up")]
    Full {
        /// The queue or topic.
        name: String,
        /// Messages held now.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// A write guarded by a lease carried an epoch that is no longer current.
    #[error("lease {lease} was lost: epoch {epoch} is stale")]
    StaleEpoch {
        /// The lease name.
        lease: String,
        /// The epoch the writer held.
        epoch: u64,
    },
    /// A fenced batch acknowledged a message this client no longer holds in flight (it was
    /// re-queued after the client was taken for dead); nothing of the batch was written.
    #[error("message {id} is no longer held by this consumer; the batch was not applied")]
    NotHeld {
        /// The first message found missing.
        id: String,
    },
    /// Redis answered something redpill cannot read.
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// What was being read.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The server's settings can lose acknowledged writes and the policy is to refuse.
    #[error("the Redis server can lose acknowledged writes: {0}; fix its configuration or set the durability policy to warn")]
    UnsafeServer(String),
    /// The caller passed something redpill cannot use.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A request/reply service answered with an error.
    #[error("{service} answered with an error: {message}")]
    Remote {
        /// The service.
        service: String,
        /// Its error message.
        message: String,
    },
    /// Fewer replicas than asked for ([`Config::set_replica_acks`](crate::Config::set_replica_acks))
    /// had a write when the master stopped waiting.
    #[error("the write was acknowledged by {got} of the {wanted} replicas asked for within {after:?}; it is on the master and may still reach them")]
    Unreplicated {
        /// Replicas asked for .
        wanted: u32,
        /// Replicas that had it in time.
        got: u32,
        /// How long the master waited.
        after: Duration,
    },
    /// The client is shutting down.
    #[error("the redpill client is shut down")]
    Closed,
}

impl Error {
    /// True when the same call may succeed later without any change by the caller:
    /// the connection dropped or timed out, Redis is loading or out of memory, or a bound is full.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Redis(err) => redis_error_is_retryable(err),
            Error::Timeout { .. } | Error::Full { .. } | Error::Unreplicated { .. } => true,
            Error::StaleEpoch { .. }
            | Error::NotHeld { .. }
            | Error::Decode { .. }
            | Error::UnsafeServer(_)
            | Error::Invalid(_)
            | Error::Remote { .. }
            | Error::Closed => false,
        }
    }

    /// True when Redis could not be reached at all, or could not take a write safely yet (a
    /// cluster slot without a master, replicas that did not acknowledge in time), as opposed
    /// to answering with an error.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Redis(err) => redis_error_is_unavailable(err),
            Error::Timeout { .. } | Error::Unreplicated { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn decode(what: &'static str, detail: impl ToString) -> Self {
        Error::Decode {
            what,
            detail: detail.to_string(),
        }
    }
}

fn redis_error_is_retryable(err: &redis::RedisError) -> bool {
    // OOM: a noeviction server refusing writes until consumers drain; BUSY: a script running
    // long; READONLY: a replica that was a master a moment ago.
    redis_error_is_unavailable(err) || has_code(err, &["OOM", "BUSY", "READONLY"])
}

/// Redis could not be reached, or cannot take the command right now: a lost connection, a
/// server loading its data, a master without the replicas `min-replicas-to-write` asks for,
/// a WAIT cut short by its master turning replica (UNBLOCKED), a failover or a reshard in
/// progress (MOVED or ASK still answered after the cluster client's own retries, TRYAGAIN,
/// CLUSTERDOWN, no connection to any node).
fn redis_error_is_unavailable(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.kind() == redis::ErrorKind::ClusterConnectionNotFound
        || has_code(
            err,
            &[
                "LOADING",
                "MASTERDOWN",
                "NOREPLICAS",
                "UNBLOCKED",
                "CLUSTERDOWN",
                "TRYAGAIN",
                "MOVED",
                "ASK",
            ],
        )
}

/// Whether Redis answered with one of `codes`: the error itself, or any failing command of a
/// pipeline (where a WAIT or one slot's command may fail after the others went through).
fn has_code(err: &redis::RedisError, codes: &[&str]) -> bool {
    err.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, error)| codes.contains(&error.code()))
    })
}

/// The result of every redpill call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    /// The error Redis answers with `reply` (without the leading `-`).
    fn server_error(reply: &str) -> Error {
        let value = redis::parse_redis_value(format!("-{reply}\r\n").as_bytes()).expect("a reply");
        Error::Redis(value.extract_error().expect_err("an error reply"))
    }

    /// A cluster moving or electing, a server loading, a master missing its replicas: retry
    /// later (503 at the API). A full or busy server: retry. A wrong command: do not.
    #[test]
    fn errors_say_whether_a_retry_can_help() {
        for reply in [
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "NOREPLICAS Not enough good replicas to write.",
            "LOADING Redis is loading the dataset in memory",
            "MASTERDOWN Link with MASTER is down",
            "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
        ] {
            let err = server_error(reply);
            assert!(err.is_unavailable() && err.is_retryable(), "{reply}");
        }
        for reply in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "READONLY You can't write against a read only replica.",
            "BUSY Redis is busy running a script.",
        ] {
            let err = server_error(reply);
            assert!(!err.is_unavailable() && err.is_retryable(), "{reply}");
        }
        for reply in [
            "ERR unknown command 'NOPE'",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ] {
            let err = server_error(reply);
            assert!(!err.is_unavailable() && !err.is_retryable(), "{reply}");
        }
        // In a pipeline, whichever command failed.
        let value = redis::parse_redis_value(
            b"*2\r\n+OK\r\n-UNBLOCKED force unblock from blocking operation\r\n",
        )
        .expect("a reply");
        let pipeline = Error::Redis(value.extract_error().expect_err("an error in the pipeline"));
        assert!(
            pipeline.is_unavailable() && pipeline.is_retryable(),
            "{pipeline}"
        );
        let unreplicated = Error::Unreplicated {
            wanted: 1,
            got: 0,
            after: std::time::Duration::from_secs(2),
        };
        assert!(unreplicated.is_unavailable() && unreplicated.is_retryable());
    }
}
