//! store: the topology store and the MongoDB archive of Gorgon.
//!
//! It owns topology changes: web_face sends each one as a request (redpill request/reply,
//! [`protocol::store`]); the store validates it against the whole topology and the functions
//! processors published, keeps the document and its `rev` in Redis, and sends the node
//! changes to the nodes' partitions, where they serialize with the messages. It is not on
//! the message path: injects and reads go from web_face to Redis directly.
//!
//! Archiving outputs to MongoDB and answering history queries arrive with their own issue;
//! this version does not connect to MongoDB yet.
//!
//! Layout: `config.rs` (flags and environment), `changes.rs` (applying a change to a
//! document, without I/O), `service.rs` (the request loop, leases, commits and outboxes),
//! `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod changes;
pub mod config;
mod service;

use std::time::Duration;

use protocol::roles::STORE;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Runs store until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), checks the partition count, publishes the built-in functions' descriptions
/// (so topologies can be validated before any processor ran), and serves topology changes.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let redpill_config = config.redis.redpill_config(STORE);
    let Some(client) = runtime::connect(STORE, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    runtime::check_partitions(&client, config.redis.partitions).await?;
    runtime::publish_functions(&client, &processor::Registry::builtins().describe()).await?;
    tracing::info!(config = ?config, "starting");
    let settings = service::Settings {
        partitions: config.redis.partitions,
        limits: protocol::Limits {
            max_sources: config.max_sources,
        },
        lease_time: Duration::from_millis(config.store_lease_ms),
        sweep_interval: Duration::from_millis(config.store_sweep_ms),
    };
    let outcome = service::serve(client.clone(), settings, token).await;
    client.close().await;
    tracing::info!("stopped");
    outcome
}
