//! redpill: reliable messaging over Redis for the Gorgon mesh. It is the only crate that
//! speaks Redis; it knows no role and no message type — bodies are bytes. It runs the same on
//! one Redis and on a Redis Cluster, found out from the one address it is given.
//!
//! What it gives:
//! - [`Queue`]: many pushers, competing pullers. A pull moves a batch atomically into the
//!   puller's in-flight set; `ack` by id; `nack` retries after a backoff and dead-letters after
//!   the last attempt, keeping the error. When a puller's heartbeat key expires, the next
//!   reaper pass puts its in-flight messages back at the head, in order.
//! - [`Topic`]: persistent publish/subscribe on Redis streams. Every subscriber [`Group`]
//!   receives every message, including those published while it had no live member; members
//!   share the work. Retention is bounded per shard and a full shard refuses new entries
//!   ([`Error::Full`]) instead of dropping unread ones — unless the topic is a
//!   [ring](Topic::ring), which keeps the newest entries and is read without a group from an
//!   entry id ([`Topic::read_after`]): for telemetry, which must never hold a writer back.
//! - [`Live`]: fire-and-forget PUBLISH/SUBSCRIBE. Redis pub/sub loses whatever is published
//!   while a subscriber is disconnected, so nothing that must arrive goes this way; queues and
//!   topics use PUBLISH only as a wake-up hint and poll as a fallback. Subscriptions are
//!   re-made after every reconnect.
//! - [`Requester`] / [`Responder`]: request/reply over a queue, with correlation ids and timeouts.
//! - [`Lease`]: at most one holder, each grant with a larger epoch (INCR); a [`FencedWrite`]
//!   is applied by a Lua script only while its grant still holds the lease. An [`Outbox`]
//!   carries messages a fenced batch committed for queues of other tags to those queues.
//! - [`Members`]: which clients of a named group are alive.
//!
//! Invariants:
//! - Every key is built in [`keys`], under one prefix, with a hash tag; every Lua script and
//!   MULTI block touches one cluster slot (asserted in debug builds); work on keys of many
//!   slots is sent as one pipeline per slot (`conn.rs`).
//! - With [`Config::set_replica_acks`], nothing is acknowledged before that many replicas
//!   have it.
//! - Nothing is ever popped in one command and pushed in another: every move between lists
//!   is one script.
//! - Liveness comes from TTL keys in Redis, never from comparing clocks of two machines.
//!
//! Layout: `client.rs` (the handle, heartbeat), `conn.rs` (one Redis or a cluster, and work
//! grouped by slot), `bus.rs` (the subscriber connection),
//! `queue.rs`, `topic.rs`, `live.rs`, `rpc.rs`, `lease.rs`, `outbox.rs`, `members.rs`, `keys.rs`, `scripts.rs` with
//! `lua/`, `config.rs`, `error.rs`, `testing.rs` (feature `test-support`).

#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::print_stdout))]

mod bus;
mod client;
mod config;
mod conn;
mod error;
pub mod keys;
mod lease;
mod live;
mod members;
mod outbox;
mod queue;
mod rpc;
mod scripts;
#[cfg(feature = "test-support")]
pub mod testing;
mod topic;

pub use client::{Client, LogRead, LogSnapshot};
pub use config::{mask_url, Config, DurabilityPolicy};
pub use error::{Error, Result};
pub use keys::{Keys, Tag};
pub use lease::{Acquired, FencedWrite, Grant, Lease};
pub use live::{Live, Subscription};
pub use members::Members;
pub use outbox::{Outbox, MAX_DELIVER};
pub use queue::{
    id_time_ms, new_id, DeadLetter, Delivery, NackOutcome, PushedOnce, Queue, QueueBatch,
    QueueDepth, MAX_PULL,
};
pub use rpc::{Reply, Request, Requester, Responder};
pub use scripts::script_hashes;
pub use topic::{Entry, Group, GroupBacklog, ShardStats, StartFrom, Topic, DEFAULT_TOPIC_BOUND};
