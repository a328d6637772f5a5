//! store: the topology store and the MongoDB archive of Gorgon.
//!
//! It will consume, through redpill:
//! - topology change requests from web_face (request/reply), which it validates and applies;
//! - the partition-sharded output topic, whose events it writes to MongoDB (`outputs`),
//!   acknowledging the topic only after MongoDB acknowledged the write;
//! - history queries from web_face (request/reply), answered from MongoDB.
//!
//! It produces the replies, the applied topology changes, and its stats on the stats topic.
//! It is the only role that speaks MongoDB.
//!
//! In this version it only connects to Redis, logs its configuration and waits for SIGTERM or
//! Ctrl-C; it does not connect to MongoDB yet. That work arrives with its own issue.
//!
//! Layout: `config.rs` (flags and environment), `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;

use protocol::roles::STORE;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Runs store until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), logs the effective configuration, waits, then closes the connection.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let redpill_config = config.redis.redpill_config(STORE);
    let Some(client) = runtime::connect(STORE, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    tracing::info!(config = ?config, "starting");
    token.cancelled().await;
    client.close().await;
    tracing::info!("stopped");
    Ok(())
}
