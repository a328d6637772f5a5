//! processor: runs node functions on the partitions it owns.
//!
//! It will hold a fenced lease per owned partition and consume, through redpill, the queue of
//! each partition it owns. For each batch it commits atomically, fenced by the lease: attribute
//! writes, latched outputs, per-node `seq`, appends to the partition-sharded output topic, the
//! outbox of messages bound for other partitions, and the acks of the inputs. It then forwards
//! the outbox to the downstream partition queues, dead-letters what fails `max_attempts` times,
//! and publishes its stats on the stats topic.
//!
//! In this version it only connects to Redis, logs its configuration and waits for SIGTERM or
//! Ctrl-C; it owns no partition yet. That work arrives with its own issue, and with it the
//! function registry that lets users build their own processor binary from this library.
//!
//! Layout: `config.rs` (flags and environment), `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;

use protocol::roles::PROCESSOR;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Runs processor until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), logs the effective configuration, waits, then closes the connection.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let redpill_config = config.redis.redpill_config(PROCESSOR);
    let Some(client) = runtime::connect(PROCESSOR, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    tracing::info!(config = ?config, "starting");
    token.cancelled().await;
    client.close().await;
    tracing::info!("stopped");
    Ok(())
}
