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
            Error::Timeout { .. } | Error::Full { .. } => true,
            Error::StaleEpoch { .. }
            | Error::NotHeld { .. }
            | Error::Decode { .. }
            | Error::UnsafeServer(_)
            | Error::Invalid(_)
            | Error::Remote { .. }
            | Error::Closed => false,
        }
    }

    /// True when Redis could not be reached at all (as opposed to answering with an error).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Redis(err) => {
                err.is_io_error()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                    || err.is_timeout()
                    || matches!(err.code(), Some("LOADING") | Some("MASTERDOWN"))
            }
            Error::Timeout { .. } => true,
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
    if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() {
        return true;
    }
    // OOM: a noeviction server refusing writes until consumers drain; the rest are
    // transient states of a server or cluster.
    matches!(
        err.code(),
        Some("OOM")
            | Some("LOADING")
            | Some("BUSY")
            | Some("TRYAGAIN")
            | Some("CLUSTERDOWN")
            | Some("MASTERDOWN")
            | Some("READONLY")
    )
}

/// The result of every redpill call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
